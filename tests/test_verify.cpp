// Verification and verdicts (docs/design.md §3; docs/protocol.md §5, §6 steps 1–4).
//
// Every rejection here starts from a real relay message and changes the fewest bytes that
// provoke it. A change inside the commit block breaks its CID, which would hide the check
// under test behind bad-cid; those mutations go through with_commit_block(), which puts the
// new block in the CAR, recomputes its CID and rewrites the CAR root and the message's
// `commit` field, re-encoding only the payload entries that change.
#include "sovereign/capture.h"
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/crypto.h"
#include "sovereign/did_cache.h"
#include "sovereign/did_doc.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"
#include "sovereign/varint.h"
#include "sovereign/verify.h"
#include "sovereign/verify_engine.h"

#include "test_util.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

using sov::ByteView;
using sov::Errc;
using Bytes = std::vector<std::uint8_t>;
namespace verify = sov::verify;
using verify::Verdict;

namespace {

ByteView view(const Bytes& b) { return {b.data(), b.size()}; }
Bytes copy(ByteView b) { return {b.begin(), b.end()}; }

// ---- keys ----------------------------------------------------------------------------------

class StoreKeys final : public verify::KeySource {
public:
    explicit StoreKeys(const sov::KeyStore& s) : store_(s) {}
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view did, std::int64_t) const override {
        const sov::DidDoc* d = store_.find(did);
        return d ? d->signing_key : std::nullopt;
    }

private:
    const sov::KeyStore& store_;
};

class NoKeys final : public verify::KeySource {
public:
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view, std::int64_t) const override { return std::nullopt; }
};

// Always answers with one fixed key, whoever asks.
class OneKey final : public verify::KeySource {
public:
    explicit OneKey(sov::crypto::PublicKey k) : key_(std::move(k)) {}
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view, std::int64_t) const override { return key_; }

private:
    sov::crypto::PublicKey key_;
};

// The corpus, loaded once per process.
struct Corpus {
    std::vector<Bytes> msgs;
    sov::KeyStore keys;
};
const Corpus* corpus_data(const std::filesystem::path& dir) {
    static std::optional<Corpus> c;
    if (!c) {
        c.emplace();
        std::string err;
        REQUIRE(sov::capture::load((dir / "relay-capture" / "frames.u32le.zst").string(), c->msgs, err));
        REQUIRE(c->keys.load_json_file((dir / "relay-capture" / "did-docs.json.zst").string(), err) == Errc::ok);
    }
    return &*c;
}

// ---- DAG-CBOR and CAR rewriting -------------------------------------------------------------

Bytes text(std::string_view s) {
    Bytes b;
    sov::cbor::Writer(b).text(s);
    return b;
}
Bytes bytes(ByteView v) {
    Bytes b;
    sov::cbor::Writer(b).bytes(v);
    return b;
}
Bytes link(ByteView cid) {
    Bytes b;
    sov::cbor::Writer(b).link(cid);
    return b;
}
Bytes integer(std::int64_t v) {
    Bytes b;
    sov::cbor::Writer(b).integer(v);
    return b;
}

// Re-encodes a validated map with some entries replaced or added (key → encoded value) and
// some dropped; untouched entries are copied verbatim; keys end up in canonical order.
Bytes rewrite_map(ByteView map, const std::map<std::string, Bytes>& set, const std::vector<std::string>& drop = {}) {
    std::vector<std::pair<std::string, Bytes>> entries;
    sov::cbor::MapIter it = sov::cbor::Value::of(map).map();
    std::string_view k;
    sov::cbor::Value v;
    while (it.next(k, v)) {
        if (std::find(drop.begin(), drop.end(), k) != drop.end()) continue;
        auto s = set.find(std::string(k));
        entries.emplace_back(std::string(k), s != set.end() ? s->second : copy(v.raw()));
    }
    for (const auto& [key, val] : set)
        if (std::none_of(entries.begin(), entries.end(), [&](const auto& e) { return e.first == key; }))
            entries.emplace_back(key, val);
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return sov::cbor::key_compare(a.first, b.first) < 0; });
    Bytes out;
    sov::cbor::Writer w(out);
    w.map(entries.size());
    for (const auto& [key, val] : entries) {
        w.text(key);
        w.raw(view(val));
    }
    return out;
}

struct Car {
    std::vector<Bytes> roots;
    std::vector<std::pair<Bytes, Bytes>> sections;  // (CID, block)
};

Car read_car(ByteView bytes) {
    Car car;
    sov::car::Reader r;
    REQUIRE_FALSE(r.open(bytes));
    std::uint64_t hlen = 0;
    std::size_t n = 0;
    REQUIRE(sov::varint::decode(bytes, hlen, n) == Errc::ok);
    sov::cbor::ArrayIter roots = sov::cbor::Value::of(bytes.subspan(n, std::size_t(hlen))).get("roots").array();
    sov::cbor::Value root;
    while (roots.next(root)) car.roots.push_back(copy(root.as_link()));
    sov::car::Section s;
    while (r.next(s)) car.sections.emplace_back(copy(s.cid), copy(s.block));
    REQUIRE_FALSE(r.error());
    return car;
}

Bytes write_car(const Car& car) {
    Bytes header;
    sov::cbor::Writer w(header);
    w.map(2);
    w.text("roots");
    w.array(car.roots.size());
    for (const auto& r : car.roots) w.link(view(r));
    w.text("version");
    w.uint(1);
    Bytes out;
    sov::varint::append(header.size(), out);
    out.insert(out.end(), header.begin(), header.end());
    for (const auto& [cid, block] : car.sections) {
        sov::varint::append(cid.size() + block.size(), out);
        out.insert(out.end(), cid.begin(), cid.end());
        out.insert(out.end(), block.begin(), block.end());
    }
    return out;
}

// A parsed copy of a wire message (owns its bytes).
struct Msg {
    Bytes wire;
    sov::msg::Message m;
    explicit Msg(Bytes w) : wire(std::move(w)) { REQUIRE_FALSE(sov::msg::parse(view(wire), m)); }
    Msg(const Msg&) = delete;
    Bytes header() const { return copy(m.header_raw); }
    Bytes commit_block() const {
        Car car = read_car(m.blocks);
        for (const auto& [cid, block] : car.sections)
            if (sov::cid::equal(view(cid), m.commit)) return block;
        FAIL("no commit block");
        return {};
    }
};

Bytes join(const Bytes& a, const Bytes& b) {
    Bytes out = a;
    out.insert(out.end(), b.begin(), b.end());
    return out;
}

// The message with its payload entries replaced (key → encoded value).
Bytes with_payload(const Bytes& wire, const std::map<std::string, Bytes>& set, const std::vector<std::string>& drop = {}) {
    Msg msg(wire);
    return join(msg.header(), rewrite_map(msg.m.payload_raw, set, drop));
}

