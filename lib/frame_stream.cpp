#include "sovereign/frame_stream.h"

#include "sovereign/cbor.h"
#include "sovereign/varint.h"

#include <algorithm>
#include <cstring>
#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace sov::frames {

Located parse_envelope(ByteView raw, Envelope& out) noexcept {
    Located v = cbor::validate(raw);
    if (v) return v;
    cbor::Value m = cbor::Value::of(raw);
    if (!m.is(cbor::Kind::map)) return {Errc::frame_bad_envelope, 0};
    bool have_src = false, have_recv = false, have_wire = false;
    out.vrd.reset();
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
        } else if (k == "wire") {
            if (!val.is(cbor::Kind::bytes)) return {Errc::frame_field_type, at};
            out.wire = val.as_bytes();
            have_wire = true;
        }
    }
    if (!have_src || !have_recv || !have_wire) return {Errc::frame_missing_field, 0};
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
    l.wire_off = off(env.wire.data());
    l.wire_len = std::uint32_t(env.wire.size());
    l.raw_len = std::uint32_t(env.raw.size());
    l.recv = env.recv;
    return l;
}

Envelope at(const EnvelopeLayout& l, const std::uint8_t* raw) noexcept {
    Envelope e;
    e.src = {reinterpret_cast<const char*>(raw + l.src_off), l.src_len};
    if (l.has_vrd) e.vrd = std::string_view{reinterpret_cast<const char*>(raw + l.vrd_off), l.vrd_len};
    e.recv = l.recv;
    e.wire = {raw + l.wire_off, l.wire_len};
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
