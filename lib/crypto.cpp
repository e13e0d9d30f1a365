// crypto.cpp — SHA-256, atproto keys, ECDSA verify / sign (see crypto.h, docs/protocol.md §5).
//
// k256 goes through libsecp256k1. Verification uses secp256k1_context_static: since 0.2.0 the
// multiplication tables are compiled in, so the static context verifies at full speed, needs no
// set-up and is immutable (hence thread-safe). A PublicKey keeps the parsed secp256k1_pubkey
// bytes, so verify() is: length check, high-S byte compare, parse_compact, ecdsa_verify — no
// allocation, no point decompression. Signing needs a full context; one is created lazily,
// randomized once (side-channel blinding) and then only read.
//
// p256 goes through OpenSSL 3's EVP interface only (EC_KEY / ECDSA_do_verify are deprecated in
// 3.0, and -Werror makes deprecation fatal). A PreparedKey decodes the point once into an
// EVP_PKEY and initialises one EVP_PKEY_CTX for verifying, which every verify() reuses:
// EVP_PKEY_verify keeps no state between calls, and building a context per call cost more than
// a third of a p256 verify. EVP wants the signature in DER, so the 64-byte r‖s is re-encoded as
// canonical DER on the stack.
//
// A PublicKey itself is only curve + compressed point (what the DID cache stores); the
// decompressed forms live in PreparedKey.
//
// High-S is checked on the raw s bytes before any library call on both curves, so the caller
// gets sig_high_s (a malleated signature) rather than sig_invalid. libsecp256k1 would reject
// high-S anyway; OpenSSL would accept it.
//
// SHA-256 fetches the OpenSSL implementation once and keeps one EVP_MD_CTX per thread: SHA256()
// in OpenSSL 3 fetches the algorithm by name on every call, and EVP_Digest allocates a context.
#include "sovereign/crypto.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <secp256k1.h>
#include <sodium.h>

#include <cstring>
#include <vector>

#include "sovereign/multibase.h"

namespace sov::crypto {

namespace detail {
struct P256Verifier {
    EVP_PKEY* pkey = nullptr;
    EVP_PKEY_CTX* ctx = nullptr;  // initialised for verify, reused by every call
    P256Verifier() = default;
    P256Verifier(const P256Verifier&) = delete;
    P256Verifier& operator=(const P256Verifier&) = delete;
    ~P256Verifier() {
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pkey);
    }
};
}  // namespace detail

namespace {

using Scalar = std::array<std::uint8_t, 32>;

// Group orders, big-endian (SEC 2 §2.4.1 secp256k1, §2.7.2 secp256r1).
constexpr Scalar kK256Order = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                               0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48,
                               0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41};
constexpr Scalar kP256Order = {0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF,
                               0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17,
                               0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51};

constexpr Scalar half(const Scalar& n) {
    Scalar h{};
    unsigned carry = 0;
    for (std::size_t i = 0; i < 32; ++i) {
        h[i] = static_cast<std::uint8_t>((n[i] >> 1) | (carry << 7));
        carry = n[i] & 1;
    }
    return h;
}
constexpr Scalar kK256HalfOrder = half(kK256Order);
constexpr Scalar kP256HalfOrder = half(kP256Order);

const Scalar& order_of(Curve c) noexcept { return c == Curve::k256 ? kK256Order : kP256Order; }
const Scalar& half_order_of(Curve c) noexcept { return c == Curve::k256 ? kK256HalfOrder : kP256HalfOrder; }

// Big-endian 32-byte compare: <0, 0, >0.
int cmp32(const std::uint8_t* a, const std::uint8_t* b) noexcept { return std::memcmp(a, b, 32); }

bool scalar_in_range(Curve c, const Scalar& x) noexcept {
    bool nonzero = false;
    for (auto b : x) nonzero |= (b != 0);
    return nonzero && cmp32(x.data(), order_of(c).data()) < 0;
}

// Multicodec varint prefixes (multiformats table: secp256k1-pub 0xe7, p256-pub 0x1200).
constexpr std::uint8_t kK256Codec[2] = {0xE7, 0x01};
constexpr std::uint8_t kP256Codec[2] = {0x80, 0x24};
constexpr std::string_view kDidKeyPrefix = "did:key:";

