// MST: key heights, the node codec, tree restructuring, and commit inversion (docs/protocol.md
// §6), against the interop vectors, real repositories, the relay capture and randomized
// property tests whose proofs are built the way a PDS builds them (new nodes plus the nodes
// around each changed key), independently of the Tree under test.
#include "sovereign/capture.h"
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/message.h"
#include "sovereign/mst.h"

#include "test_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using sov::ByteView;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;
namespace mst = sov::mst;
namespace cid = sov::cid;
namespace car = sov::car;
namespace cbor = sov::cbor;
namespace msg = sov::msg;

namespace {

ByteView view(const Bytes& b) { return {b.data(), b.size()}; }
ByteView view(const std::string& s) { return sov::as_bytes(s); }
Bytes copy(ByteView b) { return {b.begin(), b.end()}; }
// CIDs as map keys are std::string: GCC 12 at -O3 warns falsely (-Wstringop-overread) inside
// std::less<std::vector<unsigned char>>.
std::string key_of(ByteView b) { return std::string(sov::as_chars(b)); }

cid::Cid parse_cid(std::string_view text) {
    cid::Cid c;
    REQUIRE(cid::from_string(text, c) == Errc::ok);
    return c;
}

constexpr std::string_view kEmptyRoot = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

// Node blocks by CID, in stable storage (views into it stay valid).
using Store = std::map<std::string, Bytes>;

void fill(car::BlockMap& m, const Store& s) {
    m.clear();
    for (const auto& [c, b] : s) m.add(view(c), view(b));
}

// Root CID of a tree holding `kv`, built by insertion; every node block goes into `store`.
std::string root_of(const std::vector<std::pair<std::string, cid::Cid>>& kv, Store* store = nullptr) {
    mst::Tree t;
    for (const auto& [k, v] : kv) {
        ByteView prev;
        REQUIRE(t.put(k, v.bytes(), prev) == Errc::ok);
    }
    cid::Cid root;
    REQUIRE(t.root_cid(root, [&](ByteView c, ByteView b) {
        if (store) store->emplace(key_of(c), copy(b));
    }) == Errc::ok);
    return cid::to_string(root);
}

// A whole CAR in memory with its blocks indexed (hash-checked).
struct CarFile {
    Bytes bytes;
    car::BlockMap blocks;
    ByteView commit_cid;
    ByteView commit_block;
    ByteView data;  // the commit's MST root
    std::string rev;
};

void load_car(const std::filesystem::path& p, CarFile& f) {
    f.bytes = testutil::read_file(p);
    REQUIRE(!f.bytes.empty());
    car::Reader r;
    REQUIRE(!r.open(view(f.bytes)));
    car::Section s;
    while (r.next(s)) {
        REQUIRE(car::verify_section(s));
        f.blocks.add(s.cid, s.block);
    }
    REQUIRE(!r.error());
    f.commit_cid = r.root();
    const ByteView* cb = f.blocks.find(f.commit_cid);
    REQUIRE(cb);
    f.commit_block = *cb;
    REQUIRE(!cbor::validate(f.commit_block));
    const cbor::Value commit = cbor::Value::of(f.commit_block);
    REQUIRE(commit.get("data").is(cbor::Kind::link));
    f.data = commit.get("data").as_link();
    f.rev = std::string(commit.get("rev").as_text());
}

// A block source that records every CID asked for.
struct Recorder {
    const car::BlockMap* map = nullptr;
    mutable std::set<std::string> asked;
    const ByteView* operator()(ByteView c) const {
        asked.insert(key_of(c));
        return map->find(c);
    }
};

// ---- independent proof construction --------------------------------------------------------
// What a PDS puts in a commit's CAR slice besides new nodes: for each changed key, the nodes
// on its search path in the new tree, down to the leaves, and at the key itself (when it is
// present) the rightmost path of its left neighbour subtree and the leftmost path of its right
// one. Computed here from the node blocks with NodeData, not with Tree.

void covering_path(const Store& s, ByteView node, std::string_view key, std::set<std::string>& out);

void edge_path(const Store& s, ByteView node, bool rightmost, std::set<std::string>& out) {
    while (!node.empty()) {
        auto it = s.find(key_of(node));
        REQUIRE(it != s.end());
        out.insert(it->first);
        mst::NodeData d;
        REQUIRE(d.decode(view(it->second)) == Errc::ok);
        node = rightmost ? (d.entries().empty() ? d.left() : d.entries().back().right) : d.left();
    }
}

void covering_path(const Store& s, ByteView node, std::string_view key, std::set<std::string>& out) {
    while (!node.empty()) {
        auto it = s.find(key_of(node));
        REQUIRE(it != s.end());
        out.insert(it->first);
        mst::NodeData d;
        REQUIRE(d.decode(view(it->second)) == Errc::ok);
        const auto es = d.entries();
        std::size_t pos = 0;
        while (pos < es.size() && es[pos].key < key) ++pos;
        const ByteView before = pos == 0 ? d.left() : es[pos - 1].right;
        if (pos < es.size() && es[pos].key == key) {
            edge_path(s, before, true, out);
            edge_path(s, es[pos].right, false, out);
            return;
        }
        node = before;
    }
}

// ---- hand-made node blocks -----------------------------------------------------------------

struct RawEntry {
    std::string suffix;
    std::int64_t p = 0;
    std::optional<Bytes> t;  // nullopt: null
    Bytes v;
    bool skip_t = false;
    bool extra = false;
};

Bytes raw_node(const std::vector<RawEntry>& es, std::optional<Bytes> l, bool skip_l = false) {
    Bytes out;
    cbor::Writer w(out);
    w.map(skip_l ? 1 : 2);
    w.text("e");
    w.array(es.size());
    for (const auto& e : es) {
        w.map(4 - (e.skip_t ? 1 : 0) + (e.extra ? 1 : 0));
        w.text("k");
        w.bytes(sov::as_bytes(e.suffix));
        w.text("p");
        w.integer(e.p);
        if (!e.skip_t) {
            w.text("t");
            if (e.t) w.link(view(*e.t));
            else w.null();
        }
        w.text("v");
        w.link(view(e.v));
        if (e.extra) {
            w.text("zz");
            w.null();
        }
    }
    if (!skip_l) {
        w.text("l");
        if (l) w.link(view(*l));
        else w.null();
    }
    return out;
}

const cid::Cid& leaf() {
    static const cid::Cid c = [] {
        cid::Cid x;
        (void)cid::from_string("bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454", x);
        return x;
    }();
    return c;
}

// ---- randomized repos ----------------------------------------------------------------------

std::string random_key(std::mt19937_64& rng) {
    static const char* kCollections[] = {"app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow",
                                         "app.bsky.feed.repost"};
    static const char kB32[] = "234567abcdefghijklmnopqrstuvwxyz";
    std::string k = kCollections[rng() % 4];
    k += "/3";
    for (int i = 0; i < 12; ++i) k += kB32[rng() % 32];
    return k;
}

cid::Cid random_cid(std::mt19937_64& rng) {
    std::uint64_t x[2] = {rng(), rng()};
    return cid::compute(cid::kCodecDagCbor, ByteView(reinterpret_cast<const std::uint8_t*>(x), sizeof x));
}

}  // namespace

