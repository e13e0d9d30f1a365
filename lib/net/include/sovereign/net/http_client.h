// sovereign/net/http_client.h — blocking HTTP GET (libcurl underneath) and the adaptive
// request-rate policy of docs/design.md §7 and §9 (plc-sync paging /export).
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sov::net {

/// An answer, with the headers the PLC sync acts on.
struct HttpResult {
    long status = 0;  ///< HTTP status; 0 when no answer arrived
    std::string body;
    std::string content_type;
    /// Retry-After, in seconds from now: its delay-seconds form, or its HTTP-date minus the
    /// local clock at receipt (≥ 0).
    std::optional<std::int64_t> retry_after_s;
    /// RateLimit-Reset as absolute Unix epoch seconds (the PLC directory's convention; a value
    /// below 10^9 is taken as seconds from now, the IETF draft's, and converted).
    std::optional<std::int64_t> ratelimit_reset_epoch_s;
    std::optional<std::int64_t> ratelimit_remaining;  ///< RateLimit-Remaining
};

struct HttpClientOptions {
    long connect_timeout_ms = 10000;  ///< TCP (+ TLS) connect
    long stall_timeout_s = 30;        ///< abort when no byte arrives for this long
    std::size_t max_body_bytes = 64u << 20;  ///< larger answers fail with net_protocol
    std::string user_agent = "sovereign/" SOVEREIGN_VERSION;
    /// PEM file of certificate authorities for https:// (empty: the system's store).
    std::string ca_file;
};

/// One reusable connection (keep-alive) for blocking GETs. Not thread-safe: one per thread.
class HttpClient {
public:
    explicit HttpClient(HttpClientOptions options = {});
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    /// GET `url` into `out` (replaced). Returns ok for a 2xx answer; net_http_status for any
    /// other status (`out` holds the status, body and headers); net_bad_url for a URL curl
    /// refuses (malformed, scheme other than http/https); net_transport when no complete
    /// answer arrived (refused, reset, connect or stall timeout, body shorter than its
    /// Content-Length); net_protocol for a body over max_body_bytes. `err` then names the URL
    /// and curl's message, e.g. "http://127.0.0.1:1/export: Couldn't connect to server".
    Errc get(const std::string& url, HttpResult& out, std::string& err);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Parses a Retry-After value: delay-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015
/// 07:28:00 GMT") relative to `now_epoch_s`; nullopt when neither. Never negative.
std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_epoch_s);

/// RatePolicy's settings (rates in requests per second, times in µs).
struct RateConfig {
    double start_rps = 2.0;
    double min_rps = 0.1;
    double max_rps = 50.0;
    double increase_rps = 0.25;          ///< per good answer
    std::int64_t backoff_base_us = 500000;
    std::int64_t backoff_cap_us = 60000000;
    std::int64_t max_wait_us = 3600LL * 1000000;  ///< a longer Retry-After / reset is clamped
};

/// How fast to ask, and how long to wait after a failure (docs/design.md §9 "The rate adapts").
/// Pure logic on a clock the caller passes in (µs, any monotonic origin), so it is tested
/// without sleeping. Use: wait until next_at(), send, then report the outcome.
///  - starts at `start_rps` requests per second;
///  - a good answer adds `increase_rps` (additive increase) up to `max_rps`;
///  - 429 halves the rate (down to `min_rps`) and waits at least Retry-After / until
///    RateLimit-Reset when given, else the current interval;
///  - RateLimit-Remaining 0 on a good answer waits until RateLimit-Reset;
///  - 5xx and network errors wait a full-jitter exponential backoff: uniform in [0, min(cap,
///    base · 2^failures)), the failure count reset by the next good answer; the rate is kept;
///  - it never gives up: there is no failure limit.
class RatePolicy {
public:
    using Config = RateConfig;
    enum class Outcome { good, rate_limited, server_error, network_error };

    explicit RatePolicy(Config config = {}, std::uint64_t jitter_seed = 1);

    /// The earliest time (µs, the caller's clock) the next request may be sent.
    std::int64_t next_at() const noexcept { return next_at_; }
    /// Records a request sent at `now_us` (spaces the next one by 1 / rate).
    void sent(std::int64_t now_us) noexcept;
    /// Records the outcome of the last request, received at `now_us`; `now_epoch_s` converts
    /// RateLimit-Reset (absolute epoch seconds) to a wait.
    void answered(std::int64_t now_us, std::int64_t now_epoch_s, Outcome outcome, const HttpResult* result = nullptr);
    /// Classifies a get() result: ok → good, 429 → rate_limited, 5xx / 408 → server_error,
    /// net_transport → network_error; nullopt for anything retrying cannot fix (4xx, bad URL).
    static std::optional<Outcome> classify(Errc e, const HttpResult& r) noexcept;

    double rate() const noexcept { return rps_; }
    unsigned failures() const noexcept { return failures_; }

private:
    Config c_;
    double rps_;
    unsigned failures_ = 0;
    std::int64_t next_at_ = 0;
    std::uint64_t rng_;
    std::uint64_t next_random() noexcept;
};

}  // namespace sov::net
