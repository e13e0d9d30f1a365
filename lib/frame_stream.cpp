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

void append_record(std::vector<std::uint8_t>& out, std::string_view src, std::optional<std::string_view> vrd,
                   std::int64_t recv, ByteView wire) {
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
    std::uint8_t v[kMaxVarint + 1];
    std::size_t vl = varint::encode(len, v);
    std::memmove(out.data() + base + vl, out.data() + base + kMaxVarint, len);
    std::memcpy(out.data() + base, v, vl);
    out.resize(base + vl + len);
}

void append_record_with_verdict(std::vector<std::uint8_t>& out, const Envelope& env, std::string_view vrd) {
    // Splice, not re-encode: the envelope is canonical (parse_envelope validated it), so
    // "vrd" has exactly one place in its key order. Replace that entry's value, or insert the
    // entry there and bump the count in the head; every other byte is copied as it was, in two
    // ranges. Equal to re-encoding all entries in canonical order (tested), without a sort, a
    // second walk or a temporary.
    const std::uint8_t* const end = env.raw.data() + env.raw.size();
    cbor::Value m = cbor::Value::of(env.raw);
    const std::uint64_t count = m.count();
    cbor::MapIter it = m.map();
    const std::uint8_t* const body = it.position();
    const std::uint8_t* cut_from = end;  // [cut_from, cut_to): the old vrd entry, or empty
    const std::uint8_t* cut_to = end;
    std::string_view k;
    cbor::Value val;
    for (;;) {
        const std::uint8_t* entry = it.position();
        if (!it.next(k, val)) break;
        const int c = cbor::key_compare(k, "vrd");
        if (c >= 0) {
            cut_from = entry;
            cut_to = c == 0 ? it.position() : entry;
            break;
        }
    }
    const std::uint64_t n = cut_to != cut_from ? count : count + 1;
    std::uint8_t map_head[9], text_head[9];
    const std::size_t mh = cbor::encode_head(map_head, 5, n);
    const std::size_t th = cbor::encode_head(text_head, 3, vrd.size());
    static constexpr std::uint8_t kKey[4] = {0x63, 'v', 'r', 'd'};
    const std::size_t before = std::size_t(cut_from - body), after = std::size_t(end - cut_to);
    const std::size_t len = mh + before + sizeof kKey + th + vrd.size() + after;
    append_len(out, len);
    if (out.capacity() - out.size() < len) out.reserve(std::max(out.size() + len, 2 * out.capacity()));
    out.insert(out.end(), map_head, map_head + mh);  // inserts, not resize + copy: no zero-fill
    out.insert(out.end(), body, cut_from);
    out.insert(out.end(), kKey, kKey + sizeof kKey);
    out.insert(out.end(), text_head, text_head + th);
    out.insert(out.end(), vrd.begin(), vrd.end());
    out.insert(out.end(), cut_to, end);
}

void append_envelope(std::vector<std::uint8_t>& out, ByteView envelope) {
    std::uint8_t v[kMaxVarint + 1];
    const std::size_t vl = varint::encode(envelope.size(), v);
    const std::size_t base = out.size();
    out.resize(base + vl + envelope.size());
    std::memcpy(out.data() + base, v, vl);
    if (!envelope.empty()) std::memcpy(out.data() + base + vl, envelope.data(), envelope.size());
}

void append_record_raw(std::vector<std::uint8_t>& out, const Envelope& env) { append_envelope(out, env.raw); }

Reader::Reader(io::Input in) : in_(std::move(in)) {
    buf_.resize(1u << 20);
    if (in_.open_errno()) eof_ = true;
}

bool Reader::fill(std::size_t need) {
    while (end_ - start_ < need) {
        if (eof_) return false;
        if (start_ > 0 && (buf_.size() - start_ < need || start_ > buf_.size() / 2)) {
            std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
            end_ -= start_;
            start_ = 0;
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
