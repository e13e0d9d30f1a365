#include "sovereign/frame_stream.h"

#include "sovereign/cbor.h"
#include "sovereign/varint.h"

#include <algorithm>
#include <cstring>
#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace sov::frames {

namespace {

bool is_int(const cbor::Value& v) noexcept { return v.is(cbor::Kind::uint) || v.is(cbor::Kind::nint); }

// Checks a `mark` value (validated DAG-CBOR) against the Markers table of design §2 and, when
// `out` is given, decodes it. Offsets are relative to the mark's first byte. The keys come in
// canonical order (to, url, from, kind, since, cursor, reason), so `kind` is known only after
// some of its extras: collect first, then check by kind.
Located check_mark(cbor::Value mark, Marker* out) noexcept {
    if (!mark.is(cbor::Kind::map)) return {Errc::frame_bad_mark, 0};
    struct Field {
        std::string_view key;
        cbor::Value v;
        std::size_t at = 0;
    };
    enum { kKind, kUrl, kCursor, kReason, kFrom, kTo, kSince, kCount };
    Field f[kCount] = {{"kind", {}, 0}, {"url", {}, 0},  {"cursor", {}, 0}, {"reason", {}, 0},
                       {"from", {}, 0}, {"to", {}, 0}, {"since", {}, 0}};
    cbor::MapIter it = mark.map();
    std::string_view k;
    cbor::Value val;
    while (true) {
        const std::size_t at = std::size_t(it.position() - mark.data());
        if (!it.next(k, val)) break;
        for (auto& fi : f)
            if (fi.key == k) {
                fi.v = val;
                fi.at = at;
            }
    }
    if (!f[kKind].v.is(cbor::Kind::text)) return {Errc::frame_bad_mark, f[kKind].v.valid() ? f[kKind].at : 0};
    const std::string_view kind = f[kKind].v.as_text();
    // Required (or optional) keys of each known kind, with their types.
    auto need = [&](int i, cbor::Kind want, bool optional) -> Located {
        const Field& fi = f[i];
        if (!fi.v.valid()) return optional ? Located{} : Located{Errc::frame_bad_mark, 0};
        const bool ok = want == cbor::Kind::text ? fi.v.is(cbor::Kind::text) : is_int(fi.v);
        return ok ? Located{} : Located{Errc::frame_bad_mark, fi.at};
    };
    Located e;
    if (kind == "connect") {
        if ((e = need(kUrl, cbor::Kind::text, false)) || (e = need(kCursor, cbor::Kind::uint, true))) return e;
    } else if (kind == "disconnect") {
        if ((e = need(kReason, cbor::Kind::text, false))) return e;
    } else if (kind == "gap") {
        if ((e = need(kFrom, cbor::Kind::uint, false)) || (e = need(kTo, cbor::Kind::uint, false))) return e;
        if (f[kFrom].v.as_int() > f[kTo].v.as_int()) return {Errc::frame_bad_mark, f[kFrom].at};
    } else if (kind == "idle") {
        if ((e = need(kSince, cbor::Kind::uint, false))) return e;
    }
    if (!out) return {};
    // Only the fields of the kind are decoded: an unknown kind, or a key of another kind, is
    // an unknown key (kept in the bytes, ignored here).
    *out = Marker{};
    out->kind = std::string(kind);
    auto text = [&](int i) { return std::optional<std::string>(std::string(f[i].v.as_text())); };
    auto integer = [&](int i) {
        return f[i].v.valid() ? std::optional<std::int64_t>(f[i].v.as_int()) : std::nullopt;
    };
    if (kind == "connect") {
        out->url = text(kUrl);
        out->cursor = integer(kCursor);
    } else if (kind == "disconnect") {
        out->reason = text(kReason);
    } else if (kind == "gap") {
        out->from = integer(kFrom);
        out->to = integer(kTo);
    } else if (kind == "idle") {
        out->since = integer(kSince);
    }
    return {};
}

}  // namespace

