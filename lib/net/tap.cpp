// The taps' cursor rules (sovereign/net/tap.h).
#include "sovereign/net/tap.h"

#include "sovereign/cbor.h"

namespace sov::net {

StreamHead peek_stream_message(ByteView wire) noexcept {
    StreamHead h;
    std::size_t hlen = 0;
    if (cbor::validate_prefix(wire, hlen)) return h;
    const ByteView rest(wire.data() + hlen, wire.size() - hlen);
    std::size_t plen = 0;
    if (rest.empty() || cbor::validate_prefix(rest, plen) || plen != rest.size()) return h;
    const cbor::Value header = cbor::Value::of(ByteView(wire.data(), hlen));
    const cbor::Value payload = cbor::Value::of(rest);
    if (!header.is(cbor::Kind::map) || !payload.is(cbor::Kind::map)) return h;
    const cbor::Value op = header.get("op");
    if (!op.is(cbor::Kind::uint) && !op.is(cbor::Kind::nint)) return h;
    h.ok = true;
    h.op = op.as_int();
    if (h.op == -1) {
        h.name = payload.get("error").as_text();
        h.message = payload.get("message").as_text();
        return h;
    }
    h.t = header.get("t").as_text();
    if (h.t == "#info") {
        h.name = payload.get("name").as_text();
        h.message = payload.get("message").as_text();
        return h;
    }
    const cbor::Value seq = payload.get("seq");
    if (seq.is(cbor::Kind::uint)) h.seq = seq.as_int();
    return h;
}

SourceCursor::Step SourceCursor::on_message(const StreamHead& head) noexcept {
    Step s;
    if (!head.ok || !head.seq) return s;
    const std::int64_t seq = *head.seq;
    if (conn_last_ && seq <= *conn_last_) {
        s.verdict = Verdict::non_increasing;
        return s;
    }
    conn_last_ = seq;
    if (cursor_ && seq <= *cursor_) {
        s.verdict = Verdict::duplicate;
        return s;
    }
    if (!checked_first_) {
        checked_first_ = true;
        if (cursor_ && seq > *cursor_ + 1) s.gap = Gap{*cursor_ + 1, seq - 1};
    }
    cursor_ = seq;
    return s;
}

}  // namespace sov::net
