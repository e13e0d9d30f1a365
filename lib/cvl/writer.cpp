// The archive writer (cvl-pack). Every envelope read goes first to the journal, then to the
// pending segment in memory. When the pending segment reaches its message or byte bound it
// is sealed on a background thread (segment_writer.cpp), so reading, journaling and parsing
// of the next segment go on meanwhile. Only when a seal is durable is the journal rotated,
// so a crash anywhere leaves either the old journal (frames replayed from it) or a sealed
// segment plus a journal whose first frames recovery skips: exactly once.
#include "internal/cvl/common.h"
#include "internal/cvl/journal.h"

#include "sovereign/bitset.h"
#include "sovereign/file.h"
#include "sovereign/frame_stream.h"

#define ZDICT_STATIC_LINKING_ONLY  // ZDICT_optimizeTrainFromBuffer_fastCover (exported by libzstd)
#include <zdict.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace sov::cvl {

using namespace detail;

struct Writer::Impl {
    std::string dir;
    Params params;
    unsigned threads = 1;
    int lock_fd = -1;
    Journal journal;
    std::uint64_t next_ord = 0;
    std::uint64_t next_segment = 0;
    Hash last_root{};
    std::uint32_t dict_id = 0;
    std::unique_ptr<ZSTD_CDict, ZstdDeleter> cdict;
    std::optional<bitset::Set> tombs;
    // Pending segment: envelopes back to back, their (offset, size), their metadata.
    std::vector<std::uint8_t> pending_bytes;
    std::vector<std::pair<std::size_t, std::size_t>> pending;
    std::vector<Meta> metas;
    PackStats stats;

    // At most one seal is in flight (memory: two segments).
    struct Job {
        SegmentBuild sb;
        std::vector<std::uint8_t> bytes;
        std::uint64_t end_ord = 0;
        Hash root{};
        std::uint64_t stored = 0;
        Errc result = Errc::ok;
        std::string err;
        std::thread thread;
        std::atomic<bool> done{false};
    };
    std::unique_ptr<Job> job;
    std::vector<std::uint8_t> spare;  // a sealed segment's buffer, kept for the next one
    std::vector<std::vector<std::uint8_t>> arenas;  // the segment writer's, kept between seals
    std::vector<std::string> recovery_problems;     // journal damage found at open

    ~Impl() {
        if (job && job->thread.joinable()) job->thread.join();  // its segment is sealed; the journal still holds it
        if (lock_fd >= 0) ::close(lock_fd);
    }

    Errc load_dict(std::uint32_t id, std::string& err) {
        std::vector<std::uint8_t> d;
        if (Errc e = file::read_file(dict_path(dir, id), d, err); e != Errc::ok)
            return e == Errc::io_not_found ? Errc::cvl_missing_dict : e;
        cdict.reset(ZSTD_createCDict(d.data(), d.size(), params.level));
        dict_id = id;
        if (!cdict) {
            err = dict_path(dir, id) + ": not a zstd dictionary";
            return Errc::cvl_bad_dict;
        }
        return Errc::ok;
    }

    void add_pending(ByteView env) {
        pending.emplace_back(pending_bytes.size(), env.size());
        pending_bytes.insert(pending_bytes.end(), env.begin(), env.end());
        metas.push_back(meta_of(env));
    }

    Errc train(std::string& err) {
        // Samples: about 4 MiB of the segment's envelopes, spread evenly over it (training
        // time grows with the samples; more than a few MB does not improve the ratio).
        constexpr std::size_t kSampleBytes = 4u << 20;
        std::vector<std::uint8_t> samples;
        std::vector<std::size_t> sizes;
        std::size_t step = std::max<std::size_t>(1, pending_bytes.size() / kSampleBytes);
        for (std::size_t i = 0; i < pending.size(); i += step) {
            auto [off, len] = pending[i];
            samples.insert(samples.end(), pending_bytes.begin() + std::ptrdiff_t(off),
                           pending_bytes.begin() + std::ptrdiff_t(off + len));
            sizes.push_back(len);
        }
        if (sizes.size() < 16) return Errc::ok;  // too little to train on: keep the current dictionary
        std::vector<std::uint8_t> dict(params.dict_bytes);
        // fastCover with d = 8 and 4 candidate k (ZDICT_trainFromBuffer searches ~80
        // parameter pairs: most of a small run's instructions, for little ratio).
        ZDICT_fastCover_params_t fc{};
        fc.d = 8;
        fc.steps = 4;
        fc.f = 16;  // 2^16-entry frequency tables (the default 2^20 costs more to clear than to fill here)
        fc.nbThreads = 1;
        fc.zParams.compressionLevel = params.level;
        std::size_t r = ZDICT_optimizeTrainFromBuffer_fastCover(dict.data(), dict.size(), samples.data(), sizes.data(),
                                                                unsigned(sizes.size()), &fc);
        if (ZDICT_isError(r)) return Errc::ok;  // e.g. not enough distinct data: keep going without
        dict.resize(r);
        std::uint32_t id = dict_id + 1;
        if (Errc e = file::atomic_replace(dict_path(dir, id), dict, err); e != Errc::ok) return e;
        cdict.reset(ZSTD_createCDict(dict.data(), dict.size(), params.level));
        dict_id = id;
        ++stats.dictionaries;
        return Errc::ok;
    }

