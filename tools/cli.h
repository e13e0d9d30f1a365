// tools/cli.h — what every tool shares: diagnostics, exit codes, option table → --help,
// progress on a TTY, the EPIPE rule (docs/design.md §6). Not part of the library: tools only.
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
#include <set>
#include <vector>

#include "sovereign/message.h"

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
/// blocked on an idle pipe return, so the tool can stop cleanly at once. Every tool installs
/// it before its first read; input readers (sov::io) then report "interrupted" instead of
/// reading more, so everything already read is still processed and written.
void install_stop_handler(std::atomic<bool>& flag);

/// The signal that stopped the tool (SIGINT or SIGTERM), 0 if none arrived.
int stop_signal() noexcept;

/// The one exit rule after a stop by signal (docs/design.md §6), for every tool: SIGINT gives
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
/// An error in the first record adds a format hint (format_hint_of(), or a generic one for stdin).
int framing_error(const sov::frames::Reader& r);

/// Progress line on stderr, rate-limited to ~4 updates/s. diag() may run on any thread while it
/// is drawn (one lock orders their writes). Drawn only when not `quiet`,
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
    /// Text drawn after the counts ("" for none), e.g. "shard 1/3: 20 of 60 hosts".
    void set_note(std::string note);
    /// Clears the line (if drawn); call before the summary.
    void finish();
    /// Clears the line now if it is drawn (used by diag).
    void clear();
    /// The same, for a caller that holds the stderr lock (diag).
    void clear_unlocked();

private:
    bool tty_;
    std::uint64_t total_;
    std::int64_t last_us_ = 0, start_us_ = 0;
    bool shown_ = false;
    std::string note_;
};

/// Microseconds since the Unix epoch (wall clock).
std::int64_t now_micros();

/// Human byte count: "819,376 bytes".
std::string with_commas(std::uint64_t v);

/// Flushes and reports a writer error; returns the exit status to use (0 on success or
/// closed pipe, else status(from_errno(...)): 2).
int finish_output(sov::frames::Writer& w, std::string_view what);

// --- Shared option handling of the frame and archive tools -----------------------------------

/// The values of a repeatable list option (`--did A --did B,C` → A, B, C): every occurrence,
/// split at commas, empty items dropped, order kept. Empty when the option is absent.
std::vector<std::string> list_values(const cxxopts::ParseResult& args, const std::string& name);

/// Content filters on a message's wire bytes (frame-cat, cvl-cat): a message passes when it
/// matches every criterion given, and any one value within a criterion.
struct MessageFilter {
    std::set<sov::msg::Type> types;
    std::set<std::string, std::less<>> dids;
    std::set<std::string, std::less<>> collections;  ///< NSIDs, matched against op paths
    bool marks = false;                              ///< `--type mark`: keep markers
    bool active() const { return !types.empty() || !dids.empty() || !collections.empty() || marks; }
    /// True if `wire` passes. Wire bytes that do not parse match no criterion (so any active
    /// filter drops them). `m` is scratch space.
    bool matches(sov::ByteView wire, sov::msg::Message& m) const;
    /// True if the record passes: a message as matches(wire); a marker passes when no filter
    /// is active or `marks` is set (a marker has no type, DID or collection of its own).
    bool matches(const sov::frames::Envelope& env, sov::msg::Message& m) const {
        if (env.is_marker()) return !active() || marks;
        return matches(env.wire, m);
    }
};

/// Usage check: if more than one of `names` (long option names) was given, reports
/// "--a and --b exclude each other" and returns false.
bool exclusive(const cxxopts::ParseResult& args, std::initializer_list<const char*> names);
/// Usage check: if `mode` was given, reports the first of `others` also given ("--x has no
/// effect with --mode") and returns false. `mode_text` replaces "--mode" in the message
/// when not empty (e.g. "an existing archive").
bool not_with(const cxxopts::ParseResult& args, const char* mode, std::initializer_list<const char*> others,
              std::string_view mode_text = {});

/// "1 frame", "2,000 frames": a count with commas and the noun in the right number
/// (`plural` defaults to `singular` + "s").
std::string count(std::uint64_t n, std::string_view singular, std::string_view plural = {});

/// What the first bytes of an input look like, when that explains a format error: a hint
/// such as "this looks like a raw capture ([u32 LE length][message]...): read it with
/// frame-cat --from raw", or "" when nothing is recognised (frame stream, raw capture, JSON
/// lines, pretty-printed JSON or a JSON array, gzip). `expected` is the format that
/// was being read: "frames", "raw" or "json".
std::string format_hint(sov::ByteView head, std::string_view expected);
/// format_hint() on the first bytes of the file at `path`, decompressed if zstd (nothing for
/// "-", or a file that cannot be read again).
std::string format_hint_of(const std::string& path, std::string_view expected);

/// A hint for an archive tool given `path` that is not an archive directory ("" if none):
/// a regular file (a frame stream to pack, or not), or a directory without cvl.json.
std::string archive_hint(const std::string& path);

}  // namespace cli
