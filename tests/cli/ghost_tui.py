#!/usr/bin/env python3
"""ghost-diff --tui on a terminal of fixed size (a detached tmux session, 100x30), fed live
through FIFOs by a writer that replays recorded relay-tap and mesh-tap outputs at their own
pace (mesh-sim serve --relay with injected relay drops): the view shows its title, a rate per
input, the totals and a recent drop; colour unless NO_COLOR (then no SGR colour sequence at
all); at most 4 redraws a second (counted in the pane's output stream, and by sampling the
screen); `q` stops it and the summary follows; Ctrl-C too (exit 130); with stdout not a
terminal --tui prints a note and the findings come as usual.

usage: ghost_tui.py BUILD_DIR
Exit status 77 (skipped) when tmux is not installed. Bounded in time: every wait has a generous
limit; the only timing assertion is the redraw cap, with a margin."""
import json, os, re, shutil, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ghost_truth  # noqa: E402
import score as tapscore  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, kill_all, stop, wait_for  # noqa: E402

if not shutil.which("tmux"):
    print("tmux is not installed: skipped")
    sys.exit(77)

build = os.path.abspath(sys.argv[1])
tool = lambda name: os.path.join(build, "tools", name)
tmp = tempfile.mkdtemp(prefix="sov-ghost-tui-")
sock = os.path.join(tmp, "tmux.sock")
procs = []
_checks = Checks()
ok, bad, check = _checks.ok, _checks.bad, _checks.check
P, R, E = 4, 200, 1600
COLS, ROWS = 100, 30
SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def path(name):
    return os.path.join(tmp, name)


def tmux(*args, check_rc=True):
    r = subprocess.run(["tmux", "-S", sock, "-f", "/dev/null"] + list(args), capture_output=True, timeout=60)
    if check_rc and r.returncode != 0:
        raise RuntimeError("tmux %s: %s" % (" ".join(args), r.stderr.decode()))
    return r.stdout.decode("utf-8", "replace")


def capture(session, escapes=False):
    return tmux("capture-pane", "-p", "-t", session, *(["-e"] if escapes else []), check_rc=False)


def colour_params(text):
    """The SGR sequences of `text` that set a colour (30-38, 40-48, 90-97, 100-107)."""
    out = []
    for m in SGR.finditer(text):
        for p in re.split("[;:]", m.group(1)):
            if p.isdigit() and (30 <= int(p) <= 38 or 40 <= int(p) <= 48 or 90 <= int(p) <= 97
                                or 100 <= int(p) <= 107):
                out.append(m.group(0))
                break
    return out


