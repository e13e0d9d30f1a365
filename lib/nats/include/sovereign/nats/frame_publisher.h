// sovereign/nats/frame_publisher.h — frame records into JetStream, one message per frame, the
// way `frame-cat --to nats://HOST:PORT/SUBJECT` publishes them (docs/design.md §12): the
// message is the record's envelope (without its varint length), its subject the template
// expanded with the frame's route (route.h), its Nats-Msg-Id as the mode asks. The taps'
// --to nats:// writer hands it whole batches of records and waits for their acknowledgement
// before their cursors advance.
//
// Message ids as msg_id_for(mode, route, envelope): a marker gets "frame HASH" (hash64 of its
// envelope), so that a batch published again after a failure stores none of its markers twice.
#pragma once

#include "sovereign/io.h"
#include "sovereign/nats/jetstream.h"

#include <cstdint>
#include <string>

namespace sov::nats {

class FramePublisher {
public:
    /// `subject_template` may hold {pp} and {src} (subject_for); `partitions` 1 … 100;
    /// `msg_id_mode` "match-key", "src-seq" or "none" (msg_id_for). `retry_s`: how long
    /// Publisher::flush keeps re-publishing what was not acknowledged; 0: not at all (flush
    /// fails at once, and the caller publishes the batch again, in its order).
    FramePublisher(Connection& c, std::string subject_template, std::uint32_t partitions, std::string msg_id_mode,
                   double retry_s = 3600);

    /// Publishes every record of `records` (frame records back to back: uvarint(n) envelope,
    /// nothing cut). false and `why` on a record that does not parse (its byte offset in
    /// `records` and the reason) or a message that cannot be published (Publisher::publish).
    bool publish_records(ByteView records, std::string& why);
    /// Waits until every message published so far is stored (Publisher::flush).
    bool flush(std::string& why);

    std::uint64_t published() const { return published_; }  ///< messages handed to publish
    const Publisher& publisher() const { return pub_; }

private:
    Publisher pub_;
    std::string tmpl_, mode_;
    std::uint32_t partitions_;
    std::uint64_t published_ = 0;
};

}  // namespace sov::nats
