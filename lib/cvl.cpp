// The CVL archive. The essay (bytes: docs/format-cvl.md):
//
// Writing. Every envelope cvl-pack reads goes first to the journal (a frame stream), then to
// the pending segment in memory. When the pending segment reaches its message or byte bound
// it is sealed: messages are grouped by DID into clusters (split at cluster_bytes), clusters
// are compressed in parallel (one ZSTD_CCtx per thread, one shared CDict), laid out per shard,
// and the segment's files are written under temporary names, fsynced and renamed — the index
// last, because its existence is what makes the segment real. Only then is the journal
// replaced, so a crash anywhere leaves either the old journal (frames replayed from it) or a
// sealed segment plus a journal whose first frames the recovery skips: exactly once.
//
// Reading. Index files are read whole (they are small: ~36 bytes per message) and checked
// (magic, sizes, BLAKE3 checksum) at open; a bad one is reported and skipped. A read is one
// binary search, one 28-byte record and one zstd frame, with a small cache of decompressed
// clusters so sequential reads of a DID's messages cost one decompression.
#include "sovereign/cvl.h"

#include "sovereign/bitset.h"
#include "sovereign/blake3.h"
#include "sovereign/cbor.h"
#include "sovereign/message.h"
#include "sovereign/syntax.h"
#include "sovereign/varint.h"

#include <nlohmann/json.hpp>
#include <zdict.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <mutex>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>

namespace sov::cvl {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Small pieces

std::uint64_t fxhash64(ByteView b) noexcept {
    constexpr std::uint64_t K = 0x517cc1b727220a95ULL;
    auto step = [](std::uint64_t h, std::uint64_t w) { return (((h << 5) | (h >> 59)) ^ w) * K; };
    std::uint64_t h = 0;
    std::size_t i = 0;
    for (; i + 8 <= b.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, b.data() + i, 8);
        h = step(h, w);
    }
    if (b.size() - i >= 4) {
        std::uint32_t w;
        std::memcpy(&w, b.data() + i, 4);
        h = step(h, w);
        i += 4;
    }
    if (b.size() - i >= 2) {
        std::uint16_t w;
        std::memcpy(&w, b.data() + i, 2);
        h = step(h, w);
        i += 2;
    }
    if (i < b.size()) h = step(h, b[i]);
    return h;
}

Hash leaf_hash(ByteView envelope) {
    blake3::Hasher h;
    const std::uint8_t zero = 0;
    h.update({&zero, 1});
    h.update(envelope);
    Hash out;
    h.finalize(out.data(), out.size());
    return out;
}

Hash node_hash(const Hash& l, const Hash& r) {
    std::uint8_t buf[65];
    buf[0] = 1;
    std::memcpy(buf + 1, l.data(), 32);
    std::memcpy(buf + 33, r.data(), 32);
    blake3::Hasher h;
    h.update({buf, sizeof buf});
    Hash out;
    h.finalize(out.data(), out.size());
    return out;
}

namespace {
std::size_t split_point(std::size_t n) {  // largest power of two < n (n ≥ 2)
    std::size_t k = 1;
    while (k * 2 < n) k *= 2;
    return k;
}
}  // namespace

Hash merkle_root(std::span<const Hash> leaves) {
    // RFC 6962 §2.1: MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n.
    if (leaves.size() == 1) return leaves[0];
    std::size_t k = split_point(leaves.size());
    return node_hash(merkle_root(leaves.first(k)), merkle_root(leaves.subspan(k)));
}

std::vector<Hash> audit_path(std::span<const Hash> leaves, std::size_t index) {
    std::vector<Hash> path;
    std::function<void(std::size_t, std::size_t, std::size_t)> rec = [&](std::size_t lo, std::size_t n, std::size_t m) {
        if (n <= 1) return;
        std::size_t k = split_point(n);
        if (m < k) {
            rec(lo, k, m);
            path.push_back(merkle_root(leaves.subspan(lo + k, n - k)));
        } else {
            rec(lo + k, n - k, m - k);
            path.push_back(merkle_root(leaves.subspan(lo, k)));
        }
    };
    rec(0, leaves.size(), index);
    return path;
}

std::optional<Hash> root_from_path(const Hash& leaf, std::size_t index, std::size_t size, std::span<const Hash> path) {
    if (index >= size) return std::nullopt;
    // Recompute the decomposition top-down to know, at each level, which side we are on.
    std::vector<bool> right_side;  // from the top
    std::size_t n = size, m = index;
    while (n > 1) {
        std::size_t k = split_point(n);
        if (m < k) {
            right_side.push_back(false);
            n = k;
        } else {
            right_side.push_back(true);
            m -= k;
            n -= k;
        }
    }
    if (right_side.size() != path.size()) return std::nullopt;
    Hash h = leaf;
    for (std::size_t i = 0; i < path.size(); ++i) {
        bool right = right_side[right_side.size() - 1 - i];
        h = right ? node_hash(path[i], h) : node_hash(h, path[i]);
    }
    return h;
}

std::string to_hex(ByteView b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    s.reserve(b.size() * 2);
    for (auto c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
}

bool from_hex(std::string_view s, Hash& out) {
    if (s.size() != 64) return false;
    auto nib = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < 32; ++i) {
        int a = nib(s[2 * i]), b = nib(s[2 * i + 1]);
        if (a < 0 || b < 0) return false;
        out[i] = std::uint8_t(a << 4 | b);
    }
    return true;
}

std::string Proof::to_json() const {
    nlohmann::json j;
    j["ordinal"] = ordinal;
    j["segment"] = segment;
    j["index"] = index;
    j["size"] = size;
    j["leaf"] = to_hex(leaf);
    j["path"] = nlohmann::json::array();
    for (auto& h : path) j["path"].push_back(to_hex(h));
    j["root"] = to_hex(root);
    j["prev_root"] = to_hex(prev_root);
    return j.dump();
}

Errc Proof::from_json(std::string_view text, Proof& p) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Errc::json_parse;
    try {
        p.ordinal = j.at("ordinal").get<std::uint64_t>();
        p.segment = j.at("segment").get<std::uint64_t>();
        p.index = j.at("index").get<std::size_t>();
        p.size = j.at("size").get<std::size_t>();
        if (!from_hex(j.at("leaf").get<std::string>(), p.leaf) || !from_hex(j.at("root").get<std::string>(), p.root))
            return Errc::json_bad_data_model;
        if (j.contains("prev_root") && !from_hex(j["prev_root"].get<std::string>(), p.prev_root)) return Errc::json_bad_data_model;
        p.path.clear();
        for (auto& h : j.at("path")) {
            Hash x;
            if (!from_hex(h.get<std::string>(), x)) return Errc::json_bad_data_model;
            p.path.push_back(x);
        }
    } catch (const std::exception&) {
        return Errc::json_bad_data_model;
    }
    return Errc::ok;
}

bool Proof::verify() const {
    auto r = root_from_path(leaf, index, size, path);
    return r && *r == root;
}

// ---------------------------------------------------------------------------------------------
// Files

namespace {

constexpr std::uint8_t kMagic[8] = {'C', 'V', 'L', 'S', 'E', 'G', '\r', '\n'};
constexpr std::uint8_t kEndMagic[4] = {'C', 'V', 'L', 'E'};
constexpr std::size_t kHeader = 96, kTrailer = 100, kRec = 28, kClusterRec = 24, kOpRec = 12, kPurgedRec = 36;

std::string seg_name(std::uint64_t n) {
    char b[32];
    std::snprintf(b, sizeof b, "%08llu", (unsigned long long)n);
    return b;
}
std::string idx_path(const std::string& dir, std::uint64_t n) { return dir + "/seg/" + seg_name(n) + ".idx"; }
std::string dat_path(const std::string& dir, unsigned shard, std::uint64_t n, std::uint32_t gen) {
    char b[64];
    std::snprintf(b, sizeof b, "/shard/%02u/%08llu-%u.dat", shard, (unsigned long long)n, gen);
    return dir + b;
}
std::string dict_path(const std::string& dir, std::uint32_t id) {
    char b[32];
    std::snprintf(b, sizeof b, "/dict/%08u.zdict", id);
    return dir + b;
}

template <class T>
void put(std::vector<std::uint8_t>& o, T v) {
    std::uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (static_assert below)
    o.insert(o.end(), b, b + sizeof(T));
}
template <class T>
T get(const std::uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
static_assert(std::endian::native == std::endian::little, "CVL code assumes a little-endian host");

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

bool write_file(const std::string& path, ByteView data, std::string& err) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = errno_text(path);
        return false;
    }
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t w = ::write(fd, data.data() + off, data.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            err = errno_text(path);
            ::close(fd);
            return false;
        }
        off += std::size_t(w);
    }
    if (::fsync(fd) != 0) {
        err = errno_text(path);
        ::close(fd);
        return false;
    }
    ::close(fd);
    return true;
}

