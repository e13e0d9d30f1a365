// Fuzz targets, one per decoder entry point, selected at compile time by SOV_FUZZ_TARGET.
// Each must never crash, hang or read out of bounds whatever the bytes; results are also
// cross-checked where a second path exists (validate vs. re-encode, parse vs. append).
#include "sovereign/capture.h"
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/cid.h"
#include "sovereign/crypto.h"
#include "sovereign/dag_json.h"
#include "sovereign/frame_json.h"
#include "sovereign/frame_stream.h"
#include "sovereign/jetstream.h"
#include "sovereign/message.h"
#include "sovereign/mst.h"
#include "sovereign/multibase.h"
#include "sovereign/syntax.h"
#include "sovereign/verify.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn, maybe_unused]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}

// A fixed key source: one DID from the corpus with a real k256 key, so signature paths run.
class OneKey final : public sov::verify::KeySource {
public:
    OneKey() {
        auto k = sov::crypto::parse_did_key("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme");
        if (k) key_ = *k;
    }
    std::optional<sov::crypto::PublicKey> signing_key(std::string_view, std::int64_t) const override { return key_; }

private:
    sov::crypto::PublicKey key_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    sov::ByteView in{data, size};
#if SOV_FUZZ_TARGET == 1  // cbor: validate, then every accessor; re-encoding must be identical
    if (!sov::cbor::validate(in)) {
        std::vector<std::uint8_t> out;
        sov::cbor::Writer w(out);
        sov::cbor::reencode(sov::cbor::Value::of(in), w);
        if (out.size() != size || std::memcmp(out.data(), data, size) != 0) fail("reencode differs");
        std::string json;
        sov::dag_json::append(sov::cbor::Value::of(in), json);
    }
    std::size_t len;
    (void)sov::cbor::validate_prefix(in, len);
#elif SOV_FUZZ_TARGET == 2  // cid: binary and text forms
    sov::cid::Info info;
    if (sov::cid::parse(in, info) == sov::Errc::ok) {
        sov::cid::Cid back;
        if (sov::cid::from_string(sov::cid::to_string(in), back) != sov::Errc::ok || !(back == in)) fail("cid text round trip");
    }
    sov::cid::Cid c;
    (void)sov::cid::from_string(sov::as_chars(in), c);
#elif SOV_FUZZ_TARGET == 3  // car
    sov::car::Reader r;
    if (!r.open(in)) {
        sov::car::Section s;
        sov::car::BlockMap m;
        while (r.next(s)) {
            (void)sov::car::verify_section(s);
            m.add(s.cid, s.block);
            if (!m.find(s.cid)) fail("block map lost a block");
        }
    }
#elif SOV_FUZZ_TARGET == 4  // frame records
    sov::frames::Envelope env;
    if (!sov::frames::parse_record(in, env)) {
        std::vector<std::uint8_t> out;
        sov::frames::append_record_with_verdict(out, env, "ok");
        sov::frames::Envelope env2;
        if (sov::frames::parse_record(out, env2) || env2.wire.size() != env.wire.size() ||
            env2.is_marker() != env.is_marker())
            fail("verdict rewrite broke the record");
        std::string line;
        sov::frame_json::append_line(env, true, line);
        if (env.is_marker()) {
            // parse_envelope accepted the mark, so parse_marker must; known kinds re-encode to
            // a record that parses back to the same marker.
            sov::frames::Marker mk, mk2;
            if (sov::frames::parse_marker(env, mk)) fail("parse_marker refused a mark parse_envelope accepted");
            out.clear();
            if (!sov::frames::append_marker(out, env.src, env.recv, mk)) fail("append_marker refused a parsed marker");
            sov::frames::Envelope env3;
            if (sov::frames::parse_record(out, env3) || sov::frames::parse_marker(env3, mk2) || mk2.kind != mk.kind ||
                mk2.url != mk.url || mk2.cursor != mk.cursor || mk2.reason != mk.reason || mk2.from != mk.from ||
                mk2.to != mk.to || mk2.since != mk.since)
                fail("marker round trip");
        }
    }
#elif SOV_FUZZ_TARGET == 5  // event-stream message + verification
    static OneKey keys;
    static sov::verify::Verifier v(keys);
    (void)v.verify(in, 0);
#elif SOV_FUZZ_TARGET == 6  // DAG-JSON frame lines
    std::vector<std::uint8_t> out;
    std::string where;
    (void)sov::frame_json::append_record(sov::as_chars(in), out, where);
#elif SOV_FUZZ_TARGET == 7  // multibase, keys, identifier syntax
    std::string_view s = sov::as_chars(in);
    std::vector<std::uint8_t> out;
    (void)sov::multibase::base32_decode(s, out);
    (void)sov::multibase::base58btc_decode(s, out);
    (void)sov::multibase::base64_decode(s, out);
    (void)sov::multibase::base64url_decode(s, out);
    (void)sov::crypto::parse_multikey(s);
    (void)sov::crypto::parse_did_key(s);
    (void)sov::syntax::is_did(s);
    (void)sov::syntax::is_handle(s);
    (void)sov::syntax::is_nsid(s);
    (void)sov::syntax::is_repo_path(s);
    (void)sov::syntax::is_at_uri(s);
    (void)sov::syntax::tid_to_micros(s);
    (void)sov::syntax::parse_datetime_micros(s);
#elif SOV_FUZZ_TARGET == 8  // MST node codec: whatever decodes re-encodes identically
    sov::mst::NodeData n;
    if (n.decode(in) == sov::Errc::ok) {
        std::vector<std::uint8_t> out;
        sov::mst::encode_node(n.left(), n.entries(), out);
        if (out.size() != size || std::memcmp(out.data(), data, size) != 0) fail("MST node re-encoding differs");
    }
#elif SOV_FUZZ_TARGET == 9  // Jetstream lines: whatever converts is valid JSON, one object per line
    std::string out;
    sov::jetstream::Result r = sov::jetstream::append_lines({data, size}, 1, out);
    if (r.errc != sov::Errc::ok && !out.empty()) fail("Jetstream conversion failed but appended output");
    std::size_t lines = 0, start = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out[i] != '\n') continue;
        if (!nlohmann::json::accept(std::string_view(out).substr(start, i - start))) fail("Jetstream line is not JSON");
        ++lines;
        start = i + 1;
    }
    if (lines != r.lines || start != out.size()) fail("Jetstream line count differs");
#else
#error "SOV_FUZZ_TARGET must be 1..9"
#endif
    return 0;
}
