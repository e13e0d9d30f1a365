// Tests for sovereign/did_doc.h: DID document field rules (docs/protocol.md §5 "DID document"),
// legacy key types, and the KeyStore over the relay capture's did-docs.json.zst.
#include <catch2/catch.hpp>

#include "test_util.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

#include "sovereign/crypto.h"
#include "sovereign/did_doc.h"
#include "sovereign/multibase.h"

using nlohmann::json;
using sov::DidDoc;
using sov::Errc;
using sov::KeyStore;
namespace crypto = sov::crypto;

namespace {

using testutil::corpus_path;

constexpr const char* kDid = "did:plc:2a7ygipkrbh544aqhcav53oy";
constexpr const char* kK256Multikey = "zQ3shrc8v5X6ZiANcZxA6JerfT2T4SskeCGxpmtDfMuHF9KRj";
constexpr const char* kP256Multikey = "zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo";

// A PLC-style document as plc.directory serves it.
json plc_doc() {
    return json::parse(R"({
      "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1",
                   "https://w3id.org/security/suites/secp256k1-2019/v1"],
      "id": "did:plc:2a7ygipkrbh544aqhcav53oy",
      "alsoKnownAs": ["at://T045t.zmb.cm"],
      "verificationMethod": [{
        "id": "did:plc:2a7ygipkrbh544aqhcav53oy#atproto",
        "type": "Multikey",
        "controller": "did:plc:2a7ygipkrbh544aqhcav53oy",
        "publicKeyMultibase": "zQ3shrc8v5X6ZiANcZxA6JerfT2T4SskeCGxpmtDfMuHF9KRj"
      }],
      "service": [{
        "id": "#atproto_pds",
        "type": "AtprotoPersonalDataServer",
        "serviceEndpoint": "https://elfcup.us-east.host.bsky.network"
      }]
    })");
}

// A temporary file removed at scope exit.
struct TempFile {
    std::string path;
    explicit TempFile(const std::string& contents) {
        char tmpl[] = "/tmp/sov_did_doc_XXXXXX";
        const int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        REQUIRE(write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size()));
        close(fd);
        path = tmpl;
    }
    ~TempFile() { std::remove(path.c_str()); }
};

}  // namespace

TEST_CASE("PLC document: key, PDS and handle", "[did_doc]") {
    auto doc = sov::parse_did_doc(kDid, plc_doc());
    REQUIRE(doc.ok());
    CHECK(doc->did == kDid);
    REQUIRE(doc->signing_key.has_value());
    CHECK(doc->key_status == Errc::ok);
    CHECK(doc->signing_key->curve == crypto::Curve::k256);
    CHECK(crypto::to_multikey(*doc->signing_key) == kK256Multikey);
    CHECK(doc->pds_endpoint == "https://elfcup.us-east.host.bsky.network");
    CHECK(doc->handle == "t045t.zmb.cm");  // lowercased
}

TEST_CASE("relative and absolute #atproto ids", "[did_doc]") {
    for (const char* id : {"#atproto", "did:plc:2a7ygipkrbh544aqhcav53oy#atproto"}) {
        json d = plc_doc();
        d["verificationMethod"][0]["id"] = id;
        auto doc = sov::parse_did_doc(kDid, d);
        REQUIRE(doc.ok());
        CHECK(doc->signing_key.has_value());
    }
    for (const char* id : {"did:plc:2a7ygipkrbh544aqhcav53oy#atproto_label", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa#atproto",
                           "atproto", "#other"}) {
        INFO(id);
        json d = plc_doc();
        d["verificationMethod"][0]["id"] = id;
        auto doc = sov::parse_did_doc(kDid, d);
        REQUIRE(doc.ok());
        CHECK_FALSE(doc->signing_key.has_value());
        CHECK(doc->key_status == Errc::did_doc_no_key);
    }
    for (const char* id : {"#atproto_pds", "did:plc:2a7ygipkrbh544aqhcav53oy#atproto_pds"}) {
        json d = plc_doc();
        d["service"][0]["id"] = id;
        auto doc = sov::parse_did_doc(kDid, d);
        REQUIRE(doc.ok());
        CHECK(doc->pds_endpoint == "https://elfcup.us-east.host.bsky.network");
    }
}