// ---- keys ----------------------------------------------------------------------------------

TEST_CASE("key heights: interop vectors", "[mst]") {
    REQUIRE_CORPUS(dir);
    const auto text = testutil::read_file(dir / "interop" / "mst" / "key_heights.json");
    const auto j = nlohmann::json::parse(text.begin(), text.end());
    REQUIRE(j.size() == 9);
    for (const auto& v : j) {
        INFO(v.dump());
        CHECK(mst::key_height(v["key"].get<std::string>()) == v["height"].get<int>());
    }
}

TEST_CASE("common prefix: interop vectors", "[mst]") {
    REQUIRE_CORPUS(dir);
    const auto text = testutil::read_file(dir / "interop" / "mst" / "common_prefix.json");
    const auto j = nlohmann::json::parse(text.begin(), text.end());
    REQUIRE(j.size() == 13);
    for (const auto& v : j) {
        INFO(v.dump());
        CHECK(mst::common_prefix_len(v["left"].get<std::string>(), v["right"].get<std::string>()) ==
              v["len"].get<std::size_t>());
    }
}

TEST_CASE("example keys: the digit after the letter is the height", "[mst]") {
    REQUIRE_CORPUS(dir);
    std::ifstream f(dir / "interop" / "mst" / "example_keys.txt");
    std::string k;
    int n = 0;
    while (f >> k) {
        INFO(k);
        REQUIRE(k.size() > 2);
        CHECK(mst::key_height(k) == k[1] - '0');
        CHECK(mst::is_valid_key(k));
        ++n;
    }
    CHECK(n == 156);
}

TEST_CASE("MST key syntax", "[mst]") {
    CHECK(mst::is_valid_key("app.bsky.feed.post/3jqfcqzm3fo2j"));
    CHECK(mst::is_valid_key("A0/374913"));
    CHECK(mst::is_valid_key("com.example.record/a:b~c_d-e.f"));
    CHECK_FALSE(mst::is_valid_key(""));
    CHECK_FALSE(mst::is_valid_key("noslash"));
    CHECK_FALSE(mst::is_valid_key("/rkey"));
    CHECK_FALSE(mst::is_valid_key("coll/"));
    CHECK_FALSE(mst::is_valid_key("a/b/c"));
    CHECK_FALSE(mst::is_valid_key("a/b c"));
    CHECK_FALSE(mst::is_valid_key("a/jalape\xc3\xb1o"));
    CHECK_FALSE(mst::is_valid_key(std::string("a/b\0", 4)));
    CHECK(mst::is_valid_key("a/" + std::string(1022, 'x')));
    CHECK_FALSE(mst::is_valid_key("a/" + std::string(1023, 'x')));
}

// ---- node codec ----------------------------------------------------------------------------

TEST_CASE("node codec: known node and the empty node", "[mst]") {
    // The spec's interop vector: one entry "com.example.record/3jqfcqzm3fo2j" -> leaf.
    Bytes out;
    const mst::EntryView e{"com.example.record/3jqfcqzm3fo2j", leaf().bytes(), {}};
    mst::encode_node({}, std::span(&e, 1), out);
    CHECK(cid::to_string(cid::compute(cid::kCodecDagCbor, view(out))) ==
          "bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu");
    mst::NodeData d;
    REQUIRE(d.decode(view(out)) == Errc::ok);
    REQUIRE(d.entries().size() == 1);
    CHECK(d.entries()[0].key == "com.example.record/3jqfcqzm3fo2j");
    CHECK(cid::equal(d.entries()[0].value, leaf().bytes()));
    CHECK(d.entries()[0].right.empty());
    CHECK(d.left().empty());

    out.clear();
    mst::encode_node({}, {}, out);
    CHECK(out == Bytes{0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6});
    CHECK(cid::to_string(cid::compute(cid::kCodecDagCbor, view(out))) == kEmptyRoot);
}

