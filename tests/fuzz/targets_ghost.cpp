// Fuzz target of ghost-diff's matcher (sovereign/ghost.h): a byte string read as a frame stream
// (records until the first framing error), each record fed to one side (by the parity of its
// src's first byte), then finish(). Invariants: key_of never reads outside the wire and never
// throws; every matched-type message ends in at most one finding of its own (a match accounts
// for two), and finish() leaves nothing pending.
#include "sovereign/frame_stream.h"
#include "sovereign/ghost.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::uint64_t findings = 0, matches = 0;
    sov::ghost::Options opt;
    opt.window_us = 2'000'000;
    opt.max_pending = 64;
    sov::ghost::Matcher m(opt, [&](const sov::ghost::Finding& f) {
        ++findings;
        matches += f.kind == sov::ghost::Kind::match;
    });
    int relay = m.add_input(sov::ghost::Side::relay, "relay");
    int mesh = m.add_input(sov::ghost::Side::mesh, "mesh");
    std::size_t i = 0;
    while (i < size) {
        // uvarint length (at most 4 bytes), then the envelope
        std::size_t n = 0, j = i;
        int shift = 0;
        bool done = false;
        while (j < size && shift < 28) {
            n |= std::size_t(data[j] & 0x7f) << shift;
            shift += 7;
            if (!(data[j++] & 0x80)) {
                done = true;
                break;
            }
        }
        if (!done || n == 0 || n > size - j) break;
        sov::frames::Envelope env;
        if (sov::frames::parse_record({data + i, j - i + n}, env)) break;
        std::string why;
        int in = (!env.src.empty() && (env.src[0] & 1)) ? relay : mesh;
        (void)m.add(in, env, why);
        m.advance();
        i = j + n;
    }
    m.finish();
    auto st = m.stats(false);
    if (st.pending_mesh || st.pending_relay) {
        std::fprintf(stderr, "fuzz invariant broken: events pending after finish()\n");
        std::abort();
    }
    std::uint64_t events = st.mesh_events + st.relay_events;
    if (findings + matches + st.duplicates + st.late > events) {
        std::fprintf(stderr, "fuzz invariant broken: more findings than events\n");
        std::abort();
    }
    return 0;
}
