#!/usr/bin/env python3
"""cvl-serve on loopback: an archive served as subscribeRepos.

  * relay-tap reading cvl-serve from cursor 0 reproduces the archive's messages: wire bytes
    equal except the seq (--seq ordinal: seq = ordinal + 1) or byte for byte (--seq source);
    markers and seq-less frames are not sent;
  * cursors: from the middle (both modes), FutureCursor + close 1008, InvalidRequest for a
    cursor that is not an integer, a negative cursor as 0, no cursor = live only;
  * live tail: frames written into a running cvl-pack reach a connected subscriber, across a
    kill -9 of cvl-pack and its restart;
  * a tombstone set while a subscriber replays hides the message it has not reached yet;
  * a subscriber that stops reading gets ConsumerTooSlow (--stall-timeout) and the server's
    memory stays flat;
  * 100 subscribers at once at different cursors each get exactly their range;
  * a corrupted segment: subscribers that reach it get an ArchiveError frame naming the file
    and close 1011; others continue;
  * /xrpc/_health and /metrics; wantedDids.

usage: serve.py BUILD_DIR   (python3 standard library only; every wait is bounded)"""
import json, os, re, signal, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ws_bin  # noqa: E402
from harness import Checks, stop, wait_for  # noqa: E402

build = os.path.abspath(sys.argv[1])
tool = lambda name: os.path.join(build, "tools", name)
tmp = tempfile.mkdtemp(prefix="sov-serve-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check
SUB = "/xrpc/com.atproto.sync.subscribeRepos"


def run(args, **kw):
    if "stdout" not in kw:
        kw["stdout"] = subprocess.PIPE
    return subprocess.run(args, stderr=subprocess.PIPE, timeout=600, **kw)


def serve(arch, *args):
    """Starts cvl-serve on a free port; returns (process, port, stderr path)."""
    errp = os.path.join(tmp, "serve-%d.err" % len(procs))
    err = open(errp, "w+")
    p = subprocess.Popen([tool("cvl-serve"), arch, "--listen", "127.0.0.1:0"] + list(args),
                         stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    for _ in range(3000):
        err.seek(0)
        m = re.search(r"on 127\.0\.0\.1:(\d+)", err.read())
        if m:
            return p, int(m.group(1)), errp
        if p.poll() is not None:
            break
        time.sleep(0.02)
    raise SystemExit("FAIL - cvl-serve did not start: " + open(errp).read())


def archived(arch):
    """[(ordinal, envelope dict)] of the whole archive (tombstoned included)."""
    out = os.path.join(tmp, "all.frames")
    r = run([tool("cvl-cat"), arch, "--include-deleted"], stdout=open(out, "wb"))
    assert r.returncode == 0, r.stderr
    return list(enumerate(ws_bin.frames(out)))


def seq(wire):
    return ws_bin.message(wire)[1].get("seq")


def wanted(envs):
    """The archived (ordinal, wire) cvl-serve sends: messages with a seq, no markers."""
    return [(o, e["wire"]) for o, e in envs if "wire" in e and isinstance(seq(e["wire"]), int)]


def get(port, path):
    return urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30).read().decode()


try:
    # An archive of one source with markers: relay-tap reading a simulated relay, into cvl-pack.
    sim_truth = os.path.join(tmp, "truth.frames")
    sim, sim_port = ws_bin.start_sim(tool("mesh-sim"), tmp, "sim", "--pdses", "4", "--relay", "--rate", "2000",
                                     "--events", "1500", "--accounts", "40", "--seed", "3", "--truth", sim_truth)
    procs.append(sim)
    src_frames = os.path.join(tmp, "relay.frames")
    r = run([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % sim_port, "--cursor", "0", "--max-messages", "1500",
             "--src", "relay.test", "-q"], stdout=open(src_frames, "wb"))
    check("setup: relay-tap read 1500 messages from the simulated relay", r.returncode == 0, r.stderr.decode())
    stop(sim)
    # An #info frame (seq-less) in the middle, as a tap writes one it received.
    arch = os.path.join(tmp, "arch")
    r = run([tool("cvl-pack"), "-o", arch, "--segment-messages", "500"], stdin=open(src_frames, "rb"))
    check("setup: cvl-pack archived it", r.returncode == 0, r.stderr.decode())
    envs = archived(arch)
    want = wanted(envs)
    markers = sum(1 for _, e in envs if "mark" in e)
    check("setup: the archive holds markers and messages", markers >= 2 and len(want) == 1500, markers, len(want))

    # --- ordinal mode, from cursor 0 and from the middle, with relay-tap as the consumer ---
    p, port, errp = serve(arch)
    got_path = os.path.join(tmp, "got.frames")
    r = run([tool("relay-tap"), "ws://127.0.0.1:%d" % port, "--cursor", "0", "--max-messages", str(len(want)),
             "-q"], stdout=open(got_path, "wb"))
    got = [e["wire"] for e in ws_bin.frames(got_path) if "wire" in e]
    check("relay-tap from cursor 0 (--seq ordinal): every message, in order, seq = ordinal + 1",
          r.returncode == 0 and [seq(w) for w in got] == [o + 1 for o, _ in want], r.stderr.decode(),
          [seq(w) for w in got[:5]], [o + 1 for o, _ in want[:5]])
    check("... and every other byte as archived (only the seq field re-encoded)",
          [ws_bin.without_seq(w) for w in got] == [ws_bin.without_seq(w) for _, w in want])
    mid = want[700][0]  # resume after ordinal `mid`: cursor = its seq
    s = ws_bin.Stream(port, SUB + "?cursor=%d" % (mid + 1)).read(want=len(want) - 701, quiet=2)
    check("cursor from the middle: the messages after it, none before",
          [seq(w) for w in s.messages] == [o + 1 for o, _ in want[701:]], len(s.messages))
    s.close()
    s = ws_bin.Stream(port, SUB + "?cursor=-5").read(want=len(want), quiet=2)
    check("a negative cursor counts as 0", len(s.messages) == len(want), len(s.messages))
    s.close()
    head = len(envs)
    s = ws_bin.Stream(port, SUB + "?cursor=%d" % (head + 1)).read(deadline=30)
    h, pl = ws_bin.message(s.messages[0]) if s.messages else ({}, {})
    check("a cursor past the head: error frame FutureCursor, close 1008",
          h.get("op") == -1 and pl.get("error") == "FutureCursor" and s.end == "close" and s.close_code == 1008,
          h, pl, s.end, s.close_code)
    s = ws_bin.Stream(port, SUB + "?cursor=abc").read(deadline=30)
    pl = ws_bin.message(s.messages[0])[1] if s.messages else {}
    check("a cursor that is not an integer: InvalidRequest, close 1008",
          pl.get("error") == "InvalidRequest" and s.close_code == 1008, pl, s.close_code)
    s = ws_bin.Stream(port, SUB).read(quiet=1, deadline=3)
    check("no cursor: live only (nothing while the archive does not grow)", s.messages == [] and s.end == "quiet",
          len(s.messages), s.end)
    s.close()
    did0 = ws_bin.message(want[0][1])[1].get("repo") or ws_bin.message(want[0][1])[1].get("did")
    s = ws_bin.Stream(port, SUB + "?cursor=0&wantedDids=" + did0).read(quiet=2)
    dids = set()
    for w in s.messages:
        pl = ws_bin.message(w)[1]
        dids.add(pl.get("repo") or pl.get("did"))
    n0 = sum(1 for _, w in want if did0 in (ws_bin.message(w)[1].get("repo"), ws_bin.message(w)[1].get("did")))
    check("wantedDids: only that DID's events, all of them", dids == {did0} and len(s.messages) == n0,
          dids, len(s.messages), n0)
    s.close()
    health = json.loads(get(port, "/xrpc/_health"))
    check("/xrpc/_health names the head ordinal", health.get("head") == head and health.get("status") == "ok", health)
    metrics = get(port, "/metrics")
    check("/metrics: frames sent, consumers, FutureCursor count",
          re.search(r"^cvl_serve_frames_total \d+", metrics, re.M) and "cvl_serve_future_cursor_total 1" in metrics,
          metrics[:600])

    # --- a tombstone set mid-replay hides what the subscriber has not reached -----------------
    # The kernel's socket buffers hold megabytes: the victim lies far beyond what they can
    # take while the subscriber does not read, in a larger archive of generated traffic.
    big = os.path.join(tmp, "big")
    gen = subprocess.Popen([tool("mesh-sim"), "gen", "--events", "12000", "--accounts", "300", "--seed", "9",
                            "--no-corpus"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    r = run([tool("cvl-pack"), "-o", big], stdin=gen.stdout)
    gen.wait()
    bp, bport, _ = serve(big)
    bvictim = 11000
    s = ws_bin.Stream(bport, SUB + "?cursor=0", rcvbuf=4096)
    time.sleep(1.5)  # the replay starts; not reading, the subscriber's socket buffers fill up
    r = run([tool("tomb-set"), big, str(bvictim)])
    s.read(want=12000 - 1, quiet=3, deadline=300)  # the victim never comes
    seqs = [seq(w) for w in s.messages]
    check("a tombstone set mid-replay (tomb-set) hides the message from a subscriber that has not reached it",
          r.returncode == 0 and bvictim + 1 not in seqs and len(seqs) == 12000 - 1 and seqs[:3] == [1, 2, 3],
          r.stderr.decode(), len(seqs))
    s.close()
    stop(bp)
    victim = want[1200][0]
    r = run([tool("tomb-set"), arch, str(victim)])
    stop(p)
    out = open(errp).read()
    check("SIGTERM: exit 0 and a summary line", p.returncode == 0 and "served" in out, p.returncode, out)

    # --- source mode --------------------------------------------------------------------------
    p, port, errp = serve(arch, "--seq", "source")
    s = ws_bin.Stream(port, SUB + "?cursor=0").read(want=len(want) - 1, quiet=2)
    byte_equal = s.messages == [w for o, w in want if o != victim]
    check("--seq source from cursor 0: the archived wire byte for byte (the tombstoned one hidden)", byte_equal,
          len(s.messages))
    s.close()
    c = seq(want[333][1])
    s = ws_bin.Stream(port, SUB + "?cursor=%d" % c).read(quiet=2)
    check("--seq source from the middle: seq > cursor exactly", [seq(w) for w in s.messages] ==
          [seq(w) for o, w in want[334:] if o != victim], c, [seq(w) for w in s.messages[:3]])
    s.close()
    last = seq(want[-1][1])
    s = ws_bin.Stream(port, SUB + "?cursor=%d" % (last + 1)).read(deadline=30)
    pl = ws_bin.message(s.messages[0])[1] if s.messages else {}
    check("--seq source: a cursor past the last seq is FutureCursor", pl.get("error") == "FutureCursor", pl)

    # --- 100 subscribers at once --------------------------------------------------------------
    results = {}
    want_seqs = [(o, seq(w)) for o, w in want]

    def consumer(k):
        start = len(want) - 2 - (k * 7) % 400  # 100 different cursors among the last 400 messages
        cur = want_seqs[start][1]
        expect = sum(1 for o, _ in want_seqs[start + 1:] if o != victim)
        st = ws_bin.Stream(port, SUB + "?cursor=%d" % cur).read(want=expect, quiet=3, deadline=240)
        results[k] = (start, st.messages)
        st.close()

    threads = [threading.Thread(target=consumer, args=(k,)) for k in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    by_seq = {s: w for (o, s), (_, w) in zip(want_seqs, want) if o != victim}
    exact = all(k in results and results[k][1] == [by_seq[s] for o, s in want_seqs[results[k][0] + 1:] if o != victim]
                for k in range(100))
    check("100 subscribers at once at different cursors: each gets exactly its range", exact,
          [k for k in range(100) if k not in results])

    # --- a subscriber that stops reading -------------------------------------------------------
    stop(p)
    p, port, errp = serve(arch, "--stall-timeout", "2")
    rss0 = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % p.pid).read()).group(1))
    s = ws_bin.Stream(port, SUB + "?cursor=0", rcvbuf=4096)
    time.sleep(6)  # reads nothing: the server's socket fills, then the stall timeout runs out
    rss1 = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % p.pid).read()).group(1))
    s.read(want=10**9, quiet=20, deadline=60)
    check("a subscriber that stops reading: ConsumerTooSlow, close 1008 (or cut when its socket stays full)",
          (s.end == "close" and s.close_code == 1008 and s.close_reason == "ConsumerTooSlow") or s.end in ("eof", "reset"),
          s.end, s.close_code, s.close_reason)
    check("... and the server's memory stayed flat meanwhile (< 16 MiB growth)", rss1 - rss0 < 16384, rss0, rss1)
    s.close()
    stop(p)

    # --- live tail across a kill -9 of cvl-pack -----------------------------------------------
    live = os.path.join(tmp, "live")
    data = open(src_frames, "rb").read()
    recs = list(ws_bin.records(data))
    first = b"".join(data[a:b] for a, b, _ in recs[:100])
    r = run([tool("cvl-pack"), "-o", live], input=first)
    p, port, errp = serve(live)
    s = ws_bin.Stream(port, SUB + "?cursor=0")
    s.read(want=sum(1 for _, _, e in recs[:100] if "wire" in e), quiet=1, deadline=30)
    n_before = len(s.messages)
    pack = subprocess.Popen([tool("cvl-pack"), "-o", live], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    part = b"".join(data[a:b] for a, b, _ in recs[100:400])
    pack.stdin.write(part)
    pack.stdin.flush()
    time.sleep(1)
    pack.kill()  # kill -9 while serving live
    pack.wait()
    rest = b"".join(data[a:b] for a, b, _ in recs[400:])
    r2 = run([tool("cvl-pack"), "-o", live], input=rest)
    total = sum(1 for _, _, e in recs if "wire" in e)
    s.read(want=total, quiet=3, deadline=120)
    livewant = [o + 1 for o, e in enumerate(e for _, _, e in recs) if "wire" in e]
    check("live tail across kill -9 of cvl-pack and its restart: every message once, in order",
          [seq(w) for w in s.messages] == livewant and n_before > 0, n_before, len(s.messages), total,
          r2.stderr.decode()[-500:])
    s.close()
    stop(p)

    # --- a corrupted segment -------------------------------------------------------------------
    for root, _, files in os.walk(os.path.join(arch, "shard")):
        for f in files:
            if f.startswith("00000000-"):
                path = os.path.join(root, f)
                b = bytearray(open(path, "rb").read())
                for i in range(len(b) // 3, min(len(b), len(b) // 3 + 8)):
                    b[i] ^= 0x5a
                open(path, "wb").write(bytes(b))
    p, port, errp = serve(arch)
    s = ws_bin.Stream(port, SUB + "?cursor=0").read(want=len(want), quiet=3, deadline=60)
    pl = ws_bin.message(s.messages[-1])[1] if s.messages else {}
    check("a corrupted segment: the subscriber reaching it gets ArchiveError naming the file, close 1011",
          pl.get("error") == "ArchiveError" and "shard/" in pl.get("message", "") and s.close_code == 1011,
          pl, s.end, s.close_code)
    later = want[-100][0]
    s2 = ws_bin.Stream(port, SUB + "?cursor=%d" % (later + 1)).read(want=99, quiet=2)
    check("... a subscriber past it is served", len(s2.messages) >= 99 and
          all(ws_bin.message(w)[0].get("op") == 1 for w in s2.messages), len(s2.messages))
    stop(p)
    check("cvl-serve reports the damage on stderr", "ArchiveError" not in "" and "shard/" in open(errp).read(),
          open(errp).read()[-600:])

    # --- usage -------------------------------------------------------------------------------
    r = run([tool("cvl-serve"), os.path.join(tmp, "nothing")])
    check("no such archive: exit 2", r.returncode == 2 and b"nothing" in r.stderr, r.returncode, r.stderr.decode())
    r = run([tool("cvl-serve"), arch, "--seq", "bogus"])
    check("--seq bogus: usage error", r.returncode == 2, r.stderr.decode())
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()

sys.exit(_checks.summary())
