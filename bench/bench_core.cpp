// bench_core — throughput of the core verification path beside its physical limits, all
// measured in one run on one core:
//   1. DAG-CBOR decode (strict validate) MB/s over every block of the real capture, beside
//      memcpy bandwidth and a one-read-per-byte scan of the same bytes (memory limit).
//   2. Commit verification on the real capture and on mesh-sim traffic, measured round by
//      round in CPU time (so a busy machine slows every column alike): the raw signature rate
//      (libsecp256k1 / OpenSSL on pre-parsed keys, the same digests and signatures), the
//      unskippable ceiling (that signature + SHA-256 of every CAR block + SHA-256 of every MST
//      node the inversion re-encodes), the Engine as cbor-verify runs it (1 thread), and the
//      cbor-verify process itself on a frames file (CPU time of the child, whole and minus the
//      same process on an empty file). Medians over the rounds.
// Usage: bench_core CORPUS_DIR [--seconds S] [--rounds N] [--cbor-verify PATH]. Prints markdown.
#include "sovereign/capture.h"
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/did_doc.h"
#include "sovereign/io.h"
#include "sovereign/message.h"
#include "sovereign/sim.h"
#include "sovereign/verify.h"
#include "sovereign/verify_engine.h"

#include <nlohmann/json.hpp>

#include <secp256k1.h>

#include "sovereign/frame_stream.h"
#include "sovereign/mst.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

