// did_cache.cpp — the memory-mapped DID cache (sovereign/did_cache.h). Every byte of the file
// is in docs/format-did-cache.md; the offsets below are that document's tables.
//
// Why it is shaped like this:
//  - The hot path (Reader::key_at) must touch one cache line: the slot holds the DID's binary
//    id and its current key with the millisecond it became valid, so a lookup at or after that
//    time never reads the heap. The heap is read only for older times and for get().
//  - Readers share memory with a writer in another process, so every shared word is accessed
//    through std::atomic_ref. A slot is copied as eight relaxed 8-byte loads between an acquire
//    load of its first word (whose low 32 bits are the sequence counter) and an acquire fence
//    followed by a re-load of that word: the classic seqlock, free of data races in the C++
//    model. The writer makes the counter odd, issues a release fence, stores the seven other
//    words relaxed and stores the first word (counter even, new flags and id bytes) with release.
//    All accesses to a slot word are 8 bytes wide: no mixed-size atomics.
//  - Heap records are immutable once a slot points to them (an update appends a new record),
//    so once a slot copy is validated the record it names can be read with plain loads: its
//    bytes were written before the writer's release fence, which the reader's acquire fence
//    pairs with.
//  - Growth rebuilds the file (live records only) under a temporary name, fsyncs, renames, and
//    then sets the old file's superseded word. Readers check that word (alone on its cache line,
//    written once) on every call and remap the path. Old mappings are kept until the Reader is
//    destroyed, because another thread may still be reading them; their pages are dropped with
//    MADV_DONTNEED so only address space (and the unlinked file's disk space) stays held.
//  - Nothing read from the file is trusted: every offset is checked against the mapping before
//    it is followed, so a corrupt file gives cache_corrupt with the byte offset, not a crash.
#include "sovereign/did_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "internal/le.h"
#include "internal/seqlock.h"
#include "sovereign/blake3.h"
#include "sovereign/file.h"
#include "sovereign/plc.h"
#include "sovereign/syntax.h"

