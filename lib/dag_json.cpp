#include "sovereign/dag_json.h"

#include "sovereign/cid.h"
#include "sovereign/multibase.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace sov::dag_json {

void append_string(std::string_view s, std::string& out) {
    static const char* hex = "0123456789abcdef";
    out.push_back('"');
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out.push_back(hex[c >> 4]);
                out.push_back(hex[c & 15]);
            } else {
                out.push_back(char(c));
            }
        }
    }
    out.push_back('"');
}

void append(cbor::Value v, std::string& out) {
    using cbor::Kind;
    switch (v.kind()) {
    case Kind::uint:
    case Kind::nint: out += std::to_string(v.as_int()); break;
    case Kind::text: append_string(v.as_text(), out); break;
    case Kind::bytes:
        out += "{\"$bytes\":\"";
        multibase::base64_encode(v.as_bytes(), out);
        out += "\"}";
        break;
    case Kind::link:
        out += "{\"$link\":\"";
        cid::append_string(v.as_link(), out);
        out += "\"}";
        break;
    case Kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Kind::null: out += "null"; break;
    case Kind::array: {
        out.push_back('[');
        cbor::ArrayIter it = v.array();
        cbor::Value e;
        bool first = true;
        while (it.next(e)) {
            if (!first) out.push_back(',');
            first = false;
            append(e, out);
        }
        out.push_back(']');
        break;
    }
    case Kind::map: {
        out.push_back('{');
        cbor::MapIter it = v.map();
        std::string_view k;
        cbor::Value e;
        bool first = true;
        while (it.next(k, e)) {
            if (!first) out.push_back(',');
            first = false;
            append_string(k, out);
            out.push_back(':');
            append(e, out);
        }
        out.push_back('}');
        break;
    }
    }
}

namespace {

using json = nlohmann::json;

struct Enc {
    cbor::Writer& w;
    std::string& where;
    std::vector<std::string> path;
    std::size_t depth = 0;

    Errc fail(Errc e) {
        // Built with append() rather than operator+= on chars: GCC 12 at -O3 raises a false
        // -Wrestrict on the latter (GCC bug 105329).
        where.clear();
        for (auto& p : path) where.append("/").append(p);
        if (where.empty()) where.append("/");
        return e;
    }

    Errc value(const json& j) {
        switch (j.type()) {
        case json::value_t::null: w.null(); return Errc::ok;
        case json::value_t::boolean: w.boolean(j.get<bool>()); return Errc::ok;
        case json::value_t::number_integer: w.integer(j.get<std::int64_t>()); return Errc::ok;
        case json::value_t::number_unsigned: {
            std::uint64_t u = j.get<std::uint64_t>();
            if (u > std::uint64_t(INT64_MAX)) return fail(Errc::cbor_int_range);
            w.uint(u);
            return Errc::ok;
        }
        case json::value_t::number_float: {
            double d = j.get<double>();
            if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) return fail(Errc::cbor_float);
            w.integer(std::int64_t(d));
            return Errc::ok;
        }
        case json::value_t::string: {
            const std::string& t = j.get_ref<const std::string&>();
            if (!cbor::valid_utf8(reinterpret_cast<const std::uint8_t*>(t.data()), t.size()))
                return fail(Errc::cbor_invalid_utf8);
            w.text(t);
            return Errc::ok;
        }
        case json::value_t::array: {
            if (++depth > cbor::kMaxDepth) return fail(Errc::cbor_too_deep);
            w.array(j.size());
            std::size_t i = 0;
            for (const auto& e : j) {
                path.push_back(std::to_string(i++));
                if (Errc e2 = value(e); e2 != Errc::ok) return e2;
                path.pop_back();
            }
            --depth;
            return Errc::ok;
        }
        case json::value_t::object: return object(j);
        default: return fail(Errc::json_bad_data_model);
        }
    }

    Errc object(const json& j) {
        if (j.contains("$link")) {
            const json& l = j["$link"];
            if (j.size() != 1 || !l.is_string()) return fail(Errc::json_bad_data_model);
            cid::Cid c;
            if (Errc e = cid::from_string(l.get_ref<const std::string&>(), c); e != Errc::ok) return fail(e);
            w.link(c.bytes());
            return Errc::ok;
        }
        if (j.contains("$bytes")) {
            const json& b = j["$bytes"];
            if (j.size() != 1 || !b.is_string()) return fail(Errc::json_bad_data_model);
            std::vector<std::uint8_t> bin;
            if (Errc e = multibase::base64_decode_lenient(b.get_ref<const std::string&>(), bin); e != Errc::ok) return fail(e);
            w.bytes(bin);
            return Errc::ok;
        }
        if (j.contains("$type")) {
            const json& t = j["$type"];
            if (!t.is_string() || t.get_ref<const std::string&>().empty()) return fail(Errc::json_bad_data_model);
            if (t == "blob") {
                auto ref = j.find("ref");
                auto mime = j.find("mimeType");
                auto size = j.find("size");
                if (ref == j.end() || !ref->is_object() || !ref->contains("$link") || mime == j.end() ||
                    !mime->is_string() || mime->get_ref<const std::string&>().empty() || size == j.end() ||
                    !size->is_number_integer() || size->get<std::int64_t>() < 0)
                    return fail(Errc::json_bad_data_model);
            }
        }
        if (++depth > cbor::kMaxDepth) return fail(Errc::cbor_too_deep);
        std::vector<const std::string*> keys;
        keys.reserve(j.size());
        for (auto it = j.begin(); it != j.end(); ++it) {
            if (it.key().empty()) return fail(Errc::cbor_empty_key);
            if (!cbor::valid_utf8(reinterpret_cast<const std::uint8_t*>(it.key().data()), it.key().size()))
                return fail(Errc::cbor_invalid_utf8);
            keys.push_back(&it.key());
        }
        std::sort(keys.begin(), keys.end(),
                  [](const std::string* a, const std::string* b) { return cbor::key_compare(*a, *b) < 0; });
        w.map(keys.size());
        for (const std::string* k : keys) {
            w.text(*k);
            path.push_back(*k);
            if (Errc e = value(j.at(*k)); e != Errc::ok) return e;
            path.pop_back();
        }
        --depth;
        return Errc::ok;
    }
};

}  // namespace

Errc encode(const nlohmann::json& j, cbor::Writer& w, std::string& where, bool require_object) {
    Enc enc{w, where, {}, 0};
    if (require_object && !j.is_object()) return enc.fail(Errc::json_bad_data_model);
    return enc.value(j);
}

}  // namespace sov::dag_json
