// test_syntax.cpp — identifier syntax: the official interop vectors line by line, then
// hand-written cases for TID and datetime conversions and repo paths.
//
// The corpus lives outside the project (../shared/corpus, overridable with SOVEREIGN_CORPUS);
// when it is absent the vector tests warn and skip so the project still tests without it.
#include <catch2/catch.hpp>

#include "sovereign/syntax.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#ifndef SOVEREIGN_CORPUS_DEFAULT
#define SOVEREIGN_CORPUS_DEFAULT ""
#endif

namespace {

namespace fs = std::filesystem;
namespace sx = sov::syntax;

fs::path corpus_root() {
    const char* env = std::getenv("SOVEREIGN_CORPUS");
    return fs::path{(env != nullptr && *env != '\0') ? env : SOVEREIGN_CORPUS_DEFAULT};
}

// The interop/syntax directory, or nullopt (after a WARN) when the corpus is not here.
std::optional<fs::path> syntax_dir() {
    const fs::path root = corpus_root();
    const fs::path dir = root / "interop" / "syntax";
    std::error_code ec;
    if (root.empty() || !fs::is_directory(dir, ec)) {
        WARN("corpus absent at " << (root.empty() ? std::string{"(unset)"} : dir.string())
                                 << ": skipping");
        return std::nullopt;
    }
    return dir;
}

struct Line {
    std::size_t number;  // 1-based
    std::string value;
};

// Test values of one vector file: every line except blank ones and those starting with '#'.
// Nothing is trimmed: leading/trailing spaces are part of the value (e.g. " john.test").
std::vector<Line> read_values(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::vector<Line> out;
    std::size_t number = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(pos, end - pos);
        pos = end + 1;
        ++number;
        if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF checkouts
        if (line.empty() || line[0] == '#') continue;
        out.push_back({number, std::move(line)});
    }
    return out;
}

// Quoted, with long values shortened so a failure stays readable.
std::string show(const std::string& v) {
    if (v.size() <= 100) return '"' + v + '"';
    return '"' + v.substr(0, 60) + "...\" (" + std::to_string(v.size()) + " bytes)";
}

using Pred = std::function<bool(std::string_view)>;

// Checks that pred(value) == expected for every value line of `file`; reports each mismatch
// as "<path>:<line>: expected valid|invalid: "<value>"". Returns the number of lines checked.
std::size_t check_file(const fs::path& dir, const char* file, bool expected, const Pred& pred) {
    const fs::path path = dir / file;
    const std::vector<Line> lines = read_values(path);
    CHECK_FALSE(lines.empty());
    for (const Line& l : lines) {
        if (pred(l.value) != expected) {
            FAIL_CHECK(path.string() << ":" << l.number << ": expected "
                                     << (expected ? "valid" : "invalid") << ": " << show(l.value));
        }
    }
    return lines.size();
}

std::size_t check_pair(const fs::path& dir, const char* stem, const Pred& pred) {
    const std::string s{stem};
    return check_file(dir, (s + "_syntax_valid.txt").c_str(), true, pred) +
           check_file(dir, (s + "_syntax_invalid.txt").c_str(), false, pred);
}

}  // namespace

// ---- interop vectors ---------------------------------------------------------------------

TEST_CASE("interop: did", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "did", sx::is_did) > 0);
}

TEST_CASE("interop: handle", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "handle", sx::is_handle) > 0);
}

TEST_CASE("interop: at-identifier", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "atidentifier", sx::is_at_identifier) > 0);
}

TEST_CASE("interop: nsid", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "nsid", sx::is_nsid) > 0);
}

TEST_CASE("interop: tid", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "tid", sx::is_tid) > 0);
    // tid_to_micros accepts exactly what is_tid accepts, and tid_from inverts it.
    check_file(*dir, "tid_syntax_valid.txt", true, [](std::string_view s) {
        const auto us = sx::tid_to_micros(s);
        return us.has_value() && sx::tid_to_micros(sx::tid_from(*us, 0)) == us;
    });
    check_file(*dir, "tid_syntax_invalid.txt", false,
               [](std::string_view s) { return sx::tid_to_micros(s).has_value(); });
}

TEST_CASE("interop: record key", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "recordkey", sx::is_record_key) > 0);
}

