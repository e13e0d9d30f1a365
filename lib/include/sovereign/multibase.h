// sovereign/multibase.h — base32 (lower, no padding), base58btc and base64 codecs.
//
// base32 is the CID text alphabet (docs/protocol.md §3) and is on the hot path, so it has a
// table-driven codec that never allocates beyond growing the caller's output. base58btc carries
// multikeys and did:key (§5). base64 wraps libsodium: strict forms for PLC signatures (§7: no
// '=', no whitespace, zero padding bits) and a lenient form for DAG-JSON "$bytes" (padding
// accepted on read). Encoders and vector decoders APPEND to `out`; on error `out` is restored to
// its size at entry.
//
// Errors: base_bad_char (character outside the alphabet, incl. whitespace), base_bad_padding
// ('=' where forbidden, or non-zero padding bits), truncated (a length no encoding produces,
// e.g. base32 length % 8 in {1,3,6}), bad_argument (caller buffer too small). When several
// apply, the first offending character decides, then the length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sovereign/errc.h"

namespace sov::multibase {

// ---- base32, RFC 4648 §6 alphabet lowercased ("abcdefghijklmnopqrstuvwxyz234567"), unpadded ----

/// Characters base32_encode produces for n bytes: ceil(8n/5).
constexpr std::size_t base32_encoded_size(std::size_t n) noexcept { return (n * 8 + 4) / 5; }
/// Bytes a valid unpadded base32 text of n characters decodes to: floor(5n/8).
constexpr std::size_t base32_decoded_size(std::size_t n) noexcept { return n * 5 / 8; }
/// Append the lowercase unpadded base32 of `in` to `out` (docs/protocol.md §3).
void base32_encode(ByteView in, std::string& out);
/// Append the bytes of unpadded lowercase base32 `in` to `out`; base_bad_char (uppercase
/// included), base_bad_padding ('=' or non-zero trailing bits), truncated (length % 8 in {1,3,6}).
Errc base32_decode(std::string_view in, std::vector<std::uint8_t>& out);
/// Decode `in` into `out[0, n)`, n = base32_decoded_size(in.size()); bad_argument (checked first)
/// when out.size() < n, then errors as above. Returns n.
Result<std::size_t> base32_decode_into(std::string_view in, std::span<std::uint8_t> out);

// ---- base58btc (alphabet "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz") ----

/// Append the base58btc of `in` to `out`; each leading 0x00 byte becomes '1' (§5 "Multikey").
/// Quadratic in the input length: meant for keys and hashes, not bulk data.
void base58btc_encode(ByteView in, std::string& out);
/// Append the bytes of base58btc `in` to `out`; each leading '1' becomes 0x00; base_bad_char.
/// Inputs over 4096 characters are refused with too_large (quadratic cost).
Errc base58btc_decode(std::string_view in, std::vector<std::uint8_t>& out);

// ---- base64 (RFC 4648 §4 standard and §5 url alphabets), via libsodium ----

/// Append standard-alphabet base64 without '=' padding (DAG-JSON "$bytes" write form).
void base64_encode(ByteView in, std::string& out);
/// Append url-alphabet base64 without '=' padding (PLC "sig", docs/protocol.md §7).
void base64url_encode(ByteView in, std::string& out);
/// Strict standard-alphabet decode: no '=' (base_bad_padding), no whitespace or foreign
/// characters (base_bad_char), zero padding bits (base_bad_padding), length % 4 != 1 (truncated).
Errc base64_decode(std::string_view in, std::vector<std::uint8_t>& out);
/// Strict url-alphabet decode, the PLC signature rules of docs/protocol.md §7; errors as above.
Errc base64url_decode(std::string_view in, std::vector<std::uint8_t>& out);
/// Standard-alphabet decode accepting optional '=' padding (DAG-JSON "$bytes" read form):
/// padded input must be a multiple of 4 with at most two '='; otherwise as base64_decode.
Errc base64_decode_lenient(std::string_view in, std::vector<std::uint8_t>& out);

// ---- multibase prefix dispatch ----

/// Decode a multibase string by its prefix: 'b' base32 lower, 'z' base58btc, 'm' base64,
/// 'u' base64url (all unpadded, strict); any other prefix or empty input -> base_bad_char.
Errc decode(std::string_view text, std::vector<std::uint8_t>& out);

}  // namespace sov::multibase
