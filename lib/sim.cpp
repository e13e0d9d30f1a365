// mesh-sim's generator. The essay:
//
// Every account owns a real repository: an MST whose node blocks live in a per-account
// store. A commit applies its ops to the tree, re-encodes the changed nodes (the sink of
// root_cid adds them to the store), signs a v3 commit over the new root and ships a CAR
// slice. Which MST nodes go into the slice is not guessed: the generator replays what a
// verifier does — look up every op path in the new tree, then invert the ops — on a fresh
// tree whose block source records every node it is asked for. That set is exactly the
// proof a Sync 1.1 consumer needs, and the replay also checks that inversion gives back the
// previous root, so every generated commit is known-good before it is written.
//
// Repositories exist only for accounts that act (Zipf makes most accounts rare), start
// with a log-normal number of records whose values are CIDs of records that predate the
// simulation, and are garbage-collected when their store doubles.
//
// Millions of accounts: what every account keeps is 32 bytes (Account). Its DID, signing key,
// handle and PDS are derived again from the seed and its index whenever it acts — the key
// stream is re-drawn from a checkpoint kept every 64 accounts — so nothing about an account
// that has not acted costs more than that and its share of the Zipf table.
#include "sovereign/sim.h"

#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/commit.h"
#include "sovereign/dag_json.h"
#include "sovereign/io.h"
#include "sovereign/message.h"
#include "sovereign/mst.h"
#include "sovereign/multibase.h"
#include "sovereign/syntax.h"

#include <nlohmann/json.hpp>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace sov::sim {

// --- Rng, Zipf -------------------------------------------------------------------------

