// Tests for sovereign/car.h: CAR v1 reading (docs/protocol.md §4) over every real repository
// export in the corpus, hand-made malformed CARs with exact errors and offsets, and real CARs
// truncated and mutated at many offsets (never a crash, always a located error).
#include <catch2/catch.hpp>

#include "test_util.h"

#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/varint.h"

#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace car = sov::car;
namespace cbor = sov::cbor;
namespace cid = sov::cid;
using sov::ByteView;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;

namespace {

// Concatenation into a pre-sized buffer (GCC 12 at -O3 raises false -Warray-bounds on
// vector::insert into small vectors).
Bytes join(std::initializer_list<ByteView> parts) {
    std::size_t n = 0;
    for (auto p : parts) n += p.size();
    Bytes out(n);
    std::size_t at = 0;
    for (auto p : parts) {
        if (!p.empty()) std::memcpy(out.data() + at, p.data(), p.size());
        at += p.size();
    }
    return out;
}

// A block and its blessed dag-cbor CID.
struct Block {
    Bytes data;
    Bytes cid;
};

Block make_block(std::int64_t n) {
    Block b;
    cbor::Writer w(b.data);
    w.map(1);
    w.text("n");
    w.integer(n);
    cid::Cid c = cid::compute(cid::kCodecDagCbor, b.data);
    b.cid.assign(c.bytes().begin(), c.bytes().end());
    return b;
}

// Header bytes {roots: [links…], version: v} (without the length varint).
Bytes header(const std::vector<Bytes>& roots, std::int64_t version = 1) {
    Bytes h;
    cbor::Writer w(h);
    w.map(2);
    w.text("roots");
    w.array(roots.size());
    for (const auto& r : roots) w.link(r);
    w.text("version");
    w.integer(version);
    return h;
}

void append_varint_prefixed(Bytes& out, const Bytes& payload) {
    sov::varint::append(payload.size(), out);
    out.insert(out.end(), payload.begin(), payload.end());
}

void append_section(Bytes& out, const Bytes& cid_bytes, const Bytes& block) {
    sov::varint::append(cid_bytes.size() + block.size(), out);
    out.insert(out.end(), cid_bytes.begin(), cid_bytes.end());
    out.insert(out.end(), block.begin(), block.end());
}

// A small valid CAR: root = first of `blocks`.
Bytes make_car(const std::vector<Block>& blocks) {
    Bytes out;
    append_varint_prefixed(out, header({blocks.at(0).cid}));
    for (const auto& b : blocks) append_section(out, b.cid, b.data);
    return out;
}

// Opens `bytes` and expects the exact header error.
void expect_open(const Bytes& bytes, Errc e, std::size_t offset) {
    car::Reader r;
    sov::Located l = r.open(bytes);
    CHECK(l.errc == e);
    CHECK(l.offset == offset);
    CHECK(r.error().errc == e);
    car::Section s;
    CHECK(!r.next(s));  // a failed open yields nothing
}

// Opens `bytes` (must succeed) and reads to the end; returns sections, sets the final error.
std::vector<car::Section> read_all(const Bytes& bytes, sov::Located& err) {
    car::Reader r;
    sov::Located l = r.open(bytes);
    REQUIRE(!l);
    std::vector<car::Section> out;
    car::Section s;
    while (r.next(s)) out.push_back(s);
    err = r.error();
    CHECK(!r.next(s));  // sticky
    CHECK(r.error().errc == err.errc);
    return out;
}

struct CarFile {
    std::string name;
    std::size_t blocks;
};
const CarFile kRepos[] = {
    {"bnewbold.car", 56}, {"calabro.car", 5517}, {"empty.car", 2},
    {"jetstream-maintainer.car", 29}, {"little.car", 375}, {"tiny.car", 12},
};

}  // namespace

// ---------------------------------------------------------------- real repositories

