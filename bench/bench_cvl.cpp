// bench_cvl — the CVL archive beside its baselines, in one run, on one frame stream:
//   sizes: CVL (clusters by DID) against the same frames in chronological order compressed
//          with the same level and dictionary (chunks of cluster_bytes, and whole segments as
//          one zstd frame each), and the raw stream;
//   speed: cvl-pack's Writer with 1 and 2 threads (MB/s of envelopes, journal and fsyncs
//          included) against ZSTD_compress level 3 of the same bytes on one thread;
//          random access µs per ordinal; sequential read MB/s.
//   point read: a fresh Archive (open + one read of a random ordinal), as a one-shot
//          `cvl-cat --ordinal K` does, median over 20 ordinals (page cache warm).
// Usage: bench_cvl FRAMES_FILE [--tmp DIR] [--random N] [--segment-bytes N] [--segment-messages N]
//          (segment limits as cvl-pack's options; defaults cvl::Params')
//        bench_cvl --synthetic N [--tmp DIR] [--random N]   (an archive of N small synthetic
//          envelopes, built once under DIR and kept: point reads and random access at scale)
//        bench_cvl --archive DIR [--random N]   (reads of an existing archive: point read,
//          random access, sequential)
// Prints a markdown table and a machine-readable line "CVL key=value…" on stderr.
#include "sovereign/cvl.h"
#include "sovereign/frame_stream.h"

#include <zdict.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <sys/resource.h>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

