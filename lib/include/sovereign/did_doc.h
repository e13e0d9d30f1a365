// sovereign/did_doc.h — DID documents (docs/protocol.md §5 "DID document") and an in-memory
// DID -> document store loaded from JSON (optionally zstd-compressed).
//
// Only the atproto view of a document is kept: its signing key, PDS endpoint and claimed
// handle. A document without a usable key is still a document (signing_key empty, key_status
// saying why), because "known but keyless" (verdict no-key) differs from "unknown".
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json_fwd.hpp>

#include "sovereign/crypto.h"
#include "sovereign/errc.h"

namespace sov {

/// The atproto view of a DID document.
struct DidDoc {
    std::string did;                               ///< the document's id, e.g. "did:plc:…"
    std::optional<crypto::PublicKey> signing_key;  ///< the "#atproto" key; empty if none is usable
    std::string pds_endpoint;                      ///< "#atproto_pds" serviceEndpoint, or empty
    std::string handle;                            ///< first "at://" alsoKnownAs, without "at://", lowercased, unverified; or empty
    Errc key_status = Errc::ok;  ///< why signing_key is empty: did_doc_no_key or a key_* code; ok when set
};

/// Parse a DID document (§5): did_doc_bad when it is not an object or its "id" != did_expected.
/// Key = first verificationMethod with id "#atproto" or did_expected + "#atproto"; it must have
/// controller == the DID and type Multikey (publicKeyMultibase = multikey) or
/// EcdsaSecp256k1VerificationKey2019 / EcdsaSecp256r1VerificationKey2019 ('z' + base58btc raw
/// point); otherwise signing_key is empty and key_status says why. PDS = first service with id
/// "#atproto_pds" or did + "#atproto_pds" and type AtprotoPersonalDataServer whose
/// serviceEndpoint is an http(s) URL string.
Result<DidDoc> parse_did_doc(std::string_view did_expected, const nlohmann::json& doc);

/// DID -> DidDoc map with allocation-free lookup by string_view. Not synchronized: load, then
/// share read-only (find() is safe from many threads when nothing writes).
class KeyStore {
public:
    /// Load a JSON object {DID: DID document | null} from `path`, zstd-decompressed when the file
    /// starts with the zstd magic (e.g. corpus relay-capture/did-docs.json.zst). null = DID known
    /// without a key (tombstoned). Bad entries are skipped and the rest loaded; returns ok,
    /// io_error, truncated (cut zstd frame), json_parse, or the first entry's error
    /// (did_doc_bad, …), with a human-readable reason in err_detail.
    Errc load_json_file(const std::string& path, std::string& err_detail);
    /// As load_json_file, from JSON text already in memory.
    Errc load_json_text(std::string_view json_text, std::string& err_detail);
    /// As load_json_file, from a parsed JSON object.
    Errc load_json(const nlohmann::json& object, std::string& err_detail);
    /// The document for `did`, or nullptr; valid until the next put/load. No allocation.
    const DidDoc* find(std::string_view did) const noexcept;
    /// Insert or replace the entry for doc.did.
    void put(DidDoc doc);
    /// Number of DIDs known.
    std::size_t size() const noexcept { return map_.size(); }

private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, DidDoc, Hash, std::equal_to<>> map_;
};

}  // namespace sov
