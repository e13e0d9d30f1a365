// plc-sync — keeps a validated mirror of the PLC directory (docs/design.md §9,
// docs/format-plc-mirror.md): export chunks as served, op store, DID cache, rejected.jsonl.
//   plc-sync -o DIR --from-file EXPORT.jsonl[.zst]   build or extend DIR from an export dump
//   plc-sync lookup -o DIR DID...                    what the cache holds, as JSON lines
//   plc-sync docs -o DIR > did-docs.json             DID documents for cbor-verify --did-docs
// The mirror logic is in lib/plc_mirror.cpp; this file reads input, draws progress and prints.
#include "cli.h"

#include "sovereign/crypto.h"
#include "sovereign/did_cache.h"
#include "sovereign/io.h"
#include "sovereign/plc_mirror.h"
#include "sovereign/syntax.h"
#include "sovereign/net/plc_export.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};
using ojson = nlohmann::ordered_json;

/// Writes `s` to stdout; false when stdout is closed (EPIPE: end quietly) or failed.
bool out(const std::string& s, bool& failed) {
    if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
        failed = errno != EPIPE;
        return false;
    }
    return true;
}

int finish_stdout() {
    if (std::fflush(stdout) != 0 && errno != EPIPE) return cli::fail(sov::from_errno(errno), std::string("stdout: ") + std::strerror(errno));
    return cli::kOk;
}

int lookup(const std::string& dir, const std::vector<std::string>& dids) {
    sov::didcache::Reader r;
    std::string err;
    if (sov::Errc e = sov::didcache::Reader::open(dir + "/" + std::string(sov::didcache::kFileName), r, err); e != sov::Errc::ok)
        return cli::fail(e, err);
    std::uint64_t unknown = 0;
    bool failed = false;
    for (const std::string& did : dids) {
        ojson j;
        j["did"] = did;
        auto rec = r.get(did);
        if (!rec) {
            if (sov::Errc e = r.status(&err); e != sov::Errc::ok) return cli::fail(e, err);
            j["found"] = false;
            cli::diag(did, "not in the cache");
            ++unknown;
        } else {
            j["found"] = true;
            j["pds"] = rec->pds;
            j["handle"] = rec->handle;
            j["tombstoned"] = rec->tombstoned;
            j["deactivated"] = rec->deactivated;
            j["key"] = rec->history.empty() || !rec->history.back().key ? ojson(nullptr)
                                                                        : ojson(sov::crypto::to_did_key(*rec->history.back().key));
            ojson hist = ojson::array();
            for (const auto& ep : rec->history) {
                ojson h;
                h["key"] = ep.key ? ojson(sov::crypto::to_did_key(*ep.key)) : ojson(nullptr);
                h["valid_from"] = sov::syntax::format_datetime_micros(ep.valid_from_us);
                hist.push_back(h);
            }
            j["history"] = hist;
        }
        if (!out(j.dump() + "\n", failed)) break;
    }
    if (failed) return cli::fail(sov::Errc::io_error, "stdout: write failed");
    if (int st = finish_stdout(); st != cli::kOk) return st;
    return unknown ? cli::kDataRejected : cli::kOk;
}

int docs(const std::string& dir) {
    sov::didcache::Reader r;
    std::string err;
    if (sov::Errc e = sov::didcache::Reader::open(dir + "/" + std::string(sov::didcache::kFileName), r, err); e != sov::Errc::ok)
        return cli::fail(e, err);
    std::map<std::string, ojson> all;  // sorted by DID: the same cache gives the same bytes
    if (sov::Errc e = r.for_each([&](const sov::didcache::Record& rec) {
            if (rec.tombstoned) {
                all[rec.did] = nullptr;
                return;
            }
            ojson d;
            d["@context"] = {"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"};
            d["id"] = rec.did;
            d["alsoKnownAs"] = ojson::array();
            if (!rec.handle.empty()) d["alsoKnownAs"].push_back("at://" + rec.handle);
            d["verificationMethod"] = ojson::array();
            if (!rec.history.empty() && rec.history.back().key)
                d["verificationMethod"].push_back({{"id", rec.did + "#atproto"},
                                                   {"type", "Multikey"},
                                                   {"controller", rec.did},
                                                   {"publicKeyMultibase", sov::crypto::to_multikey(*rec.history.back().key)}});
            d["service"] = ojson::array();
            if (!rec.pds.empty())
                d["service"].push_back({{"id", "#atproto_pds"}, {"type", "AtprotoPersonalDataServer"}, {"serviceEndpoint", rec.pds}});
            all[rec.did] = d;
        }, err);
        e != sov::Errc::ok)
        return cli::fail(e, err);
    ojson j = ojson::object();
    for (auto& [did, d] : all) j[did] = std::move(d);
    bool failed = false;
    out(j.dump(1) + "\n", failed);
    if (failed) return cli::fail(sov::Errc::io_error, "stdout: write failed");
    return finish_stdout();
}

