// sovereign/verify.h — message verification and the verdicts of docs/design.md §3.
// Source: docs/protocol.md §1 "Consumer checklist", §5 (commit, signature), §6 "Validating a
// #commit" steps 1–4 (sizes, CAR and block hashes, commit object, signature).
#pragma once

#include "sovereign/car.h"
#include "sovereign/crypto.h"
#include "sovereign/did_doc.h"
#include "sovereign/errc.h"
#include "sovereign/message.h"
#include "sovereign/mst.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sov::verify {

/// The stable verdict strings of docs/design.md §3, in that table's order. Numeric values are
/// stable too (they index per-verdict counters).
enum class Verdict : std::uint8_t {
    ok, ok_gap, skip, malformed, too_big, bad_car, bad_cid, bad_commit, no_key, bad_sig, bad_proof,
    stale_rev, future_rev, bad_seq, inactive, wrong_pds,
};
inline constexpr std::size_t kVerdictCount = 16;

/// "ok", "ok-gap", "skip", "malformed", "too-big", … exactly as written into `vrd`.
std::string_view to_string(Verdict v) noexcept;
/// Inverse of to_string; nullopt for an unknown string.
std::optional<Verdict> verdict_from_string(std::string_view s) noexcept;
/// True for ok, ok-gap and skip (frames that go on down the pipeline).
inline bool passes(Verdict v) noexcept { return v == Verdict::ok || v == Verdict::ok_gap || v == Verdict::skip; }

/// Where signing keys come from: a DID-documents file today (StoreKeys), the memory-mapped
/// DID cache next. A signature is checked against the key the DID's history says was valid
/// when the frame was received (its `recv`, the receiver's clock), never at the commit's
/// `rev`, which the signer chooses; so an archive can be re-verified after keys rotated. One
/// KeySource is shared by every thread of an Engine: signing_key() must be safe to call
/// concurrently.
class KeySource {
public:
    virtual ~KeySource() = default;
    /// The #atproto signing key `did` had at time `recv_us` (µs since the Unix epoch, UTC, on
    /// the receiver's clock: a frame's `recv`). recv_us ≤ 0 means the current key; a source
    /// without key history returns the current key for every time. Returned by value (curve +
    /// compressed point), never as a view into the source, so a shared-memory source can copy
    /// it out under its seqlock. nullopt when no key is known for the DID at that time:
    /// unknown DID, tombstoned, or no usable #atproto key (verdict no-key). The grace after a
    /// rotation (kRotationGraceUs) is the Verifier's: when a signature fails it asks again for
    /// recv_us − kRotationGraceUs.
    virtual std::optional<crypto::PublicKey> signing_key(std::string_view did, std::int64_t recv_us) const = 0;

    /// The frame source (`src`, docs/design.md §2: host, plus ":port" when not the scheme's
    /// default) of the DID's current PDS endpoint, for the wrong-pds check (Engine::check_pds);
    /// nullopt when the source does not know it (then nothing is checked). The default knows
    /// nothing: DID documents without history, test sources.
    virtual std::optional<std::string> pds_source(std::string_view /*did*/) const { return std::nullopt; }
};

/// The `src` label of a PDS endpoint URL: "https://Pds.Example.com/" → "pds.example.com",
/// "http://127.0.0.1:2583" → "127.0.0.1:2583" (host lowercased, a trailing dot dropped, the
/// port kept only when it is not the scheme's default, 443 for https, 80 for http). nullopt for
/// anything but an http(s) URL with a host.
std::optional<std::string> source_of_endpoint(std::string_view url);

/// A key replaced less than this long before a frame's `recv` still verifies the frame (a PDS
/// may sign just before its rotation reaches the directory): 5 minutes, in µs.
inline constexpr std::int64_t kRotationGraceUs = 5 * 60 * 1'000'000LL;

/// Keys from a KeyStore of DID documents (cbor-verify --did-docs): the document's current
/// #atproto key whatever the time (documents carry no history); nullopt for unknown DIDs and
/// documents without a usable key.
class StoreKeys final : public KeySource {
public:
    explicit StoreKeys(const KeyStore& store) noexcept : store_(store) {}
    std::optional<crypto::PublicKey> signing_key(std::string_view did, std::int64_t recv_us) const override;

private:
    const KeyStore& store_;
};

