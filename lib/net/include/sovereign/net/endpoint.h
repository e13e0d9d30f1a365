// sovereign/net/endpoint.h — where a tap or a client connects: a relay or PDS given as a URL
// or a bare host, normalised so that one server has one name (docs/design.md §8 "hosts are
// normalised"), and the subscribeRepos request path with its cursor (docs/protocol.md §1
// "Transport", "Sequence and cursor").
//
// Part of the network library (lib/net), the only layer that will include libwebsockets and
// libcurl; this component itself is plain string handling, so tools that only name hosts
// (ghost-diff, a future listHosts parser) can use it without linking a transport.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sov::net {

/// A server to connect to. `host` is lowercase, without a trailing dot, brackets kept for
/// IPv6 literals ("[::1]"); `port` is always set (443 for wss/https, 80 for ws/http unless
/// the URL names another).
struct Endpoint {
    bool tls = true;              ///< wss:// or https://
    bool websocket = true;        ///< ws(s):// (false: http(s)://)
    std::string host;             ///< "bsky.network", "127.0.0.1", "[::1]"
    std::uint16_t port = 443;
    std::string path;             ///< "" or the URL's path + query, e.g. "/xrpc/…?cursor=5"

    /// The host as sources are labelled in frames (`src`, docs/design.md §2): `host`, plus
    /// ":port" when the port is not the scheme's default. ≤ 253 + 6 bytes.
    std::string source() const;
    /// "wss://host[:port]" + `path`: the URL this endpoint denotes, normalised.
    std::string url() const;
};

/// Why a text is not an endpoint (stable strings from to_string()).
enum class EndpointError : std::uint8_t {
    ok,
    empty,        ///< "" or only spaces
    bad_scheme,   ///< a scheme other than ws, wss, http, https
    userinfo,     ///< "user@host" (credentials in URLs are refused: they would reach logs)
    bad_host,     ///< not a hostname (labels [a-z0-9-]{1,63}, ≤ 253 bytes), IPv4 or [IPv6]
    bad_port,     ///< not a decimal 1..65535
    fragment,     ///< "#…" (meaningless to a server)
};
std::string_view to_string(EndpointError e) noexcept;

/// Parses "wss://bsky.network", "https://pds.example.com:8443/", "Bsky.Network." or
/// "localhost:2583" into an Endpoint. A bare host (no "scheme://") takes `default_tls`
/// (wss, port 443; ws and port 80 when false). Scheme and host are case-folded; a trailing
/// "/" alone is dropped from the path; the default port is made explicit. Sets `err` and
/// returns nullopt on failure. Source: RFC 3986 §3 (authority), docs/design.md §8.
std::optional<Endpoint> parse_endpoint(std::string_view text, bool default_tls, EndpointError& err);

/// "/xrpc/com.atproto.sync.subscribeRepos" with "?cursor=N" when `cursor` is set: the
/// server replays events with seq > N (the reference PDS; docs/protocol.md §1 "cursor").
std::string subscribe_repos_path(std::optional<std::int64_t> cursor);

}  // namespace sov::net
