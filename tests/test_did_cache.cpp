// The memory-mapped DID cache (sovereign/did_cache.h; docs/format-did-cache.md): round trips
// of every kind of record, key_at at epoch boundaries, replacement, growth followed by an open
// reader, the writer lock and the dirty flag across a killed writer, corrupt and truncated files
// (the right Errc with an offset, never a crash), record_of over a corpus audit log, and the
// cross-process hammer: one writer updating and growing the cache under three readers.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "internal/seqlock.h"
#include "sovereign/did_cache.h"
#include "sovereign/file.h"
#include "sovereign/multibase.h"
#include "sovereign/plc.h"
#include "test_util.h"

using sov::Errc;
using namespace sov::didcache;
namespace crypto = sov::crypto;
namespace fs = std::filesystem;

namespace {

// A fresh directory for one test case, removed at its end.
struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() / ("sov-didcache-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~TempDir() { fs::remove_all(dir); }
    std::string file() const { return (dir / std::string(kFileName)).string(); }
    static int& counter() {
        static int n = 0;
        return n;
    }
};

crypto::PublicKey pub(crypto::Curve c, std::uint8_t n) {
    std::array<std::uint8_t, 32> seed{};
    seed[0] = n;
    seed[1] = 0x5d;
    return *crypto::public_key_of(crypto::generate_from_seed(c, seed));
}

// "did:plc:" + 24 base32 characters derived from n.
std::string plc(std::uint64_t n) {
    std::uint8_t b[8];
    std::memcpy(b, &n, 8);
    const auto d = crypto::sha256(sov::ByteView(b, 8));
    std::string s;
    sov::multibase::base32_encode(sov::ByteView(d.data(), 15), s);
    return "did:plc:" + s;
}

constexpr std::int64_t kMs = 1000;
constexpr std::int64_t kT0 = 1'700'000'000'000 * kMs;  // µs, a whole ms

Record full_record(const std::string& did) {
    Record r;
    r.did = did;
    r.pds = "https://pds.example.com";
    r.handle = "alice.example.com";
    r.history = {{kT0, pub(crypto::Curve::k256, 1)},
                 {kT0 + 5000 * kMs, pub(crypto::Curve::p256, 2)},
                 {kT0 + 9000 * kMs, pub(crypto::Curve::k256, 3)}};
    return r;
}

std::vector<std::uint8_t> slurp(const std::string& p) { return testutil::read_file(p); }

void spit(const std::string& p, const std::vector<std::uint8_t>& b) {
    std::string err;
    REQUIRE(sov::file::write_file(p, b, err) == Errc::ok);
}

// Writes a small synced cache with a plc and a web record and returns its bytes.
std::vector<std::uint8_t> small_cache(const TempDir& t) {
    Writer w;
    std::string err;
    REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
    REQUIRE(w.put(full_record(plc(1)), err) == Errc::ok);
    Record web = full_record("did:web:example.com");
    web.pds = "https://other.example";
    REQUIRE(w.put(web, err) == Errc::ok);
    REQUIRE(w.sync(7, err) == Errc::ok);
    return slurp(t.file());
}

// The slot index holding `did` in `file` (a byte copy), found by its did:plc id bytes.
std::size_t slot_of(const std::vector<std::uint8_t>& file, const std::string& did) {
    std::string b32 = did.substr(8);
    std::vector<std::uint8_t> id;
    REQUIRE(sov::multibase::base32_decode(b32, id) == Errc::ok);
    std::uint64_t slots = 0;
    std::memcpy(&slots, file.data() + 24, 8);
    for (std::size_t i = 0; i < slots; ++i) {
        const std::uint8_t* s = file.data() + kHeaderBytes + i * kSlotBytes;
        if ((s[4] & 1) && std::memcmp(s + 6, id.data(), 15) == 0) return i;
    }
    FAIL("slot not found");
    return 0;
}

Errc check(const std::vector<std::uint8_t>& b, std::string& err) {
    // check_file reads through an 8-aligned copy like a mapping; also try a misaligned one.
    std::vector<std::uint8_t> shifted(b.size() + 1);
    std::memcpy(shifted.data() + 1, b.data(), b.size());
    std::string err2;
    const Errc e = check_file(b, err);
    CHECK(check_file(sov::ByteView(shifted.data() + 1, b.size()), err2) == e);
    return e;
}

}  // namespace

