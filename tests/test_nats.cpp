// sovereign/nats: the parts that need no server — NATS addresses (jetstream.h) and routing
// (route.h): partitions of hash(DID), routes of every kind of envelope, subjects, message ids,
// rendezvous owners. The server side is tested from the command line (tests/cli/nats_frames.py).
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/frame_stream.h"
#include "sovereign/nats/jetstream.h"
#include "sovereign/nats/route.h"
#include "test_wire.h"

#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <map>
#include <set>

using namespace sov;
namespace nats = sov::nats;

namespace {

// The partition hash computed on its own here (OpenSSL's SHA-256, not the library's wrapper):
// the first 8 bytes of the digest, big-endian.
std::uint64_t openssl_hash64(std::string_view s) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    REQUIRE(EVP_Digest(s.data(), s.size(), d, &len, EVP_sha256(), nullptr) == 1);
    REQUIRE(len == 32);
    std::uint64_t h = 0;
    for (int i = 0; i < 8; ++i) h = (h << 8) | d[i];
    return h;
}

std::string did_n(int i) { return "did:plc:test" + std::to_string(i * 7919) + "x" + std::to_string(i); }

using testwire::cid_of;
using testwire::header;
using testwire::view;
using testwire::account_wire;
using testwire::identity_wire;

// Payloads in canonical key order (shorter keys first, then bytewise).
std::vector<std::uint8_t> commit_wire(const std::string& did, const std::string& tag, std::uint64_t seq,
                                      bool with_commit = true) {
    auto out = header("#commit");
    cbor::Writer w(out);
    w.map(with_commit ? 5 : 4);
    w.text("ops");
    w.array(1);
    w.map(1);
    w.text("path");
    w.text("app.bsky.feed.post/3l2");
    w.text("seq");
    w.uint(seq);
    w.text("repo");
    w.text(did);
    w.text("time");
    w.text("2026-11-27T00:00:00.000Z");
    if (with_commit) {
        w.text("commit");
        w.link(cid_of(tag).bytes());
    }
    return out;
}

std::vector<std::uint8_t> sync_wire(const std::string& did, const std::string& tag, std::uint64_t seq) {
    std::vector<std::uint8_t> car;
    car::append_header(car, cid_of(tag).bytes());
    auto out = header("#sync");
    cbor::Writer w(out);
    w.map(3);
    w.text("did");
    w.text(did);
    w.text("seq");
    w.uint(seq);
    w.text("blocks");
    w.bytes(view(car));
    return out;
}

std::vector<std::uint8_t> info_wire() {
    auto out = header("#info");
    cbor::Writer w(out);
    w.map(1);
    w.text("name");
    w.text("OutdatedCursor");
    return out;
}

