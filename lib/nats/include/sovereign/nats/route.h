// sovereign/nats/route.h — where a frame goes in JetStream (docs/design.md §12): its partition
// (of hash(DID), so that every event of one repository reaches the same verifier), its subject
// from a template, its Nats-Msg-Id, and the rendezvous hash that gives PDS hosts to taps.
#pragma once

#include "sovereign/frame_stream.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace sov::nats {

/// 64-bit hash of `bytes`: the first 8 bytes of SHA-256(bytes), big-endian. Stable across
/// machines and versions (it names partitions and owners).
std::uint64_t hash64(std::string_view bytes);

/// The partition (0 … n−1) of a DID: hash64(did) mod n. n ≥ 1.
std::uint32_t partition_of(std::string_view did, std::uint32_t n);

/// What a frame's route is made of.
struct Route {
    std::uint32_t partition = 0;  ///< of the DID; of the src for markers and messages without a DID
    bool has_key = false;         ///< a message with a ghost-diff key (#commit, #sync, #identity, #account)
    std::string match_key;        ///< "commit DID CID" / "sync DID CID" / "identity DID TIME" /
                                  ///< "account DID TIME ACTIVE STATUS" (docs/design.md §11); empty if none
    std::int64_t seq = -1;        ///< the message's seq when it has one
};
/// Routes one envelope into `n` partitions. A message whose key cannot be read (truncated,
/// a key field missing) is routed by its src, without a key.
Route route_of(const frames::Envelope& env, std::uint32_t n);

/// Expands a subject template: "{pp}" → the partition as two decimal digits (n ≤ 100), "{src}"
/// → the frame's src with '.', '*', '>' and spaces replaced by '_'. Other text is kept.
std::string subject_for(std::string_view tmpl, const Route& r, std::string_view src);

/// Message id of a frame for `mode`: "match-key" → the route's match key (empty for markers
/// and messages without a key: no id); "src-seq" → "SRC SEQ" (empty without a seq); "none" → "".
std::string msg_id_for(std::string_view mode, const Route& r, std::string_view src);

/// As above, for the whole envelope: a marker (in match-key and src-seq modes) and, in
/// match-key mode, a message without a key (#info) get "frame " + 16 hex digits of
/// hash64(envelope bytes), so that the same frame published twice (a batch or a redelivery
/// re-published after a crash) is stored once.
std::string msg_id_for(std::string_view mode, const Route& r, const frames::Envelope& env);
/// True when `subject` matches the NATS subject filter `filter`: tokens separated by '.',
/// '*' matching any one token, '>' as the last token matching one or more tokens.
bool subject_matches(std::string_view filter, std::string_view subject);

/// Rendezvous (highest random weight) owner of `host` among `n` members: the k in 1 … n with
/// the largest hash64(host + "\n" + k). Adding or removing a member moves only the hosts it
/// wins or held.
std::uint32_t rendezvous_owner(std::string_view host, std::uint32_t n);

}  // namespace sov::nats