TEST_CASE("did cache: put/get round trips of plc and web DIDs, both curves, tombstones, no key", "[did_cache]") {
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
    CHECK(w.generation() == 1);
    CHECK(w.slots() == 1 << 16);
    std::vector<Record> recs;
    recs.push_back(full_record(plc(1)));
    Record web = full_record("did:web:alice.example.com");
    web.history = {{kT0, pub(crypto::Curve::p256, 4)}};
    recs.push_back(web);
    Record tomb = full_record(plc(2));
    tomb.tombstoned = true;
    tomb.history.push_back({kT0 + 20000 * kMs, std::nullopt});
    recs.push_back(tomb);
    Record nokey;
    nokey.did = plc(3);
    recs.push_back(nokey);
    Record deact = full_record(plc(4));
    deact.deactivated = true;
    deact.pds.clear();
    recs.push_back(deact);
    for (const auto& r : recs) REQUIRE(w.put(r, err) == Errc::ok);
    CHECK(w.size() == recs.size());
    REQUIRE(w.sync(42, err) == Errc::ok);
    CHECK(w.applied() == 42);

    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    CHECK(rd.size() == recs.size());
    CHECK(rd.applied() == 42);
    for (const auto& r : recs) {
        INFO(r.did);
        auto got = rd.get(r.did);
        REQUIRE(got);
        CHECK(*got == r);
    }
    CHECK(rd.key_at(plc(1), 0) == pub(crypto::Curve::k256, 3));
    CHECK(rd.key_at("did:web:alice.example.com", 0) == pub(crypto::Curve::p256, 4));
    CHECK(rd.key_at("did:web:alice.example.com", kT0 - 1) == pub(crypto::Curve::p256, 4));
    CHECK_FALSE(rd.key_at(plc(2), 0));                   // tombstoned now
    CHECK(rd.key_at(plc(2), kT0 + 100) == pub(crypto::Curve::k256, 1));  // but not then
    CHECK_FALSE(rd.key_at(plc(3), 0));
    CHECK_FALSE(rd.key_at(plc(3), kT0));
    CHECK(rd.key_at(plc(4), 0) == pub(crypto::Curve::k256, 3));  // deactivated keeps its key
    CHECK_FALSE(rd.key_at(plc(5), 0));                   // unknown
    CHECK_FALSE(rd.get(plc(5)));
    CHECK_FALSE(rd.key_at("did:web:bob.example.com", 0));
    CHECK_FALSE(rd.key_at("did:key:zQ3sh", 0));          // not a DID the cache holds
    CHECK(rd.status() == Errc::ok);

    std::vector<Record> seen;
    REQUIRE(rd.for_each([&](const Record& r) { seen.push_back(r); }, err) == Errc::ok);
    CHECK(seen.size() == recs.size());
    for (const auto& r : recs) CHECK(std::find(seen.begin(), seen.end(), r) != seen.end());

    // The verifier's KeySource answers like key_at.
    CacheKeys keys(rd);
    CHECK(keys.signing_key(plc(1), kT0 + 6000 * kMs) == pub(crypto::Curve::p256, 2));

    Record bad;
    bad.did = "did:plc:short";
    CHECK(w.put(bad, err) == Errc::cache_bad_did);
    CHECK(err.find("did:plc:short") != std::string::npos);
    bad.did = "did:plc:abcdefghijklmnopqrstuvw1";  // '1' is not base32
    CHECK(w.put(bad, err) == Errc::cache_bad_did);
    bad.did = "did:key:zQ3shabc";
    CHECK(w.put(bad, err) == Errc::cache_bad_did);
    Record disorder = full_record(plc(6));
    std::swap(disorder.history[0], disorder.history[2]);
    CHECK(w.put(disorder, err) == Errc::bad_argument);
    CHECK(w.size() == recs.size());

    // Reopened by a new writer after the first closes: everything is there.
    w = Writer();
    Writer w2;
    REQUIRE(Writer::open(t.file(), w2, err) == Errc::ok);
    CHECK(w2.size() == recs.size());
    CHECK(w2.applied() == 42);
    CHECK(check(slurp(t.file()), err) == Errc::ok);
}

TEST_CASE("did cache: key_at at epoch boundaries", "[did_cache]") {
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
    const Record r = full_record(plc(1));
    REQUIRE(w.put(r, err) == Errc::ok);
    Record odd = full_record(plc(2));  // starts that are not whole milliseconds
    odd.history[1].valid_from_us += 1;
    odd.history[2].valid_from_us += 1;
    REQUIRE(w.put(odd, err) == Errc::ok);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    const auto k1 = pub(crypto::Curve::k256, 1), k2 = pub(crypto::Curve::p256, 2), k3 = pub(crypto::Curve::k256, 3);
    for (const std::string& did : {plc(1), plc(2)}) {
        INFO(did);
        const std::int64_t d = did == plc(2) ? 1 : 0;
        CHECK(rd.key_at(did, 0) == k3);
        CHECK(rd.key_at(did, -5) == k3);
        CHECK(rd.key_at(did, 1) == k1);  // before the first epoch: the first key
        CHECK(rd.key_at(did, kT0 - 1) == k1);
        CHECK(rd.key_at(did, kT0) == k1);
        CHECK(rd.key_at(did, kT0 + 5000 * kMs + d - 1) == k1);
        CHECK(rd.key_at(did, kT0 + 5000 * kMs + d) == k2);
        CHECK(rd.key_at(did, kT0 + 9000 * kMs + d - 1) == k2);
        CHECK(rd.key_at(did, kT0 + 9000 * kMs + d) == k3);
        CHECK(rd.key_at(did, kT0 + 9000 * kMs + 999) == k3);
        CHECK(rd.key_at(did, std::int64_t(1) << 62) == k3);
    }
    // Batched: the same answers.
    std::vector<std::string_view> dids = {plc(1), plc(2), plc(3)};
    std::vector<std::string> keep = {plc(1), plc(2), plc(3)};
    dids = {keep[0], keep[1], keep[2]};
    std::vector<std::int64_t> times = {kT0 + 6000 * kMs, 0, 0};
    std::vector<std::optional<crypto::PublicKey>> out(3);
    rd.key_at_batch(dids, times, out);
    CHECK(out[0] == k2);
    CHECK(out[1] == k3);
    CHECK_FALSE(out[2]);
}