namespace sov::didcache {
namespace {

// ---- constants of docs/format-did-cache.md

constexpr std::uint8_t kMagic[8] = {'S', 'O', 'V', 'D', 'I', 'D', 'C', '\n'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint64_t kMinSlots = 1024;
constexpr std::uint64_t kMaxSlots = std::uint64_t(1) << 32;
constexpr std::uint64_t kMaxHeap = std::uint64_t(32) << 30;  // heap refs: u32 in 8-byte units
constexpr std::uint64_t kHeapFirst = 8;                        // first record; ref 0 means none
constexpr std::uint64_t kHeapPerSlot = 128;                    // heap reserved per slot at a build
constexpr std::uint64_t kMaxFromMs = (std::uint64_t(1) << 48) - 1;
constexpr std::size_t kEpochBytes = 42;                        // i64 from_us, u8 curve, 33 point
constexpr std::size_t kRecordHead = 8;                         // u32 body length, u8 kind, 3 zero
constexpr std::size_t kDidBodyFixed = 16;
constexpr std::uint8_t kKindDid = 1, kKindString = 2;

// Header: fixed fields (covered by the checksum) in line 0, the superseded word alone in
// line 1, the writer's counters in line 2.
struct FixedHeader {
    std::uint8_t magic[8];
    le::U32 version;
    le::U32 slot_bytes;
    le::U64 generation;
    le::U64 slots;
    le::U64 slots_offset;
    le::U64 heap_offset;
    le::U64 heap_size;
    le::U64 checksum;  // first 8 bytes (LE) of BLAKE3 of bytes 0..55
};
static_assert(sizeof(FixedHeader) == 64);
constexpr std::size_t kChecksummed = 56;
constexpr std::size_t kOffSuperseded = 64, kOffDirty = 128, kOffApplied = 136, kOffUsed = 144, kOffHeapUsed = 152;

// Slot bytes.
constexpr std::size_t kSFlags = 4, kSCurve = 5, kSId = 6, kSKey = 21, kSFrom = 54, kSRef = 60;
constexpr std::uint8_t kFUsed = 1, kFWeb = 2, kFTomb = 4, kFDeact = 8, kFKey = 16, kFKnown = 31;

std::uint64_t checksum_of(const std::uint8_t* p) {
    const auto d = blake3::hash(ByteView(p, kChecksummed));
    return le::get<std::uint64_t>(d.data());
}

using seqlock::word;

// A header counter: atomically when the bytes are 8-aligned (a mapping shared with the
// writer), else by copy (a caller's unaligned buffer, which nobody writes concurrently).
std::uint64_t counter(const std::uint8_t* p) noexcept {
    if (reinterpret_cast<std::uintptr_t>(p) % 8 == 0) return word(p).load(std::memory_order_relaxed);
    return le::get<std::uint64_t>(p);
}

std::string at(std::string_view name, std::uint64_t off, std::string_view why) {
    return std::string(name) + ": offset " + std::to_string(off) + ": " + std::string(why);
}

// Sets `err` to "<path>: <call>: <errno text>" and returns the errno's Errc.
Errc sys(const std::string& path, const char* call, std::string& err) {
    const int e = errno;
    err = path + ": " + call + ": " + std::strerror(e);
    return from_errno(e);
}

// ---- DIDs in binary

struct DidKey {
    bool web = false;
    std::uint8_t id[15];
    std::string_view name;  // the whole DID (did:web names are compared in the heap record)
    // The id as the slot's words hold it (docs/format-did-cache.md §3: bytes 6..20), set by
    // parse_did for the hot path's compare: id[0..1] (the top 16 bits of word 0), id[2..9]
    // (word 1), id[10..14] (the low 40 bits of word 2), each little-endian.
    std::uint64_t w0 = 0, w1 = 0, w2 = 0;
    std::uint64_t hash() const noexcept { return le::get<std::uint64_t>(id); }
};

// base32 value of each byte; 0x80 marks a byte outside the alphabet.
constexpr std::array<std::uint8_t, 256> kB32 = [] {
    std::array<std::uint8_t, 256> t{};
    t.fill(0x80);
    for (int c = 'a'; c <= 'z'; ++c) t[std::size_t(c)] = std::uint8_t(c - 'a');
    for (int c = '2'; c <= '7'; ++c) t[std::size_t(c)] = std::uint8_t(c - '2' + 26);
    return t;
}();

// 8 base32 characters at `p` as a 40-bit number (the first character in the top bits); `bad`
// gets bit 7 set for a character outside the alphabet.
inline std::uint64_t b32_group(const std::uint8_t* p, std::uint8_t& bad) noexcept {
    std::uint64_t acc = 0;
    for (int c = 0; c < 8; ++c) {
        const std::uint8_t v = kB32[p[c]];
        bad |= v;
        acc = (acc << 5) | (v & 31);
    }
    return acc;
}

// parse_did's did:web half (out of line: the hot path is did:plc).
[[gnu::noinline]] bool parse_web(std::string_view did, DidKey& k) noexcept {
    if (!did.starts_with("did:web:") || did.size() > 2048 || !syntax::is_did(did)) return false;
    k.web = true;
    const auto d = crypto::sha256(as_bytes(did));
    std::memcpy(k.id, d.data(), 15);
    k.w0 = le::get<std::uint16_t>(k.id);
    k.w1 = le::get<std::uint64_t>(k.id + 2);
    k.w2 = le::get<std::uint64_t>(k.id + 7) >> 24;
    return true;
}

// On the hot path. did:plc: the 24 characters in three 40-bit groups g0 g1 g2, the id being
// the 120-bit big-endian number g0·2^80 + g1·2^40 + g2; everything is assembled in registers
// and stored in whole words (no byte stores read back as a word). did:web: SHA-256 of the DID.
inline bool parse_did(std::string_view did, DidKey& k) noexcept {
    k.name = did;
    if (did.size() == 32 && std::memcmp(did.data(), "did:plc:", 8) == 0) {
        k.web = false;
        const auto* p = reinterpret_cast<const std::uint8_t*>(did.data()) + 8;
        std::uint8_t bad = 0;
        const std::uint64_t g0 = b32_group(p, bad), g1 = b32_group(p + 8, bad), g2 = b32_group(p + 16, bad);
        const std::uint64_t head = __builtin_bswap64((g0 << 24) | (g1 >> 16));  // id[0..7]
        const std::uint64_t tail = __builtin_bswap64((g1 << 40) | g2);          // id[7..14]
        std::memcpy(k.id, &head, 8);
        std::memcpy(k.id + 7, &tail, 8);
        k.w0 = __builtin_bswap16(std::uint16_t(g0 >> 24));
        k.w1 = __builtin_bswap64((g0 << 40) | g1);
        k.w2 = __builtin_bswap64(g2 << 24);
        return (bad & 0x80) == 0;
    }
    return parse_web(did, k);
}

std::string plc_text(const std::uint8_t id[15]) {
    static constexpr char kAlpha[] = "abcdefghijklmnopqrstuvwxyz234567";
    std::string s = "did:plc:";
    std::uint64_t acc = 0;
    int bits = 0;
    for (int i = 0; i < 15; ++i) {
        acc = (acc << 8) | id[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            s.push_back(kAlpha[(acc >> bits) & 31]);
        }
    }
    return s;
}

std::uint64_t round8(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t(7); }

// ---- the header, checked without trusting it

struct Geometry {
    std::uint64_t generation = 0, slots = 0, heap_offset = 0, heap_size = 0;
    std::uint64_t file_bytes() const noexcept { return heap_offset + heap_size; }
};

Errc check_header(ByteView f, std::string_view name, Geometry& g, std::string& err) {
    if (f.size() < sizeof(kMagic)) {
        err = at(name, f.size(), "file ends inside the magic number");
        return f.empty() || std::memcmp(f.data(), kMagic, f.size()) == 0 ? Errc::cache_truncated : Errc::cache_bad_magic;
    }
    if (std::memcmp(f.data(), kMagic, sizeof(kMagic)) != 0) {
        err = at(name, 0, "not a DID cache (bad magic number)");
        return Errc::cache_bad_magic;
    }
    if (f.size() < kHeaderBytes) {
        err = at(name, f.size(), "file ends inside the 4096-byte header");
        return Errc::cache_truncated;
    }
    const auto h = le::load<FixedHeader>(f.data());
    if (h.version.get() != kVersion) {
        err = at(name, 8, "format version " + std::to_string(h.version.get()) + " (this code reads 1)");
        return Errc::cache_bad_version;
    }
    if (h.checksum.get() != checksum_of(f.data())) {
        err = at(name, 56, "header checksum does not match bytes 0..55");
        return Errc::cache_corrupt;
    }
    auto bad = [&](std::uint64_t off, std::string_view why) {
        err = at(name, off, why);
        return Errc::cache_corrupt;
    };
    const std::uint64_t slots = h.slots.get();
    if (h.slot_bytes.get() != kSlotBytes) return bad(12, "slot size is not 64");
    if (slots == 0 || slots > kMaxSlots || (slots & (slots - 1)) != 0) return bad(24, "slot count is not a power of two in [1, 2^32]");
    if (h.slots_offset.get() != kHeaderBytes) return bad(32, "slot table does not start at 4096");
    if (h.heap_offset.get() != kHeaderBytes + slots * kSlotBytes) return bad(40, "heap offset is not the end of the slot table");
    const std::uint64_t heap = h.heap_size.get();
    if (heap < kHeapFirst || heap > kMaxHeap || heap % 8 != 0) return bad(48, "heap size not a multiple of 8 in [8, 32 GiB]");
    g.generation = h.generation.get();
    g.slots = slots;
    g.heap_offset = h.heap_offset.get();
    g.heap_size = heap;
    if (f.size() < g.file_bytes()) {
        err = at(name, f.size(), "file ends before the heap's end at " + std::to_string(g.file_bytes()));
        return Errc::cache_truncated;
    }
    const std::uint8_t* p = f.data();
    if (g.generation == 0) return bad(16, "generation 0");
    if (counter(p + kOffDirty) > 1) return bad(kOffDirty, "dirty flag is neither 0 nor 1");
    if (counter(p + kOffUsed) > slots) return bad(kOffUsed, "more DIDs than slots");
    const std::uint64_t hu = counter(p + kOffHeapUsed);
    if (hu < kHeapFirst || hu > heap || hu % 8 != 0) return bad(kOffHeapUsed, "heap used outside [8, heap size] or not a multiple of 8");
    return Errc::ok;
}

// ---- heap records, read without trusting them

struct DidRecordView {
    std::uint64_t epochs = 0;
    const std::uint8_t* epoch = nullptr;  // epochs × 42 bytes
    std::string_view handle, name;
    std::uint32_t pds_ref = 0;
    std::uint64_t bytes = 0;  // whole record, padded
};

// A mapping (or a byte copy) of one file, as the readers see it.
struct Map {
    const std::uint8_t* base = nullptr;
    std::uint64_t bytes = 0;
    Geometry g;
    std::string_view name;  // for messages: the path (owned by the Map's owner) or "did cache"
    std::string path;       // the Reader's own copy of the path, which `name` views (Maps never move)
    std::uint64_t mask() const noexcept { return g.slots - 1; }
    const std::uint8_t* slot(std::uint64_t i) const noexcept { return base + kHeaderBytes + i * kSlotBytes; }
    const std::uint8_t* heap() const noexcept { return base + g.heap_offset; }
};

// The record at heap ref `ref` (8-byte units) of kind `kind`: ok, or cache_corrupt naming the
// file offset. `body`/`len` give the body.
Errc record_at(const Map& m, std::uint32_t ref, std::uint8_t kind, const std::uint8_t*& body, std::uint64_t& len,
               std::string& err) {
    const std::uint64_t off = std::uint64_t(ref) * 8;
    const std::uint64_t file_off = m.g.heap_offset + off;
    if (ref == 0 || off < kHeapFirst || off + kRecordHead > m.g.heap_size) {
        err = at(m.name, file_off, "heap reference outside the heap");
        return Errc::cache_corrupt;
    }
    const std::uint8_t* p = m.heap() + off;
    len = le::get<std::uint32_t>(p);
    if (p[4] != kind || p[5] != 0 || p[6] != 0 || p[7] != 0) {
        err = at(m.name, file_off + 4, kind == kKindDid ? "not a DID record" : "not a string record");
        return Errc::cache_corrupt;
    }
    if (len > m.g.heap_size - off - kRecordHead) {
        err = at(m.name, file_off, "record runs past the heap's end");
        return Errc::cache_corrupt;
    }
    body = p + kRecordHead;
    return Errc::ok;
}

Errc did_record(const Map& m, std::uint32_t ref, DidRecordView& v, std::string& err) {
    const std::uint8_t* b = nullptr;
    std::uint64_t len = 0;
    if (Errc e = record_at(m, ref, kKindDid, b, len, err); e != Errc::ok) return e;
    const std::uint64_t file_off = m.g.heap_offset + std::uint64_t(ref) * 8;
    if (len < kDidBodyFixed) {
        err = at(m.name, file_off, "DID record shorter than its fixed part");
        return Errc::cache_corrupt;
    }
    v.epochs = le::get<std::uint16_t>(b);
    const std::uint64_t handle_len = le::get<std::uint16_t>(b + 2), name_len = le::get<std::uint16_t>(b + 4);
    v.pds_ref = le::get<std::uint32_t>(b + 8);
    if (kDidBodyFixed + v.epochs * kEpochBytes + handle_len + name_len != len) {
        err = at(m.name, file_off, "DID record length does not match its epochs, handle and name");
        return Errc::cache_corrupt;
    }
    v.epoch = b + kDidBodyFixed;
    const char* s = reinterpret_cast<const char*>(v.epoch + v.epochs * kEpochBytes);
    v.handle = {s, handle_len};
    v.name = {s + handle_len, name_len};
    v.bytes = round8(kRecordHead + len);
    return Errc::ok;
}

Errc string_record(const Map& m, std::uint32_t ref, std::string_view& s, std::string& err) {
    const std::uint8_t* b = nullptr;
    std::uint64_t len = 0;
    if (Errc e = record_at(m, ref, kKindString, b, len, err); e != Errc::ok) return e;
    s = {reinterpret_cast<const char*>(b), len};
    return Errc::ok;
}

// Epoch i of a record: its start and key (nullopt for curve 0). False for an unknown curve.
bool epoch_of(const DidRecordView& v, std::uint64_t i, KeyEpoch& e) {
    const std::uint8_t* p = v.epoch + i * kEpochBytes;
    e.valid_from_us = le::get<std::int64_t>(p);
    const std::uint8_t c = p[8];
    if (c == 0) {
        e.key.reset();
        return true;
    }
    if (c != std::uint8_t(crypto::Curve::k256) && c != std::uint8_t(crypto::Curve::p256)) return false;
    crypto::PublicKey k;
    k.curve = crypto::Curve(c);
    std::memcpy(k.compressed.data(), p + 9, 33);
    e.key = k;
    return true;
}

// ---- the seqlock

// Copies slot `s` into `out` (64 bytes): true, or false when its counter stayed odd or kept
// changing for about a second (a writer died mid-update).
bool read_slot(const std::uint8_t* s, std::uint8_t* out) noexcept {
    std::uint64_t copy[8];
    std::chrono::steady_clock::time_point start{};
    for (std::uint32_t spins = 0;; ++spins) {
        if (seqlock::try_read(s, copy)) {
            std::memcpy(out, copy, kSlotBytes);
            return true;
        }
        if ((spins & 255) == 255) {
            const auto now = std::chrono::steady_clock::now();
            if (start == std::chrono::steady_clock::time_point{}) start = now;
            else if (now - start > std::chrono::seconds(1)) return false;
            std::this_thread::yield();
        }
    }
}

std::uint64_t from_ms_of(const std::uint8_t* slot) noexcept {
    std::uint64_t v = 0;
    std::memcpy(&v, slot + kSFrom, 6);
    return v;
}

// Looks `k` up in `m`. 1 found (slot copied into `out`), 0 absent, -1 error (busy/corrupt).
int find(const Map& m, const DidKey& k, std::uint8_t* out, std::uint64_t& i, Errc& e, std::string& err) {
    i = k.hash() & m.mask();
    for (std::uint64_t n = 0; n < m.g.slots; ++n, i = (i + 1) & m.mask()) {
        if (!read_slot(m.slot(i), out)) {
            e = Errc::cache_busy;
            err = at(m.name, kHeaderBytes + i * kSlotBytes, "slot stayed locked for a second (its writer is gone)");
            return -1;
        }
        const std::uint8_t f = out[kSFlags];
        if (!(f & kFUsed)) return 0;
        if (bool(f & kFWeb) != k.web || std::memcmp(out + kSId, k.id, 15) != 0) continue;
        if (!k.web) return 1;
        DidRecordView v;
        if ((e = did_record(m, le::get<std::uint32_t>(out + kSRef), v, err)) != Errc::ok) return -1;
        if (v.name == k.name) return 1;
    }
    return 0;
}

// The key of slot copy `s` (slot `index`) at `time_us`: from the slot when the time is at or
// after its current key's start, else from its heap record.
std::optional<crypto::PublicKey> answer(const Map& m, std::uint64_t index, const std::uint8_t* s, std::int64_t time_us,
                                        Errc& e, std::string& err) {
    const std::uint8_t f = s[kSFlags];
    if (time_us <= 0 || std::uint64_t(time_us) >= from_ms_of(s) * 1000) {
        if (!(f & kFKey)) return std::nullopt;
        const std::uint8_t c = s[kSCurve];
        if (c != std::uint8_t(crypto::Curve::k256) && c != std::uint8_t(crypto::Curve::p256)) {
            e = Errc::cache_corrupt;
            err = at(m.name, kHeaderBytes + index * kSlotBytes + kSCurve, "slot curve is not 1 or 2");
            return std::nullopt;
        }
        crypto::PublicKey k;
        k.curve = crypto::Curve(c);
        std::memcpy(k.compressed.data(), s + kSKey, 33);
        return k;
    }
    DidRecordView v;
    if ((e = did_record(m, le::get<std::uint32_t>(s + kSRef), v, err)) != Errc::ok) return std::nullopt;
    if (v.epochs == 0) return std::nullopt;
    std::uint64_t pick = 0;
    KeyEpoch ep;
    for (std::uint64_t i = v.epochs; i-- > 0;) {
        if (!epoch_of(v, i, ep)) {
            e = Errc::cache_corrupt;
            err = at(m.name, m.g.heap_offset + std::uint64_t(v.epoch - m.heap()) + i * kEpochBytes + 8, "epoch curve is not 0, 1 or 2");
            return std::nullopt;
        }
        if (ep.valid_from_us <= time_us) {
            pick = i;
            break;
        }
    }
    if (pick == v.epochs - 1 && (f & kFTomb)) return std::nullopt;
    if (!epoch_of(v, pick, ep)) return std::nullopt;
    return ep.key;
}

// The hot path's common case, from the slots alone: a did:plc DID asked at or after its current
// key's start, or absent. Probes from its home slot `i` like find(), one seqlock attempt per
// slot, no heap, no allocation, no shared write. True with `out` set (the key, or nullopt for
// an absent DID or a slot without a key); false when the general path must answer (a did:web
// DID, an older time, a slot being written, a bad curve).
inline bool fast_key(const Map& m, const DidKey& k, std::uint64_t i, std::int64_t time_us,
                     std::optional<crypto::PublicKey>& out) noexcept {
    if (k.web) return false;
    // The slot's words (little-endian, docs/format-did-cache.md §3): w[0] counter, flags (bits
    // 32..39), curve (40..47), id[0..1] (48..63); w[1] id[2..9]; w[2] id[10..14], key[0..2];
    // w[3..5] key[3..26]; w[6] key[27..32], from_ms[0..1]; w[7] from_ms[2..5], heap ref.
    // Fields are taken with shifts and the key stored straight into `out`: no byte copy of the
    // slot is read back.
    std::uint64_t w[8];
    for (std::uint64_t n = 0; n < m.g.slots; ++n, i = (i + 1) & m.mask()) {
        if (!seqlock::try_read(m.slot(i), w)) return false;
        const auto f = std::uint8_t(w[0] >> 32);
        if (!(f & kFUsed)) break;
        if ((f & kFWeb) || (w[0] >> 48) != k.w0 || w[1] != k.w1 || (w[2] & 0xff'ffff'ffffull) != k.w2) continue;
        const std::uint64_t from_ms = (w[6] >> 48) | ((w[7] & 0xffff'ffffull) << 16);
        if (time_us > 0 && std::uint64_t(time_us) < from_ms * 1000) return false;
        if (!(f & kFKey)) break;
        const auto c = std::uint8_t(w[0] >> 40);
        if (c != std::uint8_t(crypto::Curve::k256) && c != std::uint8_t(crypto::Curve::p256)) return false;
        crypto::PublicKey& key = out.emplace();
        key.curve = crypto::Curve(c);
        std::uint8_t* kb = key.compressed.data();
        const std::uint64_t k0 = w[2] >> 40;  // key[0..2]
        std::memcpy(kb, &k0, 3);
        std::memcpy(kb + 3, &w[3], 8);
        std::memcpy(kb + 11, &w[4], 8);
        std::memcpy(kb + 19, &w[5], 8);
        std::memcpy(kb + 27, &w[6], 6);
        return true;
    }
    out.reset();
    return true;
}

// The whole record of slot copy `s`.
Errc record_from(const Map& m, const std::uint8_t* s, Record& r, std::string& err) {
    DidRecordView v;
    if (Errc e = did_record(m, le::get<std::uint32_t>(s + kSRef), v, err); e != Errc::ok) return e;
    const std::uint8_t f = s[kSFlags];
    r.did = (f & kFWeb) ? std::string(v.name) : plc_text(s + kSId);
    r.tombstoned = f & kFTomb;
    r.deactivated = f & kFDeact;
    r.handle = std::string(v.handle);
    r.pds.clear();
    if (v.pds_ref != 0) {
        std::string_view pds;
        if (Errc e = string_record(m, v.pds_ref, pds, err); e != Errc::ok) return e;
        r.pds = std::string(pds);
    }
    r.history.resize(v.epochs);
    for (std::uint64_t i = 0; i < v.epochs; ++i)
        if (!epoch_of(v, i, r.history[i])) {
            err = at(m.name, m.g.heap_offset + std::uint64_t(v.epoch - m.heap()) + i * kEpochBytes + 8, "epoch curve is not 0, 1 or 2");
            return Errc::cache_corrupt;
        }
    return Errc::ok;
}

// ---- files

Errc map_file(int fd, const std::string& path, bool writable, std::uint8_t*& base, std::uint64_t& bytes, std::string& err) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return sys(path, "fstat", err);
    }
    bytes = std::uint64_t(st.st_size);
    base = nullptr;
    if (bytes == 0) return Errc::ok;
    void* p = ::mmap(nullptr, bytes, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        return sys(path, "mmap", err);
    }
    base = static_cast<std::uint8_t*>(p);
    return Errc::ok;
}

std::string dir_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? std::string(".") : (slash == 0 ? std::string("/") : path.substr(0, slash));
}

}  // namespace

// ------------------------------------------------------------------------------------ Writer

struct Writer::Impl {
    std::string path;
    int fd = -1;
    std::uint8_t* base = nullptr;
    std::uint64_t bytes = 0;
    Geometry g;
    std::uint64_t used = 0, heap_used = kHeapFirst, applied = 0;
    bool dirty = false;
    std::unordered_map<std::string, std::uint32_t> interned;  // PDS endpoint → string record ref

