// The PLC mirror directory (sovereign/plc_mirror.h; docs/format-plc-mirror.md): an export made
// of the corpus audit logs gives the same per-DID state and the same rejections as plc::Log,
// duplicates (sequenced and legacy boundary) are skipped, bad lines are rejected without
// stopping, chunks are sealed at ops_per_chunk, an interrupted page at any step is redone to
// the same bytes, and damaged files are reported with their location.
#include <nlohmann/json.hpp>
#include <zstd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <unistd.h>

#include "sovereign/plc.h"
#include "sovereign/plc_mirror.h"
#include "test_util.h"

using sov::Errc;
using namespace sov::plc;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

std::string slurp(const fs::path& p) {
    auto b = testutil::read_file(p);
    return {b.begin(), b.end()};
}

void spit(const fs::path& p, std::string_view s) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(s.data(), std::streamsize(s.size()));
}

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/sov_mirror_XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string sub(const std::string& name) const { return (path / name).string(); }
};

// Every entry of every corpus audit log as one export line, in createdAt order (stable), in
// the sequenced form (seq 1, 2, …) or the legacy form (with nullified:false). Empty without corpus.
std::vector<std::string> corpus_export(bool sequenced) {
    std::vector<std::string> out;
    auto dir = testutil::corpus();
    if (!dir) {
        WARN("corpus absent: skipping");
        return out;
    }
    std::vector<std::pair<std::string, ojson>> entries;  // createdAt, entry
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(*dir / "plc"))
        if (e.path().filename().string().starts_with("log_")) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files)
        for (auto& en : ojson::parse(slurp(f))) entries.emplace_back(en["createdAt"].get<std::string>(), en);
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::uint64_t seq = 0;
    for (auto& [t, en] : entries) {
        ojson line;
        if (sequenced) line["type"] = "sequenced_op";
        line["did"] = en["did"];
        line["operation"] = en["operation"];
        line["cid"] = en["cid"];
        if (!sequenced) line["nullified"] = false;
        line["createdAt"] = en["createdAt"];
        if (sequenced) line["seq"] = ++seq;
        out.push_back(line.dump());
    }
    return out;
}

std::string join(const std::vector<std::string>& lines, std::size_t from, std::size_t to) {
    std::string s;
    for (std::size_t i = from; i < to && i < lines.size(); ++i) s += lines[i] + "\n";
    return s;
}

// What plc::Log says about every DID of `lines` (rejected ops skipped), and the error of
// every rejected op by CID.
struct Expected {
    std::map<std::string, sov::didcache::Record> records;
    std::map<std::string, Errc> rejected;
};

Expected expected_of(const std::vector<std::string>& lines) {
    Expected ex;
    std::map<std::string, Log> logs;
    for (const auto& text : lines) {
        ExportLine l;
        Problem why;
        REQUIRE(parse_export_line(text, l, why) == Errc::ok);
        Log& log = logs.try_emplace(l.did, l.did).first->second;
        if (Errc e = log.apply(l, why); e != Errc::ok) ex.rejected[l.cid] = e;
    }
    for (const auto& [did, log] : logs) {
        if (log.entries().empty()) continue;
        const State st = log.state();
        sov::didcache::Record r;
        r.did = did;
        r.tombstoned = st.tombstoned;
        r.pds = st.pds;
        r.handle = st.handle;
        for (const auto& k : st.key_history) r.history.push_back({k.valid_from_us, k.key});
        ex.records[did] = r;
    }
    return ex;
}

std::map<std::string, std::string> rejected_errors(const std::string& dir) {
    std::map<std::string, std::string> out;
    std::ifstream f(dir + "/rejected.jsonl");
    std::string line;
    while (std::getline(f, line)) {
        auto j = nlohmann::json::parse(line);
        out[j.value("cid", j["line"].get<std::string>())] = std::to_string(j["code"].get<int>());
    }
    return out;
}

// Decompressed content of every chunk, in order.
std::string export_text(const std::string& dir) {
    std::vector<fs::path> chunks;
    for (const auto& e : fs::directory_iterator(dir + "/export")) chunks.push_back(e.path());
    std::sort(chunks.begin(), chunks.end());
    std::string out;
    for (const auto& c : chunks) {
        const std::string z = slurp(c);
        ZSTD_DCtx* d = ZSTD_createDCtx();
        ZSTD_inBuffer in{z.data(), z.size(), 0};
        std::vector<char> buf(1 << 16);
        while (in.pos < in.size) {
            ZSTD_outBuffer o{buf.data(), buf.size(), 0};
            const std::size_t r = ZSTD_decompressStream(d, &o, &in);
            REQUIRE(!ZSTD_isError(r));
            out.append(buf.data(), o.pos);
        }
        ZSTD_freeDCtx(d);
    }
    return out;
}

