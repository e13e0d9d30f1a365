// sovereign/message.h — event-stream messages of com.atproto.sync.subscribeRepos.
// Source: docs/protocol.md §1 (atproto event-stream spec "Framing"; subscribeRepos lexicon,
// current and deprecated types). A wire message is two concatenated DAG-CBOR objects,
// header {op, t?} then payload. Parsing validates both strictly and reads every field of the
// known types into views (no copies); the Message object is reusable so steady-state parsing
// allocates nothing.
#pragma once

#include "sovereign/cbor.h"
#include "sovereign/errc.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sov::msg {

inline constexpr std::size_t kMaxMessage = 5'000'000;       ///< whole wire message, bytes ("5 MBytes")
inline constexpr std::size_t kMaxCommitBlocks = 2'000'000;  ///< #commit blocks, bytes (Sync 1.1)
inline constexpr std::size_t kMaxOps = 200;                 ///< #commit ops
inline constexpr std::size_t kMaxSyncBlocks = 10'000;       ///< #sync blocks, bytes

enum class Type : std::uint8_t { commit, sync, identity, account, info, error, handle, migrate, tombstone, unknown };

/// Short name as in the header `t` without '#' ("commit", …; "error" for op = -1).
std::string_view to_string(Type t) noexcept;
/// Type from a header `t` value ("#commit" → commit; anything unknown → unknown).
Type type_from_header(std::string_view t) noexcept;

enum class OpAction : std::uint8_t { create, update, del };

/// One `#repoOp`: path is "collection/rkey"; cid empty when null (delete); prev empty when
/// absent (create, or legacy ops).
struct RepoOp {
    OpAction action = OpAction::create;
    std::string_view path;
    ByteView cid;
    ByteView prev;
};

/// A parsed message. Fields not carried by the type keep their defaults.
struct Message {
    ByteView header_raw, payload_raw;
    std::int64_t op = 0;       ///< 1 message, -1 error
    std::string_view t;        ///< header type ("#commit"), empty for errors
    Type type = Type::unknown;
    cbor::Value payload;

    std::int64_t seq = 0;      ///< 0 when the type has none (#info, errors)
    std::string_view did;      ///< `repo` for #commit, `did` otherwise
    std::string_view time;

    // #commit / #sync
    std::string_view rev;
    std::optional<std::string_view> since;  ///< #commit; nullopt when null
    ByteView commit;            ///< #commit: commit CID (binary)
    ByteView blocks;            ///< CAR slice
    ByteView prev_data;         ///< #commit: empty when absent
    bool rebase = false, too_big = false;
    std::vector<RepoOp> ops;

    // #identity / #handle
    std::optional<std::string_view> handle;
    // #account
    bool active = true;
    std::optional<std::string_view> status;
    // #info (name) / error frames (error) and their optional message
    std::string_view name;
    std::optional<std::string_view> message;
};

/// Why a message was refused: the error, whether it is a size limit (verdict too-big rather
/// than malformed), the field at fault ("" for the framing) and its byte offset in the wire.
struct Problem {
    Errc errc = Errc::ok;
    bool too_big = false;
    std::string_view field;
    std::size_t offset = 0;
    explicit operator bool() const noexcept { return errc != Errc::ok; }
};

/// Parses and checks one wire message: size ≤ 5 MB, exactly two strict DAG-CBOR objects,
/// header types, every required field of known types present with the right type and
/// syntax (DID, TID, datetime, repo path, CID), op actions consistent with cid presence, and
/// the limits on blocks and ops. Unknown `t` values and unknown `op` values parse as
/// Type::unknown (callers skip them).
Problem parse(ByteView wire, Message& out);

// -- building messages (a server's side of the stream) ------------------------------------------

/// Splits `wire` into its header and payload objects; false unless both are DAG-CBOR maps
/// (nothing else checked: no field, no limit).
bool split(ByteView wire, ByteView& header, ByteView& payload);

/// `wire` (header + payload) with the payload's `seq` replaced by `seq` (minimal encoding, so
/// still canonical), appended to `out` (cleared first); every other byte is copied. false (out
/// cleared) when `wire` is not two DAG-CBOR objects whose second is a map with an unsigned
/// integer `seq`. Used to renumber a stream (a relay's own seq; cvl-serve's ordinal + 1).
bool resequence(ByteView wire, std::uint64_t seq, std::vector<std::uint8_t>& out);

/// An error frame (event-stream spec "Framing"): header {op: -1}, payload {error, message?}
/// (message omitted when empty), e.g. error_frame("FutureCursor", "Cursor in the future.").
std::string error_frame(std::string_view error, std::string_view message);
/// An #info frame: header {op: 1, t: "#info"}, payload {name, message?}, e.g. OutdatedCursor.
std::string info_frame(std::string_view name, std::string_view message);

}  // namespace sov::msg
