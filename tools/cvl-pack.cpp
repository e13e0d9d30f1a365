// cvl-pack — append frame streams to a CVL archive (docs/design.md §4, docs/format-cvl.md).
#include "cli.h"

#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"
#include "sovereign/nats/jetstream.h"
#include "sovereign/nats/route.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
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

// Appends frames one at a time, each journaled at once (kill -9 loses nothing appended), the
// journal fsynced every `fsync_interval` seconds; counts what the summary says.
struct Appender {
    sov::cvl::Writer& w;
    double fsync_interval;
    cli::Progress& progress;
    std::int64_t last_sync = cli::now_micros();
    std::uint64_t frames = 0, record_bytes = 0;

    sov::Errc add(sov::ByteView envelope, std::string& err) {
        if (sov::Errc e = w.append({&envelope, 1}, err); e != sov::Errc::ok) return e;
        ++frames;
        std::int64_t now = cli::now_micros();
        if (fsync_interval <= 0 || double(now - last_sync) >= fsync_interval * 1e6) {
            if (sov::Errc e = w.sync_journal(err); e != sov::Errc::ok) return e;
            last_sync = now;
        }
        progress.update(frames, w.stats().bytes_in);
        return sov::Errc::ok;
    }
};

// Bytes of the uvarint length prefix of a record of `n` bytes (as frame streams count).
std::uint64_t prefix_bytes(std::uint64_t n) {
    std::uint64_t b = 1;
    while (n >= 0x80) n >>= 7, ++b;
    return b;
}

// --from-nats: the messages of a JetStream stream, ordinal = stream sequence − 1. The archive
// is the cursor: reading starts at sequence next_ordinal() + 1 through an ephemeral consumer
// (no acks), reopened there whenever the connection was lost. Returns the exit status; on a
// fatal condition the diagnostic is printed here.
struct NatsSource {
    sov::nats::Connection& conn;
    std::string stream, filter, url;
    double wait_s;  // ≤ 0: follow for ever
    bool writer_failed = false;  // run() ended on an archive write error: nothing to seal

