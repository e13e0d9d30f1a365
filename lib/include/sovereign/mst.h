// sovereign/mst.h — the Merkle Search Tree of atproto repositories: node codec, key heights,
// a partial (lazily loaded) tree with insert/remove, and commit inversion.
// Source: docs/protocol.md §6 (atproto repository spec "MST Structure"; sync spec "Commit
// validation"; proposals 0006 "sync iteration"). Design notes are at the top of lib/mst.cpp.
//
// Shapes: an MST key is a byte string (atproto: the repo path "collection/rkey"); a value is a
// binary CID (the record link, kept byte-exact even when not "blessed"); node links are
// blessed dag-cbor CIDs. Views returned by this module point into the caller's blocks or into
// the Tree's own arena and stay valid until the Tree is re-opened or cleared.
#pragma once

#include "sovereign/car.h"
#include "sovereign/cid.h"
#include "sovereign/errc.h"
#include "sovereign/message.h"

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sov::mst {

inline constexpr std::size_t kMaxKeyLen = 1024;  ///< key cap, bytes (indigo's; docs/protocol.md §6)
inline constexpr int kMaxHeight = 128;           ///< 256 hash bits / 2

// TODO(errc): stand-ins until errc.h gets an MST block (900..999). Intended names, meanings:
//   mst_bad_node = 900       node block is not a valid MST node (schema, links, prefix
//                            compression, key order, key length)
//   mst_bad_tree = 901       tree shape invalid: key height or range does not fit its place,
//                            empty leaf node, untrimmed root, children below height 0
//   mst_proof_missing = 902  a node the operation needs is not among the blocks (stub)
//   mst_op_mismatch = 903    an op disagrees with the tree (cid differs, create of a key
//                            that existed before, …)
//   mst_root_mismatch = 904  the inverted root is not prevData
//   mst_bad_key = 905        key is not a valid MST key
//   mst_duplicate_op = 906   two ops on the same path
//   mst_not_invertible = 907 no prevData, or an update/delete op without `prev`
inline constexpr Errc kErrBadNode = Errc::mst_bad_node;
inline constexpr Errc kErrBadTree = Errc::mst_bad_tree;
inline constexpr Errc kErrProofMissing = Errc::mst_proof_missing;
inline constexpr Errc kErrOpMismatch = Errc::mst_op_mismatch;
inline constexpr Errc kErrRootMismatch = Errc::mst_root_mismatch;
inline constexpr Errc kErrBadKey = Errc::mst_bad_key;
inline constexpr Errc kErrDuplicateOp = Errc::mst_duplicate_op;
inline constexpr Errc kErrNotInvertible = Errc::mst_not_invertible;

// ---- keys ----------------------------------------------------------------------------------

/// Layer of a key: leading zero bits of SHA-256(key), divided by 2 (fanout 4); 0..128.
/// Repository spec "MST Structure".
int key_height(std::string_view key) noexcept;

/// Length of the common prefix of a and b, in bytes.
std::size_t common_prefix_len(std::string_view a, std::string_view b) noexcept;

/// MST key syntax: 1..1024 bytes, two non-empty segments joined by one '/', characters
/// [A-Za-z0-9._~:-]. This is looser than a repo path (syntax::is_repo_path, which also
/// requires an NSID and a record key) so that the interop vectors' keys ("A0/374913") pass;
/// ops from the firehose have already been checked as repo paths by msg::parse.
bool is_valid_key(std::string_view key) noexcept;

// ---- node codec ----------------------------------------------------------------------------

/// One entry of a decoded node: the full key (prefix applied), the value CID and the right
/// subtree link (empty = null).
struct EntryView {
    std::string_view key;
    ByteView value;
    ByteView right;
};

/// A decoded node `{e: [{k, p, t, v}], l}`. Reusable: decode() keeps capacity. Not copyable
/// (key views point into its own storage).
class NodeData {
public:
    NodeData() = default;
    NodeData(const NodeData&) = delete;
    NodeData& operator=(const NodeData&) = delete;

    /// Strict decode: strict DAG-CBOR; exactly the keys e,l and k,p,t,v; `l` and `t` present
    /// and each a blessed dag-cbor link or null; `v` any valid CID (kept byte-exact); first
    /// p = 0, p = the common prefix length with the previous key (compression is mandatory,
    /// so decode∘encode is the identity); keys 1..1024 bytes, strictly ascending. Does not
    /// check heights (that needs the node's place in a tree). Errors: CBOR errors of
    /// cbor::validate, kErrBadNode; `detail` (optional) gets a phrase.
    Errc decode(ByteView block, std::string* detail = nullptr);

    ByteView left() const noexcept { return left_; }
    std::span<const EntryView> entries() const noexcept { return entries_; }

private:
    ByteView left_;
    std::vector<EntryView> entries_;
    std::vector<std::uint32_t> ends_;  // end offset of each key in keys_
    std::string keys_;
};

/// Canonical encoding of a node (keys must be ascending; prefix lengths are computed here):
/// map order e,l and k,p,t,v; `l`/`t` null when empty. Appends to `out`.
void encode_node(ByteView left, std::span<const EntryView> entries, std::vector<std::uint8_t>& out);

// ---- block sources -------------------------------------------------------------------------

/// Where a Tree finds node blocks: a car::BlockMap, or any callable `const ByteView*(ByteView
/// cid)` (nullptr = absent). Non-owning: the map or callable, and the blocks it returns,
/// must outlive the Tree's use of them. A default source has no blocks.
class BlockSource {
public:
    BlockSource() = default;
    BlockSource(const car::BlockMap& map) noexcept  // NOLINT: implicit by design
        : ctx_(&map), fn_([](const void* c, ByteView cid) { return static_cast<const car::BlockMap*>(c)->find(cid); }) {}
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, car::BlockMap> &&
                 !std::is_same_v<std::remove_cvref_t<F>, BlockSource> &&
                 std::is_invocable_r_v<const ByteView*, const F&, ByteView>)
    explicit BlockSource(const F& f) noexcept
        : ctx_(&f), fn_([](const void* c, ByteView cid) -> const ByteView* { return (*static_cast<const F*>(c))(cid); }) {}
    /// A temporary would dangle: refused.
    template <class F>
        requires(!std::is_lvalue_reference_v<F> && !std::is_same_v<std::remove_cvref_t<F>, BlockSource>)
    BlockSource(F&&) = delete;

    /// The block for `cid`, or nullptr.
    const ByteView* find(ByteView cid) const { return fn_ ? fn_(ctx_, cid) : nullptr; }

private:
    const void* ctx_ = nullptr;
    const ByteView* (*fn_)(const void*, ByteView) = nullptr;
};

