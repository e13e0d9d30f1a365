// syntax.cpp — atproto identifier syntax, written from the specs (atproto-website specs/did,
// handle, nsid, tid, record-key, at-uri-scheme, repository "Repository Paths", lexicon
// "String Formats") and checked against every line of the interop vectors.
//
// Every validator is a single forward scan over the bytes with a 256-entry class table, so
// there is no allocation, no locale and no backtracking; non-ASCII bytes (>= 0x80) and NUL
// are in no class and so are rejected everywhere. Length limits are checked first, so an
// adversarial 1 MB string costs one comparison.
//
// Decisions where the specs leave room, or where we deviate from the reference code:
//
// - DID: percent-escapes are not decoded or checked ("implementations do not need to validate
//   percent encoding"); only the final character may not be '%' or ':'. Limit 2048 bytes.
// - Handle/NSID: upper case is accepted (both are case-insensitive in the authority part);
//   normalisation to lower case is the caller's business. Reserved TLDs (.onion, .local,
//   .invalid, …) pass: they are syntactically valid and fail only at resolution.
// - NSID authority: the spec caps it at 253 bytes, but the interop vectors require a valid
//   287-byte NSID whose authority is 283 bytes ("com.middle.middle…foo"), and the reference
//   validators cap only the total (317). We follow the vectors: total <= 317, labels <= 63.
// - NSID name: [A-Za-z][A-Za-z0-9]{0,62}. The older spec text said letters only; the current
//   spec and the vectors (com.example.fooBarV2) allow digits after the first letter.
// - Repo path: the "Repository Paths" section lists [A-Za-z0-9/._~-], but a path is defined
//   as NSID "/" record key and record keys allow ':', so ':' is accepted (as the record-key
//   spec notes it was de-facto allowed since 2023). NSID (<= 317) + 1 + rkey (<= 512) is
//   <= 830, so the 1024-byte MST key cap of docs/protocol.md §6 is implied; checked anyway.
// - TID: the syntax admits a first character c..j, which sets bit 63 although the layout says
//   the top bit is 0. is_tid follows the syntax (the spec's regex); tid_to_micros returns the
//   53-bit timestamp field and ignores bit 63, so such TIDs still compare by time.
// - CID string: the spec only says "CID in string format". We use the loose shape the
//   reference validators use — 8..256 chars of [A-Za-z0-9+=] — without decoding multibase.
//   CIDv0 is refused by its "Qm" prefix (every CIDv0 is base58btc of 0x12 0x20, hence "Qm";
//   no multibase code is 'Q', so no CIDv1 string starts with it). The reference code tests
//   only "Qmb", which lets most CIDv0 through.
// - Generic URI: RFC 3986 scheme, ':' and a non-empty remainder made only of unreserved,
//   reserved and %HH; at most one '#'. Not a full RFC 3986 parse (no authority/IPv6 check).
// - Datetime ("datetime" lexicon format, the intersection of RFC 3339, ISO 8601 and WHATWG):
//     syntax:  YYYY-MM-DD "T" HH:MM:SS ["." 1*DIGIT] ("Z" | ("+"|"-") HH:MM), upper-case T/Z,
//              exactly 4 year digits, "-00:00" refused (ISO 8601), total <= 64 bytes (the
//              reference implementations' cap; the spec allows "arbitrary" precision but
//              64 bytes still leaves 40 fraction digits).
//     "parse": month 01-12, day within the month of that (proleptic Gregorian) year, hour
//              00-23, minute 00-59, second 00-59 (no leap second: the reference parsers in
//              Go and JavaScript refuse :60 too), offset hour 00-23 and minute 00-59; and the
//              instant after applying the offset lies in [0000-01-01T00:00:00Z,
//              9999-12-31T23:59:59.999999Z] ("datetimes before the Current Era are
//              disallowed"; the upper bound keeps format_datetime_micros a 4-digit-year
//              inverse). Fraction digits past the 6th are truncated, not rounded.
//   is_datetime() is syntax *and* parse: a datetime that names no real instant is not valid
//   (the spec: implementations "should" validate the semantics, e.g. month 00 is invalid).
// - format_datetime_micros writes the relay's millisecond form "2026-07-04T14:38:07.517Z"
//   (floor to the millisecond) and "" outside the accepted range.
#include "sovereign/syntax.h"

#include <array>
#include <chrono>
#include <cstddef>