namespace {

// The key a record gives at `t` by the rules of Reader::key_at (the reference the lookups are
// checked against).
std::optional<crypto::PublicKey> expected_key(const Record& r, std::int64_t t) {
    if (r.history.empty()) return std::nullopt;
    std::size_t pick = r.history.size() - 1;
    if (t > 0) {
        pick = 0;
        for (std::size_t i = 0; i < r.history.size(); ++i)
            if (r.history[i].valid_from_us <= t) pick = i;
    }
    if (pick + 1 == r.history.size() && r.tombstoned) return std::nullopt;
    return r.history[pick].key;
}

}  // namespace

TEST_CASE("did cache: key_at and key_at_batch on a crowded table agree with the records", "[did_cache]") {
    // 700 DIDs in 1024 slots: long probe chains, so many DIDs sit away from their home slot.
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err, 1024) == Errc::ok);
    const auto k1 = pub(crypto::Curve::k256, 1), k2 = pub(crypto::Curve::p256, 2);
    std::vector<Record> recs;
    for (std::uint64_t i = 0; i < 700; ++i) {
        Record r;
        r.did = i % 50 == 7 ? "did:web:host" + std::to_string(i) + ".example.com" : plc(i);
        const std::int64_t t0 = kT0 + std::int64_t(i) * kMs;
        if (i % 13 != 5) r.history.push_back({t0, i % 2 ? k1 : k2});
        if (i % 3 == 0) r.history.push_back({t0 + 1000 * kMs, i % 2 ? k2 : k1});
        if (i % 11 == 4) r.history.push_back({t0 + 2000 * kMs, std::nullopt});  // a last epoch without a key
        r.tombstoned = i % 17 == 9;
        REQUIRE(w.put(r, err) == Errc::ok);
        recs.push_back(r);
    }
    REQUIRE(w.slots() == 1024);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    std::vector<std::string> text;
    std::vector<std::int64_t> times;
    std::vector<std::optional<crypto::PublicKey>> want;
    const std::int64_t offsets[] = {0, -1, 1, kT0 - 1, 0, 500 * kMs, 1000 * kMs, 1500 * kMs, 2000 * kMs, 3000 * kMs};
    for (std::size_t i = 0; i < recs.size(); ++i)
        for (std::int64_t o : offsets) {
            const std::int64_t at = o <= 1 || o == kT0 - 1 ? o : kT0 + std::int64_t(i) * kMs + o;
            text.push_back(recs[i].did);
            times.push_back(at);
            want.push_back(expected_key(recs[i], at));
        }
    for (std::uint64_t i = 700; i < 900; ++i) {  // absent DIDs, and strings that are not DIDs
        text.push_back(i % 4 == 0 ? "did:plc:ABCDEFGHIJKLMNOPQRSTUVWX" : i % 4 == 1 ? "did:plc:short" : plc(i));
        times.push_back(0);
        want.push_back(std::nullopt);
    }
    std::vector<std::string_view> dids(text.begin(), text.end());
    for (std::size_t j = 0; j < dids.size(); ++j) {
        INFO(dids[j] << " at " << times[j]);
        CHECK(rd.key_at(dids[j], times[j]) == want[j]);
    }
    // Batches of every size around the pipeline's chunk (64), over the same lookups.
    for (std::size_t n : {std::size_t(1), std::size_t(63), std::size_t(64), std::size_t(65), std::size_t(200), dids.size()}) {
        std::vector<std::optional<crypto::PublicKey>> out(dids.size(), k1);
        for (std::size_t first = 0; first < dids.size(); first += n) {
            const std::size_t m = std::min(n, dids.size() - first);
            rd.key_at_batch({dids.data() + first, m}, {times.data() + first, m}, {out.data() + first, m});
        }
        std::size_t bad = 0;
        for (std::size_t j = 0; j < dids.size(); ++j) bad += out[j] != want[j];
        INFO("batch size " << n);
        CHECK(bad == 0);
    }
    CHECK(rd.status() == Errc::ok);
}

