// Tests for sovereign/multibase.h: RFC 4648 vectors, base58btc vectors, strictness rules of
// docs/protocol.md §3 and §7, cross-checks against slow bit-by-bit reference codecs, and every CID
// and signature string of the PLC corpus logs.
#include <catch2/catch.hpp>

#include "test_util.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "sovereign/multibase.h"

namespace mb = sov::multibase;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;

namespace {

using testutil::corpus_path;

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

std::string b32(std::string_view s) {
    std::string out;
    mb::base32_encode(sov::as_bytes(s), out);
    return out;
}
std::string b58(const Bytes& b) {
    std::string out;
    mb::base58btc_encode(b, out);
    return out;
}
std::string b64(std::string_view s) {
    std::string out;
    mb::base64_encode(sov::as_bytes(s), out);
    return out;
}

// Slow references, written from the definitions, to cross-check the fast codecs.
std::string ref_base32(const Bytes& in) {
    static const char* A = "abcdefghijklmnopqrstuvwxyz234567";
    std::string out;
    unsigned acc = 0, bits = 0;
    for (auto b : in) {
        acc = (acc << 8) | b;
        bits += 8;
        while (bits >= 5) {
            out.push_back(A[(acc >> (bits - 5)) & 31]);
            bits -= 5;
        }
    }
    if (bits > 0) out.push_back(A[(acc << (5 - bits)) & 31]);
    return out;
}
std::string ref_base58(const Bytes& in) {
    static const char* A = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    std::size_t zeros = 0;
    while (zeros < in.size() && in[zeros] == 0) ++zeros;
    std::vector<int> digits;  // little-endian base 58
    for (std::size_t i = zeros; i < in.size(); ++i) {
        int carry = in[i];
        for (auto& d : digits) {
            carry += d * 256;
            d = carry % 58;
            carry /= 58;
        }
        while (carry) {
            digits.push_back(carry % 58);
            carry /= 58;
        }
    }
    std::string out(zeros, '1');
    for (auto it = digits.rbegin(); it != digits.rend(); ++it) out.push_back(A[*it]);
    return out;
}

}  // namespace

TEST_CASE("base32 RFC 4648 section 10 vectors, lowercase unpadded", "[multibase][base32]") {
    const std::pair<const char*, const char*> v[] = {
        {"", ""},           {"f", "my"},           {"fo", "mzxq"},          {"foo", "mzxw6"},
        {"foob", "mzxw6yq"}, {"fooba", "mzxw6ytb"}, {"foobar", "mzxw6ytboi"},
    };
    for (auto [plain, enc] : v) {
        CHECK(b32(plain) == enc);
        Bytes out;
        REQUIRE(mb::base32_decode(enc, out) == Errc::ok);
        CHECK(out == bytes_of(plain));
    }
}

TEST_CASE("base32 decodes and re-encodes a CID string", "[multibase][base32]") {
    const std::string cid = "bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq";
    Bytes out;
    REQUIRE(mb::base32_decode(std::string_view(cid).substr(1), out) == Errc::ok);
    REQUIRE(out.size() == 36);
    CHECK(out[0] == 0x01);
    CHECK(out[1] == 0x71);
    CHECK(out[2] == 0x12);
    CHECK(out[3] == 0x20);
    std::string text = "b";
    mb::base32_encode(out, text);
    CHECK(text == cid);

    Bytes via_multibase;
    REQUIRE(mb::decode(cid, via_multibase) == Errc::ok);
    CHECK(via_multibase == out);

    std::uint8_t buf[36];
    auto n = mb::base32_decode_into(std::string_view(cid).substr(1), buf);
    REQUIRE(n.ok());
    CHECK(*n == 36);
    CHECK(Bytes(buf, buf + 36) == out);
    std::uint8_t small[35];
    CHECK(mb::base32_decode_into(std::string_view(cid).substr(1), small).error() == Errc::bad_argument);
}

