// mesh-sim's generator: deterministic, every message verifies (signature, CAR, MST proof,
// stateful order), mutations are caught, and replaying a real repository rebuilds its root.
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/did_doc.h"
#include "sovereign/io.h"
#include "sovereign/message.h"
#include "sovereign/sim.h"
#include "sovereign/verify_engine.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>

#include "test_util.h"

namespace {

// The generator's DID documents as a key source (a KeyStore kept alive beside its adapter).
class DocKeys final : public sov::verify::KeySource {
public:
    explicit DocKeys(const nlohmann::json& docs) : keys_(store_) {
        std::string err;
        REQUIRE(store_.load_json(docs, err) == sov::Errc::ok);
    }
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view did, std::int64_t recv_us) const override {
        return keys_.signing_key(did, recv_us);
    }
    /// The current key.
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view did) const { return keys_.signing_key(did, 0); }

private:
    sov::KeyStore store_;
    sov::verify::StoreKeys keys_;
};

std::vector<std::vector<std::uint8_t>> generate(const sov::sim::Options& o, std::size_t n,
                                                std::vector<std::int64_t>* recvs = nullptr) {
    sov::sim::Generator g(o);
    std::vector<std::vector<std::uint8_t>> out;
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<std::uint8_t> wire;
        std::int64_t recv;
        REQUIRE(g.next(wire, recv) == sov::Errc::ok);
        out.push_back(std::move(wire));
        if (recvs) recvs->push_back(recv);
    }
    return out;
}

}  // namespace

TEST_CASE("Rng and Zipf are deterministic and shaped as documented", "[sim]") {
    sov::sim::Rng a(42), b(42), c(43);
    for (int i = 0; i < 100; ++i) CHECK(a.next() == b.next());
    CHECK(a.next() != c.next());
    sov::sim::Zipf z(1000, 1.1);
    sov::sim::Rng r(1);
    std::vector<std::size_t> hist(1000);
    for (int i = 0; i < 200000; ++i) ++hist[z.sample(r)];
    // P(rank 0) / P(rank 9) = 10^1.1 ≈ 12.6
    double ratio = double(hist[0]) / double(hist[9]);
    CHECK(ratio > 10.5);
    CHECK(ratio < 15.0);
    CHECK(hist[0] > hist[1]);
}

