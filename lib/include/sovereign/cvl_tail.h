// sovereign/cvl_tail.h — reading an archive while `cvl-pack` writes it, for `cvl-serve`
// (issue 11): messages in ordinal order from the sealed segments, then from the journal (the
// frames cvl-pack has read but not sealed, docs/format-cvl.md §6), following seals and journal
// rotations; what a subscriber of the archive is sent (markers and tombstoned messages
// skipped, seq = ordinal + 1 or the source's own); the seq → ordinal search; and a change
// notification (inotify) so that followers wait for news instead of polling.
#pragma once

#include "sovereign/cvl.h"
#include "sovereign/errc.h"
#include "sovereign/message.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sov::cvl {

/// One follower of a live archive. Thread-compatible: one per thread (or per consumer on one
/// thread: each has its own cluster cache and journal read position).
///
/// Journal records are checked as frame records (docs/format-frame-stream.md) when read; a
/// record cut short at the end of the journal is a write in progress, not damage: it is
/// read once complete.
class Tail {
public:
    /// Opens `dir` as Archive::open does. nullptr on failure with `err` and `*code` (if given):
    /// the codes of Archive::open.
    static std::unique_ptr<Tail> open(const std::string& dir, std::string& err, Errc* code = nullptr);
    ~Tail();
    Tail(const Tail&) = delete;
    Tail& operator=(const Tail&) = delete;

    /// One past the newest ordinal readable now: the sealed end after follow(), or further,
    /// the complete records of the journal that continues it. Costs a stat(2) per new
    /// segment, a directory listing of journal/ and a read of the journal's new bytes.
    /// Errors: io_* (a journal that cannot be read), with `err`.
    Errc head(std::uint64_t& out, std::string& err);

    /// The envelope of the first stored message at ordinal ≥ `ord` (purged ordinals are passed
    /// over). ok: `ord` is its ordinal and `env` stays valid until the next call. cvl_no_ordinal:
    /// nothing there yet (ord is the head; wait for news and ask again). Otherwise damage
    /// (cvl_checksum, cvl_bad_cluster, frame_*, …) or io_*, with `err` naming the file and byte
    /// offset; `ord` is the ordinal that cannot be read.
    Errc next(std::uint64_t& ord, ByteView& env, std::string& err);

    /// Tombstone bit of `ord` (docs/format-cvl.md §7), read at the moment of the call.
    bool deleted(std::uint64_t ord) const noexcept;
    Archive& archive() noexcept;

    struct Impl;

private:
    explicit Tail(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// How a served message is numbered (DESIGN §10): `ordinal`: seq = ordinal + 1, the payload
/// re-encoded with that one field changed; `source`: the archived message's own seq, the wire
/// sent byte for byte (an archive of one source, whose seqs increase with the ordinal).
enum class SeqMode { ordinal, source };

/// What the consumer of a feed is sent next.
struct FeedItem {
    enum class Kind {
        message,  ///< `wire` (valid until the next call), numbered `seq`, archived at `ord`
        wait,     ///< nothing more now: ask again after news (`ord` = the head)
        busy,     ///< `budget` records passed over without one to send: ask again soon
        error,    ///< the archive cannot serve `ord`: `code`, `err` naming file and offset
    } kind = Kind::wait;
    ByteView wire;
    std::int64_t seq = 0;
    std::uint64_t ord = 0;
    Errc code = Errc::ok;
    std::string err;
};

/// A subscriber's server-side filter (the query parameters `wantedDids` and
/// `wantedCollections`, as Jetstream users know them): with `dids`, only events of those DIDs;
/// with `collections` (NSIDs), only #commit events with an op in one of them, while the other
/// event types (#identity, #account, #sync) pass. Empty sets filter nothing.
struct FeedFilter {
    std::set<std::string, std::less<>> dids, collections;
    bool active() const noexcept { return !dids.empty() || !collections.empty(); }
};

/// The messages a subscriber is sent from ordinal `start` on, in ordinal order: markers are
/// never sent, nor frames without a seq (error and #info frames the tap received: the
/// conversation with the original server, not events), nor messages tombstoned at the moment
/// they would be sent (counted in hidden()), nor what `filter` excludes (filtered()).
class Feed {
public:
    Feed(Tail& tail, SeqMode mode, std::uint64_t start, FeedFilter filter = {})
        : tail_(tail), mode_(mode), ord_(start), filter_(std::move(filter)) {}
    /// The next item, looking at no more than `budget` records (tombstoned, filtered out,
    /// markers) before answering `busy`, so that a server thread serving many subscribers
    /// is never held for long by one whose filter passes over millions of records.
    FeedItem next(std::size_t budget = SIZE_MAX);
    std::uint64_t position() const noexcept { return ord_; }  ///< the next ordinal to look at
    std::uint64_t hidden() const noexcept { return hidden_; }
    std::uint64_t skipped() const noexcept { return skipped_; }  ///< markers and seq-less frames
    std::uint64_t filtered() const noexcept { return filtered_; }

private:
    bool wanted(ByteView wire);

    Tail& tail_;
    SeqMode mode_;
    std::uint64_t ord_;
    FeedFilter filter_;
    std::uint64_t hidden_ = 0, skipped_ = 0, filtered_ = 0;
    std::vector<std::uint8_t> out_;
    msg::Message m_;
};

/// Where a subscriber with `cursor` starts (the reference PDS's rules, docs/atproto.md §1; a
/// negative cursor counts as 0): no cursor → the head (live); cursor > the head seq →
/// FutureCursor (`future` set); otherwise the first ordinal whose message has seq > cursor.
/// `ordinal` mode: the head seq is the head ordinal (seq = ordinal + 1), so ordinal = cursor.
/// `source` mode: the head seq is the newest message's own seq (0 if none), and a binary
/// search over ordinals reads O(log n) messages (each passing markers and seq-less frames
/// forward). Errors: as Tail::head and Tail::next.
struct StartPoint {
    std::uint64_t ord = 0;
    bool future = false;
    std::int64_t head_seq = 0;  ///< the seq of the newest message (source mode) or the head ordinal
};
Errc find_start(Tail& tail, SeqMode mode, std::optional<std::int64_t> cursor, StartPoint& out, std::string& err);

/// Change notification on an archive directory (inotify on journal/, seg/ and tomb/): a
/// writer appending, sealing, rotating its journal, or a tombstone file growing.
class Watch {
public:
    /// Errors: io_* (no inotify, or the directories are missing), with `err`.
    static std::unique_ptr<Watch> open(const std::string& dir, std::string& err, Errc* code = nullptr);
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;
    /// Waits up to `timeout_ms` for a change; true if something changed (events drained, so
    /// a burst of writes is one answer), false on timeout. Interrupted by close().
    bool wait(int timeout_ms);
    /// Makes a waiting (and every later) wait() return false at once. Thread-safe.
    void close();

private:
    Watch() = default;
    int fd_ = -1, stop_[2] = {-1, -1};
};

}  // namespace sov::cvl
