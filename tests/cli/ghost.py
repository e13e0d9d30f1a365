#!/usr/bin/env python3
"""ghost-diff against the ground truth of `mesh-sim serve --pdses N --relay` with injected relay
drops (a random share, a whole host, a whole collection) and relay delays, fed by relay-tap and
mesh-tap, each run's findings scored by ghost_truth.score (docs/design.md §11): every observable
injected drop found, no false drop, no drop blamed on a tap's outage, latency percentiles within
1 ms of the truth's.

  (a) live: both taps through FIFOs into ghost-diff; --fail-on-drop exits 1; the same files
      read back give the same findings; --only drop; the mesh split over two --mesh files;
  (b) files with outages: relay-tap stopped and restarted at the live head (its outage turns
      events into `unobserved`, never `drop`), mesh-tap stopped and restarted from its --state
      (bridged: its drops are still found, the replayed copies are `replayed`); and every
      connection cut (--cut-every) with the taps reconnecting from their cursors;
  (c) one merged stream (--input, --relay-src) gives the findings of (b);
  (d) errors: a truncated record in --mesh (exit 1, FILE:OFFSET, findings so far written), usage
      errors (exit 2);
  (e) the JSON of findings whose DID and status hold quotes, backslashes, control characters and
      UTF-8: escaped byte for byte as JSON requires;
and the scorer caught failing on doctored findings.

usage: ghost.py BUILD_DIR [--slow]
  --slow: 200 PDSes and 24 s of traffic per simulator instead of 5 PDSes and 10 s
Bounded in time: every wait has a generous limit; no assertion on timing."""
import json, os, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ghost_truth  # noqa: E402
import score as tapscore  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, kill_all, stop, wait_for  # noqa: E402

