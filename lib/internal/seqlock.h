// internal/seqlock.h — the DID cache's per-slot seqlock (docs/format-did-cache.md §3, "the
// sequence counter"): one 64-byte slot of eight 8-byte words, word 0's low 32 bits being the
// counter. Shared by lib/did_cache.cpp and its unit test, which drives a write into the middle
// of a read (the interleaving a multi-process test almost never hits on one cache line).
//
// Every access is an 8-byte std::atomic_ref on 8-aligned words (no mixed sizes), so the
// protocol is free of data races in the C++ model:
//  - writer: word 0 ← counter+1 (odd) relaxed; release fence; words 1..7 relaxed; word 0 ←
//    counter+2 with the new flags and id bytes, release.
//  - reader: word 0 acquire (odd: retry); words 1..7 relaxed; acquire fence; word 0 again,
//    relaxed: the copy is whole only when it is unchanged.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

namespace sov::didcache::seqlock {

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);

/// The 8-byte word at `p` (8-aligned, in a mapping or buffer several threads may share).
inline std::atomic_ref<std::uint64_t> word(const std::uint8_t* p) noexcept {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(const_cast<std::uint8_t*>(p)));
}

/// Does nothing: try_read's default between-loads hook.
struct NoHook {
    void operator()() const noexcept {}
};

/// One attempt at copying the slot at `s` (64 bytes, 8-aligned) into `out` (its eight words,
/// native = little-endian): true when the copy is whole, false when the counter was odd or
/// changed under the copy (the caller retries or takes a slower path). `between` runs after the
/// first load of word 0 and before the others: the test's window for a concurrent write.
template <class Hook = NoHook>
inline bool try_read(const std::uint8_t* s, std::uint64_t out[8], Hook&& between = {}) noexcept {
    const std::uint64_t w0 = word(s).load(std::memory_order_acquire);
    if (w0 & 1) return false;
    between();
    out[0] = w0;
    for (int i = 1; i < 8; ++i) out[i] = word(s + 8 * i).load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    return word(s).load(std::memory_order_relaxed) == w0;
}

/// Publishes the 64-byte image `img` (its 4 counter bytes are ignored) into the slot at `s`,
/// advancing the counter by 2. One writer per slot at a time.
inline void write(std::uint8_t* s, const std::uint8_t* img) noexcept {
    constexpr std::uint64_t kCounter = 0xffffffffu;
    const std::uint64_t w0 = word(s).load(std::memory_order_relaxed);
    const std::uint32_t seq = std::uint32_t(w0);
    word(s).store((w0 & ~kCounter) | std::uint32_t(seq + 1), std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    std::uint64_t w[8];
    std::memcpy(w, img, 64);
    for (int i = 1; i < 8; ++i) word(s + 8 * i).store(w[i], std::memory_order_relaxed);
    word(s).store((w[0] & ~kCounter) | std::uint32_t(seq + 2), std::memory_order_release);
}

}  // namespace sov::didcache::seqlock