TEST_CASE("node codec: strict decoding", "[mst]") {
    const Bytes v = copy(leaf().bytes());
    const Bytes child = copy(cid::compute(cid::kCodecDagCbor, sov::as_bytes("x")).bytes());
    mst::NodeData d;
    std::string why;

    // A good two-entry node with prefix compression, and a subtree link.
    Bytes good = raw_node({{"com.example/abc", 0, std::nullopt, v}, {"d", 14, child, v}}, std::nullopt);
    REQUIRE(d.decode(view(good), &why) == Errc::ok);
    CHECK(d.entries()[1].key == "com.example/abd");
    CHECK(cid::equal(d.entries()[1].right, view(child)));
    Bytes again;
    mst::encode_node(d.left(), d.entries(), again);
    CHECK(again == good);

    struct Bad {
        const char* name;
        Bytes block;
        Errc want;
    };
    const Bytes raw = copy(cid::compute(cid::kCodecRaw, sov::as_bytes("x")).bytes());
    RawEntry no_t{"com.example/abc", 0, std::nullopt, v};
    no_t.skip_t = true;
    RawEntry extra{"com.example/abc", 0, std::nullopt, v};
    extra.extra = true;
    const std::vector<Bad> bad = {
        {"first p != 0", raw_node({{"com.example/abc", 1, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"p too long", raw_node({{"a/b", 0, std::nullopt, v}, {"c", 4, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"p not maximal", raw_node({{"a/bc", 0, std::nullopt, v}, {"bd", 2, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"descending", raw_node({{"a/bc", 0, std::nullopt, v}, {"a", 3, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"duplicate", raw_node({{"a/bc", 0, std::nullopt, v}, {"", 4, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"empty key", raw_node({{"", 0, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"key too long", raw_node({{"a/" + std::string(1023, 'x'), 0, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"t absent", raw_node({no_t}, std::nullopt), mst::kErrBadNode},
        {"extra entry field", raw_node({extra}, std::nullopt), mst::kErrBadNode},
        {"l absent", raw_node({{"a/b", 0, std::nullopt, v}}, std::nullopt, true), mst::kErrBadNode},
        {"l raw codec", raw_node({{"a/b", 0, std::nullopt, v}}, raw), mst::kErrBadNode},
        {"t raw codec", raw_node({{"a/b", 0, raw, v}}, std::nullopt), mst::kErrBadNode},
        {"negative p", raw_node({{"a/b", -1, std::nullopt, v}}, std::nullopt), mst::kErrBadNode},
        {"not a map", Bytes{0x80}, mst::kErrBadNode},
        {"not canonical CBOR", Bytes{0xa2, 0x61, 0x6c, 0xf6, 0x61, 0x65, 0x80}, Errc::cbor_key_order},
        {"trailing bytes", Bytes{0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6, 0x00}, Errc::trailing_bytes},
    };
    for (const auto& b : bad) {
        INFO(b.name);
        CHECK(d.decode(view(b.block), &why) == b.want);
        CHECK(!why.empty());
    }
    // A non-blessed record link (`v`) is accepted and kept byte-exact.
    const Bytes odd_v = {0x01, 0x55, 0x00, 0x03, 'a', 'b', 'c'};  // raw codec, identity hash
    const Bytes lenient = raw_node({{"a/b", 0, std::nullopt, odd_v}}, std::nullopt);
    REQUIRE(d.decode(view(lenient)) == Errc::ok);
    CHECK(cid::equal(d.entries()[0].value, view(odd_v)));
}

// ---- trees: known maps (the interop vectors of the repository spec's reference tests) -----

TEST_CASE("tree: known maps", "[mst]") {
    const cid::Cid& v = leaf();
    using KV = std::vector<std::pair<std::string, cid::Cid>>;
    CHECK(root_of({}) == kEmptyRoot);
    CHECK(root_of(KV{{"com.example.record/3jqfcqzm3fo2j", v}}) ==
          "bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu");
    CHECK(root_of(KV{{"com.example.record/3jqfcqzm3fx2j", v}}) ==
          "bafyreih7wfei65pxzhauoibu3ls7jgmkju4bspy4t2ha2qdjnzqvoy33ai");
    CHECK(root_of(KV{{"com.example.record/3jqfcqzm3fp2j", v},
                     {"com.example.record/3jqfcqzm3fr2j", v},
                     {"com.example.record/3jqfcqzm3fs2j", v},
                     {"com.example.record/3jqfcqzm3ft2j", v},
                     {"com.example.record/3jqfcqzm4fc2j", v}}) ==
          "bafyreicmahysq4n6wfuxo522m6dpiy7z7qzym3dzs756t5n7nfdgccwq7m");
}

TEST_CASE("tree: trims the top on delete", "[mst]") {
    mst::Tree t;
    ByteView prev;
    for (const char* k : {"com.example.record/3jqfcqzm3fn2j", "com.example.record/3jqfcqzm3fo2j",
                          "com.example.record/3jqfcqzm3fp2j", "com.example.record/3jqfcqzm3fs2j",
                          "com.example.record/3jqfcqzm3ft2j", "com.example.record/3jqfcqzm3fu2j"})
        REQUIRE(t.put(k, leaf().bytes(), prev) == Errc::ok);
    cid::Cid root;
    int h = 0;
    REQUIRE(t.root_cid(root) == Errc::ok);
    REQUIRE(t.height(h) == Errc::ok);
    CHECK(h == 1);
    CHECK(cid::to_string(root) == "bafyreifnqrwbk6ffmyaz5qtujqrzf5qmxf7cbxvgzktl4e3gabuxbtatv4");
    REQUIRE(t.remove("com.example.record/3jqfcqzm3fs2j", prev) == Errc::ok);
    CHECK(cid::equal(prev, leaf().bytes()));
    REQUIRE(t.root_cid(root) == Errc::ok);
    REQUIRE(t.height(h) == Errc::ok);
    CHECK(h == 0);
    CHECK(cid::to_string(root) == "bafyreie4kjuxbwkhzg2i5dljaswcroeih4dgiqq6pazcmunwt2byd725vi");
}

TEST_CASE("tree: insertion that splits two layers down", "[mst]") {
    mst::Tree t;
    ByteView prev;
    for (const char* k : {"com.example.record/3jqfcqzm3fo2j", "com.example.record/3jqfcqzm3fp2j",
                          "com.example.record/3jqfcqzm3fr2j", "com.example.record/3jqfcqzm3fs2j",
                          "com.example.record/3jqfcqzm3ft2j", "com.example.record/3jqfcqzm3fz2j",
                          "com.example.record/3jqfcqzm4fc2j", "com.example.record/3jqfcqzm4fd2j",
                          "com.example.record/3jqfcqzm4ff2j", "com.example.record/3jqfcqzm4fg2j",
                          "com.example.record/3jqfcqzm4fh2j"})
        REQUIRE(t.put(k, leaf().bytes(), prev) == Errc::ok);
    cid::Cid root;
    int h = 0;
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(cid::to_string(root) == "bafyreiettyludka6fpgp33stwxfuwhkzlur6chs4d2v4nkmq2j3ogpdjem");
    REQUIRE(t.put("com.example.record/3jqfcqzm3fx2j", leaf().bytes(), prev) == Errc::ok);  // layer 2
    CHECK(prev.empty());
    REQUIRE(t.root_cid(root) == Errc::ok);
    REQUIRE(t.height(h) == Errc::ok);
    CHECK(h == 2);
    CHECK(cid::to_string(root) == "bafyreid2x5eqs4w4qxvc5jiwda4cien3gw2q6cshofxwnvv7iucrmfohpm");
    REQUIRE(t.remove("com.example.record/3jqfcqzm3fx2j", prev) == Errc::ok);
    REQUIRE(t.root_cid(root) == Errc::ok);
    REQUIRE(t.height(h) == Errc::ok);
    CHECK(h == 1);
    CHECK(cid::to_string(root) == "bafyreiettyludka6fpgp33stwxfuwhkzlur6chs4d2v4nkmq2j3ogpdjem");
}

TEST_CASE("tree: new layers two above the root", "[mst]") {
    mst::Tree t;
    ByteView prev;
    const std::string a = "com.example.record/3jqfcqzm3ft2j", b = "com.example.record/3jqfcqzm3fx2j",
                      c = "com.example.record/3jqfcqzm3fz2j", d = "com.example.record/3jqfcqzm4fd2j";
    REQUIRE(t.put(a, leaf().bytes(), prev) == Errc::ok);
    REQUIRE(t.put(c, leaf().bytes(), prev) == Errc::ok);
    cid::Cid root;
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(cid::to_string(root) == "bafyreidfcktqnfmykz2ps3dbul35pepleq7kvv526g47xahuz3rqtptmky");
    REQUIRE(t.put(b, leaf().bytes(), prev) == Errc::ok);
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(cid::to_string(root) == "bafyreiavxaxdz7o7rbvr3zg2liox2yww46t7g6hkehx4i4h3lwudly7dhy");
    REQUIRE(t.remove(b, prev) == Errc::ok);
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(cid::to_string(root) == "bafyreidfcktqnfmykz2ps3dbul35pepleq7kvv526g47xahuz3rqtptmky");
    REQUIRE(t.put(b, leaf().bytes(), prev) == Errc::ok);
    REQUIRE(t.put(d, leaf().bytes(), prev) == Errc::ok);
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(cid::to_string(root) == "bafyreig4jv3vuajbsybhyvb7gggvpwh2zszwfyttjrj6qwvcsp24h6popu");
    REQUIRE(t.remove(d, prev) == Errc::ok);
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(cid::to_string(root) == "bafyreiavxaxdz7o7rbvr3zg2liox2yww46t7g6hkehx4i4h3lwudly7dhy");
}

TEST_CASE("tree: get, update, remove of absent keys, empty tree", "[mst]") {
    mst::Tree t;
    ByteView prev, got;
    REQUIRE(t.get("a/b", got) == Errc::ok);
    CHECK(got.empty());
    REQUIRE(t.remove("a/b", prev) == Errc::ok);
    CHECK(prev.empty());
    int h = 7;
    REQUIRE(t.height(h) == Errc::ok);
    CHECK(h == -1);
    const cid::Cid v2 = cid::compute(cid::kCodecDagCbor, sov::as_bytes("v2"));
    REQUIRE(t.put("a/b", leaf().bytes(), prev) == Errc::ok);
    CHECK(prev.empty());
    REQUIRE(t.put("a/b", v2.bytes(), prev) == Errc::ok);
    CHECK(cid::equal(prev, leaf().bytes()));
    REQUIRE(t.get("a/b", got) == Errc::ok);
    CHECK(cid::equal(got, v2.bytes()));
    REQUIRE(t.remove("a/c", prev) == Errc::ok);
    CHECK(prev.empty());
    REQUIRE(t.remove("a/b", prev) == Errc::ok);
    CHECK(cid::equal(prev, v2.bytes()));
    cid::Cid root;
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(cid::to_string(root) == kEmptyRoot);
    CHECK(t.put("bad key", leaf().bytes(), prev) == mst::kErrBadKey);
    CHECK(t.put("a/b", sov::as_bytes("nope"), prev) == Errc::bad_argument);
}

// ---- partial trees: stubs and malformed trees ----------------------------------------------

TEST_CASE("tree: stubs fail cleanly", "[mst]") {
    std::mt19937_64 rng(7);
    std::vector<std::pair<std::string, cid::Cid>> kv;
    for (int i = 0; i < 300; ++i) kv.emplace_back(random_key(rng), random_cid(rng));
    Store store;
    const cid::Cid root = parse_cid(root_of(kv, &store));
    car::BlockMap all;
    fill(all, store);
    std::map<std::string, cid::Cid> sorted(kv.begin(), kv.end());

    // Drop each non-root node in turn: operations either work or say "proof missing".
    int checked = 0;
    for (const auto& [c, b] : store) {
        if (root == view(c)) continue;
        car::BlockMap part;
        for (const auto& [c2, b2] : store)
            if (c2 != c) part.add(view(c2), view(b2));
        mst::Tree t;
        REQUIRE(t.open(root.bytes(), part) == Errc::ok);
        std::size_t stubs = 0;
        REQUIRE(t.load_all(stubs) == Errc::ok);
        CHECK(stubs == 1);
        int missing = 0;
        for (const auto& [k, v] : sorted) {
            mst::Tree t2;
            REQUIRE(t2.open(root.bytes(), part) == Errc::ok);
            ByteView got, prev;
            const Errc g = t2.get(k, got);
            if (g == Errc::ok) {
                CHECK(cid::equal(got, v.bytes()));
            } else {
                CHECK(g == mst::kErrProofMissing);
                CHECK(t2.error_detail().find("proof") != std::string::npos);
                ++missing;
            }
            const Errc r = t2.remove(k, prev);
            CHECK((r == Errc::ok || r == mst::kErrProofMissing));
            const Errc p = t2.put(k, leaf().bytes(), prev);
            CHECK((p == Errc::ok || p == mst::kErrProofMissing));
        }
        CHECK(missing > 0);
        // A failed operation leaves the tree as it was; later operations still work.
        mst::Tree t3;
        REQUIRE(t3.open(root.bytes(), part) == Errc::ok);
        const cid::Cid other = cid::compute(cid::kCodecDagCbor, sov::as_bytes("other"));
        int failed = 0, done = 0;
        for (const auto& [k, v] : sorted) {
            cid::Cid snap, now;
            REQUIRE(t3.root_cid(snap) == Errc::ok);
            ByteView prev;
            const Errc e = (done + failed) % 2 ? t3.remove(k, prev) : t3.put(k, other.bytes(), prev);
            REQUIRE(t3.root_cid(now) == Errc::ok);
            if (e == Errc::ok) {
                ++done;
                CHECK(cid::equal(prev, v.bytes()));
            } else {
                ++failed;
                CHECK(e == mst::kErrProofMissing);
                CHECK(now == snap);
            }
        }
        CHECK(failed > 0);
        CHECK(done > 0);
        std::size_t n = 0;
        CHECK(t.walk([&](std::string_view, ByteView) { ++n; }) == mst::kErrProofMissing);
        if (++checked == 12) break;
    }
    CHECK(checked == 12);

    // Only the root: every lookup below the root layer needs a missing node.
    mst::Tree t;
    car::BlockMap nothing;
    REQUIRE(t.open(root.bytes(), nothing) == Errc::ok);
    ByteView got;
    CHECK(t.get(kv[0].first, got) == mst::kErrProofMissing);
    cid::Cid same;
    REQUIRE(t.root_cid(same) == Errc::ok);  // untouched: no load needed
    CHECK(same == root);
}

TEST_CASE("tree: malformed trees are refused when loaded", "[mst]") {
    const Bytes v = copy(leaf().bytes());
    Store store;
    auto put = [&](const Bytes& block) {
        Bytes c = copy(cid::compute(cid::kCodecDagCbor, view(block)).bytes());
        store.emplace(key_of(view(c)), block);
        return c;
    };
    auto try_get = [&](const Bytes& root, std::string_view key) {
        car::BlockMap m;
        fill(m, store);
        mst::Tree t;
        REQUIRE(t.open(view(root), m) == Errc::ok);
        ByteView got;
        return t.get(key, got);
    };
    // Mixed heights in one node (A0 is layer 0, B2 layer 2).
    const Bytes mixed = put(raw_node({{"A0/374913", 0, std::nullopt, v}, {"B2/827649", 0, std::nullopt, v}}, std::nullopt));
    CHECK(try_get(mixed, "A0/374913") == mst::kErrBadTree);
    // A child whose key lies outside its parent's gap: C1 (layer 1) with D0 to its left.
    const Bytes d0 = put(raw_node({{"D0/952776", 0, std::nullopt, v}}, std::nullopt));
    const Bytes c1 = put(raw_node({{"C1/438573", 0, std::nullopt, v}}, d0));
    CHECK(try_get(c1, "A0/374913") == mst::kErrBadTree);
    // A child one layer too low: C1 with a layer-0 node... at layer 0 is right; B2 above needs an
    // intermediate layer-1 node, so linking a layer-0 node from layer 2 is wrong.
    const Bytes a0 = put(raw_node({{"A0/374913", 0, std::nullopt, v}}, std::nullopt));
    const Bytes b2 = put(raw_node({{"B2/827649", 0, std::nullopt, v}}, a0));
    CHECK(try_get(b2, "A0/374913") == mst::kErrBadTree);
    // Untrimmed root: no entries, only a subtree.
    const Bytes untrimmed = put(raw_node({}, a0));
    CHECK(try_get(untrimmed, "A0/374913") == mst::kErrBadTree);
    // Empty leaf below an entry.
    const Bytes empty = put(raw_node({}, std::nullopt));
    const Bytes c1e = put(raw_node({{"C1/438573", 0, std::nullopt, v}}, empty));
    CHECK(try_get(c1e, "A0/374913") == mst::kErrBadTree);
    // Links below layer 0.
    const Bytes a0l = put(raw_node({{"A0/374913", 0, a0, v}}, std::nullopt));
    CHECK(try_get(a0l, "A0/374913") == mst::kErrBadTree);
    // A block that does not hash to its CID.
    Bytes fake_cid = copy(cid::compute(cid::kCodecDagCbor, sov::as_bytes("other")).bytes());
    store.emplace(key_of(view(fake_cid)), store.at(key_of(view(a0))));
    CHECK(try_get(fake_cid, "A0/374913") == Errc::car_hash_mismatch);
    {
        car::BlockMap m;
        fill(m, store);
        mst::Tree t;
        REQUIRE(t.open(view(fake_cid), m, /*blocks_hash_checked=*/true) == Errc::ok);
        ByteView got;
        CHECK(t.get("A0/374913", got) == Errc::ok);  // the caller vouched for the blocks
        CHECK(cid::equal(got, view(v)));
    }
    // And the well-formed version works.
    const Bytes c1ok = put(raw_node({{"C1/438573", 0, std::nullopt, v}}, a0));
    CHECK(try_get(c1ok, "A0/374913") == Errc::ok);
}

// ---- the commit-proof interop fixtures -----------------------------------------------------

TEST_CASE("commit-proof fixtures: build, apply, invert from the proof blocks only", "[mst]") {
    REQUIRE_CORPUS(dir);
    const auto text = testutil::read_file(dir / "interop" / "firehose" / "commit-proof-fixtures.json");
    const auto fixtures = nlohmann::json::parse(text.begin(), text.end());
    REQUIRE(fixtures.size() == 6);
    for (const auto& fx : fixtures) {
        const std::string name = fx["comment"].get<std::string>();
        INFO(name);
        const cid::Cid value = parse_cid(fx["leafValue"].get<std::string>());
        Store store;  // every node block either tree ever had
        mst::Tree t;
        ByteView prev;
        for (const auto& k : fx["keys"]) REQUIRE(t.put(k.get<std::string>(), value.bytes(), prev) == Errc::ok);
        cid::Cid before, after;
        auto keep = [&](ByteView c, ByteView b) { store.emplace(key_of(c), copy(b)); };
        REQUIRE(t.root_cid(before, keep) == Errc::ok);
        CHECK(cid::to_string(before) == fx["rootBeforeCommit"].get<std::string>());
        for (const auto& k : fx["adds"]) REQUIRE(t.put(k.get<std::string>(), value.bytes(), prev) == Errc::ok);
        for (const auto& k : fx["dels"]) {
            REQUIRE(t.remove(k.get<std::string>(), prev) == Errc::ok);
            CHECK(cid::equal(prev, value.bytes()));
        }
        REQUIRE(t.root_cid(after, keep) == Errc::ok);
        CHECK(cid::to_string(after) == fx["rootAfterCommit"].get<std::string>());

        // The proof: exactly the listed blocks.
        Store proof;
        for (const auto& c : fx["blocksInProof"]) {
            const cid::Cid pc = parse_cid(c.get<std::string>());
            auto it = store.find(key_of(pc.bytes()));
            REQUIRE(it != store.end());
            proof.emplace(*it);
        }
        std::vector<msg::RepoOp> ops;
        std::vector<std::string> paths;
        for (const auto& k : fx["adds"]) paths.push_back(k.get<std::string>());
        for (const auto& k : fx["dels"]) paths.push_back(k.get<std::string>());
        const std::size_t nadds = fx["adds"].size();
        for (std::size_t i = 0; i < paths.size(); ++i) {
            msg::RepoOp op;
            op.path = paths[i];
            if (i < nadds) {
                op.action = msg::OpAction::create;
                op.cid = value.bytes();
            } else {
                op.action = msg::OpAction::del;
                op.prev = value.bytes();
            }
            ops.push_back(op);
        }
        car::BlockMap m;
        fill(m, proof);
        std::string detail;
        CHECK(mst::invert_commit(m, after.bytes(), ops, before.bytes(), &detail) == Errc::ok);
        CHECK(detail.empty());

        // Without any one block, inversion either does not need it or reports it missing
        // (the fixtures carry a few more nodes than removal next to an empty subtree needs).
        // The new root is always needed.
        for (const auto& [c, b] : proof) {
            car::BlockMap part;
            for (const auto& [c2, b2] : proof)
                if (c2 != c) part.add(view(c2), view(b2));
            const Errc e = mst::invert_commit(part, after.bytes(), ops, before.bytes(), &detail);
            if (after == view(c) || e != Errc::ok) {
                CHECK(e == mst::kErrProofMissing);
                CHECK(detail.find("proof incomplete") != std::string::npos);
            }
        }
        // Wrong prevData, wrong op cid, a duplicate op.
        CHECK(mst::invert_commit(m, after.bytes(), ops, after.bytes(), &detail) == mst::kErrRootMismatch);
        CHECK(detail.find("prevData") != std::string::npos);
        auto bad = ops;
        const cid::Cid other = cid::compute(cid::kCodecDagCbor, sov::as_bytes("other"));
        bad[0].cid = other.bytes();
        CHECK(mst::invert_commit(m, after.bytes(), bad, before.bytes(), &detail) == mst::kErrOpMismatch);
        bad = ops;
        bad.push_back(ops[0]);
        CHECK(mst::invert_commit(m, after.bytes(), bad, before.bytes(), &detail) == mst::kErrDuplicateOp);
    }
}

// ---- real repositories ---------------------------------------------------------------------

namespace {

struct RepoScan {
    std::vector<std::pair<std::string, Bytes>> records;  // (path, value CID) in walk order
    std::size_t nodes = 0;
};

void check_repo(CarFile& f, RepoScan& scan) {
    Recorder rec;
    rec.map = &f.blocks;
    mst::Tree t;
    REQUIRE(t.open(f.data, mst::BlockSource(rec)) == Errc::ok);
    REQUIRE(t.walk([&](std::string_view k, ByteView v) { scan.records.emplace_back(std::string(k), copy(v)); }) ==
            Errc::ok);
    scan.nodes = t.loaded_count();
    // Keys come out strictly ascending.
    for (std::size_t i = 1; i < scan.records.size(); ++i) REQUIRE(scan.records[i - 1].first < scan.records[i].first);
    // Re-encoding every node reproduces the root.
    t.mark_all_dirty();
    cid::Cid root;
    REQUIRE(t.root_cid(root) == Errc::ok);
    CHECK(root == f.data);
    // Each node block is byte-identical after decode + encode.
    mst::NodeData d;
    for (const std::string& c : rec.asked) {
        const ByteView* b = f.blocks.find(view(c));
        REQUIRE(b);
        REQUIRE(d.decode(*b) == Errc::ok);
        Bytes out;
        mst::encode_node(d.left(), d.entries(), out);
        CHECK(out == copy(*b));
    }
    // Building the same map from scratch gives the same root (the shape is canonical).
    mst::Tree fresh;
    ByteView prev;
    for (const auto& [k, v] : scan.records) REQUIRE(fresh.put(k, view(v), prev) == Errc::ok);
    REQUIRE(fresh.root_cid(root) == Errc::ok);
    CHECK(root == f.data);
    // Every key is found.
    mst::Tree look;
    REQUIRE(look.open(f.data, f.blocks) == Errc::ok);
    for (const auto& [k, v] : scan.records) {
        ByteView got;
        REQUIRE(look.get(k, got) == Errc::ok);
        REQUIRE(cid::equal(got, view(v)));
    }
}

std::size_t record_bytes(const CarFile& f, const RepoScan& s) {
    std::size_t sum = 0;
    for (const auto& r : s.records) {
        const ByteView* b = f.blocks.find(view(r.second));
        REQUIRE(b);
        sum += b->size();
    }
    return sum;
}

}  // namespace

TEST_CASE("repos: every real repository re-hashes to its commit data", "[mst]") {
    REQUIRE_CORPUS(dir);
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir / "repos")) {
        if (e.path().extension() != ".car") continue;
        INFO(e.path().filename().string());
        CarFile f;
        load_car(e.path(), f);
        RepoScan s;
        check_repo(f, s);
        ++n;
    }
    CHECK(n == 6);
}

TEST_CASE("repos: jetstream-maintainer matches its records table and commit", "[mst]") {
    REQUIRE_CORPUS(dir);
    CarFile f;
    load_car(dir / "repos" / "jetstream-maintainer.car", f);
    RepoScan s;
    check_repo(f, s);
    std::ifstream tsv(dir / "repos" / "jetstream-maintainer.records.tsv");
    std::vector<std::pair<std::string, std::string>> want, got;
    std::string line;
    while (std::getline(tsv, line)) {
        if (line.empty()) continue;
        const auto tab = line.find('\t');
        REQUIRE(tab != std::string::npos);
        want.emplace_back(line.substr(0, tab), line.substr(tab + 1));
    }
    for (const auto& [k, v] : s.records) got.emplace_back(k, cid::to_string(view(v)));
    std::sort(want.begin(), want.end());
    CHECK(got == want);
    CHECK(!want.empty());
    std::ifstream ct(dir / "repos" / "jetstream-maintainer.commit.txt");
    std::string data_cid, rev;
    while (std::getline(ct, line)) {
        if (line.rfind("Data CID: ", 0) == 0) data_cid = line.substr(10);
        if (line.rfind("Revision: ", 0) == 0) rev = line.substr(10);
    }
    CHECK(cid::to_string(f.data) == data_cid);
    CHECK(f.rev == rev);
}

TEST_CASE("repos: record counts and sizes", "[mst]") {
    REQUIRE_CORPUS(dir);
    {
        CarFile f;
        load_car(dir / "repos" / "little.car", f);
        RepoScan s;
        check_repo(f, s);
        CHECK(s.records.size() == 278);
        CHECK(record_bytes(f, s) == 246960);
    }
    {
        CarFile f;
        load_car(dir / "repos" / "tiny.car", f);
        RepoScan s;
        check_repo(f, s);
        CHECK(s.records.size() == 8);
        CHECK(record_bytes(f, s) == 2071);
    }
    {
        CarFile f;
        load_car(dir / "repos" / "empty.car", f);
        RepoScan s;
        check_repo(f, s);
        CHECK(s.records.empty());
        CHECK(cid::to_string(f.data) == kEmptyRoot);
        mst::Tree t;
        REQUIRE(t.open(f.data, f.blocks) == Errc::ok);
        int h = 0;
        REQUIRE(t.height(h) == Errc::ok);
        CHECK(h == -1);
        ByteView prev;
        REQUIRE(t.put("com.example.record/3jqfcqzm3fo2j", leaf().bytes(), prev) == Errc::ok);
        cid::Cid root;
        REQUIRE(t.root_cid(root) == Errc::ok);
        CHECK(cid::to_string(root) == "bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu");
        REQUIRE(t.remove("com.example.record/3jqfcqzm3fo2j", prev) == Errc::ok);
        REQUIRE(t.root_cid(root) == Errc::ok);
        CHECK(root == f.data);
    }
    {
        CarFile f;
        load_car(dir / "repos" / "calabro.car", f);
        RepoScan s;
        check_repo(f, s);
        std::map<std::string, int> by;
        for (const auto& r : s.records) ++by[r.first.substr(0, r.first.find('/'))];
        CHECK(by["app.bsky.feed.like"] == 2312);
        CHECK(by["app.bsky.graph.follow"] == 663);
        CHECK(by["app.bsky.feed.post"] == 610);
    }
}

TEST_CASE("inversion: edge cases", "[mst]") {
    const cid::Cid empty = parse_cid(kEmptyRoot);
    const cid::Cid v2 = cid::compute(cid::kCodecDagCbor, sov::as_bytes("v2"));
    Store store;
    const cid::Cid one = parse_cid(root_of({{"a/b", leaf()}}, &store));
    car::BlockMap m;
    fill(m, store);
    std::string detail;

    // No ops: the root must already be prevData; no block is needed.
    car::BlockMap none;
    CHECK(mst::invert_commit(none, one.bytes(), {}, one.bytes(), &detail) == Errc::ok);
    CHECK(mst::invert_commit(none, one.bytes(), {}, empty.bytes(), &detail) == mst::kErrRootMismatch);
    // The first record of a repo: inverting gives the empty tree.
    msg::RepoOp create{msg::OpAction::create, "a/b", leaf().bytes(), {}};
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&create, 1), empty.bytes(), &detail) == Errc::ok);
    // Not invertible: no prevData; update or delete without prev.
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&create, 1), {}, &detail) == mst::kErrNotInvertible);
    msg::RepoOp update{msg::OpAction::update, "a/b", leaf().bytes(), {}};
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&update, 1), empty.bytes(), &detail) == mst::kErrNotInvertible);
    CHECK(detail.find("prev") != std::string::npos);
    // An update whose new value is not in the tree; one whose prev equals the new value is a no-op.
    update.prev = v2.bytes();
    update.cid = v2.bytes();
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&update, 1), one.bytes(), &detail) == mst::kErrOpMismatch);
    update.cid = leaf().bytes();
    update.prev = leaf().bytes();
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&update, 1), one.bytes(), &detail) == Errc::ok);
    // A delete of a key that is still there; a create of a key that is not.
    msg::RepoOp del{msg::OpAction::del, "a/b", {}, leaf().bytes()};
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&del, 1), empty.bytes(), &detail) == mst::kErrOpMismatch);
    msg::RepoOp create2{msg::OpAction::create, "a/c", leaf().bytes(), {}};
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&create2, 1), empty.bytes(), &detail) == mst::kErrOpMismatch);
    CHECK(detail.find("no such key") != std::string::npos);
    // A bad key, a root that is not a node link.
    msg::RepoOp badkey{msg::OpAction::create, "nokey", leaf().bytes(), {}};
    CHECK(mst::invert_commit(m, one.bytes(), std::span(&badkey, 1), empty.bytes(), &detail) == mst::kErrBadKey);
    const Bytes raw = copy(cid::compute(cid::kCodecRaw, sov::as_bytes("x")).bytes());
    CHECK(mst::invert_commit(m, view(raw), std::span(&create, 1), empty.bytes(), &detail) == Errc::cbor_bad_link);
}