std::size_t frames_in(const std::string& path) {
    const std::string z = slurp(path);
    std::size_t n = 0, at = 0;
    while (at < z.size()) {
        const std::size_t len = ZSTD_findFrameCompressedSize(z.data() + at, z.size() - at);
        REQUIRE(!ZSTD_isError(len));
        at += len;
        ++n;
    }
    return n;
}

void ingest_all(Mirror& m, const std::vector<std::string>& lines, std::size_t page, std::size_t from = 0) {
    for (std::size_t i = from; i < lines.size(); i += page) {
        PageStats st;
        std::string err;
        const Errc e = m.ingest_page(join(lines, i, i + page), st, err);
        INFO(err);
        REQUIRE(e == Errc::ok);
    }
}

// Every file of a mirror but the cache, by relative path.
std::map<std::string, std::string> files_of(const std::string& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        const std::string rel = fs::relative(e.path(), dir).string();
        if (rel == "did.cache" || rel == "lock") continue;
        out[rel] = slurp(e.path());
    }
    return out;
}

}  // namespace

TEST_CASE("plc_mirror: the corpus logs as one export give plc::Log's states and rejections", "[plc_mirror]") {
    for (bool sequenced : {true, false}) {
        const auto lines = corpus_export(sequenced);
        if (lines.empty()) return;
        TempDir t;
        const std::string dir = t.sub("m");
        const Expected ex = expected_of(lines);
        REQUIRE(!ex.rejected.empty());
        {
            Mirror m;
            std::string err;
            REQUIRE(Mirror::open(dir, m, err) == Errc::ok);
            ingest_all(m, lines, 3);
            CHECK(m.cursor().lines == lines.size());
            CHECK(m.totals().accepted + m.totals().rejected == lines.size());
            CHECK(m.totals().rejected == ex.rejected.size());
            CHECK(m.dids() == ex.records.size());
            for (const auto& [did, r] : ex.records) {
                auto got = m.record(did);
                REQUIRE(got.has_value());
                CHECK(*got == r);
            }
            REQUIRE(m.close(err) == Errc::ok);
        }
        const auto rej = rejected_errors(dir);
        REQUIRE(rej.size() == ex.rejected.size());
        for (const auto& [cid, e] : ex.rejected) CHECK(rej.at(cid) == std::to_string(int(e)));
        CHECK(export_text(dir) == join(lines, 0, lines.size()));
        // Reopened: the op store gives the same states; the cache agrees.
        Mirror m;
        std::string err;
        REQUIRE(Mirror::open(dir, m, err) == Errc::ok);
        CHECK(m.totals().accepted + m.totals().rejected == lines.size());
        sov::didcache::Reader reader;
        REQUIRE(sov::didcache::Reader::open(dir + "/did.cache", reader, err) == Errc::ok);
        CHECK(reader.applied() == lines.size());
        for (const auto& [did, r] : ex.records) {
            CHECK(*m.record(did) == r);
            auto c = reader.get(did);
            REQUIRE(c.has_value());
            CHECK(*c == r);
        }
    }
}

TEST_CASE("plc_mirror: duplicates of sequenced pages are skipped, not appended", "[plc_mirror]") {
    const auto lines = corpus_export(true);
    if (lines.empty()) return;
    TempDir t;
    Mirror m;
    std::string err;
    REQUIRE(Mirror::open(t.sub("m"), m, err) == Errc::ok);
    PageStats st;
    REQUIRE(m.ingest_page(join(lines, 0, 10), st, err) == Errc::ok);
    CHECK(st.lines == 10);
    CHECK(st.duplicates == 0);
    CHECK(m.cursor().seq == 10);
    REQUIRE(m.ingest_page(join(lines, 0, 10), st, err) == Errc::ok);
    CHECK(st.lines == 0);
    CHECK(st.duplicates == 10);
    REQUIRE(m.ingest_page(join(lines, 7, 15), st, err) == Errc::ok);  // overlapping page
    CHECK(st.lines == 5);
    CHECK(st.duplicates == 3);
    CHECK(m.cursor().lines == 15);
    CHECK(export_text(t.sub("m")) == join(lines, 0, 15));
}

