// BLAKE3, written from the specification (c2sp.org/BLAKE3, and the BLAKE3 paper §5 for the
// incremental tree algorithm). Section numbers below are the C2SP document's.
//
// Structure
// ---------
// * compress() is the spec §3.3 function: 7 rounds of 8 G calls, the message words permuted
//   between rounds. Instead of moving words we index them through kSchedule, the permutation
//   applied 0..6 times (spec §5.2), computed at compile time from the one permutation of §2.3.
// * A Hasher holds the chunk being filled and a stack of chaining values (CVs) of completed
//   subtrees. The stack holds one CV per set bit of the number of completed chunks, largest
//   subtree at the bottom, because left subtrees are full powers of two (spec §4.3.2). Adding a
//   chunk therefore merges with the top of the stack once per trailing zero bit of the new chunk
//   count, like carries in binary addition (paper §5.1).
// * A merge is only safe when the result cannot be the root, which must carry the ROOT flag.
//   So the current chunk is kept, even when full, until more input arrives; everything on the
//   stack then has something to its right, and no CV on the stack is ever the root.
//   finalize() folds the stack from the top into the current chunk's output and applies ROOT
//   to that last compression only, once per 64-byte output block (spec §4.4).
//
// Speed
// -----
// Within a chunk the 16 compressions are sequential, but distinct chunks are independent.
// When update() is at a chunk boundary with more than a chunk of input left, it hashes a whole
// aligned subtree (up to kMaxSubtree chunks) straight from the caller's buffer, with no copy:
// all its chunks side by side, then each level of parents side by side, and pushes the subtree
// CV onto the stack at its level (the merge rule above, counted in units of the subtree size).
// "Side by side" is hash_lanes(): N independent inputs of equal block count hashed together,
// with SIMD across inputs (word i of lane j in element j of vector i) — 8 lanes with AVX2,
// 4 with SSE4.1 — and the portable compress() for what is left. The vector code is compiled
// with per-function target attributes, so this file needs no -m flags, and is only called
// after __builtin_cpu_supports says the CPU (and OS) has the instructions.
// Blocks that are inherently sequential (within one chunk, the root, extendable output) use
// a one-block SSE4.1 compress that runs the four column (then diagonal) G calls side by side:
// about +12% over the portable code, which is what bounds 1 KiB inputs.
// A subtree must stay strictly shorter than the remaining input, again so that it is never
// the root. Unaligned starts (e.g. a 1-byte Merkle prefix) only cost the first chunk: once the
// current chunk is filled, the rest of the input is chunk-aligned in the stream.

#include "sovereign/blake3.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <utility>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SOV_B3_X86 1
#include <immintrin.h>
#else
#define SOV_B3_X86 0
#endif

namespace sov::blake3 {
namespace {

// Spec §2.2: the SHA-256 IV.
constexpr std::uint32_t kIV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

// Spec §2.4.
constexpr std::uint32_t CHUNK_START = 1u << 0;
constexpr std::uint32_t CHUNK_END = 1u << 1;
constexpr std::uint32_t PARENT = 1u << 2;
constexpr std::uint32_t ROOT = 1u << 3;
constexpr std::uint32_t KEYED_HASH = 1u << 4;
constexpr std::uint32_t DERIVE_KEY_CONTEXT = 1u << 5;
constexpr std::uint32_t DERIVE_KEY_MATERIAL = 1u << 6;

// Spec §2.3: one application of the message permutation; kSchedule[r][i] is the index of the
// original message word used at position i in round r.
constexpr std::uint8_t kPermutation[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};

constexpr std::array<std::array<std::uint8_t, 16>, 7> make_schedule() {
    std::array<std::array<std::uint8_t, 16>, 7> s{};
    for (std::uint8_t i = 0; i < 16; ++i) s[0][i] = i;
    for (std::size_t r = 1; r < 7; ++r)
        for (std::size_t i = 0; i < 16; ++i) s[r][i] = s[r - 1][kPermutation[i]];
    return s;
}
constexpr auto kSchedule = make_schedule();
static_assert(kSchedule[6][15] == 13, "spec §5.2 table, last row ends with 13");

constexpr std::size_t kMaxSubtree = 64;  // chunks hashed together by the fast path (64 KiB)

inline std::uint32_t load32(const std::uint8_t* p) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap32(w);
    return w;
}
inline void store32(std::uint8_t* p, std::uint32_t w) {
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap32(w);
    std::memcpy(p, &w, 4);
}
inline void load_words(const std::uint8_t* p, std::uint32_t* w, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) w[i] = load32(p + 4 * i);
}
inline void store_words(std::uint8_t* p, const std::uint32_t* w, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) store32(p + 4 * i, w[i]);
}

