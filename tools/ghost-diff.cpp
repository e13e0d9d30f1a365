// ghost-diff — which events did the relay drop, delay or invent: the relay's stream against the
// mesh of PDS streams, matched by key (docs/design.md §11; the matcher is sovereign/ghost.h).
//
// Wiring: one reader thread per input (file or FIFO) parses frame records and hands batches to
// the main thread, which feeds the matcher — for regular files in recv order across inputs (a
// merge), for live inputs as they come — and writes the findings as JSON lines.
#include "cli.h"
#include "ghost_view.h"

#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/ghost.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <csignal>
#include <pthread.h>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <poll.h>
#include <thread>

namespace {

std::atomic<bool> g_stop{false};

using sov::ghost::Side;

// key_of's types (Key::type), as Item::type indexes them.
constexpr std::string_view kTypes[] = {"commit", "sync", "identity", "account"};

// One batch of records from an input, reduced to what the matcher needs: for a message its
// src, recv and match key (extracted on the reader thread; the message bytes are not copied),
// for a marker its envelope. Views are rebuilt from offsets into `bytes`.
struct Item {
    std::int64_t recv = 0;
    std::uint32_t src_off = 0, off = 0, len = 0;  // marker: its envelope; key error: the reason
    std::uint16_t src_len = 0;
    enum What : std::uint8_t { marker, keyed, unmatched, key_error } what = marker;
    std::uint8_t type = 0;  // keyed: key_of's type, as an index into kTypes
    bool active = true;
    std::uint8_t did_len = 0, commit_len = 0, time_len = 0, status_len = 0, coll_len = 0;  // keyed, from off
    sov::ghost::KeyHash hash;  // keyed: key_hash() of the key
};

struct Batch {
    // A batch is handed to the main thread when full: 64 KiB of key bytes or 1024 items. Batches
    // are recycled (Input::spare) with their capacity, so the steady state allocates nothing.
    static constexpr std::size_t kBytes = 64u << 10, kItems = 1024;
    std::vector<std::uint8_t, sov::frames::detail::NoZeroAlloc<std::uint8_t>> bytes;  // resize() does not zero
    std::vector<Item> items;

