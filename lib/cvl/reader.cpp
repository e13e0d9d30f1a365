// The archive reader. Index files are memory-mapped and checked (magic, sizes, BLAKE3
// checksum, records inside the data) lazily, the first time a segment is needed:
//
// - A point read (read, proof, segment_at, end_ordinal) finds its segment by binary search
//   over the 96-byte headers of the index files (read with one pread each, as needed, and
//   trusted only for routing), then checks that one index in full. So it touches
//   O(log segments) headers and one index, whatever the archive's size; if a header was
//   lying (the checked index does not hold the ordinal) it falls back to the full load.
// - Anything over every segment (segments(), problems(), scan, check) loads and checks every
//   index once, in order, with the chain checks between neighbours.
//
// A random read is then one 28-byte record and one zstd frame: shard files stay open,
// buffers are reused without zero-filling, and the frame is decompressed only as far as the
// wanted message (streaming, directly into the output buffer). A small cache keeps the last
// clusters, so reading a DID's messages in order costs one decompression per cluster.
// Sequential scans decompress a segment's clusters once each into one reused arena.
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_d_stableOutBuffer: decode straight into our buffer
#include "internal/cvl/common.h"
#include "internal/cvl/reader.h"

#include "sovereign/bitset.h"
#include "sovereign/file.h"

#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace sov::cvl {

using namespace detail;

namespace detail {

Loaded::~Loaded() {
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
}

}  // namespace detail

namespace {

/// Largest decompressed cluster the format allows: a shared cluster holds at most
/// cluster_bytes, a DID group at most max(cluster_bytes, one 16 MiB envelope).
std::uint64_t cluster_bound(const Params& p) { return std::max<std::uint64_t>(p.cluster_bytes, 16u << 20); }

}  // namespace

Errc Archive::Impl::load_one(Seg& sg, std::string& err) {
    if (sg.loaded) return Errc::ok;
    if (sg.code != Errc::ok) {
        err = sg.problem;
        return sg.code;
    }
    auto fail = [&](Errc e, std::string text) {
        sg.code = e;
        sg.problem = std::move(text);
        err = sg.problem;
        return e;
    };
    // A compaction may switch the index to a new generation and delete the old data files
    // between our reading the index and looking at them: then read the index again.
    for (int attempt = 0;; ++attempt) {
        auto L = std::make_shared<Loaded>();
        std::string e;
        if (Errc c = index::open_view(sg.path, L->x, e); c != Errc::ok)
            return fail(c == Errc::io_not_found ? Errc::cvl_missing_data : c, e);
        const index::View& x = L->x;
        if (x.number() != sg.number)
            return fail(Errc::cvl_chain, sg.path + ":16: segment number " + std::to_string(x.number()) +
                                             " does not match the file name");
        // Data files present and long enough? Missing ones make only their clusters unreadable
        // (reported when read); the segment is still served.
        std::string notes;
        L->fds.assign(x.s(), -1);
        for (unsigned k = 0; k < x.s(); ++k) {
            struct stat st {};
            std::string p = dat_path(dir, k, x.number(), x.h.generation);
            bool present = ::stat(p.c_str(), &st) == 0;
            if (!present || std::uint64_t(st.st_size) < x.shard_size(k)) {
                if (!notes.empty()) notes += "\n";
                notes += p + ":" + std::to_string(present ? st.st_size : 0) +
                         ": data file missing or shorter than the index says (" + std::to_string(x.shard_size(k)) +
                         " bytes)";
            }
        }
        if (!notes.empty() && attempt < 8 && generation_changed(*L)) continue;
        if (x.h.dict_id != 0) {
            struct stat st {};
            if (::stat(dict_path(dir, x.h.dict_id).c_str(), &st) != 0) {
                if (!notes.empty()) notes += "\n";
                notes += dict_path(dir, x.h.dict_id) + ": missing dictionary needed by " + x.path;
            }
        }
        sg.notes = std::move(notes);
        sg.loaded = std::move(L);
        return Errc::ok;
    }
}

bool Archive::Impl::generation_changed(const Loaded& L) {
    index::Header h{};
    std::string e;
    if (index::read_header(L.x.path, h, e) != Errc::ok) return false;
    return h.generation.get() != L.x.h.generation.get() && h.number.get() == L.x.number() &&
           h.first.get() == L.x.first() && h.n.get() == L.x.n();
}

