// Fuzz target of the DID cache loader (sovereign/did_cache.h; docs/format-did-cache.md §8):
// check_file over any bytes must never crash and must name an offset when it rejects; bytes it
// accepts, written to a file, must open as a Reader whose for_each succeeds and whose get()
// gives back every record for_each saw, and whose key_at answers without crashing; a Writer
// over a clean copy must take a new record that the Reader then finds. The header checksum is
// recomputed first, so mutations reach the header's fields, not only its hash.
#include "sovereign/blake3.h"
#include "sovereign/did_cache.h"
#include "sovereign/file.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
[[noreturn]] void broken(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace sov::didcache;
    using sov::Errc;
    std::vector<std::uint8_t> b(data, data + size);
    if (b.size() >= 64 && std::memcmp(b.data(), "SOVDIDC\n", 8) == 0) {
        const auto d = sov::blake3::hash(sov::ByteView(b.data(), 56));
        std::memcpy(b.data() + 56, d.data(), 8);
    }
    std::string err;
    const Errc e = check_file(b, err);
    if (e != Errc::ok) {
        if (err.find("offset ") == std::string::npos) broken("a check_file error without an offset");
        return 0;
    }
    const std::string path = "/tmp/sov-fuzz-didcache-" + std::to_string(::getpid());
    if (sov::file::write_file(path, b, err) != Errc::ok) return 0;
    {
        Reader rd;
        if (Reader::open(path, rd, err) != Errc::ok) broken("check_file accepted a file Reader::open rejects");
        std::vector<Record> all;
        if (rd.for_each([&](const Record& r) { all.push_back(r); }, err) != Errc::ok)
            broken("check_file accepted a file for_each rejects");
        if (all.size() != rd.size()) broken("for_each count differs from the header's");
        for (const auto& r : all) {
            auto got = rd.get(r.did);
            if (!got || !(*got == r)) broken("get() differs from for_each");
            for (const auto& ep : r.history) (void)rd.key_at(r.did, ep.valid_from_us);
            (void)rd.key_at(r.did, 0);
            (void)rd.key_at(r.did, 1);
        }
        (void)rd.key_at("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", 0);
        (void)rd.key_at("did:web:example.com", 0);
        if (rd.status() != Errc::ok) broken("a lookup failed in a file check_file accepted");

        Writer w;
        if (Writer::open(path, w, err) == Errc::ok) {
            Record r;
            r.did = "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz";
            r.handle = "fuzz.example.com";
            r.pds = "https://fuzz.example";
            const Errc pe = w.put(r, err);
            if (pe == Errc::ok && !(rd.get(r.did) == r)) broken("a put record is not found");
            if (pe == Errc::ok && w.sync(1, err) == Errc::ok) {
                std::vector<std::uint8_t> after;
                if (sov::file::read_file(path, after, err) == Errc::ok && check_file(after, err) != Errc::ok)
                    broken("a file check_file accepted fails after a put");
            }
        }
    }
    ::unlink(path.c_str());
    ::unlink((path + ".tmp").c_str());
    return 0;
}
