// mesh-tap — a direct connection to every PDS, merged into one frame stream in arrival order,
// with per-host cursors and markers (docs/design.md §2, §8).
//   mesh-tap --hosts pds.txt --state state/ | cbor-verify … | cvl-pack -o arch/
// Hosts come from a file, a relay's listHosts, the PDS endpoints in a DID cache, or their
// union. The engine (connections, cursors, markers, host states) is lib/net's TapEngine; this
// file gathers the host list, loads and saves the per-host cursors, and reports.
#include "cli.h"
#include "tap_run.h"

#include "sovereign/did_cache.h"
#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/nats/route.h"
#include "sovereign/net/endpoint.h"
#include "sovereign/net/http_client.h"
#include "sovereign/net/output_queue.h"
#include "sovereign/net/tap_engine.h"
#include "sovereign/net/ws_client.h"

#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

namespace {

using namespace sov;
using namespace sov::net;

constexpr const char* kCursorFile = "cursors";

struct HostList {
    std::vector<TapSource> sources;
    std::set<std::string> seen;  // normalised URLs
    std::uint64_t rejected = 0;

    // Adds `text` (a URL or bare host) with an optional label; false when it is not a host.
    bool add(const std::string& text, const std::string& label, const std::string& where) {
        EndpointError e;
        auto ep = parse_endpoint(text, true, e);
        if (!ep) {
            cli::diag(where, "'" + text + "': not a host (" + std::string(to_string(e)) + "); skipped");
            ++rejected;
            return false;
        }
        ep->websocket = true;
        if (ep->path.find_first_of("?#") != std::string::npos || ep->path.find("/xrpc/") != std::string::npos) {
            cli::diag(where, "'" + text + "': give the host without /xrpc/… or a query; skipped");
            ++rejected;
            return false;
        }
        while (!ep->path.empty() && ep->path.back() == '/') ep->path.pop_back();
        if (!seen.insert(ep->url()).second) return true;  // the union: once each
        std::string src = label.empty() ? default_label(*ep) : label;
        if (src.size() > frames::kMaxSrc) {
            cli::diag(where, "'" + text + "': label over 253 bytes; skipped");
            ++rejected;
            return false;
        }
        sources.push_back(TapSource{*ep, std::move(src), std::nullopt});
        return true;
    }
};

// --hosts FILE: one host per line, "URL [LABEL]"; '#' starts a comment.
int read_hosts_file(const std::string& path, HostList& hosts) {
    std::vector<std::uint8_t> bytes;
    std::string err;
    if (Errc e = file::read_file(path, bytes, err); e != Errc::ok) return cli::fail(e, err);
    std::istringstream in(std::string(bytes.begin(), bytes.end()));
    std::string line;
    std::size_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
        std::istringstream ls(line);
        std::string url, label, extra;
        if (!(ls >> url)) continue;
        ls >> label;
        if (ls >> extra) {
            cli::diag(path + ":" + std::to_string(lineno), "more than URL and label on the line; skipped");
            ++hosts.rejected;
            continue;
        }
        hosts.add(url, label, path + ":" + std::to_string(lineno));
    }
    return 0;
}

