// ghost.h: match keys and the relay-against-mesh matcher (docs/design.md §11).
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/frame_stream.h"
#include "sovereign/ghost.h"
#include "test_wire.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>

#include <map>

using namespace sov;
using ghost::Kind;
using ghost::Side;

namespace {

constexpr std::int64_t S = 1'000'000;  // one second in µs
constexpr std::int64_t T0 = 1'800'000'000LL * S;

using testwire::cid_of;
using testwire::header;
using testwire::view;
using testwire::account_wire;
using testwire::identity_wire;

// #commit {ops: [{path}], repo, time, commit} in canonical key order.
std::vector<std::uint8_t> commit_wire(const std::string& did, const std::string& tag,
                                      const std::string& path = "app.bsky.feed.post/3l2") {
    auto out = header("#commit");
    cbor::Writer w(out);
    w.map(4);
    w.text("ops");
    w.array(1);
    w.map(1);
    w.text("path");
    w.text(path);
    w.text("repo");
    w.text(did);
    w.text("time");
    w.text("2026-11-27T00:00:00.000Z");
    w.text("commit");
    w.link(cid_of(tag).bytes());
    return out;
}

std::vector<std::uint8_t> sync_wire(const std::string& did, const std::string& tag) {
    std::vector<std::uint8_t> car;
    car::append_header(car, cid_of(tag).bytes());
    auto out = header("#sync");
    cbor::Writer w(out);
    w.map(2);
    w.text("did");
    w.text(did);
    w.text("blocks");
    w.bytes(view(car));
    return out;
}

// A matcher with a relay input and one mesh input, collecting findings by kind.
struct Rig {
    std::vector<ghost::Finding> found;
    ghost::Matcher m;
    int relay, mesh;
    explicit Rig(std::int64_t window = 5 * S, std::size_t max_pending = 1000)
        : m(ghost::Options{window, max_pending, 100, 10 * S}, [this](const ghost::Finding& f) { found.push_back(f); }) {
        relay = m.add_input(Side::relay, "relay.frames");
        mesh = m.add_input(Side::mesh, "mesh.frames");
    }
    void msg(int in, const std::string& src, std::int64_t t, const std::vector<std::uint8_t>& wire) {
        std::vector<std::uint8_t> rec;
        REQUIRE(frames::append_record(rec, src, std::nullopt, t, view(wire)));
        frames::Envelope e;
        REQUIRE_FALSE(frames::parse_record(view(rec), e));
        std::string why;
        REQUIRE(m.add(in, e, why) == Errc::ok);
        m.advance();
    }
    void mark(int in, const std::string& src, std::int64_t t, frames::Marker mk) {
        std::vector<std::uint8_t> rec;
        REQUIRE(frames::append_marker(rec, src, t, mk));
        frames::Envelope e;
        REQUIRE_FALSE(frames::parse_record(view(rec), e));
        std::string why;
        REQUIRE(m.add(in, e, why) == Errc::ok);
        m.advance();
    }
    void connect(int in, const std::string& src, std::int64_t t, std::optional<std::int64_t> cursor = 0) {
        frames::Marker mk;
        mk.kind = "connect";
        mk.url = "ws://x/" + src;
        mk.cursor = cursor;
        mark(in, src, t, mk);
    }
    void disconnect(int in, const std::string& src, std::int64_t t) {
        frames::Marker mk;
        mk.kind = "disconnect";
        mk.reason = "closed";
        mark(in, src, t, mk);
    }
    std::map<Kind, int> counts() const {
        std::map<Kind, int> c;
        for (auto& f : found) ++c[f.kind];
        return c;
    }
    const ghost::Finding* find(Kind k, const std::string& did) const {
        for (auto& f : found)
            if (f.kind == k && f.did == did) return &f;
        return nullptr;
    }
};

}  // namespace