TEST_CASE("node codec: whatever decodes re-encodes to the same bytes (mutated real nodes)", "[mst]") {
    REQUIRE_CORPUS(dir);
    CarFile f;
    load_car(dir / "repos" / "little.car", f);
    Recorder rec;
    rec.map = &f.blocks;
    mst::Tree t;
    REQUIRE(t.open(f.data, mst::BlockSource(rec)) == Errc::ok);
    std::size_t stubs = 0;
    REQUIRE(t.load_all(stubs) == Errc::ok);
    REQUIRE(stubs == 0);
    std::mt19937_64 rng(42);
    mst::NodeData d;
    std::size_t tried = 0, accepted = 0;
    for (const std::string& c : rec.asked) {
        const Bytes orig = copy(*f.blocks.find(view(c)));
        for (int i = 0; i < 300; ++i) {
            Bytes b = orig;
            const int edits = 1 + int(rng() % 3);
            for (int e = 0; e < edits; ++e) {
                const std::size_t at = rng() % b.size();
                switch (rng() % 4) {
                case 0: b[at] = std::uint8_t(rng()); break;
                case 1: b[at] ^= std::uint8_t(1u << (rng() % 8)); break;
                case 2: b.erase(b.begin() + std::ptrdiff_t(at)); break;
                default: b.insert(b.begin() + std::ptrdiff_t(at), std::uint8_t(rng())); break;
                }
                if (b.empty()) b.push_back(0xa0);
            }
            ++tried;
            std::string why;
            const Errc e = d.decode(view(b), &why);
            if (e != Errc::ok) {
                CHECK(!why.empty());
                continue;
            }
            ++accepted;
            REQUIRE(!cbor::validate(view(b)));
            Bytes again;
            mst::encode_node(d.left(), d.entries(), again);
            REQUIRE(again == b);
        }
    }
    CHECK(tried > 10000);
    CHECK(accepted > 0);  // e.g. a flipped bit inside a CID digest or a key byte
}

