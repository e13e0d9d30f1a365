// The simulated PLC directory (sovereign/sim_plc.h). Each account is generated on its own from
// (seed, index) — by several threads, with identical output — then every op is sorted into the
// export's (createdAt, cid) order and numbered.
#include "sovereign/sim_plc.h"

#include "sovereign/crypto.h"
#include "sovereign/multibase.h"
#include "sovereign/plc.h"
#include "sovereign/sim.h"
#include "sovereign/syntax.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>

namespace sov::sim {

namespace {

using plc::Operation;
using plc::OpType;

constexpr std::int64_t kMs = 1000;
constexpr std::int64_t kHourUs = 3600LL * 1000000;
constexpr std::int64_t k72hUs = 72 * kHourUs;

// ---- keys and signatures

// The group orders, big-endian.
constexpr std::uint8_t kOrderK256[32] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                         0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48,
                                         0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41};
constexpr std::uint8_t kOrderP256[32] = {0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF,
                                         0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17,
                                         0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51};

// s := n - s (32-byte big-endian): turns a low-S signature into its high-S twin.
void negate_s(crypto::Curve curve, std::uint8_t* s) {
    const std::uint8_t* n = curve == crypto::Curve::k256 ? kOrderK256 : kOrderP256;
    int borrow = 0;
    for (int i = 31; i >= 0; --i) {
        int d = int(n[i]) - int(s[i]) - borrow;
        borrow = d < 0;
        s[i] = std::uint8_t(d + (borrow ? 256 : 0));
    }
}

// r‖s as strict DER: SEQUENCE { INTEGER r, INTEGER s } (what §7 forbids in a PLC op).
std::vector<std::uint8_t> der_of(const std::array<std::uint8_t, 64>& rs) {
    auto integer = [](const std::uint8_t* v) {
        std::size_t skip = 0;
        while (skip < 31 && v[skip] == 0) ++skip;
        std::vector<std::uint8_t> i{0x02, 0};
        if (v[skip] & 0x80) i.push_back(0);
        i.insert(i.end(), v + skip, v + 32);
        i[1] = std::uint8_t(i.size() - 2);
        return i;
    };
    auto r = integer(rs.data()), s = integer(rs.data() + 32);
    std::vector<std::uint8_t> out{0x30, std::uint8_t(r.size() + s.size())};
    out.insert(out.end(), r.begin(), r.end());
    out.insert(out.end(), s.begin(), s.end());
    return out;
}

struct Key {
    crypto::PrivateKey priv;
    std::string did_key;
};

// ---- op JSON, as the reference server stores and serves it (PostgreSQL jsonb: keys ordered by
// length, then bytewise — "sig", "prev", "type", "services", "alsoKnownAs", "rotationKeys",
// "verificationMethods"; "type" before "endpoint").

void json_string(std::string& out, std::string_view s) {
    out += '"';
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        default:
            if (std::uint8_t(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(std::uint8_t(c)));
                out += buf;
            } else {
                out += c;
            }
        }
    }
    out += '"';
}

std::string operation_json(const Operation& op) {
    std::string o = "{\"sig\":";
    json_string(o, op.sig);
    o += ",\"prev\":";
    if (op.prev) json_string(o, *op.prev);
    else o += "null";
    o += ",\"type\":";
    json_string(o, plc::to_string(op.type));
    if (op.type == OpType::tombstone) return o + "}";
    o += ",\"services\":{";
    for (std::size_t i = 0; i < op.services.size(); ++i) {
        if (i) o += ',';
        json_string(o, op.services[i].id);
        o += ":{\"type\":";
        json_string(o, op.services[i].type);
        o += ",\"endpoint\":";
        json_string(o, op.services[i].endpoint);
        o += '}';
    }
    o += "},\"alsoKnownAs\":[";
    for (std::size_t i = 0; i < op.also_known_as.size(); ++i) {
        if (i) o += ',';
        json_string(o, op.also_known_as[i]);
    }
    o += "],\"rotationKeys\":[";
    for (std::size_t i = 0; i < op.rotation_keys.size(); ++i) {
        if (i) o += ',';
        json_string(o, op.rotation_keys[i]);
    }
    o += "],\"verificationMethods\":{";
    for (std::size_t i = 0; i < op.verification_methods.size(); ++i) {
        if (i) o += ',';
        json_string(o, op.verification_methods[i].first);
        o += ':';
        json_string(o, op.verification_methods[i].second);
    }
    return o + "}}";
}

