#include "sovereign/message.h"

#include "sovereign/cid.h"
#include "sovereign/syntax.h"

#include <initializer_list>
#include <string>
#include <utility>

namespace sov::msg {

std::string_view to_string(Type t) noexcept {
    switch (t) {
    case Type::commit: return "commit";
    case Type::sync: return "sync";
    case Type::identity: return "identity";
    case Type::account: return "account";
    case Type::info: return "info";
    case Type::error: return "error";
    case Type::handle: return "handle";
    case Type::migrate: return "migrate";
    case Type::tombstone: return "tombstone";
    case Type::unknown: return "unknown";
    }
    return "unknown";
}

Type type_from_header(std::string_view t) noexcept {
    if (t == "#commit") return Type::commit;
    if (t == "#sync") return Type::sync;
    if (t == "#identity") return Type::identity;
    if (t == "#account") return Type::account;
    if (t == "#info") return Type::info;
    if (t == "#handle") return Type::handle;
    if (t == "#migrate") return Type::migrate;
    if (t == "#tombstone") return Type::tombstone;
    return Type::unknown;
}

namespace {

using cbor::Kind;
using cbor::Value;

// Field readers share one sticky Problem: the first failure is kept, later reads are no-ops
// (checked once per message rather than after every read).
struct Fields {
    ByteView wire;
    Value map;
    Problem p;

