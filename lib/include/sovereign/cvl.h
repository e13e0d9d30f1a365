// sovereign/cvl.h — the CVL archive (every byte in docs/format-cvl.md): segments of
// messages clustered by DID, zstd with the archive's own dictionaries, a 28-byte index record
// per message, BLAKE3 Merkle roots chained across segments, a journal for durability,
// tombstones, compaction.
//
// Code: lib/cvl/ — index.cpp (the index codec), files.cpp (paths, cvl.json, lock),
// merkle.cpp (trees, proofs), segment_writer.cpp, journal.cpp, writer.cpp, reader.cpp,
// query.cpp (selection), compact.cpp.
//
// Errors: every call returns an Errc (sovereign/errc.h) and, on failure, a text naming the
// file and byte offset in `err`. Archive damage is one of the cvl_* codes (exit status 1);
// a missing archive is io_not_found, a directory without cvl.json cvl_not_archive, a held
// writer lock cvl_locked (exit status 2).
#pragma once

#include "sovereign/errc.h"
#include "sovereign/frame_stream.h"

#include <array>
#include <cstdint>
#include <functional>
#include <map>
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
    /// Largest cluster, bytes of envelopes. 64 KiB: on realistic traffic a random read costs
    /// less than half of 256 KiB's CPU (47.5 against 125.5 µs) for under 1% more stored bytes (docs/PERFORMANCE.md); on
    /// traffic that repeats a few DIDs heavily, larger clusters compress up to ~20% better.
    std::uint32_t cluster_bytes = 64u << 10;
    unsigned retrain_every = 8;
    std::uint32_t dict_bytes = 112640;
};

struct PackStats {
    std::uint64_t messages = 0, bytes_in = 0;   ///< envelopes appended, their bytes
    std::uint64_t segments_sealed = 0, bytes_out = 0, dictionaries = 0;
    std::uint64_t recovered = 0;                 ///< frames recovered from the journal at open
};

/// Appends frames to an archive. Not thread-safe (one writer per archive; an flock on the
/// archive directory enforces it); compression inside a seal runs on `threads` threads.
class Writer {
public:
    /// Opens or creates the archive at `dir` (creating with `params`; an existing archive
    /// keeps its own), takes the writer lock and recovers the journal. nullptr on failure,
    /// with `err` and, if given, `*code`: io_* (cannot create or read), cvl_not_empty (a
    /// non-empty directory that is not an archive), cvl_locked, cvl_bad_config,
    /// cvl_bad_version, cvl_chain (a segment index is missing: appending would reuse its
    /// ordinals), or an index / dictionary damage code of the last segment. Damage found in
    /// the journal does not fail the open: see recovery_problems().
    static std::unique_ptr<Writer> open(const std::string& dir, const Params& params, unsigned threads, std::string& err,
                                        Errc* code = nullptr);
    ~Writer();

    /// Appends envelopes (records' map bytes): journaled at once, sealed into segments as
    /// they fill. Errors: io_* (io_error for a zstd failure) with `err`.
    Errc append(std::span<const ByteView> envelopes, std::string& err);
    /// fsync()s the journal (power-loss durability of everything appended so far).
    Errc sync_journal(std::string& err);
    /// Seals the pending messages (if any) into a segment: end of input.
    Errc seal(std::string& err);
    std::uint64_t next_ordinal() const noexcept;
    const PackStats& stats() const noexcept;
    /// What journal recovery at open() could not read (one diagnostic per damaged stretch,
    /// naming the journal file and byte offset, and where the damaged journal was kept);
    /// empty after a clean recovery. Such an archive is usable; the caller reports the lines
    /// and fails (cvl_journal).
    const std::vector<std::string>& recovery_problems() const noexcept;

    struct Impl;

private:
    explicit Writer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// Rewrites every segment with tombstoned, not yet purged messages without their content,
/// keeping leaf hashes (docs/format-cvl.md §10). `purged` gets the count. Takes the writer
/// lock. Errors: as Archive::open, cvl_locked, io_*, and the damage codes of a segment read.
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
    /// segment_anchor() of the segment this proof claims (first ordinal = ordinal − index);
    /// nullopt if index > ordinal. A proof that verify()s and whose anchor() is a published
    /// anchor binds ordinal, index, size and leaf.
    std::optional<Hash> anchor() const;
};

/// Where a problem of problems() lies: the segment's ordinal range when its index header
/// says it (`range_known`), and whether the whole segment is unreadable (a damaged index) or
/// only some of its clusters (a data file or the dictionary missing: the other clusters are
/// served, each unreadable one reported when read).
struct ProblemInfo {
    std::uint64_t first = 0, count = 0;
    bool range_known = false;
    bool unreadable = true;
};

/// Reports clusters that cannot be read during a tolerant scan: the error (a damage code or
/// io_*), its text ("<file>:<offset>: <reason>") and the ordinals it holds, ascending.
using DamageFn = std::function<void(Errc, const std::string&, const std::vector<std::uint64_t>&)>;

/// "5-7, 12, 40-41": ascending ordinals as ranges.
std::string ordinal_ranges(const std::vector<std::uint64_t>& ordinals);