namespace {
inline std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(std::uint64_t seed) noexcept {
    for (auto& s : s_) s = splitmix64(seed);
}

std::uint64_t Rng::next() noexcept {
    std::uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
}

double Rng::normal() noexcept {
    double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

Zipf::Zipf(std::size_t n, double s) {
    cdf_.resize(n ? n : 1);
    double acc = 0;
    for (std::size_t k = 0; k < cdf_.size(); ++k) cdf_[k] = acc += 1.0 / std::pow(double(k + 1), s);
    for (auto& c : cdf_) c /= acc;
}

std::size_t Zipf::sample(Rng& r) const {
    double u = r.uniform();
    return std::size_t(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
}

// --- Generator ---------------------------------------------------------------------------

namespace {

struct CidHash {
    std::size_t operator()(const cid::Cid& c) const noexcept {
        std::uint64_t h = 0;
        ByteView b = c.bytes();
        if (b.size() >= 8) std::memcpy(&h, b.data() + b.size() - 8, 8);
        return std::size_t(h);
    }
};

struct Block {
    std::vector<std::uint8_t> bytes;
    ByteView view;
};

struct Repo {
    std::unordered_map<cid::Cid, Block, CidHash> store;  // MST node blocks (node-based: stable addresses)
    cid::Cid root;
    std::vector<std::string> keys;                       // record paths present
    std::unordered_map<std::string, std::size_t> key_pos;
    bool has_profile = false;
    std::size_t gc_at = 4096;
    std::size_t block_bytes = 0;  // sum of block sizes in `store`

    // Approximate heap bytes held (blocks, map nodes with their inline CIDs, key strings):
    // what the repository budget counts.
    std::size_t approx_bytes() const noexcept {
        return sizeof(Repo) + block_bytes + store.size() * (sizeof(cid::Cid) + sizeof(Block) + 48) +
               keys.size() * (sizeof(std::string) + 40 + 64);
    }

    const ByteView* find(ByteView c) const {
        auto it = store.find(cid::Cid(c));
        return it == store.end() ? nullptr : &it->second.view;
    }
    void add_block(ByteView c, ByteView bytes) {
        auto [it, fresh] = store.try_emplace(cid::Cid(c));
        if (fresh) {
            block_bytes += bytes.size();
            it->second.bytes.assign(bytes.begin(), bytes.end());
            it->second.view = {it->second.bytes.data(), it->second.bytes.size()};
        }
    }
    void add_key(const std::string& k) {
        key_pos.emplace(k, keys.size());
        keys.push_back(k);
    }
    void remove_key(const std::string& k) {
        auto it = key_pos.find(k);
        if (it == key_pos.end()) return;
        std::size_t i = it->second;
        key_pos.erase(it);
        if (i + 1 != keys.size()) {
            keys[i] = std::move(keys.back());
            key_pos[keys[i]] = i;
        }
        keys.pop_back();
    }
};

struct Finder {
    const Repo* repo;
    const ByteView* operator()(ByteView c) const { return repo->find(c); }
};

struct Recorder {
    const Repo* repo;
    std::vector<cid::Cid>* seen;
    const ByteView* operator()(ByteView c) const {
        const ByteView* v = repo->find(c);
        if (v) seen->push_back(cid::Cid(c));
        return v;
    }
};

// A change the simulation made to a regenerable repository: put `value` at its path, or
// remove the path when `del`. Replayed in order over the seeded initial records on rebuild.
// 48 bytes: the path is one of kDeltaColls and a TID (`key`, its 64-bit value), or the profile
// record (coll kProfile); any other path is kept as text in History::paths (coll kOther, `key`
// its index there).
struct Delta {
    std::uint64_t key = 0;
    std::uint8_t coll = 0;
    bool del = false;
    std::array<std::uint8_t, cid::kBlessedLen> value{};
};
static_assert(sizeof(Delta) <= 48);

constexpr char kTidChars[] = "234567abcdefghijklmnopqrstuvwxyz";
constexpr const char* kDeltaColls[] = {"app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.feed.repost",
                                       "app.bsky.graph.follow"};
constexpr std::uint8_t kProfile = 4, kOther = 255;
constexpr std::string_view kProfilePath = "app.bsky.actor.profile/self";

std::string tid_text(std::uint64_t v) {
    std::string t(13, '2');
    for (std::size_t d = 0; d < 13; ++d) t[12 - d] = kTidChars[(v >> (5 * d)) & 31u];
    return t;
}

// The 64-bit value of a 13-character TID whose text tid_text() gives back; nullopt otherwise.
std::optional<std::uint64_t> tid_value(std::string_view t) {
    if (t.size() != 13) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : t) {
        const char* p = std::strchr(kTidChars, c);
        if (!c || !p) return std::nullopt;
        v = (v << 5) | std::uint64_t(p - kTidChars);
    }
    if (tid_text(v) != t) return std::nullopt;  // a first character beyond 64 bits
    return v;
}

// The regenerable part of an account's history (Options::repo_budget_bytes > 0): every change
// since the seeded initial records, and the root at the last eviction (a rebuild must give it
// back). Allocated when the account first acts.
struct History {
    std::vector<Delta> delta;
    std::vector<std::string> paths;  // paths of kOther deltas
    cid::Cid evicted_root;

    void add(std::string_view path, bool del, const cid::Cid& value) {
        Delta d;
        d.del = del;
        if (!del && value.size() == d.value.size()) std::memcpy(d.value.data(), value.bytes().data(), d.value.size());
        d.coll = kOther;
        if (path == kProfilePath) {
            d.coll = kProfile;
        } else if (auto slash = path.find('/'); slash != std::string_view::npos) {
            for (std::uint8_t c = 0; c < 4; ++c)
                if (path.substr(0, slash) == kDeltaColls[c])
                    if (auto v = tid_value(path.substr(slash + 1))) {
                        d.coll = c;
                        d.key = *v;
                    }
        }
        if (d.coll == kOther) {
            d.key = paths.size();
            paths.emplace_back(path);
        }
        delta.push_back(d);
    }
    std::string path(const Delta& d) const {
        if (d.coll == kProfile) return std::string(kProfilePath);
        if (d.coll == kOther) return paths[d.key];
        return std::string(kDeltaColls[d.coll]) + "/" + tid_text(d.key);
    }
};

// A repository in memory, with its place in the budget's LRU.
struct HeldRepo : Repo {
    std::uint64_t last_use = 0;
    std::size_t charged = 0;  // bytes counted against the budget
};

// What stays in memory for every account: 32 bytes. Its DID, signing key, handle and PDS are
// derived from the seed and its index whenever it acts (Impl::identity), its repository is
// materialized when it acts and (with a budget) evicted and rebuilt from `hist`.
struct Account {
    std::unique_ptr<HeldRepo> repo;
    std::unique_ptr<History> hist;
    std::int64_t rev_us = 0;  // timestamp of the last commit rev; rev = tid_from(rev_us, clock_id)
    std::uint16_t clock_id = 0;
    bool active = true;
    bool has_rev = false;
    bool p256 = false;
};
static_assert(sizeof(Account) <= 32);

// The identity of the account acting now (Impl::cur), derived when it is picked.
struct Ident {
    std::string did, handle, pds;
    crypto::PrivateKey priv;
};

struct PlannedOp {
    msg::OpAction action;
    std::string path;
    cid::Cid cid;   // new record (create/update)
    cid::Cid prev;  // replaced/deleted record (update/delete)
    std::vector<std::uint8_t> record;
};

const char* const kWords[] = {
    "the", "a", "morning", "light", "on", "water", "coffee", "again", "finally", "shipped", "new", "release",
    "thread", "about", "why", "we", "build", "small", "tools", "relay", "firehose", "is", "beautiful", "today",
    "reading", "paper", "on", "merkle", "search", "trees", "cats", "garden", "rain", "train", "late", "music",
    "weekend", "plans", "anyone", "else", "seeing", "this", "honestly", "great", "question", "love", "it",
};

constexpr std::uint8_t kEmptyNode[] = {0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6};  // {e: [], l: null}

}  // namespace

struct Generator::Impl {
    Options opt;
    Rng rng;
    Zipf zipf;
    std::vector<Account> accounts;
    std::vector<std::uint32_t> rank_to_account;
    // The key stream's state before account k·kCheckpoint (not with identities): an account's
    // key seed is re-drawn from the checkpoint below it (kDraws draws per account).
    static constexpr std::size_t kCheckpoint = 64, kDraws = 6;
    std::vector<Rng> key_checkpoints;
    Ident cur;  // the identity of the account of the message being generated
    std::int64_t now_us;
    std::int64_t seq;
    Stats stats;
    std::string error;
    mst::Tree tree;
    std::vector<std::pair<std::string, std::string>> recent_posts;  // (uri, cid text) ring
    std::size_t recent_next = 0;
    std::vector<nlohmann::json> corpus_posts, corpus_profiles;
    std::uint64_t fake_counter = 0;
    // Replay mode
    struct ReplayItem {
        std::string path;
        std::vector<std::uint8_t> record;
        std::int64_t us;
    };
    std::vector<ReplayItem> replay;
    std::size_t replay_next = 0;
    std::size_t replay_account = 0;
    bool replay_mode = false;
    std::string replay_did;
    // Regenerable repositories: accounts whose repository is in memory, and the budget count.
    std::vector<std::size_t> live;
    std::uint64_t use_tick = 0;
    std::size_t charged_total = 0;

    // Options::identities: the accounts alive now (`alive`, with each account's position in it
    // or kNotAlive), and the births and deaths in time order with the next one to apply.
    static constexpr std::uint32_t kNotAlive = UINT32_MAX;
    std::vector<std::uint32_t> alive, alive_pos;
    std::vector<std::pair<std::int64_t, std::uint64_t>> life;  // (µs, account × 2 + death)
    std::size_t life_next = 0;
    std::vector<std::uint32_t> span_of;  // the identity span each account signs with now
    std::string last_pds;

    static std::size_t account_count(const Options& o) {
        return o.identities && !o.identities->empty() ? o.identities->size() : o.accounts;
    }
    bool with_identities() const noexcept { return opt.identities && !opt.identities->empty(); }

    explicit Impl(const Options& o)
        : opt(o), rng(o.seed), zipf(account_count(o), o.zipf_s), now_us(o.start_us), seq(o.seq_start) {
        Rng krng(o.seed ^ 0x6b657973ULL);
        accounts.resize(account_count(o));
        if (with_identities()) init_identities();
        else key_checkpoints.reserve(accounts.size() / kCheckpoint + 1);
        for (std::size_t i = 0; i < accounts.size(); ++i) {
            Account& a = accounts[i];
            if (!with_identities()) {
                // The draws of key_seed(i) (4), then the curve and the clock id: kDraws in all.
                if (i % kCheckpoint == 0) key_checkpoints.push_back(krng);
                for (int k = 0; k < 4; ++k) krng.next();
                a.p256 = krng.uniform() < o.p256_share;
            }
            a.clock_id = std::uint16_t(krng.below(1024));
        }
        // Activity rank → account, shuffled so activity is unrelated to DID order.
        rank_to_account.resize(accounts.size());
        for (std::size_t i = 0; i < rank_to_account.size(); ++i) rank_to_account[i] = std::uint32_t(i);
        for (std::size_t i = rank_to_account.size(); i > 1; --i) std::swap(rank_to_account[i - 1], rank_to_account[rng.below(i)]);
        if (!o.corpus_repos.empty() && !o.entropic_records) load_corpus(o.corpus_repos);
        if (o.entropic_records) build_vocab();
    }

    // -- identities derived from the seed ------------------------------------------------------

    std::size_t index_of(const Account& a) const noexcept { return std::size_t(&a - accounts.data()); }

    // The seed of account i's signing key (not with identities): the key stream re-drawn
    // from the checkpoint below i.
    std::array<std::uint8_t, 32> key_seed(std::size_t i) const {
        Rng r = key_checkpoints[i / kCheckpoint];
        for (std::size_t k = 0; k < (i % kCheckpoint) * kDraws; ++k) r.next();
        std::array<std::uint8_t, 32> seed{};
        for (int k = 0; k < 4; ++k) {
            std::uint64_t v = r.next();
            std::memcpy(seed.data() + 8 * k, &v, 8);
        }
        return seed;
    }

    static std::string did_of_seed(const std::array<std::uint8_t, 32>& seed) {
        auto h = crypto::sha256(ByteView{seed.data(), seed.size()});
        std::string b32;
        multibase::base32_encode(ByteView{h.data(), h.size()}, b32);
        return "did:plc:" + b32.substr(0, 24);
    }

    // The DID of account i.
    std::string did_of(std::size_t i) const {
        if (replay_mode && i == replay_account) return replay_did;
        if (with_identities()) return (*opt.identities)[i].did;
        return did_of_seed(key_seed(i));
    }

    // Account i's whole identity now: DID, handle, PDS endpoint and signing key (with
    // identities: those of its span in use).
    Ident identity(std::size_t i) const {
        Ident id;
        if (with_identities()) {
            const Identity& d = (*opt.identities)[i];
            id.did = d.did;
            if (!d.spans.empty()) {
                const IdentitySpan& s = d.spans[span_of[i]];
                id.priv = s.key;
                id.pds = s.pds;
                id.handle = s.handle;
            }
            return id;
        }
        auto seed = key_seed(i);
        id.did = replay_mode && i == replay_account ? replay_did : did_of_seed(seed);
        id.priv = crypto::generate_from_seed(accounts[i].p256 ? crypto::Curve::p256 : crypto::Curve::k256, seed);
        id.handle = "u" + std::to_string(i) + ".mesh-sim.test";
        id.pds = opt.pds_of_account ? opt.pds_of_account(i) : "https://pds" + std::to_string(i % 8) + ".mesh-sim.test";
        return id;
    }

    // The seed of account i's regenerable repository (not drawn from the key stream, so that
    // the default stream stays as it was).
    std::uint64_t repo_seed(std::size_t i) const noexcept {
        std::uint64_t x = opt.seed ^ (0xa0761d6478bd642fULL * (i + 1));
        return splitmix64(x);
    }

    std::string rev_of(const Account& a) const { return syntax::tid_from(a.rev_us, a.clock_id); }

    // -- accounts of a PLC directory (Options::identities) ------------------------------------

    // An account lives from its genesis until one second before its tombstone, so that no
    // message's recv (< time + 1 s) falls after the tombstone.
    void init_identities() {
        alive_pos.assign(accounts.size(), kNotAlive);
        span_of.assign(accounts.size(), 0);
        for (std::size_t i = 0; i < accounts.size(); ++i) {
            const Identity& d = (*opt.identities)[i];
            if (d.spans.empty()) continue;  // tombstoned at genesis: never alive
            std::int64_t born = d.spans[0].from_us;
            std::int64_t dies = d.end_us == INT64_MAX ? INT64_MAX : d.end_us - 1'000'000;
            if (dies <= born) continue;
            life.emplace_back(born, std::uint64_t(i) * 2);
            if (dies != INT64_MAX) life.emplace_back(dies, std::uint64_t(i) * 2 + 1);
        }
        std::sort(life.begin(), life.end());
    }

    // Applies the births and deaths up to now_us.
    void advance_life() {
        for (; life_next < life.size() && life[life_next].first <= now_us; ++life_next) {
            std::uint32_t i = std::uint32_t(life[life_next].second >> 1);
            if (!(life[life_next].second & 1)) {
                alive_pos[i] = std::uint32_t(alive.size());
                alive.push_back(i);
            } else if (alive_pos[i] != kNotAlive) {
                std::uint32_t p = alive_pos[i];
                alive[p] = alive.back();
                alive_pos[alive[p]] = p;
                alive.pop_back();
                alive_pos[i] = kNotAlive;
            }
        }
    }

    // The account of the next message. With identities: one alive now (the time jumps to the
    // next genesis when none is), its identity moved to the span holding now_us; recv moves
    // with a jump. Errors only when every account is tombstoned.
    Errc pick_account(Account*& out, std::int64_t& recv) {
        if (!with_identities()) {
            out = &accounts[rank_to_account[zipf.sample(rng)]];
            return Errc::ok;
        }
        advance_life();
        if (alive.empty()) {
            if (life_next >= life.size()) return fail("every account of the PLC directory is tombstoned by " + datetime(now_us));
            std::int64_t jump = life[life_next].first - now_us;  // a birth: only the living die
            now_us += jump;
            recv += jump;
            advance_life();
        }
        std::size_t i = kNotAlive;
        for (int tries = 0; tries < 16 && i == kNotAlive; ++tries) {
            std::size_t k = rank_to_account[zipf.sample(rng)];
            if (alive_pos[k] != kNotAlive) i = k;
        }
        if (i == kNotAlive) i = alive[rng.below(alive.size())];
        const Identity& d = (*opt.identities)[i];
        std::size_t k = span_of[i];
        while (k + 1 < d.spans.size() && d.spans[k + 1].from_us <= now_us) ++k;
        span_of[i] = std::uint32_t(k);
        out = &accounts[i];
        return Errc::ok;
    }

    // -- corpus sampling ------------------------------------------------------------------

    void load_corpus(const std::string& dir) {
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec)) return;
        std::vector<std::filesystem::path> cars;
        for (auto& e : std::filesystem::directory_iterator(dir, ec))
            if (e.path().extension() == ".car") cars.push_back(e.path());
        std::sort(cars.begin(), cars.end());
        for (auto& p : cars) {
            std::string bytes, err;
            if (!io::read_all(p.string(), bytes, err)) continue;
            car::Reader r;
            if (r.open(as_bytes(bytes))) continue;
            car::BlockMap blocks;
            car::Section s;
            while (r.next(s)) blocks.add(s.cid, s.block);
            const ByteView* commit = blocks.find(r.root());
            if (!commit || cbor::validate(*commit)) continue;
            cbor::Value data = cbor::Value::of(*commit).get("data");
            if (!data.is(cbor::Kind::link)) continue;
            mst::Tree t;
            if (t.open(data.as_link(), mst::BlockSource(blocks)) != Errc::ok) continue;
            t.walk([&](std::string_view key, ByteView value) {
                const ByteView* rec = blocks.find(value);
                if (!rec || cbor::validate(*rec)) return;
                bool post = key.starts_with("app.bsky.feed.post/"), profile = key.starts_with("app.bsky.actor.profile/");
                if (!post && !profile) return;
                std::string text;
                dag_json::append(cbor::Value::of(*rec), text);
                auto j = nlohmann::json::parse(text, nullptr, false);
                if (j.is_discarded() || !j.is_object()) return;
                (post ? corpus_posts : corpus_profiles).push_back(std::move(j));
            });
        }
    }

