#!/usr/bin/env python3
"""frame-cat over NATS JetStream beside a Unix pipe (docs/PERFORMANCE.md, "NATS JetStream";
issue 13 item 4).

  bench_nats.py BUILD_DIR [--events 100000] [--rounds 3] [--latency-rate 2000]
                [--latency-seconds 20] [--procs 3]

A private nats-server (tests/cli/nats_server.py: JetStream, file store in a temporary
directory, max_payload 8 MB) and `frame-cat --nats-setup`. Traffic made once and kept in
BUILD_DIR/bench-data (never committed): `mesh-sim gen --no-corpus --events N` (≈ 3 KB a
message). The file is read once first (page cache warm).
1. Throughput, --rounds rounds, each in turn on the same frames:
     pipe      `frame-cat -q F | frame-cat -q > /dev/null`
     publish   `frame-cat -q F --to nats://…/fh.src.bench.{pp}` (16 partitions, every ack awaited)
     consume   `frame-cat -q --from 'nats://…/FH_SRC?consumer=…' --limit N > /dev/null`
               (a new durable consumer on what publish stored; each message acked once written)
   Wall time, CPU of the frame-cat processes (wait4) and of nats-server (/proc/PID/stat, the
   delta over the run). The stream is purged after each round.
2. Added latency: a writer paced at --latency-rate messages/s for --latency-seconds stamps each
   frame's `recv` with the wall clock (µs) as it writes it; a reader of the last stage's stdout
   takes each frame's arrival time minus its `recv`. Paths: the writer → `frame-cat | frame-cat`
   → reader (a Unix pipe), and the writer → `frame-cat --to nats://` → nats-server →
   `frame-cat --from nats://` → reader. p50, p99, max.
3. Scaling: 1 … --procs publishers at once (the frames split in equal parts, each process its
   own part), and 1 … --procs `frame-cat --from` processes on one durable consumer (they share
   its messages; stdout /dev/null): wall time until the last frame is stored / acked (the
   consumer's info polled every 50 ms), CPU of each side.
Prints Markdown."""
import json, os, re, signal, socket, struct, subprocess, sys, tempfile, threading, time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "cli"))
import nats_server  # noqa: E402
import ws_bin  # noqa: E402

build = os.path.abspath(sys.argv[1])
tool = lambda n: os.path.join(build, "tools", n)
opt = {"--events": "100000", "--rounds": "3", "--latency-rate": "2000", "--latency-seconds": "20", "--procs": "3"}
a = sys.argv[2:]
for i in range(0, len(a) - 1, 2):
    if a[i] not in opt:
        raise SystemExit("bench_nats.py: unknown option " + a[i])
    opt[a[i]] = a[i + 1]
if len(a) % 2:
    raise SystemExit("bench_nats.py: option without a value: " + a[-1])
events, rounds, procs_max = int(opt["--events"]), int(opt["--rounds"]), int(opt["--procs"])
lat_rate, lat_seconds = int(opt["--latency-rate"]), float(opt["--latency-seconds"])
for t in ("frame-cat", "mesh-sim"):
    if not os.access(tool(t), os.X_OK):
        raise SystemExit("bench_nats.py: %s is not built (ninja -C %s tools/%s)" % (t, build, t))
if not nats_server.find_binary():
    raise SystemExit("bench_nats.py: nats-server is not installed (scripts/setup.sh installs it)")
CLK = os.sysconf("SC_CLK_TCK")
tmp = tempfile.mkdtemp(prefix="sov-bench-nats-")


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def wait_all(ps):
    """Waits for every process of `ps`; [(pid, CPU s, exit status)] from wait4(2)."""
    out = []
    for p in ps:
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.append((p.pid, ru.ru_utime + ru.ru_stime, p.returncode))
    return out


def split(data):
    """[(start, end)] of the complete records of frame-stream bytes."""
    out, i = [], 0
    while i < len(data):
        n, j = ws_bin.uvarint(data, i)
        if n is None or j + n > len(data):
            break
        out.append((i, j + n))
        i = j + n
    return out