// ---- one account

// A generated op before sorting.
struct RawOp {
    PlcOp op;
    std::size_t account = 0;
};

// Everything one account contributes.
struct AccountOut {
    PlcAccountTruth truth;
    Identity identity;       // the signing keys along the canonical chain (mesh-sim gen --plc-accounts)
    std::vector<PlcOp> ops;  // createdAt order
};

std::uint64_t mix(std::uint64_t seed, std::uint64_t index) {
    std::uint64_t z = seed * 0x9E3779B97F4A7C15ULL + index * 0xBF58476D1CE4E5B9ULL + 0x94D049BB133111EBULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

class AccountGen {
public:
    AccountGen(const PlcOptions& o, std::size_t index) : o_(o), index_(index), rng_(mix(o.seed, index)) {}

    AccountOut run();

private:
    Key make_key(crypto::Curve curve) {
        std::uint8_t buf[8 + 8 + 4 + 16] = {};
        for (int i = 0; i < 8; ++i) {
            buf[i] = std::uint8_t(o_.seed >> (8 * i));
            buf[8 + i] = std::uint8_t(std::uint64_t(index_) >> (8 * i));
        }
        for (int i = 0; i < 4; ++i) buf[16 + i] = std::uint8_t(key_counter_ >> (8 * i));
        std::memcpy(buf + 20, "sovereign sim plc", 16);
        ++key_counter_;
        Key k;
        k.priv = crypto::generate_from_seed(curve, crypto::sha256(ByteView(buf, sizeof buf)));
        k.did_key = crypto::to_did_key(*crypto::public_key_of(k.priv));
        return k;
    }

    std::array<std::uint8_t, 64> raw_sign(const Operation& op, const Key& k) {
        const auto digest = crypto::sha256(plc::encode(op, false));
        return crypto::sign(k.priv, digest.data());  // RFC 6979 nonces on both curves: deterministic
    }
    void sign(Operation& op, const Key& k) {
        op.sig.clear();
        const auto rs = raw_sign(op, k);
        multibase::base64url_encode(rs, op.sig);
    }

    Operation content(const std::optional<std::string>& prev) const {
        Operation op;
        op.type = OpType::operation;
        op.rotation_keys = {recovery_.did_key, everyday_.did_key};
        op.verification_methods = {{"atproto", signing_.did_key}};
        op.also_known_as = {"at://" + handle_};
        op.services = {{"atproto_pds", "AtprotoPersonalDataServer", pds_}};
        op.prev = prev;
        return op;
    }

    // The next createdAt: at least 1 ms after the last one.
    std::int64_t later(double mean_s) {
        double gap = -std::log(1.0 - rng_.uniform()) * mean_s * 1e6;
        std::int64_t g = std::max<std::int64_t>(kMs, std::int64_t(gap) / kMs * kMs);
        return t_ + g;
    }

    // A canonical op of the chain (valid and not nullified, so far).
    struct Link {
        std::string cid;
        std::optional<std::string> prev;
        std::int64_t t = 0;
        std::size_t signer = 0;
        std::string signing;  // verificationMethods.atproto, "" for a tombstone
        crypto::PrivateKey key;       // … its private key
        std::string pds, handle;      // the op's PDS endpoint and handle
        bool tombstone = false;
        std::size_t out_index = 0;  // in AccountOut::ops
    };

    void emit(const Operation& op, std::int64_t t, Errc expected, std::string cid = {}) {
        PlcOp p;
        p.did = did_;
        p.cid = cid.empty() ? plc::op_cid(op) : std::move(cid);
        p.created_at_us = t;
        p.created_at = syntax::format_datetime_micros(t);
        p.operation = operation_json(op);
        p.expected = expected;
        out_.ops.push_back(std::move(p));
    }
    void emit_valid(const Operation& op, std::int64_t t, std::size_t signer) {
        emit(op, t, Errc::ok);
        Link l;
        l.cid = out_.ops.back().cid;
        l.prev = op.prev;
        l.t = t;
        l.signer = signer;
        l.tombstone = op.type == OpType::tombstone;
        if (!l.tombstone) {
            l.signing = op.verification_methods[0].second;
            l.key = signing_.priv;  // every op is built by content() from the current key, PDS, handle
            l.pds = pds_;
            l.handle = handle_;
        }
        l.out_index = out_.ops.size() - 1;
        chain_.push_back(std::move(l));
        t_ = t;
    }
    void maybe_invalid(bool last_chance);
    void invalid_op(int kind);

    const PlcOptions& o_;
    std::size_t index_;
    Rng rng_;
    std::uint32_t key_counter_ = 0;
    Key recovery_, everyday_, signing_;
    crypto::Curve curve_ = crypto::Curve::k256;
    std::string handle_, pds_, did_;
    std::int64_t t_ = 0;
    std::vector<Link> chain_;
    AccountOut out_;
    bool invalid_pending_ = false;
    std::size_t invalid_at_ = 0, step_ = 0;
};

AccountOut AccountGen::run() {
    curve_ = rng_.uniform() < o_.p256_share ? crypto::Curve::p256 : crypto::Curve::k256;
    recovery_ = make_key(crypto::Curve::k256);
    everyday_ = make_key(curve_);
    signing_ = make_key(curve_);
    handle_ = "u" + std::to_string(index_) + ".sim.test";
    pds_ = "https://pds" + std::to_string(rng_.below(20)) + ".sim.test";
    const std::int64_t span_ms = std::max<std::int64_t>(1, o_.span_us / kMs);
    t_ = o_.start_us / kMs * kMs + std::int64_t(rng_.below(std::uint64_t(span_ms))) * kMs;

    const std::size_t updates = std::min<std::size_t>(8, std::size_t(-std::log(1.0 - rng_.uniform()) * 1.5));
    const bool nullify = updates > 0 && rng_.uniform() < o_.nullify_share;
    const bool tombstone = rng_.uniform() < o_.tombstone_share;
    invalid_pending_ = rng_.uniform() < o_.invalid_share;
    invalid_at_ = std::size_t(rng_.below(updates + 1));  // after genesis (0) or after update k
    if (tombstone && rng_.below(3) == 0) invalid_at_ = std::size_t(-1);  // after the tombstone

    Operation genesis = content(std::nullopt);
    sign(genesis, everyday_);
    did_ = plc::did_of_genesis(genesis);
    emit_valid(genesis, t_, 1);
    maybe_invalid(updates == 0 && !tombstone);

    for (std::size_t u = 1; u <= updates; ++u) {
        ++step_;
        switch (rng_.below(3)) {
        case 0: signing_ = make_key(curve_); break;
        case 1: handle_ = "u" + std::to_string(index_) + "-" + std::to_string(u) + ".sim.test"; break;
        default:
            pds_ = "https://pds" + std::to_string(rng_.below(20)) + ".sim.test";
            signing_ = make_key(curve_);
            break;
        }
        Operation op = content(chain_.back().cid);
        sign(op, everyday_);
        emit_valid(op, later(o_.mean_gap_s), 1);
        if (u == updates && nullify) {
            // The recovery key undoes this update: prev = the op before it, within 72 h
            // (one in four exactly at 72 h, the inclusive limit).
            const Link undone = chain_.back();
            std::int64_t t = rng_.below(4) == 0
                                 ? undone.t + k72hUs
                                 : undone.t + kMs + std::int64_t(rng_.below(std::uint64_t(k72hUs / kMs - 1))) * kMs;
            handle_ = "u" + std::to_string(index_) + "-recovered.sim.test";
            signing_ = make_key(curve_);
            Operation rec = content(undone.prev);
            sign(rec, recovery_);
            out_.ops[undone.out_index].nullified = true;
            chain_.pop_back();
            emit_valid(rec, t, 0);
        }
        maybe_invalid(u == updates && !tombstone);
    }
    if (tombstone) {
        Operation tomb;
        tomb.type = OpType::tombstone;
        tomb.prev = chain_.back().cid;
        sign(tomb, everyday_);
        emit_valid(tomb, later(o_.mean_gap_s), 1);
        if (invalid_pending_) invalid_op(4);  // an op after the tombstone
    }

    // The truth: what plc::Log::state() gives after the canonical chain.
    PlcAccountTruth& tr = out_.truth;
    tr.did = did_;
    for (const Link& l : chain_)
        if (tr.key_history.empty() || tr.key_history.back().second != l.signing) tr.key_history.emplace_back(l.t, l.signing);
    out_.identity.did = did_;
    for (const Link& l : chain_) {
        if (l.tombstone) out_.identity.end_us = l.t;
        else out_.identity.spans.push_back(IdentitySpan{l.t, l.key, l.pds, l.handle});
    }
    if (chain_.back().tombstone) {
        tr.tombstoned = true;
    } else {
        tr.rotation_keys = {recovery_.did_key, everyday_.did_key};
        tr.signing_key = signing_.did_key;
        tr.pds = pds_;
        tr.handle = handle_;
    }
    return std::move(out_);
}

void AccountGen::maybe_invalid(bool last_chance) {
    if (!invalid_pending_ || (step_ != invalid_at_ && !last_chance)) return;
    // 0 bad signature, 1 high-S, 2 DER, 3 cid mismatch, 5 late nullification (needs an
    // everyday-signed update at the head).
    const bool can_late = chain_.size() > 1 && chain_.back().signer == 1;
    int kind = int(rng_.below(can_late ? 5 : 4));
    invalid_op(kind == 4 ? 5 : kind);
}

void AccountGen::invalid_op(int kind) {
    invalid_pending_ = false;
    const Link head = chain_.back();
    Operation op = content(head.cid);
    op.also_known_as = {"at://u" + std::to_string(index_) + "-invalid.sim.test"};
    std::int64_t t = later(3600);
    switch (kind) {
    case 0:  // signed by the signing key, which is no rotation key
        sign(op, signing_);
        emit(op, t, Errc::sig_invalid);
        break;
    case 1: {  // the high-S twin of a valid signature
        auto rs = raw_sign(op, everyday_);
        negate_s(everyday_.priv.curve, rs.data() + 32);
        op.sig.clear();
        multibase::base64url_encode(rs, op.sig);
        emit(op, t, Errc::sig_high_s);
        break;
    }
    case 2: {  // DER-encoded
        auto der = der_of(raw_sign(op, everyday_));
        op.sig.clear();
        multibase::base64url_encode(der, op.sig);
        emit(op, t, Errc::sig_bad_length);
        break;
    }
    case 3: {  // the line's cid is another op's
        sign(op, everyday_);
        Operation other = op;
        other.also_known_as = {"at://u" + std::to_string(index_) + "-other.sim.test"};
        emit(op, t, Errc::plc_cid_mismatch, plc::op_cid(other));
        break;
    }
    case 4: {  // after the tombstone
        sign(op, everyday_);
        emit(op, t, Errc::plc_after_tombstone);
        break;
    }
    default: {  // the recovery key undoing the head, more than 72 h after it
        op.prev = head.prev;
        sign(op, recovery_);
        t = std::max(t, head.t + k72hUs + kMs + std::int64_t(rng_.below(36000)) * kMs);
        emit(op, t, Errc::plc_nullify_late);
        break;
    }
    }
    t_ = t;
}

bool share_ok(double v) { return v >= 0 && v <= 1; }

}  // namespace

