#include "sovereign/file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sov::file {

namespace {

Errc sys_fail(const std::string& path, std::string& err) {
    const int e = errno;
    err = path + ": " + std::strerror(e);
    return from_errno(e) == Errc::ok ? Errc::io_error : from_errno(e);
}

std::string parent_of(const std::string& path) {
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

}  // namespace

Errc read_file(const std::string& path, std::vector<std::uint8_t>& out, std::string& err) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sys_fail(path, err);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        Errc e = sys_fail(path, err);
        ::close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        err = path + ": not a regular file";
        return Errc::io_not_directory;
    }
    out.resize(std::size_t(st.st_size));
    Errc e = pread_all(fd, 0, out.data(), out.size(), path, err);
    ::close(fd);
    return e;
}

Errc pread_all(int fd, std::uint64_t off, std::uint8_t* buf, std::size_t n, const std::string& path, std::string& err) {
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = ::pread(fd, buf + got, n - got, off_t(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return sys_fail(path, err);
        if (r == 0) {
            err = path + ":" + std::to_string(off + got) + ": file ends early (wanted " + std::to_string(n) +
                  " bytes at offset " + std::to_string(off) + ")";
            return Errc::truncated;
        }
        got += std::size_t(r);
    }
    return Errc::ok;
}

Errc write_all(int fd, ByteView data, const std::string& path, std::string& err) {
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t w = ::write(fd, data.data() + off, data.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return sys_fail(path, err);
        off += std::size_t(w);
    }
    return Errc::ok;
}

Errc write_file(const std::string& path, ByteView data, std::string& err) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return sys_fail(path, err);
    Errc e = write_all(fd, data, path, err);
    if (e == Errc::ok && ::fsync(fd) != 0) e = sys_fail(path, err);
    if (::close(fd) != 0 && e == Errc::ok) e = sys_fail(path, err);
    return e;
}

Errc fsync_dir(const std::string& dir, std::string& err) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return sys_fail(dir, err);
    Errc e = ::fsync(fd) == 0 ? Errc::ok : sys_fail(dir, err);
    ::close(fd);
    return e;
}

Errc rename(const std::string& from, const std::string& to, std::string& err) {
    if (std::rename(from.c_str(), to.c_str()) != 0) return sys_fail(to, err);
    return Errc::ok;
}

Errc atomic_replace(const std::string& path, ByteView data, std::string& err) {
    const std::string tmp = path + ".tmp";
    if (Errc e = write_file(tmp, data, err); e != Errc::ok) {
        ::unlink(tmp.c_str());
        return e;
    }
    if (Errc e = rename(tmp, path, err); e != Errc::ok) {
        ::unlink(tmp.c_str());
        return e;
    }
    return fsync_dir(parent_of(path), err);
}

}  // namespace sov::file
