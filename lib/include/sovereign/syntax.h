// sovereign/syntax.h — atproto identifier and string-format syntax (docs/protocol.md §5, §6).
//
// Hand-written scanners over std::string_view: no allocation, no regex, no locale. Every
// validator is a total function (any bytes in, bool out) and agrees with every line of the
// official interop vectors (interop/syntax/*_syntax_{valid,invalid}.txt). Rules, limits and
// the few deliberate deviations from the reference implementations are explained in
// lib/syntax.cpp. Validators check syntax only: a syntactically valid DID or handle may still
// use an unsupported method or a disallowed TLD (e.g. ".onion"); that is an application error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sov::syntax {

/// "did:" [a-z]+ ":" [A-Za-z0-9._:%-]+, not ending in ':' or '%', <= 2048 bytes; false
/// otherwise. Percent-escapes are not checked. atproto DID spec, "AT Protocol DID Identifier
/// Syntax".
bool is_did(std::string_view s) noexcept;

/// "did:plc:" + 24 of [a-z2-7] (32 bytes); false otherwise. did-method-plc spec v0.3
/// (docs/protocol.md §7).
bool is_did_plc(std::string_view s) noexcept;

/// Hostname of >= 2 labels of [A-Za-z0-9-]{1,63}, no label starting/ending '-', last label
/// not starting with a digit, <= 253 bytes; false otherwise. atproto handle spec, "Handle
/// Identifier Syntax".
bool is_handle(std::string_view s) noexcept;

/// DID or handle; false otherwise. atproto Lexicon spec, string format "at-identifier".
bool is_at_identifier(std::string_view s) noexcept;

/// Reversed-domain authority (>= 2 labels, first starting with a letter) "." name
/// [A-Za-z][A-Za-z0-9]{0,62}, <= 317 bytes (authority not capped at 253: the interop vectors
/// need more); false otherwise. atproto NSID spec, "NSID Syntax".
bool is_nsid(std::string_view s) noexcept;

/// 13 chars of base32-sortable [2-7a-z], the first in [234567abcdefghij]; false otherwise.
/// atproto TID spec, "TID Syntax".
bool is_tid(std::string_view s) noexcept;

/// 1..512 chars of [A-Za-z0-9._:~-], not "." or ".."; false otherwise. atproto record key
/// spec, "Record Key Syntax".
bool is_record_key(std::string_view s) noexcept;

/// MST key "collection/rkey": NSID '/' record key (chars [A-Za-z0-9/._:~-], <= 1024 bytes);
/// false otherwise. atproto repository spec, "Repository Paths" (docs/protocol.md §6).
bool is_repo_path(std::string_view s) noexcept;

/// "at://" (DID | handle) ["/" NSID ["/" record key]], no query, fragment or trailing '/',
/// <= 8192 bytes; false otherwise. atproto AT URI spec, "Restricted AT URI Syntax".
bool is_at_uri(std::string_view s) noexcept;

/// YYYY-MM-DDTHH:MM:SS[.f+](Z|+HH:MM|-HH:MM), <= 64 bytes, not "-00:00", and a real instant
/// in [0000-01-01T00:00:00Z, 9999-12-31T23:59:59.999999Z] (no leap seconds); false otherwise.
/// Same as parse_datetime_micros(s).has_value(). atproto Lexicon spec, format "datetime".
bool is_datetime(std::string_view s) noexcept;

/// Loose CID string: 8..256 chars of [A-Za-z0-9+=], not CIDv0 (starting "Qm"); the bytes are
/// not decoded. false otherwise. atproto Lexicon spec, string format "cid".
bool is_cid_string(std::string_view s) noexcept;

/// Generic URI: RFC 3986 scheme ":" then >= 1 chars of unreserved/reserved/%HH, at most one
/// '#', <= 8192 bytes; false otherwise. atproto Lexicon spec, string format "uri".
bool is_uri(std::string_view s) noexcept;

/// µs since the Unix epoch (53-bit field, bits 62..10) of a valid TID; nullopt if !is_tid(tid).
/// Bit 63, which the TID syntax admits (first char c..j), is ignored. atproto TID spec.
std::optional<std::int64_t> tid_to_micros(std::string_view tid) noexcept;

/// 13-char TID for (µs since the Unix epoch, clock id); micros is masked to 53 bits and
/// clock_id to 10 bits, so the result always satisfies is_tid. atproto TID spec, "TID
/// Structure".
std::string tid_from(std::int64_t micros, unsigned clock_id);

/// µs since the Unix epoch (UTC, offset applied, fraction truncated to µs) of a datetime that
/// satisfies is_datetime(); nullopt otherwise. atproto Lexicon spec, format "datetime".
std::optional<std::int64_t> parse_datetime_micros(std::string_view s) noexcept;

/// "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, millisecond precision, sub-ms truncated toward the past,
/// as the relay writes `time`); "" if micros is outside the range is_datetime() accepts.
std::string format_datetime_micros(std::int64_t micros);

}  // namespace sov::syntax
