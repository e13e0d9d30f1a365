// lib/net's HTTP server and client on loopback, RatePolicy, and the simulated PLC directory
// (sim::PlcService) answering the client: paging, the reference's rules, faults.
#include "sovereign/net/http_client.h"
#include "sovereign/net/http_server.h"
#include "sovereign/plc.h"
#include "sovereign/sim_plc.h"
#include "sovereign/syntax.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>
#include <mutex>
#include <set>
#include <thread>

using namespace sov;
using net::RatePolicy;

namespace {

std::int64_t mono_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// A PlcService behind an HttpServer on 127.0.0.1:0.
struct PlcServer {
    sim::PlcService service;
    std::mutex mu;
    std::unique_ptr<net::HttpServer> server;
    PlcServer(const sim::PlcDirectory& d, sim::PlcFaults f) : service(d, f) {
        Errc code;
        std::string err;
        server = net::HttpServer::start(
            "127.0.0.1:0",
            [this](const net::HttpRequest& r) {
                std::lock_guard<std::mutex> lock(mu);
                sim::PlcAnswer a = service.answer(r.path, r.params, mono_us());
                net::HttpResponse h;
                h.status = a.status;
                h.content_type = a.content_type;
                h.headers = a.headers;
                h.body = std::move(a.body);
                h.delay_ms = a.delay_ms;
                h.drop_after = a.drop_after;
                return h;
            },
            code, err);
        INFO(err);
        REQUIRE(server);
    }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(server->port()) + path; }
    sim::PlcService::Counters counters() {
        std::lock_guard<std::mutex> lock(mu);
        return service.counters();
    }
};

std::vector<std::string> split_lines(const std::string& body) {
    std::vector<std::string> out;
    if (body.empty()) return out;
    std::size_t at = 0;
    while (true) {
        auto nl = body.find('\n', at);
        out.push_back(body.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
        if (nl == std::string::npos) break;
        at = nl + 1;
    }
    return out;
}

// A small directory with many ops sharing a millisecond (to exercise the legacy boundary).
const sim::PlcDirectory& dense_directory() {
    static sim::PlcDirectory d = [] {
        sim::PlcOptions o;
        o.accounts = 600;
        o.seed = 5;
        o.span_us = 300000;  // geneses within 0.3 s: several per millisecond
        o.mean_gap_s = 0.2;
        o.invalid_share = 0.2;
        o.nullify_share = 0.1;
        o.tombstone_share = 0.1;
        return std::move(*sim::PlcDirectory::generate(o));
    }();
    return d;
}

// Pages /export?after=<seq> through `get` until a short page; returns the lines.
template <class Get>
std::vector<std::string> page_sequenced(Get&& get, std::size_t count) {
    std::vector<std::string> all;
    std::uint64_t after = 0;
    while (true) {
        std::string body = get("/export?count=" + std::to_string(count) + "&after=" + std::to_string(after));
        auto lines = split_lines(body);
        for (auto& l : lines) {
            plc::ExportLine e;
            plc::Problem why;
            REQUIRE(plc::parse_export_line(l, e, why) == Errc::ok);
            REQUIRE(e.form == plc::ExportLine::Form::sequenced);
            REQUIRE(e.seq > after);
            after = e.seq;
            all.push_back(std::move(l));
        }
        if (lines.size() < count) return all;
    }
}

// Pages the legacy form the safe way (docs/design.md §9): the boundary millisecond is fetched
// again (after = last createdAt − 1 ms) and repeated ops are dropped by CID.
template <class Get>
std::vector<std::string> page_legacy(Get&& get, std::size_t count, std::size_t& boundary_repeats) {
    std::vector<std::string> all;
    std::set<std::string> seen;
    std::string after;
    boundary_repeats = 0;
    while (true) {
        std::string body = get("/export?count=" + std::to_string(count) + (after.empty() ? "" : "&after=" + after));
        auto lines = split_lines(body);
        std::int64_t last_us = 0;
        for (auto& l : lines) {
            plc::ExportLine e;
            plc::Problem why;
            REQUIRE(plc::parse_export_line(l, e, why) == Errc::ok);
            REQUIRE(e.form == plc::ExportLine::Form::legacy);
            last_us = e.created_at_us;
            if (!seen.insert(e.cid).second) {
                ++boundary_repeats;
                continue;
            }
            all.push_back(std::move(l));
        }
        if (lines.size() < count) return all;
        after = syntax::format_datetime_micros(last_us - 1000);
    }
}

}  // namespace

// ------------------------------------------------------------------ RatePolicy (no sleeping)