TEST_CASE("base32 rejects bad characters, padding, padding bits and impossible lengths", "[multibase][base32]") {
    Bytes out = {0xAA};
    CHECK(mb::base32_decode("MY", out) == Errc::base_bad_char);       // uppercase
    CHECK(mb::base32_decode("m1", out) == Errc::base_bad_char);       // '1' not in the alphabet
    CHECK(mb::base32_decode("m y", out) == Errc::base_bad_char);
    CHECK(mb::base32_decode("mzxw6yt\n", out) == Errc::base_bad_char);
    CHECK(mb::base32_decode("my======", out) == Errc::base_bad_padding);
    CHECK(mb::base32_decode("mzxw6===", out) == Errc::base_bad_padding);
    CHECK(mb::base32_decode("mz", out) == Errc::base_bad_padding);       // 2 pad bits = 01
    CHECK(mb::base32_decode("mzxr", out) == Errc::base_bad_padding);     // 4 pad bits = 0001
    CHECK(mb::base32_decode("mzxw7", out) == Errc::base_bad_padding);    // 1 pad bit
    CHECK(mb::base32_decode("mzxw6yr", out) == Errc::base_bad_padding);  // 3 pad bits = 001
    CHECK(mb::base32_decode("a", out) == Errc::truncated);
    CHECK(mb::base32_decode("aaa", out) == Errc::truncated);
    CHECK(mb::base32_decode("aaaaaa", out) == Errc::truncated);
    CHECK(mb::base32_decode("aaaaaaaaa", out) == Errc::truncated);
    CHECK(out == Bytes{0xAA});  // failed decodes leave `out` as it was
    REQUIRE(mb::base32_decode("my", out) == Errc::ok);
    CHECK(out == Bytes{0xAA, 'f'});  // and successful ones append
}

TEST_CASE("base32 matches a bit-by-bit reference on random inputs", "[multibase][base32]") {
    std::mt19937 rng(1234);
    for (int len = 0; len < 200; ++len) {
        Bytes in(static_cast<std::size_t>(len));
        for (auto& b : in) b = static_cast<std::uint8_t>(rng());
        std::string enc;
        mb::base32_encode(in, enc);
        REQUIRE(enc == ref_base32(in));
        REQUIRE(enc.size() == mb::base32_encoded_size(in.size()));
        Bytes dec;
        REQUIRE(mb::base32_decode(enc, dec) == Errc::ok);
        REQUIRE(dec == in);
    }
}

TEST_CASE("base58btc vectors and leading zeros", "[multibase][base58]") {
    CHECK(b58(bytes_of("Hello World!")) == "2NEpo7TZRRrLZSi2U");
    CHECK(b58(bytes_of("The quick brown fox jumps over the lazy dog.")) ==
          "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z");
    CHECK(b58({0x00, 0x00, 0x28, 0x7f, 0xb4, 0xcd}) == "11233QC4");
    CHECK(b58({}) == "");
    CHECK(b58({0}) == "1");
    CHECK(b58({0, 0, 0}) == "111");
    CHECK(b58({57}) == "z");
    CHECK(b58({58}) == "21");
    CHECK(b58({0xFF, 0xFF, 0xFF, 0xFF}) == "7YXq9G");

    Bytes out;
    REQUIRE(mb::base58btc_decode("11233QC4", out) == Errc::ok);
    CHECK(out == Bytes{0x00, 0x00, 0x28, 0x7f, 0xb4, 0xcd});
    out.clear();
    REQUIRE(mb::base58btc_decode("111", out) == Errc::ok);
    CHECK(out == Bytes{0, 0, 0});
    out.clear();
    REQUIRE(mb::base58btc_decode("", out) == Errc::ok);
    CHECK(out.empty());
    CHECK(mb::base58btc_decode("0OIl", out) == Errc::base_bad_char);
    CHECK(mb::base58btc_decode("2NEpo7TZRRrLZSi2U ", out) == Errc::base_bad_char);
    CHECK(mb::base58btc_decode(std::string(5000, '2'), out) == Errc::too_large);
}

