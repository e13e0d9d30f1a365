#!/usr/bin/env python3
"""cvl-pack --from-nats against a private nats-server (nats_server.py): the archive equals the
stream byte for byte in stream order (`cvl-cat DIR` = `frame-cat --from nats://…/FH_VRD?consumer=…`),
ordinal = stream sequence − 1; resumes where the archive ends; kill -9 of cvl-pack at random
moments while publishing goes on (3 runs here, 20 with --slow), then a restart: every message
exactly once, in order; a 5 MB frame; the nats-server stopped and killed mid-run: nothing lost;
errors (no server, no stream, a deleted message, messages aged out, a message that is not an
envelope, a filter that skips messages, an archive from another stream, usage), each exit 1 or 2
with the stream sequence named.

usage: nats_pack.py BUILD_DIR [--slow]
Skipped (exit 77) when nats-server is not installed. Bounded in time: every wait has a generous
limit; no assertion on timing."""
import json, os, random, shutil, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nats_server  # noqa: E402
from harness import Checks, kill_all, stop, wait_for  # noqa: E402

build = os.path.abspath(sys.argv[1])
slow = "--slow" in sys.argv
tool = lambda name: os.path.join(build, "tools", name)
if not nats_server.find_binary():
    print("SKIP: nats-server is not installed (scripts/setup.sh installs it)")
    sys.exit(77)
tmp = tempfile.mkdtemp(prefix="sov-npack-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=600, **kw)


def path(name):
    return os.path.join(tmp, name)


js = nats_server.js


def last_seq(url, stream="FH_VRD"):
    return js(url, "STREAM.INFO." + stream)["state"]["last_seq"]


def publish(url, frames_path, subject="fh.vrd.{pp}"):
    r = run([tool("frame-cat"), frames_path, "--to", url + "/" + subject, "-q"])
    if r.returncode != 0:
        raise SystemExit("frame-cat --to failed: " + r.stderr.decode()[-2000:])


consumer_no = [0]


def stream_bytes(url, stream="FH_VRD"):
    """The whole stream as a frame stream, in stream order, through a new durable consumer."""
    consumer_no[0] += 1
    r = run([tool("frame-cat"), "--from", "%s/%s?consumer=ref%d" % (url, stream, consumer_no[0]), "--wait", "2", "-q"])
    if r.returncode != 0:
        raise SystemExit("frame-cat --from failed: " + r.stderr.decode()[-2000:])
    return r.stdout


def archive_bytes(d):
    r = run([tool("cvl-cat"), d, "-q"])
    return r.stdout if r.returncode == 0 else b"cvl-cat failed: " + r.stderr


def pack(d, url, *extra, stream="FH_VRD"):
    return run([tool("cvl-pack"), "-o", d, "--from-nats", url + "/" + stream] + list(extra))


def gen(name, events, seed):
    p = path(name)
    r = run([tool("mesh-sim"), "gen", "--no-corpus", "--events", str(events), "--seed", str(seed), "-o", p])
    if r.returncode != 0:
        raise SystemExit("mesh-sim gen failed: " + r.stderr.decode()[-2000:])
    return p


def uvarint_bytes(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for size, code in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | code]) + n.to_bytes(size, "big")


def cbor_text(s):
    return cbor_head(3, len(s.encode())) + s.encode()


def cbor_bytes(b):
    return cbor_head(2, len(b)) + b


