// The segment index codec (docs/format-cvl.md §4). One struct per table, one function each
// way; nothing else in the archive code computes an index offset.
#include "internal/cvl/index.h"

#include "sovereign/blake3.h"
#include "sovereign/file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sov::cvl::index {

std::vector<std::uint8_t> encode_index(Content& c) {
    Header& h = c.header;
    std::memcpy(h.magic, kMagic, 8);
    h.version.set(kVersion);
    h.flags.set(c.purged.empty() ? 0 : kFlagCompacted);
    h.n.set(std::uint32_t(c.records.size()));
    h.c.set(std::uint32_t(c.groups.size()));
    h.p.set(std::uint32_t(c.ops.size()));
    h.s.set(std::uint16_t(c.shard_sizes.size()));
    h.reserved.set(0);
    h.q.set(std::uint32_t(c.purged.size()));
    std::vector<std::uint8_t> x;
    x.reserve(file_size(h));
    le::append_struct(x, h);
    for (auto s : c.shard_sizes) le::append<std::uint64_t>(x, s);
    for (auto& r : c.records) le::append_struct(x, r);
    for (auto r : c.recvs) le::append<std::int64_t>(x, r);
    for (auto& g : c.groups) le::append_struct(x, g);
    for (auto& o : c.ops) le::append_struct(x, o);
    for (auto& p : c.purged) le::append_struct(x, p);
    x.insert(x.end(), c.root.begin(), c.root.end());
    x.insert(x.end(), c.prev_root.begin(), c.prev_root.end());
    Hash sum;
    blake3::Hasher hs;
    hs.update(x);
    hs.finalize(sum.data(), 32);
    x.insert(x.end(), sum.begin(), sum.end());
    x.insert(x.end(), kEndMagic, kEndMagic + 4);
    return x;
}

const std::uint8_t* View::purged_leaf(std::uint32_t i) const noexcept {
    std::uint32_t lo = 0, hi = h.q;
    while (lo < hi) {
        std::uint32_t mid = (lo + hi) / 2;
        std::uint32_t m = le::get<std::uint32_t>(purged + sizeof(Purged) * mid);
        if (m == i) return purged + sizeof(Purged) * mid + 4;
        if (m < i) lo = mid + 1;
        else hi = mid;
    }
    return nullptr;
}

Errc View::decode(std::string& err) {
    const auto& b = bytes;
    auto fail = [&](Errc e, std::size_t off, const std::string& why) {
        err = path + ":" + std::to_string(off) + ": " + why;
        return e;
    };
    if (b.size() < sizeof(Header) + kTrailer)
        return fail(Errc::cvl_truncated, b.size(), "truncated (shorter than header and trailer)");
    h = le::load<Header>(b.data());
    if (std::memcmp(h.magic, kMagic, 8) != 0) return fail(Errc::cvl_bad_magic, 0, "not a CVL segment index (bad magic)");
    if (h.version != kVersion)
        return fail(Errc::cvl_bad_version, 8, "unsupported index version " + std::to_string(h.version.get()));
    if (h.n == 0 || h.s == 0) return fail(Errc::cvl_bad_index, 32, "empty segment or no shards");
    if (h.flags != (h.q ? kFlagCompacted : 0u))
        return fail(Errc::cvl_bad_index, 12, "flags " + std::to_string(h.flags.get()) + " do not match the purged count");
    if (h.reserved != 0) return fail(Errc::cvl_bad_index, 46, "reserved field is not 0");
    if (h.q > h.n) return fail(Errc::cvl_bad_index, 88, "more purged messages than messages");
    const std::uint64_t need = file_size(h);
    if (need != b.size())
        return fail(b.size() < need ? Errc::cvl_truncated : Errc::cvl_bad_index, b.size() < need ? b.size() : need,
                    "section sizes (" + std::to_string(need) + " bytes) do not match the file (" +
                        std::to_string(b.size()) + " bytes): truncated or corrupt");
    if (std::memcmp(&b[b.size() - 4], kEndMagic, 4) != 0) return fail(Errc::cvl_bad_magic, b.size() - 4, "bad end magic");
    Hash sum;
    blake3::Hasher hs;
    hs.update({b.data(), b.size() - 36});
    hs.finalize(sum.data(), 32);
    if (std::memcmp(sum.data(), &b[b.size() - 36], 32) != 0)
        return fail(Errc::cvl_checksum, b.size() - 36, "index checksum mismatch (corrupt index)");
    const std::uint8_t* p = b.data() + sizeof(Header);
    shards = p;
    p += 8 * std::size_t(h.s);
    recs = p;
    p += sizeof(Record) * std::size_t(h.n);
    recvs = p;
    p += 8 * std::size_t(h.n);
    groups = p;
    p += sizeof(Group) * std::size_t(h.c);
    ops = p;
    p += sizeof(Op) * std::size_t(h.p);
    purged = p;
    p += sizeof(Purged) * std::size_t(h.q);
    std::memcpy(root.data(), p, 32);
    std::memcpy(prev_root.data(), p + 32, 32);
    std::uint64_t total = 0;
    for (unsigned k = 0; k < h.s; ++k) total += shard_size(k);
    for (std::uint32_t i = 0; i < h.n; ++i) {
        Record r = rec(i);
        if (r.c_len == 0) continue;  // purged
        if (r.bin_off + r.c_len > total)
            return fail(Errc::cvl_bad_index, rec_offset(i), "index record points past the segment data");
        if (r.i_len > (16u << 20)) return fail(Errc::cvl_bad_index, rec_offset(i) + 16, "message longer than 16 MiB");
    }
    return Errc::ok;
}

Errc read_header(const std::string& path, Header& out, std::string& err) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int e = errno;
        err = path + ": " + std::strerror(e);
        return from_errno(e);
    }
    std::uint8_t b[sizeof(Header)];
    Errc e = file::pread_all(fd, 0, b, sizeof b, path, err);
    ::close(fd);
    if (e == Errc::truncated) e = Errc::cvl_truncated;
    if (e == Errc::ok) out = le::load<Header>(b);
    return e;
}

namespace {
struct Mapping {
    void* p = nullptr;
    std::size_t n = 0;
    ~Mapping() {
        if (p) ::munmap(p, n);
    }
};
}  // namespace

Errc open_view(const std::string& path, View& out, std::string& err) {
    out.path = path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int e = errno;
        err = path + ": " + std::strerror(e);
        return from_errno(e);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        err = path + ": " + std::strerror(e);
        return from_errno(e);
    }
    auto m = std::make_shared<Mapping>();
    m->n = std::size_t(st.st_size);
    if (m->n > 0) {
        void* p = ::mmap(nullptr, m->n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            err = path + ": mmap: " + std::strerror(e);
            return from_errno(e);
        }
        m->p = p;
    }
    ::close(fd);
    out.bytes = {static_cast<const std::uint8_t*>(m->p), m->n};
    out.keep = m;
    return out.decode(err);
}

}  // namespace sov::cvl::index
