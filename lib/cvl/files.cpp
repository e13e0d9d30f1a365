// Paths, cvl.json and the writer lock of a CVL archive (docs/format-cvl.md §1, §2).
#include "internal/cvl/common.h"
#include "internal/cvl/index.h"

#include "sovereign/file.h"
#include "sovereign/syntax.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <set>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sov::cvl::detail {

namespace fs = std::filesystem;

std::string seg_name(std::uint64_t n) {
    char b[32];
    std::snprintf(b, sizeof b, "%08llu", (unsigned long long)n);
    return b;
}
std::string idx_path(const std::string& dir, std::uint64_t n) { return dir + "/seg/" + seg_name(n) + ".idx"; }
std::string dat_path(const std::string& dir, unsigned shard, std::uint64_t n, std::uint32_t gen) {
    char b[64];
    std::snprintf(b, sizeof b, "/shard/%02u/%08llu-%u.dat", shard, (unsigned long long)n, gen);
    return dir + b;
}
std::string shard_dir(const std::string& dir, unsigned shard) {
    char b[32];
    std::snprintf(b, sizeof b, "/shard/%02u", shard);
    return dir + b;
}
std::string dict_path(const std::string& dir, std::uint32_t id) {
    char b[32];
    std::snprintf(b, sizeof b, "/dict/%08u.zdict", id);
    return dir + b;
}
std::string journal_name(std::uint64_t first) {
    char b[40];
    std::snprintf(b, sizeof b, "%016llx.frames", (unsigned long long)first);
    return b;
}

std::vector<std::uint64_t> list_segments(const std::string& dir) {
    std::vector<std::uint64_t> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir + "/seg", ec)) {
        std::string name = e.path().filename().string();
        if (name.size() == 12 && name.ends_with(".idx") && std::all_of(name.begin(), name.begin() + 8, ::isdigit))
            out.push_back(std::stoull(name.substr(0, 8)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

Errc sys_error(const std::string& what, std::string& err) {
    const int e = errno;
    err = what + ": " + std::strerror(e);
    Errc c = from_errno(e);
    return c == Errc::ok ? Errc::io_error : c;
}

Errc Config::load(const std::string& dir, std::string& err) {
    const std::string path = dir + "/cvl.json";
    std::vector<std::uint8_t> b;
    if (Errc e = file::read_file(path, b, err); e != Errc::ok) {
        // A directory without cvl.json is not an archive; a missing directory is missing.
        struct stat st {};
        if (e == Errc::io_not_found && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Errc::cvl_not_archive;
        return e;
    }
    auto j = nlohmann::json::parse(b.begin(), b.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("format") || !j["format"].is_string() || j["format"] != "cvl") {
        err = path + ": not a CVL archive description";
        return Errc::cvl_bad_config;
    }
    if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<std::int64_t>() < 1 ||
        j["version"].get<std::int64_t>() > kArchiveVersion) {
        err = path + ": unsupported archive version " + (j.contains("version") ? j["version"].dump() : std::string("(none)"));
        return Errc::cvl_bad_version;
    }
    version = j["version"].get<int>();
    // Every value: an unsigned integer in its range (a wrong type is damage, not a crash).
    auto uint_of = [&](const char* key, std::uint64_t def, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) {
        if (!j.contains(key)) {
            out = def;
            return true;
        }
        const auto& v = j[key];
        if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
            err = path + ": \"" + key + "\" is not a non-negative integer";
            return false;
        }
        out = v.get<std::uint64_t>();
        if (out < lo || out > hi) {
            err = path + ": \"" + key + "\" = " + std::to_string(out) + " is outside " + std::to_string(lo) + ".." +
                  std::to_string(hi);
            return false;
        }
        return true;
    };
    std::uint64_t shards, seg_msgs, seg_bytes, cluster, retrain, dict;
    if (!uint_of("shards", 16, 1, 99, shards) || !uint_of("segment_messages", 65536, 1, UINT32_MAX, seg_msgs) ||
        !uint_of("segment_bytes", 64ull << 20, 1, UINT64_MAX, seg_bytes) ||
        !uint_of("cluster_bytes", 256u << 10, 1, UINT32_MAX, cluster) || !uint_of("retrain_every", 8, 0, UINT32_MAX, retrain) ||
        !uint_of("dict_bytes", 112640, 0, UINT32_MAX, dict))
        return Errc::cvl_bad_config;
    if (j.contains("level") && !j["level"].is_number_integer()) {
        err = path + ": \"level\" is not an integer";
        return Errc::cvl_bad_config;
    }
    params.shards = unsigned(shards);
    params.level = j.value("level", 3);
    params.segment_messages = std::uint32_t(seg_msgs);
    params.segment_bytes = seg_bytes;
    params.cluster_bytes = std::uint32_t(cluster);
    params.retrain_every = unsigned(retrain);
    params.dict_bytes = std::uint32_t(dict);
    return Errc::ok;
}

Errc Config::create(const std::string& dir, const Params& p, std::string& err) {
    nlohmann::json j{{"format", "cvl"},
                     {"version", kArchiveVersion},
                     {"shards", p.shards},
                     {"level", p.level},
                     {"segment_messages", p.segment_messages},
                     {"segment_bytes", p.segment_bytes},
                     {"cluster_bytes", p.cluster_bytes},
                     {"retrain_every", p.retrain_every},
                     {"dict_bytes", p.dict_bytes},
                     {"created", syntax::format_datetime_micros(std::chrono::duration_cast<std::chrono::microseconds>(
                                                                    std::chrono::system_clock::now().time_since_epoch())
                                                                    .count())}};
    std::vector<std::string> dirs{dir + "/dict", dir + "/seg", dir + "/journal", dir + "/tomb", dir + "/shard"};
    for (unsigned k = 0; k < p.shards; ++k) dirs.push_back(shard_dir(dir, k));
    for (auto& d : dirs)
        if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return sys_error(d, err);
    std::string text = j.dump(2) + "\n";
    return file::atomic_replace(dir + "/cvl.json", as_bytes(text), err);
}

int take_lock(const std::string& dir, Errc& code, std::string& err) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        code = sys_error(dir, err);
        return -1;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            err = dir + ": another cvl-pack is writing this archive (it holds the lock on the archive directory)";
            code = Errc::cvl_locked;
        } else {
            code = sys_error(dir + ": cannot lock the archive directory", err);
        }
        ::close(fd);
        return -1;
    }
    code = Errc::ok;
    return fd;
}

