// Frame streams over NATS JetStream (sovereign/nats/jetstream.h), on libnats 3.4.
#include "sovereign/nats/jetstream.h"

#include <nats/nats.h>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

namespace sov::nats {

namespace {

std::string status_text(natsStatus s, jsErrCode jerr = jsErrCode(0)) {
    std::string t = natsStatus_GetText(s);
    const char* last = nats_GetLastError(nullptr);
    if (last && *last && t != last) t += std::string(": ") + last;
    if (jerr) t += " (JetStream error " + std::to_string(int(jerr)) + ")";
    return t;
}

constexpr std::int64_t kNs = 1000000000;

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

// ---- Url --------------------------------------------------------------------------------------

std::optional<std::string> Url::param(std::string_view k) const {
    for (const auto& [key, v] : query)
        if (key == k) return v;
    return std::nullopt;
}

bool parse_url(std::string_view text, Url& out, std::string& why) {
    constexpr std::string_view scheme = "nats://";
    out = Url{};
    if (text.substr(0, scheme.size()) != scheme) {
        why = "not a nats:// address";
        return false;
    }
    std::string_view rest = text.substr(scheme.size());
    std::string_view query;
    if (auto q = rest.find('?'); q != std::string_view::npos) query = rest.substr(q + 1), rest = rest.substr(0, q);
    std::string_view hostport = rest, path;
    if (auto sl = rest.find('/'); sl != std::string_view::npos) hostport = rest.substr(0, sl), path = rest.substr(sl + 1);
    if (hostport.empty()) {
        why = "no host in '" + std::string(text) + "'";
        return false;
    }
    std::string_view host = hostport, port = "4222";
    if (hostport.front() == '[') {  // [v6]:port
        auto end = hostport.find(']');
        if (end == std::string_view::npos) {
            why = "unclosed '[' in the host";
            return false;
        }
        host = hostport.substr(0, end + 1);
        if (end == 1) {
            why = "empty IPv6 address in '" + std::string(hostport) + "'";
            return false;
        }
        if (end + 1 < hostport.size()) {
            if (hostport[end + 1] != ':') {
                why = "junk after the IPv6 address";
                return false;
            }
            port = hostport.substr(end + 2);
        }
    } else if (auto c = hostport.rfind(':'); c != std::string_view::npos) {
        host = hostport.substr(0, c), port = hostport.substr(c + 1);
        if (host.find(':') != std::string_view::npos) {
            why = "an IPv6 address goes in brackets: nats://[" + std::string(host) + "]:" + std::string(port);
            return false;
        }
    }
    if (host.empty() || port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
        std::stoul(std::string(port)) == 0 || std::stoul(std::string(port)) > 65535) {
        why = "bad host or port in '" + std::string(hostport) + "'";
        return false;
    }
    out.server = "nats://" + std::string(host) + ":" + std::string(port);
    out.path = std::string(path);
    while (!query.empty()) {
        std::string_view kv = query.substr(0, query.find('&'));
        query.remove_prefix(std::min(query.size(), kv.size() + 1));
        if (kv.empty()) continue;
        auto eq = kv.find('=');
        out.query.emplace_back(std::string(kv.substr(0, eq)),
                               eq == std::string_view::npos ? std::string() : std::string(kv.substr(eq + 1)));
    }
    return true;
}

// ---- Connection -------------------------------------------------------------------------------

std::unique_ptr<Connection> Connection::open(const std::string& server, const std::string& name, std::string& why,
                                             int timeout_ms) {
    // libnats allocates every message on its reader thread and the tool frees it on its own
    // (and the reverse for publishes): glibc then trims that thread's heap after each batch
    // and faults the pages back in for the next, with a TLB shootdown on every trim. That was
    // half of frame-cat --from's CPU (perf: madvise, page faults, sysmalloc); a fixed trim
    // threshold keeps up to 64 MiB of freed memory instead.
    static std::once_flag malloc_once;
    std::call_once(malloc_once, [] { mallopt(M_TRIM_THRESHOLD, 64 << 20); });
    std::unique_ptr<Connection> c(new Connection());
    natsOptions* o = nullptr;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetURL(o, server.c_str());
    if (s == NATS_OK) s = natsOptions_SetName(o, name.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, timeout_ms);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);        // for ever, after the first connect
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(o, 64 << 20);  // publishes held while reconnecting
    // A server restarting refuses connections for a moment: tried again until timeout_ms.
    const double give_up = now_s() + timeout_ms / 1000.0;
    if (s == NATS_OK)
        while ((s = natsConnection_Connect(&c->nc_, o)) == NATS_NO_SERVER && now_s() < give_up)
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        why = "cannot connect to " + server + ": " + status_text(s);
        return nullptr;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    s = natsConnection_JetStream(&c->js_, c->nc_, &jo);
    if (s != NATS_OK) {
        why = server + ": " + status_text(s);
        return nullptr;
    }
    jsAccountInfo* ai = nullptr;
    jsErrCode jerr = jsErrCode(0);
    s = js_GetAccountInfo(&ai, c->js_, nullptr, &jerr);
    if (s != NATS_OK) {
        why = server + " does not answer JetStream requests (" + status_text(s, jerr) +
              "): is nats-server running with JetStream on (-js)?";
        return nullptr;
    }
    jsAccountInfo_Destroy(ai);
    return c;
}

Connection::~Connection() {
    if (stats_) natsStatistics_Destroy(stats_);
    if (js_) jsCtx_Destroy(js_);
    if (nc_) {
        natsConnection_FlushTimeout(nc_, 2000);
        natsConnection_Destroy(nc_);
    }
}

std::uint64_t Connection::reconnects() const {
    std::lock_guard lock(stats_mu_);
    std::uint64_t n = 0;
    if (!stats_ && natsStatistics_Create(&stats_) != NATS_OK) return 0;
    if (natsConnection_GetStats(nc_, stats_) == NATS_OK) natsStatistics_GetCounts(stats_, nullptr, nullptr, nullptr, nullptr, &n);
    return n;
}

bool Connection::connected() const { return nc_ && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

bool Connection::setup(const SetupOptions& o, std::string& why) {
    const std::int64_t max_payload = natsConnection_GetMaxPayload(nc_);
    if (max_payload < kMaxMsgSize) {
        why = "the server's max_payload is " + std::to_string(max_payload) +
              " bytes; frames reach 5 MB: set max_payload: 8MB in its configuration";
        return false;
    }
    struct Def {
        const char* name;
        const char* subject;
    };
    for (const Def& d : {Def{kSrcStream, "fh.src.>"}, Def{kVrdStream, "fh.vrd.>"}}) {
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        const char* subjects[] = {d.subject};
        cfg.Name = d.name;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = js_FileStorage;
        cfg.MaxMsgSize = kMaxMsgSize;
        cfg.Duplicates = kDuplicateWindowS * kNs;
        cfg.MaxBytes = o.max_bytes;
        cfg.MaxAge = o.max_age_s * kNs;
        jsStreamInfo* si = nullptr;
        jsErrCode jerr = jsErrCode(0);
        natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
        if (s != NATS_OK && jerr == JSStreamNameExistErr) s = js_UpdateStream(&si, js_, &cfg, nullptr, &jerr);
        if (si) jsStreamInfo_Destroy(si);
        if (s != NATS_OK) {
            why = std::string("stream ") + d.name + ": " + status_text(s, jerr);
            return false;
        }
    }
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = kCursorBucket;
    kc.History = 1;
    kc.StorageType = js_FileStorage;
    kvStore* kv = nullptr;
    natsStatus s = js_CreateKeyValue(&kv, js_, &kc);
    if (s != NATS_OK) {
        why = std::string("bucket ") + kCursorBucket + ": " + status_text(s);
        return false;
    }
    kvStore_Destroy(kv);
    return true;
}

namespace {
// The stream's info (to be destroyed by the caller), or nullptr and `why`, with the hint to
// create the streams when it does not exist.
jsStreamInfo* stream_info(jsCtx* js, const std::string& stream, std::string& why) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = jsErrCode(0);
    natsStatus s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr);
    if (s == NATS_OK) return si;
    why = "stream " + stream + ": " + status_text(s, jerr) +
          (s == NATS_NOT_FOUND ? " (create the streams with: frame-cat --nats-setup nats://HOST:PORT)" : "");
    return nullptr;
}
}  // namespace

