// sha256.cpp — SHA-256 (FIPS 180-4): one message (crypto::sha256) and several at once
// (crypto::sha256_many), see crypto.h.
//
// On x86-64 CPUs with the SHA extensions (SHA-NI) the compression function runs on
// sha256rnds2/sha256msg1/sha256msg2 directly. A single call then saves OpenSSL's
// Init/Update/Final bookkeeping (a 40-byte MST key: ≈ 85 ns against ≈ 120 ns on the bench
// machine), but the real gain is sha256_many: sha256rnds2 has a long latency and a short
// reciprocal throughput, so one message leaves the unit mostly idle while four messages
// interleaved round by round keep it busy (40-byte keys: ≈ 50 ns each instead of ≈ 120 ns;
// 500-byte blocks ≈ 2× faster). The verifier hashes every block of a commit's CAR slice and
// every key of every MST node it loads (for its height) that way.
//
// Elsewhere (no SHA-NI, or not x86-64) both go through OpenSSL's SHA256_* functions, one
// message at a time. The choice is made once, from CPUID, on first use.
//
// The state is kept in the layout sha256rnds2 works on: one register holds A,B,E,F and the
// other C,D,G,H (Intel SHA extensions reference, "state ABEF/CDGH"); message words are
// byte-swapped on load, and the digest is swapped back to big-endian on store.
#include "sovereign/crypto.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define SOV_SHA_NI 1
#endif

namespace sov::crypto {

namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
// OpenSSL's low-level interface: deprecated in 3.0 but present throughout 3.x, and 1.7× faster
// than EVP on the short inputs that dominate here (EVP fetches and allocates per call).
void sha256_openssl(ByteView data, std::uint8_t* out) noexcept {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, data.data(), data.size());
    SHA256_Final(out, &c);
}
#pragma GCC diagnostic pop

#ifdef SOV_SHA_NI

bool cpu_has_sha_ni() noexcept {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool sha = (b >> 29) & 1;
    return ssse3 && sse41 && sha;
}

// Asked on every call (a function-local static: safe from other translation units' static
// initialisers, and after the first call one predictable branch).
bool has_sha_ni() noexcept {
    static const bool has = cpu_has_sha_ni();
    return has;
}

alignas(16) constexpr std::uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

// One message as the compression function sees it: `full` 64-byte blocks straight from the
// input, then one or two blocks of `tail` (the rest of the input, 0x80, zeros, bit length).
struct Lane {
    const std::uint8_t* data = nullptr;
    std::size_t full = 0;
    std::size_t blocks = 0;  // full + tail blocks
    alignas(16) std::uint8_t tail[128];

    void set(ByteView m) noexcept {
        data = m.data();
        full = m.size() / 64;
        const std::size_t rest = m.size() % 64;
        const std::size_t tn = rest < 56 ? 64 : 128;
        std::memset(tail, 0, tn);
        if (rest) std::memcpy(tail, m.data() + full * 64, rest);
        tail[rest] = 0x80;
        const std::uint64_t bits = std::uint64_t(m.size()) * 8;
        for (std::size_t i = 0; i < 8; ++i) tail[tn - 1 - i] = std::uint8_t(bits >> (8 * i));
        blocks = full + tn / 64;
    }
    const std::uint8_t* block(std::size_t b) const noexcept { return b < full ? data + 64 * b : tail + 64 * (b - full); }
};

