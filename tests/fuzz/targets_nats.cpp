// Fuzz target of the JetStream layer's decoders (sovereign/nats): a nats:// address, and the
// route of a frame envelope. Input byte 0 chooses: even → the rest is an address, which must
// parse again from its own server + path to the same result; odd → the rest is an envelope,
// whose route must stay in range and name a subject its partition's filter matches.
#include "sovereign/frame_stream.h"
#include "sovereign/nats/jetstream.h"
#include "sovereign/nats/route.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {
[[noreturn]] void broken(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    if ((data[0] & 1) == 0) {
        sov::nats::Url u, again;
        std::string why;
        if (!sov::nats::parse_url(rest, u, why)) return 0;
        const std::string text = u.server + (u.path.empty() ? "" : "/" + u.path);
        if (!sov::nats::parse_url(text, again, why) || again.server != u.server || again.path != u.path)
            broken("a parsed address does not parse again to itself");
        return 0;
    }
    sov::frames::Envelope env;
    if (sov::frames::parse_envelope(sov::ByteView(data + 1, size - 1), env)) return 0;
    for (std::uint32_t n : {1u, 16u, 100u}) {
        const sov::nats::Route r = sov::nats::route_of(env, n);
        if (r.partition >= n) broken("partition out of range");
        if (r.has_key == r.match_key.empty()) broken("a key without a match key, or the reverse");
        const std::string subject = sov::nats::subject_for("fh.src.pds.{pp}", r, env.src);
        char pp[8];
        std::snprintf(pp, sizeof pp, "%02u", r.partition);
        if (!sov::nats::subject_matches(std::string("fh.src.*.") + pp, subject))
            broken("the subject is not matched by its partition's filter");
        if (sov::nats::msg_id_for("match-key", r, env).empty()) broken("no message id in match-key mode");
        (void)sov::nats::subject_for("x.{src}.{pp}", r, env.src);
    }
    return 0;
}
