// tools/tap_run.h — what relay-tap and mesh-tap share around lib/net's TapEngine: the options
// common to both (--max-messages, --metrics, --ca, --ping-interval, --idle-marker, --force,
// -q, --to nats://, --partitions, --msg-id), and the run itself: writer thread to stdout or
// JetStream, event loop, metrics server, progress, the once-a-second cursor save (to the
// tool's files, or to the bucket fh_cursors with --to nats://), the clean stop
// (docs/design.md §6, §8, §12) and the exit status.
#pragma once

#include "cli.h"

#include "sovereign/net/output_queue.h"
#include "sovereign/net/tap_engine.h"
#include "sovereign/net/ws_client.h"
#include "sovereign/nats/jetstream.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tap {

/// Declares the common options on `opts`.
void add_options(cxxopts::Options& opts);

/// First thing in main, before any thread starts: one malloc arena for the process. Messages
/// are allocated on the loop thread and freed on the writer thread; with an arena per thread,
/// glibc kept the freed memory of a backpressure burst in the loop's arena, and RSS reached
/// 4 times the output queue's bound (142 MB against 64 MB with one arena, same run). Blocks
/// of 1 MiB or more are mapped on their own, so a freed queue buffer leaves the process.
void init_process();

/// --to nats://HOST:PORT/SUBJECT: every frame is published to JetStream instead of stdout (one
/// message per frame, its envelope, as `frame-cat --to nats://` publishes it), and a source's
/// cursor advances only once the stream has acknowledged its frames; the cursors live in the
/// bucket fh_cursors (key = the source's src label, value = the decimal seq).
struct NatsOut {
    bool enabled = false;
    std::string text;                ///< the --to argument
    sov::nats::Url url;              ///< server, and the subject template in `path`
    std::uint32_t partitions = 16;   ///< {pp} ranges over 0 … partitions−1
    std::string msg_id = "src-seq";  ///< Nats-Msg-Id mode (route.h msg_id_for)
    std::unique_ptr<sov::nats::Connection> conn;
    std::unique_ptr<sov::nats::KeyValue> cursors;
};

/// Reads the common options into `engine`, `ws` and `nats`; returns 0, or cli::kUsage after
/// saying why (an interval out of range, frames to a terminal without --force, a bad --to,
/// --partitions or --msg-id).
int read_options(const cxxopts::ParseResult& args, sov::net::TapEngineOptions& engine, sov::net::WsOptions& ws,
                 NatsOut& nats);

/// With nats.enabled: connects (`name` shows in the server's monitoring), checks the stream of
/// the subject (FH_SRC for fh.src.…, FH_VRD for fh.vrd.…) and opens the bucket fh_cursors.
/// 0, or cli::kSystem after saying why (server unreachable, no JetStream, no stream, no bucket).
int connect_nats(NatsOut& nats, const std::string& name);

/// Sets the cursor of every source that has one in the bucket; `found` counts them. 0, or an
/// exit status after saying why (cli::kDataRejected for a value that is not a seq, kSystem when
/// the bucket does not answer).
int load_bucket_cursors(NatsOut& nats, std::vector<sov::net::TapSource>& sources, std::size_t& found);

struct Run {
    std::vector<sov::net::TapSource> sources;
    sov::net::TapEngineOptions engine;
    sov::net::WsOptions ws;
    std::string metrics_addr;  ///< "" = no metrics server
    bool quiet = false;
    /// With enabled: frames go to JetStream, cursors to the bucket (`save` is then not called).
    NatsOut* nats = nullptr;
    /// Text added to the progress line (mesh-tap --shard: "shard K/N: H of T hosts").
    std::string progress_note;
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

/// Runs the tap until SIGINT/SIGTERM, --max-messages, a fatal error (FutureCursor in relay-tap),
/// a closed stdout or a stream that refuses the frames for good (--to nats://); then closes the connections (disconnect markers written), writes
/// everything queued, saves the cursors and prints the summary. Returns the exit status.
int run(Run& r);

}  // namespace tap
