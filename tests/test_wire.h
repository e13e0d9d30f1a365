// Shared test helpers for hand-built firehose messages: a byte view of a vector, a CID over a
// tag string, and a message header {t, op: 1} (atproto event stream framing).
#pragma once

#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/io.h"

#include <cstdint>
#include <optional>
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

/// The keys did, seq (when given) and time, the first keys of #identity and #account.
inline void did_seq_time(sov::cbor::Writer& w, const std::string& did, std::optional<std::uint64_t> seq,
                         const std::string& time) {
    w.text("did");
    w.text(did);
    if (seq) {
        w.text("seq");
        w.uint(*seq);
    }
    w.text("time");
    w.text(time);
}

/// #identity {did, seq?, time} in canonical key order; seq only when given.
inline std::vector<std::uint8_t> identity_wire(const std::string& did, const std::string& time,
                                               std::optional<std::uint64_t> seq = std::nullopt) {
    auto out = header("#identity");
    sov::cbor::Writer w(out);
    w.map(seq ? 3 : 2);
    did_seq_time(w, did, seq, time);
    return out;
}

/// #account {did, seq?, time, active, status?} in canonical key order; seq only when given,
/// status only when not empty.
inline std::vector<std::uint8_t> account_wire(const std::string& did, const std::string& time, bool active,
                                              const std::string& status,
                                              std::optional<std::uint64_t> seq = std::nullopt) {
    auto out = header("#account");
    sov::cbor::Writer w(out);
    w.map(3 + (seq ? 1 : 0) + (status.empty() ? 0 : 1));
    did_seq_time(w, did, seq, time);
    w.text("active");
    w.boolean(active);
    if (!status.empty()) {
        w.text("status");
        w.text(status);
    }
    return out;
}

}  // namespace testwire
