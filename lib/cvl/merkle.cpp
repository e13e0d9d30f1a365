// Merkle trees and inclusion proofs (docs/format-cvl.md §8, §9), FxHash64, hex.
#include "internal/cvl/common.h"

#include "sovereign/blake3.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <functional>
#include <vector>

namespace sov::cvl {

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
    Hash out;
    if (envelope.size() < blake3::chunk_len) {
        const std::uint8_t zero = 0;
        h.update({&zero, 1});
        h.update(envelope);
    } else {
        // One contiguous 0x00 ‖ envelope: BLAKE3 then hashes whole chunks several at a time
        // (its SIMD lanes); after a 1-byte update it would go one block at a time.
        thread_local std::vector<std::uint8_t> buf;
        buf.resize(envelope.size() + 1);
        buf[0] = 0;
        std::memcpy(buf.data() + 1, envelope.data(), envelope.size());
        h.update(buf);
    }
    h.finalize(out.data(), out.size());
    return out;
}

Hash node_hash(const Hash& l, const Hash& r) {
    std::uint8_t buf[65];
    buf[0] = 1;
    std::memcpy(buf + 1, l.data(), 32);
    std::memcpy(buf + 33, r.data(), 32);
    return blake3::hash({buf, sizeof buf});
}

Hash segment_anchor(std::uint64_t segment, std::uint64_t first, std::uint64_t count, const Hash& root) {
    std::uint8_t buf[1 + 24 + 32];
    buf[0] = 2;  // neither a leaf (0x00) nor a node (0x01)
    for (int i = 0; i < 8; ++i) {
        buf[1 + i] = std::uint8_t(segment >> (8 * i));
        buf[9 + i] = std::uint8_t(first >> (8 * i));
        buf[17 + i] = std::uint8_t(count >> (8 * i));
    }
    std::memcpy(buf + 25, root.data(), 32);
    return blake3::hash({buf, sizeof buf});
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
    // Informational: what cvl-cat --stats lists for the segment; checks recompute it.
    if (auto a = anchor()) j["anchor"] = to_hex(*a);
    return j.dump();
}

Errc Proof::from_json(std::string_view text, Proof& p) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Errc::json_parse;
    if (!j.is_object()) return Errc::json_bad_data_model;
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

std::optional<Hash> Proof::anchor() const {
    if (index > ordinal) return std::nullopt;
    return segment_anchor(segment, ordinal - index, size, root);
}

bool Proof::verify() const {
    auto r = root_from_path(leaf, index, size, path);
    return r && *r == root;
}

namespace detail {

void leaf_hashes(std::span<const ByteView> in, Hash* out) {
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = leaf_hash(in[i]);
}

}  // namespace detail

}  // namespace sov::cvl
