// Fuzz target of the network library's text decoders: endpoint parsing. Whatever parses must
// re-parse from its own normalised URL to the same endpoint (normalisation is idempotent).
#include "sovereign/net/endpoint.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    for (bool tls : {true, false}) {
        sov::net::EndpointError e;
        auto ep = sov::net::parse_endpoint(text, tls, e);
        if (!ep) continue;
        sov::net::EndpointError e2;
        auto again = sov::net::parse_endpoint(ep->url(), tls, e2);
        if (!again || again->url() != ep->url() || again->source() != ep->source()) {
            std::fprintf(stderr, "fuzz invariant broken: endpoint normalisation is not idempotent\n");
            std::abort();
        }
    }
    return 0;
}
