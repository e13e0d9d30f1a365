#include "cli.h"

#include "sovereign/io.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <cstring>
#include <iostream>
#include <algorithm>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cli {

namespace {
std::string g_tool = "sovereign";
}

namespace {
std::atomic<bool>* g_stop_flag = nullptr;
volatile std::sig_atomic_t g_stop_signal = 0;
Progress* g_progress = nullptr;  // the active progress line, cleared by diag
// diag() may be called from any thread (the taps report from their event loop while the main
// thread draws progress): one lock keeps lines whole and the progress state consistent.
std::mutex g_stderr_mu;
extern "C" void on_stop_signal(int sig) {
    if (g_stop_signal == 0) g_stop_signal = sig;
    if (g_stop_flag) g_stop_flag->store(true);
}
}  // namespace

int stop_signal() noexcept { return int(g_stop_signal); }

int stop_status(int status) noexcept {
    // docs/design.md §6: SIGINT exits 130 whatever else happened; SIGTERM ends like a completed run.
    return g_stop_signal == SIGINT ? 128 + SIGINT : status;
}

std::string stop_note() {
    switch (int(g_stop_signal)) {
    case 0: return "";
    case SIGINT: return "; interrupted by SIGINT before the end of the input";
    default: return "; stopped by SIGTERM before the end of the input";
    }
}

bool refuse_terminal(int fd, bool force, std::string_view what) {
    if (force || ::isatty(fd) != 1) return false;
    diag(std::string(what) + " is a terminal, use --force or redirect");
    return true;
}

bool refuse_same_file(const std::string& out, const std::vector<std::string>& inputs, std::string_view option) {
    struct stat o {};
    if (::stat(out.c_str(), &o) != 0) return false;  // not there yet: cannot be an input
    for (const auto& in : inputs) {
        struct stat i {};
        if ((in == "-" ? ::fstat(0, &i) : ::stat(in.c_str(), &i)) != 0) continue;
        if (i.st_dev == o.st_dev && i.st_ino == o.st_ino) {
            diag(out, std::string(option) + " is the same file as the input " + (in == "-" ? "stdin" : in) +
                          "; refusing to overwrite it");
            return true;
        }
    }
    return false;
}

std::uint64_t input_size(const std::vector<std::string>& paths) {
    std::uint64_t total = 0;
    for (const auto& p : paths) {
        if (p == "-") return 0;
        int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return 0;
        struct stat st {};
        unsigned char magic[4] = {};
        bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        bool zstd = regular && ::pread(fd, magic, 4, 0) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 &&
                    magic[2] == 0x2f && magic[3] == 0xfd;
        ::close(fd);
        if (!regular || zstd) return 0;  // offsets of a zstd file count decoded bytes: no %
        total += std::uint64_t(st.st_size);
    }
    return total;
}

void install_stop_handler(std::atomic<bool>& flag) {
    g_stop_flag = &flag;
    sov::io::set_interrupt_flag(&flag);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns EINTR
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

void init(std::string_view tool) {
    g_tool = std::string(tool);
    std::signal(SIGPIPE, SIG_IGN);
}

const std::string& tool() { return g_tool; }

void diag(std::string_view context, std::string_view message) {
    std::lock_guard lock(g_stderr_mu);
    if (g_progress) g_progress->clear_unlocked();
    std::string line = g_tool + ": " + std::string(context) + ": " + std::string(message) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
}

void diag(std::string_view message) {
    std::lock_guard lock(g_stderr_mu);
    if (g_progress) g_progress->clear_unlocked();
    std::string line = g_tool + ": " + std::string(message) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
}

cxxopts::ParseResult parse(cxxopts::Options& opts, int argc, char** argv) {
    opts.add_options("Common")("h,help", "print this help and exit")("version", "print the version and exit");
    try {
        auto r = opts.parse(argc, argv);
        if (r.count("help")) {
            std::cout << opts.help() << std::flush;
            std::exit(kOk);
        }
        if (r.count("version")) {
            std::cout << g_tool << " " << SOVEREIGN_VERSION << "\n" << std::flush;
            std::exit(kOk);
        }
        return r;
    } catch (const std::exception& e) {
        diag(std::string(e.what()) + " (try --help)");
        std::exit(kUsage);
    }
}

int framing_error(const sov::frames::Reader& r) {
    sov::Located e = r.error();
    std::string msg(sov::to_string(e.errc));
    if (e.errc == sov::Errc::io_error) msg += ": " + r.io_error_text();
    if (r.record_offset() == 0 && e.errc != sov::Errc::io_error) {
        // The first record is bad: most often another format given as a frame stream.
        std::string hint = r.name() == "stdin" ? std::string("is this a frame stream? a raw capture needs frame-cat "
                                                             "--from raw, DAG-JSON lines frame-cat --from json")
                                               : format_hint_of(r.name(), "frames");
        if (!hint.empty()) msg += " (" + hint + ")";
    }
    diag(r.name() + ":" + std::to_string(e.offset), msg);
    return status(e.errc);
}

int fail(sov::Errc e, std::string_view text) {
    diag(text);
    return status(e);
}

std::int64_t now_micros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string with_commas(std::uint64_t v) {
    std::string s = std::to_string(v);
    for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), ",");
    return s;
}

