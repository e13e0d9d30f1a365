// Routing frames into JetStream (sovereign/nats/route.h).
#include "sovereign/nats/route.h"

#include "sovereign/cid.h"
#include "sovereign/crypto.h"
#include "sovereign/ghost.h"
#include "sovereign/cvl.h"

#include <cstdio>

namespace sov::nats {

std::uint64_t hash64(std::string_view bytes) {
    const auto d = crypto::sha256(as_bytes(bytes));
    std::uint64_t h = 0;
    for (int i = 0; i < 8; ++i) h = (h << 8) | d[std::size_t(i)];
    return h;
}

std::uint32_t partition_of(std::string_view did, std::uint32_t n) {
    return n <= 1 ? 0 : std::uint32_t(hash64(did) % n);
}

Route route_of(const frames::Envelope& env, std::uint32_t n) {
    Route r;
    if (!env.is_marker()) {
        ghost::Key k;
        std::string why;
        if (ghost::key_of(env.wire, k, why) == Errc::ok && !k.type.empty()) {
            r.has_key = true;
            r.partition = partition_of(k.did, n);
            r.match_key.reserve(96);
            r.match_key.append(k.type).append(" ").append(k.did).append(" ");
            if (!k.commit.empty()) r.match_key += cid::to_string(k.commit);
            else {
                r.match_key.append(k.time);
                if (k.type == "account") r.match_key.append(k.active ? " true " : " false ").append(k.status);
            }
        } else {
            r.partition = partition_of(env.src, n);
        }
        r.seq = cvl::seq_of_wire(env.wire).value_or(-1);
    } else {
        r.partition = partition_of(env.src, n);
    }
    return r;
}

std::string subject_for(std::string_view tmpl, const Route& r, std::string_view src) {
    std::string out;
    out.reserve(tmpl.size() + 16);
    for (std::size_t i = 0; i < tmpl.size();) {
        if (tmpl.substr(i, 4) == "{pp}") {
            char b[16];
            std::snprintf(b, sizeof b, "%02u", r.partition);
            out += b;
            i += 4;
        } else if (tmpl.substr(i, 5) == "{src}") {
            for (char c : src) out.push_back(c == '.' || c == '*' || c == '>' || c == ' ' || c == '\t' ? '_' : c);
            i += 5;
        } else {
            out.push_back(tmpl[i++]);
        }
    }
    return out;
}

std::string msg_id_for(std::string_view mode, const Route& r, std::string_view src) {
    if (mode == "match-key") return r.match_key;
    if (mode == "src-seq" && r.seq >= 0) return std::string(src) + " " + std::to_string(r.seq);
    return {};
}

std::string msg_id_for(std::string_view mode, const Route& r, const frames::Envelope& env) {
    if ((mode == "match-key" && r.match_key.empty()) || (mode == "src-seq" && env.is_marker())) {
        char b[32];
        std::snprintf(b, sizeof b, "frame %016llx",
                      static_cast<unsigned long long>(hash64(std::string_view(reinterpret_cast<const char*>(env.raw.data()),
                                                                              env.raw.size()))));
        return b;
    }
    return msg_id_for(mode, r, env.src);
}

bool subject_matches(std::string_view filter, std::string_view subject) {
    // Token by token; both empty at the same time is a match.
    for (;;) {
        const std::size_t fd = filter.find('.'), sd = subject.find('.');
        const std::string_view ft = filter.substr(0, fd), st = subject.substr(0, sd);
        if (ft == ">" && fd == std::string_view::npos) return !subject.empty();
        if (ft != "*" && ft != st) return false;
        if (fd == std::string_view::npos || sd == std::string_view::npos) return fd == sd;
        filter.remove_prefix(fd + 1);
        subject.remove_prefix(sd + 1);
    }
}

std::uint32_t rendezvous_owner(std::string_view host, std::uint32_t n) {
    std::uint32_t best = 1;
    std::uint64_t best_w = 0;
    std::string buf;
    for (std::uint32_t k = 1; k <= n; ++k) {
        buf.assign(host).append("\n").append(std::to_string(k));
        const std::uint64_t w = hash64(buf);
        if (k == 1 || w > best_w) best = k, best_w = w;
    }
    return best;
}

}  // namespace sov::nats
