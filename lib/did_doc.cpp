// did_doc.cpp — DID document parsing and the DID -> document store (see did_doc.h).
//
// Field rules follow docs/protocol.md §5 "DID document". Choices the spec leaves open:
// - A verification method / service id matches when it is the bare fragment ("#atproto") or the
//   document's own DID plus the fragment; an id naming another DID is not ours.
// - Methods controlled by another DID are skipped; the first matching method controlled by the
//   DID decides: if its type or key is unusable the document has no key (we do not fall back to a
//   later one, which is what "the first" means and keeps verdicts predictable).
// - Containers of the wrong JSON type (verificationMethod not an array, …) make the document
//   malformed (did_doc_bad), like a typed decoder would; odd *entries* inside them are skipped.
// - Handles are lowercased (they are case-insensitive DNS names); they are not verified here.
//
// nlohmann::json is used without exceptions on the parse path (find / is_* / get_ref); the file
// loader catches parse_error only to report its byte position.
#include "sovereign/did_doc.h"

#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

namespace sov {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxDecompressed = std::size_t{1} << 30;  // 1 GiB of JSON is not a key file

// The string at obj[key], or empty when absent or not a string.
std::string_view string_field(const json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_string()) return {};
    return it->get_ref<const std::string&>();
}

// "#frag" or did + "#frag".
bool id_matches(std::string_view id, std::string_view did, std::string_view fragment) {
    if (!id.ends_with(fragment)) return false;
    const std::string_view prefix = id.substr(0, id.size() - fragment.size());
    return prefix.empty() || prefix == did;
}

// A container member that must be an array when present; nullptr when absent.
// Sets `bad` when present with another type.
const json* array_field(const json& obj, const char* key, bool& bad) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    if (!it->is_array()) {
        bad = true;
        return nullptr;
    }
    return &*it;
}

Errc key_from_method(const json& vm, std::optional<crypto::PublicKey>& out) {
    const std::string_view type = string_field(vm, "type");
    const std::string_view mb = string_field(vm, "publicKeyMultibase");
    if (mb.empty()) return Errc::did_doc_no_key;
    Result<crypto::PublicKey> key = Errc::did_doc_no_key;
    if (type == "Multikey") {
        key = crypto::parse_multikey(mb);
    } else if (type == "EcdsaSecp256k1VerificationKey2019") {
        key = crypto::parse_legacy_multibase(crypto::Curve::k256, mb);
    } else if (type == "EcdsaSecp256r1VerificationKey2019") {
        key = crypto::parse_legacy_multibase(crypto::Curve::p256, mb);
    }
    if (!key) return key.error();
    out = std::move(key).value();
    return Errc::ok;
}

bool is_http_url(std::string_view s) {
    return (s.starts_with("https://") && s.size() > 8) || (s.starts_with("http://") && s.size() > 7);
}

}  // namespace

Result<DidDoc> parse_did_doc(std::string_view did_expected, const json& doc) {
    if (!doc.is_object()) return Errc::did_doc_bad;
    if (did_expected.empty() || string_field(doc, "id") != did_expected) return Errc::did_doc_bad;

    bool bad = false;
    const json* methods = array_field(doc, "verificationMethod", bad);
    const json* services = array_field(doc, "service", bad);
    const json* aka = array_field(doc, "alsoKnownAs", bad);
    if (bad) return Errc::did_doc_bad;

    DidDoc out;
    out.did = std::string(did_expected);
    out.key_status = Errc::did_doc_no_key;
    if (methods) {
        for (const json& vm : *methods) {
            if (!vm.is_object() || !id_matches(string_field(vm, "id"), did_expected, "#atproto")) continue;
            if (string_field(vm, "controller") != did_expected) continue;
            out.key_status = key_from_method(vm, out.signing_key);
            break;
        }
    }
    if (services) {
        for (const json& svc : *services) {
            if (!svc.is_object() || !id_matches(string_field(svc, "id"), did_expected, "#atproto_pds")) continue;
            if (string_field(svc, "type") != "AtprotoPersonalDataServer") continue;
            const std::string_view ep = string_field(svc, "serviceEndpoint");
            if (is_http_url(ep)) out.pds_endpoint = std::string(ep);
            break;
        }
    }
    if (aka) {
        for (const json& v : *aka) {
            if (!v.is_string()) continue;
            const std::string& s = v.get_ref<const std::string&>();
            if (s.size() <= 5 || s.compare(0, 5, "at://") != 0) continue;
            out.handle.assign(s, 5);
            for (char& c : out.handle) {
                if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            }
            break;
        }
    }
    return out;
}

// ---------------------------------------------------------------- KeyStore

