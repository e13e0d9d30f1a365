// cvl-pack — append frame streams to a CVL archive (docs/design.md §4, docs/format-cvl.md).
#include "cli.h"

#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

namespace {
std::atomic<bool> g_stop{false};
}  // namespace

int main(int argc, char** argv) {
    cli::init("cvl-pack");
    cxxopts::Options opts("cvl-pack",
                          "Append frame streams to a CVL archive (created if missing).\n"
                          "Usage: cvl-pack -o DIR [OPTIONS] [FILE...]   (no FILE or '-' reads stdin)\n"
                          "       cvl-pack -o DIR --compact\n");
    opts.add_options()
        ("o,output", "archive directory", cxxopts::value<std::string>())
        ("shards", "shard directories (new archives only)", cxxopts::value<unsigned>()->default_value("16"))
        ("level", "zstd compression level", cxxopts::value<int>()->default_value("3"))
        ("segment-messages", "seal a segment at this many messages (new archives only)",
         cxxopts::value<std::uint32_t>()->default_value("65536"))
        ("segment-bytes", "…or at this many bytes of envelopes (new archives only)",
         cxxopts::value<std::uint64_t>()->default_value("67108864"))
        ("cluster-bytes", "split a DID's messages in a segment into clusters of at most this many bytes",
         cxxopts::value<std::uint32_t>()->default_value("262144"))
        ("retrain", "train a new zstd dictionary every N segments (new archives only)",
         cxxopts::value<unsigned>()->default_value("8"))
        ("dict-bytes", "dictionary size (new archives only)", cxxopts::value<std::uint32_t>()->default_value("112640"))
        ("threads", "compression threads (default: the number of cores)", cxxopts::value<unsigned>())
        ("fsync-interval", "fsync the journal every S seconds (power-loss window); 0 = after every frame",
         cxxopts::value<double>()->default_value("1"))
        ("compact", "purge the content of tombstoned messages, keeping their leaf hashes")
        ("q,quiet", "no summary line")
        ("files", "input files", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"files"});
    opts.positional_help("[FILE...]");
    auto args = cli::parse(opts, argc, argv);
    if (!args.count("output")) {
        cli::diag("-o DIR is required (try --help)");
        return cli::kUsage;
    }
    std::string dir = args["output"].as<std::string>();
    unsigned threads = args.count("threads") ? args["threads"].as<unsigned>() : std::max(1u, std::thread::hardware_concurrency());
    bool quiet = args.count("quiet") > 0;

    if (args.count("compact")) {
        std::uint64_t purged = 0;
        std::string err;
        if (sov::Errc e = sov::cvl::compact(dir, threads, purged, err); e != sov::Errc::ok) return cli::fail(e, err);
        if (!quiet) cli::diag(dir, "compacted: " + cli::with_commas(purged) + " tombstoned messages purged");
        return cli::kOk;
    }

    sov::cvl::Params p;
    p.shards = args["shards"].as<unsigned>();
    p.level = args["level"].as<int>();
    p.segment_messages = args["segment-messages"].as<std::uint32_t>();
    p.segment_bytes = args["segment-bytes"].as<std::uint64_t>();
    p.cluster_bytes = args["cluster-bytes"].as<std::uint32_t>();
    p.retrain_every = args["retrain"].as<unsigned>();
    p.dict_bytes = args["dict-bytes"].as<std::uint32_t>();
    if (p.shards == 0 || p.shards > 99 || p.segment_messages == 0 || p.segment_bytes == 0 || p.cluster_bytes == 0) {
        cli::diag("--shards must be 1..99 and segment/cluster limits positive");
        return cli::kUsage;
    }
    double fsync_interval = args["fsync-interval"].as<double>();

    std::string err;
    sov::Errc code;
    auto w = sov::cvl::Writer::open(dir, p, threads, err, &code);
    if (!w) {
        // One diagnostic per line (a missing index can have several findings).
        for (std::size_t start = 0;;) {
            std::size_t nl = err.find('\n', start);
            cli::diag(std::string_view(err).substr(start, nl == std::string::npos ? std::string::npos : nl - start));
            if (nl == std::string::npos) break;
            start = nl + 1;
        }
        return cli::status(code);
    }
    if (w->stats().recovered && !quiet)
        cli::diag(dir, cli::with_commas(w->stats().recovered) + " frames recovered from the journal");
    // A damaged journal: what could be read is recovered and the work goes on, but the run
    // fails (exit 1) so that the damage is not mistaken for a clean recovery.
    int status = cli::kOk;
    for (const auto& line : w->recovery_problems()) {
        cli::diag(line);
        status = cli::status(sov::Errc::cvl_journal);
    }
    cli::install_stop_handler(g_stop);

    std::vector<std::string> files;
    if (args.count("files")) files = args["files"].as<std::vector<std::string>>();
    if (files.empty()) files.push_back("-");
    cli::Progress progress;
    std::int64_t last_sync = cli::now_micros();
    std::uint64_t frames = 0;
    for (const auto& path : files) {
        if (g_stop.load()) break;
        sov::frames::Reader r = sov::frames::Reader::open(path);
        if (r.open_errno()) {
            cli::diag(path, std::strerror(r.open_errno()));
            status = std::max(status, cli::status(sov::from_errno(r.open_errno())));
            continue;
        }
        sov::frames::Envelope env;
        while (!g_stop.load() && r.next(env)) {
            // One frame at a time: journaled the moment it is read (kill -9 loses nothing read).
            if (sov::Errc e = w->append({&env.raw, 1}, err); e != sov::Errc::ok) return cli::fail(e, err);
            ++frames;
            std::int64_t now = cli::now_micros();
            if (fsync_interval <= 0 || double(now - last_sync) >= fsync_interval * 1e6) {
                if (sov::Errc e = w->sync_journal(err); e != sov::Errc::ok) return cli::fail(e, err);
                last_sync = now;
            }
            progress.update(frames, w->stats().bytes_in);
        }
        if (r.error() && !g_stop.load()) {
            status = std::max<int>(status, cli::framing_error(r));
            break;  // frames before the error are kept (and sealed below)
        }
    }
    progress.finish();
    if (g_stop.load()) {
        w->sync_journal(err);
        cli::diag(dir, "interrupted: " + cli::with_commas(w->next_ordinal()) + " frames are safe (the unsealed ones in the journal)");
    } else {
        sov::Errc e = w->seal(err);
        if (e == sov::Errc::ok) e = w->sync_journal(err);
        if (e != sov::Errc::ok) return cli::fail(e, err);
    }
    const auto& s = w->stats();
    if (!quiet) {
        char ratio[32];
        std::snprintf(ratio, sizeof ratio, "%.2f", s.bytes_out ? double(s.bytes_in) / double(s.bytes_out) : 0.0);
        cli::diag(cli::with_commas(s.messages) + " frames appended (ordinals up to " + cli::with_commas(w->next_ordinal()) +
                  "), " + cli::with_commas(s.segments_sealed) + " segments sealed, " + cli::with_commas(s.dictionaries) +
                  " dictionaries trained; " + cli::with_commas(s.bytes_in) + " bytes in, " + cli::with_commas(s.bytes_out) +
                  " bytes out (ratio " + ratio + ")");
    }
    return status;
}
