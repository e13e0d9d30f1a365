// cvl-pack — append frame streams to a CVL archive (docs/design.md §4, docs/format-cvl.md).
#include "cli.h"

#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

namespace {
std::atomic<bool> g_stop{false};

// The options fixed when an archive is created, with their cvl.json keys and the value a
// cvl.json without the key means (format §2; not always the default of a new archive).
struct Fixed {
    const char* option;
    const char* key;
    std::uint64_t absent;
};
constexpr Fixed kFixed[] = {{"shards", "shards", 16},
                            {"segment-messages", "segment_messages", 65536},
                            {"segment-bytes", "segment_bytes", 64ull << 20},
                            {"cluster-bytes", "cluster_bytes", 256u << 10},
                            {"retrain", "retrain_every", 8},
                            {"dict-bytes", "dict_bytes", 112640}};

// An existing archive keeps the values it was created with: an option given with another
// value would be ignored, so it is refused (exit 2). A cvl.json that cannot be read is left
// to Writer::open to report.
bool fixed_options_agree(const cxxopts::ParseResult& args, const std::string& dir) {
    std::ifstream f(dir + "/cvl.json");
    if (!f) return true;
    auto j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return true;
    for (const auto& x : kFixed) {
        if (!args.count(x.option)) continue;
        std::uint64_t given = x.option == std::string("segment-bytes") ? args[x.option].as<std::uint64_t>()
                              : x.option == std::string("shards") || x.option == std::string("retrain")
                                  ? std::uint64_t(args[x.option].as<unsigned>())
                                  : std::uint64_t(args[x.option].as<std::uint32_t>());
        std::uint64_t have = x.absent;
        if (j.contains(x.key)) {
            if (!j[x.key].is_number_unsigned()) return true;
            have = j[x.key].get<std::uint64_t>();
        }
        if (given != have) {
            cli::diag(dir, "--" + std::string(x.option) + " " + std::to_string(given) + " differs from this archive's " +
                               std::to_string(have) + " (fixed when the archive was created; omit the option)");
            return false;
        }
    }
    return true;
}
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
        ("cluster-bytes", "split a DID's messages in a segment into clusters of at most this many bytes (new archives only)",
         cxxopts::value<std::uint32_t>()->default_value("65536"))
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
        if (args.count("files")) {
            cli::diag("--compact rewrites the archive in place and reads no input: append the files in a separate run");
            return cli::kUsage;
        }
        if (!cli::not_with(args, "compact",
                           {"shards", "level", "segment-messages", "segment-bytes", "cluster-bytes", "retrain",
                            "dict-bytes", "fsync-interval"}))
            return cli::kUsage;
        std::uint64_t purged = 0;
        std::string err;
        if (sov::Errc e = sov::cvl::compact(dir, threads, purged, err); e != sov::Errc::ok) return cli::fail(e, err);
        if (!quiet) cli::diag(dir, "compacted: " + cli::count(purged, "tombstoned message") + " purged");
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
    if (!fixed_options_agree(args, dir)) return cli::kUsage;

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
        cli::diag(dir, cli::count(w->stats().recovered, "frame") + " recovered from the journal");
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
    cli::Progress progress(quiet, cli::input_size(files));
    std::int64_t last_sync = cli::now_micros();
    std::uint64_t frames = 0, record_bytes = 0;
    const std::uint64_t first_ordinal = w->next_ordinal();  // of this run (after recovery)
    for (const auto& path : files) {
        if (g_stop.load()) break;
        sov::frames::Reader r = sov::frames::Reader::open(path);
        if (r.open_errno()) {
            cli::diag(path, std::strerror(r.open_errno()));
            status = std::max(status, cli::status(sov::from_errno(r.open_errno())));
            continue;
        }
        sov::frames::Envelope env;
        // No stop check here: after a signal the reader reads nothing more (sov::io), and every
        // frame already read is still journaled.
        while (r.next(env)) {
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
        record_bytes += r.bytes_read();
        if (r.error() && !g_stop.load()) {
            status = std::max<int>(status, cli::framing_error(r));
            break;  // frames before the error are kept (and sealed below)
        }
    }
    progress.finish();
    if (g_stop.load()) {
        w->sync_journal(err);
        cli::diag(dir, "interrupted: " + cli::count(w->next_ordinal(), "frame") +
                           (w->next_ordinal() == 1 ? " is" : " are") + " safe (the unsealed ones in the journal)");
    } else {
        sov::Errc e = w->seal(err);
        if (e == sov::Errc::ok) e = w->sync_journal(err);
        if (e != sov::Errc::ok) return cli::fail(e, err);
    }
    const auto& s = w->stats();
    if (!quiet) {
        char ratio[32];
        std::snprintf(ratio, sizeof ratio, "%.2f", s.bytes_out ? double(s.bytes_in) / double(s.bytes_out) : 0.0);
        // Ordinals: those of this run's frames, the last one inclusive. Bytes in: record
        // bytes read, length prefixes included (as frame-cat and cvl-cat count them); bytes
        // out: what the sealed segments' data files hold; the ratio is envelopes to stored.
        std::uint64_t next = w->next_ordinal();
        std::string ords = frames ? (frames == 1 ? "ordinal " + cli::with_commas(first_ordinal)
                                                 : "ordinals " + cli::with_commas(first_ordinal) + " to " +
                                                       cli::with_commas(next - 1))
                                  : next ? "last ordinal " + cli::with_commas(next - 1) : "archive empty";
        cli::diag(cli::count(frames, "frame") + " appended (" + ords + "), " + cli::count(s.segments_sealed, "segment") +
                  " sealed, " + cli::count(s.dictionaries, "dictionary", "dictionaries") + " trained; " +
                  cli::count(record_bytes, "byte") + " in, " + cli::count(s.bytes_out, "byte") + " out (ratio " + ratio + ")" + cli::stop_note());
    }
    return cli::stop_status(status);
}
