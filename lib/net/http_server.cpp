// The loopback HTTP server (sovereign/net/http_server.h) on libwebsockets 4.1, default poll
// event loop, one service thread. Per connection: the handler's answer, then its body written
// in chunks of kChunk bytes, each only when the socket is writable (LWS_CALLBACK_HTTP_WRITEABLE),
// so a slow reader holds at most one chunk in lws's buffers. A delayed answer waits on the
// connection's lws timer (LWS_CALLBACK_TIMER). WebSocket streams pull messages at each
// LWS_CALLBACK_SERVER_WRITEABLE (step streams: as many as the socket's send buffer has room
// for, up to kBatch messages or kBatchBytes, framed here and written with one send(2));
// wake(topic) queues the topic and interrupts the poll
// (lws_cancel_service), and LWS_CALLBACK_EVENT_WAIT_CANCELLED, on the service thread, asks
// every stream of the queued topics again. A cut returns -1 with no close reason: lws then
// closes the socket without a close frame. With TLS the vhost gets the certificate and key files
// (lws's OpenSSL server context); they are checked here first, so a bad file is named.
#include "sovereign/net/http_server.h"

#include "sovereign/file.h"

#include <libwebsockets.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

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
constexpr int kBatch = 256;                   // WebSocket messages per writable callback, at most
constexpr std::size_t kBatchBytes = 256 * 1024;  // bytes per writable callback, at most (one message may exceed it)
constexpr std::size_t kTxPacket = 1024 * 1024;   // bytes per send(2), at most (lws_protocols::tx_packet_size)

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
    std::string held;       // a step message that did not fit the last batch: sent first next time
    bool has_held = false;
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
    bool tls = false;
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
    static int send_batch(lws* wsi, Stream& st);
    static int close_with(lws* wsi, std::uint16_t code, std::string& reason);
    /// A close with `code` and `reason` after what lws still holds for `wsi` has gone out.
    static int close_after(lws* wsi, Stream& st, std::uint16_t code, std::string reason);
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
    static thread_local std::vector<unsigned char> buf;  // the service thread's, reused
    if (buf.size() < LWS_PRE + m.size()) buf.resize(LWS_PRE + m.size());
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

int HttpServer::Impl::close_after(lws* wsi, Stream& st, std::uint16_t code, std::string reason) {
    // A close frame goes out only after everything before it: while lws still holds part of
    // a message (the socket was full), the close waits for the next writable callback (and a
    // reader that never drains is cut after 10 s).
    if (lws_partial_buffered(wsi) || lws_send_pipe_choked(wsi)) {
        if (!st.closing) lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 10);
        st.closing = true;
        st.close_code = code;
        st.close_data = std::move(reason);
        lws_callback_on_writable(wsi);
        return 0;
    }
    return close_with(wsi, code, reason);
}

int HttpServer::Impl::send_message(lws* wsi, Stream& st) {
    if (lws_partial_buffered(wsi) || lws_send_pipe_choked(wsi)) {
        // lws still holds part of the last message, or the socket is full: take nothing yet.
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (st.answer.step) return send_batch(wsi, st);
    if (!st.done) {
        std::optional<std::string> m = st.answer.next ? st.answer.next() : std::nullopt;
        if (m) return write_message(wsi, *m, st.answer.binary);
        st.done = true;
    }
    if (!st.answer.close_reason) return 0;  // stays open
    return close_after(wsi, st, st.answer.close_code, *st.answer.close_reason);
}

namespace {

// Free bytes in the socket's send buffer (SO_SNDBUF less what it holds, SIOCOUTQ), at most
// kBatchBytes; kBatchBytes when the socket cannot tell.
std::size_t send_room(lws* wsi) {
    const int fd = int(lws_get_socket_fd(wsi));
    int sndbuf = 0, queued = 0;
    socklen_t len = sizeof sndbuf;
    if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 || ::ioctl(fd, SIOCOUTQ, &queued) != 0)
        return kBatchBytes;
    return sndbuf > queued ? std::min(kBatchBytes, std::size_t(sndbuf - queued)) : 0;
}

// Appends the header of an unmasked, final WebSocket frame (RFC 6455 §5.2) of `n` payload bytes.
void frame_header(std::vector<unsigned char>& out, bool binary, std::size_t n) {
    out.push_back(binary ? 0x82 : 0x81);
    if (n < 126) {
        out.push_back(static_cast<unsigned char>(n));
    } else if (n < 65536) {
        out.push_back(126);
        out.push_back(static_cast<unsigned char>(n >> 8));
        out.push_back(static_cast<unsigned char>(n));
    } else {
        out.push_back(127);
        for (int i = 7; i >= 0; --i) out.push_back(static_cast<unsigned char>(std::uint64_t(n) >> (8 * i)));
    }
}

}  // namespace

