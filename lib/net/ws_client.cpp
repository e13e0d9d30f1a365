// WebSocket client connections (sovereign/net/ws_client.h) on libwebsockets 4.1 with a libuv
// loop of our own ("foreign loop" to libwebsockets: it installs no signal handlers and we own
// the loop's lifetime). One service thread runs uv_run; names are resolved by uv_getaddrinfo
// on libuv's worker threads; a 1-per-interval tick drives the pings; post() wakes the loop
// through a uv_async.
//
// A connection's state lives in a Conn owned by Impl::conns; libwebsockets holds a pointer to
// it (opaque user data). A Conn is freed when it has ended (on_close called) and its wsi is gone.
#include "sovereign/net/ws_client.h"

#include "sovereign/net/http_client.h"  // parse_retry_after

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <uv.h>

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace sov::net {

std::string_view to_string(WsEnd e) noexcept {
    switch (e) {
        case WsEnd::resolve_failed: return "resolve";
        case WsEnd::connect_failed: return "connect";
        case WsEnd::http_status: return "http";
        case WsEnd::closed: return "closed";
        case WsEnd::dropped: return "dropped";
        case WsEnd::ping_timeout: return "ping-timeout";
        case WsEnd::too_big: return "too-big";
        case WsEnd::stopped: return "stopped";
    }
    return "?";
}

namespace {

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
}
std::int64_t mono_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
}

enum class State : std::uint8_t { resolving, connecting, open, ended };

struct Conn {
    ConnId id = 0;
    Endpoint endpoint;
    std::string path, host_header, address;
    State state = State::resolving;
    lws* wsi = nullptr;
    uv_getaddrinfo_t resolve{};
    bool resolving = false;      // uv_getaddrinfo in flight (its callback still to come)
    std::vector<std::uint8_t> message;
    bool in_message = false, binary = false;
    std::string server;          // Server header of the upgrade answer
    std::int64_t open_us = 0;
    std::int64_t last_pong_mono = 0, ping_sent_mono = 0;
    bool want_ping = false, want_close = false, close_sent = false;
    std::string close_reason_out;  // ours, for want_close
    // Why we are ending it (set before asking libwebsockets to close).
    std::optional<WsEnd> pending;
    std::string pending_reason;
    // What the server's close frame said.
    bool peer_closed = false;
    std::uint16_t peer_code = 0;
    std::string peer_reason;
};

struct Timer {
    uv_timer_t handle;
    std::function<void()> fn;
    WsLoop::Impl* impl;
};

// Whether libwebsockets' failure text is about TLS (its wording varies: "SSL_connect …",
// "tls …", "server's cert didn't look good …").
bool lower_has_tls_words(const std::string& s) {
    std::string l(s);
    for (char& ch : l) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    return l.find("ssl") != std::string::npos || l.find("tls") != std::string::npos ||
           l.find("cert") != std::string::npos;
}

constexpr const char* kProtocol = "sov-ws";
// libwebsockets 4.1's write type for a close frame (its private LWS_WRITE_CLOSE, 4; the public
// header leaves it to lws_close_reason(), which cannot be used here: see CLIENT_WRITEABLE).
constexpr auto kWriteClose = static_cast<lws_write_protocol>(4);

}  // namespace

struct WsLoop::Impl {
    WsEvents& events;
    WsOptions options;
    uv_loop_t loop{};
    uv_async_t wake{};
    uv_timer_t tick{};
    lws_context* context = nullptr;
    lws_protocols protocols[2]{};
    lws_retry_bo_t retry{};
    std::thread thread;
    std::mutex mu;
    std::vector<std::function<void()>> posted;
    bool stop_requested = false;  // under mu
    bool stopping = false, finished = false, stopped_outside = false;
    std::uint32_t grace_ms = 1000;
    std::unordered_map<ConnId, std::unique_ptr<Conn>> conns;
    std::unordered_set<Timer*> timers;
    ConnId next_id = 1;
    bool paused = false;
    std::size_t live = 0;  // connections not ended

    Impl(WsEvents& e, const WsOptions& o) : events(e), options(o) {}

    static int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);
    void end(Conn& c, WsClose close);
    void maybe_free(Conn& c);
    void start_connect(Conn& c, const sockaddr* addr);
    void on_tick();
    void begin_stop();
    void finish();
    void run_posted();
    void kill(Conn& c, WsEnd why, std::string reason);

    void schedule(std::uint32_t ms, std::function<void()> fn);
};

