#!/usr/bin/env python3
"""Runs the reliability reviewers' harnesses against the built tools and fails when any of
them reports a problem (meson suite 'slow').

usage: review_harnesses.py BUILD_DIR DEFAULT_REVIEWS_DIR [NAME...]

The harnesses are read from $SOVEREIGN_REVIEWS, else DEFAULT_REVIEWS_DIR (the review beside
the checkout, ../shared/reviews/reliability); when they are absent the test is skipped
(exit 77). NAME selects some of: killcompact, compact_vs_reader, corrupt, tomb_concurrent
(default: all). Trial counts and seeds are fixed, so a run is repeatable; no check depends
on wall-clock time. The harnesses print their findings; this wrapper reads them:

- killcompact.py: every trial OK after the kill and after the next --compact ("BAD TRIALS: 0"),
  and no old-generation data file or *.tmp left after that --compact (D4);
- compact_vs_reader.py: --compact and the concurrent cvl-cat both exit 0 and the reader's
  output is complete (D15);
- corrupt.py: per damage case, no crash or hang (exit status 0..2), no altered frame in a full
  read or a point read, and a range of an undamaged segment is served whole with exit 0
  (per-cluster damage), except when a tombstone file or cvl.json is damaged: then readers fail closed;
- tomb_concurrent.py: "BAD ROUNDS: 0".
"""
import json, os, re, shutil, subprocess, sys, tempfile

build, default_reviews = sys.argv[1], sys.argv[2]
wanted = sys.argv[3:] or ['killcompact', 'compact_vs_reader', 'corrupt', 'tomb_concurrent']
reviews = os.environ.get('SOVEREIGN_REVIEWS') or default_reviews
tools = os.path.abspath(os.path.join(build, 'tools'))
PACK, CAT, TOMB, SIM = (os.path.join(tools, t) for t in ('cvl-pack', 'cvl-cat', 'tomb-set', 'mesh-sim'))

needed = ['cb.py'] + [n + '.py' for n in wanted]
missing = [n for n in needed if not os.path.isfile(os.path.join(reviews, n))]
if missing:
    print('SKIP: the reviewers\' harnesses are not in %s (missing %s); set SOVEREIGN_REVIEWS to their directory'
          % (reviews, ', '.join(missing)))
    sys.exit(77)
for t in (PACK, CAT, TOMB, SIM):
    if not os.access(t, os.X_OK):
        print('FAIL: %s is not built' % t)
        sys.exit(1)

work = tempfile.mkdtemp(prefix='sov-review.')
problems = []


