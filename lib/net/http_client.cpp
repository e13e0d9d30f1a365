// Blocking HTTP GET on one curl easy handle (keep-alive between calls) and RatePolicy.
#include "sovereign/net/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <mutex>

namespace sov::net {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = char(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = char(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
    s = trim(s);
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::once_flag g_curl_init;

struct Sink {
    HttpResult* out;
    std::size_t max;
    bool too_big = false;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* s = static_cast<Sink*>(user);
    std::size_t len = size * n;
    if (s->out->body.size() + len > s->max) {
        s->too_big = true;
        return 0;  // aborts the transfer
    }
    s->out->body.append(data, len);
    return len;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto* s = static_cast<Sink*>(user);
    std::string_view line(data, size * n);
    if (line.starts_with("HTTP/")) {  // a new answer (after a 100 Continue or a redirect): reset
        s->out->retry_after_s.reset();
        s->out->ratelimit_reset_epoch_s.reset();
        s->out->ratelimit_remaining.reset();
        return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string_view name = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
    const std::int64_t now = std::int64_t(std::time(nullptr));
    if (iequals(name, "retry-after")) {
        s->out->retry_after_s = parse_retry_after(value, now);
    } else if (iequals(name, "ratelimit-reset")) {
        if (auto v = parse_int(value); v && *v >= 0) s->out->ratelimit_reset_epoch_s = *v < 1000000000 ? now + *v : *v;
    } else if (iequals(name, "ratelimit-remaining")) {
        if (auto v = parse_int(value); v && *v >= 0) s->out->ratelimit_remaining = *v;
    }
    return size * n;
}

}  // namespace

std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_epoch_s) {
    value = trim(value);
    if (auto v = parse_int(value)) return *v < 0 ? std::nullopt : std::optional<std::int64_t>(*v);
    std::string text(value);
    time_t t = curl_getdate(text.c_str(), nullptr);
    if (t == time_t(-1) || text.empty()) return std::nullopt;
    return std::max<std::int64_t>(0, std::int64_t(t) - now_epoch_s);
}

struct HttpClient::Impl {
    HttpClientOptions o;
    CURL* curl = nullptr;
    char errbuf[CURL_ERROR_SIZE] = {};
};

HttpClient::HttpClient(HttpClientOptions options) : impl_(std::make_unique<Impl>()) {
    std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    impl_->o = std::move(options);
    impl_->curl = curl_easy_init();
}

HttpClient::~HttpClient() {
    if (impl_->curl) curl_easy_cleanup(impl_->curl);
}

Errc HttpClient::get(const std::string& url, HttpResult& out, std::string& err) {
    out = HttpResult{};
    err.clear();
    CURL* c = impl_->curl;
    if (!c) {
        err = url + ": cannot initialise libcurl";
        return Errc::net_transport;
    }
    Sink sink{&out, impl_->o.max_body_bytes};
    curl_easy_reset(c);
    impl_->errbuf[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, impl_->errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, impl_->o.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, impl_->o.stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_USERAGENT, impl_->o.user_agent.c_str());
    if (!impl_->o.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, impl_->o.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // whatever curl can decode
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
    if (char* ct = nullptr; curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) out.content_type = ct;
    if (rc != CURLE_OK) {
        std::string msg = impl_->errbuf[0] ? impl_->errbuf : curl_easy_strerror(rc);
        if (sink.too_big) {
            err = url + ": answer larger than " + std::to_string(impl_->o.max_body_bytes) + " bytes";
            return Errc::net_protocol;
        }
        err = url + ": " + msg;
        if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) return Errc::net_bad_url;
        return Errc::net_transport;
    }
    if (out.status < 200 || out.status > 299) {
        err = url + ": HTTP " + std::to_string(out.status);
        return Errc::net_http_status;
    }
    return Errc::ok;
}

// ---- RatePolicy

RatePolicy::RatePolicy(Config config, std::uint64_t jitter_seed)
    : c_(config), rps_(config.start_rps), rng_(jitter_seed ? jitter_seed : 1) {}

std::uint64_t RatePolicy::next_random() noexcept {
    // xorshift64*: the jitter only needs to be spread, not secret.
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1DULL;
}

void RatePolicy::sent(std::int64_t now_us) noexcept {
    next_at_ = std::max(next_at_, now_us + std::int64_t(1e6 / rps_));
}

void RatePolicy::answered(std::int64_t now_us, std::int64_t now_epoch_s, Outcome outcome, const HttpResult* r) {
    auto until_reset = [&]() -> std::optional<std::int64_t> {
        if (!r || !r->ratelimit_reset_epoch_s) return std::nullopt;
        return std::max<std::int64_t>(0, *r->ratelimit_reset_epoch_s - now_epoch_s) * 1000000;
    };
    std::int64_t wait = 0;
    switch (outcome) {
    case Outcome::good:
        failures_ = 0;
        rps_ = std::min(c_.max_rps, rps_ + c_.increase_rps);
        if (r && r->ratelimit_remaining && *r->ratelimit_remaining == 0)
            if (auto w = until_reset()) wait = *w;
        break;
    case Outcome::rate_limited:
        rps_ = std::max(c_.min_rps, rps_ / 2);
        wait = std::int64_t(1e6 / rps_);
        if (r && r->retry_after_s) wait = std::max(wait, *r->retry_after_s * 1000000);
        if (auto w = until_reset()) wait = std::max(wait, *w);
        break;
    case Outcome::server_error:
    case Outcome::network_error: {
        double ceiling = double(c_.backoff_base_us) * std::pow(2.0, double(std::min(failures_, 40u)));
        ceiling = std::min(ceiling, double(c_.backoff_cap_us));
        ++failures_;
        wait = std::int64_t(double(next_random() >> 11) * 0x1.0p-53 * ceiling);
        if (r && r->retry_after_s) wait = std::max(wait, *r->retry_after_s * 1000000);
        break;
    }
    }
    wait = std::min(wait, c_.max_wait_us);
    next_at_ = std::max(next_at_, now_us + wait);
}

std::optional<RatePolicy::Outcome> RatePolicy::classify(Errc e, const HttpResult& r) noexcept {
    if (e == Errc::ok) return Outcome::good;
    if (e == Errc::net_transport) return Outcome::network_error;
    if (e == Errc::net_http_status) {
        if (r.status == 429) return Outcome::rate_limited;
        if (r.status >= 500 || r.status == 408) return Outcome::server_error;
    }
    return std::nullopt;
}

}  // namespace sov::net
