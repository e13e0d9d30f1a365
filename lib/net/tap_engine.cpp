// The taps' engine (sovereign/net/tap_engine.h).
#include "sovereign/net/tap_engine.h"

#include <algorithm>
#include <chrono>

namespace sov::net {

std::string_view to_string(SourceState s) noexcept {
    switch (s) {
        case SourceState::connecting: return "connecting";
        case SourceState::live: return "live";
        case SourceState::idle: return "idle";
        case SourceState::backoff: return "backoff";
        case SourceState::offline: return "offline";
    }
    return "?";
}

std::string default_label(const Endpoint& e) { return e.source() + e.path; }

namespace {
std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
}
std::string seconds(std::uint64_t ms) {
    std::string s = std::to_string(double(ms) / 1000.0);
    return s.substr(0, s.find('.') + 2);
}
}  // namespace

struct TapEngine::Source {
    std::uint32_t index = 0;
    TapSource def;
    SourceCursor cursor;
    Backoff backoff;
    SourceState state = SourceState::connecting;
    ConnId conn = 0;
    std::optional<std::int64_t> requested;  // the cursor the current connection asked for
    std::atomic<std::int64_t> written{-1};
    std::int64_t last_activity_us = 0;      // last message, or the connect
    std::int64_t last_idle_marker_us = 0;
    std::uint32_t failures_in_row = 0;
    std::uint32_t cursor_resets = 0;
    std::string end_reason;                 // the next disconnect marker's reason, when we know better
    bool relay = false, parked = false, queued = false;  // relay: skipped (no markers); parked: not reconnected

    Source(std::uint32_t i, TapSource d, const BackoffPolicy& p)
        : index(i), def(std::move(d)), cursor(def.cursor), backoff(p, std::uint64_t(i) * 0x9e3779b97f4a7c15ULL ^ std::uint64_t(now_us())) {
        written = def.cursor.value_or(-1);
    }
};

TapEngine::TapEngine(std::vector<TapSource> sources, TapEngineOptions options, OutputQueue& out, TapEngineCallbacks cb)
    : opt_(options), out_(out), cb_(std::move(cb)) {
    sources_.reserve(sources.size());
    for (std::size_t i = 0; i < sources.size(); ++i)
        sources_.push_back(std::make_unique<Source>(std::uint32_t(i), std::move(sources[i]), opt_.backoff));
    states_[std::size_t(SourceState::connecting)] = sources_.size();
}

TapEngine::~TapEngine() = default;

std::size_t TapEngine::source_count() const noexcept { return sources_.size(); }
const TapSource& TapEngine::source(std::size_t i) const noexcept { return sources_[i]->def; }
std::int64_t TapEngine::written_cursor(std::size_t i) const noexcept { return sources_[i]->written.load(); }
bool TapEngine::parked(std::size_t i) const noexcept { return sources_[i]->parked; }
std::uint32_t TapEngine::cursor_resets(std::size_t i) const noexcept { return sources_[i]->cursor_resets; }
std::array<std::uint64_t, kSourceStates> TapEngine::state_counts() const noexcept {
    std::array<std::uint64_t, kSourceStates> a{};
    for (std::size_t i = 0; i < kSourceStates; ++i) a[i] = states_[i].load();
    return a;
}

void TapEngine::on_written(std::uint32_t source, std::int64_t seq) noexcept {
    if (source < sources_.size()) sources_[source]->written = seq;
}

void TapEngine::set_state(Source& s, SourceState st) noexcept {
    if (s.state == st) return;
    --states_[std::size_t(s.state)];
    ++states_[std::size_t(st)];
    s.state = st;
}

void TapEngine::start(WsLoop& loop) {
    loop_ = &loop;
    for (auto& s : sources_) {
        s->queued = true;
        waiting_.push_back(s->index);
    }
    std::reverse(waiting_.begin(), waiting_.end());  // pop_back takes them in order
    pump();
    // Idle markers: look every tenth of the idle interval (at least every second).
    const std::uint32_t every = std::clamp<std::uint32_t>(opt_.idle_marker_ms / 10, 100, 1000);
    auto self_tick = std::make_shared<std::function<void()>>();
    *self_tick = [this, every, self_tick] {
        if (stopping_) return;
        sweep();
        loop_->after(every, *self_tick);
    };
    loop_->after(every, *self_tick);
}

void TapEngine::pump() {
    while (!stopping_ && !waiting_.empty() && connecting_ < opt_.max_connecting) {
        Source& s = *sources_[waiting_.back()];
        waiting_.pop_back();
        s.queued = false;
        connect(s);
    }
}