// The message with its CAR rebuilt by `edit`, keeping `commit`.
template <class F>
Bytes with_car(const Bytes& wire, F edit) {
    Msg msg(wire);
    Car car = read_car(msg.m.blocks);
    edit(car, msg.m);
    return join(msg.header(), rewrite_map(msg.m.payload_raw, {{"blocks", bytes(view(write_car(car)))}}));
}

// The message with its commit block replaced: new CID in the CAR section, roots[0] and the
// message's `commit`.
Bytes with_commit_block(const Bytes& wire, const Bytes& block) {
    Msg msg(wire);
    sov::cid::Cid new_cid = sov::cid::compute(sov::cid::kCodecDagCbor, view(block));
    Car car = read_car(msg.m.blocks);
    bool found = false;
    for (auto& [cid, b] : car.sections)
        if (sov::cid::equal(view(cid), msg.m.commit)) {
            cid = copy(new_cid.bytes());
            b = block;
            found = true;
        }
    REQUIRE(found);
    REQUIRE(sov::cid::equal(view(car.roots.at(0)), msg.m.commit));
    car.roots[0] = copy(new_cid.bytes());
    return join(msg.header(), rewrite_map(msg.m.payload_raw, {{"commit", link(new_cid.bytes())},
                                                              {"blocks", bytes(view(write_car(car)))}}));
}

// The commit block with its `sig` replaced.
Bytes with_sig(const Bytes& block, const Bytes& sig) { return rewrite_map(view(block), {{"sig", bytes(view(sig))}}); }
Bytes sig_of(const Bytes& block) { return copy(sov::cbor::Value::of(view(block)).get("sig").as_bytes()); }

// secp256k1 group order n (SEC 2 §2.4.1), big-endian.
constexpr std::uint8_t kN[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
                                 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};

// r ‖ (n − s): the other, high-S, signature of the same message.
Bytes high_s_twin(const Bytes& sig) {
    REQUIRE(sig.size() == 64);
    Bytes out = sig;
    int borrow = 0;
    for (int i = 31; i >= 0; --i) {
        int d = int(kN[i]) - int(sig[32 + std::size_t(i)]) - borrow;
        borrow = d < 0;
        out[32 + std::size_t(i)] = std::uint8_t(d + (borrow ? 256 : 0));
    }
    REQUIRE(borrow == 0);
    return out;
}

// ASN.1 DER SEQUENCE { INTEGER r, INTEGER s } of a 64-byte r ‖ s signature.
Bytes der(const Bytes& sig) {
    auto integer_der = [](const std::uint8_t* p, Bytes& out) {
        std::size_t i = 0;
        while (i < 31 && p[i] == 0) ++i;
        bool pad = p[i] & 0x80;  // keep the INTEGER positive
        out.push_back(0x02);
        out.push_back(std::uint8_t(32 - i + (pad ? 1 : 0)));
        if (pad) out.push_back(0x00);
        for (; i < 32; ++i) out.push_back(p[i]);
    };
    Bytes body;
    integer_der(sig.data(), body);
    integer_der(sig.data() + 32, body);
    Bytes out;
    out.push_back(0x30);
    out.push_back(std::uint8_t(body.size()));
    for (std::uint8_t b : body) out.push_back(b);
    return out;
}

// Indices of the capture's messages by type.
std::vector<std::size_t> commits_of(const Corpus& c) {
    std::vector<std::size_t> out;
    sov::msg::Message m;
    for (std::size_t i = 0; i < c.msgs.size(); ++i)
        if (!sov::msg::parse(view(c.msgs[i]), m) && m.type == sov::msg::Type::commit) out.push_back(i);
    return out;
}