    // -- records ----------------------------------------------------------------------------

    std::string datetime(std::int64_t us) { return syntax::format_datetime_micros(us); }

    std::string words(std::size_t n) {
        std::string s;
        for (std::size_t i = 0; i < n; ++i) {
            if (i) s += ' ';
            s += kWords[rng.below(sizeof kWords / sizeof kWords[0])];
        }
        return s;
    }

    // -- entropic records (Options::entropic_records) -----------------------------------------
    // Real records are mostly about the rest of the network: a like names a post by a DID and
    // a TID that the segment has not seen, with a CID that is 32 random bytes in base32. Post
    // text is natural language: words of a large vocabulary with Zipf-distributed frequency.

    std::vector<std::string> vocab;
    std::unique_ptr<Zipf> vocab_zipf;

    void build_vocab() {
        static const char* const onsets[] = {"b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s",
                                             "t", "v", "w", "y", "z", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gr",
                                             "pl", "pr", "sh", "sl", "sp", "st", "str", "th", "tr", "wh", "", ""};
        static const char* const vowels[] = {"a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ee", "oo", "ou", "ie", "y"};
        static const char* const codas[] = {"", "", "", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "st", "ck", "th", "rt", "ll", "ss", "ght"};
        Rng vr(0x766f636162756cULL);  // one vocabulary for every seed
        std::unordered_set<std::string> seen;
        for (const char* w : kWords)
            if (seen.insert(w).second) vocab.emplace_back(w);
        while (vocab.size() < 40000) {
            std::size_t syllables = 1 + (vocab.size() > 200) + (vocab.size() > 3000) + vr.below(2);
            std::string w;
            for (std::size_t k = 0; k < syllables; ++k) {
                w += onsets[vr.below(sizeof onsets / sizeof onsets[0])];
                w += vowels[vr.below(sizeof vowels / sizeof vowels[0])];
                w += codas[vr.below(sizeof codas / sizeof codas[0])];
            }
            if (seen.insert(w).second) vocab.push_back(std::move(w));
        }
        vocab_zipf = std::make_unique<Zipf>(vocab.size(), 1.0);
    }

    std::string random_did() {
        static const char kB32[] = "abcdefghijklmnopqrstuvwxyz234567";
        std::string d = "did:plc:";
        for (int i = 0; i < 24; ++i) d += kB32[rng.below(32)];
        return d;
    }

    std::array<std::uint8_t, cid::kBlessedLen> random_cid(std::uint8_t codec) {
        std::array<std::uint8_t, cid::kBlessedLen> c{0x01, codec, 0x12, 0x20};
        for (std::size_t k = 4; k < c.size(); k += 8) {
            std::uint64_t v = rng.next();
            std::memcpy(c.data() + k, &v, 8);
        }
        return c;
    }

    // A post somewhere on the network: 85% of likes/reposts/replies, the rest simulated posts.
    std::pair<std::string, std::string> network_post() {
        if (!recent_posts.empty() && rng.uniform() < 0.15) return recent_posts[rng.below(recent_posts.size())];
        auto c = random_cid(0x71);
        std::int64_t age = std::int64_t(std::exp(rng.uniform() * std::log(30.0 * 86400e6)));  // log-uniform, 1 µs … 30 days
        return {"at://" + random_did() + "/app.bsky.feed.post/" + syntax::tid_from(now_us - age, unsigned(rng.below(1024))),
                cid::to_string(ByteView{c.data(), c.size()})};
    }

    std::string sentence_text() {
        double n = std::exp(std::log(12.0) + 0.9 * rng.normal());
        std::size_t words_n = std::size_t(std::clamp(n, 1.0, 55.0));
        std::string t;
        for (std::size_t i = 0; i < words_n; ++i) {
            if (i) t += rng.uniform() < 0.08 ? ". " : rng.uniform() < 0.06 ? ", " : " ";
            std::string w = vocab[vocab_zipf->sample(rng)];
            if ((i == 0 || t.ends_with(". ")) && !w.empty() && w[0] >= 'a' && w[0] <= 'z') w[0] = char(w[0] - 32);
            t += w;
        }
        double u = rng.uniform();
        if (u < 0.05) t += " https://" + vocab[vocab_zipf->sample(rng)] + ".com/" + random_did().substr(8, 10);
        else if (u < 0.10) t += " \xf0\x9f\x98\x82";
        else if (u < 0.12) t += " @" + vocab[vocab_zipf->sample(rng)] + ".bsky.social";
        return t;
    }

    static void strong_ref(cbor::Writer& w, const std::pair<std::string, std::string>& p) {
        w.map(2);
        w.text("cid");
        w.text(p.second);
        w.text("uri");
        w.text(p.first);
    }

