// ghost.cpp — relay against mesh matching (ghost.h; docs/design.md §11).
//
// Layout: key extraction (key_of), then the Matcher: per-source observation history (outages
// and unobserved spans from the markers), the pending events of each side keyed by a 128-bit
// hash of the match key, a FIFO per side in arrival order for the window, a list of events
// parked while the other side is out, and the recently decided keys (duplicates, late copies).
#include "sovereign/ghost.h"

#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <unordered_map>

namespace sov::ghost {

std::string_view to_string(Kind k) noexcept {
    switch (k) {
        case Kind::match: return "match";
        case Kind::drop: return "drop";
        case Kind::unobserved: return "unobserved";
        case Kind::relay_only: return "relay-only";
    }
    return "?";
}

std::string_view to_string(Side s) noexcept { return s == Side::relay ? "relay" : "mesh"; }

// ---- Histogram --------------------------------------------------------------------------------

namespace {
std::size_t bucket_of(std::int64_t us) noexcept {
    if (us < Histogram::kMinUs) return 0;
    if (us >= Histogram::kMaxUs) return Histogram::kBuckets - 1;
    return std::size_t((us - Histogram::kMinUs) / Histogram::kBucketUs) + 1;
}
}  // namespace

Histogram::Histogram(const Histogram& o) : n_(o.n_), min_(o.min_), max_(o.max_) {
    if (o.b_.empty()) return;
    b_.resize(kBuckets);  // zeros from calloc
    if (o.n_ == 0) return;
    auto lo = bucket_of(o.min_), hi = bucket_of(o.max_);
    std::copy(o.b_.begin() + std::ptrdiff_t(lo), o.b_.begin() + std::ptrdiff_t(hi) + 1, b_.begin() + std::ptrdiff_t(lo));
}

Histogram& Histogram::operator=(const Histogram& o) {
    if (this != &o) *this = Histogram(o);
    return *this;
}

void Histogram::add(std::int64_t us) noexcept {
    if (b_.empty()) b_.resize(kBuckets);  // zeros from calloc: only the pages written are touched
    std::size_t i = bucket_of(us);
    ++b_[i];
    ++n_;
    min_ = std::min(min_, us);
    max_ = std::max(max_, us);
}

std::int64_t Histogram::quantile(double q) const noexcept {
    if (n_ == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    // The smallest bucket whose cumulative count reaches ceil(q·n) (at least 1).
    auto rank = std::max<std::uint64_t>(1, std::uint64_t(q * double(n_) + 0.999999));
    std::uint64_t c = 0;
    for (std::size_t i = 0; i < b_.size(); ++i) {
        c += b_[i];
        if (c >= rank) {
            if (i == 0) return min_;
            if (i == b_.size() - 1) return max_;
            auto mid = kMinUs + std::int64_t(i - 1) * kBucketUs + kBucketUs / 2;
            return std::clamp(mid, min_, max_);
        }
    }
    return max_;
}

// ---- keys ----------------------------------------------------------------------------------

namespace {

// s == lit, with the literal's length known here: an inlined compare instead of a call to
// memcmp (the key names of every message go through these).
template <std::size_t N>
inline bool eq(std::string_view s, const char (&lit)[N]) noexcept {
    return s.size() == N - 1 && std::memcmp(s.data(), lit, N - 1) == 0;
}

// Valid UTF-8: ASCII (every key name, DID and collection) checked inline, the rest by cbor.
inline bool utf8_ok(const std::uint8_t* p, std::size_t n) noexcept {
    std::uint64_t any = 0;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        any |= w;
    }
    for (; i < n; ++i) any |= p[i];
    return (any & 0x8080808080808080ULL) == 0 || cbor::valid_utf8(p, n);
}

// A bounded CBOR scanner for the few fields a key needs. It checks every length against the
// end of the bytes and the nesting depth, and that the strings it returns are valid UTF-8; it
// does not check canonical form (cbor-verify does): ghost-diff compares streams, it does not
// verify them, and a strict check of every payload was a third of its time.
struct Scan {
    const std::uint8_t* p;
    const std::uint8_t* end;

    // Reads a head: major type and argument. false on truncation or indefinite lengths.
    bool head(unsigned& major, std::uint64_t& arg) {
        if (p >= end) [[unlikely]]
            return false;
        std::uint8_t b = *p++;
        major = b >> 5;
        unsigned ai = b & 31;
        if (ai < 24) [[likely]] {
            arg = ai;
            return true;
        }
        unsigned n = ai == 24 ? 1 : ai == 25 ? 2 : ai == 26 ? 4 : ai == 27 ? 8 : 0;
        if (n == 0 || std::size_t(end - p) < n) return false;
        arg = 0;
        for (unsigned i = 0; i < n; ++i) arg = (arg << 8) | *p++;
        return true;
    }
    bool skip(int depth = 0) {
        unsigned major;
        std::uint64_t arg;
        if (depth > 32 || !head(major, arg)) return false;
        switch (major) {
            case 0:
            case 1:
            case 7: return true;  // ints, simple values; floats have their bytes in the argument
            case 2:
            case 3:
                if (arg > std::uint64_t(end - p)) return false;
                p += arg;
                return true;
            case 4:
            case 5: {
                std::uint64_t items = major == 5 ? arg * 2 : arg;
                if (arg > std::uint64_t(end - p)) return false;  // every item takes a byte
                for (std::uint64_t i = 0; i < items; ++i)
                    if (!skip(depth + 1)) return false;
                return true;
            }
            default: return skip(depth + 1);  // a tag and its item
        }
    }
    bool text(std::string_view& out) {
        unsigned major;
        std::uint64_t n;
        if (!head(major, n) || major != 3 || n > std::uint64_t(end - p)) return false;
        if (!utf8_ok(p, std::size_t(n))) return false;
        out = {reinterpret_cast<const char*>(p), std::size_t(n)};
        p += n;
        return true;
    }
    // A map key: text() with a fast path for the short ASCII names of the event types (one
    // byte of head, at most 8 bytes checked in one word).
    [[gnu::always_inline]] bool key(std::string_view& out) {
        if (end - p >= 9 && (*p & 0xe0) == 0x60 && (*p & 31) <= 8) {
            std::size_t n = *p & 31;
            std::uint64_t w;
            std::memcpy(&w, p + 1, 8);
            std::uint64_t mask = n == 8 ? ~std::uint64_t(0) : (std::uint64_t(1) << (8 * n)) - 1;
            if ((w & mask & 0x8080808080808080ULL) == 0) {
                out = {reinterpret_cast<const char*>(p + 1), n};
                p += 1 + n;
                return true;
            }
        }
        return text(out);
    }
    bool bytes(ByteView& out) {
        unsigned major;
        std::uint64_t n;
        if (!head(major, n) || major != 2 || n > std::uint64_t(end - p)) return false;
        out = {p, std::size_t(n)};
        p += n;
        return true;
    }
    // A DAG-CBOR link: tag 42 over bytes 0x00 ‖ CID; `out` is the CID.
    bool link(ByteView& out) {
        unsigned major;
        std::uint64_t tag;
        ByteView b;
        if (!head(major, tag) || major != 6 || tag != 42 || !bytes(b) || b.size() < 2 || b[0] != 0) return false;
        out = b.subspan(1);
        return true;
    }
    // The entry count of a map; false if the item is not a map.
    bool map(std::uint64_t& n) {
        unsigned major;
        return head(major, n) && major == 5 && n <= std::uint64_t(end - p);
    }
};

}  // namespace

Errc key_of(ByteView wire, Key& out, std::string& why) {
    out = Key{};
    Scan sc{wire.data(), wire.data() + wire.size()};
    auto bad = [&](const char* what) {
        why = what;
        out = Key{};
        return Errc::frame_bad_envelope;
    };
    // The header: {op, t?}.
    std::uint64_t n;
    if (!sc.map(n)) return bad("the message does not start with a CBOR map (its header)");
    std::int64_t op = 0;
    std::string_view t;
    for (std::uint64_t i = 0; i < n; ++i) {
        std::string_view k;
        if (!sc.key(k)) return bad("a header key is not a text string");
        if (eq(k, "op")) {
            unsigned major;
            std::uint64_t v;
            if (!sc.head(major, v) || major > 1) return bad("the header's op is not an integer");
            op = major == 0 ? std::int64_t(v & 0x7fffffffffffffff) : -1 - std::int64_t(v & 0x7fffffffffffffff);
        } else if (eq(k, "t")) {
            if (!sc.text(t)) return bad("the header's t is not a text string");
        } else if (!sc.skip()) {
            return bad("the header is cut short");
        }
    }
    if (op != 1) return Errc::ok;  // error frames: not matched
    if (eq(t, "#commit")) out.type = "commit";
    else if (eq(t, "#sync")) out.type = "sync";
    else if (eq(t, "#identity")) out.type = "identity";
    else if (eq(t, "#account")) out.type = "account";
    else return Errc::ok;  // #info, legacy and unknown types
    bool commit = eq(out.type, "commit"), sync = eq(out.type, "sync"), account = eq(out.type, "account");
    if (!sc.map(n)) return bad("the payload is not a CBOR map");
    bool has_time = false;
    ByteView blocks;
    auto type = out.type;
    for (std::uint64_t i = 0; i < n; ++i) {
        std::string_view k;
        if (!sc.key(k)) return bad("a payload key is not a text string");
        bool ok = true;
        switch (k.size()) {
            case 3:
                if (eq(k, "did") && !commit) ok = sc.text(out.did);
                else if (eq(k, "ops") && commit) {
                    // The collection of the first op: [{path: "collection/rkey", …}, …].
                    unsigned major;
                    std::uint64_t ops;
                    ok = sc.head(major, ops) && major == 4 && ops <= std::uint64_t(sc.end - sc.p);
                    for (std::uint64_t j = 0; ok && j < ops; ++j) {
                        std::uint64_t m;
                        if (j > 0 || !sc.map(m)) {
                            ok = j > 0 ? sc.skip() : false;
                            continue;
                        }
                        for (std::uint64_t e = 0; ok && e < m; ++e) {
                            std::string_view ok2;
                            std::string_view path;
                            if (!sc.key(ok2)) ok = false;
                            else if (eq(ok2, "path") && sc.text(path)) out.collection = path.substr(0, path.find('/'));
                            else if (eq(ok2, "path")) ok = false;
                            else ok = sc.skip();
                        }
                    }
                } else ok = sc.skip();
                break;
            case 4:
                if (eq(k, "repo") && commit) ok = sc.text(out.did);
                else if (eq(k, "time")) ok = sc.text(out.time), has_time = ok;
                else ok = sc.skip();
                break;
            case 6:
                if (eq(k, "commit") && commit) ok = sc.link(out.commit);
                else if (eq(k, "blocks") && sync) ok = sc.bytes(blocks);
                else if (eq(k, "active") && account) {
                    unsigned major = 0;
                    std::uint64_t v = 0;
                    ok = sc.head(major, v) && major == 7 && (v == 20 || v == 21);
                    out.active = v == 21;
                } else if (eq(k, "status") && account) {
                    // text, or null when absent in spirit
                    if (sc.p < sc.end && *sc.p == 0xf6) ++sc.p;
                    else ok = sc.text(out.status);
                } else ok = sc.skip();
                break;
            default: ok = sc.skip();
        }
        if (!ok) {
            why = "#" + std::string(type) + ": the payload's " + std::string(k) + " is not what it must be, or cut short";
            out = Key{};
            return Errc::frame_bad_envelope;
        }
    }
    if (sc.p != sc.end) return bad("bytes after the payload");
    auto missing = [&](const char* f) {
        why = std::string("#") + std::string(out.type) + " without " + f;
        out = Key{};
        return Errc::cbor_missing_field;
    };
    if (out.did.empty()) return missing(commit ? "repo" : "did");
    if (sync) {
        car::Reader r;
        if (blocks.empty() || r.open(blocks)) return missing("a CAR with a root in blocks");
        out.commit = r.root();
    }
    if ((commit || sync) && out.commit.empty()) return missing("commit");
    if ((eq(out.type, "identity") || account) && !has_time) return missing("time");
    return Errc::ok;
}

namespace {


// A 128-bit hash of the match key: a class byte ('c' commit/sync, 'i' identity, 'a' account),
// the DID and the rest of the key, each length-prefixed so that no two keys share a byte string.
using Hash128 = KeyHash;
struct Hash128Hasher {
    std::size_t operator()(const Hash128& h) const noexcept { return std::size_t(h.a); }
};

inline std::uint64_t mix(std::uint64_t x) noexcept {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

// Each field is its length and then its bytes, a word (8 bytes) at a time, the last word
// zero-padded: the lengths keep the fields apart, so no two keys hash the same byte stream.
class KeyHasher {
public:
    [[gnu::always_inline]] void add(const void* data, std::size_t n) noexcept {
        word(n);
        auto p = static_cast<const std::uint8_t*>(data);
        n_ += n;
        for (; n >= 8; p += 8, n -= 8) {
            std::uint64_t w;
            std::memcpy(&w, p, 8);
            word(w);
        }
        if (n) {
            std::uint64_t w = 0;
            std::memcpy(&w, p, n);
            word(w);
        }
    }
    Hash128 done() noexcept { return {mix(a_ ^ n_), mix(b_ + n_ * 0x9e3779b97f4a7c15ULL)}; }

private:
    void word(std::uint64_t w) noexcept {
        a_ = mix(a_ ^ w) + 0x9e3779b97f4a7c15ULL;
        b_ = (b_ ^ mix(w + 0x632be59bd9b4e019ULL)) * 0x100000001b3ULL;
    }
    std::uint64_t a_ = 0x243f6a8885a308d3ULL, b_ = 0x13198a2e03707344ULL, n_ = 0;
};

}  // namespace

KeyHash key_hash(const Key& k) noexcept {
    KeyHasher h;
    char cls = (eq(k.type, "commit") || eq(k.type, "sync")) ? 'c' : eq(k.type, "identity") ? 'i' : 'a';
    h.add(&cls, 1);
    h.add(k.did.data(), k.did.size());
    if (cls == 'c') {
        h.add(k.commit.data(), k.commit.size());
    } else {
        h.add(k.time.data(), k.time.size());
        if (cls == 'a') {
            char act = k.active ? 1 : 0;
            h.add(&act, 1);
            h.add(k.status.data(), k.status.size());
        }
    }
    return h.done();
}

namespace {

// Sentinels and the range of times: recv values are clamped to [0, kMaxRecv] on input, so
// that no sum or difference of times, windows and sentinels can overflow.
constexpr std::int64_t kNever = std::int64_t(1) << 62;
constexpr std::int64_t kDawn = -kNever;
constexpr std::int64_t kMaxRecv = std::int64_t(1) << 61;

// What one source's markers say, as history: spans in which it was not observed, and every
// outage (disconnect → connect, bridged by a cursor or not). Times are the source's recv.
struct Source {
    std::string name;
    Side side = Side::mesh;
    int input = 0;
    bool seen = false;             // any record yet
    bool connected = false;
    std::int64_t first_recv = 0, last_recv = 0, last_msg = kDawn;
    std::int64_t down_since = kDawn;  // open outage start while !connected (kDawn: before the first record)
    std::uint64_t events = 0, connects = 0;
    std::vector<std::pair<std::int64_t, std::int64_t>> unobserved;  // [a, b], b may be kNever
    std::vector<std::pair<std::int64_t, std::int64_t>> outages;     // [d, c], c may be kNever (open)

