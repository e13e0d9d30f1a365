// plc.cpp — PLC operations and per-DID logs (see plc.h; docs/protocol.md §7).
//
// Parsing uses simdjson's On-Demand API: one pass over the padded input, every field visited
// exactly once, so a shape error can name the byte offset of the offending value (the start
// of its token). simdjson reports malformed JSON lazily and without a position; on that path
// only we re-parse with nlohmann::json, whose parse_error carries the byte, to name it.
//
// Choices the reference implementation leaves implicit:
// - Field sets are exact per op type. The reference server parses ops through a schema that
//   drops unknown keys before storing them, so a served op never has extra keys, and an op
//   with one could not hash to its CID in the form we would keep. Duplicate JSON keys have no
//   DAG-CBOR form and are malformed too.
// - The canonical chain is the list of non-nullified ops: every accepted op names a
//   non-nullified prev and nullifies everything after it, so that list is always a chain
//   and the head is its last element.
// - The signer of each op is remembered as an index into the rotation keys of its prev's op
//   (the first key that verifies, as the reference implementation's indexOf does with
//   duplicated keys), which is exactly what a later nullification compares against.
// - Per-DID rate limits are the server's admission policy, not a property of a log: ops over
//   them were never accepted, so a log replay does not check them.
#include "sovereign/plc.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/multibase.h"
#include "sovereign/syntax.h"
#include "internal/plc_apply.h"