// A record of `wire` from `src`, decoded (the record owns the bytes the envelope views).
struct Rec {
    std::vector<std::uint8_t> bytes;
    frames::Envelope env;
};
Rec message(const std::string& src, const std::vector<std::uint8_t>& wire) {
    Rec r;
    REQUIRE(frames::append_record(r.bytes, src, std::nullopt, 1'800'000'000'000'000, view(wire)));
    REQUIRE_FALSE(frames::parse_record(view(r.bytes), r.env));
    return r;
}
Rec marker(const std::string& src) {
    Rec r;
    frames::Marker mk;
    mk.kind = "connect";
    mk.url = "wss://" + src;
    mk.cursor = 12;
    REQUIRE(frames::append_marker(r.bytes, src, 1'800'000'000'000'000, mk));
    REQUIRE_FALSE(frames::parse_record(view(r.bytes), r.env));
    REQUIRE(r.env.is_marker());
    return r;
}

bool url(std::string_view text, nats::Url& u, std::string& why) {
    why.clear();
    return nats::parse_url(text, u, why);
}

}  // namespace

TEST_CASE("parse_url: server, port, path and query") {
    nats::Url u;
    std::string why;
    REQUIRE(url("nats://127.0.0.1:4333/fh.src.pds.{pp}", u, why));
    CHECK(u.server == "nats://127.0.0.1:4333");
    CHECK(u.path == "fh.src.pds.{pp}");
    CHECK(u.query.empty());

    SECTION("the port defaults to 4222; no path") {
        REQUIRE(url("nats://nats.example", u, why));
        CHECK(u.server == "nats://nats.example:4222");
        CHECK(u.path.empty());
        REQUIRE(url("nats://nats.example/", u, why));
        CHECK(u.server == "nats://nats.example:4222");
        CHECK(u.path.empty());
    }
    SECTION("ports at the edges") {
        REQUIRE(url("nats://h:1", u, why));
        CHECK(u.server == "nats://h:1");
        REQUIRE(url("nats://h:65535/s", u, why));
        CHECK(u.server == "nats://h:65535");
    }
    SECTION("IPv6 in brackets, with and without a port") {
        REQUIRE(url("nats://[::1]:5000/FH_SRC", u, why));
        CHECK(u.server == "nats://[::1]:5000");
        CHECK(u.path == "FH_SRC");
        REQUIRE(url("nats://[fe80::1:2]", u, why));
        CHECK(u.server == "nats://[fe80::1:2]:4222");
    }
    SECTION("the query, in order; param()") {
        REQUIRE(url("nats://h:1/FH_SRC?consumer=arch&filter=fh.src.pds.>", u, why));
        CHECK(u.path == "FH_SRC");
        REQUIRE(u.query.size() == 2);
        CHECK(u.query[0] == std::pair<std::string, std::string>{"consumer", "arch"});
        CHECK(u.query[1] == std::pair<std::string, std::string>{"filter", "fh.src.pds.>"});
        CHECK(u.param("consumer") == std::optional<std::string>("arch"));
        CHECK(u.param("filter") == std::optional<std::string>("fh.src.pds.>"));
        CHECK_FALSE(u.param("wait").has_value());
        // empty pairs skipped, a key without '=' has an empty value, '=' inside a value kept
        REQUIRE(url("nats://h?a&&b=&c=x=y&", u, why));
        CHECK(u.path.empty());
        REQUIRE(u.query.size() == 3);
        CHECK(u.param("a") == std::optional<std::string>(""));
        CHECK(u.param("b") == std::optional<std::string>(""));
        CHECK(u.param("c") == std::optional<std::string>("x=y"));
    }
    SECTION("a path keeps its slashes and percent signs as written") {
        REQUIRE(url("nats://h:2/a/b%20c", u, why));
        CHECK(u.path == "a/b%20c");
    }
}

TEST_CASE("parse_url: what is refused, with a reason") {
    nats::Url u;
    std::string why;
    for (const char* bad : {"", "nats:/h:4222", "http://h:4222/x", "NATS://h", "nats://", "nats:///FH_SRC",
                            "nats://:4222", "nats://h:", "nats://h:0", "nats://h:65536", "nats://h:123456",
                            "nats://h:42a2", "nats://h:-1", "nats://[::1", "nats://[::1]4222", "nats://[::1]:",
                            "nats://[]:4222", "nats://::1:4222", "nats://fe80::1"}) {
        INFO("'" << bad << "'");
        CHECK_FALSE(url(bad, u, why));
        CHECK_FALSE(why.empty());
    }
    CHECK_FALSE(url("http://h", u, why));
    CHECK(why == "not a nats:// address");
    CHECK_FALSE(url("nats://h:99999/x", u, why));
    CHECK(why.find("h:99999") != std::string::npos);
    CHECK_FALSE(url("nats://::1:4222/x", u, why));
    CHECK(why.find("brackets") != std::string::npos);
}

TEST_CASE("hash64 and partition_of: SHA-256 prefix, fixed values, in range") {
    // Fixed values: a change of definition re-partitions every deployment.
    CHECK(nats::hash64("") == 0xe3b0c44298fc1c14ULL);
    CHECK(nats::hash64("did:plc:ewvi7nxzyoun6zhxrhs64oiz") == 0x099e4ea96cd62c05ULL);
    struct Fixed {
        const char* did;
        std::uint32_t p16, p100, p7;
    };
    for (const Fixed& f : {Fixed{"did:plc:ewvi7nxzyoun6zhxrhs64oiz", 5, 25, 0},
                           Fixed{"did:plc:z72i7hdynmk6r22z27h6tvur", 1, 77, 3},
                           Fixed{"did:web:example.com", 13, 61, 0},
                           Fixed{"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", 1, 33, 2}}) {
        INFO(f.did);
        CHECK(nats::partition_of(f.did, 16) == f.p16);
        CHECK(nats::partition_of(f.did, 100) == f.p100);
        CHECK(nats::partition_of(f.did, 7) == f.p7);
        CHECK(nats::partition_of(f.did, 1) == 0);
    }
    // The same definition computed on its own, and every partition in range.
    for (int i = 0; i < 2000; ++i) {
        const std::string d = did_n(i);
        const std::uint64_t h = openssl_hash64(d);
        REQUIRE(nats::hash64(d) == h);
        for (std::uint32_t n : {2u, 3u, 16u, 64u, 100u}) {
            const std::uint32_t p = nats::partition_of(d, n);
            REQUIRE(p < n);
            REQUIRE(p == h % n);
        }
    }
}

TEST_CASE("partition_of: roughly uniform over 10,000 DIDs") {
    for (std::uint32_t n : {16u, 100u}) {
        std::vector<int> count(n);
        for (int i = 0; i < 10000; ++i) ++count[nats::partition_of(did_n(i), n)];
        const double expect = 10000.0 / n;
        double chi2 = 0;
        for (int c : count) chi2 += (c - expect) * (c - expect) / expect;
        INFO("n " << n << " chi2 " << chi2);
        // chi-squared at p = 0.001: 37.7 with 15 degrees of freedom, 148.2 with 99
        CHECK(chi2 < (n == 16 ? 37.7 : 148.2));
        for (int c : count) CHECK(std::abs(c - expect) <= expect * (n == 16 ? 0.2 : 0.4));
    }
}

TEST_CASE("route_of: each kind of envelope") {
    const std::string did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz", src = "pds1.example.com";
    const std::uint32_t n = 16, pd = nats::partition_of(did, n), ps = nats::partition_of(src, n);
    REQUIRE(pd != ps);  // so that routing by the wrong field shows

    SECTION("#commit: by its repo, key = commit DID CID") {
        Rec r = message(src, commit_wire(did, "c1", 41));
        nats::Route rt = nats::route_of(r.env, n);
        CHECK(rt.has_key);
        CHECK(rt.partition == pd);
        CHECK(rt.match_key == "commit " + did + " " + cid::to_string(cid_of("c1")));
        CHECK(rt.match_key.find(" bafyrei") != std::string::npos);
        CHECK(rt.seq == 41);
        // the same event from another source: the same key and partition, another seq
        nats::Route other = nats::route_of(message("relay.example", commit_wire(did, "c1", 9000)).env, n);
        CHECK(other.match_key == rt.match_key);
        CHECK(other.partition == rt.partition);
        CHECK(other.seq == 9000);
    }
    SECTION("#sync: key = sync DID root CID of its CAR") {
        nats::Route rt = nats::route_of(message(src, sync_wire(did, "s1", 42)).env, n);
        CHECK(rt.has_key);
        CHECK(rt.partition == pd);
        CHECK(rt.match_key == "sync " + did + " " + cid::to_string(cid_of("s1")));
        CHECK(rt.seq == 42);
    }
    SECTION("#identity: key = identity DID TIME") {
        nats::Route rt = nats::route_of(message(src, identity_wire(did, "2026-11-27T01:02:03.456Z", 43)).env, n);
        CHECK(rt.has_key);
        CHECK(rt.partition == pd);
        CHECK(rt.match_key == "identity " + did + " 2026-11-27T01:02:03.456Z");
        CHECK(rt.seq == 43);
    }
    SECTION("#account: key = account DID TIME ACTIVE STATUS") {
        nats::Route rt =
            nats::route_of(message(src, account_wire(did, "2026-11-27T01:02:03.456Z", false, "takendown", 44)).env, n);
        CHECK(rt.has_key);
        CHECK(rt.partition == pd);
        CHECK(rt.match_key == "account " + did + " 2026-11-27T01:02:03.456Z false takendown");
        CHECK(rt.seq == 44);
        nats::Route active = nats::route_of(message(src, account_wire(did, "2026-11-27T01:02:03.456Z", true, "", 45)).env, n);
        CHECK(active.match_key == "account " + did + " 2026-11-27T01:02:03.456Z true ");
        CHECK(active.match_key != rt.match_key);
    }
    SECTION("#info: no DID, no key, no seq: by its src") {
        nats::Route rt = nats::route_of(message(src, info_wire()).env, n);
        CHECK_FALSE(rt.has_key);
        CHECK(rt.match_key.empty());
        CHECK(rt.partition == ps);
        CHECK(rt.seq == -1);
    }
    SECTION("a marker: by its src") {
        nats::Route rt = nats::route_of(marker(src).env, n);
        CHECK_FALSE(rt.has_key);
        CHECK(rt.match_key.empty());
        CHECK(rt.partition == ps);
        CHECK(rt.seq == -1);
    }
    SECTION("a #commit without its commit field: by its src, without a key, its seq kept") {
        nats::Route rt = nats::route_of(message(src, commit_wire(did, "c1", 46, false)).env, n);
        CHECK_FALSE(rt.has_key);
        CHECK(rt.match_key.empty());
        CHECK(rt.partition == ps);
        CHECK(rt.seq == 46);
    }
    SECTION("a truncated message: by its src, without a key") {
        auto wire = commit_wire(did, "c1", 47);
        wire.resize(wire.size() - 5);
        nats::Route rt = nats::route_of(message(src, wire).env, n);
        CHECK_FALSE(rt.has_key);
        CHECK(rt.partition == ps);
    }
    SECTION("one partition: everything in 0") {
        CHECK(nats::route_of(message(src, commit_wire(did, "c1", 1)).env, 1).partition == 0);
        CHECK(nats::route_of(marker(src).env, 1).partition == 0);
    }
}

TEST_CASE("subject_for: {pp} as two digits, {src} escaped") {
    nats::Route r;
    r.partition = 7;
    CHECK(nats::subject_for("fh.src.pds.{pp}", r, "x") == "fh.src.pds.07");
    r.partition = 0;
    CHECK(nats::subject_for("fh.src.pds.{pp}", r, "x") == "fh.src.pds.00");
    r.partition = 99;
    CHECK(nats::subject_for("fh.vrd.{pp}", r, "x") == "fh.vrd.99");
    CHECK(nats::subject_for("fh.src.{src}.{pp}", r, "pds1.example.com") == "fh.src.pds1_example_com.99");
    CHECK(nats::subject_for("{src}", r, "a*b>c d\te") == "a_b_c_d_e");
    CHECK(nats::subject_for("{pp}.{pp}", r, "") == "99.99");
    CHECK(nats::subject_for("fh.src.relay", r, "bsky.network") == "fh.src.relay");
    CHECK(nats::subject_for("fh.{p}.{src", r, "s") == "fh.{p}.{src");
    CHECK(nats::subject_for("", r, "s").empty());
}

TEST_CASE("msg_id_for: match-key, src-seq, none") {
    const std::string did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    Rec c = message("pds1.example.com", commit_wire(did, "c1", 41));
    nats::Route rc = nats::route_of(c.env, 16);
    CHECK(nats::msg_id_for("match-key", rc, c.env.src) == rc.match_key);
    CHECK(nats::msg_id_for("src-seq", rc, c.env.src) == "pds1.example.com 41");
    CHECK(nats::msg_id_for("none", rc, c.env.src).empty());
    CHECK(nats::msg_id_for("bogus", rc, c.env.src).empty());

    Rec i = message("pds1.example.com", info_wire());
    nats::Route ri = nats::route_of(i.env, 16);
    CHECK(nats::msg_id_for("match-key", ri, i.env.src).empty());
    CHECK(nats::msg_id_for("src-seq", ri, i.env.src).empty());

    Rec m = marker("pds1.example.com");
    nats::Route rm = nats::route_of(m.env, 16);
    CHECK(nats::msg_id_for("match-key", rm, m.env.src).empty());
    CHECK(nats::msg_id_for("src-seq", rm, m.env.src).empty());

    // src-seq tells sources apart; match-key does not (the same event from two sources is one)
    Rec c2 = message("relay.example", commit_wire(did, "c1", 41));
    nats::Route rc2 = nats::route_of(c2.env, 16);
    CHECK(nats::msg_id_for("match-key", rc2, c2.env.src) == nats::msg_id_for("match-key", rc, c.env.src));
    CHECK(nats::msg_id_for("src-seq", rc2, c2.env.src) != nats::msg_id_for("src-seq", rc, c.env.src));
}

TEST_CASE("rendezvous_owner: in range, stable, minimal movement, balanced") {
    constexpr int kHosts = 5000;
    std::vector<std::string> hosts;
    for (int i = 0; i < kHosts; ++i) hosts.push_back("pds" + std::to_string(i) + ".host-" + std::to_string(i % 37) + ".example");

    // the definition: the k of largest hash64(host "\n" k)
    for (int i = 0; i < 200; ++i)
        for (std::uint32_t n : {1u, 2u, 5u}) {
            std::uint32_t best = 1;
            std::uint64_t best_w = 0;
            for (std::uint32_t k = 1; k <= n; ++k) {
                const std::uint64_t w = openssl_hash64(hosts[std::size_t(i)] + "\n" + std::to_string(k));
                if (k == 1 || w > best_w) best = k, best_w = w;
            }
            REQUIRE(nats::rendezvous_owner(hosts[std::size_t(i)], n) == best);
        }

    std::vector<std::uint32_t> prev(kHosts);
    for (int i = 0; i < kHosts; ++i) prev[std::size_t(i)] = nats::rendezvous_owner(hosts[std::size_t(i)], 1);
    for (std::uint32_t o : prev) REQUIRE(o == 1);
    for (std::uint32_t n = 2; n <= 10; ++n) {
        std::vector<std::uint32_t> now(kHosts);
        std::map<std::uint32_t, int> count;
        int moved = 0;
        for (int i = 0; i < kHosts; ++i) {
            const std::uint32_t o = nats::rendezvous_owner(hosts[std::size_t(i)], n);
            REQUIRE(o >= 1);
            REQUIRE(o <= n);
            now[std::size_t(i)] = o;
            ++count[o];
            // the only hosts that move are those the new member takes; the rest stay put
            if (o != prev[std::size_t(i)]) {
                REQUIRE(o == n);
                ++moved;
            }
        }
        INFO("members " << n << ", moved " << moved);
        // about a share 1/n moves to the new member, and each member holds about 1/n
        CHECK(std::abs(moved - double(kHosts) / n) <= 0.2 * kHosts / n);
        REQUIRE(count.size() == n);
        for (auto [k, c] : count) {
            INFO("member " << k << " holds " << c);
            CHECK(std::abs(c - double(kHosts) / n) <= 0.2 * kHosts / n);
        }
        prev = now;
    }
    // stable: the same answer every time
    CHECK(nats::rendezvous_owner("pds1.example.com", 3) == nats::rendezvous_owner("pds1.example.com", 3));
}
