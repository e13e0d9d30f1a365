// The writer thread between the event loop and stdout (sovereign/net/output_queue.h): the loop
// appends to one buffer; the writer swaps it out and writes it whole, so each frame is copied
// once (into the buffer) and memory is at most two batches.
#include "sovereign/net/output_queue.h"

#include "sovereign/frame_stream.h"

#include <cerrno>
#include <chrono>
#include <unistd.h>

namespace sov::net {

namespace {
constexpr std::size_t kBatchBytes = 256u << 10;
}

OutputQueue::OutputQueue(int fd, Options options, Callbacks callbacks)
    : fd_(fd), options_(options), cb_(std::move(callbacks)) {
    thread_ = std::thread([this] { run(); });
}

OutputQueue::~OutputQueue() { close(); }

bool OutputQueue::push(ByteView bytes, std::uint32_t source, std::int64_t seq) {
    std::lock_guard lock(mu_);
    if (failed_ || closing_) return false;
    buf_.insert(buf_.end(), bytes.begin(), bytes.end());
    if (seq >= 0) cps_.push_back(Checkpoint{buf_.size(), source, seq});
    queued_ += bytes.size();
    if (writer_waiting_) cv_.notify_one();  // a busy writer takes this batch next anyway
    if (queued_ > options_.high_bytes) full_ = true;
    return full_;
}

bool OutputQueue::push_record(std::string_view src, std::int64_t recv, ByteView wire, std::uint32_t source,
                              std::int64_t seq, bool& fits) {
    std::lock_guard lock(mu_);
    fits = true;
    if (failed_ || closing_) return false;
    const std::size_t before = buf_.size();
    if (!frames::append_record(buf_, src, std::nullopt, recv, wire)) {
        fits = false;
        return full_;
    }
    if (seq >= 0) cps_.push_back(Checkpoint{buf_.size(), source, seq});
    queued_ += buf_.size() - before;
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

void OutputQueue::run() {
    std::vector<std::uint8_t> batch;
    std::vector<Checkpoint> cps;
    for (;;) {
        {
            std::unique_lock lock(mu_);
            writer_waiting_ = true;
            cv_.wait(lock, [&] { return !buf_.empty() || closing_; });
            writer_waiting_ = false;
            // A small batch waits up to 1 ms for more (pushes meanwhile wake nobody): one
            // write and one wake-up per batch instead of per frame, at most 1 ms of latency.
            if (!closing_ && buf_.size() < kBatchBytes)
                cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return closing_ || buf_.size() >= kBatchBytes; });
            if (buf_.empty()) return;  // closing, all written
            batch.swap(buf_);
            cps.swap(cps_);
            buf_.clear();
            cps_.clear();
        }
        std::size_t off = 0;
        int err = 0;
        while (off < batch.size()) {
            const ssize_t n = ::write(fd_, batch.data() + off, batch.size() - off);
            if (n < 0) {
                if (errno == EINTR) continue;
                err = errno;
                break;
            }
            off += std::size_t(n);
        }
        if (err) {
            {
                std::lock_guard lock(mu_);
                failed_ = true;
                buf_.clear();
                cps_.clear();
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
            queued_ -= batch.size();
            written_ += batch.size();
            if (full_ && queued_ <= options_.low_bytes) {
                full_ = false;
                drained = true;
            }
        }
        if (drained && cb_.on_drained) cb_.on_drained();
        batch.clear();
        cps.clear();
        // A huge batch's memory is not kept for ever.
        if (batch.capacity() > options_.high_bytes * 2) std::vector<std::uint8_t>().swap(batch);
    }
}

}  // namespace sov::net
