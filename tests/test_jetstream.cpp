// test_jetstream.cpp — `frame-cat --to jetstream`'s conversion against production Jetstream:
// the 150 relay-capture events as Jetstream v1 served them (relay-capture/jetstream-v1.jsonl)
// must come out field for field and byte for byte, except `time_us` (Jetstream's own clock).
#include <catch2/catch.hpp>

#include "sovereign/capture.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/dag_json.h"
#include "sovereign/jetstream.h"
#include "sovereign/multibase.h"
#include "sovereign/varint.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using nlohmann::json;

// Identity of one Jetstream line: every event of the capture has a distinct one.
std::string key_of(const json& j) {
    std::string k = j.at("did").get<std::string>() + " " + j.at("kind").get<std::string>();
    if (j.contains("commit")) {
        const json& c = j["commit"];
        k += " " + c.at("rev").get<std::string>() + " " + c.at("operation").get<std::string>() + " " +
             c.at("collection").get<std::string>() + "/" + c.at("rkey").get<std::string>();
    }
    return k;
}

// The line with `time_us` set to 0, re-serialised in its own key order.
std::string without_time(std::string line) {
    json j = json::parse(line);
    j["time_us"] = 0;
    return j.dump();
}

}  // namespace

TEST_CASE("jetstream: the capture's 150 messages equal production Jetstream's 152 lines") {
    std::string frames = testutil::corpus_path("relay-capture/frames.u32le.zst");
    std::string expected_path = testutil::corpus_path("relay-capture/jetstream-v1.jsonl");
    if (frames.empty() || expected_path.empty()) return;

    std::vector<std::vector<std::uint8_t>> messages;
    std::string err;
    REQUIRE(sov::capture::load(frames, messages, err));
    REQUIRE(messages.size() == 150);

    std::string out;
    std::size_t lines = 0;
    for (auto& m : messages) {
        auto r = sov::jetstream::append_lines(m, 1783175888000000, out);
        REQUIRE(r.errc == sov::Errc::ok);
        lines += r.lines;
    }
    CHECK(lines == 152);

    std::map<std::string, std::string> ours;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) ours[key_of(json::parse(line))] = line;
    REQUIRE(ours.size() == 152);

    std::ifstream expected(expected_path);
    std::size_t compared = 0;
    for (std::string line; std::getline(expected, line);) {
        if (line.empty()) continue;
        json want = json::parse(line);
        auto it = ours.find(key_of(want));
        INFO(line);
        REQUIRE(it != ours.end());
        json got = json::parse(it->second);
        got["time_us"] = want["time_us"];
        CHECK(got == want);                                      // field for field
        CHECK(without_time(it->second) == without_time(line));  // and in the same key order
        ++compared;
    }
    CHECK(compared == 152);
}

namespace {

// The wire bytes of header + payload given as atproto JSON.
std::vector<std::uint8_t> wire_of(const std::string& type, const json& payload) {
    std::vector<std::uint8_t> out;
    sov::cbor::Writer w(out);
    std::string where;
    REQUIRE(sov::dag_json::encode(json{{"op", 1}, {"t", type}}, w, where) == sov::Errc::ok);
    REQUIRE(sov::dag_json::encode(payload, w, where) == sov::Errc::ok);
    return out;
}

std::vector<std::uint8_t> cbor_of(const json& j) {
    std::vector<std::uint8_t> out;
    sov::cbor::Writer w(out);
    std::string where;
    REQUIRE(sov::dag_json::encode(j, w, where) == sov::Errc::ok);
    return out;
}

// CAR v1 of `blocks` (dag-cbor CIDs), rooted at the first.
std::string car_base64(const std::vector<std::vector<std::uint8_t>>& blocks) {
    std::vector<std::uint8_t> header, car;
    sov::cbor::Writer w(header);
    w.map(2);
    w.text("roots");
    w.array(1);
    w.link(sov::cid::compute(0x71, blocks.at(0)).bytes());
    w.text("version");
    w.uint(1);
    sov::varint::append(header.size(), car);
    car.insert(car.end(), header.begin(), header.end());
    for (auto& b : blocks) {
        sov::cid::Cid c = sov::cid::compute(0x71, b);
        sov::varint::append(c.size() + b.size(), car);
        car.insert(car.end(), c.bytes().begin(), c.bytes().end());
        car.insert(car.end(), b.begin(), b.end());
    }
    std::string out;
    sov::multibase::base64_encode(car, out);
    return out;
}

json commit_payload(const std::vector<std::vector<std::uint8_t>>& blocks, const json& ops) {
    return {{"seq", 9}, {"rebase", false}, {"tooBig", false}, {"repo", "did:plc:wq4aajammjtxdomz3e23667t"},
            {"commit", {{"$link", sov::cid::to_string(sov::cid::compute(0x71, blocks.at(0)))}}},
            {"rev", "3mptbypluud2a"}, {"since", nullptr}, {"blocks", {{"$bytes", car_base64(blocks)}}},
            {"ops", ops}, {"blobs", json::array()}, {"time", "2026-07-04T14:38:08.999Z"}};
}

}  // namespace