TEST_CASE("key_of: the keys of design §11, and the types not matched", "[ghost]") {
    ghost::Key k;
    std::string why;
    auto w = commit_wire("did:plc:a", "c1", "app.bsky.feed.like/3k");
    REQUIRE(ghost::key_of(view(w), k, why) == Errc::ok);
    CHECK(k.type == "commit");
    CHECK(k.did == "did:plc:a");
    CHECK(cid::equal(k.commit, cid_of("c1").bytes()));
    CHECK(k.collection == "app.bsky.feed.like");

    auto s = sync_wire("did:plc:b", "c2");
    REQUIRE(ghost::key_of(view(s), k, why) == Errc::ok);
    CHECK(k.type == "sync");
    CHECK(cid::equal(k.commit, cid_of("c2").bytes()));  // the CAR's root

    auto a = account_wire("did:plc:c", "2026-01-01T00:00:00Z", false, "takendown");
    REQUIRE(ghost::key_of(view(a), k, why) == Errc::ok);
    CHECK((k.type == "account" && !k.active && k.status == "takendown" && k.time == "2026-01-01T00:00:00Z"));

    auto info = header("#info");
    {
        cbor::Writer wr(info);
        wr.map(1);
        wr.text("name");
        wr.text("OutdatedCursor");
    }
    REQUIRE(ghost::key_of(view(info), k, why) == Errc::ok);
    CHECK(k.type.empty());

    auto bad = header("#identity");
    {
        cbor::Writer wr(bad);
        wr.map(1);
        wr.text("did");
        wr.text("did:plc:d");
    }
    CHECK(ghost::key_of(view(bad), k, why) == Errc::cbor_missing_field);
    CHECK(why.find("time") != std::string::npos);

    std::vector<std::uint8_t> junk{0x01, 0x02};
    CHECK(ghost::key_of(view(junk), k, why) != Errc::ok);
}

TEST_CASE("matcher: match with latency, drop while the relay was observed", "[ghost]") {
    Rig r;
    r.connect(r.relay, "relay", T0);
    r.connect(r.mesh, "pds0", T0);
    r.msg(r.mesh, "pds0", T0 + 1 * S, commit_wire("did:plc:a", "a1"));
    r.msg(r.relay, "relay", T0 + 1 * S + 3000, commit_wire("did:plc:a", "a1"));
    r.msg(r.mesh, "pds0", T0 + 2 * S, commit_wire("did:plc:b", "b1", "app.bsky.feed.like/x"));
    // time passes on both inputs
    r.msg(r.mesh, "pds0", T0 + 20 * S, commit_wire("did:plc:c", "c1"));
    r.msg(r.relay, "relay", T0 + 20 * S + 1000, commit_wire("did:plc:c", "c1"));
    auto m = r.find(Kind::match, "did:plc:a");
    REQUIRE(m);
    CHECK(m->latency() == 3000);
    CHECK(m->host == "pds0");
    CHECK_FALSE(m->replayed);
    auto d = r.find(Kind::drop, "did:plc:b");
    REQUIRE(d);
    CHECK(d->collection == "app.bsky.feed.like");
    CHECK(d->relay_recv == 0);
    auto st = r.m.stats();
    CHECK(st.drops == 1);
    CHECK(st.drops_by_host.at("pds0") == 1);
    CHECK(st.drops_by_collection.at("app.bsky.feed.like") == 1);
    CHECK(st.latency.count() == 2);
    CHECK(st.mesh_first == 2);
}

TEST_CASE("matcher: the relay first gives a negative latency; the verdicts do not depend on read order", "[ghost]") {
    auto run = [](bool relay_first) {
        Rig r;
        r.connect(r.relay, "relay", T0);
        r.connect(r.mesh, "pds0", T0);
        std::vector<std::pair<int, std::int64_t>> evs;
        for (int i = 0; i < 40; ++i) {
            auto t = T0 + i * S / 4;
            if (relay_first) {
                if (i % 5) r.msg(r.relay, "relay", t + 500, commit_wire("did:plc:x" + std::to_string(i), "t" + std::to_string(i)));
            }
            r.msg(r.mesh, "pds0", t, commit_wire("did:plc:x" + std::to_string(i), "t" + std::to_string(i)));
        }
        if (!relay_first)
            for (int i = 0; i < 40; ++i)
                if (i % 5) r.msg(r.relay, "relay", T0 + i * S / 4 + 500, commit_wire("did:plc:x" + std::to_string(i), "t" + std::to_string(i)));
        r.m.finish();
        return std::make_pair(r.counts(), r.m.stats().latency.quantile(0.5));
    };
    auto a = run(true), b = run(false);
    CHECK(a.first == b.first);
    CHECK(a.first[Kind::match] == 32);
    CHECK(a.first[Kind::drop] + a.first[Kind::unobserved] == 8);
    CHECK(a.second == b.second);
}

