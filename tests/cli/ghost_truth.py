#!/usr/bin/env python3
"""The ground truth of `mesh-sim serve --pdses N --relay --truth FILE` as ghost-diff sees it,
and a scorer of ghost-diff's findings against it (python3 standard library only).

usage: ghost_truth.py TRUTH                                   (what the truth holds, per kind)
       ghost_truth.py TRUTH FINDINGS MESH... --relay RELAY... [--window S] [-v]
  TRUTH     the simulator's --truth frame stream
  FINDINGS  ghost-diff's JSON lines (every kind: run it without --only)
  MESH      mesh-tap's output (several runs appended, or several files in the order written)
  RELAY     relay-tap's output (the same)
  --window  ghost-diff's --window, seconds (default 5)
Exit status 0 when the findings pass, 1 when they do not, 2 on a usage error.

Keys (docs/design.md §11): #commit and #sync by (DID, commit CID), the CID of a #sync being the
first root of its CAR's header; #identity by (DID, time); #account by (DID, time, active,
status). The truth file has three kinds of record (mesh-sim(1), "The ground truth"): `pdsN.test`
(the PDS sent it, recv = its send time), `relay.test` (the relay sent it, recv = when it left
the relay, i.e. after --relay-delay-ms: lib/sim_net.cpp relay_append() is called when the
delayed event is due), `dropped.relay.test` (the relay dropped it). From them, per key:
  injected drop   a PDS key the relay never sent (under dropped.relay.test; still delayed at
                  exit would be one too, but the test waits for the relay to drain);
  relay-only      a relay key no PDS sent (none, with this simulator);
  truth latency   relay send − PDS send, µs.

What score() checks (each a problem when it fails; Score.ok when none):
  precision   every `drop` finding is an injected drop (its key is under dropped.relay.test and
              not under relay.test), with the truth's PDS host and first-op collection;
  recall      every injected drop that was observable is a `drop` finding. Observable: the mesh
              tap wrote the PDS event (at mesh recv t), and the relay tap's markers say the
              relay was observed over [t, t + window]: not before its first `connect`, not
              between a `disconnect` (or a second `connect`: a killed tap) and a `connect`
              without cursor (live head), not in a `gap` marker's span (from the last record
              before it), not after its last record. An outage bridged by a `connect` with a
              cursor is observed (the relay replays what it missed), but the event can only be
              decided once the relay was connected a whole window after it came back (ghost.h,
              "Observation"), so that must also happen before the relay output ends, and
              within 60 s after the event's window (ghost-diff waits no longer: man page); when
              another outage starts within that window, the wait starts again after it. (A
              stricter reading than ghost-diff may make: it only excuses more events.)
  blame       no `drop` finding has an unobserved span of the relay in [t, t + window] (a tap's
              outage is never the relay's drop), nor a relay copy in the relay output;
  relay-only  no `relay-only` finding unless its key is relay-only in the truth;
  coverage    every key of a matched-type message the taps wrote has exactly one finding (a
              copy that comes after its key was decided is counted as late, not a finding: a
              relay copy `unobserved` while the mesh tap was away for over a minute, then the
              mesh copy), and each finding's side has a copy in that side's output (match: both;
              drop and mesh `unobserved`: the mesh; relay-only and relay `unobserved`: the relay);
  replayed    every match whose later copy came after a reconnect of its tap (not the first
              connect) is marked `replayed` (an outage of the later side in between: ghost.h),
              and none is marked without an outage of the later side in between;
  latency     over the timed matches (not `replayed`), the p50, p90 and p99 of ghost-diff's
              latency_us and of the truth latency of the same keys differ by at most 1 ms.
              ghost-diff measures at the taps (relay-tap recv − mesh-tap recv), the truth at the
              simulator's sends, so each copy carries its tap's delivery delay (loopback, the
              same server process: a few hundred µs), and for one key ghost-diff's latency is
              the truth's plus the relay copy's delivery delay minus the mesh copy's. The keys
              compared are those whose two copies reached their taps within 1 ms of the send,
              and that were not sent while either tap was down or within 1 s after the connect
              that ended it (the replay of what it missed, and what queued behind it). Each such
              key's two latencies are then within 1 ms of each other, so are the percentiles
              (order statistics of values paired within ε are within ε): when they are not,
              ghost-diff paired the wrong copies, got a sign wrong or reported recv times the
              taps did not write. Why not every match: on a busy machine a stall of the
              simulator or of a tap holds a burst of copies up by 10-40 ms (seen on 2 cores),
              which moves a percentile by more than 1 ms although ghost-diff measured it
              faithfully. At least 100 keys and 10 % of the timed matches must be compared (the
              bound holds for any number; this only keeps the comparison meaningful); the
              percentiles over every timed match are printed beside them, not checked.

As a module: score(truth, findings, mesh_frames, relay_frames, window_s=5.0) returns a Score
(ok, problems, counts, latency rows); Truth(path) holds the truth's keys."""
import base64, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import score as tapscore  # noqa: E402  (fast frame-stream reader)
import ws_bin  # noqa: E402

