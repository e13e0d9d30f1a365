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

namespace {
Facts sync(std::string_view did, std::string_view rev, std::int64_t seq, const std::uint8_t* commit_cid,
           const std::uint8_t* data) {
    Facts f = commit(did, rev, seq, std::nullopt, nullptr, data);
    f.type = sov::msg::Type::sync;
    f.since.reset();
    f.commit = {commit_cid, 36};
    return f;
}

const std::uint8_t kCommit1[36] = {1, 0x71, 0x12, 0x20, 0xc1};
const std::uint8_t kCommit2[36] = {1, 0x71, 0x12, 0x20, 0xc2};
}  // namespace

TEST_CASE("#sync of the current state is ok; higher rev resets; lower is stale-rev (ref-net #sync)", "[state]") {
    // The reference PDS sends #commit(rev R) then #sync(rev R, same commit) on every account
    // creation and reactivation (docs/protocol.md §6 "Handling #sync": ignore it, do not reject).
    State s;
    const char* did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    Facts c = commit(did, "3lmxjza3nva27", 1, std::nullopt, nullptr, kData1);
    c.commit = {kCommit1, 36};
    CHECK(apply(s, c) == Verdict::ok);
    CHECK(apply(s, sync(did, "3lmxjza3nva27", 2, kCommit1, kData1)) == Verdict::ok);
    CHECK(apply(s, sync(did, "3lmxjza3nva27", 3, kCommit1, kData1)) == Verdict::ok);  // again: still ok
    // the same rev naming another commit is not the current state
    CHECK(apply(s, sync(did, "3lmxjza3nva27", 4, kCommit2, kData2)) == Verdict::stale_rev);
    // a lower rev stays stale
    CHECK(apply(s, sync(did, "3lmxjza3nva00", 5, kCommit2, kData2)) == Verdict::stale_rev);
    // a higher rev resets the DID's state: the next commit chains on the #sync's commit
    CHECK(apply(s, sync(did, "3lmxjzbfkb522", 6, kCommit2, kData2)) == Verdict::ok);
    CHECK(apply(s, commit(did, "3lmxjzbfkb600", 7, "3lmxjzbfkb522", kData2, kData1)) == Verdict::ok);
    CHECK(apply(s, commit(did, "3lmxjzbfkb700", 8, "3lmxjza3nva27", kData1, kData2)) == Verdict::ok_gap);
    // a #sync for a DID never seen is accepted and starts its state
    CHECK(apply(s, sync("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "3lmxjza3nva27", 9, kCommit1, kData1)) == Verdict::ok);
    CHECK(apply(s, sync("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "3lmxjza3nva27", 10, kCommit1, kData1)) == Verdict::ok);
}

TEST_CASE("D10: the per-src seq table is an LRU bounded like the DID table", "[state]") {
    // 1 M #identity frames with distinct src labels once grew cbor-verify to ~180 MB.
    State s(10, 100);
    Facts id;
    id.type = sov::msg::Type::identity;
    id.parsed = true;
    id.did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    for (int i = 0; i < 10000; ++i) {
        id.seq = 5;
        CHECK(apply(s, id, "src-" + std::to_string(i)) == Verdict::ok);
    }
    CHECK(s.src_count() == 100);
    CHECK(s.src_evictions() == 9900);
    id.seq = 5;
    CHECK(apply(s, id, "src-9999") == Verdict::bad_seq);  // a remembered src is still checked
    CHECK(apply(s, id, "src-0") == Verdict::ok);          // an evicted one starts afresh
    // the bound holds across save and load, in LRU order
    std::string path = std::filesystem::temp_directory_path() / ("sov_state_src_" + std::to_string(::getpid()));
    std::string err;
    REQUIRE(s.save(path, err) == sov::Errc::ok);
    State t(10, 100);
    REQUIRE(t.load(path, err) == sov::Errc::ok);
    CHECK(t.src_count() == 100);
    CHECK(apply(t, id, "src-0") == Verdict::bad_seq);
    std::remove(path.c_str());
}

TEST_CASE("version-1 state files still load (no commit CID: the MST root stands in)", "[state]") {
    std::string path = std::filesystem::temp_directory_path() / ("sov_state_v1_" + std::to_string(::getpid()));
    std::vector<std::uint8_t> v1 = {'S', 'O', 'V', 'S', 'T', 'A', 'T', 'E', 1, 0, 0, 0};
    auto u = [&](std::uint64_t v, int n) { for (int i = 0; i < n; ++i) v1.push_back(std::uint8_t(v >> (8 * i))); };
    auto str = [&](std::string_view x, int n) { u(x.size(), n); v1.insert(v1.end(), x.begin(), x.end()); };
    u(1, 8);
    str("relay", 2);
    u(7, 8);
    u(1, 8);
    str("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", 2);
    v1.push_back(0);
    str("3lmxjza3nva27", 1);
    u(36, 1);
    v1.insert(v1.end(), kData1, kData1 + 36);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(v1.data()), std::streamsize(v1.size()));
    State s;
    std::string err;
    REQUIRE(s.load(path, err) == sov::Errc::ok);
    CHECK(s.did_count() == 1);
    CHECK(apply(s, sync("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "3lmxjza3nva27", 8, kCommit1, kData1)) == Verdict::ok);
    CHECK(apply(s, sync("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "3lmxjza3nva27", 9, kCommit1, kData2)) == Verdict::stale_rev);
    CHECK(apply(s, commit("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "3lmxjzbfkb522", 6, "3lmxjza3nva27", kData1, kData2)) ==
          Verdict::bad_seq);
    std::remove(path.c_str());
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
    for (std::size_t cut : {std::size_t(12), std::size_t(40)})
        CHECK(load_bytes({bytes.begin(), bytes.begin() + std::ptrdiff_t(cut)}) == sov::Errc::state_truncated);
    // Any other truncation, extension or flipped bit fails the file's BLAKE3 hash (version 2).
    CHECK(load_bytes({bytes.begin(), bytes.end() - 1}) == sov::Errc::state_corrupt);
    auto longer = bytes;
    longer.push_back(0);
    CHECK(load_bytes(longer) == sov::Errc::state_corrupt);
    for (std::size_t i = 12; i < bytes.size(); ++i)
        for (int bit = 0; bit < 8; ++bit) {
            auto flipped = bytes;
            flipped[i] ^= std::uint8_t(1u << bit);
            sov::Errc e = load_bytes(flipped);
            CHECK(e == sov::Errc::state_corrupt);
        }
    auto version3 = bytes;
    version3[8] = 3;
    CHECK(load_bytes(version3) == sov::Errc::state_bad_version);
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
