// sovereign/nats/jetstream.h — frame streams over NATS JetStream (docs/design.md §12,
// docs/SCALING.md): the connection, the streams and buckets the tools use, publishing with
// every acknowledgement checked, durable pull consumers acked after the work is done, and the
// key-value buckets that hold cursors. A thin layer over libnats (Debian 12: 3.4.1); nothing
// else in the project includes nats.h.
//
// Streams and buckets (created by setup(), the command `frame-cat --nats-setup URL`):
//   FH_SRC  subjects fh.src.>   what the taps receive (fh.src.<relay|pds>.<pp>)
//   FH_VRD  subjects fh.vrd.>   what the verifiers passed (fh.vrd.<pp>)
//   both: file storage, max message size 8 MiB, duplicate window 10 min (Nats-Msg-Id dedupe)
//   KV fh_cursors: per-host cursors of the taps (key = host label, value = decimal seq)
// <pp> is the partition of a frame: route.h.
#pragma once

#include "sovereign/io.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

// libnats types, kept out of the tools' sight
struct __natsConnection;
struct __jsCtx;
struct __natsSubscription;
struct __natsMsg;
struct __kvStore;
struct __natsStatistics;

namespace sov::nats {

inline constexpr const char* kSrcStream = "FH_SRC";
inline constexpr const char* kVrdStream = "FH_VRD";
inline constexpr const char* kCursorBucket = "fh_cursors";
inline constexpr std::int32_t kMaxMsgSize = 8 << 20;       ///< bytes; frames reach 5 MB
inline constexpr std::int64_t kDuplicateWindowS = 600;     ///< seconds of Nats-Msg-Id dedupe

/// A `nats://HOST:PORT[/PATH][?K=V&…]` address: `server` = "nats://HOST:PORT" (port 4222 when
/// absent), `path` = the text after the first '/' (a subject or a stream name; may be empty),
/// `query` in order. Percent-escapes are not decoded (subjects and names do not need them).
struct Url {
    std::string server;
    std::string path;
    std::vector<std::pair<std::string, std::string>> query;
    /// The value of query key `k`, if present.
    std::optional<std::string> param(std::string_view k) const;
};
/// Parses `text`; false with `why` (in words) when it is not such an address.
bool parse_url(std::string_view text, Url& out, std::string& why);

/// Stream settings of setup().
struct SetupOptions {
    std::int64_t max_bytes = -1;  ///< per stream, -1 = unlimited
    std::int64_t max_age_s = 0;   ///< per stream, 0 = kept for ever
};

/// One connection to a NATS server with JetStream. After the first connect it reconnects by
/// itself for ever (publishes meanwhile are buffered by libnats or fail and are retried by
/// Publisher::flush). Not copyable; used from one thread at a time, except the library's own.
class Connection {
public:
    /// Connects to `server` ("nats://HOST:PORT"); `name` shows in the server's monitoring.
    /// nullptr and `why` when the server cannot be reached within `timeout_ms` (a refused
    /// connection is tried again every 250 ms until then: a server restarting is waited for)
    /// or has no JetStream. The first call sets glibc's malloc trim threshold to 64 MiB for the whole
    /// process (messages cross threads; without it glibc returns and refaults their pages on
    /// every batch).
    static std::unique_ptr<Connection> open(const std::string& server, const std::string& name, std::string& why,
                                            int timeout_ms = 5000);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Creates the streams FH_SRC and FH_VRD and the bucket fh_cursors, or updates their
    /// settings when they exist. false and `why` on a refusal by the server.
    bool setup(const SetupOptions& o, std::string& why);
    /// The stream's settings the tools rely on (max message size ≥ 8 MiB, duplicate window ≥
    /// 10 min, file storage): true if `stream` exists with them, else false and `why`.
    bool check_stream(const std::string& stream, std::string& why);

    /// A stream's sequence range: `first` … `last` (both 0 while the stream never held a
    /// message; after a purge of everything, first = last + 1), `messages` held now (fewer
    /// than last − first + 1 when some were deleted). false and `why` when the stream cannot
    /// be read (absent: the hint to create it).
    struct StreamState {
        std::uint64_t first = 0, last = 0, messages = 0;
    };
    bool stream_state(const std::string& stream, StreamState& out, std::string& why);
    /// What get_message() found.
    enum class Get { found, absent, error };
    /// The message of sequence `seq` of `stream` (the server's stored copy): found with
    /// `subject` and `data`; absent when the stream does not hold that sequence (deleted,
    /// purged, aged out, or not yet written); error with `why` otherwise.
    Get get_message(const std::string& stream, std::uint64_t seq, std::string& subject, std::vector<std::uint8_t>& data,
                    std::string& why);

