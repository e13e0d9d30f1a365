// The tombstone bitset (format and guarantees in sovereign/bitset.h).
//
// Hot path. Every range (ordinal >> 32) has one uintptr_t slot in a fixed calloc'd array,
// read with an acquire atomic_ref load and written only under `mu`:
//     0                   never looked at
//     odd: (ms << 1) | 1  file absent (or rejected) when last looked, at CLOCK_MONOTONIC_COARSE
//                         time `ms`
//     even, non-zero      the mapping's first word (mmap is page-aligned, so bit 0 is free)
// A mapped range therefore costs test() one predictable branch and two loads, with no lock
// and no refcount; an absent range costs a coarse-clock read (vDSO, a few ns) until the
// verdict is older than recheck_ms. Mappings are never removed before the Set dies, so a
// pointer once loaded stays valid.
//
// Why cache "absent" by time rather than only until refresh(): a long-running reader
// (cvl-serve) that forgot to call refresh() would otherwise never honour a tombstone written
// into a new range — a takedown silently ignored. A bounded delay is the honest trade for not
// making one open() per test() of an empty range.
//
// Creation. A writer makes the file under a private temporary name, sizes it with ftruncate
// and only then links it into place, because a reader (or a second writer) that opened a
// half-made file would see it short and reject it. link() fails with EEXIST if another writer
// won; rename() would silently replace the winner's inode and lose the bits already set in
// it, which is why rename is used only in its RENAME_NOREPLACE form, as a fallback for file
// systems without hard links.
//
// Counting. Reading a hole of a MAP_SHARED file allocates a zeroed page-cache page (and, on
// tmpfs, real memory charged to the file), so a naive popcount over a 512 MiB range would
// cost 512 MiB of RAM. count() asks the file system for its data extents (SEEK_DATA /
// SEEK_HOLE) and reads only those; where SEEK_DATA is unsupported it falls back to a scan.
#include "sovereign/bitset.h"

// Bit i of a file is bit (i & 63) of the little-endian 64-bit word i >> 6. The words are
// shared with other processes through atomic_ref on the mapping, so they cannot go through
// le::get/set; le.h's static_assert (a little-endian host) is what makes the native word the
// file's word.
#include "internal/le.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <string_view>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace sov::bitset {

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "cross-process bits need address-free (lock-free) 64-bit atomics");
static_assert(std::atomic_ref<std::uintptr_t>::is_always_lock_free);
static_assert(std::endian::native == std::endian::little,
              "words are little-endian on disk; a big-endian port must byte-swap the masks");
static_assert(sizeof(std::uintptr_t) == 8, "slot encoding assumes 64-bit pointers");

namespace {

constexpr std::string_view kPrefix = "tomb-";
constexpr std::string_view kSuffix = ".bits";
constexpr std::size_t kHexDigits = 8;
constexpr std::uint64_t kListThreshold = 16;  // count() over more ranges lists the directory

std::uint64_t now_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000u +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000u;
}

bool is_mapped(std::uintptr_t v) noexcept { return v != 0 && (v & 1u) == 0; }
std::uintptr_t absent_tag(std::uint64_t ms) noexcept { return (ms << 1) | 1u; }

std::string sys_text(const std::string& path, const char* what, int err) {
    return path + ": " + what + ": " + std::strerror(err);
}

enum class NameKind { other, tomb, bad };

/// "tomb-" 8 lowercase hex ".bits" → tomb (with its index); other tomb-*.bits → bad.
NameKind classify(std::string_view n, std::uint64_t& index) noexcept {
    if (!n.starts_with(kPrefix) || !n.ends_with(kSuffix)) return NameKind::other;
    if (n.size() != kPrefix.size() + kHexDigits + kSuffix.size()) return NameKind::bad;
    index = 0;
    for (char c : n.substr(kPrefix.size(), kHexDigits)) {
        unsigned d;
        if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
        else return NameKind::bad;
        index = index * 16 + d;
    }
    return NameKind::tomb;
}

/// A tombstone file must be a regular file whose size is a multiple of kSizeUnit, at most
/// kFileBytes.
Errc check_size(std::uint64_t size, const std::string& path, std::string& msg) {
    if (size % kSizeUnit == 0 && size <= kFileBytes) return Errc::ok;
    msg = path + ": size " + std::to_string(size) + " bytes, expected a multiple of " + std::to_string(kSizeUnit) +
          " up to " + std::to_string(kFileBytes) +
          (size < kFileBytes ? " (truncated tombstone file)" : " (not a tombstone file)");
    return Errc::tomb_bad_size;
}