Result<PlcDirectory> PlcDirectory::generate(const PlcOptions& o) {
    if (o.accounts == 0 || !share_ok(o.p256_share) || !share_ok(o.nullify_share) || !share_ok(o.tombstone_share) ||
        !share_ok(o.invalid_share) || o.span_us <= 0 || !(o.mean_gap_s > 0))
        return Errc::bad_argument;
    std::vector<AccountOut> outs(o.accounts);
    unsigned threads = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
    threads = unsigned(std::min<std::size_t>(threads, o.accounts));
    auto work = [&](unsigned w) {
        for (std::size_t i = w; i < o.accounts; i += threads) outs[i] = AccountGen(o, i).run();
    };
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < threads; ++w) pool.emplace_back(work, w);
    work(0);
    for (auto& th : pool) th.join();

    PlcDirectory d;
    std::vector<std::pair<std::size_t, std::size_t>> order;  // (account, op in account)
    std::size_t total = 0;
    for (const auto& a : outs) total += a.ops.size();
    order.reserve(total);
    for (std::size_t a = 0; a < outs.size(); ++a)
        for (std::size_t k = 0; k < outs[a].ops.size(); ++k) order.emplace_back(a, k);
    std::sort(order.begin(), order.end(), [&](const auto& x, const auto& y) {
        const PlcOp& p = outs[x.first].ops[x.second];
        const PlcOp& q = outs[y.first].ops[y.second];
        if (p.created_at_us != q.created_at_us) return p.created_at_us < q.created_at_us;
        return p.cid < q.cid;  // bytewise, as COLLATE "C"
    });
    d.ops_.reserve(total);
    d.accounts_.resize(outs.size());
    auto identities = std::make_shared<std::vector<Identity>>(outs.size());
    for (std::size_t a = 0; a < outs.size(); ++a) {
        d.accounts_[a] = std::move(outs[a].truth);
        (*identities)[a] = std::move(outs[a].identity);
    }
    d.identities_ = std::move(identities);
    for (const auto& [a, k] : order) {
        PlcOp& p = outs[a].ops[k];
        p.seq = d.ops_.size() + 1;
        if (p.expected != Errc::ok) d.invalid_.emplace(p.cid, p.expected);
        d.accounts_[a].ops.push_back(d.ops_.size());
        d.ops_.push_back(std::move(p));
    }
    for (std::size_t a = 0; a < d.accounts_.size(); ++a) d.by_did_.emplace(d.accounts_[a].did, a);
    return d;
}