    Map view() const { return Map{base, bytes, g, path, {}}; }
    std::uint8_t* slot(std::uint64_t i) const noexcept { return base + kHeaderBytes + i * kSlotBytes; }
    std::uint8_t* heap() const noexcept { return base + g.heap_offset; }

    void close() noexcept {
        if (base) ::munmap(base, bytes);
        if (fd >= 0) ::close(fd);
        base = nullptr;
        fd = -1;
    }
    ~Impl() { close(); }

    void store(std::size_t off, std::uint64_t v) noexcept { word(base + off).store(v, std::memory_order_release); }

    // Slot index of `k` (found) or of the empty slot where it would go.
    std::uint64_t probe(const DidKey& k, bool& found) const {
        const Map m = view();
        std::uint64_t i = k.hash() & m.mask();
        for (std::uint64_t n = 0; n < g.slots; ++n, i = (i + 1) & m.mask()) {
            const std::uint8_t* s = slot(i);
            found = false;
            if (!(s[kSFlags] & kFUsed)) return i;
            if (bool(s[kSFlags] & kFWeb) != k.web || std::memcmp(s + kSId, k.id, 15) != 0) continue;
            found = true;
            if (!k.web) return i;
            DidRecordView v;
            std::string ignored;
            if (did_record(m, le::get<std::uint32_t>(s + kSRef), v, ignored) == Errc::ok && v.name == k.name) return i;
        }
        found = false;
        return g.slots;  // full: the caller grew before, so not reached
    }