TEST_CASE("RatePolicy: gentle start, additive increase, halving on 429", "[net][rate]") {
    net::RateConfig c;
    RatePolicy p(c, 3);
    CHECK(p.rate() == Approx(2.0));
    p.sent(0);
    CHECK(p.next_at() == 500000);  // 2 req/s
    p.answered(100000, 1000, RatePolicy::Outcome::good);
    CHECK(p.rate() == Approx(2.25));
    for (int i = 0; i < 1000; ++i) p.answered(0, 1000, RatePolicy::Outcome::good);
    CHECK(p.rate() == Approx(c.max_rps));
    p.answered(0, 1000, RatePolicy::Outcome::rate_limited);
    CHECK(p.rate() == Approx(c.max_rps / 2));
    for (int i = 0; i < 100; ++i) p.answered(0, 1000, RatePolicy::Outcome::rate_limited);
    CHECK(p.rate() == Approx(c.min_rps));
}

TEST_CASE("RatePolicy: Retry-After and RateLimit-Reset are honoured", "[net][rate]") {
    RatePolicy p({}, 1);
    net::HttpResult r;
    r.status = 429;
    r.retry_after_s = 30;
    p.answered(1000000, 5000, RatePolicy::Outcome::rate_limited, &r);
    CHECK(p.next_at() >= 1000000 + 30000000);
    RatePolicy q({}, 1);
    net::HttpResult s;
    s.status = 429;
    s.ratelimit_reset_epoch_s = 5000 + 90;  // absolute epoch seconds
    q.answered(0, 5000, RatePolicy::Outcome::rate_limited, &s);
    CHECK(q.next_at() >= 90000000);
    // A good answer with nothing left waits for the reset too.
    RatePolicy g({}, 1);
    net::HttpResult ok;
    ok.status = 200;
    ok.ratelimit_remaining = 0;
    ok.ratelimit_reset_epoch_s = 5000 + 7;
    g.answered(0, 5000, RatePolicy::Outcome::good, &ok);
    CHECK(g.next_at() >= 7000000);
    // An absurd Retry-After is clamped.
    RatePolicy h({}, 1);
    r.retry_after_s = 10LL * 365 * 86400;
    h.answered(0, 5000, RatePolicy::Outcome::rate_limited, &r);
    CHECK(h.next_at() == net::RateConfig{}.max_wait_us);
}

TEST_CASE("RatePolicy: full-jitter exponential backoff, capped, never giving up", "[net][rate]") {
    net::RateConfig c;
    RatePolicy p(c, 99);
    std::int64_t now = 0, max_wait = 0;
    double sum_late = 0;
    for (int i = 0; i < 200; ++i) {
        const std::int64_t before = std::max(now, p.next_at());
        p.answered(before, 0, i % 2 ? RatePolicy::Outcome::server_error : RatePolicy::Outcome::network_error);
        const std::int64_t wait = p.next_at() - before;
        CHECK(wait >= 0);
        CHECK(wait <= c.backoff_cap_us);
        // Full jitter: under base · 2^i.
        if (i < 6) CHECK(double(wait) < double(c.backoff_base_us) * double(1 << i));
        if (i >= 20) sum_late += double(wait);
        max_wait = std::max(max_wait, wait);
        now = before;
    }
    CHECK(p.failures() == 200);
    // Late waits spread over [0, cap): their mean is near cap / 2, not 0 and not cap.
    const double mean = sum_late / 180;
    CHECK(mean > 0.3 * double(c.backoff_cap_us));
    CHECK(mean < 0.7 * double(c.backoff_cap_us));
    CHECK(max_wait > c.backoff_cap_us / 2);
    p.answered(now, 0, RatePolicy::Outcome::good);
    CHECK(p.failures() == 0);
}

TEST_CASE("RatePolicy::classify and parse_retry_after", "[net][rate]") {
    net::HttpResult r;
    CHECK(RatePolicy::classify(Errc::ok, r) == RatePolicy::Outcome::good);
    CHECK(RatePolicy::classify(Errc::net_transport, r) == RatePolicy::Outcome::network_error);
    r.status = 429;
    CHECK(RatePolicy::classify(Errc::net_http_status, r) == RatePolicy::Outcome::rate_limited);
    r.status = 503;
    CHECK(RatePolicy::classify(Errc::net_http_status, r) == RatePolicy::Outcome::server_error);
    r.status = 400;
    CHECK(!RatePolicy::classify(Errc::net_http_status, r));
    CHECK(!RatePolicy::classify(Errc::net_bad_url, r));

    CHECK(net::parse_retry_after("120", 0) == 120);
    CHECK(net::parse_retry_after(" 7 ", 0) == 7);
    CHECK(net::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 60) == 60);
    CHECK(net::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 60) == 0);
    CHECK(!net::parse_retry_after("-3", 0));
    CHECK(!net::parse_retry_after("soon", 0));
}