    int run(sov::cvl::Writer& w, Appender& app) {
        namespace nats = sov::nats;
        std::string why, err;
        std::uint64_t expected = w.next_ordinal() + 1;  // the stream sequence of the next ordinal
        nats::Connection::StreamState st;
        if (!conn.stream_state(stream, st, why)) {
            cli::diag(url, why);
            return cli::kSystem;
        }
        if (st.last < expected - 1) {
            cli::diag(url, "the archive holds ordinals 0 to " + cli::with_commas(expected - 2) +
                               " (stream sequences 1 to " + cli::with_commas(expected - 1) + ") but stream " + stream +
                               " ends at sequence " + cli::with_commas(st.last) +
                               ": this archive was not packed from this stream (or the stream was deleted and "
                               "created again)");
            return cli::kDataRejected;
        }
        if (st.first > expected) {
            cli::diag(url, lost_text(expected, st));
            return cli::kDataRejected;
        }
        std::unique_ptr<nats::PullConsumer> consumer;
        std::uint64_t reconnects = 0;              // the connection's count when the consumer opened
        std::uint64_t lost_seq = 0, lost_times = 0;  // a sequence held but not delivered, how often
        std::string last_err;
        auto last_msg = std::chrono::steady_clock::now();
        auto quiet_long = [&] {
            return wait_s > 0 &&
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - last_msg).count() >= wait_s;
        };
        auto retrying = [&](const std::string& text) {
            if (text != last_err) cli::diag(url, text + " (retrying)");
            last_err = text;
            consumer.reset();
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        };
        std::vector<nats::Delivery> batch;
        std::vector<std::uint8_t> held;
        std::string held_subject;
        int status = cli::kOk;
        while (!g_stop.load() && status == cli::kOk) {
            if (consumer && conn.reconnects() != reconnects) {  // the server was away: its consumer may be gone
                cli::diag(url, "reconnected to the server; reading on from stream sequence " + std::to_string(expected));
                consumer.reset();
            }
            if (!consumer) {
                reconnects = conn.reconnects();
                consumer = nats::PullConsumer::open_at(conn, stream, filter, expected, why);
                if (!consumer) {
                    retrying(why);
                    continue;
                }
            }
            batch.clear();
            if (!consumer->fetch(256, 64 << 20, 1000, batch, why)) {
                retrying(why);
                continue;
            }
            last_err.clear();
            if (batch.empty()) {
                if (quiet_long()) break;
                continue;
            }
            last_msg = std::chrono::steady_clock::now();
            for (nats::Delivery& d : batch) {
                if (status != cli::kOk || !consumer) {
                    nats::PullConsumer::drop(d);
                    continue;
                }
                if (d.stream_seq < expected) {  // already archived (a late delivery)
                    nats::PullConsumer::drop(d);
                    continue;
                }
                if (d.stream_seq > expected) {
                    // Sequence `expected` was not delivered: find out why before going on.
                    nats::PullConsumer::drop(d);
                    switch (conn.get_message(stream, expected, held_subject, held, why)) {
                    case nats::Connection::Get::found:
                        if (!filter.empty() && !nats::subject_matches(filter, held_subject)) {
                            cli::diag(url, "stream sequence " + std::to_string(expected) + " is on " + held_subject +
                                               ", outside the filter " + filter +
                                               ": ordinals cannot skip it (pack the whole stream, without filter=)");
                            status = cli::kDataRejected;
                        } else if (lost_seq == expected && ++lost_times >= 3) {
                            cli::diag(url, "stream " + stream + " holds sequence " + std::to_string(expected) +
                                               " but did not deliver it to 3 consumers in a row");
                            status = cli::kDataRejected;
                        } else {
                            if (lost_seq != expected) lost_seq = expected, lost_times = 1;
                            consumer.reset();  // a delivery lost on the way: read again from it
                        }
                        break;
                    case nats::Connection::Get::absent:
                        if (!conn.stream_state(stream, st, why)) st.first = 0;
                        cli::diag(url, st.first > expected
                                           ? lost_text(expected, st)
                                           : "stream " + stream + " has no sequence " + std::to_string(expected) +
                                                 " (deleted: a hole, sequence " + std::to_string(d.stream_seq) +
                                                 " follows): ordinal " + cli::with_commas(expected - 1) +
                                                 " cannot be skipped; see cvl-pack(1), FROM NATS");
                        status = cli::kDataRejected;
                        break;
                    case nats::Connection::Get::error:
                        cli::diag(url, why + " (retrying)");
                        consumer.reset();
                        break;
                    }
                    continue;
                }
                sov::frames::Envelope env;
                if (sov::Located e = sov::frames::parse_envelope(d.data, env)) {
                    cli::diag(url + " stream seq " + std::to_string(d.stream_seq) + " (" + d.subject + "):" +
                                  std::to_string(e.offset),
                              "not a frame envelope: " + std::string(sov::to_string(e.errc)));
                    nats::PullConsumer::drop(d);
                    status = cli::kDataRejected;
                    continue;
                }
                sov::Errc e = app.add(d.data, err);
                app.record_bytes += d.data.size() + prefix_bytes(d.data.size());
                nats::PullConsumer::drop(d);
                if (e != sov::Errc::ok) {
                    for (auto& x : batch)
                        if (x.msg) nats::PullConsumer::drop(x);
                    writer_failed = true;
                    return cli::fail(e, err);
                }
                ++expected;
            }
        }
        return status;
    }

    std::string lost_text(std::uint64_t expected, const sov::nats::Connection::StreamState& st) const {
        return "stream " + stream + " no longer holds sequence " + std::to_string(expected) + " (ordinal " +
               cli::with_commas(expected - 1) + "): its first sequence is " + std::to_string(st.first) +
               " (aged out, purged or deleted); ordinals cannot skip: see cvl-pack(1), FROM NATS";
    }
};
}  // namespace

