// The WebSocket client (sovereign/net/ws_client.h) against a server written here on plain
// sockets, so each test controls every byte: fragmentation, oversized messages, pings left
// unanswered, TCP drops without a close frame, non-101 answers. Also Backoff and OutputQueue.
#include "sovereign/cbor.h"
#include "sovereign/frame_stream.h"
#include "sovereign/net/backoff.h"
#include "sovereign/net/output_queue.h"
#include "sovereign/net/tap_engine.h"
#include "sovereign/net/ws_client.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <csignal>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

using namespace sov;
using namespace sov::net;
using namespace std::chrono_literals;

namespace {

// One accepted connection of the test server.
class Peer {
public:
    explicit Peer(int fd) : fd_(fd) {}
    ~Peer() { if (fd_ >= 0) ::close(fd_); }

    // Reads the upgrade request and answers it: 101 with Sec-WebSocket-Accept, or `status`.
    bool handshake(int status = 101, const std::string& extra_headers = "Server: test-pds\r\n") {
        std::string req;
        char c;
        while (req.find("\r\n\r\n") == std::string::npos) {
            if (::read(fd_, &c, 1) != 1) return false;
            req += c;
        }
        request = req;
        if (status != 101) {
            std::string a = "HTTP/1.1 " + std::to_string(status) + " Nope\r\n" + extra_headers +
                            "Content-Length: 0\r\nConnection: close\r\n\r\n";
            return write_all(a.data(), a.size());
        }
        const std::string tag = "Sec-WebSocket-Key: ";
        auto p = req.find(tag);
        if (p == std::string::npos) p = req.find("sec-websocket-key: ");
        if (p == std::string::npos) return false;
        std::string key = req.substr(p + tag.size(), req.find("\r\n", p) - p - tag.size());
        std::string k = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
        unsigned char sha[SHA_DIGEST_LENGTH];
        SHA1(reinterpret_cast<const unsigned char*>(k.data()), k.size(), sha);
        unsigned char b64[64];
        EVP_EncodeBlock(b64, sha, SHA_DIGEST_LENGTH);
        std::string a = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: " + std::string(reinterpret_cast<char*>(b64)) + "\r\n" +
                        extra_headers + "\r\n";
        return write_all(a.data(), a.size());
    }

