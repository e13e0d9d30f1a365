// sovereign/ghost.h — relay against mesh: which events the relay dropped, delayed or invented
// (docs/design.md §11, the contract of `ghost-diff`).
//
// Two sides feed one Matcher: the relay (one or more relay sources) and the mesh (one source per
// PDS host). Events are matched by key, because a relay re-encodes and re-sequences:
//   #commit, #sync        (DID, commit CID)        — #sync's commit is its CAR root
//   #identity             (DID, time)
//   #account              (DID, time, active, status)
// Other types (#info, error frames, legacy and unknown types) are not matched (counted as
// skipped). Markers (docs/format-frame-stream.md) say when each source was observed.
//
// Observation. Each source has a history of spans in which it was NOT observed: before its first
// `connect`, between a `disconnect` (or a `connect` while connected: the tap was killed) and a
// `connect` WITHOUT a cursor (live head: what was sent meanwhile is gone), the span a `gap`
// marker covers (from the source's last message before it to the marker), and after its input
// ends. A reconnect WITH a cursor and no gap marker is a bridged outage: the server replays what
// was missed, so nothing is unobserved — but a pending event waits until the other side has been
// connected for a whole window after it came back, so that the replay can arrive.
//
// Verdicts, for each event:
//   match       both sides delivered it; latency = relay recv − mesh recv (µs, negative when the
//               relay was first). Latency and the win rate count only matches with no outage of
//               the later side in between (a replayed copy measures the outage, not the relay).
//   drop        a mesh event the relay did not deliver within the window while the relay was
//               observed all the time (from the mesh recv until the window closed).
//   unobserved  not matched, but the other side was not observed for part of that time: never a
//               drop. Side says whose copy is missing (mesh event: relay unobserved; relay event:
//               the mesh did not observe the DID's PDS, or that PDS is not known to the mesh).
//   relay-only  a relay event no mesh source delivered within the window while the mesh was
//               observing the DID's PDS (learned from the mesh's own events) all the time.
// Time is the inputs' own recv clock: the Matcher decides an event only once every input has
// passed its recv + window (the watermark), so the order in which the inputs are read does not
// change the verdicts. Memory: the pending events (window × rate per side, plus what waits out an
// outage, at most max_pending each), the decided keys (16 bytes each, kept between one and two
// spans of two windows + 60 s after their decision, to tell late copies and duplicates from new
// events) and one small entry per DID seen on the mesh.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/frame_stream.h"
#include "sovereign/io.h"

#include <array>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sov::ghost {

enum class Side : std::uint8_t { relay, mesh };
enum class Kind : std::uint8_t { match, drop, unobserved, relay_only };
/// "match", "drop", "unobserved", "relay-only".
std::string_view to_string(Kind k) noexcept;
/// "relay", "mesh".
std::string_view to_string(Side s) noexcept;

/// What the matcher needs of one message (views into the wire bytes).
struct Key {
    std::string_view type;      ///< "commit", "sync", "identity", "account"
    std::string_view did;
    ByteView commit;            ///< binary CID (#commit, #sync); empty otherwise
    std::string_view time;      ///< #identity, #account
    bool active = true;         ///< #account
    std::string_view status;    ///< #account, empty when absent
    std::string_view collection;  ///< #commit: the collection of its first op; empty otherwise
};
/// Extracts the key of one event-stream message (header + payload, as in an envelope's `wire`).
/// The bytes are read with a bounded scan, not a strict DAG-CBOR check (ghost-diff compares,
/// cbor-verify verifies): every length is checked against the end, nesting is limited, the
/// strings returned are valid UTF-8, nothing may follow the payload. ok: `out` filled (views
/// into `wire`). frame_bad_envelope: not a header map and a payload map, or a key field of the
/// wrong type; cbor_missing_field: a matched type without its key fields (`why` names them).
/// Errc::ok with out.type empty: a type that is not matched (info, error frames, unknown types).
Errc key_of(ByteView wire, Key& out, std::string& why);

/// A 128-bit hash of an event's match key: the type's class (commit and sync share one), the DID
/// and the rest of the key (commit CID; time; active and status), each field length-prefixed.
/// It is all the matcher keeps of a key to recognise its copies: two different keys hash alike
/// with a chance of about 2^-128 per pair.
struct KeyHash {
    std::uint64_t a = 0, b = 0;
    friend bool operator==(const KeyHash&, const KeyHash&) = default;
};
/// The hash of `k` (whose type is one of the matched four). Pure; cheap (≈ 10 multiplies per 8
/// bytes of key), so a caller may compute it where it extracts keys (a reader thread).
KeyHash key_hash(const Key& k) noexcept;

