// serve_reader — the minimal subscribeRepos consumer of bench/bench_serve.py: C-speed reading
// of WebSocket messages from cvl-serve, counted but not parsed (the bench measures the server).
//
//   serve_reader PORT [--times FILE] CURSOR:COUNT [CURSOR:COUNT ...]
//
// One connection per CURSOR:COUNT (CURSOR "-": no cursor, live only), all served from one
// poll(2) loop; each ends after COUNT binary messages (or at a close frame / end of stream).
// Prints per connection `conn I: messages M, bytes B, seconds S, end E` and a total line
// `total: messages M, bytes B, seconds S` (S from the first connect to the last end; bytes
// are message payload bytes). --times FILE: the CLOCK_MONOTONIC time (ns, u64 little-endian)
// of the receipt of each message of connection 0, for latency measurements.
// Exit status 0 when every connection got its COUNT, 1 otherwise, 2 for usage or I/O errors.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

std::uint64_t now_ns() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return std::uint64_t(t.tv_sec) * 1'000'000'000u + std::uint64_t(t.tv_nsec);
}

struct Conn {
    int fd = -1;
    std::uint64_t want = 0, got = 0, bytes = 0;
    bool upgraded = false, done = false;
    std::string head;                // the HTTP answer until its blank line
    std::uint8_t hdr[14];            // a frame header being read
    std::size_t hdr_len = 0;
    std::uint64_t left = 0;          // payload bytes of the current frame still to come
    int opcode = 0;
    bool fin = false, in_payload = false;
    std::string control;             // payload of a control frame (close: code + reason)
    std::string end = "count";
    std::uint64_t t_end = 0;
};

