// Following a live archive (sovereign/cvl_tail.h). The sealed part is read through an Archive
// (view_seq: whole clusters, so reading in order decompresses each cluster once); the rest
// from the journal that continues it, with a reader per purpose that keeps its file offset
// and ordinal, so that following the head costs one read of the new bytes.
//
// Order of looking (format §1, §6): a seal renames the segment index (commit point) before it
// starts the next journal and deletes the old one. So: list the journals, then the segments;
// an ordinal below the sealed end is read from a segment, above it from the journal with the
// largest first ordinal at or below it.
#include "sovereign/cvl_tail.h"

#include "internal/cvl/common.h"
#include "internal/cvl/journal.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"
#include "sovereign/varint.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sov::cvl {

namespace {

constexpr std::size_t kReadAhead = 64 * 1024;

std::string sys_text(const std::string& path, const char* what) {
    return path + ": " + what + ": " + std::strerror(errno);
}

// One journal file read in order: the record at byte `off` has ordinal `ord`.
struct JReader {
    std::string path;
    std::uint64_t first = 0;
    int fd = -1;
    std::uint64_t ord = 0, off = 0;
    std::vector<std::uint8_t> buf;
    std::uint64_t buf_off = 0;
    std::size_t buf_len = 0;

    JReader() = default;
    JReader(const JReader&) = delete;
    JReader& operator=(const JReader&) = delete;
    ~JReader() { close(); }

    void close() {
        if (fd >= 0) ::close(fd);
        fd = -1;
        buf_len = 0;
    }
    Errc open(std::uint64_t f, const std::string& p, std::string& err) {
        close();
        fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) return Errc::cvl_no_ordinal;  // rotated away meanwhile: look again
            err = sys_text(p, "cannot open");
            return Errc::io_error;
        }
        path = p;
        first = ord = f;
        off = 0;
        return Errc::ok;
    }
    /// True when the journal was deleted (rotated at a seal): no more records will come.
    bool rotated() const {
        struct stat st;
        return fd < 0 || ::fstat(fd, &st) != 0 || st.st_nlink == 0;
    }
    /// Bytes available from file offset `at` in the buffer, reading so that at least `n` are
    /// there if the file has them.
    std::size_t avail(std::uint64_t at, std::size_t n, Errc& code, std::string& err) {
        code = Errc::ok;
        if (at >= buf_off && at + n <= buf_off + buf_len) return std::size_t(buf_off + buf_len - at);
        const std::size_t want = std::max(n, kReadAhead);
        if (buf.size() < want) buf.resize(want);
        else if (buf.size() > 4 * kReadAhead && want <= kReadAhead) buf.resize(kReadAhead), buf.shrink_to_fit();
        buf_off = at;
        buf_len = 0;
        while (buf_len < want) {
            ssize_t r = ::pread(fd, buf.data() + buf_len, want - buf_len, off_t(at + buf_len));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                err = sys_text(path, "cannot read");
                code = Errc::io_error;
                return 0;
            }
            if (r == 0) break;
            buf_len += std::size_t(r);
            if (buf_len >= n) break;
        }
        return buf_len;
    }
    /// The record at (off, ord): ok (env set, position moved past it), cvl_no_ordinal (not
    /// complete yet), or damage naming the journal and byte offset.
    Errc read(ByteView& env, std::string& err) {
        Errc code;
        std::size_t a = avail(off, frames::kMaxVarint, code, err);
        if (code != Errc::ok) return code;
        if (a == 0) return Errc::cvl_no_ordinal;
        const std::uint8_t* p = buf.data() + (off - buf_off);
        std::uint64_t n = 0;
        std::size_t vl = 0;
        Errc e = varint::decode(ByteView(p, std::min(a, frames::kMaxVarint)), n, vl, frames::kMaxVarint);
        if (e == Errc::truncated && a < frames::kMaxVarint) return Errc::cvl_no_ordinal;  // a write in progress
        auto damage = [&](Errc c, std::uint64_t at, const char* what) {
            err = path + ":" + std::to_string(at) + ": journal record of ordinal " + std::to_string(ord) + ": " + what +
                  " (" + std::string(to_string(c)) + ")";
            return c;
        };
        if (e != Errc::ok) return damage(e == Errc::varint_overflow ? Errc::frame_oversized : e, off, "bad length prefix");
        if (n == 0) return damage(Errc::frame_zero_length, off, "zero length");
        if (n > frames::kMaxEnvelope) return damage(Errc::frame_oversized, off, "longer than 16 MiB");
        a = avail(off, vl + std::size_t(n), code, err);
        if (code != Errc::ok) return code;
        if (a < vl + n) return Errc::cvl_no_ordinal;
        p = buf.data() + (off - buf_off);
        frames::Envelope en;
        if (Located l = frames::parse_envelope(ByteView(p + vl, std::size_t(n)), en); l)
            return damage(l.errc, off + vl + l.offset, "not a valid envelope");
        env = en.raw;
        off += vl + n;
        ++ord;
        return Errc::ok;
    }
    /// Positions the reader at ordinal `o` (≥ first): from the start if it is behind, then
    /// record by record. cvl_no_ordinal when the journal does not reach `o` yet.
    Errc seek(std::uint64_t o, std::string& err) {
        if (o < ord) {
            ord = first;
            off = 0;
        }
        ByteView skip;
        while (ord < o)
            if (Errc e = read(skip, err); e != Errc::ok) return e;
        return Errc::ok;
    }
};

}  // namespace

