// sovereign/plc_mirror.h — the PLC mirror directory of plc-sync (docs/design.md §9): export
// chunks as served, the op store, the DID cache, rejected.jsonl and the cursor.
//
// Every byte of the directory is in docs/format-plc-mirror.md. In short:
//  - DIR/lock: an flock held by the one Mirror open on DIR (a second gets mirror_locked).
//  - DIR/export/NNNNNNNN.jsonl.zst: the export lines not already mirrored, byte-identical as
//    served, each '\n'-terminated; chunk k holds lines [k·ops_per_chunk, (k+1)·ops_per_chunk).
//    The open (last) chunk is one zstd frame per page; a full chunk is sealed as one frame.
//  - DIR/ops.bin: the op store, one checksummed record per accepted op (what validating a
//    later op and rebuilding the cache need), loaded at open by one linear scan.
//  - DIR/did.cache: the DID cache (sovereign/did_cache.h), rebuilt from the op store when it is
//    dirty or behind the cursor.
//  - DIR/rejected.jsonl: one JSON object per rejected line, with the line and the reason.
//  - DIR/cursor.json: the cursor and the committed length of every append-only file,
//    replaced atomically once per page: open() truncates each file back to that length, so a
//    kill -9 at any instant leaves the mirror at the previous page or this one.
// Nothing here throws across the API; errors are an Errc plus a message naming the file and
// the byte offset.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sovereign/did_cache.h"
#include "sovereign/errc.h"
#include "sovereign/plc.h"

namespace sov::plc {

/// How a Mirror validates and stores. `ops_per_chunk` is fixed when the mirror is created
/// (cursor.json keeps it; a different value given later is ignored, so chunk boundaries never
/// move). `rebuild_cache_ok`: open() may rebuild a dirty or stale did.cache from the op store
/// (false: it answers cache_dirty instead). `cache_slots`: initial slots of a new did.cache
/// (didcache::Writer::open; it grows by itself).
struct MirrorOptions {
    Limits limits{};
    std::uint64_t ops_per_chunk = 100000;
    bool rebuild_cache_ok = true;
    std::uint64_t cache_slots = 1 << 16;
};

/// Where the next page starts: seq (sequenced export) or createdAt + the op CIDs already
/// mirrored at that exact createdAt (legacy export, refetched boundary millisecond).
struct Cursor {
    std::uint64_t seq = 0;                    ///< highest seq mirrored (sequenced lines), 0 = none
    std::string created_at;                   ///< latest createdAt mirrored (legacy lines), as served
    std::vector<std::string> boundary_cids;   ///< CIDs of the lines mirrored at exactly created_at
    std::uint64_t lines = 0;                  ///< lines in the export chunks (duplicates excluded)
    std::int64_t created_at_us = 0;           ///< created_at in µs since the epoch (0 when empty)
    /// Where the input of the last committed page ended, as its caller named it (plc-sync
    /// --from-file: the dump's absolute path and the byte offset, in its decompressed text,
    /// after the page). Lets a restarted file import resume at the same page boundaries.
    std::string source;
    std::uint64_t source_offset = 0;
};

/// Counts of one ingest_page call (or of a whole mirror: Mirror::totals).
struct PageStats {
    std::uint64_t lines = 0, accepted = 0, rejected = 0, duplicates = 0;
};

/// Chunk file name of chunk `k` inside DIR/export: "%08u.jsonl.zst".
std::string chunk_name(std::uint64_t k);

class Mirror {
public:
    Mirror();
    ~Mirror();  ///< as close(), errors lost
    Mirror(Mirror&&) noexcept;
    Mirror& operator=(Mirror&&) noexcept;

    /// Opens DIR (created when absent, with DIR/export), takes DIR/lock (mirror_locked when
    /// another process holds it), truncates every append-only file to its committed length,
    /// removes files of an interrupted page, finishes an interrupted chunk seal, loads the op
    /// store (mirror_corrupt naming the file and offset of a damaged record) and opens the
    /// cache, rebuilding it when it is dirty or behind. io_* for I/O errors.
    static Errc open(const std::string& dir, Mirror& out, std::string& err, MirrorOptions = {});

    const Cursor& cursor() const;

    /// One page exactly as served: the body bytes, lines separated by '\n' (last may lack it).
    /// Lines already mirrored (seq ≤ cursor; legacy: createdAt < cursor, or == with a boundary CID) are
    /// skipped as duplicates; the rest are appended byte-identical to the open export chunk,
    /// validated (plc::Log rules against the DID's history), accepted ops go to the op store and
    /// the cache, rejected ones to rejected.jsonl with the reason; then the page is committed
    /// atomically (a kill -9 at any instant leaves the mirror at the previous or this page).
    /// A line that is not JSON / not an export line is rejected (kept in the chunk, in
    /// rejected.jsonl), never stops the sync; empty lines (e.g. "\r\n" ends) are not lines.
    /// Errors only for I/O or a damaged mirror; after an error the Mirror refuses further
    /// pages (close it and open again: recovery redoes the page).
    /// `source`, when not null, is stored in the cursor with the commit (Cursor::source,
    /// source_offset): where the caller's input stands after this page.
    Errc ingest_page(std::string_view body, PageStats& stats, std::string& err,
                     const std::pair<std::string, std::uint64_t>* source = nullptr);

    /// Seals nothing early; syncs the cache; unlocks. Idempotent.
    Errc close(std::string& err);

    /// What the op store says about `did` (the record the cache holds for it after a commit),
    /// or nullopt for a DID with no accepted op.
    std::optional<didcache::Record> record(std::string_view did) const;
    /// DIDs with at least one accepted op.
    std::uint64_t dids() const;
    /// Counts since the mirror was created (lines = cursor().lines).
    PageStats totals() const;
    /// The mirror directory.
    const std::string& dir() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Loads an op store file's bytes (DIR/ops.bin) without trusting them: header, record
/// lengths, checksums, fields, nullification indexes. ok or mirror_corrupt with `err` naming
/// `name` and the byte offset (the fuzz target's entry point). `ops` and `dids` count what
/// was loaded.
Errc check_op_store(ByteView file, const std::string& name, std::uint64_t& ops, std::uint64_t& dids, std::string& err);

}  // namespace sov::plc