void WsLoop::Impl::schedule(std::uint32_t ms, std::function<void()> fn) {
    if (finished) return;
    auto* t = new Timer{uv_timer_t{}, std::move(fn), this};
    uv_timer_init(&loop, &t->handle);
    t->handle.data = t;
    timers.insert(t);
    uv_timer_start(&t->handle, [](uv_timer_t* h) {
        auto* tm = static_cast<Timer*>(h->data);
        tm->impl->timers.erase(tm);
        auto run = std::move(tm->fn);
        uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* hh) { delete static_cast<Timer*>(hh->data); });
        run();
    }, ms, 0);
}

void WsLoop::Impl::end(Conn& c, WsClose close) {
    if (c.state == State::ended) return;
    close.was_open = c.state == State::open;
    close.open_us = c.open_us;
    c.state = State::ended;
    --live;
    events.on_close(c.id, close);
    // Never destroy the context from inside one of its callbacks: on the next pass.
    if (stopping && live == 0) schedule(0, [this] { finish(); });
}

void WsLoop::Impl::maybe_free(Conn& c) {
    if (c.state == State::ended && !c.wsi && !c.resolving) conns.erase(c.id);
}

// Ends the connection from our side without a close frame: libwebsockets closes the wsi on its
// next pass (CLIENT_CLOSED then reports `why`).
void WsLoop::Impl::kill(Conn& c, WsEnd why, std::string reason) {
    if (c.state == State::ended) return;
    if (!c.wsi) {
        WsClose cl;
        cl.why = why;
        cl.reason = std::move(reason);
        end(c, std::move(cl));
        maybe_free(c);
        return;
    }
    if (!c.pending) {
        c.pending = why;
        c.pending_reason = std::move(reason);
    }
    lws_set_timeout(c.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void WsLoop::Impl::start_connect(Conn& c, const sockaddr* addr) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf, sizeof buf);
    else
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buf, sizeof buf);
    c.address = buf;
    const std::uint16_t default_port = c.endpoint.tls ? 443 : 80;
    c.host_header = c.endpoint.host;
    if (c.endpoint.port != default_port) c.host_header += ":" + std::to_string(c.endpoint.port);

    lws_client_connect_info ci;
    std::memset(&ci, 0, sizeof ci);
    ci.context = context;
    ci.address = c.address.c_str();
    ci.port = c.endpoint.port;
    ci.path = c.path.c_str();
    ci.host = c.host_header.c_str();
    ci.origin = c.host_header.c_str();
    ci.ssl_connection = c.endpoint.tls ? LCCSCF_USE_SSL : 0;
    ci.local_protocol_name = kProtocol;
    ci.ietf_version_or_minus_one = -1;
    ci.alpn = "http/1.1";
    ci.opaque_user_data = &c;
    ci.retry_and_idle_policy = &retry;
    ci.pwsi = &c.wsi;
    c.state = State::connecting;
    if (!lws_client_connect_via_info(&ci)) {
        // Either libwebsockets already reported CLIENT_CONNECTION_ERROR (then the Conn has
        // ended), or it failed before creating a connection.
        c.wsi = nullptr;
        if (c.state != State::ended) {
            WsClose cl;
            cl.why = WsEnd::connect_failed;
            cl.reason = "cannot start a connection to " + c.address + " port " + std::to_string(c.endpoint.port);
            end(c, std::move(cl));
        }
        maybe_free(c);
    }
}