int main(int argc, char** argv) {
    cli::init("cvl-pack");
    cxxopts::Options opts("cvl-pack",
                          "Append frame streams to a CVL archive (created if missing).\n"
                          "Usage: cvl-pack -o DIR [OPTIONS] [FILE...]   (no FILE or '-' reads stdin)\n"
                          "       cvl-pack -o DIR [OPTIONS] --from-nats 'nats://HOST:PORT/STREAM[?filter=SUBJECT]'\n"
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
        ("from-nats", "append the messages of a JetStream stream, ordinal = stream sequence - 1: "
                      "nats://HOST:PORT/STREAM[?filter=SUBJECT]",
         cxxopts::value<std::string>())
        ("wait", "with --from-nats: stop after this many seconds without a message (default: follow for ever)",
         cxxopts::value<double>())
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
                           {"from-nats", "wait", "shards", "level", "segment-messages", "segment-bytes", "cluster-bytes",
                            "retrain", "dict-bytes", "fsync-interval"}))
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

    // --from-nats: checked and connected before the archive is opened (or created).
    namespace nats = sov::nats;
    std::unique_ptr<nats::Connection> nats_conn;
    std::optional<NatsSource> nats_src;
    if (args.count("wait") && !args.count("from-nats")) {
        cli::diag("--wait works only with --from-nats");
        return cli::kUsage;
    }
    if (args.count("from-nats")) {
        const std::string text = args["from-nats"].as<std::string>();
        nats::Url u;
        std::string why;
        if (args.count("files")) {
            cli::diag("--from-nats reads JetStream, not files: drop the FILE arguments");
            return cli::kUsage;
        }
        if (!nats::parse_url(text, u, why)) {
            cli::diag("--from-nats", why);
            return cli::kUsage;
        }
        if (u.path.empty() || u.path.find_first_of("./*> \t") != std::string::npos) {
            cli::diag("--from-nats",
                      "give a stream name: nats://HOST:PORT/STREAM[?filter=SUBJECT] (e.g. nats://127.0.0.1:4222/FH_VRD)");
            return cli::kUsage;
        }
        for (const auto& [k, v] : u.query)
            if (k != "filter" || v.empty()) {
                cli::diag("--from-nats", "unknown or empty parameter '" + k +
                                             "' (only filter=SUBJECT; the archive is the cursor, no consumer name)");
                return cli::kUsage;
            }
        double wait_s = -1;
        if (args.count("wait")) {
            wait_s = args["wait"].as<double>();
            if (!(wait_s > 0 && wait_s <= 86400.0 * 365)) {
                cli::diag("--wait must be a positive number of seconds");
                return cli::kUsage;
            }
        }
        nats_conn = nats::Connection::open(u.server, "cvl-pack " + dir, why);
        if (!nats_conn || !nats_conn->check_stream(u.path, why)) {
            cli::diag(u.server, why);
            return cli::kSystem;
        }
        nats_src.emplace(NatsSource{*nats_conn, u.path, u.param("filter").value_or(""), text, wait_s});
    }

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
    if (files.empty() && !nats_src) files.push_back("-");
    cli::Progress progress(quiet, nats_src ? 0 : cli::input_size(files));
    Appender app{*w, fsync_interval, progress};
    const std::uint64_t first_ordinal = w->next_ordinal();  // of this run (after recovery)
    if (nats_src) {
        const int s = nats_src->run(*w, app);
        // Without a server or a stream, or after a write error, there is nothing to seal; after
        // a stream that cannot continue (exit 1) what was appended is sealed as at a framing error.
        if (nats_src->writer_failed || (s != cli::kOk && s != cli::kDataRejected)) return s;
        status = std::max(status, s);
    }
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
            if (sov::Errc e = app.add(env.raw, err); e != sov::Errc::ok) return cli::fail(e, err);
        }
        app.record_bytes += r.bytes_read();
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
    const std::uint64_t frames = app.frames, record_bytes = app.record_bytes;
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