// ---------------------------------------------------------------------------------------------
// Portable compression function (spec §3.2, §3.3).

inline void g(std::uint32_t& a, std::uint32_t& b, std::uint32_t& c, std::uint32_t& d,
              std::uint32_t x, std::uint32_t y) {
    a = a + b + x;
    d = std::rotr(d ^ a, 16);
    c = c + d;
    b = std::rotr(b ^ c, 12);
    a = a + b + y;
    d = std::rotr(d ^ a, 8);
    c = c + d;
    b = std::rotr(b ^ c, 7);
}

template <std::size_t R>
inline void round_fn(std::uint32_t* v, const std::uint32_t* m) {
    constexpr const auto& s = kSchedule[R];
    g(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
    g(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
    g(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
    g(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
    g(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
    g(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
    g(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
    g(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// The 7 rounds on v, initialised from cv, counter, block length and flags (spec §3.3).
inline void rounds_portable(std::uint32_t v[16], const std::uint32_t cv[8], const std::uint32_t m[16],
                            std::uint64_t counter, std::uint32_t len, std::uint32_t flags) {
    for (int i = 0; i < 8; ++i) v[i] = cv[i];
    for (int i = 0; i < 4; ++i) v[8 + i] = kIV[i];
    v[12] = static_cast<std::uint32_t>(counter);
    v[13] = static_cast<std::uint32_t>(counter >> 32);
    v[14] = len;
    v[15] = flags;
    round_fn<0>(v, m);
    round_fn<1>(v, m);
    round_fn<2>(v, m);
    round_fn<3>(v, m);
    round_fn<4>(v, m);
    round_fn<5>(v, m);
    round_fn<6>(v, m);
}

// rounds_portable or its SSE4.1 equivalent, as the backend says (defined below). `len` is the
// number of message bytes in the block, 0..64 (spec §3.1).
void rounds(std::uint32_t v[16], const std::uint32_t cv[8], const std::uint32_t m[16], std::uint64_t counter,
            std::uint32_t len, std::uint32_t flags);

// Truncated output: the new chaining value, written over cv.
void compress_cv(std::uint32_t cv[8], const std::uint32_t m[16], std::uint64_t counter, std::uint32_t len,
                 std::uint32_t flags) {
    std::uint32_t v[16];
    rounds(v, cv, m, counter, len, flags);
    for (int i = 0; i < 8; ++i) cv[i] = v[i] ^ v[i + 8];
}

// Full 16-word output, for the root (extendable output, spec §4.4).
void compress_xof(const std::uint32_t cv[8], const std::uint32_t m[16], std::uint64_t counter, std::uint32_t len,
                  std::uint32_t flags, std::uint32_t out[16]) {
    std::uint32_t v[16];
    rounds(v, cv, m, counter, len, flags);
    for (int i = 0; i < 8; ++i) {
        out[i] = v[i] ^ v[i + 8];
        out[i + 8] = v[i + 8] ^ cv[i];
    }
}

// ---------------------------------------------------------------------------------------------
// Lanes: n independent inputs, each `blocks` consecutive 64-byte blocks, input j at
// in + j * stride. Lane j starts from `key`, uses counter + j * counter_step, sets `flags` on
// every block, `first_flags` on its first and `last_flags` on its last; its CV goes to
// out + 32 * j. Chunks: stride 1024, 16 blocks, step 1, CHUNK_START/CHUNK_END. Parents: stride
// 64, 1 block, step 0, PARENT in flags (spec §4.3.1).

struct LaneJob {
    const std::uint8_t* in;
    std::size_t stride;
    std::size_t blocks;
    const std::uint32_t* key;
    std::uint64_t counter;
    std::uint64_t counter_step;
    std::uint32_t flags, first_flags, last_flags;
};

inline std::uint32_t block_flags(const LaneJob& j, std::size_t b) {
    std::uint32_t f = j.flags;
    if (b == 0) f |= j.first_flags;
    if (b + 1 == j.blocks) f |= j.last_flags;
    return f;
}

void lanes_portable(const LaneJob& job, std::size_t n, std::uint8_t* out) {
    for (std::size_t j = 0; j < n; ++j) {
        std::uint32_t cv[8];
        std::memcpy(cv, job.key, sizeof cv);
        const std::uint8_t* p = job.in + j * job.stride;
        const std::uint64_t counter = job.counter + j * job.counter_step;
        for (std::size_t b = 0; b < job.blocks; ++b) {
            std::uint32_t m[16];
            load_words(p + b * block_len, m, 16);
            compress_cv(cv, m, counter, block_len, block_flags(job, b));
        }
        store_words(out + 32 * j, cv, 8);
    }
}

#if SOV_B3_X86
// ---------------------------------------------------------------------------------------------
// SSE4.1: 4 lanes. Vector i holds word i of lanes 0..3.

#define SOV_SSE41 __attribute__((target("sse4.1")))

SOV_SSE41 inline __m128i rot16_128(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
}
SOV_SSE41 inline __m128i rot8_128(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12));
}
SOV_SSE41 inline __m128i rot12_128(__m128i x) {
    return _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20));
}
SOV_SSE41 inline __m128i rot7_128(__m128i x) {
    return _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25));
}

SOV_SSE41 inline void g_128(__m128i& a, __m128i& b, __m128i& c, __m128i& d, __m128i x, __m128i y) {
    a = _mm_add_epi32(_mm_add_epi32(a, b), x);
    d = rot16_128(_mm_xor_si128(d, a));
    c = _mm_add_epi32(c, d);
    b = rot12_128(_mm_xor_si128(b, c));
    a = _mm_add_epi32(_mm_add_epi32(a, b), y);
    d = rot8_128(_mm_xor_si128(d, a));
    c = _mm_add_epi32(c, d);
    b = rot7_128(_mm_xor_si128(b, c));
}

template <std::size_t R>
SOV_SSE41 inline void round_128(__m128i* v, const __m128i* m) {
    constexpr const auto& s = kSchedule[R];
    g_128(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
    g_128(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
    g_128(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
    g_128(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
    g_128(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
    g_128(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
    g_128(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
    g_128(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// In place: rows r[0..3] become columns.
SOV_SSE41 inline void transpose4(__m128i* r) {
    const __m128i t0 = _mm_unpacklo_epi32(r[0], r[1]);
    const __m128i t1 = _mm_unpackhi_epi32(r[0], r[1]);
    const __m128i t2 = _mm_unpacklo_epi32(r[2], r[3]);
    const __m128i t3 = _mm_unpackhi_epi32(r[2], r[3]);
    r[0] = _mm_unpacklo_epi64(t0, t2);
    r[1] = _mm_unpackhi_epi64(t0, t2);
    r[2] = _mm_unpacklo_epi64(t1, t3);
    r[3] = _mm_unpackhi_epi64(t1, t3);
}

SOV_SSE41 void lanes4_sse41(const LaneJob& job, std::uint8_t* out) {
    __m128i h[8];
    for (int i = 0; i < 8; ++i) h[i] = _mm_set1_epi32(static_cast<int>(job.key[i]));
    std::uint32_t lo[4], hi[4];
    for (int j = 0; j < 4; ++j) {
        const std::uint64_t c = job.counter + static_cast<std::uint64_t>(j) * job.counter_step;
        lo[j] = static_cast<std::uint32_t>(c);
        hi[j] = static_cast<std::uint32_t>(c >> 32);
    }
    const __m128i counter_lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lo));
    const __m128i counter_hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi));
    for (std::size_t b = 0; b < job.blocks; ++b) {
        __m128i m[16];
        for (int q = 0; q < 4; ++q) {  // words 4q..4q+3 of the 4 lanes
            for (int j = 0; j < 4; ++j)
                m[4 * q + j] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(
                    job.in + static_cast<std::size_t>(j) * job.stride + b * block_len + 16 * q));
            transpose4(m + 4 * q);
        }
        __m128i v[16] = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
                         _mm_set1_epi32(static_cast<int>(kIV[0])), _mm_set1_epi32(static_cast<int>(kIV[1])),
                         _mm_set1_epi32(static_cast<int>(kIV[2])), _mm_set1_epi32(static_cast<int>(kIV[3])),
                         counter_lo, counter_hi, _mm_set1_epi32(static_cast<int>(block_len)),
                         _mm_set1_epi32(static_cast<int>(block_flags(job, b)))};
        round_128<0>(v, m);
        round_128<1>(v, m);
        round_128<2>(v, m);
        round_128<3>(v, m);
        round_128<4>(v, m);
        round_128<5>(v, m);
        round_128<6>(v, m);
        for (int i = 0; i < 8; ++i) h[i] = _mm_xor_si128(v[i], v[i + 8]);
    }
    transpose4(h);
    transpose4(h + 4);
    for (int j = 0; j < 4; ++j) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * j), h[j]);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * j + 16), h[4 + j]);
    }
}

// One block, rows in vectors (v[0..3], v[4..7], v[8..11], v[12..15]): the four column G calls
// run side by side, then the rows are rotated so that the diagonals line up as columns (spec
// §3.3, and §5.2's remark that each group of four G calls is parallel). Used where blocks are
// inherently sequential: within one chunk, the root, and extendable output.
SOV_SSE41 inline __m128i words4(const std::uint32_t* m, std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                std::uint8_t d) {
    return _mm_setr_epi32(static_cast<int>(m[a]), static_cast<int>(m[b]), static_cast<int>(m[c]),
                          static_cast<int>(m[d]));
}

template <std::size_t R>
SOV_SSE41 inline void round_rows(__m128i& r0, __m128i& r1, __m128i& r2, __m128i& r3, const std::uint32_t* m) {
    constexpr const auto& s = kSchedule[R];
    g_128(r0, r1, r2, r3, words4(m, s[0], s[2], s[4], s[6]), words4(m, s[1], s[3], s[5], s[7]));
    r1 = _mm_shuffle_epi32(r1, _MM_SHUFFLE(0, 3, 2, 1));  // lane i: v[4 + (i+1)%4]
    r2 = _mm_shuffle_epi32(r2, _MM_SHUFFLE(1, 0, 3, 2));  // lane i: v[8 + (i+2)%4]
    r3 = _mm_shuffle_epi32(r3, _MM_SHUFFLE(2, 1, 0, 3));  // lane i: v[12 + (i+3)%4]
    g_128(r0, r1, r2, r3, words4(m, s[8], s[10], s[12], s[14]), words4(m, s[9], s[11], s[13], s[15]));
    r1 = _mm_shuffle_epi32(r1, _MM_SHUFFLE(2, 1, 0, 3));
    r2 = _mm_shuffle_epi32(r2, _MM_SHUFFLE(1, 0, 3, 2));
    r3 = _mm_shuffle_epi32(r3, _MM_SHUFFLE(0, 3, 2, 1));
}

SOV_SSE41 void rounds_sse41(std::uint32_t out[16], const std::uint32_t cv[8], const std::uint32_t m[16],
                            std::uint64_t counter, std::uint32_t len, std::uint32_t flags) {
    __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cv));
    __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cv + 4));
    __m128i r2 = _mm_setr_epi32(static_cast<int>(kIV[0]), static_cast<int>(kIV[1]), static_cast<int>(kIV[2]),
                                static_cast<int>(kIV[3]));
    __m128i r3 = _mm_setr_epi32(static_cast<int>(static_cast<std::uint32_t>(counter)),
                                static_cast<int>(static_cast<std::uint32_t>(counter >> 32)),
                                static_cast<int>(len), static_cast<int>(flags));
    round_rows<0>(r0, r1, r2, r3, m);
    round_rows<1>(r0, r1, r2, r3, m);
    round_rows<2>(r0, r1, r2, r3, m);
    round_rows<3>(r0, r1, r2, r3, m);
    round_rows<4>(r0, r1, r2, r3, m);
    round_rows<5>(r0, r1, r2, r3, m);
    round_rows<6>(r0, r1, r2, r3, m);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), r0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), r1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), r2);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 12), r3);
}

