// The loopback HTTP server (sovereign/net/http_server.h) on libwebsockets 4.1, default poll
// event loop, one service thread. Per connection: the handler's answer, then its body written
// in chunks of kChunk bytes, each only when the socket is writable (LWS_CALLBACK_HTTP_WRITEABLE),
// so a slow reader holds at most one chunk in lws's buffers. A delayed answer waits on the
// connection's lws timer (LWS_CALLBACK_TIMER). WebSocket streams pull one message per
// LWS_CALLBACK_SERVER_WRITEABLE; wake(topic) queues the topic and interrupts the poll
// (lws_cancel_service), and LWS_CALLBACK_EVENT_WAIT_CANCELLED, on the service thread, asks
// every stream of the queued topics again. A cut returns -1 with no close reason: lws then
// closes the socket without a close frame.
#include "sovereign/net/http_server.h"

#include <libwebsockets.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace sov::net {

namespace {

constexpr std::size_t kChunk = 16384;

// One request in flight on a connection (HTTP/1.1 keep-alive reuses the connection).
struct Conn {
    HttpResponse answer;
    std::size_t sent = 0;
    bool headers_sent = false;
};

// A WebSocket stream in progress.
struct Stream {
    WsAnswer answer;
    bool done = false;  // next() returned nullopt
    lws* wsi = nullptr;
    bool registered = false;  // in Impl::by_topic
    bool closing = false;     // step(false) asked for a close: sent at the next writable
    std::string close_data;
    std::uint16_t close_code = 1000;
};

// What lws allocates per connection (zeroed, C layout): pointers to our state.
struct Session {
    Conn* conn;
    Stream* stream;
};

}  // namespace

struct HttpServer::Impl {
    Handler handler;
    StreamHandler stream_handler;
    lws_context* context = nullptr;
    std::thread thread;
    std::atomic<bool> stopping{false};
    std::uint16_t port = 0;
    bool stopped = false;
    lws_protocols protocols[2]{};
    std::mutex wake_mu;
    std::vector<std::uint32_t> woken;  // topics wake()d since the last EVENT_WAIT_CANCELLED (wake_mu)
    std::unordered_map<std::uint32_t, std::unordered_set<Stream*>> by_topic;  // service thread only
    std::atomic<std::size_t> open_streams{0};

    void on_woken();
    void unregister(Stream* st);

    static int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);
    int on_request(lws* wsi, Session* s, const char* uri);
    int on_upgrade(lws* wsi, Session* s);
    static int send_message(lws* wsi, Stream& st);
    static int write_message(lws* wsi, const std::string& m, bool binary);
    static int close_with(lws* wsi, std::uint16_t code, std::string& reason);
    static void read_params(lws* wsi, HttpRequest& req);
    static void read_host(lws* wsi, HttpRequest& req);
    static int send_headers(lws* wsi, Conn& c);
    static int send_chunk(lws* wsi, Conn& c);
};

const std::string* HttpRequest::param(std::string_view name) const {
    for (const auto& [k, v] : params)
        if (k == name) return &v;
    return nullptr;
}

int HttpServer::Impl::send_headers(lws* wsi, Conn& c) {
    std::vector<unsigned char> buf(LWS_PRE + 4096);
    unsigned char *start = buf.data() + LWS_PRE, *p = start, *end = buf.data() + buf.size();
    if (lws_add_http_common_headers(wsi, unsigned(c.answer.status), c.answer.content_type.c_str(),
                                    lws_filepos_t(c.answer.body.size()), &p, end))
        return -1;
    for (const auto& [name, value] : c.answer.headers) {
        std::string n = name + ":";
        if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char*>(n.c_str()),
                                        reinterpret_cast<const unsigned char*>(value.data()), int(value.size()), &p, end))
            return -1;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
    c.headers_sent = true;
    lws_callback_on_writable(wsi);
    return 0;
}