Located parse_envelope(ByteView raw, Envelope& out) noexcept {
    Located v = cbor::validate(raw);
    if (v) return v;
    cbor::Value m = cbor::Value::of(raw);
    if (!m.is(cbor::Kind::map)) return {Errc::frame_bad_envelope, 0};
    bool have_src = false, have_recv = false, have_wire = false;
    out.vrd.reset();
    out.wire = {};
    out.mark = {};
    cbor::MapIter it = m.map();
    std::string_view k;
    cbor::Value val;
    while (true) {
        std::size_t at = std::size_t(it.position() - raw.data());
        if (!it.next(k, val)) break;
        if (k == "src") {
            if (!val.is(cbor::Kind::text)) return {Errc::frame_field_type, at};
            out.src = val.as_text();
            if (out.src.size() > kMaxSrc) return {Errc::frame_src_too_long, at};
            have_src = true;
        } else if (k == "vrd") {
            if (!val.is(cbor::Kind::text)) return {Errc::frame_field_type, at};
            out.vrd = val.as_text();
        } else if (k == "recv") {
            if (!val.is(cbor::Kind::uint) && !val.is(cbor::Kind::nint)) return {Errc::frame_field_type, at};
            out.recv = val.as_int();
            have_recv = true;
        } else if (k == "mark") {
            // Checked here, so every reader rejects a malformed marker as a framing error.
            if (Located e = check_mark(val, nullptr)) return {e.errc, std::size_t(val.data() - raw.data()) + e.offset};
            out.mark = val.raw();
        } else if (k == "wire") {
            if (!val.is(cbor::Kind::bytes)) return {Errc::frame_field_type, at};
            if (!out.mark.empty()) return {Errc::frame_mark_and_wire, at};  // "mark" sorts before "wire"
            out.wire = val.as_bytes();
            have_wire = true;
        }
    }
    if (!have_src || !have_recv || (!have_wire && out.mark.empty())) return {Errc::frame_missing_field, 0};
    out.raw = raw;
    return {};
}

EnvelopeLayout layout_of(const Envelope& env) noexcept {
    auto off = [&](const void* p) { return std::uint32_t(static_cast<const std::uint8_t*>(p) - env.raw.data()); };
    EnvelopeLayout l;
    l.src_off = off(env.src.data());
    l.src_len = std::uint32_t(env.src.size());
    l.has_vrd = env.vrd.has_value();
    if (env.vrd) {
        l.vrd_off = off(env.vrd->data());
        l.vrd_len = std::uint32_t(env.vrd->size());
    }
    if (!env.wire.empty()) l.wire_off = off(env.wire.data());
    l.wire_len = std::uint32_t(env.wire.size());
    if (env.is_marker()) l.mark_off = off(env.mark.data());
    l.mark_len = std::uint32_t(env.mark.size());
    l.raw_len = std::uint32_t(env.raw.size());
    l.recv = env.recv;
    return l;
}

Envelope at(const EnvelopeLayout& l, const std::uint8_t* raw) noexcept {
    Envelope e;
    e.src = {reinterpret_cast<const char*>(raw + l.src_off), l.src_len};
    if (l.has_vrd) e.vrd = std::string_view{reinterpret_cast<const char*>(raw + l.vrd_off), l.vrd_len};
    e.recv = l.recv;
    if (l.wire_len) e.wire = {raw + l.wire_off, l.wire_len};
    if (l.mark_len) e.mark = {raw + l.mark_off, l.mark_len};
    e.raw = {raw, l.raw_len};
    return e;
}

Located parse_record(ByteView record, Envelope& out) noexcept {
    std::uint64_t n;
    std::size_t vl;
    Errc e = varint::decode(record, n, vl, kMaxVarint);
    if (e != Errc::ok) return {e == Errc::varint_overflow ? Errc::frame_oversized : e, 0};
    if (n == 0) return {Errc::frame_zero_length, 0};
    if (n > kMaxEnvelope) return {Errc::frame_oversized, 0};
    if (n > record.size() - vl) return {Errc::truncated, 0};
    if (n < record.size() - vl) return {Errc::trailing_bytes, vl + std::size_t(n)};
    Located l = parse_envelope(record.subspan(vl), out);
    if (l) l.offset += vl;
    return l;
}

namespace {

void append_len(std::vector<std::uint8_t>& out, std::size_t n) { varint::append(n, out); }

}  // namespace

bool append_record(std::vector<std::uint8_t>& out, std::string_view src, std::optional<std::string_view> vrd,
                   std::int64_t recv, ByteView wire) {
    if (src.size() > kMaxSrc) return false;
    // Encode after a 4-byte hole, then place the minimal varint right before the envelope.
    std::size_t base = out.size();
    out.resize(base + kMaxVarint);
    cbor::Writer w(out);
    w.map(vrd ? 4 : 3);
    w.text("src");
    w.text(src);
    if (vrd) {
        w.text("vrd");
        w.text(*vrd);
    }
    w.text("recv");
    w.integer(recv);
    w.text("wire");
    w.bytes(wire);
    std::size_t len = out.size() - base - kMaxVarint;
    if (len > kMaxEnvelope) {
        out.resize(base);
        return false;
    }
    std::uint8_t v[kMaxVarint + 1];
    std::size_t vl = varint::encode(len, v);
    std::memmove(out.data() + base + vl, out.data() + base + kMaxVarint, len);
    std::memcpy(out.data() + base, v, vl);
    out.resize(base + vl + len);
    return true;
}