namespace sov::plc {
namespace {

namespace od = simdjson::ondemand;

// ---------------------------------------------------------------- JSON parsing helpers

struct Ctx {
    std::string_view text;  // the whole input, for nlohmann's error position
    const char* base;       // start of the padded copy simdjson reads
    Problem& why;
};

Errc fail(Ctx& c, Errc e, std::size_t offset, std::string reason) {
    c.why.offset = offset;
    c.why.reason = std::move(reason);
    return e;
}

// Malformed JSON: simdjson knows only that; nlohmann tells where.
Errc json_fail(Ctx& c, simdjson::error_code code, std::size_t fallback) {
    std::size_t at = fallback;
    std::string what = simdjson::error_message(code);
    try {
        const auto parsed = nlohmann::json::parse(c.text.begin(), c.text.end());
        (void)parsed;
    } catch (const nlohmann::json::parse_error& e) {
        at = e.byte > 0 ? e.byte - 1 : 0;
        what = "invalid JSON";
    } catch (const std::exception&) {
    }
    return fail(c, Errc::json_parse, at, "not valid JSON: " + what);
}

std::size_t offset_of(Ctx& c, od::value& v, std::size_t fallback) {
    const std::string_view tok = v.raw_json_token();
    if (tok.data() < c.base || tok.data() > c.base + c.text.size()) return fallback;
    return std::size_t(tok.data() - c.base);
}

// The JSON type of `v`, or an error already reported.
Errc type_of(Ctx& c, od::value& v, od::json_type& t, std::size_t at) {
    if (auto e = v.type().get(t)) return json_fail(c, e, at);
    return Errc::ok;
}

Errc get_string(Ctx& c, od::value v, std::string& out, const std::string& path) {
    const std::size_t at = offset_of(c, v, 0);
    od::json_type t;
    if (Errc e = type_of(c, v, t, at); e != Errc::ok) return e;
    if (t != od::json_type::string) return fail(c, Errc::plc_malformed, at, path + ": not a string");
    std::string_view s;
    if (auto e = v.get_string().get(s)) return json_fail(c, e, at);
    out.assign(s);
    return Errc::ok;
}

Errc get_string_array(Ctx& c, od::value v, std::vector<std::string>& out, const std::string& path) {
    const std::size_t at = offset_of(c, v, 0);
    od::json_type t;
    if (Errc e = type_of(c, v, t, at); e != Errc::ok) return e;
    if (t != od::json_type::array) return fail(c, Errc::plc_malformed, at, path + ": not an array");
    od::array arr;
    if (auto e = v.get_array().get(arr)) return json_fail(c, e, at);
    for (auto el : arr) {
        od::value item;
        if (auto e = el.get(item)) return json_fail(c, e, at);
        out.emplace_back();
        if (Errc e = get_string(c, item, out.back(), path + "[" + std::to_string(out.size() - 1) + "]");
            e != Errc::ok)
            return e;
    }
    return Errc::ok;
}

// Iterates the fields of an object value: f(key, value, key_offset) -> Errc. Rejects duplicate
// keys (they have no DAG-CBOR form).
template <class F>
Errc for_fields(Ctx& c, od::value v, const std::string& path, F&& f) {
    const std::size_t at = offset_of(c, v, 0);
    od::json_type t;
    if (Errc e = type_of(c, v, t, at); e != Errc::ok) return e;
    if (t != od::json_type::object) return fail(c, Errc::plc_malformed, at, path + ": not an object");
    od::object obj;
    if (auto e = v.get_object().get(obj)) return json_fail(c, e, at);
    std::vector<std::string> seen;
    for (auto field : obj) {
        od::field fl;
        if (auto e = std::move(field).get(fl)) return json_fail(c, e, at);
        std::string_view key;
        if (auto e = fl.unescaped_key().get(key)) return json_fail(c, e, at);
        std::string k(key);
        od::value val = fl.value();
        const std::size_t vat = offset_of(c, val, at);
        if (std::find(seen.begin(), seen.end(), k) != seen.end())
            return fail(c, Errc::plc_malformed, vat, path + ": duplicate field \"" + k + "\"");
        seen.push_back(k);
        if (Errc e = f(k, val, vat); e != Errc::ok) return e;
    }
    return Errc::ok;
}

// Field bits of an op object.
enum : unsigned {
    kType = 1u << 0, kRotation = 1u << 1, kVm = 1u << 2, kAka = 1u << 3, kServices = 1u << 4,
    kPrev = 1u << 5, kSig = 1u << 6, kSigningKey = 1u << 7, kRecoveryKey = 1u << 8,
    kHandle = 1u << 9, kService = 1u << 10,
};
constexpr std::array<std::pair<unsigned, std::string_view>, 11> kOpFields{{
    {kType, "type"}, {kRotation, "rotationKeys"}, {kVm, "verificationMethods"},
    {kAka, "alsoKnownAs"}, {kServices, "services"}, {kPrev, "prev"}, {kSig, "sig"},
    {kSigningKey, "signingKey"}, {kRecoveryKey, "recoveryKey"}, {kHandle, "handle"},
    {kService, "service"},
}};

Errc parse_op(Ctx& c, od::value v, Operation& op, const std::string& path) {
    const std::size_t at = offset_of(c, v, 0);
    unsigned seen = 0;
    std::string type;
    Errc e = for_fields(c, v, path, [&](const std::string& k, od::value val, std::size_t vat) -> Errc {
        const std::string p = path + "." + k;
        if (k == "type") { seen |= kType; return get_string(c, val, type, p); }
        if (k == "sig") { seen |= kSig; return get_string(c, val, op.sig, p); }
        if (k == "prev") {
            seen |= kPrev;
            od::json_type t;
            if (Errc te = type_of(c, val, t, vat); te != Errc::ok) return te;
            if (t == od::json_type::null) {
                bool is_null = false;
                if (auto je = val.is_null().get(is_null)) return json_fail(c, je, vat);
                op.prev.reset();
                return Errc::ok;
            }
            op.prev.emplace();
            return get_string(c, val, *op.prev, p + " (a CID string or null)");
        }
        if (k == "rotationKeys") { seen |= kRotation; return get_string_array(c, val, op.rotation_keys, p); }
        if (k == "alsoKnownAs") { seen |= kAka; return get_string_array(c, val, op.also_known_as, p); }
        if (k == "verificationMethods") {
            seen |= kVm;
            return for_fields(c, val, p, [&](const std::string& id, od::value kv, std::size_t) -> Errc {
                op.verification_methods.emplace_back(id, std::string{});
                return get_string(c, kv, op.verification_methods.back().second, p + "." + id);
            });
        }
        if (k == "services") {
            seen |= kServices;
            return for_fields(c, val, p, [&](const std::string& id, od::value sv, std::size_t sat) -> Errc {
                Service s;
                s.id = id;
                const std::string sp = p + "." + id;
                unsigned have = 0;
                Errc se = for_fields(c, sv, sp, [&](const std::string& f, od::value fv, std::size_t fat) -> Errc {
                    if (f == "type") { have |= 1; return get_string(c, fv, s.type, sp + ".type"); }
                    if (f == "endpoint") { have |= 2; return get_string(c, fv, s.endpoint, sp + ".endpoint"); }
                    return fail(c, Errc::plc_malformed, fat, sp + ": unknown field \"" + f + "\"");
                });
                if (se != Errc::ok) return se;
                if (have != 3)
                    return fail(c, Errc::plc_malformed, sat,
                                sp + ": missing field \"" + std::string(have & 1 ? "endpoint" : "type") + "\"");
                op.services.push_back(std::move(s));
                return Errc::ok;
            });
        }
        if (k == "signingKey") { seen |= kSigningKey; return get_string(c, val, op.signing_key, p); }
        if (k == "recoveryKey") { seen |= kRecoveryKey; return get_string(c, val, op.recovery_key, p); }
        if (k == "handle") { seen |= kHandle; return get_string(c, val, op.handle, p); }
        if (k == "service") { seen |= kService; return get_string(c, val, op.service, p); }
        return fail(c, Errc::plc_malformed, vat, path + ": unknown field \"" + k + "\"");
    });
    if (e != Errc::ok) return e;
    if (!(seen & kType)) return fail(c, Errc::plc_malformed, at, path + ": missing field \"type\"");
    unsigned want = 0;
    if (type == "plc_operation") {
        op.type = OpType::operation;
        want = kType | kRotation | kVm | kAka | kServices | kPrev | kSig;
    } else if (type == "plc_tombstone") {
        op.type = OpType::tombstone;
        want = kType | kPrev | kSig;
    } else if (type == "create") {
        op.type = OpType::legacy_create;
        want = kType | kSigningKey | kRecoveryKey | kHandle | kService | kPrev | kSig;
    } else {
        return fail(c, Errc::plc_malformed, at, path + ".type: unknown operation type \"" + type + "\"");
    }
    for (const auto& [bit, name] : kOpFields) {
        if ((want & bit) && !(seen & bit))
            return fail(c, Errc::plc_malformed, at, path + ": missing field \"" + std::string(name) + "\"");
        if (!(want & bit) && (seen & bit))
            return fail(c, Errc::plc_malformed, at,
                        path + ": field \"" + std::string(name) + "\" not allowed in a " + type);
    }
    if (op.type == OpType::tombstone && !op.prev)
        return fail(c, Errc::plc_malformed, at, path + ".prev: null in a plc_tombstone");
    return Errc::ok;
}

// An export line or audit-log entry (an object value).
Errc parse_entry(Ctx& c, od::value v, ExportLine& out, bool allow_sequenced, const std::string& path) {
    const std::size_t at = offset_of(c, v, 0);
    enum : unsigned { fDid = 1, fOp = 2, fCid = 4, fCreated = 8, fSeq = 16, fType = 32, fNull = 64 };
    unsigned seen = 0;
    std::size_t created_at_off = at;
    const std::string pre = path.empty() ? "" : path + ".";
    Errc e = for_fields(c, v, path.empty() ? "line" : path, [&](const std::string& k, od::value val, std::size_t vat) -> Errc {
        if (k == "did") { seen |= fDid; return get_string(c, val, out.did, pre + k); }
        if (k == "operation") { seen |= fOp; return parse_op(c, val, out.op, pre + k); }
        if (k == "cid") { seen |= fCid; return get_string(c, val, out.cid, pre + k); }
        if (k == "createdAt") {
            seen |= fCreated;
            created_at_off = vat;
            return get_string(c, val, out.created_at, pre + k);
        }
        if (k == "type" && allow_sequenced) {
            seen |= fType;
            std::string t;
            if (Errc te = get_string(c, val, t, pre + k); te != Errc::ok) return te;
            if (t != "sequenced_op")
                return fail(c, Errc::plc_malformed, vat, pre + "type: \"" + t + "\" is not \"sequenced_op\"");
            return Errc::ok;
        }
        if (k == "seq" && allow_sequenced) {
            seen |= fSeq;
            od::json_type t;
            if (Errc te = type_of(c, val, t, vat); te != Errc::ok) return te;
            if (t != od::json_type::number || val.get_uint64().get(out.seq) != simdjson::SUCCESS)
                return fail(c, Errc::plc_malformed, vat, pre + "seq: not an unsigned 64-bit integer");
            return Errc::ok;
        }
        if (k == "nullified") {
            seen |= fNull;
            od::json_type t;
            if (Errc te = type_of(c, val, t, vat); te != Errc::ok) return te;
            if (t != od::json_type::boolean || val.get_bool().get(out.nullified) != simdjson::SUCCESS)
                return fail(c, Errc::plc_malformed, vat, pre + "nullified: not a boolean");
            return Errc::ok;
        }
        return fail(c, Errc::plc_malformed, vat, (path.empty() ? "line" : path) + ": unknown field \"" + k + "\"");
    });
    if (e != Errc::ok) return e;
    const bool sequenced = seen & fType;
    out.form = sequenced ? ExportLine::Form::sequenced : ExportLine::Form::legacy;
    const unsigned want = sequenced ? (fDid | fOp | fCid | fCreated | fType | fSeq) : (fDid | fOp | fCid | fCreated | fNull);
    const char* names[] = {"did", "operation", "cid", "createdAt", "seq", "type", "nullified"};
    const std::string where = path.empty() ? "line" : path;
    for (unsigned i = 0; i < 7; ++i) {
        const unsigned bit = 1u << i;
        if ((want & bit) && !(seen & bit))
            return fail(c, Errc::plc_malformed, at,
                        where + ": missing field \"" + names[i] + "\" (" + (sequenced ? "sequenced" : "legacy") + " form)");
        if (!(want & bit) && (seen & bit))
            return fail(c, Errc::plc_malformed, at,
                        where + ": field \"" + names[i] + "\" not allowed in the " + (sequenced ? "sequenced" : "legacy") + " form");
    }
    auto us = syntax::parse_datetime_micros(out.created_at);
    if (!us) return fail(c, Errc::plc_malformed, created_at_off, pre + "createdAt: not a datetime");
    out.created_at_us = *us;
    return Errc::ok;
}

// simdjson needs SIMDJSON_PADDING readable bytes after the input.
struct Padded {
    std::vector<char> buf;
    const char* load(std::string_view s) {
        buf.assign(s.size() + simdjson::SIMDJSON_PADDING, '\0');
        std::copy(s.begin(), s.end(), buf.begin());
        return buf.data();
    }
};

// ---------------------------------------------------------------- encoding

void put_strings(cbor::Writer& w, const std::vector<std::string>& v) {
    w.array(v.size());
    for (const auto& s : v) w.text(s);
}

template <class T, class Key>
std::vector<const T*> sorted_by_key(const std::vector<T>& v, Key key) {
    std::vector<const T*> out;
    out.reserve(v.size());
    for (const auto& x : v) out.push_back(&x);
    std::sort(out.begin(), out.end(), [&](const T* a, const T* b) { return cbor::key_compare(key(*a), key(*b)) < 0; });
    return out;
}

void put_prev(cbor::Writer& w, const Operation& op) {
    if (op.prev) w.text(*op.prev);
    else w.null();
}

bool has_scheme(std::string_view url) {
    return url.starts_with("https://") || url.starts_with("http://");
}

// A did:key as crypto::parse_did_key reads it, without its on-curve check: the point is checked
// once, by crypto::parse_public_key in the memo below (the errors are the same codes).
Errc decode_did_key(std::string_view did_key, crypto::PublicKey& out) {
    if (!did_key.starts_with("did:key:z")) return Errc::key_bad_multibase;
    std::vector<std::uint8_t> b;
    b.reserve(40);
    if (multibase::base58btc_decode(did_key.substr(9), b) != Errc::ok) return Errc::key_bad_multibase;
    if (b.size() < 2) return Errc::key_bad_codec;
    if (b[0] == 0xE7 && b[1] == 0x01) out.curve = crypto::Curve::k256;
    else if (b[0] == 0x80 && b[1] == 0x24) out.curve = crypto::Curve::p256;
    else return Errc::key_bad_codec;
    if (b.size() != 35 || (b[2] != 0x02 && b[2] != 0x03)) return Errc::key_bad_point;
    std::copy(b.begin() + 2, b.end(), out.compressed.begin());
    return Errc::ok;
}

// Rotation keys decoded and checked to be points of their curve, per thread, by did:key text:
// check_limits checks the op's keys and verify_signature, in the same Log::apply, compares
// against the same keys (a genesis: its own; an update that keeps its rotation keys: prev's),
// so each key is decoded and its point decompressed once per op instead of twice. A k256 key
// that verify_signature verifies with directly is prepared (libsecp256k1's parsed point) on
// first use. Direct-mapped; a miss only costs the work. The memo is a cache of a pure function
// (text -> key or error): results are unchanged.
struct KeyMemo {
    struct Slot {
        std::string did_key;
        Errc status = Errc::bad_argument;
        crypto::PublicKey key;
        crypto::PreparedKey prepared;  // empty until prepare()
        bool filled = false;

