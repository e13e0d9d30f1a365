#!/usr/bin/env python3
"""ghost-diff against the reference PDSes (@atproto/pds from the npm registry), with cvl-serve
playing a relay that drops a chosen set of events (issue 12, item 5).

usage: ghost_refnet.py BUILD_DIR REFNET_DIR   (REFNET_DIR: the ref-net harness, ../shared/ref-net)
       ghost_refnet.py BUILD_DIR --rescore RUN_DIR   (7. again on a kept run's files, e.g. after
                                                      a change to ghost-diff; 1.-6. are skipped)

1. Starts ref-net live with its own `run.sh --no-verify` (as refnet_taps.py does, through
   refnet_net.py: REFNET_HOME = BUILD_DIR/interop-refnet/home, shared with refnet_taps, so the
   two must not run at the same time; run.sh refuses a second run on one home) on free loopback
   ports, with its data and our files in a fresh BUILD_DIR/interop-refnet/ghost-* (removed when
   the test passes): 5 accounts per PDS, the whole scenario and a 10 s load.
2. The "relay" is cvl-serve over an archive that is still empty: `cvl-pack -o ARCH < /dev/null`,
   `cvl-serve ARCH`, and `relay-tap ws://cvl-serve --src relay > relay.frames` connects, with no
   cursor: the live head, which is the start of the empty archive, so it gets every message
   appended later. (With --cursor 0 relay-tap would see the first seq jump past the ordinals of
   the mesh's connect markers, which cvl-serve does not send, and rightly write a `gap` marker:
   the relay would then count as unobserved across the whole recording.) Then cvl-serve is
   stopped with SIGSTOP: relay-tap stays connected (its pings, --ping-interval 3600, do not
   expire), so relay.frames starts with a `connect` marker from before the mesh's first event: the relay is observed the whole time, as a live relay that
   delivers late would be. ghost-diff calls a missing copy a drop only while the other side
   was observed (DESIGN.md §11), so a relay tap that connected after the recording would make
   every missing event `unobserved`, not a drop.
3. As soon as the PDSes listen, `mesh-tap --hosts (pds1..pds3) --state ST > mesh.frames`, with
   ST/cursors seeded `pdsN 0` (from each PDS's first event), records the whole run; it gets
   SIGTERM when ref-net has finished.
4. `cvl-pack -o ARCH mesh.frames` archives the recording: the archive was empty, so ordinal i
   is record i of mesh.frames. The chosen set is tombstoned with `tomb-set ARCH` (ordinals on
   standard input): every message of one DID (the one with the most commits among the DIDs
   seen on one PDS only, not the deleted account), and every 7th other `#commit` whose key
   (DID, commit CID) no other mesh message has (a `#sync` after creation or reactivation
   carries its `#commit`'s CID; the matcher pairs by key, so such twins are left alone).
   `cvl-cat ARCH --include-deleted` must give mesh.frames byte for byte, `cvl-cat ARCH` the
   same minus the tombstoned records.
5. SIGCONT: cvl-serve sends relay-tap what was appended since it connected (the whole archive),
   skipping the tombstoned messages (a relay that dropped exactly that set). relay.frames must then hold every message of the
   recording that has a seq, but the tombstoned ones (compared without the seq, which cvl-serve
   rewrites).
6. Time. The mesh recorded each event when the PDS sent it; relay-tap receives all of them in
   the few seconds after SIGCONT, so relay recv − mesh recv (the "latency") ranges up to the
   length of the recording. The window (--window) must hold it, or every match would become a
   drop: W = (last relay recv − first mesh recv) + 30 s. And a drop is only certain once the
   relay has been observed for a whole window after the mesh's copy: relay-tap stays connected
   (idle) until the last mesh recv + W, then gets SIGTERM (its `disconnect` marker carries that
   time). A shorter wait would rightly make the late drops `unobserved`.
7. `ghost-diff --relay relay.frames --mesh mesh.frames --window W`: exit 0; its drops are exactly
   the tombstoned events, each once, by the matcher's key (DID and commit CID for #commit and
   #sync, which share it: a #sync carrying its #commit's CID is the same event; DID and `time`
   for #identity and #account), with the PDS host that sent it (and the collection of a
   commit's first op); every other mesh event is a match (latency = relay recv − mesh recv,
   never negative here); no relay-only and no unobserved finding; the summary line's counts and
   the drops by PDS host and by collection agree with the findings. `--only drop` writes the
   drops alone; `--fail-on-drop` exits 1.
Skips (exit 77, saying why) without REFNET_DIR/run.sh, npm, zstd, jq or an x86-64 Linux.
Cost on 2 cores: a cold `npm ci` 2.5-4.5 min (once per build dir, shared with refnet_taps),
then about 2 + 2 min (the network, then the wait of 6.). SOVEREIGN_KEEP=1 keeps the run
directory (kept anyway on failure), which --rescore reads. Prints "ok - ..." / "FAIL - ..."
lines; exit 1 on any failure.
"""
import collections, json, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, '..', 'cli'))
import refnet_net  # noqa: E402
import ws_bin  # noqa: E402
from harness import Checks, stop, wait_for  # noqa: E402