TEST_CASE("repos: header, sections, hashes and block counts", "[car][corpus]") {
    REQUIRE_CORPUS(corpus);
    std::size_t seen = 0;
    for (const auto& entry : std::filesystem::directory_iterator(corpus / "repos"))
        if (entry.path().extension() == ".car") ++seen;
    CHECK(seen == std::size(kRepos));

    for (const auto& f : kRepos) {
        INFO(f.name);
        Bytes bytes = testutil::read_file(corpus / "repos" / f.name);
        REQUIRE(!bytes.empty());
        car::Reader r;
        sov::Located l = r.open(bytes);
        REQUIRE(!l);
        CHECK(r.root_count() == 1);
        CHECK(r.root().size() == cid::kBlessedLen);
        CHECK(cid::is_blessed(r.root()));
        CHECK(r.root()[1] == cid::kCodecDagCbor);
        CHECK(r.body_offset() == 59);  // 0x3a + the 58-byte one-root header of §4
        CHECK(bytes[0] == 0x3a);

        car::BlockMap map;
        std::vector<car::Section> secs;
        car::Section s;
        std::size_t expect_offset = r.body_offset();
        std::size_t bad_hash = 0, not_blessed = 0;
        while (r.next(s)) {
            CHECK(s.offset == expect_offset);
            std::uint64_t slen = 0;
            std::size_t n = 0;
            REQUIRE(sov::varint::decode(ByteView(bytes).subspan(s.offset), slen, n) == Errc::ok);
            CHECK(slen == s.cid.size() + s.block.size());
            CHECK(s.cid.data() == bytes.data() + s.offset + n);
            CHECK(s.block.data() == s.cid.data() + s.cid.size());
            expect_offset = s.offset + n + std::size_t(slen);
            CHECK(cid::check_binary(s.cid) == Errc::ok);
            if (!cid::is_blessed(s.cid)) ++not_blessed;
            if (!car::verify_section(s)) ++bad_hash;
            map.add(s.cid, s.block);
            secs.push_back(s);
        }
        CHECK(!r.error());
        CHECK(expect_offset == bytes.size());
        CHECK(bad_hash == 0);
        CHECK(not_blessed == 0);
        CHECK(secs.size() == f.blocks);
        CHECK(map.size() == f.blocks);

        // Every CID is found, pointing at its own block (zero-copy).
        std::size_t found = 0;
        for (const auto& sec : secs) {
            const ByteView* b = map.find(sec.cid);
            if (b && b->data() == sec.block.data() && b->size() == sec.block.size()) ++found;
        }
        CHECK(found == secs.size());

        // Misses: each CID with its last digest byte, first digest byte or codec changed.
        std::size_t false_hits = 0;
        for (const auto& sec : secs) {
            Bytes m(sec.cid.begin(), sec.cid.end());
            m.back() ^= 0x01;
            if (map.find(m)) ++false_hits;
            m.back() ^= 0x01;
            m[4] ^= 0x80;
            if (map.find(m)) ++false_hits;
            m[4] ^= 0x80;
            m[1] = cid::kCodecRaw;
            if (map.find(m)) ++false_hits;
            if (map.find(ByteView(m).first(35))) ++false_hits;
        }
        CHECK(false_hits == 0);
        CHECK(map.find({}) == nullptr);

        // The root commit block is present and is a v3 commit whose MST root is present too.
        const ByteView* commit = map.find(r.root());
        REQUIRE(commit);
        REQUIRE(!cbor::validate(*commit));
        cbor::Value c = cbor::Value::of(*commit);
        CHECK(c.get("version").as_int() == 3);
        CHECK(c.get("did").as_text().rfind("did:", 0) == 0);
        CHECK(c.get("data").is(cbor::Kind::link));
        CHECK(map.find(c.get("data").as_link()) != nullptr);
    }
}

