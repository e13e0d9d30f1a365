// cvl-serve — serves an archive as a relay: com.atproto.sync.subscribeRepos from any cursor,
// then the live tail of what cvl-pack is writing, tombstoned messages masked at send time
// (docs/design.md §10). The reading (sealed segments, journal, cursor rules, renumbering) is
// lib/cvl (cvl_tail.h); the server is lib/net's HttpServer; this file wires them together
// with the change notification, the metrics, the health endpoint and the summary.
#include "cli.h"

#include "sovereign/cvl.h"
#include "sovereign/cvl_tail.h"
#include "sovereign/message.h"
#include "sovereign/net/http_server.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

using namespace sov;
using namespace sov::net;

constexpr std::uint32_t kTopic = 0;  // every consumer: woken on any change of the archive
constexpr const char* kSubscribe = "/xrpc/com.atproto.sync.subscribeRepos";
constexpr std::size_t kBudget = 4096;  // records one step may pass over (filters, tombstones)

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// One subscriber. Lives as long as its stream (the step function owns it); touched only on
// the server's service thread.
struct Consumer {
    std::uint64_t id = 0;
    std::string peer_cursor;  // as asked, for the metrics label
    std::unique_ptr<cvl::Tail> tail;
    std::unique_ptr<cvl::Feed> feed;
    std::uint64_t frames = 0, bytes = 0;
    bool waiting = false;          // the last step(true) found nothing to send
    std::int64_t last_step_ms = 0; // the last time the socket took a message (or we found none)
    std::string then_close;        // after the frame being sent: close with this reason
    std::uint16_t close_code = 1000;
    bool closed = false;
};

struct Totals {
    std::uint64_t consumers = 0, frames = 0, bytes = 0, too_slow = 0, future = 0, bad_request = 0, errors = 0;
};

struct Server {
    std::string dir;
    cvl::SeqMode mode = cvl::SeqMode::ordinal;
    std::int64_t stall_ms = 60'000;
    std::size_t max_consumers = 1000;
    std::unique_ptr<cvl::Tail> head_tail;  // for the head (health, metrics, lag)
    std::map<std::uint64_t, std::weak_ptr<Consumer>> consumers;
    Totals t;
    std::uint64_t next_id = 1;

    std::uint64_t head() {
        std::uint64_t h = 0;
        std::string err;
        if (head_tail->head(h, err) != Errc::ok) cli::diag(err);
        return h;
    }
    std::size_t live() {
        std::size_t n = 0;
        for (auto it = consumers.begin(); it != consumers.end();)
            if (it->second.expired()) it = consumers.erase(it);
            else ++n, ++it;
        return n;
    }

    HttpResponse http(const HttpRequest& q) {
        HttpResponse a;
        if (q.path == "/xrpc/_health") {
            nlohmann::json j = {{"status", "ok"}, {"head", head()}, {"consumers", live()},
                                {"seq", mode == cvl::SeqMode::ordinal ? "ordinal" : "source"}};
            a.body = j.dump();
            return a;
        }
        if (q.path == "/metrics") {
            a.content_type = "text/plain; version=0.0.4";
            a.body = metrics();
            return a;
        }
        if (q.path == kSubscribe) {
            a.status = 426;
            a.headers.push_back({"Upgrade", "websocket"});
            a.body = R"({"error":"InvalidRequest","message":"subscribeRepos is a WebSocket endpoint: connect with Upgrade: websocket"})";
            return a;
        }
        a.status = 404;
        a.body = R"({"error":"NotFound","message":"cvl-serve serves /xrpc/com.atproto.sync.subscribeRepos, /xrpc/_health and /metrics"})";
        return a;
    }

