// The taps' cursor rules (sovereign/net/tap.h): peeking at a wire message, dedupe by seq,
// non-increasing seqs, gap detection after (re)connecting.
#include "sovereign/cbor.h"
#include "sovereign/net/tap.h"

#include <catch2/catch.hpp>

using namespace sov;
using namespace sov::net;

namespace {

std::vector<std::uint8_t> message(std::string_view t, std::optional<std::int64_t> seq) {
    std::vector<std::uint8_t> out;
    cbor::Writer w(out);
    w.map(2);
    w.text("t"), w.text(t);
    w.text("op"), w.integer(1);
    w.map(seq ? 2 : 1);
    if (seq) w.text("seq"), w.integer(*seq);
    w.text("time"), w.text("2026-11-27T00:00:00.000Z");
    return out;
}

std::vector<std::uint8_t> info(std::string_view name) {
    std::vector<std::uint8_t> out;
    cbor::Writer w(out);
    w.map(2);
    w.text("t"), w.text("#info");
    w.text("op"), w.integer(1);
    w.map(1);
    w.text("name"), w.text(name);
    return out;
}

std::vector<std::uint8_t> error_frame(std::string_view error, std::string_view msg) {
    std::vector<std::uint8_t> out;
    cbor::Writer w(out);
    w.map(1);
    w.text("op"), w.integer(-1);
    w.map(2);
    w.text("error"), w.text(error);
    w.text("message"), w.text(msg);
    return out;
}

StreamHead head(const std::vector<std::uint8_t>& m) { return peek_stream_message(ByteView(m.data(), m.size())); }

}  // namespace

TEST_CASE("tap: peek reads type, seq, #info and error frames", "[net][tap]") {
    auto c = message("#commit", 42);
    StreamHead h = head(c);
    CHECK(h.ok);
    CHECK(h.op == 1);
    CHECK(h.t == "#commit");
    REQUIRE(h.seq);
    CHECK(*h.seq == 42);

    auto i = info("OutdatedCursor");
    h = head(i);
    CHECK(h.ok);
    CHECK(h.t == "#info");
    CHECK(h.name == "OutdatedCursor");
    CHECK_FALSE(h.seq);

    auto e = error_frame("FutureCursor", "Cursor in the future.");
    h = head(e);
    CHECK(h.ok);
    CHECK(h.op == -1);
    CHECK(h.name == "FutureCursor");
    CHECK(h.message == "Cursor in the future.");

    // Broken: truncated payload, trailing bytes, no op, not maps.
    auto t = c;
    t.pop_back();
    CHECK_FALSE(head(t).ok);
    t = c;
    t.push_back(0);
    CHECK_FALSE(head(t).ok);
    std::vector<std::uint8_t> one(c.begin(), c.begin() + 12);  // header only, cut
    CHECK_FALSE(head(one).ok);
    CHECK_FALSE(head({}).ok);
    std::vector<std::uint8_t> arr{0x80, 0xa0};
    CHECK_FALSE(head(arr).ok);
}

TEST_CASE("tap: live start writes everything in order, no gap", "[net][tap]") {
    SourceCursor c;
    c.on_connect();
    for (std::int64_t s : {100, 101, 105, 106}) {  // seqs may skip within a connection
        auto st = c.on_message(head(message("#commit", s)));
        CHECK(st.verdict == SourceCursor::Verdict::write);
        CHECK_FALSE(st.gap);
    }
    CHECK(*c.cursor() == 106);
    // #info and error frames are written and change nothing.
    CHECK(c.on_message(head(info("OutdatedCursor"))).verdict == SourceCursor::Verdict::write);
    CHECK(c.on_message(head(error_frame("ConsumerTooSlow", ""))).verdict == SourceCursor::Verdict::write);
    CHECK(*c.cursor() == 106);
}

TEST_CASE("tap: a replay after reconnecting drops what was written, exactly", "[net][tap]") {
    SourceCursor c(10);
    c.on_connect();
    // A server that replays from before the cursor (seq 8..12): 8..10 are duplicates.
    CHECK(c.on_message(head(message("#commit", 8))).verdict == SourceCursor::Verdict::duplicate);
    CHECK(c.on_message(head(message("#commit", 10))).verdict == SourceCursor::Verdict::duplicate);
    auto st = c.on_message(head(message("#identity", 11)));
    CHECK(st.verdict == SourceCursor::Verdict::write);
    CHECK_FALSE(st.gap);
    CHECK(*c.cursor() == 11);
}

TEST_CASE("tap: the first seq after connecting past cursor + 1 is a gap; later skips are not", "[net][tap]") {
    SourceCursor c(10);
    c.on_connect();
    auto st = c.on_message(head(message("#commit", 15)));
    CHECK(st.verdict == SourceCursor::Verdict::write);
    REQUIRE(st.gap);
    CHECK(st.gap->from == 11);
    CHECK(st.gap->to == 14);
    st = c.on_message(head(message("#commit", 20)));
    CHECK_FALSE(st.gap);
    // Reconnect: checked again.
    c.on_connect();
    st = c.on_message(head(message("#commit", 22)));
    REQUIRE(st.gap);
    CHECK(st.gap->from == 21);
    CHECK(st.gap->to == 21);
}

TEST_CASE("tap: a seq that does not increase within a connection asks for a reconnect", "[net][tap]") {
    SourceCursor c;
    c.on_connect();
    CHECK(c.on_message(head(message("#commit", 5))).verdict == SourceCursor::Verdict::write);
    CHECK(c.on_message(head(message("#commit", 5))).verdict == SourceCursor::Verdict::non_increasing);
    CHECK(c.on_message(head(message("#commit", 3))).verdict == SourceCursor::Verdict::non_increasing);
    CHECK(*c.cursor() == 5);
    // After reconnecting, the replay of 5 is a duplicate and 6 continues without a gap.
    c.on_connect();
    CHECK(c.on_message(head(message("#commit", 5))).verdict == SourceCursor::Verdict::duplicate);
    auto st = c.on_message(head(message("#commit", 6)));
    CHECK(st.verdict == SourceCursor::Verdict::write);
    CHECK_FALSE(st.gap);
}

TEST_CASE("tap: reset forgets the cursor: the next connection is a live start (mesh-tap --future-cursor live)", "[net][tap]") {
    SourceCursor c(500);
    c.on_connect();
    CHECK(c.on_message(head(message("#commit", 501))).verdict == SourceCursor::Verdict::write);
    c.reset();
    CHECK_FALSE(c.cursor());
    c.on_connect();
    // The restarted host's seqs start again low: written, no gap, no duplicate.
    auto st = c.on_message(head(message("#commit", 3)));
    CHECK(st.verdict == SourceCursor::Verdict::write);
    CHECK_FALSE(st.gap);
    CHECK(*c.cursor() == 3);
    CHECK(c.on_message(head(message("#commit", 4))).verdict == SourceCursor::Verdict::write);
    // Without the reset the same seqs would have been dropped as duplicates.
    SourceCursor kept(500);
    kept.on_connect();
    CHECK(kept.on_message(head(message("#commit", 3))).verdict == SourceCursor::Verdict::duplicate);
}