int WsLoop::Impl::callback(lws* wsi, lws_callback_reasons reason, void* /*user*/, void* in, std::size_t len) {
    lws_context* ctx = lws_get_context(wsi);
    auto* self = ctx ? static_cast<Impl*>(lws_context_user(ctx)) : nullptr;
    auto* c = static_cast<Conn*>(lws_get_opaque_user_data(wsi));
    if (!self || !c) return lws_callback_http_dummy(wsi, reason, nullptr, in, len);

    switch (reason) {
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
            auto** p = static_cast<unsigned char**>(in);
            const std::string& ua = self->options.user_agent;
            if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_USER_AGENT,
                                             reinterpret_cast<const unsigned char*>(ua.data()), int(ua.size()), p,
                                             *p + len))
                return -1;
            return 0;
        }
        case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
            const int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_SERVER);
            if (n > 0) {
                c->server.assign(std::size_t(n) + 1, '\0');
                if (lws_hdr_copy(wsi, c->server.data(), n + 1, WSI_TOKEN_HTTP_SERVER) < 0) c->server.clear();
                else c->server.resize(std::size_t(n));
            }
            return 0;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED: {
            c->state = State::open;
            c->open_us = now_us();
            c->last_pong_mono = mono_us();
            c->ping_sent_mono = 0;
            if (self->paused) lws_rx_flow_control(wsi, 0);
            self->events.on_open(c->id, WsOpen{c->address, c->server});
            return 0;
        }
        case LWS_CALLBACK_CLIENT_RECEIVE: {
            if (c->state != State::open || c->pending) return 0;
            const auto* b = static_cast<const std::uint8_t*>(in);
            if (!c->in_message && lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0 &&
                len <= self->options.max_message) {
                // The whole message in one piece (the usual case): no reassembly copy.
                self->events.on_message(c->id, ByteView(b, len), lws_frame_is_binary(wsi) != 0, now_us());
                return 0;
            }
            if (!c->in_message) {
                c->in_message = true;
                c->binary = lws_frame_is_binary(wsi) != 0;
                c->message.clear();
            }
            if (c->message.size() + len > self->options.max_message) {
                c->pending = WsEnd::too_big;
                c->pending_reason = "a message of more than " + std::to_string(self->options.max_message) +
                                    " bytes (" + std::to_string(c->message.size() + len) + " received so far)";
                c->message.clear();
                c->message.shrink_to_fit();
                return -1;
            }
            c->message.insert(c->message.end(), b, b + len);
            if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
                c->in_message = false;
                const std::int64_t t = now_us();
                self->events.on_message(c->id, ByteView(c->message.data(), c->message.size()), c->binary, t);
                // A big message's buffer is not kept for ever.
                if (c->message.capacity() > (1u << 20)) {
                    c->message.clear();
                    c->message.shrink_to_fit();
                }
            }
            return 0;
        }
        case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
            c->last_pong_mono = mono_us();
            c->ping_sent_mono = 0;
            return 0;
        case LWS_CALLBACK_CLIENT_WRITEABLE: {
            if (c->want_close) {
                // The close frame is written here rather than left to libwebsockets (return -1
                // after lws_close_reason): with its libuv loop, Debian's 4.1 build kills the
                // connection before that frame goes out. The server's echo then ends it
                // (WS_PEER_INITIATED_CLOSE below), or the timeout does.
                c->want_close = false;
                unsigned char buf[LWS_PRE + 125];
                const std::string r = c->close_reason_out.substr(0, 123);
                buf[LWS_PRE] = std::uint8_t(LWS_CLOSE_STATUS_NORMAL >> 8);
                buf[LWS_PRE + 1] = std::uint8_t(LWS_CLOSE_STATUS_NORMAL & 0xff);
                std::memcpy(buf + LWS_PRE + 2, r.data(), r.size());
                if (lws_write(wsi, buf + LWS_PRE, 2 + r.size(), kWriteClose) < 0) return -1;
                c->close_sent = true;
                lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 3);
                return 0;
            }
            if (c->want_ping) {
                c->want_ping = false;
                unsigned char buf[LWS_PRE + 4];
                if (lws_write(wsi, buf + LWS_PRE, 0, LWS_WRITE_PING) < 0) return -1;
                c->ping_sent_mono = mono_us();
            }
            return 0;
        }
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
            if (c->close_sent) return -1;  // the answer to our close: done
            c->peer_closed = true;
            const auto* b = static_cast<const std::uint8_t*>(in);
            if (len >= 2) {
                c->peer_code = std::uint16_t(b[0] << 8 | b[1]);
                c->peer_reason.assign(reinterpret_cast<const char*>(b) + 2, len - 2);
            }
            return 0;  // libwebsockets answers the close
        }
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
            WsClose cl;
            cl.why = WsEnd::connect_failed;
            cl.reason = in && len ? std::string(static_cast<const char*>(in), len)
                        : in      ? std::string(static_cast<const char*>(in))
                                  : "connection failed";
            const unsigned status = lws_http_client_http_response(wsi);
            if (status && status != 101) {
                cl.why = WsEnd::http_status;
                cl.http_status = int(status);
                cl.reason = "HTTP " + std::to_string(status) + " to the upgrade";
                const int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_RETRY_AFTER);
                if (n > 0) {
                    std::string v(std::size_t(n) + 1, '\0');
                    if (lws_hdr_copy(wsi, v.data(), n + 1, WSI_TOKEN_HTTP_RETRY_AFTER) >= 0) {
                        v.resize(std::size_t(n));
                        cl.retry_after_s = parse_retry_after(v, now_us() / 1'000'000);
                    }
                }
            } else if (c->pending) {
                cl.why = *c->pending;
                cl.reason = c->pending_reason;
            } else {
                while (!cl.reason.empty() && (cl.reason.back() == ' ' || cl.reason.back() == '\n' ||
                                              cl.reason.back() == '\0'))
                    cl.reason.pop_back();
                // A certificate that did not verify is said in OpenSSL's words, with the name
                // it was checked against (libwebsockets' own text gives only a number).
                SSL* ssl = c->endpoint.tls ? static_cast<SSL*>(lws_get_ssl(wsi)) : nullptr;
                const long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
                if (verify != X509_V_OK)
                    cl.reason = "TLS: the certificate of " + c->endpoint.host + " did not verify: " +
                                X509_verify_cert_error_string(verify);
                else if (c->endpoint.tls && lower_has_tls_words(cl.reason))
                    cl.reason = "TLS: " + cl.reason;
                cl.reason = "cannot connect to " + c->address + " port " + std::to_string(c->endpoint.port) + ": " +
                            cl.reason;
            }
            self->end(*c, std::move(cl));
            return 0;
        }
        case LWS_CALLBACK_CLIENT_CLOSED: {
            WsClose cl;
            if (c->pending) {
                cl.why = *c->pending;
                cl.reason = c->pending_reason;
            } else if (c->peer_closed) {
                cl.why = WsEnd::closed;
                cl.code = c->peer_code;
                cl.reason = c->peer_reason;
            } else {
                cl.why = WsEnd::dropped;
                cl.reason = "the connection ended without a close frame";
            }
            self->end(*c, std::move(cl));
            return 0;
        }
        case LWS_CALLBACK_WSI_DESTROY: {
            c->wsi = nullptr;
            lws_set_opaque_user_data(wsi, nullptr);
            if (c->state != State::ended) {
                WsClose cl;
                cl.why = c->pending ? *c->pending : (c->state == State::open ? WsEnd::dropped : WsEnd::connect_failed);
                cl.reason = c->pending ? c->pending_reason : "the connection went away";
                self->end(*c, std::move(cl));
            }
            self->maybe_free(*c);
            return 0;
        }
        default:
            break;
    }
    return 0;
}

