#include "sovereign/verify_state.h"

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

State::State(std::size_t max_dids) : max_dids_(max_dids ? max_dids : 1) {}

State::DidState* State::find(std::string_view did) {
    auto it = dids_.find(did);
    if (it == dids_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return &it->second;
}

State::DidState& State::touch(std::string_view did) {
    if (DidState* s = find(did)) return *s;
    if (dids_.size() >= max_dids_) {
        dids_.erase(lru_.back());
        lru_.pop_back();
        ++evictions_;
    }
    lru_.emplace_front(did);
    DidState& s = dids_[lru_.front()];
    s.lru = lru_.begin();
    return s;
}

void State::apply(const Facts& f, std::string_view src, std::int64_t recv, Outcome& o) {
    if (!f.parsed) return;
    // Sequence: per src, strictly increasing; a bad-seq frame does not move the mark.
    if (f.seq > 0) {
        auto it = seqs_.find(src);
        if (it != seqs_.end() && f.seq <= it->second) {
            o = Outcome{Verdict::bad_seq, "seq " + std::to_string(f.seq) + " not greater than the previous " +
                                              std::to_string(it->second) + " from " + std::string(src)};
            return;
        }
        if (it == seqs_.end()) seqs_.emplace(std::string(src), f.seq);
        else it->second = f.seq;
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
    s->rev.assign(f.rev);
    s->data = cid::Cid(f.data);
}

// State file (little-endian): "SOVSTATE" u32 version=1, u64 src count, then per src
// {u16 len, bytes, i64 seq}; u64 DID count, then per DID in LRU order (oldest first)
// {u16 len, bytes, u8 flags (1 = inactive), u8 rev len, rev, u8 cid len, cid}.
namespace {
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
    put_u(o, 1, 4);
    put_u(o, seqs_.size(), 8);
    for (auto& [src, seq] : seqs_) {
        put_s(o, src, 2);
        put_u(o, std::uint64_t(seq), 8);
    }
    put_u(o, dids_.size(), 8);
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
        const DidState& s = dids_.at(*it);
        put_s(o, *it, 2);
        o.push_back(s.inactive ? 1 : 0);
        put_s(o, s.rev, 1);
        put_s(o, as_chars(s.data.bytes()), 1);
    }
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
    std::size_t p = 0;
    bool bad = false;
    auto get_u = [&](int n) -> std::uint64_t {
        if (bad || b.size() - p < std::size_t(n)) { bad = true; return 0; }
        std::uint64_t v = 0;
        for (int i = 0; i < n; ++i) v |= std::uint64_t(b[p + std::size_t(i)]) << (8 * i);
        p += std::size_t(n);
        return v;
    };
    auto get_s = [&](int n) -> std::string {
        std::size_t len = std::size_t(get_u(n));
        if (bad || b.size() - p < len) { bad = true; return {}; }
        std::string s(reinterpret_cast<const char*>(b.data() + p), len);
        p += len;
        return s;
    };
    if (b.size() < 12 || std::memcmp(b.data(), "SOVSTATE", 8) != 0) {
        err = path + ":0: not a cbor-verify state file";
        return Errc::state_bad_magic;
    }
    p = 8;
    if (std::uint64_t v = get_u(4); v != 1) {
        err = path + ":8: unknown state file version " + std::to_string(v);
        return Errc::state_bad_version;
    }
    std::uint64_t nsrc = get_u(8);
    for (std::uint64_t i = 0; i < nsrc && !bad; ++i) {
        std::string src = get_s(2);
        seqs_[src] = std::int64_t(get_u(8));
    }
    std::uint64_t ndid = get_u(8);
    for (std::uint64_t i = 0; i < ndid && !bad; ++i) {
        std::string did = get_s(2);
        std::uint64_t flags = get_u(1);
        std::string rev = get_s(1);
        std::string data = get_s(1);
        if (bad) break;
        DidState& s = touch(did);
        s.inactive = flags & 1;
        s.rev = rev;
        s.data = cid::Cid(as_bytes(data));
    }
    if (bad) {
        err = path + ":" + std::to_string(p) + ": state file truncated";
        return Errc::state_truncated;
    }
    if (p != b.size()) {
        err = path + ":" + std::to_string(p) + ": bytes after the last state record";
        return Errc::state_corrupt;
    }
    return Errc::ok;
}

}  // namespace sov::verify
