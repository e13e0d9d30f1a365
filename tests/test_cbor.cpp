// Tests for sovereign/cbor.h: strict DAG-CBOR (docs/protocol.md §2).
//
// One hand-made hex vector per rule, each checked for the exact Errc and byte offset; the
// writer's shortest-form heads at every width boundary; Value/MapIter/ArrayIter accessors;
// then the real data: every interop data-model fixture, every message of the relay capture
// (two objects each) and every block of every CAR in the corpus must validate and re-encode
// byte for byte.
#include <catch2/catch.hpp>

#include "test_util.h"

#include "sovereign/capture.h"
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/multibase.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace cbor = sov::cbor;
using sov::ByteView;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;

namespace {

using testutil::hex;
using testutil::to_hex;

Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

Bytes repeat(std::uint8_t b, std::size_t n) { return Bytes(n, b); }

// A blessed dag-cbor CID (01 71 12 20 + 32 bytes 0x11) and its link encoding.
const std::string kCidHex = "01711220" + std::string(64, '1');
const std::string kLinkHex = "d82a582500" + kCidHex;

// Validates `b` and checks the exact error and offset.
void expect(const Bytes& b, Errc e, std::size_t offset) {
    INFO("input " << to_hex(b));
    sov::Located r = cbor::validate(b);
    CHECK(r.errc == e);
    CHECK(sov::to_string(r.errc) == sov::to_string(e));
    if (e != Errc::ok) CHECK(r.offset == offset);
}
void expect(std::string_view h, Errc e, std::size_t offset) { expect(hex(h), e, offset); }

// Validates `b` (must pass) and re-encodes it; the bytes must come back identical.
void expect_roundtrip(const Bytes& b) {
    INFO("input " << to_hex(b));
    sov::Located r = cbor::validate(b);
    REQUIRE(r.errc == Errc::ok);
    Bytes out;
    cbor::Writer w(out);
    cbor::Value v = cbor::Value::of(b);
    cbor::reencode(v, w);
    CHECK(to_hex(out) == to_hex(b));
    CHECK(v.size() == b.size());
}
void expect_ok(std::string_view h) { expect_roundtrip(hex(h)); }

Bytes write(void (*f)(cbor::Writer&)) {
    Bytes out;
    cbor::Writer w(out);
    f(w);
    return out;
}

}  // namespace

// ---------------------------------------------------------------- accepted vectors

TEST_CASE("valid scalars validate and re-encode identically", "[cbor][valid]") {
    for (const char* h : {
             "00", "01", "17", "18 18", "18 ff", "19 01 00", "19 ff ff", "1a 00 01 00 00",
             "1a ff ff ff ff", "1b 00 00 00 01 00 00 00 00", "1b 7f ff ff ff ff ff ff ff",
             "20", "37", "38 18", "38 ff", "39 01 00", "39 ff ff", "3a 00 01 00 00",
             "3a ff ff ff ff", "3b 00 00 00 01 00 00 00 00", "3b 7f ff ff ff ff ff ff ff",
             "40", "41 00", "43 01 02 03", "60", "61 61", "63 61 62 63", "80", "81 00",
             "83 01 02 03", "a0", "a1 61 61 01", "f4", "f5", "f6"}) {
        expect_ok(h);
    }
    expect_ok(kLinkHex);
    // A generic (non-blessed) CID in a link is still a valid link: raw codec, identity hash.
    expect_ok("d8 2a 48 00 01 55 00 03 61 62 63");
    // Lengths at every head width.
    expect_roundtrip(cat({hex("57"), repeat(0, 23)}));
    expect_roundtrip(cat({hex("58 18"), repeat(0, 24)}));
    expect_roundtrip(cat({hex("58 ff"), repeat(7, 255)}));
    expect_roundtrip(cat({hex("59 01 00"), repeat(7, 256)}));
    expect_roundtrip(cat({hex("59 ff ff"), repeat(7, 65535)}));
    expect_roundtrip(cat({hex("5a 00 01 00 00"), repeat(7, 65536)}));
    expect_roundtrip(cat({hex("78 18"), repeat('x', 24)}));
    expect_roundtrip(cat({hex("79 01 00"), repeat('x', 256)}));
    expect_roundtrip(cat({hex("98 18"), repeat(0xf6, 24)}));
    expect_roundtrip(cat({hex("99 01 00"), repeat(0x01, 256)}));
}

TEST_CASE("the canonical event-stream headers validate", "[cbor][valid]") {
    expect_ok("a2 61 74 67 23 63 6f 6d 6d 69 74 62 6f 70 01");  // {op:1,t:"#commit"}
    expect_ok("a1 62 6f 70 20");                                 // {op:-1}
    Bytes h = hex("a2 61 74 67 23 63 6f 6d 6d 69 74 62 6f 70 01");
    cbor::Value hv = cbor::Value::of(h);
    CHECK(hv.get("op").as_int() == 1);
    CHECK(hv.get("t").as_text() == "#commit");
}

// ---------------------------------------------------------------- truncation and trailing

