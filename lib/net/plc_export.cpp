#include "sovereign/net/plc_export.h"

#include "sovereign/syntax.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <unistd.h>

namespace sov::net {

namespace {

std::int64_t mono_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t epoch_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Sleeps until mono_us() ≥ until, in slices, returning early (false) when `stop` is set or
/// `deadline` (0 = none) passes.
bool wait_until(std::int64_t until, const std::atomic<bool>& stop, std::int64_t deadline) {
    for (;;) {
        if (stop.load(std::memory_order_relaxed)) return false;
        std::int64_t now = mono_us();
        if (deadline && now >= deadline) return false;
        if (now >= until) return true;
        std::int64_t slice = std::min<std::int64_t>(until - now, 100'000);
        if (deadline) slice = std::min(slice, deadline - now);
        std::this_thread::sleep_for(std::chrono::microseconds(std::max<std::int64_t>(slice, 1)));
    }
}

/// The createdAt of the last line of a page (both export forms carry it), µs; 0 when absent.
std::int64_t last_created_at(std::string_view body) {
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' ')) body.remove_suffix(1);
    std::string_view line = body.substr(body.rfind('\n') == std::string_view::npos ? 0 : body.rfind('\n') + 1);
    constexpr std::string_view kKey = "\"createdAt\":\"";
    std::size_t at = line.rfind(kKey);
    if (at == std::string_view::npos) return 0;
    std::string_view rest = line.substr(at + kKey.size());
    std::size_t end = rest.find('"');
    if (end == std::string_view::npos) return 0;
    return syntax::parse_datetime_micros(rest.substr(0, end)).value_or(0);
}

}  // namespace

std::string export_url(const std::string& base, const plc::Cursor& cursor, std::size_t count) {
    std::string url = base;
    while (!url.empty() && url.back() == '/') url.pop_back();
    url += "/export?after=";
    if (cursor.seq != 0) url += std::to_string(cursor.seq);
    else if (!cursor.created_at.empty()) {
        // createdAt − 1 ms: the server returns createdAt > after, so the boundary millisecond
        // comes again (a page may have ended inside it); the mirror drops what it already holds.
        std::string t = syntax::format_datetime_micros(cursor.created_at_us - 1000);
        for (char c : t) url += c == ':' ? std::string("%3A") : std::string(1, c);
    } else url += "0";
    url += "&count=" + std::to_string(count);
    return url;
}

Errc sync_export(plc::Mirror& mirror, const ExportSyncOptions& o, const std::atomic<bool>& stop, ExportSyncStats& stats,
                 const std::function<void(const ExportSyncStats&)>& progress, std::string& err) {
    const std::size_t count = std::clamp<std::size_t>(o.count, 1, 1000);
    const std::int64_t start = mono_us();
    const std::int64_t deadline = o.max_time_us > 0 ? start + o.max_time_us : 0;
    RatePolicy policy(o.rate, std::uint64_t(start) ^ (std::uint64_t(::getpid()) << 32));
    HttpClient client(o.http);
    HttpResult res;
    auto report = [&] {
        stats.rate_rps = policy.rate();
        if (progress) progress(stats);
    };
    for (;;) {
        if (stop.load(std::memory_order_relaxed)) {
            stats.stopped = true;
            break;
        }
        if (deadline && mono_us() >= deadline) {
            stats.max_time = true;
            break;
        }
        if (!wait_until(policy.next_at(), stop, deadline)) continue;  // the checks above say why

        const std::string url = export_url(o.url, mirror.cursor(), count);
        policy.sent(mono_us());
        ++stats.requests;
        std::string get_err;
        const Errc e = client.get(url, res, get_err);
        const std::optional<RatePolicy::Outcome> outcome = RatePolicy::classify(e, res);
        if (!outcome) {  // 4xx, a URL curl refuses, a body too large: retrying cannot help
            err = get_err.empty() ? url + ": " + std::string(to_string(e)) : get_err;
            if (e == Errc::net_http_status && !res.body.empty())
                err += " (HTTP " + std::to_string(res.status) + ": " + res.body.substr(0, 200) + ")";
            report();
            return e;
        }
        policy.answered(mono_us(), epoch_s(), *outcome, &res);
        switch (*outcome) {
        case RatePolicy::Outcome::good: break;
        case RatePolicy::Outcome::rate_limited:
            ++stats.rate_limited;
            stats.last_problem = "429 Too Many Requests";
            report();
            continue;
        case RatePolicy::Outcome::server_error:
            ++stats.server_errors;
            stats.last_problem = "HTTP " + std::to_string(res.status);
            report();
            continue;
        case RatePolicy::Outcome::network_error:
            ++stats.network_errors;
            stats.last_problem = get_err;
            report();
            continue;
        }

        plc::PageStats ps;
        if (Errc me = mirror.ingest_page(res.body, ps, err); me != Errc::ok) return me;
        ++stats.pages;
        stats.bytes += res.body.size();
        stats.lines.lines += ps.lines;
        stats.lines.accepted += ps.accepted;
        stats.lines.rejected += ps.rejected;
        stats.lines.duplicates += ps.duplicates;
        const std::uint64_t served = ps.lines + ps.duplicates;
        const bool full = served >= count;
        stats.caught_up = !full;
        if (std::int64_t t = last_created_at(res.body); t > 0) stats.position_us = t;
        report();
        if (full && ps.lines == 0) {
            err = url + ": a full page of " + std::to_string(served) +
                  " lines the mirror already holds: more ops share one createdAt millisecond than a page "
                  "carries, which paging by createdAt cannot pass";
            return Errc::net_protocol;
        }
        if (!full) {
            if (!o.follow) break;
            if (!wait_until(mono_us() + o.poll_us, stop, deadline)) continue;
        }
    }
    stats.rate_rps = policy.rate();
    return Errc::ok;
}

}  // namespace sov::net