/// One decided event (one JSON line of `ghost-diff`).
struct Finding {
    Kind kind = Kind::match;
    Side side = Side::mesh;      ///< whose event it is (match: mesh); unobserved: the side that has it
    std::string type;            ///< "commit", "sync", "identity", "account"
    std::string did;
    std::string cid;             ///< commit CID as base32 text ("bafyrei…"); empty for identity/account
    std::string time;            ///< identity/account `time`
    bool active = true;          ///< account `active`
    std::string status;          ///< account `status`; empty when absent
    std::string host;            ///< the mesh source (PDS host) of the DID; empty when not known
    std::string collection;      ///< first op's collection (commits)
    std::int64_t mesh_recv = 0;  ///< µs; 0 when the mesh has no copy
    std::int64_t relay_recv = 0; ///< µs; 0 when the relay has no copy
    bool replayed = false;       ///< match only: the later copy came after an outage (latency not counted)
    std::string reason;          ///< unobserved: why (which source was not observed)
    std::int64_t latency() const noexcept { return relay_recv - mesh_recv; }
};

namespace detail {
/// An allocator of zeroed memory (calloc) whose value-less construct() writes nothing: a large
/// vector resized from empty touches only the pages later written (the latency histogram's
/// 5.6 MB, of which a run uses a few pages).
template <class T>
struct ZeroedAlloc {
    using value_type = T;
    ZeroedAlloc() noexcept = default;
    template <class U>
    ZeroedAlloc(const ZeroedAlloc<U>&) noexcept {}
    T* allocate(std::size_t n) {
        if (void* p = std::calloc(n, sizeof(T))) return static_cast<T*>(p);
        throw std::bad_alloc();
    }
    void deallocate(T* p, std::size_t) noexcept { std::free(p); }
    template <class U, class... A>
    void construct(U* p, A&&... a) {
        if constexpr (sizeof...(A) == 0) ::new (static_cast<void*>(p)) U;  // calloc's zeros stay
        else ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
    }
    template <class U>
    bool operator==(const ZeroedAlloc<U>&) const noexcept { return true; }
};
}  // namespace detail

/// Latency histogram: 100 µs buckets from −10 s to +60 s, outside that in two overflow buckets.
/// Percentiles are exact to the bucket (0.1 ms).
class Histogram {
public:
    static constexpr std::int64_t kBucketUs = 100, kMinUs = -10'000'000, kMaxUs = 60'000'000;
    Histogram() = default;
    /// A copy writes only the buckets between the least and the greatest value added (the rest
    /// are zero): a snapshot (Matcher::stats) does not touch all 5.6 MB.
    Histogram(const Histogram& o);
    Histogram& operator=(const Histogram& o);
    Histogram(Histogram&&) noexcept = default;
    Histogram& operator=(Histogram&&) noexcept = default;
    void add(std::int64_t us) noexcept;
    std::uint64_t count() const noexcept { return n_; }
    /// The q-quantile (0 ≤ q ≤ 1) in µs: the middle of its bucket (or the overflow bound).
    std::int64_t quantile(double q) const noexcept;
    /// Counts per bucket; bucket i covers [kMinUs + (i−1)·kBucketUs, …) for i in 1..N, 0 and N+1
    /// are the underflow and overflow. Empty until the first add() (5.6 MB once used).
    const std::vector<std::uint64_t, detail::ZeroedAlloc<std::uint64_t>>& buckets() const noexcept { return b_; }
    static constexpr std::size_t kBuckets = std::size_t((kMaxUs - kMinUs) / kBucketUs + 2);
    std::int64_t min() const noexcept { return min_; }
    std::int64_t max() const noexcept { return max_; }

private:
    std::vector<std::uint64_t, detail::ZeroedAlloc<std::uint64_t>> b_;  // resized once, from empty
    std::uint64_t n_ = 0;
    std::int64_t min_ = std::numeric_limits<std::int64_t>::max(), max_ = std::numeric_limits<std::int64_t>::min();
};

/// One source's observation history (for the report's timeline): spans in µs.
struct SourceView {
    std::string src;
    Side side = Side::mesh;
    std::int64_t first_recv = 0, last_recv = 0;
    std::uint64_t events = 0;           ///< matched-type messages read
    std::uint64_t connects = 0;
    std::vector<std::pair<std::int64_t, std::int64_t>> unobserved;  ///< [from, to] spans (within first..last)
    std::vector<std::pair<std::int64_t, std::int64_t>> outages;     ///< every disconnect → connect, bridged or not
};

/// Counts per time bucket (the report's "win rate over time").
struct TimeBucket {
    std::uint64_t matches = 0;     ///< every match (replayed ones too)
    std::uint64_t timed = 0;       ///< latency-counted matches (the win rate's denominator)
    std::uint64_t mesh_first = 0;  ///< of those, the mesh first
    std::uint64_t drops = 0, unobserved = 0, relay_only = 0;
};

