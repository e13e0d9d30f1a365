// sovereign/commit.h — building and signing repository commits (v3): the unsigned commit,
// its low-S signature on either curve, the signed commit block and its CID. What a PDS does
// once per write; shared by mesh-sim and any tool that plays a PDS (simulated servers, tests).
// Source: atproto repository spec, "Commit Objects" (v3 fields, signed bytes = DAG-CBOR of
// the commit without `sig`); cryptography spec, "ECDSA Signatures" (64-byte r‖s, low-S).
#pragma once

#include "sovereign/cid.h"
#include "sovereign/crypto.h"
#include "sovereign/errc.h"

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace sov::commit {

/// The fields of a v3 commit. `prev` is always present in the encoding: null when empty
/// (the usual case), else a link. Views must stay valid while the struct is used.
struct Fields {
    std::string_view did;  ///< the repository's DID
    std::string_view rev;  ///< TID, greater than the repository's previous rev
    ByteView data;         ///< binary CID of the MST root (blessed dag-cbor CID)
    ByteView prev;         ///< binary CID of the previous commit, or empty (encoded as null)
};

/// Canonical DAG-CBOR of the unsigned commit: a 5-key map in the order did, rev, data, prev,
/// version (= 3). Its SHA-256 is the signed digest. Appends to `out`.
void encode_unsigned(const Fields& f, std::vector<std::uint8_t>& out);

/// Canonical DAG-CBOR of the signed commit: a 6-key map did, rev, sig, data, prev, version,
/// `sig` = the 64 bytes r‖s. Appends to `out`.
void encode_signed(const Fields& f, const std::array<std::uint8_t, 64>& sig, std::vector<std::uint8_t>& out);

/// Signs the unsigned commit: SHA-256 of encode_unsigned(f), then ECDSA with `key` (k256:
/// RFC 6979 deterministic; p256: random nonce), normalised to low-S (s ≤ n/2) on both curves.
/// Returns 64 bytes r‖s, big-endian. Errors: bad_argument when `key` is not a valid scalar.
Result<std::array<std::uint8_t, 64>> sign(const Fields& f, const crypto::PrivateKey& key);

/// The signed commit block ready for a CAR: its bytes and CIDv1(dag-cbor, sha2-256).
struct Block {
    std::vector<std::uint8_t> bytes;
    cid::Cid cid;
};

/// sign() then encode_signed() and the block's CID. `out.bytes` is replaced (capacity kept).
/// Errors: those of sign().
Errc build(const Fields& f, const crypto::PrivateKey& key, Block& out);

}  // namespace sov::commit
