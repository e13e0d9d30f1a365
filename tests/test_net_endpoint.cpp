// test_net_endpoint.cpp — endpoint parsing and normalisation (lib/net): every spelling of one
// server gives one name; everything that is not plainly a server address is refused with its
// reason.
#include <catch2/catch.hpp>

#include "sovereign/net/endpoint.h"

#include <string>

using sov::net::EndpointError;
using sov::net::parse_endpoint;

namespace {

std::string source_of(std::string_view text, bool tls = true) {
    EndpointError e;
    auto ep = parse_endpoint(text, tls, e);
    INFO(std::string(text) << " -> " << sov::net::to_string(e));
    REQUIRE(ep);
    CHECK(e == EndpointError::ok);
    return ep->source();
}

EndpointError error_of(std::string_view text) {
    EndpointError e;
    auto ep = parse_endpoint(text, true, e);
    CHECK_FALSE(ep);
    return e;
}

}  // namespace

TEST_CASE("endpoint: spellings of one host normalise to one source") {
    for (const char* s : {"bsky.network", "BSKY.Network", "bsky.network.", "wss://bsky.network", "wss://bsky.network/",
                          "WSS://bsky.network:443", "https://bsky.network/", " bsky.network\r"})
        CHECK(source_of(s) == "bsky.network");
}

TEST_CASE("endpoint: scheme decides TLS and the default port") {
    EndpointError e;
    auto ws = parse_endpoint("ws://localhost:2583/xrpc/com.atproto.sync.subscribeRepos?cursor=5", true, e);
    REQUIRE(ws);
    CHECK_FALSE(ws->tls);
    CHECK(ws->websocket);
    CHECK(ws->host == "localhost");
    CHECK(ws->port == 2583);
    CHECK(ws->path == "/xrpc/com.atproto.sync.subscribeRepos?cursor=5");
    CHECK(ws->source() == "localhost:2583");
    CHECK(ws->url() == "ws://localhost:2583/xrpc/com.atproto.sync.subscribeRepos?cursor=5");

    auto http = parse_endpoint("http://127.0.0.1", true, e);
    REQUIRE(http);
    CHECK_FALSE(http->tls);
    CHECK_FALSE(http->websocket);
    CHECK(http->port == 80);
    CHECK(http->source() == "127.0.0.1");

    auto bare_plain = parse_endpoint("pds.example.com", false, e);
    REQUIRE(bare_plain);
    CHECK_FALSE(bare_plain->tls);
    CHECK(bare_plain->port == 80);
    CHECK(bare_plain->url() == "ws://pds.example.com");

    CHECK(source_of("https://pds.example.com:8443") == "pds.example.com:8443");
    CHECK(source_of("ws://host.test:80") == "host.test");
}

TEST_CASE("endpoint: IPv6 literals keep their brackets") {
    CHECK(source_of("wss://[::1]:2470") == "[::1]:2470");
    CHECK(source_of("[2001:DB8::7]") == "[2001:db8::7]");
    CHECK(source_of("ws://[::ffff:127.0.0.1]", false) == "[::ffff:127.0.0.1]");
}

TEST_CASE("endpoint: a query without a path gets one") {
    EndpointError e;
    auto ep = parse_endpoint("wss://relay.test?cursor=9", true, e);
    REQUIRE(ep);
    CHECK(ep->path == "/?cursor=9");
}

TEST_CASE("endpoint: what is refused, and why") {
    CHECK(error_of("") == EndpointError::empty);
    CHECK(error_of("   ") == EndpointError::empty);
    CHECK(error_of("wss://") == EndpointError::empty);
    CHECK(error_of("ftp://bsky.network") == EndpointError::bad_scheme);
    CHECK(error_of("wss://user:pw@bsky.network") == EndpointError::userinfo);
    CHECK(error_of("wss://bsky.network#x") == EndpointError::fragment);
    CHECK(error_of("wss://bsky..network") == EndpointError::bad_host);
    CHECK(error_of("wss://-bsky.network") == EndpointError::bad_host);
    CHECK(error_of("wss://bsky-.network") == EndpointError::bad_host);
    CHECK(error_of("wss://bsky_network") == EndpointError::bad_host);
    CHECK(error_of("wss://[::1") == EndpointError::bad_host);
    CHECK(error_of("wss://[zz::1]") == EndpointError::bad_host);
    CHECK(error_of("wss://[::1]x") == EndpointError::bad_host);
    CHECK(error_of(std::string(64, 'a') + ".test") == EndpointError::bad_host);
    CHECK(error_of(std::string(250, 'a') + ".test") == EndpointError::bad_host);
    CHECK(error_of("wss://bsky.network:0") == EndpointError::bad_port);
    CHECK(error_of("wss://bsky.network:65536") == EndpointError::bad_port);
    CHECK(error_of("wss://bsky.network:") == EndpointError::bad_port);
    CHECK(error_of("wss://bsky.network:44x") == EndpointError::bad_port);
    for (auto e : {EndpointError::empty, EndpointError::bad_scheme, EndpointError::userinfo, EndpointError::bad_host,
                   EndpointError::bad_port, EndpointError::fragment})
        CHECK_FALSE(sov::net::to_string(e).empty());
}

TEST_CASE("endpoint: a 253-byte host name is accepted, 254 is not") {
    std::string h;
    while (h.size() < 253) h += std::string(std::min<std::size_t>(62, 252 - h.size()), 'a') + ".";
    h.pop_back();
    h += "b";
    REQUIRE(h.size() == 253);
    CHECK(source_of(h) == h);
    CHECK(error_of(h + "c") == EndpointError::bad_host);
}

TEST_CASE("endpoint: subscribeRepos path with and without a cursor") {
    CHECK(sov::net::subscribe_repos_path(std::nullopt) == "/xrpc/com.atproto.sync.subscribeRepos");
    CHECK(sov::net::subscribe_repos_path(0) == "/xrpc/com.atproto.sync.subscribeRepos?cursor=0");
    CHECK(sov::net::subscribe_repos_path(123456789) == "/xrpc/com.atproto.sync.subscribeRepos?cursor=123456789");
}
