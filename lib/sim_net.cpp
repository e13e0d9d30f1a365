// Simulated PDSes and relay (sovereign/sim_net.h). Every PDS keeps an EventLog of the messages
// it emitted (the generator's bytes with the PDS's own seq spliced in); the relay keeps one
// more, fed by every PDS in arrival order (after the optional delay) with its own seq. A
// subscription is a position in one log: it pulls one event per step, so a slow consumer
// costs no memory; "buffered" is the number of events emitted since it went live that it has
// not taken yet, the reference PDS's outbox count.
#include "sovereign/sim_net.h"

#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/frame_stream.h"
#include "sovereign/sim.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>

namespace sov::sim {

bool inspect(ByteView wire, WireFacts& f) {
    f = WireFacts{};
    ByteView header, payload;
    if (!msg::split(wire, header, payload)) return false;
    cbor::Value h = cbor::Value::of(header), p = cbor::Value::of(payload);
    f.type = std::string(h.get("t").as_text());
    if (cbor::Value s = p.get("seq"); s.valid()) f.seq = s.as_int();
    f.did = std::string(f.type == "#commit" ? p.get("repo").as_text() : p.get("did").as_text());
    f.rev = std::string(p.get("rev").as_text());
    if (cbor::Value c = p.get("commit"); c.is(cbor::Kind::link)) f.commit = cid::to_string(c.as_link());
    if (cbor::Value a = p.get("active"); a.is(cbor::Kind::boolean)) f.inactive = !a.as_bool();
    if (cbor::Value ops = p.get("ops"); ops.is(cbor::Kind::array)) {
        cbor::ArrayIter ai = ops.array();
        cbor::Value op;
        while (ai.next(op)) {
            std::string_view path = op.get("path").as_text();
            std::string c(path.substr(0, path.find('/')));
            if (std::find(f.collections.begin(), f.collections.end(), c) == f.collections.end())
                f.collections.push_back(std::move(c));
        }
    }
    return true;
}

// -- EventLog ----------------------------------------------------------------------------------

void EventLog::append(LoggedEvent e) {
    events_.push_back(std::move(e));
    ++end_;
    while (events_.size() > window_) {
        evicted_seq_ = events_.front().seq;
        events_.pop_front();
    }
}

void EventLog::clear() {
    events_.clear();
    evicted_seq_ = 0;
}

const LoggedEvent* EventLog::at(std::uint64_t pos) const noexcept {
    if (pos < begin() || pos >= end_) return nullptr;
    return &events_[std::size_t(pos - begin())];
}

std::uint64_t EventLog::after(std::uint64_t cursor) const noexcept {
    auto it = std::upper_bound(events_.begin(), events_.end(), cursor,
                               [](std::uint64_t c, const LoggedEvent& e) { return c < e.seq; });
    return begin() + std::uint64_t(it - events_.begin());
}

StartPlan plan_start(const EventLog& log, std::optional<std::uint64_t> cursor, CursorRule rule) noexcept {
    using K = StartPlan::Kind;
    if (!cursor) return {K::live, log.end()};
    if (*cursor > log.head_seq()) return {rule == CursorRule::pds ? K::future : K::live, log.end()};
    if (*cursor < log.evicted_seq()) return {rule == CursorRule::pds ? K::outdated : K::replay, log.begin()};
    return {K::replay, log.after(*cursor)};
}

// -- truth records -----------------------------------------------------------------------------

bool append_truth(std::vector<std::uint8_t>& out, const TruthRecord& r) {
    if (r.src.size() > frames::kMaxSrc) return false;
    std::vector<std::uint8_t> env;
    env.reserve(r.wire.size() + 128);
    cbor::Writer w(env);
    const bool relayed = !r.host.empty();
    w.map(3 + (relayed ? 2 : 0) + (r.drop.empty() ? 0 : 1));
    // Canonical order: src (3), then drop, host, hseq, recv, wire (4, bytewise).
    w.text("src");
    w.text(r.src);
    if (!r.drop.empty()) {
        w.text("drop");
        w.text(r.drop);
    }
    if (relayed) {
        w.text("host");
        w.text(r.host);
        w.text("hseq");
        w.uint(r.hseq);
    }
    w.text("recv");
    w.integer(r.recv);
    w.text("wire");
    w.bytes(r.wire);
    return frames::append_envelope(out, env);
}

// -- Network -----------------------------------------------------------------------------------

struct Network::Host {
    explicit Host(std::size_t window) : log(window) {}
    EventLog log;
    std::uint64_t seq = 0;    // last seq given (back to 0 at a restart)
    std::uint64_t epoch = 0;  // restarts
    std::uint64_t events = 0;
    std::uint64_t relay_last = 0;  // relay seq of its last relayed event
    std::int64_t relay_due = 0;    // arrival time of its last delayed event (per-host order is kept)
    bool flaky = false;
    struct Repo {
        std::string head, rev;
        bool active = true;
    };
    std::vector<std::uint32_t> accounts;  // registered accounts (Network::did_of), in order
    std::unordered_map<std::string, Repo> repos;
};

struct Network::Delayed {
    std::int64_t due_us;
    std::uint64_t order;  // ties in emission order
    std::size_t pds;
    std::uint64_t hseq;
    std::shared_ptr<const std::string> wire;
    bool operator>(const Delayed& o) const noexcept { return due_us != o.due_us ? due_us > o.due_us : order > o.order; }
};

struct Network::Subscription {
    std::optional<std::size_t> pds;
    std::uint64_t pos = 0, live_from = 0;
    std::uint64_t epoch = 0, cut_epoch = 0;
    enum class State { run, future_error, slow_error, closing } state = State::run;
    std::string close_reason;
    std::chrono::steady_clock::time_point slow_since;
    bool outdated_pending = false;
    bool flaky = false;
};

Network::Network(NetOptions o, Sink truth)
    : o_(std::move(o)), truth_(std::move(truth)), relay_log_(o_.relay_window), rng_state_(o_.seed ^ 0x6e6574ULL) {
    hosts_.reserve(o_.pdses);
    std::uint64_t fx = o_.seed ^ 0x666c616b79ULL;
    for (std::size_t i = 0; i < o_.pdses; ++i) {
        hosts_.emplace_back(o_.pds_window);
        hosts_.back().flaky = o_.accept_drop > 0 && double(splitmix64(fx) >> 11) * 0x1.0p-53 < o_.accept_drop;
    }
}

Network::~Network() = default;

std::string Network::host_label(std::size_t i) { return "pds" + std::to_string(i) + ".test"; }

std::optional<std::size_t> Network::index_of(std::string_view label, std::size_t pdses) {
    label = label.substr(0, label.find(':'));
    if (!label.starts_with("pds") || !label.ends_with(".test")) return std::nullopt;
    std::string_view digits = label.substr(3, label.size() - 8);
    std::size_t i = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), i);
    if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() || i >= pdses ||
        (digits.size() > 1 && digits[0] == '0'))
        return std::nullopt;
    return i;
}

