#include "sovereign/verify_state.h"

#include "sovereign/blake3.h"
#include "sovereign/file.h"

#include "sovereign/syntax.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <unistd.h>
#include <vector>

namespace sov::verify {

State::State(std::size_t max_dids, std::size_t max_srcs)
    : max_dids_(max_dids ? max_dids : 1), max_srcs_(max_srcs ? max_srcs : 1) {}

namespace {
// The one LRU step of both tables: the entry for `key`, moved to the front, or a new one at
// the front after evicting the least recently used when `cap` is reached. `fresh` says which.
template <class Map, class List>
typename Map::mapped_type& lru_touch(Map& map, List& lru, std::size_t cap, std::string_view key,
                                     std::uint64_t& evictions, bool& fresh) {
    if (auto it = map.find(key); it != map.end()) {
        lru.splice(lru.begin(), lru, it->second.lru);
        fresh = false;
        return it->second;
    }
    if (map.size() >= cap) {
        map.erase(lru.back());
        lru.pop_back();
        ++evictions;
    }
    lru.emplace_front(key);
    auto& e = map[lru.front()];
    e.lru = lru.begin();
    fresh = true;
    return e;
}
}  // namespace

State::DidState* State::find(std::string_view did) {
    auto it = dids_.find(did);
    if (it == dids_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return &it->second;
}

State::DidState& State::touch(std::string_view did) {
    bool fresh = false;
    return lru_touch(dids_, lru_, max_dids_, did, evictions_, fresh);
}

State::SrcState& State::touch_src(std::string_view src, bool& fresh) {
    return lru_touch(seqs_, src_lru_, max_srcs_, src, src_evictions_, fresh);
}

void State::apply(const Facts& f, std::string_view src, std::int64_t recv, Outcome& o) {
    if (!f.parsed) return;
    // Sequence: per src, strictly increasing; a bad-seq frame does not move the mark.
    if (f.seq > 0) {
        bool fresh = false;
        SrcState& ss = touch_src(src, fresh);
        if (!fresh && f.seq <= ss.seq) {
            o = Outcome{Verdict::bad_seq, "seq " + std::to_string(f.seq) + " not greater than the previous " +
                                              std::to_string(ss.seq) + " from " + std::string(src)};
            return;
        }
        ss.seq = f.seq;
    }
    if (!passes(o.verdict)) return;
    switch (f.type) {
    case msg::Type::account: {
        DidState& s = touch(f.did);
        s.inactive = !f.active;
        return;
    }
    case msg::Type::tombstone: touch(f.did).inactive = true; return;  // deprecated: treat as deleted
    case msg::Type::commit:
    case msg::Type::sync: break;
    default: return;
    }
    DidState* s = find(f.did);
    if (s && s->inactive) {
        o = Outcome{Verdict::inactive, "account " + std::string(f.did) + " is inactive"};
        return;
    }
    if (f.type == msg::Type::sync && s && !s->rev.empty() && f.rev == std::string_view(s->rev)) {
        // The current state restated (docs/protocol.md §6 "Handling #sync": ignore it): ok when
        // the commit is the one accepted (version-1 state files kept no commit CID: the MST
        // root stands in), stale-rev when the same rev names another commit.
        bool same = s->commit.empty() ? s->data == f.data : s->commit == f.commit;
        if (!same)
            o = Outcome{Verdict::stale_rev, "rev " + std::string(f.rev) + " restated with another commit than the one accepted"};
        return;
    }
    if (s && !s->rev.empty() && f.rev <= std::string_view(s->rev)) {  // TIDs sort lexically
        o = Outcome{Verdict::stale_rev, "rev " + std::string(f.rev) + " ≤ last accepted " + s->rev};
        return;
    }
    if (recv > 0) {
        auto us = syntax::tid_to_micros(f.rev);
        if (us && *us > recv + kFutureRevWindowUs) {
            o = Outcome{Verdict::future_rev, "rev " + std::string(f.rev) + " is " +
                                                 std::to_string((*us - recv) / 1'000'000) + " s ahead of recv"};
            return;
        }
    }
    if (f.type == msg::Type::commit && s && !s->rev.empty()) {
        bool since_ok = f.since && *f.since == s->rev;
        bool data_ok = f.prev_data.empty() || s->data == f.prev_data;
        if (!since_ok || !data_ok)
            o = Outcome{Verdict::ok_gap, std::string(since_ok ? "prevData" : "since") + " does not chain to the last accepted commit " + s->rev};
    }
    if (!s) s = &touch(f.did);
    s->rev.assign(f.rev);  // a higher-rev #sync resets the DID's state to its commit
    s->commit = cid::Cid(f.commit);
    s->data = cid::Cid(f.data);
}

// State file: docs/format-verify-state.md. Version 2 (written): "SOVSTATE" u32 version, u64
// src count, per src in LRU order (oldest first) {u16 len, bytes, i64 seq}; u64 DID count, per
// DID in LRU order {u16 len, bytes, u8 flags (1 = inactive), u8 rev len, rev, u8 cid len,
// commit CID, u8 cid len, MST root CID}; then the BLAKE3 hash of every byte before it.
// Version 1 (read): no commit CID, no hash, sources in no particular order.
namespace {
constexpr std::uint32_t kVersion = 2;
void put_u(std::vector<std::uint8_t>& o, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) o.push_back(std::uint8_t(v >> (8 * i)));
}
void put_s(std::vector<std::uint8_t>& o, std::string_view s, int n) {
    put_u(o, s.size(), n);
    o.insert(o.end(), s.begin(), s.end());
}
}  // namespace

Errc State::save(const std::string& path, std::string& err) const {
    std::vector<std::uint8_t> o;
    o.insert(o.end(), {'S', 'O', 'V', 'S', 'T', 'A', 'T', 'E'});
    put_u(o, kVersion, 4);
    put_u(o, seqs_.size(), 8);
    for (auto it = src_lru_.rbegin(); it != src_lru_.rend(); ++it) {
        put_s(o, *it, 2);
        put_u(o, std::uint64_t(seqs_.find(*it)->second.seq), 8);
    }
    put_u(o, dids_.size(), 8);
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
        const DidState& s = dids_.find(*it)->second;
        put_s(o, *it, 2);
        o.push_back(s.inactive ? 1 : 0);
        put_s(o, s.rev, 1);
        put_s(o, as_chars(s.commit.bytes()), 1);
        put_s(o, as_chars(s.data.bytes()), 1);
    }
    blake3::Digest h = blake3::hash(ByteView{o.data(), o.size()});
    o.insert(o.end(), h.begin(), h.end());
    // Temp file, fsync, rename, fsync of the directory: a crash leaves the old state or the new.
    return file::atomic_replace(path, o, err);
}