TEST_CASE("did cache: a slot read overlapped by a write is refused (the seqlock's second check)", "[did_cache][seqlock]") {
    // A multi-process test rarely lands a write between a reader's loads of one cache line;
    // here the write runs exactly there. Without the re-check of word 0 the reader would take
    // word 0 of one image (flags, curve, id bytes) with words 1..7 of the other.
    namespace sl = sov::didcache::seqlock;
    alignas(64) std::uint8_t slot[64] = {};
    std::uint8_t a[64], b[64];
    for (int i = 0; i < 64; ++i) {
        a[i] = std::uint8_t(0x10 + i);
        b[i] = std::uint8_t(0xa0 + i);
    }
    auto same = [](const std::uint64_t* got, const std::uint8_t* img) {
        return std::memcmp(reinterpret_cast<const std::uint8_t*>(got) + 4, img + 4, 60) == 0;
    };
    std::uint64_t got[8];
    sl::write(slot, a);
    REQUIRE(sl::try_read(slot, got));
    CHECK(same(got, a));
    CHECK(std::uint32_t(got[0]) == 2);  // the counter: two steps per write
    // A whole write between the first load of word 0 and the others.
    CHECK_FALSE(sl::try_read(slot, got, [&] { sl::write(slot, b); }));
    REQUIRE(sl::try_read(slot, got));
    CHECK(same(got, b));
    // A write begun (counter odd, some words stored) and not finished when the copy is taken.
    CHECK_FALSE(sl::try_read(slot, got, [&] {
        sl::word(slot).store(sl::word(slot).load() + 1);
        std::memcpy(slot + 8, a + 8, 24);
    }));
    // A counter left odd: refused before any other word is read.
    bool ran = false;
    CHECK_FALSE(sl::try_read(slot, got, [&] { ran = true; }));
    CHECK_FALSE(ran);
}

TEST_CASE("did cache: put replaces a record; readers see the new one", "[did_cache]") {
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
    Record r = full_record(plc(1));
    REQUIRE(w.put(r, err) == Errc::ok);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    r.history.push_back({kT0 + 10000 * kMs, pub(crypto::Curve::p256, 9)});
    r.handle = "bob.example.com";
    r.pds = "https://new.example";
    REQUIRE(w.put(r, err) == Errc::ok);
    CHECK(w.size() == 1);
    CHECK(rd.size() == 1);
    CHECK(rd.get(plc(1)) == r);
    CHECK(rd.key_at(plc(1), 0) == pub(crypto::Curve::p256, 9));
    REQUIRE(w.sync(1, err) == Errc::ok);
    CHECK(check(slurp(t.file()), err) == Errc::ok);
}

TEST_CASE("did cache: growth across generations while a reader stays open", "[did_cache]") {
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err, 1) == Errc::ok);
    CHECK(w.slots() == 1024);
    REQUIRE(w.put(full_record(plc(0)), err) == Errc::ok);
    REQUIRE(w.sync(1, err) == Errc::ok);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    CHECK(rd.generation() == 1);
    std::uint64_t last_gen = 1;
    int generations_seen = 0;
    for (std::uint64_t i = 1; i < 6000; ++i) {
        Record r;
        r.did = plc(i);
        r.handle = "h" + std::to_string(i) + ".example.com";
        r.pds = "https://pds" + std::to_string(i % 5) + ".example";
        r.history = {{kT0 + std::int64_t(i) * kMs, pub(i % 2 ? crypto::Curve::k256 : crypto::Curve::p256, std::uint8_t(i % 3))}};
        REQUIRE(w.put(r, err) == Errc::ok);
        if (i % 500 == 0) {
            // The open reader follows the renames and finds every DID put so far.
            CHECK(rd.get(plc(i)) == r);
            CHECK(rd.get(plc(0)) == full_record(plc(0)));
            CHECK(rd.generation() == w.generation());
            if (rd.generation() != last_gen) ++generations_seen;
            last_gen = rd.generation();
        }
    }
    CHECK(w.generation() >= 4);  // 1024 → 2048 → 4096 → 8192 slots, and heap growth
    CHECK(generations_seen >= 3);
    CHECK(w.slots() >= 8192);
    CHECK(rd.size() == 6000);
    for (std::uint64_t i = 0; i < 6000; i += 97) CHECK(rd.key_at(plc(i), 0).has_value());
    REQUIRE(w.sync(2, err) == Errc::ok);
    CHECK(rd.applied() == 2);
    CHECK(rd.status() == Errc::ok);
    CHECK(!fs::exists(t.file() + ".tmp"));
    CHECK(check(slurp(t.file()), err) == Errc::ok);
    INFO(err);

    // Heap-only growth: replacing one DID many times fills the heap with dead records; the
    // rebuild keeps only live ones, so the file stays bounded.
    const auto bytes = w.file_bytes();
    Record big = full_record(plc(1));
    big.handle = std::string(3000, 'x') + ".example.com";
    for (int i = 0; i < 2000; ++i) REQUIRE(w.put(big, err) == Errc::ok);
    CHECK(w.file_bytes() <= 2 * bytes);
    CHECK(rd.get(plc(1)) == big);
}