bool Network::flaky(std::size_t i) const noexcept { return i < hosts_.size() && hosts_[i].flaky; }

double Network::uniform() { return double(splitmix64(rng_state_) >> 11) * 0x1.0p-53; }

void Network::add_account(std::size_t pds, const std::string& did) {
    std::lock_guard lock(mu_);
    if (pds >= hosts_.size()) return;
    hosts_[pds].accounts.push_back(std::uint32_t(named_.size()));
    named_.push_back(did);
}

void Network::add_accounts(const std::vector<std::uint32_t>& home, std::function<std::string(std::size_t)> did_of) {
    std::lock_guard lock(mu_);
    did_of_ = std::move(did_of);
    for (std::size_t a = 0; a < home.size(); ++a)
        if (home[a] < hosts_.size()) hosts_[home[a]].accounts.push_back(std::uint32_t(a));
}

Errc Network::emit(std::size_t pds, ByteView wire, std::int64_t now_us, std::vector<std::uint32_t>& wake) {
    std::lock_guard lock(mu_);
    if (pds >= hosts_.size()) return Errc::bad_argument;
    Host& h = hosts_[pds];
    if (!resequence(wire, h.seq + 1, scratch_)) return Errc::bad_argument;
    LoggedEvent e{++h.seq, now_us, std::make_shared<const std::string>(scratch_.begin(), scratch_.end())};
    ++h.events;
    ++n_.emitted;
    WireFacts f;
    if (inspect(wire, f) && !f.did.empty()) {
        Host::Repo& r = h.repos[f.did];
        if (!f.commit.empty()) r.head = f.commit;
        if (!f.rev.empty()) r.rev = f.rev;
        if (f.type == "#account") r.active = !f.inactive;
    }
    const std::string label = host_label(pds);
    if (truth_) {
        const std::string& w = *e.wire;
        truth_(TruthRecord{label, now_us, ByteView{reinterpret_cast<const std::uint8_t*>(w.data()), w.size()}, {}, 0, {}});
    }
    h.log.append(e);
    wake.push_back(std::uint32_t(pds));
    if (!o_.relay) return Errc::ok;
    // The relay's fate of this event.
    std::string_view drop;
    if (std::find(o_.relay_drop_hosts.begin(), o_.relay_drop_hosts.end(), pds) != o_.relay_drop_hosts.end())
        drop = "host";
    else if (std::any_of(f.collections.begin(), f.collections.end(), [&](const std::string& c) {
                 return std::find(o_.relay_drop_collections.begin(), o_.relay_drop_collections.end(), c) !=
                        o_.relay_drop_collections.end();
             }))
        drop = "collection";
    else if (o_.relay_drop > 0 && uniform() < o_.relay_drop)
        drop = "share";
    if (!drop.empty()) {
        ++n_.dropped;
        if (truth_) {
            const std::string src = "dropped." + o_.relay_label;
            const std::string& w = *e.wire;
            truth_(TruthRecord{src, now_us, ByteView{reinterpret_cast<const std::uint8_t*>(w.data()), w.size()}, label,
                               e.seq, drop});
        }
        return Errc::ok;
    }
    if (o_.relay_delay_ms > 0) {
        // Exponential delay, but a host's events reach the relay in the order it sent them
        // (indigo reads each host's stream in order).
        auto due = now_us + std::int64_t(-std::log(1.0 - uniform()) * o_.relay_delay_ms * 1000.0);
        due = std::max(due, h.relay_due);
        h.relay_due = due;
        delayed_.push_back(Delayed{due, n_.emitted, pds, e.seq, e.wire});
        std::push_heap(delayed_.begin(), delayed_.end(), std::greater<>());
        return Errc::ok;
    }
    relay_append(pds, e.seq, *e.wire, now_us, wake);
    return Errc::ok;
}