    // `carry`: envelopes already written to the current journal but not yet added to
    // `pending` (the rest of the batch being appended); they go to the new journal too.
    Errc finish_seal(std::string& err, std::span<const ByteView> carry = {}) {
        if (!job) return Errc::ok;
        job->thread.join();
        std::unique_ptr<Job> j = std::move(job);
        if (j->result != Errc::ok) {
            err = j->err;
            return j->result;
        }
        last_root = j->root;
        if (spare.capacity() < j->bytes.capacity()) spare = std::move(j->bytes);  // reused by the next segment
        ++stats.segments_sealed;
        stats.bytes_out += j->stored;
        // The tombstone file covers every sealed ordinal before any reader can read one.
        if (tombs && tombs->ensure(j->end_ord - 1) != Errc::ok) {
            err = tombs->last_error();
            return Errc::io_error;
        }
        std::vector<ByteView> keep;
        keep.reserve(pending.size() + carry.size());
        for (auto [off, len] : pending) keep.emplace_back(pending_bytes.data() + off, len);
        keep.insert(keep.end(), carry.begin(), carry.end());
        return journal.rotate(j->end_ord, keep, err);
    }

    Errc start_seal(std::string& err, std::span<const ByteView> carry = {}) {
        if (pending.empty()) return Errc::ok;
        if (Errc e = finish_seal(err, carry); e != Errc::ok) return e;  // one in flight; also gives last_root
        if (next_segment % std::max(1u, params.retrain_every) == 0 || dict_id == 0)
            if (Errc e = train(err); e != Errc::ok) return e;
        auto j = std::make_unique<Job>();
        j->bytes = std::move(pending_bytes);
        j->end_ord = next_ord;
        SegmentBuild& sb = j->sb;
        sb.number = next_segment++;
        sb.first = next_ord - pending.size();
        sb.dict_id = cdict ? dict_id : 0;
        sb.level = params.level;
        sb.shards = params.shards;
        sb.cdict = cdict.get();
        sb.cluster_bytes = params.cluster_bytes;
        sb.threads = threads;
        sb.arenas = &arenas;  // one seal in flight at a time
        sb.prev_root = last_root;
        for (auto [off, len] : pending) sb.envelopes.emplace_back(j->bytes.data() + off, len);
        sb.metas = std::move(metas);
        sb.purged.assign(pending.size(), false);
        sb.purged_leaves.resize(pending.size());
        pending.clear();
        pending_bytes = std::move(spare);
        pending_bytes.clear();
        pending_bytes.reserve(j->bytes.capacity());  // no regrowth (copies, faults) while it fills
        spare = {};
        metas = {};
        Job* raw = j.get();
        j->thread = std::thread([this, raw] {
            raw->result = write_segment(dir, raw->sb, raw->root, raw->stored, raw->err);
            raw->done = true;
        });
        job = std::move(j);
        return Errc::ok;
    }

    // Finishes a completed background seal without waiting for a running one.
    Errc poll_seal(std::string& err) { return job && job->done.load() ? finish_seal(err) : Errc::ok; }

    Errc seal(std::string& err) {
        if (Errc e = start_seal(err); e != Errc::ok) return e;
        return finish_seal(err);
    }