TEST_CASE("did cache: many threads share one Reader while the writer grows the file", "[did_cache]") {
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err, 1) == Errc::ok);
    constexpr std::uint64_t kFirst = 300, kTotal = 5000;
    auto rec = [](std::uint64_t i) {
        Record r;
        r.did = plc(i);
        r.pds = "https://pds" + std::to_string(i % 3) + ".example";
        r.history = {{kT0, pub(crypto::Curve::k256, std::uint8_t(i % 4))}};
        return r;
    };
    for (std::uint64_t i = 0; i < kFirst; ++i) REQUIRE(w.put(rec(i), err) == Errc::ok);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0}, reads{0};
    std::vector<std::thread> th;
    for (int k = 0; k < 4; ++k)
        th.emplace_back([&, k] {
            std::mt19937_64 rng{std::uint64_t(k)};
            // At least 20,000 lookups each, and on until the writer is done.
            for (std::uint64_t n = 0; n < 20000 || !stop.load(); ++n) {
                const std::uint64_t i = rng() % kFirst;
                const auto key = rd.key_at(plc(i), 0);
                if (!key || *key != pub(crypto::Curve::k256, std::uint8_t(i % 4))) ++bad;
                ++reads;
            }
        });
    for (std::uint64_t i = kFirst; i < kTotal; ++i) REQUIRE(w.put(rec(i), err) == Errc::ok);
    stop = true;
    for (auto& x : th) x.join();
    CHECK(bad == 0);
    CHECK(reads >= 80000);
    CHECK(w.generation() >= 4);
    CHECK(rd.generation() == w.generation());
    CHECK(rd.status() == Errc::ok);
}

TEST_CASE("did cache: a second writer gets cache_locked", "[did_cache]") {
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
    Writer w2;
    CHECK(Writer::open(t.file(), w2, err) == Errc::cache_locked);
    CHECK(err.find(t.file()) != std::string::npos);
    // In another process too.
    const pid_t pid = ::fork();
    if (pid == 0) {
        Writer w3;
        std::string e;
        ::_exit(Writer::open(t.file(), w3, e) == Errc::cache_locked ? 0 : 1);
    }
    int st = 0;
    REQUIRE(::waitpid(pid, &st, 0) == pid);
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
}

TEST_CASE("did cache: a writer killed before sync leaves the cache dirty", "[did_cache]") {
    TempDir t;
    std::string err;
    {
        Writer w;
        REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
        REQUIRE(w.put(full_record(plc(1)), err) == Errc::ok);
        REQUIRE(w.sync(5, err) == Errc::ok);
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
        Writer w;
        std::string e;
        if (Writer::open(t.file(), w, e) != Errc::ok) ::_exit(3);
        if (w.put(full_record(plc(2)), e) != Errc::ok) ::_exit(4);
        ::_exit(0);  // no sync, no destructor
    }
    int st = 0;
    REQUIRE(::waitpid(pid, &st, 0) == pid);
    REQUIRE((WIFEXITED(st) && WEXITSTATUS(st) == 0));
    Writer w;
    CHECK(Writer::open(t.file(), w, err) == Errc::cache_dirty);
    CHECK(err.find(t.file()) != std::string::npos);
    // Readers keep reading a dirty file.
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    CHECK(rd.get(plc(1)) == full_record(plc(1)));
    CHECK(rd.get(plc(2)) == full_record(plc(2)));
    CHECK(rd.applied() == 5);
}

