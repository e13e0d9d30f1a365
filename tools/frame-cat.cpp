// frame-cat — convert, filter and print frame streams (docs/design.md §1, §2).
#include "cli.h"

#include "sovereign/capture.h"
#include "sovereign/frame_json.h"
#include "sovereign/jetstream.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"
#include "sovereign/nats/jetstream.h"
#include "sovereign/nats/route.h"
#include "sovereign/syntax.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
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

}  // namespace

namespace {
std::atomic<bool> g_stop{false};
}  // namespace

int main(int argc, char** argv) {
    cli::init("frame-cat");
    cxxopts::Options opts("frame-cat",
                          "Convert, filter and print frame streams.\n"
                          "Usage: frame-cat [OPTIONS] [FILE...]   (no FILE or '-' reads stdin; *.zst is decoded)\n"
                          "       frame-cat [FILE...] --to nats://HOST:PORT/SUBJECT   (publish to JetStream)\n"
                          "       frame-cat --from 'nats://HOST:PORT/STREAM?consumer=NAME[&filter=SUBJECT]'\n"
                          "       frame-cat --nats-setup nats://HOST:PORT   (create the streams and buckets)\n");
    opts.add_options()
        ("from", "input format: frames, raw-u32le ([u32 LE length][message]…), json (DAG-JSON lines), or "
                 "nats://HOST:PORT/STREAM?consumer=NAME[&filter=SUBJECT]: a durable JetStream pull consumer, each "
                 "message acked once written to stdout",
         cxxopts::value<std::string>()->default_value("frames"))
        ("to", "output format: frames, json, raw-u32le, jetstream (Jetstream v1 JSON lines: one per record op), or "
               "nats://HOST:PORT/SUBJECT: publish each frame to JetStream (SUBJECT may hold {pp}, the partition of "
               "the frame's DID, and {src}), every publish acknowledged",
         cxxopts::value<std::string>()->default_value("frames"))
        ("partitions", "with --to nats://: the number of partitions {pp} ranges over (1-100)",
         cxxopts::value<std::uint32_t>()->default_value("16"))
        ("msg-id", "with --to nats://: the Nats-Msg-Id of each message, for the stream's dedupe: match-key (the "
                   "event's identity: DID and commit CID, or DID and time), src-seq (src and seq), none",
         cxxopts::value<std::string>()->default_value("none"))
        ("wait", "with --from nats://: stop after this many seconds without a message (default: follow for ever)",
         cxxopts::value<double>())
        ("nats-setup", "create or update the JetStream streams FH_SRC and FH_VRD and the bucket fh_cursors on this "
                       "server, then exit",
         cxxopts::value<std::string>())
        ("src", "src label for raw-u32le input", cxxopts::value<std::string>()->default_value("capture"))
        ("recv", "recv (µs since the epoch) for raw-u32le input; 0 = unknown",
         cxxopts::value<std::int64_t>()->default_value("0"))
        ("recv-from", "for raw-u32le input: 'payload-time' stamps recv from each message's own `time` field "
                      "(trusts the sender's clock; for old captures that recorded no receive time)",
         cxxopts::value<std::string>())
        ("blocks", "with --to json: add the CAR blocks of each message decoded (blocks_json)")
        ("type", "keep only these message types (commit,sync,identity,account,info,error,…) and, with 'mark', "
                 "markers; repeatable",
         cxxopts::value<std::vector<std::string>>())
        ("did", "keep only messages about these DIDs; repeatable", cxxopts::value<std::vector<std::string>>())
        ("collection", "keep only commits with an op in these collections (NSIDs); repeatable",
         cxxopts::value<std::vector<std::string>>())
        ("n,limit", "stop after writing N frames", cxxopts::value<std::uint64_t>())
        ("force", "write frames (--to frames, raw-u32le) to stdout even when it is a terminal")
        ("q,quiet", "no summary line and no progress")
        ("files", "input files", cxxopts::value<std::vector<std::string>>());
    opts.parse_positional({"files"});
    opts.positional_help("[FILE...]");
    auto args = cli::parse(opts, argc, argv);
    namespace nats = sov::nats;
    std::string why;

    // NATS JetStream (docs/design.md §12): the streams and bucket, made once per server.
    if (args.count("nats-setup")) {
        nats::Url u;
        if (!nats::parse_url(args["nats-setup"].as<std::string>(), u, why)) {
            cli::diag("--nats-setup", why);
            return cli::kUsage;
        }
        auto conn = nats::Connection::open(u.server, "frame-cat --nats-setup", why);
        if (!conn || !conn->setup({}, why)) {
            cli::diag(u.server, why);
            return cli::kSystem;
        }
        if (!args.count("quiet"))
            cli::diag(u.server + ": streams " + nats::kSrcStream + " (fh.src.>) and " + nats::kVrdStream +
                      " (fh.vrd.>), bucket " + nats::kCursorBucket + ": ready (file storage, messages up to 8 MiB, "
                      "duplicate window 10 min)");
        return cli::kOk;
    }
    const std::string from_arg = args["from"].as<std::string>(), to_arg = args["to"].as<std::string>();
    const bool nats_from = from_arg.rfind("nats://", 0) == 0, nats_to = to_arg.rfind("nats://", 0) == 0;
    nats::Url nats_url;
    if ((nats_from || nats_to) && !nats::parse_url(nats_from ? from_arg : to_arg, nats_url, why)) {
        cli::diag(nats_from ? "--from" : "--to", why);
        return cli::kUsage;
    }
    if (nats_from && nats_to) {
        cli::diag("--from and --to are both nats:// addresses: one side of frame-cat is JetStream, the other stdin or stdout");
        return cli::kUsage;
    }
    for (const char* o : {"partitions", "msg-id"})
        if (args.count(o) && !nats_to) {
            cli::diag(std::string("--") + o + " works only with --to nats://");
            return cli::kUsage;
        }
    if (args.count("wait") && !nats_from) {
        cli::diag("--wait works only with --from nats://");
        return cli::kUsage;
    }
    const std::uint32_t partitions = args["partitions"].as<std::uint32_t>();
    const std::string msg_id_mode = args["msg-id"].as<std::string>();
    if (nats_to) {
        if (partitions < 1 || partitions > 100) {
            cli::diag("--partitions must be between 1 and 100");
            return cli::kUsage;
        }
        if (msg_id_mode != "match-key" && msg_id_mode != "src-seq" && msg_id_mode != "none") {
            cli::diag("--msg-id must be match-key, src-seq or none");
            return cli::kUsage;
        }
        if (nats_url.path.empty() || nats_url.path.find_first_of(" \t") != std::string::npos) {
            cli::diag("--to", "no subject in '" + to_arg + "' (e.g. nats://127.0.0.1:4222/fh.src.pds.{pp})");
            return cli::kUsage;
        }
    }
    std::string nats_consumer, nats_filter;
    double nats_wait = -1;
    if (nats_from) {
        nats_consumer = nats_url.param("consumer").value_or("");
        nats_filter = nats_url.param("filter").value_or("");
        if (nats_url.path.empty() || nats_consumer.empty()) {
            cli::diag("--from", "give a stream and a consumer: nats://HOST:PORT/STREAM?consumer=NAME[&filter=SUBJECT]");
            return cli::kUsage;
        }
        if (args.count("files")) {
            cli::diag("--from nats:// reads JetStream, not files: drop the FILE arguments");
            return cli::kUsage;
        }
        if (args.count("wait")) {
            nats_wait = args["wait"].as<double>();
            if (!(nats_wait > 0 && nats_wait <= 86400 * 365)) {
                cli::diag("--wait must be a positive number of seconds");
                return cli::kUsage;
            }
        }
    }

    Format from, to;
    if (from_arg == "jetstream") {
        cli::diag("jetstream is an output format only (--to jetstream)");
        return cli::kUsage;
    }
    if (!parse_format(nats_from ? "frames" : from_arg, from)) {
        cli::diag("unknown --from format '" + from_arg + "' (try --help)");
        return cli::kUsage;
    }
    if (!parse_format(nats_to ? "frames" : to_arg, to)) {
        cli::diag("unknown --to format '" + to_arg + "' (try --help)");
        return cli::kUsage;
    }
    // Options that would do nothing with the formats chosen are refused, not ignored.
    if (args.count("blocks") && to != Format::json) {
        cli::diag("--blocks works only with --to json");
        return cli::kUsage;
    }
    for (const char* o : {"src", "recv", "recv-from"})
        if (args.count(o) && from != Format::raw_u32le) {
            cli::diag(std::string("--") + o + " labels raw input: it works only with --from raw-u32le (frames keep their own)");
            return cli::kUsage;
        }
    std::string src = args["src"].as<std::string>();
    if (src.size() > sov::frames::kMaxSrc) {
        cli::diag("--src is longer than 253 bytes");
        return cli::kUsage;
    }
    std::int64_t recv = args["recv"].as<std::int64_t>();
    bool recv_from_time = false;
    if (args.count("recv-from")) {
        if (args["recv-from"].as<std::string>() != "payload-time") {
            cli::diag("unknown --recv-from '" + args["recv-from"].as<std::string>() + "' (the one choice is payload-time)");
            return cli::kUsage;
        }
        if (args.count("recv")) {
            cli::diag("--recv and --recv-from both set recv: choose one");
            return cli::kUsage;
        }
        recv_from_time = true;
    }
    std::uint64_t untimed = 0;  // --recv-from payload-time: messages without a usable `time` (recv 0)
    bool decode_blocks = args.count("blocks") > 0;
    bool quiet = args.count("quiet") > 0;
    std::uint64_t limit = args.count("limit") ? args["limit"].as<std::uint64_t>() : UINT64_MAX;

    cli::MessageFilter filter;
    for (const auto& t : cli::list_values(args, "type")) {
            std::string name = t[0] == '#' ? t.substr(1) : t;
            if (name == "mark") {  // markers (docs/design.md §2), not a message type
                filter.marks = true;
                continue;
            }
            sov::msg::Type ty = name == "error" ? sov::msg::Type::error : sov::msg::type_from_header("#" + name);
            if (ty == sov::msg::Type::unknown && name != "unknown") {
                cli::diag("unknown message type '" + t + "' for --type");
                return cli::kUsage;
            }
            filter.types.insert(ty);
    }
    for (const auto& d : cli::list_values(args, "did")) filter.dids.insert(d);
    for (const auto& c : cli::list_values(args, "collection")) filter.collections.insert(c);

    std::vector<std::string> files;
    if (args.count("files")) files = args["files"].as<std::vector<std::string>>();
    if (files.empty()) files.push_back("-");
    if (!nats_to && (to == Format::frames || to == Format::raw_u32le) && cli::refuse_terminal(1, args.count("force") > 0))
        return cli::kUsage;

    std::unique_ptr<nats::Connection> nats_conn;
    std::unique_ptr<nats::Publisher> publisher;
    std::unique_ptr<nats::PullConsumer> consumer;
    if (nats_from || nats_to) {
        nats_conn = nats::Connection::open(nats_url.server, "frame-cat", why);
        if (nats_conn && nats_from)
            consumer = nats::PullConsumer::open(*nats_conn, nats_url.path, nats_consumer, nats_filter, why);
        if (!nats_conn || (nats_from && !consumer)) {
            cli::diag(nats_url.server, why);
            return cli::kSystem;
        }
        if (nats_to) publisher = std::make_unique<nats::Publisher>(*nats_conn);
    }
    cli::install_stop_handler(g_stop);

    sov::frames::Writer out(1);
    std::string line;
    sov::msg::Message m;
    std::uint64_t frames_in = 0, frames_out = 0, bytes_in = 0;
    cli::Progress progress(quiet, from == Format::frames || from == Format::raw_u32le ? cli::input_size(files) : 0);
    int status = cli::kOk;

    // Where the frame being emitted came from, for diagnostics: file and byte offset.
    std::string cur_path;
    std::uint64_t cur_offset = 0;
    std::uint64_t not_in_jetstream = 0;
    // Markers read, and those the output format cannot carry (raw-u32le, jetstream: counted
    // in the summary, never dropped silently).
    std::uint64_t markers_in = 0, markers_unwritable = 0;

    // Emits one frame given as an envelope; returns false when output should stop.
    auto emit = [&](const sov::frames::Envelope& env) -> bool {
        ++frames_in;
        if (env.is_marker()) ++markers_in;
        if (!filter.matches(env, m)) return true;
        if (publisher) {
            // One message per frame: its envelope, on the subject of its partition.
            const nats::Route r = nats::route_of(env, partitions);
            if (!publisher->publish(nats::subject_for(nats_url.path, r, env.src), env.raw,
                                    nats::msg_id_for(msg_id_mode, r, env), why)) {
                cli::diag(to_arg, why);
                status = std::max(status, int(cli::kSystem));
                return false;
            }
            ++frames_out;
            progress.update(frames_in, bytes_in);
            // Acknowledgements are awaited now and then (retries happen there), and at the end.
            if (frames_out % 65536 == 0 && !publisher->flush(why)) {
                cli::diag(to_arg, why);
                status = std::max(status, int(cli::kSystem));
                return false;
            }
            return frames_out < limit;
        }
        if (env.is_marker() && (to == Format::raw_u32le || to == Format::jetstream)) {
            ++markers_unwritable;
            return true;
        }
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
    std::uint64_t nats_acked = 0, nats_redelivered = 0;
    if (consumer) {
        // Batches from the durable consumer: written to stdout, then acked. A process killed
        // before the ack gets them again (redelivered after the consumer's ack wait).
        files.clear();
        cur_path = from_arg;
        std::vector<nats::Delivery> batch;
        auto last_msg = std::chrono::steady_clock::now();
        std::string last_err;
        bool bad = false;
        while (!bad && !g_stop.load() && frames_out < limit && !out.broken_pipe() && !out.failed()) {
            batch.clear();
            const int want = int(std::min<std::uint64_t>(256, limit - frames_out));
            if (!consumer->fetch(want, 1000, batch, why)) {
                // The server away (restarting): say so once, keep trying; the consumer is durable.
                if (why != last_err) cli::diag(from_arg, why + " (retrying)");
                last_err = why;
                std::this_thread::sleep_for(std::chrono::milliseconds(500));
                continue;
            }
            last_err.clear();
            if (batch.empty()) {
                if (nats_wait > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - last_msg).count() >= nats_wait)
                    break;
                continue;
            }
            last_msg = std::chrono::steady_clock::now();
            std::size_t done = 0;
            for (; done < batch.size(); ++done) {
                nats::Delivery& d = batch[done];
                sov::frames::Envelope env;
                if (sov::Located e = sov::frames::parse_envelope(d.data, env)) {
                    // Not acked: it stays in the stream, and this tool stops (as at a framing error).
                    cli::diag(from_arg + " stream seq " + std::to_string(d.stream_seq) + " (" + d.subject + "):" +
                                  std::to_string(e.offset),
                              "not a frame envelope: " + std::string(sov::to_string(e.errc)));
                    status = cli::kDataRejected;
                    bad = true;
                    break;
                }
                if (d.delivered > 1) ++nats_redelivered;
                bytes_in += d.data.size();
                cur_offset = d.stream_seq;
                if (!emit(env)) {
                    ++done;
                    break;
                }
            }
            if (!out.flush() || out.broken_pipe()) break;  // not written: not acked
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (i < done && consumer->ack(batch[i], why)) ++nats_acked;
                else nats::PullConsumer::drop(batch[i]);
            }
        }
        for (auto& d : batch)
            if (d.msg) nats::PullConsumer::drop(d);
    }
    for (const auto& path : files) {
        if (out.broken_pipe() || frames_out >= limit || g_stop.load()) break;
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
            if (r.error() && !g_stop.load()) {
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
            const std::uint64_t frames_before = frames_in;
            cur_path = path;
            while (go && r.next(msg)) {
                bytes_in += msg.size() + 4;
                cur_offset = r.offset();
                rec.clear();
                sov::frames::Envelope env;
                sov::Located e{sov::Errc::frame_oversized, 0};  // append_record refuses only a message near 16 MiB
                std::int64_t msg_recv = recv;
                if (recv_from_time) {
                    // The sender's clock, by explicit choice: a message with no parseable `time`
                    // (#info, error frames, malformed) keeps recv 0 = unknown, and is counted.
                    sov::msg::Message m;
                    std::optional<std::int64_t> t;
                    if (!sov::msg::parse(msg, m) && !m.time.empty()) t = sov::syntax::parse_datetime_micros(m.time);
                    msg_recv = t.value_or(0);
                    if (!t) ++untimed;
                }
                if (!sov::frames::append_record(rec, src, std::nullopt, msg_recv, msg) ||
                    (e = sov::frames::parse_record(rec, env))) {
                    cli::diag(path + ":" + std::to_string(r.offset()),
                              "message of " + std::to_string(msg.size()) + " bytes does not fit a frame record: " +
                                  std::string(sov::to_string(e.errc)));
                    status = cli::kDataRejected;
                    break;
                }
                go = emit(env);
            }
            if (r.error() && !g_stop.load()) {
                std::string why(sov::to_string(r.error().errc));
                if (r.error().errc == sov::Errc::io_error) why += ": " + r.input().error_text();
                else if (frames_in == frames_before)  // the first message: maybe another format
                    if (std::string hint = cli::format_hint_of(path, "raw"); !hint.empty()) why += " (" + hint + ")";
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
            bool go = true, eof = false, bad = false, stopped = false;
            while (go && !bad) {
                std::size_t nl = pending.find('\n');
                if (nl == std::string::npos && !eof) {
                    long n = in.read(chunk.data(), chunk.size());
                    if (n < 0) {
                        if (g_stop.load()) {  // stopped by a signal: the whole lines read are still written
                            eof = stopped = true;
                            continue;
                        }
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
                    if (pending.empty() || stopped) break;  // a line cut by the stop is not taken
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
                        // Pretty-printed JSON, an array or a binary stream fail on line 1.
                        std::string hint = line_no == 1 ? cli::format_hint(sov::as_bytes(pending), "json") : "";
                        cli::diag(path + ":" + std::to_string(line_off) + " (line " + std::to_string(line_no) + ")",
                                  std::string(sov::to_string(e)) + " at " + where + (hint.empty() ? "" : " (" + hint + ")"));
                        status = cli::kDataRejected;
                        bad = true;
                        break;
                    }
                    bytes_in += l.size() + 1;
                    sov::frames::Envelope env;
                    (void)sov::frames::parse_record(rec, env);  // append_record validated it (size too: D12)
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
    if (publisher && !publisher->flush(why)) {
        cli::diag(to_arg, why);
        status = std::max(status, int(cli::kSystem));
    }
    int wst = cli::finish_output(out, "stdout");
    if (publisher && !quiet)
        cli::diag(cli::count(frames_in, "frame") + " read, " + cli::with_commas(frames_out) + " published to " +
                  nats_url.server + " (" + cli::with_commas(publisher->stored()) + " stored, " +
                  cli::with_commas(publisher->duplicates()) + " already held, " + cli::with_commas(publisher->retried()) +
                  " re-published)" + publisher->order_note() + cli::stop_note());
    if (publisher) return cli::stop_status(status);
    // No summary after a closed pipe (docs/design.md §6: quietly) or a failed write (reported).
    if (!quiet && !out.broken_pipe() && wst == cli::kOk)
        cli::diag(cli::count(frames_in, "frame") + " read" +
                  (markers_in ? " (" + cli::count(markers_in, "marker") + ")" : "") + ", " + cli::with_commas(frames_out) + " written (" +
                  cli::count(bytes_in, "byte") + " in, " + cli::count(out.bytes_written(), "byte") + " out)" +
                  (not_in_jetstream ? ", " + cli::with_commas(not_in_jetstream) + " of a type Jetstream does not carry"
                                    : "") +
                  (markers_unwritable ? ", " + cli::count(markers_unwritable, "marker") + " not written (" +
                                            (to == Format::jetstream ? "Jetstream" : "a raw capture") +
                                            " carries messages only)"
                                      : "") +
                  (untimed ? ", " + cli::count(untimed, "message") + " without a time (recv 0)" : "") +
                  (consumer ? ", " + cli::with_commas(nats_acked) + " acked" +
                                  (nats_redelivered ? " (" + cli::with_commas(nats_redelivered) + " redelivered)" : "")
                            : "") +
                  cli::stop_note());
    return cli::stop_status(std::max(status, wst));
}
