#include "sovereign/cid.h"

#include "sovereign/crypto.h"
#include "sovereign/multibase.h"
#include "sovereign/varint.h"


#include <vector>

namespace sov::cid {

Errc parse(ByteView in, Info& out) noexcept {
    if (in.size() > kMaxLen) return Errc::too_large;
    std::size_t pos = 0, n = 0;
    std::uint64_t version, codec, code, len;
    Errc e = varint::decode(in, version, n);
    if (e != Errc::ok) return e;
    if (version != 1) return Errc::cid_bad_version;
    pos += n;
    if ((e = varint::decode(in.subspan(pos), codec, n)) != Errc::ok) return e;
    pos += n;
    if ((e = varint::decode(in.subspan(pos), code, n)) != Errc::ok) return e;
    pos += n;
    if ((e = varint::decode(in.subspan(pos), len, n)) != Errc::ok) return e;
    pos += n;
    if (len > in.size() - pos) return Errc::truncated;
    if (len < in.size() - pos) return Errc::trailing_bytes;
    out.codec = codec;
    out.hash_code = code;
    out.digest = in.subspan(pos, std::size_t(len));
    return Errc::ok;
}

Errc check_binary(ByteView in) noexcept {
    Info i;
    return parse(in, i);
}

bool is_blessed(ByteView in) noexcept {
    return in.size() == kBlessedLen && in[0] == 0x01 && (in[1] == kCodecDagCbor || in[1] == kCodecRaw) &&
           in[2] == kHashSha256 && in[3] == 0x20;
}

Cid compute(std::uint64_t codec, ByteView data) noexcept {
    std::array<std::uint8_t, 48> b;
    std::size_t n = 0;
    b[n++] = 0x01;
    n += varint::encode(codec, b.data() + n);
    b[n++] = kHashSha256;
    b[n++] = 0x20;
    auto d = crypto::sha256(data);
    std::memcpy(b.data() + n, d.data(), 32);
    return Cid(ByteView{b.data(), n + 32});
}

bool matches(ByteView cid, ByteView data) noexcept {
    Info info;
    if (parse(cid, info) != Errc::ok || info.hash_code != kHashSha256 || info.digest.size() != 32) return false;
    auto d = crypto::sha256(data);
    return std::memcmp(d.data(), info.digest.data(), 32) == 0;
}

void append_string(ByteView cid, std::string& out) {
    out.push_back('b');
    multibase::base32_encode(cid, out);
}

std::string to_string(ByteView cid) {
    std::string s;
    s.reserve(1 + (cid.size() * 8 + 4) / 5);
    append_string(cid, s);
    return s;
}

Errc from_string(std::string_view text, Cid& out) noexcept {
    if (text.size() < 2 || text[0] != 'b') return Errc::cid_bad_text;
    std::vector<std::uint8_t> bin;
    Errc e = multibase::base32_decode(text.substr(1), bin);
    if (e != Errc::ok) return e;
    if ((e = check_binary(bin)) != Errc::ok) return e;
    out = Cid(ByteView{bin.data(), bin.size()});
    return Errc::ok;
}

}  // namespace sov::cid