    bool send_frame(int opcode, const std::uint8_t* data, std::size_t n, bool fin = true) {
        std::vector<std::uint8_t> h;
        h.push_back(std::uint8_t((fin ? 0x80 : 0) | opcode));
        if (n < 126) h.push_back(std::uint8_t(n));
        else if (n < 65536) { h.push_back(126); h.push_back(std::uint8_t(n >> 8)); h.push_back(std::uint8_t(n)); }
        else { h.push_back(127); for (int i = 7; i >= 0; --i) h.push_back(std::uint8_t(std::uint64_t(n) >> (8 * i))); }
        return write_all(h.data(), h.size()) && write_all(data, n);
    }
    // A message in fragments of `frag` bytes (0: one frame).
    bool send_message(const std::vector<std::uint8_t>& m, bool binary = true, std::size_t frag = 0) {
        if (frag == 0 || m.size() <= frag) return send_frame(binary ? 2 : 1, m.data(), m.size());
        for (std::size_t off = 0; off < m.size(); off += frag) {
            const std::size_t n = std::min(frag, m.size() - off);
            const int op = off == 0 ? (binary ? 2 : 1) : 0;
            if (!send_frame(op, m.data() + off, n, off + n == m.size())) return false;
        }
        return true;
    }
    bool send_close(std::uint16_t code, const std::string& reason) {
        std::vector<std::uint8_t> p{std::uint8_t(code >> 8), std::uint8_t(code)};
        p.insert(p.end(), reason.begin(), reason.end());
        return send_frame(8, p.data(), p.size());
    }
    // Reads one client frame (unmasked into `payload`); false on EOF or after `wait`.
    bool read_frame(int& opcode, std::vector<std::uint8_t>& payload, std::chrono::milliseconds wait = 30s) {
        std::uint8_t h[2];
        if (!read_all(h, 2, wait)) return false;
        opcode = h[0] & 0x0f;
        std::uint64_t n = h[1] & 0x7f;
        if (n == 126) { std::uint8_t e[2]; if (!read_all(e, 2, wait)) return false; n = std::uint64_t(e[0]) << 8 | e[1]; }
        else if (n == 127) { std::uint8_t e[8]; if (!read_all(e, 8, wait)) return false; n = 0; for (auto b : e) n = n << 8 | b; }
        std::uint8_t mask[4] = {};
        if (h[1] & 0x80 && !read_all(mask, 4, wait)) return false;
        payload.resize(n);
        if (n && !read_all(payload.data(), n, wait)) return false;
        for (std::size_t i = 0; i < n; ++i) payload[i] ^= mask[i % 4];
        return true;
    }
    // Answers pings with pongs (or not) for `how_long`, counting them; returns early on a
    // close frame or EOF (false).
    bool serve_pings(std::chrono::milliseconds how_long, bool answer, int& pings) {
        const auto until = std::chrono::steady_clock::now() + how_long;
        while (std::chrono::steady_clock::now() < until) {
            int op;
            std::vector<std::uint8_t> p;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            if (!read_frame(op, p, left)) return !eof_;
            if (op == 9) {
                ++pings;
                if (answer && !send_frame(10, p.data(), p.size())) return false;
            } else if (op == 8) {
                return false;
            }
        }
        return true;
    }
    void shut() { ::shutdown(fd_, SHUT_RDWR); ::close(fd_); fd_ = -1; }
    // Abortive close: RST, no close frame.
    void reset() {
        linger l{1, 0};
        setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        ::close(fd_);
        fd_ = -1;
    }
    std::string request;

private:
    bool write_all(const void* p, std::size_t n) {
        const auto* b = static_cast<const std::uint8_t*>(p);
        while (n) {
            ssize_t w = ::send(fd_, b, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return false;
            b += w;
            n -= std::size_t(w);
        }
        return true;
    }
    bool read_all(std::uint8_t* p, std::size_t n, std::chrono::milliseconds wait) {
        const auto until = std::chrono::steady_clock::now() + wait;
        while (n) {
            pollfd pf{fd_, POLLIN, 0};
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            if (::poll(&pf, 1, int(left.count())) <= 0) return false;
            ssize_t r = ::read(fd_, p, n);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { eof_ = true; return false; }
            p += r;
            n -= std::size_t(r);
        }
        return true;
    }
    int fd_;
    bool eof_ = false;
};

// Listens on 127.0.0.1; each accepted connection runs `script` on the server thread.
class Server {
public:
    explicit Server(std::function<void(Peer&)> script) : script_(std::move(script)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        REQUIRE(::listen(fd_, 16) == 0);
        thread_ = std::thread([this] {
            for (;;) {
                int c = ::accept(fd_, nullptr, nullptr);
                if (c < 0) return;
                Peer p(c);
                script_(p);
                ++served_;
            }
        });
    }
    ~Server() {
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    int served() const { return served_; }
    Endpoint endpoint() const {
        EndpointError e;
        return *parse_endpoint("ws://127.0.0.1:" + std::to_string(port_), false, e);
    }

private:
    std::function<void(Peer&)> script_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<int> served_{0};
    std::thread thread_;
};

// Collects what the loop reports.
struct Recorder : WsEvents {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<WsOpen> opens;
    std::vector<std::vector<std::uint8_t>> messages;
    std::vector<WsClose> closes;
    std::function<void(ConnId)> on_open_hook;