Errc check_stat(const struct stat& st, const std::string& path, std::string& msg) {
    if (!S_ISREG(st.st_mode)) {
        msg = path + ": not a regular file";
        return Errc::tomb_not_file;
    }
    return check_size(static_cast<std::uint64_t>(st.st_size), path, msg);
}



/// Set bits of `w` in bit positions [a, b), a < b.
std::uint64_t popcount_bits(std::uint64_t* w, std::uint64_t a, std::uint64_t b) noexcept {
    const std::uint64_t first = a >> 6, last = (b - 1) >> 6;
    const std::uint64_t first_mask = ~std::uint64_t{0} << (a & 63);
    const std::uint64_t last_mask = (b & 63) ? (std::uint64_t{1} << (b & 63)) - 1 : ~std::uint64_t{0};
    std::uint64_t n = 0;
    for (std::uint64_t i = first; i <= last; ++i) {
        std::uint64_t x = std::atomic_ref<std::uint64_t>(w[i]).load(std::memory_order_acquire);
        if (i == first) x &= first_mask;
        if (i == last) x &= last_mask;
        n += static_cast<std::uint64_t>(std::popcount(x));
    }
    return n;
}

std::atomic<unsigned> g_tmp_counter{0};

}  // namespace

std::string file_name(std::uint64_t file_index) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "tomb-%08llx.bits", static_cast<unsigned long long>(file_index));
    return buf;
}

enum class Mode { peek, look, create };  // peek trusts a fresh "absent"; look/create do not

struct Set::Impl {
    struct Mapping {
        std::uint32_t index;
        int fd;
        std::uint64_t* words;
    };

    std::string dir;
    int dir_fd = -1;
    bool writable = false;
    std::atomic<std::uint32_t> recheck_ms{kDefaultRecheckMs};
    std::uintptr_t* slots = nullptr;  // kMaxFiles entries, see the top of this file
    std::uint64_t* sizes = nullptr;   // kMaxFiles entries: bytes of each mapped file known to exist (only grows)
    std::mutex mu;
    std::vector<Mapping> maps;  // guarded by mu
    std::string error;          // guarded by mu

    ~Impl() {
        for (const Mapping& m : maps) {
            ::munmap(m.words, kFileBytes);
            ::close(m.fd);
        }
        if (dir_fd >= 0) ::close(dir_fd);
        std::free(slots);
        std::free(sizes);
    }

    std::atomic_ref<std::uintptr_t> slot(std::uint64_t index) const noexcept {
        return std::atomic_ref<std::uintptr_t>(slots[index]);
    }
    std::atomic_ref<std::uint64_t> size(std::uint64_t index) const noexcept {
        return std::atomic_ref<std::uint64_t>(sizes[index]);
    }

    /// Is byte `byte` of mapped range `index` inside its file? Looks at the file again
    /// (fstat) when it is beyond the size seen so far: another process may have grown it.
    /// Bytes beyond the end are never touched (that would raise SIGBUS).
    bool covers(std::uint32_t index, std::uint64_t byte) noexcept {
        if (byte < size(index).load(std::memory_order_acquire)) return true;
        const int fd = fd_of_nothrow(index);
        struct stat st {};
        if (fd < 0 || ::fstat(fd, &st) != 0) return false;
        std::uint64_t now = std::min<std::uint64_t>(static_cast<std::uint64_t>(st.st_size) / kSizeUnit * kSizeUnit, kFileBytes);
        std::uint64_t seen = size(index).load(std::memory_order_acquire);
        while (now > seen && !size(index).compare_exchange_weak(seen, now, std::memory_order_acq_rel)) {
        }
        return byte < std::max(now, seen);
    }

