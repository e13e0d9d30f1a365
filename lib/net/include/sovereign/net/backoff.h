// sovereign/net/backoff.h — when to reconnect (docs/design.md §7 "Reconnects"): exponential
// backoff with full jitter, capped, reset only after a connection stayed healthy for a
// minute. Both failure paths go through it: a connect refused at once and an error after
// hours both call next_delay_ms(). Pure logic: no clock, no sleeping; tested on its own.
#pragma once

#include <cstdint>
#include <random>

namespace sov::net {

struct BackoffPolicy {
    std::uint32_t base_ms = 1'000;     ///< ceiling of the first delay
    std::uint32_t cap_ms = 300'000;    ///< no delay is longer (5 minutes)
    std::uint32_t healthy_ms = 60'000; ///< a connection open this long resets the sequence
};

class Backoff {
public:
    using Policy = BackoffPolicy;

    explicit Backoff(Policy policy = {}, std::uint64_t seed = std::random_device{}());

    /// The delay before the next attempt after a failure, in ms: uniform in
    /// [0, min(cap, base · 2^attempts)] ("full jitter"); then attempts() grows by one.
    std::uint32_t next_delay_ms();
    /// A connection ended after being open `open_ms` (0 if the upgrade never succeeded): one
    /// that lived at least healthy_ms resets the sequence (attempts() = 0).
    void connection_ended(std::int64_t open_ms) noexcept;
    /// The ceiling of the next delay, in ms (what next_delay_ms() draws below).
    std::uint32_t ceiling_ms() const noexcept;
    std::uint32_t attempts() const noexcept { return attempts_; }
    const Policy& policy() const noexcept { return policy_; }

private:
    Policy policy_;
    std::uint32_t attempts_ = 0;
    std::mt19937_64 rng_;
};

}  // namespace sov::net
