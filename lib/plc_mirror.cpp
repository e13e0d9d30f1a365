// plc_mirror.cpp — the PLC mirror directory (see plc_mirror.h; docs/format-plc-mirror.md).
//
// Crash safety rests on one rule: cursor.json, replaced atomically, is the only commit point.
// It records the cursor and the committed length of every append-only file (the open export
// chunk, ops.bin, rejected.jsonl). A page first appends to those files and fsyncs them, then
// replaces cursor.json; open() truncates each file back to the recorded length and deletes
// chunk files past the open one, so whatever a killed page wrote is dropped and the restarted
// sync fetches and writes it again, to the same bytes.
//  - Sealing a full chunk (one zstd frame instead of one per page) happens after the commit
//    and is idempotent: it rewrites the chunk under a temporary name and renames it, and the
//    decompressed content is the same before and after, so open() simply redoes every seal
//    that cursor.json does not yet record as done.
//  - The DID cache is derived data: it is updated after the commit and synced with
//    applied = cursor.lines. A cache that is dirty (killed mid-update), unreadable or whose
//    applied differs from the cursor is rebuilt from the op store.
//  - After any error inside ingest_page the in-memory state may be ahead of the files, so the
//    Mirror refuses further pages; reopening recovers.
//
// Memory: validation needs every DID's history. Each accepted op is one 56-byte OpRec (CID
// digest, createdAt, flags, signer, the id of its rotation keys joined by '\n' in one interned
// string table, and the offset of its record in ops.bin) in its DID's vector. What only the
// cache needs (signing key, PDS, handle) is read back from ops.bin when a DID's record is
// built: after each page for the DIDs it touched, and for every DID when rebuilding.
#include "sovereign/plc_mirror.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "internal/plc_apply.h"
#include "sovereign/blake3.h"
#include "sovereign/cid.h"
#include "sovereign/file.h"
#include "sovereign/syntax.h"

namespace sov::plc {
namespace {

namespace fs = std::filesystem;

constexpr char kOpMagic[8] = {'S', 'O', 'V', 'P', 'L', 'C', 'O', 'P'};
constexpr std::uint32_t kOpVersion = 1;
constexpr std::size_t kOpHeaderBytes = 16;
constexpr std::uint32_t kMaxRecordBytes = 1 << 20;
constexpr std::uint32_t kNone = 0xFFFFFFFF;
constexpr int kPageLevel = 3;   // zstd level of a page's frame
constexpr int kSealLevel = 9;   // zstd level of a sealed chunk

enum : std::uint8_t { kTombstone = 1, kLegacyCreate = 2, kNullified = 4 };

using Digest = std::array<std::uint8_t, 32>;

/// Interned strings; id 0 is "". A deque keeps every string in place, so the map's keys
/// (views into it) stay valid.
class Strings {
public:
    Strings() { v_.emplace_back(); }
    std::uint32_t intern(std::string_view s) {
        if (s.empty()) return 0;
        if (auto it = map_.find(s); it != map_.end()) return it->second;
        v_.emplace_back(s);
        const auto id = std::uint32_t(v_.size() - 1);
        map_.emplace(std::string_view(v_.back()), id);
        return id;
    }
    const std::string& get(std::uint32_t id) const { return v_[id]; }

private:
    std::deque<std::string> v_;
    std::unordered_map<std::string_view, std::uint32_t> map_;
};

struct OpRec {
    Digest digest{};
    std::int64_t created_at_us = 0;
    std::uint64_t at = 0;        // offset of its record in ops.bin
    std::uint32_t rotation = 0;  // id in Strings of the rotation keys joined by '\n'
    std::uint8_t flags = 0, signer = 0;
};

using Logs = std::unordered_map<std::string, std::vector<OpRec>>;

/// Appends with a slow growth: most DIDs have one to three ops, and a doubling vector would
/// leave a quarter to a half of their OpRecs unused.
void append_op(std::vector<OpRec>& log, const OpRec& o) {
    if (log.size() == log.capacity()) log.reserve(log.size() < 4 ? log.size() + 1 : log.size() + log.size() / 2);
    log.push_back(o);
}

std::optional<Digest> digest_of(std::string_view cid_text) {
    cid::Cid c;
    if (cid::from_string(cid_text, c) != Errc::ok) return std::nullopt;
    const ByteView b = c.bytes();
    static constexpr std::uint8_t kPrefix[4] = {0x01, 0x71, 0x12, 0x20};
    if (b.size() != 36 || std::memcmp(b.data(), kPrefix, 4) != 0) return std::nullopt;
    Digest d;
    std::memcpy(d.data(), b.data() + 4, 32);
    return d;
}

std::string cid_text_of(const Digest& d) {
    std::uint8_t b[36] = {0x01, 0x71, 0x12, 0x20};
    std::memcpy(b + 4, d.data(), 32);
    return cid::to_string(ByteView(b, 36));
}

/// The History of internal/plc_apply.h over a DID's compact records.
struct CompactHistory {
    const std::vector<OpRec>& ops;
    const Strings& strings;
    mutable std::string last_text;
    mutable std::optional<Digest> last_digest;

