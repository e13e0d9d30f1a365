// sovereign/varint.h — unsigned LEB128 varints, minimal encoding enforced.
// Source: multiformats unsigned-varint README (docs/protocol.md §3); frame records use at
// most 4 bytes (docs/design.md §2), CIDs and CAR sections at most 9.
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sov::varint {

/// Decodes one varint from the front of `in` using at most `max_bytes` bytes (≤ 9).
/// On success sets `value` and `len` (bytes consumed). Errors: truncated (input ends in a
/// continuation byte), varint_overflow (more than max_bytes), varint_non_minimal (a final
/// 0x00 group after the first byte).
inline Errc decode(ByteView in, std::uint64_t& value, std::size_t& len, std::size_t max_bytes = 9) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < max_bytes; ++i) {
        if (i >= in.size()) return Errc::truncated;
        std::uint8_t b = in[i];
        v |= std::uint64_t(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0) return Errc::varint_non_minimal;
            value = v;
            len = i + 1;
            return Errc::ok;
        }
    }
    return Errc::varint_overflow;
}

/// Number of bytes `encode` writes for `v` (1..10).
inline std::size_t encoded_size(std::uint64_t v) noexcept {
    std::size_t n = 1;
    while (v >= 0x80) { v >>= 7; ++n; }
    return n;
}

/// Writes the minimal encoding of `v` to `out` (which must have encoded_size(v) bytes);
/// returns the number of bytes written.
inline std::size_t encode(std::uint64_t v, std::uint8_t* out) noexcept {
    std::size_t n = 0;
    while (v >= 0x80) { out[n++] = std::uint8_t(v) | 0x80; v >>= 7; }
    out[n++] = std::uint8_t(v);
    return n;
}

/// Appends the minimal encoding of `v`.
inline void append(std::uint64_t v, std::vector<std::uint8_t>& out) {
    std::uint8_t buf[10];
    std::size_t n = encode(v, buf);
    out.insert(out.end(), buf, buf + n);
}

}  // namespace sov::varint