TEST_CASE("truncation at every position of a valid object: exact offsets", "[cbor][truncated]") {
    // {a: 1, b: [100, h''], cc: link}
    const Bytes full = hex("a3 6161 01 6162 82 1864 40 626363 " + kLinkHex);
    REQUIRE(full.size() == 54);
    expect_roundtrip(full);
    // Offset reported for each prefix length: the item whose encoding is cut. Containers
    // announcing more items than bytes remain are reported at the container (each item ≥ 1 byte).
    std::vector<std::size_t> want(54);
    want[0] = 0;
    want[1] = want[2] = want[3] = 0;  // map of 3 with < 3 bytes left
    want[4] = 4;                      // second key missing
    want[5] = 4;                      // "b" key cut
    want[6] = 6;                      // value of "b" missing
    want[7] = want[8] = 6;            // array of 2 with < 2 bytes left
    want[9] = 9;                      // second element missing
    want[10] = 10;                    // third key missing
    want[11] = want[12] = 10;         // "cc" key cut
    for (std::size_t l = 13; l < 54; ++l) want[l] = 13;  // the link, cut anywhere
    for (std::size_t l = 0; l < full.size(); ++l) {
        INFO("prefix length " << l);
        Bytes pre(full.begin(), full.begin() + std::ptrdiff_t(l));
        sov::Located r = cbor::validate(pre);
        CHECK(r.errc == Errc::truncated);
        CHECK(r.offset == want[l]);
        std::size_t len = 999;
        sov::Located rp = cbor::validate_prefix(pre, len);
        CHECK(rp.errc == Errc::truncated);
        CHECK(rp.offset == want[l]);
    }
}

TEST_CASE("truncation of heads at every width", "[cbor][truncated]") {
    expect("", Errc::truncated, 0);
    for (const char* h : {"18", "19 01", "1a 00 01 00", "1b 00 00 00 01 00 00 00", "38", "39 01",
                          "58", "58 18", "59 01", "59 01 00 00", "78 18 61", "98 18", "b8 18",
                          "d8", "d9 00", "f9 00", "fa 00 00 00", "fb 00 00 00 00 00 00 00",
                          "41", "62 61", "81", "82 01", "a1", "d8 2a", "d8 2a 58",
                          "d8 2a 59 01"}) {
        expect(h, Errc::truncated, 0);
    }
    // Inside containers the offset is the cut item's.
    expect("82 01 19 01", Errc::truncated, 2);
    expect("a1 61 61 62 61", Errc::truncated, 3);
    expect("a1 61 61", Errc::truncated, 3);
    expect("83 01 02 45 00", Errc::truncated, 3);
}

TEST_CASE("every strict prefix of composite objects is truncated", "[cbor][truncated]") {
    for (const std::string& h :
         {std::string("a2 61 74 67 23 63 6f 6d 6d 69 74 62 6f 70 01"),
          std::string("82 a1 61 61 82 01 38 ff 83 f4 f5 f6"),
          std::string("a1 61 6b 84 " + kLinkHex + " 59 01 00 " + std::string(512, 'a') + " 60 80")}) {
        Bytes full = hex(h);
        expect_roundtrip(full);
        for (std::size_t l = 0; l < full.size(); ++l) {
            Bytes pre(full.begin(), full.begin() + std::ptrdiff_t(l));
            sov::Located r = cbor::validate(pre);
            INFO("prefix " << to_hex(pre));
            CHECK(r.errc == Errc::truncated);
            CHECK(r.offset <= l);
        }
    }
}

TEST_CASE("trailing bytes after the one object", "[cbor][trailing]") {
    expect("01 02", Errc::trailing_bytes, 1);
    expect("a0 00", Errc::trailing_bytes, 1);
    expect("80 80", Errc::trailing_bytes, 1);
    expect("f6 f6", Errc::trailing_bytes, 1);
    expect("82 01 02 03", Errc::trailing_bytes, 3);
    expect("a1 61 61 01 ff", Errc::trailing_bytes, 4);  // a stray break is still "trailing"
    expect(kLinkHex + "00", Errc::trailing_bytes, 41);

    // validate_prefix accepts the same inputs and reports the first object's length.
    std::size_t len = 0;
    Bytes two = hex("82 01 02 03");
    CHECK(!cbor::validate_prefix(two, len));
    CHECK(len == 3);
    Bytes one = hex("a0");
    len = 99;
    CHECK(!cbor::validate_prefix(one, len));
    CHECK(len == 1);
    // validate_prefix still reports errors inside the first object.
    Bytes bad = hex("82 18 01 00 ff");
    sov::Located r = cbor::validate_prefix(bad, len);
    CHECK(r.errc == Errc::cbor_non_minimal_int);
    CHECK(r.offset == 1);
}

TEST_CASE("validate_prefix splits an event-stream message", "[cbor][prefix]") {
    Bytes msg = hex("a1 62 6f 70 20  a2 65 65 72 72 6f 72 63 46 6f 6f 67 6d 65 73 73 61 67 65 62 68 69");
    std::size_t len = 0;
    REQUIRE(!cbor::validate_prefix(msg, len));
    CHECK(len == 5);
    ByteView rest = ByteView(msg).subspan(len);
    REQUIRE(!cbor::validate(rest));
    cbor::Value payload = cbor::Value::of(rest);
    CHECK(payload.get("error").as_text() == "Foo");
    CHECK(payload.get("message").as_text() == "hi");
    CHECK(cbor::Value::of(msg).get("op").as_int() == -1);
}

// ---------------------------------------------------------------- minimal encoding

TEST_CASE("non-minimal integers at every width", "[cbor][minimal]") {
    for (const char* h : {"18 00", "18 17", "19 00 00", "19 00 ff", "1a 00 00 00 00", "1a 00 00 ff ff",
                          "1b 00 00 00 00 00 00 00 00", "1b 00 00 00 00 ff ff ff ff",
                          "38 00", "38 17", "39 00 ff", "3a 00 00 ff ff", "3b 00 00 00 00 ff ff ff ff"}) {
        expect(h, Errc::cbor_non_minimal_int, 0);
    }
    expect("83 01 02 19 00 10", Errc::cbor_non_minimal_int, 3);
    expect("a1 61 61 1a 00 00 01 00", Errc::cbor_non_minimal_int, 3);
    // The boundary values themselves are minimal.
    expect_ok("18 18");
    expect_ok("19 01 00");
    expect_ok("1a 00 01 00 00");
    expect_ok("1b 00 00 00 01 00 00 00 00");
}