    std::size_t size() const { return ops.size(); }
    bool cid_is(std::size_t i, const std::string& cid) const {
        if (cid != last_text || (last_text.empty() && !last_digest)) {
            last_text = cid;
            last_digest = digest_of(cid);
        }
        return last_digest && *last_digest == ops[i].digest;
    }
    std::string cid(std::size_t i) const { return cid_text_of(ops[i].digest); }
    bool nullified(std::size_t i) const { return ops[i].flags & kNullified; }
    bool tombstone(std::size_t i) const { return ops[i].flags & kTombstone; }
    std::int64_t created_at_us(std::size_t i) const { return ops[i].created_at_us; }
    std::string created_at(std::size_t i) const { return syntax::format_datetime_micros(ops[i].created_at_us); }
    std::size_t signer(std::size_t i) const { return ops[i].signer; }
    std::vector<std::string> rotation_keys(std::size_t i) const {
        std::vector<std::string> out;
        std::string_view s = strings.get(ops[i].rotation);
        while (!s.empty()) {
            const auto nl = s.find('\n');
            out.emplace_back(s.substr(0, nl));
            if (nl == std::string_view::npos) break;
            s.remove_prefix(nl + 1);
        }
        return out;
    }
};

/// What an op sets for the cache, read back from its op store record.
struct CacheFields {
    std::string signing, pds, handle;
};

/// The cache record of a DID's compact log: the rules of plc::Log::state + didcache::record_of.
/// `fields(op, out)` reads an op's CacheFields; its error is returned.
template <class Fields>
Errc record_of_ops(const std::string& did, const std::vector<OpRec>& ops, Fields&& fields, didcache::Record& r) {
    r = didcache::Record{};
    r.did = did;
    const OpRec* head = nullptr;
    CacheFields f, head_fields;
    std::string last_key;
    for (const OpRec& o : ops) {
        if (o.flags & kNullified) continue;
        head = &o;
        f = CacheFields{};
        if (!(o.flags & kTombstone))
            if (Errc e = fields(o, f); e != Errc::ok) return e;
        if (r.history.empty() || f.signing != last_key) {
            didcache::KeyEpoch e;
            e.valid_from_us = o.created_at_us;
            if (!f.signing.empty())
                if (auto k = crypto::parse_did_key(f.signing)) e.key = *k;
            r.history.push_back(std::move(e));
            last_key = f.signing;
        }
        head_fields = f;
    }
    if (head && (head->flags & kTombstone)) r.tombstoned = true;
    else if (head) {
        r.pds = std::move(head_fields.pds);
        r.handle = std::move(head_fields.handle);
    }
    return Errc::ok;
}

/// The Errc's identifier, as rejected.jsonl names it: every code parsing and validating an
/// export line can give (errc.h has only descriptions); others as "errc_<number>".
std::string errc_name(Errc e) {
    switch (e) {
#define SOV_NAME(x) \
    case Errc::x: return #x;
        SOV_NAME(truncated) SOV_NAME(trailing_bytes) SOV_NAME(too_large) SOV_NAME(json_parse)
        SOV_NAME(json_bad_data_model) SOV_NAME(base_bad_char) SOV_NAME(base_bad_padding) SOV_NAME(key_bad_multibase)
        SOV_NAME(key_bad_codec) SOV_NAME(key_bad_point) SOV_NAME(sig_bad_length) SOV_NAME(sig_high_s)
        SOV_NAME(sig_invalid) SOV_NAME(cid_bad_text) SOV_NAME(syntax_datetime) SOV_NAME(plc_malformed)
        SOV_NAME(plc_limit) SOV_NAME(plc_cid_mismatch) SOV_NAME(plc_did_mismatch) SOV_NAME(plc_bad_prev)
        SOV_NAME(plc_prev_nullified) SOV_NAME(plc_after_tombstone) SOV_NAME(plc_nullify_key)
        SOV_NAME(plc_nullify_late) SOV_NAME(plc_time_order) SOV_NAME(plc_duplicate)
#undef SOV_NAME
        default: return "errc_" + std::to_string(int(e));
    }
}

// ---------------------------------------------------------------- op store records

void put_u16(std::string& b, std::uint16_t v) {
    b.push_back(char(v & 0xff));
    b.push_back(char(v >> 8));
}
void put_u32(std::string& b, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& b, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
}
void put_str(std::string& b, std::string_view s) {
    put_u16(b, std::uint16_t(s.size()));
    b.append(s);
}
std::uint32_t get_u32(const std::uint8_t* p) {
    return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}
std::uint64_t get_u64(const std::uint8_t* p) {
    return std::uint64_t(get_u32(p)) | std::uint64_t(get_u32(p + 4)) << 32;
}
std::uint32_t checksum(ByteView payload) {
    const auto d = blake3::hash(payload);
    return get_u32(d.data());
}

std::string op_store_header() {
    std::string h(kOpMagic, 8);
    put_u32(h, kOpVersion);
    put_u32(h, 0);
    return h;
}

/// Appends the record of one accepted op (docs/format-plc-mirror.md §5) to `out`.
void encode_record(std::string& out, const std::string& did, const OpRec& o, std::uint32_t nullify_from,
                   std::string_view rotation, const CacheFields& f) {
    std::string p;
    p.push_back(char(1));  // kind: accepted op
    p.push_back(char(o.flags & (kTombstone | kLegacyCreate)));
    p.push_back(char(o.signer));
    p.push_back(char(0));
    put_u32(p, nullify_from);
    put_u64(p, std::uint64_t(o.created_at_us));
    p.append(reinterpret_cast<const char*>(o.digest.data()), 32);
    put_str(p, did);
    put_str(p, rotation);
    put_str(p, f.signing);
    put_str(p, f.pds);
    put_str(p, f.handle);
    put_u32(out, std::uint32_t(p.size()));
    put_u32(out, checksum(ByteView(reinterpret_cast<const std::uint8_t*>(p.data()), p.size())));
    out += p;
}

/// Loads op store bytes into `logs`/`strings`. mirror_corrupt with `err` = "<name>: offset N: why".
Errc load_ops(ByteView file, const std::string& name, Logs& logs, Strings& strings, std::uint64_t& ops,
              std::string& err) {
    auto bad = [&](std::size_t off, const std::string& why) {
        err = name + ": offset " + std::to_string(off) + ": " + why;
        return Errc::mirror_corrupt;
    };
    ops = 0;
    if (file.size() < kOpHeaderBytes) return bad(0, "shorter than the 16-byte header");
    if (std::memcmp(file.data(), kOpMagic, 8) != 0) return bad(0, "not an op store (bad magic)");
    if (get_u32(file.data() + 8) != kOpVersion) return bad(8, "op store version " + std::to_string(get_u32(file.data() + 8)) + " is not 1");
    std::size_t off = kOpHeaderBytes;
    while (off < file.size()) {
        if (file.size() - off < 8) return bad(off, "record header cut short");
        const std::uint32_t len = get_u32(file.data() + off);
        if (len < 48 + 10 || len > kMaxRecordBytes) return bad(off, "record length " + std::to_string(len) + " out of range");
        if (file.size() - off - 8 < len) return bad(off, "record of " + std::to_string(len) + " bytes cut short");
        const std::uint8_t* p = file.data() + off + 8;
        if (checksum(ByteView(p, len)) != get_u32(file.data() + off + 4)) return bad(off, "record checksum mismatch");
        if (p[0] != 1) return bad(off + 8, "unknown record kind " + std::to_string(p[0]));
        if (p[1] & ~(kTombstone | kLegacyCreate)) return bad(off + 9, "unknown flags");
        OpRec o;
        o.flags = p[1];
        o.signer = p[2];
        const std::uint32_t nullify_from = get_u32(p + 4);
        o.created_at_us = std::int64_t(get_u64(p + 8));
        std::memcpy(o.digest.data(), p + 16, 32);
        std::size_t at = 48;
        std::string_view s[5];
        for (auto& str : s) {
            if (len - at < 2) return bad(off + 8 + at, "string length past the record");
            const std::size_t n = std::size_t(p[at]) | std::size_t(p[at + 1]) << 8;
            at += 2;
            if (len - at < n) return bad(off + 8 + at, "string past the record");
            str = std::string_view(reinterpret_cast<const char*>(p + at), n);
            at += n;
        }
        if (at != len) return bad(off + 8 + at, "bytes after the record's fields");
        if (!s[0].starts_with("did:")) return bad(off + 56, "not a DID");
        auto& log = logs[std::string(s[0])];
        if (nullify_from != kNone) {
            if (nullify_from >= log.size()) return bad(off + 12, "nullifies op " + std::to_string(nullify_from) + " of a log of " + std::to_string(log.size()));
            for (std::size_t i = nullify_from; i < log.size(); ++i) log[i].flags |= kNullified;
        }
        if (!log.empty() && o.created_at_us <= log.back().created_at_us) return bad(off + 16, "createdAt not after the previous op of the DID");
        o.rotation = strings.intern(s[1]);
        o.at = off;
        append_op(log, o);
        ++ops;
        off += 8 + len;
    }
    return Errc::ok;
}

// ---------------------------------------------------------------- files

Errc sys_fail(const std::string& path, const char* what, std::string& err) {
    const int e = errno;
    err = path + ": " + what + ": " + std::strerror(e);
    return from_errno(e);
}

/// Appends `data` to `path` (created when absent) and fsyncs it. `created` says it was new.
Errc append_file(const std::string& path, std::string_view data, bool& created, std::string& err) {
    created = ::access(path.c_str(), F_OK) != 0;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return sys_fail(path, "open", err);
    Errc e = file::write_all(fd, ByteView(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()), path, err);
    if (e == Errc::ok && ::fsync(fd) != 0) e = sys_fail(path, "fsync", err);
    ::close(fd);
    return e;
}

/// Size of `path`, or -1 when absent.
std::int64_t file_size(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return -1;
    return st.st_size;
}

/// Truncates `path` to exactly `len` bytes (mirror_corrupt when it is shorter) and fsyncs it.
Errc truncate_to(const std::string& path, std::uint64_t len, std::string& err) {
    const std::int64_t size = file_size(path);
    if (size < 0) {
        if (len == 0) return Errc::ok;
        err = path + ": missing, but cursor.json commits " + std::to_string(len) + " bytes of it";
        return Errc::mirror_corrupt;
    }
    if (std::uint64_t(size) < len) {
        err = path + ": offset " + std::to_string(size) + ": file ends before its committed length " + std::to_string(len);
        return Errc::mirror_corrupt;
    }
    if (std::uint64_t(size) == len) return Errc::ok;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return sys_fail(path, "open", err);
    Errc e = Errc::ok;
    if (::ftruncate(fd, off_t(len)) != 0) e = sys_fail(path, "truncate", err);
    else if (::fsync(fd) != 0) e = sys_fail(path, "fsync", err);
    ::close(fd);
    return e;
}

Errc compress(std::string_view in, int level, std::string& out, const std::string& path, std::string& err) {
    out.resize(ZSTD_compressBound(in.size()));
    const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
    if (ZSTD_isError(n)) {
        err = path + ": zstd: " + ZSTD_getErrorName(n);
        return Errc::io_error;
    }
    out.resize(n);
    return Errc::ok;
}

/// Every frame of a chunk file, decompressed and concatenated.
Errc decompress_all(ByteView in, std::string& out, const std::string& path, std::string& err) {
    out.clear();
    ZSTD_DCtx* d = ZSTD_createDCtx();
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    std::vector<char> buf(ZSTD_DStreamOutSize());
    std::size_t last = 0;
    for (;;) {
        ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
        last = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(last)) {
            ZSTD_freeDCtx(d);
            err = path + ": offset " + std::to_string(ib.pos) + ": zstd: " + ZSTD_getErrorName(last);
            return Errc::mirror_corrupt;
        }
        out.append(buf.data(), ob.pos);
        if (ib.pos == ib.size && ob.pos < ob.size) break;  // all input read, nothing held back
    }
    ZSTD_freeDCtx(d);
    if (last != 0) {
        err = path + ": offset " + std::to_string(in.size()) + ": zstd frame cut short";
        return Errc::mirror_corrupt;
    }
    return Errc::ok;
}

}  // namespace

