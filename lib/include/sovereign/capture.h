// sovereign/capture.h — raw capture files: `[u32 little-endian length][WebSocket message]…`
// (the corpus relay capture's format; frame-cat --from/--to raw-u32le).
#pragma once

#include "sovereign/errc.h"
#include "sovereign/io.h"

#include <cstdint>
#include <vector>

namespace sov::capture {

inline constexpr std::size_t kMaxMessage = 16u << 20;  ///< refuse lengths over 16 MiB

/// Streams messages out of a raw capture. Errors (truncated message, length 0 or over
/// 16 MiB, I/O) stop the reader; error() carries the offset of the faulty length prefix.
class RawReader {
public:
    explicit RawReader(io::Input in) : in_(std::move(in)) {}
    /// Next message (view valid until the next call); false at end or on error.
    bool next(ByteView& message);
    Located error() const noexcept { return err_; }
    const io::Input& input() const noexcept { return in_; }
    std::uint64_t offset() const noexcept { return off_; }     ///< offset of the last message's prefix
    std::uint64_t bytes_read() const noexcept { return pos_; }

private:
    bool read_exact(std::uint8_t* p, std::size_t n, std::size_t& got);
    io::Input in_;
    std::vector<std::uint8_t> buf_;
    std::uint64_t pos_ = 0, off_ = 0;
    Located err_;
};

/// Appends one raw record.
void append_raw(std::vector<std::uint8_t>& out, ByteView message);

/// Loads a whole capture file (zstd or not) into messages; false with `error` set on failure.
bool load(const std::string& path, std::vector<std::vector<std::uint8_t>>& messages, std::string& error);

}  // namespace sov::capture