/// The progress line: lines, ops/s, position in the input.
struct Progress {
    bool tty = false;
    std::int64_t start = 0, last = 0;
    bool shown = false;
    explicit Progress(bool quiet) {
        // A sync writes nothing to stdout, so a terminal shared by stdout and stderr (the
        // usual interactive case) still gets the progress line.
        tty = !quiet && ::isatty(2);
        start = cli::now_micros();
    }
    void update(std::uint64_t lines, std::uint64_t accepted, std::uint64_t bytes, const std::string& where) {
        if (!tty) return;
        const std::int64_t now = cli::now_micros();
        if (now - last < 250000) return;
        last = now;
        const double secs = double(now - start) / 1e6;
        char buf[256];
        std::snprintf(buf, sizeof buf, "\rplc-sync: %llu lines, %llu accepted, %.0f ops/s, %.1f MB read, at %s\033[K",
                      (unsigned long long)lines, (unsigned long long)accepted, secs > 0 ? double(lines) / secs : 0.0,
                      double(bytes) / 1e6, where.c_str());
        std::fputs(buf, stderr);
        shown = true;
    }
    void finish() {
        if (shown) std::fputs("\r\033[K", stderr);
        shown = false;
    }
};

}  // namespace

/// plc-sync -o DIR --url URL: pages the directory's /export into the open mirror.
int sync_url(sov::plc::Mirror& m, const sov::net::ExportSyncOptions& so, bool quiet) {
    Progress progress(quiet);
    std::int64_t last_note = 0, first_pos = 0, first_at = 0;
    auto on_progress = [&](const sov::net::ExportSyncStats& s) {
        const auto& c = m.cursor();
        std::string where = c.seq ? "seq " + std::to_string(c.seq) : (c.created_at.empty() ? std::string("start") : c.created_at);
        // ETA: how fast the position (createdAt of the last op served) moves towards now.
        if (s.position_us > 0) {
            const std::int64_t now = cli::now_micros();
            if (!first_pos) first_pos = s.position_us, first_at = now;
            const double advance = now > first_at ? double(s.position_us - first_pos) / double(now - first_at) : 0;
            if (s.caught_up) where += ", caught up";
            else if (advance > 0 && now - first_at > 2'000'000) {
                const std::int64_t eta_s = std::int64_t(double(now - s.position_us) / advance / 1e6);
                where += ", ETA " + (eta_s >= 3600 ? std::to_string(eta_s / 3600) + "h" + std::to_string(eta_s % 3600 / 60) + "m"
                                                   : std::to_string(eta_s / 60) + "m" + std::to_string(eta_s % 60) + "s");
            }
        }
        where += ", " + std::to_string(s.requests) + " requests at " + std::to_string(int(s.rate_rps * 10) / 10.0).substr(0, 4) +
                 "/s";
        if (!s.last_problem.empty() && !s.caught_up) where += " (last: " + s.last_problem + ")";
        progress.update(s.lines.lines + s.lines.duplicates, s.lines.accepted, s.bytes, where);
        // Off a TTY, a retried failure is still worth one line a minute: a cron log shows why it is slow.
        if (!progress.tty && !quiet && !s.last_problem.empty() && cli::now_micros() - last_note > 60'000'000) {
            last_note = cli::now_micros();
            cli::diag(so.url, "retrying after " + s.last_problem);
        }
    };
    sov::net::ExportSyncStats stats;
    std::string err;
    sov::Errc e = sov::net::sync_export(m, so, g_stop, stats, on_progress, err);
    progress.finish();
    int status = e == sov::Errc::ok ? cli::kOk : cli::fail(e, err);
    const std::uint64_t dids = m.dids();
    std::string cerr;
    if (sov::Errc ce = m.close(cerr); ce != sov::Errc::ok && status == cli::kOk) status = cli::fail(ce, cerr);
    if (!quiet) {
        std::string retries;
        if (stats.rate_limited) retries += ", " + cli::with_commas(stats.rate_limited) + " rate-limited";
        if (stats.server_errors) retries += ", " + cli::with_commas(stats.server_errors) + " server errors";
        if (stats.network_errors) retries += ", " + cli::with_commas(stats.network_errors) + " network errors";
        std::string end = stats.max_time ? "; stopped by --max-time: the next run resumes" : (stats.caught_up ? "; caught up" : "");
        std::fprintf(stderr, "plc-sync: %s, %s accepted, %s rejected, %s duplicate, %s DIDs; %s%s%s%s\n",
                     cli::count(stats.lines.lines, "line").c_str(), cli::with_commas(stats.lines.accepted).c_str(),
                     cli::with_commas(stats.lines.rejected).c_str(), cli::with_commas(stats.lines.duplicates).c_str(),
                     cli::with_commas(dids).c_str(), cli::count(stats.requests, "request").c_str(), retries.c_str(),
                     end.c_str(), cli::stop_note().c_str());
    }
    return cli::stop_status(status);
}

