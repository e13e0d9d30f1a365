#!/usr/bin/env python3
"""frame-cat against a real nats-server with JetStream (docs/design.md §12, man/frame-cat.1.md
NATS JETSTREAM), each server private (tests/cli/nats_server.py: its own store, a free loopback
port):

  - --nats-setup, twice (idempotent); refused on a server with the default 1 MB max_payload;
  - a `mesh-sim gen --no-corpus` stream published with --to and read back with --from:
    byte-identical; consumers filtered on one partition get exactly that partition's frames
    (computed here from SHA-256 of the DID); --type on both sides;
  - --msg-id match-key twice: the second run finds every message "already held"; src-seq the
    same; a copy under another src is new for src-seq and held for match-key;
  - a 5 MB frame both ways;
  - frame-cat --from killed with -9 mid-read, restarted on the same consumer: every frame at
    least once, and the only frames written before the kill that come again are those of the
    batch in flight at the kill (at most 256, the end of what was written); every copy is a
    redelivery counted in the summary;
  - the broker killed with -9 and restarted during a publish with --msg-id (paced through
    stdin, and at full speed with acknowledgements in flight, which are then published again):
    every frame stored exactly once, in the order published;
  - errors: no server (exit 2, "cannot connect"), no stream for the subject (exit 2, "no
    responders", in seconds), usage errors (exit 2), a message that is not an envelope (exit
    1 naming its stream seq, not acked).

usage: nats_frames.py BUILD_DIR
Exit status 77 (skipped) when nats-server is not installed. Bounded in time: every wait has a
generous limit; the only timing checked is "no responders" within 120 s (libnats' request
timeout is seconds, the publisher's retry limit an hour)."""
import hashlib, json, os, re, shutil, signal, struct, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nats_server  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, kill_all, stop, wait_for  # noqa: E402

build = os.path.abspath(sys.argv[1])
frame_cat = os.path.join(build, "tools", "frame-cat")
mesh_sim = os.path.join(build, "tools", "mesh-sim")
procs, servers = [], []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check
T0 = time.time()
EVENTS = 6000


def note(what):
    print("# %5.1f s: %s" % (time.time() - T0, what), flush=True)


def run(args, stdin=None, limit=600):
    """Runs frame-cat ARGS; (status, stdout bytes, stderr text)."""
    p = subprocess.run([frame_cat] + list(args), input=stdin, capture_output=True, timeout=limit)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def split(data):
    """The raw records (bytes, length prefix included) of frame-stream bytes."""
    out, i = [], 0
    while i < len(data):
        n, j = ws_bin.uvarint(data, i)
        if n is None or j + n > len(data):
            break
        out.append(bytes(data[i:j + n]))
        i = j + n
    return out


def partition(env, n=16):
    """The partition of a frame as route.h defines it: SHA-256(DID)[0:8] big-endian mod n; the
    src for markers and messages without a DID."""
    key = env["src"]
    if "mark" not in env:
        h, p = ws_bin.message(env["wire"])
        key = p.get("repo") or p.get("did") or key
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n


def first_difference(a, b):
    """The index of the first element where lists `a` and `b` differ (the shorter length if one
    is a prefix of the other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def summary_counts(err):
    """(stored, already held, re-published) from --to nats://'s summary line, or None."""
    m = re.search(r"published to \S+ \(([\d,]+) stored, ([\d,]+) already held, ([\d,]+) re-published\)", err)
    return tuple(int(x.replace(",", "")) for x in m.groups()) if m else None


def acked(err):
    m = re.search(r"([\d,]+) acked(?: \(([\d,]+) redelivered\))?", err)
    return (int(m.group(1).replace(",", "")), int((m.group(2) or "0").replace(",", ""))) if m else None


# ---- CBOR, just enough to write a 5 MB message and a raw capture ---------------------------------
def cb_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, n)


def cb_text(s):
    b = s.encode()
    return cb_head(3, len(b)) + b


def cb_map(pairs):  # pairs in canonical order already
    return cb_head(5, len(pairs)) + b"".join(cb_text(k) + v for k, v in pairs)