    void on_open(ConnId id, const WsOpen& o) override {
        if (on_open_hook) on_open_hook(id);
        std::lock_guard l(mu);
        opens.push_back(o);
        cv.notify_all();
    }
    void on_message(ConnId, ByteView m, bool, std::int64_t recv_us) override {
        CHECK(recv_us > 1'600'000'000'000'000);
        std::lock_guard l(mu);
        messages.emplace_back(m.begin(), m.end());
        cv.notify_all();
    }
    void on_close(ConnId, const WsClose& c) override {
        std::lock_guard l(mu);
        closes.push_back(c);
        cv.notify_all();
    }
    // Waits (generously: a busy machine) until pred holds.
    bool wait(std::function<bool()> pred, std::chrono::seconds limit = 60s) {
        std::unique_lock l(mu);
        return cv.wait_for(l, limit, pred);
    }
};

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::uint8_t(i * 31 + seed + (i >> 8));
    return v;
}

std::unique_ptr<WsLoop> start_loop(Recorder& r, WsOptions o = {}) {
    Errc code;
    std::string err;
    auto loop = WsLoop::start(r, o, code, err);
    INFO(err);
    REQUIRE(loop);
    return loop;
}

}  // namespace

TEST_CASE("ws client: messages in order, then the server's close frame", "[net][ws]") {
    Server srv([](Peer& p) {
        REQUIRE(p.handshake());
        for (int i = 0; i < 3; ++i) p.send_message(pattern(100 + i, std::uint8_t(i)));
        p.send_message(pattern(70000, 9));  // 64-bit length form
        p.send_close(1000, "bye");
        int op;
        std::vector<std::uint8_t> pl;
        p.read_frame(op, pl, 10s);  // the client's answer to the close
    });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/xrpc/com.atproto.sync.subscribeRepos?cursor=5"); });
    REQUIRE(r.wait([&] { return !r.closes.empty(); }));
    REQUIRE(r.opens.size() == 1);
    CHECK(r.opens[0].server == "test-pds");
    CHECK(r.opens[0].address == "127.0.0.1");
    REQUIRE(r.messages.size() == 4);
    for (int i = 0; i < 3; ++i) CHECK(r.messages[std::size_t(i)] == pattern(100 + std::size_t(i), std::uint8_t(i)));
    CHECK(r.messages[3] == pattern(70000, 9));
    CHECK(r.closes[0].why == WsEnd::closed);
    CHECK(r.closes[0].code == 1000);
    CHECK(r.closes[0].reason == "bye");
    CHECK(r.closes[0].was_open);
    loop->stop();
}

TEST_CASE("ws client: the request carries path, Host and User-Agent", "[net][ws]") {
    std::string request;
    Server srv([&](Peer& p) {
        REQUIRE(p.handshake());
        request = p.request;
        p.send_close(1000, "");
        int op;
        std::vector<std::uint8_t> pl;
        p.read_frame(op, pl, 10s);
    });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/xrpc/com.atproto.sync.subscribeRepos?cursor=42"); });
    REQUIRE(r.wait([&] { return !r.closes.empty(); }));
    CHECK(request.rfind("GET /xrpc/com.atproto.sync.subscribeRepos?cursor=42 HTTP/1.1\r\n", 0) == 0);
    CHECK(request.find("Host: 127.0.0.1:" + std::to_string(srv.port()) + "\r\n") != std::string::npos);
    INFO(request);
    std::string lower = request;
    for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    CHECK(lower.find("user-agent: sovereign/") != std::string::npos);
    loop->stop();
}

TEST_CASE("ws client: a 5,000,000-byte message in fragments arrives whole", "[net][ws]") {
    const auto big = pattern(5'000'000, 3);
    Server srv([&](Peer& p) {
        REQUIRE(p.handshake());
        p.send_message(big, true, 65536);
        p.send_message(pattern(10, 1), true, 3);  // tiny fragments too
        p.send_close(1000, "done");
        int op;
        std::vector<std::uint8_t> pl;
        p.read_frame(op, pl, 10s);
    });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return !r.closes.empty(); }));
    REQUIRE(r.messages.size() == 2);
    CHECK(r.messages[0].size() == 5'000'000);
    CHECK(r.messages[0] == big);
    CHECK(r.messages[1] == pattern(10, 1));
    CHECK(r.closes[0].why == WsEnd::closed);
    loop->stop();
}

TEST_CASE("ws client: a 5,000,001-byte message drops the connection, named", "[net][ws]") {
    Server srv([](Peer& p) {
        REQUIRE(p.handshake());
        p.send_message(pattern(20, 1));
        p.send_message(pattern(5'000'001, 4), true, 1'000'000);
        int op;
        std::vector<std::uint8_t> pl;
        while (p.read_frame(op, pl, 10s)) {}
    });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return !r.closes.empty(); }));
    REQUIRE(r.messages.size() == 1);  // the one before; nothing of the oversized one
    CHECK(r.closes[0].why == WsEnd::too_big);
    CHECK(r.closes[0].reason.find("5000000") != std::string::npos);
    loop->stop();
}

