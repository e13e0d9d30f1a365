// Tests for sovereign/crypto.h: the atproto interop signature and did:key fixtures, sign/verify
// round trips on both curves, low-S / high-S / length rules (docs/protocol.md §5), key parsing
// errors, concurrent verification, and every key and signature of the PLC corpus logs.
#include <catch2/catch.hpp>

#include "test_util.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "sovereign/crypto.h"
#include "sovereign/multibase.h"

using namespace sov::crypto;
using sov::ByteView;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;
using Digest = std::array<std::uint8_t, 32>;

namespace {

using testutil::corpus_path;

nlohmann::json load_json(const std::string& path) {
    std::ifstream f(path);
    return nlohmann::json::parse(f);
}

Bytes from_hex(std::string_view h) {
    Bytes out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}

std::string to_hex(ByteView b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (auto x : b) {
        s.push_back(d[x >> 4]);
        s.push_back(d[x & 15]);
    }
    return s;
}

Bytes b64(std::string_view s) {
    Bytes out;
    REQUIRE(sov::multibase::base64_decode(s, out) == Errc::ok);
    return out;
}

// Group orders from SEC 2, written out independently of crypto.cpp.
const Bytes kK256N = from_hex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
const Bytes kP256N = from_hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

const Bytes& order(Curve c) { return c == Curve::k256 ? kK256N : kP256N; }

// 2*s <= n, i.e. s <= n/2 (s big-endian 32 bytes).
bool is_low_s(Curve c, const std::uint8_t* s) {
    std::array<unsigned, 33> two_s{};
    unsigned carry = 0;
    for (int i = 31; i >= 0; --i) {
        const unsigned v = 2u * s[i] + carry;
        two_s[static_cast<std::size_t>(i) + 1] = v & 0xFF;
        carry = v >> 8;
    }
    two_s[0] = carry;
    if (two_s[0] != 0) return false;
    const Bytes& n = order(c);
    for (std::size_t i = 0; i < 32; ++i) {
        if (two_s[i + 1] != n[i]) return two_s[i + 1] < n[i];
    }
    return true;
}

// (r, n - s): the malleated twin of a signature.
std::array<std::uint8_t, 64> malleate(Curve c, const std::array<std::uint8_t, 64>& sig) {
    auto out = sig;
    const Bytes& n = order(c);
    int borrow = 0;
    for (int i = 31; i >= 0; --i) {
        int v = int{n[static_cast<std::size_t>(i)]} - int{sig[32 + static_cast<std::size_t>(i)]} - borrow;
        borrow = v < 0;
        out[32 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v + (borrow ? 256 : 0));
    }
    return out;
}

Digest digest_of(std::string_view s) { return sha256(sov::as_bytes(s)); }

}  // namespace