TEST_CASE("did cache: corrupt and truncated files give the right error with an offset", "[did_cache]") {
    TempDir t;
    const std::vector<std::uint8_t> good = small_cache(t);
    std::string err;
    REQUIRE(check(good, err) == Errc::ok);
    const std::string path = (t.dir / "bad.cache").string();

    auto reader_error = [&](const std::vector<std::uint8_t>& b) {
        spit(path, b);
        Reader rd;
        return Reader::open(path, rd, err);
    };
    auto with = [&](std::size_t off, std::uint8_t x) {
        auto b = good;
        b.at(off) ^= x;
        return b;
    };

    SECTION("header") {
        CHECK(reader_error(with(0, 1)) == Errc::cache_bad_magic);
        CHECK(err.find("offset 0") != std::string::npos);
        CHECK(reader_error(with(8, 1)) == Errc::cache_bad_version);
        CHECK(err.find("offset 8") != std::string::npos);
        for (std::size_t off : {12, 16, 24, 32, 40, 48, 56}) {
            INFO(off);
            CHECK(reader_error(with(off, 4)) == Errc::cache_corrupt);
            CHECK(err.find("offset 56") != std::string::npos);  // the checksum catches it
            CHECK(check(with(off, 4), err) == Errc::cache_corrupt);
        }
        CHECK(reader_error(with(128, 2)) == Errc::cache_corrupt);  // dirty = 2
        CHECK(err.find("offset 128") != std::string::npos);
        CHECK(reader_error(with(152 + 7, 0x80)) == Errc::cache_corrupt);  // heap used past the heap
        CHECK(err.find("offset 152") != std::string::npos);
        auto b = good;
        b.resize(4);
        CHECK(reader_error(b) == Errc::cache_truncated);
        b = good;
        b.resize(100);
        CHECK(reader_error(b) == Errc::cache_truncated);
        b = good;
        b.resize(good.size() - 1);
        CHECK(reader_error(b) == Errc::cache_truncated);
        CHECK(err.find("offset " + std::to_string(good.size() - 1)) != std::string::npos);
        CHECK(check(b, err) == Errc::cache_truncated);
        CHECK(reader_error({}) == Errc::cache_truncated);
        CHECK(reader_error(std::vector<std::uint8_t>(5000, 0)) == Errc::cache_bad_magic);
        Reader rd;
        CHECK(Reader::open((t.dir / "absent").string(), rd, err) == Errc::io_not_found);
    }

    SECTION("slot") {
        const std::size_t s = kHeaderBytes + slot_of(good, plc(1)) * kSlotBytes;
        // Unknown flag bit.
        CHECK(check(with(s + 4, 0x80), err) == Errc::cache_corrupt);
        CHECK(err.find("offset " + std::to_string(s + 4)) != std::string::npos);
        // Heap reference outside the heap: check_file, and a reader's get() that follows it.
        auto b = with(s + 63, 0x7f);
        CHECK(check(b, err) == Errc::cache_corrupt);
        CHECK(err.find("offset " + std::to_string(s + 60)) != std::string::npos);
        spit(path, b);
        Reader rd;
        REQUIRE(Reader::open(path, rd, err) == Errc::ok);
        CHECK(rd.key_at(plc(1), 0).has_value());  // the slot alone answers the current key
        CHECK_FALSE(rd.get(plc(1)));
        CHECK(rd.status(&err) == Errc::cache_corrupt);
        CHECK(err.find("offset") != std::string::npos);
        CHECK_FALSE(rd.key_at(plc(1), kT0 + 1));  // an older time reads the heap
        // Key bytes that disagree with the record's current key.
        CHECK(check(with(s + 30, 1), err) == Errc::cache_corrupt);
        CHECK(err.find("offset " + std::to_string(s + 21)) != std::string::npos);
        // Bad curve in the slot: the reader says corrupt instead of returning a key.
        b = good;
        b[s + 5] = 7;
        CHECK(check(b, err) == Errc::cache_corrupt);
        spit(path, b);
        Reader rd2;
        REQUIRE(Reader::open(path, rd2, err) == Errc::ok);
        CHECK_FALSE(rd2.key_at(plc(1), 0));
        CHECK(rd2.status() == Errc::cache_corrupt);
        // A slot moved away from its probe chain.
        b = good;
        const std::size_t other = s == kHeaderBytes + 5 * kSlotBytes ? 6 : 5;
        std::memcpy(b.data() + kHeaderBytes + other * kSlotBytes, good.data() + s, kSlotBytes);
        std::memset(b.data() + s, 0, kSlotBytes);
        CHECK(check(b, err) == Errc::cache_corrupt);
        // Used count off by one.
        CHECK(check(with(144, 1), err) == Errc::cache_corrupt);
        CHECK(err.find("offset 144") != std::string::npos);
    }

    SECTION("heap") {
        std::uint64_t heap_off = 0, heap_used = 0;
        std::memcpy(&heap_off, good.data() + 40, 8);
        std::memcpy(&heap_used, good.data() + 152, 8);
        // Flip every byte of the used heap in turn: check_file never crashes, and a reader
        // over the file answers every lookup (or says why not) without crashing.
        int rejected = 0;
        for (std::uint64_t o = heap_off; o < heap_off + heap_used; ++o) {
            auto b = with(o, 0xff);
            const Errc e = check(b, err);
            if (e != Errc::ok) {
                ++rejected;
                CHECK(e == Errc::cache_corrupt);
                CHECK(err.find("offset ") != std::string::npos);
            }
            spit(path, b);
            Reader rd;
            REQUIRE(Reader::open(path, rd, err) == Errc::ok);
            (void)rd.get(plc(1));
            (void)rd.get("did:web:example.com");
            (void)rd.key_at(plc(1), kT0 + 1);
            std::string ferr;
            (void)rd.for_each([](const Record&) {}, ferr);
        }
        CHECK(rejected > 0);
        // A record length past the heap.
        auto b = good;
        b[heap_off + 8 + 3] = 0x7f;
        CHECK(check(b, err) == Errc::cache_corrupt);
        CHECK(err.find("offset " + std::to_string(heap_off + 8)) != std::string::npos);
    }

    SECTION("a slot locked by a writer that is gone") {
        auto b = good;
        b[kHeaderBytes + slot_of(good, plc(1)) * kSlotBytes] |= 1;  // counter odd
        CHECK(check(b, err) == Errc::cache_busy);
        spit(path, b);
        Reader rd;
        REQUIRE(Reader::open(path, rd, err) == Errc::ok);
        CHECK_FALSE(rd.key_at(plc(1), 0));  // gives up after about a second, no endless spin
        CHECK(rd.status(&err) == Errc::cache_busy);
        CHECK(err.find("offset") != std::string::npos);
    }
}

