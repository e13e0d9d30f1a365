// tools/ghost_view.h — what ghost-diff shows a person, rendered from one sov::ghost::Stats
// snapshot: the summary on stderr, the HTML report (--report) and the live terminal view
// (--tui). Pure functions of their arguments (no I/O, no clock), so the unit tests reach them.
#pragma once

#include "sovereign/ghost.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ghostview {

/// The summary lines (each "ghost-diff: …\n"). The first always:
///   ghost-diff: 12000 mesh events, 11500 relay events: 11000 matches, 45 drops, 12 unobserved
///   (10 mesh, 2 relay), 0 relay-only; win rate 93.1% (mesh first); latency p50 1.2 ms, p90 3.4 ms,
///   p99 8.1 ms
/// (one line). Win rate and latency have 1 decimal, rounded half up (latency: from the
/// histogram's bucket middle, so exact to 0.1 ms); without a latency-counted match they read
/// "win rate none; latency none". With drops, two more lines: "ghost-diff: drops by PDS host:
/// pds1.test 30, pds3.test 15" and "ghost-diff: drops by collection: …" (most first, ties by
/// name; at most 10 names, then "N others M"; an unknown host is "(unknown)"). Control
/// characters in names become '?'.
std::string format_summary(const sov::ghost::Stats& s);

/// What the report says about the run besides Stats.
struct ReportMeta {
    std::string title;                  ///< <title> and <h1>; "" = "ghost-diff report"
    std::vector<std::string> inputs;    ///< e.g. "relay: relay.fifo", listed in the header
    std::int64_t window_us = 5'000'000; ///< the matcher's window (µs)
    std::string generated_utc;          ///< e.g. "2026-11-27 11:25:16 UTC", shown as given
};

/// One self-contained HTML5 document (UTF-8): inline CSS and inline SVG only — no script, no
/// external URL, font or image, no CSS url() — readable on screen and printed. Every string
/// from the data is HTML-escaped (invalid UTF-8 and control characters become U+FFFD).
/// Numbers a test can look for, as the whole text of the element with that id (counts with
/// ',' thousands separators, e.g. "12,000"; percentages and milliseconds with 1 decimal and
/// the unit outside the element; "none" when there is nothing to compute):
///   n-mesh-events n-relay-events n-matches n-drops n-unobserved n-unobserved-mesh
///   n-unobserved-relay n-relay-only n-replayed n-skipped n-duplicates n-late n-markers
///   n-pending-mesh n-pending-relay delivered (matches/(matches+drops), %) win-rate (%)
///   p50 p90 p99 (ms) drops-shown (rows in the drop table)
/// Charts: svg#latency-hist, svg#winrate-time, svg#drops-time, svg#drops-host,
/// svg#drops-collection, svg#timeline; each is replaced by p#<id>-none ("none") when it has
/// no data. The drop table is table#drop-table (or p#drop-table-none).
std::string render_report(const sov::ghost::Stats& s, const ReportMeta& m);

/// One input as the live view shows it (rates measured by the caller).
struct InputView {
    std::string name;           ///< file or FIFO name
    std::string side;           ///< "relay" or "mesh"
    double events_per_s = 0;    ///< records per second
    double mb_per_s = 0;        ///< 10^6 bytes per second
    double fill = 0;            ///< 0..1: saturation of its queue (clamped)
    bool ended = false;         ///< EOF reached
};

struct TuiOptions {
    int cols = 80, rows = 24;   ///< the terminal's size in columns (display cells) and rows
    bool color = true;          ///< false (NO_COLOR, or not wanted): no SGR sequence at all
    double elapsed_s = 0;       ///< since the start, shown in the title line
};

/// One full-screen redraw: CSI H, then every row 1..rows placed with CSI row;1 H and, when
/// shorter than the screen, ended by CSI K; no newline, so nothing scrolls and nothing is
/// written past `cols` display columns or `rows` rows (wide characters count 2). Rows: the
/// title, each input's rates and queue saturation, the totals (matches, drops, unobserved,
/// relay-only, win rate, p50/p90/p99), the recent drops (newest first, as many as fit) and,
/// last, "q or Ctrl-C: stop". Control characters in names become '?'. Empty when cols or rows
/// is below 1. Hiding the cursor and the alternate screen are the caller's business.
std::string render_tui(const sov::ghost::Stats& s, const std::vector<InputView>& in, const TuiOptions& o);

// ---- Helpers (used by the views, exposed for the tests) --------------------------------------

/// `&<>"'` escaped; invalid UTF-8 and control characters other than tab and newline → U+FFFD.
std::string html_escape(std::string_view s);
/// Terminal columns of a UTF-8 string: combining marks and zero-width characters 0, East
/// Asian wide and emoji 2, everything else 1 (an invalid byte counts as one U+FFFD).
std::size_t display_width(std::string_view s);
/// `us` since the Unix epoch as UTC "YYYY-MM-DD HH:MM:SS.mmm".
std::string utc_time(std::int64_t us);
/// `us` as milliseconds with 1 decimal, rounded half up: 1250 → "1.3", -250 → "-0.2".
std::string ms1(std::int64_t us);
/// 12000 → "12,000".
std::string commas(std::uint64_t v);

}  // namespace ghostview
