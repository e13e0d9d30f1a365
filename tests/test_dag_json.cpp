// Tests for sovereign/dag_json.h: the atproto JSON mapping of DAG-CBOR (docs/protocol.md §2).
// JSON → CBOR against the interop data-model vectors (valid, invalid, fixtures), CBOR → JSON →
// CBOR round trips (fixtures and every block of the corpus repositories), string escaping,
// $bytes / $link forms, key order, number rules and nesting.
#include <catch2/catch.hpp>

#include "test_util.h"

#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/dag_json.h"
#include "sovereign/multibase.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace cbor = sov::cbor;
namespace dj = sov::dag_json;
using json = nlohmann::json;
using sov::ByteView;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;

namespace {

using testutil::hex;
using testutil::to_hex;

struct Encoded {
    Errc errc;
    Bytes bytes;
    std::string where;
};

Encoded enc(const json& j, bool require_object = true) {
    Encoded e;
    cbor::Writer w(e.bytes);
    e.errc = dj::encode(j, w, e.where, require_object);
    return e;
}

Encoded enc_text(std::string_view text, bool require_object = true) { return enc(json::parse(text), require_object); }

std::string to_json(ByteView cbor_bytes) {
    std::string out;
    dj::append(cbor::Value::of(cbor_bytes), out);
    return out;
}

std::string jstr(std::string_view s) {
    std::string out;
    dj::append_string(s, out);
    return out;
}

json load_json(const std::filesystem::path& p) {
    auto bytes = testutil::read_file(p);
    return json::parse(bytes.begin(), bytes.end());
}

// CBOR → JSON → CBOR must give back the same bytes; the JSON must parse.
bool round_trips(ByteView b) {
    std::string text = to_json(b);
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        FAIL_CHECK("append() produced unparsable JSON: " << text.substr(0, 200));
        return false;
    }
    Encoded e = enc(j, false);
    if (e.errc != Errc::ok) {
        FAIL_CHECK("re-encoding failed: " << sov::to_string(e.errc) << " at " << e.where << " in " << text.substr(0, 200));
        return false;
    }
    if (e.bytes.size() != b.size() || !std::equal(e.bytes.begin(), e.bytes.end(), b.begin())) {
        FAIL_CHECK("CBOR → JSON → CBOR differs for " << text.substr(0, 200));
        return false;
    }
    return true;
}

}  // namespace

// ---------------------------------------------------------------- interop data-model vectors

TEST_CASE("data-model-valid.json: every case encodes", "[dag_json][corpus]") {
    REQUIRE_CORPUS(corpus);
    json cases = load_json(corpus / "interop/data-model/data-model-valid.json");
    REQUIRE(cases.is_array());
    REQUIRE(cases.size() >= 5);
    std::map<std::string, Bytes> by_note;
    for (const auto& c : cases) {
        std::string note = c.at("note").get<std::string>();
        INFO(note);
        Encoded e = enc(c.at("json"));
        CHECK(e.errc == Errc::ok);
        CHECK(!cbor::validate(e.bytes));
        CHECK(round_trips(e.bytes));
        by_note[note] = e.bytes;
    }
    // 123.0 is the integer 123: the record encodes exactly like the all-integer one.
    REQUIRE(by_note.count("trivial record"));
    REQUIRE(by_note.count("float, but integer-like"));
    CHECK(to_hex(by_note["float, but integer-like"]) == to_hex(by_note["trivial record"]));
    Bytes rec = by_note["float, but integer-like"];
    CHECK(cbor::Value::of(rec).get("rcrd").get("a").as_int() == 123);
    CHECK(cbor::Value::of(rec).get("rcrd").get("a").kind() == cbor::Kind::uint);
}

