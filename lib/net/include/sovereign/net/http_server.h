// sovereign/net/http_server.h — a small HTTP/1.1 server on loopback, for simulated services
// (mesh-sim serve) and tests. libwebsockets underneath (its default poll loop, one service
// thread); nothing of it shows here.
//
// The server calls one handler per request, on its service thread, one request at a time; the
// handler returns the whole answer, which the server sends in chunks as the socket accepts
// them (flow control: never more than one chunk queued per connection). An answer can be
// delayed, carry any status and headers, or drop the connection part-way through its body
// (fault injection).
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

class HttpServer {
public:
    using Handler = std::function<HttpResponse(const HttpRequest&)>;

    /// Listens on `listen` = "127.0.0.1:PORT" or "localhost:PORT" (loopback only; PORT 0 picks
    /// a free port) and starts the service thread. nullptr on error, with `err` saying why and
    /// `code` = net_bad_url (not a loopback address and port) or net_transport (cannot listen).
    static std::unique_ptr<HttpServer> start(std::string_view listen, Handler handler, Errc& code, std::string& err);

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
