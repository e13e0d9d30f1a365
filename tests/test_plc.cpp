// PLC operations and logs (sovereign/plc.h; docs/protocol.md §7): the corpus audit logs
// (valid ones accepted with the right final state, invalid ones rejected with the right
// reason), the verified facts of §7, hand-made ops for every rule and limit, and both
// export-line forms including malformed lines.
#include <nlohmann/json.hpp>

#include <map>

#include "sovereign/crypto.h"
#include "sovereign/multibase.h"
#include "sovereign/plc.h"
#include "test_util.h"

using sov::Errc;
using namespace sov::plc;
namespace crypto = sov::crypto;
using nlohmann::json;

namespace {

std::string slurp(const std::filesystem::path& p) {
    auto b = testutil::read_file(p);
    return {b.begin(), b.end()};
}

std::vector<std::filesystem::path> corpus_logs(const std::filesystem::path& dir, bool invalid) {
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::directory_iterator(dir / "plc")) {
        const std::string name = e.path().filename().string();
        if (!name.starts_with("log_") || !name.ends_with(".json")) continue;
        if (name.starts_with("log_invalid_") == invalid) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Applies every entry; returns the first error (and its index in `at`), or ok.
Errc replay(Log& log, const std::vector<ExportLine>& lines, std::size_t& at, Problem& why) {
    for (at = 0; at < lines.size(); ++at)
        if (Errc e = log.apply(lines[at], why); e != Errc::ok) return e;
    return Errc::ok;
}

// ---- hand-made ops

crypto::PrivateKey key(crypto::Curve curve, std::uint8_t n) {
    std::array<std::uint8_t, 32> seed{};
    seed[0] = n;
    seed[1] = 0x9c;
    return crypto::generate_from_seed(curve, seed);
}

std::string did_key(const crypto::PrivateKey& k) { return crypto::to_did_key(*crypto::public_key_of(k)); }

void sign(Operation& op, const crypto::PrivateKey& k) {
    const auto digest = crypto::sha256(encode(op, false));
    const auto sig = crypto::sign(k, digest.data());
    op.sig.clear();
    sov::multibase::base64url_encode(sig, op.sig);
}

Operation make_op(const std::vector<std::string>& rotation, const std::string& signing, std::optional<std::string> prev,
                  const std::string& handle = "alice.example") {
    Operation op;
    op.type = OpType::operation;
    op.rotation_keys = rotation;
    op.verification_methods = {{"atproto", signing}};
    op.also_known_as = {"at://" + handle};
    op.services = {{"atproto_pds", "AtprotoPersonalDataServer", "https://pds.example"}};
    op.prev = std::move(prev);
    return op;
}

// 2024-01-01T00:00:00.000Z + ms, as ExportLine fields.
ExportLine line_of(const std::string& did, const Operation& op, std::int64_t ms) {
    ExportLine l;
    l.did = did;
    l.op = op;
    l.cid = op_cid(op);
    l.created_at_us = 1704067200000000 + ms * 1000;
    l.created_at = std::to_string(ms) + "ms";
    return l;
}

struct Fixture {
    crypto::PrivateKey rot0 = key(crypto::Curve::k256, 1), rot1 = key(crypto::Curve::p256, 2),
                       sig0 = key(crypto::Curve::k256, 3), sig1 = key(crypto::Curve::k256, 4);
    std::vector<std::string> rotation{did_key(rot0), did_key(rot1)};
    Operation genesis;
    std::string did;
    Fixture() {
        genesis = make_op(rotation, did_key(sig0), std::nullopt);
        sign(genesis, rot1);
        did = did_of_genesis(genesis);
    }
    Operation update(const std::string& prev, const crypto::PrivateKey& by, const std::string& signing,
                     const std::string& handle = "alice.example") {
        Operation op = make_op(rotation, signing, prev, handle);
        sign(op, by);
        return op;
    }
};

constexpr std::int64_t kHourMs = 3600 * 1000;

}  // namespace

// ------------------------------------------------------------------ corpus

TEST_CASE("plc: every valid corpus log is accepted with the final state of its last op", "[plc]") {
    REQUIRE_CORPUS(dir);
    const auto logs = corpus_logs(dir, false);
    REQUIRE(logs.size() >= 9);
    for (const auto& path : logs) {
        INFO(path.filename().string());
        const std::string text = slurp(path);
        std::vector<ExportLine> lines;
        Problem why;
        REQUIRE(parse_audit_log(text, lines, why) == Errc::ok);
        REQUIRE(!lines.empty());
        Log log(lines.front().did);
        std::size_t at = 0;
        const Errc e = replay(log, lines, at, why);
        INFO("entry " << at << ": " << why.reason);
        REQUIRE(e == Errc::ok);

        // Expected values straight from the JSON, independently of the library.
        const json doc = json::parse(text);
        REQUIRE(log.entries().size() == doc.size());
        const json* last = nullptr;
        for (std::size_t i = 0; i < doc.size(); ++i) {
            CHECK(log.entries()[i].nullified == doc[i]["nullified"].get<bool>());
            if (!doc[i]["nullified"].get<bool>()) last = &doc[i]["operation"];
        }
        REQUIRE(last);
        const State st = log.state();
        const json& op = *last;
        if (op["type"] == "plc_tombstone") {
            CHECK(st.tombstoned);
            CHECK(st.signing_key.empty());
            CHECK(st.rotation_keys.empty());
            continue;
        }
        CHECK_FALSE(st.tombstoned);
        if (op["type"] == "create") {
            CHECK(st.rotation_keys == std::vector<std::string>{op["recoveryKey"], op["signingKey"]});
            CHECK(st.signing_key == op["signingKey"].get<std::string>());
            CHECK(st.handle == op["handle"].get<std::string>());
            continue;
        }
        CHECK(st.rotation_keys == op["rotationKeys"].get<std::vector<std::string>>());
        const auto& vm = op["verificationMethods"];
        CHECK(st.signing_key == (vm.contains("atproto") ? vm["atproto"].get<std::string>() : std::string{}));
        CHECK(st.signing_public_key.has_value() == !st.signing_key.empty());
        const auto& sv = op["services"];
        CHECK(st.pds == (sv.contains("atproto_pds") ? sv["atproto_pds"]["endpoint"].get<std::string>() : std::string{}));
        std::string handle;
        for (const auto& aka : op["alsoKnownAs"])
            if (aka.get<std::string>().starts_with("at://")) {
                handle = aka.get<std::string>().substr(5);
                break;
            }
        CHECK(st.handle == handle);
    }
}

TEST_CASE("plc: every invalid corpus log is rejected with its reason", "[plc]") {
    REQUIRE_CORPUS(dir);
    const std::map<std::string, Errc> expected{
        {"log_invalid_sig_b64_newline.json", Errc::base_bad_char},
        {"log_invalid_sig_b64_padding_bits.json", Errc::base_bad_padding},
        {"log_invalid_sig_b64_padding_chars.json", Errc::base_bad_padding},
        {"log_invalid_sig_der.json", Errc::sig_invalid},  // 64 bytes of DER: named in the reason
        {"log_invalid_sig_k256_high_s.json", Errc::sig_high_s},
        {"log_invalid_sig_p256_high_s.json", Errc::sig_high_s},
        {"log_invalid_update_nullified.json", Errc::plc_prev_nullified},
        {"log_invalid_update_tombstoned.json", Errc::plc_after_tombstone},
        {"log_invalid_nullification_reused_key.json", Errc::plc_nullify_key},
        {"log_invalid_nullification_too_slow.json", Errc::plc_nullify_late},
    };
    const auto logs = corpus_logs(dir, true);
    REQUIRE(logs.size() == expected.size());
    for (const auto& path : logs) {
        const std::string name = path.filename().string();
        INFO(name);
        REQUIRE(expected.count(name) == 1);
        std::vector<ExportLine> lines;
        Problem why;
        REQUIRE(parse_audit_log(slurp(path), lines, why) == Errc::ok);
        Log log(lines.front().did);
        std::size_t at = 0;
        const Errc e = replay(log, lines, at, why);
        INFO("entry " << at << ": " << why.reason);
        CHECK(e == expected.at(name));
        CHECK(!why.reason.empty());
        if (name == "log_invalid_sig_der.json") CHECK(why.reason.find("DER") != std::string::npos);
        CHECK(log.entries().size() == at);  // the rejected op changed nothing
    }
}

TEST_CASE("plc: the verified facts of docs/protocol.md §7", "[plc]") {
    REQUIRE_CORPUS(dir);
    std::vector<ExportLine> lines;
    Problem why;
    REQUIRE(parse_audit_log(slurp(dir / "plc" / "log_legacy_dholms.json"), lines, why) == Errc::ok);
    const Operation& genesis = lines.front().op;
    REQUIRE(genesis.type == OpType::legacy_create);
    CHECK(did_of_genesis(genesis) == "did:plc:yk4dd2qkboz2yv6tpubpc6co");
    CHECK(op_cid(genesis) == "bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq");
    // The legacy genesis verifies with its signingKey (index 1 of the normalised rotation keys).
    std::size_t signer = 9;
    CHECK(verify_signature(genesis, {genesis.signing_key}, signer) == Errc::ok);
    CHECK(signer == 0);
    CHECK(verify_signature(genesis, {genesis.recovery_key}, signer) == Errc::sig_invalid);
    const Operation n = normalise(genesis);
    CHECK(n.rotation_keys == std::vector<std::string>{genesis.recovery_key, genesis.signing_key});
    CHECK(n.also_known_as == std::vector<std::string>{"at://dan.bsky.social"});
    REQUIRE(n.services.size() == 1);
    CHECK(n.services[0].endpoint == "https://bsky.social");
    // The signed bytes omit the sig key: a 6-key map rather than 7.
    CHECK(encode(genesis, true)[0] == 0xa7);
    CHECK(encode(genesis, false)[0] == 0xa6);
}

TEST_CASE("plc: the key history of a real account lists each signing key from its createdAt", "[plc]") {
    REQUIRE_CORPUS(dir);
    std::vector<ExportLine> lines;
    Problem why;
    REQUIRE(parse_audit_log(slurp(dir / "plc" / "log_legacy_dholms.json"), lines, why) == Errc::ok);
    Log log(lines.front().did);
    std::size_t at = 0;
    REQUIRE(replay(log, lines, at, why) == Errc::ok);
    const State st = log.state();
    REQUIRE(st.key_history.size() == 2);
    CHECK(st.key_history[0].did_key == "did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ");
    CHECK(st.key_history[0].valid_from_us == lines[0].created_at_us);
    CHECK(st.key_history[1].did_key == "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF");
    CHECK(st.key_history[1].valid_from_us == lines[4].created_at_us);
    REQUIRE(st.key_history[1].key.has_value());
    CHECK(crypto::to_did_key(*st.key_history[1].key) == st.signing_key);
    CHECK(st.pds == "https://bsky.social");
    CHECK(st.handle == "dholms.xyz");
}

// ------------------------------------------------------------------ hand-made logs

TEST_CASE("plc: genesis, update and the checks before the signature", "[plc]") {
    Fixture f;
    Log log(f.did);
    Problem why;
    REQUIRE(f.did.size() == 32);

    SECTION("a genesis of another DID, a tampered cid, a wrong line DID") {
        ExportLine l = line_of(f.did, f.genesis, 0);
        l.cid = op_cid(f.update(l.cid, f.rot0, "x"));
        CHECK(log.apply(l, why) == Errc::plc_cid_mismatch);
        Log other("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
        ExportLine o = line_of("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", f.genesis, 0);
        CHECK(other.apply(o, why) == Errc::plc_did_mismatch);
        CHECK(log.apply(o, why) == Errc::plc_did_mismatch);
        CHECK(log.entries().empty());
    }
    SECTION("genesis signed by a key that is not one of its rotation keys") {
        Operation g = f.genesis;
        sign(g, f.sig0);
        Log l2(did_of_genesis(g));
        CHECK(l2.apply(line_of(l2.did(), g, 0), why) == Errc::sig_invalid);
    }
    SECTION("a genesis with a prev, a tombstone genesis") {
        Operation g = make_op(f.rotation, did_key(f.sig0), std::string("bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq"));
        sign(g, f.rot0);
        Log l2(did_of_genesis(g));
        CHECK(l2.apply(line_of(l2.did(), g, 0), why) == Errc::plc_bad_prev);
    }
    SECTION("updates chain; prev must exist, be non-null, be later in time") {
        const ExportLine g = line_of(f.did, f.genesis, 0);
        REQUIRE(log.apply(g, why) == Errc::ok);
        CHECK(log.apply(g, why) == Errc::plc_duplicate);
        const Operation u1 = f.update(g.cid, f.rot1, did_key(f.sig1), "bob.example");
        CHECK(log.apply(line_of(f.did, u1, 0), why) == Errc::plc_time_order);
        Operation orphan = make_op(f.rotation, did_key(f.sig1), std::nullopt);
        sign(orphan, f.rot0);
        CHECK(log.apply(line_of(f.did, orphan, 10), why) == Errc::plc_bad_prev);
        Operation dangling = f.update(op_cid(orphan), f.rot0, did_key(f.sig1));
        CHECK(log.apply(line_of(f.did, dangling, 10), why) == Errc::plc_bad_prev);
        Operation wrong_key = f.update(g.cid, f.sig0, did_key(f.sig1));
        CHECK(log.apply(line_of(f.did, wrong_key, 10), why) == Errc::sig_invalid);
        REQUIRE(log.apply(line_of(f.did, u1, 10), why) == Errc::ok);
        const State st = log.state();
        CHECK(st.handle == "bob.example");
        CHECK(st.signing_key == did_key(f.sig1));
        CHECK(st.pds == "https://pds.example");
        REQUIRE(st.key_history.size() == 2);
        CHECK(st.key_history[1].valid_from_us == 1704067200000000 + 10 * 1000);
    }
}

TEST_CASE("plc: nullification by a higher-priority key within 72 h inclusive", "[plc]") {
    Fixture f;
    Problem why;
    Log log(f.did);
    const ExportLine g = line_of(f.did, f.genesis, 0);
    REQUIRE(log.apply(g, why) == Errc::ok);
    // rotationKeys[1] (rot1) makes an update; rot0 may undo it, rot1 may not.
    const Operation u1 = f.update(g.cid, f.rot1, did_key(f.sig1), "mallory.example");
    REQUIRE(log.apply(line_of(f.did, u1, kHourMs), why) == Errc::ok);

    const Operation same = f.update(g.cid, f.rot1, did_key(f.sig0), "again.example");
    CHECK(log.apply(line_of(f.did, same, 2 * kHourMs), why) == Errc::plc_nullify_key);
    const Operation rec = f.update(g.cid, f.rot0, did_key(f.sig0), "alice.example");
    CHECK(log.apply(line_of(f.did, rec, kHourMs + 72 * kHourMs + 1), why) == Errc::plc_nullify_late);
    CHECK(!log.entries()[1].nullified);
    REQUIRE(log.apply(line_of(f.did, rec, kHourMs + 72 * kHourMs), why) == Errc::ok);  // exactly 72 h
    CHECK(log.entries()[1].nullified);
    CHECK(log.state().handle == "alice.example");
    CHECK(log.state().key_history.size() == 1);  // the nullified key never counted
    // Nothing may build on the nullified op.
    const Operation on_nullified = f.update(op_cid(u1), f.rot0, did_key(f.sig1));
    CHECK(log.apply(line_of(f.did, on_nullified, 80 * kHourMs), why) == Errc::plc_prev_nullified);
}

TEST_CASE("plc: tombstones end a log unless nullified", "[plc]") {
    Fixture f;
    Problem why;
    Log log(f.did);
    const ExportLine g = line_of(f.did, f.genesis, 0);
    REQUIRE(log.apply(g, why) == Errc::ok);
    Operation tomb;
    tomb.type = OpType::tombstone;
    tomb.prev = g.cid;
    sign(tomb, f.rot1);
    REQUIRE(log.apply(line_of(f.did, tomb, 1000), why) == Errc::ok);
    CHECK(log.state().tombstoned);
    CHECK(log.state().key_history.back().did_key.empty());
    const Operation after = f.update(op_cid(tomb), f.rot0, did_key(f.sig0));
    CHECK(log.apply(line_of(f.did, after, 2000), why) == Errc::plc_after_tombstone);
    const Operation undo = f.update(g.cid, f.rot0, did_key(f.sig1));
    REQUIRE(log.apply(line_of(f.did, undo, 3000), why) == Errc::ok);
    CHECK_FALSE(log.state().tombstoned);
    CHECK(log.entries()[1].nullified);
}

TEST_CASE("plc: signature encodings other than strict base64url r||s are rejected", "[plc]") {
    Fixture f;
    std::size_t signer = 0;
    REQUIRE(verify_signature(f.genesis, f.rotation, signer) == Errc::ok);
    CHECK(signer == 1);
    Operation op = f.genesis;
    op.sig = f.genesis.sig + "=";
    CHECK(verify_signature(op, f.rotation, signer) == Errc::base_bad_padding);
    op.sig = f.genesis.sig.substr(0, 40) + "\n" + f.genesis.sig.substr(40);
    CHECK(verify_signature(op, f.rotation, signer) == Errc::base_bad_char);
    op.sig = f.genesis.sig.substr(0, 40) + "+" + f.genesis.sig.substr(41);  // standard alphabet
    CHECK(verify_signature(op, f.rotation, signer) == Errc::base_bad_char);
    op.sig = f.genesis.sig.substr(0, 84);  // 63 bytes
    CHECK(verify_signature(op, f.rotation, signer) == Errc::sig_bad_length);
}

TEST_CASE("plc: a bad rotation key is named with crypto::parse_did_key's error, keys prepared once or not", "[plc]") {
    // check_limits and verify_signature decode each did:key once per thread (a small memo of
    // prepared keys): the errors must stay crypto::parse_did_key's, and a key reused many ops
    // later (after the memo has evicted it) must give the same answer.
    Fixture f;
    const std::string good = f.rotation[0];
    std::string bad_codec;  // a valid base58 multikey of an unknown codec (ed25519, 0xed01)
    {
        std::vector<std::uint8_t> b{0xED, 0x01};
        b.resize(34, 0x11);
        bad_codec = "did:key:z";
        sov::multibase::base58btc_encode(b, bad_codec);
    }
    auto off_curve = [](std::uint8_t c0, std::uint8_t c1, std::uint8_t x) {  // no point has this x
        std::vector<std::uint8_t> b{c0, c1, 0x02};
        b.resize(35, 0x00);
        b[34] = x;
        std::string s = "did:key:z";
        sov::multibase::base58btc_encode(b, s);
        return s;
    };
    const std::vector<std::string> bad = {"did:web:example.com", "did:key:" + good.substr(9), "did:key:z0OIl",
                                          bad_codec, off_curve(0xE7, 0x01, 5), off_curve(0x80, 0x24, 1),
                                          good.substr(0, good.size() - 2)};
    for (int pass = 0; pass < 2; ++pass)  // the second pass answers from the memo
        for (const std::string& k : bad) {
            INFO(k);
            const auto expect = crypto::parse_did_key(k);
            REQUIRE(!expect);
            Operation op = make_op({good, k}, did_key(f.sig0), std::nullopt);
            Problem why;
            CHECK(check_limits(op, Limits{}, why) == expect.error());
            CHECK(why.reason.find("rotationKeys[1]") != std::string::npos);
        }
    // Unparseable keys are skipped by verify_signature, whatever the memo holds.
    std::size_t signer = 9;
    CHECK(verify_signature(f.genesis, {bad[4], f.rotation[1]}, signer) == Errc::ok);
    CHECK(signer == 1);
    // 200 distinct keys (more than the memo holds) then the fixture's again: same answers.
    std::vector<std::string> many;
    for (int i = 0; i < 200; ++i) many.push_back(did_key(key(i % 2 ? crypto::Curve::p256 : crypto::Curve::k256, std::uint8_t(100 + i % 150))));
    for (const std::string& k : many) CHECK(verify_signature(f.genesis, {k}, signer) == Errc::sig_invalid);
    CHECK(verify_signature(f.genesis, f.rotation, signer) == Errc::ok);
    CHECK(signer == 1);
    CHECK(verify_signature(f.genesis, {f.rotation[0]}, signer) == Errc::sig_invalid);
}

TEST_CASE("plc: each field limit", "[plc]") {
    Fixture f;
    Problem why;
    const Limits lim;
    auto check = [&](Operation op, const char* field) {
        INFO(field);
        CHECK(check_limits(op, lim, why) == Errc::plc_limit);
        CHECK(why.reason.find(field) != std::string::npos);
    };
    CHECK(check_limits(f.genesis, lim, why) == Errc::ok);
    Operation op = f.genesis;
    for (int i = 0; i < 11; ++i) op.also_known_as.push_back("at://h" + std::to_string(i));
    check(op, "alsoKnownAs");
    op = f.genesis;
    op.also_known_as.push_back("at://" + std::string(254, 'a'));  // 259 chars
    check(op, "alsoKnownAs[1]");
    op = f.genesis;
    op.also_known_as.push_back(op.also_known_as[0]);
    check(op, "duplicate");
    op = f.genesis;
    op.rotation_keys.assign(11, f.rotation[0]);
    check(op, "rotationKeys");
    op.rotation_keys.assign(10, f.rotation[0]);  // duplicates and 10 keys are allowed
    CHECK(check_limits(op, lim, why) == Errc::ok);
    op = f.genesis;
    for (int i = 0; i < 10; ++i) op.services.push_back({"s" + std::to_string(i), "T", "https://x"});
    check(op, "services");
    op = f.genesis;
    op.services.push_back({std::string(33, 'i'), "T", "https://x"});
    check(op, "id longer than 32");
    op = f.genesis;
    op.services.push_back({"s", std::string(257, 't'), "https://x"});
    check(op, ".type");
    op = f.genesis;
    op.services.push_back({"s", "T", std::string(513, 'e')});
    check(op, ".endpoint");
    op = f.genesis;
    for (int i = 0; i < 10; ++i) op.verification_methods.push_back({"v" + std::to_string(i), f.rotation[0]});
    check(op, "verificationMethods");
    op = f.genesis;
    op.verification_methods.push_back({std::string(33, 'v'), f.rotation[0]});
    check(op, "id longer than 32");
    op = f.genesis;
    op.verification_methods.push_back({"v", std::string(257, 'k')});
    check(op, "key longer than 256");
    op = f.genesis;
    Limits small;
    small.max_op_bytes = encode(op, true).size() - 1;
    CHECK(check_limits(op, small, why) == Errc::plc_limit);
    CHECK(why.reason.find("bytes of DAG-CBOR") != std::string::npos);
    small.max_op_bytes += 1;
    CHECK(check_limits(op, small, why) == Errc::ok);
    op.rotation_keys.push_back("did:key:zNotAKey");
    CHECK(check_limits(op, lim, why) != Errc::ok);
    CHECK(why.reason.find("rotationKeys[2]") != std::string::npos);
    // A limit breach is rejected by Log::apply before anything else.
    op = f.genesis;
    op.services.push_back({"s", "T", std::string(513, 'e')});
    sign(op, f.rot0);
    Log log(did_of_genesis(op));
    CHECK(log.apply(line_of(log.did(), op, 0), why) == Errc::plc_limit);
}

// ------------------------------------------------------------------ export lines

TEST_CASE("plc: both export-line forms parse", "[plc]") {
    Fixture f;
    json op = json::parse(R"({"type":"plc_operation","rotationKeys":[],"verificationMethods":{},
        "alsoKnownAs":[],"services":{},"prev":null,"sig":""})");
    op["rotationKeys"] = f.genesis.rotation_keys;
    op["verificationMethods"] = {{"atproto", f.genesis.verification_methods[0].second}};
    op["alsoKnownAs"] = f.genesis.also_known_as;
    op["services"] = {{"atproto_pds", {{"type", "AtprotoPersonalDataServer"}, {"endpoint", "https://pds.example"}}}};
    op["sig"] = f.genesis.sig;
    const std::string cid = op_cid(f.genesis);
    ExportLine l;
    Problem why;

    json seq = {{"type", "sequenced_op"}, {"did", f.did}, {"operation", op}, {"cid", cid},
                {"createdAt", "2024-01-01T00:00:00.000Z"}, {"seq", 12345678901ull}};
    REQUIRE(parse_export_line(seq.dump(), l, why) == Errc::ok);
    CHECK(l.form == ExportLine::Form::sequenced);
    CHECK(l.seq == 12345678901ull);
    CHECK(l.did == f.did);
    CHECK(l.cid == cid);
    CHECK(l.created_at_us == 1704067200000000);
    CHECK(op_cid(l.op) == cid);  // the parsed op re-encodes to the same bytes
    Log log(f.did);
    CHECK(log.apply(l, why) == Errc::ok);

    json legacy = {{"did", f.did}, {"operation", op}, {"cid", cid}, {"nullified", true},
                   {"createdAt", "2024-01-01T00:00:00.000Z"}};
    REQUIRE(parse_export_line("  " + legacy.dump() + " ", l, why) == Errc::ok);
    CHECK(l.form == ExportLine::Form::legacy);
    CHECK(l.nullified);
    CHECK(l.seq == 0);
    CHECK(op_cid(l.op) == cid);

    // A tombstone and a legacy create line.
    const std::string tomb = R"({"did":"did:plc:x","operation":{"type":"plc_tombstone","prev":"bafy","sig":"AA"},)"
                             R"("cid":"c","nullified":false,"createdAt":"2024-01-01T00:00:00Z"})";
    REQUIRE(parse_export_line(tomb, l, why) == Errc::ok);
    CHECK(l.op.type == OpType::tombstone);
    CHECK(l.op.prev == std::optional<std::string>("bafy"));
}

TEST_CASE("plc: malformed export lines name the byte offset and the field", "[plc]") {
    const std::string op = R"({"type":"plc_tombstone","prev":"bafy","sig":"AA"})";
    auto legacy = [&](const std::string& extra_before, const std::string& opj = "") {
        return "{" + extra_before + R"("did":"did:plc:x","operation":)" + (opj.empty() ? op : opj) +
               R"(,"cid":"c","nullified":false,"createdAt":"2024-01-01T00:00:00Z"})";
    };
    ExportLine l;
    Problem why;
    // `at`: the expected offset is where this text starts in the line (when not empty).
    struct Case {
        std::string line;
        Errc errc;
        std::size_t offset;
        std::string reason;
        std::string at = {};
    };
    const std::string base = legacy("");
    const std::size_t op_at = base.find("{\"type\"");
    const std::vector<Case> cases{
        {"", Errc::json_parse, 0, "not valid JSON"},
        {R"({"did":"did:plc:x",)", Errc::json_parse, 19, "not valid JSON"},
        // Where the parser noticed: the last byte of the unexpected token "cid".
        {R"({"did":"x" "cid":"y"})", Errc::json_parse, 15, "not valid JSON"},
        {"[1]", Errc::plc_malformed, 0, "line: not an object"},
        {R"({"did":5})", Errc::plc_malformed, 7, "did: not a string"},
        {R"({"did": tru})", Errc::plc_malformed, 8, "did: not a string"},
        {legacy(R"("extra":1,)"), Errc::plc_malformed, 9, "unknown field \"extra\""},
        {legacy(R"("did":"d",)"), Errc::plc_malformed, 17, "duplicate field \"did\""},
        {legacy("", R"({"type":"plc_tombstone","prev":null,"sig":"AA"})"), Errc::plc_malformed, op_at,
         "operation.prev: null in a plc_tombstone"},
        {legacy("", R"({"type":"plc_nothing","prev":"b","sig":"AA"})"), Errc::plc_malformed, op_at,
         "unknown operation type"},
        {legacy("", R"({"type":"plc_tombstone","prev":"b","sig":7})"), Errc::plc_malformed, 0,
         "operation.sig: not a string", "7}"},
        {legacy("", R"({"type":"plc_operation","prev":"b","sig":"A"})"), Errc::plc_malformed, op_at,
         "missing field \"rotationKeys\""},
        {legacy("", R"({"type":"plc_tombstone","prev":"b","sig":"A","handle":"h"})"), Errc::plc_malformed, op_at,
         "\"handle\" not allowed in a plc_tombstone"},
        {legacy("", R"({"type":"plc_operation","rotationKeys":["k",3],"verificationMethods":{},"alsoKnownAs":[],)"
                    R"("services":{},"prev":null,"sig":"A"})"),
         Errc::plc_malformed, 0, "operation.rotationKeys[1]: not a string", "3]"},
        {legacy("", R"({"type":"plc_operation","rotationKeys":[],"verificationMethods":{},"alsoKnownAs":[],)"
                    R"("services":{"atproto_pds":{"type":"T"}},"prev":null,"sig":"A"})"),
         Errc::plc_malformed, 0, "services.atproto_pds: missing field \"endpoint\"", "{\"type\":\"T\"}"},
        {R"({"type":"sequenced_op","did":"d","operation":)" + op + R"(,"cid":"c","createdAt":"2024-01-01T00:00:00Z"})",
         Errc::plc_malformed, 0, "missing field \"seq\" (sequenced form)"},
        {R"({"type":"sequenced_op","seq":-1,"did":"d"})", Errc::plc_malformed, 29, "seq: not an unsigned"},
        {R"({"type":"sequenced","seq":1})", Errc::plc_malformed, 8, "is not \"sequenced_op\""},
        {legacy(R"("seq":3,)"), Errc::plc_malformed, 0, "\"seq\" not allowed in the legacy form"},
        {R"({"did":"d","operation":)" + op + R"(,"cid":"c","nullified":false,"createdAt":"yesterday"})",
         Errc::plc_malformed, 0, "createdAt: not a datetime", "\"yesterday\""},
        {base + " {}", Errc::trailing_bytes, base.size() + 1, "bytes after"},
    };
    for (const auto& c : cases) {
        INFO(c.line);
        const Errc e = parse_export_line(c.line, l, why);
        INFO(why.offset << ": " << why.reason);
        CHECK(e == c.errc);
        CHECK(why.offset == (c.at.empty() ? c.offset : c.line.find(c.at)));
        CHECK(why.reason.find(c.reason) != std::string::npos);
    }
    REQUIRE(parse_export_line(base, l, why) == Errc::ok);
}

TEST_CASE("plc: audit logs that are not arrays of entries are rejected with an offset", "[plc]") {
    std::vector<ExportLine> out;
    Problem why;
    CHECK(parse_audit_log("{}", out, why) == Errc::plc_malformed);
    CHECK(parse_audit_log("[]", out, why) == Errc::ok);
    CHECK(out.empty());
    CHECK(parse_audit_log("[1]", out, why) == Errc::plc_malformed);
    CHECK(why.offset == 1);
    CHECK(why.reason.find("[0]") != std::string::npos);
    CHECK(parse_audit_log("[", out, why) == Errc::json_parse);
}

// ------------------------------------------------------------------ signer by key recovery

TEST_CASE("plc: the signer is the first rotation key the signature verifies under, any curve mix", "[plc][recover]") {
    // verify_signature recovers the keys a signature verifies under (one recovery per curve
    // present) and takes the first rotation key among them: the index must be the one trying
    // each key in turn would give.
    Fixture f;  // genesis signed by rot1 (p256); rot0, sig0 and sig1 are k256
    const std::string r0 = did_key(f.rot0), r1 = did_key(f.rot1), s0 = did_key(f.sig0), s1 = did_key(f.sig1);
    const std::string p256_other = did_key(key(crypto::Curve::p256, 9));
    std::size_t signer = 99;
    auto check = [&](const std::vector<std::string>& keys, const Operation& op, Errc want, std::size_t want_signer) {
        signer = 99;
        CHECK(verify_signature(op, keys, signer) == want);
        if (want == Errc::ok) CHECK(signer == want_signer);
    };
    check({r0, r1}, f.genesis, Errc::ok, 1);
    check({r1, r0}, f.genesis, Errc::ok, 0);
    check({r1, r1}, f.genesis, Errc::ok, 0);
    check({r0, s0, p256_other, r1, r1}, f.genesis, Errc::ok, 3);
    check({r0, s0, s1, p256_other}, f.genesis, Errc::sig_invalid, 0);
    check({}, f.genesis, Errc::sig_invalid, 0);
    // A k256 signer behind p256 keys.
    Operation g = f.genesis;
    sign(g, f.sig0);
    check({r1, p256_other, r0, s0}, g, Errc::ok, 3);
    check({s0, r1}, g, Errc::ok, 0);
    check({r1, r0, s1}, g, Errc::sig_invalid, 0);
}

TEST_CASE("plc: a signature valid for key B presented for a log whose keys are A is rejected", "[plc][recover]") {
    // Recovery yields keys the signature verifies under; none of them is a rotation key of
    // the log, so the op is rejected with the reason verifying would give.
    Fixture f;
    Problem why;
    const crypto::PrivateKey b = key(crypto::Curve::k256, 40), bp = key(crypto::Curve::p256, 41);
    for (const crypto::PrivateKey* by : {&b, &bp}) {
        INFO(crypto::to_string(by->curve));
        // Genesis: the sig is B's, the rotation keys A's.
        Operation g = make_op(f.rotation, did_key(f.sig0), std::nullopt);
        sign(g, *by);
        std::size_t signer = 0;
        CHECK(verify_signature(g, {did_key(*by)}, signer) == Errc::ok);  // a good signature, by B
        Log lg(did_of_genesis(g));
        CHECK(lg.apply(line_of(lg.did(), g, 0), why) == Errc::sig_invalid);
        CHECK(why.reason == "genesis sig: " + std::string(sov::to_string(Errc::sig_invalid)) + " (by its own rotationKeys)");
        CHECK(lg.entries().empty());
        // Update: prev's rotation keys are A's.
        Log log(f.did);
        REQUIRE(log.apply(line_of(f.did, f.genesis, 0), why) == Errc::ok);
        const std::string prev = op_cid(f.genesis);
        Operation u = f.update(prev, *by, did_key(f.sig1));
        CHECK(log.apply(line_of(f.did, u, 10), why) == Errc::sig_invalid);
        CHECK(why.reason == "sig: " + std::string(sov::to_string(Errc::sig_invalid)) + " (by the rotationKeys of " + prev + ")");
        CHECK(log.entries().size() == 1);
        // An update that names B as a rotation key does not help: prev's keys decide.
        u = make_op({did_key(*by)}, did_key(f.sig1), prev);
        sign(u, *by);
        CHECK(log.apply(line_of(f.did, u, 20), why) == Errc::sig_invalid);
    }
}

TEST_CASE("plc: one signature valid under two rotation keys: the lower index signs", "[plc][recover]") {
    // Every ECDSA signature verifies under two keys (one per y parity of its nonce point); the
    // second is a valid point anyone can compute. A log listing both takes the first.
    Fixture f;
    for (const crypto::PrivateKey& by : {f.rot0, f.rot1}) {
        INFO(crypto::to_string(by.curve));
        Operation g = make_op(f.rotation, did_key(f.sig0), std::nullopt);
        sign(g, by);
        const auto digest = crypto::sha256(encode(g, false));
        std::vector<std::uint8_t> sig;
        REQUIRE(sov::multibase::base64url_decode(g.sig, sig) == Errc::ok);
        crypto::Recovered rec;
        REQUIRE(crypto::recover(by.curve, digest.data(), sig, rec) == Errc::ok);
        REQUIRE(rec.count == 2);
        const auto mine = crypto::public_key_of(by);
        REQUIRE(mine.ok());
        const crypto::PublicKey twin = rec.keys[0] == *mine ? rec.keys[1] : rec.keys[0];
        REQUIRE_FALSE(twin == *mine);
        REQUIRE(crypto::verify(twin, digest.data(), sig) == Errc::ok);  // the curve library agrees
        const std::string a = did_key(by), t = crypto::to_did_key(twin), other = did_key(f.sig1);
        std::size_t signer = 99;
        CHECK(verify_signature(g, {t, a}, signer) == Errc::ok);
        CHECK(signer == 0);
        CHECK(verify_signature(g, {a, t}, signer) == Errc::ok);
        CHECK(signer == 0);
        CHECK(verify_signature(g, {other, t, a}, signer) == Errc::ok);
        CHECK(signer == 1);
    }
}

TEST_CASE("plc: high-S is judged at the first key whose curve's n/2 the s exceeds, as before", "[plc][recover]") {
    // P-256's n/2 is below secp256k1's: an s between them is high for a p256 key and low for a
    // k256 one. Verifying key by key returned sig_high_s at the first p256 key and let a k256
    // key before it verify; recovery must keep that order. The signature is crafted: take r of a
    // real k256 signature and such an s; the keys it verifies under are the recovered ones.
    Fixture f;
    Operation g = make_op(f.rotation, did_key(f.sig0), std::nullopt);
    sign(g, f.rot0);
    std::vector<std::uint8_t> sig;
    REQUIRE(sov::multibase::base64url_decode(g.sig, sig) == Errc::ok);
    // s = 0x7fffffff 80000001 00…: over P-256's n/2 (7fffffff 80000000 7fffffff …), under secp256k1's.
    std::fill(sig.begin() + 32, sig.end(), 0);
    sig[32] = 0x7f, sig[33] = 0xff, sig[34] = 0xff, sig[35] = 0xff, sig[36] = 0x80, sig[39] = 0x01;
    g.sig.clear();
    sov::multibase::base64url_encode(sig, g.sig);
    const auto digest = crypto::sha256(encode(g, false));
    crypto::Recovered rec;
    REQUIRE(crypto::recover(crypto::Curve::k256, digest.data(), sig, rec) == Errc::ok);
    REQUIRE(rec.count == 2);
    REQUIRE(crypto::verify(rec.keys[0], digest.data(), sig) == Errc::ok);
    Errc p256_verdict = Errc::ok;
    {
        auto p = crypto::parse_did_key(did_key(f.rot1));
        REQUIRE(p.ok());
        p256_verdict = crypto::verify(*p, digest.data(), sig);
    }
    REQUIRE(p256_verdict == Errc::sig_high_s);
    const std::string k = crypto::to_did_key(rec.keys[0]), p256 = did_key(f.rot1), k_other = did_key(f.sig1);
    std::size_t signer = 99;
    CHECK(verify_signature(g, {k, p256}, signer) == Errc::ok);
    CHECK(signer == 0);
    CHECK(verify_signature(g, {p256, k}, signer) == Errc::sig_high_s);
    CHECK(verify_signature(g, {k_other, p256, k}, signer) == Errc::sig_high_s);
    CHECK(verify_signature(g, {k_other}, signer) == Errc::sig_invalid);
}