bool write_all(int fd, ByteView data, const std::string& path, std::string& err) {
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t w = ::write(fd, data.data() + off, data.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            err = errno_text(path);
            return false;
        }
        off += std::size_t(w);
    }
    return true;
}

bool fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

bool read_file(const std::string& path, std::vector<std::uint8_t>& out, std::string& err) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno_text(path);
        return false;
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        err = errno_text(path);
        ::close(fd);
        return false;
    }
    out.resize(std::size_t(st.st_size));
    std::size_t off = 0;
    while (off < out.size()) {
        ssize_t r = ::pread(fd, out.data() + off, out.size() - off, off_t(off));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            err = r < 0 ? errno_text(path) : path + ": file shrank while reading";
            ::close(fd);
            return false;
        }
        off += std::size_t(r);
    }
    ::close(fd);
    return true;
}

// One sealed segment's index, parsed (views into `bytes`).
struct Index {
    std::vector<std::uint8_t> bytes;
    std::string path;
    std::uint32_t version = 0, flags = 0;
    std::uint64_t number = 0, first = 0;
    std::uint32_t n = 0, c = 0, p = 0, q = 0, dict_id = 0, generation = 0;
    std::uint16_t s = 0;
    std::int32_t level = 0;
    std::int64_t recv_min = 0, recv_max = 0;
    std::uint64_t raw_bytes = 0, stored_bytes = 0;
    const std::uint8_t *shards = nullptr, *recs = nullptr, *recvs = nullptr, *clusters = nullptr, *ops = nullptr,
                       *purged = nullptr;
    Hash root{}, prev_root{};

    std::uint64_t shard_size(unsigned k) const { return get<std::uint64_t>(shards + 8 * k); }
    struct Rec {
        std::uint64_t bin_off;
        std::uint32_t c_len, inner_off, i_len;
        std::uint64_t path_hash;
    };
    Rec rec(std::uint32_t i) const {
        const std::uint8_t* r = recs + kRec * std::size_t(i);
        return {get<std::uint64_t>(r), get<std::uint32_t>(r + 8), get<std::uint32_t>(r + 12), get<std::uint32_t>(r + 16),
                get<std::uint64_t>(r + 20)};
    }
    std::int64_t recv(std::uint32_t i) const { return get<std::int64_t>(recvs + 8 * std::size_t(i)); }
    // Purged leaf hash of message i, or nullptr.
    const std::uint8_t* purged_leaf(std::uint32_t i) const {
        std::uint32_t lo = 0, hi = q;
        while (lo < hi) {
            std::uint32_t mid = (lo + hi) / 2;
            std::uint32_t m = get<std::uint32_t>(purged + kPurgedRec * mid);
            if (m == i) return purged + kPurgedRec * mid + 4;
            if (m < i) lo = mid + 1;
            else hi = mid;
        }
        return nullptr;
    }
};

// Parses and checks an index file. Errors name the file and byte offset.
bool parse_index(Index& x, std::string& err) {
    const auto& b = x.bytes;
    auto fail = [&](std::size_t off, const std::string& why) {
        err = x.path + ":" + std::to_string(off) + ": " + why;
        return false;
    };
    if (b.size() < kHeader + kTrailer) return fail(b.size(), "truncated (shorter than header and trailer)");
    if (std::memcmp(b.data(), kMagic, 8) != 0) return fail(0, "not a CVL segment index (bad magic)");
    x.version = get<std::uint32_t>(&b[8]);
    if (x.version != 1) return fail(8, "unsupported index version " + std::to_string(x.version));
    x.flags = get<std::uint32_t>(&b[12]);
    x.number = get<std::uint64_t>(&b[16]);
    x.first = get<std::uint64_t>(&b[24]);
    x.n = get<std::uint32_t>(&b[32]);
    x.c = get<std::uint32_t>(&b[36]);
    x.p = get<std::uint32_t>(&b[40]);
    x.s = get<std::uint16_t>(&b[44]);
    x.dict_id = get<std::uint32_t>(&b[48]);
    x.level = get<std::int32_t>(&b[52]);
    x.recv_min = get<std::int64_t>(&b[56]);
    x.recv_max = get<std::int64_t>(&b[64]);
    x.raw_bytes = get<std::uint64_t>(&b[72]);
    x.stored_bytes = get<std::uint64_t>(&b[80]);
    x.q = get<std::uint32_t>(&b[88]);
    x.generation = get<std::uint32_t>(&b[92]);
    std::uint64_t need = kHeader + 8ull * x.s + (kRec + 8ull) * x.n + kClusterRec * std::uint64_t(x.c) +
                         kOpRec * std::uint64_t(x.p) + kPurgedRec * std::uint64_t(x.q) + kTrailer;
    if (x.n == 0 || x.s == 0) return fail(32, "empty segment or no shards");
    if (need != b.size())
        return fail(b.size() < need ? b.size() : need, "section sizes (" + std::to_string(need) + " bytes) do not match the file (" +
                                                           std::to_string(b.size()) + " bytes): truncated or corrupt");
    if (std::memcmp(&b[b.size() - 4], kEndMagic, 4) != 0) return fail(b.size() - 4, "bad end magic");
    Hash sum;
    blake3::Hasher h;
    h.update({b.data(), b.size() - 36});
    h.finalize(sum.data(), 32);
    if (std::memcmp(sum.data(), &b[b.size() - 36], 32) != 0) return fail(b.size() - 36, "index checksum mismatch (corrupt index)");
    const std::uint8_t* p = b.data() + kHeader;
    x.shards = p;
    p += 8 * x.s;
    x.recs = p;
    p += kRec * std::size_t(x.n);
    x.recvs = p;
    p += 8 * std::size_t(x.n);
    x.clusters = p;
    p += kClusterRec * std::size_t(x.c);
    x.ops = p;
    p += kOpRec * std::size_t(x.p);
    x.purged = p;
    p += kPurgedRec * std::size_t(x.q);
    std::memcpy(x.root.data(), p, 32);
    std::memcpy(x.prev_root.data(), p + 32, 32);
    std::uint64_t total = 0;
    for (unsigned k = 0; k < x.s; ++k) total += x.shard_size(k);
    for (std::uint32_t i = 0; i < x.n; ++i) {
        auto r = x.rec(i);
        if (r.c_len == 0) continue;  // purged
        if (r.bin_off + r.c_len > total) return fail(std::size_t(x.recs - b.data()) + kRec * i, "index record points past the segment data");
    }
    return true;
}

struct ZstdDeleter {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
    void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
    void operator()(ZSTD_CDict* c) const { ZSTD_freeCDict(c); }
    void operator()(ZSTD_DDict* c) const { ZSTD_freeDDict(c); }
};

// What a pending message carries besides its envelope.
struct Meta {
    std::string did;
    std::uint64_t path_hash = 0;
    std::vector<std::uint64_t> op_hashes;
    std::int64_t recv = 0;
};