// ------------------------------------------------------------------ client errors

TEST_CASE("HttpClient: errors name the URL and the reason", "[net][http]") {
    net::HttpClient client;
    net::HttpResult r;
    std::string err;
    // A port nobody listens on: a server started then stopped.
    std::uint16_t port;
    {
        Errc code;
        auto s = net::HttpServer::start("127.0.0.1:0", [](const net::HttpRequest&) { return net::HttpResponse{}; }, code, err);
        REQUIRE(s);
        port = s->port();
    }
    std::string url = "http://127.0.0.1:" + std::to_string(port) + "/export";
    CHECK(client.get(url, r, err) == Errc::net_transport);
    CHECK(err.starts_with(url + ": "));
    CHECK(client.get("ftp://127.0.0.1/x", r, err) == Errc::net_bad_url);
    CHECK(client.get("http://[::1/x", r, err) == Errc::net_bad_url);

    Errc code;
    CHECK(!net::HttpServer::start("0.0.0.0:0", [](const net::HttpRequest&) { return net::HttpResponse{}; }, code, err));
    CHECK(code == Errc::net_bad_url);
    CHECK(!net::HttpServer::start("127.0.0.1:x", [](const net::HttpRequest&) { return net::HttpResponse{}; }, code, err));
}

TEST_CASE("HttpClient: the stall timeout and the body limit", "[net][http]") {
    Errc code;
    std::string err;
    auto s = net::HttpServer::start(
        "127.0.0.1:0",
        [](const net::HttpRequest& r) {
            net::HttpResponse a;
            a.body = std::string(100000, 'y');
            if (r.path == "/stall") a.delay_ms = 4000;  // no byte for 4 s
            return a;
        },
        code, err);
    REQUIRE(s);
    const std::string base = "http://127.0.0.1:" + std::to_string(s->port());
    net::HttpClientOptions o;
    o.stall_timeout_s = 1;
    o.max_body_bytes = 50000;
    net::HttpClient client(o);
    net::HttpResult r;
    CHECK(client.get(base + "/stall", r, err) == Errc::net_transport);
    CHECK(err.starts_with(base + "/stall: "));
    CHECK(client.get(base + "/big", r, err) == Errc::net_protocol);
    CHECK(err.find("larger than 50000 bytes") != std::string::npos);
    net::HttpClient roomy;
    CHECK(roomy.get(base + "/big", r, err) == Errc::ok);
    CHECK(r.body.size() == 100000);
}

TEST_CASE("HttpServer: query decoding, large bodies in chunks, headers", "[net][http]") {
    std::string big(3 << 20, 'x');
    for (std::size_t i = 0; i < big.size(); i += 997) big[i] = char('a' + i % 26);
    std::vector<net::HttpRequest> seen;
    std::mutex mu;
    Errc code;
    std::string err;
    auto s = net::HttpServer::start(
        "localhost:0",
        [&](const net::HttpRequest& r) {
            std::lock_guard<std::mutex> lock(mu);
            seen.push_back(r);
            net::HttpResponse a;
            if (r.path == "/big") a.body = big;
            a.headers.emplace_back("RateLimit-Remaining", "3");
            a.headers.emplace_back("RateLimit-Reset", "1900000000");
            return a;
        },
        code, err);
    REQUIRE(s);
    net::HttpClient client;
    net::HttpResult r;
    const std::string base = "http://127.0.0.1:" + std::to_string(s->port());
    REQUIRE(client.get(base + "/big", r, err) == Errc::ok);
    CHECK(r.body == big);
    CHECK(r.ratelimit_remaining == 3);
    CHECK(r.ratelimit_reset_epoch_s == 1900000000);
    REQUIRE(client.get(base + "/export?after=2024-01-01T00%3A00%3A00.000Z&count=5&flag", r, err) == Errc::ok);
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].path == "/export");
    REQUIRE(seen[1].param("after"));
    CHECK(*seen[1].param("after") == "2024-01-01T00:00:00.000Z");
    CHECK(*seen[1].param("count") == "5");
    REQUIRE(seen[1].param("flag"));
    CHECK(seen[1].param("flag")->empty());
    CHECK(!seen[1].param("nothing"));
}

// ------------------------------------------------------------------ the PLC directory

