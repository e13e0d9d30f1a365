// mesh-sim — simulated AT Protocol traffic. `gen`: a frame stream of realistic, validly
// signed messages plus their DID documents (model: man/mesh-sim.1.md). `stats`: the shape of
// a frame stream (sizes, proof nodes, DID repeats, zstd ratios) to compare traffic with a capture.
// `serve --plc`: a simulated PLC directory on loopback (sim::PlcService over net::HttpServer),
// with injected faults; `plc-truth`: that directory's ground truth as JSON lines.
// `serve --pdses N [--relay]`: simulated PDSes and a relay (sim::Network over net::HttpServer),
// fed live by a Generator on its own thread, with injected faults and a ground-truth file.
#include "cli.h"

#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/net/http_server.h"
#include "sovereign/net/tls_pki.h"
#include "sovereign/sim.h"
#include "sovereign/sim_net.h"
#include "sovereign/sim_plc.h"
#include "sovereign/verify.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <optional>
#include <new>
#include <thread>
#include <sys/resource.h>
#include <unistd.h>

namespace {

// Builds the generator in `holder`; false (after saying so) when its accounts do not fit memory.
bool make_generator(const sov::sim::Options& o, std::optional<sov::sim::Generator>& holder) {
    try {
        holder.emplace(o);
    } catch (const std::bad_alloc&) {
        cli::diag("out of memory for " + cli::with_commas(o.accounts) + " accounts (try fewer --accounts)");
        return false;
    }
    return true;
}

// The generator's DID documents (one JSON object and a newline), written to PATH.tmp piece by
// piece (millions of accounts need not fit memory as one JSON value), synced and renamed into
// place, so a reader never sees the file missing, partial or stale.
sov::Errc write_did_docs(const sov::sim::Generator& gen, const std::string& path, std::string& err) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = tmp + ": " + std::strerror(errno);
        return sov::Errc::io_error;
    }
    auto put = [&](std::string_view s) { return sov::file::write_all(fd, sov::as_bytes(s), tmp, err); };
    sov::Errc e = gen.write_did_docs(put);
    if (e == sov::Errc::ok) e = put("\n");
    if (e == sov::Errc::ok && ::fsync(fd) != 0) {
        err = tmp + ": " + std::strerror(errno);
        e = sov::Errc::io_error;
    }
    if (::close(fd) != 0 && e == sov::Errc::ok) {
        err = tmp + ": " + std::strerror(errno);
        e = sov::Errc::io_error;
    }
    if (e == sov::Errc::ok) e = sov::file::rename(tmp, path, err);
    if (e != sov::Errc::ok) {
        ::unlink(tmp.c_str());
        return e;
    }
    const auto slash = path.find_last_of('/');
    return sov::file::fsync_dir(slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash), err);
}

std::atomic<bool> g_stop{false};

constexpr std::size_t kMaxAccounts = 10'000'000;  // ~54 bytes each in memory (man/mesh-sim.1.md, Memory)
constexpr std::int64_t kMinStart = 946684800000000;  // 2000-01-01T00:00:00Z
constexpr std::int64_t kTidLimit = std::int64_t(1) << 53;  // TIDs hold 53 bits of µs (year 2255)
constexpr std::int64_t kMargin = 31LL * 86400 * 1000000;  // records cite times up to 30 days back

constexpr std::uint64_t kServeRepoBudget = 256ull << 20;  // serve --pdses without --repo-budget
constexpr std::size_t kMaxPlcAccounts = 2'000'000;  // ~3 ops of ~700 bytes each, in memory

// Options of `serve` / `plc-truth` only.
const std::initializer_list<const char*> kPlcOnly = {"plc", "listen", "fault-429-above", "fault-5xx",
                                                     "fault-slow", "fault-drop", "legacy-only"};

bool share(double v) { return v >= 0 && v <= 1; }

// Options of `serve --pdses` only.
const std::initializer_list<const char*> kNetOnly = {
    "pdses", "relay", "pds-window", "relay-window", "linger", "truth", "relay-drop", "relay-drop-host",
    "relay-drop-collection", "relay-delay-ms", "pds-restart-every", "cut-every", "accept-drop", "pool", "too-slow",
    "tls"};

// The simulated PDSes named one by one in the --tls certificate (pds0.test … pds<k-1>.test),
// at most: beyond that the certificate would grow by ~15 bytes per host on every handshake, and
// clients address the hosts by path (/pds/<i>) on 127.0.0.1 or localhost anyway.
constexpr std::size_t kTlsNamedPdses = 100;

std::int64_t wall_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Where a request goes: PDS i, the relay, or nowhere; and the XRPC method. By Host header
// (pds<i>.test, relay.test) or by path prefix (/pds/<i>/xrpc/…, /relay/xrpc/…).
struct Route {
    std::optional<std::size_t> pds;
    bool relay = false;
    std::string method;
    bool ok() const { return pds || relay; }
};

Route route(const sov::sim::Network& net, const sov::net::HttpRequest& r) {
    Route out;
    std::string_view path = r.path;
    std::string_view host = std::string_view(r.host).substr(0, r.host.find(':'));
    if (auto i = net.host_index(host)) out.pds = i;
    else if (host == "relay.test" && net.relay()) out.relay = true;
    else if (path.starts_with("/pds/")) {
        std::string_view rest = path.substr(5);
        std::string_view num = rest.substr(0, rest.find('/'));
        if (auto i = net.host_index("pds" + std::string(num) + ".test")) out.pds = i;
        path = rest.substr(num.size());
    } else if (path.starts_with("/relay/") && net.relay()) {
        out.relay = true;
        path = path.substr(6);
    }
    if (!path.starts_with("/xrpc/")) return Route{};
    out.method = std::string(path.substr(6));
    return out;
}

std::optional<std::uint64_t> parse_u64(const std::string* s) {
    if (!s) return std::nullopt;
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (s->empty() || ec != std::errc() || p != s->data() + s->size()) return std::nullopt;
    return v;
}

sov::net::HttpResponse json_answer(int status, const nlohmann::json& body) {
    sov::net::HttpResponse h;
    h.status = status;
    h.body = body.dump();
    return h;
}

sov::net::HttpResponse xrpc_error(int status, std::string_view error, std::string_view message) {
    return json_answer(status, {{"error", error}, {"message", message}});
}

