// sovereign/sim_plc.h — a simulated PLC directory: deterministic accounts with real signed op
// histories, the export lines, DID documents and audit logs a directory serves for them, and the
// ground truth a mirror must reach (issue 9 item 4; model: man/mesh-sim.1.md "PLC").
//
// Every account is drawn from (seed, account index) alone, so a seed gives the same bytes on
// every run and platform: keys are derived from the seed and crypto::sign uses RFC 6979 nonces
// on both curves. An account's history:
//  - genesis, signed by its second rotation key (rotationKeys = [recovery k256, everyday k256
//    or p256]);
//  - updates signed by the everyday key: signing-key rotations, handle changes, PDS migrations
//    (new PDS and new signing key);
//  - nullifications: the recovery key (index 0) undoing the last update within 72 h (sometimes
//    exactly 72 h, the inclusive limit);
//  - tombstones (the last valid op of the account);
//  - for a share of accounts one invalid op, as the real directory serves them: a signature by a
//    key that is not a rotation key (sig_invalid), a high-S signature (sig_high_s), a DER
//    signature (sig_bad_length), an op after a tombstone (plc_after_tombstone), a nullification
//    more than 72 h late (plc_nullify_late), a line whose cid is not its op's (plc_cid_mismatch).
// Ops are listed in (createdAt, cid) order — the reference server's export order — with seq
// 1, 2, … in that order; every account's createdAts are distinct milliseconds.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/sim.h"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sov::sim {

struct PlcOptions {
    std::size_t accounts = 1000;
    std::uint64_t seed = 1;
    std::int64_t start_us = 1704067200000000;     ///< 2024-01-01T00:00:00Z: earliest genesis
    std::int64_t span_us = 30LL * 86400 * 1000000;  ///< geneses are spread over [start, start + span)
    double mean_gap_s = 3 * 86400;  ///< mean time between an account's updates (exponential, ≥ 1 ms)
    double p256_share = 0.2;        ///< accounts whose everyday rotation key and signing keys are p256
    double nullify_share = 0.05;    ///< accounts whose last update is undone by the recovery key
    double tombstone_share = 0.03;  ///< accounts ending with a tombstone
    double invalid_share = 0.05;    ///< accounts with one invalid op
    unsigned threads = 0;           ///< generator threads; 0 = hardware concurrency (output identical)
};

/// One op as the directory serves it.
struct PlcOp {
    std::string did;
    std::string cid;             ///< as served (for plc_cid_mismatch: not the op's own CID)
    std::string created_at;      ///< "YYYY-MM-DDTHH:MM:SS.mmmZ"
    std::int64_t created_at_us = 0;  ///< µs since the epoch, a whole millisecond
    std::uint64_t seq = 0;       ///< 1-based, in (createdAt, cid) order
    std::string operation;       ///< the op's JSON object, keys in PostgreSQL jsonb order (as served)
    bool nullified = false;      ///< undone by a later valid op (the legacy form's flag)
    Errc expected = Errc::ok;    ///< ok for a valid op, else the error plc::Log::apply must give
};

/// What a mirror must hold for one DID after every op: the state of plc::Log::state().
struct PlcAccountTruth {
    std::string did;
    bool tombstoned = false;
    std::vector<std::string> rotation_keys;  ///< did:key, priority order (empty when tombstoned)
    std::string signing_key;                 ///< did:key ("" when tombstoned)
    std::string pds;                         ///< endpoint URL ("" when tombstoned)
    std::string handle;                      ///< without "at://" ("" when tombstoned)
    /// (valid from µs, signing did:key or "" for none) along the canonical chain, oldest first.
    std::vector<std::pair<std::int64_t, std::string>> key_history;
    std::vector<std::size_t> ops;  ///< indexes into PlcDirectory::ops(), createdAt order
};

/// The simulated directory: ops in export order, accounts in index order (account i's DID is
/// accounts()[i].did), and the invalid ops by served CID.
class PlcDirectory {
public:
    /// Builds it (about the cost of 3 signatures per account, spread over `threads`).
    /// bad_argument when an option is out of range (accounts 0, shares outside [0, 1],
    /// span or gap not positive).
    static Result<PlcDirectory> generate(const PlcOptions& options);

    const std::vector<PlcOp>& ops() const noexcept { return ops_; }
    const std::vector<PlcAccountTruth>& accounts() const noexcept { return accounts_; }
    /// Served CID → expected error, for every invalid op.
    const std::unordered_map<std::string, Errc>& invalid() const noexcept { return invalid_; }
    /// The accounts with their private signing keys, in index order (identities()[i] is
    /// accounts()[i]): what `mesh-sim gen --plc-accounts` signs with (sim::Options::identities).
    /// Each span starts at a canonical op's createdAt; a span may repeat the previous key (a
    /// handle change). Shared, never null.
    const std::shared_ptr<const std::vector<Identity>>& identities() const noexcept { return identities_; }
    /// The account of `did`, or nullptr.
    const PlcAccountTruth* find(std::string_view did) const;