    /// Makes byte `byte` of range `index`'s file writable: allocates the kGrowBytes step that
    /// holds it (posix_fallocate: extends the file if needed, never shrinks it, leaves the
    /// steps before it sparse), so a store there cannot fault on a full disk.
    Errc grow(std::uint32_t index, std::uint64_t byte) {
        const int fd = fd_of_nothrow(index);
        if (fd < 0) return Errc::io_error;
        const std::uint64_t step = byte / kGrowBytes * kGrowBytes;
        // fallocate(2) itself, not posix_fallocate: glibc's emulation for file systems
        // without it writes zero bytes, which could undo a bit another process just set.
        if (::fallocate(fd, 0, static_cast<off_t>(step), static_cast<off_t>(kGrowBytes)) != 0) {
            const int e = errno;
            struct stat st {};
            if (e != EOPNOTSUPP || ::fstat(fd, &st) != 0) {
                record(sys_text(path_of(file_name(index)), "grow (fallocate)", e));
                return from_errno(e);
            }
            // No fallocate here: extend (sparse) with ftruncate, only ever upwards.
            if (static_cast<std::uint64_t>(st.st_size) < step + kGrowBytes &&
                ::ftruncate(fd, static_cast<off_t>(step + kGrowBytes)) != 0) {
                record(sys_text(path_of(file_name(index)), "grow (ftruncate)", errno));
                return from_errno(errno);
            }
        }
        return covers(index, byte) ? Errc::ok : Errc::io_error;
    }

    int fd_of_nothrow(std::uint32_t index) noexcept {
        try {
            return fd_of(index);
        } catch (...) {
            return -1;
        }
    }
    bool due(std::uintptr_t v) const noexcept {
        return v == 0 || now_ms() - (v >> 1) >= recheck_ms.load(std::memory_order_relaxed);
    }
    std::string path_of(const std::string& name) const { return dir + "/" + name; }

    // The guard of every writing call: a writable set and an ordinal below the limit.
    Errc writable_for(std::uint64_t ord) {
        if (!writable) {
            record(dir + ": tombstone set opened read-only");
            return Errc::tomb_read_only;
        }
        if (ord >= kOrdinalLimit) {
            record("ordinal " + std::to_string(ord) + " beyond the supported 2^48");
            return Errc::tomb_range;
        }
        return Errc::ok;
    }

    void record(std::string msg) {
        std::lock_guard lk(mu);
        error = std::move(msg);
    }

    /// The words of range `index`, or nullptr (absent, or an error in `e`).
    std::uint64_t* lookup(std::uint32_t index, Mode mode, Errc& e) noexcept {
        e = Errc::ok;
        const std::uintptr_t v = slot(index).load(std::memory_order_acquire);
        if (is_mapped(v)) return reinterpret_cast<std::uint64_t*>(v);
        if (mode == Mode::peek && !due(v)) return nullptr;
        return lookup_slow(index, mode, e);
    }

    [[gnu::noinline]] std::uint64_t* lookup_slow(std::uint32_t index, Mode mode, Errc& e) noexcept {
        try {
            std::lock_guard lk(mu);
            const std::uintptr_t v = slot(index).load(std::memory_order_acquire);
            if (is_mapped(v)) return reinterpret_cast<std::uint64_t*>(v);
            if (mode == Mode::peek && !due(v)) return nullptr;  // another thread just looked
            std::uint64_t* w = nullptr;
            e = map_locked(index, mode == Mode::create, w);
            slot(index).store(w ? reinterpret_cast<std::uintptr_t>(w) : absent_tag(now_ms()),
                              std::memory_order_release);
            return w;
        } catch (...) {  // bad_alloc while building a message, system_error from the mutex
            e = Errc::io_error;
            return nullptr;
        }
    }

