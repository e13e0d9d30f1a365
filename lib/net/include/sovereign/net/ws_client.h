// sovereign/net/ws_client.h — WebSocket client connections on one event loop (docs/design.md
// §7): many connections, one service thread, libwebsockets on a libuv loop underneath (nothing
// of either shows here).
//
// What the loop does for every connection:
// - resolves the host name on libuv's resolver threads (never on the service thread), then
//   connects to the numeric address, keeping the name for the Host header, SNI and the
//   certificate check;
// - reassembles fragmented messages itself and refuses any message over `max_message` bytes
//   (5,000,000 by default, the event stream's limit): the connection is dropped and ends with
//   WsEnd::too_big;
// - sends its own ping every `ping_interval` and ends the connection with WsEnd::ping_timeout
//   when the pong has not come `pong_deadline` after the ping. There is never a deadline on
//   data: a quiet server that answers pings stays connected for ever;
// - reports exactly one end per connection (WsClose), whatever the path: resolution failure,
//   refused connection, an upgrade answered with another status than 101 (with Retry-After),
//   a close frame from the server, a TCP drop without close frame, a protocol error.
// Reconnecting is the caller's decision (see Backoff in sovereign/net/backoff.h).
//
// Threads: start() creates the service thread. Every WsEvents callback runs on it, and the
// methods marked "loop thread" may only be called from inside a callback (or a function given
// to post()/after()). post() and stop() may be called from any thread.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/io.h"
#include "sovereign/net/endpoint.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sov::net {

/// A connection's number, unique for the life of a WsLoop (never reused). 0 is never a
/// connection.
using ConnId = std::uint64_t;

/// Why a connection ended (stable strings from to_string()).
enum class WsEnd : std::uint8_t {
    resolve_failed,  ///< the host name did not resolve ("resolve")
    connect_failed,  ///< TCP or TLS connect failed, or the handshake broke ("connect")
    http_status,     ///< the upgrade was answered with a status other than 101 ("http")
    closed,          ///< the server sent a close frame ("closed")
    dropped,         ///< the connection ended without a close frame ("dropped")
    ping_timeout,    ///< no pong within pong_deadline of a ping ("ping-timeout")
    too_big,         ///< a message over max_message bytes ("too-big")
    stopped,         ///< closed by us: close() or stop() ("stopped")
};
std::string_view to_string(WsEnd e) noexcept;

/// How a connection ended.
struct WsClose {
    WsEnd why = WsEnd::dropped;
    int http_status = 0;       ///< http_status: the upgrade answer's status
    std::uint16_t code = 0;    ///< closed: the close frame's status code (0 when it had none)
    std::string reason;        ///< the close frame's reason, or the failure in words
    /// http_status: the answer's Retry-After in seconds from now (delay-seconds or HTTP-date).
    std::optional<std::int64_t> retry_after_s;
    bool was_open = false;     ///< the upgrade had succeeded (on_open was called)
    std::int64_t open_us = 0;  ///< when on_open was called (µs since the epoch), 0 if never
};

/// What the server said when the upgrade succeeded.
struct WsOpen {
    std::string address;  ///< the numeric address connected to ("127.0.0.1", "::1")
    std::string server;   ///< the Server header ("" when absent)
};

/// The caller's side of the loop. Every call runs on the service thread; none may block.
class WsEvents {
public:
    virtual ~WsEvents() = default;
    /// The upgrade succeeded; messages follow.
    virtual void on_open(ConnId id, const WsOpen& open) = 0;
    /// One whole message (all fragments reassembled), `recv_us` = when its last byte arrived
    /// (µs since the Unix epoch). The bytes are valid only during the call.
    virtual void on_message(ConnId id, ByteView message, bool binary, std::int64_t recv_us) = 0;
    /// The connection ended (exactly once per connect()). The id is dead afterwards.
    virtual void on_close(ConnId id, const WsClose& close) = 0;
};

struct WsOptions {
    std::uint32_t ping_interval_ms = 30'000;  ///< a ping this long after the last pong (or open)
    std::uint32_t pong_deadline_ms = 60'000;  ///< end the connection when a ping goes unanswered this long
    std::size_t max_message = 5'000'000;      ///< bytes; a larger message ends the connection (too_big)
    /// Bytes of a message libwebsockets collects per connection before handing them over (its
    /// buffer, allocated per connection; the pages become resident as large messages pass, so
    /// with many connections a smaller one bounds memory; larger messages arrive in pieces
    /// and are reassembled, up to max_message, all the same). At least 4096.
    std::size_t rx_buffer = 65536;
    /// PEM file of certificate authorities for wss:// (empty: the system's store).
    std::string ca_file;
    std::string user_agent = "sovereign/" SOVEREIGN_VERSION;
};

class WsLoop {
public:
    /// Starts the service thread. nullptr on failure with `code` = net_transport and `err`
    /// saying why (the event loop or its libwebsockets context could not be created).
    static std::unique_ptr<WsLoop> start(WsEvents& events, const WsOptions& options, Errc& code, std::string& err);
    ~WsLoop();  ///< stop()s
    WsLoop(const WsLoop&) = delete;
    WsLoop& operator=(const WsLoop&) = delete;

    /// Any thread: runs `fn` on the service thread soon (in order of posting).
    void post(std::function<void()> fn);
    /// Any thread except the service thread: closes every connection with a close frame
    /// (code 1000; each gets on_close with WsEnd::stopped), waits up to `grace_ms` for the
    /// servers to answer, then ends the loop and joins the thread. Idempotent.
    void stop(std::uint32_t grace_ms = 1000);

    /// Loop thread: opens a WebSocket to `endpoint` (ws:// or wss://, its host and port) at
    /// `path` ("/xrpc/…?cursor=N"). Returns the new id; the outcome arrives as on_open or
    /// on_close (never from inside this call).
    ConnId connect(const Endpoint& endpoint, std::string path);
    /// Loop thread: closes `id` with a close frame (code 1000, `reason`); on_close follows with
    /// WsEnd::stopped. No effect on an id that has ended.
    void close(ConnId id, std::string_view reason = {});
    /// Loop thread: drops `id` at once without a close frame (fault injection, or a server that
    /// broke the protocol); on_close follows with `why` and `reason`.
    void drop(ConnId id, WsEnd why, std::string reason);
    /// Loop thread: stops (true) or resumes (false) reading from every connection: the flow
    /// control towards a slow consumer. Connections opened while paused start paused.
    void pause_reading(bool paused);
    /// Loop thread: runs `fn` after `ms` milliseconds (on the service thread).
    void after(std::uint32_t ms, std::function<void()> fn);
    /// Loop thread: the number of connections not yet ended.
    std::size_t open_count() const noexcept;

    struct Impl;

private:
    explicit WsLoop(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sov::net