        /// The key ready to verify with (status must be ok).
        crypto::PreparedKey& prepare() {
            if (prepared.empty() || !(prepared.key() == key)) (void)prepared.reset(key);
            return prepared;
        }
    };
    static constexpr std::size_t kSlots = 64;
    std::array<Slot, kSlots> slots;

    /// The key of `did_key` (status ok: a point of its curve) or the error parse_did_key gives for it.
    Slot& get(std::string_view did_key) {
        Slot& s = slots[std::hash<std::string_view>{}(did_key) % kSlots];
        if (s.filled && s.did_key == did_key) return s;
        s.filled = true;
        s.did_key.assign(did_key);
        s.status = decode_did_key(did_key, s.key);
        if (s.status == Errc::ok && !crypto::parse_public_key(s.key.curve, s.key.compressed)) s.status = Errc::key_bad_point;
        return s;
    }
};

KeyMemo& key_memo() {
    thread_local KeyMemo memo;
    return memo;
}

}  // namespace

std::string_view to_string(OpType t) noexcept {
    switch (t) {
    case OpType::operation: return "plc_operation";
    case OpType::tombstone: return "plc_tombstone";
    case OpType::legacy_create: return "create";
    }
    return "unknown";
}

Operation normalise(const Operation& op) {
    if (op.type != OpType::legacy_create) return op;
    Operation n;
    n.type = OpType::operation;
    n.rotation_keys = {op.recovery_key, op.signing_key};
    n.verification_methods = {{"atproto", op.signing_key}};
    n.also_known_as = {"at://" + op.handle};
    n.services = {{"atproto_pds", "AtprotoPersonalDataServer",
                   has_scheme(op.service) ? op.service : "https://" + op.service}};
    n.prev = op.prev;
    n.sig = op.sig;
    return n;
}

std::vector<std::uint8_t> encode(const Operation& op, bool with_sig) {
    // Canonical order (length first, then bytewise), fixed per type:
    //  plc_operation: sig prev type services alsoKnownAs rotationKeys verificationMethods
    //  plc_tombstone: sig prev type
    //  create:        sig prev type handle service signingKey recoveryKey
    std::vector<std::uint8_t> out;
    out.reserve(512);
    cbor::Writer w(out);
    const std::size_t sig = with_sig ? 1 : 0;
    switch (op.type) {
    case OpType::operation: {
        w.map(6 + sig);
        if (with_sig) { w.text("sig"); w.text(op.sig); }
        w.text("prev"); put_prev(w, op);
        w.text("type"); w.text("plc_operation");
        w.text("services");
        w.map(op.services.size());
        for (const Service* s : sorted_by_key(op.services, [](const Service& x) -> std::string_view { return x.id; })) {
            w.text(s->id);
            w.map(2);
            w.text("type"); w.text(s->type);
            w.text("endpoint"); w.text(s->endpoint);
        }
        w.text("alsoKnownAs"); put_strings(w, op.also_known_as);
        w.text("rotationKeys"); put_strings(w, op.rotation_keys);
        w.text("verificationMethods");
        w.map(op.verification_methods.size());
        using Vm = std::pair<std::string, std::string>;
        for (const Vm* vm : sorted_by_key(op.verification_methods, [](const Vm& x) -> std::string_view { return x.first; })) {
            w.text(vm->first);
            w.text(vm->second);
        }
        break;
    }
    case OpType::tombstone:
        w.map(2 + sig);
        if (with_sig) { w.text("sig"); w.text(op.sig); }
        w.text("prev"); put_prev(w, op);
        w.text("type"); w.text("plc_tombstone");
        break;
    case OpType::legacy_create:
        w.map(6 + sig);
        if (with_sig) { w.text("sig"); w.text(op.sig); }
        w.text("prev"); put_prev(w, op);
        w.text("type"); w.text("create");
        w.text("handle"); w.text(op.handle);
        w.text("service"); w.text(op.service);
        w.text("signingKey"); w.text(op.signing_key);
        w.text("recoveryKey"); w.text(op.recovery_key);
        break;
    }
    return out;
}

std::string op_cid(const Operation& op) {
    const auto bytes = encode(op, true);
    return cid::to_string(cid::compute(cid::kCodecDagCbor, bytes));
}

std::string did_of_genesis(const Operation& op) {
    const auto digest = crypto::sha256(encode(op, true));
    std::string b32;
    multibase::base32_encode(digest, b32);
    return "did:plc:" + b32.substr(0, 24);
}

Errc check_limits(const Operation& op, const Limits& l, Problem& why) {
    auto over = [&](std::string reason) {
        why.offset = 0;
        why.reason = std::move(reason);
        return Errc::plc_limit;
    };
    const std::size_t size = encode(op, true).size();
    if (size > l.max_op_bytes)
        return over("operation: " + std::to_string(size) + " bytes of DAG-CBOR, over " + std::to_string(l.max_op_bytes));
    if (op.type == OpType::tombstone) return Errc::ok;
    const Operation n = normalise(op);
    if (n.also_known_as.size() > l.max_also_known_as)
        return over("alsoKnownAs: " + std::to_string(n.also_known_as.size()) + " entries, over " + std::to_string(l.max_also_known_as));
    for (std::size_t i = 0; i < n.also_known_as.size(); ++i) {
        if (n.also_known_as[i].size() > l.max_aka_chars)
            return over("alsoKnownAs[" + std::to_string(i) + "]: longer than " + std::to_string(l.max_aka_chars));
        for (std::size_t j = 0; j < i; ++j)
            if (n.also_known_as[j] == n.also_known_as[i]) return over("alsoKnownAs[" + std::to_string(i) + "]: duplicate entry");
    }
    if (n.rotation_keys.size() > l.max_rotation_keys)
        return over("rotationKeys: " + std::to_string(n.rotation_keys.size()) + " keys, over " + std::to_string(l.max_rotation_keys));
    if (n.services.size() > l.max_services)
        return over("services: " + std::to_string(n.services.size()) + " entries, over " + std::to_string(l.max_services));
    for (const auto& s : n.services) {
        if (s.id.size() > l.max_service_id) return over("services." + s.id + ": id longer than " + std::to_string(l.max_service_id));
        if (s.type.size() > l.max_service_type) return over("services." + s.id + ".type: longer than " + std::to_string(l.max_service_type));
        if (s.endpoint.size() > l.max_service_endpoint)
            return over("services." + s.id + ".endpoint: longer than " + std::to_string(l.max_service_endpoint));
    }
    if (n.verification_methods.size() > l.max_verification_methods)
        return over("verificationMethods: " + std::to_string(n.verification_methods.size()) + " entries, over " +
                    std::to_string(l.max_verification_methods));
    for (const auto& [id, key] : n.verification_methods) {
        if (id.size() > l.max_vm_id) return over("verificationMethods." + id + ": id longer than " + std::to_string(l.max_vm_id));
        if (key.size() > l.max_vm_key) return over("verificationMethods." + id + ": key longer than " + std::to_string(l.max_vm_key));
    }
    for (std::size_t i = 0; i < n.rotation_keys.size(); ++i) {
        const Errc e = key_memo().get(n.rotation_keys[i]).status;
        if (e != Errc::ok) {
            why.offset = 0;
            why.reason = "rotationKeys[" + std::to_string(i) + "]: not a k256 or p256 did:key (" +
                         std::string(sov::to_string(e)) + ")";
            return e;
        }
    }
    return Errc::ok;
}

// The first key in priority order that the signature verifies under, found without a verify
// per key tried: at the first key of a curve, one public-key recovery (crypto::recover: the set
// of keys the signature verifies under) when it saves work, then every key of that curve is a
// comparison. It saves work for p256 always (a recovery costs about 1.35 verifies and needs no
// OpenSSL EVP_PKEY per key, which costs most of a verify to build) and for k256 when at least
// two k256 keys are left to try (a k256 recovery of both parities costs about 1.9 verifies
// through libsecp256k1's public API: a recovery and a fixed-base multiplication); a lone k256
// key is verified directly. Either way the answer for each key is "does the signature verify
// under it", so the signer and the errors are those of verifying each key in turn. s over n/2
// is sig_high_s at the first parseable key whose curve's n/2 it exceeds (the two curves' n/2
// differ), as before.
Errc verify_signature(const Operation& op, const std::vector<std::string>& keys, std::size_t& signer) {
    std::vector<std::uint8_t> sig;
    if (Errc e = multibase::base64url_decode(op.sig, sig); e != Errc::ok) return e;
    if (sig.size() != 64) return Errc::sig_bad_length;
    const auto digest = crypto::sha256(encode(op, false));
    // The keys' curves (0 k256, 1 p256, -1 unparseable, skipped) and how many k256 keys are left.
    std::vector<int> curve(keys.size(), -1);
    std::size_t k256_left = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        const auto& k = key_memo().get(keys[i]);
        if (k.status != Errc::ok) continue;
        curve[i] = k.key.curve == crypto::Curve::p256;
        k256_left += curve[i] == 0;
    }
    crypto::Recovered recovered[2];
    Errc status[2] = {Errc::bad_argument, Errc::bad_argument};
    bool done[2] = {false, false};
    for (std::size_t i = 0; i < keys.size(); ++i) {
        const int c = curve[i];
        if (c < 0) continue;
        auto& k = key_memo().get(keys[i]);
        if (c == 0) --k256_left;
        if (!done[c] && c == 0 && k256_left == 0) {  // the last k256 key to try: verify it
            const Errc e = k.prepare().verify(digest.data(), sig);
            if (e == Errc::ok) {
                signer = i;
                return Errc::ok;
            }
            if (e == Errc::sig_high_s) return e;
            continue;
        }
        if (!done[c]) {
            status[c] = crypto::recover(k.key.curve, digest.data(), sig, recovered[c]);
            done[c] = true;
        }
        if (status[c] == Errc::sig_high_s) return Errc::sig_high_s;  // the same for every key of this curve
        if (status[c] == Errc::ok && recovered[c].contains(k.key)) {
            signer = i;
            return Errc::ok;
        }
    }
    return Errc::sig_invalid;
}