    /// Opens (creating if `create`) and maps range `index`. `out` stays null and the result
    /// is ok when the file is absent and not to be created. Needs mu.
    Errc map_locked(std::uint32_t index, bool create, std::uint64_t*& out) {
        const std::string name = file_name(index);
        const std::string path = path_of(name);
        int fd = ::openat(dir_fd, name.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT) {
                error = sys_text(path, "open", errno);
                return Errc::io_error;
            }
            if (!create) return Errc::ok;
            if (Errc e = create_locked(name, fd); e != Errc::ok) return e;
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            error = sys_text(path, "fstat", errno);
            ::close(fd);
            return Errc::io_error;
        }
        if (Errc e = check_stat(st, path, error); e != Errc::ok) {
            ::close(fd);
            return e;
        }
        maps.reserve(maps.size() + 1);  // so the push_back below cannot throw after mmap
        void* p = ::mmap(nullptr, kFileBytes, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
                         fd, 0);
        if (p == MAP_FAILED) {
            error = sys_text(path, "mmap", errno);
            ::close(fd);
            return Errc::io_error;
        }
        out = static_cast<std::uint64_t*>(p);
        maps.push_back({index, fd, out});
        size(index).store(static_cast<std::uint64_t>(st.st_size), std::memory_order_release);
        return Errc::ok;
    }

    /// Creates `name` atomically at its full size (see the top of this file); `fd` is then
    /// open read-write on the file now bearing that name (ours or a racing writer's).
    Errc create_locked(const std::string& name, int& fd) {
        const std::string tmp = "." + name + "." + std::to_string(::getpid()) + "." +
                                std::to_string(g_tmp_counter.fetch_add(1)) + ".tmp";
        const std::string path = path_of(name);
        int t = ::openat(dir_fd, tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (t < 0) {
            error = sys_text(path_of(tmp), "create", errno);
            return Errc::io_error;
        }
        auto give_up = [&](const std::string& msg) {
            error = msg;
            ::unlinkat(dir_fd, tmp.c_str(), 0);
            ::close(t);
            return Errc::io_error;
        };
        if (::fallocate(t, 0, 0, static_cast<off_t>(kGrowBytes)) != 0 &&
            (errno != EOPNOTSUPP || ::ftruncate(t, static_cast<off_t>(kGrowBytes)) != 0))
            return give_up(sys_text(path_of(tmp), "fallocate", errno));
        if (::fsync(t) != 0) return give_up(sys_text(path_of(tmp), "fsync", errno));

        int rc = ::linkat(dir_fd, tmp.c_str(), dir_fd, name.c_str(), 0);
        if (rc != 0 && errno != EEXIST)  // no hard links here: the no-replace rename instead
            rc = ::renameat2(dir_fd, tmp.c_str(), dir_fd, name.c_str(), RENAME_NOREPLACE);
        if (rc == 0) {
            ::unlinkat(dir_fd, tmp.c_str(), 0);  // fails harmlessly after a rename
            if (::fsync(dir_fd) != 0) {
                const int err = errno;
                ::close(t);
                error = sys_text(dir, "fsync", err);
                return Errc::io_error;
            }
            fd = t;
            return Errc::ok;
        }
        if (errno != EEXIST) return give_up(sys_text(path, "link/rename", errno));
        // Another writer created it first: share its file.
        ::unlinkat(dir_fd, tmp.c_str(), 0);
        ::close(t);
        fd = ::openat(dir_fd, name.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            error = sys_text(path, "open", errno);
            return Errc::io_error;
        }
        return Errc::ok;
    }

    /// Checks the names and sizes of the tomb-*.bits files in the directory (maps nothing).
    Errc validate(std::string& msg) const {
        const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
        if (!d) {
            msg = sys_text(dir, "opendir", errno);
            if (fd >= 0) ::close(fd);
            return Errc::io_error;
        }
        Errc result = Errc::ok;
        for (;;) {
            errno = 0;
            const dirent* ent = ::readdir(d);
            if (!ent) {
                if (errno != 0) {
                    msg = sys_text(dir, "readdir", errno);
                    result = Errc::io_error;
                }
                break;
            }
            std::uint64_t index = 0;
            const NameKind kind = classify(ent->d_name, index);
            if (kind == NameKind::other) continue;
            const std::string path = path_of(ent->d_name);
            if (kind == NameKind::bad) {
                msg = path + ": unexpected tombstone file name (want tomb-XXXXXXXX.bits, 8 "
                             "lowercase hex digits)";
                result = Errc::tomb_bad_name;
                break;
            }
            if (index >= kMaxFiles) {
                msg = path + ": range beyond the supported " + std::to_string(kMaxFiles) +
                      " files (ordinals < 2^48)";
                result = Errc::tomb_bad_name;
                break;
            }
            struct stat st {};
            if (::fstatat(dir_fd, ent->d_name, &st, 0) != 0) {
                if (errno == ENOENT) continue;  // a racing writer's rename
                msg = sys_text(path, "stat", errno);
                result = Errc::io_error;
                break;
            }
            if ((result = check_stat(st, path, msg)) != Errc::ok) break;
        }
        ::closedir(d);
        return result;
    }

    /// Marks in `present` (kMaxFiles entries) the ranges with a canonical file name in the
    /// directory; false if the directory cannot be listed.
    bool list_present(std::vector<char>& present) const {
        const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
        if (!d) {
            if (fd >= 0) ::close(fd);
            return false;
        }
        present.assign(kMaxFiles, 0);
        while (const dirent* ent = ::readdir(d)) {
            std::uint64_t index = 0;
            if (classify(ent->d_name, index) == NameKind::tomb && index < kMaxFiles) present[index] = 1;
        }
        ::closedir(d);
        return true;
    }

    int fd_of(std::uint32_t index) {
        std::lock_guard lk(mu);
        for (const Mapping& m : maps)
            if (m.index == index) return m.fd;
        return -1;
    }

    /// Set bits in local bit positions [lo, hi) of a mapped range, reading data extents only.
    std::uint64_t count_range(std::uint32_t index, std::uint64_t* w, std::uint64_t lo,
                              std::uint64_t hi) {
        const int fd = fd_of(index);
        if (fd < 0) return popcount_bits(w, lo, hi);
        std::uint64_t n = 0;
        auto off = static_cast<off_t>(lo / 64 * 8);
        const auto end = static_cast<off_t>((hi + 63) / 64 * 8);
        while (off < end) {
            off_t data = ::lseek(fd, off, SEEK_DATA);
            off_t hole;
            if (data < 0) {
                if (errno == ENXIO) break;  // nothing but hole from `off` on
                data = off;                 // SEEK_DATA unsupported: scan the rest
                hole = end;
            } else {
                if (data >= end) break;
                hole = ::lseek(fd, data, SEEK_HOLE);
                if (hole <= data || hole > end) hole = end;
            }
            const std::uint64_t a = std::max(lo, static_cast<std::uint64_t>(data) * 8);
            const std::uint64_t b = std::min(hi, static_cast<std::uint64_t>(hole) * 8);
            if (a < b) n += popcount_bits(w, a, b);
            off = hole;
        }
        return n;
    }
};

