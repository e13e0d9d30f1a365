// sovereign/jetstream.h — event-stream messages in the JSON shape of Jetstream v1, the
// JSON re-encoding of the firehose that many consumers already read: one line per record op
// of a #commit with the record inline, one line per #identity and #account.
//
// Shape (one JSON object per line, keys in this order):
//   {"did", "time_us", "kind": "commit", "commit": {"rev", "operation", "collection", "rkey",
//                                                   "record", "cid"}}      (record and cid
//                                                                           absent on delete)
//   {"did", "time_us", "kind": "identity", "identity": {"did", "handle"?, "seq", "time"}}
//   {"did", "time_us", "kind": "account",  "account":  {"active", "did", "seq", "status"?,
//                                                        "time"}}
// Records are the atproto JSON data model (links {"$link"}, bytes {"$bytes"}: base64
// standard, unpadded), map keys sorted bytewise, blobs as {"$type", "ref", "mimeType",
// "size"}: what Jetstream serves, field for field. `time_us` is the caller's (the frame's
// `recv`; Jetstream puts its own clock there). Messages Jetstream does not carry (#sync,
// #info, error frames, deprecated and unknown types) give no line.
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <string>

namespace sov::jetstream {

/// What one conversion did.
struct Result {
    Errc errc = Errc::ok;
    std::size_t lines = 0;     ///< lines appended (0 for a message Jetstream does not carry)
    std::size_t offset = 0;    ///< on error: byte offset in the wire message (0 if not positional)
};

/// Appends the Jetstream lines of one wire message (header + payload, as received), each
/// ending in '\n'. The message is parsed strictly (msg::parse); the record of every create or
/// update op is looked up in the CAR slice by the op's CID after checking that the block
/// hashes to it. Errors (nothing appended): the parse error of msg::parse, the CAR errors
/// (car_*), car_hash_mismatch for a block that does not match its CID,
/// car_block_missing when an op's record block is not in the slice, a DAG-CBOR
/// error (cbor_*) for a record that is not a valid map.
Result append_lines(ByteView wire, std::int64_t time_us, std::string& out);

}  // namespace sov::jetstream
