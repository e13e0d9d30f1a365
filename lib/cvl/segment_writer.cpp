// The segment writer (docs/format-cvl.md §3, §4): messages grouped by DID into clusters,
// clusters compressed in parallel (one ZSTD_CCtx per thread, one shared CDict) and laid out
// per shard; data files and the index written under temporary names, fsynced and renamed —
// the index last, because its existence is what makes the segment real. Used by sealing
// and by compaction.
#include "internal/cvl/common.h"

#include "sovereign/file.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <fcntl.h>
#include <unistd.h>

namespace sov::cvl::detail {

Meta meta_of(ByteView envelope) {
    Meta m;
    frames::Envelope env;
    if (frames::parse_envelope(envelope, env)) return m;
    m.recv = env.recv;
    if (env.is_marker()) return m;  // a marker: no DID (clustered with the DID-less messages), no op
    msg::Message msg;
    if (msg::parse(env.wire, msg)) return m;
    m.did = std::string(msg.did);
    for (std::size_t i = 0; i < msg.ops.size(); ++i) {
        std::uint64_t h = tag_hash(as_bytes(msg.ops[i].path));
        if (i == 0) m.path_hash = h;
        m.op_hashes.push_back(h);
    }
    return m;
}

Errc write_segment(const std::string& dir, SegmentBuild& sb, Hash& root_out, std::uint64_t& stored, std::string& err) {
    const std::size_t n = sb.envelopes.size();
    // Clusters: per DID in ordinal order, split at cluster_bytes.
    // DID groups: each DID's messages in ordinal order, split at cluster_bytes. Groups of at
    // least a quarter cluster are clusters of their own (in the DID's shard); smaller ones
    // (the long tail: most DIDs write once or twice per segment) are packed together, in
    // first-ordinal order, into shared clusters, so they compress with context instead of
    // one message per zstd frame. Each DID's messages stay contiguous inside a cluster.
    struct Group {
        std::uint64_t did_hash;
        unsigned shard;
        std::vector<std::uint32_t> msgs;
        std::uint64_t bytes = 0;
        std::size_t cluster = 0;
    };
    std::vector<Group> groups;
    std::unordered_map<std::string, std::size_t> open;  // DID → index of its current group
    for (std::uint32_t i = 0; i < n; ++i) {
        if (sb.purged[i]) continue;
        const std::string& did = sb.metas[i].did;
        auto it = open.find(did);
        if (it == open.end() || groups[it->second].bytes + sb.envelopes[i].size() > sb.cluster_bytes) {
            std::uint64_t dh = did.empty() ? 0 : tag_hash(as_bytes(did));
            groups.push_back(Group{dh, did.empty() ? 0u : unsigned(dh % sb.shards), {}, 0, 0});
            open[did] = groups.size() - 1;
            it = open.find(did);
        }
        Group& g = groups[it->second];
        g.msgs.push_back(i);
        g.bytes += sb.envelopes[i].size();
    }
    struct Cluster {
        unsigned shard;
        std::vector<std::uint32_t> msgs;  // its groups' messages, group after group
        std::uint64_t bytes = 0;
        unsigned worker = 0;          // whose arena holds the compressed frame
        std::size_t at = 0, len = 0;  // where in it
        ByteView comp;                // set once every worker is done
        std::uint64_t off = 0;
    };
    std::vector<Cluster> clusters;
    std::size_t shared = SIZE_MAX;
    unsigned next_shard = 0;
    for (auto& g : groups) {
        std::size_t target;
        if (g.bytes >= sb.cluster_bytes / 4) {
            clusters.push_back(Cluster{g.shard, {}, 0, 0, 0, 0, {}, 0});
            target = clusters.size() - 1;
        } else {
            if (shared == SIZE_MAX || clusters[shared].bytes + g.bytes > sb.cluster_bytes) {
                clusters.push_back(Cluster{next_shard++ % sb.shards, {}, 0, 0, 0, 0, {}, 0});
                shared = clusters.size() - 1;
            }
            target = shared;
        }
        g.cluster = target;
        clusters[target].msgs.insert(clusters[target].msgs.end(), g.msgs.begin(), g.msgs.end());
        clusters[target].bytes += g.bytes;
    }
    // Compress (and hash leaves) in parallel.
    std::vector<Hash> leaves(n);
    for (std::size_t i = 0; i < n; ++i)
        if (sb.purged[i]) leaves[i] = sb.purged_leaves[i];
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::string zerr;
    std::mutex mu;
    // Compressed frames go straight into one arena per worker, kept by the writer from seal
    // to seal: after the first seals no page is faulted in or zero-filled again.
    std::vector<std::vector<std::uint8_t>> local_arenas;
    std::vector<std::vector<std::uint8_t>>& arenas = sb.arenas ? *sb.arenas : local_arenas;
    const unsigned workers = std::max(1u, sb.threads);
    if (arenas.size() < workers) arenas.resize(workers);
    std::atomic<unsigned> next_worker{0};
    auto work = [&] {
        const unsigned me = next_worker.fetch_add(1);
        std::vector<std::uint8_t>& arena = arenas[me];
        std::size_t used = 0;
        // Per-worker buffer for a cluster's raw bytes, reused for every cluster.
        std::vector<std::uint8_t> raw;
        std::unique_ptr<ZSTD_CCtx, ZstdDeleter> cctx(ZSTD_createCCtx());
        ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
        if (sb.cdict) ZSTD_CCtx_refCDict(cctx.get(), sb.cdict);
        else ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, sb.level);
        for (;;) {
            std::size_t k = next.fetch_add(1);
            if (k >= clusters.size() || failed) return;
            Cluster& c = clusters[k];
            raw.clear();
            for (auto m : c.msgs) {
                raw.insert(raw.end(), sb.envelopes[m].begin(), sb.envelopes[m].end());
                leaves[m] = leaf_hash(sb.envelopes[m]);  // hashed here, on the worker threads
            }
            const std::size_t bound = ZSTD_compressBound(raw.size());
            if (arena.size() < used + bound) arena.resize(std::max(used + bound, arena.size() * 2));
            std::size_t r = ZSTD_compress2(cctx.get(), arena.data() + used, bound, raw.data(), raw.size());
            if (ZSTD_isError(r)) {
                std::lock_guard lk(mu);
                zerr = std::string("zstd: ") + ZSTD_getErrorName(r);
                failed = true;
                return;
            }
            c.worker = me;
            c.at = used;
            c.len = r;
            used += r;
        }
    };
    {
        std::vector<std::thread> pool;
        for (unsigned t = 1; t < std::max(1u, sb.threads); ++t) pool.emplace_back(work);
        work();
        for (auto& t : pool) t.join();
    }
    if (failed) {
        err = zerr;
        return Errc::io_error;
    }
    for (auto& c : clusters) c.comp = {arenas[c.worker].data() + c.at, c.len};
    // Layout: shards in order, clusters in first-ordinal order within each shard.
    std::vector<std::uint64_t> shard_size(sb.shards, 0);
    for (auto& c : clusters) {
        c.off = shard_size[c.shard];
        shard_size[c.shard] += c.comp.size();
    }
    std::vector<std::uint64_t> base(sb.shards, 0);
    for (unsigned k = 1; k < sb.shards; ++k) base[k] = base[k - 1] + shard_size[k - 1];
    stored = base[sb.shards - 1] + shard_size[sb.shards - 1];
    // Records.
    struct Rec {
        std::uint64_t bin_off = 0;
        std::uint32_t c_len = 0, inner_off = 0, i_len = 0;
    };
    std::vector<Rec> recs(n);
    for (auto& c : clusters) {
        std::uint32_t inner = 0;
        for (auto m : c.msgs) {
            recs[m] = Rec{base[c.shard] + c.off, std::uint32_t(c.comp.size()), inner, std::uint32_t(sb.envelopes[m].size())};
            inner += std::uint32_t(sb.envelopes[m].size());
        }
    }
    root_out = merkle_root(leaves);
    // Data files (temporary names, fsync): each cluster written from its own buffer.
    std::vector<std::string> tmp_names;
    for (unsigned k = 0; k < sb.shards; ++k) {
        std::string path = dat_path(dir, k, sb.number, sb.generation);
        std::string tmp = path + ".tmp";
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return sys_error(tmp, err);
        Errc e = Errc::ok;
        for (auto& c : clusters)
            if (c.shard == k && e == Errc::ok) e = file::write_all(fd, c.comp, tmp, err);
        if (e == Errc::ok && ::fsync(fd) != 0) e = sys_error(tmp, err);
        ::close(fd);
        if (e != Errc::ok) return e;
        tmp_names.push_back(path);
    }
    // Index.
    index::Content ix;
    ix.header.number.set(sb.number);
    ix.header.first.set(sb.first);
    ix.header.dict_id.set(sb.dict_id);
    ix.header.level.set(sb.level);
    std::int64_t rmin = INT64_MAX, rmax = INT64_MIN;
    std::uint64_t raw = 0;
    for (std::size_t i = 0; i < n; ++i) {
        rmin = std::min(rmin, sb.metas[i].recv);
        rmax = std::max(rmax, sb.metas[i].recv);
        raw += sb.envelopes[i].size();
    }
    ix.header.recv_min.set(rmin);
    ix.header.recv_max.set(rmax);
    ix.header.raw_bytes.set(raw);
    ix.header.stored_bytes.set(stored);
    ix.header.generation.set(sb.generation);
    ix.shard_sizes = shard_size;
    ix.records.resize(n);
    ix.recvs.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        index::Record& r = ix.records[i];
        r.bin_off.set(recs[i].bin_off);
        r.c_len.set(recs[i].c_len);
        r.inner_off.set(recs[i].inner_off);
        r.i_len.set(recs[i].i_len);
        r.path_hash.set(sb.metas[i].path_hash);
        ix.recvs[i] = sb.metas[i].recv;
    }
    for (auto& g : groups) {
        const Cluster& c = clusters[g.cluster];
        index::Group x;
        x.bin_off.set(base[c.shard] + c.off);
        x.c_len.set(std::uint32_t(c.comp.size()));
        x.count.set(std::uint32_t(g.msgs.size()));
        x.did_hash.set(g.did_hash);
        ix.groups.push_back(x);
    }
    std::vector<std::pair<std::uint64_t, std::uint32_t>> ops;
    for (std::uint32_t i = 0; i < n; ++i)
        for (auto h : sb.metas[i].op_hashes) ops.emplace_back(h, i);
    std::sort(ops.begin(), ops.end());
    for (auto& [h, m] : ops) {
        index::Op o;
        o.path_hash.set(h);
        o.message.set(m);
        ix.ops.push_back(o);
    }
    for (std::uint32_t i = 0; i < n; ++i)
        if (sb.purged[i]) {
            index::Purged p;
            p.message.set(i);
            std::memcpy(p.leaf, sb.purged_leaves[i].data(), 32);
            ix.purged.push_back(p);
        }
    ix.root = root_out;
    ix.prev_root = sb.prev_root;
    std::vector<std::uint8_t> x = index::encode_index(ix);
    std::string ipath = idx_path(dir, sb.number);
    if (Errc e = file::write_file(ipath + ".tmp", x, err); e != Errc::ok) return e;
    // Commit: data files, then the index.
    for (auto& p : tmp_names)
        if (Errc e = file::rename(p + ".tmp", p, err); e != Errc::ok) return e;
    for (unsigned k = 0; k < sb.shards; ++k)
        if (Errc e = file::fsync_dir(shard_dir(dir, k), err); e != Errc::ok) return e;
    if (Errc e = file::rename(ipath + ".tmp", ipath, err); e != Errc::ok) return e;
    return file::fsync_dir(dir + "/seg", err);
}

}  // namespace sov::cvl::detail
