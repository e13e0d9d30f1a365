// sovereign/net/http_server.h — a small HTTP/1.1 server on loopback, for simulated services
// (mesh-sim serve) and tests. libwebsockets underneath (its default poll loop, one service
// thread) with OpenSSL for TLS; nothing of either shows here.
//
// The server calls one handler per request, on its service thread, one request at a time; the
// handler returns the whole answer, which the server sends in chunks as the socket accepts
// them (flow control: never more than one chunk queued per connection). An answer can be
// delayed, carry any status and headers, or drop the connection part-way through its body
// (fault injection). WebSocket upgrades go to an optional stream handler whose messages are
// pulled one per writable callback (so a slow reader holds at most one message in the
// server's buffers): text or binary, from a plain generator (WsAnswer::next) or from a step
// function (WsAnswer::step) that can also wait for news, close with a code, or cut the
// connection with no close frame. Producers on other threads wake the streams of a topic with
// HttpServer::wake().
#pragma once

#include "sovereign/errc.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sov::net {

struct HttpRequest {
    std::string method;  ///< "GET", "POST", … (only GET reaches the handler; others get 405)
    std::string path;    ///< URL-decoded path, e.g. "/export" or "/did:plc:abc/log/audit"
    std::string host;    ///< the Host header as sent (e.g. "pds3.test" or "127.0.0.1:8080"); "" if absent
    /// Query parameters in order, URL-decoded ("a=1&b" gives {"a","1"}, {"b",""}).
    std::vector<std::pair<std::string, std::string>> params;
    /// The first value of parameter `name`, or nullptr when absent.
    const std::string* param(std::string_view name) const;
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    /// Extra headers, e.g. {"Retry-After", "2"}; names without the colon.
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;  ///< sent with Content-Length: body.size()
    /// Wait this long (ms) before sending anything (the service thread keeps serving others).
    std::uint32_t delay_ms = 0;
    /// Close the connection after this many bytes of the body (headers announce the whole
    /// length, so the client sees a truncated answer); nullopt: send it all.
    std::optional<std::size_t> drop_after;
};

/// What to do with a WebSocket upgrade: messages from `next` (one text message per call,
/// sent as the socket accepts them; nullopt when there is nothing more), then, when
/// `close_reason` is set, a close frame with `close_code` and that reason; without it the
/// connection stays open (a live stream with nothing new) until the client or stop() closes it.
///
/// `step`, when set, replaces `next` and `close_reason`: see WsStep.
struct WsStep {
    enum class Kind {
        send,   ///< send `data` as one message
        wait,   ///< nothing now: asked again after the next wake() of the stream's topic
        again,  ///< nothing now, but ask again at the next writable callback (work in progress)
        close,  ///< a close frame with `code` and reason `data` (≤ 123 bytes), then the connection ends
        cut,    ///< the TCP connection ends now, with no close frame (a crash, a network cut)
    };
    Kind kind = Kind::wait;
    std::string data;
    std::uint16_t code = 1000;
    /// With `send`: when not empty, the message is these bytes instead of `data` (no copy into
    /// `data`); they must stay valid until the step function is called again.
    std::string_view view;
};

struct WsAnswer {
    std::function<std::optional<std::string>()> next;
    std::optional<std::string> close_reason;
    std::uint16_t close_code = 1000;
    bool binary = false;  ///< messages go out as binary frames (opcode 2) instead of text
    /// Called with can_send = true when the socket accepts a message, and with can_send = false
    /// after every wake() of `topic`, even when the socket is full (a reader that stopped
    /// reading): then only `close` and `cut` are acted on (a close waits for the socket; if it
    /// stays full for 10 s the connection is cut), `send` must not consume anything.
    /// Runs on the service thread.
    std::function<WsStep(bool can_send)> step;
    std::uint32_t topic = 0;  ///< the wake() group of this stream (e.g. one per simulated host)
    /// Extra headers of the 101 answer, e.g. {"Server", "… atproto-relay"}; names without the colon.
    std::vector<std::pair<std::string, std::string>> headers;
};

/// TLS for HttpServer: every connection on the port is TLS (https:// and wss://), none in
/// clear text. The files are read once, at start().
struct HttpServerTls {
    std::string cert_file;  ///< PEM: the server certificate (then any intermediate ones)
    std::string key_file;   ///< PEM: its private key (unencrypted)
};

class HttpServer {
public:
    using Handler = std::function<HttpResponse(const HttpRequest&)>;
    /// Called for each WebSocket upgrade request (on the service thread, like Handler).
    using StreamHandler = std::function<WsAnswer(const HttpRequest&)>;

    /// Listens on `listen` = "127.0.0.1:PORT" or "localhost:PORT" (loopback only; PORT 0 picks
    /// a free port) and starts the service thread. nullptr on error, with `err` saying why and
    /// `code` = net_bad_url (not a loopback address and port) or net_transport (cannot listen).
    /// Without `stream`, upgrade requests are refused (the connection is closed). With `tls`,
    /// the port speaks only TLS; a certificate or key file that cannot be read (an io_* code),
    /// that is not PEM, or a key that is not the certificate's (bad_argument) gives nullptr
    /// with `err` naming the file.
    static std::unique_ptr<HttpServer> start(std::string_view listen, Handler handler, Errc& code, std::string& err,
                                             StreamHandler stream = {}, const std::optional<HttpServerTls>& tls = {});
    /// As start(), for a server meant for other machines (cvl-serve): `listen` may also be
    /// any IPv4 address of this machine, "0.0.0.0" for all of them ("ADDR:PORT").
    static std::unique_ptr<HttpServer> start_public(std::string_view listen, Handler handler, Errc& code,
                                                    std::string& err, StreamHandler stream = {});

    ~HttpServer();  ///< stop()s
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// The port listened on.
    std::uint16_t port() const noexcept;
    /// Whether the port speaks TLS (started with `tls`).
    bool tls() const noexcept;
    /// Closes every connection and joins the service thread; idempotent. Not from the handler.
    void stop();
    /// Thread-safe, cheap, coalescing: every WebSocket stream of `topic` is asked again (its
    /// `step(false)` at once, then `step(true)` / `next()` as soon as its socket is writable).
    void wake(std::uint32_t topic);
    /// Open WebSocket streams now (thread-safe).
    std::size_t streams() const noexcept;

    struct Impl;

private:
    explicit HttpServer(std::unique_ptr<Impl> impl);
    static std::unique_ptr<HttpServer> start_on(std::string_view listen, bool any_address, Handler handler, Errc& code,
                                                std::string& err, StreamHandler stream,
                                                const std::optional<HttpServerTls>& tls);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sov::net
