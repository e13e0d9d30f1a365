#!/usr/bin/env python3
"""Every fault of `mesh-sim serve --pdses N --relay` against mesh-tap (every PDS) and relay-tap
(the relay) at once, each output scored against the simulator's ground truth by score.py
(no event lost while observed, none duplicated, none outside the truth, markers for the
rest); the scorer itself caught failing on doctored streams; a slow consumer (the taps stop
reading, their RSS stays bounded, nothing is lost when the reader resumes); mesh-tap | cvl-pack
killed with -9 at random moments and resumed from `cvl-cat --last-seqs`: every event exactly
once in the archive.

usage: faults.py BUILD_DIR [--slow [--pdses N]]
  --slow: 20 kill -9 runs instead of 3, and every fault at once on N PDSes (default 1,000)
Bounded in time: every wait has a generous limit; no assertion on timing."""
import os, random, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import score  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, stop, wait_for  # noqa: E402

build = os.path.abspath(sys.argv[1])
slow = "--slow" in sys.argv
all_pdses = int(sys.argv[sys.argv.index("--pdses") + 1]) if "--pdses" in sys.argv else 1000
tools = os.path.join(build, "tools")
tool = lambda name: os.path.join(tools, name)
tmp = tempfile.mkdtemp(prefix="sov-faults-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check


def start_sim(name, *args):
    p, port = ws_bin.start_sim(tool("mesh-sim"), tmp, name, *args)
    procs.append(p)
    return p, port


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=600, **kw)


def truth_counts(path):
    """{src: number of messages} of the truth file so far."""
    n = {}
    if os.path.exists(path):
        for src, _, mark, _, _ in score.records(path):
            if mark is None:
                n[src] = n.get(src, 0) + 1
    return n


def report(verdicts):
    return [v.line() + "".join("\n        " + p for p in v.problems) for v in verdicts.values()]


def write_hosts(path, port, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))


def seed_state(d, n):
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "cursors"), "w").write("".join("pds%d.test 0\n" % i for i in range(n)))


def complete_records(path):
    """The bytes of a frame file being written, up to its last complete record."""
    data = open(path, "rb").read()
    return data[:ws_bin.complete_prefix(data)]


def marks(path, kind=None):
    return [(r[0], r[2]) for r in score.records(path) if r[2] is not None and (kind is None or r[2].get("kind") == kind)]


P = 6  # PDSes per simulator