    std::size_t off(Value v) const noexcept { return std::size_t(v.data() - wire.data()); }
    void fail(Errc e, std::string_view field, Value at) noexcept {
        if (!p) p = Problem{e, false, field, at.valid() ? off(at) : off(map)};
    }
    Value need(std::string_view key, Kind k) noexcept {
        Value v = map.get(key);
        if (p) return {};
        if (!v.valid()) fail(Errc::cbor_missing_field, key, map);
        else if (!v.is(k)) fail(Errc::cbor_wrong_type, key, v);
        return v.is(k) ? v : Value{};
    }
    std::optional<Value> opt(std::string_view key, Kind k) noexcept {
        Value v = map.get(key);
        if (!v.valid() || p) return std::nullopt;
        if (!v.is(k)) { fail(Errc::cbor_wrong_type, key, v); return std::nullopt; }
        return v;
    }
    std::int64_t seq() noexcept {
        Value v = need("seq", Kind::uint);
        std::int64_t s = v.as_int();
        if (v.valid() && s < 1) fail(Errc::cbor_int_range, "seq", v);
        return s;
    }
    std::string_view did(std::string_view key) noexcept {
        Value v = need(key, Kind::text);
        std::string_view d = v.as_text();
        if (v.valid() && !syntax::is_did(d)) fail(Errc::syntax_did, key, v);
        return d;
    }
    std::string_view tid(std::string_view key) noexcept {
        Value v = need(key, Kind::text);
        std::string_view t = v.as_text();
        if (v.valid() && !syntax::is_tid(t)) fail(Errc::syntax_tid, key, v);
        return t;
    }
    std::string_view time() noexcept {
        Value v = need("time", Kind::text);
        std::string_view t = v.as_text();
        if (v.valid() && !syntax::is_datetime(t)) fail(Errc::syntax_datetime, "time", v);
        return t;
    }
    bool boolean(std::string_view key) noexcept { return need(key, Kind::boolean).as_bool(); }
    ByteView bytes(std::string_view key) noexcept { return need(key, Kind::bytes).as_bytes(); }
    ByteView link(std::string_view key) noexcept { return need(key, Kind::link).as_link(); }
    std::string_view text(std::string_view key) noexcept { return need(key, Kind::text).as_text(); }
    std::optional<std::string_view> opt_text(std::string_view key) noexcept {
        auto v = opt(key, Kind::text);
        return v ? std::optional<std::string_view>(v->as_text()) : std::nullopt;
    }
};

void parse_ops(Fields& f, Message& m) {
    Value ops = f.need("ops", Kind::array);
    if (f.p) return;
    if (ops.count() > kMaxOps) {
        f.p = Problem{Errc::too_large, true, "ops", f.off(ops)};
        return;
    }
    cbor::ArrayIter it = ops.array();
    Value op;
    while (it.next(op)) {
        if (!op.is(Kind::map)) { f.fail(Errc::cbor_wrong_type, "ops", op); return; }
        Fields of{f.wire, op, {}};
        RepoOp r;
        std::string_view action = of.text("action");
        r.path = of.text("path");
        Value cid = op.get("cid");
        if (!of.p && !cid.valid()) of.fail(Errc::cbor_missing_field, "ops.cid", op);
        else if (!of.p && !cid.is(Kind::link) && !cid.is(Kind::null)) of.fail(Errc::cbor_wrong_type, "ops.cid", cid);
        r.cid = cid.as_link();
        if (auto prev = of.opt("prev", Kind::link)) r.prev = prev->as_link();
        if (!of.p) {
            if (action == "create") r.action = OpAction::create;
            else if (action == "update") r.action = OpAction::update;
            else if (action == "delete") r.action = OpAction::del;
            else of.fail(Errc::bad_argument, "ops.action", op.get("action"));
        }
        if (!of.p && !syntax::is_repo_path(r.path)) of.fail(Errc::syntax_path, "ops.path", op.get("path"));
        if (!of.p && (r.action == OpAction::del) != r.cid.empty())
            of.fail(Errc::cbor_wrong_type, "ops.cid", cid);  // delete ⇔ cid null
        if (of.p) {
            f.p = of.p;
            return;
        }
        m.ops.push_back(r);
    }
}

void parse_commit(Fields& f, Message& m) {
    m.seq = f.seq();
    m.rebase = f.boolean("rebase");
    m.too_big = f.boolean("tooBig");
    m.did = f.did("repo");
    m.commit = f.link("commit");
    m.rev = f.tid("rev");
    Value since = f.map.get("since");
    if (!f.p) {
        if (!since.valid()) f.fail(Errc::cbor_missing_field, "since", f.map);
        else if (since.is(Kind::text)) {
            m.since = since.as_text();
            if (!syntax::is_tid(*m.since)) f.fail(Errc::syntax_tid, "since", since);
        } else if (!since.is(Kind::null)) f.fail(Errc::cbor_wrong_type, "since", since);
    }
    Value blocks = f.need("blocks", Kind::bytes);
    m.blocks = blocks.as_bytes();
    // blobs: deprecated, ignored on read. Must be present; Go producers write null for an
    // empty list (seen in another relay's acceptance scenarios), so null is accepted too.
    if (!f.p) {
        Value blobs = f.map.get("blobs");
        if (!blobs.valid()) f.fail(Errc::cbor_missing_field, "blobs", f.map);
        else if (!blobs.is(Kind::array) && !blobs.is(Kind::null)) f.fail(Errc::cbor_wrong_type, "blobs", blobs);
    }
    m.time = f.time();
    if (auto pd = f.opt("prevData", Kind::link)) m.prev_data = pd->as_link();
    if (!f.p && !cid::is_blessed(m.commit)) f.fail(Errc::cid_bad_codec, "commit", f.map.get("commit"));
    if (!f.p && m.blocks.size() > kMaxCommitBlocks) f.p = Problem{Errc::too_large, true, "blocks", f.off(blocks)};
    parse_ops(f, m);
}

}  // namespace

Problem parse(ByteView wire, Message& m) {
    std::vector<RepoOp> ops = std::move(m.ops);  // keep capacity: no allocation per message
    ops.clear();
    m = Message{};
    m.ops = std::move(ops);
    if (wire.size() > kMaxMessage) return Problem{Errc::too_large, true, "", 0};
    std::size_t hlen;
    Located e = cbor::validate_prefix(wire, hlen);
    if (e) return Problem{e.errc, false, "header", e.offset};
    m.header_raw = wire.first(hlen);
    m.payload_raw = wire.subspan(hlen);
    if (m.payload_raw.empty()) return Problem{Errc::truncated, false, "payload", hlen};
    e = cbor::validate(m.payload_raw);
    if (e) return Problem{e.errc, false, "payload", hlen + e.offset};

    Value h = Value::of(m.header_raw);
    Fields hf{wire, h, {}};
    if (!h.is(Kind::map)) return Problem{Errc::cbor_wrong_type, false, "header", 0};
    Value op = h.get("op");
    if (!op.valid()) return Problem{Errc::cbor_missing_field, false, "op", 0};
    if (!op.is(Kind::uint) && !op.is(Kind::nint)) return Problem{Errc::cbor_wrong_type, false, "op", hf.off(op)};
    m.op = op.as_int();
    Value payload = Value::of(m.payload_raw);
    m.payload = payload;
    if (!payload.is(Kind::map)) return Problem{Errc::cbor_wrong_type, false, "payload", hlen};
    Fields f{wire, payload, {}};

    if (m.op == -1) {
        m.type = Type::error;
        m.name = f.text("error");
        m.message = f.opt_text("message");
        return f.p;
    }
    if (m.op != 1) return {};  // unknown op: Type::unknown, skipped by callers
    Value t = h.get("t");
    if (!t.valid()) return Problem{Errc::cbor_missing_field, false, "t", 0};
    if (!t.is(Kind::text)) return Problem{Errc::cbor_wrong_type, false, "t", hf.off(t)};
    m.t = t.as_text();
    m.type = type_from_header(m.t);

    switch (m.type) {
    case Type::commit: parse_commit(f, m); break;
    case Type::sync: {
        m.seq = f.seq();
        m.did = f.did("did");
        Value blocks = f.need("blocks", Kind::bytes);
        m.blocks = blocks.as_bytes();
        m.rev = f.tid("rev");
        m.time = f.time();
        if (!f.p && m.blocks.size() > kMaxSyncBlocks) f.p = Problem{Errc::too_large, true, "blocks", f.off(blocks)};
        break;
    }
    case Type::identity:
        m.seq = f.seq();
        m.did = f.did("did");
        m.time = f.time();
        m.handle = f.opt_text("handle");
        if (!f.p && m.handle && *m.handle != "handle.invalid" && !syntax::is_handle(*m.handle))
            f.fail(Errc::syntax_handle, "handle", payload.get("handle"));
        break;
    case Type::account:
        m.seq = f.seq();
        m.did = f.did("did");
        m.time = f.time();
        m.active = f.boolean("active");
        m.status = f.opt_text("status");
        break;
    case Type::info:
        m.name = f.text("name");
        m.message = f.opt_text("message");
        break;
    case Type::handle:
        m.seq = f.seq();
        m.did = f.did("did");
        m.handle = f.text("handle");
        m.time = f.time();
        break;
    case Type::migrate: {
        m.seq = f.seq();
        m.did = f.did("did");
        m.time = f.time();
        Value to = payload.get("migrateTo");  // required, nullable string
        if (!f.p && !to.valid()) f.fail(Errc::cbor_missing_field, "migrateTo", payload);
        else if (!f.p && !to.is(Kind::text) && !to.is(Kind::null)) f.fail(Errc::cbor_wrong_type, "migrateTo", to);
        break;
    }
    case Type::tombstone:
        m.seq = f.seq();
        m.did = f.did("did");
        m.time = f.time();
        break;
    case Type::error:
    case Type::unknown: break;
    }
    return f.p;
}

namespace {

// `header` bytes then a map of the text fields that are not empty.
std::string frame(ByteView header, std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
    std::vector<std::uint8_t> out(header.begin(), header.end());
    cbor::Writer w(out);
    std::size_t n = 0;
    for (const auto& f : fields) n += !f.second.empty();
    w.map(n);
    for (const auto& [k, v] : fields)
        if (!v.empty()) {
            w.text(k);
            w.text(v);
        }
    return std::string(out.begin(), out.end());
}

}  // namespace

bool split(ByteView wire, ByteView& header, ByteView& payload) {
    std::size_t hlen = 0;
    if (cbor::validate_prefix(wire, hlen) || hlen >= wire.size()) return false;
    header = wire.subspan(0, hlen);
    payload = wire.subspan(hlen);
    if (cbor::validate(payload)) return false;
    return cbor::Value::of(payload).is(cbor::Kind::map) && cbor::Value::of(header).is(cbor::Kind::map);
}

bool resequence(ByteView wire, std::uint64_t seq, std::vector<std::uint8_t>& out) {
    out.clear();
    ByteView header, payload;
    if (!split(wire, header, payload)) return false;
    cbor::Value p = cbor::Value::of(payload);
    cbor::MapIter it = p.map();
    out.reserve(wire.size() + 8);
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), p.data(), it.position());  // the map head
    bool found = false;
    std::string_view key;
    cbor::Value v;
    for (const std::uint8_t* start = it.position(); it.next(key, v); start = it.position()) {
        if (key == "seq" && v.is(cbor::Kind::uint)) {
            cbor::Writer w(out);
            w.text("seq");
            w.uint(seq);
            found = true;
        } else {
            out.insert(out.end(), start, v.data() + v.size());
        }
    }
    if (!found) out.clear();
    return found;
}

std::string error_frame(std::string_view error, std::string_view message) {
    static constexpr std::uint8_t kHeader[] = {0xa1, 0x62, 0x6f, 0x70, 0x20};  // {op: -1}
    return frame(ByteView{kHeader, sizeof kHeader}, {{"error", error}, {"message", message}});
}

std::string info_frame(std::string_view name, std::string_view message) {
    // {t: "#info", op: 1}
    static constexpr std::uint8_t kHeader[] = {0xa2, 0x61, 0x74, 0x65, 0x23, 0x69, 0x6e, 0x66, 0x6f, 0x62, 0x6f, 0x70, 0x01};
    return frame(ByteView{kHeader, sizeof kHeader}, {{"name", name}, {"message", message}});
}

}  // namespace sov::msg