const PlcAccountTruth* PlcDirectory::find(std::string_view did) const {
    auto it = by_did_.find(std::string(did));
    return it == by_did_.end() ? nullptr : &accounts_[it->second];
}

std::string PlcDirectory::sequenced_line(std::size_t i) const {
    // Field order of the reference's exportOpsSeq rows: did, cid, seq, createdAt, operation,
    // then type (did-method-plc packages/server/src/db/index.ts).
    const PlcOp& p = ops_[i];
    std::string s = "{\"did\":";
    json_string(s, p.did);
    s += ",\"cid\":";
    json_string(s, p.cid);
    s += ",\"seq\":" + std::to_string(p.seq) + ",\"createdAt\":";
    json_string(s, p.created_at);
    s += ",\"operation\":" + p.operation + ",\"type\":\"sequenced_op\"}";
    return s;
}

std::string PlcDirectory::legacy_line(std::size_t i) const {
    const PlcOp& p = ops_[i];
    std::string s = "{\"did\":";
    json_string(s, p.did);
    s += ",\"operation\":" + p.operation + ",\"cid\":";
    json_string(s, p.cid);
    s += std::string(",\"nullified\":") + (p.nullified ? "true" : "false") + ",\"createdAt\":";
    json_string(s, p.created_at);
    return s + "}";
}