TEST_CASE("data-model-invalid.json: every case is rejected", "[dag_json][corpus]") {
    REQUIRE_CORPUS(corpus);
    json cases = load_json(corpus / "interop/data-model/data-model-invalid.json");
    REQUIRE(cases.is_array());
    REQUIRE(cases.size() >= 12);
    // The specific error and location expected for each known case.
    const std::map<std::string, std::pair<Errc, std::string>> want = {
        {"top-level not an object", {Errc::json_bad_data_model, "/"}},
        {"float", {Errc::cbor_float, "/rcrd/a"}},
        {"record with $type null", {Errc::json_bad_data_model, "/rcrd"}},
        {"record with $type wrong type", {Errc::json_bad_data_model, "/rcrd"}},
        {"record with empty $type string", {Errc::json_bad_data_model, "/rcrd"}},
        {"blob with string size", {Errc::json_bad_data_model, "/blb"}},
        {"blob with missing key", {Errc::json_bad_data_model, "/blb"}},
        {"bytes with wrong field type", {Errc::json_bad_data_model, "/lnk"}},
        {"bytes with extra fields", {Errc::json_bad_data_model, "/lnk"}},
        {"link with wrong field type", {Errc::json_bad_data_model, "/lnk"}},
        {"link with bogus CID", {Errc::cid_bad_text, "/lnk"}},
        {"link with extra fields", {Errc::json_bad_data_model, "/lnk"}},
    };
    std::size_t matched = 0;
    for (const auto& c : cases) {
        std::string note = c.at("note").get<std::string>();
        INFO(note);
        Encoded e = enc(c.at("json"));
        CHECK(e.errc != Errc::ok);
        CHECK(!e.where.empty());
        auto it = want.find(note);
        if (it != want.end()) {
            ++matched;
            CHECK(e.errc == it->second.first);
            CHECK(e.where == it->second.second);
        }
    }
    CHECK(matched == want.size());
}

TEST_CASE("data-model fixtures: JSON → CBOR bytes and CBOR → JSON → CBOR", "[dag_json][corpus]") {
    REQUIRE_CORPUS(corpus);
    json fixtures = load_json(corpus / "interop/data-model/data-model-fixtures.json");
    REQUIRE(fixtures.size() >= 3);
    for (const auto& f : fixtures) {
        const std::string cid_text = f.at("cid").get<std::string>();
        INFO(cid_text);
        Bytes want;
        REQUIRE(sov::multibase::base64_decode(f.at("cbor_base64").get<std::string>(), want) == Errc::ok);
        Encoded e = enc(f.at("json"));
        REQUIRE(e.errc == Errc::ok);
        CHECK(to_hex(e.bytes) == to_hex(want));
        CHECK(sov::cid::to_string(sov::cid::compute(sov::cid::kCodecDagCbor, e.bytes)) == cid_text);
        // CBOR → JSON gives the fixture's JSON (as a value) and re-encodes to the same bytes.
        REQUIRE(!cbor::validate(want));
        std::string text = to_json(want);
        CHECK(json::parse(text) == f.at("json"));
        CHECK(round_trips(want));
    }
}

TEST_CASE("repos: every block round-trips CBOR → JSON → CBOR", "[dag_json][corpus]") {
    REQUIRE_CORPUS(corpus);
    std::size_t blocks = 0, ok = 0;
    for (const auto& entry : std::filesystem::directory_iterator(corpus / "repos")) {
        if (entry.path().extension() != ".car") continue;
        INFO(entry.path().filename().string());
        Bytes bytes = testutil::read_file(entry.path());
        sov::car::Reader r;
        REQUIRE(!r.open(bytes));
        sov::car::Section s;
        while (r.next(s)) {
            ++blocks;
            REQUIRE(!cbor::validate(s.block));
            if (round_trips(s.block)) ++ok;
        }
    }
    CHECK(blocks > 5517);
    CHECK(ok == blocks);
}

// ---------------------------------------------------------------- append: CBOR → JSON