TEST_CASE("BlockMap: duplicates, clear, reuse, growth", "[car][blockmap]") {
    car::BlockMap m;
    CHECK(m.size() == 0);
    Block a = make_block(1);
    CHECK(m.find(a.cid) == nullptr);  // empty map
    m.add(a.cid, a.data);
    Bytes other = {0xf6};
    m.add(a.cid, other);  // duplicate keeps the first
    CHECK(m.size() == 1);
    REQUIRE(m.find(a.cid));
    CHECK(m.find(a.cid)->data() == a.data.data());

    // Growth past several doublings keeps every entry.
    std::vector<Block> many;
    for (int i = 0; i < 1000; ++i) many.push_back(make_block(i + 100));
    for (const auto& b : many) m.add(b.cid, b.data);
    CHECK(m.size() == 1001);
    std::size_t ok = 0;
    for (const auto& b : many) {
        const ByteView* f = m.find(b.cid);
        if (f && f->data() == b.data.data()) ++ok;
    }
    CHECK(ok == many.size());
    CHECK(m.find(make_block(-5).cid) == nullptr);

    // Short and odd CIDs (generic, < 8 bytes) still work.
    Bytes tiny = {0x01, 0x55, 0x00, 0x01, 0x61};
    Bytes tiny2 = {0x01, 0x55, 0x00, 0x01, 0x62};
    m.add(tiny, other);
    CHECK(m.find(tiny) != nullptr);
    CHECK(m.find(tiny2) == nullptr);

    m.clear();
    CHECK(m.size() == 0);
    CHECK(m.find(a.cid) == nullptr);
    CHECK(m.find(many[10].cid) == nullptr);
    m.add(many[10].cid, many[10].data);
    CHECK(m.size() == 1);
    CHECK(m.find(many[10].cid) != nullptr);
    CHECK(m.find(many[11].cid) == nullptr);
}

// ---------------------------------------------------------------- hand-made CARs

TEST_CASE("D11: CIDs sharing a digest under many codecs do not collide in the BlockMap", "[car][blockmap]") {
    // A #commit CAR of 48,000 one-byte blocks, the same SHA-256 digest under 48,000 codec
    // numbers, once cost 10 s of CPU: the map hashed the last 8 CID bytes (the digest), so
    // every block took the same probe sequence. The whole CID is hashed now.
    const std::uint8_t block[1] = {0x00};
    sov::cid::Cid base = sov::cid::compute(0x55, sov::ByteView{block, 1});
    sov::ByteView digest = base.bytes().subspan(base.size() - 34);  // 0x12 0x20 + 32 bytes
    std::vector<std::vector<std::uint8_t>> cids;
    for (std::uint64_t codec = 0x100; cids.size() < 48000; ++codec) {
        std::vector<std::uint8_t> c{0x01};
        sov::varint::append(codec, c);
        c.insert(c.end(), digest.begin(), digest.end());
        cids.push_back(std::move(c));
    }
    sov::car::BlockMap m;
    for (auto& c : cids) m.add({c.data(), c.size()}, {block, 1});
    CHECK(m.size() == cids.size());
    CHECK(m.longest_probe() < 64);
    for (std::size_t i = 0; i < cids.size(); i += 997) CHECK(m.find({cids[i].data(), cids[i].size()}) != nullptr);
    // Identity-hash CIDs (the sender chooses every digest byte) that agree in their last 8 bytes
    std::vector<std::vector<std::uint8_t>> ids;
    for (std::uint32_t i = 0; i < 10000; ++i) {
        std::vector<std::uint8_t> c{0x01, 0x71, 0x00, 20};
        for (int k = 0; k < 4; ++k) c.push_back(std::uint8_t(i >> (8 * k)));
        c.resize(c.size() + 16, 0xab);
        ids.push_back(std::move(c));
    }
    sov::car::BlockMap n;
    for (auto& c : ids) n.add({c.data(), c.size()}, {block, 1});
    CHECK(n.size() == ids.size());
    CHECK(n.longest_probe() < 64);
}

