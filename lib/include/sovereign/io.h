// sovereign/io.h — byte input for the tools: a file or stdin, transparently zstd-decoded.
// A zstd frame magic (28 b5 2f fd) at the start selects streaming decompression, so the
// corpus' *.zst captures can be read as they are. Offsets in diagnostics then refer to the
// decompressed stream.
#pragma once

#include "sovereign/errc.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace sov::io {

class Input {
public:
    /// Opens `path` ("-" = stdin). On failure open_errno() is set and read() returns -1.
    static Input open(const std::string& path);
    /// Wraps an already open descriptor (not closed by Input).
    static Input from_fd(int fd, std::string name);
    Input(Input&&) noexcept;
    Input& operator=(Input&&) noexcept;
    ~Input();

    /// Reads up to `n` bytes; returns the count, 0 at end, -1 on error (see error_text()).
    long read(std::uint8_t* buf, std::size_t n);
    const std::string& name() const noexcept { return name_; }
    int open_errno() const noexcept { return open_errno_; }
    bool compressed() const noexcept { return zstd_ != nullptr; }
    /// Describes the last read error ("Input/output error", "zstd: corrupted block …").
    const std::string& error_text() const noexcept { return error_; }

private:
    Input() = default;
    long raw_read(std::uint8_t* buf, std::size_t n);
    struct Zstd;
    int fd_ = -1;
    bool own_ = false;
    std::string name_;
    int open_errno_ = 0;
    std::string error_;
    std::unique_ptr<Zstd> zstd_;
    bool sniffed_ = false;
    std::uint8_t peek_[4] = {};
    std::size_t peek_len_ = 0, peek_pos_ = 0;
};

/// Lets a tool stop a blocked read: when `flag` (set by a signal handler installed without
/// SA_RESTART) is true and read(2) returns EINTR, Input::read fails with "interrupted"
/// instead of retrying. nullptr (the default) always retries.
void set_interrupt_flag(const std::atomic<bool>* flag) noexcept;

/// Reads a whole file ("-" = stdin), zstd-decoded if compressed. Returns false with
/// `error` set ("<path>: <reason>") on failure.
bool read_all(const std::string& path, std::string& out, std::string& error);

}  // namespace sov::io
