// internal/cvl/index.h — the segment index codec (docs/format-cvl.md §4), the one place
// that knows its bytes: the writer encodes with encode_index(), the reader decodes with
// IndexView::decode() over a memory map (or any bytes).
#pragma once

#include "internal/le.h"
#include "sovereign/cvl.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sov::cvl::index {

inline constexpr std::uint8_t kMagic[8] = {'C', 'V', 'L', 'S', 'E', 'G', '\r', '\n'};
inline constexpr std::uint8_t kEndMagic[4] = {'C', 'V', 'L', 'E'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint32_t kFlagCompacted = 1;

/// Header, 96 bytes (format §4, offsets 0..95).
struct Header {
    std::uint8_t magic[8];
    le::U32 version, flags;
    le::U64 number, first;
    le::U32 n, c, p;          ///< messages, DID groups, op records
    le::U16 s, reserved;      ///< shards, 0
    le::U32 dict_id;
    le::I32 level;
    le::I64 recv_min, recv_max;
    le::U64 raw_bytes, stored_bytes;
    le::U32 q, generation;    ///< purged messages, data-file generation
};
static_assert(sizeof(Header) == 96, "docs/format-cvl.md §4: the header is 96 bytes");

/// Message index record, 28 bytes.
struct Record {
    le::U64 bin_off;
    le::U32 c_len, inner_off, i_len;
    le::U64 path_hash;
};
static_assert(sizeof(Record) == 28);

/// DID group record, 24 bytes.
struct Group {
    le::U64 bin_off;
    le::U32 c_len, count;
    le::U64 did_hash;
};
static_assert(sizeof(Group) == 24);

/// Op record, 12 bytes.
struct Op {
    le::U64 path_hash;
    le::U32 message;
};
static_assert(sizeof(Op) == 12);

/// Purged record, 36 bytes.
struct Purged {
    le::U32 message;
    std::uint8_t leaf[32];
};
static_assert(sizeof(Purged) == 36);

/// Trailer: root, previous root, checksum, end magic (100 bytes).
inline constexpr std::size_t kTrailer = 32 + 32 + 32 + 4;

/// Total file size the header's counts imply.
inline std::uint64_t file_size(const Header& h) {
    return sizeof(Header) + 8ull * h.s + (sizeof(Record) + 8ull) * h.n + sizeof(Group) * std::uint64_t(h.c) +
           sizeof(Op) * std::uint64_t(h.p) + sizeof(Purged) * std::uint64_t(h.q) + kTrailer;
}

/// What a segment index holds, for encoding.
struct Content {
    Header header{};                        ///< counts are filled in by encode_index
    std::vector<std::uint64_t> shard_sizes;
    std::vector<Record> records;
    std::vector<std::int64_t> recvs;
    std::vector<Group> groups;
    std::vector<Op> ops;                    ///< sorted by (path_hash, message)
    std::vector<Purged> purged;             ///< sorted by message
    Hash root{}, prev_root{};
};

/// The bytes of an index file (checksum and end magic included).
std::vector<std::uint8_t> encode_index(Content& c);

/// A decoded index over bytes it does not own (a mapping kept alive by `keep`).
struct View {
    ByteView bytes;
    std::shared_ptr<void> keep;
    std::string path;
    Header h{};
    const std::uint8_t *shards = nullptr, *recs = nullptr, *recvs = nullptr, *groups = nullptr, *ops = nullptr,
                       *purged = nullptr;
    Hash root{}, prev_root{};

    std::uint64_t first() const noexcept { return h.first; }
    std::uint32_t n() const noexcept { return h.n; }
    std::uint64_t number() const noexcept { return h.number; }
    std::uint16_t s() const noexcept { return h.s; }
    std::uint64_t shard_size(unsigned k) const noexcept { return le::get<std::uint64_t>(shards + 8 * k); }
    Record rec(std::uint32_t i) const noexcept { return le::load<Record>(recs + sizeof(Record) * std::size_t(i)); }
    std::int64_t recv(std::uint32_t i) const noexcept { return le::get<std::int64_t>(recvs + 8 * std::size_t(i)); }
    Group group(std::uint32_t g) const noexcept { return le::load<Group>(groups + sizeof(Group) * std::size_t(g)); }
    Op op(std::uint32_t k) const noexcept { return le::load<Op>(ops + sizeof(Op) * std::size_t(k)); }
    /// Leaf hash of purged message i, or nullptr.
    const std::uint8_t* purged_leaf(std::uint32_t i) const noexcept;
    /// Byte offset of message record i in the file (for diagnostics).
    std::size_t rec_offset(std::uint32_t i) const noexcept {
        return std::size_t(recs - bytes.data()) + sizeof(Record) * std::size_t(i);
    }

    /// Decodes and checks `bytes` (sizes, magics, version, BLAKE3 checksum, every record
    /// inside the segment data). Errors, with `err` = "<path>:<offset>: <reason>":
    /// cvl_truncated, cvl_bad_magic, cvl_bad_version, cvl_checksum, cvl_bad_index.
    Errc decode(std::string& err);
};

/// Reads just the 96-byte header of an index file (not verified: routing only).
Errc read_header(const std::string& path, Header& out, std::string& err);

/// Maps `path` read-only and decodes it into `out`.
Errc open_view(const std::string& path, View& out, std::string& err);

}  // namespace sov::cvl::index