namespace {
// True when fds 1 and 2 are the same terminal: a progress line would mix with the output.
bool stdout_is_stderr_tty() {
    if (::isatty(1) != 1) return false;
    struct stat a {}, b {};
    return ::fstat(1, &a) == 0 && ::fstat(2, &b) == 0 && a.st_rdev == b.st_rdev;
}
}  // namespace

Progress::Progress(bool quiet, std::uint64_t total_bytes)
    : tty_(!quiet && ::isatty(2) == 1 && !stdout_is_stderr_tty()), total_(total_bytes), start_us_(now_micros()) {
    if (tty_) g_progress = this;
}

Progress::~Progress() {
    finish();
    if (g_progress == this) g_progress = nullptr;
}

void Progress::update(std::uint64_t frames, std::uint64_t bytes) {
    if (!tty_) return;
    std::lock_guard lock(g_stderr_mu);
    std::int64_t now = now_micros();
    if (now - last_us_ < 250000) return;
    last_us_ = now;
    double secs = double(now - start_us_) / 1e6;
    char buf[200];
    int n = std::snprintf(buf, sizeof buf, "\r%s: %llu frames, %.1f MB, %.0f frames/s", g_tool.c_str(),
                          (unsigned long long)frames, double(bytes) / 1e6, secs > 0 ? double(frames) / secs : 0.0);
    if (total_ > 0 && n > 0 && std::size_t(n) < sizeof buf) {
        double done = std::min(1.0, double(bytes) / double(total_));
        double eta = done > 0 ? secs * (1 - done) / done : 0;
        std::snprintf(buf + n, sizeof buf - std::size_t(n), ", %.0f%%, ETA %llu:%02llu", done * 100,
                      (unsigned long long)(eta / 60), (unsigned long long)eta % 60);
    }
    std::string line = std::string(buf) + (note_.empty() ? "" : "; " + note_) + "\033[K";
    std::fwrite(line.data(), 1, line.size(), stderr);
    shown_ = true;
}

void Progress::set_note(std::string note) {
    std::lock_guard lock(g_stderr_mu);
    note_ = std::move(note);
}

void Progress::clear() {
    std::lock_guard lock(g_stderr_mu);
    clear_unlocked();
}

void Progress::clear_unlocked() {
    if (shown_) std::fputs("\r\033[K", stderr);
    shown_ = false;
}

void Progress::finish() { clear(); }

int finish_output(sov::frames::Writer& w, std::string_view what) {
    if (!w.flush() || w.failed()) {
        diag(what, std::strerror(w.sys_errno()));
        return status(sov::from_errno(w.sys_errno()) == sov::Errc::ok ? sov::Errc::io_error : sov::from_errno(w.sys_errno()));
    }
    return kOk;
}

// --- Shared option handling of the frame and archive tools -----------------------------------