    void add_unobserved(std::int64_t a, std::int64_t b) {
        if (!unobserved.empty() && unobserved.back().second >= a) {
            unobserved.back().second = std::max(unobserved.back().second, b);
            unobserved.back().first = std::min(unobserved.back().first, a);
        } else {
            unobserved.emplace_back(a, b);
        }
    }
    bool unobserved_overlaps(std::int64_t a, std::int64_t b) const {
        for (auto it = unobserved.rbegin(); it != unobserved.rend(); ++it) {
            if (it->second < a) break;  // spans are in order; earlier ones end earlier
            if (it->first <= b) return true;
        }
        return false;
    }
    bool outage_overlaps(std::int64_t a, std::int64_t b) const {
        for (auto it = outages.rbegin(); it != outages.rend(); ++it) {
            if (it->second < a) break;
            if (it->first <= b) return true;
        }
        return false;
    }
    // Whether a copy of an event at `x` can no longer arrive by watermark `t` for want of this
    // source being connected: every outage that began before the window closed (x + window)
    // and ended after x has been over for a whole window by t. An outage still open, or one
    // that ended less than a window before t, may yet bring the copy (a replay from the
    // cursor). Outages that began after the window closed do not matter: the source had it.
    bool ready(std::int64_t x, std::int64_t t, std::int64_t window) const {
        if (!seen) return false;
        for (auto it = outages.rbegin(); it != outages.rend(); ++it) {
            if (it->second < x) break;
            if (it->first > x + window) continue;
            if (it->second == kNever || it->second > t - window) return false;
        }
        return true;
    }
    void prune(std::int64_t before) {
        auto drop = [before](auto& v) {
            std::size_t n = 0;
            while (n < v.size() && v[n].second < before) ++n;
            if (n > 64) v.erase(v.begin(), v.begin() + std::ptrdiff_t(n));
        };
        drop(outages);
        drop(unobserved);
    }
};

// A pending event: what a finding needs, in one allocation.
struct Entry {
    std::uint64_t id = 0;
    std::int64_t recv = 0;
    std::uint32_t src = 0;
    Side side = Side::mesh;
    std::uint8_t type = 0;  // index into kTypes
    bool active = true;
    std::uint8_t did_len = 0, commit_len = 0, time_len = 0, coll_len = 0, status_len = 0;
    std::string blob;       // did, commit (binary), time, collection, status

