// sovereign/cbor.h — strict DAG-CBOR: validator, zero-copy views, canonical writer.
//
// Rules enforced (docs/protocol.md §2; IPLD dag-cbor spec; DASL DRISL): definite lengths only,
// shortest-form integers and lengths, tag 42 only and over 0x00 + a CIDv1, no floats, simple
// values false/true/null only, text keys only, keys ordered shorter-first then bytewise, no
// duplicate keys, valid UTF-8, nesting ≤ 32, integers within signed 64-bit, exactly one
// object (no trailing bytes).
//
// Usage: validate() once per object (single pass, no allocation), then read it through Value
// views, which assume validated input and never re-check it. Views are pointers into the
// caller's buffer; they are valid as long as it is.
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sov::cbor {

inline constexpr std::size_t kMaxDepth = 32;

/// What a validated item is. `link` is tag 42 (a CID).
enum class Kind : std::uint8_t { uint, nint, bytes, text, array, map, link, boolean, null };

/// Checks that `in` is exactly one strict DAG-CBOR object. Returns the first violation and
/// the byte offset of the item at fault (relative to `in`); Errc::ok on success.
Located validate(ByteView in) noexcept;

/// Like validate() but allows bytes after the object; sets `len` to the object's length.
/// Used for the event-stream wire form (two concatenated objects).
Located validate_prefix(ByteView in, std::size_t& len) noexcept;

/// UTF-8 validity per RFC 3629 (no overlong forms, no surrogates, ≤ U+10FFFF).
bool valid_utf8(const std::uint8_t* s, std::size_t n) noexcept;

/// Canonical DAG-CBOR map-key order: shorter first, then bytewise. Returns <0, 0, >0.
inline int key_compare(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    return a.empty() ? 0 : std::memcmp(a.data(), b.data(), a.size());
}

class MapIter;
class ArrayIter;

/// A view of one item inside validated DAG-CBOR. Cheap to copy (two pointers).
class Value {
public:
    Value() = default;
    /// `p` points at the item's initial byte, `end` bounds the enclosing buffer.
    Value(const std::uint8_t* p, const std::uint8_t* end) noexcept : p_(p), end_(end) {}
    /// View of the object at the start of `in` (which must have been validated).
    static Value of(ByteView in) noexcept { return {in.data(), in.data() + in.size()}; }

    bool valid() const noexcept { return p_ != nullptr; }
    Kind kind() const noexcept;
    bool is(Kind k) const noexcept { return valid() && kind() == k; }

    /// Integer value (uint or nint); 0 for other kinds.
    std::int64_t as_int() const noexcept;
    /// Text string contents; empty for other kinds.
    std::string_view as_text() const noexcept;
    /// Byte string contents; empty for other kinds.
    ByteView as_bytes() const noexcept;
    /// Binary CID of a link (without the 0x00 multibase prefix); empty for other kinds.
    ByteView as_link() const noexcept;
    bool as_bool() const noexcept { return valid() && *p_ == 0xf5; }
    /// Element count of an array or entry count of a map; 0 otherwise.
    std::uint64_t count() const noexcept;

    MapIter map() const noexcept;
    ArrayIter array() const noexcept;
    /// Map lookup by key (linear, stops early thanks to canonical order). Invalid if absent.
    Value get(std::string_view key) const noexcept;

    /// The item's encoded bytes (head and content).
    ByteView raw() const noexcept { return {p_, size()}; }
    /// Encoded length of the whole item in bytes.
    std::size_t size() const noexcept;
    const std::uint8_t* data() const noexcept { return p_; }
    const std::uint8_t* end_of_buffer() const noexcept { return end_; }

private:
    const std::uint8_t* p_ = nullptr;
    const std::uint8_t* end_ = nullptr;
};

/// Iterates the entries of a validated map in encoded (canonical) order.
class MapIter {
public:
    MapIter() = default;
    MapIter(const std::uint8_t* p, const std::uint8_t* end, std::uint64_t n) noexcept : p_(p), end_(end), left_(n) {}
    /// Advances to the next entry; false at the end.
    bool next(std::string_view& key, Value& value) noexcept;
    /// Byte position of the next entry (for callers that splice entries out).
    const std::uint8_t* position() const noexcept { return p_; }

private:
    const std::uint8_t* p_ = nullptr;
    const std::uint8_t* end_ = nullptr;
    std::uint64_t left_ = 0;
};

/// Iterates the elements of a validated array.
class ArrayIter {
public:
    ArrayIter() = default;
    ArrayIter(const std::uint8_t* p, const std::uint8_t* end, std::uint64_t n) noexcept : p_(p), end_(end), left_(n) {}
    bool next(Value& v) noexcept;

private:
    const std::uint8_t* p_ = nullptr;
    const std::uint8_t* end_ = nullptr;
    std::uint64_t left_ = 0;
};

/// Canonical DAG-CBOR writer appending to a byte vector. Keys must be written in canonical
/// order by the caller (use key_compare); lengths are always shortest-form.
class Writer {
public:
    explicit Writer(std::vector<std::uint8_t>& out) noexcept : out_(out) {}
    void uint(std::uint64_t v) { head(0, v); }
    void integer(std::int64_t v) { v >= 0 ? head(0, std::uint64_t(v)) : head(1, std::uint64_t(-(v + 1))); }
    void bytes(ByteView b) { head(2, b.size()); out_.insert(out_.end(), b.begin(), b.end()); }
    void text(std::string_view s) { head(3, s.size()); out_.insert(out_.end(), s.begin(), s.end()); }
    void array(std::uint64_t n) { head(4, n); }
    void map(std::uint64_t n) { head(5, n); }
    /// Tag 42 over 0x00 + `cid` (binary CID).
    void link(ByteView cid) {
        out_.push_back(0xd8);
        out_.push_back(42);
        head(2, cid.size() + 1);
        out_.push_back(0);
        out_.insert(out_.end(), cid.begin(), cid.end());
    }
    void boolean(bool b) { out_.push_back(b ? 0xf5 : 0xf4); }
    void null() { out_.push_back(0xf6); }
    /// Appends already-encoded bytes verbatim (e.g. a Value's raw()).
    void raw(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }
    /// Major type + argument in shortest form.
    void head(std::uint8_t major, std::uint64_t arg);

    std::vector<std::uint8_t>& out() noexcept { return out_; }

private:
    std::vector<std::uint8_t>& out_;
};

/// Writes a head (major type + argument, shortest form) to `out` (≥ 9 bytes); returns its size.
std::size_t encode_head(std::uint8_t* out, std::uint8_t major, std::uint64_t arg) noexcept;

/// Size in bytes of the head for major/argument (1, 2, 3, 5 or 9).
inline std::size_t head_size(std::uint64_t arg) noexcept {
    return arg < 24 ? 1 : arg <= 0xff ? 2 : arg <= 0xffff ? 3 : arg <= 0xffffffffULL ? 5 : 9;
}

/// Re-encodes a validated value through Writer (decode → encode). For canonical input the
/// output is byte-identical; used by tests to prove the decoder and encoder agree.
void reencode(Value v, Writer& w);

}  // namespace sov::cbor
