#include "sovereign/frame_json.h"

#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/dag_json.h"
#include "sovereign/multibase.h"
#include "sovereign/varint.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace sov::frame_json {

namespace {

// Splits a wire message into header and payload when both are strict DAG-CBOR maps AND their
// DAG-JSON converts back to the very same bytes. The JSON mapping is not injective for
// arbitrary data (a text-valued {"$link": …} map reads back as a link, "$type": "blob" maps
// are checked), so anything that would not round-trip stays as {"wire": {"$bytes": …}}.
bool split_wire(ByteView wire, cbor::Value& header, cbor::Value& payload, std::string& hjson, std::string& pjson) {
    std::size_t hlen;
    if (cbor::validate_prefix(wire, hlen) || hlen == wire.size()) return false;
    ByteView rest = wire.subspan(hlen);
    if (cbor::validate(rest)) return false;
    header = cbor::Value::of(wire.first(hlen));
    payload = cbor::Value::of(rest);
    if (!header.is(cbor::Kind::map) || !payload.is(cbor::Kind::map)) return false;
    hjson.clear();
    pjson.clear();
    dag_json::append(header, hjson);
    dag_json::append(payload, pjson);
    std::vector<std::uint8_t> back;
    cbor::Writer w(back);
    std::string where;
    for (const std::string* js : {&hjson, &pjson}) {
        nlohmann::json j = nlohmann::json::parse(*js, nullptr, false);
        if (j.is_discarded() || dag_json::encode(j, w, where, true) != Errc::ok) return false;
    }
    return back.size() == wire.size() && std::equal(back.begin(), back.end(), wire.begin());
}

void append_blocks(cbor::Value payload, std::string& out) {
    cbor::Value blocks = payload.get("blocks");
    if (!blocks.is(cbor::Kind::bytes)) return;
    car::Reader r;
    if (r.open(blocks.as_bytes())) return;
    out += ",\"blocks_json\":{\"roots\":[{\"$link\":\"";
    cid::append_string(r.root(), out);
    out += "\"}],\"blocks\":[";
    car::Section s;
    bool first = true;
    while (r.next(s)) {
        if (!first) out.push_back(',');
        first = false;
        out += "{\"cid\":{\"$link\":\"";
        cid::append_string(s.cid, out);
        out += "\"},\"value\":";
        if (!cbor::validate(s.block)) dag_json::append(cbor::Value::of(s.block), out);
        else {
            out += "{\"$bytes\":\"";
            multibase::base64_encode(s.block, out);
            out += "\"}";
        }
        out.push_back('}');
    }
    out += "]}";
}

}  // namespace

void append_line(const frames::Envelope& env, bool decode_blocks, std::string& out) {
    out.push_back('{');
    cbor::MapIter it = cbor::Value::of(env.raw).map();
    std::string_view k;
    cbor::Value v;
    bool first = true;
    cbor::Value header, payload;
    std::string hjson, pjson;
    bool split = false;
    while (it.next(k, v)) {
        if (!first) out.push_back(',');
        first = false;
        if (k == "wire" && (split = split_wire(env.wire, header, payload, hjson, pjson))) {
            out += "\"header\":";
            out += hjson;
            out += ",\"payload\":";
            out += pjson;
            continue;
        }
        dag_json::append_string(k, out);
        out.push_back(':');
        dag_json::append(v, out);
    }
    if (decode_blocks && split) append_blocks(payload, out);
    out.push_back('}');
}

Errc append_record(std::string_view line, std::vector<std::uint8_t>& out, std::string& where) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    where = "/";
    if (j.is_discarded()) return Errc::json_parse;
    if (!j.is_object()) return Errc::json_bad_data_model;
    struct Entry {
        std::string key;
        std::vector<std::uint8_t> value;
    };
    std::vector<Entry> entries;
    bool have_wire = false;
    std::vector<std::uint8_t> wire;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        if (key == "blocks_json") continue;
        if (key == "header" || key == "payload") continue;  // handled below, in that order
        Entry e{key, {}};
        cbor::Writer w(e.value);
        if (key == "src" || key == "vrd") {
            if (!it->is_string()) { where = "/" + key; return Errc::frame_field_type; }
        } else if (key == "recv") {
            if (!it->is_number_integer()) { where = "/" + key; return Errc::frame_field_type; }
        } else if (key == "wire") {
            have_wire = true;
        }
        std::string sub;
        if (Errc err = dag_json::encode(*it, w, sub, false); err != Errc::ok) {
            where = "/" + key + (sub == "/" ? "" : sub);
            return err;
        }
        entries.push_back(std::move(e));
    }
    // A marker has no wire (docs/format-frame-stream.md); header or payload beside a mark are
    // not dropped: they make a wire, and the envelope is refused as having both.
    if (!have_wire && (!j.contains("mark") || j.contains("header") || j.contains("payload"))) {
        auto h = j.find("header");
        auto p = j.find("payload");
        if (h == j.end() || p == j.end()) { where = "/wire"; return Errc::frame_missing_field; }
        cbor::Writer w(wire);
        std::string sub;
        if (Errc err = dag_json::encode(*h, w, sub, true); err != Errc::ok) { where = "/header" + sub; return err; }
        if (Errc err = dag_json::encode(*p, w, sub, true); err != Errc::ok) { where = "/payload" + sub; return err; }
        Entry e{"wire", {}};
        cbor::Writer(e.value).bytes(wire);
        entries.push_back(std::move(e));
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return cbor::key_compare(a.key, b.key) < 0; });
    std::vector<std::uint8_t> env;
    cbor::Writer w(env);
    w.map(entries.size());
    for (auto& e : entries) {
        w.text(e.key);
        w.raw(e.value);
    }
    frames::Envelope parsed;
    if (Located l = frames::parse_envelope(env, parsed)) {
        where = "/";
        return l.errc;
    }
    // D12: an envelope over 16 MiB (a `wire` of ~12 MiB and up in base64) makes a record no
    // reader accepts; refuse the line instead of writing it.
    if (!frames::append_envelope(out, env)) {
        where = "/wire";
        return Errc::frame_oversized;
    }
    return Errc::ok;
}

}  // namespace sov::frame_json
