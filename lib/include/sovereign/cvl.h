// sovereign/cvl.h — the CVL archive (DESIGN.md §4; every byte in docs/format-cvl.md):
// segments of messages clustered by DID, zstd with the archive's own dictionaries, a 28-byte
// index record per message, BLAKE3 Merkle roots chained across segments, a journal for
// durability, tombstones, compaction.
#pragma once

#include "sovereign/errc.h"
#include "sovereign/frame_stream.h"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace sov::cvl {

using Hash = std::array<std::uint8_t, 32>;

/// FxHash64 of a byte string (docs/format-cvl.md §8).
std::uint64_t fxhash64(ByteView b) noexcept;
/// FxHash64 with 0 mapped to 1, so that 0 means "none" (path and DID hashes in the index).
inline std::uint64_t tag_hash(ByteView b) noexcept {
    std::uint64_t h = fxhash64(b);
    return h ? h : 1;
}

// --- Merkle tree (RFC 6962 shape, BLAKE3; docs/format-cvl.md §9) --------------------------

/// BLAKE3(0x00 ‖ envelope).
Hash leaf_hash(ByteView envelope);
/// BLAKE3(0x01 ‖ left ‖ right).
Hash node_hash(const Hash& left, const Hash& right);
/// Root over `leaves` (≥ 1).
Hash merkle_root(std::span<const Hash> leaves);
/// Audit path of leaf `index` (siblings from the leaf upwards, RFC 6962 §2.1.1).
std::vector<Hash> audit_path(std::span<const Hash> leaves, std::size_t index);
/// The root implied by a leaf, its index, the tree size and its audit path; nullopt if the
/// path has the wrong length for (index, size).
std::optional<Hash> root_from_path(const Hash& leaf, std::size_t index, std::size_t size, std::span<const Hash> path);

std::string to_hex(ByteView b);
/// Parses 64 hex digits; false if malformed.
bool from_hex(std::string_view s, Hash& out);

// --- Writing (cvl-pack) ---------------------------------------------------------------------

struct Params {
    unsigned shards = 16;
    int level = 3;
    std::uint32_t segment_messages = 65536;
    std::uint64_t segment_bytes = 64ull << 20;
    std::uint32_t cluster_bytes = 256u << 10;  ///< 256 KiB: random reads ~140 µs; 4 MiB is ~5% smaller but ~640 µs
    unsigned retrain_every = 8;
    std::uint32_t dict_bytes = 112640;
};

struct PackStats {
    std::uint64_t messages = 0, bytes_in = 0;   ///< envelopes appended, their bytes
    std::uint64_t segments_sealed = 0, bytes_out = 0, dictionaries = 0;
    std::uint64_t recovered = 0;                 ///< frames recovered from the journal at open
};

/// Appends frames to an archive. Not thread-safe (one writer per archive; a lock file
/// enforces it); compression inside a seal runs on `threads` threads.
class Writer {
public:
    /// Opens or creates the archive at `dir` (creating with `params`; an existing archive
    /// keeps its own), takes the writer lock and recovers the journal. Errors: io_error,
    /// bad_argument (not an archive, unsupported version, locked by another writer), with `err`.
    static std::unique_ptr<Writer> open(const std::string& dir, const Params& params, unsigned threads, std::string& err);
    ~Writer();

    /// Appends envelopes (records' map bytes): journaled at once, sealed into segments as
    /// they fill. Errors: io_error with `err`.
    Errc append(std::span<const ByteView> envelopes, std::string& err);
    /// fsync()s the journal (power-loss durability of everything appended so far).
    Errc sync_journal(std::string& err);
    /// Seals the pending messages (if any) into a segment: end of input.
    Errc seal(std::string& err);
    std::uint64_t next_ordinal() const noexcept;
    const PackStats& stats() const noexcept;

