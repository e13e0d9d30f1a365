// sovereign/net/output_queue.h — frames from the event loop to stdout through a writer thread
// (docs/design.md §7 "Backpressure"): a blocked stdout never stalls the loop, the queue is
// bounded, and the producer is told to stop reading sockets when it is full — nothing is
// dropped and nothing buffers without bound.
//
// Memory: the queued bytes live in chunks of 1 MiB (a larger one only for a record that needs
// it), freed once written, a few kept for reuse; so RSS follows the queued bytes, with no
// copy when the queue grows and nothing held after a burst.
//
// Checkpoints: a producer may tag the end of a frame with (source, seq); once every byte up to
// that point has been handed to write(2), on_written(source, seq) is called on the writer
// thread. That is how a tap's cursor becomes "the last seq written to stdout" (§8).
//
// The writer thread writes to a file descriptor, or hands each batch to a BatchWriter (the
// taps' --to nats://: a checkpoint then fires only once the batch is stored and acknowledged).
#pragma once

#include "sovereign/io.h"

#include <string_view>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sov::net {

struct OutputQueueOptions {
    std::size_t high_bytes = 32u << 20;  ///< push() reports "full" above this many queued bytes
    std::size_t low_bytes = 8u << 20;    ///< on_drained() once the queue falls to this
};

class OutputQueue {
public:
    using Options = OutputQueueOptions;
    struct Callbacks {
        /// Writer thread: every byte up to a checkpoint (source, seq) has been written.
        std::function<void(std::uint32_t source, std::int64_t seq)> on_written;
        /// Writer thread: the queue was full and is now at or below low_bytes.
        std::function<void()> on_drained;
        /// Writer thread: writing failed (errno) or the reader went away (EPIPE: err = EPIPE).
        /// Later pushes are discarded.
        std::function<void(int err)> on_failed;
    };

    /// Writes one batch on the writer thread: the queued bytes in order, as pieces that each
    /// hold whole records (the bytes of one push() or push_record() never span two pieces).
    /// Returns 0 once all of it is written, or an errno value (the queue then fails as after a
    /// failed write(2): on_failed(err), later pushes discarded, no checkpoint of the batch).
    using BatchWriter = std::function<int(const std::vector<ByteView>& pieces)>;

    /// Starts the writer thread on `fd` (not closed by the queue).
    OutputQueue(int fd, Options options, Callbacks callbacks);
    /// Starts the writer thread, which hands every batch to `writer` instead of a descriptor.
    OutputQueue(BatchWriter writer, Options options, Callbacks callbacks);
    ~OutputQueue();  ///< close()s
    OutputQueue(const OutputQueue&) = delete;
    OutputQueue& operator=(const OutputQueue&) = delete;

    /// Appends `bytes`, with a checkpoint after them when `seq` ≥ 0. Returns true when the
    /// queue is now over high_bytes: the producer should stop reading until on_drained().
    bool push(ByteView bytes, std::uint32_t source = 0, std::int64_t seq = -1);
    /// Appends the frame record {src, recv, wire} encoded straight into the queue (no copy of
    /// its own), with the checkpoint as push(). Returns false in `fits` (and appends nothing)
    /// when no reader would accept the record (src over 253 bytes, envelope over 16 MiB).
    bool push_record(std::string_view src, std::int64_t recv, ByteView wire, std::uint32_t source, std::int64_t seq,
                     bool& fits);
    /// Writes everything queued, then ends the writer thread. Idempotent.
    void close();
    std::size_t queued_bytes() const;
    std::uint64_t written_bytes() const;
    bool failed() const;

private:
    struct Checkpoint {
        std::uint64_t end;  // stream offset: every byte before it written
        std::uint32_t source;
        std::int64_t seq;
    };
    using Chunk = std::vector<std::uint8_t>;
    Chunk& tail_for(std::size_t need);  // the chunk to append `need` bytes to (mu_ held)
    void run();

    int write_fd(std::vector<Chunk>& batch);  // 0 or errno
    int fd_;
    BatchWriter writer_;
    Options options_;
    Callbacks cb_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Chunk> chunks_;     // not yet taken by the writer, in order
    std::vector<Chunk> spare_;      // written chunks kept for reuse (a few)
    std::vector<Checkpoint> cps_;
    std::size_t pending_ = 0;       // bytes in chunks_
    std::uint64_t pushed_ = 0;      // stream offset of the end of chunks_
    std::size_t queued_ = 0;        // bytes in chunks_ plus the batch being written
    std::uint64_t written_ = 0;
    bool full_ = false, closing_ = false, failed_ = false;
    bool writer_waiting_ = false;  // the writer sleeps on cv_: only then is a push worth a wake-up
    std::thread thread_;
};

}  // namespace sov::net