TEST_CASE("the first matching #atproto method wins; other controllers are skipped", "[did_doc]") {
    json d = plc_doc();
    json other = d["verificationMethod"][0];
    other["publicKeyMultibase"] = kP256Multikey;
    other["id"] = "#atproto";
    d["verificationMethod"].push_back(other);
    auto doc = sov::parse_did_doc(kDid, d);
    REQUIRE(doc.ok());
    CHECK(crypto::to_multikey(*doc->signing_key) == kK256Multikey);

    d["verificationMethod"][0]["controller"] = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    doc = sov::parse_did_doc(kDid, d);
    REQUIRE(doc.ok());
    REQUIRE(doc->signing_key.has_value());
    CHECK(crypto::to_multikey(*doc->signing_key) == kP256Multikey);
    CHECK(doc->signing_key->curve == crypto::Curve::p256);

    d["verificationMethod"][1]["controller"] = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    doc = sov::parse_did_doc(kDid, d);
    REQUIRE(doc.ok());
    CHECK_FALSE(doc->signing_key.has_value());
    CHECK(doc->key_status == Errc::did_doc_no_key);
}

TEST_CASE("legacy key types: raw point, compressed or uncompressed", "[did_doc]") {
    // The interop fixtures' legacy encodings (compressed) of the spec's example keys.
    struct Case {
        const char* type;
        const char* legacy;
        const char* did_key;
    };
    const Case cases[] = {
        {"EcdsaSecp256k1VerificationKey2019", "z25z9DTpsiYYJKGsWmSPJK2NFN8PcJtZig12K59UgW7q5t",
         "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc"},
        {"EcdsaSecp256r1VerificationKey2019", "zxdM8dSstjrpZaRUwBmDvjGXweKuEMVN95A9oJBFjkWMh",
         "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo"},
        // Uncompressed generator points (SEC 2) as 'z' + base58btc of 65 bytes.
    };
    for (const auto& c : cases) {
        INFO(c.type);
        json d = plc_doc();
        d["verificationMethod"][0]["type"] = c.type;
        d["verificationMethod"][0]["publicKeyMultibase"] = c.legacy;
        auto doc = sov::parse_did_doc(kDid, d);
        REQUIRE(doc.ok());
        REQUIRE(doc->signing_key.has_value());
        CHECK(crypto::to_did_key(*doc->signing_key) == c.did_key);
    }
    // Uncompressed: derive from a key, encode the 65-byte point, expect the same key back.
    for (auto curve : {crypto::Curve::k256, crypto::Curve::p256}) {
        crypto::PrivateKey one{curve, {}};
        one.secret[31] = 1;  // public key = G, whose uncompressed form is in SEC 2
        const char* g_hex = curve == crypto::Curve::k256
                                ? "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
                                  "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
                                : "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
                                  "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
        std::vector<std::uint8_t> g;
        for (std::size_t i = 0; i < 130; i += 2) g.push_back(static_cast<std::uint8_t>(std::stoi(std::string(g_hex + i, 2), nullptr, 16)));
        std::string mb = "z";
        sov::multibase::base58btc_encode(g, mb);
        json d = plc_doc();
        d["verificationMethod"][0]["type"] = curve == crypto::Curve::k256 ? "EcdsaSecp256k1VerificationKey2019"
                                                                          : "EcdsaSecp256r1VerificationKey2019";
        d["verificationMethod"][0]["publicKeyMultibase"] = mb;
        auto doc = sov::parse_did_doc(kDid, d);
        REQUIRE(doc.ok());
        REQUIRE(doc->signing_key.has_value());
        CHECK(*doc->signing_key == *crypto::public_key_of(one));
    }
    // A legacy type with a multikey value (codec prefix) is not a raw point.
    json d = plc_doc();
    d["verificationMethod"][0]["type"] = "EcdsaSecp256k1VerificationKey2019";
    auto doc = sov::parse_did_doc(kDid, d);
    REQUIRE(doc.ok());
    CHECK_FALSE(doc->signing_key.has_value());
    CHECK(doc->key_status == Errc::key_bad_point);
}