void Network::relay_append(std::size_t pds, std::uint64_t hseq, const std::string& wire, std::int64_t now_us,
                           std::vector<std::uint32_t>& wake) {
    ByteView in{reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()};
    if (!resequence(in, relay_seq_ + 1, scratch_)) return;  // cannot happen: the PDS's copy was resequenced already
    LoggedEvent e{++relay_seq_, now_us, std::make_shared<const std::string>(scratch_.begin(), scratch_.end())};
    ++n_.relayed;
    hosts_[pds].relay_last = e.seq;
    if (truth_) {
        const std::string label = host_label(pds);
        truth_(TruthRecord{o_.relay_label, now_us,
                           ByteView{reinterpret_cast<const std::uint8_t*>(e.wire->data()), e.wire->size()}, label, hseq,
                           {}});
    }
    relay_log_.append(std::move(e));
    wake.push_back(relay_topic());
}

void Network::advance(std::int64_t now_us, std::vector<std::uint32_t>& wake) {
    std::lock_guard lock(mu_);
    while (!delayed_.empty() && delayed_.front().due_us <= now_us) {
        std::pop_heap(delayed_.begin(), delayed_.end(), std::greater<>());
        Delayed d = std::move(delayed_.back());
        delayed_.pop_back();
        relay_append(d.pds, d.hseq, *d.wire, std::max(d.due_us, now_us), wake);
    }
    if (o_.pds_restart_every_s > 0 && !hosts_.empty()) {
        const auto every = std::int64_t(o_.pds_restart_every_s * 1e6);
        if (next_restart_us_ == 0) next_restart_us_ = now_us + every;
        if (now_us >= next_restart_us_) {
            next_restart_us_ = now_us + every;
            // The next PDS (round robin) that has emitted something restarts.
            for (std::size_t k = 0; k < hosts_.size(); ++k) {
                Host& h = hosts_[(restart_next_ + k) % hosts_.size()];
                if (!h.events) continue;
                restart_next_ = (restart_next_ + k + 1) % hosts_.size();
                h.log.clear();
                h.seq = 0;
                ++h.epoch;
                ++n_.restarts;
                wake.push_back(std::uint32_t(&h - hosts_.data()));
                break;
            }
        }
    }
    if (o_.cut_every_s > 0) {
        const auto every = std::int64_t(o_.cut_every_s * 1e6);
        if (next_cut_us_ == 0) next_cut_us_ = now_us + every;
        if (now_us >= next_cut_us_) {
            next_cut_us_ = now_us + every;
            ++cut_epoch_;
            for (std::size_t i = 0; i <= hosts_.size(); ++i) wake.push_back(std::uint32_t(i));
        }
    }
}

