// Fuzz target of the taps' view of a wire message (sovereign/net/tap.h): peek_stream_message
// never reads outside the input, agrees with the full message parser on the header and seq,
// and the cursor rules never accept the same seq twice in one connection.
#include "sovereign/message.h"
#include "sovereign/net/tap.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const sov::ByteView wire(data, size);
    const sov::net::StreamHead h = sov::net::peek_stream_message(wire);
    sov::msg::Message m;
    if (!sov::msg::parse(wire, m) && m.seq > 0) {
        // A message the full parser accepts with a seq: the tap reads the same seq.
        if (!h.ok || !h.seq || *h.seq != m.seq) {
            std::fprintf(stderr, "fuzz invariant broken: peek disagrees with msg::parse on seq\n");
            std::abort();
        }
    }
    sov::net::SourceCursor c;
    c.on_connect();
    const auto first = c.on_message(h);
    const auto again = c.on_message(h);
    if (h.ok && h.seq && (first.verdict != sov::net::SourceCursor::Verdict::write ||
                          again.verdict != sov::net::SourceCursor::Verdict::non_increasing)) {
        std::fprintf(stderr, "fuzz invariant broken: a seq accepted twice in one connection\n");
        std::abort();
    }
    return 0;
}