    std::string_view did() const { return std::string_view(blob).substr(0, did_len); }
    ByteView commit() const {
        return {reinterpret_cast<const std::uint8_t*>(blob.data()) + did_len, commit_len};
    }
    std::string_view time() const { return std::string_view(blob).substr(did_len + commit_len, time_len); }
    std::string_view collection() const {
        return std::string_view(blob).substr(did_len + commit_len + time_len, coll_len);
    }
    std::string_view status() const {
        return std::string_view(blob).substr(did_len + commit_len + time_len + coll_len, status_len);
    }
};

constexpr std::string_view kTypes[] = {"commit", "sync", "identity", "account"};

std::uint8_t type_index(std::string_view t) {
    for (std::uint8_t i = 0; i < 4; ++i)
        if (kTypes[i] == t) return i;
    return 0;
}


// The recently decided keys: two open-addressing tables (linear probing, no deletion), the
// current one and the previous; every `span` µs of watermark the previous is cleared and they
// swap, so a key is remembered between one and two spans after its decision. A slot is 16
// bytes: the key's 128-bit hash with its low 4 bits replaced by an occupied bit, the kind and
// the side (124 bits of hash remain). One probe sequence instead of a node per key: this
// lookup runs for the first copy of every event.
class DecidedKeys {
public:
    struct Found {
        Kind kind;
        Side side;
    };
    void put(const Hash128& h, Kind k, Side s) {
        if ((cur_.used + 1) * 10 >= cur_.size * 7) grow(cur_);
        insert(cur_, Slot{(h.a & ~std::uint64_t(15)) | 1 | (std::uint64_t(k) << 1) | (std::uint64_t(s) << 3), h.b});
    }
    std::optional<Found> find(const Hash128& h) const {
        const Slot* s = lookup(cur_, h);
        if (!s && prev_.used) s = lookup(prev_, h);
        if (!s) return std::nullopt;
        return Found{Kind((s->a >> 1) & 3), Side((s->a >> 3) & 1)};
    }
    // The slots find() and put() of `h` start at.
    void prefetch(const Hash128& h) const noexcept {
        __builtin_prefetch(&cur_.slots[std::size_t(h.b) & (cur_.size - 1)]);
        if (prev_.used) __builtin_prefetch(&prev_.slots[std::size_t(h.b) & (prev_.size - 1)]);
    }
    // Rotates when the watermark has moved a span past the current table's start; the cleared
    // table keeps its storage (no new allocation in the steady state).
    void age(std::int64_t now, std::int64_t span) {
        if (!started_) start_ = now, started_ = true;
        if (now - start_ < span) return;
        std::swap(cur_, prev_);
        std::memset(static_cast<void*>(cur_.slots.get()), 0, cur_.size * sizeof(Slot));
        cur_.used = 0;
        start_ = now;
    }

private:
    struct Slot {
        std::uint64_t a = 0, b = 0;  // a == 0: empty
    };
    // A table of 1 MiB or more is mapped with its pages populated in one go (zeroed by the
    // kernel): a table's slots are written all over soon after it is made (a grow re-inserts
    // every key), and one populating call costs far less than a page fault per 4 KiB (a third
    // of the time of growing, measured). Smaller ones come from calloc.
    static constexpr std::size_t kMapBytes = 1u << 20;
    struct Release {
        std::size_t bytes;  // 0: from calloc
        void operator()(Slot* p) const noexcept {
            if (bytes) ::munmap(p, bytes);
            else std::free(p);
        }
    };
    static Slot* make(std::size_t n) {
        std::size_t bytes = n * sizeof(Slot);
        void* p = bytes >= kMapBytes ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
                                     : std::calloc(n, sizeof(Slot));
        if (p == MAP_FAILED || !p) throw std::bad_alloc();
        return static_cast<Slot*>(p);
    }
    struct Table {
        std::unique_ptr<Slot[], Release> slots;
        std::size_t size = 0, used = 0;
        explicit Table(std::size_t n)
            : slots(make(n), Release{n * sizeof(Slot) >= kMapBytes ? n * sizeof(Slot) : 0}), size(n) {}
    };
    static bool same(const Slot& s, const Hash128& h) { return (s.a >> 4) == (h.a >> 4) && s.b == h.b; }
    static const Slot* lookup(const Table& t, const Hash128& h) {
        std::size_t mask = t.size - 1, i = std::size_t(h.b) & mask;
        for (;;) {
            const Slot& s = t.slots[i];
            if (s.a == 0) return nullptr;
            if (same(s, h)) return &s;
            i = (i + 1) & mask;
        }
    }
    static void insert(Table& t, const Slot& v) {
        std::size_t mask = t.size - 1, i = std::size_t(v.b) & mask;
        for (;;) {
            Slot& s = t.slots[i];
            if (s.a == 0) {
                s = v;
                ++t.used;
                return;
            }
            if ((s.a >> 4) == (v.a >> 4) && s.b == v.b) {
                s = v;
                return;
            }
            i = (i + 1) & mask;
        }
    }
    static void grow(Table& t) {
        Table n(t.size * 2);
        for (std::size_t i = 0; i < t.size; ++i)
            if (t.slots[i].a) insert(n, t.slots[i]);
        t = std::move(n);
    }
    Table cur_{1024}, prev_{1024};
    std::int64_t start_ = 0;
    bool started_ = false;
};

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

inline std::uint64_t did_hash(std::string_view did) noexcept { return std::hash<std::string_view>{}(did); }

struct Queued {
    std::int64_t recv;
    Hash128 key;
    std::uint64_t id;
};

}  // namespace

struct Matcher::Impl {
    Options opt;
    Sink sink;
    struct Input {
        std::string name;
        Side side;
        bool ended = false, any = false;
        std::int64_t last = kDawn;
    };
    std::vector<Input> inputs;
    std::vector<Source> sources;
    std::unordered_map<std::string, std::uint32_t, StringHash, std::equal_to<>> source_ids;
    std::unordered_map<std::uint64_t, std::uint32_t> did_host;  // hash of a DID → its mesh source (last seen)
    std::vector<std::uint32_t> relay_sources;
    std::unordered_map<Hash128, Entry, Hash128Hasher> pending[2];
    std::deque<Queued> fifo[2];
    std::vector<Queued> parked[2];
    DecidedKeys decided;
    std::uint64_t next_id = 1;
    bool connects_since_park_check = false;
    std::int64_t last_park_check = kDawn;
    Stats st;
    Finding f;  // reused for every finding (no allocation once warm)

