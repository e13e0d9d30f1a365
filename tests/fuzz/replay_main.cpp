// Stand-in for libFuzzer under GCC: runs every seed file given on the command line (files
// or directories), then `--mutations N` deterministic mutants of each (bit flips, byte
// sets, truncations, splices). Catches crashes in the default test run; the real
// coverage-guided fuzzing is the clang `fuzz` suite.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
    std::size_t mutations = 2000;
    std::vector<std::vector<std::uint8_t>> seeds;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--mutations" && i + 1 < argc) { mutations = std::stoul(argv[++i]); continue; }
        std::vector<std::filesystem::path> files;
        if (std::filesystem::is_directory(a)) {
            for (auto& e : std::filesystem::recursive_directory_iterator(a))
                if (e.is_regular_file()) files.push_back(e.path());
        } else {
            files.push_back(a);
        }
        std::sort(files.begin(), files.end());
        for (auto& f : files) {
            std::ifstream in(f, std::ios::binary);
            seeds.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
    }
    if (seeds.empty()) seeds.push_back({});
    std::mt19937_64 rng(42);
    std::size_t runs = 0;
    for (auto& s : seeds) {
        LLVMFuzzerTestOneInput(s.data(), s.size());
        ++runs;
        for (std::size_t m = 0; m < mutations; ++m) {
            std::vector<std::uint8_t> x = s;
            int kind = int(rng() % 5);
            std::size_t n = x.empty() ? 0 : rng() % x.size();
            switch (kind) {
            case 0: if (!x.empty()) x[n] ^= std::uint8_t(1u << (rng() % 8)); break;
            case 1: if (!x.empty()) x[n] = std::uint8_t(rng()); break;
            case 2: x.resize(n); break;
            case 3: x.insert(x.begin() + std::ptrdiff_t(n), std::uint8_t(rng())); break;
            case 4: {
                auto& o = seeds[rng() % seeds.size()];
                if (!o.empty()) {
                    std::size_t k = rng() % o.size();
                    x.insert(x.begin() + std::ptrdiff_t(n), o.begin() + std::ptrdiff_t(k), o.end());
                }
                break;
            }
            }
            LLVMFuzzerTestOneInput(x.data(), x.size());
            ++runs;
        }
    }
    std::printf("%zu seeds, %zu runs, no crash\n", seeds.size(), runs);
    return 0;
}
