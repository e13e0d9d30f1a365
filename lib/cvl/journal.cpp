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

namespace {

// One record at `pos` of `b`: true with `env` and `next` set, or false with `why` (and
// `truncated` when the record only runs past the end of the file, as a write cut short by
// a crash does).
bool record_at(ByteView b, std::size_t pos, std::size_t& next, ByteView& env, Errc& why, bool& truncated) {
    truncated = false;
    std::uint64_t n;
    std::size_t vlen;
    Errc e = varint::decode(b.subspan(pos), n, vlen, frames::kMaxVarint);
    if (e == Errc::truncated) {
        truncated = true;
        why = e;
        return false;
    }
    if (e != Errc::ok) {
        why = e == Errc::varint_overflow ? Errc::frame_oversized : e;
        return false;
    }
    if (n == 0 || n > frames::kMaxEnvelope) {
        why = n == 0 ? Errc::frame_zero_length : Errc::frame_oversized;
        return false;
    }
    if (n > b.size() - pos - vlen) {
        truncated = true;
        why = Errc::truncated;
        return false;
    }
    env = b.subspan(pos + vlen, std::size_t(n));
    frames::Envelope parsed;
    if (Located pe = frames::parse_envelope(env, parsed); pe) {
        why = pe.errc;
        return false;
    }
    next = pos + vlen + std::size_t(n);
    return true;
}

// Whether reading can resume at `p`: at least one valid record starts there, and valid
// records follow up to the end of the file (a truncated last record allowed) or for
// kResyncRecords records in a row.
constexpr int kResyncRecords = 8;
bool resumes_at(ByteView b, std::size_t p) {
    int count = 0;
    std::size_t q = p;
    while (q < b.size()) {
        std::size_t next;
        ByteView env;
        Errc why;
        bool truncated;
        if (!record_at(b, q, next, env, why, truncated)) return truncated && count > 0;
        if (++count >= kResyncRecords) return true;
        q = next;
    }
    return count > 0;
}

}  // namespace

std::vector<std::pair<std::uint64_t, std::string>> Journal::list(const std::string& dir) {
    std::vector<std::pair<std::uint64_t, std::string>> journals;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(dir + "/journal", ec)) {
        std::string name = e.path().filename().string();
        if (name.size() == 23 && name.ends_with(".frames") &&
            std::all_of(name.begin(), name.begin() + 16, [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
            journals.emplace_back(std::stoull(name.substr(0, 16), nullptr, 16), e.path().string());
    }
    std::sort(journals.begin(), journals.end());
    return journals;
}

Errc Journal::read_all(const std::string& dir, std::vector<Contents>& out, std::string& err) {
    const auto journals = list(dir);
    out.clear();
    out.reserve(journals.size());
    for (auto& [first, path] : journals) {
        Contents& c = out.emplace_back();
        c.path = path;
        c.first = first;
        if (Errc e = file::read_file(path, c.bytes, err); e != Errc::ok) return e;
        const ByteView b(c.bytes);
        std::uint64_t ord = first;
        bool certain = true;
        std::size_t pos = 0;
        while (pos < b.size()) {
            std::size_t next;
            ByteView env;
            Errc why;
            bool truncated;
            if (record_at(b, pos, next, env, why, truncated)) {
                c.records.push_back({ord++, certain, env, pos});
                pos = next;
                continue;
            }
            // Not a record. First candidate: the end its own length prefix gives (only the
            // envelope is damaged: exactly one record lost, the ordinals after it stay known).
            Damage d;
            d.offset = pos;
            d.ord = ord;
            d.reason = std::string(to_string(why));
            std::uint64_t n;
            std::size_t vlen;
            std::size_t resume = b.size();
            if (!truncated && varint::decode(b.subspan(pos), n, vlen, frames::kMaxVarint) == Errc::ok && n != 0 &&
                n <= b.size() - pos - vlen && (pos + vlen + n == b.size() || resumes_at(b, pos + vlen + std::size_t(n)))) {
                resume = pos + vlen + std::size_t(n);
                d.one_record = true;
            } else {
                // Else the first later offset from which valid records follow.
                std::size_t p = pos + 1;
                while (p < b.size() && !resumes_at(b, p)) ++p;
                if (p == b.size() && truncated) {  // nothing valid after it: a write cut short
                    c.truncated_tail = true;
                    break;
                }
                resume = p;
                certain = false;
            }
            d.length = resume - pos;
            c.damage.push_back(std::move(d));
            ++ord;  // the damaged stretch holds at least one record
            pos = resume;
        }
    }
    return Errc::ok;
}

}  // namespace sov::cvl::detail
