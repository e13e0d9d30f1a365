// Selection of messages (cvl-cat's filters, shared with a future cvl-serve): by ordinal range
// or list, receive time, DID and collection, with tombstones hiding messages. Ordinal lists
// are point reads (lazy, O(1) indexes each); DID selections read only the clusters of that
// DID's groups; everything else scans the segments that can match, in order.
#include "internal/cvl/reader.h"

#include "sovereign/frame_stream.h"
#include "sovereign/message.h"

#include <algorithm>

namespace sov::cvl {

namespace {

// The content filters (time, DID, collection) on one envelope.
bool content_matches(const Selection& sel, ByteView env, msg::Message& m) {
    if (sel.since == INT64_MIN && sel.until == INT64_MAX && sel.did.empty() && sel.collection.empty()) return true;
    frames::Envelope e;
    if (frames::parse_envelope(env, e)) return false;
    if (e.recv < sel.since || e.recv >= sel.until) return false;
    if (sel.did.empty() && sel.collection.empty()) return true;
    if (msg::parse(e.wire, m)) return false;
    if (!sel.did.empty() && m.did != sel.did) return false;
    if (!sel.collection.empty()) {
        for (auto& op : m.ops)
            if (op.path.substr(0, op.path.find('/')) == sel.collection) return true;
        return false;
    }
    return true;
}

}  // namespace

Errc select(Archive& ar, const Selection& sel, const std::function<bool(std::uint64_t, ByteView)>& f,
            const std::function<void(Errc, const std::string&)>& on_error, SelectStats& stats) {
    Errc first_error = Errc::ok;
    auto report = [&](Errc e, const std::string& text) {
        if (first_error == Errc::ok) first_error = e;
        if (on_error) on_error(e, text);
    };
    msg::Message m;
    bool stop = false;
    // Damaged clusters: reported with the ordinals the selection could have wanted (a range or
    // list that avoids them is served without error).
    auto wanted = [&](std::uint64_t o) {
        if (o < sel.from || o >= sel.to) return false;
        if (!sel.ordinals.empty() && !std::binary_search(sel.ordinals.begin(), sel.ordinals.end(), o)) return false;
        return sel.include_deleted || !ar.deleted(o);
    };
    DamageFn damage = [&](Errc e, const std::string& text, const std::vector<std::uint64_t>& ords) {
        std::vector<std::uint64_t> w;
        for (auto o : ords)
            if (wanted(o)) w.push_back(o);
        if (w.empty()) return;
        report(e, text + " (ordinals " + ordinal_ranges(w) + " not served)");
    };
    auto take = [&](std::uint64_t ord, ByteView env) -> bool {
        if (ord < sel.from || ord >= sel.to) return true;
        if (!sel.ordinals.empty() && !std::binary_search(sel.ordinals.begin(), sel.ordinals.end(), ord)) return true;
        if (!sel.include_deleted && ar.deleted(ord)) {
            ++stats.hidden;
            return true;
        }
        if (!content_matches(sel, env, m)) return true;
        ++stats.emitted;
        if (!f(ord, env)) stop = true;
        return !stop;
    };

    if (!sel.ordinals.empty() && sel.did.empty()) {
        // Point reads: no segment is loaded but the ones holding these ordinals.
        std::string err;
        for (std::uint64_t o : sel.ordinals) {
            if (stop) break;
            if (o < sel.from || o >= sel.to) continue;
            if (!sel.include_deleted && ar.deleted(o)) {
                ++stats.hidden;
                continue;
            }
            ByteView env;
            Errc e = ar.view(o, env, err);
            if (e == Errc::cvl_purged || e == Errc::cvl_no_ordinal) continue;  // gone, or never there
            if (e != Errc::ok) {
                report(e, err + " (ordinal " + std::to_string(o) + " not served)");
                continue;
            }
            if (!content_matches(sel, env, m)) continue;
            ++stats.emitted;
            if (!f(o, env)) stop = true;
        }
        return first_error;
    }

    const auto& segs = ar.segments();
    for (std::size_t s = 0; s < segs.size() && !stop; ++s) {
        const auto& si = segs[s];
        if (si.first + si.count <= sel.from || si.first >= sel.to) continue;
        if (si.recv_max < sel.since || si.recv_min >= sel.until) continue;
        if (!sel.ordinals.empty()) {
            auto it = std::lower_bound(sel.ordinals.begin(), sel.ordinals.end(), si.first);
            if (it == sel.ordinals.end() || *it >= si.first + si.count) continue;
        }
        std::string err;
        Errc e = Errc::ok;
        if (!sel.did.empty()) {
            // Only the clusters holding the DID's groups (then confirmed per message). A
            // damaged cluster is reported once, with its ordinals, and the others are served.
            std::string last_bad;
            std::vector<std::uint64_t> bad_ords;
            Errc bad_code = Errc::ok;
            auto flush_bad = [&] {
                if (!bad_ords.empty()) report(bad_code, last_bad + " (ordinals " + ordinal_ranges(bad_ords) + " not served)");
                bad_ords.clear();
                last_bad.clear();
            };
            for (auto o : ar.ordinals_of_did(s, sel.did)) {
                if (o < sel.from || o >= sel.to) continue;
                if (!sel.ordinals.empty() && !std::binary_search(sel.ordinals.begin(), sel.ordinals.end(), o)) continue;
                if (!sel.include_deleted && ar.deleted(o)) {
                    ++stats.hidden;
                    continue;
                }
                ByteView env;
                e = ar.view(o, env, err);
                if (e == Errc::cvl_purged) {
                    e = Errc::ok;
                    continue;
                }
                if (e != Errc::ok) {
                    if (err != last_bad) flush_bad();
                    last_bad = err;
                    bad_code = e;
                    bad_ords.push_back(o);
                    e = Errc::ok;
                    continue;
                }
                if (!content_matches(sel, env, m)) continue;
                ++stats.emitted;
                if (!f(o, env)) {
                    stop = true;
                    break;
                }
            }
            flush_bad();
        } else {
            e = ar.scan_segment(s, take, damage, err);
        }
        if (e != Errc::ok) report(e, err);  // this segment is unreadable; go on with the others
    }
    return first_error;
}

}  // namespace sov::cvl