// ---- randomized properties -----------------------------------------------------------------

TEST_CASE("random: insertion order does not matter; removing everything empties the tree", "[mst]") {
    std::mt19937_64 rng(20260704);
    for (int round = 0; round < 12; ++round) {
        const int n = 1 + int(rng() % (round < 6 ? 40 : 1500));
        std::map<std::string, cid::Cid> m;
        while (int(m.size()) < n) m.emplace(random_key(rng), random_cid(rng));
        std::vector<std::pair<std::string, cid::Cid>> kv(m.begin(), m.end());
        const std::string sorted_root = root_of(kv);
        for (int shuffle = 0; shuffle < 3; ++shuffle) {
            std::shuffle(kv.begin(), kv.end(), rng);
            CHECK(root_of(kv) == sorted_root);
        }
        // Remove in random order, checking midway against a fresh build of what is left.
        mst::Tree t;
        ByteView prev;
        for (const auto& [k, v] : kv) REQUIRE(t.put(k, v.bytes(), prev) == Errc::ok);
        std::shuffle(kv.begin(), kv.end(), rng);
        const std::size_t half = kv.size() / 2;
        for (std::size_t i = 0; i < kv.size(); ++i) {
            REQUIRE(t.remove(kv[i].first, prev) == Errc::ok);
            REQUIRE(cid::equal(prev, kv[i].second.bytes()));
            if (i + 1 == half) {
                cid::Cid r;
                REQUIRE(t.root_cid(r) == Errc::ok);
                std::vector<std::pair<std::string, cid::Cid>> rest(kv.begin() + std::ptrdiff_t(half), kv.end());
                CHECK(cid::to_string(r) == root_of(rest));
            }
        }
        cid::Cid r;
        REQUIRE(t.root_cid(r) == Errc::ok);
        CHECK(cid::to_string(r) == kEmptyRoot);
    }
}

