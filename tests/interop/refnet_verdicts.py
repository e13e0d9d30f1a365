"""The verdicts cbor-verify must give the firehose of a reference-PDS network (../shared/ref-net),
shared by refnet_captures.py (ref-net's own captures) and refnet_taps.py (what our taps archived).

Expected, for every stream and both DID-document snapshots (did-docs.json at the end,
did-docs.pre-migration.json just before the migration's PLC operation rotated a signing key):
  * every #commit, #identity, #account and #sync is ok, except
  * bad-sig exactly on the frames of the migrated DID signed with the key that the other
    snapshot holds: each such frame is ok under the other snapshot, and all belong to one DID;
  * bad-commit on the #sync the reference PDS emits after importRepo + activateAccount (its
    known defect: a rev minted by the new PDS beside the imported commit block with the old
    rev): at most one per stream, a #sync, its reason naming the rev;
  * every same-rev #sync after account creation or reactivation is ok (the regression of
    issue 8 item 1: they were stale-rev), and at least one #sync is checked per PDS.
Markers (records a tap writes about its connection) get no verdict and are passed over.
"""
import collections, json, os, subprocess, tempfile

DOCS = ['did-docs.json', 'did-docs.pre-migration.json']
TYPES = ('#commit', '#identity', '#account', '#sync')


def verdicts(build, source_argv, docs):
    """Runs `SOURCE | cbor-verify --annotate --did-docs DOCS | frame-cat --to json`, where
    SOURCE_ARGV (argv list) writes a frame stream to stdout. Returns ([(type, did, vrd)] of
    every frame in input order (markers: type 'mark'), cbor-verify's stderr lines)."""
    fc_bin = os.path.join(build, 'tools', 'frame-cat')
    cv_bin = os.path.join(build, 'tools', 'cbor-verify')
    errf = tempfile.TemporaryFile()  # a file, not a pipe: thousands of report lines cannot block
    src = subprocess.Popen(source_argv, stdout=subprocess.PIPE)
    cv = subprocess.Popen([cv_bin, '--annotate', '--max-reports', '100000', '--did-docs', docs],
                          stdin=src.stdout, stdout=subprocess.PIPE, stderr=errf)
    src.stdout.close()
    js = subprocess.Popen([fc_bin, '-q', '--to', 'json'], stdin=cv.stdout, stdout=subprocess.PIPE)
    cv.stdout.close()
    out_bytes = js.stdout.read()
    cv.wait()
    errf.seek(0)
    err = errf.read().decode()
    if src.wait() != 0 or cv.wait() not in (0, 1) or js.wait() != 0:
        raise SystemExit('FAIL - pipeline %s | cbor-verify | frame-cat exited %d/%d/%d:\n%s' % (
            source_argv, src.returncode, cv.returncode, js.returncode, err))
    out = []
    for line in out_bytes.decode().splitlines():
        f = json.loads(line)
        if 'mark' in f:
            out.append(('mark', None, None))
            continue
        p = f.get('payload', {})
        out.append((f.get('header', {}).get('t', 'error'), p.get('did') or p.get('repo'), f.get('vrd')))
    return out, err.splitlines()


def check_snapshots(check, name, runs, totals=None, want_syncs=True):
    """Checks RUNS = {docs file name: verdicts(...) result} (both DOCS, the same input) against
    the expectations above; CHECK(name, cond, detail) records each check. TOTALS (a Counter)
    collects (type, vrd) counts. WANT_SYNCS: also require #sync frames, none stale-rev."""
    a, b = runs[DOCS[0]][0], runs[DOCS[1]][0]
    check('%s: the same frames under both DID-document snapshots' % name, len(a) == len(b))
    for d, other in ((DOCS[0], DOCS[1]), (DOCS[1], DOCS[0])):
        mine, reports = runs[d]
        theirs = runs[other][0]
        unexpected, badsig_dids, badcommit = [], set(), []
        for i, (t, did, vrd) in enumerate(mine):
            if t not in TYPES:
                continue
            if totals is not None:
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
        if want_syncs and d == DOCS[0]:
            check('%s: #sync frames checked (%d), none stale-rev' % (name, len(syncs)),
                  len(syncs) > 0 and 'stale-rev' not in syncs, str(collections.Counter(syncs)))