int HttpServer::Impl::send_batch(lws* wsi, Stream& st) {
    // The messages of one writable callback go out as WebSocket frames built here, in one
    // buffer and one lws_write(LWS_WRITE_HTTP): on a WebSocket connection lws sends such bytes
    // as they are (no framing of its own) and, like any write, keeps what the socket did not
    // take and sends it before anything else. The batch is sized to the free room of the
    // socket's send buffer, so that lws rarely has to keep anything: a message that does not
    // fit is held (one message, as with one message per callback) and goes first next time.
    static thread_local std::vector<unsigned char> out;  // the service thread's, reused
    out.resize(LWS_PRE);
    const std::size_t room = send_room(wsi);
    auto flush = [&]() -> int {
        const std::size_t n = out.size() - LWS_PRE;
        if (n == 0) return 0;
        if (lws_write(wsi, out.data() + LWS_PRE, n, LWS_WRITE_HTTP) != int(n)) return -1;
        out.resize(LWS_PRE);
        return 0;
    };
    for (int k = 0; k < kBatch; ++k) {
        if (st.closing && !st.has_held) {
            if (flush() != 0) return -1;
            return close_after(wsi, st, st.close_code, st.close_data);
        }
        WsStep s;
        std::string_view m;
        if (st.has_held) {
            m = st.held;
        } else {
            try {
                s = st.answer.step(true);
            } catch (const std::exception&) {
                return -1;
            }
            if (s.kind == WsStep::Kind::send) m = s.view.empty() ? std::string_view(s.data) : s.view;
        }
        if (st.has_held || s.kind == WsStep::Kind::send) {
            const std::size_t used = out.size() - LWS_PRE, need = m.size() + 10;
            if (used > 0 && used + need > room) {  // full: this one waits for the next callback
                if (!st.has_held) st.held.assign(m);
                st.has_held = true;
                break;
            }
            frame_header(out, st.answer.binary, m.size());
            out.insert(out.end(), m.begin(), m.end());
            st.has_held = false;
            if (st.held.capacity() > kBatchBytes) std::string().swap(st.held);
            continue;
        }
        if (flush() != 0) return -1;
        switch (s.kind) {
        case WsStep::Kind::wait: return 0;  // asked again after the next wake()
        case WsStep::Kind::again: lws_callback_on_writable(wsi); return 0;  // work in progress
        case WsStep::Kind::close: return close_after(wsi, st, s.code, std::move(s.data));
        default: return -1;  // cut: no lws_close_reason, no close frame
        }
    }
    if (flush() != 0) return -1;
    lws_callback_on_writable(wsi);
    return 0;
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

bool HttpServer::tls() const noexcept { return impl_->tls; }

namespace {

// Reads the PEM certificate and private key of `tls` and checks that the key is the
// certificate's, naming the file at fault.
Errc check_tls_files(const HttpServerTls& tls, std::string& err) {
    std::vector<std::uint8_t> bytes;
    if (Errc e = file::read_file(tls.cert_file, bytes, err); e != Errc::ok) return e;
    BIO* b = BIO_new_mem_buf(bytes.data(), int(bytes.size()));
    X509* cert = b ? PEM_read_bio_X509(b, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(b);
    Errc code = Errc::ok;
    if (!cert) {
        err = tls.cert_file + ": not a PEM certificate";
        code = Errc::bad_argument;
    } else if ((code = file::read_file(tls.key_file, bytes, err)) == Errc::ok) {
        b = BIO_new_mem_buf(bytes.data(), int(bytes.size()));
        EVP_PKEY* key = b ? PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr) : nullptr;
        BIO_free(b);
        std::fill(bytes.begin(), bytes.end(), 0);
        if (!key) {
            err = tls.key_file + ": not a PEM private key";
            code = Errc::bad_argument;
        } else if (X509_check_private_key(cert, key) != 1) {
            err = tls.key_file + ": not the private key of " + tls.cert_file;
            code = Errc::bad_argument;
        }
        EVP_PKEY_free(key);
    }
    X509_free(cert);
    ERR_clear_error();
    return code;
}

}  // namespace

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
                                              StreamHandler stream, const std::optional<HttpServerTls>& tls) {
    return start_on(listen, false, std::move(handler), code, err, std::move(stream), tls);
}