bool Archive::Impl::refresh(Loaded*& L) {
    if (!generation_changed(*L)) return false;
    for (std::size_t s = 0; s < segs.size(); ++s) {
        Seg& sg = segs[s];
        if (sg.loaded.get() != L) continue;
        std::shared_ptr<Loaded> old = sg.loaded;
        sg.loaded.reset();
        std::string e;
        if (load_one(sg, e) != Errc::ok || sg.loaded->x.root != old->x.root) {
            // The new index is unusable (or not the same messages): keep reading the old one.
            sg.code = Errc::ok;
            sg.problem.clear();
            sg.loaded = old;
            return false;
        }
        retired.push_back(old);
        for (auto& c : cache)
            if (c.seg == old.get()) c.seg = nullptr;
        for (std::size_t i = 0; i < idx.size(); ++i)
            if (idx[i] == old.get()) {
                idx[i] = sg.loaded.get();
                infos[i] = info_of(*sg.loaded);
            }
        L = sg.loaded.get();
        return true;
    }
    return false;
}

SegmentInfo Archive::Impl::info_of(const Loaded& L) const {
    const index::View& x = L.x;
    SegmentInfo si;
    si.number = x.number();
    si.first = x.first();
    si.count = x.n();
    std::vector<std::uint64_t> offs;
    offs.reserve(x.h.c);
    for (std::uint32_t g = 0; g < x.h.c; ++g) offs.push_back(x.group(g).bin_off);
    std::sort(offs.begin(), offs.end());
    si.clusters = std::uint32_t(std::unique(offs.begin(), offs.end()) - offs.begin());
    si.groups = x.h.c;
    si.purged = x.h.q;
    si.dict_id = x.h.dict_id;
    si.generation = x.h.generation;
    si.recv_min = x.h.recv_min;
    si.recv_max = x.h.recv_max;
    si.raw_bytes = x.h.raw_bytes;
    si.stored_bytes = x.h.stored_bytes;
    si.root = x.root;
    si.prev_root = x.prev_root;
    si.path = x.path;
    return si;
}

void Archive::Impl::possible_range(std::size_t k, std::uint64_t& lo, std::uint64_t& hi) {
    // Ordinals grow with segment numbers: it lies between its readable neighbours.
    lo = 0;
    hi = UINT64_MAX;
    for (std::size_t j = k; j-- > 0;)
        if (segs[j].loaded) {
            lo = segs[j].loaded->x.first() + segs[j].loaded->x.n();
            break;
        }
    for (std::size_t j = k + 1; j < segs.size(); ++j) {
        std::string e;
        if (load_one(segs[j], e) == Errc::ok) {
            hi = segs[j].loaded->x.first();
            break;
        }
    }
    if (hi < lo) hi = lo;
    // Its header (unchecked) may narrow that, if it agrees with the neighbours.
    if (header(segs[k])) {
        const std::uint64_t f = segs[k].hdr.first.get(), n = segs[k].hdr.n.get();
        if (f >= lo && f <= hi && n <= hi - f) {
            lo = f;
            hi = f + n;
        }
    }
}

void Archive::Impl::load_all() {
    if (full) return;
    full = true;
    Hash prev{};
    std::uint64_t expect_first = 0, expect_number = 0;
    bool gap = true;  // no predecessor to compare with (start, or after an unreadable index)
    auto add = [&](const std::string& e, const ProblemInfo& pi) {
        std::size_t start = 0;
        for (;;) {  // one problem per line (several data files may be missing)
            std::size_t nl = e.find('\n', start);
            problems.push_back(e.substr(start, nl == std::string::npos ? nl : nl - start));
            problem_infos.push_back(pi);
            if (nl == std::string::npos) break;
            start = nl + 1;
        }
    };
    for (auto& sg : segs) {
        std::string e;
        if (load_one(sg, e) != Errc::ok) {
            ProblemInfo pi;
            std::uint64_t lo, hi;
            possible_range(std::size_t(&sg - segs.data()), lo, hi);
            pi.first = lo;
            pi.count = hi - lo;
            pi.range_known = true;
            add(e, pi);
            gap = true;  // its range and root are unknown: don't blame the next segment for it
            continue;
        }
        const index::View& x = sg.loaded->x;
        ProblemInfo here{x.first(), x.n(), true, false};
        if (!sg.notes.empty()) add(sg.notes, here);
        here.unreadable = true;  // a chain problem: the segment is not trusted
        const std::size_t before = problems.size();
        // Indexes absent from the listing before this one are reported as missing below; the
        // link to them cannot be checked, which is no fault of this segment.
        if (sg.number > expect_number) gap = true;
        if (!gap && (x.number() != expect_number || x.first() != expect_first))
            problems.push_back(x.path + ":24: segment does not continue the previous one (expected first ordinal " +
                               std::to_string(expect_first) + ", found " + std::to_string(x.first()) + ")");
        else if (!gap && x.prev_root != prev)
            problems.push_back(x.path + ": chain broken: previous-root field differs from segment " +
                               std::to_string(expect_number - 1) + "'s root");
        if (problems.size() > before) problem_infos.push_back(here);
        gap = false;
        expect_first = x.first() + x.n();
        expect_number = x.number() + 1;
        prev = x.root;
        infos.push_back(info_of(*sg.loaded));
        idx.push_back(sg.loaded.get());
    }
    // Indexes that existed and are gone (a gap, or the last ones: the journal and the data
    // files say so), which the chain alone cannot show (format §1).
    std::vector<std::uint64_t> numbers;
    for (auto& sg : segs) numbers.push_back(sg.number);
    std::optional<std::uint64_t> last;
    if (!idx.empty()) last = idx.back()->x.number();
    // Each lies between the readable segments around it (after the last one: to the end).
    for (auto& m : missing_segments(dir, numbers, last, idx.empty() ? 0 : expect_first)) {
        ProblemInfo pi;
        pi.range_known = true;
        std::uint64_t end = UINT64_MAX;
        for (const Loaded* L : idx) {  // ascending segment numbers
            if (L->x.number() > m.number) {
                end = L->x.first();
                break;
            }
            pi.first = L->x.first() + L->x.n();
        }
        pi.count = end > pi.first ? end - pi.first : 0;
        problems.push_back(std::move(m.text));
        problem_infos.push_back(pi);
    }
}

