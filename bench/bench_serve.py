#!/usr/bin/env python3
"""cvl-serve benchmarks on loopback (docs/PERFORMANCE.md, "cvl-serve"; issue 11 item 4).

  bench_serve.py BUILD_DIR [--events 200000] [--frames FILE] [--rounds 3] [--subscribers 100]
                 [--per-subscriber 5000] [--rates 1000,10000] [--live-seconds 10]

Traffic: `mesh-sim gen --profile realistic --events N` (kept in BUILD_DIR/bench-data, never
committed; --frames takes a frame file instead), packed once by cvl-pack. Then, in one run:
1. Replay to one subscriber from cursor 0: the consumer is bench/serve_reader (C, one poll loop,
   WebSocket frames counted, payloads not parsed), beside `cvl-cat ARCH > /dev/null` over the
   same archive and a plain loopback socket copy of as many bytes (sendfile(2) of the frame file
   into a socket, recv_into a 1 MiB buffer), alternating, --rounds rounds; CPU seconds of
   cvl-serve from /proc/PID/stat → messages per CPU-second of the server.
2. --subscribers at once (one serve_reader process, one poll loop), cursors spread evenly over
   the archive, each reading --per-subscriber messages: aggregate messages/s and MB/s beside
   cvl-cat's rate of part 1; cvl-serve's RSS before, peak (VmHWM) and CPU.
3. Live latency: cvl-pack reading a pipe into a fresh archive served by cvl-serve; a subscriber
   connected without a cursor; frames written at a steady rate (--rates, --live-seconds each);
   latency = receipt by the subscriber − the write(2) of the frame into cvl-pack's stdin
   (CLOCK_MONOTONIC on both sides), p50/p99/max; each rate once as cvl-pack runs by default and
   once with --fsync-interval 100000 (no journal fsync during the run), to show the fsyncs' share.
Prints Markdown tables."""
import os, resource, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request, json, shutil
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cli"))
from harness import stop  # noqa: E402

build = os.path.abspath(sys.argv[1])
tool = lambda n: os.path.join(build, "tools", n)
reader = os.path.join(build, "bench", "serve_reader")
opt = {"--events": "200000", "--frames": "", "--rounds": "3", "--subscribers": "100", "--per-subscriber": "5000",
       "--rates": "1000,10000", "--live-seconds": "10"}
a = sys.argv[2:]
for i in range(0, len(a) - 1, 2):
    if a[i] not in opt:
        raise SystemExit("bench_serve.py: unknown option " + a[i])
    opt[a[i]] = a[i + 1]
events = int(opt["--events"])
tmp = tempfile.mkdtemp(prefix="sov-bench-serve-")
CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def status_kib(pid, key):
    for l in open("/proc/%d/status" % pid):
        if l.startswith(key + ":"):
            return int(l.split()[1])
    return 0