std::size_t Network::delayed() const {
    std::lock_guard lock(mu_);
    return delayed_.size();
}

std::shared_ptr<Network::Subscription> Network::subscribe(std::optional<std::size_t> pds,
                                                          std::optional<std::uint64_t> cursor) {
    std::lock_guard lock(mu_);
    auto s = std::make_shared<Subscription>();
    s->pds = pds;
    s->cut_epoch = cut_epoch_;
    ++n_.subscriptions;
    const EventLog& log = pds ? hosts_.at(*pds).log : relay_log_;
    if (pds) {
        s->epoch = hosts_[*pds].epoch;
        s->flaky = hosts_[*pds].flaky;
    }
    StartPlan p = plan_start(log, cursor, pds ? CursorRule::pds : CursorRule::relay);
    s->pos = p.pos;
    s->live_from = log.end();
    if (p.kind == StartPlan::Kind::future) {
        s->state = Subscription::State::future_error;
        ++n_.future;
    }
    if (p.kind == StartPlan::Kind::outdated) {
        s->outdated_pending = true;
        ++n_.outdated;
    }
    return s;
}

SubStep Network::step(Subscription& s, bool can_send) {
    using K = SubStep::Kind;
    std::lock_guard lock(mu_);
    if (s.flaky || s.cut_epoch != cut_epoch_ || (s.pds && hosts_[*s.pds].epoch != s.epoch)) {
        ++n_.cuts;
        return {K::cut, {}, 0};
    }
    switch (s.state) {
    case Subscription::State::closing: return {K::close, s.close_reason, 1008};
    case Subscription::State::future_error:
        if (!can_send) return {};
        s.state = Subscription::State::closing;
        s.close_reason = "FutureCursor";
        return {K::send, error_frame("FutureCursor", "Cursor in the future."), 0};
    case Subscription::State::slow_error:
        if (!can_send) {
            if (std::chrono::steady_clock::now() - s.slow_since >= std::chrono::milliseconds(o_.too_slow_grace_ms)) {
                ++n_.cuts;
                return {K::cut, {}, 0};
            }
            return {};
        }
        s.state = Subscription::State::closing;
        s.close_reason = "ConsumerTooSlow";
        return {K::send, error_frame("ConsumerTooSlow", "Stream consumer too slow"), 0};
    case Subscription::State::run: break;
    }
    const EventLog& log = s.pds ? hosts_[*s.pds].log : relay_log_;
    if (log.end() - std::max(s.pos, s.live_from) > o_.too_slow) {
        ++n_.too_slow;
        if (!s.pds) return {K::cut, {}, 0};  // indigo: the TCP connection is dropped
        s.state = Subscription::State::slow_error;
        s.slow_since = std::chrono::steady_clock::now();
        if (!can_send) return {};
        s.state = Subscription::State::closing;
        s.close_reason = "ConsumerTooSlow";
        return {K::send, error_frame("ConsumerTooSlow", "Stream consumer too slow"), 0};
    }
    if (!can_send) return {};
    if (s.outdated_pending) {
        s.outdated_pending = false;
        return {K::send, info_frame("OutdatedCursor", "Requested cursor exceeded limit. Possibly missing events"), 0};
    }
    if (s.pos < log.begin()) s.pos = log.begin();  // fell out of the window while replaying
    if (const LoggedEvent* e = log.at(s.pos)) {
        ++s.pos;
        return {K::send, *e->wire, 0};
    }
    return {};
}