std::string PlcDirectory::audit_log(const PlcAccountTruth& a) const {
    std::string s = "[";
    for (std::size_t k = 0; k < a.ops.size(); ++k) {
        if (k) s += ',';
        s += legacy_line(a.ops[k]);
    }
    return s + "]";
}

std::string PlcDirectory::did_document(const PlcAccountTruth& a) const {
    // The shape of the reference's formatDidDoc (did-method-plc packages/lib/src/document.ts).
    nlohmann::ordered_json doc;
    nlohmann::ordered_json context = {"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"};
    auto pk = crypto::parse_did_key(a.signing_key);
    if (pk)
        context.push_back(pk->curve == crypto::Curve::p256 ? "https://w3id.org/security/suites/ecdsa-2019/v1"
                                                           : "https://w3id.org/security/suites/secp256k1-2019/v1");
    doc["@context"] = context;
    doc["id"] = a.did;
    doc["alsoKnownAs"] = nlohmann::ordered_json::array({"at://" + a.handle});
    doc["verificationMethod"] = nlohmann::ordered_json::array(
        {{{"id", a.did + "#atproto"}, {"type", "Multikey"}, {"controller", a.did},
          {"publicKeyMultibase", a.signing_key.substr(std::string_view("did:key:").size())}}});
    doc["service"] = nlohmann::ordered_json::array(
        {{{"id", "#atproto_pds"}, {"type", "AtprotoPersonalDataServer"}, {"serviceEndpoint", a.pds}}});
    return doc.dump();
}

