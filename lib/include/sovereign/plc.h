// sovereign/plc.h — PLC directory operations: parsing, encoding, signatures, per-DID logs.
//
// Implements docs/protocol.md §7 (PLC directory) with the keys and signatures of §5, for the
// mirror of docs/design.md §9: every op is validated before its DID's state changes.
//  - parse_export_line / parse_audit_log: the JSON of `/export` lines (sequenced and legacy
//    forms) and of `/:did/log/audit` arrays, parsed with simdjson. Field sets are strict:
//    unknown, duplicate or mistyped fields are plc_malformed, named with their byte offset.
//  - encode / op_cid / did_of_genesis / verify_signature: the op's DAG-CBOR (canonical key
//    order, through cbor::Writer), its CID, the genesis → did:plc derivation, and ECDSA
//    verification by a rotation key (strict base64url, 64-byte r‖s, low-S; by public-key
//    recovery, so the cost does not grow with the number of keys tried).
//  - Log: the state machine of one DID; apply() takes its ops in createdAt order and checks
//    CID, prev chain, signer, nullification, tombstones and limits.
// Nothing here throws across the API; errors are an Errc plus a Problem (offset + reason).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sovereign/crypto.h"
#include "sovereign/errc.h"

namespace sov::plc {

/// Op kinds (§7 "Operation types"); `create` is the legacy genesis form.
enum class OpType : std::uint8_t { operation = 1, tombstone = 2, legacy_create = 3 };

/// "plc_operation", "plc_tombstone" or "create" (the JSON `type`).
std::string_view to_string(OpType t) noexcept;

/// One entry of a plc_operation's `services` map.
struct Service {
    std::string id;        ///< map key, e.g. "atproto_pds"
    std::string type;      ///< e.g. "AtprotoPersonalDataServer"
    std::string endpoint;  ///< URL
};

/// A signed PLC op as it appears in JSON. Which fields are meaningful depends on `type`:
///  - operation: rotation_keys, verification_methods, also_known_as, services, prev, sig;
///  - tombstone: prev (never null), sig;
///  - legacy_create: signing_key, recovery_key, handle, service, prev (always null), sig.
/// Maps keep the JSON's order (encode() sorts them); strings are unescaped UTF-8.
struct Operation {
    OpType type = OpType::operation;
    std::vector<std::string> rotation_keys;  ///< did:key strings, highest priority first
    std::vector<std::pair<std::string, std::string>> verification_methods;  ///< id → did:key
    std::vector<std::string> also_known_as;  ///< URIs, e.g. "at://alice.example"
    std::vector<Service> services;
    std::optional<std::string> prev;  ///< op CID text ("bafyrei…"), nullopt for JSON null
    std::string sig;                  ///< base64url text, as given (decoded by verify_signature)
    std::string signing_key, recovery_key, handle, service;  ///< legacy_create only
};

/// The plc_operation a legacy `create` stands for (§7): rotation_keys = [recoveryKey,
/// signingKey], verification_methods = {atproto: signingKey}, also_known_as = ["at://" +
/// handle], services = {atproto_pds: {AtprotoPersonalDataServer, service with "https://"
/// prepended when it has no scheme}}; prev and sig kept. Other types are returned unchanged.
Operation normalise(const Operation& op);

/// The DAG-CBOR of `op` (docs/protocol.md §2, keys in canonical order): with `sig` when
/// `with_sig` (the bytes the CID and the DID hash), without the key when not (the signed bytes).
/// `prev` is a text string or null, never a tag-42 link.
std::vector<std::uint8_t> encode(const Operation& op, bool with_sig);

/// The op CID as text: CIDv1(dag-cbor 0x71, sha2-256(encode(op, true))), "bafyrei…" (§7).
std::string op_cid(const Operation& op);

/// The did:plc of a genesis op: "did:plc:" + the first 24 chars of base32lower(sha256(
/// encode(op, true))) (§7 "Identifiers"; a legacy create is hashed in its legacy form).
std::string did_of_genesis(const Operation& op);

/// Field limits (§7 "Limits"). The op size defaults to the spec's 7500 bytes of signed
/// DAG-CBOR; the reference server enforces 4000 on new ops (set max_op_bytes to match it).
struct Limits {
    std::size_t max_op_bytes = 7500;
    std::size_t max_also_known_as = 10, max_aka_chars = 258;
    std::size_t max_rotation_keys = 10;
    std::size_t max_services = 10, max_service_id = 32, max_service_type = 256, max_service_endpoint = 512;
    std::size_t max_verification_methods = 10, max_vm_id = 32, max_vm_key = 256;
};

/// Where and why something was rejected: `offset` is a byte offset into the parsed text
/// (parse functions) or 0 (validation), `reason` names the field or rule, e.g.
/// "operation.rotationKeys[2]: not a string".
struct Problem {
    std::size_t offset = 0;
    std::string reason;
};

/// Checks `op` against `limits` (on its normalised form; size on encode(op, true)) and that
/// every rotation key is a k256 or p256 did:key. ok, plc_limit, or the key_bad_* of
/// crypto::parse_did_key; `why` names the field.
Errc check_limits(const Operation& op, const Limits& limits, Problem& why);

/// Verifies `op.sig` over sha256(encode(op, false)) against `keys` (did:key strings, in
/// priority order). Returns ok and sets `signer` to the index of the first key that verifies
/// (found with at most one crypto::recover per curve, then comparing points); else
/// base_bad_char / base_bad_padding / truncated (sig not strict unpadded base64url: §7
/// "Signature"), sig_bad_length (not 64 bytes, e.g. DER), sig_high_s (s > n/2), sig_invalid
/// (no key verifies; unparseable keys are skipped).
Errc verify_signature(const Operation& op, const std::vector<std::string>& keys, std::size_t& signer);

/// True when `sig` (base64url text) decodes to a strict DER ECDSA signature (SEQUENCE of two
/// INTEGERs, nothing after): the encoding §7 forbids. Used to name the reason of a signature
/// that does not verify; a DER signature can be 64 bytes long, so its length does not tell.
bool is_der_signature(std::string_view sig);

/// One line of `GET /export` or one entry of an audit log (§7 "`GET /export`").
struct ExportLine {
    enum class Form : std::uint8_t {
        sequenced,  ///< {type:"sequenced_op", did, operation, cid, createdAt, seq}
        legacy,     ///< {did, operation, cid, nullified, createdAt} (also the audit-log entry)
    };
    Form form = Form::legacy;
    std::string did;
    Operation op;
    std::string cid;              ///< as given; Log::apply checks it against op_cid(op)
    std::string created_at;       ///< as given, e.g. "2024-12-25T11:43:00.507Z"
    std::int64_t created_at_us = 0;  ///< µs since the Unix epoch
    std::uint64_t seq = 0;        ///< sequenced form only
    bool nullified = false;       ///< legacy form only: the server's flag (not trusted by Log)
};

/// Parses one export line (no trailing newline; surrounding JSON whitespace allowed). The
/// form is chosen by the presence of `type`. ok; json_parse (not JSON: the offset where the
/// error was detected, at or just past the offending token), trailing_bytes (after the object),
/// plc_malformed (a missing, unknown, duplicate or mistyped field, an unknown op type, a
/// tombstone without prev, a createdAt that is not an RFC 3339 datetime: offset of the value
/// or of the object, and the field's path in `why.reason`).
Errc parse_export_line(std::string_view line, ExportLine& out, Problem& why);

/// Parses a `/:did/log/audit` document: a JSON array of legacy-form entries, appended to
/// `out` in document order. Errors as parse_export_line, offsets into `json`; on error `out`
/// keeps the entries before the bad one.
Errc parse_audit_log(std::string_view json, std::vector<ExportLine>& out, Problem& why);

/// A signing key and the createdAt from which it is valid (docs/design.md §5 key history).
struct KeyEpoch {
    std::int64_t valid_from_us = 0;            ///< createdAt of the op that set it, µs
    std::string did_key;                      ///< verificationMethods.atproto; "" when none
    std::optional<crypto::PublicKey> key;     ///< parsed when it is a k256/p256 did:key
};

/// A DID's current state: the last op of its canonical (non-nullified) chain.
struct State {
    std::string did;
    bool tombstoned = false;
    std::vector<std::string> rotation_keys;  ///< did:key, priority order (empty when tombstoned)
    std::string signing_key;                 ///< verificationMethods.atproto did:key, or ""
    std::optional<crypto::PublicKey> signing_public_key;  ///< it, parsed (k256/p256 only)
    std::string pds;     ///< services.atproto_pds endpoint when its type is AtprotoPersonalDataServer
    std::string handle;  ///< the first alsoKnownAs "at://" entry without the prefix, or ""
    std::vector<KeyEpoch> key_history;  ///< canonical chain; a new epoch when the key changes,
                                        ///< including to none (tombstone); oldest first
};

/// One accepted op of a Log.
struct Entry {
    Operation op;
    std::string cid;
    std::string created_at;
    std::int64_t created_at_us = 0;
    bool nullified = false;
    std::size_t signer = 0;  ///< index, in the rotation keys of the op `prev` names (genesis:
                             ///< its own), of the first key that verified it
};

/// The validation state machine of one DID's log (§7 "Signature", "Nullification";
/// docs/design.md §9). Feed its ops in createdAt order; a rejected op leaves the log as it was.
class Log {
public:
    explicit Log(std::string did, Limits limits = {}) : did_(std::move(did)), limits_(limits) {}

