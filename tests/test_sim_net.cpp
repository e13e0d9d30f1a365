// The pure logic of the simulated PDSes and relay (sovereign/sim_net.h): seq splicing, the
// replay window and both cursor rules, slow-consumer detection, the relay's merge and drops,
// and the ground-truth records.
#include "sovereign/cbor.h"
#include "sovereign/frame_stream.h"
#include "sovereign/sim.h"
#include "sovereign/sim_net.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace sov;

namespace {

ByteView bv(const std::string& s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

std::int64_t seq_of(const std::string& wire) {
    sim::WireFacts f;
    REQUIRE(sim::inspect(bv(wire), f));
    return f.seq;
}

// A few real generator messages.
std::vector<std::vector<std::uint8_t>> generated(std::size_t n) {
    sim::Options o;
    o.accounts = 20;
    o.seed = 7;
    sim::Generator g(o);
    std::vector<std::vector<std::uint8_t>> out(n);
    std::int64_t recv;
    for (auto& w : out) REQUIRE(g.next(w, recv) == Errc::ok);
    return out;
}

sim::LoggedEvent ev(std::uint64_t seq) { return {seq, 0, std::make_shared<const std::string>(std::to_string(seq))}; }

}  // namespace

TEST_CASE("resequence replaces only the seq", "[sim_net]") {
    auto msgs = generated(60);
    std::vector<std::uint8_t> out;
    for (const auto& w : msgs) {
        sim::WireFacts before, after;
        REQUIRE(sim::inspect(w, before));
        for (std::uint64_t seq : {std::uint64_t(1), std::uint64_t(300), std::uint64_t(1) << 40}) {
            REQUIRE(sim::resequence(w, seq, out));
            REQUIRE(sim::inspect(out, after));
            CHECK(after.seq == std::int64_t(seq));
            CHECK(after.type == before.type);
            CHECK(after.did == before.did);
            CHECK(after.rev == before.rev);
            std::size_t hlen = 0;
            REQUIRE(!cbor::validate_prefix(out, hlen));
            CHECK(!cbor::validate(ByteView(out).subspan(hlen)));
        }
    }
    std::vector<std::uint8_t> back;
    REQUIRE(sim::resequence(msgs[0], 999, out));
    sim::WireFacts f;
    REQUIRE(sim::inspect(msgs[0], f));
    REQUIRE(sim::resequence(out, std::uint64_t(f.seq), back));
    CHECK(back == msgs[0]);
    const std::vector<std::uint8_t> junk = {0xa1, 0x62, 0x6f, 0x70, 0x01, 0xa0};  // {op:1} {}
    CHECK(!sim::resequence(junk, 5, out));
    CHECK(out.empty());
}

TEST_CASE("error and info frames", "[sim_net]") {
    std::string e = sim::error_frame("FutureCursor", "Cursor in the future.");
    sim::WireFacts f;
    REQUIRE(sim::inspect(bv(e), f));
    CHECK(f.type.empty());
    CHECK(std::string(e.substr(0, 5)) == std::string("\xa1\x62op\x20", 5));
    std::string i = sim::info_frame("OutdatedCursor", "");
    REQUIRE(sim::inspect(bv(i), f));
    CHECK(f.type == "#info");
}

TEST_CASE("EventLog window and the cursor rules", "[sim_net]") {
    using K = sim::StartPlan::Kind;
    sim::EventLog log(3);
    CHECK(sim::plan_start(log, std::nullopt, sim::CursorRule::pds).kind == K::live);
    CHECK(sim::plan_start(log, 0, sim::CursorRule::pds).kind == K::replay);
    CHECK(sim::plan_start(log, 1, sim::CursorRule::pds).kind == K::future);
    CHECK(sim::plan_start(log, 1, sim::CursorRule::relay).kind == K::live);
    for (std::uint64_t s = 1; s <= 5; ++s) log.append(ev(s));  // keeps 3, 4, 5
    CHECK(log.begin() == 2);
    CHECK(log.end() == 5);
    CHECK(log.evicted_seq() == 2);
    CHECK(log.at(1) == nullptr);
    CHECK(log.at(2)->seq == 3);
    // Inside the window: the events after the cursor.
    auto p = sim::plan_start(log, 3, sim::CursorRule::pds);
    CHECK(p.kind == K::replay);
    CHECK(log.at(p.pos)->seq == 4);
    // Exactly at the last evicted seq: nothing missing, no OutdatedCursor.
    p = sim::plan_start(log, 2, sim::CursorRule::pds);
    CHECK(p.kind == K::replay);
    CHECK(log.at(p.pos)->seq == 3);
    // Before the window: OutdatedCursor from the oldest (PDS), silently from the oldest (relay).
    CHECK(sim::plan_start(log, 1, sim::CursorRule::pds).kind == K::outdated);
    CHECK(sim::plan_start(log, 0, sim::CursorRule::pds).kind == K::outdated);
    p = sim::plan_start(log, 0, sim::CursorRule::relay);
    CHECK(p.kind == K::replay);
    CHECK(p.pos == log.begin());
    CHECK(sim::plan_start(log, 5, sim::CursorRule::pds).kind == K::replay);
    CHECK(sim::plan_start(log, 5, sim::CursorRule::pds).pos == log.end());
    CHECK(sim::plan_start(log, 6, sim::CursorRule::pds).kind == K::future);
    CHECK(sim::plan_start(log, 6, sim::CursorRule::relay).kind == K::live);
    // Seq gaps: after() finds the first seq above the cursor.
    log.append(ev(9));
    CHECK(log.at(log.after(6))->seq == 9);
    log.clear();
    CHECK(log.head_seq() == 0);
    CHECK(log.evicted_seq() == 0);
    CHECK(log.begin() == log.end());
}

namespace {

struct Truth {
    std::vector<std::uint8_t> bytes;
    sim::Network::Sink sink() {
        return [this](const sim::TruthRecord& r) { REQUIRE(sim::append_truth(bytes, r)); };
    }
    // src → messages (as bytes), parsed back from the frame records.
    std::map<std::string, std::vector<std::string>> by_src() const {
        std::map<std::string, std::vector<std::string>> out;
        std::size_t off = 0;
        while (off < bytes.size()) {
            std::uint64_t n = 0;
            int shift = 0;
            while (bytes[off] & 0x80) n |= std::uint64_t(bytes[off++] & 0x7f) << shift, shift += 7;
            n |= std::uint64_t(bytes[off++]) << shift;
            ByteView raw(bytes.data() + off, n);
            frames::Envelope e;
            REQUIRE(!frames::parse_envelope(raw, e));
            out[std::string(e.src)].emplace_back(reinterpret_cast<const char*>(e.wire.data()), e.wire.size());
            off += n;
        }
        return out;
    }
};

std::vector<std::string> drain(sim::Network& net, sim::Network::Subscription& s, sim::SubStep::Kind* last = nullptr) {
    std::vector<std::string> got;
    for (int i = 0; i < 100000; ++i) {
        sim::SubStep st = net.step(s, true);
        if (st.kind != sim::SubStep::Kind::send) {
            if (last) *last = st.kind;
            break;
        }
        got.push_back(st.data);
    }
    return got;
}

}  // namespace

TEST_CASE("Network: per-PDS seqs, PDS cursor rules, relay merge, truth", "[sim_net]") {
    auto msgs = generated(40);
    Truth truth;
    sim::NetOptions o;
    o.pdses = 3;
    o.relay = true;
    o.pds_window = 5;
    o.relay_drop_hosts = {2};
    sim::Network net(o, truth.sink());
    std::vector<std::uint32_t> wake;
    for (std::size_t i = 0; i < msgs.size(); ++i) REQUIRE(net.emit(i % 3, msgs[i], 1000 + std::int64_t(i), wake) == Errc::ok);
    CHECK(std::set<std::uint32_t>(wake.begin(), wake.end()) == std::set<std::uint32_t>{0, 1, 2, 3});

    // PDS 0 emitted 14 events, seq 1..14; its window keeps 10..14.
    auto s = net.subscribe(0, 11);
    auto got = drain(net, *s);
    REQUIRE(got.size() == 3);
    CHECK(seq_of(got[0]) == 12);
    CHECK(seq_of(got[2]) == 14);
    // Outdated: #info first, then the whole window.
    s = net.subscribe(0, 3);
    got = drain(net, *s);
    REQUIRE(got.size() == 6);
    sim::WireFacts f;
    REQUIRE(sim::inspect(bv(got[0]), f));
    CHECK(f.type == "#info");
    CHECK(seq_of(got[1]) == 10);
    // Future: an error frame, then close 1008.
    s = net.subscribe(0, 15);
    sim::SubStep st = net.step(*s, true);
    REQUIRE(st.kind == sim::SubStep::Kind::send);
    REQUIRE(sim::inspect(bv(st.data), f));
    CHECK(f.type.empty());
    CHECK(st.data.find("FutureCursor") != std::string::npos);
    st = net.step(*s, true);
    CHECK(st.kind == sim::SubStep::Kind::close);
    CHECK(st.code == 1008);
    // Live: nothing until the next emission.
    s = net.subscribe(1, std::nullopt);
    CHECK(net.step(*s, true).kind == sim::SubStep::Kind::wait);
    REQUIRE(net.emit(1, msgs[0], 2000, wake) == Errc::ok);
    got = drain(net, *s);
    REQUIRE(got.size() == 1);
    CHECK(seq_of(got[0]) == 14);  // PDS 1 had emitted 13 (indexes 1, 4, …, 37)

    // The relay: from cursor 0, every event of PDS 0 and 1 (PDS 2 dropped), relay seq 1, 2, …
    auto r = net.subscribe(std::nullopt, 0);
    got = drain(net, *r);
    auto t = truth.by_src();
    REQUIRE(got.size() == t["relay.test"].size());
    CHECK(got == t["relay.test"]);
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(seq_of(got[i]) == std::int64_t(i + 1));
    CHECK(t["pds0.test"].size() == 14);
    CHECK(t["pds2.test"].size() == 13);
    CHECK(t["dropped.relay.test"].size() == 13);
    CHECK(t["dropped.relay.test"] == t["pds2.test"]);
    CHECK(got.size() == t["pds0.test"].size() + t["pds1.test"].size());
    // A future cursor on the relay goes live, no error.
    r = net.subscribe(std::nullopt, 1000);
    CHECK(net.step(*r, true).kind == sim::SubStep::Kind::wait);
    // listHosts hides the hosts that never emitted; pages by cursor.
    auto hosts = net.list_hosts("", 2);
    REQUIRE(hosts["hosts"].size() == 2);
    CHECK(hosts["hosts"][0]["hostname"] == "pds0.test");
    auto more = net.list_hosts(hosts["cursor"].get<std::string>(), 2);
    CHECK(more["hosts"].size() == 1);
    CHECK(!more.contains("cursor"));
    CHECK(net.host_index("pds2.test:8080") == 2u);
    CHECK(!net.host_index("pds3.test"));
    CHECK(!net.host_index("pds01.test"));
}

TEST_CASE("Network: ConsumerTooSlow (PDS: error frame; relay: cut), restarts, cuts, delay", "[sim_net]") {
    auto msgs = generated(30);
    sim::NetOptions o;
    o.pdses = 1;
    o.relay = true;
    o.too_slow = 10;
    o.relay_delay_ms = 5;
    sim::Network net(o);
    std::vector<std::uint32_t> wake;
    auto p = net.subscribe(0, std::nullopt);
    auto r = net.subscribe(std::nullopt, std::nullopt);
    for (std::size_t i = 0; i < 11; ++i) REQUIRE(net.emit(0, msgs[i], 1'000'000, wake) == Errc::ok);
    CHECK(net.delayed() == 11);
    net.advance(1'000'000 + 10'000'000, wake);  // every delay is over (≈ 5 ms mean)
    CHECK(net.delayed() == 0);
    // 11 > 10 buffered: the PDS says ConsumerTooSlow then closes; the relay cuts.
    CHECK(net.step(*p, false).kind == sim::SubStep::Kind::wait);  // noticed; the frame waits for the socket
    sim::SubStep st = net.step(*p, true);
    REQUIRE(st.kind == sim::SubStep::Kind::send);
    CHECK(st.data.find("ConsumerTooSlow") != std::string::npos);
    CHECK(net.step(*p, true).kind == sim::SubStep::Kind::close);
    CHECK(net.step(*r, false).kind == sim::SubStep::Kind::cut);
    // A reader that never takes the error frame is cut once the grace is over (0 here).
    sim::NetOptions og;
    og.too_slow = 2;
    og.too_slow_grace_ms = 0;
    sim::Network ng(og);
    auto g = ng.subscribe(0, std::nullopt);
    for (std::size_t i = 0; i < 3; ++i) REQUIRE(ng.emit(0, msgs[i], 1, wake) == Errc::ok);
    CHECK(ng.step(*g, false).kind == sim::SubStep::Kind::wait);  // noticed
    CHECK(ng.step(*g, false).kind == sim::SubStep::Kind::cut);   // still not writable: cut
    // A replay from cursor 0 is not "too slow" (only live events buffered since connect count).
    auto q = net.subscribe(0, 0);
    CHECK(drain(net, *q).size() == 11);

    // Restart: open subscriptions are cut, the log is gone, seqs start again at 1.
    sim::NetOptions o2;
    o2.pds_restart_every_s = 1;
    o2.cut_every_s = 0;
    sim::Network n2(o2);
    REQUIRE(n2.emit(0, msgs[0], 0, wake) == Errc::ok);
    n2.advance(1, wake);
    auto a = n2.subscribe(0, 0);
    n2.advance(2'000'000, wake);
    CHECK(n2.counters().restarts == 1);
    CHECK(n2.step(*a, true).kind == sim::SubStep::Kind::cut);
    auto b = n2.subscribe(0, 1);  // cursor 1 is now in the future
    CHECK(n2.step(*b, true).data.find("FutureCursor") != std::string::npos);
    REQUIRE(n2.emit(0, msgs[1], 2'000'001, wake) == Errc::ok);
    auto c = n2.subscribe(0, 0);
    auto got = drain(n2, *c);
    REQUIRE(got.size() == 1);
    CHECK(seq_of(got[0]) == 1);

    // Cuts: every subscription open at the cut is cut; later ones are not.
    sim::NetOptions o3;
    o3.cut_every_s = 1;
    sim::Network n3(o3);
    n3.advance(1, wake);
    auto x = n3.subscribe(0, std::nullopt);
    n3.advance(1'500'000, wake);
    CHECK(n3.step(*x, false).kind == sim::SubStep::Kind::cut);
    auto y = n3.subscribe(0, std::nullopt);
    CHECK(n3.step(*y, true).kind == sim::SubStep::Kind::wait);
}

TEST_CASE("Network: drops by share and collection, flaky hosts", "[sim_net]") {
    auto msgs = generated(200);
    Truth truth;
    sim::NetOptions o;
    o.pdses = 2;
    o.relay = true;
    o.relay_drop = 0.3;
    o.relay_drop_collections = {"app.bsky.feed.like"};
    o.accept_drop = 1;
    sim::Network net(o, truth.sink());
    std::vector<std::uint32_t> wake;
    for (std::size_t i = 0; i < msgs.size(); ++i) REQUIRE(net.emit(i % 2, msgs[i], std::int64_t(i), wake) == Errc::ok);
    auto t = truth.by_src();
    auto n = net.counters();
    CHECK(n.dropped == t["dropped.relay.test"].size());
    CHECK(n.relayed + n.dropped == 200);
    CHECK(n.dropped > 30);
    CHECK(n.relayed > 30);
    for (const auto& w : t["relay.test"]) {
        sim::WireFacts f;
        REQUIRE(sim::inspect(bv(w), f));
        for (const auto& c : f.collections) CHECK(c != "app.bsky.feed.like");
    }
    CHECK(net.flaky(0));
    auto s = net.subscribe(0, 0);
    CHECK(net.step(*s, true).kind == sim::SubStep::Kind::cut);
}