std::string PlcDirectory::truth_line(const PlcAccountTruth& a) const {
    nlohmann::ordered_json j;
    j["did"] = a.did;
    j["tombstoned"] = a.tombstoned;
    j["rotationKeys"] = a.rotation_keys;
    j["signingKey"] = a.signing_key;
    j["pds"] = a.pds;
    j["handle"] = a.handle;
    nlohmann::ordered_json hist = nlohmann::ordered_json::array();
    for (const auto& [t, k] : a.key_history)
        hist.push_back({{"validFrom", syntax::format_datetime_micros(t)}, {"key", k}});
    j["keyHistory"] = hist;
    nlohmann::ordered_json nullified = nlohmann::ordered_json::array(), invalid = nlohmann::ordered_json::array();
    for (std::size_t i : a.ops) {
        const PlcOp& p = ops_[i];
        if (p.nullified) nullified.push_back(p.cid);
        if (p.expected != Errc::ok)
            invalid.push_back({{"cid", p.cid}, {"seq", p.seq}, {"code", int(p.expected)},
                               {"error", std::string(sov::to_string(p.expected))}});
    }
    j["nullified"] = nullified;
    j["invalid"] = invalid;
    return j.dump();
}

}  // namespace sov::sim

// ---- the directory's HTTP routes

namespace sov::sim {

namespace {

// JavaScript's parseInt(s, 10) as the reference applies it to `count`: leading whitespace, an
// optional sign, then the longest run of digits; nullopt (NaN) when there is none.
std::optional<std::int64_t> js_parse_int(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r')) s.remove_prefix(1);
    bool neg = false;
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
        neg = s.front() == '-';
        s.remove_prefix(1);
    }
    std::size_t i = 0;
    std::int64_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (v < 1000000000000LL) v = v * 10 + (s[i] - '0');
        ++i;
    }
    if (i == 0) return std::nullopt;
    return neg ? -v : v;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

// `new Date(after)` for the forms a client sends: an RFC 3339 datetime (fraction optional),
// a bare date "YYYY-MM-DD" (UTC midnight), or — legacy-only servers, which read every `after`
// as a date — a bare number, which V8 takes as a year (0–49 → 2000–2049, 50–99 → 1950–1999).
// Milliseconds since the epoch (Date's precision); nullopt for an invalid date.
std::optional<std::int64_t> js_date_ms(std::string_view s) {
    if (all_digits(s)) {
        if (s.size() > 6) return std::nullopt;
        int y = std::stoi(std::string(s));
        if (y < 50) y += 2000;
        else if (y < 100) y += 1900;
        char buf[32];
        std::snprintf(buf, sizeof buf, "%04d-01-01T00:00:00Z", y);
        if (y > 9999) return std::nullopt;
        auto us = syntax::parse_datetime_micros(buf);
        return us ? std::optional<std::int64_t>(*us / 1000) : std::nullopt;
    }
    std::string text(s);
    if (text.size() == 10) text += "T00:00:00Z";
    auto us = syntax::parse_datetime_micros(text);
    if (!us) return std::nullopt;
    return *us >= 0 ? *us / 1000 : -((-*us + 999) / 1000);
}

PlcAnswer message(int status, std::string text) {
    PlcAnswer a;
    a.status = status;
    a.body = "{\"message\":";
    json_string(a.body, text);
    a.body += "}";
    return a;
}

}  // namespace