// ---------------------------------------------------------------------------------------------
// AVX2: 8 lanes. Vector i holds word i of lanes 0..7.

#define SOV_AVX2 __attribute__((target("avx2")))

SOV_AVX2 inline __m256i rot16_256(__m256i x) {
    return _mm256_shuffle_epi8(x, _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
                                                   2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
}
SOV_AVX2 inline __m256i rot8_256(__m256i x) {
    return _mm256_shuffle_epi8(x, _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
                                                   1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12));
}
SOV_AVX2 inline __m256i rot12_256(__m256i x) {
    return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20));
}
SOV_AVX2 inline __m256i rot7_256(__m256i x) {
    return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25));
}

SOV_AVX2 inline void g_256(__m256i& a, __m256i& b, __m256i& c, __m256i& d, __m256i x, __m256i y) {
    a = _mm256_add_epi32(_mm256_add_epi32(a, b), x);
    d = rot16_256(_mm256_xor_si256(d, a));
    c = _mm256_add_epi32(c, d);
    b = rot12_256(_mm256_xor_si256(b, c));
    a = _mm256_add_epi32(_mm256_add_epi32(a, b), y);
    d = rot8_256(_mm256_xor_si256(d, a));
    c = _mm256_add_epi32(c, d);
    b = rot7_256(_mm256_xor_si256(b, c));
}

