// Shared test helpers: locating the real corpus and reading files.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string_view>
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

/// Hex to bytes; spaces are ignored so vectors can be written head by head. Bad hex fails the test.
inline std::vector<std::uint8_t> hex(std::string_view s) {
    auto nib = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::vector<std::uint8_t> out;
    int hi = -1;
    for (char c : s) {
        if (c == ' ') continue;
        int v = nib(c);
        REQUIRE(v >= 0);
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(std::uint8_t(hi * 16 + v));
            hi = -1;
        }
    }
    REQUIRE(hi < 0);
    return out;
}

/// Lowercase hex of bytes.
inline std::string to_hex(std::span<const std::uint8_t> b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (auto c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
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
