// cbor-verify — verify frame streams and stamp each frame with a verdict (docs/design.md §3).
#include "cli.h"

#include "sovereign/did_cache.h"
#include "sovereign/did_doc.h"
#include "sovereign/frame_stream.h"
#include "sovereign/verify.h"
#include "sovereign/verify_engine.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
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
    std::vector<sov::verify::FrameIn> in;  // the messages only (markers never reach the verifier)
    std::vector<sov::verify::Outcome> out;
    void clear() {
        bytes = 0;
        records.clear();
        layouts.clear();
    }
};

}  // namespace

int main(int argc, char** argv) {
    cli::init("cbor-verify");
    cxxopts::Options opts("cbor-verify",
                          "Verify frame streams: writes passing frames (ok, ok-gap, skip) with `vrd` set.\n"
                          "Usage: cbor-verify (--did-docs FILE | --cache DIR) [OPTIONS] [FILE...]   (no FILE or '-' reads stdin)\n");
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
    if (cli::refuse_terminal(1, args.count("force") > 0)) return cli::kUsage;

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

    // Verifies and writes the frames collected in `b` (held by `r`), then releases them.
    auto flush_batch = [&](sov::frames::Reader& r) {
        const std::string& name = r.name();
        const std::uint8_t* held = r.held_data();
        std::size_t n = b.records.size();
        b.envs.resize(n);
        b.in.clear();
        for (std::size_t i = 0; i < n; ++i) {
            b.envs[i] = sov::frames::at(b.layouts[i], held + b.records[i].first);  // validated by the reader
            if (!b.envs[i].is_marker()) b.in.push_back({b.envs[i].wire, b.envs[i].recv, b.envs[i].src});
        }
        b.out.resize(b.in.size());
        engine.run(b.in, b.out);
        // j: the message's place among the verified ones (outcomes and facts).
        for (std::size_t i = 0, j = 0; i < n; ++i) {
            const auto& env = b.envs[i];
            if (env.is_marker()) {
                // Markers pass unchanged and in place, with no verdict (docs/design.md §2); the
                // verifier never sees them, so they touch no verification state.
                sov::frames::append_record_raw(out.buffer(), env);
                out.maybe_flush();
                ++markers;
                continue;
            }
            const std::size_t mi = j++;
            const auto& o = b.out[mi];
            ++counts[std::size_t(o.verdict)];
            std::string_view vrd = sov::verify::to_string(o.verdict);
            bool pass = sov::verify::passes(o.verdict);
            // "FILE:OFFSET" for a diagnostic: built only when one is printed, not per frame.
            auto where = [&] { return name + ":" + std::to_string(b.records[i].second); };
            // D13: a passing frame whose envelope with `vrd` would exceed 16 MiB cannot be
            // written (no reader accepts the record): it is rejected as too-big instead.
            if (pass && !sov::frames::append_record_with_verdict(out.buffer(), env, vrd)) {
                --counts[std::size_t(o.verdict)];
                ++counts[std::size_t(sov::verify::Verdict::too_big)];
                cli::diag(where(), "too-big: the envelope (" + cli::with_commas(env.raw.size()) +
                                     " bytes) with its verdict would exceed the 16 MiB record limit; not written");
                continue;
            }
            if (pass) {
                out.maybe_flush();
                continue;
            }
            // Rejected: `why` carries the reason in words beside `vrd` (docs/design.md §2).
            std::string_view why = o.detail.empty() ? vrd : std::string_view(o.detail);
            // Without `why` when only that makes it too long; not at all when even `vrd` does.
            auto put = [&](sov::frames::Writer& w) {
                bool ok = sov::frames::append_record_with_verdict(w.buffer(), env, vrd, why) ||
                          sov::frames::append_record_with_verdict(w.buffer(), env, vrd);
                w.maybe_flush();
                return ok;
            };
            bool fits = (!annotate || put(out)) && (!rej || put(*rej));
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
        frames += n;
        b.clear();
        r.release();
        progress.update(frames, bytes_in);
        if (!state_path.empty() && cli::now_micros() - last_save > 60'000'000) {
            save_state();
            last_save = cli::now_micros();
        }
    };

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
    int wst = cli::finish_output(out, "stdout");
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
                  cli::count(bytes_in, "byte") + " in, " + cli::count(out.bytes_written(), "byte") + " out" + cli::stop_note());
    if (strict && rejected && status == cli::kOk) status = cli::kDataRejected;
    return cli::stop_status(std::max(status, wst));
}