// SHA-256 (hex) of the concatenated wire bytes of the first `n` messages.
static std::string digest(const sov::sim::Options& o, std::size_t n) {
    std::vector<std::uint8_t> all;
    for (auto& w : generate(o, n)) all.insert(all.end(), w.begin(), w.end());
    auto h = sov::crypto::sha256(sov::ByteView{all.data(), all.size()});
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (auto b : h) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

TEST_CASE("pinned bytes: accounts derived from the seed on use give the bytes they gave when held whole", "[sim]") {
    // Digests of the output before accounts were compacted (32 bytes each, identities derived
    // on use, change log entries of 48 bytes): a change here changes the model.
    sov::sim::Options o;
    o.accounts = 300;
    o.p256_share = 0.5;
    CHECK(digest(o, 400) == "71149002322fbfe687711d8626fe3d7315c5f6c723a7c03713dcf805677e736d");
    o.repo_budget_bytes = 1u << 20;  // regenerable repositories, evicted and rebuilt often
    CHECK(digest(o, 400) == "95de6c13a83dbbdf8669c7536278f70b1fb9eb4ebb6c4e3072d6ad2359fba4b1");
}

TEST_CASE("DID documents: in pieces as whole, and by account", "[sim]") {
    sov::sim::Options o;
    o.accounts = 200;
    o.p256_share = 0.3;
    sov::sim::Generator g(o);
    const nlohmann::json docs = g.did_docs();
    std::string text;
    REQUIRE(g.write_did_docs([&](std::string_view piece) {
        text += piece;
        return sov::Errc::ok;
    }) == sov::Errc::ok);
    CHECK(text == docs.dump());
    REQUIRE(docs.size() == 200);
    for (std::size_t i = 0; i < g.account_count(); ++i) {
        INFO("account " << i);
        REQUIRE(docs.contains(g.account_did(i)));
        CHECK(docs[g.account_did(i)] == g.did_doc(i));
        CHECK(g.did_doc(i)["alsoKnownAs"][0] == "at://u" + std::to_string(i) + ".mesh-sim.test");
    }
    CHECK_THROWS_AS(g.account_did(200), std::out_of_range);
    // An error from the writer stops the writing and is returned.
    int calls = 0;
    CHECK(g.write_did_docs([&](std::string_view) {
        ++calls;
        return sov::Errc::io_error;
    }) == sov::Errc::io_error);
    CHECK(calls == 1);
}

TEST_CASE("same seed, same bytes; another seed, other bytes", "[sim]") {
    sov::sim::Options o;
    o.accounts = 50;
    auto x = generate(o, 200), y = generate(o, 200);
    CHECK(x == y);
    o.seed = 2;
    CHECK(generate(o, 200) != x);
}

// The next `n` messages of `g` (kept in `wires`), verified as one batch by `engine`.
static std::vector<sov::verify::Outcome> next_verified(sov::sim::Generator& g, sov::verify::Engine& engine, std::size_t n,
                                                       std::vector<std::vector<std::uint8_t>>& wires) {
    wires.assign(n, {});
    std::vector<sov::verify::FrameIn> in;
    for (auto& w : wires) {
        std::int64_t recv;
        REQUIRE(g.next(w, recv) == sov::Errc::ok);
        in.push_back({w, recv, "mesh-sim"});
    }
    std::vector<sov::verify::Outcome> out(in.size());
    engine.run(in, out);
    return out;
}

TEST_CASE("generated traffic passes full verification, in order, with both curves", "[sim]") {
    sov::sim::Options o;
    o.accounts = 120;
    o.p256_share = 0.3;
    o.seed = 5;
    sov::sim::Generator g(o);
    DocKeys keys(g.did_docs());
    sov::verify::Engine engine(keys, 2, false, 10000);
    std::map<std::string, std::size_t> types;
    std::size_t p256 = 0;
    for (int batch = 0; batch < 6; ++batch) {
        std::vector<std::vector<std::uint8_t>> wires;
        auto out = next_verified(g, engine, 250, wires);
        for (std::size_t i = 0; i < out.size(); ++i) {
            INFO("message " << batch * 250 + i << ": " << sov::verify::to_string(out[i].verdict) << " " << out[i].detail);
            REQUIRE(out[i].verdict == sov::verify::Verdict::ok);
            sov::msg::Message m;
            REQUIRE_FALSE(sov::msg::parse(wires[i], m));
            ++types[std::string(sov::msg::to_string(m.type))];
            if (m.type == sov::msg::Type::commit && keys.signing_key(m.did)->curve == sov::crypto::Curve::p256) ++p256;
        }
    }
    CHECK(types["commit"] > 1300);
    CHECK(types["identity"] > 0);
    CHECK(types["account"] > 0);
    CHECK(types["sync"] > 0);
    CHECK(p256 > 100);
    const auto& s = g.stats();
    CHECK(s.deletes > 0);
    CHECK(s.proof_blocks > s.commits);  // every commit ships MST nodes
    // op mix near the documented shares
    CHECK(double(s.creates) / double(s.ops) > 0.9);
}

TEST_CASE("mutated generated frames are rejected", "[sim]") {
    sov::sim::Options o;
    o.accounts = 30;
    o.seed = 9;
    sov::sim::Generator g(o);
    DocKeys keys(g.did_docs());
    sov::verify::Verifier v(keys);
    std::size_t commits = 0, caught = 0;
    for (int i = 0; i < 300; ++i) {
        std::vector<std::uint8_t> w;
        std::int64_t recv;
        REQUIRE(g.next(w, recv) == sov::Errc::ok);
        sov::msg::Message m;
        REQUIRE_FALSE(sov::msg::parse(w, m));
        if (m.type != sov::msg::Type::commit) continue;
        ++commits;
        // Flip one byte inside the CAR slice: some block stops hashing to its CID, or the
        // CAR stops parsing; either way the frame must not pass.
        std::size_t off = std::size_t(m.blocks.data() - w.data()) + 60 + std::size_t(i * 37) % (m.blocks.size() - 60);
        w[off] ^= 0x01;
        auto out = v.verify(w, recv);
        INFO("commit " << i << " byte " << off << ": " << sov::verify::to_string(out.verdict) << " " << out.detail);
        CHECK_FALSE(sov::verify::passes(out.verdict));
        caught += !sov::verify::passes(out.verdict);
    }
    CHECK(commits > 200);
    CHECK(caught == commits);
}

TEST_CASE("a dropped proof block gives bad-proof", "[sim]") {
    sov::sim::Options o;
    o.accounts = 10;
    o.seed = 11;
    o.repo_median = 2000;
    sov::sim::Generator g(o);
    DocKeys keys(g.did_docs());
    sov::verify::Verifier v(keys);
    std::size_t tested = 0;
    for (int i = 0; i < 200 && tested < 20; ++i) {
        std::vector<std::uint8_t> w;
        std::int64_t recv;
        REQUIRE(g.next(w, recv) == sov::Errc::ok);
        sov::msg::Message m;
        REQUIRE_FALSE(sov::msg::parse(w, m));
        if (m.type != sov::msg::Type::commit) continue;
        // Rebuild the CAR without its last MST node block (the one before the record blocks).
        sov::car::Reader r;
        REQUIRE_FALSE(r.open(m.blocks));
        std::vector<sov::car::Section> secs;
        sov::car::Section s;
        while (r.next(s)) secs.push_back(s);
        std::size_t drop = secs.size() - 1 - m.ops.size() + std::size_t(std::count_if(m.ops.begin(), m.ops.end(), [](auto& op) {
                               return op.action == sov::msg::OpAction::del;
                           }));
        if (drop == 0 || drop >= secs.size()) continue;
        std::vector<std::uint8_t> car(m.blocks.begin(), m.blocks.begin() + std::ptrdiff_t(r.body_offset()));
        for (std::size_t k = 0; k < secs.size(); ++k) {
            if (k == drop) continue;
            sov::ByteView sec{m.blocks.data() + secs[k].offset,
                              (k + 1 < secs.size() ? secs[k + 1].offset : m.blocks.size()) - secs[k].offset};
            car.insert(car.end(), sec.begin(), sec.end());
        }
        // Re-encode the payload with the new blocks (same key order: only `blocks` changes).
        std::vector<std::uint8_t> w2(m.header_raw.begin(), m.header_raw.end());
        sov::cbor::Writer wr(w2);
        wr.map(m.payload.count());
        auto it = m.payload.map();
        std::string_view k;
        sov::cbor::Value val;
        while (it.next(k, val)) {
            wr.text(k);
            if (k == "blocks") wr.bytes(car);
            else wr.raw(val.raw());
        }
        auto out = v.verify(w2, recv);
        INFO("commit " << i << ": " << sov::verify::to_string(out.verdict) << " " << out.detail);
        CHECK(out.verdict == sov::verify::Verdict::bad_proof);
        ++tested;
    }
    CHECK(tested >= 10);
}

TEST_CASE("replaying a real repository rebuilds its MST root commit by commit", "[sim]") {
    REQUIRE_CORPUS(corpus);
    for (const char* name : {"tiny.car", "little.car", "jetstream-maintainer.car"}) {
        INFO(name);
        sov::sim::Options o;
        o.accounts = 1;
        sov::sim::Generator g(o);
        std::string err;
        auto n = g.load_replay((corpus / "repos" / name).string(), err);
        REQUIRE(n.ok());
        DocKeys keys(g.did_docs());
        sov::verify::Engine engine(keys, 1, false, 10);
        std::vector<std::uint8_t> w;
        std::int64_t recv = 0;
        sov::ByteView last_data;
        std::vector<std::uint8_t> last;
        for (std::size_t i = 0; i < *n; ++i) {
            REQUIRE(g.next(w, recv) == sov::Errc::ok);
            sov::verify::FrameIn f{w, 0, "replay"};
            sov::verify::Outcome out;
            engine.run({&f, 1}, {&out, 1});
            INFO("commit " << i << ": " << out.detail);
            REQUIRE(out.verdict == sov::verify::Verdict::ok);
            last = w;
        }
        // The last commit's data equals the real repository's.
        sov::msg::Message m;
        REQUIRE_FALSE(sov::msg::parse(last, m));
        sov::car::Reader r;
        REQUIRE_FALSE(r.open(m.blocks));
        sov::car::Section s;
        REQUIRE(r.next(s));  // commit first
        std::string real;
        REQUIRE(sov::io::read_all((corpus / "repos" / name).string(), real, err));
        sov::car::Reader rr;
        REQUIRE_FALSE(rr.open(sov::as_bytes(real)));
        sov::car::Section rs;
        sov::ByteView real_commit;
        while (rr.next(rs))
            if (sov::cid::equal(rs.cid, rr.root())) real_commit = rs.block;
        CHECK(sov::cid::equal(sov::cbor::Value::of(s.block).get("data").as_link(),
                              sov::cbor::Value::of(real_commit).get("data").as_link()));
    }
}

TEST_CASE("realistic profile: regenerable repositories under a small budget all verify", "[sim]") {
    auto preset = sov::sim::profile("realistic");
    REQUIRE(preset.ok());
    CHECK_FALSE(sov::sim::profile("no-such-profile").ok());
    sov::sim::Options o = *preset;
    CHECK(o.accounts == 200000);
    CHECK(o.zipf_s == 0.7);
    CHECK(o.repo_median == 15000);
    CHECK(o.repo_budget_bytes > 0);
    CHECK(o.entropic_records);
    // Fewer accounts (their keys take time to make) and a budget of a few repositories, so
    // that repositories are evicted and rebuilt — and checked against their root — often.
    o.accounts = 3000;
    o.repo_budget_bytes = 2u << 20;
    o.p256_share = 0.2;
    o.seed = 3;
    sov::sim::Generator g(o);
    DocKeys keys(g.did_docs());
    sov::verify::Engine engine(keys, 2, false, 10000);
    std::size_t n = 0;
    for (int batch = 0; batch < 6; ++batch) {
        std::vector<std::vector<std::uint8_t>> wires;
        auto out = next_verified(g, engine, 500, wires);
        for (std::size_t i = 0; i < out.size(); ++i, ++n) {
            INFO("message " << n << ": " << sov::verify::to_string(out[i].verdict) << " " << out[i].detail);
            REQUIRE(out[i].verdict == sov::verify::Verdict::ok);
        }
    }
    const auto& s = g.stats();
    CHECK(n == 3000);
    CHECK(s.evictions > 100);
    CHECK(s.rebuilds > s.evictions);  // first builds plus rebuilds after eviction
    CHECK(s.deletes > 0);
    CHECK(s.ops_replaced * 100 < s.ops);
    CHECK(s.peak_repo_bytes < 3 * o.repo_budget_bytes);
}

TEST_CASE("realistic profile is deterministic and shaped like the relay capture", "[sim]") {
    sov::sim::Options o = *sov::sim::profile("realistic");
    o.accounts = 2000;
    o.repo_budget_bytes = 1u << 20;
    auto x = generate(o, 300), y = generate(o, 300);
    CHECK(x == y);
    sov::sim::ShapeMeter meter(150);
    for (auto& w : x) meter.add(w);
    const sov::sim::Shape& s = meter.finish();
    CHECK(s.messages == 300);
    // Broad bands around the capture (man/mesh-sim.1.md, PROFILES): ~5.5 KB per message,
    // ~8.5 MST nodes of ~500 bytes per commit, records zstd ratio ~2.8.
    double per_msg = double(s.wire_bytes) / double(s.messages), nodes = double(s.nodes) / double(s.commits);
    double node_bytes = double(s.node_bytes) / double(s.nodes), zrec = double(s.record_bytes) / double(s.z_records);
    CHECK(per_msg > 3500);
    CHECK(per_msg < 8000);
    CHECK(nodes > 5);
    CHECK(nodes < 12);
    CHECK(node_bytes > 350);
    CHECK(node_bytes < 650);
    CHECK(zrec > 2.0);
    CHECK(zrec < 4.0);
}