void WsLoop::Impl::on_tick() {
    if (paused) return;  // pongs are not read while paused: judge nobody
    const std::int64_t now = mono_us();
    const std::int64_t interval = std::int64_t(options.ping_interval_ms) * 1000;
    const std::int64_t deadline = std::int64_t(options.pong_deadline_ms) * 1000;
    std::vector<Conn*> dead;
    for (auto& [id, up] : conns) {
        Conn& c = *up;
        if (c.state != State::open || !c.wsi || c.pending) continue;

        if (c.ping_sent_mono) {
            if (now - c.ping_sent_mono >= deadline) dead.push_back(&c);
        } else if (now - c.last_pong_mono >= interval && !c.want_ping) {
            c.want_ping = true;
            lws_callback_on_writable(c.wsi);
        }
    }
    for (Conn* c : dead)
        kill(*c, WsEnd::ping_timeout,
             "no pong within " + std::to_string(options.pong_deadline_ms / 1000.0).substr(0, 6) + " s of a ping");
}

void WsLoop::Impl::run_posted() {
    std::vector<std::function<void()>> todo;
    bool stop_now = false;
    {
        std::lock_guard lock(mu);
        todo.swap(posted);
        stop_now = stop_requested && !stopping;
    }
    for (auto& fn : todo) fn();
    if (stop_now) begin_stop();
}

