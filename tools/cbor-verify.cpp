// cbor-verify — verify frame streams and stamp each frame with a verdict (docs/design.md §3).
#include "cli.h"

#include "sovereign/did_cache.h"
#include "sovereign/did_doc.h"
#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/nats/frame_publisher.h"
#include "sovereign/nats/jetstream.h"
#include "sovereign/nats/route.h"
#include "sovereign/verify.h"
#include "sovereign/verify_engine.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <cstring>
#include <thread>
#include <fcntl.h>
#include <sys/stat.h>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

// Keys from a DID-documents JSON file (DID → document), as captured beside the corpus.

std::atomic<bool> g_stop{false};

// Pipes default to 64 KiB, and a reader that keeps up with its writer gets a page per read():
// at ~1 KiB per small frame that is a system call every few frames. 1 MiB (the default
// /proc/sys/fs/pipe-max-size) lets each read and write move up to a batch's worth. Best effort:
// not a pipe, or a lower limit, leaves the pipe as it was.
void widen_pipe(int fd) {
#ifdef F_SETPIPE_SZ
    (void)::fcntl(fd, F_SETPIPE_SZ, 1 << 20);
#else
    (void)fd;
#endif
}

// A batch of records held in the reader's buffer (Reader::hold: no copy of its own), as
// offsets from its held_data(). Besides --batch frames, a batch is cut at kBatchBytes so that
// the records stay in the core's cache until the verifier reads them (a 1,024-frame batch of
// commits is ~5 MiB) and the reader's buffer need not grow.
constexpr std::size_t kBatchBytes = 256u << 10;

struct Batch {
    std::size_t bytes = 0;                                         // envelope bytes held
    std::vector<std::pair<std::size_t, std::uint64_t>> records;  // (envelope offset from held_data(), record offset in the input)
    std::vector<sov::frames::EnvelopeLayout> layouts;             // field positions: no second parse

    std::vector<sov::frames::Envelope> envs;
    std::vector<std::string> scopes;  // --nats: the seq scope of envs[i], "SRC PP" (empty: per src)
    std::vector<sov::verify::FrameIn> in;  // the messages only (markers never reach the verifier)
    std::vector<sov::verify::Outcome> out;
    void clear() {
        bytes = 0;
        records.clear();
        layouts.clear();
    }
};