    // Appends a record of `kind` with `body` bytes to the heap (space checked by the caller);
    // returns its ref.
    std::uint32_t append(std::uint8_t kind, const std::vector<std::uint8_t>& body) {
        std::uint8_t* p = heap() + heap_used;
        le::put<std::uint32_t>(p, std::uint32_t(body.size()));
        p[4] = kind;
        p[5] = p[6] = p[7] = 0;
        std::memcpy(p + kRecordHead, body.data(), body.size());
        const std::uint64_t total = round8(kRecordHead + body.size());
        std::memset(p + kRecordHead + body.size(), 0, total - kRecordHead - body.size());
        const auto ref = std::uint32_t(heap_used / 8);
        heap_used += total;
        return ref;
    }

    // Scans the heap's string records (the intern table) and checks the record chain.
    Errc load_interned(std::string& err) {
        interned.clear();
        const Map m = view();
        for (std::uint64_t off = kHeapFirst; off < heap_used;) {
            const std::uint8_t* p = heap() + off;
            const std::uint8_t kind = p[4];
            const std::uint8_t* body = nullptr;
            std::uint64_t len = 0;
            if (kind != kKindDid && kind != kKindString) {
                err = at(path, g.heap_offset + off + 4, "unknown heap record kind");
                return Errc::cache_corrupt;
            }
            if (Errc e = record_at(m, std::uint32_t(off / 8), kind, body, len, err); e != Errc::ok) return e;
            if (kind == kKindString) interned.emplace(std::string(reinterpret_cast<const char*>(body), len), std::uint32_t(off / 8));
            off += round8(kRecordHead + len);
            if (off > heap_used) {
                err = at(path, g.heap_offset + off, "heap record runs past the heap's used end");
                return Errc::cache_corrupt;
            }
        }
        return Errc::ok;
    }

    // Copies the live records into a new file of `slots` slots and `heap` heap bytes, then
    // replaces the file by it (rename, directory fsync, superseded mark on the old one).
    Errc rebuild(std::uint64_t slots, std::uint64_t heap, std::string& err);