// ---- the tree ------------------------------------------------------------------------------

/// A partial MST. open() records the root CID only; nodes are loaded from the block source
/// when an operation first reaches them (and validated then: codec, key heights, key ranges,
/// shape). A node whose block is absent is a stub: an operation that must look inside it
/// fails with kErrProofMissing and leaves the tree as it was (every node an operation
/// changes is loaded before anything is changed). Reusable and
/// allocation-free in steady state (arena + index-linked nodes; see lib/mst.cpp).
class Tree {
public:
    Tree();
    ~Tree();
    Tree(const Tree&) = delete;
    Tree& operator=(const Tree&) = delete;

    /// Resets to the empty tree `{e:[], l:null}` with no block source.
    void clear();
    /// Resets to the tree whose root node has CID `root` (a blessed dag-cbor CID, else
    /// cbor_bad_link), loading nodes from `src` on demand. Each block is hash-checked against
    /// its CID when loaded (Errc::car_hash_mismatch) unless `blocks_hash_checked` says the
    /// source only holds blocks that were already checked (car::verify_section).
    Errc open(ByteView root, BlockSource src, bool blocks_hash_checked = false);

    /// Value of `key` into `value` (empty if absent). Descends only to the key's layer.
    /// Errors: kErrProofMissing, node/tree errors.
    Errc get(std::string_view key, ByteView& value);
    /// Inserts or updates: `prev` receives the replaced value (empty if the key was new).
    /// Errors: kErrBadKey (!is_valid_key), bad_argument (value not a CID), kErrProofMissing,
    /// node/tree errors.
    Errc put(std::string_view key, ByteView value, ByteView& prev);
    /// Removes `key`: `prev` receives its value (empty if it was absent; not an error).
    /// Errors: kErrProofMissing, node/tree errors.
    Errc remove(std::string_view key, ByteView& prev);

    /// Re-encodes every changed node (bottom-up) and returns the root CID. An untouched tree
    /// returns the CID given to open() without loading anything.
    Errc root_cid(cid::Cid& out) { return root_cid_impl(out, nullptr, nullptr); }
    /// Same, also calling sink(cid, block) for each node block it encodes.
    template <class F>
    Errc root_cid(cid::Cid& out, F&& sink) {
        return root_cid_impl(out, &sink, [](void* c, ByteView cid, ByteView block) {
            (*static_cast<std::remove_reference_t<F>*>(c))(cid, block);
        });
    }

    /// Calls f(key, value) for every entry in key order, loading the whole tree.
    /// Errors: kErrProofMissing (the tree is partial), node/tree errors.
    template <class F>
    Errc walk(F&& f) {
        return walk_impl(&f, [](void* c, std::string_view k, ByteView v) {
            (*static_cast<std::remove_reference_t<F>*>(c))(k, v);
        });
    }
    /// Loads every reachable node whose block is present; `stubs` gets the number of absent
    /// ones. Errors: node/tree errors only.
    Errc load_all(std::size_t& stubs);
    /// Marks every loaded node changed, so the next root_cid() re-encodes the whole loaded
    /// tree (used to check that decode∘encode reproduces real repositories).
    void mark_all_dirty() noexcept;