// ---- libsecp256k1 contexts

const secp256k1_context* k256_verify_ctx() noexcept {
    static const secp256k1_context* ctx = [] {
        secp256k1_selftest();
        return secp256k1_context_static;
    }();
    return ctx;
}

const secp256k1_context* k256_sign_ctx() noexcept {
    static const secp256k1_context* ctx = [] {
        secp256k1_context* c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
        if (sodium_init() < 0) return static_cast<const secp256k1_context*>(c);
        unsigned char seed[32];
        randombytes_buf(seed, sizeof seed);
        if (secp256k1_context_randomize(c, seed) != 1) { /* blinding is optional; keep going */ }
        sodium_memzero(seed, sizeof seed);
        return static_cast<const secp256k1_context*>(c);
    }();
    return ctx;
}

// ---- OpenSSL helpers

struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* c) const noexcept { EVP_PKEY_CTX_free(c); }
};
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

// Build an EVP_PKEY on prime256v1 from OSSL params; nullptr on failure.
EVP_PKEY* p256_from_params(OSSL_PARAM* params, int selection) noexcept {
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* pkey = nullptr;
    if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &pkey, selection, params) != 1) {
        ERR_clear_error();
        return nullptr;
    }
    return pkey;
}

char kP256GroupName[] = "prime256v1";

EVP_PKEY* p256_public_pkey(ByteView sec1) noexcept {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, kP256GroupName, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<std::uint8_t*>(sec1.data()),
                                          sec1.size()),
        OSSL_PARAM_construct_end(),
    };
    return p256_from_params(params, EVP_PKEY_PUBLIC_KEY);
}

// The P-256 group, built once and only read afterwards (safe to share between threads).
const EC_GROUP* p256_group() noexcept {
    static const EC_GROUP* group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    return group;
}

// A SEC1 point of P-256 (compressed or not) in uncompressed form; false when it is not on the
// curve. With the shared group this costs a third of building an EVP_PKEY from the compressed
// form, which also builds a group and decompresses with generic arithmetic.
bool p256_uncompressed(ByteView sec1, std::uint8_t out[65]) noexcept {
    const EC_GROUP* group = p256_group();
    EC_POINT* pt = group ? EC_POINT_new(group) : nullptr;
    BN_CTX* bn = BN_CTX_new();
    const bool ok = pt && bn && EC_POINT_oct2point(group, pt, sec1.data(), sec1.size(), bn) == 1 &&
                    EC_POINT_point2oct(group, pt, POINT_CONVERSION_UNCOMPRESSED, out, 65, bn) == 65;
    BN_CTX_free(bn);
    EC_POINT_free(pt);
    if (!ok) ERR_clear_error();
    return ok;
}

// DER INTEGER of a 32-byte big-endian unsigned value; returns bytes written (<= 35).
std::size_t der_integer(const std::uint8_t* v, std::uint8_t* out) noexcept {
    std::size_t i = 0;
    while (i < 31 && v[i] == 0) ++i;
    const bool pad = (v[i] & 0x80) != 0;
    const std::size_t len = 32 - i + (pad ? 1 : 0);
    out[0] = 0x02;
    out[1] = static_cast<std::uint8_t>(len);
    std::size_t p = 2;
    if (pad) out[p++] = 0x00;
    std::memcpy(out + p, v + i, 32 - i);
    return 2 + len;
}

Errc verify_p256(EVP_PKEY_CTX* ctx, const std::uint8_t digest[32], const std::uint8_t* sig) noexcept {
    std::uint8_t der[2 + 35 + 35];
    std::size_t n = 2;
    n += der_integer(sig, der + n);
    n += der_integer(sig + 32, der + n);
    der[0] = 0x30;
    der[1] = static_cast<std::uint8_t>(n - 2);
    const int rc = EVP_PKEY_verify(ctx, der, n, digest, 32);
    if (rc != 1) {
        ERR_clear_error();
        return Errc::sig_invalid;
    }
    return Errc::ok;
}