TEST_CASE("ws client: a silent server that answers pings stays connected", "[net][ws]") {
    std::atomic<int> pings{0};
    Server srv([&](Peer& p) {
        REQUIRE(p.handshake());
        int n = 0;
        p.serve_pings(2500ms, true, n);
        pings = n;
        p.send_close(1000, "enough");
        int op;
        std::vector<std::uint8_t> pl;
        p.read_frame(op, pl, 10s);
    });
    Recorder r;
    WsOptions o;
    o.ping_interval_ms = 200;
    o.pong_deadline_ms = 1000;
    auto loop = start_loop(r, o);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return !r.closes.empty(); }));
    CHECK(pings >= 3);  // 2.5 s at one ping per 200 ms after each pong
    CHECK(r.closes[0].why == WsEnd::closed);
    CHECK(r.closes[0].reason == "enough");
    loop->stop();
}

TEST_CASE("ws client: a server that stops answering pings is dropped (ping-timeout)", "[net][ws]") {
    std::atomic<int> pings{0};
    std::atomic<bool> done{false};
    Server srv([&](Peer& p) {
        REQUIRE(p.handshake());
        int n = 0;
        p.serve_pings(600ms, true, n);  // answers a while
        while (!done && p.serve_pings(200ms, false, n)) {}  // then goes deaf
        pings = n;
    });
    Recorder r;
    WsOptions o;
    o.ping_interval_ms = 100;
    o.pong_deadline_ms = 400;
    auto loop = start_loop(r, o);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return !r.closes.empty(); }));
    done = true;
    CHECK(r.closes[0].why == WsEnd::ping_timeout);
    CHECK(r.closes[0].was_open);
    loop->stop();
}

TEST_CASE("ws client: a TCP drop without close frame is 'dropped'", "[net][ws]") {
    Server srv([](Peer& p) {
        REQUIRE(p.handshake());
        p.send_message(pattern(50, 2));
        std::this_thread::sleep_for(100ms);
        p.reset();
    });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return !r.closes.empty(); }));
    CHECK(r.messages.size() == 1);
    CHECK(r.closes[0].why == WsEnd::dropped);
    loop->stop();
}

TEST_CASE("ws client: 429 with Retry-After, and a refused connection", "[net][ws]") {
    Server srv([](Peer& p) { p.handshake(429, "Retry-After: 7\r\n"); });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    Endpoint closed_ep = ep;
    {
        // A port nobody listens on: bind, note it, close.
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        socklen_t len = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        closed_ep.port = ntohs(a.sin_port);
        ::close(fd);
    }
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return r.closes.size() == 1; }));
    CHECK(r.closes[0].why == WsEnd::http_status);
    CHECK(r.closes[0].http_status == 429);
    REQUIRE(r.closes[0].retry_after_s);
    CHECK(*r.closes[0].retry_after_s == 7);
    CHECK_FALSE(r.closes[0].was_open);
    loop->post([&] { loop->connect(closed_ep, "/"); });
    REQUIRE(r.wait([&] { return r.closes.size() == 2; }));
    CHECK(r.closes[1].why == WsEnd::connect_failed);
    CHECK(r.opens.empty());
    loop->stop();
}

TEST_CASE("ws client: reading paused holds messages back; resumed, all arrive", "[net][ws]") {
    Server srv([](Peer& p) {
        REQUIRE(p.handshake());
        for (int i = 0; i < 100; ++i) p.send_message(pattern(1000, std::uint8_t(i)));
        int op;
        std::vector<std::uint8_t> pl;
        while (p.read_frame(op, pl, 30s) && op != 8) {}
    });
    Recorder r;
    std::unique_ptr<WsLoop> loop;
    r.on_open_hook = [&](ConnId) { loop->pause_reading(true); };
    loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return !r.opens.empty(); }));
    std::this_thread::sleep_for(300ms);
    {
        std::lock_guard l(r.mu);
        CHECK(r.messages.empty());
    }
    loop->post([&] { loop->pause_reading(false); });
    REQUIRE(r.wait([&] { return r.messages.size() == 100; }));
    for (int i = 0; i < 100; ++i) CHECK(r.messages[std::size_t(i)] == pattern(1000, std::uint8_t(i)));
    loop->stop();
    REQUIRE(r.closes.size() == 1);
    CHECK(r.closes[0].why == WsEnd::stopped);
}

