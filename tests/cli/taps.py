#!/usr/bin/env python3
"""relay-tap and mesh-tap against `mesh-sim serve --pdses N --relay` on loopback, scored
against the simulator's ground truth (--truth): every event once, in order, byte-identical,
markers where the tap was not listening; exact resume through the archive across kill -9
(relay-tap | cvl-pack, restarted from `cvl-cat --last-seq`); gap markers; FutureCursor;
mesh-tap's per-host cursors across restarts; cbor-verify passes what the taps wrote.

usage: taps.py BUILD_DIR [--slow]   (--slow: 20 kill -9 runs instead of 3)
Bounded in time: every wait has a generous limit; the simulator is always stopped."""
import os, random, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ws_bin  # noqa: E402
from harness import Checks, stop, wait_for  # noqa: E402
from ws_bin import messages, seq_of, truth_by_src  # noqa: E402

build = os.path.abspath(sys.argv[1])
slow = "--slow" in sys.argv
tools = os.path.join(build, "tools")
tool = lambda name: os.path.join(tools, name)
tmp = tempfile.mkdtemp(prefix="sov-taps-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check


def start_sim(name, *args):
    p, port = ws_bin.start_sim(tool("mesh-sim"), tmp, name, *args)
    procs.append(p)
    return p, port


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=600, **kw)


