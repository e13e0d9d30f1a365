#!/usr/bin/env python3
"""The whole pipeline over NATS JetStream (docs/design.md §12), as separate processes against a
private nats-server: `mesh-sim serve --pdses 2000 --relay --truth FILE --did-docs FILE`; three
`mesh-tap --shard k/3 --to nats://…/fh.src.pds.{pp}` (all 2000 hosts between them, cursors in
the bucket fh_cursors); two `cbor-verify --nats --own k/2`; one `cvl-pack --from-nats …/FH_VRD`.
A random one of the six stages is killed with -9 at random moments and restarted with the same
command (6 times, each stage once; 20 with --slow, each stage 3 or 4 times), and the nats-server itself is killed (-9) and restarted once.
At the end (the simulator done, the taps caught up, the verifiers and the packer drained with
--wait), the archive read with `cvl-cat DIR` holds every PDS event of the truth exactly once
(by wire bytes per source; markers aside), nothing outside the truth, every message with a
passing verdict, and a stable order (cvl-cat twice gives the same bytes; per DID, the events
are in the truth's order). No stage may exit on its own meanwhile.

usage: nats_pipeline.py BUILD_DIR [--slow]     (SEED=N in the environment repeats a run)
Exit 77 (skipped) when nats-server is not installed. Every wait has a generous limit; nothing
asserts on timing."""
import base64, collections, json, os, random, re, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nats_server  # noqa: E402
import score  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, kill_all, stop, wait_for  # noqa: E402

if not nats_server.find_binary():
    print("skipped: nats-server is not installed (scripts/setup.sh installs it)")
    sys.exit(77)