TEST_CASE("matcher: a relay outage without cursor makes its events unobserved, never drops", "[ghost]") {
    Rig r;
    r.connect(r.relay, "relay", T0);
    r.connect(r.mesh, "pds0", T0);
    r.msg(r.mesh, "pds0", T0 + 1 * S, commit_wire("did:plc:a", "a1"));
    r.msg(r.relay, "relay", T0 + 1 * S + 100, commit_wire("did:plc:a", "a1"));
    r.disconnect(r.relay, "relay", T0 + 2 * S);
    r.msg(r.mesh, "pds0", T0 + 3 * S, commit_wire("did:plc:b", "b1"));  // the relay is down
    r.connect(r.relay, "relay", T0 + 4 * S, std::nullopt);                // live head: b1 gone
    r.msg(r.mesh, "pds0", T0 + 30 * S, commit_wire("did:plc:z", "z1"));
    r.msg(r.relay, "relay", T0 + 30 * S, commit_wire("did:plc:z", "z1"));
    REQUIRE(r.find(Kind::unobserved, "did:plc:b"));
    CHECK_FALSE(r.find(Kind::drop, "did:plc:b"));
    CHECK(r.find(Kind::unobserved, "did:plc:b")->reason.find("relay") != std::string::npos);
}

TEST_CASE("matcher: a relay outage bridged by a cursor waits for the replay; a real drop is still found", "[ghost]") {
    Rig r;
    r.connect(r.relay, "relay", T0);
    r.connect(r.mesh, "pds0", T0);
    r.disconnect(r.relay, "relay", T0 + 1 * S);
    r.msg(r.mesh, "pds0", T0 + 2 * S, commit_wire("did:plc:a", "a1"));
    r.msg(r.mesh, "pds0", T0 + 3 * S, commit_wire("did:plc:b", "b1"));
    r.msg(r.mesh, "pds0", T0 + 12 * S, commit_wire("did:plc:m", "m1"));  // the window of a1 and b1 has passed
    CHECK(r.found.empty());  // the relay is down: nothing decided yet
    r.connect(r.relay, "relay", T0 + 13 * S, 41);                         // resumed from its cursor
    r.msg(r.relay, "relay", T0 + 13 * S + 10, commit_wire("did:plc:a", "a1"));  // the replay: a1, not b1
    r.msg(r.relay, "relay", T0 + 13 * S + 20, commit_wire("did:plc:m", "m1"));
    r.msg(r.mesh, "pds0", T0 + 40 * S, commit_wire("did:plc:y", "y1"));
    r.msg(r.relay, "relay", T0 + 40 * S, commit_wire("did:plc:y", "y1"));
    auto a = r.find(Kind::match, "did:plc:a");
    REQUIRE(a);
    CHECK(a->replayed);  // measured the outage, not the relay
    CHECK(r.find(Kind::drop, "did:plc:b"));
    CHECK(r.m.stats().replayed >= 1);
}

TEST_CASE("matcher: relay-only needs the DID's PDS observed; an unknown PDS is unobserved", "[ghost]") {
    Rig r;
    r.connect(r.relay, "relay", T0);
    r.connect(r.mesh, "pds0", T0);
    r.msg(r.mesh, "pds0", T0 + 1 * S, commit_wire("did:plc:a", "a1"));
    r.msg(r.relay, "relay", T0 + 1 * S, commit_wire("did:plc:a", "a1"));
    r.msg(r.relay, "relay", T0 + 8 * S, commit_wire("did:plc:a", "a2"));  // invented: pds0 observed
    r.msg(r.relay, "relay", T0 + 8 * S, commit_wire("did:plc:q", "q1"));  // a DID the mesh never saw
    r.msg(r.mesh, "pds0", T0 + 30 * S, commit_wire("did:plc:z", "z1"));
    r.msg(r.relay, "relay", T0 + 30 * S, commit_wire("did:plc:z", "z1"));
    auto ro = r.find(Kind::relay_only, "did:plc:a");
    REQUIRE(ro);
    CHECK(ro->side == Side::relay);
    CHECK(ro->host == "pds0");
    auto u = r.find(Kind::unobserved, "did:plc:q");
    REQUIRE(u);
    CHECK(u->side == Side::relay);
}

