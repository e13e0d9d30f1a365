// sovereign/net/plc_export.h — paging a PLC directory's `GET /export` into a mirror
// (plc-sync -o DIR --url URL; docs/design.md §9, docs/protocol.md §7 "GET /export").
//
// The loop: ask for the page after the mirror's cursor, hand the body to
// plc::Mirror::ingest_page (which validates, stores and commits it atomically), repeat until a
// page comes back short (caught up). The first request is `after=0&count=1000`: a server with
// sequence numbers answers sequenced lines, and one without (the reference server before
// sequencing, which reads every `after` as a date) answers legacy lines from its first op, so
// the same request works on both. From then on the cursor's own form decides: `after=<seq>`,
// or `after=<createdAt − 1 ms>` so that the boundary millisecond is fetched again (the server
// compares `createdAt > after`, and a page may have ended inside a millisecond) and its lines
// already mirrored are dropped by op CID.
// The rate adapts (RatePolicy): 429 halves it and honours Retry-After / RateLimit-Reset, 5xx and
// network errors back off with full jitter; it never gives up. Only an answer retrying cannot
// fix (a 4xx other than 408/429, a URL curl refuses) or a mirror error stops it.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/net/http_client.h"
#include "sovereign/plc_mirror.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace sov::net {

struct ExportSyncOptions {
    std::string url;                       ///< the directory's base URL, e.g. "http://127.0.0.1:2582"
    std::size_t count = 1000;              ///< lines asked per page (servers cap it at 1000)
    std::int64_t max_time_us = 0;          ///< stop after the page in flight past this long (0: no limit)
    bool follow = false;                   ///< once caught up, keep polling every poll_us
    std::int64_t poll_us = 5'000'000;      ///< --follow: pause between polls while caught up
    RateConfig rate{};
    HttpClientOptions http{};
};

/// What a sync did, for the progress line and the summary.
struct ExportSyncStats {
    std::uint64_t requests = 0, pages = 0;
    std::uint64_t bytes = 0;         ///< body bytes of the pages committed
    std::uint64_t rate_limited = 0, server_errors = 0, network_errors = 0;
    plc::PageStats lines{};          ///< summed over the pages committed by this run
    bool caught_up = false;          ///< the last page was short: nothing more to fetch for now
    bool max_time = false;           ///< stopped by max_time_us
    bool stopped = false;            ///< stopped by the stop flag
    double rate_rps = 0;             ///< the policy's rate at the end
    std::int64_t position_us = 0;    ///< createdAt of the last line served (µs since the epoch), 0 = none yet
    std::string last_problem;        ///< the last retried failure, for progress ("429", "HTTP 503", curl's text)
};

/// The `/export` URL for the page after `cursor`: base + "/export?after=…&count=N" as described
/// above (a trailing '/' of `base` is dropped). `after` is 0 for an empty mirror, the seq when
/// the cursor has one, else createdAt − 1 ms as "YYYY-MM-DDTHH:MM:SS.mmmZ".
std::string export_url(const std::string& base, const plc::Cursor& cursor, std::size_t count);

/// Pages `/export` into `mirror` until caught up (or, with `follow`, until stopped). Checks
/// `stop` between requests and while waiting (a page being ingested is always finished and
/// committed). Calls `progress` after every request. Returns ok when caught up, stopped or
/// out of time (see `stats`); net_http_status / net_bad_url for answers retrying cannot fix,
/// net_protocol when a full page brings nothing new (more lines in one millisecond than a
/// page holds: legacy paging cannot pass it); the mirror's errors as they come. `err` names
/// the URL or the file.
Errc sync_export(plc::Mirror& mirror, const ExportSyncOptions& options, const std::atomic<bool>& stop,
                 ExportSyncStats& stats, const std::function<void(const ExportSyncStats&)>& progress, std::string& err);

}  // namespace sov::net