void WsLoop::Impl::begin_stop() {
    stopping = true;
    std::vector<Conn*> all;
    for (auto& [id, c] : conns)
        if (c->state != State::ended) all.push_back(c.get());
    for (Conn* c : all) {
        if (c->state == State::open && c->wsi) {
            c->pending = WsEnd::stopped;
            c->pending_reason = "stopped";
            c->want_close = true;
            c->close_reason_out = "stopped";
            lws_callback_on_writable(c->wsi);
        } else {
            kill(*c, WsEnd::stopped, "stopped");
        }
    }
    if (live == 0) {
        finish();
        return;
    }
    schedule(grace_ms, [this] { finish(); });
}

void WsLoop::Impl::finish() {
    if (finished) return;
    finished = true;
    // Whatever has not ended by now ends as stopped (libwebsockets closes it below).
    for (auto& [id, c] : conns)
        if (c->state != State::ended) {
            WsClose cl;
            cl.why = WsEnd::stopped;
            cl.reason = "stopped";
            cl.was_open = c->state == State::open;
            cl.open_us = c->open_us;
            c->state = State::ended;  // end() would re-enter finish(): report directly
            --live;
            events.on_close(c->id, cl);
        }
    for (Timer* t : timers) {
        uv_timer_stop(&t->handle);
        uv_close(reinterpret_cast<uv_handle_t*>(&t->handle), [](uv_handle_t* h) { delete static_cast<Timer*>(h->data); });
    }
    timers.clear();
    if (context) {
        lws_context* ctx = context;
        context = nullptr;
        lws_context_destroy(ctx);
    }
    uv_timer_stop(&tick);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
}

WsLoop::WsLoop(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WsLoop::~WsLoop() { stop(); }

std::unique_ptr<WsLoop> WsLoop::start(WsEvents& events, const WsOptions& options, Errc& code, std::string& err) {
    auto impl = std::make_unique<Impl>(events, options);
    Impl* im = impl.get();
    if (int rc = uv_loop_init(&im->loop); rc != 0) {
        code = Errc::net_transport;
        err = std::string("cannot create the event loop: ") + uv_strerror(rc);
        return nullptr;
    }
    im->loop.data = im;
    uv_async_init(&im->loop, &im->wake, [](uv_async_t* a) { static_cast<Impl*>(a->loop->data)->run_posted(); });
    uv_timer_init(&im->loop, &im->tick);

    im->protocols[0].name = kProtocol;
    im->protocols[0].callback = &Impl::callback;
    im->protocols[0].rx_buffer_size = std::max<std::size_t>(options.rx_buffer, 4096);
    // libwebsockets' own validity checks stay out of the way: liveness is our ping (on_tick).
    im->retry.secs_since_valid_ping = 0;
    im->retry.secs_since_valid_hangup = 0;

    lws_set_log_level(getenv("SOV_LWS_DEBUG") ? 0xfff : LLL_ERR, nullptr);
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = im->protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    void* loops[1] = {&im->loop};
    info.foreign_loops = loops;
    info.user = im;
    if (!options.ca_file.empty()) info.client_ssl_ca_filepath = options.ca_file.c_str();
    info.retry_and_idle_policy = &im->retry;
    info.timeout_secs = 20;      // connect + handshake
    info.fd_limit_per_thread = 0;
    // The buffer every socket read goes into (libwebsockets' default: 4 KiB, one recv() per
    // 4 KiB of a busy stream). 64 KiB, one per loop thread: a sixteenth of the reads.
    info.pt_serv_buf_size = 65536;
    im->context = lws_create_context(&info);
    if (!im->context) {
        code = Errc::net_transport;
        err = "cannot create the WebSocket client context (libwebsockets with libuv; is the "
              "libwebsockets-evlib-uv package installed?)";
        uv_close(reinterpret_cast<uv_handle_t*>(&im->wake), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&im->tick), nullptr);
        uv_run(&im->loop, UV_RUN_DEFAULT);
        uv_loop_close(&im->loop);
        return nullptr;
    }
    const std::uint64_t tick_ms = std::clamp<std::uint64_t>(options.ping_interval_ms / 4, 10, 1000);
    uv_timer_start(&im->tick, [](uv_timer_t* t) { static_cast<Impl*>(t->loop->data)->on_tick(); }, tick_ms, tick_ms);
    im->thread = std::thread([im] {
        uv_run(&im->loop, UV_RUN_DEFAULT);
        uv_loop_close(&im->loop);
    });
    return std::unique_ptr<WsLoop>(new WsLoop(std::move(impl)));
}

void WsLoop::post(std::function<void()> fn) {
    {
        std::lock_guard lock(impl_->mu);
        impl_->posted.push_back(std::move(fn));
    }
    uv_async_send(&impl_->wake);
}

