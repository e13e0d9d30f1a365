// ghost-diff's views (tools/ghost_view.h): the stderr summary byte for byte, the HTML report
// (numbers at their ids, nothing that could fetch, escaping, balanced markup, empty data) and
// the terminal frame replayed on a model screen (exactly cols × rows, no scrolling, no colour
// with color=false, the newest drop shown).
#include "ghost_view.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <cctype>
#include <set>
#include <string>
#include <vector>

using namespace sov::ghost;

namespace {

/// The Stats of the summary example: 12000 mesh and 11500 relay events, 11000 matches, 45
/// drops (pds1.test 30, pds3.test 15), 10 + 2 unobserved; 1000 timed matches: p50 in the
/// bucket [1.1, 1.2) ms, p90 in [3.3, 3.4), p99 in [8.0, 8.1); 931 of them mesh first.
Stats example() {
    Stats s;
    s.mesh_events = 12000;
    s.relay_events = 11500;
    s.matches = 11000;
    s.drops = 45;
    s.unobserved_mesh = 10;
    s.unobserved_relay = 2;
    for (int i = 0; i < 500; ++i) s.latency.add(1150);
    for (int i = 0; i < 400; ++i) s.latency.add(3350);
    for (int i = 0; i < 90; ++i) s.latency.add(8050);
    for (int i = 0; i < 10; ++i) s.latency.add(-20000);
    s.mesh_first = 931;
    s.drops_by_host = {{"pds1.test", 30}, {"pds3.test", 15}};
    s.drops_by_collection = {{"app.bsky.feed.like", 40}, {"app.bsky.feed.post", 5}};
    const std::int64_t t0 = 1'795'773'600'000'000;  // 2026-11-27 10:00:00 UTC
    s.first_recv = t0;
    s.last_recv = t0 + 300'000'000;
    s.watermark = t0 + 295'000'000;
    for (int b = 0; b < 30; ++b) {
        auto& tb = s.by_time[t0 + b * s.bucket_us];
        tb.matches = 360;
        tb.timed = 355;
        tb.mesh_first = 330;
        tb.drops = b == 7 ? 45 : 0;
    }
    s.sources.push_back(SourceView{"bsky.network", Side::relay, t0, s.last_recv, 11500, 2,
                                   {{t0 + 100'000'000, t0 + 110'000'000}},
                                   {{t0 + 100'000'000, t0 + 110'000'000}}});
    s.sources.push_back(SourceView{"pds1.test", Side::mesh, t0, s.last_recv, 6000, 1, {}, {}});
    s.sources.push_back(SourceView{"pds3.test", Side::mesh, t0, s.last_recv, 6000, 1, {}, {}});
    for (int i = 0; i < 3; ++i) {
        Finding f;
        f.kind = Kind::drop;
        f.type = "commit";
        f.did = "did:plc:drop" + std::to_string(i) + "aaaaaaaaaaaaaaaaaaa";  // 24 characters after did:plc:
        f.cid = "bafyreicid" + std::to_string(i);
        f.host = i == 2 ? "pds3.test" : "pds1.test";
        f.collection = "app.bsky.feed.like";
        f.mesh_recv = t0 + 70'000'000 + i * 1'000'000;
        s.recent_drops.push_back(f);
    }
    return s;
}

const std::string kFirstLine =
    "ghost-diff: 12000 mesh events, 11500 relay events: 11000 matches, 45 drops, 12 unobserved (10 mesh, 2 relay), "
    "0 relay-only; win rate 93.1% (mesh first); latency p50 1.2 ms, p90 3.4 ms, p99 8.1 ms\n";

/// The text of the element with id `id` up to its first child tag; "<absent>" without it.
std::string text_of(const std::string& html, const std::string& id) {
    auto k = html.find("id=\"" + id + "\"");
    if (k == std::string::npos) return "<absent>";
    auto gt = html.find('>', k);
    auto lt = html.find('<', gt);
    return html.substr(gt + 1, lt - gt - 1);
}

std::string lower(std::string s) {
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

/// "" when every non-void element is closed in order (self-closed SVG elements allowed), else
/// what is wrong. Also rejects a raw '<' that does not start a tag.
std::string balance(const std::string& h) {
    static const std::set<std::string> voids = {"meta", "br", "hr", "img", "input", "link", "wbr"};
    std::vector<std::string> stack;
    for (std::size_t i = h.find('<'); i != std::string::npos; i = h.find('<', i + 1)) {
        auto end = h.find('>', i);
        if (end == std::string::npos) return "unterminated tag at " + std::to_string(i);
        std::string tag = h.substr(i + 1, end - i - 1);
        if (tag.empty()) return "empty tag at " + std::to_string(i);
        if (tag[0] == '!') continue;
        bool closing = tag[0] == '/';
        std::size_t a = closing ? 1 : 0, b = a;
        while (b < tag.size() && (std::isalnum(static_cast<unsigned char>(tag[b])) || tag[b] == '-')) ++b;
        std::string name = tag.substr(a, b - a);
        if (name.empty()) return "not a tag at " + std::to_string(i) + ": " + tag.substr(0, 20);
        if (closing) {
            if (stack.empty() || stack.back() != name)
                return "</" + name + "> closes <" + (stack.empty() ? std::string("nothing") : stack.back()) + ">";
            stack.pop_back();
        } else if (tag.back() != '/' && !voids.count(name)) {
            stack.push_back(name);
        }
    }
    return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

void no_fetch(const std::string& html) {
    auto l = lower(html);
    for (const char* bad : {"<script", "http://", "https://", "src=", "@import", "url(", "<link", "<img", "<iframe",
                            "<object", "<embed", "href="})
        CHECK(l.find(bad) == std::string::npos);
}

/// A terminal screen that replays a frame: CSI row;col H, CSI K, SGR, printable UTF-8. Anything
/// else, a character past the last column or a line feed on the last row is an error.
struct Screen {
    int cols, rows;
    std::vector<std::vector<std::string>> cell;
    std::vector<bool> placed;
    int r = 0, c = 0;
    bool sgr = false;
    std::string err;

    Screen(int cols_, int rows_)
        : cols(cols_), rows(rows_), cell(std::size_t(rows_), std::vector<std::string>(std::size_t(cols_), " ")),
          placed(std::size_t(rows_), false) {}

    void fail(const std::string& e) {
        if (err.empty()) err = e + " (row " + std::to_string(r + 1) + ", col " + std::to_string(c + 1) + ")";
    }

    void feed(const std::string& s) {
        for (std::size_t i = 0; i < s.size() && err.empty();) {
            auto u = static_cast<unsigned char>(s[i]);
            if (u == 0x1b) {
                if (i + 1 >= s.size() || s[i + 1] != '[') return fail("ESC not followed by [");
                std::size_t j = i + 2;
                while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == ';')) ++j;
                if (j >= s.size()) return fail("unterminated CSI");
                std::string p = s.substr(i + 2, j - i - 2);
                char f = s[j];
                i = j + 1;
                if (f == 'm') { sgr = true; continue; }
                if (f == 'K') {  // after a write to the last column the cursor stays on it (xterm)
                    for (int k = std::min(c, cols - 1); k < cols; ++k) cell[std::size_t(r)][std::size_t(k)] = " ";
                    continue;
                }
                if (f != 'H') return fail(std::string("unexpected CSI ") + f);
                int row = 1, col = 1;
                if (!p.empty()) {
                    auto semi = p.find(';');
                    row = std::stoi(p.substr(0, semi));
                    if (semi != std::string::npos) col = std::stoi(p.substr(semi + 1));
                }
                if (row < 1 || row > rows || col < 1 || col > cols) return fail("cursor moved off the screen");
                r = row - 1;
                c = col - 1;
                placed[std::size_t(r)] = true;
                continue;
            }
            if (u == '\r') { c = 0; ++i; continue; }
            if (u == '\n') {
                if (r == rows - 1) return fail("line feed on the last row scrolls");
                ++r;
                ++i;
                continue;
            }
            if (u < 0x20 || u == 0x7f) return fail("control byte " + std::to_string(u));
            std::size_t len = u < 0x80 ? 1 : u >= 0xF0 ? 4 : u >= 0xE0 ? 3 : 2;
            std::string ch = s.substr(i, len);
            i += len;
            int w = int(ghostview::display_width(ch));
            if (w == 0) continue;
            if (c + w > cols) return fail("written past the last column");
            cell[std::size_t(r)][std::size_t(c)] = ch;
            for (int k = 1; k < w; ++k) cell[std::size_t(r)][std::size_t(c + k)] = "";
            c += w;
        }
    }
    std::string row_text(int i) const {
        std::string t;
        for (const auto& ch : cell[std::size_t(i)]) t += ch;
        while (!t.empty() && t.back() == ' ') t.pop_back();
        return t;
    }
    std::string all() const {
        std::string t;
        for (int i = 0; i < rows; ++i) t += row_text(i) + "\n";
        return t;
    }
};

std::vector<ghostview::InputView> inputs() {
    return {{"relay.fifo", "relay", 1234.5, 0.52, 0.3, false},
            {"mesh.fifo", "mesh", 1300, 0.61, 0.95, false},
            {"old.frames", "mesh", 0, 0, 0, true}};
}

}  // namespace