TEST_CASE("jetstream: keys sorted bytewise, blobs in Jetstream's order, bytes and links in the data model's form") {
    auto commit = cbor_of({{"did", "did:plc:wq4aajammjtxdomz3e23667t"}, {"version", 3}, {"rev", "3mptbypluud2a"},
                           {"prev", nullptr}, {"data", {{"$link", "bafyreiguce4jh7kcbmof3pmcvasifqtw24b6isakj5ve5ga2b4z4alpc4i"}}},
                           {"sig", {{"$bytes", "AAAA"}}}});
    // DAG-CBOR orders these keys by length first (text, "$type", "Zebra", "zz", …); Jetstream
    // sorts them bytewise, so "$type" < "Zebra" < "blob" < "data" < "text" < "zz".
    auto record = cbor_of({{"$type", "app.test.thing"}, {"text", "hi"}, {"zz", 1}, {"Zebra", true},
                           {"data", {{"$bytes", "AQID"}}},
                           {"blob", {{"$type", "blob"}, {"size", 5}, {"mimeType", "image/png"},
                                     {"ref", {{"$link", "bafkreias7oxbr6swsuggccmtnqpoeami4jza5x4w3urltn6gzhqf4k6k2e"}}}}}});
    std::string record_cid = sov::cid::to_string(sov::cid::compute(0x71, record));
    json ops = json::array({{{"action", "create"}, {"path", "app.test.thing/3mptbyplj5d2a"}, {"cid", {{"$link", record_cid}}}},
                            {{"action", "delete"}, {"path", "app.test.thing/3mptbyplj5d2b"}, {"cid", nullptr},
                             {"prev", {{"$link", record_cid}}}}});
    std::string out;
    auto r = sov::jetstream::append_lines(wire_of("#commit", commit_payload({commit, record}, ops)), 7, out);
    REQUIRE(r.errc == sov::Errc::ok);
    CHECK(r.lines == 2);
    CHECK(out ==
          "{\"did\":\"did:plc:wq4aajammjtxdomz3e23667t\",\"time_us\":7,\"kind\":\"commit\",\"commit\":{\"rev\":"
          "\"3mptbypluud2a\",\"operation\":\"create\",\"collection\":\"app.test.thing\",\"rkey\":\"3mptbyplj5d2a\","
          "\"record\":{\"$type\":\"app.test.thing\",\"Zebra\":true,\"blob\":{\"$type\":\"blob\",\"ref\":{\"$link\":"
          "\"bafkreias7oxbr6swsuggccmtnqpoeami4jza5x4w3urltn6gzhqf4k6k2e\"},\"mimeType\":\"image/png\",\"size\":5},"
          "\"data\":{\"$bytes\":\"AQID\"},\"text\":\"hi\",\"zz\":1},\"cid\":\"" + record_cid + "\"}}\n"
          "{\"did\":\"did:plc:wq4aajammjtxdomz3e23667t\",\"time_us\":7,\"kind\":\"commit\",\"commit\":{\"rev\":"
          "\"3mptbypluud2a\",\"operation\":\"delete\",\"collection\":\"app.test.thing\",\"rkey\":\"3mptbyplj5d2b\"}}\n");

    SECTION("a record block missing from the CAR is an error, and nothing is appended") {
        std::string none;
        auto e = sov::jetstream::append_lines(wire_of("#commit", commit_payload({commit}, ops)), 7, none);
        CHECK(e.errc == sov::Errc::car_block_missing);
        CHECK(none.empty());
    }
    SECTION("a block that does not hash to its CID is an error") {
        // A record with one letter changed, spliced into the CAR under the original CID.
        std::vector<std::uint8_t> bad = cbor_of({{"$type", "app.test.thing"}, {"text", "hj"}, {"zz", 1}, {"Zebra", true},
                                                 {"data", {{"$bytes", "AQID"}}},
                                                 {"blob", {{"$type", "blob"}, {"size", 5}, {"mimeType", "image/png"},
                                                           {"ref", {{"$link", "bafkreias7oxbr6swsuggccmtnqpoeami4jza5x4w3urltn6gzhqf4k6k2e"}}}}}});
        std::string b64 = car_base64({commit, record});
        std::string b64_bad = car_base64({commit, bad});
        REQUIRE(b64.size() == b64_bad.size());
        json p = commit_payload({commit, record}, ops);
        std::vector<std::uint8_t> car_bytes, bad_bytes;
        REQUIRE(sov::multibase::base64_decode(b64, car_bytes) == sov::Errc::ok);
        REQUIRE(sov::multibase::base64_decode(b64_bad, bad_bytes) == sov::Errc::ok);
        std::copy(bad_bytes.end() - std::ptrdiff_t(bad.size()), bad_bytes.end(), car_bytes.end() - std::ptrdiff_t(record.size()));
        std::string tampered;
        sov::multibase::base64_encode(car_bytes, tampered);
        p["blocks"] = {{"$bytes", tampered}};
        std::string none;
        auto e = sov::jetstream::append_lines(wire_of("#commit", p), 7, none);
        CHECK(e.errc == sov::Errc::car_hash_mismatch);
        CHECK(none.empty());
    }
}

