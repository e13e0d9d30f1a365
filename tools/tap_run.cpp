// The run shared by relay-tap and mesh-tap (tools/tap_run.h).
#include "tap_run.h"

#include "sovereign/nats/frame_publisher.h"
#include "sovereign/net/http_server.h"

#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace tap {

using namespace sov;
using namespace sov::net;

namespace {
std::atomic<bool> g_stop{false};

// --to nats://: a batch the stream keeps refusing while we are connected (no stream holds the
// subject, a message it will not take) ends the tap after this long; a server away is waited
// for (the frames stay queued, the sockets pause), up to this long after a stop is asked.
constexpr double kRefusedGraceS = 20;
constexpr double kStopGraceS = 30;

double mono_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void add_options(cxxopts::Options& opts) {
    opts.add_options()
        ("max-messages", "stop after writing this many messages", cxxopts::value<std::uint64_t>())
        ("metrics", "serve Prometheus metrics on ADDR (127.0.0.1:PORT)", cxxopts::value<std::string>())
        ("ca", "PEM file of certificate authorities for wss:// (default: the system's)", cxxopts::value<std::string>())
        ("ping-interval", "seconds between our pings (pong deadline: twice this)", cxxopts::value<double>()->default_value("30"))
        ("idle-marker", "seconds of silence before an idle marker (at most one per this)", cxxopts::value<double>()->default_value("60"))
        ("force", "write frames to a terminal")
        ("q,quiet", "no progress line")
        ("to", "publish every frame to NATS JetStream instead of stdout: nats://HOST:PORT/SUBJECT (SUBJECT may hold "
               "{pp}, the partition, and {src}); cursors then live in the bucket fh_cursors", cxxopts::value<std::string>())
        ("partitions", "with --to nats://: the number of partitions {pp} ranges over (1-100)",
         cxxopts::value<std::uint32_t>()->default_value("16"))
        ("msg-id", "with --to nats://: the Nats-Msg-Id of each message: src-seq ('SRC SEQ': the stream drops a frame "
                   "it already holds), match-key or none", cxxopts::value<std::string>()->default_value("src-seq"));
}

int read_options(const cxxopts::ParseResult& args, TapEngineOptions& engine, WsOptions& ws, NatsOut& nats) {
    const double ping_s = args["ping-interval"].as<double>();
    if (!(ping_s >= 0.05 && ping_s <= 3600)) {
        cli::diag("--ping-interval must be between 0.05 and 3600 seconds");
        return cli::kUsage;
    }
    const double idle_s = args["idle-marker"].as<double>();
    if (!(idle_s >= 0.1 && idle_s <= 86400)) {
        cli::diag("--idle-marker must be between 0.1 and 86400 seconds");
        return cli::kUsage;
    }
    if (args.count("to")) {
        nats.text = args["to"].as<std::string>();
        std::string why;
        if (nats.text.rfind("nats://", 0) != 0) {
            cli::diag("--to", "'" + nats.text + "': a nats://HOST:PORT/SUBJECT address (without --to, frames go to stdout)");
            return cli::kUsage;
        }
        if (!sov::nats::parse_url(nats.text, nats.url, why)) {
            cli::diag("--to", why);
            return cli::kUsage;
        }
        if (nats.url.path.empty() || nats.url.path.find_first_of(" \t") != std::string::npos || !nats.url.query.empty()) {
            cli::diag("--to", "no subject in '" + nats.text + "' (e.g. nats://127.0.0.1:4222/fh.src.pds.{pp})");
            return cli::kUsage;
        }
        nats.partitions = args["partitions"].as<std::uint32_t>();
        if (nats.partitions < 1 || nats.partitions > 100) {
            cli::diag("--partitions must be between 1 and 100");
            return cli::kUsage;
        }
        nats.msg_id = args["msg-id"].as<std::string>();
        if (nats.msg_id != "src-seq" && nats.msg_id != "match-key" && nats.msg_id != "none") {
            cli::diag("--msg-id must be src-seq, match-key or none");
            return cli::kUsage;
        }
        nats.enabled = true;
    } else {
        for (const char* o : {"partitions", "msg-id"})
            if (args.count(o)) {
                cli::diag(std::string("--") + o + " works only with --to nats://");
                return cli::kUsage;
            }
        if (cli::refuse_terminal(STDOUT_FILENO, args.count("force") > 0)) return cli::kUsage;
    }
    ws.ping_interval_ms = std::uint32_t(ping_s * 1000);
    ws.pong_deadline_ms = 2 * ws.ping_interval_ms;
    if (args.count("ca")) ws.ca_file = args["ca"].as<std::string>();
    engine.idle_marker_ms = std::uint32_t(idle_s * 1000);
    if (args.count("max-messages")) engine.max_messages = args["max-messages"].as<std::uint64_t>();
    return 0;
}

int connect_nats(NatsOut& nats, const std::string& name) {
    namespace nt = sov::nats;
    std::string why;
    nats.conn = nt::Connection::open(nats.url.server, name, why);
    if (!nats.conn) {
        cli::diag("--to", why);
        return cli::kSystem;
    }
    // The streams of the design (§12): refuse at once when the one that holds the subject is
    // missing or not set up for frames, rather than at the first publish.
    const std::string& subj = nats.url.path;
    const char* stream = subj.rfind("fh.src.", 0) == 0 ? nt::kSrcStream : subj.rfind("fh.vrd.", 0) == 0 ? nt::kVrdStream : nullptr;
    if (stream && !nats.conn->check_stream(stream, why)) {
        cli::diag("--to", nats.url.server + ": " + why);
        return cli::kSystem;
    }
    nats.cursors = nt::KeyValue::open(*nats.conn, nt::kCursorBucket, why);
    if (!nats.cursors) {
        cli::diag("--to", nats.url.server + ": " + why);
        return cli::kSystem;
    }
    return 0;
}

int load_bucket_cursors(NatsOut& nats, std::vector<TapSource>& sources, std::size_t& found) {
    found = 0;
    for (TapSource& s : sources) {
        std::string why;
        const auto v = nats.cursors->get(s.src, why);
        if (!why.empty()) {
            cli::diag(nats.url.server, std::string("bucket ") + sov::nats::kCursorBucket + ": " + why);
            return cli::kSystem;
        }
        if (!v) continue;
        std::int64_t seq = -1;
        const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), seq);
        if (ec != std::errc() || p != v->data() + v->size() || seq < 0) {
            cli::diag(nats.url.server, std::string("bucket ") + sov::nats::kCursorBucket + ": key '" + s.src + "': '" +
                                           v->substr(0, 40) + "' is not a cursor (a non-negative decimal seq)");
            return cli::kDataRejected;
        }
        s.cursor = seq;
        ++found;
    }
    return 0;
}