TEST_CASE("format_summary: the lines of the common example, byte for byte", "[ghost_view]") {
    Stats s = example();
    CHECK(ghostview::format_summary(s) ==
          kFirstLine + "ghost-diff: drops by PDS host: pds1.test 30, pds3.test 15\n"
                       "ghost-diff: drops by collection: app.bsky.feed.like 40, app.bsky.feed.post 5\n");
}

TEST_CASE("format_summary: no drops, no timed matches, many hosts, control characters", "[ghost_view]") {
    Stats s;
    s.mesh_events = 3;
    s.unobserved_mesh = 3;
    CHECK(ghostview::format_summary(s) ==
          "ghost-diff: 3 mesh events, 0 relay events: 0 matches, 0 drops, 3 unobserved (3 mesh, 0 relay), "
          "0 relay-only; win rate none; latency none\n");
    s.drops = 66;
    for (int i = 0; i < 12; ++i) s.drops_by_host["h" + std::to_string(i) + ".test"] = std::uint64_t(i + 1);
    s.drops_by_host[""] = 100;
    s.drops_by_collection["app.\x1b[31mx"] = 66;
    auto out = ghostview::format_summary(s);
    CHECK(out.find("ghost-diff: drops by PDS host: (unknown) 100, h11.test 12, h10.test 11, h9.test 10, h8.test 9, "
                   "h7.test 8, h6.test 7, h5.test 6, h4.test 5, h3.test 4, 3 others 6\n") != std::string::npos);
    CHECK(out.find("ghost-diff: drops by collection: app.?[31mx 66\n") != std::string::npos);
    CHECK(out.find('\x1b') == std::string::npos);
}