// N messages hashed in lock step, block by block, their rounds interleaved. A lane whose
// message has fewer blocks than the longest repeats its last block and discards the result.
template <int N>
__attribute__((target("sha,sse4.1,ssse3"))) void hash_lanes(const Lane* lanes, std::uint8_t (*out)[32]) noexcept {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    const __m128i abef0 = _mm_set_epi32(0x6a09e667, 0xbb67ae85, 0x510e527f, 0x9b05688c);
    const __m128i cdgh0 = _mm_set_epi32(0x3c6ef372, 0xa54ff53a, 0x1f83d9ab, 0x5be0cd19);
    __m128i s0[N], s1[N], w[N][4];
    std::size_t most = 0;
    for (int j = 0; j < N; ++j) {
        s0[j] = abef0;
        s1[j] = cdgh0;
        most = std::max(most, lanes[j].blocks);
    }
    for (std::size_t b = 0; b < most; ++b) {
        __m128i a0[N], a1[N];
        const std::uint8_t* p[N];
        for (int j = 0; j < N; ++j) {
            a0[j] = s0[j];
            a1[j] = s1[j];
            p[j] = lanes[j].block(std::min(b, lanes[j].blocks - 1));
        }
        // Fully unrolled, so that w, s0 and s1 stay in registers (indexed by constants).
#pragma GCC unroll 16
        for (int g = 0; g < 16; ++g) {
            const __m128i kg = _mm_load_si128(reinterpret_cast<const __m128i*>(kK + 4 * g));
#pragma GCC unroll 4
            for (int j = 0; j < N; ++j) {
                __m128i m;
                if (g < 4) {
                    m = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[j] + 16 * g)), bswap);
                } else {
                    // W[4g..4g+3] from the four groups before: σ0 terms (msg1), W[i-7] (alignr), σ1 terms (msg2).
                    const __m128i x = _mm_add_epi32(_mm_sha256msg1_epu32(w[j][g & 3], w[j][(g + 1) & 3]),
                                                    _mm_alignr_epi8(w[j][(g + 3) & 3], w[j][(g + 2) & 3], 4));
                    m = _mm_sha256msg2_epu32(x, w[j][(g + 3) & 3]);
                }
                w[j][g & 3] = m;
                __m128i k = _mm_add_epi32(m, kg);
                s1[j] = _mm_sha256rnds2_epu32(s1[j], s0[j], k);
                k = _mm_shuffle_epi32(k, 0x0E);
                s0[j] = _mm_sha256rnds2_epu32(s0[j], s1[j], k);
            }
        }
        for (int j = 0; j < N; ++j) {
            if (b < lanes[j].blocks) {
                s0[j] = _mm_add_epi32(s0[j], a0[j]);
                s1[j] = _mm_add_epi32(s1[j], a1[j]);
            } else {
                s0[j] = a0[j];
                s1[j] = a1[j];
            }
        }
    }
    for (int j = 0; j < N; ++j) {
        const __m128i feba = _mm_shuffle_epi32(s0[j], 0x1B);
        const __m128i dchg = _mm_shuffle_epi32(s1[j], 0xB1);
        const __m128i dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        const __m128i hgfe = _mm_alignr_epi8(dchg, feba, 8);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out[j]), _mm_shuffle_epi8(dcba, bswap));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out[j] + 16), _mm_shuffle_epi8(hgfe, bswap));
    }
}

#endif  // SOV_SHA_NI

}  // namespace

std::array<std::uint8_t, 32> sha256(ByteView data) noexcept {
    std::array<std::uint8_t, 32> out;
#ifdef SOV_SHA_NI
    if (has_sha_ni()) {
        Lane lane;
        lane.set(data);
        std::uint8_t d[1][32];
        hash_lanes<1>(&lane, d);
        std::memcpy(out.data(), d[0], 32);
        return out;
    }
#endif
    sha256_openssl(data, out.data());
    return out;
}

void sha256_many(std::span<const ByteView> in, std::array<std::uint8_t, 32>* out) noexcept {
    std::size_t i = 0;
#ifdef SOV_SHA_NI
    if (has_sha_ni()) {
        constexpr int kLanes = 4;
        Lane lanes[kLanes];
        std::uint8_t d[kLanes][32];
        for (; i + kLanes <= in.size(); i += kLanes) {
            for (int j = 0; j < kLanes; ++j) lanes[j].set(in[i + std::size_t(j)]);
            hash_lanes<kLanes>(lanes, d);
            for (int j = 0; j < kLanes; ++j) std::memcpy(out[i + std::size_t(j)].data(), d[j], 32);
        }
        const std::size_t left = in.size() - i;
        for (std::size_t j = 0; j < left; ++j) lanes[j].set(in[i + j]);
        if (left == 3) hash_lanes<3>(lanes, d);
        else if (left == 2) hash_lanes<2>(lanes, d);
        else if (left == 1) hash_lanes<1>(lanes, d);
        for (std::size_t j = 0; j < left; ++j) std::memcpy(out[i + j].data(), d[j], 32);
        return;
    }
#endif
    for (; i < in.size(); ++i) sha256_openssl(in[i], out[i].data());
}

}  // namespace sov::crypto
