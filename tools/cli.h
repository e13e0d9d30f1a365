// tools/cli.h — what every tool shares: diagnostics, exit codes, option table → --help,
// progress on a TTY, the EPIPE rule (docs/design.md §6). Not part of the library: tools only.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/frame_stream.h"

#include <cxxopts.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace cli {

/// Exit statuses of docs/design.md §6.
enum Exit : int { kOk = 0, kDataRejected = 1, kUsage = 2, kSystem = 2 };

/// The exit status for a failure with code `e`: the one map of every tool (sov::exit_status:
/// 2 for usage, I/O and system conditions, 1 for rejected data). Tools never choose a status
/// from message text or errno strings.
inline int status(sov::Errc e) noexcept { return sov::exit_status(e); }

/// Reports "<tool>: <text>" and returns status(e).
int fail(sov::Errc e, std::string_view text);

/// Sets the tool name used as the diagnostic prefix and ignores SIGPIPE (EPIPE is handled
/// where writes happen).
void init(std::string_view tool);
const std::string& tool();

/// Installs SIGINT/SIGTERM handlers (without SA_RESTART) that set `flag` and make a read
/// blocked on an idle pipe return, so the tool can stop cleanly at once.
void install_stop_handler(std::atomic<bool>& flag);

/// "<tool>: <context>: <message>" on stderr.
void diag(std::string_view context, std::string_view message);
/// "<tool>: <message>" on stderr.
void diag(std::string_view message);

/// Parses argv with the option table; handles --help (stdout, exit 0) and --version, and
/// maps parse errors to one line on stderr and exit 2. `synopsis` is the usage line(s).
cxxopts::ParseResult parse(cxxopts::Options& opts, int argc, char** argv);

/// Framing error of a frame stream: "<tool>: <file>:<offset>: <reason>"; returns its status.
int framing_error(const sov::frames::Reader& r);

/// Progress line on stderr, only when stderr is a TTY; rate-limited to ~4 updates/s.
class Progress {
public:
    Progress();
    void update(std::uint64_t frames, std::uint64_t bytes);
    void finish();

private:
    bool tty_;
    std::int64_t last_us_ = 0, start_us_ = 0;
    bool shown_ = false;
};

/// Microseconds since the Unix epoch (wall clock).
std::int64_t now_micros();

/// Human byte count: "819,376 bytes".
std::string with_commas(std::uint64_t v);

/// Flushes and reports a writer error; returns the exit status to use (0 on success or
/// closed pipe, else status(from_errno(...)): 2).
int finish_output(sov::frames::Writer& w, std::string_view what);

}  // namespace cli