void TapEngine::connect(Source& s) {
    if (stopping_ || s.relay || s.parked) return;
    set_state(s, SourceState::connecting);
    ++connecting_;
    s.requested = s.cursor.cursor();
    s.conn = loop_->connect(s.def.endpoint, s.def.endpoint.path + subscribe_repos_path(s.requested));
    by_conn_[s.conn] = s.index;
}

void TapEngine::schedule(Source& s, std::uint64_t delay_ms) {
    loop_->after(std::uint32_t(std::min<std::uint64_t>(delay_ms, UINT32_MAX)), [this, idx = s.index] {
        Source& src = *sources_[idx];
        if (stopping_ || src.queued || src.conn) return;
        src.queued = true;
        waiting_.insert(waiting_.begin(), idx);  // behind the ones already waiting
        pump();
    });
}

void TapEngine::stop() {
    stopping_ = true;
    waiting_.clear();
}

void TapEngine::resume() {
    if (!loop_) return;
    loop_->post([this] {
        if (!paused_) return;
        paused_ = false;
        loop_->pause_reading(false);
    });
}

void TapEngine::push_marker(Source& s, const frames::Marker& m) {
    scratch_.clear();
    if (!frames::append_marker(scratch_, s.def.src, now_us(), m)) return;
    ++n_.markers;
    if (out_.push(ByteView(scratch_.data(), scratch_.size())) && !paused_) {
        paused_ = true;
        loop_->pause_reading(true);
    }
}

void TapEngine::finish(Errc e) {
    if (done_) return;
    done_ = true;
    stopping_ = true;
    if (cb_.done) cb_.done(e);
}

void TapEngine::on_open(ConnId id, const WsOpen& open) {
    auto it = by_conn_.find(id);
    if (it == by_conn_.end()) return;
    Source& s = *sources_[it->second];
    --connecting_;
    pump();
    if (opt_.skip_relays && open.server.find("atproto-relay") != std::string::npos) {
        s.relay = true;
        if (cb_.diag) cb_.diag(s.def.src, "is a relay (Server: " + open.server + "), not a PDS: skipped");
        loop_->close(id, "relay");
        return;
    }
    ++n_.connects;
    set_state(s, SourceState::live);
    s.cursor.on_connect();
    s.last_activity_us = now_us();
    frames::Marker m;
    m.kind = "connect";
    Endpoint e = s.def.endpoint;
    e.path += subscribe_repos_path(s.requested);
    m.url = e.url();
    m.cursor = s.requested;
    push_marker(s, m);
}

void TapEngine::on_message(ConnId id, ByteView wire, bool /*binary*/, std::int64_t recv_us) {
    auto it = by_conn_.find(id);
    if (it == by_conn_.end() || done_) return;
    Source& s = *sources_[it->second];
    if (s.relay) return;
    const StreamHead h = peek_stream_message(wire);
    const SourceCursor::Step step = s.cursor.on_message(h);
    if (step.verdict == SourceCursor::Verdict::duplicate) {
        ++n_.duplicates;
        return;
    }
    if (step.verdict == SourceCursor::Verdict::non_increasing) {
        ++n_.non_increasing;
        if (cb_.diag)
            cb_.diag(s.def.src, "seq " + std::to_string(*h.seq) + " does not increase within the connection; reconnecting from " +
                                    std::to_string(s.cursor.cursor().value_or(0)));
        loop_->drop(id, WsEnd::dropped, "seq " + std::to_string(*h.seq) + " did not increase");
        return;
    }
    s.last_activity_us = recv_us;
    if (s.state == SourceState::idle) set_state(s, SourceState::live);
    if (step.gap) {
        ++n_.gaps;
        frames::Marker m;
        m.kind = "gap";
        m.from = step.gap->from;
        m.to = step.gap->to;
        push_marker(s, m);
    }
    const std::int64_t checkpoint = h.seq ? *h.seq : -1;
    bool fits = true;
    const bool full = out_.push_record(s.def.src, recv_us, wire, s.index, checkpoint, fits);
    if (!fits) {
        if (cb_.diag) cb_.diag(s.def.src, "a message of " + std::to_string(wire.size()) + " bytes fits no frame record");
        finish(Errc::frame_oversized);
        return;
    }
    ++n_.messages;
    n_.bytes += wire.size();
    if (h.op == -1) {
        if (h.name == "FutureCursor") {
            ++n_.future_cursor;
            const std::string said = "the server says the cursor " + std::to_string(s.requested.value_or(0)) +
                                     " is ahead of its stream (FutureCursor" +
                                     (h.message.empty() ? std::string() : ": " + std::string(h.message)) + ")";
            const bool live = !opt_.future_cursor_fatal && opt_.future_cursor_live;
            if (cb_.diag)
                cb_.diag(s.def.src, said + (live ? "; its seq went back (a restart with a reset?): FORGETTING the cursor "
                                                   "and reconnecting at the live head, as --future-cursor live asks; "
                                                   "its events before that connection are not observed"
                                                 : "; a cursor is never reset silently: check it, or start without one" +
                                                       std::string(opt_.future_cursor_fatal ? "" : " (this host stays offline until then)")));
            if (opt_.future_cursor_fatal) {
                finish(Errc::net_future_cursor);
            } else if (live) {
                ++s.cursor_resets;
                s.cursor.reset();
                s.end_reason = "FutureCursor at cursor " + std::to_string(s.requested.value_or(0)) + ": cursor forgotten, reconnecting live";
                loop_->close(id, "FutureCursor");
            } else {
                s.end_reason = "FutureCursor at cursor " + std::to_string(s.requested.value_or(0)) + ": host left offline";
                s.parked = true;  // never reconnected: left offline
                loop_->close(id, "FutureCursor");
            }
            return;
        }
        if (cb_.diag)
            cb_.diag(s.def.src, "error frame " + std::string(h.name) + (h.message.empty() ? "" : ": " + std::string(h.message)));
    } else if (h.t == "#info" && h.name == "OutdatedCursor" && cb_.diag) {
        cb_.diag(s.def.src, "OutdatedCursor: the server no longer holds the events after " +
                                std::to_string(s.requested.value_or(0)) + "; a gap marker will say which were missed");
    }
    if (opt_.max_messages && n_.messages >= opt_.max_messages) {
        finish(Errc::ok);
        return;
    }
    if (full && !paused_) {
        paused_ = true;
        loop_->pause_reading(true);
    }
}

