// sovereign/frame_json.h — frame records as DAG-JSON lines (frame-cat --to/--from json).
//
// One JSON object per line, keys in envelope order, with `wire` split into its two DAG-CBOR
// objects: {"src":…, "vrd":…, "recv":…, "header":{…}, "payload":{…}, …unknown keys}. A wire
// that is not a valid header + payload pair stays {"wire":{"$bytes":…}} so nothing is lost.
// With decode_blocks, "blocks_json" adds the CAR in `payload.blocks` decoded:
// {"roots":[…], "blocks":[{"cid":{"$link":…}, "value":…}]}; it is ignored on input. A marker
// has no wire: {"src":…, "mark":{"kind":…, …}, "recv":…} (its mark map in DAG-JSON).
// Converting back gives byte-identical records for canonical input (exact bytes:
// docs/format-frame-stream.md).
#pragma once

#include "sovereign/errc.h"
#include "sovereign/frame_stream.h"

#include <string>
#include <string_view>
#include <vector>

namespace sov::frame_json {

/// Appends the JSON line for `env` (without the newline).
void append_line(const frames::Envelope& env, bool decode_blocks, std::string& out);

/// Parses one JSON line and appends the frame record (varint + envelope). Errors:
/// json_parse, json_bad_data_model, frame_missing_field, frame_field_type, CBOR/CID/base
/// errors, frame_oversized (the envelope would exceed 16 MiB; `where` = "/wire", nothing
/// appended); `where` names the JSON path at fault.
Errc append_record(std::string_view line, std::vector<std::uint8_t>& out, std::string& where);

}  // namespace sov::frame_json
