// Fuzz target of the PLC mirror's op-store loader (sovereign/plc_mirror.h check_op_store,
// docs/format-plc-mirror.md §5). Invariants: any bytes give ok or mirror_corrupt, never a
// crash; an error names the file and a byte offset inside the input; an accepted store's
// counts are consistent (no DIDs without ops), and a store cut after its header is accepted
// as empty.
#include "sovereign/plc_mirror.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {
[[noreturn]] void broken(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::uint64_t ops = 0, dids = 0;
    std::string err;
    const sov::Errc e = sov::plc::check_op_store(sov::ByteView(data, size), "ops.bin", ops, dids, err);
    if (e == sov::Errc::ok) {
        if (dids > ops) broken("more DIDs than ops");
        if (size < 16) broken("a store shorter than its header accepted");
        if (sov::plc::check_op_store(sov::ByteView(data, 16), "ops.bin", ops, dids, err) != sov::Errc::ok || ops != 0)
            broken("the header alone of an accepted store is not an empty store");
        return 0;
    }
    if (e != sov::Errc::mirror_corrupt) broken("an error other than mirror_corrupt");
    if (err.rfind("ops.bin: offset ", 0) != 0) broken("error without the file and offset");
    const std::uint64_t off = std::strtoull(err.c_str() + 16, nullptr, 10);
    if (off > size) broken("error offset past the input");
    return 0;
}
