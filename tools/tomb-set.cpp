// tomb-set — set, clear and test tombstone bits of a CVL archive by ordinal, or by DID and
// record path (docs/format-cvl.md §7). Readers see a change at once; nothing is rewritten.
#include "cli.h"

#include "sovereign/bitset.h"
#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"
#include "sovereign/syntax.h"

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>

namespace {
std::atomic<bool> g_stop{false};
}  // namespace

int main(int argc, char** argv) {
    cli::init("tomb-set");
    cxxopts::Options opts("tomb-set",
                          "Set, clear or test tombstones of a CVL archive.\n"
                          "Usage: tomb-set DIR [--clear|--test] [ORD...]        (no ORD: ordinals from stdin, one per line)\n"
                          "       tomb-set DIR [--clear|--test] --did DID --path COLLECTION/RKEY\n");
    opts.add_options()
        ("clear", "clear the bits instead of setting them")
        ("test", "print 'ORD deleted', 'ORD present' or 'ORD purged' instead of changing anything")
        ("did", "with --path: every message of this DID whose ops touch the path", cxxopts::value<std::string>())
        ("path", "record path collection/rkey (with --did)", cxxopts::value<std::string>())
        ("q,quiet", "no summary line")
        ("args", "DIR and ordinals", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"args"});
    opts.positional_help("DIR [ORD...]");
    auto a = cli::parse(opts, argc, argv);
    std::vector<std::string> pos = a.count("args") ? a["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (pos.empty()) {
        cli::diag("the archive directory is required (try --help)");
        return cli::kUsage;
    }
    bool clear = a.count("clear") > 0, test = a.count("test") > 0, quiet = a.count("quiet") > 0;
    if (clear && test) {
        cli::diag("--clear and --test exclude each other");
        return cli::kUsage;
    }
    if (a.count("did") != a.count("path")) {
        cli::diag("--did and --path go together");
        return cli::kUsage;
    }
    if (a.count("did")) {
        if (pos.size() > 1) {
            cli::diag("ordinals and --did/--path exclude each other");
            return cli::kUsage;
        }
        std::string did = a["did"].as<std::string>(), path = a["path"].as<std::string>();
        if (!sov::syntax::is_did(did)) {
            cli::diag("--did '" + did + "' is not a DID (did:METHOD:ID, e.g. did:plc:…)");
            return cli::kUsage;
        }
        if (!sov::syntax::is_repo_path(path)) {
            cli::diag("--path '" + path + "' is not a record path (COLLECTION/RKEY, e.g. app.bsky.feed.post/3l…)");
            return cli::kUsage;
        }
    }
    std::string dir = pos[0], err;
    sov::Errc code;
    auto ar = sov::cvl::Archive::open(dir, err, &code);
    if (!ar) {
        std::string hint = cli::archive_hint(dir);
        return cli::fail(code, hint.empty() ? err : hint);
    }
    auto bits = sov::bitset::Set::open(dir + "/tomb", !test, &err);
    if (!bits) return cli::fail(bits.error(), err);

    std::vector<std::uint64_t> ords;
    std::uint64_t purged_skipped = 0;  // --did/--path: purged candidates (their DID is gone)
    if (a.count("did")) {
        std::string did = a["did"].as<std::string>(), path = a["path"].as<std::string>();
        std::vector<std::uint8_t> env;
        sov::msg::Message m;
        for (std::size_t s = 0; s < ar->segments().size(); ++s)
            for (auto o : ar->ordinals_with_path(s, path)) {
                // Confirm: path hashes can collide, and the DID is not in the op table.
                if (sov::Errc e = ar->read(o, env, err); e != sov::Errc::ok) {
                    // Purged by compaction: its DID can no longer be confirmed, and it was
                    // tombstoned before it was purged, so there is nothing to set or clear.
                    if (e == sov::Errc::cvl_purged) {
                        ++purged_skipped;
                        continue;
                    }
                    return cli::fail(e, err);
                }
                sov::frames::Envelope e;
                if (sov::frames::parse_envelope(env, e) || sov::msg::parse(e.wire, m) || m.did != did) continue;
                for (auto& op : m.ops)
                    if (op.path == path) {
                        ords.push_back(o);
                        break;
                    }
            }
        if (ords.empty()) {
            cli::diag(dir, "no message of " + did + " touches " + path +
                               (purged_skipped ? " (" + cli::count(purged_skipped, "candidate") +
                                                     " purged by compaction, so no longer matched)"
                                               : ""));
            return cli::status(sov::Errc::cvl_no_ordinal);
        }
    } else {
        auto parse_ord = [&](const std::string& s) -> bool {
            char* end = nullptr;
            errno = 0;
            unsigned long long v = std::strtoull(s.c_str(), &end, 10);
            if (s.empty() || *end || errno) return false;
            ords.push_back(v);
            return true;
        };
        if (pos.size() > 1) {
            for (std::size_t i = 1; i < pos.size(); ++i)
                if (!parse_ord(pos[i])) {
                    cli::diag("not an ordinal: '" + pos[i] + "'");
                    return cli::kUsage;
                }
        } else {
            // A signal ends the list (a read blocked on stdin returns); the ordinals read so
            // far are still applied, then the tool exits with cli::stop_status.
            cli::install_stop_handler(g_stop);
            std::string line;
            std::uint64_t n = 0;
            while (!g_stop.load() && std::getline(std::cin, line)) {
                ++n;
                if (line.empty()) continue;
                if (!parse_ord(line)) {
                    cli::diag("stdin:" + std::to_string(n), "not an ordinal: '" + line + "'");
                    return cli::kDataRejected;
                }
            }
        }
    }

    std::uint64_t changed = 0, done = 0, end = ar->end_ordinal();
    int status = cli::kOk;
    for (auto o : ords) {
        if (o >= end) {
            cli::diag("ordinal " + std::to_string(o) + " is beyond the archive (" + std::to_string(end) + " messages)");
            status = cli::status(sov::Errc::cvl_no_ordinal);
            continue;
        }
        // A purged message's content is gone for good: it reads "purged", and its bit stays.
        // (Only the purged case matters here: a segment that cannot be read does not change
        // what its tombstone bit says, as before.)
        bool purged = false;
        if (test || clear) {
            sov::ByteView env;
            purged = ar->view(o, env, err) == sov::Errc::cvl_purged;
        }
        if (test) {
            std::printf("%llu %s\n", (unsigned long long)o, purged ? "purged" : bits->test(o) ? "deleted" : "present");
            continue;
        }
        if (purged) {
            cli::diag("ordinal " + std::to_string(o) + " was purged by compaction: its content is gone, the tombstone stays");
            status = std::max(status, cli::status(sov::Errc::cvl_purged));
            continue;
        }
        ++done;
        auto r = clear ? bits->clear(o) : bits->set(o);
        if (!r) return cli::fail(r.error(), bits->last_error());
        changed += (*r != !clear);
    }
    if (!test)
        if (sov::Errc e = bits->sync(); e != sov::Errc::ok) return cli::fail(e, bits->last_error());
    if (!quiet && !test)
        cli::diag(dir, cli::count(done, "ordinal") + " " + (clear ? "cleared" : "tombstoned") + " (" +
                           cli::with_commas(changed) + " changed)" +
                           (done < ords.size() ? "; " + cli::with_commas(ords.size() - done) + " refused, see above" : "") +
                           cli::stop_note());
    return cli::stop_status(status);
}