verify::Outcome run(const verify::KeySource& keys, const Bytes& wire) {
    verify::Verifier v(keys);
    return v.verify(view(wire), 0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("verdict strings are those of docs/design.md §3, in order", "[verify]") {
    const char* names[] = {"ok",      "ok-gap",  "skip",     "malformed",  "too-big",  "bad-car",  "bad-cid",  "bad-commit",
                           "no-key",  "bad-sig", "bad-proof", "stale-rev", "future-rev", "bad-seq", "inactive",
                           "wrong-pds"};
    static_assert(std::size(names) == verify::kVerdictCount);
    for (std::size_t i = 0; i < verify::kVerdictCount; ++i) {
        INFO(names[i]);
        CHECK(verify::to_string(Verdict(i)) == names[i]);
        auto back = verify::verdict_from_string(names[i]);
        REQUIRE(back);
        CHECK(*back == Verdict(i));
        CHECK(verify::passes(Verdict(i)) == (i <= 2));
    }
    CHECK(int(Verdict::ok) == 0);
    CHECK(int(Verdict::inactive) == 14);
    CHECK(int(Verdict::wrong_pds) == 15);
    CHECK(verify::passes(Verdict::ok));
    CHECK(verify::passes(Verdict::ok_gap));
    CHECK(verify::passes(Verdict::skip));
    CHECK_FALSE(verify::passes(Verdict::bad_sig));
    for (const char* s : {"", "OK", "ok ", "bad_sig", "too_big", "okgap", "valid"}) CHECK_FALSE(verify::verdict_from_string(s));
}

TEST_CASE("all 150 capture messages verify ok", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    REQUIRE(c.msgs.size() == 150);
    StoreKeys keys(c.keys);
    verify::Verifier v(keys);  // one verifier for the whole stream, as cbor-verify uses it
    std::map<sov::msg::Type, int> ok_by_type;
    int not_ok = 0;
    for (std::size_t i = 0; i < c.msgs.size(); ++i) {
        verify::Outcome o = v.verify(view(c.msgs[i]), 0);
        INFO("message " << i << ": " << verify::to_string(o.verdict) << " " << o.detail);
        CHECK(o.verdict == Verdict::ok);
        CHECK(o.detail.empty());
        if (o.verdict == Verdict::ok) ++ok_by_type[v.message().type];
        else ++not_ok;
    }
    CHECK(ok_by_type[sov::msg::Type::commit] == 148);
    CHECK(ok_by_type[sov::msg::Type::identity] == 1);
    CHECK(ok_by_type[sov::msg::Type::account] == 1);
    CHECK(not_ok == 0);
}

TEST_CASE("the test's CAR/payload rewriting reproduces real messages byte for byte", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    for (std::size_t i : commits_of(c)) {
        INFO("message " << i);
        const Bytes& w = c.msgs[i];
        Msg msg(w);
        CHECK(write_car(read_car(msg.m.blocks)) == copy(msg.m.blocks));
        CHECK(with_commit_block(w, msg.commit_block()) == w);
        CHECK(with_payload(w, {}) == w);
    }
}

TEST_CASE("unsigned_commit_digest hashes the commit without its sig entry", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    StoreKeys keys(c.keys);
    for (std::size_t i : commits_of(c)) {
        INFO("message " << i);
        Msg msg(c.msgs[i]);
        Bytes block = msg.commit_block();
        std::array<std::uint8_t, 32> digest{};
        ByteView sig;
        REQUIRE(verify::unsigned_commit_digest(view(block), digest, sig));
        Bytes unsigned_block = rewrite_map(view(block), {}, {"sig"});
        CHECK(sov::cbor::Value::of(view(unsigned_block)).count() == 5);
        CHECK(digest == sov::crypto::sha256(view(unsigned_block)));
        CHECK(copy(sig) == sig_of(block));
        CHECK(sig.size() == 64);

        const std::optional<sov::crypto::PublicKey> key = keys.signing_key(msg.m.did, 0);
        REQUIRE(key);
        verify::Outcome o = verify::check_commit_block(view(block), msg.m.did, msg.m.rev, key);
        CHECK(o.verdict == Verdict::ok);
        CHECK(verify::check_commit_block(view(block), msg.m.did, msg.m.rev, std::nullopt).verdict == Verdict::no_key);
    }
}

TEST_CASE("mutations of real commits get the right verdict", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    StoreKeys keys(c.keys);
    const std::vector<std::size_t> commits = commits_of(c);
    REQUIRE(commits.size() == 148);
    // A few commits spread over the capture, including the one with three ops.
    std::vector<std::size_t> picks = {commits.front(), commits[37], commits[101], commits.back()};
    for (std::size_t i : commits) {
        Msg probe(c.msgs[i]);
        if (probe.m.ops.size() > 1) picks.push_back(i);
    }

    // Each section runs its mutation on every pick.
    struct Pick {
        std::size_t idx;
        const Bytes& w;
        const Msg& msg;
        const Bytes& block;
        const Bytes& sig;
    };
    auto each = [&](auto&& fn) {
        for (std::size_t idx : picks) {
            const Bytes& w = c.msgs[idx];
            Msg msg(w);
            const Bytes block = msg.commit_block();
            const Bytes sig = sig_of(block);
            INFO("message " << idx << " (" << msg.m.did << ")");
            REQUIRE(run(keys, w).verdict == Verdict::ok);
            fn(Pick{idx, w, msg, block, sig});
        }
    };

    SECTION("a flipped signature bit, CAR rebuilt -> bad-sig") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            for (std::size_t bit : {0u, 7u, 100u, 255u, 256u, 300u, 511u}) {
                INFO("bit " << bit);
                Bytes s = sig;
                s[bit / 8] ^= std::uint8_t(0x80 >> (bit % 8));
                verify::Outcome o = run(keys, with_commit_block(w, with_sig(block, s)));
                CHECK(o.verdict == Verdict::bad_sig);
                CHECK_FALSE(o.detail.empty());
            }
        });
    }
    SECTION("a flipped signature bit in place (CID now wrong) -> bad-cid") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes mutated = w;
            auto pos = std::search(mutated.begin(), mutated.end(), sig.begin(), sig.end());
            REQUIRE(pos != mutated.end());
            pos[10] ^= 0x01;
            CHECK(run(keys, mutated).verdict == Verdict::bad_cid);
        });
    }
    SECTION("the high-S twin of the real signature -> bad-sig") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes twin = high_s_twin(sig);
            CHECK(high_s_twin(twin) == sig);
            verify::Outcome o = run(keys, with_commit_block(w, with_sig(block, twin)));
            CHECK(o.verdict == Verdict::bad_sig);
            CHECK(o.detail == sov::to_string(Errc::sig_high_s));
        });
    }
    SECTION("a DER-encoded signature -> bad-sig") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes d = der(sig);
            REQUIRE(d.size() >= 68);
            verify::Outcome o = run(keys, with_commit_block(w, with_sig(block, d)));
            CHECK(o.verdict == Verdict::bad_sig);
            CHECK(o.detail == sov::to_string(Errc::sig_bad_length));
        });
    }
    SECTION("a signature cut to 63 bytes -> bad-sig") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes s(sig.begin(), sig.end() - 1);
            CHECK(run(keys, with_commit_block(w, with_sig(block, s))).verdict == Verdict::bad_sig);
        });
    }
    SECTION("an empty signature -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            CHECK(run(keys, with_commit_block(w, with_sig(block, Bytes{}))).verdict == Verdict::bad_commit);
        });
    }
    SECTION("another DID's key -> bad-sig") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            std::optional<sov::crypto::PublicKey> other;
            for (std::size_t j : commits) {
                Msg o(c.msgs[j]);
                if (o.m.did != msg.m.did && keys.signing_key(o.m.did, 0)) {
                    other = keys.signing_key(o.m.did, 0);
                    break;
                }
            }
            REQUIRE(other);
            OneKey wrong(*other);
            verify::Outcome o = run(wrong, w);
            CHECK(o.verdict == Verdict::bad_sig);
            CHECK(o.detail == sov::to_string(Errc::sig_invalid));
        });
    }
    SECTION("a flipped byte in a record block -> bad-cid") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            REQUIRE_FALSE(msg.m.ops.empty());
            sov::car::Reader r;
            REQUIRE_FALSE(r.open(msg.m.blocks));
            sov::car::Section s;
            std::size_t flipped = 0;
            while (r.next(s)) {
                bool is_record = std::any_of(msg.m.ops.begin(), msg.m.ops.end(),
                                             [&](const sov::msg::RepoOp& o) { return sov::cid::equal(o.cid, s.cid); });
                if (!is_record) continue;
                Bytes mutated = w;
                std::size_t at = std::size_t(s.block.data() - msg.wire.data()) + s.block.size() / 2;
                mutated[at] ^= 0x20;
                verify::Outcome o = run(keys, mutated);
                CHECK(o.verdict == Verdict::bad_cid);
                CHECK(o.detail.find(sov::cid::to_string(s.cid)) != std::string::npos);
                ++flipped;
            }
            // Deletes carry no record block; every create/update does.
            std::size_t with_record = std::size_t(std::count_if(msg.m.ops.begin(), msg.m.ops.end(),
                                                                [](const auto& o) { return !o.cid.empty(); }));
            CHECK(flipped == with_record);
        });
    }
    SECTION("a flipped byte in an MST node block -> bad-cid") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            sov::car::Reader r;
            REQUIRE_FALSE(r.open(msg.m.blocks));
            sov::car::Section s;
            while (r.next(s)) {
                if (sov::cid::equal(s.cid, msg.m.commit)) continue;
                Bytes mutated = w;
                mutated[std::size_t(s.block.data() - msg.wire.data())] ^= 0x01;  // first byte
                CHECK(run(keys, mutated).verdict == Verdict::bad_cid);
            }
        });
    }
    SECTION("the message's repo changed to another valid DID -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            std::string other;
            for (std::size_t j : commits) {
                Msg o(c.msgs[j]);
                if (o.m.did != msg.m.did) {
                    other = std::string(o.m.did);
                    break;
                }
            }
            verify::Outcome o = run(keys, with_payload(w, {{"repo", text(other)}}));
            CHECK(o.verdict == Verdict::bad_commit);
            CHECK(o.detail.find("did") != std::string::npos);
            CHECK(run(keys, with_payload(w, {{"repo", text("did:web:example.com")}})).verdict == Verdict::bad_commit);
        });
    }
    SECTION("the commit's did changed (block rebuilt) -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes b = rewrite_map(view(block), {{"did", text("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")}});
            CHECK(run(keys, with_commit_block(w, b)).verdict == Verdict::bad_commit);
        });
    }
    SECTION("the message's rev changed -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            std::string rev(msg.m.rev);
            rev.back() = rev.back() == '2' ? '3' : '2';
            verify::Outcome o = run(keys, with_payload(w, {{"rev", text(rev)}}));
            CHECK(o.verdict == Verdict::bad_commit);
            CHECK(o.detail.find("rev") != std::string::npos);
        });
    }
    SECTION("commit version 2 (block rebuilt) -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            CHECK(run(keys, with_commit_block(w, rewrite_map(view(block), {{"version", integer(2)}}))).verdict ==
                  Verdict::bad_commit);
        });
    }
    SECTION("commit data not a blessed CID (block rebuilt) -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes b = rewrite_map(view(block), {{"data", link(sov::cid::compute(0x70, sov::as_bytes("x")).bytes())}});
            CHECK(run(keys, with_commit_block(w, b)).verdict == Verdict::bad_commit);
        });
    }
    SECTION("commit prev changed to a link (block rebuilt): signed bytes differ -> bad-sig") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes b = rewrite_map(view(block), {{"prev", link(msg.m.prev_data)}});
            CHECK(run(keys, with_commit_block(w, b)).verdict == Verdict::bad_sig);
        });
    }
    SECTION("commit without prev (block rebuilt) -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            CHECK(run(keys, with_commit_block(w, rewrite_map(view(block), {}, {"prev"}))).verdict == Verdict::bad_commit);
        });
    }
    SECTION("commit block not canonical DAG-CBOR (block rebuilt) -> bad-commit") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            // Keys written out of order: sig before rev.
            Bytes b;
            sov::cbor::Writer wr(b);
            wr.map(6);
            sov::cbor::Value cb = sov::cbor::Value::of(view(block));
            for (const char* k : {"did", "sig", "rev", "data", "prev", "version"}) {
                wr.text(k);
                wr.raw(cb.get(k).raw());
            }
            REQUIRE(sov::cbor::validate(view(b)).errc == Errc::cbor_key_order);
            CHECK(run(keys, with_commit_block(w, b)).verdict == Verdict::bad_commit);
        });
    }
    SECTION("truncated wire -> malformed") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            for (std::size_t cut : {std::size_t(1), std::size_t(37), w.size() / 2}) {
                Bytes t(w.begin(), w.end() - std::ptrdiff_t(cut));
                CHECK(run(keys, t).verdict == Verdict::malformed);
            }
        });
    }
    SECTION("trailing bytes after the payload -> malformed") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes t = w;
            t.push_back(0x00);
            verify::Outcome o = run(keys, t);
            CHECK(o.verdict == Verdict::malformed);
            CHECK(o.detail.find("payload") != std::string::npos);
            Bytes t2 = join(w, msg.header());
            CHECK(run(keys, t2).verdict == Verdict::malformed);
        });
    }
    SECTION("missing commit block -> bad-car") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes mutated = with_car(w, [](Car& car, const sov::msg::Message& m) {
                auto& s = car.sections;
                s.erase(std::remove_if(s.begin(), s.end(), [&](const auto& e) { return sov::cid::equal(view(e.first), m.commit); }),
                        s.end());
            });
            verify::Outcome o = run(keys, mutated);
            CHECK(o.verdict == Verdict::bad_car);
            CHECK(o.detail.find("missing") != std::string::npos);
        });
    }
    SECTION("roots[0] is not the commit -> bad-car") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes mutated = with_car(w, [](Car& car, const sov::msg::Message& m) {
                for (const auto& [cid, b] : car.sections)
                    if (!sov::cid::equal(view(cid), m.commit)) {
                        car.roots[0] = cid;
                        return;
                    }
            });
            verify::Outcome o = run(keys, mutated);
            CHECK(o.verdict == Verdict::bad_car);
            CHECK(o.detail.find("roots[0]") != std::string::npos);
        });
    }
    SECTION("the message's commit names another block -> bad-car") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Car car = read_car(msg.m.blocks);
            Bytes other;
            for (const auto& [cid, b] : car.sections)
                if (!sov::cid::equal(view(cid), msg.m.commit)) other = cid;
            CHECK(run(keys, with_payload(w, {{"commit", link(view(other))}})).verdict == Verdict::bad_car);
        });
    }
    SECTION("commit block placed last or duplicated is still ok") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes last = with_car(w, [](Car& car, const sov::msg::Message&) {
                std::rotate(car.sections.begin(), car.sections.begin() + 1, car.sections.end());
            });
            CHECK(run(keys, last).verdict == Verdict::ok);
            Bytes dup = with_car(w, [](Car& car, const sov::msg::Message&) { car.sections.push_back(car.sections.front()); });
            CHECK(run(keys, dup).verdict == Verdict::ok);
        });
    }
    SECTION("blocks that are not a CAR -> bad-car") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            CHECK(run(keys, with_payload(w, {{"blocks", bytes(sov::as_bytes("not a car"))}})).verdict == Verdict::bad_car);
            CHECK(run(keys, with_payload(w, {{"blocks", bytes(ByteView{})}})).verdict == Verdict::bad_car);
            Bytes cut = copy(msg.m.blocks);
            cut.resize(cut.size() - 5);  // last section cut short
            CHECK(run(keys, with_payload(w, {{"blocks", bytes(view(cut))}})).verdict == Verdict::bad_car);
            Bytes no_roots = with_car(w, [](Car& car, const sov::msg::Message&) { car.roots.clear(); });
            CHECK(run(keys, no_roots).verdict == Verdict::bad_car);
        });
    }
    SECTION("unknown DID -> no-key") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            NoKeys none;
            verify::Outcome o = run(none, w);
            CHECK(o.verdict == Verdict::no_key);
            CHECK(o.detail.find(std::string(msg.m.did)) != std::string::npos);
        });
    }
    SECTION("over the size limits -> too-big") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            Bytes big = with_payload(w, {{"zzzzzzzzzzzz", bytes(view(Bytes(5'000'000, 0)))}});
            CHECK(run(keys, big).verdict == Verdict::too_big);
            Bytes padded = copy(msg.m.blocks);
            padded.resize(2'000'001, 0);
            CHECK(run(keys, with_payload(w, {{"blocks", bytes(view(padded))}})).verdict == Verdict::too_big);
            Bytes ops;
            sov::cbor::Writer ow(ops);
            sov::cbor::Value first_op;
            sov::cbor::Value::of(msg.m.payload_raw).get("ops").array().next(first_op);
            ow.array(201);
            for (int k = 0; k < 201; ++k) ow.raw(first_op.raw());
            CHECK(run(keys, with_payload(w, {{"ops", ops}})).verdict == Verdict::too_big);
            // An unknown field that keeps the message under 5 MB does not matter.
            Bytes fine = with_payload(w, {{"zzzzzzzzzzzz", bytes(view(Bytes(1'000, 0)))}});
            CHECK(run(keys, fine).verdict == Verdict::ok);
        });
    }
    SECTION("a required field missing -> malformed") {
        each([&](const Pick& p) {
            const auto& [idx, w, msg, block, sig] = p;
            for (const char* k : {"seq", "repo", "commit", "rev", "since", "blocks", "ops", "time"}) {
                INFO(k);
                verify::Outcome o = run(keys, with_payload(w, {}, {k}));
                CHECK(o.verdict == Verdict::malformed);
                CHECK(o.detail.find(k) != std::string::npos);
            }
        });
    }
}

TEST_CASE("MST proof mutations of real commits give bad-proof", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    StoreKeys keys(c.keys);
    const std::vector<std::size_t> commits = commits_of(c);
    for (std::size_t idx : {commits.front(), commits[60], commits.back()}) {
        const Bytes& w = c.msgs[idx];
        Msg msg(w);
        INFO("message " << idx << " (" << msg.m.did << ")");
        REQUIRE(run(keys, w).verdict == Verdict::ok);
        REQUIRE_FALSE(msg.m.ops.empty());
        const Bytes data = copy(sov::cbor::Value::of(view(msg.commit_block())).get("data").as_link());

        // prevData that is not the tree before this commit.
        CHECK(run(keys, with_payload(w, {{"prevData", link(view(data))}})).verdict == Verdict::bad_proof);
        // No prevData: cannot be inverted; a lenient verifier lets it pass unproven.
        Bytes no_prev = with_payload(w, {}, {"prevData"});
        CHECK(run(keys, no_prev).verdict == Verdict::bad_proof);
        verify::Verifier lenient(keys, true);
        CHECK(lenient.verify(view(no_prev), 0).verdict == Verdict::ok);

        // The first op changed: another record CID, or another path.
        auto with_first_op = [&](const std::map<std::string, Bytes>& set) {
            Bytes ops;
            sov::cbor::Writer ow(ops);
            sov::cbor::Value all = sov::cbor::Value::of(msg.m.payload_raw).get("ops");
            ow.array(all.count());
            sov::cbor::ArrayIter it = all.array();
            sov::cbor::Value o;
            bool first = true;
            while (it.next(o)) {
                ow.raw(first ? view(rewrite_map(o.raw(), set)) : o.raw());
                first = false;
            }
            return with_payload(w, {{"ops", ops}});
        };
        const sov::msg::RepoOp& op0 = msg.m.ops[0];
        if (op0.action != sov::msg::OpAction::del) {
            sov::cid::Cid other = sov::cid::compute(sov::cid::kCodecDagCbor, sov::as_bytes("another record"));
            CHECK(run(keys, with_first_op({{"cid", link(other.bytes())}})).verdict == Verdict::bad_proof);
        }
        std::string path(op0.path);
        path.back() = path.back() == '2' ? '3' : '2';
        CHECK(run(keys, with_first_op({{"path", text(path)}})).verdict == Verdict::bad_proof);
    }
}

TEST_CASE("#sync built from a real commit", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    StoreKeys keys(c.keys);
    const std::size_t idx = commits_of(c).at(5);
    Msg msg(c.msgs[idx]);
    const Bytes block = msg.commit_block();

    auto sync_wire = [&](const Bytes& commit_block, std::string_view rev, bool root_matches = true) {
        sov::cid::Cid cid = sov::cid::compute(sov::cid::kCodecDagCbor, view(commit_block));
        Car car;
        car.roots.push_back(copy((root_matches ? cid : sov::cid::compute(sov::cid::kCodecDagCbor, sov::as_bytes("x"))).bytes()));
        car.sections.emplace_back(copy(cid.bytes()), commit_block);
        Bytes header;
        sov::cbor::Writer hw(header);
        hw.map(2);
        hw.text("t");
        hw.text("#sync");
        hw.text("op");
        hw.uint(1);
        Bytes payload;
        sov::cbor::Writer pw(payload);
        pw.map(5);
        pw.text("did");
        pw.text(msg.m.did);
        pw.text("rev");
        pw.text(rev);
        pw.text("seq");
        pw.uint(std::uint64_t(msg.m.seq));
        pw.text("time");
        pw.text(msg.m.time);
        pw.text("blocks");
        pw.bytes(view(write_car(car)));
        return join(header, payload);
    };

    verify::Outcome ok = run(keys, sync_wire(block, msg.m.rev));
    CHECK(ok.verdict == Verdict::ok);
    CHECK(ok.detail.empty());

    std::string rev(msg.m.rev);
    rev.back() = rev.back() == '2' ? '3' : '2';
    CHECK(run(keys, sync_wire(block, rev)).verdict == Verdict::bad_commit);
    CHECK(run(keys, sync_wire(with_sig(block, high_s_twin(sig_of(block))), msg.m.rev)).verdict == Verdict::bad_sig);
    CHECK(run(keys, sync_wire(block, msg.m.rev, false)).verdict == Verdict::bad_car);  // root names a missing block
    NoKeys none;
    CHECK(run(none, sync_wire(block, msg.m.rev)).verdict == Verdict::no_key);
}

TEST_CASE("messages that are not verifiable by design are skipped", "[verify]") {
    NoKeys none;
    auto msg = [](std::vector<std::pair<std::string, Bytes>> h, std::vector<std::pair<std::string, Bytes>> p) {
        auto enc = [](auto& entries) {
            std::sort(entries.begin(), entries.end(),
                      [](const auto& a, const auto& b) { return sov::cbor::key_compare(a.first, b.first) < 0; });
            Bytes b;
            sov::cbor::Writer w(b);
            w.map(entries.size());
            for (const auto& [k, v] : entries) {
                w.text(k);
                w.raw(view(v));
            }
            return b;
        };
        return join(enc(h), enc(p));
    };
    const std::string did = "did:plc:wq4aajammjtxdomz3e23667t";
    const std::string time = "2026-07-04T14:38:07.517Z";
    struct Case {
        const char* what;
        Bytes wire;
        Verdict verdict;
    };
    const Case cases[] = {
        {"#info", msg({{"op", integer(1)}, {"t", text("#info")}}, {{"name", text("OutdatedCursor")}}), Verdict::skip},
        {"error frame", msg({{"op", integer(-1)}}, {{"error", text("FutureCursor")}, {"message", text("no")}}), Verdict::skip},
        {"unknown t", msg({{"op", integer(1)}, {"t", text("#labels")}}, {{"seq", integer(1)}}), Verdict::skip},
        {"unknown op", msg({{"op", integer(3)}, {"t", text("#commit")}}, {}), Verdict::skip},
        {"#handle", msg({{"op", integer(1)}, {"t", text("#handle")}},
                        {{"seq", integer(1)}, {"did", text(did)}, {"handle", text("a.example")}, {"time", text(time)}}),
         Verdict::skip},
        {"#migrate", msg({{"op", integer(1)}, {"t", text("#migrate")}},
                         {{"seq", integer(1)}, {"did", text(did)}, {"migrateTo", Bytes{0xf6}}, {"time", text(time)}}),
         Verdict::skip},
        {"#tombstone", msg({{"op", integer(1)}, {"t", text("#tombstone")}},
                           {{"seq", integer(1)}, {"did", text(did)}, {"time", text(time)}}),
         Verdict::skip},
        {"#identity", msg({{"op", integer(1)}, {"t", text("#identity")}},
                          {{"seq", integer(1)}, {"did", text(did)}, {"time", text(time)}}),
         Verdict::ok},
        {"#account", msg({{"op", integer(1)}, {"t", text("#account")}},
                         {{"seq", integer(1)}, {"did", text(did)}, {"time", text(time)}, {"active", Bytes{0xf5}}}),
         Verdict::ok},
        {"#info without name", msg({{"op", integer(1)}, {"t", text("#info")}}, {}), Verdict::malformed},
        {"#identity with a bad DID", msg({{"op", integer(1)}, {"t", text("#identity")}},
                                         {{"seq", integer(1)}, {"did", text("nope")}, {"time", text(time)}}),
         Verdict::malformed},
        {"empty wire", Bytes{}, Verdict::malformed},
        {"not CBOR", Bytes{0xff, 0xff}, Verdict::malformed},
        {"#sync over 10,000 block bytes",
         msg({{"op", integer(1)}, {"t", text("#sync")}},
             {{"seq", integer(1)}, {"did", text(did)}, {"blocks", bytes(view(Bytes(10'001, 0)))}, {"rev", text("3mptbypluud2a")},
              {"time", text(time)}}),
         Verdict::too_big},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        verify::Outcome o = run(none, c.wire);
        CHECK(o.verdict == c.verdict);
        if (verify::passes(c.verdict)) CHECK(o.detail.empty());
        else CHECK_FALSE(o.detail.empty());
    }
}

TEST_CASE("check_commit_block refuses a block that is not valid DAG-CBOR", "[verify][corpus]") {
    // Bug pin: check_commit_block() reads the block through cbor::Value without validating it
    // first (only Verifier::load_car validates), so on a cut block it reads past the end of
    // the view: here the `version` value just beyond it (memory that happens to be valid),
    // and with ASan a heap-buffer-overflow in cbor.cpp read_head for a 7-byte input such as
    // a6 63 64 69 64 78 ff. Expected: bad-commit, reading nothing outside `block`.
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    StoreKeys keys(c.keys);
    Msg msg(c.msgs.at(commits_of(c).at(0)));
    const Bytes block = msg.commit_block();
    REQUIRE(block.back() == 0x03);  // … "version": 3 is the last entry
    ByteView cut{block.data(), block.size() - 1};
    REQUIRE(sov::cbor::validate(cut).errc == Errc::truncated);
    verify::Outcome o = verify::check_commit_block(cut, msg.m.did, msg.m.rev, keys.signing_key(msg.m.did, 0));
    INFO(verify::to_string(o.verdict) << ": " << o.detail);
    CHECK(o.verdict == Verdict::bad_commit);
}

// ---- cbor-verify output: vrd spliced into the original envelope ------------------------------

namespace {

// The envelope re-encoded with `vrd` (and `why`, when given) set, the way cbor-verify wrote it
// before splicing: every entry but an old vrd and an old why (docs/design.md §2: the reason of an
// earlier verdict never survives a new one), plus the new ones, sorted canonically and written
// out again.
Bytes reencoded_with_verdict(const sov::frames::Envelope& env, std::string_view vrd,
                             std::optional<std::string_view> why = std::nullopt) {
    std::vector<std::pair<std::string_view, Bytes>> entries;
    sov::cbor::MapIter it = sov::cbor::Value::of(env.raw).map();
    std::string_view k;
    sov::cbor::Value v;
    while (it.next(k, v))
        if (k != "vrd" && k != "why") entries.emplace_back(k, copy(v.raw()));
    Bytes text;
    sov::cbor::Writer(text).text(vrd);
    entries.emplace_back("vrd", text);
    if (why) {
        Bytes t;
        sov::cbor::Writer(t).text(*why);
        entries.emplace_back("why", t);
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return sov::cbor::key_compare(a.first, b.first) < 0; });
    Bytes env_bytes;
    sov::cbor::Writer w(env_bytes);
    w.map(entries.size());
    for (const auto& [key, value] : entries) {
        w.text(key);
        w.raw(view(value));
    }
    Bytes out;
    sov::varint::append(env_bytes.size(), out);
    out.insert(out.end(), env_bytes.begin(), env_bytes.end());
    return out;
}

// An envelope with the required keys, an optional earlier vrd and `extra` text entries
// (unknown keys), written canonically.
Bytes envelope(std::optional<std::string_view> vrd, const std::vector<std::string>& extra, ByteView wire) {
    std::vector<std::pair<std::string, Bytes>> entries;
    auto text = [](std::string_view s) {
        Bytes b;
        sov::cbor::Writer(b).text(s);
        return b;
    };
    entries.emplace_back("src", text("bsky.network"));
    if (vrd) entries.emplace_back("vrd", text(*vrd));
    Bytes recv;
    sov::cbor::Writer(recv).integer(1732000000123456);
    entries.emplace_back("recv", recv);
    Bytes w;
    sov::cbor::Writer(w).bytes(wire);
    entries.emplace_back("wire", w);
    for (const auto& e : extra) entries.emplace_back(e, text("value of " + e));
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return sov::cbor::key_compare(a.first, b.first) < 0; });
    Bytes out;
    sov::cbor::Writer wr(out);
    wr.map(entries.size());
    for (const auto& [key, value] : entries) {
        wr.text(key);
        wr.raw(view(value));
    }
    return out;
}

}  // namespace

TEST_CASE("spliced verdict equals the re-encoded envelope (why: and the reason beside it)", "[verify][frames]") {
    const Bytes wire = {0xa2, 0x61, 0x74, 0x67, 0x23, 0x63, 0x6f, 0x6d, 0x6d, 0x69, 0x74, 0x62, 0x6f, 0x70, 0x01, 0xa0};
    std::vector<std::string> many;  // 21 unknown keys: 24 or 25 entries, a two-byte map head
    for (char c = 'a'; c < 'a' + 21; ++c) many.push_back(std::string("x") + c + "y");
    const std::vector<std::vector<std::string>> extras = {
        {},
        {"a"},                            // shorter than every known key: first
        {"abc", "sra", "srd", "tzz"},     // same length as src/vrd, before and between them
        {"vrc", "vre", "why", "zzz"},     // right around vrd, and after it
        {"mask", "zzzzzzzz", "$type"},    // longer keys: after vrd ("mark" is known: markers have no wire)
        many,
    };
    const std::vector<std::optional<std::string_view>> earlier = {std::nullopt, "ok", "bad-sig", "", "not-a-verdict"};
    const std::vector<std::string_view> verdicts = {"ok", "ok-gap", "skip", "no-key", "bad-proof", "",
                                                    std::string_view("a verdict longer than twenty-three bytes")};
    for (const auto& extra : extras) {
        for (const auto& old : earlier) {
            const Bytes raw = envelope(old, extra, view(wire));
            sov::frames::Envelope env;
            REQUIRE_FALSE(sov::frames::parse_envelope(view(raw), env));
            for (std::string_view vrd : verdicts)
                for (auto why : {std::optional<std::string_view>(), std::optional<std::string_view>("sig: wrong key")}) {
                    INFO("extra keys " << extra.size() << ", earlier vrd " << (old ? *old : "(none)") << ", new "
                                       << vrd << (why ? " with why" : ""));
                    Bytes spliced;
                    spliced.push_back(0xee);  // appends: earlier bytes untouched
                    CHECK(sov::frames::append_record_with_verdict(spliced, env, vrd, why));
                    CHECK(spliced.front() == 0xee);
                    CHECK(Bytes(spliced.begin() + 1, spliced.end()) == reencoded_with_verdict(env, vrd, why));
                    sov::frames::Envelope back;
                    REQUIRE_FALSE(sov::frames::parse_record(ByteView(spliced).subspan(1), back));
                    CHECK(back.vrd == std::optional<std::string_view>(vrd));
                }
        }
    }
}

TEST_CASE("spliced verdicts on real frames equal the re-encoded ones", "[verify][frames][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    for (std::size_t i = 0; i < c.msgs.size(); ++i) {
        for (std::optional<std::string_view> old : {std::optional<std::string_view>(), std::optional<std::string_view>("ok")}) {
            Bytes rec;
            sov::frames::append_record(rec, "bsky.network", old, std::int64_t(i) * 1000, view(c.msgs[i]));
            sov::frames::Envelope env;
            REQUIRE_FALSE(sov::frames::parse_record(view(rec), env));
            for (std::string_view vrd : {"ok", "no-key", "bad-sig"}) {
                Bytes spliced;
                sov::frames::append_record_with_verdict(spliced, env, vrd);
                CHECK(spliced == reencoded_with_verdict(env, vrd));
            }
        }
    }
}

// ---- which key: (DID, recv) → key (docs/design.md §3 "Which key") ----------------------------------

namespace {

// A DID whose key was rotated at `rotated_us`: `before` until then, `after` from then on (and
// for recv = 0, "now"). Records the times it was asked about.
class RotatedKeys final : public verify::KeySource {
public:
    RotatedKeys(sov::crypto::PublicKey before, sov::crypto::PublicKey after, std::int64_t rotated_us)
        : before_(before), after_(after), rotated_(rotated_us) {}
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view, std::int64_t recv_us) const override {
        asked.push_back(recv_us);
        return recv_us > 0 && recv_us < rotated_ ? before_ : after_;
    }
    mutable std::vector<std::int64_t> asked;

private:
    sov::crypto::PublicKey before_, after_;
    std::int64_t rotated_;
};

}  // namespace

TEST_CASE("the key is the one valid at recv, with 5 minutes of grace after a rotation", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    StoreKeys keys(c.keys);
    const Bytes& w = c.msgs.at(commits_of(c).at(0));
    Msg msg(w);
    const std::optional<sov::crypto::PublicKey> real = keys.signing_key(msg.m.did, 0);
    REQUIRE(real);
    const auto other = *sov::crypto::public_key_of(sov::crypto::generate_from_seed(sov::crypto::Curve::k256, {}));
    const std::int64_t t = 1'750'000'000'000'000;  // the rotation, µs
    const std::int64_t minute = 60'000'000;
    auto at = [&](const verify::KeySource& ks, std::int64_t recv) {
        verify::Verifier v(ks);
        return v.verify(view(w), recv).verdict;
    };
    SECTION("the key the DID had at recv is used") {
        RotatedKeys signed_before(*real, other, t);  // the signer's key was replaced at t
        CHECK(at(signed_before, t - minute) == Verdict::ok);
        CHECK(signed_before.asked == std::vector<std::int64_t>{t - minute});
        RotatedKeys signed_after(other, *real, t);  // the signer's key is the new one
        CHECK(at(signed_after, t + minute) == Verdict::ok);
        CHECK(at(signed_after, 0) == Verdict::ok);  // 0 = current
        CHECK(at(signed_after, t - 10 * minute) == Verdict::bad_sig);
    }
    SECTION("a key replaced less than 5 minutes before recv still verifies") {
        RotatedKeys keys_rotated(*real, other, t);
        CHECK(at(keys_rotated, t + 4 * minute) == Verdict::ok);
        CHECK(keys_rotated.asked == std::vector<std::int64_t>{t + 4 * minute, t + 4 * minute - verify::kRotationGraceUs});
        CHECK(at(keys_rotated, t + 6 * minute) == Verdict::bad_sig);
        CHECK(at(keys_rotated, 0) == Verdict::bad_sig);  // no time: the current key only
    }
    SECTION("StoreKeys has no history: the current key at any time") {
        verify::StoreKeys store_keys(c.keys);
        CHECK(at(store_keys, 0) == Verdict::ok);
        CHECK(at(store_keys, t) == Verdict::ok);
        CHECK(at(store_keys, 1) == Verdict::ok);
        CHECK(store_keys.signing_key(msg.m.did, t) == real);
        CHECK_FALSE(store_keys.signing_key("did:plc:unknownunknownunknown", t));
    }
}

// ---- wrong-pds: the src of a commit against the DID's PDS (docs/design.md §3) ----------------------

TEST_CASE("source_of_endpoint: a PDS URL as a frame's src label", "[verify]") {
    using verify::source_of_endpoint;
    CHECK(source_of_endpoint("https://pds.example.com") == "pds.example.com");
    CHECK(source_of_endpoint("https://Pds.Example.COM./") == "pds.example.com");
    CHECK(source_of_endpoint("HTTPS://pds.example.com:443/xrpc") == "pds.example.com");
    CHECK(source_of_endpoint("https://pds.example.com:8443") == "pds.example.com:8443");
    CHECK(source_of_endpoint("http://127.0.0.1:2583") == "127.0.0.1:2583");
    CHECK(source_of_endpoint("http://localhost:80") == "localhost");
    CHECK(source_of_endpoint("http://[::1]:2583/") == "[::1]:2583");
    CHECK(source_of_endpoint("https://[2001:db8::1]") == "[2001:db8::1]");
    CHECK_FALSE(source_of_endpoint("pds.example.com"));
    CHECK_FALSE(source_of_endpoint("wss://pds.example.com"));
    CHECK_FALSE(source_of_endpoint("https://"));
    CHECK_FALSE(source_of_endpoint("https://host:0"));
    CHECK_FALSE(source_of_endpoint("https://host:99999"));
    CHECK_FALSE(source_of_endpoint("https://host:12a"));
    CHECK_FALSE(source_of_endpoint("https://user@host"));
    CHECK_FALSE(source_of_endpoint("https://[::1"));
}

namespace {
// The corpus keys, plus one PDS source for every DID.
class PdsKeys final : public verify::KeySource {
public:
    PdsKeys(const sov::KeyStore& store, std::optional<std::string> pds) : keys_(store), pds_(std::move(pds)) {}
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view did, std::int64_t recv_us) const override {
        return keys_.signing_key(did, recv_us);
    }
    std::optional<std::string> pds_source(std::string_view) const override { return pds_; }

private:
    verify::StoreKeys keys_;
    std::optional<std::string> pds_;
};
}  // namespace

