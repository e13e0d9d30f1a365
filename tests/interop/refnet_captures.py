#!/usr/bin/env python3
"""Verifies the captured firehoses of a local network of reference PDSes (@atproto/pds) with
frame-cat | cbor-verify and checks every verdict against what the scenario implies.

usage: refnet_captures.py BUILD_DIR RESULTS_DIR   (SOVEREIGN_REFNET overrides RESULTS_DIR;
       absent captures skip the test with exit status 77)
RESULTS_DIR holds <pds>.u32le.zst (live from the start), optionally <pds>.load.u32le.zst (the
rest of the run) and <pds>.<name>.u32le.zst (cursor tests: replay0, replaymid, outdated, ...),
did-docs.json (DID documents at the end) and did-docs.pre-migration.json (just before the
migration's PLC operation, which rotated the migrated DID's signing key).

Expected, for every capture and both DID-document snapshots:
  * every #commit, #identity, #account and #sync is ok, except
  * bad-sig exactly on the frames of the migrated DID signed with the key that the other
    snapshot holds: each such frame is ok under the other snapshot, and all belong to one DID;
  * bad-commit on the #sync the reference PDS emits after importRepo + activateAccount (its
    known defect: a rev minted by the new PDS beside the imported commit block with the old
    rev): at most one per capture, a #sync, its reason naming the rev;
  * every same-rev #sync after account creation or reactivation is ok (the regression of
    issue 8 item 1: they were stale-rev), and at least one #sync is checked per PDS.
Prints one "ok - ..." / "FAIL - ..." line per check; exit 1 on any failure.
"""
import json, os, subprocess, sys, collections

build = sys.argv[1]
results = os.environ.get('SOVEREIGN_REFNET') or sys.argv[2]
if not os.path.isfile(os.path.join(results, 'did-docs.json')):
    print('SKIP: no reference-network captures in %s (set SOVEREIGN_REFNET to a results directory)' % results)
    sys.exit(77)
FC = os.path.join(build, 'tools', 'frame-cat')
CV = os.path.join(build, 'tools', 'cbor-verify')
DOCS = ['did-docs.json', 'did-docs.pre-migration.json']
failed = 0
passed = 0


def check(name, cond, detail=''):
    global failed, passed
    if cond:
        passed += 1
        print('ok - ' + name)
    else:
        failed += 1
        print('FAIL - ' + name + (('\n    ' + detail) if detail else ''))