    static int idx(Side s) { return s == Side::relay ? 0 : 1; }

    std::uint32_t source(const std::string_view name, Side side, int in) {
        auto it = source_ids.find(name);
        if (it != source_ids.end()) return it->second;
        auto id = std::uint32_t(sources.size());
        Source s;
        s.name = std::string(name);
        s.side = side;
        s.input = in;
        sources.push_back(std::move(s));
        source_ids.emplace(std::string(name), id);
        if (side == Side::relay) relay_sources.push_back(id);
        return id;
    }

    std::int64_t watermark() const {
        std::int64_t w = kNever;
        for (auto& i : inputs)
            if (!i.ended) w = std::min(w, i.any ? i.last : kDawn);
        return w;
    }

    // The marker and message bookkeeping of one source (design §2 "Markers").
    void observe(Source& s, std::int64_t t, const frames::Marker* mk) {
        bool is_message = mk == nullptr;
        if (!s.seen) {
            // Nothing before a source's first record was observed: it is down until its first
            // connect marker, or its first message for a stream without markers.
            s.seen = true;
            s.first_recv = t;
            s.connected = false;
            s.down_since = kDawn;
            s.outages.emplace_back(kDawn, kNever);
        }
        s.last_recv = std::max(s.last_recv, t);
        if (is_message) {
            if (!s.connected) {  // a message with no connect marker before it: observed from here on
                s.add_unobserved(s.down_since, t);
                close_outage(s, t);
                s.connected = true;
                ++s.connects;
            }
            s.last_msg = t;
            return;
        }
        const frames::Marker& m = *mk;
        if (m.kind == "connect") {
            ++s.connects;
            connects_since_park_check = true;
            if (s.connected) {
                // connect while connected: the tap was stopped without a disconnect marker
                // (killed): down from its last record.
                s.outages.emplace_back(s.last_msg == kDawn ? t : s.last_msg, t);
                s.down_since = s.last_msg == kDawn ? t : s.last_msg;
            }
            // Live head (no cursor), or the first connection: what was sent before is not observed.
            if (!m.cursor || s.down_since == kDawn) s.add_unobserved(s.down_since, t);
            close_outage(s, t);
            s.connected = true;
        } else if (m.kind == "disconnect") {
            if (s.connected) {
                s.connected = false;
                s.down_since = t;
                s.outages.emplace_back(t, kNever);
            }
        } else if (m.kind == "gap") {
            s.add_unobserved(s.last_msg == kDawn ? s.first_recv : s.last_msg, t);
        }
    }
    void close_outage(Source& s, std::int64_t t) {
        if (!s.outages.empty() && s.outages.back().second == kNever) s.outages.back().second = t;
        else if (s.outages.empty() || s.outages.back().second < t) s.outages.emplace_back(s.down_since == kDawn ? t : s.down_since, t);
    }

