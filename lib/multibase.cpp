// multibase.cpp — base32 / base58btc / base64 codecs (see multibase.h).
//
// base32: CID text is decoded for every link in DAG-JSON and every PLC "prev", so the decoder
// works on whole 8-character groups: it looks each character up in a 256-entry table whose
// invalid entries have the high bit set, ORs the eight lookups together and tests that bit once
// per group, then emits the 40 bits as 5 bytes. Error classification (which character, '=' or
// not) is done only on the failure path.
//
// base58btc: a big-number base conversion. Rather than the textbook byte-at-a-time loop we keep
// the number in 32-bit limbs and feed it several symbols at once (5 base58 digits = one multiply
// by 58^5 < 2^30; 3 bytes = one multiply by 2^24), which is ~5x fewer inner iterations. Inputs
// are keys (35 bytes), so limbs live on the stack.
//
// base64: libsodium does the work. With ignore=NULL and b64_end=NULL it refuses any character
// outside the alphabet (whitespace and '=' included) and, in the *_NO_PADDING variants, also
// refuses non-zero padding bits and impossible lengths (checked by test_multibase.cpp), which are
// exactly the PLC rules. libsodium only says "-1", so we classify the failure ourselves.
#include "sovereign/multibase.h"

#include <sodium.h>

#include <array>
#include <cstring>
#include <memory>

