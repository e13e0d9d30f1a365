// Compaction (docs/format-cvl.md §10): every segment with tombstoned, not yet purged
// messages is rewritten without their content, keeping their leaf hashes, so the Merkle
// root, the chain and every proof stay the same. New data files get generation G+1; the new
// index replaces the old one by rename; then the old data files are deleted.
//
// Restartable: a compaction killed after switching an index but before deleting the old
// data files would leave purged content on disk, so every compaction first sweeps the shard
// directories (sweep_generations): a data file of a sealed segment whose generation is not
// the one its index names is deleted, as is every stale *.dat.tmp. Readers that still had
// the old index open re-read it when its data files vanish (reader.cpp), so deleting at once
// is safe for them.
#include "internal/cvl/reader.h"

#include "sovereign/file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <unistd.h>

namespace sov::cvl {

using namespace detail;

Errc compact(const std::string& dir, unsigned threads, std::uint64_t& purged_total, std::string& err) {
    return Archive::compact_impl(dir, threads, purged_total, err);
}

Errc Archive::compact_impl(const std::string& dir, unsigned threads, std::uint64_t& purged_total, std::string& err) {
    purged_total = 0;
    Errc code;
    auto ar = Archive::open(dir, err, &code);
    if (!ar) return code;
    int lock_fd = take_lock(dir, code, err);
    if (lock_fd < 0) return code;
    struct Unlock {
        int fd;
        ~Unlock() { ::close(fd); }
    } unlock{lock_fd};
    remove_stale_temps(dir);  // of an interrupted seal or compaction (ours: we hold the lock)
    auto& im = *ar->impl_;
    // Finish what an interrupted compaction left: old generations, temporary files.
    std::uint64_t swept = 0;
    if (Errc e = sweep_generations(dir, im.params.shards, swept, err); e != Errc::ok) return e;
    im.load_all();
    for (std::size_t s = 0; s < im.idx.size(); ++s) {
        const index::View& x = im.idx[s]->x;
        std::vector<std::uint32_t> to_purge;
        for (std::uint32_t i = 0; i < x.n(); ++i)
            if (x.rec(i).c_len != 0 && ar->deleted(x.first() + i)) to_purge.push_back(i);
        if (to_purge.empty()) continue;
        // Gather the segment's envelopes (copies: the scan arena is reused).
        std::vector<std::vector<std::uint8_t>> envs(x.n());
        if (Errc e = ar->scan_segment(s, [&](std::uint64_t ord, ByteView env) {
                envs[ord - x.first()].assign(env.begin(), env.end());
                return true;
            }, err); e != Errc::ok)
            return e;
        SegmentBuild sb;
        sb.number = x.number();
        sb.first = x.first();
        sb.generation = x.h.generation + 1;
        sb.dict_id = x.h.dict_id;
        sb.level = x.h.level;
        sb.shards = x.s();
        sb.cluster_bytes = im.params.cluster_bytes;
        sb.threads = threads;
        sb.prev_root = x.prev_root;
        std::unique_ptr<ZSTD_CDict, ZstdDeleter> cdict;
        if (x.h.dict_id != 0) {
            std::vector<std::uint8_t> d;
            if (Errc e = file::read_file(dict_path(dir, x.h.dict_id), d, err); e != Errc::ok)
                return e == Errc::io_not_found ? Errc::cvl_missing_dict : e;
            cdict.reset(ZSTD_createCDict(d.data(), d.size(), x.h.level));
            if (!cdict) {
                err = dict_path(dir, x.h.dict_id) + ": not a zstd dictionary";
                return Errc::cvl_bad_dict;
            }
            sb.cdict = cdict.get();
        }
        sb.envelopes.resize(x.n());
        sb.metas.resize(x.n());
        sb.purged.assign(x.n(), false);
        sb.purged_leaves.resize(x.n());
        std::size_t k = 0;
        for (std::uint32_t i = 0; i < x.n(); ++i) {
            const std::uint8_t* pl = x.purged_leaf(i);
            bool purge = pl || (k < to_purge.size() && to_purge[k] == i);
            if (k < to_purge.size() && to_purge[k] == i) ++k;
            const index::Record r = x.rec(i);
            sb.metas[i].recv = x.recv(i);
            sb.metas[i].path_hash = r.path_hash;
            if (purge) {
                sb.purged[i] = true;
                if (pl) std::memcpy(sb.purged_leaves[i].data(), pl, 32);
                else sb.purged_leaves[i] = leaf_hash(envs[i]);
                continue;
            }
            sb.envelopes[i] = {envs[i].data(), envs[i].size()};
            Meta m = meta_of(sb.envelopes[i]);
            sb.metas[i].did = m.did;
            sb.metas[i].op_hashes = m.op_hashes;
        }
        // Purged messages keep their op entries so tomb lookups still find them.
        for (std::uint32_t i = 0; i < x.n(); ++i)
            if (sb.purged[i]) sb.metas[i].op_hashes.clear();
        for (std::uint32_t k2 = 0; k2 < x.h.p; ++k2) {
            const index::Op o = x.op(k2);
            if (o.message < x.n() && sb.purged[o.message]) sb.metas[o.message].op_hashes.push_back(o.path_hash);
        }
        Hash root;
        std::uint64_t stored;
        if (Errc e = write_segment(dir, sb, root, stored, err); e != Errc::ok) return e;
        if (root != x.root) {
            err = x.path + ": compaction changed the Merkle root (internal error); segment rewritten but inconsistent";
            return Errc::cvl_root_mismatch;
        }
        for (unsigned sh = 0; sh < x.s(); ++sh) {
            const std::string old = dat_path(dir, sh, x.number(), x.h.generation);
            if (::unlink(old.c_str()) != 0 && errno != ENOENT) return sys_error(old, err);  // swept next time
        }
        purged_total += to_purge.size();
    }
    return Errc::ok;
}

}  // namespace sov::cvl
