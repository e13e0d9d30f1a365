// sovereign/net/tap_engine.h — the engine of both taps (docs/design.md §2, §8): one or many
// sources (a relay, or every PDS), each followed over its own WebSocket with its own cursor,
// merged into one frame stream in arrival order, with markers wherever a source was not
// observed. relay-tap runs it with one source, mesh-tap with thousands.
//
// Per source:
// - connect from its cursor; a `connect` marker when the upgrade succeeds, a `disconnect`
//   marker when the connection ends, a `gap` marker when the first event after connecting is
//   past cursor + 1, an `idle` marker (at most one per idle_marker_ms) while it is connected
//   and answers pings but sends nothing;
// - each message through SourceCursor (sovereign/net/tap.h): written, dropped as a duplicate,
//   or the connection dropped for a seq that does not increase;
// - reconnect after Backoff (Retry-After honoured); after `offline_after` failed attempts in a
//   row the source is `offline` and retried every offline_retry_ms;
// - FutureCursor: the engine ends (relay-tap), or the source is left offline, or (mesh-tap
//   --future-cursor live) its cursor is forgotten and it reconnects live, never silently;
// - with skip_relays, a source whose upgrade answer has a Server header naming a relay
//   ("atproto-relay") is closed and left `offline` for good (a relay is not a PDS).
// States and their counts: connecting, live, idle, backoff, offline.
//
// Output: every record goes through the OutputQueue; a message carries its (source, seq)
// checkpoint, so written_cursor(source) is the last seq written to stdout. When the queue is
// full the engine stops reading every socket until it drains (backpressure, never a drop).
//
// Threads: the WsEvents methods, start() and stop() run on the loop thread; on_written() on
// the writer thread; the counters and written_cursor() from anywhere.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/frame_stream.h"
#include "sovereign/net/backoff.h"
#include "sovereign/net/endpoint.h"
#include "sovereign/net/output_queue.h"
#include "sovereign/net/tap.h"
#include "sovereign/net/ws_client.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sov::net {

/// One source to follow.
struct TapSource {
    Endpoint endpoint;  ///< ws(s)://host[:port]; its path is a prefix ("" for the server root)
    std::string src;    ///< the frames' `src` label (≤ 253 bytes)
    std::optional<std::int64_t> cursor;  ///< start after this seq; nullopt: the live head
};

/// The default `src` label of a source: its host[:port] (Endpoint::source()), plus the URL's
/// path prefix when there is one (several servers behind one address).
std::string default_label(const Endpoint& e);

enum class SourceState : std::uint8_t { connecting, live, idle, backoff, offline };
inline constexpr std::size_t kSourceStates = 5;
std::string_view to_string(SourceState s) noexcept;

struct TapEngineOptions {
    std::uint64_t max_messages = 0;           ///< stop after writing this many (0: never)
    std::uint32_t offline_after = 10;         ///< failed attempts in a row before `offline`
    std::uint32_t offline_retry_ms = 3'600'000;  ///< an offline source is retried this often
    std::uint32_t idle_marker_ms = 60'000;    ///< silence before an `idle` marker; at most one per this
    std::uint32_t max_connecting = 512;       ///< connection attempts in flight at once
    bool skip_relays = false;                 ///< mesh-tap: leave hosts that say they are a relay
    /// FutureCursor ends the engine (done(net_future_cursor): relay-tap's exit 1); when false,
    /// only that source stops (`offline`, not retried: its cursor needs a person's decision)
    /// and the others go on (mesh-tap, where one PDS reset must not stop the mesh).
    bool future_cursor_fatal = true;
    /// With future_cursor_fatal false: instead of leaving the source offline, forget its cursor
    /// and reconnect at the live head (the disconnect marker's reason names FutureCursor, the
    /// next connect marker has no cursor, a diagnostic says so): mesh-tap --future-cursor live,
    /// for PDSes that restart with their seq reset.
    bool future_cursor_live = false;
    BackoffPolicy backoff;
};

struct TapEngineCallbacks {
    /// A diagnostic about one source, in words (loop thread).
    std::function<void(const std::string& src, const std::string& text)> diag;
    /// The engine has finished (max_messages reached) or hit a fatal error (FutureCursor:
    /// Errc::net_future_cursor; a message that fits no frame record: frame_oversized). Loop thread.
    std::function<void(Errc)> done;
};

class TapEngine : public WsEvents {
public:
    TapEngine(std::vector<TapSource> sources, TapEngineOptions options, OutputQueue& out, TapEngineCallbacks callbacks);
    ~TapEngine() override;

    /// Loop thread: connects every source (at most max_connecting at a time).
    void start(WsLoop& loop);
    /// Loop thread: no more reconnects; the loop's stop() then closes the connections (their
    /// disconnect markers are written).
    void stop();
    /// Any thread: the output queue drained (its on_drained): read again.
    void resume();
    /// Writer thread: the output queue wrote everything up to (source, seq) (its on_written).
    void on_written(std::uint32_t source, std::int64_t seq) noexcept;

    std::size_t source_count() const noexcept;
    const TapSource& source(std::size_t i) const noexcept;
    /// The last seq of source `i` written to stdout (its starting cursor before any), −1 if none.
    std::int64_t written_cursor(std::size_t i) const noexcept;
    /// Loop thread, or after the loop stopped: source `i` refused its cursor (FutureCursor) and
    /// was left offline.
    bool parked(std::size_t i) const noexcept;
    /// Loop thread, or after the loop stopped: how often source `i`'s cursor was forgotten
    /// after FutureCursor (future_cursor_live).
    std::uint32_t cursor_resets(std::size_t i) const noexcept;
    /// Sources in each state (index: SourceState).
    std::array<std::uint64_t, kSourceStates> state_counts() const noexcept;

    struct Counters {
        std::atomic<std::uint64_t> messages{0}, bytes{0}, markers{0}, duplicates{0}, gaps{0}, connects{0},
            reconnects{0}, non_increasing{0}, failures{0}, future_cursor{0};
    };
    const Counters& counters() const noexcept { return n_; }

    void on_open(ConnId id, const WsOpen& open) override;
    void on_message(ConnId id, ByteView wire, bool binary, std::int64_t recv_us) override;
    void on_close(ConnId id, const WsClose& close) override;

    struct Source;

private:
    void connect(Source& s);
    void pump();  // start queued connection attempts
    void schedule(Source& s, std::uint64_t delay_ms);
    void set_state(Source& s, SourceState st) noexcept;
    void push_marker(Source& s, const frames::Marker& m);
    void sweep();  // idle markers
    void finish(Errc e);

    TapEngineOptions opt_;
    OutputQueue& out_;
    TapEngineCallbacks cb_;
    std::vector<std::unique_ptr<Source>> sources_;
    std::vector<std::uint32_t> waiting_;  // sources queued for a connection attempt
    std::unordered_map<ConnId, std::uint32_t> by_conn_;
    std::size_t connecting_ = 0;
    WsLoop* loop_ = nullptr;
    std::vector<std::uint8_t> scratch_;
    std::array<std::atomic<std::uint64_t>, kSourceStates> states_{};
    Counters n_;
    bool paused_ = false, stopping_ = false, done_ = false;
};

}  // namespace sov::net
