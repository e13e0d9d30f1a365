// Reconnect backoff (sovereign/net/backoff.h).
#include "sovereign/net/backoff.h"

#include <algorithm>

namespace sov::net {

Backoff::Backoff(Policy policy, std::uint64_t seed) : policy_(policy), rng_(seed) {}

std::uint32_t Backoff::ceiling_ms() const noexcept {
    std::uint64_t c = policy_.base_ms;
    for (std::uint32_t i = 0; i < attempts_ && c < policy_.cap_ms; ++i) c *= 2;
    return std::uint32_t(std::min<std::uint64_t>(c, policy_.cap_ms));
}

std::uint32_t Backoff::next_delay_ms() {
    const std::uint32_t ceiling = ceiling_ms();
    ++attempts_;
    return std::uniform_int_distribution<std::uint32_t>(0, ceiling)(rng_);
}

void Backoff::connection_ended(std::int64_t open_ms) noexcept {
    if (open_ms >= std::int64_t(policy_.healthy_ms)) attempts_ = 0;
}

}  // namespace sov::net