struct Tail::Impl {
    std::unique_ptr<Archive> ar;
    std::string dir;
    std::uint64_t sealed_end = 0;
    JReader feed;  // next()
    JReader scan;  // head()

    /// Looks for news after `j` found nothing at `ord`: new segments, or another journal.
    /// changed = false when there is none (cheap: one stat for the next segment, one fstat).
    Errc news(JReader& j, std::uint64_t ord, bool& changed, std::string& err) {
        changed = false;
        if (ar->follow()) {
            sealed_end = ar->end_ordinal();
            changed = true;
            return Errc::ok;
        }
        if (j.fd >= 0 && j.first <= ord && !j.rotated()) return Errc::ok;  // the same journal, nothing new
        const auto journals = detail::Journal::list(dir);
        if (ar->follow()) sealed_end = ar->end_ordinal();
        if (ord < sealed_end) {
            changed = true;
            return Errc::ok;
        }
        const std::pair<std::uint64_t, std::string>* pick = nullptr;
        for (const auto& js : journals)
            if (js.first <= ord) pick = &js;
        if (!pick || (j.fd >= 0 && pick->first == j.first && pick->second == j.path && !j.rotated())) return Errc::ok;
        Errc e = j.open(pick->first, pick->second, err);
        if (e == Errc::cvl_no_ordinal) return Errc::ok;  // gone already: the next look finds its successor
        if (e != Errc::ok) return e;
        changed = true;
        return Errc::ok;
    }
};

