#!/usr/bin/env python3
"""mesh-sim gen --plc-accounts: traffic from the simulated PLC directory's accounts verifies
against a mirror of that directory (no network: the mirror is built from mesh-sim plc-export).

usage: plc_gen.py BUILD_DIR

Checks:
  * plc-export is, line for line, what `mesh-sim serve --plc` pages out of /export;
  * gen's traffic spans key rotations and PDS migrations of some accounts (else the test would
    prove nothing), sends nothing for a tombstoned DID from its tombstone on, and every frame
    is `ok` under cbor-verify --cache MIRROR;
  * --src-from-pds: each frame's src is the host of the PDS its account had at the message's
    time; under --check-pds (which compares with the current PDS) every commit and sync after
    the account's last migration is ok, those before a migration wrong-pds, nothing else
    rejected (a tombstoned DID has no current PDS: its frames pass); without --src-from-pds
    every commit is wrong-pds;
  * a directory whose every account is tombstoned: gen stops there with exit 2, keeping the
    frames written so far (which verify);
  * the same frames with recv shifted by a day: bad-sig exactly on the frames whose signing
    key (the key at the message's time) is neither the key at the new recv nor the one 5
    minutes before it (DESIGN.md §3), no-key where the new recv is past a tombstone, every
    other frame passes; the rejected DIDs are exactly those expected;
  * usage errors exit 2.
Prints "ok - ..." / "FAIL - ..." lines and "N passed, N failed"; exit 1 on any failure.
"""
import bisect, datetime, json, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request

build = os.path.abspath(sys.argv[1])
MESH = os.path.join(build, 'tools', 'mesh-sim')
SYNC = os.path.join(build, 'tools', 'plc-sync')
VERIFY = os.path.join(build, 'tools', 'cbor-verify')
FCAT = os.path.join(build, 'tools', 'frame-cat')
ACCOUNTS, SEED = 200, 7
# ~35 simulated days at one message per ~17 minutes (the directory's updates are ~3 days apart),
# activity spread flat enough that short-lived accounts (the two tombstoned ones) act too.
GEN = ['gen', '--plc-accounts', str(ACCOUNTS), '--plc-seed', str(SEED), '--events', '3000', '--rate', '0.001',
       '--zipf', '0.3', '--no-corpus', '-q']
SHIFT_US = 86400 * 1000000
GRACE_US = 5 * 60 * 1000000
passed = failed = 0
tmp = tempfile.mkdtemp(prefix='sov-plc-gen.')


def check(name, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok - ' + name)
    else:
        failed += 1
        print('FAIL - ' + name + (('\n    ' + str(detail)[:3000]) if detail else ''))


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=900, **kw)


def us_of(text):
    d = datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)
    return (d - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)


def frames_json(path):
    """(kind, did, time µs, recv µs, src, vrd) of every frame of `path`."""
    r = run([FCAT, '-q', '--to', 'json', path])
    assert r.returncode == 0, r.stderr
    out = []
    for line in r.stdout.decode().splitlines():
        j = json.loads(line)
        p = j['payload']
        out.append((j['header']['t'], p.get('repo') or p.get('did'), us_of(p['time']), j['recv'], j['src'],
                    j.get('vrd')))
    return out


def verdicts(frames_path, *extra):
    """The verdict of every frame (cbor-verify --annotate), in order."""
    r = run([VERIFY, '-q', '--annotate', '--cache', mirror] + list(extra) + [frames_path])
    assert r.returncode == 0, r.stderr
    ann = os.path.join(tmp, 'annotated')
    with open(ann, 'wb') as f:
        f.write(r.stdout)
    return [fr[5] for fr in frames_json(ann)]


def host(url):
    return re.match(r'https?://([^/:]+)', url).group(1)


