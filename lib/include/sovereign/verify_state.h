// sovereign/verify_state.h — the stateful verdicts of docs/design.md §3: bad-seq, inactive,
// stale-rev, future-rev, ok-gap. Source: docs/protocol.md §1 "Sequence and cursor" and
// "Consumer checklist" steps 3, 6, 7; §8 (#account).
//
// State is per `src` (last seq) and per DID (last accepted rev, commit CID and MST root
// `data`, and whether the account is known inactive). Both tables are LRUs bounded by a
// count, so memory stays bounded however long the input and however many distinct DIDs or
// `src` labels it carries; an evicted DID is simply "not seen yet" (its next commit is
// accepted without chaining), an evicted src restarts its seq check at its next frame. It can be saved and loaded so a
// restarted pipeline continues where it stopped (format in docs/format-verify-state.md).
#pragma once

#include "sovereign/cid.h"
#include "sovereign/errc.h"
#include "sovereign/verify.h"

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sov::verify {

inline constexpr std::int64_t kFutureRevWindowUs = 5 * 60 * 1'000'000LL;  ///< indigo: 5 minutes

class State {
public:
    /// `max_dids`: LRU capacity of the per-DID table (≥ 1); `max_srcs`: of the per-src
    /// seq table (≥ 1).
    explicit State(std::size_t max_dids = 1u << 20, std::size_t max_srcs = kDefaultMaxSrcs);
    static constexpr std::size_t kDefaultMaxSrcs = 1u << 16;

    /// Combines a stateless outcome with the state, in input order, and updates the state.
    /// Precedence: malformed/too-big (unchanged) > bad-seq > other stateless rejections >
    /// inactive > stale-rev > future-rev > ok-gap > ok. Only accepted commits and syncs move
    /// the per-DID rev/data; any parsed message with a valid seq moves the src's last seq.
    /// `#sync` (docs/protocol.md §6 "Handling #sync"): the same rev and commit as the DID's
    /// last accepted state is `ok` and changes nothing (the reference PDS sends one after
    /// every account creation and reactivation); a higher rev resets the DID's state to it;
    /// a lower rev, or the same rev with another commit, is `stale-rev`.
    /// `recv` = 0 disables future-rev (receive time unknown).
    void apply(const Facts& f, std::string_view src, std::int64_t recv, Outcome& o);

    /// Writes the state atomically and durably (file::atomic_replace: temp file, fsync,
    /// rename, fsync of the directory). Errors: the io_* codes, with "<path>: <reason>" in `err`.
    Errc save(const std::string& path, std::string& err) const;
    /// Loads a state file written by save(); a missing file is not an error (empty state).
    /// Errors: the io_* codes; state_bad_magic, state_bad_version, state_truncated,
    /// state_corrupt (with "<path>:<offset>: <reason>" in `err`).
    Errc load(const std::string& path, std::string& err);

    /// Forgets every DID for which `did_pred(did)` and every src (seq scope) for which
    /// `src_pred(src)` is true, as if never seen (their next frames are checked as first
    /// seen). Returns the number of DIDs forgotten.
    template <class DidPred, class SrcPred>
    std::size_t forget(DidPred did_pred, SrcPred src_pred) {
        std::size_t n = 0;
        for (auto it = dids_.begin(); it != dids_.end();) {
            if (did_pred(std::string_view(it->first))) {
                lru_.erase(it->second.lru);
                it = dids_.erase(it);
                ++n;
            } else {
                ++it;
            }
        }
        for (auto it = seqs_.begin(); it != seqs_.end();) {
            if (src_pred(std::string_view(it->first))) {
                src_lru_.erase(it->second.lru);
                it = seqs_.erase(it);
            } else {
                ++it;
            }
        }
        return n;
    }

    std::size_t did_count() const noexcept { return dids_.size(); }
    std::size_t src_count() const noexcept { return seqs_.size(); }
    std::uint64_t src_evictions() const noexcept { return src_evictions_; }
    std::uint64_t evictions() const noexcept { return evictions_; }

private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    struct DidState {
        std::string rev;   // last accepted rev ("" = none)
        cid::Cid commit;   // last accepted commit CID (empty when loaded from a version-1 file)
        cid::Cid data;     // last accepted MST root
        bool inactive = false;
        std::list<std::string>::iterator lru;
    };
    struct SrcState {
        std::int64_t seq = 0;
        std::list<std::string>::iterator lru;
    };
    DidState* find(std::string_view did);
    DidState& touch(std::string_view did);
    SrcState& touch_src(std::string_view src, bool& fresh);
    std::size_t max_dids_, max_srcs_;
    std::unordered_map<std::string, DidState, Hash, std::equal_to<>> dids_;
    std::list<std::string> lru_;  // front = most recent
    std::unordered_map<std::string, SrcState, Hash, std::equal_to<>> seqs_;
    std::list<std::string> src_lru_;  // front = most recent
    std::uint64_t evictions_ = 0, src_evictions_ = 0;
};

}  // namespace sov::verify
