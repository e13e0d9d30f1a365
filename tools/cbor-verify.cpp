// cbor-verify — verify frame streams and stamp each frame with a verdict (docs/design.md §3).
#include "cli.h"

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

// A batch of records copied out of the reader (whose views do not outlive next()). Besides
// --batch frames, a batch is cut at kBatchBytes so that the copy stays in the core's cache
// until the verifier reads it (a 1,024-frame batch of commits is ~5 MiB: copied out to
// memory, faulted in page by page on a fresh buffer, then read back from memory).
constexpr std::size_t kBatchBytes = 256u << 10;

struct Batch {
    std::vector<std::uint8_t> bytes;
    std::vector<std::pair<std::size_t, std::uint64_t>> records;  // (envelope offset in bytes, record offset in the input)
    std::vector<sov::frames::EnvelopeLayout> layouts;             // field positions: no second parse

    std::vector<sov::frames::Envelope> envs;
    std::vector<sov::verify::FrameIn> in;
    std::vector<sov::verify::Outcome> out;
    void clear() {
        bytes.clear();
        records.clear();
        layouts.clear();
    }
};

}  // namespace

int main(int argc, char** argv) {
    cli::init("cbor-verify");
    cxxopts::Options opts("cbor-verify",
                          "Verify frame streams: writes passing frames (ok, ok-gap, skip) with `vrd` set.\n"
                          "Usage: cbor-verify --did-docs FILE [OPTIONS] [FILE...]   (no FILE or '-' reads stdin)\n");
    opts.add_options()
        ("did-docs", "JSON object DID → DID document giving signing keys (*.zst accepted)",
         cxxopts::value<std::string>())
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
        ("q,quiet", "no summary line and no rejection reasons")
        ("files", "input files", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"files"});
    opts.positional_help("[FILE...]");
    auto args = cli::parse(opts, argc, argv);

    bool annotate = args.count("annotate") > 0;
    bool strict = args.count("strict") > 0;
    bool quiet = args.count("quiet") > 0;
    std::uint64_t max_reports = quiet ? 0 : args["max-reports"].as<std::uint64_t>();

    sov::KeyStore store;
    if (args.count("did-docs")) {
        std::string detail;
        std::string path = args["did-docs"].as<std::string>();
        sov::Errc e = store.load_json_file(path, detail);
        if (e != sov::Errc::ok) {
            cli::diag(path, std::string(sov::to_string(e)) + (detail.empty() ? "" : ": " + detail));
            return cli::status(e);
        }
    } else {
        cli::diag("no --did-docs given: every commit will be no-key");
    }
    sov::verify::StoreKeys keys(store);

    int rejects_fd = -1;
    if (args.count("rejects")) {
        std::string path = args["rejects"].as<std::string>();
        rejects_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (rejects_fd < 0) {
            cli::diag(path, std::strerror(errno));
            return cli::kSystem;
        }
    }

    std::vector<std::string> files;
    if (args.count("files")) files = args["files"].as<std::vector<std::string>>();
    if (files.empty()) files.push_back("-");

    std::size_t threads = args.count("threads") ? args["threads"].as<std::size_t>()
                                                : std::max<std::size_t>(1, std::thread::hardware_concurrency());
    if (threads == 0 || threads > 256) {
        cli::diag("--threads must be between 1 and 256");
        return cli::kUsage;
    }
    std::size_t batch_size = std::max<std::size_t>(1, args["batch"].as<std::size_t>());
    sov::verify::Engine engine(keys, threads, args.count("lenient") > 0, args["max-dids"].as<std::size_t>());
    std::string state_path = args.count("state") ? args["state"].as<std::string>() : "";
    if (!state_path.empty()) {
        std::string err;
        sov::Errc e = engine.state().load(state_path, err);
        if (e != sov::Errc::ok) {
            cli::diag(err);
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
    std::uint64_t frames = 0, bytes_in = 0, reported = 0;
    cli::Progress progress;
    int status = cli::kOk;
    std::int64_t last_save = cli::now_micros();
    Batch b;
    b.bytes.reserve(kBatchBytes + (64u << 10));

    // Verifies and writes the frames collected in `b` (from input `name`).
    auto flush_batch = [&](const std::string& name) {
        std::size_t n = b.records.size();
        b.envs.resize(n);
        b.in.resize(n);
        b.out.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            b.envs[i] = sov::frames::at(b.layouts[i], b.bytes.data() + b.records[i].first);  // validated by the reader
            b.in[i] = sov::verify::FrameIn{b.envs[i].wire, b.envs[i].recv, b.envs[i].src};
        }
        engine.run(b.in, b.out);
        for (std::size_t i = 0; i < n; ++i) {
            const auto& env = b.envs[i];
            const auto& o = b.out[i];
            ++counts[std::size_t(o.verdict)];
            std::string_view vrd = sov::verify::to_string(o.verdict);
            bool pass = sov::verify::passes(o.verdict);
            if (pass || annotate) {
                sov::frames::append_record_with_verdict(out.buffer(), env, vrd);
                out.maybe_flush();
            }
            if (!pass) {
                if (rej) {
                    sov::frames::append_record_with_verdict(rej->buffer(), env, vrd);
                    rej->maybe_flush();
                }
                if (reported < max_reports) {
                    const auto& f = engine.facts()[i];
                    std::string who = f.did.empty() ? "" : std::string(f.did) + " ";
                    if (f.seq) who += "seq " + std::to_string(f.seq) + ": ";
                    cli::diag(name + ":" + std::to_string(b.records[i].second), std::string(vrd) + ": " + who + o.detail);
                    if (++reported == max_reports) cli::diag("further rejections are counted but not shown (--max-reports)");
                }
            }
        }
        frames += n;
        b.clear();
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
        while (!g_stop.load() && r.next(env)) {
            b.records.emplace_back(b.bytes.size(), r.record_offset());
            b.layouts.push_back(sov::frames::layout_of(env));
            b.bytes.insert(b.bytes.end(), env.raw.begin(), env.raw.end());
            bytes_in = bytes_before + r.bytes_read();
            if (b.records.size() >= batch_size || b.bytes.size() >= kBatchBytes) {
                flush_batch(r.name());
                if (out.broken_pipe() || out.failed()) break;
            }
        }
        if (!b.records.empty()) flush_batch(r.name());  // frames before an error are kept
        bytes_before += r.bytes_read();
        if (r.error() && !g_stop.load()) {
            cli::framing_error(r);
            status = std::max<int>(status, cli::status(r.error().errc));
            break;  // framing errors stop the tool; frames already written stay written
        }
    }
    if (g_stop.load()) cli::diag("interrupted: stopping after the frames already read");
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
    if (!quiet)
        cli::diag(cli::with_commas(frames) + " frames: " + cli::with_commas(passed) + " passed, " +
                  cli::with_commas(rejected) + " rejected" + (detail.empty() ? "" : " (" + detail + ")") + "; " +
                  cli::with_commas(bytes_in) + " bytes in, " + cli::with_commas(out.bytes_written()) + " bytes out");
    if (strict && rejected && status == cli::kOk) status = cli::kDataRejected;
    return std::max(status, wst);
}
