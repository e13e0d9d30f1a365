// The run shared by relay-tap and mesh-tap (tools/tap_run.h).
#include "tap_run.h"

#include "sovereign/net/http_server.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>

namespace tap {

using namespace sov;
using namespace sov::net;

namespace {
std::atomic<bool> g_stop{false};
}

void add_options(cxxopts::Options& opts) {
    opts.add_options()
        ("max-messages", "stop after writing this many messages", cxxopts::value<std::uint64_t>())
        ("metrics", "serve Prometheus metrics on ADDR (127.0.0.1:PORT)", cxxopts::value<std::string>())
        ("ca", "PEM file of certificate authorities for wss:// (default: the system's)", cxxopts::value<std::string>())
        ("ping-interval", "seconds between our pings (pong deadline: twice this)", cxxopts::value<double>()->default_value("30"))
        ("idle-marker", "seconds of silence before an idle marker (at most one per this)", cxxopts::value<double>()->default_value("60"))
        ("force", "write frames to a terminal")
        ("q,quiet", "no progress line");
}

int read_options(const cxxopts::ParseResult& args, TapEngineOptions& engine, WsOptions& ws) {
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
    if (cli::refuse_terminal(STDOUT_FILENO, args.count("force") > 0)) return cli::kUsage;
    ws.ping_interval_ms = std::uint32_t(ping_s * 1000);
    ws.pong_deadline_ms = 2 * ws.ping_interval_ms;
    if (args.count("ca")) ws.ca_file = args["ca"].as<std::string>();
    engine.idle_marker_ms = std::uint32_t(idle_s * 1000);
    if (args.count("max-messages")) engine.max_messages = args["max-messages"].as<std::uint64_t>();
    return 0;
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
    OutputQueue out(STDOUT_FILENO, {},
                    OutputQueue::Callbacks{
                        [&](std::uint32_t source, std::int64_t seq) { engine->on_written(source, seq); },
                        [&] { engine->resume(); },
                        [&](int err) {
                            out_errno = err;
                            g_stop = true;
                            wake();
                        }});
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

    loop->post([&] { engine->start(*loop); });
    cli::Progress progress(r.quiet);
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
            if (int s = r.save(*engine); s != 0) {
                status = s;
                break;
            }
        }
    }
    // Stop: close the connections (their disconnect markers go out), write everything queued,
    // save the cursors of the last frames written.
    if (r.stopping) r.stopping(*engine);
    loop->post([&] { engine->stop(); });
    loop->stop();
    out.close();
    if (metrics) metrics->stop();
    progress.finish();
    if (int s = r.save(*engine); s != 0 && status == cli::kOk) status = s;
    if (done_code > 0 && status == cli::kOk) status = cli::status(Errc(done_code.load()));
    if (out_errno != 0 && out_errno != EPIPE && status == cli::kOk)
        status = cli::fail(from_errno(out_errno), std::string("stdout: ") + std::strerror(out_errno));
    cli::diag(r.summary(*engine) + cli::stop_note());
    return cli::stop_status(status);
}

}  // namespace tap
