// Jetstream v1 lines from event-stream messages.
//
// Jetstream decodes each record into a generic map and lets a JSON encoder write it, so map
// keys come out sorted bytewise, while blobs are a typed value written in declaration order
// ($type, ref, mimeType, size). We reproduce that here over validated DAG-CBOR views, without
// building a JSON tree: the record is walked once, each map's keys sorted on the stack.
#include "sovereign/jetstream.h"

#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/dag_json.h"
#include "sovereign/message.h"

#include <algorithm>
#include <vector>

namespace sov::jetstream {

namespace {

using cbor::Kind;
using cbor::Value;

void append_sorted(Value v, std::string& out);

void append_key(std::string_view k, std::string& out) {
    dag_json::append_string(k, out);
    out.push_back(':');
}

using Entries = std::vector<std::pair<std::string_view, Value>>;

// Appends `entries` sorted bytewise by key (std::string_view compares as unsigned char), each
// as "key":value, after a ',' unless it is the object's first member.
void append_members(Entries& entries, bool first, std::string& out) {
    std::sort(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.first < b.first; });
    for (auto& [k, v] : entries) {
        if (!first) out.push_back(',');
        first = false;
        append_key(k, out);
        append_sorted(v, out);
    }
}

// A blob in Jetstream's field order; any other key of the blob map follows, sorted.
void append_blob(Value v, std::string& out) {
    static constexpr std::string_view kOrder[] = {"$type", "ref", "mimeType", "size"};
    out.push_back('{');
    bool first = true;
    for (std::string_view k : kOrder) {
        Value e = v.get(k);
        if (!e.valid()) continue;
        if (!first) out.push_back(',');
        first = false;
        append_key(k, out);
        append_sorted(e, out);
    }
    Entries rest;
    cbor::MapIter it = v.map();
    std::string_view k;
    Value e;
    while (it.next(k, e))
        if (std::find(std::begin(kOrder), std::end(kOrder), k) == std::end(kOrder)) rest.emplace_back(k, e);
    append_members(rest, first, out);
    out.push_back('}');
}

bool is_blob(Value v) {
    Value type = v.get("$type");
    return type.is(Kind::text) && type.as_text() == "blob";
}

void append_sorted(Value v, std::string& out) {
    switch (v.kind()) {
    case Kind::array: {
        out.push_back('[');
        cbor::ArrayIter it = v.array();
        Value e;
        bool first = true;
        while (it.next(e)) {
            if (!first) out.push_back(',');
            first = false;
            append_sorted(e, out);
        }
        out.push_back(']');
        return;
    }
    case Kind::map: {
        if (is_blob(v)) return append_blob(v, out);
        Entries entries;
        entries.reserve(std::size_t(v.count()));
        cbor::MapIter it = v.map();
        std::string_view k;
        Value e;
        while (it.next(k, e)) entries.emplace_back(k, e);
        out.push_back('{');
        append_members(entries, true, out);
        out.push_back('}');
        return;
    }
    default: dag_json::append(v, out); return;  // scalars, links and bytes: the data model's JSON form
    }
}

void open_line(std::string_view did, std::int64_t time_us, std::string_view kind, std::string& out) {
    out += "{\"did\":";
    dag_json::append_string(did, out);
    out += ",\"time_us\":";
    out += std::to_string(time_us);
    out += ",\"kind\":\"";
    out += kind;
    out += "\",\"";
    out += kind;
    out += "\":{";
}

std::string_view action_name(msg::OpAction a) {
    switch (a) {
    case msg::OpAction::create: return "create";
    case msg::OpAction::update: return "update";
    case msg::OpAction::del: return "delete";
    }
    return "create";
}

Result commit_lines(const msg::Message& m, ByteView wire, std::int64_t time_us, std::string& out) {
    auto wire_offset = [&](ByteView part, std::size_t within) {
        return std::size_t(part.data() - wire.data()) + within;
    };
    car::Reader reader;
    if (Located e = reader.open(m.blocks)) return {e.errc, 0, wire_offset(m.blocks, e.offset)};
    car::BlockMap blocks;
    car::Section s;
    while (reader.next(s)) blocks.add(s.cid, s.block);
    if (Located e = reader.error()) return {e.errc, 0, wire_offset(m.blocks, e.offset)};

    // Check every record first, so an error leaves `out` untouched. Only the record blocks
    // shown are hashed: the MST nodes (most of the slice) are not ours to vouch for here.
    for (const msg::RepoOp& op : m.ops) {
        if (op.action == msg::OpAction::del) continue;
        const ByteView* block = blocks.find(op.cid);
        if (!block) return {Errc::car_block_missing, 0, 0};
        if (!cid::matches(op.cid, *block)) return {Errc::car_hash_mismatch, 0, wire_offset(*block, 0)};
        if (Located e = cbor::validate(*block)) return {e.errc, 0, wire_offset(*block, e.offset)};
        if (!Value::of(*block).is(Kind::map)) return {Errc::cbor_wrong_type, 0, wire_offset(*block, 0)};
    }
    Result r;
    for (const msg::RepoOp& op : m.ops) {
        std::size_t slash = op.path.find('/');
        open_line(m.did, time_us, "commit", out);
        out += "\"rev\":";
        dag_json::append_string(m.rev, out);
        out += ",\"operation\":\"";
        out += action_name(op.action);
        out += "\",\"collection\":";
        dag_json::append_string(op.path.substr(0, slash), out);
        out += ",\"rkey\":";
        dag_json::append_string(op.path.substr(slash + 1), out);
        if (op.action != msg::OpAction::del) {
            out += ",\"record\":";
            append_sorted(Value::of(*blocks.find(op.cid)), out);
            out += ",\"cid\":\"";
            cid::append_string(op.cid, out);
            out += '"';
        }
        out += "}}\n";
        ++r.lines;
    }
    return r;
}

}  // namespace

Result append_lines(ByteView wire, std::int64_t time_us, std::string& out) {
    msg::Message m;
    if (msg::Problem p = msg::parse(wire, m)) return {p.errc, 0, p.offset};
    switch (m.type) {
    case msg::Type::commit: return commit_lines(m, wire, time_us, out);
    case msg::Type::identity:
        open_line(m.did, time_us, "identity", out);
        out += "\"did\":";
        dag_json::append_string(m.did, out);
        if (m.handle) {
            out += ",\"handle\":";
            dag_json::append_string(*m.handle, out);
        }
        out += ",\"seq\":" + std::to_string(m.seq) + ",\"time\":";
        dag_json::append_string(m.time, out);
        out += "}}\n";
        return {Errc::ok, 1, 0};
    case msg::Type::account:
        open_line(m.did, time_us, "account", out);
        out += m.active ? "\"active\":true" : "\"active\":false";
        out += ",\"did\":";
        dag_json::append_string(m.did, out);
        out += ",\"seq\":" + std::to_string(m.seq);
        if (m.status) {
            out += ",\"status\":";
            dag_json::append_string(*m.status, out);
        }
        out += ",\"time\":";
        dag_json::append_string(m.time, out);
        out += "}}\n";
        return {Errc::ok, 1, 0};
    default: return {};
    }
}

}  // namespace sov::jetstream