bool Connection::check_stream(const std::string& stream, std::string& why) {
    jsStreamInfo* si = stream_info(js_, stream, why);
    if (!si) return false;
    const jsStreamConfig* c = si->Config;
    std::string bad;
    if (c->MaxMsgSize > 0 && c->MaxMsgSize < kMaxMsgSize) bad += " max message size " + std::to_string(c->MaxMsgSize) + ";";
    if (c->Duplicates < kDuplicateWindowS * kNs) bad += " duplicate window " + std::to_string(c->Duplicates / kNs) + " s;";
    if (c->Storage != js_FileStorage) bad += " memory storage;";
    jsStreamInfo_Destroy(si);
    if (!bad.empty()) {
        why = "stream " + stream + " is not set up for frames:" + bad +
              " (fix with: frame-cat --nats-setup nats://HOST:PORT)";
        return false;
    }
    return true;
}

bool Connection::stream_state(const std::string& stream, StreamState& out, std::string& why) {
    jsStreamInfo* si = stream_info(js_, stream, why);
    if (!si) return false;
    out.first = si->State.FirstSeq;
    out.last = si->State.LastSeq;
    out.messages = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return true;
}

Connection::Get Connection::get_message(const std::string& stream, std::uint64_t seq, std::string& subject,
                                        std::vector<std::uint8_t>& data, std::string& why) {
    natsMsg* m = nullptr;
    jsErrCode jerr = jsErrCode(0);
    natsStatus s = js_GetMsg(&m, js_, stream.c_str(), seq, nullptr, &jerr);
    if (s != NATS_OK) {
        if (jerr == JSNoMessageFoundErr) return Get::absent;
        why = "stream " + stream + " sequence " + std::to_string(seq) + ": " + status_text(s, jerr);
        return Get::error;
    }
    subject = natsMsg_GetSubject(m) ? natsMsg_GetSubject(m) : "";
    const auto* p = reinterpret_cast<const std::uint8_t*>(natsMsg_GetData(m));
    data.assign(p, p + natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    return Get::found;
}

// ---- Publisher --------------------------------------------------------------------------------

namespace {
void ack_trampoline(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    const bool fatal = pae && (pae->Err == NATS_NO_RESPONDERS || pae->ErrCode != 0);
    std::string err;
    if (pae) {
        err = pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
        if (pae->Err == NATS_NO_RESPONDERS) err += " (no stream holds this subject: check the subject, or run frame-cat --nats-setup)";
    }
    static_cast<Publisher*>(closure)->on_ack(msg, pa != nullptr, pa && pa->Duplicate, fatal, pae ? err.c_str() : nullptr,
                                             pa ? pa->Sequence : 0);
}

constexpr std::size_t kAckedWindow = 1 << 14;  // > max_pending: every pair that could be inverted
}  // namespace

Publisher::Publisher(Connection& c, int max_pending, double retry_s) : c_(c), retry_s_(retry_s) {
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    jo.PublishAsync.MaxPending = max_pending;
    jo.PublishAsync.AckHandler = ack_trampoline;
    jo.PublishAsync.AckHandlerClosure = this;
    jo.PublishAsync.StallWait = 1000;
    natsConnection_JetStream(&js_, c_.nc(), &jo);
    reconnects_seen_ = c_.reconnects();
}

Publisher::~Publisher() {
    // (libnats 3.4 crashes in js_PublishAsyncGetPendingList on a context that never published.)
    if (js_ && !published_any_) {
        jsCtx_Destroy(js_);
    } else if (js_) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 2000;
        js_PublishAsyncComplete(js_, &po);
        natsMsgList pending{};
        if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) natsMsgList_Destroy(&pending);
        jsCtx_Destroy(js_);
    }
    for (natsMsg* m : failed_) natsMsg_Destroy(m);
}