// --list-hosts RELAY: com.atproto.sync.listHosts, every page.
int list_hosts(const std::string& relay, const std::string& ca_file, HostList& hosts) {
    EndpointError ee;
    auto ep = parse_endpoint(relay, true, ee);
    if (!ep) {
        cli::diag(relay, std::string("not a relay URL: ") + std::string(to_string(ee)));
        return cli::kUsage;
    }
    std::string base = (ep->tls ? "https://" : "http://") + ep->host;
    if (ep->port != (ep->tls ? 443 : 80)) base += ":" + std::to_string(ep->port);
    std::string prefix = ep->path;
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    HttpClientOptions ho;
    ho.ca_file = ca_file;  // --ca: also for an https:// relay
    HttpClient http(ho);
    std::string cursor;
    std::uint64_t pages = 0, listed = 0;
    for (;;) {
        std::string url = base + prefix + "/xrpc/com.atproto.sync.listHosts?limit=1000";
        if (!cursor.empty()) url += "&cursor=" + cursor;
        HttpResult r;
        std::string err;
        if (Errc e = http.get(url, r, err); e != Errc::ok) return cli::fail(e, "--list-hosts: " + err);
        nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("hosts") || !j["hosts"].is_array())
            return cli::fail(Errc::net_protocol, "--list-hosts: " + url + ": not a listHosts answer (no hosts array)");
        ++pages;
        for (const auto& h : j["hosts"]) {
            if (!h.is_object() || !h.contains("hostname") || !h["hostname"].is_string()) continue;
            const std::string status = h.contains("status") && h["status"].is_string() ? h["status"].get<std::string>() : "";
            if (status == "banned" || status == "throttled_permanently") continue;
            ++listed;
            hosts.add(h["hostname"].get<std::string>(), "", "--list-hosts");
        }
        if (!j.contains("cursor") || !j["cursor"].is_string() || j["hosts"].empty()) break;
        const std::string next = j["cursor"].get<std::string>();
        if (next.empty() || next == cursor) break;
        cursor = next;
    }
    cli::diag("--list-hosts", cli::count(listed, "host") + " in " + cli::count(pages, "page") + " from " + relay);
    return 0;
}

// --cache DIR: the PDS endpoints of the DID cache (plc-sync's mirror).
int cache_hosts(const std::string& dir, HostList& hosts) {
    didcache::Reader r;
    std::string err;
    if (Errc e = didcache::Reader::open(dir + "/" + std::string(didcache::kFileName), r, err); e != Errc::ok)
        return cli::fail(e, err);
    std::set<std::string> pdses;
    if (Errc e = r.for_each([&](const didcache::Record& rec) {
            if (!rec.pds.empty() && !rec.tombstoned) pdses.insert(rec.pds);
        }, err); e != Errc::ok)
        return cli::fail(e, err);
    for (const std::string& p : pdses) hosts.add(p, "", "--cache");
    cli::diag("--cache", cli::count(pdses.size(), "PDS endpoint") + " in " + dir);
    return 0;
}

// DIR/cursors: "LABEL SEQ" lines.
int load_cursors(const std::string& dir, std::map<std::string, std::int64_t>& out) {
    std::vector<std::uint8_t> bytes;
    std::string err;
    const std::string path = dir + "/" + kCursorFile;
    Errc e = file::read_file(path, bytes, err);
    if (e == Errc::io_not_found) return 0;
    if (e != Errc::ok) return cli::fail(e, err);
    std::istringstream in(std::string(bytes.begin(), bytes.end()));
    std::string line;
    std::size_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty()) continue;
        const auto sp = line.rfind(' ');
        std::int64_t v = -1;
        if (sp != std::string::npos) std::from_chars(line.data() + sp + 1, line.data() + line.size(), v);
        if (sp == std::string::npos || v < 0) {
            cli::diag(path + ":" + std::to_string(lineno), "not a 'LABEL SEQ' line");
            return cli::kDataRejected;
        }
        out[line.substr(0, sp)] = v;
    }
    return 0;
}

int save_cursors(const std::string& dir, const TapEngine& e, std::string& last) {
    std::string s;
    for (std::size_t i = 0; i < e.source_count(); ++i)
        if (const std::int64_t c = e.written_cursor(i); c >= 0) s += e.source(i).src + " " + std::to_string(c) + "\n";
    if (s == last) return 0;
    std::string err;
    if (Errc ec = file::atomic_replace(dir + "/" + kCursorFile, ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()), err);
        ec != Errc::ok)
        return cli::fail(ec, err);
    last = std::move(s);
    return 0;
}