TEST_CASE("matcher: identity, account and sync keys match across re-encoding", "[ghost]") {
    Rig r;
    r.connect(r.relay, "relay", T0);
    r.connect(r.mesh, "pds0", T0);
    r.msg(r.mesh, "pds0", T0 + S, identity_wire("did:plc:i", "2026-01-01T00:00:01Z"));
    r.msg(r.relay, "relay", T0 + S + 5, identity_wire("did:plc:i", "2026-01-01T00:00:01Z"));
    // Not the same event (active and status differ). Later than a window after the mesh
    // connected: before that, a mesh copy could have preceded the connection (unobserved).
    r.msg(r.mesh, "pds0", T0 + 6 * S, account_wire("did:plc:i", "2026-01-01T00:00:02Z", false, "deactivated"));
    r.msg(r.relay, "relay", T0 + 6 * S + 5, account_wire("did:plc:i", "2026-01-01T00:00:02Z", true, ""));
    r.msg(r.mesh, "pds0", T0 + S, sync_wire("did:plc:s", "s1"));
    r.msg(r.relay, "relay", T0 + S + 5, sync_wire("did:plc:s", "s1"));
    r.msg(r.mesh, "pds0", T0 + 30 * S, commit_wire("did:plc:z", "z1"));  // both inputs pass the window
    r.msg(r.relay, "relay", T0 + 30 * S, commit_wire("did:plc:z", "z1"));
    r.m.finish();
    auto c = r.counts();
    CHECK(c[Kind::match] == 3);
    REQUIRE(r.find(Kind::drop, "did:plc:i"));
    CHECK(r.find(Kind::drop, "did:plc:i")->status == "deactivated");
    CHECK(r.find(Kind::relay_only, "did:plc:i"));
}

TEST_CASE("matcher: a gap marker, the end of an input, duplicates, and max_pending", "[ghost]") {
    SECTION("gap") {
        Rig r;
        r.connect(r.relay, "relay", T0);
        r.connect(r.mesh, "pds0", T0);
        r.msg(r.relay, "relay", T0 + S, commit_wire("did:plc:r", "r0"));
        r.msg(r.mesh, "pds0", T0 + S, commit_wire("did:plc:r", "r0"));
        r.msg(r.mesh, "pds0", T0 + 2 * S, commit_wire("did:plc:a", "a1"));
        frames::Marker g;
        g.kind = "gap";
        g.from = 10;
        g.to = 20;
        r.mark(r.relay, "relay", T0 + 3 * S, g);
        r.m.finish();
        CHECK(r.find(Kind::unobserved, "did:plc:a"));
        CHECK_FALSE(r.find(Kind::drop, "did:plc:a"));
    }
    SECTION("end of input before the window closed") {
        Rig r;
        r.connect(r.relay, "relay", T0);
        r.connect(r.mesh, "pds0", T0);
        r.msg(r.relay, "relay", T0 + S, commit_wire("did:plc:r", "r0"));
        r.msg(r.mesh, "pds0", T0 + 2 * S, commit_wire("did:plc:a", "a1"));
        r.m.finish();
        CHECK(r.find(Kind::unobserved, "did:plc:a"));
        CHECK(r.m.stats().drops == 0);
    }
    SECTION("duplicates are counted, not findings") {
        Rig r;
        r.connect(r.relay, "relay", T0);
        r.connect(r.mesh, "pds0", T0);
        r.msg(r.mesh, "pds0", T0 + S, commit_wire("did:plc:a", "a1"));
        r.msg(r.mesh, "pds0", T0 + S + 1, commit_wire("did:plc:a", "a1"));
        r.msg(r.relay, "relay", T0 + S + 2, commit_wire("did:plc:a", "a1"));
        r.msg(r.relay, "relay", T0 + S + 3, commit_wire("did:plc:a", "a1"));
        r.m.finish();
        CHECK(r.found.size() == 1);
        CHECK(r.m.stats().duplicates == 2);
    }
    SECTION("max_pending bounds memory: the oldest are decided unobserved") {
        Rig r(5 * S, 10);
        r.connect(r.relay, "relay", T0);
        r.connect(r.mesh, "pds0", T0);
        for (int i = 0; i < 25; ++i) r.msg(r.mesh, "pds0", T0 + S + i, commit_wire("did:plc:p", "p" + std::to_string(i)));
        auto st = r.m.stats(false);
        CHECK(st.pending_mesh <= 10);
        CHECK(r.counts()[Kind::unobserved] == 15);
    }
}