TEST_CASE("append_string escapes quotes, backslashes and control characters", "[dag_json][string]") {
    CHECK(jstr("") == "\"\"");
    CHECK(jstr("abc") == "\"abc\"");
    CHECK(jstr("a\"b") == "\"a\\\"b\"");
    CHECK(jstr("a\\b") == "\"a\\\\b\"");
    CHECK(jstr("\n\r\t\b\f") == "\"\\n\\r\\t\\b\\f\"");
    CHECK(jstr(std::string_view("\0", 1)) == "\"\\u0000\"");
    CHECK(jstr("\x01\x1f") == "\"\\u0001\\u001f\"");
    CHECK(jstr("\x1b[0m") == "\"\\u001b[0m\"");
    CHECK(jstr("\x7f") == "\"\x7f\"");  // DEL needs no escape
    CHECK(jstr("/") == "\"/\"");
    CHECK(jstr("\xc3\xa9\xf0\x9f\x98\x80") == "\"\xc3\xa9\xf0\x9f\x98\x80\"");  // UTF-8 verbatim
    CHECK(jstr("\xe2\x80\xa8") == "\"\xe2\x80\xa8\"");
    // Appends rather than overwrites.
    std::string out = "x";
    dj::append_string("y", out);
    CHECK(out == "x\"y\"");
    // Every ASCII character survives a JSON parse.
    std::string all;
    for (int c = 0; c < 128; ++c) all.push_back(char(c));
    json parsed = json::parse(jstr(all));
    CHECK(parsed.get<std::string>() == all);
}

TEST_CASE("append renders every kind", "[dag_json][append]") {
    sov::cid::Cid link = sov::cid::compute(sov::cid::kCodecRaw, sov::as_bytes("x"));
    Bytes b;
    cbor::Writer w(b);
    w.map(9);
    w.text("b"); w.boolean(true);
    w.text("f"); w.boolean(false);
    w.text("i"); w.integer(-9007199254740991LL);
    w.text("l"); w.link(link.bytes());
    w.text("n"); w.null();
    w.text("s"); w.text("q\"\n");
    w.text("u"); w.uint(18446744073709551615ULL >> 1);
    w.text("ar"); w.array(3); w.array(0); w.map(0); w.integer(0);
    w.text("by"); w.bytes(Bytes{0xfb, 0xff});
    REQUIRE(!cbor::validate(b));
    // Keys come out in CBOR order.
    std::string got = to_json(b);
    CHECK(got == "{\"b\":true,\"f\":false,\"i\":-9007199254740991,\"l\":{\"$link\":\"" +
                     sov::cid::to_string(link) +
                     "\"},\"n\":null,\"s\":\"q\\\"\\n\",\"u\":9223372036854775807,\"ar\":[[],{},0],"
                     "\"by\":{\"$bytes\":\"+/8\"}}");
    CHECK(!json::parse(got).is_discarded());
    // Appends rather than overwrites; INT64_MIN prints exactly.
    Bytes m;
    cbor::Writer mw(m);
    mw.integer(std::numeric_limits<std::int64_t>::min());
    std::string out = "[";
    dj::append(cbor::Value::of(m), out);
    CHECK(out == "[-9223372036854775808");
}