void Publisher::on_ack(natsMsg* msg, bool ok, bool duplicate, bool fatal, const char* err, std::uint64_t stream_seq) {
    if (ok) {
        (duplicate ? duplicates_ : stored_).fetch_add(1);
        {
            std::lock_guard lock(mu_);
            auto it = order_.find(msg);
            if (it != order_.end() && !duplicate) {
                // Stored out of publish order: a message published before it sits after it
                // in the stream, or one published after it sits before it. (Only new stores
                // count: a copy already held was stored when its first copy was, maybe by an
                // earlier run.)
                const std::uint64_t o = it->second;
                auto [at, fresh] = acked_.emplace(o, stream_seq);
                if (fresh) {
                    if (at != acked_.begin() && std::prev(at)->second > stream_seq) reordered_.fetch_add(1);
                    else if (std::next(at) != acked_.end() && std::next(at)->second < stream_seq) reordered_.fetch_add(1);
                    if (acked_.size() > kAckedWindow) acked_.erase(acked_.begin());
                }
            }
            if (it != order_.end()) order_.erase(it);
        }
        natsMsg_Destroy(msg);
        return;
    }
    std::lock_guard lock(mu_);
    failed_.push_back(msg);  // ours again: published anew before anything newer
    if (err) last_error_ = std::string(natsMsg_GetSubject(msg)) + ": " + err;
    fatal_ = fatal_ || fatal;
}