TEST_CASE("unusable keys leave signing_key empty with a reason", "[did_doc]") {
    // A multikey with the k256 codec but a point prefix that is neither 02 nor 03.
    std::vector<std::uint8_t> bad_point = {0xE7, 0x01, 0x05};
    bad_point.resize(35, 0x11);
    std::string bad_point_mk = "z";
    sov::multibase::base58btc_encode(bad_point, bad_point_mk);
    struct Case {
        const char* field;
        json value;
        Errc status;
    };
    const Case cases[] = {
        {"type", "Ed25519VerificationKey2020", Errc::did_doc_no_key},
        {"type", nullptr, Errc::did_doc_no_key},
        {"publicKeyMultibase", nullptr, Errc::did_doc_no_key},
        {"publicKeyMultibase", 42, Errc::did_doc_no_key},
        {"publicKeyMultibase", "Q3shrc8v5X6ZiANcZxA6JerfT2T4SskeCGxpmtDfMuHF9KRj", Errc::key_bad_multibase},
        {"publicKeyMultibase", "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", Errc::key_bad_codec},
        {"publicKeyMultibase", "zQ3shrc8v5X6ZiANcZxA6JerfT2T4SskeCGxpmtDfMuHF9KR", Errc::key_bad_codec},  // cut: other prefix
        {"publicKeyMultibase", bad_point_mk, Errc::key_bad_point},
    };
    for (const auto& c : cases) {
        INFO(c.field << " = " << c.value.dump());
        json d = plc_doc();
        if (c.value.is_null()) {
            d["verificationMethod"][0].erase(c.field);
        } else {
            d["verificationMethod"][0][c.field] = c.value;
        }
        auto doc = sov::parse_did_doc(kDid, d);
        REQUIRE(doc.ok());
        CHECK_FALSE(doc->signing_key.has_value());
        CHECK(doc->key_status == c.status);
    }
    json d = plc_doc();
    d.erase("verificationMethod");
    auto doc = sov::parse_did_doc(kDid, d);
    REQUIRE(doc.ok());
    CHECK_FALSE(doc->signing_key.has_value());
    CHECK(doc->key_status == Errc::did_doc_no_key);
    CHECK(doc->pds_endpoint == "https://elfcup.us-east.host.bsky.network");
}

TEST_CASE("id mismatch and malformed documents are rejected", "[did_doc]") {
    CHECK(sov::parse_did_doc("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", plc_doc()).error() == Errc::did_doc_bad);
    CHECK(sov::parse_did_doc("", plc_doc()).error() == Errc::did_doc_bad);
    CHECK(sov::parse_did_doc(kDid, json::array()).error() == Errc::did_doc_bad);
    CHECK(sov::parse_did_doc(kDid, json(nullptr)).error() == Errc::did_doc_bad);
    json d = plc_doc();
    d.erase("id");
    CHECK(sov::parse_did_doc(kDid, d).error() == Errc::did_doc_bad);
    d = plc_doc();
    d["id"] = 7;
    CHECK(sov::parse_did_doc(kDid, d).error() == Errc::did_doc_bad);
    for (const char* field : {"verificationMethod", "service", "alsoKnownAs"}) {
        d = plc_doc();
        d[field] = "not an array";
        CHECK(sov::parse_did_doc(kDid, d).error() == Errc::did_doc_bad);
    }
}

TEST_CASE("PDS selection and handle rules", "[did_doc]") {
    json d = plc_doc();
    d["service"][0]["type"] = "BskyFeedGenerator";
    CHECK(sov::parse_did_doc(kDid, d)->pds_endpoint.empty());
    d = plc_doc();
    d["service"][0]["serviceEndpoint"] = "ftp://x";
    CHECK(sov::parse_did_doc(kDid, d)->pds_endpoint.empty());
    d = plc_doc();
    d["service"][0]["serviceEndpoint"] = json::object();
    CHECK(sov::parse_did_doc(kDid, d)->pds_endpoint.empty());
    d = plc_doc();
    d["service"].insert(d["service"].begin(), json{{"id", "#atproto_labeler"}, {"type", "AtprotoLabeler"},
                                                   {"serviceEndpoint", "https://labeler.example"}});
    d["service"].push_back(json{{"id", "#atproto_pds"}, {"type", "AtprotoPersonalDataServer"},
                                {"serviceEndpoint", "https://second.example"}});
    CHECK(sov::parse_did_doc(kDid, d)->pds_endpoint == "https://elfcup.us-east.host.bsky.network");
    d = plc_doc();
    d["service"][0]["serviceEndpoint"] = "http://localhost:2583";  // simulated PDSes
    CHECK(sov::parse_did_doc(kDid, d)->pds_endpoint == "http://localhost:2583");

    d = plc_doc();
    d["alsoKnownAs"] = json::array({"https://example.com", 5, "at://", "at://Alice.Example.COM", "at://bob.test"});
    CHECK(sov::parse_did_doc(kDid, d)->handle == "alice.example.com");
    d.erase("alsoKnownAs");
    CHECK(sov::parse_did_doc(kDid, d)->handle.empty());
}