TEST_CASE("random: inversion from PDS-style proofs reproduces the previous root", "[mst]") {
    std::mt19937_64 rng(31527015322);
    int rounds = 0, with_proof_extra = 0;
    for (int round = 0; round < 400; ++round) {
        // The previous repo.
        const int n = int(rng() % (round % 4 == 0 ? 8 : 600));
        std::map<std::string, cid::Cid> before;
        while (int(before.size()) < n) before.emplace(random_key(rng), random_cid(rng));
        Store store;
        const cid::Cid root0 = parse_cid(root_of({before.begin(), before.end()}, &store));
        std::set<std::string> before_nodes;
        for (const auto& [c, b] : store) before_nodes.insert(c);
        car::BlockMap all_before;
        fill(all_before, store);

        // A batch of ops on distinct paths.
        std::vector<std::string> keys;
        for (const auto& [k, v] : before) keys.push_back(k);
        std::shuffle(keys.begin(), keys.end(), rng);
        const int nops = 1 + int(rng() % 12);
        std::vector<std::string> paths;
        std::vector<msg::RepoOp> ops;
        std::vector<cid::Cid> values;  // stable storage for op CIDs
        values.reserve(64);
        std::set<std::string> used;
        for (int i = 0; i < nops; ++i) {
            const int kind = int(rng() % 3);
            msg::RepoOp op;
            std::string path;
            if (kind == 0 || keys.empty()) {
                do path = random_key(rng);
                while (before.count(path) || used.count(path));
                op.action = msg::OpAction::create;
                values.push_back(random_cid(rng));
                op.cid = values.back().bytes();
            } else {
                path = keys.back();
                keys.pop_back();
                op.prev = before.at(path).bytes();
                if (kind == 1) {
                    op.action = msg::OpAction::update;
                    values.push_back(random_cid(rng));
                    op.cid = values.back().bytes();
                } else {
                    op.action = msg::OpAction::del;
                }
            }
            used.insert(path);
            paths.push_back(path);
            ops.push_back(op);
        }
        for (std::size_t i = 0; i < ops.size(); ++i) ops[i].path = paths[i];

        // Apply forward on the lazily loaded previous tree.
        mst::Tree t;
        REQUIRE(t.open(root0.bytes(), all_before) == Errc::ok);
        for (const auto& op : ops) {
            ByteView prev;
            if (op.action == msg::OpAction::del) REQUIRE(t.remove(op.path, prev) == Errc::ok);
            else REQUIRE(t.put(op.path, op.cid, prev) == Errc::ok);
        }
        Store after_store = store;
        std::set<std::string> new_nodes;
        cid::Cid root1;
        REQUIRE(t.root_cid(root1, [&](ByteView c, ByteView b) {
            after_store.emplace(key_of(c), copy(b));
            if (!before_nodes.count(key_of(c))) new_nodes.insert(key_of(c));
        }) == Errc::ok);

        // The CAR slice: new nodes plus each op key's covering path in the new tree.
        std::set<std::string> proof = new_nodes;
        for (const auto& op : ops) covering_path(after_store, root1.bytes(), op.path, proof);
        if (proof.size() > new_nodes.size()) ++with_proof_extra;
        Store slice;
        for (const auto& c : proof) slice.emplace(c, after_store.at(c));
        car::BlockMap m;
        fill(m, slice);
        std::string detail;
        INFO("round " << round << ": " << ops.size() << " ops on " << n << " keys");
        const Errc e = mst::invert_commit(m, root1.bytes(), ops, root0.bytes(), &detail);
        INFO(detail);
        REQUIRE(e == Errc::ok);

        // Remove one proof block: inversion fails cleanly or does not need it.
        if (!slice.empty()) {
            auto drop = slice.begin();
            std::advance(drop, std::ptrdiff_t(rng() % slice.size()));
            car::BlockMap part;
            for (const auto& [c, b] : slice)
                if (c != drop->first) part.add(view(c), view(b));
            const Errc e2 = mst::invert_commit(part, root1.bytes(), ops, root0.bytes(), &detail);
            CHECK((e2 == Errc::ok || e2 == mst::kErrProofMissing || e2 == mst::kErrRootMismatch));
        }
        ++rounds;
    }
    CHECK(rounds == 400);
    CHECK(with_proof_extra > 0);
}

