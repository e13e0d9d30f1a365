// The simulated PLC directory agrees with plc::Log: every served line parses, every op is
// accepted or rejected exactly as the ground truth says, and every DID ends in its true state.
#include "sovereign/crypto.h"
#include "sovereign/plc.h"
#include "sovereign/sim_plc.h"
#include "sovereign/syntax.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>

using namespace sov;

namespace {

// Runs every op of `d` through one plc::Log per DID, from the served line of form `legacy`.
// Returns the number of ops checked; CHECKs every expectation on the way.
std::size_t check_against_log(const sim::PlcDirectory& d, bool legacy) {
    std::map<std::string, plc::Log> logs;
    std::map<Errc, std::size_t> rejected;
    for (std::size_t i = 0; i < d.ops().size(); ++i) {
        const sim::PlcOp& op = d.ops()[i];
        const std::string text = legacy ? d.legacy_line(i) : d.sequenced_line(i);
        plc::ExportLine line;
        plc::Problem why;
        REQUIRE(plc::parse_export_line(text, line, why) == Errc::ok);
        CHECK(line.seq == (legacy ? 0 : op.seq));
        CHECK(line.created_at_us == op.created_at_us);
        auto it = logs.try_emplace(op.did, op.did).first;
        Errc e = it->second.apply(line, why);
        INFO("op " << op.cid << " of " << op.did << ": " << why.reason);
        CHECK(e == op.expected);
        if (op.expected != Errc::ok) {
            ++rejected[e];
            auto inv = d.invalid().find(op.cid);
            REQUIRE(inv != d.invalid().end());
            CHECK(inv->second == op.expected);
        }
    }
    // Every DID's final state and nullified ops.
    for (const auto& a : d.accounts()) {
        INFO(a.did);
        const auto& log = logs.at(a.did);
        const plc::State st = log.state();
        CHECK(st.tombstoned == a.tombstoned);
        CHECK(st.rotation_keys == a.rotation_keys);
        CHECK(st.signing_key == a.signing_key);
        CHECK(st.pds == a.pds);
        CHECK(st.handle == a.handle);
        REQUIRE(st.key_history.size() == a.key_history.size());
        for (std::size_t k = 0; k < a.key_history.size(); ++k) {
            CHECK(st.key_history[k].valid_from_us == a.key_history[k].first);
            CHECK(st.key_history[k].did_key == a.key_history[k].second);
        }
        std::set<std::string> nullified_log, nullified_truth;
        for (const auto& en : log.entries())
            if (en.nullified) nullified_log.insert(en.cid);
        for (std::size_t i : a.ops)
            if (d.ops()[i].nullified) nullified_truth.insert(d.ops()[i].cid);
        CHECK(nullified_log == nullified_truth);
    }
    return d.ops().size();
}

}  // namespace

TEST_CASE("sim_plc: every op agrees with plc::Log, in both export forms", "[sim][plc]") {
    sim::PlcOptions o;
    o.accounts = 1500;
    o.seed = 7;
    // Raised shares so that every kind of event occurs many times.
    o.nullify_share = 0.15;
    o.tombstone_share = 0.1;
    o.invalid_share = 0.3;
    auto t0 = std::chrono::steady_clock::now();
    auto d = sim::PlcDirectory::generate(o);
    REQUIRE(d);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "sim_plc: %zu accounts, %zu ops in %.2f s (%.0f accounts/s)\n", o.accounts, d->ops().size(),
                 secs, double(o.accounts) / secs);
    CHECK(check_against_log(*d, false) == d->ops().size());
    CHECK(check_against_log(*d, true) == d->ops().size());

    // Every kind of event is present.
    std::map<Errc, std::size_t> kinds;
    for (const auto& op : d->ops()) ++kinds[op.expected];
    for (Errc e : {Errc::sig_invalid, Errc::sig_high_s, Errc::sig_bad_length, Errc::plc_cid_mismatch,
                   Errc::plc_after_tombstone, Errc::plc_nullify_late}) {
        INFO(sov::to_string(e));
        CHECK(kinds[e] > 5);
    }
    std::size_t tombstoned = 0, nullified = 0, p256 = 0, rotated = 0;
    for (const auto& a : d->accounts()) {
        tombstoned += a.tombstoned;
        rotated += a.key_history.size() > 1;
        if (!a.rotation_keys.empty() && a.rotation_keys[1].starts_with("did:key:zDn")) ++p256;
    }
    for (const auto& op : d->ops()) nullified += op.nullified;
    CHECK(tombstoned > 50);
    CHECK(nullified > 50);
    CHECK(p256 > 100);
    CHECK(rotated > 200);

    // Export order: (createdAt, cid), seq 1, 2, …; per DID distinct increasing createdAt.
    for (std::size_t i = 0; i < d->ops().size(); ++i) {
        const auto& op = d->ops()[i];
        CHECK(op.seq == i + 1);
        CHECK(op.created_at_us % 1000 == 0);
        CHECK(syntax::parse_datetime_micros(op.created_at) == op.created_at_us);
        if (i) {
            const auto& prev = d->ops()[i - 1];
            CHECK((prev.created_at_us < op.created_at_us || (prev.created_at_us == op.created_at_us && prev.cid < op.cid)));
        }
    }
}