std::string chunk_name(std::uint64_t k) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%08llu.jsonl.zst", static_cast<unsigned long long>(k));
    return buf;
}

// ---------------------------------------------------------------- Mirror

struct Mirror::Impl {
    std::string dir;
    MirrorOptions opt;
    int lock_fd = -1;
    Cursor cur;
    std::uint64_t sealed = 0;          // chunks [0, sealed) are single frames
    std::uint64_t chunk_bytes = 0;     // committed bytes of the open chunk (lines / ops_per_chunk)
    std::uint64_t ops_bytes = 0;       // committed bytes of ops.bin
    std::uint64_t rejected_bytes = 0;  // committed bytes of rejected.jsonl
    PageStats totals;
    Strings strings;
    Logs logs;
    std::uint64_t ops = 0;
    int ops_fd = -1;  // ops.bin, read-only: CacheFields of committed records
    didcache::Writer cache;
    bool cache_open = false;

    ~Impl() {
        if (ops_fd >= 0) ::close(ops_fd);
    }
    Errc failed = Errc::ok;
    std::string failed_err;

    std::string path(std::string_view name) const { return dir + "/" + std::string(name); }
    std::string chunk_path(std::uint64_t k) const { return dir + "/export/" + chunk_name(k); }

    Errc write_cursor(std::string& err) const;
    Errc read_fields(const OpRec& o, CacheFields& f, std::string& err) const;
    Errc record(const std::string& did, const std::vector<OpRec>& ops, didcache::Record& r, std::string& err) const {
        return record_of_ops(did, ops, [&](const OpRec& o, CacheFields& f) { return read_fields(o, f, err); }, r);
    }
    Errc read_cursor(std::string& err);
    Errc seal(std::uint64_t k, std::string& err) const;
    Errc recover_export(std::string& err);
    Errc open_cache(std::string& err);
    Errc rebuild_cache(std::string& err);
    void reject(std::string& out, std::string_view line, std::uint64_t index, const ExportLine* el, Errc e,
                const std::string& reason) const;
};

