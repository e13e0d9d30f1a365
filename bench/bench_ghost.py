#!/usr/bin/env python3
"""ghost-diff benchmarks (docs/PERFORMANCE.md, "ghost-diff"; issue 12 item 6).

  bench_ghost.py BUILD_DIR [--events 600000] [--rounds 3] [--live-rate 10000] [--live-seconds 150]
                 [--windows 5,30] [--drop 0.005] [--hosts 20] [--one-core] [--same-as GHOST_DIFF]

Traffic, made once and kept in BUILD_DIR/bench-data (never committed; 5.2 GB at the defaults,
the generator's own output is deleted once split): `mesh-sim gen --events N
--rate LIVE_RATE --no-corpus` (the simulated clock at LIVE_RATE events/s), then split into the
two sides ghost-diff compares:
  mesh   the generated messages, each under the `src` of its PDS (one of --hosts labels
         pdsK.test, by a hash of the DID), in recv order;
  relay  the same messages under `src` relay.test, recv + 20 ms + an exponential delay of mean
         80 ms (a relay's latency), a share --drop of them left out (the drops), in recv order.
Each source starts with a `connect` marker 1 ms before its first event (observed throughout).
The wire bytes are the generator's on both sides (the matcher keys by DID and commit CID or
time, never by seq), so the relay's seqs are not rewritten.
1. Throughput from files: `ghost-diff --relay R --mesh M -o /dev/null -q` beside
   `frame-cat -q R M > /dev/null` (framing and envelope checks only), alternating, --rounds
   rounds, the page cache warm: wall time and CPU seconds from wait4(2) → events/s (both sides
   counted) per wall second and per CPU-second, and ghost-diff / frame-cat; peak RSS from GNU
   time (/usr/bin/time -f %M: the process it forks starts small, where a child forked by this
   script would report the script's own size), the load average before each round.
   --one-core: both run under `taskset -c 0` (every thread of ghost-diff on one core, as
   frame-cat): the CPU-second figures are then one core's work.
2. Memory live: a Python writer paces both files into two FIFOs on their own recv clock, at
   --live-rate events/s per side for --live-seconds, read by `ghost-diff --relay FIFO --mesh
   FIFO --window W -o /dev/null`, once per window of --windows. Past the files' span they are
   replayed again, each pass later by that span and with its DIDs renamed (same length, same
   bytes on both sides), so that each pass brings new keys and the matcher (which keeps decided
   keys 2 windows + 60 s) reaches its steady state. VmRSS of ghost-diff sampled every 0.5 s,
   VmHWM at the end (before its inputs close); the writer's longest round (how far it fell
   behind); ghost-diff's summary (stderr). ghost-diff does not print its pending entries.
   --live-seconds 0 skips this part.
--same-as GHOST_DIFF (another build's binary, e.g. main's): after part 1, both run over the same
   files with several option sets (none, --window 30, --window 0.05, --only drop,unobserved);
   their findings and summaries must be byte for byte the same (SHA-256 shown), or the script
   exits 1 (a speed change must not change the output).
Prints Markdown."""
import bisect, hashlib, mmap, os, random, re, shutil, struct, subprocess, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cli"))
import ws_bin  # noqa: E402

build = os.path.abspath(sys.argv[1])
tool = lambda n: os.path.join(build, "tools", n)
opt = {"--same-as": "", "--events": "600000", "--rounds": "3", "--live-rate": "10000", "--live-seconds": "150", "--windows": "5,30",
       "--drop": "0.005", "--hosts": "20"}
a = sys.argv[2:]
one_core = "--one-core" in a
a = [x for x in a if x != "--one-core"]
for i in range(0, len(a) - 1, 2):
    if a[i] not in opt:
        raise SystemExit("bench_ghost.py: unknown option " + a[i])
    opt[a[i]] = a[i + 1]
if len(a) % 2:
    raise SystemExit("bench_ghost.py: option without a value: " + a[-1])
events, rounds, live_rate = int(opt["--events"]), int(opt["--rounds"]), int(opt["--live-rate"])
for t in ("ghost-diff", "frame-cat", "mesh-sim"):
    if not os.access(tool(t), os.X_OK):
        raise SystemExit("bench_ghost.py: %s is not built (ninja -C %s tools/%s)" % (t, build, t))
