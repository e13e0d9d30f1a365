// bench_did_cache — the memory-mapped DID cache (sovereign/did_cache.h) beside the memory it
// lives in, measured in one run:
//   build: Writer::put rate for N DIDs, and the file's bytes per DID;
//   lookups: Reader::key_at of the current key (one cache line), of an older time (slot +
//          heap record), and key_at_batch (every slot prefetched first), per thread on 1 and
//          on T threads at once (lookups/s per core);
//   DRAM: over a buffer of the cache file's size, the latency of dependent random loads (one
//          at a time: a pointer chase) and the rate of independent random loads (what the
//          memory system gives to the batched path).
// Usage: bench_did_cache [--entries N] [--huge] [--lookups M] [--threads T] [--tmp DIR] [--keep]
//   --entries N   DIDs in the cache (default 1,000,000); --huge = --entries 100000000 (about
//                 20 GB of file and as much RAM to be meaningful: not for CI)
//   --lookups M   lookups per measurement (default 4,000,000)
//   --threads T   threads of the parallel measurement (default: the machine's cores)
//   --tmp DIR     where the cache file is built (default /tmp); --keep reuses it across runs
// Prints a markdown table, and a line "DIDCACHE key=value…" on stderr.
#include "sovereign/did_cache.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
namespace dc = sov::didcache;
using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU seconds of the calling thread: on a shared machine, wall-clock rates also count the
// time other processes held the core; rates per CPU-second do not.
double thread_cpu() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// The i-th DID: "did:plc:" + 24 base32 characters from a mix of i (uniform, like real ones).
void did_of(std::uint64_t i, char out[32]) {
    static constexpr char kAlpha[] = "abcdefghijklmnopqrstuvwxyz234567";
    std::memcpy(out, "did:plc:", 8);
    std::uint64_t s = i * 0x2545f4914f6cdd1dull;
    std::uint64_t a = splitmix(s), b = splitmix(s);
    for (int c = 0; c < 12; ++c) out[8 + c] = kAlpha[(a >> (5 * c)) & 31];
    for (int c = 0; c < 12; ++c) out[20 + c] = kAlpha[(b >> (5 * c)) & 31];
}

constexpr std::int64_t kT0 = 1'700'000'000'000'000;  // µs

dc::Record record_of(std::uint64_t i, const sov::crypto::PublicKey& k1, const sov::crypto::PublicKey& k2) {
    dc::Record r;
    char d[32];
    did_of(i, d);
    r.did.assign(d, 32);
    r.handle = "user" + std::to_string(i) + ".bsky.social";
    r.pds = "https://pds" + std::to_string(i % 1000) + ".host.bsky.network";
    r.history.push_back({kT0 + std::int64_t(i % 1000000) * 1000, k1});
    if (i % 10 == 0) r.history.push_back({kT0 + 2'000'000'000'000, k2});  // 1 DID in 10 rotated once
    return r;
}

struct Lookups {
    std::vector<char> text;  // M × 32 chars
    std::vector<std::string_view> dids;
    std::vector<std::int64_t> now, old;
};

Lookups make_lookups(std::uint64_t entries, std::uint64_t m, std::uint64_t seed) {
    Lookups l;
    l.text.resize(m * 32);
    l.dids.resize(m);
    l.now.assign(m, 0);
    l.old.resize(m);
    std::uint64_t s = seed;
    for (std::uint64_t j = 0; j < m; ++j) {
        const std::uint64_t i = splitmix(s) % entries;
        did_of(i, &l.text[j * 32]);
        l.dids[j] = std::string_view(&l.text[j * 32], 32);
        l.old[j] = kT0 + 1000;  // before every rotation: the heap path for rotated DIDs
    }
    return l;
}

// Lookups per second of one pass over `l` (single or batched, current or old times); `cpu_rate`
// (when given) gets the lookups per CPU-second of the calling thread.
double rate(const dc::Reader& rd, const Lookups& l, bool batched, bool old, std::uint64_t& found, double* cpu_rate = nullptr) {
    const auto& times = old ? l.old : l.now;
    found = 0;
    const double c0 = thread_cpu();
    const auto t0 = Clock::now();
    if (!batched) {
        for (std::size_t j = 0; j < l.dids.size(); ++j) found += rd.key_at(l.dids[j], times[j]).has_value();
    } else {
        constexpr std::size_t kBatch = 256;
        std::vector<std::optional<sov::crypto::PublicKey>> out(kBatch);
        for (std::size_t j = 0; j < l.dids.size(); j += kBatch) {
            const std::size_t n = std::min(kBatch, l.dids.size() - j);
            rd.key_at_batch({l.dids.data() + j, n}, {times.data() + j, n}, {out.data(), n});
            for (std::size_t k = 0; k < n; ++k) found += out[k].has_value();
        }
    }
    const double wall = secs_since(t0);
    if (cpu_rate) *cpu_rate = double(l.dids.size()) / std::max(1e-9, thread_cpu() - c0);
    return double(l.dids.size()) / wall;
}