    Errc mark_dirty(std::string& err) {
        if (dirty) return Errc::ok;
        store(kOffDirty, 1);
        if (::msync(base, kHeaderBytes, MS_SYNC) != 0) {
            return sys(path, "msync", err);
        }
        dirty = true;
        return Errc::ok;
    }
};

namespace {

// Creates the empty cache of `slots` slots and `heap` heap bytes in `fd` (size 0) and maps it
// writable; the caller fsyncs.
Errc init_file(int fd, const std::string& path, std::uint64_t slots, std::uint64_t heap, std::uint64_t generation,
               std::uint8_t*& base, std::uint64_t& bytes, std::string& err) {
    bytes = kHeaderBytes + slots * kSlotBytes + heap;
    if (::ftruncate(fd, off_t(bytes)) != 0) {
        return sys(path, "ftruncate", err);
    }
    std::uint64_t got = 0;
    if (Errc e = map_file(fd, path, true, base, got, err); e != Errc::ok) return e;
    FixedHeader h{};
    std::memcpy(h.magic, kMagic, 8);
    h.version.set(kVersion);
    h.slot_bytes.set(kSlotBytes);
    h.generation.set(generation);
    h.slots.set(slots);
    h.slots_offset.set(kHeaderBytes);
    h.heap_offset.set(kHeaderBytes + slots * kSlotBytes);
    h.heap_size.set(heap);
    std::memcpy(base, &h, sizeof h);
    le::put<std::uint64_t>(base + 56, checksum_of(base));
    le::put<std::uint64_t>(base + kOffHeapUsed, kHeapFirst);
    return Errc::ok;
}

std::uint64_t heap_for(std::uint64_t slots, std::uint64_t live) {
    std::uint64_t h = std::max(slots * kHeapPerSlot, 2 * live);
    return std::min(round8(h), kMaxHeap);
}

// The body of a DID record.
std::vector<std::uint8_t> did_body(const Record& r, const DidKey& k, std::uint32_t pds_ref) {
    std::vector<std::uint8_t> b(kDidBodyFixed, 0);
    le::put<std::uint16_t>(b.data(), std::uint16_t(r.history.size()));
    le::put<std::uint16_t>(b.data() + 2, std::uint16_t(r.handle.size()));
    le::put<std::uint16_t>(b.data() + 4, std::uint16_t(k.web ? k.name.size() : 0));
    le::put<std::uint32_t>(b.data() + 8, pds_ref);
    for (const auto& e : r.history) {
        std::uint8_t ep[kEpochBytes]{};
        le::put<std::int64_t>(ep, e.valid_from_us);
        if (e.key) {
            ep[8] = std::uint8_t(e.key->curve);
            std::memcpy(ep + 9, e.key->compressed.data(), 33);
        }
        b.insert(b.end(), ep, ep + kEpochBytes);
    }
    b.insert(b.end(), r.handle.begin(), r.handle.end());
    if (k.web) b.insert(b.end(), k.name.begin(), k.name.end());
    return b;
}

// The slot image of a record whose heap record is at `ref`.
void slot_image(const Record& r, const DidKey& k, std::uint32_t ref, std::uint8_t* s) {
    std::memset(s, 0, kSlotBytes);
    std::uint8_t f = kFUsed;
    if (k.web) f |= kFWeb;
    if (r.tombstoned) f |= kFTomb;
    if (r.deactivated) f |= kFDeact;
    std::memcpy(s + kSId, k.id, 15);
    std::uint64_t from_ms = 0;
    if (!r.history.empty()) {
        const KeyEpoch& cur = r.history.back();
        if (cur.key && !r.tombstoned) {
            f |= kFKey;
            s[kSCurve] = std::uint8_t(cur.key->curve);
            std::memcpy(s + kSKey, cur.key->compressed.data(), 33);
        }
        // One epoch answers every time; otherwise the first whole ms at or after its start.
        if (r.history.size() > 1 && cur.valid_from_us > 0)
            from_ms = std::min<std::uint64_t>((std::uint64_t(cur.valid_from_us) + 999) / 1000, kMaxFromMs);
    }
    s[kSFlags] = f;
    std::memcpy(s + kSFrom, &from_ms, 6);
    le::put<std::uint32_t>(s + kSRef, ref);
}

Errc check_record(const Record& r, DidKey& k, std::string& err) {
    if (!parse_did(r.did, k)) {
        err = "did cache: " + r.did + ": not did:plc with 24 base32 characters nor a did:web";
        return Errc::cache_bad_did;
    }
    if (r.history.size() > 0xffff || r.handle.size() > 0xffff || r.pds.size() > 0xffff) {
        err = "did cache: " + r.did + ": more than 65535 epochs or a handle or PDS over 65535 bytes";
        return Errc::too_large;
    }
    for (std::size_t i = 0; i < r.history.size(); ++i) {
        const auto& e = r.history[i];
        if (e.key && e.key->curve != crypto::Curve::k256 && e.key->curve != crypto::Curve::p256) {
            err = "did cache: " + r.did + ": epoch " + std::to_string(i) + " has an unknown curve";
            return Errc::bad_argument;
        }
        if (i > 0 && e.valid_from_us < r.history[i - 1].valid_from_us) {
            err = "did cache: " + r.did + ": epoch " + std::to_string(i) + " starts before the one it follows";
            return Errc::bad_argument;
        }
    }
    return Errc::ok;
}

}  // namespace

Writer::Writer() = default;
Writer::~Writer() {
    if (impl_ && impl_->dirty) {
        std::string ignored;
        (void)sync(impl_->applied, ignored);
    }
}
Writer::Writer(Writer&&) noexcept = default;
Writer& Writer::operator=(Writer&& o) noexcept {
    if (this != &o) {
        if (impl_ && impl_->dirty) {
            std::string ignored;
            (void)sync(impl_->applied, ignored);
        }
        impl_ = std::move(o.impl_);
    }
    return *this;
}

Errc Writer::open(const std::string& path, Writer& out, std::string& err, std::uint64_t initial_slots) {
    std::uint64_t slots = kMinSlots;
    while (slots < initial_slots && slots < kMaxSlots) slots <<= 1;
    // A path renamed over after we opened it (a writer growing it just before it unlocked)
    // is opened again: bounded, as each retry sees a newer generation.
    for (int attempt = 0; attempt < 16; ++attempt) {
        auto w = std::make_unique<Impl>();
        w->path = path;
        w->fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (w->fd < 0) {
            return sys(path, "open", err);
        }
        if (::flock(w->fd, LOCK_EX | LOCK_NB) != 0) {
            const int e = errno;
            if (e == EWOULDBLOCK) {
                err = path + ": another writer holds the DID cache";
                return Errc::cache_locked;
            }
            errno = e;
            return sys(path, "flock", err);
        }
        struct stat st {}, at_path{};
        if (::fstat(w->fd, &st) != 0) {
            return sys(path, "fstat", err);
        }
        // Locked, but is it still the file at the path? (A rebuild may have renamed a new
        // one over it between our open and our flock.)
        if (::stat(path.c_str(), &at_path) != 0 || at_path.st_ino != st.st_ino || at_path.st_dev != st.st_dev) continue;
        if (st.st_size == 0) {
            if (Errc e = init_file(w->fd, path, slots, heap_for(slots, 0), 1, w->base, w->bytes, err); e != Errc::ok) return e;
            if (::msync(w->base, w->bytes, MS_SYNC) != 0 || ::fsync(w->fd) != 0) {
                return sys(path, "fsync", err);
            }
            if (Errc e = file::fsync_dir(dir_of(path), err); e != Errc::ok) return e;
        } else if (Errc e = map_file(w->fd, path, true, w->base, w->bytes, err); e != Errc::ok) {
            return e;
        }
        if (Errc e = check_header(ByteView(w->base, w->bytes), path, w->g, err); e != Errc::ok) return e;
        if (word(w->base + kOffSuperseded).load(std::memory_order_acquire) != 0) continue;
        if (word(w->base + kOffDirty).load(std::memory_order_acquire) != 0) {
            err = path + ": the previous writer stopped in the middle of an update (dirty flag set): delete the cache and rebuild it";
            return Errc::cache_dirty;
        }
        w->used = word(w->base + kOffUsed).load(std::memory_order_relaxed);
        w->heap_used = word(w->base + kOffHeapUsed).load(std::memory_order_relaxed);
        w->applied = word(w->base + kOffApplied).load(std::memory_order_relaxed);
        if (Errc e = w->load_interned(err); e != Errc::ok) return e;
        out.impl_ = std::move(w);
        return Errc::ok;
    }
    err = path + ": replaced too often while opening";
    return Errc::io_error;
}

Errc Writer::put(const Record& r, std::string& err) {
    Impl& w = *impl_;
    DidKey k;
    if (Errc e = check_record(r, k, err); e != Errc::ok) return e;
    bool found = false;
    std::uint64_t i = w.probe(k, found);
    const bool intern = !r.pds.empty() && !w.interned.contains(r.pds);
    const std::uint64_t body = kDidBodyFixed + r.history.size() * kEpochBytes + r.handle.size() + (k.web ? k.name.size() : 0);
    const std::uint64_t need = round8(kRecordHead + body) + (intern ? round8(kRecordHead + r.pds.size()) : 0);
    const bool table_full = !found && (w.used + 1) * 4 > w.g.slots * 3;
    if (table_full || w.heap_used + need > w.g.heap_size) {
        // Live bytes: the records the slots name plus the interned strings (an upper bound).
        std::uint64_t live = need;
        const Map m = w.view();
        for (std::uint64_t s = 0; s < w.g.slots; ++s) {
            const std::uint8_t* p = w.slot(s);
            if (!(p[kSFlags] & kFUsed)) continue;
            DidRecordView v;
            if (Errc e = did_record(m, le::get<std::uint32_t>(p + kSRef), v, err); e != Errc::ok) return e;
            live += v.bytes;
        }
        for (const auto& [s, ref] : w.interned) live += round8(kRecordHead + s.size());
        std::uint64_t slots = w.g.slots;
        while ((w.used + 1) * 4 > slots * 3) slots <<= 1;
        if (slots > kMaxSlots || live + kHeapFirst > kMaxHeap) {
            err = w.path + ": the DID cache would pass its limits (2^32 slots, 32 GiB of heap)";
            return Errc::too_large;
        }
        if (Errc e = w.rebuild(slots, heap_for(slots, live + kHeapFirst), err); e != Errc::ok) return e;
        i = w.probe(k, found);
    }
    if (Errc e = w.mark_dirty(err); e != Errc::ok) return e;
    std::uint32_t pds_ref = 0;
    if (!r.pds.empty()) {
        if (intern) {
            pds_ref = w.append(kKindString, std::vector<std::uint8_t>(r.pds.begin(), r.pds.end()));
            w.interned.emplace(r.pds, pds_ref);
        } else {
            pds_ref = w.interned.at(r.pds);
        }
    }
    const std::uint32_t ref = w.append(kKindDid, did_body(r, k, pds_ref));
    w.store(kOffHeapUsed, w.heap_used);
    std::uint8_t img[kSlotBytes];
    slot_image(r, k, ref, img);
    seqlock::write(w.slot(i), img);
    if (!found) w.store(kOffUsed, ++w.used);
    return Errc::ok;
}

Errc Writer::Impl::rebuild(std::uint64_t slots, std::uint64_t heap, std::string& err) {
    Impl& w = *this;
    const std::string tmp = w.path + ".tmp";
    Writer::Impl n;
    n.path = w.path;
    auto fail = [&](Errc e) {
        n.close();
        ::unlink(tmp.c_str());
        return e;
    };
    n.fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (n.fd < 0) {
        return sys(tmp, "open", err);
    }
    // Locked before it is renamed into place, so no other writer can take the new file.
    if (::flock(n.fd, LOCK_EX | LOCK_NB) != 0) {
        return fail(sys(tmp, "flock", err));
    }
    if (Errc e = init_file(n.fd, tmp, slots, heap, w.g.generation + 1, n.base, n.bytes, err); e != Errc::ok) return fail(e);
    n.g = Geometry{w.g.generation + 1, slots, kHeaderBytes + slots * kSlotBytes, heap};
    n.applied = w.applied;
    const Map m = w.view();
    for (std::uint64_t s = 0; s < w.g.slots; ++s) {
        const std::uint8_t* p = w.slot(s);
        if (!(p[kSFlags] & kFUsed)) continue;
        Record r;
        if (Errc e = record_from(m, p, r, err); e != Errc::ok) return fail(e);
        DidKey k;
        if (!parse_did(r.did, k)) {
            err = at(w.path, kHeaderBytes + s * kSlotBytes, "slot holds a DID that does not parse");
            return fail(Errc::cache_corrupt);
        }
        std::uint32_t pds_ref = 0;
        if (!r.pds.empty()) {
            auto it = n.interned.find(r.pds);
            if (it == n.interned.end()) {
                pds_ref = n.append(kKindString, std::vector<std::uint8_t>(r.pds.begin(), r.pds.end()));
                n.interned.emplace(r.pds, pds_ref);
            } else {
                pds_ref = it->second;
            }
        }
        const std::uint32_t ref = n.append(kKindDid, did_body(r, k, pds_ref));
        bool found = false;
        const std::uint64_t i = n.probe(k, found);
        // Keep the flags the owner set (deactivated, tombstoned) and the slot's own current key:
        // copy the old slot's bytes and change only its record ref.
        std::uint8_t img[kSlotBytes];
        std::memcpy(img, p, kSlotBytes);
        le::put<std::uint32_t>(img + kSRef, ref);
        std::memset(img, 0, 4);
        std::memcpy(n.slot(i), img, kSlotBytes);
        ++n.used;
    }
    n.store(kOffUsed, n.used);
    n.store(kOffHeapUsed, n.heap_used);
    n.store(kOffApplied, n.applied);
    n.store(kOffDirty, 1);  // the caller is about to change it; dirty until the next sync()
    n.dirty = true;
    if (::msync(n.base, n.bytes, MS_SYNC) != 0 || ::fsync(n.fd) != 0) {
        return fail(sys(tmp, "fsync", err));
    }
    if (Errc e = file::rename(tmp, w.path, err); e != Errc::ok) return fail(e);
    // The new file is in place whatever the directory fsync says: switch to it, then report
    // a failed fsync (the caller's put is not done; its content is the same either way).
    const Errc dir_error = file::fsync_dir(dir_of(w.path), err);
    w.store(kOffSuperseded, n.g.generation);
    (void)::msync(w.base, kHeaderBytes, MS_SYNC);
    w.close();
    w.fd = n.fd;
    w.base = n.base;
    w.bytes = n.bytes;
    w.g = n.g;
    w.used = n.used;
    w.heap_used = n.heap_used;
    w.dirty = true;
    w.interned = std::move(n.interned);
    n.fd = -1;
    n.base = nullptr;
    return dir_error;
}

Errc Writer::sync(std::uint64_t applied, std::string& err) {
    Impl& w = *impl_;
    if (::msync(w.base, w.bytes, MS_SYNC) != 0) {
        return sys(w.path, "msync", err);
    }
    w.store(kOffApplied, applied);
    w.store(kOffDirty, 0);
    if (::msync(w.base, kHeaderBytes, MS_SYNC) != 0) {
        return sys(w.path, "msync", err);
    }
    w.applied = applied;
    w.dirty = false;
    return Errc::ok;
}

std::uint64_t Writer::applied() const noexcept { return impl_ ? impl_->applied : 0; }
std::uint64_t Writer::size() const noexcept { return impl_ ? impl_->used : 0; }
std::uint64_t Writer::slots() const noexcept { return impl_ ? impl_->g.slots : 0; }
std::uint64_t Writer::file_bytes() const noexcept { return impl_ ? impl_->bytes : 0; }
std::uint64_t Writer::generation() const noexcept { return impl_ ? impl_->g.generation : 0; }

// ------------------------------------------------------------------------------------ Reader

struct Reader::Impl {
    std::string path;
    std::atomic<const Map*> cur{nullptr};
    std::mutex mu;  // remapping and `maps`
    std::vector<std::unique_ptr<Map>> maps;
    mutable std::mutex status_mu;
    std::atomic<Errc> last{Errc::ok};
    std::string last_msg;