    std::vector<std::uint8_t> make_entropic_record(std::string_view collection) {
        std::vector<std::uint8_t> out;
        cbor::Writer w(out);
        std::string created = datetime(now_us - std::int64_t(rng.below(2'000'000)));
        if (collection == "app.bsky.feed.like" || collection == "app.bsky.feed.repost") {
            bool via = rng.uniform() < 0.2;  // liked or reposted through someone's repost
            w.map(3 + via);
            if (via) {
                auto c = random_cid(0x71);
                w.text("via");
                strong_ref(w, {"at://" + random_did() + "/app.bsky.feed.repost/" + syntax::tid_from(now_us - std::int64_t(rng.below(86400'000'000ULL)), unsigned(rng.below(1024))),
                               cid::to_string(ByteView{c.data(), c.size()})});
            }
            w.text("$type");
            w.text(collection);
            w.text("subject");
            strong_ref(w, network_post());
            w.text("createdAt");
            w.text(created);
        } else if (collection == "app.bsky.graph.follow") {
            w.map(3);
            w.text("$type");
            w.text(collection);
            w.text("subject");
            w.text(rng.uniform() < 0.5 ? did_of(rng.below(accounts.size())) : random_did());
            w.text("createdAt");
            w.text(created);
        } else if (collection == "app.bsky.feed.post") {
            bool reply = rng.uniform() < 0.4, images = rng.uniform() < 0.2;
            w.map(4 + reply + images);
            w.text("text");
            w.text(sentence_text());
            w.text("$type");
            w.text(collection);
            if (images) {
                w.map(2);  // embed: {$type, images: [{alt, image: blob, aspectRatio}]}
                w.text("$type");
                w.text("app.bsky.embed.images");
                w.text("images");
                w.array(1);
                w.map(3);
                w.text("alt");
                w.text(rng.uniform() < 0.7 ? std::string() : sentence_text());
                w.text("image");
                w.map(4);
                w.text("ref");
                auto blob = random_cid(0x55);
                w.link(ByteView{blob.data(), blob.size()});
                w.text("size");
                w.uint(50'000 + rng.below(900'000));
                w.text("$type");
                w.text("blob");
                w.text("mimeType");
                w.text("image/jpeg");
                w.text("aspectRatio");
                w.map(2);
                w.text("width");
                w.uint(600 + rng.below(1400));
                w.text("height");
                w.uint(600 + rng.below(1400));
            }
            w.text("langs");
            w.array(1);
            w.text(rng.uniform() < 0.7 ? "en" : rng.uniform() < 0.5 ? "ja" : "pt");
            if (reply) {
                w.text("reply");
                w.map(2);
                auto root = network_post();
                w.text("root");
                strong_ref(w, root);
                w.text("parent");
                strong_ref(w, rng.uniform() < 0.5 ? root : network_post());
            }
            w.text("createdAt");
            w.text(created);
        } else {  // app.bsky.actor.profile
            w.map(3);
            w.text("$type");
            w.text("app.bsky.actor.profile");
            w.text("description");
            w.text(sentence_text());
            w.text("displayName");
            w.text(vocab[vocab_zipf->sample(rng)] + " " + vocab[vocab_zipf->sample(rng)]);
        }
        return out;
    }

    std::pair<std::string, std::string> subject_post() {
        if (!recent_posts.empty()) return recent_posts[rng.below(recent_posts.size())];
        // Before any post exists: a plausible post of another account, from before the simulation.
        const std::string other = did_of(rng.below(accounts.size()));
        std::uint8_t b[8];
        std::uint64_t c = ++fake_counter;
        std::memcpy(b, &c, 8);
        return {"at://" + other + "/app.bsky.feed.post/" + syntax::tid_from(opt.start_us - 3600'000'000LL, 7),
                cid::to_string(cid::compute(cid::kCodecDagCbor, ByteView{b, 8}))};
    }

    std::vector<std::uint8_t> encode_json(nlohmann::json& j) {
        std::vector<std::uint8_t> out;
        cbor::Writer w(out);
        std::string where;
        if (dag_json::encode(j, w, where) != Errc::ok) out.clear();
        return out;
    }

    std::vector<std::uint8_t> make_record(std::string_view collection) {
        if (opt.entropic_records) return make_entropic_record(collection);
        std::vector<std::uint8_t> out;
        cbor::Writer w(out);
        std::string created = datetime(now_us);
        if (collection == "app.bsky.feed.like" || collection == "app.bsky.feed.repost") {
            auto [uri, cid] = subject_post();
            w.map(3);
            w.text("$type");
            w.text(collection);
            w.text("subject");
            w.map(2);
            w.text("cid");
            w.text(cid);
            w.text("uri");
            w.text(uri);
            w.text("createdAt");
            w.text(created);
        } else if (collection == "app.bsky.graph.follow") {
            w.map(3);
            w.text("$type");
            w.text(collection);
            w.text("subject");
            w.text(did_of(rng.below(accounts.size())));
            w.text("createdAt");
            w.text(created);
        } else if (collection == "app.bsky.feed.post") {
            if (!corpus_posts.empty()) {
                nlohmann::json j = corpus_posts[rng.below(corpus_posts.size())];
                j["createdAt"] = created;
                out = encode_json(j);
                if (!out.empty()) {
                    ++stats.corpus_records;
                    return out;
                }
            }
            w.map(4);
            w.text("text");
            w.text(words(3 + rng.below(25)));
            w.text("$type");
            w.text(collection);
            w.text("langs");
            w.array(1);
            w.text("en");
            w.text("createdAt");
            w.text(created);
        } else {  // app.bsky.actor.profile
            if (!corpus_profiles.empty()) {
                nlohmann::json j = corpus_profiles[rng.below(corpus_profiles.size())];
                out = encode_json(j);
                if (!out.empty()) {
                    ++stats.corpus_records;
                    return out;
                }
            }
            w.map(3);
            w.text("$type");
            w.text("app.bsky.actor.profile");
            w.text("description");
            w.text(words(5 + rng.below(15)));
            w.text("displayName");
            w.text(words(2));
        }
        return out;
    }

    // Op mix per op (man/mesh-sim.1.md): likes 70%, posts 11%, reposts 10%, follows 6%,
    // deletes 2%, profile updates 1%.
    const char* pick_collection() { return pick_collection(rng); }
    static const char* pick_collection(Rng& g) {
        double u = g.uniform();
        if (u < 0.70 / 0.97) return "app.bsky.feed.like";
        if (u < 0.81 / 0.97) return "app.bsky.feed.post";
        if (u < 0.91 / 0.97) return "app.bsky.feed.repost";
        return "app.bsky.graph.follow";
    }

    // -- repositories ---------------------------------------------------------------------

    std::string next_rev(Account& a) {
        std::int64_t us = std::max(now_us, a.rev_us + 1);
        a.rev_us = us;
        a.has_rev = true;
        return rev_of(a);
    }

    Errc materialize(Account& a) {
        a.repo = std::make_unique<HeldRepo>();
        Repo& r = *a.repo;
        cid::Cid empty = cid::compute(cid::kCodecDagCbor, ByteView{kEmptyNode, sizeof kEmptyNode});
        r.add_block(empty.bytes(), ByteView{kEmptyNode, sizeof kEmptyNode});
        Finder f{&r};
        Errc e = tree.open(empty.bytes(), mst::BlockSource(f));
        if (e != Errc::ok) return e;
        double n = std::exp(std::log(opt.repo_median) + opt.repo_sigma * rng.normal());
        std::size_t count = std::size_t(std::min(double(opt.repo_cap), std::max(0.0, n)));
        std::int64_t span = 2 * 365 * 86400'000'000LL;
        for (std::size_t i = 0; i < count; ++i) {
            std::string path = std::string(pick_collection()) + "/" +
                               syntax::tid_from(opt.start_us - 86400'000'000LL - std::int64_t(rng.below(std::uint64_t(span))),
                                                unsigned(rng.below(1024)));
            if (r.key_pos.count(path)) continue;
            std::uint8_t b[8];
            std::uint64_t c = ++fake_counter;
            std::memcpy(b, &c, 8);
            cid::Cid v = cid::compute(cid::kCodecDagCbor, ByteView{b, 8});
            ByteView prev;
            if ((e = tree.put(path, v.bytes(), prev)) != Errc::ok) return e;
            r.add_key(path);
        }
        if (rng.uniform() < 0.8) {
            std::uint8_t b[8] = {'p', 'r', 'o', 'f'};
            cid::Cid v = cid::compute(cid::kCodecDagCbor, ByteView{b, 8});
            ByteView prev;
            if ((e = tree.put("app.bsky.actor.profile/self", v.bytes(), prev)) != Errc::ok) return e;
            r.has_profile = true;
        }
        e = tree.root_cid(r.root, [&](ByteView c, ByteView block) { r.add_block(c, block); });
        if (e != Errc::ok) return e;
        a.rev_us = opt.start_us - std::int64_t(rng.below(86400'000'000ULL));
        a.has_rev = true;
        r.gc_at = std::max<std::size_t>(4096, 2 * r.store.size());
        return Errc::ok;
    }

    // Regenerable repositories. The initial records come from the account's own seed, in key
    // order without sorting: per collection, sorted TIDs from cumulative exponential gaps. Every
    // key is hashed for its MST height (the tree's shape depends on all of them), but only
    // the nodes that any later operation can reach are encoded: those whose key range touches
    // a *spine* gap — before the first key (the profile record) and after the last key of each
    // collection, where new TIDs land. Other subtrees get a pseudo-CID (random digest, never
    // encoded, never shipped): to the generator's tree they are stubs, and an operation that
    // would need one (a delete deep in old records) fails cleanly and is replaced. So a 15,000-
    // record repository costs ~15,000 SHA-256s of short keys and ~30 node blocks, not 5,000.
    struct InitKey {
        std::uint8_t coll;
        std::int64_t us;
        unsigned clock;
        std::int8_t height;
    };
    static constexpr char kTidAlphabet[] = "234567abcdefghijklmnopqrstuvwxyz";
    static constexpr const char* kInitColls[] = {"app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.feed.repost",
                                                 "app.bsky.graph.follow"};

    struct Spine {
        const std::vector<InitKey>* keys;
        const std::vector<std::size_t>* gaps;  // sorted gap positions (gap g: before key g)
        bool profile;                          // key 0 is app.bsky.actor.profile/self
        std::uint64_t seed;
        Repo* repo;
        std::vector<std::string> key_text;     // scratch for one node's entries
        std::vector<std::uint8_t> enc;

        std::string key(std::size_t i) const {
            if (profile && i == 0) return "app.bsky.actor.profile/self";
            const InitKey& k = (*keys)[i];
            return std::string(kInitColls[k.coll]) + "/" + syntax::tid_from(k.us, k.clock);
        }
        std::array<std::uint8_t, cid::kBlessedLen> pseudo(std::uint64_t a, std::uint64_t b) const {
            std::array<std::uint8_t, cid::kBlessedLen> c{0x01, 0x71, 0x12, 0x20};
            std::uint64_t x = seed ^ (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xc2b2ae3d27d4eb4fULL);
            for (std::size_t k = 4; k < c.size(); k += 8) {
                std::uint64_t v = splitmix64(x);
                std::memcpy(c.data() + k, &v, 8);
            }
            return c;
        }
        bool on_spine(std::size_t lo, std::size_t hi) const {
            auto it = std::lower_bound(gaps->begin(), gaps->end(), lo);
            return it != gaps->end() && *it <= hi;
        }
        // The node at `layer` over keys [lo, hi) (all of height ≤ layer, hi > lo): its CID;
        // its block (and those below it on a spine) go to the repository's store.
        cid::Cid node(int layer, std::size_t lo, std::size_t hi) {
            if (!on_spine(lo, hi)) {
                auto c = pseudo(std::uint64_t(layer) + 1, lo);
                return cid::Cid(ByteView{c.data(), c.size()});
            }
            std::vector<std::size_t> at;  // entries of this layer
            for (std::size_t i = lo; i < hi; ++i)
                if ((*keys)[i].height == layer) at.push_back(i);
            auto child = [&](std::size_t a, std::size_t b) { return a < b ? node(layer - 1, a, b) : cid::Cid(); };
            cid::Cid left = child(lo, at.empty() ? hi : at[0]);
            std::vector<cid::Cid> rights;
            std::vector<std::array<std::uint8_t, cid::kBlessedLen>> values;
            std::vector<std::string> texts;
            for (std::size_t k = 0; k < at.size(); ++k) {
                rights.push_back(child(at[k] + 1, k + 1 < at.size() ? at[k + 1] : hi));
                values.push_back(pseudo(0, at[k]));
                texts.push_back(key(at[k]));
            }
            std::vector<mst::EntryView> entries;
            for (std::size_t k = 0; k < at.size(); ++k)
                entries.push_back({texts[k], ByteView{values[k].data(), values[k].size()}, rights[k].bytes()});
            enc.clear();
            mst::encode_node(left.bytes(), entries, enc);
            cid::Cid c = cid::compute(cid::kCodecDagCbor, ByteView{enc.data(), enc.size()});
            repo->add_block(c.bytes(), ByteView{enc.data(), enc.size()});
            return c;
        }
    };

    Errc regenerate(Account& a) {
        a.repo = std::make_unique<HeldRepo>();
        Repo& r = *a.repo;
        const std::uint64_t rseed = repo_seed(index_of(a));
        Rng ar(rseed);
        double n = std::exp(std::log(opt.repo_median) + opt.repo_sigma * ar.normal());
        std::size_t count = std::size_t(std::min(double(opt.repo_cap), std::max(0.0, n)));
        bool profile = ar.uniform() < 0.8;
        std::size_t per[4] = {0, 0, 0, 0};
        for (std::size_t i = 0; i < count; ++i) {
            const char* c = pick_collection(ar);
            for (std::size_t k = 0; k < 4; ++k)
                if (c == kInitColls[k]) ++per[k];
        }
        std::vector<InitKey> keys;
        keys.reserve(count + 1);
        if (profile) keys.push_back({0, 0, 0, std::int8_t(mst::key_height("app.bsky.actor.profile/self"))});
        std::vector<std::size_t> gaps{0};
        const std::int64_t span = 2 * 365 * 86400'000'000LL, t0 = opt.start_us - 86400'000'000LL - span;
        std::vector<double> cum;
        for (std::uint8_t c = 0; c < 4; ++c) {
            // Sorted uniform times: normalised cumulative sums of exponential gaps.
            cum.assign(per[c] + 1, 0.0);
            double acc = 0;
            for (auto& x : cum) x = acc += -std::log(1.0 - ar.uniform());
            std::int64_t last = t0 - 1;
            char kbuf[64];
            const std::size_t plen = std::strlen(kInitColls[c]) + 1;
            std::memcpy(kbuf, kInitColls[c], plen - 1);
            kbuf[plen - 1] = '/';
            for (std::size_t i = 0; i < per[c]; ++i) {
                std::int64_t us = std::max(last + 1, t0 + std::int64_t(double(span) * cum[i] / acc));
                last = us;
                unsigned clock = unsigned(ar.below(1024));
                // The key "collection/TID" in a reused buffer (syntax::tid_from's encoding).
                const std::uint64_t v = ((std::uint64_t(us) & ((1ULL << 53) - 1)) << 10) | clock;
                for (std::size_t d = 0; d < 13; ++d) kbuf[plen + 12 - d] = kTidAlphabet[(v >> (5 * d)) & 31u];
                keys.push_back({c, us, clock, std::int8_t(mst::key_height(std::string_view(kbuf, plen + 13)))});
            }
            gaps.push_back(keys.size());
        }
        Spine sp{&keys, &gaps, profile, rseed, &r, {}, {}};
        cid::Cid empty = cid::compute(cid::kCodecDagCbor, ByteView{kEmptyNode, sizeof kEmptyNode});
        if (keys.empty()) {
            r.add_block(empty.bytes(), ByteView{kEmptyNode, sizeof kEmptyNode});
            r.root = empty;
        } else {
            int top = 0;
            for (auto& k : keys) top = std::max<int>(top, k.height);
            r.root = sp.node(top, 0, keys.size());
        }
        r.has_profile = profile;
        // Replay the simulation's changes.
        if (a.hist && !a.hist->delta.empty()) {
            Finder f{&r};
            Errc e = tree.open(r.root.bytes(), mst::BlockSource(f));
            for (const Delta& d : a.hist->delta) {
                ByteView prev;
                if (e != Errc::ok) break;
                const std::string path = a.hist->path(d);
                if (d.del) {
                    e = tree.remove(path, prev);
                    r.remove_key(path);
                } else {
                    e = tree.put(path, ByteView{d.value.data(), d.value.size()}, prev);
                    if (path == kProfilePath) r.has_profile = true;
                    else if (prev.empty()) r.add_key(path);
                }
            }
            if (e == Errc::ok) e = tree.root_cid(r.root, [&](ByteView c, ByteView block) { r.add_block(c, block); });
            if (e != Errc::ok) return e;
        }
        if (!a.has_rev) {
            a.rev_us = opt.start_us - std::int64_t(ar.below(86400'000'000ULL));
            a.has_rev = true;
        } else if (!a.hist || !(r.root == a.hist->evicted_root)) {
            return Errc::mst_root_mismatch;  // the rebuild is not the tree that was evicted
        }
        r.gc_at = std::max<std::size_t>(256, 2 * r.store.size());
        return Errc::ok;
    }

    // The repository of `a`, materialized (first touch), rebuilt (after eviction) or as kept.
    Errc ensure_repo(Account& a) {
        if (a.repo) return Errc::ok;
        if (!regenerable()) return materialize(a);
        ++stats.rebuilds;
        Errc e = regenerate(a);
        if (e == Errc::ok) live.push_back(std::size_t(&a - accounts.data()));
        return e;
    }

    bool regenerable() const noexcept { return opt.repo_budget_bytes > 0; }

    // After `a` was used: charge its repository to the budget and, above it, evict the least
    // recently used other repositories down to 3/4 of the budget (batches keep this rare).
    void account_used(Account& a) {
        if (!regenerable() || !a.repo) return;
        a.repo->last_use = ++use_tick;
        std::size_t now = a.repo->approx_bytes();
        charged_total += now - a.repo->charged;
        a.repo->charged = now;
        if (charged_total <= opt.repo_budget_bytes) return;
        std::sort(live.begin(), live.end(), [&](std::size_t x, std::size_t y) { return accounts[x].repo->last_use < accounts[y].repo->last_use; });
        std::size_t kept = 0;
        for (std::size_t i = 0; i < live.size(); ++i) {
            Account& v = accounts[live[i]];
            if (&v != &a && charged_total > opt.repo_budget_bytes / 4 * 3) {
                charged_total -= v.repo->charged;
                if (!v.hist) v.hist = std::make_unique<History>();
                v.hist->evicted_root = v.repo->root;
                v.repo.reset();
                ++stats.evictions;
            } else {
                live[kept++] = live[i];
            }
        }
        live.resize(kept);
        stats.peak_repo_bytes = std::max<std::uint64_t>(stats.peak_repo_bytes, charged_total);
    }

    // Drops node blocks no longer reachable from the root, once the store has doubled.
    Errc maybe_gc(Repo& r) {
        if (r.store.size() < r.gc_at) return Errc::ok;
        std::vector<cid::Cid> live;
        Recorder rec{&r, &live};
        mst::Tree t;
        Errc e = t.open(r.root.bytes(), mst::BlockSource(rec));
        if (e != Errc::ok) return e;
        std::size_t stubs = 0;
        if ((e = t.load_all(stubs)) != Errc::ok) return e;
        std::unordered_set<cid::Cid, CidHash> keep(live.begin(), live.end());
        for (auto it = r.store.begin(); it != r.store.end();) {
            if (keep.count(it->first)) {
                ++it;
            } else {
                r.block_bytes -= it->second.bytes.size();
                it = r.store.erase(it);
            }
        }
        r.gc_at = std::max<std::size_t>(4096, 2 * r.store.size());
        return Errc::ok;
    }

    Errc fail(std::string what) {
        error = std::move(what);
        return Errc::bad_argument;
    }

    // Signed commit block for (did, rev, data, prev: null).
    Errc commit_block(const Account& a, ByteView data, commit::Block& out) {
        return commit::build(commit::Fields{cur.did, rev_of(a), data, {}}, cur.priv, out);
    }

    void header(cbor::Writer& w, std::string_view t) {
        w.map(2);
        w.text("t");
        w.text(t);
        w.text("op");
        w.uint(1);
    }

    // Plans the ops of one commit (distinct paths).
    void plan_ops(Account& a, std::vector<PlannedOp>& ops) {
        Repo& r = *a.repo;
        double u = rng.uniform();
        std::size_t n = u < 0.95 ? 1 : u < 0.99 ? 2 : 3;
        std::unordered_set<std::string> used;
        for (std::size_t i = 0; i < n; ++i) {
            PlannedOp op;
            double k = rng.uniform();
            if (k < 0.02 && !r.keys.empty()) {
                op.action = msg::OpAction::del;
                op.path = r.keys[rng.below(r.keys.size())];
            } else if (k < 0.03) {
                op.path = "app.bsky.actor.profile/self";
                op.action = r.has_profile ? msg::OpAction::update : msg::OpAction::create;
                op.record = make_record("app.bsky.actor.profile");
            } else {
                const char* coll = pick_collection();
                op.action = msg::OpAction::create;
                op.path = std::string(coll) + "/" + syntax::tid_from(now_us + std::int64_t(i), a.clock_id);
                op.record = make_record(coll);
            }
            if (used.count(op.path) || (op.action == msg::OpAction::create && r.key_pos.count(op.path))) continue;
            used.insert(op.path);
            if (!op.record.empty()) op.cid = cid::compute(cid::kCodecDagCbor, op.record);
            ops.push_back(std::move(op));
        }
    }

    Errc gen_commit(Account& a, std::vector<std::uint8_t>& wire, std::vector<PlannedOp> ops = {}) {
        if (!a.repo) {
            if (Errc e = ensure_repo(a); e != Errc::ok) return fail("materialize " + cur.did + ": " + tree.error_detail());
        }
        Repo& r = *a.repo;
        if (ops.empty()) plan_ops(a, ops);
        cid::Cid old_root = r.root;
        std::string since = rev_of(a);
        Finder f{&r};
        Errc e = tree.open(r.root.bytes(), mst::BlockSource(f));
        for (std::size_t k = 0; k < ops.size() && e == Errc::ok;) {
            PlannedOp& op = ops[k];
            ByteView prev;
            if (op.action == msg::OpAction::del) e = tree.remove(op.path, prev);
            else e = tree.put(op.path, op.cid.bytes(), prev);
            if (e == mst::kErrProofMissing && regenerable()) {
                // Needs a subtree that a regenerable repository never encodes: the tree is as
                // it was; drop the op, and if none is left, write a like instead.
                e = Errc::ok;
                ++stats.ops_replaced;
                if (ops.size() == 1) {
                    op.action = msg::OpAction::create;
                    op.path = "app.bsky.feed.like/" + syntax::tid_from(now_us, a.clock_id);
                    op.record = make_record("app.bsky.feed.like");
                    op.cid = cid::compute(cid::kCodecDagCbor, op.record);
                } else {
                    ops.erase(ops.begin() + std::ptrdiff_t(k));
                }
                continue;
            }
            op.prev = cid::Cid(prev);
            if (op.action == msg::OpAction::update && prev.empty()) op.action = msg::OpAction::create;
            ++k;
        }
        cid::Cid new_root;
        std::vector<cid::Cid> proof;  // every new node (as a PDS ships them) + what inversion reads
        if (e == Errc::ok)
            e = tree.root_cid(new_root, [&](ByteView c, ByteView block) {
                r.add_block(c, block);
                proof.push_back(cid::Cid(c));
            });
        if (e != Errc::ok) return fail("apply ops for " + cur.did + ": " + tree.error_detail());

        // Proof: replay the verifier's work on the new tree, recording the nodes it reads.
        Recorder rec{&r, &proof};
        mst::Tree t;
        e = t.open(new_root.bytes(), mst::BlockSource(rec));
        for (auto& op : ops) {
            ByteView v;
            if (e == Errc::ok) e = t.get(op.path, v);
        }
        std::vector<const PlannedOp*> order;
        for (auto& op : ops) order.push_back(&op);
        std::sort(order.begin(), order.end(), [](const PlannedOp* x, const PlannedOp* y) {
            bool dx = x->action == msg::OpAction::del, dy = y->action == msg::OpAction::del;
            return dx != dy ? dx : x->path < y->path;
        });
        for (const PlannedOp* op : order) {
            ByteView prev;
            if (e != Errc::ok) break;
            if (op->action == msg::OpAction::create) e = t.remove(op->path, prev);
            else e = t.put(op->path, op->prev.bytes(), prev);
        }
        cid::Cid back;
        if (e == Errc::ok) e = t.root_cid(back);
        if (e != Errc::ok || !(back == old_root)) return fail("self-check: inversion of " + cur.did + " does not give the previous root");
        // Empty intermediate nodes (no entries, only `l`) that the verification read: ship the
        // nodes below them down to the first non-empty one. Our inverter can merge across such a
        // chain without opening its end, but other verifiers (the TypeScript reference) walk it.
        for (std::size_t k = 0; k < proof.size(); ++k) {
            const ByteView* b = r.find(proof[k].bytes());
            mst::NodeData nd;
            if (b && nd.decode(*b) == Errc::ok && nd.entries().empty() && !nd.left().empty() && r.find(nd.left()))
                proof.push_back(cid::Cid(nd.left()));
        }
        ++stats.commits;
        next_rev(a);
        commit::Block cb;
        if (commit_block(a, new_root.bytes(), cb) != Errc::ok) return fail("signing key of " + cur.did + " is invalid");
        std::vector<std::uint8_t> car;
        car::append_header(car, cb.cid.bytes());
        car::append_section(car, cb.cid.bytes(), cb.bytes);
        std::sort(proof.begin(), proof.end(), [](const cid::Cid& x, const cid::Cid& y) {
            return std::lexicographical_compare(x.bytes().begin(), x.bytes().end(), y.bytes().begin(), y.bytes().end());
        });
        proof.erase(std::unique(proof.begin(), proof.end()), proof.end());
        stats.proof_blocks += proof.size();
        for (auto& c : proof) car::append_section(car, c.bytes(), *r.find(c.bytes()));
        for (auto& op : ops)
            if (!op.record.empty()) car::append_section(car, op.cid.bytes(), op.record);

        wire.clear();
        cbor::Writer w(wire);
        header(w, "#commit");
        w.map(12);
        w.text("ops");
        w.array(ops.size());
        for (auto& op : ops) {
            bool has_prev = op.action != msg::OpAction::create;
            w.map(has_prev ? 4 : 3);
            w.text("cid");
            if (op.action == msg::OpAction::del) w.null();
            else w.link(op.cid.bytes());
            w.text("path");
            w.text(op.path);
            if (has_prev) {
                w.text("prev");
                w.link(op.prev.bytes());
            }
            w.text("action");
            w.text(op.action == msg::OpAction::create ? "create" : op.action == msg::OpAction::update ? "update" : "delete");
        }
        w.text("rev");
        w.text(rev_of(a));
        w.text("seq");
        w.uint(std::uint64_t(seq++));
        w.text("repo");
        w.text(cur.did);
        w.text("time");
        w.text(datetime(now_us));
        w.text("blobs");
        w.array(0);
        w.text("since");
        w.text(since);
        w.text("blocks");
        w.bytes(car);
        w.text("commit");
        w.link(cb.cid.bytes());
        w.text("rebase");
        w.boolean(false);
        w.text("tooBig");
        w.boolean(false);
        w.text("prevData");
        w.link(old_root.bytes());

        // Account bookkeeping.
        for (auto& op : ops) {
            ++stats.ops;
            if (regenerable()) {
                if (!a.hist) a.hist = std::make_unique<History>();
                a.hist->add(op.path, op.action == msg::OpAction::del, op.cid);
            }
            switch (op.action) {
            case msg::OpAction::create:
                ++stats.creates;
                if (op.path == "app.bsky.actor.profile/self") r.has_profile = true;
                else r.add_key(op.path);
                if (op.path.starts_with("app.bsky.feed.post/")) {
                    std::pair<std::string, std::string> p{"at://" + cur.did + "/" + op.path, cid::to_string(op.cid)};
                    if (recent_posts.size() < 4096) recent_posts.push_back(std::move(p));
                    else recent_posts[recent_next++ % recent_posts.size()] = std::move(p);
                }
                break;
            case msg::OpAction::update: ++stats.updates; break;
            case msg::OpAction::del:
                ++stats.deletes;
                r.remove_key(op.path);
                break;
            }
        }
        r.root = new_root;
        if (maybe_gc(r) != Errc::ok) return fail("gc of " + cur.did + " failed");
        account_used(a);
        return Errc::ok;
    }

    // Header, then the payload map of `keys` entries opened with the fields every non-commit
    // event starts with in canonical order: did, [rev,] seq, time. Returns the writer for the rest.
    cbor::Writer begin_event(std::vector<std::uint8_t>& wire, std::string_view t, std::uint64_t keys, const Account& a,
                             bool with_rev) {
        wire.clear();
        cbor::Writer w(wire);
        header(w, t);
        w.map(keys);
        w.text("did");
        w.text(cur.did);
        if (with_rev) {
            w.text("rev");
            w.text(rev_of(a));
        }
        w.text("seq");
        w.uint(std::uint64_t(seq++));
        w.text("time");
        w.text(datetime(now_us));
        return w;
    }

    void gen_identity(Account& a, std::vector<std::uint8_t>& wire) {
        ++stats.identities;
        cbor::Writer w = begin_event(wire, "#identity", 4, a, false);
        w.text("handle");
        w.text(cur.handle);
    }

    void gen_account(Account& a, bool active, std::vector<std::uint8_t>& wire) {
        ++stats.accounts_events;
        a.active = active;
        cbor::Writer w = begin_event(wire, "#account", active ? 4 : 5, a, false);
        w.text("active");
        w.boolean(active);
        if (!active) {
            w.text("status");
            w.text("deactivated");
        }
    }

    Errc gen_sync(Account& a, std::vector<std::uint8_t>& wire) {
        if (!a.repo) {
            if (Errc e = ensure_repo(a); e != Errc::ok) return fail("materialize " + cur.did);
        }
        ++stats.syncs;
        next_rev(a);
        commit::Block cb;
        if (commit_block(a, a.repo->root.bytes(), cb) != Errc::ok) return fail("signing key of " + cur.did + " is invalid");
        std::vector<std::uint8_t> car;
        car::append_header(car, cb.cid.bytes());
        car::append_section(car, cb.cid.bytes(), cb.bytes);
        cbor::Writer w = begin_event(wire, "#sync", 5, a, true);
        w.text("blocks");
        w.bytes(car);
        account_used(a);
        return Errc::ok;
    }

    Errc next(std::vector<std::uint8_t>& wire, std::int64_t& recv) {
        double gap = -std::log(1.0 - rng.uniform()) * 1e6 / opt.events_per_second;
        now_us += std::int64_t(gap) + 1;
        recv = now_us + 20'000 + std::int64_t(-std::log(1.0 - rng.uniform()) * 80'000.0);
        if (replay_mode) {
            if (replay_next >= replay.size()) return fail("replay finished");
            ReplayItem& it = replay[replay_next++];
            now_us = std::max(now_us, it.us);
            recv = now_us + 50'000;
            PlannedOp op;
            op.action = msg::OpAction::create;
            op.path = it.path;
            op.record = std::move(it.record);
            op.cid = cid::compute(cid::kCodecDagCbor, op.record);
            std::vector<PlannedOp> ops;
            ops.push_back(std::move(op));
            return gen_commit(accounts[replay_account], wire, std::move(ops));
        }
        if (with_identities()) recv = std::min(recv, now_us + 999'999);
        Account* picked = nullptr;
        if (Errc e = pick_account(picked, recv); e != Errc::ok) return e;
        Account& a = *picked;
        cur = identity(index_of(a));
        last_pds = cur.pds;
        if (!a.active) {
            gen_account(a, true, wire);  // reactivation; its commits resume afterwards
            return Errc::ok;
        }
        double u = rng.uniform();
        if (u < 0.01) {
            gen_identity(a, wire);
            return Errc::ok;
        }
        if (u < 0.02) {
            gen_account(a, false, wire);
            return Errc::ok;
        }
        if (u < 0.025) return gen_sync(a, wire);
        return gen_commit(a, wire);
    }

    Result<std::size_t> load_replay(const std::string& path, std::string& err) {
        std::string bytes;
        if (!io::read_all(path, bytes, err)) return Errc::io_error;
        auto car_bytes = std::make_shared<std::string>(std::move(bytes));
        car::Reader r;
        if (Located l = r.open(as_bytes(*car_bytes))) {
            err = path + ":" + std::to_string(l.offset) + ": " + std::string(to_string(l.errc));
            return l.errc;
        }
        car::BlockMap blocks;
        car::Section s;
        while (r.next(s)) blocks.add(s.cid, s.block);
        const ByteView* commit = blocks.find(r.root());
        if (!commit || cbor::validate(*commit)) {
            err = path + ": root commit block missing or invalid";
            return Errc::car_bad_header;
        }
        cbor::Value c = cbor::Value::of(*commit);
        std::string did(c.get("did").as_text());
        cbor::Value data = c.get("data");
        if (!syntax::is_did(did) || !data.is(cbor::Kind::link)) {
            err = path + ": commit has no valid did/data";
            return Errc::car_bad_header;
        }
        mst::Tree t;
        Errc e = t.open(data.as_link(), mst::BlockSource(blocks));
        std::size_t missing = 0;
        if (e == Errc::ok)
            e = t.walk([&](std::string_view key, ByteView value) {
                const ByteView* rec = blocks.find(value);
                if (!rec) {
                    ++missing;
                    return;
                }
                std::string_view rkey = key.substr(key.find('/') + 1);
                auto us = syntax::tid_to_micros(rkey);
                replay.push_back(ReplayItem{std::string(key), std::vector<std::uint8_t>(rec->begin(), rec->end()),
                                            us ? *us : 0});
            });
        if (e != Errc::ok || missing) {
            err = path + ": repository tree incomplete (" + (missing ? std::to_string(missing) + " record blocks missing" : t.error_detail()) + ")";
            return e != Errc::ok ? e : Errc::car_bad_section;
        }
        // Records in TID order (non-TID keys such as "self" first), as they were written.
        std::stable_sort(replay.begin(), replay.end(), [](const ReplayItem& x, const ReplayItem& y) {
            std::string_view kx = std::string_view(x.path).substr(x.path.find('/') + 1);
            std::string_view ky = std::string_view(y.path).substr(y.path.find('/') + 1);
            if (x.us != y.us) return x.us < y.us;
            return kx != ky ? kx < ky : x.path < y.path;
        });
        // The repository's account: its real DID, a generated key, an empty starting tree.
        replay_account = 0;
        Account& a = accounts.at(0);
        replay_did = did;
        a.repo = std::make_unique<HeldRepo>();
        cid::Cid empty = cid::compute(cid::kCodecDagCbor, ByteView{kEmptyNode, sizeof kEmptyNode});
        a.repo->add_block(empty.bytes(), ByteView{kEmptyNode, sizeof kEmptyNode});
        a.repo->root = empty;
        a.rev_us = replay.empty() ? opt.start_us : std::max<std::int64_t>(1, replay.front().us - 1);
        a.has_rev = true;
        now_us = a.rev_us;
        replay_mode = true;
        cur = identity(replay_account);
        return replay.size();
    }
};

