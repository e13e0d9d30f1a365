// TLS on loopback: the test PKI (sovereign/net/tls_pki.h), net::HttpServer with a certificate,
// and the clients against it: WsLoop (wss://) and HttpClient (https://) with the right CA
// succeed; the wrong CA or a host name the certificate does not cover fail, named as a TLS
// certificate failure; bad PKI directories and files are named.
#include "sovereign/net/http_client.h"
#include "sovereign/net/http_server.h"
#include "sovereign/net/tls_pki.h"
#include "sovereign/net/ws_client.h"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace sov;
using namespace sov::net;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the temporary one, removed at the end of the test.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "sov-tls-XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()));
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string sub(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

mode_t mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 0777;
}

TestPki make_pki(const std::string& dir, const std::vector<std::string>& names, const std::vector<std::string>& ips) {
    TestPki pki;
    std::string err;
    Errc e = make_test_pki(dir, names, ips, pki, err);
    INFO(err);
    REQUIRE(e == Errc::ok);
    return pki;
}

// A TLS server whose WebSocket streams send "one", "two", "three" then close 1000 "done", and
// whose HTTP answers are {"path": …}.
std::unique_ptr<HttpServer> start_server(const TestPki& pki) {
    Errc code;
    std::string err;
    auto srv = HttpServer::start(
        "127.0.0.1:0",
        [](const HttpRequest& r) {
            HttpResponse h;
            h.body = "{\"path\":\"" + r.path + "\"}";
            return h;
        },
        code, err,
        [](const HttpRequest&) {
            WsAnswer w;
            auto n = std::make_shared<int>(0);
            w.next = [n]() -> std::optional<std::string> {
                static const char* words[] = {"one", "two", "three"};
                if (*n >= 3) return std::nullopt;
                return std::string(words[(*n)++]);
            };
            w.close_reason = "done";
            return w;
        },
        HttpServerTls{pki.server_cert_file, pki.server_key_file});
    INFO(err);
    REQUIRE(srv);
    CHECK(srv->tls());
    return srv;
}

struct Recorder : WsEvents {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> messages;
    std::vector<WsClose> closes;
    int opens = 0;
    void on_open(ConnId, const WsOpen&) override {
        std::lock_guard l(mu);
        ++opens;
    }
    void on_message(ConnId, ByteView m, bool, std::int64_t) override {
        std::lock_guard l(mu);
        messages.emplace_back(m.begin(), m.end());
    }
    void on_close(ConnId, const WsClose& c) override {
        std::lock_guard l(mu);
        closes.push_back(c);
        cv.notify_all();
    }
    bool wait_closed(std::chrono::seconds limit = 60s) {
        std::unique_lock l(mu);
        return cv.wait_for(l, limit, [&] { return !closes.empty(); });
    }
};

// One wss:// connection to `url` trusting `ca`; returns what happened.
void run_client(Recorder& r, const std::string& url, const std::string& ca) {
    WsOptions o;
    o.ca_file = ca;
    Errc code;
    std::string err;
    auto loop = WsLoop::start(r, o, code, err);
    INFO(err);
    REQUIRE(loop);
    EndpointError ee;
    auto ep = parse_endpoint(url, true, ee);
    REQUIRE(ep);
    loop->post([&] { loop->connect(*ep, "/stream"); });
    REQUIRE(r.wait_closed());
    loop->stop();
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

}  // namespace

TEST_CASE("tls pki: files and modes; the CA is reused, the server certificate renewed", "[net][tls]") {
    TempDir t;
    const std::string dir = t.sub("pki");  // made by make_test_pki
    TestPki a = make_pki(dir, {"localhost", "relay.test"}, {"127.0.0.1"});
    CHECK_FALSE(a.reused_ca);
    CHECK(a.ca_file == dir + "/ca.pem");
    CHECK(mode_of(dir) == 0700);
    CHECK(mode_of(a.ca_file) == 0644);
    CHECK(mode_of(dir + "/ca-key.pem") == 0600);
    CHECK(mode_of(a.server_key_file) == 0600);
    CHECK(mode_of(a.server_cert_file) == 0644);
    CHECK(slurp(a.ca_file).starts_with("-----BEGIN CERTIFICATE-----"));
    CHECK(slurp(a.server_key_file).starts_with("-----BEGIN PRIVATE KEY-----"));
    const std::string ca1 = slurp(a.ca_file), cert1 = slurp(a.server_cert_file);
    TestPki b = make_pki(dir, {"localhost"}, {"127.0.0.1"});
    CHECK(b.reused_ca);
    CHECK(slurp(b.ca_file) == ca1);
    CHECK(slurp(b.server_cert_file) != cert1);
    CHECK_FALSE(fs::exists(dir + "/ca.pem.tmp"));
}