TEST_CASE("a hand-made CAR reads back", "[car]") {
    std::vector<Block> blocks = {make_block(1), make_block(2), make_block(3)};
    Bytes bytes = make_car(blocks);
    sov::Located err;
    auto secs = read_all(bytes, err);
    CHECK(!err);
    REQUIRE(secs.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(cid::equal(secs[i].cid, blocks[i].cid));
        CHECK(cid::equal(secs[i].block, blocks[i].data));
        CHECK(car::verify_section(secs[i]));
    }
    // Two roots: root() is the first, root_count() counts both.
    Bytes two;
    append_varint_prefixed(two, header({blocks[1].cid, blocks[0].cid}));
    car::Reader r;
    REQUIRE(!r.open(two));
    CHECK(r.root_count() == 2);
    CHECK(cid::equal(r.root(), blocks[1].cid));
    car::Section s;
    CHECK(!r.next(s));  // header only: no sections, no error
    CHECK(!r.error());
    // A block with a raw-codec CID and an empty block are fine.
    Bytes raw;
    append_varint_prefixed(raw, header({blocks[0].cid}));
    cid::Cid rc = cid::compute(cid::kCodecRaw, {});
    append_section(raw, Bytes(rc.bytes().begin(), rc.bytes().end()), {});
    secs = read_all(raw, err);
    CHECK(!err);
    REQUIRE(secs.size() == 1);
    CHECK(secs[0].block.empty());
    CHECK(car::verify_section(secs[0]));
}

TEST_CASE("malformed headers: exact errors and offsets", "[car][malformed]") {
    Block b = make_block(7);
    const Bytes good_hdr = header({b.cid});

    expect_open({}, Errc::truncated, 0);
    expect_open({0x80}, Errc::truncated, 0);
    expect_open({0x80, 0x00}, Errc::varint_non_minimal, 0);               // non-minimal header length
    expect_open({0xba, 0x00, 0xa0}, Errc::varint_non_minimal, 0);
    expect_open(Bytes(10, 0xff), Errc::varint_overflow, 0);
    expect_open({0x00}, Errc::car_bad_header, 0);                         // header length 0
    expect_open({0x00, 0xa0}, Errc::car_bad_header, 0);
    {
        Bytes t;
        append_varint_prefixed(t, good_hdr);
        t.pop_back();  // header cut by one byte: length past the end
        expect_open(t, Errc::truncated, 0);
        expect_open(Bytes(t.begin(), t.begin() + 1), Errc::truncated, 0);
    }
    auto with_len = [](const Bytes& h) {
        Bytes t;
        append_varint_prefixed(t, h);
        return t;
    };
    // Not a map / not DAG-CBOR.
    expect_open(with_len({0x01}), Errc::car_bad_header, 1);
    expect_open(with_len({0x80}), Errc::car_bad_header, 1);
    expect_open(with_len({0xa0}), Errc::car_bad_header, 1);               // no roots, no version
    expect_open(with_len({0xff}), Errc::cbor_indefinite, 1);
    expect_open(with_len({0x82, 0x01, 0xf9, 0x00, 0x00}), Errc::cbor_float, 3);
    expect_open(with_len({0x01, 0x02}), Errc::trailing_bytes, 2);          // two objects in the header
    // Keys out of order: version before roots (a CBOR error at the offending key).
    {
        Bytes h;
        cbor::Writer w(h);
        w.map(2);
        w.text("version");
        w.integer(1);
        w.text("roots");
        w.array(1);
        w.link(b.cid);
        expect_open(with_len(h), Errc::cbor_key_order, 1 + 10);
    }
    // Version other than 1, or of the wrong type.
    expect_open(with_len(header({b.cid}, 2)), Errc::car_bad_header, 1);
    expect_open(with_len(header({b.cid}, 0)), Errc::car_bad_header, 1);
    expect_open(with_len(header({b.cid}, -1)), Errc::car_bad_header, 1);
    {
        Bytes h;
        cbor::Writer w(h);
        w.map(2);
        w.text("roots");
        w.array(1);
        w.link(b.cid);
        w.text("version");
        w.text("1");
        expect_open(with_len(h), Errc::car_bad_header, 1);
    }
    {   // version missing
        Bytes h;
        cbor::Writer w(h);
        w.map(1);
        w.text("roots");
        w.array(1);
        w.link(b.cid);
        expect_open(with_len(h), Errc::car_bad_header, 1);
    }
    // Roots empty, missing, not an array, or holding non-links.
    expect_open(with_len(header({})), Errc::car_no_roots, 1);
    {
        Bytes h;
        cbor::Writer w(h);
        w.map(1);
        w.text("version");
        w.integer(1);
        expect_open(with_len(h), Errc::car_bad_header, 1);
    }
    {
        Bytes h;
        cbor::Writer w(h);
        w.map(2);
        w.text("roots");
        w.link(b.cid);  // a link, not an array of links
        w.text("version");
        w.integer(1);
        expect_open(with_len(h), Errc::car_bad_header, 1);
    }
    for (int kind = 0; kind < 4; ++kind) {
        Bytes h;
        cbor::Writer w(h);
        w.map(2);
        w.text("roots");
        w.array(2);
        w.link(b.cid);
        switch (kind) {
        case 0: w.bytes(b.cid); break;                    // binary CID without tag 42
        case 1: w.text(cid::to_string(ByteView(b.cid))); break;  // CID string
        case 2: w.null(); break;
        default: w.array(0); break;
        }
        w.text("version");
        w.integer(1);
        INFO("root kind " << kind);
        expect_open(with_len(h), Errc::car_bad_header, 1);
    }
    // A header over 127 bytes has a 2-byte length: offsets shift accordingly.
    {
        std::vector<Bytes> roots(4, b.cid);
        Bytes h = header(roots, 2);
        REQUIRE(h.size() > 127);
        expect_open(with_len(h), Errc::car_bad_header, 2);
        Bytes bad = h;
        bad.back() = 0xf7;  // version: undefined
        expect_open(with_len(bad), Errc::cbor_bad_simple, 2 + h.size() - 1);
    }
}

