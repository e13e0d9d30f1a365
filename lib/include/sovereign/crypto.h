// sovereign/crypto.h — SHA-256, atproto public keys (k256 / p256) and ECDSA verify / sign.
//
// docs/atproto.md §5: signatures are 64-byte r‖s (big-endian, not DER), low-S on both curves,
// over a SHA-256 digest the caller computed (no double hashing). Keys are compressed SEC1
// points, carried as multikeys ('z' + base58btc(multicodec varint ‖ point)) or did:key.
// A PublicKey holds the curve library's pre-parsed point, so verify() never decompresses;
// k256 verify allocates nothing. Every function here is safe to call from many threads at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sovereign/errc.h"

namespace sov::crypto {

/// SHA-256 of `data` (FIPS 180-4), via OpenSSL; 32-byte digest.
std::array<std::uint8_t, 32> sha256(ByteView data) noexcept;

/// The two atproto curves; values are stable (used in on-disk caches).
enum class Curve : std::uint8_t { k256 = 1, p256 = 2 };

/// "k256" or "p256".
std::string_view to_string(Curve c) noexcept;

namespace detail {
struct P256Key;  // an OpenSSL EVP_PKEY, defined in crypto.cpp
}

/// A parsed public key: curve, 33-byte compressed SEC1 point and an opaque pre-parsed form.
struct PublicKey {
    Curve curve = Curve::k256;
    std::array<std::uint8_t, 33> compressed{};  ///< 0x02/0x03 ‖ x (32 bytes, big-endian)
    // Opaque: libsecp256k1's secp256k1_pubkey for k256, a shared OpenSSL key for p256.
    alignas(8) std::array<std::uint8_t, 64> k256_parsed{};
    std::shared_ptr<const detail::P256Key> p256_parsed;
};

/// Same curve and point (the cached forms are not compared).
bool operator==(const PublicKey& a, const PublicKey& b) noexcept;

/// Parse a SEC1 point: 33 bytes 02/03 ‖ x, or 65 bytes 04 ‖ x ‖ y (legacy); key_bad_point.
/// Costs a point decompression (k256 ~10 µs, p256 ~60 µs): parse once per key, not per verify.
Result<PublicKey> parse_public_key(Curve curve, ByteView sec1);
/// Parse a multikey "z…" (§5 "Multikey"): codec E7 01 -> k256, 80 24 -> p256, then a 33-byte
/// compressed point; key_bad_multibase (not 'z' + base58btc), key_bad_codec, key_bad_point.
Result<PublicKey> parse_multikey(std::string_view multikey);
/// Parse "did:key:" + multikey (§5); key_bad_multibase when the prefix is missing, else as above.
Result<PublicKey> parse_did_key(std::string_view did_key);
/// Parse a legacy DID-doc publicKeyMultibase: 'z' + base58btc(raw 33- or 65-byte point, no
/// codec) of a known curve (§5 "Legacy DID-doc form"); key_bad_multibase, key_bad_point.
Result<PublicKey> parse_legacy_multibase(Curve curve, std::string_view multibase);
/// The multikey of `key`: "zQ3s…" (k256) or "zDn…" (p256).
std::string to_multikey(const PublicKey& key);
/// "did:key:" + to_multikey(key).
std::string to_did_key(const PublicKey& key);

/// Verify a 64-byte r‖s signature over a 32-byte digest (§5 "Signature"): ok, sig_bad_length
/// (not 64 bytes, e.g. DER), sig_high_s (s > n/2, either curve), sig_invalid; bad_argument for a
/// key not made by parse_* / public_key_of. k256: no allocation.
Errc verify(const PublicKey& key, const std::uint8_t digest[32], ByteView sig) noexcept;
/// verify(key, sha256(message), sig).
Errc verify_message(const PublicKey& key, ByteView message, ByteView sig) noexcept;

/// A private key: curve and 32-byte big-endian scalar in [1, n-1]. Test and traffic use only.
struct PrivateKey {
    Curve curve = Curve::k256;
    std::array<std::uint8_t, 32> secret{};
};

/// The public key of `priv`; bad_argument when the scalar is 0 or >= n.
Result<PublicKey> public_key_of(const PrivateKey& priv);
/// Sign a 32-byte digest: 64-byte low-S r‖s. k256 is deterministic (RFC 6979, libsecp256k1);
/// p256 uses OpenSSL's random nonce, then s := n - s when s > n/2. Precondition: valid `priv`
/// (else the result is all zeros).
std::array<std::uint8_t, 64> sign(const PrivateKey& priv, const std::uint8_t digest[32]) noexcept;
/// A fresh random private key (libsodium randombytes_buf, redrawn until in [1, n-1]).
PrivateKey generate(Curve curve);
/// A reproducible private key: secret = sha256(seed ‖ u32be counter) for counter = 0, 1, …
/// until the scalar is in [1, n-1].
PrivateKey generate_from_seed(Curve curve, const std::array<std::uint8_t, 32>& seed);

}  // namespace sov::crypto
