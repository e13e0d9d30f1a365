// sovereign/bitset.h — the tombstone bitset of the CVL archive (docs/design.md §4 "Tombstones").
//
// One bit per message ordinal; a set bit hides that message from every reader at once. The
// bits live in sparse files memory-mapped MAP_SHARED by one writer (`tomb-set`) and any number
// of reader processes (`cvl-cat`, `cvl-serve`), so a bit set by one process is visible to the
// others without any message passing. Nothing is ever rewritten.
//
// On disk (all in one directory, nothing else is required there):
//   - File `tomb-XXXXXXXX.bits` holds ordinals [X·2^32, (X+1)·2^32), X = ordinal >> 32 written
//     as exactly 8 lowercase hex digits. Its size is a multiple of kSizeUnit (4 KiB), at most
//     kFileBytes = 2^29 (512 MiB): it grows with the ordinals in use. Writers grow it in
//     steps of kGrowBytes (64 KiB = 2^19 ordinals) with posix_fallocate, which never
//     shrinks a file and allocates its blocks (so a later store cannot fault on a full disk).
//     Bits beyond the end of the file are clear. (Before archive version 2, files were
//     created at the full 2^29 bytes, sparse; such files are still read.)
//   - Word layout: the file is an array of 2^26 little-endian uint64 words. Bit r = ordinal
//     mod 2^32 is bit (r % 64) (value 1 << (r % 64)) of word r / 64, i.e. bit (r % 8) of byte
//     r / 8. There is no header, magic or version: the name and the size are the format.
//   - A missing file means "no bit of its range is set".
//   - A reader must reject a file whose size is not a multiple of 4 KiB or is over 2^29
//     bytes (Errc::tomb_bad_size), a non-regular file (tomb_not_file), and a name that starts
//     with "tomb-" and ends with ".bits" but is not canonical or is beyond kMaxFiles
//     (tomb_bad_name); the message (last_error() / `err`) names the file. Rejecting is
//     checked on open(), on refresh() and when a range is first mapped; it never crashes —
//     except that truncating a file *while it is mapped* raises SIGBUS in every process
//     mapping it: never truncate, replace or delete a tombstone file in use.
//   - Growth and readers: a reader maps the whole 2^29-byte range once and touches only
//     bytes below the size it has seen; for a bit beyond it, it looks at the file's size
//     again (fstat), so a bit set by another process after growing the file is seen at once.
//   - Writers create a file as `.tomb-XXXXXXXX.bits.<pid>.<n>.tmp` (64 KiB, fsync), then
//     hard-link it to its final name (falling back to renameat2(RENAME_NOREPLACE)) and fsync
//     the directory, so readers never see a short file and two racing writers end up sharing
//     one inode (the loser opens the winner's file). A crash can leave a sparse `.tmp` file;
//     it holds no data and may be deleted.
//   - Permissions: files are created mode 0644 (minus the umask): other users may read, only
//     the owner may set bits. Who may create files is decided by the directory's mode.
//     Readers need read permission on the files and search permission on the directory.
//
// Memory ordering: set/clear use std::atomic_ref<uint64_t>::fetch_or / fetch_and with
// memory_order_release; test/count load with memory_order_acquire. Lock-free 64-bit atomics
// are address-free, so this holds across processes sharing the mapping. This is the one place
// where file bytes are accessed in place rather than through memcpy field types: atomics need
// the object where it is; mmap returns page-aligned memory (so words are 8-byte aligned) and
// the .cpp static-asserts a little-endian host and always-lock-free atomic_ref<uint64_t>.
//
// Bounds: at most kMaxFiles = 2^16 range files, i.e. ordinals < kOrdinalLimit = 2^48. Each
// range has one slot in a fixed array (512 KiB, calloc'd, untouched pages cost nothing) that
// holds its mapping pointer, so test/set/clear of a mapped range take no lock; mapping a range
// for the first time takes a mutex.
//
// New files and readers ("refresh semantics"): a range whose file is missing reads as all
// clear and the verdict "absent" is cached with its time. test() and count() look for the file
// again on the first access at least recheck_ms() after the last look (default 100 ms; the hot
// path for an absent range is one coarse-clock read); refresh() forgets every cached verdict
// at once. So a reader sees a bit in a newly created range within ~recheck_ms, and a bit in an
// already mapped range at once. set() and clear() never trust the cache (they always look).
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <memory>
#include <string>