def request(port, subject, payload=b""):
    """A NATS request over a plain socket (a JetStream API call); the reply's JSON."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.b 1\r\n' +
              b"PUB %s _INBOX.b %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
    while True:
        line = f.readline()
        if line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith(b"MSG"):
            body = f.read(int(line.split()[-1]) + 2)[:-2]
            s.close()
            return json.loads(body)
        elif not line or line.startswith(b"-ERR"):
            raise SystemExit("nats-server: %r" % line)


# ---- traffic
data_dir = os.path.join(build, "bench-data")
os.makedirs(data_dir, exist_ok=True)
traffic = os.path.join(data_dir, "nats-%d.frames" % events)
if not os.path.exists(traffic):
    t0 = time.time()
    subprocess.run([tool("mesh-sim"), "gen", "--no-corpus", "--events", str(events), "-o", traffic + ".part"],
                   check=True, stderr=subprocess.DEVNULL)
    os.rename(traffic + ".part", traffic)
    made = "made in %.0f s" % (time.time() - t0)
else:
    made = "already there"
data = open(traffic, "rb").read()
spans = split(data)
N, MB = len(spans), len(data) / 1e6

srv = nats_server.NatsServer(tmp, "bench").start()
U, port = srv.url, srv.port
subprocess.run([tool("frame-cat"), "-q", "--nats-setup", U], check=True)
load0 = open("/proc/loadavg").read().split()[:3]
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# frame-cat over NATS JetStream\n")
print("- traffic: %s, %s messages, %.1f MB of frame records (%.0f bytes a message; %s)" % (
    os.path.basename(traffic), f"{N:,}", MB, len(data) / N, made))
print("- nats-server %s, file store in %s, one server on loopback" % (
    subprocess.run([srv.binary, "--version"], capture_output=True, text=True).stdout.strip(), tmp))
print("- machine: %s, %d cores; load average at start: %s\n" % (cpu_model, os.cpu_count(), " ".join(load0)))
sys.stdout.flush()


def server_cpu():
    return cpu_s(srv.proc.pid)


def rate(n, mb, s):
    return "%s msg/s, %.1f MB/s" % (f"{n / s:,.0f}", mb / s)


# ---- 1. throughput
print("## 1. Throughput, %d rounds (each: pipe, publish, consume, on the same frames)\n" % rounds)
print("| round | pipe: `frame-cat F \\| frame-cat` | CPU (both) | publish: `frame-cat F --to nats://` | CPU frame-cat "
      "| CPU nats-server | consume: `frame-cat --from nats://` | CPU frame-cat | CPU nats-server |")
print("|---:|---|---:|---|---:|---:|---|---:|---:|")
summary = {"pipe": [], "pub": [], "con": [], "pub_fc": [], "pub_srv": [], "con_fc": [], "con_srv": []}
for k in range(rounds):
    t0 = time.monotonic()
    p1 = subprocess.Popen([tool("frame-cat"), "-q", traffic], stdout=subprocess.PIPE)
    p2 = subprocess.Popen([tool("frame-cat"), "-q"], stdin=p1.stdout, stdout=subprocess.DEVNULL)
    p1.stdout.close()
    r = wait_all([p1, p2])
    pipe_w, pipe_c = time.monotonic() - t0, r[0][1] + r[1][1]
    if any(x[2] for x in r):
        raise SystemExit("pipe failed")

    subj = "fh.src.bench%d" % k
    s0, t0 = server_cpu(), time.monotonic()
    p = subprocess.Popen([tool("frame-cat"), "-q", traffic, "--to", U + "/" + subj + ".{pp}"])
    (_, pub_c, rc), = wait_all([p])
    pub_w, pub_s = time.monotonic() - t0, server_cpu() - s0
    if rc:
        raise SystemExit("publish exited %d" % rc)

    s0, t0 = server_cpu(), time.monotonic()
    p = subprocess.Popen([tool("frame-cat"), "-q", "--from", U + "/FH_SRC?consumer=c%d&filter=%s.>" % (k, subj),
                          "--limit", str(N)], stdout=subprocess.DEVNULL)
    (_, con_c, rc), = wait_all([p])
    con_w, con_s = time.monotonic() - t0, server_cpu() - s0
    if rc:
        raise SystemExit("consume exited %d" % rc)
    request(port, "$JS.API.STREAM.PURGE.FH_SRC")
    for key, v in (("pipe", pipe_w), ("pub", pub_w), ("con", con_w), ("pub_fc", pub_c), ("pub_srv", pub_s),
                   ("con_fc", con_c), ("con_srv", con_s)):
        summary[key].append(v)
    print("| %d | %.2f s: %s | %.2f s | %.2f s: %s | %.2f s | %.2f s | %.2f s: %s | %.2f s | %.2f s |" % (
        k + 1, pipe_w, rate(N, MB, pipe_w), pipe_c, pub_w, rate(N, MB, pub_w), pub_c, pub_s,
        con_w, rate(N, MB, con_w), con_c, con_s), flush=True)
med = lambda v: sorted(v)[len(v) // 2]
print("\nMedians: pipe %s; publish %s (%.1f µs of frame-cat CPU and %.1f µs of nats-server CPU a message); "
      "consume %s (%.1f µs and %.1f µs a message).\n" % (
          rate(N, MB, med(summary["pipe"])), rate(N, MB, med(summary["pub"])), med(summary["pub_fc"]) / N * 1e6,
          med(summary["pub_srv"]) / N * 1e6, rate(N, MB, med(summary["con"])), med(summary["con_fc"]) / N * 1e6,
          med(summary["con_srv"]) / N * 1e6), flush=True)


# ---- 2. latency
RECV_KEY = b"\x64recv\x1b"


def stamp_and_send(dst, n_msgs):
    """Writes the first n_msgs records to `dst` at lat_rate a second, each with recv = now (µs)."""
    t0 = time.time()
    k = 0
    while k < n_msgs:
        due = min(n_msgs, int((time.time() - t0) * lat_rate) + 1)
        if due > k:
            now_us = time.time_ns() // 1000
            buf = bytearray()
            for s, e in spans[k:due]:
                rec = bytearray(data[s:e])
                at = rec.find(RECV_KEY, 0, 400)
                rec[at + 6:at + 14] = struct.pack(">Q", now_us)
                buf += rec
            dst.write(bytes(buf))
            dst.flush()
            k = due
        time.sleep(0.001)
    dst.close()


def read_delays(src, n_msgs, delays):
    """Reads records from `src`, appending arrival − recv (ms) of each, until n_msgs came."""
    buf = bytearray()
    while len(delays) < n_msgs:
        chunk = src.read1(1 << 20)
        if not chunk:
            return
        now_us = time.time_ns() // 1000
        buf += chunk
        i = 0
        for s, e in split(buf):
            at = buf.find(RECV_KEY, s, e)
            delays.append((now_us - struct.unpack(">Q", buf[at + 6:at + 14])[0]) / 1000)
            i = e
        del buf[:i]


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def latency(path_name, first_argv, last_argv):
    n_msgs = min(N, int(lat_rate * lat_seconds))
    s0 = server_cpu()
    last = subprocess.Popen(last_argv, stdin=subprocess.PIPE if first_argv is None else None, stdout=subprocess.PIPE)
    if first_argv is None:  # a pipe: the writer feeds the first frame-cat, which feeds the last
        first = None
        head = subprocess.Popen([tool("frame-cat"), "-q"], stdin=subprocess.PIPE, stdout=last.stdin)
        last.stdin.close()
        sink = head.stdin
        firsts = [head]
    else:
        head = subprocess.Popen(first_argv, stdin=subprocess.PIPE)
        sink = head.stdin
        firsts = [head]
    delays = []
    reader = threading.Thread(target=read_delays, args=(last.stdout, n_msgs, delays), daemon=True)
    reader.start()
    stamp_and_send(sink, n_msgs)
    reader.join(120)
    time.sleep(0.5)
    cpu = [cpu_s(p.pid) for p in firsts + [last]]
    for p in firsts:
        p.wait(120)
    if last.poll() is None:
        last.send_signal(signal.SIGTERM)
    last.wait(120)
    srv_c = server_cpu() - s0
    us = lambda c: "%.2f s (%.0f µs/msg)" % (c, c / max(1, len(delays)) * 1e6)
    print("| %s | %s | %.2f ms | %.2f ms | %.2f ms | %s | %s | %s |" % (
        path_name, f"{len(delays):,}", pct(delays, 0.5), pct(delays, 0.99), max(delays) if delays else 0,
        us(cpu[0]), us(cpu[1]), us(srv_c)), flush=True)
    return delays


print("## 2. Added latency at %s messages/s for %.0f s (arrival − send stamp in `recv`)\n" % (f"{lat_rate:,}", lat_seconds))
print("| path | frames | p50 | p99 | max | CPU: first frame-cat | CPU: last frame-cat | CPU: nats-server |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
latency("writer → `frame-cat \\| frame-cat` → reader (Unix pipe)", None, [tool("frame-cat"), "-q"])
latency("writer → `frame-cat --to nats://` → nats-server → `frame-cat --from nats://` → reader",
        [tool("frame-cat"), "-q", "--to", U + "/fh.src.lat.{pp}"],
        [tool("frame-cat"), "-q", "--from", U + "/FH_SRC?consumer=lat&filter=fh.src.lat.>"])
request(port, "$JS.API.STREAM.PURGE.FH_SRC")


def publish_only():
    """The paced writer into `frame-cat --to nats://` with no consumer: the publish's share."""
    n_msgs = min(N, int(lat_rate * lat_seconds))
    s0 = server_cpu()
    head = subprocess.Popen([tool("frame-cat"), "-q", "--to", U + "/fh.src.lat2.{pp}"], stdin=subprocess.PIPE)
    stamp_and_send(head.stdin, n_msgs)
    (_, c, _), = wait_all([head])
    srv_c = server_cpu() - s0
    us = lambda c: "%.2f s (%.0f µs/msg)" % (c, c / n_msgs * 1e6)
    print("| writer → `frame-cat --to nats://` → nats-server (no consumer) | %s | — | — | — | %s | — | %s |" % (
        f"{n_msgs:,}", us(c), us(srv_c)), flush=True)


