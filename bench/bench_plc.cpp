// bench_plc — the PLC validation path beside its physical limits, measured in one run on a
// simulated directory (sim::PlcDirectory: the ops `mesh-sim serve --plc` serves, same seed):
//   1. Op validation: every export line of the directory through plc::Log::apply (the rules
//      plc-sync's mirror applies: both run internal/plc_apply.h), lines pre-parsed, a fresh
//      Log per DID each pass. Beside it, on the same ops, in CPU time, interleaved round by
//      round (a busy machine slows every column alike):
//        raw     one signature verify per accepted op with its signer's key pre-parsed
//                (libsecp256k1 for k256, crypto::PreparedKey / OpenSSL for p256), over the
//                digests and signatures the rules check;
//        recover one crypto::recover per accepted op on its signer's curve (both y parities,
//                compared with the signer's key): what plc::verify_signature does instead of a
//                verify per key tried, when it saves work (see plc.cpp);
//        rules   the previous method, for comparison: the rotation keys verified in priority
//                order until one verifies (an op signed by rotationKeys[1] costs two
//                verifies; a sig_invalid op one per key), keys pre-parsed.
//      On 1 thread (CPU time) and on 2 threads (DIDs partitioned by hash; wall clock).
//   2. Export-line parse: plc::parse_export_line over the whole sequenced export, MB/s beside
//      memcpy of the same bytes (same rounds, CPU time).
// Usage: bench_plc [--accounts N] [--seed S] [--rounds R]. Prints markdown; a line
// "PLCBENCH key=value…" on stderr. Exit 1 when the validation disagrees with the directory's
// expected verdicts (the measured work would not be the real one).
#include "sovereign/crypto.h"
#include "sovereign/multibase.h"
#include "sovereign/plc.h"
#include "sovereign/sim_plc.h"

#include <secp256k1.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
namespace plc = sov::plc;
namespace crypto = sov::crypto;

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

// One signature check: a pre-parsed key, the digest and the 64-byte signature.
struct Check {
    crypto::PublicKey key;
    secp256k1_pubkey pk;              // k256
    secp256k1_ecdsa_signature ssig;   // k256
    std::size_t p256 = SIZE_MAX;      // index into a thread's PreparedKeys (p256)
    std::array<std::uint8_t, 32> digest;
    std::array<std::uint8_t, 64> sig;
};

// A set of checks, and the p256 keys they use prepared once (one set per thread: a
// PreparedKey's p256 context is not shared between threads).
struct Checks {
    std::vector<Check> raw;    // one per accepted op, its signer's key
    std::vector<Check> rules;  // every verify the rules make when each key is verified in turn
    std::vector<crypto::PreparedKey> p256;
};

// Verifies; true when it verified.
bool run_check(Checks& c, const Check& k) {
    if (k.key.curve == crypto::Curve::k256)
        return secp256k1_ecdsa_verify(secp256k1_context_static, &k.ssig, k.digest.data(), &k.pk) == 1;
    return c.p256[k.p256].verify(k.digest.data(), {k.sig.data(), 64}) == sov::Errc::ok;
}

bool make_check(const std::string& did_key, const std::array<std::uint8_t, 32>& digest, const std::vector<std::uint8_t>& sig,
                Checks& c, std::unordered_map<std::string, std::size_t>& p256_index, Check& out) {
    auto k = crypto::parse_did_key(did_key);
    if (!k || sig.size() != 64) return false;
    out.key = *k;
    out.digest = digest;
    std::copy(sig.begin(), sig.end(), out.sig.begin());
    if (k->curve == crypto::Curve::k256) {
        // libsecp256k1's verify accepts only low-S; the ops that reach a verify are low-S.
        return secp256k1_ec_pubkey_parse(secp256k1_context_static, &out.pk, k->compressed.data(), 33) == 1 &&
               secp256k1_ecdsa_signature_parse_compact(secp256k1_context_static, &out.ssig, out.sig.data()) == 1;
    }
    auto [it, fresh] = p256_index.try_emplace(did_key, c.p256.size());
    if (fresh) {
        c.p256.emplace_back();
        if (c.p256.back().reset(*k) != sov::Errc::ok) return false;
    }
    out.p256 = it->second;
    return true;
}