Meta meta_of(ByteView envelope) {
    Meta m;
    frames::Envelope env;
    if (frames::parse_envelope(envelope, env)) return m;
    m.recv = env.recv;
    msg::Message msg;
    if (msg::parse(env.wire, msg)) return m;
    m.did = std::string(msg.did);
    for (std::size_t i = 0; i < msg.ops.size(); ++i) {
        std::uint64_t h = tag_hash(as_bytes(msg.ops[i].path));
        if (i == 0) m.path_hash = h;
        m.op_hashes.push_back(h);
    }
    return m;
}

struct ArchiveConfig {
    Params params;
    bool load(const std::string& dir, std::string& err) {
        std::vector<std::uint8_t> b;
        if (!read_file(dir + "/cvl.json", b, err)) return false;
        auto j = nlohmann::json::parse(b.begin(), b.end(), nullptr, false);
        if (j.is_discarded() || j.value("format", "") != "cvl") {
            err = dir + "/cvl.json: not a CVL archive description";
            return false;
        }
        if (j.value("version", 0) != 1) {
            err = dir + "/cvl.json: unsupported archive version " + std::to_string(j.value("version", 0));
            return false;
        }
        params.shards = j.value("shards", 16u);
        params.level = j.value("level", 3);
        params.segment_messages = j.value("segment_messages", 65536u);
        params.segment_bytes = j.value("segment_bytes", std::uint64_t(64) << 20);
        params.cluster_bytes = j.value("cluster_bytes", 256u << 10);
        params.retrain_every = j.value("retrain_every", 8u);
        params.dict_bytes = j.value("dict_bytes", 112640u);
        if (params.shards == 0 || params.shards > 99) {
            err = dir + "/cvl.json: shards must be 1..99";
            return false;
        }
        return true;
    }
    static bool create(const std::string& dir, const Params& p, std::string& err) {
        nlohmann::json j{{"format", "cvl"},
                         {"version", 1},
                         {"shards", p.shards},
                         {"level", p.level},
                         {"segment_messages", p.segment_messages},
                         {"segment_bytes", p.segment_bytes},
                         {"cluster_bytes", p.cluster_bytes},
                         {"retrain_every", p.retrain_every},
                         {"dict_bytes", p.dict_bytes},
                         {"created", syntax::format_datetime_micros(std::chrono::duration_cast<std::chrono::microseconds>(
                                                                        std::chrono::system_clock::now().time_since_epoch())
                                                                        .count())}};
        std::error_code ec;
        for (const char* sub : {"/dict", "/seg", "/journal", "/tomb", "/shard"}) fs::create_directories(dir + sub, ec);
        for (unsigned k = 0; k < p.shards; ++k) {
            char b[32];
            std::snprintf(b, sizeof b, "/shard/%02u", k);
            fs::create_directories(dir + b, ec);
        }
        if (ec) {
            err = dir + ": " + ec.message();
            return false;
        }
        std::string text = j.dump(2) + "\n";
        if (!write_file(dir + "/cvl.json.tmp", as_bytes(text), err)) return false;
        if (std::rename((dir + "/cvl.json.tmp").c_str(), (dir + "/cvl.json").c_str()) != 0) {
            err = errno_text(dir + "/cvl.json");
            return false;
        }
        fsync_dir(dir);
        return true;
    }
};

