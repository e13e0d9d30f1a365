// internal/cvl/reader.h — the reader's state (Archive::Impl), shared by reader.cpp,
// query.cpp and compact.cpp.
#pragma once

#include "internal/cvl/common.h"
#include "sovereign/bitset.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>

namespace sov::cvl {
namespace detail {

/// A buffer that grows and is reused, never zero-filled.
struct Buf {
    std::unique_ptr<std::uint8_t[]> p;
    std::size_t cap = 0;
    std::uint8_t* get(std::size_t n) {
        if (n > cap) {
            // Grow with headroom: every new allocation is fresh pages, faulted in one by one
            // as they are first written, so reallocating for each slightly larger segment
            // would fault in the whole arena again.
            const std::size_t want = std::max(n, cap + cap / 2);
            p.reset(new std::uint8_t[want]);  // default-initialised: not zeroed
            cap = want;
        }
        return p.get();
    }
};

/// One checked segment index and its open data files.
struct Loaded {
    index::View x;
    std::vector<int> fds;  ///< per shard, opened on first use (-1 until then)
    Loaded() = default;
    Loaded(const Loaded&) = delete;
    Loaded& operator=(const Loaded&) = delete;
    ~Loaded();
};

}  // namespace detail

struct Archive::Impl {
    struct Seg {  // one index file listed in seg/
        std::uint64_t number = 0;
        std::string path;
        bool have_header = false, header_failed = false;
        index::Header hdr{};
        std::shared_ptr<detail::Loaded> loaded;  // once checked
        Errc code = Errc::ok;                    // why it cannot be loaded
        std::string problem;
        std::string notes;                       // loaded, but data files or dictionary missing (one per line)
    };
    struct Cached {
        const detail::Loaded* seg = nullptr;
        std::uint64_t off = 0, have = 0, used = 0;
        detail::Buf buf;
    };
    static constexpr std::size_t kCacheSlots = 16;
    std::size_t cache_slots = kCacheSlots;  ///< clusters kept decompressed (Archive::cache_clusters)

    std::string dir;
    Params params;
    std::vector<Seg> segs;
    bool full = false;                    // load_all() done
    std::vector<detail::Loaded*> idx;     // the loadable segments, in order (after load_all)
    std::vector<SegmentInfo> infos;
    std::vector<std::string> problems;
    std::vector<ProblemInfo> problem_infos;  // parallel to problems
    /// Indexes replaced by a newer generation while this reader used them (compaction):
    /// kept alive (and their open data files with them) until the archive is closed.
    std::vector<std::shared_ptr<detail::Loaded>> retired;
    /// Dictionaries by id, shared with every other Archive of this process that opened the
    /// same file (a server holds one Archive per subscriber).
    std::map<std::uint32_t, std::shared_ptr<const ZSTD_DDict>> ddicts;
    // The decompression context and the compressed-cluster buffer are the calling thread's
    // (decompress(), read_compressed()): used only between a read and its decompression, so
    // every Archive of a thread (a server's subscribers) shares one of each.
    std::optional<bitset::Set> tombs;
    std::vector<Cached> cache;
    std::uint64_t tick = 0;
    detail::Buf scan_buf;

    Errc load_one(Seg& sg, std::string& err);
    void load_all();
    bool header(Seg& sg);
    /// The ordinals unreadable segment `k` may hold, [lo, hi): between the readable segments
    /// around it, narrowed by its own header where that agrees.
    void possible_range(std::size_t k, std::uint64_t& lo, std::uint64_t& hi);
    SegmentInfo info_of(const detail::Loaded& L) const;
    /// The checked segment holding `ord`. Errors: cvl_no_ordinal, or why its index is unusable.
    Errc locate(std::uint64_t ord, detail::Loaded*& out, std::string& err);
    const ZSTD_DDict* ddict(std::uint32_t id, Errc& code, std::string& err);
    Errc read_compressed(detail::Loaded& L, std::uint64_t bin_off, std::uint32_t c_len, const std::uint8_t*& comp,
                         std::string& where, std::uint64_t& file_off, std::string& err);
    /// Decompresses the frame `comp` (read from `where` at `file_off`) into `out` (capacity
    /// ≥ its content size, which must lie in [need, cap]): whole (checksum verified) or
    /// only until `need` bytes are out.
    Errc decompress(const detail::Loaded& L, const std::uint8_t* comp, std::uint32_t c_len, const std::string& where,
                    std::uint64_t file_off, std::uint64_t need, bool whole, std::uint8_t* out, std::uint64_t cap,
                    std::uint64_t& got, std::string& err);
    /// Message `i` of `L` through the cluster cache. `whole`: decompress the whole cluster
    /// (checksum verified) so that its later messages are cache hits (reading in order);
    /// otherwise only as far as message `i` (a point read).
    Errc message(detail::Loaded& L, std::uint32_t i, ByteView& env, std::string& err, bool whole = false);
    /// Whole-segment scan. Without `on_damage`, the first unreadable cluster fails the scan;
    /// with it, each unreadable cluster is reported (text, ordinals) and skipped. `stale` is
    /// set (and the scan stops) when a failure is explained by a newer generation on disk.
    Errc scan(detail::Loaded& L, const std::function<bool(std::uint64_t, ByteView)>& f, const DamageFn* on_damage,
              bool& stale, std::string& err);
    /// scan() that follows a compaction: if the segment's index was replaced by a newer
    /// generation (and the old data files deleted), it reloads the index and scans again.
    Errc scan_fresh(detail::Loaded*& L, const std::function<bool(std::uint64_t, ByteView)>& f, const DamageFn* on_damage,
                    std::string& err);
    Errc leaves_of(detail::Loaded*& L, std::vector<Hash>& leaves, std::string& err);
    /// True if the index on disk names another data generation than `L` (a compaction
    /// switched it). Reads the 96-byte header only.
    bool generation_changed(const detail::Loaded& L);
    /// If the index of `L`'s segment now names another generation, loads it in L's place
    /// (the old one is retired, the cluster cache forgets it) and points L at it.
    bool refresh(detail::Loaded*& L);
};

}  // namespace sov::cvl
