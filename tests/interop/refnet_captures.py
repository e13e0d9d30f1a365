#!/usr/bin/env python3
"""Verifies the captured firehoses of a local network of reference PDSes (@atproto/pds) with
frame-cat | cbor-verify and checks every verdict against what the scenario implies.

usage: refnet_captures.py BUILD_DIR RESULTS_DIR   (SOVEREIGN_REFNET overrides RESULTS_DIR;
       absent captures skip the test with exit status 77)
RESULTS_DIR holds <pds>.u32le.zst (live from the start), optionally <pds>.load.u32le.zst (the
rest of the run) and <pds>.<name>.u32le.zst (cursor tests: replay0, replaymid, outdated, ...),
did-docs.json (DID documents at the end) and did-docs.pre-migration.json (just before the
migration's PLC operation, which rotated the migrated DID's signing key).

Expected, for every capture and both DID-document snapshots: the verdicts refnet_verdicts.py
describes (every frame ok but bad-sig on the migrated DID under the other snapshot and the
migration #sync's bad-commit; same-rev #syncs ok; #syncs checked on every PDS).
Prints one "ok - ..." / "FAIL - ..." line per check; exit 1 on any failure.
"""
import json, os, subprocess, sys, collections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refnet_verdicts  # noqa: E402  (the expected verdicts, shared with refnet_taps.py)

build = sys.argv[1]
results = os.environ.get('SOVEREIGN_REFNET') or sys.argv[2]
if not os.path.isfile(os.path.join(results, 'did-docs.json')):
    print('SKIP: no reference-network captures in %s (set SOVEREIGN_REFNET to a results directory)' % results)
    sys.exit(77)
FC = os.path.join(build, 'tools', 'frame-cat')
CV = os.path.join(build, 'tools', 'cbor-verify')
DOCS = refnet_verdicts.DOCS
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
    return refnet_verdicts.verdicts(build, [FC, '-q', '--from', 'raw-u32le', '--src', src] + inputs, docs)


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
    refnet_verdicts.check_snapshots(check, name, runs, totals, want_syncs=(name == pds))

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