TEST_CASE("did cache: record_of every valid corpus audit log, through the cache and back", "[did_cache]") {
    REQUIRE_CORPUS(dir);
    std::vector<fs::path> logs;
    for (const auto& e : fs::directory_iterator(dir / "plc")) {
        const std::string name = e.path().filename().string();
        if (name.starts_with("log_") && name.ends_with(".json") && !name.starts_with("log_invalid_")) logs.push_back(e.path());
    }
    std::sort(logs.begin(), logs.end());
    REQUIRE(logs.size() >= 9);
    TempDir t;
    std::string err;
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
    std::vector<std::pair<Record, sov::plc::State>> seen;
    bool some_tombstoned = false, some_rotated = false;
    for (const auto& path : logs) {
        INFO(path.filename().string());
        const auto bytes = testutil::read_file(path);
        std::vector<sov::plc::ExportLine> lines;
        sov::plc::Problem why;
        REQUIRE(sov::plc::parse_audit_log(sov::as_chars(bytes), lines, why) == Errc::ok);
        REQUIRE(!lines.empty());
        sov::plc::Log log(lines.front().did);
        for (const auto& l : lines) REQUIRE(log.apply(l, why) == Errc::ok);
        const auto st = log.state();
        const Record r = record_of(st);
        CHECK(r.did == st.did);
        CHECK(r.tombstoned == st.tombstoned);
        CHECK(r.handle == st.handle);
        CHECK(r.pds == st.pds);
        CHECK_FALSE(r.deactivated);
        REQUIRE(r.history.size() == st.key_history.size());
        REQUIRE(!r.history.empty());
        for (std::size_t i = 0; i < r.history.size(); ++i) {
            CHECK(r.history[i].valid_from_us == st.key_history[i].valid_from_us);
            CHECK(r.history[i].key == st.key_history[i].key);
        }
        if (!st.tombstoned) CHECK(r.history.back().key == st.signing_public_key);
        some_tombstoned = some_tombstoned || st.tombstoned;
        some_rotated = some_rotated || r.history.size() > 1;
        REQUIRE(w.put(r, err) == Errc::ok);
        seen.emplace_back(r, st);
    }
    CHECK(some_tombstoned);
    CHECK(some_rotated);
    REQUIRE(w.sync(1, err) == Errc::ok);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    for (const auto& [r, st] : seen) {
        INFO(r.did);
        CHECK(rd.get(r.did) == r);
        // The current key is the log's, none when tombstoned; each epoch answers from its start.
        CHECK(rd.key_at(r.did, 0) == (st.tombstoned ? std::nullopt : st.signing_public_key));
        for (std::size_t i = 0; i + 1 < r.history.size(); ++i)
            if (r.history[i + 1].valid_from_us > r.history[i].valid_from_us)
                CHECK(rd.key_at(r.did, r.history[i].valid_from_us) == r.history[i].key);
    }
    CHECK(check(slurp(t.file()), err) == Errc::ok);
}

TEST_CASE("did cache: a reopened writer reuses the interned PDS strings", "[did_cache]") {
    TempDir t;
    std::string err;
    auto heap_used = [&] {
        const auto b = slurp(t.file());
        std::uint64_t v = 0;
        std::memcpy(&v, b.data() + 152, 8);
        return v;
    };
    {
        Writer w;
        REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
        REQUIRE(w.put(full_record(plc(1)), err) == Errc::ok);
        REQUIRE(w.sync(1, err) == Errc::ok);
    }
    const std::uint64_t before = heap_used();
    Writer w;
    REQUIRE(Writer::open(t.file(), w, err) == Errc::ok);
    REQUIRE(w.put(full_record(plc(2)), err) == Errc::ok);  // same PDS
    REQUIRE(w.sync(2, err) == Errc::ok);
    // One DID record: 8 + 16 + 3 × 42 + 17 (handle) = 167 → 168 bytes; no new string record.
    CHECK(heap_used() - before == 168);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    CHECK(rd.get(plc(2)) == full_record(plc(2)));
    // A file that is not a cache is refused, not overwritten.
    const std::string other = (t.dir / "not-a-cache").string();
    spit(other, std::vector<std::uint8_t>(8192, 'x'));
    Writer w2;
    CHECK(Writer::open(other, w2, err) == Errc::cache_bad_magic);
    CHECK(slurp(other) == std::vector<std::uint8_t>(8192, 'x'));
}

// ---- the hammer

namespace {

// Record of DID `i` at update `c`: every field follows from c, so a mix of two updates is seen.
Record hammer_record(std::uint64_t i, std::uint64_t c, const crypto::PublicKey& a, const crypto::PublicKey& b) {
    Record r;
    r.did = plc(i);
    r.handle = "c" + std::to_string(c) + ".example.com";
    r.pds = "https://pds" + std::to_string(c % 7) + ".example";
    const std::int64_t t = kT0 + std::int64_t(c) * kMs;
    r.history = {{t, c % 2 ? b : a}, {t + kMs, c % 2 ? a : b}};
    return r;
}

// 0 when `got` is hammer_record(i, c) for the c its handle names.
bool consistent(const Record& got, std::uint64_t i, const crypto::PublicKey& a, const crypto::PublicKey& b) {
    if (!got.handle.starts_with("c")) return false;
    const std::uint64_t c = std::stoull(got.handle.substr(1));
    return got == hammer_record(i, c, a, b);
}

}  // namespace