    bool full() const noexcept { return bytes.size() >= kBytes || items.size() >= kItems; }
    // What the batch holds, in bytes (the reader's queue is bounded by the sum).
    std::size_t memory() const noexcept { return bytes.size() + items.size() * sizeof(Item); }
    void clear() noexcept {
        bytes.clear();
        items.clear();
    }
    void reserve() {
        bytes.reserve(kBytes + 4096);
        items.reserve(kItems);
    }
    [[gnu::always_inline]] std::uint32_t put(const void* p, std::size_t n) {
        auto at = std::uint32_t(bytes.size());
        if (bytes.capacity() - at < n) [[unlikely]]
            bytes.reserve(std::max(bytes.capacity() * 2, at + n));
        bytes.resize(at + n);
        if (n) std::memcpy(bytes.data() + at, p, n);
        return at;
    }
    std::uint32_t put(std::string_view s) { return put(s.data(), s.size()); }
    std::string_view text(std::uint32_t off, std::size_t n) const {
        return {reinterpret_cast<const char*>(bytes.data()) + off, n};
    }
    // The key of a keyed item, as views into this batch.
    sov::ghost::Key key(const Item& it) const {
        sov::ghost::Key k;
        std::uint32_t o = it.off;
        k.type = kTypes[it.type];
        k.did = text(o, it.did_len), o += it.did_len;
        k.commit = {bytes.data() + o, it.commit_len}, o += it.commit_len;
        k.time = text(o, it.time_len), o += it.time_len;
        k.status = text(o, it.status_len), o += it.status_len;
        k.collection = text(o, it.coll_len);
        k.active = it.active;
        return k;
    }
    // Appends one record.
    // Appends one record; `offset` (its byte offset in the input) names it in a key error.
    void add(const sov::frames::Envelope& env, std::uint64_t offset) {
        Item it;
        it.recv = env.recv;
        it.src_len = std::uint16_t(env.src.size());
        it.src_off = put(env.src);
        if (env.is_marker()) {
            it.what = Item::marker;
            it.off = put(env.raw.data(), env.raw.size());
            it.len = std::uint32_t(env.raw.size());
        } else {
            sov::ghost::Key k;
            std::string why;
            auto e = sov::ghost::key_of(env.wire, k, why);
            if (e != sov::Errc::ok) {
                it.what = Item::key_error;
                why = std::to_string(offset) + ": " + why;  // "FILE:OFFSET: reason", as framing errors
                it.off = put(why);
                it.len = std::uint32_t(why.size());
            } else if (k.type.empty()) {
                it.what = Item::unmatched;
            } else {
                it.what = Item::keyed;
                it.hash = sov::ghost::key_hash(k);
                // key_of's four types have four lengths: commit 6, sync 4, identity 8, account 7.
                it.type = k.type.size() == 4 ? 1 : k.type.size() == 8 ? 2 : k.type.size() == 7 ? 3 : 0;
                it.active = k.active;
                auto cap = [](std::size_t n) { return std::uint8_t(std::min<std::size_t>(n, 255)); };
                it.did_len = cap(k.did.size());
                it.commit_len = cap(k.commit.size());
                it.time_len = cap(k.time.size());
                it.status_len = cap(k.status.size());
                it.coll_len = cap(k.collection.size());
                it.off = put(k.did.substr(0, it.did_len));
                put(k.commit.data(), it.commit_len);
                put(k.time.substr(0, it.time_len));
                put(k.status.substr(0, it.status_len));
                put(k.collection.substr(0, it.coll_len));
            }
        }
        items.push_back(it);
    }
};

// A reader thread and its bounded queue of batches.
struct Input {
    std::string path;
    Side side = Side::mesh;
    bool merged = false;  // one stream holding both sides, split by src
    int id = 0;
    bool regular = false;
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;  // signalled on push, pop and end
    std::deque<Batch> queue;
    std::vector<Batch> spare;  // batches the main thread is done with, for the reader to refill
    std::size_t queued_bytes = 0;
    bool ended = false;
    int status = 0;              // the exit status of a read failure (framing error, I/O)
    std::string error;           // its message, reported by the main thread
    std::uint64_t records = 0, bytes_read = 0;
    // Main thread's position in its current batch.
    Batch cur;
    std::size_t pos = 0;
    bool has_cur = false;
    static constexpr std::size_t kQueueBytes = 8u << 20;
};

void read_input(Input& in) {
    auto r = sov::frames::Reader::open(in.path);
    auto fail = [&](int status, std::string msg) {
        std::lock_guard lk(in.mu);
        in.status = status;
        in.error = std::move(msg);
        in.ended = true;
        in.cv.notify_all();
    };
    if (r.open_errno()) {
        fail(cli::status(sov::from_errno(r.open_errno())), in.path + ": " + std::strerror(r.open_errno()));
        return;
    }
    Batch b;
    b.reserve();
    auto last_push = std::chrono::steady_clock::now();
    auto push = [&](bool end) {
        std::unique_lock lk(in.mu);
        in.cv.wait(lk, [&] { return in.queued_bytes < Input::kQueueBytes || g_stop.load(); });
        if (!b.items.empty()) {
            in.queued_bytes += b.memory();
            in.queue.push_back(std::move(b));
            if (!in.spare.empty()) {
                b = std::move(in.spare.back());
                in.spare.pop_back();
                b.clear();
            } else {
                b = Batch{};
                b.reserve();
            }
        }
        in.bytes_read = r.bytes_read();
        if (end) in.ended = true;
        in.cv.notify_all();
        last_push = std::chrono::steady_clock::now();
    };
    sov::frames::Envelope env;
    for (;;) {
        if (!r.next(env)) {
            auto e = r.error();
            if (e && !(g_stop.load() && e.errc == sov::Errc::io_error)) {
                push(false);
                // The same words as every frame tool: "<file>:<offset>: <reason>".
                std::string msg = r.name() + ":" + std::to_string(e.offset) + ": " + std::string(sov::to_string(e.errc));
                if (e.errc == sov::Errc::io_error) msg += ": " + r.io_error_text();
                fail(cli::status(e.errc), msg);
                return;
            }
            push(true);
            return;
        }
        b.add(env, r.record_offset());
        // A live input hands over what it has at least every 50 ms; a regular file is read to
        // its end without waiting, so only full batches (no clock read per record).
        if (b.full() || (!in.regular && std::chrono::steady_clock::now() - last_push > std::chrono::milliseconds(50)))
            push(false);
    }
}

// The JSON of a finding (one line per finding, the hot path of a run over files), written
// through a pointer into one buffer sized for the longest line the finding can make (every
// character escaped as \u00XX): no bounds check, no allocation per field.
struct JsonOut {
    char* w;