void init_process() {
    ::mallopt(M_ARENA_MAX, 1);
    // A fixed threshold (which turns off glibc's sliding one): every block of 1 MiB or more is
    // its own mapping, returned to the system when freed. With the sliding threshold, the
    // output queue's grown buffers landed in the heap, and a catch-up after a stop left RSS at
    // 2-3 times the queue's bound.
    ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

int run(Run& r) {
    cli::install_stop_handler(g_stop);
    std::atomic<int> out_errno{0};
    std::atomic<int> done_code{-1};
    std::mutex mu;
    std::condition_variable cv;
    auto wake = [&] {
        std::lock_guard lock(mu);
        cv.notify_all();
    };
    std::unique_ptr<TapEngine> engine;
    OutputQueue::Callbacks callbacks{
        [&](std::uint32_t source, std::int64_t seq) { engine->on_written(source, seq); },
        [&] { engine->resume(); },
        [&](int err) {
            out_errno = err;
            g_stop = true;
            wake();
        }};
    // --to nats://: the writer thread publishes each batch and waits until the stream has
    // acknowledged all of it; only then do the batch's checkpoints move the cursors.
    NatsOut* nats = r.nats && r.nats->enabled ? r.nats : nullptr;
    std::unique_ptr<sov::nats::FramePublisher> publisher;
    std::string nats_failure;            // writer thread, read after close()
    std::atomic<double> stop_asked_s{0};  // when the stop began (0: running)
    std::uint64_t batches_again = 0;      // writer thread: batches published again after a failure
    auto write_nats = [&](const std::vector<ByteView>& pieces) -> int {
        std::string why;
        double failing_since = 0;
        for (;;) {
            bool ok = true;
            for (const ByteView& p : pieces)
                if (!publisher->publish_records(p, why)) {
                    ok = false;
                    break;
                }
            if (ok) {
                ok = publisher->flush(why);
            } else {
                std::string ignored;  // settles what was sent before the failure; `why` says that
                publisher->flush(ignored);
            }
            if (ok) {
                if (failing_since > 0) cli::diag(nats->url.server, "frames acknowledged again");
                return 0;
            }
            // Not all stored: publish the whole batch again (the stream drops, by Nats-Msg-Id, what
            // it already holds), unless the server keeps refusing while connected, or a stop waits.
            const double now = mono_s();
            if (failing_since == 0) failing_since = now;
            const bool up = nats->conn->connected();
            const double stop_at = stop_asked_s.load();
            if ((up && now - failing_since >= kRefusedGraceS) || (stop_at > 0 && now - stop_at >= kStopGraceS)) {
                nats_failure = why;
                return EIO;
            }
            ++batches_again;
            if (now == failing_since)
                cli::diag(nats->url.server, why + (up ? "; publishing the batch again" : "; the server is away: frames "
                                                       "held (reading pauses when the queue is full) until it is back"));
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
    };
    std::unique_ptr<OutputQueue> out_ptr;
    if (nats) {
        // retry 0: a batch not all stored is published again whole, by write_nats, in its order
        // (Publisher's own retries would re-publish the missing messages in no set order).
        publisher = std::make_unique<sov::nats::FramePublisher>(*nats->conn, nats->url.path, nats->partitions, nats->msg_id, 0);
        out_ptr = std::make_unique<OutputQueue>(OutputQueue::BatchWriter(write_nats), OutputQueue::Options{}, callbacks);
    } else {
        out_ptr = std::make_unique<OutputQueue>(STDOUT_FILENO, OutputQueue::Options{}, callbacks);
    }
    OutputQueue& out = *out_ptr;
    engine = std::make_unique<TapEngine>(std::move(r.sources), r.engine, out,
                                         TapEngineCallbacks{
                                             [](const std::string& s, const std::string& text) { cli::diag(s, text); },
                                             [&](Errc e) {
                                                 done_code = int(e);
                                                 g_stop = true;
                                                 wake();
                                             }});
    Errc code;
    std::string err;
    auto loop = WsLoop::start(*engine, r.ws, code, err);
    if (!loop) return cli::fail(code, err);

    std::unique_ptr<HttpServer> metrics;
    if (!r.metrics_addr.empty()) {
        metrics = HttpServer::start(r.metrics_addr, [&](const HttpRequest& q) {
            HttpResponse a;
            if (q.path != "/metrics") {
                a.status = 404;
                a.body = "not found\n";
                a.content_type = "text/plain";
                return a;
            }
            a.content_type = "text/plain; version=0.0.4";
            a.body = r.metrics(*engine, out);
            return a;
        }, code, err);
        if (!metrics) {
            loop->stop();
            return cli::fail(code, "--metrics: " + err);
        }
    }
    if (r.started) r.started(*engine);

    // Cursors: the tool's own save, or (--to nats://) the changed ones into the bucket. A bucket
    // that does not answer mid-run is said once and tried again each second (the cursors only
    // lag); at the stop it is tried for kStopGraceS, then the run fails.
    std::vector<std::int64_t> bucket_saved;
    if (nats)
        for (std::size_t i = 0; i < engine->source_count(); ++i) bucket_saved.push_back(engine->written_cursor(i));
    bool bucket_failing = false;
    auto save = [&](bool final) -> int {
        if (!nats) return r.save(*engine);
        const double start = mono_s();
        for (;;) {
            std::string why;
            for (std::size_t i = 0; i < engine->source_count() && why.empty(); ++i) {
                const std::int64_t c = engine->written_cursor(i);
                if (c < 0 || c == bucket_saved[i]) continue;
                if (nats->cursors->put(engine->source(i).src, std::to_string(c), why)) bucket_saved[i] = c;
            }
            if (why.empty()) {
                if (bucket_failing) cli::diag(nats->url.server, "cursors saved to the bucket again");
                bucket_failing = false;
                return 0;
            }
            if (!bucket_failing) cli::diag(nats->url.server, std::string("bucket ") + sov::nats::kCursorBucket + ": " + why +
                                                                 "; the cursors are saved again when it answers");
            bucket_failing = true;
            if (!final) return 0;
            if (mono_s() - start >= kStopGraceS)
                return cli::fail(Errc::io_error, std::string("bucket ") + sov::nats::kCursorBucket + ": cursors not saved: " + why);
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
    };

    loop->post([&] { engine->start(*loop); });
    cli::Progress progress(r.quiet);
    progress.set_note(r.progress_note);
    int status = cli::kOk;
    std::int64_t last_save_us = 0;
    while (!g_stop) {
        {
            std::unique_lock lock(mu);
            cv.wait_for(lock, std::chrono::milliseconds(250));
        }
        progress.update(engine->counters().messages, engine->counters().bytes);
        const std::int64_t now = cli::now_micros();
        if (now - last_save_us >= 1'000'000) {
            last_save_us = now;
            if (int s = save(false); s != 0) {
                status = s;
                break;
            }
        }
    }
    // Stop: close the connections (their disconnect markers go out), write everything queued,
    // save the cursors of the last frames written.
    if (r.stopping) r.stopping(*engine);
    stop_asked_s = mono_s();
    loop->post([&] { engine->stop(); });
    loop->stop();
    out.close();
    if (metrics) metrics->stop();
    progress.finish();
    if (int s = save(true); s != 0 && status == cli::kOk) status = s;
    if (done_code > 0 && status == cli::kOk) status = cli::status(Errc(done_code.load()));
    if (nats && !nats_failure.empty() && status == cli::kOk)
        status = cli::fail(Errc::io_error, "--to " + nats->text + ": frames not stored: " + nats_failure +
                                               "; the cursors stay at the last frames the stream acknowledged");
    else if (out_errno != 0 && out_errno != EPIPE && status == cli::kOk)
        status = cli::fail(from_errno(out_errno), std::string("stdout: ") + std::strerror(out_errno));
    std::string published;
    if (publisher) {
        const auto& p = publisher->publisher();
        published = "; to " + nats->url.server + ": " + cli::with_commas(p.stored()) + " frames stored, " +
                    cli::with_commas(p.duplicates()) + " already held" +
                    (batches_again ? " (" + cli::count(batches_again, "batch", "batches") + " published again)" : "") +
                    p.order_note();
        publisher.reset();
    }
    cli::diag(r.summary(*engine) + published + cli::stop_note());
    return cli::stop_status(status);
}

}  // namespace tap
