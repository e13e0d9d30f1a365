// Event-stream messages (docs/protocol.md §1): the real relay capture, and hand-built messages
// for every type, every required #commit field left out or mistyped, the size limits and
// the syntax checks.
#include "sovereign/capture.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/message.h"
#include "sovereign/syntax.h"

#include "test_util.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

using sov::ByteView;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;
namespace msg = sov::msg;

namespace {

ByteView view(const Bytes& b) { return {b.data(), b.size()}; }

// ---- tiny DAG-CBOR builders: each returns one encoded value --------------------------------

Bytes text(std::string_view s) {
    Bytes b;
    sov::cbor::Writer(b).text(s);
    return b;
}
Bytes integer(std::int64_t v) {
    Bytes b;
    sov::cbor::Writer(b).integer(v);
    return b;
}
Bytes boolean(bool v) {
    Bytes b;
    sov::cbor::Writer(b).boolean(v);
    return b;
}
Bytes null() { return Bytes{0xf6}; }
Bytes bytes(ByteView v) {
    Bytes b;
    sov::cbor::Writer(b).bytes(v);
    return b;
}
Bytes bytes_of_size(std::size_t n) { return bytes(view(Bytes(n, 0x33))); }
Bytes link(const sov::cid::Cid& c) {
    Bytes b;
    sov::cbor::Writer(b).link(c.bytes());
    return b;
}
Bytes array(const std::vector<Bytes>& items) {
    Bytes b;
    sov::cbor::Writer w(b);
    w.array(items.size());
    for (const auto& i : items) w.raw(view(i));
    return b;
}

// A map given as key → encoded value, written in canonical key order.
using Fields = std::vector<std::pair<std::string, Bytes>>;
Bytes map(Fields f) {
    std::sort(f.begin(), f.end(), [](const auto& a, const auto& b) { return sov::cbor::key_compare(a.first, b.first) < 0; });
    Bytes b;
    sov::cbor::Writer w(b);
    w.map(f.size());
    for (const auto& [k, v] : f) {
        w.text(k);
        w.raw(view(v));
    }
    return b;
}
Fields without(Fields f, std::string_view key) {
    f.erase(std::remove_if(f.begin(), f.end(), [&](const auto& e) { return e.first == key; }), f.end());
    return f;
}
Fields with(Fields f, std::string_view key, Bytes v) {
    f = without(std::move(f), key);
    f.emplace_back(std::string(key), std::move(v));
    return f;
}

Bytes header(std::string_view t) { return map({{"op", integer(1)}, {"t", text(t)}}); }
Bytes wire(const Bytes& h, const Bytes& payload) {
    Bytes w = h;
    w.insert(w.end(), payload.begin(), payload.end());
    return w;
}

const sov::cid::Cid kCommitCid = sov::cid::compute(0x71, sov::as_bytes("commit"));
const sov::cid::Cid kRecordCid = sov::cid::compute(0x71, sov::as_bytes("record"));
const sov::cid::Cid kPrevCid = sov::cid::compute(0x71, sov::as_bytes("prev"));
constexpr std::string_view kDid = "did:plc:wq4aajammjtxdomz3e23667t";
constexpr std::string_view kRev = "3mptbypluud2a";
constexpr std::string_view kSince = "3mptbwv4pn32u";
constexpr std::string_view kTime = "2026-07-04T14:38:07.517Z";
constexpr std::string_view kPath = "app.bsky.feed.like/3mptbyplj5d2a";

Bytes op(std::string_view action, std::string_view path, Bytes cid, std::optional<Bytes> prev = std::nullopt) {
    Fields f = {{"action", text(action)}, {"path", text(path)}, {"cid", std::move(cid)}};
    if (prev) f.emplace_back("prev", *prev);
    return map(f);
}

Fields commit_fields() {
    return {
        {"seq", integer(31527015322)},
        {"rebase", boolean(false)},
        {"tooBig", boolean(false)},
        {"repo", text(kDid)},
        {"commit", link(kCommitCid)},
        {"rev", text(kRev)},
        {"since", text(kSince)},
        {"blocks", bytes_of_size(100)},
        {"ops", array({op("create", kPath, link(kRecordCid))})},
        {"blobs", array({})},
        {"time", text(kTime)},
        {"prevData", link(kPrevCid)},
    };
}
Bytes commit_wire(const Fields& f) { return wire(header("#commit"), map(f)); }

// A parse result that owns its wire (the Message's views point into it; moving a vector
// keeps its buffer, so the views survive the return).
struct Parsed {
    Bytes wire;
    msg::Problem p;
    msg::Message m;
};
Parsed parse(Bytes w) {
    Parsed out;
    out.wire = std::move(w);
    out.p = msg::parse(view(out.wire), out.m);
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The real capture

TEST_CASE("msg::parse accepts every message of the relay capture", "[message][corpus]") {
    REQUIRE_CORPUS(corpus);
    std::vector<Bytes> msgs;
    std::string err;
    REQUIRE(sov::capture::load((corpus / "relay-capture" / "frames.u32le.zst").string(), msgs, err));
    REQUIRE(msgs.size() == 150);

    std::map<msg::Type, int> types;
    int creates = 0, updates = 0, deletes = 0, empty_commits = 0;
    std::int64_t expect_seq = 31527015322;
    msg::Message m;  // reused, as the tools do
    for (std::size_t i = 0; i < msgs.size(); ++i) {
        INFO("message " << i);
        ByteView w = view(msgs[i]);
        msg::Problem p = msg::parse(w, m);
        REQUIRE_FALSE(p);
        ++types[m.type];
        CHECK(m.op == 1);
        CHECK(m.header_raw.size() + m.payload_raw.size() == w.size());
        CHECK(m.header_raw.data() == w.data());
        CHECK(m.seq == expect_seq++);  // contiguous: 31527015322 … 31527015471
        CHECK(sov::syntax::is_did_plc(m.did));
        CHECK(sov::syntax::is_datetime(m.time));
        CHECK(m.time.rfind("2026-07-04T14:38:", 0) == 0);
        if (m.type == msg::Type::commit) {
            CHECK(m.t == "#commit");
            CHECK(sov::syntax::is_tid(m.rev));
            CHECK(m.since.has_value());
            if (m.since) CHECK(*m.since < m.rev);
            CHECK(m.commit.size() == sov::cid::kBlessedLen);
            CHECK(sov::cid::is_blessed(m.commit));
            CHECK(m.prev_data.size() == sov::cid::kBlessedLen);  // Sync 1.1
            CHECK_FALSE(m.blocks.empty());
            CHECK(m.blocks.size() <= msg::kMaxCommitBlocks);
            CHECK(m.ops.size() <= msg::kMaxOps);
            CHECK_FALSE(m.rebase);
            CHECK_FALSE(m.too_big);
            if (m.ops.empty()) ++empty_commits;
            for (const auto& o : m.ops) {
                CHECK(sov::syntax::is_repo_path(o.path));
                switch (o.action) {
                case msg::OpAction::create:
                    ++creates;
                    CHECK_FALSE(o.cid.empty());
                    break;
                case msg::OpAction::update:
                    ++updates;
                    CHECK_FALSE(o.cid.empty());
                    CHECK_FALSE(o.prev.empty());
                    break;
                case msg::OpAction::del:
                    ++deletes;
                    CHECK(o.cid.empty());
                    CHECK_FALSE(o.prev.empty());
                    break;
                }
            }
        }
        if (m.type == msg::Type::identity) {
            CHECK(m.seq == 31527015470);
            CHECK(m.did == "did:plc:hqvhxrowqbemo5e4wjnj6zao");
            CHECK_FALSE(m.handle);
        }
        if (m.type == msg::Type::account) {
            CHECK(m.seq == 31527015471);
            CHECK(m.did == "did:plc:hqvhxrowqbemo5e4wjnj6zao");
            CHECK(m.active);
            CHECK_FALSE(m.status);
        }
    }
    CHECK(types[msg::Type::commit] == 148);
    CHECK(types[msg::Type::identity] == 1);
    CHECK(types[msg::Type::account] == 1);
    CHECK(types.size() == 3);
    // corpus manifest.json: 144 creates, 2 updates, 4 deletes
    CHECK(creates == 144);
    CHECK(updates == 2);
    CHECK(deletes == 4);
    CHECK(empty_commits == 0);  // 147 commits with one op, one with three
}

TEST_CASE("msg::parse of a real commit, cut or extended, is refused", "[message][corpus]") {
    REQUIRE_CORPUS(corpus);
    std::vector<Bytes> msgs;
    std::string err;
    REQUIRE(sov::capture::load((corpus / "relay-capture" / "frames.u32le.zst").string(), msgs, err));
    const Bytes& w = msgs.at(0);
    msg::Message m;
    REQUIRE_FALSE(msg::parse(view(w), m));
    const std::size_t hlen = m.header_raw.size();

    for (std::size_t cut : {std::size_t(1), std::size_t(100), w.size() / 2, w.size() - hlen - 1}) {
        INFO("cut " << cut);
        Bytes c(w.begin(), w.end() - std::ptrdiff_t(cut));
        msg::Problem p = msg::parse(view(c), m);
        CHECK(p.errc == Errc::truncated);
        CHECK(p.field == "payload");
        CHECK_FALSE(p.too_big);
    }
    Bytes header_only(w.begin(), w.begin() + std::ptrdiff_t(hlen));
    msg::Problem p = msg::parse(view(header_only), m);
    CHECK(p.errc == Errc::truncated);
    CHECK(p.field == "payload");
    CHECK(p.offset == hlen);

    Bytes extra = w;
    extra.push_back(0xa0);  // a third object
    p = msg::parse(view(extra), m);
    CHECK(p.errc == Errc::trailing_bytes);
    CHECK(p.field == "payload");
    CHECK(p.offset == w.size());
}

// ---------------------------------------------------------------------------------------------
// Hand-built messages

TEST_CASE("type names", "[message]") {
    CHECK(msg::type_from_header("#commit") == msg::Type::commit);
    CHECK(msg::type_from_header("#sync") == msg::Type::sync);
    CHECK(msg::type_from_header("#identity") == msg::Type::identity);
    CHECK(msg::type_from_header("#account") == msg::Type::account);
    CHECK(msg::type_from_header("#info") == msg::Type::info);
    CHECK(msg::type_from_header("#handle") == msg::Type::handle);
    CHECK(msg::type_from_header("#migrate") == msg::Type::migrate);
    CHECK(msg::type_from_header("#tombstone") == msg::Type::tombstone);
    CHECK(msg::type_from_header("commit") == msg::Type::unknown);
    CHECK(msg::type_from_header("#Commit") == msg::Type::unknown);
    CHECK(msg::type_from_header("") == msg::Type::unknown);
    CHECK(msg::to_string(msg::Type::commit) == "commit");
    CHECK(msg::to_string(msg::Type::error) == "error");
    CHECK(msg::to_string(msg::Type::tombstone) == "tombstone");
    CHECK(msg::to_string(msg::Type::unknown) == "unknown");
}

TEST_CASE("a hand-built #commit parses with every field", "[message]") {
    Fields f = commit_fields();
    f = with(f, "ops", array({op("create", kPath, link(kRecordCid)),
                              op("update", "app.bsky.actor.profile/self", link(kRecordCid), link(kPrevCid)),
                              op("delete", "app.bsky.feed.post/3mptbyplj5d2b", null(), link(kPrevCid))}));
    Parsed r = parse(commit_wire(f));
    REQUIRE_FALSE(r.p);
    const msg::Message& m = r.m;
    CHECK(m.type == msg::Type::commit);
    CHECK(m.t == "#commit");
    CHECK(m.seq == 31527015322);
    CHECK(m.did == kDid);
    CHECK(m.rev == kRev);
    REQUIRE(m.since);
    CHECK(*m.since == kSince);
    CHECK(kCommitCid == m.commit);
    CHECK(kPrevCid == m.prev_data);
    CHECK(m.blocks.size() == 100);
    CHECK(m.time == kTime);
    REQUIRE(m.ops.size() == 3);
    CHECK(m.ops[0].action == msg::OpAction::create);
    CHECK(m.ops[0].path == kPath);
    CHECK(kRecordCid == m.ops[0].cid);
    CHECK(m.ops[0].prev.empty());
    CHECK(m.ops[1].action == msg::OpAction::update);
    CHECK(kPrevCid == m.ops[1].prev);
    CHECK(m.ops[2].action == msg::OpAction::del);
    CHECK(m.ops[2].cid.empty());

    // Optional and nullable forms: since null, no prevData, no ops, legacy prev key,
    // deprecated flags true (parsed; policy is the verifier's), unknown fields.
    Fields g = with(without(commit_fields(), "prevData"), "since", null());
    g = with(g, "ops", array({}));
    g = with(g, "prev", null());
    g = with(g, "rebase", boolean(true));
    g = with(g, "unknownField", array({integer(1)}));
    g = with(g, "blobs", null());  // Go producers write null for an empty list
    Parsed r2 = parse(commit_wire(g));
    REQUIRE_FALSE(r2.p);
    CHECK_FALSE(r2.m.since);
    CHECK(r2.m.prev_data.empty());
    CHECK(r2.m.ops.empty());
    CHECK(r2.m.rebase);

    // Parsing into the same Message clears the previous ops.
    msg::Message reuse;
    REQUIRE_FALSE(msg::parse(view(commit_wire(f)), reuse));
    REQUIRE(reuse.ops.size() == 3);
    REQUIRE_FALSE(msg::parse(view(commit_wire(g)), reuse));
    CHECK(reuse.ops.empty());
    CHECK_FALSE(reuse.since);
}

TEST_CASE("#commit: each required field missing is a Problem naming it", "[message]") {
    for (const char* key : {"seq", "rebase", "tooBig", "repo", "commit", "rev", "since", "blocks", "ops", "blobs", "time"}) {
        INFO(key);
        Bytes w = commit_wire(without(commit_fields(), key));
        Parsed r = parse(w);
        CHECK(r.p.errc == Errc::cbor_missing_field);
        CHECK(r.p.field == key);
        CHECK_FALSE(r.p.too_big);
        CHECK(r.p.offset == header("#commit").size());  // the payload map
    }
}

TEST_CASE("#commit: each field of the wrong type is a Problem naming it", "[message]") {
    struct Case {
        const char* key;
        Bytes value;
    };
    const Case cases[] = {
        {"seq", text("1")},
        {"seq", integer(-5)},
        {"seq", null()},
        {"rebase", integer(0)},
        {"rebase", null()},
        {"tooBig", text("false")},
        {"repo", bytes(sov::as_bytes("did:plc:x"))},
        {"repo", link(kCommitCid)},
        {"commit", text(sov::cid::to_string(kCommitCid))},
        {"commit", bytes(kCommitCid.bytes())},
        {"commit", null()},
        {"rev", integer(1)},
        {"rev", null()},
        {"since", integer(1)},
        {"since", bytes(sov::as_bytes("3mptbwv4pn32u"))},
        {"blocks", text("car")},
        {"blocks", null()},
        {"ops", map({})},
        {"ops", null()},
        {"blobs", map({})},
        {"blobs", integer(0)},
        {"time", integer(1720103887)},
        {"prevData", text("bafy")},
        {"prevData", bytes(kPrevCid.bytes())},
    };
    for (const auto& c : cases) {
        Bytes w = commit_wire(with(commit_fields(), c.key, c.value));
        INFO(c.key << " = " << sov::cbor::Value::of(view(c.value)).size() << "-byte value " << int(c.value[0]));
        Parsed r = parse(w);
        CHECK(r.p.errc == Errc::cbor_wrong_type);
        CHECK(r.p.field == c.key);
        CHECK_FALSE(r.p.too_big);
        REQUIRE(r.p.offset + c.value.size() <= w.size());
        CHECK(Bytes(w.begin() + std::ptrdiff_t(r.p.offset), w.begin() + std::ptrdiff_t(r.p.offset + c.value.size())) ==
              c.value);  // the offset points at the value
    }
}

TEST_CASE("#commit: seq 0 is out of range", "[message]") {
    Parsed r = parse(commit_wire(with(commit_fields(), "seq", integer(0))));
    CHECK(r.p.errc == Errc::cbor_int_range);
    CHECK(r.p.field == "seq");
}

TEST_CASE("#commit: bad DID, TID, datetime, path and CID syntax", "[message]") {
    struct Case {
        const char* what;
        Fields f;
        Errc errc;
        std::string_view field;
    };
    auto ops_with = [](Bytes o) { return with(commit_fields(), "ops", array({std::move(o)})); };
    const std::vector<Case> cases = {
        {"repo not a DID", with(commit_fields(), "repo", text("wq4aajammjtxdomz3e23667t")), Errc::syntax_did, "repo"},
        {"repo upper-case method", with(commit_fields(), "repo", text("did:PLC:abc")), Errc::syntax_did, "repo"},
        {"repo empty", with(commit_fields(), "repo", text("")), Errc::syntax_did, "repo"},
        {"repo trailing colon", with(commit_fields(), "repo", text("did:plc:")), Errc::syntax_did, "repo"},
        {"rev too short", with(commit_fields(), "rev", text("3mptbypluud2")), Errc::syntax_tid, "rev"},
        {"rev bad first char", with(commit_fields(), "rev", text("zmptbypluud2a")), Errc::syntax_tid, "rev"},
        {"rev upper case", with(commit_fields(), "rev", text("3MPTBYPLUUD2A")), Errc::syntax_tid, "rev"},
        {"since not a TID", with(commit_fields(), "since", text("yesterday")), Errc::syntax_tid, "since"},
        {"time not a datetime", with(commit_fields(), "time", text("2026-07-04 14:38:07")), Errc::syntax_datetime, "time"},
        {"time without zone", with(commit_fields(), "time", text("2026-07-04T14:38:07.517")), Errc::syntax_datetime, "time"},
        {"time month 13", with(commit_fields(), "time", text("2026-13-04T14:38:07.517Z")), Errc::syntax_datetime, "time"},
        {"path without rkey", ops_with(op("create", "app.bsky.feed.like", link(kRecordCid))), Errc::syntax_path, "ops.path"},
        {"path with space", ops_with(op("create", "app.bsky.feed.like/a b", link(kRecordCid))), Errc::syntax_path, "ops.path"},
        {"path three segments", ops_with(op("create", "app.bsky.feed.like/a/b", link(kRecordCid))), Errc::syntax_path,
         "ops.path"},
        {"path collection not an NSID", ops_with(op("create", "like/3mptbyplj5d2a", link(kRecordCid))), Errc::syntax_path,
         "ops.path"},
        {"commit CID not dag-cbor/raw", with(commit_fields(), "commit", link(sov::cid::compute(0x70, sov::as_bytes("x")))),
         Errc::cid_bad_codec, "commit"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        Parsed r = parse(commit_wire(c.f));
        CHECK(r.p.errc == c.errc);
        CHECK(r.p.field == c.field);
        CHECK_FALSE(r.p.too_big);
    }
}

TEST_CASE("#commit: op action and cid must agree", "[message]") {
    auto parse_op = [](Bytes o) { return parse(commit_wire(with(commit_fields(), "ops", array({std::move(o)})))); };
    SECTION("consistent ops parse") {
        CHECK_FALSE(parse_op(op("create", kPath, link(kRecordCid))).p);
        CHECK_FALSE(parse_op(op("update", kPath, link(kRecordCid), link(kPrevCid))).p);
        CHECK_FALSE(parse_op(op("delete", kPath, null(), link(kPrevCid))).p);
        CHECK_FALSE(parse_op(op("delete", kPath, null())).p);  // legacy: no prev
    }
    SECTION("delete with a cid") {
        Parsed r = parse_op(op("delete", kPath, link(kRecordCid), link(kPrevCid)));
        CHECK(r.p.errc != Errc::ok);
        CHECK(r.p.field == "ops.cid");
    }
    SECTION("create with a null cid") {
        Parsed r = parse_op(op("create", kPath, null()));
        CHECK(r.p.errc != Errc::ok);
        CHECK(r.p.field == "ops.cid");
    }
    SECTION("update with a null cid") {
        Parsed r = parse_op(op("update", kPath, null(), link(kPrevCid)));
        CHECK(r.p.errc != Errc::ok);
        CHECK(r.p.field == "ops.cid");
    }
    SECTION("cid key absent") {
        Parsed r = parse_op(map({{"action", text("create")}, {"path", text(kPath)}}));
        CHECK(r.p.errc == Errc::cbor_missing_field);
        CHECK(r.p.field == "ops.cid");
    }
    SECTION("cid of the wrong type") {
        Parsed r = parse_op(op("create", kPath, text(sov::cid::to_string(kRecordCid))));
        CHECK(r.p.errc == Errc::cbor_wrong_type);
        CHECK(r.p.field == "ops.cid");
    }
    SECTION("unknown action") {
        Parsed r = parse_op(op("upsert", kPath, link(kRecordCid)));
        CHECK(r.p.errc != Errc::ok);
        CHECK(r.p.field == "ops.action");
    }
    SECTION("action, path missing or mistyped") {
        Parsed a = parse_op(map({{"path", text(kPath)}, {"cid", link(kRecordCid)}}));
        CHECK(a.p.errc == Errc::cbor_missing_field);
        CHECK(a.p.field.find("action") != std::string_view::npos);
        Parsed p = parse_op(map({{"action", text("create")}, {"cid", link(kRecordCid)}}));
        CHECK(p.p.errc == Errc::cbor_missing_field);
        CHECK(p.p.field.find("path") != std::string_view::npos);
        Parsed t = parse_op(map({{"action", integer(1)}, {"path", text(kPath)}, {"cid", link(kRecordCid)}}));
        CHECK(t.p.errc == Errc::cbor_wrong_type);
        CHECK(t.p.field.find("action") != std::string_view::npos);
        Parsed pv = parse_op(op("update", kPath, link(kRecordCid), text("bafy")));
        CHECK(pv.p.errc == Errc::cbor_wrong_type);
        CHECK(pv.p.field.find("prev") != std::string_view::npos);
    }
    SECTION("an op that is not a map") {
        Parsed r = parse(commit_wire(with(commit_fields(), "ops", array({text("create")}))));
        CHECK(r.p.errc == Errc::cbor_wrong_type);
        CHECK(r.p.field == "ops");
    }
}

TEST_CASE("size limits give too_big", "[message]") {
    SECTION("200 ops pass, 201 are too big") {
        std::vector<Bytes> ops(200, op("create", kPath, link(kRecordCid)));
        Parsed ok = parse(commit_wire(with(commit_fields(), "ops", array(ops))));
        CHECK_FALSE(ok.p);
        CHECK(ok.m.ops.size() == 200);
        ops.push_back(op("create", kPath, link(kRecordCid)));
        Parsed r = parse(commit_wire(with(commit_fields(), "ops", array(ops))));
        CHECK(r.p.too_big);
        CHECK(r.p.errc == Errc::too_large);
        CHECK(r.p.field == "ops");
    }
    SECTION("#commit blocks: 2,000,000 bytes pass, 2,000,001 are too big") {
        Parsed ok = parse(commit_wire(with(commit_fields(), "blocks", bytes_of_size(2'000'000))));
        CHECK_FALSE(ok.p);
        Parsed r = parse(commit_wire(with(commit_fields(), "blocks", bytes_of_size(2'000'001))));
        CHECK(r.p.too_big);
        CHECK(r.p.errc == Errc::too_large);
        CHECK(r.p.field == "blocks");
    }
    SECTION("#sync blocks: 10,000 bytes pass, 10,001 are too big") {
        Fields s = {{"seq", integer(9)}, {"did", text(kDid)}, {"rev", text(kRev)}, {"time", text(kTime)}};
        Parsed ok = parse(wire(header("#sync"), map(with(s, "blocks", bytes_of_size(10'000)))));
        CHECK_FALSE(ok.p);
        Parsed r = parse(wire(header("#sync"), map(with(s, "blocks", bytes_of_size(10'001)))));
        CHECK(r.p.too_big);
        CHECK(r.p.errc == Errc::too_large);
        CHECK(r.p.field == "blocks");
    }
    SECTION("a wire of 5,000,000 bytes passes, 5,000,001 is too big") {
        // An #identity with a large unknown field, sized to the byte.
        Bytes h = header("#identity");
        Fields base = {{"seq", integer(9)}, {"did", text(kDid)}, {"time", text(kTime)}};
        std::size_t small = wire(h, map(with(base, "pad", bytes_of_size(70'000)))).size() - 70'000;
        // Same head size (5 bytes) for every pad ≥ 65,536 bytes.
        std::size_t pad = 5'000'000 - small;
        Bytes w = wire(h, map(with(base, "pad", bytes_of_size(pad))));
        REQUIRE(w.size() == 5'000'000);
        CHECK_FALSE(parse(w).p);
        Bytes w2 = wire(h, map(with(base, "pad", bytes_of_size(pad + 1))));
        REQUIRE(w2.size() == 5'000'001);
        Parsed r = parse(w2);
        CHECK(r.p.too_big);
        CHECK(r.p.errc == Errc::too_large);
        // Even garbage is too big before it is malformed.
        Bytes junk(5'000'001, 0xff);
        Parsed j = parse(junk);
        CHECK(j.p.too_big);
    }
}

TEST_CASE("framing of the wire: one object, three objects, bad CBOR", "[message]") {
    Bytes payload = map(commit_fields());
    Bytes h = header("#commit");
    SECTION("one object only") {
        Parsed r = parse(h);
        CHECK(r.p.errc == Errc::truncated);
        CHECK(r.p.field == "payload");
        CHECK_FALSE(r.p.too_big);
    }
    SECTION("three objects") {
        Bytes w = wire(h, payload);
        std::size_t at = w.size();
        w.insert(w.end(), h.begin(), h.end());
        Parsed r = parse(w);
        CHECK(r.p.errc == Errc::trailing_bytes);
        CHECK(r.p.field == "payload");
        CHECK(r.p.offset == at);
        CHECK_FALSE(r.p.too_big);
    }
    SECTION("empty wire") {
        Parsed r = parse(Bytes{});
        CHECK(r.p.errc == Errc::truncated);
        CHECK(r.p.field == "header");
    }
    SECTION("header not canonical") {
        Bytes bad = {0xa2, 0x62, 0x6f, 0x70, 0x01, 0x61, 0x74, 0x67, '#', 'c', 'o', 'm', 'm', 'i', 't'};  // op before t
        Parsed r = parse(wire(bad, payload));
        CHECK(r.p.errc == Errc::cbor_key_order);
        CHECK(r.p.field == "header");
        CHECK(r.p.offset == 5);
    }
    SECTION("payload with a float") {
        Fields f = commit_fields();
        f.emplace_back("x", Bytes{0xfb, 0, 0, 0, 0, 0, 0, 0, 0});
        Parsed r = parse(commit_wire(f));
        CHECK(r.p.errc == Errc::cbor_float);
        CHECK(r.p.field == "payload");
        CHECK(r.p.offset > h.size());
    }
    SECTION("payload not a map") {
        Parsed r = parse(wire(h, array({})));
        CHECK(r.p.errc == Errc::cbor_wrong_type);
        CHECK(r.p.field == "payload");
    }
    SECTION("header not a map") {
        Parsed r = parse(wire(array({integer(1)}), payload));
        CHECK(r.p.errc == Errc::cbor_wrong_type);
        CHECK(r.p.field == "header");
    }
    SECTION("header without op") {
        Parsed r = parse(wire(map({{"t", text("#commit")}}), payload));
        CHECK(r.p.errc == Errc::cbor_missing_field);
        CHECK(r.p.field == "op");
    }
    SECTION("op of the wrong type") {
        Parsed r = parse(wire(map({{"op", text("1")}, {"t", text("#commit")}}), payload));
        CHECK(r.p.errc == Errc::cbor_wrong_type);
        CHECK(r.p.field == "op");
    }
    SECTION("op 1 without t") {
        Parsed r = parse(wire(map({{"op", integer(1)}}), payload));
        CHECK(r.p.errc == Errc::cbor_missing_field);
        CHECK(r.p.field == "t");
    }
    SECTION("t of the wrong type") {
        Parsed r = parse(wire(map({{"op", integer(1)}, {"t", integer(1)}}), payload));
        CHECK(r.p.errc == Errc::cbor_wrong_type);
        CHECK(r.p.field == "t");
    }
}

TEST_CASE("the other message types", "[message]") {
    SECTION("#sync") {
        Bytes w = wire(header("#sync"), map({{"seq", integer(77)},
                                             {"did", text(kDid)},
                                             {"blocks", bytes_of_size(300)},
                                             {"rev", text(kRev)},
                                             {"time", text(kTime)}}));
        Parsed r = parse(w);
        REQUIRE_FALSE(r.p);
        CHECK(r.m.type == msg::Type::sync);
        CHECK(r.m.seq == 77);
        CHECK(r.m.did == kDid);
        CHECK(r.m.rev == kRev);
        CHECK(r.m.blocks.size() == 300);
        CHECK(r.m.time == kTime);
        for (const char* key : {"seq", "did", "blocks", "rev", "time"}) {
            INFO("#sync without " << key);
            Fields f = {{"seq", integer(77)}, {"did", text(kDid)}, {"blocks", bytes_of_size(3)}, {"rev", text(kRev)},
                        {"time", text(kTime)}};
            Parsed m = parse(wire(header("#sync"), map(without(f, key))));
            CHECK(m.p.errc == Errc::cbor_missing_field);
            CHECK(m.p.field == key);
        }
        Parsed bad_rev = parse(wire(header("#sync"), map({{"seq", integer(77)}, {"did", text(kDid)},
                                                          {"blocks", bytes_of_size(3)}, {"rev", text("nope")},
                                                          {"time", text(kTime)}})));
        CHECK(bad_rev.p.errc == Errc::syntax_tid);
    }
    SECTION("#identity") {
        Fields f = {{"seq", integer(5)}, {"did", text("did:web:example.com")}, {"time", text(kTime)}};
        Parsed r = parse(wire(header("#identity"), map(f)));
        REQUIRE_FALSE(r.p);
        CHECK(r.m.type == msg::Type::identity);
        CHECK(r.m.did == "did:web:example.com");
        CHECK_FALSE(r.m.handle);
        Parsed h = parse(wire(header("#identity"), map(with(f, "handle", text("alice.bsky.social")))));
        REQUIRE_FALSE(h.p);
        REQUIRE(h.m.handle);
        CHECK(*h.m.handle == "alice.bsky.social");
        CHECK_FALSE(parse(wire(header("#identity"), map(with(f, "handle", text("handle.invalid"))))).p);
        Parsed bad = parse(wire(header("#identity"), map(with(f, "handle", text("not a handle")))));
        CHECK(bad.p.errc == Errc::syntax_handle);
        CHECK(bad.p.field == "handle");
        Parsed bad_did = parse(wire(header("#identity"), map(with(f, "did", text("alice")))));
        CHECK(bad_did.p.errc == Errc::syntax_did);
        CHECK(bad_did.p.field == "did");
        Parsed no_time = parse(wire(header("#identity"), map(without(f, "time"))));
        CHECK(no_time.p.errc == Errc::cbor_missing_field);
        CHECK(no_time.p.field == "time");
    }
    SECTION("#account") {
        Fields f = {{"seq", integer(5)}, {"did", text(kDid)}, {"time", text(kTime)}, {"active", boolean(false)},
                    {"status", text("deleted")}};
        Parsed r = parse(wire(header("#account"), map(f)));
        REQUIRE_FALSE(r.p);
        CHECK(r.m.type == msg::Type::account);
        CHECK_FALSE(r.m.active);
        REQUIRE(r.m.status);
        CHECK(*r.m.status == "deleted");
        Parsed no_active = parse(wire(header("#account"), map(without(f, "active"))));
        CHECK(no_active.p.errc == Errc::cbor_missing_field);
        CHECK(no_active.p.field == "active");
        Parsed bad_status = parse(wire(header("#account"), map(with(f, "status", integer(1)))));
        CHECK(bad_status.p.errc == Errc::cbor_wrong_type);
        CHECK(bad_status.p.field == "status");
        CHECK_FALSE(parse(wire(header("#account"), map(with(f, "status", text("someNewStatus"))))).p);
    }
    SECTION("#info") {
        Parsed r = parse(wire(header("#info"), map({{"name", text("OutdatedCursor")}, {"message", text("too old")}})));
        REQUIRE_FALSE(r.p);
        CHECK(r.m.type == msg::Type::info);
        CHECK(r.m.name == "OutdatedCursor");
        REQUIRE(r.m.message);
        CHECK(*r.m.message == "too old");
        CHECK(r.m.seq == 0);
        Parsed bare = parse(wire(header("#info"), map({{"name", text("OutdatedCursor")}})));
        REQUIRE_FALSE(bare.p);
        CHECK_FALSE(bare.m.message);
        Parsed no_name = parse(wire(header("#info"), map({{"message", text("x")}})));
        CHECK(no_name.p.errc == Errc::cbor_missing_field);
        CHECK(no_name.p.field == "name");
    }
    SECTION("error frames (op -1)") {
        Bytes eh = map({{"op", integer(-1)}});
        REQUIRE(eh == (Bytes{0xa1, 0x62, 0x6f, 0x70, 0x20}));  // docs/protocol.md §1, verified bytes
        Parsed r = parse(wire(eh, map({{"error", text("FutureCursor")}, {"message", text("cursor in the future")}})));
        REQUIRE_FALSE(r.p);
        CHECK(r.m.type == msg::Type::error);
        CHECK(r.m.op == -1);
        CHECK(r.m.t.empty());
        CHECK(r.m.name == "FutureCursor");
        REQUIRE(r.m.message);
        CHECK(*r.m.message == "cursor in the future");
        Parsed bare = parse(wire(eh, map({{"error", text("ConsumerTooSlow")}})));
        REQUIRE_FALSE(bare.p);
        CHECK(bare.m.name == "ConsumerTooSlow");
        Parsed no_error = parse(wire(eh, map({})));
        CHECK(no_error.p.errc == Errc::cbor_missing_field);
        CHECK(no_error.p.field == "error");
    }
    SECTION("deprecated #handle, #migrate, #tombstone") {
        Parsed h = parse(wire(header("#handle"),
                              map({{"seq", integer(1)}, {"did", text(kDid)}, {"handle", text("a.b.c")}, {"time", text(kTime)}})));
        REQUIRE_FALSE(h.p);
        CHECK(h.m.type == msg::Type::handle);
        REQUIRE(h.m.handle);
        CHECK(*h.m.handle == "a.b.c");
        Parsed hm = parse(wire(header("#handle"), map({{"seq", integer(1)}, {"did", text(kDid)}, {"time", text(kTime)}})));
        CHECK(hm.p.errc == Errc::cbor_missing_field);
        CHECK(hm.p.field == "handle");

        Parsed m = parse(wire(header("#migrate"), map({{"seq", integer(2)}, {"did", text(kDid)}, {"migrateTo", null()},
                                                       {"time", text(kTime)}})));
        REQUIRE_FALSE(m.p);
        CHECK(m.m.type == msg::Type::migrate);
        CHECK(m.m.seq == 2);
        CHECK_FALSE(parse(wire(header("#migrate"), map({{"seq", integer(2)}, {"did", text(kDid)},
                                                        {"migrateTo", text("https://pds.example.com")},
                                                        {"time", text(kTime)}})))
                        .p);

        Parsed t = parse(wire(header("#tombstone"), map({{"seq", integer(3)}, {"did", text(kDid)}, {"time", text(kTime)}})));
        REQUIRE_FALSE(t.p);
        CHECK(t.m.type == msg::Type::tombstone);
        CHECK(t.m.did == kDid);
        Parsed tm = parse(wire(header("#tombstone"), map({{"seq", integer(3)}, {"time", text(kTime)}})));
        CHECK(tm.p.errc == Errc::cbor_missing_field);
        CHECK(tm.p.field == "did");
    }
    SECTION("unknown t and unknown op are Type::unknown without a Problem") {
        Parsed t = parse(wire(header("#labels"), map({{"whatever", integer(1)}})));
        CHECK_FALSE(t.p);
        CHECK(t.m.type == msg::Type::unknown);
        CHECK(t.m.t == "#labels");
        Parsed t2 = parse(wire(header("#commit2"), map({})));
        CHECK_FALSE(t2.p);
        CHECK(t2.m.type == msg::Type::unknown);
        Parsed o = parse(wire(map({{"op", integer(2)}, {"t", text("#commit")}}), map({{"x", null()}})));
        CHECK_FALSE(o.p);
        CHECK(o.m.type == msg::Type::unknown);
        CHECK(o.m.op == 2);
        Parsed o2 = parse(wire(map({{"op", integer(-7)}}), map({})));
        CHECK_FALSE(o2.p);
        CHECK(o2.m.type == msg::Type::unknown);
        Parsed o0 = parse(wire(map({{"op", integer(0)}}), map({})));
        CHECK_FALSE(o0.p);
        CHECK(o0.m.type == msg::Type::unknown);
    }
}

TEST_CASE("regression: #migrate without its required migrateTo is refused", "[message]") {
    // docs/protocol.md §1 lists migrateTo as required (nullable) for #migrate, and message.h
    // promises every required field of the known types is checked; it once was not.
    Parsed m = parse(wire(header("#migrate"), map({{"seq", integer(2)}, {"did", text(kDid)}, {"time", text(kTime)}})));
    CHECK(m.p.errc == Errc::cbor_missing_field);
    CHECK(m.p.field == "migrateTo");
    Parsed w = parse(wire(header("#migrate"),
                          map({{"seq", integer(2)}, {"did", text(kDid)}, {"migrateTo", integer(5)}, {"time", text(kTime)}})));
    CHECK(w.p.errc == Errc::cbor_wrong_type);
    CHECK(w.p.field == "migrateTo");
}