// Compressed point of a p256 scalar via EC_POINT_mul (not deprecated in OpenSSL 3).
bool p256_compressed_of(const Scalar& secret, std::array<std::uint8_t, 33>& out) noexcept {
    EC_GROUP* group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    BIGNUM* d = BN_bin2bn(secret.data(), 32, nullptr);
    EC_POINT* pt = group ? EC_POINT_new(group) : nullptr;
    BN_CTX* bn = BN_CTX_new();
    bool ok = group && d && pt && bn && EC_POINT_mul(group, pt, d, nullptr, nullptr, bn) == 1 &&
              EC_POINT_point2oct(group, pt, POINT_CONVERSION_COMPRESSED, out.data(), out.size(), bn) == 33;
    BN_CTX_free(bn);
    EC_POINT_free(pt);
    BN_clear_free(d);
    EC_GROUP_free(group);
    if (!ok) ERR_clear_error();
    return ok;
}

// ECDSA P-256 with the deterministic nonce of RFC 6979 §3.2 (HMAC-SHA256 DRBG over the
// secret and the digest), so the same key and digest always give the same signature: OpenSSL
// 3.0's EVP signer only draws random nonces, and mesh-sim promises the same bytes for a seed.
// s = k⁻¹(z + r·d) mod n with BIGNUM arithmetic; low-S is applied by the caller.
bool sign_p256(const Scalar& secret, const std::uint8_t digest[32], std::array<std::uint8_t, 64>& out) noexcept {
    auto hmac = [](const std::uint8_t key[32], std::initializer_list<ByteView> parts, std::uint8_t mac[32]) {
        std::uint8_t buf[32 + 1 + 32 + 32];
        std::size_t n = 0;
        for (ByteView p : parts) {
            std::memcpy(buf + n, p.data(), p.size());
            n += p.size();
        }
        unsigned len = 32;
        return HMAC(EVP_sha256(), key, 32, buf, n, mac, &len) != nullptr;
    };
    EC_GROUP* group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    BN_CTX* bn = BN_CTX_new();
    BIGNUM *d = BN_bin2bn(secret.data(), 32, nullptr), *z = BN_bin2bn(digest, 32, nullptr), *k = BN_new(),
           *r = BN_new(), *x = BN_new(), *kinv = BN_new(), *t = BN_new(), *sv = BN_new();
    EC_POINT* R = group ? EC_POINT_new(group) : nullptr;
    bool ok = false;
    if (group && bn && d && z && k && r && x && kinv && t && sv && R) {
        const BIGNUM* n = EC_GROUP_get0_order(group);
        // h1' = bits2octets(digest) = (digest mod n), 32 bytes.
        std::uint8_t h1[32], V[32], K[32], T[32];
        BN_nnmod(t, z, n, bn);
        BN_bn2binpad(t, h1, 32);
        std::memset(V, 0x01, 32);
        std::memset(K, 0x00, 32);
        const std::uint8_t zero = 0, one = 1;
        ByteView vv{V, 32}, xv{secret.data(), 32}, hv{h1, 32};
        bool step = hmac(K, {vv, {&zero, 1}, xv, hv}, K) && hmac(K, {vv}, V) && hmac(K, {vv, {&one, 1}, xv, hv}, K) &&
                    hmac(K, {vv}, V);
        for (int tries = 0; step && tries < 64 && !ok; ++tries) {
            step = hmac(K, {vv}, V);
            std::memcpy(T, V, 32);
            BN_bin2bn(T, 32, k);
            if (step && !BN_is_zero(k) && BN_cmp(k, n) < 0 && EC_POINT_mul(group, R, k, nullptr, nullptr, bn) == 1 &&
                EC_POINT_get_affine_coordinates(group, R, x, nullptr, bn) == 1 && BN_nnmod(r, x, n, bn) == 1 &&
                !BN_is_zero(r) && BN_mod_inverse(kinv, k, n, bn) && BN_mod_mul(t, r, d, n, bn) == 1 &&
                BN_mod_add(t, t, z, n, bn) == 1 && BN_mod_mul(sv, kinv, t, n, bn) == 1 && !BN_is_zero(sv)) {
                ok = BN_bn2binpad(r, out.data(), 32) == 32 && BN_bn2binpad(sv, out.data() + 32, 32) == 32;
                break;
            }
            step = step && hmac(K, {vv, {&zero, 1}}, K) && hmac(K, {vv}, V);
        }
        OPENSSL_cleanse(K, sizeof K);
        OPENSSL_cleanse(V, sizeof V);
    }
    EC_POINT_free(R);
    for (BIGNUM* b : {d, k, kinv, t}) BN_clear_free(b);
    for (BIGNUM* b : {z, r, x, sv}) BN_free(b);
    BN_CTX_free(bn);
    EC_GROUP_free(group);
    if (!ok) ERR_clear_error();
    return ok;
}