TEST_CASE("ws client: stop() closes open connections with a close frame", "[net][ws]") {
    std::atomic<int> got_close{0};
    Server srv([&](Peer& p) {
        REQUIRE(p.handshake());
        int op;
        std::vector<std::uint8_t> pl;
        while (p.read_frame(op, pl, 30s))
            if (op == 8) {
                got_close = pl.size() >= 2 ? (pl[0] << 8 | pl[1]) : -1;
                p.send_close(1000, "");
                break;
            }
    });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return !r.opens.empty(); }));
    loop->stop(5000);
    REQUIRE(r.closes.size() == 1);
    CHECK(r.closes[0].why == WsEnd::stopped);
    // The server saw our close frame with 1000 (the server thread may still be finishing).
    for (int i = 0; i < 100 && got_close == 0; ++i) std::this_thread::sleep_for(50ms);
    CHECK(got_close == 1000);
}

TEST_CASE("ws client: many connections on one loop", "[net][ws]") {
    Server srv([](Peer& p) {
        REQUIRE(p.handshake());
        p.send_message(pattern(10, 7));
        p.send_close(1000, "");
        int op;
        std::vector<std::uint8_t> pl;
        p.read_frame(op, pl, 10s);
    });
    Recorder r;
    auto loop = start_loop(r);
    Endpoint ep = srv.endpoint();
    loop->post([&] { for (int i = 0; i < 20; ++i) loop->connect(ep, "/"); });
    REQUIRE(r.wait([&] { return r.closes.size() == 20; }));
    CHECK(r.messages.size() == 20);
    for (const auto& c : r.closes) CHECK(c.why == WsEnd::closed);
    loop->stop();
}