RELAY_SRC, DROPPED_SRC = "relay.test", "dropped.relay.test"
CATCH_UP_US = 1_000_000  # after a tap's (re)connect: its replay of what it missed arrives late
LATE_US = 1_000          # a copy that reached its tap later than this after the send: held up
MAX_WAIT_US = 60_000_000  # ghost-diff waits for a bridged source at most this past the window


# ---- keys ------------------------------------------------------------------------------------

def cid_text(link):
    """The base32 text ("bafyrei…") of a DAG-CBOR link value ('link', b'\\x00' + CID bytes)."""
    raw = link[1] if isinstance(link, tuple) else link
    if raw[:1] == b"\x00":
        raw = raw[1:]
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def car_root(car):
    """The first root CID (text) of a CAR's header: uvarint length, then {roots: [link], version}."""
    return cid_text(ws_bin.car_root(car))


class Event:
    """One matched-type message: its key and what a finding reports of it."""
    __slots__ = ("key", "type", "did", "cid", "time", "collection", "src", "recv")

    def __init__(self, key, type_, did, cid, time_, collection, src, recv):
        self.key, self.type, self.did, self.cid, self.time = key, type_, did, cid, time_
        self.collection, self.src, self.recv = collection, src, recv


def event_of(wire, src="", recv=0):
    """The Event of an event-stream message, or None for a type that is not matched (#info,
    error frames, unknown types). Raises ValueError for a matched type without its key fields."""
    h, p = ws_bin.message(bytes(wire))
    if not isinstance(h, dict) or h.get("op") != 1:
        return None
    t = h.get("t")
    try:
        if t == "#commit":
            did, cid = p["repo"], cid_text(p["commit"])
            ops = p.get("ops") or []
            coll = ops[0]["path"].split("/", 1)[0] if ops else ""
            return Event(("commit", did, cid), "commit", did, cid, None, coll, src, recv)
        if t == "#sync":
            did, cid = p["did"], car_root(p["blocks"])
            return Event(("commit", did, cid), "sync", did, cid, None, None, src, recv)
        if t == "#identity":
            did, tm = p["did"], p["time"]
            return Event(("identity", did, tm), "identity", did, None, tm, None, src, recv)
        if t == "#account":
            did, tm = p["did"], p["time"]
            return Event(("account", did, tm, bool(p["active"]), p.get("status")), "account", did, None, tm, None,
                         src, recv)
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError("%s without its key fields (%r)" % (t, e))
    return None


def finding_key(f):
    """The key a finding names (an account's `active` and `status` as the finding gives them)."""
    t = f.get("type")
    if t in ("commit", "sync"):
        return ("commit", f.get("did"), f.get("cid"))
    if t == "identity":
        return ("identity", f.get("did"), f.get("time"))
    if t == "account":
        return ("account", f.get("did"), f.get("time"), f.get("active"), f.get("status"))
    return (t, f.get("did"))


# ---- the truth -------------------------------------------------------------------------------

