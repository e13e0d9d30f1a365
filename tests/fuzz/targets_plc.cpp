// Fuzz target of the PLC export-line and audit-log parsers (sovereign/plc.h). Invariants:
// an error names an offset inside the input and a reason; a parsed line's op encodes the same
// bytes twice, and its limits, signature and a one-op log all answer without crashing.
#include "sovereign/plc.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace {
[[noreturn]] void broken(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace sov::plc;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    ExportLine line;
    Problem why;
    const sov::Errc e = parse_export_line(text, line, why);
    if (e != sov::Errc::ok) {
        if (why.offset > size) broken("export-line error offset past the input");
        if (why.reason.empty()) broken("export-line error without a reason");
    } else {
        if (encode(line.op, true) != encode(line.op, true)) broken("op encoding not deterministic");
        (void)op_cid(line.op);
        (void)check_limits(line.op, Limits{}, why);
        std::size_t signer = 0;
        (void)verify_signature(line.op, normalise(line.op).rotation_keys, signer);
        Log log(line.did);
        if (log.apply(line, why) == sov::Errc::ok && log.entries().size() != 1) broken("accepted op not logged");
        (void)log.state();
    }
    std::vector<ExportLine> lines;
    if (parse_audit_log(text, lines, why) != sov::Errc::ok && why.offset > size)
        broken("audit-log error offset past the input");
    return 0;
}