Located parse_marker(const Envelope& env, Marker& out) noexcept {
    if (!env.is_marker()) return {Errc::frame_missing_field, 0};
    return check_mark(cbor::Value::of(env.mark), &out);
}

bool append_marker(std::vector<std::uint8_t>& out, std::string_view src, std::int64_t recv, const Marker& m) {
    if (src.size() > kMaxSrc) return false;
    // The mark map's entries, sorted canonically (keys of different lengths interleave).
    struct Entry {
        std::string_view key;
        const std::string* text;
        std::optional<std::int64_t> num;
    };
    Entry e[7]{};
    std::size_t n = 0;
    e[n++] = {"kind", &m.kind, std::nullopt};
    if (m.url) e[n++] = {"url", &*m.url, std::nullopt};
    if (m.cursor) e[n++] = {"cursor", nullptr, m.cursor};
    if (m.reason) e[n++] = {"reason", &*m.reason, std::nullopt};
    if (m.from) e[n++] = {"from", nullptr, m.from};
    if (m.to) e[n++] = {"to", nullptr, m.to};
    if (m.since) e[n++] = {"since", nullptr, m.since};
    std::sort(e, e + n, [](const Entry& a, const Entry& b) { return cbor::key_compare(a.key, b.key) < 0; });
    const std::size_t base = out.size();
    out.resize(base + kMaxVarint);
    cbor::Writer w(out);
    w.map(3);
    w.text("src");
    w.text(src);
    w.text("mark");
    w.map(n);
    for (std::size_t i = 0; i < n; ++i) {
        w.text(e[i].key);
        if (e[i].text) w.text(*e[i].text);
        else w.integer(*e[i].num);
    }
    w.text("recv");
    w.integer(recv);
    const std::size_t len = out.size() - base - kMaxVarint;
    std::uint8_t v[kMaxVarint + 1];
    const std::size_t vl = varint::encode(len, v);
    std::memmove(out.data() + base + vl, out.data() + base + kMaxVarint, len);
    std::memcpy(out.data() + base, v, vl);
    out.resize(base + vl + len);
    // Never a record readers reject (a text that is not UTF-8, a known kind lacking its keys,
    // gap from > to, over 16 MiB): the writer checks with the reader's own rules.
    Envelope check;
    if (len > kMaxEnvelope || parse_record({out.data() + base, vl + len}, check)) {
        out.resize(base);
        return false;
    }
    return true;
}

bool append_record_with_verdict(std::vector<std::uint8_t>& out, const Envelope& env, std::string_view vrd,
                                std::optional<std::string_view> why) {
    // Splice, not re-encode: the envelope is canonical (parse_envelope validated it), so
    // "vrd" and "why" each have exactly one place in its key order (other keys, e.g. an
    // unknown "wat", may sit between them). Drop their old entries, insert the new ones there
    // and set the count in the head; every other byte is copied as it was, in three ranges.
    // Equal to re-encoding all entries in canonical order (tested), without a sort, a second
    // walk or a temporary.
    const std::uint8_t* const end = env.raw.data() + env.raw.size();
    cbor::Value m = cbor::Value::of(env.raw);
    const std::uint64_t count = m.count();
    cbor::MapIter it = m.map();
    const std::uint8_t* const body = it.position();
    // [p1, p1e): the old vrd entry (empty if none), at vrd's place; [p2, p2e): the same for why.
    const std::uint8_t *p1 = end, *p1e = end, *p2 = end, *p2e = end;
    bool past_vrd = false;
    std::string_view k;
    cbor::Value val;
    for (;;) {
        const std::uint8_t* entry = it.position();
        if (!it.next(k, val)) break;
        if (!past_vrd) {
            const int c = cbor::key_compare(k, "vrd");
            if (c < 0) continue;
            past_vrd = true;
            p1 = entry;
            p1e = c == 0 ? it.position() : entry;
            if (c == 0) continue;
        }
        const int c = cbor::key_compare(k, "why");
        if (c >= 0) {
            p2 = entry;
            p2e = c == 0 ? it.position() : entry;
            break;
        }
    }
    const std::uint64_t n = count - (p1e != p1) - (p2e != p2) + 1 + (why ? 1 : 0);
    std::uint8_t map_head[9], vrd_head[9], why_head[9];
    const std::size_t mh = cbor::encode_head(map_head, 5, n);
    const std::size_t vh = cbor::encode_head(vrd_head, 3, vrd.size());
    const std::size_t wh = why ? cbor::encode_head(why_head, 3, why->size()) : 0;
    static constexpr std::uint8_t kVrd[4] = {0x63, 'v', 'r', 'd'};
    static constexpr std::uint8_t kWhy[4] = {0x63, 'w', 'h', 'y'};
    const std::size_t len = mh + std::size_t(p1 - body) + sizeof kVrd + vh + vrd.size() + std::size_t(p2 - p1e) +
                            (why ? sizeof kWhy + wh + why->size() : 0) + std::size_t(end - p2e);
    if (len > kMaxEnvelope) return false;  // D13: no reader would accept it
    append_len(out, len);
    if (out.capacity() - out.size() < len) out.reserve(std::max(out.size() + len, 2 * out.capacity()));
    out.insert(out.end(), map_head, map_head + mh);  // inserts, not resize + copy: no zero-fill
    out.insert(out.end(), body, p1);
    out.insert(out.end(), kVrd, kVrd + sizeof kVrd);
    out.insert(out.end(), vrd_head, vrd_head + vh);
    out.insert(out.end(), vrd.begin(), vrd.end());
    out.insert(out.end(), p1e, p2);
    if (why) {
        out.insert(out.end(), kWhy, kWhy + sizeof kWhy);
        out.insert(out.end(), why_head, why_head + wh);
        out.insert(out.end(), why->begin(), why->end());
    }
    out.insert(out.end(), p2e, end);
    return true;
}