TEST_CASE("Engine check_pds: a commit from another host than its DID's PDS is wrong-pds", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    const Bytes& w = c.msgs.at(commits_of(c).at(0));
    auto run = [&](const verify::KeySource& ks, bool check, std::string_view src) {
        verify::Engine e(ks, 1, false, 100, check);
        verify::FrameIn in{view(w), 0, src};
        verify::Outcome out;
        e.run({&in, 1}, {&out, 1});
        return out;
    };
    PdsKeys at_pds(c.keys, "pds.example.com"), unknown(c.keys, std::nullopt);
    CHECK(run(at_pds, true, "pds.example.com").verdict == Verdict::ok);
    verify::Outcome o = run(at_pds, true, "bsky.network");
    CHECK(o.verdict == Verdict::wrong_pds);
    CHECK(o.detail.find("bsky.network") != std::string::npos);
    CHECK(o.detail.find("pds.example.com") != std::string::npos);
    CHECK(run(at_pds, false, "bsky.network").verdict == Verdict::ok);  // off unless asked
    CHECK(run(unknown, true, "bsky.network").verdict == Verdict::ok);  // PDS unknown: not checked
    // A frame that fails for another reason keeps that verdict.
    Bytes bad = w;
    bad[bad.size() - 5] ^= 1;
    verify::Engine e(at_pds, 1, false, 100, true);
    verify::FrameIn in{view(bad), 0, "bsky.network"};
    verify::Outcome out;
    e.run({&in, 1}, {&out, 1});
    CHECK(out.verdict != Verdict::wrong_pds);
    CHECK_FALSE(verify::passes(out.verdict));
}