    void raw(const char* p, std::size_t n) {
        std::memcpy(w, p, n);
        w += n;
    }
    void raw(std::string_view s) { raw(s.data(), s.size()); }
    template <std::size_t N>
    void lit(const char (&s)[N]) { raw(s, N - 1); }
    void put(char c) { *w++ = c; }
    // Whether any of the 8 bytes of `v` is a control character, '"' or '\\'.
    static bool special8(std::uint64_t v) {
        constexpr std::uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
        auto zero = [&](std::uint64_t x) { return (x - ones) & ~x & high; };
        return ((v - ones * 0x20) & ~v & high) | zero(v ^ (ones * '"')) | zero(v ^ (ones * '\\'));
    }
    // A JSON string (quotes included), escaping what JSON requires: '"', '\\' and controls.
    void str(std::string_view s) {
        put('"');
        std::size_t i = 0;
        for (; i + 8 <= s.size(); i += 8) {  // runs of plain characters, 8 at a time
            std::uint64_t v;
            std::memcpy(&v, s.data() + i, 8);
            if (special8(v)) break;
            std::memcpy(w, &v, 8);
            w += 8;
        }
        for (; i < s.size(); ++i) {
            auto c = static_cast<unsigned char>(s[i]);
            if (c >= 0x20 && c != '"' && c != '\\') {
                put(char(c));
            } else if (c == '"' || c == '\\') {
                put('\\');
                put(char(c));
            } else {
                static const char hex[] = "0123456789abcdef";
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                raw(esc, 6);
            }
        }
        put('"');
    }
    void num(std::int64_t v) { w = std::to_chars(w, w + 24, v).ptr; }
};

// The most bytes json_line() can write for `f`.
std::size_t json_bound(const sov::ghost::Finding& f) {
    return 400 + f.type.size() + f.cid.size() +
           6 * (f.did.size() + f.time.size() + f.status.size() + f.host.size() + f.collection.size() + f.reason.size());
}

// Writes the line into `buf` (at least json_bound(f) bytes); returns its length.
std::size_t json_line(char* buf, const sov::ghost::Finding& f) {
    JsonOut o{buf};
    o.lit("{\"kind\":\"");
    o.raw(sov::ghost::to_string(f.kind));
    o.lit("\",\"side\":\"");
    o.raw(sov::ghost::to_string(f.side));
    o.lit("\",\"type\":\"");
    o.raw(f.type);
    o.lit("\",\"did\":");
    o.str(f.did);
    if (!f.cid.empty()) {
        o.lit(",\"cid\":\"");
        o.raw(f.cid);
        o.put('"');
    }
    if (f.type == "identity" || f.type == "account") {
        o.lit(",\"time\":");
        o.str(f.time);
    }
    if (f.type == "account") {
        if (f.active) o.lit(",\"active\":true");
        else o.lit(",\"active\":false");
        if (!f.status.empty()) {
            o.lit(",\"status\":");
            o.str(f.status);
        }
    }
    o.lit(",\"host\":");
    o.str(f.host);
    if (!f.collection.empty()) {
        o.lit(",\"collection\":");
        o.str(f.collection);
    }
    o.lit(",\"mesh_recv\":");
    if (f.mesh_recv != 0) o.num(f.mesh_recv);
    else o.lit("null");
    o.lit(",\"relay_recv\":");
    if (f.relay_recv != 0) o.num(f.relay_recv);
    else o.lit("null");
    o.lit(",\"latency_us\":");
    if (f.mesh_recv != 0 && f.relay_recv != 0) o.num(f.latency());
    else o.lit("null");
    if (f.replayed) o.lit(",\"replayed\":true");
    if (!f.reason.empty()) {
        o.lit(",\"reason\":");
        o.str(f.reason);
    }
    o.lit("}\n");
    return std::size_t(o.w - buf);
}

bool parse_kinds(const std::vector<std::string>& names, std::array<bool, 4>& want) {
    if (names.empty()) {
        want.fill(true);
        return true;
    }
    want.fill(false);
    for (auto& n : names) {
        std::string s = n == "drops" ? "drop" : n == "matches" ? "match" : n;
        bool found = false;
        for (auto k : {sov::ghost::Kind::match, sov::ghost::Kind::drop, sov::ghost::Kind::unobserved,
                       sov::ghost::Kind::relay_only})
            if (sov::ghost::to_string(k) == s) want[std::size_t(k)] = found = true;
        if (!found) {
            cli::diag("--only: unknown kind '" + n + "' (match, drop, unobserved, relay-only)");
            return false;
        }
    }
    return true;
}

// The terminal state the TUI changes (raw keys on stdin when it is a TTY), restored at exit.
struct RawKeys {
    termios saved{};
    bool on = false;
    void enable() {
        if (!isatty(0) || tcgetattr(0, &saved) != 0) return;
        termios t = saved;
        t.c_lflag &= ~tcflag_t(ICANON | ECHO);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        on = tcsetattr(0, TCSANOW, &t) == 0;
    }
    bool quit_pressed() const {
        if (!on) return false;
        pollfd p{0, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0) return false;
        char c;
        while (read(0, &c, 1) == 1)
            if (c == 'q' || c == 'Q') return true;
        return false;
    }
    ~RawKeys() {
        if (on) tcsetattr(0, TCSANOW, &saved);
    }
};

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    cli::init("ghost-diff");
    cxxopts::Options opts("ghost-diff",
                          "Compare a relay's stream with the mesh of PDS streams: which events the relay dropped, "
                          "delayed or invented.\n"
                          "Usage: ghost-diff --relay FILE --mesh FILE [--mesh FILE…] [OPTIONS]\n"
                          "       ghost-diff --input FILE --relay-src SRC [OPTIONS]   (one stream holding both)\n"
                          "Inputs are frame streams (files or FIFOs; '-' = stdin). Findings: one JSON object per line.\n");
    opts.add_options()
        ("relay", "the relay's frame stream", cxxopts::value<std::string>())
        ("mesh", "a mesh frame stream (PDS sources); repeatable", cxxopts::value<std::vector<std::string>>())
        ("input", "one stream holding both sides, split by --relay-src; repeatable",
         cxxopts::value<std::vector<std::string>>())
        ("relay-src", "with --input: the src of the relay's records (the rest is the mesh); repeatable",
         cxxopts::value<std::vector<std::string>>())
        ("window", "seconds a copy may trail the other before the event is decided",
         cxxopts::value<double>()->default_value("5"))
        ("only", "write only these kinds: match, drop, unobserved, relay-only (comma list; repeatable)",
         cxxopts::value<std::vector<std::string>>())
        ("o,output", "write the findings to FILE instead of stdout", cxxopts::value<std::string>())
        ("fail-on-drop", "exit 1 when any drop was found")
        ("report", "write an HTML report (one self-contained file) to FILE", cxxopts::value<std::string>())
        ("tui", "a live view on the terminal (stdout and stderr must be terminals)")
        ("max-pending", "events waiting per side at most; beyond it the oldest are decided unobserved",
         cxxopts::value<std::size_t>()->default_value("4000000"))
        ("q,quiet", "no summary");
    auto args = cli::parse(opts, argc, argv);