PlcService::PlcService(const PlcDirectory& directory, PlcFaults faults)
    : d_(directory), f_(faults), rng_(mix(faults.seed, 0x5eed)) {}

// GET /export, after did-method-plc packages/server/src/routes.ts and db/index.ts (v0.0.x to
// the 2025-12 sequenced version, read at commit cc1bd18):
//  - count: absent or empty → 1000; else parseInt(count, 10); NaN or < 1 → 400 {"message":
//    "Invalid count parameter"}; above 1000 → 1000 (clamped, not refused);
//  - after matching /^\d+$/ → the sequenced form: ops with seq > after, ascending seq, lines
//    {did, cid, seq, createdAt, operation, type:"sequenced_op"};
//  - any other non-empty after → `new Date(after)`: invalid → 400 {"message":"Invalid after
//    parameter"}; else the legacy form: createdAt > after (exclusive, millisecond precision),
//    ordered by createdAt then cid bytewise (COLLATE "C"), lines {did, operation, cid,
//    nullified, createdAt}; absent or empty after → the legacy form from the first op;
//  - 200, content-type application/jsonlines, lines joined by "\n", no trailing newline (an
//    empty page is an empty body).
// With legacy_only (the reference before sequencing) every after is a date (js_date_ms).
PlcAnswer PlcService::do_export(const std::vector<std::pair<std::string, std::string>>& params) {
    const std::string* count_p = nullptr;
    const std::string* after_p = nullptr;
    // A repeated parameter reaches the reference as an array, which its `typeof ... ===
    // 'string'` test turns into "absent".
    std::size_t n_count = 0, n_after = 0;
    for (const auto& [k, v] : params) {
        if (k == "count" && n_count++ == 0) count_p = &v;
        if (k == "after" && n_after++ == 0) after_p = &v;
    }
    if (n_count > 1) count_p = nullptr;
    if (n_after > 1) after_p = nullptr;
    std::int64_t count = 1000;
    if (count_p && !count_p->empty()) {
        auto c = js_parse_int(*count_p);
        if (!c || *c < 1) return message(400, "Invalid count parameter");
        count = std::min<std::int64_t>(*c, 1000);
    }
    const auto& ops = d_.ops();
    PlcAnswer a;
    a.content_type = "application/jsonlines";
    const bool has_after = after_p && !after_p->empty();
    if (has_after && !f_.legacy_only && all_digits(*after_p)) {
        std::uint64_t after = 0;
        auto [p, ec] = std::from_chars(after_p->data(), after_p->data() + after_p->size(), after);
        if (ec != std::errc()) after = ~std::uint64_t(0);  // beyond every seq
        (void)p;
        // seq = index + 1, so the first op with seq > after is at index `after`.
        for (std::uint64_t i = after; i < ops.size() && i < after + std::uint64_t(count); ++i) {
            if (i > after) a.body += '\n';
            a.body += d_.sequenced_line(std::size_t(i));
        }
        return a;
    }
    std::size_t from = 0;
    if (has_after) {
        auto ms = js_date_ms(*after_p);
        if (!ms) return message(400, "Invalid after parameter");
        const std::int64_t after_us = *ms * 1000;
        from = std::size_t(std::upper_bound(ops.begin(), ops.end(), after_us,
                                            [](std::int64_t t, const PlcOp& op) { return t < op.created_at_us; }) -
                           ops.begin());
    }
    for (std::size_t i = from; i < ops.size() && i < from + std::size_t(count); ++i) {
        if (i > from) a.body += '\n';
        a.body += d_.legacy_line(i);
    }
    return a;
}