TEST_CASE("KeyStore: put, find without allocation, replace", "[did_doc][keystore]") {
    KeyStore ks;
    CHECK(ks.size() == 0);
    CHECK(ks.find(kDid) == nullptr);
    ks.put(*sov::parse_did_doc(kDid, plc_doc()));
    CHECK(ks.size() == 1);
    const std::string_view did = kDid;
    const DidDoc* d = ks.find(did);
    REQUIRE(d != nullptr);
    CHECK(d->handle == "t045t.zmb.cm");
    DidDoc replaced;
    replaced.did = kDid;
    replaced.handle = "new.handle";
    ks.put(std::move(replaced));
    CHECK(ks.size() == 1);
    CHECK(ks.find(did)->handle == "new.handle");
    CHECK(ks.find("did:plc:2a7ygipkrbh544aqhcav53o") == nullptr);
}

TEST_CASE("KeyStore: JSON text with null entries and bad entries", "[did_doc][keystore]") {
    json all = json::object();
    all[kDid] = plc_doc();
    all["did:plc:tombstonedtombstonedtomb"] = nullptr;
    json wrong = plc_doc();  // filed under a DID that is not its id
    all["did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"] = wrong;
    KeyStore ks;
    std::string err;
    CHECK(ks.load_json_text(all.dump(), err) == Errc::did_doc_bad);
    CHECK(err.find("1 of 3 entries rejected") != std::string::npos);
    CHECK(err.find("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb") != std::string::npos);
    CHECK(ks.size() == 2);
    const DidDoc* t = ks.find("did:plc:tombstonedtombstonedtomb");
    REQUIRE(t != nullptr);
    CHECK_FALSE(t->signing_key.has_value());
    CHECK(t->key_status == Errc::did_doc_no_key);
    CHECK(ks.find(kDid)->signing_key.has_value());

    err.clear();
    CHECK(ks.load_json_text("{\"a\": [1, 2", err) == Errc::json_parse);
    CHECK(err.find("byte") != std::string::npos);
    CHECK(ks.load_json_text("[]", err) == Errc::did_doc_bad);
}

TEST_CASE("KeyStore: files, plain and zstd, and I/O errors", "[did_doc][keystore]") {
    json all = json::object();
    all[kDid] = plc_doc();
    TempFile plain(all.dump());
    KeyStore ks;
    std::string err;
    REQUIRE(ks.load_json_file(plain.path, err) == Errc::ok);
    CHECK(ks.size() == 1);
    CHECK(ks.load_json_file("/nonexistent/did-docs.json", err) == Errc::io_error);
    CHECK(err.find("/nonexistent/did-docs.json") != std::string::npos);

    // A zstd frame header with nothing after it: a cut frame.
    const std::string cut = std::string("\x28\xB5\x2F\xFD\x24\x10", 6);
    TempFile trunc(cut);
    KeyStore ks2;
    CHECK(ks2.load_json_file(trunc.path, err) == Errc::truncated);
}

TEST_CASE("relay capture did-docs.json.zst: every DID has a k256 key and a PDS", "[did_doc][keystore][corpus]") {
    const std::string path = corpus_path("relay-capture/did-docs.json.zst");
    if (path.empty()) return;
    KeyStore ks;
    std::string err;
    REQUIRE(ks.load_json_file(path, err) == Errc::ok);
    INFO(err);
    CHECK(ks.size() == 148);

    // Cross-check against the plain JSON, read independently of the store.
    std::string cmd = "zstd -dc '" + path + "'";
    std::FILE* p = popen(cmd.c_str(), "r");
    if (!p) return;
    std::string text;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    if (pclose(p) != 0 || text.empty()) {
        WARN("zstd command-line tool unavailable: skipping the cross-check");
        return;
    }
    const json all = json::parse(text);
    REQUIRE(all.size() == 148);
    for (const auto& [did, doc] : all.items()) {
        INFO(did);
        const DidDoc* d = ks.find(did);
        REQUIRE(d != nullptr);
        REQUIRE(d->signing_key.has_value());
        CHECK(d->signing_key->curve == crypto::Curve::k256);
        CHECK(crypto::to_multikey(*d->signing_key) == doc["verificationMethod"][0]["publicKeyMultibase"]);
        CHECK(d->pds_endpoint.starts_with("https://"));
        CHECK(d->pds_endpoint == doc["service"][0]["serviceEndpoint"]);
    }
}
