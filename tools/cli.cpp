#include "cli.h"

#include "sovereign/io.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <unistd.h>

namespace cli {

namespace {
std::string g_tool = "sovereign";
}

namespace {
std::atomic<bool>* g_stop_flag = nullptr;
extern "C" void on_stop_signal(int) {
    if (g_stop_flag) g_stop_flag->store(true);
}
}  // namespace

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
    std::string line = g_tool + ": " + std::string(context) + ": " + std::string(message) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
}

void diag(std::string_view message) {
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

Progress::Progress() : tty_(::isatty(2) == 1), start_us_(now_micros()) {}

void Progress::update(std::uint64_t frames, std::uint64_t bytes) {
    if (!tty_) return;
    std::int64_t now = now_micros();
    if (now - last_us_ < 250000) return;
    last_us_ = now;
    double secs = double(now - start_us_) / 1e6;
    char buf[160];
    std::snprintf(buf, sizeof buf, "\r%s: %llu frames, %.1f MB, %.0f frames/s   ", g_tool.c_str(),
                  (unsigned long long)frames, double(bytes) / 1e6, secs > 0 ? double(frames) / secs : 0.0);
    std::fputs(buf, stderr);
    shown_ = true;
}

void Progress::finish() {
    if (shown_) std::fputs("\r\033[K", stderr);
    shown_ = false;
}

int finish_output(sov::frames::Writer& w, std::string_view what) {
    if (!w.flush() || w.failed()) {
        diag(what, std::strerror(w.sys_errno()));
        return status(sov::from_errno(w.sys_errno()) == sov::Errc::ok ? sov::Errc::io_error : sov::from_errno(w.sys_errno()));
    }
    return kOk;
}

}  // namespace cli