TEST_CASE("backoff: full jitter under a doubling, capped ceiling; reset after a healthy minute", "[net]") {
    Backoff b(Backoff::Policy{1000, 8000, 60000}, 42);
    std::vector<std::uint32_t> ceilings;
    for (int i = 0; i < 6; ++i) {
        const std::uint32_t c = b.ceiling_ms();
        ceilings.push_back(c);
        const std::uint32_t d = b.next_delay_ms();
        CHECK(d <= c);
    }
    CHECK(ceilings == std::vector<std::uint32_t>{1000, 2000, 4000, 8000, 8000, 8000});
    b.connection_ended(59'999);  // not healthy long enough
    CHECK(b.attempts() == 6);
    b.connection_ended(60'000);
    CHECK(b.attempts() == 0);
    CHECK(b.ceiling_ms() == 1000);
    // The delays spread over the whole range (jitter), not a fixed value.
    Backoff j(Backoff::Policy{1000, 1000, 60000}, 7);
    std::uint32_t lo = 1000, hi = 0;
    for (int i = 0; i < 200; ++i) {
        const auto d = j.next_delay_ms();
        lo = std::min(lo, d);
        hi = std::max(hi, d);
    }
    CHECK(lo < 100);
    CHECK(hi > 900);
}

TEST_CASE("output queue: order, checkpoints after the bytes, full and drained", "[net]") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::mutex mu;
    std::vector<std::pair<std::uint32_t, std::int64_t>> written;
    std::atomic<int> drained{0};
    OutputQueue::Options o;
    o.high_bytes = 1000;
    o.low_bytes = 100;
    OutputQueue q(fds[1], o, OutputQueue::Callbacks{
        [&](std::uint32_t s, std::int64_t seq) { std::lock_guard l(mu); written.emplace_back(s, seq); },
        [&] { ++drained; }, nullptr});
    // Nobody reads the pipe yet: its 64 KiB fill, then the queue holds the rest.
    std::vector<std::uint8_t> chunk(600, 0xab);
    bool full = false;
    int pushed = 0;
    while (!full && pushed < 10000) {
        full = q.push(ByteView(chunk.data(), chunk.size()), 1, pushed);
        ++pushed;
    }
    CHECK(full);
    std::vector<std::uint8_t> got;
    std::thread reader([&] {
        std::uint8_t buf[65536];
        ssize_t n;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.insert(got.end(), buf, buf + n);
    });
    q.close();
    ::close(fds[1]);
    reader.join();
    ::close(fds[0]);
    CHECK(got.size() == std::size_t(pushed) * 600);
    CHECK(drained >= 1);
    REQUIRE(written.size() == std::size_t(pushed));
    for (int i = 0; i < pushed; ++i) CHECK(written[std::size_t(i)].second == i);
}

TEST_CASE("output queue: bytes out in order across chunks, records larger than a chunk included", "[net]") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::vector<std::uint8_t> got;
    std::thread reader([&] {
        std::uint8_t buf[65536];
        ssize_t n;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.insert(got.end(), buf, buf + n);
    });
    std::vector<std::uint8_t> want;
    {
        OutputQueue q(fds[1], {}, OutputQueue::Callbacks{});
        // sizes around the 1 MiB chunk: small, just under, exactly, over, several MiB
        const std::size_t sizes[] = {1, 700000, 400000, 1u << 20, (1u << 20) + 1, 3u << 20, 17, 999999, 5u << 20, 3};
        std::uint8_t v = 0;
        for (int round = 0; round < 3; ++round)
            for (std::size_t n : sizes) {
                std::vector<std::uint8_t> b(n);
                for (auto& x : b) x = v++;
                want.insert(want.end(), b.begin(), b.end());
                q.push(ByteView(b.data(), b.size()));
            }
        // a record through push_record, too big for the tail chunk
        std::vector<std::uint8_t> wire(1500000, 0x5a);
        bool fits = false;
        q.push_record("pds.example", 7, ByteView(wire.data(), wire.size()), 0, -1, fits);
        CHECK(fits);
        REQUIRE(frames::append_record(want, "pds.example", std::nullopt, 7, ByteView(wire.data(), wire.size())));
        q.close();
        CHECK(q.written_bytes() == want.size());
        CHECK(q.queued_bytes() == 0);
    }
    ::close(fds[1]);
    reader.join();
    ::close(fds[0]);
    CHECK(got.size() == want.size());
    CHECK(got == want);
}

TEST_CASE("output queue: a closed reader (EPIPE) is reported, later pushes discarded", "[net]") {
    ::signal(SIGPIPE, SIG_IGN);  // as every tool does (sovereign/cli)
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    ::close(fds[0]);
    std::atomic<int> err{0};
    OutputQueue q(fds[1], {}, OutputQueue::Callbacks{nullptr, nullptr, [&](int e) { err = e; }});
    std::vector<std::uint8_t> b(10, 1);
    q.push(ByteView(b.data(), b.size()));
    for (int i = 0; i < 200 && !q.failed(); ++i) std::this_thread::sleep_for(10ms);
    CHECK(q.failed());
    CHECK(err == EPIPE);
    CHECK_FALSE(q.push(ByteView(b.data(), b.size())));
    q.close();
    ::close(fds[1]);
}