std::vector<std::string> list_values(const cxxopts::ParseResult& args, const std::string& name) {
    std::vector<std::string> out;
    if (!args.count(name)) return out;
    for (const auto& s : args[name].as<std::vector<std::string>>()) {
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

bool MessageFilter::matches(sov::ByteView wire, sov::msg::Message& m) const {
    if (!active()) return true;
    if (sov::msg::parse(wire, m)) return false;
    if ((marks || !types.empty()) && !types.count(m.type)) return false;  // `--type mark` alone: no message
    if (!dids.empty() && !dids.count(m.did)) return false;
    if (!collections.empty()) {
        for (const auto& op : m.ops)
            if (collections.count(std::string_view(op.path).substr(0, op.path.find('/')))) return true;
        return false;
    }
    return true;
}

bool exclusive(const cxxopts::ParseResult& args, std::initializer_list<const char*> names) {
    const char* first = nullptr;
    for (const char* n : names) {
        if (!args.count(n)) continue;
        if (first) {
            diag(std::string("--") + first + " and --" + n + " exclude each other");
            return false;
        }
        first = n;
    }
    return true;
}

bool not_with(const cxxopts::ParseResult& args, const char* mode, std::initializer_list<const char*> others,
              std::string_view mode_text) {
    if (!args.count(mode)) return true;
    for (const char* n : others)
        if (args.count(n)) {
            diag(std::string("--") + n + " has no effect with " +
                 (mode_text.empty() ? "--" + std::string(mode) : std::string(mode_text)));
            return false;
        }
    return true;
}

std::string count(std::uint64_t n, std::string_view singular, std::string_view plural) {
    std::string s = with_commas(n) + " ";
    if (n == 1) return s + std::string(singular);
    return plural.empty() ? s + std::string(singular) + "s" : s + std::string(plural);
}

namespace {

bool is_cbor_map(std::uint8_t b) { return b >= 0xa0 && b <= 0xbb; }

// A frame record starts here: a minimal varint length ≤ 16 MiB, then the envelope map whose
// first key (canonical order: shortest first) is "src".
bool looks_like_frames(sov::ByteView h) {
    std::uint64_t len = 0;
    std::size_t i = 0;
    for (; i < h.size() && i < sov::frames::kMaxVarint; ++i) {
        len |= std::uint64_t(h[i] & 0x7f) << (7 * i);
        if (!(h[i] & 0x80)) break;
    }
    if (i >= h.size() || i >= sov::frames::kMaxVarint || len == 0 || len > sov::frames::kMaxEnvelope) return false;
    static const std::uint8_t src_key[] = {0x63, 's', 'r', 'c'};
    std::size_t at = i + 1;
    return h.size() >= at + 5 && (h[at] == 0xa3 || h[at] == 0xa4) && std::equal(src_key, src_key + 4, h.begin() + long(at) + 1);
}

// A raw capture starts here: a u32 LE length ≤ 16 MiB, then a message whose header is a
// small CBOR map ({op, t}).
bool looks_like_raw(sov::ByteView h) {
    if (h.size() < 5) return false;
    std::uint32_t len = std::uint32_t(h[0]) | std::uint32_t(h[1]) << 8 | std::uint32_t(h[2]) << 16 | std::uint32_t(h[3]) << 24;
    return len >= 2 && len <= (16u << 20) && is_cbor_map(h[4]);
}

}  // namespace

std::string format_hint(sov::ByteView h, std::string_view expected) {
    if (h.empty()) return "";
    if (h.size() >= 2 && h[0] == 0x1f && h[1] == 0x8b) return "this is gzip-compressed data: decompress it with zcat first";
    if (expected != "frames" && looks_like_frames(h))
        return "this looks like a frame stream: read it without --from (frames is the default)";
    if (expected != "raw" && looks_like_raw(h))
        return "this looks like a raw capture ([u32 LE length][message]...): read it with frame-cat --from raw";
    std::size_t i = 0;
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == '\r' || h[i] == '\n')) ++i;
    if (i < h.size() && (h[i] == '{' || h[i] == '[')) {
        // The first line alone: a complete object ends it; pretty-printed JSON does not.
        std::size_t nl = i;
        while (nl < h.size() && h[nl] != '\n') ++nl;
        std::size_t end = nl;
        while (end > i && (h[end - 1] == ' ' || h[end - 1] == '\t' || h[end - 1] == '\r')) --end;
        bool array = h[i] == '[';
        bool one_line = nl < h.size() && end > i + 1 && h[end - 1] == (array ? ']' : '}');
        std::string how = array ? "use jq -c '.[]'" : "use jq -c";
        if (expected == "json") {
            if (array) return "JSON input is one object per line, not an array: " + how;
            if (!one_line) return "the JSON looks pretty-printed: JSON input is one object per line (" + how + ")";
            return "";
        }
        return "this looks like JSON text: read it with frame-cat --from json (one object per line; " + how + ")";
    }
    return "";
}

namespace {
// Up to 4 KiB from the start of the regular file at `path`, decompressed as the tools read it (zstd
// is recognised by its magic); empty if it cannot be read.
std::vector<std::uint8_t> head_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};  // a pipe is not read twice
    std::vector<std::uint8_t> head(4096);
    sov::io::Input in = sov::io::Input::open(path);
    std::size_t got = 0;
    while (!in.open_errno() && got < head.size()) {
        long n = in.read(head.data() + got, head.size() - got);
        if (n <= 0) break;
        got += std::size_t(n);
    }
    head.resize(got);
    return head;
}
}  // namespace

std::string format_hint_of(const std::string& path, std::string_view expected) {
    if (path.empty() || path == "-") return "";
    return format_hint(head_of(path), expected);
}

std::string archive_hint(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "";
    if (S_ISREG(st.st_mode)) {
        if (looks_like_frames(head_of(path)))
            return path + " is a file, not an archive directory: it looks like a frame stream (read it with frame-cat, "
                          "or pack it with cvl-pack -o DIR " + path + ")";
        return path + " is a file, not an archive directory (an archive is a directory made by cvl-pack -o DIR)";
    }
    if (!S_ISDIR(st.st_mode)) return path + " is not a directory (an archive is a directory made by cvl-pack -o DIR)";
    return "";
}

}  // namespace cli