struct Prepared {
    std::vector<plc::ExportLine> lines;
    std::vector<sov::Errc> expected;
    std::vector<Checks> per_thread;  // [0]: all ops; [1 + t]: the ops of thread t of 2
    std::vector<std::vector<std::size_t>> part;  // line indexes of each of the 2 threads
    std::size_t accepted = 0, p256_ops = 0, k256_ops = 0, rules_verifies = 0;
    std::size_t recoveries[2] = {0, 0}, direct_verifies = 0;  // validation's signature work: k256, p256 recoveries
};

std::size_t part_of(const std::string& did) { return std::hash<std::string>{}(did) & 1; }

// Parses every line and derives, for every op that reaches a signature check, the keys the
// rules try (genesis: its own rotation keys; later ops: those of the op `prev` names).
bool prepare(const sov::sim::PlcDirectory& d, Prepared& p) {
    p.per_thread.resize(3);
    p.part.resize(2);
    std::vector<std::unordered_map<std::string, std::size_t>> p256_index(3);
    std::unordered_map<std::string, std::vector<std::string>> keys_of_cid;  // accepted ops only
    for (std::size_t i = 0; i < d.ops().size(); ++i) {
        const sov::sim::PlcOp& op = d.ops()[i];
        plc::ExportLine el;
        plc::Problem why;
        if (plc::parse_export_line(d.sequenced_line(i), el, why) != sov::Errc::ok) {
            std::fprintf(stderr, "bench_plc: line %zu does not parse: %s\n", i, why.reason.c_str());
            return false;
        }
        p.expected.push_back(op.expected);
        const std::size_t t = part_of(el.did);
        p.part[t].push_back(i);
        const sov::Errc e = op.expected;
        const bool reaches_sig = e == sov::Errc::ok || e == sov::Errc::sig_invalid || e == sov::Errc::plc_nullify_key ||
                                 e == sov::Errc::plc_nullify_late;
        if (reaches_sig) {
            const std::vector<std::string> keys =
                el.op.prev ? keys_of_cid[*el.op.prev] : plc::normalise(el.op).rotation_keys;
            std::vector<std::uint8_t> sig;
            sov::multibase::base64url_decode(el.op.sig, sig);
            const auto digest = crypto::sha256(plc::encode(el.op, false));
            bool verified = false;
            // What plc::verify_signature does for this op (see plc.cpp): a recovery at the first
            // key of a curve, except a lone k256 key left, which is verified directly.
            {
                std::vector<int> curves;
                for (const std::string& k : keys)
                    if (auto pk = crypto::parse_did_key(k)) curves.push_back(pk->curve == crypto::Curve::p256);
                    else curves.push_back(-1);
                std::size_t k256_left = std::size_t(std::count(curves.begin(), curves.end(), 0));
                bool done[2] = {false, false};
                for (std::size_t j = 0; j < keys.size(); ++j) {
                    const int c = curves[j];
                    if (c < 0) continue;
                    if (c == 0) --k256_left;
                    Check probe;
                    const bool signs = make_check(keys[j], digest, sig, p.per_thread[0], p256_index[0], probe) &&
                                       run_check(p.per_thread[0], probe);
                    if (!done[c] && c == 0 && k256_left == 0) {
                        ++p.direct_verifies;
                    } else if (!done[c]) {
                        ++p.recoveries[c];
                        done[c] = true;
                    }
                    if (signs) break;
                }
            }
            for (const std::string& k : keys) {
                Check c;
                if (!make_check(k, digest, sig, p.per_thread[0], p256_index[0], c)) continue;
                Check c2;
                make_check(k, digest, sig, p.per_thread[1 + t], p256_index[1 + t], c2);
                const bool ok = run_check(p.per_thread[0], c);
                p.per_thread[0].rules.push_back(c);
                p.per_thread[1 + t].rules.push_back(c2);
                ++p.rules_verifies;
                if (ok) {
                    if (e == sov::Errc::ok) {
                        p.per_thread[0].raw.push_back(c);
                        p.per_thread[1 + t].raw.push_back(c2);
                        (c.key.curve == crypto::Curve::k256 ? p.k256_ops : p.p256_ops)++;
                    }
                    verified = true;
                    break;
                }
            }
            if (e == sov::Errc::ok && !verified) {
                std::fprintf(stderr, "bench_plc: op %s verifies by none of its keys\n", op.cid.c_str());
                return false;
            }
        }
        if (e == sov::Errc::ok) {
            ++p.accepted;
            keys_of_cid[op.cid] = el.op.type == plc::OpType::tombstone ? std::vector<std::string>{}
                                                                          : plc::normalise(el.op).rotation_keys;
        }
        p.lines.push_back(std::move(el));
    }
    return true;
}