    /// Validates and appends one op. Checks, in order: the line's DID (plc_did_mismatch),
    /// limits and rotation keys (check_limits), the cid (plc_cid_mismatch), a repeated cid
    /// (plc_duplicate); genesis: prev null (plc_bad_prev), not a tombstone (plc_malformed),
    /// DID derivation (plc_did_mismatch), signed by its own rotation keys; later ops: prev
    /// present, not a legacy create, naming an op of the log (plc_bad_prev) that is neither
    /// nullified (plc_prev_nullified) nor a tombstone (plc_after_tombstone); createdAt strictly
    /// after the last op (plc_time_order); signed by a rotation key of prev's op (the errors of
    /// verify_signature; sig_invalid of a DER signature says so in `why`). When prev is not the head, the op nullifies every op after prev and
    /// must be signed by a key of strictly lower index than the first nullified op's signer
    /// (plc_nullify_key) at most 72 h after that op's createdAt, inclusive (plc_nullify_late).
    Errc apply(const ExportLine& line, Problem& why);

    const std::string& did() const noexcept { return did_; }
    /// Every accepted op, in the order applied, with its nullified flag.
    const std::vector<Entry>& entries() const noexcept { return entries_; }
    /// The state after the last canonical op (a default State with `did` when empty).
    State state() const;

private:
    std::string did_;
    Limits limits_;
    std::vector<Entry> entries_;
};

}  // namespace sov::plc