// ---- the DID cache as the verifier's KeySource (cbor-verify --cache) -------------------------------

TEST_CASE("CacheKeys: a commit verifies with the key its DID had at recv, 5 minutes of grace", "[verify][corpus]") {
    REQUIRE_CORPUS(dir);
    const Corpus& c = *corpus_data(dir);
    StoreKeys doc_keys(c.keys);
    const Bytes& w = c.msgs.at(commits_of(c).at(0));
    Msg msg(w);
    const std::string did(msg.m.did);
    const auto real = doc_keys.signing_key(did, 0);
    REQUIRE(real);
    const auto other = *sov::crypto::public_key_of(sov::crypto::generate_from_seed(sov::crypto::Curve::k256, {}));
    const std::int64_t t0 = 1'700'000'000'000'000, t1 = 1'750'000'000'000'000;  // µs, whole ms
    const std::int64_t minute = 60'000'000;
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("sov-verify-cache-" + std::to_string(::getpid()))).string();
    std::filesystem::remove(path);
    auto verdict_at = [&](const std::vector<sov::didcache::KeyEpoch>& history, std::int64_t recv, bool tomb = false) {
        std::string err;
        {
            sov::didcache::Writer wr;
            REQUIRE(sov::didcache::Writer::open(path, wr, err) == sov::Errc::ok);
            sov::didcache::Record r;
            r.did = did;
            r.history = history;
            r.tombstoned = tomb;
            REQUIRE(wr.put(r, err) == sov::Errc::ok);
            REQUIRE(wr.sync(1, err) == sov::Errc::ok);
        }
        sov::didcache::Reader rd;
        REQUIRE(sov::didcache::Reader::open(path, rd, err) == sov::Errc::ok);
        sov::didcache::CacheKeys keys(rd);
        verify::Verifier v(keys);
        return v.verify(view(w), recv).verdict;
    };
    SECTION("signed before a rotation: ok until 5 minutes after it, bad-sig later") {
        std::vector<sov::didcache::KeyEpoch> h{{t0, real}, {t1, other}};
        CHECK(verdict_at(h, t1 - minute) == Verdict::ok);
        CHECK(verdict_at(h, t1 + 4 * minute) == Verdict::ok);
        CHECK(verdict_at(h, t1 + 6 * minute) == Verdict::bad_sig);
        CHECK(verdict_at(h, 0) == Verdict::bad_sig);  // recv unknown: the current key
    }
    SECTION("signed after a rotation (a PDS migration): ok from the rotation on") {
        std::vector<sov::didcache::KeyEpoch> h{{t0, other}, {t1, real}};
        CHECK(verdict_at(h, t1 + minute) == Verdict::ok);
        CHECK(verdict_at(h, 0) == Verdict::ok);
        CHECK(verdict_at(h, t1 - minute) == Verdict::bad_sig);
    }
    SECTION("tombstoned: no-key after the tombstone, the old key before it") {
        std::vector<sov::didcache::KeyEpoch> h{{t0, real}, {t1, std::nullopt}};
        CHECK(verdict_at(h, t1 + 10 * minute, true) == Verdict::no_key);
        CHECK(verdict_at(h, t1 - minute, true) == Verdict::ok);
    }
    SECTION("a DID the cache does not hold is no-key") {
        std::string err;
        std::filesystem::remove(path);
        {
            sov::didcache::Writer wr;
            REQUIRE(sov::didcache::Writer::open(path, wr, err) == sov::Errc::ok);
        }
        sov::didcache::Reader rd;
        REQUIRE(sov::didcache::Reader::open(path, rd, err) == sov::Errc::ok);
        sov::didcache::CacheKeys keys(rd);
        verify::Verifier v(keys);
        CHECK(v.verify(view(w), t1).verdict == Verdict::no_key);
    }
    std::filesystem::remove(path);
}