def pss_kib(pid):
    try:
        for l in open("/proc/%d/smaps_rollup" % pid):
            if l.startswith("Pss:"):
                return int(l.split()[1])
    except OSError:
        pass
    return 0


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def serve(arch):
    errp = os.path.join(tmp, "serve-%d.err" % time.monotonic_ns())
    err = open(errp, "w+")
    p = subprocess.Popen([tool("cvl-serve"), arch, "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(6000):
        err.seek(0)
        t = err.read()
        if " on 127.0.0.1:" in t:
            return p, int(t.split(" on 127.0.0.1:")[1].split()[0])
        if p.poll() is not None:
            break
        time.sleep(0.02)
    raise SystemExit("cvl-serve did not start: " + open(errp).read())


def health(port):
    return json.loads(urllib.request.urlopen("http://127.0.0.1:%d/xrpc/_health" % port, timeout=30).read())


def read_serve(port, specs, times=None):
    """Runs serve_reader; returns (total messages, total bytes, seconds, reader CPU, per-connection lines)."""
    args = [reader, str(port)] + (["--times", times] if times else []) + specs
    c0 = children_cpu()
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
    cpu = children_cpu() - c0
    out = r.stdout.decode().splitlines()
    if r.returncode != 0:
        bad = [l for l in out if not l.endswith("end count")][:5]
        raise SystemExit("serve_reader failed (%d): %s %s" % (r.returncode, r.stderr.decode(), bad))
    tot = out[-1].split(":", 1)[1].split(",")
    return int(tot[0].split()[1]), int(tot[1].split()[1]), float(tot[2].split()[1]), cpu, out[:-1]


def split_records(data, limit):
    """Offsets [(start, end)] of the first `limit` frame records of frame-stream bytes."""
    out, i = [], 0
    while i < len(data) and len(out) < limit:
        start, n, shift = i, 0, 0
        while True:
            c = data[i]; i += 1
            n |= (c & 0x7f) << shift
            shift += 7
            if not c & 0x80:
                break
        i += n
        out.append((start, i))
    return out


def plain_copy(path, nbytes):
    """sendfile(2) of the first nbytes of `path` through a loopback TCP socket; the reader
    recv_into()s a 1 MiB buffer. Returns seconds (first byte sent to last byte read)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]

    def send():
        s = socket.create_connection(("127.0.0.1", port))
        with open(path, "rb") as f:
            off = 0
            while off < nbytes:
                off += os.sendfile(s.fileno(), f.fileno(), off, nbytes - off)
        s.close()
    conn_t = threading.Thread(target=send)
    conn_t.start()
    c, _ = ls.accept()
    buf = bytearray(1 << 20)
    got = 0
    t0 = time.perf_counter()
    while got < nbytes:
        n = c.recv_into(buf)
        if not n:
            break
        got += n
    dt = time.perf_counter() - t0
    conn_t.join()
    c.close()
    ls.close()
    return dt


# --- the traffic and the archive -------------------------------------------------------------
data_dir = os.path.join(build, "bench-data")
os.makedirs(data_dir, exist_ok=True)
frames = opt["--frames"]
gen_note = "given with --frames"
if not frames:
    frames = os.path.join(data_dir, "real-%d.frames" % events)
    gen_note = "already there (generated earlier)"
    if not os.path.exists(frames) or os.path.getsize(frames) == 0:
        t0 = time.time()
        subprocess.run([tool("mesh-sim"), "gen", "-q", "--profile", "realistic", "--events", str(events), "-o", frames],
                       check=True)
        gen_note = "generated in %.0f s" % (time.time() - t0)
load0 = open("/proc/loadavg").read().split()[:3]
print("# cvl-serve on loopback\n")
print("- traffic: %s (%.1f MB of frame records; %s)" % (frames, os.path.getsize(frames) / 1e6, gen_note))
arch = os.path.join(tmp, "arch")
t0 = time.time()
c0 = children_cpu()
subprocess.run([tool("cvl-pack"), "-o", arch, "-q"], stdin=open(frames, "rb"), check=True)
pack_s, pack_cpu = time.time() - t0, children_cpu() - c0
arch_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(arch) for f in fs)
print("- archive: %.1f MB on disk (cvl-pack: %.1f s wall, %.1f s CPU)" % (arch_bytes / 1e6, pack_s, pack_cpu))
print("- load average at start: %s (2 cores, shared with other work)" % " ".join(load0))
print("- consumer: bench/serve_reader (C, WebSocket frames counted, payloads not parsed)\n")

# --- 1. one subscriber from cursor 0 ---------------------------------------------------------
srv, port = serve(arch)
total = health(port)["head"]  # every ordinal: mesh-sim gen writes no markers
rows = []
for rnd in range(int(opt["--rounds"])):
    # cvl-cat of the whole archive into /dev/null
    c0 = children_cpu()
    t0 = time.perf_counter()
    subprocess.run([tool("cvl-cat"), arch, "-q"], stdout=subprocess.DEVNULL, check=True)
    cat_s = time.perf_counter() - t0
    cat_cpu = children_cpu() - c0
    # cvl-serve → serve_reader from cursor 0
    s0 = cpu_s(srv.pid)
    n, nbytes, secs, rcpu, _ = read_serve(port, ["0:%d" % total])
    scpu = cpu_s(srv.pid) - s0
    # plain socket copy of as many bytes
    plain = plain_copy(frames, min(nbytes, os.path.getsize(frames)))
    rows.append((n, nbytes, secs, scpu, rcpu, cat_s, cat_cpu, plain))
print("## 1. Replay to one subscriber from cursor 0 (%d messages, %.1f MB of message bytes)\n" % (rows[0][0], rows[0][1] / 1e6))
print("| round | cvl-serve → reader | cvl-serve CPU | messages per cvl-serve CPU-second | reader CPU | cvl-cat ARCH > /dev/null | plain socket copy of the same bytes | serve / cvl-cat | serve / plain socket |")
print("|---:|---|---:|---:|---:|---|---|---:|---:|")
for i, (n, nbytes, secs, scpu, rcpu, cat_s, cat_cpu, plain) in enumerate(rows):
    print("| %d | %.2f s: %.0f messages/s, %.0f MB/s | %.2f s | %.0f | %.2f s | %.2f s (%.2f s CPU): %.0f messages/s, %.0f MB/s | %.2f s: %.0f MB/s | %.0f%% | %.0f%% |" % (
        i + 1, secs, n / secs, nbytes / secs / 1e6, scpu, n / scpu if scpu else 0, rcpu, cat_s, cat_cpu, n / cat_s,
        nbytes / cat_s / 1e6, plain, nbytes / plain / 1e6, 100 * cat_s / secs, 100 * plain / secs), flush=True)
stop(srv)
cat_rate = sorted(r[0] / r[5] for r in rows)[len(rows) // 2]

# --- 2. many subscribers at once ---------------------------------------------------------------
subs, per = int(opt["--subscribers"]), int(opt["--per-subscriber"])
per = min(per, total)
srv, port = serve(arch)
time.sleep(0.5)
rss0, anon0, pss0 = status_kib(srv.pid, "VmRSS"), status_kib(srv.pid, "RssAnon"), pss_kib(srv.pid)
specs = ["%d:%d" % (i * (total - per) // max(subs - 1, 1), per) for i in range(subs)]
s0 = cpu_s(srv.pid)
peak = [rss0, anon0, pss0]
done = threading.Event()


def sample():
    while not done.wait(0.05):
        try:
            peak[0] = max(peak[0], status_kib(srv.pid, "VmRSS"))
            peak[1] = max(peak[1], status_kib(srv.pid, "RssAnon"))
            peak[2] = max(peak[2], pss_kib(srv.pid))
        except OSError:
            return
threading.Thread(target=sample, daemon=True).start()
n, nbytes, secs, rcpu, lines = read_serve(port, specs)
done.set()
scpu = cpu_s(srv.pid) - s0
hwm = status_kib(srv.pid, "VmHWM")
slowest = max(float(l.split("seconds ")[1].split(",")[0]) for l in lines)
fastest = min(float(l.split("seconds ")[1].split(",")[0]) for l in lines)
stop(srv)
print("\n## 2. %d subscribers at once (cursors spread evenly over the archive, %d messages each)\n" % (subs, per))
print("| aggregate | vs cvl-cat's sequential rate (part 1, median) | cvl-serve CPU | messages per cvl-serve CPU-second | reader CPU | first / last subscriber done |")
print("|---|---:|---:|---:|---:|---|")
print("| %.2f s: %.0f messages/s, %.0f MB/s | %.0f%% | %.2f s | %.0f | %.2f s | %.2f / %.2f s |" % (
    secs, n / secs, nbytes / secs / 1e6, 100 * (n / secs) / cat_rate, scpu, n / scpu if scpu else 0, rcpu, fastest,
    slowest), flush=True)
print("\n| cvl-serve memory, idle → peak while serving (sampled every 50 ms) | value |\n|---|---|")
print("| VmRSS (counts each subscriber's own mapping of the same index pages) | %.1f → %.1f MiB (VmHWM %.1f MiB) |" % (
    rss0 / 1024, peak[0] / 1024, hwm / 1024))
print("| RssAnon (heap: per-subscriber buffers, contexts) | %.1f → %.1f MiB = %.0f KiB per subscriber |" % (
    anon0 / 1024, peak[1] / 1024, (peak[1] - anon0) / subs))
print("| Pss (shared file pages counted once) | %.1f → %.1f MiB |" % (pss0 / 1024, peak[2] / 1024), flush=True)

# --- 3. live latency ---------------------------------------------------------------------------
print("\n## 3. Live latency: write into cvl-pack's stdin → receipt by a subscriber\n")
print("| rate | cvl-pack | messages | p50 | p99 | max | cvl-serve CPU | cvl-pack CPU |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
blob = open(frames, "rb").read(min(os.path.getsize(frames), 1 << 30))
# Each rate as cvl-pack runs by default (journal fsync every second, on its reading thread),
# then without journal fsyncs during the run: the difference is the fsyncs' share.
runs = [(int(x), []) for x in opt["--rates"].split(",")]
runs += [(r, ["--fsync-interval", "100000"]) for r, _ in list(runs)]
for rate, pack_args in runs:
    count = int(rate * float(opt["--live-seconds"]))
    recs = split_records(blob, count)
    count = len(recs)
    live = os.path.join(tmp, "live-%d-%d" % (rate, len(pack_args)))
    pack = subprocess.Popen([tool("cvl-pack"), "-o", live, "-q"] + pack_args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(3000):
        if os.path.isdir(os.path.join(live, "journal")) and os.path.isdir(os.path.join(live, "seg")):
            break
        time.sleep(0.01)
    srv, port = serve(live)
    times = os.path.join(tmp, "times-%d-%d" % (rate, len(pack_args)))
    res = {}
    rt = threading.Thread(target=lambda: res.update(r=read_serve(port, ["-:%d" % count], times)))
    rt.start()
    for _ in range(3000):
        if health(port)["consumers"] >= 1:
            break
        time.sleep(0.01)
    time.sleep(0.2)
    s0, p0 = cpu_s(srv.pid), cpu_s(pack.pid)
    sent = [0] * count
    fd = pack.stdin.fileno()
    start = time.monotonic_ns()
    step = 1e9 / rate
    for k, (b, e) in enumerate(recs):
        due = start + int(k * step)
        now = time.monotonic_ns()
        if due > now + 200_000:
            time.sleep((due - now) / 1e9)
        sent[k] = time.monotonic_ns()
        mv = memoryview(blob)[b:e]
        while mv:
            mv = mv[os.write(fd, mv):]
    rt.join()
    scpu, pcpu = cpu_s(srv.pid) - s0, cpu_s(pack.pid) - p0
    pack.stdin.close()
    pack.wait()
    stop(srv)
    raw = open(times, "rb").read()
    recv = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
    lat = sorted((r - s) / 1e6 for r, s in zip(recv, sent))
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print("| %d/s | %s | %d | %.2f ms | %.2f ms | %.2f ms | %.2f s | %.2f s |" % (
        rate, " ".join(pack_args) or "default", len(lat), q(0.5), q(0.99), lat[-1], scpu, pcpu), flush=True)
shutil.rmtree(tmp, ignore_errors=True)