    ~Impl() {
        for (auto& m : maps) ::munmap(const_cast<std::uint8_t*>(m->base), m->bytes);
    }

    void fail(Errc e, std::string msg) {
        std::lock_guard lock(status_mu);
        last.store(e, std::memory_order_relaxed);
        last_msg = std::move(msg);
    }

    static Errc map_path(const std::string& path, std::unique_ptr<Map>& out, std::string& err) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return sys(path, "open", err);
        }
        std::uint8_t* base = nullptr;
        std::uint64_t bytes = 0;
        Errc e = map_file(fd, path, false, base, bytes, err);
        ::close(fd);
        if (e != Errc::ok) return e;
        auto m = std::make_unique<Map>();
        m->base = base;
        m->bytes = bytes;
        m->path = path;
        m->name = m->path;
        if ((e = check_header(ByteView(base, bytes), path, m->g, err)) != Errc::ok) {
            if (base) ::munmap(base, bytes);
            return e;
        }
        out = std::move(m);
        return Errc::ok;
    }

    // The general lookup of `k` in `m` at `time_us` (probing, did:web names, the heap record,
    // a busy slot): key_at's answer; errors go to status().
    std::optional<crypto::PublicKey> lookup(const Map& m, const DidKey& k, std::int64_t time_us) {
        std::uint8_t s[kSlotBytes];
        Errc e = Errc::ok;
        std::string err;
        std::uint64_t i = 0;
        if (find(m, k, s, i, e, err) != 1) {
            if (e != Errc::ok) fail(e, err);
            return std::nullopt;
        }
        auto key = answer(m, i, s, time_us, e, err);
        if (e != Errc::ok) fail(e, err);
        return key;
    }

    // The mapping to use: the current one, remapped first when the writer superseded it.
    const Map* current() {
        const Map* m = cur.load(std::memory_order_acquire);
        if (word(m->base + kOffSuperseded).load(std::memory_order_acquire) == 0) return m;
        std::lock_guard lock(mu);
        const Map* now = cur.load(std::memory_order_acquire);
        if (now != m) return now;
        std::unique_ptr<Map> next;
        std::string err;
        if (Errc e = map_path(path, next, err); e != Errc::ok) {
            fail(e, err);
            return m;  // keep answering from the superseded (still consistent) file
        }
        if (next->g.generation <= m->g.generation) {
            ::munmap(const_cast<std::uint8_t*>(next->base), next->bytes);
            return m;
        }
        ::madvise(const_cast<std::uint8_t*>(m->base), m->bytes, MADV_DONTNEED);
        maps.push_back(std::move(next));
        cur.store(maps.back().get(), std::memory_order_release);
        return maps.back().get();
    }
};

