#!/usr/bin/env bash
# The reliability review's kill -9 and two-writer harnesses, run against this build (slow suite).
# Usage: tests/cli/reliability.sh BUILD_DIR SOURCE_ROOT
#
# The harnesses are read from $SOVEREIGN_REVIEWS, else SOURCE_ROOT/../shared/reviews/reliability;
# when they are absent the test is skipped (exit 77). Both harnesses only report what they
# see: this script reads their output and fails on any problem they report.
#   killtest.py  kill -9 of cvl-pack at random moments (20 trials, fixed seed) on one growing
#                archive; after each, recovery must give exactly a prefix of the input, and at
#                the end the whole input, byte for byte, with --check passing.
#   twowriters.sh a second writer while one runs, before and after the lock file is removed:
#                it must be refused both times, and the first writer's frames all be there.
set -u
build=${1:?usage: $0 BUILD_DIR SOURCE_ROOT}
src=${2:?usage: $0 BUILD_DIR SOURCE_ROOT}
R=${SOVEREIGN_REVIEWS:-$src/../shared/reviews/reliability}
tools=$build/tools
for f in killtest.py twowriters.sh cb.py; do
    if [ ! -f "$R/$f" ]; then
        echo "SKIP: $R/$f not found (set SOVEREIGN_REVIEWS to the reliability review's directory)"
        exit 77
    fi
done
for t in cvl-pack cvl-cat mesh-sim; do
    [ -x "$tools/$t" ] || { echo "FAIL - $tools/$t is not built"; exit 1; }
done
command -v python3 >/dev/null || { echo "FAIL - python3 is required"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-rel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
pass() { echo "ok - $1"; }
fail() { echo "FAIL - $1"; shift; for l in "$@"; do echo "    $l"; done; failed=$((failed + 1)); }

"$tools/mesh-sim" gen -q --no-corpus --accounts 300 --events 40000 --seed 11 >"$tmp/in.frames" ||
    { echo "FAIL - mesh-sim"; exit 1; }

# ---- killtest.py: 20 trials, seed 5, segments of 1500 messages over 4 shards ----
python3 "$R/killtest.py" "$tools" "$tmp/in.frames" "$tmp/kill" 20 5 --segment-messages 1500 --shards 4 \
    >"$tmp/kill.out" 2>&1
krc=$?
sed 's/^/    killtest: /' "$tmp/kill.out"
if [ $krc -eq 0 ] && grep -q '^PROBLEMS: 0$' "$tmp/kill.out" && grep -q 'archive == input: True' "$tmp/kill.out" &&
    ! grep -q 'PROBLEM ' "$tmp/kill.out"; then
    pass "kill -9 harness: 20 trials, every recovery a prefix of the input, whole input at the end, --check passes"
else
    fail "kill -9 harness (killtest.py exit $krc)" "$(grep -E 'PROBLEM|final:|Traceback|Error' "$tmp/kill.out" | head -5)"
fi

# ---- twowriters.sh: A = the first 2000 frames, B = the next 1200 ----
python3 - "$R" "$tmp/in.frames" "$tmp/a.frames" "$tmp/b.frames" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from cb import records_of
r = records_of(open(sys.argv[2], 'rb').read())
open(sys.argv[3], 'wb').write(b''.join(r[:2000]))
open(sys.argv[4], 'wb').write(b''.join(r[2000:3200]))
PY
bash "$R/twowriters.sh" "$tools" "$tmp/w" "$tmp/a.frames" "$tmp/b.frames" >"$tmp/two.out" 2>&1
trc=$?
sed 's/^/    twowriters: /' "$tmp/two.out"
want() {  # NAME EXTENDED-REGEX: a line of the harness's report must match
    if grep -Eq -- "$2" "$tmp/two.out"; then pass "$1"; else fail "$1" "expected a line matching: $2"; fi
}
[ $trc -eq 0 ] || fail "twowriters.sh exit $trc"
want "two writers: a second writer while the first runs is refused (exit 2)" '^second writer while A runs: rc=2 '
want "two writers: after the lock file is removed, a second writer is still refused (exit 2)" \
    '^second writer after rm lock: rc=2 '
want "two writers: the first writer finishes (exit 0)" '^writer A: rc=0 '
want "two writers: --check passes afterwards" '^check rc=0$'
want "two writers: the archive reads back (exit 0)" '^cat rc=0$'
want "two writers: the archive holds exactly the first writer's 2000 frames, none of the refused writer's" \
    '^archive frames: 2000; A input 2000 \(present 2000\); B input 1200 \(present 0\); A frames missing: 0$'

[ $failed -eq 0 ] && echo "reliability harnesses: all checks passed"
[ $failed -eq 0 ]
