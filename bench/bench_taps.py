#!/usr/bin/env python3
"""Tap benchmarks on loopback against `mesh-sim serve --pdses N` (docs/PERFORMANCE.md, "Taps").

  bench_taps.py BUILD_DIR [--hosts 1000,5000,10000] [--modes plain,tls] [--ping-interval S] [--replay 20000]
                [--parts scale,relay,mesh,latency] [--mesh 1000,200000] [--latency-rate 10000]

1. mesh-tap connection scale, plain WebSockets and TLS (`mesh-sim serve --tls`, mesh-tap --ca):
   N simulated PDSes on one port, mesh-tap with a hosts file of N; time until every host is live
   (from mesh-tap's metrics) and the CPU both processes spent meanwhile (the simulator's one
   service thread at 100% of a core would make it the bottleneck), resident memory of mesh-tap
   then (VmRSS, and per connection), and its CPU over 20 s of idle connections with a ping every
   --ping-interval seconds (default 10: two pings per connection in the window).
2. relay-tap throughput: the simulator generates E events into its relay window first; then
   relay-tap --cursor 0 replays them into /dev/null (wall, CPU, messages/s, MB/s), beside a
   plain socket that reads the same replay without parsing it, in the same run, alternating.
3. mesh-tap aggregate throughput (--mesh HOSTS,EVENTS): the simulator (--pool, so generation
   is not the limit) fills the windows of HOSTS PDSes with EVENTS events; then, three rounds,
   alternating: plain sockets upgrade to every PDS with cursor=0 and read the replays without
   parsing them (what the simulator can send), mesh-tap with every cursor at 0 and
   --max-messages EVENTS into a reader that counts bytes (messages/s, MB/s of its output), and a
   plain loopback TCP copy of as many bytes as mesh-tap wrote, between two processes.
4. Latency added by the taps (--latency-rate R messages/s, 12 s, one reader per simulator run):
   plain sockets on 100 PDSes, mesh-tap on them, a plain socket on the relay, relay-tap on it;
   the reader of each stdout (or socket) stamps every read, and each frame's delay is its stamp
   minus the truth file's recv of that event (when the simulator emitted it): p50, p99, max.
Prints a Markdown table per part (parts 2-4: plain WebSockets)."""
import os, resource, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

build = os.path.abspath(sys.argv[1])
tool = lambda n: os.path.join(build, "tools", n)
args = sys.argv[2:]
hosts_list = [1000, 5000, 10000]
replay = 20000
parts = ["scale", "relay", "mesh", "latency"]
mesh_hosts, mesh_events = 1000, 200000
latency_rate = 10000
modes = ["plain", "tls"]
ping_interval = 10
for i, a in enumerate(args):
    if a == "--hosts":
        hosts_list = [int(x) for x in args[i + 1].split(",") if x.isdigit()]  # "none": skip part 1
    if a == "--replay":
        replay = int(args[i + 1])
    if a == "--parts":
        parts = args[i + 1].split(",")
    if a == "--mesh":
        mesh_hosts, mesh_events = [int(x) for x in args[i + 1].split(",")]
    if a == "--latency-rate":
        latency_rate = int(args[i + 1])
    if a == "--modes":
        modes = [m for m in args[i + 1].split(",") if m in ("plain", "tls")]
    if a == "--ping-interval":
        ping_interval = float(args[i + 1])
tmp = tempfile.mkdtemp(prefix="sov-bench-taps-")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cli"))
import ws_bin  # noqa: E402
from harness import stop  # noqa: E402


def start_sim(*a):
    return ws_bin.start_sim(tool("mesh-sim"), tmp, "sim", *a)


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for l in open("/proc/%d/status" % pid):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metric(port, name):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    except Exception:
        return None
    total = 0
    for l in body.splitlines():
        if l.startswith(name):
            total += float(l.rsplit(" ", 1)[1])
    return total