std::vector<MissingSegment> missing_segments(const std::string& dir, const std::vector<std::uint64_t>& numbers,
                                             std::optional<std::uint64_t> last, std::uint64_t sealed_end) {
    std::vector<MissingSegment> out;
    // Gaps: every number below the highest index present existed.
    std::uint64_t expect = 0;
    for (std::uint64_t n : numbers) {
        for (std::uint64_t k = expect; k < n && out.size() < 100; ++k)
            out.push_back({k, idx_path(dir, k) + ": missing (segment " + std::to_string(n) + " follows it)"});
        expect = n + 1;
    }
    if (!numbers.empty() && (!last || *last != numbers.back())) return out;  // the last index is unreadable: reported by its reader
    const std::uint64_t next = last ? *last + 1 : 0;
    const std::size_t gaps = out.size();
    // The journal starts at the first ordinal not sealed (it is rotated only after a seal is
    // durable): a first ordinal past the sealed end means sealed segments are gone.
    std::uint64_t jfirst = UINT64_MAX;
    std::string jname;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir + "/journal", ec)) {
        std::string name = e.path().filename().string();
        if (name.size() == 23 && name.ends_with(".frames") &&
            std::all_of(name.begin(), name.begin() + 16, [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
            std::uint64_t f = std::stoull(name.substr(0, 16), nullptr, 16);
            if (f < jfirst) {
                jfirst = f;
                jname = e.path().string();
            }
        }
    }
    if (jfirst != UINT64_MAX && jfirst > sealed_end)
        out.push_back({next, idx_path(dir, next) + ": missing: the journal " + jname + " starts at ordinal " +
                                 std::to_string(jfirst) + " but the sealed segments end at ordinal " +
                                 std::to_string(sealed_end)});
    // Data files: a seal writes segment N + 1 only after N's index is renamed, so data of a
    // segment past next (next itself may be an interrupted seal) means next's index existed.
    std::uint64_t max_data = 0;
    std::string data_name;
    for (auto& sd : fs::directory_iterator(dir + "/shard", ec)) {
        std::error_code ec2;
        for (auto& e : fs::directory_iterator(sd.path(), ec2)) {
            std::string name = e.path().filename().string();
            if (name.size() < 14 || !name.ends_with(".dat") || name[8] != '-' ||
                !std::all_of(name.begin(), name.begin() + 8, ::isdigit))
                continue;
            std::uint64_t n = std::stoull(name.substr(0, 8));
            if (n > next && n >= max_data) {
                max_data = n;
                data_name = e.path().string();
            }
        }
    }
    if (!data_name.empty() && (jfirst == UINT64_MAX || jfirst <= sealed_end))
        out.push_back({next, idx_path(dir, next) + ": missing: data files of later segments exist (" + data_name + ")"});
    // A reader runs beside the writer: if a segment was sealed since `numbers` was listed,
    // the journal and data files looked at are its, not evidence of a loss.
    if (out.size() > gaps) {
        auto now = list_segments(dir);
        if (!now.empty() && (!last || now.back() > *last)) out.resize(gaps);
    }
    return out;
}

Errc sweep_generations(const std::string& dir, unsigned shards, std::uint64_t& removed, std::string& err) {
    removed = 0;
    struct DataFile {
        std::uint64_t segment;
        std::uint64_t generation;
        fs::path path;
    };
    std::vector<DataFile> files;
    std::map<std::uint64_t, std::set<std::uint64_t>> generations;  // segment → generations on disk
    for (unsigned k = 0; k < shards; ++k) {
        std::error_code ec;
        for (auto& ent : fs::directory_iterator(shard_dir(dir, k), ec)) {
            const std::string name = ent.path().filename().string();
            if (name.ends_with(".dat.tmp")) {
                if (::unlink(ent.path().c_str()) != 0 && errno != ENOENT) return sys_error(ent.path().string(), err);
                ++removed;
            } else if (name.size() > 13 && name.size() - 13 <= 10 && name.ends_with(".dat") && name[8] == '-' &&
                       std::all_of(name.begin(), name.begin() + 8, ::isdigit) &&
                       std::all_of(name.begin() + 9, name.end() - 4, ::isdigit)) {
                DataFile f{std::stoull(name.substr(0, 8)), std::stoull(name.substr(9, name.size() - 13)), ent.path()};
                generations[f.segment].insert(f.generation);
                files.push_back(std::move(f));
            }
        }
    }
    std::map<std::uint64_t, std::uint64_t> named;  // segment → generation its index names
    for (const auto& [segment, gens] : generations) {
        if (gens.size() < 2) continue;
        index::Header h{};
        std::string e;
        if (index::read_header(idx_path(dir, segment), h, e) == Errc::ok) named[segment] = h.generation.get();
    }
    for (const auto& f : files) {
        auto it = named.find(f.segment);
        if (it == named.end() || it->second == f.generation) continue;
        if (::unlink(f.path.c_str()) != 0 && errno != ENOENT) return sys_error(f.path.string(), err);
        ++removed;
    }
    return Errc::ok;
}

void remove_stale_temps(const std::string& dir) {
    std::vector<std::string> dirs{dir + "/seg", dir + "/dict", dir + "/journal"};
    std::error_code ec;
    for (auto& sd : fs::directory_iterator(dir + "/shard", ec)) dirs.push_back(sd.path().string());
    for (auto& d : dirs) {
        std::vector<std::string> stale;
        std::error_code ec2;
        for (auto& e : fs::directory_iterator(d, ec2))
            if (e.path().filename().string().ends_with(".tmp")) stale.push_back(e.path().string());
        for (auto& p : stale) ::unlink(p.c_str());
    }
}

}  // namespace sov::cvl::detail