    bool quiet = args.count("quiet") > 0;
    std::vector<std::unique_ptr<Input>> inputs;
    auto add = [&](const std::string& p, Side s, bool merged) {
        auto in = std::make_unique<Input>();
        in->path = p;
        in->side = s;
        in->merged = merged;
        struct stat sb {};
        in->regular = p != "-" && ::stat(p.c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
        inputs.push_back(std::move(in));
    };
    auto relay_srcs = cli::list_values(args, "relay-src");
    auto merged = cli::list_values(args, "input");
    if (!merged.empty()) {
        if (args.count("relay") || args.count("mesh")) {
            cli::diag("--input is the merged form: give either --input (with --relay-src) or --relay and --mesh");
            return cli::kUsage;
        }
        if (relay_srcs.empty()) {
            cli::diag("--input needs --relay-src SRC: the src of the relay's records");
            return cli::kUsage;
        }
        for (auto& p : merged) add(p, Side::mesh, true);
    } else {
        if (!args.count("relay") || !args.count("mesh")) {
            cli::diag("give --relay FILE and at least one --mesh FILE (or --input FILE --relay-src SRC); see --help");
            return cli::kUsage;
        }
        if (!relay_srcs.empty()) {
            cli::diag("--relay-src goes with --input (with --relay every record of that stream is the relay's)");
            return cli::kUsage;
        }
        add(args["relay"].as<std::string>(), Side::relay, false);
        for (auto& p : args["mesh"].as<std::vector<std::string>>()) add(p, Side::mesh, false);
    }
    {
        int stdin_uses = 0;
        for (auto& in : inputs) stdin_uses += in->path == "-";
        if (stdin_uses > 1) {
            cli::diag("stdin ('-') can be only one of the inputs");
            return cli::kUsage;
        }
    }
    double window_s = args["window"].as<double>();
    if (!(window_s > 0 && window_s <= 3600)) {
        cli::diag("--window must be more than 0 and at most 3600 seconds");
        return cli::kUsage;
    }
    std::array<bool, 4> want{};
    if (!parse_kinds(cli::list_values(args, "only"), want)) return cli::kUsage;
    std::size_t max_pending = args["max-pending"].as<std::size_t>();
    if (max_pending == 0) {
        cli::diag("--max-pending must be at least 1");
        return cli::kUsage;
    }

    bool tui = args.count("tui") > 0;
    if (tui && !(isatty(1) && isatty(2))) {
        cli::diag("--tui needs stdout and stderr on a terminal; no live view (findings and summary as usual)");
        tui = false;
    }
    std::vector<std::string> in_paths;
    for (auto& in : inputs) in_paths.push_back(in->path);
    int out_fd = 1;
    if (args.count("output")) {
        auto path = args["output"].as<std::string>();
        if (cli::refuse_same_file(path, in_paths, "--output")) return cli::kUsage;
        out_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0) return cli::fail(sov::from_errno(errno), path + ": " + std::strerror(errno));
    } else if (tui) {
        // The view owns the terminal: findings go nowhere unless -o names a file.
        out_fd = -1;
    }
    if (args.count("report") && cli::refuse_same_file(args["report"].as<std::string>(), in_paths, "--report"))
        return cli::kUsage;

