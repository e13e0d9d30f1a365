// internal/cvl/journal.h — the journal of frames read but not yet sealed
// (docs/format-cvl.md §6): a frame stream named by its first ordinal, appended with one
// write(2) per batch, fsynced on demand.
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace sov::cvl::detail {

class Journal {
public:
    Journal() = default;
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;
    ~Journal();

    /// Opens (creating) DIR/journal/<first>.frames for appending. Errors: io_*.
    Errc open(const std::string& dir, std::uint64_t first, std::string& err);
    /// Appends the records of `envelopes` in one write. Errors: io_*.
    Errc append(std::span<const ByteView> envelopes, std::string& err);
    /// fdatasync. Errors: io_*.
    Errc sync(std::string& err);
    /// Starts a new journal at `first` holding `envelopes` (durably), then deletes the
    /// current one: no frame is ever absent from all journals. Errors: io_*.
    Errc rotate(std::uint64_t first, std::span<const ByteView> envelopes, std::string& err);

    /// One record read back from a journal. `ord` is its ordinal if `certain`; after damage
    /// whose extent in records is unknown (a resynchronisation by scanning), it is a lower
    /// bound (each damaged stretch counted as one record) and `certain` is false.
    struct Record {
        std::uint64_t ord = 0;
        bool certain = true;
        ByteView env;
        std::uint64_t offset = 0;  ///< byte offset of the record in the journal file
    };
    /// A stretch of bytes [offset, offset + length) that is not a valid record (format §6).
    struct Damage {
        std::uint64_t offset = 0, length = 0;
        std::uint64_t ord = 0;      ///< (lower bound of) the ordinal of the damaged record
        bool one_record = false;    ///< exactly one record, skipped by its own length prefix
        std::string reason;
    };
    /// A journal file read whole.
    struct Contents {
        std::string path;
        std::uint64_t first = 0;            ///< from the file name
        std::vector<std::uint8_t> bytes;    ///< the file (records' views point into it)
        std::vector<Record> records;
        std::vector<Damage> damage;
        bool truncated_tail = false;        ///< a last record cut short (a crash inside write)
    };

    /// The journals of DIR (DIR/journal/<16 hex>.frames): (first ordinal, path), ascending.
    static std::vector<std::pair<std::uint64_t, std::string>> list(const std::string& dir);
    /// Reads every journal of DIR (DIR/journal/<16 hex>.frames), in order of first ordinal.
    /// Damage does not stop the reading: after a record that is not valid, reading resumes
    /// at the next offset from which valid records follow (its own length prefix first,
    /// then byte by byte; format §6). A truncated last record is recorded in
    /// `truncated_tail`, not as damage. Errors: io_* (a journal that cannot be read).
    static Errc read_all(const std::string& dir, std::vector<Contents>& out, std::string& err);

    const std::string& path() const noexcept { return path_; }

private:
    std::string dir_, path_;
    int fd_ = -1;
    std::vector<std::uint8_t> buf_;
};

}  // namespace sov::cvl::detail