Result<Options> profile(std::string_view name) {
    Options o;
    if (name == "default") return o;
    if (name != "realistic") return Errc::bad_argument;
    // Calibrated against the relay capture (man/mesh-sim.1.md, PROFILES): 149 DIDs in 150
    // frames needs a large population with a flat activity law; proof depth and node sizes
    // need repositories of ~15,000 records; record entropy needs network-wide references.
    o.accounts = 200'000;
    o.zipf_s = 0.7;
    o.repo_median = 15'000;
    o.repo_budget_bytes = 1ull << 30;
    o.entropic_records = true;
    return o;
}

Generator::Generator(const Options& o) : impl_(std::make_unique<Impl>(o)) {}
Generator::~Generator() = default;

Errc Generator::next(std::vector<std::uint8_t>& wire, std::int64_t& recv) { return impl_->next(wire, recv); }

Result<std::size_t> Generator::load_replay(const std::string& car_path, std::string& err) {
    return impl_->load_replay(car_path, err);
}

nlohmann::json Generator::did_docs() const {
    nlohmann::json docs = nlohmann::json::object();
    std::size_t n = impl_->replay_mode ? 1 : impl_->accounts.size();
    for (std::size_t i = 0; i < n; ++i) {
        std::string did = impl_->did_of(i);
        docs[did] = did_doc(i);
    }
    return docs;
}

