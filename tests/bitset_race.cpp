// bitset_race DIR N SEED [PAUSE_US] — a writer process for the cross-process test of
// sov::bitset (tests/test_bitset.cpp): sets N pseudo-random ordinals of the tombstone set in
// DIR and exits 0 (2 on usage or I/O error). The ordinals are race_ordinal(SEED, i) for
// i < N, a window straddling the file boundary at 2^32 so that two writers race to create
// both files. PAUSE_US > 0 sleeps that long every 1024 bits, so a reader overlaps the writes.
//
// race_ordinal() must stay identical to the copy in test_bitset.cpp.
#include "sovereign/bitset.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

std::uint64_t race_ordinal(std::uint64_t seed, std::uint64_t i) {
    std::uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;  // splitmix64
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (std::uint64_t{1} << 32) - (std::uint64_t{1} << 19) + z % (std::uint64_t{1} << 20);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4 || argc > 5) {
        std::fprintf(stderr, "usage: bitset_race DIR N SEED [PAUSE_US]\n");
        return 2;
    }
    const std::uint64_t n = std::strtoull(argv[2], nullptr, 10);
    const std::uint64_t seed = std::strtoull(argv[3], nullptr, 10);
    const long pause_us = argc == 5 ? std::strtol(argv[4], nullptr, 10) : 0;
    std::string err;
    auto set = sov::bitset::Set::open(argv[1], true, &err);
    if (!set) {
        std::fprintf(stderr, "bitset_race: %s\n", err.c_str());
        return 2;
    }
    for (std::uint64_t i = 0; i < n; ++i) {
        if (auto r = set->set(race_ordinal(seed, i)); !r) {
            std::fprintf(stderr, "bitset_race: %s\n", set->last_error().c_str());
            return 2;
        }
        if (pause_us > 0 && (i & 1023) == 1023)
            std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    }
    return 0;
}