namespace sov::multibase {
namespace {

constexpr char kBase32Alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
constexpr char kBase58Alphabet[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
constexpr std::uint8_t kInvalid = 0xFF;

constexpr std::array<std::uint8_t, 256> make_table(const char* alphabet, std::size_t n) {
    std::array<std::uint8_t, 256> t{};
    for (auto& v : t) v = kInvalid;
    for (std::size_t i = 0; i < n; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<std::uint8_t>(i);
    return t;
}

constexpr auto kBase32Table = make_table(kBase32Alphabet, 32);
constexpr auto kBase58Table = make_table(kBase58Alphabet, 58);

inline std::uint8_t b32(char c) noexcept { return kBase32Table[static_cast<unsigned char>(c)]; }

// Error for a group known to contain a character outside the alphabet.
Errc classify_bad_char(std::string_view s) noexcept {
    for (char c : s) {
        if (b32(c) == kInvalid) return c == '=' ? Errc::base_bad_padding : Errc::base_bad_char;
    }
    return Errc::base_bad_char;
}

}  // namespace

// ---------------------------------------------------------------- base32

void base32_encode(ByteView in, std::string& out) {
    const std::size_t old = out.size();
    out.resize(old + base32_encoded_size(in.size()));
    char* p = out.data() + old;
    const std::uint8_t* s = in.data();
    std::size_t n = in.size();
    for (; n >= 5; n -= 5, s += 5, p += 8) {
        const std::uint64_t v = (std::uint64_t{s[0]} << 32) | (std::uint64_t{s[1]} << 24) |
                                (std::uint64_t{s[2]} << 16) | (std::uint64_t{s[3]} << 8) | s[4];
        for (int i = 0; i < 8; ++i) p[i] = kBase32Alphabet[(v >> (35 - 5 * i)) & 31];
    }
    if (n > 0) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{s[i]} << (32 - 8 * i);
        const std::size_t chars = base32_encoded_size(n);
        for (std::size_t i = 0; i < chars; ++i) p[i] = kBase32Alphabet[(v >> (35 - 5 * i)) & 31];
    }
}

Result<std::size_t> base32_decode_into(std::string_view in, std::span<std::uint8_t> out) {
    const std::size_t total = base32_decoded_size(in.size());
    const std::size_t groups = in.size() / 8;
    const std::size_t rem = in.size() % 8;
    if (out.size() < total) return Errc::bad_argument;
    const char* s = in.data();
    std::uint8_t* p = out.data();
    // Characters before length, so "a!" reports the '!' rather than the length.
    for (std::size_t g = 0; g < groups; ++g, s += 8, p += 5) {
        // Independent lookups and shifts (no serial v = v << 5 | d chain): more ILP.
        const std::uint64_t d0 = b32(s[0]), d1 = b32(s[1]), d2 = b32(s[2]), d3 = b32(s[3]);
        const std::uint64_t d4 = b32(s[4]), d5 = b32(s[5]), d6 = b32(s[6]), d7 = b32(s[7]);
        if ((d0 | d1 | d2 | d3 | d4 | d5 | d6 | d7) & 0x80) return classify_bad_char({s, 8});
        const std::uint64_t v = ((d0 << 35) | (d1 << 30) | (d2 << 25) | (d3 << 20)) |
                                ((d4 << 15) | (d5 << 10) | (d6 << 5) | d7);
        p[0] = static_cast<std::uint8_t>(v >> 32);
        p[1] = static_cast<std::uint8_t>(v >> 24);
        p[2] = static_cast<std::uint8_t>(v >> 16);
        p[3] = static_cast<std::uint8_t>(v >> 8);
        p[4] = static_cast<std::uint8_t>(v);
    }
    if (rem != 0) {
        std::uint64_t v = 0;
        std::uint8_t bad = 0;
        for (std::size_t i = 0; i < rem; ++i) {
            const std::uint8_t d = b32(s[i]);
            bad |= d;
            v = (v << 5) | (d & 31);
        }
        if (bad & 0x80) return classify_bad_char({s, rem});
        if (rem == 1 || rem == 3 || rem == 6) return Errc::truncated;
        const std::size_t bytes = rem * 5 / 8;
        const unsigned pad_bits = static_cast<unsigned>(rem * 5 - bytes * 8);
        if (v & ((std::uint64_t{1} << pad_bits) - 1)) return Errc::base_bad_padding;
        v >>= pad_bits;
        for (std::size_t i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * (bytes - 1 - i)));
    }
    return total;
}

Errc base32_decode(std::string_view in, std::vector<std::uint8_t>& out) {
    const std::size_t old = out.size();
    out.resize(old + base32_decoded_size(in.size()));
    auto r = base32_decode_into(in, std::span<std::uint8_t>(out.data() + old, out.size() - old));
    if (!r) {
        out.resize(old);
        return r.error();
    }
    return Errc::ok;
}

// ---------------------------------------------------------------- base58btc

namespace {

constexpr std::uint32_t kPow58[6] = {1, 58, 58 * 58, 58 * 58 * 58, 58 * 58 * 58 * 58, 656356768u};
constexpr std::uint32_t kBase58Limb = 656356768u;  // 58^5: each limb of the encoder holds 5 digits
constexpr std::size_t kMaxBase58Chars = 4096;

// Limb storage: on the stack for key-sized numbers, on the heap otherwise.
class Limbs {
public:
    explicit Limbs(std::size_t n) {
        if (n > kStack) {
            heap_ = std::make_unique<std::uint32_t[]>(n);
            p_ = heap_.get();
        }
    }
    std::uint32_t* data() noexcept { return p_; }

private:
    static constexpr std::size_t kStack = 128;
    std::uint32_t stack_[kStack];
    std::unique_ptr<std::uint32_t[]> heap_;
    std::uint32_t* p_ = stack_;
};

}  // namespace

void base58btc_encode(ByteView in, std::string& out) {
    std::size_t zeros = 0;
    while (zeros < in.size() && in[zeros] == 0) ++zeros;
    out.append(zeros, '1');
    const std::uint8_t* s = in.data() + zeros;
    std::size_t n = in.size() - zeros;
    if (n == 0) return;

    // Little-endian limbs in base 58^5; log(256)/log(58^5) < 0.2732.
    Limbs store(n * 2732 / 10000 + 2);
    std::uint32_t* limb = store.data();
    std::size_t used = 0;
    while (n > 0) {
        const std::size_t k = n >= 3 ? 3 : n;
        std::uint64_t carry = 0;
        for (std::size_t i = 0; i < k; ++i) carry = (carry << 8) | s[i];
        const std::uint64_t factor = std::uint64_t{1} << (8 * k);
        for (std::size_t j = 0; j < used; ++j) {
            const std::uint64_t x = limb[j] * factor + carry;
            limb[j] = static_cast<std::uint32_t>(x % kBase58Limb);
            carry = x / kBase58Limb;
        }
        while (carry != 0) {
            limb[used++] = static_cast<std::uint32_t>(carry % kBase58Limb);
            carry /= kBase58Limb;
        }
        s += k;
        n -= k;
    }
    // Most significant limb without leading zero digits, the rest as exactly 5 digits.
    char digits[5];
    std::uint32_t top = limb[used - 1];
    int nd = 0;
    while (top != 0) {
        digits[nd++] = kBase58Alphabet[top % 58];
        top /= 58;
    }
    while (nd > 0) out.push_back(digits[--nd]);
    for (std::size_t j = used - 1; j-- > 0;) {
        std::uint32_t v = limb[j];
        for (int i = 4; i >= 0; --i) {
            digits[i] = kBase58Alphabet[v % 58];
            v /= 58;
        }
        out.append(digits, 5);
    }
}

Errc base58btc_decode(std::string_view in, std::vector<std::uint8_t>& out) {
    if (in.size() > kMaxBase58Chars) return Errc::too_large;
    for (char c : in) {
        if (kBase58Table[static_cast<unsigned char>(c)] == kInvalid) return Errc::base_bad_char;
    }
    std::size_t ones = 0;
    while (ones < in.size() && in[ones] == '1') ++ones;
    out.insert(out.end(), ones, std::uint8_t{0});
    const char* s = in.data() + ones;
    std::size_t n = in.size() - ones;
    if (n == 0) return Errc::ok;

    // Little-endian 32-bit limbs; log2(58) < 5.86 bits per digit.
    Limbs store(n * 586 / 3200 + 2);
    std::uint32_t* limb = store.data();
    std::size_t used = 0;
    while (n > 0) {
        const std::size_t k = n >= 5 ? 5 : n;
        std::uint64_t carry = 0;
        for (std::size_t i = 0; i < k; ++i) carry = carry * 58 + kBase58Table[static_cast<unsigned char>(s[i])];
        const std::uint64_t factor = kPow58[k];
        for (std::size_t j = 0; j < used; ++j) {
            const std::uint64_t x = limb[j] * factor + carry;
            limb[j] = static_cast<std::uint32_t>(x);
            carry = x >> 32;
        }
        if (carry != 0) limb[used++] = static_cast<std::uint32_t>(carry);
        s += k;
        n -= k;
    }
    if (used == 0) return Errc::ok;  // unreachable: a non-'1' digit makes the number non-zero
    std::uint32_t top = limb[used - 1];
    int top_bytes = 4;
    while ((top >> 24) == 0) {
        top <<= 8;
        --top_bytes;
    }
    for (int i = 0; i < top_bytes; ++i) out.push_back(static_cast<std::uint8_t>(limb[used - 1] >> (8 * (top_bytes - 1 - i))));
    for (std::size_t j = used - 1; j-- > 0;) {
        const std::uint32_t v = limb[j];
        const std::uint8_t b[4] = {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                                   static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
        out.insert(out.end(), b, b + 4);
    }
    return Errc::ok;
}

// ---------------------------------------------------------------- base64

namespace {

void base64_encode_variant(ByteView in, std::string& out, int variant) {
    const std::size_t old = out.size();
    const std::size_t len = sodium_base64_encoded_len(in.size(), variant);  // includes the NUL
    out.resize(old + len);
    sodium_bin2base64(out.data() + old, len, in.data(), in.size(), variant);
    out.resize(old + len - 1);
}

bool in_base64_alphabet(char c, bool url) noexcept {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
    return url ? (c == '-' || c == '_') : (c == '+' || c == '/');
}

// libsodium only reports failure; say which rule was broken (the first offending character
// decides, as in base32).
Errc classify_base64(std::string_view in, bool url) noexcept {
    for (char c : in) {
        if (c == '=') return Errc::base_bad_padding;
        if (!in_base64_alphabet(c, url)) return Errc::base_bad_char;
    }
    if (in.size() % 4 == 1) return Errc::truncated;
    return Errc::base_bad_padding;  // the only rule left: non-zero padding bits
}

Errc base64_decode_variant(std::string_view in, std::vector<std::uint8_t>& out, int variant, bool url) {
    const std::size_t old = out.size();
    const std::size_t max = in.size() / 4 * 3 + 3;
    out.resize(old + max);
    std::size_t got = 0;
    const int rc = sodium_base642bin(out.data() + old, max, in.data(), in.size(), /*ignore=*/nullptr, &got,
                                     /*b64_end=*/nullptr, variant);
    if (rc != 0) {
        out.resize(old);
        return classify_base64(in, url);
    }
    out.resize(old + got);
    return Errc::ok;
}

}  // namespace

void base64_encode(ByteView in, std::string& out) {
    base64_encode_variant(in, out, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

void base64url_encode(ByteView in, std::string& out) {
    base64_encode_variant(in, out, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

Errc base64_decode(std::string_view in, std::vector<std::uint8_t>& out) {
    return base64_decode_variant(in, out, sodium_base64_VARIANT_ORIGINAL_NO_PADDING, false);
}

Errc base64url_decode(std::string_view in, std::vector<std::uint8_t>& out) {
    return base64_decode_variant(in, out, sodium_base64_VARIANT_URLSAFE_NO_PADDING, true);
}

Errc base64_decode_lenient(std::string_view in, std::vector<std::uint8_t>& out) {
    if (!in.empty() && in.back() == '=') {
        if (in.size() % 4 != 0) return Errc::base_bad_padding;
        in.remove_suffix(1);
        if (in.back() == '=') in.remove_suffix(1);  // size was >= 4, so not empty here
    }
    return base64_decode(in, out);
}

// ---------------------------------------------------------------- multibase

Errc decode(std::string_view text, std::vector<std::uint8_t>& out) {
    if (text.empty()) return Errc::base_bad_char;
    const std::string_view body = text.substr(1);
    switch (text[0]) {
        case 'b': return base32_decode(body, out);
        case 'z': return base58btc_decode(body, out);
        case 'm': return base64_decode(body, out);
        case 'u': return base64url_decode(body, out);
        default: return Errc::base_bad_char;
    }
}

}  // namespace sov::multibase