TEST_CASE("output queue: a batch writer gets whole records; checkpoints only after it succeeded", "[net]") {
    // The taps' --to nats://: the writer publishes each batch and returns once it is stored.
    std::mutex mu;
    std::vector<std::uint8_t> got;
    std::vector<std::int64_t> written;
    std::atomic<int> calls{0}, fail_on{-1}, err{0};
    bool whole = true;
    OutputQueue q(
        OutputQueue::BatchWriter([&](const std::vector<ByteView>& pieces) -> int {
            const int call = calls++;
            std::lock_guard l(mu);
            if (call == fail_on) return EIO;
            for (ByteView p : pieces) {
                // every piece holds whole records: walk them
                std::size_t at = 0;
                while (at < p.size()) {
                    frames::Envelope env;
                    std::size_t n = 0, i = at;
                    for (unsigned shift = 0; i < p.size(); shift += 7) {
                        n |= std::size_t(p[i] & 0x7f) << shift;
                        if (!(p[i++] & 0x80)) break;
                    }
                    if (n > p.size() - i || frames::parse_record(p.subspan(at, i - at + n), env)) {
                        whole = false;
                        break;
                    }
                    at = i + n;
                }
                got.insert(got.end(), p.begin(), p.end());
            }
            return 0;
        }),
        {}, OutputQueue::Callbacks{[&](std::uint32_t, std::int64_t seq) {
                                       std::lock_guard l(mu);
                                       written.push_back(seq);
                                   },
                                   nullptr, [&](int e) { err = e; }});
    std::vector<std::uint8_t> want;
    std::int64_t seq = 0;
    for (std::size_t n : {std::size_t(10), std::size_t(700000), std::size_t(400000), std::size_t(1500000), std::size_t(5)}) {
        std::vector<std::uint8_t> wire(n, std::uint8_t(n));
        bool fits = false;
        q.push_record("pds.example", 7, ByteView(wire.data(), wire.size()), 0, ++seq, fits);
        REQUIRE(fits);
        REQUIRE(frames::append_record(want, "pds.example", std::nullopt, 7, ByteView(wire.data(), wire.size())));
    }
    for (int i = 0; i < 500; ++i) {
        {
            std::lock_guard l(mu);
            if (written.size() == std::size_t(seq)) break;
        }
        std::this_thread::sleep_for(10ms);
    }
    {
        std::lock_guard l(mu);
        CHECK(whole);
        CHECK(got == want);
        CHECK(written == std::vector<std::int64_t>{1, 2, 3, 4, 5});
    }
    // A batch the writer cannot store: reported as a failed write, its checkpoint never fires.
    fail_on = calls.load();
    std::vector<std::uint8_t> wire(20, 1);
    bool fits = false;
    q.push_record("pds.example", 8, ByteView(wire.data(), wire.size()), 0, 6, fits);
    for (int i = 0; i < 500 && !q.failed(); ++i) std::this_thread::sleep_for(10ms);
    CHECK(q.failed());
    CHECK(err == EIO);
    q.close();
    std::lock_guard l(mu);
    CHECK(written.size() == 5);
}

// ---- The taps' engine over real connections -------------------------------------------

namespace {

std::vector<std::uint8_t> event(std::int64_t seq) {
    std::vector<std::uint8_t> out;
    cbor::Writer w(out);
    w.map(2);
    w.text("t"), w.text("#commit");
    w.text("op"), w.integer(1);
    w.map(1);
    w.text("seq"), w.integer(seq);
    return out;
}

// Reads a frame stream written by the engine: (kind, seq or gap bounds) per record.
struct Rec {
    std::string kind;  // "msg" or the marker kind
    std::int64_t a = -1, b = -1;
};
std::vector<Rec> read_records(const std::vector<std::uint8_t>& bytes) {
    std::vector<Rec> out;
    std::size_t off = 0;
    while (off < bytes.size()) {
        std::uint64_t n = 0;
        int shift = 0;
        while (bytes[off] & 0x80) n |= std::uint64_t(bytes[off++] & 0x7f) << shift, shift += 7;
        n |= std::uint64_t(bytes[off++]) << shift;
        frames::Envelope env;
        REQUIRE_FALSE(frames::parse_envelope(ByteView(bytes.data() + off, n), env));
        Rec r;
        if (env.is_marker()) {
            frames::Marker m;
            REQUIRE_FALSE(frames::parse_marker(env, m));
            r.kind = m.kind;
            if (m.kind == "gap") r.a = *m.from, r.b = *m.to;
            if (m.kind == "connect") r.a = m.cursor.value_or(-1);
        } else {
            r.kind = "msg";
            r.a = *peek_stream_message(env.wire).seq;
        }
        out.push_back(r);
        off += n;
    }
    return out;
}

}  // namespace

