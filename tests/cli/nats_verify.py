#!/usr/bin/env python3
"""cbor-verify --nats: verifiers that own partitions of FH_SRC and publish what passes to FH_VRD,
against a private nats-server. The frames that reach FH_VRD are exactly those a single
cbor-verify passes on the same stream, each once: with two verifiers; with verifiers killed
(-9) at random moments and restarted; when a third verifier joins and when one leaves (the
partitions move, nothing lost, nothing twice). Usage errors.

usage: nats_verify.py BUILD_DIR [--slow]   (--slow: 20 kills instead of 5)
Skips (exit 77) when nats-server is not installed. No assertion on timing."""
import collections, os, random, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nats_server  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, kill_all, stop  # noqa: E402

build = os.path.abspath(sys.argv[1])
slow = "--slow" in sys.argv
tool = lambda name: os.path.join(build, "tools", name)
if not nats_server.find_binary():
    print("skipped: nats-server is not installed (scripts/setup.sh installs it)")
    sys.exit(77)
tmp = tempfile.mkdtemp(prefix="sov-nats-verify-")
procs = []
_checks = Checks()
check = _checks.check
rng = random.Random(13)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=600, **kw)


def wires(data):
    """Multiset of (src, wire) of a frame stream's messages."""
    return collections.Counter((env["src"], bytes(env["wire"])) for _, _, env in ws_bin.records(data) if "wire" in env)


server = nats_server.NatsServer(tmp).start()
U = server.url
try:
    dd = os.path.join(tmp, "dd.json")
    frames = os.path.join(tmp, "t.frames")
    with open(frames, "wb") as f:
        subprocess.run([tool("mesh-sim"), "gen", "--no-corpus", "--events", "12000", "--seed", "41", "--did-docs", dd],
                       stdout=f, stderr=subprocess.DEVNULL, check=True)
    local = run([tool("cbor-verify"), "--did-docs", dd, frames, "-q"]).stdout
    want = wires(local)
    check("reference: cbor-verify on the file passes most frames", sum(want.values()) > 11000, sum(want.values()))

    r = run([tool("frame-cat"), "--nats-setup", U])
    check("frame-cat --nats-setup", r.returncode == 0, r.stderr.decode())

    # The first half published now, the rest while the verifiers run and are killed.
    half = os.path.join(tmp, "half.frames")
    rest = os.path.join(tmp, "rest.frames")
    data = open(frames, "rb").read()
    recs = list(ws_bin.records(data))
    cut = recs[len(recs) // 2][0]
    open(half, "wb").write(data[:cut])
    open(rest, "wb").write(data[cut:])
    r = run([tool("frame-cat"), half, "--to", U + "/fh.src.pds.{pp}", "--msg-id", "src-seq"])
    check("first half published", r.returncode == 0, r.stderr.decode())

    # One state file per verifier K/N, kept across N changes: a partition that comes back to an
    # older state file after another verifier moved it on must start fresh there (the state
    # file records how far it holds each partition), not be judged against stale state.
    def verifier(k, n, gen=0):
        err = open(os.path.join(tmp, "v%d-%d.err" % (k, n)), "a")
        p = subprocess.Popen([tool("cbor-verify"), "--did-docs", dd, "--nats", U, "--own", "%d/%d" % (k, n),
                              "--state", os.path.join(tmp, "state-%d-%d-%d" % (k, n, gen)), "--wait", "4"],
                             stdout=subprocess.DEVNULL, stderr=err)
        procs.append(p)
        return p

    vs = {1: verifier(1, 2), 2: verifier(2, 2)}
    pub = subprocess.Popen([tool("frame-cat"), rest, "--to", U + "/fh.src.pds.{pp}", "--msg-id", "src-seq"],
                           stderr=subprocess.PIPE)
    procs.append(pub)
    kills = 20 if slow else 5
    for i in range(kills):
        time.sleep(rng.uniform(0.2, 1.2))
        k = rng.choice([1, 2])
        vs[k].kill()
        vs[k].wait()
        vs[k] = verifier(k, 2)
    perr = pub.communicate(timeout=600)[1].decode()
    check("second half published while the verifiers ran", pub.returncode == 0, perr)

    # A third verifier joins: all stop (SIGTERM, clean), three start; later one leaves.
    time.sleep(1)
    for p in vs.values():
        stop(p)
    three = [verifier(k, 3) for k in (1, 2, 3)]
    time.sleep(1.5)
    three[2].kill()  # and one of them dies
    three[2].wait()
    for p in three[:2]:
        stop(p)
    two = [verifier(k, 2) for k in (1, 2)]
    codes = [p.wait(600) for p in two]
    check("the last verifiers ended after --wait (exit 0)", codes == [0, 0], codes,
          open(os.path.join(tmp, "v1-2.err")).read()[-1500:])

    behind = sum(open(os.path.join(tmp, "v%d-2.err" % k)).read().count("the state file is behind the stream")
                 for k in (1, 2))
    print("# partitions found behind the stream by the returning verifiers: %d" % behind, flush=True)
    r = run([tool("frame-cat"), "--from", U + "/FH_VRD?consumer=check", "--wait", "3"])
    got = wires(r.stdout)
    missing = want - got
    extra = got - want
    twice = sum(1 for v in got.values() if v > 1)
    check("FH_VRD holds exactly the frames a single cbor-verify passes, each once (%d frames; %d kills, "
          "2 → 3 → 2 verifiers)" % (sum(got.values()), kills),
          not missing and not extra and twice == 0,
          "missing %d, extra %d, twice %d" % (sum(missing.values()), sum(extra.values()), twice))
    verdicts = collections.Counter(env.get("vrd") for _, _, env in ws_bin.records(r.stdout))
    check("every frame in FH_VRD carries a passing verdict (%s)" % dict(verdicts),
          set(verdicts) <= {"ok", "ok-gap", "skip"}, dict(verdicts))

    # Usage errors
    for args, what in ((["--nats", "http://x"], "not a nats:// address"),
                       (["--nats", U, "--own", "0/2"], "--own must be K/N"),
                       (["--nats", U, "--own", "3/2"], "--own must be K/N"),
                       (["--own", "1/2"], "works only with --nats"),
                       (["--nats", U, "--partitions", "101"], "--partitions must be"),
                       (["--nats", U, frames], "drop the FILE arguments")):
        r = run([tool("cbor-verify"), "--did-docs", dd] + args)
        check("cbor-verify %s: usage error (exit 2, '%s')" % (" ".join(args).replace(U, "URL"), what),
              r.returncode == 2 and what.encode() in r.stderr, r.returncode, r.stderr.decode())
    server.stop()
    r = run([tool("cbor-verify"), "--did-docs", dd, "--nats", U, "--wait", "1"])
    check("no server: exit 2, 'cannot connect'", r.returncode == 2 and b"cannot connect" in r.stderr,
          r.returncode, r.stderr.decode())
finally:
    kill_all(procs)
    server.stop(kill=True)
sys.exit(_checks.summary())