    // The bookkeeping every record does: input time, overall times, its source.
    std::uint32_t begin(int in, Side side, std::string_view src, std::int64_t& recv) {
        recv = std::clamp<std::int64_t>(recv, 0, kMaxRecv);
        auto& inp = inputs[std::size_t(in)];
        if (inp.any && recv < inp.last - opt.window_us) ++st.out_of_order;
        inp.any = true;
        inp.last = std::max(inp.last, recv);
        if (st.first_recv == 0 || recv < st.first_recv) st.first_recv = recv;
        st.last_recv = std::max(st.last_recv, recv);
        return source(src, side, in);
    }

    void add_marker(int in, Side side, const frames::Envelope& env) {
        std::int64_t recv = env.recv;
        auto sid = begin(in, side, env.src, recv);
        ++st.markers;
        frames::Marker m;
        if (frames::parse_marker(env, m)) return;  // the reader has checked it; unknown shapes pass
        observe(sources[sid], recv, &m);
    }

    Errc add(int in, Side side, const frames::Envelope& env, std::string& why) {
        if (env.is_marker()) {
            add_marker(in, side, env);
            return Errc::ok;
        }
        Key k;
        Errc e = key_of(env.wire, k, why);
        add_message(in, side, env.src, env.recv, e == Errc::ok ? &k : nullptr, nullptr);
        return e;
    }

