#!/usr/bin/env python3
"""The taps over NATS JetStream (docs/design.md §12): three `mesh-tap --shard k/3 --to
nats://…/fh.src.pds.{pp}` and one `relay-tap --to nats://…/fh.src.relay.{pp}` against
`mesh-sim serve --pdses 60 --relay`, the stream read back with `frame-cat --from nats://…` and
scored against the simulator's truth (score.py): every event exactly once, none outside the
truth; the shards disjoint and covering every host; kill -9 of a tap at random moments (3
times) and its restart; a change from 3 shards to 2 (the moved hosts resume from the bucket's
cursors); the nats-server restarted mid-run (nothing the cursors say was stored is missing);
an unreachable server, a missing stream and a subject no stream holds end a tap with exit 2;
bad --shard values and --state with --to are usage errors.

usage: nats_taps.py BUILD_DIR
Exit 77 (skipped) when nats-server is not installed. A private server on a free loopback port
(tests/cli/nats_server.py); every wait has a generous limit, nothing asserts on timing."""
import base64, json, os, random, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nats_server  # noqa: E402
import score  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, kill_all, stop, wait_for  # noqa: E402

if not nats_server.find_binary():
    print("skipped: nats-server is not installed (scripts/setup.sh installs it)")
    sys.exit(77)