nlohmann::json Generator::did_doc(std::size_t i) const {
    const Ident a = impl_->identity(i);
    auto pub = crypto::public_key_of(a.priv);
    return {
        {"@context", {"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"}},
        {"id", a.did},
        {"alsoKnownAs", {"at://" + a.handle}},
        {"verificationMethod",
         {{{"id", a.did + "#atproto"}, {"type", "Multikey"}, {"controller", a.did},
           {"publicKeyMultibase", pub ? crypto::to_multikey(*pub) : std::string()}}}},
        {"service", {{{"id", "#atproto_pds"}, {"type", "AtprotoPersonalDataServer"}, {"serviceEndpoint", a.pds}}}},
    };
}

Errc Generator::write_did_docs(const std::function<Errc(std::string_view)>& out) const {
    // did_docs().dump() without the whole object in memory: the documents in DID order (as
    // nlohmann::json orders an object's keys), each dumped on its own.
    const std::size_t n = impl_->replay_mode ? 1 : impl_->accounts.size();
    std::vector<std::pair<std::array<char, 32>, std::uint32_t>> order(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::string did = impl_->did_of(i);
        order[i].first.fill(0);
        std::memcpy(order[i].first.data(), did.data(), std::min(did.size(), order[i].first.size()));
        order[i].second = std::uint32_t(i);
    }
    // DIDs here are did:plc (32 characters), so the key orders them; on a repeated DID the
    // last account's document wins, as in did_docs().
    std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) {
        return x.first != y.first ? x.first < y.first : x.second > y.second;
    });
    std::string chunk = "{";
    bool first = true;
    std::string prev;
    for (const auto& [key, i] : order) {
        std::string did = impl_->did_of(i);
        if (!first && did == prev) continue;
        if (!first) chunk += ',';
        first = false;
        chunk += nlohmann::json(did).dump();
        chunk += ':';
        chunk += did_doc(i).dump();
        prev = std::move(did);
        if (chunk.size() >= (1u << 20)) {
            if (Errc e = out(chunk); e != Errc::ok) return e;
            chunk.clear();
        }
    }
    chunk += '}';
    return out(chunk);
}

