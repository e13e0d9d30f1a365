#include "sovereign/errc.h"

#include <cerrno>

namespace sov {

std::string_view to_string(Errc e) noexcept {
    switch (e) {
    case Errc::ok: return "ok";
    case Errc::truncated: return "truncated input";
    case Errc::trailing_bytes: return "trailing bytes after object";
    case Errc::too_large: return "length over limit";
    case Errc::io_error: return "I/O error";
    case Errc::bad_argument: return "bad argument";
    case Errc::varint_overflow: return "varint too long";
    case Errc::varint_non_minimal: return "varint not minimally encoded";
    case Errc::cbor_reserved_ai: return "reserved CBOR additional info (28-30)";
    case Errc::cbor_indefinite: return "indefinite-length CBOR item";
    case Errc::cbor_non_minimal_int: return "integer not minimally encoded";
    case Errc::cbor_non_minimal_len: return "length not minimally encoded";
    case Errc::cbor_bad_tag: return "CBOR tag other than 42";
    case Errc::cbor_bad_link: return "tag 42 is not 0x00 + CID bytes";
    case Errc::cbor_float: return "floating-point value (forbidden)";
    case Errc::cbor_bad_simple: return "simple value other than false/true/null";
    case Errc::cbor_key_not_text: return "map key is not a text string";
    case Errc::cbor_key_order: return "map keys not in canonical order";
    case Errc::cbor_duplicate_key: return "duplicate map key";
    case Errc::cbor_invalid_utf8: return "text string is not valid UTF-8";
    case Errc::cbor_too_deep: return "nesting deeper than 32";
    case Errc::cbor_int_range: return "integer outside signed 64-bit range";
    case Errc::cbor_wrong_type: return "value of the wrong type";
    case Errc::cbor_missing_field: return "required field missing";
    case Errc::cbor_empty_key: return "empty map key";
    case Errc::cid_bad_version: return "CID is not version 1";
    case Errc::cid_bad_codec: return "CID codec not allowed";
    case Errc::cid_bad_hash: return "CID multihash not allowed";
    case Errc::cid_bad_text: return "CID text form invalid";
    case Errc::base_bad_char: return "character outside the alphabet";
    case Errc::base_bad_padding: return "bad padding";
    case Errc::car_bad_header: return "CAR header invalid";
    case Errc::car_no_roots: return "CAR header has no roots";
    case Errc::car_bad_section: return "CAR section length invalid";
    case Errc::car_hash_mismatch: return "block does not hash to its CID";
    case Errc::car_block_missing: return "block named by the message is not in the CAR";
    case Errc::frame_zero_length: return "record length 0";
    case Errc::frame_oversized: return "record longer than 16 MiB";
    case Errc::frame_bad_envelope: return "envelope is not canonical DAG-CBOR";
    case Errc::frame_missing_field: return "envelope lacks src, recv or wire";
    case Errc::frame_field_type: return "envelope field of the wrong type";
    case Errc::frame_src_too_long: return "src longer than 253 bytes";
    case Errc::frame_mark_and_wire: return "envelope has both mark and wire";
    case Errc::frame_bad_mark: return "marker malformed (kind, a field's type, or gap from > to)";
    case Errc::key_bad_multibase: return "key is not z + base58btc";
    case Errc::key_bad_codec: return "key codec is not secp256k1-pub or p256-pub";
    case Errc::key_bad_point: return "key is not a valid curve point";
    case Errc::sig_bad_length: return "signature is not 64 bytes";
    case Errc::sig_high_s: return "signature has high S";
    case Errc::sig_invalid: return "signature does not verify";
    case Errc::syntax_did: return "invalid DID syntax";
    case Errc::syntax_handle: return "invalid handle syntax";
    case Errc::syntax_nsid: return "invalid NSID syntax";
    case Errc::syntax_tid: return "invalid TID syntax";
    case Errc::syntax_rkey: return "invalid record key syntax";
    case Errc::syntax_at_uri: return "invalid AT-URI syntax";
    case Errc::syntax_datetime: return "invalid datetime syntax";
    case Errc::syntax_cid: return "invalid CID syntax";
    case Errc::syntax_path: return "invalid repo path (collection/rkey)";
    case Errc::json_parse: return "invalid JSON";
    case Errc::json_bad_data_model: return "JSON does not fit the atproto data model";
    case Errc::did_doc_no_key: return "DID document has no #atproto signing key";
    case Errc::did_doc_bad: return "DID document malformed";
    case Errc::mst_bad_node: return "MST node invalid";
    case Errc::mst_bad_tree: return "MST structure invalid";
    case Errc::mst_proof_missing: return "MST proof block missing";
    case Errc::mst_op_mismatch: return "op does not match the MST";
    case Errc::mst_root_mismatch: return "inverted MST root is not prevData";
    case Errc::mst_bad_key: return "invalid MST key";
    case Errc::mst_duplicate_op: return "two ops on one path";
    case Errc::mst_not_invertible: return "commit cannot be inverted";
    case Errc::cvl_not_archive: return "not a CVL archive (no cvl.json)";
    case Errc::cvl_bad_config: return "invalid archive description (cvl.json)";
    case Errc::cvl_bad_version: return "unsupported archive format version";
    case Errc::cvl_bad_magic: return "bad magic (not a CVL segment index)";
    case Errc::cvl_truncated: return "archive file truncated";
    case Errc::cvl_checksum: return "index checksum mismatch";
    case Errc::cvl_bad_index: return "inconsistent segment index";
    case Errc::cvl_chain: return "segment chain broken";
    case Errc::cvl_root_mismatch: return "Merkle root mismatch";
    case Errc::cvl_missing_dict: return "dictionary missing";
    case Errc::cvl_bad_dict: return "dictionary invalid";
    case Errc::cvl_missing_data: return "data file missing or short";
    case Errc::cvl_bad_cluster: return "corrupt cluster";
    case Errc::cvl_no_ordinal: return "ordinal not in the archive";
    case Errc::cvl_purged: return "message purged by compaction";
    case Errc::cvl_locked: return "archive locked by another writer";
    case Errc::cvl_not_empty: return "directory not empty and not an archive";
    case Errc::cvl_no_src: return "no message from this src in the archive";
    case Errc::cvl_journal: return "damaged journal record";
    case Errc::tomb_bad_name: return "unexpected tombstone file name";
    case Errc::tomb_bad_size: return "tombstone file of a bad size";
    case Errc::tomb_not_file: return "tombstone path is not a regular file";
    case Errc::tomb_read_only: return "tombstone set opened read-only";
    case Errc::tomb_range: return "ordinal beyond 2^48";
    case Errc::state_bad_magic: return "not a state file";
    case Errc::state_bad_version: return "unsupported state file version";
    case Errc::state_truncated: return "state file truncated";
    case Errc::state_checksum: return "state file checksum mismatch";
    case Errc::state_corrupt: return "state file inconsistent";
    case Errc::proof_malformed: return "not an inclusion proof";
    case Errc::proof_invalid: return "proof path does not lead to its root";
    case Errc::proof_root_mismatch: return "proof root is not the trusted root";
    case Errc::proof_unbound: return "proof does not match the archive";
    case Errc::io_not_found: return "no such file or directory";
    case Errc::io_permission: return "permission denied";
    case Errc::io_no_space: return "no space left on device";
    case Errc::io_not_directory: return "wrong kind of file (directory expected or found)";
    case Errc::io_exists: return "file exists";
    case Errc::io_interrupted: return "interrupted";
    case Errc::plc_malformed: return "PLC operation malformed";
    case Errc::plc_limit: return "PLC operation over a size or field limit";
    case Errc::plc_cid_mismatch: return "cid is not the CID of the PLC operation";
    case Errc::plc_did_mismatch: return "genesis operation does not hash to the DID";
    case Errc::plc_bad_prev: return "prev does not name an operation of the DID's log";
    case Errc::plc_prev_nullified: return "prev names a nullified operation";
    case Errc::plc_after_tombstone: return "operation after a tombstone";
    case Errc::plc_nullify_key: return "nullification not by a higher-priority rotation key";
    case Errc::plc_nullify_late: return "nullification more than 72 h after the nullified operation";
    case Errc::plc_time_order: return "createdAt not after the previous operation";
    case Errc::plc_duplicate: return "operation already in the DID's log";
    case Errc::cache_bad_magic: return "not a DID cache file";
    case Errc::cache_bad_version: return "DID cache format version not supported";
    case Errc::cache_truncated: return "DID cache file truncated";
    case Errc::cache_corrupt: return "DID cache file corrupt";
    case Errc::cache_dirty: return "DID cache left mid-update by its writer";
    case Errc::cache_busy: return "DID cache slot locked by a writer that is gone";
    case Errc::cache_locked: return "DID cache held by another writer";
    case Errc::cache_bad_did: return "DID not cacheable (not did:plc or did:web)";
    case Errc::mirror_corrupt: return "PLC mirror file corrupt";
    case Errc::mirror_locked: return "PLC mirror held by another plc-sync";
    case Errc::net_bad_url: return "URL not supported";
    case Errc::net_transport: return "network transport failure";
    case Errc::net_http_status: return "unexpected HTTP status";
    case Errc::net_protocol: return "answer breaks the protocol";
    case Errc::net_future_cursor: return "cursor ahead of the server's stream (FutureCursor)";
    }
    return "unknown error";
}

Errc from_errno(int err) noexcept {
    switch (err) {
    case 0: return Errc::ok;
    case ENOENT: return Errc::io_not_found;
    case EACCES:
    case EPERM:
    case EROFS: return Errc::io_permission;
    case ENOSPC:
    case EDQUOT: return Errc::io_no_space;
    case ENOTDIR:
    case EISDIR: return Errc::io_not_directory;
    case EEXIST: return Errc::io_exists;
    case EINTR: return Errc::io_interrupted;
    default: return Errc::io_error;
    }
}

int exit_status(Errc e) noexcept {
    constexpr int kOk = 0, kRejected = 1, kSystem = 2;
    const auto v = static_cast<unsigned>(e);
    if (e == Errc::ok) return kOk;
    if (e == Errc::io_error || e == Errc::bad_argument || (v >= 1400 && v < 1500)) return kSystem;
    switch (e) {
    case Errc::cvl_locked:
    case Errc::cache_locked:
    case Errc::mirror_locked:
    case Errc::net_bad_url:
    case Errc::net_transport:
    case Errc::net_http_status:
    case Errc::net_protocol:
    case Errc::cvl_not_archive:
    case Errc::cvl_not_empty:
    case Errc::tomb_read_only:
    case Errc::tomb_range: return kSystem;
    default: return kRejected;
    }
}

}  // namespace sov
