// frame-cat — convert, filter and print frame streams (docs/design.md §1, §2).
#include "cli.h"

#include "sovereign/capture.h"
#include "sovereign/frame_json.h"
#include "sovereign/jetstream.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace {

enum class Format { frames, raw_u32le, json, jetstream };

bool parse_format(const std::string& s, Format& f) {
    if (s == "frames") f = Format::frames;
    else if (s == "raw-u32le" || s == "raw") f = Format::raw_u32le;
    else if (s == "json") f = Format::json;
    else if (s == "jetstream") f = Format::jetstream;
    else return false;
    return true;
}

struct Filter {
    std::set<sov::msg::Type> types;
    std::set<std::string, std::less<>> dids;
    std::set<std::string, std::less<>> collections;
    bool active() const { return !types.empty() || !dids.empty() || !collections.empty(); }
};

// A frame passes when every given criterion matches. Wire bytes that do not parse match
// no criterion (so any filter drops them).
bool matches(const Filter& f, sov::ByteView wire, sov::msg::Message& m) {
    if (!f.active()) return true;
    if (sov::msg::parse(wire, m)) return false;
    if (!f.types.empty() && !f.types.count(m.type)) return false;
    if (!f.dids.empty() && !f.dids.count(m.did)) return false;
    if (!f.collections.empty()) {
        bool hit = false;
        for (const auto& op : m.ops) {
            std::string_view coll = op.path.substr(0, op.path.find('/'));
            if (f.collections.count(coll)) { hit = true; break; }
        }
        if (!hit) return false;
    }
    return true;
}