def verdicts(inputs, src, docs):
    """[(type, did, vrd)] in input order and cbor-verify's report lines."""
    fc = subprocess.Popen([FC, '-q', '--from', 'raw-u32le', '--src', src] + inputs, stdout=subprocess.PIPE)
    cv = subprocess.Popen([CV, '--annotate', '--max-reports', '100000', '--did-docs', docs],
                          stdin=fc.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fc.stdout.close()
    js = subprocess.run([FC, '-q', '--to', 'json'], stdin=cv.stdout, capture_output=True, check=True)
    err = cv.stderr.read().decode()
    if fc.wait() != 0 or cv.wait() not in (0, 1):
        raise SystemExit('FAIL - pipeline on %s exited %d/%d:\n%s' % (inputs, fc.returncode, cv.returncode, err))
    out = []
    for line in js.stdout.decode().splitlines():
        f = json.loads(line)
        out.append((f.get('header', {}).get('t', 'error'), f.get('payload', {}).get('did') or f.get('payload', {}).get('repo'), f.get('vrd')))
    return out, err.splitlines()


def captures(results):
    pdses = sorted({f.split('.')[0] for f in os.listdir(results) if f.endswith('.summary.json') and f.startswith('pds')})
    for p in pdses:
        live = [os.path.join(results, p + '.u32le.zst')]
        if os.path.exists(os.path.join(results, p + '.load.u32le.zst')):
            live.append(os.path.join(results, p + '.load.u32le.zst'))
        yield p, p, live
        for f in sorted(os.listdir(results)):
            if f.startswith(p + '.') and f.endswith('.u32le.zst') and f.count('.') == 3 and '.load.' not in f:
                yield p, f[:-len('.u32le.zst')], [os.path.join(results, f)]


totals = collections.Counter()
for pds, name, inputs in captures(results):
    runs = {d: verdicts(inputs, name, os.path.join(results, d)) for d in DOCS}
    a, b = runs[DOCS[0]][0], runs[DOCS[1]][0]
    check('%s: the same frames under both DID-document snapshots' % name, len(a) == len(b))
    for d, other in ((DOCS[0], DOCS[1]), (DOCS[1], DOCS[0])):
        mine, reports = runs[d]
        theirs = runs[other][0]
        unexpected, badsig_dids, badcommit = [], set(), []
        for i, (t, did, vrd) in enumerate(mine):
            if t not in ('#commit', '#identity', '#account', '#sync'):
                continue
            totals[(t, vrd)] += 1
            if vrd == 'ok':
                continue
            if vrd == 'bad-sig' and theirs[i][2] == 'ok':
                badsig_dids.add(did)
            elif vrd == 'bad-commit' and t == '#sync':
                badcommit.append(i)
            else:
                unexpected.append('frame %d %s %s: %s' % (i, t, did, vrd))
        check('%s --did-docs %s: every #commit/#identity/#account/#sync ok but the known cases' % (name, d),
              not unexpected, '\n    '.join(unexpected[:10]))
        check('%s --did-docs %s: bad-sig only on one (the migrated) DID, ok under the other snapshot' % (name, d),
              len(badsig_dids) <= 1, str(sorted(badsig_dids)))
        why = [r for r in reports if ': bad-commit: ' in r]
        check('%s --did-docs %s: at most one bad-commit, the migration #sync, for its rev' % (name, d),
              len(badcommit) <= 1 and all('rev' in r for r in why), '\n    '.join(why[:5]))
        syncs = [v for t, _, v in mine if t == '#sync']
        if name == pds and d == DOCS[0]:
            check('%s: #sync frames checked (%d), none stale-rev' % (name, len(syncs)),
                  len(syncs) > 0 and 'stale-rev' not in syncs, str(collections.Counter(syncs)))

# With a PLC mirror built from the run's own PLC export (plc-sync --from-file) and recv stamped
# from each message's time (the captures recorded none): every commit of the migrated DID
# verifies, before and after its key rotation, with the key valid when it was sent.
import shutil, tempfile
PS = os.path.join(build, 'tools', 'plc-sync')
export = os.path.join(results, 'plc-export.jsonl')
if os.path.isfile(export) and os.path.exists(PS):
    mirror = tempfile.mkdtemp(prefix='sov-refnet-mirror.')
    try:
        r = subprocess.run([PS, '-q', '-o', mirror, '--from-file', export], capture_output=True, text=True)
        check('plc-sync --from-file plc-export.jsonl: exit 0', r.returncode == 0, r.stderr)
        for pds, name, inputs in captures(results):
            if name != pds:
                continue  # the live captures cover every frame
            port = 2580 + int(pds[3:])  # ref-net: PDS i on port base + i; endpoints http://localhost:PORT
            fc = subprocess.Popen([FC, '-q', '--from', 'raw-u32le', '--src', 'localhost:%d' % port,
                                   '--recv-from', 'payload-time'] + inputs, stdout=subprocess.PIPE)
            cv = subprocess.run([CV, '--annotate', '--max-reports', '100000', '--cache', mirror], stdin=fc.stdout,
                                capture_output=True)
            fc.wait()
            js = subprocess.run([FC, '-q', '--to', 'json'], input=cv.stdout, capture_output=True, check=True).stdout
            vrds = [(json.loads(l).get('header', {}).get('t'), json.loads(l).get('vrd')) for l in js.decode().splitlines()]
            bad = [(t, v) for t, v in vrds if v not in ('ok', 'skip') and not (t == '#sync' and v == 'bad-commit')]
            check('%s --cache (keys at recv, from the PLC mirror): every frame ok but the migration #sync defect '
                  '(%d frames)' % (pds, len(vrds)), not bad and vrds, str(collections.Counter(bad)))
    finally:
        shutil.rmtree(mirror, ignore_errors=True)

print('# verdicts by type over every capture and snapshot: ' +
      ', '.join('%s %s %d' % (t, v, n) for (t, v), n in sorted(totals.items())))
check('the captures hold every kind of event, each verified ok at least once',
      all(totals[(t, 'ok')] > 0 for t in ('#commit', '#identity', '#account', '#sync')))
print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
