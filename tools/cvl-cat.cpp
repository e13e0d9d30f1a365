// cvl-cat — read, check, prove and describe a CVL archive (docs/format-cvl.md).
#include "cli.h"

#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"
#include "sovereign/io.h"
#include "sovereign/message.h"
#include "sovereign/syntax.h"
#include "sovereign/varint.h"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <set>

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

}  // namespace

int main(int argc, char** argv) {
    cli::init("cvl-cat");
    cxxopts::Options opts("cvl-cat",
                          "Read frames out of a CVL archive, byte-identical to what was packed; check, prove, describe.\n"
                          "Usage: cvl-cat DIR [FILTERS]          frames in ordinal order to stdout\n"
                          "       cvl-cat DIR --check | --stats | --proof ORD\n"
                          "       cvl-cat [DIR] --verify-proof FILE [--root HEX]\n");
    opts.add_options()
        ("from", "first ordinal (inclusive)", cxxopts::value<std::uint64_t>())
        ("to", "last ordinal (exclusive)", cxxopts::value<std::uint64_t>())
        ("ordinal", "only these ordinals; repeatable", cxxopts::value<std::vector<std::uint64_t>>())
        ("since", "only frames received at or after T (µs since the epoch or RFC 3339)", cxxopts::value<std::string>())
        ("until", "only frames received before T", cxxopts::value<std::string>())
        ("did", "only messages about this DID", cxxopts::value<std::string>())
        ("collection", "only commits with an op in this collection (NSID)", cxxopts::value<std::string>())
        ("include-deleted", "also write tombstoned messages (purged ones are gone)")
        ("check", "verify every segment: index checksums, every cluster, Merkle roots and the chain")
        ("proof", "print the inclusion proof of ordinal ORD (JSON)", cxxopts::value<std::uint64_t>())
        ("verify-proof", "check an inclusion proof from FILE ('-' = stdin)", cxxopts::value<std::string>())
        ("root", "with --verify-proof: the trusted segment root (hex) to check against", cxxopts::value<std::string>())
        ("stats", "print sizes and ratios per segment")
        ("q,quiet", "no summary line")
        ("dir", "archive directory", cxxopts::value<std::string>());
    opts.parse_positional({"dir"});
    opts.positional_help("DIR");
    auto args = cli::parse(opts, argc, argv);
    bool quiet = args.count("quiet") > 0;

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
            return cli::kDataRejected;
        }
        if (!p.verify()) {
            cli::diag(path, "INVALID: the path does not lead from the leaf to the proof's root");
            return cli::kDataRejected;
        }
        if (args.count("root")) {
            sov::cvl::Hash want;
            if (!sov::cvl::from_hex(args["root"].as<std::string>(), want)) {
                cli::diag("--root must be 64 hex digits");
                return cli::kUsage;
            }
            if (want != p.root) {
                cli::diag(path, "INVALID: the proof's root is not the given --root");
                return cli::kDataRejected;
            }
        } else if (args.count("dir")) {
            auto ar = sov::cvl::Archive::open(args["dir"].as<std::string>(), err);
            if (!ar) {
                cli::diag(err);
                return cli::kSystem;
            }
            auto s = ar->segment_of(p.ordinal);
            if (!s || ar->segments()[*s].root != p.root) {
                cli::diag(path, "INVALID: the proof's root is not the archive's root of segment " + std::to_string(p.segment));
                return cli::kDataRejected;
            }
        }
        std::cout << "valid: ordinal " << p.ordinal << " is leaf " << p.index << " of " << p.size << " under root "
                  << sov::cvl::to_hex(p.root) << "\n";
        return cli::kOk;
    }

    if (!args.count("dir")) {
        cli::diag("the archive directory is required (try --help)");
        return cli::kUsage;
    }
    std::string dir = args["dir"].as<std::string>(), err;
    auto ar = sov::cvl::Archive::open(dir, err);
    if (!ar) {
        cli::diag(err);
        return err.find("No such file") != std::string::npos ? cli::kSystem : cli::kDataRejected;
    }
    int status = cli::kOk;
    for (const auto& p : ar->problems()) {
        cli::diag(p);
        status = cli::kDataRejected;  // reported; the other segments stay readable
    }
    const auto& segs = ar->segments();

    if (args.count("check")) {
        std::size_t ok = 0;
        for (std::size_t s = 0; s < segs.size(); ++s) {
            if (ar->check_segment(s, err) != sov::Errc::ok) {
                cli::diag(err);
                status = cli::kDataRejected;
            } else {
                ++ok;
            }
        }
        if (!quiet)
            cli::diag(dir, std::to_string(ok) + " of " + std::to_string(ar->segment_files()) +
                               " segments verified (index, clusters, Merkle roots, chain)" +
                               (status ? "; see the errors above" : ""));
        return status;
    }
    if (args.count("stats")) {
        std::printf("%8s %14s %10s %9s %14s %14s %7s %5s %7s\n", "segment", "first", "messages", "clusters", "raw bytes",
                    "stored bytes", "ratio", "dict", "purged");
        std::uint64_t n = 0, raw = 0, stored = 0, clusters = 0;
        for (const auto& s : segs) {
            std::printf("%8llu %14llu %10u %9u %14llu %14llu %7.2f %5u %7u\n", (unsigned long long)s.number,
                        (unsigned long long)s.first, s.count, s.clusters, (unsigned long long)s.raw_bytes,
                        (unsigned long long)s.stored_bytes, s.stored_bytes ? double(s.raw_bytes) / double(s.stored_bytes) : 0.0,
                        s.dict_id, s.purged);
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
        if (ar->proof(args["proof"].as<std::uint64_t>(), p, err) != sov::Errc::ok) {
            cli::diag(err);
            return cli::kDataRejected;
        }
        std::cout << p.to_json() << "\n";
        return status;
    }

    // Reading frames.
    std::uint64_t from = args.count("from") ? args["from"].as<std::uint64_t>() : 0;
    std::uint64_t to = args.count("to") ? args["to"].as<std::uint64_t>() : UINT64_MAX;
    std::int64_t since = INT64_MIN, until = INT64_MAX;
    if ((args.count("since") && !parse_time(args["since"].as<std::string>(), since)) ||
        (args.count("until") && !parse_time(args["until"].as<std::string>(), until))) {
        cli::diag("--since/--until take µs since the epoch or an RFC 3339 datetime");
        return cli::kUsage;
    }
    std::set<std::uint64_t> only;
    if (args.count("ordinal"))
        for (auto o : args["ordinal"].as<std::vector<std::uint64_t>>()) only.insert(o);
    std::string did = args.count("did") ? args["did"].as<std::string>() : "";
    std::string coll = args.count("collection") ? args["collection"].as<std::string>() : "";
    bool include_deleted = args.count("include-deleted") > 0;

    sov::frames::Writer out(1);
    sov::msg::Message m;
    std::uint64_t written = 0, hidden = 0;
    auto emit = [&](std::uint64_t ord, sov::ByteView env) -> bool {
        if (ord < from || ord >= to || (!only.empty() && !only.count(ord))) return true;
        if (!include_deleted && ar->deleted(ord)) {
            ++hidden;
            return true;
        }
        if (since != INT64_MIN || until != INT64_MAX || !did.empty() || !coll.empty()) {
            sov::frames::Envelope e;
            if (sov::frames::parse_envelope(env, e)) return true;
            if (e.recv < since || e.recv >= until) return true;
            if (!did.empty() || !coll.empty()) {
                if (sov::msg::parse(e.wire, m)) return true;
                if (!did.empty() && m.did != did) return true;
                if (!coll.empty()) {
                    bool hit = false;
                    for (auto& op : m.ops) hit |= op.path.substr(0, op.path.find('/')) == coll;
                    if (!hit) return true;
                }
            }
        }
        sov::varint::append(env.size(), out.buffer());
        out.buffer().insert(out.buffer().end(), env.begin(), env.end());
        out.maybe_flush();
        ++written;
        return !out.broken_pipe() && !out.failed();
    };
    for (std::size_t s = 0; s < segs.size() && !out.broken_pipe(); ++s) {
        const auto& si = segs[s];
        if (si.first + si.count <= from || si.first >= to) continue;
        if (si.recv_max < since || si.recv_min >= until) continue;
        if (!only.empty() && (only.lower_bound(si.first) == only.end() || *only.lower_bound(si.first) >= si.first + si.count)) continue;
        sov::Errc e;
        if (!only.empty() || !did.empty()) {
            // Random access: one cluster per message (cached), no full-segment scan.
            std::vector<std::uint64_t> ords;
            if (!did.empty()) ords = ar->ordinals_of_did(s, did);
            else
                for (auto it = only.lower_bound(si.first); it != only.end() && *it < si.first + si.count; ++it) ords.push_back(*it);
            std::vector<std::uint8_t> env;
            e = sov::Errc::ok;
            for (auto o : ords) {
                if (o < from || o >= to || (!only.empty() && !only.count(o))) continue;
                if (!include_deleted && ar->deleted(o)) {
                    ++hidden;
                    continue;
                }
                if ((e = ar->read(o, env, err)) != sov::Errc::ok) {
                    if (err.find("purged") != std::string::npos) {
                        e = sov::Errc::ok;
                        continue;
                    }
                    break;
                }
                if (!emit(o, env)) break;
            }
        } else {
            e = ar->scan_segment(s, emit, err);
        }
        if (e != sov::Errc::ok) {
            cli::diag(err);
            status = cli::kDataRejected;  // this segment is unreadable; go on with the others
        }
    }
    int wst = cli::finish_output(out, "stdout");
    if (!quiet)
        cli::diag(cli::with_commas(written) + " frames written (" + cli::with_commas(out.bytes_written()) + " bytes)" +
                  (hidden ? ", " + cli::with_commas(hidden) + " hidden by tombstones" : ""));
    return std::max(status, wst);
}