TEST_CASE("$bytes: standard base64 without padding, both ways", "[dag_json][bytes]") {
    struct V {
        Bytes bin;
        const char* b64;
    };
    for (const V& v : {V{{}, ""}, V{{0x00}, "AA"}, V{{0x00, 0x00}, "AAA"}, V{{0x00, 0x00, 0x00}, "AAAA"},
                       V{{0xfb, 0xff, 0xbf}, "+/+/"}, V{{'f', 'o', 'o', 'b'}, "Zm9vYg"}}) {
        Bytes b;
        cbor::Writer w(b);
        w.bytes(v.bin);
        std::string want = std::string("{\"$bytes\":\"") + v.b64 + "\"}";
        CHECK(to_json(b) == want);
        Encoded e = enc(json::parse(want), false);
        CHECK(e.errc == Errc::ok);
        CHECK(to_hex(e.bytes) == to_hex(b));
    }
    // Padding is accepted on read and dropped on write.
    Encoded padded = enc_text(R"({"x":{"$bytes":"Zm9vYg=="}})");
    REQUIRE(padded.errc == Errc::ok);
    CHECK(to_json(padded.bytes) == R"({"x":{"$bytes":"Zm9vYg"}})");
    // Bad alphabet, url alphabet, non-zero padding bits, impossible length.
    CHECK(enc_text(R"({"x":{"$bytes":"Zm9v!g"}})").errc == Errc::base_bad_char);
    CHECK(enc_text(R"({"x":{"$bytes":"-_-_"}})").errc == Errc::base_bad_char);
    CHECK(enc_text(R"({"x":{"$bytes":"Zm9 vYg"}})").errc == Errc::base_bad_char);
    CHECK(enc_text(R"({"x":{"$bytes":"AB"}})").errc == Errc::base_bad_padding);
    CHECK(enc_text(R"({"x":{"$bytes":"AAAAA"}})").errc == Errc::truncated);
    Encoded bad = enc_text(R"({"x":{"$bytes":"AB"}})");
    CHECK(bad.where == "/x");
    // Wrong shapes.
    CHECK(enc_text(R"({"x":{"$bytes":null}})").errc == Errc::json_bad_data_model);
    CHECK(enc_text(R"({"x":{"$bytes":"AA","y":1}})").errc == Errc::json_bad_data_model);
}

TEST_CASE("$link: CID text both ways", "[dag_json][link]") {
    const std::string c = "bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq";
    Encoded e = enc_text(R"({"l":{"$link":")" + c + R"("}})");
    REQUIRE(e.errc == Errc::ok);
    // a1 61 6c d8 2a 58 25 00 <36-byte CID>
    CHECK(to_hex(ByteView(e.bytes).first(9)) == "a1616cd82a58250001");
    CHECK(e.bytes.size() == 3 + 41);
    cbor::Value v = cbor::Value::of(e.bytes).get("l");
    CHECK(v.kind() == cbor::Kind::link);
    CHECK(sov::cid::to_string(v.as_link()) == c);
    CHECK(to_json(e.bytes) == R"({"l":{"$link":")" + c + R"("}})");
    // A top-level link when objects are not required.
    Encoded top = enc(json{{"$link", c}}, false);
    CHECK(top.errc == Errc::ok);
    CHECK(to_hex(ByteView(top.bytes).first(2)) == "d82a");
    // Bad CID texts.
    std::string upper = c;
    upper[0] = 'B';
    CHECK(enc(json{{"l", {{"$link", upper}}}}).errc == Errc::cid_bad_text);
    CHECK(enc(json{{"l", {{"$link", "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"}}}}).errc == Errc::cid_bad_text);
    CHECK(enc(json{{"l", {{"$link", c.substr(0, 58)}}}}).errc == Errc::truncated);
    CHECK(enc(json{{"l", {{"$link", c + "a"}}}}).errc != Errc::ok);
    CHECK(enc(json{{"l", {{"$link", ""}}}}).errc == Errc::cid_bad_text);
    CHECK(enc(json{{"l", {{"$link", nullptr}}}}).errc == Errc::json_bad_data_model);
    CHECK(enc(json{{"l", {{"$link", json::object({{"$link", c}})}}}}).errc == Errc::json_bad_data_model);
}

// ---------------------------------------------------------------- encode: JSON → CBOR

TEST_CASE("keys are sorted length-first, then bytewise", "[dag_json][keys]") {
    Encoded e = enc_text(R"({"aa":1,"b":2,"c":{"zz":3,"y":4},"ab":5,"B":6})");
    REQUIRE(e.errc == Errc::ok);
    // {B:6, b:2, c:{y:4, zz:3}, aa:1, ab:5}
    CHECK(to_hex(e.bytes) == "a56142066162026163a2617904627a7a036261610162616205");
    CHECK(!cbor::validate(e.bytes));
    CHECK(to_json(e.bytes) == R"({"B":6,"b":2,"c":{"y":4,"zz":3},"aa":1,"ab":5})");
    // Non-ASCII keys sort by their UTF-8 bytes.
    Encoded u = enc_text(R"({"é":1,"zz":2,"~~":3})");
    REQUIRE(u.errc == Errc::ok);
    CHECK(to_json(u.bytes) == "{\"zz\":2,\"~~\":3,\"\xc3\xa9\":1}");
    CHECK(!cbor::validate(u.bytes));
    // Empty keys are refused.
    Encoded empty = enc_text(R"({"a":{"":1}})");
    CHECK(empty.errc == Errc::cbor_empty_key);
}