tmp = tempfile.mkdtemp(prefix="sov-bench-ghost-")
CLK = os.sysconf("SC_CLK_TCK")


# ---- DAG-CBOR encoding of envelopes (canonical: map keys by length, then bytewise)
def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError("integer too large")


def enc(v):
    if isinstance(v, bool) or v is None:
        raise ValueError("not used in envelopes")
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return head(5, len(v)) + b"".join(enc(k) + enc(v[k]) for k in keys)
    raise ValueError("type %r" % type(v))


def record(env):
    body = enc(env)
    n, out = len(body), bytearray()
    while True:
        out.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            return bytes(out) + body


def connect(src, recv):
    return record({"src": src, "recv": recv, "mark": {"kind": "connect", "url": "ws://%s" % src}})


def make_traffic():
    data_dir = os.path.join(build, "bench-data")
    os.makedirs(data_dir, exist_ok=True)
    stem = os.path.join(data_dir, "ghost-%d-r%d-d%s-h%s" % (events, live_rate, opt["--drop"], opt["--hosts"]))
    mesh, relay = stem + ".mesh.frames", stem + ".relay.frames"
    if os.path.exists(mesh) and os.path.exists(relay):
        return mesh, relay, "already there (made earlier)"
    gen = os.path.join(data_dir, "ghost-gen-%d-r%d.frames" % (events, live_rate))
    t0 = time.time()
    if not os.path.exists(gen):
        subprocess.run([tool("mesh-sim"), "gen", "-q", "--no-corpus", "--events", str(events), "--rate", str(live_rate),
                        "-o", gen + ".tmp"], check=True)
        os.replace(gen + ".tmp", gen)
    data = open(gen, "rb").read()
    rng = random.Random(12)
    nh = int(opt["--hosts"])
    hosts = ["pds%d.test" % k for k in range(nh)]
    m_recs, r_recs = [], []  # (recv, src index, wire start, wire end): the generator's envelopes end with `wire`
    for s, e, env in ws_bin.records(data):
        wire = env["wire"]
        h, i = ws_bin.cbor(wire)
        p, _ = ws_bin.cbor(wire, i)
        did = p.get("did") or p.get("repo") or ""
        host = int.from_bytes(hashlib.blake2b(did.encode(), digest_size=4).digest(), "little") % nh
        m_recs.append((env["recv"], host, e - len(wire), e))
        if rng.random() >= float(opt["--drop"]):
            r_recs.append((env["recv"] + 20000 + int(rng.expovariate(1 / 80000)), nh, e - len(wire), e))
    srcs = hosts + ["relay.test"]
    for recs, path in ((m_recs, mesh), (r_recs, relay)):
        recs.sort(key=lambda x: x[0])
        with open(path + ".tmp", "wb") as f:
            for src in (["relay.test"] if path == relay else hosts):
                f.write(connect(src, recs[0][0] - 1000))
            for recv, src, ws, we in recs:
                f.write(record({"src": srcs[src], "recv": recv, "wire": data[ws:we]}))
        os.replace(path + ".tmp", path)
    del data
    os.remove(gen)
    return mesh, relay, "made in %.0f s (mesh-sim gen and the split)" % (time.time() - t0)


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
PIN = ["taskset", "-c", "0"] if one_core else []


def run_timed(argv, stdout=subprocess.DEVNULL):
    """(wall s, CPU s, peak RSS KiB or None, exit status, stderr) of one run: times from wait4(2),
    the peak RSS from GNU time when installed (wait4's would be this script's size: a forked
    child carries its parent's high-water mark through exec)."""
    err = tempfile.TemporaryFile()
    rss_file = os.path.join(tmp, "rss")
    wrap = [GNU_TIME, "-f", "%M", "-o", rss_file] if GNU_TIME else []
    t0 = time.monotonic()
    p = subprocess.Popen(wrap + PIN + argv, stdout=stdout, stderr=err)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    rss = None
    if GNU_TIME:
        try:
            rss = int(open(rss_file).read().split()[-1])
        except (OSError, ValueError, IndexError):
            rss = None
    return wall, ru.ru_utime + ru.ru_stime, rss, p.returncode, err.read().decode(errors="replace")