/// The value to publish for a segment, which a proof is checked against without the archive:
/// BLAKE3(0x02 ‖ segment u64 ‖ first ordinal u64 ‖ message count u64 ‖ Merkle root), all
/// little-endian (docs/format-cvl.md §9). Unlike the bare Merkle root it binds the tree size
/// and the ordinals, so no proof can claim another size or ordinal under it.
Hash segment_anchor(std::uint64_t segment, std::uint64_t first, std::uint64_t count, const Hash& root);

/// A read-only view of an archive. Thread-compatible (one per thread).
///
/// Readers follow compaction: a segment's data files are opened on first use and stay open;
/// if they are gone (a compaction switched the index to a new generation and deleted them),
/// the index is read again and the read retried on the new generation, which holds the same
/// messages but for the purged ones (docs/format-cvl.md §10).
///
/// Index files are memory-mapped and checked lazily: point reads (read, view, proof,
/// segment_at, check_proof, end_ordinal) check only the index of the segment they need
/// (found through the index headers), so their cost does not grow with the archive. The
/// calls over every segment (segments(), problems(), segment_of and the calls taking a
/// segment position) load and check every index once, with the chain checks.
class Archive {
public:
    /// Opens `dir`: reads cvl.json, lists the segment indexes (none is read yet) and opens
    /// the tombstone set. nullptr on failure with `err` and, if given, `*code`:
    /// io_not_found (no such directory), cvl_not_archive (no cvl.json), io_*,
    /// cvl_bad_config, cvl_bad_version, tomb_* (a tombstone file that cannot be trusted:
    /// readers fail closed rather than show deleted messages).
    static std::unique_ptr<Archive> open(const std::string& dir, std::string& err, Errc* code = nullptr);
    ~Archive();

    /// Every readable segment, in order (loads and checks every index).
    const std::vector<SegmentInfo>& segments() const noexcept;
    /// "<file>:<offset>: <reason>" for each segment that cannot be read, or whose data files
    /// or dictionary are missing or short (loads every index).
    const std::vector<std::string>& problems() const noexcept;
    /// Where each of problems() lies, in the same order.
    const std::vector<ProblemInfo>& problem_infos() const noexcept;
    /// Number of segment index files found (readable or not).
    std::size_t segment_files() const noexcept;
    /// One past the last readable ordinal (0 if empty). Checks the last index only, unless
    /// it is damaged.
    std::uint64_t end_ordinal() const noexcept;