class Feeder:
    """Writes the records of recorded tap outputs into FIFOs at the pace of their recv times
    (one thread per FIFO, from a common start), then keeps the FIFOs open until close()."""

    def __init__(self, pairs, speed=1.0):
        self.pairs, self.speed = pairs, speed
        recs = {}
        for fifo, rec in pairs:
            data = open(rec, "rb").read()
            recs[fifo] = [(env["recv"], data[s:e]) for s, e, env in ws_bin.records(data)]
        self.recs = recs
        self.t0 = min(r[0][0] for r in recs.values() if r)
        self.span = (max(r[-1][0] for r in recs.values() if r) - self.t0) / 1e6 / speed
        self.closing = threading.Event()
        self.done = {}
        self.threads = []

    def start(self):
        self.start_at = time.time() + 0.5
        for fifo, _ in self.pairs:
            t = threading.Thread(target=self._run, args=(fifo,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, fifo):
        try:
            with open(fifo, "wb", buffering=0) as f:
                for recv, b in self.recs[fifo]:
                    due = self.start_at + (recv - self.t0) / 1e6 / self.speed
                    while time.time() < due and not self.closing.is_set():
                        time.sleep(min(0.05, max(0, due - time.time())))
                    if self.closing.is_set():
                        break
                    f.write(b)
                self.done[fifo] = time.time()
                self.closing.wait()
        except (BrokenPipeError, OSError):
            self.done.setdefault(fifo, time.time())

    def close(self):
        self.closing.set()
        for t in self.threads:
            t.join(30)


def record(name):
    """Runs the simulator with relay drops and both taps to files; returns (relay, mesh) paths."""
    truth = path(name + "-truth.frames")
    sim, port = ws_bin.start_sim(tool("mesh-sim"), tmp, name, "--pdses", str(P), "--relay", "--rate", str(R),
                                 "--events", str(E), "--seed", "71", "--pds-window", "100000", "--relay-window",
                                 "100000", "--truth", truth, "--relay-delay-ms", "20", "--relay-drop", "0.05",
                                 "--relay-drop-host", "3", "--relay-drop-collection", "app.bsky.graph.follow")
    procs.append(sim)
    hosts, st = path(name + "-hosts.txt"), path(name + "-state")
    with open(hosts, "w") as f:
        for i in range(P):
            f.write("ws://127.0.0.1:%d/pds/%d pds%d.test\n" % (port, i, i))
    os.makedirs(st, exist_ok=True)
    open(os.path.join(st, "cursors"), "w").write("".join("pds%d.test 0\n" % i for i in range(P)))
    rec_r, rec_m = path(name + "-relay.frames"), path(name + "-mesh.frames")
    rt = subprocess.Popen([tool("relay-tap"), "ws://127.0.0.1:%d/relay" % port, "--cursor", "0", "-q"],
                          stdout=open(rec_r, "wb"), stderr=subprocess.DEVNULL)
    mt = subprocess.Popen([tool("mesh-tap"), "--hosts", hosts, "--state", st, "-q"], stdout=open(rec_m, "wb"),
                          stderr=subprocess.DEVNULL)
    procs.extend([rt, mt])

    def caught_up():
        last, n = {}, 0
        for src, _, mark, wire, _ in tapscore.records(truth):
            if mark is None:
                n += 1
                if src != ghost_truth.DROPPED_SRC:
                    last[src] = bytes(wire)
        if n < 2 * E:
            return False
        have = set()
        for out in (rec_r, rec_m):
            have.update(bytes(r[3]) for r in tapscore.records(out) if r[2] is None)
        return all(w in have for w in last.values())
    caught = wait_for(caught_up, limit=600, step=2)
    time.sleep(1)
    stop(rt)
    stop(mt)
    stop(sim)
    if not caught:
        bad("the recording: the simulator finished and the taps caught up")
    return rec_r, rec_m


def session(name, fifos, findings, env_prefix, log=None):
    """Starts `ghost-diff --tui` in a new detached session (waiting for a go file, so that the
    pane's output can be logged from the first byte); returns the go file's path."""
    go = path(name + ".go")
    # The shell survives the Ctrl-C sent to the pane's foreground (its trap runs a command, so
    # ghost-diff starts with SIGINT at its default and installs its own handler).
    cmd = ("trap 'true' INT; while [ ! -e %s ]; do sleep 0.05; done; %s %s --tui --relay %s --mesh %s -o %s; "
           "echo \"ghost-diff exit=$?\"; sleep 3600" % (go, env_prefix, tool("ghost-diff"), fifos[0], fifos[1],
                                                       findings))
    tmux("new-session", "-d", "-x", str(COLS), "-y", str(ROWS), "-s", name, "sh", "-c", cmd)
    if log:
        tmux("pipe-pane", "-t", name, "-o", "cat >> %s" % log)
    return go


try:
    rec_r, rec_m = record("rec")
    r = subprocess.run([tool("ghost-diff"), "--relay", rec_r, "--mesh", rec_m, "-q"], capture_output=True, timeout=300)
    all_lines = r.stdout.decode().splitlines()
    all_findings = [json.loads(l) for l in all_lines]
    drop_dids = {f["did"] for f in all_findings if f["kind"] == "drop"}
    if not check("the recording: ghost-diff finds drops in it (%d findings, %d DIDs with drops)" % (
            len(all_findings), len(drop_dids)), r.returncode == 0 and drop_dids, r.returncode, r.stderr.decode()):
        raise SystemExit(_checks.summary())

    # ---- 1. colour, the view's content, the redraw cap, q ---------------------------------------
    fifos = [path("c-relay.fifo"), path("c-mesh.fifo")]
    for f in fifos:
        os.mkfifo(f)
    log = path("c-pane.log")
    go = session("c", fifos, path("c-findings.jsonl"), "env -u NO_COLOR", log)
    feeder = Feeder(list(zip(fifos, (rec_r, rec_m))))
    feeder.start()
    open(go, "w").close()
    t_start = time.time()
    samples = []  # (time, plain screen, screen with escapes)
    while time.time() < feeder.start_at + feeder.span + 7:  # the feed, then a window for the last drops
        samples.append((time.time(), capture("c"), capture("c", True)))
        time.sleep(0.05)
    screens = [s for _, s, _ in samples]
    last = screens[-1]
    any_s = lambda pred: any(pred(s) for s in screens)
    check("tui: the title (ghost-diff) is on the screen", any_s(lambda s: "ghost-diff" in s), last)
    def rate_of(screen, name):
        """The first number after the input's name on its line (its events/s), or None."""
        for line in screen.splitlines():
            if name in line:
                nums = re.findall(r"\d[\d,]*(?:\.\d+)?", line.split(name, 1)[1])
                return float(nums[0].replace(",", "")) if nums else None
        return None
    names = [os.path.basename(f) for f in fifos]
    peaks = {n: max((rate_of(x, n) or 0) for x in screens) for n in names}
    check("tui: a line per input (relay and mesh FIFO) with its rate (a /s column), nonzero while fed, and its queue "
          "fill (%s)" % ", ".join("%s peak %g/s" % kv for kv in peaks.items()),
          any_s(lambda x: re.search(r"/s", x) and re.search(r"queue", x, re.I)) and all(v > 0 for v in peaks.values())
          and any_s(lambda x: all(re.search(re.escape(n) + r".*\d+%", x) for n in names)), last)
    check("tui: the win rate and latency percentiles (p50, p90, p99)",
          any_s(lambda x: re.search(r"win rate", x, re.I) and all(q in x for q in ("p50", "p90", "p99"))), last)
    check("tui: totals (matches and drops, with numbers)",
          any_s(lambda s: re.search(r"\d\s*match|match\w*\D{0,20}\d", s, re.I)
                and re.search(r"\d\s*drop|drop\w*\D{0,20}\d", s, re.I)),
          last)
    shown = lambda s: [d for d in drop_dids if d[:20] in s]
    check("tui: a recent drop (the DID of a dropped event) is on the screen",
          any_s(lambda s: shown(s)), last, sorted(drop_dids)[:3])
    check("tui: the screen fits the terminal (no line longer than %d columns)" % COLS,
          all(len(l) <= COLS for s in screens for l in s.splitlines()), max((len(l) for s in screens
                                                                              for l in s.splitlines()), default=0))
    colours = [c for _, _, e in samples for c in colour_params(e)]
    check("tui: colour without NO_COLOR (SGR colour sequences in the pane)", colours, samples[-1][2][:500])
    # Redraws: the pane's output stream, from the first byte; each frame homes the cursor or clears.
    out = open(log, "rb").read().decode("utf-8", "replace") if os.path.exists(log) else ""
    elapsed = time.time() - t_start
    frames = max(out.count("\x1b[H"), out.count("\x1b[1;1H"), out.count("\x1b[2J"))
    changes = sum(1 for a, b in zip(screens, screens[1:]) if a != b)
    sampled = samples[-1][0] - samples[0][0]
    check("tui: at most 4 redraws a second (%d frames in the pane's output over %.1f s; %d screen changes seen in "
          "%d samples over %.1f s)" % (frames, elapsed, changes, len(samples), sampled),
          frames >= 2 and frames <= 4 * elapsed + 3 and changes <= 4 * sampled + 3, len(out))
    tmux("send-keys", "-t", "c", "q")
    ended = wait_for(lambda: "ghost-diff exit=" in capture("c"), limit=120, step=0.2)
    after = capture("c")
    m = re.search(r"ghost-diff exit=(\d+)", after)
    check("tui: q stops it; the view closes and the summary follows (exit 0)",
          ended and m and m.group(1) == "0" and re.search(r"ghost-diff: \d+ mesh events, \d+ relay events", after)
          and "\x1b[?1049h" in out, after)
    feeder.close()
    got = [json.loads(l) for l in open(path("c-findings.jsonl")).read().splitlines() if l.strip()]
    check("tui: the findings went to -o (%d, drops among them)" % len(got),
          any(f["kind"] == "drop" for f in got), len(got))

    # ---- 2. NO_COLOR, and Ctrl-C --------------------------------------------------------------
    fifos = [path("n-relay.fifo"), path("n-mesh.fifo")]
    for f in fifos:
        os.mkfifo(f)
    go = session("n", fifos, path("n-findings.jsonl"), "env NO_COLOR=1")
    feeder = Feeder(list(zip(fifos, (rec_r, rec_m))), speed=2.0)
    feeder.start()
    open(go, "w").close()
    samples = []
    while time.time() < feeder.start_at + feeder.span + 6:
        samples.append(capture("n", True))
        time.sleep(0.2)
    colours = [c for e in samples for c in colour_params(e)]
    check("tui: NO_COLOR=1: no SGR colour sequence (%d samples), the view still drawn" % len(samples),
          not colours and any("ghost-diff" in e for e in samples), colours[:5], samples[-1][:400])
    tmux("send-keys", "-t", "n", "C-c")
    ended = wait_for(lambda: "ghost-diff exit=" in capture("n"), limit=120, step=0.2)
    after = capture("n")
    m = re.search(r"ghost-diff exit=(\d+)", after)
    check("tui: Ctrl-C stops it, the summary follows, exit 130", ended and m and m.group(1) == "130"
          and re.search(r"ghost-diff: \d+ mesh events", after), after)
    feeder.close()

    # ---- 3. not on a terminal -----------------------------------------------------------------
    r = subprocess.run("%s --tui --relay %s --mesh %s | cat" % (tool("ghost-diff"), rec_r, rec_m), shell=True,
                       capture_output=True, timeout=300)
    lines = r.stdout.decode().splitlines()
    err = r.stderr.decode()
    check("--tui with stdout not a terminal (| cat): a note, no escape sequences, the findings on stdout as usual",
          r.returncode == 0 and "--tui" in err and "\x1b[" not in err + r.stdout.decode()
          and sorted(lines) == sorted(all_lines)
          and re.search(r"ghost-diff: \d+ mesh events", err), r.returncode, err[-800:], len(lines),
          len(all_findings))

finally:
    subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True, timeout=60)
    kill_all(procs)

status = _checks.summary()
if status == 0:
    shutil.rmtree(tmp, ignore_errors=True)
else:
    print("the files are in " + tmp)
sys.exit(status)
