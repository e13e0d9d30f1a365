// Strict DAG-CBOR validation and zero-copy reading.
//
// validate() is a single forward pass with an explicit stack (no recursion, no allocation):
// each open container records how many items it still expects and, for maps, the previous
// key so order and duplicates are checked as keys stream by. Everything after validation
// (Value, MapIter, ArrayIter) trusts the bytes and only decodes heads, so reading a field is
// a few loads. The split keeps the hot path free of repeated checks while still making
// unchecked reads impossible to reach without a successful validate().
#include "sovereign/cbor.h"

#include "sovereign/cid.h"

#include <limits>

namespace sov::cbor {

namespace {

inline std::uint64_t load_be(const std::uint8_t* p, unsigned n) noexcept {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v = (v << 8) | p[i];
    return v;
}

// Reads a head at p (trusted input). Sets arg; returns head length.
inline std::size_t read_head(const std::uint8_t* p, std::uint64_t& arg) noexcept {
    std::uint8_t ai = p[0] & 31;
    if (ai < 24) { arg = ai; return 1; }
    switch (ai) {
    case 24: arg = p[1]; return 2;
    case 25: arg = load_be(p + 1, 2); return 3;
    case 26: arg = load_be(p + 1, 4); return 5;
    default: arg = load_be(p + 1, 8); return 9;
    }
}

const std::uint8_t* skip(const std::uint8_t* p) noexcept {
    std::uint64_t pending = 1;
    while (pending) {
        --pending;
        std::uint64_t arg;
        std::uint8_t major = p[0] >> 5;
        std::size_t h = read_head(p, arg);
        switch (major) {
        case 2:
        case 3: p += h + arg; break;
        case 4: p += h; pending += arg; break;
        case 5: p += h; pending += 2 * arg; break;
        case 6: p += h; pending += 1; break;
        default: p += h; break;
        }
    }
    return p;
}

}  // namespace

bool valid_utf8(const std::uint8_t* s, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n) {
        // ASCII fast path, 8 bytes at a time.
        while (i + 8 <= n) {
            std::uint64_t w;
            std::memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        std::uint8_t c = s[i];
        if (c < 0x80) { ++i; continue; }
        std::size_t len;
        std::uint32_t cp;
        if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (std::size_t k = 1; k < len; ++k) {
            std::uint8_t cc = s[i + k];
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

namespace {

struct Frame {
    std::uint64_t left;              // items still expected (maps: keys and values)
    const std::uint8_t* prev_key;    // previous key bytes (maps), nullptr before the first
    std::uint32_t prev_len;
    bool is_map;
};

Located run(ByteView in, std::size_t& out_len, bool allow_trailing) noexcept {
    const std::uint8_t* const begin = in.data();
    const std::uint8_t* const end = begin + in.size();
    const std::uint8_t* p = begin;
    Frame stack[kMaxDepth + 1];
    std::size_t depth = 0;  // number of open containers
    bool done = false;
    auto fail = [&](Errc e, const std::uint8_t* at) { return Located{e, std::size_t(at - begin)}; };

    while (!done) {
        const std::uint8_t* item = p;
        if (p >= end) return fail(Errc::truncated, p);
        bool is_key = depth > 0 && stack[depth - 1].is_map && (stack[depth - 1].left % 2 == 0);
        std::uint8_t ib = *p;
        std::uint8_t major = ib >> 5, ai = ib & 31;
        std::uint64_t arg;
        std::size_t hlen;
        if (ai < 24) { arg = ai; hlen = 1; }
        else if (ai <= 27) {
            hlen = std::size_t(1) << (ai - 24);
            if (std::size_t(end - p) < 1 + hlen) return fail(Errc::truncated, item);
            arg = load_be(p + 1, unsigned(hlen));
            hlen += 1;
            if (major == 7) return fail(ai == 24 ? Errc::cbor_bad_simple : Errc::cbor_float, item);
            std::uint64_t min = ai == 24 ? 24 : ai == 25 ? 0x100 : ai == 26 ? 0x10000 : 0x100000000ULL;
            if (arg < min)
                return fail(major <= 1 || major == 6 ? Errc::cbor_non_minimal_int : Errc::cbor_non_minimal_len, item);
        } else if (ai == 31) {
            return fail(Errc::cbor_indefinite, item);
        } else {
            return fail(Errc::cbor_reserved_ai, item);
        }
        if (is_key && major != 3) return fail(Errc::cbor_key_not_text, item);
        p += hlen;
        bool complete = true;  // whether this item is finished (not an opened container)
        switch (major) {
        case 0:
        case 1:
            if (arg > std::uint64_t(std::numeric_limits<std::int64_t>::max())) return fail(Errc::cbor_int_range, item);
            break;
        case 2:
        case 3: {
            if (arg > std::uint64_t(end - p)) return fail(Errc::truncated, item);
            if (major == 3) {
                if (!valid_utf8(p, std::size_t(arg))) return fail(Errc::cbor_invalid_utf8, item);
                if (is_key) {
                    Frame& f = stack[depth - 1];
                    if (arg == 0) return fail(Errc::cbor_empty_key, item);
                    if (f.prev_key) {
                        int c = key_compare({reinterpret_cast<const char*>(f.prev_key), f.prev_len},
                                            {reinterpret_cast<const char*>(p), std::size_t(arg)});
                        if (c == 0) return fail(Errc::cbor_duplicate_key, item);
                        if (c > 0) return fail(Errc::cbor_key_order, item);
                    }
                    f.prev_key = p;
                    f.prev_len = std::uint32_t(arg);
                }
            }
            p += arg;
            break;
        }
        case 4:
        case 5:
            if (arg > std::uint64_t(end - p)) return fail(Errc::truncated, item);  // each item ≥ 1 byte
            // An empty container is a nesting level too (DAG-JSON counts it the same way).
            if (depth >= kMaxDepth) return fail(Errc::cbor_too_deep, item);
            if (arg > 0) {
                stack[depth++] = Frame{major == 5 ? arg * 2 : arg, nullptr, 0, major == 5};
                complete = false;
            }
            break;
        case 6: {
            if (arg != 42) return fail(Errc::cbor_bad_tag, item);
            // Content: a definite byte string, shortest length, 0x00 then a binary CID.
            if (p >= end) return fail(Errc::truncated, item);
            std::uint8_t cb = *p;
            if ((cb >> 5) != 2) return fail(Errc::cbor_bad_link, item);
            std::uint8_t cai = cb & 31;
            std::uint64_t clen;
            std::size_t chl;
            if (cai < 24) { clen = cai; chl = 1; }
            else if (cai == 24) {
                if (end - p < 2) return fail(Errc::truncated, item);
                clen = p[1]; chl = 2;
                if (clen < 24) return fail(Errc::cbor_non_minimal_len, item);
            } else if (cai == 25) {
                if (end - p < 3) return fail(Errc::truncated, item);
                clen = load_be(p + 1, 2); chl = 3;
                if (clen < 0x100) return fail(Errc::cbor_non_minimal_len, item);
            } else {
                return fail(Errc::cbor_bad_link, item);  // CIDs are ≤ 100 bytes
            }
            p += chl;
            if (clen > std::uint64_t(end - p)) return fail(Errc::truncated, item);
            if (clen < 2 || p[0] != 0x00) return fail(Errc::cbor_bad_link, item);
            if (cid::check_binary({p + 1, std::size_t(clen - 1)}) != Errc::ok) return fail(Errc::cbor_bad_link, item);
            p += clen;
            break;
        }
        case 7:
            if (ai < 20 || ai > 22) return fail(Errc::cbor_bad_simple, item);
            break;
        }
        if (is_key) {
            // A key is never the last item of its map: the value follows.
            --stack[depth - 1].left;
            continue;
        }
        if (!complete) continue;
        // Close every container this item completes.
        for (;;) {
            if (depth == 0) { done = true; break; }
            if (--stack[depth - 1].left > 0) break;
            --depth;
        }
    }
    out_len = std::size_t(p - begin);
    if (!allow_trailing && p != end) return fail(Errc::trailing_bytes, p);
    return {};
}

}  // namespace

Located validate(ByteView in) noexcept {
    std::size_t len;
    return run(in, len, false);
}

Located validate_prefix(ByteView in, std::size_t& len) noexcept { return run(in, len, true); }

Kind Value::kind() const noexcept {
    std::uint8_t ib = *p_;
    switch (ib >> 5) {
    case 0: return Kind::uint;
    case 1: return Kind::nint;
    case 2: return Kind::bytes;
    case 3: return Kind::text;
    case 4: return Kind::array;
    case 5: return Kind::map;
    case 6: return Kind::link;
    default: return ib == 0xf6 ? Kind::null : Kind::boolean;
    }
}

std::int64_t Value::as_int() const noexcept {
    if (!valid()) return 0;
    std::uint64_t arg;
    read_head(p_, arg);
    switch (*p_ >> 5) {
    case 0: return std::int64_t(arg);
    case 1: return -1 - std::int64_t(arg);
    default: return 0;
    }
}

std::string_view Value::as_text() const noexcept {
    if (!valid() || (*p_ >> 5) != 3) return {};
    std::uint64_t arg;
    std::size_t h = read_head(p_, arg);
    return {reinterpret_cast<const char*>(p_ + h), std::size_t(arg)};
}

ByteView Value::as_bytes() const noexcept {
    if (!valid() || (*p_ >> 5) != 2) return {};
    std::uint64_t arg;
    std::size_t h = read_head(p_, arg);
    return {p_ + h, std::size_t(arg)};
}

ByteView Value::as_link() const noexcept {
    if (!valid() || (*p_ >> 5) != 6) return {};
    std::uint64_t tag;
    std::size_t h = read_head(p_, tag);
    std::uint64_t len;
    std::size_t h2 = read_head(p_ + h, len);
    return {p_ + h + h2 + 1, std::size_t(len - 1)};
}

std::uint64_t Value::count() const noexcept {
    if (!valid()) return 0;
    std::uint8_t major = *p_ >> 5;
    if (major != 4 && major != 5) return 0;
    std::uint64_t arg;
    read_head(p_, arg);
    return arg;
}

std::size_t Value::size() const noexcept { return valid() ? std::size_t(skip(p_) - p_) : 0; }

MapIter Value::map() const noexcept {
    if (!valid() || (*p_ >> 5) != 5) return {};
    std::uint64_t n;
    std::size_t h = read_head(p_, n);
    return {p_ + h, end_, n};
}

ArrayIter Value::array() const noexcept {
    if (!valid() || (*p_ >> 5) != 4) return {};
    std::uint64_t n;
    std::size_t h = read_head(p_, n);
    return {p_ + h, end_, n};
}

Value Value::get(std::string_view key) const noexcept {
    MapIter it = map();
    std::string_view k;
    Value v;
    while (it.next(k, v)) {
        int c = key_compare(k, key);
        if (c == 0) return v;
        if (c > 0) break;
    }
    return {};
}

bool MapIter::next(std::string_view& key, Value& value) noexcept {
    if (left_ == 0) return false;
    --left_;
    std::uint64_t klen;
    std::size_t h = read_head(p_, klen);
    key = {reinterpret_cast<const char*>(p_ + h), std::size_t(klen)};
    p_ += h + klen;
    value = Value(p_, end_);
    p_ = skip(p_);
    return true;
}

bool ArrayIter::next(Value& v) noexcept {
    if (left_ == 0) return false;
    --left_;
    v = Value(p_, end_);
    p_ = skip(p_);
    return true;
}

std::size_t encode_head(std::uint8_t* out, std::uint8_t major, std::uint64_t arg) noexcept {
    std::uint8_t m = std::uint8_t(major << 5);
    if (arg < 24) {
        out[0] = std::uint8_t(m | arg);
        return 1;
    }
    unsigned n = arg <= 0xff ? 1 : arg <= 0xffff ? 2 : arg <= 0xffffffffULL ? 4 : 8;
    out[0] = std::uint8_t(m | (n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27));
    for (unsigned i = 0; i < n; ++i) out[1 + i] = std::uint8_t(arg >> (8 * (n - 1 - i)));
    return 1 + n;
}

void Writer::head(std::uint8_t major, std::uint64_t arg) {
    std::uint8_t b[9];
    std::size_t n = encode_head(b, major, arg);
    out_.insert(out_.end(), b, b + n);
}

void reencode(Value v, Writer& w) {
    switch (v.kind()) {
    case Kind::uint:
    case Kind::nint: w.integer(v.as_int()); break;
    case Kind::bytes: w.bytes(v.as_bytes()); break;
    case Kind::text: w.text(v.as_text()); break;
    case Kind::link: w.link(v.as_link()); break;
    case Kind::boolean: w.boolean(v.as_bool()); break;
    case Kind::null: w.null(); break;
    case Kind::array: {
        w.array(v.count());
        ArrayIter it = v.array();
        Value e;
        while (it.next(e)) reencode(e, w);
        break;
    }
    case Kind::map: {
        w.map(v.count());
        MapIter it = v.map();
        std::string_view k;
        Value e;
        while (it.next(k, e)) {
            w.text(k);
            reencode(e, w);
        }
        break;
    }
    }
}

}  // namespace sov::cbor