TEST_CASE("interop: at-uri", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "aturi", sx::is_at_uri) > 0);
}

TEST_CASE("interop: cid string", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "cid", sx::is_cid_string) > 0);
}

TEST_CASE("interop: uri", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "uri", sx::is_uri) > 0);
}

TEST_CASE("interop: datetime", "[syntax][interop]") {
    const auto dir = syntax_dir();
    if (!dir) return;
    CHECK(check_pair(*dir, "datetime", sx::is_datetime) > 0);
    // The parser agrees with the validator on the syntax files ...
    check_file(*dir, "datetime_syntax_valid.txt", true,
               [](std::string_view s) { return sx::parse_datetime_micros(s).has_value(); });
    check_file(*dir, "datetime_syntax_invalid.txt", false,
               [](std::string_view s) { return sx::parse_datetime_micros(s).has_value(); });
    // ... and refuses well-shaped strings that name no real instant (month 00, hour 25, a
    // time before year 0 once the offset is applied, ...).
    CHECK(check_file(*dir, "datetime_parse_invalid.txt", false, [](std::string_view s) {
              return sx::parse_datetime_micros(s).has_value();
          }) > 0);
    check_file(*dir, "datetime_parse_invalid.txt", false, sx::is_datetime);
}

// ---- TID ---------------------------------------------------------------------------------