TEST_CASE("plc_mirror: legacy paging dedupes the refetched boundary millisecond by CID", "[plc_mirror]") {
    auto lines = corpus_export(false);
    if (lines.empty()) return;
    // Distinct times (createdAt is not signed), but lines 3..6 share one: the boundary of a
    // page that ends at line 4 is refetched from line 3 by the next page.
    const std::string t0 = "2024-01-01T00:00:03.000Z";
    for (std::size_t i = 0; i < lines.size(); ++i) {
        auto j = ojson::parse(lines[i]);
        char buf[64];
        std::snprintf(buf, sizeof buf, "2024-01-01T00:%02zu:%02zu.000Z", (i >= 3 && i <= 6 ? 3 : i) / 60, (i >= 3 && i <= 6 ? 3 : i) % 60);
        j["createdAt"] = buf;
        lines[i] = j.dump();
    }
    TempDir t;
    Mirror m;
    std::string err;
    REQUIRE(Mirror::open(t.sub("m"), m, err) == Errc::ok);
    PageStats st;
    REQUIRE(m.ingest_page(join(lines, 0, 5), st, err) == Errc::ok);
    CHECK(m.cursor().created_at == t0);
    CHECK(m.cursor().boundary_cids.size() == 2);
    // The server answers createdAt >= t0 again: lines 3, 4 are duplicates, 5, 6 new.
    REQUIRE(m.ingest_page(join(lines, 3, 9), st, err) == Errc::ok);
    CHECK(st.duplicates == 2);
    CHECK(st.lines == 4);
    CHECK(m.cursor().lines == 9);
    // Strictly older lines are duplicates whatever their CID.
    REQUIRE(m.ingest_page(join(lines, 0, 3), st, err) == Errc::ok);
    CHECK(st.duplicates == 3);
    CHECK(export_text(t.sub("m")) == join(lines, 0, 9));
}

TEST_CASE("plc_mirror: lines that are not export lines are rejected and kept; the sync goes on", "[plc_mirror]") {
    const auto lines = corpus_export(true);
    if (lines.empty()) return;
    TempDir t;
    Mirror m;
    std::string err;
    REQUIRE(Mirror::open(t.sub("m"), m, err) == Errc::ok);
    const std::string body = lines[0] + "\nnot json\n{\"type\":\"sequenced_op\"}\n\xff\xfe\n" + lines[1] + "\r\n\n" + lines[2];
    const std::size_t bad_ops = expected_of({lines[0], lines[1], lines[2]}).rejected.size();
    PageStats st;
    REQUIRE(m.ingest_page(body, st, err) == Errc::ok);
    CHECK(st.lines == 6);
    CHECK(st.rejected == 3 + bad_ops);
    CHECK(st.accepted == 3 - bad_ops);
    CHECK(m.cursor().seq == 3);
    CHECK(export_text(t.sub("m")) == lines[0] + "\nnot json\n{\"type\":\"sequenced_op\"}\n\xff\xfe\n" + lines[1] + "\r\n" + lines[2] + "\n");
    std::ifstream f(t.sub("m") + "/rejected.jsonl");
    std::vector<nlohmann::json> rej;
    for (std::string l; std::getline(f, l);) rej.push_back(nlohmann::json::parse(l));
    REQUIRE(rej.size() == 3 + bad_ops);
    if (bad_ops) return;
    CHECK(rej[0]["line"] == "not json");
    CHECK(rej[0]["error"] == "json_parse");
    CHECK(rej[0]["code"] == int(Errc::json_parse));
    CHECK(rej[0]["index"] == 1);
    CHECK(rej[1]["error"] == "plc_malformed");
    CHECK(rej[2]["index"] == 3);
}