    void add_message(int in, Side side, std::string_view src, std::int64_t recv, const Key* kp, const Hash128* hp) {
        auto sid = begin(in, side, src, recv);
        auto& s = sources[sid];
        observe(s, recv, nullptr);
        if (!kp || kp->type.empty()) {
            ++st.skipped;
            return;
        }
        Key k = *kp;
        ++s.events;
        ++(side == Side::relay ? st.relay_events : st.mesh_events);
        if (side == Side::mesh) did_host[did_hash(k.did)] = sid;
        Hash128 h = hp ? *hp : key_hash(k);
        auto& other = pending[idx(side) ^ 1];
        if (auto it = other.find(h); it != other.end()) {
            matched(it->second, side, recv, sid);
            remember(h, Kind::match, side);
            other.erase(it);
            return;
        }
        auto& mine = pending[idx(side)];
        // One probe of the pending table: the slot is taken now, given back in the rare case of
        // a key decided already.
        auto [slot, fresh] = mine.try_emplace(h);
        if (!fresh) {
            ++st.duplicates;
            return;
        }
        if (auto d = decided.find(h)) {
            if (d->kind == Kind::match || d->side == side) ++st.duplicates;
            else ++st.late;
            mine.erase(slot);
            return;
        }
        Entry& en = slot->second;
        en.id = next_id++;
        en.recv = recv;
        en.src = sid;
        en.side = side;
        en.type = type_index(k.type);
        en.active = k.active;
        en.did_len = std::uint8_t(std::min<std::size_t>(k.did.size(), 255));
        en.commit_len = std::uint8_t(std::min<std::size_t>(k.commit.size(), 255));
        bool keyed_by_time = eq(k.type, "identity") || eq(k.type, "account");
        if (!keyed_by_time) k.time = {};
        en.time_len = std::uint8_t(std::min<std::size_t>(k.time.size(), 255));
        en.coll_len = std::uint8_t(std::min<std::size_t>(k.collection.size(), 255));
        en.status_len = std::uint8_t(std::min<std::size_t>(k.status.size(), 255));
        en.blob.reserve(en.did_len + en.commit_len + en.time_len + en.coll_len + en.status_len);
        en.blob.append(k.did.substr(0, en.did_len));
        en.blob.append(reinterpret_cast<const char*>(k.commit.data()), en.commit_len);
        en.blob.append(k.time.substr(0, en.time_len));
        en.blob.append(k.collection.substr(0, en.coll_len));
        en.blob.append(k.status.substr(0, en.status_len));
        fifo[idx(side)].push_back({recv, h, en.id});
        if (mine.size() > opt.max_pending) overflow(side);
    }

    void remember(const Hash128& h, Kind k, Side s) { decided.put(h, k, s); }

    void fill(const Entry& e, Kind kind) {
        f.kind = kind;
        f.side = e.side;
        f.type = kTypes[e.type];
        f.did.assign(e.did());
        f.cid.clear();
        if (e.commit_len) cid::append_string(e.commit(), f.cid);
        f.time.assign(e.time());
        f.collection.assign(e.collection());
        f.active = e.active;
        f.status.assign(e.status());
        f.replayed = false;
        f.reason.clear();
        f.mesh_recv = e.side == Side::mesh ? e.recv : 0;
        f.relay_recv = e.side == Side::relay ? e.recv : 0;
        std::uint32_t host = e.side == Side::mesh ? e.src : UINT32_MAX;
        if (host == UINT32_MAX) {
            auto it = did_host.find(did_hash(e.did()));
            if (it != did_host.end()) host = it->second;
        }
        f.host = host == UINT32_MAX ? std::string() : sources[host].name;
    }