namespace sov::bitset {

inline constexpr std::uint64_t kBitsPerFile = std::uint64_t{1} << 32;   ///< ordinals per file
inline constexpr std::uint64_t kFileBytes = kBitsPerFile / 8;           ///< 2^29 = 512 MiB, the largest file
inline constexpr std::uint64_t kSizeUnit = 4096;                        ///< file sizes are multiples of this
inline constexpr std::uint64_t kGrowBytes = 65536;                      ///< writers grow files in these steps
inline constexpr std::uint64_t kMaxFiles = std::uint64_t{1} << 16;      ///< range files
inline constexpr std::uint64_t kOrdinalLimit = kBitsPerFile * kMaxFiles; ///< 2^48, exclusive
inline constexpr std::uint32_t kDefaultRecheckMs = 100;                 ///< absent-file recheck

/// File name of range `file_index` (= ordinal >> 32): "tomb-0000002a.bits".
std::string file_name(std::uint64_t file_index);

/// The tombstone set of one directory. Thread-safe: any threads may call any member
/// concurrently (except move/destruction). Movable; a moved-from Set may only be destroyed or
/// assigned to.
class Set {
public:
    /// Opens the set in `dir` (must exist; never created). `writable` creates range files on
    /// demand and maps them read-write; otherwise files are mapped read-only. Validates the
    /// names and sizes of the tomb-*.bits files present (nothing is mapped yet: ranges are
    /// mapped on first use). Errors (text in *err if err != nullptr): io_error (dir missing,
    /// not a directory, not writable when `writable`), tomb_bad_size / tomb_not_file /
    /// tomb_bad_name (a bad file, see above).
    static Result<Set> open(const std::string& dir, bool writable, std::string* err);

    Set(Set&&) noexcept;
    Set& operator=(Set&&) noexcept;
    ~Set();

    /// Is bit `ord` set? Acquire load; false for ordinals ≥ kOrdinalLimit and for a range
    /// whose file is absent or was rejected (the reason is then in last_error()).
    bool test(std::uint64_t ord) const noexcept;
    /// Creates (all clear) and maps the file holding `ord` if it does not exist yet, and grows
    /// it to cover `ord`, changing no bit. Writers call it ahead of time so that readers map
    /// the file when they open and see the first tombstone at once rather than after their
    /// absent-file recheck. Errors as set().
    Errc ensure(std::uint64_t ord);

    /// Sets bit `ord`, creating or growing its file if needed; returns the previous value.
    /// Release. Errors: tomb_read_only, tomb_range (ord ≥ kOrdinalLimit), io_* (file cannot
    /// be created/opened/grown/mapped; io_no_space on a full disk), tomb_bad_size /
    /// tomb_not_file (a bad file).
    Result<bool> set(std::uint64_t ord);
    /// Clears bit `ord`; returns the previous value. Release. A missing file is not created
    /// (the bit was clear). Errors as set().
    Result<bool> clear(std::uint64_t ord);
    /// Number of set bits in ordinals [from, to) (to is clamped to kOrdinalLimit). Skips absent
    /// files and, with SEEK_DATA, the holes of sparse files (so counting never faults in the
    /// unwritten pages); popcount per word elsewhere. Not a snapshot under concurrent writers.
    std::uint64_t count(std::uint64_t from, std::uint64_t to) const;

    /// Forgets every cached "file absent" verdict (the next access to such a range looks for
    /// its file again) and re-validates the files now in the directory. Errors as open().
    Errc refresh();
    /// How long an "absent" verdict is trusted by test()/count(), in ms (0 = look every time).
    void set_recheck_ms(std::uint32_t ms) noexcept;
    std::uint32_t recheck_ms() const noexcept;

    /// msync(MS_SYNC) of every writable mapping: durability on demand (a no-op read-only).
    /// Errors: io_error.
    Errc sync();

    /// "<path>: <reason>" of the most recent failure (any thread); empty if none. A copy,
    /// because another thread may replace it at any time.
    std::string last_error() const;

    bool writable() const noexcept;
    const std::string& dir() const noexcept;

private:
    struct Impl;
    explicit Set(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sov::bitset