// The HTTP (non-WebSocket) XRPC answers of the simulated PDSes and relay.
sov::net::HttpResponse answer_xrpc(const sov::sim::Network& net, const sov::net::HttpRequest& r) {
    Route rt = route(net, r);
    if (!rt.ok()) return xrpc_error(404, "NotFound", "no such host or path: " + r.path);
    if (rt.method == "com.atproto.sync.subscribeRepos")
        return xrpc_error(426, "InvalidRequest", "subscribeRepos needs a WebSocket upgrade");
    std::size_t limit = 500;
    if (const std::string* l = r.param("limit")) {
        auto v = parse_u64(l);
        if (!v || *v < 1 || *v > 1000) return xrpc_error(400, "InvalidRequest", "limit must be in 1..1000");
        limit = std::size_t(*v);
    }
    const std::string* cursor = r.param("cursor");
    if (rt.pds && rt.method == "com.atproto.server.describeServer") return json_answer(200, net.describe_server(*rt.pds));
    if (rt.pds && rt.method == "com.atproto.sync.listRepos")
        return json_answer(200, net.list_repos(*rt.pds, cursor ? *cursor : "", limit));
    if (rt.relay && rt.method == "com.atproto.sync.listHosts")
        return json_answer(200, net.list_hosts(cursor ? *cursor : "", limit));
    return xrpc_error(501, "MethodNotImplemented", "method not implemented: " + rt.method);
}