PlcService::Stream PlcService::stream(const std::vector<std::pair<std::string, std::string>>& params) const {
    Stream st;
    const std::string* cursor = nullptr;
    std::size_t n = 0;
    for (const auto& [k, v] : params)
        if (k == "cursor" && n++ == 0) cursor = &v;
    const auto& ops = d_.ops();
    st.from = st.end = ops.size();
    if (!cursor || n > 1 || cursor->empty()) return st;  // live only
    auto c = js_parse_int(*cursor);
    if (!c || *c < 0) {
        st.status = 400;
        st.message = "Invalid cursor parameter";
        return st;
    }
    if (std::uint64_t(*c) > ops.size()) {
        st.close_reason = "FutureCursor";
        return st;
    }
    st.from = std::size_t(*c);
    if (st.from < ops.size() && ops[st.from].created_at_us < ops.back().created_at_us - kStreamCatchupUs) {
        st.from = ops.size();
        st.close_reason = "OutdatedCursor";
    }
    return st;
}

PlcAnswer PlcService::answer(std::string_view path, const std::vector<std::pair<std::string, std::string>>& params,
                             std::int64_t now_us) {
    ++counters_.requests;
    auto draw = [&] {
        rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
        return double(rng_ >> 11) * 0x1.0p-53;
    };
    if (f_.max_rps > 0) {
        window_.push_back(now_us);
        window_.erase(window_.begin(),
                      std::find_if(window_.begin(), window_.end(), [&](std::int64_t t) { return t > now_us - 1000000; }));
        if (double(window_.size()) > f_.max_rps) {
            ++counters_.rate_limited;
            PlcAnswer a = message(429, "Too Many Requests");
            a.headers.emplace_back("Retry-After", "1");
            return a;
        }
    }
    if (f_.p_5xx > 0 && draw() < f_.p_5xx) {
        ++counters_.server_errors;
        return draw() < 0.5 ? message(500, "Internal Server Error") : message(503, "Service Unavailable");
    }
    PlcAnswer a;
    if (path == "/export") {
        a = do_export(params);
    } else if (path == "/export/stream") {
        a = message(426, "upgrade required");
    } else if (path == "/_health") {
        a.body = "{\"version\":\"mesh-sim\"}";
    } else if (path.starts_with("/did:")) {
        std::string_view rest = path.substr(1);
        bool audit = false;
        if (rest.ends_with("/log/audit")) {
            rest.remove_suffix(std::string_view("/log/audit").size());
            audit = true;
        }
        const PlcAccountTruth* acc = d_.find(rest);
        if (!acc) a = message(404, "DID not registered: " + std::string(rest));
        else if (audit) a.body = d_.audit_log(*acc);
        // A tombstoned DID: 410 "DID not available", as go-didplc's read replica answers
        // (replica/server.go handleDIDDoc) and plc.directory does; did-method-plc's own
        // server code says 404 with the same message.
        else if (acc->tombstoned) a = message(410, "DID not available: " + std::string(rest));
        else {
            a.content_type = "application/did+ld+json";
            a.body = d_.did_document(*acc);
        }
    } else {
        a = message(404, "not found");
    }
    if (a.status >= 400) ++counters_.client_errors;
    else ++counters_.ok;
    a.delay_ms = f_.slow_ms;
    if (a.status == 200 && !a.body.empty() && f_.p_drop > 0 && draw() < f_.p_drop) {
        ++counters_.dropped;
        a.drop_after = a.body.size() / 2;
    }
    return a;
}

}  // namespace sov::sim