TEST_CASE("non-minimal lengths for bytes, text, arrays and maps", "[cbor][minimal]") {
    // Each major type at each width; the error comes from the head, before the content.
    for (const char* major : {"5", "7", "9", "b"}) {
        std::string m = major;
        expect(m + "8 00", Errc::cbor_non_minimal_len, 0);
        expect(m + "8 17", Errc::cbor_non_minimal_len, 0);
        expect(m + "9 00 ff", Errc::cbor_non_minimal_len, 0);
        expect(m + "a 00 00 ff ff", Errc::cbor_non_minimal_len, 0);
        expect(m + "b 00 00 00 00 ff ff ff ff", Errc::cbor_non_minimal_len, 0);
    }
    // With their full content present.
    expect(cat({hex("58 17"), repeat(0, 23)}), Errc::cbor_non_minimal_len, 0);
    expect(cat({hex("78 01"), hex("61")}), Errc::cbor_non_minimal_len, 0);
    expect(cat({hex("99 00 02"), hex("01 02")}), Errc::cbor_non_minimal_len, 0);
    expect("b8 01 61 61 00", Errc::cbor_non_minimal_len, 0);
    expect("82 00 58 01 00", Errc::cbor_non_minimal_len, 2);
    expect("a1 78 01 61 00", Errc::cbor_non_minimal_len, 1);  // a key with a long head
}

// ---------------------------------------------------------------- indefinite / reserved

TEST_CASE("indefinite lengths and break are rejected", "[cbor][indefinite]") {
    for (const char* h : {"5f", "5f 41 00 ff", "7f", "7f 61 61 ff", "9f", "9f ff", "9f 01 ff", "bf",
                          "bf ff", "bf 61 61 01 ff", "ff", "1f", "3f", "df 00"}) {
        expect(h, Errc::cbor_indefinite, 0);
    }
    expect("82 01 ff", Errc::cbor_indefinite, 2);
    expect("a1 61 61 9f ff", Errc::cbor_indefinite, 3);
}

TEST_CASE("reserved additional information 28..30", "[cbor][reserved]") {
    for (int major = 0; major < 8; ++major) {
        for (int ai = 28; ai <= 30; ++ai) {
            Bytes b{std::uint8_t(major << 5 | ai), 0, 0, 0, 0, 0, 0, 0, 0};
            expect(b, Errc::cbor_reserved_ai, 0);
        }
    }
    expect("82 00 1c", Errc::cbor_reserved_ai, 2);
}

// ---------------------------------------------------------------- tags and links

TEST_CASE("tags other than 42 are rejected", "[cbor][tag]") {
    for (const char* h : {"c0 60", "c1 00", "c2 41 00", "d7 00", "d8 18 00", "d8 29 00", "d8 2b 00",
                          "d8 ff 00", "d9 01 00 00", "da 00 01 00 00 00", "db 00 00 00 01 00 00 00 00 00"}) {
        expect(h, Errc::cbor_bad_tag, 0);
    }
    expect("82 00 c1 00", Errc::cbor_bad_tag, 2);
    // Tag 42 written in a longer head than d8 2a is a non-minimal argument.
    expect("d9 00 2a 58 25 00" + kCidHex, Errc::cbor_non_minimal_int, 0);
    expect("da 00 00 00 2a 58 25 00" + kCidHex, Errc::cbor_non_minimal_int, 0);
    expect("d8 17 00", Errc::cbor_non_minimal_int, 0);
}

TEST_CASE("tag 42 must wrap 0x00 plus a valid CID", "[cbor][link]") {
    // Over other major types.
    for (const char* h : {"d8 2a 01", "d8 2a 20", "d8 2a 61 61", "d8 2a 80", "d8 2a a0", "d8 2a f6",
                          "d8 2a d8 2a 41 00"}) {
        expect(h, Errc::cbor_bad_link, 0);
    }
    // Empty or too-short byte strings.
    expect("d8 2a 40", Errc::cbor_bad_link, 0);
    expect("d8 2a 41 00", Errc::cbor_bad_link, 0);
    // Missing 0x00 multibase prefix (the CID bytes alone), or a wrong prefix byte.
    expect("d8 2a 58 24" + kCidHex, Errc::cbor_bad_link, 0);
    expect("d8 2a 58 25 01" + kCidHex, Errc::cbor_bad_link, 0);
    // Bad CIDs inside: version 0 / 2, CIDv0 form, truncated digest, trailing byte, non-minimal varint.
    expect("d8 2a 58 25 00 00711220" + std::string(64, '1'), Errc::cbor_bad_link, 0);
    expect("d8 2a 58 25 00 02711220" + std::string(64, '1'), Errc::cbor_bad_link, 0);
    expect("d8 2a 58 23 00 1220" + std::string(64, '1'), Errc::cbor_bad_link, 0);
    expect("d8 2a 58 24 00 01711220" + std::string(62, '1'), Errc::cbor_bad_link, 0);
    expect("d8 2a 58 26 00" + kCidHex + "00", Errc::cbor_bad_link, 0);
    expect("d8 2a 58 26 00 01f1001220" + std::string(64, '1'), Errc::cbor_bad_link, 0);
    // A byte string over 2^16 cannot hold a CID.
    expect("d8 2a 5a 00 01 00 00", Errc::cbor_bad_link, 0);
    // A non-minimal inner length is reported at the tag.
    expect("d8 2a 59 00 25 00" + kCidHex, Errc::cbor_non_minimal_len, 0);
    expect("d8 2a 58 05 00 01 55 00 00", Errc::cbor_non_minimal_len, 0);
    // Inside containers the offset is the tag's.
    expect("82 01 d8 2a 41 00", Errc::cbor_bad_link, 2);
    expect("a1 61 6c d8 2a 61 61", Errc::cbor_bad_link, 3);
    // A link cannot be a key.
    expect("a1 " + kLinkHex + " 00", Errc::cbor_key_not_text, 1);
}

