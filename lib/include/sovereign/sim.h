// sovereign/sim.h — mesh-sim's traffic generator: realistic, validly signed firehose
// messages (Sync 1.1 #commit with MST proof blocks, #sync, #identity, #account) for many
// simulated accounts, deterministic for a seed. Model and distributions: man/mesh-sim.1.md.
#pragma once

#include "sovereign/cid.h"
#include "sovereign/crypto.h"
#include "sovereign/errc.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sov::sim {

/// splitmix64: advances `x` and returns the next value of its sequence (Steele, Lea, Flood
/// 2014). Seeds Rng, and serves where one well-mixed value per step is enough.
inline std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/// xoshiro256** seeded by splitmix64: fast, and identical on every platform (unlike the
/// standard distributions), so a seed gives the same bytes everywhere.
class Rng {
public:
    explicit Rng(std::uint64_t seed) noexcept;
    std::uint64_t next() noexcept;
    /// Uniform in [0, n) (n ≥ 1; negligible modulo bias for n ≪ 2^64).
    std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
    /// Uniform in [0, 1).
    double uniform() noexcept { return double(next() >> 11) * 0x1.0p-53; }
    /// Standard normal (Box–Muller).
    double normal() noexcept;

private:
    std::uint64_t s_[4];
};

/// Zipf(s) over ranks 0..n-1: P(k) ∝ 1/(k+1)^s, by inverse CDF (binary search).
class Zipf {
public:
    Zipf(std::size_t n, double s);
    std::size_t sample(Rng& r) const;

private:
    std::vector<double> cdf_;
};

/// One stretch of an account's identity as a PLC directory records it (Options::identities):
/// from `from_us` (µs since the epoch, the op's createdAt) the account signs with `key`, is
/// hosted at `pds` (endpoint URL) and is called `handle` (without "at://").
struct IdentitySpan {
    std::int64_t from_us = 0;
    crypto::PrivateKey key;
    std::string pds, handle;
};

/// An account whose DID, keys, PDS and handle come from a PLC directory (sim::PlcDirectory::
/// identities()): `spans` in time order along the canonical op chain (nullified ops left out,
/// as a mirror leaves them out), the first at the genesis; `end_us` the tombstone's createdAt
/// (INT64_MAX while the DID lives).
struct Identity {
    std::string did;
    std::vector<IdentitySpan> spans;
    std::int64_t end_us = INT64_MAX;
};

struct Options {
    std::size_t accounts = 1000;
    std::uint64_t seed = 1;
    double zipf_s = 1.1;             ///< activity exponent over accounts
    double p256_share = 0.1;         ///< share of accounts with P-256 keys (the rest k256)
    double repo_median = 200;        ///< initial records per repository: log-normal median
    double repo_sigma = 1.2;         ///< … and σ of its logarithm
    std::size_t repo_cap = 20000;    ///< … and its maximum
    /// Bytes. 0: every repository, once created, stays in memory whole (initial records drawn
    /// from the shared random stream). > 0: repositories are regenerable — initial records
    /// drawn from the account's own seed, only the MST nodes that operations can reach encoded
    /// (the rest are pseudo-CID stubs), the simulation's changes kept as a log (48 bytes per
    /// op) — and the least recently used are evicted when their approximate heap bytes exceed
    /// this budget, then rebuilt (and checked against the root they had) when next used. The
    /// bytes generated then depend on the budget too (a rebuild reorders the key list that
    /// deletes pick from). Deletes pick only records the simulation created.
    std::uint64_t repo_budget_bytes = 0;
    /// Records with the entropy of real ones: likes, reposts and follows mostly point at the
    /// whole network (random DIDs, TIDs, CIDs) rather than at simulated accounts, posts draw
    /// words from a large Zipf-distributed vocabulary, with replies, images and language tags.
    /// `corpus_repos` is then not used.
    bool entropic_records = false;
    double events_per_second = 500;  ///< simulated arrival rate (exponential gaps)
    std::int64_t start_us = 1783173600000000;  ///< 2026-07-04T14:00:00Z
    std::int64_t seq_start = 1;
    std::string corpus_repos;        ///< directory of *.car to sample record content from ("" = built-in)
    /// Non-null and non-empty: the accounts are these (`accounts` and `p256_share` are then
    /// not used). Each message is about an account that lives at its `time`: born (first span
    /// started) and not tombstoned within the next second; the Zipf draw is repeated (16 times
    /// at most, then a uniform draw among the living) for an account that does not; a time at
    /// which none lives jumps to the next genesis. Commits and #sync are signed with the key of
    /// the span holding `time` (so a mirror's key at `recv` verifies them: recv − time < 1 s,
    /// inside the 5-minute grace), #identity carries that span's handle. Not with replay.
    std::shared_ptr<const std::vector<Identity>> identities;
    /// Non-empty (and without `identities`): the PDS endpoint URL of account i (its DID
    /// document's #atproto_pds), instead of "https://pds<i mod 8>.mesh-sim.test".
    std::function<std::string(std::size_t account)> pds_of_account;
};

