// sovereign/frame_stream.h — the frame stream of docs/design.md §2 (exact bytes:
// docs/format-frame-stream.md): records `uvarint(n) envelope`, 1 ≤ n ≤ 16 MiB, varint ≤ 4
// bytes and minimal; envelope = canonical DAG-CBOR map {src, vrd?, why?, recv, wire, …unknown}
// for a message, {src, mark, recv, …unknown} for a marker (design §2 "Markers").
#pragma once

#include "sovereign/errc.h"
#include "sovereign/io.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sov::frames {

inline constexpr std::size_t kMaxEnvelope = 16u << 20;  ///< 16 MiB
inline constexpr std::size_t kMaxVarint = 4;             ///< 4 × 7 bits ≥ 2^24
inline constexpr std::size_t kMaxSrc = 253;

/// A decoded envelope: views into the record bytes (valid until the reader moves on).
struct Envelope {
    std::string_view src;
    std::optional<std::string_view> vrd;
    std::int64_t recv = 0;   ///< µs since the Unix epoch (UTC), 0 if unknown
    ByteView wire;           ///< the event-stream message exactly as received; empty for a marker
    ByteView mark;           ///< a marker's `mark` map (its DAG-CBOR bytes); empty for a message
    ByteView raw;            ///< the whole envelope (map) bytes

    /// True for a marker (a record with `mark` and no `wire`): its `wire` is empty and means
    /// nothing; decode it with parse_marker().
    bool is_marker() const noexcept { return !mark.empty(); }
};

/// Validates and decodes one envelope (DAG-CBOR strict, required keys and types, src ≤ 253
/// bytes, exactly one of `wire` and `mark`, a `mark` that parse_marker() accepts). Unknown
/// keys are allowed. Errors: frame_bad_envelope, frame_missing_field (src or recv absent,
/// or neither wire nor mark), frame_mark_and_wire (at the `wire` entry), frame_field_type,
/// frame_src_too_long, frame_bad_mark (at the offending entry of the mark map), and the CBOR
/// codes. Error offset is relative to `raw`.
Located parse_envelope(ByteView raw, Envelope& out) noexcept;

/// A decoded marker (design §2 "Markers"): what a tap saw of its connection to `src`.
/// Fields not carried by `kind` stay empty; unknown kinds keep only `kind`.
struct Marker {
    std::string kind;                      // "connect", "disconnect", "gap", "idle", or other
    std::optional<std::string> url;        // connect
    std::optional<std::int64_t> cursor;    // connect (absent = live head)
    std::optional<std::string> reason;     // disconnect
    std::optional<std::int64_t> from, to;  // gap (inclusive seqs)
    std::optional<std::int64_t> since;     // idle (µs)
};
/// Appends one marker record {src, mark, recv} (canonical): `mark` holds `kind` and every
/// field of `m` that is set. false + nothing appended on src > 253 bytes, or when no reader
/// would accept the record (a known kind without its required fields, gap from > to,
/// text that is not UTF-8).
bool append_marker(std::vector<std::uint8_t>& out, std::string_view src, std::int64_t recv, const Marker& m);
/// Decodes env.mark (env.is_marker() must be true; otherwise frame_missing_field at 0). The
/// mark must be a map with a text `kind`; known kinds need their keys with these types:
/// connect `url` text, `cursor` int optional; disconnect `reason` text; gap `from`, `to` int
/// with from ≤ to; idle `since` int. Unknown kinds and unknown keys pass. Error
/// (frame_bad_mark) offset relative to env.mark: the offending entry, or 0 for the map.
Located parse_marker(const Envelope& env, Marker& out) noexcept;

/// Where an envelope's fields sit inside its raw bytes, so that a parsed envelope can be
/// copied elsewhere and its views rebuilt without parsing it again (layout_of / at).
struct EnvelopeLayout {
    std::uint32_t src_off = 0, src_len = 0, vrd_off = 0, vrd_len = 0, wire_off = 0, wire_len = 0, raw_len = 0;
    std::uint32_t mark_off = 0, mark_len = 0;  ///< mark_len 0 for a message
    bool has_vrd = false;
    std::int64_t recv = 0;
};
/// The layout of a parsed envelope (offsets relative to env.raw).
EnvelopeLayout layout_of(const Envelope& env) noexcept;
/// The envelope whose raw bytes (a copy of the original) start at `raw`.
Envelope at(const EnvelopeLayout& l, const std::uint8_t* raw) noexcept;

/// Parses one whole record (varint + envelope, nothing after). Error offsets are relative
/// to `record`.
Located parse_record(ByteView record, Envelope& out) noexcept;

/// Appends one record (varint + canonical envelope) built from fields. Returns false and
/// appends nothing when no reader would accept the record: `src` over 253 bytes, or an
/// envelope over 16 MiB.
bool append_record(std::vector<std::uint8_t>& out, std::string_view src, std::optional<std::string_view> vrd,
                   std::int64_t recv, ByteView wire);
/// Appends `env` re-encoded with `vrd` set (replacing any earlier verdict) and, when given,
/// `why` (the reason for a rejecting verdict, in words; an earlier `why` is dropped either
/// way), keeping every other key, unknown ones included, byte for byte, in canonical key
/// order (src, vrd, why, …). Returns false and appends nothing when the new envelope would
/// exceed 16 MiB (kMaxEnvelope): a record no reader accepts is never written.
bool append_record_with_verdict(std::vector<std::uint8_t>& out, const Envelope& env, std::string_view vrd,
                                std::optional<std::string_view> why = std::nullopt);
