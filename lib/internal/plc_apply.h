// internal/plc_apply.h — the PLC validation rules of plc::Log::apply over any history store.
//
// plc::Log keeps whole Operations; the mirror (plc_mirror.cpp) keeps a compact record per op
// (CID digest, createdAt, flags, signer, interned rotation keys). Both validate a new op with
// this one function so the rules live in one place. It decides only: the caller appends the
// op (with `v.signer`) and marks ops [v.nullify_from, size) nullified when it returns ok.
//
// History concept (index i < size(), in the order the ops were accepted):
//   std::size_t size() const;
//   bool cid_is(std::size_t i, const std::string& cid) const;   // op i's CID text == cid
//   std::string cid(std::size_t i) const;                       // for messages
//   bool nullified(std::size_t i) const;
//   bool tombstone(std::size_t i) const;
//   std::int64_t created_at_us(std::size_t i) const;
//   std::string created_at(std::size_t i) const;                // for messages
//   std::size_t signer(std::size_t i) const;
//   std::vector<std::string> rotation_keys(std::size_t i) const;  // of the normalised op
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sovereign/plc.h"

namespace sov::plc::detail {

inline constexpr std::int64_t kRecoveryWindowUs = std::int64_t{72} * 3600 * 1000000;

/// What apply_op decided for an accepted op.
struct Verdict {
    std::string cid;                           ///< op_cid(line.op)
    std::size_t signer = 0;                    ///< index of the rotation key that verified it
    std::size_t nullify_from = std::size_t(-1);///< first op it nullifies (all from there on), or -1
};

/// The checks of plc::Log::apply (see plc.h), in the same order, over `h` (the log of `did`).
template <class History>
Errc apply_op(const History& h, const std::string& did, const Limits& limits, const ExportLine& line, Problem& why,
              Verdict& v) {
    why = Problem{};
    v = Verdict{};
    auto reject = [&](Errc e, std::string reason) {
        if (e == Errc::sig_invalid && is_der_signature(line.op.sig)) reason += "; the sig is DER-encoded, not 64-byte r||s";
        why.reason = std::move(reason);
        return e;
    };
    const Operation& op = line.op;
    if (line.did != did) return reject(Errc::plc_did_mismatch, "line of " + line.did + " applied to the log of " + did);
    if (Errc e = check_limits(op, limits, why); e != Errc::ok) return e;
    v.cid = op_cid(op);
    const std::string& cid = v.cid;
    if (cid != line.cid) return reject(Errc::plc_cid_mismatch, "cid " + line.cid + " but the operation hashes to " + cid);
    const std::size_t n = h.size();
    for (std::size_t i = 0; i < n; ++i)
        if (h.cid_is(i, cid)) return reject(Errc::plc_duplicate, "operation " + cid + " is already in the log");

    if (n == 0) {  // genesis
        if (op.prev) return reject(Errc::plc_bad_prev, "genesis operation with prev " + *op.prev);
        if (op.type == OpType::tombstone) return reject(Errc::plc_malformed, "genesis operation is a plc_tombstone");
        const std::string derived = did_of_genesis(op);
        if (derived != did) return reject(Errc::plc_did_mismatch, "genesis operation hashes to " + derived + ", not " + did);
        if (Errc e = verify_signature(op, normalise(op).rotation_keys, v.signer); e != Errc::ok)
            return reject(e, "genesis sig: " + std::string(sov::to_string(e)) + " (by its own rotationKeys)");
        return Errc::ok;
    }

    if (!op.prev) return reject(Errc::plc_bad_prev, "prev is null after the genesis operation");
    if (op.type == OpType::legacy_create) return reject(Errc::plc_bad_prev, "a create operation after the genesis operation");
    std::size_t x = n;
    for (std::size_t i = 0; i < n; ++i)
        if (h.cid_is(i, *op.prev)) x = i;
    if (x == n) return reject(Errc::plc_bad_prev, "prev " + *op.prev + " is not an operation of the log");
    if (h.nullified(x)) return reject(Errc::plc_prev_nullified, "prev " + *op.prev + " was nullified");
    if (h.tombstone(x)) return reject(Errc::plc_after_tombstone, "prev " + *op.prev + " is a plc_tombstone");
    if (line.created_at_us <= h.created_at_us(n - 1))
        return reject(Errc::plc_time_order, "createdAt " + line.created_at + " not after " + h.created_at(n - 1));

    const std::vector<std::string> keys = h.rotation_keys(x);
    // The ops after x that are still canonical: the ones this op would nullify.
    std::size_t first = n;
    for (std::size_t i = x + 1; i < n; ++i)
        if (!h.nullified(i)) {
            first = i;
            break;
        }

    if (Errc e = verify_signature(op, keys, v.signer); e != Errc::ok)
        return reject(e, "sig: " + std::string(sov::to_string(e)) + " (by the rotationKeys of " + *op.prev + ")");
    if (first == n) return Errc::ok;  // x is the head: a plain update

    // Nullification (§7): a strictly higher-priority key, within 72 h of the first op it undoes.
    // With a duplicated key, the disputed signer's first index decides (as the reference does).
    const std::size_t disputed_signer = h.signer(first);
    std::size_t disputed_index = disputed_signer;
    for (std::size_t i = 0; i < disputed_signer && disputed_signer < keys.size(); ++i)
        if (keys[i] == keys[disputed_signer]) {
            disputed_index = i;
            break;
        }
    if (v.signer >= disputed_index)
        return reject(Errc::plc_nullify_key, "nullifies " + h.cid(first) + " (signed by rotationKeys[" +
                                                 std::to_string(disputed_index) + "]) with rotationKeys[" +
                                                 std::to_string(v.signer) + "], not a higher-priority key");
    if (line.created_at_us - h.created_at_us(first) > kRecoveryWindowUs)
        return reject(Errc::plc_nullify_late, "nullifies " + h.cid(first) + " of " + h.created_at(first) + " at " +
                                                  line.created_at + ", more than 72 h later");
    v.nullify_from = first;
    return Errc::ok;
}

}  // namespace sov::plc::detail
