#include "sovereign/verify.h"

#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/syntax.h"

#include <algorithm>
#include <cctype>
#include <cstring>


namespace sov::verify {

namespace {
constexpr std::string_view kNames[kVerdictCount] = {
    "ok", "ok-gap", "skip", "malformed", "too-big", "bad-car", "bad-cid", "bad-commit",
    "no-key", "bad-sig", "bad-proof", "stale-rev", "future-rev", "bad-seq", "inactive", "wrong-pds",
};

Outcome bad(Verdict v, std::string detail) { return Outcome{v, std::move(detail)}; }

std::string at(std::string_view what, Errc e) {
    std::string s(what);
    s += ": ";
    s += to_string(e);
    return s;
}
}  // namespace

std::string_view to_string(Verdict v) noexcept { return kNames[std::size_t(v)]; }

std::optional<crypto::PublicKey> StoreKeys::signing_key(std::string_view did, std::int64_t /*recv_us*/) const {
    const DidDoc* d = store_.find(did);
    if (!d) return std::nullopt;
    return d->signing_key;
}

PreparedKeys::PreparedKeys() = default;
PreparedKeys::~PreparedKeys() = default;

std::size_t PreparedKeys::Hash::operator()(const crypto::PublicKey& k) const noexcept {
    std::uint64_t x;  // x-coordinate bytes: already uniformly distributed
    std::memcpy(&x, k.compressed.data() + 1, 8);
    return std::size_t(x ^ (std::uint64_t(k.compressed[0]) << 8) ^ std::uint64_t(k.curve));
}

crypto::PreparedKey* PreparedKeys::get(const crypto::PublicKey& key) {
    constexpr std::size_t kMaxKeys = 65536;
    if (auto it = map_.find(key); it != map_.end()) return &it->second;
    crypto::PreparedKey prepared;
    if (prepared.reset(key) != Errc::ok) return nullptr;
    if (map_.size() >= kMaxKeys) map_.clear();
    return &map_.emplace(key, std::move(prepared)).first->second;
}

std::optional<std::string> source_of_endpoint(std::string_view url) {
    std::string_view rest;
    unsigned default_port;
    auto starts_ci = [&](std::string_view prefix) {
        if (url.size() < prefix.size()) return false;
        for (std::size_t i = 0; i < prefix.size(); ++i)
            if (char(std::tolower(static_cast<unsigned char>(url[i]))) != prefix[i]) return false;
        return true;
    };
    if (starts_ci("https://")) rest = url.substr(8), default_port = 443;
    else if (starts_ci("http://")) rest = url.substr(7), default_port = 80;
    else return std::nullopt;
    rest = rest.substr(0, std::min(rest.find('/'), std::min(rest.find('?'), rest.find('#'))));
    if (rest.find('@') != std::string_view::npos) return std::nullopt;  // userinfo: not a PDS endpoint
    std::string_view host = rest, port;
    if (!rest.empty() && rest[0] == '[') {  // IPv6 literal
        std::size_t close = rest.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = rest.substr(0, close + 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') return std::nullopt;
            port = rest.substr(close + 2);
        }
    } else if (std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    }
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    if (host.empty()) return std::nullopt;
    std::string out;
    for (char c : host) out += char(std::tolower(static_cast<unsigned char>(c)));
    if (!port.empty()) {
        unsigned p = 0;
        for (char c : port) {
            if (c < '0' || c > '9' || p > 65535) return std::nullopt;
            p = p * 10 + unsigned(c - '0');
        }
        if (p == 0 || p > 65535) return std::nullopt;
        if (p != default_port) out += ":" + std::to_string(p);
    }
    return out;
}

std::optional<Verdict> verdict_from_string(std::string_view s) noexcept {
    for (std::size_t i = 0; i < kVerdictCount; ++i)
        if (kNames[i] == s) return Verdict(i);
    return std::nullopt;
}

namespace {

// SHA-256 of the unsigned form of a map block: a new head for n − 1 entries ‖ the entries
// before [sig_start, sig_end) ‖ the entries after it. Commit blocks are small (≈ 150–250
// bytes), so one contiguous copy on the stack is cheapest.
std::array<std::uint8_t, 32> digest_without(ByteView block, std::uint64_t n, const std::uint8_t* body,
                                            const std::uint8_t* sig_start, const std::uint8_t* sig_end) {
    const std::uint8_t* end = block.data() + block.size();
    std::size_t len = 9 + std::size_t(sig_start - body) + std::size_t(end - sig_end);
    std::uint8_t stack_buf[512];
    std::vector<std::uint8_t> heap;
    std::uint8_t* buf = stack_buf;
    if (len > sizeof stack_buf) {
        heap.resize(len);
        buf = heap.data();
    }
    std::size_t pos = cbor::encode_head(buf, 5, n - 1);
    std::memcpy(buf + pos, body, std::size_t(sig_start - body));
    pos += std::size_t(sig_start - body);
    std::memcpy(buf + pos, sig_end, std::size_t(end - sig_end));
    pos += std::size_t(end - sig_end);
    return crypto::sha256({buf, pos});
}

}  // namespace

bool unsigned_commit_digest(ByteView block, std::array<std::uint8_t, 32>& digest, ByteView& sig) {
    cbor::Value m = cbor::Value::of(block);
    std::uint64_t n = m.count();
    cbor::MapIter it = m.map();
    const std::uint8_t* body = it.position();
    const std::uint8_t* sig_start = nullptr;
    const std::uint8_t* sig_end = nullptr;
    std::string_view k;
    cbor::Value v;
    while (true) {
        const std::uint8_t* entry = it.position();
        if (!it.next(k, v)) break;
        if (k == "sig") {
            if (!v.is(cbor::Kind::bytes)) return false;
            sig = v.as_bytes();
            sig_start = entry;
            sig_end = it.position();
        }
    }
    if (!sig_start) return false;
    digest = digest_without(block, n, body, sig_start, sig_end);
    return true;
}

namespace {

// A commit block's entries, found in one walk (canonical maps have no duplicate keys, so
// this is what six lookups by key would give), with where its `sig` entry sits.
struct CommitView {
    cbor::Value did, rev, sig, data, prev, version;
    std::uint64_t count = 0;
    const std::uint8_t* body = nullptr;
    const std::uint8_t* sig_start = nullptr;
    const std::uint8_t* sig_end = nullptr;
};

// Everything about a commit block but its signature (docs/protocol.md §5, §6 step 3).
Outcome check_commit_fields(ByteView block, std::string_view did, std::string_view rev, CommitView& cv) {
    using cbor::Kind;
    if (Located v = cbor::validate(block)) return bad(Verdict::bad_commit, at("commit block", v.errc));
    cbor::Value c = cbor::Value::of(block);
    if (!c.is(Kind::map)) return bad(Verdict::bad_commit, "commit block is not a map");
    cv.count = c.count();
    cbor::MapIter it = c.map();
    cv.body = it.position();
    std::string_view k;
    cbor::Value val;
    for (;;) {
        const std::uint8_t* entry = it.position();
        if (!it.next(k, val)) break;
        if (k == "did") cv.did = val;
        else if (k == "rev") cv.rev = val;
        else if (k == "sig") {
            cv.sig = val;
            cv.sig_start = entry;
            cv.sig_end = it.position();
        } else if (k == "data") cv.data = val;
        else if (k == "prev") cv.prev = val;
        else if (k == "version") cv.version = val;
    }
    const cbor::Value &v_did = cv.did, &v_rev = cv.rev, &v_sig = cv.sig, &v_data = cv.data, &v_prev = cv.prev,
                      &v_version = cv.version;
    if (!v_did.is(Kind::text) || !syntax::is_did(v_did.as_text())) return bad(Verdict::bad_commit, "commit.did missing or invalid");
    if (!v_version.is(Kind::uint) || v_version.as_int() != 3) return bad(Verdict::bad_commit, "commit.version is not 3");
    if (!v_data.is(Kind::link) || !cid::is_blessed(v_data.as_link())) return bad(Verdict::bad_commit, "commit.data missing or not a blessed CID");
    if (!v_rev.is(Kind::text) || !syntax::is_tid(v_rev.as_text())) return bad(Verdict::bad_commit, "commit.rev missing or not a TID");
    if (!v_prev.valid()) return bad(Verdict::bad_commit, "commit.prev missing");
    if (!v_prev.is(Kind::null) && !(v_prev.is(Kind::link) && cid::is_blessed(v_prev.as_link())))
        return bad(Verdict::bad_commit, "commit.prev neither null nor a blessed CID");
    if (!v_sig.is(Kind::bytes) || v_sig.as_bytes().empty()) return bad(Verdict::bad_commit, "commit.sig missing or empty");
    if (v_did.as_text() != did) return bad(Verdict::bad_commit, "commit.did differs from the message's DID");
    if (v_rev.as_text() != rev) return bad(Verdict::bad_commit, "commit.rev differs from the message's rev");
    return {};
}

Outcome no_key(std::string_view did) { return bad(Verdict::no_key, "no signing key known for " + std::string(did)); }
Outcome bad_point(std::string_view did) {
    return bad(Verdict::no_key, "the signing key of " + std::string(did) + " is not a valid point");
}

}  // namespace

Outcome check_commit_block(ByteView block, std::string_view did, std::string_view rev,
                           const std::optional<crypto::PublicKey>& key) {
    CommitView cv;
    Outcome o = check_commit_fields(block, did, rev, cv);
    if (o.verdict != Verdict::ok) return o;
    if (!key) return no_key(did);
    crypto::PreparedKey prepared;
    if (prepared.reset(*key) != Errc::ok) return bad_point(did);
    const std::array<std::uint8_t, 32> digest = digest_without(block, cv.count, cv.body, cv.sig_start, cv.sig_end);
    Errc e = prepared.verify(digest.data(), cv.sig.as_bytes());
    if (e != Errc::ok) return bad(Verdict::bad_sig, std::string(to_string(e)));
    return {};
}

Outcome Verifier::check_commit(ByteView block) {
    CommitView cv;
    Outcome o = check_commit_fields(block, msg_.did, msg_.rev, cv);
    if (o.verdict != Verdict::ok) return o;
    std::optional<crypto::PublicKey> key = keys_.signing_key(msg_.did, recv_);
    if (!key) return no_key(msg_.did);
    crypto::PreparedKey* prepared = keys_cache_.get(*key);
    if (!prepared) return bad_point(msg_.did);
    const std::array<std::uint8_t, 32> digest = digest_without(block, cv.count, cv.body, cv.sig_start, cv.sig_end);
    const ByteView sig = cv.sig.as_bytes();
    data_ = cv.data.as_link();
    Errc e = prepared->verify(digest.data(), sig);
    if (e == Errc::sig_invalid && recv_ > kRotationGraceUs) {
        // docs/design.md §3: the key that was current 5 minutes earlier, if it was another one, is
        // still accepted (a PDS may sign just before its rotation reaches the directory).
        std::optional<crypto::PublicKey> earlier = keys_.signing_key(msg_.did, recv_ - kRotationGraceUs);
        if (earlier && !(*earlier == *key))
            if (crypto::PreparedKey* p = keys_cache_.get(*earlier); p && p->verify(digest.data(), sig) == Errc::ok) e = Errc::ok;
    }
    if (e != Errc::ok) return bad(Verdict::bad_sig, std::string(to_string(e)));
    return {};
}

Outcome Verifier::load_car(ByteView car_bytes, ByteView commit, ByteView& commit_cid, ByteView& commit_block) {
    car::Reader r;
    Located e = r.open(car_bytes);
    if (e) return bad(Verdict::bad_car, "blocks offset " + std::to_string(e.offset) + ": " + std::string(to_string(e.errc)));
    commit_cid = commit.empty() ? r.root() : commit;
    if (!cid::equal(r.root(), commit_cid)) return bad(Verdict::bad_car, "roots[0] is not the commit CID");
    blocks_.clear();
    car::Section s;
    while (r.next(s)) {
        if (!car::verify_section(s))
            return bad(Verdict::bad_cid, "block " + cid::to_string(s.cid) + " at blocks offset " + std::to_string(s.offset) +
                                             " does not hash to its CID");
        blocks_.add(s.cid, s.block);
    }
    if (r.error()) return bad(Verdict::bad_car, "blocks offset " + std::to_string(r.error().offset) + ": " +
                                                     std::string(to_string(r.error().errc)));
    const ByteView* b = blocks_.find(commit_cid);
    if (!b) return bad(Verdict::bad_car, "commit block missing from blocks");
    commit_block = *b;  // validated by check_commit_block
    return {};
}

Outcome Verifier::verify_commit() {
    ByteView ccid, block;
    Outcome o = load_car(msg_.blocks, msg_.commit, ccid, block);
    if (o.verdict != Verdict::ok) return o;
    o = check_commit(block);  // sets data_ (commit.data) once the fields check out
    if (o.verdict != Verdict::ok) {
        data_ = {};  // only a signed commit's data is reported
        return o;
    }
    commit_ = ccid;
    return check_proof();
}

Outcome Verifier::check_proof() {
    // docs/protocol.md §6 steps 6–10. Inversion needs prevData: a repository's first commit
    // (since = null) inverts to the empty tree; legacy (pre-Sync 1.1) commits lack it and
    // pass unproven only with --lenient, as do legacy ops without `prev`.
    static const cid::Cid kEmptyTree = [] {
        const std::uint8_t empty[] = {0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6};  // {e: [], l: null}
        return cid::compute(cid::kCodecDagCbor, ByteView{empty, sizeof empty});
    }();
    ByteView prev = msg_.prev_data;
    if (prev.empty()) {
        if (!msg_.since) prev = kEmptyTree.bytes();
        else if (lenient_) return {};
        else return bad(Verdict::bad_proof, "no prevData: commit cannot be inverted (legacy commit? --lenient accepts)");
    }
    proof_detail_.clear();
    Errc e = inverter_.invert(blocks_, data_, msg_.ops, prev, &proof_detail_, true);
    if (e == Errc::ok) return {};
    if (lenient_ && e == mst::kErrNotInvertible) return {};
    return bad(Verdict::bad_proof, proof_detail_.empty() ? std::string(to_string(e)) : proof_detail_);
}

Outcome Verifier::verify_sync() {
    ByteView ccid, block;
    Outcome o = load_car(msg_.blocks, {}, ccid, block);
    if (o.verdict != Verdict::ok) return o;
    o = check_commit(block);
    if (o.verdict != Verdict::ok) data_ = {};  // only a signed commit's data is reported
    else commit_ = ccid;
    return o;
}

Outcome Verifier::verify(ByteView wire, std::int64_t recv, Facts& f) {
    Outcome o = verify(wire, recv);
    f = Facts{};
    f.type = msg_.type;
    f.parsed = o.verdict != Verdict::malformed && o.verdict != Verdict::too_big;
    if (!f.parsed) return o;
    f.seq = msg_.seq;
    f.did = msg_.did;
    f.rev = msg_.rev;
    f.since = msg_.since;
    f.prev_data = msg_.prev_data;
    f.data = data_;
    f.commit = commit_;
    f.active = msg_.active;
    return o;
}

Outcome Verifier::verify(ByteView wire, std::int64_t recv) {
    data_ = {};
    commit_ = {};
    recv_ = recv;
    msg::Problem p = msg::parse(wire, msg_);
    if (p) {
        std::string d(p.field.empty() ? "message" : p.field);
        d += " (wire offset " + std::to_string(p.offset) + "): ";
        d += to_string(p.errc);
        return bad(p.too_big ? Verdict::too_big : Verdict::malformed, std::move(d));
    }
    switch (msg_.type) {
    case msg::Type::commit: return verify_commit();
    case msg::Type::sync: return verify_sync();
    case msg::Type::identity:
    case msg::Type::account: return {};  // unsigned by design: fields checked, nothing more applies
    default: return Outcome{Verdict::skip, {}};
    }
}

}  // namespace sov::verify
