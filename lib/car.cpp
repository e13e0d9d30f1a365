#include "sovereign/car.h"

#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/varint.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

namespace sov::car {

Located Reader::open(ByteView car) noexcept {
    car_ = car;
    std::uint64_t hlen;
    std::size_t n;
    Errc e = varint::decode(car, hlen, n);
    if (e != Errc::ok) return err_ = {e, 0};
    if (hlen == 0) return err_ = {Errc::car_bad_header, 0};
    if (hlen > car.size() - n) return err_ = {Errc::truncated, 0};
    ByteView hdr = car.subspan(n, std::size_t(hlen));
    Located v = cbor::validate(hdr);
    if (v) return err_ = {v.errc, n + v.offset};
    cbor::Value h = cbor::Value::of(hdr);
    if (!h.is(cbor::Kind::map)) return err_ = {Errc::car_bad_header, n};
    cbor::Value version = h.get("version");
    if (!version.is(cbor::Kind::uint) || version.as_int() != 1) return err_ = {Errc::car_bad_header, n};
    cbor::Value roots = h.get("roots");
    if (!roots.is(cbor::Kind::array)) return err_ = {Errc::car_bad_header, n};
    cbor::ArrayIter it = roots.array();
    cbor::Value r;
    root_count_ = 0;
    while (it.next(r)) {
        if (!r.is(cbor::Kind::link)) return err_ = {Errc::car_bad_header, n};
        if (root_count_++ == 0) root0_ = r.as_link();
    }
    if (root_count_ == 0) return err_ = {Errc::car_no_roots, n};
    pos_ = body_ = n + std::size_t(hlen);
    return err_ = {};
}

bool Reader::next(Section& s) noexcept {
    if (err_ || pos_ >= car_.size()) return false;
    std::uint64_t slen;
    std::size_t n;
    Errc e = varint::decode(car_.subspan(pos_), slen, n);
    if (e != Errc::ok) { err_ = {e, pos_}; return false; }
    if (slen > car_.size() - pos_ - n) { err_ = {Errc::truncated, pos_}; return false; }
    ByteView sec = car_.subspan(pos_ + n, std::size_t(slen));
    // The CID's own length: version, codec, hash code, digest length varints, then digest.
    std::size_t p = 0;
    std::uint64_t v[4];
    for (int i = 0; i < 4; ++i) {
        std::size_t m;
        if (varint::decode(sec.subspan(p), v[i], m) != Errc::ok) { err_ = {Errc::car_bad_section, pos_}; return false; }
        p += m;
    }
    if (v[0] != 1) { err_ = {Errc::cid_bad_version, pos_}; return false; }
    if (v[3] > sec.size() - p || p + v[3] > cid::kMaxLen) { err_ = {Errc::car_bad_section, pos_}; return false; }
    p += std::size_t(v[3]);
    s.cid = sec.first(p);
    s.block = sec.subspan(p);
    s.offset = pos_;
    pos_ += n + std::size_t(slen);
    return true;
}

bool verify_section(const Section& s) noexcept { return cid::matches(s.cid, s.block); }

namespace {
// Every byte of the CID, keyed with a per-process random seed. CIDs that differ only in their
// prefix (the same digest under many codecs) or whose digest the sender chooses (identity
// multihash) must not collide by construction: that once made 48,000 blocks cost 10 s.
__extension__ typedef unsigned __int128 u128;
std::uint64_t fold(std::uint64_t a, std::uint64_t b) noexcept {
    u128 r = static_cast<u128>(a) * b;
    return std::uint64_t(r) ^ std::uint64_t(r >> 64);
}
const std::array<std::uint64_t, 2> kSeed = [] {
    std::random_device rd;
    return std::array<std::uint64_t, 2>{(std::uint64_t(rd()) << 32) ^ rd(), (std::uint64_t(rd()) << 32) ^ rd() ^ 1};
}();
inline std::size_t hash_cid(ByteView cid) noexcept {
    std::uint64_t h = kSeed[0] ^ cid.size();
    std::size_t i = 0;
    for (; i + 8 <= cid.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, cid.data() + i, 8);
        h = fold(h ^ w, kSeed[1] ^ 0x9e3779b97f4a7c15ULL);
    }
    if (i < cid.size()) {
        std::uint64_t w = 0;
        std::memcpy(&w, cid.data() + i, cid.size() - i);
        h = fold(h ^ w, kSeed[1] ^ 0x9e3779b97f4a7c15ULL);
    }
    return std::size_t(fold(h, 0xbf58476d1ce4e5b9ULL));
}
}  // namespace

void BlockMap::clear() noexcept {
    for (auto& s : slots_) s = Slot{};
    count_ = 0;
}

void BlockMap::grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    count_ = 0;
    for (auto& s : old)
        if (!s.cid.empty()) add(s.cid, s.block);
}

void BlockMap::add(ByteView cid, ByteView block) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash_cid(cid) & mask;; i = (i + 1) & mask) {
        Slot& s = slots_[i];
        if (s.cid.empty()) {
            s = Slot{cid, block};
            ++count_;
            return;
        }
        if (cid::equal(s.cid, cid)) return;
    }
}

std::size_t BlockMap::longest_probe() const noexcept {
    std::size_t longest = 0, mask = slots_.size() - 1;
    for (std::size_t i = 0; i < slots_.size(); ++i)
        if (!slots_[i].cid.empty()) longest = std::max(longest, ((i - hash_cid(slots_[i].cid)) & mask) + 1);
    return longest;
}

const ByteView* BlockMap::find(ByteView cid) const noexcept {
    if (slots_.empty() || cid.empty()) return nullptr;
    std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash_cid(cid) & mask;; i = (i + 1) & mask) {
        const Slot& s = slots_[i];
        if (s.cid.empty()) return nullptr;
        if (cid::equal(s.cid, cid)) return &s.block;
    }
}

}  // namespace sov::car

// ---- writing ---------------------------------------------------------------------------

namespace sov::car {

void append_header(std::vector<std::uint8_t>& car, ByteView root) {
    std::vector<std::uint8_t> h;
    cbor::Writer w(h);
    w.map(2);
    w.text("roots");
    w.array(1);
    w.link(root);
    w.text("version");
    w.uint(1);
    varint::append(h.size(), car);
    car.insert(car.end(), h.begin(), h.end());
}

void append_section(std::vector<std::uint8_t>& car, ByteView cid, ByteView block) {
    varint::append(cid.size() + block.size(), car);
    car.insert(car.end(), cid.begin(), cid.end());
    car.insert(car.end(), block.begin(), block.end());
}

}  // namespace sov::car