namespace {

Errc read_file(const std::string& path, std::string& out, std::string& err) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        err = path + ": " + std::strerror(errno);
        return Errc::io_error;
    }
    // A regular file is read in one go into a string of its size (no regrowth, no copies).
    struct stat st;
    if (::fstat(::fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        out.resize(std::size_t(st.st_size));
        out.resize(std::fread(out.data(), 1, out.size(), f));
    }
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    const bool failed = std::ferror(f) != 0;
    const int saved = errno;
    std::fclose(f);
    if (failed) {
        err = path + ": " + std::strerror(saved);
        return Errc::io_error;
    }
    return Errc::ok;
}

bool is_zstd(std::string_view s) {
    return s.size() >= 4 && static_cast<unsigned char>(s[0]) == 0x28 && static_cast<unsigned char>(s[1]) == 0xB5 &&
           static_cast<unsigned char>(s[2]) == 0x2F && static_cast<unsigned char>(s[3]) == 0xFD;
}

// Streaming decompression of one or more concatenated zstd frames.
Errc zstd_decompress(std::string_view in, std::string& out, std::string& err) {
    struct DCtxFree {
        void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
    };
    std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
    if (!dctx) {
        err = "zstd: out of memory";
        return Errc::io_error;
    }
    const std::size_t chunk = ZSTD_DStreamOutSize();
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    for (;;) {
        const std::size_t old = out.size();
        if (old > kMaxDecompressed) {
            err = "zstd: decompressed size over 1 GiB";
            return Errc::too_large;
        }
        out.resize(old + chunk);
        ZSTD_outBuffer ob{out.data() + old, chunk, 0};
        const std::size_t ret = ZSTD_decompressStream(dctx.get(), &ob, &ib);
        out.resize(old + ob.pos);
        if (ZSTD_isError(ret)) {
            err = std::string("zstd: ") + ZSTD_getErrorName(ret);
            return Errc::io_error;
        }
        const bool output_full = ob.pos == ob.size;
        if (ib.pos == ib.size && !output_full) {
            if (ret == 0) return Errc::ok;  // last frame complete and flushed
            err = "zstd: input ends inside a frame";
            return Errc::truncated;
        }
    }
}

}  // namespace

Errc KeyStore::load_json_file(const std::string& path, std::string& err_detail) {
    std::string raw;
    if (Errc e = read_file(path, raw, err_detail); e != Errc::ok) return e;
    if (is_zstd(raw)) {
        std::string text;
        if (Errc e = zstd_decompress(raw, text, err_detail); e != Errc::ok) {
            err_detail = path + ": " + err_detail;
            return e;
        }
        raw.swap(text);
    }
    const Errc e = load_json_text(raw, err_detail);
    if (e != Errc::ok) err_detail = path + ": " + err_detail;
    return e;
}

Errc KeyStore::load_json_text(std::string_view json_text, std::string& err_detail) {
    json parsed;
    try {
        parsed = json::parse(json_text.begin(), json_text.end());
    } catch (const json::parse_error& e) {
        err_detail = "byte " + std::to_string(e.byte) + ": invalid JSON";
        return Errc::json_parse;
    }
    return load_json(parsed, err_detail);
}

Errc KeyStore::load_json(const json& object, std::string& err_detail) {
    if (!object.is_object()) {
        err_detail = "top level is not a JSON object of DID -> DID document";
        return Errc::did_doc_bad;
    }
    map_.reserve(map_.size() + object.size());
    std::size_t rejected = 0;
    Errc first = Errc::ok;
    std::string first_did;
    for (auto it = object.begin(); it != object.end(); ++it) {
        const std::string& did = it.key();
        if (it->is_null()) {
            DidDoc d;
            d.did = did;
            d.key_status = Errc::did_doc_no_key;
            put(std::move(d));
            continue;
        }
        Result<DidDoc> doc = parse_did_doc(did, *it);
        if (!doc) {
            if (rejected++ == 0) {
                first = doc.error();
                first_did = did;
            }
            continue;
        }
        put(std::move(doc).value());
    }
    if (rejected == 0) return Errc::ok;
    err_detail = std::to_string(rejected) + " of " + std::to_string(object.size()) + " entries rejected; first: " +
                 first_did + ": " + std::string(to_string(first));
    return first;
}

const DidDoc* KeyStore::find(std::string_view did) const noexcept {
    auto it = map_.find(did);
    return it == map_.end() ? nullptr : &it->second;
}

void KeyStore::put(DidDoc doc) {
    std::string key = doc.did;
    map_.insert_or_assign(std::move(key), std::move(doc));
}

}  // namespace sov