/// Everything the summary, the HTML report and the TUI show. Filled by Matcher::stats().
struct Stats {
    std::uint64_t relay_events = 0, mesh_events = 0;   ///< matched-type messages read
    std::uint64_t skipped = 0;                         ///< messages of types not matched
    std::uint64_t markers = 0;
    std::uint64_t matches = 0, drops = 0, relay_only = 0;
    std::uint64_t unobserved_mesh = 0;   ///< mesh events whose relay copy was not observable
    std::uint64_t unobserved_relay = 0;  ///< relay events whose mesh copy was not observable
    std::uint64_t replayed = 0;          ///< matches not counted in latency (outage in between)
    std::uint64_t duplicates = 0;        ///< a second copy of a key on the same side (not a finding)
    std::uint64_t late = 0;              ///< a copy that came after its key was decided (drop/relay-only)
    /// Records whose recv is more than a window before the latest of their input: the input is
    /// not in receive order (a tap's output always is), and verdicts about them may be wrong.
    std::uint64_t out_of_order = 0;
    std::uint64_t mesh_first = 0;        ///< latency-counted matches where the mesh was first
    std::uint64_t pending_relay = 0, pending_mesh = 0;  ///< undecided now
    std::int64_t first_recv = 0, last_recv = 0;         ///< µs, over both sides
    std::int64_t watermark = 0;                         ///< µs: decided up to here
    Histogram latency;                                  ///< latency-counted matches
    std::map<std::string, std::uint64_t> drops_by_host, drops_by_collection;
    std::map<std::int64_t, TimeBucket> by_time;         ///< key: bucket start, µs (bucket_us wide)
    std::int64_t bucket_us = 10'000'000;
    std::vector<SourceView> sources;
    std::vector<Finding> recent_drops;                  ///< the last `keep_drops` drops, oldest first
    /// The win rate: the share of latency-counted matches the mesh delivered first (0 without any).
    double win_rate() const noexcept { return latency.count() ? double(mesh_first) / double(latency.count()) : 0; }
};

struct Options {
    std::int64_t window_us = 5'000'000;   ///< how long a copy may trail the other (default 5 s; 1 µs..1 h)
    std::size_t max_pending = 4'000'000;  ///< per side; beyond it the oldest are decided unobserved
    std::size_t keep_drops = 1000;        ///< drops kept in Stats::recent_drops (for the report)
    std::int64_t bucket_us = 10'000'000;  ///< Stats::by_time bucket width
};

/// The matcher. Feed it records (messages and markers) from both sides, in any interleaving
/// where each source's records come in its own order; call advance() after a batch; findings
/// come out through the callback as they are decided. Single-threaded.
class Matcher {
public:
    using Sink = std::function<void(const Finding&)>;
    Matcher(Options opt, Sink sink);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;

    /// Declares an input (one per file or pipe; several sources may share an input) and returns
    /// its id. The watermark is the least recv over inputs that have not ended.
    int add_input(Side side, std::string name);
    /// One record of input `in` (its side decides relay or mesh; for a merged input use
    /// add_message). ok, or the key_of() error for a matched type whose key fields are missing
    /// (the record is then counted in Stats::skipped and not matched; `why` says what).
    Errc add(int in, const frames::Envelope& env, std::string& why);
    /// The parts of add() for a caller that extracts keys itself (e.g. on reader threads): a
    /// message of `src` received at `recv` (µs) with its key (nullptr, or an empty type, for a
    /// message that is not matched: it still counts as observation of `src`), and a marker.
    /// `hash`: key_hash(*key) if the caller has it already (nullptr: computed here).
    void add_message(int in, Side side, std::string_view src, std::int64_t recv, const Key* key,
                     const KeyHash* hash = nullptr);
    /// A hint, no effect on results: starts loading the memory that add_message() of a key
    /// with this hash will look at (the table of decided keys, tens of MB for a long input, is
    /// read at random). A caller that has the hashes of the next messages calls it a few
    /// messages ahead, so that the loads overlap instead of each stalling in turn.
    void prefetch(const KeyHash& hash) const noexcept;
    void add_marker(int in, Side side, const frames::Envelope& env);
    /// The input has ended (EOF): its sources stop being observed at their last recv.
    void end_input(int in);
    /// Decides what the watermark allows. Cheap when nothing is due.
    void advance();
    /// Decides everything left (all inputs ended, or the user stopped): pending events whose
    /// window could not complete are unobserved.
    void finish();
    /// A snapshot: the counters, the latency histogram and the last 50 drops (what a live view
    /// needs), and with `full` every time bucket, every source's history and all kept drops
    /// (what the report needs).
    Stats stats(bool full = true) const;
    std::int64_t watermark() const noexcept;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace sov::ghost