template <std::size_t R>
SOV_AVX2 inline void round_256(__m256i* v, const __m256i* m) {
    constexpr const auto& s = kSchedule[R];
    g_256(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
    g_256(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
    g_256(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
    g_256(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
    g_256(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
    g_256(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
    g_256(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
    g_256(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// In place: rows r[0..7] become columns (an 8x8 transpose of 32-bit words).
SOV_AVX2 inline void transpose8(__m256i* r) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);      // r_i[0] r_i+1[0] r_i[1] r_i+1[1] | [4],[5]
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);  // [2],[3] | [6],[7]
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);          // word 0 | word 4, of 4 rows
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);      // 1 | 5
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);  // 2 | 6
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);  // 3 | 7
    }
    for (int w = 0; w < 4; ++w) {
        r[w] = _mm256_permute2x128_si256(u[w], u[4 + w], 0x20);
        r[w + 4] = _mm256_permute2x128_si256(u[w], u[4 + w], 0x31);
    }
}

SOV_AVX2 void lanes8_avx2(const LaneJob& job, std::uint8_t* out) {
    __m256i h[8];
    for (int i = 0; i < 8; ++i) h[i] = _mm256_set1_epi32(static_cast<int>(job.key[i]));
    std::uint32_t lo[8], hi[8];
    for (int j = 0; j < 8; ++j) {
        const std::uint64_t c = job.counter + static_cast<std::uint64_t>(j) * job.counter_step;
        lo[j] = static_cast<std::uint32_t>(c);
        hi[j] = static_cast<std::uint32_t>(c >> 32);
    }
    const __m256i counter_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo));
    const __m256i counter_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi));
    for (std::size_t b = 0; b < job.blocks; ++b) {
        __m256i m[16];
        for (int half = 0; half < 2; ++half) {  // words 8*half .. 8*half+7 of the 8 lanes
            for (int j = 0; j < 8; ++j)
                m[8 * half + j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                    job.in + static_cast<std::size_t>(j) * job.stride + b * block_len + 32 * half));
            transpose8(m + 8 * half);
        }
        __m256i v[16] = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
                         _mm256_set1_epi32(static_cast<int>(kIV[0])), _mm256_set1_epi32(static_cast<int>(kIV[1])),
                         _mm256_set1_epi32(static_cast<int>(kIV[2])), _mm256_set1_epi32(static_cast<int>(kIV[3])),
                         counter_lo, counter_hi, _mm256_set1_epi32(static_cast<int>(block_len)),
                         _mm256_set1_epi32(static_cast<int>(block_flags(job, b)))};
        round_256<0>(v, m);
        round_256<1>(v, m);
        round_256<2>(v, m);
        round_256<3>(v, m);
        round_256<4>(v, m);
        round_256<5>(v, m);
        round_256<6>(v, m);
        for (int i = 0; i < 8; ++i) h[i] = _mm256_xor_si256(v[i], v[i + 8]);
    }
    transpose8(h);
    for (int j = 0; j < 8; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * j), h[j]);
}
#endif  // SOV_B3_X86

