// The WebSocket client (sovereign/net/ws_client.h) against a server written here on plain
// sockets, so each test controls every byte: fragmentation, oversized messages, pings left
// unanswered, TCP drops without a close frame, non-101 answers. Also Backoff and OutputQueue.
#include "sovereign/net/backoff.h"
#include "sovereign/net/output_queue.h"
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
