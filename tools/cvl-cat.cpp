// cvl-cat — read, check, prove and describe a CVL archive (docs/format-cvl.md).
#include "cli.h"

#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"
#include "sovereign/io.h"
#include "sovereign/message.h"
#include "sovereign/syntax.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <algorithm>
#include <map>

namespace {

// Time argument: µs since the epoch, or an RFC 3339 datetime.
bool parse_time(const std::string& s, std::int64_t& out) {
    if (!s.empty() && std::all_of(s.begin(), s.end(), ::isdigit)) {
        out = std::stoll(s);
        return true;
    }
    auto us = sov::syntax::parse_datetime_micros(s);
    if (!us) return false;
    out = *us;
    return true;
}

std::atomic<bool> g_stop{false};

}  // namespace

int main(int argc, char** argv) {
    cli::init("cvl-cat");
    cxxopts::Options opts("cvl-cat",
                          "Read frames out of a CVL archive, byte-identical to what was packed; check, prove, describe.\n"
                          "Usage: cvl-cat DIR [FILTERS]          frames in ordinal order to stdout\n"
                          "       cvl-cat DIR --check | --stats | --proof ORD | --last-seq SRC | --last-seqs\n"
                          "       cvl-cat [DIR] --verify-proof FILE [--root ANCHOR] [--frame FILE]\n");
    opts.add_options()
        ("first-ordinal", "only ordinals from N on (inclusive)", cxxopts::value<std::uint64_t>())
        ("last-ordinal", "only ordinals up to N (inclusive)", cxxopts::value<std::uint64_t>())
        ("ordinal", "only these ordinals; repeatable", cxxopts::value<std::vector<std::uint64_t>>())
        ("since", "only frames received at or after T (µs since the epoch or RFC 3339)", cxxopts::value<std::string>())
        ("until", "only frames received before T", cxxopts::value<std::string>())
        ("did", "only messages about these DIDs; repeatable, or comma-separated", cxxopts::value<std::vector<std::string>>())
        ("collection", "only commits with an op in these collections (NSIDs); repeatable, or comma-separated",
         cxxopts::value<std::vector<std::string>>())
        ("include-deleted", "also write tombstoned messages (purged ones are gone)")
        ("check", "verify every segment: index checksums, every cluster, Merkle roots and the chain")
        ("proof", "print the inclusion proof of ordinal ORD (JSON)", cxxopts::value<std::uint64_t>())
        ("verify-proof", "check an inclusion proof from FILE ('-' = stdin)", cxxopts::value<std::string>())
        ("root", "with --verify-proof: the trusted segment anchor (hex, the 'anchor' column of --stats) to check against",
         cxxopts::value<std::string>())
        ("frame", "with --verify-proof: the proven message, a frame stream of one record (as --ordinal writes it)",
         cxxopts::value<std::string>())
        ("stats", "print sizes, ratios and the anchor to publish, per segment")
        ("last-seq", "print the largest seq archived from SRC (journal, then newest segments first): "
                     "relay-tap --cursor \"$(cvl-cat DIR --last-seq SRC)\"; exit 1 if SRC has none",
         cxxopts::value<std::string>())
        ("last-seqs", "print every src's largest archived seq, one 'SRC SEQ' line each (mesh-tap's --state "
                      "cursors file); reads the whole archive")
        ("force", "write frames to stdout even when it is a terminal")
        ("q,quiet", "no summary line and no progress")
        ("dir", "archive directory", cxxopts::value<std::string>());
    opts.parse_positional({"dir"});
    opts.positional_help("DIR");
    // --from/--to name formats in frame-cat; here they were the ordinal range until 0.1.
    for (int i = 1; i < argc && std::strcmp(argv[i], "--") != 0; ++i)
        for (const char* old : {"--from", "--to"}) {
            std::size_t n = std::strlen(old);
            if (std::strncmp(argv[i], old, n) == 0 && (argv[i][n] == 0 || argv[i][n] == '=')) {
                cli::diag(std::string(old) + " is frame-cat's format option; the ordinal range of cvl-cat is " +
                          "--first-ordinal N and --last-ordinal N (both inclusive)");
                return cli::kUsage;
            }
        }
    auto args = cli::parse(opts, argc, argv);
    bool quiet = args.count("quiet") > 0;
    // One mode at a time; filters and --root only where they mean something.
    if (!cli::exclusive(args, {"check", "stats", "proof", "verify-proof", "last-seq", "last-seqs"})) return cli::kUsage;
    for (const char* mode : {"check", "stats", "proof", "verify-proof", "last-seq", "last-seqs"})
        if (!cli::not_with(args, mode,
                           {"first-ordinal", "last-ordinal", "ordinal", "since", "until", "did", "collection",
                            "include-deleted"}))
            return cli::kUsage;
    if (args.count("root") && !args.count("verify-proof")) {
        cli::diag("--root goes with --verify-proof");
        return cli::kUsage;
    }

    // --verify-proof works with or without an archive.
    if (args.count("verify-proof")) {
        std::string text, err, path = args["verify-proof"].as<std::string>();
        if (!sov::io::read_all(path, text, err)) {
            cli::diag(err);
            return cli::kSystem;
        }
        sov::cvl::Proof p;
        if (sov::cvl::Proof::from_json(text, p) != sov::Errc::ok) {
            cli::diag(path, "not an inclusion proof (JSON with ordinal, index, size, leaf, path, root)");
            return cli::status(sov::Errc::proof_malformed);
        }
        if (!p.verify()) {
            cli::diag(path, "INVALID: the path does not lead from the leaf to the proof's root");
            return cli::status(sov::Errc::proof_invalid);
        }
        auto invalid = [&](sov::Errc e, const std::string& why) {
            cli::diag(path, "INVALID: " + why);
            return cli::status(e);
        };
        // The message: its leaf hash must be the proof's leaf.
        if (args.count("frame")) {
            std::string fpath = args["frame"].as<std::string>(), rec;
            if (!sov::io::read_all(fpath, rec, err)) {
                cli::diag(err);
                return cli::kSystem;
            }
            sov::frames::Envelope env;
            if (sov::Located l = sov::frames::parse_record(sov::as_bytes(rec), env); l) {
                cli::diag(fpath, std::to_string(l.offset) + ": not one frame record (" + std::string(sov::to_string(l.errc)) + ")");
                return cli::status(l.errc);
            }
            if (sov::cvl::leaf_hash(env.raw) != p.leaf)
                return invalid(sov::Errc::proof_unbound, "the proof's leaf is not the hash of the frame in " + fpath);
        }
        bool root_checked = false;
        if (args.count("root")) {
            sov::cvl::Hash want;
            if (!sov::cvl::from_hex(args["root"].as<std::string>(), want)) {
                cli::diag("--root must be 64 hex digits");
                return cli::kUsage;
            }
            auto anchor = p.anchor();
            if (!anchor || *anchor != want) {
                if (want == p.root) {
                    // A bare Merkle root binds neither the tree size nor the ordinals: a
                    // one-leaf "tree" whose leaf is the root itself would pass.
                    cli::diag(path, "not checked: --root is the proof's bare Merkle root, which binds neither the "
                                    "tree size nor the ordinal; give the segment's anchor (cvl-cat DIR --stats)");
                    return cli::kUsage;
                }
                return invalid(sov::Errc::proof_root_mismatch,
                               "the proof's segment, first ordinal, size and root do not hash to the given --root anchor");
            }
            root_checked = true;
        }
        if (args.count("dir")) {
            sov::Errc code;
            auto ar = sov::cvl::Archive::open(args["dir"].as<std::string>(), err, &code);
            if (!ar) return cli::fail(code, err);
            if (sov::Errc e = ar->check_proof(p, err); e != sov::Errc::ok) {
                cli::diag(path, e == sov::Errc::proof_invalid || e == sov::Errc::proof_root_mismatch ||
                                        e == sov::Errc::proof_unbound
                                    ? "INVALID: " + err
                                    : err);
                return cli::status(e);
            }
            root_checked = true;
        }
        if (!root_checked) {
            cli::diag(path, "not checked: the path is consistent, but against no trusted root; give the archive "
                            "(cvl-cat DIR --verify-proof FILE) or its published anchor (--root ANCHOR)");
            return cli::kUsage;
        }
        std::cout << "valid: ordinal " << p.ordinal << " is leaf " << p.index << " of " << p.size << " under root "
                  << sov::cvl::to_hex(p.root) << (args.count("frame") ? " and is the given frame" : "") << "\n";
        return cli::kOk;
    }

    if (!args.count("dir")) {
        cli::diag("the archive directory is required (try --help)");
        return cli::kUsage;
    }
    std::string dir = args["dir"].as<std::string>(), err;
    sov::Errc code;
    if (args.count("last-seq")) {
        // Resuming a tap (docs/design.md §8): the number alone on stdout, nothing when SRC
        // has no message (exit 1), so `--cursor "$(…)"` never gets a wrong or made-up value.
        const std::string src = args["last-seq"].as<std::string>();
        if (src.empty() || src.size() > sov::frames::kMaxSrc) {
            cli::diag("--last-seq takes a src label of 1 to 253 bytes (as the frames' src, e.g. bsky.network)");
            return cli::kUsage;
        }
        if (auto probe = sov::cvl::Archive::open(dir, err, &code); !probe) {
            std::string hint = cli::archive_hint(dir);
            return cli::fail(code, hint.empty() ? err : hint);
        }
        sov::cvl::LastSeq ls;
        const sov::Errc e = sov::cvl::last_seq(dir, src, ls, err);
        for (const auto& d : ls.journal_damage)
            cli::diag(d + " (a damaged journal record, not counted; cvl-pack recovers the journal when it next starts)");
        if (e != sov::Errc::ok) return cli::fail(e, err);
        std::printf("%lld\n", static_cast<long long>(ls.seq));
        if (std::fflush(stdout) != 0 && errno != EPIPE) {
            cli::diag("stdout", std::strerror(errno));
            return cli::kSystem;
        }
        return cli::kOk;
    }
    if (args.count("last-seqs")) {
        // Resuming mesh-tap (docs/design.md §8): `cvl-cat DIR --last-seqs > state/cursors`.
        // All or nothing: on an error nothing is printed, so no cursor file is half right.
        if (auto probe = sov::cvl::Archive::open(dir, err, &code); !probe) {
            std::string hint = cli::archive_hint(dir);
            return cli::fail(code, hint.empty() ? err : hint);
        }
        std::map<std::string, sov::cvl::LastSeq, std::less<>> all;
        std::vector<std::string> damage;
        const sov::Errc e = sov::cvl::last_seqs(dir, all, damage, err);
        for (const auto& d : damage)
            cli::diag(d + " (a damaged journal record, not counted; cvl-pack recovers the journal when it next starts)");
        if (e != sov::Errc::ok) return cli::fail(e, err);
        std::string text;
        int status = cli::kOk;
        for (const auto& [src, ls] : all) {
            if (src.find_first_of("\n\r") != std::string::npos) {
                // A line-based cursor file cannot hold it: said, not skipped silently.
                std::string shown;
                for (char c : src) shown += c == '\n' ? std::string("\\n") : c == '\r' ? std::string("\\r") : std::string(1, c);
                cli::diag(dir, "src '" + shown + "' has a line break: no 'SRC SEQ' line for it (its last seq is " +
                                   std::to_string(ls.seq) + ")");
                status = cli::kDataRejected;
                continue;
            }
            text += src + " " + std::to_string(ls.seq) + "\n";
        }
        if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
            if (errno != EPIPE) {
                cli::diag("stdout", std::strerror(errno));
                return cli::kSystem;
            }
        }
        if (!quiet) cli::diag(cli::count(all.size(), "src") + " with a seq in " + dir);
        return status;
    }
    auto ar = sov::cvl::Archive::open(dir, err, &code);
    if (!ar) {
        std::string hint = cli::archive_hint(dir);
        return cli::fail(code, hint.empty() ? err : hint);
    }
    int status = cli::kOk;
    // Segments that cannot be read are reported (exit 1); the others stay readable. Point
    // reads (--ordinal, --proof) look only at the segments they need.
    auto report_problems = [&] {
        for (const auto& p : ar->problems()) {
            cli::diag(p);
            status = cli::kDataRejected;
        }
    };

    if (args.count("check")) {
        cli::install_stop_handler(g_stop);  // long: stops between segments (cli::stop_status)
        report_problems();
        const auto& segs = ar->segments();
        std::size_t ok = 0;
        std::uint64_t total = 0, done = 0, msgs = 0;
        for (const auto& sg : segs) total += sg.stored_bytes;
        cli::Progress progress(quiet, total);
        for (std::size_t s = 0; s < segs.size() && !g_stop.load(); ++s) {
            if (sov::Errc e = ar->check_segment(s, err); e != sov::Errc::ok) {
                cli::diag(err);
                status = std::max(status, cli::status(e));
            } else {
                ++ok;
            }
            done += segs[s].stored_bytes;
            msgs += segs[s].count;
            progress.update(msgs, done);
        }
        progress.finish();
        if (!quiet)
            cli::diag(dir, std::to_string(ok) + " of " + cli::count(ar->segment_files(), "segment") +
                               " verified (index, clusters, Merkle roots, chain)" +
                               (status ? "; see the errors above" : "") + cli::stop_note());
        return cli::stop_status(status);
    }
    if (args.count("stats")) {
        report_problems();
        const auto& segs = ar->segments();
        std::printf("%8s %14s %10s %9s %14s %14s %7s %5s %7s  %-64s\n", "segment", "first", "messages", "clusters",
                    "raw bytes", "stored bytes", "ratio", "dict", "purged", "anchor (to publish)");
        std::uint64_t n = 0, raw = 0, stored = 0, clusters = 0;
        for (const auto& s : segs) {
            std::printf("%8llu %14llu %10u %9u %14llu %14llu %7.2f %5u %7u  %s\n", (unsigned long long)s.number,
                        (unsigned long long)s.first, s.count, s.clusters, (unsigned long long)s.raw_bytes,
                        (unsigned long long)s.stored_bytes, s.stored_bytes ? double(s.raw_bytes) / double(s.stored_bytes) : 0.0,
                        s.dict_id, s.purged, sov::cvl::to_hex(sov::cvl::segment_anchor(s.number, s.first, s.count, s.root)).c_str());
            n += s.count;
            raw += s.raw_bytes;
            stored += s.stored_bytes;
            clusters += s.clusters;
        }
        std::printf("%8s %14s %10llu %9llu %14llu %14llu %7.2f\n", "total", "", (unsigned long long)n, (unsigned long long)clusters,
                    (unsigned long long)raw, (unsigned long long)stored, stored ? double(raw) / double(stored) : 0.0);
        return status;
    }
    if (args.count("proof")) {
        sov::cvl::Proof p;
        if (sov::Errc e = ar->proof(args["proof"].as<std::uint64_t>(), p, err); e != sov::Errc::ok) return cli::fail(e, err);
        std::cout << p.to_json() << "\n";
        return status;
    }

    // Reading frames.
    sov::cvl::Selection sel;
    if (args.count("first-ordinal")) sel.from = args["first-ordinal"].as<std::uint64_t>();
    if (args.count("last-ordinal")) {
        std::uint64_t last = args["last-ordinal"].as<std::uint64_t>();
        if (last < sel.from) {
            cli::diag("--last-ordinal " + std::to_string(last) + " is before --first-ordinal " + std::to_string(sel.from));
            return cli::kUsage;
        }
        sel.to = last == UINT64_MAX ? UINT64_MAX : last + 1;
    }
    if ((args.count("since") && !parse_time(args["since"].as<std::string>(), sel.since)) ||
        (args.count("until") && !parse_time(args["until"].as<std::string>(), sel.until))) {
        cli::diag("--since/--until take µs since the epoch or an RFC 3339 datetime");
        return cli::kUsage;
    }
    if (args.count("ordinal")) {
        sel.ordinals = args["ordinal"].as<std::vector<std::uint64_t>>();
        std::sort(sel.ordinals.begin(), sel.ordinals.end());
        sel.ordinals.erase(std::unique(sel.ordinals.begin(), sel.ordinals.end()), sel.ordinals.end());
    }
    // --did and --collection: repeatable and comma-separated, any value matches (as in
    // frame-cat). One DID is read through the DID index; more are matched message by message.
    cli::MessageFilter filter;
    for (const auto& d : cli::list_values(args, "did")) filter.dids.insert(d);
    for (const auto& c : cli::list_values(args, "collection")) filter.collections.insert(c);
    if ((args.count("did") && filter.dids.empty()) || (args.count("collection") && filter.collections.empty())) {
        cli::diag("--did and --collection need a value");
        return cli::kUsage;
    }
    if (filter.dids.size() == 1) sel.did = *filter.dids.begin();
    if (filter.collections.size() == 1) sel.collection = *filter.collections.begin();
    bool own_filter = filter.dids.size() > 1 || filter.collections.size() > 1;
    sel.include_deleted = args.count("include-deleted") > 0;
    if (sel.ordinals.empty()) {
        // Unreadable segments: an error only if the range asked for meets them. Missing data
        // files or dictionaries are reported by the reads themselves, cluster by cluster.
        const auto& probs = ar->problems();
        const auto& infos = ar->problem_infos();
        for (std::size_t i = 0; i < probs.size(); ++i) {
            if (!infos[i].unreadable) continue;
            const bool meets = !infos[i].range_known ||
                               (infos[i].first < sel.to && infos[i].first + infos[i].count > sel.from);
            if (!meets) continue;
            cli::diag(probs[i] + (infos[i].range_known && infos[i].count
                                      ? " (ordinals " + std::to_string(infos[i].first) + "-" +
                                            std::to_string(infos[i].first + infos[i].count - 1) + " not served)"
                                      : ""));
            status = cli::kDataRejected;
        }
    }

    if (cli::refuse_terminal(1, args.count("force") > 0)) return cli::kUsage;
    cli::install_stop_handler(g_stop);  // stops after the frame being written (cli::stop_status)
    sov::frames::Writer out(1);
    sov::cvl::SelectStats st;
    // % and ETA only when the whole archive is read (the bytes of every segment are written).
    bool whole = !args.count("first-ordinal") && !args.count("last-ordinal") && !args.count("since") &&
                 !args.count("until") && sel.ordinals.empty() && !args.count("did") && !args.count("collection");
    std::uint64_t total = 0;
    if (whole)
        for (const auto& sg : ar->segments()) total += sg.raw_bytes;
    cli::Progress progress(quiet, total);
    sov::msg::Message m;
    sov::frames::Envelope parsed;
    std::uint64_t written = 0;
    sov::cvl::select(
        *ar, sel,
        [&](std::uint64_t, sov::ByteView env) {
            if (own_filter && (sov::frames::parse_envelope(env, parsed) || !filter.matches(parsed, m))) return true;  // markers: out
            sov::frames::append_envelope(out.buffer(), env);
            out.maybe_flush();
            ++written;
            progress.update(written, out.bytes_written());
            return !out.broken_pipe() && !out.failed() && !g_stop.load();
        },
        [&](sov::Errc e, const std::string& text) {
            cli::diag(text);
            status = std::max(status, cli::status(e));
        },
        st);
    progress.finish();
    int wst = cli::finish_output(out, "stdout");
    // No summary after a closed pipe (docs/design.md §6: quietly) or a failed write (reported).
    // Bytes are record bytes, length prefixes included (as frame-cat counts them).
    if (!quiet && !out.broken_pipe() && wst == cli::kOk)
        cli::diag(cli::count(written, "frame") + " written (" + cli::count(out.bytes_written(), "byte") + ")" +
                  (st.hidden ? ", " + cli::with_commas(st.hidden) + " hidden by tombstones" : "") + cli::stop_note());
    return cli::stop_status(std::max(status, wst));
}