static double secs_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Median time of a fresh open + one read, in ms, over `n` random ordinals below `end`.
static double point_read_ms(const std::string& dir, std::uint64_t end, int n) {
    std::mt19937_64 rng(7);
    std::vector<double> t;
    std::vector<std::uint8_t> env;
    for (int i = 0; i < n; ++i) {
        std::uint64_t o = rng() % end;
        auto t0 = Clock::now();
        std::string err;
        auto ar = sov::cvl::Archive::open(dir, err);
        if (!ar || ar->read(o, env, err) != sov::Errc::ok) {
            std::fprintf(stderr, "bench_cvl: point read of %llu failed: %s\n", (unsigned long long)o, err.c_str());
            std::exit(2);
        }
        ar.reset();
        t.push_back(secs_since(t0) * 1e3);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// Random reads through one Archive: µs per ordinal.
static double random_us(sov::cvl::Archive& ar, std::uint64_t end, std::size_t n) {
    std::mt19937_64 rng(1);
    sov::ByteView env;
    std::string err;
    std::size_t bad = 0;
    auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; ++i)
        if (ar.view(rng() % end, env, err) != sov::Errc::ok) ++bad;
    double us = secs_since(t0) * 1e6 / double(n);
    if (bad) std::fprintf(stderr, "bench_cvl: %zu random reads failed\n", bad);
    return us;
}

// An archive of `n` synthetic envelopes (~120 bytes: src, recv, a small wire of 2,000 DIDs'
// worth of varying bytes), built once and kept; then point reads and random access on it.
static int synthetic(std::uint64_t n, const std::string& tmp, std::size_t randoms) {
    const std::string dir = tmp + "/bench_cvl_syn_" + std::to_string(n);
    std::string err;
    if (!fs::exists(dir + "/cvl.json")) {
        fs::remove_all(dir);
        sov::cvl::Params p;
        auto w = sov::cvl::Writer::open(dir, p, 2, err);
        if (!w) {
            std::fprintf(stderr, "bench_cvl: %s\n", err.c_str());
            return 2;
        }
        std::vector<std::uint8_t> rec, wire(64);
        std::vector<sov::ByteView> batch;
        std::vector<std::vector<std::uint8_t>> envs(4096);
        std::mt19937_64 rng(3);
        for (std::uint64_t i = 0; i < n;) {
            batch.clear();
            for (std::size_t k = 0; k < envs.size() && i < n; ++k, ++i) {
                for (std::size_t b = 0; b < wire.size(); b += 8) {
                    std::uint64_t r = (b < 16) ? (rng() % 2000) : rng() % 1000;
                    std::memcpy(wire.data() + b, &r, 8);
                }
                rec.clear();
                sov::frames::append_record(rec, "bench", std::nullopt, std::int64_t(1'700'000'000'000'000 + i), wire);
                sov::frames::Envelope e;
                sov::frames::parse_record(rec, e);
                envs[k].assign(e.raw.begin(), e.raw.end());
                batch.emplace_back(envs[k].data(), envs[k].size());
            }
            if (w->append(batch, err) != sov::Errc::ok) {
                std::fprintf(stderr, "bench_cvl: %s\n", err.c_str());
                return 2;
            }
        }
        if (w->seal(err) != sov::Errc::ok) {
            std::fprintf(stderr, "bench_cvl: %s\n", err.c_str());
            return 2;
        }
    }
    double point = point_read_ms(dir, n, 20);
    auto ar = sov::cvl::Archive::open(dir, err);
    double rnd = random_us(*ar, n, randoms);
    std::printf("| synthetic archive, %llu messages | point read (open + 1 read): %.2f ms | random access: %.1f µs/ordinal | |\n",
                (unsigned long long)n, point, rnd);
    std::fprintf(stderr, "CVL synthetic=%llu point_ms=%.3f random_us=%.2f\n", (unsigned long long)n, point, rnd);
    return 0;
}

static double cpu_now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static int existing(const std::string& dir, std::size_t randoms) {
    std::string err;
    auto probe = sov::cvl::Archive::open(dir, err);
    if (!probe) {
        std::fprintf(stderr, "bench_cvl: %s\n", err.c_str());
        return 2;
    }
    const std::uint64_t end = probe->end_ordinal();
    probe.reset();
    double point = point_read_ms(dir, end, 20);
    auto ar = sov::cvl::Archive::open(dir, err);
    double rnd = random_us(*ar, end, randoms);
    double c0 = cpu_now();
    random_us(*ar, end, randoms);
    double rnd_cpu = (cpu_now() - c0) * 1e6 / double(randoms);
    auto ts = Clock::now();
    double s0 = cpu_now();
    std::uint64_t bytes = 0;
    for (std::size_t s = 0; s < ar->segments().size(); ++s)
        ar->scan_segment(s, [&](std::uint64_t, sov::ByteView e) {
            bytes += e.size();
            return true;
        }, err);
    double seq = double(bytes) / 1e6 / secs_since(ts), seq_cpu = double(bytes) / 1e6 / (cpu_now() - s0);
    std::printf("| archive %s, %llu messages | point read %.2f ms | random %.1f µs/ordinal (%.1f µs CPU warm) | sequential %.0f MB/s (%.0f MB per CPU-second) |\n",
                dir.c_str(), (unsigned long long)end, point, rnd, rnd_cpu, seq, seq_cpu);
    std::fprintf(stderr, "CVL archive=%llu point_ms=%.3f random_us=%.2f random_cpu_us=%.2f seq_mb_s=%.0f seq_mb_cpu_s=%.0f\n",
                 (unsigned long long)end, point, rnd, rnd_cpu, seq, seq_cpu);
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_cvl FRAMES_FILE [--tmp DIR] [--random N] [--segment-bytes N] [--segment-messages N]\n");
        return 2;
    }
    std::string input = argv[1], tmp = "/tmp";
    std::size_t randoms = 20000;
    std::uint64_t synth = 0;
    int first_opt = 2;
    if (input == "--synthetic" && argc > 2) {
        synth = std::stoull(argv[2]);
        first_opt = 3;
    }
    sov::cvl::Params params;
    for (int i = first_opt; i + 1 < argc; i += 2) {
        if (std::string(argv[i]) == "--tmp") tmp = argv[i + 1];
        if (std::string(argv[i]) == "--random") randoms = std::stoul(argv[i + 1]);
        if (std::string(argv[i]) == "--segment-bytes") params.segment_bytes = std::stoull(argv[i + 1]);
        if (std::string(argv[i]) == "--segment-messages") params.segment_messages = std::uint32_t(std::stoul(argv[i + 1]));
    }
    if (synth) return synthetic(synth, tmp, randoms);
    if (input == "--archive" && argc > 2) return existing(argv[2], randoms);
    // Load all envelopes.
    std::vector<std::uint8_t> all;
    std::vector<std::pair<std::size_t, std::size_t>> envs;
    {
        auto r = sov::frames::Reader::open(input);
        sov::frames::Envelope e;
        while (r.next(e)) {
            envs.emplace_back(all.size(), e.raw.size());
            all.insert(all.end(), e.raw.begin(), e.raw.end());
        }
        if (r.error() || r.open_errno()) {
            std::fprintf(stderr, "bench_cvl: cannot read %s\n", input.c_str());
            return 2;
        }
    }
    std::vector<sov::ByteView> views;
    for (auto [o, l] : envs) views.emplace_back(all.data() + o, l);
    double mb = double(all.size()) / 1e6;

    // --- pack, 1 and 2 threads ------------------------------------------------------------------
    auto cpu_seconds = [] {
        rusage u{};
        getrusage(RUSAGE_SELF, &u);
        return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    };
    double cpu_per_pack[3] = {0, 0, 0};
    auto pack = [&](unsigned threads, const std::string& dir) {
        fs::remove_all(dir);
        std::string err;
        double c0 = cpu_seconds();
        auto t0 = Clock::now();
        auto w = sov::cvl::Writer::open(dir, params, threads, err);
        if (!w) {
            std::fprintf(stderr, "bench_cvl: %s\n", err.c_str());
            std::exit(2);
        }
        auto last_sync = Clock::now();
        for (auto v : views) {  // exactly as cvl-pack: one frame per append, fsync every second
            w->append({&v, 1}, err);
            if (secs_since(last_sync) >= 1.0) {
                w->sync_journal(err);
                last_sync = Clock::now();
            }
        }
        w->seal(err);
        w->sync_journal(err);
        double wall = secs_since(t0);
        cpu_per_pack[threads] = cpu_seconds() - c0;
        return mb / wall;
    };
    std::string dir1 = tmp + "/bench_cvl_1", dir2 = tmp + "/bench_cvl_2";
    double pack1 = pack(1, dir1);
    double pack2 = pack(2, dir2);
    fs::remove_all(dir1);

    // --- sizes -----------------------------------------------------------------------------------
    std::string err;
    auto ar = sov::cvl::Archive::open(dir2, err);
    std::uint64_t stored = 0, dict_bytes = 0, clusters = 0;
    for (auto& s : ar->segments()) {
        stored += s.stored_bytes;
        clusters += s.clusters;
    }
    for (auto& e : fs::directory_iterator(dir2 + "/dict")) dict_bytes += fs::file_size(e.path());
    // Chronological baselines, segment by segment, with the segment's own dictionary.
    std::uint64_t chrono_chunks = 0, chrono_segment = 0, chrono_msgcount = 0;
    {
        std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
        for (auto& s : ar->segments()) {
            std::vector<std::uint8_t> dict;
            if (s.dict_id) {
                char name[32];
                std::snprintf(name, sizeof name, "/dict/%08u.zdict", s.dict_id);
                std::FILE* f = std::fopen((dir2 + name).c_str(), "rb");
                dict.resize(fs::file_size(dir2 + name));
                if (f) {
                    if (std::fread(dict.data(), 1, dict.size(), f) != dict.size()) dict.clear();
                    std::fclose(f);
                }
            }
            ZSTD_CCtx_reset(cctx.get(), ZSTD_reset_session_and_parameters);
            ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, params.level);
            ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
            auto compress = [&](const std::uint8_t* p, std::size_t n) {
                if (!dict.empty()) ZSTD_CCtx_loadDictionary(cctx.get(), dict.data(), dict.size());
                std::vector<std::uint8_t> out(ZSTD_compressBound(n));
                std::size_t r = ZSTD_compress2(cctx.get(), out.data(), out.size(), p, n);
                return ZSTD_isError(r) ? n : r;
            };
            std::size_t begin = envs[s.first].first, end = envs[s.first + s.count - 1].first + envs[s.first + s.count - 1].second;
            // (a) chunks of cluster_bytes in arrival order (same random-access granularity bound)
            for (std::size_t i = s.first; i < s.first + s.count;) {
                std::size_t j = i, bytes = 0;
                while (j < s.first + s.count && (j == i || bytes + envs[j].second <= params.cluster_bytes)) bytes += envs[j++].second;
                chrono_chunks += compress(all.data() + envs[i].first, bytes);
                i = j;
            }
            // (b) the same number of chunks as CVL has clusters in this segment, in arrival order
            std::size_t per = std::max<std::size_t>(1, (s.count + s.clusters - 1) / std::max<std::uint32_t>(1, s.clusters));
            for (std::size_t i = s.first; i < s.first + s.count; i += per) {
                std::size_t j = std::min<std::size_t>(i + per, s.first + s.count);
                chrono_msgcount += compress(all.data() + envs[i].first, envs[j - 1].first + envs[j - 1].second - envs[i].first);
            }
            // (c) the whole segment as one frame
            chrono_segment += compress(all.data() + begin, end - begin);
        }
    }
    // zstd -3 speed on the same bytes (one thread, 4 MiB chunks, no dictionary).
    std::uint64_t z3_size = 0;
    auto t0 = Clock::now();
    const double z3_c0 = cpu_seconds();
    {
        std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
        std::vector<std::uint8_t> out(ZSTD_compressBound(4u << 20));
        for (std::size_t off = 0; off < all.size(); off += 4u << 20) {
            std::size_t n = std::min<std::size_t>(4u << 20, all.size() - off);
            z3_size += ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), all.data() + off, n, 3);
        }
    }
    double z3_mbs = mb / secs_since(t0);
    // Per CPU-second, like the pack figure: on a shared machine wall time is not the cost.
    const double z3_mb_cpu = mb / std::max(1e-9, cpu_seconds() - z3_c0);

    // --- reads -----------------------------------------------------------------------------------
    double point_ms = point_read_ms(dir2, envs.size(), 20);
    double rand_us = random_us(*ar, envs.size(), randoms);
    double rc0 = cpu_seconds();
    random_us(*ar, envs.size(), randoms);
    double rand_cpu_us = (cpu_seconds() - rc0) * 1e6 / double(randoms);
    auto ts = Clock::now();
    std::uint64_t seq_bytes = 0;
    for (std::size_t s = 0; s < ar->segments().size(); ++s)
        ar->scan_segment(s, [&](std::uint64_t, sov::ByteView e) {
            seq_bytes += e.size();
            return true;
        }, err);
    double seq_mbs = double(seq_bytes) / 1e6 / secs_since(ts);
    fs::remove_all(dir2);

    double cvl_total = double(stored + dict_bytes);
    std::printf("| **%s**: %zu frames, %.1f MB of envelopes, %zu segments, %llu clusters | | | |\n", input.c_str(), envs.size(), mb,
                ar->segments().size(), (unsigned long long)clusters);
    std::printf("| CVL stored (DID-grouped clusters, level %d, %llu dictionary bytes not counted) | %.1f MB (%.2f×) | chronological, same level and dictionaries, as many chunks as CVL has clusters: %.1f MB | CVL %.2f× smaller |\n",
                params.level, (unsigned long long)dict_bytes, double(stored) / 1e6, mb / (double(stored) / 1e6),
                double(chrono_msgcount) / 1e6, double(chrono_msgcount) / double(stored));
    std::printf("| (same) | | chronological, same level and dictionaries, %u KiB chunks: %.1f MB | CVL %.2f× smaller |\n",
                params.cluster_bytes >> 10, double(chrono_chunks) / 1e6, double(chrono_chunks) / double(stored));
    std::printf("| (same) | | chronological, whole segments as single frames: %.1f MB | CVL %.2f× smaller |\n",
                double(chrono_segment) / 1e6, double(chrono_segment) / double(stored));
    std::printf("| CVL including its dictionaries | %.1f MB (%.2f×) | zstd -3 of the raw stream, 4 MiB chunks, no dictionary: %.1f MB | CVL %.2f× smaller |\n",
                cvl_total / 1e6, mb / (cvl_total / 1e6), double(z3_size) / 1e6, double(z3_size) / cvl_total);
    std::printf("| pack, 1 compression thread (journal, clustering, compression, fsyncs) | %.0f MB/s wall, %.0f MB per CPU-second | zstd -3 of the same bytes, 1 thread: %.0f MB/s wall, %.0f MB per CPU-second | %.0f%% (per CPU-second) |\n",
                pack1, mb / cpu_per_pack[1], z3_mbs, z3_mb_cpu, 100.0 * (mb / cpu_per_pack[1]) / z3_mb_cpu);
    std::printf("| pack, 2 compression threads | %.0f MB/s wall, %.0f MB per CPU-second | 2 × zstd -3 | %.0f%% (%.2f× 1 thread) |\n", pack2,
                mb / cpu_per_pack[2], 100.0 * pack2 / (2 * z3_mbs), pack2 / pack1);
    std::printf("| random access, %zu random ordinals | %.1f µs/ordinal (%.1f µs CPU, warm: the 2nd pass) | (one index record + one cluster decompression up to the message) | |\n",
                randoms, rand_us, rand_cpu_us);
    std::printf("| point read (fresh open + one read, median of 20) | %.2f ms | | |\n", point_ms);
    std::printf("| sequential read (every segment, every cluster once) | %.0f MB/s | | |\n", seq_mbs);
    std::fprintf(stderr, "CVL stored=%llu dict=%llu raw=%zu pack_mb_per_cpu_s=%.1f zstd3_mb_cpu_s=%.1f pack_vs_zstd3=%.3f random_us=%.2f random_cpu_us=%.2f point_ms=%.3f seq_mb_s=%.0f\n",
                 (unsigned long long)stored, (unsigned long long)dict_bytes, all.size(), mb / cpu_per_pack[1], z3_mb_cpu,
                 (mb / cpu_per_pack[1]) / z3_mb_cpu, rand_us, rand_cpu_us, point_ms, seq_mbs);
    return 0;
}