int HttpServer::Impl::send_chunk(lws* wsi, Conn& c) {
    const std::string& body = c.answer.body;
    std::size_t limit = body.size();
    if (c.answer.drop_after && *c.answer.drop_after < limit) limit = *c.answer.drop_after;
    if (c.sent >= limit) {
        if (limit < body.size()) return -1;  // the fault: close mid-body
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    std::size_t n = std::min(kChunk, limit - c.sent);
    bool last = c.sent + n == body.size();
    std::vector<unsigned char> buf(LWS_PRE + n);
    std::memcpy(buf.data() + LWS_PRE, body.data() + c.sent, n);
    if (lws_write(wsi, buf.data() + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != int(n)) return -1;
    c.sent += n;
    if (last) return lws_http_transaction_completed(wsi) ? -1 : 0;
    lws_callback_on_writable(wsi);
    return 0;
}

void HttpServer::Impl::read_params(lws* wsi, HttpRequest& req) {
    char frag[2048];
    for (int i = 0;; ++i) {
        int n = lws_hdr_copy_fragment(wsi, frag, int(sizeof frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0) break;
        std::string_view a(frag, std::size_t(n));
        auto eq = a.find('=');
        if (eq == std::string_view::npos) req.params.emplace_back(std::string(a), "");
        else req.params.emplace_back(std::string(a.substr(0, eq)), std::string(a.substr(eq + 1)));
    }
}

void HttpServer::Impl::read_host(lws* wsi, HttpRequest& req) {
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HOST);
    if (n <= 0) return;
    std::vector<char> h(std::size_t(n) + 1);
    if (lws_hdr_copy(wsi, h.data(), int(h.size()), WSI_TOKEN_HOST) > 0) req.host = h.data();
}

int HttpServer::Impl::on_upgrade(lws* wsi, Session* s) {
    if (!stream_handler || !s) return 1;  // refused: lws closes the connection
    HttpRequest req;
    req.method = "GET";
    std::vector<char> uri(std::size_t(lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) + 1);
    if (lws_hdr_copy(wsi, uri.data(), int(uri.size()), WSI_TOKEN_GET_URI) < 0) return 1;
    req.path = uri.data();
    read_params(wsi, req);
    read_host(wsi, req);
    unregister(s->stream);
    delete s->stream;
    s->stream = new Stream;
    try {
        s->stream->answer = stream_handler(req);
    } catch (const std::exception&) {
        return 1;
    }
    return 0;
}

int HttpServer::Impl::write_message(lws* wsi, const std::string& m, bool binary) {
    std::vector<unsigned char> buf(LWS_PRE + m.size());
    std::memcpy(buf.data() + LWS_PRE, m.data(), m.size());
    if (lws_write(wsi, buf.data() + LWS_PRE, m.size(), binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) != int(m.size()))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

int HttpServer::Impl::close_with(lws* wsi, std::uint16_t code, std::string& reason) {
    lws_close_reason(wsi, lws_close_status(code), reinterpret_cast<unsigned char*>(reason.data()),
                     std::min<std::size_t>(reason.size(), 123));
    return -1;
}

int HttpServer::Impl::send_message(lws* wsi, Stream& st) {
    // A close frame goes out only after everything before it: while lws still holds part of
    // a message (the socket was full), the close waits for the next writable callback (and a
    // reader that never drains is cut after 10 s).
    auto close_after_output = [&](std::uint16_t code, std::string reason) {
        if (lws_partial_buffered(wsi) || lws_send_pipe_choked(wsi)) {
            if (!st.closing) lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 10);
            st.closing = true;
            st.close_code = code;
            st.close_data = std::move(reason);
            lws_callback_on_writable(wsi);
            return 0;
        }
        return close_with(wsi, code, reason);
    };
    if (lws_partial_buffered(wsi) || lws_send_pipe_choked(wsi)) {
        // lws still holds part of the last message, or the socket is full: take nothing yet.
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (st.answer.step) {
        if (st.closing) return close_after_output(st.close_code, st.close_data);
        WsStep s;
        try {
            s = st.answer.step(true);
        } catch (const std::exception&) {
            return -1;
        }
        switch (s.kind) {
        case WsStep::Kind::send: return write_message(wsi, s.data, st.answer.binary);
        case WsStep::Kind::wait: return 0;
        case WsStep::Kind::close: return close_after_output(s.code, std::move(s.data));
        case WsStep::Kind::cut: return -1;  // no lws_close_reason: no close frame
        }
        return -1;
    }
    if (!st.done) {
        std::optional<std::string> m = st.answer.next ? st.answer.next() : std::nullopt;
        if (m) return write_message(wsi, *m, st.answer.binary);
        st.done = true;
    }
    if (!st.answer.close_reason) return 0;  // stays open
    return close_after_output(st.answer.close_code, *st.answer.close_reason);
}

void HttpServer::Impl::on_woken() {
    std::vector<std::uint32_t> topics;
    {
        std::lock_guard lock(wake_mu);
        topics.swap(woken);
    }
    std::sort(topics.begin(), topics.end());
    topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
    for (std::uint32_t t : topics) {
        auto it = by_topic.find(t);
        if (it == by_topic.end()) continue;
        for (Stream* st : it->second) {
            if (st->closing) continue;
            WsStep s;
            if (st->answer.step) {
                try {
                    s = st->answer.step(false);
                } catch (const std::exception&) {
                    s.kind = WsStep::Kind::cut;
                }
            }
            if (s.kind == WsStep::Kind::cut) {
                // Async: the CLOSED callback (which edits by_topic) runs after this loop.
                lws_set_timeout(st->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                continue;
            }
            if (s.kind == WsStep::Kind::close) {
                st->closing = true;
                st->close_data = std::move(s.data);
                st->close_code = s.code;
                lws_set_timeout(st->wsi, PENDING_TIMEOUT_USER_OK, 10);  // a full socket: cut after 10 s
            }
            lws_callback_on_writable(st->wsi);
        }
    }
}

void HttpServer::Impl::unregister(Stream* st) {
    if (!st || !st->registered) return;
    auto it = by_topic.find(st->answer.topic);
    if (it != by_topic.end()) {
        it->second.erase(st);
        if (it->second.empty()) by_topic.erase(it);
    }
    st->registered = false;
    open_streams.fetch_sub(1);
}

int HttpServer::Impl::on_request(lws* wsi, Session* s, const char* uri) {
    HttpRequest req;
    req.method = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0 ? "GET" : "OTHER";
    req.path = uri ? uri : "";
    read_params(wsi, req);
    read_host(wsi, req);
    delete s->conn;
    s->conn = new Conn;
    if (req.method != "GET") {
        s->conn->answer.status = 405;
        s->conn->answer.body = "{\"message\":\"method not allowed\"}";
    } else {
        try {
            s->conn->answer = handler(req);
        } catch (const std::exception& e) {
            s->conn->answer = HttpResponse{};
            s->conn->answer.status = 500;
            s->conn->answer.body = "{\"message\":\"internal error\"}";
        }
    }
    if (s->conn->answer.delay_ms > 0) {
        lws_set_timer_usecs(wsi, lws_usec_t(s->conn->answer.delay_ms) * 1000);
        return 0;
    }
    return send_headers(wsi, *s->conn);
}

int HttpServer::Impl::callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len) {
    auto* s = static_cast<Session*>(user);
    auto* self = static_cast<Impl*>(lws_context_user(lws_get_context(wsi)));
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return self->on_request(wsi, s, static_cast<const char*>(in));
    case LWS_CALLBACK_TIMER:
        if (s && s->conn && !s->conn->headers_sent) return send_headers(wsi, *s->conn);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!s || !s->conn || !s->conn->headers_sent) return 0;
        return send_chunk(wsi, *s->conn);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return self->on_upgrade(wsi, s);
    case LWS_CALLBACK_ESTABLISHED:
        if (!s || !s->stream) return -1;
        s->stream->wsi = wsi;
        if (s->stream->answer.step && !s->stream->registered) {
            self->by_topic[s->stream->answer.topic].insert(s->stream);
            s->stream->registered = true;
            self->open_streams.fetch_add(1);
        }
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_ADD_HEADERS:
        if (s && s->stream && in) {
            auto* a = static_cast<lws_process_html_args*>(in);
            auto** p = reinterpret_cast<unsigned char**>(&a->p);
            unsigned char* end = reinterpret_cast<unsigned char*>(a->p) + a->max_len;
            for (const auto& [name, value] : s->stream->answer.headers) {
                std::string n = name + ":";
                if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char*>(n.c_str()),
                                                reinterpret_cast<const unsigned char*>(value.data()), int(value.size()),
                                                p, end))
                    return 1;
            }
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        self->on_woken();
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!s || !s->stream) return -1;
        return send_message(wsi, *s->stream);
    case LWS_CALLBACK_RECEIVE:
        return 0;  // client messages are ignored
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:  // also on the upgrade to WebSocket: keep the stream
        if (s) {
            delete s->conn;
            s->conn = nullptr;
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (s) {
            delete s->conn;
            s->conn = nullptr;
            self->unregister(s->stream);
            delete s->stream;
            s->stream = nullptr;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { stop(); }

std::uint16_t HttpServer::port() const noexcept { return impl_->port; }

void HttpServer::wake(std::uint32_t topic) {
    if (!impl_ || impl_->stopping.load()) return;
    bool first;
    {
        std::lock_guard lock(impl_->wake_mu);
        first = impl_->woken.empty();
        impl_->woken.push_back(topic);
    }
    if (first) lws_cancel_service(impl_->context);
}

std::size_t HttpServer::streams() const noexcept { return impl_ ? impl_->open_streams.load() : 0; }

std::unique_ptr<HttpServer> HttpServer::start(std::string_view listen, Handler handler, Errc& code, std::string& err,
                                              StreamHandler stream) {
    code = Errc::ok;
    auto colon = listen.rfind(':');
    std::string_view host = colon == std::string_view::npos ? std::string_view{} : listen.substr(0, colon);
    std::string_view port_text = colon == std::string_view::npos ? std::string_view{} : listen.substr(colon + 1);
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if ((host != "127.0.0.1" && host != "localhost") || port_text.empty() || ec != std::errc() ||
        ptr != port_text.data() + port_text.size() || port > 65535) {
        code = Errc::net_bad_url;
        err = "--listen " + std::string(listen) + ": expected 127.0.0.1:PORT (loopback only; PORT 0 picks a free port)";
        return nullptr;
    }
    auto impl = std::make_unique<Impl>();
    impl->handler = std::move(handler);
    impl->stream_handler = std::move(stream);
    impl->protocols[0] = {"http", &Impl::callback, sizeof(Session), 0, 0, nullptr, 0};
    impl->protocols[1] = {nullptr, nullptr, 0, 0, 0, nullptr, 0};
    lws_set_log_level(LLL_ERR, nullptr);
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof info);
    info.port = int(port);
    info.iface = "127.0.0.1";
    info.protocols = impl->protocols;
    info.user = impl.get();
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.max_http_header_data = 4096;
    info.timeout_secs = 30;
    impl->context = lws_create_context(&info);
    if (!impl->context) {
        code = Errc::net_transport;
        err = "cannot listen on 127.0.0.1:" + std::to_string(port) + " (port in use?)";
        return nullptr;
    }
    lws_vhost* vh = lws_get_vhost_by_name(impl->context, "default");
    int p = vh ? lws_get_vhost_listen_port(vh) : -1;
    if (p <= 0) {
        lws_context_destroy(impl->context);
        code = Errc::net_transport;
        err = "cannot listen on 127.0.0.1:" + std::to_string(port);
        return nullptr;
    }
    impl->port = std::uint16_t(p);
    Impl* raw = impl.get();
    impl->thread = std::thread([raw] {
        while (!raw->stopping.load())
            if (lws_service(raw->context, 0) < 0) break;
    });
    return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::stop() {
    if (!impl_ || impl_->stopped) return;
    impl_->stopped = true;
    impl_->stopping.store(true);
    lws_cancel_service(impl_->context);
    if (impl_->thread.joinable()) impl_->thread.join();
    lws_context_destroy(impl_->context);
    impl_->context = nullptr;
}

}  // namespace sov::net