try:
    # Sections 1 and 2 run in the cli suite only: the slow suite's run (--slow) adds the long
    # kill series and the all-at-once case, and does not repeat what cli_faults already covered.
    if not slow:
        # ---- 1. the faults, one simulator each; mesh-tap and relay-tap follow it at once ---------
        # E events at R/s: about 8 s of traffic; windows hold everything, so whatever a tap missed
        # while disconnected is replayed when it comes back (a miss is then a loss).
        E, R = 1500, 200
        faults = [
            ("relay drops (share, host, collection)",
             ["--relay-drop", "0.1", "--relay-drop-host", "1", "--relay-drop-collection", "app.bsky.feed.like"]),
            ("relay delay", ["--relay-delay-ms", "200"]),
            ("connections cut without close frame", ["--cut-every", "2.5"]),
            ("PDS restarts with seq reset", ["--pds-restart-every", "2"]),
            ("hosts that accept then drop", ["--accept-drop", "0.4"]),
        ]
        doctored_done = False
        for fi, (name, fargs) in enumerate(faults):
            truth = os.path.join(tmp, "truth-%d.frames" % fi)
            sim, port = start_sim("sim-%d" % fi, "--pdses", str(P), "--relay", "--rate", str(R), "--events", str(E),
                                  "--seed", str(21 + fi), "--pds-window", "100000", "--relay-window", "100000",
                                  "--truth", truth, *fargs)
            hosts = os.path.join(tmp, "hosts-%d.txt" % fi)
            write_hosts(hosts, port, P)
            restarts = "--pds-restart-every" in fargs
            variants = ["park", "live"] if restarts else ["park"]
            taps = {}
            for var in variants:
                st = os.path.join(tmp, "state-%d-%s" % (fi, var))
                seed_state(st, P)
                out = os.path.join(tmp, "mesh-%d-%s.frames" % (fi, var))
                err = open(os.path.join(tmp, "mesh-%d-%s.err" % (fi, var)), "w+")
                p = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q", "--future-cursor", var],
                                     stdout=open(out, "wb"), stderr=err)
                procs.append(p)
                taps["mesh-" + var] = (p, out, err)
            rout = os.path.join(tmp, "relay-%d.frames" % fi)
            rerr = open(os.path.join(tmp, "relay-%d.err" % fi), "w+")
            rp = subprocess.Popen([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--cursor", "0", "-q"],
                                  stdout=open(rout, "wb"), stderr=rerr)
            procs.append(rp)
            taps["relay"] = (rp, rout, rerr)
            rsrc = "127.0.0.1:%d/relay" % port

            # Every event out (each PDS event, and its relay copy or drop record), then the taps
            # catch up: each scored source's last truth event written (or, for hosts the tap cannot
            # observe any more, a generous wait).
            wait_for(lambda: sum(truth_counts(truth).values()) >= 2 * E, limit=300)
            time.sleep(1.5)  # the truth file's once-a-second flush

            def caught_up():
                t = {}
                for src, recv, mark, wire, _ in score.records(truth):
                    if mark is None:
                        t[src] = wire
                have = set()
                for _, out, _ in taps.values():
                    have.update(bytes(r[3]) for r in score.records(out) if r[2] is None)
                want = [w for s, w in t.items() if s == "relay.test" or (s.startswith("pds") and not restarts
                                                                          and "--accept-drop" not in fargs)]
                return all(bytes(w) in have for w in want)
            caught = wait_for(caught_up, limit=240, step=1)
            for p, _, _ in taps.values():
                stop(p, signal.SIGTERM)
            stop(sim)
            errs = {k: (t[2].seek(0), t[2].read())[1] for k, t in taps.items()}
            codes = {k: t[0].returncode for k, t in taps.items()}

            # The scores.
            only_pds = ["pds%d.test" % i for i in range(P)]
            vm = {var: score.score(truth, [taps["mesh-" + var][1]], only=only_pds) for var in variants}
            vr = score.score(truth, [rout], mapping={"relay.test": rsrc}, only=["relay.test"])
            for var in variants:
                check("%s: mesh-tap (--future-cursor %s) scored against the truth: nothing lost while observed, "
                      "no duplicate, nothing outside the truth, in order" % (name, var),
                      all(v.ok for v in vm[var].values()), *report(vm[var]), errs["mesh-" + var][-2000:])
            check("%s: relay-tap scored against the relay's truth: every event exactly once (complete)" % name,
                  all(v.ok for v in vr.values()) and caught and vr["relay.test"].excused == 0, caught, *report(vr),
                  errs["relay"][-2000:])

            tc = truth_counts(truth)
            if fi == 0:
                drops = {}
                for _, _, mark, _, env in score.records(truth):
                    if env["src"] == "dropped.relay.test":
                        drops[env.get("drop")] = drops.get(env.get("drop"), 0) + 1
                check("relay drops: the truth has drops of each kind (share, host, collection) and the relay stream "
                      "lacks them", all(drops.get(k, 0) > 0 for k in ("share", "host", "collection"))
                      and tc.get("relay.test", 0) + sum(drops.values()) == E, drops, tc)
                check("relay drops: mesh-tap has every PDS event (drops are the relay's)",
                      caught and all(v.excused == 0 for v in vm["park"].values()), *report(vm["park"]))
            elif name.startswith("relay delay") or name.startswith("connections cut"):
                check("%s: mesh-tap has every PDS event (complete)" % name,
                      caught and all(v.excused == 0 for v in vm["park"].values()), *report(vm["park"]))
            if name.startswith("connections cut"):
                conns = {}
                for src, m in marks(taps["mesh-park"][1], "connect"):
                    conns[src] = conns.get(src, 0) + 1
                rconn = len(marks(rout, "connect"))
                check("cuts: every host and the relay reconnected (several connect markers each), each reconnect "
                      "with the cursor", min(conns.values() or [0]) >= 2 and rconn >= 2
                      and all(m.get("cursor") is not None for _, m in marks(rout, "connect")), conns, rconn)
            if restarts:
                park_err, live_err = errs["mesh-park"], errs["mesh-live"]
                parked = [m for _, m in marks(taps["mesh-park"][1], "disconnect") if "FutureCursor" in m.get("reason", "")]
                check("restarts, --future-cursor park: a restarted host is parked (disconnect marker names FutureCursor), "
                      "named in the summary, exit 1",
                      len(parked) >= 1 and "parked after FutureCursor" in park_err and codes["mesh-park"] == 1,
                      codes["mesh-park"], parked, park_err[-1500:])
                recs = [(r[0], r[2]) for r in score.records(taps["mesh-live"][1]) if r[2] is not None]
                honest = 0
                for i, (src, m) in enumerate(recs):
                    if m.get("kind") == "disconnect" and "FutureCursor" in m.get("reason", ""):
                        nxt = next((mm for s2, mm in recs[i + 1:] if s2 == src and mm.get("kind") == "connect"), None)
                        if nxt is not None and "cursor" not in nxt:
                            honest += 1
                check("restarts, --future-cursor live: after FutureCursor a disconnect marker names it, the next connect "
                      "has no cursor, stderr says so loudly, exit 0",
                      honest >= 1 and "FORGETTING the cursor" in live_err and "forgotten after FutureCursor" in live_err
                      and codes["mesh-live"] == 0, honest, codes["mesh-live"], live_err[-1500:])
                lv = vm["live"]
                check("restarts: --future-cursor live observes more of the restarted hosts than park",
                      sum(v.present for v in lv.values()) > sum(v.present for v in vm["park"].values()),
                      *report(lv), *report(vm["park"]))
            if "--accept-drop" in fargs:
                silent = [s for s, v in vm["park"].items() if v.truth > 0 and v.present == 0]
                alive = [s for s, v in vm["park"].items() if v.present > 0]
                conns = {}
                for src, m in marks(taps["mesh-park"][1], "connect"):
                    conns[src] = conns.get(src, 0) + 1
                check("accept-drop: some hosts deliver nothing; each has several connect markers (each followed by a "
                      "disconnect), the others deliver",
                      silent and alive and all(conns.get(s, 0) >= 2 for s in silent), silent, alive, conns)

            # The scorer can fail: doctored copies of one output (once).
            if not doctored_done and fi == 2:
                doctored_done = True
                data = open(taps["mesh-park"][1], "rb").read()
                recs = list(ws_bin.records(data))
                # A message in the middle of a connection of the busiest host: drop it, then repeat it.
                busiest = max(vm["park"].values(), key=lambda v: v.present).src
                idx = [k for k, (_, _, env) in enumerate(recs) if env["src"] == busiest and "wire" in env]
                mid = idx[len(idx) // 2]
                s0, e0, _ = recs[mid]
                lost = os.path.join(tmp, "doctored-lost.frames")
                open(lost, "wb").write(data[:s0] + data[e0:])
                dup = os.path.join(tmp, "doctored-dup.frames")
                open(dup, "wb").write(data[:e0] + data[s0:e0] + data[e0:])
                s1, e1, _ = recs[idx[-1]]
                wire_env = recs[idx[-1]][2]
                # A changed byte in the last message's wire (its last byte: a CBOR value, same length).
                changed = bytearray(data)
                changed[e1 - 1] ^= 1
                chg = os.path.join(tmp, "doctored-changed.frames")
                open(chg, "wb").write(bytes(changed))
                # The first message after a reconnect (connect with a cursor): a replay that skipped one.
                after = None
                for k, (_, _, env) in enumerate(recs):
                    if env["src"] == busiest and env.get("mark", {}).get("kind") == "connect" and k > idx[0] \
                            and env["mark"].get("cursor") is not None:
                        after = next((j for j in idx if j > k), None)
                        if after is not None:
                            break
                s2, e2, _ = recs[after] if after is not None else (0, 0, None)
                skipped = os.path.join(tmp, "doctored-skipped.frames")
                open(skipped, "wb").write(data[:s2] + data[e2:])
                v4 = score.score(truth, [skipped], only=[busiest])[busiest]
                check("scorer: the first event of a resumed connection taken out is caught as lost (replay from cursor + 1)",
                      after is not None and not v4.ok and v4.lost == 1 and "after the connect" in " ".join(v4.problems),
                      after, v4.line(), v4.problems)
                v1 = score.score(truth, [lost], only=[busiest])[busiest]
                v2 = score.score(truth, [dup], only=[busiest])[busiest]
                v3 = score.score(truth, [chg], only=[busiest])[busiest]
                check("scorer: a message taken out of a connection is caught as lost",
                      not v1.ok and v1.lost == 1 and v1.duplicates == 0, v1.line(), v1.problems)
                check("scorer: a message written twice is caught as a duplicate",
                      not v2.ok and v2.duplicates == 1 and v2.lost == 0, v2.line(), v2.problems)
                check("scorer: a changed byte is caught (outside the truth, and the event lost)",
                      not v3.ok and v3.outside >= 1, v3.line(), v3.problems, wire_env["src"])
                r = run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "score.py"),
                         truth, lost, "--only", busiest])
                check("score.py from the command line: exit 1 on the doctored stream, naming the loss",
                      r.returncode == 1 and b"lost" in r.stdout, r.returncode, r.stdout.decode()[-1500:])
                r = run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "score.py"),
                         truth, taps["mesh-park"][1]])
                check("score.py from the command line: exit 0 on the tap's own output",
                      r.returncode == 0, r.returncode, r.stdout.decode()[-1500:])

        r = run([tool("mesh-tap"), "--hosts", os.path.join(tmp, "hosts-0.txt"), "--state", os.path.join(tmp, "st-usage"),
                 "--future-cursor", "reset"])
        check("mesh-tap --future-cursor with a value not park or live is a usage error",
              r.returncode == 2 and b"'park' or 'live'" in r.stderr, r.returncode, r.stderr.decode())

        # ---- 2. slow consumer: the reader stops for a while; the taps stop reading, stay bounded ----
        def vmrss_kb(pid):
            try:
                for line in open("/proc/%d/status" % pid):
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
            except OSError:
                pass
            return 0

        SE = 48000
        truth = os.path.join(tmp, "slow-truth.frames")
        sim, port = start_sim("slow", "--pdses", "4", "--relay", "--rate", "8000", "--events", str(SE), "--seed", "31",
                              "--pool", "3000", "--pds-window", "100000", "--relay-window", "100000", "--truth", truth)
        hosts = os.path.join(tmp, "hosts-slow.txt")
        write_hosts(hosts, port, 4)
        st = os.path.join(tmp, "state-slow")
        seed_state(st, 4)
        reader_src = r"""
import sys, time
out = open(sys.argv[1], 'wb', buffering=0)  # unbuffered: the test polls this file while it runs
first = sys.stdin.buffer.read1(65536)
out.write(first)
time.sleep(float(sys.argv[2]))    # stops reading
while True:
    b = sys.stdin.buffer.read1(1 << 20)
    if not b:
        break
    out.write(b)
    time.sleep(0.001)             # then reads, a little slowly
"""
        slow_taps = {}
        for label, cmd in (("mesh-tap", [tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q"]),
                           ("relay-tap", [tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--cursor", "0", "-q"])):
            out = os.path.join(tmp, "slow-%s.frames" % label)
            errf = open(os.path.join(tmp, "slow-%s.err" % label), "w+")
            tp = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf)
            rd = subprocess.Popen([sys.executable, "-c", reader_src, out, "12"], stdin=tp.stdout)
            tp.stdout.close()
            procs.extend([tp, rd])
            slow_taps[label] = (tp, rd, out, errf)
        # RSS sampled every 0.2 s from start to stop: while the reader is stopped (the first
        # 14 s) and while the taps catch up after it resumed.
        samples = {k: [] for k in slow_taps}
        sampling = threading.Event()
        t_resume = time.time() + 14

        def sample():
            while not sampling.is_set():
                for k, (tp, _, _, _) in slow_taps.items():
                    samples[k].append((time.time() < t_resume, vmrss_kb(tp.pid)))
                time.sleep(0.2)
        sampler = threading.Thread(target=sample)
        sampler.start()
        time.sleep(14)
        wait_for(lambda: sum(truth_counts(truth).values()) >= 2 * SE, limit=300)
        time.sleep(1.5)
        last = {}
        for src, _, mark, wire, _ in score.records(truth):
            if mark is None:
                last[src] = bytes(wire)

        def slow_caught_up():
            for label, src_names in (("mesh-tap", ["pds%d.test" % i for i in range(4)]), ("relay-tap", ["relay.test"])):
                have = {bytes(r[3]) for r in score.records(complete_records(slow_taps[label][2])) if r[2] is None}
                if not all(last[s] in have for s in src_names if s in last):
                    return False
            return True
        caught = wait_for(slow_caught_up, limit=300, step=2)
        sampling.set()
        sampler.join()
        for label, (tp, rd, out, errf) in slow_taps.items():
            stop(tp, signal.SIGTERM)
            rd.wait(120)
        stop(sim)
        total_mb = os.path.getsize(truth) / 2 / 1e6
        for label, (tp, rd, out, errf) in slow_taps.items():
            errf.seek(0)
            err = errf.read()
            if label == "mesh-tap":
                v = score.score(truth, [out], only=["pds%d.test" % i for i in range(4)])
            else:
                v = score.score(truth, [out], mapping={"relay.test": "127.0.0.1:%d/relay" % port}, only=["relay.test"])
            # The bound is well below the stream: a tap that buffered instead of pausing would pass
            # it. It holds after the reader resumed too: the output queue (32 MiB) bounds both, and
            # a drained queue's buffers go back to the system.
            stopped = max([kb for during, kb in samples[label] if during] or [0])
            after = max([kb for during, kb in samples[label] if not during] or [0])
            check("slow consumer, %s: the reader stopped 12 s (the stream: %.0f MB at 8,000 events/s); RSS stayed "
                  "bounded while it was stopped (peak %d MB < 90 MB) and while it caught up (peak %d MB < 90 MB; "
                  "%d MB at the end)" % (label, total_mb, stopped // 1024, after // 1024, samples[label][-1][1] // 1024),
                  0 < stopped < 90 * 1024 and 0 < after < 90 * 1024 and total_mb > 130,
                  [kb for _, kb in samples[label][::10]])
            ends = [m.get("reason", "") for _, m in marks(out, "disconnect")]
            check("slow consumer, %s: when the reader resumed nothing was lost, no duplicate, every event in the end "
                  "(%d reconnects: %s)" % (label, len(ends) - 1, "; ".join(sorted(set(ends)))[:300]),
                  caught and all(x.ok and x.excused == 0 for x in v.values()), caught, *report(v), err[-1500:])
            # The stop reached the servers (the tap stopped reading its sockets): a PDS said
            # ConsumerTooSlow, the relay cut the connection; the markers say so, and the tap came back.
            said = [x for x in ends if ("ConsumerTooSlow" in x if label == "mesh-tap" else "without a close frame" in x)]
            check("slow consumer, %s: the servers saw the tap stop reading (%s), a disconnect marker says so, "
                  "and it reconnected" % (label, "ConsumerTooSlow" if label == "mesh-tap" else "relay's TCP drop"),
                  said and len(marks(out, "connect")) > len(said), ends)

    # ---- 3. mesh-tap | cvl-pack, kill -9 of either at random moments, resumed from the archive ----
    KE = 2500
    truth = os.path.join(tmp, "kill-truth.frames")
    sim, port = start_sim("kill", "--pdses", str(P), "--rate", "250", "--events", str(KE), "--seed", "41",
                          "--pds-window", "100000", "--truth", truth)
    hosts = os.path.join(tmp, "hosts-kill.txt")
    write_hosts(hosts, port, P)
    st = os.path.join(tmp, "state-kill")
    arch = os.path.join(tmp, "kill-arch")
    runs = 20 if slow else 3
    rng = random.Random(13)
    kills = {"mesh-tap": 0, "cvl-pack": 0}
    resumed_from_archive = 0
    for i in range(runs + 1):
        # The cursors: every host from 0, then what the archive holds (the state file may be
        # ahead of it when cvl-pack died, or behind it by up to a second when mesh-tap did).
        seed_state(st, P)
        if os.path.isdir(arch):
            r = run([tool("cvl-cat"), arch, "--last-seqs", "-q"])
            if r.returncode != 0:
                bad("cvl-cat --last-seqs on the archive after a kill", r.returncode, r.stderr.decode())
                break
            cur = {"pds%d.test" % k: 0 for k in range(P)}
            for line in r.stdout.decode().splitlines():
                lab, seq = line.rsplit(" ", 1)
                cur[lab] = int(seq)
                resumed_from_archive += 1
            open(os.path.join(st, "cursors"), "w").write("".join("%s %d\n" % kv for kv in sorted(cur.items())))
        tap = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        pack = subprocess.Popen([tool("cvl-pack"), "-o", arch, "-q"], stdin=tap.stdout, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        tap.stdout.close()
        procs.extend([tap, pack])
        if i < runs:
            time.sleep(rng.uniform(0.3, 2.0))
            victim = (tap, pack)[i % 2] if i < 2 else rng.choice([tap, pack])  # each at least once
            kills["mesh-tap" if victim is tap else "cvl-pack"] += 1
            victim.kill()
            victim.wait()
            stop(tap, signal.SIGKILL)
            stop(pack, signal.SIGTERM)
        else:
            wait_for(lambda: sum(truth_counts(truth).values()) >= KE, limit=600)
            time.sleep(1.5)

            def archived_all():
                r = run([tool("cvl-cat"), arch, "--last-seqs", "-q"])
                got = dict(l.rsplit(" ", 1) for l in r.stdout.decode().splitlines())
                last = {}
                for src, _, mark, wire, _ in score.records(truth):
                    if mark is None:
                        last[src] = score.seq_of(bytes(wire))
                return all(int(got.get(s, -1)) >= q for s, q in last.items())
            wait_for(archived_all, limit=600, step=1)
            stop(tap, signal.SIGTERM)
            pack.wait(120)
    stop(sim)
    cat = run([tool("cvl-cat"), arch, "-q"])
    af = os.path.join(tmp, "kill-arch.frames")
    open(af, "wb").write(cat.stdout)
    v = score.score(truth, [af], only=["pds%d.test" % i for i in range(P)], complete=True)
    check("kill -9 of mesh-tap (%d) or cvl-pack (%d), resumed from cvl-cat --last-seqs: every PDS event exactly "
          "once in the archive, byte-identical" % (kills["mesh-tap"], kills["cvl-pack"]),
          cat.returncode == 0 and all(x.ok for x in v.values()) and resumed_from_archive > 0,
          cat.returncode, resumed_from_archive, *report(v))
    r = run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "score.py"), truth, arch,
             "--cvl-cat", tool("cvl-cat"), "--complete"])
    check("score.py TRUTH ARCHIVE_DIR (read with cvl-cat): exit 0, a line per PDS",
          r.returncode == 0 and r.stdout.decode().count("\nok ") + r.stdout.decode().startswith("ok ") == P,
          r.returncode, r.stdout.decode()[-1500:], r.stderr.decode())
    r = run([tool("cvl-cat"), arch, "--last-seqs"])
    lines = r.stdout.decode().splitlines()
    want = {}
    for src, _, mark, wire, _ in score.records(af):
        if mark is None:
            s = score.seq_of(bytes(wire))
            if s is not None:
                want[src] = max(want.get(src, -1), s)
    check("cvl-cat --last-seqs: one 'SRC SEQ' line per src with messages (sorted), each its largest seq; a count "
          "on stderr", r.returncode == 0 and lines == ["%s %d" % kv for kv in sorted(want.items())]
          and b"srcs with a seq" in r.stderr, r.returncode, lines, want, r.stderr.decode())
    r = run([tool("cvl-cat"), arch, "--last-seqs", "--did", "did:plc:x"])
    check("cvl-cat --last-seqs with a filter is a usage error", r.returncode == 2, r.stderr.decode())
    r = run([tool("cvl-cat"), arch, "--last-seqs", "--last-seq", "pds0.test"])
    check("cvl-cat --last-seqs with --last-seq is a usage error", r.returncode == 2, r.stderr.decode())
    for lab, seq in want.items():
        r = run([tool("cvl-cat"), arch, "--last-seq", lab])
        if r.stdout.decode().strip() != str(seq):
            bad("cvl-cat --last-seq %s agrees with --last-seqs" % lab, r.stdout, seq)
            break
    else:
        ok("cvl-cat --last-seq SRC agrees with --last-seqs for every src")

    # ---- 4. (slow suite) every fault at once, 1,000 PDSes (--pdses N): mesh-tap (--future-cursor live) and
    # relay-tap, both scored ------------------------------------------------------------------
    if slow:
        NP, AE = all_pdses, 6000
        truth = os.path.join(tmp, "all-truth.frames")
        sim, port = start_sim("all", "--pdses", str(NP), "--relay", "--rate", "300", "--events", str(AE),
                              "--seed", "51", "--pds-window", "100000", "--relay-window", "100000", "--truth", truth,
                              "--relay-drop", "0.05", "--relay-drop-host", "3", "--relay-drop-collection",
                              "app.bsky.feed.like", "--relay-delay-ms", "100", "--pds-restart-every", "3",
                              "--cut-every", "5", "--accept-drop", "0.1")
        hosts = os.path.join(tmp, "hosts-all.txt")
        write_hosts(hosts, port, NP)
        st = os.path.join(tmp, "state-all")
        seed_state(st, NP)
        mout, rout = os.path.join(tmp, "all-mesh.frames"), os.path.join(tmp, "all-relay.frames")
        merr = open(os.path.join(tmp, "all-mesh.err"), "w+")
        mp = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q", "--future-cursor", "live"],
                              stdout=open(mout, "wb"), stderr=merr)
        rp = subprocess.Popen([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--cursor", "0", "-q"],
                              stdout=open(rout, "wb"), stderr=subprocess.DEVNULL)
        procs.extend([mp, rp])
        wait_for(lambda: sum(truth_counts(truth).values()) >= 2 * AE, limit=900, step=2)
        time.sleep(1.5)
        last_relay = [bytes(w) for s_, _, m_, w, _ in score.records(truth) if m_ is None and s_ == "relay.test"][-1]
        caught = wait_for(lambda: any(r[2] is None and bytes(r[3]) == last_relay for r in score.records(rout)),
                          limit=600, step=2)
        stop(mp, signal.SIGTERM)
        stop(rp, signal.SIGTERM)
        stop(sim)
        merr.seek(0)
        vm = score.score(truth, [mout], only=["pds%d.test" % i for i in range(NP)])
        vr = score.score(truth, [rout], mapping={"relay.test": "127.0.0.1:%d/relay" % port}, only=["relay.test"])
        bad_m = {k: v for k, v in vm.items() if not v.ok}
        check("every fault at once, %d PDSes: mesh-tap --future-cursor live scored: nothing lost while observed, "
              "no duplicate, nothing outside the truth (%d events written, %d not observed)" % (
                  NP, sum(v.present for v in vm.values()), sum(v.excused for v in vm.values())),
              not bad_m and mp.returncode == 0, mp.returncode, *report(bad_m)[:20], merr.read()[-1500:])
        check("every fault at once: relay-tap scored, every relay event exactly once",
              caught and all(v.ok and v.excused == 0 for v in vr.values()), caught, *report(vr))

finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()

sys.exit(_checks.summary())