Errc State::load(const std::string& path, std::string& err) {
    std::vector<std::uint8_t> b;
    if (Errc e = file::read_file(path, b, err); e != Errc::ok) {
        if (e == Errc::io_not_found) {
            err.clear();
            return Errc::ok;  // no state yet: start empty
        }
        return e;
    }
    std::size_t p = 0, end = b.size();
    bool bad = false;
    auto get_u = [&](int n) -> std::uint64_t {
        if (bad || end - p < std::size_t(n)) { bad = true; return 0; }
        std::uint64_t v = 0;
        for (int i = 0; i < n; ++i) v |= std::uint64_t(b[p + std::size_t(i)]) << (8 * i);
        p += std::size_t(n);
        return v;
    };
    auto get_s = [&](int n) -> std::string {
        std::size_t len = std::size_t(get_u(n));
        if (bad || end - p < len) { bad = true; return {}; }
        std::string s(reinterpret_cast<const char*>(b.data() + p), len);
        p += len;
        return s;
    };
    if (b.size() < 12 || std::memcmp(b.data(), "SOVSTATE", 8) != 0) {
        err = path + ":0: not a cbor-verify state file";
        return Errc::state_bad_magic;
    }
    p = 8;
    std::uint64_t version = get_u(4);
    if (version != 1 && version != 2) {
        err = path + ":8: unknown state file version " + std::to_string(version);
        return Errc::state_bad_version;
    }
    if (version == 2) {
        // The hash first: a damaged file is reported as such, not as whatever its bytes decode to.
        if (b.size() < 12 + blake3::out_len) {
            err = path + ":" + std::to_string(b.size()) + ": state file truncated";
            return Errc::state_truncated;
        }
        end = b.size() - blake3::out_len;
        blake3::Digest h = blake3::hash(ByteView{b.data(), end});
        if (std::memcmp(h.data(), b.data() + end, h.size()) != 0) {
            err = path + ":" + std::to_string(end) + ": state file damaged (its BLAKE3 hash does not match; truncated or altered)";
            return Errc::state_corrupt;
        }
    }
    std::uint64_t nsrc = get_u(8);
    for (std::uint64_t i = 0; i < nsrc && !bad; ++i) {
        std::string src = get_s(2);
        std::int64_t seq = std::int64_t(get_u(8));
        if (bad) break;
        bool fresh = false;
        touch_src(src, fresh).seq = seq;
    }
    std::uint64_t ndid = get_u(8);
    for (std::uint64_t i = 0; i < ndid && !bad; ++i) {
        std::string did = get_s(2);
        std::uint64_t flags = get_u(1);
        std::string rev = get_s(1);
        std::string commit = version >= 2 ? get_s(1) : std::string();
        std::string data = get_s(1);
        if (bad) break;
        DidState& s = touch(did);
        s.inactive = flags & 1;
        s.rev = rev;
        s.commit = cid::Cid(as_bytes(commit));
        s.data = cid::Cid(as_bytes(data));
    }
    if (bad) {
        err = path + ":" + std::to_string(p) + ": state file truncated";
        return Errc::state_truncated;
    }
    if (p != end) {
        err = path + ":" + std::to_string(p) + ": bytes after the last state record";
        return Errc::state_corrupt;
    }
    return Errc::ok;
}

}  // namespace sov::verify
