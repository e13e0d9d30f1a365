// sovereign/sim_net.h — simulated PDSes and a relay (`mesh-sim serve --pdses N --relay`,
// issue 10 item 5): the event logs with their replay windows, the cursor rules of the reference
// PDS and of an indigo relay, slow-consumer detection, the relay's merge with its own seq and
// its injected faults, the JSON endpoints, and the ground truth. No network code: mesh-sim
// wires a Network to net::HttpServer (each Subscription's step() becomes a WebSocket stream).
// Model and truth encoding: man/mesh-sim.1.md, "SIMULATED PDSES AND RELAY".
#pragma once

#include "sovereign/errc.h"
#include "sovereign/message.h"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sov::sim {

// -- event-stream messages ---------------------------------------------------------------------

// resequence(), error_frame(), info_frame(): sovereign/message.h, used here unqualified.
using msg::error_frame;
using msg::info_frame;
using msg::resequence;

/// What the simulation needs to know of a message.
struct WireFacts {
    std::string type;                      ///< header `t`, e.g. "#commit"; "" for an error frame
    std::int64_t seq = -1;                 ///< payload `seq`, −1 if absent
    std::string did;                       ///< `repo` (#commit) or `did`
    std::string rev;                       ///< `rev` if present
    std::string commit;                    ///< #commit: the commit CID as text
    std::vector<std::string> collections;  ///< #commit: the collection of each op path
    bool inactive = false;                 ///< #account with active = false
};
/// false when `wire` is not header + payload map.
bool inspect(ByteView wire, WireFacts& f);

// -- replay window -----------------------------------------------------------------------------

struct LoggedEvent {
    std::uint64_t seq = 0;
    std::int64_t time_us = 0;  ///< emission time, µs since the epoch
    std::shared_ptr<const std::string> wire;
};

/// The last `window` events of one host, addressed by absolute positions that keep counting
/// across evictions and clear() (so a reader's position stays meaningful).
class EventLog {
public:
    explicit EventLog(std::size_t window) : window_(window ? window : 1) {}
    /// Appends (seq must be above head_seq(); not checked), evicting the oldest beyond the window.
    void append(LoggedEvent e);
    /// Forgets every event (a restart that lost its database): head_seq() and evicted_seq() become 0.
    void clear();
    std::uint64_t begin() const noexcept { return end_ - events_.size(); }  ///< oldest kept position
    std::uint64_t end() const noexcept { return end_; }                     ///< one past the newest
    const LoggedEvent* at(std::uint64_t pos) const noexcept;                ///< nullptr outside [begin, end)
    std::uint64_t head_seq() const noexcept { return events_.empty() ? 0 : events_.back().seq; }
    /// Highest seq evicted from the window since the last clear(); 0 if none.
    std::uint64_t evicted_seq() const noexcept { return evicted_seq_; }
    /// First position whose seq is above `cursor` (end() if none).
    std::uint64_t after(std::uint64_t cursor) const noexcept;
    std::size_t size() const noexcept { return events_.size(); }

private:
    std::size_t window_;
    std::deque<LoggedEvent> events_;
    std::uint64_t end_ = 0;
    std::uint64_t evicted_seq_ = 0;
};

enum class CursorRule {
    pds,    ///< reference PDS: OutdatedCursor info before the window, FutureCursor past the head
    relay,  ///< indigo: before the window replays from the oldest, past the head goes live
};

/// Where a new subscriber starts. `pos` is the log position of its first event.
struct StartPlan {
    enum class Kind { live, replay, outdated, future } kind = Kind::live;
    std::uint64_t pos = 0;
};
/// The cursor rules (docs/atproto.md §1): no cursor → live (end); cursor > head_seq → future
/// (PDS) or live (relay); cursor < evicted_seq → outdated from begin (PDS; the relay replays
/// from begin without saying so); otherwise replay of the events with seq > cursor.
StartPlan plan_start(const EventLog& log, std::optional<std::uint64_t> cursor, CursorRule rule) noexcept;

// -- the network -------------------------------------------------------------------------------

struct NetOptions {
    std::size_t pdses = 1;
    bool relay = false;
    std::size_t pds_window = 10000;     ///< events each PDS can replay
    std::size_t relay_window = 100000;  ///< events the relay can replay
    std::size_t too_slow = 500;         ///< live events buffered for one consumer before ConsumerTooSlow
    /// A PDS subscriber found too slow whose socket does not take the error frame within this
    /// many ms (a reader that stopped reading) is cut at its next step(false) instead.
    std::uint32_t too_slow_grace_ms = 10000;
    double relay_drop = 0;              ///< share of events the relay drops at random
    std::vector<std::size_t> relay_drop_hosts;        ///< PDS indexes whose events the relay drops
    std::vector<std::string> relay_drop_collections;  ///< commits touching these are dropped
    double relay_delay_ms = 0;          ///< mean of the exponential delay PDS → relay (0: none)
    double pds_restart_every_s = 0;     ///< one PDS restarts (log lost, seq back to 1) this often
    double cut_every_s = 0;             ///< every open connection is cut (no close frame) this often
    double accept_drop = 0;             ///< share of PDSes that accept a subscription then cut it
    std::uint64_t seed = 1;
    std::string relay_label = "relay.test";
};

