// Shared test helpers: locating the real corpus and reading files.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace testutil {

/// The corpus directory: $SOVEREIGN_CORPUS, else the build's default (../shared/corpus).
/// nullopt if it does not exist (tests then WARN and skip).
inline std::optional<std::filesystem::path> corpus() {
    const char* env = std::getenv("SOVEREIGN_CORPUS");
    std::filesystem::path p = env && *env ? env : SOVEREIGN_CORPUS_DEFAULT;
    if (std::filesystem::is_directory(p)) return p;
    return std::nullopt;
}

/// Project-generated test data (tests/data, committed).
inline std::filesystem::path data_dir() { return SOVEREIGN_TEST_DATA; }

/// Path of a corpus file, or "" after a WARN (the test then skips) when it is absent.
inline std::string corpus_path(const std::string& rel) {
    auto dir = corpus();
    if (!dir || !std::filesystem::exists(*dir / rel)) {
        WARN("corpus absent at " << (dir ? (*dir / rel).string() : std::string(SOVEREIGN_CORPUS_DEFAULT)) << ": skipping");
        return {};
    }
    return (*dir / rel).string();
}

inline std::vector<std::uint8_t> read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace testutil

/// Skips the current test case (with a visible warning) when the corpus is absent.
#define REQUIRE_CORPUS(var)                                                                 \
    auto var##_opt = testutil::corpus();                                                    \
    if (!var##_opt) {                                                                       \
        WARN("corpus absent at " SOVEREIGN_CORPUS_DEFAULT " (set SOVEREIGN_CORPUS): skipping"); \
        return;                                                                             \
    }                                                                                       \
    const std::filesystem::path var = *var##_opt
