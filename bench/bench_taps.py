#!/usr/bin/env python3
"""Tap benchmarks on loopback against `mesh-sim serve --pdses N` (docs/PERFORMANCE.md, "Taps").

  bench_taps.py BUILD_DIR [--hosts 1000,5000,10000] [--replay 20000]

1. mesh-tap connection scale: N simulated PDSes on one port, mesh-tap with a hosts file of N;
   time until every host is live (from mesh-tap's metrics), resident memory of mesh-tap then
   (VmRSS, and per connection), and its CPU over 20 s of idle connections (pings included).
2. relay-tap throughput: the simulator generates E events into its relay window first; then
   relay-tap --cursor 0 replays them into /dev/null (wall, CPU, messages/s, MB/s), beside a
   plain socket that reads the same replay without parsing it, in the same run, alternating.
Prints a Markdown table per part. Plain WebSockets only (the simulator serves no TLS yet)."""
import os, resource, signal, socket, subprocess, sys, tempfile, time, urllib.request

build = os.path.abspath(sys.argv[1])
tool = lambda n: os.path.join(build, "tools", n)
args = sys.argv[2:]
hosts_list = [1000, 5000, 10000]
replay = 20000
for i, a in enumerate(args):
    if a == "--hosts":
        hosts_list = [int(x) for x in args[i + 1].split(",") if x.isdigit()]  # "none": skip part 1
    if a == "--replay":
        replay = int(args[i + 1])
tmp = tempfile.mkdtemp(prefix="sov-bench-taps-")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cli"))
import ws_bin  # noqa: E402


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


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


print("## mesh-tap connection scale (plain WebSockets, loopback)\n")
print("| hosts | time until all live | mesh-tap RSS | RSS per connection | mesh-tap CPU, 20 s idle | simulator RSS |")
print("|---:|---:|---:|---:|---:|---:|")
for n in hosts_list:
    sim, port = start_sim("--pdses", str(n), "--accounts", "2000", "--rate", "20", "--events", "1000000000")
    hosts = os.path.join(tmp, "hosts-%d.txt" % n)
    with open(hosts, "w") as f:
        for i in range(n):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    mport = free_port()
    st = os.path.join(tmp, "state-%d" % n)
    t0 = time.time()
    tap = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q", "--metrics", "127.0.0.1:%d" % mport],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "tap-%d.err" % n), "w"))
    live = 0
    while time.time() - t0 < 900:
        live = metric(mport, 'mesh_tap_hosts{state="live"}') or 0
        live += metric(mport, 'mesh_tap_hosts{state="idle"}') or 0
        if live >= n:
            break
        time.sleep(0.2)
    t_live = time.time() - t0
    rss = rss_kib(tap.pid)
    c0 = cpu_s(tap.pid)
    time.sleep(20)
    c1 = cpu_s(tap.pid)
    sim_rss = rss_kib(sim.pid)
    print("| %d | %s | %.0f MiB | %.1f KiB | %.2f s (%.1f%% of a core) | %.0f MiB |" % (
        n, ("%.1f s" % t_live) if live >= n else "not reached (%d live)" % live, rss / 1024, rss / n, c1 - c0,
        100 * (c1 - c0) / 20, sim_rss / 1024), flush=True)
    stop(tap)
    stop(sim)

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
