// sovereign/car.h — CAR v1 reading (header, zero-copy sections, block lookup) and writing.
// Source: docs/protocol.md §4 (IPLD CARv1 spec; atproto repository spec "CAR File Serialization").
#pragma once

#include "sovereign/errc.h"

#include <cstdint>
#include <vector>

namespace sov::car {

/// One section: views into the CAR bytes. `offset` is where the section's length varint starts.
struct Section {
    ByteView cid;
    ByteView block;
    std::size_t offset = 0;
};

/// Streaming reader over an in-memory CAR. open() parses and validates the header
/// (`{roots: [CID…] ≥ 1, version: 1}` as strict DAG-CBOR); next() yields sections in file
/// order without copying. Errors carry the byte offset within the CAR.
class Reader {
public:
    /// Parses the header. Errors: truncated, varint_*, car_bad_header, car_no_roots.
    Located open(ByteView car) noexcept;
    std::size_t root_count() const noexcept { return root_count_; }
    /// The first root's binary CID (atproto: the commit).
    ByteView root() const noexcept { return root0_; }
    /// Next section; false at the end or on error (then error() is set). Checks lengths and
    /// CID syntax only; hash checking is the caller's choice (see verify_section).
    bool next(Section& s) noexcept;
    Located error() const noexcept { return err_; }
    /// Offset of the first section (= header length including its varint).
    std::size_t body_offset() const noexcept { return body_; }

private:
    ByteView car_;
    ByteView root0_;
    std::size_t root_count_ = 0;
    std::size_t pos_ = 0;
    std::size_t body_ = 0;
    Located err_;
};

/// True if the section's block hashes (SHA-256) to its CID.
bool verify_section(const Section& s) noexcept;

/// A reusable CID → block index (open addressing on the digest, which is already uniformly
/// distributed). clear() keeps capacity, so steady-state use allocates nothing.
class BlockMap {
public:
    void clear() noexcept;
    /// Adds a block; a duplicate CID keeps the first block (CAR duplicates are tolerated).
    void add(ByteView cid, ByteView block);
    /// The block for `cid`, or nullptr.
    const ByteView* find(ByteView cid) const noexcept;
    std::size_t size() const noexcept { return count_; }
    /// The longest probe sequence any stored CID needs (1 = found in its home slot): how well
    /// the keyed hash spreads the CIDs. O(capacity); for tests and diagnostics.
    std::size_t longest_probe() const noexcept;

private:
    struct Slot {
        ByteView cid;
        ByteView block;
    };
    void grow();
    std::vector<Slot> slots_;
    std::size_t count_ = 0;
};

// ---- writing ---------------------------------------------------------------------------
// What a PDS puts in a #commit `blocks` field or a getRepo answer (IPLD CARv1 spec, "Format
// Description"; atproto repository spec, "CAR File Serialization": one root, the commit).
// The writer does not check its input: the caller hands it binary CIDs and the blocks they
// name; Reader::open() reads the result back. Appends to `car`; no errors.

/// Appends a one-root header: varint(hlen) ‖ DAG-CBOR {roots: [root], version: 1}, canonical
/// key order (1 + 58 bytes for a 36-byte CID).
void append_header(std::vector<std::uint8_t>& car, ByteView root);
/// Appends one section: varint(|cid| + |block|) ‖ cid ‖ block.
void append_section(std::vector<std::uint8_t>& car, ByteView cid, ByteView block);

}  // namespace sov::car