std::string Publisher::order_note() const {
    const std::uint64_t n = reordered_.load();
    return n ? "; " + std::to_string(n) + " stored out of publish order (the connection lost during a publish)" : "";
}

bool Publisher::behind() {
    const std::uint64_t r = c_.reconnects();
    std::lock_guard lock(mu_);
    return r != reconnects_seen_ || !failed_.empty();
}

std::vector<natsMsg*> Publisher::take_back() {
    std::vector<natsMsg*> again;
    const std::uint64_t r = c_.reconnects();
    if (published_any_) {
        natsMsgList pending{};
        if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) {
            for (int i = 0; i < pending.Count; ++i) {
                again.push_back(pending.Msgs[i]);
                pending.Msgs[i] = nullptr;
            }
            natsMsgList_Destroy(&pending);
        }
    }
    std::lock_guard lock(mu_);
    reconnects_seen_ = r;
    again.insert(again.end(), failed_.begin(), failed_.end());
    failed_.clear();
    // libnats returns its pending messages in no order: back to the order of first publication
    std::sort(again.begin(), again.end(), [&](natsMsg* a, natsMsg* b) { return order_[a] < order_[b]; });
    return again;
}

bool Publisher::publish_again(std::vector<natsMsg*>& msgs) {
    for (std::size_t i = 0; i < msgs.size(); ++i) {
        natsStatus s = c_.connected() ? js_PublishMsgAsync(js_, &msgs[i], nullptr) : NATS_CONNECTION_DISCONNECTED;
        if (s != NATS_OK) {  // these are still ours, and go first next time
            std::lock_guard lock(mu_);
            failed_.insert(failed_.begin(), msgs.begin() + std::ptrdiff_t(i), msgs.end());
            msgs.clear();
            return false;
        }
        ++retried_;
    }
    msgs.clear();
    return true;
}

void Publisher::forget(const std::vector<natsMsg*>& msgs) {
    std::lock_guard lock(mu_);
    for (natsMsg* m : msgs) {
        order_.erase(m);
        natsMsg_Destroy(m);
    }
}

bool Publisher::publish(const std::string& subject, ByteView data, std::string_view msg_id, std::string& why) {
    if (subject.empty()) {
        why = "empty subject";
        return false;
    }
    if (data.size() > std::size_t(kMaxMsgSize)) {
        why = "message of " + std::to_string(data.size()) + " bytes is over the 8 MiB limit";
        return false;
    }
    natsMsg* m = nullptr;
    natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, reinterpret_cast<const char*>(data.data()), int(data.size()));
    if (s == NATS_OK && !msg_id.empty()) s = natsMsgHeader_Set(m, "Nats-Msg-Id", std::string(msg_id).c_str());
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        why = "cannot build the message: " + status_text(s);
        return false;
    }
    const double start = now_s();
    {
        std::lock_guard lock(mu_);
        order_[m] = next_order_++;  // before the publish: its ack may come at once
    }
    for (int attempt = 0;; ++attempt) {
        // Nothing new goes out while older messages wait to be published again, nor while the
        // connection is down (libnats would buffer it and send it before those).
        bool sendable = c_.connected();
        if (sendable && behind()) {
            {
                std::lock_guard lock(mu_);
                if (fatal_) {  // for good: flush() says which and forgets them
                    why = "messages refused: " + last_error_;
                    order_.erase(m);
                    natsMsg_Destroy(m);
                    return false;
                }
            }
            auto again = take_back();
            if (again.empty() || retry_s_ > 0) {
                sendable = publish_again(again);  // nothing owed (a reconnection between batches): at once
            } else {
                // retry 0: the caller publishes them again, after flush() forgot them
                std::lock_guard lock(mu_);
                failed_.insert(failed_.begin(), again.begin(), again.end());
                sendable = false;
            }
        }
        s = sendable ? js_PublishMsgAsync(js_, &m, nullptr) : NATS_CONNECTION_DISCONNECTED;
        if (s == NATS_OK) {
            published_any_ = true;
            return true;  // the library owns it now
        }
        if (now_s() - start >= retry_s_) {
            {
                std::lock_guard lock(mu_);
                order_.erase(m);
            }
            natsMsg_Destroy(m);
            why = "publish to " + subject + (retry_s_ > 0 ? " failed for " + std::to_string(int(retry_s_)) + " s: " : " failed: ") +
                  (sendable ? status_text(s) : "the connection was lost; earlier messages to be published again");
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(1000, 20 << std::min(attempt, 6))));
    }
}