// ---------------------------------------------------------------------------------------------
// Backend selection.

bool cpu_has(Backend b) noexcept {
    switch (b) {
        case Backend::portable: return true;
#if SOV_B3_X86
        case Backend::sse41: __builtin_cpu_init(); return __builtin_cpu_supports("sse4.1");
        case Backend::avx2: __builtin_cpu_init(); return __builtin_cpu_supports("avx2");
#else
        case Backend::sse41:
        case Backend::avx2: return false;
#endif
    }
    return false;
}

constexpr std::uint8_t kUnset = 0xff;
std::atomic<std::uint8_t> g_backend{kUnset};

Backend current_backend() noexcept {
    std::uint8_t b = g_backend.load(std::memory_order_relaxed);
    if (b == kUnset) {
        Backend best = Backend::portable;
        if (cpu_has(Backend::sse41)) best = Backend::sse41;
        if (cpu_has(Backend::avx2)) best = Backend::avx2;
        b = static_cast<std::uint8_t>(best);
        g_backend.store(b, std::memory_order_relaxed);
    }
    return static_cast<Backend>(b);
}

void rounds(std::uint32_t v[16], const std::uint32_t cv[8], const std::uint32_t m[16], std::uint64_t counter,
            std::uint32_t len, std::uint32_t flags) {
#if SOV_B3_X86
    if (current_backend() != Backend::portable) {
        rounds_sse41(v, cv, m, counter, len, flags);
        return;
    }
#endif
    rounds_portable(v, cv, m, counter, len, flags);
}

