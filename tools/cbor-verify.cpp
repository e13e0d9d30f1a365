// cbor-verify — verify frame streams and stamp each frame with a verdict (DESIGN.md §3).
#include "cli.h"

#include "sovereign/did_doc.h"
#include "sovereign/frame_stream.h"
#include "sovereign/verify.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

// Keys from a DID-documents JSON file (DID → document), as captured beside the corpus.
class DocKeys final : public sov::verify::KeySource {
public:
    explicit DocKeys(const sov::KeyStore& s) : store_(s) {}
    const sov::crypto::PublicKey* signing_key(std::string_view did) const override {
        const sov::DidDoc* d = store_.find(did);
        return d && d->signing_key ? &*d->signing_key : nullptr;
    }

private:
    const sov::KeyStore& store_;
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
            return e == sov::Errc::io_error ? cli::kSystem : cli::kDataRejected;
        }
    } else {
        cli::diag("no --did-docs given: every commit will be no-key");
    }
    DocKeys keys(store);

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

    sov::verify::Verifier verifier(keys);
    sov::frames::Writer out(1);
    std::optional<sov::frames::Writer> rej;
    if (rejects_fd >= 0) rej.emplace(rejects_fd);
    std::array<std::uint64_t, sov::verify::kVerdictCount> counts{};
    std::uint64_t frames = 0, bytes_in = 0, reported = 0;
    cli::Progress progress;
    int status = cli::kOk;

    for (const auto& path : files) {
        if (out.broken_pipe()) break;
        sov::frames::Reader r = sov::frames::Reader::open(path);
        if (r.open_errno()) {
            cli::diag(path, std::strerror(r.open_errno()));
            status = cli::kSystem;
            continue;
        }
        sov::frames::Envelope env;
        while (r.next(env)) {
            ++frames;
            sov::verify::Outcome o = verifier.verify(env.wire, env.recv);
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
                    const sov::msg::Message& m = verifier.message();
                    std::string who = m.did.empty() ? "" : std::string(m.did) + " ";
                    if (m.seq) who += "seq " + std::to_string(m.seq) + " ";
                    cli::diag(r.name() + ":" + std::to_string(r.record_offset()),
                              std::string(vrd) + ": " + who + o.detail);
                    if (++reported == max_reports) cli::diag("further rejections are counted but not shown (--max-reports)");
                }
            }
            bytes_in = r.bytes_read();
            progress.update(frames, bytes_in);
            if (out.broken_pipe() || out.failed()) break;
        }
        if (r.error()) {
            cli::framing_error(r);
            status = std::max<int>(status, r.error().errc == sov::Errc::io_error ? cli::kSystem : cli::kDataRejected);
            break;  // framing errors stop the tool; frames already written stay written
        }
    }
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
