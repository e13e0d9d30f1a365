// bench_core — throughput of the core verification path beside its physical limits, all
// measured in one run on one core:
//   1. DAG-CBOR decode (strict validate) MB/s over every block of the real capture, beside
//      memcpy bandwidth and a one-read-per-byte scan of the same bytes (memory limit).
//   2. Commit verification (whole cbor-verify check per message) commits/s, beside raw
//      libsecp256k1 verify/s on the same digests, signatures and keys.
// Usage: bench_core CORPUS_DIR [--seconds S]. Prints a markdown table.
#include "sovereign/capture.h"
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/did_doc.h"
#include "sovereign/message.h"
#include "sovereign/sim.h"
#include "sovereign/verify.h"
#include "sovereign/verify_engine.h"

#include <nlohmann/json.hpp>

#include <secp256k1.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

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


}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_core CORPUS_DIR [--seconds S]\n");
        return 2;
    }
    std::string corpus = argv[1];
    double secs = 2.0;
    if (argc >= 4 && std::string(argv[2]) == "--seconds") secs = std::stod(argv[3]);

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
    sov::verify::Verifier verifier(keys);
    std::vector<const std::vector<std::uint8_t>*> commits;
    struct Raw {
        secp256k1_pubkey pk;
        secp256k1_ecdsa_signature sig;
        std::array<std::uint8_t, 32> digest;
    };
    std::vector<Raw> raws;
    secp256k1_context* ctx = secp256k1_context_create(SECP256K1_CONTEXT_VERIFY);
    for (auto& m : msgs) {
        if (verifier.verify(m, 0).verdict != sov::verify::Verdict::ok) continue;
        const auto& msg = verifier.message();
        if (msg.type != sov::msg::Type::commit) continue;
        commits.push_back(&m);
        // Same digest/signature/key as the verifier uses, for the raw-rate baseline.
        sov::car::Reader r;
        r.open(msg.blocks);
        sov::car::Section s;
        while (r.next(s))
            if (sov::cid::equal(s.cid, msg.commit)) {
                Raw raw;
                sov::ByteView sig;
                sov::verify::unsigned_commit_digest(s.block, raw.digest, sig);
                const auto* key = keys.signing_key(msg.did);
                if (secp256k1_ec_pubkey_parse(ctx, &raw.pk, key->compressed.data(), 33) &&
                    secp256k1_ecdsa_signature_parse_compact(ctx, &raw.sig, sig.data()))
                    raws.push_back(raw);
            }
    }
    double verify_per_s = rate(secs, [&] {
        std::size_t ok = 0;
        for (auto* m : commits) ok += verifier.verify(*m, 0).verdict == sov::verify::Verdict::ok;
        g_sink = ok;
    }) * double(commits.size());
    double raw_per_s = rate(secs, [&] {
        std::size_t ok = 0;
        for (auto& r : raws) ok += secp256k1_ecdsa_verify(ctx, &r.sig, r.digest.data(), &r.pk);
        g_sink = ok;
    }) * double(raws.size());
    // --- 3. The engine as cbor-verify runs it (batches of 1,024, state in order), 1 and 2
    // threads, on the capture and on mesh-sim traffic; beside the raw signature rate of the
    // same key mix (libsecp256k1 for k256, crypto::verify = OpenSSL EVP for p256).
    auto engine_rate = [&](const sov::verify::KeySource& ks, const std::vector<std::vector<std::uint8_t>>& wires,
                           std::size_t threads) {
        std::vector<sov::verify::FrameIn> in;
        for (auto& w : wires) in.push_back({w, 0, "bench"});
        std::vector<sov::verify::Outcome> out(in.size());
        std::size_t commits = 0;
        {
            sov::msg::Message m;
            for (auto& w : wires) commits += !sov::msg::parse(w, m) && m.type == sov::msg::Type::commit;
        }
        double per_s = rate(secs, [&] {
            // A fresh engine per pass: replays would otherwise be stale (the work is the same).
            sov::verify::Engine e(ks, threads, false, 1u << 20);
            for (std::size_t i = 0; i < in.size(); i += 1024) {
                std::size_t n = std::min<std::size_t>(1024, in.size() - i);
                e.run({in.data() + i, n}, {out.data() + i, n});
            }
            std::size_t ok = 0;
            for (auto& o : out) ok += o.verdict == sov::verify::Verdict::ok;
            if (ok != in.size()) std::fprintf(stderr, "bench_core: only %zu of %zu verified ok\n", ok, in.size());
        });
        return per_s * double(commits);
    };
    // mesh-sim traffic: 5,000 messages from 1,000 accounts, default profile (10% p256).
    sov::sim::Options so;
    so.seed = 7;
    so.corpus_repos = corpus + "/repos";
    sov::sim::Generator gen(so);
    std::vector<std::vector<std::uint8_t>> sim_msgs(5000);
    for (auto& w : sim_msgs) {
        std::int64_t recv;
        gen.next(w, recv);
    }
    sov::KeyStore sim_store;
    std::string e2;
    sim_store.load_json(gen.did_docs(), e2);
    sov::verify::StoreKeys sim_keys(sim_store);
    // Raw signature rate over the sim mix: one (key, digest, sig) per commit.
    struct RawSig {
        const sov::crypto::PublicKey* key;
        std::array<std::uint8_t, 32> digest;
        std::array<std::uint8_t, 64> sig;
        secp256k1_pubkey pk;
        secp256k1_ecdsa_signature ssig;
    };
    std::vector<RawSig> sim_raw;
    {
        sov::verify::Verifier v(sim_keys);
        for (auto& w : sim_msgs) {
            if (v.verify(w, 0).verdict != sov::verify::Verdict::ok || v.message().type != sov::msg::Type::commit) continue;
            const auto& msg = v.message();
            sov::car::Reader r;
            r.open(msg.blocks);
            sov::car::Section sec;
            while (r.next(sec))
                if (sov::cid::equal(sec.cid, msg.commit)) {
                    RawSig rs;
                    sov::ByteView sig;
                    sov::verify::unsigned_commit_digest(sec.block, rs.digest, sig);
                    std::copy(sig.begin(), sig.end(), rs.sig.begin());
                    rs.key = sim_keys.signing_key(msg.did);
                    if (rs.key->curve == sov::crypto::Curve::k256 &&
                        !(secp256k1_ec_pubkey_parse(ctx, &rs.pk, rs.key->compressed.data(), 33) &&
                          secp256k1_ecdsa_signature_parse_compact(ctx, &rs.ssig, rs.sig.data())))
                        continue;
                    sim_raw.push_back(rs);
                }
        }
    }
    std::size_t sim_p256 = 0;
    for (auto& r : sim_raw) sim_p256 += r.key->curve == sov::crypto::Curve::p256;
    double sim_raw_per_s = rate(secs, [&] {
        std::size_t ok = 0;
        for (auto& r : sim_raw)
            ok += r.key->curve == sov::crypto::Curve::k256
                      ? secp256k1_ecdsa_verify(ctx, &r.ssig, r.digest.data(), &r.pk)
                      : sov::crypto::verify(*r.key, r.digest.data(), {r.sig.data(), 64}) == sov::Errc::ok;
        g_sink = ok;
    }) * double(sim_raw.size());
    secp256k1_context_destroy(ctx);
    std::vector<std::vector<std::uint8_t>> cap_msgs;
    for (auto* m : commits) cap_msgs.push_back(*m);
    double cap1 = engine_rate(keys, cap_msgs, 1), cap2 = engine_rate(keys, cap_msgs, 2);
    double sim1 = engine_rate(sim_keys, sim_msgs, 1), sim2 = engine_rate(sim_keys, sim_msgs, 2);

    std::printf("| measurement | value | limit measured in the same run | ratio |\n");
    std::printf("|---|---|---|---|\n");
    std::printf("| DAG-CBOR strict validate, %zu blocks (%.2f MB) of the capture | %.0f MB/s | one 8-byte read per word of the same bytes: %.0f MB/s | %.1f%% |\n",
                blocks.size(), mb, validate_per_s * mb, scan_per_s * mb, 100.0 * validate_per_s / scan_per_s);
    std::printf("| (same) | %.0f MB/s | memcpy of the same bytes (cache-resident): %.0f MB/s | %.1f%% |\n",
                validate_per_s * mb, memcpy_arena_per_s * mb, 100.0 * validate_per_s / memcpy_arena_per_s);
    std::printf("| (same) | %.0f MB/s | memcpy 256 MiB (main-memory bandwidth): %.0f MB/s | %.1f%% |\n",
                validate_per_s * mb, big_per_s * big_mb, 100.0 * validate_per_s * mb / (big_per_s * big_mb));
    std::printf("| full verification (Engine: parse, CAR + every block hash, commit, signature, MST inversion, state), capture, 1 thread | %.0f commits/s | raw libsecp256k1 verify (above) | %.1f%% |\n",
                cap1, 100.0 * cap1 / raw_per_s);
    std::printf("| (same), capture, 2 threads | %.0f commits/s | 2 × raw | %.1f%% (%.2f× 1 thread) |\n", cap2,
                100.0 * cap2 / (2 * raw_per_s), cap2 / cap1);
    std::printf("| full verification, mesh-sim traffic (%zu commits, %zu with p256 keys), 1 thread | %.0f commits/s | raw verify of the same key mix (libsecp256k1 + OpenSSL p256): %.0f verifies/s | %.1f%% |\n",
                sim_raw.size(), sim_p256, sim1, sim_raw_per_s, 100.0 * sim1 / sim_raw_per_s);
    std::printf("| (same), mesh-sim, 2 threads | %.0f commits/s | 2 × raw | %.1f%% (%.2f× 1 thread) |\n", sim2,
                100.0 * sim2 / (2 * sim_raw_per_s), sim2 / sim1);
    std::fprintf(stderr, "RATES cap1=%.0f cap2=%.0f sim1=%.0f sim2=%.0f\n", cap1, cap2, sim1, sim2);
    std::printf("| cbor-verify check per #commit (parse, CAR, %s, commit, signature), %zu commits, 1 core | %.0f commits/s | raw libsecp256k1 verify on the same digests: %.0f verifies/s | %.1f%% |\n",
                "SHA-256 of every block, MST inversion", commits.size(), verify_per_s, raw_per_s, 100.0 * verify_per_s / raw_per_s);
    return 0;
}