void WsLoop::stop(std::uint32_t grace_ms) {
    if (impl_->stopped_outside) return;
    impl_->stopped_outside = true;
    {
        std::lock_guard lock(impl_->mu);
        impl_->stop_requested = true;
        impl_->grace_ms = grace_ms;
    }
    uv_async_send(&impl_->wake);
    if (impl_->thread.joinable()) impl_->thread.join();
}

ConnId WsLoop::connect(const Endpoint& endpoint, std::string path) {
    Impl& im = *impl_;
    auto c = std::make_unique<Conn>();
    c->id = im.next_id++;
    c->endpoint = endpoint;
    c->path = path.empty() ? "/" : std::move(path);
    Conn* cp = c.get();
    im.conns.emplace(cp->id, std::move(c));
    ++im.live;
    std::string host = endpoint.host;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    cp->resolve.data = cp;
    cp->resolving = true;
    const std::string port = std::to_string(endpoint.port);
    int rc = uv_getaddrinfo(&im.loop, &cp->resolve, [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* c = static_cast<Conn*>(req->data);
        auto* self = static_cast<Impl*>(req->loop->data);
        c->resolving = false;
        if (c->state == State::ended || self->stopping) {
            if (res) uv_freeaddrinfo(res);
            if (c->state != State::ended) {
                WsClose cl;
                cl.why = WsEnd::stopped;
                cl.reason = "stopped";
                self->end(*c, std::move(cl));
            }
            self->maybe_free(*c);
            return;
        }
        if (status != 0 || !res) {
            WsClose cl;
            cl.why = WsEnd::resolve_failed;
            cl.reason = "cannot resolve " + c->endpoint.host + ": " + uv_strerror(status);
            if (res) uv_freeaddrinfo(res);
            self->end(*c, std::move(cl));
            self->maybe_free(*c);
            return;
        }
        self->start_connect(*c, res->ai_addr);
        uv_freeaddrinfo(res);
    }, host.c_str(), port.c_str(), &hints);
    if (rc != 0) {
        cp->resolving = false;
        const ConnId id = cp->id;
        // Report on the next pass, never from inside connect().
        impl_->schedule(0, [this, id, rc] {
            auto it = impl_->conns.find(id);
            if (it == impl_->conns.end()) return;
            WsClose cl;
            cl.why = WsEnd::resolve_failed;
            cl.reason = "cannot resolve " + it->second->endpoint.host + ": " + uv_strerror(rc);
            impl_->end(*it->second, std::move(cl));
            impl_->maybe_free(*it->second);
        });
    }
    return cp->id;
}

void WsLoop::close(ConnId id, std::string_view reason) {
    auto it = impl_->conns.find(id);
    if (it == impl_->conns.end()) return;
    Conn& c = *it->second;
    if (c.state == State::ended) return;
    if (c.state == State::open && c.wsi) {
        if (!c.pending) {
            c.pending = WsEnd::stopped;
            c.pending_reason = reason.empty() ? "closed" : std::string(reason);
        }
        c.want_close = true;
        c.close_reason_out = std::string(reason);
        lws_callback_on_writable(c.wsi);
    } else {
        impl_->kill(c, WsEnd::stopped, reason.empty() ? "closed" : std::string(reason));
    }
}

void WsLoop::drop(ConnId id, WsEnd why, std::string reason) {
    auto it = impl_->conns.find(id);
    if (it == impl_->conns.end()) return;
    impl_->kill(*it->second, why, std::move(reason));
}

void WsLoop::pause_reading(bool paused) {
    Impl& im = *impl_;
    if (im.paused == paused) return;
    im.paused = paused;
    const std::int64_t now = mono_us();
    for (auto& [id, c] : im.conns) {
        if (c->state != State::open || !c->wsi) continue;
        lws_rx_flow_control(c->wsi, paused ? 0 : 1);
        if (!paused) {  // the ping clock restarts: pongs could not be read while paused
            c->ping_sent_mono = 0;
            c->last_pong_mono = now;
        }
    }
}

void WsLoop::after(std::uint32_t ms, std::function<void()> fn) { impl_->schedule(ms, std::move(fn)); }

std::size_t WsLoop::open_count() const noexcept { return impl_->live; }

}  // namespace sov::net