// `mesh-sim serve --pdses N [--relay]`.
int run_net(const cxxopts::ParseResult& args) {
    static const std::initializer_list<const char*> kNot = {
        "plc", "fault-429-above", "fault-5xx", "fault-slow", "fault-drop", "legacy-only", "plc-accounts", "plc-seed",
        "plc-start", "src-from-pds", "replay-repo", "output", "src", "window", "force", "start"};
    for (const char* o : kNot)
        if (args.count(o)) {
            cli::diag(std::string("--") + o + " is not an option of 'serve --pdses'");
            return cli::kUsage;
        }
    sov::sim::NetOptions no;
    no.pdses = args["pdses"].as<std::size_t>();
    no.relay = args.count("relay") > 0;
    if (args.count("pds-window")) no.pds_window = args["pds-window"].as<std::size_t>();
    if (args.count("relay-window")) no.relay_window = args["relay-window"].as<std::size_t>();
    if (args.count("relay-drop")) no.relay_drop = args["relay-drop"].as<double>();
    if (args.count("relay-delay-ms")) no.relay_delay_ms = args["relay-delay-ms"].as<double>();
    if (args.count("pds-restart-every")) no.pds_restart_every_s = args["pds-restart-every"].as<double>();
    if (args.count("cut-every")) no.cut_every_s = args["cut-every"].as<double>();
    if (args.count("accept-drop")) no.accept_drop = args["accept-drop"].as<double>();
    if (args.count("too-slow")) no.too_slow = args["too-slow"].as<std::size_t>();
    no.seed = args["seed"].as<std::uint64_t>();
    if (no.pdses == 0 || no.pdses > 1'000'000 || no.pds_window == 0 || no.relay_window == 0 || no.too_slow == 0) {
        cli::diag("--pdses must be in 1..1,000,000, --pds-window, --relay-window and --too-slow positive");
        return cli::kUsage;
    }
    if (!share(no.relay_drop) || !share(no.accept_drop) || !(no.relay_delay_ms >= 0) || !(no.pds_restart_every_s >= 0) ||
        !(no.cut_every_s >= 0)) {
        cli::diag("--relay-drop and --accept-drop must be in [0, 1]; --relay-delay-ms, --pds-restart-every and "
                  "--cut-every ≥ 0");
        return cli::kUsage;
    }
    for (const char* o : {"relay-window", "relay-drop", "relay-drop-host", "relay-drop-collection", "relay-delay-ms"})
        if (args.count(o) && !no.relay) {
            cli::diag(std::string("--") + o + " needs --relay");
            return cli::kUsage;
        }
    if (args.count("relay-drop-host"))
        for (const std::string& h : args["relay-drop-host"].as<std::vector<std::string>>()) {
            std::optional<std::size_t> i;
            std::string_view label = h;
            std::optional<std::uint64_t> v;
            if (label.starts_with("pds") && label.ends_with(".test")) {
                std::string digits(label.substr(3, label.size() - 8));
                v = parse_u64(&digits);
            } else {
                v = parse_u64(&h);
            }
            if (v && *v < no.pdses) i = std::size_t(*v);
            if (!i) {
                cli::diag("--relay-drop-host " + h + ": not one of the simulated PDSes (pds0.test .. pds" +
                          std::to_string(no.pdses - 1) + ".test, or the index)");
                return cli::kUsage;
            }
            no.relay_drop_hosts.push_back(*i);
        }
    if (args.count("relay-drop-collection"))
        no.relay_drop_collections = args["relay-drop-collection"].as<std::vector<std::string>>();

    auto preset = sov::sim::profile(args["profile"].as<std::string>());
    if (!preset) {
        cli::diag("unknown --profile '" + args["profile"].as<std::string>() + "' (default, realistic)");
        return cli::kUsage;
    }
    sov::sim::Options o = *preset;
    if (args.count("accounts")) o.accounts = args["accounts"].as<std::size_t>();
    o.seed = no.seed;
    if (args.count("zipf")) o.zipf_s = args["zipf"].as<double>();
    o.p256_share = args["p256-share"].as<double>();
    if (args.count("repo-median")) o.repo_median = args["repo-median"].as<double>();
    o.repo_sigma = args["repo-sigma"].as<double>();
    o.repo_cap = args["repo-cap"].as<std::size_t>();
    if (args.count("repo-budget")) o.repo_budget_bytes = args["repo-budget"].as<std::uint64_t>() << 20;
    else if (o.repo_budget_bytes == 0) o.repo_budget_bytes = kServeRepoBudget;  // a server runs long: bounded
    if (args.count("entropic-records")) o.entropic_records = true;
    o.events_per_second = args["rate"].as<double>();
    if (o.accounts == 0 || o.accounts > kMaxAccounts || !(o.events_per_second > 0) || !share(o.p256_share)) {
        cli::diag("--accounts must be in 1.." + cli::with_commas(kMaxAccounts) + ", --rate positive, --p256-share in [0, 1]");
        return cli::kUsage;
    }
    if (!cli::exclusive(args, {"corpus", "no-corpus"})) return cli::kUsage;
    if (!args.count("no-corpus")) {
        if (args.count("corpus")) o.corpus_repos = args["corpus"].as<std::string>();
        else {
            const char* env = std::getenv("SOVEREIGN_CORPUS");
            std::string dir = std::string(env && *env ? env : "../shared/corpus") + "/repos";
            if (std::filesystem::is_directory(dir)) o.corpus_repos = dir;
        }
    }
    const std::uint64_t events = args.count("events") ? args["events"].as<std::uint64_t>() : UINT64_MAX;
    const double linger = args.count("linger") ? args["linger"].as<double>() : -1;
    if (args.count("linger") && (!args.count("events") || !(linger >= 0))) {
        cli::diag("--linger needs --events and a number of seconds ≥ 0");
        return cli::kUsage;
    }
    // --tls DIR: the CA (reused when DIR has one) and a fresh server certificate for every name
    // a client may use: 127.0.0.1 and localhost with the path form, relay.test and the first
    // PDS names with the Host form. Done before the generator's set-up so a bad DIR fails fast.
    std::optional<sov::net::HttpServerTls> tls;
    if (args.count("tls")) {
        std::vector<std::string> names = {"localhost", "127.0.0.1"};
        if (no.relay) names.push_back("relay.test");
        for (std::size_t i = 0; i < std::min(no.pdses, kTlsNamedPdses); ++i)
            names.push_back(sov::sim::Network::host_label(i));
        sov::net::TestPki pki;
        std::string err;
        if (sov::Errc e = sov::net::make_test_pki(args["tls"].as<std::string>(), names, {"127.0.0.1"}, pki, err);
            e != sov::Errc::ok) {
            cli::diag("--tls " + err);
            return cli::status(e);
        }
        tls = sov::net::HttpServerTls{pki.server_cert_file, pki.server_key_file};
        if (!args.count("quiet"))
            cli::diag("TLS: clients trust " + pki.ca_file + (pki.reused_ca ? " (the CA found there)" : " (a new CA)"));
    }
    o.start_us = wall_us();

    // Accounts → PDSes: Zipf(1) over the PDS indexes (a few big hosts, a long tail of small
    // ones, many with no account at all), drawn from the seed alone.
    std::vector<std::uint32_t> home(o.accounts);
    {
        sov::sim::Zipf z(no.pdses, 1.0);
        sov::sim::Rng r(no.seed ^ 0x686f6d65ULL);
        for (auto& h : home) h = std::uint32_t(z.sample(r));
    }
    o.pds_of_account = [&home](std::size_t i) { return "https://" + sov::sim::Network::host_label(home[i]); };

    cli::install_stop_handler(g_stop);
    std::optional<sov::sim::Generator> gen_holder;
    if (!make_generator(o, gen_holder)) return cli::kSystem;
    sov::sim::Generator& gen = *gen_holder;
    if (args.count("did-docs")) {
        std::string path = args["did-docs"].as<std::string>(), err;
        if (sov::Errc e = write_did_docs(gen, path, err); e != sov::Errc::ok) {
            cli::diag(err);
            return cli::status(e);
        }
    }

    // --pool N: N messages generated now, then sent in turn (for rates above the generator's).
    std::vector<std::pair<std::size_t, std::vector<std::uint8_t>>> pool;
    if (args.count("pool")) {
        const std::size_t n = args["pool"].as<std::size_t>();
        if (n == 0 || n > 10'000'000) {
            cli::diag("--pool must be in 1..10,000,000 messages");
            return cli::kUsage;
        }
        pool.reserve(n);
        std::vector<std::uint8_t> wire;
        std::int64_t recv;
        for (std::size_t i = 0; i < n && !g_stop.load(); ++i) {
            if (gen.next(wire, recv) != sov::Errc::ok) {
                cli::diag("internal error: " + gen.error_detail());
                return cli::kSystem;
            }
            const std::string& ep = gen.last_pds();
            auto pds = sov::sim::Network::index_of(std::string_view(ep).substr(std::min(ep.size(), std::size_t(8))), no.pdses);
            if (!pds) return cli::kSystem;
            pool.emplace_back(*pds, wire);
        }
    }

    // The ground truth: frame records, buffered, written by the generator thread (the sink
    // runs under the network's lock, called only from emit/advance on that thread).
    int truth_fd = -1;
    std::string truth_path;
    std::vector<std::uint8_t> truth_buf;
    bool truth_failed = false;
    if (args.count("truth")) {
        truth_path = args["truth"].as<std::string>();
        truth_fd = ::open(truth_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (truth_fd < 0) {
            cli::diag(truth_path, std::strerror(errno));
            return cli::kSystem;
        }
    }
    auto flush_truth = [&] {
        if (truth_fd < 0 || truth_buf.empty() || truth_failed) return;
        std::size_t off = 0;
        while (off < truth_buf.size()) {
            ssize_t w = ::write(truth_fd, truth_buf.data() + off, truth_buf.size() - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                cli::diag(truth_path, std::strerror(errno));
                truth_failed = true;
                break;
            }
            off += std::size_t(w);
        }
        truth_buf.clear();
    };
    sov::sim::Network::Sink sink;
    if (truth_fd >= 0)
        sink = [&](const sov::sim::TruthRecord& r) {
            if (!sov::sim::append_truth(truth_buf, r)) truth_failed = true;
        };
    sov::sim::Network net(no, sink);
    net.add_accounts(home, [&gen](std::size_t i) { return gen.account_did(i); });

    auto handler = [&net](const sov::net::HttpRequest& r) {
        sov::net::HttpResponse h = answer_xrpc(net, r);
        h.headers.emplace_back("Server", route(net, r).relay ? "mesh-sim atproto-relay" : "mesh-sim pds");
        return h;
    };
    auto stream = [&net](const sov::net::HttpRequest& r) {
        sov::net::WsAnswer w;
        Route rt = route(net, r);
        if (!rt.ok() || rt.method != "com.atproto.sync.subscribeRepos") {
            w.close_code = 1008;
            w.close_reason = "not found";
            return w;
        }
        std::optional<std::uint64_t> cursor;
        if (const std::string* c = r.param("cursor")) {
            cursor = parse_u64(c);
            if (!cursor) {
                w.close_code = 1008;
                w.close_reason = "InvalidRequest: cursor must be an integer";
                return w;
            }
        }
        auto sub = net.subscribe(rt.pds, cursor);
        w.binary = true;
        w.topic = rt.pds ? std::uint32_t(*rt.pds) : net.relay_topic();
        // What indigo answers, by which a tap tells a relay from a PDS (docs/design.md §8).
        w.headers.emplace_back("Server", rt.relay ? "mesh-sim atproto-relay" : "mesh-sim pds");
        w.step = [&net, sub](bool can_send) {
            sov::sim::SubStep s = net.step(*sub, can_send);
            sov::net::WsStep out;
            out.kind = s.kind == sov::sim::SubStep::Kind::send    ? sov::net::WsStep::Kind::send
                       : s.kind == sov::sim::SubStep::Kind::close ? sov::net::WsStep::Kind::close
                       : s.kind == sov::sim::SubStep::Kind::cut   ? sov::net::WsStep::Kind::cut
                                                                  : sov::net::WsStep::Kind::wait;
            out.data = std::move(s.data);
            out.code = s.code;
            return out;
        };
        return w;
    };
    // One socket per subscriber: as many as the hard limit allows (a 20,000-host mesh).
    if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    sov::Errc code;
    std::string err;
    auto server = sov::net::HttpServer::start(args["listen"].as<std::string>(), handler, code, err, stream, tls);
    if (!server) {
        cli::diag(err);
        return code == sov::Errc::net_bad_url ? cli::kUsage : cli::status(code);
    }
    const std::string base = (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(server->port());
    cli::diag("serving " + cli::with_commas(no.pdses) + (no.pdses == 1 ? " simulated PDS" : " simulated PDSes") + " on " + base + " (" + base + "/pds/<i>/xrpc/…" +
              (no.relay ? ", relay " + base + "/relay/xrpc/…" : std::string()) + (tls ? "; WebSockets wss://" : "") + ")");

    // The generator thread: each message is emitted when the wall clock reaches its simulated
    // time (so --rate is the real rate), by the PDS of its account.
    std::atomic<bool> gen_done{false};
    std::atomic<bool> gen_failed{false};
    std::uint64_t sent = 0;
    std::thread producer([&] {
        std::vector<std::uint8_t> wire;
        std::vector<std::uint32_t> wake;
        auto do_wake = [&] {
            std::sort(wake.begin(), wake.end());
            wake.erase(std::unique(wake.begin(), wake.end()), wake.end());
            for (std::uint32_t t : wake) server->wake(t);
            wake.clear();
        };
        // Simulated time t is emitted at wall clock t − o.start_us + wall0: the generator's
        // set-up (its repositories) is not made up for by a burst.
        const std::int64_t wall0 = wall_us();
        std::int64_t last_flush = wall0, done_at = 0;
        while (!g_stop.load()) {
            std::int64_t now = wall_us();
            net.advance(now, wake);
            do_wake();
            if (now - last_flush > 1'000'000) {
                flush_truth();
                last_flush = now;
            }
            if (sent >= events) {
                if (!done_at) done_at = now;
                if (linger >= 0 && net.delayed() == 0 && now - done_at >= std::int64_t(linger * 1e6)) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            if (!pool.empty()) {
                // --pool: the pre-generated messages in turn, evenly at --rate, in batches
                // of what is due (the loop's bookkeeping once per batch).
                const auto due = std::uint64_t(double(now - wall0) * o.events_per_second / 1e6) + 1;
                if (sent >= due) {
                    std::this_thread::sleep_for(std::chrono::microseconds(
                        std::clamp<std::int64_t>(std::int64_t(1e6 / o.events_per_second), 50, 10'000)));
                    continue;
                }
                for (std::uint64_t k = 0; sent < due && sent < events && k < 4096; ++k, ++sent) {
                    const auto& [pds, w] = pool[sent % pool.size()];
                    if (net.emit(pds, w, now, wake) != sov::Errc::ok) {
                        gen_failed = true;
                        break;
                    }
                }
                if (gen_failed) break;
                do_wake();
                continue;
            }
            std::int64_t recv;
            if (gen.next(wire, recv) != sov::Errc::ok) {
                cli::diag("internal error: " + gen.error_detail());
                gen_failed = true;
                break;
            }
            const std::string& ep = gen.last_pds();
            auto pds = net.host_index(std::string_view(ep).substr(std::min(ep.size(), std::size_t(8))));  // "https://"
            if (!pds) {
                cli::diag("internal error: account endpoint " + ep + " is not a simulated PDS");
                gen_failed = true;
                break;
            }
            for (std::int64_t t = gen.last_time_us() - o.start_us + wall0; (now = wall_us()) < t && !g_stop.load();) {
                std::this_thread::sleep_for(std::chrono::microseconds(std::min<std::int64_t>(t - now, 10'000)));
                net.advance(wall_us(), wake);
                do_wake();
            }
            if (net.emit(*pds, wire, wall_us(), wake) != sov::Errc::ok) {
                cli::diag("internal error: a generated message has no seq to replace");
                gen_failed = true;
                break;
            }
            ++sent;
            do_wake();
        }
        gen_done = true;
    });
    while (!g_stop.load() && !gen_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    g_stop = true;  // the producer's loop ends (it may be waiting on a time)
    producer.join();
    server->stop();
    flush_truth();
    if (truth_fd >= 0 && ::close(truth_fd) != 0 && !truth_failed) {
        cli::diag(truth_path, std::strerror(errno));
        truth_failed = true;
    }
    const auto n = net.counters();
    if (!args.count("quiet"))
        cli::diag(cli::count(n.emitted, "event") + " emitted" +
                  (no.relay ? ", " + cli::with_commas(n.relayed) + " relayed, " + cli::with_commas(n.dropped) + " dropped by the relay"
                            : std::string()) +
                  "; " + cli::count(n.subscriptions, "subscription") + " (" + cli::with_commas(n.outdated) + " outdated, " +
                  cli::with_commas(n.future) + " future, " + cli::with_commas(n.too_slow) + " too slow, " +
                  cli::with_commas(n.cuts) + " cut), " + cli::count(n.restarts, "PDS restart") +
                  (cli::stop_signal() == SIGINT ? "; stopped by SIGINT" : cli::stop_signal() ? "; stopped by SIGTERM" : ""));
    if (gen_failed || truth_failed) return cli::kSystem;
    return cli::stop_signal() ? cli::stop_status(cli::kOk) : cli::kOk;
}

// Options of `gen` that draw its accounts from a simulated PLC directory.
const std::initializer_list<const char*> kGenPlc = {"plc-accounts", "plc-seed", "plc-start", "src-from-pds"};

// `mesh-sim serve --plc`, `mesh-sim plc-truth` and `mesh-sim plc-export`.
int run_plc(const std::string& command, const cxxopts::ParseResult& args) {
    static const std::initializer_list<const char*> kNotPlc = {
        "profile", "events", "did-docs", "src", "zipf", "repo-median", "repo-sigma", "repo-cap", "repo-budget",
        "entropic-records", "rate", "corpus", "no-corpus", "replay-repo", "window", "force"};
    for (const char* o : kGenPlc)
        if (args.count(o)) {
            cli::diag(std::string("--") + o + " is an option of 'gen' (" + command + " takes --accounts, --seed, --start)");
            return cli::kUsage;
        }
    for (const char* o : kNotPlc)
        if (args.count(o)) {
            cli::diag(std::string("--") + o + " is not an option of '" + command + "'");
            return cli::kUsage;
        }
    sov::sim::PlcOptions o;
    o.accounts = args.count("accounts") ? args["accounts"].as<std::size_t>() : 1000;
    o.seed = args["seed"].as<std::uint64_t>();
    o.p256_share = args.count("p256-share") ? args["p256-share"].as<double>() : o.p256_share;
    if (args.count("start")) o.start_us = args["start"].as<std::int64_t>();
    if (o.accounts == 0 || o.accounts > kMaxPlcAccounts || !share(o.p256_share)) {
        cli::diag("--accounts must be in 1.." + cli::with_commas(kMaxPlcAccounts) + ", --p256-share in [0, 1]");
        return cli::kUsage;
    }
    if (o.start_us < kMinStart || o.start_us > 4102444800000000) {  // 2000 .. 2100
        cli::diag("--start " + std::to_string(o.start_us) + " is out of range for PLC createdAt (years 2000 to 2100)");
        return cli::kUsage;
    }
    sov::sim::PlcFaults f;
    f.seed = o.seed;
    if (args.count("fault-429-above")) f.max_rps = args["fault-429-above"].as<double>();
    if (args.count("fault-5xx")) f.p_5xx = args["fault-5xx"].as<double>();
    if (args.count("fault-slow")) f.slow_ms = args["fault-slow"].as<std::uint32_t>();
    if (args.count("fault-drop")) f.p_drop = args["fault-drop"].as<double>();
    f.legacy_only = args.count("legacy-only") > 0;
    if (!(f.max_rps >= 0) || !share(f.p_5xx) || !share(f.p_drop)) {
        cli::diag("--fault-429-above must be ≥ 0, --fault-5xx and --fault-drop in [0, 1]");
        return cli::kUsage;
    }
    if (command != "serve") {
        for (const char* opt : kPlcOnly)
            if (args.count(opt)) {
                cli::diag(std::string("--") + opt + " is an option of 'serve', not of '" + command + "'");
                return cli::kUsage;
            }
    } else if (!args.count("plc")) {
        cli::diag("serve needs --plc or --pdses N");
        return cli::kUsage;
    }

    cli::install_stop_handler(g_stop);
    auto dir = sov::sim::PlcDirectory::generate(o);
    if (!dir) {
        cli::diag("cannot generate the PLC directory: " + std::string(sov::to_string(dir.error())));
        return cli::status(dir.error());
    }
    const auto& d = *dir;

    if (command != "serve") {
        // plc-truth: one truth line per account; plc-export: the /export?after=<seq> lines of
        // every op in seq order (what plc-sync --from-file reads, as a server would page them).
        const bool truth = command == "plc-truth";
        std::FILE* out = stdout;
        std::string path = args.count("output") ? args["output"].as<std::string>() : "stdout";
        if (args.count("output") && !(out = std::fopen(path.c_str(), "w"))) {
            cli::diag(path, std::strerror(errno));
            return cli::kSystem;
        }
        std::string line;
        const std::size_t n = truth ? d.accounts().size() : d.ops().size();
        for (std::size_t i = 0; i < n; ++i) {
            if (g_stop.load()) break;
            line = truth ? d.truth_line(d.accounts()[i]) : d.sequenced_line(i);
            line += '\n';
            if (std::fwrite(line.data(), 1, line.size(), out) != line.size()) break;
        }
        bool failed = std::fflush(out) != 0 || std::ferror(out);
        if (out != stdout) failed = std::fclose(out) != 0 || failed;
        if (failed) {
            if (errno == EPIPE) return cli::kOk;
            cli::diag(path, std::strerror(errno));
            return cli::kSystem;
        }
        if (!args.count("quiet"))
            cli::diag(cli::count(d.accounts().size(), "account") + ", " + cli::count(d.ops().size(), "op") + " (" +
                      cli::with_commas(d.invalid().size()) + " invalid)" +
                      (g_stop.load() ? "; interrupted" : ""));
        return cli::stop_status(cli::kOk);
    }

    // serve --plc: the handler runs on the server's one service thread, so PlcService (not
    // thread-safe) needs no lock.
    sov::sim::PlcService service(d, f);
    auto handler = [&service](const sov::net::HttpRequest& r) {
        const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
        sov::sim::PlcAnswer a = service.answer(r.path, r.params, now);
        sov::net::HttpResponse h;
        h.status = a.status;
        h.content_type = std::move(a.content_type);
        h.headers = std::move(a.headers);
        h.body = std::move(a.body);
        h.delay_ms = a.delay_ms;
        h.drop_after = a.drop_after;
        return h;
    };
    // /export/stream: the replay of PlcService::stream; a refused cursor closes the WebSocket
    // at once with 1008 and the reference's 400 message (lws accepts the upgrade first).
    auto stream = [&service, &d](const sov::net::HttpRequest& r) {
        sov::net::WsAnswer w;
        if (r.path != "/export/stream") {
            w.close_code = 1008;
            w.close_reason = "not found";
            return w;
        }
        sov::sim::PlcService::Stream st = service.stream(r.params);
        if (st.status != 101) {
            w.close_code = 1008;
            w.close_reason = st.message;
            return w;
        }
        w.close_reason = st.close_reason;
        w.next = [&d, at = st.from, end = st.end]() mutable -> std::optional<std::string> {
            if (at >= end) return std::nullopt;
            return d.sequenced_line(at++);
        };
        return w;
    };
    sov::Errc code;
    std::string err;
    auto server = sov::net::HttpServer::start(args["listen"].as<std::string>(), handler, code, err, stream);
    if (!server) {
        cli::diag(err);
        return code == sov::Errc::net_bad_url ? cli::kUsage : cli::status(code);
    }
    if (!args.count("quiet"))
        cli::diag("PLC directory of " + cli::count(d.accounts().size(), "account") + ", " +
                  cli::count(d.ops().size(), "op") + " (" + cli::with_commas(d.invalid().size()) + " invalid)");
    cli::diag("serving PLC on http://127.0.0.1:" + std::to_string(server->port()));
    while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    server->stop();
    const auto& n = service.counters();
    if (!args.count("quiet"))
        cli::diag(cli::count(n.requests, "request") + " (" + cli::with_commas(n.ok) + " ok, " +
                  cli::with_commas(n.client_errors) + " 4xx, " + cli::with_commas(n.rate_limited) + " 429, " +
                  cli::with_commas(n.server_errors) + " 5xx, " + cli::with_commas(n.dropped) + " dropped)" +
                  (cli::stop_signal() == SIGINT ? "; stopped by SIGINT" : "; stopped by SIGTERM"));
    return cli::stop_status(cli::kOk);
}

}  // namespace

int main(int argc, char** argv) {
    cli::init("mesh-sim");
    cxxopts::Options opts("mesh-sim",
                          "Simulated AT Protocol traffic.\n"
                          "Usage: mesh-sim gen [OPTIONS] > traffic.frames\n"
                          "       mesh-sim stats [--window N] FILE...\n"
                          "       mesh-sim serve --plc [--accounts N] [--seed S] [--listen 127.0.0.1:PORT] [FAULTS]\n"
                          "       mesh-sim serve --pdses N [--relay] [--rate R] [--events E [--linger S]] [--truth FILE] [--tls DIR] [FAULTS]\n"
                          "       mesh-sim plc-truth [--accounts N] [--seed S] [-o FILE]\n"
                          "       mesh-sim plc-export [--accounts N] [--seed S] [-o FILE]\n"
                          "       mesh-sim gen --plc-accounts N [--plc-seed S] [--src-from-pds] [OPTIONS]\n");
    opts.add_options()
        ("profile", "preset: default (1,000 accounts, Zipf 1.1) or realistic (200,000 accounts, Zipf 0.7, "
                    "15,000-record repositories, 1 GiB repository budget, entropic records); options below override it",
         cxxopts::value<std::string>()->default_value("default"))
        ("accounts", "number of simulated accounts (default 1000)", cxxopts::value<std::size_t>())
        ("events", "number of messages to generate", cxxopts::value<std::uint64_t>()->default_value("10000"))
        ("seed", "random seed (same seed, same bytes)", cxxopts::value<std::uint64_t>()->default_value("1"))
        ("did-docs", "write the accounts' DID documents (JSON object DID → document) to FILE",
         cxxopts::value<std::string>())
        ("o,output", "write the frame stream to FILE instead of stdout", cxxopts::value<std::string>())
        ("src", "src label of the frames", cxxopts::value<std::string>()->default_value("mesh-sim"))
        ("zipf", "activity exponent s: account of rank k acts with probability ∝ 1/k^s (default 1.1)",
         cxxopts::value<double>())
        ("p256-share", "share of accounts with P-256 keys (others k256)", cxxopts::value<double>()->default_value("0.1"))
        ("repo-median", "median initial records per repository (log-normal; default 200)", cxxopts::value<double>())
        ("repo-sigma", "σ of the log of the initial record count", cxxopts::value<double>()->default_value("1.2"))
        ("repo-cap", "maximum initial records per repository", cxxopts::value<std::size_t>()->default_value("20000"))
        ("repo-budget", "MiB of repositories kept in memory; above it the least recently used are evicted and "
                        "rebuilt from their seed when next used (0 = keep all; default 0, realistic 1024, serve --pdses 256)",
         cxxopts::value<std::uint64_t>())
        ("entropic-records", "records with real-network entropy (default off, realistic on)")
        ("rate", "simulated events per second (sets recv/time/rev spacing)", cxxopts::value<double>()->default_value("500"))
        ("start", "simulated start time, µs since the epoch", cxxopts::value<std::int64_t>()->default_value("1783173600000000"))
        ("corpus", "directory of repository CARs to sample post and profile content from "
                   "(default: $SOVEREIGN_CORPUS/repos or ../shared/corpus/repos when present)",
         cxxopts::value<std::string>())
        ("no-corpus", "use only the built-in record templates")
        ("replay-repo", "turn a real repository CAR into a history of commits (one record each, TID order)",
         cxxopts::value<std::string>())
        ("window", "stats: messages per window for DID repeats and zstd ratios", cxxopts::value<std::size_t>()->default_value("150"))
        ("force", "gen: write frames to stdout even when it is a terminal")
        ("plc", "serve: a simulated PLC directory (/export, /<did>, /<did>/log/audit)")
        ("listen", "serve: loopback address to listen on (PORT 0: any free port, printed on stderr)",
         cxxopts::value<std::string>()->default_value("127.0.0.1:0"))
        ("fault-429-above", "serve: answer 429 with Retry-After: 1 when the last second saw more than RPS requests",
         cxxopts::value<double>())
        ("fault-5xx", "serve: answer 500 or 503 with probability P", cxxopts::value<double>())
        ("fault-slow", "serve: delay every answer by MS milliseconds", cxxopts::value<std::uint32_t>())
        ("fault-drop", "serve: close the connection halfway through a 200 answer's body with probability P",
         cxxopts::value<double>())
        ("legacy-only", "serve: /export answers only the createdAt cursor form (like the reference server 0.0.1)")
        ("tls", "serve --pdses: TLS only (https://, wss://) with a CA in DIR (reused if there, else made): clients "
                "trust DIR/ca.pem", cxxopts::value<std::string>())
        ("pdses", "serve: N simulated PDSes on one port (/pds/<i>/xrpc/… or Host: pds<i>.test)",
         cxxopts::value<std::size_t>())
        ("relay", "serve --pdses: also a relay merging them (/relay/xrpc/… or Host: relay.test)")
        ("pds-window", "serve --pdses: events each PDS can replay (default 10000)", cxxopts::value<std::size_t>())
        ("relay-window", "serve --relay: events the relay can replay (default 100000)", cxxopts::value<std::size_t>())
        ("linger", "serve --pdses with --events: exit S seconds after the last event (default: stay up)",
         cxxopts::value<double>())
        ("truth", "serve --pdses: write the ground truth (every event emitted, relayed, dropped) as frames to FILE",
         cxxopts::value<std::string>())
        ("relay-drop", "serve --relay: the relay drops this share of events", cxxopts::value<double>())
        ("relay-drop-host", "serve --relay: the relay drops every event of host H (pds<i>.test or i; repeatable)",
         cxxopts::value<std::vector<std::string>>())
        ("relay-drop-collection", "serve --relay: the relay drops commits touching collection C (repeatable)",
         cxxopts::value<std::vector<std::string>>())
        ("relay-delay-ms", "serve --relay: PDS → relay delay, exponential with this mean", cxxopts::value<double>())
        ("pds-restart-every", "serve --pdses: every S seconds a PDS restarts (connections cut, log lost, seq from 1)",
         cxxopts::value<double>())
        ("cut-every", "serve --pdses: every S seconds every open subscription is cut without a close frame",
         cxxopts::value<double>())
        ("too-slow", "serve --pdses: live events waiting for a subscriber before ConsumerTooSlow (default 500)",
         cxxopts::value<std::size_t>())
        ("accept-drop", "serve --pdses: this share of PDSes accept a subscription and cut it at once",
         cxxopts::value<double>())
        ("pool", "serve --pdses: generate N messages first, then send them in turn at --rate (rates above the "
                 "generator's; repeated commits no longer verify)",
         cxxopts::value<std::size_t>())
        ("plc-accounts", "gen: the accounts of the simulated PLC directory that 'serve --plc --accounts N' serves "
                         "(DIDs, signing keys across rotations, PDS, handles, tombstones)",
         cxxopts::value<std::size_t>())
        ("plc-seed", "gen: that directory's --seed (default 1)", cxxopts::value<std::uint64_t>())
        ("plc-start", "gen: that directory's --start, µs since the epoch (default 1704067200000000)",
         cxxopts::value<std::int64_t>())
        ("src-from-pds", "gen with --plc-accounts: each frame's src is the host of its account's PDS at the message's time")
        ("q,quiet", "no summary line and no progress")
        ("command", "gen, stats, serve, plc-truth or plc-export", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"command"});
    opts.positional_help("gen | stats FILE... | serve --plc | plc-truth | plc-export");
    auto args = cli::parse(opts, argc, argv);
    std::vector<std::string> words = args.count("command") ? args["command"].as<std::vector<std::string>>() : std::vector<std::string>{};
    // Options of the other command would be ignored: refused instead.
    static const std::initializer_list<const char*> kGenOnly = {
        "profile", "accounts", "events", "seed", "did-docs", "output", "src", "zipf", "p256-share", "repo-median",
        "repo-sigma", "repo-cap", "repo-budget", "entropic-records", "rate", "start", "corpus", "no-corpus",
        "replay-repo", "plc-accounts", "plc-seed", "plc-start", "src-from-pds"};
    if (!words.empty() && (words[0] == "serve" || words[0] == "plc-truth" || words[0] == "plc-export")) {
        if (words.size() != 1) {
            cli::diag(words[0] + " takes no file");
            return cli::kUsage;
        }
        if (words[0] == "serve" && args.count("pdses")) {
            if (args.count("plc")) {
                cli::diag("--plc and --pdses are separate services: run two mesh-sim serve processes");
                return cli::kUsage;
            }
            return run_net(args);
        }
        for (const char* o : kNetOnly)
            if (args.count(o)) {
                cli::diag(std::string("--") + o + (words[0] == "serve" ? " needs --pdses" : " is an option of 'serve --pdses'"));
                return cli::kUsage;
            }
        return run_plc(words[0], args);
    }
    for (const char* o : kNetOnly)
        if (args.count(o)) {
            cli::diag(std::string("--") + o + " is an option of 'serve --pdses'");
            return cli::kUsage;
        }
    for (const char* o : kPlcOnly)
        if (args.count(o)) {
            cli::diag(std::string("--") + o + " is an option of 'serve'");
            return cli::kUsage;
        }
    if (!words.empty() && words[0] == "stats") {
        for (const char* o : kGenOnly)
            if (args.count(o)) {
                cli::diag(std::string("--") + o + " is an option of 'gen', not of 'stats'");
                return cli::kUsage;
            }
        if (words.size() < 2 || args["window"].as<std::size_t>() == 0) {
            cli::diag("stats needs at least one frame stream (\"-\" = stdin) and a positive --window");
            return cli::kUsage;
        }
        cli::install_stop_handler(g_stop);
        sov::sim::ShapeMeter meter(args["window"].as<std::size_t>());
        for (std::size_t i = 1; i < words.size(); ++i) {
            auto r = sov::frames::Reader::open(words[i]);
            if (r.open_errno()) {
                cli::diag(words[i], std::strerror(r.open_errno()));
                return cli::kSystem;
            }
            sov::frames::Envelope e;
            while (r.next(e))
                if (!e.wire.empty()) meter.add(e.wire);
            if (g_stop.load()) break;
            if (r.error()) return cli::framing_error(r);
        }
        std::fputs(sov::sim::describe(meter.finish()).c_str(), stdout);
        if (g_stop.load()) cli::diag("interrupted: the shape of the frames read before the signal" + cli::stop_note());
        return cli::stop_status(cli::kOk);
    }
    if (words.size() != 1 || words[0] != "gen") {
        cli::diag(words.size() > 1 && words[0] == "gen" ? "gen takes no file: write to stdout or -o FILE"
                                                        : "expected the command 'gen', 'stats', 'serve', 'plc-truth' or 'plc-export' (try --help)");
        return cli::kUsage;
    }
    if (args.count("window")) {
        cli::diag("--window is an option of 'stats', not of 'gen'");
        return cli::kUsage;
    }
    if (!cli::exclusive(args, {"corpus", "no-corpus"})) return cli::kUsage;
    if (args.count("corpus") && !std::filesystem::is_directory(args["corpus"].as<std::string>())) {
        cli::diag("--corpus " + args["corpus"].as<std::string>(), "not a directory of repository CARs");
        return cli::kUsage;
    }

    auto preset = sov::sim::profile(args["profile"].as<std::string>());
    if (!preset) {
        cli::diag("unknown --profile '" + args["profile"].as<std::string>() + "' (default, realistic)");
        return cli::kUsage;
    }
    sov::sim::Options o = *preset;
    if (args.count("accounts")) o.accounts = args["accounts"].as<std::size_t>();
    o.seed = args["seed"].as<std::uint64_t>();
    if (args.count("zipf")) o.zipf_s = args["zipf"].as<double>();
    o.p256_share = args["p256-share"].as<double>();
    if (args.count("repo-median")) o.repo_median = args["repo-median"].as<double>();
    o.repo_sigma = args["repo-sigma"].as<double>();
    o.repo_cap = args["repo-cap"].as<std::size_t>();
    if (args.count("repo-budget")) o.repo_budget_bytes = args["repo-budget"].as<std::uint64_t>() << 20;
    if (args.count("entropic-records")) o.entropic_records = true;
    o.events_per_second = args["rate"].as<double>();
    o.start_us = args["start"].as<std::int64_t>();
    if (o.accounts == 0 || !(o.events_per_second > 0) || !(o.repo_median >= 0) || !(o.p256_share >= 0) ||
        !(o.p256_share <= 1)) {
        cli::diag("--accounts and --rate must be positive, --p256-share in [0, 1]");
        return cli::kUsage;
    }
    if (o.accounts > kMaxAccounts) {
        cli::diag("--accounts " + std::to_string(o.accounts) + " is more than the " + cli::with_commas(kMaxAccounts) +
                  " accounts mesh-sim can hold in memory");
        return cli::kUsage;
    }
    // --plc-accounts: the accounts (and their identities over time) of the simulated PLC
    // directory that `serve --plc --accounts N --seed S --start T` serves; the traffic starts
    // at the directory's first op unless --start says otherwise.
    const bool from_plc = args.count("plc-accounts") > 0;
    for (const char* opt : kGenPlc)
        if (!from_plc && args.count(opt)) {
            cli::diag(std::string("--") + opt + " needs --plc-accounts");
            return cli::kUsage;
        }
    if (from_plc) {
        for (const char* opt : {"accounts", "did-docs", "replay-repo", "p256-share"})
            if (args.count(opt)) {
                cli::diag(std::string("--") + opt + " does not go with --plc-accounts (the directory gives the accounts and "
                          "their keys; verify with cbor-verify --cache on a mirror of it)");
                return cli::kUsage;
            }
        if (!cli::exclusive(args, {"src", "src-from-pds"})) return cli::kUsage;
        sov::sim::PlcOptions po;
        po.accounts = args["plc-accounts"].as<std::size_t>();
        if (args.count("plc-seed")) po.seed = args["plc-seed"].as<std::uint64_t>();
        if (args.count("plc-start")) po.start_us = args["plc-start"].as<std::int64_t>();
        if (po.accounts == 0 || po.accounts > kMaxPlcAccounts) {
            cli::diag("--plc-accounts must be in 1.." + cli::with_commas(kMaxPlcAccounts));
            return cli::kUsage;
        }
        if (po.start_us < kMinStart || po.start_us > 4102444800000000) {  // as serve --start
            cli::diag("--plc-start " + std::to_string(po.start_us) + " is out of range for PLC createdAt (years 2000 to 2100)");
            return cli::kUsage;
        }
        auto dir = sov::sim::PlcDirectory::generate(po);
        if (!dir) {
            cli::diag("cannot generate the PLC directory: " + std::string(sov::to_string(dir.error())));
            return cli::status(dir.error());
        }
        o.identities = dir->identities();
        o.accounts = o.identities->size();
        if (!args.count("start")) o.start_us = dir->ops().front().created_at_us;
    }
    const bool src_from_pds = args.count("src-from-pds") > 0;
    std::string src = args["src"].as<std::string>();
    std::uint64_t events = args["events"].as<std::uint64_t>();
    if (src.size() > sov::frames::kMaxSrc) {
        cli::diag("--src is longer than 253 bytes (no reader accepts such a frame)");
        return cli::kUsage;
    }
    {
        // Every time written (recv, commit rev TIDs, createdAt) must stay a valid TID and
        // datetime: from 2000 until 2^53 µs, with room for the run (twice its mean span) and
        // for records citing times up to 30 days back.
        double span = 2.0 * double(events) * (1e6 / o.events_per_second + 1.0);
        if (o.start_us < kMinStart + kMargin || double(o.start_us) + span + double(kMargin) >= double(kTidLimit)) {
            cli::diag("--start " + std::to_string(o.start_us) +
                      " is out of range: the simulated times must lie between 2000 and 2255 (53-bit TIDs)");
            return cli::kUsage;
        }
    }
    if (args.count("corpus") && o.entropic_records) {
        cli::diag("--corpus has no effect with entropic records (--entropic-records, or --profile realistic)");
        return cli::kUsage;
    }
    if (args.count("corpus")) {
        bool any_car = false;
        std::error_code ec;
        for (const auto& ent : std::filesystem::directory_iterator(args["corpus"].as<std::string>(), ec))
            if (ent.path().extension() == ".car") {
                any_car = true;
                break;
            }
        if (!any_car) {
            cli::diag("--corpus " + args["corpus"].as<std::string>(), "no *.car file in this directory");
            return cli::kUsage;
        }
    }
    if (!args.count("no-corpus")) {
        if (args.count("corpus")) o.corpus_repos = args["corpus"].as<std::string>();
        else {
            const char* env = std::getenv("SOVEREIGN_CORPUS");
            std::string dir = std::string(env && *env ? env : "../shared/corpus") + "/repos";
            if (std::filesystem::is_directory(dir)) o.corpus_repos = dir;
        }
    }
    if (!args.count("output") && cli::refuse_terminal(1, args.count("force") > 0)) return cli::kUsage;
    if (args.count("output")) {
        std::vector<std::string> inputs;
        if (args.count("did-docs")) inputs.push_back(args["did-docs"].as<std::string>());
        if (args.count("replay-repo")) inputs.push_back(args["replay-repo"].as<std::string>());
        if (cli::refuse_same_file(args["output"].as<std::string>(), inputs, "-o")) return cli::kUsage;
        if (args.count("did-docs") && args["did-docs"].as<std::string>() == args["output"].as<std::string>()) {
            cli::diag("-o and --did-docs name the same file");
            return cli::kUsage;
        }
    }

    std::optional<sov::sim::Generator> gen_holder;
    if (!make_generator(o, gen_holder)) return cli::kSystem;
    sov::sim::Generator& gen = *gen_holder;
    if (args.count("replay-repo")) {
        std::string err;
        auto n = gen.load_replay(args["replay-repo"].as<std::string>(), err);
        if (!n) {
            cli::diag(err);
            return cli::status(n.error());
        }
        if (!args.count("events") || events > *n) events = *n;
    }
    if (args.count("did-docs")) {
        // Written whole and renamed into place before the first frame, so that a reader in
        // the same pipeline (`mesh-sim gen --did-docs d.json | cbor-verify --did-docs d.json`,
        // which reads the file at its first frame) never sees it missing, partial or stale.
        std::string path = args["did-docs"].as<std::string>(), err;
        if (sov::Errc e = write_did_docs(gen, path, err); e != sov::Errc::ok) {
            cli::diag(err);
            return cli::status(e);
        }
    }
    int fd = 1;
    if (args.count("output")) {
        std::string path = args["output"].as<std::string>();
        fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            cli::diag(path, std::strerror(errno));
            return cli::kSystem;
        }
    }
    sov::frames::Writer out(fd);
    std::vector<std::uint8_t> wire;
    cli::Progress progress(args.count("quiet") > 0);
    cli::install_stop_handler(g_stop);
    std::uint64_t n = 0;
    for (; n < events && !out.broken_pipe() && !out.failed() && !g_stop.load(); ++n) {
        std::int64_t recv;
        if (gen.next(wire, recv) != sov::Errc::ok) {
            if (from_plc && gen.error_detail().starts_with("every account")) {  // the one error that is the user's
                cli::diag(gen.error_detail() + " (ask for fewer --events or an earlier --start)");
                out.flush();
                return cli::kUsage;
            }
            cli::diag("internal error: " + gen.error_detail());
            return cli::kSystem;
        }
        std::string_view frame_src = src;
        std::optional<std::string> pds_src;
        if (src_from_pds && (pds_src = sov::verify::source_of_endpoint(gen.last_pds())) &&
            pds_src->size() <= sov::frames::kMaxSrc)
            frame_src = *pds_src;
        if (!sov::frames::append_record(out.buffer(), frame_src, std::nullopt, recv, wire)) {
            cli::diag("internal error: message " + std::to_string(n) + " does not fit a frame record");
            return cli::kSystem;
        }
        out.maybe_flush();
        progress.update(n + 1, out.bytes_written());
    }
    progress.finish();
    int st = cli::finish_output(out, args.count("output") ? args["output"].as<std::string>() : "stdout");
    if (fd != 1) ::close(fd);
    const auto& s = gen.stats();
    // No summary after a closed pipe (docs/design.md §6: quietly) or a failed write (reported).
    if (!args.count("quiet") && !out.broken_pipe() && st == cli::kOk)
        cli::diag(cli::count(n, "message") + " (" + cli::count(s.commits, "commit") + " with " +
                  cli::count(s.ops, "op") + ": " + cli::count(s.creates, "create") + ", " +
                  cli::count(s.updates, "update") + ", " + cli::count(s.deletes, "delete") + "; " +
                  cli::count(s.syncs, "sync") + ", " + cli::with_commas(s.identities) + " identity, " +
                  cli::with_commas(s.accounts_events) + " account), " + cli::count(s.proof_blocks, "MST block") + ", " +
                  cli::count(s.corpus_records, "record") + " from the corpus; " + cli::count(out.bytes_written(), "byte") +
                  (o.repo_budget_bytes ? "; " + cli::count(s.rebuilds, "repository build") + ", " +
                                             cli::count(s.evictions, "eviction") + ", " +
                                             cli::count(s.ops_replaced, "op") + " replaced"
                                       : std::string()) +
                  cli::stop_note());
    return cli::stop_status(st);
}