def main():
    if not nats_server.find_binary():
        print("SKIP: nats-server is not installed (scripts/setup.sh installs it)")
        return 77
    tmp = tempfile.mkdtemp(prefix="sov-nats-")
    try:
        body(tmp)
    finally:
        kill_all(procs)
        for s in servers:
            s.stop(kill=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return _checks.summary()


def body(tmp):
    path = lambda name: os.path.join(tmp, name)
    traffic = path("g.frames")
    p = subprocess.run([mesh_sim, "gen", "--no-corpus", "--events", str(EVENTS), "--seed", "5", "-o", traffic],
                       capture_output=True, timeout=600)
    if p.returncode != 0:
        bad("mesh-sim gen", p.stderr.decode())
        return
    data = open(traffic, "rb").read()
    recs = split(data)
    envs = [env for _, _, env in ws_bin.records(data)]
    N = len(recs)
    note("%d frames, %d bytes of traffic" % (N, len(data)))

    # ---- usage errors: refused before any connection (the port is closed) -------------------------
    closed = "nats://127.0.0.1:%d" % nats_server.free_port()
    for name, args, words in [
        ("--to nats:// without a host", ["--to", "nats:///fh.src.x", traffic], "no host"),
        ("--to with port 0", ["--to", "nats://127.0.0.1:0/fh.src.x", traffic], "bad host or port"),
        ("--to with a port over 65535", ["--to", "nats://127.0.0.1:70000/fh.src.x", traffic], "bad host or port"),
        ("--to without a subject", ["--to", closed, traffic], "no subject"),
        ("--from without a consumer", ["--from", closed + "/FH_SRC"], "consumer"),
        ("--from without a stream", ["--from", closed + "?consumer=a"], "consumer"),
        ("--from nats:// with FILE arguments", ["--from", closed + "/FH_SRC?consumer=a", traffic], "FILE"),
        ("--wait without --from nats://", ["--wait", "3", traffic], "--wait works only with --from nats://"),
        ("--wait 0", ["--from", closed + "/FH_SRC?consumer=a", "--wait", "0"], "--wait must be"),
        ("--partitions 0", ["--to", closed + "/fh.src.{pp}", "--partitions", "0", traffic], "between 1 and 100"),
        ("--partitions 101", ["--to", closed + "/fh.src.{pp}", "--partitions", "101", traffic], "between 1 and 100"),
        ("--partitions without --to nats://", ["--partitions", "4", traffic], "only with --to nats://"),
        ("--msg-id bogus", ["--to", closed + "/fh.src.x", "--msg-id", "bogus", traffic], "match-key, src-seq or none"),
        ("--msg-id without --to nats://", ["--msg-id", "none", traffic], "only with --to nats://"),
        ("--from and --to both nats://", ["--from", closed + "/FH_SRC?consumer=a", "--to", closed + "/x"], "both"),
        ("--nats-setup with a bad address", ["--nats-setup", "http://127.0.0.1:4222"], "not a nats:// address"),
        ("--nats-setup with IPv6 unbracketed", ["--nats-setup", "nats://::1:4222"], "brackets"),
    ]:
        rc, out, err = run(args)
        check("usage error: %s → exit 2" % name, rc == 2 and words in err and "cannot connect" not in err and not out,
              "status %d" % rc, err)

    # ---- no server ----------------------------------------------------------------------------------
    for name, args in [("--to", ["--to", closed + "/fh.src.x", traffic]),
                       ("--from", ["--from", closed + "/FH_SRC?consumer=a", "--wait", "1"]),
                       ("--nats-setup", ["--nats-setup", closed])]:
        t = time.time()
        rc, out, err = run(args)
        check("no server: %s → exit 2 \"cannot connect\" (%.1f s)" % (name, time.time() - t),
              rc == 2 and "cannot connect to " + closed in err, "status %d" % rc, err)

    # ---- a server with the default max_payload (1 MB): --nats-setup refuses it ---------------------
    small = nats_server.NatsServer(tmp, "small")
    with open(os.path.join(small.dir, "server.conf"), "w") as f:
        f.write('listen: 127.0.0.1:%d\njetstream { store_dir: "%s" }\n' % (small.port, os.path.join(small.dir, "js")))
    servers.append(small.start())
    rc, out, err = run(["--nats-setup", small.url])
    check("--nats-setup on a server with the default max_payload: exit 2 naming max_payload",
          rc == 2 and "max_payload is 1048576" in err and "max_payload: 8MB" in err, "status %d" % rc, err)
    small.stop()

    srv = nats_server.NatsServer(tmp, "main").start()
    servers.append(srv)
    U = srv.url
    note("nats-server at " + U)

    rc, out, err = run(["--to", U + "/fh.src.pds.{pp}", traffic])
    check("before --nats-setup: a publish is refused, exit 2, \"no responders\"",
          rc == 2 and "No responders" in err and "--nats-setup" in err, "status %d" % rc, err)
    for i in (1, 2):
        rc, out, err = run(["--nats-setup", U])
        check("--nats-setup (run %d): exit 0, streams and bucket ready" % i,
              rc == 0 and "FH_SRC (fh.src.>) and FH_VRD (fh.vrd.>), bucket fh_cursors: ready" in err, "status %d" % rc, err)

    # ---- no stream holds the subject --------------------------------------------------------------
    t = time.time()
    rc, out, err = run(["--to", U + "/nostream.{pp}", traffic])
    took = time.time() - t
    check("no stream for the subject: exit 2, \"no responders\", in %.1f s" % took,
          rc == 2 and "No responders" in err and took < 120, "status %d" % rc, err)

    # ---- round trip ---------------------------------------------------------------------------------
    rc, out, err = run(["--to", U + "/fh.src.pds.{pp}", traffic])
    check("publish %d frames to fh.src.pds.{pp}: exit 0, all stored" % N,
          rc == 0 and summary_counts(err) == (N, 0, 0), "status %d" % rc, err)
    rc, out, err = run(["--from", U + "/FH_SRC?consumer=all&filter=fh.src.pds.>", "--wait", "2"])
    check("read back through a durable consumer: byte-identical, all acked",
          rc == 0 and out == data and acked(err) == (N, 0), "status %d, %d of %d bytes" % (rc, len(out), len(data)), err)
    rc, out, err = run(["--from", U + "/FH_SRC?consumer=all&filter=fh.src.pds.>", "--wait", "1"])
    check("the same consumer again: nothing left (acked means done)", rc == 0 and out == b"", "status %d" % rc, err)

    # ---- filters ------------------------------------------------------------------------------------
    for pp in (0, 5, 15):
        want = b"".join(r for r, e in zip(recs, envs) if partition(e) == pp)
        rc, out, err = run(["--from", U + "/FH_SRC?consumer=p%02d&filter=fh.src.pds.%02d" % (pp, pp), "--wait", "1"])
        check("consumer filtered on fh.src.pds.%02d: exactly that partition's frames (%d), in order"
              % (pp, len(split(want))), rc == 0 and out == want and len(want) > 0,
              "status %d, %d frames" % (rc, len(split(out))), err)
    ids = b"".join(r for r, e in zip(recs, envs) if ws_bin.message(e["wire"])[0].get("t") in ("#identity", "#account"))
    rc, out, err = run(["--to", U + "/fh.src.typ.{pp}", "--type", "identity,account", traffic])
    rc2, out2, err2 = run(["--from", U + "/FH_SRC?consumer=typ&filter=fh.src.typ.>", "--wait", "1"])
    check("--type identity,account on the way in: only those are published (%d)" % len(split(ids)),
          rc == 0 and rc2 == 0 and out2 == ids and len(ids) > 0, err, err2)
    commits = [r for r, e in zip(recs, envs) if ws_bin.message(e["wire"])[0].get("t") == "#commit"]
    rc, out, err = run(["--from", U + "/FH_SRC?consumer=lim&filter=fh.src.pds.>", "--type", "commit", "--limit", "10",
                        "--wait", "1"])
    check("--type commit --limit 10 on the way out: the first 10 commits",
          rc == 0 and out == b"".join(commits[:10]), "status %d" % rc, err)

    # ---- message ids --------------------------------------------------------------------------------
    rc, out, err = run(["--to", U + "/fh.src.mk.{pp}", "--msg-id", "match-key", traffic])
    first = summary_counts(err)
    check("--msg-id match-key, first run: every frame stored or held (stored %s)" % (first,),
          rc == 0 and first is not None and first[0] + first[1] == N and first[0] > 0.99 * N, err)
    rc, out, err = run(["--to", U + "/fh.src.mk.{pp}", "--msg-id", "match-key", traffic])
    check("--msg-id match-key, second run: all %d already held, none stored" % N,
          rc == 0 and summary_counts(err) == (0, N, 0), err)
    rc, out, err = run(["--to", U + "/fh.src.ss.{pp}", "--msg-id", "src-seq", traffic])
    check("--msg-id src-seq, first run: all stored", rc == 0 and summary_counts(err) == (N, 0, 0), err)
    rc, out, err = run(["--to", U + "/fh.src.ss.{pp}", "--msg-id", "src-seq", traffic])
    check("--msg-id src-seq, second run: all already held", rc == 0 and summary_counts(err) == (0, N, 0), err)
    # the same events under another src (same length: the record bytes keep their shape)
    other = data.replace(b"\x63src\x68mesh-sim", b"\x63src\x68other.xy")
    check("relabelled copy has the same number of frames", len(split(other)) == N)
    rc, out, err = run(["--to", U + "/fh.src.ss.{pp}", "--msg-id", "src-seq"], stdin=other)
    check("src-seq: the same seqs from another src are new: all stored", rc == 0 and summary_counts(err) == (N, 0, 0), err)
    rc, out, err = run(["--to", U + "/fh.src.mk.{pp}", "--msg-id", "match-key"], stdin=other)
    check("match-key: the same events from another src are held: none stored",
          rc == 0 and summary_counts(err) == (0, N, 0), err)

    # ---- a 5 MB frame -------------------------------------------------------------------------------
    hdr = cb_map([("t", cb_text("#commit")), ("op", cb_head(0, 1))])
    blob = bytes((i * 7 + 3) & 0xff for i in range(5_000_000))
    payload = cb_map([("seq", cb_head(0, 77)), ("repo", cb_text("did:plc:big")), ("blocks", cb_head(2, len(blob)) + blob)])
    wire = hdr + payload
    raw = path("big.raw")
    with open(raw, "wb") as f:
        f.write(struct.pack("<I", len(wire)) + wire)
    big = subprocess.run([frame_cat, "--from", "raw-u32le", "--src", "big.test", raw], capture_output=True).stdout
    rc, out, err = run(["--to", U + "/fh.src.big.{pp}", "--msg-id", "src-seq"], stdin=big)
    rc2, out2, err2 = run(["--from", U + "/FH_SRC?consumer=big&filter=fh.src.big.>", "--wait", "1"])
    check("a 5 MB frame (%d bytes) published and read back identical" % len(big),
          len(big) > 5_000_000 and rc == 0 and summary_counts(err) == (1, 0, 0) and rc2 == 0 and out2 == big,
          "status %d / %d, %d bytes back" % (rc, rc2, len(out2)), err, err2)

    # ---- a message that is not an envelope ----------------------------------------------------------
    ack = json.loads(nats_server.request(U, "fh.src.junk", b"hello, not CBOR"))
    seq = ack.get("seq")

    def junk(when):
        rc, out, err = run(["--from", U + "/FH_SRC?consumer=junk&filter=fh.src.junk", "--wait", "1"])
        check("a message that is not an envelope (%s): exit 1 naming stream seq %s, nothing written" % (when, seq),
              rc == 1 and ("stream seq %s (fh.src.junk):" % seq) in err and "not a frame envelope" in err and out == b"",
              "status %d" % rc, err)

    junk("first read")
    info = nats_server.js(U, "CONSUMER.INFO.FH_SRC.junk")
    check("it is not acked: the consumer has it pending (num_ack_pending 1, ack floor 0)",
          info.get("num_ack_pending") == 1 and info.get("ack_floor", {}).get("stream_seq", 0) == 0, info)
    t_junk = time.time()

    # ---- frame-cat --from killed with -9 mid-read, restarted on the same consumer -------------------
    rc, out, err = run(["--to", U + "/fh.src.kill.{pp}", traffic])
    check("publish for the kill test", rc == 0 and summary_counts(err) == (N, 0, 0), err)
    reader = subprocess.Popen([frame_cat, "--from", U + "/FH_SRC?consumer=kc&filter=fh.src.kill.>"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    procs.append(reader)
    got = bytearray()
    while len(got) < len(data) // 3:  # a slow reader: frame-cat blocks on its writes
        chunk = reader.stdout.read1(16384)
        if not chunk:
            break
        got += chunk
        time.sleep(0.002)
    reader.send_signal(signal.SIGKILL)
    while True:  # what it wrote before it died
        chunk = reader.stdout.read1(1 << 20)
        if not chunk:
            break
        got += chunk
    reader.wait()
    out1 = split(got)
    note("killed frame-cat --from after %d complete frames (%d bytes)" % (len(out1), len(got)))
    # restarted: follows until every frame has come (redeliveries after the 60 s ack wait)
    out2_path = path("kill-2.frames")
    err2_path = path("kill-2.err")
    second = subprocess.Popen([frame_cat, "--from", U + "/FH_SRC?consumer=kc&filter=fh.src.kill.>"],
                              stdout=open(out2_path, "wb"), stderr=open(err2_path, "w"))
    procs.append(second)
    everything = set(recs)
    seen1 = set(out1)

    def complete():
        return seen1 | set(split(open(out2_path, "rb").read())) >= everything

    done = wait_for(complete, limit=240, step=1)
    stop(second, signal.SIGTERM)
    out2 = split(open(out2_path, "rb").read())
    err2 = open(err2_path).read()
    n_acked, redelivered = acked(err2) or (None, None)
    dups = set(r for r in out2 if r in seen1)  # written before the kill and again after it
    extra = len(out2) - len(set(out2) - seen1)  # copies in run 2 beyond the first of a new frame
    tail = set(out1[len(out1) - len(dups):]) if dups else set()
    check("after kill -9 and restart: every frame at least once (%d + %d written)" % (len(out1), len(out2)),
          done and complete(), err2)
    check("no frame twice before the kill", len(set(out1)) == len(out1))
    check("frames written again after the restart: %d, at most one batch (256), all of them the end of what "
          "was written before the kill (acked frames are never delivered again)" % len(dups),
          len(dups) <= 256 and dups == tail, "%d duplicates" % len(dups))
    # At least once: a frame may come twice in run 2 only as a redelivery (one whose ack did not
    # reach the server within its ack wait), and the summary counts every redelivery.
    note("run 2: %d redelivered, %d copies of frames already written (%d of run 1's, %d of its own)" % (
        redelivered or 0, extra, len([r for r in out2 if r in seen1]), extra - len([r for r in out2 if r in seen1])))
    check("every frame written more than once was a redelivery, counted in the summary (%s redelivered ≥ %d "
          "copies)" % (redelivered, extra), redelivered is not None and extra <= redelivered, err2)

    # the junk message again, once the consumer's ack wait (60 s) has passed: redelivered, refused again
    time.sleep(max(0.0, t_junk + 65 - time.time()))
    junk("redelivered after the ack wait")

    # ---- the broker killed with -9 and restarted during a publish ----------------------------------
    b = nats_server.NatsServer(tmp, "bounce").start()
    servers.append(b)
    rc, out, err = run(["--nats-setup", b.url])
    check("--nats-setup on the second server", rc == 0, err)
    pub = subprocess.Popen([frame_cat, "--to", b.url + "/fh.src.pds.{pp}", "--msg-id", "src-seq"],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.append(pub)
    err_box = []
    threading.Thread(target=lambda: err_box.append(pub.stderr.read().decode()), daemon=True).start()
    step = max(1, N // 60)
    killed = False
    restart = None
    for i in range(0, N, step):
        pub.stdin.write(b"".join(recs[i:i + step]))  # blocks while frame-cat waits for the server
        pub.stdin.flush()
        time.sleep(0.02)
        if not killed and i >= N // 3:
            killed = True
            b.stop(kill=True)
            note("nats-server killed with -9 after %d frames written to frame-cat" % (i + step))
            # back 2 s later, whatever the writing does meanwhile: frame-cat sends nothing while
            # the server is away, so it stops reading its input, and this loop waits on the pipe
            restart = threading.Timer(2.0, lambda: (b.start(), note("nats-server restarted")))
            restart.start()
    if restart:
        restart.join()
    pub.stdin.close()
    try:
        pub.wait(600)
    except subprocess.TimeoutExpired:
        pub.kill()
        pub.wait()
    wait_for(lambda: err_box, limit=30, step=0.2)
    perr = err_box[0] if err_box else ""
    counts = summary_counts(perr)
    check("publish across the broker's kill -9: exit 0, every frame stored or held (%s)" % (counts,),
          pub.returncode == 0 and counts is not None and counts[0] + counts[1] == N, "status %s" % pub.returncode, perr)
    rc, out, err = run(["--from", b.url + "/FH_SRC?consumer=check&filter=fh.src.pds.>", "--wait", "2"])
    back = split(out)
    missing = everything - set(back)
    check("after the broker's kill -9: every frame stored exactly once (%d messages in the stream)" % len(back),
          rc == 0 and len(back) == N and not missing and len(set(back)) == N,
          "%d in the stream, %d distinct, %d missing" % (len(back), len(set(back)), len(missing)), err)
    check("after the broker's kill -9: the stream holds them in the order published", back == recs,
          "first difference at message %d" % first_difference(back, recs), perr)

    # The same with acknowledgements in flight: a file published at full speed (2N frames under
    # two srcs this server has not seen: their src-seq ids are new), the broker killed with -9
    # once a quarter is stored, restarted a second later. What was stored but not acknowledged
    # is published again and dropped as already held.
    third = data.replace(b"\x63src\x68mesh-sim", b"\x63src\x68third.zz")
    burst = path("burst.frames")
    with open(burst, "wb") as f:
        f.write(other + third)
    before = nats_server.js(b.url, "STREAM.INFO.FH_SRC")["state"]["messages"]
    pub = subprocess.Popen([frame_cat, burst, "--to", b.url + "/fh.src.burst.{pp}", "--msg-id", "src-seq"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.append(pub)
    wait_for(lambda: pub.poll() is not None or nats_server.js(
        b.url, "STREAM.INFO.FH_SRC")["state"]["messages"] - before >= N // 2, limit=300, step=0.01)
    b.stop(kill=True)
    note("nats-server killed with -9 during a publish at full speed")
    time.sleep(1)
    b.start()
    try:
        perr = pub.communicate(timeout=600)[1].decode()
    except subprocess.TimeoutExpired:
        pub.kill()
        perr = pub.communicate()[1].decode()
    counts = summary_counts(perr)
    check("publish at full speed across the broker's kill -9: exit 0, every frame stored or held, the unacknowledged "
          "published again (%s stored, held, re-published)" % (counts,),
          pub.returncode == 0 and counts is not None and counts[0] + counts[1] == 2 * N and counts[2] > 0,
          "status %s" % pub.returncode, perr)
    rc, out, err = run(["--from", b.url + "/FH_SRC?consumer=burst&filter=fh.src.burst.>", "--wait", "2"])
    back = split(out)
    want = set(split(other)) | set(split(third))
    check("after that kill: every frame stored exactly once (%d messages)" % len(back),
          rc == 0 and len(back) == 2 * N and set(back) == want, "%d in the stream, %d distinct, %d missing" % (
              len(back), len(set(back)), len(want - set(back))), err)
    published = split(other) + split(third)
    check("after that kill: the stream holds them in the order published (what was lost in flight was not "
          "overtaken by what followed it)", back == published,
          "first difference at message %d" % first_difference(back, published), perr)


if __name__ == "__main__":
    sys.exit(main())