// Runs a lane job over n lanes with the widest kernels the backend has.
void hash_lanes(LaneJob job, std::size_t n, std::uint8_t* out) {
    [[maybe_unused]] const Backend be = current_backend();
#if SOV_B3_X86
    if (be == Backend::avx2) {
        for (; n >= 8; n -= 8) {
            lanes8_avx2(job, out);
            job.in += 8 * job.stride;
            job.counter += 8 * job.counter_step;
            out += 8 * 32;
        }
    }
    if (be == Backend::avx2 || be == Backend::sse41) {
        for (; n >= 4; n -= 4) {
            lanes4_sse41(job, out);
            job.in += 4 * job.stride;
            job.counter += 4 * job.counter_step;
            out += 4 * 32;
        }
    }
#endif
    lanes_portable(job, n, out);
}

}  // namespace

Backend active_backend() noexcept { return current_backend(); }

bool backend_available(Backend b) noexcept { return cpu_has(b); }

bool set_backend(Backend b) noexcept {
    if (!cpu_has(b)) return false;
    g_backend.store(static_cast<std::uint8_t>(b), std::memory_order_relaxed);
    return true;
}

std::string_view to_string(Backend b) noexcept {
    switch (b) {
        case Backend::portable: return "portable";
        case Backend::sse41: return "sse4.1";
        case Backend::avx2: return "avx2";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Hasher.

Hasher::Hasher() : Hasher(kIV, 0) {}

Hasher::Hasher(const std::uint32_t key[8], std::uint32_t flags) : flags_(flags) {
    std::memcpy(key_, key, sizeof key_);
    // stack_ is left unset: only entries below stack_len_ are ever read (saves ~1.7 KiB of
    // stores per Hasher, which matters for the many 65-byte Merkle node hashes).
    std::memset(block_, 0, sizeof block_);
    reset();
}

Hasher Hasher::keyed(const std::uint8_t key[key_len]) {
    std::uint32_t words[8];
    load_words(key, words, 8);
    return Hasher(words, KEYED_HASH);
}

Hasher Hasher::derive_key(std::string_view context) {
    Hasher ctx(kIV, DERIVE_KEY_CONTEXT);
    ctx.update(as_bytes(context));
    const Digest context_key = ctx.finalize();
    std::uint32_t words[8];
    load_words(context_key.data(), words, 8);
    return Hasher(words, DERIVE_KEY_MATERIAL);
}

void Hasher::reset() {
    std::memcpy(chunk_cv_, key_, sizeof chunk_cv_);
    chunk_counter_ = 0;
    block_fill_ = 0;
    blocks_done_ = 0;
    stack_len_ = 0;
}

// Adds the CV of a complete subtree of 2^level chunks that starts at chunk chunk_counter_
// (a multiple of 2^level) and is known not to be the last input: merge per trailing zero.
void Hasher::push_subtree(const std::uint32_t cv_in[8], unsigned level) {
    std::uint32_t cv[8];
    std::memcpy(cv, cv_in, sizeof cv);
    chunk_counter_ += std::uint64_t{1} << level;
    for (std::uint64_t total = chunk_counter_ >> level; (total & 1) == 0; total >>= 1) {
        std::uint32_t m[16];
        std::memcpy(m, stack_[--stack_len_], 32);
        std::memcpy(m + 8, cv, 32);
        std::memcpy(cv, key_, sizeof cv);
        compress_cv(cv, m, 0, block_len, flags_ | PARENT);
    }
    std::memcpy(stack_[stack_len_++], cv, sizeof cv);
}

// Appends n bytes to the current chunk; the caller guarantees they fit (spec §4.2). The last
// block seen stays in block_ until more bytes prove it is not the chunk's last.
void Hasher::add_chunk_bytes(const std::uint8_t* in, std::size_t n) {
    std::uint32_t m[16];
    if (block_fill_ > 0) {
        const std::size_t take = std::min<std::size_t>(block_len - block_fill_, n);
        std::memcpy(block_ + block_fill_, in, take);
        block_fill_ = static_cast<std::uint8_t>(block_fill_ + take);
        in += take;
        n -= take;
        if (n == 0) return;
        load_words(block_, m, 16);
        compress_cv(chunk_cv_, m, chunk_counter_, block_len, flags_ | (blocks_done_ == 0 ? CHUNK_START : 0u));
        ++blocks_done_;
        block_fill_ = 0;
    }
    for (; n > block_len; n -= block_len, in += block_len) {
        load_words(in, m, 16);
        compress_cv(chunk_cv_, m, chunk_counter_, block_len, flags_ | (blocks_done_ == 0 ? CHUNK_START : 0u));
        ++blocks_done_;
    }
    std::memcpy(block_, in, n);
    block_fill_ = static_cast<std::uint8_t>(n);
}

void Hasher::update(ByteView data) {
    const std::uint8_t* in = data.data();
    std::size_t n = data.size();
    while (n > 0) {
        std::size_t have = std::size_t{blocks_done_} * block_len + block_fill_;
        if (have == chunk_len) {  // full, and more input follows: not the root, fold it in
            std::uint32_t m[16];
            load_words(block_, m, 16);
            compress_cv(chunk_cv_, m, chunk_counter_, block_len, flags_ | CHUNK_END);
            std::uint32_t cv[8];
            std::memcpy(cv, chunk_cv_, sizeof cv);
            push_subtree(cv, 0);
            std::memcpy(chunk_cv_, key_, sizeof chunk_cv_);
            blocks_done_ = 0;
            block_fill_ = 0;
            have = 0;
        }
        if (have == 0 && n > chunk_len) {
            // Fast path: whole aligned subtrees straight from the input, each strictly shorter
            // than what is left so that none is the root.
            alignas(32) std::uint8_t cvs[2][kMaxSubtree * 32];
            while (n > chunk_len) {
                unsigned level = 0;
                while ((std::size_t{1} << (level + 1)) <= kMaxSubtree &&
                       (chunk_counter_ & ((std::uint64_t{2} << level) - 1)) == 0 &&
                       (std::size_t{2} << level) * chunk_len < n)
                    ++level;
                std::size_t count = std::size_t{1} << level;
                hash_lanes({in, chunk_len, chunk_len / block_len, key_, chunk_counter_, 1, flags_, CHUNK_START,
                            CHUNK_END},
                           count, cvs[0]);
                int cur = 0;
                for (; count > 1; count /= 2, cur ^= 1)
                    hash_lanes({cvs[cur], block_len, 1, key_, 0, 0, flags_ | PARENT, 0, 0}, count / 2, cvs[cur ^ 1]);
                std::uint32_t cv[8];
                load_words(cvs[cur], cv, 8);
                push_subtree(cv, level);
                in += (std::size_t{1} << level) * chunk_len;
                n -= (std::size_t{1} << level) * chunk_len;
            }
        }
        const std::size_t take = std::min(chunk_len - have, n);
        add_chunk_bytes(in, take);
        in += take;
        n -= take;
    }
}

void Hasher::finalize_seek(std::uint64_t offset, std::uint8_t* out, std::size_t len) const {
    if (len == 0) return;
    // The root node's compression inputs (spec §4.3): start from the current chunk's last block,
    // then fold in the stack from the top; only the very last compression is the root.
    std::uint32_t cv[8];
    std::uint32_t m[16];
    std::uint8_t padded[block_len] = {};
    std::memcpy(padded, block_, block_fill_);
    std::memcpy(cv, chunk_cv_, sizeof cv);
    load_words(padded, m, 16);
    std::uint64_t counter = chunk_counter_;
    std::uint32_t len_word = block_fill_;
    std::uint32_t flags = flags_ | CHUNK_END | (blocks_done_ == 0 ? CHUNK_START : 0u);
    for (std::size_t i = stack_len_; i-- > 0;) {
        compress_cv(cv, m, counter, len_word, flags);  // the child's CV, not the root
        std::memcpy(m + 8, cv, 32);
        std::memcpy(m, stack_[i], 32);
        std::memcpy(cv, key_, sizeof cv);
        counter = 0;
        len_word = block_len;
        flags = flags_ | PARENT;
    }
    // Extendable output (spec §4.4): output block k is the root compression with counter k.
    std::uint64_t block_index = offset / block_len;
    std::size_t skip = static_cast<std::size_t>(offset % block_len);
    while (len > 0) {
        std::uint32_t words[16];
        std::uint8_t bytes[block_len];
        compress_xof(cv, m, block_index, len_word, flags | ROOT, words);
        store_words(bytes, words, 16);
        const std::size_t take = std::min(block_len - skip, len);
        std::memcpy(out, bytes + skip, take);
        out += take;
        len -= take;
        skip = 0;
        ++block_index;
    }
}

void Hasher::finalize(std::uint8_t* out, std::size_t n) const { finalize_seek(0, out, n); }

Digest Hasher::finalize() const {
    Digest d;
    finalize_seek(0, d.data(), d.size());
    return d;
}

Digest hash(ByteView data) {
    Hasher h;
    h.update(data);
    return h.finalize();
}

Digest keyed_hash(const std::uint8_t key[key_len], ByteView data) {
    Hasher h = Hasher::keyed(key);
    h.update(data);
    return h.finalize();
}

}  // namespace sov::blake3