std::unique_ptr<HttpServer> HttpServer::start_public(std::string_view listen, Handler handler, Errc& code,
                                                     std::string& err, StreamHandler stream) {
    return start_on(listen, true, std::move(handler), code, err, std::move(stream), std::nullopt);
}

std::unique_ptr<HttpServer> HttpServer::start_on(std::string_view listen, bool any_address, Handler handler, Errc& code,
                                                 std::string& err, StreamHandler stream,
                                                 const std::optional<HttpServerTls>& tls) {
    code = Errc::ok;
    auto colon = listen.rfind(':');
    std::string_view host = colon == std::string_view::npos ? std::string_view{} : listen.substr(0, colon);
    std::string_view port_text = colon == std::string_view::npos ? std::string_view{} : listen.substr(colon + 1);
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    in_addr numeric{};
    const std::string host_s(host == "localhost" ? std::string_view("127.0.0.1") : host);
    const bool host_ok = any_address ? ::inet_pton(AF_INET, host_s.c_str(), &numeric) == 1 : host_s == "127.0.0.1";
    if (!host_ok || port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535) {
        code = Errc::net_bad_url;
        err = "--listen " + std::string(listen) +
              (any_address ? ": expected ADDR:PORT with an IPv4 address of this machine (0.0.0.0: all; PORT 0 picks a free port)"
                           : ": expected 127.0.0.1:PORT (loopback only; PORT 0 picks a free port)");
        return nullptr;
    }
    if (tls) {
        if ((code = check_tls_files(*tls, err)) != Errc::ok) return nullptr;
    }
    auto impl = std::make_unique<Impl>();
    impl->tls = tls.has_value();
    impl->handler = std::move(handler);
    impl->stream_handler = std::move(stream);
    // tx_packet_size: the most lws hands to one send(2). Left at 0, it is the 4 KiB service
    // buffer: every larger write (a batch of messages, a 16 KiB body chunk) would go out 4 KiB
    // per poll round, the rest copied into lws's buffer meanwhile.
    impl->protocols[0] = {"http", &Impl::callback, sizeof(Session), 0, 0, nullptr, kTxPacket};
    impl->protocols[1] = {nullptr, nullptr, 0, 0, 0, nullptr, 0};
    lws_set_log_level(LLL_ERR, nullptr);
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof info);
    info.port = int(port);
    info.iface = host_s == "0.0.0.0" ? nullptr : host_s.c_str();
    info.protocols = impl->protocols;
    info.user = impl.get();
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.max_http_header_data = 4096;
    info.timeout_secs = 30;
    // An idle keep-alive connection is kept 60 s (lws's default is 5 s): clients (Node's fetch:
    // 4 s) then always give up first, and never reuse a connection the server is closing.
    info.keepalive_timeout = 60;
    if (tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = tls->cert_file.c_str();
        info.ssl_private_key_filepath = tls->key_file.c_str();
    }
    impl->context = lws_create_context(&info);
    if (!impl->context) {
        code = Errc::net_transport;
        err = "cannot listen on " + host_s + ":" + std::to_string(port) +
              (tls ? " with TLS (port in use, or a certificate OpenSSL refuses?)"
                   : std::string(" (port in use, or not an address of this machine?)"));
        return nullptr;
    }
    lws_vhost* vh = lws_get_vhost_by_name(impl->context, "default");
    int p = vh ? lws_get_vhost_listen_port(vh) : -1;
    if (p <= 0) {
        lws_context_destroy(impl->context);
        code = Errc::net_transport;
        err = "cannot listen on " + host_s + ":" + std::to_string(port);
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