def count_events(path):
    """Messages (not markers) of a frame file, from frame-cat's summary."""
    r = subprocess.run([tool("frame-cat"), path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    m = re.search(r"([\d,]+) frames read(?: \(([\d,]+) markers?\))?", r.stderr)
    return int(m.group(1).replace(",", "")) - int((m.group(2) or "0").replace(",", ""))


mesh, relay, made = make_traffic()
n_mesh, n_relay = count_events(mesh), count_events(relay)
n = n_mesh + n_relay
size = os.path.getsize(mesh) + os.path.getsize(relay)
load0 = open("/proc/loadavg").read().split()[:3]
print("# ghost-diff\n")
print("- traffic: %s, %s (%s + %s events, %.1f MB of frame records; %s)" % (
    os.path.basename(mesh), os.path.basename(relay), f"{n_mesh:,}", f"{n_relay:,}", size / 1e6, made))
print("- load average at start: %s (%d cores, shared with other work)" % (" ".join(load0), os.cpu_count()))
print("- %s\n" % ("one core: ghost-diff and frame-cat both under `taskset -c 0`" if one_core else
                  "cores: as the scheduler gives them (ghost-diff's reader threads and main thread may run in parallel)"))

# ---- 1. throughput from files
for path in (mesh, relay):  # warm the page cache
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
print("## 1. From files: ghost-diff beside frame-cat (%s events, both sides)\n" % f"{n:,}")
pin = "`taskset -c 0` " if one_core else ""
print("| round | load (1 min) | %s`ghost-diff --relay R --mesh M -o /dev/null -q` | events/s | events per CPU-second "
      "| peak RSS | %s`frame-cat -q R M > /dev/null` | events per CPU-second | ghost-diff / frame-cat (CPU) |" % (pin, pin))
print("|---:|---:|---|---:|---:|---:|---|---:|---:|")
for k in range(rounds):
    load = open("/proc/loadavg").read().split()[0]
    gw, gc, grss, grc, gerr = run_timed([tool("ghost-diff"), "--relay", relay, "--mesh", mesh, "-o", os.devnull, "-q"])
    if grc != 0:
        raise SystemExit("ghost-diff exited %d: %s" % (grc, gerr[-2000:]))
    fw, fc, _, frc, ferr = run_timed([tool("frame-cat"), "-q", relay, mesh])
    if frc != 0:
        raise SystemExit("frame-cat exited %d: %s" % (frc, ferr[-2000:]))
    print("| %d | %s | %.2f s wall, %.2f s CPU | %s | %s | %s | %.2f s wall, %.2f s CPU | %s | %.2f× |" % (
        k + 1, load, gw, gc, f"{n / gw:,.0f}", f"{n / gc:,.0f}", "%.1f MiB" % (grss / 1024) if grss else "n/a (no GNU time)",
        fw, fc, f"{n / fc:,.0f}", gc / fc), flush=True)
w, c, rss, rc, err = run_timed([tool("ghost-diff"), "--relay", relay, "--mesh", mesh, "-o", os.devnull])
print("\nghost-diff's summary over these files (one more run, without -q):\n")
print("```\n" + "\n".join(l for l in err.splitlines() if l.startswith("ghost-diff: ")) + "\n```\n", flush=True)

if opt["--same-as"]:
    other = os.path.abspath(opt["--same-as"])
    print("## Same output as %s\n" % other)
    print("| options | findings (lines) | SHA-256 of the findings, this build | the other | summaries |")
    print("|---|---:|---|---|---|")
    differ = False
    for extra in ([], ["--window", "30"], ["--window", "0.05"], ["--only", "drop,unobserved"]):
        got = []
        for binary in (tool("ghost-diff"), other):
            out = os.path.join(tmp, "same.jsonl")
            r = subprocess.run([binary, "--relay", relay, "--mesh", mesh, "-o", out] + extra, stderr=subprocess.PIPE)
            data = open(out, "rb").read() if os.path.exists(out) else b""
            if os.path.exists(out):
                os.remove(out)
            got.append((r.returncode, hashlib.sha256(data).hexdigest(), data.count(b"\n"), r.stderr))
        same = got[0] == got[1]
        differ |= not same
        print("| `%s` | %s | %s | %s | %s |" % (" ".join(extra) or "(none)", f"{got[0][2]:,}", got[0][1][:16],
                                               got[1][1][:16], "same" if got[0][3] == got[1][3] else "**differ**"), flush=True)
    if differ:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit("bench_ghost.py: the output differs from %s's" % other)
    print()


# ---- 2. memory, live through FIFOs
def status_kib(pid, key):
    try:
        for l in open("/proc/%d/status" % pid):
            if l.startswith(key + ":"):
                return int(l.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


class Side:
    """One side's file, mapped, as the live writer replays it: `recvs`, `recv_offs` (where each
    record's recv is, 8 bytes big-endian), record `spans` [(start, end)], `wires` [(start, end)]
    (None for markers, which come first: `first_msg`)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        self.recvs, self.recv_offs, self.spans, self.wires, self.srcs = [], [], [], [], []
        d, i, n_all = self.data, 0, len(self.data)
        while i < n_all:
            n, j = ws_bin.uvarint(d, i)
            # the envelope's head (everything but the wire bytes) is small: decode it from a prefix
            head_bytes = d[j:j + min(n, 512)]
            k = 1  # past the map header (3 or 4 entries: src, [mark,] recv, wire)
            recv, wire, src = None, None, None
            for _ in range(head_bytes[0] & 0x1f):
                key, k = ws_bin.cbor(head_bytes, k)
                if key == "wire":
                    info, k2 = head_bytes[k] & 0x1f, k + 1
                    ln = {24: 1, 25: 2, 26: 4, 27: 8}.get(info, 0)
                    wire = (j + k2 + ln, j + n)
                    break
                if key == "recv":
                    assert head_bytes[k] == 0x1b, "recv is a µs time: an 8-byte integer"
                    recv_off = j + k + 1
                val, k = ws_bin.cbor(head_bytes, k)
                if key == "recv":
                    recv = val
                elif key == "src":
                    src = val
            self.recvs.append(recv)
            self.recv_offs.append(recv_off)
            self.srcs.append(src)
            self.spans.append((i, j + n))
            self.wires.append(wire)
            i = j + n
        self.first_msg = next(k for k, w in enumerate(self.wires) if w is not None)
        assert all(w is not None for w in self.wires[self.first_msg:]), "markers only at the start"


live_s = float(opt["--live-seconds"])
if live_s <= 0:  # the throughput part only
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0)
sides = {"relay": Side(relay), "mesh": Side(mesh)}
t_base = min(sd.recvs[0] for sd in sides.values())
# The files hold 60 s of traffic at 10,000 events/s; a longer live run replays them again, each
# pass later by `period` and with its DIDs renamed (did:plc: -> did:pla:, did:plb:, …, the same
# bytes on both sides), so that every pass brings new keys and the matcher's memory can reach
# its steady state (decided keys are kept 2 windows + 60 s).
period = max(sd.recvs[-1] for sd in sides.values()) - t_base + 1000000


def live(window):
    """One live run with --window WINDOW: (events written, paced seconds, the writer's longest
    round (s), CPU s, VmRSS KiB at
    1/4, 1/2 and 3/4 of the run, VmRSS at the end, VmHWM, exit status, summary lines)."""
    fifo = {s: os.path.join(tmp, "%s-%s.fifo" % (s, window)) for s in sides}
    for p in fifo.values():
        os.mkfifo(p)
    errp = os.path.join(tmp, "ghost-live-%s.err" % window)
    g = subprocess.Popen([tool("ghost-diff"), "--relay", fifo["relay"], "--mesh", fifo["mesh"], "--window", window,
                          "-o", os.devnull], stdout=subprocess.DEVNULL, stderr=open(errp, "w"))
    fds = {}
    t_open = time.monotonic()
    while len(fds) < 2:  # ghost-diff may open its inputs one after the other
        for s in sides:
            if s not in fds:
                try:
                    fds[s] = os.open(fifo[s], os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    pass
        if time.monotonic() - t_open > 60 or g.poll() is not None:
            raise SystemExit("ghost-diff did not open its FIFOs: " + open(errp).read())
        time.sleep(0.01)
    for fd in fds.values():
        os.set_blocking(fd, True)
    samples = []  # VmRSS KiB every 0.5 s
    done = threading.Event()

    def sampler():
        while not done.is_set():
            samples.append(status_kib(g.pid, "VmRSS"))
            time.sleep(0.5)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    pos = {s: [0, 0] for s in sides}  # (pass, next record index)
    end_us = t_base + int(live_s * 1e6)
    written = 0
    t0 = time.monotonic()
    longest = 0.0  # the writer's longest round: how far it fell behind its schedule at most
    while True:
        t_round = time.monotonic()
        due = min(end_us - 1, t_base + int((t_round - t0) * 1e6))
        finished = 0
        for s, sd in sides.items():
            p, k = pos[s]
            while True:
                if k >= len(sd.recvs):
                    p, k = p + 1, sd.first_msg
                if sd.recvs[k] + p * period >= end_us:
                    finished += 1
                    break
                k2 = bisect.bisect_right(sd.recvs, due - p * period, lo=k)
                if k2 == k:
                    break
                s0, s1 = sd.spans[k][0], sd.spans[k2 - 1][1]
                if p == 0:
                    chunk = sd.data[s0:s1]
                    written += k2 - k - max(0, min(k2, sd.first_msg) - k)
                else:  # the same bytes but for the DIDs (same length) and the recv times
                    chunk = bytearray(sd.data[s0:s1].replace(b"did:plc:", b"did:pl%c:" % (96 + p)))
                    for i in range(k, k2):
                        struct.pack_into(">Q", chunk, sd.recv_offs[i] - s0, sd.recvs[i] + p * period)
                    written += k2 - k
                mv = memoryview(chunk)
                while mv:
                    mv = mv[os.write(fds[s], mv):]
                k = k2
            pos[s] = [p, k]
        longest = max(longest, time.monotonic() - t_round)
        if finished == len(sides):
            break
        time.sleep(0.005)
    paced = time.monotonic() - t0
    time.sleep(1)
    hwm, rss_end, g_cpu = status_kib(g.pid, "VmHWM"), status_kib(g.pid, "VmRSS"), cpu_s(g.pid)
    for fd in fds.values():
        os.close(fd)
    rc = g.wait(600)
    done.set()
    th.join()
    rss = [r for r in samples if r] or [0]
    quarters = [rss[min(len(rss) - 1, len(rss) * q // 4)] for q in (1, 2, 3)]
    summary = [l for l in open(errp).read().splitlines() if l.startswith("ghost-diff: ")]
    return written, paced, longest, g_cpu, quarters, rss_end, hwm, rc, summary


windows = opt["--windows"].split(",")
print("## 2. Live through FIFOs: %s events/s per side for %.0f s\n" % (f"{live_rate:,}", live_s))
print("| --window | events written (both sides) | paced over (writer's longest round) | ghost-diff CPU "
      "| VmRSS at 1/4, 1/2, 3/4 of the run | VmRSS at the end | peak RSS (VmHWM) | exit |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
summaries = []
for w in windows:
    written, paced, longest, g_cpu, quarters, rss_end, hwm, rc, summary = live(w)
    summaries.append((w, summary))
    print("| %s s | %s | %.1f s (%.0f ms) | %.2f s | %s MiB | %.1f MiB | %.1f MiB | %d |" % (
        w, f"{written:,}", paced, longest * 1000, g_cpu, ", ".join("%.1f" % (q / 1024) for q in quarters), rss_end / 1024, hwm / 1024,
        rc), flush=True)
for w, summary in summaries:
    print("\nghost-diff's summary, --window %s:\n\n```\n%s\n```" % (w, "\n".join(summary)), flush=True)
shutil.rmtree(tmp, ignore_errors=True)