    // Journal recovery (format §6): frames past the sealed end become the pending segment,
    // continued in a fresh journal; the old journals are then deleted, except damaged ones,
    // which are kept as *.damaged. Damage is reported in recovery_problems.
    Errc recover(std::string& err) {
        std::vector<Journal::Contents> js;
        if (Errc e = Journal::read_all(dir, js, err); e != Errc::ok) return e;
        const std::uint64_t sealed_end = next_ord;
        for (std::size_t i = 0; i < js.size(); ++i) {
            const Journal::Contents& c = js[i];
            // A later journal holding next_ord has the same frames intact (rotation writes
            // it whole before the older one is deleted).
            auto later_covers = [&] {
                for (std::size_t k = i + 1; k < js.size(); ++k)
                    if (js[k].first <= next_ord) return true;
                return false;
            };
            for (const Journal::Record& r : c.records) {
                if (r.certain && r.ord < next_ord) continue;  // sealed, or already taken
                if (!(r.certain && r.ord == next_ord)) {
                    // After damage: the damaged frames are lost; the next intact ones follow.
                    if (later_covers()) break;
                    if (!r.certain && next_ord == sealed_end && r.ord < sealed_end) {
                        recovery_problems.push_back(c.path + ": the frames from byte " + std::to_string(r.offset) +
                                                    " on follow damage of unknown extent and may already be sealed: "
                                                    "not recovered");
                        break;
                    }
                }
                add_pending(r.env);
                ++next_ord;
                ++stats.recovered;
            }
            for (const Journal::Damage& d : c.damage)
                recovery_problems.push_back(
                    c.path + ":" + std::to_string(d.offset) + ": damaged journal record (" + d.reason + "): " +
                    std::to_string(d.length) + " bytes skipped" +
                    (d.one_record ? " (one frame, ordinal " + std::to_string(d.ord) + ")"
                                  : " (frames from ordinal " + std::to_string(d.ord) + " on; their count is unknown)") +
                    (d.offset + d.length < c.bytes.size() ? ", reading resumed at byte " + std::to_string(d.offset + d.length)
                                                          : ", nothing intact after it"));
        }
        // Never delete what could not be read: a damaged journal is first copied aside (out
        // of the journal names; durable before anything replaces or removes it).
        for (auto& c : js) {
            if (c.damage.empty()) continue;
            std::string kept = c.path + ".damaged";
            for (int k = 1; ::access(kept.c_str(), F_OK) == 0; ++k) kept = c.path + ".damaged." + std::to_string(k);
            if (Errc e = file::atomic_replace(kept, c.bytes, err); e != Errc::ok) return e;
            recovery_problems.push_back(c.path + ": the damaged journal is kept as " + kept);
        }
        // Continue in a fresh journal holding the pending frames, then drop the old ones.
        const std::uint64_t pending_first = next_ord - pending.size();
        const std::string jpath = dir + "/journal/" + journal_name(pending_first);
        {
            std::vector<std::uint8_t> all;
            for (auto [off, len] : pending) frames::append_envelope(all, {pending_bytes.data() + off, len});
            if (Errc e = file::atomic_replace(jpath, all, err); e != Errc::ok) return e;
        }
        for (auto& c : js)
            if (c.path != jpath) ::unlink(c.path.c_str());
        if (Errc e = file::fsync_dir(dir + "/journal", err); e != Errc::ok) return e;
        return journal.open(dir, pending_first, err);
    }
};

Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Writer::~Writer() = default;