    /// The envelope of ordinal `ord`, copied. Errors: cvl_no_ordinal, cvl_purged, io_* or a
    /// damage code (cvl_checksum, cvl_bad_cluster, cvl_missing_data, …) with `err` naming
    /// file and offset.
    Errc read(std::uint64_t ord, std::vector<std::uint8_t>& envelope, std::string& err);
    /// As read(), without the copy: `envelope` stays valid until the next call on this object.
    Errc view(std::uint64_t ord, ByteView& envelope, std::string& err);
    /// As view(), for reading in ordinal order: the first read of a cluster decompresses it
    /// whole (checksum verified), so the cluster's next ordinals are served from memory.
    Errc view_seq(std::uint64_t ord, ByteView& envelope, std::string& err);
    /// How many decompressed clusters point reads keep (default 16: random reads near each
    /// other hit); a reader going in order needs 1 or 2. Memory: up to n × the cluster size.
    void cache_clusters(std::size_t n) noexcept;
    /// Adds the segments sealed since open() (or the last follow()) by a writer still
    /// appending: index files numbered after the last one known, found by stat(2). Returns how
    /// many; end_ordinal() and the reads see them. Does not notice segments removed or a
    /// damaged index appearing in the middle (segments() after a follow() does).
    std::size_t follow();
    /// Calls f(ordinal, envelope) for every stored (not purged) message of segment position
    /// `seg` (< segments().size()) in ordinal order, decompressing each cluster once and
    /// verifying its checksum. Stops early if f returns false. Errors as read().
    Errc scan_segment(std::size_t seg, const std::function<bool(std::uint64_t, ByteView)>& f, std::string& err);
    /// As scan_segment(), serving every intact cluster: each cluster that cannot be read
    /// (corrupt, data file missing or short, dictionary missing) is reported through
    /// `on_damage` with the ordinals it holds, and skipped. Returns ok unless nothing of the
    /// segment could be attempted.
    Errc scan_segment(std::size_t seg, const std::function<bool(std::uint64_t, ByteView)>& f, const DamageFn& on_damage,
                      std::string& err);
    /// As the tolerant scan_segment(), for the segment holding ordinal `ord`, found through
    /// the index headers (a point read: no other index is loaded or checked). `first` gets the
    /// segment's first ordinal. Errors as read() (cvl_no_ordinal when no segment holds `ord`).
    Errc scan_segment_of(std::uint64_t ord, const std::function<bool(std::uint64_t, ByteView)>& f,
                         const DamageFn& on_damage, std::uint64_t& first, std::string& err);
    /// Ordinals in the clusters holding `did`'s messages (by DID hash; a shared cluster also
    /// holds other DIDs, so callers confirm by decoding).
    std::vector<std::uint64_t> ordinals_of_did(std::size_t seg, std::string_view did) const;
    /// Ordinals of a segment with an op whose path hashes like `path` (callers confirm).
    std::vector<std::uint64_t> ordinals_with_path(std::size_t seg, std::string_view path) const;
    /// Full check of one segment: every cluster decompressed and checksummed, every record in
    /// bounds, leaf hashes → root (cvl_root_mismatch), chain link to the previous segment
    /// (cvl_chain).
    Errc check_segment(std::size_t seg, std::string& err);
    /// Inclusion proof of `ord` (hashes every message of its segment). Errors as read().
    Errc proof(std::uint64_t ord, Proof& out, std::string& err);
    /// Checks `p` against this archive: the path folds the leaf into the root
    /// (proof_invalid), the root is the archive's root of the segment holding p.ordinal
    /// (proof_root_mismatch), and segment, index, size and leaf are that ordinal's
    /// (proof_unbound; also when the ordinal is not in the archive).
    Errc check_proof(const Proof& p, std::string& err);
    /// Description of the segment holding `ord` (a point read). Errors as read().
    Errc segment_at(std::uint64_t ord, SegmentInfo& out, std::string& err);
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

// --- Selection (cvl-cat's filters; shared by every reader of the archive) ---------------------

struct Selection {
    std::uint64_t from = 0, to = UINT64_MAX;          ///< ordinals [from, to)
    std::vector<std::uint64_t> ordinals;              ///< sorted, unique; empty = all
    std::int64_t since = INT64_MIN, until = INT64_MAX;///< recv µs [since, until)
    std::string did;                                  ///< only messages of this DID
    std::string collection;                           ///< only commits with an op in this NSID
    bool include_deleted = false;                     ///< also tombstoned messages
};

struct SelectStats {
    std::uint64_t emitted = 0;  ///< messages passed to f
    std::uint64_t hidden = 0;   ///< messages hidden by tombstones
};

/// Calls f(ordinal, envelope) for each selected message, in ordinal order, until f returns
/// false. An ordinal list alone is served by point reads (no other index is read); a DID
/// reads only its clusters. A cluster that cannot be read is reported through on_error
/// ("<file>:<offset>: <reason> (ordinals 5-7, 12 not served)", naming only the ordinals the
/// selection wanted; nothing when it wanted none of them) and skipped: every intact cluster is
/// still served. Segments whose index is unreadable are not visited here (see problems()).
/// Purged and absent ordinals are skipped silently. Returns the first error reported (ok if
/// none).
Errc select(Archive& ar, const Selection& sel, const std::function<bool(std::uint64_t, ByteView)>& f,
            const std::function<void(Errc, const std::string&)>& on_error, SelectStats& stats);

// --- Resuming a tap from the archive (docs/design.md §8) ----------------------------------------
/// The `seq` of a message: the wire's header is an `op: 1` frame of a type that carries a
/// seq (#commit, #identity, #account, #sync; the deprecated #handle, #migrate, #tombstone)
/// and its payload has an integer `seq`. nullopt otherwise (markers, #info, error frames,
/// wire bytes that are not a header + payload pair).
std::optional<std::int64_t> seq_of_wire(ByteView wire) noexcept;
struct LastSeq {
    std::int64_t seq = 0;           ///< the largest seq found
    std::uint64_t ordinal = 0;      ///< the ordinal of the message holding it
    bool in_journal = false;        ///< found among the unsealed frames of the journal
    std::vector<std::string> journal_damage;  ///< "<journal>:<offset>: <reason>" for records not read
};
/// `cvl-cat DIR --last-seq SRC`: the largest seq (seq_of_wire) of a message, not a marker,
/// whose envelope has `src` = SRC, in the newest part of the archive holding one: the
/// journal's frames first (what `cvl-pack` has read but not sealed; they are part of the
/// archive once it restarts), then the sealed segments from the newest backwards, stopping at
/// the first that holds such a message; so usually only the journal and the last segment are
/// read. Tombstoned messages count (they were received); purged ones cannot (their content is
/// gone). Damaged journal records are skipped and listed in `journal_damage` (journal
/// recovery drops them too). Errors: cvl_no_src (no such message, `err` naming SRC), the
/// errors of Archive::open, io_* reading the journal, and the damage codes of a segment that
/// must be read (its answer could be missing: never a guess).
Errc last_seq(const std::string& dir, std::string_view src, LastSeq& out, std::string& err);
/// `cvl-cat DIR --last-seqs`: last_seq for every `src` of the archive at once, by src (the
/// same rules per src: its largest seq in the newest part holding one of its messages; a src
/// with markers only has no entry). Unlike last_seq it reads the whole archive (the journal and
/// every segment, newest first: any src may have its last message in the oldest segment).
/// `journal_damage` as LastSeq's. Errors: those of last_seq but cvl_no_src (an archive with
/// no message gives an empty map).
Errc last_seqs(const std::string& dir, std::map<std::string, LastSeq, std::less<>>& out,
               std::vector<std::string>& journal_damage, std::string& err);

}  // namespace sov::cvl