TEST_CASE("malformed sections: exact errors and offsets", "[car][malformed]") {
    Block b = make_block(7);
    Bytes base;
    append_varint_prefixed(base, header({b.cid}));
    const std::size_t body = base.size();
    REQUIRE(body == 59);

    auto run = [&](const Bytes& tail, Errc e, std::size_t off, std::size_t good_sections) {
        Bytes car_bytes = base;
        car_bytes.insert(car_bytes.end(), tail.begin(), tail.end());
        sov::Located err;
        auto secs = read_all(car_bytes, err);
        CHECK(secs.size() == good_sections);
        CHECK(err.errc == e);
        CHECK(err.offset == off);
    };
    Bytes sec;
    append_section(sec, b.cid, b.data);
    const std::size_t sec_len = sec.size();

    // Section length past the end (header comment of errc.h lists car_bad_section for
    // "over the input"; the reader reports it as truncated).
    run({0x05, 0x01, 0x71}, Errc::truncated, body, 0);
    {
        Bytes t = sec;
        t.pop_back();
        run(t, Errc::truncated, body, 0);
        Bytes t2 = sec;
        t2.insert(t2.end(), sec.begin(), sec.end() - 1);
        run(t2, Errc::truncated, body + sec_len, 1);
    }
    run({0x80}, Errc::truncated, body, 0);  // length varint cut
    // Non-minimal and overlong section length varints.
    run({0x80, 0x00}, Errc::varint_non_minimal, body, 0);
    run({0xa8, 0x80, 0x00}, Errc::varint_non_minimal, body, 0);
    {
        // 40 written in two bytes, then a 40-byte section.
        run(join({Bytes{0xa8, 0x00}, b.cid, Bytes(4, 0)}), Errc::varint_non_minimal, body, 0);
    }
    run(Bytes(10, 0xff), Errc::varint_overflow, body, 0);
    {
        Bytes t = sec;
        Bytes o(10, 0xff);
        t.insert(t.end(), o.begin(), o.end());
        run(t, Errc::varint_overflow, body + sec_len, 1);
    }
    // Section shorter than its CID.
    run({0x00}, Errc::car_bad_section, body, 0);
    run({0x01, 0x01}, Errc::car_bad_section, body, 0);
    run({0x03, 0x01, 0x71, 0x12}, Errc::car_bad_section, body, 0);
    {
        // 35 bytes: the CID without its last digest byte.
        run(join({Bytes{0x23}, ByteView(b.cid).first(35)}), Errc::car_bad_section, body, 0);
    }
    // A CID digest length over the 100-byte CID limit.
    {
        Bytes t = {0x01, 0x71, 0x12, 0x7f};
        t.insert(t.end(), 0x7f, 0x11);
        Bytes s2;
        append_section(s2, t, {});
        run(s2, Errc::car_bad_section, body, 0);
    }
    // Non-minimal varint inside the section's CID.
    {
        Bytes c = {0x01, 0xf1, 0x00, 0x12, 0x20};
        c.insert(c.end(), 32, 0x11);
        Bytes s2;
        append_section(s2, c, b.data);
        run(s2, Errc::car_bad_section, body, 0);
    }
    // Section CIDs of another version.
    for (std::uint8_t v : {0x00, 0x02, 0x12}) {
        Bytes c = b.cid;
        c[0] = v;
        Bytes s2;
        append_section(s2, c, b.data);
        INFO("version " << int(v));
        run(s2, Errc::cid_bad_version, body, 0);
    }
    // A good section before a bad one: the error is at the second section's offset.
    {
        Bytes t = sec;
        t.push_back(0x00);
        run(t, Errc::car_bad_section, body + sec_len, 1);
    }
}