bool Publisher::flush(std::string& why) {
    const double start = now_s();
    double waiting_since = start;  // since the last (re-)publication
    for (int tries = 0;;) {
        // Wait a little for the acknowledgements; then look at what is owed.
        natsStatus s = NATS_OK;
        if (published_any_) {
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.MaxWait = 500;
            s = js_PublishAsyncComplete(js_, &po);
        }
        const bool lost = behind();  // a reconnection since, or a refusal
        if (s == NATS_OK && !lost) {
            std::lock_guard lock(mu_);
            if (!fatal_) last_error_.clear();
            return true;
        }
        // Unacknowledged long without a reconnection (the server slow or the reply lost):
        // treated as lost too.
        const bool stalled = s != NATS_OK && now_s() - waiting_since > 10;
        if (!lost && !stalled) continue;
        auto again = take_back();
        if (again.empty()) continue;
        std::string err;
        bool fatal = false;
        {
            std::lock_guard lock(mu_);
            err = last_error_;
            fatal = fatal_;
        }
        if (fatal) {
            forget(again);
            why = std::to_string(again.size()) + " messages refused: " + err;
            return false;
        }
        if (now_s() - start >= retry_s_) {
            forget(again);
            why = std::to_string(again.size()) + " messages not stored" +
                  (retry_s_ > 0 ? " after " + std::to_string(int(retry_s_)) + " s" : "") + (err.empty() ? "" : ": " + err) +
                  (c_.connected() ? "" : " (the connection is down)");
            return false;
        }
        // Published again oldest first, once the connection is back.
        while (!c_.connected() && now_s() - start < retry_s_)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (tries > 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(2000, 50 << std::min(tries, 6))));
        ++tries;
        publish_again(again);
        waiting_since = now_s();
    }
}

// ---- PullConsumer -----------------------------------------------------------------------------

namespace {
// A consumer's subject filter: `filter`, or the stream's one subject when it is empty. "" and
// `why` when the stream cannot be read or has several subjects.
std::string consumer_subject(Connection& c, const std::string& stream, const std::string& filter, std::string& why) {
    if (!filter.empty()) return filter;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = jsErrCode(0);
    natsStatus s = js_GetStreamInfo(&si, c.js(), stream.c_str(), nullptr, &jerr);
    if (s != NATS_OK) {
        why = "stream " + stream + ": " + status_text(s, jerr);
        return {};
    }
    std::string subject = si->Config->SubjectsLen == 1 ? si->Config->Subjects[0] : "";
    jsStreamInfo_Destroy(si);
    if (subject.empty()) why = "stream " + stream + " has several subjects: give filter=SUBJECT";
    return subject;
}
}  // namespace

std::unique_ptr<PullConsumer> PullConsumer::open(Connection& c, const std::string& stream, const std::string& name,
                                                 const std::string& filter, std::string& why) {
    ConsumerOptions o;
    o.filter = filter;
    return open(c, stream, name, o, why);
}