    sov::ghost::Options mo;
    mo.window_us = std::int64_t(window_s * 1e6);
    mo.max_pending = max_pending;
    sov::frames::Writer out(out_fd < 0 ? 1 : out_fd);
    std::vector<char> line;
    sov::ghost::Matcher m(mo, [&](const sov::ghost::Finding& f) {
        if (out_fd < 0 || !want[std::size_t(f.kind)]) return;
        if (auto need = json_bound(f); line.size() < need) line.resize(need);
        auto n = json_line(line.data(), f);
        out.write({reinterpret_cast<const std::uint8_t*>(line.data()), n});
    });
    for (auto& in : inputs) in->id = m.add_input(in->side, in->path);

    cli::install_stop_handler(g_stop);
    for (auto& in : inputs) in->thread = std::thread(read_input, std::ref(*in));

    bool all_regular = true;
    for (auto& in : inputs) all_regular &= in->regular;

    RawKeys keys;
    if (tui) keys.enable();
    bool color = std::getenv("NO_COLOR") == nullptr || std::getenv("NO_COLOR")[0] == '\0';
    auto start = std::chrono::steady_clock::now();
    auto last_draw = start - std::chrono::seconds(1);
    struct Rate {
        std::uint64_t records = 0, bytes = 0;
        std::chrono::steady_clock::time_point at;
        double eps = 0, mbps = 0;
    };
    std::vector<Rate> rates(inputs.size(), Rate{0, 0, start, 0, 0});
    auto draw = [&](bool force) {
        if (!tui) return;
        auto now = std::chrono::steady_clock::now();
        if (!force && now - last_draw < std::chrono::milliseconds(250)) return;  // ≤ 4 redraws/s
        last_draw = now;
        std::vector<ghostview::InputView> views;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            auto& in = *inputs[i];
            std::uint64_t recs, bytes;
            std::size_t qb;
            bool ended;
            {
                std::lock_guard lk(in.mu);
                recs = in.records;
                bytes = in.bytes_read;
                qb = in.queued_bytes;
                ended = in.ended;
            }
            auto& r = rates[i];
            double dt = std::chrono::duration<double>(now - r.at).count();
            if (dt >= 0.5) {
                r.eps = double(recs - r.records) / dt;
                r.mbps = double(bytes - r.bytes) / dt / 1e6;
                r.records = recs, r.bytes = bytes, r.at = now;
            }
            views.push_back({in.path, in.merged ? "both" : std::string(sov::ghost::to_string(in.side)), r.eps, r.mbps,
                             double(qb) / double(Input::kQueueBytes), ended});
        }
        winsize ws{};
        int cols = 80, rows = 24;
        if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col, rows = ws.ws_row;
        ghostview::TuiOptions o;
        o.cols = cols;
        o.rows = rows;
        o.color = color;
        o.elapsed_s = std::chrono::duration<double>(now - start).count();
        auto frame = ghostview::render_tui(m.stats(false), views, o);
        (void)!::write(2, frame.data(), frame.size());
    };
    if (tui) (void)!::write(2, "\x1b[?1049h\x1b[?25l", 14);  // alternate screen, cursor hidden

    // The main loop: take the next record — the least recv across inputs for files, whatever
    // has come for live inputs — and feed it to the matcher.
    int status = 0;
    std::uint64_t key_errors = 0;
    std::string first_key_error;
    auto feed = [&](Input& in, const Batch& b, const Item& it) {
        auto src = b.text(it.src_off, it.src_len);
        Side side = in.side;
        if (in.merged) {
            side = Side::mesh;
            for (auto& s : relay_srcs)
                if (src == s) side = Side::relay;
        }
        switch (it.what) {
            case Item::marker: {
                sov::frames::Envelope env;
                if (!sov::frames::parse_envelope({b.bytes.data() + it.off, it.len}, env))
                    m.add_marker(in.id, side, env);
                break;
            }
            case Item::keyed: {
                auto k = b.key(it);
                m.add_message(in.id, side, src, it.recv, &k, &it.hash);
                break;
            }
            case Item::key_error:
                if (key_errors++ == 0) first_key_error = in.path + ":" + std::string(b.text(it.off, it.len));
                [[fallthrough]];
            case Item::unmatched:
                m.add_message(in.id, side, src, it.recv, nullptr);
                break;
        }
    };
    // Makes `in` hold a current batch if one can be had; false when it has ended (or must be
    // waited for and `wait` is false).
    auto ready = [&](Input& in, bool wait) {
        if (in.has_cur && in.pos < in.cur.items.size()) return true;
        std::unique_lock lk(in.mu);
        for (;;) {
            if (!in.queue.empty()) {
                if (in.cur.bytes.capacity()) in.spare.push_back(std::move(in.cur));  // done with it
                in.cur = std::move(in.queue.front());
                in.queue.pop_front();
                in.queued_bytes -= in.cur.memory();
                in.records += in.cur.items.size();
                in.pos = 0;
                in.has_cur = true;
                in.cv.notify_all();
                return true;
            }
            in.has_cur = false;
            if (in.ended || !wait) return false;
            in.cv.wait_for(lk, std::chrono::milliseconds(100));
            if (g_stop.load() || (tui && keys.quit_pressed())) return false;
            draw(false);
        }
    };
    std::vector<bool> ended(inputs.size(), false);
    bool stopped_by_key = false;
    for (;;) {
        if (g_stop.load()) break;
        if (tui && keys.quit_pressed()) {
            stopped_by_key = true;
            break;
        }
        // Which inputs have a record now; note the ones that ended.
        Input* best = nullptr;
        std::int64_t best_recv = 0;
        bool any_waiting = false;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            auto& in = *inputs[i];
            if (ended[i]) continue;
            if (!ready(in, all_regular)) {
                bool done;
                {
                    std::lock_guard lk(in.mu);
                    done = in.ended && in.queue.empty();
                }
                if (done) {
                    ended[i] = true;
                    if (in.status) {
                        cli::diag(in.error);
                        status = std::max(status, in.status);
                    }
                    m.end_input(in.id);
                } else {
                    any_waiting = true;
                }
                continue;
            }
            auto recv = in.cur.items[in.pos].recv;
            if (!best || recv < best_recv) best = &in, best_recv = recv;
        }
        if (!best) {
            if (!any_waiting) break;  // every input ended
            // Live inputs, none has data: wait for one.
            m.advance();
            draw(false);
            // (At most 50 ms on the first input still open: the others are looked at again then.)
            for (std::size_t i = 0; i < inputs.size(); ++i)
                if (!ended[i]) {
                    auto& in = *inputs[i];
                    std::unique_lock lk(in.mu);
                    in.cv.wait_for(lk, std::chrono::milliseconds(50), [&] { return !in.queue.empty() || in.ended; });
                    break;
                }
            continue;
        }
        // Feed records of `best` while it stays the least (for files), or its whole batch (live).
        auto& in = *best;
        // The matcher's table of decided keys is read at random: its slots for the keys a few
        // records ahead are asked for now, so that their loads overlap.
        constexpr std::size_t kAhead = 8;
        for (std::size_t k = in.pos; k < std::min(in.pos + kAhead, in.cur.items.size()); ++k)
            if (in.cur.items[k].what == Item::keyed) m.prefetch(in.cur.items[k].hash);
        for (; in.pos < in.cur.items.size(); ++in.pos) {
            if (in.pos + kAhead < in.cur.items.size() && in.cur.items[in.pos + kAhead].what == Item::keyed)
                m.prefetch(in.cur.items[in.pos + kAhead].hash);
            const auto& it = in.cur.items[in.pos];
            if (all_regular && it.recv > best_recv && in.pos > 0) {
                // Another input may now hold the least recv: look again (one compare per input).
                bool other_less = false;
                for (std::size_t i = 0; i < inputs.size(); ++i) {
                    auto& o = *inputs[i];
                    if (&o == &in || ended[i] || !o.has_cur || o.pos >= o.cur.items.size()) continue;
                    if (o.cur.items[o.pos].recv < it.recv) other_less = true;
                }
                if (other_less) break;
                best_recv = it.recv;
            }
            feed(in, in.cur, it);
        }
        m.advance();
        draw(false);
        if (out.broken_pipe()) break;
    }
    bool stopped = g_stop.load() || stopped_by_key;
    if (stopped) {
        // Stop the readers (a blocked read returns through the stop handler's signal; a reader
        // waiting on a full queue is woken here).
        g_stop = true;
        for (auto& in : inputs) {
            std::lock_guard lk(in->mu);
            in->cv.notify_all();
        }
    }
    for (auto& in : inputs) {
        if (stopped) {
            pthread_kill(in->thread.native_handle(), SIGINT);
        }
        in->thread.join();
        if (!stopped && in->status && !in->error.empty() && status == 0) {
            cli::diag(in->error);
            status = in->status;
        }
    }
    m.finish();
    if (tui) {
        draw(true);
        (void)!::write(2, "\x1b[?25h\x1b[?1049l", 14);
    }
    int wst = out_fd < 0 ? 0 : cli::finish_output(out, "findings");
    auto st = m.stats(true);
    if (args.count("report")) {
        ghostview::ReportMeta meta;
        meta.title = "ghost-diff report";
        meta.inputs = in_paths;
        meta.window_us = mo.window_us;
        meta.generated_utc = utc_now();
        auto html = ghostview::render_report(st, meta);
        auto path = args["report"].as<std::string>();
        std::string err;
        auto e = sov::file::atomic_replace(path, {reinterpret_cast<const std::uint8_t*>(html.data()), html.size()}, err);
        if (e != sov::Errc::ok) wst = std::max(wst, cli::fail(e, err));
    }
    if (st.out_of_order)
        cli::diag("warning: " + std::to_string(st.out_of_order) + " record" + (st.out_of_order == 1 ? "" : "s") +
                  " came more than the window before the latest recv of their input: an input is not in receive "
                  "order (a tap's output always is), so findings about them may be wrong (" +
                  std::to_string(st.late) + " copies came after their event was decided)");
    if (key_errors)
        cli::diag(std::to_string(key_errors) + " message" + (key_errors == 1 ? "" : "s") +
                  " of a matched type without their key fields (not matched), the first: " + first_key_error);
    if (!quiet) {
        // The stop note ends the first line (the one a script reads).
        auto s = ghostview::format_summary(st);
        std::string note = stopped_by_key ? "; stopped by the q key" : stopped ? cli::stop_note() : "";
        s.insert(std::min(s.find('\n'), s.size()), note);
        std::fputs(s.c_str(), stderr);
    }
    if (out_fd > 2) ::close(out_fd);
    int final_status = std::max(status, wst);
    if (final_status == 0 && args.count("fail-on-drop") && st.drops > 0) final_status = 1;
    return stopped_by_key ? final_status : cli::stop_status(final_status);
}