    std::string metrics() {
        const std::uint64_t h = head();
        std::string s;
        auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
            s += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
                 std::to_string(v) + "\n";
        };
        line("cvl_serve_head_ordinal", "gauge", "One past the newest ordinal of the archive (sealed and journal).", h);
        line("cvl_serve_consumers", "gauge", "Subscribers connected now.", live());
        line("cvl_serve_consumers_total", "counter", "Subscriptions accepted.", t.consumers);
        line("cvl_serve_frames_total", "counter", "Messages sent.", t.frames);
        line("cvl_serve_bytes_total", "counter", "Message bytes sent.", t.bytes);
        line("cvl_serve_too_slow_total", "counter", "Subscribers closed with ConsumerTooSlow.", t.too_slow);
        line("cvl_serve_future_cursor_total", "counter", "Subscriptions refused with FutureCursor.", t.future);
        line("cvl_serve_errors_total", "counter", "Subscribers closed by an archive error.", t.errors);
        s += "# HELP cvl_serve_consumer_lag Ordinals between a subscriber's position and the head.\n"
             "# TYPE cvl_serve_consumer_lag gauge\n";
        std::string bytes_lines =
            "# HELP cvl_serve_consumer_bytes_total Message bytes sent to a subscriber.\n"
            "# TYPE cvl_serve_consumer_bytes_total counter\n";
        for (auto& [id, w] : consumers)
            if (auto c = w.lock()) {
                const std::string l = "{consumer=\"" + std::to_string(id) + "\"}";
                const std::uint64_t pos = c->feed ? c->feed->position() : h;
                s += "cvl_serve_consumer_lag" + l + " " + std::to_string(h > pos ? h - pos : 0) + "\n";
                bytes_lines += "cvl_serve_consumer_bytes_total" + l + " " + std::to_string(c->bytes) + "\n";
            }
        return s + bytes_lines;
    }

    // A stream that sends one error frame, then closes with `code`.
    static WsAnswer refuse(std::string_view error, std::string_view message, std::uint16_t code) {
        WsAnswer a;
        a.binary = true;
        auto sent = std::make_shared<bool>(false);
        auto frame = std::make_shared<std::string>(msg::error_frame(error, message));
        auto reason = std::make_shared<std::string>(error);
        a.step = [sent, frame, reason, code](bool can_send) {
            WsStep s;
            if (!can_send) return s;
            if (!*sent) {
                *sent = true;
                s.kind = WsStep::Kind::send;
                s.data = *frame;
                return s;
            }
            s.kind = WsStep::Kind::close;
            s.code = code;
            s.data = *reason;
            return s;
        };
        return a;
    }

    WsAnswer subscribe(const HttpRequest& q) {
        if (q.path != kSubscribe) {
            ++t.bad_request;
            return refuse("InvalidRequest", "no such endpoint: " + q.path, 1008);
        }
        if (live() >= max_consumers) return refuse("ConsumerLimit", "too many subscribers (--max-consumers)", 1013);
        std::optional<std::int64_t> cursor;
        if (const std::string* c = q.param("cursor")) {
            std::int64_t v = 0;
            auto [p, ec] = std::from_chars(c->data(), c->data() + c->size(), v);
            if (c->empty() || ec != std::errc() || p != c->data() + c->size()) {
                ++t.bad_request;
                return refuse("InvalidRequest", "cursor must be an integer", 1008);
            }
            cursor = v;  // negative: from the start (find_start), as the reference PDS does
        }
        cvl::FeedFilter filter;
        for (const auto& [k, v] : q.params) {
            if (k == "wantedDids" && !v.empty()) filter.dids.insert(v);
            if (k == "wantedCollections" && !v.empty()) filter.collections.insert(v);
        }
        auto c = std::make_shared<Consumer>();
        std::string err;
        Errc code;
        c->tail = cvl::Tail::open(dir, err, &code);
        if (!c->tail) {
            ++t.errors;
            cli::diag(err);
            return refuse("ArchiveError", err, 1011);
        }
        cvl::StartPoint sp;
        if (Errc e = cvl::find_start(*c->tail, mode, cursor, sp, err); e != Errc::ok) {
            ++t.errors;
            cli::diag(err);
            return refuse("ArchiveError", err, 1011);
        }
        if (sp.future) {
            ++t.future;
            return refuse("FutureCursor", "Cursor in the future.", 1008);
        }
        c->id = next_id++;
        c->feed = std::make_unique<cvl::Feed>(*c->tail, mode, sp.ord, std::move(filter));
        c->last_step_ms = now_ms();
        consumers[c->id] = c;
        ++t.consumers;
        WsAnswer a;
        a.binary = true;
        a.topic = kTopic;
        a.step = [this, c](bool can_send) { return step(*c, can_send); };
        return a;
    }

    WsStep step(Consumer& c, bool can_send) {
        WsStep s;
        const std::int64_t now = now_ms();
        if (!can_send) {
            // A wake (the archive changed, or the once-a-second tick). A subscriber whose socket
            // has taken nothing for stall_ms while messages wait for it is too slow.
            if (!c.waiting && !c.closed && now - c.last_step_ms > stall_ms) {
                ++t.too_slow;
                c.closed = true;
                s.kind = WsStep::Kind::close;
                s.code = 1008;
                s.data = "ConsumerTooSlow";
            }
            return s;
        }
        c.last_step_ms = now;
        if (!c.then_close.empty()) {
            s.kind = WsStep::Kind::close;
            s.code = c.close_code;
            s.data = c.then_close;
            return s;
        }
        cvl::FeedItem it = c.feed->next(kBudget);
        switch (it.kind) {
        case cvl::FeedItem::Kind::busy:
            s.kind = WsStep::Kind::again;  // the other subscribers first
            return s;
        case cvl::FeedItem::Kind::message:
            c.waiting = false;
            ++c.frames;
            c.bytes += it.wire.size();
            ++t.frames;
            t.bytes += it.wire.size();
            s.kind = WsStep::Kind::send;
            // Valid until the next feed->next(), i.e. the next step: sent without a copy.
            s.view = std::string_view(reinterpret_cast<const char*>(it.wire.data()), it.wire.size());
            return s;
        case cvl::FeedItem::Kind::wait:
            c.waiting = true;
            return s;
        case cvl::FeedItem::Kind::error:
            ++t.errors;
            cli::diag("subscriber " + std::to_string(c.id) + ": " + it.err);
            c.then_close = "ArchiveError";
            c.close_code = 1011;
            s.kind = WsStep::Kind::send;
            s.data = msg::error_frame("ArchiveError", it.err + " (ordinal " + std::to_string(it.ord) + " cannot be served)");
            return s;
        }
        return s;
    }
};

}  // namespace

