// The stateful verdicts (verify_state.h) and the ordered parallel engine (verify_engine.h).
#include "sovereign/capture.h"
#include "sovereign/did_doc.h"
#include "sovereign/syntax.h"
#include "sovereign/verify_engine.h"
#include "sovereign/verify_state.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <random>
#include <unistd.h>

#include "test_util.h"

using sov::verify::Facts;
using sov::verify::Outcome;
using sov::verify::State;
using sov::verify::Verdict;

namespace {

const std::uint8_t kData1[36] = {1, 0x71, 0x12, 0x20, 1};
const std::uint8_t kData2[36] = {1, 0x71, 0x12, 0x20, 2};

Facts commit(std::string_view did, std::string_view rev, std::int64_t seq, std::optional<std::string_view> since,
             const std::uint8_t* prev, const std::uint8_t* data) {
    Facts f;
    f.type = sov::msg::Type::commit;
    f.parsed = true;
    f.seq = seq;
    f.did = did;
    f.rev = rev;
    f.since = since;
    if (prev) f.prev_data = {prev, 36};
    if (data) f.data = {data, 36};
    return f;
}

Verdict apply(State& s, const Facts& f, std::string_view src = "relay", std::int64_t recv = 0) {
    Outcome o;
    s.apply(f, src, recv, o);
    return o.verdict;
}


}  // namespace

TEST_CASE("seq must increase per src; a rejected seq does not move the mark", "[state]") {
    State s;
    const char* did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    CHECK(apply(s, commit(did, "3lmxjza3nva27", 10, std::nullopt, nullptr, kData1)) == Verdict::ok);
    CHECK(apply(s, commit(did, "3lmxjza3nvb27", 10, std::nullopt, nullptr, kData1)) == Verdict::bad_seq);
    CHECK(apply(s, commit(did, "3lmxjza3nvb27", 5, std::nullopt, nullptr, kData1)) == Verdict::bad_seq);
    // another src has its own sequence
    CHECK(apply(s, commit(did, "3lmxjza3nvb27", 5, "3lmxjza3nva27", kData1, kData2), "other") == Verdict::ok);
    CHECK(s.src_count() == 2);
}

TEST_CASE("rev ordering, chaining and gaps", "[state]") {
    State s;
    const char* did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    CHECK(apply(s, commit(did, "3lmxjza3nva27", 1, std::nullopt, nullptr, kData1)) == Verdict::ok);
    CHECK(apply(s, commit(did, "3lmxjza3nva00", 2, "3lmxjza3nva27", kData1, kData2)) == Verdict::stale_rev);
    CHECK(apply(s, commit(did, "3lmxjza3nva27", 3, "3lmxjza3nva27", kData1, kData2)) == Verdict::stale_rev);
    CHECK(apply(s, commit(did, "3lmxjzbfkb522", 4, "3lmxjza3nva27", kData1, kData2)) == Verdict::ok);
    // since does not chain
    CHECK(apply(s, commit(did, "3lmxjzbfkb600", 5, "3lmxjza3nva27", kData2, kData1)) == Verdict::ok_gap);
    // prevData does not chain (last data is kData1 now)
    CHECK(apply(s, commit(did, "3lmxjzbfkb700", 6, "3lmxjzbfkb600", kData2, kData2)) == Verdict::ok_gap);
    CHECK(apply(s, commit(did, "3lmxjzbfkb800", 7, "3lmxjzbfkb700", kData2, kData1)) == Verdict::ok);
}

TEST_CASE("future rev relative to recv; recv 0 disables the check", "[state]") {
    State s;
    std::int64_t now = 1751639887000000;  // 2025-07-04
    std::string rev_now = sov::syntax::tid_from(now, 0);
    std::string rev_later = sov::syntax::tid_from(now + 6 * 60 * 1'000'000LL, 0);
    std::string rev_soon = sov::syntax::tid_from(now + 4 * 60 * 1'000'000LL, 0);
    CHECK(apply(s, commit("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", rev_later, 1, std::nullopt, nullptr, kData1), "r", now) ==
          Verdict::future_rev);
    CHECK(apply(s, commit("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", rev_soon, 2, std::nullopt, nullptr, kData1), "r", now) ==
          Verdict::ok);
    CHECK(apply(s, commit("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", rev_later, 3, std::nullopt, nullptr, kData1), "r", 0) ==
          Verdict::ok);
    (void)rev_now;
}

TEST_CASE("#account active:false makes commits inactive until reactivated", "[state]") {
    State s;
    const char* did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    Facts acc;
    acc.type = sov::msg::Type::account;
    acc.parsed = true;
    acc.seq = 1;
    acc.did = did;
    acc.active = false;
    CHECK(apply(s, acc) == Verdict::ok);
    CHECK(apply(s, commit(did, "3lmxjza3nva27", 2, std::nullopt, nullptr, kData1)) == Verdict::inactive);
    acc.seq = 3;
    acc.active = true;
    CHECK(apply(s, acc) == Verdict::ok);
    CHECK(apply(s, commit(did, "3lmxjza3nva27", 4, std::nullopt, nullptr, kData1)) == Verdict::ok);
}