TEST_CASE("sim_plc: a seed gives the same directory whatever the thread count", "[sim][plc]") {
    sim::PlcOptions o;
    o.accounts = 300;
    o.seed = 42;
    o.p256_share = 0.5;  // p256 signatures must be deterministic too
    o.threads = 1;
    auto a = sim::PlcDirectory::generate(o);
    o.threads = 3;
    auto b = sim::PlcDirectory::generate(o);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(a->ops().size() == b->ops().size());
    for (std::size_t i = 0; i < a->ops().size(); ++i) CHECK(a->sequenced_line(i) == b->sequenced_line(i));
    for (std::size_t i = 0; i < a->accounts().size(); ++i)
        CHECK(a->truth_line(a->accounts()[i]) == b->truth_line(b->accounts()[i]));
    o.seed = 43;
    auto c = sim::PlcDirectory::generate(o);
    REQUIRE(c);
    CHECK(c->accounts()[0].did != a->accounts()[0].did);
}

TEST_CASE("sim_plc: documents, audit logs and options", "[sim][plc]") {
    sim::PlcOptions o;
    o.accounts = 200;
    o.tombstone_share = 0.2;
    auto d = sim::PlcDirectory::generate(o);
    REQUIRE(d);
    for (const auto& a : d->accounts()) {
        REQUIRE(d->find(a.did) == &a);
        std::vector<plc::ExportLine> lines;
        plc::Problem why;
        REQUIRE(plc::parse_audit_log(d->audit_log(a), lines, why) == Errc::ok);
        CHECK(lines.size() == a.ops.size());
        if (!a.tombstoned) {
            auto doc = nlohmann::json::parse(d->did_document(a));
            CHECK(doc["id"] == a.did);
            CHECK("did:key:" + doc["verificationMethod"][0]["publicKeyMultibase"].get<std::string>() == a.signing_key);
            CHECK(doc["service"][0]["serviceEndpoint"] == a.pds);
        }
        auto truth = nlohmann::json::parse(d->truth_line(a));
        CHECK(truth["did"] == a.did);
    }
    CHECK(d->find("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa") == nullptr);
    o.accounts = 0;
    CHECK(sim::PlcDirectory::generate(o).error() == Errc::bad_argument);
    o.accounts = 1;
    o.invalid_share = 1.5;
    CHECK(sim::PlcDirectory::generate(o).error() == Errc::bad_argument);
}

TEST_CASE("sim_plc: identities() hold the private keys of the truth's key history", "[sim][plc]") {
    sim::PlcOptions o;
    o.accounts = 300;
    o.seed = 5;
    o.threads = 2;
    auto d = sim::PlcDirectory::generate(o);
    REQUIRE(d);
    const auto& ids = *d->identities();
    REQUIRE(ids.size() == d->accounts().size());
    std::size_t rotated = 0, migrated = 0, tombstoned = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const sim::Identity& id = ids[i];
        const sim::PlcAccountTruth& a = d->accounts()[i];
        INFO(a.did);
        CHECK(id.did == a.did);
        REQUIRE(!id.spans.empty());
        // The spans, with consecutive equal keys merged, are the key history (a tombstone adds
        // a last entry without a key, at end_us).
        std::vector<std::pair<std::int64_t, std::string>> h;
        for (const auto& s : id.spans) {
            std::string k = crypto::to_did_key(*crypto::public_key_of(s.key));
            if (h.empty() || h.back().second != k) h.emplace_back(s.from_us, k);
        }
        if (a.tombstoned) {
            ++tombstoned;
            CHECK(id.end_us == a.key_history.back().first);
            h.emplace_back(id.end_us, "");
        } else {
            CHECK(id.end_us == INT64_MAX);
            CHECK(id.spans.back().pds == a.pds);
            CHECK(id.spans.back().handle == a.handle);
        }
        CHECK(h == a.key_history);
        rotated += h.size() > (a.tombstoned ? 2u : 1u);
        for (std::size_t k = 1; k < id.spans.size(); ++k) {
            CHECK(id.spans[k - 1].from_us < id.spans[k].from_us);
            migrated += id.spans[k].pds != id.spans[k - 1].pds;
        }
    }
    CHECK(rotated > 30);
    CHECK(migrated > 10);
    CHECK(tombstoned > 0);
}
