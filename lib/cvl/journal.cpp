// The journal (docs/format-cvl.md §6).
#include "internal/cvl/journal.h"

#include "internal/cvl/common.h"
#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/varint.h"

#include <algorithm>
#include <cerrno>
#include <sys/uio.h>
#include <fcntl.h>
#include <filesystem>
#include <unistd.h>

namespace sov::cvl::detail {

Journal::~Journal() {
    if (fd_ >= 0) ::close(fd_);
}

Errc Journal::open(const std::string& dir, std::uint64_t first, std::string& err) {
    if (fd_ >= 0) ::close(fd_);
    dir_ = dir;
    path_ = dir + "/journal/" + journal_name(first);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) return sys_error(path_, err);
    return file::fsync_dir(dir + "/journal", err);
}

Errc Journal::append(std::span<const ByteView> envelopes, std::string& err) {
    // Large envelopes are written from where they are (writev of length prefix + envelope),
    // small ones are gathered: the journal never copies the bulk of the stream.
    constexpr std::size_t kGather = 512;
    if (envelopes.size() == 1 && envelopes[0].size() >= kGather) {
        std::uint8_t head[10];
        const std::size_t hl = varint::encode(envelopes[0].size(), head);
        iovec iov[2] = {{head, hl}, {const_cast<std::uint8_t*>(envelopes[0].data()), envelopes[0].size()}};
        const std::size_t total = hl + envelopes[0].size();
        ssize_t w;
        do w = ::writev(fd_, iov, 2);
        while (w < 0 && errno == EINTR);
        if (w < 0) return sys_error(path_, err);
        if (std::size_t(w) == total) return Errc::ok;
        // A short write: the rest through the copying path.
        buf_.clear();
        frames::append_envelope(buf_, envelopes[0]);
        return file::write_all(fd_, ByteView(buf_).subspan(std::size_t(w)), path_, err);
    }
    buf_.clear();
    for (ByteView env : envelopes) frames::append_envelope(buf_, env);
    return file::write_all(fd_, buf_, path_, err);
}

Errc Journal::sync(std::string& err) {
    if (::fdatasync(fd_) != 0) return sys_error(path_, err);
    return Errc::ok;
}

Errc Journal::rotate(std::uint64_t first, std::span<const ByteView> envelopes, std::string& err) {
    const std::string old = path_;
    if (Errc e = open(dir_, first, err); e != Errc::ok) return e;
    if (Errc e = append(envelopes, err); e != Errc::ok) return e;
    if (Errc e = sync(err); e != Errc::ok) return e;
    if (old != path_) ::unlink(old.c_str());
    return file::fsync_dir(dir_ + "/journal", err);
}

Errc Journal::replay(const std::string& dir, const std::function<void(std::uint64_t, ByteView)>& f,
                     std::vector<std::string>& paths, std::string& err) {
    (void)err;
    std::vector<std::pair<std::uint64_t, std::string>> journals;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(dir + "/journal", ec)) {
        std::string name = e.path().filename().string();
        if (name.size() == 23 && name.ends_with(".frames") &&
            std::all_of(name.begin(), name.begin() + 16, [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
            journals.emplace_back(std::stoull(name.substr(0, 16), nullptr, 16), e.path().string());
    }
    std::sort(journals.begin(), journals.end());
    for (auto& [first, path] : journals) {
        paths.push_back(path);
        frames::Reader r = frames::Reader::open(path);
        frames::Envelope env;
        std::uint64_t ord = first;
        while (r.next(env)) f(ord++, env.raw);
        // A truncated last record is a write interrupted by the crash: dropped (format §6).
    }
    return Errc::ok;
}

}  // namespace sov::cvl::detail