Errc Mirror::Impl::read_fields(const OpRec& o, CacheFields& f, std::string& err) const {
    const std::string p = path("ops.bin");
    std::uint8_t head[8];
    if (Errc e = file::pread_all(ops_fd, o.at, head, 8, p, err); e != Errc::ok) return e == Errc::truncated ? Errc::mirror_corrupt : e;
    const std::uint32_t len = get_u32(head);
    if (len < 58 || len > kMaxRecordBytes) {
        err = p + ": offset " + std::to_string(o.at) + ": record length " + std::to_string(len) + " out of range";
        return Errc::mirror_corrupt;
    }
    std::vector<std::uint8_t> b(len);
    if (Errc e = file::pread_all(ops_fd, o.at + 8, b.data(), len, p, err); e != Errc::ok) return e == Errc::truncated ? Errc::mirror_corrupt : e;
    std::size_t at = 48;
    std::string_view s[5];
    for (auto& str : s) {
        const std::size_t n = at + 2 <= len ? std::size_t(b[at]) | std::size_t(b[at + 1]) << 8 : len;
        if (at + 2 + n > len) {
            err = p + ": offset " + std::to_string(o.at) + ": record changed since it was loaded";
            return Errc::mirror_corrupt;
        }
        str = std::string_view(reinterpret_cast<const char*>(b.data() + at + 2), n);
        at += 2 + n;
    }
    f.signing = s[2];
    f.pds = s[3];
    f.handle = s[4];
    return Errc::ok;
}