bool Archive::Impl::header(Seg& sg) {
    if (sg.have_header) return true;
    if (sg.header_failed) return false;
    std::string e;
    if (index::read_header(sg.path, sg.hdr, e) != Errc::ok) {
        sg.header_failed = true;
        return false;
    }
    sg.have_header = true;
    return true;
}

Errc Archive::Impl::locate(std::uint64_t ord, Loaded*& out, std::string& err) {
    out = nullptr;
    if (!full) {
        // Last segment whose (unverified) header starts at or before `ord`.
        std::size_t lo = 0, hi = segs.size();
        bool ok = true;
        while (lo < hi && ok) {
            std::size_t mid = (lo + hi) / 2;
            if (!header(segs[mid])) ok = false;
            else if (segs[mid].hdr.first.get() <= ord) lo = mid + 1;
            else hi = mid;
        }
        if (ok && lo > 0) {
            Seg& sg = segs[lo - 1];
            Errc e = load_one(sg, err);
            if (e == Errc::ok && ord >= sg.loaded->x.first() && ord < sg.loaded->x.first() + sg.loaded->x.n()) {
                out = sg.loaded.get();
                return Errc::ok;
            }
            if (e != Errc::ok && sg.hdr.first.get() + sg.hdr.n.get() > ord && sg.hdr.first.get() <= ord) {
                // The segment that should hold it is damaged: say so (exit 1), not "absent".
                return e;
            }
        } else if (ok && lo == 0 && !segs.empty()) {
            err = "ordinal " + std::to_string(ord) + " is not in the archive";
            return Errc::cvl_no_ordinal;
        }
        load_all();  // a header lied or could not be read: decide from the checked indexes
    }
    auto it = std::upper_bound(idx.begin(), idx.end(), ord, [](std::uint64_t o, const Loaded* x) { return o < x->x.first(); });
    if (it != idx.begin()) {
        --it;
        if (ord < (*it)->x.first() + (*it)->x.n()) {
            out = *it;
            return Errc::ok;
        }
    }
    // Not in a readable segment: in a damaged one (its header still says so)?
    // Not in a readable segment: in a damaged one that may hold it?
    for (std::size_t k = 0; k < segs.size(); ++k) {
        Seg& sg = segs[k];
        if (sg.loaded || sg.code == Errc::ok) continue;
        std::uint64_t lo, hi;
        possible_range(k, lo, hi);
        if (ord >= lo && ord < hi) {
            err = sg.problem;
            return sg.code;
        }
    }
    err = "ordinal " + std::to_string(ord) + " is not in the archive";
    return Errc::cvl_no_ordinal;
}

namespace {

// Dictionaries are immutable once written: one ZSTD_DDict per file (device, inode, size,
// mtime) for the whole process, however many Archives read it.
std::mutex ddict_mu;
std::map<std::string, std::weak_ptr<const ZSTD_DDict>> ddict_registry;

}  // namespace

const ZSTD_DDict* Archive::Impl::ddict(std::uint32_t id, Errc& code, std::string& err) {
    code = Errc::ok;
    if (id == 0) return nullptr;
    auto it = ddicts.find(id);
    if (it != ddicts.end()) return it->second.get();
    const std::string path = dict_path(dir, id);
    struct stat st;
    std::string key;
    if (::stat(path.c_str(), &st) == 0) {
        key = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
              std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
        std::lock_guard lock(ddict_mu);
        auto r = ddict_registry.find(key);
        if (r != ddict_registry.end())
            if (auto shared = r->second.lock()) {
                ddicts[id] = shared;
                return shared.get();
            }
    }
    std::vector<std::uint8_t> d;
    std::string e;
    if (Errc c = file::read_file(path, d, e); c != Errc::ok) {
        err = path + ": missing or unreadable dictionary (" + e + ")";
        code = c == Errc::io_not_found ? Errc::cvl_missing_dict : c;
        return nullptr;
    }
    auto* dd = ZSTD_createDDict(d.data(), d.size());
    if (!dd || d.empty()) {
        if (dd) ZSTD_freeDDict(dd);
        err = path + ": not a zstd dictionary (" + std::to_string(d.size()) + " bytes)";
        code = Errc::cvl_bad_dict;
        return nullptr;
    }
    std::shared_ptr<const ZSTD_DDict> shared(dd, [](const ZSTD_DDict* p) { ZSTD_freeDDict(const_cast<ZSTD_DDict*>(p)); });
    ddicts[id] = shared;
    if (!key.empty()) {
        std::lock_guard lock(ddict_mu);
        ddict_registry[key] = shared;
        for (auto r = ddict_registry.begin(); r != ddict_registry.end();)  // forget the unused
            r = r->second.expired() ? ddict_registry.erase(r) : std::next(r);
    }
    return dd;
}