std::vector<std::string> split_list(const std::vector<std::string>& in) {
    std::vector<std::string> out;
    for (const auto& s : in) {
        std::size_t start = 0;
        while (start <= s.size()) {
            std::size_t c = s.find(',', start);
            if (c == std::string::npos) c = s.size();
            if (c > start) out.push_back(s.substr(start, c - start));
            start = c + 1;
        }
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    cli::init("frame-cat");
    cxxopts::Options opts("frame-cat",
                          "Convert, filter and print frame streams.\n"
                          "Usage: frame-cat [OPTIONS] [FILE...]   (no FILE or '-' reads stdin; *.zst is decoded)\n");
    opts.add_options()
        ("from", "input format: frames, raw-u32le ([u32 LE length][message]…), json (DAG-JSON lines)",
         cxxopts::value<std::string>()->default_value("frames"))
        ("to", "output format: frames, json, raw-u32le, jetstream (Jetstream v1 JSON lines: one per record op)", cxxopts::value<std::string>()->default_value("frames"))
        ("src", "src label for raw-u32le input", cxxopts::value<std::string>()->default_value("capture"))
        ("recv", "recv (µs since the epoch) for raw-u32le input; 0 = unknown",
         cxxopts::value<std::int64_t>()->default_value("0"))
        ("blocks", "with --to json: add the CAR blocks of each message decoded (blocks_json)")
        ("type", "keep only these message types (commit,sync,identity,account,info,error,…); repeatable",
         cxxopts::value<std::vector<std::string>>())
        ("did", "keep only messages about these DIDs; repeatable", cxxopts::value<std::vector<std::string>>())
        ("collection", "keep only commits with an op in these collections (NSIDs); repeatable",
         cxxopts::value<std::vector<std::string>>())
        ("n,limit", "stop after writing N frames", cxxopts::value<std::uint64_t>())
        ("q,quiet", "no summary line")
        ("files", "input files", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"files"});
    opts.positional_help("[FILE...]");
    auto args = cli::parse(opts, argc, argv);

    Format from, to;
    if (args["from"].as<std::string>() == "jetstream") {
        cli::diag("jetstream is an output format only (--to jetstream)");
        return cli::kUsage;
    }
    if (!parse_format(args["from"].as<std::string>(), from)) {
        cli::diag("unknown --from format '" + args["from"].as<std::string>() + "' (try --help)");
        return cli::kUsage;
    }
    if (!parse_format(args["to"].as<std::string>(), to)) {
        cli::diag("unknown --to format '" + args["to"].as<std::string>() + "' (try --help)");
        return cli::kUsage;
    }
    std::string src = args["src"].as<std::string>();
    if (src.size() > sov::frames::kMaxSrc) {
        cli::diag("--src is longer than 253 bytes");
        return cli::kUsage;
    }
    std::int64_t recv = args["recv"].as<std::int64_t>();
    bool decode_blocks = args.count("blocks") > 0;
    bool quiet = args.count("quiet") > 0;
    std::uint64_t limit = args.count("limit") ? args["limit"].as<std::uint64_t>() : UINT64_MAX;

    Filter filter;
    if (args.count("type"))
        for (const auto& t : split_list(args["type"].as<std::vector<std::string>>())) {
            std::string name = t[0] == '#' ? t.substr(1) : t;
            sov::msg::Type ty = name == "error" ? sov::msg::Type::error : sov::msg::type_from_header("#" + name);
            if (ty == sov::msg::Type::unknown && name != "unknown") {
                cli::diag("unknown message type '" + t + "' for --type");
                return cli::kUsage;
            }
            filter.types.insert(ty);
        }
    if (args.count("did"))
        for (const auto& d : split_list(args["did"].as<std::vector<std::string>>())) filter.dids.insert(d);
    if (args.count("collection"))
        for (const auto& c : split_list(args["collection"].as<std::vector<std::string>>())) filter.collections.insert(c);

    std::vector<std::string> files;
    if (args.count("files")) files = args["files"].as<std::vector<std::string>>();
    if (files.empty()) files.push_back("-");

    sov::frames::Writer out(1);
    std::string line;
    sov::msg::Message m;
    std::uint64_t frames_in = 0, frames_out = 0, bytes_in = 0;
    cli::Progress progress;
    int status = cli::kOk;

    // Where the frame being emitted came from, for diagnostics: file and byte offset.
    std::string cur_path;
    std::uint64_t cur_offset = 0;
    std::uint64_t not_in_jetstream = 0;

    // Emits one frame given as an envelope; returns false when output should stop.
    auto emit = [&](const sov::frames::Envelope& env) -> bool {
        ++frames_in;
        if (!matches(filter, env.wire, m)) return true;
        auto& buf = out.buffer();
        switch (to) {
        case Format::frames: sov::frames::append_record_raw(buf, env); break;
        case Format::raw_u32le: sov::capture::append_raw(buf, env.wire); break;
        case Format::json:
            line.clear();
            sov::frame_json::append_line(env, decode_blocks, line);
            line.push_back('\n');
            buf.insert(buf.end(), line.begin(), line.end());
            break;
        case Format::jetstream: {
            line.clear();
            sov::jetstream::Result r = sov::jetstream::append_lines(env.wire, env.recv, line);
            if (r.errc != sov::Errc::ok) {
                // Reported and counted, never silently skipped; the other frames go on.
                cli::diag(cur_path + ":" + std::to_string(cur_offset),
                          "not convertible to Jetstream: " + std::string(sov::to_string(r.errc)) + " (wire byte " +
                              std::to_string(r.offset) + ")");
                status = std::max(status, int(cli::kDataRejected));
                return !out.broken_pipe() && !out.failed();
            }
            if (r.lines == 0) {
                ++not_in_jetstream;
                return true;
            }
            buf.insert(buf.end(), line.begin(), line.end());
            break;
        }
        }
        out.maybe_flush();
        ++frames_out;
        progress.update(frames_in, bytes_in);
        return !out.broken_pipe() && !out.failed() && frames_out < limit;
    };

    std::vector<std::uint8_t> rec;
    for (const auto& path : files) {
        if (out.broken_pipe() || frames_out >= limit) break;
        if (from == Format::frames) {
            sov::frames::Reader r = sov::frames::Reader::open(path);
            if (r.open_errno()) {
                cli::diag(path, std::strerror(r.open_errno()));
                status = std::max(status, cli::status(sov::from_errno(r.open_errno())));
                continue;
            }
            sov::frames::Envelope env;
            bool go = true;
            cur_path = path;
            while (go && r.next(env)) {
                bytes_in = r.bytes_read();
                cur_offset = r.record_offset();
                go = emit(env);
            }
            if (r.error()) {
                status = std::max<int>(status, cli::framing_error(r));
                break;  // a framing error stops the tool (docs/design.md §2)
            }
        } else if (from == Format::raw_u32le) {
            sov::io::Input in = sov::io::Input::open(path);
            if (in.open_errno()) {
                cli::diag(path, std::strerror(in.open_errno()));
                status = std::max(status, cli::status(sov::from_errno(in.open_errno())));
                continue;
            }
            sov::capture::RawReader r(std::move(in));
            sov::ByteView msg;
            bool go = true;
            cur_path = path;
            while (go && r.next(msg)) {
                bytes_in += msg.size() + 4;
                cur_offset = r.offset();
                rec.clear();
                sov::frames::append_record(rec, src, std::nullopt, recv, msg);
                sov::frames::Envelope env;
                if (sov::Located e = sov::frames::parse_record(rec, env)) {  // only a message near 16 MiB
                    cli::diag(path + ":" + std::to_string(r.offset()),
                              "message of " + std::to_string(msg.size()) + " bytes does not fit a frame record: " +
                                  std::string(sov::to_string(e.errc)));
                    status = cli::kDataRejected;
                    break;
                }
                go = emit(env);
            }
            if (r.error()) {
                std::string why(sov::to_string(r.error().errc));
                if (r.error().errc == sov::Errc::io_error) why += ": " + r.input().error_text();
                cli::diag(path + ":" + std::to_string(r.error().offset), why);
                status = std::max<int>(status, cli::status(r.error().errc));
                break;
            }
        } else {
            sov::io::Input in = sov::io::Input::open(path);
            if (in.open_errno()) {
                cli::diag(path, std::strerror(in.open_errno()));
                status = std::max(status, cli::status(sov::from_errno(in.open_errno())));
                continue;
            }
            std::string pending;
            std::vector<std::uint8_t> chunk(1 << 16);
            std::uint64_t line_no = 0, line_off = 0;
            bool go = true, eof = false, bad = false;
            while (go && !bad) {
                std::size_t nl = pending.find('\n');
                if (nl == std::string::npos && !eof) {
                    long n = in.read(chunk.data(), chunk.size());
                    if (n < 0) {
                        cli::diag(path, in.error_text());
                        status = cli::kSystem;
                        bad = true;
                        break;
                    }
                    if (n == 0) eof = true;
                    pending.append(reinterpret_cast<const char*>(chunk.data()), std::size_t(n));
                    continue;
                }
                if (nl == std::string::npos) {
                    if (pending.empty()) break;
                    nl = pending.size();
                }
                std::string_view l(pending.data(), nl);
                ++line_no;
                if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
                if (!l.empty()) {
                    rec.clear();
                    std::string where;
                    sov::Errc e = sov::frame_json::append_record(l, rec, where);
                    if (e != sov::Errc::ok) {
                        cli::diag(path + ":" + std::to_string(line_off) + " (line " + std::to_string(line_no) + ")",
                                  std::string(sov::to_string(e)) + " at " + where);
                        status = cli::kDataRejected;
                        bad = true;
                        break;
                    }
                    bytes_in += l.size() + 1;
                    sov::frames::Envelope env;
                    sov::frames::parse_record(rec, env);  // append_record validated it
                    cur_path = path;
                    cur_offset = line_off;
                    go = emit(env);
                }
                line_off += nl + 1;
                pending.erase(0, std::min(nl + 1, pending.size()));
            }
            if (bad) break;
        }
    }
    progress.finish();
    int wst = cli::finish_output(out, "stdout");
    if (!quiet)
        cli::diag(cli::with_commas(frames_in) + " frames read, " + cli::with_commas(frames_out) + " written (" +
                  cli::with_commas(bytes_in) + " bytes in, " + cli::with_commas(out.bytes_written()) + " bytes out)" +
                  (not_in_jetstream ? ", " + cli::with_commas(not_in_jetstream) + " of a type Jetstream does not carry"
                                    : ""));
    return std::max(status, wst);
}