class Truth:
    """pds[key] = Event (src pdsN.test, recv = PDS send), relay[key] = Event (recv = relay send),
    dropped[key] = drop kind ('share', 'host', 'collection'); injected = PDS keys the relay
    never sent; relay_only = relay keys no PDS sent; latency(key) = relay send − PDS send, µs."""

    def __init__(self, path):
        self.pds, self.relay, self.dropped = {}, {}, {}
        self.duplicates = []  # keys sent twice by the PDSes or by the relay
        for src, recv, mark, wire, env in tapscore.records(path):
            if mark is not None or wire is None:
                continue
            ev = event_of(wire, src, recv)
            if ev is None:
                continue
            if src == RELAY_SRC:
                if ev.key in self.relay:
                    self.duplicates.append(("relay", ev.key))
                self.relay[ev.key] = ev
            elif src == DROPPED_SRC:
                self.dropped[ev.key] = env.get("drop", "")
            else:
                if ev.key in self.pds:
                    self.duplicates.append(("pds", ev.key))
                self.pds[ev.key] = ev
        self.injected = {k for k in self.pds if k not in self.relay}
        self.relay_only = {k for k in self.relay if k not in self.pds}

    def latency(self, key):
        return self.relay[key].recv - self.pds[key].recv

    def summary(self):
        kinds = {}
        for k in self.injected:
            d = self.dropped.get(k, "not relayed")
            kinds[d] = kinds.get(d, 0) + 1
        return ("%d PDS events, %d relay events, %d injected drops (%s), %d relay-only, %d duplicate keys" % (
            len(self.pds), len(self.relay), len(self.injected),
            ", ".join("%s %d" % kv for kv in sorted(kinds.items())) or "none", len(self.relay_only),
            len(self.duplicates)))


# ---- the taps' outputs -----------------------------------------------------------------------

def read_output(paths):
    """(events, observations) of a tap's output (one path, bytes, or a list of them in the order
    written): its matched-type messages as Event, in order, and {src: Observation}."""
    if isinstance(paths, (str, bytes, bytearray)):
        paths = [paths]
    events, obs = [], {}
    for p in paths:
        for src, recv, mark, wire, _ in tapscore.records(p):
            o = obs.setdefault(src, Observation(src))
            o.record(recv, mark)
            if mark is None and wire is not None:
                ev = event_of(wire, src, recv)
                if ev is not None:
                    events.append(ev)
    for o in obs.values():
        o.end()
    return events, obs


class Observation:
    """When one source was observed, from its markers (ghost.h "Observation", docs/design.md §2):
    unobserved spans [from, to] (µs) and bridged outages [disconnect, reconnect with cursor]."""

    def __init__(self, src):
        self.src = src
        self.first = self.last = None
        self.connected = False
        self.down_since = None   # not observed since (a disconnect, or the start)
        self.unobserved = []     # [(from, to)]
        self.bridged = []        # [(from, to)]
        self.connects = []       # recv of every connect marker
        self.last_msg = None

    def record(self, recv, mark):
        if self.first is None:
            self.first = recv
            self.unobserved.append((-(1 << 62), recv))  # before the first record
        kind = mark.get("kind") if isinstance(mark, dict) else None
        if kind == "connect":
            self.connects.append(recv)
            if self.connected:  # a killed tap wrote no disconnect: down from its last record
                self.down_since = self.last if self.last is not None else recv
            if self.down_since is not None:
                if mark.get("cursor") is None:
                    self.unobserved.append((self.down_since, recv))
                else:
                    self.bridged.append((self.down_since, recv))
            self.connected, self.down_since = True, None
        elif kind == "disconnect":
            if self.connected:
                self.down_since = recv
            self.connected = False
        elif kind == "gap":
            start = self.last_msg if self.last_msg is not None else (self.first if self.first is not None else recv)
            self.unobserved.append((start, recv))
        elif mark is None:
            self.last_msg = recv
        self.last = recv if self.last is None else max(self.last, recv)

    def end(self):
        if self.down_since is not None and not self.connected:
            self.unobserved.append((self.down_since, self.last))
        self.unobserved.append((self.last, 1 << 62))  # after the input ends

    def observed(self, t, window_us):
        """The source was observed over [t, t + window], and an event then could be decided: after
        an outage bridged by a cursor that falls in the window, the source was connected a whole
        window (ghost.h: the replay must have time to arrive), before its output ended."""
        a, b = t, t + window_us
        if any(f < b and to > a for f, to in self.unobserved):
            return False
        outages = sorted(self.bridged)
        hit = [to for f, to in outages if f < b and to > a]
        if not hit:
            return True
        back = max(hit)
        while True:  # connected a whole window after it came back (another outage restarts the wait)
            nxt = [(f, to) for f, to in outages if back <= f < back + window_us]
            if not nxt:
                return back + window_us <= min(self.last, b + MAX_WAIT_US)
            back = max(to for _, to in nxt)

    def catching_up(self):
        """Spans [from, to) in which what the source sent reached the tap late by the tap's doing:
        before its first connect and in every outage, each until CATCH_UP_US after the connect
        that ended it (the replay of what it missed, and what queued behind that replay)."""
        spans = [(-(1 << 62), self.connects[0] + CATCH_UP_US)] if self.connects else [(-(1 << 62), 1 << 62)]
        spans += [(f, to + CATCH_UP_US) for f, to in self.unobserved[1:] + self.bridged]
        return spans

    def blamed(self, t, window_us):
        """An unobserved span of this source within [t, t + window]."""
        a, b = t, t + window_us
        return [(f, to) for f, to in self.unobserved if f < b and to > a]