    TimeBucket& bucket(std::int64_t t) { return st.by_time[t - (((t % st.bucket_us) + st.bucket_us) % st.bucket_us)]; }

    // The first copy `e` (pending on the other side) meets its partner from `side` at `recv`.
    void matched(const Entry& e, Side side, std::int64_t recv, std::uint32_t sid) {
        fill(e, Kind::match);
        if (side == Side::mesh) {
            f.mesh_recv = recv;
            f.host = sources[sid].name;
            f.side = Side::mesh;
        } else {
            f.relay_recv = recv;
            f.side = Side::mesh;
        }
        // The later copy measures an outage, not the relay, when its source was down in between.
        // (In recv order, whichever copy was read first.)
        auto later_src = recv >= e.recv ? sid : e.src;
        f.replayed = sources[later_src].outage_overlaps(std::min(e.recv, recv), std::max(e.recv, recv));
        ++st.matches;
        auto& bk = bucket(f.mesh_recv);
        ++bk.matches;
        if (f.replayed) {
            ++st.replayed;
        } else {
            st.latency.add(f.latency());
            ++bk.timed;
            if (f.latency() > 0) {
                ++st.mesh_first;
                ++bk.mesh_first;
            }
        }
        sink(f);
    }

    // Whether the other side could not have delivered a copy of `e` (unobserved spans over
    // its window), whether it could still (not ready), or neither (a drop / relay-only).
    enum class Verdict { wait, unobserved, missing };
    Verdict judge(const Entry& e, std::int64_t t, std::string& reason) {
        auto W = opt.window_us;
        if (e.side == Side::mesh) {
            // The relay side: any relay source that saw the whole window and is ready.
            bool any_relay = false, any_clear = false, any_ready = false;
            for (auto id : relay_sources) {
                auto& s = sources[id];
                any_relay = true;
                bool clear = !s.unobserved_overlaps(e.recv, e.recv + W);
                any_clear |= clear;
                if (clear && s.ready(e.recv, t, W)) any_ready = true;
            }
            if (any_ready) return Verdict::missing;
            if (!any_relay) {
                reason = "no relay record read yet";
                return t == kNever ? Verdict::unobserved : Verdict::wait;
            }
            if (!any_clear) {
                reason = "the relay was not observed during the window";
                return Verdict::unobserved;
            }
            reason = "the relay tap was disconnected and did not come back for a whole window";
            return Verdict::wait;
        }
        auto it = did_host.find(did_hash(e.did()));
        if (it == did_host.end()) {
            reason = "the DID's PDS is not on the mesh";
            return Verdict::unobserved;
        }
        auto& s = sources[it->second];
        if (s.unobserved_overlaps(e.recv - W, e.recv + W)) {
            reason = "the mesh did not observe " + s.name + " during the window";
            return Verdict::unobserved;
        }
        if (s.ready(e.recv, t, W)) return Verdict::missing;
        reason = "the mesh tap of " + s.name + " was disconnected and did not come back for a whole window";
        return Verdict::wait;
    }

    void decide(const Entry& e, Kind kind, const std::string& reason) {
        fill(e, kind);
        f.reason = reason;
        auto& bk = bucket(e.recv);
        if (kind == Kind::drop) {
            ++st.drops;
            ++bk.drops;
            ++st.drops_by_host[f.host];
            ++st.drops_by_collection[f.collection.empty() ? "#" + f.type : f.collection];
            st.recent_drops.push_back(f);
            if (st.recent_drops.size() > opt.keep_drops)
                st.recent_drops.erase(st.recent_drops.begin(), st.recent_drops.begin() + std::ptrdiff_t(st.recent_drops.size() - opt.keep_drops));
        } else if (kind == Kind::relay_only) {
            ++st.relay_only;
            ++bk.relay_only;
        } else {
            ++(e.side == Side::mesh ? st.unobserved_mesh : st.unobserved_relay);
            ++bk.unobserved;
        }
        sink(f);
    }

    // Decides pending entry `q` at watermark t if it can be; true when it is gone (decided or
    // already matched), false when it has to wait.
    bool try_decide(Side side, const Queued& q, std::int64_t t, bool force) {
        auto& mine = pending[idx(side)];
        auto it = mine.find(q.key);
        if (it == mine.end() || it->second.id != q.id) return true;
        const Entry& e = it->second;
        std::string reason;
        auto v = judge(e, t, reason);
        if (v == Verdict::wait) {
            if (!force && t < e.recv + opt.window_us + kMaxWaitUs) return false;
            v = Verdict::unobserved;
        }
        Kind k = v == Verdict::unobserved ? Kind::unobserved : side == Side::mesh ? Kind::drop : Kind::relay_only;
        decide(e, k, reason);
        remember(q.key, k, side);
        mine.erase(it);
        return true;
    }
    static constexpr std::int64_t kMaxWaitUs = 60'000'000;  // how long an event waits for an outage to end

    // Too many pending on one side: the oldest are decided unobserved (memory stays bounded).
    void overflow(Side side) {
        auto& q = fifo[idx(side)];
        auto& mine = pending[idx(side)];
        while (mine.size() > opt.max_pending && !q.empty()) {
            auto front = q.front();
            q.pop_front();
            auto it = mine.find(front.key);
            if (it == mine.end() || it->second.id != front.id) continue;
            decide(it->second, Kind::unobserved, "more than --max-pending events were waiting");
            remember(front.key, Kind::unobserved, side);
            mine.erase(it);
        }
    }

