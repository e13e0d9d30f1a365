// The Merkle Search Tree of atproto repositories, written from the repository spec ("MST
// Structure") and the sync spec / Sync 1.1 proposal (commit inversion); docs/protocol.md §6.
//
// Shape. Every key has a height (leading zero bits of its SHA-256, halved). A node holds the
// keys of one height h in order, with subtrees of height h-1 between them: reading a node as
// the sequence child_0, key_0, child_1, key_1, …, key_{n-1}, child_n, child_0 is `l` and
// child_{i+1} is `e[i].t`. The root holds the highest keys. Nodes with no keys exist only as
// the empty tree's root or as "intermediate" nodes that keep a layer from being skipped; the
// top and bottom are trimmed. The shape depends only on the key set, which is what makes
// inversion work: undoing a commit's ops on the new tree must give exactly prevData.
//
// Mutation, in terms of the sequence above:
//   - insert k at height h into a node of height h: the child whose range holds k is split
//     around k into (L, R), recursively down to the leaves, and k goes between them;
//   - insert k above the root: the whole root is split around k, and L and R are wrapped in
//     empty intermediate nodes up to height h-1;
//   - insert k below a null child: a chain of empty nodes down to a new leaf holding k;
//   - remove k: the children on either side of k are merged (the last child of the left one
//     with the first child of the right one, recursively), then nodes left with neither keys
//     nor children are dropped, and the root is trimmed while it has no keys.
// Split and merge must look inside the nodes they cut or join (these are the sync spec's
// "extra proof nodes adjacent to added or removed keys"); when such a node's block is not in
// the commit's CAR slice the operation fails with "proof missing". Merging with an empty
// side needs no look inside, and lookups descend only to the key's own layer, so inversion
// loads no more than it must (the interop fixtures carry a few nodes it never opens).
//
// Representation. A commit touches a handful of nodes, so the tree is partial and lazy: a
// node starts as a CID (with the key range and height its parent implies) and is loaded,
// hash-checked (unless the caller already checked every block) and validated the first
// time an operation reaches it. Nodes live in one vector and refer to each other by index;
// their entries are ranges of one shared entry pool (a node owns its range exclusively, so
// edits are in place, and growing a range that is not at the pool's end copies it there). Keys are views into the blocks when they are
// stored whole (p = 0) and otherwise assembled in a chunked arena, as are keys and values
// given to put(). open()/clear() reset all three and keep their capacity, so a reused Tree
// (Inverter keeps one per thread) allocates nothing per commit once warm.
//
// Strictness. Node blocks must be canonical: strict DAG-CBOR, exactly the fields e,l /
// k,p,t,v with `l` and `t` always present, node links blessed dag-cbor CIDs,
// p equal to the real common prefix with the previous key (the spec makes compression
// mandatory, so any other p would give a different CID on re-encoding), keys strictly
// ascending, non-empty and at most 1024 bytes. Record links (`v`) only need to be valid
// CIDs and are kept byte-exact (repository spec "CID Formats"). Loading a node also checks
// its keys' heights against its layer and its keys against the range its parent gives it.
// Since a node has exactly one valid encoding, it is read by a single-pass matcher of those
// bytes (NodeReader) rather than cbor::validate plus a schema walk (three passes; this alone
// halved the inversion time); cbor::validate runs only on refusal, to name the CBOR error.
// No cap on entries per node is enforced: the spec suggests one against key mining but
// names no number, and a false rejection of a valid commit is worse than a slow one.
//
// Cost (relay capture, 148 commits, ~8 nodes loaded each): most of the time is SHA-256 —
// one per key of every loaded node for its height, one per loaded block for its CID, one
// per re-encoded node — so the per-call overhead of crypto::sha256 matters.
#include "sovereign/mst.h"

#include "sovereign/cbor.h"
#include "sovereign/crypto.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