// ---------------------------------------------------------------- major type 7

TEST_CASE("floats are rejected at every width", "[cbor][float]") {
    expect("f9 00 00", Errc::cbor_float, 0);
    expect("f9 7e 00", Errc::cbor_float, 0);  // NaN
    expect("f9 7c 00", Errc::cbor_float, 0);  // +Inf
    expect("fa 00 00 00 00", Errc::cbor_float, 0);
    expect("fa 3f 80 00 00", Errc::cbor_float, 0);
    expect("fb 00 00 00 00 00 00 00 00", Errc::cbor_float, 0);
    expect("fb 3f f0 00 00 00 00 00 00", Errc::cbor_float, 0);  // 1.0
    expect("82 01 fb 40 5e c0 00 00 00 00 00", Errc::cbor_float, 2);
    expect("a1 61 61 f9 3c 00", Errc::cbor_float, 3);
}

TEST_CASE("simple values other than false/true/null are rejected", "[cbor][simple]") {
    expect("f7", Errc::cbor_bad_simple, 0);  // undefined
    for (const char* h : {"f8 00", "f8 13", "f8 14", "f8 20", "f8 ff"}) expect(h, Errc::cbor_bad_simple, 0);
    for (int b = 0xe0; b <= 0xf3; ++b) expect(Bytes{std::uint8_t(b)}, Errc::cbor_bad_simple, 0);
    expect("82 f5 f7", Errc::cbor_bad_simple, 2);
    expect_ok("83 f4 f5 f6");
}

// ---------------------------------------------------------------- maps

TEST_CASE("map keys must be text", "[cbor][map]") {
    for (const char* h : {"a1 01 00", "a1 20 00", "a1 41 61 00", "a1 80 00", "a1 a0 00", "a1 f6 00",
                          "a1 f5 00", "a1 c1 00 00"}) {
        expect(h, Errc::cbor_key_not_text, 1);
    }
    expect("a2 61 61 00 01 00", Errc::cbor_key_not_text, 4);
    // A text *value* in a key position of a nested map is fine; a non-text key in it is not.
    expect("a1 61 61 a1 02 00", Errc::cbor_key_not_text, 4);
}

TEST_CASE("map key order: length first, then bytewise", "[cbor][map]") {
    expect_ok("a2 61 62 00 62 61 61 00");       // "b" before "aa": shorter first
    expect("a2 62 61 61 00 61 62 00", Errc::cbor_key_order, 5);  // "aa" before "b"
    expect_ok("a2 61 61 00 61 62 00");          // "a" before "b"
    expect("a2 61 62 00 61 61 00", Errc::cbor_key_order, 4);
    expect_ok("a3 61 7a 00 62 61 61 00 62 61 62 00");
    expect("a3 61 7a 00 62 61 62 00 62 61 61 00", Errc::cbor_key_order, 8);
    // Bytewise means unsigned: 0x7f < 0xc3.
    expect_ok("a2 62 7f 7f 00 62 c3 a9 00");
    expect("a2 62 c3 a9 00 62 7f 7f 00", Errc::cbor_key_order, 5);
    // Nested maps keep their own order; the outer order resumes after them.
    expect_ok("a2 61 62 a1 61 7a 00 61 63 00");
    expect("a2 61 62 a1 61 7a 00 61 61 00", Errc::cbor_key_order, 7);
    // Keys of sibling maps do not interact.
    expect_ok("82 a1 61 7a 00 a1 61 61 00");
}

TEST_CASE("duplicate and empty map keys", "[cbor][map]") {
    expect("a2 61 61 00 61 61 00", Errc::cbor_duplicate_key, 4);
    expect("a2 61 61 00 61 61 01", Errc::cbor_duplicate_key, 4);
    expect("a3 61 61 00 61 62 00 61 62 00", Errc::cbor_duplicate_key, 7);
    expect("a1 60 00", Errc::cbor_empty_key, 1);
    expect("a2 60 00 61 61 00", Errc::cbor_empty_key, 1);
    expect("a2 61 61 00 60 00", Errc::cbor_empty_key, 4);
    // An empty text *value* is fine.
    expect_ok("a1 61 61 60");
}

// ---------------------------------------------------------------- UTF-8