build = os.path.abspath(sys.argv[1])
tool = lambda name: os.path.join(build, "tools", name)
tmp = tempfile.mkdtemp(prefix="sov-nats-taps-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check
rng = random.Random(int(os.environ.get("SEED", time.time())))

PDSES, E, R = 60, 6000, 100  # about 60 s of traffic
HOSTS = ["pds%d.test" % i for i in range(PDSES)]


# ---- the bucket fh_cursors, read and written by the test itself ------------------------------

def kv_key(key):
    """The bucket's key of a label, as lib/nats writes it (bytes outside [-_/A-Za-z0-9] as =XX)."""
    ok_chars = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/")
    return "".join(chr(c) if c in ok_chars else "=%02X" % c for c in key.encode())


def kv_put(port, key, value):
    ack = json.loads(nats_server.request("nats://127.0.0.1:%d" % port, "$KV.fh_cursors." + kv_key(key),
                                         value.encode()) or b"{}")
    assert "seq" in ack, ack


def kv_get(port, key):
    """The value of `key` in fh_cursors (str), or None."""
    r = nats_server.request("nats://127.0.0.1:%d" % port, "$JS.API.STREAM.MSG.GET.KV_fh_cursors",
                            {"last_by_subj": "$KV.fh_cursors." + kv_key(key)})
    j = json.loads(r or b"{}")
    if "message" not in j:
        return None
    return base64.b64decode(j["message"].get("data", "")).decode()


# ---- the hash of the shards, as lib/nats computes it ------------------------------------------

def owner(host, n):
    import hashlib
    best, best_w = 1, -1
    for k in range(1, n + 1):
        w = int.from_bytes(hashlib.sha256((host + "\n" + str(k)).encode()).digest()[:8], "big")
        if w > best_w:
            best, best_w = k, w
    return best


# ---- helpers ----------------------------------------------------------------------------------

T0 = time.time()


def note(text):
    """A progress line with the seconds since the start (a slow phase shows in the log)."""
    print("# %5.1f s: %s" % (time.time() - T0, text), flush=True)


def run(args, limit=120):
    return subprocess.run(args, capture_output=True, timeout=limit)


def start_tap(args, name):
    err = open(os.path.join(tmp, name + ".err"), "w+")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    p.err_file, p.name = err, name
    return p


def err_of(p):
    p.err_file.seek(0)
    return p.err_file.read()


def start_mesh(ns, k, n):
    return start_tap([tool("mesh-tap"), "--hosts", hosts_file, "--shard", "%d/%d" % (k, n), "-q",
                      "--to", ns.url + "/fh.src.pds.{pp}"], "mesh-%d-of-%d-%d" % (k, n, len(procs)))


def start_reader(ns, consumer, filt, path):
    """`frame-cat --from nats://…/FH_SRC?consumer=NAME&filter=SUBJ` in the background, into `path`
    (it acks each frame once written); stopped with SIGTERM at the end."""
    p = subprocess.Popen([tool("frame-cat"), "--from", "%s/FH_SRC?consumer=%s&filter=%s" % (ns.url, consumer, filt),
                          "-q"], stdout=open(path, "wb"), stderr=open(path + ".err", "w"))
    procs.append(p)
    return p


def read_so_far(path, start=0):
    """The records of a frame file being written, from byte `start` to its last complete record:
    (records, end offset)."""
    data = open(path, "rb").read()
    end = ws_bin.complete_prefix(data)
    return score.records(data[start:end]), end


def report(verdicts):
    return [v.line() + "".join("\n        " + p for p in v.problems) for v in verdicts.values()]


def marks_by_src(recs, kind):
    """{src: [mark of `kind`, …]} of records() tuples, in order."""
    out = {}
    for src, _, mark, _, _ in recs:
        if isinstance(mark, dict) and mark.get("kind") == kind:
            out.setdefault(src, []).append(mark)
    return out


try:
    ns = nats_server.NatsServer(tmp).start()
    r = run([tool("frame-cat"), "--nats-setup", ns.url])
    check("frame-cat --nats-setup creates the streams and the bucket", r.returncode == 0, r.stderr.decode())

    truth = os.path.join(tmp, "truth.frames")
    sim, port = ws_bin.start_sim(tool("mesh-sim"), tmp, "sim", "--pdses", str(PDSES), "--relay", "--rate", str(R),
                                 "--events", str(E), "--seed", "13", "--pds-window", "1000000", "--relay-window",
                                 "1000000", "--truth", truth)
    procs.append(sim)
    hosts_file = os.path.join(tmp, "hosts.txt")
    with open(hosts_file, "w") as f:
        for i in range(PDSES):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    # Every host from its first event: cursor 0 in the bucket (as a tap that ran before left it).
    for h in HOSTS:
        kv_put(ns.port, h, "0")
    check("the test's client writes and reads the bucket fh_cursors", kv_get(ns.port, HOSTS[0]) == "0",
          kv_get(ns.port, HOSTS[0]))

    # ---- usage and refusals (fast, before the traffic matters) ------------------------------
    note("usage and refusals")
    for bad_shard in ("0/3", "4/3", "3", "1/1001", "x/3"):
        r = run([tool("mesh-tap"), "--hosts", hosts_file, "--shard", bad_shard, "--to", ns.url + "/fh.src.pds.{pp}"])
        check("mesh-tap --shard %s: usage error, exit 2, the message says K/N" % bad_shard,
              r.returncode == 2 and b"--shard" in r.stderr and b"K/N" in r.stderr, r.returncode, r.stderr)
    r = run([tool("mesh-tap"), "--hosts", hosts_file, "--state", os.path.join(tmp, "st"), "--to",
             ns.url + "/fh.src.pds.{pp}"])
    check("mesh-tap --state with --to nats://: usage error naming the bucket", r.returncode == 2
          and b"fh_cursors" in r.stderr, r.returncode, r.stderr)
    r = run([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--cursor-file", os.path.join(tmp, "c"), "--to",
             ns.url + "/fh.src.relay.{pp}"])
    check("relay-tap --cursor-file with --to nats://: usage error", r.returncode == 2 and b"fh_cursors" in r.stderr,
          r.returncode, r.stderr)
    r = run([tool("mesh-tap"), "--hosts", hosts_file, "--state", os.path.join(tmp, "st"), "--partitions", "4"])
    check("--partitions without --to nats://: usage error", r.returncode == 2 and b"--to nats" in r.stderr, r.stderr)
    dead = nats_server.free_port()
    r = run([tool("mesh-tap"), "--hosts", hosts_file, "--to", "nats://127.0.0.1:%d/fh.src.pds.{pp}" % dead, "-q"])
    check("mesh-tap --to an unreachable server: exit 2, 'cannot connect' named", r.returncode == 2
          and b"cannot connect" in r.stderr, r.returncode, r.stderr)
    bare = nats_server.NatsServer(tmp, "bare").start()  # JetStream, but no --nats-setup
    r = run([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--to", bare.url + "/fh.src.relay.{pp}", "-q"])
    check("relay-tap --to a server without the streams: exit 2, the message says --nats-setup",
          r.returncode == 2 and b"FH_SRC" in r.stderr and b"--nats-setup" in r.stderr, r.returncode, r.stderr)
    bare.stop()
    # A subject no stream holds: the taps can connect, the stream refuses the frames (no
    # responders) for good: the tap ends, exit 2, after its grace period (20 s) — in the background.
    stray_hosts = os.path.join(tmp, "stray-hosts.txt")
    open(stray_hosts, "w").write("ws://127.0.0.1:%d/pds/0 stray0.test\n" % port)
    stray = start_tap([tool("mesh-tap"), "--hosts", stray_hosts, "-q", "--to", ns.url + "/nowhere.{pp}"], "stray")

    # ---- three shards and the relay ------------------------------------------------------------
    note("three shards and the relay")
    taps = {k: start_mesh(ns, k, 3) for k in (1, 2, 3)}
    relay = start_tap([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--src", "relay.test", "--cursor", "0",
                       "-q", "--to", ns.url + "/fh.src.relay.{pp}"], "relay")
    wait_for(lambda: all("to follow" in err_of(p) for p in taps.values()), limit=60)
    want = {k: sum(1 for h in HOSTS if owner(h, 3) == k) for k in (1, 2, 3)}
    said = {k: ("shard %d/3: %d of %d hosts" % (k, want[k], PDSES)) in err_of(p) for k, p in taps.items()}
    check("--shard k/3: each tap takes the hosts the rendezvous hash gives it (counts %s, sum %d)" % (
        want, sum(want.values())), all(said.values()) and sum(want.values()) == PDSES,
          said, *[err_of(p)[-300:] for p in taps.values()])
    check("each shard tap read its hosts' cursors from the bucket",
          all("%d cursors from the bucket fh_cursors" % want[k] in err_of(p) for k, p in taps.items()),
          *[err_of(p)[-300:] for p in taps.values()])
    stream = os.path.join(tmp, "stream.frames")
    reader = start_reader(ns, "check", "fh.src.pds.>", stream)
    wait_for(lambda: len(marks_by_src(read_so_far(stream)[0], "connect")) >= PDSES, limit=120)
    time.sleep(2)
    con = marks_by_src(read_so_far(stream)[0], "connect")
    check("the shards are disjoint and cover every host: one connect marker per host, all %d hosts" % PDSES,
          sorted(con) == sorted(HOSTS) and all(len(v) == 1 for v in con.values()),
          {h: len(v) for h, v in con.items() if len(v) != 1}, sorted(set(HOSTS) - set(con))[:10])
    check("every first connect resumed from the bucket's cursor 0",
          all(v[0].get("cursor") == 0 for v in con.values()), list(con.items())[:3])

    # ---- kill -9 at random moments, restart -------------------------------------------------
    note("kill -9 series")
    kills = []
    for i in range(3):
        time.sleep(rng.uniform(1.0, 4.0))
        k = rng.choice([1, 2, 3])
        taps[k].kill()
        taps[k].wait()
        kills.append(k)
        taps[k] = start_mesh(ns, k, 3)
        wait_for(lambda: "to follow" in err_of(taps[k]), limit=60)
    ok("kill -9 of shard taps %s at random moments, each restarted" % kills)
    time.sleep(3)

    # ---- from 3 shards to 2: stop all, start k/2 -------------------------------------------
    note("3 -> 2 shards")
    codes = {k: stop(p) for k, p in taps.items()}
    check("the three shard taps stop cleanly on SIGTERM (exit 0)", all(c == 0 for c in codes.values()), codes,
          *[err_of(p)[-400:] for p in taps.values()])
    check("a stopped tap says how many frames the stream stored",
          all("frames stored" in err_of(p) for p in taps.values()),
          *[err_of(p)[-400:] for p in taps.values()])
    saved = {h: kv_get(ns.port, h) for h in HOSTS}

    def all_closed():
        recs = read_so_far(stream)[0]
        c, d = marks_by_src(recs, "connect"), marks_by_src(recs, "disconnect")
        return all(len(c.get(h, [])) == len(d.get(h, [])) + kill_count.get(h, 0) for h in HOSTS)
    kill_count = {}
    for k in kills:
        for h in HOSTS:
            if owner(h, 3) == k:
                kill_count[h] = kill_count.get(h, 0) + 1
    closed = wait_for(all_closed, limit=120)
    mark = read_so_far(stream)[1]
    taps = {k: start_mesh(ns, k, 2) for k in (1, 2)}
    wait_for(lambda: all("to follow" in err_of(p) for p in taps.values()), limit=60)
    moved = [h for h in HOSTS if owner(h, 3) != owner(h, 2)]
    wait_for(lambda: all(h in marks_by_src(read_so_far(stream, mark)[0], "connect") for h in moved), limit=120)
    con = marks_by_src(read_so_far(stream, mark)[0], "connect")
    resumed = [h for h in moved if con.get(h) and str(con[h][0].get("cursor")) == saved[h]]
    check("3 → 2 shards: the %d moved hosts resume at the cursor their old owner left in the bucket" % len(moved),
          closed and moved and len(resumed) == len(moved), closed, moved,
          {h: (saved[h], con.get(h, [{}])[0].get("cursor")) for h in moved if h not in resumed})

    # ---- the nats-server restarted mid-run ------------------------------------------------------
    note("server restart")
    time.sleep(2)
    at_restart = {h: int(kv_get(ns.port, h)) for h in HOSTS}
    ns.restart()
    time.sleep(3)
    at_kill = {h: int(kv_get(ns.port, h)) for h in HOSTS}
    ns.restart(kill=True)
    ok("nats-server restarted while the taps publish: stopped (SIGTERM), then 3 s later killed (SIGKILL)")

    # ---- the end: every event out, the taps catch up, the whole stream scored ------------------
    note("catching up")
    wait_for(lambda: os.path.exists(truth) and sum(1 for r in score.records(truth) if r[2] is None) >= 2 * E,
             limit=300, step=1)
    time.sleep(1.5)  # the truth file's once-a-second flush
    pds_truth = {}
    for src, _, mark, wire, _ in score.records(truth):
        if mark is None and src in HOSTS:
            pds_truth.setdefault(src, []).append(bytes(wire))
    last_wire = {s: w[-1] for s, w in pds_truth.items()}

    def caught_up():
        have = set(bytes(r[3]) for r in read_so_far(stream)[0] if r[2] is None)
        return all(w in have for w in last_wire.values())
    caught = wait_for(caught_up, limit=240, step=1)
    codes = {k: stop(p) for k, p in taps.items()}
    rcode = stop(relay)
    wait_for(all_closed, limit=60)
    time.sleep(1)
    stop(reader)
    # The live reader's acks of the last moments before the SIGKILL may be lost with the server,
    # which then delivers those messages again (at least once): what the stream holds is read
    # by a new consumer, in one go, with the server up.
    whole = os.path.join(tmp, "whole.frames")
    rw = run([tool("frame-cat"), "--from", "%s/FH_SRC?consumer=whole&filter=fh.src.pds.>" % ns.url, "--wait", "3",
              "-q"], limit=300)
    open(whole, "wb").write(rw.stdout)
    check("a new consumer reads the whole stream back (exit 0)", rw.returncode == 0, rw.returncode, rw.stderr)
    outputs = [whole]
    v = score.score(truth, outputs, only=HOSTS)
    check("the stream holds every PDS event exactly once, in each host's order, none outside the truth "
          "(3 shards, 3 kills, 3 → 2 shards, a server restart)",
          caught and all(x.ok and x.excused == 0 for x in v.values()), caught,
          *[l for l, x in zip(report(v), v.values()) if not x.ok or x.excused])
    check("the 2 shard taps and relay-tap stop cleanly after the server restart (exit 0)",
          all(c == 0 for c in codes.values()) and rcode == 0, codes, rcode,
          *[err_of(p)[-600:] for p in list(taps.values()) + [relay]])
    relay_out = os.path.join(tmp, "relay.frames")
    rr = run([tool("frame-cat"), "--from", "%s/FH_SRC?consumer=relay&filter=fh.src.relay.>" % ns.url, "--wait", "3",
              "-q"], limit=300)
    open(relay_out, "wb").write(rr.stdout)
    vr = score.score(truth, [relay_out], only=["relay.test"])
    check("relay-tap --to nats://: the relay's events exactly once in fh.src.relay.*", rr.returncode == 0 and all(
        x.ok and x.excused == 0 for x in vr.values()), rr.stderr, *report(vr))
    check("relay-tap saved its cursor in the bucket (key relay.test)",
          kv_get(ns.port, "relay.test") not in (None, "0"), kv_get(ns.port, "relay.test"))

    # What the cursors said before the restart was stored is in the stream.
    have = {}
    for p in outputs:
        for src, _, mark, wire, _ in score.records(p):
            if mark is None and wire is not None:
                s = score.seq_of(wire)
                if s is not None:
                    have.setdefault(src, set()).add(s)
    truth_seqs = {h: [score.seq_of(w) for w in ws] for h, ws in pds_truth.items()}
    missing = {h: [s for s in truth_seqs.get(h, []) if s <= max(at_restart[h], at_kill[h]) and s not in have.get(h, set())][:5]
               for h in HOSTS}
    missing = {h: m for h, m in missing.items() if m}
    check("after the server restarts: every seq up to the cursors the bucket held before each is in the stream",
          not missing and sum(at_restart.values()) > 0 and sum(at_kill.values()) > sum(at_restart.values()), missing)

    # ---- a subject no stream holds -----------------------------------------------------------
    note("the stray tap")
    wait_for(lambda: stray.poll() is not None, limit=120)
    se = err_of(stray)
    check("a subject no stream holds: the tap ends with exit 2, naming the refusal and that cursors did not move",
          stray.returncode == 2 and "no responders" in se.lower() and "not stored" in se, stray.returncode, se[-1500:])
finally:
    kill_all(procs)
    try:
        ns.stop(kill=True)
    except NameError:
        pass
sys.exit(_checks.summary())