int main(int argc, char** argv) {
    cli::init("cvl-serve");
    cxxopts::Options opts("cvl-serve", "cvl-serve DIR [--listen ADDR:PORT] [--seq ordinal|source] [options]");
    opts.add_options()
        ("dir", "the archive (cvl-pack -o DIR)", cxxopts::value<std::string>())
        ("listen", "address and port to serve on (0.0.0.0:PORT: every interface)",
         cxxopts::value<std::string>()->default_value("127.0.0.1:2470"))
        ("seq", "the seq subscribers see: ordinal (ordinal + 1, any archive) or source (the archived messages' own "
                "seq, an archive of one source)", cxxopts::value<std::string>()->default_value("ordinal"))
        ("stall-timeout", "seconds a subscriber's socket may take nothing while messages wait, before "
                          "ConsumerTooSlow", cxxopts::value<double>()->default_value("60"))
        ("max-consumers", "subscribers served at once; more are refused", cxxopts::value<std::size_t>()->default_value("1000"))
        ("q,quiet", "no summary line");
    opts.parse_positional({"dir"});
    opts.positional_help("DIR");
    auto args = cli::parse(opts, argc, argv);
    if (!args.count("dir")) {
        cli::diag("an archive directory is required (cvl-serve DIR); see --help");
        return cli::kUsage;
    }
    Server sv;
    sv.dir = args["dir"].as<std::string>();
    const std::string seq = args["seq"].as<std::string>();
    if (seq == "source") sv.mode = cvl::SeqMode::source;
    else if (seq != "ordinal") {
        cli::diag("--seq " + seq + ": expected ordinal or source");
        return cli::kUsage;
    }
    const double stall = args["stall-timeout"].as<double>();
    if (!(stall > 0)) {
        cli::diag("--stall-timeout must be a positive number of seconds");
        return cli::kUsage;
    }
    sv.stall_ms = std::int64_t(stall * 1000);
    sv.max_consumers = args["max-consumers"].as<std::size_t>();
    const bool quiet = args.count("quiet") > 0;

    std::string err;
    Errc code;
    sv.head_tail = cvl::Tail::open(sv.dir, err, &code);
    if (!sv.head_tail) return cli::fail(code, err);
    auto watch = cvl::Watch::open(sv.dir, err, &code);
    if (!watch) return cli::fail(code, err);
    std::uint64_t head = 0;
    if (Errc e = sv.head_tail->head(head, err); e != Errc::ok) return cli::fail(e, err);

    std::atomic<bool> stop{false};
    cli::install_stop_handler(stop);
    auto server = HttpServer::start_public(
        args["listen"].as<std::string>(), [&sv](const HttpRequest& q) { return sv.http(q); }, code, err,
        [&sv](const HttpRequest& q) { return sv.subscribe(q); });
    if (!server) return cli::fail(code, err);
    if (!quiet)
        cli::diag("serving " + sv.dir + " (" + cli::count(head, "message") + " so far, seq = " + seq + ") on " +
                  args["listen"].as<std::string>().substr(0, args["listen"].as<std::string>().rfind(':')) + ":" +
                  std::to_string(server->port()));

    // Changes of the archive wake every subscriber; a tick each second lets stalled ones be
    // found and tombstones set meanwhile take effect for waiting ones.
    std::thread watcher([&] {
        while (!stop.load()) {
            watch->wait(1000);
            if (!stop.load()) server->wake(kTopic);
        }
    });
    while (!stop.load()) ::usleep(100'000);
    watch->close();
    watcher.join();
    server->stop();
    if (!quiet)
        cli::diag("served " + cli::count(sv.t.frames, "message") + " (" + cli::with_commas(sv.t.bytes) + " bytes) to " +
                  cli::count(sv.t.consumers, "subscriber") + "; " + std::to_string(sv.t.too_slow) + " too slow, " +
                  std::to_string(sv.t.future) + " FutureCursor, " + std::to_string(sv.t.errors) + " archive errors" +
                  cli::stop_note());
    return cli::stop_status(0);
}
