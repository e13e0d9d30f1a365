// Another relay implementation's acceptance scenarios (corpus/relay-scenarios): every message
// marked `drop` must be rejected by the verifier, every other one must pass. Lenient
// scenarios (legacy commits without proofs) run with lenient mode, as `cbor-verify --lenient`.
#include "sovereign/cbor.h"
#include "sovereign/crypto.h"
#include "sovereign/dag_json.h"
#include "sovereign/verify_engine.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "test_util.h"

namespace {

class ScenarioKeys final : public sov::verify::KeySource {
public:
    std::map<std::string, sov::crypto::PublicKey, std::less<>> keys;
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view did, std::int64_t) const override {
        auto it = keys.find(did);
        if (it == keys.end()) return std::nullopt;
        return it->second;
    }
};

struct Outcome {
    std::size_t passed_ok = 0, dropped_ok = 0;
};

Outcome run_scenario(const std::filesystem::path& file) {
    INFO("scenario " << file.filename().string());
    std::ifstream in(file);
    nlohmann::json j = nlohmann::json::parse(in);
    ScenarioKeys keys;
    for (const auto& a : j["accounts"]) {
        const auto& id = a["identity"];
        auto k = sov::crypto::parse_multikey(id["keys"]["atproto"]["publicKeyMultibase"].get<std::string>());
        REQUIRE(k.ok());
        keys.keys.emplace(id["did"].get<std::string>(), *k);
        CHECK(a["status"] == "active");  // every scenario starts active; otherwise seed the state
    }
    bool lenient = j.value("lenient", false);
    sov::verify::Engine engine(keys, 1, lenient, 1000);
    Outcome result;
    std::size_t index = 0;
    for (const auto& m : j["messages"]) {
        ++index;
        std::vector<std::uint8_t> wire;
        sov::cbor::Writer w(wire);
        std::string where;
        REQUIRE(sov::dag_json::encode(m["frame"]["header"], w, where) == sov::Errc::ok);
        REQUIRE(sov::dag_json::encode(m["frame"]["body"], w, where) == sov::Errc::ok);
        sov::verify::FrameIn f{wire, 0, "scenario-relay"};
        sov::verify::Outcome out;
        engine.run({&f, 1}, {&out, 1});
        bool drop = m["drop"].get<bool>();
        INFO("message " << index << " " << m["frame"]["header"].value("t", "?") << ": verdict "
                        << sov::verify::to_string(out.verdict) << " " << out.detail);
        if (drop) {
            CHECK_FALSE(sov::verify::passes(out.verdict));
            ++result.dropped_ok;
        } else {
            CHECK(sov::verify::passes(out.verdict));
            ++result.passed_ok;
        }
    }
    return result;
}

}  // namespace

TEST_CASE("relay acceptance scenarios: drop exactly the messages marked drop", "[scenarios]") {
    REQUIRE_CORPUS(corpus);
    std::size_t files = 0, messages = 0, drops = 0;
    for (const auto& e : std::filesystem::directory_iterator(corpus / "relay-scenarios")) {
        if (e.path().extension() != ".json") continue;
        Outcome o = run_scenario(e.path());
        ++files;
        messages += o.passed_ok + o.dropped_ok;
        drops += o.dropped_ok;
    }
    CHECK(files == 7);
    CHECK(messages == 35);
    CHECK(drops == 5);
}

TEST_CASE("scenario with lenient off rejects legacy commits without prevData", "[scenarios]") {
    REQUIRE_CORPUS(corpus);
    std::ifstream in(corpus / "relay-scenarios" / "legacy.json");
    nlohmann::json j = nlohmann::json::parse(in);
    ScenarioKeys keys;
    for (const auto& a : j["accounts"])
        keys.keys.emplace(a["identity"]["did"].get<std::string>(),
                          *sov::crypto::parse_multikey(a["identity"]["keys"]["atproto"]["publicKeyMultibase"].get<std::string>()));
    sov::verify::Verifier strict(keys, false), lenient(keys, true);
    std::size_t commits = 0;
    for (const auto& m : j["messages"]) {
        if (m["frame"]["header"].value("t", "") != "#commit") continue;
        std::vector<std::uint8_t> wire;
        sov::cbor::Writer w(wire);
        std::string where;
        REQUIRE(sov::dag_json::encode(m["frame"]["header"], w, where) == sov::Errc::ok);
        REQUIRE(sov::dag_json::encode(m["frame"]["body"], w, where) == sov::Errc::ok);
        ++commits;
        CHECK(lenient.verify(wire, 0).verdict == sov::verify::Verdict::ok);
        CHECK(strict.verify(wire, 0).verdict == sov::verify::Verdict::bad_proof);
    }
    CHECK(commits > 0);
}
