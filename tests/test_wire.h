// Shared test helpers for hand-built firehose messages: a byte view of a vector, a CID over a
// tag string, and a message header {t, op: 1} (atproto event stream framing).
#pragma once

#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/io.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace testwire {

inline sov::ByteView view(const std::vector<std::uint8_t>& v) { return {v.data(), v.size()}; }

/// A dag-cbor CID (codec 0x71) of the bytes of `s`: distinct tags give distinct CIDs.
inline sov::cid::Cid cid_of(const std::string& s) {
    return sov::cid::compute(0x71, {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

/// The DAG-CBOR header of a message of type `t`: {"t": t, "op": 1}.
inline std::vector<std::uint8_t> header(std::string_view t) {
    std::vector<std::uint8_t> out;
    sov::cbor::Writer w(out);
    w.map(2);
    w.text("t");
    w.text(t);
    w.text("op");
    w.uint(1);
    return out;
}

}  // namespace testwire
