// Endpoint parsing. Deliberately strict and small: a tap names the host it connects to in every
// frame (`src`) and keys its per-host cursor on it, so "BSKY.network.", "wss://bsky.network/"
// and "bsky.network:443" must all become the same name, and anything that is not plainly a
// server address is refused rather than guessed at.
#include "sovereign/net/endpoint.h"

#include <charconv>

namespace sov::net {

namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool is_alnum(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Lowercase hostname (or dotted IPv4, which has the same shape): labels [a-z0-9-]{1,63}, not
// starting or ending with '-', ≤ 253 bytes in all.
bool valid_hostname(std::string_view h) noexcept {
    if (h.empty() || h.size() > 253) return false;
    std::size_t label = 0;
    char prev = '.';
    for (char c : h) {
        if (c == '.') {
            if (label == 0 || prev == '-') return false;
            label = 0;
        } else if (is_alnum(c) || c == '-') {
            if (label == 0 && c == '-') return false;
            if (++label > 63) return false;
        } else {
            return false;
        }
        prev = c;
    }
    return label > 0 && prev != '-';
}

// "[" hex/':'/'.' "]", e.g. "[::1]", "[2001:db8::7]", "[::ffff:127.0.0.1]".
bool valid_ipv6_literal(std::string_view h) noexcept {
    if (h.size() < 4 || h.size() > 47 || h.front() != '[' || h.back() != ']') return false;
    bool colon = false;
    for (char c : h.substr(1, h.size() - 2)) {
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (c == ':') colon = true;
        else if (!hex && c != '.') return false;
    }
    return colon;
}

}  // namespace

std::string_view to_string(EndpointError e) noexcept {
    switch (e) {
    case EndpointError::ok: return "ok";
    case EndpointError::empty: return "empty host";
    case EndpointError::bad_scheme: return "scheme is not ws, wss, http or https";
    case EndpointError::userinfo: return "credentials in the URL are not accepted";
    case EndpointError::bad_host: return "not a host name, IPv4 address or [IPv6] literal";
    case EndpointError::bad_port: return "port is not a number in 1..65535";
    case EndpointError::fragment: return "URL has a fragment";
    }
    return "unknown endpoint error";
}

std::string Endpoint::source() const {
    std::uint16_t def = tls ? 443 : 80;
    return port == def ? host : host + ":" + std::to_string(port);
}

std::string Endpoint::url() const {
    std::string s = websocket ? (tls ? "wss://" : "ws://") : (tls ? "https://" : "http://");
    return s + source() + path;
}

std::optional<Endpoint> parse_endpoint(std::string_view text, bool default_tls, EndpointError& err) {
    err = EndpointError::ok;
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
    if (text.empty()) { err = EndpointError::empty; return std::nullopt; }

    Endpoint ep;
    ep.tls = default_tls;
    if (auto p = text.find("://"); p != std::string_view::npos) {
        std::string scheme;
        for (char c : text.substr(0, p)) scheme += lower(c);
        if (scheme == "wss") { ep.tls = true; ep.websocket = true; }
        else if (scheme == "ws") { ep.tls = false; ep.websocket = true; }
        else if (scheme == "https") { ep.tls = true; ep.websocket = false; }
        else if (scheme == "http") { ep.tls = false; ep.websocket = false; }
        else { err = EndpointError::bad_scheme; return std::nullopt; }
        text.remove_prefix(p + 3);
    }
    if (text.find('#') != std::string_view::npos) { err = EndpointError::fragment; return std::nullopt; }

    std::size_t auth_end = text.find_first_of("/?");
    std::string_view authority = text.substr(0, auth_end);
    if (auth_end != std::string_view::npos) {
        ep.path = std::string(text.substr(auth_end));
        if (ep.path.front() == '?') ep.path.insert(ep.path.begin(), '/');
        if (ep.path == "/") ep.path.clear();
    }
    if (authority.find('@') != std::string_view::npos) { err = EndpointError::userinfo; return std::nullopt; }

    std::string_view host_part = authority, port_part;
    bool has_port = false;
    if (!authority.empty() && authority.front() == '[') {
        std::size_t close = authority.find(']');
        if (close == std::string_view::npos) { err = EndpointError::bad_host; return std::nullopt; }
        host_part = authority.substr(0, close + 1);
        std::string_view rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') { err = EndpointError::bad_host; return std::nullopt; }
            port_part = rest.substr(1);
            has_port = true;
        }
    } else if (auto c = authority.rfind(':'); c != std::string_view::npos) {
        host_part = authority.substr(0, c);
        port_part = authority.substr(c + 1);
        has_port = true;
    }

    ep.host.reserve(host_part.size());
    for (char c : host_part) ep.host += lower(c);
    if (ep.host.size() > 1 && ep.host.back() == '.' && ep.host.front() != '[') ep.host.pop_back();
    if (ep.host.empty()) { err = EndpointError::empty; return std::nullopt; }
    bool ok_host = ep.host.front() == '[' ? valid_ipv6_literal(ep.host) : valid_hostname(ep.host);
    if (!ok_host) { err = EndpointError::bad_host; return std::nullopt; }

    ep.port = ep.tls ? 443 : 80;
    if (has_port) {
        unsigned v = 0;
        auto [ptr, ec] = std::from_chars(port_part.data(), port_part.data() + port_part.size(), v);
        if (port_part.empty() || ec != std::errc() || ptr != port_part.data() + port_part.size() || v == 0 ||
            v > 65535) {
            err = EndpointError::bad_port;
            return std::nullopt;
        }
        ep.port = std::uint16_t(v);
    }
    return ep;
}

std::string subscribe_repos_path(std::optional<std::int64_t> cursor) {
    std::string p = "/xrpc/com.atproto.sync.subscribeRepos";
    if (cursor) p += "?cursor=" + std::to_string(*cursor);
    return p;
}

}  // namespace sov::net