std::size_t header_size(const std::uint8_t* h, std::size_t have) {
    if (have < 2) return 2;
    const std::size_t l7 = h[1] & 0x7f, mask = (h[1] & 0x80) ? 4 : 0;
    return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + mask;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: serve_reader PORT [--times FILE] CURSOR:COUNT [CURSOR:COUNT ...]\n");
        return 2;
    }
    const int port = std::atoi(argv[1]);
    FILE* times = nullptr;
    std::vector<Conn> conns;
    std::vector<std::string> paths;
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--times" && i + 1 < argc) {
            times = std::fopen(argv[++i], "wb");
            if (!times) {
                std::perror(argv[i]);
                return 2;
            }
            continue;
        }
        auto colon = a.find(':');
        if (colon == std::string::npos) {
            std::fprintf(stderr, "serve_reader: %s: expected CURSOR:COUNT\n", a.c_str());
            return 2;
        }
        Conn c;
        c.want = std::strtoull(a.c_str() + colon + 1, nullptr, 10);
        conns.push_back(c);
        const std::string cur = a.substr(0, colon);
        paths.push_back("/xrpc/com.atproto.sync.subscribeRepos" + (cur == "-" ? std::string() : "?cursor=" + cur));
    }
    const std::uint64_t t0 = now_ns();
    for (std::size_t i = 0; i < conns.size(); ++i) {
        Conn& c = conns[i];
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(std::uint16_t(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (c.fd < 0 || ::connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
            std::perror("serve_reader: connect");
            return 2;
        }
        const std::string req = "GET " + paths[i] +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: c292ZXJlaWduLWJlbmNoLTE2\r\nSec-WebSocket-Version: 13\r\n\r\n";
        if (::send(c.fd, req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size())) {
            std::perror("serve_reader: send");
            return 2;
        }
        if (c.want == 0) c.done = true, c.t_end = now_ns();
    }
    std::vector<std::uint8_t> buf(1 << 20);
    std::vector<pollfd> pfds;
    for (;;) {
        pfds.clear();
        std::vector<std::size_t> which;
        for (std::size_t i = 0; i < conns.size(); ++i)
            if (!conns[i].done) pfds.push_back({conns[i].fd, POLLIN, 0}), which.push_back(i);
        if (pfds.empty()) break;
        int r = ::poll(pfds.data(), pfds.size(), 120'000);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            std::fprintf(stderr, "serve_reader: nothing for 120 s\n");
            for (Conn& c : conns)
                if (!c.done) c.end = "timeout";
            break;
        }
        for (std::size_t k = 0; k < pfds.size(); ++k) {
            if (!pfds[k].revents) continue;
            const std::size_t ci = which[k];
            Conn& c = conns[ci];
            ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                c.done = true;
                c.end = n == 0 ? "eof" : "error";
                c.t_end = now_ns();
                continue;
            }
            const std::uint64_t t = times && ci == 0 ? now_ns() : 0;
            std::size_t p = 0, len = std::size_t(n);
            if (!c.upgraded) {
                c.head.append(reinterpret_cast<const char*>(buf.data()), len);
                auto e = c.head.find("\r\n\r\n");
                if (e == std::string::npos) continue;
                if (c.head.compare(0, 12, "HTTP/1.1 101") != 0) {
                    std::fprintf(stderr, "serve_reader: not upgraded: %s\n", c.head.substr(0, c.head.find('\r')).c_str());
                    return 2;
                }
                c.upgraded = true;
                const std::size_t extra = c.head.size() - (e + 4);
                p = len - extra;
            }
            while (p < len && !c.done) {
                if (!c.in_payload) {
                    while (c.hdr_len < header_size(c.hdr, c.hdr_len) && p < len) c.hdr[c.hdr_len++] = buf[p++];
                    if (c.hdr_len < header_size(c.hdr, c.hdr_len)) break;
                    const std::size_t l7 = c.hdr[1] & 0x7f;
                    std::uint64_t pl = l7;
                    if (l7 == 126) pl = (std::uint64_t(c.hdr[2]) << 8) | c.hdr[3];
                    if (l7 == 127) {
                        pl = 0;
                        for (int b = 0; b < 8; ++b) pl = (pl << 8) | c.hdr[2 + b];
                    }
                    c.fin = (c.hdr[0] & 0x80) != 0;
                    const int op = c.hdr[0] & 0x0f;
                    if (op != 0) c.opcode = op;
                    c.left = pl;
                    c.in_payload = true;
                    c.hdr_len = 0;
                    c.control.clear();
                }
                const std::size_t take = std::size_t(std::min<std::uint64_t>(c.left, len - p));
                if (c.opcode >= 8) c.control.append(reinterpret_cast<const char*>(buf.data() + p), take);
                else c.bytes += take;
                p += take;
                c.left -= take;
                if (c.left > 0) break;
                c.in_payload = false;
                if (c.opcode == 8) {
                    const int code = c.control.size() >= 2 ? (std::uint8_t(c.control[0]) << 8) | std::uint8_t(c.control[1]) : 0;
                    c.end = "close " + std::to_string(code) + (c.control.size() > 2 ? " " + c.control.substr(2) : "");
                    c.done = true;
                    c.t_end = now_ns();
                } else if (c.opcode < 8 && c.fin) {
                    ++c.got;
                    if (t) std::fwrite(&t, sizeof t, 1, times);
                    if (c.got >= c.want) {
                        c.done = true;
                        c.t_end = now_ns();
                    }
                }
            }
        }
    }
    if (times) std::fclose(times);
    bool all = true;
    std::uint64_t msgs = 0, bytes = 0, t_last = t0;
    for (std::size_t i = 0; i < conns.size(); ++i) {
        Conn& c = conns[i];
        ::close(c.fd);
        if (c.got < c.want) all = false;
        msgs += c.got;
        bytes += c.bytes;
        if (c.t_end > t_last) t_last = c.t_end;
        std::printf("conn %zu: messages %llu, bytes %llu, seconds %.6f, end %s\n", i, (unsigned long long)c.got,
                    (unsigned long long)c.bytes, double((c.t_end ? c.t_end : now_ns()) - t0) / 1e9, c.end.c_str());
    }
    std::printf("total: messages %llu, bytes %llu, seconds %.6f\n", (unsigned long long)msgs, (unsigned long long)bytes,
                double(t_last - t0) / 1e9);
    return all ? 0 : 1;
}
