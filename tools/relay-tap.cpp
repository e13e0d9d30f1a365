// relay-tap — follows one relay's (or PDS's) subscribeRepos stream and writes one frame per
// WebSocket message, with markers, resuming exactly from a cursor (docs/design.md §2, §8).
//   relay-tap wss://bsky.network --cursor-file tap.cursor | cbor-verify … | cvl-pack -o arch/
// The connection, reconnects and cursor rules are lib/net (WsLoop, Backoff, SourceCursor,
// OutputQueue); this file wires them to stdout, the cursor file, progress and the summary.
#include "cli.h"

#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/net/backoff.h"
#include "sovereign/net/endpoint.h"
#include "sovereign/net/http_server.h"
#include "sovereign/net/output_queue.h"
#include "sovereign/net/tap_engine.h"
#include "sovereign/net/ws_client.h"

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

using namespace sov;
using namespace sov::net;

std::atomic<bool> g_stop{false};

std::optional<std::int64_t> parse_cursor(const std::string& s) {
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
    return v;
}

Errc save_cursor(const std::string& path, std::int64_t seq, std::string& err) {
    const std::string s = std::to_string(seq) + "\n";
    return file::atomic_replace(path, ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()), err);
}

std::string metrics_text(const TapEngine& e, const OutputQueue& q) {
    const std::string l = "{src=\"" + e.source(0).src + "\"}";
    std::string s;
    auto line = [&](const char* name, const char* type, const char* help, std::int64_t v) {
        s += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + l + " " +
             std::to_string(v) + "\n";
    };
    const auto& n = e.counters();
    line("relay_tap_messages_total", "counter", "Messages written to stdout.", std::int64_t(n.messages.load()));
    line("relay_tap_bytes_total", "counter", "Wire bytes of the messages written.", std::int64_t(n.bytes.load()));
    line("relay_tap_duplicates_total", "counter", "Replayed messages at or below the cursor, dropped.",
         std::int64_t(n.duplicates.load()));
    line("relay_tap_gaps_total", "counter", "Gap markers written.", std::int64_t(n.gaps.load()));
    line("relay_tap_connects_total", "counter", "Connections established.", std::int64_t(n.connects.load()));
    line("relay_tap_reconnects_total", "counter", "Reconnects scheduled.", std::int64_t(n.reconnects.load()));
    const auto st = e.state_counts();
    line("relay_tap_connected", "gauge", "1 while connected.",
         st[std::size_t(SourceState::live)] + st[std::size_t(SourceState::idle)] ? 1 : 0);
    line("relay_tap_cursor", "gauge", "Last seq written to stdout (-1: none).", e.written_cursor(0));
    line("relay_tap_queue_bytes", "gauge", "Bytes waiting for stdout.", std::int64_t(q.queued_bytes()));
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    cli::init("relay-tap");
    cxxopts::Options opts("relay-tap", "relay-tap URL [--cursor N] [--cursor-file F] [options] > FILE.frames");
    opts.add_options()
        ("url", "relay or PDS: wss://host, ws://host:port, or a bare host (wss)", cxxopts::value<std::string>())
        ("src", "label for the frames' src (default: the URL's host[:port])", cxxopts::value<std::string>())
        ("cursor", "start after this seq (replay from N+1)", cxxopts::value<std::string>())
        ("cursor-file", "load the cursor from F (when it exists) and save it there, at most once a second and at exit",
         cxxopts::value<std::string>())
        ("max-messages", "stop after writing this many messages", cxxopts::value<std::uint64_t>())
        ("metrics", "serve Prometheus metrics on ADDR (127.0.0.1:PORT)", cxxopts::value<std::string>())
        ("ca", "PEM file of certificate authorities for wss:// (default: the system's)", cxxopts::value<std::string>())
        ("ping-interval", "seconds between our pings (pong deadline: twice this)", cxxopts::value<double>()->default_value("30"))
        ("idle-marker", "seconds of silence before an idle marker (at most one per this)", cxxopts::value<double>()->default_value("60"))
        ("force", "write frames to a terminal")
        ("q,quiet", "no progress line");
    opts.parse_positional({"url"});
    opts.positional_help("URL");
    auto args = cli::parse(opts, argc, argv);
    if (!args.count("url")) {
        cli::diag("a URL is required (e.g. relay-tap wss://bsky.network); see --help");
        return cli::kUsage;
    }
    EndpointError eerr;
    auto ep = parse_endpoint(args["url"].as<std::string>(), true, eerr);
    if (!ep) {
        cli::diag(args["url"].as<std::string>(), std::string("not a relay URL: ") + std::string(to_string(eerr)));
        return cli::kUsage;
    }
    if (!ep->websocket) {  // https://host → wss://host, http → ws
        ep->websocket = true;
    }
    // A path is a prefix (a server behind a reverse proxy, or one of mesh-sim's): the tap adds
    // /xrpc/com.atproto.sync.subscribeRepos to it. No query: the tap owns the cursor.
    if (ep->path.find_first_of("?#") != std::string::npos || ep->path.find("/xrpc/") != std::string::npos) {
        cli::diag(ep->url(), "give the server's address without /xrpc/… or a query (relay-tap adds "
                             "/xrpc/com.atproto.sync.subscribeRepos?cursor=N)");
        return cli::kUsage;
    }
    while (!ep->path.empty() && ep->path.back() == '/') ep->path.pop_back();
    const std::string src = args.count("src") ? args["src"].as<std::string>() : default_label(*ep);
    if (src.empty() || src.size() > frames::kMaxSrc) {
        cli::diag("--src must be 1 to 253 bytes");
        return cli::kUsage;
    }

    std::optional<std::int64_t> cursor;
    const std::string cursor_file = args.count("cursor-file") ? args["cursor-file"].as<std::string>() : "";
    if (args.count("cursor")) {
        cursor = parse_cursor(args["cursor"].as<std::string>());
        if (!cursor) {
            cli::diag("--cursor '" + args["cursor"].as<std::string>() +
                      "': not a seq (a non-negative integer; an empty value usually means the command that "
                      "should have printed it found nothing)");
            return cli::kUsage;
        }
    } else if (!cursor_file.empty()) {
        std::vector<std::uint8_t> bytes;
        std::string err;
        Errc e = file::read_file(cursor_file, bytes, err);
        if (e == Errc::ok) {
            std::string s(bytes.begin(), bytes.end());
            while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
            cursor = parse_cursor(s);
            if (!cursor) {
                cli::diag(cursor_file, "not a cursor file (one non-negative integer expected)");
                return cli::kDataRejected;
            }
        } else if (e != Errc::io_not_found) {
            return cli::fail(e, err);
        }
    }
    if (cli::refuse_terminal(STDOUT_FILENO, args.count("force") > 0)) return cli::kUsage;
    const double ping_s = args["ping-interval"].as<double>();
    const double idle_s = args["idle-marker"].as<double>();
    if (!(idle_s >= 0.1 && idle_s <= 86400)) {
        cli::diag("--idle-marker must be between 0.1 and 86400 seconds");
        return cli::kUsage;
    }
    if (!(ping_s >= 0.05 && ping_s <= 3600)) {
        cli::diag("--ping-interval must be between 0.05 and 3600 seconds");
        return cli::kUsage;
    }
    const std::uint64_t max_messages = args.count("max-messages") ? args["max-messages"].as<std::uint64_t>() : 0;

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
    TapEngineOptions eo;
    eo.max_messages = max_messages;
    eo.idle_marker_ms = std::uint32_t(idle_s * 1000);
    eo.offline_after = UINT32_MAX;  // one source: never give up on it
    engine = std::make_unique<TapEngine>(std::vector<TapSource>{TapSource{*ep, src, cursor}}, eo, out,
                                         TapEngineCallbacks{
                                             [](const std::string& s, const std::string& text) { cli::diag(s, text); },
                                             [&](Errc e) {
                                                 done_code = int(e);
                                                 g_stop = true;
                                                 wake();
                                             }});

    WsOptions wo;
    wo.ping_interval_ms = std::uint32_t(ping_s * 1000);
    wo.pong_deadline_ms = 2 * wo.ping_interval_ms;
    if (args.count("ca")) wo.ca_file = args["ca"].as<std::string>();
    Errc code;
    std::string err;
    auto loop = WsLoop::start(*engine, wo, code, err);
    if (!loop) return cli::fail(code, err);

    std::unique_ptr<HttpServer> metrics;
    if (args.count("metrics")) {
        metrics = HttpServer::start(args["metrics"].as<std::string>(), [&](const HttpRequest& r) {
            HttpResponse a;
            if (r.path != "/metrics") {
                a.status = 404;
                a.body = "not found\n";
                a.content_type = "text/plain";
                return a;
            }
            a.content_type = "text/plain; version=0.0.4";
            a.body = metrics_text(*engine, out);
            return a;
        }, code, err);
        if (!metrics) {
            loop->stop();
            return cli::fail(code, "--metrics: " + err);
        }
    }

    loop->post([&] { engine->start(*loop); });
    cli::Progress progress(args.count("quiet") > 0);
    std::int64_t saved = cursor.value_or(-1);
    auto save = [&]() -> int {
        const std::int64_t c = engine->written_cursor(0);
        if (cursor_file.empty() || c < 0 || c == saved) return 0;
        std::string e;
        if (Errc ec = save_cursor(cursor_file, c, e); ec != Errc::ok) return cli::fail(ec, e);
        saved = c;
        return 0;
    };
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
            if (int s = save(); s != 0) {
                status = s;
                break;
            }
        }
    }
    // Stop: close the connection (its disconnect marker goes out), write everything queued,
    // save the cursor of the last frame written.
    loop->post([&] { engine->stop(); });
    loop->stop();
    out.close();
    if (metrics) metrics->stop();
    progress.finish();
    if (int s = save(); s != 0 && status == cli::kOk) status = s;
    if (done_code > 0 && status == cli::kOk) status = cli::status(Errc(done_code.load()));
    if (out_errno != 0 && out_errno != EPIPE && status == cli::kOk)
        status = cli::fail(from_errno(out_errno), std::string("stdout: ") + std::strerror(out_errno));
    const auto& n = engine->counters();
    const std::int64_t c = engine->written_cursor(0);
    cli::diag(cli::count(n.messages, "message") + " (" + cli::with_commas(n.bytes) + " bytes) from " + src + "; cursor " +
              (c >= 0 ? std::to_string(c) : std::string("none")) + "; " + cli::count(n.connects, "connection") + ", " +
              cli::count(n.gaps, "gap") + ", " + cli::count(n.duplicates, "duplicate") + " skipped" + cli::stop_note());
    return cli::stop_status(status);
}