    /// `/export?after=<seq>` line of ops()[i] (reference field order: did, cid, seq, createdAt,
    /// operation, type), no newline.
    std::string sequenced_line(std::size_t i) const;
    /// `/export?after=<createdAt>` line (did, operation, cid, nullified, createdAt), no newline.
    std::string legacy_line(std::size_t i) const;
    /// `/<did>/log/audit`: a JSON array of the account's legacy-form entries, createdAt order.
    std::string audit_log(const PlcAccountTruth& a) const;
    /// `/<did>`: the DID document of a live account (the reference's formatDidDoc shape).
    std::string did_document(const PlcAccountTruth& a) const;
    /// One JSON line of ground truth for the account (plc-truth): did, tombstoned, rotationKeys,
    /// signingKey, pds, handle, keyHistory [{validFrom (createdAt text), key}], nullified [cid],
    /// invalid [{cid, error}] (the Errc name).
    std::string truth_line(const PlcAccountTruth& a) const;

private:
    std::vector<PlcOp> ops_;
    std::vector<PlcAccountTruth> accounts_;
    std::unordered_map<std::string, Errc> invalid_;
    std::unordered_map<std::string, std::size_t> by_did_;
    std::shared_ptr<const std::vector<Identity>> identities_;
};

}  // namespace sov::sim

namespace sov::sim {

/// Faults a simulated directory injects on request (mesh-sim serve --plc --fault-*).
struct PlcFaults {
    double max_rps = 0;         ///< > 0: 429 + Retry-After: 1 when the last second saw more requests
    double p_5xx = 0;           ///< probability of a 500 / 503 answer
    std::uint32_t slow_ms = 0;  ///< every answer delayed by this much
    double p_drop = 0;          ///< probability that a 200 answer's connection closes mid-body
    bool legacy_only = false;   ///< /export answers only the createdAt form (like @did-plc/server 0.0.1)
    std::uint64_t seed = 1;     ///< for the fault draws
};

/// One answer of the directory (the HTTP layer is the caller's).
struct PlcAnswer {
    int status = 200;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::uint32_t delay_ms = 0;
    std::optional<std::size_t> drop_after;  ///< close after this many body bytes
};

/// The directory's HTTP routes over a PlcDirectory (which must outlive it). Not thread-safe.
///  - GET /export?count=&after= : the reference server's rules (see sim_plc.cpp);
///  - GET /<did>, /<did>/log/audit, /_health; everything else 404; /export/stream 426.
class PlcService {
public:
    PlcService(const PlcDirectory& directory, PlcFaults faults);
    /// Answers `path` (decoded) with `params` (decoded, in order), at `now_us` (any monotonic
    /// clock; only the rate fault uses it).
    PlcAnswer answer(std::string_view path, const std::vector<std::pair<std::string, std::string>>& params,
                     std::int64_t now_us);

    /// `/export/stream?cursor=N` (WebSocket), after the reference's Outbox
    /// (packages/server/src/sequencer/outbox.ts): no cursor → live only (nothing: the simulated
    /// directory never changes); a cursor that parseInt rejects or below 0 → status 400
    /// "Invalid cursor parameter"; above the last seq → close "FutureCursor"; the next op older
    /// than 7 days before the directory's newest op (its "now") → close "OutdatedCursor"; else
    /// the ops with seq > N (sequenced lines, ops()[from, end)), then the stream stays open.
    struct Stream {
        int status = 101;     ///< 101 go ahead; 400 refused with `message`
        std::string message;
        std::size_t from = 0, end = 0;
        std::optional<std::string> close_reason;
    };
    Stream stream(const std::vector<std::pair<std::string, std::string>>& params) const;
    static constexpr std::int64_t kStreamCatchupUs = 7LL * 86400 * 1000000;  ///< reference default: 1 week

    struct Counters {
        std::uint64_t requests = 0, ok = 0, rate_limited = 0, server_errors = 0, dropped = 0, client_errors = 0;
    };
    const Counters& counters() const noexcept { return counters_; }

private:
    PlcAnswer do_export(const std::vector<std::pair<std::string, std::string>>& params);
    const PlcDirectory& d_;
    PlcFaults f_;
    std::vector<std::int64_t> window_;  // request times in the last second
    std::uint64_t rng_;
    Counters counters_;
};

}  // namespace sov::sim