// T threads each doing one pass over their own lookups at once: total lookups/s.
double parallel_rate(const dc::Reader& rd, const std::vector<Lookups>& ls, bool batched) {
    std::vector<std::thread> th;
    std::vector<double> r(ls.size());
    const auto t0 = Clock::now();
    for (std::size_t t = 0; t < ls.size(); ++t)
        th.emplace_back([&, t] {
            std::uint64_t f = 0;
            r[t] = rate(rd, ls[t], batched, false, f);
        });
    for (auto& x : th) x.join();
    double lookups = 0;
    for (const auto& l : ls) lookups += double(l.dids.size());
    return lookups / secs_since(t0);
}

// DRAM over `bytes`: ns per dependent random 64-byte line load, and independent random loads/s.
void dram(std::uint64_t bytes, std::uint64_t m, double& latency_ns, double& loads_per_s) {
    const std::uint64_t lines = std::max<std::uint64_t>(1, bytes / 64);
    std::uint64_t pow2 = 1;
    while (pow2 * 2 <= lines) pow2 *= 2;
    const std::uint64_t n = pow2 * 8;  // u64 words
    void* p = ::mmap(nullptr, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        latency_ns = loads_per_s = 0;
        return;
    }
    auto* w = static_cast<std::uint64_t*>(p);
    std::uint64_t s = 99;
    for (std::uint64_t i = 0; i < n; i += 8) w[i] = splitmix(s);  // touch every line
    const std::uint64_t mask = pow2 - 1;
    // Dependent: the next line depends on the value just loaded.
    std::uint64_t x = 1;
    auto t0 = Clock::now();
    for (std::uint64_t j = 0; j < m; ++j) {
        std::uint64_t v = w[(x & mask) * 8];
        x = (x ^ v) * 0x9e3779b97f4a7c15ull + j;
        x ^= x >> 29;
    }
    latency_ns = secs_since(t0) * 1e9 / double(m);
    // Independent: addresses from a counter, the loads overlap.
    std::uint64_t sum = x;
    s = 5;
    t0 = Clock::now();
    for (std::uint64_t j = 0; j < m; ++j) sum += w[(splitmix(s) & mask) * 8];
    loads_per_s = double(m) / secs_since(t0);
    if (sum == 42) std::fprintf(stderr, " ");
    ::munmap(p, n * 8);
}

}  // namespace

