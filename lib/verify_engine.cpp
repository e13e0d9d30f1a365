#include "sovereign/verify_engine.h"

namespace sov::verify {

namespace {
constexpr std::size_t kChunk = 16;  // frames claimed per atomic increment
}

Engine::Engine(const KeySource& keys, std::size_t threads, bool lenient, std::size_t max_dids, bool check_pds)
    : keys_(keys), check_pds_(check_pds), state_(max_dids) {
    if (threads == 0) threads = 1;
    for (std::size_t i = 0; i < threads; ++i) verifiers_.push_back(std::make_unique<Verifier>(keys, lenient));
    for (std::size_t i = 1; i < threads; ++i) pool_.emplace_back([this, i] { work(i); });
}

Engine::~Engine() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : pool_) t.join();
}

void Engine::stateless_range(std::size_t worker) {
    Verifier& v = *verifiers_[worker];
    for (;;) {
        std::size_t start = next_.fetch_add(kChunk, std::memory_order_relaxed);
        if (start >= frames_.size()) return;
        std::size_t end = std::min(start + kChunk, frames_.size());
        for (std::size_t i = start; i < end; ++i) {
            out_[i] = v.verify(frames_[i].wire, frames_[i].recv, facts_[i]);
            const Facts& f = facts_[i];
            if (check_pds_ && passes(out_[i].verdict) && (f.type == msg::Type::commit || f.type == msg::Type::sync))
                if (auto host = keys_.pds_source(f.did); host && *host != frames_[i].src)
                    out_[i] = Outcome{Verdict::wrong_pds, "src " + std::string(frames_[i].src) + " is not the PDS of " +
                                                             std::string(f.did) + " (" + *host + ")"};
        }
    }
}

void Engine::work(std::size_t worker) {
    std::uint64_t seen = 0;
    for (;;) {
        {
            std::unique_lock lk(mu_);
            cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
        }
        stateless_range(worker);
        {
            std::lock_guard lk(mu_);
            if (--busy_ == 0) cv_done_.notify_one();
        }
    }
}

void Engine::run(std::span<const FrameIn> frames, std::span<Outcome> out) {
    facts_.resize(frames.size());
    frames_ = frames;
    out_ = out;
    next_.store(0, std::memory_order_relaxed);
    if (!pool_.empty() && frames.size() > kChunk) {
        {
            std::lock_guard lk(mu_);
            busy_ = pool_.size();
            ++generation_;
        }
        cv_start_.notify_all();
        stateless_range(0);
        std::unique_lock lk(mu_);
        cv_done_.wait(lk, [&] { return busy_ == 0; });
    } else {
        stateless_range(0);
    }
    for (std::size_t i = 0; i < frames.size(); ++i) state_.apply(facts_[i], frames[i].seq_scope.empty() ? frames[i].src : frames[i].seq_scope, frames[i].recv, out[i]);
}

}  // namespace sov::verify