TEST_CASE("tid: known values", "[syntax][tid]") {
    CHECK(sx::tid_from(0, 0) == "2222222222222");
    CHECK(sx::tid_to_micros("2222222222222") == 0);
    // Largest timestamp and clock id: bit 63 stays 0, so the first char is at most 'b'.
    const std::int64_t max53 = (std::int64_t{1} << 53) - 1;
    CHECK(sx::tid_from(max53, 1023) == "bzzzzzzzzzzzz");
    CHECK(sx::tid_to_micros("bzzzzzzzzzzzz") == max53);
    // The spec's example: 3jzfcijpj2z2a = 0x17fd6873eaf07c06 = 2023-06-30T15:03:01.887007Z,
    // clock id 6 (decoded independently with Python).
    CHECK(sx::tid_to_micros("3jzfcijpj2z2a") == std::int64_t{1'688'137'381'887'007});
    CHECK(sx::tid_from(1'688'137'381'887'007, 6) == "3jzfcijpj2z2a");
    // A first char c..j sets bit 63, which the syntax admits; the 53-bit field is returned.
    REQUIRE(sx::is_tid("jzzzzzzzzzzzz"));
    CHECK(sx::tid_to_micros("jzzzzzzzzzzzz") == max53);
    CHECK_FALSE(sx::tid_to_micros("kzzzzzzzzzzzz").has_value());
    CHECK_FALSE(sx::tid_to_micros("3jzfcijpj2z2").has_value());
    CHECK_FALSE(sx::tid_to_micros(std::string_view{"3jzfcijpj2z2\0", 13}).has_value());
}

TEST_CASE("tid: round trip and order", "[syntax][tid]") {
    const std::int64_t samples[] = {0,
                                    1,
                                    999,
                                    1'000'000,
                                    1'700'000'000'000'000,  // 2023-11-14
                                    1'783'175'887'517'000,  // 2026-07-04, the capture
                                    (std::int64_t{1} << 53) - 2,
                                    (std::int64_t{1} << 53) - 1};
    std::string prev;
    for (const std::int64_t us : samples) {
        for (const unsigned clock : {0u, 1u, 512u, 1023u}) {
            const std::string tid = sx::tid_from(us, clock);
            INFO("micros " << us << " clock " << clock << " -> " << tid);
            CHECK(sx::is_tid(tid));
            CHECK(sx::tid_to_micros(tid) == us);
            CHECK(prev < tid);  // TIDs sort by (time, clock id) as strings
            prev = tid;
        }
    }
    // Out-of-range inputs are masked to the field widths.
    CHECK(sx::tid_from(42, 1024) == sx::tid_from(42, 0));
    CHECK(sx::tid_from(std::int64_t{1} << 53, 7) == sx::tid_from(0, 7));
}

// ---- datetime ----------------------------------------------------------------------------

TEST_CASE("datetime: micros with offsets", "[syntax][datetime]") {
    using sx::parse_datetime_micros;
    CHECK(parse_datetime_micros("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_datetime_micros("1970-01-01T00:00:00.000001Z") == 1);
    CHECK(parse_datetime_micros("1969-12-31T23:59:59.999999Z") == -1);
    CHECK(parse_datetime_micros("1970-01-01T01:00:00+01:00") == 0);
    CHECK(parse_datetime_micros("1969-12-31T19:00:00-05:00") == 0);
    CHECK(parse_datetime_micros("1970-01-01T05:45:00+05:45") == 0);
    CHECK(parse_datetime_micros("1985-04-12T23:20:50.123Z") == 482'196'050'123'000);
    CHECK(parse_datetime_micros("1985-04-12T16:20:50.123-07:00") == 482'196'050'123'000);
    CHECK(parse_datetime_micros("2026-07-04T14:38:07.517Z") == 1'783'175'887'517'000);
    // Fraction digits past the sixth are truncated, never rounded.
    CHECK(parse_datetime_micros("1970-01-01T00:00:00.1234567Z") == 123'456);
    CHECK(parse_datetime_micros("1970-01-01T00:00:00.9999999999Z") == 999'999);
    CHECK(parse_datetime_micros("1970-01-01T00:00:00.5Z") == 500'000);
    // Range ends.
    CHECK(parse_datetime_micros("0000-01-01T00:00:00Z") == -62'167'219'200'000'000);
    CHECK(parse_datetime_micros("9999-12-31T23:59:59.999999Z") == 253'402'300'799'999'999);
    CHECK_FALSE(parse_datetime_micros("0000-01-01T00:59:59+01:00").has_value());
    CHECK(parse_datetime_micros("0000-01-01T01:00:00+01:00") == -62'167'219'200'000'000);
    CHECK_FALSE(parse_datetime_micros("9999-12-31T23:00:00-01:00").has_value());
}

TEST_CASE("datetime: calendar and field ranges", "[syntax][datetime]") {
    CHECK(sx::is_datetime("2024-02-29T12:00:00Z"));
    CHECK(sx::is_datetime("2000-02-29T12:00:00Z"));  // divisible by 400
    CHECK(sx::is_datetime("0000-02-29T12:00:00Z"));  // proleptic Gregorian: year 0 is leap
    CHECK_FALSE(sx::is_datetime("2023-02-29T12:00:00Z"));
    CHECK_FALSE(sx::is_datetime("1900-02-29T12:00:00Z"));  // divisible by 100 only
    CHECK_FALSE(sx::is_datetime("2024-04-31T12:00:00Z"));
    CHECK(sx::is_datetime("2024-12-31T23:59:59Z"));
    CHECK_FALSE(sx::is_datetime("2024-12-31T24:00:00Z"));
    CHECK_FALSE(sx::is_datetime("2016-12-31T23:59:60Z"));  // leap seconds are not accepted
    CHECK(sx::is_datetime("2024-01-01T00:00:00+23:59"));
    CHECK_FALSE(sx::is_datetime("2024-01-01T00:00:00+24:00"));
    CHECK_FALSE(sx::is_datetime("2024-01-01T00:00:00+01:60"));
    CHECK(sx::is_datetime("2024-01-01T00:00:00+00:00"));
    CHECK_FALSE(sx::is_datetime("2024-01-01T00:00:00-00:00"));
    // Length cap of 64 bytes (40 fraction digits with "Z").
    const std::string base = "2024-01-01T00:00:00.";
    CHECK(sx::is_datetime(base + std::string(43, '1') + "Z"));
    CHECK_FALSE(sx::is_datetime(base + std::string(44, '1') + "Z"));
    CHECK_FALSE(sx::is_datetime(std::string_view{"2024-01-01T00:00:00Z\0", 21}));
}

TEST_CASE("datetime: format", "[syntax][datetime]") {
    using sx::format_datetime_micros;
    CHECK(format_datetime_micros(0) == "1970-01-01T00:00:00.000Z");
    CHECK(format_datetime_micros(1'783'175'887'517'000) == "2026-07-04T14:38:07.517Z");
    CHECK(format_datetime_micros(1'783'175'887'517'999) == "2026-07-04T14:38:07.517Z");
    CHECK(format_datetime_micros(-1) == "1969-12-31T23:59:59.999Z");  // floor, not toward 0
    CHECK(format_datetime_micros(951'825'600'000'000) == "2000-02-29T12:00:00.000Z");
    CHECK(format_datetime_micros(-62'167'219'200'000'000) == "0000-01-01T00:00:00.000Z");
    CHECK(format_datetime_micros(253'402'300'799'999'999) == "9999-12-31T23:59:59.999Z");
    CHECK(format_datetime_micros(-62'167'219'200'000'001).empty());
    CHECK(format_datetime_micros(253'402'300'800'000'000).empty());
    // parse(format(x)) == x floored to the millisecond, over a spread of instants.
    for (std::int64_t us = -62'167'219'200'000'000; us < 253'402'300'000'000'000;
         us += 7'777'777'777'777) {
        const std::string s = format_datetime_micros(us);
        INFO(us << " -> " << s);
        const std::int64_t floored = us - ((us % 1000) + 1000) % 1000;
        CHECK(sx::parse_datetime_micros(s) == floored);
    }
}

// ---- repo paths and other hand-written cases ---------------------------------------------

TEST_CASE("repo path: edge cases", "[syntax][repo-path]") {
    CHECK(sx::is_repo_path("app.bsky.feed.post/3jzfcijpj2z2a"));
    CHECK(sx::is_repo_path("app.bsky.actor.profile/self"));
    CHECK(sx::is_repo_path("com.example.thing/lang:en"));  // ':' is a record-key character
    CHECK(sx::is_repo_path("com.example.thing/~1.2-3_"));
    CHECK_FALSE(sx::is_repo_path(""));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post"));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/"));
    CHECK_FALSE(sx::is_repo_path("/3jzfcijpj2z2a"));
    CHECK_FALSE(sx::is_repo_path("/app.bsky.feed.post/3jzfcijpj2z2a"));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/3jzfcijpj2z2a/"));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/a/b"));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post//a"));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/."));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/.."));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/a b"));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/a%20b"));
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post/a#b"));
    CHECK_FALSE(sx::is_repo_path("blue/a"));       // collection must be an NSID
    CHECK_FALSE(sx::is_repo_path("a.b/c"));        // only two NSID segments
    CHECK_FALSE(sx::is_repo_path("app.bsky.feed.post-x/a"));
    CHECK_FALSE(sx::is_repo_path(std::string_view{"app.bsky.feed.post/a\0", 21}));
    const std::string coll = "app.bsky.feed.post/";
    CHECK(sx::is_repo_path(coll + std::string(512, 'k')));
    CHECK_FALSE(sx::is_repo_path(coll + std::string(513, 'k')));
    // Longest possible: 317-byte NSID + '/' + 512-byte rkey = 830 <= 1024.
    std::string nsid = "com";
    while (nsid.size() + 4 <= 253) nsid += ".abc";
    nsid += ".x";  // authority of 253 bytes
    nsid += '.' + std::string(63, 'n');
    REQUIRE(nsid.size() == 317);
    REQUIRE(sx::is_nsid(nsid));
    CHECK(sx::is_repo_path(nsid + '/' + std::string(512, 'k')));
}

TEST_CASE("did and did:plc", "[syntax][did]") {
    CHECK(sx::is_did_plc("did:plc:yk4dd2qkboz2yv6tpubpc6co"));
    CHECK(sx::is_did("did:plc:yk4dd2qkboz2yv6tpubpc6co"));
    CHECK_FALSE(sx::is_did_plc("did:plc:yk4dd2qkboz2yv6tpubpc6c"));    // 23
    CHECK_FALSE(sx::is_did_plc("did:plc:yk4dd2qkboz2yv6tpubpc6coo"));  // 25
    CHECK_FALSE(sx::is_did_plc("did:plc:YK4DD2QKBOZ2YV6TPUBPC6CO"));
    CHECK_FALSE(sx::is_did_plc("did:plc:yk4dd2qkboz2yv6tpubpc6c0"));   // '0' not base32
    CHECK_FALSE(sx::is_did_plc("did:plc:yk4dd2qkboz2yv6tpubpc6c8"));   // '8' not base32
    CHECK_FALSE(sx::is_did_plc("did:web:yk4dd2qkboz2yv6tpubpc6co"));
    CHECK_FALSE(sx::is_did_plc("did:plc:yk4dd2qkboz2yv6tpubpc6co "));
    // 2048-byte limit.
    CHECK(sx::is_did("did:m:" + std::string(2042, 'a')));
    CHECK_FALSE(sx::is_did("did:m:" + std::string(2043, 'a')));
    CHECK_FALSE(sx::is_did(std::string_view{"did:m:a\0b", 9}));
    CHECK_FALSE(sx::is_did("did:m:a\xc3\xa9"));
}

TEST_CASE("handle, nsid, rkey, cid, uri: boundaries", "[syntax]") {
    // Handle: 253 bytes total, 63 per label.
    std::string h = std::string(63, 'a') + '.' + std::string(63, 'b') + '.' + std::string(63, 'c') +
                    '.' + std::string(61, 'd');
    REQUIRE(h.size() == 253);
    CHECK(sx::is_handle(h));
    CHECK_FALSE(sx::is_handle(h + "e"));
    CHECK_FALSE(sx::is_handle(std::string(64, 'a') + ".com"));
    CHECK(sx::is_handle("handle.invalid"));  // syntactically valid; refused at resolution
    CHECK_FALSE(sx::is_handle("john.test\n"));
    CHECK_FALSE(sx::is_handle("@john.test"));

    CHECK(sx::is_nsid("com.example.fooBar"));
    CHECK_FALSE(sx::is_nsid("com.example.3"));
    CHECK_FALSE(sx::is_nsid("com.example.foo-bar"));
    CHECK_FALSE(sx::is_nsid("com.example.fooBar#main"));  // fragments are a usage variation
    CHECK_FALSE(sx::is_nsid("com.example.*"));            // so are globs
    CHECK(sx::is_nsid("com.example." + std::string(63, 'n')));
    CHECK_FALSE(sx::is_nsid("com.example." + std::string(64, 'n')));
    CHECK_FALSE(sx::is_nsid(std::string(64, 'c') + ".example.foo"));
    // The authority may exceed 253 bytes (the vectors require it); only the total is capped.
    std::string long_authority = "com";
    while (long_authority.size() < 300) long_authority += ".middle";
    long_authority += ".ab";
    REQUIRE(long_authority.size() == 307);
    CHECK(sx::is_nsid(long_authority + ".abcdefghi"));       // 317 bytes
    CHECK_FALSE(sx::is_nsid(long_authority + ".abcdefghij"));  // 318 bytes

    CHECK(sx::is_record_key("..."));
    CHECK_FALSE(sx::is_record_key(""));
    CHECK_FALSE(sx::is_record_key("a%20"));

    CHECK(sx::is_cid_string("bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq"));
    CHECK_FALSE(sx::is_cid_string("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"));  // CIDv0
    CHECK_FALSE(sx::is_cid_string("bafy"));
    CHECK(sx::is_cid_string(std::string(256, 'b')));
    CHECK_FALSE(sx::is_cid_string(std::string(257, 'b')));

    CHECK(sx::is_uri("https://example.com/a%2Fb?x=1#frag"));
    CHECK(sx::is_uri("at://did:plc:yk4dd2qkboz2yv6tpubpc6co/app.bsky.feed.post/3jzfcijpj2z2a"));
    CHECK_FALSE(sx::is_uri("https://example.com/%zz"));
    CHECK_FALSE(sx::is_uri("https://example.com/%2"));
    CHECK_FALSE(sx::is_uri("https://example.com/#a#b"));
    CHECK_FALSE(sx::is_uri("https://example.com/<x>"));

    CHECK(sx::is_at_uri("at://did:plc:yk4dd2qkboz2yv6tpubpc6co/app.bsky.feed.post/3jzfcijpj2z2a"));
    CHECK(sx::is_at_uri("at://Jay.Bsky.Social/app.bsky.feed.post"));
    CHECK_FALSE(sx::is_at_uri("at://did:plc:yk4dd2qkboz2yv6tpubpc6co?x=1"));
    CHECK_FALSE(sx::is_at_uri("at://@jay.bsky.social"));
    CHECK_FALSE(sx::is_at_uri("at://"));
}