TEST_CASE("tap engine: replays deduped, gaps marked, markers around each connection, cursor written", "[net][tap]") {
    std::atomic<int> conn{0};
    std::mutex pmu;
    std::vector<std::string> paths;
    Server srv([&](Peer& p) {
        REQUIRE(p.handshake());
        {
            std::lock_guard l(pmu);
            paths.push_back(p.request.substr(4, p.request.find(' ', 4) - 4));
        }
        const int c = conn++;
        std::vector<std::int64_t> seqs;
        if (c == 0) seqs = {1, 2, 3, 4, 5};
        if (c == 1) seqs = {3, 4, 5, 6, 7, 8};   // replays from before the cursor
        if (c == 2) seqs = {12, 13};             // events 9..11 are gone
        if (c == 3) seqs = {14, 13};             // not increasing: the tap drops the connection
        for (auto s : seqs) p.send_message(event(s));
        if (c < 3) {
            p.send_close(1000, "next");
            int op;
            std::vector<std::uint8_t> pl;
            p.read_frame(op, pl, 10s);
        } else {
            int op;
            std::vector<std::uint8_t> pl;
            while (p.read_frame(op, pl, 10s)) {}
        }
    });
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::vector<std::uint8_t> got;
    std::thread reader([&] {
        std::uint8_t buf[65536];
        ssize_t n;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.insert(got.end(), buf, buf + n);
    });
    std::unique_ptr<TapEngine> engine;
    OutputQueue out(fds[1], {}, OutputQueue::Callbacks{
        [&](std::uint32_t s, std::int64_t seq) { engine->on_written(s, seq); }, [&] { engine->resume(); }, nullptr});
    TapEngineOptions eo;
    eo.backoff = BackoffPolicy{50, 100, 60000};
    eo.max_messages = 11;  // 1..5, 6..8, 12, 13, 14
    std::atomic<int> done{-1};
    engine = std::make_unique<TapEngine>(std::vector<TapSource>{TapSource{srv.endpoint(), "test-pds", std::nullopt}}, eo, out,
                                         TapEngineCallbacks{nullptr, [&](Errc e) { done = int(e); }});
    Errc code;
    std::string err;
    auto loop = WsLoop::start(*engine, WsOptions{}, code, err);
    REQUIRE(loop);
    loop->post([&] { engine->start(*loop); });
    for (int i = 0; i < 600 && done < 0; ++i) std::this_thread::sleep_for(50ms);
    REQUIRE(done == 0);
    // Give the 4th connection's drop a moment to be reported before stopping.
    std::this_thread::sleep_for(300ms);
    loop->post([&] { engine->stop(); });
    loop->stop();
    out.close();
    ::close(fds[1]);
    reader.join();
    ::close(fds[0]);
    CHECK(engine->written_cursor(0) == 14);
    CHECK(engine->counters().duplicates >= 3);
    CHECK(engine->counters().gaps == 1);
    auto recs = read_records(got);
    std::vector<std::int64_t> msgs;
    for (const auto& r : recs)
        if (r.kind == "msg") msgs.push_back(r.a);
    CHECK(msgs == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14});
    // The marker sequence: connect(live), 5 msgs, disconnect, connect(5), 3 msgs, disconnect,
    // connect(8), gap 9..11, 12, 13, disconnect, connect(13), 14, …
    std::string seen;
    for (const auto& r : recs) seen += r.kind + (r.kind == "msg" ? std::to_string(r.a) : "") + " ";
    INFO(seen);
    REQUIRE(recs.size() >= 20);
    CHECK(recs.back().kind == "disconnect");
    CHECK(recs[0].kind == "connect");
    CHECK(recs[0].a == -1);
    CHECK(recs[6].kind == "disconnect");
    CHECK(recs[7].kind == "connect");
    CHECK(recs[7].a == 5);
    CHECK(recs[11].kind == "disconnect");
    CHECK(recs[12].kind == "connect");
    CHECK(recs[12].a == 8);
    CHECK(recs[13].kind == "gap");
    CHECK(recs[13].a == 9);
    CHECK(recs[13].b == 11);
    std::lock_guard l(pmu);
    REQUIRE(paths.size() >= 4);
    CHECK(paths[0] == "/xrpc/com.atproto.sync.subscribeRepos");
    CHECK(paths[1] == "/xrpc/com.atproto.sync.subscribeRepos?cursor=5");
    CHECK(paths[2] == "/xrpc/com.atproto.sync.subscribeRepos?cursor=8");
    CHECK(paths[3] == "/xrpc/com.atproto.sync.subscribeRepos?cursor=13");
}