try:
    # --- the directory, as a file and as a server
    export = os.path.join(tmp, 'export.jsonl')
    r = run([MESH, 'plc-export', '--accounts', str(ACCOUNTS), '--seed', str(SEED), '-q', '-o', export])
    check('plc-export writes the export', r.returncode == 0 and os.path.getsize(export) > 0, r.stderr)
    lines = open(export).read().splitlines()
    srv = subprocess.Popen([MESH, 'serve', '--plc', '--accounts', str(ACCOUNTS), '--seed', str(SEED)],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url = None
    for line in srv.stderr:
        m = re.search(r'serving PLC on (http://127\.0\.0\.1:\d+)', line)
        if m:
            url = m.group(1)
            break
    served = []
    if url:
        after = 0
        while True:
            page = urllib.request.urlopen(url + '/export?count=1000&after=' + str(after), timeout=60).read().decode()
            got = [l for l in page.split('\n') if l]
            if not got:
                break
            served += got
            after = json.loads(got[-1])['seq']
    srv.send_signal(signal.SIGTERM)
    srv.wait(timeout=60)
    check('plc-export equals what serve --plc pages out of /export', served == lines and len(lines) > ACCOUNTS,
          (len(served), len(lines)))

    truth_r = run([MESH, 'plc-truth', '--accounts', str(ACCOUNTS), '--seed', str(SEED), '-q'])
    truth = {t['did']: t for t in map(json.loads, truth_r.stdout.decode().splitlines())}
    mirror = os.path.join(tmp, 'mirror')
    r = run([SYNC, '-q', '-o', mirror, '--from-file', export])
    check('plc-sync --from-file builds the mirror', r.returncode == 0, r.stderr)

    # Per DID: key history [(from µs, key or None)], PDS history [(from µs, endpoint)] along the
    # canonical chain (valid, not nullified ops), tombstone time.
    bad = {i['cid'] for t in truth.values() for i in t['invalid']}
    nullified = {c for t in truth.values() for c in t['nullified']}
    keys = {d: [(us_of(k['validFrom']), k['key'] or None) for k in t['keyHistory']] for d, t in truth.items()}
    pds_hist, tomb = {}, {}
    for line in lines:
        o = json.loads(line)
        if o['cid'] in bad or o['cid'] in nullified:
            continue
        op, t = o['operation'], us_of(o['createdAt'])
        if op['type'] == 'plc_tombstone':
            tomb[o['did']] = t
        else:
            h = pds_hist.setdefault(o['did'], [])
            ep = op['services']['atproto_pds']['endpoint']
            if not h or h[-1][1] != ep:
                h.append((t, ep))

    def at(hist, t):
        i = bisect.bisect_right([h[0] for h in hist], t) - 1
        return hist[max(i, 0)][1]

    # --- the traffic
    plain = os.path.join(tmp, 'plain.frames')
    r = run([MESH] + GEN + ['-o', plain])
    check('gen --plc-accounts runs', r.returncode == 0, r.stderr)
    fr = frames_json(plain)
    signed = [f for f in fr if f[0] in ('#commit', '#sync')]
    check('every frame is about an account of the directory', all(f[1] in truth for f in fr))
    seen_keys, seen_pds = {}, {}
    for f in signed:
        seen_keys.setdefault(f[1], set()).add(at(keys[f[1]], f[2]))
        seen_pds.setdefault(f[1], set()).add(at(pds_hist[f[1]], f[2]))
    rotated = {d for d, s in seen_keys.items() if len(s) > 1}
    migrated = {d for d, s in seen_pds.items() if len(s) > 1}
    check('the traffic spans key rotations of several accounts', len(rotated) >= 3, sorted(rotated))
    check('the traffic spans PDS migrations', len(migrated) >= 1, sorted(migrated))
    check('no message of a tombstoned DID from its tombstone on',
          all(f[1] not in tomb or f[3] < tomb[f[1]] for f in fr) and {f[1] for f in fr} & set(tomb), sorted(tomb))
    check('no message before its DID\'s genesis', all(f[2] >= keys[f[1]][0][0] for f in fr))
    v = verdicts(plain)
    check('cbor-verify --cache: every frame ok', len(v) == len(fr) and all(x == 'ok' for x in v),
          sorted({x for x in v if x != 'ok'}))

    # --- src from the PDS
    withsrc = os.path.join(tmp, 'src.frames')
    r = run([MESH] + GEN + ['--src-from-pds', '-o', withsrc])
    fs = frames_json(withsrc)
    check('--src-from-pds: src is the host of the PDS at the message time',
          r.returncode == 0 and len(fs) == len(fr) and all(f[4] == host(at(pds_hist[f[1]], f[2])) for f in fs))
    check('--src-from-pds changes nothing but src',
          [f[:4] for f in fs] == [f[:4] for f in fr])
    v = verdicts(withsrc, '--check-pds')
    # A tombstoned DID has no PDS now: nothing to compare with, so its frames pass.
    want = ['wrong-pds' if f[0] in ('#commit', '#sync') and truth[f[1]]['pds'] and f[4] != host(truth[f[1]]['pds'])
            else 'ok' for f in fs]
    check('--check-pds: ok after the last migration, wrong-pds before it, nothing else', v == want,
          [(f, a, b) for f, a, b in zip(fs, v, want) if a != b][:5])
    after = sum(1 for f, x in zip(fs, v) if f[1] in migrated and f[0] == '#commit' and x == 'ok')
    before = sum(1 for x in v if x == 'wrong-pds')
    check('--check-pds saw commits on both sides of a migration', after >= 1 and before >= 1, (after, before))
    v = verdicts(plain, '--check-pds')
    check('--check-pds without --src-from-pds: every commit wrong-pds',
          all(x == 'wrong-pds' for f, x in zip(fr, v) if f[0] == '#commit' and truth[f[1]]['pds']))

    # --- recv shifted by a day
    js = run([FCAT, '-q', '--to', 'json', plain]).stdout.decode().splitlines()
    shifted_json = ''
    for line in js:
        j = json.loads(line)
        j['recv'] += SHIFT_US
        shifted_json += json.dumps(j) + '\n'
    shifted = os.path.join(tmp, 'shifted.frames')
    r = run([FCAT, '-q', '--from', 'json', '--force'], input=shifted_json.encode())
    with open(shifted, 'wb') as f:
        f.write(r.stdout)
    v = verdicts(shifted)
    want = []
    for f in fr:
        if f[0] not in ('#commit', '#sync'):
            want.append('pass')
            continue
        signer, recv = at(keys[f[1]], f[2]), f[3] + SHIFT_US
        now, earlier = at(keys[f[1]], recv), at(keys[f[1]], recv - GRACE_US)
        if now is None:
            want.append('no-key')
        elif signer == now or (earlier != now and earlier == signer):
            want.append('pass')
        else:
            want.append('bad-sig')
    got = ['pass' if x in ('ok', 'ok-gap') else x for x in v]
    check('recv + 1 day: bad-sig exactly where the key at recv (or 5 min before) is not the signer',
          got == want, [(f, a, b) for f, a, b in zip(fr, got, want) if a != b][:5])
    expect_dids = {f[1] for f, w in zip(fr, want) if w == 'bad-sig'}
    got_dids = {f[1] for f, x in zip(fr, v) if x == 'bad-sig'}
    check('recv + 1 day: the bad-sig DIDs are the rotated ones, and some', got_dids == expect_dids and
          len(got_dids) >= 2 and got_dids <= {d for d in truth if len(keys[d]) > 1}, (sorted(got_dids), sorted(expect_dids)))
    check('recv + 1 day: most frames still pass', got.count('pass') > len(got) // 2, got.count('pass'))

    # --- usage
    for args, why in ((['--src-from-pds'], 'src-from-pds without plc-accounts'),
                      (['--plc-seed', '3'], 'plc-seed without plc-accounts'),
                      (GEN[1:3] + ['--accounts', '5'], '--accounts with --plc-accounts'),
                      (GEN[1:3] + ['--did-docs', os.path.join(tmp, 'd.json')], '--did-docs with --plc-accounts'),
                      (GEN[1:3] + ['--src-from-pds', '--src', 'x'], '--src with --src-from-pds'),
                      (['--plc-accounts', '0'], '--plc-accounts 0')):
        r = run([MESH, 'gen', '-o', os.path.join(tmp, 'u.frames')] + args)
        check('usage: ' + why + ' exits 2', r.returncode == 2 and r.stderr, r.stderr)
    r = run([MESH, 'plc-export', '--plc-accounts', '3'])
    check('usage: plc-export refuses gen\'s --plc-accounts', r.returncode == 2, r.stderr)

    # --- a directory whose one account (seed 25) is tombstoned after a key rotation: gen stops
    # at the tombstone with exit 2 and a reason; the frames before it are kept and verify.
    one = os.path.join(tmp, 'one.frames')
    r = run([MESH, 'gen', '--plc-accounts', '1', '--plc-seed', '25', '--events', '100000', '--rate', '0.01',
             '--no-corpus', '-q', '-o', one])
    check('every account tombstoned: exit 2 naming it', r.returncode == 2 and b'tombstoned by' in r.stderr, r.stderr)
    t1 = json.loads(run([MESH, 'plc-truth', '--accounts', '1', '--seed', '25', '-q']).stdout)
    e1 = os.path.join(tmp, 'one.jsonl')
    with open(e1, 'wb') as f:
        f.write(run([MESH, 'plc-export', '--accounts', '1', '--seed', '25', '-q']).stdout)
    mirror = os.path.join(tmp, 'mirror1')
    run([SYNC, '-q', '-o', mirror, '--from-file', e1])
    f1 = frames_json(one)
    v = verdicts(one)
    check('every account tombstoned: the frames before it are kept, span its rotation and verify',
          t1['tombstoned'] and len(t1['keyHistory']) == 3 and len(f1) > 100 and all(x == 'ok' for x in v) and
          f1[0][2] < us_of(t1['keyHistory'][1]['validFrom']) < f1[-1][2] and
          f1[-1][3] < us_of(t1['keyHistory'][2]['validFrom']), (len(f1), sorted(set(v))))
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
