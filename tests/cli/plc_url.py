#!/usr/bin/env python3
"""plc-sync --url against the simulated PLC directory (mesh-sim serve --plc) on loopback.

usage: plc_url.py BUILD_DIR [--slow]

Checks, against the simulator's ground truth (mesh-sim plc-truth):
  * a sync ends with every DID's state right (signing key and its history, PDS, handle,
    tombstone) and exactly the invalid ops in rejected.jsonl;
  * the legacy (createdAt) paging of a server without seq gives the same cache;
  * a storm of 429s, 5xx and dropped connections loses and duplicates nothing;
  * --max-time stops cleanly and the next run resumes to the same mirror, byte for byte;
  * kill -9 at random moments then a restart: export chunks and rejected.jsonl identical to an
    uninterrupted run, the cache identical through lookup (--slow: 20 runs, else 3);
  * usage errors exit 2; a 404 exits 2 naming the URL; an unreachable server is retried until
    --max-time, then exit 0 with the network errors counted.
Prints "ok - ..." / "FAIL - ..." lines and "N passed, N failed"; exit 1 on any failure.
No wall-clock assertion: every time limit here is a generous bound on a hang.
"""
import glob, json, os, random, re, shutil, signal, subprocess, sys, tempfile, time

build = os.path.abspath(sys.argv[1])
slow = '--slow' in sys.argv[2:]
MESH = os.path.join(build, 'tools', 'mesh-sim')
SYNC = os.path.join(build, 'tools', 'plc-sync')
ACCOUNTS, SEED = 1500, 11
passed = failed = 0
tmp = tempfile.mkdtemp(prefix='sov-plc-url.')
servers = []


