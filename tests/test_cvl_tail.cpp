// Following a live archive (sovereign/cvl_tail.h): a Tail reads what a Writer appends, from
// the journal and, after seals and journal rotations, from the segments, byte-identical and
// in order; a crash and recovery of the writer; the Feed's rules (markers and seq-less frames
// never sent, tombstones applied at send time, seq = ordinal + 1 with only that field
// re-encoded, or the source's own seq), the subscriber filters, the cursor rules of
// find_start in both modes, damage reported with the file named, and the change notification.
#include "sovereign/cvl_tail.h"

#include "sovereign/bitset.h"
#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"
#include "sovereign/sim.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using sov::ByteView;
using sov::Errc;
using namespace sov::cvl;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "sov-tail-XXXXXX").string();
        if (::mkdtemp(tmpl.data())) path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// Envelopes: signed messages from the simulator (seqs 1, 2, …), with a marker every 10th
// record and a seq-less #info frame at record 7.
struct Traffic {
    std::vector<std::vector<std::uint8_t>> env;
    std::vector<bool> marker, info;
    std::vector<std::int64_t> seq;  // −1 when none
    std::vector<std::string> did;
};

const Traffic& traffic() {
    static const Traffic t = [] {
        Traffic x;
        sov::sim::Options o;
        o.accounts = 20;
        o.seed = 5;
        o.repo_median = 8;
        o.repo_sigma = 0.5;
        sov::sim::Generator g(o);
        for (int i = 0; i < 600; ++i) {
            std::vector<std::uint8_t> rec;
            bool mark = i % 10 == 9, info = i == 7;
            std::int64_t seq = -1;
            std::string did;
            if (mark) {
                sov::frames::Marker m;
                m.kind = "idle";
                m.since = 1'700'000'000'000'000;
                REQUIRE(sov::frames::append_marker(rec, "src.test", 1'700'000'000'000'000 + i, m));
            } else if (info) {
                const std::string w = sov::msg::info_frame("OutdatedCursor", "");
                sov::frames::append_record(rec, "src.test", std::nullopt, 1, sov::as_bytes(w));
            } else {
                std::vector<std::uint8_t> wire;
                std::int64_t recv = 0;
                REQUIRE(g.next(wire, recv) == Errc::ok);
                sov::msg::Message m;
                REQUIRE(!sov::msg::parse(wire, m));
                seq = m.seq;
                did = std::string(m.did);
                sov::frames::append_record(rec, "src.test", std::nullopt, recv, wire);
            }
            sov::frames::Envelope e;
            REQUIRE(!sov::frames::parse_record(rec, e));
            x.env.emplace_back(e.raw.begin(), e.raw.end());
            x.marker.push_back(mark);
            x.info.push_back(info);
            x.seq.push_back(seq);
            x.did.push_back(did);
        }
        return x;
    }();
    return t;
}

Params small() {
    Params p;
    p.shards = 2;
    p.segment_messages = 128;
    p.dict_bytes = 8192;
    return p;
}

void append(Writer& w, std::size_t from, std::size_t to) {
    const auto& t = traffic();
    for (std::size_t i = from; i < to; i += 13) {
        std::vector<ByteView> v;
        for (std::size_t j = i; j < std::min(to, i + 13); ++j) v.emplace_back(t.env[j]);
        std::string err;
        INFO(err);
        REQUIRE(w.append(v, err) == Errc::ok);
    }
}

std::unique_ptr<Writer> writer(const std::string& dir) {
    std::string err;
    auto w = Writer::open(dir, small(), 1, err);
    INFO(err);
    REQUIRE(w);
    return w;
}

std::unique_ptr<Tail> tail(const std::string& dir) {
    std::string err;
    auto t = Tail::open(dir, err);
    INFO(err);
    REQUIRE(t);
    return t;
}

// Reads with t.next from `ord` until nothing more; checks each envelope against the traffic.
std::uint64_t read_all(Tail& t, std::uint64_t ord) {
    const auto& tr = traffic();
    for (;;) {
        ByteView env;
        std::string err;
        std::uint64_t o = ord;
        Errc e = t.next(o, env, err);
        if (e == Errc::cvl_no_ordinal) {
            CHECK(o == ord);
            return ord;
        }
        INFO(err);
        REQUIRE(e == Errc::ok);
        REQUIRE(o == ord);
        REQUIRE(o < tr.env.size());
        CHECK(std::vector<std::uint8_t>(env.begin(), env.end()) == tr.env[o]);
        ord = o + 1;
    }
}

std::uint64_t head(Tail& t) {
    std::uint64_t h = 0;
    std::string err;
    INFO(err);
    REQUIRE(t.head(h, err) == Errc::ok);
    return h;
}

}  // namespace

TEST_CASE("a Tail follows a writer through the journal, seals, rotations and a crash", "[cvl][tail]") {
    TempDir d;
    const std::string dir = d.path.string() + "/arch";
    auto w = writer(dir);
    auto t = tail(dir);
    auto h = tail(dir);  // head() on its own Tail, as cvl-serve does
    CHECK(head(*h) == 0);
    CHECK(read_all(*t, 0) == 0);

    append(*w, 0, 50);  // journal only
    CHECK(head(*h) == 50);
    CHECK(read_all(*t, 0) == 50);

    append(*w, 50, 300);  // two seals (128 a segment), a new journal each time
    CHECK(head(*h) == 300);
    CHECK(read_all(*t, 50) == 300);
    {
        std::string err;
        auto fresh = Archive::open(dir, err);
        REQUIRE(fresh);
        CHECK(fresh->end_ordinal() >= 128);  // sealed segments were crossed, not only journals
    }

    // A second follower from the middle of a segment and from inside the journal.
    auto t2 = tail(dir);
    CHECK(read_all(*t2, 140) == 300);
    auto t3 = tail(dir);
    CHECK(read_all(*t3, 290) == 300);

    // The writer dies without sealing; a new one recovers the journal and goes on.
    w.reset();
    w = writer(dir);
    append(*w, 300, 420);
    CHECK(head(*h) == 420);
    CHECK(read_all(*t, 300) == 420);
    std::string err;
    REQUIRE(w->seal(err) == Errc::ok);
    CHECK(head(*h) == 420);
    CHECK(read_all(*t, 0) == 420);  // everything again, now from the segments
}

TEST_CASE("Feed: markers and seq-less frames never sent, tombstones at send time, seq renumbered", "[cvl][tail]") {
    TempDir d;
    const std::string dir = d.path.string() + "/arch";
    const auto& tr = traffic();
    auto w = writer(dir);
    append(*w, 0, 200);
    auto t = tail(dir);

    std::string err;
    auto tombs = sov::bitset::Set::open(dir + "/tomb", true, &err);
    REQUIRE(tombs);
    REQUIRE(tombs->set(5));

    SECTION("ordinal mode") {
        Feed f(*t, SeqMode::ordinal, 0);
        std::uint64_t n = 0;
        for (;;) {
            FeedItem it = f.next();
            if (it.kind == FeedItem::Kind::wait) break;
            REQUIRE(it.kind == FeedItem::Kind::message);
            CHECK(!tr.marker[it.ord]);
            CHECK(!tr.info[it.ord]);
            CHECK(it.ord != 5);
            if (it.ord == 20) REQUIRE(tombs->set(30));  // set while replaying: 30 not reached yet
            CHECK(it.ord != 30);
            CHECK(it.seq == std::int64_t(it.ord + 1));
            sov::msg::Message m;
            REQUIRE(!sov::msg::parse(it.wire, m));
            CHECK(m.seq == it.seq);
            // Only the seq differs: renumbering back gives the archived wire.
            sov::frames::Envelope e;
            REQUIRE(!sov::frames::parse_envelope(tr.env[it.ord], e));
            std::vector<std::uint8_t> back, copy(it.wire.begin(), it.wire.end());
            REQUIRE(sov::msg::resequence(copy, std::uint64_t(tr.seq[it.ord]), back));
            CHECK(back == std::vector<std::uint8_t>(e.wire.begin(), e.wire.end()));
            ++n;
        }
        CHECK(f.position() == 200);
        CHECK(f.hidden() == 2);
        CHECK(f.skipped() == 20 + 1);  // 20 markers, one #info
        CHECK(n == 200 - 20 - 1 - 2);
        // Live: more arrives, the feed goes on.
        append(*w, 200, 230);
        FeedItem it = f.next();
        REQUIRE(it.kind == FeedItem::Kind::message);
        CHECK(it.ord == 200);
    }
    SECTION("source mode: the wire byte for byte") {
        Feed f(*t, SeqMode::source, 0);
        for (FeedItem it = f.next(); it.kind == FeedItem::Kind::message; it = f.next()) {
            sov::frames::Envelope e;
            REQUIRE(!sov::frames::parse_envelope(tr.env[it.ord], e));
            CHECK(std::vector<std::uint8_t>(it.wire.begin(), it.wire.end()) ==
                  std::vector<std::uint8_t>(e.wire.begin(), e.wire.end()));
            CHECK(it.seq == tr.seq[it.ord]);
        }
    }
    SECTION("wantedDids and wantedCollections") {
        FeedFilter flt;
        flt.dids.insert(tr.did[0]);
        Feed f(*t, SeqMode::ordinal, 0, flt);
        std::uint64_t n = 0, want = 0;
        for (std::size_t i = 0; i < 200; ++i) want += tr.did[i] == tr.did[0] && i != 5;
        for (FeedItem it = f.next(); it.kind == FeedItem::Kind::message; it = f.next()) {
            CHECK(tr.did[it.ord] == tr.did[0]);
            ++n;
        }
        CHECK(n == want);
        CHECK(f.filtered() > 0);

        // A budget: a filter that passes over everything answers busy, not after the archive.
        FeedFilter nobody;
        nobody.dids.insert("did:plc:nobodynobodynobodynobody");
        Feed b(*t, SeqMode::ordinal, 0, nobody);
        FeedItem it = b.next(10);
        CHECK(it.kind == FeedItem::Kind::busy);
        CHECK(b.position() == 10);
        while ((it = b.next(10)).kind == FeedItem::Kind::busy) {
        }
        CHECK(it.kind == FeedItem::Kind::wait);
        CHECK(b.position() == 200);

        FeedFilter none;
        none.collections.insert("no.such.collection");
        Feed g(*t, SeqMode::ordinal, 0, none);
        for (FeedItem it = g.next(); it.kind == FeedItem::Kind::message; it = g.next()) {
            sov::msg::Message m;
            REQUIRE(!sov::msg::parse(it.wire, m));
            CHECK(m.type != sov::msg::Type::commit);  // other event types pass
        }
    }
}

TEST_CASE("find_start: the reference PDS's cursor rules in both seq modes", "[cvl][tail]") {
    TempDir d;
    const std::string dir = d.path.string() + "/arch";
    const auto& tr = traffic();
    auto w = writer(dir);
    append(*w, 0, 300);  // sealed segments and a journal
    auto t = tail(dir);
    StartPoint sp;
    std::string err;

    REQUIRE(find_start(*t, SeqMode::ordinal, std::nullopt, sp, err) == Errc::ok);
    CHECK((sp.ord == 300 && !sp.future && sp.head_seq == 300));
    REQUIRE(find_start(*t, SeqMode::ordinal, 17, sp, err) == Errc::ok);
    CHECK((sp.ord == 17 && !sp.future));
    REQUIRE(find_start(*t, SeqMode::ordinal, 300, sp, err) == Errc::ok);
    CHECK((sp.ord == 300 && !sp.future));
    REQUIRE(find_start(*t, SeqMode::ordinal, 301, sp, err) == Errc::ok);
    CHECK(sp.future);
    REQUIRE(find_start(*t, SeqMode::ordinal, -5, sp, err) == Errc::ok);
    CHECK((sp.ord == 0 && !sp.future));

    // Source mode: seq of ordinal k is tr.seq[k]; the start is the first ordinal with a
    // seq-bearing message whose seq > cursor, or just after the last one ≤ cursor.
    std::int64_t last = 0;
    for (std::size_t i = 0; i < 300; ++i) last = std::max(last, tr.seq[i]);
    REQUIRE(find_start(*t, SeqMode::source, std::nullopt, sp, err) == Errc::ok);
    CHECK((sp.ord == 300 && sp.head_seq == last));
    REQUIRE(find_start(*t, SeqMode::source, last + 1, sp, err) == Errc::ok);
    CHECK(sp.future);
    REQUIRE(find_start(*t, SeqMode::source, 0, sp, err) == Errc::ok);
    CHECK(sp.ord == 0);
    for (std::size_t k : {0, 1, 8, 50, 127, 128, 129, 200, 298}) {
        if (tr.seq[k] < 0) continue;
        REQUIRE(find_start(*t, SeqMode::source, tr.seq[k], sp, err) == Errc::ok);
        CHECK(!sp.future);
        CAPTURE(k, sp.ord);
        // Every seq-bearing ordinal before sp.ord has seq ≤ cursor, none after.
        for (std::size_t i = 0; i < 300; ++i)
            if (tr.seq[i] >= 0) CHECK((i < sp.ord) == (tr.seq[i] <= tr.seq[k]));
    }
}

TEST_CASE("a damaged cluster: the Feed reports it with the file, another feed elsewhere goes on", "[cvl][tail]") {
    TempDir d;
    const std::string dir = d.path.string() + "/arch";
    {
        auto w = writer(dir);
        append(*w, 0, 256);
        std::string err;
        REQUIRE(w->seal(err) == Errc::ok);
    }
    // Corrupt the middle of every data file of segment 0.
    for (auto& e : fs::recursive_directory_iterator(dir + "/shard"))
        if (e.path().filename().string().rfind("00000000-", 0) == 0) {
            std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(std::streamoff(fs::file_size(e.path()) / 2));
            f.put('\x5a').put('\x5a').put('\x5a');
        }
    auto t = tail(dir);
    Feed f(*t, SeqMode::ordinal, 0);
    FeedItem it;
    do it = f.next();
    while (it.kind == FeedItem::Kind::message);
    REQUIRE(it.kind == FeedItem::Kind::error);
    CHECK(it.err.find("shard/") != std::string::npos);
    CHECK(it.ord < 128);
    auto t2 = tail(dir);
    Feed g(*t2, SeqMode::ordinal, 128);
    std::uint64_t n = 0;
    for (it = g.next(); it.kind == FeedItem::Kind::message; it = g.next()) ++n;
    CHECK(it.kind == FeedItem::Kind::wait);
    CHECK(n > 0);
}

TEST_CASE("Watch: a writer's append wakes it, close() interrupts it", "[cvl][tail]") {
    TempDir d;
    const std::string dir = d.path.string() + "/arch";
    auto w = writer(dir);
    std::string err;
    auto watch = Watch::open(dir, err);
    INFO(err);
    REQUIRE(watch);
    CHECK_FALSE(watch->wait(20));  // nothing happened
    append(*w, 0, 5);
    CHECK(watch->wait(60'000));
    std::thread closer([&] { watch->close(); });
    CHECK_FALSE(watch->wait(600'000));  // returns at once after close(), not after 10 minutes
    closer.join();
}