TEST_CASE("the DID table is an LRU bounded by max_dids", "[state]") {
    State s(3);
    char did[] = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    for (int i = 0; i < 10; ++i) {
        did[8] = char('a' + i);
        CHECK(apply(s, commit(did, "3lmxjza3nva27", i + 1, std::nullopt, nullptr, kData1)) == Verdict::ok);
    }
    CHECK(s.did_count() == 3);
    CHECK(s.evictions() == 7);
    // an evicted DID's old rev is forgotten: not stale any more
    did[8] = 'a';
    CHECK(apply(s, commit(did, "3lmxjza3nva27", 11, std::nullopt, nullptr, kData1)) == Verdict::ok);
    // a remembered one still is
    did[8] = 'j';
    CHECK(apply(s, commit(did, "3lmxjza3nva27", 12, std::nullopt, nullptr, kData1)) == Verdict::stale_rev);
}

TEST_CASE("state saves and loads; corrupt files are refused with an offset", "[state]") {
    std::string path = std::filesystem::temp_directory_path() / ("sov_state_" + std::to_string(::getpid()));
    const char* did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    {
        State s;
        CHECK(apply(s, commit(did, "3lmxjza3nva27", 100, std::nullopt, nullptr, kData1)) == Verdict::ok);
        std::string err;
        REQUIRE(s.save(path, err) == sov::Errc::ok);
    }
    {
        State s;
        std::string err;
        REQUIRE(s.load(path, err) == sov::Errc::ok);
        CHECK(s.did_count() == 1);
        CHECK(apply(s, commit(did, "3lmxjzbfkb522", 100, "3lmxjza3nva27", kData1, kData2)) == Verdict::bad_seq);
        CHECK(apply(s, commit(did, "3lmxjza3nva27", 101, std::nullopt, nullptr, kData1)) == Verdict::stale_rev);
        CHECK(apply(s, commit(did, "3lmxjzbfkb522", 102, "3lmxjza3nva27", kData1, kData2)) == Verdict::ok);
    }
    auto bytes = testutil::read_file(path);
    auto load_bytes = [&](const std::vector<std::uint8_t>& b) {
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
        State s;
        std::string err;
        sov::Errc e = s.load(path, err);
        CHECK(err.find(path) == 0);
        CHECK(sov::exit_status(e) == 1);  // a damaged state file is rejected data, not a system error
        return e;
    };
    for (std::size_t cut : {std::size_t(0), std::size_t(5)})
        CHECK(load_bytes({bytes.begin(), bytes.begin() + std::ptrdiff_t(cut)}) == sov::Errc::state_bad_magic);
    for (std::size_t cut : {std::size_t(12), bytes.size() - 1})
        CHECK(load_bytes({bytes.begin(), bytes.begin() + std::ptrdiff_t(cut)}) == sov::Errc::state_truncated);
    auto longer = bytes;
    longer.push_back(0);
    CHECK(load_bytes(longer) == sov::Errc::state_corrupt);
    auto version2 = bytes;
    version2[8] = 2;
    CHECK(load_bytes(version2) == sov::Errc::state_bad_version);
    std::remove(path.c_str());
    State s;
    std::string err;
    CHECK(s.load(path, err) == sov::Errc::ok);  // missing file: empty state
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    sov::Errc e = s.save("/nonexistent-sovereign-dir/state", err);
    CHECK(e == sov::Errc::io_not_found);
    CHECK(sov::exit_status(e) == 2);  // an unwritable state path is a system error
    CHECK(err.find("/nonexistent-sovereign-dir/state") == 0);
}

TEST_CASE("parallel engine gives the verdicts of the sequential one, in order", "[engine]") {
    REQUIRE_CORPUS(corpus);
    std::vector<std::vector<std::uint8_t>> msgs;
    std::string err;
    REQUIRE(sov::capture::load(corpus / "relay-capture/frames.u32le.zst", msgs, err));
    sov::KeyStore store;
    REQUIRE(store.load_json_file(corpus / "relay-capture/did-docs.json.zst", err) == sov::Errc::ok);
    sov::verify::StoreKeys keys(store);
    // The capture three times (replays → bad-seq) with deterministic corruptions mixed in.
    std::vector<std::vector<std::uint8_t>> input;
    std::mt19937 rng(7);
    for (int round = 0; round < 3; ++round)
        for (auto m : msgs) {
            if (rng() % 10 == 0) m[rng() % m.size()] ^= 0x10;
            input.push_back(std::move(m));
        }
    std::vector<sov::verify::FrameIn> in;
    for (auto& m : input) in.push_back({m, 0, "bsky.network"});
    auto run = [&](std::size_t threads, std::size_t batch) {
        sov::verify::Engine e(keys, threads, false, 1000);
        std::vector<Outcome> out(in.size());
        for (std::size_t i = 0; i < in.size(); i += batch) {
            std::size_t n = std::min(batch, in.size() - i);
            e.run({in.data() + i, n}, {out.data() + i, n});
        }
        std::vector<Verdict> v;
        for (auto& o : out) v.push_back(o.verdict);
        return v;
    };
    auto seq = run(1, 1);
    CHECK(std::count(seq.begin(), seq.begin() + 150, Verdict::ok) >= 130);
    CHECK(std::count(seq.begin() + 150, seq.end(), Verdict::bad_seq) > 250);
    for (std::size_t threads : {1, 2, 4})
        for (std::size_t batch : {7, 64, 1024}) {
            INFO("threads " << threads << " batch " << batch);
            CHECK(run(threads, batch) == seq);
        }
}