TEST_CASE("plc_mirror: chunks hold ops_per_chunk lines, full ones sealed as one frame", "[plc_mirror]") {
    const auto lines = corpus_export(true);
    if (lines.size() < 20) return;
    TempDir t;
    const std::string dir = t.sub("m");
    MirrorOptions o;
    o.ops_per_chunk = 7;
    {
        Mirror m;
        std::string err;
        REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
        ingest_all(m, lines, 3);
    }
    const std::size_t n = lines.size(), full = n / 7;
    for (std::size_t k = 0; k <= full; ++k) {
        const std::string p = dir + "/export/" + chunk_name(k);
        if (k == full && n % 7 == 0) {
            CHECK(!fs::exists(p));
            continue;
        }
        REQUIRE(fs::exists(p));
        if (k < full) CHECK(frames_in(p) == 1);
        else CHECK(frames_in(p) >= 1);
    }
    CHECK(!fs::exists(dir + "/export/" + chunk_name(full + 1)));
    CHECK(export_text(dir) == join(lines, 0, n));
    // A later open with another ops_per_chunk keeps the mirror's.
    Mirror m;
    std::string err;
    o.ops_per_chunk = 1000;
    REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
    PageStats st;
    REQUIRE(m.ingest_page(lines.back(), st, err) == Errc::ok);
    CHECK(st.duplicates == 1);
}

TEST_CASE("plc_mirror: an interrupted page at any step is redone to the same bytes", "[plc_mirror]") {
    const auto lines = corpus_export(true);
    if (lines.empty()) return;
    TempDir t;
    MirrorOptions o;
    o.ops_per_chunk = 5;
    const std::size_t page = 4;
    const std::string ref = t.sub("ref");
    {
        Mirror m;
        std::string err;
        REQUIRE(Mirror::open(ref, m, err, o) == Errc::ok);
        ingest_all(m, lines, page);
    }
    const auto want = files_of(ref);
    Mirror refm;
    std::string err;
    REQUIRE(Mirror::open(ref, refm, err, o) == Errc::ok);

    // Stop after page 2, then let page 3's files reach the disk without its cursor.json
    // (the snapshot of the cursor after page 2 put back), in every combination of files.
    const std::vector<std::string> append_only = {"ops.bin", "rejected.jsonl", "export"};
    for (int mask = 0; mask < 16; ++mask) {
        DYNAMIC_SECTION("mask " << mask) {
            const std::string dir = t.sub("m" + std::to_string(mask));
            {
                Mirror m;
                REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
                ingest_all(m, std::vector<std::string>(lines.begin(), lines.begin() + 2 * page), page);
            }
            const std::string cursor = slurp(dir + "/cursor.json");
            const auto before = files_of(dir);
            {
                Mirror m;
                REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
                PageStats st;
                REQUIRE(m.ingest_page(join(lines, 2 * page, 3 * page), st, err) == Errc::ok);
            }
            // Undo part of page 3: the cursor, and the files not in `mask`. The export as it
            // was before the commit (and so before any seal): each chunk's old bytes plus the
            // page's frame for its lines, as ingest_page appends them.
            spit(dir + "/cursor.json", cursor);
            for (std::size_t b = 0; b < 3; ++b)
                for (const auto& [rel, bytes] : before)
                    if (rel.starts_with(append_only[b]) && (b == 2 || !(mask & (1 << b)))) spit(dir + "/" + rel, bytes);
            fs::remove(dir + "/export/" + chunk_name(3 * page / o.ops_per_chunk));
            if (mask & 4) {
                std::map<std::uint64_t, std::string> text;
                for (std::size_t i = 2 * page; i < 3 * page; ++i) text[i / o.ops_per_chunk] += lines[i] + "\n";
                for (const auto& [k, s] : text) {
                    std::string frame(ZSTD_compressBound(s.size()), '\0');
                    frame.resize(ZSTD_compress(frame.data(), frame.size(), s.data(), s.size(), 3));
                    std::ofstream(dir + "/export/" + chunk_name(k), std::ios::binary | std::ios::app) << frame;
                }
            }
            if (mask & 8) {  // and a cache left dirty or stale
                std::ofstream(dir + "/did.cache", std::ios::app) << "";
                fs::resize_file(dir + "/did.cache", 100);
            }
            Mirror m;
            REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
            CHECK(m.cursor().lines == 2 * page);
            ingest_all(m, lines, page, 2 * page);
            REQUIRE(m.close(err) == Errc::ok);
            CHECK(files_of(dir) == want);
            Mirror again;
            REQUIRE(Mirror::open(dir, again, err, o) == Errc::ok);
            sov::didcache::Reader reader;
            REQUIRE(sov::didcache::Reader::open(dir + "/did.cache", reader, err) == Errc::ok);
            std::uint64_t n = 0;
            REQUIRE(reader.for_each([&](const sov::didcache::Record& r) {
                ++n;
                CHECK(refm.record(r.did) == std::optional(r));
            }, err) == Errc::ok);
            CHECK(n == refm.dids());
        }
    }
}

