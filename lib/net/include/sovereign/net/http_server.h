// sovereign/net/http_server.h — a small HTTP/1.1 server on loopback, for simulated services
// (mesh-sim serve) and tests. libwebsockets underneath (its default poll loop, one service
// thread); nothing of it shows here.
//
// The server calls one handler per request, on its service thread, one request at a time; the
// handler returns the whole answer, which the server sends in chunks as the socket accepts
// them (flow control: never more than one chunk queued per connection). An answer can be
// delayed, carry any status and headers, or drop the connection part-way through its body
// (fault injection). WebSocket upgrades go to an optional stream handler whose messages are
// sent one per writable callback.
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
struct WsAnswer {
    std::function<std::optional<std::string>()> next;
    std::optional<std::string> close_reason;
    std::uint16_t close_code = 1000;
};

class HttpServer {
public:
    using Handler = std::function<HttpResponse(const HttpRequest&)>;
    /// Called for each WebSocket upgrade request (on the service thread, like Handler).
    using StreamHandler = std::function<WsAnswer(const HttpRequest&)>;

    /// Listens on `listen` = "127.0.0.1:PORT" or "localhost:PORT" (loopback only; PORT 0 picks
    /// a free port) and starts the service thread. nullptr on error, with `err` saying why and
    /// `code` = net_bad_url (not a loopback address and port) or net_transport (cannot listen).
    /// Without `stream`, upgrade requests are refused (the connection is closed).
    static std::unique_ptr<HttpServer> start(std::string_view listen, Handler handler, Errc& code, std::string& err,
                                             StreamHandler stream = {});

    ~HttpServer();  ///< stop()s
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// The port listened on.
    std::uint16_t port() const noexcept;
    /// Closes every connection and joins the service thread; idempotent. Not from the handler.
    void stop();

    struct Impl;

private:
    explicit HttpServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sov::net