def part_scale():
    print("## mesh-tap connection scale (loopback; pings every %g s)\n" % ping_interval)
    print("| mode | hosts | time until all live | CPU meanwhile: mesh-tap / simulator | mesh-tap RSS (per connection) "
          "| after 20 s idle | mesh-tap CPU, 20 s idle | simulator RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        for n in hosts_list:
            tls = mode == "tls"
            pki = os.path.join(tmp, "pki")
            extra = ["--tls", pki] if tls else []
            sim, port = start_sim("--pdses", str(n), "--accounts", "2000", "--rate", "20", "--events", "1000000000", *extra)
            hosts = os.path.join(tmp, "hosts-%s-%d.txt" % (mode, n))
            with open(hosts, "w") as f:
                for i in range(n):
                    f.write("%s://127.0.0.1:%d/pds/%d pds%d.test\n" % ("wss" if tls else "ws", port, i, i))
            mport = free_port()
            st = os.path.join(tmp, "state-%s-%d" % (mode, n))
            s0 = cpu_s(sim.pid)
            t0 = time.time()
            tap = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q", "--metrics",
                                    "127.0.0.1:%d" % mport, "--ping-interval", str(ping_interval)]
                                   + (["--ca", os.path.join(pki, "ca.pem")] if tls else []),
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "tap-%s-%d.err" % (mode, n)), "w"))
            live = 0
            while time.time() - t0 < 900:
                live = metric(mport, 'mesh_tap_hosts{state="live"}') or 0
                live += metric(mport, 'mesh_tap_hosts{state="idle"}') or 0
                if live >= n:
                    break
                time.sleep(0.2)
            t_live = time.time() - t0
            tap_cpu, sim_cpu = cpu_s(tap.pid), cpu_s(sim.pid) - s0
            rss = rss_kib(tap.pid)
            c0 = cpu_s(tap.pid)
            time.sleep(20)
            c1 = cpu_s(tap.pid)
            rss_idle = rss_kib(tap.pid)
            sim_rss = rss_kib(sim.pid)
            print("| %s | %d | %s | %.1f s / %.1f s (%.0f%% / %.0f%% of a core) | %.0f MiB (%.1f KiB) | %.0f MiB (%.1f KiB) "
                  "| %.2f s (%.1f%% of a core) | %.0f MiB |" % (
                      "TLS" if tls else "plain", n, ("%.1f s" % t_live) if live >= n else "not reached (%d live)" % live,
                      tap_cpu, sim_cpu, 100 * tap_cpu / t_live, 100 * sim_cpu / t_live, rss / 1024, rss / n,
                      rss_idle / 1024, rss_idle / n, c1 - c0, 100 * (c1 - c0) / 20, sim_rss / 1024), flush=True)
            stop(tap)
            stop(sim)