TEST_CASE("a flipped block byte makes verify_section false", "[car][verify]") {
    std::vector<Block> blocks = {make_block(1), make_block(300), make_block(-70000)};
    Bytes bytes = make_car(blocks);
    sov::Located err;
    auto secs = read_all(bytes, err);
    REQUIRE(secs.size() == 3);
    for (std::size_t i = 0; i < secs.size(); ++i) {
        for (std::size_t k = 0; k < secs[i].block.size(); ++k) {
            Bytes m = bytes;
            std::size_t at = std::size_t(secs[i].block.data() - bytes.data()) + k;
            m[at] ^= 0x01;
            auto ms = read_all(m, err);
            CHECK(!err);
            REQUIRE(ms.size() == 3);
            for (std::size_t j = 0; j < 3; ++j) CHECK(car::verify_section(ms[j]) == (j != i));
        }
        // A flipped digest byte in the CID, too.
        Bytes m = bytes;
        m[std::size_t(secs[i].cid.data() - bytes.data()) + 20] ^= 0x40;
        auto ms = read_all(m, err);
        REQUIRE(ms.size() == 3);
        CHECK(!car::verify_section(ms[i]));
    }
    // A non-sha256 section CID never verifies.
    car::Section s;
    Bytes c = {0x01, 0x71, 0x13, 0x02, 0xaa, 0xbb};
    s.cid = c;
    s.block = blocks[0].data;
    CHECK(!car::verify_section(s));
}

// ---------------------------------------------------------------- real CARs, damaged