def harness(name, *args, timeout=3600):
    """Runs one harness; its output is echoed and returned."""
    cmd = [sys.executable, os.path.join(reviews, name + '.py')] + [str(a) for a in args]
    print('## ' + ' '.join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        problems.append('%s: did not finish within %d s' % (name, timeout))
        return ''
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        problems.append('%s: exit %d: %s' % (name, p.returncode, p.stderr.strip()[-500:]))
    return p.stdout


def frames(n, path, seed=3):
    with open(path, 'wb') as f:
        subprocess.run([SIM, 'gen', '-q', '--no-corpus', '--accounts', '200', '--events', str(n), '--seed', str(seed)],
                       stdout=f, check=True)
    return path


def pack(dst, inp, *opts):
    subprocess.run([PACK, '-q', '-o', dst] + list(opts) + [inp], check=True)
    return dst


try:
    if 'killcompact' in wanted:
        inp = frames(3000, os.path.join(work, 'kc.frames'))
        base = pack(os.path.join(work, 'kc-base'), inp, '--segment-messages', '500', '--shards', '4')
        tombed = list(range(0, 3000, 7))
        subprocess.run([TOMB, '-q', base] + [str(o) for o in tombed], check=True)
        with open(os.path.join(work, 'kc.tomb'), 'w') as f:
            f.write(' '.join(str(o) for o in tombed))
        out = harness('killcompact', tools, base, inp, os.path.join(work, 'kc.tomb'), os.path.join(work, 'kc'), 12, 1)
        m = re.search(r'^BAD TRIALS: (\d+)$', out, re.M)
        if not m or m.group(1) != '0':
            problems.append('killcompact: ' + (m.group(0) if m else 'no verdict line'))
        for line in out.splitlines():
            m = re.search(r'leftover files: (\d+)', line)
            if m and m.group(1) != '0':
                problems.append('killcompact: old-generation or temporary files survived the second --compact: ' + line)

    if 'compact_vs_reader' in wanted:
        inp = frames(3000, os.path.join(work, 'cr.frames'))
        for trial in range(3):
            arch = pack(os.path.join(work, 'cr%d' % trial), inp, '--segment-messages', '500', '--shards', '4')
            out = harness('compact_vs_reader', tools, arch, inp)
            if not re.search(r'compact rc=0; cvl-cat rc=0, frames \d+ of \d+ expected, complete=True', out):
                problems.append('compact_vs_reader (trial %d): %s' % (trial, out.strip()[:400]))
            shutil.rmtree(arch)

    if 'corrupt' in wanted:
        inp = frames(1500, os.path.join(work, 'co.frames'))
        pristine = pack(os.path.join(work, 'co-pristine'), inp, '--segment-messages', '500', '--shards', '4')
        # The harness predates the directory lock (D3) and damages a file DIR/lock, which the
        # writer no longer creates: a stray empty 'lock' file stands in for it, so its cases
        # ('lock-delete', 'lock-dir') check that such an entry changes nothing.
        open(os.path.join(pristine, 'lock'), 'w').close()
        # It also predates the rename of cvl-cat's --from/--to (exclusive end) to
        # --first-ordinal/--last-ordinal (both inclusive; issue 8: one meaning per flag name):
        # it runs the tools of a directory where cvl-cat translates the old flags and execs the
        # real one (same arguments otherwise, same exit status).
        shim = os.path.join(work, 'shim-tools')
        os.mkdir(shim)
        for t in (PACK, TOMB, SIM):
            os.symlink(t, os.path.join(shim, os.path.basename(t)))
        with open(os.path.join(shim, 'cvl-cat'), 'w') as f:
            f.write('#!/usr/bin/env bash\nargs=()\nwhile [ $# -gt 0 ]; do\n  case "$1" in\n'
                    '    --from) args+=(--first-ordinal "$2"); shift 2 ;;\n'
                    '    --to) args+=(--last-ordinal "$(($2 - 1))"); shift 2 ;;\n'
                    '    *) args+=("$1"); shift ;;\n  esac\ndone\nexec %s "${args[@]}"\n' % CAT)
        os.chmod(os.path.join(shim, 'cvl-cat'), 0o755)
        out = harness('corrupt', shim, pristine, inp, os.path.join(work, 'co'), 1)
        rows = 0
        for line in out.splitlines():
            if not line.startswith('{'):
                continue
            row = json.loads(line)
            rows += 1
            case = row['case']
            # Exit statuses (the harness's own CRASH flag also looks at the segment number and
            # the ordinal in its 'range' and 'ordinal' entries, so it is recomputed here).
            statuses = [row['check'][0], row['cat'][0], row['pack-append'][0], row['check-after-append']]
            if 'range' in row: statuses.append(row['range'][1])
            if 'ordinal' in row: statuses.append(row['ordinal'][1])
            if 'proof' in row: statuses.append(row['proof'][0])
            if 'tomb-test' in row: statuses.append(row['tomb-test'][0])
            if any(st == 'TIMEOUT' or not isinstance(st, int) or st < 0 or st > 2 for st in statuses):
                problems.append('corrupt %s: a crash or hang: %s' % (case, line[:300]))
            if row['cat'][1] is not True:
                problems.append('corrupt %s: a full read wrote a frame that is not in the input: %s' % (case, row['cat']))
            # A tombstone file that cannot be trusted stops every read (fail closed, D5).
            # A cvl.json out of range is damage to the whole archive (format §2).
            if 'range' in row and not case.startswith(('tomb', 'cvljson')) and (row['range'][1] != 0 or row['range'][2] is not True):
                problems.append('corrupt %s: an undamaged segment was not served whole with exit 0: %s' % (case, row['range']))
            if 'ordinal' in row and row['ordinal'][2] is False:
                problems.append('corrupt %s: a point read wrote an altered frame: %s' % (case, row['ordinal']))
        if rows == 0:
            problems.append('corrupt: no result rows')

    if 'tomb_concurrent' in wanted:
        inp = frames(3000, os.path.join(work, 'tc.frames'))
        arch = pack(os.path.join(work, 'tc'), inp, '--segment-messages', '1000', '--shards', '4')
        out = harness('tomb_concurrent', tools, arch, inp, 4)
        m = re.search(r'^BAD ROUNDS: (\d+)$', out, re.M)
        if not m or m.group(1) != '0':
            problems.append('tomb_concurrent: ' + (m.group(0) if m else 'no verdict line'))
finally:
    shutil.rmtree(work, ignore_errors=True)

for p in problems:
    print('FAIL: ' + p)
print('%d problem(s) reported by the harnesses (%s)' % (len(problems), ', '.join(wanted)))
sys.exit(1 if problems else 0)