// Applies `idx` (all lines when empty) through fresh Logs; returns the number of mismatches
// with the expected verdicts.
std::size_t validate(const Prepared& p, const std::vector<std::size_t>* idx) {
    std::unordered_map<std::string, plc::Log> logs;
    std::size_t bad = 0;
    plc::Problem why;
    const std::size_t n = idx ? idx->size() : p.lines.size();
    for (std::size_t j = 0; j < n; ++j) {
        const std::size_t i = idx ? (*idx)[j] : j;
        const plc::ExportLine& el = p.lines[i];
        auto it = logs.find(el.did);
        if (it == logs.end()) it = logs.emplace(el.did, plc::Log(el.did)).first;
        bad += it->second.apply(el, why) != p.expected[i];
    }
    return bad;
}

std::size_t run_all(Checks& c, const std::vector<Check>& v) {
    std::size_t ok = 0;
    for (const Check& k : v) ok += run_check(c, k);
    return ok;
}

// One recovery per check; counts those whose key is among the recovered ones.
std::size_t recover_all(const std::vector<Check>& v) {
    std::size_t ok = 0;
    crypto::Recovered rec;
    for (const Check& k : v)
        ok += crypto::recover(k.key.curve, k.digest.data(), {k.sig.data(), 64}, rec) == sov::Errc::ok && rec.contains(k.key);
    return ok;
}

