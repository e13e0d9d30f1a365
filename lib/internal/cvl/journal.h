// internal/cvl/journal.h — the journal of frames read but not yet sealed
// (docs/format-cvl.md §6): a frame stream named by its first ordinal, appended with one
// write(2) per batch, fsynced on demand.
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
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

    /// Replays every journal of DIR in order of first ordinal: calls f(ordinal, envelope)
    /// for each complete record. A truncated last record (a crash inside write) is dropped.
    /// Returns the journals' paths in `paths`.
    static Errc replay(const std::string& dir, const std::function<void(std::uint64_t, ByteView)>& f,
                       std::vector<std::string>& paths, std::string& err);

    const std::string& path() const noexcept { return path_; }

private:
    std::string dir_, path_;
    int fd_ = -1;
    std::vector<std::uint8_t> buf_;
};

}  // namespace sov::cvl::detail