TEST_CASE("sha256 FIPS 180-2 vectors", "[crypto][sha256]") {
    CHECK(to_hex(sha256({})) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(to_hex(digest_of("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(to_hex(digest_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    CHECK(to_hex(digest_of(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("interop signature fixtures", "[crypto][corpus]") {
    const std::string path = corpus_path("interop/crypto/signature-fixtures.json");
    if (path.empty()) return;
    const auto fixtures = load_json(path);
    REQUIRE(fixtures.size() >= 6);
    int valid = 0, high_s = 0, der = 0;
    for (const auto& fx : fixtures) {
        INFO(fx["comment"].get<std::string>());
        const Curve curve = fx["algorithm"] == "ES256K" ? Curve::k256 : Curve::p256;
        const std::string did = fx["publicKeyDid"];
        auto key = parse_did_key(did);
        REQUIRE(key.ok());
        CHECK(key->curve == curve);
        CHECK(to_did_key(*key) == did);

        const Curve legacy_curve =
            fx["didDocSuite"] == "EcdsaSecp256k1VerificationKey2019" ? Curve::k256 : Curve::p256;
        auto legacy = parse_legacy_multibase(legacy_curve, fx["publicKeyMultibase"].get<std::string>());
        REQUIRE(legacy.ok());
        CHECK(*legacy == *key);

        const Bytes msg = b64(fx["messageBase64"].get<std::string>());
        const Bytes sig = b64(fx["signatureBase64"].get<std::string>());
        const Errc got = verify_message(*key, msg, sig);
        CHECK(verify_message(*legacy, msg, sig) == got);
        const auto tags = fx["tags"];
        if (fx["validSignature"].get<bool>()) {
            CHECK(got == Errc::ok);
            ++valid;
        } else if (std::find(tags.begin(), tags.end(), "high-s") != tags.end()) {
            CHECK(got == Errc::sig_high_s);
            ++high_s;
        } else if (std::find(tags.begin(), tags.end(), "der-encoded") != tags.end()) {
            CHECK(got == Errc::sig_bad_length);
            ++der;
        } else {
            CHECK(got != Errc::ok);
        }
    }
    CHECK(valid == 2);
    CHECK(high_s == 2);
    CHECK(der == 2);
}

TEST_CASE("interop W3C did:key fixtures, K-256", "[crypto][corpus]") {
    const std::string path = corpus_path("interop/crypto/w3c_didkey_K256.json");
    if (path.empty()) return;
    const auto fixtures = load_json(path);
    REQUIRE(fixtures.size() == 5);
    for (const auto& fx : fixtures) {
        const std::string did = fx["publicDidKey"];
        INFO(did);
        PrivateKey priv{Curve::k256, {}};
        const Bytes secret = from_hex(fx["privateKeyBytesHex"].get<std::string>());
        REQUIRE(secret.size() == 32);
        std::copy(secret.begin(), secret.end(), priv.secret.begin());
        auto pub = public_key_of(priv);
        REQUIRE(pub.ok());
        CHECK(to_did_key(*pub) == did);
        CHECK(to_multikey(*pub).starts_with("zQ3s"));
        auto parsed = parse_did_key(did);
        REQUIRE(parsed.ok());
        CHECK(*parsed == *pub);
        CHECK(to_did_key(*parsed) == did);
        const Digest d = digest_of(did);
        CHECK(verify(*parsed, d.data(), sign(priv, d.data())) == Errc::ok);
    }
}

TEST_CASE("interop W3C did:key fixtures, P-256", "[crypto][corpus]") {
    const std::string path = corpus_path("interop/crypto/w3c_didkey_P256.json");
    if (path.empty()) return;
    const auto fixtures = load_json(path);
    REQUIRE(fixtures.size() >= 1);
    for (const auto& fx : fixtures) {
        const std::string did = fx["publicDidKey"];
        INFO(did);
        Bytes secret;
        REQUIRE(sov::multibase::base58btc_decode(fx["privateKeyBytesBase58"].get<std::string>(), secret) == Errc::ok);
        REQUIRE(secret.size() == 32);
        PrivateKey priv{Curve::p256, {}};
        std::copy(secret.begin(), secret.end(), priv.secret.begin());
        auto pub = public_key_of(priv);
        REQUIRE(pub.ok());
        CHECK(to_did_key(*pub) == did);
        CHECK(to_multikey(*pub).starts_with("zDn"));
        auto parsed = parse_did_key(did);
        REQUIRE(parsed.ok());
        CHECK(*parsed == *pub);
        CHECK(to_did_key(*parsed) == did);
        const Digest d = digest_of(did);
        CHECK(verify(*parsed, d.data(), sign(priv, d.data())) == Errc::ok);
    }
}

TEST_CASE("spec example did:keys round trip", "[crypto]") {
    for (const char* did : {"did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc",
                            "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo"}) {
        auto k = parse_did_key(did);
        REQUIRE(k.ok());
        CHECK(to_did_key(*k) == did);
        CHECK(to_multikey(*k) == std::string_view(did).substr(8));
        auto m = parse_multikey(std::string_view(did).substr(8));
        REQUIRE(m.ok());
        CHECK(*m == *k);
    }
}

TEST_CASE("sign / verify round trips, low-S always, both curves", "[crypto]") {
    std::mt19937 rng(42);
    for (Curve curve : {Curve::k256, Curve::p256}) {
        INFO(to_string(curve));
        for (int k = 0; k < 4; ++k) {
            const PrivateKey priv = generate(curve);
            auto pub = public_key_of(priv);
            REQUIRE(pub.ok());
            CHECK(pub->curve == curve);
            for (int i = 0; i < 25; ++i) {
                Digest d;
                for (auto& b : d) b = static_cast<std::uint8_t>(rng());
                const auto sig = sign(priv, d.data());
                REQUIRE(is_low_s(curve, sig.data() + 32));
                REQUIRE(verify(*pub, d.data(), sig) == Errc::ok);
                // The malleated twin is the same signature mathematically: reported as high-S.
                CHECK(verify(*pub, d.data(), malleate(curve, sig)) == Errc::sig_high_s);
                // Another digest, a flipped r bit, a flipped low s bit: invalid.
                Digest d2 = d;
                d2[5] ^= 1;
                CHECK(verify(*pub, d2.data(), sig) == Errc::sig_invalid);
                auto bad = sig;
                bad[3] ^= 0x10;
                CHECK(verify(*pub, d.data(), bad) == Errc::sig_invalid);
                bad = sig;
                bad[63] ^= 0x01;
                CHECK(verify(*pub, d.data(), bad) == Errc::sig_invalid);
            }
            // Wrong key of the same curve.
            auto other = public_key_of(generate(curve));
            REQUIRE(other.ok());
            const Digest d = digest_of("hello");
            CHECK(verify(*other, d.data(), sign(priv, d.data())) == Errc::sig_invalid);
            CHECK(verify_message(*pub, sov::as_bytes("hello"), sign(priv, d.data())) == Errc::ok);
        }
    }
}

TEST_CASE("k256 signing is deterministic (RFC 6979)", "[crypto]") {
    const PrivateKey priv = generate_from_seed(Curve::k256, Digest{1, 2, 3});
    const Digest d = digest_of("deterministic");
    CHECK(sign(priv, d.data()) == sign(priv, d.data()));
    // RFC 6979 nonce depends on the message: different digests, different r.
    const Digest d2 = digest_of("deterministic!");
    const auto s1 = sign(priv, d.data());
    const auto s2 = sign(priv, d2.data());
    CHECK(!std::equal(s1.begin(), s1.begin() + 32, s2.begin()));
}

TEST_CASE("generate_from_seed is reproducible and valid", "[crypto]") {
    for (Curve curve : {Curve::k256, Curve::p256}) {
        const Digest seed = digest_of("seed");
        const PrivateKey a = generate_from_seed(curve, seed);
        const PrivateKey b = generate_from_seed(curve, seed);
        CHECK(a.secret == b.secret);
        CHECK(a.curve == curve);
        // Counter 0 is almost surely valid: secret = sha256(seed || 00 00 00 00).
        std::array<std::uint8_t, 36> buf{};
        std::copy(seed.begin(), seed.end(), buf.begin());
        CHECK(a.secret == sha256(buf));
        const PrivateKey c = generate_from_seed(curve, digest_of("other seed"));
        CHECK(c.secret != a.secret);
        CHECK(public_key_of(a).ok());
    }
    CHECK(generate(Curve::k256).secret != generate(Curve::k256).secret);
}

TEST_CASE("public_key_of rejects out-of-range scalars", "[crypto]") {
    for (Curve curve : {Curve::k256, Curve::p256}) {
        PrivateKey zero{curve, {}};
        CHECK(public_key_of(zero).error() == Errc::bad_argument);
        PrivateKey n{curve, {}};
        std::copy(order(curve).begin(), order(curve).end(), n.secret.begin());
        CHECK(public_key_of(n).error() == Errc::bad_argument);
        PrivateKey ones{curve, {}};
        ones.secret.fill(0xFF);
        CHECK(public_key_of(ones).error() == Errc::bad_argument);
        n.secret[31] -= 1;  // n - 1: the largest valid scalar
        CHECK(public_key_of(n).ok());
        const Digest d = digest_of("x");
        CHECK(sign(zero, d.data()) == std::array<std::uint8_t, 64>{});
    }
}

TEST_CASE("signature length, range and high-S rules", "[crypto]") {
    for (Curve curve : {Curve::k256, Curve::p256}) {
        INFO(to_string(curve));
        const PrivateKey priv = generate_from_seed(curve, digest_of("rules"));
        auto pub = public_key_of(priv);
        REQUIRE(pub.ok());
        const Digest d = digest_of("msg");
        const auto sig = sign(priv, d.data());
        CHECK(verify(*pub, d.data(), ByteView(sig.data(), 63)) == Errc::sig_bad_length);
        CHECK(verify(*pub, d.data(), ByteView()) == Errc::sig_bad_length);
        Bytes longer(sig.begin(), sig.end());
        longer.push_back(0);
        CHECK(verify(*pub, d.data(), longer) == Errc::sig_bad_length);
        // s = n/2 + 1 (just high), s = n, s = 0xFF…: high-S before anything else.
        std::array<std::uint8_t, 64> s_is_n = sig;
        std::copy(order(curve).begin(), order(curve).end(), s_is_n.begin() + 32);
        CHECK(verify(*pub, d.data(), s_is_n) == Errc::sig_high_s);
        auto ff = sig;
        std::fill(ff.begin() + 32, ff.end(), 0xFF);
        CHECK(verify(*pub, d.data(), ff) == Errc::sig_high_s);
        // r = 0, s = 0, r >= n: invalid, never a crash.
        auto r0 = sig;
        std::fill(r0.begin(), r0.begin() + 32, 0);
        CHECK(verify(*pub, d.data(), r0) == Errc::sig_invalid);
        auto s0 = sig;
        std::fill(s0.begin() + 32, s0.end(), 0);
        CHECK(verify(*pub, d.data(), s0) == Errc::sig_invalid);
        auto rn = sig;
        std::copy(order(curve).begin(), order(curve).end(), rn.begin());
        CHECK(verify(*pub, d.data(), rn) == Errc::sig_invalid);
    }
    // A PublicKey that was never parsed is refused, not dereferenced.
    PublicKey blank;
    const Digest d = digest_of("msg");
    std::array<std::uint8_t, 64> sig{};
    sig[0] = 1;
    sig[32] = 1;
    CHECK(verify(blank, d.data(), sig) == Errc::bad_argument);
    blank.curve = Curve::p256;
    CHECK(verify(blank, d.data(), sig) == Errc::bad_argument);
}

TEST_CASE("key parsing errors", "[crypto]") {
    CHECK(parse_multikey("").error() == Errc::key_bad_multibase);
    CHECK(parse_multikey("Q3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc").error() == Errc::key_bad_multibase);
    CHECK(parse_multikey("zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJw0").error() == Errc::key_bad_multibase);
    CHECK(parse_multikey("z").error() == Errc::key_bad_codec);
    CHECK(parse_did_key("did:web:example.com").error() == Errc::key_bad_multibase);
    CHECK(parse_did_key("zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc").error() == Errc::key_bad_multibase);
    // An Ed25519 multikey (codec 0xed = ED 01) is not an atproto signing key.
    {
        Bytes ed = {0xED, 0x01};
        ed.resize(34, 0x11);
        std::string mk = "z";
        sov::multibase::base58btc_encode(ed, mk);
        CHECK(parse_multikey(mk).error() == Errc::key_bad_codec);
    }
    auto good = parse_did_key("did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc");
    REQUIRE(good.ok());
    auto with_point = [](const std::uint8_t codec[2], const Bytes& point) {
        Bytes b = {codec[0], codec[1]};
        b.insert(b.end(), point.begin(), point.end());
        std::string mk = "z";
        sov::multibase::base58btc_encode(b, mk);
        return parse_multikey(mk);
    };
    const std::uint8_t k256c[2] = {0xE7, 0x01};
    const std::uint8_t p256c[2] = {0x80, 0x24};
    Bytes point(good->compressed.begin(), good->compressed.end());
    CHECK(with_point(k256c, point).ok());
    CHECK(with_point(k256c, Bytes(point.begin(), point.end() - 1)).error() == Errc::key_bad_point);
    Bytes bad_prefix = point;
    bad_prefix[0] = 0x05;
    CHECK(with_point(k256c, bad_prefix).error() == Errc::key_bad_point);
    // About half of all x have no point: try small ones, expect several rejections per curve.
    int not_on_k256 = 0, not_on_p256 = 0;
    for (std::uint8_t x = 1; x < 40; ++x) {
        Bytes p(33, 0);
        p[0] = 0x02;
        p[32] = x;
        if (!parse_public_key(Curve::k256, p).ok()) {
            CHECK(parse_public_key(Curve::k256, p).error() == Errc::key_bad_point);
            CHECK(with_point(k256c, p).error() == Errc::key_bad_point);
            ++not_on_k256;
        }
        if (!parse_public_key(Curve::p256, p).ok()) {
            CHECK(parse_public_key(Curve::p256, p).error() == Errc::key_bad_point);
            CHECK(with_point(p256c, p).error() == Errc::key_bad_point);
            ++not_on_p256;
        }
    }
    CHECK(not_on_k256 > 5);
    CHECK(not_on_p256 > 5);
}

TEST_CASE("uncompressed (legacy) points parse to the same key; hybrid and off-curve rejected", "[crypto]") {
    for (Curve curve : {Curve::k256, Curve::p256}) {
        INFO(to_string(curve));
        const PrivateKey priv = generate_from_seed(curve, digest_of("legacy"));
        auto pub = public_key_of(priv);
        REQUIRE(pub.ok());
        // 04 || x || y with the wrong y is off the curve (the right y is tested with G below).
        Bytes unc(65, 0);
        unc[0] = 0x04;
        std::copy(pub->compressed.begin() + 1, pub->compressed.end(), unc.begin() + 1);
        unc[64] = 1;  // y = 1 is not on the curve for this x
        CHECK(parse_public_key(curve, unc).error() == Errc::key_bad_point);
        Bytes hybrid = unc;
        hybrid[0] = 0x06;
        CHECK(parse_public_key(curve, hybrid).error() == Errc::key_bad_point);
        CHECK(parse_public_key(curve, Bytes(64, 4)).error() == Errc::key_bad_point);
    }
    // Known uncompressed points: the generators G of both curves (SEC 2).
    const Bytes k256_g = from_hex(
        "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8");
    const Bytes p256_g = from_hex(
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
    PrivateKey one_k{Curve::k256, {}};
    one_k.secret[31] = 1;
    PrivateKey one_p{Curve::p256, {}};
    one_p.secret[31] = 1;
    for (auto [curve, g, one] : {std::tuple{Curve::k256, k256_g, one_k}, std::tuple{Curve::p256, p256_g, one_p}}) {
        auto unc = parse_public_key(curve, g);
        REQUIRE(unc.ok());
        auto from_priv = public_key_of(one);
        REQUIRE(from_priv.ok());
        CHECK(*unc == *from_priv);
        CHECK(unc->compressed[0] == (g[64] & 1 ? 0x03 : 0x02));
        // A legacy DID-doc multibase of the uncompressed point parses to the same key.
        std::string mb = "z";
        sov::multibase::base58btc_encode(g, mb);
        auto legacy = parse_legacy_multibase(curve, mb);
        REQUIRE(legacy.ok());
        CHECK(*legacy == *from_priv);
        // And the uncompressed key verifies what the scalar 1 signs.
        const Digest d = digest_of("generator");
        CHECK(verify(*unc, d.data(), sign(one, d.data())) == Errc::ok);
        Bytes off = g;
        off[64] ^= 1;
        CHECK(parse_public_key(curve, off).error() == Errc::key_bad_point);
    }
    CHECK(parse_legacy_multibase(Curve::k256, "Q3s").error() == Errc::key_bad_multibase);
    CHECK(parse_legacy_multibase(Curve::k256, "z0").error() == Errc::key_bad_multibase);
}

TEST_CASE("PublicKey is a value; PreparedKey verifies many times and survives moves", "[crypto]") {
    static_assert(std::is_trivially_copyable_v<PublicKey>);
    std::vector<PublicKey> keys;
    const Digest d = digest_of("copy");
    const Digest other = digest_of("other");
    std::vector<std::array<std::uint8_t, 64>> sigs;
    for (int i = 0; i < 8; ++i) {
        const PrivateKey priv = generate(i % 2 ? Curve::p256 : Curve::k256);
        keys.push_back(*public_key_of(priv));
        sigs.push_back(sign(priv, d.data()));
    }
    std::vector<PublicKey> copies = keys;
    keys.clear();
    std::vector<PreparedKey> prepared;
    for (std::size_t i = 0; i < copies.size(); ++i) {
        CHECK(verify(copies[i], d.data(), sigs[i]) == Errc::ok);
        PreparedKey p;
        CHECK(p.empty());
        REQUIRE(p.reset(copies[i]) == Errc::ok);
        CHECK(p.key() == copies[i]);
        prepared.push_back(std::move(p));  // moved: still prepared
    }
    for (int round = 0; round < 3; ++round) {  // one context, many calls, good and bad mixed
        for (std::size_t i = 0; i < prepared.size(); ++i) {
            INFO("key " << i << " round " << round);
            CHECK(prepared[i].verify(d.data(), sigs[i]) == Errc::ok);
            CHECK(prepared[i].verify(other.data(), sigs[i]) == Errc::sig_invalid);
            CHECK(prepared[i].verify(d.data(), sigs[(i + 2) % sigs.size()]) == Errc::sig_invalid);
            CHECK(prepared[i].verify(d.data(), ByteView(sigs[i].data(), 63)) == Errc::sig_bad_length);
        }
    }
    // Not a point: refused at reset, and an empty PreparedKey verifies nothing.
    for (Curve curve : {Curve::k256, Curve::p256}) {
        PublicKey bad;
        bad.curve = curve;
        bad.compressed.fill(0xFF);  // x = 2^256 − 1 ≥ the field prime of both curves
        bad.compressed[0] = 0x02;
        PreparedKey p;
        CHECK(p.reset(bad) == Errc::key_bad_point);
        CHECK(p.empty());
        CHECK(p.verify(d.data(), sigs[0]) == Errc::bad_argument);
    }
}

TEST_CASE("concurrent verification on both curves", "[crypto][threads]") {
    struct Case {
        PublicKey key;
        Digest digest;
        std::array<std::uint8_t, 64> sig;
    };
    std::vector<Case> cases;
    for (int i = 0; i < 16; ++i) {
        const PrivateKey priv = generate_from_seed(i % 2 ? Curve::p256 : Curve::k256, Digest{static_cast<std::uint8_t>(i)});
        const Digest d = digest_of(std::to_string(i));
        cases.push_back({*public_key_of(priv), d, sign(priv, d.data())});
    }
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 20; ++round) {
                for (std::size_t i = 0; i < cases.size(); ++i) {
                    const Case& c = cases[(i + static_cast<std::size_t>(t)) % cases.size()];
                    if (verify(c.key, c.digest.data(), c.sig) != Errc::ok) ++failures;
                    const Case& other = cases[(i + 1 + static_cast<std::size_t>(t)) % cases.size()];
                    if (verify(c.key, other.digest.data(), other.sig) == Errc::ok) ++failures;
                    if (sha256(c.sig) != sha256(c.sig)) ++failures;
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
}

TEST_CASE("PLC corpus: every did:key parses and round trips; high-S and DER signatures rejected",
          "[crypto][corpus]") {
    const std::string dir = corpus_path("plc");
    if (dir.empty()) return;
    int keys = 0, checked_sigs = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (!name.starts_with("log_") || entry.path().extension() != ".json") continue;
        const auto log = load_json(entry.path().string());
        for (const auto& e : log) {
            const auto& op = e["operation"];
            std::vector<std::string> dids;
            if (op.contains("rotationKeys")) {
                for (const auto& k : op["rotationKeys"]) dids.push_back(k);
            }
            if (op.contains("verificationMethods")) {
                for (const auto& [id, k] : op["verificationMethods"].items()) dids.push_back(k);
            }
            for (const char* f : {"signingKey", "recoveryKey"}) {
                if (op.contains(f)) dids.push_back(op[f]);
            }
            for (const auto& did : dids) {
                INFO(name << ": " << did);
                auto k = parse_did_key(did);
                REQUIRE(k.ok());
                CHECK(to_did_key(*k) == did);
                ++keys;
            }
            // Genesis ops of the invalid-signature logs: check the signature rules that do not
            // need the DAG-CBOR of the op (high-S and length come before the digest matters).
            if (!name.starts_with("log_invalid_sig_") || dids.empty()) continue;
            Bytes sig;
            if (sov::multibase::base64url_decode(op["sig"].get<std::string>(), sig) != Errc::ok) continue;
            auto k = parse_did_key(dids[0]);
            REQUIRE(k.ok());
            const Digest any = digest_of("not the op");
            INFO(name);
            if (name == "log_invalid_sig_k256_high_s.json") {
                CHECK(k->curve == Curve::k256);
                CHECK(verify(*k, any.data(), sig) == Errc::sig_high_s);
            } else if (name == "log_invalid_sig_p256_high_s.json") {
                CHECK(k->curve == Curve::p256);
                CHECK(verify(*k, any.data(), sig) == Errc::sig_high_s);
            } else {
                CHECK(verify(*k, any.data(), sig) != Errc::ok);
            }
            ++checked_sigs;
        }
    }
    CHECK(keys >= 40);
    CHECK(checked_sigs >= 3);
}

// RFC 6979 appendix A.2.5: P-256, SHA-256, message "sample". The RFC's s is high, so the
// atproto (low-S) signature carries n − s.
TEST_CASE("P-256 signing uses the deterministic nonce of RFC 6979", "[crypto][p256][rfc6979]") {
    auto hex = [](std::string_view h) {
        std::vector<std::uint8_t> b;
        for (std::size_t i = 0; i + 1 < h.size(); i += 2) b.push_back(std::uint8_t(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
        return b;
    };
    sov::crypto::PrivateKey k;
    k.curve = sov::crypto::Curve::p256;
    auto secret = hex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
    std::copy(secret.begin(), secret.end(), k.secret.begin());
    std::string msg = "sample";
    auto digest = sov::crypto::sha256(sov::as_bytes(msg));
    auto sig = sov::crypto::sign(k, digest.data());
    CHECK(std::vector<std::uint8_t>(sig.begin(), sig.begin() + 32) ==
          hex("efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"));
    CHECK(std::vector<std::uint8_t>(sig.begin() + 32, sig.end()) ==
          hex("0834e36ad29a83bf2bc9385e491d6099c8fdf9d1ed67aa7ea5f51f93782857a9"));
    auto pub = sov::crypto::public_key_of(k);
    REQUIRE(pub.ok());
    CHECK(sov::crypto::verify(*pub, digest.data(), {sig.data(), sig.size()}) == sov::Errc::ok);
    CHECK(sov::crypto::sign(k, digest.data()) == sig);  // same input, same signature
}