// Runs f(t) on threads 0 and 1 at once; returns the wall seconds.
double on_two(const std::function<void(int)>& f) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    Clock::time_point t0;
    std::vector<std::thread> th;
    for (int t = 0; t < 2; ++t)
        th.emplace_back([&, t] {
            ready.fetch_add(1);
            while (!go.load()) std::this_thread::yield();
            f(t);
        });
    while (ready.load() < 2) std::this_thread::yield();
    t0 = Clock::now();
    go.store(true);
    for (auto& x : th) x.join();
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    sov::sim::PlcOptions o;
    o.accounts = 5000;
    o.seed = 7;
    int rounds = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--accounts") o.accounts = std::stoull(argv[i + 1]);
        else if (a == "--seed") o.seed = std::stoull(argv[i + 1]);
        else if (a == "--rounds") rounds = std::max(1, std::stoi(argv[i + 1]));
        else {
            std::fprintf(stderr, "usage: bench_plc [--accounts N] [--seed S] [--rounds R]\n");
            return 2;
        }
    }
    auto gen = sov::sim::PlcDirectory::generate(o);
    if (!gen) {
        std::fprintf(stderr, "bench_plc: generate: %s\n", std::string(sov::to_string(gen.error())).c_str());
        return 2;
    }
    const sov::sim::PlcDirectory& d = *gen;
    Prepared p;
    if (!prepare(d, p)) return 1;
    const std::size_t lines = p.lines.size();

    // The export as served (sequenced form), one line per op, and the line spans.
    std::string text;
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    for (std::size_t i = 0; i < d.ops().size(); ++i) {
        const std::string l = d.sequenced_line(i);
        spans.emplace_back(text.size(), l.size());
        text += l;
        text += '\n';
    }
    std::string dst(text.size(), '\0');
    const double mb = double(text.size()) / 1e6;
    const int memcpy_reps = 50;

    std::vector<double> raw1, rules1, val1, r_raw1, r_rules1, raw2, rules2, val2, r_raw2, r_rules2, parse, copy, r_parse;
    std::vector<double> rec1, r_rec1, rec2, r_rec2;
    std::size_t mismatches = 0;
    for (int round = 0; round < rounds + 1; ++round) {  // round 0 warms up
        // 1 thread, CPU time.
        double t0 = thread_cpu();
        std::size_t ok = run_all(p.per_thread[0], p.per_thread[0].raw);
        const double t_raw = thread_cpu() - t0;
        t0 = thread_cpu();
        ok += recover_all(p.per_thread[0].raw);
        const double t_rec = thread_cpu() - t0;
        t0 = thread_cpu();
        ok += run_all(p.per_thread[0], p.per_thread[0].rules);
        const double t_rules = thread_cpu() - t0;
        t0 = thread_cpu();
        mismatches += validate(p, nullptr);
        const double t_val = thread_cpu() - t0;
        g_sink = ok;
        // 2 threads, wall clock.
        const double w_raw = on_two([&](int t) { g_sink = run_all(p.per_thread[1 + t], p.per_thread[1 + t].raw); });
        const double w_rec = on_two([&](int t) { g_sink = recover_all(p.per_thread[1 + t].raw); });
        const double w_rules = on_two([&](int t) { g_sink = run_all(p.per_thread[1 + t], p.per_thread[1 + t].rules); });
        std::atomic<std::size_t> bad2{0};
        const double w_val = on_two([&](int t) { bad2 += validate(p, &p.part[t]); });
        mismatches += bad2;
        // Parse and memcpy, CPU time.
        t0 = thread_cpu();
        plc::ExportLine el;
        plc::Problem why;
        std::size_t perr = 0;
        for (auto [off, len] : spans) perr += plc::parse_export_line({text.data() + off, len}, el, why) != sov::Errc::ok;
        const double t_parse = thread_cpu() - t0;
        mismatches += perr;
        t0 = thread_cpu();
        for (int k = 0; k < memcpy_reps; ++k) {
            std::memcpy(dst.data(), text.data(), text.size());
            g_sink = g_sink + std::uint8_t(dst[(k * 4099) % dst.size()]);
        }
        const double t_copy = (thread_cpu() - t0) / memcpy_reps;
        if (round == 0) {
            if (recover_all(p.per_thread[0].raw) != p.per_thread[0].raw.size()) {
                std::fprintf(stderr, "bench_plc: a signer's key is not among the keys recovered from its signature\n");
                return 1;
            }
            continue;
        }
        raw1.push_back(double(p.accepted) / t_raw);
        rules1.push_back(double(p.accepted) / t_rules);
        val1.push_back(double(lines) / t_val);
        r_raw1.push_back(t_raw / t_val);
        r_rules1.push_back(t_rules / t_val);
        rec1.push_back(double(p.accepted) / t_rec);
        r_rec1.push_back(t_rec / t_val);
        rec2.push_back(double(p.accepted) / w_rec);
        r_rec2.push_back(w_rec / w_val);
        raw2.push_back(double(p.accepted) / w_raw);
        rules2.push_back(double(p.accepted) / w_rules);
        val2.push_back(double(lines) / w_val);
        r_raw2.push_back(w_raw / w_val);
        r_rules2.push_back(w_rules / w_val);
        parse.push_back(mb / t_parse);
        copy.push_back(mb / t_copy);
        r_parse.push_back(t_copy / t_parse);
    }
    // Where an op's time goes: the steps of Log::apply, each timed alone over the directory's
    // keys and ops (CPU time, µs per call).
    std::vector<std::string> keys[2];  // k256, p256 rotation keys as served
    std::vector<const plc::Operation*> ops;
    for (std::size_t i = 0; i < lines; ++i) {
        if (p.expected[i] != sov::Errc::ok) continue;
        ops.push_back(&p.lines[i].op);
        for (const std::string& k : plc::normalise(p.lines[i].op).rotation_keys)
            if (auto pk = crypto::parse_did_key(k)) keys[pk->curve == crypto::Curve::p256].push_back(k);
    }
    auto per_call = [](std::size_t n, auto&& f) {
        f(0);
        const double t0 = thread_cpu();
        for (std::size_t i = 0; i < n; ++i) f(i);
        return n ? (thread_cpu() - t0) / double(n) * 1e6 : 0.0;
    };
    struct Step {
        const char* name;
        double us[2];
    };
    std::vector<Step> steps;
    {
        Step parse{"`crypto::parse_did_key` (base58 + point decompression; what validation does per new key)", {}},
            prep{"`PreparedKey::reset` (decompression; p256: OpenSSL EVP_PKEY; validation: k256 keys verified directly)", {}},
            ver{"prepared verify (the raw column's unit)", {}}, rec{"`crypto::recover`, both parities (the recovery column's unit)", {}};
        for (int c = 0; c < 2; ++c) {
            const auto& ks = keys[c];
            parse.us[c] = per_call(ks.size(), [&](std::size_t i) { g_sink = crypto::parse_did_key(ks[i])->compressed[1]; });
            std::vector<crypto::PublicKey> pks;
            for (const auto& k : ks) pks.push_back(*crypto::parse_did_key(k));
            prep.us[c] = per_call(pks.size(), [&](std::size_t i) {
                crypto::PreparedKey pk;
                g_sink = std::uint64_t(pk.reset(pks[i]));
            });
        }
        std::vector<double> v[2], w[2];
        crypto::Recovered recovered;
        for (const Check& k : p.per_thread[0].raw) {
            double t0 = thread_cpu();
            g_sink = run_check(p.per_thread[0], k);
            v[k.key.curve == crypto::Curve::p256].push_back(thread_cpu() - t0);
            t0 = thread_cpu();
            g_sink = std::uint64_t(crypto::recover(k.key.curve, k.digest.data(), {k.sig.data(), 64}, recovered));
            w[k.key.curve == crypto::Curve::p256].push_back(thread_cpu() - t0);
        }
        auto mean_us = [](const std::vector<double>& x) {
            double sum = 0;
            for (double y : x) sum += y;
            return x.empty() ? 0 : sum / double(x.size()) * 1e6;
        };
        for (int c = 0; c < 2; ++c) {
            ver.us[c] = mean_us(v[c]);
            rec.us[c] = mean_us(w[c]);
        }
        steps.push_back(ver);
        steps.push_back(rec);
        steps.push_back(parse);
        steps.push_back(prep);
    }
    const plc::Limits limits;
    plc::Problem lw;
    const double t_limits = per_call(ops.size(), [&](std::size_t i) { g_sink = std::uint64_t(plc::check_limits(*ops[i], limits, lw)); });
    const double t_cid = per_call(ops.size(), [&](std::size_t i) { g_sink = plc::op_cid(*ops[i]).size(); });
    const double t_digest = per_call(ops.size(), [&](std::size_t i) { g_sink = crypto::sha256(plc::encode(*ops[i], false))[0]; });

    if (mismatches) {
        std::fprintf(stderr, "bench_plc: %zu verdicts differ from the directory's expected ones\n", mismatches);
        return 1;
    }

    std::printf("Simulated directory: `sim::PlcDirectory` (= `mesh-sim serve --plc --accounts %zu --seed %llu`), %zu accounts, "
                "%zu export lines (%zu accepted ops: %zu signed by a k256 key, %zu by a p256 key; %zu rejected), "
                "%zu verifies when each key is verified in turn (%.2f per accepted op); validation instead makes %zu k256 and %zu p256 "
                "recoveries and %zu verifies (of a lone k256 key). %d rounds, each measuring every column in turn; medians.\n\n",
                o.accounts, static_cast<unsigned long long>(o.seed), o.accounts, lines, p.accepted, p.k256_ops, p.p256_ops,
                lines - p.accepted, p.rules_verifies, double(p.rules_verifies) / double(p.accepted), p.recoveries[0], p.recoveries[1],
                p.direct_verifies, rounds);
    std::printf("| measurement | validation (`plc::Log::apply`, lines pre-parsed) | raw signature verify, one per accepted op | validation / raw | raw key recovery, one per accepted op | validation / that | verify per key tried (the previous method) | validation / that |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    std::printf("| 1 thread, CPU time | %.0f ops/s | %.0f ops/s | %.1f%% | %.0f ops/s | %.1f%% | %.0f ops/s | %.1f%% |\n", median(val1),
                median(raw1), 100 * median(r_raw1), median(rec1), 100 * median(r_rec1), median(rules1), 100 * median(r_rules1));
    std::printf("| 2 threads (DIDs split by hash), wall clock | %.0f ops/s | %.0f ops/s | %.1f%% | %.0f ops/s | %.1f%% | %.0f ops/s | %.1f%% |\n",
                median(val2), median(raw2), 100 * median(r_raw2), median(rec2), 100 * median(r_rec2), median(rules2),
                100 * median(r_rules2));
    std::printf("\n| measurement | value | limit measured in the same run | ratio |\n|---|---|---|---|\n");
    std::printf("| `plc::parse_export_line`, %zu sequenced lines (%.2f MB, %.0f bytes/line) | %.1f MB/s (%.0f lines/s) | memcpy of the same bytes: %.0f MB/s | %.2f%% |\n",
                lines, mb, double(text.size()) / double(lines), median(parse), median(parse) / mb * double(lines), median(copy),
                100 * median(r_parse));
    std::printf("\nWhere an op's time goes (each step of `Log::apply` timed alone, CPU time, µs per call; validation: %.1f µs per line; per accepted op: one verify %.1f µs, one recovery %.1f µs, a verify per key tried %.1f µs):\n\n",
                1e6 / median(val1), 1e6 / median(raw1), 1e6 / median(rec1), 1e6 / median(rules1));
    std::printf("| step | k256 | p256 |\n|---|---|---|\n");
    for (const Step& st : steps) std::printf("| %s | %.1f µs | %.1f µs |\n", st.name, st.us[0], st.us[1]);
    std::printf("| `check_limits` (DAG-CBOR size, fields, every rotation key decoded and checked on its curve) | %.1f µs per op (both curves) | |\n", t_limits);
    std::printf("| `op_cid` (DAG-CBOR + SHA-256 + CID text) | %.1f µs per op | |\n", t_cid);
    std::printf("| signed bytes: DAG-CBOR without sig + SHA-256 | %.1f µs per op | |\n", t_digest);
    std::fprintf(stderr,
                 "PLCBENCH lines=%zu accepted=%zu val1=%.0f raw1=%.0f rec1=%.0f rules1=%.0f val2=%.0f raw2=%.0f rec2=%.0f "
                 "rules2=%.0f parse_mb_s=%.1f memcpy_mb_s=%.0f\n",
                 lines, p.accepted, median(val1), median(raw1), median(rec1), median(rules1), median(val2), median(raw2),
                 median(rec2), median(rules2), median(parse), median(copy));
    return 0;
}