    struct Impl;

private:
    explicit Writer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// Rewrites every segment with tombstoned, not yet purged messages without their content,
/// keeping leaf hashes (docs/format-cvl.md §10). `purged` gets the count. Takes the writer lock.
Errc compact(const std::string& dir, unsigned threads, std::uint64_t& purged, std::string& err);

// --- Reading (cvl-cat, tomb-set, cvl-serve) ---------------------------------------------------

struct SegmentInfo {
    std::uint64_t number = 0, first = 0;
    std::uint32_t count = 0, clusters = 0, groups = 0, purged = 0, dict_id = 0, generation = 0;
    std::int64_t recv_min = 0, recv_max = 0;
    std::uint64_t raw_bytes = 0, stored_bytes = 0;
    Hash root{}, prev_root{};
    std::string path;
};

struct Proof {
    std::uint64_t ordinal = 0, segment = 0;
    std::size_t index = 0, size = 0;
    Hash leaf{}, root{}, prev_root{};
    std::vector<Hash> path;
    std::string to_json() const;
    /// Parses to_json() output. Errors: json_parse / json_bad_data_model.
    static Errc from_json(std::string_view text, Proof& out);
    /// True if the path folds the leaf into `root`.
    bool verify() const;
};

/// A read-only view of an archive. Thread-compatible (one per thread).
class Archive {
public:
    /// Opens `dir`: reads cvl.json and every sealed segment index (mapped). A corrupt
    /// segment is recorded in problems() and skipped; others stay readable. Errors (whole
    /// archive unusable): io_error, bad_argument with `err`.
    static std::unique_ptr<Archive> open(const std::string& dir, std::string& err);
    ~Archive();

    const std::vector<SegmentInfo>& segments() const noexcept;
    /// "<file>:<offset>: <reason>" for each segment skipped at open.
    const std::vector<std::string>& problems() const noexcept;
    /// Number of segment index files found (readable or not).
    std::size_t segment_files() const noexcept;
    /// One past the last readable ordinal (0 if empty).
    std::uint64_t end_ordinal() const noexcept;

    /// The envelope of ordinal `ord` (one index read, one cluster decompression; the last
    /// clusters are cached). Errors: bad_argument (no such ordinal, or purged), io_error or
    /// a corruption error with `err` naming file and offset.
    Errc read(std::uint64_t ord, std::vector<std::uint8_t>& envelope, std::string& err);
    /// Calls f(ordinal, envelope) for every stored (not purged) message of segment `seg`
    /// in ordinal order, decompressing each cluster once. Stops early if f returns false.
    Errc scan_segment(std::size_t seg, const std::function<bool(std::uint64_t, ByteView)>& f, std::string& err);
    /// Ordinals in the clusters holding `did`'s messages (by DID hash; a shared cluster also
    /// holds other DIDs, so callers confirm by decoding).
    std::vector<std::uint64_t> ordinals_of_did(std::size_t seg, std::string_view did) const;
    /// Ordinals of a segment with an op whose path hashes like `path` (callers confirm).
    std::vector<std::uint64_t> ordinals_with_path(std::size_t seg, std::string_view path) const;
    /// Full check of one segment: index checksum, every cluster decompressed, every record in
    /// bounds, leaf hashes → root, chain link to the previous segment.
    Errc check_segment(std::size_t seg, std::string& err);
    /// Inclusion proof of `ord`. Errors as read().
    Errc proof(std::uint64_t ord, Proof& out, std::string& err);
    /// Segment index of `ord`, or nullopt.
    std::optional<std::size_t> segment_of(std::uint64_t ord) const noexcept;

    /// Tombstone bit of `ord` (acquire load on the shared map; false if none set yet).
    bool deleted(std::uint64_t ord) const noexcept;
    /// The archive directory.
    const std::string& dir() const noexcept;

    struct Impl;
    /// compact() reaches the index internals through this.
    static Errc compact_impl(const std::string& dir, unsigned threads, std::uint64_t& purged, std::string& err);

private:
    explicit Archive(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sov::cvl