Reader::Reader() = default;
Reader::~Reader() = default;
Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;

Errc Reader::open(const std::string& path, Reader& out, std::string& err) {
    auto r = std::make_unique<Impl>();
    r->path = path;
    std::unique_ptr<Map> m;
    if (Errc e = Impl::map_path(path, m, err); e != Errc::ok) return e;
    r->maps.push_back(std::move(m));
    r->cur.store(r->maps.back().get(), std::memory_order_release);
    out.impl_ = std::move(r);
    return Errc::ok;
}

std::optional<crypto::PublicKey> Reader::key_at(std::string_view did, std::int64_t time_us) const {
    DidKey k;
    if (!parse_did(did, k)) return std::nullopt;
    const Map* m = impl_->current();
    std::optional<crypto::PublicKey> key;
    if (fast_key(*m, k, k.hash() & m->mask(), time_us, key)) return key;
    return impl_->lookup(*m, k, time_us);
}

void Reader::key_at_batch(std::span<const std::string_view> dids, std::span<const std::int64_t> times_us,
                          std::span<std::optional<crypto::PublicKey>> out) const {
    // A two-stage pipeline over chunks of kChunk DIDs: chunk c+1 is parsed and every home slot
    // of it prefetched before chunk c's slots are read, so a whole chunk of cache misses is in
    // flight while the previous chunk is answered. Nothing is written to shared memory.
    constexpr std::size_t kChunk = 64;
    constexpr std::uint64_t kNone = ~std::uint64_t(0);
    const Map* m = impl_->current();
    const std::uint64_t mask = m->mask();
    DidKey keys[2][kChunk];
    std::uint64_t home[2][kChunk];  // home slot index, or kNone for a DID that does not parse
    auto stage = [&](std::size_t chunk) {
        const std::size_t first = chunk * kChunk, n = std::min(kChunk, dids.size() - first);
        DidKey* k = keys[chunk & 1];
        std::uint64_t* h = home[chunk & 1];
        for (std::size_t j = 0; j < n; ++j) {
            h[j] = parse_did(dids[first + j], k[j]) ? k[j].hash() & mask : kNone;
            if (h[j] != kNone) __builtin_prefetch(m->slot(h[j]));
        }
    };
    const std::size_t chunks = (dids.size() + kChunk - 1) / kChunk;
    if (chunks > 0) stage(0);
    for (std::size_t c = 0; c < chunks; ++c) {
        if (c + 1 < chunks) stage(c + 1);
        const std::size_t first = c * kChunk, n = std::min(kChunk, dids.size() - first);
        const DidKey* k = keys[c & 1];
        const std::uint64_t* h = home[c & 1];
        for (std::size_t j = 0; j < n; ++j) {
            auto& o = out[first + j];
            if (h[j] == kNone) o.reset();
            else if (!fast_key(*m, k[j], h[j], times_us[first + j], o)) o = impl_->lookup(*m, k[j], times_us[first + j]);
        }
    }
}

std::optional<Record> Reader::get(std::string_view did) const {
    DidKey k;
    if (!parse_did(did, k)) return std::nullopt;
    const Map* m = impl_->current();
    std::uint8_t s[kSlotBytes];
    Errc e = Errc::ok;
    std::string err;
    std::uint64_t i = 0;
    if (find(*m, k, s, i, e, err) != 1) {
        if (e != Errc::ok) impl_->fail(e, err);
        return std::nullopt;
    }
    Record r;
    if ((e = record_from(*m, s, r, err)) != Errc::ok) {
        impl_->fail(e, err);
        return std::nullopt;
    }
    return r;
}

Errc Reader::for_each_impl(const std::function<void(const Record&)>& fn, std::string& err) const {
    const Map* m = impl_->current();
    std::uint8_t s[kSlotBytes];
    Record r;
    for (std::uint64_t i = 0; i < m->g.slots; ++i) {
        if (!read_slot(m->slot(i), s)) {
            err = at(m->name, kHeaderBytes + i * kSlotBytes, "slot stayed locked for a second (its writer is gone)");
            return Errc::cache_busy;
        }
        if (!(s[kSFlags] & kFUsed)) continue;
        if (Errc e = record_from(*m, s, r, err); e != Errc::ok) return e;
        fn(r);
    }
    return Errc::ok;
}

Errc Reader::status(std::string* err) const {
    std::lock_guard lock(impl_->status_mu);
    if (err) *err = impl_->last_msg;
    return impl_->last.load(std::memory_order_relaxed);
}

std::uint64_t Reader::size() const noexcept {
    return word(impl_->cur.load(std::memory_order_acquire)->base + kOffUsed).load(std::memory_order_relaxed);
}
std::uint64_t Reader::generation() const noexcept { return impl_->cur.load(std::memory_order_acquire)->g.generation; }
std::uint64_t Reader::applied() const noexcept {
    return word(impl_->cur.load(std::memory_order_acquire)->base + kOffApplied).load(std::memory_order_relaxed);
}

// -------------------------------------------------------------------------------- check_file