    /// Height of the root layer (-1 for the empty tree); loads the root.
    Errc height(int& out);
    /// Number of node blocks fetched from the source since open() (for proofs and stats).
    std::size_t loaded_count() const noexcept { return loaded_; }
    /// A phrase about the last error (names the node CID or key); empty after success.
    const std::string& error_detail() const noexcept { return detail_; }

private:
    static constexpr std::int32_t kNull = -1;
    enum class State : std::uint8_t { unloaded, loaded, missing };
    struct Entry {
        std::string_view key;
        ByteView value;
        std::int32_t right = kNull;
    };
    struct Node {
        std::array<std::uint8_t, cid::kBlessedLen> cid{};  // valid unless dirty
        std::string_view lo, hi;   // key range a block must respect when loaded (empty = open)
        std::uint32_t first = 0;   // entries are pool_[first, first + count)
        std::uint32_t count = 0;
        std::int32_t left = kNull;
        std::int16_t height = -1;  // -1: the opened root before loading, or the empty tree
        State state = State::loaded;
        bool dirty = false;
    };
    using Sink = void (*)(void*, ByteView, ByteView);
    using Visit = void (*)(void*, std::string_view, ByteView);

    class Arena;

    Errc root_cid_impl(cid::Cid& out, void* ctx, Sink sink);
    Errc walk_impl(void* ctx, Visit visit);
    Errc walk_rec(std::int32_t idx, void* ctx, Visit visit);
    Errc load_all_rec(std::int32_t idx, std::size_t& stubs);
    Errc load(std::int32_t idx);
    Errc fail_node(std::int32_t idx, Errc e, std::string_view why);
    Errc missing(std::int32_t idx);
    std::int32_t new_node(int height);
    std::uint32_t lower_bound(const Node& n, std::string_view key) const noexcept;
    std::int32_t gap(std::int32_t idx, std::uint32_t pos) const noexcept;
    void set_gap(std::int32_t idx, std::uint32_t pos, std::int32_t child) noexcept;
    void insert_entry(std::int32_t idx, std::uint32_t pos, const Entry& e);
    bool is_empty_node(std::int32_t idx) const noexcept;
    Errc split(std::int32_t idx, int height, std::string_view key, std::int32_t& l, std::int32_t& r);
    Errc merge(std::int32_t a, std::int32_t b, int height, std::int32_t& out);
    Errc put_rec(std::int32_t idx, int height, std::string_view key, int key_h, ByteView value, ByteView& prev, bool& changed);
    Errc remove_rec(std::int32_t idx, int height, std::string_view key, int key_h, ByteView& prev, bool& changed);
    Errc trim_top();
    Errc hash_rec(std::int32_t idx, void* ctx, Sink sink);
    std::string_view copy_key(std::string_view key);
    ByteView copy_bytes(ByteView b);
    int op_height(std::string_view key);  // key_height, remembered for the last key asked

    std::vector<Node> nodes_;
    std::vector<Entry> pool_;
    std::vector<ByteView> links_;  // scratch: child links of the node being loaded
    std::vector<std::uint8_t> enc_; // scratch: node encoding
    std::unique_ptr<Arena> arena_;
    std::int32_t root_ = 0;
    BlockSource src_;
    bool check_hashes_ = true;
    std::size_t loaded_ = 0;
    std::string detail_;
    std::string height_key_;  // op_height's last key (a copy: callers' keys may not live on)
    int height_of_key_ = -1;  // its height; -1 = none yet
};

// ---- commit inversion ----------------------------------------------------------------------

/// Inductive validation of a #commit (docs/protocol.md §6 steps 6–10): builds the partial tree
/// at `new_root` (the commit's `data`) from `blocks`, checks every create/update op's cid
/// against the tree, rejects duplicate paths, inverts the ops (deletions first, then by
/// path: create → remove, old value must be cid; update → put prev, replaced value must be
/// cid; delete → put prev, key must have been absent) and requires the recomputed root to
/// equal `prev_data`. Node blocks are hash-checked as they are loaded, unless
/// `blocks_hash_checked` says every block in `blocks` already was (step 2; saves ~20% of the
/// time). Reusable; steady-state use allocates nothing. Errors: kErrNotInvertible (no
/// prevData, update/delete without prev),
/// kErrBadKey, kErrDuplicateOp, kErrOpMismatch, kErrProofMissing, kErrRootMismatch, node/tree
/// errors; `detail` (optional) gets a human-readable reason.
class Inverter {
public:
    Errc invert(const car::BlockMap& blocks, ByteView new_root, std::span<const msg::RepoOp> ops,
                ByteView prev_data, std::string* detail, bool blocks_hash_checked = false);
    /// The tree after the last invert() (the previous commit's partial tree on success).
    Tree& tree() noexcept { return tree_; }

private:
    Tree tree_;
    std::vector<const msg::RepoOp*> order_;
};

/// Inverter::invert with a per-thread Inverter.
Errc invert_commit(const car::BlockMap& blocks, ByteView new_root_cid, std::span<const msg::RepoOp> ops,
                   ByteView prev_data, std::string* detail, bool blocks_hash_checked = false);

}  // namespace sov::mst