TEST_CASE("base58btc matches the textbook algorithm on random inputs", "[multibase][base58]") {
    std::mt19937 rng(99);
    for (int len = 0; len < 300; ++len) {
        Bytes in(static_cast<std::size_t>(len % 150));
        for (auto& b : in) b = static_cast<std::uint8_t>(rng());
        const std::size_t lead = static_cast<std::size_t>(len % 5);  // some leading zeros
        for (std::size_t i = 0; i < lead && i < in.size(); ++i) in[i] = 0;
        const std::string enc = b58(in);
        REQUIRE(enc == ref_base58(in));
        Bytes dec;
        REQUIRE(mb::base58btc_decode(enc, dec) == Errc::ok);
        REQUIRE(dec == in);
    }
}

TEST_CASE("base64 RFC 4648 section 10 vectors, unpadded", "[multibase][base64]") {
    const std::pair<const char*, const char*> v[] = {
        {"", ""},        {"f", "Zg"},        {"fo", "Zm8"},        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    for (auto [plain, enc] : v) {
        CHECK(b64(plain) == enc);
        Bytes out;
        REQUIRE(mb::base64_decode(enc, out) == Errc::ok);
        CHECK(out == bytes_of(plain));
        out.clear();
        REQUIRE(mb::base64url_decode(enc, out) == Errc::ok);  // no alphabet-specific chars here
        CHECK(out == bytes_of(plain));
    }
    const Bytes specials = {0xFB, 0xFF, 0xBF};
    std::string s, u;
    mb::base64_encode(specials, s);
    mb::base64url_encode(specials, u);
    CHECK(s == "+/+/");
    CHECK(u == "-_-_");
    Bytes out;
    CHECK(mb::base64_decode("-_-_", out) == Errc::base_bad_char);
    CHECK(mb::base64url_decode("+/+/", out) == Errc::base_bad_char);
    REQUIRE(mb::base64url_decode("-_-_", out) == Errc::ok);
    CHECK(out == specials);
}

TEST_CASE("base64 strict decoding follows the PLC rules", "[multibase][base64]") {
    Bytes out;
    CHECK(mb::base64_decode("Zg==", out) == Errc::base_bad_padding);
    CHECK(mb::base64_decode("Zm8=", out) == Errc::base_bad_padding);
    CHECK(mb::base64url_decode("Zg==", out) == Errc::base_bad_padding);
    CHECK(mb::base64_decode("Zh", out) == Errc::base_bad_padding);    // non-zero padding bits
    CHECK(mb::base64_decode("Zm9", out) == Errc::base_bad_padding);
    CHECK(mb::base64url_decode("Zm9", out) == Errc::base_bad_padding);
    CHECK(mb::base64_decode("Zm9v\nYmFy", out) == Errc::base_bad_char);
    CHECK(mb::base64_decode("Zm9vYmFy\n", out) == Errc::base_bad_char);
    CHECK(mb::base64_decode("Zm9v YmFy", out) == Errc::base_bad_char);
    CHECK(mb::base64_decode("Z", out) == Errc::truncated);
    CHECK(mb::base64_decode("Zm9vY", out) == Errc::truncated);
    CHECK(out.empty());
}

TEST_CASE("base64 lenient decoding accepts padding (DAG-JSON $bytes)", "[multibase][base64]") {
    const std::pair<const char*, const char*> v[] = {
        {"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9v", "foo"}, {"Zg", "f"}, {"Zm9vYmE=", "fooba"}, {"", ""},
    };
    for (auto [enc, plain] : v) {
        Bytes out;
        REQUIRE(mb::base64_decode_lenient(enc, out) == Errc::ok);
        CHECK(out == bytes_of(plain));
    }
    Bytes out;
    CHECK(mb::base64_decode_lenient("Zg=", out) == Errc::base_bad_padding);
    CHECK(mb::base64_decode_lenient("Z===", out) == Errc::base_bad_padding);
    CHECK(mb::base64_decode_lenient("Zh==", out) == Errc::base_bad_padding);
    CHECK(mb::base64_decode_lenient("-_-_", out) == Errc::base_bad_char);
    CHECK(mb::base64_decode_lenient("Zg\n", out) == Errc::base_bad_char);
    CHECK(mb::base64_decode_lenient("Zg==\n", out) == Errc::base_bad_padding);  // first offender decides
}

TEST_CASE("base64 round trips random inputs", "[multibase][base64]") {
    std::mt19937 rng(7);
    for (int len = 0; len < 100; ++len) {
        Bytes in(static_cast<std::size_t>(len));
        for (auto& b : in) b = static_cast<std::uint8_t>(rng());
        std::string s, u;
        mb::base64_encode(in, s);
        mb::base64url_encode(in, u);
        REQUIRE(s.find('=') == std::string::npos);
        Bytes d1, d2, d3;
        REQUIRE(mb::base64_decode(s, d1) == Errc::ok);
        REQUIRE(mb::base64url_decode(u, d2) == Errc::ok);
        REQUIRE(mb::base64_decode_lenient(s, d3) == Errc::ok);
        REQUIRE(d1 == in);
        REQUIRE(d2 == in);
        REQUIRE(d3 == in);
    }
}

TEST_CASE("multibase prefix dispatch", "[multibase]") {
    Bytes out;
    REQUIRE(sov::multibase::decode("bmzxw6", out) == Errc::ok);
    CHECK(out == bytes_of("foo"));
    out.clear();
    REQUIRE(sov::multibase::decode("z2NEpo7TZRRrLZSi2U", out) == Errc::ok);
    CHECK(out == bytes_of("Hello World!"));
    out.clear();
    REQUIRE(sov::multibase::decode("mZm9v", out) == Errc::ok);
    CHECK(out == bytes_of("foo"));
    out.clear();
    REQUIRE(sov::multibase::decode("u-_-_", out) == Errc::ok);
    CHECK(out == Bytes{0xFB, 0xFF, 0xBF});
    CHECK(sov::multibase::decode("", out) == Errc::base_bad_char);
    CHECK(sov::multibase::decode("Bmzxw6", out) == Errc::base_bad_char);  // base32 upper: unsupported
    CHECK(sov::multibase::decode("fabcd", out) == Errc::base_bad_char);   // hex: unsupported
}

TEST_CASE("PLC corpus: every op CID and signature string decodes strictly", "[multibase][corpus]") {
    const std::string dir = corpus_path("plc");
    if (dir.empty()) return;
    int cids = 0, sigs = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (!name.starts_with("log_") || entry.path().extension() != ".json") continue;
        std::ifstream f(entry.path());
        const auto log = nlohmann::json::parse(f);
        for (const auto& op : log) {
            INFO(name << " " << op["cid"].get<std::string>());
            const std::string cid = op["cid"];
            Bytes bin;
            REQUIRE(cid.size() == 59);
            REQUIRE(mb::decode(cid, bin) == Errc::ok);
            REQUIRE(bin.size() == 36);
            std::string again = "b";
            mb::base32_encode(bin, again);
            CHECK(again == cid);
            ++cids;

            const std::string sig = op["operation"]["sig"];
            Bytes raw;
            const Errc e = mb::base64url_decode(sig, raw);
            if (name == "log_invalid_sig_b64_newline.json") {
                CHECK(e == Errc::base_bad_char);
            } else if (name == "log_invalid_sig_b64_padding_bits.json" ||
                       name == "log_invalid_sig_b64_padding_chars.json") {
                CHECK(e == Errc::base_bad_padding);
            } else {
                REQUIRE(e == Errc::ok);
                CHECK(raw.size() == 64);  // even the DER one: 30 3e … happens to be 64 bytes
                std::string back;
                mb::base64url_encode(raw, back);
                CHECK(back == sig);
            }
            ++sigs;
        }
    }
    CHECK(cids >= 40);
    CHECK(sigs == cids);
}