struct Stats {
    std::uint64_t commits = 0, syncs = 0, identities = 0, accounts_events = 0;
    std::uint64_t ops = 0, creates = 0, updates = 0, deletes = 0;
    std::uint64_t proof_blocks = 0, corpus_records = 0;
    std::uint64_t rebuilds = 0, evictions = 0;  ///< regenerable repositories built / evicted
    std::uint64_t ops_replaced = 0;             ///< ops that needed a never-encoded subtree (dropped)
    std::uint64_t peak_repo_bytes = 0;          ///< largest budget count seen before an eviction
};

/// Named presets ("default", "realistic"; man/mesh-sim.1.md, PROFILES). Unknown names give
/// bad_argument. Options not named by a preset keep their defaults.
Result<Options> profile(std::string_view name);

class Generator {
public:
    explicit Generator(const Options& o);
    ~Generator();
    Generator(const Generator&) = delete;
    Generator& operator=(const Generator&) = delete;

    /// Produces the next message: `wire` (header + payload), `recv` µs (simulated receive
    /// time). Errors only on internal inconsistency (reported with `error_detail()`).
    Errc next(std::vector<std::uint8_t>& wire, std::int64_t& recv);

    /// Replay mode: the records of a real repository CAR become a history of commits in
    /// rkey (TID) order, one record per commit, from an empty tree, signed by a generated
    /// key for the repository's DID; the last commit's `data` equals the CAR's. Returns
    /// the number of commits queued (then drained by next()); errors name the problem.
    Result<std::size_t> load_replay(const std::string& car_path, std::string& err);

    /// The PDS endpoint URL of the account of the last message next() produced ("" before
    /// the first): with Options::identities, the endpoint of the span holding its `time`.
    const std::string& last_pds() const noexcept;
    /// The `time` of the last message next() produced, µs since the epoch (the simulated
    /// clock: Options::start_us plus exponential gaps at Options::events_per_second).
    std::int64_t last_time_us() const noexcept;

    /// The number of accounts and the DID of account i (i < account_count(), else
    /// std::out_of_range). Accounts are not kept in memory: the DID is derived from the seed
    /// (about 2 µs; Options::pds_of_account is asked when account i acts or is documented).
    /// account_did() reads nothing that next() changes: it may be called from another thread.
    std::size_t account_count() const noexcept;
    std::string account_did(std::size_t i) const;

    /// JSON object DID → DID document for every account (cbor-verify --did-docs). Derives each
    /// account's public key (tens of µs each) and holds the whole object: for many accounts,
    /// write_did_docs().
    nlohmann::json did_docs() const;
    /// The DID document of account i (i < account_count()).
    nlohmann::json did_doc(std::size_t i) const;
    /// did_docs().dump(), byte for byte, handed to `out` in pieces of about 1 MiB, without the
    /// whole object in memory (a sort of account indexes by DID: 36 bytes per account). Stops
    /// at, and returns, the first error `out` returns.
    Errc write_did_docs(const std::function<Errc(std::string_view)>& out) const;
    const Stats& stats() const noexcept;
    const std::string& error_detail() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// The shape of a stream of firehose messages, to calibrate a profile against a real capture
/// (`mesh-sim stats`). Byte counts are of wire messages and of the blocks in #commit CAR
/// slices, split into the commit block, MST nodes (blocks that decode as MST nodes) and
/// records (the rest). Compression ratios are zstd level 3 over consecutive windows of
/// `window` messages, each category compressed on its own, so a capture of N messages and
/// simulated traffic are compared at the same granularity.
struct Shape {
    std::size_t window = 0;
    std::uint64_t messages = 0, commits = 0, wire_bytes = 0;
    std::uint64_t blocks = 0, nodes = 0, node_bytes = 0, records = 0, record_bytes = 0, commit_bytes = 0;
    std::uint64_t cid_bytes = 0;       ///< binary dag-cbor/raw sha2-256 CIDs found in the wire bytes (36 each)
    std::uint64_t repeated_dids = 0;   ///< messages whose DID already occurred earlier in its window
    std::uint64_t z_wire = 0, z_nodes = 0, z_records = 0, z_commits = 0;  ///< compressed sizes
};

/// Accumulates a Shape message by message (unparseable messages count only as wire bytes).
class ShapeMeter {
public:
    explicit ShapeMeter(std::size_t window = 150);
    ~ShapeMeter();
    ShapeMeter(const ShapeMeter&) = delete;
    ShapeMeter& operator=(const ShapeMeter&) = delete;
    void add(ByteView wire);
    /// Closes the last (partial) window and returns the totals.
    const Shape& finish();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Shape as text: one "name value" line per figure (means per commit, shares, ratios).
std::string describe(const Shape& s);

}  // namespace sov::sim