int main(int argc, char** argv) {
    cli::init("plc-sync");
    cxxopts::Options opts("plc-sync",
                          "Mirror and validate the PLC directory into DIR (export chunks, op store, DID cache).\n"
                          "Usage: plc-sync -o DIR --url URL [--max-time SECONDS] [--follow]\n"
                          "       plc-sync -o DIR --from-file EXPORT.jsonl[.zst]\n"
                          "       plc-sync lookup -o DIR DID...\n"
                          "       plc-sync docs -o DIR > did-docs.json\n");
    opts.add_options()
        ("o,out", "the mirror directory (created when absent)", cxxopts::value<std::string>())
        ("from-file", "build or extend the mirror from an export dump (JSON lines, zstd or not; - = stdin)",
         cxxopts::value<std::string>())
        ("url", "the PLC directory to mirror: pages URL/export from the mirror's cursor (e.g. https://plc.directory)",
         cxxopts::value<std::string>())
        ("max-time", "stop cleanly after the page in flight once this many seconds have passed (for cron)",
         cxxopts::value<double>())
        ("follow", "once caught up, keep polling URL/export for new ops until stopped")
        ("poll-interval", "with --follow: seconds between polls while caught up (default 5)", cxxopts::value<double>())
        ("max-rate", "most requests per second the adaptive rate may reach (default 50; it starts at 2)",
         cxxopts::value<double>())
        ("page-lines", "lines per committed page when reading a file (default 1000)", cxxopts::value<std::uint64_t>())
        ("ops-per-chunk", "lines per export chunk of a new mirror (default 100000; fixed once created)",
         cxxopts::value<std::uint64_t>())
        ("cache-slots", "initial slots of a new DID cache (default 65536; it grows by itself)",
         cxxopts::value<std::uint64_t>())
        ("q,quiet", "no progress and no summary line")
        ("args", "lookup|docs and DIDs", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"args"});
    opts.positional_help("[lookup DID...|docs]");
    auto a = cli::parse(opts, argc, argv);
    std::vector<std::string> pos = a.count("args") ? a["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
    const bool quiet = a.count("quiet") > 0;
    std::string dir = a.count("out") ? a["out"].as<std::string>() : "";

    if (!pos.empty() && (pos[0] == "lookup" || pos[0] == "docs")) {
        const std::string cmd = pos[0];
        pos.erase(pos.begin());
        if (!cli::not_with(a, "args", {"from-file", "url", "max-time", "follow", "poll-interval", "max-rate", "page-lines",
                                       "ops-per-chunk", "cache-slots"}, cmd))
            return cli::kUsage;
        if (dir.empty() && cmd == "docs" && pos.size() == 1) {  // also `plc-sync docs DIR`
            dir = pos[0];
            pos.clear();
        }
        if (dir.empty()) {
            cli::diag(cmd + " needs the mirror directory: -o DIR");
            return cli::kUsage;
        }
        if (cmd == "docs") {
            if (!pos.empty()) {
                cli::diag("docs takes no arguments besides -o DIR");
                return cli::kUsage;
            }
            return docs(dir);
        }
        if (pos.empty()) {
            cli::diag("lookup needs at least one DID");
            return cli::kUsage;
        }
        return lookup(dir, pos);
    }
    if (!pos.empty()) {
        cli::diag("unknown command '" + pos[0] + "' (lookup, docs, or -o DIR --from-file FILE)");
        return cli::kUsage;
    }
    if (dir.empty()) {
        cli::diag("the mirror directory is required: -o DIR (try --help)");
        return cli::kUsage;
    }
    if (a.count("from-file") == a.count("url")) {
        cli::diag(a.count("url") ? "--url and --from-file are two sources: choose one"
                                 : "nothing to sync from: --url URL or --from-file EXPORT.jsonl[.zst]");
        return cli::kUsage;
    }
    for (const char* o : {"max-time", "follow", "poll-interval", "max-rate"})
        if (a.count(o) && !a.count("url")) {
            cli::diag(std::string("--") + o + " paces the network sync: it works only with --url");
            return cli::kUsage;
        }
    if (a.count("page-lines") && a.count("url")) {
        cli::diag("--page-lines sizes pages read from a file; with --url a page is what the server serves");
        return cli::kUsage;
    }
    sov::net::ExportSyncOptions so;
    if (a.count("url")) {
        so.url = a["url"].as<std::string>();
        if (!(so.url.starts_with("http://") || so.url.starts_with("https://"))) {
            cli::diag("--url must be an http:// or https:// URL, not '" + so.url + "'");
            return cli::kUsage;
        }
        so.follow = a.count("follow") > 0;
        if (a.count("max-time")) {
            const double s = a["max-time"].as<double>();
            if (!(s > 0)) {
                cli::diag("--max-time must be a positive number of seconds");
                return cli::kUsage;
            }
            so.max_time_us = std::int64_t(s * 1e6);
        }
        if (a.count("poll-interval")) {
            const double s = a["poll-interval"].as<double>();
            if (!(s > 0)) {
                cli::diag("--poll-interval must be a positive number of seconds");
                return cli::kUsage;
            }
            so.poll_us = std::int64_t(s * 1e6);
        }
        if (a.count("max-rate")) {
            so.rate.max_rps = a["max-rate"].as<double>();
            if (!(so.rate.max_rps >= so.rate.min_rps)) {
                cli::diag("--max-rate must be at least " + std::to_string(so.rate.min_rps) + " requests per second");
                return cli::kUsage;
            }
            so.rate.start_rps = std::min(so.rate.start_rps, so.rate.max_rps);
        }
    }
    const std::uint64_t page_lines = a.count("page-lines") ? a["page-lines"].as<std::uint64_t>() : 1000;
    if (page_lines == 0) {
        cli::diag("--page-lines must be at least 1");
        return cli::kUsage;
    }
    sov::plc::MirrorOptions mo;
    if (a.count("ops-per-chunk")) mo.ops_per_chunk = a["ops-per-chunk"].as<std::uint64_t>();
    if (a.count("cache-slots")) mo.cache_slots = a["cache-slots"].as<std::uint64_t>();
    if (mo.ops_per_chunk == 0) {
        cli::diag("--ops-per-chunk must be at least 1");
        return cli::kUsage;
    }
    const std::string from = a.count("from-file") ? a["from-file"].as<std::string>() : "";

    cli::install_stop_handler(g_stop);
    sov::io::set_interrupt_flag(&g_stop);
    sov::plc::Mirror m;
    std::string err;
    if (sov::Errc e = sov::plc::Mirror::open(dir, m, err, mo); e != sov::Errc::ok) return cli::fail(e, err);
    if (!so.url.empty()) return sync_url(m, so, quiet);

    sov::io::Input in = sov::io::Input::open(from);
    if (in.open_errno()) {
        errno = in.open_errno();
        return cli::fail(sov::from_errno(in.open_errno()), from + ": " + std::strerror(in.open_errno()));
    }
    // A restart of the same import resumes after the last committed page. "The same" is the
    // same path, size and modification time: a dump replaced at the same path (a cron job's)
    // is read from its start, its mirrored lines skipped as duplicates, never skipped by offset.
    std::string source = from;
    if (from != "-") {
        char buf[PATH_MAX];
        if (::realpath(from.c_str(), buf)) source = buf;
        struct stat st {};
        if (::stat(from.c_str(), &st) == 0)
            source += "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtim.tv_sec) + "." +
                      std::to_string(st.st_mtim.tv_nsec);
    }
    std::uint64_t skip = m.cursor().source == source && from != "-" ? m.cursor().source_offset : 0;
    std::uint64_t offset = 0;  // bytes of the (decompressed) input consumed into pages

    Progress progress(quiet);
    sov::plc::PageStats run;
    std::string page, pending;  // pending: bytes read past the page's last line
    std::uint64_t page_count = 0;
    std::vector<std::uint8_t> buf(1 << 16);
    bool eof = false;
    int status = cli::kOk;
    bool cut = false;  // a stop interrupted a read: the partial page is left for the next run
    auto commit = [&]() -> bool {
        sov::plc::PageStats st;
        const std::pair<std::string, std::uint64_t> where{source, offset};
        if (sov::Errc e = m.ingest_page(page, st, err, &where); e != sov::Errc::ok) {
            progress.finish();
            status = cli::fail(e, err);
            return false;
        }
        run.lines += st.lines;
        run.accepted += st.accepted;
        run.rejected += st.rejected;
        run.duplicates += st.duplicates;
        page.clear();
        page_count = 0;
        const auto& c = m.cursor();
        progress.update(run.lines + run.duplicates, run.accepted, offset,
                        c.seq ? "seq " + std::to_string(c.seq) : (c.created_at.empty() ? std::string("start") : c.created_at));
        return true;
    };
    while (!eof && status == cli::kOk) {
        const long n = in.read(buf.data(), buf.size());
        if (n < 0) {
            if (g_stop) {  // interrupted read (a pipe): the partial page is not committed
                cut = true;
                break;
            }
            progress.finish();
            status = cli::fail(sov::Errc::io_error, from + ": " + in.error_text());
            break;
        }
        if (n == 0) eof = true;
        pending.append(reinterpret_cast<const char*>(buf.data()), std::size_t(n));
        std::size_t at = 0;
        for (;;) {
            const auto nl = pending.find('\n', at);
            std::size_t end = nl == std::string::npos ? std::string::npos : nl + 1;
            if (end == std::string::npos) {
                if (!eof || at == pending.size()) break;
                end = pending.size();  // the last line without '\n'
            }
            const std::size_t len = end - at;
            if (skip) {  // already committed by an earlier run of this import
                const std::uint64_t take = std::min<std::uint64_t>(skip, len);
                skip -= take;
                offset += take;
                at += take;
                if (take < len) {
                    progress.finish();
                    cli::diag(from, "the resume offset " + std::to_string(m.cursor().source_offset) +
                                        " is inside a line: the file changed since the last run");
                    return cli::status(sov::Errc::mirror_corrupt);
                }
                continue;
            }
            page.append(pending, at, len);
            offset += len;
            at = end;
            if (++page_count == page_lines && !commit()) break;
            if (g_stop && page_count == 0) break;
        }
        pending.erase(0, at);
        if (g_stop && page_count == 0) break;  // stopped: the page is finished and committed
    }
    if (status == cli::kOk && !page.empty() && !cut) commit();
    progress.finish();
    const std::uint64_t dids = m.dids();
    if (sov::Errc e = m.close(err); e != sov::Errc::ok && status == cli::kOk) status = cli::fail(e, err);
    if (!quiet)
        std::fprintf(stderr, "plc-sync: %s, %s accepted, %s rejected, %s duplicate, %s DIDs%s\n",
                     cli::count(run.lines, "line").c_str(), cli::with_commas(run.accepted).c_str(),
                     cli::with_commas(run.rejected).c_str(), cli::with_commas(run.duplicates).c_str(),
                     cli::with_commas(dids).c_str(), cli::stop_note().c_str());
    return cli::stop_status(status);
}