// ---- the relay capture ---------------------------------------------------------------------

TEST_CASE("relay capture: all 148 real commits invert to their prevData", "[mst]") {
    REQUIRE_CORPUS(dir);
    std::vector<Bytes> msgs;
    std::string err;
    REQUIRE(sov::capture::load((dir / "relay-capture" / "frames.u32le.zst").string(), msgs, err));
    REQUIRE(msgs.size() == 150);

    struct Commit {
        msg::Message m;
        car::BlockMap blocks;
        ByteView data;
    };
    std::vector<Commit> commits;
    commits.reserve(msgs.size());
    for (const Bytes& w : msgs) {
        Commit c;
        REQUIRE(!msg::parse(view(w), c.m));
        if (c.m.type != msg::Type::commit) continue;
        car::Reader r;
        REQUIRE(!r.open(c.m.blocks));
        car::Section s;
        while (r.next(s)) {
            REQUIRE(car::verify_section(s));
            c.blocks.add(s.cid, s.block);
        }
        REQUIRE(!r.error());
        const ByteView* cb = c.blocks.find(c.m.commit);
        REQUIRE(cb);
        const cbor::Value commit = cbor::Value::of(*cb);
        c.data = commit.get("data").as_link();
        REQUIRE(!c.data.empty());
        commits.push_back(std::move(c));
    }
    REQUIRE(commits.size() == 148);

    std::size_t ok = 0, ops = 0;
    for (const Commit& c : commits) {
        std::string detail;
        const Errc e = mst::invert_commit(c.blocks, c.data, c.m.ops, c.m.prev_data, &detail);
        INFO("seq " << c.m.seq << ": " << detail);
        CHECK(e == Errc::ok);
        ok += e == Errc::ok;
        ops += c.m.ops.size();
    }
    CHECK(ok == 148);

    // With prevData replaced by the new root, every commit that changes something fails.
    std::size_t refused = 0, changing = 0;
    for (const Commit& c : commits) {
        if (cid::equal(c.data, c.m.prev_data)) continue;
        ++changing;
        std::string detail;
        refused += mst::invert_commit(c.blocks, c.data, c.m.ops, c.data, &detail) == mst::kErrRootMismatch;
    }
    CHECK(changing > 100);
    CHECK(refused == changing);

    // Timing: inversion alone, warm (the per-thread tree keeps its capacity).
    const int reps = 20;
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t good = 0;
    for (int i = 0; i < reps; ++i)
        for (const Commit& c : commits) good += mst::invert_commit(c.blocks, c.data, c.m.ops, c.m.prev_data, nullptr) == Errc::ok;
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i)
        for (const Commit& c : commits)
            good += mst::invert_commit(c.blocks, c.data, c.m.ops, c.m.prev_data, nullptr, true) == Errc::ok;
    const auto t2 = std::chrono::steady_clock::now();
    CHECK(good == 2 * commits.size() * reps);
    using us = std::chrono::duration<double, std::micro>;
    const double n = double(commits.size() * reps);
    const double rehash = us(t1 - t0).count() / n, trusted = us(t2 - t1).count() / n;
    const double ops_per = double(ops) / double(commits.size());
    WARN("MST inversion per commit: " << rehash << " us (blocks re-hashed), " << trusted
                                      << " us (blocks already hash-checked); " << ops_per << " ops/commit");
}