/// One ground-truth record (a frame-stream record with extra envelope keys, see append_truth).
struct TruthRecord {
    std::string_view src;                   ///< PDS label, the relay label, or "dropped." + relay label
    std::int64_t recv = 0;                  ///< emission time µs (for a drop: when the relay dropped it)
    ByteView wire;                          ///< the message as that source sent it (a drop: as the PDS sent it)
    std::string_view host;                  ///< relay records and drops: the PDS label ("" for PDS records)
    std::uint64_t hseq = 0;                 ///< … and the event's PDS seq
    std::string_view drop;                  ///< drops: "share", "host" or "collection"
};
/// Appends `uvarint(n) {src, drop?, host?, hseq?, recv, wire}` (canonical key order). false when
/// the record would not be readable (src > 253 bytes, > 16 MiB).
bool append_truth(std::vector<std::uint8_t>& out, const TruthRecord& r);

/// What a subscription does next (mapped onto net::WsStep by mesh-sim).
struct SubStep {
    enum class Kind { send, wait, close, cut } kind = Kind::wait;
    std::string data;  ///< message bytes, or the close reason
    std::uint16_t code = 1000;
};

struct NetCounters {
    std::uint64_t emitted = 0, relayed = 0, dropped = 0, subscriptions = 0, too_slow = 0, cuts = 0,
                  restarts = 0, future = 0, outdated = 0;
};

/// N simulated PDSes and optionally a relay. Thread-safe: one mutex around everything (the
/// generator thread emits, the server thread steps subscriptions).
class Network {
public:
    using Sink = std::function<void(const TruthRecord&)>;
    /// `truth` receives every ground-truth record, in emission order, under the network's lock.
    explicit Network(NetOptions o, Sink truth = {});
    ~Network();
    Network(const Network&) = delete;
    Network& operator=(const Network&) = delete;

    /// "pds<i>.test".
    static std::string host_label(std::size_t i);
    /// The PDS index of a label "pds<i>.test" (an optional ":port" ignored), if i < pdses.
    std::optional<std::size_t> host_index(std::string_view label) const { return index_of(label, o_.pdses); }
    /// The same for a network of `pdses` PDSes.
    static std::optional<std::size_t> index_of(std::string_view label, std::size_t pdses);
    std::size_t pdses() const noexcept { return o_.pdses; }
    /// The wake topic of PDS i is i; the relay's is pdses().
    std::uint32_t relay_topic() const noexcept { return std::uint32_t(o_.pdses); }
    bool relay() const noexcept { return o_.relay; }
    /// Whether PDS i accepts subscriptions then cuts them (NetOptions::accept_drop).
    bool flaky(std::size_t i) const noexcept;

    /// Registers account `did` as hosted by PDS `pds` (for listRepos).
    void add_account(std::size_t pds, const std::string& did);
    /// Registers many accounts at once without keeping their DIDs: account a (0 ≤ a <
    /// home.size()) is hosted by PDS home[a] (< pdses(); others are ignored) and is called
    /// did_of(a), asked only when listRepos lists it. Costs 4 bytes per account (its index in
    /// its host's list). Not with add_account.
    void add_accounts(const std::vector<std::uint32_t>& home, std::function<std::string(std::size_t)> did_of);

    /// PDS `pds` emits the generator's message `wire` at `now_us` under its next seq; the relay
    /// receives it (or drops it, or delays it). Topics to wake are appended to `wake`.
    /// bad_argument when `wire` has no seq to replace (a generator bug).
    Errc emit(std::size_t pds, ByteView wire, std::int64_t now_us, std::vector<std::uint32_t>& wake);
    /// Time passes: delayed relay arrivals due by `now_us`, PDS restarts, connection cuts.
    void advance(std::int64_t now_us, std::vector<std::uint32_t>& wake);
    /// Relay arrivals still delayed.
    std::size_t delayed() const;

    struct Subscription;
    /// A new subscriber of PDS `pds` (nullopt: the relay) from `cursor`.
    std::shared_ptr<Subscription> subscribe(std::optional<std::size_t> pds, std::optional<std::uint64_t> cursor);
    /// The subscriber's next action (see net::WsAnswer::step for `can_send`).
    SubStep step(Subscription& s, bool can_send);

    /// JSON answers (the lexicons' shapes).
    nlohmann::json describe_server(std::size_t pds) const;
    nlohmann::json list_repos(std::size_t pds, std::string_view cursor, std::size_t limit) const;
    /// Hosts that emitted at least one event, in index order; cursor = the last index returned.
    nlohmann::json list_hosts(std::string_view cursor, std::size_t limit) const;

    NetCounters counters() const;

private:
    struct Host;
    struct Delayed;
    void relay_receive(std::size_t pds, const LoggedEvent& e, std::int64_t now_us, std::vector<std::uint32_t>& wake);
    void relay_append(std::size_t pds, std::uint64_t hseq, const std::string& wire, std::int64_t now_us,
                      std::vector<std::uint32_t>& wake);
    double uniform();

    NetOptions o_;
    Sink truth_;
    mutable std::mutex mu_;
    std::vector<Host> hosts_;
    EventLog relay_log_;
    std::uint64_t relay_seq_ = 0;
    std::vector<Delayed> delayed_;  // a min-heap on arrival time
    std::uint64_t rng_state_;
    std::uint64_t cut_epoch_ = 0;
    std::int64_t next_restart_us_ = 0, next_cut_us_ = 0;
    std::size_t restart_next_ = 0;
    NetCounters n_;
    std::vector<std::uint8_t> scratch_;
    std::vector<std::string> named_;                   // add_account's DIDs, by account index
    std::function<std::string(std::size_t)> did_of_;   // add_accounts'
    std::string did_of(std::uint32_t account) const { return did_of_ ? did_of_(account) : named_.at(account); }
};

}  // namespace sov::sim