/// The one record encoder: appends `uvarint(envelope.size()) envelope`. Every writer of
/// frame records whose envelope is already encoded (journal, cvl-cat, frame-cat's JSON
/// input, the raw pass-through below) goes through it. Returns false and appends nothing
/// when the size is outside 1..16 MiB (a record its readers would reject).
bool append_envelope(std::vector<std::uint8_t>& out, ByteView envelope);
/// Appends `env` unchanged (its record: varint + raw envelope bytes).
bool append_record_raw(std::vector<std::uint8_t>& out, const Envelope& env);

/// Buffered reader of a frame stream from an io::Input (file, stdin, zstd-decoded if
/// compressed). Framing errors stop the reader: error() gives the code and the absolute
/// byte offset of the faulty record (or of the offending byte inside it).
namespace detail {
/// An allocator whose value-less construct() default-initialises (no zero-fill on resize).
template <class T>
struct NoZeroAlloc : std::allocator<T> {
    using value_type = T;
    NoZeroAlloc() noexcept = default;
    template <class U>
    NoZeroAlloc(const NoZeroAlloc<U>&) noexcept {}
    template <class U, class... A>
    void construct(U* p, A&&... a) {
        if constexpr (sizeof...(A) == 0) ::new (static_cast<void*>(p)) U;
        else ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
    }
};
}  // namespace detail

class Reader {
public:
    explicit Reader(io::Input in);
    /// Opens a path ("-" = stdin). Check open_errno() afterwards (0 if fine).
    static Reader open(const std::string& path) { return Reader(io::Input::open(path)); }

    /// Reads the next record. Returns true with `env` filled (views valid until the next
    /// call), or false at the clean end of input or on error (then error() is set; an I/O
    /// failure is Errc::io_error, described by io_error_text()).
    bool next(Envelope& env);
    Located error() const noexcept { return err_; }
    const std::string& io_error_text() const noexcept { return in_.error_text(); }
    int open_errno() const noexcept { return in_.open_errno(); }
    const std::string& name() const noexcept { return in_.name(); }
    /// Absolute offset of the record last returned (or of the faulty one after an error).
    std::uint64_t record_offset() const noexcept { return rec_off_; }
    /// Total bytes consumed so far.
    std::uint64_t bytes_read() const noexcept { return consumed_; }

    /// Holding, so a batch of records needs no copy of its own: hold() keeps the bytes of the
    /// record last returned by next() and of every later one in the buffer until release().
    /// The buffer may still move (compaction, growth), so views from next() are not kept:
    /// keep each record's position as env.raw.data() − held_data() (taken right after next())
    /// and resolve it against held_data() when needed. Memory: the held bytes plus one read
    /// block. hold() without a record returned yet holds from the next one.
    void hold() noexcept {
        held_ = rec_start_;
        holding_ = true;
    }
    void release() noexcept { holding_ = false; }
    /// Start of the held bytes (valid until the next call to next()).
    const std::uint8_t* held_data() const noexcept { return buf_.data() + held_; }

private:
    bool fill(std::size_t need);  // make ≥ need bytes available from start_; false on EOF/error
    io::Input in_;
    // Grows without zero-filling: read() writes every byte before it is looked at, and a
    // zeroed 1 MiB would touch all of its pages even for a short input.
    std::vector<std::uint8_t, detail::NoZeroAlloc<std::uint8_t>> buf_;
    std::size_t start_ = 0, end_ = 0;
    std::size_t rec_start_ = 0;  // buffer index of the record last returned (its varint)
    std::size_t held_ = 0;       // buffer index of the first held byte, while holding_
    bool holding_ = false;
    std::uint64_t consumed_ = 0;  // absolute offset of buf_[start_]
    std::uint64_t rec_off_ = 0;
    bool eof_ = false;
    Located err_;
};

/// Buffered writer to a file descriptor. A closed pipe (EPIPE) sets broken_pipe() and
/// silently drops further output so the tool can end quietly (docs/design.md §6).
class Writer {
public:
    explicit Writer(int fd, std::size_t buffer = 1u << 20) : fd_(fd) { buf_.reserve(buffer); }
    ~Writer() { flush(); }
    /// The buffer to append to; call maybe_flush() after appending.
    std::vector<std::uint8_t>& buffer() noexcept { return buf_; }
    void maybe_flush() { if (buf_.size() >= buf_.capacity() / 2) flush(); }
    void write(ByteView b) { buf_.insert(buf_.end(), b.begin(), b.end()); maybe_flush(); }
    /// Writes everything buffered. Returns false on an error other than EPIPE (errno kept).
    bool flush();
    bool broken_pipe() const noexcept { return broken_pipe_; }
    bool failed() const noexcept { return failed_; }
    int sys_errno() const noexcept { return errno_; }
    std::uint64_t bytes_written() const noexcept { return written_; }

private:
    int fd_;
    std::vector<std::uint8_t> buf_;
    bool broken_pipe_ = false, failed_ = false;
    int errno_ = 0;
    std::uint64_t written_ = 0;
};

}  // namespace sov::frames
