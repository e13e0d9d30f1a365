// net::HttpServer's WebSocket streams, seen from a raw socket (handshake and frame parsing
// here, independent of any client library): text and binary messages, step() streams woken
// by topic from another thread, close frames with a code, cuts without a close frame, and a
// reader that stops reading (the server takes no message while the socket is full).
#include "sovereign/net/http_server.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace sov;

namespace {

struct WsResult {
    int status = 0;
    std::vector<std::pair<int, std::string>> messages;  // (opcode, payload)
    enum class End { close, eof, quiet } end = End::quiet;
    int close_code = -1;
    std::string close_reason;
};

class RawWs {
public:
    RawWs(std::uint16_t port, const std::string& path, int rcvbuf = 0) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (rcvbuf) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        std::string req = "GET " + path +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        REQUIRE(::send(fd_, req.data(), req.size(), 0) == ssize_t(req.size()));
        while (buf_.find("\r\n\r\n") == std::string::npos)
            if (!fill(60'000)) break;
        auto end = buf_.find("\r\n\r\n");
        REQUIRE(end != std::string::npos);
        status_ = std::stoi(buf_.substr(9, 3));
        buf_.erase(0, end + 4);
    }
    ~RawWs() { ::close(fd_); }
    int status() const { return status_; }

    // Reads messages until a close frame, the end of the stream, `want` messages then
    // `quiet_ms` without data, or 60 s.
    WsResult read(std::size_t want, int quiet_ms = 500) {
        WsResult r;
        r.status = status_;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        for (;;) {
            while (auto m = frame()) {
                if (m->first == 8) {
                    r.end = WsResult::End::close;
                    if (m->second.size() >= 2) {
                        r.close_code = (std::uint8_t(m->second[0]) << 8) | std::uint8_t(m->second[1]);
                        r.close_reason = m->second.substr(2);
                    }
                    return r;
                }
                r.messages.push_back(std::move(*m));
            }
            if (eof_) {
                r.end = WsResult::End::eof;
                return r;
            }
            if (std::chrono::steady_clock::now() > deadline) return r;
            int wait = r.messages.size() >= want ? quiet_ms : 1000;
            if (!fill(wait) && !eof_ && r.messages.size() >= want) return r;
        }
    }

private:
    bool fill(int timeout_ms) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return false;
        char tmp[65536];
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) {
            eof_ = true;
            return false;
        }
        buf_.append(tmp, std::size_t(n));
        return true;
    }
    std::optional<std::pair<int, std::string>> frame() {
        if (buf_.size() < 2) return std::nullopt;
        int op = buf_[0] & 15;
        std::uint64_t len = std::uint8_t(buf_[1]) & 127;
        std::size_t h = 2;
        if (len == 126) {
            if (buf_.size() < 4) return std::nullopt;
            len = (std::uint8_t(buf_[2]) << 8) | std::uint8_t(buf_[3]);
            h = 4;
        } else if (len == 127) {
            if (buf_.size() < 10) return std::nullopt;
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | std::uint8_t(buf_[2 + i]);
            h = 10;
        }
        if (buf_.size() < h + len) return std::nullopt;
        std::pair<int, std::string> out{op, buf_.substr(h, len)};
        buf_.erase(0, h + len);
        return out;
    }
    int fd_ = -1;
    int status_ = 0;
    bool eof_ = false;
    std::string buf_;
};

net::HttpResponse no_http(const net::HttpRequest&) { return {}; }

}  // namespace

TEST_CASE("HttpServer WebSocket: text and binary messages, then a close code", "[net][ws]") {
    Errc code;
    std::string err;
    auto s = net::HttpServer::start("127.0.0.1:0", no_http, code, err, [](const net::HttpRequest& r) {
        net::WsAnswer w;
        w.binary = r.path == "/bin";
        w.next = [n = 0]() mutable -> std::optional<std::string> {
            if (n == 3) return std::nullopt;
            return std::string("m") + char('0' + n++) + std::string(1, '\0');
        };
        w.close_code = 4001;
        w.close_reason = "done";
        return w;
    });
    REQUIRE(s);
    for (const char* path : {"/text", "/bin"}) {
        RawWs c(s->port(), path);
        REQUIRE(c.status() == 101);
        WsResult r = c.read(3);
        REQUIRE(r.messages.size() == 3);
        CHECK(r.messages[1].second == std::string("m1\0", 3));
        CHECK(r.messages[0].first == (std::string(path) == "/bin" ? 2 : 1));
        CHECK(r.end == WsResult::End::close);
        CHECK(r.close_code == 4001);
        CHECK(r.close_reason == "done");
    }
}

