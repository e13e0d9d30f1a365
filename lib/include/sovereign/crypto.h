// sovereign/crypto.h — SHA-256, atproto public keys (k256 / p256) and ECDSA verify / sign.
//
// atproto cryptography spec: signatures are 64-byte r‖s (big-endian, not DER), low-S on both curves,
// over a SHA-256 digest the caller computed (no double hashing). Keys are compressed SEC1
// points, carried as multikeys ('z' + base58btc(multicodec varint ‖ point)) or did:key.
// A PublicKey is a plain value (curve + compressed point, the shape a DID cache slot stores);
// a PreparedKey holds the curve library's decompressed form, so verifying
// through it never decompresses (k256: no allocation; p256: one reused OpenSSL context).
// Every free function here is safe to call from many threads at once.
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

/// A public key as a value: curve and 33-byte compressed SEC1 point (0x02/0x03 ‖ x, 32 bytes
/// big-endian). Trivially copyable (34 bytes). Made by parse_* / public_key_of, which check
/// that the point is on its curve; a default or hand-filled key may not be (PreparedKey::reset
/// says key_bad_point).
struct PublicKey {
    Curve curve = Curve::k256;
    std::array<std::uint8_t, 33> compressed{};
};

/// Same curve and point.
bool operator==(const PublicKey& a, const PublicKey& b) noexcept;

namespace detail {
struct P256Verifier;  // an OpenSSL EVP_PKEY and its verify context, defined in crypto.cpp
}

/// A PublicKey made ready to verify with: libsecp256k1's parsed point (k256) or an OpenSSL
/// EVP_PKEY with one EVP_PKEY_CTX initialised for verifying and reused by every call (p256).
/// Preparing costs a point decompression (k256: about a tenth of a verify; p256: about as
/// much as a verify): keep one per key (verify::Verifier caches them by point). Move-only. verify() is
/// not safe to call on one object from two threads at once (p256 reuses its context): one
/// object per thread.
class PreparedKey {
public:
    PreparedKey() noexcept;
    ~PreparedKey();
    PreparedKey(PreparedKey&&) noexcept;
    PreparedKey& operator=(PreparedKey&&) noexcept;
    PreparedKey(const PreparedKey&) = delete;
    PreparedKey& operator=(const PreparedKey&) = delete;

    /// Prepares `key`: ok, key_bad_point (not a point of its curve), bad_argument (unknown
    /// curve). On error the object is empty.
    Errc reset(const PublicKey& key);
    /// True until a reset() succeeds.
    bool empty() const noexcept { return !ready_; }
    /// The key last prepared (meaningful when !empty()).
    const PublicKey& key() const noexcept { return key_; }
    /// As crypto::verify below; bad_argument when empty. k256: no allocation.
    Errc verify(const std::uint8_t digest[32], ByteView sig) noexcept;

private:
    PublicKey key_;
    bool ready_ = false;
    alignas(8) std::array<std::uint8_t, 64> k256_{};  // secp256k1_pubkey
    std::unique_ptr<detail::P256Verifier> p256_;
};

/// Parse a SEC1 point: 33 bytes 02/03 ‖ x, or 65 bytes 04 ‖ x ‖ y (legacy); key_bad_point.
/// Checks the point is on the curve (a decompression); the result keeps only the compressed
/// form, so PreparedKey::reset decompresses again.
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
/// key whose point does not parse. Prepares the key on every call: for one-off checks; hot
/// paths keep a PreparedKey.
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