// The output of --nats: records appended to buffer() (as to a frames::Writer) are published
// by maybe_flush() through FramePublisher, each envelope to fh.vrd.<pp> with its match key as
// Nats-Msg-Id.
class NatsOut {
public:
    explicit NatsOut(sov::nats::FramePublisher& pub) : pub_(pub) {}
    std::vector<std::uint8_t>& buffer() noexcept { return buf_; }
    void maybe_flush() {
        if (error_.empty() && pub_.publish_records(sov::ByteView(buf_.data(), buf_.size()), error_))
            written_ += buf_.size();
        buf_.clear();
    }
    bool failed() const noexcept { return !error_.empty(); }
    bool broken_pipe() const noexcept { return false; }
    const std::string& error() const noexcept { return error_; }
    std::uint64_t bytes_written() const noexcept { return written_; }

private:
    sov::nats::FramePublisher& pub_;
    std::vector<std::uint8_t> buf_;
    std::string error_;
    std::uint64_t written_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    cli::init("cbor-verify");
    cxxopts::Options opts("cbor-verify",
                          "Verify frame streams: writes passing frames (ok, ok-gap, skip) with `vrd` set.\n"
                          "Usage: cbor-verify (--did-docs FILE | --cache DIR) [OPTIONS] [FILE...]   (no FILE or '-' reads stdin)\n"
                          "       cbor-verify (--did-docs FILE | --cache DIR) --nats nats://HOST:PORT [--own K/N] --state FILE\n");
    opts.add_options()
        ("did-docs", "JSON object DID → DID document giving signing keys (*.zst accepted)",
         cxxopts::value<std::string>())
        ("cache", "signing keys from the DID cache of a PLC mirror (plc-sync -o DIR): the key each DID had "
                  "at the frame's recv time", cxxopts::value<std::string>())
        ("check-pds", "with --cache: a #commit/#sync whose src is not its DID's PDS host is wrong-pds")
        ("annotate", "write every frame, rejected ones too, each with its verdict")
        ("rejects", "also write rejected frames (with their verdict) to FILE", cxxopts::value<std::string>())
        ("strict", "exit 1 if any frame is rejected")
        ("threads", "verification threads (default: the number of cores)", cxxopts::value<std::size_t>())
        ("lenient", "let legacy commits without prevData pass without MST inversion")
        ("state", "load per-DID and per-src state from FILE at start and save it at the end (and every minute)",
         cxxopts::value<std::string>())
        ("max-dids", "most DIDs kept in the state (least recently used are forgotten)",
         cxxopts::value<std::size_t>()->default_value("1000000"))
        ("batch", "frames verified per batch (bounds memory)", cxxopts::value<std::size_t>()->default_value("1024"))
        ("max-reports", "print at most N rejection reasons on stderr (0 = none)",
         cxxopts::value<std::uint64_t>()->default_value("20"))
        ("nats", "read the partitions this verifier owns from JetStream (stream FH_SRC, consumer verify-PP each) and "
                 "publish passing frames to fh.vrd.PP (stream FH_VRD), instead of files and stdout",
         cxxopts::value<std::string>())
        ("own", "with --nats: this verifier is K of N and owns the partitions whose rendezvous hash picks K",
         cxxopts::value<std::string>()->default_value("1/1"))
        ("partitions", "with --nats: the number of partitions of the deployment (1-100)",
         cxxopts::value<std::uint32_t>()->default_value("16"))
        ("wait", "with --nats: stop after this many seconds without a message (default: follow for ever)",
         cxxopts::value<double>())
        ("force", "write frames to stdout even when it is a terminal")
        ("q,quiet", "no summary line, no rejection reasons and no progress")
        ("files", "input files", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"files"});
    opts.positional_help("[FILE...]");
    auto args = cli::parse(opts, argc, argv);

    bool annotate = args.count("annotate") > 0;
    bool strict = args.count("strict") > 0;
    bool quiet = args.count("quiet") > 0;
    std::uint64_t max_reports = quiet ? 0 : args["max-reports"].as<std::uint64_t>();
    // --nats: partitions from JetStream to JetStream (docs/design.md §12).
    const bool nats_mode = args.count("nats") > 0;
    namespace nats = sov::nats;
    nats::Url nats_url;
    std::uint32_t own_k = 1, own_n = 1, partitions = args["partitions"].as<std::uint32_t>();
    double nats_wait = -1;
    {
        std::string why;
        if (nats_mode && !nats::parse_url(args["nats"].as<std::string>(), nats_url, why)) {
            cli::diag("--nats", why);
            return cli::kUsage;
        }
        for (const char* o : {"own", "partitions", "wait"})
            if (args.count(o) && !nats_mode) {
                cli::diag(std::string("--") + o + " works only with --nats");
                return cli::kUsage;
            }
        if (nats_mode && args.count("files")) {
            cli::diag("--nats reads JetStream, not files: drop the FILE arguments");
            return cli::kUsage;
        }
        const std::string own = args["own"].as<std::string>();
        if (std::sscanf(own.c_str(), "%u/%u", &own_k, &own_n) != 2 || own_n < 1 || own_n > 1000 || own_k < 1 ||
            own_k > own_n || own.find_first_not_of("0123456789/") != std::string::npos) {
            cli::diag("--own must be K/N with 1 <= K <= N <= 1000 (e.g. 2/3)");
            return cli::kUsage;
        }
        if (partitions < 1 || partitions > 100) {
            cli::diag("--partitions must be between 1 and 100");
            return cli::kUsage;
        }
        if (args.count("wait")) {
            nats_wait = args["wait"].as<double>();
            if (!(nats_wait > 0)) {
                cli::diag("--wait must be a positive number of seconds");
                return cli::kUsage;
            }
        }
    }
    if (!nats_mode && cli::refuse_terminal(1, args.count("force") > 0)) return cli::kUsage;

    std::vector<std::string> files;
    if (args.count("files")) files = args["files"].as<std::vector<std::string>>();
    if (files.empty()) files.push_back("-");
    // Output paths must not be inputs: opening them truncates the input before it is read.
    std::vector<std::string> inputs = files;
    if (args.count("did-docs")) inputs.push_back(args["did-docs"].as<std::string>());
    if (args.count("rejects") && cli::refuse_same_file(args["rejects"].as<std::string>(), inputs, "--rejects"))
        return cli::kUsage;
    if (args.count("rejects")) inputs.push_back(args["rejects"].as<std::string>());
    if (args.count("state") && cli::refuse_same_file(args["state"].as<std::string>(), inputs, "--state"))
        return cli::kUsage;

    // --did-docs is read when the first frame has arrived (or the input ended), not at start:
    // a producer in the same pipeline (mesh-sim gen --did-docs d.json | cbor-verify --did-docs
    // d.json) writes the file before its first frame, so the file read is complete and its own.
    sov::KeyStore store;
    bool keys_loaded = false;
    auto load_keys = [&]() -> int {
        if (keys_loaded) return cli::kOk;
        keys_loaded = true;
        if (!args.count("did-docs")) return cli::kOk;
        std::string detail;
        std::string path = args["did-docs"].as<std::string>();
        sov::Errc e = store.load_json_file(path, detail);
        if (e != sov::Errc::ok) {
            cli::diag(path, std::string(sov::to_string(e)) + (detail.empty() ? "" : ": " + detail));
            return cli::status(e);
        }
        return cli::kOk;
    };
    if (args.count("cache") && args.count("did-docs")) {
        cli::diag("--cache and --did-docs both give keys: choose one");
        return cli::kUsage;
    }
    if (args.count("check-pds") && !args.count("cache")) {
        cli::diag("--check-pds needs --cache (DID documents carry no PDS history here)");
        return cli::kUsage;
    }
    // --cache: the mirror's memory-mapped DID cache, opened now (plc-sync may keep updating it;
    // the reader follows). DIR or the cache file itself.
    sov::didcache::Reader cache;
    std::string cache_path;
    if (args.count("cache")) {
        cache_path = args["cache"].as<std::string>();
        struct stat st;
        if (::stat(cache_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
            cache_path += "/" + std::string(sov::didcache::kFileName);
        std::string err;
        if (sov::Errc e = sov::didcache::Reader::open(cache_path, cache, err); e != sov::Errc::ok) {
            cli::diag(err.empty() ? cache_path + ": " + std::string(sov::to_string(e)) : err);
            return cli::status(e);
        }
    }
    if (!args.count("did-docs") && !args.count("cache"))
        cli::diag("neither --did-docs nor --cache given: every commit will be no-key");
    sov::verify::StoreKeys doc_keys(store);
    sov::didcache::CacheKeys cache_keys(cache);
    const sov::verify::KeySource& keys =
        args.count("cache") ? static_cast<const sov::verify::KeySource&>(cache_keys) : doc_keys;

    int rejects_fd = -1;
    if (args.count("rejects")) {
        std::string path = args["rejects"].as<std::string>();
        rejects_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (rejects_fd < 0) {
            cli::diag(path, std::strerror(errno));
            return cli::kSystem;
        }
    }

    std::size_t threads = args.count("threads") ? args["threads"].as<std::size_t>()
                                                : std::max<std::size_t>(1, std::thread::hardware_concurrency());
    if (threads == 0 || threads > 256) {
        cli::diag("--threads must be between 1 and 256");
        return cli::kUsage;
    }
    std::size_t batch_size = std::max<std::size_t>(1, args["batch"].as<std::size_t>());
    sov::verify::Engine engine(keys, threads, args.count("lenient") > 0, args["max-dids"].as<std::size_t>(),
                               args.count("check-pds") > 0);
    std::string state_path = args.count("state") ? args["state"].as<std::string>() : "";
    if (!state_path.empty()) {
        std::string err;
        sov::Errc e = engine.state().load(state_path, err);
        if (e != sov::Errc::ok) {
            cli::diag(err);
            return cli::status(e);
        }
        // Saving what was loaded proves now, not after the whole input, that the state can be
        // written where it must go (temp file beside it, rename, directory fsync).
        if (e = engine.state().save(state_path, err); e != sov::Errc::ok) {
            cli::diag("--state: " + err);
            return cli::status(e);
        }
    }
    auto save_state = [&]() -> bool {
        if (state_path.empty()) return true;
        std::string err;
        if (engine.state().save(state_path, err) != sov::Errc::ok) {
            cli::diag(err);
            return false;
        }
        return true;
    };
    cli::install_stop_handler(g_stop);
    widen_pipe(0);
    widen_pipe(1);

    sov::frames::Writer out(1);
    std::optional<sov::frames::Writer> rej;
    if (rejects_fd >= 0) rej.emplace(rejects_fd);
    std::array<std::uint64_t, sov::verify::kVerdictCount> counts{};
    std::uint64_t frames = 0, bytes_in = 0, reported = 0, markers = 0;
    cli::Progress progress(quiet, cli::input_size(files));
    int status = cli::kOk;
    std::int64_t last_save = cli::now_micros();
    Batch b;

    // Verifies the n envelopes of b.envs and appends to `sink` (a frames::Writer, or NatsOut) the
    // records to write: markers unchanged and in place, passing frames with `vrd`, rejected ones
    // with --annotate (and to --rejects). where(i): "FILE:OFFSET" of envelope i, for diagnostics.
    auto verify_envs = [&](std::size_t n, auto&& where_of, auto& sink) {
        b.in.clear();
        for (std::size_t i = 0; i < n; ++i)
            if (!b.envs[i].is_marker())
                b.in.push_back({b.envs[i].wire, b.envs[i].recv, b.envs[i].src, i < b.scopes.size() ? std::string_view(b.scopes[i]) : std::string_view()});
        b.out.resize(b.in.size());
        engine.run(b.in, b.out);
        // j: the message's place among the verified ones (outcomes and facts).
        for (std::size_t i = 0, j = 0; i < n; ++i) {
            const auto& env = b.envs[i];
            if (env.is_marker()) {
                // Markers pass unchanged and in place, with no verdict (docs/design.md §2); the
                // verifier never sees them, so they touch no verification state.
                sov::frames::append_record_raw(sink.buffer(), env);
                sink.maybe_flush();
                ++markers;
                continue;
            }
            const std::size_t mi = j++;
            const auto& o = b.out[mi];
            ++counts[std::size_t(o.verdict)];
            std::string_view vrd = sov::verify::to_string(o.verdict);
            bool pass = sov::verify::passes(o.verdict);
            // "FILE:OFFSET" for a diagnostic: built only when one is printed, not per frame.
            auto where = [&] { return where_of(i); };
            // D13: a passing frame whose envelope with `vrd` would exceed 16 MiB cannot be
            // written (no reader accepts the record): it is rejected as too-big instead.
            if (pass && !sov::frames::append_record_with_verdict(sink.buffer(), env, vrd)) {
                --counts[std::size_t(o.verdict)];
                ++counts[std::size_t(sov::verify::Verdict::too_big)];
                cli::diag(where(), "too-big: the envelope (" + cli::with_commas(env.raw.size()) +
                                     " bytes) with its verdict would exceed the 16 MiB record limit; not written");
                continue;
            }
            if (pass) {
                sink.maybe_flush();
                continue;
            }
            // Rejected: `why` carries the reason in words beside `vrd` (docs/design.md §2).
            std::string_view why = o.detail.empty() ? vrd : std::string_view(o.detail);
            // Without `why` when only that makes it too long; not at all when even `vrd` does.
            auto put = [&](auto& w) {
                bool ok = sov::frames::append_record_with_verdict(w.buffer(), env, vrd, why) ||
                          sov::frames::append_record_with_verdict(w.buffer(), env, vrd);
                w.maybe_flush();
                return ok;
            };
            bool fits = (!annotate || put(sink)) && (!rej || put(*rej));
            if (!fits)
                cli::diag(where(), std::string(vrd) + ": the envelope (" + cli::with_commas(env.raw.size()) +
                                     " bytes) with its verdict would exceed the 16 MiB record limit; not written");
            if (reported < max_reports) {
                const auto& f = engine.facts()[mi];
                std::string who = f.did.empty() ? "" : std::string(f.did) + " ";
                if (f.seq) who += "seq " + std::to_string(f.seq) + ": ";
                cli::diag(where(), std::string(vrd) + ": " + who + o.detail);
                if (++reported == max_reports) cli::diag("further rejections are counted but not shown (--max-reports)");
            }
        }
    };

    // Verifies and writes the frames collected in `b` (held by `r`), then releases them.
    auto flush_batch = [&](sov::frames::Reader& r) {
        const std::string& name = r.name();
        const std::uint8_t* held = r.held_data();
        std::size_t n = b.records.size();
        b.envs.resize(n);
        for (std::size_t i = 0; i < n; ++i)
            b.envs[i] = sov::frames::at(b.layouts[i], held + b.records[i].first);  // validated by the reader
        verify_envs(n, [&](std::size_t i) { return name + ":" + std::to_string(b.records[i].second); }, out);
        frames += n;
        b.clear();
        r.release();
        progress.update(frames, bytes_in);
        if (!state_path.empty() && cli::now_micros() - last_save > 60'000'000) {
            save_state();
            last_save = cli::now_micros();
        }
    };

    // --nats: batches from the consumers of the owned partitions, verified, published to
    // FH_VRD; then, every 2 s: every publish acknowledged, the state saved, and only then the
    // batches acked. A verifier killed at any point restarts from the ack floor with the state
    // saved with it: the same frames verified against the same state give the same verdicts,
    // published again under the same Nats-Msg-Id, which the stream drops (10 min window).
    std::unique_ptr<nats::Connection> nats_conn;
    std::unique_ptr<nats::FramePublisher> publisher;
    std::vector<std::unique_ptr<nats::PullConsumer>> consumers;
    std::vector<std::uint32_t> owned;
    std::uint64_t nats_acked = 0, nats_redelivered = 0;
    if (nats_mode) {
        std::string why;
        if (int st = load_keys(); st != cli::kOk) return st;
        nats_conn = nats::Connection::open(nats_url.server, "cbor-verify " + std::to_string(own_k) + "/" +
                                                                std::to_string(own_n), why);
        if (nats_conn && !nats_conn->check_stream(nats::kVrdStream, why)) nats_conn.reset();
        for (std::uint32_t p = 0; nats_conn && p < partitions; ++p) {
            char pp[16];
            std::snprintf(pp, sizeof pp, "%02u", p);
            if (nats::rendezvous_owner("partition " + std::string(pp), own_n) != own_k) continue;
            nats::ConsumerOptions co;
            co.filter = "fh.src.*." + std::string(pp);
            co.ack_wait_s = 30;
            co.restart_at_ack_floor = true;
            auto c = nats::PullConsumer::open(*nats_conn, nats::kSrcStream, "verify-" + std::string(pp), co, why);
            if (!c) {
                nats_conn.reset();
                break;
            }
            consumers.push_back(std::move(c));
            owned.push_back(p);
        }
        if (!nats_conn) {
            cli::diag(nats_url.server, why);
            return cli::kSystem;
        }
        // The state file knows a partition only up to the stream sequence it was saved at
        // (STATE.partitions: "PP SEQ" lines, written with it). A partition whose consumer has
        // moved on since (another verifier had it) would be judged against stale state: its
        // repositories and seq scopes are forgotten, and start as first seen.
        std::map<std::uint32_t, std::uint64_t> floors;  // partition → last stream seq the state holds
        const std::string floors_path = state_path.empty() ? "" : state_path + ".partitions";
        if (!floors_path.empty())
            if (std::FILE* f = std::fopen(floors_path.c_str(), "r")) {
                unsigned pp = 0;
                unsigned long long seq = 0;
                while (std::fscanf(f, "%u %llu", &pp, &seq) == 2) floors[pp] = seq;
                std::fclose(f);
            }
        std::vector<std::uint64_t> last_seq(partitions, 0);
        for (std::size_t i = 0; i < owned.size(); ++i) {
            const std::uint32_t p = owned[i];
            const std::uint64_t at = consumers[i]->start_floor();
            last_seq[p] = at;
            auto known = floors.find(p);
            if (known != floors.end() && known->second == at) continue;
            char pp[16];
            std::snprintf(pp, sizeof pp, " %02u", p);
            const std::size_t n = engine.state().forget(
                [&](std::string_view did) { return nats::partition_of(did, partitions) == p; },
                [&](std::string_view scope) { return scope.size() > 3 && scope.substr(scope.size() - 3) == pp; });
            if (n && !quiet)
                cli::diag("partition " + std::string(pp + 1) + ": the state file is behind the stream (held to seq " +
                          (known == floors.end() ? std::string("none") : std::to_string(known->second)) +
                          ", the consumer is at " + std::to_string(at) + "): " + std::to_string(n) +
                          " repositories start as first seen");
        }
        auto save_floors = [&]() -> bool {
            if (floors_path.empty()) return true;
            for (std::uint32_t p : owned) floors[p] = last_seq[p];
            std::string text;
            for (const auto& [p, seq] : floors) text += std::to_string(p) + " " + std::to_string(seq) + "\n";
            std::string err;
            if (sov::file::atomic_replace(floors_path, sov::as_bytes(text), err) != sov::Errc::ok) {
                cli::diag(err);
                return false;
            }
            return true;
        };
        std::string list;
        for (auto p : owned) list += (list.empty() ? "" : ",") + std::to_string(p);
        if (!quiet)
            cli::diag("verifier " + std::to_string(own_k) + "/" + std::to_string(own_n) + ": partitions " +
                      (list.empty() ? "none" : list) + " of " + std::to_string(partitions));
        publisher = std::make_unique<nats::FramePublisher>(*nats_conn, "fh.vrd.{pp}", partitions, "match-key");
        NatsOut nout(*publisher);
        std::vector<nats::Delivery> taken, held;  // this batch; verified, awaiting the commit
        auto last_msg = std::chrono::steady_clock::now(), last_commit = last_msg;
        std::size_t next = 0;
        std::string last_err;
        bool bad = false;
        // Publishes acknowledged, state saved, then the acks: the commit of everything held.
        auto commit = [&]() -> bool {
            if (held.empty()) return true;
            if (!publisher->flush(why)) {
                cli::diag(nats_url.server, why);
                return false;
            }
            if (!save_state()) return false;
            for (const auto& d : held) {
                const std::uint32_t p = std::uint32_t(std::atoi(d.subject.c_str() + d.subject.rfind('.') + 1));
                if (p < partitions) last_seq[p] = std::max(last_seq[p], d.stream_seq);
            }
            if (!save_floors()) return false;
            for (auto& d : held)
                if (consumers[0]->ack(d, why)) ++nats_acked;
            held.clear();
            return true;
        };
        while (!bad && !g_stop.load() && !owned.empty()) {
            // Up to --batch frames, each consumer asked in turn without waiting; when all are
            // empty, one waits up to 0.5 s.
            taken.clear();
            bool waited = false;
            for (std::size_t tries = 0; tries < consumers.size() && taken.size() < batch_size; ++tries) {
                auto& c = *consumers[next];
                next = (next + 1) % consumers.size();
                if (!c.fetch(int(batch_size - taken.size()), 500, taken, why, true)) {
                    if (why != last_err) cli::diag(nats_url.server, why + " (retrying)");
                    last_err = why;
                }
            }
            if (taken.empty()) {
                if (!consumers[next]->fetch(int(batch_size), 500, taken, why)) {
                    if (why != last_err) cli::diag(nats_url.server, why + " (retrying)");
                    last_err = why;
                    std::this_thread::sleep_for(std::chrono::milliseconds(500));
                }
                waited = true;
            }
            const auto now = std::chrono::steady_clock::now();
            if (!taken.empty()) {
                last_err.clear();
                last_msg = now;
                b.envs.resize(taken.size());
                std::size_t n = 0;
                for (; n < taken.size(); ++n) {
                    if (sov::Located e = sov::frames::parse_envelope(taken[n].data, b.envs[n])) {
                        cli::diag(nats_url.server + "/" + nats::kSrcStream + " stream seq " +
                                      std::to_string(taken[n].stream_seq) + " (" + taken[n].subject + "):" +
                                      std::to_string(e.offset),
                                  "not a frame envelope: " + std::string(sov::to_string(e.errc)));
                        status = cli::kDataRejected;
                        bad = true;
                        break;
                    }
                    if (taken[n].delivered > 1) ++nats_redelivered;
                    // seq increases per source within a partition, not across them
                    const std::string& subj = taken[n].subject;
                    b.scopes.resize(taken.size());
                    b.scopes[n].assign(b.envs[n].src).append(" ").append(subj.substr(subj.rfind('.') + 1));
                    bytes_in += taken[n].data.size();
                }
                verify_envs(n, [&](std::size_t i) {
                    return nats::kSrcStream + std::string(" stream seq ") + std::to_string(taken[i].stream_seq);
                }, nout);
                frames += n;
                progress.update(frames, bytes_in);
                for (std::size_t i = 0; i < taken.size(); ++i) {
                    if (i < n) held.push_back(std::move(taken[i]));
                    else nats::PullConsumer::drop(taken[i]);  // not verified: not acked
                }
                taken.clear();
                if (nout.failed()) {
                    cli::diag(nats_url.server, nout.error());
                    status = cli::kSystem;
                    break;
                }
            }
            if (held.size() >= 20000 || now - last_commit >= std::chrono::seconds(2) || (waited && !held.empty())) {
                if (!commit()) {
                    status = cli::kSystem;
                    break;
                }
                last_commit = now;
            }
            if (nats_wait > 0 && taken.empty() &&
                std::chrono::duration<double>(now - last_msg).count() >= nats_wait)
                break;
        }
        if (status != cli::kSystem && !commit()) status = cli::kSystem;
        for (auto& d : held)
            if (d.msg) nats::PullConsumer::drop(d);
        files.clear();
    }

    std::uint64_t bytes_before = 0;  // bytes of the files already finished
    for (const auto& path : files) {
        if (out.broken_pipe() || g_stop.load()) break;
        sov::frames::Reader r = sov::frames::Reader::open(path);
        if (r.open_errno()) {
            cli::diag(path, std::strerror(r.open_errno()));
            status = cli::kSystem;
            continue;
        }
        sov::frames::Envelope env;
        // No stop check here: after a signal the reader reads nothing more (sov::io) but every
        // record already read is still verified and written.
        while (r.next(env)) {
            if (!keys_loaded)
                if (int st = load_keys(); st != cli::kOk) return st;  // nothing written yet
            if (b.records.empty()) r.hold();
            b.records.emplace_back(std::size_t(env.raw.data() - r.held_data()), r.record_offset());
            b.layouts.push_back(sov::frames::layout_of(env));
            b.bytes += env.raw.size();
            bytes_in = bytes_before + r.bytes_read();
            if (b.records.size() >= batch_size || b.bytes >= kBatchBytes) {
                flush_batch(r);
                if (out.broken_pipe() || out.failed()) break;
            }
        }
        if (!b.records.empty()) flush_batch(r);  // frames before an error are kept
        bytes_before += r.bytes_read();
        if (r.error() && !g_stop.load()) {
            cli::framing_error(r);
            status = std::max<int>(status, cli::status(r.error().errc));
            break;  // framing errors stop the tool; frames already written stay written
        }
    }
    if (int st = load_keys(); st != cli::kOk) status = std::max(status, st);  // no frame came: still check it
    if (g_stop.load()) cli::diag("interrupted: stopping after the frames already read");
    if (args.count("cache")) {
        // A lookup that met a damaged record or a slot left locked gave no-key: say so, exit 1.
        std::string err;
        if (sov::Errc e = cache.status(&err); e != sov::Errc::ok) {
            cli::diag(err.empty() ? cache_path + ": " + std::string(sov::to_string(e)) : err);
            status = std::max(status, cli::status(e));
        }
    }
    if (!save_state()) status = std::max<int>(status, cli::kSystem);
    progress.finish();
    int wst = nats_mode ? cli::kOk : cli::finish_output(out, "stdout");
    if (rej) {
        wst = std::max(wst, cli::finish_output(*rej, args["rejects"].as<std::string>()));
        ::close(rejects_fd);
    }

    std::uint64_t passed = 0, rejected = 0;
    std::string detail;
    for (std::size_t i = 0; i < sov::verify::kVerdictCount; ++i) {
        auto v = sov::verify::Verdict(i);
        (sov::verify::passes(v) ? passed : rejected) += counts[i];
        if (counts[i]) detail += (detail.empty() ? "" : ", ") + std::string(sov::verify::to_string(v)) + " " +
                                 cli::with_commas(counts[i]);
    }
    // No summary after a closed pipe (docs/design.md §6: quietly) or a failed write (reported).
    if (!quiet && !out.broken_pipe() && wst == cli::kOk)
        cli::diag(cli::count(frames, "frame") + ": " + cli::with_commas(passed) + " passed, " +
                  cli::with_commas(rejected) + " rejected" + (detail.empty() ? "" : " (" + detail + ")") +
                  (markers ? ", markers " + cli::with_commas(markers) : "") + "; " +
                  cli::count(bytes_in, "byte") + " in, " + cli::count(out.bytes_written(), "byte") + " out" +
                  (nats_mode ? "; " + cli::with_commas(publisher ? publisher->publisher().stored() : 0) + " published to " +
                                   nats::kVrdStream + " (" + cli::with_commas(publisher ? publisher->publisher().duplicates() : 0) +
                                   " already held), " + cli::with_commas(nats_acked) + " acked" +
                                   (nats_redelivered ? " (" + cli::with_commas(nats_redelivered) + " redelivered)" : "") +
                                   (publisher ? publisher->publisher().order_note() : "")
                             : "") +
                  cli::stop_note());
    if (strict && rejected && status == cli::kOk) status = cli::kDataRejected;
    return cli::stop_status(std::max(status, wst));
}