const Stats& Generator::stats() const noexcept { return impl_->stats; }
const std::string& Generator::last_pds() const noexcept { return impl_->last_pds; }

std::int64_t Generator::last_time_us() const noexcept { return impl_->now_us; }

std::size_t Generator::account_count() const noexcept { return impl_->accounts.size(); }

std::string Generator::account_did(std::size_t i) const {
    if (i >= impl_->accounts.size()) throw std::out_of_range("account_did");
    return impl_->did_of(i);
}
const std::string& Generator::error_detail() const noexcept { return impl_->error; }

// --- ShapeMeter ------------------------------------------------------------------------------

struct ShapeMeter::Impl {
    Shape s;
    std::vector<std::uint8_t> wire, nodes, records, commits, out;
    std::unordered_set<std::string> dids;
    std::size_t in_window = 0;
    mst::NodeData nd;

    static std::uint64_t z(const std::vector<std::uint8_t>& b, std::vector<std::uint8_t>& out) {
        if (b.empty()) return 0;
        out.resize(ZSTD_compressBound(b.size()));
        std::size_t r = ZSTD_compress(out.data(), out.size(), b.data(), b.size(), 3);
        return ZSTD_isError(r) ? b.size() : r;
    }
    void close_window() {
        s.z_wire += z(wire, out);
        s.z_nodes += z(nodes, out);
        s.z_records += z(records, out);
        s.z_commits += z(commits, out);
        wire.clear();
        nodes.clear();
        records.clear();
        commits.clear();
        dids.clear();
        in_window = 0;
    }
};

