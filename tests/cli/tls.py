#!/usr/bin/env python3
"""The taps over TLS against `mesh-sim serve --pdses N --relay --tls DIR` on loopback, scored
against the simulator's ground truth (--truth) exactly as the plain-WebSocket cases of taps.py:
relay-tap wss://… --ca DIR/ca.pem gets the relay's events 1..N byte-identical, by IP and by
name; mesh-tap over wss:// gets every PDS's events exactly once; without the CA (or with another
one) the connection fails with a certificate error; the PKI files and their modes; a reused CA;
bad --tls directories named.

usage: tls.py BUILD_DIR
Bounded in time: every wait has a generous limit; the simulator is always stopped."""
import os, signal, stat, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ws_bin  # noqa: E402
from harness import Checks, stop, wait_for  # noqa: E402
from ws_bin import messages, seq_of, truth_by_src  # noqa: E402

build = os.path.abspath(sys.argv[1])
tool = lambda name: os.path.join(build, "tools", name)
tmp = tempfile.mkdtemp(prefix="sov-tls-")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check


def start_sim(name, *args):
    p, port = ws_bin.start_sim(tool("mesh-sim"), tmp, name, *args)
    procs.append(p)
    return p, port


def frames_of(data):
    return [env for _, _, env in ws_bin.records(data)]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