/// A per-thread cache of prepared keys (crypto::PreparedKey) keyed by curve + point, so a
/// key's point is decompressed (and, for p256, its OpenSSL context built) once per process
/// rather than per signature. Grows with the keys seen (≈ 150 bytes each) up to 65,536, then
/// starts over. Not thread-safe: one per Verifier.
class PreparedKeys {
public:
    PreparedKeys();
    ~PreparedKeys();
    /// The prepared form of `key`, or nullptr when its point does not parse (key_bad_point).
    /// Valid until the next call.
    crypto::PreparedKey* get(const crypto::PublicKey& key);

private:
    struct Hash {
        std::size_t operator()(const crypto::PublicKey& k) const noexcept;
    };
    std::unordered_map<crypto::PublicKey, crypto::PreparedKey, Hash> map_;
};

/// A verdict and a human-readable reason (empty for ok/skip), e.g. "commit.rev != rev".
struct Outcome {
    Verdict verdict = Verdict::ok;
    std::string detail;
};

/// Checks a commit block against its message and key (docs/protocol.md §5): strict DAG-CBOR
/// (validated here; any bytes are safe to pass), strict commit
/// object (did, version 3, data link blessed, rev TID, prev present and link-or-null, sig
/// bytes), did/rev agreement, signature over the unsigned commit (the block with its `sig`
/// entry removed, hashed without re-encoding). `did`/`rev` are the message's; `key` the DID's
/// signing key (nullopt: verdict no-key, as is a key whose point does not parse). Prepares
/// the key on every call; Verifier uses its PreparedKeys cache instead.
Outcome check_commit_block(ByteView block, std::string_view did, std::string_view rev,
                           const std::optional<crypto::PublicKey>& key);

/// The SHA-256 of the unsigned form of a validated commit block: the same map minus the
/// `sig` entry (count − 1 in the head). Returns false if there is no `sig` bytes entry.
/// `sig` receives the signature bytes (a view into `block`).
bool unsigned_commit_digest(ByteView block, std::array<std::uint8_t, 32>& digest, ByteView& sig);

/// What the stateful checks need from a message, extracted by the stateless pass (views
/// into the wire bytes: valid as long as they are).
struct Facts {
    msg::Type type = msg::Type::unknown;
    bool parsed = false;                    ///< the message parsed (verdict not malformed/too-big)
    std::int64_t seq = 0;                   ///< 0 = the type has no seq
    std::string_view did, rev;
    std::optional<std::string_view> since;  ///< #commit
    ByteView prev_data;                     ///< #commit, empty when absent
    ByteView data;                          ///< commit.data (MST root) when the commit was loaded
    ByteView commit;                        ///< the commit's CID (binary) when its signature checked
    bool active = true;                     ///< #account
};

/// Stateless verifier of wire messages (reusable; one per thread). Steady-state use
/// allocates nothing on the success path.
class Verifier {
public:
    /// `lenient`: commits without `prevData` (legacy, pre-Sync 1.1) pass without inversion
    /// instead of failing as bad-proof.
    explicit Verifier(const KeySource& keys, bool lenient = false) : keys_(keys), lenient_(lenient) {}
    /// Verifies one wire message. `recv` is the receive time in µs since the Unix epoch
    /// (0 = unknown): it picks the signing key (KeySource::signing_key).
    Outcome verify(ByteView wire, std::int64_t recv);
    /// Same, also filling `facts` for the stateful checks (verify_state.h).
    Outcome verify(ByteView wire, std::int64_t recv, Facts& facts);
    /// The message parsed by the last verify() (valid while `wire` is).
    const msg::Message& message() const noexcept { return msg_; }

private:
    Outcome verify_commit();
    Outcome verify_sync();
    Outcome check_commit(ByteView block);  // check_commit_block through keys_ at recv_ and keys_cache_
    Outcome check_proof();  // MST: ops against the tree and inversion to prevData
    // Parses the CAR slice, hash-checks every block, indexes them, requires roots[0] = the
    // commit CID when `commit` is given (else takes roots[0]), returns the commit block.
    Outcome load_car(ByteView car, ByteView commit, ByteView& commit_cid, ByteView& commit_block);
    const KeySource& keys_;
    PreparedKeys keys_cache_;
    std::int64_t recv_ = 0;
    bool lenient_ = false;
    ByteView data_;    // commit.data of the last loaded commit
    ByteView commit_;  // its CID, once the commit checked out
    mst::Inverter inverter_;
    std::string proof_detail_;
    msg::Message msg_;
    car::BlockMap blocks_;
};

}  // namespace sov::verify