Errc Mirror::Impl::write_cursor(std::string& err) const {
    nlohmann::ordered_json j;
    j["version"] = 1;
    j["seq"] = cur.seq;
    j["created_at"] = cur.created_at;
    j["boundary_cids"] = cur.boundary_cids;
    j["lines"] = cur.lines;
    j["source"] = cur.source;
    j["source_offset"] = cur.source_offset;
    j["ops_per_chunk"] = opt.ops_per_chunk;
    j["sealed_chunks"] = sealed;
    j["chunk_bytes"] = chunk_bytes;
    j["ops_bytes"] = ops_bytes;
    j["rejected_bytes"] = rejected_bytes;
    j["accepted"] = totals.accepted;
    j["rejected"] = totals.rejected;
    j["duplicates"] = totals.duplicates;
    const std::string text = j.dump() + "\n";
    return file::atomic_replace(path("cursor.json"), ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), err);
}

Errc Mirror::Impl::read_cursor(std::string& err) {
    const std::string p = path("cursor.json");
    std::vector<std::uint8_t> bytes;
    if (Errc e = file::read_file(p, bytes, err); e != Errc::ok) return e;
    const auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
    auto bad = [&](const std::string& why) {
        err = p + ": " + why;
        return Errc::mirror_corrupt;
    };
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
    auto u64 = [&](const char* k, std::uint64_t& out) {
        auto it = j.find(k);
        if (it == j.end() || !it->is_number_unsigned()) return false;
        out = it->get<std::uint64_t>();
        return true;
    };
    std::uint64_t version = 0, opc = 0;
    if (!u64("version", version) || version != 1) return bad("version is not 1");
    if (!u64("seq", cur.seq) || !u64("lines", cur.lines) || !u64("ops_per_chunk", opc) || opc == 0 ||
        !u64("sealed_chunks", sealed) || !u64("chunk_bytes", chunk_bytes) || !u64("ops_bytes", ops_bytes) ||
        !u64("rejected_bytes", rejected_bytes) || !u64("accepted", totals.accepted) || !u64("rejected", totals.rejected) ||
        !u64("duplicates", totals.duplicates) || !u64("source_offset", cur.source_offset))
        return bad("a counter is missing or not an unsigned integer");
    auto ca = j.find("created_at");
    auto bc = j.find("boundary_cids");
    if (ca == j.end() || !ca->is_string() || bc == j.end() || !bc->is_array()) return bad("created_at or boundary_cids missing");
    cur.created_at = ca->get<std::string>();
    if (auto src = j.find("source"); src != j.end() && src->is_string()) cur.source = src->get<std::string>();
    else return bad("source missing");
    cur.created_at_us = 0;
    if (!cur.created_at.empty()) {
        auto us = syntax::parse_datetime_micros(cur.created_at);
        if (!us) return bad("created_at is not a datetime");
        cur.created_at_us = *us;
    }
    cur.boundary_cids.clear();
    for (const auto& c : *bc) {
        if (!c.is_string()) return bad("boundary_cids holds a non-string");
        cur.boundary_cids.push_back(c.get<std::string>());
    }
    opt.ops_per_chunk = opc;
    totals.lines = cur.lines;
    if (sealed > cur.lines / opc) return bad("sealed_chunks past the open chunk");
    return Errc::ok;
}

Errc Mirror::Impl::seal(std::uint64_t k, std::string& err) const {
    const std::string p = chunk_path(k);
    std::vector<std::uint8_t> bytes;
    if (Errc e = file::read_file(p, bytes, err); e != Errc::ok) {
        if (e == Errc::io_not_found) {
            err = p + ": missing (a full chunk of the export)";
            return Errc::mirror_corrupt;
        }
        return e;
    }
    std::string plain, packed;
    if (Errc e = decompress_all(ByteView(bytes.data(), bytes.size()), plain, p, err); e != Errc::ok) return e;
    if (Errc e = compress(plain, kSealLevel, packed, p, err); e != Errc::ok) return e;
    if (packed.size() == bytes.size() && std::memcmp(packed.data(), bytes.data(), bytes.size()) == 0) return Errc::ok;
    const std::string tmp = p + ".tmp";
    if (Errc e = file::write_file(tmp, ByteView(reinterpret_cast<const std::uint8_t*>(packed.data()), packed.size()), err); e != Errc::ok)
        return e;
    if (Errc e = file::rename(tmp, p, err); e != Errc::ok) return e;
    return file::fsync_dir(dir + "/export", err);
}

