// The writing side of the codecs a PDS needs: the CAR writer (read back by car::Reader) and
// commit building/signing (accepted by the verifier's commit check, byte-identical to a real
// commit when given its fields and signature).
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/commit.h"
#include "sovereign/io.h"
#include "sovereign/verify.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "test_util.h"

namespace {

sov::crypto::PrivateKey key_for(sov::crypto::Curve curve, std::uint8_t tag) {
    std::array<std::uint8_t, 32> seed{};
    seed[0] = tag;
    return sov::crypto::generate_from_seed(curve, seed);
}

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

}  // namespace

TEST_CASE("CAR writer output reads back section by section", "[car][commit]") {
    std::vector<std::vector<std::uint8_t>> blocks = {bytes_of("\xa1\x61x\x01"), bytes_of("\x80"), std::vector<std::uint8_t>(300, 0x41)};
    blocks[2][0] = 0x59;  // bytes(300): a block whose section length needs a 2-byte varint
    blocks[2][1] = 0x01;
    blocks[2][2] = 0x29;
    std::vector<sov::cid::Cid> cids;
    for (auto& b : blocks) cids.push_back(sov::cid::compute(sov::cid::kCodecDagCbor, b));

    std::vector<std::uint8_t> car;
    sov::car::append_header(car, cids[0].bytes());
    // The atproto one-root header: varint 58, then `a2 65 'roots' 81 d8 2a 58 25 00 01 71 12 20`….
    REQUIRE(car.size() == 59);
    const std::uint8_t prefix[] = {0x3a, 0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00, 0x01, 0x71, 0x12, 0x20};
    CHECK(std::equal(std::begin(prefix), std::end(prefix), car.begin()));
    for (std::size_t i = 0; i < blocks.size(); ++i) sov::car::append_section(car, cids[i].bytes(), blocks[i]);

    sov::car::Reader r;
    REQUIRE_FALSE(r.open(car));
    CHECK(r.root_count() == 1);
    CHECK(sov::cid::equal(r.root(), cids[0].bytes()));
    CHECK(r.body_offset() == 59);
    sov::car::Section s;
    std::size_t n = 0;
    while (r.next(s)) {
        REQUIRE(n < blocks.size());
        CHECK(sov::cid::equal(s.cid, cids[n].bytes()));
        CHECK(std::equal(s.block.begin(), s.block.end(), blocks[n].begin(), blocks[n].end()));
        CHECK(sov::car::verify_section(s));
        ++n;
    }
    CHECK_FALSE(r.error());
    CHECK(n == blocks.size());
}

TEST_CASE("built commits pass the verifier's commit check on both curves", "[commit]") {
    const std::string did = "did:plc:abcdefghijklmnopqrstuvwx";
    const std::string rev = "3lbq7ydkb2k2c";
    auto data = sov::cid::compute(sov::cid::kCodecDagCbor, bytes_of("\xa2\x61" "e\x80\x61l\xf6"));
    for (auto curve : {sov::crypto::Curve::k256, sov::crypto::Curve::p256}) {
        INFO((curve == sov::crypto::Curve::k256 ? "k256" : "p256"));
        auto priv = key_for(curve, 7);
        auto pub = sov::crypto::public_key_of(priv);
        REQUIRE(pub.ok());
        sov::commit::Fields f{did, rev, data.bytes(), {}};
        sov::commit::Block b;
        REQUIRE(sov::commit::build(f, priv, b) == sov::Errc::ok);
        // Canonical v3 commit: did, rev, sig, data, prev (null), version 3.
        CHECK(b.bytes[0] == 0xa6);
        CHECK(sov::cbor::validate(b.bytes).errc == sov::Errc::ok);
        CHECK(b.cid == sov::cid::compute(sov::cid::kCodecDagCbor, b.bytes));
        auto ok = sov::verify::check_commit_block(b.bytes, did, rev, std::optional<sov::crypto::PublicKey>(*pub));
        INFO(ok.detail);
        CHECK(ok.verdict == sov::verify::Verdict::ok);  // ok implies 64 bytes, low-S
        // The digest the verifier recomputes is the one that was signed.
        std::array<std::uint8_t, 32> digest{};
        sov::ByteView sig;
        REQUIRE(sov::verify::unsigned_commit_digest(b.bytes, digest, sig));
        std::vector<std::uint8_t> unsigned_block;
        sov::commit::encode_unsigned(f, unsigned_block);
        CHECK(digest == sov::crypto::sha256(unsigned_block));
        // Another account's key, another rev: rejected.
        auto other = sov::crypto::public_key_of(key_for(curve, 8));
        CHECK(sov::verify::check_commit_block(b.bytes, did, rev, std::optional<sov::crypto::PublicKey>(*other)).verdict == sov::verify::Verdict::bad_sig);
        CHECK(sov::verify::check_commit_block(b.bytes, did, "3lbq7ydkb2k2d", std::optional<sov::crypto::PublicKey>(*pub)).verdict == sov::verify::Verdict::bad_commit);
        // A non-null prev is encoded as a link and still verifies.
        sov::commit::Fields g = f;
        g.prev = b.cid.bytes();
        sov::commit::Block b2;
        REQUIRE(sov::commit::build(g, priv, b2) == sov::Errc::ok);
        CHECK(sov::cbor::Value::of(b2.bytes).get("prev").is(sov::cbor::Kind::link));
        CHECK(sov::verify::check_commit_block(b2.bytes, did, rev, std::optional<sov::crypto::PublicKey>(*pub)).verdict == sov::verify::Verdict::ok);
    }
}

TEST_CASE("an invalid private key is refused, not signed with", "[commit]") {
    sov::crypto::PrivateKey zero{sov::crypto::Curve::k256, {}};
    auto data = sov::cid::compute(sov::cid::kCodecDagCbor, bytes_of("\x80"));
    sov::commit::Block b;
    CHECK(sov::commit::build({"did:plc:abcdefghijklmnopqrstuvwx", "3lbq7ydkb2k2c", data.bytes(), {}}, zero, b) ==
          sov::Errc::bad_argument);
}

TEST_CASE("a real commit re-encodes byte for byte from its fields and signature", "[commit][corpus]") {
    std::string path = testutil::corpus_path("repos/bnewbold.car");
    if (path.empty()) return;
    std::string car, err;
    REQUIRE(sov::io::read_all(path, car, err));
    sov::car::Reader r;
    REQUIRE_FALSE(r.open(sov::as_bytes(car)));
    sov::car::Section s;
    sov::ByteView block;
    while (r.next(s))
        if (sov::cid::equal(s.cid, r.root())) block = s.block;
    REQUIRE_FALSE(block.empty());
    auto c = sov::cbor::Value::of(block);
    sov::commit::Fields f{c.get("did").as_text(), c.get("rev").as_text(), c.get("data").as_link(),
                          c.get("prev").is(sov::cbor::Kind::link) ? c.get("prev").as_link() : sov::ByteView{}};
    std::array<std::uint8_t, 64> sig{};
    sov::ByteView real_sig = c.get("sig").as_bytes();
    REQUIRE(real_sig.size() == 64);
    std::copy(real_sig.begin(), real_sig.end(), sig.begin());
    std::vector<std::uint8_t> again;
    sov::commit::encode_signed(f, sig, again);
    CHECK(std::equal(again.begin(), again.end(), block.begin(), block.end()));
    CHECK(sov::cid::equal(sov::cid::compute(sov::cid::kCodecDagCbor, again).bytes(), r.root()));
}