publish_only()
request(port, "$JS.API.STREAM.PURGE.FH_SRC")
print()


# ---- 3. scaling
def parts(n):
    """n files holding consecutive equal shares of the records."""
    out = []
    for i in range(n):
        s, e = spans[i * N // n][0], spans[(i + 1) * N // n - 1][1]
        path = os.path.join(tmp, "part-%d-%d.frames" % (n, i))
        with open(path, "wb") as f:
            f.write(data[s:e])
        out.append(path)
    return out


def consumed(name):
    """True when durable `name` of FH_SRC has every message of its filter delivered and acked
    (the server's consumer info: nothing pending, nothing awaiting an ack)."""
    ci = request(port, "$JS.API.CONSUMER.INFO.FH_SRC." + name)
    return ci.get("num_pending") == 0 and ci.get("num_ack_pending") == 0 and ci.get("ack_floor", {}).get(
        "consumer_seq", 0) >= N


print("## 3. Scaling: processes per stage\n")
print("| processes | publish: wall, rate | CPU of the publishers | nats-server CPU | consume (one durable consumer): wall, "
      "rate | CPU of the consumers | nats-server CPU |")
print("|---:|---|---:|---:|---|---:|---:|")
for n in range(1, procs_max + 1):
    files = parts(n)
    subj = "fh.src.scale%d" % n
    s0, t0 = server_cpu(), time.monotonic()
    ps = [subprocess.Popen([tool("frame-cat"), "-q", f, "--to", U + "/" + subj + ".{pp}"]) for f in files]
    r = wait_all(ps)
    pw, pc, ps_c = time.monotonic() - t0, sum(x[1] for x in r), server_cpu() - s0
    if any(x[2] for x in r):
        raise SystemExit("a publisher failed")
    s0, t0 = server_cpu(), time.monotonic()
    cs = [subprocess.Popen([tool("frame-cat"), "-q", "--from", U + "/FH_SRC?consumer=s%d&filter=%s.>" % (n, subj)],
                           stdout=subprocess.DEVNULL) for _ in range(n)]
    end = time.monotonic() + 600
    time.sleep(0.2)  # the consumer exists once the first process has bound to it
    while time.monotonic() < end:
        try:
            if consumed("s%d" % n):
                break
        except SystemExit:
            pass
        time.sleep(0.05)
    cw, cs_c = time.monotonic() - t0, server_cpu() - s0
    cc = sum(cpu_s(c.pid) for c in cs)
    for c in cs:
        c.send_signal(signal.SIGTERM)
    wait_all(cs)
    request(port, "$JS.API.STREAM.PURGE.FH_SRC")
    print("| %d | %.2f s: %s | %.2f s | %.2f s | %.2f s: %s | %.2f s | %.2f s |" % (
        n, pw, rate(N, MB, pw), pc, ps_c, cw, rate(N, MB, cw), cc, cs_c), flush=True)

print("\n- load average at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
srv.stop()
subprocess.run(["rm", "-rf", tmp])
