// Fuzz target of the CVL segment-index codec (lib/internal/cvl/index.h): View::decode over any
// bytes must never crash or read out of bounds, and whatever it accepts must re-encode to the
// same bytes through encode_index (one codec: reader and writer agree on every byte). The
// input's checksum is recomputed first, so mutations reach the structure, not only the hash.
#include "internal/cvl/index.h"

#include "sovereign/blake3.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {
[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace idx = sov::cvl::index;
    std::vector<std::uint8_t> b(data, data + size);
    if (b.size() >= sizeof(idx::Header) + idx::kTrailer) {
        sov::blake3::Hasher hs;
        hs.update({b.data(), b.size() - 36});
        hs.finalize(b.data() + b.size() - 36, 32);
    }
    idx::View v;
    v.bytes = {b.data(), b.size()};
    v.path = "fuzz";
    std::string err;
    if (v.decode(err) != sov::Errc::ok) {
        if (err.rfind("fuzz:", 0) != 0) fail("an index error does not name the file and offset");
        return 0;
    }
    idx::Content c;
    c.header = v.h;
    for (unsigned k = 0; k < v.s(); ++k) c.shard_sizes.push_back(v.shard_size(k));
    for (std::uint32_t i = 0; i < v.n(); ++i) {
        c.records.push_back(v.rec(i));
        c.recvs.push_back(v.recv(i));
        (void)v.purged_leaf(i);
    }
    for (std::uint32_t g = 0; g < v.h.c; ++g) c.groups.push_back(v.group(g));
    for (std::uint32_t k = 0; k < v.h.p; ++k) c.ops.push_back(v.op(k));
    const std::uint8_t* q = v.purged;
    for (std::uint32_t k = 0; k < v.h.q; ++k, q += sizeof(idx::Purged)) {
        idx::Purged p;
        std::memcpy(&p, q, sizeof p);
        c.purged.push_back(p);
    }
    c.root = v.root;
    c.prev_root = v.prev_root;
    std::vector<std::uint8_t> again = idx::encode_index(c);
    if (again != b) fail("an accepted index does not re-encode to its own bytes");
    return 0;
}