TEST_CASE("did cache: hammer: one writer updating and growing, three reader processes", "[did_cache][hammer]") {
    TempDir t;
    const auto a = pub(crypto::Curve::k256, 11), b = pub(crypto::Curve::p256, 12);
    constexpr std::uint64_t kInitial = 500, kFinal = 12000, kUpdates = 200000, kReads = 300000, kHot = 4;
    std::string err;
    {
        Writer w;
        REQUIRE(Writer::open(t.file(), w, err, 1) == Errc::ok);
        for (std::uint64_t i = 0; i < kInitial; ++i) REQUIRE(w.put(hammer_record(i, i, a, b), err) == Errc::ok);
        REQUIRE(w.sync(1, err) == Errc::ok);
    }
    const std::string done = (t.dir / "done").string();
    std::vector<pid_t> readers;
    for (int r = 0; r < 3; ++r) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            Reader rd;
            std::string e;
            if (Reader::open(t.file(), rd, e) != Errc::ok) ::_exit(3);
            std::mt19937_64 rng(std::uint64_t(r) + 1);
            std::uint64_t bad = 0, found = 0;
            // Until the writer is done and at least kReads lookups, at most 40 × kReads.
            std::uint64_t n = 0;
            for (bool writer_done = false; n < 40 * kReads && (n < kReads || !writer_done); ++n) {
                if (n % 1024 == 0) writer_done = fs::exists(done);
                // Half the lookups on the 4 DIDs the writer updates most (torn reads show there).
                const std::uint64_t i = n % 2 ? rng() % kHot : rng() % kFinal;
                const std::uint64_t op = (n / 2) % 3;
                if (op == 0) {
                    auto got = rd.get(plc(i));
                    if (got) {
                        ++found;
                        if (!consistent(*got, i, a, b)) ++bad;
                    } else if (i < kInitial) {
                        ++bad;  // present from the start: never missing
                    }
                } else {
                    auto k = rd.key_at(plc(i), op == 1 ? 0 : kT0 + std::int64_t(rng() % 100000) * kMs);
                    if (k && *k != a && *k != b) ++bad;
                    if (!k && i < kInitial) ++bad;
                }
            }
            if (rd.status() != Errc::ok) ::_exit(5);
            if (rd.generation() < 2) ::_exit(6);  // it followed the growth
            ::_exit(bad == 0 && found > 0 ? 0 : 1);
        }
        readers.push_back(pid);
    }
    const pid_t writer = ::fork();
    if (writer == 0) {
        Writer w;
        std::string e;
        if (Writer::open(t.file(), w, e) != Errc::ok) ::_exit(3);
        std::uint64_t next_new = kInitial;
        for (std::uint64_t c = kInitial; c < kInitial + kUpdates; ++c) {
            // Alternate: update an existing DID, or add a new one (which grows the table).
            // Every 5th a new DID, most others one of the hot DIDs, the rest anywhere.
            const std::uint64_t i = (c % 5 == 0 && next_new < kFinal) ? next_new++
                                    : c % 4 ? c % kHot : (c * 2654435761u) % next_new;
            if (w.put(hammer_record(i, c, a, b), e) != Errc::ok) ::_exit(4);
            if (c % 10000 == 0 && w.sync(c, e) != Errc::ok) ::_exit(5);
        }
        if (w.sync(kInitial + kUpdates, e) != Errc::ok) ::_exit(5);
        std::ofstream(done) << "done\n";
        ::_exit(w.generation() > 3 ? 0 : 6);
    }
    int st = 0;
    REQUIRE(::waitpid(writer, &st, 0) == writer);
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
    for (pid_t pid : readers) {
        REQUIRE(::waitpid(pid, &st, 0) == pid);
        INFO("reader exit " << (WIFEXITED(st) ? WEXITSTATUS(st) : -1));
        CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
    }
    CHECK(check(slurp(t.file()), err) == Errc::ok);
    INFO(err);
    Reader rd;
    REQUIRE(Reader::open(t.file(), rd, err) == Errc::ok);
    std::map<std::string, std::uint64_t> index;
    for (std::uint64_t j = 0; j < kFinal; ++j) index[plc(j)] = j;
    std::uint64_t n = 0, bad = 0;
    REQUIRE(rd.for_each(
                [&](const Record& r) {
                    ++n;
                    auto it = index.find(r.did);
                    if (it == index.end() || !consistent(r, it->second, a, b)) ++bad;
                },
                err) == Errc::ok);
    CHECK(n == rd.size());
    CHECK(bad == 0);
}