TEST_CASE("PLC server: paging the export in both forms gives every op once, in order", "[net][plc]") {
    const auto& d = dense_directory();
    PlcServer srv(d, {});
    net::HttpClient client;
    auto get = [&](const std::string& path) {
        net::HttpResult r;
        std::string err;
        INFO(err);
        REQUIRE(client.get(srv.url(path), r, err) == Errc::ok);
        CHECK(r.content_type == "application/jsonlines");
        return r.body;
    };
    auto seq = page_sequenced(get, 97);
    REQUIRE(seq.size() == d.ops().size());
    for (std::size_t i = 0; i < seq.size(); ++i) CHECK(seq[i] == d.sequenced_line(i));

    std::size_t repeats = 0;
    auto legacy = page_legacy(get, 97, repeats);
    REQUIRE(legacy.size() == d.ops().size());
    for (std::size_t i = 0; i < legacy.size(); ++i) CHECK(legacy[i] == d.legacy_line(i));
    CHECK(repeats > 0);  // pages did end inside a shared millisecond

    // Naive createdAt paging (after = the last createdAt) loses the ops that share the boundary
    // millisecond: the reference's exclusive filter, reproduced.
    std::size_t naive = 0;
    std::string after;
    while (true) {
        auto lines = split_lines(get("/export?count=97" + (after.empty() ? "" : "&after=" + after)));
        naive += lines.size();
        if (lines.size() < 97) break;
        plc::ExportLine e;
        plc::Problem why;
        REQUIRE(plc::parse_export_line(lines.back(), e, why) == Errc::ok);
        after = e.created_at;
    }
    CHECK(naive < d.ops().size());
}

TEST_CASE("PLC server: the reference's parameter rules and the DID routes", "[net][plc]") {
    const auto& d = dense_directory();
    PlcServer srv(d, {});
    net::HttpClient client;
    net::HttpResult r;
    std::string err;
    auto status = [&](const std::string& path) {
        client.get(srv.url(path), r, err);
        return r.status;
    };
    CHECK(status("/export?count=0") == 400);
    CHECK(r.body == "{\"message\":\"Invalid count parameter\"}");
    CHECK(status("/export?count=abc") == 400);
    CHECK(status("/export?count=-4") == 400);
    CHECK(status("/export?after=yesterday") == 400);
    CHECK(r.body == "{\"message\":\"Invalid after parameter\"}");
    CHECK(status("/export?count=5000&after=0") == 200);  // clamped to 1000
    CHECK(split_lines(r.body).size() == std::min<std::size_t>(1000, d.ops().size()));
    CHECK(status("/export?count=3x&after=0") == 200);  // parseInt("3x") = 3
    CHECK(split_lines(r.body).size() == 3);
    CHECK(status("/export?count=2") == 200);  // no after: the legacy form from the start
    CHECK(split_lines(r.body)[0] == d.legacy_line(0));
    CHECK(status("/export?after=" + std::to_string(d.ops().size())) == 200);
    CHECK(r.body.empty());
    CHECK(status("/export?count=1&after=2") == 200);
    CHECK(r.body == d.sequenced_line(2));

    std::size_t live = 0, dead = 0;
    for (const auto& a : d.accounts()) {
        if (live > 3 && dead > 3) break;
        if (a.tombstoned) {
            ++dead;
            CHECK(status("/" + a.did) == 410);
        } else {
            ++live;
            CHECK(status("/" + a.did) == 200);
            CHECK(r.content_type == "application/did+ld+json");
            CHECK(r.body == d.did_document(a));
        }
        CHECK(status("/" + a.did + "/log/audit") == 200);
        CHECK(r.body == d.audit_log(a));
    }
    CHECK(status("/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa") == 404);
    CHECK(status("/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/log/audit") == 404);
    CHECK(status("/nothing") == 404);
    CHECK(status("/export/stream") == 426);
}

TEST_CASE("PLC server: legacy-only answers the createdAt form to a numeric after", "[net][plc]") {
    const auto& d = dense_directory();
    sim::PlcFaults f;
    f.legacy_only = true;
    PlcServer srv(d, f);
    net::HttpClient client;
    net::HttpResult r;
    std::string err;
    REQUIRE(client.get(srv.url("/export?after=0&count=3"), r, err) == Errc::ok);
    auto lines = split_lines(r.body);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == d.legacy_line(0));  // "0" is the year 2000: before every op
}