// s := n - s (s in [1, n-1]), big-endian.
void negate_mod_order(const Scalar& n, std::uint8_t* s) noexcept {
    int borrow = 0;
    for (int i = 31; i >= 0; --i) {
        int v = int{n[static_cast<std::size_t>(i)]} - int{s[i]} - borrow;
        borrow = v < 0;
        s[i] = static_cast<std::uint8_t>(v + (borrow ? 256 : 0));
    }
}

}  // namespace

// SHA-256 goes through OpenSSL's low-level SHA256_Init/Update/Final: deprecated in OpenSSL 3
// but present throughout 3.x, and 1.7× faster than the EVP interface on the short inputs
// that dominate here (MST key heights, 32–100 bytes: 51 ns against 88 ns; the one-shot
// SHA256() is 316 ns). It uses the same SHA-NI code inside; only the dispatch differs.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
std::array<std::uint8_t, 32> sha256(ByteView data) noexcept {
    std::array<std::uint8_t, 32> out{};
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, data.data(), data.size());
    SHA256_Final(out.data(), &c);
    return out;
}
#pragma GCC diagnostic pop

std::string_view to_string(Curve c) noexcept { return c == Curve::k256 ? "k256" : "p256"; }

bool operator==(const PublicKey& a, const PublicKey& b) noexcept {
    return a.curve == b.curve && a.compressed == b.compressed;
}

Result<PublicKey> parse_public_key(Curve curve, ByteView sec1) {
    const bool compressed = sec1.size() == 33 && (sec1[0] == 0x02 || sec1[0] == 0x03);
    const bool uncompressed = sec1.size() == 65 && sec1[0] == 0x04;  // not the hybrid 06/07 forms
    if (!compressed && !uncompressed) return Errc::key_bad_point;
    PublicKey key;
    key.curve = curve;
    if (curve == Curve::k256) {
        secp256k1_pubkey pk;
        if (secp256k1_ec_pubkey_parse(k256_verify_ctx(), &pk, sec1.data(), sec1.size()) != 1) {
            return Errc::key_bad_point;
        }
        std::size_t len = key.compressed.size();
        if (secp256k1_ec_pubkey_serialize(k256_verify_ctx(), key.compressed.data(), &len, &pk,
                                          SECP256K1_EC_COMPRESSED) != 1) {
            return Errc::key_bad_point;
        }
        return key;
    }
    if (curve != Curve::p256) return Errc::bad_argument;
    // OpenSSL checks that the point is on the curve (or, compressed, that x has a square root).
    std::uint8_t full[65];
    if (!p256_uncompressed(sec1, full)) return Errc::key_bad_point;
    key.compressed[0] = compressed ? sec1[0] : static_cast<std::uint8_t>(0x02 | (sec1[64] & 1));
    std::memcpy(key.compressed.data() + 1, sec1.data() + 1, 32);
    return key;
}

PreparedKey::PreparedKey() noexcept = default;
PreparedKey::~PreparedKey() = default;
PreparedKey::PreparedKey(PreparedKey&&) noexcept = default;
PreparedKey& PreparedKey::operator=(PreparedKey&&) noexcept = default;