Errc Mirror::Impl::recover_export(std::string& err) {
    const std::uint64_t open_chunk = cur.lines / opt.ops_per_chunk;
    const std::string edir = dir + "/export";
    std::error_code ec;
    bool removed = false;
    for (const auto& de : fs::directory_iterator(edir, ec)) {
        const std::string name = de.path().filename().string();
        const bool tmp = name.ends_with(".tmp");
        std::uint64_t k = 0;
        const bool chunk = !tmp && name.size() == 18 && name.ends_with(".jsonl.zst") &&
                           std::all_of(name.begin(), name.begin() + 8, [](char c) { return c >= '0' && c <= '9'; });
        if (chunk) k = std::stoull(name.substr(0, 8));
        if (tmp || (chunk && k > open_chunk) || (chunk && k == open_chunk && chunk_bytes == 0)) {
            if (::unlink(de.path().c_str()) != 0) return sys_fail(de.path().string(), "unlink", err);
            removed = true;
        }
    }
    if (ec) {
        err = edir + ": " + ec.message();
        return Errc::io_error;
    }
    if (removed)
        if (Errc e = file::fsync_dir(edir, err); e != Errc::ok) return e;
    for (std::uint64_t k = 0; k < open_chunk; ++k)
        if (file_size(chunk_path(k)) < 0) {
            err = chunk_path(k) + ": missing (chunk " + std::to_string(k) + " of " + std::to_string(open_chunk) + " full chunks)";
            return Errc::mirror_corrupt;
        }
    if (Errc e = truncate_to(chunk_path(open_chunk), chunk_bytes, err); e != Errc::ok) return e;
    if (sealed < open_chunk) {
        for (std::uint64_t k = sealed; k < open_chunk; ++k)
            if (Errc e = seal(k, err); e != Errc::ok) return e;
        sealed = open_chunk;
        return write_cursor(err);
    }
    return Errc::ok;
}

Errc Mirror::Impl::rebuild_cache(std::string& err) {
    cache = didcache::Writer();
    cache_open = false;
    const std::string p = path(didcache::kFileName);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return sys_fail(p, "unlink", err);
    std::uint64_t slots = std::max<std::uint64_t>(opt.cache_slots, 1024);
    while (slots < logs.size() * 2) slots *= 2;
    if (Errc e = didcache::Writer::open(p, cache, err, slots); e != Errc::ok) return e;
    cache_open = true;
    didcache::Record r;
    for (const auto& [did, ops] : logs) {
        if (Errc e = record(did, ops, r, err); e != Errc::ok) return e;
        if (Errc e = cache.put(r, err); e != Errc::ok) return e;
    }
    return cache.sync(cur.lines, err);
}

Errc Mirror::Impl::open_cache(std::string& err) {
    const std::string p = path(didcache::kFileName);
    Errc e = didcache::Writer::open(p, cache, err, opt.cache_slots);
    if (e == Errc::cache_locked || (int(e) >= 1400 && int(e) < 1500) || e == Errc::io_error) return e;
    if (e == Errc::ok) {
        cache_open = true;
        if (cache.applied() == cur.lines) return Errc::ok;
        err = p + ": applied " + std::to_string(cache.applied()) + " lines, the cursor " + std::to_string(cur.lines);
        e = Errc::cache_dirty;
    }
    if (!opt.rebuild_cache_ok) return e;
    return rebuild_cache(err);
}

void Mirror::Impl::reject(std::string& out, std::string_view line, std::uint64_t index, const ExportLine* el, Errc e,
                          const std::string& reason) const {
    nlohmann::ordered_json j;
    j["index"] = index;
    if (el) {
        if (el->form == ExportLine::Form::sequenced) j["seq"] = el->seq;
        j["did"] = el->did;
        j["cid"] = el->cid;
        j["createdAt"] = el->created_at;
    }
    j["error"] = errc_name(e);
    j["code"] = int(e);
    j["reason"] = reason;
    j["line"] = std::string(line);
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += '\n';
}

Mirror::Mirror() = default;
Mirror::~Mirror() {
    std::string err;
    close(err);
}
Mirror::Mirror(Mirror&&) noexcept = default;
Mirror& Mirror::operator=(Mirror&& o) noexcept {
    if (this != &o) {
        std::string err;
        close(err);
        impl_ = std::move(o.impl_);
    }
    return *this;
}

const Cursor& Mirror::cursor() const {
    static const Cursor empty;
    return impl_ ? impl_->cur : empty;
}
std::uint64_t Mirror::dids() const { return impl_ ? impl_->logs.size() : 0; }
PageStats Mirror::totals() const { return impl_ ? impl_->totals : PageStats{}; }
const std::string& Mirror::dir() const {
    static const std::string empty;
    return impl_ ? impl_->dir : empty;
}

std::optional<didcache::Record> Mirror::record(std::string_view did) const {
    if (!impl_) return std::nullopt;
    auto it = impl_->logs.find(std::string(did));
    if (it == impl_->logs.end()) return std::nullopt;
    didcache::Record r;
    std::string err;
    if (impl_->record(it->first, it->second, r, err) != Errc::ok) return std::nullopt;
    return r;
}