// Sealed segment numbers present in DIR/seg, ascending.
std::vector<std::uint64_t> list_segments(const std::string& dir) {
    std::vector<std::uint64_t> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir + "/seg", ec)) {
        std::string name = e.path().filename().string();
        if (name.size() == 12 && name.ends_with(".idx") && std::all_of(name.begin(), name.begin() + 8, ::isdigit))
            out.push_back(std::stoull(name.substr(0, 8)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Compresses clusters and writes a segment (data files, then index) given everything in
// memory. Used by sealing and by compaction.
struct SegmentBuild {
    std::uint64_t number = 0, first = 0;
    std::uint32_t generation = 0, dict_id = 0;
    int level = 3;
    unsigned shards = 16;
    std::vector<ByteView> envelopes;            // n; empty view for purged
    std::vector<Meta> metas;                    // n
    std::vector<Hash> purged_leaves;            // n entries, used where envelopes[i] is empty and purged[i]
    std::vector<bool> purged;                   // n
    Hash prev_root{};
    const ZSTD_CDict* cdict = nullptr;
    std::uint32_t cluster_bytes = 256u << 10;
    unsigned threads = 1;
};

bool write_segment(const std::string& dir, SegmentBuild& sb, Hash& root_out, std::uint64_t& stored, std::string& err) {
    const std::size_t n = sb.envelopes.size();
    // Clusters: per DID in ordinal order, split at cluster_bytes.
    // DID groups: each DID's messages in ordinal order, split at cluster_bytes. Groups of at
    // least a quarter cluster are clusters of their own (in the DID's shard); smaller ones
    // (the long tail: most DIDs write once or twice per segment) are packed together, in
    // first-ordinal order, into shared clusters, so they compress with context instead of
    // one message per zstd frame. Each DID's messages stay contiguous inside a cluster.
    struct Group {
        std::uint64_t did_hash;
        unsigned shard;
        std::vector<std::uint32_t> msgs;
        std::uint64_t bytes = 0;
        std::size_t cluster = 0;
    };
    std::vector<Group> groups;
    std::unordered_map<std::string, std::size_t> open;  // DID → index of its current group
    for (std::uint32_t i = 0; i < n; ++i) {
        if (sb.purged[i]) continue;
        const std::string& did = sb.metas[i].did;
        auto it = open.find(did);
        if (it == open.end() || groups[it->second].bytes + sb.envelopes[i].size() > sb.cluster_bytes) {
            std::uint64_t dh = did.empty() ? 0 : tag_hash(as_bytes(did));
            groups.push_back(Group{dh, did.empty() ? 0u : unsigned(dh % sb.shards), {}, 0, 0});
            open[did] = groups.size() - 1;
            it = open.find(did);
        }
        Group& g = groups[it->second];
        g.msgs.push_back(i);
        g.bytes += sb.envelopes[i].size();
    }
    struct Cluster {
        unsigned shard;
        std::vector<std::uint32_t> msgs;  // its groups' messages, group after group
        std::uint64_t bytes = 0;
        std::vector<std::uint8_t> comp;
        std::uint64_t off = 0;
    };
    std::vector<Cluster> clusters;
    std::size_t shared = SIZE_MAX;
    unsigned next_shard = 0;
    for (auto& g : groups) {
        std::size_t target;
        if (g.bytes >= sb.cluster_bytes / 4) {
            clusters.push_back(Cluster{g.shard, {}, 0, {}, 0});
            target = clusters.size() - 1;
        } else {
            if (shared == SIZE_MAX || clusters[shared].bytes + g.bytes > sb.cluster_bytes) {
                clusters.push_back(Cluster{next_shard++ % sb.shards, {}, 0, {}, 0});
                shared = clusters.size() - 1;
            }
            target = shared;
        }
        g.cluster = target;
        clusters[target].msgs.insert(clusters[target].msgs.end(), g.msgs.begin(), g.msgs.end());
        clusters[target].bytes += g.bytes;
    }
    // Compress (and hash leaves) in parallel.
    std::vector<Hash> leaves(n);
    for (std::size_t i = 0; i < n; ++i)
        if (sb.purged[i]) leaves[i] = sb.purged_leaves[i];
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::string zerr;
    std::mutex mu;
    auto work = [&] {
        // Per-worker buffers, reused for every cluster: fresh multi-hundred-KiB vectors per
        // cluster cost more in page faults than the copying they hold.
        std::vector<std::uint8_t> raw, out;
        std::unique_ptr<ZSTD_CCtx, ZstdDeleter> cctx(ZSTD_createCCtx());
        ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
        if (sb.cdict) ZSTD_CCtx_refCDict(cctx.get(), sb.cdict);
        else ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, sb.level);
        for (;;) {
            std::size_t k = next.fetch_add(1);
            if (k >= clusters.size() || failed) return;
            Cluster& c = clusters[k];
            raw.clear();
            for (auto m : c.msgs) {
                raw.insert(raw.end(), sb.envelopes[m].begin(), sb.envelopes[m].end());
                leaves[m] = leaf_hash(sb.envelopes[m]);  // hashed here, on the worker threads
            }
            out.resize(ZSTD_compressBound(raw.size()));
            std::size_t r = ZSTD_compress2(cctx.get(), out.data(), out.size(), raw.data(), raw.size());
            if (ZSTD_isError(r)) {
                std::lock_guard lk(mu);
                zerr = std::string("zstd: ") + ZSTD_getErrorName(r);
                failed = true;
                return;
            }
            c.comp.assign(out.begin(), out.begin() + std::ptrdiff_t(r));
        }
    };
    {
        std::vector<std::thread> pool;
        for (unsigned t = 1; t < std::max(1u, sb.threads); ++t) pool.emplace_back(work);
        work();
        for (auto& t : pool) t.join();
    }
    if (failed) {
        err = zerr;
        return false;
    }
    // Layout: shards in order, clusters in first-ordinal order within each shard.
    std::vector<std::uint64_t> shard_size(sb.shards, 0);
    for (auto& c : clusters) {
        c.off = shard_size[c.shard];
        shard_size[c.shard] += c.comp.size();
    }
    std::vector<std::uint64_t> base(sb.shards, 0);
    for (unsigned k = 1; k < sb.shards; ++k) base[k] = base[k - 1] + shard_size[k - 1];
    stored = base[sb.shards - 1] + shard_size[sb.shards - 1];
    // Records.
    struct Rec {
        std::uint64_t bin_off = 0;
        std::uint32_t c_len = 0, inner_off = 0, i_len = 0;
    };
    std::vector<Rec> recs(n);
    for (auto& c : clusters) {
        std::uint32_t inner = 0;
        for (auto m : c.msgs) {
            recs[m] = Rec{base[c.shard] + c.off, std::uint32_t(c.comp.size()), inner, std::uint32_t(sb.envelopes[m].size())};
            inner += std::uint32_t(sb.envelopes[m].size());
        }
    }
    root_out = merkle_root(leaves);
    // Data files (temporary names, fsync).
    std::vector<std::string> tmp_names;
    for (unsigned k = 0; k < sb.shards; ++k) {
        std::vector<std::uint8_t> data;
        data.reserve(shard_size[k]);
        for (auto& c : clusters)
            if (c.shard == k) data.insert(data.end(), c.comp.begin(), c.comp.end());
        std::string path = dat_path(dir, k, sb.number, sb.generation);
        if (!write_file(path + ".tmp", data, err)) return false;
        tmp_names.push_back(path);
    }
    // Index.
    std::vector<std::uint8_t> x;
    x.insert(x.end(), kMagic, kMagic + 8);
    put<std::uint32_t>(x, 1);
    std::uint32_t q = 0;
    for (std::size_t i = 0; i < n; ++i) q += sb.purged[i];
    put<std::uint32_t>(x, q ? 1 : 0);
    put<std::uint64_t>(x, sb.number);
    put<std::uint64_t>(x, sb.first);
    put<std::uint32_t>(x, std::uint32_t(n));
    put<std::uint32_t>(x, std::uint32_t(groups.size()));
    std::vector<std::pair<std::uint64_t, std::uint32_t>> ops;
    for (std::uint32_t i = 0; i < n; ++i)
        for (auto h : sb.metas[i].op_hashes) ops.emplace_back(h, i);
    std::sort(ops.begin(), ops.end());
    put<std::uint32_t>(x, std::uint32_t(ops.size()));
    put<std::uint16_t>(x, std::uint16_t(sb.shards));
    put<std::uint16_t>(x, 0);
    put<std::uint32_t>(x, sb.dict_id);
    put<std::int32_t>(x, sb.level);
    std::int64_t rmin = INT64_MAX, rmax = INT64_MIN;
    std::uint64_t raw = 0;
    for (std::size_t i = 0; i < n; ++i) {
        rmin = std::min(rmin, sb.metas[i].recv);
        rmax = std::max(rmax, sb.metas[i].recv);
        raw += sb.envelopes[i].size();
    }
    put<std::int64_t>(x, rmin);
    put<std::int64_t>(x, rmax);
    put<std::uint64_t>(x, raw);
    put<std::uint64_t>(x, stored);
    put<std::uint32_t>(x, q);
    put<std::uint32_t>(x, sb.generation);
    for (auto s : shard_size) put<std::uint64_t>(x, s);
    for (std::size_t i = 0; i < n; ++i) {
        put<std::uint64_t>(x, recs[i].bin_off);
        put<std::uint32_t>(x, recs[i].c_len);
        put<std::uint32_t>(x, recs[i].inner_off);
        put<std::uint32_t>(x, recs[i].i_len);
        put<std::uint64_t>(x, sb.metas[i].path_hash);
    }
    for (std::size_t i = 0; i < n; ++i) put<std::int64_t>(x, sb.metas[i].recv);
    for (auto& g : groups) {
        const Cluster& c = clusters[g.cluster];
        put<std::uint64_t>(x, base[c.shard] + c.off);
        put<std::uint32_t>(x, std::uint32_t(c.comp.size()));
        put<std::uint32_t>(x, std::uint32_t(g.msgs.size()));
        put<std::uint64_t>(x, g.did_hash);
    }
    for (auto& [h, m] : ops) {
        put<std::uint64_t>(x, h);
        put<std::uint32_t>(x, m);
    }
    for (std::uint32_t i = 0; i < n; ++i)
        if (sb.purged[i]) {
            put<std::uint32_t>(x, i);
            x.insert(x.end(), sb.purged_leaves[i].begin(), sb.purged_leaves[i].end());
        }
    x.insert(x.end(), root_out.begin(), root_out.end());
    x.insert(x.end(), sb.prev_root.begin(), sb.prev_root.end());
    Hash sum;
    blake3::Hasher h;
    h.update(x);
    h.finalize(sum.data(), 32);
    x.insert(x.end(), sum.begin(), sum.end());
    x.insert(x.end(), kEndMagic, kEndMagic + 4);
    std::string ipath = idx_path(dir, sb.number);
    if (!write_file(ipath + ".tmp", x, err)) return false;
    // Commit: data files, then the index.
    for (auto& p : tmp_names)
        if (std::rename((p + ".tmp").c_str(), p.c_str()) != 0) {
            err = errno_text(p);
            return false;
        }
    for (unsigned k = 0; k < sb.shards; ++k) {
        char b[32];
        std::snprintf(b, sizeof b, "/shard/%02u", k);
        fsync_dir(dir + b);
    }
    if (std::rename((ipath + ".tmp").c_str(), ipath.c_str()) != 0) {
        err = errno_text(ipath);
        return false;
    }
    if (!fsync_dir(dir + "/seg")) {
        err = errno_text(dir + "/seg");
        return false;
    }
    return true;
}

std::string journal_name(std::uint64_t first) {
    char b[40];
    std::snprintf(b, sizeof b, "%016llx.frames", (unsigned long long)first);
    return b;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Writer

struct Writer::Impl {
    std::string dir;
    Params params;
    unsigned threads = 1;
    int lock_fd = -1;
    int journal_fd = -1;
    std::string journal_path;
    std::uint64_t journal_first = 0;
    std::uint64_t next_ord = 0;
    std::uint64_t next_segment = 0;
    Hash last_root{};
    std::uint32_t dict_id = 0;
    std::unique_ptr<ZSTD_CDict, ZstdDeleter> cdict;
    // Pending segment.
    std::vector<std::uint8_t> pending_bytes;
    std::vector<std::pair<std::size_t, std::size_t>> pending;  // (offset, size) in pending_bytes
    std::vector<Meta> metas;
    PackStats stats;

    ~Impl() {
        if (job && job->thread.joinable()) job->thread.join();  // its segment is sealed; the journal still holds it
        if (journal_fd >= 0) ::close(journal_fd);
        if (lock_fd >= 0) ::close(lock_fd);
    }

    bool open_journal(std::uint64_t first, std::string& err) {
        if (journal_fd >= 0) ::close(journal_fd);
        journal_first = first;
        journal_path = dir + "/journal/" + journal_name(first);
        journal_fd = ::open(journal_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (journal_fd < 0) {
            err = errno_text(journal_path);
            return false;
        }
        fsync_dir(dir + "/journal");
        return true;
    }

    bool load_dict(std::uint32_t id, std::string& err) {
        std::vector<std::uint8_t> d;
        if (!read_file(dict_path(dir, id), d, err)) return false;
        cdict.reset(ZSTD_createCDict(d.data(), d.size(), params.level));
        dict_id = id;
        return cdict != nullptr;
    }

    void add_pending(ByteView env) {
        pending.emplace_back(pending_bytes.size(), env.size());
        pending_bytes.insert(pending_bytes.end(), env.begin(), env.end());
        metas.push_back(meta_of(env));
    }

    bool train(std::string& err) {
        // Samples: up to 8 MiB of the segment's envelopes, spread evenly.
        std::vector<std::uint8_t> samples;
        std::vector<std::size_t> sizes;
        std::size_t step = std::max<std::size_t>(1, pending_bytes.size() / (8u << 20));
        for (std::size_t i = 0; i < pending.size(); i += step) {
            auto [off, len] = pending[i];
            samples.insert(samples.end(), pending_bytes.begin() + std::ptrdiff_t(off),
                           pending_bytes.begin() + std::ptrdiff_t(off + len));
            sizes.push_back(len);
        }
        if (sizes.size() < 16) return true;  // too little to train on: keep the current dictionary
        std::vector<std::uint8_t> dict(params.dict_bytes);
        std::size_t r = ZDICT_trainFromBuffer(dict.data(), dict.size(), samples.data(), sizes.data(), unsigned(sizes.size()));
        if (ZDICT_isError(r)) return true;  // e.g. not enough distinct data: keep going without
        dict.resize(r);
        std::uint32_t id = dict_id + 1;
        std::string path = dict_path(dir, id);
        if (!write_file(path + ".tmp", dict, err)) return false;
        if (std::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
            err = errno_text(path);
            return false;
        }
        fsync_dir(dir + "/dict");
        cdict.reset(ZSTD_createCDict(dict.data(), dict.size(), params.level));
        dict_id = id;
        ++stats.dictionaries;
        return true;
    }

    // Sealing runs on a background thread so that reading, journaling and parsing of the next
    // segment go on while the last one is compressed and written. At most one seal is in
    // flight (memory: two segments). The journal is rotated only when the seal is durable:
    // the new journal gets every frame after the sealed segment (already journaled in the
    // old one), then the old journal is deleted — no frame read is ever absent from all journals.
    struct Job {
        SegmentBuild sb;
        std::vector<std::uint8_t> bytes;
        std::uint64_t end_ord = 0;
        Hash root{};
        std::uint64_t stored = 0;
        bool ok = false;
        std::string err;
        std::thread thread;
        std::atomic<bool> done{false};
    };
    std::unique_ptr<Job> job;
    std::vector<std::uint8_t> spare;  // a sealed segment's buffer, kept for the next one

    // `carry`: envelopes already written to the current journal but not yet added to
    // `pending` (the rest of the batch being appended); they go to the new journal too.
    bool finish_seal(std::string& err, std::span<const ByteView> carry = {}) {
        if (!job) return true;
        job->thread.join();
        std::unique_ptr<Job> j = std::move(job);
        if (!j->ok) {
            err = j->err;
            return false;
        }
        last_root = j->root;
        if (spare.capacity() < j->bytes.capacity()) spare = std::move(j->bytes);  // reused by the next segment
        ++stats.segments_sealed;
        stats.bytes_out += j->stored;
        std::string old = journal_path;
        if (!open_journal(j->end_ord, err)) return false;
        std::vector<std::uint8_t> rec;
        for (auto [off, len] : pending) {
            varint::append(len, rec);
            rec.insert(rec.end(), pending_bytes.begin() + std::ptrdiff_t(off), pending_bytes.begin() + std::ptrdiff_t(off + len));
        }
        for (ByteView env : carry) {
            varint::append(env.size(), rec);
            rec.insert(rec.end(), env.begin(), env.end());
        }
        if (!write_all(journal_fd, rec, journal_path, err)) return false;
        if (::fdatasync(journal_fd) != 0) {
            err = errno_text(journal_path);
            return false;
        }
        if (old != journal_path) ::unlink(old.c_str());
        fsync_dir(dir + "/journal");
        return true;
    }

    bool start_seal(std::string& err, std::span<const ByteView> carry = {}) {
        if (pending.empty()) return true;
        if (!finish_seal(err, carry)) return false;  // one in flight; also gives last_root
        if (next_segment % std::max(1u, params.retrain_every) == 0 || dict_id == 0)
            if (!train(err)) return false;
        auto j = std::make_unique<Job>();
        j->bytes = std::move(pending_bytes);
        j->end_ord = next_ord;
        SegmentBuild& sb = j->sb;
        sb.number = next_segment++;
        sb.first = next_ord - pending.size();
        sb.dict_id = cdict ? dict_id : 0;
        sb.level = params.level;
        sb.shards = params.shards;
        sb.cdict = cdict.get();
        sb.cluster_bytes = params.cluster_bytes;
        sb.threads = threads;
        sb.prev_root = last_root;
        for (auto [off, len] : pending) sb.envelopes.emplace_back(j->bytes.data() + off, len);
        sb.metas = std::move(metas);
        sb.purged.assign(pending.size(), false);
        sb.purged_leaves.resize(pending.size());
        pending.clear();
        pending_bytes = std::move(spare);
        pending_bytes.clear();
        spare = {};
        metas = {};
        Job* raw = j.get();
        j->thread = std::thread([this, raw] {
            raw->ok = write_segment(dir, raw->sb, raw->root, raw->stored, raw->err);
            raw->done = true;
        });
        job = std::move(j);
        return true;
    }

    // Finishes a completed background seal without waiting for a running one.
    bool poll_seal(std::string& err) { return job && job->done.load() ? finish_seal(err) : true; }

    bool seal(std::string& err) { return start_seal(err) && finish_seal(err); }

};

Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Writer::~Writer() = default;

std::unique_ptr<Writer> Writer::open(const std::string& dir, const Params& params, unsigned threads, std::string& err) {
    auto im = std::make_unique<Impl>();
    im->dir = dir;
    im->threads = std::max(1u, threads);
    std::error_code ec;
    if (!fs::exists(dir + "/cvl.json", ec)) {
        if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
            err = dir + ": exists, is not empty and is not a CVL archive (no cvl.json)";
            return nullptr;
        }
        fs::create_directories(dir, ec);
        if (!ArchiveConfig::create(dir, params, err)) return nullptr;
    }
    ArchiveConfig cfg;
    if (!cfg.load(dir, err)) return nullptr;
    im->params = cfg.params;
    im->params.level = params.level;  // the level may change between runs
    im->lock_fd = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (im->lock_fd < 0 || ::flock(im->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err = dir + "/lock: another cvl-pack is writing this archive";
        return nullptr;
    }
    // Sealed state: the last segment gives the next ordinal, root and dictionary.
    auto segs = list_segments(dir);
    if (!segs.empty()) {
        Index x;
        x.path = idx_path(dir, segs.back());
        if (!read_file(x.path, x.bytes, err) || !parse_index(x, err)) return nullptr;
        im->next_ord = x.first + x.n;
        im->next_segment = x.number + 1;
        im->last_root = x.root;
        if (x.dict_id && !im->load_dict(x.dict_id, err)) return nullptr;
        // Newer dictionaries (trained for a seal that did not complete) are reused by id order.
        for (std::uint32_t id = x.dict_id + 1; fs::exists(dict_path(dir, id), ec); ++id)
            if (!im->load_dict(id, err)) return nullptr;
    }
    // Journal recovery.
    std::vector<std::pair<std::uint64_t, std::string>> journals;
    for (auto& e : fs::directory_iterator(dir + "/journal", ec)) {
        std::string name = e.path().filename().string();
        if (name.size() == 23 && name.ends_with(".frames")) journals.emplace_back(std::stoull(name.substr(0, 16), nullptr, 16), e.path().string());
    }
    std::sort(journals.begin(), journals.end());
    std::uint64_t sealed_end = im->next_ord;
    for (auto& [first, path] : journals) {
        frames::Reader r = frames::Reader::open(path);
        frames::Envelope env;
        std::uint64_t ord = first;
        while (r.next(env)) {
            if (ord >= sealed_end && ord == im->next_ord) {
                im->add_pending(env.raw);
                ++im->next_ord;
                ++im->stats.recovered;
            }
            ++ord;
        }
        // A truncated last record is a write interrupted by the crash: dropped (see format doc §6).
    }
    // Continue in a fresh journal holding the pending frames, then drop the old ones.
    std::uint64_t pending_first = im->next_ord - im->pending.size();
    std::string tmp_err;
    std::string jpath = dir + "/journal/" + journal_name(pending_first);
    std::string jtmp = jpath + ".tmp";
    {
        std::vector<std::uint8_t> all;
        for (auto [off, len] : im->pending) {
            varint::append(len, all);
            all.insert(all.end(), im->pending_bytes.begin() + std::ptrdiff_t(off),
                       im->pending_bytes.begin() + std::ptrdiff_t(off + len));
        }
        if (!write_file(jtmp, all, err)) return nullptr;
        if (std::rename(jtmp.c_str(), jpath.c_str()) != 0) {
            err = errno_text(jpath);
            return nullptr;
        }
    }
    for (auto& [first, path] : journals)
        if (path != jpath) ::unlink(path.c_str());
    fsync_dir(dir + "/journal");
    if (!im->open_journal(pending_first, err)) return nullptr;
    // The tombstone file of the current ordinal range exists from the start, so readers map
    // it when they open and a first tombstone is visible at once (format doc §7).
    {
        std::string terr;
        auto tombs = bitset::Set::open(dir + "/tomb", true, &terr);
        if (!tombs || tombs->ensure(im->next_ord) != Errc::ok) {
            err = dir + "/tomb: " + (tombs ? tombs->last_error() : terr);
            return nullptr;
        }
    }
    return std::unique_ptr<Writer>(new Writer(std::move(im)));
}

Errc Writer::append(std::span<const ByteView> envelopes, std::string& err) {
    Impl& im = *impl_;
    // Journal first: the whole batch in one write, before anything else happens to it.
    // A finished background seal rotates the journal first, so this batch lands in the new one.
    if (!im.poll_seal(err)) return Errc::io_error;
    std::vector<std::uint8_t> rec;
    for (auto env : envelopes) {
        varint::append(env.size(), rec);
        rec.insert(rec.end(), env.begin(), env.end());
    }
    if (!write_all(im.journal_fd, rec, im.journal_path, err)) return Errc::io_error;
    for (std::size_t i = 0; i < envelopes.size(); ++i) {
        ByteView env = envelopes[i];
        im.add_pending(env);
        ++im.next_ord;
        ++im.stats.messages;
        im.stats.bytes_in += env.size();
        // Starting a seal may rotate the journal (finishing the previous seal): the rest of
        // this batch, already in the old journal, is carried into the new one.
        if (im.pending.size() >= im.params.segment_messages || im.pending_bytes.size() >= im.params.segment_bytes)
            if (!im.start_seal(err, envelopes.subspan(i + 1))) return Errc::io_error;
    }
    return Errc::ok;
}

Errc Writer::sync_journal(std::string& err) {
    if (::fdatasync(impl_->journal_fd) != 0) {
        err = errno_text(impl_->journal_path);
        return Errc::io_error;
    }
    return Errc::ok;
}

Errc Writer::seal(std::string& err) { return impl_->seal(err) ? Errc::ok : Errc::io_error; }
std::uint64_t Writer::next_ordinal() const noexcept { return impl_->next_ord; }
const PackStats& Writer::stats() const noexcept { return impl_->stats; }

// ---------------------------------------------------------------------------------------------
// Archive (reading)

struct Archive::Impl {
    std::string dir;
    std::size_t listed = 0;  // index files found
    Params params;
    std::vector<Index> idx;
    std::vector<SegmentInfo> infos;
    std::vector<std::string> problems;
    std::map<std::uint32_t, std::unique_ptr<ZSTD_DDict, ZstdDeleter>> ddicts;
    std::unique_ptr<ZSTD_DCtx, ZstdDeleter> dctx{ZSTD_createDCtx()};
    std::optional<bitset::Set> tombs;
    // Cluster cache: (segment, bin_off) → decompressed bytes; small LRU.
    struct Cached {
        std::size_t seg;
        std::uint64_t off;
        std::vector<std::uint8_t> data;
        std::uint64_t used;
    };
    std::vector<Cached> cache;
    std::uint64_t tick = 0;

    const ZSTD_DDict* ddict(std::uint32_t id, std::string& err) {
        if (id == 0) return nullptr;
        auto it = ddicts.find(id);
        if (it != ddicts.end()) return it->second.get();
        std::vector<std::uint8_t> d;
        if (!read_file(dict_path(dir, id), d, err)) {
            err = dict_path(dir, id) + ": missing or unreadable dictionary (" + err + ")";
            return nullptr;
        }
        auto* dd = ZSTD_createDDict(d.data(), d.size());
        ddicts[id].reset(dd);
        return dd;
    }

    // Decompresses the cluster at bin_off/c_len of segment s.
    bool cluster(std::size_t s, std::uint64_t bin_off, std::uint32_t c_len, const std::vector<std::uint8_t>*& out,
                 std::string& err) {
        for (auto& c : cache)
            if (c.seg == s && c.off == bin_off) {
                c.used = ++tick;
                out = &c.data;
                return true;
            }
        const Index& x = idx[s];
        // Locate the shard.
        unsigned k = 0;
        std::uint64_t base = 0;
        while (k < x.s && bin_off >= base + x.shard_size(k)) base += x.shard_size(k++);
        if (k == x.s) {
            err = x.path + ": cluster offset " + std::to_string(bin_off) + " outside the segment data";
            return false;
        }
        std::string path = dat_path(dir, k, x.number, x.generation);
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            err = errno_text(path);
            return false;
        }
        std::vector<std::uint8_t> comp(c_len);
        std::size_t got = 0;
        while (got < c_len) {
            ssize_t r = ::pread(fd, comp.data() + got, c_len - got, off_t(bin_off - base + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += std::size_t(r);
        }
        ::close(fd);
        if (got != c_len) {
            err = path + ":" + std::to_string(bin_off - base + got) + ": truncated data file (cluster of " +
                  std::to_string(c_len) + " bytes at offset " + std::to_string(bin_off - base) + ")";
            return false;
        }
        const ZSTD_DDict* dd = ddict(x.dict_id, err);
        if (x.dict_id && !dd) return false;
        unsigned long long size = ZSTD_getFrameContentSize(comp.data(), comp.size());
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (1ull << 32)) {
            err = path + ":" + std::to_string(bin_off - base) + ": corrupt cluster (no valid zstd frame header)";
            return false;
        }
        std::vector<std::uint8_t> data(size);
        std::size_t r = dd ? ZSTD_decompress_usingDDict(dctx.get(), data.data(), data.size(), comp.data(), comp.size(), dd)
                           : ZSTD_decompressDCtx(dctx.get(), data.data(), data.size(), comp.data(), comp.size());
        if (ZSTD_isError(r) || r != size) {
            err = path + ":" + std::to_string(bin_off - base) + ": corrupt cluster (" +
                  (ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output") + ")";
            return false;
        }
        if (cache.size() < 16) cache.push_back(Cached{s, bin_off, std::move(data), ++tick});
        else {
            auto lru = std::min_element(cache.begin(), cache.end(), [](auto& a, auto& b) { return a.used < b.used; });
            *lru = Cached{s, bin_off, std::move(data), ++tick};
        }
        for (auto& c : cache)
            if (c.seg == s && c.off == bin_off) out = &c.data;
        return true;
    }

    std::optional<std::size_t> seg_of(std::uint64_t ord) const {
        auto it = std::upper_bound(idx.begin(), idx.end(), ord, [](std::uint64_t o, const Index& x) { return o < x.first; });
        if (it == idx.begin()) return std::nullopt;
        --it;
        if (ord >= it->first + it->n) return std::nullopt;
        return std::size_t(it - idx.begin());
    }

    bool message(std::size_t s, std::uint32_t i, ByteView& env, std::string& err) {
        const Index& x = idx[s];
        auto r = x.rec(i);
        if (r.c_len == 0) {
            err = "ordinal " + std::to_string(x.first + i) + " was purged by compaction";
            return false;
        }
        const std::vector<std::uint8_t>* data;
        if (!cluster(s, r.bin_off, r.c_len, data, err)) return false;
        if (std::uint64_t(r.inner_off) + r.i_len > data->size()) {
            err = x.path + ": record of ordinal " + std::to_string(x.first + i) + " points outside its cluster";
            return false;
        }
        env = {data->data() + r.inner_off, r.i_len};
        return true;
    }
};

Archive::Archive(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Archive::~Archive() = default;

std::unique_ptr<Archive> Archive::open(const std::string& dir, std::string& err) {
    auto im = std::make_unique<Impl>();
    im->dir = dir;
    ArchiveConfig cfg;
    if (!cfg.load(dir, err)) return nullptr;
    im->params = cfg.params;
    Hash prev{};
    std::uint64_t expect_first = 0, expect_number = 0;
    bool gap = true;  // no predecessor to compare with (start, or after an unreadable index)
    auto numbers = list_segments(dir);
    im->listed = numbers.size();
    for (auto n : numbers) {
        Index x;
        x.path = idx_path(dir, n);
        std::string e;
        if (!read_file(x.path, x.bytes, e) || !parse_index(x, e)) {
            im->problems.push_back(e);
            gap = true;  // its range and root are unknown: don't blame the next segment for it
            continue;
        }
        if (x.number != n) {
            im->problems.push_back(x.path + ":16: segment number " + std::to_string(x.number) + " does not match the file name");
            continue;
        }
        if (!gap && (x.number != expect_number || x.first != expect_first))
            im->problems.push_back(x.path + ":24: segment does not continue the previous one (expected first ordinal " +
                                   std::to_string(expect_first) + ", found " + std::to_string(x.first) + ")");
        else if (!gap && x.prev_root != prev)
            im->problems.push_back(x.path + ": chain broken: previous-root field differs from segment " +
                                   std::to_string(expect_number - 1) + "'s root");
        gap = false;
        expect_first = x.first + x.n;
        expect_number = x.number + 1;
        prev = x.root;
        SegmentInfo si;
        si.number = x.number;
        si.first = x.first;
        si.count = x.n;
        {
            std::vector<std::uint64_t> offs;
            for (std::uint32_t g = 0; g < x.c; ++g) offs.push_back(get<std::uint64_t>(x.clusters + kClusterRec * g));
            std::sort(offs.begin(), offs.end());
            si.clusters = std::uint32_t(std::unique(offs.begin(), offs.end()) - offs.begin());
            si.groups = x.c;
        }
        si.purged = x.q;
        si.dict_id = x.dict_id;
        si.generation = x.generation;
        si.recv_min = x.recv_min;
        si.recv_max = x.recv_max;
        si.raw_bytes = x.raw_bytes;
        si.stored_bytes = x.stored_bytes;
        si.root = x.root;
        si.prev_root = x.prev_root;
        si.path = x.path;
        // Data files present and long enough?
        bool data_ok = true;
        for (unsigned k = 0; k < x.s; ++k) {
            struct stat st;
            std::string p = dat_path(dir, k, x.number, x.generation);
            if (::stat(p.c_str(), &st) != 0 || std::uint64_t(st.st_size) < x.shard_size(k)) {
                im->problems.push_back(p + ":" + std::to_string(::stat(p.c_str(), &st) == 0 ? st.st_size : 0) +
                                       ": data file missing or shorter than the index says (" +
                                       std::to_string(x.shard_size(k)) + " bytes)");
                data_ok = false;
            }
        }
        if (x.dict_id && !fs::exists(dict_path(dir, x.dict_id))) {
            im->problems.push_back(dict_path(dir, x.dict_id) + ": missing dictionary needed by " + x.path);
            data_ok = false;
        }
        if (!data_ok) continue;
        im->infos.push_back(si);
        im->idx.push_back(std::move(x));
    }
    auto t = bitset::Set::open(dir + "/tomb", false, nullptr);
    if (t) im->tombs.emplace(std::move(*t));
    return std::unique_ptr<Archive>(new Archive(std::move(im)));
}

const std::vector<SegmentInfo>& Archive::segments() const noexcept { return impl_->infos; }
const std::vector<std::string>& Archive::problems() const noexcept { return impl_->problems; }
std::size_t Archive::segment_files() const noexcept { return impl_->listed; }
const std::string& Archive::dir() const noexcept { return impl_->dir; }

std::uint64_t Archive::end_ordinal() const noexcept {
    return impl_->idx.empty() ? 0 : impl_->idx.back().first + impl_->idx.back().n;
}

std::optional<std::size_t> Archive::segment_of(std::uint64_t ord) const noexcept { return impl_->seg_of(ord); }

bool Archive::deleted(std::uint64_t ord) const noexcept { return impl_->tombs && impl_->tombs->test(ord); }

Errc Archive::read(std::uint64_t ord, std::vector<std::uint8_t>& envelope, std::string& err) {
    auto s = impl_->seg_of(ord);
    if (!s) {
        err = "ordinal " + std::to_string(ord) + " is not in the archive";
        return Errc::bad_argument;
    }
    ByteView env;
    if (!impl_->message(*s, std::uint32_t(ord - impl_->idx[*s].first), env, err)) return Errc::bad_argument;
    envelope.assign(env.begin(), env.end());
    return Errc::ok;
}

Errc Archive::scan_segment(std::size_t seg, const std::function<bool(std::uint64_t, ByteView)>& f, std::string& err) {
    const Index& x = impl_->idx.at(seg);
    // Decompress every cluster once (in cluster-table order), then emit in ordinal order.
    std::unordered_map<std::uint64_t, std::vector<std::uint8_t>> data;
    for (std::uint32_t c = 0; c < x.c; ++c) {
        const std::uint8_t* cr = x.clusters + kClusterRec * c;
        std::uint64_t off = get<std::uint64_t>(cr);
        std::uint32_t len = get<std::uint32_t>(cr + 8);
        if (data.count(off)) continue;  // several DID groups share a cluster
        const std::vector<std::uint8_t>* d;
        if (!impl_->cluster(seg, off, len, d, err)) return Errc::bad_argument;
        data[off] = *d;
    }
    for (std::uint32_t i = 0; i < x.n; ++i) {
        auto r = x.rec(i);
        if (r.c_len == 0) continue;
        auto it = data.find(r.bin_off);
        if (it == data.end() || std::uint64_t(r.inner_off) + r.i_len > it->second.size()) {
            err = x.path + ": record of ordinal " + std::to_string(x.first + i) + " points outside its cluster";
            return Errc::bad_argument;
        }
        if (!f(x.first + i, {it->second.data() + r.inner_off, r.i_len})) break;
    }
    return Errc::ok;
}

std::vector<std::uint64_t> Archive::ordinals_of_did(std::size_t seg, std::string_view did) const {
    const Index& x = impl_->idx.at(seg);
    std::uint64_t want = did.empty() ? 0 : tag_hash(as_bytes(did));
    std::vector<std::uint64_t> offs;
    for (std::uint32_t c = 0; c < x.c; ++c) {
        const std::uint8_t* cr = x.clusters + kClusterRec * c;
        if (get<std::uint64_t>(cr + 16) == want) offs.push_back(get<std::uint64_t>(cr));
    }
    std::vector<std::uint64_t> out;
    if (offs.empty()) return out;
    std::sort(offs.begin(), offs.end());
    for (std::uint32_t i = 0; i < x.n; ++i) {
        auto r = x.rec(i);
        if (r.c_len && std::binary_search(offs.begin(), offs.end(), r.bin_off)) out.push_back(x.first + i);
    }
    return out;
}

std::vector<std::uint64_t> Archive::ordinals_with_path(std::size_t seg, std::string_view path) const {
    const Index& x = impl_->idx.at(seg);
    std::uint64_t h = tag_hash(as_bytes(path));
    std::uint32_t lo = 0, hi = x.p;
    while (lo < hi) {
        std::uint32_t mid = (lo + hi) / 2;
        if (get<std::uint64_t>(x.ops + kOpRec * mid) < h) lo = mid + 1;
        else hi = mid;
    }
    std::vector<std::uint64_t> out;
    for (std::uint32_t k = lo; k < x.p && get<std::uint64_t>(x.ops + kOpRec * k) == h; ++k)
        out.push_back(x.first + get<std::uint32_t>(x.ops + kOpRec * k + 8));
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Errc Archive::check_segment(std::size_t seg, std::string& err) {
    const Index& x = impl_->idx.at(seg);
    std::vector<Hash> leaves(x.n);
    std::vector<bool> seen(x.n, false);
    Errc e = scan_segment(seg, [&](std::uint64_t ord, ByteView env) {
        leaves[ord - x.first] = leaf_hash(env);
        seen[ord - x.first] = true;
        return true;
    }, err);
    if (e != Errc::ok) return e;
    for (std::uint32_t i = 0; i < x.n; ++i) {
        if (seen[i]) continue;
        const std::uint8_t* pl = x.purged_leaf(i);
        if (!pl) {
            err = x.path + ": ordinal " + std::to_string(x.first + i) + " has neither content nor a purged leaf hash";
            return Errc::bad_argument;
        }
        std::memcpy(leaves[i].data(), pl, 32);
    }
    Hash root = merkle_root(leaves);
    if (root != x.root) {
        err = x.path + ": Merkle root mismatch: recomputed " + to_hex(root) + ", index says " + to_hex(x.root);
        return Errc::bad_argument;
    }
    if (seg > 0 && impl_->idx[seg - 1].number + 1 == x.number && x.prev_root != impl_->idx[seg - 1].root) {
        err = x.path + ": chain broken: previous-root field differs from the previous segment's root";
        return Errc::bad_argument;
    }
    return Errc::ok;
}

Errc Archive::proof(std::uint64_t ord, Proof& out, std::string& err) {
    auto s = impl_->seg_of(ord);
    if (!s) {
        err = "ordinal " + std::to_string(ord) + " is not in the archive";
        return Errc::bad_argument;
    }
    const Index& x = impl_->idx[*s];
    std::vector<Hash> leaves(x.n);
    std::vector<bool> seen(x.n, false);
    Errc e = scan_segment(*s, [&](std::uint64_t o, ByteView env) {
        leaves[o - x.first] = leaf_hash(env);
        seen[o - x.first] = true;
        return true;
    }, err);
    if (e != Errc::ok) return e;
    for (std::uint32_t i = 0; i < x.n; ++i)
        if (!seen[i]) {
            const std::uint8_t* pl = x.purged_leaf(i);
            if (pl) std::memcpy(leaves[i].data(), pl, 32);
        }
    out.ordinal = ord;
    out.segment = x.number;
    out.index = std::size_t(ord - x.first);
    out.size = x.n;
    out.leaf = leaves[out.index];
    out.path = audit_path(leaves, out.index);
    out.root = x.root;
    out.prev_root = x.prev_root;
    return Errc::ok;
}

// ---------------------------------------------------------------------------------------------
// Compaction

Errc compact(const std::string& dir, unsigned threads, std::uint64_t& purged_total, std::string& err) {
    return Archive::compact_impl(dir, threads, purged_total, err);
}

Errc Archive::compact_impl(const std::string& dir, unsigned threads, std::uint64_t& purged_total, std::string& err) {
    purged_total = 0;
    int lock_fd = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (lock_fd >= 0) ::close(lock_fd);
        err = dir + "/lock: another cvl-pack is writing this archive";
        return Errc::io_error;  // a system condition (exit 2), not bad input data
    }
    struct Unlock {
        int fd;
        ~Unlock() { ::close(fd); }
    } unlock{lock_fd};
    auto ar = Archive::open(dir, err);
    if (!ar) return Errc::bad_argument;
    auto& im = *ar->impl_;
    for (std::size_t s = 0; s < im.idx.size(); ++s) {
        const Index& x = im.idx[s];
        std::vector<std::uint32_t> to_purge;
        for (std::uint32_t i = 0; i < x.n; ++i)
            if (x.rec(i).c_len != 0 && ar->deleted(x.first + i)) to_purge.push_back(i);
        if (to_purge.empty()) continue;
        // Gather the segment's envelopes (copies: the cache is reused while scanning).
        std::vector<std::vector<std::uint8_t>> envs(x.n);
        Errc e = ar->scan_segment(s, [&](std::uint64_t ord, ByteView env) {
            envs[ord - x.first].assign(env.begin(), env.end());
            return true;
        }, err);
        if (e != Errc::ok) return e;
        SegmentBuild sb;
        sb.number = x.number;
        sb.first = x.first;
        sb.generation = x.generation + 1;
        sb.dict_id = x.dict_id;
        sb.level = x.level;
        sb.shards = x.s;
        sb.cluster_bytes = im.params.cluster_bytes;
        sb.threads = threads;
        sb.prev_root = x.prev_root;
        std::unique_ptr<ZSTD_CDict, ZstdDeleter> cdict;
        if (x.dict_id) {
            std::vector<std::uint8_t> d;
            if (!read_file(dict_path(dir, x.dict_id), d, err)) return Errc::io_error;
            cdict.reset(ZSTD_createCDict(d.data(), d.size(), x.level));
            sb.cdict = cdict.get();
        }
        sb.envelopes.resize(x.n);
        sb.metas.resize(x.n);
        sb.purged.assign(x.n, false);
        sb.purged_leaves.resize(x.n);
        std::size_t k = 0;
        for (std::uint32_t i = 0; i < x.n; ++i) {
            const std::uint8_t* pl = x.purged_leaf(i);
            bool purge = pl || (k < to_purge.size() && to_purge[k] == i);
            if (k < to_purge.size() && to_purge[k] == i) ++k;
            auto r = x.rec(i);
            sb.metas[i].recv = x.recv(i);
            sb.metas[i].path_hash = r.path_hash;
            if (purge) {
                sb.purged[i] = true;
                if (pl) std::memcpy(sb.purged_leaves[i].data(), pl, 32);
                else sb.purged_leaves[i] = leaf_hash(envs[i]);
                continue;
            }
            sb.envelopes[i] = {envs[i].data(), envs[i].size()};
            Meta m = meta_of(sb.envelopes[i]);
            sb.metas[i].did = m.did;
            sb.metas[i].op_hashes = m.op_hashes;
        }
        // Purged messages keep their op entries so tomb lookups still find them.
        for (std::uint32_t i = 0; i < x.n; ++i)
            if (sb.purged[i]) sb.metas[i].op_hashes.clear();
        for (std::uint32_t k2 = 0; k2 < x.p; ++k2) {
            std::uint32_t m = get<std::uint32_t>(x.ops + kOpRec * k2 + 8);
            if (sb.purged[m]) sb.metas[m].op_hashes.push_back(get<std::uint64_t>(x.ops + kOpRec * k2));
        }
        Hash root;
        std::uint64_t stored;
        if (!write_segment(dir, sb, root, stored, err)) return Errc::io_error;
        if (root != x.root) {
            err = x.path + ": compaction changed the Merkle root (internal error); segment rewritten but inconsistent";
            return Errc::bad_argument;
        }
        for (unsigned sh = 0; sh < x.s; ++sh) ::unlink(dat_path(dir, sh, x.number, x.generation).c_str());
        purged_total += to_purge.size();
    }
    return Errc::ok;
}

}  // namespace sov::cvl