bool is_der_signature(std::string_view sig) {
    std::vector<std::uint8_t> b;
    if (multibase::base64url_decode(sig, b) != Errc::ok) return false;
    // 30 len 02 rlen r 02 slen s, short-form lengths (an ECDSA signature is under 128 bytes).
    if (b.size() < 8 || b[0] != 0x30 || b[1] != b.size() - 2) return false;
    std::size_t i = 2;
    for (int n = 0; n < 2; ++n) {
        if (i + 2 > b.size() || b[i] != 0x02) return false;
        const std::size_t len = b[i + 1];
        if (len == 0 || len > 33 || i + 2 + len > b.size()) return false;
        i += 2 + len;
    }
    return i == b.size();
}

Errc parse_export_line(std::string_view line, ExportLine& out, Problem& why) {
    thread_local od::parser parser;
    thread_local Padded pad;
    out = ExportLine{};
    why = Problem{};
    Ctx c{line, pad.load(line), why};
    od::document doc;
    if (auto e = parser.iterate(c.base, line.size(), line.size() + simdjson::SIMDJSON_PADDING).get(doc))
        return json_fail(c, e, 0);
    od::value root;
    if (auto e = doc.get_value().get(root)) return json_fail(c, e, 0);
    if (Errc e = parse_entry(c, root, out, true, ""); e != Errc::ok) return e;
    if (const char* loc = nullptr; doc.current_location().get(loc) == simdjson::SUCCESS)
        return fail(c, Errc::trailing_bytes, std::size_t(loc - c.base), "bytes after the line's JSON object");
    return Errc::ok;
}