Errc check_file(ByteView file, std::string& err) {
    const std::string name = "did cache";
    Map m;
    if (Errc e = check_header(file, name, m.g, err); e != Errc::ok) return e;
    // check_header read the counters through atomic_ref: the bytes must be 8-aligned. A caller's
    // buffer is (vectors and mappings are); the fuzz target's copy is too.
    m.base = file.data();
    m.bytes = file.size();
    m.name = name;
    const std::uint64_t heap_used = le::get<std::uint64_t>(file.data() + kOffHeapUsed);
    const std::uint64_t used = le::get<std::uint64_t>(file.data() + kOffUsed);

    // Heap: a chain of whole records up to heap_used; note where each starts.
    std::vector<std::uint8_t> starts(heap_used / 8, 0);  // 1 = DID record, 2 = string record
    for (std::uint64_t off = kHeapFirst; off < heap_used;) {
        const std::uint8_t kind = m.heap()[off + 4];
        if (kind != kKindDid && kind != kKindString) {
            err = at(name, m.g.heap_offset + off + 4, "unknown heap record kind");
            return Errc::cache_corrupt;
        }
        const std::uint8_t* body = nullptr;
        std::uint64_t len = 0;
        if (Errc e = record_at(m, std::uint32_t(off / 8), kind, body, len, err); e != Errc::ok) return e;
        const std::uint64_t next = off + round8(kRecordHead + len);
        if (next > heap_used) {
            err = at(name, m.g.heap_offset + off, "heap record runs past the heap's used end");
            return Errc::cache_corrupt;
        }
        starts[off / 8] = kind;
        if (kind == kKindDid) {
            DidRecordView v;
            if (Errc e = did_record(m, std::uint32_t(off / 8), v, err); e != Errc::ok) return e;
            if (v.pds_ref != 0 && (v.pds_ref >= off / 8 || starts[v.pds_ref] != kKindString)) {
                err = at(name, m.g.heap_offset + off + kRecordHead + 8, "PDS reference is not an earlier string record");
                return Errc::cache_corrupt;
            }
            KeyEpoch ep;
            for (std::uint64_t i = 0; i < v.epochs; ++i) {
                const std::uint64_t eo = m.g.heap_offset + off + kRecordHead + kDidBodyFixed + i * kEpochBytes;
                const std::int64_t prev = i ? le::get<std::int64_t>(v.epoch + (i - 1) * kEpochBytes) : INT64_MIN;
                if (!epoch_of(v, i, ep)) {
                    err = at(name, eo + 8, "epoch curve is not 0, 1 or 2");
                    return Errc::cache_corrupt;
                }
                if (ep.valid_from_us < prev) {
                    err = at(name, eo, "epochs out of time order");
                    return Errc::cache_corrupt;
                }
                if (ep.key && !crypto::parse_public_key(ep.key->curve, ep.key->compressed)) {
                    err = at(name, eo + 9, "epoch key is not a point of its curve");
                    return Errc::cache_corrupt;
                }
            }
        }
        off = next;
    }

    // Slots: flags, keys, references, and the probing invariant (every slot between a DID's
    // home and its slot is occupied).
    std::uint64_t count = 0;
    std::uint64_t run = 0;  // occupied slots ending at the current one, wrapping around once
    std::uint64_t first_free = m.g.slots;
    for (std::uint64_t i = 0; i < m.g.slots; ++i)
        if (!(m.slot(i)[kSFlags] & kFUsed)) {
            first_free = i;
            break;
        }
    if (first_free == m.g.slots && m.g.slots > 0) {
        err = at(name, kHeaderBytes, "no free slot (lookups of absent DIDs would not end)");
        return Errc::cache_corrupt;
    }
    for (std::uint64_t step = 1; step <= m.g.slots; ++step) {
        const std::uint64_t i = (first_free + step) & m.mask();
        const std::uint8_t* s = m.slot(i);
        const std::uint64_t so = kHeaderBytes + i * kSlotBytes;
        const std::uint8_t f = s[kSFlags];
        if (le::get<std::uint32_t>(s) & 1) {
            err = at(name, so, "slot counter is odd (a writer stopped inside an update)");
            return Errc::cache_busy;
        }
        if (!(f & kFUsed)) {
            bool zero = true;
            for (std::size_t b = 4; b < kSlotBytes; ++b) zero = zero && s[b] == 0;
            if (!zero) {
                err = at(name, so + 4, "free slot with non-zero bytes");
                return Errc::cache_corrupt;
            }
            run = 0;
            continue;
        }
        ++run;
        ++count;
        if (f & ~kFKnown) {
            err = at(name, so + kSFlags, "unknown slot flags");
            return Errc::cache_corrupt;
        }
        DidKey k;
        std::memcpy(k.id, s + kSId, 15);
        const std::uint64_t dist = (i - k.hash()) & m.mask();
        if (dist >= run) {
            err = at(name, so, "slot is not reachable from its DID's home slot (a free slot lies between)");
            return Errc::cache_corrupt;
        }
        const std::uint32_t ref = le::get<std::uint32_t>(s + kSRef);
        if (std::uint64_t(ref) * 8 >= heap_used || starts[ref] != kKindDid) {
            err = at(name, so + kSRef, "heap reference is not a DID record");
            return Errc::cache_corrupt;
        }
        DidRecordView v;
        if (Errc e = did_record(m, ref, v, err); e != Errc::ok) return e;
        // No earlier slot of its probe chain holds the same DID (a duplicate would hide it).
        for (std::uint64_t j = k.hash() & m.mask(); j != i; j = (j + 1) & m.mask()) {
            const std::uint8_t* o = m.slot(j);
            if ((o[kSFlags] & kFWeb) != (f & kFWeb) || std::memcmp(o + kSId, k.id, 15) != 0) continue;
            DidRecordView ov;
            const std::uint32_t oref = le::get<std::uint32_t>(o + kSRef);
            if ((f & kFWeb) && (std::uint64_t(oref) * 8 >= heap_used || starts[oref] != kKindDid ||
                                did_record(m, oref, ov, err) != Errc::ok || ov.name != v.name))
                continue;  // another did:web with the same hash, or a slot reported on its own turn
            err = at(name, so, "DID also held by slot " + std::to_string(j));
            return Errc::cache_corrupt;
        }
        if (bool(f & kFWeb) != !v.name.empty()) {
            err = at(name, so + kSFlags, "did:web flag disagrees with the record's name");
            return Errc::cache_corrupt;
        }
        if (f & kFWeb) {
            DidKey wk;
            if (!parse_did(v.name, wk) || !wk.web || std::memcmp(wk.id, k.id, 15) != 0) {
                err = at(name, so + kSId, "did:web id is not the hash of the record's name");
                return Errc::cache_corrupt;
            }
        }
        const std::uint8_t c = s[kSCurve];
        if (f & kFKey) {
            crypto::PublicKey key;
            if (c != 1 && c != 2) {
                err = at(name, so + kSCurve, "slot curve is not 1 or 2");
                return Errc::cache_corrupt;
            }
            key.curve = crypto::Curve(c);
            std::memcpy(key.compressed.data(), s + kSKey, 33);
            KeyEpoch last;
            if (v.epochs == 0 || !epoch_of(v, v.epochs - 1, last) || last.key != key) {
                err = at(name, so + kSKey, "slot key is not the record's current key");
                return Errc::cache_corrupt;
            }
        } else {
            for (std::size_t b = kSCurve; b < kSFrom; ++b)
                if (s[b] != 0 && !(b >= kSId && b < kSKey)) {
                    err = at(name, so + b, "slot without a key has key bytes");
                    return Errc::cache_corrupt;
                }
        }
        if (from_ms_of(s) > kMaxFromMs) {
            err = at(name, so + kSFrom, "current key start past 2^48 ms");
            return Errc::cache_corrupt;
        }
    }
    if (count != used) {
        err = at(name, kOffUsed, "DID count " + std::to_string(used) + " but " + std::to_string(count) + " slots in use");
        return Errc::cache_corrupt;
    }
    return Errc::ok;
}

// ------------------------------------------------------------------------------------ record_of

Record record_of(const plc::State& state) {
    Record r;
    r.did = state.did;
    r.tombstoned = state.tombstoned;
    r.pds = state.pds;
    r.handle = state.handle;
    r.history.reserve(state.key_history.size());
    for (const auto& e : state.key_history) r.history.push_back(KeyEpoch{e.valid_from_us, e.key});
    return r;
}

}  // namespace sov::didcache