Errc Archive::Impl::read_compressed(Loaded& L, std::uint64_t bin_off, std::uint32_t c_len, const std::uint8_t*& comp,
                                    std::string& where, std::uint64_t& file_off, std::string& err) {
    const index::View& x = L.x;
    unsigned k = 0;
    std::uint64_t base = 0;
    while (k < x.s() && bin_off >= base + x.shard_size(k)) base += x.shard_size(k++);
    if (k == x.s()) {
        err = x.path + ": cluster offset " + std::to_string(bin_off) + " outside the segment data";
        return Errc::cvl_bad_index;
    }
    where = dat_path(dir, k, x.number(), x.h.generation);
    file_off = bin_off - base;
    if (L.fds[k] < 0) {
        L.fds[k] = ::open(where.c_str(), O_RDONLY | O_CLOEXEC);
        if (L.fds[k] < 0) {
            Errc c = sys_error(where, err);
            return c == Errc::io_not_found ? Errc::cvl_missing_data : c;
        }
    }
    static thread_local detail::Buf comp_buf;  // this thread's (reader.h)
    std::uint8_t* buf = comp_buf.get(c_len);
    std::string e;
    if (Errc c = file::pread_all(L.fds[k], file_off, buf, c_len, where, e); c != Errc::ok) {
        if (c == Errc::truncated) {
            err = e.substr(0, e.find(": file ends early")) + ": truncated data file (cluster of " + std::to_string(c_len) +
                  " bytes at offset " + std::to_string(file_off) + ")";
            return Errc::cvl_missing_data;
        }
        err = e;
        return c;
    }
    comp = buf;
    return Errc::ok;
}

Errc Archive::Impl::decompress(const Loaded& L, const std::uint8_t* comp, std::uint32_t c_len, const std::string& where,
                               std::uint64_t file_off, std::uint64_t need, bool whole, std::uint8_t* out, std::uint64_t cap,
                               std::uint64_t& got, std::string& err) {
    Errc dc;
    const ZSTD_DDict* dd = ddict(L.x.h.dict_id, dc, err);
    if (dc != Errc::ok) return dc;
    auto corrupt = [&](const std::string& why) {
        err = where + ":" + std::to_string(file_off) + ": corrupt cluster (" + why + ")";
        return Errc::cvl_bad_cluster;
    };
    unsigned long long size = ZSTD_getFrameContentSize(comp, c_len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
        return corrupt("no valid zstd frame header");
    if (size < need || size > cap) return corrupt("frame content size " + std::to_string(size) + " does not fit its records");
    static thread_local std::unique_ptr<ZSTD_DCtx, detail::ZstdDeleter> dctx{ZSTD_createDCtx()};  // reader.h
    ZSTD_DCtx* d = dctx.get();
    if (!d) {
        err = where + ":" + std::to_string(file_off) + ": cannot decompress: no zstd context (out of memory)";
        return Errc::io_error;
    }
    if (whole) {
        std::size_t r = dd ? ZSTD_decompress_usingDDict(d, out, size, comp, c_len, dd)
                           : ZSTD_decompressDCtx(d, out, size, comp, c_len);
        if (ZSTD_isError(r)) return corrupt(ZSTD_getErrorName(r));
        if (r != size) return corrupt("short output");
        got = size;
        return Errc::ok;
    }
    // Streaming, straight into `out`, and only as far as `need`.
    ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
    ZSTD_DCtx_setParameter(d, ZSTD_d_stableOutBuffer, 1);
    if (dd) ZSTD_DCtx_refDDict(d, dd);
    ZSTD_outBuffer ob{out, std::size_t(size), 0};
    constexpr std::size_t kStep = 8192;  // input fed in steps so decoding can stop early
    ZSTD_inBuffer ib{comp, 0, 0};
    std::size_t avail = 0;
    for (;;) {
        avail = std::min<std::size_t>(c_len, avail + kStep);
        ib.size = avail;
        std::size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
            return corrupt(ZSTD_getErrorName(r));
        }
        if (ob.pos >= need || r == 0) break;
        if (ib.pos == c_len && avail == c_len) {
            ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
            return corrupt("frame ends early");
        }
    }
    ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
    if (ob.pos < need) return corrupt("short output");
    got = ob.pos;
    return Errc::ok;
}