TEST_CASE("text must be valid UTF-8", "[cbor][utf8]") {
    for (const char* h : {
             "62 c0 80",        // overlong NUL
             "62 c1 bf",        // overlong U+007F
             "63 e0 80 80",     // overlong 3-byte
             "63 e0 9f bf",     // overlong U+07FF
             "64 f0 80 80 80",  // overlong 4-byte
             "64 f0 8f bf bf",  // overlong U+FFFF
             "63 ed a0 80",     // U+D800 (surrogate)
             "63 ed bf bf",     // U+DFFF (surrogate)
             "66 ed a0 bd ed b8 80",  // CESU-8 surrogate pair
             "64 f4 90 80 80",  // U+110000
             "64 f7 bf bf bf",  // > U+10FFFF
             "65 f8 88 80 80 80",  // 5-byte form
             "61 fe", "61 ff",
             "61 c3",           // truncated 2-byte sequence
             "62 e2 82",        // truncated 3-byte sequence
             "63 f0 9f 98",     // truncated 4-byte sequence
             "62 c3 41",        // lead byte followed by ASCII
             "61 80", "61 bf",  // stray continuation bytes
             "63 61 80 62",
             "69 61 61 61 61 61 61 61 61 80",  // stray continuation after the 8-byte ASCII run
             "6a 61 61 61 61 61 61 61 61 61 c3",  // truncated sequence after it
         }) {
        expect(h, Errc::cbor_invalid_utf8, 0);
    }
    // In keys, and inside containers.
    expect("a1 62 c0 80 00", Errc::cbor_invalid_utf8, 1);
    expect("82 61 61 61 80", Errc::cbor_invalid_utf8, 3);
}

TEST_CASE("valid multibyte UTF-8", "[cbor][utf8]") {
    for (const char* h : {
             "61 00", "61 7f",
             "62 c2 80",        // U+0080
             "62 c3 a9",        // é
             "62 df bf",        // U+07FF
             "63 e0 a0 80",     // U+0800
             "63 e2 82 ac",     // €
             "63 ed 9f bf",     // U+D7FF
             "63 ee 80 80",     // U+E000
             "63 ef bf bf",     // U+FFFF
             "64 f0 90 80 80",  // U+10000
             "64 f0 9f 98 80",  // 😀
             "64 f4 8f bf bf",  // U+10FFFF
             "6b 61 62 63 64 65 66 67 68 c3 a9 7a",  // multibyte after the ASCII fast path
             "a1 62 c3 a9 00",  // non-ASCII key
         }) {
        expect_ok(h);
    }
    // The interop fixture's unicode string (mixed widths, ZWJ sequences).
    std::string u = "a~\xc3\xb6\xc3\xb1\xc2\xa9\xe2\xbd\x98\xe2\x98\x8e\xf0\x93\x8b\x93\xf0\x9f\x98\x80"
                    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d"
                    "\xf0\x9f\x91\xa7";
    Bytes b;
    cbor::Writer w(b);
    w.text(u);
    expect_roundtrip(b);
}

// ---------------------------------------------------------------- nesting

namespace {
Bytes nested_arrays(std::size_t n, std::string_view inner) {
    Bytes b = repeat(0x81, n);
    Bytes i = hex(inner);
    b.insert(b.end(), i.begin(), i.end());
    return b;
}
Bytes nested_maps(std::size_t n, std::string_view inner) {
    Bytes b;
    for (std::size_t k = 0; k < n; ++k) b.insert(b.end(), {0xa1, 0x61, 0x61});
    Bytes i = hex(inner);
    b.insert(b.end(), i.begin(), i.end());
    return b;
}
}  // namespace

TEST_CASE("nesting: 32 levels accepted, 33 rejected", "[cbor][depth]") {
    REQUIRE(cbor::kMaxDepth == 32);
    expect_roundtrip(nested_arrays(32, "00"));
    expect(nested_arrays(33, "00"), Errc::cbor_too_deep, 32);
    expect(nested_arrays(40, "00"), Errc::cbor_too_deep, 32);
    expect_roundtrip(nested_maps(32, "00"));
    expect(nested_maps(33, "00"), Errc::cbor_too_deep, 96);
    // Mixed: 16 arrays then 16 maps, then one more of either.
    Bytes mixed = cat({repeat(0x81, 16), nested_maps(16, "f6")});
    expect_roundtrip(mixed);
    expect(cat({repeat(0x81, 16), nested_maps(16, "81 f6")}), Errc::cbor_too_deep, 16 + 48);
    expect(cat({repeat(0x81, 16), nested_maps(16, "a1 61 61 f6")}), Errc::cbor_too_deep, 16 + 48);
    // Depth is per path, not cumulative: many siblings at depth 32 are fine.
    Bytes wide = cat({repeat(0x81, 30), hex("83 81 00 81 01 81 02")});
    expect_roundtrip(wide);
    // Links do not count as a level.
    expect_roundtrip(nested_arrays(32, kLinkHex));
}

// The validator counts only containers with content: an empty array or map at level 33 is
// accepted, while dag_json::encode counts every container and rejects the same structure
// (cbor_too_deep). One of the two is wrong; the atproto limit is on nesting depth.
TEST_CASE("nesting: an empty container at level 33 is rejected", "[cbor][depth]") {
    expect(nested_arrays(32, "80"), Errc::cbor_too_deep, 32);
    expect(nested_maps(32, "a0"), Errc::cbor_too_deep, 96);
}

// ---------------------------------------------------------------- int64 range