TEST_CASE("numbers: integers, integral floats, range", "[dag_json][numbers]") {
    auto one = [](const std::string& num) { return enc_text("{\"n\":" + num + "}"); };
    CHECK(to_hex(one("0").bytes) == "a1616e00");
    CHECK(to_hex(one("-1").bytes) == "a1616e20");
    CHECK(to_hex(one("24").bytes) == "a1616e1818");
    CHECK(to_hex(one("123.0").bytes) == "a1616e187b");
    CHECK(to_hex(one("1e3").bytes) == "a1616e1903e8");
    CHECK(to_hex(one("-0.0").bytes) == "a1616e00");
    CHECK(to_hex(one("9223372036854775807").bytes) == "a1616e1b7fffffffffffffff");
    CHECK(to_hex(one("-9223372036854775808").bytes) == "a1616e3b7fffffffffffffff");
    CHECK(to_hex(one("9007199254740991.0").bytes) == "a1616e1b001fffffffffffff");
    CHECK(one("9223372036854775808").errc == Errc::cbor_int_range);
    CHECK(one("18446744073709551615").errc == Errc::cbor_int_range);
    CHECK(one("1.5").errc == Errc::cbor_float);
    CHECK(one("-0.25").errc == Errc::cbor_float);
    CHECK(one("1e300").errc == Errc::cbor_float);
    CHECK(one("9007199254740993.0").errc == Errc::cbor_float);  // integral, but past 2^53
    CHECK(one("1.5").where == "/n");
    // Values not representable in JSON text are refused as floats.
    CHECK(enc(json{{"n", std::numeric_limits<double>::quiet_NaN()}}).errc == Errc::cbor_float);
    CHECK(enc(json{{"n", std::numeric_limits<double>::infinity()}}).errc == Errc::cbor_float);
}

TEST_CASE("scalars, arrays and the top-level object rule", "[dag_json][encode]") {
    CHECK(enc_text("\"blah\"").errc == Errc::json_bad_data_model);
    CHECK(enc_text("\"blah\"").where == "/");
    CHECK(enc_text("[1]").errc == Errc::json_bad_data_model);
    CHECK(enc_text("null").errc == Errc::json_bad_data_model);
    Encoded s = enc_text("\"blah\"", false);
    CHECK(s.errc == Errc::ok);
    CHECK(to_hex(s.bytes) == "64626c6168");
    CHECK(to_hex(enc_text("[true,false,null,[],{}]", false).bytes) == "85f5f4f680a0");
    CHECK(to_hex(enc_text("{}").bytes) == "a0");
    // Binary JSON values have no data-model mapping.
    CHECK(enc(json{{"b", json::binary({1, 2})}}).errc == Errc::json_bad_data_model);
    // `where` names the path to the fault through arrays and objects.
    Encoded deep = enc_text(R"({"a":[0,{"b":[1,2,3.5]}]})");
    CHECK(deep.errc == Errc::cbor_float);
    CHECK(deep.where == "/a/1/b/2");
    // Strings with escapes decode to their UTF-8 bytes.
    Encoded esc = enc_text(R"({"s":"\u00e9\ud83d\ude00\n"})");
    REQUIRE(esc.errc == Errc::ok);
    CHECK(cbor::Value::of(esc.bytes).get("s").as_text() == "\xc3\xa9\xf0\x9f\x98\x80\n");
}