Errc parse_audit_log(std::string_view json, std::vector<ExportLine>& out, Problem& why) {
    od::parser parser;
    Padded pad;
    why = Problem{};
    Ctx c{json, pad.load(json), why};
    od::document doc;
    if (auto e = parser.iterate(c.base, json.size(), json.size() + simdjson::SIMDJSON_PADDING).get(doc))
        return json_fail(c, e, 0);
    od::value root;
    if (auto e = doc.get_value().get(root)) return json_fail(c, e, 0);
    const std::size_t at = offset_of(c, root, 0);
    od::json_type t;
    if (Errc e = type_of(c, root, t, at); e != Errc::ok) return e;
    if (t != od::json_type::array) return fail(c, Errc::plc_malformed, at, "audit log: not a JSON array");
    od::array arr;
    if (auto e = root.get_array().get(arr)) return json_fail(c, e, at);
    std::size_t i = 0;
    for (auto el : arr) {
        od::value v;
        if (auto e = el.get(v)) return json_fail(c, e, at);
        ExportLine line;
        if (Errc e = parse_entry(c, v, line, false, "[" + std::to_string(i) + "]"); e != Errc::ok) return e;
        out.push_back(std::move(line));
        ++i;
    }
    if (const char* loc = nullptr; doc.current_location().get(loc) == simdjson::SUCCESS)
        return fail(c, Errc::trailing_bytes, std::size_t(loc - c.base), "bytes after the audit log's JSON array");
    return Errc::ok;
}