ShapeMeter::ShapeMeter(std::size_t window) : impl_(std::make_unique<Impl>()) { impl_->s.window = window ? window : 1; }
ShapeMeter::~ShapeMeter() = default;

void ShapeMeter::add(ByteView w) {
    Impl& m = *impl_;
    Shape& s = m.s;
    ++s.messages;
    s.wire_bytes += w.size();
    m.wire.insert(m.wire.end(), w.begin(), w.end());
    // Binary CIDs: 0x01 (v1), codec 0x71 or 0x55, 0x12 (sha2-256), 0x20 (32 bytes).
    for (std::size_t i = 0; i + 36 <= w.size(); ++i)
        if (w[i] == 0x01 && (w[i + 1] == 0x71 || w[i + 1] == 0x55) && w[i + 2] == 0x12 && w[i + 3] == 0x20) {
            s.cid_bytes += 36;
            i += 35;
        }
    msg::Message msg;
    if (!msg::parse(w, msg)) {
        if (!msg.did.empty() && !m.dids.emplace(msg.did).second) ++s.repeated_dids;
        if (msg.type == msg::Type::commit) {
            ++s.commits;
            car::Reader r;
            car::Section sec;
            if (!r.open(msg.blocks))
                while (r.next(sec)) {
                    ++s.blocks;
                    if (cid::equal(sec.cid, r.root())) {
                        s.commit_bytes += sec.block.size();
                        m.commits.insert(m.commits.end(), sec.block.begin(), sec.block.end());
                    } else if (m.nd.decode(sec.block) == Errc::ok) {
                        ++s.nodes;
                        s.node_bytes += sec.block.size();
                        m.nodes.insert(m.nodes.end(), sec.block.begin(), sec.block.end());
                    } else {
                        ++s.records;
                        s.record_bytes += sec.block.size();
                        m.records.insert(m.records.end(), sec.block.begin(), sec.block.end());
                    }
                }
        }
    }
    if (++m.in_window == s.window) m.close_window();
}

const Shape& ShapeMeter::finish() {
    if (impl_->in_window) impl_->close_window();
    return impl_->s;
}

std::string describe(const Shape& s) {
    auto per = [](double a, double b) { return b > 0 ? a / b : 0.0; };
    char buf[2048];
    std::snprintf(buf, sizeof buf,
                  "messages %llu\ncommits %llu\nwindow %zu\n"
                  "bytes_per_message %.0f\nblocks_per_commit %.2f\nnodes_per_commit %.2f\n"
                  "node_bytes %.1f\nrecord_bytes %.1f\nrecords_per_commit %.2f\n"
                  "cid_share %.3f\nrepeated_did_share %.4f\n"
                  "zstd_wire %.2f\nzstd_nodes %.2f\nzstd_records %.2f\nzstd_commits %.2f\n",
                  (unsigned long long)s.messages, (unsigned long long)s.commits, s.window,
                  per(double(s.wire_bytes), double(s.messages)), per(double(s.blocks), double(s.commits)),
                  per(double(s.nodes), double(s.commits)), per(double(s.node_bytes), double(s.nodes)),
                  per(double(s.record_bytes), double(s.records)), per(double(s.records), double(s.commits)),
                  per(double(s.cid_bytes), double(s.wire_bytes)), per(double(s.repeated_dids), double(s.messages)),
                  per(double(s.wire_bytes), double(s.z_wire)), per(double(s.node_bytes), double(s.z_nodes)),
                  per(double(s.record_bytes), double(s.z_records)), per(double(s.commit_bytes), double(s.z_commits)));
    return buf;
}

}  // namespace sov::sim