try:
    # ---- one simulator for the relay-tap cases: 4 PDSes and the relay, events over ~10 s ----
    N = 3000
    sim, port = start_sim("relay", "--pdses", "4", "--relay", "--rate", "300", "--events", str(N), "--seed", "7",
                          "--relay-window", "100000", "--pds-window", "100000",
                          "--truth", os.path.join(tmp, "truth.frames"), "--did-docs", os.path.join(tmp, "docs.json"))
    relay = "ws://127.0.0.1:%d/relay" % port
    src = "127.0.0.1:%d/relay" % port

    # 1. A live sample from the start of the stream, verified end to end.
    out = os.path.join(tmp, "sample.frames")
    with open(out, "wb") as f:
        r = subprocess.run([tool("relay-tap"), relay, "--cursor", "0", "--max-messages", "200", "-q"], stdout=f,
                           stderr=subprocess.PIPE, timeout=300)
    envs = ws_bin.frames(out)
    msgs = messages(envs)
    check("relay-tap --max-messages 200: exit 0, 200 messages, seqs 1..200",
          r.returncode == 0 and [seq_of(m) for m in msgs] == list(range(1, 201)), r.returncode, r.stderr.decode())
    check("relay-tap: the first record is a connect marker with cursor 0 and the URL",
          "mark" in envs[0] and envs[0]["mark"].get("kind") == "connect" and envs[0]["mark"].get("cursor") == 0
          and envs[0]["mark"].get("url") == relay + "/xrpc/com.atproto.sync.subscribeRepos?cursor=0", envs[0])
    check("relay-tap: the last record is a disconnect marker", envs[-1].get("mark", {}).get("kind") == "disconnect", envs[-1])
    check("relay-tap: src is host:port/path, recv set", all(e["src"] == src and e["recv"] > 1.6e15 for e in envs))
    check("relay-tap: the summary names messages, cursor and connections",
          b"200 messages" in r.stderr and b"cursor 200" in r.stderr and b"1 connection" in r.stderr, r.stderr.decode())
    v = run([tool("cbor-verify"), "--did-docs", os.path.join(tmp, "docs.json"), out])
    vp = os.path.join(tmp, "sample.verified")
    open(vp, "wb").write(v.stdout)
    vrds = [e.get("vrd") for e in messages(ws_bin.frames(vp))]
    check("cbor-verify passes relay-tap's output (markers through, every message ok)",
          v.returncode == 0 and len(vrds) == 200 and set(vrds) == {"ok"}, v.returncode, v.stderr.decode(), set(vrds))

    # 2. --cursor-file: starts after the file's cursor, saves the last seq written.
    cf = os.path.join(tmp, "c.cursor")
    open(cf, "w").write("150\n")
    with open(os.path.join(tmp, "cf.frames"), "wb") as f:
        r = subprocess.run([tool("relay-tap"), relay, "--cursor-file", cf, "--max-messages", "50", "-q"], stdout=f,
                           stderr=subprocess.PIPE, timeout=300)
    msgs = messages(ws_bin.frames(os.path.join(tmp, "cf.frames")))
    check("relay-tap --cursor-file: resumes after the saved seq and saves the new one",
          r.returncode == 0 and [seq_of(m) for m in msgs] == list(range(151, 201)) and open(cf).read().strip() == "200",
          r.stderr.decode(), open(cf).read())

    # 3. kill -9 anywhere in `relay-tap | cvl-pack`, resumed from the archive: exactly once.
    arch = os.path.join(tmp, "arch")
    runs = 20 if slow else 3
    rng = random.Random(11)
    kills = 0

    def last_seq():
        r = run([tool("cvl-cat"), arch, "--last-seq", src])
        return int(r.stdout) if r.returncode == 0 and r.stdout.strip() else None

    for i in range(runs + 1):
        c = last_seq()
        tap = subprocess.Popen([tool("relay-tap"), relay, "--cursor", str(c if c is not None else 0), "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        pack = subprocess.Popen([tool("cvl-pack"), "-o", arch, "-q"], stdin=tap.stdout, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        tap.stdout.close()
        procs.extend([tap, pack])
        if i < runs:
            time.sleep(rng.uniform(0.2, 1.5))
            victim = rng.choice([tap, pack])
            victim.kill()
            kills += 1
            victim.wait()
            stop(tap, signal.SIGKILL)
            stop(pack, signal.SIGTERM)
        else:
            wait_for(lambda: (last_seq() or 0) >= N, limit=600, step=0.5)
            stop(tap, signal.SIGTERM)  # the tap flushes and ends; cvl-pack sees EOF
            pack.wait(120)
    cat = run([tool("cvl-cat"), arch])
    open(os.path.join(tmp, "arch.frames"), "wb").write(cat.stdout)
    got = messages(ws_bin.frames(os.path.join(tmp, "arch.frames")))
    seqs = [seq_of(m) for m in got]
    # The truth file is flushed once a second: wait until it holds every relay event.
    wait_for(lambda: len(truth_by_src(os.path.join(tmp, "truth.frames")).get("relay.test", [])) >= N, limit=120, step=0.5)
    truth = truth_by_src(os.path.join(tmp, "truth.frames"))
    relay_truth = {seq_of(e): e["wire"] for e in truth.get("relay.test", [])}
    check("kill -9 of relay-tap or cvl-pack %d times, resumed from cvl-cat --last-seq: seqs 1..%d exactly once" % (kills, N),
          seqs == list(range(1, N + 1)), "got %d messages, first problems: %s" % (
              len(seqs), [(i, s) for i, s in enumerate(seqs) if s != i + 1][:5]))
    check("the archived messages are the relay's bytes (truth file)",
          len(relay_truth) >= N and all(m["wire"] == relay_truth.get(seq_of(m)) for m in got))
    # Markers survive only as far as cvl-pack read them before a kill, but the archive never
    # shows a message outside a connection: each follows a connect with no disconnect between.
    connected, outside, connects = False, 0, 0
    for e in ws_bin.frames(os.path.join(tmp, "arch.frames")):
        kind = e.get("mark", {}).get("kind")
        if kind == "connect":
            connected, connects = True, connects + 1
        elif kind == "disconnect":
            connected = False
        elif "mark" not in e and not connected:
            outside += 1
    # (A run killed before cvl-pack archived anything leaves no marker: on a busy machine
    # every early run may, so only the last connect is certain.)
    check("the archive: every message inside a connect marker's connection (%d connects)" % connects,
          outside == 0 and connects >= 1, outside, connects)

    # 4. FutureCursor from a PDS: exit 1, the error frame written, a clear message.
    r = run([tool("relay-tap"), "ws://127.0.0.1:%d/pds/0" % port, "--cursor", "99999999", "-q"])
    open(os.path.join(tmp, "future.frames"), "wb").write(r.stdout)
    envs = ws_bin.frames(os.path.join(tmp, "future.frames"))
    errs = [ws_bin.message(e["wire"])[1].get("error") for e in messages(envs)]
    check("relay-tap --cursor past the head: FutureCursor → exit 1, error frame written, message names it",
          r.returncode == 1 and "FutureCursor" in errs and b"FutureCursor" in r.stderr, r.returncode, r.stderr.decode(), errs)
    r = run([tool("relay-tap"), relay, "--cursor", ""])
    check("relay-tap --cursor '' (a failed lookup) is a usage error", r.returncode == 2 and b"--cursor" in r.stderr,
          r.returncode, r.stderr.decode())
    r = run([tool("relay-tap"), relay + "/xrpc/com.atproto.sync.subscribeRepos"])
    check("relay-tap with /xrpc/ in the URL is a usage error", r.returncode == 2, r.stderr.decode())
    stop(sim)

    # 5. Gaps: a relay with a small window replays from its oldest event (no OutdatedCursor),
    #    a PDS answers OutdatedCursor; either way a gap marker says which seqs were not observed.
    gt = os.path.join(tmp, "gtruth.frames")
    sim, port = start_sim("gap", "--pdses", "2", "--relay", "--rate", "1000", "--events", "600", "--seed", "3",
                          "--relay-window", "100", "--pds-window", "50", "--truth", gt)
    # Every event out (the truth file holds each PDS event and its relay copy).
    wait_for(lambda: os.path.exists(gt) and len(ws_bin.frames(gt)) >= 1200, limit=300, step=0.5)
    for label, url, window in (("relay", "ws://127.0.0.1:%d/relay" % port, 100), ("PDS", "ws://127.0.0.1:%d/pds/0" % port, 50)):
        path = os.path.join(tmp, "gap-%s.frames" % label)
        with open(path, "wb") as f:
            p = subprocess.Popen([tool("relay-tap"), url, "--cursor", "1", "-q"], stdout=f, stderr=subprocess.PIPE)
            time.sleep(2)
            stop(p, signal.SIGINT)
        envs = ws_bin.frames(path)
        gaps = [e["mark"] for e in envs if e.get("mark", {}).get("kind") == "gap"]
        first = next((seq_of(e) for e in messages(envs) if seq_of(e) is not None), None)
        check("gap after cursor 1 against a %s with a %d-event window: gap 2..first-1, exit 130 on SIGINT" % (label, window),
              p.returncode == 130 and len(gaps) == 1 and gaps[0]["from"] == 2 and first is not None
              and gaps[0]["to"] == first - 1, p.returncode, gaps, first)
    stop(sim)

    # 6. mesh-tap: every PDS directly, per-host cursors across a SIGTERM restart, exactly once.
    M = 2000
    sim, port = start_sim("mesh", "--pdses", "6", "--rate", "250", "--events", str(M), "--seed", "5",
                          "--pds-window", "100000", "--truth", os.path.join(tmp, "mtruth.frames"))
    hosts = os.path.join(tmp, "hosts.txt")
    with open(hosts, "w") as f:
        f.write("# the simulated PDSes, labelled as the truth file names them\n")
        for i in range(6):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    state = os.path.join(tmp, "mstate")
    os.makedirs(state)
    # Start every host from cursor 0 (the whole window), so the truth is comparable from seq 1.
    open(os.path.join(state, "cursors"), "w").write("".join("pds%d.test 0\n" % i for i in range(6)))
    parts = []
    for i in range(3):
        path = os.path.join(tmp, "mesh-%d.frames" % i)
        parts.append(path)
        with open(path, "wb") as f:
            p = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", state, "-q"], stdout=f, stderr=subprocess.PIPE)
            procs.append(p)
            if i < 2:
                time.sleep(2.5)
                stop(p, signal.SIGTERM)
                check("mesh-tap run %d: SIGTERM exits 0" % (i + 1), p.returncode == 0, p.returncode, p.stderr.read().decode())
            else:
                def caught_up():
                    t = truth_by_src(os.path.join(tmp, "mtruth.frames"))
                    total = sum(len(v) for v in t.values())
                    have = sum(len(messages(ws_bin.frames(q))) for q in parts)
                    return total >= M and have >= M
                wait_for(caught_up, limit=600, step=1)
                stop(p, signal.SIGINT)
                err = p.stderr.read().decode()
                check("mesh-tap: SIGINT exits 130, summary with host states", p.returncode == 130 and "6 hosts" in err, p.returncode, err)
    truth = truth_by_src(os.path.join(tmp, "mtruth.frames"))
    got = {}
    for q in parts:
        for e in messages(ws_bin.frames(q)):
            got.setdefault(e["src"], []).append(e)
    exact = True
    problems = []
    for h in sorted(set(truth) | set(got)):
        want = [(seq_of(e), e["wire"]) for e in truth.get(h, [])]
        have = [(seq_of(e), e["wire"]) for e in got.get(h, [])]
        if want != have:
            exact = False
            problems.append("%s: truth %d events, tap %d" % (h, len(want), len(have)))
    check("mesh-tap across two restarts: every PDS's events exactly once, in order, byte-identical", exact, *problems)
    cursors = dict(l.rsplit(" ", 1) for l in open(os.path.join(state, "cursors")).read().splitlines())
    check("mesh-tap --state: one cursor per host that emitted, equal to its last seq",
          all(int(cursors.get(h, -1)) == seq_of(truth[h][-1]) for h in truth), cursors)
    m = [e["mark"]["kind"] for q in parts for e in ws_bin.frames(q) if "mark" in e]
    check("mesh-tap: a connect and a disconnect marker per host per run (and per reconnect, if any)",
          m.count("connect") >= 18 and m.count("connect") == m.count("disconnect"),
          m.count("connect"), m.count("disconnect"))
    r = run([tool("mesh-tap"), "--state", state])
    check("mesh-tap without hosts is a usage error", r.returncode == 2 and b"no hosts" in r.stderr, r.stderr.decode())
    r = run([tool("mesh-tap"), "--hosts", hosts])
    check("mesh-tap without --state is a usage error", r.returncode == 2, r.stderr.decode())
    stop(sim)

    # 7. A host that says it is a relay is skipped; a silent host gets idle markers.
    sim, port = start_sim("idle", "--pdses", "40", "--relay", "--accounts", "20", "--rate", "50", "--events", "100000",
                          "--seed", "9")
    with open(hosts, "w") as f:
        f.write("ws://127.0.0.1:%d/relay the-relay\n" % port)
        for i in range(40):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    path = os.path.join(tmp, "idle.frames")
    with open(path, "wb") as f:
        p = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", os.path.join(tmp, "istate"), "-q",
                              "--idle-marker", "0.5"], stdout=f, stderr=subprocess.PIPE)
        time.sleep(3)
        stop(p, signal.SIGTERM)
    err = p.stderr.read().decode()
    envs = ws_bin.frames(path)
    idle = {}
    for e in envs:
        if e.get("mark", {}).get("kind") == "idle":
            idle.setdefault(e["src"], []).append((e["recv"], e["mark"]["since"]))
    check("mesh-tap: a host whose upgrade says Server: …atproto-relay is skipped, named, nothing written from it",
          "is a relay" in err and not any(e["src"] == "the-relay" for e in envs), err)
    # 20 accounts on 40 PDSes (Zipf placement): most hosts never emit and must get idle markers,
    # spaced at least --idle-marker apart, `since` = their last activity (the connect, or the
    # last event of a host that emits now and then), before the marker.
    spaced = all(all(b[0] - a[0] >= 450000 and a[1] <= b[1] < b[0] for a, b in zip(v, v[1:])) for v in idle.values())
    check("mesh-tap --idle-marker 0.5: silent hosts get idle markers, at most one per 0.5 s each",
          len(idle) >= 10 and spaced and max(len(v) for v in idle.values()) >= 2, len(idle), idle)
    stop(sim)
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()

sys.exit(_checks.summary())
