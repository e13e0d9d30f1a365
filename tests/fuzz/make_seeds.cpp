// Writes fuzz seeds derived from the real corpus into the build tree (never committed):
// a few messages, frame records, CAR slices, blocks, CIDs and JSON lines from the relay
// capture. Usage: make_seeds CORPUS_DIR OUT_DIR STAMP. Without the corpus only the
// committed hand-made seeds are used.
#include "sovereign/capture.h"
#include "sovereign/car.h"
#include "sovereign/cbor.h"
#include "sovereign/did_cache.h"
#include "sovereign/file.h"
#include "sovereign/frame_json.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

static void put(const fs::path& dir, const std::string& name, sov::ByteView b) {
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

int main(int argc, char** argv) {
    if (argc != 4) return 2;
    fs::path out = argv[2];
    std::vector<std::vector<std::uint8_t>> msgs;
    std::string err;
    fs::create_directories(out);
    if (sov::capture::load((fs::path(argv[1]) / "relay-capture/frames.u32le.zst").string(), msgs, err)) {
        // The smallest few messages of each type keep the seeds (and fuzzing) fast.
        std::sort(msgs.begin(), msgs.end(), [](auto& a, auto& b) { return a.size() < b.size(); });
        int n = 0;
        for (auto& m : msgs) {
            if (n++ >= 6) break;
            std::string id = std::to_string(n);
            put(out / "message_verify", id, m);
            put(out / "jetstream", id, m);
            std::vector<std::uint8_t> rec;
            sov::frames::append_record(rec, "bsky.network", std::nullopt, 1751639887000000, m);
            put(out / "frame_record", id, rec);
            sov::frames::Envelope env;
            if (!sov::frames::parse_record(rec, env)) {
                std::string line;
                sov::frame_json::append_line(env, false, line);
                put(out / "frame_json", id, sov::as_bytes(line));
            }
            sov::msg::Message msg;
            if (sov::msg::parse(m, msg) || msg.blocks.empty()) continue;
            put(out / "car", id, msg.blocks);
            sov::car::Reader r;
            if (r.open(msg.blocks)) continue;
            sov::car::Section s;
            int k = 0;
            while (r.next(s) && k < 3) {
                put(out / "cbor", id + "_" + std::to_string(k), s.block);
                if (k > 0) put(out / "mst_node", id + "_" + std::to_string(k), s.block);  // after the commit: MST nodes
                put(out / "cid", id + "_" + std::to_string(k), s.cid);
                ++k;
            }
        }
    }
    // DID cache files (made here, not from the corpus): a plc, a web, a tombstoned and a
    // keyless DID with shared PDS strings, as written by Writer.
    {
        namespace dc = sov::didcache;
        const std::string path = (out / "did_cache.tmp").string();
        fs::remove(path);
        {
            dc::Writer w;
            if (dc::Writer::open(path, w, err, 1) == sov::Errc::ok) {
                std::array<std::uint8_t, 32> seed{};
                const auto k1 = *sov::crypto::public_key_of(sov::crypto::generate_from_seed(sov::crypto::Curve::k256, seed));
                const auto k2 = *sov::crypto::public_key_of(sov::crypto::generate_from_seed(sov::crypto::Curve::p256, seed));
                dc::Record r;
                r.did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
                r.handle = "atproto.com";
                r.pds = "https://pds.example";
                r.history = {{1682000000000000, k1}, {1690000000000000, k2}};
                (void)w.put(r, err);
                r.did = "did:web:example.com";
                r.history = {{1682000000000000, k2}};
                (void)w.put(r, err);
                r.did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
                r.tombstoned = true;
                r.history = {{1682000000000000, k1}, {1690000000000000, std::nullopt}};
                (void)w.put(r, err);
                r.did = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
                r.tombstoned = false;
                r.pds.clear();
                r.history.clear();
                (void)w.put(r, err);
                (void)w.sync(1, err);
            }
        }
        std::vector<std::uint8_t> bytes;
        if (sov::file::read_file(path, bytes, err) == sov::Errc::ok) put(out / "did_cache_file", "four_dids", bytes);
        fs::remove(path);
    }
    std::ofstream(argv[3]) << "seeds\n";
    return 0;
}
