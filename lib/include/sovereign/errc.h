// sovereign/errc.h — the one error vocabulary of the core library.
//
// No exceptions cross the library API on hot paths: functions return an Errc (or a Result<T>
// carrying one) and, where input is positional, the byte offset it refers to. The numeric
// values are stable: once published they never change, new codes are appended in their
// component's block. to_string() gives a short lowercase English phrase used in diagnostics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <variant>

namespace sov {

/// Read-only bytes. We use uint8_t rather than std::byte because every C library we call
/// (OpenSSL, libsecp256k1, zstd, libsodium) takes unsigned char, so std::byte would mean a cast
/// at every boundary for no gain in safety.
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) noexcept {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

enum class Errc : std::uint16_t {
    ok = 0,
    // 1..99 generic
    truncated = 1,           ///< input ended inside an item
    trailing_bytes = 2,      ///< bytes after the one expected object
    too_large = 3,           ///< a length over the limit for this position
    io_error = 4,            ///< read/write/open failed (errno is in the diagnostic; the
                             ///< common errno values have their own io_* codes, 1400..)
    bad_argument = 5,        ///< caller passed something the function does not accept
    // 100..199 varint (multiformats unsigned-varint)
    varint_overflow = 100,   ///< more bytes than allowed, or value over 2^63
    varint_non_minimal = 101,///< a trailing 0x00 group (not the shortest encoding)
    // 200..299 DAG-CBOR (docs/protocol.md §2)
    cbor_reserved_ai = 200,      ///< additional info 28..30
    cbor_indefinite = 201,       ///< additional info 31 (indefinite length / break)
    cbor_non_minimal_int = 202,  ///< integer not in its shortest form
    cbor_non_minimal_len = 203,  ///< string/array/map length not in its shortest form
    cbor_bad_tag = 204,          ///< tag other than 42
    cbor_bad_link = 205,         ///< tag 42 not over a byte string 0x00 + valid CID
    cbor_float = 206,            ///< floating point (forbidden in atproto)
    cbor_bad_simple = 207,       ///< major 7 other than false/true/null
    cbor_key_not_text = 208,     ///< map key that is not a text string
    cbor_key_order = 209,        ///< map keys not sorted length-first then bytewise
    cbor_duplicate_key = 210,    ///< same map key twice
    cbor_invalid_utf8 = 211,     ///< text string not valid UTF-8
    cbor_too_deep = 212,         ///< nesting over the limit (32)
    cbor_int_range = 213,        ///< integer outside the signed 64-bit range
    cbor_wrong_type = 214,       ///< a value of another major type than required here
    cbor_missing_field = 215,    ///< a required map key is absent
    cbor_empty_key = 216,        ///< map key of length 0
    // 300..399 CID / multibase
    cid_bad_version = 300,   ///< not CIDv1 (0x01)
    cid_bad_codec = 301,     ///< codec not allowed here
    cid_bad_hash = 302,      ///< multihash code/length not allowed here
    cid_bad_text = 303,      ///< text form not 'b' + base32 lower, or bad characters
    base_bad_char = 304,     ///< character outside the alphabet
    base_bad_padding = 305,  ///< padding characters or non-zero padding bits
    // 400..499 CAR v1 (docs/protocol.md §4)
    car_bad_header = 400,    ///< header length 0, not a map, version != 1, bad roots
    car_no_roots = 401,      ///< roots array empty
    car_bad_section = 402,   ///< section shorter than its CID, or its CID is malformed
    car_hash_mismatch = 403, ///< block bytes do not hash to the section CID
    car_block_missing = 404, ///< a block the message names (e.g. an op's record) is not in the CAR
    // 500..599 frame stream (docs/design.md §2)
    frame_zero_length = 500,     ///< record length 0
    frame_oversized = 501,       ///< record length over 16 MiB
    frame_bad_envelope = 502,    ///< envelope not a canonical DAG-CBOR map
    frame_missing_field = 503,   ///< src, recv or wire absent
    frame_field_type = 504,      ///< src/vrd not text, recv not int, wire not bytes
    frame_src_too_long = 505,    ///< src over 253 bytes
    frame_mark_and_wire = 506,   ///< a record with both mark and wire (a marker has no wire)
    frame_bad_mark = 507,        ///< mark not a map with a text kind, a known extra key mistyped, gap from > to
    // 600..699 crypto / keys (docs/protocol.md §5)
    key_bad_multibase = 600, ///< multikey not 'z' + base58btc
    key_bad_codec = 601,     ///< multicodec prefix not secp256k1-pub or p256-pub
    key_bad_point = 602,     ///< not a valid compressed (or, legacy, uncompressed) point
    sig_bad_length = 603,    ///< signature not exactly 64 bytes
    sig_high_s = 604,        ///< s > n/2
    sig_invalid = 605,       ///< signature does not verify
    // 700..799 syntax validators (docs/protocol.md §5, interop/syntax)
    syntax_did = 700,
    syntax_handle = 701,
    syntax_nsid = 702,
    syntax_tid = 703,
    syntax_rkey = 704,
    syntax_at_uri = 705,
    syntax_datetime = 706,
    syntax_cid = 707,
    syntax_path = 708,       ///< repo path not collection/rkey
    // 800..899 JSON / DAG-JSON / DID documents
    json_parse = 800,        ///< not valid JSON
    json_bad_data_model = 801, ///< JSON that does not map onto the atproto data model
    did_doc_no_key = 802,    ///< no usable #atproto verification method
    did_doc_bad = 803,       ///< DID document malformed or id mismatch
    // 900..999 MST (docs/protocol.md §6)
    mst_bad_node = 900,      ///< node block violates the node format or its invariants
    mst_bad_tree = 901,      ///< nodes do not form a valid tree (heights, key ranges)
    mst_proof_missing = 902, ///< a needed node block is absent from the CAR slice
    mst_op_mismatch = 903,   ///< an op's cid/prev disagrees with the tree
    mst_root_mismatch = 904, ///< inversion does not reproduce prevData
    mst_bad_key = 905,       ///< key is not a valid repo path
    mst_duplicate_op = 906,  ///< two ops on the same path in one commit
    mst_not_invertible = 907,///< no prevData, or update/delete without prev (legacy)
    // 1000..1099 CVL archive (docs/format-cvl.md); all but cvl_locked / cvl_not_archive /
    // cvl_not_empty / cvl_no_ordinal / cvl_no_src are damage to the archive's files (exit 1)
    cvl_not_archive = 1000,  ///< directory has no cvl.json (not an archive)
    cvl_bad_config = 1001,   ///< cvl.json unreadable as an archive description, or a value out of range
    cvl_bad_version = 1002,  ///< archive or index version this code does not read
    cvl_bad_magic = 1003,    ///< index file without its magic or end magic
    cvl_truncated = 1004,    ///< an archive file shorter than its own sizes say
    cvl_checksum = 1005,     ///< index BLAKE3 checksum differs
    cvl_bad_index = 1006,    ///< index fields inconsistent (counts, a record outside the data)
    cvl_chain = 1007,        ///< a segment does not continue the previous one (ordinals, number, prev root)
    cvl_root_mismatch = 1008,///< recomputed Merkle root differs from the index
    cvl_missing_dict = 1009, ///< a dictionary named by an index is missing
    cvl_bad_dict = 1010,     ///< a dictionary file zstd does not load
    cvl_missing_data = 1011, ///< a data file missing or shorter than the index says
    cvl_bad_cluster = 1012,  ///< a cluster that does not decompress, or a record outside it
    cvl_no_ordinal = 1013,   ///< the ordinal is not in the archive
    cvl_purged = 1014,       ///< the message was purged by compaction
    cvl_locked = 1015,       ///< another writer holds the archive lock
    cvl_not_empty = 1016,    ///< a directory to create an archive in is not empty
    cvl_journal = 1017,      ///< a damaged journal record
    cvl_no_src = 1018,       ///< no message (with a seq) from the asked src in the archive (cvl-cat --last-seq)
    // 1100..1199 tombstones (sovereign/bitset.h)
    tomb_bad_name = 1100,    ///< tomb-*.bits name not canonical, or a range beyond 2^48
    tomb_bad_size = 1101,    ///< tombstone file of a size the format does not allow
    tomb_not_file = 1102,    ///< tombstone path is not a regular file
    tomb_read_only = 1103,   ///< a writing call on a set opened read-only
    tomb_range = 1104,       ///< ordinal ≥ 2^48
    // 1200..1299 saved state files (cbor-verify --state)
    state_bad_magic = 1200,  ///< not a state file of this tool
    state_bad_version = 1201,///< state format version not read by this code
    state_truncated = 1202,  ///< state file ends inside a record
    state_checksum = 1203,   ///< state file checksum differs
    state_corrupt = 1204,    ///< state fields inconsistent
    // 1300..1399 inclusion proofs (docs/format-cvl.md §9)
    proof_malformed = 1300,  ///< not a proof document (JSON shape, hex)
    proof_invalid = 1301,    ///< the path does not fold the leaf into the proof's root
    proof_root_mismatch = 1302, ///< the proof's root is not the trusted / archive root
    proof_unbound = 1303,    ///< ordinal, index, size or leaf disagree with the archive
    // 1400..1499 operating system (the errno text goes to the diagnostic)
    io_not_found = 1400,     ///< ENOENT: a file or directory does not exist
    io_permission = 1401,    ///< EACCES / EPERM / EROFS
    io_no_space = 1402,      ///< ENOSPC / EDQUOT
    io_not_directory = 1403, ///< ENOTDIR / EISDIR: a path of the wrong kind
    io_exists = 1404,        ///< EEXIST
    io_interrupted = 1405,   ///< a signal stopped a blocked call
    // 1500..1599 PLC operations and logs (sovereign/plc.h, docs/protocol.md §7); all exit 1
    plc_malformed = 1500,    ///< op or export line: a field missing, of the wrong type, unknown op type
    plc_limit = 1501,        ///< op over a size or field limit (§7 "Limits")
    plc_cid_mismatch = 1502, ///< the line's cid is not the CID of its op
    plc_did_mismatch = 1503, ///< the genesis op does not hash to the DID, or a line of another DID
    plc_bad_prev = 1504,     ///< prev null after genesis, non-null at genesis, or not an op of the log
    plc_prev_nullified = 1505, ///< prev names a nullified op
    plc_after_tombstone = 1506, ///< prev names a tombstone
    plc_nullify_key = 1507,  ///< nullifying op not signed by a strictly higher-priority rotation key
    plc_nullify_late = 1508, ///< nullifying op more than 72 h after the first op it nullifies
    plc_time_order = 1509,   ///< createdAt not strictly after the DID's previous op
    plc_duplicate = 1510,    ///< an op CID already in the DID's log
    // 1600..1699 DID cache (sovereign/did_cache.h, docs/format-did-cache.md)
    cache_bad_magic = 1600,  ///< not a DID cache file
    cache_bad_version = 1601,///< a cache format version this code does not read
    cache_truncated = 1602,  ///< the file is shorter than its header says
    cache_corrupt = 1603,    ///< a field inconsistent with the file (an offset outside it, bad flags)
    cache_dirty = 1604,      ///< the writer stopped in the middle of an update: rebuild the cache
    cache_busy = 1605,       ///< a slot stayed locked by a writer that is gone
    cache_locked = 1606,     ///< another writer holds the cache
    cache_bad_did = 1607,    ///< a DID the cache cannot hold (not did:plc or did:web)
    // 1700..1799 the PLC mirror (plc-sync, docs/design.md §9) and the network layer
    mirror_corrupt = 1700,   ///< a mirror file (export chunk, op store, cursor) is damaged
    mirror_locked = 1701,    ///< another plc-sync holds the mirror directory
    net_bad_url = 1702,      ///< a URL the network layer does not accept
    net_transport = 1703,    ///< connection refused, reset, timed out, TLS failure
    net_http_status = 1704,  ///< an HTTP answer with a status the caller cannot use
    net_protocol = 1705,     ///< an answer that breaks the protocol (bad body, bad frame)
    net_future_cursor = 1706,  ///< the server refused the cursor as ahead of its stream (FutureCursor)
};

/// Short lowercase phrase for diagnostics, e.g. "map keys not in canonical order".
std::string_view to_string(Errc e) noexcept;

/// The I/O code for an errno value: io_not_found, io_permission, io_no_space,
/// io_not_directory, io_exists, io_interrupted, else io_error. 0 gives ok.
Errc from_errno(int err) noexcept;

/// Exit status of a tool that stops on `e` (the conventions of every tool, DESIGN §6):
/// 0 for ok; 2 for usage, I/O and system conditions (bad_argument, io_*, cvl_locked,
/// cvl_not_archive, cvl_not_empty, tomb_read_only, tomb_range, cache_locked, mirror_locked,
/// net_*); 1 for everything else,
/// i.e. input data rejected (framing, a corrupt archive or state file, a missing ordinal,
/// a proof that does not verify, a PLC operation that fails validation, a cursor the server
/// calls FutureCursor). Tools choose their
/// status from the code only, never from message text.
int exit_status(Errc e) noexcept;

/// A value or an error. Small and trivially movable; no exceptions.
template <class T>
class Result {
public:
    Result(T v) : v_(std::move(v)) {}                       // NOLINT: implicit by design
    Result(Errc e) : v_(e) {}                               // NOLINT
    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }
    Errc error() const noexcept { return ok() ? Errc::ok : std::get<1>(v_); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T* operator->() { return &std::get<0>(v_); }
    const T* operator->() const { return &std::get<0>(v_); }
    T& operator*() & { return std::get<0>(v_); }
    const T& operator*() const& { return std::get<0>(v_); }

private:
    std::variant<T, Errc> v_;
};

/// An error at a byte offset of some input (for "<file>:<offset>: <reason>" diagnostics).
struct Located {
    Errc errc = Errc::ok;
    std::size_t offset = 0;
    explicit operator bool() const noexcept { return errc != Errc::ok; }
};

}  // namespace sov
