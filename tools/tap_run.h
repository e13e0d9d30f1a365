// tools/tap_run.h — what relay-tap and mesh-tap share around lib/net's TapEngine: the options
// common to both (--max-messages, --metrics, --ca, --ping-interval, --idle-marker, --force,
// -q), and the run itself: writer thread to stdout, event loop, metrics server, progress, the
// once-a-second cursor save, the clean stop (docs/design.md §6, §8) and the exit status.
#pragma once

#include "cli.h"

#include "sovereign/net/output_queue.h"
#include "sovereign/net/tap_engine.h"
#include "sovereign/net/ws_client.h"

#include <functional>
#include <string>
#include <vector>

namespace tap {

/// Declares the common options on `opts`.
void add_options(cxxopts::Options& opts);

/// Reads the common options into `engine` and `ws`; returns 0, or cli::kUsage after saying why
/// (an interval out of range, frames to a terminal without --force).
int read_options(const cxxopts::ParseResult& args, sov::net::TapEngineOptions& engine, sov::net::WsOptions& ws);

struct Run {
    std::vector<sov::net::TapSource> sources;
    sov::net::TapEngineOptions engine;
    sov::net::WsOptions ws;
    std::string metrics_addr;  ///< "" = no metrics server
    bool quiet = false;
    /// The Prometheus text of the metrics server (its thread).
    std::function<std::string(const sov::net::TapEngine&, const sov::net::OutputQueue&)> metrics;
    /// Saves the cursors when they changed; 0 or an exit status. Called at most once a second
    /// and once after the stop (main thread).
    std::function<int(const sov::net::TapEngine&)> save;
    /// Called once when the engine has started, and once just before the stop (main thread).
    std::function<void(const sov::net::TapEngine&)> started, stopping;
    /// The summary line's text (without the tool name and the stop note).
    std::function<std::string(const sov::net::TapEngine&)> summary;
};

/// Runs the tap until SIGINT/SIGTERM, --max-messages, a fatal error (FutureCursor in relay-tap)
/// or a closed stdout; then closes the connections (disconnect markers written), writes
/// everything queued, saves the cursors and prints the summary. Returns the exit status.
int run(Run& r);

}  // namespace tap