TEST_CASE("plc_mirror: an interrupted seal is finished at open", "[plc_mirror]") {
    const auto lines = corpus_export(true);
    if (lines.size() < 12) return;
    TempDir t;
    MirrorOptions o;
    o.ops_per_chunk = 5;
    const std::string dir = t.sub("m");
    std::string err, cursor_before_seal;
    {
        Mirror m;
        REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
        PageStats st;
        REQUIRE(m.ingest_page(join(lines, 0, 3), st, err) == Errc::ok);
        REQUIRE(m.ingest_page(join(lines, 3, 4), st, err) == Errc::ok);
    }
    const std::string unsealed = slurp(dir + "/export/" + chunk_name(0));
    {
        Mirror m;
        REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
        PageStats st;
        REQUIRE(m.ingest_page(join(lines, 4, 8), st, err) == Errc::ok);  // fills chunk 0
    }
    REQUIRE(frames_in(dir + "/export/" + chunk_name(0)) == 1);
    // Put back the multi-frame chunk 0 and a cursor that has not recorded the seal.
    auto j = nlohmann::ordered_json::parse(slurp(dir + "/cursor.json"));
    j["sealed_chunks"] = 0;
    spit(dir + "/cursor.json", j.dump());
    std::string appended = unsealed;
    {  // chunk 0 as it was before the seal: page frames for lines 0..3, then line 4's frame
        std::string frame(ZSTD_compressBound(lines[4].size() + 1), '\0');
        const std::string l4 = lines[4] + "\n";
        frame.resize(ZSTD_compress(frame.data(), frame.size(), l4.data(), l4.size(), 3));
        appended += frame;
    }
    spit(dir + "/export/" + chunk_name(0), appended);
    REQUIRE(frames_in(dir + "/export/" + chunk_name(0)) == 3);
    Mirror m;
    REQUIRE(Mirror::open(dir, m, err, o) == Errc::ok);
    CHECK(frames_in(dir + "/export/" + chunk_name(0)) == 1);
    CHECK(export_text(dir) == join(lines, 0, 8));
}

TEST_CASE("plc_mirror: damaged files are mirror_corrupt with file and offset; a second opener is locked out", "[plc_mirror]") {
    const auto lines = corpus_export(true);
    if (lines.empty()) return;
    TempDir t;
    const std::string dir = t.sub("m");
    std::string err;
    {
        Mirror m;
        REQUIRE(Mirror::open(dir, m, err) == Errc::ok);
        ingest_all(m, lines, 10);
        Mirror second;
        CHECK(Mirror::open(dir, second, err) == Errc::mirror_locked);
        CHECK(err.find("lock") != std::string::npos);
    }
    const std::string ops = slurp(dir + "/ops.bin");
    std::uint64_t n = 0, dids = 0;
    REQUIRE(check_op_store(sov::ByteView(reinterpret_cast<const std::uint8_t*>(ops.data()), ops.size()), "ops.bin", n, dids, err) == Errc::ok);
    CHECK(n > 0);

    SECTION("a flipped byte in an op record") {
        std::string bad = ops;
        bad[bad.size() - 5] ^= 0x20;
        spit(dir + "/ops.bin", bad);
        Mirror m;
        CHECK(Mirror::open(dir, m, err) == Errc::mirror_corrupt);
        CHECK(err.find("ops.bin: offset ") != std::string::npos);
        CHECK(err.find("checksum") != std::string::npos);
    }
    SECTION("an op store shorter than committed") {
        spit(dir + "/ops.bin", ops.substr(0, ops.size() - 1));
        Mirror m;
        CHECK(Mirror::open(dir, m, err) == Errc::mirror_corrupt);
        CHECK(err.find("ops.bin: offset " + std::to_string(ops.size() - 1)) != std::string::npos);
    }
    SECTION("a missing export chunk, a truncated rejected.jsonl, a bad cursor.json") {
        SECTION("chunk") { fs::resize_file(dir + "/export/" + chunk_name(0), 3); }
        SECTION("rejected") { fs::resize_file(dir + "/rejected.jsonl", 3); }
        SECTION("cursor") { spit(dir + "/cursor.json", "{\"version\":1}"); }
        Mirror m;
        CHECK(Mirror::open(dir, m, err) == Errc::mirror_corrupt);
        CHECK(!err.empty());
    }
}