TEST_CASE("HttpServer WebSocket: step streams woken by topic, close and cut", "[net][ws]") {
    // A shared log that a producer thread appends to; each stream reads from its position.
    std::mutex mu;
    std::vector<std::string> log;
    std::atomic<int> mode{0};  // 0 run, 1 close with 1008, 2 cut
    Errc code;
    std::string err;
    auto s = net::HttpServer::start("127.0.0.1:0", no_http, code, err, [&](const net::HttpRequest& r) {
        net::WsAnswer w;
        w.binary = true;
        w.topic = r.path == "/b" ? 2 : 1;
        w.step = [&, pos = std::size_t(0)](bool can_send) mutable {
            net::WsStep st;
            // The cut comes from the wake path only (step(false)), so the writable callback
            // after the upgrade, whenever it runs, cannot cut the stream early.
            if (mode == 2 && !can_send) st.kind = net::WsStep::Kind::cut;
            else if (mode == 2) st.kind = net::WsStep::Kind::wait;
            else if (mode == 1) {
                st.kind = net::WsStep::Kind::close;
                st.code = 1008;
                st.data = "FutureCursor";
            } else {
                std::lock_guard lock(mu);
                if (can_send && pos < log.size()) {
                    st.kind = net::WsStep::Kind::send;
                    st.data = log[pos++];
                }
            }
            return st;
        };
        return w;
    });
    REQUIRE(s);
    SECTION("wake delivers new events to a waiting stream; close sends the code") {
        RawWs c(s->port(), "/a");
        REQUIRE(c.status() == 101);
        CHECK(c.read(0, 200).messages.empty());  // nothing yet: it waits
        for (int i = 0; i < 5; ++i) {
            {
                std::lock_guard lock(mu);
                log.push_back("e" + std::to_string(i));
            }
            s->wake(1);
        }
        WsResult r = c.read(5, 300);
        REQUIRE(r.messages.size() == 5);
        CHECK(r.messages[4].second == "e4");
        CHECK(r.messages[0].first == 2);
        CHECK(s->streams() == 1);
        mode = 1;
        s->wake(1);
        r = c.read(0);
        CHECK(r.end == WsResult::End::close);
        CHECK(r.close_code == 1008);
        CHECK(r.close_reason == "FutureCursor");
    }
    SECTION("a wake of another topic does not reach the stream; a cut ends it with no close frame") {
        RawWs c(s->port(), "/a");
        REQUIRE(c.status() == 101);
        mode = 2;
        s->wake(2);
        WsResult r = c.read(0, 300);
        CHECK(r.end == WsResult::End::quiet);
        s->wake(1);
        r = c.read(0);
        CHECK(r.end == WsResult::End::eof);
        CHECK(r.close_code == -1);
    }
}

TEST_CASE("HttpServer WebSocket: a reader that stops reading holds the stream, not memory", "[net][ws]") {
    std::atomic<std::size_t> taken{0};
    const std::string big(64 * 1024, 'x');
    Errc code;
    std::string err;
    auto s = net::HttpServer::start("127.0.0.1:0", no_http, code, err, [&](const net::HttpRequest&) {
        net::WsAnswer w;
        w.binary = true;
        w.step = [&](bool can_send) {
            net::WsStep st;
            if (can_send && taken < 2000) {
                ++taken;
                st.kind = net::WsStep::Kind::send;
                st.data = big;
            }
            return st;
        };
        return w;
    });
    REQUIRE(s);
    RawWs c(s->port(), "/", 4096);
    REQUIRE(c.status() == 101);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (int i = 0; i < 10; ++i) s->wake(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    // 2,000 × 64 KiB = 125 MiB offered; what was taken fits the socket buffers.
    const std::size_t stalled = taken.load();
    CHECK(stalled < 200);
    WsResult r = c.read(2000, 2000);
    CHECK(r.messages.size() == 2000);
    CHECK(taken == 2000);
}

TEST_CASE("HttpServer WebSocket: batched step messages of every size arrive whole and in order, then the close",
          "[net][ws]") {
    // Sizes around every frame-length form (7-bit, 16-bit, 64-bit) and beyond one batch
    // (256 KiB), given as data (even) or as a borrowed view (odd); a small receive buffer makes
    // batches stop at a held message and lws keep partial writes.
    const std::size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 300000};
    constexpr std::size_t kCount = 700;
    auto body = [&](std::size_t i) {
        std::string m(sizes[i % 7], '\0');
        for (std::size_t j = 0; j < m.size(); ++j) m[j] = char((i * 31 + j * 7) & 0xff);
        return m;
    };
    Errc code;
    std::string err;
    auto s = net::HttpServer::start("127.0.0.1:0", no_http, code, err, [&](const net::HttpRequest&) {
        net::WsAnswer w;
        w.binary = true;
        w.step = [&, i = std::size_t(0), cur = std::string()](bool can_send) mutable {
            net::WsStep st;
            if (!can_send) return st;
            if (i == kCount) {
                st.kind = net::WsStep::Kind::close;
                st.code = 1000;
                st.data = "done";
                return st;
            }
            st.kind = net::WsStep::Kind::send;
            cur = body(i);
            if (i % 2) st.view = cur;
            else st.data = cur;
            ++i;
            return st;
        };
        return w;
    });
    REQUIRE(s);
    RawWs c(s->port(), "/", 8192);
    REQUIRE(c.status() == 101);
    WsResult r = c.read(kCount);
    REQUIRE(r.messages.size() == kCount);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < kCount; ++i)
        if (r.messages[i].first != 2 || r.messages[i].second != body(i)) ++bad;
    CHECK(bad == 0);
    CHECK(r.end == WsResult::End::close);
    CHECK(r.close_code == 1000);
    CHECK(r.close_reason == "done");
}