std::unique_ptr<PullConsumer> PullConsumer::open(Connection& c, const std::string& stream, const std::string& name,
                                                 const ConsumerOptions& o, std::string& why) {
    if (!c.check_stream(stream, why)) return nullptr;
    const std::string subject = consumer_subject(c, stream, o.filter, why);
    if (subject.empty()) return nullptr;
    std::unique_ptr<PullConsumer> p(new PullConsumer());
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckWait = std::int64_t(o.ack_wait_s) * kNs;
    so.Config.MaxAckPending = 65536;
    so.Config.MaxDeliver = -1;
    jsErrCode jerr = jsErrCode(0);
    if (o.restart_at_ack_floor) {
        // Its ack floor, then the consumer anew from just after it.
        jsConsumerInfo* ci = nullptr;
        natsStatus s = js_GetConsumerInfo(&ci, c.js(), stream.c_str(), name.c_str(), nullptr, &jerr);
        if (s == NATS_OK) {
            // A consumer recreated at sequence S that has acked nothing yet has floor 0: its
            // floor is then S − 1.
            std::uint64_t floor = ci->AckFloor.Stream;
            if (ci->Config && ci->Config->DeliverPolicy == js_DeliverByStartSequence && ci->Config->OptStartSeq > 0)
                floor = std::max<std::uint64_t>(floor, ci->Config->OptStartSeq - 1);
            jsConsumerInfo_Destroy(ci);
            s = js_DeleteConsumer(c.js(), stream.c_str(), name.c_str(), nullptr, &jerr);
            if (s != NATS_OK) {
                why = "consumer " + name + " on " + stream + ": cannot recreate it: " + status_text(s, jerr);
                return nullptr;
            }
            if (floor > 0) {
                so.Config.DeliverPolicy = js_DeliverByStartSequence;
                so.Config.OptStartSeq = floor + 1;
            }
            p->start_floor_ = floor;
        } else if (s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) {
            why = "consumer " + name + " on " + stream + ": " + status_text(s, jerr);
            return nullptr;
        }
        jerr = jsErrCode(0);
    }
    natsStatus s = js_PullSubscribe(&p->sub_, c.js(), subject.c_str(), name.c_str(), nullptr, &so, &jerr);
    if (s != NATS_OK) {
        why = "consumer " + name + " on " + stream + " (filter " + subject + "): " + status_text(s, jerr);
        return nullptr;
    }
    return p;
}

std::unique_ptr<PullConsumer> PullConsumer::open_at(Connection& c, const std::string& stream, const std::string& filter,
                                                    std::uint64_t start_seq, std::string& why) {
    if (!c.check_stream(stream, why)) return nullptr;
    const std::string subject = consumer_subject(c, stream, filter, why);
    if (subject.empty()) return nullptr;
    std::unique_ptr<PullConsumer> p(new PullConsumer());
    p->ephemeral_ = true;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = std::max<std::uint64_t>(1, start_seq);
    so.Config.InactiveThreshold = 30 * kNs;
    jsErrCode jerr = jsErrCode(0);
    natsStatus s = js_PullSubscribe(&p->sub_, c.js(), subject.c_str(), nullptr, nullptr, &so, &jerr);
    if (s != NATS_OK) {
        why = "consumer on " + stream + " (filter " + subject + ") from sequence " +
              std::to_string(start_seq) + ": " + status_text(s, jerr);
        p->sub_ = nullptr;
        return nullptr;
    }
    return p;
}

PullConsumer::~PullConsumer() {
    if (sub_ && ephemeral_) natsSubscription_Unsubscribe(sub_);  // deletes the ephemeral consumer
    if (sub_) natsSubscription_Destroy(sub_);  // not Unsubscribe: the durable consumer stays
}

bool PullConsumer::fetch(int max, int timeout_ms, std::vector<Delivery>& out, std::string& why, bool no_wait) {
    return fetch_impl(max, 0, timeout_ms, !no_wait, out, why);
}

bool PullConsumer::fetch(int max, std::int64_t max_bytes, int timeout_ms, std::vector<Delivery>& out, std::string& why) {
    return fetch_impl(max, max_bytes, timeout_ms, true, out, why);
}