Tail::Tail(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tail::~Tail() = default;

std::unique_ptr<Tail> Tail::open(const std::string& dir, std::string& err, Errc* code) {
    auto im = std::make_unique<Impl>();
    im->ar = Archive::open(dir, err, code);
    if (!im->ar) return nullptr;
    im->ar->cache_clusters(2);  // reading in order
    im->dir = dir;
    im->sealed_end = im->ar->end_ordinal();
    return std::unique_ptr<Tail>(new Tail(std::move(im)));
}

Archive& Tail::archive() noexcept { return *impl_->ar; }
bool Tail::deleted(std::uint64_t ord) const noexcept { return impl_->ar->deleted(ord); }

Errc Tail::next(std::uint64_t& ord, ByteView& env, std::string& err) {
    Impl& im = *impl_;
    for (int round = 0;; ++round) {
        while (ord < im.sealed_end) {
            Errc e = im.ar->view_seq(ord, env, err);
            if (e != Errc::cvl_purged) return e;
            ++ord;
        }
        if (im.feed.fd >= 0 && ord >= im.feed.first) {
            Errc e = im.feed.seek(ord, err);
            if (e == Errc::ok) e = im.feed.read(env, err);
            if (e != Errc::cvl_no_ordinal) return e;
        }
        if (round >= 3) return Errc::cvl_no_ordinal;
        bool changed = false;
        if (Errc e = im.news(im.feed, ord, changed, err); e != Errc::ok) return e;
        if (!changed) return Errc::cvl_no_ordinal;
    }
}

Errc Tail::head(std::uint64_t& out, std::string& err) {
    Impl& im = *impl_;
    for (int round = 0;; ++round) {
        std::uint64_t at = im.sealed_end;
        if (im.scan.fd >= 0 && im.scan.first <= at) {
            Errc e = im.scan.ord < at ? im.scan.seek(at, err) : Errc::ok;
            ByteView env;
            if (e == Errc::ok)
                while ((e = im.scan.read(env, err)) == Errc::ok) {
                }
            if (e != Errc::cvl_no_ordinal) return e;
            at = std::max(at, im.scan.ord);
        }
        bool changed = false;
        if (round < 3)
            if (Errc e = im.news(im.scan, at, changed, err); e != Errc::ok) return e;
        if (!changed) {
            out = at;
            return Errc::ok;
        }
    }
}

FeedItem Feed::next(std::size_t budget) {
    FeedItem it;
    for (std::size_t looked = 0;; ++looked) {
        if (looked >= budget) {
            it.kind = FeedItem::Kind::busy;
            it.ord = ord_;
            return it;
        }
        ByteView env;
        std::uint64_t o = ord_;
        Errc e = tail_.next(o, env, it.err);
        it.ord = o;
        if (e == Errc::cvl_no_ordinal) {
            ord_ = o;
            it.kind = FeedItem::Kind::wait;
            it.err.clear();
            return it;
        }
        if (e != Errc::ok) {
            ord_ = o;
            it.kind = FeedItem::Kind::error;
            it.code = e;
            return it;
        }
        ord_ = o + 1;
        if (tail_.deleted(o)) {
            ++hidden_;
            continue;
        }
        frames::Envelope en;
        if (Located l = frames::parse_envelope(env, en); l) {
            // Sealed envelopes were checked when packed: this is damage of the stored bytes.
            it.kind = FeedItem::Kind::error;
            it.code = l.errc;
            it.err = tail_.archive().dir() + ": ordinal " + std::to_string(o) + ": stored envelope is not valid at byte " +
                     std::to_string(l.offset) + " (" + std::string(to_string(l.errc)) + ")";
            ord_ = o;
            return it;
        }
        const std::optional<std::int64_t> seq = en.is_marker() ? std::nullopt : seq_of_wire(en.wire);
        if (!seq || *seq < 0) {
            ++skipped_;
            continue;
        }
        if (filter_.active() && !wanted(en.wire)) {
            ++filtered_;
            continue;
        }
        it.kind = FeedItem::Kind::message;
        if (mode_ == SeqMode::source) {
            it.wire = en.wire;
            it.seq = *seq;
        } else {
            if (!msg::resequence(en.wire, o + 1, out_)) {
                ++skipped_;
                continue;
            }
            it.wire = out_;
            it.seq = std::int64_t(o + 1);
        }
        return it;
    }
}

bool Feed::wanted(ByteView wire) {
    if (msg::parse(wire, m_)) return false;  // unreadable: matches no criterion
    if (!filter_.dids.empty() && !filter_.dids.contains(m_.did)) return false;
    if (filter_.collections.empty() || m_.type != msg::Type::commit) return true;
    for (const msg::RepoOp& op : m_.ops)
        if (filter_.collections.contains(op.path.substr(0, op.path.find('/')))) return true;
    return false;
}

namespace {

// The first message at ordinal ≥ `o` with a seq (markers and seq-less frames passed over);
// found = false when none is readable before the head.
Errc first_seq_from(Tail& t, std::uint64_t o, std::uint64_t head, bool& found, std::int64_t& seq, std::uint64_t& at,
                    std::string& err) {
    found = false;
    while (o < head) {
        ByteView env;
        Errc e = t.next(o, env, err);
        if (e == Errc::cvl_no_ordinal) return Errc::ok;
        if (e != Errc::ok) return e;
        if (o >= head) return Errc::ok;
        frames::Envelope en;
        if (Located l = frames::parse_envelope(env, en); l) {
            err = t.archive().dir() + ": ordinal " + std::to_string(o) + ": stored envelope is not valid (" +
                  std::string(to_string(l.errc)) + ")";
            return l.errc;
        }
        if (!en.is_marker())
            if (auto s = seq_of_wire(en.wire); s && *s >= 0) {
                found = true;
                seq = *s;
                at = o;
                return Errc::ok;
            }
        ++o;
    }
    return Errc::ok;
}

}  // namespace

Errc find_start(Tail& tail, SeqMode mode, std::optional<std::int64_t> cursor, StartPoint& out, std::string& err) {
    out = StartPoint{};
    std::uint64_t head = 0;
    if (Errc e = tail.head(head, err); e != Errc::ok) return e;
    const std::int64_t c = cursor ? std::max<std::int64_t>(*cursor, 0) : 0;
    if (mode == SeqMode::ordinal) {
        out.head_seq = std::int64_t(head);
        if (!cursor) out.ord = head;
        else if (std::uint64_t(c) > head) out.future = true;
        else out.ord = std::uint64_t(c);
        return Errc::ok;
    }
    // Source mode. The newest seq: the last seq-bearing message, found by looking back in
    // growing steps from the head.
    bool found = false;
    std::int64_t seq = 0;
    std::uint64_t at = 0;
    for (std::uint64_t step = 64, lo = head; lo > 0 && !found; step *= 4) {
        std::uint64_t from = lo > step ? lo - step : 0;
        bool f = false;
        std::int64_t s = 0;
        std::uint64_t a = from;
        // The last one in [from, lo).
        for (std::uint64_t o = from; o < lo;) {
            if (Errc e = first_seq_from(tail, o, lo, f, s, a, err); e != Errc::ok) return e;
            if (!f) break;
            found = true;
            seq = s;
            at = a;
            o = a + 1;
        }
        lo = from;
    }
    out.head_seq = found ? seq : 0;
    if (!cursor) {
        out.ord = head;
        return Errc::ok;
    }
    if (c > out.head_seq) {
        out.future = true;
        return Errc::ok;
    }
    // The smallest ordinal whose next seq-bearing message has seq > c (seqs increase with
    // the ordinal in an archive of one source).
    std::uint64_t lo = 0, hi = found ? at + 1 : 0;
    while (lo < hi) {
        const std::uint64_t mid = lo + (hi - lo) / 2;
        bool f = false;
        std::int64_t s = 0;
        std::uint64_t a = 0;
        if (Errc e = first_seq_from(tail, mid, hi, f, s, a, err); e != Errc::ok) return e;
        if (f && s <= c) lo = a + 1;
        else hi = mid;
    }
    out.ord = lo;
    return Errc::ok;
}

// --- Watch ------------------------------------------------------------------------------------

std::unique_ptr<Watch> Watch::open(const std::string& dir, std::string& err, Errc* code) {
    std::unique_ptr<Watch> w(new Watch());
    auto fail = [&](const std::string& what) {
        err = what + ": " + std::strerror(errno);
        if (code) *code = Errc::io_error;
        return nullptr;
    };
    w->fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd_ < 0) return fail(dir + ": cannot watch (inotify)");
    if (::pipe2(w->stop_, O_NONBLOCK | O_CLOEXEC) != 0) return fail("pipe");
    const std::uint32_t mask = IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE;
    for (const char* sub : {"/journal", "/seg"})
        if (::inotify_add_watch(w->fd_, (dir + sub).c_str(), mask) < 0) return fail(dir + sub + ": cannot watch");
    if (code) *code = Errc::ok;
    return w;
}

Watch::~Watch() {
    if (fd_ >= 0) ::close(fd_);
    for (int f : stop_)
        if (f >= 0) ::close(f);
}

void Watch::close() {
    const char b = 1;
    [[maybe_unused]] ssize_t r = ::write(stop_[1], &b, 1);
}

bool Watch::wait(int timeout_ms) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
    int r;
    do r = ::poll(p, 2, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0 || (p[1].revents & POLLIN)) return false;
    alignas(inotify_event) char buf[16384];
    bool any = false;
    for (;;) {
        ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n <= 0) break;
        any = true;
    }
    return any;
}

}  // namespace sov::cvl