void TapEngine::on_close(ConnId id, const WsClose& c) {
    auto it = by_conn_.find(id);
    if (it == by_conn_.end()) return;
    Source& s = *sources_[it->second];
    by_conn_.erase(it);
    s.conn = 0;
    if (!c.was_open) {
        --connecting_;
        pump();
    }
    // "stopped", "dropped: <detail>", ...: the detail only when it adds something
    const std::string kind(to_string(c.why));
    const std::string why = kind + (c.reason.empty() || c.reason == kind ? "" : ": " + c.reason);
    if (c.was_open && !s.relay) {
        frames::Marker m;
        m.kind = "disconnect";
        m.reason = !s.end_reason.empty() ? s.end_reason
                   : c.why == WsEnd::closed
                       ? "closed " + std::to_string(c.code) + (c.reason.empty() ? "" : " " + c.reason)
                       : why;
        push_marker(s, m);
    }
    s.end_reason.clear();
    if (s.relay || s.parked) {
        set_state(s, SourceState::offline);
        return;
    }
    if (stopping_) {
        set_state(s, SourceState::backoff);
        return;
    }
    ++n_.reconnects;
    const std::int64_t open_ms = c.was_open ? (now_us() - c.open_us) / 1000 : 0;
    s.backoff.connection_ended(open_ms);
    if (c.was_open && open_ms >= std::int64_t(opt_.backoff.healthy_ms)) s.failures_in_row = 0;
    if (!c.was_open) ++s.failures_in_row, ++n_.failures;
    std::uint64_t delay;
    if (s.failures_in_row >= opt_.offline_after) {
        set_state(s, SourceState::offline);
        delay = opt_.offline_retry_ms;
        if (s.failures_in_row == opt_.offline_after && cb_.diag)
            cb_.diag(s.def.src, why + "; offline after " + std::to_string(s.failures_in_row) +
                                    " failed attempts, retried every " + seconds(delay) + " s");
    } else {
        set_state(s, SourceState::backoff);
        delay = s.backoff.next_delay_ms();
        if (c.retry_after_s) delay = std::max<std::uint64_t>(delay, std::uint64_t(*c.retry_after_s) * 1000);
        if (cb_.diag)
            cb_.diag(s.def.src, why + "; reconnecting in " + seconds(delay) + " s from cursor " +
                                    (s.cursor.cursor() ? std::to_string(*s.cursor.cursor()) : std::string("(live)")));
    }
    schedule(s, delay);
}

void TapEngine::sweep() {
    const std::int64_t now = now_us();
    const std::int64_t quiet = std::int64_t(opt_.idle_marker_ms) * 1000;
    for (auto& sp : sources_) {
        Source& s = *sp;
        if ((s.state != SourceState::live && s.state != SourceState::idle) || !s.conn) continue;
        if (now - s.last_activity_us < quiet || now - s.last_idle_marker_us < quiet) continue;
        set_state(s, SourceState::idle);
        s.last_idle_marker_us = now;
        frames::Marker m;
        m.kind = "idle";
        m.since = s.last_activity_us;
        push_marker(s, m);
    }
}

}  // namespace sov::net
