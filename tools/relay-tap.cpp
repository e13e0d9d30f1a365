// relay-tap — follows one relay's (or PDS's) subscribeRepos stream and writes one frame per
// WebSocket message, with markers, resuming exactly from a cursor (docs/design.md §2, §8).
//   relay-tap wss://bsky.network --cursor-file tap.cursor | cbor-verify … | cvl-pack -o arch/
// The connection, reconnects and cursor rules are lib/net (WsLoop, Backoff, SourceCursor,
// OutputQueue); this file wires them to stdout, the cursor file, progress and the summary.
#include "cli.h"
#include "tap_run.h"

#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/net/backoff.h"
#include "sovereign/net/endpoint.h"
#include "sovereign/net/output_queue.h"
#include "sovereign/net/tap_engine.h"
#include "sovereign/net/ws_client.h"

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

using namespace sov;
using namespace sov::net;


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
    tap::init_process();
    cxxopts::Options opts("relay-tap", "relay-tap URL [--cursor N] [--cursor-file F] [options] > FILE.frames\n"
                                       "       relay-tap URL --to nats://HOST:PORT/SUBJECT [--cursor N] [options]");
    opts.add_options()
        ("url", "relay or PDS: wss://host, ws://host:port, or a bare host (wss)", cxxopts::value<std::string>())
        ("src", "label for the frames' src (default: the URL's host[:port] and path prefix)", cxxopts::value<std::string>())
        ("cursor", "start after this seq (replay from N+1)", cxxopts::value<std::string>())
        ("cursor-file", "load the cursor from F (when it exists) and save it there, at most once a second and at exit",
         cxxopts::value<std::string>());
    tap::add_options(opts);
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
    tap::Run run;
    run.engine.offline_after = UINT32_MAX;  // one source: never give up on it
    tap::NatsOut nats;
    if (int st = tap::read_options(args, run.engine, run.ws, nats)) return st;
    if (nats.enabled && !cursor_file.empty()) {
        cli::diag("--cursor-file and --to nats://: with --to the cursor lives in the bucket fh_cursors (key: the src "
                  "label); drop --cursor-file");
        return cli::kUsage;
    }
    run.sources.push_back(TapSource{*ep, src, cursor});
    std::size_t from_bucket = 0;
    if (nats.enabled) {
        if (int st = tap::connect_nats(nats, "relay-tap " + src)) return st;
        if (cursor) {
            cli::diag("--cursor " + std::to_string(*cursor) + " given: the bucket's cursor of " + src + " is not read");
        } else if (int st = tap::load_bucket_cursors(nats, run.sources, from_bucket)) {
            return st;
        }
        cursor = run.sources[0].cursor;
        run.nats = &nats;
    }
    run.metrics_addr = args.count("metrics") ? args["metrics"].as<std::string>() : "";
    run.quiet = args.count("quiet") > 0;
    run.metrics = metrics_text;
    std::int64_t saved = cursor.value_or(-1);
    run.save = [&](const TapEngine& e) -> int {
        const std::int64_t c = e.written_cursor(0);
        if (cursor_file.empty() || c < 0 || c == saved) return 0;
        std::string err;
        if (Errc ec = save_cursor(cursor_file, c, err); ec != Errc::ok) return cli::fail(ec, err);
        saved = c;
        return 0;
    };
    if (nats.enabled)
        run.started = [&](const TapEngine&) {
            cli::diag(src + ": publishing to " + nats.text + "; cursor " +
                      (cursor ? std::to_string(*cursor) + (from_bucket ? std::string(" from the bucket fh_cursors") : std::string())
                              : std::string("none (live)")));
        };
    run.summary = [&](const TapEngine& e) {
        const auto& n = e.counters();
        const std::int64_t c = e.written_cursor(0);
        return cli::count(n.messages, "message") + " (" + cli::with_commas(n.bytes) + " bytes) from " + src + "; cursor " +
               (c >= 0 ? std::to_string(c) : std::string("none")) + "; " + cli::count(n.connects, "connection") + ", " +
               cli::count(n.gaps, "gap") + ", " + cli::count(n.duplicates, "duplicate") + " skipped";
    };
    return tap::run(run);
}