Errc PreparedKey::reset(const PublicKey& key) {
    ready_ = false;
    key_ = key;
    if (key.curve == Curve::k256) {
        secp256k1_pubkey pk;
        if (secp256k1_ec_pubkey_parse(k256_verify_ctx(), &pk, key.compressed.data(), key.compressed.size()) != 1)
            return Errc::key_bad_point;
        static_assert(sizeof pk.data == 64);
        std::memcpy(k256_.data(), pk.data, 64);
        p256_.reset();
        ready_ = true;
        return Errc::ok;
    }
    if (key.curve != Curve::p256) return Errc::bad_argument;
    auto v = std::make_unique<detail::P256Verifier>();
    std::uint8_t full[65];
    if (!p256_uncompressed(key.compressed, full)) return Errc::key_bad_point;
    v->pkey = p256_public_pkey({full, sizeof full});
    if (!v->pkey) return Errc::key_bad_point;
    v->ctx = EVP_PKEY_CTX_new_from_pkey(nullptr, v->pkey, nullptr);
    if (!v->ctx || EVP_PKEY_verify_init(v->ctx) != 1) {
        ERR_clear_error();
        return Errc::key_bad_point;
    }
    p256_ = std::move(v);
    ready_ = true;
    return Errc::ok;
}

Errc PreparedKey::verify(const std::uint8_t digest[32], ByteView sig) noexcept {
    if (sig.size() != 64) return Errc::sig_bad_length;
    if (cmp32(sig.data() + 32, half_order_of(key_.curve).data()) > 0) return Errc::sig_high_s;
    if (!ready_) return Errc::bad_argument;
    if (key_.curve == Curve::k256) {
        secp256k1_pubkey pk;
        std::memcpy(pk.data, k256_.data(), 64);
        secp256k1_ecdsa_signature s;
        if (secp256k1_ecdsa_signature_parse_compact(k256_verify_ctx(), &s, sig.data()) != 1) {
            return Errc::sig_invalid;  // r or s >= n
        }
        return secp256k1_ecdsa_verify(k256_verify_ctx(), &s, digest, &pk) == 1 ? Errc::ok : Errc::sig_invalid;
    }
    return verify_p256(p256_->ctx, digest, sig.data());
}

Result<PublicKey> parse_multikey(std::string_view multikey) {
    if (multikey.empty() || multikey[0] != 'z') return Errc::key_bad_multibase;
    std::vector<std::uint8_t> bytes;
    bytes.reserve(40);
    if (multibase::base58btc_decode(multikey.substr(1), bytes) != Errc::ok) return Errc::key_bad_multibase;
    if (bytes.size() < 2) return Errc::key_bad_codec;
    Curve curve;
    if (bytes[0] == kK256Codec[0] && bytes[1] == kK256Codec[1]) {
        curve = Curve::k256;
    } else if (bytes[0] == kP256Codec[0] && bytes[1] == kP256Codec[1]) {
        curve = Curve::p256;
    } else {
        return Errc::key_bad_codec;
    }
    const ByteView point(bytes.data() + 2, bytes.size() - 2);
    if (point.size() != 33) return Errc::key_bad_point;  // multikeys are always compressed
    return parse_public_key(curve, point);
}

Result<PublicKey> parse_did_key(std::string_view did_key) {
    if (!did_key.starts_with(kDidKeyPrefix)) return Errc::key_bad_multibase;
    return parse_multikey(did_key.substr(kDidKeyPrefix.size()));
}

Result<PublicKey> parse_legacy_multibase(Curve curve, std::string_view multibase) {
    if (multibase.empty() || multibase[0] != 'z') return Errc::key_bad_multibase;
    std::vector<std::uint8_t> bytes;
    bytes.reserve(70);
    if (multibase::base58btc_decode(multibase.substr(1), bytes) != Errc::ok) return Errc::key_bad_multibase;
    return parse_public_key(curve, bytes);
}

std::string to_multikey(const PublicKey& key) {
    std::array<std::uint8_t, 35> bytes;
    const std::uint8_t* codec = key.curve == Curve::k256 ? kK256Codec : kP256Codec;
    bytes[0] = codec[0];
    bytes[1] = codec[1];
    std::memcpy(bytes.data() + 2, key.compressed.data(), 33);
    std::string out;
    out.reserve(50);
    out.push_back('z');
    multibase::base58btc_encode(bytes, out);
    return out;
}

