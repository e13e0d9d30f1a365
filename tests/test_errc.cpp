// The error vocabulary: stable numbers, a phrase for every code, and the one map from a code
// to a tool's exit status (DESIGN §6).
#include "sovereign/errc.h"

#include <catch2/catch.hpp>

#include <cerrno>

using sov::Errc;

TEST_CASE("errc: published numbers never change") {
    CHECK(unsigned(Errc::io_error) == 4);
    CHECK(unsigned(Errc::frame_src_too_long) == 505);
    CHECK(unsigned(Errc::frame_mark_and_wire) == 506);
    CHECK(unsigned(Errc::frame_bad_mark) == 507);
    CHECK(unsigned(Errc::cvl_not_archive) == 1000);
    CHECK(unsigned(Errc::cvl_checksum) == 1005);
    CHECK(unsigned(Errc::cvl_no_ordinal) == 1013);
    CHECK(unsigned(Errc::cvl_locked) == 1015);
    CHECK(unsigned(Errc::cvl_journal) == 1017);
    CHECK(unsigned(Errc::cvl_no_src) == 1018);
    CHECK(unsigned(Errc::tomb_bad_name) == 1100);
    CHECK(unsigned(Errc::state_bad_magic) == 1200);
    CHECK(unsigned(Errc::proof_malformed) == 1300);
    CHECK(unsigned(Errc::io_not_found) == 1400);
    CHECK(unsigned(Errc::io_interrupted) == 1405);
    CHECK(unsigned(Errc::plc_malformed) == 1500);
    CHECK(unsigned(Errc::plc_duplicate) == 1510);
    CHECK(unsigned(Errc::cache_bad_magic) == 1600);
    CHECK(unsigned(Errc::cache_bad_did) == 1607);
    CHECK(unsigned(Errc::mirror_corrupt) == 1700);
    CHECK(unsigned(Errc::net_protocol) == 1705);
    CHECK(unsigned(Errc::net_future_cursor) == 1706);
}

TEST_CASE("errc: every code has its own phrase") {
    for (unsigned v = 0; v < 2000; ++v) {
        auto s = sov::to_string(Errc(v));
        if (s == "unknown error") continue;
        CHECK(!s.empty());
    }
    CHECK(sov::to_string(Errc::cvl_purged) == "message purged by compaction");
    CHECK(sov::to_string(Errc(1999)) == "unknown error");
}

TEST_CASE("errc: errno maps to the I/O codes") {
    CHECK(sov::from_errno(0) == Errc::ok);
    CHECK(sov::from_errno(ENOENT) == Errc::io_not_found);
    CHECK(sov::from_errno(EACCES) == Errc::io_permission);
    CHECK(sov::from_errno(EROFS) == Errc::io_permission);
    CHECK(sov::from_errno(ENOSPC) == Errc::io_no_space);
    CHECK(sov::from_errno(ENOTDIR) == Errc::io_not_directory);
    CHECK(sov::from_errno(EEXIST) == Errc::io_exists);
    CHECK(sov::from_errno(EIO) == Errc::io_error);
}

TEST_CASE("errc: exit status of every code (0 ok, 1 data rejected, 2 usage or system)") {
    CHECK(sov::exit_status(Errc::ok) == 0);
    // Usage, I/O and system conditions.
    for (Errc e : {Errc::io_error, Errc::bad_argument, Errc::io_not_found, Errc::io_permission, Errc::io_no_space,
                   Errc::io_not_directory, Errc::io_exists, Errc::io_interrupted, Errc::cvl_locked,
                   Errc::cvl_not_archive, Errc::cvl_not_empty, Errc::tomb_read_only, Errc::tomb_range,
                   Errc::cache_locked, Errc::mirror_locked, Errc::net_bad_url, Errc::net_transport,
                   Errc::net_http_status, Errc::net_protocol})
        CHECK(sov::exit_status(e) == 2);
    // Input data rejected: framing, a corrupt archive, tombstone or state file, a bad proof.
    for (Errc e : {Errc::truncated, Errc::frame_oversized, Errc::cbor_key_order, Errc::cvl_bad_config,
                   Errc::cvl_bad_version, Errc::cvl_bad_magic, Errc::cvl_truncated, Errc::cvl_checksum,
                   Errc::cvl_bad_index, Errc::cvl_chain, Errc::cvl_root_mismatch, Errc::cvl_missing_dict,
                   Errc::cvl_bad_dict, Errc::cvl_missing_data, Errc::cvl_bad_cluster, Errc::cvl_no_ordinal,
                   Errc::cvl_purged, Errc::cvl_journal, Errc::cvl_no_src, Errc::frame_mark_and_wire, Errc::frame_bad_mark, Errc::tomb_bad_name, Errc::tomb_bad_size,
                   Errc::tomb_not_file, Errc::state_checksum, Errc::proof_malformed, Errc::proof_invalid,
                   Errc::proof_root_mismatch, Errc::proof_unbound, Errc::plc_malformed, Errc::plc_limit, Errc::net_future_cursor,
                   Errc::plc_cid_mismatch, Errc::plc_did_mismatch, Errc::plc_bad_prev,
                   Errc::plc_prev_nullified, Errc::plc_after_tombstone, Errc::plc_nullify_key,
                   Errc::plc_nullify_late, Errc::plc_time_order, Errc::plc_duplicate,
                   Errc::cache_bad_magic, Errc::cache_bad_version, Errc::cache_truncated,
                   Errc::cache_corrupt, Errc::cache_dirty, Errc::cache_busy, Errc::cache_bad_did,
                   Errc::mirror_corrupt})
        CHECK(sov::exit_status(e) == 1);
    // Every code maps to 0, 1 or 2.
    for (unsigned v = 0; v < 2000; ++v) {
        int s = sov::exit_status(Errc(v));
        CHECK((s >= 0 && s <= 2));
    }
}