TEST_CASE("format_summary: rounding of percentages and milliseconds", "[ghost_view]") {
    CHECK(ghostview::ms1(1250) == "1.3");
    CHECK(ghostview::ms1(1249) == "1.2");
    CHECK(ghostview::ms1(0) == "0.0");
    CHECK(ghostview::ms1(-250) == "-0.2");
    CHECK(ghostview::ms1(-251) == "-0.3");
    CHECK(ghostview::ms1(60'000'000) == "60000.0");
    Stats s;
    s.latency.add(100);
    s.latency.add(200);
    s.latency.add(300);
    s.mesh_first = 2;  // 66.666… %
    CHECK(ghostview::format_summary(s).find("win rate 66.7% (mesh first)") != std::string::npos);
    CHECK(ghostview::commas(0) == "0");
    CHECK(ghostview::commas(999) == "999");
    CHECK(ghostview::commas(1000) == "1,000");
    CHECK(ghostview::commas(12345678) == "12,345,678");
}

TEST_CASE("render_report: the headline numbers at their ids", "[ghost_view]") {
    Stats s = example();
    ghostview::ReportMeta m{"run 7", {"relay: r.fifo", "mesh: m.fifo"}, 5'000'000, "2026-11-27 10:06:00 UTC"};
    auto h = ghostview::render_report(s, m);
    CHECK(text_of(h, "n-mesh-events") == "12,000");
    CHECK(text_of(h, "n-relay-events") == "11,500");
    CHECK(text_of(h, "n-matches") == "11,000");
    CHECK(text_of(h, "n-drops") == "45");
    CHECK(text_of(h, "n-unobserved") == "12");
    CHECK(text_of(h, "n-unobserved-mesh") == "10");
    CHECK(text_of(h, "n-unobserved-relay") == "2");
    CHECK(text_of(h, "n-relay-only") == "0");
    CHECK(text_of(h, "delivered") == "99.6");  // 11000 / 11045
    CHECK(text_of(h, "win-rate") == "93.1");
    CHECK(text_of(h, "p50") == "1.2");
    CHECK(text_of(h, "p90") == "3.4");
    CHECK(text_of(h, "p99") == "8.1");
    CHECK(text_of(h, "drops-shown") == "3");
    CHECK(h.find("The last <span id=\"drops-shown\">3</span> of 45 drops") != std::string::npos);
    for (const char* id : {"latency-hist", "winrate-time", "drops-time", "drops-host", "drops-collection", "timeline",
                           "drop-table"})
        CHECK(h.find(std::string("id=\"") + id + "\"") != std::string::npos);
    CHECK(h.find("-none\">none<") == std::string::npos);
    CHECK(h.find("<title>run 7</title>") != std::string::npos);
    CHECK(h.find("relay: r.fifo") != std::string::npos);
    CHECK(h.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(balance(h) == "");
    no_fetch(h);
}

TEST_CASE("render_report: the latency histogram spans the data in about 60 bars", "[ghost_view]") {
    Stats s;
    for (int i = 0; i < 10000; ++i) s.latency.add(1000 + (i % 400) * 10);  // 1.0 to 5.0 ms
    s.latency.add(-9'000'000);                                            // outliers
    s.latency.add(59'000'000);
    s.latency.add(90'000'000);  // past the histogram: the overflow bucket
    s.mesh_first = 10003;
    auto h = ghostview::render_report(s, {});
    auto a = h.find("id=\"latency-hist\""), b = h.find("</svg>", a);
    REQUIRE(a != std::string::npos);
    std::string svg = h.substr(a, b - a);
    std::size_t bars = 0;
    for (auto k = svg.find("class=\"bar-lat\""); k != std::string::npos; k = svg.find("class=\"bar-lat\"", k + 1)) ++bars;
    CHECK(bars >= 30);
    CHECK(bars <= 64);
    CHECK(h.find("outside: 1 below, 2 above") != std::string::npos);
    CHECK(balance(h) == "");
}

TEST_CASE("render_report: strings from the data are escaped", "[ghost_view]") {
    Stats s = example();
    const std::string did = "did:plc:<script>&\"x'";
    const std::string host = "<b>h&\"ost</b>";
    s.recent_drops[0].did = did;
    s.recent_drops[0].host = host;
    s.recent_drops[1].host = "bad\xff\xfe\x01utf8";
    s.recent_drops[1].collection = "</table><p>";
    s.drops_by_host[host] = 5;
    s.drops_by_collection["a&b<c>"] = 1;
    s.sources.push_back(SourceView{"<i>src\"</i>", Side::mesh, s.first_recv, s.last_recv, 1, 1, {}, {}});
    ghostview::ReportMeta m{"<title>&", {"mesh: <x>.fifo"}, 5'000'000, "<now>"};
    auto h = ghostview::render_report(s, m);
    CHECK(h.find("did:plc:&lt;script&gt;&amp;&quot;x&#39;") != std::string::npos);
    CHECK(h.find("&lt;b&gt;h&amp;&quot;ost&lt;/b&gt;") != std::string::npos);
    CHECK(h.find("bad\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDutf8") != std::string::npos);  // 3 × U+FFFD
    CHECK(h.find("&lt;/table&gt;&lt;p&gt;") != std::string::npos);
    CHECK(h.find("a&amp;b&lt;c&gt;") != std::string::npos);
    CHECK(h.find("&lt;i&gt;src&quot;&lt;/i&gt;") != std::string::npos);
    CHECK(h.find("<title>&lt;title&gt;&amp;</title>") != std::string::npos);
    for (const char* raw : {"<script>", "<b>h", "</table><p>", "<i>src", "<x>", "<now>", "\xff"})
        CHECK(h.find(raw) == std::string::npos);
    CHECK(balance(h) == "");
    no_fetch(h);
}

TEST_CASE("render_report: empty Stats render cleanly with none", "[ghost_view]") {
    Stats s;
    auto h = ghostview::render_report(s, {});
    CHECK(text_of(h, "n-drops") == "0");
    CHECK(text_of(h, "n-matches") == "0");
    CHECK(text_of(h, "p50") == "none");
    CHECK(text_of(h, "p99") == "none");
    CHECK(text_of(h, "win-rate") == "none");
    CHECK(text_of(h, "delivered") == "none");
    for (const char* id : {"latency-hist", "winrate-time", "drops-time", "drops-host", "drops-collection", "timeline",
                           "drop-table"})
        CHECK(text_of(h, std::string(id) + "-none") == "none");
    CHECK(h.find("<svg") == std::string::npos);
    CHECK(h.find("1970") == std::string::npos);
    CHECK(h.find("<title>ghost-diff report</title>") != std::string::npos);
    CHECK(balance(h) == "");
    no_fetch(h);
    // Matches but no drops: the drop charts say none, the others are drawn.
    Stats m = example();
    m.drops = 0;
    m.drops_by_host.clear();
    m.drops_by_collection.clear();
    m.recent_drops.clear();
    for (auto& [t, b] : m.by_time) b.drops = 0;
    auto h2 = ghostview::render_report(m, {});
    CHECK(text_of(h2, "delivered") == "100.0");
    for (const char* id : {"drops-time", "drops-host", "drops-collection", "drop-table"})
        CHECK(text_of(h2, std::string(id) + "-none") == "none");
    CHECK(h2.find("id=\"latency-hist\"") != std::string::npos);
    CHECK(balance(h2) == "");
}

TEST_CASE("display_width and html_escape", "[ghost_view]") {
    CHECK(ghostview::display_width("abc") == 3);
    CHECK(ghostview::display_width("\xE3\x83\x9B") == 2);       // ホ
    CHECK(ghostview::display_width("e\xCC\x81") == 1);          // e + combining acute
    CHECK(ghostview::display_width("\xF0\x9F\x98\x80") == 2);   // emoji
    CHECK(ghostview::display_width("a\xff") == 2);              // invalid byte: one U+FFFD
    CHECK(ghostview::display_width("\xC0\xAF") == 2);           // overlong: two U+FFFD
    CHECK(ghostview::html_escape("a<b>&\"'\t\x01") == "a&lt;b&gt;&amp;&quot;&#39;\t\xEF\xBF\xBD");
    CHECK(ghostview::utc_time(1'795'773'600'123'456) == "2026-11-27 10:00:00.123");
}

TEST_CASE("render_tui: fills cols x rows exactly, without scrolling, at any size", "[ghost_view]") {
    Stats s = example();
    s.recent_drops[1].host = "\xE3\x83\x9B\xE3\x82\xB9\xE3\x83\x88.test";  // ホスト.test: wide
    s.recent_drops[0].host = "evil\x1b[2J\x07host";
    auto in = inputs();
    in.push_back({"\xE5\x85\xA5\xE5\x8A\x9B-\xE5\x85\xA5\xE5\x8A\x9B-\xE5\x85\xA5\xE5\x8A\x9B.fifo", "mesh", 5, 0.1, 0.6, false});
    for (auto [cols, rows] : {std::pair{80, 24}, {132, 50}, {40, 10}, {20, 5}, {10, 1}, {1, 1}, {200, 3}, {7, 30}}) {
        for (bool color : {true, false}) {
            INFO(cols << "x" << rows << (color ? " color" : " no color"));
            auto frame = ghostview::render_tui(s, in, {cols, rows, color, 83.5});
            Screen sc(cols, rows);
            sc.feed(frame);
            CHECK(sc.err == "");
            CHECK(std::count(sc.placed.begin(), sc.placed.end(), true) == rows);
            CHECK(frame.find('\n') == std::string::npos);
            CHECK(frame.rfind("\x1b[H", 0) == 0);
            if (!color) CHECK_FALSE(sc.sgr);
            CHECK(frame.find("\x1b[2J") == std::string::npos);  // the host's own escape is not passed on
            CHECK(frame.find('\x07') == std::string::npos);
            if (cols >= 17) CHECK(sc.row_text(rows - 1) == "q or Ctrl-C: stop");
        }
    }
    CHECK(ghostview::render_tui(s, in, {0, 24, false, 0}).empty());
    CHECK(ghostview::render_tui(s, in, {80, 0, false, 0}).empty());
}

TEST_CASE("render_tui: the totals, the inputs and the newest drop first", "[ghost_view]") {
    Stats s = example();
    auto frame = ghostview::render_tui(s, inputs(), {80, 24, false, 3723});
    Screen sc(80, 24);
    sc.feed(frame);
    REQUIRE(sc.err == "");
    auto all = sc.all();
    INFO(all);
    CHECK(sc.row_text(0).find("ghost-diff  01:02:03") != std::string::npos);
    CHECK(all.find("matches 11,000   drops 45   unobserved 12 (10 mesh, 2 relay)   relay-only 0") != std::string::npos);
    CHECK(all.find("win rate 93.1% (mesh first)   latency p50 1.2 ms  p90 3.4 ms  p99 8.1 ms") != std::string::npos);
    CHECK(all.find("relay.fifo") != std::string::npos);
    CHECK(all.find("[###.......]  30%") != std::string::npos);
    CHECK(all.find("[##########]  95%") != std::string::npos);
    CHECK(all.find("ended") != std::string::npos);
    auto newest = all.find("did:plc:drop2"), older = all.find("did:plc:drop1");
    CHECK(newest != std::string::npos);
    CHECK(older != std::string::npos);
    CHECK(newest < older);
    CHECK(all.find("10:01:12 commit did:plc:drop2aaaaaaaaaaaaaaaaaaa pds3.test") != std::string::npos);  // newest
    // A drop row reaches the last column (the cut collection's '~' survives: no CSI K after it).
    auto drop_row = std::find_if(sc.cell.begin(), sc.cell.end(), [](const auto& row) { return row[9] == "c"; });
    REQUIRE(drop_row != sc.cell.end());
    CHECK(drop_row->back() == "~");
    CHECK_FALSE(sc.sgr);
    // With colour: SGR sequences, the same text.
    auto colored = ghostview::render_tui(s, inputs(), {80, 24, true, 3723});
    Screen sc2(80, 24);
    sc2.feed(colored);
    CHECK(sc2.err == "");
    CHECK(sc2.sgr);
    CHECK(sc2.all() == all);
}

TEST_CASE("render_tui: many inputs leave room for the totals and drops; no drops says none", "[ghost_view]") {
    Stats s = example();
    std::vector<ghostview::InputView> in;
    for (int i = 0; i < 40; ++i) in.push_back({"pds" + std::to_string(i) + ".fifo", "mesh", 10, 0.01, 0.1, i % 2 == 0});
    Screen sc(80, 24);
    sc.feed(ghostview::render_tui(s, in, {80, 24, false, 1}));
    REQUIRE(sc.err == "");
    auto all = sc.all();
    INFO(all);
    CHECK(all.find("more inputs") != std::string::npos);
    CHECK(all.find("matches 11,000") != std::string::npos);
    CHECK(all.find("did:plc:drop2") != std::string::npos);
    s.recent_drops.clear();  // Matcher::stats(false): counts without the list
    Screen sc1(80, 24);
    sc1.feed(ghostview::render_tui(s, {}, {80, 24, false, 1}));
    REQUIRE(sc1.err == "");
    CHECK(sc1.all().find("recent drops: 45 in all (not listed") != std::string::npos);
    s.drops = 0;
    Screen sc2(80, 24);
    sc2.feed(ghostview::render_tui(s, {}, {80, 24, false, 1}));
    REQUIRE(sc2.err == "");
    CHECK(sc2.all().find("recent drops: none") != std::string::npos);
    Stats empty;
    Screen sc3(80, 24);
    sc3.feed(ghostview::render_tui(empty, {}, {80, 24, false, 0}));
    CHECK(sc3.err == "");
    CHECK(sc3.all().find("win rate none") != std::string::npos);
}

TEST_CASE("render_report and render_tui: odd data renders without harm", "[ghost_view]") {
    Stats s;
    s.matches = 3;
    s.latency.add(90'000'000);   // all past the histogram's range
    s.latency.add(120'000'000);
    s.latency.add(61'000'000);
    s.mesh_first = 3;
    s.by_time[-20'000'000].matches = 1;                  // a bucket before 1970
    s.by_time[4'000'000'000'000'000].drops = 2;          // and one far away: merged, not millions of bars
    s.drops = 2;
    s.drops_by_host[""] = 2;
    s.drops_by_collection[""] = 2;
    s.sources.push_back(SourceView{"never-read", Side::mesh, 0, 0, 0, 0, {}, {}});
    s.sources.push_back(SourceView{"", Side::relay, 5'000'000, 1'000'000, 1, 1, {{9'000'000, 2'000'000}}, {}});
    Finding f;
    f.type = "identity";
    f.did = std::string(300, 'd');
    f.time = "2026-11-27T10:00:00Z";
    s.recent_drops.push_back(f);
    auto h = ghostview::render_report(s, {});
    CHECK(balance(h) == "");
    CHECK(text_of(h, "p50") == "120000.0");  // the overflow bucket reports the largest value
    auto a = h.find("id=\"drops-time\""), b = h.find("</svg>", a);
    REQUIRE(a != std::string::npos);
    auto svg = h.substr(a, b - a);
    std::size_t bars = 0;
    for (auto k = svg.find("<rect"); k != std::string::npos; k = svg.find("<rect", k + 1)) ++bars;
    CHECK(bars <= 240);
    CHECK(h.find("(unknown)") != std::string::npos);
    for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(), -5.0}) {
        std::vector<ghostview::InputView> in{{"x", "relay", bad, bad, bad, false}};
        Screen sc(80, 24);
        sc.feed(ghostview::render_tui(s, in, {80, 24, false, bad}));
        CHECK(sc.err == "");
    }
}

TEST_CASE("render_report: a run of milliseconds gets millisecond ticks; matches none timed: no win rate chart",
          "[ghost_view]") {
    Stats s;
    const std::int64_t t0 = 1'795'773'600'000'000;
    s.mesh_events = s.relay_events = s.matches = s.replayed = 1;  // one match, not timed
    s.by_time[t0].matches = 1;
    s.sources.push_back(SourceView{"pds0.test", Side::mesh, t0, t0 + 10'000, 1, 1, {}, {}});
    auto h = ghostview::render_report(s, {});
    CHECK(text_of(h, "winrate-time-none") == "none");
    CHECK(text_of(h, "win-rate") == "none");
    CHECK(h.find(">10:00:00.004</text>") != std::string::npos);  // 2 ms ticks over 10 ms
    CHECK(balance(h) == "");
}