std::string to_did_key(const PublicKey& key) {
    std::string out(kDidKeyPrefix);
    out += to_multikey(key);
    return out;
}

Errc verify(const PublicKey& key, const std::uint8_t digest[32], ByteView sig) noexcept {
    if (sig.size() != 64) return Errc::sig_bad_length;
    if (cmp32(sig.data() + 32, half_order_of(key.curve).data()) > 0) return Errc::sig_high_s;
    PreparedKey p;
    if (p.reset(key) != Errc::ok) return Errc::bad_argument;
    return p.verify(digest, sig);
}

Errc verify_message(const PublicKey& key, ByteView message, ByteView sig) noexcept {
    const auto digest = sha256(message);
    return verify(key, digest.data(), sig);
}

Result<PublicKey> public_key_of(const PrivateKey& priv) {
    if ((priv.curve != Curve::k256 && priv.curve != Curve::p256) || !scalar_in_range(priv.curve, priv.secret)) {
        return Errc::bad_argument;
    }
    if (priv.curve == Curve::k256) {
        secp256k1_pubkey pk;
        if (secp256k1_ec_pubkey_create(k256_sign_ctx(), &pk, priv.secret.data()) != 1) return Errc::bad_argument;
        std::array<std::uint8_t, 33> c;
        std::size_t len = c.size();
        if (secp256k1_ec_pubkey_serialize(k256_verify_ctx(), c.data(), &len, &pk, SECP256K1_EC_COMPRESSED) != 1) {
            return Errc::bad_argument;
        }
        return parse_public_key(Curve::k256, c);
    }
    std::array<std::uint8_t, 33> c;
    if (!p256_compressed_of(priv.secret, c)) return Errc::bad_argument;
    return parse_public_key(Curve::p256, c);
}

std::array<std::uint8_t, 64> sign(const PrivateKey& priv, const std::uint8_t digest[32]) noexcept {
    std::array<std::uint8_t, 64> out{};
    if (!scalar_in_range(priv.curve, priv.secret)) return out;
    if (priv.curve == Curve::k256) {
        secp256k1_ecdsa_signature s;
        // nonce function NULL = RFC 6979; libsecp256k1 always produces low-S.
        if (secp256k1_ecdsa_sign(k256_sign_ctx(), &s, digest, priv.secret.data(), nullptr, nullptr) != 1 ||
            secp256k1_ecdsa_signature_serialize_compact(k256_verify_ctx(), out.data(), &s) != 1) {
            out.fill(0);
        }
        return out;
    }
    if (priv.curve != Curve::p256 || !sign_p256(priv.secret, digest, out)) {
        out.fill(0);
        return out;
    }
    if (cmp32(out.data() + 32, kP256HalfOrder.data()) > 0) negate_mod_order(kP256Order, out.data() + 32);
    return out;
}

PrivateKey generate(Curve curve) {
    static const int init = sodium_init();  // thread-safe once; < 0 only if no entropy source
    (void)init;
    PrivateKey k;
    k.curve = curve;
    do {
        randombytes_buf(k.secret.data(), k.secret.size());
    } while (!scalar_in_range(curve, k.secret));
    return k;
}

PrivateKey generate_from_seed(Curve curve, const std::array<std::uint8_t, 32>& seed) {
    PrivateKey k;
    k.curve = curve;
    std::uint8_t buf[36];
    std::memcpy(buf, seed.data(), 32);
    for (std::uint32_t counter = 0;; ++counter) {
        buf[32] = static_cast<std::uint8_t>(counter >> 24);
        buf[33] = static_cast<std::uint8_t>(counter >> 16);
        buf[34] = static_cast<std::uint8_t>(counter >> 8);
        buf[35] = static_cast<std::uint8_t>(counter);
        k.secret = sha256(ByteView(buf, sizeof buf));
        if (scalar_in_range(curve, k.secret)) return k;
    }
}

}  // namespace sov::crypto