Errc Archive::Impl::message(Loaded& L, std::uint32_t i, ByteView& env, std::string& err, bool whole) {
    const index::View& x = L.x;
    const index::Record r = x.rec(i);
    if (r.c_len == 0) {
        err = "ordinal " + std::to_string(x.first() + i) + " was purged by compaction";
        return Errc::cvl_purged;
    }
    const std::uint64_t need = std::uint64_t(r.inner_off) + r.i_len;
    Cached* hit = nullptr;
    for (auto& c : cache)
        if (c.seg == &L && c.off == r.bin_off && c.have >= need) hit = &c;
    if (!hit) {
        // Reuse the least recently used slot (and its buffer).
        if (cache.size() < cache_slots) cache.emplace_back();
        hit = &*std::min_element(cache.begin(), cache.end(), [](auto& a, auto& b) { return a.used < b.used; });
        hit->seg = nullptr;
        const std::uint64_t cap = cluster_bound(params);
        if (need > cap) {
            err = x.path + ":" + std::to_string(x.rec_offset(i)) + ": record of ordinal " + std::to_string(x.first() + i) +
                  " points beyond the largest cluster";
            return Errc::cvl_bad_index;
        }
        // The buffer grows to the frame's content size (checked against cap) only when needed.
        const std::uint8_t* comp = nullptr;
        std::string where;
        std::uint64_t file_off = 0;
        if (Errc c = read_compressed(L, r.bin_off, r.c_len, comp, where, file_off, err); c != Errc::ok) return c;
        unsigned long long size = ZSTD_getFrameContentSize(comp, r.c_len);
        std::uint64_t want = (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > cap) ? need : size;
        std::uint8_t* out = hit->buf.get(std::max(want, need));
        std::uint64_t got = 0;
        if (Errc c = decompress(L, comp, r.c_len, where, file_off, need, whole, out, cap, got, err); c != Errc::ok) return c;
        hit->seg = &L;
        hit->off = r.bin_off;
        hit->have = got;
    }
    hit->used = ++tick;
    env = {hit->buf.p.get() + r.inner_off, r.i_len};
    return Errc::ok;
}

Errc Archive::Impl::scan(Loaded& L, const std::function<bool(std::uint64_t, ByteView)>& f, const DamageFn* on_damage,
                         bool& stale, std::string& err) {
    stale = false;
    const index::View& x = L.x;
    // Each cluster's decompressed size is the end of its last message (its messages are
    // contiguous from offset 0). One pass over the records finds every cluster and its size.
    std::map<std::uint64_t, std::pair<std::uint32_t, std::uint64_t>> clusters;  // bin_off → (c_len, size)
    for (std::uint32_t i = 0; i < x.n(); ++i) {
        const index::Record r = x.rec(i);
        if (r.c_len == 0) continue;
        auto& c = clusters[r.bin_off];
        if (c.first != 0 && c.first != r.c_len) {
            err = x.path + ":" + std::to_string(x.rec_offset(i) + 8) + ": records disagree on a cluster's length";
            return Errc::cvl_bad_index;
        }
        c.first = r.c_len;
        c.second = std::max<std::uint64_t>(c.second, std::uint64_t(r.inner_off) + r.i_len);
    }
    const std::uint64_t cap = cluster_bound(params);
    std::uint64_t total = 0;
    for (auto& [off, c] : clusters) {
        if (c.second > cap) {
            err = x.path + ": a cluster's records reach beyond the largest cluster";
            return Errc::cvl_bad_index;
        }
        total += c.second;
    }
    std::uint8_t* arena = scan_buf.get(total);
    std::map<std::uint64_t, std::uint64_t> at;  // bin_off → arena offset (absent: unreadable)
    // Damage, one entry per distinct error text (a missing file: one entry for its clusters).
    std::vector<std::pair<Errc, std::string>> damage;
    std::map<std::uint64_t, std::size_t> damaged;  // bin_off → entry in `damage`
    std::uint64_t pos = 0;
    for (auto& [off, c] : clusters) {
        std::uint64_t got = 0;
        // Whole frame, checksum verified; its content must be exactly what the records say.
        const std::uint8_t* comp = nullptr;
        std::string where;
        std::uint64_t file_off = 0;
        Errc e = read_compressed(L, off, c.first, comp, where, file_off, err);
        if (e == Errc::ok) e = decompress(L, comp, c.first, where, file_off, c.second, true, arena + pos, c.second, got, err);
        if (e != Errc::ok) {
            if (generation_changed(L)) {
                stale = true;
                return e;
            }
            if (!on_damage) return e;
            std::size_t k = 0;
            while (k < damage.size() && damage[k].second != err) ++k;
            if (k == damage.size()) damage.emplace_back(e, err);
            damaged[off] = k;
            continue;
        }
        at[off] = pos;
        pos += c.second;
    }
    if (on_damage && !damage.empty()) {
        std::vector<std::vector<std::uint64_t>> ords(damage.size());
        for (std::uint32_t i = 0; i < x.n(); ++i) {
            const index::Record r = x.rec(i);
            if (r.c_len == 0) continue;
            auto it = damaged.find(r.bin_off);
            if (it != damaged.end()) ords[it->second].push_back(x.first() + i);
        }
        for (std::size_t k = 0; k < damage.size(); ++k) (*on_damage)(damage[k].first, damage[k].second, ords[k]);
    }
    for (std::uint32_t i = 0; i < x.n(); ++i) {
        const index::Record r = x.rec(i);
        if (r.c_len == 0) continue;
        auto it = at.find(r.bin_off);
        if (it == at.end()) continue;  // reported above
        if (!f(x.first() + i, {arena + it->second + r.inner_off, r.i_len})) break;
    }
    return Errc::ok;
}

