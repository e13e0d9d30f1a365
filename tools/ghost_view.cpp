// tools/ghost_view.cpp — ghost-diff's summary, HTML report and terminal view (ghost_view.h).
//
// The report is one HTML file a person can mail, archive or print: the charts are SVG drawn
// here, the styling a <style> block; nothing in it can fetch anything (no script, no src=, no
// CSS url() — not even for an SVG pattern, which is why unobserved spans are a plain colour).
// Every string that came from the data (DIDs, hosts, collections, source names) goes through
// html_escape, which also replaces what is not valid UTF-8, so a hostile name cannot break
// out of its element or make the document undecodable.
//
// The terminal view is redrawn whole each time. Each row is placed with an absolute cursor
// position and never followed by a newline, so a frame cannot scroll the screen whatever its
// size. A row shorter than the screen ends with CSI K (erase to end of line: the previous
// frame's longer text goes); a full row does not, because the cursor then sits in the last
// column and CSI K would erase that column's character. Widths are display columns, counted
// by display_width (names may be UTF-8 with wide characters); control characters are
// replaced before anything is measured, so a name cannot carry its own escape sequences.
#include "ghost_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <utility>

namespace ghostview {

using sov::ghost::Finding;
using sov::ghost::Histogram;
using sov::ghost::Side;
using sov::ghost::SourceView;
using sov::ghost::Stats;
using sov::ghost::TimeBucket;

namespace {

// ---- Text ------------------------------------------------------------------------------------

template <class... A>
std::string sf(const char* f, A... a) {
    char buf[256];
    int n = std::snprintf(buf, sizeof buf, f, a...);
    if (n < 0) return {};
    if (std::size_t(n) < sizeof buf) return std::string(buf, std::size_t(n));
    std::string s(std::size_t(n), '\0');
    std::snprintf(s.data(), s.size() + 1, f, a...);
    return s;
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) --q;
    return q;
}

/// Tenths as text: 13 → "1.3", -2 → "-0.2".
std::string tenths(std::int64_t t) {
    bool neg = t < 0;
    std::uint64_t a = neg ? std::uint64_t(0) - std::uint64_t(t) : std::uint64_t(t);
    return (neg ? "-" : "") + std::to_string(a / 10) + "." + std::to_string(a % 10);
}

/// num/den as a percentage with 1 decimal ("93.1"); den > 0.
std::string pct1(std::uint64_t num, std::uint64_t den) {
    return tenths(std::llround(double(num) * 1000.0 / double(den)));
}

/// One code point from s at i (advancing i); U+FFFD for an invalid or truncated sequence
/// (consuming one byte), overlong forms, surrogates and values past U+10FFFF.
char32_t next_cp(std::string_view s, std::size_t& i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) { ++i; return c; }
    int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? (c <= 0xEF ? 3 : 0) : c >= 0xC2 ? 2 : 0;
    if (len == 0 || i + std::size_t(len) > s.size()) { ++i; return 0xFFFD; }
    char32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (int k = 1; k < len; ++k) {
        auto d = static_cast<unsigned char>(s[i + std::size_t(k)]);
        if ((d & 0xC0) != 0x80) { ++i; return 0xFFFD; }
        cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) { ++i; return 0xFFFD; }
    i += std::size_t(len);
    return cp;
}

void put_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
    }
}

bool is_control(char32_t c) { return c < 0x20 || (c >= 0x7F && c < 0xA0); }

int cp_width(char32_t c) {
    if (c == 0) return 0;
    // Combining marks, zero-width spaces and joiners, variation selectors.
    if ((c >= 0x0300 && c <= 0x036F) || (c >= 0x0483 && c <= 0x0489) || (c >= 0x0591 && c <= 0x05BD) ||
        (c >= 0x0610 && c <= 0x061A) || (c >= 0x064B && c <= 0x065F) || (c >= 0x1AB0 && c <= 0x1AFF) ||
        (c >= 0x1DC0 && c <= 0x1DFF) || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
        (c >= 0x2060 && c <= 0x2064) || (c >= 0x20D0 && c <= 0x20FF) || (c >= 0xFE00 && c <= 0xFE0F) ||
        (c >= 0xFE20 && c <= 0xFE2F) || c == 0xFEFF || (c >= 0xE0100 && c <= 0xE01EF))
        return 0;
    // East Asian wide and fullwidth, emoji.
    if ((c >= 0x1100 && c <= 0x115F) || (c >= 0x2E80 && c <= 0x303E) || (c >= 0x3041 && c <= 0x33FF) ||
        (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xA000 && c <= 0xA4CF) ||
        (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFE30 && c <= 0xFE4F) ||
        (c >= 0xFF00 && c <= 0xFF60) || (c >= 0xFFE0 && c <= 0xFFE6) || (c >= 0x1F300 && c <= 0x1F64F) ||
        (c >= 0x1F900 && c <= 0x1F9FF) || (c >= 0x20000 && c <= 0x2FFFD) || (c >= 0x30000 && c <= 0x3FFFD))
        return 2;
    return 1;
}

/// For the terminal: valid UTF-8 with control characters as '?'.
std::string term_clean(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        char32_t c = next_cp(s, i);
        if (is_control(c)) out += '?';
        else put_utf8(out, c);
    }
    return out;
}

/// Clean text cut to at most `w` columns; "~" marks a cut. Padded with spaces to exactly `w`
/// when `pad`; right-aligned when `right`.
std::string cell(std::string_view s, int w, bool pad = true, bool right = false) {
    if (w <= 0) return {};
    std::string t = term_clean(s), out;
    int used = 0;
    if (int(display_width(t)) <= w) {
        out = t;
        used = int(display_width(t));
    } else {
        for (std::size_t i = 0; i < t.size();) {
            std::size_t j = i;
            int cw = cp_width(next_cp(t, j));
            if (used + cw > w - 1) break;
            out.append(t, i, j - i);
            used += cw;
            i = j;
        }
        out += '~';
        ++used;
    }
    if (pad && used < w) {
        if (right) out.insert(0, std::string(std::size_t(w - used), ' '));
        else out.append(std::size_t(w - used), ' ');
    }
    return out;
}

std::tm utc_tm(std::int64_t us, int& millis) {
    std::int64_t sec = floor_div(us, 1'000'000);
    millis = int((us - sec * 1'000'000) / 1000);
    std::time_t t = std::time_t(sec);
    std::tm tm{};
    gmtime_r(&t, &tm);
    return tm;
}