# ---- the score -------------------------------------------------------------------------------

def read_findings(path_or_lines):
    if isinstance(path_or_lines, str):
        with open(path_or_lines) as f:
            lines = f.read().splitlines()
    else:
        lines = list(path_or_lines)
    out = []
    for n, line in enumerate(lines):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise ValueError("findings line %d is not JSON (%s): %s" % (n + 1, e, line[:200]))
    return out


def percentile(values, q, shift=0):
    """Nearest-rank q-quantile (0 < q ≤ 1) of a non-empty list (shift: that many ranks up or down)."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(-(-q * len(v) // 1)) - 1 + shift))]


class Score:
    def __init__(self):
        self.problems = []
        self.counts = {}
        self.latency = []   # (name, ghost µs, truth µs) over the keys compared
        self.latency_all = []  # every latency-counted match's latency_us, sorted
        self.latency_every = []  # (name, ghost µs, truth µs) over every timed match (not checked)
        self.ok = True

    def fail(self, kind, text, limit=15):
        self.ok = False
        n = sum(1 for p in self.problems if p.startswith(kind + ":"))
        if n < limit:
            self.problems.append("%s: %s" % (kind, text))
        elif n == limit:
            self.problems.append("%s: … (more)" % kind)

    def line(self):
        c = self.counts
        lat = lambda rows: ", ".join("%s %.2f/%.2f" % (n, g / 1000, t / 1000) for n, g, t in rows) or "none"
        return ("%s: %d findings (%d match, %d drop, %d unobserved, %d relay-only); %d injected drops, %d observable, "
                "%d found; latency ghost/truth ms over %d of %d timed matches (%d reached a tap late): %s; over "
                "all: %s" % (
                    "ok" if self.ok else "FAIL", c.get("findings", 0), c.get("match", 0), c.get("drop", 0),
                    c.get("unobserved", 0), c.get("relay-only", 0), c.get("injected", 0), c.get("observable", 0),
                    c.get("found", 0), c.get("latency_compared", 0), c.get("latency_counted", 0),
                    c.get("latency_late", 0), lat(self.latency), lat(self.latency_every)))


def score(truth, findings, mesh_frames, relay_frames, window_s=5.0, latency_ms=1.0):
    """Scores ghost-diff's findings (path or lines, every kind) against the truth (path or Truth),
    given the mesh tap's and the relay tap's outputs that ghost-diff read. Returns a Score."""
    t = truth if isinstance(truth, Truth) else Truth(truth)
    w = int(window_s * 1e6)
    s = Score()
    fs = read_findings(findings)
    mesh, mesh_obs = read_output(mesh_frames)
    relay, relay_obs = read_output(relay_frames)
    if len(relay_obs) != 1:
        s.fail("input", "the relay output has %d srcs (%s), expected 1" % (len(relay_obs), sorted(relay_obs)))
        return s
    robs = next(iter(relay_obs.values()))
    for who, k in t.duplicates[:5]:
        s.fail("truth", "a key sent twice by the %s: %r" % (who, k))
    mesh_by = {}
    for ev in mesh:
        mesh_by.setdefault(ev.key, []).append(ev)
    relay_by = {}
    for ev in relay:
        relay_by.setdefault(ev.key, []).append(ev)

    c = s.counts
    c["findings"] = len(fs)
    for f in fs:
        c[f.get("kind")] = c.get(f.get("kind"), 0) + 1
    c["injected"] = len(t.injected)

    # Shape of each finding (the contract's keys, in order).
    order = ["kind", "side", "type", "did", "cid", "time", "active", "status", "host", "collection", "mesh_recv",
             "relay_recv", "latency_us", "replayed", "reason"]
    for f in fs:
        keys = list(f)
        if [k for k in order if k in f] != keys or f.get("kind") not in ("match", "drop", "unobserved", "relay-only") \
                or f.get("side") not in ("mesh", "relay"):
            s.fail("shape", "unexpected keys or values: %s" % json.dumps(f))
        elif (f["type"] in ("commit", "sync")) != ("cid" in f) or (f["type"] in ("identity", "account")) != ("time" in f):
            s.fail("shape", "cid/time do not fit the type: %s" % json.dumps(f))
        elif f["kind"] == "match" and (f.get("mesh_recv") is None or f.get("relay_recv") is None
                                       or f.get("latency_us") != f["relay_recv"] - f["mesh_recv"]):
            s.fail("shape", "a match without both recv times and their difference: %s" % json.dumps(f))

    # Precision and blame.
    drops = [f for f in fs if f.get("kind") == "drop"]
    found = set()
    for f in drops:
        k = finding_key(f)
        if k not in t.injected:
            why = "the relay sent it (truth latency %s µs)" % t.latency(k) if k in t.pds and k in t.relay else \
                "no PDS sent it"
            s.fail("precision", "drop finding %s %s %s is no injected drop: %s" % (f.get("type"), f.get("did"),
                                                                                  f.get("cid") or f.get("time"), why))
            continue
        found.add(k)
        ev = t.pds[k]
        if f.get("host") != ev.src or (ev.collection is not None and f.get("collection") != ev.collection):
            s.fail("precision", "drop of %r: host %r collection %r, the truth says %r %r" % (
                k, f.get("host"), f.get("collection"), ev.src, ev.collection))
        if f.get("side") != "mesh" or f.get("relay_recv") is not None or f.get("mesh_recv") is None:
            s.fail("precision", "a drop is a mesh event with no relay copy: %s" % json.dumps(f))
            continue
        spans = robs.blamed(f["mesh_recv"], w)
        if spans:
            s.fail("blame", "drop of %r at mesh recv %d although the relay was not observed over %s" % (
                k, f["mesh_recv"], ["%d..%d" % sp for sp in spans[:3]]))
        if k in relay_by:
            s.fail("blame", "drop of %r although the relay output has it (recv %d)" % (k, relay_by[k][0].recv))
    c["found"] = len(found)

    # Recall: every observable injected drop.
    observable = 0
    for k in t.injected:
        evs = mesh_by.get(k)
        if not evs:
            continue  # the mesh tap did not write it: nothing to find
        if not robs.observed(evs[0].recv, w):
            continue
        observable += 1
        if k not in found:
            got = [f.get("kind") for f in fs if finding_key(f) == k]
            s.fail("recall", "injected drop (%s) %r at mesh recv %d was observable but is %s" % (
                t.dropped.get(k, "not relayed"), k, evs[0].recv, got or "not in the findings"))
    c["observable"] = observable

    # Relay-only.
    for f in fs:
        if f.get("kind") == "relay-only":
            k = finding_key(f)
            if k not in t.relay_only:
                s.fail("relay-only", "relay-only finding %r: the truth has it from %s" % (
                    k, t.pds[k].src if k in t.pds else "no PDS (and not relay-only either)"))

    # Coverage: one finding per key the taps wrote (a copy that came after its key was decided is
    # counted as late by ghost-diff, not a finding), with the side of a copy that was written.
    by_key = {}
    for f in fs:
        by_key.setdefault(finding_key(f), []).append(f)
    for k in set(mesh_by) | set(relay_by):
        got = by_key.get(k, [])
        if len(got) != 1:
            s.fail("coverage", "%r (%s): %d findings %s" % (
                k, ", ".join("%s recv %d" % (w, evs[k][0].recv) for w, evs in (("mesh", mesh_by), ("relay", relay_by))
                             if k in evs), len(got), [f.get("kind") for f in got]))
    for k, got in by_key.items():
        for f in got:
            need_mesh = f.get("kind") in ("match", "drop") or (f.get("kind") == "unobserved" and f.get("side") == "mesh")
            need_relay = f.get("kind") in ("match", "relay-only") or (
                f.get("kind") == "unobserved" and f.get("side") == "relay")
            if (need_mesh and k not in mesh_by) or (need_relay and k not in relay_by):
                s.fail("coverage", "%s %s-side finding for %r, which the %s output lacks" % (
                    f.get("kind"), f.get("side"), k, "mesh" if need_mesh and k not in mesh_by else "relay"))
    # Matches name both copies' recv as written by the taps.
    for f in fs:
        if f.get("kind") == "match":
            k = finding_key(f)
            m, r = mesh_by.get(k), relay_by.get(k)
            if not m or not r or f.get("mesh_recv") not in [e.recv for e in m] or \
                    f.get("relay_recv") not in [e.recv for e in r]:
                s.fail("match", "match %r: recv %s/%s, the taps wrote %s/%s" % (
                    k, f.get("mesh_recv"), f.get("relay_recv"), [e.recv for e in m or []], [e.recv for e in r or []]))

    # Replayed flags: a match whose later copy came after a reconnect of its tap (to that source)
    # had an outage of the later side in between; ghost-diff must not time it (ghost.h, "match").
    # The first connect is left out: before it the source was not observed, which ghost-diff may
    # or may not call an outage.
    for f in fs:
        if f.get("kind") != "match" or f.get("mesh_recv") is None or f.get("relay_recv") is None:
            continue
        lo, hi = sorted((f["mesh_recv"], f["relay_recv"]))
        later = robs if f["relay_recv"] > f["mesh_recv"] else mesh_obs.get(f.get("host"))
        if later is None:
            continue
        reconnect = [x for x in later.connects[1:] if lo < x <= hi]
        if reconnect and not f.get("replayed"):
            s.fail("replayed", "match %r: its later (%s) copy came after a reconnect (%d µs after the other), yet "
                               "it is timed (latency %d µs)" % (finding_key(f), later.src, reconnect[0] - lo,
                                                               f["latency_us"]))
        outage = [sp for sp in later.unobserved + later.bridged if sp[0] < hi and sp[1] > lo]
        if f.get("replayed") and not outage and not reconnect:
            s.fail("replayed", "match %r marked replayed with no outage of %s between its copies" % (
                finding_key(f), later.src))

    # Latency percentiles against the truth's, over the same keys: the timed matches whose two
    # copies reached their taps promptly (each within LATE_US of the simulator's send) and were
    # not sent while a tap was down or catching up after a connect (see the module's docstring).
    busy = {src: o.catching_up() + robs.catching_up() for src, o in mesh_obs.items()}
    g, tr, every, gt_all, tr_all = [], [], [], [], []
    late = 0
    for f in fs:
        if f.get("kind") == "match" and not f.get("replayed"):
            every.append(f["latency_us"])
            k = finding_key(f)
            if k not in t.pds or k not in t.relay:
                continue
            pe, re_ = t.pds[k], t.relay[k]
            gt_all.append(f["latency_us"])
            tr_all.append(t.latency(k))
            if any(a <= pe.recv < b for a, b in busy.get(pe.src, robs.catching_up())):
                continue
            if f["mesh_recv"] - pe.recv > LATE_US or f["relay_recv"] - re_.recv > LATE_US:
                late += 1
                continue
            g.append(f["latency_us"])
            tr.append(t.latency(k))
    c["latency_counted"] = len(every)
    c["latency_compared"] = len(g)
    c["latency_late"] = late
    s.latency_all = sorted(every)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        if gt_all:
            s.latency_every.append((name, percentile(gt_all, q), percentile(tr_all, q)))
        if g:
            a, b = percentile(g, q), percentile(tr, q)
            s.latency.append((name, a, b))
            if abs(a - b) > latency_ms * 1000:
                s.fail("latency", "%s: ghost-diff %.3f ms, truth %.3f ms (over %d matches): more than %g ms apart" % (
                    name, a / 1000, b / 1000, len(g), latency_ms))
    if len(g) < max(100, 0.1 * len(every)):
        s.fail("latency", "only %d of %d timed matches could be compared (%d reached a tap late): fewer than 100 "
                          "or 10 %%" % (len(g), len(every), late))
    return s


def main(argv):
    window, verbose, relay, rest = 5.0, False, [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--window", "--relay") and i + 1 >= len(argv):
            print(__doc__, file=sys.stderr)
            return 2
        if a == "--window":
            window = float(argv[i + 1])
            i += 1
        elif a == "--relay":
            relay.append(argv[i + 1])
            i += 1
        elif a == "-v":
            verbose = True
        elif a.startswith("-"):
            print("ghost_truth.py: unknown option %s\n%s" % (a, __doc__), file=sys.stderr)
            return 2
        else:
            rest.append(a)
        i += 1
    if len(rest) == 1 and not relay:
        print(Truth(rest[0]).summary())
        return 0
    if len(rest) < 3 or not relay:
        print(__doc__, file=sys.stderr)
        return 2
    s = score(rest[0], rest[1], rest[2:], relay, window)
    print(s.line())
    if not s.ok or verbose:
        for p in s.problems:
            print("    " + p)
    return 0 if s.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
