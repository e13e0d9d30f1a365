// sovereign/verify_engine.h — cbor-verify's engine: the stateless checks of a batch run on
// N threads, then the stateful checks (verify_state.h) run in input order on the calling
// thread. Output order is input order and per-DID state is exactly what a single thread
// would compute, because everything order-dependent happens in the sequential pass.
// Memory is bounded by the batch the caller hands in.
#pragma once

#include "sovereign/verify.h"
#include "sovereign/verify_state.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

namespace sov::verify {

/// One frame to verify: views that must stay valid during run().
struct FrameIn {
    ByteView wire;
    std::int64_t recv = 0;
    std::string_view src;
    /// Where `seq` must increase (bad-seq): empty = per `src` (docs/design.md §3). A verifier
    /// that sees one partition of a source's stream (docs/design.md §12) checks per (src,
    /// partition): a partition holds an increasing subsequence of the source's seqs.
    std::string_view seq_scope = {};
};

class Engine {
public:
    /// `threads` ≥ 1 (the calling thread counts as one); `lenient` as in Verifier;
    /// `max_dids` bounds the state's DID table; `check_pds`: a #commit or #sync that would pass
    /// but whose `src` is not KeySource::pds_source of its DID gets wrong-pds (docs/design.md
    /// §3; for streams tapped directly from PDSes). DIDs whose PDS the source does not know are
    /// not checked.
    Engine(const KeySource& keys, std::size_t threads, bool lenient, std::size_t max_dids, bool check_pds = false);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    /// Verifies frames[i] into out[i] (same size), stateless part in parallel, state in order.
    void run(std::span<const FrameIn> frames, std::span<Outcome> out);
    State& state() noexcept { return state_; }
    /// Facts of the frames of the last run() (same indices), e.g. DID and seq for reports.
    std::span<const Facts> facts() const noexcept { return {facts_.data(), frames_.size()}; }
    std::size_t threads() const noexcept { return verifiers_.size(); }

private:
    void work(std::size_t worker);
    void stateless_range(std::size_t worker);
    std::vector<std::unique_ptr<Verifier>> verifiers_;
    const KeySource& keys_;
    bool check_pds_ = false;
    State state_;
    std::vector<Facts> facts_;
    std::vector<std::thread> pool_;
    std::mutex mu_;
    std::condition_variable cv_start_, cv_done_;
    std::uint64_t generation_ = 0;
    std::size_t busy_ = 0;
    bool stop_ = false;
    std::span<const FrameIn> frames_;
    std::span<Outcome> out_;
    std::atomic<std::size_t> next_{0};
};

}  // namespace sov::verify