    void advance(bool force) {
        std::int64_t t = force ? kNever : watermark();
        if (t == kDawn) return;
        auto W = opt.window_us;
        for (Side side : {Side::mesh, Side::relay}) {
            auto& q = fifo[idx(side)];
            auto& park = parked[idx(side)];
            while (!q.empty() && (force || q.front().recv <= t - W)) {
                auto front = q.front();
                q.pop_front();
                if (!try_decide(side, front, t, force)) park.push_back(front);
            }
        }
        // Parked entries: looked at again when a source came back or a second has passed.
        if (force || connects_since_park_check || t - last_park_check >= 1'000'000) {
            connects_since_park_check = false;
            last_park_check = t;
            for (Side side : {Side::mesh, Side::relay}) {
                auto& park = parked[idx(side)];
                std::size_t keep = 0;
                for (auto& qd : park)
                    if (!try_decide(side, qd, t, force)) park[keep++] = qd;
                park.resize(keep);
            }
        }
        // Forget decided keys after two more windows and the longest wait; prune old history.
        if (!force) decided.age(t, 2 * W + kMaxWaitUs);
        if (!force && t != kNever)
            for (auto& s : sources) s.prune(t - 4 * W - 2 * kMaxWaitUs);
    }

    void end_input(int in) {
        auto& inp = inputs[std::size_t(in)];
        if (inp.ended) return;
        inp.ended = true;
        for (auto& s : sources) {
            if (s.input != in || !s.seen) continue;
            // Nothing after its input ended was observed.
            std::int64_t from = s.connected ? s.last_recv : s.down_since;
            s.add_unobserved(from, kNever);
            if (s.connected) s.outages.emplace_back(s.last_recv, kNever);
            s.connected = false;
        }
    }
};

Matcher::Matcher(Options opt, Sink sink) : impl_(std::make_unique<Impl>()) {
    opt.window_us = std::clamp<std::int64_t>(opt.window_us, 1, 3'600'000'000);  // no time arithmetic overflows
    impl_->opt = opt;
    impl_->sink = std::move(sink);
    impl_->st.bucket_us = opt.bucket_us > 0 ? opt.bucket_us : 10'000'000;
}
Matcher::~Matcher() = default;

int Matcher::add_input(Side side, std::string name) {
    impl_->inputs.push_back({std::move(name), side});
    return int(impl_->inputs.size() - 1);
}

Errc Matcher::add(int in, const frames::Envelope& env, std::string& why) {
    return impl_->add(in, impl_->inputs[std::size_t(in)].side, env, why);
}
void Matcher::add_message(int in, Side side, std::string_view src, std::int64_t recv, const Key* key,
                          const KeyHash* hash) {
    impl_->add_message(in, side, src, recv, key, hash);
}
void Matcher::prefetch(const KeyHash& hash) const noexcept { impl_->decided.prefetch(hash); }
void Matcher::add_marker(int in, Side side, const frames::Envelope& env) { impl_->add_marker(in, side, env); }
void Matcher::end_input(int in) { impl_->end_input(in); }
void Matcher::advance() { impl_->advance(false); }
void Matcher::finish() {
    for (std::size_t i = 0; i < impl_->inputs.size(); ++i) impl_->end_input(int(i));
    impl_->advance(true);
}
std::int64_t Matcher::watermark() const noexcept { return impl_->watermark(); }

Stats Matcher::stats(bool full) const {
    const auto& im = *impl_;
    Stats s;
    if (full) {
        s = im.st;
    } else {
        s.relay_events = im.st.relay_events, s.mesh_events = im.st.mesh_events, s.skipped = im.st.skipped;
        s.markers = im.st.markers, s.matches = im.st.matches, s.drops = im.st.drops, s.relay_only = im.st.relay_only;
        s.unobserved_mesh = im.st.unobserved_mesh, s.unobserved_relay = im.st.unobserved_relay;
        s.replayed = im.st.replayed, s.duplicates = im.st.duplicates, s.late = im.st.late;
        s.out_of_order = im.st.out_of_order;
        s.mesh_first = im.st.mesh_first, s.first_recv = im.st.first_recv, s.last_recv = im.st.last_recv;
        s.bucket_us = im.st.bucket_us;
        s.latency = im.st.latency;
        auto n = std::min<std::size_t>(im.st.recent_drops.size(), 50);
        s.recent_drops.assign(im.st.recent_drops.end() - std::ptrdiff_t(n), im.st.recent_drops.end());
    }
    s.pending_relay = im.pending[0].size();
    s.pending_mesh = im.pending[1].size();
    auto w = im.watermark();
    s.watermark = (w == kDawn || w == kNever) ? 0 : w;
    if (full) {
        for (auto& src : im.sources) {
            SourceView v;
            v.src = src.name;
            v.side = src.side;
            v.first_recv = src.first_recv;
            v.last_recv = src.last_recv;
            v.events = src.events;
            v.connects = src.connects;
            auto clip = [&](std::int64_t x) { return std::clamp(x, src.first_recv, src.last_recv); };
            for (auto [a, b] : src.unobserved)
                if (clip(a) < clip(b)) v.unobserved.emplace_back(clip(a), clip(b));
            for (auto [a, b] : src.outages)
                if (a != kDawn && clip(a) < clip(b)) v.outages.emplace_back(clip(a), clip(b));
            s.sources.push_back(std::move(v));
        }
    }
    return s;
}

}  // namespace sov::ghost
