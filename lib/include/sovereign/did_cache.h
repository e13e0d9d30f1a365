// sovereign/did_cache.h — the memory-mapped DID cache: DID → signing key (with its history),
// PDS endpoint, handle and status, shared by one writer and any number of reader processes.
//
// Implements docs/design.md §5; every byte of the file is in docs/format-did-cache.md.
//  - One file (kFileName inside a mirror directory), mapped with mmap: a 4096-byte header, a
//    table of 64-byte cache-line-aligned slots (open addressing, linear probing, a power of two
//    in number), then a heap of variable-length records (key history, handle, did:web names,
//    interned PDS endpoints).
//  - A slot holds what a verifier needs in one cache line: the DID in binary (did:plc: the 15
//    bytes of its 24 base32 characters; did:web: a 15-byte hash, the name in the heap: the
//    side table), status flags, the current signing key (curve + 33-byte compressed point)
//    with the millisecond it became valid, and the offset of the DID's heap record.
//  - Consistency: each slot has a sequence counter (seqlock). The writer makes it odd, writes,
//    and makes it even again with release order; a reader copies the slot and retries when the
//    counter was odd or changed. Heap records are immutable once published (an update writes
//    a new record), so a reader never sees a torn value and never blocks the writer.
//  - Growth: when the table passes 3/4 full or the heap is full, the writer builds a larger
//    file under a temporary name, fsyncs it, renames it into place and then marks the old
//    file superseded (its header's generation word); readers see the mark and remap the path.
//  - Crash safety: the header's `dirty` flag is set while the writer has unsynced changes;
//    Writer::open of a dirty file answers cache_dirty, and the owner (plc-sync) rebuilds the
//    cache from its op store. Readers keep reading a dirty file (every slot they copy is whole).
// Nothing here throws across the API; errors are an Errc plus a message naming the file and
// the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sovereign/crypto.h"
#include "sovereign/errc.h"
#include "sovereign/verify.h"

namespace sov::plc {
struct State;
}

namespace sov::didcache {

/// The cache's file name inside a mirror directory ("did.cache").
inline constexpr std::string_view kFileName = "did.cache";

/// One signing key of a DID and the time from which it is valid (the createdAt of the PLC op
/// that set it, in µs since the Unix epoch, a whole number of milliseconds). `key` is nullopt
/// for an epoch without a usable key (the op had no #atproto key, or tombstoned the DID).
struct KeyEpoch {
    std::int64_t valid_from_us = 0;
    std::optional<crypto::PublicKey> key;
    bool operator==(const KeyEpoch&) const = default;
};

/// Everything the cache holds for one DID, copied out by value.
struct Record {
    std::string did;                 ///< "did:plc:<24 base32>" or "did:web:<host>"
    bool tombstoned = false;         ///< the PLC log ends in a tombstone
    bool deactivated = false;        ///< an #account event said active:false (set by its owner)
    std::string pds;                 ///< atproto_pds endpoint URL, "" when none
    std::string handle;              ///< without "at://", "" when none
    std::vector<KeyEpoch> history;   ///< oldest first; the last one is the current key
    bool operator==(const Record&) const = default;
};

/// The Record of a PLC log's state (plc::Log::state()): tombstone flag, PDS, handle and the key
/// history of its canonical chain. `deactivated` is false.
Record record_of(const plc::State& state);

/// Size of the file's fixed parts (docs/format-did-cache.md §2, §3).
inline constexpr std::size_t kHeaderBytes = 4096;
inline constexpr std::size_t kSlotBytes = 64;

/// The single writer of a cache file (plc-sync). Holds an exclusive flock on the file for its
/// lifetime (a second writer gets cache_locked). Not thread-safe: one thread writes.
class Writer {
public:
    Writer();
    ~Writer();  ///< syncs (as sync()) and unlocks; errors there are lost: call sync() first
    Writer(Writer&&) noexcept;
    Writer& operator=(Writer&&) noexcept;

    /// Opens `path`, creating an empty cache (`initial_slots` rounded up to a power of two,
    /// at least 1024) when it does not exist. Errors: cache_locked, cache_dirty (a previous
    /// writer stopped mid-update: delete the file and rebuild), cache_bad_magic,
    /// cache_bad_version, cache_truncated, cache_corrupt, io_*. `err` names the path and offset.
    static Errc open(const std::string& path, Writer& out, std::string& err, std::uint64_t initial_slots = 1 << 16);

    /// Inserts or replaces the record of `r.did`. Grows the file first when needed (the only
    /// call that may rename the file). cache_bad_did for a DID that is neither did:plc with 24
    /// base32 characters nor did:web; io_* when growing fails (the cache is then unchanged).
    Errc put(const Record& r, std::string& err);

    /// Flushes the mapping (msync) and clears the dirty flag: after ok, a kill -9 loses nothing
    /// put before. `applied` is stored in the header for the owner to resume from (plc-sync:
    /// the export seq whose ops the cache now reflects). io_* on failure.
    Errc sync(std::uint64_t applied, std::string& err);