bool append_envelope(std::vector<std::uint8_t>& out, ByteView envelope) {
    if (envelope.empty() || envelope.size() > kMaxEnvelope) return false;  // D12: never a record readers reject
    std::uint8_t v[kMaxVarint + 1];
    const std::size_t vl = varint::encode(envelope.size(), v);
    const std::size_t base = out.size();
    out.resize(base + vl + envelope.size());
    std::memcpy(out.data() + base, v, vl);
    std::memcpy(out.data() + base + vl, envelope.data(), envelope.size());
    return true;
}

bool append_record_raw(std::vector<std::uint8_t>& out, const Envelope& env) { return append_envelope(out, env.raw); }

Reader::Reader(io::Input in) : in_(std::move(in)) {
    buf_.resize(1u << 20);
    if (in_.open_errno()) eof_ = true;
}

bool Reader::fill(std::size_t need) {
    while (end_ - start_ < need) {
        if (eof_) return false;
        // Bytes before `keep` are done with: records already returned and not held.
        const std::size_t keep = holding_ ? held_ : start_;
        if (keep > 0 && (buf_.size() - start_ < need || keep > buf_.size() / 2)) {
            std::memmove(buf_.data(), buf_.data() + keep, end_ - keep);
            end_ -= keep;
            start_ -= keep;
            rec_start_ = rec_start_ >= keep ? rec_start_ - keep : 0;
            held_ = holding_ ? 0 : held_;
        }
        if (buf_.size() - start_ < need) buf_.resize(std::max(buf_.size() * 2, start_ + need));
        long r = in_.read(buf_.data() + end_, buf_.size() - end_);
        if (r < 0) {
            err_ = {Errc::io_error, consumed_ + (end_ - start_)};
            eof_ = true;
            return false;
        }
        if (r == 0) {
            eof_ = true;
            return false;
        }
        end_ += std::size_t(r);
    }
    return true;
}

bool Reader::next(Envelope& env) {
    if (err_) return false;
    rec_off_ = consumed_;
    // Varint: up to 4 bytes, but the stream may legitimately end after fewer.
    fill(kMaxVarint);
    if (err_) return false;
    std::size_t avail = end_ - start_;
    if (avail == 0) return false;  // clean end
    std::uint64_t n;
    std::size_t vlen;
    Errc e = varint::decode({buf_.data() + start_, avail}, n, vlen, kMaxVarint);
    if (e != Errc::ok) {
        err_ = {e == Errc::varint_overflow ? Errc::frame_oversized : e, rec_off_};
        return false;
    }
    if (n == 0) { err_ = {Errc::frame_zero_length, rec_off_}; return false; }
    if (n > kMaxEnvelope) { err_ = {Errc::frame_oversized, rec_off_}; return false; }
    if (!fill(vlen + std::size_t(n))) {
        if (!err_) err_ = {Errc::truncated, rec_off_};
        return false;
    }
    ByteView raw{buf_.data() + start_ + vlen, std::size_t(n)};
    Located pe = parse_envelope(raw, env);
    if (pe) {
        err_ = {pe.errc, rec_off_ + vlen + pe.offset};
        return false;
    }
    rec_start_ = start_;
    start_ += vlen + std::size_t(n);
    consumed_ += vlen + n;
    return true;
}

bool Writer::flush() {
    std::size_t off = 0;
    while (off < buf_.size() && !broken_pipe_ && !failed_) {
        ssize_t r = ::write(fd_, buf_.data() + off, buf_.size() - off);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE) broken_pipe_ = true;
            else { failed_ = true; errno_ = errno; }
            break;
        }
        off += std::size_t(r);
        written_ += std::uint64_t(r);
    }
    buf_.clear();
    return !failed_;
}

}  // namespace sov::frames