build = os.path.abspath(sys.argv[1])
slow = "--slow" in sys.argv
tool = lambda name: os.path.join(build, "tools", name)
tmp = tempfile.mkdtemp(prefix="sov-nats-pipeline-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check
seed = int(os.environ.get("SEED", int(time.time())))
rng = random.Random(seed)

PDSES = 2000
HOSTS = ["pds%d.test" % i for i in range(PDSES)]
HOST_SET = set(HOSTS)
# Events and rate: the traffic lasts E / R seconds, long enough to spread the kills over it.
E, R, KILLS = (30000, 250, 20) if slow else (12000, 300, 6)
PASSING = {"ok", "ok-gap", "skip"}
T0 = time.time()


def note(text):
    print("# %5.1f s: %s" % (time.time() - T0, text), flush=True)


# ---- a minimal NATS client on one socket (the bucket fh_cursors) --------------------------------

class Nats:
    """request(subject, payload) → the reply's payload (bytes), or None for "no responders"."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""
        self._line()  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
                       b"SUB _INBOX.pipeline 1\r\nPING\r\n")
        while self._line() != b"PONG":
            pass

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise OSError("nats-server closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, payload=b""):
        self.s.sendall(b"PUB %s _INBOX.pipeline %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        while True:
            line = self._line()
            if line == b"PING":
                self.s.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                return self._bytes(int(line.split()[-1]))
            elif line.startswith(b"HMSG "):
                hlen, total = int(line.split()[-2]), int(line.split()[-1])
                data = self._bytes(total)
                if b"503" in data[:hlen].split(b"\r\n")[0]:
                    return None
                return data[hlen:]
            elif line.startswith(b"-ERR"):
                raise OSError(line.decode())

    def close(self):
        self.s.close()


def kv_key(key):
    """The bucket's key of a label, as lib/nats writes it (bytes outside [-_/A-Za-z0-9] as =XX)."""
    ok_chars = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/")
    return "".join(chr(c) if c in ok_chars else "=%02X" % c for c in key.encode())


def kv_put(c, key, value):
    ack = json.loads(c.request("$KV.fh_cursors." + kv_key(key), value.encode()) or b"{}")
    assert "seq" in ack, ack


def kv_get(c, key):
    r = c.request("$JS.API.STREAM.MSG.GET.KV_fh_cursors",
                  json.dumps({"last_by_subj": "$KV.fh_cursors." + kv_key(key)}).encode())
    j = json.loads(r or b"{}")
    if "message" not in j:
        return None
    return base64.b64decode(j["message"].get("data", "")).decode()


# ---- the stages -----------------------------------------------------------------------------------

class Stage:
    """One process of the pipeline: its command, its stderr (appended across restarts), its
    restarts and the exits it made on its own."""

    def __init__(self, name, args):
        self.name, self.args, self.p = name, args, None
        self.err_path = os.path.join(tmp, name + ".err")
        self.kills = 0
        self.own_exits = []

    def start(self, args=None):
        err = open(self.err_path, "a")
        err.write("---- %.1f s: %s\n" % (time.time() - T0, " ".join(args or self.args)))
        err.flush()
        self.p = subprocess.Popen(args or self.args, stdout=subprocess.DEVNULL, stderr=err)
        procs.append(self.p)
        return self

    def kill(self):
        self.p.kill()
        self.p.wait()
        self.kills += 1

    def tail(self, n=1500):
        return open(self.err_path, errors="replace").read()[-n:]


try:
    ns = nats_server.NatsServer(tmp).start()
    r = subprocess.run([tool("frame-cat"), "--nats-setup", ns.url], capture_output=True, timeout=120)
    check("frame-cat --nats-setup creates the streams and the bucket", r.returncode == 0, r.stderr.decode())

    truth = os.path.join(tmp, "truth.frames")
    dd = os.path.join(tmp, "did-docs.json")
    note("seed %d: mesh-sim serve --pdses %d --relay, %d events at %d/s; %d kills" % (seed, PDSES, E, R, KILLS))
    sim, port = ws_bin.start_sim(tool("mesh-sim"), tmp, "sim", "--pdses", str(PDSES), "--relay", "--rate", str(R),
                                 "--events", str(E), "--seed", str(seed % 1000 + 1), "--pds-window", "1000000",
                                 "--relay-window", "1000000", "--truth", truth, "--did-docs", dd)
    procs.append(sim)
    hosts_file = os.path.join(tmp, "hosts.txt")
    with open(hosts_file, "w") as f:
        for i in range(PDSES):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    # Every host from its first event: cursor 0 in the bucket (as a tap that ran before left it).
    kv = Nats(ns.port)
    for h in HOSTS:
        kv_put(kv, h, "0")
    kv.close()

    arch = os.path.join(tmp, "arch")
    stages = {}
    for k in (1, 2, 3):
        stages["tap%d" % k] = Stage("tap%d" % k, [tool("mesh-tap"), "--hosts", hosts_file, "--shard", "%d/3" % k,
                                                  "--to", ns.url + "/fh.src.pds.{pp}"])
    for k in (1, 2):
        stages["verify%d" % k] = Stage("verify%d" % k, [
            tool("cbor-verify"), "--did-docs", dd, "--nats", ns.url, "--own", "%d/2" % k,
            "--state", os.path.join(tmp, "verify-state-%d" % k)])
    stages["pack"] = Stage("pack", [tool("cvl-pack"), "-o", arch, "--from-nats", ns.url + "/FH_VRD"])
    for s in stages.values():
        s.start()

    def watch():
        """Restarts a stage that exited on its own (none should), noting it."""
        for s in stages.values():
            if s.p.poll() is not None:
                s.own_exits.append((round(time.time() - T0, 1), s.p.returncode))
                note("%s exited on its own with status %d; restarted" % (s.name, s.p.returncode))
                s.start()

    # ---- kill -9 at random moments over the traffic, and the server once ---------------------
    span = E / R
    moments = sorted(rng.uniform(5, span - 5) for _ in range(KILLS + 1))
    server_at = rng.randrange(1, KILLS)  # one of the moments, not the first nor the last
    killed = []
    for i, at in enumerate(moments):
        while time.time() - T0 < at:
            watch()
            time.sleep(0.2)
        if i == server_at:
            note("kill -9 of nats-server")
            ns.restart(kill=True)
            note("nats-server back")
            killed.append("nats-server")
            continue
        fewest = min(s.kills for s in stages.values())  # every stage before any twice
        s = stages[rng.choice(sorted(n for n, s in stages.items() if s.kills == fewest))]
        s.kill()
        note("kill -9 of %s; restarted" % s.name)
        s.start()
        killed.append(s.name)
    ok("kill -9 at random moments, each stage restarted with the same command: %s"
       % ", ".join("%s×%d" % (n, c) for n, c in sorted(collections.Counter(killed).items())))

    # ---- the end: the simulator done, the taps caught up ------------------------------------
    note("waiting for the simulator's last event")
    done = wait_for(lambda: (watch() or True) and os.path.exists(truth)
                    and sum(1 for r in score.records(truth) if r[2] is None) >= 2 * E, limit=600, step=2)
    time.sleep(1.5)  # the truth file's once-a-second flush
    check("the simulator emitted its %d events" % E, done)
    pds_truth = collections.defaultdict(list)
    for src, _, mark, wire, _ in score.records(truth):
        if mark is None and src in HOST_SET:
            pds_truth[src].append(bytes(wire))
    last_seq = {h: score.seq_of(w[-1]) for h, w in pds_truth.items()}
    pending = set(last_seq)
    kv = None

    def caught_up():
        """Every host's cursor in the bucket at its last truth seq (what the stream holds)."""
        global kv
        watch()
        try:
            kv = kv or Nats(ns.port)
            for h in sorted(pending):
                v = kv_get(kv, h)
                if v is not None and int(v) >= last_seq[h]:
                    pending.discard(h)
        except OSError:
            kv = None
        return not pending

    note("waiting for the taps to catch up (%d hosts with events)" % len(last_seq))
    caught = wait_for(caught_up, limit=600, step=2)
    check("the taps caught up: every host's cursor in fh_cursors at its last truth seq (%d hosts)" % len(last_seq),
          caught, sorted(pending)[:10])
    codes = {n: stop(stages[n].p) for n in ("tap1", "tap2", "tap3")}
    check("the taps stop cleanly on SIGTERM (exit 0)", all(c == 0 for c in codes.values()), codes,
          *[stages[n].tail(600) for n in codes])

    # ---- drained: the verifiers, then the packer, with --wait -------------------------------
    note("draining the verifiers")
    codes = {n: stop(stages[n].p) for n in ("verify1", "verify2")}
    check("the following verifiers stop cleanly on SIGTERM (exit 0)", all(c == 0 for c in codes.values()), codes,
          *[stages[n].tail(600) for n in codes])
    for n in ("verify1", "verify2"):
        stages[n].start(stages[n].args + ["--wait", "5"])
    codes = {n: stages[n].p.wait(900) for n in ("verify1", "verify2")}
    check("the verifiers drain FH_SRC with --wait 5 (exit 0)", all(c == 0 for c in codes.values()), codes,
          *[stages[n].tail(600) for n in codes])
    note("draining the packer")
    code = stop(stages["pack"].p)
    check("the following packer stops cleanly on SIGTERM (exit 0)", code == 0, code, stages["pack"].tail())
    stages["pack"].start(stages["pack"].args + ["--wait", "5"])
    code = stages["pack"].p.wait(900)
    check("the packer drains FH_VRD with --wait 5 (exit 0)", code == 0, code, stages["pack"].tail())
    own = {n: s.own_exits for n, s in stages.items() if s.own_exits}
    # What the restarts did again (the summaries of the runs that were not killed), for the log.
    for n, s in stages.items():
        text = open(s.err_path, errors="replace").read()
        held = [int(x.replace(",", "")) for x in re.findall(r"([0-9,]+) already held", text)]
        recovered = [int(x.replace(",", "")) for x in re.findall(r"([0-9,]+) frames recovered from the journal", text)]
        reordered = re.findall(r"([0-9,]+) stored out of publish order", text)
        note("%s, killed %d times: %s%s" % (n, s.kills, "runs recovering journal frames: %s" % recovered if n == "pack"
                                            else "already held (published again, dropped by the stream) in the "
                                                 "summaries: %s" % held,
                                            "; STORED OUT OF PUBLISH ORDER: %s" % reordered if reordered else ""))
    check("no stage exited on its own during the run", not own, own, *[stages[n].tail() for n in own])

    # ---- the archive against the truth ------------------------------------------------------
    note("checking the archive")
    r1 = subprocess.run([tool("cvl-cat"), arch, "-q"], capture_output=True, timeout=600)
    r2 = subprocess.run([tool("cvl-cat"), arch, "-q"], capture_output=True, timeout=600)
    check("cvl-cat DIR reads the archive (exit 0)", r1.returncode == 0 and r2.returncode == 0, r1.stderr.decode())
    same = r1.stdout == r2.stdout
    del r2
    recs = score.records(r1.stdout)
    check("the order is stable: cvl-cat twice gives the same bytes (%d records, %d bytes)"
          % (len(recs), len(r1.stdout)), same and recs)

    truth_count = collections.Counter((h, w) for h, ws in pds_truth.items() for w in ws)
    got = collections.Counter()
    markers = 0
    verdicts = collections.Counter()
    outside = []
    for src, _, mark, wire, env in recs:
        if mark is not None:
            markers += 1
            continue
        key = (src, bytes(wire))
        got[key] += 1
        verdicts[env.get("vrd")] += 1
        if key not in truth_count:
            outside.append((src, score.seq_of(key[1])))
    total = sum(truth_count.values())
    missing = truth_count - got
    twice = {k: n for k, n in got.items() if n > 1}
    check("every PDS event of the truth is in the archive (%d of %d events, %d hosts; %d markers aside)"
          % (total - sum(missing.values()), total, len(pds_truth), markers),
          total > 0 and not missing, "missing %d, e.g. %s" % (sum(missing.values()),
                                                              [(h, score.seq_of(w)) for h, w in list(missing)[:10]]))
    check("no event twice (%d events twice)" % len(twice), not twice,
          [(h, score.seq_of(w), n) for (h, w), n in list(twice.items())[:10]])
    check("nothing outside the truth (%d messages outside)" % len(outside), not outside, outside[:10])
    check("every message carries a passing verdict (%s)" % dict(verdicts), set(verdicts) <= PASSING, dict(verdicts))

    # Per DID, the archive's events in the truth's order.
    def did_of(wire):
        _, body = ws_bin.message(wire)
        return body.get("repo") or body.get("did")
    truth_pos = {}  # (src, wire) → its index in the truth file (the order of emission)
    for i, (src, _, mark, wire, _) in enumerate(score.records(truth)):
        if mark is None and src in HOST_SET:
            truth_pos[(src, bytes(wire))] = i
    last = {}
    disorder = []
    dids = set()
    for src, _, mark, wire, _ in recs:
        if mark is not None or (src, bytes(wire)) not in truth_pos:
            continue
        did = did_of(bytes(wire))
        dids.add(did)
        pos = truth_pos[(src, bytes(wire))]
        if did in last and last[did] > pos:
            disorder.append((did, src, score.seq_of(bytes(wire))))
        last[did] = pos
    check("per DID, the archive's events are in the truth's order (%d DIDs, %d out of order)"
          % (len(dids), len(disorder)), dids and not disorder, disorder[:10])
finally:
    kill_all(procs)
    try:
        ns.stop(kill=True)
    except NameError:
        pass
status = _checks.summary()
if status == 0:
    shutil.rmtree(tmp, ignore_errors=True)
else:
    print("# the run's files (logs *.err, truth, archive): " + tmp)
sys.exit(status)
