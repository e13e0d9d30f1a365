// Frame records into JetStream (sovereign/nats/frame_publisher.h).
#include "sovereign/nats/frame_publisher.h"

#include "sovereign/frame_stream.h"
#include "sovereign/nats/route.h"

namespace sov::nats {

FramePublisher::FramePublisher(Connection& c, std::string subject_template, std::uint32_t partitions,
                               std::string msg_id_mode, double retry_s)
    : pub_(c, 4096, retry_s), tmpl_(std::move(subject_template)), mode_(std::move(msg_id_mode)), partitions_(partitions) {}

bool FramePublisher::publish_records(ByteView records, std::string& why) {
    std::size_t at = 0;
    while (at < records.size()) {
        // uvarint(n): at most kMaxVarint bytes (docs/format-frame-stream.md)
        std::size_t n = 0, i = at;
        unsigned shift = 0;
        for (;;) {
            if (i >= records.size() || i - at >= frames::kMaxVarint) {
                why = "record at byte " + std::to_string(at) + ": bad or cut length";
                return false;
            }
            const std::uint8_t b = records[i++];
            n |= std::size_t(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80)) break;
        }
        if (n > records.size() - i) {
            why = "record at byte " + std::to_string(at) + ": " + std::to_string(n) + " bytes announced, " +
                  std::to_string(records.size() - i) + " left";
            return false;
        }
        frames::Envelope env;
        if (const Located e = frames::parse_record(records.subspan(at, i - at + n), env)) {
            why = "record at byte " + std::to_string(at) + ": " + std::string(to_string(e.errc)) + " at byte " +
                  std::to_string(at + e.offset);
            return false;
        }
        const Route r = route_of(env, partitions_);
        if (!pub_.publish(subject_for(tmpl_, r, env.src), env.raw, msg_id_for(mode_, r, env), why)) return false;
        ++published_;
        at = i + n;
    }
    return true;
}

bool FramePublisher::flush(std::string& why) { return pub_.flush(why); }

}  // namespace sov::nats
