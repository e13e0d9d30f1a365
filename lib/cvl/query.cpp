// Selection of messages (cvl-cat's filters, shared with a future cvl-serve): by ordinal range
// or list, receive time, DID and collection, with tombstones hiding messages. Ordinal lists
// are point reads (lazy, O(1) indexes each); DID selections read only the clusters of that
// DID's groups; everything else scans the segments that can match, in order. Also the last
// seq of a source (cvl-cat --last-seq) or of every source (--last-seqs): the journal, then
// segments from the newest backwards.
#include "internal/cvl/journal.h"
#include "internal/cvl/reader.h"

#include "sovereign/cbor.h"
#include "sovereign/frame_stream.h"
#include "sovereign/message.h"

#include <algorithm>
#include <map>
#include <set>

namespace sov::cvl {

namespace {

// The content filters (time, DID, collection) on one envelope.
bool content_matches(const Selection& sel, ByteView env, msg::Message& m) {
    if (sel.since == INT64_MIN && sel.until == INT64_MAX && sel.did.empty() && sel.collection.empty()) return true;
    frames::Envelope e;
    if (frames::parse_envelope(env, e)) return false;
    if (e.recv < sel.since || e.recv >= sel.until) return false;
    if (sel.did.empty() && sel.collection.empty()) return true;
    // A marker has no DID and no collection: a DID or collection selection leaves it out (the
    // time selection keeps it, by its recv). docs/format-cvl.md §11.
    if (e.is_marker() || msg::parse(e.wire, m)) return false;
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

std::optional<std::int64_t> seq_of_wire(ByteView wire) noexcept {
    std::size_t hlen;
    if (wire.empty() || cbor::validate_prefix(wire, hlen) || hlen == wire.size()) return std::nullopt;
    const ByteView rest = wire.subspan(hlen);
    if (cbor::validate(rest)) return std::nullopt;
    const cbor::Value h = cbor::Value::of(wire.first(hlen)), p = cbor::Value::of(rest);
    if (!h.is(cbor::Kind::map) || !p.is(cbor::Kind::map)) return std::nullopt;
    const cbor::Value op = h.get("op"), t = h.get("t"), seq = p.get("seq");
    if (!op.is(cbor::Kind::uint) || op.as_int() != 1 || !t.is(cbor::Kind::text)) return std::nullopt;
    static constexpr std::string_view kWithSeq[] = {"#commit", "#identity", "#account", "#sync",
                                                    "#handle", "#migrate",  "#tombstone"};
    if (std::find(std::begin(kWithSeq), std::end(kWithSeq), t.as_text()) == std::end(kWithSeq)) return std::nullopt;
    if (!seq.is(cbor::Kind::uint) && !seq.is(cbor::Kind::nint)) return std::nullopt;
    return seq.as_int();
}

namespace {

// The messages with a seq, by `src`, from the newest part of the archive backwards: each
// journal (newest first), then each sealed segment from the newest. Per src, only the newest
// part holding one of its messages counts (the largest seq there). `wanted` (when not null)
// limits the srcs looked for; the walk stops after the first part at which every wanted src
// has been found (never, without `wanted`: every src may be in the oldest segment).
Errc last_seqs_walk(const std::string& dir, const std::set<std::string, std::less<>>* wanted,
                    std::map<std::string, LastSeq, std::less<>>& out, std::vector<std::string>& journal_damage,
                    std::string& err) {
    out.clear();
    journal_damage.clear();
    std::size_t part = 0;
    std::map<std::string, std::size_t, std::less<>> part_of;  // the part where each src was first found
    auto consider = [&](ByteView envelope, std::uint64_t ord, bool journal) {
        frames::Envelope e;
        if (frames::parse_envelope(envelope, e) || e.is_marker()) return;
        if (wanted && wanted->find(e.src) == wanted->end()) return;
        const std::optional<std::int64_t> seq = seq_of_wire(e.wire);
        if (!seq) return;
        auto it = out.find(e.src);
        if (it == out.end()) {
            out.emplace(std::string(e.src), LastSeq{*seq, ord, journal, {}});
            part_of.emplace(std::string(e.src), part);
        } else if (part_of.find(e.src)->second == part && *seq > it->second.seq) {
            it->second.seq = *seq;
            it->second.ordinal = ord;
        }
    };
    auto enough = [&] { return wanted && out.size() == wanted->size(); };
    // The journal first, and before the segments are listed: a seal that renames the journal
    // away while we look has put its frames in a segment the listing below will see. A journal
    // deleted between its listing and its reading (io_not_found) is looked for again.
    std::vector<detail::Journal::Contents> journals;
    for (int attempt = 0;; ++attempt) {
        const Errc e = detail::Journal::read_all(dir, journals, err);
        if (e == Errc::ok) break;
        if (e != Errc::io_not_found || attempt == 8) return e;
    }
    for (auto j = journals.rbegin(); j != journals.rend(); ++j) {
        for (const auto& d : j->damage) journal_damage.push_back(j->path + ":" + std::to_string(d.offset) + ": " + d.reason);
        if (enough()) continue;
        for (const auto& r : j->records) consider(r.env, r.ord, true);
        ++part;
    }
    if (enough()) return Errc::ok;
    journals.clear();

    Errc code = Errc::ok;
    auto ar = Archive::open(dir, err, &code);
    if (!ar) return code;
    // Newest segment first, each found by a point read of the ordinal before the previous one.
    Errc damage = Errc::ok;
    std::string damage_text;
    const DamageFn on_damage = [&](Errc e, const std::string& text, const std::vector<std::uint64_t>& ords) {
        if (damage != Errc::ok) return;
        damage = e;
        damage_text = text + " (ordinals " + ordinal_ranges(ords) + " unread)";
    };
    for (std::uint64_t end = ar->end_ordinal(); end > 0 && !enough(); ++part) {
        std::uint64_t first = 0;
        const Errc e = ar->scan_segment_of(
            end - 1, [&](std::uint64_t ord, ByteView envelope) { consider(envelope, ord, false); return true; }, on_damage,
            first, err);
        if (e != Errc::ok) return e;
        // A cluster that cannot be read may hold a larger seq of a src: no answer is better
        // than a wrong one (a resumed tap would fetch again what is archived, or skip).
        if (damage != Errc::ok) {
            err = damage_text;
            return damage;
        }
        end = first;
    }
    return Errc::ok;
}

}  // namespace

Errc last_seq(const std::string& dir, std::string_view src, LastSeq& out, std::string& err) {
    out = LastSeq{};
    const std::set<std::string, std::less<>> wanted{std::string(src)};
    std::map<std::string, LastSeq, std::less<>> found;
    std::vector<std::string> damage;
    const Errc e = last_seqs_walk(dir, &wanted, found, damage, err);
    if (auto it = found.find(src); it != found.end()) out = it->second;
    out.journal_damage = std::move(damage);
    if (e != Errc::ok) return e;
    if (!found.empty()) return Errc::ok;
    err = dir + ": no message with a seq from src '" + std::string(src) + "' in the archive";
    return Errc::cvl_no_src;
}

Errc last_seqs(const std::string& dir, std::map<std::string, LastSeq, std::less<>>& out,
               std::vector<std::string>& journal_damage, std::string& err) {
    return last_seqs_walk(dir, nullptr, out, journal_damage, err);
}

}  // namespace sov::cvl