TEST_CASE("$type and blobs", "[dag_json][blob]") {
    const std::string ref = R"({"$link":"bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"})";
    auto blob = [&](const std::string& fields) { return enc_text(R"({"b":{"$type":"blob",)" + fields + "}}"); };
    CHECK(blob(R"("ref":)" + ref + R"(,"mimeType":"image/png","size":1)").errc == Errc::ok);
    CHECK(blob(R"("ref":)" + ref + R"(,"mimeType":"","size":1)").errc == Errc::json_bad_data_model);
    CHECK(blob(R"("ref":)" + ref + R"(,"size":1)").errc == Errc::json_bad_data_model);
    CHECK(blob(R"("ref":)" + ref + R"(,"mimeType":"image/png")").errc == Errc::json_bad_data_model);
    CHECK(blob(R"("ref":)" + ref + R"(,"mimeType":"image/png","size":-1)").errc == Errc::json_bad_data_model);
    CHECK(blob(R"("ref":)" + ref + R"(,"mimeType":"image/png","size":1.5)").errc != Errc::ok);
    CHECK(blob(R"("ref":"bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity","mimeType":"a","size":1)").errc ==
          Errc::json_bad_data_model);
    CHECK(blob(R"("mimeType":"a","size":1)").where == "/b");
    // Legacy blobs ({cid, mimeType}) have no $type and pass as plain objects.
    CHECK(enc_text(R"({"b":{"cid":"bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity","mimeType":"a"}})").errc ==
          Errc::ok);
    // Other $type values only need to be non-empty strings.
    CHECK(enc_text(R"({"$type":"app.bsky.feed.post","text":"hi"})").errc == Errc::ok);
    CHECK(enc_text(R"({"$type":""})").errc == Errc::json_bad_data_model);
    CHECK(enc_text(R"({"$type":["x"]})").errc == Errc::json_bad_data_model);
}

namespace {
std::string nested_json(std::size_t arrays, const std::string& inner) {
    std::string s = "{\"a\":";
    s += std::string(arrays, '[') + inner + std::string(arrays, ']');
    return s + "}";
}
}  // namespace

TEST_CASE("nesting: 32 levels accepted, 33 rejected", "[dag_json][depth]") {
    // The top-level object is level 1.
    Encoded ok = enc_text(nested_json(31, "1"));
    REQUIRE(ok.errc == Errc::ok);
    CHECK(!cbor::validate(ok.bytes));
    CHECK(enc_text(nested_json(32, "1")).errc == Errc::cbor_too_deep);
    CHECK(enc_text(nested_json(30, "{}")).errc == Errc::ok);
    CHECK(enc_text(nested_json(31, "{}")).errc == Errc::cbor_too_deep);
    CHECK(enc_text(nested_json(31, "[]")).errc == Errc::cbor_too_deep);
    // $link / $bytes objects are values, not levels.
    Encoded b = enc_text(nested_json(31, R"({"$bytes":"AA"})"));
    CHECK(b.errc == Errc::ok);
    CHECK(!cbor::validate(b.bytes));
    CHECK(enc_text(nested_json(32, R"({"$bytes":"AA"})")).errc == Errc::cbor_too_deep);
}

// encode() copies std::string contents into CBOR text without checking UTF-8. JSON parsed by
// nlohmann is always valid UTF-8, but a json built in code can carry any bytes, and the output
// then fails cbor::validate (cbor_invalid_utf8). The data model requires valid UTF-8.
TEST_CASE("encode refuses strings that are not UTF-8", "[dag_json][utf8]") {
    json j = {{"s", std::string("\xc0\x80")}};
    Encoded e = enc(j);
    CHECK(e.errc != Errc::ok);
    // If it is accepted, its output must at least be valid DAG-CBOR.
    if (e.errc == Errc::ok) CHECK(cbor::validate(e.bytes).errc == Errc::ok);
    json k = {{std::string("\xff"), 1}};
    CHECK(enc(k).errc != Errc::ok);
}