// Runs fn repeatedly for at least `secs`; returns iterations per second.
template <class F>
double rate(double secs, F&& fn) {
    fn();  // warm up
    std::size_t iters = 0;
    auto t0 = Clock::now();
    double el = 0;
    do {
        fn();
        ++iters;
        el = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (el < secs);
    return double(iters) / el;
}

volatile std::uint64_t g_sink;

double thread_cpu() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// CPU seconds (user + system) of one child process run to completion; -1 if it failed.
double child_cpu(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int status = 0;
    rusage ru{};
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// One commit's unskippable work: its signature (key pre-parsed), every CAR block to hash, and
// the MST nodes its inversion re-encodes.
struct CommitWork {
    sov::crypto::PublicKey key;
    sov::crypto::PreparedKey prepared;  // p256 (and the engine's equivalent for k256)
    secp256k1_pubkey pk;
    secp256k1_ecdsa_signature ssig;
    std::array<std::uint8_t, 32> digest;
    std::array<std::uint8_t, 64> sig;
    std::vector<sov::ByteView> blocks;  // views into the input's wires
    std::vector<std::vector<std::uint8_t>> path_nodes;
};

struct Input {
    std::string name;
    std::vector<std::vector<std::uint8_t>> wires;
    std::vector<std::int64_t> recvs;
    std::vector<CommitWork> work;
    std::size_t p256 = 0;
    std::string frames_path, docs_path;
    int file_repeats = 1;  // the frames file holds the input this many times over
};

bool signature_ok(CommitWork& w) {
    return w.key.curve == sov::crypto::Curve::k256
               ? secp256k1_ecdsa_verify(secp256k1_context_static, &w.ssig, w.digest.data(), &w.pk) == 1
               : w.prepared.verify(w.digest.data(), {w.sig.data(), 64}) == sov::Errc::ok;
}

// Fills in.work from the commits that verify ok: the digest and signature the verifier checks,
// the CAR blocks, and the node blocks of the inverted tree (ops undone on the new tree).
void prepare(Input& in, const sov::verify::KeySource& keys) {
    sov::verify::Verifier v(keys);
    for (std::size_t i = 0; i < in.wires.size(); ++i) {
        if (v.verify(in.wires[i], in.recvs[i]).verdict != sov::verify::Verdict::ok) continue;
        const auto& msg = v.message();
        if (msg.type != sov::msg::Type::commit) continue;
        CommitWork w;
        auto key = keys.signing_key(msg.did, in.recvs[i]);
        if (!key || w.prepared.reset(*key) != sov::Errc::ok) continue;
        w.key = *key;
        sov::car::Reader r;
        r.open(msg.blocks);
        sov::car::Section s;
        sov::car::BlockMap map;
        sov::ByteView data;
        while (r.next(s)) {
            w.blocks.push_back(s.block);
            map.add(s.cid, s.block);
            if (sov::cid::equal(s.cid, msg.commit)) {
                sov::ByteView sig;
                sov::verify::unsigned_commit_digest(s.block, w.digest, sig);
                std::copy(sig.begin(), sig.end(), w.sig.begin());
                data = sov::cbor::Value::of(s.block).get("data").as_link();
            }
        }
        if (w.key.curve == sov::crypto::Curve::k256 &&
            !(secp256k1_ec_pubkey_parse(secp256k1_context_static, &w.pk, w.key.compressed.data(), 33) &&
              secp256k1_ecdsa_signature_parse_compact(secp256k1_context_static, &w.ssig, w.sig.data())))
            continue;
        sov::mst::Tree t;
        t.open(data, sov::mst::BlockSource(map), true);
        for (const auto& op : msg.ops) {
            sov::ByteView old;
            if (op.action == sov::msg::OpAction::create) t.remove(op.path, old);
            else t.put(op.path, op.prev, old);
        }
        sov::cid::Cid root;
        t.root_cid(root, [&](sov::ByteView, sov::ByteView block) { w.path_nodes.emplace_back(block.begin(), block.end()); });
        in.p256 += w.key.curve == sov::crypto::Curve::p256;
        in.work.push_back(std::move(w));
    }
}

// Writes the input as a frame stream (and its keys as DID documents) for the cbor-verify runs.
void write_frames(Input& in, const std::string& dir, const nlohmann::json& docs) {
    in.frames_path = dir + "/" + in.name + ".frames";
    in.docs_path = dir + "/" + in.name + "-docs.json";
    std::vector<std::uint8_t> out;
    for (int k = 0; k < in.file_repeats; ++k)
        for (std::size_t i = 0; i < in.wires.size(); ++i)
            sov::frames::append_record(out, in.name == "capture" ? "bsky.network" : "mesh-sim", std::nullopt, in.recvs[i],
                                       in.wires[i]);
    std::ofstream(in.frames_path, std::ios::binary).write(reinterpret_cast<const char*>(out.data()), std::streamsize(out.size()));
    std::ofstream(in.docs_path) << docs.dump();
}

struct Row {
    double raw = 0, ceiling = 0, engine = 0, e2e = 0, e2e_marginal = 0;  // commits (signatures) per CPU second
};

// The four measurements, interleaved round by round; `reps` passes per measurement.
Row measure(Input& in, const sov::verify::KeySource& keys, int rounds, int reps, const std::string& cbor_verify,
            const std::string& empty_path) {
    std::vector<double> raw, ceiling, engine, e2e, marginal, r_ceiling, r_engine, r_e2e, r_marginal;
    std::vector<sov::verify::FrameIn> frames;
    for (std::size_t i = 0; i < in.wires.size(); ++i)
        frames.push_back({in.wires[i], in.recvs[i], in.name == "capture" ? "bsky.network" : "mesh-sim"});
    std::vector<sov::verify::Outcome> out(frames.size());
    const double n = double(in.work.size());
    // One engine throughout, as in a long-running cbor-verify: its prepared-key caches stay warm.
    sov::verify::Engine e(keys, 1, false, 1u << 20);
    for (int round = 0; round < rounds + 1; ++round) {  // round 0 warms up
        double t0 = thread_cpu();
        std::size_t ok = 0;
        for (int k = 0; k < reps; ++k)
            for (auto& w : in.work) ok += signature_ok(w);
        double t_raw = thread_cpu() - t0;
        t0 = thread_cpu();
        for (int k = 0; k < reps; ++k)
            for (auto& w : in.work) {
                ok += signature_ok(w);
                for (auto b : w.blocks) g_sink = g_sink + sov::crypto::sha256(b)[0];
                for (auto& b : w.path_nodes) g_sink = g_sink + sov::crypto::sha256(b)[0];
            }
        double t_ceiling = thread_cpu() - t0;
        t0 = thread_cpu();
        std::size_t passed = 0;
        for (int k = 0; k < reps; ++k) {
            e.state() = sov::verify::State(1u << 20);  // fresh state: a replay would be stale
            for (std::size_t i = 0; i < frames.size(); i += 1024) {
                std::size_t m = std::min<std::size_t>(1024, frames.size() - i);
                e.run({frames.data() + i, m}, {out.data() + i, m});
            }
            for (auto& o : out) passed += sov::verify::passes(o.verdict);
        }
        double t_engine = thread_cpu() - t0;
        if (passed != frames.size() * std::size_t(reps) || ok != in.work.size() * 2 * std::size_t(reps))
            std::fprintf(stderr, "bench_core: %s: not every frame verified\n", in.name.c_str());
        // --annotate: repeated frames (bad-seq) are written too, so every frame costs the same.
        double t_e2e = child_cpu({cbor_verify, "-q", "--annotate", "--threads", "1", "--did-docs", in.docs_path, in.frames_path});
        double t_empty = child_cpu({cbor_verify, "-q", "--annotate", "--threads", "1", "--did-docs", in.docs_path, empty_path});
        if (round == 0) continue;
        raw.push_back(n * reps / t_raw);
        ceiling.push_back(n * reps / t_ceiling);
        engine.push_back(n * reps / t_engine);
        r_ceiling.push_back(t_raw / t_ceiling);
        r_engine.push_back(t_raw / t_engine);
        if (t_e2e > 0 && t_empty >= 0) {
            const double sigs = n * in.file_repeats;
            const double raw_one = t_raw / reps * in.file_repeats;  // raw time for those signatures
            e2e.push_back(sigs / t_e2e);
            marginal.push_back(sigs / (t_e2e - t_empty));
            r_e2e.push_back(raw_one / t_e2e);
            r_marginal.push_back(raw_one / (t_e2e - t_empty));
        }
    }
    Row r;
    r.raw = median(raw);
    r.ceiling = median(r_ceiling);
    r.engine = median(r_engine);
    r.e2e = median(r_e2e);
    r.e2e_marginal = median(r_marginal);
    std::fprintf(stderr, "%s: raw %.0f/s, ceiling %.0f/s, engine %.0f/s, cbor-verify %.0f/s (%.0f/s without start-up)\n",
                 in.name.c_str(), median(raw), median(ceiling), median(engine), median(e2e), median(marginal));
    return r;
}

// The Engine alone on `threads` threads (wall clock: the point is the parallel speed-up).
double engine_rate(const sov::verify::KeySource& ks, const Input& in, std::size_t threads, double secs) {
    std::vector<sov::verify::FrameIn> frames;
    for (std::size_t i = 0; i < in.wires.size(); ++i) frames.push_back({in.wires[i], in.recvs[i], "bench"});
    std::vector<sov::verify::Outcome> out(frames.size());
    sov::verify::Engine e(ks, threads, false, 1u << 20);  // kept: its prepared keys stay warm
    return rate(secs, [&] {
               e.state() = sov::verify::State(1u << 20);
               for (std::size_t i = 0; i < frames.size(); i += 1024) {
                   std::size_t m = std::min<std::size_t>(1024, frames.size() - i);
                   e.run({frames.data() + i, m}, {out.data() + i, m});
               }
           }) *
           double(in.work.size());
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_core CORPUS_DIR [--seconds S]\n");
        return 2;
    }
    std::string corpus = argv[1];
    double secs = 2.0;
    int rounds = 7;
    std::string cbor_verify = std::filesystem::path(std::filesystem::read_symlink("/proc/self/exe")).parent_path().parent_path() /
                              "tools" / "cbor-verify";
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--seconds") secs = std::stod(argv[i + 1]);
        else if (a == "--rounds") rounds = std::max(1, std::stoi(argv[i + 1]));
        else if (a == "--cbor-verify") cbor_verify = argv[i + 1];
    }

    std::vector<std::vector<std::uint8_t>> msgs;
    std::string err;
    if (!sov::capture::load(corpus + "/relay-capture/frames.u32le.zst", msgs, err)) {
        std::fprintf(stderr, "bench_core: %s\n", err.c_str());
        return 2;
    }
    sov::KeyStore store;
    std::string detail;
    if (store.load_json_file(corpus + "/relay-capture/did-docs.json.zst", detail) != sov::Errc::ok) {
        std::fprintf(stderr, "bench_core: did-docs: %s\n", detail.c_str());
        return 2;
    }

    // --- 1. DAG-CBOR decode ---------------------------------------------------------------
    // All blocks copied into one arena (so the scan and memcpy see the same bytes).
    std::vector<std::uint8_t> arena;
    std::vector<std::pair<std::size_t, std::size_t>> blocks;
    for (auto& m : msgs) {
        sov::msg::Message msg;
        if (sov::msg::parse(m, msg) || msg.blocks.empty()) continue;
        sov::car::Reader r;
        if (r.open(msg.blocks)) continue;
        sov::car::Section s;
        while (r.next(s)) {
            blocks.emplace_back(arena.size(), s.block.size());
            arena.insert(arena.end(), s.block.begin(), s.block.end());
        }
    }
    double mb = double(arena.size()) / 1e6;
    double validate_per_s = rate(secs, [&] {
        std::size_t bad = 0;
        for (auto [off, len] : blocks) bad += bool(sov::cbor::validate({arena.data() + off, len}));
        g_sink = bad;
    });
    double scan_per_s = rate(secs, [&] {
        std::uint64_t acc = 0;
        const std::uint8_t* p = arena.data();
        for (std::size_t i = 0; i + 8 <= arena.size(); i += 8) {
            std::uint64_t w;
            std::memcpy(&w, p + i, 8);
            acc ^= w;
        }
        g_sink = acc;
    });
    std::vector<std::uint8_t> dst(arena.size());
    double memcpy_arena_per_s = rate(secs, [&] {
        std::memcpy(dst.data(), arena.data(), arena.size());
        g_sink = dst[dst.size() / 2];
    });
    // Main-memory bandwidth: a 256 MiB copy, far larger than any cache.
    std::vector<std::uint8_t> big_a(256u << 20, 1), big_b(256u << 20);
    double big_per_s = rate(secs, [&] {
        std::memcpy(big_b.data(), big_a.data(), big_a.size());
        g_sink = big_b[12345];
    });
    double big_mb = double(big_a.size()) / 1e6;

        // --- 2. Commit verification --------------------------------------------------------------
    sov::verify::StoreKeys keys(store);
    char tmpl[] = "/tmp/bench_core.XXXXXX";
    if (!mkdtemp(tmpl)) {
        std::perror("bench_core: mkdtemp");
        return 2;
    }
    const std::string tmp = tmpl;
    const std::string empty_path = tmp + "/empty.frames";
    std::ofstream(empty_path).close();

    Input cap;
    cap.name = "capture";
    cap.file_repeats = 20;  // 150 frames alone would measure the process start-up
    cap.wires = msgs;
    cap.recvs.assign(msgs.size(), 0);
    prepare(cap, keys);
    {
        std::string text;
        std::string e3;
        sov::io::Input f = sov::io::Input::open(corpus + "/relay-capture/did-docs.json.zst");
        std::vector<std::uint8_t> buf(1 << 16);
        for (long r; (r = f.read(buf.data(), buf.size())) > 0;) text.append(reinterpret_cast<const char*>(buf.data()), std::size_t(r));
        write_frames(cap, tmp, nlohmann::json::parse(text));
    }

    // mesh-sim traffic: 5,000 messages from 1,000 accounts, default profile (10% p256).
    sov::sim::Options so;
    so.seed = 7;
    so.corpus_repos = corpus + "/repos";
    sov::sim::Generator gen(so);
    Input sim;
    sim.name = "mesh-sim";
    sim.wires.resize(5000);
    sim.recvs.resize(5000);
    for (std::size_t i = 0; i < sim.wires.size(); ++i) gen.next(sim.wires[i], sim.recvs[i]);
    sov::KeyStore sim_store;
    std::string e2;
    sim_store.load_json(gen.did_docs(), e2);
    sov::verify::StoreKeys sim_keys(sim_store);
    prepare(sim, sim_keys);
    write_frames(sim, tmp, gen.did_docs());

    // Passes per measurement: about secs / 4 of signatures each.
    auto reps_for = [&](const Input& in) { return std::max(1, int(secs / 4 / (double(in.work.size()) * 50e-6))); };
    Row rc = measure(cap, keys, rounds, reps_for(cap), cbor_verify, empty_path);
    Row rs = measure(sim, sim_keys, rounds, reps_for(sim), cbor_verify, empty_path);
    double cap1 = rc.raw * rc.engine, sim1 = rs.raw * rs.engine;
    double cap2 = engine_rate(keys, cap, 2, secs), sim2 = engine_rate(sim_keys, sim, 2, secs);
    std::filesystem::remove_all(tmp);

    std::printf("| measurement | value | limit measured in the same run | ratio |\n");
    std::printf("|---|---|---|---|\n");
    std::printf("| DAG-CBOR strict validate, %zu blocks (%.2f MB) of the capture | %.0f MB/s | one 8-byte read per word of the same bytes: %.0f MB/s | %.1f%% |\n",
                blocks.size(), mb, validate_per_s * mb, scan_per_s * mb, 100.0 * validate_per_s / scan_per_s);
    std::printf("| (same) | %.0f MB/s | memcpy of the same bytes (cache-resident): %.0f MB/s | %.1f%% |\n",
                validate_per_s * mb, memcpy_arena_per_s * mb, 100.0 * validate_per_s / memcpy_arena_per_s);
    std::printf("| (same) | %.0f MB/s | memcpy 256 MiB (main-memory bandwidth): %.0f MB/s | %.1f%% |\n",
                validate_per_s * mb, big_per_s * big_mb, 100.0 * validate_per_s * mb / (big_per_s * big_mb));
    std::printf("\n%d rounds, each measuring in turn, in CPU time: raw signatures, the unskippable ceiling, the Engine, the cbor-verify process; medians of the per-round ratios to raw.\n\n", rounds);
    std::printf("| input | raw signature verify (libsecp256k1; OpenSSL for p256) | unskippable ceiling (signature + SHA-256 of every block + re-hash of the inverted path) | Engine, 1 thread (parse, CAR, every block hash, commit, signature, MST inversion, state) | `cbor-verify --threads 1 --annotate` process on a frames file (capture: 20 times over; repeats are bad-seq but fully verified) | same, minus its start-up (same process on an empty file) |\n");
    std::printf("|---|---|---|---|---|---|\n");
    auto row = [](const char* label, const Row& r) {
        std::printf("| %s | %.0f verifies/s | %.1f%% of raw | %.0f commits/s = %.1f%% of raw (%.1f%% of the ceiling) | %.1f%% of raw | %.1f%% of raw |\n",
                    label, r.raw, 100 * r.ceiling, r.raw * r.engine, 100 * r.engine, 100 * r.engine / r.ceiling, 100 * r.e2e,
                    100 * r.e2e_marginal);
    };
    char label[160];
    std::snprintf(label, sizeof label, "relay capture, %zu commits", cap.work.size());
    row(label, rc);
    std::snprintf(label, sizeof label, "mesh-sim traffic, %zu commits (%zu p256)", sim.work.size(), sim.p256);
    row(label, rs);
    std::printf("\n| Engine, 2 threads (wall clock; meaningful only on an idle machine) | capture: %.0f commits/s (%.2f× the 1-thread CPU-time rate) | mesh-sim: %.0f commits/s (%.2f×) |\n|---|---|---|\n",
                cap2, cap2 / cap1, sim2, sim2 / sim1);
    std::fprintf(stderr, "RATES cap1=%.0f cap2=%.0f sim1=%.0f sim2=%.0f\n", cap1, cap2, sim1, sim2);
    return 0;
}