TEST_CASE("PLC server: faults give the statuses asked for", "[net][plc]") {
    const auto& d = dense_directory();
    net::HttpClient client;
    net::HttpResult r;
    std::string err;
    {
        sim::PlcFaults f;
        f.p_5xx = 1;
        PlcServer srv(d, f);
        CHECK(client.get(srv.url("/export?after=0"), r, err) == Errc::net_http_status);
        CHECK((r.status == 500 || r.status == 503));
        CHECK(err.find("HTTP 5") != std::string::npos);
    }
    {
        sim::PlcFaults f;
        f.max_rps = 1;
        PlcServer srv(d, f);
        CHECK(client.get(srv.url("/export?after=0&count=1"), r, err) == Errc::ok);
        CHECK(client.get(srv.url("/export?after=0&count=1"), r, err) == Errc::net_http_status);
        CHECK(r.status == 429);
        CHECK(r.retry_after_s == 1);
    }
    {
        sim::PlcFaults f;
        f.p_drop = 1;
        PlcServer srv(d, f);
        CHECK(client.get(srv.url("/export?after=0"), r, err) == Errc::net_transport);
        CHECK(srv.counters().dropped == 1);
    }
    {
        sim::PlcFaults f;
        f.slow_ms = 300;
        PlcServer srv(d, f);
        const auto t0 = std::chrono::steady_clock::now();
        CHECK(client.get(srv.url("/export?after=0&count=1"), r, err) == Errc::ok);
        CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(300));  // a lower bound only
    }
}

TEST_CASE("PLC server: the client and RatePolicy page through a 429/5xx/drop storm", "[net][plc]") {
    const auto& d = dense_directory();
    sim::PlcFaults f;
    f.max_rps = 4;
    f.p_5xx = 0.25;
    f.p_drop = 0.15;
    f.seed = 11;
    PlcServer srv(d, f);
    net::RateConfig c;
    c.start_rps = 12;  // faster than the server allows: 429s at once
    c.backoff_base_us = 2000;
    c.backoff_cap_us = 50000;
    RatePolicy policy(c, 5);
    net::HttpClient client;
    std::uint64_t requests = 0;
    auto get = [&](const std::string& path) {
        while (true) {
            REQUIRE(++requests < 2000);  // bounded: a storm is survived, not looped in forever
            const std::int64_t now = mono_us();
            if (policy.next_at() > now) std::this_thread::sleep_for(std::chrono::microseconds(policy.next_at() - now));
            policy.sent(mono_us());
            net::HttpResult r;
            std::string err;
            Errc e = client.get(srv.url(path), r, err);
            auto outcome = RatePolicy::classify(e, r);
            INFO(err);
            REQUIRE(outcome);
            policy.answered(mono_us(), std::int64_t(std::time(nullptr)), *outcome, &r);
            if (*outcome == RatePolicy::Outcome::good) return r.body;
        }
    };
    auto seq = page_sequenced(get, 150);
    REQUIRE(seq.size() == d.ops().size());
    for (std::size_t i = 0; i < seq.size(); ++i) CHECK(seq[i] == d.sequenced_line(i));
    std::size_t repeats = 0;
    auto legacy = page_legacy(get, 150, repeats);
    REQUIRE(legacy.size() == d.ops().size());
    for (std::size_t i = 0; i < legacy.size(); ++i) CHECK(legacy[i] == d.legacy_line(i));
    const auto n = srv.counters();
    CHECK(n.rate_limited > 0);
    CHECK(n.server_errors > 0);
    CHECK(n.dropped > 0);
}

TEST_CASE("PLC service: /export/stream cursor rules", "[plc]") {
    const auto& d = dense_directory();  // every op within days of the newest: nothing outdated
    sim::PlcService s(d, {});
    using P = std::vector<std::pair<std::string, std::string>>;
    auto live = s.stream({});
    CHECK(live.status == 101);
    CHECK(live.from == live.end);
    CHECK(!live.close_reason);
    auto all = s.stream(P{{"cursor", "0"}});
    CHECK(all.from == 0);
    CHECK(all.end == d.ops().size());
    CHECK(!all.close_reason);
    auto tail = s.stream(P{{"cursor", std::to_string(d.ops().size() - 3)}});
    CHECK(tail.end - tail.from == 3);
    CHECK(s.stream(P{{"cursor", std::to_string(d.ops().size())}}).from == d.ops().size());
    CHECK(s.stream(P{{"cursor", std::to_string(d.ops().size() + 1)}}).close_reason == "FutureCursor");
    CHECK(s.stream(P{{"cursor", "-1"}}).status == 400);
    CHECK(s.stream(P{{"cursor", "x"}}).status == 400);

    sim::PlcOptions o;  // geneses over 30 days: the first ops are weeks older than the newest
    o.accounts = 100;
    auto wide = sim::PlcDirectory::generate(o);
    REQUIRE(wide);
    sim::PlcService w(*wide, {});
    auto old = w.stream(P{{"cursor", "0"}});
    CHECK(old.close_reason == "OutdatedCursor");
    CHECK(old.from == old.end);
}