    __natsConnection* nc() const { return nc_; }
    __jsCtx* js() const { return js_; }
    /// Reconnections since open (the library's count).
    std::uint64_t reconnects() const;
    /// True while connected to the server (false while the library reconnects).
    bool connected() const;

private:
    Connection() = default;
    __natsConnection* nc_ = nullptr;
    __jsCtx* js_ = nullptr;
    mutable std::mutex stats_mu_;  // reconnects() is asked before every publish: one
    mutable __natsStatistics* stats_ = nullptr;  // statistics object, reused
};

/// Publishes to JetStream without waiting message by message: publish() queues, flush() waits
/// until the stream has acknowledged every message queued so far. A message the server
/// refused or did not acknowledge in time is published again (the same bytes, the same
/// Nats-Msg-Id: the stream drops a copy it already holds) until it is stored or `retry_s`
/// has passed. Without a message id a re-publish after a lost acknowledgement can store a
/// message twice: use ids where that matters.
///
/// Order. The stream stores this publisher's messages in the order publish() was called,
/// across lost connections and server restarts. What the server stores of one connection
/// is a prefix of what was sent on it; so after a reconnection, and after any refusal,
/// nothing new is sent until every message not yet acknowledged has been published again,
/// oldest first. (libnats' reconnect buffer would send messages queued while away before
/// those lost in flight; publish() never queues while the connection is down.) One case
/// remains that no client can close: a message handed to libnats in the microseconds
/// between the connection check and the connection's loss is sent first on the next
/// connection. The acknowledgements' stream sequences tell: reordered() counts messages
/// stored before one published earlier.
class Publisher {
public:
    /// `max_pending`: messages in flight before publish() waits for acknowledgements.
    /// `retry_s`: how long publish() and flush() keep trying; 0: not at all: after a lost
    /// connection or a refusal, publish() and flush() fail at once, flush() forgets every
    /// message not acknowledged, and the caller publishes them again in its order.
    explicit Publisher(Connection& c, int max_pending = 4096, double retry_s = 3600);
    ~Publisher();
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;

    /// Queues `data` on `subject` with the header Nats-Msg-Id = `msg_id` when not empty.
    /// false and `why` when the message cannot be built (over 8 MiB, an empty subject), or
    /// could not be queued within `retry_s` (the connection down, earlier messages not yet
    /// published again).
    bool publish(const std::string& subject, ByteView data, std::string_view msg_id, std::string& why);
    /// Waits until every message published so far is stored; false and `why` when some could
    /// not be stored within `retry_s`, or at once when the server refused one for good (no
    /// stream holds the subject: "no responders"; a message the stream refuses). The caller
    /// must then not treat them as done.
    bool flush(std::string& why);

    std::uint64_t stored() const { return stored_.load(); }        ///< acknowledged as new
    std::uint64_t duplicates() const { return duplicates_.load(); }  ///< acknowledged as already held
    std::uint64_t retried() const { return retried_; }              ///< re-publishes
    /// Messages the stream stored at a lower sequence than a message published before them
    /// (see "Order" above); 0 in every run we have seen.
    std::uint64_t reordered() const { return reordered_.load(); }
    /// For a tool's summary: "" when reordered() is 0, else "; N stored out of publish order".
    std::string order_note() const;

    // libnats' callback (internal). `fatal`: an error no retry mends (no stream on the
    // subject, a message the stream refuses). `stream_seq`: where the stream holds it (ok).
    void on_ack(__natsMsg* msg, bool ok, bool duplicate, bool fatal, const char* err, std::uint64_t stream_seq);

private:
    // Takes back every message not acknowledged (libnats' pending list and failed_), oldest
    // first, and notes the connection's reconnect count.
    std::vector<__natsMsg*> take_back();
    // Publishes `msgs` (oldest first) again; the ones it could not hand to libnats go back to
    // failed_. false when any did.
    bool publish_again(std::vector<__natsMsg*>& msgs);
    // Destroys messages given up on.
    void forget(const std::vector<__natsMsg*>& msgs);
    // True when earlier messages must be published again before anything new goes out: the
    // connection was lost since, or one was refused.
    bool behind();