TEST_CASE("tls pki: bad directories and files are named", "[net][tls]") {
    TempDir t;
    TestPki pki;
    std::string err;
    SECTION("a CA certificate without its key") {
        const std::string dir = t.sub("half");
        make_pki(dir, {"localhost"}, {});
        fs::remove(dir + "/ca-key.pem");
        CHECK(make_test_pki(dir, {"localhost"}, {}, pki, err) == Errc::bad_argument);
        CHECK(err.find("ca.pem but no ca-key.pem") != std::string::npos);
    }
    SECTION("a file that is not a certificate") {
        const std::string dir = t.sub("garbage");
        make_pki(dir, {"localhost"}, {});
        std::ofstream(dir + "/ca.pem") << "not a certificate\n";
        CHECK(make_test_pki(dir, {"localhost"}, {}, pki, err) == Errc::bad_argument);
        CHECK(err.find(dir + "/ca.pem: not a PEM certificate") == 0);
    }
    SECTION("a key of another CA") {
        const std::string d1 = t.sub("one"), d2 = t.sub("two");
        make_pki(d1, {"localhost"}, {});
        make_pki(d2, {"localhost"}, {});
        fs::copy_file(d2 + "/ca-key.pem", d1 + "/ca-key.pem", fs::copy_options::overwrite_existing);
        CHECK(make_test_pki(d1, {"localhost"}, {}, pki, err) == Errc::bad_argument);
        CHECK(err.find("not the private key of " + d1 + "/ca.pem") != std::string::npos);
    }
    SECTION("a path that is a file, or under a missing directory") {
        std::ofstream(t.sub("file")) << "x";
        CHECK(make_test_pki(t.sub("file"), {"localhost"}, {}, pki, err) == Errc::io_not_directory);
        CHECK(err == t.sub("file") + ": not a directory");
        CHECK(make_test_pki(t.sub("no/such"), {"localhost"}, {}, pki, err) == Errc::io_not_found);
        CHECK(err.find(t.sub("no/such") + ": ") == 0);
    }
    SECTION("an IP that does not parse") {
        CHECK(make_test_pki(t.sub("ip"), {"localhost"}, {"127.0.0.300"}, pki, err) == Errc::bad_argument);
        CHECK(err.find("127.0.0.300") != std::string::npos);
    }
}

TEST_CASE("tls server: a bad certificate or key file is named", "[net][tls]") {
    TempDir t;
    TestPki pki = make_pki(t.sub("pki"), {"localhost"}, {"127.0.0.1"});
    std::ofstream(t.sub("junk.pem")) << "junk\n";
    Errc code;
    std::string err;
    auto h = [](const HttpRequest&) { return HttpResponse{}; };
    CHECK_FALSE(HttpServer::start("127.0.0.1:0", h, code, err, {}, HttpServerTls{t.sub("junk.pem"), pki.server_key_file}));
    CHECK(code == Errc::bad_argument);
    CHECK(err == t.sub("junk.pem") + ": not a PEM certificate");
    CHECK_FALSE(HttpServer::start("127.0.0.1:0", h, code, err, {}, HttpServerTls{pki.server_cert_file, pki.ca_file}));
    CHECK(err == pki.ca_file + ": not a PEM private key");
    TestPki other = make_pki(t.sub("other"), {"localhost"}, {});
    CHECK_FALSE(HttpServer::start("127.0.0.1:0", h, code, err, {}, HttpServerTls{pki.server_cert_file, other.server_key_file}));
    CHECK(code == Errc::bad_argument);
    CHECK(err == other.server_key_file + ": not the private key of " + pki.server_cert_file);
    CHECK_FALSE(HttpServer::start("127.0.0.1:0", h, code, err, {}, HttpServerTls{t.sub("absent.pem"), pki.server_key_file}));
    CHECK(code == Errc::io_not_found);
    CHECK(err.find(t.sub("absent.pem")) == 0);
}

TEST_CASE("tls: wss:// and https:// with the right CA, by IP and by name", "[net][tls]") {
    TempDir t;
    TestPki pki = make_pki(t.sub("pki"), {"localhost"}, {"127.0.0.1"});
    auto srv = start_server(pki);
    const std::string port = std::to_string(srv->port());
    for (const std::string host : {"127.0.0.1", "localhost"}) {
        INFO(host);
        Recorder r;
        run_client(r, "wss://" + host + ":" + port, pki.ca_file);
        CHECK(r.opens == 1);
        CHECK(r.messages == std::vector<std::string>{"one", "two", "three"});
        REQUIRE(r.closes.size() == 1);
        CHECK(r.closes[0].why == WsEnd::closed);
        CHECK(r.closes[0].code == 1000);
        CHECK(r.closes[0].reason == "done");
    }
    HttpClientOptions ho;
    ho.ca_file = pki.ca_file;
    HttpClient http(ho);
    HttpResult res;
    std::string err;
    CHECK(http.get("https://127.0.0.1:" + port + "/xrpc/x", res, err) == Errc::ok);
    INFO(err);
    CHECK(res.body == "{\"path\":\"/xrpc/x\"}");
    // Nothing in clear text on a TLS port.
    HttpClient plain;
    CHECK(plain.get("http://127.0.0.1:" + port + "/xrpc/x", res, err) == Errc::net_transport);
}