def big_record(size):
    """A frame record whose wire is a #commit header and a payload with a `blocks` of `size`
    bytes (DAG-CBOR keys in canonical order: by length, then bytewise)."""
    header = cbor_head(5, 2) + cbor_text("t") + cbor_text("#commit") + cbor_text("op") + cbor_head(0, 1)
    payload = (cbor_head(5, 3) + cbor_text("seq") + cbor_head(0, 7) + cbor_text("repo") +
               cbor_text("did:plc:bigbigbigbigbigbigbigbigb") + cbor_text("blocks") +
               cbor_bytes(bytes(random.Random(5).getrandbits(8) for _ in range(1024)) * (size // 1024)))
    env = (cbor_head(5, 3) + cbor_text("src") + cbor_text("big.test") + cbor_text("recv") +
           cbor_head(0, 1700000000000000) + cbor_text("wire") + cbor_bytes(header + payload))
    return uvarint_bytes(len(env)) + env


class Publisher(threading.Thread):
    """Publishes chunks of `sources` (frame files, cycled) to fh.vrd.{pp}, one frame-cat per chunk,
    until stop() (or `rounds` chunks): publishing goes on while cvl-pack is killed and the server
    restarted (frame-cat re-publishes what was not acknowledged)."""

    def __init__(self, url, sources, chunk=50, pause=0.1, rounds=None):
        super().__init__(daemon=True)
        self.url, self.pause, self.rounds = url, pause, rounds
        self.chunks = []
        for src in sources:
            data = open(src, "rb").read()
            i = 0
            while i < len(data):
                j, k = i, 0
                while j < len(data) and k < chunk:
                    n, j2 = uvarint_at(data, j)
                    j = j2 + n
                    k += 1
                self.chunks.append(data[i:j])
                i = j
        self.halt = threading.Event()
        self.retry_until = time.time() + 600
        self.published = 0
        self.errors = []

    def run(self):
        n = 0
        while not self.halt.is_set() and (self.rounds is None or n < self.rounds):
            data = self.chunks[n % len(self.chunks)]
            r = subprocess.run([tool("frame-cat"), "--to", self.url + "/fh.vrd.{pp}", "-q"], input=data,
                               capture_output=True, timeout=3600)
            if (r.returncode != 0 and (b"cannot connect" in r.stderr or b"does not answer JetStream" in r.stderr)
                    and time.time() < self.retry_until):
                time.sleep(0.2)  # the server is restarting: frame-cat published nothing of this chunk
                continue
            if r.returncode != 0:
                self.errors.append(r.stderr.decode()[-500:])
            n += 1
            self.published = n
            time.sleep(self.pause)

    def stop(self):
        self.halt.set()
        self.join(3600)


def uvarint_at(b, i):
    n, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def equal(name, d, url, extra=()):
    a, s = archive_bytes(d), stream_bytes(url)
    return check(name, a == s and len(s) > 0,
                 "archive %d bytes, stream %d bytes, first difference at byte %s" % (
                     len(a), len(s), next((i for i in range(min(len(a), len(s))) if a[i] != s[i]), min(len(a), len(s)))),
                 *extra)


servers = []
try:
    s1 = nats_server.NatsServer(tmp, "nats1").start()
    servers.append(s1)
    url = s1.url
    r = run([tool("frame-cat"), "--nats-setup", url])
    if r.returncode != 0:
        raise SystemExit("--nats-setup failed: " + r.stderr.decode())
    g1 = gen("g1.frames", 3000, 1)

    if not slow:
        # 1. The whole stream, then resuming where the archive ends.
        publish(url, g1)
        a1 = path("a1")
        r = pack(a1, url, "--wait", "2")
        err = r.stderr.decode()
        check("--from-nats: exit 0, 3,000 frames appended as ordinals 0 to 2,999", r.returncode == 0 and
              "3,000 frames appended (ordinals 0 to 2,999)" in err, r.returncode, err)
        equal("--from-nats: cvl-cat DIR equals the stream in stream order, byte for byte", a1, url)
        check("--from-nats: the stream held the generated frames in order (the test's premise)",
              stream_bytes(url) == open(g1, "rb").read())
        r = pack(a1, url, "--wait", "1")
        check("--from-nats again with nothing new: 0 frames appended, last ordinal 2,999",
              r.returncode == 0 and "0 frames appended (last ordinal 2,999)" in r.stderr.decode(), r.stderr.decode())
        g2 = gen("g2.frames", 500, 2)
        publish(url, g2)
        r = pack(a1, url, "--wait", "1")
        check("--from-nats resumes at stream sequence next_ordinal + 1: ordinals 3,000 to 3,499",
              r.returncode == 0 and "500 frames appended (ordinals 3,000 to 3,499)" in r.stderr.decode(),
              r.stderr.decode())
        equal("--from-nats resumed: the archive still equals the stream", a1, url)

        # 2. SIGINT while following: everything read is journaled; the next run goes on from there.
        p = subprocess.Popen([tool("cvl-pack"), "-o", path("a2"), "--from-nats", url + "/FH_VRD"],
                             stderr=subprocess.PIPE)
        procs.append(p)
        time.sleep(3)
        rc = stop(p, signal.SIGINT)
        err = p.stderr.read().decode()
        check("--from-nats follows until SIGINT: exit 130, 'interrupted', the frames are safe",
              rc == 130 and "3,500 frames are safe" in err, rc, err)
        r = pack(path("a2"), url, "--wait", "1")
        check("after SIGINT the next run recovers the journal and appends nothing new",
              r.returncode == 0 and "3,500 frames recovered" in r.stderr.decode() and
              "0 frames appended" in r.stderr.decode(), r.stderr.decode())
        equal("after SIGINT and a restart the archive equals the stream", path("a2"), url)

        # 3. A 5 MB frame passes (with small frames around it).
        big = path("big.frames")
        g3 = open(gen("g3.frames", 20, 3), "rb").read()
        open(big, "wb").write(g3 + big_record(5 << 20) + g3)
        publish(url, big)
        r = pack(a1, url, "--wait", "1")
        check("a 5 MB frame: appended with its neighbours (41 frames)",
              r.returncode == 0 and "41 frames appended" in r.stderr.decode(), r.stderr.decode())
        equal("a 5 MB frame: the archive equals the stream", a1, url)

    # 4. kill -9 of cvl-pack at random moments while publishing goes on; restart; repeat.
    runs = 20 if slow else 3
    rng = random.Random(13)
    ak = path("akill")
    pub = Publisher(url, [g1, gen("g4.frames", 2000, 4)], chunk=40, pause=0.05)
    pub.start()
    kills, recovered, damaged = 0, 0, []
    def tree_bytes(d):
        """Bytes of the files under d (a file removed meanwhile counts 0)."""
        n = 0
        for r, _, fs in os.walk(d):
            for f in fs:
                try:
                    n += os.path.getsize(os.path.join(r, f))
                except OSError:
                    pass
        return n

    for i in range(runs):
        err_path = path("kill%d.err" % i)
        with open(err_path, "wb") as ef:
            before = tree_bytes(ak) if os.path.isdir(ak) else 0
            p = subprocess.Popen([tool("cvl-pack"), "-o", ak, "--segment-messages", "300", "--from-nats",
                                  url + "/FH_VRD"], stderr=ef)
            procs.append(p)
            # A random moment once it is appending (a busy machine may take seconds to get there).
            wait_for(lambda: p.poll() is not None or (os.path.isdir(ak) and tree_bytes(ak) > before), 120, 0.05)
            time.sleep(rng.uniform(0, 1.5))
            if p.poll() is None:
                p.kill()
                kills += 1
            p.wait()
        err = open(err_path, errors="replace").read()
        recovered += "recovered from the journal" in err
        if "damaged" in err or "Error" in err or (p.returncode not in (-9, None)):
            damaged.append("run %d (status %s): %s" % (i, p.returncode, err[-800:]))
    pub.stop()
    check("kill -9 series: every cvl-pack run was killed while following (%d of %d), none failed" % (kills, runs),
          kills == runs and not damaged, *damaged)
    check("kill -9 series: publishing went on throughout (%d chunks, no error)" % pub.published,
          pub.published > runs and not pub.errors, *pub.errors)
    r = pack(ak, url, "--wait", "2")
    recovered += "recovered from the journal" in r.stderr.decode()
    check("kill -9 series: the last run recovers and completes (exit 0)", r.returncode == 0, r.stderr.decode())
    check("kill -9 series: killed runs left frames in the journal that the next run recovered (%d of %d)"
          % (recovered, runs), recovered > 0)
    equal("kill -9 series (%d runs, %d recovered a journal): the archive equals the stream, exactly once, "
          "in stream order" % (runs, recovered), ak, url)
    n = last_seq(url)
    r = run([tool("cvl-cat"), ak, "--ordinal", str(n - 1), "-q"])
    check("kill -9 series: the last ordinal is the stream's last sequence - 1", r.returncode == 0 and len(r.stdout) > 0,
          r.stderr.decode())

    if not slow:
        # 5. The server stopped, then killed, while cvl-pack follows and publishing goes on.
        ar = path("arestart")
        pub = Publisher(url, [gen("g5.frames", 1500, 5)], chunk=40, pause=0.05, rounds=38)
        errf = open(path("restart.err"), "wb")
        p = subprocess.Popen([tool("cvl-pack"), "-o", ar, "--from-nats", url + "/FH_VRD", "--wait", "20"], stderr=errf)
        procs.append(p)
        pub.start()
        time.sleep(1.5)
        s1.restart()
        time.sleep(1.5)
        s1.restart(kill=True)
        pub.join(3600)
        # An outage of a few seconds while cvl-pack waits at the end of the stream, then more.
        time.sleep(2)
        s1.stop()
        time.sleep(4)
        s1.start()
        publish(url, gen("g7.frames", 50, 7))
        try:
            rc = p.wait(600)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        errf.close()
        err = open(path("restart.err"), errors="replace").read()
        check("server restarted twice (stop, kill) mid-run, then away for 4 s: cvl-pack said it reconnected, "
              "carried on and ended after --wait (exit 0)", rc == 0 and "frames appended" in err and "reconnected to the server" in err,
              rc, err[-2000:])
        check("server restarted mid-run: publishing went on (every chunk stored)", not pub.errors, *pub.errors)
        r = pack(ar, url, "--wait", "1")
        check("server restarted mid-run: nothing was left for the next run (0 frames appended)",
              r.returncode == 0 and "0 frames appended" in r.stderr.decode(), r.stderr.decode())
        equal("server restarted mid-run: the archive equals the stream", ar, url)

        # 6. Errors.
        r = run([tool("cvl-pack"), "-o", path("e0"), "--from-nats", "nats://127.0.0.1:%d/FH_VRD" % nats_server.free_port()])
        check("no server: exit 2, 'cannot connect', no archive created", r.returncode == 2 and
              "cannot connect" in r.stderr.decode() and not os.path.exists(path("e0")), r.returncode, r.stderr.decode())
        r = pack(path("e1"), url, stream="NOPE")
        check("no stream: exit 2, the stream named, with the setup command",
              r.returncode == 2 and "NOPE" in r.stderr.decode() and "--nats-setup" in r.stderr.decode(),
              r.returncode, r.stderr.decode())
        for args, what in ((["--wait", "2"], "--wait without --from-nats"),
                           (["--from-nats", url + "/FH_VRD", path("g1.frames")], "--from-nats with files"),
                           (["--from-nats", url + "/FH_VRD?consumer=x"], "--from-nats with consumer="),
                           (["--from-nats", url + "/FH_VRD", "--wait", "0"], "--wait 0"),
                           (["--from-nats", url + "/FH_VRD", "--compact"], "--from-nats with --compact"),
                           (["--from-nats", url], "--from-nats without a stream")):
            r = run([tool("cvl-pack"), "-o", path("e2")] + args)
            check("usage: %s: exit 2" % what, r.returncode == 2 and not os.path.exists(path("e2")), r.returncode,
                  r.stderr.decode())

        # A second server for the damaged streams.
        s2 = nats_server.NatsServer(tmp, "nats2").start()
        servers.append(s2)
        url2 = s2.url
        run([tool("frame-cat"), "--nats-setup", url2])
        r = pack(a1, url2, "--wait", "1")
        check("an archive ahead of the stream (another stream): exit 1, 'not packed from this stream'",
              r.returncode == 1 and "not packed from this stream" in r.stderr.decode(), r.stderr.decode())
        g6 = gen("g6.frames", 100, 6)
        publish(url2, g6)  # sequences 1-100
        d = js(url2, "STREAM.MSG.DELETE.FH_VRD", {"seq": 61})
        ah = path("ahole")
        r = pack(ah, url2, "--wait", "1")
        err = r.stderr.decode()
        check("a deleted message: exit 1, 'has no sequence 61', ordinals 0 to 59 appended and sealed",
              d.get("success") and r.returncode == 1 and "has no sequence 61" in err and
              "60 frames appended (ordinals 0 to 59)" in err, d, err)
        check("a deleted message: the archive holds the stream's first 60 messages",
              archive_bytes(ah) == stream_bytes(url2)[:len(archive_bytes(ah))] and len(archive_bytes(ah)) > 0)
        r = pack(ah, url2, "--wait", "1")
        check("a deleted message: the next run stops at the same place (nothing skipped)",
              r.returncode == 1 and "has no sequence 61" in r.stderr.decode() and "0 frames appended" in r.stderr.decode(),
              r.stderr.decode())
        d = js(url2, "STREAM.PURGE.FH_VRD", {"seq": 81})  # sequences below 81 gone
        r = pack(path("aaged"), url2, "--wait", "1")
        check("messages aged out or purged: exit 1, 'no longer holds sequence 1', 'first sequence is 81'",
              d.get("success") and r.returncode == 1 and "no longer holds sequence 1 " in r.stderr.decode() and
              "first sequence is 81" in r.stderr.decode(), d, r.stderr.decode())
        r = pack(ah, url2, "--wait", "1")
        check("an archive behind a purge: exit 1, 'no longer holds sequence 61'",
              r.returncode == 1 and "no longer holds sequence 61 " in r.stderr.decode(), r.stderr.decode())

        s3 = nats_server.NatsServer(tmp, "nats3").start()
        servers.append(s3)
        url3 = s3.url
        run([tool("frame-cat"), "--nats-setup", url3])
        publish(url3, g6)
        ack = json.loads(nats_server.request(url3, "fh.vrd.00", b"this is not an envelope"))
        publish(url3, g6)
        ab = path("abad")
        r = pack(ab, url3, "--wait", "1")
        err = r.stderr.decode()
        check("a message that is not an envelope: exit 1, 'stream seq 101 (fh.vrd.00)', the 100 before it archived",
              ack.get("seq") == 101 and r.returncode == 1 and "stream seq 101 (fh.vrd.00)" in err and
              "not a frame envelope" in err and "100 frames appended (ordinals 0 to 99)" in err, ack, err)
        r = pack(path("afilter"), url3, "--wait", "1", stream="FH_VRD?filter=fh.vrd.03")
        check("filter=SUBJECT that leaves out a message: exit 1, 'outside the filter'",
              r.returncode == 1 and "outside the filter fh.vrd.03" in r.stderr.decode(), r.stderr.decode())
finally:
    kill_all(procs)
    for s in servers:
        s.stop(kill=True)
    if _checks.failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # kept for a look when something failed
sys.exit(_checks.summary())
