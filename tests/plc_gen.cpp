// plc_gen — a deterministic PLC export for the command-line tests of plc-sync (tests/cli/plc.sh):
// N DIDs with real signed histories (genesis, handle change, key rotation, nullification by a
// higher-priority key, tombstone) and a share of invalid ops (signed by a non-rotation key),
// as JSON lines in createdAt order.
// Usage: plc_gen N SEED [seq|legacy]
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sovereign/crypto.h"
#include "sovereign/multibase.h"
#include "sovereign/plc.h"

using namespace sov;
using ojson = nlohmann::ordered_json;

namespace {

crypto::PrivateKey key(crypto::Curve c, std::uint32_t seed, std::uint32_t n) {
    std::array<std::uint8_t, 32> s{};
    for (int i = 0; i < 4; ++i) {
        s[i] = std::uint8_t(seed >> (8 * i));
        s[4 + i] = std::uint8_t(n >> (8 * i));
    }
    return crypto::generate_from_seed(c, s);
}
std::string did_key(const crypto::PrivateKey& k) { return crypto::to_did_key(*crypto::public_key_of(k)); }

void sign(plc::Operation& op, const crypto::PrivateKey& k) {
    const auto digest = crypto::sha256(plc::encode(op, false));
    const auto sig = crypto::sign(k, digest.data());
    op.sig.clear();
    multibase::base64url_encode(sig, op.sig);
}

plc::Operation make_op(const std::vector<std::string>& rotation, const std::string& signing,
                       std::optional<std::string> prev, const std::string& handle, const std::string& pds) {
    plc::Operation op;
    op.rotation_keys = rotation;
    op.verification_methods = {{"atproto", signing}};
    op.also_known_as = {"at://" + handle};
    op.services = {{"atproto_pds", "AtprotoPersonalDataServer", pds}};
    op.prev = std::move(prev);
    return op;
}

ojson json_of(const plc::Operation& op) {
    ojson j;
    if (op.type == plc::OpType::tombstone) {
        j["type"] = "plc_tombstone";
        j["prev"] = *op.prev;
        j["sig"] = op.sig;
        return j;
    }
    j["sig"] = op.sig;
    j["prev"] = op.prev ? ojson(*op.prev) : ojson(nullptr);
    j["type"] = "plc_operation";
    j["services"] = ojson::object();
    for (const auto& s : op.services) j["services"][s.id] = {{"type", s.type}, {"endpoint", s.endpoint}};
    j["alsoKnownAs"] = op.also_known_as;
    j["rotationKeys"] = op.rotation_keys;
    j["verificationMethods"] = ojson::object();
    for (const auto& [id, k] : op.verification_methods) j["verificationMethods"][id] = k;
    return j;
}

std::string iso(std::int64_t ms) {
    const std::time_t t = std::time_t(ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: plc_gen N SEED [seq|legacy]\n");
        return 2;
    }
    const std::uint32_t n = std::uint32_t(std::strtoul(argv[1], nullptr, 10)), seed = std::uint32_t(std::strtoul(argv[2], nullptr, 10));
    const bool legacy = argc > 3 && std::string(argv[3]) == "legacy";
    const std::int64_t base = 1704067200000;  // 2024-01-01
    const std::int64_t hour = 3600 * 1000;
    std::multimap<std::int64_t, ojson> out;  // createdAt ms → line (stable for equal times)
    auto emit = [&](const std::string& did, const plc::Operation& op, std::int64_t ms) {
        ojson l;
        if (!legacy) l["type"] = "sequenced_op";
        l["did"] = did;
        l["operation"] = json_of(op);
        l["cid"] = plc::op_cid(op);
        if (legacy) l["nullified"] = false;
        l["createdAt"] = iso(ms);
        out.emplace(ms, l);
        return l["cid"].get<std::string>();
    };
    for (std::uint32_t i = 0; i < n; ++i) {
        const auto rot0 = key(crypto::Curve::k256, seed, 4 * i), rot1 = key(crypto::Curve::p256, seed, 4 * i + 1),
                   sig0 = key(crypto::Curve::k256, seed, 4 * i + 2), sig1 = key(crypto::Curve::k256, seed, 4 * i + 3);
        const std::vector<std::string> rotation{did_key(rot0), did_key(rot1)};
        const std::string handle = "u" + std::to_string(i) + ".test", pds = "https://pds" + std::to_string(i % 3) + ".test";
        plc::Operation g = make_op(rotation, did_key(sig0), std::nullopt, handle, pds);
        sign(g, rot1);
        const std::string did = plc::did_of_genesis(g);
        const std::int64_t t0 = base + std::int64_t(i) * 10;
        const std::string c0 = emit(did, g, t0);
        plc::Operation u1 = make_op(rotation, did_key(sig0), c0, "renamed-" + handle, pds);
        sign(u1, rot1);
        std::string head = emit(did, u1, t0 + hour);
        if (i % 13 == 0) {  // invalid: signed by the signing key, not a rotation key
            plc::Operation bad = make_op(rotation, did_key(sig1), head, handle, pds);
            sign(bad, sig0);
            emit(did, bad, t0 + 2 * hour);
        }
        if (i % 5 == 0) {  // key rotation and a PDS migration
            plc::Operation u2 = make_op(rotation, did_key(sig1), head, "renamed-" + handle, "https://moved.test");
            sign(u2, rot1);
            head = emit(did, u2, t0 + 3 * hour);
        }
        if (i % 7 == 0) {  // nullification of u1 (signed by rot1) by rot0, within 72 h
            plc::Operation r = make_op(rotation, did_key(sig0), c0, "recovered-" + handle, pds);
            sign(r, rot0);
            head = emit(did, r, t0 + 4 * hour);
        }
        if (i % 11 == 0) {
            plc::Operation t;
            t.type = plc::OpType::tombstone;
            t.prev = head;
            sign(t, rot1);
            emit(did, t, t0 + 5 * hour);
        }
    }
    std::uint64_t seq = 0;
    for (auto& [ms, l] : out) {
        if (!legacy) l["seq"] = ++seq;
        std::string s = l.dump() + "\n";
        std::fwrite(s.data(), 1, s.size(), stdout);
    }
    return std::fflush(stdout) == 0 ? 0 : 1;
}