nlohmann::json Network::describe_server(std::size_t pds) const {
    std::string label = host_label(pds);
    return {{"did", "did:web:" + label},
            {"availableUserDomains", nlohmann::json::array({"." + label})},
            {"inviteCodeRequired", false},
            {"phoneVerificationRequired", false},
            {"links", nlohmann::json::object()},
            {"contact", nlohmann::json::object()}};
}

nlohmann::json Network::list_repos(std::size_t pds, std::string_view cursor, std::size_t limit) const {
    std::lock_guard lock(mu_);
    const Host& h = hosts_.at(pds);
    std::size_t from = 0;
    if (!cursor.empty()) std::from_chars(cursor.data(), cursor.data() + cursor.size(), from);
    nlohmann::json repos = nlohmann::json::array();
    std::size_t i = from;
    for (; i < h.accounts.size() && repos.size() < limit; ++i) {
        if (h.repos.empty()) {
            i = h.accounts.size();
            break;
        }
        std::string did = did_of(h.accounts[i]);
        auto it = h.repos.find(did);
        if (it == h.repos.end() || it->second.head.empty()) continue;  // no commit seen yet: no head to give
        nlohmann::json r = {{"did", did}, {"head", it->second.head}, {"rev", it->second.rev},
                            {"active", it->second.active}};
        if (!it->second.active) r["status"] = "deactivated";
        repos.push_back(std::move(r));
    }
    nlohmann::json out = {{"repos", std::move(repos)}};
    if (i < h.accounts.size()) out["cursor"] = std::to_string(i);
    return out;
}

nlohmann::json Network::list_hosts(std::string_view cursor, std::size_t limit) const {
    std::lock_guard lock(mu_);
    std::size_t from = 0;
    if (!cursor.empty()) {
        std::from_chars(cursor.data(), cursor.data() + cursor.size(), from);
        ++from;
    }
    nlohmann::json hosts = nlohmann::json::array();
    std::size_t i = from, last = 0;
    for (; i < hosts_.size() && hosts.size() < limit; ++i) {
        if (!hosts_[i].events) continue;  // never emitted: hidden, as indigo hides never-active hosts
        hosts.push_back({{"hostname", host_label(i)},
                         {"seq", hosts_[i].relay_last},
                         {"accountCount", hosts_[i].accounts.size()},
                         {"status", "active"}});
        last = i;
    }
    nlohmann::json out = {{"hosts", std::move(hosts)}};
    if (i < hosts_.size() && !out["hosts"].empty()) out["cursor"] = std::to_string(last);
    return out;
}

NetCounters Network::counters() const {
    std::lock_guard lock(mu_);
    return n_;
}

}  // namespace sov::sim
