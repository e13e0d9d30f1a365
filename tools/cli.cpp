#include "cli.h"

#include "sovereign/io.h"

#include <chrono>
#include <csignal>
#include <cstdio>
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
extern "C" void on_stop_signal(int sig) {
    if (g_stop_signal == 0) g_stop_signal = sig;
    if (g_stop_flag) g_stop_flag->store(true);
}
}  // namespace

int stop_signal() noexcept { return int(g_stop_signal); }

int stop_status(int status) noexcept {
    // DESIGN.md §6: SIGINT exits 130 whatever else happened; SIGTERM ends like a completed run.
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
    if (g_progress) g_progress->clear();
    std::string line = g_tool + ": " + std::string(context) + ": " + std::string(message) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
}

void diag(std::string_view message) {
    if (g_progress) g_progress->clear();
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
    std::string line = std::string(buf) + "\033[K";
    std::fwrite(line.data(), 1, line.size(), stderr);
    shown_ = true;
}

void Progress::clear() {
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

}  // namespace cli