    /// The `applied` value of the last sync (0 for a new cache).
    std::uint64_t applied() const noexcept;
    /// DIDs held.
    std::uint64_t size() const noexcept;
    /// Slots in the table (a power of two).
    std::uint64_t slots() const noexcept;
    /// Bytes of the file.
    std::uint64_t file_bytes() const noexcept;
    /// The file's generation (1 for a new cache, +1 at every growth).
    std::uint64_t generation() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// A read-only view of a cache file, for any number of processes and threads. Follows the
/// writer's growth: every call checks the mapped header's superseded mark (one shared cache
/// line) and remaps the path when it is set. All const calls are safe from many threads at
/// once. Superseded mappings stay mapped (pages released with MADV_DONTNEED) until the Reader
/// is destroyed, since another thread may still be reading one.
class Reader {
public:
    Reader();
    ~Reader();
    Reader(Reader&&) noexcept;
    Reader& operator=(Reader&&) noexcept;

    /// Maps `path` read-only and checks its header (magic, version, sizes). Errors:
    /// io_not_found, cache_bad_magic, cache_bad_version, cache_truncated, cache_corrupt, io_*.
    static Errc open(const std::string& path, Reader& out, std::string& err);

    /// The hot path: the signing key `did` had at `time_us` (µs since the epoch; ≤ 0 means the
    /// current key): the key of the last epoch whose valid_from_us ≤ time_us, or of the first
    /// epoch when time_us precedes them all (clocks differ; the DID existed). One cache line when `time_us` is at or after the current key's start;
    /// the heap record otherwise. nullopt: unknown DID, tombstoned at that time, or no key then.
    /// No lock, no allocation and no write to shared memory on the way: a did:plc DID is
    /// decoded in registers, each probed slot is copied once under its seqlock (a slot being
    /// written sends the lookup to the general path, which waits for it).
    /// A slot that stays locked (its writer died mid-update) or a corrupt heap record also
    /// give nullopt; status() tells them apart.
    std::optional<crypto::PublicKey> key_at(std::string_view did, std::int64_t time_us) const;

    /// key_at for many DIDs at once, the same answers (and status()) as dids.size() calls of
    /// key_at. Works in chunks of 64: every DID of chunk c+1 is parsed and its home slot
    /// prefetched before the slots of chunk c are read, so up to two chunks of cache misses
    /// are in flight (the batched path of the benchmarks; call it with a few hundred DIDs).
    /// Precondition: times_us.size() and out.size() are at least dids.size().
    void key_at_batch(std::span<const std::string_view> dids, std::span<const std::int64_t> times_us,
                      std::span<std::optional<crypto::PublicKey>> out) const;

    /// The whole record of `did`; nullopt when unknown. Errors (a locked slot, a corrupt heap
    /// record) are nullopt here and in status().
    std::optional<Record> get(std::string_view did) const;

    /// Calls `fn` for every record, in slot order (a snapshot per slot, not of the whole
    /// table). Returns ok, or the first cache_corrupt / cache_busy met (with `err` set).
    template <class Fn>
    Errc for_each(Fn&& fn, std::string& err) const {
        return for_each_impl([&](const Record& r) { fn(r); }, err);
    }

    /// ok, or the last error a lookup met (cache_busy, cache_corrupt) with its message.
    Errc status(std::string* err = nullptr) const;

    std::uint64_t size() const noexcept;        ///< DIDs held (at the last check)
    std::uint64_t generation() const noexcept;  ///< generation of the mapping in use
    std::uint64_t applied() const noexcept;     ///< the writer's last synced `applied`

private:
    Errc for_each_impl(const std::function<void(const Record&)>& fn, std::string& err) const;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Checks every byte of a cache file without trusting it (the fuzz target's entry point and
/// `plc-sync check`): header, slots (flags, curves, points on their curve, offsets), heap
/// records, interned strings. ok or the first problem, `err` naming the byte offset.
Errc check_file(ByteView file, std::string& err);

/// The verifier's KeySource over a cache (cbor-verify --cache). Safe for many threads.
class CacheKeys final : public verify::KeySource {
public:
    explicit CacheKeys(const Reader& reader) noexcept : reader_(reader) {}
    std::optional<crypto::PublicKey> signing_key(std::string_view did, std::int64_t recv_us) const override {
        return reader_.key_at(did, recv_us);
    }
    /// The src label of the DID's current PDS endpoint (verify::source_of_endpoint); nullopt
    /// for an unknown DID or one without a usable http(s) endpoint. Copies the record: for
    /// --check-pds, not the signature hot path.
    std::optional<std::string> pds_source(std::string_view did) const override {
        std::optional<Record> r = reader_.get(did);
        if (!r || r->pds.empty()) return std::nullopt;
        return verify::source_of_endpoint(r->pds);
    }

private:
    const Reader& reader_;
};

}  // namespace sov::didcache