Set::Set(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Set::Set(Set&&) noexcept = default;
Set& Set::operator=(Set&&) noexcept = default;
Set::~Set() = default;

Result<Set> Set::open(const std::string& dir, bool writable, std::string* err) {
    auto fail = [&](Errc e, std::string msg) -> Result<Set> {
        if (err) *err = std::move(msg);
        return e;
    };
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return fail(Errc::io_error, sys_text(dir, "open directory", errno));
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    impl->dir_fd = dfd;
    impl->writable = writable;
    impl->slots = static_cast<std::uintptr_t*>(std::calloc(kMaxFiles, sizeof(std::uintptr_t)));
    impl->sizes = static_cast<std::uint64_t*>(std::calloc(kMaxFiles, sizeof(std::uint64_t)));
    if (!impl->slots || !impl->sizes) return fail(Errc::io_error, dir + ": out of memory");
    if (writable && ::faccessat(dfd, ".", W_OK | X_OK, AT_EACCESS) != 0)
        return fail(Errc::io_error, sys_text(dir, "not writable", errno));
    std::string msg;
    if (Errc e = impl->validate(msg); e != Errc::ok) return fail(e, std::move(msg));
    return Set(std::move(impl));
}

bool Set::test(std::uint64_t ord) const noexcept {
    if (ord >= kOrdinalLimit) return false;
    Errc e;
    std::uint64_t* w = impl_->lookup(static_cast<std::uint32_t>(ord >> 32), Mode::peek, e);
    if (!w) return false;
    const auto r = static_cast<std::uint32_t>(ord);
    if (!impl_->covers(static_cast<std::uint32_t>(ord >> 32), std::uint64_t{r >> 6} * 8)) return false;  // not grown that far: clear
    const std::uint64_t word = std::atomic_ref<std::uint64_t>(w[r >> 6]).load(std::memory_order_acquire);
    return (word >> (r & 63)) & 1u;
}

Result<bool> Set::set(std::uint64_t ord) {
    if (Errc g = impl_->writable_for(ord); g != Errc::ok) return g;
    Errc e;
    std::uint64_t* w = impl_->lookup(static_cast<std::uint32_t>(ord >> 32), Mode::create, e);
    if (!w) return e;
    const auto r = static_cast<std::uint32_t>(ord);
    if (Errc g = impl_->grow(static_cast<std::uint32_t>(ord >> 32), std::uint64_t{r >> 6} * 8); g != Errc::ok) return g;
    const std::uint64_t mask = std::uint64_t{1} << (r & 63);
    return (std::atomic_ref<std::uint64_t>(w[r >> 6]).fetch_or(mask, std::memory_order_release) & mask) != 0;
}

Errc Set::ensure(std::uint64_t ord) {
    if (Errc g = impl_->writable_for(ord); g != Errc::ok) return g;
    Errc e = Errc::ok;
    if (!impl_->lookup(static_cast<std::uint32_t>(ord >> 32), Mode::create, e)) return e;
    return impl_->grow(static_cast<std::uint32_t>(ord >> 32), std::uint64_t{static_cast<std::uint32_t>(ord) >> 6} * 8);
}

Result<bool> Set::clear(std::uint64_t ord) {
    if (Errc g = impl_->writable_for(ord); g != Errc::ok) return g;
    Errc e;
    std::uint64_t* w = impl_->lookup(static_cast<std::uint32_t>(ord >> 32), Mode::look, e);
    if (!w) {
        if (e != Errc::ok) return e;
        return false;  // no file: the bit was clear
    }
    const auto r = static_cast<std::uint32_t>(ord);
    if (!impl_->covers(static_cast<std::uint32_t>(ord >> 32), std::uint64_t{r >> 6} * 8)) return false;  // never grown there: clear
    const std::uint64_t mask = std::uint64_t{1} << (r & 63);
    return (std::atomic_ref<std::uint64_t>(w[r >> 6]).fetch_and(~mask, std::memory_order_release) & mask) != 0;
}

std::uint64_t Set::count(std::uint64_t from, std::uint64_t to) const {
    to = std::min(to, kOrdinalLimit);
    if (from >= to) return 0;
    const std::uint64_t first = from >> 32, last = (to - 1) >> 32;
    // Looking for each absent file costs a system call; over many ranges one directory
    // listing is cheaper (a full-range count would otherwise make 65536 failed opens).
    std::vector<char> present;
    const bool listed = last - first >= kListThreshold && impl_->list_present(present);
    std::uint64_t total = 0;
    for (std::uint64_t index = first; index <= last; ++index) {
        if (listed && !present[index] && !is_mapped(impl_->slot(index).load(std::memory_order_acquire)))
            continue;
        Errc e;
        std::uint64_t* w = impl_->lookup(static_cast<std::uint32_t>(index), Mode::peek, e);
        if (!w) continue;
        const std::uint64_t base = index << 32;
        const std::uint64_t lo = std::max(from, base) - base;
        std::uint64_t hi = std::min(to, base + kBitsPerFile) - base;
        impl_->covers(static_cast<std::uint32_t>(index), kFileBytes);  // refresh the known size
        hi = std::min(hi, impl_->size(index).load(std::memory_order_acquire) * 8);
        if (lo >= hi) continue;
        total += impl_->count_range(static_cast<std::uint32_t>(index), w, lo, hi);
    }
    return total;
}

Errc Set::refresh() {
    std::string msg;
    const Errc e = impl_->validate(msg);
    std::lock_guard lk(impl_->mu);
    for (std::uint64_t i = 0; i < kMaxFiles; ++i) {
        // Untouched slots read calloc's zero pages, so this costs no memory.
        if (impl_->slot(i).load(std::memory_order_relaxed) & 1u)
            impl_->slot(i).store(0, std::memory_order_relaxed);
    }
    if (e != Errc::ok) impl_->error = std::move(msg);
    return e;
}

void Set::set_recheck_ms(std::uint32_t ms) noexcept {
    impl_->recheck_ms.store(ms, std::memory_order_relaxed);
}
std::uint32_t Set::recheck_ms() const noexcept {
    return impl_->recheck_ms.load(std::memory_order_relaxed);
}

Errc Set::sync() {
    std::lock_guard lk(impl_->mu);
    if (!impl_->writable) return Errc::ok;
    for (const Impl::Mapping& m : impl_->maps) {
        const std::uint64_t n = impl_->size(m.index).load(std::memory_order_acquire);
        if (n != 0 && ::msync(m.words, n, MS_SYNC) != 0) {
            impl_->error = sys_text(impl_->path_of(file_name(m.index)), "msync", errno);
            return Errc::io_error;
        }
    }
    return Errc::ok;
}

std::string Set::last_error() const {
    std::lock_guard lk(impl_->mu);
    return impl_->error;
}

bool Set::writable() const noexcept { return impl_->writable; }
const std::string& Set::dir() const noexcept { return impl_->dir; }

}  // namespace sov::bitset