// ---------------------------------------------------------------- the log state machine

namespace {
// The History of internal/plc_apply.h over a Log's whole entries.
struct EntryHistory {
    const std::vector<Entry>& e;
    std::size_t size() const { return e.size(); }
    bool cid_is(std::size_t i, const std::string& cid) const { return e[i].cid == cid; }
    std::string cid(std::size_t i) const { return e[i].cid; }
    bool nullified(std::size_t i) const { return e[i].nullified; }
    bool tombstone(std::size_t i) const { return e[i].op.type == OpType::tombstone; }
    std::int64_t created_at_us(std::size_t i) const { return e[i].created_at_us; }
    std::string created_at(std::size_t i) const { return e[i].created_at; }
    std::size_t signer(std::size_t i) const { return e[i].signer; }
    std::vector<std::string> rotation_keys(std::size_t i) const { return normalise(e[i].op).rotation_keys; }
};
}  // namespace

Errc Log::apply(const ExportLine& line, Problem& why) {
    detail::Verdict v;
    if (Errc e = detail::apply_op(EntryHistory{entries_}, did_, limits_, line, why, v); e != Errc::ok) return e;
    if (v.nullify_from != std::size_t(-1))
        for (std::size_t i = v.nullify_from; i < entries_.size(); ++i) entries_[i].nullified = true;
    entries_.push_back(Entry{line.op, std::move(v.cid), line.created_at, line.created_at_us, false, v.signer});
    return Errc::ok;
}