int main(int argc, char** argv) {
    std::uint64_t entries = 1'000'000, m = 4'000'000;
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    std::string tmp = "/tmp";
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench_did_cache: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--entries") entries = std::stoull(next());
        else if (a == "--huge") entries = 100'000'000;
        else if (a == "--lookups") m = std::stoull(next());
        else if (a == "--threads") threads = unsigned(std::stoul(next()));
        else if (a == "--tmp") tmp = next();
        else if (a == "--keep") keep = true;
        else {
            std::fprintf(stderr, "usage: bench_did_cache [--entries N] [--huge] [--lookups M] [--threads T] [--tmp DIR] [--keep]\n");
            return 2;
        }
    }
    if (entries == 0 || m == 0 || threads == 0) return 2;
    const std::string dir = tmp + "/sov-bench-didcache-" + std::to_string(entries);
    const std::string path = dir + "/" + std::string(dc::kFileName);
    std::string err;
    std::array<std::uint8_t, 32> seed{};
    const auto k1 = *sov::crypto::public_key_of(sov::crypto::generate_from_seed(sov::crypto::Curve::k256, seed));
    const auto k2 = *sov::crypto::public_key_of(sov::crypto::generate_from_seed(sov::crypto::Curve::p256, seed));

    double build_s = 0;
    std::uint64_t file_bytes = 0, generations = 0;
    if (!keep || !fs::exists(path)) {
        fs::remove_all(dir);
        fs::create_directories(dir);
        dc::Writer w;
        if (dc::Writer::open(path, w, err, entries * 4 / 3 + 1) != sov::Errc::ok) {
            std::fprintf(stderr, "bench_did_cache: %s\n", err.c_str());
            return 2;
        }
        const auto t0 = Clock::now();
        for (std::uint64_t i = 0; i < entries; ++i)
            if (w.put(record_of(i, k1, k2), err) != sov::Errc::ok) {
                std::fprintf(stderr, "bench_did_cache: put: %s\n", err.c_str());
                return 2;
            }
        if (w.sync(entries, err) != sov::Errc::ok) {
            std::fprintf(stderr, "bench_did_cache: sync: %s\n", err.c_str());
            return 2;
        }
        build_s = secs_since(t0);
        generations = w.generation();
    }
    dc::Reader rd;
    if (dc::Reader::open(path, rd, err) != sov::Errc::ok) {
        std::fprintf(stderr, "bench_did_cache: %s\n", err.c_str());
        return 2;
    }
    file_bytes = fs::file_size(path);
    struct stat st {};
    ::stat(path.c_str(), &st);
    const std::uint64_t allocated = std::uint64_t(st.st_blocks) * 512;  // the file is sparse until written
    if (rd.size() != entries) {
        std::fprintf(stderr, "bench_did_cache: the cache holds %llu DIDs, not %llu\n", (unsigned long long)rd.size(),
                     (unsigned long long)entries);
        return 2;
    }

    const Lookups l = make_lookups(entries, m, 1);
    std::uint64_t found = 0;
    (void)rate(rd, l, false, false, found);  // warm the page cache and the mapping
    double single_cpu = 0, single_old_cpu = 0, batched_cpu = 0;
    const double single = rate(rd, l, false, false, found, &single_cpu);
    const bool all_found = found == m;
    const double single_old = rate(rd, l, false, true, found, &single_old_cpu);
    const double batched = rate(rd, l, true, false, found, &batched_cpu);
    const bool batch_found = found == m;
    std::vector<Lookups> ls;
    for (unsigned t = 0; t < threads; ++t) ls.push_back(make_lookups(entries, m, 100 + t));
    const double par_single = parallel_rate(rd, ls, false);
    const double par_batched = parallel_rate(rd, ls, true);
    double lat = 0, loads = 0;
    dram(file_bytes, m, lat, loads);
    if (!all_found || !batch_found || rd.status() != sov::Errc::ok) {
        std::fprintf(stderr, "bench_did_cache: lookups missed DIDs the cache holds\n");
        return 1;
    }

    std::printf("| DID cache, %llu DIDs (%.1f MB file, %.1f bytes/DID; %.1f bytes/DID allocated%s) | value |\n|---|---|\n",
                (unsigned long long)entries, double(file_bytes) / 1e6, double(file_bytes) / double(entries),
                double(allocated) / double(entries), generations ? "" : ", reused");
    if (build_s > 0) std::printf("| build: Writer::put | %.2f M DIDs/s (%llu generation(s)) |\n", double(entries) / build_s / 1e6, (unsigned long long)generations);
    std::printf("| key_at, current key, 1 thread | %.2f M lookups/s (%.0f ns; %.2f M per CPU-second) |\n", single / 1e6, 1e9 / single,
                single_cpu / 1e6);
    std::printf("| key_at, an old time (1 in 10 reads the heap), 1 thread | %.2f M lookups/s (%.2f M per CPU-second) |\n", single_old / 1e6,
                single_old_cpu / 1e6);
    std::printf("| key_at_batch (256, prefetched), 1 thread | %.2f M lookups/s (%.0f ns; %.2f M per CPU-second) |\n", batched / 1e6,
                1e9 / batched, batched_cpu / 1e6);
    std::printf("| key_at, %u threads at once | %.2f M lookups/s (%.2f M per thread) |\n", threads, par_single / 1e6, par_single / 1e6 / threads);
    std::printf("| key_at_batch, %u threads at once | %.2f M lookups/s (%.2f M per thread) |\n", threads, par_batched / 1e6, par_batched / 1e6 / threads);
    std::printf("| DRAM, dependent random line loads over %.1f MB | %.1f ns each (%.2f M/s) |\n", double(file_bytes) / 1e6, lat, 1e3 / lat);
    std::printf("| DRAM, independent random loads, 1 thread | %.2f M loads/s |\n", loads / 1e6);
    std::fprintf(stderr,
                 "DIDCACHE entries=%llu file_bytes=%llu bytes_per_did=%.1f allocated_per_did=%.1f single=%.0f single_old=%.0f batched=%.0f "
                 "single_cpu=%.0f single_old_cpu=%.0f batched_cpu=%.0f threads=%u "
                 "par_single=%.0f par_batched=%.0f dram_latency_ns=%.1f dram_loads=%.0f\n",
                 (unsigned long long)entries, (unsigned long long)file_bytes, double(file_bytes) / double(entries), double(allocated) / double(entries), single,
                 single_old, batched, single_cpu, single_old_cpu, batched_cpu, threads, par_single, par_batched, lat, loads);
    if (!keep) fs::remove_all(dir);
    return 0;
}
