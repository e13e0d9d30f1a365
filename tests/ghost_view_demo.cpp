// ghost_view_demo — writes the HTML report of a synthetic ghost-diff run (no matcher, no
// input files): the page tests/cli/ghost_report.py renders in headless Chromium, and the
// screenshot in docs/img/ghost-report.png.
//
//   ghost_view_demo OUT.html [--summary]      (--summary: the stderr summary on stdout too)
//
// Ten minutes of a relay (bsky.network) against three PDS hosts at 20 events/s each. The relay
// has two outages: 150-162 s, bridged by a cursor replay (its matches are "replayed"), and
// 380-395 s, reconnected at the live head (its mesh events are unobserved). pds2.test is not
// observed for 470-478 s (the relay's copies then are unobserved on the relay side).
// pds1.test is throttled from 200 to 300 s (one event in seven dropped); elsewhere one in 600.
// Everything comes from a fixed integer generator, so the numbers are the same on every
// machine (tests/cli/ghost_report.py expects them).
#include "ghost_view.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace {

struct Rng {
    std::uint64_t s = 0x9E3779B97F4A7C15ULL;
    std::uint64_t next() {  // xorshift64*
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545F4914F6CDD1DULL;
    }
    std::uint64_t below(std::uint64_t n) { return (next() >> 11) % n; }
};

std::string b32(Rng& r, int n) {
    static const char a[] = "abcdefghijklmnopqrstuvwxyz234567";
    std::string s;
    for (int i = 0; i < n; ++i) s += a[r.below(32)];
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: ghost_view_demo OUT.html [--summary]\n");
        return 2;
    }
    using namespace sov::ghost;
    const std::int64_t t0 = 1'795'773'600'000'000;  // 2026-11-27 10:00:00 UTC
    const std::int64_t S = 1'000'000;
    const char* hosts[] = {"pds0.test", "pds1.test", "pds2.test"};
    const char* colls[] = {"app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.graph.follow", "app.bsky.feed.repost"};
    const std::size_t keep = 200;
    Rng r;
    Stats s;
    s.bucket_us = 10 * S;
    auto in = [](std::int64_t t, std::int64_t a, std::int64_t b) { return t >= a && t < b; };
    for (std::int64_t i = 0; i < 600 * 60; ++i) {
        const std::int64_t t = t0 + i * S / 60, rel = t - t0;
        const int h = int(i % 3);
        TimeBucket& tb = s.by_time[t0 + (rel / s.bucket_us) * s.bucket_us];
        if (h == 2 && in(rel, 470 * S, 478 * S)) {  // pds2.test not observed: the relay's copy is unobserved
            ++s.relay_events;
            ++s.unobserved_relay;
            ++tb.unobserved;
            continue;
        }
        ++s.mesh_events;
        if (in(rel, 380 * S, 395 * S)) {  // the relay at the live head after its second outage
            ++s.unobserved_mesh;
            ++tb.unobserved;
            continue;
        }
        const bool throttled = h == 1 && in(rel, 200 * S, 300 * S);
        if (r.below(throttled ? 7 : 600) == 0) {
            ++s.drops;
            ++tb.drops;
            Finding f;
            f.kind = Kind::drop;
            f.type = r.below(40) ? "commit" : "identity";
            f.did = "did:plc:" + b32(r, 24);
            if (f.type == "commit") {
                f.cid = "bafyrei" + b32(r, 52);
                f.collection = colls[r.below(7) % 4];
            } else {
                f.time = "2026-11-27T10:00:00.000Z";
            }
            f.host = hosts[h];
            f.mesh_recv = t;
            ++s.drops_by_host[f.host];
            ++s.drops_by_collection[f.collection.empty() ? "(identity)" : f.collection];
            s.recent_drops.push_back(std::move(f));
            if (s.recent_drops.size() > keep) s.recent_drops.erase(s.recent_drops.begin());
            continue;
        }
        ++s.relay_events;
        ++s.matches;
        ++tb.matches;
        if (in(rel, 150 * S, 162 * S)) {  // replayed after the bridged outage: latency not counted
            ++s.replayed;
            continue;
        }
        std::int64_t lat = 600 + std::int64_t(r.below(900) + r.below(900) + r.below(900));
        if (r.below(20) == 0) lat += std::int64_t(r.below(20'000));
        if (r.below(25) == 0) lat = -std::int64_t(r.below(1500));
        s.latency.add(lat);
        ++tb.timed;
        if (lat > 0) {
            ++s.mesh_first;
            ++tb.mesh_first;
        }
    }
    for (int k = 0; k < 5; ++k) {  // relay-only
        ++s.relay_events;
        ++s.relay_only;
        ++s.by_time[t0 + std::int64_t(r.below(60)) * s.bucket_us].relay_only;
    }
    s.skipped = 12;
    s.markers = 16;
    s.duplicates = 3;
    s.late = 2;
    s.first_recv = t0;
    s.last_recv = t0 + 600 * S - S / 60;
    s.watermark = s.last_recv;
    SourceView relay{"bsky.network", Side::relay, t0, s.last_recv, s.relay_events, 3, {}, {}};
    relay.outages = {{t0 + 150 * S, t0 + 152 * S}, {t0 + 380 * S, t0 + 395 * S}};
    relay.unobserved = {{t0 + 380 * S, t0 + 395 * S}};
    s.sources.push_back(relay);
    for (int h = 0; h < 3; ++h) {
        SourceView m{hosts[h], Side::mesh, t0, s.last_recv, s.mesh_events / 3, 1, {}, {}};
        if (h == 2) {
            m.connects = 2;
            m.outages = {{t0 + 470 * S, t0 + 478 * S}};
            m.unobserved = {{t0 + 470 * S, t0 + 478 * S}};
        }
        s.sources.push_back(m);
    }
    ghostview::ReportMeta meta{"ghost-diff: bsky.network against 3 PDS hosts",
                               {"relay: relay.frames (bsky.network)", "mesh: mesh.frames (pds0.test, pds1.test, pds2.test)"},
                               5 * S, "2026-11-27 10:10:05 UTC"};
    std::ofstream out(argv[1], std::ios::binary);
    out << ghostview::render_report(s, meta);
    out.close();
    if (!out) {
        std::fprintf(stderr, "ghost_view_demo: %s: cannot write\n", argv[1]);
        return 2;
    }
    if (argc > 2 && std::string(argv[2]) == "--summary") std::fputs(ghostview::format_summary(s).c_str(), stdout);
    return 0;
}