build = os.path.abspath(sys.argv[1])
slow = "--slow" in sys.argv
tool = lambda name: os.path.join(build, "tools", name)
tmp = tempfile.mkdtemp(prefix="sov-ghost-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check

P, R, E = (200, 500, 12000) if slow else (5, 300, 3000)
WINDOW = 5.0
# pds3 and app.bsky.graph.follow: about 5 % of the events each at the default profile (pds0 and
# pds1, and likes, carry most of the traffic: dropping them would leave few matches to time).
DROPS = ["--relay-drop", "0.05", "--relay-drop-host", "3", "--relay-drop-collection", "app.bsky.graph.follow"]
SUMMARY = re.compile(r"ghost-diff: (\d+) mesh events, (\d+) relay events: (\d+) matches, (\d+) drops, (\d+) unobserved "
                     r"\((\d+) mesh, (\d+) relay\), (\d+) relay-only; win rate ([\d.]+)% \(mesh first\); "
                     r"latency p50 (-?[\d.]+) ms, p90 (-?[\d.]+) ms, p99 (-?[\d.]+) ms")


T0 = time.time()


def note(what):
    print("# %5.1f s: %s" % (time.time() - T0, what), flush=True)


def path(name):
    return os.path.join(tmp, name)


def start_sim(name, *args):
    p, port = ws_bin.start_sim(tool("mesh-sim"), tmp, name, "--pdses", str(P), "--relay", "--rate", str(R),
                               "--events", str(E), "--pds-window", "100000", "--relay-window", "100000",
                               "--truth", path(name + "-truth.frames"), *args)
    procs.append(p)
    hosts = path(name + "-hosts.txt")
    with open(hosts, "w") as f:
        for i in range(P):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    st = path(name + "-state")
    os.makedirs(st, exist_ok=True)
    with open(os.path.join(st, "cursors"), "w") as f:
        f.write("".join("pds%d.test 0\n" % i for i in range(P)))
    return p, port, hosts, st


def relay_tap(port, stdout, cursor=True):
    args = [tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "-q"] + (["--cursor", "0"] if cursor else [])
    p = subprocess.Popen(args, stdout=stdout, stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def mesh_tap(hosts, st, stdout):
    p = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q"], stdout=stdout,
                         stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


class Tail:
    """Reads the records appended to a frame-stream file since the last call (a file being
    written: an incomplete last record waits for the next call)."""

    def __init__(self, path):
        self.path, self.pos = path, 0

    def new(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        end = ws_bin.complete_prefix(data)
        self.pos += end
        return tapscore.records(data[:end]) if end else []


class Progress:
    """What the simulator's truth says so far and what the taps wrote, read incrementally."""

    def __init__(self, truth, relay_out, mesh_out):
        self.truth, self.outs = Tail(truth), [Tail(relay_out), Tail(mesh_out)]
        self.pds = self.relay = 0
        self.last = {}     # src -> wire of its last truth event
        self.have = set()  # wires the taps wrote

    def poll(self):
        for src, _, mark, wire, _ in self.truth.new():
            if mark is None:
                if src.startswith("pds"):
                    self.pds += 1
                else:
                    self.relay += 1
                if src != ghost_truth.DROPPED_SRC:
                    self.last[src] = bytes(wire)
        for t in self.outs:
            self.have.update(bytes(r[3]) for r in t.new() if r[2] is None)

    def done(self):
        """Every PDS event out, and each relayed or dropped (the relay's delayed events drained)."""
        self.poll()
        return self.pds >= E and self.relay >= E

    def caught_up(self):
        """The last truth event of the relay and of every PDS are in the taps' outputs."""
        self.poll()
        return all(w in self.have for w in self.last.values())


def drain(name, truth, relay_out, mesh_out, window=WINDOW):
    """Waits for the simulator to finish and the taps to catch up, then a window more (so that
    the last events are decided while both taps still observe)."""
    prog = Progress(truth, relay_out, mesh_out)
    done = wait_for(prog.done, limit=600, step=1)
    note("%s: the simulator sent every event" % name)
    time.sleep(1.5)  # the truth file's once-a-second flush
    caught = wait_for(prog.caught_up, limit=300, step=1)
    note("%s: the taps caught up" % name)
    time.sleep(window + 1)
    if not (done and caught):
        bad("%s: the simulator finished (%s) and the taps caught up (%s)" % (name, done, caught))
    return done and caught


def ghost(*args, stdin=None, timeout=600):
    return subprocess.run([tool("ghost-diff")] + list(args), capture_output=True, timeout=timeout, stdin=stdin)


def lines_of(p):
    with open(p) as f:
        return [l for l in f.read().splitlines() if l.strip()]


def show(s):
    return [s.line()] + s.problems


def summary_of(stderr):
    m = SUMMARY.search(stderr)
    return m.groups() if m else None


def check_summary(name, stderr, findings_lines, sc):
    """The summary's counts are the findings', its percentiles those of the latency-counted
    matches (to the 0.1 ms bucket and the print's rounding)."""
    g = summary_of(stderr)
    if not check("%s: the summary line has the contract's shape" % name, g, stderr[-1500:]):
        return
    fs = [json.loads(l) for l in findings_lines]
    cnt = lambda k, side=None: sum(1 for f in fs if f["kind"] == k and (side is None or f["side"] == side))
    want = (cnt("match"), cnt("drop"), cnt("unobserved"), cnt("unobserved", "mesh"), cnt("unobserved", "relay"),
            cnt("relay-only"))
    got = tuple(int(x) for x in (g[2], g[3], g[4], g[5], g[6], g[7]))
    # The percentiles: between the findings' neighbouring ranks, give or take the 0.1 ms bucket and
    # the print's rounding (ranking conventions differ by a rank or two in a sparse tail).
    v = sc.latency_all
    close, rows = bool(v), []
    for i, q in enumerate((0.5, 0.9, 0.99) if v else ()):
        lo, hi = ghost_truth.percentile(v, q, -2) - 200, ghost_truth.percentile(v, q, 2) + 200
        rows.append((q, float(g[9 + i]) * 1000, lo, hi))
        close = close and lo <= float(g[9 + i]) * 1000 <= hi
    check("%s: the summary's counts are the findings' (matches, drops, unobserved mesh/relay, relay-only) and its "
          "p50/p90/p99 those of the findings' latencies" % name, got == want and close, got, want, rows)


def merge(a, b, out):
    """Interleaves the records of two frame-stream files by recv, each file's own order kept."""
    ra = list(ws_bin.records(open(a, "rb").read()))
    rb = list(ws_bin.records(open(b, "rb").read()))
    da, db = open(a, "rb").read(), open(b, "rb").read()
    i = j = 0
    with open(out, "wb") as f:
        while i < len(ra) or j < len(rb):
            if j >= len(rb) or (i < len(ra) and ra[i][2]["recv"] <= rb[j][2]["recv"]):
                f.write(da[ra[i][0]:ra[i][1]])
                i += 1
            else:
                f.write(db[rb[j][0]:rb[j][1]])
                j += 1


try:
    r = ghost("--help")
    if r.returncode != 0 or not os.path.exists(tool("ghost-diff")):
        bad("ghost-diff --help", r.returncode, r.stderr.decode()[-500:])
        raise SystemExit(_checks.summary())

    note('(a) live')
    # ---- (a) live through FIFOs ------------------------------------------------------------------
    name = "a"
    sim, port, hosts, st = start_sim(name, "--seed", "61", "--relay-delay-ms", "20", *DROPS)
    truth_a = path("a-truth.frames")
    rfifo, mfifo = path("a-relay.fifo"), path("a-mesh.fifo")
    os.mkfifo(rfifo)
    os.mkfifo(mfifo)
    rec_r, rec_m, out_a = path("a-relay.frames"), path("a-mesh.frames"), path("a-findings.jsonl")
    gerr = open(path("a-ghost.err"), "w+")
    gp = subprocess.Popen([tool("ghost-diff"), "--relay", rfifo, "--mesh", mfifo, "-o", out_a, "--fail-on-drop"],
                          stdout=subprocess.DEVNULL, stderr=gerr)
    procs.append(gp)
    # Each tap's output is recorded on its way into the FIFO (tee opens the FIFO itself: the
    # opens block until ghost-diff has opened the other end, in whatever order it does).
    # The relay tap connects first: the mesh tap then replays from cursor 0, so that no PDS event
    # reaches the mesh before the relay is observed (those could be no drop).
    tees = []

    def recorded(tp, rec, fifo):
        tee = subprocess.Popen(["sh", "-c", 'exec tee "$1" > "$2"', "sh", rec, fifo], stdin=tp.stdout,
                               stdout=subprocess.DEVNULL)
        tp.stdout.close()
        procs.append(tee)
        tees.append(tee)
        return tp
    rt = recorded(relay_tap(port, subprocess.PIPE), rec_r, rfifo)
    wait_for(lambda: os.path.exists(rec_r) and os.path.getsize(rec_r) > 0, limit=120, step=0.05)
    mt = recorded(mesh_tap(hosts, st, subprocess.PIPE), rec_m, mfifo)
    drain(name, truth_a, rec_r, rec_m)
    stop(rt)
    stop(mt)
    for tee in tees:
        tee.wait(120)
    try:
        gp.wait(300)
    except subprocess.TimeoutExpired:
        bad("live: ghost-diff ended when both FIFOs ended")
        gp.kill()
        gp.wait()
    stop(sim)
    gerr.seek(0)
    err_a = gerr.read()
    truth = ghost_truth.Truth(truth_a)
    sa = ghost_truth.score(truth, out_a, rec_m, rec_r, WINDOW)
    note(sa.line())
    kinds = {}
    for k in truth.injected:
        kinds[truth.dropped.get(k)] = kinds.get(truth.dropped.get(k), 0) + 1
    # Both taps stayed connected: every injected drop is observable (but any the mesh tap got
    # before the relay tap's first connect: none, as the relay tap connected first).
    mesh_ev, _ = ghost_truth.read_output(rec_m)
    _, robs = ghost_truth.read_output(rec_r)
    robs = next(iter(robs.values()))
    early = sum(1 for e in mesh_ev if e.key in truth.injected and e.recv < robs.first)
    check("live (FIFOs), relay drops (share, host, collection) and delay 20 ms: scored against the truth — every "
          "injected drop found (%d of %d; %d came before the relay tap connected), none false, latency percentiles "
          "within 1 ms (%s)" % (sa.counts.get("found", 0), len(truth.injected), early, truth.summary()),
          sa.ok and sa.counts.get("observable") == len(truth.injected) - early
          and all(kinds.get(k) for k in ("share", "host", "collection")), *show(sa), kinds, err_a[-1500:])
    check("live: --fail-on-drop exits 1 when drops were found", gp.returncode == 1, gp.returncode, err_a[-1500:])
    lines_a = lines_of(out_a)
    check_summary("live", err_a, lines_a, sa)
    check("live: the summary names drops by PDS host (pds3.test, whose every event the relay dropped) and by "
          "collection (app.bsky.graph.follow)",
          re.search(r"^ghost-diff: drops by PDS host: .*pds3\.test \d+", err_a, re.M)
          and re.search(r"^ghost-diff: drops by collection: .*app\.bsky\.graph\.follow \d+", err_a, re.M),
          err_a[-1500:])

    r = ghost("--relay", rec_r, "--mesh", rec_m)
    check("files: the recorded tap outputs give the live run's findings; exit 0 without --fail-on-drop",
          r.returncode == 0 and sorted(r.stdout.decode().splitlines()) == sorted(lines_a), r.returncode,
          r.stderr.decode()[-1500:], len(r.stdout.decode().splitlines()), len(lines_a))
    # The HTML report of the same run, rendered in headless Chromium (tests/cli/html_check.py):
    # its numbers are the findings'. Skipped (noted) when Chromium is absent.
    rep = path("a-report.html")
    r = ghost("--relay", rec_r, "--mesh", rec_m, "-q", "-o", os.devnull, "--report", rep)
    kinds = [json.loads(l)["kind"] for l in lines_a]
    comma = lambda n: "{:,}".format(n)
    if check("--report: exit 0 and the file written", r.returncode == 0 and os.path.getsize(rep) > 1000,
             r.returncode, r.stderr.decode()[-500:]):
        hc = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "html_check.py"),
                             rep, "--expect", "n-matches=" + comma(kinds.count("match")),
                             "--expect", "n-drops=" + comma(kinds.count("drop")),
                             "--expect", "n-relay-only=" + comma(kinds.count("relay-only")),
                             "--present", "latency-hist", "--present", "timeline", "--present", "drop-table"],
                            capture_output=True, timeout=600)
        if hc.returncode == 77:
            print("ok - --report in Chromium: skipped (no chromium): " + hc.stdout.decode().strip()[-200:])
        else:
            check("--report rendered in headless Chromium: the matches, drops and relay-only of the findings, "
                  "the charts and the drop table, no network request", hc.returncode == 0,
                  hc.stdout.decode()[-1500:], hc.stderr.decode()[-500:])
    r = ghost("--relay", rec_r, "--mesh", rec_m, "--only", "drop", "-q")
    got = r.stdout.decode().splitlines()
    want = [l for l in lines_a if json.loads(l)["kind"] == "drop"]
    check("--only drop prints only the drops (%d), those of the full run; -q: no summary" % len(want),
          r.returncode == 0 and sorted(got) == sorted(want) and want and r.stderr == b"", r.returncode,
          r.stderr.decode()[-500:], len(got), len(want))
    r = ghost("--relay", rec_r, "--mesh", rec_m, "--only", "match,relay-only", "-q", "-o", path("a-only.jsonl"))
    got = lines_of(path("a-only.jsonl"))
    check("--only match,relay-only -o FILE: only those kinds, to the file", r.returncode == 0 and r.stdout == b""
          and sorted(got) == sorted(l for l in lines_a if json.loads(l)["kind"] in ("match", "relay-only")),
          r.returncode, r.stderr.decode()[-500:])
    # The mesh split over two inputs (even and odd PDSes), each in the tap's order (an input's
    # records must come in receive order: the watermark is per input).
    m1, m2 = path("a-mesh-even.frames"), path("a-mesh-odd.frames")
    data = open(rec_m, "rb").read()
    with open(m1, "wb") as f1, open(m2, "wb") as f2:
        for start, end, env in ws_bin.records(data):
            (f1 if int(env["src"][3:].split(".")[0]) % 2 == 0 else f2).write(data[start:end])
    r = ghost("--relay", rec_r, "--mesh", m1, "--mesh", m2, "-q")
    check("two --mesh files (the PDSes split even/odd) give the same findings",
          r.returncode == 0 and sorted(r.stdout.decode().splitlines()) == sorted(lines_a), r.returncode,
          r.stderr.decode()[-1500:])

    # The scorer can fail: doctored findings of (a).
    fa = [json.loads(l) for l in lines_a]
    dump = lambda fs: [json.dumps(f, separators=(",", ":")) for f in fs]
    di = next((i for i, f in enumerate(fa) if f["kind"] == "drop"), None)
    mi = next((i for i, f in enumerate(fa) if f["kind"] == "match" and not f.get("replayed")), None)
    if di is None or mi is None:
        bad("scorer: the live run has a drop and a match to doctor", di, mi)
    else:
        s1 = ghost_truth.score(truth, dump(fa[:di] + fa[di + 1:]), rec_m, rec_r, WINDOW)
        check("scorer: a drop finding taken out is caught (recall)", not s1.ok
              and any(p.startswith("recall:") for p in s1.problems), *show(s1))
        f2 = [dict(f) for f in fa]
        f2[mi] = {"kind": "drop", "side": "mesh", "type": fa[mi]["type"], "did": fa[mi]["did"],
                  **({"cid": fa[mi]["cid"]} if "cid" in fa[mi] else {"time": fa[mi].get("time")}),
                  "host": fa[mi]["host"], **({"collection": fa[mi]["collection"]} if "collection" in fa[mi] else {}),
                  "mesh_recv": fa[mi]["mesh_recv"], "relay_recv": None, "latency_us": None}
        s2 = ghost_truth.score(truth, dump(f2), rec_m, rec_r, WINDOW)
        check("scorer: a match turned into a drop is caught (precision)", not s2.ok
              and any(p.startswith("precision:") for p in s2.problems), *show(s2))
        s3 = ghost_truth.score(truth, dump(fa + [fa[mi]]), rec_m, rec_r, WINDOW)
        check("scorer: a finding written twice is caught (coverage)", not s3.ok
              and any(p.startswith("coverage:") for p in s3.problems), *show(s3))
        f4 = [dict(f) for f in fa]
        for f in f4:
            if f["kind"] == "match":
                f["relay_recv"] += 3000
                f["latency_us"] += 3000
        s4 = ghost_truth.score(truth, dump(f4), rec_m, rec_r, WINDOW)
        check("scorer: latencies 3 ms too long are caught (latency)", not s4.ok
              and any(p.startswith("latency:") for p in s4.problems), *show(s4))

    note('(b) outages')
    # ---- (b) files, with an outage of each tap ---------------------------------------------------
    name = "b"
    sim, port, hosts, st = start_sim(name, "--seed", "62", "--relay-delay-ms", "20", *DROPS)
    truth_b = path("b-truth.frames")
    rec_r, rec_m, out_b = path("b-relay.frames"), path("b-mesh.frames"), path("b-findings.jsonl")
    t0 = time.time()
    rt = relay_tap(port, open(rec_r, "ab"))
    mt = mesh_tap(hosts, st, open(rec_m, "ab"))
    span = E / R
    time.sleep(span * 0.25)
    stop(rt)                        # the relay tap: down ~2 s, back at the live head
    time.sleep(2)
    rt = relay_tap(port, open(rec_r, "ab"), cursor=False)
    time.sleep(max(0.5, span * 0.6 - (time.time() - t0)))
    mesh_down = time.time()
    stop(mt)                        # the mesh tap: down ~2 s, back from its --state cursors
    time.sleep(2)
    mesh_up = time.time()
    mt = mesh_tap(hosts, st, open(rec_m, "ab"))
    drain(name, truth_b, rec_r, rec_m)
    stop(rt)
    stop(mt)
    stop(sim)
    r = ghost("--relay", rec_r, "--mesh", rec_m, "-o", out_b)
    err_b = r.stderr.decode()
    truth = ghost_truth.Truth(truth_b)
    sb = ghost_truth.score(truth, out_b, rec_m, rec_r, WINDOW)
    note(sb.line())
    lines_b = lines_of(out_b)
    fb = [json.loads(l) for l in lines_b]
    unobs = [f for f in fb if f["kind"] == "unobserved" and f["side"] == "mesh"]
    check("outages (relay-tap restarted at the live head, mesh-tap restarted from its cursors): scored against the "
          "truth — no drop blamed on the relay tap's outage, every observable drop found (%s)" % truth.summary(),
          r.returncode == 0 and sb.ok, r.returncode, *show(sb), err_b[-1500:])
    _, robs = ghost_truth.read_output(rec_r)
    robs = next(iter(robs.values()))
    in_relay_outage = [k for k in truth.injected
                       if any(a <= truth.pds[k].recv <= b for a, b in robs.unobserved[1:-1])]
    check("outages: the relay tap's outage made mesh events `unobserved` (%d; %d injected drops in it, none a drop "
          "finding)" % (len(unobs), len(in_relay_outage)), unobs and len(robs.unobserved) >= 3, len(robs.unobserved))
    lo, hi = int(mesh_down * 1e6), int(mesh_up * 1e6)
    bridged = [k for k in truth.injected if lo <= truth.pds[k].recv <= hi]
    found = {ghost_truth.finding_key(f) for f in fb if f["kind"] == "drop"}
    check("outages: the drops injected while the mesh tap was down (bridged by its cursors) are found (%d)" %
          len(bridged), bridged and all(k in found for k in bridged), len(bridged),
          [k for k in bridged if k not in found][:5])
    replayed = [f for f in fb if f["kind"] == "match" and f.get("replayed") and f["mesh_recv"] >= lo
                and f["relay_recv"] < f["mesh_recv"]]
    check("outages: matches whose mesh copy came in the replay after the mesh outage are marked replayed (%d): not "
          "counted in latency" % len(replayed), replayed)
    check_summary("outages", err_b, lines_b, sb)
    # Doctored: an unobserved event the relay really dropped, called a drop, is blamed on the outage.
    ui = next((i for i, f in enumerate(fb) if f["kind"] == "unobserved" and f["side"] == "mesh"
               and any(k == ghost_truth.finding_key(f) for k in in_relay_outage)), None)
    if ui is not None:
        f5 = [dict(f) for f in fb]
        f5[ui]["kind"] = "drop"
        f5[ui].pop("reason", None)
        s5 = ghost_truth.score(truth, [json.dumps(f) for f in f5], rec_m, rec_r, WINDOW)
        check("scorer: a drop inside the relay tap's outage is caught (blame)", not s5.ok
              and any(p.startswith("blame:") for p in s5.problems), *show(s5))

    note('(c) merged')
    # ---- (c) one merged stream -------------------------------------------------------------------
    merged = path("b-merged.frames")
    merge(rec_r, rec_m, merged)
    rsrc = "127.0.0.1:%d/relay" % port
    r = ghost("--input", merged, "--relay-src", rsrc, "-o", path("c-findings.jsonl"))
    lines_c = lines_of(path("c-findings.jsonl"))
    check("merged stream (--input FILE --relay-src %s): the findings of the two files" % rsrc,
          r.returncode == 0 and sorted(lines_c) == sorted(lines_b), r.returncode,
          r.stderr.decode()[-1500:], len(lines_c), len(lines_b))
    with open(merged, "rb") as f:
        r = ghost("--input", "-", "--relay-src", rsrc, "-q", stdin=f)
    check("merged stream on stdin (--input -): the same findings", r.returncode == 0
          and sorted(r.stdout.decode().splitlines()) == sorted(lines_b), r.returncode,
          r.stderr.decode()[-1500:])
    r = ghost("--input", merged, "--relay-src", "no.such.relay", "-q")
    fs = [json.loads(l) for l in r.stdout.decode().splitlines()]
    check("merged stream with a --relay-src that is not in it: no match, no drop (the relay was never observed)",
          r.returncode == 0 and fs and not any(f["kind"] in ("match", "drop") for f in fs), r.returncode,
          r.stderr.decode()[-800:])

    note('(b2) cuts')
    # ---- (b2) every connection cut, the taps reconnect from their cursors -------------------------
    # A window of 2 s against cuts every 4 s: an event whose window holds a cut is decided once the
    # relay was connected a whole window after it came back, which a 5 s window would never see.
    # (--slow: every 10 s, since the taps' reconnect backoff doubles at each cut of a connection
    # that was up less than a minute; a dozen cuts would keep them away for minutes.)
    name, cw, every = "cut", 2.0, "10" if slow else "4"
    sim, port, hosts, st = start_sim(name, "--seed", "63", "--relay-delay-ms", "20", "--cut-every", every, *DROPS)
    truth_c = path("cut-truth.frames")
    rec_r, rec_m, out_x = path("cut-relay.frames"), path("cut-mesh.frames"), path("cut-findings.jsonl")
    rt = relay_tap(port, open(rec_r, "ab"))
    mt = mesh_tap(hosts, st, open(rec_m, "ab"))
    drain(name, truth_c, rec_r, rec_m, cw)
    stop(rt)
    stop(mt)
    stop(sim)
    r = ghost("--relay", rec_r, "--mesh", rec_m, "--window", "2", "-o", out_x)
    truth = ghost_truth.Truth(truth_c)
    sx = ghost_truth.score(truth, out_x, rec_m, rec_r, cw)
    note(sx.line())
    conns = [rr[2] for rr in tapscore.records(rec_r) if rr[2] and rr[2].get("kind") == "connect"]
    check("cuts every %s s (%d relay connections, each reconnect with the cursor), --window 2: scored against the "
          "truth, the drops found across the cuts (%s)" % (every, len(conns), truth.summary()),
          r.returncode == 0 and sx.ok and len(conns) >= 3 and all(m.get("cursor") is not None for m in conns)
          and sx.counts.get("observable", 0) > 0, r.returncode, *show(sx), r.stderr.decode()[-1500:])

    note('(d) errors')
    # ---- (d) errors ------------------------------------------------------------------------------
    rec_r, rec_m = path("a-relay.frames"), path("a-mesh.frames")
    data = open(rec_m, "rb").read()
    recs = list(ws_bin.records(data))
    cut_at = recs[len(recs) * 9 // 10][0]
    trunc = path("d-mesh-truncated.frames")
    open(trunc, "wb").write(data[:cut_at + 5])
    fc = subprocess.run([tool("frame-cat"), trunc], capture_output=True, timeout=300)
    m = re.search(re.escape(trunc) + r":(\d+):", fc.stderr.decode())
    off = m.group(1) if m else str(cut_at)
    out_d = path("d-findings.jsonl")
    r = ghost("--relay", rec_r, "--mesh", trunc, "-o", out_d)
    err = r.stderr.decode()
    got = lines_of(out_d) if os.path.exists(out_d) else []
    check("a truncated record in --mesh: exit 1, 'ghost-diff: FILE:%s: …' (frame-cat's offset), the findings "
          "decided so far written (%d), the summary printed" % (off, len(got)),
          r.returncode == 1 and ("ghost-diff: %s:%s:" % (trunc, off)) in err and got and summary_of(err)
          and all(json.loads(l)["kind"] for l in got), r.returncode, err[-1000:], fc.stderr.decode()[-300:])
    r = ghost("--relay", rec_r, "--mesh", rec_m, "--no-such-option")
    check("an unknown option: exit 2, named", r.returncode == 2 and "no-such-option" in r.stderr.decode(),
          r.returncode, r.stderr.decode()[-500:])
    r = ghost("--relay", rec_r)
    check("--relay without --mesh: exit 2", r.returncode == 2, r.returncode, r.stderr.decode()[-500:])
    r = ghost("--relay", rec_r, "--mesh", path("no-such-file.frames"))
    check("a missing input file: exit 2, named", r.returncode == 2 and "no-such-file.frames" in r.stderr.decode(),
          r.returncode, r.stderr.decode()[-500:])
    r = ghost("--relay", rec_r, "--mesh", rec_m, "--only", "nonsense")
    check("--only with an unknown kind: exit 2", r.returncode == 2, r.returncode, r.stderr.decode()[-500:])

    # ---- (e) the JSON of findings: strings escaped as JSON requires, nothing else changed ---------
    # Hand-made streams: #identity and #account events whose DID and status hold a quote, a
    # backslash, control characters (before, at and after the 8th byte: ghost-diff copies plain
    # runs 8 bytes at a time) and non-ASCII UTF-8; half of them only on the mesh (drops, with a
    # reason-less line), the rest matched.
    def enc(v):
        def hd(major, n):
            if n < 24:
                return bytes([major << 5 | n])
            for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
                if n < 1 << (8 * size):
                    return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        if isinstance(v, bool):
            return b"\xf5" if v else b"\xf4"
        if isinstance(v, int):
            return hd(0, v)
        if isinstance(v, bytes):
            return hd(2, len(v)) + v
        if isinstance(v, str):
            return hd(3, len(v.encode())) + v.encode()
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return hd(5, len(v)) + b"".join(enc(k) + enc(v[k]) for k in keys)

    def rec(env):
        body = enc(env)
        n, pre = len(body), bytearray()
        while True:
            pre.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
            n >>= 7
            if not n:
                return bytes(pre) + body

    def json_text(s):  # JSON as ghost-diff writes it: raw UTF-8, \" \\ and \u00xx for controls
        return '"' + "".join("\\" + c if c in '"\\' else "\\u%04x" % ord(c) if ord(c) < 0x20 else c for c in s) + '"'

    dids = ['did:plc:q"uote', "did:plc:back\\slash-and-more", "did:plc:\x01ctl\x1fend", "did:plc:newline\n",
            "did:plc:ütf8-ßtraße", 'did:"', "did:plc:abcdefgh\x7f\"\\\t", "did:plc:plain-twenty-four-chars"]
    t0 = 1_700_000_000_000_000
    rel, mesh, want = [], [], {}
    for i, d in enumerate(dids):
        for kind in ("identity", "account"):
            p = {"did": d, "seq": i + 1, "time": "2026-01-01T00:00:0%d.000Z" % (i % 10)}
            if kind == "account":
                p.update(active=False, status='susp"ended\\' + d[-3:])
            wire = enc({"op": 1, "t": "#" + kind}) + enc(p)
            recv = t0 + 1000 * (2 * i + (kind == "account"))
            mesh.append(rec({"src": "pds0.test", "recv": recv, "wire": wire}))
            if i % 2 == 0:
                rel.append(rec({"src": "relay.test", "recv": recv + 500, "wire": wire}))
            want[(kind, d)] = ("match" if i % 2 == 0 else "drop", p.get("status"))
    conn = lambda src: rec({"src": src, "recv": t0 - 1000, "mark": {"kind": "connect", "url": "ws://" + src}})
    # Both inputs end 30 s later (a message of an unmatched type), so that every window closes
    # while both are observed.
    end = lambda src: rec({"src": src, "recv": t0 + 30_000_000, "wire": enc({"op": 1, "t": "#info"}) + enc({"name": "x"})})
    e_r, e_m, e_out = path("e-relay.frames"), path("e-mesh.frames"), path("e-findings.jsonl")
    open(e_r, "wb").write(conn("relay.test") + b"".join(rel) + end("relay.test"))
    open(e_m, "wb").write(conn("pds0.test") + b"".join(mesh) + end("pds0.test"))
    r = ghost("--relay", e_r, "--mesh", e_m, "-o", e_out, "-q")
    raw = open(e_out, "rb").read()
    lines = raw.decode("utf-8").splitlines()
    got = {}
    problems = []
    for l in lines:
        try:
            f = json.loads(l)
        except ValueError as e:
            problems.append("not JSON (%s): %r" % (e, l))
            continue
        got[(f["type"], f["did"])] = (f["kind"], f.get("status"))
        if ('"did":' + json_text(f["did"]) + ",") not in l:
            problems.append("did written as %r" % l)
        if "status" in f and ('"status":' + json_text(f["status"]) + ",") not in l:
            problems.append("status written as %r" % l)
        if '"host":"pds0.test",' not in l:
            problems.append("host: %r" % l)
    check("(e) DIDs and statuses with quotes, backslashes, control characters and UTF-8: every finding "
          "(%d) parses, its strings escaped byte for byte as JSON requires (\\\" \\\\ \\u00xx, UTF-8 as is), "
          "the verdicts right" % len(lines),
          r.returncode == 0 and got == want and not problems and len(lines) == len(want),
          r.returncode, r.stderr.decode()[-500:], problems[:3], sorted(set(want.items()) ^ set(got.items()))[:4])

finally:
    kill_all(procs)

status = _checks.summary()
if status == 0:
    shutil.rmtree(tmp, ignore_errors=True)  # about 140 MB; kept when something failed
else:
    print("the files are in " + tmp)
sys.exit(status)
