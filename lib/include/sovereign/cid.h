// sovereign/cid.h — CIDv1: binary parsing, SHA-256 computation, base32 text form.
// Source: docs/protocol.md §3 (atproto data-model spec, "Link and CID Formats"; DASL cid.md).
#pragma once

#include "sovereign/errc.h"

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace sov::cid {

inline constexpr std::uint64_t kCodecDagCbor = 0x71;
inline constexpr std::uint64_t kCodecRaw = 0x55;
inline constexpr std::uint64_t kHashSha256 = 0x12;
inline constexpr std::size_t kMaxLen = 100;          ///< recommended CID size limit, bytes
inline constexpr std::size_t kBlessedLen = 36;       ///< v1 + codec + sha2-256 + 32-byte digest

/// The parts of a binary CID (views into the input).
struct Info {
    std::uint64_t codec = 0;
    std::uint64_t hash_code = 0;
    ByteView digest;
};

/// Parses a whole binary CIDv1 (generic: varint codec, hash code, length, digest; exactly
/// consuming `in`, ≤ 100 bytes). Errors: cid_bad_version, truncated, trailing_bytes,
/// varint_* errors, too_large.
Errc parse(ByteView in, Info& out) noexcept;
/// parse() without the parts.
Errc check_binary(ByteView in) noexcept;
/// True for the "blessed" form required of commit/MST links: v1, dag-cbor or raw, sha2-256.
bool is_blessed(ByteView in) noexcept;

/// An owned CID (inline storage, no heap). Ordered and hashed by its binary bytes.
class Cid {
public:
    Cid() = default;
    /// Copies a binary CID (unchecked; at most kMaxLen bytes, longer input is truncated).
    explicit Cid(ByteView b) noexcept : len_(std::uint8_t(b.size() > kMaxLen ? kMaxLen : b.size())) {
        if (len_) std::memcpy(buf_.data(), b.data(), len_);
    }
    ByteView bytes() const noexcept { return {buf_.data(), len_}; }
    bool empty() const noexcept { return len_ == 0; }
    std::size_t size() const noexcept { return len_; }
    friend bool operator==(const Cid& a, const Cid& b) noexcept {
        return a.len_ == b.len_ && (a.len_ == 0 || std::memcmp(a.buf_.data(), b.buf_.data(), a.len_) == 0);
    }
    friend bool operator==(const Cid& a, ByteView b) noexcept {
        return a.len_ == b.size() && (a.len_ == 0 || std::memcmp(a.buf_.data(), b.data(), a.len_) == 0);
    }

private:
    std::array<std::uint8_t, kMaxLen> buf_{};
    std::uint8_t len_ = 0;
};

/// CIDv1(codec, sha2-256(data)): 36 bytes for codecs below 0x80 (dag-cbor, raw), longer
/// for multi-byte codec varints. Uses OpenSSL SHA-256.
Cid compute(std::uint64_t codec, ByteView data) noexcept;
/// True if `data` hashes to `cid` under the CID's own hash function (sha2-256 only;
/// other hash codes give false).
bool matches(ByteView cid, ByteView data) noexcept;

/// Text form: 'b' + lowercase base32 (no padding). Appends to `out`.
void append_string(ByteView cid, std::string& out);
std::string to_string(ByteView cid);
inline std::string to_string(const Cid& c) { return to_string(c.bytes()); }
/// Parses the 'b' + base32 text form of a CIDv1 (also validating the binary). Errors:
/// cid_bad_text, base_* errors, and those of parse().
Errc from_string(std::string_view text, Cid& out) noexcept;

/// Byte equality of two binary CIDs.
inline bool equal(ByteView a, ByteView b) noexcept {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace sov::cid