Errc Mirror::open(const std::string& dir, Mirror& out, std::string& err, MirrorOptions opt) {
    out = Mirror();
    if (opt.ops_per_chunk == 0) {
        err = dir + ": ops_per_chunk must be at least 1";
        return Errc::bad_argument;
    }
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    impl->opt = opt;
    for (const std::string& d : {dir, dir + "/export"})
        if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return sys_fail(d, "mkdir", err);
    const std::string lock = impl->path("lock");
    impl->lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (impl->lock_fd < 0) return sys_fail(lock, "open", err);
    if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        ::close(impl->lock_fd);
        impl->lock_fd = -1;
        if (e == EWOULDBLOCK) {
            err = lock + ": another plc-sync holds this mirror";
            return Errc::mirror_locked;
        }
        errno = e;
        return sys_fail(lock, "flock", err);
    }
    // From here on, a failure closes the lock through ~Impl's owner (out keeps nothing).
    struct Unlock {
        Impl* i;
        ~Unlock() {
            if (i && i->lock_fd >= 0) ::close(i->lock_fd);
        }
    } guard{impl.get()};

    // Leftovers of a killed atomic replace or cache growth (we hold the lock: no writer is
    // mid-growth now). didcache::Writer reuses its temporary file but does not delete it.
    ::unlink(impl->path("cursor.json.tmp").c_str());
    ::unlink((impl->path(didcache::kFileName) + ".tmp").c_str());
    if (file_size(impl->path("cursor.json")) >= 0) {
        if (Errc e = impl->read_cursor(err); e != Errc::ok) return e;
    }
    // A new mirror (or one killed before its first commit) starts from empty files.
    if (Errc e = impl->recover_export(err); e != Errc::ok) return e;
    const std::string ops_path = impl->path("ops.bin");
    if (impl->ops_bytes < kOpHeaderBytes) {
        const std::string h = op_store_header();
        if (Errc e = file::write_file(ops_path, ByteView(reinterpret_cast<const std::uint8_t*>(h.data()), h.size()), err); e != Errc::ok)
            return e;
        impl->ops_bytes = kOpHeaderBytes;
    } else {
        if (Errc e = truncate_to(ops_path, impl->ops_bytes, err); e != Errc::ok) return e;
    }
    impl->ops_fd = ::open(ops_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (impl->ops_fd < 0) return sys_fail(ops_path, "open", err);
    {   // One linear scan of the mapped file: its pages are the page cache's, not our heap.
        void* map = ::mmap(nullptr, impl->ops_bytes, PROT_READ, MAP_PRIVATE, impl->ops_fd, 0);
        if (map == MAP_FAILED) return sys_fail(ops_path, "mmap", err);
        ::madvise(map, impl->ops_bytes, MADV_SEQUENTIAL);
        const Errc e = load_ops(ByteView(static_cast<const std::uint8_t*>(map), impl->ops_bytes), ops_path, impl->logs,
                                impl->strings, impl->ops, err);
        ::munmap(map, impl->ops_bytes);
        if (e != Errc::ok) return e;
    }
    if (Errc e = truncate_to(impl->path("rejected.jsonl"), impl->rejected_bytes, err); e != Errc::ok) return e;
    bool created = false;  // an empty rejected.jsonl from the start, for readers
    if (Errc e = append_file(impl->path("rejected.jsonl"), {}, created, err); e != Errc::ok) return e;
    if (Errc e = impl->open_cache(err); e != Errc::ok) return e;
    guard.i = nullptr;
    out.impl_ = std::move(impl);
    return Errc::ok;
}