Errc Archive::Impl::scan_fresh(Loaded*& L, const std::function<bool(std::uint64_t, ByteView)>& f, const DamageFn* on_damage,
                               std::string& err) {
    for (int attempt = 0;; ++attempt) {
        bool stale = false;
        Errc e = scan(*L, f, on_damage, stale, err);
        // scan() calls f only once every cluster is decompressed, so a retry repeats nothing.
        if ((stale || e != Errc::ok) && attempt < 8 && refresh(L)) continue;
        return e;
    }
}

// ---------------------------------------------------------------------------------------------

Archive::Archive(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Archive::~Archive() = default;

std::unique_ptr<Archive> Archive::open(const std::string& dir, std::string& err, Errc* code) {
    Errc dummy;
    Errc& ec = code ? *code : dummy;
    auto im = std::make_unique<Impl>();
    im->dir = dir;
    Config cfg;
    if ((ec = cfg.load(dir, err)) != Errc::ok) {
        if (ec == Errc::cvl_not_archive) err = dir + ": not a CVL archive (no cvl.json)";
        return nullptr;
    }
    im->params = cfg.params;
    for (auto n : list_segments(dir)) {
        Impl::Seg sg;
        sg.number = n;
        sg.path = idx_path(dir, n);
        im->segs.push_back(std::move(sg));
    }
    // Tombstones: a set that cannot be opened hides nothing, so reading would serve deleted
    // messages: fail closed.
    std::string terr;
    auto t = bitset::Set::open(dir + "/tomb", false, &terr);
    if (!t) {
        err = terr;
        ec = t.error();
        return nullptr;
    }
    im->tombs.emplace(std::move(*t));
    return std::unique_ptr<Archive>(new Archive(std::move(im)));
}

const std::vector<SegmentInfo>& Archive::segments() const noexcept {
    impl_->load_all();
    return impl_->infos;
}
const std::vector<std::string>& Archive::problems() const noexcept {
    impl_->load_all();
    return impl_->problems;
}
std::size_t Archive::segment_files() const noexcept { return impl_->segs.size(); }
const std::string& Archive::dir() const noexcept { return impl_->dir; }

std::uint64_t Archive::end_ordinal() const noexcept {
    Impl& im = *impl_;
    if (!im.full && !im.segs.empty()) {
        std::string e;
        Impl::Seg& last = im.segs.back();
        if (im.load_one(last, e) == Errc::ok) return last.loaded->x.first() + last.loaded->x.n();
    }
    im.load_all();
    return im.idx.empty() ? 0 : im.idx.back()->x.first() + im.idx.back()->x.n();
}

std::optional<std::size_t> Archive::segment_of(std::uint64_t ord) const noexcept {
    Impl& im = *impl_;
    im.load_all();
    auto it = std::upper_bound(im.idx.begin(), im.idx.end(), ord,
                               [](std::uint64_t o, const detail::Loaded* x) { return o < x->x.first(); });
    if (it == im.idx.begin()) return std::nullopt;
    --it;
    if (ord >= (*it)->x.first() + (*it)->x.n()) return std::nullopt;
    return std::size_t(it - im.idx.begin());
}

Errc Archive::segment_at(std::uint64_t ord, SegmentInfo& out, std::string& err) {
    detail::Loaded* L;
    if (Errc e = impl_->locate(ord, L, err); e != Errc::ok) return e;
    out = impl_->info_of(*L);
    return Errc::ok;
}

bool Archive::deleted(std::uint64_t ord) const noexcept { return impl_->tombs && impl_->tombs->test(ord); }

Errc Archive::read(std::uint64_t ord, std::vector<std::uint8_t>& envelope, std::string& err) {
    ByteView env;
    if (Errc e = view(ord, env, err); e != Errc::ok) return e;
    envelope.assign(env.begin(), env.end());
    return Errc::ok;
}

Errc Archive::view(std::uint64_t ord, ByteView& envelope, std::string& err) {
    detail::Loaded* L;
    if (Errc e = impl_->locate(ord, L, err); e != Errc::ok) return e;
    for (int attempt = 0;; ++attempt) {
        Errc e = impl_->message(*L, std::uint32_t(ord - L->x.first()), envelope, err);
        if (e != Errc::ok && e != Errc::cvl_purged && attempt < 8 && impl_->refresh(L)) continue;  // compacted meanwhile
        return e;
    }
}

Errc Archive::view_seq(std::uint64_t ord, ByteView& envelope, std::string& err) {
    detail::Loaded* L;
    if (Errc e = impl_->locate(ord, L, err); e != Errc::ok) return e;
    for (int attempt = 0;; ++attempt) {
        Errc e = impl_->message(*L, std::uint32_t(ord - L->x.first()), envelope, err, true);
        if (e != Errc::ok && e != Errc::cvl_purged && attempt < 8 && impl_->refresh(L)) continue;  // compacted meanwhile
        return e;
    }
}

void Archive::cache_clusters(std::size_t n) noexcept {
    Impl& im = *impl_;
    im.cache_slots = std::max<std::size_t>(n, 1);
    if (im.cache.size() > im.cache_slots) im.cache.resize(im.cache_slots);
}

std::size_t Archive::follow() {
    Impl& im = *impl_;
    std::uint64_t next = im.segs.empty() ? 0 : im.segs.back().number + 1;
    std::size_t added = 0;
    for (;; ++next, ++added) {
        std::string path = idx_path(im.dir, next);
        if (::access(path.c_str(), F_OK) != 0) break;
        Impl::Seg sg;
        sg.number = next;
        sg.path = std::move(path);
        im.segs.push_back(std::move(sg));
    }
    if (added && im.full) {  // the whole-archive views are derived again on demand
        im.full = false;
        im.idx.clear();
        im.infos.clear();
        im.problems.clear();
        im.problem_infos.clear();
    }
    return added;
}

Errc Archive::scan_segment(std::size_t seg, const std::function<bool(std::uint64_t, ByteView)>& f, std::string& err) {
    impl_->load_all();
    detail::Loaded* L = impl_->idx.at(seg);
    return impl_->scan_fresh(L, f, nullptr, err);
}

Errc Archive::scan_segment(std::size_t seg, const std::function<bool(std::uint64_t, ByteView)>& f, const DamageFn& on_damage,
                           std::string& err) {
    impl_->load_all();
    detail::Loaded* L = impl_->idx.at(seg);
    return impl_->scan_fresh(L, f, &on_damage, err);
}

Errc Archive::scan_segment_of(std::uint64_t ord, const std::function<bool(std::uint64_t, ByteView)>& f,
                              const DamageFn& on_damage, std::uint64_t& first, std::string& err) {
    detail::Loaded* L;
    if (Errc e = impl_->locate(ord, L, err); e != Errc::ok) return e;
    first = L->x.first();
    return impl_->scan_fresh(L, f, &on_damage, err);
}

const std::vector<ProblemInfo>& Archive::problem_infos() const noexcept {
    impl_->load_all();
    return impl_->problem_infos;
}

std::string ordinal_ranges(const std::vector<std::uint64_t>& o) {
    std::string out;
    for (std::size_t i = 0; i < o.size();) {
        std::size_t j = i;
        while (j + 1 < o.size() && o[j + 1] == o[j] + 1) ++j;
        if (!out.empty()) out += ", ";
        out += std::to_string(o[i]);
        if (j > i) out += "-" + std::to_string(o[j]);
        i = j + 1;
    }
    return out;
}

std::vector<std::uint64_t> Archive::ordinals_of_did(std::size_t seg, std::string_view did) const {
    impl_->load_all();
    const index::View& x = impl_->idx.at(seg)->x;
    std::uint64_t want = did.empty() ? 0 : tag_hash(as_bytes(did));
    std::vector<std::uint64_t> offs;
    for (std::uint32_t c = 0; c < x.h.c; ++c) {
        const index::Group g = x.group(c);
        if (g.did_hash == want) offs.push_back(g.bin_off);
    }
    std::vector<std::uint64_t> out;
    if (offs.empty()) return out;
    std::sort(offs.begin(), offs.end());
    for (std::uint32_t i = 0; i < x.n(); ++i) {
        const index::Record r = x.rec(i);
        if (r.c_len && std::binary_search(offs.begin(), offs.end(), r.bin_off.get())) out.push_back(x.first() + i);
    }
    return out;
}

std::vector<std::uint64_t> Archive::ordinals_with_path(std::size_t seg, std::string_view path) const {
    impl_->load_all();
    const index::View& x = impl_->idx.at(seg)->x;
    std::uint64_t h = tag_hash(as_bytes(path));
    std::uint32_t lo = 0, hi = x.h.p;
    while (lo < hi) {
        std::uint32_t mid = (lo + hi) / 2;
        if (x.op(mid).path_hash < h) lo = mid + 1;
        else hi = mid;
    }
    std::vector<std::uint64_t> out;
    for (std::uint32_t k = lo; k < x.h.p && x.op(k).path_hash == h; ++k) out.push_back(x.first() + x.op(k).message);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Errc Archive::Impl::leaves_of(Loaded*& L, std::vector<Hash>& leaves, std::string& err) {
    // A refresh (compaction meanwhile) keeps the segment's first ordinal and size.
    const std::uint64_t first = L->x.first();
    leaves.assign(L->x.n(), Hash{});
    std::vector<bool> seen(L->x.n(), false);
    if (Errc e = scan_fresh(L, [&](std::uint64_t ord, ByteView env) {
            leaves[ord - first] = leaf_hash(env);
            seen[ord - first] = true;
            return true;
        }, nullptr, err); e != Errc::ok)
        return e;
    const index::View& x = L->x;  // the generation that was read
    for (std::uint32_t i = 0; i < x.n(); ++i) {
        if (seen[i]) continue;
        const std::uint8_t* pl = x.purged_leaf(i);
        if (!pl) {
            err = x.path + ": ordinal " + std::to_string(x.first() + i) + " has neither content nor a purged leaf hash";
            return Errc::cvl_bad_index;
        }
        std::memcpy(leaves[i].data(), pl, 32);
    }
    return Errc::ok;
}

Errc Archive::check_segment(std::size_t seg, std::string& err) {
    impl_->load_all();
    Loaded* L = impl_->idx.at(seg);
    std::vector<Hash> leaves;
    if (Errc e = impl_->leaves_of(L, leaves, err); e != Errc::ok) return e;
    const index::View& x = L->x;
    Hash root = merkle_root(leaves);
    if (root != x.root) {
        err = x.path + ": Merkle root mismatch: recomputed " + to_hex(root) + ", index says " + to_hex(x.root);
        return Errc::cvl_root_mismatch;
    }
    if (seg > 0 && impl_->idx[seg - 1]->x.number() + 1 == x.number() && x.prev_root != impl_->idx[seg - 1]->x.root) {
        err = x.path + ": chain broken: previous-root field differs from the previous segment's root";
        return Errc::cvl_chain;
    }
    return Errc::ok;
}

Errc Archive::proof(std::uint64_t ord, Proof& out, std::string& err) {
    detail::Loaded* L;
    if (Errc e = impl_->locate(ord, L, err); e != Errc::ok) return e;
    std::vector<Hash> leaves;
    if (Errc e = impl_->leaves_of(L, leaves, err); e != Errc::ok) return e;
    const index::View& x = L->x;
    out.ordinal = ord;
    out.segment = x.number();
    out.index = std::size_t(ord - x.first());
    out.size = x.n();
    out.leaf = leaves[out.index];
    out.path = audit_path(leaves, out.index);
    out.root = x.root;
    out.prev_root = x.prev_root;
    return Errc::ok;
}

Errc Archive::check_proof(const Proof& p, std::string& err) {
    if (!p.verify()) {
        err = "the path does not lead from the leaf to the proof's root";
        return Errc::proof_invalid;
    }
    detail::Loaded* L;
    std::string e;
    if (Errc c = impl_->locate(p.ordinal, L, e); c != Errc::ok) {
        if (c != Errc::cvl_no_ordinal) {
            err = e;
            return c;
        }
        err = "ordinal " + std::to_string(p.ordinal) + " is not in this archive";
        return Errc::proof_unbound;
    }
    const index::View& x = L->x;
    if (x.root != p.root) {
        err = "the proof's root is not the archive's root of segment " + std::to_string(x.number());
        return Errc::proof_root_mismatch;
    }
    if (p.segment != x.number() || p.index != p.ordinal - x.first() || p.size != x.n()) {
        err = "the proof's segment, index or size do not match ordinal " + std::to_string(p.ordinal) + " in the archive";
        return Errc::proof_unbound;
    }
    // The leaf must be this ordinal's: its envelope's hash, or its purged leaf.
    Hash leaf{};
    const std::uint8_t* pl = x.purged_leaf(std::uint32_t(p.index));
    if (pl) std::memcpy(leaf.data(), pl, 32);
    else {
        ByteView env;
        if (Errc c = view(p.ordinal, env, err); c != Errc::ok) return c;
        leaf = leaf_hash(env);
    }
    if (leaf != p.leaf) {
        err = "the proof's leaf is not the hash of ordinal " + std::to_string(p.ordinal);
        return Errc::proof_unbound;
    }
    return Errc::ok;
}

}  // namespace sov::cvl
