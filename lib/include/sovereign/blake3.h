// sovereign/blake3.h — BLAKE3 hashing: hash, keyed_hash and derive_key modes, extendable output.
//
// Implemented from the specification (c2sp.org/BLAKE3; the BLAKE3 paper, §2–§5) and checked
// against the official test vectors. Used for the Merkle trees over archived messages
// (leaf = BLAKE3(0x00 ‖ data), node = BLAKE3(0x01 ‖ left ‖ right)). No errors: every input,
// of any length up to 2^64 − 1 bytes and split any way across update() calls, has one output.
// A portable implementation always works; SSE4.1 and AVX2 paths are chosen at run time
// (see `Backend`) and give the same bytes. Design notes are at the top of lib/blake3.cpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sovereign/errc.h"

namespace sov::blake3 {

inline constexpr std::size_t key_len = 32;     ///< bytes of a keyed_hash key (spec §4.1)
inline constexpr std::size_t out_len = 32;     ///< bytes of the default output (spec §4.3)
inline constexpr std::size_t block_len = 64;   ///< bytes per compression (spec §3.1)
inline constexpr std::size_t chunk_len = 1024; ///< bytes per chunk, a tree leaf (spec §4.2)

using Digest = std::array<std::uint8_t, out_len>;

/// Incremental BLAKE3 (spec §5.1). A plain value: copyable, about 1.9 KiB, no heap, not
/// thread-safe per object (distinct objects may be used from distinct threads).
class Hasher {
public:
    /// Unkeyed `hash` mode (spec §4.1: the key is the IV).
    Hasher();
    /// `keyed_hash` mode: `key` is exactly 32 bytes (key_len), read as 8 little-endian words.
    static Hasher keyed(const std::uint8_t key[key_len]);
    /// `derive_key` mode: `context` (any bytes, ideally a hard-coded, globally unique string) is
    /// hashed with DERIVE_KEY_CONTEXT; the input then is the key material (spec §4.1).
    static Hasher derive_key(std::string_view context);

    /// Appends input. Any split of the same bytes gives the same output.
    void update(ByteView data);
    /// Writes the first `out_len` bytes of the output stream to `out` (any length, including 0
    /// and more than 32: extendable output, spec §4.4). Does not change the state, so more
    /// input may follow and finalize may be called again.
    void finalize(std::uint8_t* out, std::size_t out_len) const;
    /// The default 32-byte output.
    Digest finalize() const;
    /// Writes `len` bytes of the output stream starting at byte `offset` (spec §5.4: seeking
    /// costs no more than producing the bytes asked for). finalize(out, n) ==
    /// finalize_seek(0, out, n).
    void finalize_seek(std::uint64_t offset, std::uint8_t* out, std::size_t len) const;
    /// Forgets all input; keeps the mode and key (derive_key: the derived context key).
    void reset();

private:
    Hasher(const std::uint32_t key[8], std::uint32_t flags);
    void push_subtree(const std::uint32_t cv[8], unsigned level);
    void add_chunk_bytes(const std::uint8_t* in, std::size_t n);

    std::uint32_t key_[8];
    std::uint32_t flags_;              ///< mode flag: 0, KEYED_HASH or DERIVE_KEY_MATERIAL
    // The chunk being filled (spec §4.2). It always holds the last chunk seen: a full chunk is
    // only folded into the tree once more input proves it is not the root.
    std::uint32_t chunk_cv_[8];
    std::uint64_t chunk_counter_ = 0;  ///< index of the current chunk = chunks before it
    std::uint8_t block_[block_len];    ///< the current chunk's unprocessed tail, < 64 bytes or a last full block
    std::uint8_t block_fill_ = 0;      ///< bytes in block_
    std::uint8_t blocks_done_ = 0;     ///< blocks of the current chunk already compressed
    // Chaining values of completed subtrees, one per set bit of chunk_counter_, largest first
    // (paper §5.1). 2^64 bytes is 2^54 chunks, so 54 entries suffice.
    std::uint8_t stack_len_ = 0;
    std::uint32_t stack_[54][8];
};

/// One-shot `hash` mode, default 32-byte output.
Digest hash(ByteView data);
/// One-shot `keyed_hash` mode, default 32-byte output.
Digest keyed_hash(const std::uint8_t key[key_len], ByteView data);

/// The compression-function implementations. `active_backend()` is the best one this CPU
/// supports (chosen at first use with __builtin_cpu_supports); `set_backend` is for tests and
/// benchmarks: it returns false (and changes nothing) if the CPU or build lacks that backend.
/// Process-wide; do not switch while other threads hash.
enum class Backend : std::uint8_t { portable = 0, sse41 = 1, avx2 = 2 };
Backend active_backend() noexcept;
bool backend_available(Backend b) noexcept;
bool set_backend(Backend b) noexcept;
std::string_view to_string(Backend b) noexcept;

}  // namespace sov::blake3