State Log::state() const {
    State s;
    s.did = did_;
    const Entry* head = nullptr;
    for (const Entry& en : entries_) {
        if (en.nullified) continue;
        head = &en;
        KeyEpoch epoch;
        epoch.valid_from_us = en.created_at_us;
        if (en.op.type != OpType::tombstone) {
            const Operation n = normalise(en.op);
            for (const auto& [id, key] : n.verification_methods)
                if (id == "atproto") epoch.did_key = key;
        }
        if (s.key_history.empty() || s.key_history.back().did_key != epoch.did_key) {
            if (!epoch.did_key.empty())
                if (auto k = crypto::parse_did_key(epoch.did_key)) epoch.key = *k;
            s.key_history.push_back(std::move(epoch));
        }
    }
    if (!head) return s;
    if (head->op.type == OpType::tombstone) {
        s.tombstoned = true;
        return s;
    }
    const Operation n = normalise(head->op);
    s.rotation_keys = n.rotation_keys;
    for (const auto& [id, key] : n.verification_methods)
        if (id == "atproto") s.signing_key = key;
    if (!s.signing_key.empty())
        if (auto k = crypto::parse_did_key(s.signing_key)) s.signing_public_key = *k;
    for (const auto& sv : n.services)
        if (sv.id == "atproto_pds" && sv.type == "AtprotoPersonalDataServer") s.pds = sv.endpoint;
    for (const auto& aka : n.also_known_as)
        if (aka.starts_with("at://")) {
            s.handle = aka.substr(5);
            break;
        }
    return s;
}

}  // namespace sov::plc