bool PullConsumer::fetch_impl(int max, std::int64_t max_bytes, int timeout_ms, bool wait_for_one,
                              std::vector<Delivery>& out, std::string& why) {
    // What the stream has now (no_wait); when it has nothing, one message waited for at most
    // `timeout_ms`, and the next call takes what came behind it.
    natsMsgList list{};
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = max;
    req.MaxBytes = max_bytes;
    req.NoWait = true;
    req.Expires = std::int64_t(std::max(timeout_ms, 100)) * 1000000;
    natsStatus s = natsSubscription_FetchRequest(&list, sub_, &req);
    if (wait_for_one && list.Count == 0 && (s == NATS_OK || s == NATS_TIMEOUT || s == NATS_NOT_FOUND)) {
        natsMsgList_Destroy(&list);
        list = natsMsgList{};
        jsFetchRequest_Init(&req);
        req.Batch = 1;
        req.Expires = std::int64_t(std::max(timeout_ms, 1)) * 1000000;
        s = natsSubscription_FetchRequest(&list, sub_, &req);
    }
    if ((s == NATS_TIMEOUT || s == NATS_NOT_FOUND) && list.Count == 0) return true;
    if (s != NATS_OK && s != NATS_TIMEOUT && list.Count == 0) {
        why = status_text(s);
        return false;
    }
    for (int i = 0; i < list.Count; ++i) {
        natsMsg* m = list.Msgs[i];
        list.Msgs[i] = nullptr;
        Delivery d;
        d.msg = m;
        d.data = ByteView(reinterpret_cast<const std::uint8_t*>(natsMsg_GetData(m)), std::size_t(natsMsg_GetDataLength(m)));
        d.subject = natsMsg_GetSubject(m);
        jsMsgMetaData* meta = nullptr;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            d.stream_seq = meta->Sequence.Stream;
            d.delivered = meta->NumDelivered;
            jsMsgMetaData_Destroy(meta);
        }
        out.push_back(std::move(d));
    }
    natsMsgList_Destroy(&list);
    return true;
}

bool PullConsumer::ack(Delivery& d, std::string& why) {
    natsStatus s = natsMsg_Ack(d.msg, nullptr);
    natsMsg_Destroy(d.msg);
    d.msg = nullptr;
    if (s != NATS_OK) {
        why = "ack: " + status_text(s);
        return false;
    }
    return true;
}

void PullConsumer::drop(Delivery& d) {
    natsMsg_Destroy(d.msg);
    d.msg = nullptr;
}

std::int64_t PullConsumer::pending() {
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = jsErrCode(0);
    if (natsSubscription_GetConsumerInfo(&ci, sub_, nullptr, &jerr) != NATS_OK) return -1;
    const std::int64_t n = std::int64_t(ci->NumPending);
    jsConsumerInfo_Destroy(ci);
    return n;
}

// ---- KeyValue ---------------------------------------------------------------------------------

namespace {
// Bucket keys allow [-/_=.a-zA-Z0-9]: every other byte (and '.', '=' themselves) as =XX.
std::string kv_key(const std::string& key) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : key) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '/')
            out.push_back(char(c));
        else
            out.push_back('='), out.push_back(hex[c >> 4]), out.push_back(hex[c & 15]);
    }
    return out;
}
}  // namespace

std::unique_ptr<KeyValue> KeyValue::open(Connection& c, const std::string& bucket, std::string& why) {
    std::unique_ptr<KeyValue> k(new KeyValue());
    natsStatus s = js_KeyValue(&k->kv_, c.js(), bucket.c_str());
    if (s != NATS_OK) {
        why = "bucket " + bucket + ": " + status_text(s) +
              (s == NATS_NOT_FOUND ? " (create it with: frame-cat --nats-setup nats://HOST:PORT)" : "");
        return nullptr;
    }
    return k;
}

KeyValue::~KeyValue() {
    if (kv_) kvStore_Destroy(kv_);
}

std::optional<std::string> KeyValue::get(const std::string& key, std::string& why) {
    why.clear();
    kvEntry* e = nullptr;
    natsStatus s = kvStore_Get(&e, kv_, kv_key(key).c_str());
    if (s == NATS_NOT_FOUND) return std::nullopt;
    if (s != NATS_OK) {
        why = "get " + key + ": " + status_text(s);
        return std::nullopt;
    }
    std::string v(static_cast<const char*>(kvEntry_Value(e)), std::size_t(kvEntry_ValueLen(e)));
    kvEntry_Destroy(e);
    return v;
}

bool KeyValue::put(const std::string& key, std::string_view value, std::string& why) {
    std::uint64_t rev = 0;
    natsStatus s = kvStore_Put(&rev, kv_, kv_key(key).c_str(), value.data(), int(value.size()));
    if (s != NATS_OK) {
        why = "put " + key + ": " + status_text(s);
        return false;
    }
    return true;
}

}  // namespace sov::nats