if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4) != (sys.argv[2] == '--rescore'):
    raise SystemExit('usage: ghost_refnet.py BUILD_DIR REFNET_DIR | BUILD_DIR --rescore RUN_DIR')
build = os.path.abspath(sys.argv[1])
rescore = sys.argv[3] if len(sys.argv) == 4 and sys.argv[2] == '--rescore' else None
refnet = None if rescore else os.path.abspath(sys.argv[2])
tool = lambda name: os.path.join(build, 'tools', name)
ACCOUNTS, LOAD_S, EVERY, SLACK_S = 5, 10, 7, 30
T0 = time.monotonic()
c = Checks(3000)


def note(msg):
    print('# [%5.1fs] %s' % (time.monotonic() - T0, msg), flush=True)


def complete_records(path):
    """Envelopes of the complete records of a frame file that may still be growing."""
    data = open(path, 'rb').read()
    return [env for _, _, env in ws_bin.records(data[:ws_bin.complete_prefix(data)])]


def health(serve_port):
    """cvl-serve's /xrpc/_health as a dict ({} when it does not answer)."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/xrpc/_health' % serve_port, timeout=30) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


from ghost_truth import cid_text  # noqa: E402  (base32 text of a link or of CID bytes)


def key_of(wire):
    """((type, did, cid-or-time[, active, status]) of a message the matcher keys (DESIGN.md §11)
    or None, the collection of a commit's first op or '')."""
    h, p = ws_bin.message(wire)
    if h.get('op') != 1 or not isinstance(p, dict):
        return None, ''
    t = h.get('t')
    if t == '#commit':
        ops = p.get('ops') or []
        return ('commit', p['repo'], cid_text(p['commit'])), (ops[0]['path'].split('/')[0] if ops else '')
    if t == '#sync':
        return ('sync', p['did'], cid_text(ws_bin.car_root(p['blocks']))), ''
    if t == '#identity':
        return ('identity', p['did'], p['time']), ''
    if t == '#account':
        return ('account', p['did'], p['time'], p.get('active'), p.get('status')), ''
    return None, ''


class Choice:
    """The recording's matched-type messages and the set to tombstone (a function of mesh.frames
    alone, so that --rescore finds the same set): `msgs` [(ordinal, envelope, key, collection)],
    `with_seq` (ordinals cvl-serve may send), `tomb` (ordinals), `victim` (the DID dropped whole),
    `n_commits` (the other tombstoned commits)."""

    def __init__(self, envs):
        self.msgs, self.with_seq = [], set()
        did_of = {}
        for i, e in enumerate(envs):
            if 'wire' not in e:
                continue
            p = ws_bin.message(e['wire'])[1]
            if isinstance(p, dict) and p.get('seq') is not None:
                self.with_seq.add(i)
                did_of[i] = p.get('did') or p.get('repo')
            k, coll = key_of(e['wire'])
            if k is not None:
                self.msgs.append((i, e, k, coll))
        key_count = collections.Counter(k[1:] if k[0] in ('commit', 'sync') else k for _, _, k, _ in self.msgs)
        self.srcs_of = collections.defaultdict(set)
        commits_of = collections.Counter()
        deleted = set()
        for _, e, k, _ in self.msgs:
            self.srcs_of[k[1]].add(e['src'])
            commits_of[k[1]] += k[0] == 'commit'
            if k[0] == 'account' and k[4] == 'deleted':
                deleted.add(k[1])
        # the DID with the most commits among those seen on one PDS only (not the migrated
        # one) and not deleted (the reference PDS purges a deleted DID's events)
        candidates = sorted((d for d in commits_of if commits_of[d] and len(self.srcs_of[d]) == 1 and d not in deleted),
                            key=lambda d: (-commits_of[d], d))
        self.victim = candidates[0] if candidates else None
        self.tomb = set(i for i, d in did_of.items() if d == self.victim and self.victim)
        nth = 0
        self.n_commits = 0
        for i, _, k, _ in self.msgs:
            if k[0] == 'commit' and k[1] != self.victim and key_count[k[1:]] == 1:
                nth += 1
                if nth % EVERY == 0:
                    self.tomb.add(i)
                    self.n_commits += 1


def window_of(mesh_envs, relay_envs):
    """Seconds: the largest possible relay recv − mesh recv (last relay message − first mesh
    message), plus SLACK_S."""
    first_mesh = min(e['recv'] for e in mesh_envs if 'wire' in e)
    last_relay = max(e['recv'] for e in relay_envs if 'wire' in e)
    return (last_relay - first_mesh) // 1000000 + SLACK_S


def record_run():
    """Steps 1-6: ref-net, the relay, the mesh, the archive and its tombstones, the catch-up and
    the wait; returns the run directory (mesh.frames, relay.frames)."""
    refnet_net.skip_unless_runnable(refnet)
    for t in ('relay-tap', 'mesh-tap', 'cvl-pack', 'cvl-cat', 'cvl-serve', 'tomb-set', 'ghost-diff'):
        if not os.access(tool(t), os.X_OK):
            raise SystemExit('FAIL - %s is not built (%s)' % (t, tool(t)))
    base = refnet_net.pick_base()
    port = refnet_net.pds_ports(base)
    top = os.path.join(build, 'interop-refnet')
    os.makedirs(top, exist_ok=True)
    T = tempfile.mkdtemp(prefix='ghost-', dir=top)
    os.chmod(T, 0o755)  # ref-net's PostgreSQL runs as the postgres user under T/work
    out, arch, state = (os.path.join(T, d) for d in ('out', 'arch', 'mesh-state'))
    mesh_path, relay_path = os.path.join(T, 'mesh.frames'), os.path.join(T, 'relay.frames')
    os.makedirs(state)
    env = refnet_net.run_env(build, os.path.join(top, 'home'), os.path.join(T, 'work'), out, base, ACCOUNTS, LOAD_S)
    runlog_path = os.path.join(T, 'run.log')
    hosts = os.path.join(T, 'hosts.txt')
    with open(hosts, 'w') as f:
        f.write(''.join('ws://127.0.0.1:%d %s\n' % (port[p], p) for p in refnet_net.PDS))
    with open(os.path.join(state, 'cursors'), 'w') as f:
        f.write(''.join('%s 0\n' % p for p in refnet_net.PDS))  # from each PDS's first event on
    errs = {}

    def errlog(name):
        errs[name] = os.path.join(T, name + '.err')
        return open(errs[name], 'w+')

    def err_of(name):
        return open(errs[name], errors='replace').read()[-3000:]

    run = serve = relay = mesh = None
    serve_stopped = False
    try:
        # ---- 1. ref-net
        note('ref-net: run.sh --no-verify on 127.0.0.1:%d-%d, work in %s' % (base, base + 9, T))
        run = refnet_net.start(refnet, T, env, runlog_path)

        # ---- 2. the relay: cvl-serve over an empty archive, relay-tap connected, cvl-serve stopped
        r = subprocess.run([tool('cvl-pack'), '-o', arch, '-q'], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=300)
        c.check('cvl-pack -o ARCH < /dev/null creates an empty archive (exit 0)', r.returncode == 0, r.stderr)
        serve_err = errlog('cvl-serve')
        serve = subprocess.Popen([tool('cvl-serve'), arch, '--listen', '127.0.0.1:0'], stdout=subprocess.DEVNULL,
                                 stderr=serve_err)
        serve_port = []

        def serving():
            serve_err.seek(0)
            t = serve_err.read()
            if ' on 127.0.0.1:' in t:
                serve_port.append(int(t.split(' on 127.0.0.1:')[1].split()[0].rstrip(')')))
            return serve_port or serve.poll() is not None
        wait_for(serving, 120, 0.05)
        if not serve_port:
            raise SystemExit('FAIL - cvl-serve did not start: ' + err_of('cvl-serve'))
        serve_port = serve_port[0]
        relay = subprocess.Popen([tool('relay-tap'), 'ws://127.0.0.1:%d' % serve_port, '--src', 'relay',
                                  '--ping-interval', '3600', '--idle-marker', '3600', '-q'],
                                 stdout=open(relay_path, 'wb'), stderr=errlog('relay-tap'))
        connected = wait_for(lambda: health(serve_port).get('consumers') == 1 and any(
            e.get('mark', {}).get('kind') == 'connect' for e in complete_records(relay_path)), 120, 0.1)
        c.check('relay-tap connected to cvl-serve over the empty archive and wrote its connect marker', connected,
                err_of('relay-tap'))
        if not connected:
            raise SystemExit(1)
        serve.send_signal(signal.SIGSTOP)
        serve_stopped = True
        note('relay-tap connected to cvl-serve on port %d; cvl-serve stopped (SIGSTOP)' % serve_port)

        # ---- 3. the mesh, as soon as the PDSes listen
        refnet_net.wait_listening(run, port.values(), runlog_path)
        mesh = subprocess.Popen([tool('mesh-tap'), '--hosts', hosts, '--state', state, '-q'],
                                stdout=open(mesh_path, 'wb'), stderr=errlog('mesh-tap'))
        note('PDSes listen on %s; mesh-tap started' % sorted(port.values()))
        try:
            rc = run.wait(900)
        except subprocess.TimeoutExpired:
            rc = None
        c.check('ref-net (run.sh --no-verify) finished with exit 0', rc == 0, 'exit %s; see %s' % (rc, runlog_path))
        if rc != 0:
            raise SystemExit(1)
        rc = stop(mesh, signal.SIGTERM, 120)
        c.check('mesh-tap stops on SIGTERM with exit 0', rc == 0, err_of('mesh-tap'))
        c.check('relay-tap is still connected to the stopped cvl-serve', relay.poll() is None, err_of('relay-tap'))

        # ---- 4. archive, choose, tombstone
        mesh_data = open(mesh_path, 'rb').read()
        recs = list(ws_bin.records(mesh_data))
        envs = [e for _, _, e in recs]
        r = subprocess.run([tool('cvl-pack'), '-o', arch, mesh_path], capture_output=True, text=True, timeout=600)
        c.check('cvl-pack archives mesh.frames (%d records) as ordinals 0 to %d' % (len(envs), len(envs) - 1),
                r.returncode == 0 and ('ordinals 0 to %s' % format(len(envs) - 1, ',')) in r.stderr, r.stderr)
        ch = Choice(envs)
        c.check('the recording holds events of all 3 PDSes and a DID to drop whole',
                ch.victim and {e['src'] for e in envs} >= set(refnet_net.PDS), {e['src'] for e in envs})
        if not ch.victim:
            raise SystemExit(1)
        note('tombstoning %d messages: all %d of %s (%s) and %d other commits (every %dth)' % (
            len(ch.tomb), len(ch.tomb) - ch.n_commits, ch.victim, ''.join(ch.srcs_of[ch.victim]), ch.n_commits, EVERY))
        r = subprocess.run([tool('tomb-set'), arch], input=''.join('%d\n' % i for i in sorted(ch.tomb)),
                           capture_output=True, text=True, timeout=300)
        c.check('tomb-set ARCH < ordinals: exit 0, %d tombstoned' % len(ch.tomb),
                r.returncode == 0 and ('%s ordinal' % format(len(ch.tomb), ',')) in r.stderr, r.stderr)
        r = subprocess.run([tool('cvl-cat'), arch, '-q', '--include-deleted'], capture_output=True, timeout=600)
        c.check('cvl-cat ARCH --include-deleted = mesh.frames byte for byte (ordinal i = record i)',
                r.returncode == 0 and r.stdout == mesh_data, r.stderr)
        kept = b''.join(mesh_data[s:t] for i, (s, t, _) in enumerate(recs) if i not in ch.tomb)
        r = subprocess.run([tool('cvl-cat'), arch, '-q'], capture_output=True, timeout=600)
        c.check('cvl-cat ARCH = mesh.frames without the tombstoned records', r.returncode == 0 and r.stdout == kept,
                r.stderr)

        # ---- 5. the relay catches up
        serve.send_signal(signal.SIGCONT)
        serve_stopped = False
        want_relay = [envs[i]['wire'] for i in sorted(ch.with_seq) if i not in ch.tomb]
        t_cont = time.monotonic()
        n_got = lambda: sum(1 for e in complete_records(relay_path) if 'wire' in e)
        caught_up = wait_for(lambda: n_got() >= len(want_relay), 600, 0.5)
        note('SIGCONT: relay-tap received %d messages in %.1f s' % (n_got(), time.monotonic() - t_cont))
        c.check('relay-tap receives the %d messages cvl-serve sends (every message with a seq but the tombstoned)'
                % len(want_relay), caught_up, err_of('relay-tap'))
        relay_now = complete_records(relay_path)
        got = collections.Counter(ws_bin.without_seq(e['wire']) for e in relay_now if 'wire' in e)
        want = collections.Counter(ws_bin.without_seq(w) for w in want_relay)
        c.check('the relay stream = the recording minus the tombstoned messages (compared without seq)', got == want,
                'missing %d, extra %d' % (sum((want - got).values()), sum((got - want).values())))

        # ---- 6. the window, and the wait that makes a drop certain
        window_s = window_of(envs, relay_now)
        until = max(e['recv'] for e in envs if 'wire' in e) / 1e6 + window_s + 2
        note('window %d s (last relay recv - first mesh recv + %d s); relay-tap stays connected %.0f s more' % (
            window_s, SLACK_S, max(0, until - time.time())))
        while time.time() < until:
            time.sleep(min(5, max(0.1, until - time.time())))
        c.check('relay-tap stayed connected through the window', relay.poll() is None, err_of('relay-tap'))
        rc = stop(relay, signal.SIGTERM, 120)
        c.check('relay-tap stops on SIGTERM with exit 0', rc == 0, err_of('relay-tap'))
    finally:
        for p in (serve, relay, mesh):
            if p is not None and p.poll() is None:
                if p is serve and serve_stopped:
                    p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        refnet_net.shutdown(run)
    return T


def match_key(typ, did, ident):
    """The matcher's key (DESIGN.md §11): #commit and #sync share one, (DID, commit CID), so a
    #sync that carries its #commit's CID is a second copy of the same event (counted as a
    duplicate, not a finding); #identity is (DID, time); #account (DID, time, active, status),
    whose time is enough here (the test checks it is unique per DID)."""
    return ('commit/sync' if typ in ('commit', 'sync') else typ, did, ident)


def finding_key(f):
    return match_key(f.get('type'), f.get('did'), f.get('cid') if f.get('type') in ('commit', 'sync') else f.get('time'))


def score(T):
    """Step 7: ghost-diff over T/relay.frames and T/mesh.frames."""
    mesh_path, relay_path = os.path.join(T, 'mesh.frames'), os.path.join(T, 'relay.frames')
    envs, relay_envs = ws_bin.frames(mesh_path), ws_bin.frames(relay_path)
    ch = Choice(envs)
    window_s = window_of(envs, relay_envs)
    first_mesh = min(e['recv'] for e in envs if 'wire' in e)
    first_connect = next((e['recv'] for e in relay_envs if e.get('mark', {}).get('kind') == 'connect'), None)
    c.check('the relay was observed from before the mesh\'s first event (relay-tap\'s connect marker first)',
            first_connect is not None and first_connect < first_mesh, (first_connect, first_mesh))
    c.check('the relay stream has one connect and one disconnect (stopped) marker',
            [e['mark'].get('kind') for e in relay_envs if 'mark' in e] == ['connect', 'disconnect'],
            [e['mark'] for e in relay_envs if 'mark' in e])

    def ghost(*args):
        return subprocess.run([tool('ghost-diff'), '--relay', relay_path, '--mesh', mesh_path, '--window', str(window_s)]
                              + list(args), capture_output=True, text=True, timeout=900)

    r = ghost()
    c.check('ghost-diff --relay relay.frames --mesh mesh.frames --window %d: exit 0' % window_s, r.returncode == 0,
            r.stderr[-3000:])
    findings, bad_lines = [], []
    for line in r.stdout.splitlines():
        try:
            findings.append(json.loads(line))
        except ValueError:
            bad_lines.append(line)
    c.check('every output line is a JSON object (%d findings)' % len(findings), not bad_lines and findings,
            bad_lines[:3])
    kinds = collections.Counter(f.get('kind') for f in findings)
    drops = [f for f in findings if f.get('kind') == 'drop']
    matches = [f for f in findings if f.get('kind') == 'match']
    expect = {}  # key -> (PDS host, collections of the commit: a #sync twin has none)
    for i, e, k, coll in ch.msgs:
        if i in ch.tomb:
            src, colls = expect.get(match_key(*k[:3]), (e['src'], set()))
            expect[match_key(*k[:3])] = (src, colls | {coll})
    accounts = collections.Counter((k[1], k[2]) for _, _, k, _ in ch.msgs if k[0] == 'account')
    c.check('each #account of the recording has its own (DID, time)', max(accounts.values(), default=1) == 1,
            [a for a, n in accounts.items() if n > 1][:5])
    want_drops = collections.Counter(expect.keys())
    got_drops = collections.Counter(finding_key(f) for f in drops)
    c.check('the drops are exactly the tombstoned events (%d: %d of %s, %d commits), each once' % (
        len(want_drops), len(want_drops) - ch.n_commits, ch.victim, ch.n_commits), got_drops == want_drops,
        'not reported %s' % list(want_drops - got_drops)[:5],
        'reported but not tombstoned %s' % list(got_drops - want_drops)[:5])
    wrong = [f for f in drops if finding_key(f) in expect and (
        f.get('side') != 'mesh' or f.get('host') != expect[finding_key(f)][0] or f.get('relay_recv') is not None
        or not f.get('mesh_recv') or (f['type'] == 'commit' and f.get('collection', '') not in expect[finding_key(f)][1]))]
    c.check('each drop names side mesh, the PDS host that sent it, its mesh recv, relay_recv null, and a commit\'s '
            'collection (absent when it has no op: an account\'s first commit)', not wrong, wrong[:3])
    want_matches = collections.Counter({match_key(*k[:3]): 1 for _, _, k, _ in ch.msgs
                                        if match_key(*k[:3]) not in want_drops})
    got_matches = collections.Counter(finding_key(f) for f in matches)
    c.check('every other mesh event is a match (%d), each once' % sum(want_matches.values()),
            got_matches == want_matches, 'no match %s' % list(want_matches - got_matches)[:5],
            'extra %s' % list(got_matches - want_matches)[:5])
    bad_lat = [f for f in matches if f.get('mesh_recv') is None or f.get('relay_recv') is None
               or f.get('latency_us') != f['relay_recv'] - f['mesh_recv']
               or not 0 <= f['latency_us'] <= window_s * 1000000]
    c.check('each match has both recv times and latency_us = relay_recv - mesh_recv, within 0..window', not bad_lat,
            bad_lat[:3])
    c.check('no relay-only and no unobserved finding', kinds['relay-only'] == 0 and kinds['unobserved'] == 0,
            dict(kinds), [f for f in findings if f.get('kind') in ('relay-only', 'unobserved')][:5])
    summary = [l for l in r.stderr.splitlines() if l.startswith('ghost-diff: ')]
    first = summary[0] if summary else ''
    num = lambda n: '(%d|%s)' % (n, format(n, ','))
    c.check('the summary line counts %d matches, %d drops, 0 unobserved, 0 relay-only' % (len(matches), len(drops)),
            re.search(r'\b%s matches, %s drops, 0 unobserved\b.*\b0 relay-only' % (num(len(matches)), num(len(drops))),
                      first), r.stderr[-2000:])
    by_host = collections.Counter(f.get('host') for f in drops)
    host_line = next((l for l in summary if 'drops by PDS host' in l), '')
    c.check('the summary\'s drops by PDS host agree with the findings (%s)' % dict(by_host),
            all(re.search(r'\b%s %s\b' % (re.escape(h), num(n)), host_line) for h, n in by_host.items()), host_line)
    by_coll = collections.Counter(f.get('collection') or '#' + f.get('type', '') for f in drops)
    coll_line = next((l for l in summary if 'drops by collection: ' in l), '')
    listed = [x.rsplit(' ', 1) for x in coll_line.split('drops by collection: ', 1)[-1].split(', ')
              if x and ' others ' not in x]
    c.check('the summary\'s drops by collection agree with the findings (%d collections; a drop with none '
            'counts under #TYPE)' % len(by_coll),
            len(listed) == min(10, len(by_coll)) and all(len(x) == 2 and by_coll.get(x[0]) == int(x[1]) for x in listed),
            coll_line, dict(by_coll))
    r = ghost('--only', 'drop', '-q')
    only = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    c.check('--only drop -q: exit 0, exactly the drops, nothing on stderr', r.returncode == 0 and only == drops
            and r.stderr == '', (r.returncode, len(only), r.stderr[-500:]))
    r = ghost('--fail-on-drop', '-q', '-o', os.devnull)
    c.check('--fail-on-drop: exit 1 (drops were found)', r.returncode == 1, (r.returncode, r.stderr[-500:]))


T = os.path.abspath(rescore) if rescore else record_run()
score(T)
note('done')
rc = c.summary()
if rc == 0 and not rescore and not os.environ.get('SOVEREIGN_KEEP'):
    shutil.rmtree(T, ignore_errors=True)
elif not rescore:
    print('# kept for inspection (ghost_refnet.py BUILD_DIR --rescore DIR scores it again): ' + T)
sys.exit(rc)