TEST_CASE("integers must fit signed 64 bits", "[cbor][int]") {
    expect_ok("1b 7f ff ff ff ff ff ff ff");  // INT64_MAX
    expect("1b 80 00 00 00 00 00 00 00", Errc::cbor_int_range, 0);
    expect("1b ff ff ff ff ff ff ff ff", Errc::cbor_int_range, 0);
    expect_ok("3b 7f ff ff ff ff ff ff ff");  // -1 - INT64_MAX = INT64_MIN
    expect("3b 80 00 00 00 00 00 00 00", Errc::cbor_int_range, 0);  // -2^63 - 1
    expect("3b ff ff ff ff ff ff ff ff", Errc::cbor_int_range, 0);
    expect("82 00 1b 80 00 00 00 00 00 00 00", Errc::cbor_int_range, 2);

    Bytes mx = hex("1b 7f ff ff ff ff ff ff ff");
    Bytes mn = hex("3b 7f ff ff ff ff ff ff ff");
    CHECK(cbor::Value::of(mx).as_int() == std::numeric_limits<std::int64_t>::max());
    CHECK(cbor::Value::of(mn).as_int() == std::numeric_limits<std::int64_t>::min());
    CHECK(cbor::Value::of(mx).kind() == cbor::Kind::uint);
    CHECK(cbor::Value::of(mn).kind() == cbor::Kind::nint);
}

// ---------------------------------------------------------------- Writer

TEST_CASE("Writer: shortest-form heads at every boundary", "[cbor][writer]") {
    struct Case {
        std::uint64_t arg;
        const char* head;  // for major 0
    };
    const Case cases[] = {
        {0, "00"},
        {23, "17"},
        {24, "18 18"},
        {255, "18 ff"},
        {256, "19 01 00"},
        {65535, "19 ff ff"},
        {65536, "1a 00 01 00 00"},
        {0xffffffffULL, "1a ff ff ff ff"},
        {0x100000000ULL, "1b 00 00 00 01 00 00 00 00"},
        {0xffffffffffffffffULL, "1b ff ff ff ff ff ff ff ff"},
    };
    for (const auto& c : cases) {
        Bytes want = hex(c.head);
        INFO("arg " << c.arg);
        for (std::uint8_t major = 0; major < 8; ++major) {
            Bytes out;
            cbor::Writer w(out);
            w.head(major, c.arg);
            Bytes m = want;
            m[0] = std::uint8_t(m[0] | major << 5);
            CHECK(to_hex(out) == to_hex(m));
            std::uint8_t buf[9];
            CHECK(cbor::encode_head(buf, major, c.arg) == m.size());
            CHECK(to_hex(ByteView(buf, m.size())) == to_hex(m));
            CHECK(cbor::head_size(c.arg) == m.size());
        }
        if (c.arg <= std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
            Bytes a, b;
            cbor::Writer wa(a), wb(b);
            wa.uint(c.arg);
            wb.integer(std::int64_t(c.arg));
            CHECK(to_hex(a) == to_hex(want));
            CHECK(to_hex(b) == to_hex(want));
            expect_roundtrip(a);
            CHECK(cbor::Value::of(a).as_int() == std::int64_t(c.arg));
        }
    }
}

TEST_CASE("Writer: negative integers", "[cbor][writer]") {
    struct Case {
        std::int64_t v;
        const char* enc;
    };
    const Case cases[] = {
        {-1, "20"},
        {-24, "37"},
        {-25, "38 18"},
        {-256, "38 ff"},
        {-257, "39 01 00"},
        {-65536, "39 ff ff"},
        {-65537, "3a 00 01 00 00"},
        {-4294967296LL, "3a ff ff ff ff"},
        {-4294967297LL, "3b 00 00 00 01 00 00 00 00"},
        {-9007199254740991LL, "3b 00 1f ff ff ff ff ff fe"},
        {std::numeric_limits<std::int64_t>::min(), "3b 7f ff ff ff ff ff ff ff"},
        {std::numeric_limits<std::int64_t>::max(), "1b 7f ff ff ff ff ff ff ff"},
    };
    for (const auto& c : cases) {
        INFO("value " << c.v);
        Bytes out;
        cbor::Writer w(out);
        w.integer(c.v);
        CHECK(to_hex(out) == to_hex(hex(c.enc)));
        expect_roundtrip(out);
        CHECK(cbor::Value::of(out).as_int() == c.v);
    }
}

TEST_CASE("Writer: strings, containers, simple values, links", "[cbor][writer]") {
    Bytes out;
    cbor::Writer w(out);
    w.bytes(Bytes(24, 0xab));
    CHECK(to_hex(ByteView(out).first(2)) == "5818");
    out.clear();
    w.text(std::string(256, 'q'));
    CHECK(to_hex(ByteView(out).first(3)) == "790100");
    CHECK(out.size() == 259);
    out.clear();
    w.text(std::string(65536, 'q'));
    CHECK(to_hex(ByteView(out).first(5)) == "7a00010000");
    out.clear();
    w.bytes({});
    w.text("");
    w.array(0);
    w.map(0);
    w.array(24);
    w.map(23);
    w.boolean(false);
    w.boolean(true);
    w.null();
    CHECK(to_hex(out) == "406080a09818b7f4f5f6");

    // A link is d8 2a 58 25 00 + the 36-byte binary CID.
    out.clear();
    sov::cid::Cid c = sov::cid::compute(sov::cid::kCodecDagCbor, sov::as_bytes("hello"));
    w.link(c.bytes());
    CHECK(to_hex(out) == "d82a58250001711220" + to_hex(ByteView(c.bytes()).subspan(4)));
    REQUIRE(out.size() == 41);
    expect_roundtrip(out);
    cbor::Value lv = cbor::Value::of(out);
    CHECK(lv.kind() == cbor::Kind::link);
    CHECK(sov::cid::equal(lv.as_link(), c.bytes()));
    // raw() copies verbatim.
    Bytes r;
    cbor::Writer rw(r);
    rw.raw(out);
    CHECK(r == out);
    CHECK(&rw.out() == &r);
}

