// Commit building and signing. The unsigned and signed forms are written directly in
// canonical key order (length first, then bytes: did, rev, sig, data, prev, version), so no
// map sorting happens and the signed form is the unsigned one with `sig` spliced in third —
// exactly what verify::unsigned_commit_digest() undoes on the reading side.
#include "sovereign/commit.h"

#include "sovereign/cbor.h"

#include <algorithm>

namespace sov::commit {

namespace {
void encode(const Fields& f, const std::array<std::uint8_t, 64>* sig, std::vector<std::uint8_t>& out) {
    cbor::Writer w(out);
    w.map(sig ? 6 : 5);
    w.text("did");
    w.text(f.did);
    w.text("rev");
    w.text(f.rev);
    if (sig) {
        w.text("sig");
        w.bytes(ByteView{sig->data(), sig->size()});
    }
    w.text("data");
    w.link(f.data);
    w.text("prev");
    if (f.prev.empty()) w.null();
    else w.link(f.prev);
    w.text("version");
    w.uint(3);
}
}  // namespace

void encode_unsigned(const Fields& f, std::vector<std::uint8_t>& out) { encode(f, nullptr, out); }

void encode_signed(const Fields& f, const std::array<std::uint8_t, 64>& sig, std::vector<std::uint8_t>& out) {
    encode(f, &sig, out);
}

Result<std::array<std::uint8_t, 64>> sign(const Fields& f, const crypto::PrivateKey& key) {
    std::vector<std::uint8_t> unsigned_block;
    encode_unsigned(f, unsigned_block);
    auto digest = crypto::sha256(ByteView{unsigned_block.data(), unsigned_block.size()});
    auto sig = crypto::sign(key, digest.data());
    // crypto::sign gives all zeros for an invalid scalar.
    if (std::all_of(sig.begin(), sig.end(), [](std::uint8_t b) { return b == 0; })) return Errc::bad_argument;
    return sig;
}

Errc build(const Fields& f, const crypto::PrivateKey& key, Block& out) {
    auto sig = sign(f, key);
    if (!sig) return sig.error();
    out.bytes.clear();
    encode_signed(f, *sig, out.bytes);
    out.cid = cid::compute(cid::kCodecDagCbor, ByteView{out.bytes.data(), out.bytes.size()});
    return Errc::ok;
}

}  // namespace sov::commit
