// test_nats_route.cpp — sov::nats::subject_matches, the NATS subject filter rule cvl-pack
// --from-nats uses to tell a message outside its filter from a deleted one.
#include <catch2/catch.hpp>

#include "sovereign/nats/route.h"

using sov::nats::subject_matches;

TEST_CASE("subject_matches: literal subjects", "[nats]") {
    CHECK(subject_matches("fh.vrd.03", "fh.vrd.03"));
    CHECK_FALSE(subject_matches("fh.vrd.03", "fh.vrd.04"));
    CHECK_FALSE(subject_matches("fh.vrd", "fh.vrd.03"));
    CHECK_FALSE(subject_matches("fh.vrd.03", "fh.vrd"));
    CHECK_FALSE(subject_matches("fh.vrd.03.x", "fh.vrd.03"));
}

TEST_CASE("subject_matches: '*' matches one token", "[nats]") {
    CHECK(subject_matches("fh.*.03", "fh.vrd.03"));
    CHECK(subject_matches("fh.vrd.*", "fh.vrd.99"));
    CHECK_FALSE(subject_matches("fh.vrd.*", "fh.vrd"));
    CHECK_FALSE(subject_matches("fh.vrd.*", "fh.vrd.03.x"));
    CHECK(subject_matches("*", "fh"));
    CHECK_FALSE(subject_matches("*", "fh.vrd"));
}

TEST_CASE("subject_matches: '>' as the last token matches one or more tokens", "[nats]") {
    CHECK(subject_matches("fh.vrd.>", "fh.vrd.03"));
    CHECK(subject_matches("fh.>", "fh.src.pds.07"));
    CHECK(subject_matches(">", "fh"));
    CHECK_FALSE(subject_matches("fh.vrd.>", "fh.vrd"));
    CHECK_FALSE(subject_matches("fh.vrd.>", "fh.src.03"));
    CHECK_FALSE(subject_matches("fh.>.x", "fh.a.x"));  // '>' only as the last token
}