def part_relay():
    print("\n## relay-tap replay throughput (plain WebSocket, loopback, %d events)\n" % replay)
    sim, port = start_sim("--pdses", "20", "--relay", "--rate", "100000", "--events", str(replay), "--relay-window",
                          str(replay + 10), "--truth", os.path.join(tmp, "truth.frames"))
    # Wait until the relay holds every event (the truth file: each PDS event and its relay copy).
    t = os.path.join(tmp, "truth.frames")
    for _ in range(1800):  # at most 30 minutes
        if os.path.exists(t) and len(ws_bin.frames(t)) >= 2 * replay:
            break
        time.sleep(1)
    else:
        raise SystemExit("the simulator did not fill its relay window within 30 minutes")
    rows = []
    for rnd in range(3):
        # relay-tap, the whole window into /dev/null
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        p = subprocess.Popen([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--cursor", "0", "--max-messages",
                              str(replay), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = p.communicate()[1].decode()
        wall = time.time() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        # plain socket: upgrade by hand, read bytes until the replay's size is in
        s, status, rest, _ = ws_bin.connect(port, "/relay/xrpc/com.atproto.sync.subscribeRepos?cursor=0")
        want = int(err.split("(")[1].split(" bytes")[0].replace(",", "")) if "bytes)" in err else 0
        got = len(rest)
        t1 = time.time()
        while got < want:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
        plain = time.time() - t1
        s.close()
        rows.append((wall, cpu, want, plain))
    for wall, cpu, want, plain in rows:
        print("| relay-tap: %.2f s wall, %.2f s CPU, %.0f messages/s, %.1f MB/s | plain socket read of the same replay: %.2f s, %.1f MB/s | relay-tap at %.0f%% of the plain socket |" % (
            wall, cpu, replay / wall, want / wall / 1e6, plain, want / plain / 1e6, 100 * plain / wall))
    stop(sim)


def wait_idle(p, least_s, quiet_s=1.5, limit_s=1800):
    """Waits at least `least_s`, then until process `p` has used no CPU for `quiet_s` (the
    simulator emitting its events); false when it is still busy after `limit_s`."""
    time.sleep(least_s)
    t_end = time.time() + limit_s
    last, since = cpu_s(p.pid), time.time()
    while time.time() < t_end:
        time.sleep(0.25)
        c = cpu_s(p.pid)
        if c - last > 0.02:
            last, since = c, time.time()
        elif time.time() - since >= quiet_s:
            return True
    return False


def plain_replays(port, paths, quiet=2.0):
    """Upgrades to every path (cursor=0 replays), reads everything without parsing, until no
    byte came for `quiet` s; returns (bytes, seconds from the first connect to the last byte)."""
    import selectors
    sel = selectors.DefaultSelector()
    t0 = time.time()
    total, last = 0, t0
    for path in paths:
        s, status, rest, _ = ws_bin.connect(port, path)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        total += len(rest)
    open_n = len(paths)
    while open_n:
        ev = sel.select(timeout=quiet)
        if not ev:
            break
        for key, _ in ev:
            try:
                d = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            if not d:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_n -= 1
                continue
            total += len(d)
            last = time.time()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return total, last - t0


def loopback_copy(nbytes):
    """Seconds to copy `nbytes` through a loopback TCP socket from another process (1 MiB writes)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    w = subprocess.Popen([sys.executable, "-c",
                          "import socket,sys\ns=socket.create_connection(('127.0.0.1',%d))\nb=b'x'*(1<<20)\nn=%d\n"
                          "while n>0:\n    k=min(n,len(b)); s.sendall(b[:k]); n-=k\ns.close()" % (port, nbytes)])
    c, _ = srv.accept()
    t0 = time.time()
    got = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        got += len(d)
    dt = time.time() - t0
    c.close()
    srv.close()
    w.wait()
    return dt if got == nbytes else float("nan")


def drain(fd, stamps=None):
    """Reads `fd` to its end; returns the byte count (and appends (time, bytes) per read to `stamps`)."""
    n = 0
    while True:
        d = os.read(fd, 1 << 20)
        if not d:
            return n
        n += len(d)
        if stamps is not None:
            stamps.append((time.time(), d))


def part_mesh():
    hosts_n, events = mesh_hosts, mesh_events
    print("\n## mesh-tap aggregate throughput (plain WebSockets, loopback, %d PDSes, %d events)\n" % (hosts_n, events))
    sim, port = start_sim("--pdses", str(hosts_n), "--pool", "20000", "--rate", "150000", "--events", str(events),
                          "--pds-window", str(events))
    if not wait_idle(sim, events / 150000.0):
        raise SystemExit("the simulator did not finish emitting within 30 minutes")
    hosts = os.path.join(tmp, "mesh-hosts.txt")
    with open(hosts, "w") as f:
        for i in range(hosts_n):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    paths = ["/pds/%d/xrpc/com.atproto.sync.subscribeRepos?cursor=0" % i for i in range(hosts_n)]
    print("| round | simulator → plain sockets (replay of every window, no parsing) | mesh-tap (exec to exit, %d hosts with cursor 0) | mesh-tap CPU | plain loopback TCP copy of mesh-tap's output bytes | mesh-tap / simulator |" % hosts_n)
    print("|---:|---|---|---:|---|---:|")
    for rnd in range(3):
        sim_bytes, sim_s = plain_replays(port, paths)
        st = os.path.join(tmp, "mesh-state-%d" % rnd)
        os.makedirs(st)
        with open(os.path.join(st, "cursors"), "w") as f:
            for i in range(hosts_n):
                f.write("pds%d.test 0\n" % i)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        tap = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "--max-messages", str(events), "-q"],
                               stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "mesh-tap-%d.err" % rnd), "w"))
        out_bytes = drain(tap.stdout.fileno())
        tap.wait()
        wall = time.time() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        copy_s = loopback_copy(out_bytes)
        print("| %d | %.2f s: %.0f messages/s, %.1f MB/s | %.2f s: %.0f messages/s, %.1f MB/s%s | %.2f s | %.3f s: %.0f MB/s | %.0f%% |" % (
            rnd + 1, sim_s, events / sim_s, sim_bytes / sim_s / 1e6, wall, events / wall, out_bytes / wall / 1e6,
            "" if tap.returncode == 0 else " (exit %d)" % tap.returncode, cpu, copy_s, out_bytes / copy_s / 1e6,
            100 * sim_s / wall), flush=True)
    stop(sim)


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def frame_stamps(stamps, seq_key):
    """(src, seq) → read time (µs) of every frame record in the stamped reads of a tap's stdout."""
    out = {}
    buf = bytearray()
    for t, d in stamps:
        buf += d
        used = 0
        for start, end, env in records_prefix(buf):
            used = end
            if "wire" in env:
                _, p = ws_bin.message(env["wire"])
                if "seq" in p:
                    out[(seq_key(env["src"]), p["seq"])] = int(t * 1e6)
        del buf[:used]
    return out


def records_prefix(data):
    """ws_bin.records over the complete records at the start of `data`."""
    i = 0
    while i < len(data):
        j, n, shift = i, 0, 0
        while j < len(data):
            c = data[j]; j += 1
            n |= (c & 0x7f) << shift
            shift += 7
            if not c & 0x80:
                break
        else:
            return
        if j + n > len(data):
            return
        env, k = ws_bin.cbor(bytes(data[j:j + n]))
        yield i, j + n, env
        i = j + n


def ws_stamps(stamps):
    """relay seq → read time (µs) of every binary WebSocket message in stamped socket reads."""
    out = {}
    buf = bytearray()
    for t, d in stamps:
        buf += d
        i = 0
        while True:
            if len(buf) - i < 2:
                break
            op, ln, hl = buf[i] & 15, buf[i + 1] & 127, 2
            if ln == 126:
                if len(buf) - i < 4:
                    break
                ln, hl = int.from_bytes(buf[i + 2:i + 4], "big"), 4
            elif ln == 127:
                if len(buf) - i < 10:
                    break
                ln, hl = int.from_bytes(buf[i + 2:i + 10], "big"), 10
            if len(buf) - i < hl + ln:
                break
            if op == 2:
                _, p = ws_bin.message(bytes(buf[i + hl:i + hl + ln]))
                if "seq" in p:
                    out[p["seq"]] = int(t * 1e6)
            i += hl + ln
        del buf[:i]
    return out


def stamped_sockets(port, paths, stamps, stop_evt):
    """Reads WebSocket subscriptions `paths` live until `stop_evt`; appends (time, path index,
    bytes) per read to `stamps`."""
    import selectors
    sel = selectors.DefaultSelector()
    for k, path in enumerate(paths):
        s, _, rest, _ = ws_bin.connect(port, path)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, k)
        stamps.append((time.time(), k, rest))
    while not stop_evt.is_set() and sel.get_map():
        for key, _ in sel.select(timeout=0.2):
            try:
                d = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            if not d:
                sel.unregister(key.fileobj)
                continue
            stamps.append((time.time(), key.data, d))
    for key in list(sel.get_map().values()):
        key.fileobj.close()


def latency_run(rate, seconds, pdses, relay, use_tap):
    """One simulator run at `rate` messages/s for `seconds`: with `relay`, relay-tap (`use_tap`)
    or a plain socket on the relay; without, mesh-tap on every PDS or a plain socket on each
    (one reader per run: the simulator's one sending thread is not shared). Returns the delays
    in ms."""
    import threading
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tmp
    truth = os.path.join(shm, "sov-bench-latency-%d.frames" % os.getpid())
    sim, port = start_sim("--pdses", str(pdses), *(["--relay"] if relay else []), "--pool", "20000", "--rate",
                          str(rate), "--events", str(rate * seconds), "--linger", "2", "--truth", truth,
                          "--too-slow", "1000000")
    if relay:
        cmd = [tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "-q"]
        paths = ["/relay/xrpc/com.atproto.sync.subscribeRepos"]
    else:
        hosts = os.path.join(tmp, "latency-hosts.txt")
        with open(hosts, "w") as f:
            for i in range(pdses):
                f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
        st = os.path.join(tmp, "latency-state")
        if os.path.isdir(st):
            shutil.rmtree(st)
        cmd = [tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q"]
        paths = ["/pds/%d/xrpc/com.atproto.sync.subscribeRepos" % i for i in range(pdses)]
    tap_st, plain_st = [], []
    stop_evt = threading.Event()
    if use_tap:
        tap = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "latency-tap.err"), "a"))
        threads = [threading.Thread(target=drain, args=(tap.stdout.fileno(), tap_st))]
    else:
        threads = [threading.Thread(target=stamped_sockets, args=(port, paths, plain_st, stop_evt))]
    for t in threads:
        t.start()
    sim.wait()
    if use_tap:
        stop(tap)
    stop_evt.set()
    for t in threads:
        t.join()
    sent = {}
    for env in ws_bin.frames(truth):
        if (env["src"] == "relay.test") == relay and not env["src"].startswith("dropped"):
            _, p = ws_bin.message(env["wire"])
            sent[("relay" if relay else env["src"], p["seq"])] = env["recv"]
    os.unlink(truth)
    tap_at = frame_stamps(tap_st, lambda src: "relay" if relay else src)
    plain_at = {}
    for k in range(len(paths)):
        src = "relay" if relay else "pds%d.test" % k
        for seq, t in ws_stamps([(t, d) for t, i, d in plain_st if i == k]).items():
            plain_at[(src, seq)] = t
    return [(t - sent[k]) / 1000.0 for k, t in (tap_at if use_tap else plain_at).items() if k in sent]


def part_latency():
    rate, seconds = latency_rate, 12
    print("\n## Latency added by the taps (plain WebSockets, loopback, %d messages/s, %d s)\n" % (rate, seconds))
    print("| path | frames matched | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for relay, use_tap, name in ((False, False, "simulator → plain sockets on the 100 PDSes (no tap)"),
                                 (False, True, "simulator → mesh-tap (100 PDSes) → reader of its stdout"),
                                 (True, False, "simulator → plain socket on the relay (no tap)"),
                                 (True, True, "simulator → relay-tap → reader of its stdout")):
        d = latency_run(rate, seconds, 100, relay, use_tap)
        print("| %s | %d | %.2f ms | %.2f ms | %.2f ms |" % (name, len(d), percentile(d, 0.5), percentile(d, 0.99),
                                                            max(d) if d else float("nan")), flush=True)


for part in parts:
    {"scale": part_scale, "relay": part_relay, "mesh": part_mesh, "latency": part_latency}[part]()