    Connection& c_;
    double retry_s_;
    __jsCtx* js_ = nullptr;  // own context: its async publish options
    std::mutex mu_;
    std::vector<__natsMsg*> failed_;  // refused or unacknowledged, ours again
    std::unordered_map<__natsMsg*, std::uint64_t> order_;  // in flight or failed → publish order
    std::uint64_t next_order_ = 0;
    std::uint64_t reconnects_seen_ = 0;
    // Acknowledged (publish order → stream sequence) above the oldest message in flight, to
    // count reordered(); trimmed as the oldest are acknowledged.
    std::map<std::uint64_t, std::uint64_t> acked_;
    std::string last_error_;
    bool fatal_ = false;
    bool published_any_ = false;
    std::atomic<std::uint64_t> stored_{0}, duplicates_{0}, reordered_{0};
    std::uint64_t retried_ = 0;
};

/// One message fetched from a pull consumer. Owns the libnats message until acked or dropped.
struct Delivery {
    ByteView data;
    std::uint64_t stream_seq = 0;  ///< the message's sequence in its stream (1, 2, …)
    std::uint64_t delivered = 1;   ///< how many times it was delivered (> 1: redelivery)
    std::string subject;
    __natsMsg* msg = nullptr;
};

/// How a durable consumer is made (PullConsumer::open).
struct ConsumerOptions {
    std::string filter;      ///< subject filter; empty = the stream's one subject
    int ack_wait_s = 60;     ///< a delivery not acked within this is delivered again
    /// Recreate the consumer so that delivery restarts just after its ack floor (the last
    /// stream sequence below which everything is acked): what a process that died left
    /// unacked comes again at once, first and in stream order, instead of after the ack wait
    /// and behind newer messages. For a consumer with one reader at a time that acks in order.
    bool restart_at_ack_floor = false;
};

/// A durable pull consumer: deliveries are redelivered until acked, so a process that dies
/// between fetch and ack loses nothing.
class PullConsumer {
public:
    /// Binds to durable `name` on `stream`, creating it (deliver all, explicit ack, filter
    /// `filter` if not empty) when absent. nullptr and `why` on failure.
    static std::unique_ptr<PullConsumer> open(Connection& c, const std::string& stream, const std::string& name,
                                              const std::string& filter, std::string& why);
    /// As above, with every setting of `o`.
    static std::unique_ptr<PullConsumer> open(Connection& c, const std::string& stream, const std::string& name,
                                              const ConsumerOptions& o, std::string& why);
    ~PullConsumer();

    /// Appends up to `max` deliveries to `out`: what the stream has now; when it has nothing,
    /// waits at most `timeout_ms` for one (unless `no_wait`). A pull for `max` is answered
    /// only when `max` have come or it expires, so waiting for the whole batch would hold the
    /// first message of a slow stream for the whole timeout. false and `why` on an error other
    /// than "nothing arrived" (an empty fetch is true).
    bool fetch(int max, int timeout_ms, std::vector<Delivery>& out, std::string& why, bool no_wait = false);
    /// An ephemeral consumer (no name) that delivers the messages of `stream` (of `filter`
    /// when not empty) in stream order from sequence `start_seq` (≥ 1) on, without acks
    /// (nothing is redelivered: a reader that keeps its own cursor reopens it at the sequence
    /// it needs, e.g. after the server restarted). The server removes it when the object is
    /// destroyed, or 30 s after its process died. nullptr and `why` on failure (no stream:
    /// the hint to create it).
    static std::unique_ptr<PullConsumer> open_at(Connection& c, const std::string& stream, const std::string& filter,
                                                 std::uint64_t start_seq, std::string& why);
    /// As fetch(), returning once the deliveries reach `max_bytes` of data (≥ the largest
    /// message, 8 MiB: a message larger than what is left of a request ends it early), so a
    /// batch of large messages does not hold `max` of them in memory.
    bool fetch(int max, std::int64_t max_bytes, int timeout_ms, std::vector<Delivery>& out, std::string& why);
    /// Acknowledges and releases `d`. false and `why` when the ack could not be sent.
    bool ack(Delivery& d, std::string& why);
    /// Releases `d` without acking (it will be redelivered).
    static void drop(Delivery& d);
    /// Messages of the consumer's filter not yet delivered (server's count), -1 on error.
    std::int64_t pending();
    /// With restart_at_ack_floor: the stream sequence delivery restarted after (0: from the
    /// start).
    std::uint64_t start_floor() const { return start_floor_; }

private:
    PullConsumer() = default;
    std::uint64_t start_floor_ = 0;
    bool fetch_impl(int max, std::int64_t max_bytes, int timeout_ms, bool wait_for_one, std::vector<Delivery>& out,
                    std::string& why);
    __natsSubscription* sub_ = nullptr;
    bool ephemeral_ = false;  // open_at: unsubscribed (deleted on the server) when destroyed
};

/// A JetStream key-value bucket.
class KeyValue {
public:
    /// Binds to `bucket` (it must exist: setup()). nullptr and `why` on failure.
    static std::unique_ptr<KeyValue> open(Connection& c, const std::string& bucket, std::string& why);
    ~KeyValue();
    /// The value of `key`; nullopt when absent (why empty) or on error (why set).
    std::optional<std::string> get(const std::string& key, std::string& why);
    /// Stores `value` under `key`. false and `why` on failure.
    bool put(const std::string& key, std::string_view value, std::string& why);

private:
    KeyValue() = default;
    __kvStore* kv_ = nullptr;
};

}  // namespace sov::nats
