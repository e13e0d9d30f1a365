// tools/cli.h — what every tool shares: diagnostics, exit codes, option table → --help,
// progress on a TTY, the EPIPE rule (DESIGN.md §6). Not part of the library: tools only.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/frame_stream.h"

// cxxopts includes <regex>, whose inlined code GCC 12 flags with a false
// -Wmaybe-uninitialized in sanitizer builds (-Db_sanitize=address,undefined; D18). The
// warning is silenced for these headers only; our own code keeps every warning.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#include <cxxopts.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

/// Exit statuses of DESIGN.md §6.
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
/// blocked on an idle pipe return, so the tool can stop cleanly at once. Every tool installs
/// it before its first read; input readers (sov::io) then report "interrupted" instead of
/// reading more, so everything already read is still processed and written.
void install_stop_handler(std::atomic<bool>& flag);

/// The signal that stopped the tool (SIGINT or SIGTERM), 0 if none arrived.
int stop_signal() noexcept;

/// The one exit rule after a stop by signal (DESIGN.md §6), for every tool: SIGINT gives
/// 130 (128 + SIGINT: the output is valid, the input not finished); SIGTERM gives `status`,
/// the status of the run so far (0 when clean: a service asked to stop); no signal gives
/// `status` unchanged. Call it on the final status after writing out everything accepted.
int stop_status(int status) noexcept;

/// "" without a stop signal, else "; interrupted by SIGINT" / "; stopped by SIGTERM": the
/// suffix every summary line carries so that it says the input was not finished.
std::string stop_note();

/// Binary output to a terminal (as zstd does): when `fd` is a TTY and `force` is false,
/// reports "<what> is a terminal, use --force or redirect" and returns true (exit kUsage).
bool refuse_terminal(int fd, bool force, std::string_view what = "stdout");

/// True when `out` names an existing file that is the same file (st_dev, st_ino) as one of
/// `inputs` ("-" = stdin); then reports "<out>: is the same file as the input <in>; refusing
/// to overwrite it". Use before opening any output path for writing (exit kUsage).
bool refuse_same_file(const std::string& out, const std::vector<std::string>& inputs, std::string_view option);

/// Total bytes of the given inputs when known up front (every one a regular, uncompressed
/// file), else 0 (stdin, a pipe, a zstd file: progress then shows no % or ETA).
std::uint64_t input_size(const std::vector<std::string>& paths);

/// "<tool>: <context>: <message>" on stderr.
void diag(std::string_view context, std::string_view message);
/// "<tool>: <message>" on stderr.
void diag(std::string_view message);

/// Parses argv with the option table; handles --help (stdout, exit 0) and --version, and
/// maps parse errors to one line on stderr and exit 2. `synopsis` is the usage line(s).
cxxopts::ParseResult parse(cxxopts::Options& opts, int argc, char** argv);

/// Framing error of a frame stream: "<tool>: <file>:<offset>: <reason>"; returns its status.
int framing_error(const sov::frames::Reader& r);

/// Progress line on stderr, rate-limited to ~4 updates/s. Drawn only when not `quiet`,
/// stderr is a TTY and stdout is not that same terminal. With `total_bytes` known (> 0,
/// see input_size) it shows % and ETA. Any cli::diag clears the line first (it is redrawn
/// at the next update). At most one Progress is active at a time.
class Progress {
public:
    explicit Progress(bool quiet = false, std::uint64_t total_bytes = 0);
    ~Progress();
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    /// `frames` and `bytes` (input bytes consumed so far) since the start.
    void update(std::uint64_t frames, std::uint64_t bytes);
    /// Clears the line (if drawn); call before the summary.
    void finish();
    /// Clears the line now if it is drawn (used by diag).
    void clear();

private:
    bool tty_;
    std::uint64_t total_;
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