try:
    pki = os.path.join(tmp, "pki")
    truth = os.path.join(tmp, "truth.frames")
    N, P = 1500, 4
    sim, port = start_sim("tls", "--pdses", str(P), "--relay", "--tls", pki, "--rate", "300", "--events", str(N),
                          "--seed", "7", "--relay-window", "100000", "--pds-window", "100000", "--truth", truth)
    ca = os.path.join(pki, "ca.pem")
    err = open(os.path.join(tmp, "tls.err")).read()
    check("mesh-sim serve --tls: serves https://, names the CA file", "on https://127.0.0.1:" in err and ca in err, err)
    check("--tls DIR: ca.pem 0644, ca-key.pem and server-key.pem 0600, DIR 0700",
          mode(ca) == 0o644 and mode(os.path.join(pki, "ca-key.pem")) == 0o600
          and mode(os.path.join(pki, "server-key.pem")) == 0o600 and mode(pki) == 0o700,
          oct(mode(pki)), [oct(mode(os.path.join(pki, f))) for f in sorted(os.listdir(pki))])
    # Every event out: the truth file holds each PDS event and its relay copy.
    wait_for(lambda: os.path.exists(truth) and len(ws_bin.frames(truth)) >= 2 * N, limit=600)
    t = truth_by_src(truth)
    relay_truth = [(seq_of(e), e["wire"]) for e in t.get("relay.test", [])]
    check("the simulator emitted and relayed %d events" % N, len(relay_truth) == N, len(relay_truth))

    # 1. relay-tap over wss:// with the CA: the relay's events 1..N, byte for byte, by IP and by name.
    for host in ("127.0.0.1", "localhost"):
        out = os.path.join(tmp, "relay-%s.frames" % host)
        with open(out, "wb") as f:
            r = subprocess.run([tool("relay-tap"), "wss://%s:%d/relay" % (host, port), "--ca", ca, "--cursor", "0",
                                "--max-messages", str(N), "-q"], stdout=f, stderr=subprocess.PIPE, timeout=600)
        envs = ws_bin.frames(out)
        got = [(seq_of(e), e["wire"]) for e in messages(envs)]
        check("relay-tap wss://%s --ca: exit 0, the relay's %d events exactly, byte-identical to the truth" % (host, N),
              r.returncode == 0 and got == relay_truth, r.returncode, r.stderr.decode(), len(got))
        marks = [e["mark"] for e in envs if "mark" in e]
        check("relay-tap wss://%s: connect marker with the wss:// URL, disconnect at the end" % host,
              marks and marks[0].get("kind") == "connect" and marks[0].get("url", "").startswith("wss://%s:" % host)
              and marks[-1].get("kind") == "disconnect", marks[:1], marks[-1:])

    # 2. Without the CA (the system's store), or with another CA: a certificate error, retried.
    other = os.path.join(tmp, "other")
    o_sim, _ = start_sim("other", "--pdses", "1", "--tls", other, "--rate", "1", "--events", "1")
    stop(o_sim)
    for label, extra in (("no --ca", []), ("another CA", ["--ca", os.path.join(other, "ca.pem")])):
        p = subprocess.Popen([tool("relay-tap"), "wss://127.0.0.1:%d/relay" % port, "--cursor", "0"] + extra,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)
        time.sleep(3)
        stop(p, signal.SIGTERM)
        out, e = p.communicate()
        e = e.decode()
        check("relay-tap wss:// with %s: no message, the failure names TLS and the certificate" % label,
              not messages(frames_of(out)) and "TLS" in e and "certificate" in e, e)
    # Clear text on the TLS port is no WebSocket.
    p = subprocess.Popen([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--cursor", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    time.sleep(2)
    stop(p, signal.SIGTERM)
    out, e = p.communicate()
    check("relay-tap ws:// (clear text) to the TLS port: no message, reconnecting", not messages(frames_of(out))
          and b"reconnecting" in e, e.decode())

    # 3. mesh-tap over wss:// to every PDS: each PDS's events exactly once, in order, byte-identical.
    hosts = os.path.join(tmp, "hosts.txt")
    with open(hosts, "w") as f:
        for i in range(P):
            f.write("wss://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    state = os.path.join(tmp, "mstate")
    os.makedirs(state)
    open(os.path.join(state, "cursors"), "w").write("".join("pds%d.test 0\n" % i for i in range(P)))
    pds_truth = {h: [(seq_of(e), e["wire"]) for e in v] for h, v in t.items() if h != "relay.test"}
    total = sum(len(v) for v in pds_truth.values())
    out = os.path.join(tmp, "mesh.frames")
    with open(out, "wb") as f:
        p = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", state, "--ca", ca, "-q"], stdout=f,
                             stderr=subprocess.PIPE)
        procs.append(p)
        wait_for(lambda: len(messages(ws_bin.frames(out))) >= total, limit=600)
        stop(p, signal.SIGTERM)
    got = {}
    for e in messages(ws_bin.frames(out)):
        got.setdefault(e["src"], []).append((seq_of(e), e["wire"]))
    problems = ["%s: truth %d, tap %d" % (h, len(pds_truth.get(h, [])), len(got.get(h, [])))
                for h in sorted(set(pds_truth) | set(got)) if pds_truth.get(h, []) != got.get(h, [])]
    check("mesh-tap over wss:// --ca: every PDS's %d events exactly once, in order, byte-identical" % total,
          p.returncode == 0 and not problems and total == N, p.returncode, p.stderr.read().decode(), *problems)

    # 4. https:// for the JSON endpoints on the same port.
    r = subprocess.run(["python3", "-c", "import ssl,sys,urllib.request as u;"
                        "c=ssl.create_default_context(cafile=sys.argv[1]);"
                        "print(u.urlopen(sys.argv[2],context=c,timeout=60).read().decode())",
                        ca, "https://127.0.0.1:%d/pds/0/xrpc/com.atproto.server.describeServer" % port],
                       capture_output=True, timeout=120)
    check("https:// describeServer on the same port, verified against ca.pem by another TLS stack",
          r.returncode == 0 and b"did" in r.stdout, r.returncode, r.stderr.decode())
    stop(sim)

    # 5. A restarted simulator keeps its CA (clients' --ca stays valid) and renews the server certificate.
    ca_before = open(ca, "rb").read()
    cert_before = open(os.path.join(pki, "server.pem"), "rb").read()
    sim, port = start_sim("again", "--pdses", "2", "--relay", "--tls", pki, "--rate", "50", "--events", "20")
    err = open(os.path.join(tmp, "again.err")).read()
    check("--tls DIR with a CA: reused, server certificate renewed",
          open(ca, "rb").read() == ca_before and open(os.path.join(pki, "server.pem"), "rb").read() != cert_before
          and "the CA found there" in err, err)
    r = subprocess.run([tool("relay-tap"), "wss://127.0.0.1:%d/relay" % port, "--ca", ca, "--cursor", "0",
                        "--max-messages", "5", "-q"], capture_output=True, timeout=300)
    check("relay-tap with the old ca.pem against the restarted simulator", r.returncode == 0 and
          len(messages(frames_of(r.stdout))) == 5, r.returncode, r.stderr.decode())
    stop(sim)

    # 6. Bad --tls directories are named, exit 2.
    open(os.path.join(tmp, "afile"), "w").write("x")
    half = os.path.join(tmp, "half")
    os.makedirs(half)
    open(os.path.join(half, "ca.pem"), "w").write(open(ca).read())
    junk = os.path.join(tmp, "junk")
    os.makedirs(junk)
    open(os.path.join(junk, "ca.pem"), "w").write("junk\n")
    open(os.path.join(junk, "ca-key.pem"), "w").write("junk\n")
    for d, words in ((os.path.join(tmp, "afile"), "not a directory"), (half, "ca.pem but no ca-key.pem"),
                     (junk, "ca.pem: not a PEM certificate"), (os.path.join(tmp, "no", "such"), "No such file")):
        r = subprocess.run([tool("mesh-sim"), "serve", "--no-corpus", "--pdses", "1", "--tls", d, "--listen", "127.0.0.1:0"],
                           capture_output=True, timeout=120)
        e = r.stderr.decode()
        check("mesh-sim serve --tls %s: exit 2, named (%s)" % (os.path.basename(d), words),
              r.returncode == 2 and d in e and words in e, r.returncode, e)
    r = subprocess.run([tool("mesh-sim"), "serve", "--no-corpus", "--plc", "--tls", pki], capture_output=True, timeout=120)
    check("--tls is an option of serve --pdses only", r.returncode == 2 and b"--tls" in r.stderr, r.stderr.decode())
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()

sys.exit(_checks.summary())