namespace sov::syntax {
namespace {

// ---- character classes -------------------------------------------------------------------

enum : std::uint16_t {
    kLower = 1 << 0,      // a-z
    kUpper = 1 << 1,      // A-Z
    kDigit = 1 << 2,      // 0-9
    kDidId = 1 << 3,      // DID identifier: alnum . _ : % -
    kRkey = 1 << 4,       // record key: alnum . - _ : ~
    kB32s = 1 << 5,       // base32-sortable: 2-7 a-z
    kCid = 1 << 6,        // loose CID string: alnum + =
    kUri = 1 << 7,        // RFC 3986 unreserved / reserved (not '%')
    kHex = 1 << 8,        // 0-9 A-F a-f
    kSchemeTail = 1 << 9, // RFC 3986 scheme after the first char: alnum + - .
};

constexpr std::array<std::uint16_t, 256> make_classes() {
    std::array<std::uint16_t, 256> t{};
    auto add = [&t](std::string_view chars, std::uint16_t bit) {
        for (char c : chars) t[static_cast<unsigned char>(c)] |= bit;
    };
    add("abcdefghijklmnopqrstuvwxyz", kLower);
    add("ABCDEFGHIJKLMNOPQRSTUVWXYZ", kUpper);
    add("0123456789", kDigit);
    for (auto& cls : t) {
        if (cls & (kLower | kUpper | kDigit)) cls |= kDidId | kRkey | kCid | kUri | kSchemeTail;
    }
    add("._:%-", kDidId);
    add(".-_:~", kRkey);
    add("234567abcdefghijklmnopqrstuvwxyz", kB32s);
    add("+=", kCid);
    add("-._~:/?#[]@!$&'()*+,;=", kUri);
    add("0123456789ABCDEFabcdef", kHex);
    add("+-.", kSchemeTail);
    return t;
}

constexpr std::array<std::uint16_t, 256> kClass = make_classes();

constexpr bool has(char c, std::uint16_t bits) noexcept {
    return (kClass[static_cast<unsigned char>(c)] & bits) != 0;
}
constexpr bool is_alpha(char c) noexcept { return has(c, kLower | kUpper); }
constexpr bool is_digit(char c) noexcept { return has(c, kDigit); }
constexpr bool is_alnum(char c) noexcept { return has(c, kLower | kUpper | kDigit); }

bool all_of(std::string_view s, std::uint16_t bits) noexcept {
    for (char c : s) {
        if (!has(c, bits)) return false;
    }
    return true;
}

// ---- hostname labels (handles, NSID authorities) -----------------------------------------

// Splits s on '.' and checks each label is 1..63 of [A-Za-z0-9-] not starting or ending with
// '-'. Returns the number of labels (0 if any label is bad) and the offset of the last label.
struct Labels {
    std::size_t count = 0;
    std::size_t last_start = 0;
};

Labels scan_labels(std::string_view s) noexcept {
    Labels out;
    std::size_t i = 0;
    const std::size_t n = s.size();
    for (;;) {
        const std::size_t start = i;
        while (i < n && s[i] != '.') {
            if (!is_alnum(s[i]) && s[i] != '-') return {};
            ++i;
        }
        const std::size_t len = i - start;
        if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-') return {};
        ++out.count;
        out.last_start = start;
        if (i == n) return out;
        ++i;  // the '.'; a trailing '.' yields an empty label above
    }
}

// ---- base32-sortable ---------------------------------------------------------------------

constexpr std::string_view kB32Alphabet = "234567abcdefghijklmnopqrstuvwxyz";

constexpr unsigned b32s_value(char c) noexcept {
    return (c >= '2' && c <= '7') ? static_cast<unsigned>(c - '2')
                                  : static_cast<unsigned>(c - 'a') + 6u;
}

constexpr std::uint64_t kMask53 = (std::uint64_t{1} << 53) - 1;

// ---- datetime ----------------------------------------------------------------------------

using std::chrono::days;
using std::chrono::microseconds;
using std::chrono::sys_days;

// days since 1970-01-01 of a civil date (the caller has checked the date is real).
constexpr std::int64_t days_from_civil(int y, unsigned m, unsigned d) noexcept {
    const auto ymd = std::chrono::year{y} / std::chrono::month{m} / std::chrono::day{d};
    return sys_days{ymd}.time_since_epoch().count();
}

constexpr std::int64_t kMicrosPerDay = 86'400'000'000;

constexpr std::int64_t kMinMicros = days_from_civil(0, 1, 1) * kMicrosPerDay;
constexpr std::int64_t kMaxMicros = days_from_civil(10000, 1, 1) * kMicrosPerDay - 1;
static_assert(kMinMicros == -62'167'219'200'000'000);  // 0000-01-01T00:00:00Z
static_assert(kMaxMicros == 253'402'300'799'999'999);  // 9999-12-31T23:59:59.999999Z

// Value of n decimal digits at s[pos..pos+n); the caller has checked they are digits.
int digits(std::string_view s, std::size_t pos, std::size_t n) noexcept {
    int v = 0;
    for (std::size_t i = 0; i < n; ++i) v = v * 10 + (s[pos + i] - '0');
    return v;
}

bool digits_at(std::string_view s, std::size_t pos, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        if (!is_digit(s[pos + i])) return false;
    }
    return true;
}

constexpr std::size_t kMaxDatetimeLen = 64;

}  // namespace

// ---- validators --------------------------------------------------------------------------

bool is_did(std::string_view s) noexcept {
    if (s.size() > 2048 || s.size() < 7 || s.substr(0, 4) != "did:") return false;
    std::size_t i = 4;
    while (i < s.size() && has(s[i], kLower)) ++i;
    if (i == 4 || i >= s.size() || s[i] != ':') return false;
    const std::string_view id = s.substr(i + 1);
    if (id.empty() || !all_of(id, kDidId)) return false;
    return id.back() != ':' && id.back() != '%';
}

bool is_did_plc(std::string_view s) noexcept {
    constexpr std::string_view prefix = "did:plc:";
    return s.size() == prefix.size() + 24 && s.substr(0, prefix.size()) == prefix &&
           all_of(s.substr(prefix.size()), kB32s);
}

bool is_handle(std::string_view s) noexcept {
    if (s.empty() || s.size() > 253) return false;
    const Labels l = scan_labels(s);
    return l.count >= 2 && !is_digit(s[l.last_start]);
}

bool is_at_identifier(std::string_view s) noexcept { return is_did(s) || is_handle(s); }

bool is_nsid(std::string_view s) noexcept {
    if (s.empty() || s.size() > 317) return false;
    const std::size_t dot = s.rfind('.');
    if (dot == std::string_view::npos) return false;
    const std::string_view authority = s.substr(0, dot);
    const std::string_view name = s.substr(dot + 1);
    if (name.empty() || name.size() > 63 || !is_alpha(name[0])) return false;
    for (char c : name) {
        if (!is_alnum(c)) return false;
    }
    const Labels l = scan_labels(authority);  // no 253-byte cap here: see the top of the file
    return l.count >= 2 && is_alpha(authority[0]);
}

bool is_tid(std::string_view s) noexcept {
    if (s.size() != 13 || !all_of(s, kB32s)) return false;
    return b32s_value(s[0]) < 16;  // [234567abcdefghij]
}

bool is_record_key(std::string_view s) noexcept {
    if (s.empty() || s.size() > 512 || s == "." || s == "..") return false;
    return all_of(s, kRkey);
}

bool is_repo_path(std::string_view s) noexcept {
    if (s.size() > 1024) return false;
    const std::size_t slash = s.find('/');
    if (slash == std::string_view::npos) return false;
    return is_nsid(s.substr(0, slash)) && is_record_key(s.substr(slash + 1));
}

bool is_at_uri(std::string_view s) noexcept {
    if (s.size() > 8192 || s.substr(0, 5) != "at://") return false;
    std::string_view rest = s.substr(5);
    std::size_t slash = rest.find('/');
    if (!is_at_identifier(rest.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    rest = rest.substr(slash + 1);
    slash = rest.find('/');
    if (!is_nsid(rest.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    return is_record_key(rest.substr(slash + 1));
}

bool is_datetime(std::string_view s) noexcept { return parse_datetime_micros(s).has_value(); }

bool is_cid_string(std::string_view s) noexcept {
    if (s.size() < 8 || s.size() > 256 || !all_of(s, kCid)) return false;
    return !(s[0] == 'Q' && s[1] == 'm');
}

bool is_uri(std::string_view s) noexcept {
    if (s.empty() || s.size() > 8192 || !is_alpha(s[0])) return false;
    std::size_t i = 1;
    while (i < s.size() && has(s[i], kSchemeTail)) ++i;
    if (i >= s.size() || s[i] != ':') return false;
    ++i;
    if (i == s.size()) return false;  // "http:" names nothing
    bool fragment = false;
    for (; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size() || !has(s[i + 1], kHex) || !has(s[i + 2], kHex)) return false;
            i += 2;
        } else if (c == '#') {
            if (fragment) return false;
            fragment = true;
        } else if (!has(c, kUri)) {
            return false;
        }
    }
    return true;
}

// ---- TID ---------------------------------------------------------------------------------

std::optional<std::int64_t> tid_to_micros(std::string_view tid) noexcept {
    if (!is_tid(tid)) return std::nullopt;
    std::uint64_t v = 0;  // 13 x 5 = 65 bits, but the first char is < 16, so it fits
    for (char c : tid) v = (v << 5) | b32s_value(c);
    return static_cast<std::int64_t>((v >> 10) & kMask53);
}

std::string tid_from(std::int64_t micros, unsigned clock_id) {
    const std::uint64_t v =
        ((static_cast<std::uint64_t>(micros) & kMask53) << 10) | (clock_id & 0x3FFu);
    std::string out(13, '2');
    for (std::size_t i = 0; i < 13; ++i) out[12 - i] = kB32Alphabet[(v >> (5 * i)) & 31u];
    return out;
}

// ---- datetime ----------------------------------------------------------------------------

std::optional<std::int64_t> parse_datetime_micros(std::string_view s) noexcept {
    // Fixed part: YYYY-MM-DDTHH:MM:SS (19 bytes); shortest whole form adds "Z".
    const std::size_t n = s.size();
    if (n < 20 || n > kMaxDatetimeLen) return std::nullopt;
    if (!digits_at(s, 0, 4) || s[4] != '-' || !digits_at(s, 5, 2) || s[7] != '-' ||
        !digits_at(s, 8, 2) || s[10] != 'T' || !digits_at(s, 11, 2) || s[13] != ':' ||
        !digits_at(s, 14, 2) || s[16] != ':' || !digits_at(s, 17, 2)) {
        return std::nullopt;
    }
    std::size_t i = 19;
    std::int64_t frac_us = 0;
    if (s[i] == '.') {
        ++i;
        const std::size_t start = i;
        while (i < n && is_digit(s[i])) {
            if (i - start < 6) frac_us = frac_us * 10 + (s[i] - '0');
            ++i;
        }
        if (i == start) return std::nullopt;
        for (std::size_t k = i - start; k < 6; ++k) frac_us *= 10;
    }
    if (i >= n) return std::nullopt;  // timezone is required
    int offset_min = 0;
    if (s[i] == 'Z') {
        if (i + 1 != n) return std::nullopt;
    } else if (s[i] == '+' || s[i] == '-') {
        if (n - i != 6 || !digits_at(s, i + 1, 2) || s[i + 3] != ':' || !digits_at(s, i + 4, 2)) {
            return std::nullopt;
        }
        const int oh = digits(s, i + 1, 2);
        const int om = digits(s, i + 4, 2);
        if (oh > 23 || om > 59) return std::nullopt;
        offset_min = oh * 60 + om;
        if (s[i] == '-') {
            if (offset_min == 0) return std::nullopt;  // "-00:00": RFC 3339 only, not ISO 8601
            offset_min = -offset_min;
        }
    } else {
        return std::nullopt;
    }

    const int year = digits(s, 0, 4);
    const int month = digits(s, 5, 2);
    const int day = digits(s, 8, 2);
    const int hour = digits(s, 11, 2);
    const int minute = digits(s, 14, 2);
    const int second = digits(s, 17, 2);
    if (hour > 23 || minute > 59 || second > 59) return std::nullopt;
    if (month < 1 || month > 12 || day < 1) return std::nullopt;
    const auto ymd = std::chrono::year{year} / std::chrono::month{static_cast<unsigned>(month)} /
                     std::chrono::day{static_cast<unsigned>(day)};
    if (!ymd.ok()) return std::nullopt;  // day past the end of the month, Feb 29 off leap years

    const std::int64_t micros =
        days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) *
            kMicrosPerDay +
        (static_cast<std::int64_t>(hour) * 3600 + minute * 60 + second - offset_min * 60) *
            1'000'000 +
        frac_us;
    if (micros < kMinMicros || micros > kMaxMicros) return std::nullopt;
    return micros;
}

std::string format_datetime_micros(std::int64_t micros) {
    if (micros < kMinMicros || micros > kMaxMicros) return {};
    const microseconds us{micros};
    const auto day = std::chrono::floor<days>(us);
    const std::chrono::year_month_day ymd{sys_days{day}};
    const std::int64_t in_day_us = (us - day).count();  // [0, 86400e6)
    const std::int64_t ms = (in_day_us / 1000) % 1000;
    const std::int64_t secs = in_day_us / 1'000'000;

    std::string out = "0000-00-00T00:00:00.000Z";
    auto put = [&out](std::size_t pos, std::size_t width, std::int64_t v) {
        for (std::size_t k = 0; k < width; ++k) {
            out[pos + width - 1 - k] = static_cast<char>('0' + v % 10);
            v /= 10;
        }
    };
    put(0, 4, static_cast<int>(ymd.year()));
    put(5, 2, static_cast<unsigned>(ymd.month()));
    put(8, 2, static_cast<unsigned>(ymd.day()));
    put(11, 2, secs / 3600);
    put(14, 2, secs / 60 % 60);
    put(17, 2, secs % 60);
    put(20, 3, ms);
    return out;
}

}  // namespace sov::syntax