std::string metrics_text(const TapEngine& e, const OutputQueue& q) {
    std::string s;
    auto metric = [&](const char* name, const char* type, const char* help) {
        s += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    const auto& n = e.counters();
    auto one = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
        metric(name, type, help);
        s += std::string(name) + " " + std::to_string(v) + "\n";
    };
    one("mesh_tap_messages_total", "counter", "Messages written to stdout.", n.messages);
    one("mesh_tap_bytes_total", "counter", "Wire bytes of the messages written.", n.bytes);
    one("mesh_tap_duplicates_total", "counter", "Replayed messages at or below a host's cursor, dropped.", n.duplicates);
    one("mesh_tap_gaps_total", "counter", "Gap markers written.", n.gaps);
    one("mesh_tap_connects_total", "counter", "Connections established.", n.connects);
    one("mesh_tap_reconnects_total", "counter", "Reconnects scheduled.", n.reconnects);
    one("mesh_tap_future_cursor_total", "counter", "FutureCursor answers (a host's seq went back): parked or reset.",
        n.future_cursor);
    one("mesh_tap_queue_bytes", "gauge", "Bytes waiting for stdout.", q.queued_bytes());
    metric("mesh_tap_hosts", "gauge", "Hosts in each state.");
    const auto st = e.state_counts();
    for (std::size_t i = 0; i < kSourceStates; ++i)
        s += "mesh_tap_hosts{state=\"" + std::string(to_string(SourceState(i))) + "\"} " + std::to_string(st[i]) + "\n";
    return s;
}

