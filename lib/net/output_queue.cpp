// The writer thread between the event loop and stdout (sovereign/net/output_queue.h): the loop
// appends to a list of 1 MiB chunks; the writer takes the whole list and writes it with
// writev, so each frame is copied once (into its chunk), and memory follows the queued bytes.
#include "sovereign/net/output_queue.h"

#include "sovereign/frame_stream.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <sys/uio.h>
#include <unistd.h>

namespace sov::net {

namespace {
constexpr std::size_t kBatchBytes = 256u << 10;  // a smaller batch waits up to 1 ms for more
constexpr std::size_t kChunkBytes = 1u << 20;
constexpr std::size_t kSpareChunks = 4;          // 4 MiB kept for steady streaming
constexpr std::size_t kRecordOverhead = 64;      // envelope bytes around src and wire, at most
}  // namespace

OutputQueue::OutputQueue(int fd, Options options, Callbacks callbacks)
    : fd_(fd), options_(options), cb_(std::move(callbacks)) {
    thread_ = std::thread([this] { run(); });
}

OutputQueue::OutputQueue(BatchWriter writer, Options options, Callbacks callbacks)
    : fd_(-1), writer_(std::move(writer)), options_(options), cb_(std::move(callbacks)) {
    thread_ = std::thread([this] { run(); });
}

OutputQueue::~OutputQueue() { close(); }

OutputQueue::Chunk& OutputQueue::tail_for(std::size_t need) {
    if (!chunks_.empty() && chunks_.back().capacity() - chunks_.back().size() >= need) return chunks_.back();
    if (!spare_.empty() && need <= kChunkBytes) {
        chunks_.push_back(std::move(spare_.back()));
        spare_.pop_back();
    } else {
        chunks_.emplace_back();
        chunks_.back().reserve(std::max(kChunkBytes, need));
    }
    return chunks_.back();
}

bool OutputQueue::push(ByteView bytes, std::uint32_t source, std::int64_t seq) {
    std::lock_guard lock(mu_);
    if (failed_ || closing_) return false;
    Chunk& c = tail_for(bytes.size());
    c.insert(c.end(), bytes.begin(), bytes.end());
    pending_ += bytes.size();
    pushed_ += bytes.size();
    queued_ += bytes.size();
    if (seq >= 0) cps_.push_back(Checkpoint{pushed_, source, seq});
    if (writer_waiting_) cv_.notify_one();  // a busy writer takes this batch next anyway
    if (queued_ > options_.high_bytes) full_ = true;
    return full_;
}

bool OutputQueue::push_record(std::string_view src, std::int64_t recv, ByteView wire, std::uint32_t source,
                              std::int64_t seq, bool& fits) {
    std::lock_guard lock(mu_);
    fits = true;
    if (failed_ || closing_) return false;
    Chunk& c = tail_for(src.size() + wire.size() + kRecordOverhead);
    const std::size_t before = c.size();
    if (!frames::append_record(c, src, std::nullopt, recv, wire)) {
        fits = false;
        return full_;
    }
    const std::size_t n = c.size() - before;
    pending_ += n;
    pushed_ += n;
    queued_ += n;
    if (seq >= 0) cps_.push_back(Checkpoint{pushed_, source, seq});
    if (writer_waiting_) cv_.notify_one();
    if (queued_ > options_.high_bytes) full_ = true;
    return full_;
}

void OutputQueue::close() {
    {
        std::lock_guard lock(mu_);
        closing_ = true;
        cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
}

std::size_t OutputQueue::queued_bytes() const {
    std::lock_guard lock(mu_);
    return queued_;
}
std::uint64_t OutputQueue::written_bytes() const {
    std::lock_guard lock(mu_);
    return written_;
}
bool OutputQueue::failed() const {
    std::lock_guard lock(mu_);
    return failed_;
}

int OutputQueue::write_fd(std::vector<Chunk>& batch) {
    std::vector<iovec> iov;
    int err = 0;
    // writev in groups of at most IOV_MAX chunks; a short write continues where it ended.
    for (std::size_t first = 0; first < batch.size() && !err;) {
        const std::size_t n = std::min<std::size_t>(batch.size() - first, IOV_MAX);
        iov.clear();
        for (std::size_t i = first; i < first + n; ++i)
            if (!batch[i].empty()) iov.push_back(iovec{batch[i].data(), batch[i].size()});
        std::size_t at = 0;  // first iovec not fully written
        while (at < iov.size()) {
            const ssize_t w = ::writev(fd_, iov.data() + at, int(iov.size() - at));
            if (w < 0) {
                if (errno == EINTR) continue;
                err = errno;
                break;
            }
            std::size_t left = std::size_t(w);
            while (at < iov.size() && left >= iov[at].iov_len) left -= iov[at++].iov_len;
            if (left) {
                iov[at].iov_base = static_cast<std::uint8_t*>(iov[at].iov_base) + left;
                iov[at].iov_len -= left;
            }
        }
        first += n;
    }
    return err;
}

void OutputQueue::run() {
    std::vector<Chunk> batch;
    std::vector<Checkpoint> cps;
    std::vector<ByteView> pieces;
    for (;;) {
        std::size_t bytes = 0;
        {
            std::unique_lock lock(mu_);
            writer_waiting_ = true;
            cv_.wait(lock, [&] { return pending_ > 0 || closing_; });
            writer_waiting_ = false;
            // A small batch waits up to 1 ms for more (pushes meanwhile wake nobody): one
            // write and one wake-up per batch instead of per frame, at most 1 ms of latency.
            if (!closing_ && pending_ < kBatchBytes)
                cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return closing_ || pending_ >= kBatchBytes; });
            if (pending_ == 0) return;  // closing, all written
            batch.swap(chunks_);
            cps.swap(cps_);
            bytes = pending_;
            pending_ = 0;
        }
        int err = 0;
        if (writer_) {
            pieces.clear();
            for (const Chunk& c : batch)
                if (!c.empty()) pieces.emplace_back(c.data(), c.size());
            err = writer_(pieces);
        } else {
            err = write_fd(batch);
        }
        if (err) {
            {
                std::lock_guard lock(mu_);
                failed_ = true;
                chunks_.clear();
                cps_.clear();
                pending_ = 0;
                queued_ = 0;
            }
            if (cb_.on_failed) cb_.on_failed(err);
            // Wake a paused producer so it can notice and end.
            if (cb_.on_drained) cb_.on_drained();
            return;
        }
        if (cb_.on_written)
            for (const Checkpoint& c : cps) cb_.on_written(c.source, c.seq);
        bool drained = false;
        {
            std::lock_guard lock(mu_);
            queued_ -= bytes;
            written_ += bytes;
            if (full_ && queued_ <= options_.low_bytes) {
                full_ = false;
                drained = true;
            }
            // Written chunks: a few of the standard size are kept, the rest go back to the system.
            for (Chunk& c : batch)
                if (spare_.size() < kSpareChunks && c.capacity() == kChunkBytes) {
                    c.clear();
                    spare_.push_back(std::move(c));
                }
        }
        if (drained && cb_.on_drained) cb_.on_drained();
        batch.clear();
        cps.clear();
    }
}

}  // namespace sov::net