namespace sov::mst {

// ---- keys ----------------------------------------------------------------------------------

int key_height(std::string_view key) noexcept {
    const auto d = crypto::sha256(as_bytes(key));
    int zeros = 0;
    for (std::uint8_t b : d) {
        if (b == 0) {
            zeros += 8;
            continue;
        }
        zeros += std::countl_zero(b);
        break;
    }
    return zeros / 2;
}

std::size_t common_prefix_len(std::string_view a, std::string_view b) noexcept {
    const std::size_t n = std::min(a.size(), b.size());
    std::size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

bool is_valid_key(std::string_view key) noexcept {
    if (key.empty() || key.size() > kMaxKeyLen) return false;
    std::size_t slash = std::string_view::npos;
    for (std::size_t i = 0; i < key.size(); ++i) {
        const char c = key[i];
        if (c == '/') {
            if (slash != std::string_view::npos) return false;
            slash = i;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '~' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return slash != std::string_view::npos && slash > 0 && slash + 1 < key.size();
}

// ---- node codec ----------------------------------------------------------------------------

namespace {

bool is_node_link(ByteView c) noexcept {
    return c.size() == cid::kBlessedLen && c[0] == 0x01 && c[1] == cid::kCodecDagCbor && c[2] == cid::kHashSha256 &&
           c[3] == 0x20;
}

struct RawEntry {
    ByteView suffix;
    std::uint64_t p = 0;
    ByteView right;
    ByteView value;
};

// Single-pass strict reader of a node block. A node has one canonical encoding:
//   a2 61'e' <array n> { a4 61'k' <bytes> 61'p' <uint> 61't' (f6|<link>) 61'v' <link> }*n
//      61'l' (f6|<link>)
// with shortest-form heads and links d8 2a <bytes 0x00 ‖ CID>. Accepting exactly these bytes
// is the same as cbor::validate plus the schema check (key order, exact key sets and
// definite lengths are implied by the fixed layout), in one pass instead of three. On a
// failure the caller runs cbor::validate to report the precise CBOR error, if there is one.
class NodeReader {
public:
    explicit NodeReader(ByteView b) noexcept : p_(b.data()), end_(b.data() + b.size()) {}

    // The head up to the entry array.
    bool begin(std::uint32_t& count) noexcept {
        std::uint64_t n;
        if (!byte(0xa2) || !key('e')) return fail("node is not a map of exactly {e, l}");
        if (!head(4, n)) return fail("node field e is not an array");
        if (n > 0xffffffu || n > std::uint64_t(end_ - p_)) return fail("node entry count too large");
        count = std::uint32_t(n);
        return true;
    }
    bool next(RawEntry& e) noexcept {
        std::uint64_t n;
        if (!byte(0xa4)) return fail("entry is not a map of exactly {k, p, t, v}");
        if (!key('k') || !head(2, n) || n > std::uint64_t(end_ - p_)) return fail("entry field k missing or not bytes");
        e.suffix = {p_, std::size_t(n)};
        p_ += n;
        if (!key('p') || !head(0, e.p) || e.p > std::uint64_t(std::numeric_limits<std::int64_t>::max())) return fail("entry field p missing or not an unsigned integer");
        if (!key('t') || !node_link(e.right))
            return fail("entry field t missing, or neither null nor a blessed dag-cbor link");
        if (!key('v') || !link(e.value)) return fail("entry field v missing or not a link");
        if (cid::check_binary(e.value) != Errc::ok) return fail("entry field v is not a valid CID");
        return true;
    }
    // The trailing `l` and the end of the block.
    bool finish(ByteView& left) noexcept {
        if (!key('l')) return fail("node field l missing");
        if (!node_link(left)) return fail("node field l is neither null nor a blessed dag-cbor link");
        if (p_ != end_) return fail("bytes after the node");
        return true;
    }
    const char* why() const noexcept { return why_; }

private:
    bool fail(const char* why) noexcept {
        why_ = why;
        return false;
    }
    bool byte(std::uint8_t b) noexcept {
        if (p_ == end_ || *p_ != b) return false;
        ++p_;
        return true;
    }
    bool key(char c) noexcept { return byte(0x61) && byte(std::uint8_t(c)); }
    // A head of major type `major` in shortest form.
    bool head(std::uint8_t major, std::uint64_t& arg) noexcept {
        if (p_ == end_ || (*p_ >> 5) != major) return false;
        const std::uint8_t ai = *p_ & 31;
        if (ai < 24) {
            arg = ai;
            ++p_;
            return true;
        }
        if (ai > 27) return false;
        const std::size_t n = std::size_t(1) << (ai - 24);
        if (std::size_t(end_ - p_) < 1 + n) return false;
        std::uint64_t v = 0;
        for (std::size_t i = 1; i <= n; ++i) v = (v << 8) | p_[i];
        const std::uint64_t min = ai == 24 ? 24 : ai == 25 ? 0x100 : ai == 26 ? 0x10000 : 0x100000000ULL;
        if (v < min) return false;
        arg = v;
        p_ += 1 + n;
        return true;
    }
    // d8 2a <bytes 0x00 ‖ cid>; out = cid (not yet checked as a CID).
    bool link(ByteView& out) noexcept {
        std::uint64_t n;
        if (!byte(0xd8) || !byte(0x2a) || !head(2, n) || n < 2 || n > std::uint64_t(end_ - p_) || *p_ != 0x00)
            return false;
        out = {p_ + 1, std::size_t(n - 1)};
        p_ += n;
        return true;
    }
    // null (out empty) or a blessed dag-cbor link.
    bool node_link(ByteView& out) noexcept {
        if (byte(0xf6)) {
            out = {};
            return true;
        }
        return link(out) && is_node_link(out);
    }

    const std::uint8_t* p_;
    const std::uint8_t* end_;
    const char* why_ = "";
};

// The error for a block NodeReader refused: the CBOR error if it is not strict DAG-CBOR at
// all, else kErrBadNode with the reader's reason.
Errc node_error(ByteView block, const char* reader_why, const char*& why) noexcept {
    if (const Located v = cbor::validate(block)) {
        why = "not strict DAG-CBOR";
        return v.errc;
    }
    why = reader_why;
    return kErrBadNode;
}

// Checks an entry's prefix compression against the previous key (`first`: no previous key):
// p ≤ |prev|, p the whole common prefix, the key non-empty, ≤ kMaxKeyLen and > prev.
Errc check_prefix(std::string_view prev, bool first, const RawEntry& e, const char*& why) noexcept {
    if (first) {
        if (e.p != 0) {
            why = "first entry has a non-zero prefix length";
            return kErrBadNode;
        }
        if (e.suffix.empty()) {
            why = "empty key";
            return kErrBadNode;
        }
    } else {
        if (e.p > prev.size()) {
            why = "prefix length longer than the previous key";
            return kErrBadNode;
        }
        if (e.suffix.empty()) {  // the key would be a prefix of (or equal to) the previous one
            why = "keys not strictly ascending";
            return kErrBadNode;
        }
        if (e.p < prev.size()) {
            const auto next = std::uint8_t(prev[e.p]);
            if (e.suffix[0] == next) {
                why = "prefix length shorter than the common prefix (not canonical)";
                return kErrBadNode;
            }
            if (e.suffix[0] < next) {
                why = "keys not strictly ascending";
                return kErrBadNode;
            }
        }
    }
    if (e.p + e.suffix.size() > kMaxKeyLen) {
        why = "key longer than 1024 bytes";
        return kErrBadNode;
    }
    return Errc::ok;
}

// Canonical node encoding from accessors (shared by encode_node and Tree), written straight
// into `out` after sizing it for the worst case (heads at most 9 bytes, CIDs ≤ 100 bytes).
template <class KeyAt, class ValueAt, class RightAt>
void encode_impl(std::vector<std::uint8_t>& out, ByteView left, std::size_t n, KeyAt key_at, ValueAt value_at,
                 RightAt right_at) {
    constexpr std::size_t kLinkMax = 4 + cid::kMaxLen;  // d8 2a 58 len 00 | cid minus the 00
    std::size_t bound = 1 + 2 + 9 + 2 + 1 + kLinkMax;
    for (std::size_t i = 0; i < n; ++i) bound += 1 + 2 + 9 + key_at(i).size() + 2 + 9 + 2 + 1 + kLinkMax + 2 + kLinkMax;
    const std::size_t base = out.size();
    out.resize(base + bound);
    std::uint8_t* w = out.data() + base;
    auto key = [&w](char c) {
        *w++ = 0x61;
        *w++ = std::uint8_t(c);
    };
    auto link = [&w](ByteView c) {
        *w++ = 0xd8;
        *w++ = 0x2a;
        w += cbor::encode_head(w, 2, c.size() + 1);
        *w++ = 0x00;
        std::memcpy(w, c.data(), c.size());
        w += c.size();
    };
    auto link_or_null = [&](ByteView c) {
        if (c.empty()) *w++ = 0xf6;
        else link(c);
    };
    *w++ = 0xa2;
    key('e');
    w += cbor::encode_head(w, 4, n);
    std::string_view prev;
    for (std::size_t i = 0; i < n; ++i) {
        const std::string_view k = key_at(i);
        const std::size_t p = common_prefix_len(prev, k);
        *w++ = 0xa4;
        key('k');
        w += cbor::encode_head(w, 2, k.size() - p);
        if (k.size() > p) std::memcpy(w, k.data() + p, k.size() - p);
        w += k.size() - p;
        key('p');
        w += cbor::encode_head(w, 0, p);
        key('t');
        link_or_null(right_at(i));
        key('v');
        link(value_at(i));
        prev = k;
    }
    key('l');
    link_or_null(left);
    out.resize(std::size_t(w - out.data()));
}

}  // namespace

Errc NodeData::decode(ByteView block, std::string* detail) {
    left_ = {};
    entries_.clear();
    ends_.clear();
    keys_.clear();
    const char* why = "";
    NodeReader rd(block);
    auto fail = [&](Errc e) {
        if (detail) *detail = why;
        entries_.clear();
        return e;
    };
    std::uint32_t count = 0;
    if (!rd.begin(count)) return fail(node_error(block, rd.why(), why));
    std::size_t prev_start = 0;
    for (std::uint32_t i = 0; i < count; ++i) {
        RawEntry re;
        if (!rd.next(re)) return fail(node_error(block, rd.why(), why));
        const std::string_view prev(keys_.data() + prev_start, keys_.size() - prev_start);
        if (Errc e = check_prefix(prev, i == 0, re, why); e != Errc::ok) return fail(e);
        const std::size_t start = keys_.size();
        keys_.append(keys_, prev_start, std::size_t(re.p));  // self-append is well defined
        keys_.append(as_chars(re.suffix));
        prev_start = start;
        ends_.push_back(std::uint32_t(keys_.size()));
        entries_.push_back(EntryView{{}, re.value, re.right});
    }
    if (!rd.finish(left_)) return fail(node_error(block, rd.why(), why));
    std::size_t start = 0;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        entries_[i].key = std::string_view(keys_).substr(start, ends_[i] - start);
        start = ends_[i];
    }
    if (detail) detail->clear();
    return Errc::ok;
}

void encode_node(ByteView left, std::span<const EntryView> entries, std::vector<std::uint8_t>& out) {
    encode_impl(
        out, left, entries.size(), [&](std::size_t i) { return entries[i].key; },
        [&](std::size_t i) { return entries[i].value; }, [&](std::size_t i) { return entries[i].right; });
}

// ---- arena ---------------------------------------------------------------------------------

// Bump allocator over fixed chunks: pointers stay valid until reset(), which keeps the chunks.
class Tree::Arena {
public:
    std::uint8_t* alloc(std::size_t n) {
        while (cur_ < chunks_.size() && chunks_[cur_].size - off_ < n) {
            ++cur_;
            off_ = 0;
        }
        if (cur_ == chunks_.size()) {
            const std::size_t size = std::max(kChunk, n);
            chunks_.push_back(Chunk{std::unique_ptr<std::uint8_t[]>(new std::uint8_t[size]), size});
            off_ = 0;
        }
        std::uint8_t* p = chunks_[cur_].data.get() + off_;
        off_ += n;
        return p;
    }
    void reset() noexcept {
        cur_ = 0;
        off_ = 0;
    }

private:
    static constexpr std::size_t kChunk = 64 * 1024;
    struct Chunk {
        std::unique_ptr<std::uint8_t[]> data;
        std::size_t size = 0;
    };
    std::vector<Chunk> chunks_;
    std::size_t cur_ = 0;
    std::size_t off_ = 0;
};

// ---- tree: setup ---------------------------------------------------------------------------

Tree::Tree() : arena_(std::make_unique<Arena>()) { clear(); }
Tree::~Tree() = default;

void Tree::clear() {
    nodes_.clear();
    pool_.clear();
    arena_->reset();
    src_ = BlockSource{};
    check_hashes_ = true;
    loaded_ = 0;
    detail_.clear();
    nodes_.push_back(Node{});  // loaded, no entries, no left, height -1: the empty tree
    nodes_[0].dirty = true;
    root_ = 0;
}

Errc Tree::open(ByteView root, BlockSource src, bool blocks_hash_checked) {
    clear();
    check_hashes_ = !blocks_hash_checked;
    if (!is_node_link(root)) {
        detail_ = "root is not a blessed dag-cbor CID";
        return Errc::cbor_bad_link;
    }
    src_ = src;
    Node& r = nodes_[0];
    std::memcpy(r.cid.data(), root.data(), cid::kBlessedLen);
    r.state = State::unloaded;
    r.dirty = false;
    return Errc::ok;
}

std::string_view Tree::copy_key(std::string_view key) {
    std::uint8_t* p = arena_->alloc(key.size());
    if (!key.empty()) std::memcpy(p, key.data(), key.size());
    return {reinterpret_cast<const char*>(p), key.size()};
}

ByteView Tree::copy_bytes(ByteView b) {
    std::uint8_t* p = arena_->alloc(b.size());
    if (!b.empty()) std::memcpy(p, b.data(), b.size());
    return {p, b.size()};
}

int Tree::op_height(std::string_view key) {
    // An inversion asks for each op's key twice (checked in the tree, then inverted): one hash.
    if (height_of_key_ < 0 || key != height_key_) {
        height_key_.assign(key);
        height_of_key_ = key_height(key);
    }
    return height_of_key_;
}

std::int32_t Tree::new_node(int height) {
    nodes_.push_back(Node{});
    Node& n = nodes_.back();
    n.height = std::int16_t(height);
    n.first = std::uint32_t(pool_.size());
    n.dirty = true;
    return std::int32_t(nodes_.size() - 1);
}

// ---- tree: loading -------------------------------------------------------------------------

Errc Tree::fail_node(std::int32_t idx, Errc e, std::string_view why) {
    detail_ = "MST node ";
    cid::append_string(ByteView(nodes_[std::size_t(idx)].cid), detail_);
    detail_ += ": ";
    detail_ += why;
    return e;
}

Errc Tree::missing(std::int32_t idx) {
    return fail_node(idx, kErrProofMissing, "block not available (proof incomplete)");
}

Errc Tree::load(std::int32_t idx) {
    Node* n = &nodes_[std::size_t(idx)];
    if (n->state == State::loaded) return Errc::ok;
    if (n->state == State::missing) return missing(idx);
    const ByteView cidv(n->cid);
    const ByteView* found = src_.find(cidv);
    if (!found) {
        n->state = State::missing;
        return missing(idx);
    }
    const ByteView block = *found;
    if (check_hashes_ && !cid::matches(cidv, block)) return fail_node(idx, Errc::car_hash_mismatch, "block does not hash to its CID");
    const char* why = "";
    NodeReader rd(block);
    auto refused = [&] {
        const Errc e = node_error(block, rd.why(), why);
        return fail_node(idx, e, why);
    };
    std::uint32_t count = 0;
    ByteView left;
    if (!rd.begin(count)) return refused();

    const std::uint32_t first = std::uint32_t(pool_.size());
    links_.clear();
    std::string_view prev;
    bool any_link = false;
    for (std::uint32_t i = 0; i < count; ++i) {
        RawEntry re;
        if (!rd.next(re)) return refused();
        if (Errc e = check_prefix(prev, i == 0, re, why); e != Errc::ok) return fail_node(idx, e, why);
        std::string_view key;
        if (re.p == 0) {
            key = as_chars(re.suffix);  // stored whole: view into the block
        } else {
            const std::size_t p = std::size_t(re.p);
            std::uint8_t* dst = arena_->alloc(p + re.suffix.size());
            std::memcpy(dst, prev.data(), p);
            std::memcpy(dst + p, re.suffix.data(), re.suffix.size());
            key = {reinterpret_cast<const char*>(dst), p + re.suffix.size()};
        }
        pool_.push_back(Entry{key, re.value, kNull});
        links_.push_back(re.right);
        any_link = any_link || !re.right.empty();
        prev = key;
    }
    if (!rd.finish(left)) return refused();
    any_link = any_link || !left.empty();

    // Shape: heights, ranges, emptiness. Height -1 means the root given to open().
    n = &nodes_[std::size_t(idx)];
    int h = n->height;
    if (count == 0) {
        if (h < 0 && !left.empty()) return fail_node(idx, kErrBadTree, "root has no entries but a subtree (not trimmed)");
        if (h >= 0 && left.empty()) return fail_node(idx, kErrBadTree, "empty node without a subtree");
    } else {
        const std::string_view k0 = pool_[first].key;
        const std::string_view kn = pool_[first + count - 1].key;
        std::uint32_t checked = 0;
        if (h < 0) {
            h = key_height(k0);  // the root's layer is its first key's
            checked = 1;
        }
        for (std::uint32_t i = checked; i < count; ++i) {
            if (key_height(pool_[first + i].key) != h)
                return fail_node(idx, kErrBadTree, "key height does not match its layer");
        }
        if ((!n->lo.empty() && k0 <= n->lo) || (!n->hi.empty() && kn >= n->hi))
            return fail_node(idx, kErrBadTree, "key outside the range its parent gives it");
    }
    if (h == 0 && any_link) return fail_node(idx, kErrBadTree, "subtree link below layer 0");

    const std::string_view lo = n->lo, hi = n->hi;
    n->first = first;
    n->count = count;
    n->height = std::int16_t(count == 0 && h < 0 ? -1 : h);
    n->state = State::loaded;
    ++loaded_;
    auto child = [&](ByteView link, std::string_view clo, std::string_view chi) {
        const std::int32_t c = new_node(h - 1);  // invalidates n
        Node& cn = nodes_.back();
        std::memcpy(cn.cid.data(), link.data(), cid::kBlessedLen);
        cn.lo = clo;
        cn.hi = chi;
        cn.state = State::unloaded;
        cn.dirty = false;
        return c;
    };
    if (!left.empty()) {
        const std::int32_t c = child(left, lo, count ? pool_[first].key : hi);
        nodes_[std::size_t(idx)].left = c;
    }
    for (std::uint32_t i = 0; i < count; ++i) {
        if (links_[i].empty()) continue;
        const std::string_view chi = i + 1 < count ? pool_[first + i + 1].key : hi;
        const std::int32_t c = child(links_[i], pool_[first + i].key, chi);
        pool_[first + i].right = c;
    }
    return Errc::ok;
}

// ---- tree: navigation helpers --------------------------------------------------------------

std::uint32_t Tree::lower_bound(const Node& n, std::string_view key) const noexcept {
    std::uint32_t lo = 0, hi = n.count;
    while (lo < hi) {
        const std::uint32_t mid = (lo + hi) / 2;
        if (pool_[n.first + mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// The child before entry `pos` (pos = count: the last child).
std::int32_t Tree::gap(std::int32_t idx, std::uint32_t pos) const noexcept {
    const Node& n = nodes_[std::size_t(idx)];
    return pos == 0 ? n.left : pool_[n.first + pos - 1].right;
}

void Tree::set_gap(std::int32_t idx, std::uint32_t pos, std::int32_t child) noexcept {
    Node& n = nodes_[std::size_t(idx)];
    if (pos == 0) n.left = child;
    else pool_[n.first + pos - 1].right = child;
}

void Tree::insert_entry(std::int32_t idx, std::uint32_t pos, const Entry& e) {
    const std::uint32_t first = nodes_[std::size_t(idx)].first;
    const std::uint32_t count = nodes_[std::size_t(idx)].count;
    if (std::size_t(first) + count != pool_.size()) {  // not at the pool's end: move it there
        const std::uint32_t moved = std::uint32_t(pool_.size());
        for (std::uint32_t i = 0; i < count; ++i) {
            const Entry copy = pool_[first + i];
            pool_.push_back(copy);
        }
        nodes_[std::size_t(idx)].first = moved;
    }
    pool_.push_back(Entry{});
    Node& n = nodes_[std::size_t(idx)];
    for (std::uint32_t i = n.count; i > pos; --i) pool_[n.first + i] = pool_[n.first + i - 1];
    pool_[n.first + pos] = e;
    ++n.count;
}

bool Tree::is_empty_node(std::int32_t idx) const noexcept {
    const Node& n = nodes_[std::size_t(idx)];
    return n.state == State::loaded && n.count == 0 && n.left == kNull;
}

// ---- tree: split and merge -----------------------------------------------------------------

// Splits the subtree `idx` (of height `height`; kNull allowed) around `key`, which is not in
// it: l gets the keys below, r those above (either may be kNull). Reuses idx for the left part.
Errc Tree::split(std::int32_t idx, int height, std::string_view key, std::int32_t& l, std::int32_t& r) {
    l = r = kNull;
    if (idx == kNull) return Errc::ok;
    if (Errc e = load(idx); e != Errc::ok) return e;
    const std::uint32_t pos = lower_bound(nodes_[std::size_t(idx)], key);
    const std::int32_t child = gap(idx, pos);
    std::int32_t cl, cr;
    if (Errc e = split(child, height - 1, key, cl, cr); e != Errc::ok) return e;
    const std::uint32_t count = nodes_[std::size_t(idx)].count;
    if (pos == count && cr == kNull) {  // everything is below key
        set_gap(idx, pos, cl);
        if (cl != child) nodes_[std::size_t(idx)].dirty = true;
        l = is_empty_node(idx) ? kNull : idx;
        return Errc::ok;
    }
    if (pos == 0 && cl == kNull) {  // everything is above key
        set_gap(idx, 0, cr);
        if (cr != child) nodes_[std::size_t(idx)].dirty = true;
        r = is_empty_node(idx) ? kNull : idx;
        return Errc::ok;
    }
    const std::int32_t right = new_node(height);
    Node& n = nodes_[std::size_t(idx)];
    Node& rn = nodes_[std::size_t(right)];
    rn.first = n.first + pos;
    rn.count = n.count - pos;
    rn.left = cr;
    n.count = pos;
    set_gap(idx, pos, cl);
    nodes_[std::size_t(idx)].dirty = true;
    l = is_empty_node(idx) ? kNull : idx;
    r = is_empty_node(right) ? kNull : right;
    return Errc::ok;
}

// Joins two subtrees of height `height` (a entirely below b; either may be kNull) into `out`.
Errc Tree::merge(std::int32_t a, std::int32_t b, int height, std::int32_t& out) {
    if (a == kNull || b == kNull) {
        out = a == kNull ? b : a;
        return Errc::ok;
    }
    if (Errc e = load(a); e != Errc::ok) return e;
    if (Errc e = load(b); e != Errc::ok) return e;
    const std::uint32_t acount = nodes_[std::size_t(a)].count;
    std::int32_t mid;
    if (Errc e = merge(gap(a, acount), nodes_[std::size_t(b)].left, height - 1, mid); e != Errc::ok) return e;
    const std::uint32_t afirst = nodes_[std::size_t(a)].first;
    const std::uint32_t bfirst = nodes_[std::size_t(b)].first;
    const std::uint32_t bcount = nodes_[std::size_t(b)].count;
    if (afirst + acount != bfirst) {  // not adjacent in the pool: build a's + b's range at the end
        std::uint32_t first = afirst;
        if (std::size_t(afirst) + acount != pool_.size()) {
            first = std::uint32_t(pool_.size());
            for (std::uint32_t i = 0; i < acount; ++i) {
                const Entry copy = pool_[afirst + i];
                pool_.push_back(copy);
            }
        }
        for (std::uint32_t i = 0; i < bcount; ++i) {
            const Entry copy = pool_[bfirst + i];
            pool_.push_back(copy);
        }
        nodes_[std::size_t(a)].first = first;
    }
    Node& n = nodes_[std::size_t(a)];
    n.count = acount + bcount;
    set_gap(a, acount, mid);
    n.dirty = true;
    nodes_[std::size_t(b)].count = 0;  // abandoned; owns nothing any more
    out = a;
    return Errc::ok;
}

// ---- tree: operations ----------------------------------------------------------------------

Errc Tree::height(int& out) {
    out = -1;
    if (Errc e = load(root_); e != Errc::ok) return e;
    out = nodes_[std::size_t(root_)].height;
    return Errc::ok;
}

Errc Tree::get(std::string_view key, ByteView& value) {
    value = {};
    detail_.clear();
    if (Errc e = load(root_); e != Errc::ok) return e;
    std::int32_t idx = root_;
    int x = nodes_[std::size_t(idx)].height;
    if (x < 0) return Errc::ok;  // empty tree
    const int h = op_height(key);
    if (h > x) return Errc::ok;
    for (;;) {
        const Node& n = nodes_[std::size_t(idx)];
        const std::uint32_t pos = lower_bound(n, key);
        if (x == h) {
            if (pos < n.count && pool_[n.first + pos].key == key) value = pool_[n.first + pos].value;
            return Errc::ok;
        }
        const std::int32_t child = gap(idx, pos);
        if (child == kNull) return Errc::ok;
        if (Errc e = load(child); e != Errc::ok) return e;
        idx = child;
        --x;
    }
}

Errc Tree::put(std::string_view key, ByteView value, ByteView& prev) {
    prev = {};
    detail_.clear();
    if (!is_valid_key(key)) {
        detail_ = "not a valid MST key";
        return kErrBadKey;
    }
    if (cid::check_binary(value) != Errc::ok) {
        detail_ = "value is not a binary CID";
        return Errc::bad_argument;
    }
    if (Errc e = load(root_); e != Errc::ok) return e;
    const int h = op_height(key);
    Node& r = nodes_[std::size_t(root_)];
    if (r.count == 0 && r.left == kNull) {  // empty tree
        r.first = std::uint32_t(pool_.size());
        pool_.push_back(Entry{copy_key(key), copy_bytes(value), kNull});
        r.count = 1;
        r.height = std::int16_t(h);
        r.dirty = true;
        return Errc::ok;
    }
    const int top = r.height;
    if (h > top) {  // new layer(s) above the root
        std::int32_t l, rr;
        if (Errc e = split(root_, top, key, l, rr); e != Errc::ok) return e;
        for (int x = top + 1; x < h; ++x) {
            if (l != kNull) {
                const std::int32_t w = new_node(x);
                nodes_[std::size_t(w)].left = l;
                l = w;
            }
            if (rr != kNull) {
                const std::int32_t w = new_node(x);
                nodes_[std::size_t(w)].left = rr;
                rr = w;
            }
        }
        const std::int32_t nr = new_node(h);
        pool_.push_back(Entry{copy_key(key), copy_bytes(value), rr});
        nodes_[std::size_t(nr)].count = 1;
        nodes_[std::size_t(nr)].left = l;
        root_ = nr;
        return Errc::ok;
    }
    bool changed = false;
    return put_rec(root_, top, key, h, value, prev, changed);
}

Errc Tree::put_rec(std::int32_t idx, int height, std::string_view key, int key_h, ByteView value, ByteView& prev,
                   bool& changed) {
    const std::uint32_t pos = lower_bound(nodes_[std::size_t(idx)], key);
    if (height == key_h) {
        Node& n = nodes_[std::size_t(idx)];
        if (pos < n.count && pool_[n.first + pos].key == key) {
            Entry& e = pool_[n.first + pos];
            prev = e.value;
            if (!cid::equal(e.value, value)) {
                e.value = copy_bytes(value);
                n.dirty = true;
                changed = true;
            }
            return Errc::ok;
        }
        std::int32_t l, r;
        if (Errc e = split(gap(idx, pos), height - 1, key, l, r); e != Errc::ok) return e;
        insert_entry(idx, pos, Entry{copy_key(key), copy_bytes(value), r});
        set_gap(idx, pos, l);
        nodes_[std::size_t(idx)].dirty = true;
        changed = true;
        return Errc::ok;
    }
    const std::int32_t child = gap(idx, pos);
    if (child == kNull) {  // a new leaf under a chain of empty nodes down to the key's layer
        std::int32_t c = new_node(key_h);
        pool_.push_back(Entry{copy_key(key), copy_bytes(value), kNull});
        nodes_[std::size_t(c)].count = 1;
        for (int x = key_h + 1; x < height; ++x) {
            const std::int32_t w = new_node(x);
            nodes_[std::size_t(w)].left = c;
            c = w;
        }
        set_gap(idx, pos, c);
        nodes_[std::size_t(idx)].dirty = true;
        changed = true;
        return Errc::ok;
    }
    if (Errc e = load(child); e != Errc::ok) return e;
    if (Errc e = put_rec(child, height - 1, key, key_h, value, prev, changed); e != Errc::ok) return e;
    if (changed) nodes_[std::size_t(idx)].dirty = true;
    return Errc::ok;
}

Errc Tree::remove(std::string_view key, ByteView& prev) {
    prev = {};
    detail_.clear();
    if (Errc e = load(root_); e != Errc::ok) return e;
    const int top = nodes_[std::size_t(root_)].height;
    if (top < 0) return Errc::ok;  // empty tree
    const int h = op_height(key);
    if (h > top) return Errc::ok;
    bool changed = false;
    if (Errc e = remove_rec(root_, top, key, h, prev, changed); e != Errc::ok) return e;
    return changed ? trim_top() : Errc::ok;
}

Errc Tree::remove_rec(std::int32_t idx, int height, std::string_view key, int key_h, ByteView& prev, bool& changed) {
    const std::uint32_t pos = lower_bound(nodes_[std::size_t(idx)], key);
    if (height == key_h) {
        {
            const Node& n = nodes_[std::size_t(idx)];
            if (pos == n.count || pool_[n.first + pos].key != key) return Errc::ok;
            prev = pool_[n.first + pos].value;
        }
        std::int32_t m;
        const std::uint32_t at = nodes_[std::size_t(idx)].first + pos;
        if (Errc e = merge(gap(idx, pos), pool_[at].right, height - 1, m); e != Errc::ok) return e;
        Node& n = nodes_[std::size_t(idx)];
        for (std::uint32_t i = pos; i + 1 < n.count; ++i) pool_[n.first + i] = pool_[n.first + i + 1];
        --n.count;
        set_gap(idx, pos, m);
        n.dirty = true;
        changed = true;
        return Errc::ok;
    }
    const std::int32_t child = gap(idx, pos);
    if (child == kNull) return Errc::ok;
    if (Errc e = load(child); e != Errc::ok) return e;
    if (Errc e = remove_rec(child, height - 1, key, key_h, prev, changed); e != Errc::ok) return e;
    if (changed) {
        if (is_empty_node(child)) set_gap(idx, pos, kNull);
        nodes_[std::size_t(idx)].dirty = true;
    }
    return Errc::ok;
}

// Drops key-less roots: the tree's top must hold keys (or be the empty tree).
Errc Tree::trim_top() {
    for (;;) {
        Node& r = nodes_[std::size_t(root_)];
        if (r.count > 0) return Errc::ok;
        if (r.left == kNull) {
            r.height = -1;
            r.dirty = true;
            return Errc::ok;
        }
        const std::int32_t c = r.left;
        const Errc e = load(c);
        root_ = c;
        if (e == kErrProofMissing) {
            // An unchanged node the proof did not carry: it becomes the root as it is. Only if
            // it were itself key-less would trimming go on, and then its CID, which is what
            // the root now hashes to, could not match a well-formed previous root anyway.
            detail_.clear();
            return Errc::ok;
        }
        if (e != Errc::ok) return e;
    }
}

// ---- tree: hashing, walking ----------------------------------------------------------------

Errc Tree::hash_rec(std::int32_t idx, void* ctx, Sink sink) {
    if (!nodes_[std::size_t(idx)].dirty) return Errc::ok;
    const std::uint32_t first = nodes_[std::size_t(idx)].first;
    const std::uint32_t count = nodes_[std::size_t(idx)].count;
    const std::int32_t left = nodes_[std::size_t(idx)].left;
    if (left != kNull) {
        if (Errc e = hash_rec(left, ctx, sink); e != Errc::ok) return e;
    }
    for (std::uint32_t i = 0; i < count; ++i) {
        const std::int32_t r = pool_[first + i].right;
        if (r != kNull) {
            if (Errc e = hash_rec(r, ctx, sink); e != Errc::ok) return e;
        }
    }
    auto link_of = [&](std::int32_t c) { return c == kNull ? ByteView{} : ByteView(nodes_[std::size_t(c)].cid); };
    enc_.clear();
    encode_impl(
        enc_, link_of(left), count, [&](std::size_t i) { return pool_[first + i].key; },
        [&](std::size_t i) { return pool_[first + i].value; },
        [&](std::size_t i) { return link_of(pool_[first + i].right); });
    const cid::Cid c = cid::compute(cid::kCodecDagCbor, enc_);
    Node& n = nodes_[std::size_t(idx)];
    std::memcpy(n.cid.data(), c.bytes().data(), cid::kBlessedLen);
    n.dirty = false;
    if (sink) sink(ctx, c.bytes(), enc_);
    return Errc::ok;
}

Errc Tree::root_cid_impl(cid::Cid& out, void* ctx, Sink sink) {
    detail_.clear();
    if (Errc e = hash_rec(root_, ctx, sink); e != Errc::ok) return e;
    out = cid::Cid(ByteView(nodes_[std::size_t(root_)].cid));
    return Errc::ok;
}

Errc Tree::walk_rec(std::int32_t idx, void* ctx, Visit visit) {
    if (idx == kNull) return Errc::ok;
    if (Errc e = load(idx); e != Errc::ok) return e;
    const std::uint32_t first = nodes_[std::size_t(idx)].first;
    const std::uint32_t count = nodes_[std::size_t(idx)].count;
    if (Errc e = walk_rec(nodes_[std::size_t(idx)].left, ctx, visit); e != Errc::ok) return e;
    for (std::uint32_t i = 0; i < count; ++i) {
        const Entry en = pool_[first + i];  // by value: loading children grows pool_
        visit(ctx, en.key, en.value);
        if (Errc e = walk_rec(en.right, ctx, visit); e != Errc::ok) return e;
    }
    return Errc::ok;
}

Errc Tree::walk_impl(void* ctx, Visit visit) {
    detail_.clear();
    return walk_rec(root_, ctx, visit);
}

Errc Tree::load_all_rec(std::int32_t idx, std::size_t& stubs) {
    if (idx == kNull) return Errc::ok;
    const Errc e = load(idx);
    if (e == kErrProofMissing) {
        ++stubs;
        detail_.clear();
        return Errc::ok;
    }
    if (e != Errc::ok) return e;
    const std::uint32_t first = nodes_[std::size_t(idx)].first;
    const std::uint32_t count = nodes_[std::size_t(idx)].count;
    if (Errc e2 = load_all_rec(nodes_[std::size_t(idx)].left, stubs); e2 != Errc::ok) return e2;
    for (std::uint32_t i = 0; i < count; ++i) {
        if (Errc e2 = load_all_rec(pool_[first + i].right, stubs); e2 != Errc::ok) return e2;
    }
    return Errc::ok;
}

Errc Tree::load_all(std::size_t& stubs) {
    stubs = 0;
    detail_.clear();
    return load_all_rec(root_, stubs);
}

void Tree::mark_all_dirty() noexcept {
    for (Node& n : nodes_) {
        if (n.state == State::loaded) n.dirty = true;
    }
}

// ---- commit inversion ----------------------------------------------------------------------

namespace {

std::string_view action_name(msg::OpAction a) noexcept {
    switch (a) {
    case msg::OpAction::create: return "create";
    case msg::OpAction::update: return "update";
    case msg::OpAction::del: return "delete";
    }
    return "?";
}

void append_cid_or(std::string& s, ByteView c, std::string_view none) {
    if (c.empty()) s += none;
    else cid::append_string(c, s);
}

}  // namespace

Errc Inverter::invert(const car::BlockMap& blocks, ByteView new_root, std::span<const msg::RepoOp> ops,
                      ByteView prev_data, std::string* detail, bool blocks_hash_checked) {
    // Diagnostics are built only on failure.
    auto op_fail = [&](Errc e, const msg::RepoOp& op, std::string_view why) {
        if (detail) {
            detail->assign(action_name(op.action));
            *detail += ' ';
            *detail += op.path;
            *detail += ": ";
            *detail += why;
        }
        return e;
    };
    auto tree_fail = [&](Errc e, const msg::RepoOp* op) {
        if (detail) {
            detail->clear();
            if (op) {
                *detail += action_name(op->action);
                *detail += ' ';
                *detail += op->path;
                *detail += ": ";
            }
            *detail += tree_.error_detail().empty() ? to_string(e) : std::string_view(tree_.error_detail());
        }
        return e;
    };
    if (detail) detail->clear();
    if (prev_data.empty()) {
        if (detail) *detail = "commit has no prevData";
        return kErrNotInvertible;
    }
    if (Errc e = tree_.open(new_root, BlockSource(blocks), blocks_hash_checked); e != Errc::ok) {
        if (detail) *detail = "commit data is not a blessed dag-cbor CID";
        return e;
    }

    // Step 7: every op is well formed and every create/update is in the new tree.
    order_.clear();
    for (const msg::RepoOp& op : ops) {
        if (!is_valid_key(op.path)) return op_fail(kErrBadKey, op, "not a valid MST key");
        const bool needs_cid = op.action != msg::OpAction::del;
        const bool needs_prev = op.action != msg::OpAction::create;
        if (needs_cid && op.cid.empty()) return op_fail(kErrOpMismatch, op, "op has no cid");
        if (needs_prev && op.prev.empty()) return op_fail(kErrNotInvertible, op, "op has no prev (legacy op)");
        if (needs_cid) {
            ByteView v;
            if (Errc e = tree_.get(op.path, v); e != Errc::ok) return tree_fail(e, &op);
            if (!cid::equal(v, op.cid)) {
                if (!detail) return kErrOpMismatch;
                std::string why = "tree has ";
                append_cid_or(why, v, "no such key");
                why += ", op says ";
                append_cid_or(why, op.cid, "null");
                return op_fail(kErrOpMismatch, op, why);
            }
        }
        order_.push_back(&op);
    }

    // Step 8: no duplicate paths; deletions first, then by path.
    std::sort(order_.begin(), order_.end(), [](const msg::RepoOp* a, const msg::RepoOp* b) { return a->path < b->path; });
    for (std::size_t i = 1; i < order_.size(); ++i) {
        if (order_[i - 1]->path == order_[i]->path) return op_fail(kErrDuplicateOp, *order_[i], "two ops on this path");
    }
    std::stable_partition(order_.begin(), order_.end(),
                          [](const msg::RepoOp* o) { return o->action == msg::OpAction::del; });

    // Step 9: invert.
    for (const msg::RepoOp* op : order_) {
        ByteView old;
        Errc e = Errc::ok;
        switch (op->action) {
        case msg::OpAction::create:
            e = tree_.remove(op->path, old);
            if (e == Errc::ok && !cid::equal(old, op->cid))
                return op_fail(kErrOpMismatch, *op, "created value not in the tree");
            break;
        case msg::OpAction::update:
            e = tree_.put(op->path, op->prev, old);
            if (e == Errc::ok && !cid::equal(old, op->cid))
                return op_fail(kErrOpMismatch, *op, "updated value not in the tree");
            break;
        case msg::OpAction::del:
            e = tree_.put(op->path, op->prev, old);
            if (e == Errc::ok && !old.empty()) return op_fail(kErrOpMismatch, *op, "deleted key still in the tree");
            break;
        }
        if (e != Errc::ok) return tree_fail(e, op);
    }

    // Step 10: the previous root.
    cid::Cid root;
    if (Errc e = tree_.root_cid(root); e != Errc::ok) return tree_fail(e, nullptr);
    if (!(root == prev_data)) {
        if (detail) {
            *detail = "inverted root ";
            cid::append_string(root.bytes(), *detail);
            *detail += " is not prevData ";
            cid::append_string(prev_data, *detail);
        }
        return kErrRootMismatch;
    }
    return Errc::ok;
}

Errc invert_commit(const car::BlockMap& blocks, ByteView new_root_cid, std::span<const msg::RepoOp> ops,
                   ByteView prev_data, std::string* detail, bool blocks_hash_checked) {
    thread_local Inverter inv;
    return inv.invert(blocks, new_root_cid, ops, prev_data, detail, blocks_hash_checked);
}

}  // namespace sov::mst