def check(name, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok - ' + name)
    else:
        failed += 1
        print('FAIL - ' + name + (('\n    ' + str(detail)[:3000]) if detail else ''))


def serve(*extra):
    p = subprocess.Popen([MESH, 'serve', '--plc', '--accounts', str(ACCOUNTS), '--seed', str(SEED)] + list(extra),
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    servers.append(p)
    deadline = time.monotonic() + 300
    for line in p.stderr:
        m = re.search(r'serving PLC on (http://127\.0\.0\.1:\d+)', line)
        if m:
            return p, m.group(1)
        if time.monotonic() > deadline:
            break
    raise SystemExit('FAIL - mesh-sim serve did not start')


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


def sync(mirror, url, *extra, timeout=900):
    return subprocess.run([SYNC, '-o', mirror, '--url', url] + list(extra), capture_output=True, text=True,
                          timeout=timeout)


def truth():
    r = subprocess.run([MESH, 'plc-truth', '--accounts', str(ACCOUNTS), '--seed', str(SEED)], capture_output=True,
                       text=True, check=True)
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def lookup(mirror, dids):
    r = subprocess.run([SYNC, 'lookup', '-o', mirror] + dids, capture_output=True, text=True, timeout=300)
    return {j['did']: j for j in (json.loads(l) for l in r.stdout.splitlines() if l.strip())}


def state(j):
    """The comparable part of a lookup line."""
    return (j.get('found'), j.get('key'), j.get('pds'), j.get('handle'), j.get('tombstoned'),
            [(h.get('key'), h.get('valid_from')) for h in j.get('history', [])])


def files(mirror):
    """Export chunks, rejected.jsonl and the op store, byte for byte."""
    out = {}
    for f in sorted(glob.glob(os.path.join(mirror, 'export', '*'))) + [os.path.join(mirror, n) for n in ('rejected.jsonl', 'ops.bin')]:
        if os.path.exists(f):
            out[os.path.relpath(f, mirror)] = open(f, 'rb').read()
    return out


try:
    T = truth()
    dids = [t['did'] for t in T]
    invalid = sorted(c for t in T for c in (i['cid'] if isinstance(i, dict) else i for i in t.get('invalid', [])))

    # 1. A plain sync agrees with the truth.
    srv, url = serve()
    ref = os.path.join(tmp, 'ref')
    r = sync(ref, url)
    check('sync: exit 0, caught up', r.returncode == 0 and 'caught up' in r.stderr, r.stderr)
    got = lookup(ref, dids)
    wrong = []
    for t in T:
        j = got.get(t['did'], {})
        hist = [(h['key'] or None, h['validFrom']) for h in t.get('keyHistory', [])]
        have_hist = [(h.get('key'), h.get('valid_from')) for h in j.get('history', [])]
        want = (True, t.get('signingKey') or None, t.get('pds', ''), t.get('handle', ''), t.get('tombstoned', False), hist)
        have = (j.get('found'), j.get('key'), j.get('pds'), j.get('handle'), j.get('tombstoned'), have_hist)
        if want != have:
            wrong.append((t['did'], want, have))
    check('sync: every DID agrees with the truth (key history, PDS, handle, tombstone; %d DIDs)' % len(T), not wrong,
          wrong[:3])
    rej = sorted(json.loads(l).get('cid', '') for l in open(os.path.join(ref, 'rejected.jsonl')) if l.strip())
    check('sync: rejected.jsonl holds exactly the invalid ops (%d)' % len(invalid), rej == invalid,
          (len(rej), len(invalid), sorted(set(rej) ^ set(invalid))[:5]))
    ref_files, ref_state = files(ref), {d: state(j) for d, j in got.items()}
    r = sync(ref, url)
    check('second run: nothing new, mirror unchanged',
          r.returncode == 0 and ' 0 accepted' in r.stderr and files(ref) == ref_files, r.stderr)
    stop(srv)

    # 2. Legacy paging (a server without seq): the same cache.
    srv, url = serve('--legacy-only')
    leg = os.path.join(tmp, 'legacy')
    r = sync(leg, url)
    got = lookup(leg, dids)
    check('legacy-only server: exit 0, the same state for every DID',
          r.returncode == 0 and {d: state(j) for d, j in got.items()} == ref_state, r.stderr)
    stop(srv)

    # 3. A storm: 429 above 20 requests/s, 20% 5xx, 10% dropped bodies.
    srv, url = serve('--fault-429-above', '20', '--fault-5xx', '0.2', '--fault-drop', '0.1')
    storm = os.path.join(tmp, 'storm')
    r = sync(storm, url, '--max-rate', '100')
    check('storm: exit 0, the failures were retried and counted',
          r.returncode == 0 and 'server errors' in r.stderr, r.stderr)
    check('storm: export chunks, rejected.jsonl and op store identical to the calm run', files(storm) == ref_files,
          sorted(set(files(storm)) ^ set(ref_files)))
    stop(srv)

    # 4. --max-time stops after the page in flight; the next runs resume.
    srv, url = serve('--fault-slow', '150')
    part = os.path.join(tmp, 'part')
    r = sync(part, url, '--max-time', '0.3')
    check('--max-time: exit 0, says it stopped and will resume',
          r.returncode == 0 and 'stopped by --max-time' in r.stderr, r.stderr)
    for _ in range(200):
        r = sync(part, url, '--max-time', '2')
        if 'caught up' in r.stderr or r.returncode != 0:
            break
    check('--max-time runs end caught up, the mirror byte-identical to one run', r.returncode == 0 and
          files(part) == ref_files, r.stderr)

    # 5. kill -9 at random moments, then restart.
    rng = random.Random(5)
    runs = 20 if slow else 3
    bad = []
    for k in range(runs):
        m = os.path.join(tmp, 'kill%d' % k)
        kills = 0
        for attempt in range(3):
            p = subprocess.Popen([SYNC, '-q', '-o', m, '--url', url, '--cache-slots', '1024'],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.05, 1.2))
            if p.poll() is None:
                p.kill()
                kills += 1
            p.wait()
        r = sync(m, url)
        same = r.returncode == 0 and files(m) == ref_files and \
            {d: state(j) for d, j in lookup(m, dids).items()} == ref_state
        if not same:
            bad.append((k, kills, r.returncode, r.stderr[-500:]))
        shutil.rmtree(m, ignore_errors=True)
    check('kill -9 then restart (%d runs): chunks, rejected.jsonl, op store and cache as uninterrupted' % runs,
          not bad, bad[:2])
    stop(srv)

    # 6. Usage and network errors.
    def run(*args, timeout=120):
        return subprocess.run([SYNC] + list(args), capture_output=True, text=True, timeout=timeout)
    u = os.path.join(tmp, 'u')
    for args, why in [(['-o', u, '--url', 'http://127.0.0.1:1', '--from-file', '/dev/null'], 'two sources'),
                      (['-o', u, '--from-file', '/dev/null', '--max-time', '5'], 'works only with --url'),
                      (['-o', u, '--url', 'ftp://x'], 'must be an http:// or https:// URL'),
                      (['-o', u, '--url', 'http://127.0.0.1:1', '--max-time', '0'], 'positive number'),
                      (['-o', u, '--url', 'http://127.0.0.1:1', '--page-lines', '5'], 'sizes pages read from a file')]:
        r = run(*args)
        check('usage: %s exits 2 (%s)' % (' '.join(args[2:]), why), r.returncode == 2 and why in r.stderr, r.stderr)
    srv, url = serve()
    r = run('-o', u, '--url', url + '/nope')
    check('a 404 exits 2 naming the URL', r.returncode == 2 and '/nope/export' in r.stderr and '404' in r.stderr,
          r.stderr)
    stop(srv)
    r = run('-o', os.path.join(tmp, 'u2'), '--url', 'http://127.0.0.1:1', '--max-time', '1.5')
    check('an unreachable server is retried until --max-time: exit 0, network errors counted',
          r.returncode == 0 and 'network error' in r.stderr and 'stopped by --max-time' in r.stderr, r.stderr)
finally:
    for p in servers:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(tmp, ignore_errors=True)

print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