std::string states_line(const TapEngine& e) {
    const auto st = e.state_counts();
    std::string s;
    for (std::size_t i = 0; i < kSourceStates; ++i) {
        if (!s.empty()) s += ", ";
        s += std::to_string(st[i]) + " " + std::string(to_string(SourceState(i)));
    }
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    cli::init("mesh-tap");
    tap::init_process();
    cxxopts::Options opts("mesh-tap", "mesh-tap (--hosts FILE | --list-hosts RELAY | --cache DIR)... --state DIR [options] > FILE.frames\n"
                                      "       mesh-tap (--hosts FILE | …)... --to nats://HOST:PORT/SUBJECT [--shard K/N] [options]");
    opts.add_options()
        ("hosts", "hosts to follow, one per line: URL or host, optionally a label after it", cxxopts::value<std::vector<std::string>>())
        ("list-hosts", "the hosts a relay lists (com.atproto.sync.listHosts, every page)", cxxopts::value<std::vector<std::string>>())
        ("cache", "the PDS endpoints in a DID cache (a plc-sync mirror directory)", cxxopts::value<std::vector<std::string>>())
        ("state", "directory of per-host cursors (created when absent); not with --to nats://, whose cursors live in "
                  "the bucket fh_cursors", cxxopts::value<std::string>())
        ("shard", "follow only the hosts whose rendezvous hash of the label picks K among N taps (1 <= K <= N <= 1000)",
         cxxopts::value<std::string>())
        ("offline-after", "failed attempts in a row before a host is offline (retried hourly)",
         cxxopts::value<std::uint32_t>()->default_value("10"))
        ("max-connecting", "connection attempts in flight at once", cxxopts::value<std::uint32_t>()->default_value("512"))
        ("future-cursor", "a host that answers FutureCursor (its seq went back): 'park' it (offline, named in the summary, "
                          "exit 1) or reconnect it 'live' without a cursor (said on stderr and in the markers)",
         cxxopts::value<std::string>()->default_value("park"));
    tap::add_options(opts);
    auto args = cli::parse(opts, argc, argv);
    if (!args.count("hosts") && !args.count("list-hosts") && !args.count("cache")) {
        cli::diag("no hosts: give --hosts FILE, --list-hosts RELAY or --cache DIR (or several); see --help");
        return cli::kUsage;
    }
    tap::Run run;
    tap::NatsOut nats;
    if (int st = tap::read_options(args, run.engine, run.ws, nats)) return st;
    if (!nats.enabled && !args.count("state")) {
        cli::diag("--state DIR is required (per-host cursors live there), or --to nats://… (cursors in the bucket fh_cursors)");
        return cli::kUsage;
    }
    if (nats.enabled && args.count("state")) {
        cli::diag("--state and --to nats://: with --to the cursors live in the bucket fh_cursors (key: the host's label), "
                  "so that the next owner of a host resumes it; drop --state");
        return cli::kUsage;
    }
    // --shard K/N
    std::uint32_t shard_k = 0, shard_n = 0;
    if (args.count("shard")) {
        const std::string v = args["shard"].as<std::string>();
        const auto slash = v.find('/');
        auto num = [](std::string_view t, std::uint32_t& out) {
            const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
            return !t.empty() && ec == std::errc() && p == t.data() + t.size();
        };
        if (slash == std::string::npos || !num(std::string_view(v).substr(0, slash), shard_k) ||
            !num(std::string_view(v).substr(slash + 1), shard_n) || shard_k < 1 || shard_n > 1000 || shard_k > shard_n) {
            cli::diag("--shard '" + v + "': K/N with 1 <= K <= N <= 1000 (this tap is number K of N)");
            return cli::kUsage;
        }
    }
    // Thousands of connections, each with its own receive buffer whose pages stay resident once
    // a large message has passed: 16 KiB each (64 KiB would be 1.3 GB at 20,000 hosts). Most
    // messages are a few KiB; larger ones arrive in pieces and are reassembled.
    run.ws.rx_buffer = 16384;
    const std::string future = args["future-cursor"].as<std::string>();
    if (future != "park" && future != "live") {
        cli::diag("--future-cursor is 'park' or 'live', not '" + future + "'");
        return cli::kUsage;
    }

    HostList hosts;
    if (args.count("hosts"))
        for (const auto& f : args["hosts"].as<std::vector<std::string>>())
            if (int s = read_hosts_file(f, hosts)) return s;
    if (args.count("list-hosts"))
        for (const auto& r : args["list-hosts"].as<std::vector<std::string>>())
            if (int s = list_hosts(r, run.ws.ca_file, hosts)) return s;
    if (args.count("cache"))
        for (const auto& d : args["cache"].as<std::vector<std::string>>())
            if (int s = cache_hosts(d, hosts)) return s;
    if (hosts.sources.empty()) {
        cli::diag("no hosts to follow");
        return cli::kUsage;
    }
    // Labels must tell hosts apart: the cursors are kept by label.
    {
        std::set<std::string> labels;
        for (const auto& s : hosts.sources)
            if (!labels.insert(s.src).second) {
                cli::diag("two hosts share the label '" + s.src + "'");
                return cli::kUsage;
            }
    }

    // The shard: rendezvous hash of each label, so a tap joining or leaving moves only the
    // hosts it wins or held (with the cursors in the bucket, their next owner resumes them).
    const std::size_t all_hosts = hosts.sources.size();
    std::string shard_text;
    if (shard_n) {
        std::vector<TapSource> mine;
        for (auto& s : hosts.sources)
            if (sov::nats::rendezvous_owner(s.src, shard_n) == shard_k) mine.push_back(std::move(s));
        hosts.sources = std::move(mine);
        shard_text = "shard " + std::to_string(shard_k) + "/" + std::to_string(shard_n) + ": " +
                     std::to_string(hosts.sources.size()) + " of " + std::to_string(all_hosts) + " hosts";
        if (hosts.sources.empty()) {
            cli::diag(shard_text + ": nothing to follow");
            return cli::kOk;
        }
    }

    const std::string state = nats.enabled ? std::string() : args["state"].as<std::string>();
    std::size_t cursor_count = 0;
    std::string cursors_from;
    if (nats.enabled) {
        if (int s = tap::connect_nats(nats, "mesh-tap" + (shard_n ? " " + shard_text.substr(0, shard_text.find(':')) : std::string())))
            return s;
        if (int s = tap::load_bucket_cursors(nats, hosts.sources, cursor_count)) return s;
        cursors_from = std::string("the bucket ") + sov::nats::kCursorBucket;
        run.nats = &nats;
    } else {
        if (::mkdir(state.c_str(), 0755) != 0 && errno != EEXIST)
            return cli::fail(from_errno(errno), state + ": " + std::strerror(errno));
        std::map<std::string, std::int64_t> cursors;
        if (int s = load_cursors(state, cursors)) return s;
        for (auto& s : hosts.sources)
            if (auto it = cursors.find(s.src); it != cursors.end()) s.cursor = it->second, ++cursor_count;
        cursors_from = state;
    }

    // One descriptor per connection: raise the soft limit to the hard one.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < hosts.sources.size() + 64)
        cli::diag("the open-file limit (" + std::to_string(rl.rlim_cur) + ") is below the " +
                  std::to_string(hosts.sources.size()) + " hosts: some connections will fail (raise ulimit -n)");

    run.engine.offline_after = std::max<std::uint32_t>(1, args["offline-after"].as<std::uint32_t>());
    run.engine.max_connecting = std::max<std::uint32_t>(1, args["max-connecting"].as<std::uint32_t>());
    run.engine.skip_relays = true;
    run.engine.future_cursor_fatal = false;
    run.engine.future_cursor_live = future == "live";
    const std::size_t host_count = hosts.sources.size();
    run.sources = std::move(hosts.sources);
    run.metrics_addr = args.count("metrics") ? args["metrics"].as<std::string>() : "";
    run.quiet = args.count("quiet") > 0;
    run.metrics = metrics_text;
    run.progress_note = shard_text;
    std::string last_saved;
    run.save = [&](const TapEngine& e) { return save_cursors(state, e, last_saved); };
    run.started = [&](const TapEngine&) {
        cli::diag(cli::count(host_count, "host") + " to follow" + (shard_n ? " (" + shard_text + ")" : std::string()) +
                  (cursor_count ? ", " + cli::count(cursor_count, "cursor") + " from " + cursors_from : std::string()) +
                  (nats.enabled ? ", publishing to " + nats.text : std::string()));
    };
    std::string states;
    run.stopping = [&](const TapEngine& e) { states = states_line(e); };
    // Hosts whose seq went back (FutureCursor): parked ones are named (they need a person's
    // decision: exit 1), reset ones counted (--future-cursor live).
    std::size_t parked = 0;
    run.summary = [&](const TapEngine& e) {
        const auto& n = e.counters();
        std::string names;
        std::uint64_t resets = 0, reset_hosts = 0;
        parked = 0;
        for (std::size_t i = 0; i < e.source_count(); ++i) {
            if (e.parked(i)) {
                if (parked < 10) names += (parked ? ", " : "") + e.source(i).src;
                ++parked;
            }
            if (const auto r = e.cursor_resets(i)) resets += r, ++reset_hosts;
        }
        std::string s = cli::count(n.messages, "message") + " (" + cli::with_commas(n.bytes) + " bytes) from " +
                        cli::count(host_count, "host") + (shard_n ? " (" + shard_text + ")" : std::string()) + " (" +
                        states + " at the end); " + cli::count(n.connects, "connection") +
                        ", " + cli::count(n.gaps, "gap") + ", " + cli::count(n.duplicates, "duplicate") + " skipped";
        if (parked)
            s += "; " + cli::count(parked, "host") + " parked after FutureCursor (cursor kept; restart with "
                 "--future-cursor live, or remove " + (nats.enabled ? std::string("its key from the bucket fh_cursors")
                                                                    : "its line from " + state + "/" + kCursorFile) + "): " + names +
                 (parked > 10 ? ", …" : "");
        if (resets)
            s += "; " + cli::count(resets, "cursor") + " forgotten after FutureCursor on " + cli::count(reset_hosts, "host") +
                 " (reconnected live)";
        return s;
    };
    const int status = tap::run(run);
    // A parked host is a refused cursor (docs/design.md §8): exit 1 once the others are done.
    return status == cli::kOk && parked ? cli::status(Errc::net_future_cursor) : status;
}