TEST_CASE("jetstream: identity with a handle, account with a status, and messages Jetstream does not carry") {
    auto wire = wire_of;
    std::string out;
    auto r = sov::jetstream::append_lines(
        wire("#identity", {{"seq", 7}, {"did", "did:plc:wq4aajammjtxdomz3e23667t"}, {"time", "2026-07-04T14:38:07.877Z"},
                           {"handle", "alice.test"}}),
        42, out);
    CHECK(r.errc == sov::Errc::ok);
    CHECK(out ==
          "{\"did\":\"did:plc:wq4aajammjtxdomz3e23667t\",\"time_us\":42,\"kind\":\"identity\",\"identity\":{\"did\":"
          "\"did:plc:wq4aajammjtxdomz3e23667t\",\"handle\":\"alice.test\",\"seq\":7,\"time\":\"2026-07-04T14:38:07.877Z\"}}\n");
    out.clear();
    r = sov::jetstream::append_lines(wire("#account", {{"seq", 8}, {"did", "did:plc:wq4aajammjtxdomz3e23667t"},
                                                      {"time", "2026-07-04T14:38:07.877Z"}, {"active", false},
                                                      {"status", "deactivated"}}),
                                     43, out);
    CHECK(r.errc == sov::Errc::ok);
    CHECK(out ==
          "{\"did\":\"did:plc:wq4aajammjtxdomz3e23667t\",\"time_us\":43,\"kind\":\"account\",\"account\":{\"active\":false,"
          "\"did\":\"did:plc:wq4aajammjtxdomz3e23667t\",\"seq\":8,\"status\":\"deactivated\",\"time\":"
          "\"2026-07-04T14:38:07.877Z\"}}\n");
    out.clear();
    r = sov::jetstream::append_lines(wire("#info", {{"name", "OutdatedCursor"}}), 44, out);
    CHECK(r.errc == sov::Errc::ok);
    CHECK(r.lines == 0);
    CHECK(out.empty());
    r = sov::jetstream::append_lines(sov::ByteView(), 44, out);
    CHECK(r.errc != sov::Errc::ok);
    CHECK(out.empty());
}