TEST_CASE("histogram quantiles are exact to 0.1 ms", "[ghost]") {
    ghost::Histogram h;
    for (int i = 1; i <= 1000; ++i) h.add(i * 1000);  // 1..1000 ms
    CHECK(std::abs(h.quantile(0.5) - 500'000) <= 100);
    CHECK(std::abs(h.quantile(0.99) - 990'000) <= 100);
    h.add(-20 * S);
    h.add(100 * S);
    CHECK(h.quantile(0) == -20 * S);
    CHECK(h.quantile(1) == 100 * S);
}

TEST_CASE("a histogram's copy holds every bucket of the original", "[ghost]") {
    // The copy writes only the range between the least and the greatest value: every bucket of
    // both copies compared, with values in both overflow buckets and none.
    for (bool overflow : {false, true}) {
        ghost::Histogram h;
        for (int i = 0; i < 5000; ++i) h.add(std::int64_t(i) * 7919 % 3'000'000 - 500'000);
        if (overflow) {
            h.add(-20 * S);
            h.add(100 * S);
        }
        ghost::Histogram c(h), a;
        a = h;
        for (const auto* x : {&c, &a}) {
            REQUIRE(x->buckets().size() == h.buckets().size());
            CHECK(std::equal(x->buckets().begin(), x->buckets().end(), h.buckets().begin()));
            CHECK(x->count() == h.count());
            CHECK(x->min() == h.min());
            CHECK(x->max() == h.max());
            for (double q : {0.0, 0.01, 0.5, 0.99, 1.0}) CHECK(x->quantile(q) == h.quantile(q));
        }
    }
    ghost::Histogram empty, e2(empty);
    CHECK(e2.buckets().empty());
    CHECK(e2.count() == 0);
}

TEST_CASE("key_hash: one hash per match key, whatever else the message holds", "[ghost]") {
    using ghost::Key;
    const std::uint8_t c1[] = {1, 0x71, 0x12, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                               17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    std::uint8_t c2[sizeof c1];
    std::memcpy(c2, c1, sizeof c1);
    c2[sizeof c2 - 1] ^= 1;
    auto commit = [&](std::string_view type, std::string_view did, const std::uint8_t* cid, std::string_view coll) {
        Key k;
        k.type = type;
        k.did = did;
        k.commit = {cid, sizeof c1};
        k.collection = coll;
        return k;
    };
    auto account = [](std::string_view did, std::string_view time, bool active, std::string_view status) {
        Key k;
        k.type = "account";
        k.did = did;
        k.time = time;
        k.active = active;
        k.status = status;
        return k;
    };
    Key a = commit("commit", "did:plc:a", c1, "app.bsky.feed.like");
    // The same key: a #sync of the same commit, another collection (not part of the key).
    CHECK(ghost::key_hash(a) == ghost::key_hash(commit("sync", "did:plc:a", c1, "")));
    CHECK(ghost::key_hash(a) == ghost::key_hash(commit("commit", "did:plc:a", c1, "app.bsky.feed.post")));
    // Another key: one byte of the CID, the DID, a DID that is a prefix of the other.
    CHECK(!(ghost::key_hash(a) == ghost::key_hash(commit("commit", "did:plc:a", c2, "app.bsky.feed.like"))));
    CHECK(!(ghost::key_hash(a) == ghost::key_hash(commit("commit", "did:plc:b", c1, "app.bsky.feed.like"))));
    CHECK(!(ghost::key_hash(a) == ghost::key_hash(commit("commit", "did:plc:", c1, "app.bsky.feed.like"))));
    // Field boundaries count: the same bytes split differently between DID and time differ.
    Key i1, i2;
    i1.type = i2.type = "identity";
    i1.did = "did:plc:abcdefgh", i1.time = "2026";
    i2.did = "did:plc:abcdefgh2", i2.time = "026";
    CHECK(!(ghost::key_hash(i1) == ghost::key_hash(i2)));
    // #account: time, active and status are the key; an #identity of the same DID and time is not it.
    Key ac = account("did:plc:a", "2026-01-01T00:00:00Z", true, "");
    CHECK(ghost::key_hash(ac) == ghost::key_hash(account("did:plc:a", "2026-01-01T00:00:00Z", true, "")));
    CHECK(!(ghost::key_hash(ac) == ghost::key_hash(account("did:plc:a", "2026-01-01T00:00:00Z", false, ""))));
    CHECK(!(ghost::key_hash(ac) == ghost::key_hash(account("did:plc:a", "2026-01-01T00:00:00Z", true, "deactivated"))));
    CHECK(!(ghost::key_hash(ac) == ghost::key_hash(account("did:plc:a", "2026-01-01T00:00:01Z", true, ""))));
    Key id = ac;
    id.type = "identity";
    CHECK(!(ghost::key_hash(ac) == ghost::key_hash(id)));
}