/// "HH:MM:SS.mmm"
std::string utc_clock_ms(std::int64_t us) {
    int ms;
    std::tm tm = utc_tm(us, ms);
    return sf("%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

/// Axis label for a tick `step_us` apart.
std::string utc_tick(std::int64_t us, std::int64_t step_us, bool days) {
    int ms;
    std::tm tm = utc_tm(us, ms);
    if (days && step_us >= 86'400'000'000LL) return sf("%02d-%02d", tm.tm_mon + 1, tm.tm_mday);
    if (days) return sf("%02d-%02d %02d:%02d", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
    if (step_us < 1'000'000) return sf("%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    if (step_us < 60'000'000) return sf("%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
    return sf("%02d:%02d", tm.tm_hour, tm.tm_min);
}

/// "1 h 2 min", "3 min 4 s", "5.2 s".
std::string duration(std::int64_t us) {
    if (us < 60'000'000) return tenths(floor_div(us + 50'000, 100'000)) + " s";
    std::int64_t s = us / 1'000'000;
    if (s < 3600) return sf("%lld min %lld s", (long long)(s / 60), (long long)(s % 60));
    if (s < 86400) return sf("%lld h %lld min", (long long)(s / 3600), (long long)(s / 60 % 60));
    return sf("%lld d %lld h", (long long)(s / 86400), (long long)(s / 3600 % 24));
}

/// The smallest of 1, 2, 5 × 10^k that is ≥ v (v ≥ 1): steps of axes.
std::int64_t nice_ceil(double v) {
    std::int64_t p = 1;
    for (;;) {
        for (std::int64_t m : {1, 2, 5})
            if (double(m * p) >= v) return m * p;
        p *= 10;
    }
}

/// The top of a count axis: ⌈v⌉ up to 8, else the smallest of 10, 12, 15, 20, 25, 30, 40, 50,
/// 60, 80 × 10^k that is ≥ v (so the bars fill most of the height).
std::uint64_t count_top(std::uint64_t v) {
    if (v <= 8) return std::max<std::uint64_t>(v, 1);
    for (std::uint64_t p = 1;; p *= 10)
        for (std::uint64_t m : {10, 12, 15, 20, 25, 30, 40, 50, 60, 80})
            if (m * p >= v) return m * p;
}

std::vector<std::pair<std::string, std::uint64_t>> by_count(const std::map<std::string, std::uint64_t>& m) {
    std::vector<std::pair<std::string, std::uint64_t>> v(m.begin(), m.end());
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    return v;
}

std::string ms_or_none(const Histogram& h, double q) { return h.count() ? ms1(h.quantile(q)) : "none"; }

// ---- SVG -------------------------------------------------------------------------------------

std::string num(double v) { return sf("%.1f", v); }

/// The plot area of a chart (SVG user units; the viewBox is W wide).
struct Area {
    double x0, x1, y0, y1;  // left, right, top, bottom
};

constexpr double kW = 960;

std::string svg_open(const char* id, double h, const std::string& label) {
    return sf("<svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", id, kW, h) +
           html_escape(label) + "\"><title>" + html_escape(label) + "</title>\n";
}

std::string line(double x1, double y1, double x2, double y2, const char* cls) {
    return "<line class=\"" + std::string(cls) + "\" x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) +
           "\" y2=\"" + num(y2) + "\"/>";
}

std::string text(double x, double y, const std::string& t, const char* anchor = "middle", const char* cls = nullptr) {
    std::string s = "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor + "\"";
    if (cls) s += std::string(" class=\"") + cls + "\"";
    return s + ">" + html_escape(t) + "</text>";
}

std::string rect(double x, double y, double w, double h, const char* cls, const std::string& tip = {}) {
    std::string s = "<rect class=\"" + std::string(cls) + "\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" +
                    num(std::max(w, 0.0)) + "\" height=\"" + num(std::max(h, 0.0)) + "\"";
    if (tip.empty()) return s + "/>";
    return s + "><title>" + html_escape(tip) + "</title></rect>";
}

/// Y axis from 0 to ymax (counts) with gridlines.
std::string y_axis_counts(const Area& a, std::uint64_t ymax) {
    std::string s;
    for (int k = 0; k <= 4; ++k) {
        double v = double(ymax) * k / 4;
        if (std::floor(v) != v) continue;
        double y = a.y1 - (a.y1 - a.y0) * k / 4;
        s += line(a.x0, y, a.x1, y, k ? "grid" : "axis");
        s += text(a.x0 - 6, y + 4, commas(std::uint64_t(std::llround(v))), "end");
    }
    return s;
}

/// Time axis ticks (UTC) for [t0, t1) µs under the plot area: a round step (1 ms … 30 days)
/// giving at most 8 labels.
std::string time_axis(const Area& a, std::int64_t t0, std::int64_t t1) {
    static const std::int64_t steps_ms[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000,
                                            30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000,
                                            7200000, 10800000, 21600000, 43200000, 86400000, 172800000,
                                            604800000, 2592000000};
    std::int64_t span = std::max<std::int64_t>(t1 - t0, 1);
    std::int64_t su = steps_ms[std::size(steps_ms) - 1] * 1000;
    for (auto st : steps_ms)
        if (span / (st * 1000) <= 7) { su = st * 1000; break; }
    bool days = span > 86'400'000'000LL;
    std::string s = line(a.x0, a.y1, a.x1, a.y1, "axis");
    for (std::int64_t t = floor_div(t0 + su - 1, su) * su; t <= t1; t += su) {
        double x = a.x0 + (a.x1 - a.x0) * double(t - t0) / double(span);
        s += line(x, a.y1, x, a.y1 + 4, "axis");
        s += text(x, a.y1 + 17, utc_tick(t, su, days), x > kW - 50 ? "end" : "middle");  // not cut at the edge
    }
    return s;
}

std::string none(const char* id, const std::string& why = "none") {
    return std::string("<p class=\"none\" id=\"") + id + "-none\">" + html_escape(why) + "</p>\n";
}

// ---- Report sections -------------------------------------------------------------------------

std::string latency_histogram(const Histogram& h, std::uint64_t replayed) {
    if (h.count() == 0) return none("latency-hist");
    const auto& b = h.buckets();
    const std::size_t n = b.size();
    const std::int64_t bu = Histogram::kBucketUs;
    auto index = [&](std::int64_t v) -> std::size_t {
        if (v < Histogram::kMinUs) return 0;
        if (v >= Histogram::kMaxUs) return n - 1;
        return std::size_t((v - Histogram::kMinUs) / bu) + 1;
    };
    auto start = [&](std::size_t i) { return Histogram::kMinUs + std::int64_t(i - 1) * bu; };
    // The range: the buckets of the 0.5th and 99.5th percentiles (at least 2 ms wide), in bars
    // of a round width (0.1, 0.2, 0.5, 1, 2 … ms) so that there are about 60.
    std::size_t ilo = std::clamp<std::size_t>(index(h.quantile(0.005)), 1, n - 2);
    std::size_t ihi = std::clamp<std::size_t>(index(h.quantile(0.995)), ilo, n - 2);
    std::int64_t r0 = start(ilo), r1 = start(ihi) + bu;
    if (r1 - r0 < 2000) {
        std::int64_t c = floor_div(r0 + r1, 2 * bu) * bu;
        r0 = std::max(Histogram::kMinUs, c - 1000);
        r1 = std::min(Histogram::kMaxUs, r0 + 2000);
    }
    std::int64_t w = std::max<std::int64_t>(bu, nice_ceil(double(r1 - r0) / 60.0 / double(bu)) * bu);
    r0 = floor_div(r0, w) * w;
    r1 = floor_div(r1 + w - 1, w) * w;
    std::size_t bars = std::size_t((r1 - r0) / w);
    std::vector<std::uint64_t> cnt(bars, 0);
    std::uint64_t below = 0, above = 0, top = 1;
    for (std::size_t i = 0; i < n; ++i) {
        if (!b[i]) continue;
        if (i == 0) { below += b[i]; continue; }
        if (i == n - 1) { above += b[i]; continue; }
        std::int64_t s = start(i);
        if (s < r0) below += b[i];
        else if (s >= r1) above += b[i];
        else cnt[std::size_t((s - r0) / w)] += b[i];
    }
    for (auto c : cnt) top = std::max(top, c);
    std::uint64_t ymax = count_top(top);

    const double H = 290;
    Area a{70, kW - 20, 44, H - 40};
    auto X = [&](std::int64_t us) { return a.x0 + (a.x1 - a.x0) * double(us - r0) / double(r1 - r0); };
    std::string s = svg_open("latency-hist", H, "Latency histogram: relay recv minus mesh recv, in ms");
    s += y_axis_counts(a, ymax);
    double bw = (a.x1 - a.x0) / double(bars);
    for (std::size_t i = 0; i < bars; ++i) {
        if (!cnt[i]) continue;
        double hgt = (a.y1 - a.y0) * double(cnt[i]) / double(ymax);
        std::int64_t lo = r0 + std::int64_t(i) * w;
        s += rect(a.x0 + bw * double(i) + (bw > 4 ? 0.5 : 0), a.y1 - hgt, bw > 4 ? bw - 1 : bw, hgt, "bar-lat",
                  ms1(lo) + " to " + ms1(lo + w) + " ms: " + commas(cnt[i]));
    }
    // X axis in ms: a round step giving at most ~8 labels.
    std::int64_t step = std::max<std::int64_t>(bu, nice_ceil(double(r1 - r0) / 8.0));
    s += line(a.x0, a.y1, a.x1, a.y1, "axis");
    for (std::int64_t t = floor_div(r0 + step - 1, step) * step; t <= r1; t += step) {
        s += line(X(t), a.y1, X(t), a.y1 + 4, "axis");
        std::string lab = step >= 1000 ? std::to_string(t / 1000) : ms1(t);
        s += text(X(t), a.y1 + 17, lab);
    }
    s += text((a.x0 + a.x1) / 2, H - 6, "latency (ms); negative: the relay was first");
    if (r0 < 0 && r1 > 0) s += line(X(0), a.y0, X(0), a.y1, "zero");
    struct Q { const char* name; double q; };
    int k = 0;
    for (Q q : {Q{"p50", 0.5}, Q{"p90", 0.9}, Q{"p99", 0.99}}) {
        std::int64_t v = h.quantile(q.q);
        if (v >= r0 && v <= r1) {
            double y = 12 + 11 * k;  // staggered: close percentiles do not overprint
            bool left = X(v) > a.x1 - 90;
            s += line(X(v), y + 2, X(v), a.y1, "pct");
            s += text(X(v) + (left ? -3 : 3), y, std::string(q.name) + " " + ms1(v) + " ms", left ? "end" : "start",
                      "pct-label");
        }
        ++k;
    }
    s += "</svg>\n";
    s += "<p class=\"caption\">" + commas(h.count()) + " matches timed" +
         (replayed ? " (" + commas(replayed) + " replayed after an outage not counted)" : std::string()) +
         "; shown " + ms1(r0) + " to " + ms1(r1) + " ms in bars of " + ms1(w) + " ms";
    if (below || above)
        s += "; outside: " + commas(below) + " below, " + commas(above) + " above";
    s += "; min " + ms1(h.min()) + " ms, max " + ms1(h.max()) + " ms.</p>\n";
    return s;
}

struct Series {
    std::int64_t t0 = 0, width = 0;  // first display bucket start, display bucket width (µs)
    std::vector<TimeBucket> b;
    std::vector<std::uint64_t> timed;  // latency-counted matches per display bucket
};

/// by_time on a regular axis (missing buckets are zeros), merged to at most 240 buckets.
Series regular(const Stats& st) {
    Series r;
    if (st.by_time.empty() || st.bucket_us <= 0) return r;
    std::int64_t first = st.by_time.begin()->first, last = st.by_time.rbegin()->first;
    std::int64_t nb = (last - first) / st.bucket_us + 1;
    std::int64_t g = std::max<std::int64_t>(1, (nb + 239) / 240);
    r.t0 = first;
    r.width = g * st.bucket_us;
    r.b.resize(std::size_t((nb + g - 1) / g));
    r.timed.resize(r.b.size());
    for (const auto& [t, v] : st.by_time) {
        std::size_t i = std::min(r.b.size() - 1, std::size_t((t - first) / r.width));
        r.timed[i] += v.timed;
        auto& d = r.b[i];
        d.matches += v.matches;
        d.mesh_first += v.mesh_first;
        d.drops += v.drops;
        d.unobserved += v.unobserved;
        d.relay_only += v.relay_only;
    }
    return r;
}

std::string winrate_chart(const Stats& st, const Series& r) {
    std::uint64_t any = 0;
    for (auto n : r.timed) any += n;
    if (!any || !st.latency.count()) return none("winrate-time");
    const double H = 240;
    Area a{70, kW - 20, 16, H - 40};
    std::int64_t t1 = r.t0 + r.width * std::int64_t(r.b.size());
    auto X = [&](std::size_t i) {
        return a.x0 + (a.x1 - a.x0) * (double(i) + 0.5) / double(r.b.size());
    };
    auto Y = [&](double pct) { return a.y1 - (a.y1 - a.y0) * pct / 100.0; };
    std::string s = svg_open("winrate-time", H, "Win rate over time: share of matches where the mesh was first");
    for (int p = 0; p <= 100; p += 25) {
        s += line(a.x0, Y(p), a.x1, Y(p), p ? "grid" : "axis");
        s += text(a.x0 - 6, Y(p) + 4, std::to_string(p) + "%", "end");
    }
    if (st.latency.count()) {
        double w = 100.0 * st.win_rate();
        s += line(a.x0, Y(w), a.x1, Y(w), "overall");
        s += text(a.x1 - 4, Y(w) - 5, "overall " + pct1(st.mesh_first, st.latency.count()) + "%", "end", "pct-label");
    }
    std::string pts;
    auto flush = [&] {
        if (!pts.empty()) s += "<polyline class=\"win\" points=\"" + pts + "\"/>";
        pts.clear();
    };
    for (std::size_t i = 0; i < r.b.size(); ++i) {
        const std::uint64_t n = r.timed[i];
        if (!n) { flush(); continue; }
        double p = 100.0 * double(std::min(r.b[i].mesh_first, n)) / double(n);
        pts += (pts.empty() ? "" : " ") + num(X(i)) + "," + num(Y(p));
        if (r.b.size() <= 80) {
            s += "<circle class=\"win-dot\" cx=\"" + num(X(i)) + "\" cy=\"" + num(Y(p)) + "\" r=\"2.5\"><title>" +
                 html_escape(utc_time(r.t0 + std::int64_t(i) * r.width) + ": " + num(p) + "% of " + commas(n)) +
                 "</title></circle>";
        }
    }
    flush();
    s += time_axis(a, r.t0, t1);
    s += "</svg>\n<p class=\"caption\">Per " + duration(r.width) +
         " (UTC): the share of the interval's matches where the mesh copy arrived first; gaps have no "
         "match. Dashed: the whole run's win rate (timed matches only).</p>\n";
    return s;
}

std::string drops_chart(const Series& r) {
    std::uint64_t top = 0;
    for (const auto& b : r.b) top = std::max(top, b.drops + b.unobserved + b.relay_only);
    if (!top) return none("drops-time");
    std::uint64_t ymax = count_top(top);
    const double H = 240;
    Area a{70, kW - 20, 16, H - 40};
    std::int64_t t1 = r.t0 + r.width * std::int64_t(r.b.size());
    double bw = (a.x1 - a.x0) / double(r.b.size());
    auto hgt = [&](std::uint64_t v) { return (a.y1 - a.y0) * double(v) / double(ymax); };
    std::string s = svg_open("drops-time", H, "Drops, unobserved and relay-only events over time");
    s += y_axis_counts(a, ymax);
    for (std::size_t i = 0; i < r.b.size(); ++i) {
        const auto& b = r.b[i];
        // At most 40 units wide: a run of one or two buckets does not become a wall.
        double w = std::min(bw > 4 ? bw - 1 : bw, 40.0), x = a.x0 + bw * double(i) + (bw - w) / 2, y = a.y1;
        std::string when = utc_time(r.t0 + std::int64_t(i) * r.width) + ": ";
        struct P { std::uint64_t v; const char* cls; const char* what; };
        for (P p : {P{b.drops, "bar-drop", " drops"}, P{b.unobserved, "bar-unobs", " unobserved"},
                    P{b.relay_only, "bar-ronly", " relay-only"}}) {
            if (!p.v) continue;
            y -= hgt(p.v);
            s += rect(x, y, w, hgt(p.v), p.cls, when + commas(p.v) + p.what);
        }
    }
    s += time_axis(a, r.t0, t1);
    s += "</svg>\n<p class=\"caption\"><span class=\"key bar-drop\"></span> drops "
         "<span class=\"key bar-unobs\"></span> unobserved "
         "<span class=\"key bar-ronly\"></span> relay-only, per " + duration(r.width) + " (UTC).</p>\n";
    return s;
}

/// Horizontal bars: the top 20 and "others".
std::string hbars(const char* id, const std::string& label, const std::map<std::string, std::uint64_t>& m,
                  const char* unknown) {
    auto v = by_count(m);
    if (v.empty()) return none(id);
    std::vector<std::pair<std::string, std::uint64_t>> rows;
    std::uint64_t others = 0, top = 1;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i < 20) rows.emplace_back(v[i].first.empty() ? unknown : v[i].first, v[i].second);
        else others += v[i].second;
    }
    if (v.size() > 20) rows.emplace_back("others (" + commas(v.size() - 20) + ")", others);
    for (const auto& r : rows) top = std::max(top, r.second);
    const double rh = 22, H = rh * double(rows.size()) + 12;
    Area a{300, kW - 80, 6, H - 6};
    std::string s = svg_open(id, H, label);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        double y = a.y0 + rh * double(i);
        std::string name = rows[i].first;
        std::string shown = display_width(name) > 44 ? cell(name, 43, false) : name;
        s += "<text x=\"" + num(a.x0 - 8) + "\" y=\"" + num(y + 15) + "\" text-anchor=\"end\"><title>" +
             html_escape(name) + "</title>" + html_escape(shown) + "</text>";
        double w = (a.x1 - a.x0) * double(rows[i].second) / double(top);
        bool other = v.size() > 20 && i == rows.size() - 1;
        s += rect(a.x0, y + 3, std::max(w, 1.0), rh - 6, other ? "bar-other" : "bar-drop");
        s += text(a.x0 + std::max(w, 1.0) + 6, y + 15, commas(rows[i].second), "start");
    }
    return s + "</svg>\n";
}

std::int64_t s_first_or_zero(const Stats& st) { return st.first_recv > 0 ? st.first_recv : 0; }

std::string timeline(const Stats& st) {
    if (st.sources.empty()) return none("timeline");
    std::vector<const SourceView*> src;
    for (const auto& s : st.sources) src.push_back(&s);
    std::stable_sort(src.begin(), src.end(), [](const SourceView* a, const SourceView* b) {
        if (a->side != b->side) return a->side == Side::relay;
        return a->src < b->src;
    });
    std::int64_t t0 = std::numeric_limits<std::int64_t>::max(), t1 = std::numeric_limits<std::int64_t>::min();
    for (auto* s : src) {
        if (s->last_recv <= 0) continue;  // no record read: nothing to place
        t0 = std::min(t0, s->first_recv);
        t1 = std::max(t1, s->last_recv);
    }
    if (t1 < t0) t0 = t1 = s_first_or_zero(st);
    if (t1 <= t0) t1 = t0 + 1'000'000;
    const double rh = 26, H = rh * double(src.size()) + 40;
    Area a{240, kW - 20, 8, H - 32};
    auto X = [&](std::int64_t t) {
        return a.x0 + (a.x1 - a.x0) * double(std::clamp(t, t0, t1) - t0) / double(t1 - t0);
    };
    std::string s = svg_open("timeline", H, "Observation timeline of each source");
    for (std::size_t i = 0; i < src.size(); ++i) {
        const SourceView& v = *src[i];
        double y = a.y0 + rh * double(i);
        std::string name = v.src.empty() ? "(unnamed)" : v.src;
        std::string shown = display_width(name) > 26 ? cell(name, 25, false) : name;
        std::int64_t unobs = 0;
        for (auto [f, t] : v.unobserved) unobs += std::max<std::int64_t>(0, t - f);
        std::string tip = name + " (" + std::string(to_string(v.side)) + "): " + commas(v.events) + " events, " +
                          commas(v.connects) + " connects, " + commas(v.outages.size()) + " outages, unobserved " +
                          duration(unobs) + "; " + utc_time(v.first_recv) + " to " + utc_time(v.last_recv);
        s += "<g class=\"row\"><title>" + html_escape(tip) + "</title>";
        s += "<text x=\"" + num(a.x0 - 8) + "\" y=\"" + num(y + 16) + "\" text-anchor=\"end\">" + html_escape(shown) +
             " <tspan class=\"side\">" + std::string(to_string(v.side)) + "</tspan></text>";
        s += rect(a.x0, y + 5, a.x1 - a.x0, rh - 10, "tl-none");
        s += rect(X(v.first_recv), y + 5, std::max(X(v.last_recv) - X(v.first_recv), 1.0), rh - 10, "tl-obs");
        for (auto [f, t] : v.unobserved)
            s += rect(X(f), y + 5, std::max(X(t) - X(f), 1.5), rh - 10, "tl-unobs",
                      "unobserved " + utc_time(f) + " to " + utc_time(t) + " (" + duration(t - f) + ")");
        for (auto [f, t] : v.outages) {
            s += rect(X(f), y + rh - 7, std::max(X(t) - X(f), 2.0), 4, "tl-out",
                      "outage " + utc_time(f) + " to " + utc_time(t) + " (" + duration(t - f) + ")");
            s += line(X(f), y + 2, X(f), y + rh - 3, "tl-out-tick");
        }
        s += "</g>\n";
    }
    s += time_axis(a, t0, t1);
    s += "</svg>\n<p class=\"caption legend\"><span class=\"key tl-obs\"></span> observed "
         "<span class=\"key tl-unobs\"></span> unobserved (no drops counted) "
         "<span class=\"key tl-out\"></span> outage (disconnect to reconnect; bridged by a cursor replay when "
         "not unobserved) <span class=\"key tl-none\"></span> no input.<br>From " +
         html_escape(utc_time(t0)) + " to " + html_escape(utc_time(t1)) + " UTC; hover a row for its counts.</p>\n";
    return s;
}

std::string drop_table(const Stats& st) {
    const auto& d = st.recent_drops;
    if (d.empty()) return none("drop-table");
    std::string s = "<p class=\"caption\">";
    if (d.size() < st.drops)
        s += "The last <span id=\"drops-shown\">" + commas(d.size()) + "</span> of " + commas(st.drops) + " drops";
    else
        s += "All <span id=\"drops-shown\">" + commas(d.size()) + "</span> drops";
    s += ", oldest first; time is the mesh copy's recv (UTC).</p>\n"
         "<table id=\"drop-table\"><thead><tr><th>time (UTC)</th><th>type</th><th>DID</th><th>CID / time</th>"
         "<th>host</th><th>collection</th><th>mesh recv (µs)</th></tr></thead>\n<tbody>\n";
    for (const Finding& f : d) {
        s += "<tr><td>" + html_escape(f.mesh_recv ? utc_time(f.mesh_recv) : std::string("-")) +
             "</td><td>" + html_escape(f.type) + "</td><td class=\"mono\">" + html_escape(f.did) +
             "</td><td class=\"mono brk\">" + html_escape(f.cid.empty() ? f.time : f.cid) + "</td><td>" +
             html_escape(f.host.empty() ? "(unknown)" : f.host) + "</td><td>" + html_escape(f.collection) +
             "</td><td class=\"num\">" + std::to_string(f.mesh_recv) + "</td></tr>\n";
    }
    return s + "</tbody></table>\n";
}

const char* kCss = R"(
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d232a; background: #fff; margin: 0 auto; padding: 20px 28px; max-width: 1200px; line-height: 1.4;
       -webkit-print-color-adjust: exact; print-color-adjust: exact; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.15em; margin: 26px 0 8px; border-bottom: 1px solid #d5dbe1; padding-bottom: 3px; }
.meta, .caption { color: #56606b; font-size: .9em; margin: 4px 0; }
ul.inputs { margin: 4px 0; padding-left: 20px; font-size: .9em; color: #3b4550; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.card { border: 1px solid #d5dbe1; border-radius: 6px; padding: 8px 12px; break-inside: avoid; }
.card .label { font-size: .8em; color: #56606b; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 1.6em; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .unit { font-size: .9em; color: #56606b; margin-left: 3px; }
.card .sub { font-size: .8em; color: #56606b; }
.card.bad .value { color: #c62828; }
.card.good .value { color: #2e7d32; }
.others { font-size: .85em; color: #56606b; margin-top: 8px; }
section { break-inside: avoid-page; }
svg.chart { width: 100%; height: auto; display: block; }
svg text { font-size: 12px; fill: #3b4550; }
svg .pct-label { font-size: 11px; fill: #6a1b9a; }
svg .side { fill: #8a949e; font-size: 11px; }
line.axis { stroke: #8a949e; stroke-width: 1; }
line.grid { stroke: #e3e7eb; stroke-width: 1; }
line.zero { stroke: #1d232a; stroke-width: 1; stroke-dasharray: 2 3; }
line.pct { stroke: #6a1b9a; stroke-width: 1.2; stroke-dasharray: 4 3; }
line.overall { stroke: #6a1b9a; stroke-width: 1; stroke-dasharray: 6 4; }
polyline.win { fill: none; stroke: #1565c0; stroke-width: 1.8; }
circle.win-dot { fill: #1565c0; }
.bar-lat { fill: #1e88e5; }
.bar-drop { fill: #d32f2f; background: #d32f2f; }
.bar-unobs { fill: #9e9e9e; background: #9e9e9e; }
.bar-ronly { fill: #7b1fa2; background: #7b1fa2; }
.bar-other { fill: #ef9a9a; }
.tl-none { fill: #f2f4f6; background: #f2f4f6; border: 1px solid #d5dbe1; }
.tl-obs { fill: #66bb6a; background: #66bb6a; }
.tl-unobs { fill: #ffb300; background: #ffb300; }
.tl-out { fill: #c62828; background: #c62828; }
line.tl-out-tick { stroke: #c62828; stroke-width: 1.5; }
.key { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin: 0 3px 0 10px; }
p.none { color: #8a949e; font-style: italic; margin: 6px 0 6px 4px; }
table { border-collapse: collapse; width: 100%; font-size: .82em; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e3e7eb; vertical-align: top; }
th { background: #f2f4f6; position: sticky; top: 0; }
td.mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .95em; }
td.brk { word-break: break-all; min-width: 12em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
@media print {
  body { padding: 0; max-width: none; font-size: 10pt; }
  th { position: static; }
  h2 { break-after: avoid; }
  tr { break-inside: avoid; }
}
@page { margin: 12mm; }
)";

std::string card(const char* label, const char* id, const std::string& value, const char* unit,
                 const std::string& sub = {}, const char* cls = "") {
    std::string s = std::string("<div class=\"card ") + cls + "\"><div class=\"label\">" + label +
                    "</div><div class=\"value\"><span id=\"" + id + "\">" + value + "</span>";
    if (*unit && value != "none") s += std::string("<span class=\"unit\">") + unit + "</span>";
    s += "</div>";
    if (!sub.empty()) s += "<div class=\"sub\">" + sub + "</div>";
    return s + "</div>\n";
}

std::string span_id(const char* id, std::uint64_t v) {
    return std::string("<span id=\"") + id + "\">" + commas(v) + "</span>";
}

}  // namespace

// ---- Helpers ---------------------------------------------------------------------------------

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + s.size() / 8);
    for (std::size_t i = 0; i < s.size();) {
        char32_t c = next_cp(s, i);
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default:
                if (is_control(c) && c != '\t' && c != '\n') c = 0xFFFD;
                put_utf8(out, c);
        }
    }
    return out;
}

std::size_t display_width(std::string_view s) {
    std::size_t w = 0;
    for (std::size_t i = 0; i < s.size();) w += std::size_t(cp_width(next_cp(s, i)));
    return w;
}

std::string utc_time(std::int64_t us) {
    int ms;
    std::tm tm = utc_tm(us, ms);
    return sf("%04d-%02d-%02d %02d:%02d:%02d.%03d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
              tm.tm_min, tm.tm_sec, ms);
}

std::string ms1(std::int64_t us) { return tenths(floor_div(us + 50, 100)); }

std::string commas(std::uint64_t v) {
    std::string d = std::to_string(v), out;
    for (std::size_t i = 0; i < d.size(); ++i) {
        out += d[i];
        std::size_t rest = d.size() - 1 - i;
        if (rest && rest % 3 == 0) out += ',';
    }
    return out;
}

// ---- Summary ---------------------------------------------------------------------------------

std::string format_summary(const Stats& s) {
    std::string out = "ghost-diff: " + std::to_string(s.mesh_events) + " mesh events, " +
                      std::to_string(s.relay_events) + " relay events: " + std::to_string(s.matches) +
                      " matches, " + std::to_string(s.drops) + " drops, " +
                      std::to_string(s.unobserved_mesh + s.unobserved_relay) + " unobserved (" +
                      std::to_string(s.unobserved_mesh) + " mesh, " + std::to_string(s.unobserved_relay) +
                      " relay), " + std::to_string(s.relay_only) + " relay-only; ";
    if (s.latency.count())
        out += "win rate " + pct1(s.mesh_first, s.latency.count()) + "% (mesh first); latency p50 " +
               ms1(s.latency.quantile(0.5)) + " ms, p90 " + ms1(s.latency.quantile(0.9)) + " ms, p99 " +
               ms1(s.latency.quantile(0.99)) + " ms\n";
    else
        out += "win rate none; latency none\n";
    // What is not a finding but a reader of the numbers should know.
    std::string extra;
    auto note = [&](std::uint64_t n, const char* what) {
        if (n) extra += (extra.empty() ? "" : ", ") + std::to_string(n) + " " + what;
    };
    note(s.replayed, "matches after an outage (latency not counted)");
    note(s.late, "copies after their event was decided");
    note(s.duplicates, "duplicates");
    note(s.out_of_order, "records out of receive order");
    std::string drops;
    if (s.drops) {
        auto list = [](const std::map<std::string, std::uint64_t>& m, const char* unknown, const char* what) {
            auto v = by_count(m);
            std::string l;
            std::uint64_t others = 0;
            for (std::size_t i = 0; i < v.size(); ++i) {
                if (i >= 10) { others += v[i].second; continue; }
                if (i) l += ", ";
                l += term_clean(v[i].first.empty() ? unknown : v[i].first) + " " + std::to_string(v[i].second);
            }
            if (v.size() > 10)
                l += ", " + std::to_string(v.size() - 10) + " others " + std::to_string(others);
            if (v.empty()) l = "none";
            return "ghost-diff: drops by " + std::string(what) + ": " + l + "\n";
        };
        drops = list(s.drops_by_host, "(unknown)", "PDS host") + list(s.drops_by_collection, "(none)", "collection");
    }
    out += drops;
    if (!extra.empty()) out += "ghost-diff: also " + extra + "\n";
    return out;
}

// ---- Report ----------------------------------------------------------------------------------

std::string render_report(const Stats& s, const ReportMeta& m) {
    const std::string title = m.title.empty() ? "ghost-diff report" : m.title;
    std::string h;
    h.reserve(64 * 1024 + s.recent_drops.size() * 400);
    h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
         html_escape(title) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n<header>\n<h1>" +
         html_escape(title) + "</h1>\n<p class=\"meta\">";
    if (!m.generated_utc.empty()) h += "Generated " + html_escape(m.generated_utc) + ". ";
    h += "Window " + duration(m.window_us) + ". ";
    if (s.mesh_events + s.relay_events && s.last_recv >= s.first_recv)
        h += "Events from <span id=\"first-recv\">" + html_escape(utc_time(s.first_recv)) +
             "</span> to <span id=\"last-recv\">" + html_escape(utc_time(s.last_recv)) + "</span> UTC (" +
             duration(s.last_recv - s.first_recv) + "). ";
    else
        h += "No events. ";
    h += "</p>\n";
    if (!m.inputs.empty()) {
        h += "<ul class=\"inputs\">\n";
        for (const auto& in : m.inputs) h += "<li>" + html_escape(in) + "</li>\n";
        h += "</ul>\n";
    }
    h += "</header>\n";

    // Headline numbers.
    const std::uint64_t timed = s.latency.count();
    std::string delivered = s.matches + s.drops ? pct1(s.matches, s.matches + s.drops) : "none";
    std::string win = timed ? pct1(s.mesh_first, timed) : "none";
    h += "<section id=\"sec-summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n";
    h += card("Mesh events", "n-mesh-events", commas(s.mesh_events), "");
    h += card("Relay events", "n-relay-events", commas(s.relay_events), "");
    h += card("Matches", "n-matches", commas(s.matches), "", span_id("n-replayed", s.replayed) + " replayed after an outage");
    h += card("Drops", "n-drops", commas(s.drops), "", "mesh events the relay did not deliver", s.drops ? "bad" : "good");
    h += card("Unobserved", "n-unobserved", commas(s.unobserved_mesh + s.unobserved_relay), "",
              span_id("n-unobserved-mesh", s.unobserved_mesh) + " mesh, " +
                  span_id("n-unobserved-relay", s.unobserved_relay) + " relay; never drops");
    h += card("Relay-only", "n-relay-only", commas(s.relay_only), "", "relay events no mesh source had",
              s.relay_only ? "bad" : "");
    h += card("Delivered", "delivered", delivered, "%", "matches / (matches + drops)");
    h += card("Win rate", "win-rate", win, "%", "mesh first, of " + commas(timed) + " timed matches");
    h += card("Latency p50", "p50", ms_or_none(s.latency, 0.5), "ms", "relay recv − mesh recv");
    h += card("Latency p90", "p90", ms_or_none(s.latency, 0.9), "ms");
    h += card("Latency p99", "p99", ms_or_none(s.latency, 0.99), "ms");
    h += "</div>\n<p class=\"others\">Not matched (other types): " + span_id("n-skipped", s.skipped) +
         " · duplicates: " + span_id("n-duplicates", s.duplicates) + " · late copies: " + span_id("n-late", s.late) +
         " · markers: " + span_id("n-markers", s.markers) + " · undecided: " + span_id("n-pending-mesh", s.pending_mesh) +
         " mesh, " + span_id("n-pending-relay", s.pending_relay) + " relay</p>\n</section>\n";

    h += "<section id=\"sec-latency\">\n<h2>Latency</h2>\n" + latency_histogram(s.latency, s.replayed) + "</section>\n";
    Series r = regular(s);
    h += "<section id=\"sec-winrate\">\n<h2>Win rate over time</h2>\n" + winrate_chart(s, r) + "</section>\n";
    h += "<section id=\"sec-drops-time\">\n<h2>Drops over time</h2>\n" + drops_chart(r) + "</section>\n";
    h += "<section id=\"sec-hosts\">\n<h2>Drops per PDS host</h2>\n" +
         hbars("drops-host", "Drops per PDS host", s.drops_by_host, "(unknown)") + "</section>\n";
    h += "<section id=\"sec-collections\">\n<h2>Drops per collection</h2>\n" +
         hbars("drops-collection", "Drops per collection", s.drops_by_collection, "(none)") + "</section>\n";
    h += "<section id=\"sec-timeline\">\n<h2>Sources</h2>\n" + timeline(s) + "</section>\n";
    h += "<section id=\"sec-drop-table\">\n<h2>Drops</h2>\n" + drop_table(s) + "</section>\n";
    h += "</body>\n</html>\n";
    return h;
}

// ---- Terminal view ---------------------------------------------------------------------------

namespace {

/// One screen row: text (with SGR when colour is on) and its width in columns.
class Row {
public:
    Row(int cols, bool color) : cols_(cols), color_(color) {}
    /// Appends clean text cut at the screen's edge, in `sgr` (e.g. "1;31") when colour is on.
    Row& put(std::string_view s, const char* sgr = nullptr) {
        int room = cols_ - w_;
        if (room <= 0 || s.empty()) return *this;
        std::string t = term_clean(s);
        std::string part;
        int pw = 0;
        for (std::size_t i = 0; i < t.size();) {
            std::size_t j = i;
            int cw = cp_width(next_cp(t, j));
            if (pw + cw > room) break;
            part.append(t, i, j - i);
            pw += cw;
            i = j;
        }
        if (part.empty()) return *this;
        bool c = color_ && sgr && *sgr;
        if (c) out_ += std::string("\x1b[") + sgr + "m";
        out_ += part;
        if (c) out_ += "\x1b[0m";
        w_ += pw;
        return *this;
    }
    /// Pads with spaces (in `sgr`) to the full width.
    Row& fill(const char* sgr = nullptr) { return put(std::string(std::size_t(std::max(0, cols_ - w_)), ' '), sgr); }
    int width() const { return w_; }
    const std::string& str() const { return out_; }

private:
    int cols_, w_ = 0;
    bool color_;
    std::string out_;
};

std::string rate(double v) {
    if (!std::isfinite(v)) return "-";
    if (!(v >= 0)) v = 0;
    if (v >= 100) return commas(std::uint64_t(std::llround(v)));
    return sf("%.1f", v);
}

std::string hms(double s) {
    if (!std::isfinite(s) || s < 0) s = 0;
    s = std::min(s, 1e12);
    auto t = std::uint64_t(s);
    return sf("%02llu:%02llu:%02llu", (unsigned long long)(t / 3600), (unsigned long long)(t / 60 % 60),
              (unsigned long long)(t % 60));
}

}  // namespace

std::string render_tui(const Stats& s, const std::vector<InputView>& in, const TuiOptions& o) {
    if (o.cols < 1 || o.rows < 1) return {};
    const int cols = o.cols, rows = o.rows;
    std::vector<Row> top;
    auto row = [&]() -> Row& { return top.emplace_back(cols, o.color); };

    // Title.
    {
        Row& r = row();
        std::string t = " ghost-diff  " + hms(o.elapsed_s);
        if (s.watermark > 0) t += "  decided up to " + utc_clock_ms(s.watermark).substr(0, 8) + " UTC";
        r.put(t, "1;7").fill("7");
    }
    // Inputs: as many as leave room for the totals, the drops' heading, 2 drops and the hint.
    const int fixed = 1 + 1 + 1 + 3 + 1 + 1 + 2 + 1;  // title, header, blank, totals, blank, heading, drops, hint
    const int max_in = std::max(1, rows - fixed);
    const int name_w = std::max(8, cols - 48);
    {
        Row& r = row();
        r.put(cell("input", name_w) + " " + cell("side", 5) + " " + cell("events/s", 10, true, true) + " " +
                  cell("MB/s", 8, true, true) + "  queue",
              "1");
    }
    const std::size_t shown_in = in.size() <= std::size_t(max_in) ? in.size() : std::size_t(max_in - 1);
    for (std::size_t i = 0; i < shown_in; ++i) {
        const InputView& v = in[i];
        Row& r = row();
        const char* dim = v.ended ? "2" : nullptr;
        r.put(cell(v.name, name_w) + " " + cell(v.side, 5) + " " + cell(rate(v.events_per_s), 10, true, true) + " " +
                  cell(std::isfinite(v.mb_per_s) ? sf("%.2f", std::max(0.0, v.mb_per_s)) : "-", 8, true, true) + "  ",
              dim);
        if (v.ended) {
            r.put("ended", "2");
            continue;
        }
        double f = std::clamp(std::isnan(v.fill) ? 0.0 : v.fill, 0.0, 1.0);
        int n = int(std::lround(f * 10));
        const char* c = f < 0.5 ? "32" : f < 0.8 ? "33" : "1;31";
        r.put("[").put(std::string(std::size_t(n), '#'), c).put(std::string(std::size_t(10 - n), '.')).put("]");
        r.put(sf(" %3d%%", int(std::lround(f * 100))));
    }
    if (shown_in < in.size()) {
        std::size_t ended = 0;
        for (std::size_t i = shown_in; i < in.size(); ++i) ended += in[i].ended;
        row().put("+ " + commas(in.size() - shown_in) + " more inputs (" + commas(ended) + " ended)", "2");
    }
    row();
    // Totals.
    {
        Row& r = row();
        r.put("matches ").put(commas(s.matches), "1").put("   drops ").put(commas(s.drops), s.drops ? "1;31" : "1;32");
        r.put("   unobserved ").put(commas(s.unobserved_mesh + s.unobserved_relay), "1");
        r.put(" (" + commas(s.unobserved_mesh) + " mesh, " + commas(s.unobserved_relay) + " relay)");
        r.put("   relay-only ").put(commas(s.relay_only), s.relay_only ? "1;35" : "1");
    }
    {
        Row& r = row();
        const auto& h = s.latency;
        r.put("win rate ").put(h.count() ? pct1(s.mesh_first, h.count()) + "%" : "none", "1");
        r.put(h.count() ? " (mesh first)   latency" : "   latency");
        for (auto [name, q] : {std::pair{" p50 ", 0.5}, std::pair{"  p90 ", 0.9}, std::pair{"  p99 ", 0.99}})
            r.put(name).put(h.count() ? ms1(h.quantile(q)) + " ms" : "none", "1");
    }
    row().put("events mesh " + commas(s.mesh_events) + ", relay " + commas(s.relay_events) + "   undecided mesh " +
              commas(s.pending_mesh) + ", relay " + commas(s.pending_relay) + "   replayed " + commas(s.replayed));
    row();
    {
        Row& r = row();
        r.put("recent drops", "1");
        if (s.drops == 0) r.put(": none");
        else if (s.recent_drops.empty()) r.put(": " + commas(s.drops) + " in all (not listed: no drops in these Stats)");
        else r.put(" (newest first; " + commas(s.drops) + " in all)");
    }
    // The hint takes the last row; the top part gets the rest.
    if (top.size() > std::size_t(rows - 1)) top.erase(top.begin() + (rows - 1), top.end());
    // Drops: newest first, as many as fit. The DID whole when there is room (32 columns for
    // did:plc), then the host and the collection (or the event's time) share the rest.
    const int tw = 8, yw = 6;
    const int rest = std::max(0, cols - tw - yw - 2);
    const int did_w = std::min(32, rest * 55 / 100);
    const int host_w = std::max(0, std::min(16, (rest - did_w - 1) / 2));
    const int coll_w = rest - did_w - host_w - 2;
    for (auto it = s.recent_drops.rbegin(); it != s.recent_drops.rend() && top.size() < std::size_t(rows - 1); ++it) {
        const Finding& f = *it;
        std::string type = f.type == "identity" ? "ident" : f.type == "account" ? "acct" : f.type;
        Row& r = row();
        r.put(cell(f.mesh_recv ? utc_clock_ms(f.mesh_recv).substr(0, 8) : "-", tw) + " ", "2");
        r.put(cell(type, yw) + " " + cell(f.did, did_w) + " " + cell(f.host.empty() ? "(unknown)" : f.host, host_w) +
              " " + cell(f.collection.empty() ? f.time : f.collection, std::max(1, coll_w), false));
    }
    while (top.size() < std::size_t(rows - 1)) row();
    Row hint(cols, o.color);
    hint.put("q or Ctrl-C: stop", "2");
    top.push_back(std::move(hint));

    std::string out;
    out.reserve(std::size_t(cols * rows) * 2);
    for (int i = 0; i < rows; ++i) {
        out += i == 0 ? std::string("\x1b[H") : sf("\x1b[%d;1H", i + 1);
        out += top[std::size_t(i)].str();
        if (top[std::size_t(i)].width() < cols) out += "\x1b[K";
    }
    return out;
}

}  // namespace ghostview