TEST_CASE("tls: the wrong CA, or a name the certificate does not cover, fails as a certificate error", "[net][tls]") {
    TempDir t;
    TestPki pki = make_pki(t.sub("pki"), {"localhost"}, {"127.0.0.1"});
    TestPki other = make_pki(t.sub("other"), {"localhost"}, {"127.0.0.1"});
    auto srv = start_server(pki);
    const std::string port = std::to_string(srv->port());
    SECTION("another CA") {
        Recorder r;
        run_client(r, "wss://127.0.0.1:" + port, other.ca_file);
        CHECK(r.opens == 0);
        CHECK(r.messages.empty());
        REQUIRE(r.closes.size() == 1);
        CHECK(r.closes[0].why == WsEnd::connect_failed);
        INFO(r.closes[0].reason);
        CHECK(r.closes[0].reason.find("TLS") != std::string::npos);
        CHECK(lower(r.closes[0].reason).find("certificate") != std::string::npos);
        HttpClientOptions ho;
        ho.ca_file = other.ca_file;
        HttpClient http(ho);
        HttpResult res;
        std::string err;
        CHECK(http.get("https://127.0.0.1:" + port + "/x", res, err) == Errc::net_transport);
        CHECK(lower(err).find("certificate") != std::string::npos);
    }
    SECTION("a host name not in the certificate") {
        TestPki narrow = make_pki(t.sub("narrow"), {"only.test"}, {});
        auto srv2 = start_server(narrow);
        Recorder r;
        run_client(r, "wss://127.0.0.1:" + std::to_string(srv2->port()), narrow.ca_file);
        CHECK(r.opens == 0);
        REQUIRE(r.closes.size() == 1);
        CHECK(r.closes[0].why == WsEnd::connect_failed);
        INFO(r.closes[0].reason);
        CHECK(r.closes[0].reason.find("TLS") != std::string::npos);
        CHECK(lower(r.closes[0].reason).find("certificate") != std::string::npos);
    }
}

TEST_CASE("tls: bursts between quiet periods (pings answered) and a small receive buffer lose nothing", "[net][tls]") {
    TempDir t;
    TestPki pki = make_pki(t.sub("pki"), {"localhost"}, {"127.0.0.1"});
    // The stream sends what the test queues, on wake(7); "" closes.
    std::mutex mu;
    std::vector<std::string> queue;
    Errc code;
    std::string err;
    auto srv = HttpServer::start(
        "127.0.0.1:0", [](const HttpRequest&) { return HttpResponse{}; }, code, err,
        [&](const HttpRequest&) {
            WsAnswer w;
            w.binary = true;
            w.topic = 7;
            w.step = [&](bool can_send) {
                WsStep s;
                std::lock_guard l(mu);
                if (!can_send || queue.empty()) return s;  // wait
                if (queue.front().empty()) {
                    s.kind = WsStep::Kind::close;
                    s.data = "done";
                    return s;
                }
                s.kind = WsStep::Kind::send;
                s.data = std::move(queue.front());
                queue.erase(queue.begin());
                return s;
            };
            return w;
        },
        HttpServerTls{pki.server_cert_file, pki.server_key_file});
    INFO(err);
    REQUIRE(srv);
    auto send = [&](std::vector<std::string> ms) {
        {
            std::lock_guard l(mu);
            for (auto& m : ms) queue.push_back(std::move(m));
        }
        srv->wake(7);
    };
    std::string big(300'000, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = char(i * 7 + (i >> 10));
    Recorder r;
    WsOptions o;
    o.ca_file = pki.ca_file;
    o.ping_interval_ms = 100;  // pings and pongs between the bursts
    o.pong_deadline_ms = 30'000;
    o.rx_buffer = 4096;        // the 300,000-byte message arrives in pieces
    auto loop = WsLoop::start(r, o, code, err);
    REQUIRE(loop);
    EndpointError ee;
    auto ep = parse_endpoint("wss://127.0.0.1:" + std::to_string(srv->port()), true, ee);
    REQUIRE(ep);
    loop->post([&] { loop->connect(*ep, "/s"); });
    const auto until = std::chrono::steady_clock::now() + 60s;
    while (srv->streams() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    REQUIRE(srv->streams() == 1);
    std::vector<std::string> want;
    for (int burst = 0; burst < 4; ++burst) {
        std::vector<std::string> ms = {"a" + std::to_string(burst), std::string(20'000, char('b' + burst)), "c"};
        if (burst == 2) ms.push_back(big);
        want.insert(want.end(), ms.begin(), ms.end());
        send(ms);
        std::this_thread::sleep_for(300ms);  // quiet: several ticks, pings answered
    }
    send({""});
    REQUIRE(r.wait_closed());
    loop->stop();
    CHECK(r.messages.size() == want.size());
    CHECK(r.messages == want);
    REQUIRE(r.closes.size() == 1);
    CHECK(r.closes[0].why == WsEnd::closed);
    CHECK(r.closes[0].reason == "done");
}
