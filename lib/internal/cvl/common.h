// internal/cvl/common.h — what the archive's files share: paths, cvl.json, zstd handles,
// per-message metadata, the segment writer and the writer lock.
#pragma once

#include "internal/cvl/index.h"
#include "sovereign/cvl.h"

#include <zstd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sov::cvl::detail {

// --- paths (format §1) ---
std::string seg_name(std::uint64_t n);
std::string idx_path(const std::string& dir, std::uint64_t n);
std::string dat_path(const std::string& dir, unsigned shard, std::uint64_t n, std::uint32_t gen);
std::string shard_dir(const std::string& dir, unsigned shard);
std::string dict_path(const std::string& dir, std::uint32_t id);
std::string journal_name(std::uint64_t first);
/// Sealed segment numbers present in DIR/seg, ascending.
std::vector<std::uint64_t> list_segments(const std::string& dir);

/// Segment indexes that existed and are gone (format §1, "A missing index"): numbers
/// absent below the highest present one, and after the last index `last` (ending at
/// ordinal `sealed_end`; nullopt when there is none): a journal whose first ordinal is past
/// `sealed_end`, or data files of a segment past last + 1. One diagnostic per finding,
/// naming the missing index and the evidence. `numbers`: as list_segments.
struct MissingSegment {
    std::uint64_t number;  ///< the segment whose index is gone
    std::string text;      ///< "<index path>: missing …", naming the evidence
};
std::vector<MissingSegment> missing_segments(const std::string& dir, const std::vector<std::uint64_t>& numbers,
                                          std::optional<std::uint64_t> last, std::uint64_t sealed_end);

/// Deletes the data files no index references: a generation other than the one its segment's
/// index names (what a compaction killed between switching an index and deleting the old
/// data files leaves, possibly with purged messages: format §10), and stale *.dat.tmp. Only
/// segments with more than one generation on disk have their index header read, so the cost
/// is one listing of the shard directories. A segment whose index is damaged or missing keeps
/// its files. Only under the writer lock. `removed` counts the files deleted. Errors: io_* (a
/// file that exists but cannot be deleted: its content would survive).
Errc sweep_generations(const std::string& dir, unsigned shards, std::uint64_t& removed, std::string& err);

/// Removes the temporary files an interrupted writer or compaction left (`*.tmp` in seg/,
/// dict/, journal/ and the shard directories). Only under the writer lock.
void remove_stale_temps(const std::string& dir);

/// "<what>: <strerror(errno)>" and the matching I/O code.
Errc sys_error(const std::string& what, std::string& err);

// --- cvl.json (format §2) ---
inline constexpr int kArchiveVersion = 2;  ///< written by this code; 1 is read too
struct Config {
    Params params;
    int version = kArchiveVersion;
    /// Errors: cvl_not_archive (no cvl.json), io_* (unreadable), cvl_bad_config, cvl_bad_version.
    Errc load(const std::string& dir, std::string& err);
    /// Creates the directories and cvl.json of a new archive. Errors: io_*.
    static Errc create(const std::string& dir, const Params& p, std::string& err);
};

struct ZstdDeleter {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
    void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
    void operator()(ZSTD_CDict* c) const { ZSTD_freeCDict(c); }
    void operator()(ZSTD_DDict* c) const { ZSTD_freeDDict(c); }
};

// --- writer lock ---
/// Takes the archive's writer lock: an exclusive flock on the archive directory itself, so
/// no file in it can be removed to defeat it. Returns the descriptor (the lock lasts until
/// it is closed), or -1 with cvl_locked (another writer) or an io_* code in `code`.
int take_lock(const std::string& dir, Errc& code, std::string& err);

// --- segments (format §3, §4) ---
/// What a pending message carries besides its envelope.
struct Meta {
    std::string did;
    std::uint64_t path_hash = 0;
    std::vector<std::uint64_t> op_hashes;
    std::int64_t recv = 0;
};
Meta meta_of(ByteView envelope);

/// Everything needed to compress and write one segment (sealing and compaction).
struct SegmentBuild {
    std::uint64_t number = 0, first = 0;
    std::uint32_t generation = 0, dict_id = 0;
    int level = 3;
    unsigned shards = 16;
    std::vector<ByteView> envelopes;  // n; empty view for purged
    std::vector<Meta> metas;          // n
    std::vector<Hash> purged_leaves;  // n entries, used where purged[i]
    std::vector<bool> purged;         // n
    Hash prev_root{};
    const ZSTD_CDict* cdict = nullptr;
    std::uint32_t cluster_bytes = 256u << 10;
    unsigned threads = 1;
    /// Compressed-frame arenas, one per thread, reused from seal to seal (nullptr: local).
    std::vector<std::vector<std::uint8_t>>* arenas = nullptr;
};

/// Groups, compresses and writes a segment: data files then the index, each under a
/// temporary name, fsynced and renamed (the index last: the commit point). Errors: io_*,
/// io_error (zstd).
Errc write_segment(const std::string& dir, SegmentBuild& sb, Hash& root_out, std::uint64_t& stored, std::string& err);

/// Leaf hashes of many envelopes at once (BLAKE3's many-input path), out[i] = leaf_hash(in[i]).
void leaf_hashes(std::span<const ByteView> in, Hash* out);

}  // namespace sov::cvl::detail
