// sovereign/dag_json.h — DAG-JSON ↔ DAG-CBOR in the atproto JSON mapping.
// Source: docs/protocol.md §2 "atproto data model" (links as {"$link": cid}, bytes as
// {"$bytes": base64 standard, no padding}); atproto data-model spec; interop/data-model.
#pragma once

#include "sovereign/cbor.h"
#include "sovereign/errc.h"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace sov::dag_json {

/// Appends the JSON text of a validated DAG-CBOR value (compact, keys in CBOR order).
void append(cbor::Value v, std::string& out);

/// Appends `s` as a JSON string literal (quotes and escapes).
void append_string(std::string_view s, std::string& out);

/// Encodes parsed JSON as canonical DAG-CBOR, checking the atproto data model: no
/// non-integral numbers (integral floats such as 123.0 become integers), integers within
/// signed 64-bit (as the CBOR side), `$link` objects with exactly one string key
/// holding a valid CID, `$bytes` objects with exactly one base64 string, `$type` a non-empty
/// string, blobs (`$type: "blob"`) with a raw-codec `ref` link, a non-empty `mimeType` and an
/// integer `size`; top level must be an object when `require_object`. On failure returns
/// json_bad_data_model (or a base/CID error) and sets `where` to a JSON-pointer-like path.
Errc encode(const nlohmann::json& j, cbor::Writer& w, std::string& where, bool require_object = true);

}  // namespace sov::dag_json
