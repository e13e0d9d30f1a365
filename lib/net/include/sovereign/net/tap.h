// sovereign/net/tap.h — the cursor rules every tap applies to one source's event stream
// (docs/design.md §8), as pure logic shared by relay-tap and mesh-tap: which message to write,
// which to drop as a duplicate of one already written, when the stream broke its order (drop
// the connection), and where events were not observed (a `gap` marker).
//
// Facts used (docs/protocol.md §1): a wire message is a DAG-CBOR header {op, t} then a payload;
// op = 1 a message whose type is `t` ("#commit", "#identity", "#account", "#sync", "#info",
// …), op = −1 an error frame {error, message?}; every type but #info carries an integer `seq`
// that increases within a stream (it may skip); `cursor=N` asks for the events after N.
#pragma once

#include "sovereign/io.h"

#include <cstdint>
#include <optional>
#include <string_view>

namespace sov::net {

/// What a tap needs of one wire message. Views into the message bytes.
struct StreamHead {
    bool ok = false;            ///< header and payload are two strict DAG-CBOR objects, header has `op`
    std::int64_t op = 0;        ///< 1 message, −1 error frame
    std::string_view t;         ///< header `t` ("#commit"); empty for error frames
    std::optional<std::int64_t> seq;  ///< payload `seq` (an integer) when present
    std::string_view name;      ///< error frame `error`, or #info `name` ("OutdatedCursor")
    std::string_view message;   ///< error frame or #info `message` ("" when absent)
};

/// Reads header and seq of `wire` without validating more than the two objects' structure.
/// A message that does not parse gives ok = false (the tap still writes it: one frame per
/// message, judged downstream by cbor-verify).
StreamHead peek_stream_message(ByteView wire) noexcept;

/// Events of seq in [from, to] that were not observed.
struct Gap {
    std::int64_t from = 0, to = 0;
};

/// One source's cursor: the last seq accepted for writing.
class SourceCursor {
public:
    explicit SourceCursor(std::optional<std::int64_t> cursor = std::nullopt) : cursor_(cursor) {}

    /// The last seq accepted, nullopt before the first (the connection then starts live).
    std::optional<std::int64_t> cursor() const noexcept { return cursor_; }

    /// Forgets the cursor: the next connection starts at the live head and observes from its
    /// first event (mesh-tap --future-cursor live, after a host's seq went back). Never silent:
    /// the caller says so (a message, a disconnect marker naming why, a connect with no cursor).
    void reset() noexcept {
        cursor_.reset();
        conn_last_.reset();
        checked_first_ = false;
    }

    /// A new connection was opened asking for the events after cursor().
    void on_connect() noexcept {
        conn_last_.reset();
        checked_first_ = false;
    }

    enum class Verdict : std::uint8_t {
        write,           ///< write the message (and the gap marker first, when set)
        duplicate,       ///< seq ≤ cursor: already written (a replay after reconnecting)
        non_increasing,  ///< seq ≤ the previous seq of this connection: drop it and reconnect
    };
    struct Step {
        Verdict verdict = Verdict::write;
        std::optional<Gap> gap;  ///< first seq after connecting was not cursor + 1
    };

    /// Decides for one message of the current connection. Messages without a seq (#info,
    /// error frames, unparseable ones) are written and change nothing. The first message with
    /// a seq after on_connect() whose seq > cursor + 1 gives the gap [cursor + 1, seq − 1]
    /// (only when a cursor was asked for: a live start observes from its first event).
    Step on_message(const StreamHead& head) noexcept;

private:
    std::optional<std::int64_t> cursor_;
    std::optional<std::int64_t> conn_last_;
    bool checked_first_ = false;
};

}  // namespace sov::net