Errc Mirror::ingest_page(std::string_view body, PageStats& stats, std::string& err,
                         const std::pair<std::string, std::uint64_t>* source) {
    stats = PageStats{};
    if (!impl_) {
        err = "mirror not open";
        return Errc::bad_argument;
    }
    Impl& m = *impl_;
    if (m.failed != Errc::ok) {
        err = m.failed_err + " (earlier in this run; reopen the mirror to recover)";
        return m.failed;
    }
    const std::uint64_t opc = m.opt.ops_per_chunk;
    Cursor nc = m.cur;
    std::map<std::uint64_t, std::string> chunks;  // chunk → new lines
    std::string op_records, rejected;
    std::set<std::string> touched;
    ExportLine el;
    Problem why;
    static const std::vector<OpRec> kEmpty;

    while (!body.empty()) {
        const auto nl = body.find('\n');
        const std::string_view line = body.substr(0, nl);
        body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // not a line
        const Errc pe = parse_export_line(line, el, why);
        if (pe == Errc::ok) {
            const bool dup = el.form == ExportLine::Form::sequenced
                                 ? (nc.seq != 0 && el.seq <= nc.seq)
                                 : (!nc.created_at.empty() &&
                                    (el.created_at_us < nc.created_at_us ||
                                     (el.created_at_us == nc.created_at_us &&
                                      std::find(nc.boundary_cids.begin(), nc.boundary_cids.end(), el.cid) != nc.boundary_cids.end())));
            if (dup) {
                ++stats.duplicates;
                continue;
            }
        }
        const std::uint64_t index = nc.lines++;
        ++stats.lines;
        std::string& chunk = chunks[index / opc];
        chunk.append(line);
        chunk.push_back('\n');
        if (pe != Errc::ok) {
            m.reject(rejected, line, index, nullptr, pe, "offset " + std::to_string(why.offset) + ": " + why.reason);
            ++stats.rejected;
            continue;
        }
        if (el.form == ExportLine::Form::sequenced) nc.seq = std::max(nc.seq, el.seq);
        else if (nc.created_at.empty() || el.created_at_us > nc.created_at_us) {
            nc.created_at = el.created_at;
            nc.created_at_us = el.created_at_us;
            nc.boundary_cids.assign(1, el.cid);
        } else if (el.created_at_us == nc.created_at_us) nc.boundary_cids.push_back(el.cid);

        auto it = m.logs.find(el.did);
        const std::vector<OpRec>& ops = it == m.logs.end() ? kEmpty : it->second;
        detail::Verdict v;
        const Errc ve = detail::apply_op(CompactHistory{ops, m.strings, {}, {}}, el.did, m.opt.limits, el, why, v);
        if (ve != Errc::ok) {
            m.reject(rejected, line, index, &el, ve, why.reason);
            ++stats.rejected;
            continue;
        }
        OpRec o;
        o.digest = *digest_of(v.cid);
        o.created_at_us = el.created_at_us;
        o.signer = std::uint8_t(v.signer);
        std::string rot;
        CacheFields cf;
        if (el.op.type == OpType::tombstone) o.flags |= kTombstone;
        else {
            if (el.op.type == OpType::legacy_create) o.flags |= kLegacyCreate;
            const Operation n = normalise(el.op);
            for (const auto& k : n.rotation_keys) {
                if (!rot.empty()) rot.push_back('\n');
                rot += k;
            }
            o.rotation = m.strings.intern(rot);
            for (const auto& [id, key] : n.verification_methods)
                if (id == "atproto") cf.signing = key;
            for (const auto& sv : n.services)
                if (sv.id == "atproto_pds" && sv.type == "AtprotoPersonalDataServer") cf.pds = sv.endpoint;
            for (const auto& aka : n.also_known_as)
                if (aka.starts_with("at://")) {
                    cf.handle = aka.substr(5);
                    break;
                }
        }
        std::vector<OpRec>& log = it == m.logs.end() ? m.logs[el.did] : it->second;
        if (v.nullify_from != std::size_t(-1))
            for (std::size_t i = v.nullify_from; i < log.size(); ++i) log[i].flags |= kNullified;
        o.at = m.ops_bytes + op_records.size();
        encode_record(op_records, el.did, o, v.nullify_from == std::size_t(-1) ? kNone : std::uint32_t(v.nullify_from), rot, cf);
        append_op(log, o);
        ++m.ops;
        touched.insert(el.did);
        ++stats.accepted;
    }

    // Commit: data files first (fsynced), then cursor.json, then seals, then the cache.
    auto fail = [&](Errc e) {
        m.failed = e;
        m.failed_err = err;
        return e;
    };
    if (source) {
        nc.source = source->first;
        nc.source_offset = source->second;
    }
    const std::uint64_t open_chunk = nc.lines / opc;
    std::uint64_t chunk_bytes = open_chunk == m.cur.lines / opc ? m.chunk_bytes : 0;
    bool new_file = false;
    for (const auto& [k, text] : chunks) {
        std::string frame;
        if (Errc e = compress(text, kPageLevel, frame, m.chunk_path(k), err); e != Errc::ok) return fail(e);
        bool created = false;
        if (Errc e = append_file(m.chunk_path(k), frame, created, err); e != Errc::ok) return fail(e);
        new_file |= created;
        if (k == open_chunk) chunk_bytes += frame.size();
    }
    if (new_file)
        if (Errc e = file::fsync_dir(m.dir + "/export", err); e != Errc::ok) return fail(e);
    bool created = false;
    if (!op_records.empty())
        if (Errc e = append_file(m.path("ops.bin"), op_records, created, err); e != Errc::ok) return fail(e);
    if (!rejected.empty())
        if (Errc e = append_file(m.path("rejected.jsonl"), rejected, created, err); e != Errc::ok) return fail(e);
    const Cursor old = m.cur;
    const PageStats old_totals = m.totals;
    m.cur = nc;
    m.chunk_bytes = chunk_bytes;
    m.ops_bytes += op_records.size();
    m.rejected_bytes += rejected.size();
    m.totals.lines = nc.lines;
    m.totals.accepted += stats.accepted;
    m.totals.rejected += stats.rejected;
    m.totals.duplicates += stats.duplicates;
    if (Errc e = m.write_cursor(err); e != Errc::ok) {
        m.cur = old;
        m.totals = old_totals;
        return fail(e);
    }
    if (m.sealed < open_chunk) {
        for (std::uint64_t k = m.sealed; k < open_chunk; ++k)
            if (Errc e = m.seal(k, err); e != Errc::ok) return fail(e);
        m.sealed = open_chunk;
        if (Errc e = m.write_cursor(err); e != Errc::ok) return fail(e);
    }
    if (m.cache_open) {
        for (const std::string& did : touched)
        {
            didcache::Record r;
            if (Errc e = m.record(did, m.logs[did], r, err); e != Errc::ok) return fail(e);
            if (Errc e = m.cache.put(r, err); e != Errc::ok) return fail(e);
        }
        if (Errc e = m.cache.sync(m.cur.lines, err); e != Errc::ok) return fail(e);
    }
    return Errc::ok;
}

Errc Mirror::close(std::string& err) {
    if (!impl_) return Errc::ok;
    Errc e = Errc::ok;
    if (impl_->cache_open && impl_->failed == Errc::ok) e = impl_->cache.sync(impl_->cur.lines, err);
    impl_->cache = didcache::Writer();
    if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
    impl_.reset();
    return e;
}

Errc check_op_store(ByteView file, const std::string& name, std::uint64_t& ops, std::uint64_t& dids, std::string& err) {
    Logs logs;
    Strings strings;
    const Errc e = load_ops(file, name, logs, strings, ops, err);
    dids = logs.size();
    return e;
}

}  // namespace sov::plc