std::unique_ptr<Writer> Writer::open(const std::string& dir, const Params& params, unsigned threads, std::string& err,
                                     Errc* code) {
    Errc dummy;
    Errc& ec = code ? *code : dummy;
    ec = Errc::ok;
    auto fail = [&](Errc e) -> std::unique_ptr<Writer> {
        ec = e;
        return nullptr;
    };
    auto im = std::make_unique<Impl>();
    im->dir = dir;
    im->threads = std::max(1u, threads);
    struct stat st {};
    const bool fresh = ::stat((dir + "/cvl.json").c_str(), &st) != 0;
    if (fresh) {
        if (::stat(dir.c_str(), &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                err = dir + ": exists and is not a directory";
                return fail(Errc::io_not_directory);
            }
            std::error_code fec;
            bool empty = true;
            for (auto& e : std::filesystem::directory_iterator(dir, fec))
                if (e.path().filename() != "lock") empty = false;  // an old writer's lock file is harmless
            if (!empty) {
                err = dir + ": exists, is not empty and is not a CVL archive (no cvl.json)";
                return fail(Errc::cvl_not_empty);
            }
        } else if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            return fail(sys_error(dir, err));
        }
    }
    // The lock before anything is written or read, so that two writers never both run.
    Errc le;
    im->lock_fd = take_lock(dir, le, err);
    if (im->lock_fd < 0) return fail(le);
    if (::stat((dir + "/cvl.json").c_str(), &st) != 0)
        if (Errc e = Config::create(dir, params, err); e != Errc::ok) return fail(e);
    Config cfg;
    if (Errc e = cfg.load(dir, err); e != Errc::ok) return fail(e);
    im->params = cfg.params;
    im->params.level = params.level;  // the level may change between runs
    // Temporary files of an interrupted seal or compaction, and the old data files (maybe
    // holding purged messages) of a compaction killed after switching an index: ours to
    // remove, under the lock.
    remove_stale_temps(dir);
    {
        std::uint64_t swept = 0;
        if (Errc e = sweep_generations(dir, im->params.shards, swept, err); e != Errc::ok) return fail(e);
    }
    // The pending segment's buffer, sized once (pages are touched only as it fills).
    im->pending_bytes.reserve(std::size_t(std::min<std::uint64_t>(im->params.segment_bytes, 1ull << 30)) + (16u << 20));
    // Sealed state: the last segment gives the next ordinal, root and dictionary.
    auto segs = list_segments(dir);
    if (!segs.empty()) {
        index::View x;
        if (Errc e = index::open_view(idx_path(dir, segs.back()), x, err); e != Errc::ok) return fail(e);
        im->next_ord = x.first() + x.n();
        im->next_segment = x.number() + 1;
        im->last_root = x.root;
        if (x.h.dict_id != 0)
            if (Errc e = im->load_dict(x.h.dict_id, err); e != Errc::ok) return fail(e);
        // Newer dictionaries (trained for a seal that did not complete) are reused by id order.
        for (std::uint32_t id = x.h.dict_id + 1; ::stat(dict_path(dir, id).c_str(), &st) == 0; ++id)
            if (Errc e = im->load_dict(id, err); e != Errc::ok) return fail(e);
    }
    // A missing index: appending would give its ordinals to new frames (format §1).
    if (auto missing = missing_segments(dir, segs, segs.empty() ? std::nullopt : std::optional(segs.back()), im->next_ord);
        !missing.empty()) {
        err.clear();
        for (auto& m : missing) err += (err.empty() ? "" : "\n") + m.text;
        err += "\n" + dir + ": refusing to append: new frames would reuse the ordinals of the missing segment(s)";
        return fail(Errc::cvl_chain);
    }
    if (Errc e = im->recover(err); e != Errc::ok) return fail(e);
    // The tombstone file of the sealed ordinals exists from the start, so readers map it
    // when they open and a first tombstone is visible at once (format §7).
    {
        std::string terr;
        auto tombs = bitset::Set::open(dir + "/tomb", true, &terr);
        if (!tombs) {
            err = terr;
            return fail(tombs.error());
        }
        im->tombs.emplace(std::move(*tombs));
        if (Errc e = im->tombs->ensure(im->next_ord ? im->next_ord - 1 : 0); e != Errc::ok) {
            err = im->tombs->last_error();
            return fail(e);
        }
    }
    return std::unique_ptr<Writer>(new Writer(std::move(im)));
}

Errc Writer::append(std::span<const ByteView> envelopes, std::string& err) {
    Impl& im = *impl_;
    // Journal first: the whole batch in one write, before anything else happens to it.
    // A finished background seal rotates the journal first, so this batch lands in the new one.
    if (Errc e = im.poll_seal(err); e != Errc::ok) return e;
    if (Errc e = im.journal.append(envelopes, err); e != Errc::ok) return e;
    for (std::size_t i = 0; i < envelopes.size(); ++i) {
        ByteView env = envelopes[i];
        im.add_pending(env);
        ++im.next_ord;
        ++im.stats.messages;
        im.stats.bytes_in += env.size();
        // Starting a seal may rotate the journal (finishing the previous seal): the rest of
        // this batch, already in the old journal, is carried into the new one.
        if (im.pending.size() >= im.params.segment_messages || im.pending_bytes.size() >= im.params.segment_bytes)
            if (Errc e = im.start_seal(err, envelopes.subspan(i + 1)); e != Errc::ok) return e;
    }
    return Errc::ok;
}

Errc Writer::sync_journal(std::string& err) { return impl_->journal.sync(err); }
Errc Writer::seal(std::string& err) { return impl_->seal(err); }
std::uint64_t Writer::next_ordinal() const noexcept { return impl_->next_ord; }
const PackStats& Writer::stats() const noexcept { return impl_->stats; }
const std::vector<std::string>& Writer::recovery_problems() const noexcept { return impl_->recovery_problems; }

}  // namespace sov::cvl