TEST_CASE("real CARs truncated at every offset", "[car][corpus][malformed]") {
    REQUIRE_CORPUS(corpus);
    for (const char* name : {"tiny.car", "empty.car", "jetstream-maintainer.car"}) {
        INFO(name);
        Bytes full = testutil::read_file(corpus / "repos" / name);
        REQUIRE(!full.empty());
        // Section start offsets of the intact file.
        sov::Located err;
        auto secs = read_all(full, err);
        REQUIRE(!err);
        std::map<std::size_t, std::size_t> starts;  // offset -> index
        for (std::size_t i = 0; i < secs.size(); ++i) starts[secs[i].offset] = i;
        std::size_t mismatches = 0;
        for (std::size_t l = 0; l < full.size(); ++l) {
            Bytes cut(full.begin(), full.begin() + std::ptrdiff_t(l));
            car::Reader r;
            sov::Located o = r.open(cut);
            if (l < 59) {
                if (o.errc != Errc::truncated || o.offset != 0) ++mismatches;
                continue;
            }
            if (o) { ++mismatches; continue; }
            std::size_t n = 0;
            car::Section s;
            while (r.next(s)) {
                if (!car::verify_section(s)) ++mismatches;
                ++n;
            }
            // The cut lands on a section start (a shorter valid CAR) or inside one.
            auto it = starts.upper_bound(l);
            std::size_t cut_index = it == starts.begin() ? 0 : std::prev(it)->second;
            bool boundary = l == 59 || starts.count(l);
            if (boundary) {
                std::size_t want = l == 59 ? 0 : starts[l];
                if (r.error() || n != want) ++mismatches;
            } else {
                if (r.error().errc != Errc::truncated || r.error().offset != secs[cut_index].offset ||
                    n != cut_index)
                    ++mismatches;
            }
        }
        CHECK(mismatches == 0);
    }
}

TEST_CASE("real CARs mutated at many offsets never crash", "[car][corpus][malformed]") {
    REQUIRE_CORPUS(corpus);
    Bytes full = testutil::read_file(corpus / "repos" / "tiny.car");
    REQUIRE(!full.empty());
    sov::Located err;
    auto secs = read_all(full, err);
    REQUIRE(!err);
    const std::size_t nsec = secs.size();
    // Where each byte lies: -1 header/varints/CIDs, else the index of the block holding it.
    std::vector<long> owner(full.size(), -1);
    for (std::size_t i = 0; i < nsec; ++i) {
        std::size_t b0 = std::size_t(secs[i].block.data() - full.data());
        for (std::size_t k = 0; k < secs[i].block.size(); ++k) owner[b0 + k] = long(i);
    }
    const Errc allowed[] = {Errc::ok, Errc::truncated, Errc::trailing_bytes, Errc::varint_non_minimal, Errc::varint_overflow,
                            Errc::car_bad_header, Errc::car_no_roots, Errc::car_bad_section,
                            Errc::cid_bad_version};
    std::size_t block_flips = 0, detected = 0, bad = 0;
    for (std::size_t at = 0; at < full.size(); ++at) {
        for (std::uint8_t x : {std::uint8_t(0x01), std::uint8_t(0x80), std::uint8_t(0xff)}) {
            Bytes m = full;
            m[at] ^= x;
            car::Reader r;
            sov::Located o = r.open(m);
            std::size_t n = 0, failed = 0;
            long failed_index = -1;
            if (!o) {
                car::Section s;
                while (r.next(s)) {
                    // Every view lies inside the buffer.
                    if (s.cid.data() < m.data() || s.block.data() + s.block.size() > m.data() + m.size()) ++bad;
                    if (!car::verify_section(s)) {
                        ++failed;
                        failed_index = long(n);
                    }
                    ++n;
                }
                o = r.error();
            }
            if (o && o.offset > m.size()) ++bad;
            bool known = false;
            for (Errc e : allowed) known = known || e == o.errc || (o.errc >= Errc::cbor_reserved_ai && o.errc <= Errc::cbor_empty_key);
            if (!known) {
                ++bad;
                UNSCOPED_INFO("flip 0x" << std::hex << int(x) << std::dec << " at " << at << ": unexpected "
                                        << sov::to_string(o.errc) << " at " << o.offset);
            }
            if (owner[at] >= 0) {
                // Inside a block: the structure is intact and only that block fails its hash.
                ++block_flips;
                if (!o && n == nsec && failed == 1 && failed_index == owner[at]) ++detected;
            }
        }
    }
    CHECK(bad == 0);
    CHECK(block_flips > 0);
    CHECK(detected == block_flips);
}
