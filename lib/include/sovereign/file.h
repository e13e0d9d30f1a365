// sovereign/file.h — whole files and durable replacement, for every writer of state.
//
// Every function returns ok or an I/O code (io_not_found, io_permission, io_no_space,
// io_not_directory, io_exists, io_error; see sov::from_errno) and sets `err` to
// "<path>: <reason>" (the errno text). Nothing throws.
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sov::file {

/// Reads the whole regular file `path` into `out` (resized to the file's size).
Errc read_file(const std::string& path, std::vector<std::uint8_t>& out, std::string& err);

/// Writes all of `data` to `fd` at its current position, retrying short writes and EINTR.
/// `path` only names the file in `err`.
Errc write_all(int fd, ByteView data, const std::string& path, std::string& err);

/// Reads exactly `n` bytes at byte offset `off` of `fd` into `buf`. A file that ends first
/// gives truncated (with `err` naming `path` and the offset where it ended).
Errc pread_all(int fd, std::uint64_t off, std::uint8_t* buf, std::size_t n, const std::string& path, std::string& err);

/// Creates or truncates `path` (mode 0644 minus the umask), writes `data` and fsyncs it.
/// Not atomic: a crash can leave a partial file. Use atomic_replace for state.
Errc write_file(const std::string& path, ByteView data, std::string& err);

/// fsync of a directory (makes the renames and creations inside it durable).
Errc fsync_dir(const std::string& dir, std::string& err);

/// Replaces `path` by a file holding exactly `data`, atomically and durably: writes
/// "<path>.tmp", fsyncs it, renames it over `path` and fsyncs the parent directory. After a
/// crash `path` holds either the old content or the new one, never a mix.
Errc atomic_replace(const std::string& path, ByteView data, std::string& err);

/// Renames `from` to `to` (same file system).
Errc rename(const std::string& from, const std::string& to, std::string& err);

}  // namespace sov::file