TEST_CASE("Writer output is canonical for a composed record", "[cbor][writer]") {
    Bytes out = write([](cbor::Writer& w) {
        w.map(4);
        w.text("t");
        w.text("#commit");
        w.text("op");
        w.integer(1);
        w.text("blk");
        w.bytes(Bytes{1, 2, 3});
        w.text("list");
        w.array(3);
        w.null();
        w.integer(-300);
        w.map(0);
    });
    expect_roundtrip(out);
}

// ---------------------------------------------------------------- Value / iterators

TEST_CASE("Value accessors, get() and iterators", "[cbor][value]") {
    sov::cid::Cid c = sov::cid::compute(sov::cid::kCodecRaw, sov::as_bytes("blob"));
    Bytes out;
    cbor::Writer w(out);
    // Canonical order: a b c d e f g h i, then bb.
    w.map(10);
    w.text("a"); w.integer(1);
    w.text("b"); w.integer(-2);
    w.text("c"); w.text("txt");
    w.text("d"); w.bytes(Bytes{1, 2});
    w.text("e"); w.array(3); w.integer(1); w.integer(2); w.text("x");
    w.text("f"); w.map(1); w.text("x"); w.boolean(true);
    w.text("g"); w.null();
    w.text("h"); w.link(c.bytes());
    w.text("i"); w.boolean(false);
    w.text("bb"); w.integer(70000);
    expect_roundtrip(out);

    cbor::Value v = cbor::Value::of(out);
    REQUIRE(v.valid());
    CHECK(v.kind() == cbor::Kind::map);
    CHECK(v.is(cbor::Kind::map));
    CHECK(v.count() == 10);
    CHECK(v.size() == out.size());
    CHECK(v.raw().size() == out.size());
    CHECK(v.data() == out.data());
    CHECK(v.end_of_buffer() == out.data() + out.size());
    // Non-map accessors on a map give neutral values.
    CHECK(v.as_int() == 0);
    CHECK(v.as_text().empty());
    CHECK(v.as_bytes().empty());
    CHECK(v.as_link().empty());
    CHECK(!v.as_bool());

    CHECK(v.get("a").kind() == cbor::Kind::uint);
    CHECK(v.get("a").as_int() == 1);
    CHECK(v.get("b").kind() == cbor::Kind::nint);
    CHECK(v.get("b").as_int() == -2);
    CHECK(v.get("c").as_text() == "txt");
    CHECK(v.get("c").as_int() == 0);
    CHECK(to_hex(v.get("d").as_bytes()) == "0102");
    CHECK(v.get("d").as_text().empty());
    CHECK(v.get("e").count() == 3);
    CHECK(v.get("e").is(cbor::Kind::array));
    CHECK(v.get("f").get("x").as_bool());
    CHECK(v.get("f").get("x").kind() == cbor::Kind::boolean);
    CHECK(v.get("g").is(cbor::Kind::null));
    CHECK(!v.get("g").as_bool());
    CHECK(v.get("h").kind() == cbor::Kind::link);
    CHECK(sov::cid::equal(v.get("h").as_link(), c.bytes()));
    CHECK(v.get("h").as_bytes().empty());
    CHECK(v.get("i").is(cbor::Kind::boolean));
    CHECK(!v.get("i").as_bool());
    CHECK(v.get("bb").as_int() == 70000);
    CHECK(v.get("bb").size() == 5);
    CHECK(v.get("h").size() == 41);
    CHECK(v.get("e").size() == 5);

    // Absent keys: before the first, between, after the last, and of other lengths.
    for (const char* k : {"", "A", "0", "aa", "ba", "bc", "j", "z", "zz", "abc", "hello world", "ab"}) {
        INFO("key " << k);
        cbor::Value m = v.get(k);
        CHECK(!m.valid());
        CHECK(!m.is(cbor::Kind::null));
        CHECK(m.as_int() == 0);
        CHECK(m.count() == 0);
        CHECK(m.size() == 0);
        CHECK(!m.get("a").valid());
    }
    // get() on a non-map and on an invalid Value.
    CHECK(!v.get("a").get("a").valid());
    CHECK(!v.get("e").get("a").valid());
    CHECK(!cbor::Value().get("a").valid());
    CHECK(!cbor::Value().valid());
    CHECK(!cbor::Value().is(cbor::Kind::map));

    // MapIter yields every entry in encoded order with the right value views.
    std::vector<std::string> keys;
    cbor::MapIter it = v.map();
    std::string_view k;
    cbor::Value e;
    const std::uint8_t* first_pos = it.position();
    CHECK(first_pos == out.data() + 1);
    while (it.next(k, e)) {
        keys.emplace_back(k);
        CHECK(e.valid());
        CHECK(e.raw().data() + e.size() <= out.data() + out.size());
    }
    CHECK(it.position() == out.data() + out.size());
    CHECK(keys == std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h", "i", "bb"});
    CHECK(!it.next(k, e));

    // ArrayIter.
    cbor::ArrayIter ai = v.get("e").array();
    cbor::Value x;
    REQUIRE(ai.next(x));
    CHECK(x.as_int() == 1);
    REQUIRE(ai.next(x));
    CHECK(x.as_int() == 2);
    REQUIRE(ai.next(x));
    CHECK(x.as_text() == "x");
    CHECK(!ai.next(x));
    // Iterators over the wrong kind are empty.
    cbor::ArrayIter none = v.array();
    CHECK(!none.next(x));
    cbor::MapIter none2 = v.get("e").map();
    CHECK(!none2.next(k, e));
}

TEST_CASE("Value::size skips nested content", "[cbor][value]") {
    Bytes b = hex("83 a1 61 61 82 01 58 18 " + std::string(48, '0') + " " + kLinkHex + " 82 f6 f6");
    REQUIRE(!cbor::validate(b));
    cbor::Value v = cbor::Value::of(b);
    CHECK(v.size() == b.size());
    cbor::ArrayIter it = v.array();
    cbor::Value e;
    std::size_t sum = 1;
    while (it.next(e)) sum += e.size();
    CHECK(sum == b.size());
}

TEST_CASE("key_compare is length-first then bytewise", "[cbor][map]") {
    CHECK(cbor::key_compare("b", "aa") < 0);
    CHECK(cbor::key_compare("aa", "b") > 0);
    CHECK(cbor::key_compare("a", "b") < 0);
    CHECK(cbor::key_compare("abc", "abc") == 0);
    CHECK(cbor::key_compare("", "") == 0);
    CHECK(cbor::key_compare("", "a") < 0);
    CHECK(cbor::key_compare("\x7f", "\xc3") < 0);
}

// ---------------------------------------------------------------- real data

namespace {

// Validates and re-encodes one block; returns false (with a CHECK failure) on any mismatch.
bool block_ok(ByteView b) {
    sov::Located r = cbor::validate(b);
    if (r) {
        FAIL_CHECK("block fails validation: " << sov::to_string(r.errc) << " at " << r.offset);
        return false;
    }
    Bytes out;
    cbor::Writer w(out);
    cbor::Value v = cbor::Value::of(b);
    cbor::reencode(v, w);
    if (out.size() != b.size() || !std::equal(out.begin(), out.end(), b.begin())) {
        FAIL_CHECK("re-encoding differs for block " << to_hex(b.first(std::min<std::size_t>(b.size(), 32))));
        return false;
    }
    if (v.size() != b.size()) {
        FAIL_CHECK("Value::size " << v.size() << " != " << b.size());
        return false;
    }
    return true;
}

// Every block of a CAR: counts blocks; the header and every block must be clean.
std::size_t car_blocks_ok(ByteView car) {
    sov::car::Reader r;
    sov::Located h = r.open(car);
    if (h) {
        FAIL_CHECK("CAR header: " << sov::to_string(h.errc) << " at " << h.offset);
        return 0;
    }
    std::size_t n = 0;
    sov::car::Section s;
    while (r.next(s)) {
        if (block_ok(s.block)) ++n;
    }
    CHECK(!r.error());
    return n;
}

}  // namespace

TEST_CASE("interop data-model fixtures: validate, CID, re-encode", "[cbor][corpus]") {
    REQUIRE_CORPUS(corpus);
    auto text = testutil::read_file(corpus / "interop/data-model/data-model-fixtures.json");
    auto fixtures = nlohmann::json::parse(text.begin(), text.end());
    REQUIRE(fixtures.is_array());
    REQUIRE(fixtures.size() >= 3);
    for (const auto& f : fixtures) {
        const std::string b64 = f.at("cbor_base64").get<std::string>();
        INFO("fixture " << f.at("cid").get<std::string>());
        Bytes b;
        REQUIRE(sov::multibase::base64_decode(b64, b) == Errc::ok);
        CHECK(!cbor::validate(b));
        CHECK(sov::cid::to_string(sov::cid::compute(sov::cid::kCodecDagCbor, b)) == f.at("cid").get<std::string>());
        CHECK(block_ok(b));
    }
}

TEST_CASE("relay capture: every message is two objects, every block re-encodes", "[cbor][corpus]") {
    REQUIRE_CORPUS(corpus);
    std::vector<Bytes> messages;
    std::string err;
    INFO(err);
    REQUIRE(sov::capture::load((corpus / "relay-capture/frames.u32le.zst").string(), messages, err));
    CHECK(messages.size() == 150);
    std::size_t commits = 0, cars = 0, blocks = 0;
    for (const auto& m : messages) {
        std::size_t len = 0;
        sov::Located r = cbor::validate_prefix(m, len);
        REQUIRE(!r);
        REQUIRE(len < m.size());
        ByteView header(m.data(), len);
        ByteView payload = ByteView(m).subspan(len);
        CHECK(!cbor::validate(payload));
        CHECK(block_ok(header));
        CHECK(block_ok(payload));
        cbor::Value h = cbor::Value::of(header);
        CHECK(h.get("op").as_int() == 1);
        if (h.get("t").as_text() == "#commit") ++commits;
        cbor::Value blk = cbor::Value::of(payload).get("blocks");
        if (blk.is(cbor::Kind::bytes)) {
            ++cars;
            blocks += car_blocks_ok(blk.as_bytes());
        }
    }
    CHECK(commits == 148);
    CHECK(cars >= commits);
    CHECK(blocks > cars);
    WARN("relay capture: " << messages.size() << " messages, " << cars << " CARs, " << blocks << " blocks");
}

TEST_CASE("repos: every block of every CAR validates and re-encodes", "[cbor][corpus]") {
    REQUIRE_CORPUS(corpus);
    std::size_t files = 0, total = 0;
    for (const auto& entry : std::filesystem::directory_iterator(corpus / "repos")) {
        if (entry.path().extension() != ".car") continue;
        INFO(entry.path().filename().string());
        Bytes car = testutil::read_file(entry.path());
        std::size_t n = car_blocks_ok(car);
        CHECK(n > 0);
        if (entry.path().filename() == "calabro.car") CHECK(n == 5517);
        total += n;
        ++files;
    }
    CHECK(files == 6);
    CHECK(total > 5517);
}
