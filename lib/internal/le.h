// internal/le.h — little-endian fields of on-disk structures, read and written with memcpy
// (alignment-safe, no reinterpret_cast of file bytes). Used by the CVL index codec and the
// tombstone bitset. The host must be little-endian (checked here once); a big-endian port
// byte-swaps in get()/set() and nowhere else.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace sov::le {

static_assert(std::endian::native == std::endian::little, "on-disk formats are little-endian; port le.h first");

/// The value of type T stored little-endian at `p` (any alignment).
template <class T>
inline T get(const std::uint8_t* p) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

/// Stores `v` little-endian at `p` (any alignment).
template <class T>
inline void put(std::uint8_t* p, T v) noexcept {
    std::memcpy(p, &v, sizeof(T));
}

/// Appends `v` little-endian to `out`.
template <class T>
inline void append(std::vector<std::uint8_t>& out, T v) {
    std::uint8_t b[sizeof(T)];
    put(b, v);
    out.insert(out.end(), b, b + sizeof(T));
}

/// A little-endian field of a packed on-disk struct: alignment 1, sizeof(T) bytes, so a
/// struct of Fields has exactly the size of its table in the format document.
template <class T>
struct Field {
    std::uint8_t b[sizeof(T)];
    T get() const noexcept { return le::get<T>(b); }
    void set(T v) noexcept { le::put<T>(b, v); }
    operator T() const noexcept { return get(); }  // NOLINT: reads like the value it holds
};

using U16 = Field<std::uint16_t>;
using U32 = Field<std::uint32_t>;
using U64 = Field<std::uint64_t>;
using I32 = Field<std::int32_t>;
using I64 = Field<std::int64_t>;
static_assert(sizeof(U64) == 8 && alignof(U64) == 1);

/// Decodes a packed struct of Fields from `p` (the file bytes), by copy.
template <class S>
inline S load(const std::uint8_t* p) noexcept {
    static_assert(std::is_trivially_copyable_v<S> && alignof(S) == 1);
    S s;
    std::memcpy(&s, p, sizeof(S));
    return s;
}

/// Appends the bytes of a packed struct of Fields.
template <class S>
inline void append_struct(std::vector<std::uint8_t>& out, const S& s) {
    static_assert(std::is_trivially_copyable_v<S> && alignof(S) == 1);
    const auto* p = reinterpret_cast<const std::uint8_t*>(&s);
    out.insert(out.end(), p, p + sizeof(S));
}

}  // namespace sov::le
