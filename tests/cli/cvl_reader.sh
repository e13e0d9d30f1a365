#!/usr/bin/env bash
# Regression tests of the archive readers, compaction and proofs, one per defect of the
# reliability review (D4, D5, D6, D7, D9, D14, D15, D16, D17) and per-cluster damage:
# docs/format-cvl.md §4, §9, §10; man/cvl-cat.1.md, man/cvl-pack.1.md.
# Usage: tests/cli/cvl_reader.sh BUILD_DIR
#
# Prints one line per check ("ok - …", "FAIL - …" with details, "skip - …") and exits 1 if any
# check failed. Inputs come from mesh-sim (deterministic). Needs python3; strace and a tmpfs
# mount (root) are optional (their checks are skipped with a message).
set -u

build=${1:?usage: $0 BUILD_DIR}
pack=$build/tools/cvl-pack
ccat=$build/tools/cvl-cat
tomb=$build/tools/tomb-set
sim=$build/tools/mesh-sim
for t in "$pack" "$ccat" "$tomb" "$sim"; do
    [ -x "$t" ] || { echo "FAIL - $t is not built"; exit 1; }
done
command -v python3 >/dev/null || { echo "FAIL - python3 is required"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-cvlr.XXXXXX")
mnt=""
cleanup() {
    [ -n "$mnt" ] && umount "$mnt" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
export LC_ALL=C

passed=0
failed=0
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; shift; for l in "$@"; do echo "    $l"; done; failed=$((failed + 1)); }
skip() { echo "skip - $1"; }
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
expect() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $3" "actual:   $2"; fi; }
expect_match() {
    if printf '%s\n' "$2" | grep -Eq -- "$3"; then pass "$1"; else fail "$1" "expected to match: $3" "actual: $2"; fi
}

h=$tmp/h.py
cat >"$h" <<'PY'
import os, re, subprocess, sys, time

def records(data):
    i, out = 0, []
    while i < len(data):
        n = s = 0
        st = i
        while True:
            b = data[i]; i += 1; n |= (b & 127) << s; s += 7
            if b < 128: break
        out.append(data[st:i + n]); i += n
    return out

def envelope(rec):
    i = 0
    while rec[i] & 128: i += 1
    return rec[i + 1:]

cmd = sys.argv[1]
if cmd == 'count':                     # count FILE
    print(len(records(open(sys.argv[2], 'rb').read())))
elif cmd == 'except':                  # except IN ORD...: IN without those ordinals
    drop = set(int(x) for x in sys.argv[3:])
    sys.stdout.buffer.write(b''.join(r for i, r in enumerate(records(open(sys.argv[2], 'rb').read())) if i not in drop))
elif cmd == 'slice':                   # slice IN A B
    r = records(open(sys.argv[2], 'rb').read())
    sys.stdout.buffer.write(b''.join(r[int(sys.argv[3]):int(sys.argv[4])]))
elif cmd == 'ranges':                  # ranges STDERR-FILE: ordinals named "(ordinals 5-7, 12 not served)"
    out = []
    for m in re.finditer(r'\(ordinals? ([0-9, -]+) not served\)', open(sys.argv[2]).read()):
        for part in m.group(1).split(', '):
            a, _, b = part.partition('-')
            out += range(int(a), int(b or a) + 1)
    print(' '.join(str(x) for x in sorted(set(out))))
elif cmd == 'flip':                    # flip FILE OFFSET
    p, off = sys.argv[2], int(sys.argv[3])
    b = bytearray(open(p, 'rb').read()); b[off % len(b)] ^= 0x5a; open(p, 'wb').write(b)
elif cmd == 'grep-purged':             # grep-purged IN LEFTOVER ORD...: how many of those envelopes occur in LEFTOVER
    r = records(open(sys.argv[2], 'rb').read()); left = open(sys.argv[3], 'rb').read()
    print(sum(1 for o in sys.argv[4:] if envelope(r[int(o)]) in left))
elif cmd == 'forge':                   # forge PROOF OUTDIR: relabelled ordinal, leaf = root with size 1
    import json
    p = json.load(open(sys.argv[2])); d = sys.argv[3]
    q = dict(p); q['ordinal'] = p['ordinal'] + 243; json.dump(q, open(d + '/f1.json', 'w'))
    f2 = {'ordinal': 123, 'segment': p['segment'], 'index': 0, 'size': 1, 'leaf': p['root'], 'path': [], 'root': p['root']}
    json.dump(f2, open(d + '/f2.json', 'w'))
    print(p['root'], p.get('anchor', ''))
elif cmd == 'fcs':                     # fcs FILE: sets the first frame's 4-byte content size to 2^32-1
    p = sys.argv[2]; b = bytearray(open(p, 'rb').read())
    fhd = b[4]; assert fhd >> 6 == 2, 'expects a 4-byte FCS field'
    off = 5 + (0 if fhd & 0x20 else 1) + [0, 1, 2, 4][fhd & 3]
    b[off:off + 4] = b'\xff\xff\xff\xff'; open(p, 'wb').write(b)
elif cmd == 'slow-reader':             # slow-reader CAT ARCHIVE PACK EXPECTED: cvl-cat reading while --compact runs
    cat, arch, pack, exp = sys.argv[2:6]
    p = subprocess.Popen([cat, '-q', arch], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = p.stdout.read(200000)      # the reader is inside segment 0, its later segments not yet opened
    c = subprocess.run([pack, '-q', '-o', arch, '--compact'], capture_output=True)
    rest = p.stdout.read()
    rc = p.wait()
    same = first + rest == open(exp, 'rb').read()
    print('%d %d %s %s' % (c.returncode, rc, 'complete' if same else 'INCOMPLETE', p.stderr.read().decode().strip()[:300].replace('\n', ' | ')))
PY
py() { python3 "$h" "$@"; }

gen() { "$sim" gen -q --no-corpus --accounts 200 --events "$1" --seed 3 >"$2"; }
gen 2000 "$tmp/in2k.frames"
gen 3000 "$tmp/in3k.frames"

# ---- D4: a compaction killed after switching an index leaves no purged content for good ----------

A=$tmp/d4
"$pack" -q -o "$A" --segment-messages 1000 --shards 4 "$tmp/in2k.frames"
seq 0 5 1999 | "$tomb" -q "$A"
# The state a kill -9 right after segment 0's index switch leaves: generation 1 in place and the
# generation-0 data files (with the purged messages) still there.
mkdir -p "$tmp/gen0"
for k in 0 1 2 3; do cp "$A/shard/0$k/00000000-0.dat" "$tmp/gen0/$k.dat"; done
run "$pack" -q -o "$A" --compact
for k in 0 1 2 3; do cp "$tmp/gen0/$k.dat" "$A/shard/0$k/00000000-0.dat"; done
: >"$A/shard/01/00000001-1.dat.tmp"
run "$pack" -q -o "$A" --compact
left=$(ls "$A"/shard/*/00000000-0.dat "$A"/shard/*/*.tmp 2>/dev/null | wc -l)
expect "D4 a later --compact deletes the old generation's data files a killed compaction left (and stale *.tmp): exit 0, none left" \
    "$rc $left" "0 0"
cat "$A"/shard/*/00000000-* >"$tmp/all-seg0.bin"
for f in "$A"/shard/*/00000000-1.dat; do zstd -dcq -D "$A/dict/00000001.zdict" "$f" 2>/dev/null; done >>"$tmp/all-seg0.bin"
expect "D4 no purged envelope of segment 0 is left on disk" "$(py grep-purged "$tmp/in2k.frames" "$tmp/all-seg0.bin" $(seq 0 5 999))" 0
run "$ccat" -q "$A" --check
expect "D4 the archive checks clean after the finished compaction" "$rc" 0
# The next plain append sweeps them too (it takes the same lock), so purged content does not
# wait for the next --compact.
for k in 0 1 2 3; do cp "$tmp/gen0/$k.dat" "$A/shard/0$k/00000000-0.dat"; done
run "$pack" -q -o "$A" /dev/null
expect "D4 a plain cvl-pack run also deletes a killed compaction's old generation: exit 0, none left" \
    "$rc $(ls "$A"/shard/*/00000000-0.dat 2>/dev/null | wc -l)" "0 0"
run "$ccat" -q "$A" --check
expect "D4 … and the archive still checks clean" "$rc" 0
if command -v strace >/dev/null && strace -f -qq -o /dev/null -e trace=none true 2>/dev/null; then
    B=$tmp/d4s
    "$pack" -q -o "$B" --segment-messages 1000 --shards 4 "$tmp/in2k.frames"
    seq 0 5 1999 | "$tomb" -q "$B"
    { strace -f -qq -o /dev/null -e trace=unlink,unlinkat -e inject=unlink,unlinkat:signal=KILL "$pack" -q -o "$B" --compact; } 2>/dev/null
    killed=$?
    run "$pack" -q -o "$B" --compact
    expect "D4 kill -9 at compaction's first unlink, then --compact: exit 0 and no generation-0 file left" \
        "$killed $rc $(ls "$B"/shard/*/*-0.dat 2>/dev/null | wc -l)" "137 0 0"
else
    skip "D4 kill -9 at compaction's first unlink (strace with fault injection is not available)"
fi

# ---- D15: a reader during compaction reads every segment ------------------------------------------

A=$tmp/d15
"$pack" -q -o "$A" --segment-messages 500 --shards 4 "$tmp/in3k.frames"
"$tomb" -q "$A" $(seq 0 9 2999)
"$ccat" -q "$A" >"$tmp/d15.expected"
read -r crc rrc verdict rest <<<"$(py slow-reader "$ccat" "$A" "$pack" "$tmp/d15.expected")"
expect "D15 cvl-cat reading while cvl-pack --compact runs: both exit 0, its output is the whole visible archive" \
    "$crc $rrc $verdict" "0 0 complete"
[ "$verdict" = complete ] || echo "    cvl-cat stderr: $rest"
run "$ccat" -q "$A" --stats
expect "D15 … and the compaction did purge (generation 1 everywhere)" "$(ls "$A"/shard/*/*-0.dat 2>/dev/null | wc -l)" 0

# ---- D14: forged proofs --------------------------------------------------------------------------

A=$tmp/d14
gen 300 "$tmp/in300.frames"
"$pack" -q -o "$A" "$tmp/in300.frames"
"$ccat" "$A" --proof 7 >"$tmp/p.json"
read -r mroot anchor <<<"$(py forge "$tmp/p.json" "$tmp")"
run "$ccat" "$A" --verify-proof "$tmp/f1.json"
expect "D14 a real proof relabelled with another ordinal is INVALID against the archive (exit 1)" "$rc $(grep -c INVALID "$tmp/err")" "1 1"
run "$ccat" "$A" --verify-proof "$tmp/f2.json"
expect "D14 a 'proof' whose leaf is the segment root, empty path, size 1: INVALID against the archive" "$rc $(grep -c INVALID "$tmp/err")" "1 1"
run "$ccat" --verify-proof "$tmp/f2.json" --root "$mroot"
expect "D14 the same with --root = the bare Merkle root is not 'valid': exit 2, says it binds no size" \
    "$rc $(grep -c 'binds neither the tree size' "$tmp/err") $(grep -c valid "$tmp/out")" "2 1 0"
run "$ccat" --verify-proof "$tmp/f2.json" --root "$anchor"
expect "D14 the forged size-1 proof against the published anchor: INVALID (exit 1)" "$rc" 1
run "$ccat" --verify-proof "$tmp/f1.json" --root "$anchor"
expect "D14 the relabelled proof against the published anchor: INVALID (exit 1)" "$rc" 1
run "$ccat" --verify-proof "$tmp/p.json" --root "$anchor"
expect "D14 the genuine proof against the published anchor: valid (exit 0)" "$rc $(grep -c '^valid: ordinal 7 ' "$tmp/out")" "0 1"
run "$ccat" --verify-proof "$tmp/p.json"
expect "D14 with neither archive nor --root: exit 2, 'not checked', never 'valid'" \
    "$rc $(grep -c 'not checked' "$tmp/err") $(grep -c valid "$tmp/out")" "2 1 0"
expect "D14 --stats lists segment 0's anchor, the one the proof names" \
    "$("$ccat" "$A" --stats | awk '$1 == "0" {print $NF}')" "$anchor"
"$ccat" -q "$A" --ordinal 7 >"$tmp/m7.frames"
"$ccat" -q "$A" --ordinal 8 >"$tmp/m8.frames"
run "$ccat" "$A" --verify-proof "$tmp/p.json" --frame "$tmp/m7.frames"
expect "D14 --frame with the proven message: valid (exit 0)" "$rc" 0
run "$ccat" --verify-proof "$tmp/p.json" --root "$anchor" --frame "$tmp/m8.frames"
expect "D14 --frame with another message: INVALID (exit 1)" "$rc $(grep -c 'not the hash of the frame' "$tmp/err")" "1 1"

# ---- per-cluster damage --------------------------------------------------------------------------

A=$tmp/pc
"$pack" -q -o "$A" --segment-messages 1000 --shards 4 "$tmp/in3k.frames"
# The middle of segment 1's largest data file: one cluster damaged.
victim=$(ls -S "$A"/shard/*/00000001-0.dat | head -1)
py flip "$victim" $(( $(wc -c <"$victim") / 2 ))
run "$ccat" -q "$A"
bad=$(py ranges "$tmp/err")
nbad=$(echo "$bad" | wc -w)
py except "$tmp/in3k.frames" $bad >"$tmp/pc.expected"
if [ "$rc" = 1 ] && [ "$nbad" -gt 0 ] && [ "$nbad" -lt 1000 ] && cmp -s "$tmp/out" "$tmp/pc.expected"; then
    pass "one damaged cluster: every other message of its segment is served, exit 1, the $nbad lost ordinals named"
else
    fail "one damaged cluster: every other message of its segment is served" "rc=$rc bad=$nbad" "$(head -3 "$tmp/err")"
fi
expect_match "… the report names the file and the offset" "$(head -1 "$tmp/err")" "^cvl-cat: $victim:[0-9]+: corrupt cluster"
first_bad=${bad%% *}
run "$ccat" -q "$A" --first-ordinal 1000 --last-ordinal $((first_bad - 1))
expect "a range of the damaged segment that avoids the damaged cluster: exit 0, no diagnostic" "$rc $(wc -c <"$tmp/err")" "0 0"
run "$ccat" -q "$A" --first-ordinal 0 --last-ordinal 999
expect "a range in another segment: exit 0" "$rc" 0
# A point read decompresses only as far as its message (format §4), so it may not reach the damage:
# then it must give the original message.
py slice "$tmp/in3k.frames" "$first_bad" $((first_bad + 1)) >"$tmp/one.expected"
run "$ccat" -q "$A" --ordinal "$first_bad"
if { [ "$rc" = 1 ] && grep -q "ordinal $first_bad not served" "$tmp/err"; } || { [ "$rc" = 0 ] && cmp -s "$tmp/out" "$tmp/one.expected"; }; then
    pass "a point read of an ordinal in the damaged cluster: exit 1 naming it, or the original message (exit $rc)"
else
    fail "a point read of an ordinal in the damaged cluster" "rc=$rc" "$(head -2 "$tmp/err")"
fi
# An index destroyed down to its header: a range before it is still served with exit 0; one
# after the readable segments is refused (exit 1), naming the file.
A=$tmp/ix
"$pack" -q -o "$A" --segment-messages 1000 --shards 4 "$tmp/in3k.frames"
truncate -s 50 "$A/seg/00000001.idx"
run "$ccat" -q "$A" --first-ordinal 0 --last-ordinal 999
expect "an index truncated to 50 bytes: a range in the segment before it exits 0" "$rc" 0
run "$ccat" -q "$A" --first-ordinal 1000 --last-ordinal 1499
expect_match "… a range it may hold exits 1, naming it" "$rc $(head -1 "$tmp/err")" "^1 cvl-cat: $A/seg/00000001.idx:50: "
run "$ccat" -q "$A" --ordinal 1200
expect_match "… a point read of an ordinal it may hold exits 1, naming it" "$rc $(head -1 "$tmp/err")" "^1 cvl-cat: $A/seg/00000001.idx:50: "
# A missing dictionary: --stats still lists every segment.
A=$tmp/nd
"$pack" -q -o "$A" --segment-messages 1000 --shards 4 "$tmp/in3k.frames"
rm "$A"/dict/*.zdict
run "$ccat" "$A" --stats
expect "--stats without the dictionaries: lists all 3 segments (and names the missing dictionary, exit 1)" \
    "$rc $(grep -cE '^ +[0-9]+ ' "$tmp/out") $(grep -c 'missing dictionary' "$tmp/err")" "1 3 3"
# A missing data file: the segment's other shards are served.
A=$tmp/md
"$pack" -q -o "$A" --segment-messages 1000 --shards 4 "$tmp/in3k.frames"
rm "$A/shard/02/00000001-0.dat"
run "$ccat" -q "$A"
bad=$(py ranges "$tmp/err")
py except "$tmp/in3k.frames" $bad >"$tmp/md.expected"
if [ "$rc" = 1 ] && [ -n "$bad" ] && cmp -s "$tmp/out" "$tmp/md.expected" && grep -q "shard/02/00000001-0.dat" "$tmp/err"; then
    pass "a missing data file: the clusters of the other shards are served, exit 1, the file and lost ordinals named"
else
    fail "a missing data file: the clusters of the other shards are served" "rc=$rc" "$(head -3 "$tmp/err")"
fi

# ---- D5: a tombstone file that cannot be trusted stops readers ----------------------------------

A=$tmp/d5
"$pack" -q -o "$A" "$tmp/in300.frames"
"$tomb" -q "$A" 5 6 7
touch "$A/tomb/tomb-0000000G.bits"
run "$ccat" -q "$A"
st_cat=$rc
n_cat=$(py count "$tmp/out")
run "$ccat" -q "$A" --check
st_check=$rc
run "$pack" -q -o "$A" --compact
expect "D5 a stray file in tomb/: cvl-cat, --check and --compact refuse (exit 1), no frame served" \
    "$st_cat $n_cat $st_check $rc" "1 0 1 1"
expect_match "D5 … naming the file" "$(cat "$tmp/err")" "tomb-0000000G.bits"
rm "$A/tomb/tomb-0000000G.bits"
truncate -s 1000 "$A/tomb/tomb-00000000.bits"
run "$ccat" -q "$A"
expect "D5 a tombstone file of a wrong size: cvl-cat refuses (exit 1), no frame served" "$rc $(py count "$tmp/out")" "1 0"

# ---- D6: a wrong JSON type in cvl.json is damage, not an abort -----------------------------------

A=$tmp/d6
"$pack" -q -o "$A" "$tmp/in300.frames"
sed -i 's/"shards": [0-9]*/"shards": "16"/' "$A/cvl.json"
run "$ccat" "$A" --check; s1=$rc
run "$pack" -o "$A" </dev/null; s2=$rc
run "$tomb" "$A" 1; s3=$rc
echo null >"$A/cvl.json"
run "$ccat" "$A"; s4=$rc
expect "D6 cvl.json with a wrong type or null: cvl-cat, cvl-pack, tomb-set exit 1 (no abort)" "$s1 $s2 $s3 $s4" "1 1 1 1"

# ---- D7: a full file system: no SIGBUS ----------------------------------------------------------

if [ "$(id -u)" = 0 ] && mkdir -p "$tmp/mnt" && mount -t tmpfs -o size=8m tmpfs "$tmp/mnt" 2>/dev/null; then
    mnt=$tmp/mnt
    "$pack" -q -o "$mnt/a" "$tmp/in300.frames"
    dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null
    run "$ccat" -q "$mnt/a"; s1=$rc
    run "$tomb" -q "$mnt/a" 5; s2=$rc
    e2=$(cat "$tmp/err")
    run "$ccat" -q --include-deleted "$mnt/a"; s3=$rc
    if [ "$s1" -le 2 ] && [ "$s2" -le 2 ] && [ "$s3" -le 2 ] && { [ "$s2" = 0 ] || printf '%s' "$e2" | grep -qi 'space'; }; then
        pass "D7 archive on a full file system: cvl-cat, tomb-set, cvl-cat --include-deleted exit $s1 $s2 $s3 (no SIGBUS; a failure says 'no space')"
    else
        fail "D7 archive on a full file system: no SIGBUS" "exit statuses $s1 $s2 $s3" "$e2"
    fi
    umount "$mnt" && mnt=""
else
    skip "D7 archive on a full file system (needs root and a tmpfs mount)"
fi

# ---- D9: a cluster's frame content size is bounded by the index ---------------------------------

A=$tmp/d9
gen 600 "$tmp/in600.frames"
# Clusters over 64 KiB: their zstd frames carry a 4-byte content size field to corrupt.
"$pack" -q -o "$A" --shards 2 --cluster-bytes 262144 "$tmp/in600.frames"
py fcs "$A/shard/00/00000000-0.dat" || fail "D9 setup: the first cluster has no 4-byte content size field"
# 1.5 GB of address space: the tombstone map (512 MiB) fits, a 4 GiB buffer does not.
run bash -c "ulimit -v 1572864; exec '$ccat' -q '$A' --check"
s1=$rc
e1=$(cat "$tmp/err")
run bash -c "ulimit -v 1572864; exec '$ccat' -q '$A'"
expect "D9 a cluster claiming 4 GiB: --check and a read exit 1 within 1.5 GB of address space" "$s1 $rc" "1 1"
expect_match "D9 … naming the file, offset and reason" "$e1" "00000000-0.dat:0: corrupt cluster \(frame content size 4294967295"

# ---- D16: a damaged dictionary is named, with the reason ----------------------------------------

A=$tmp/d16
"$pack" -q -o "$A" "$tmp/in600.frames"
py flip "$A/dict/00000001.zdict" 8
run "$ccat" "$A" --check
expect_match "D16 a damaged dictionary: cvl-cat --check exits 1 naming the file and the reason" \
    "$rc $(head -1 "$tmp/err")" "^1 cvl-cat: .*/dict/00000001.zdict: not a zstd dictionary"
run "$pack" -o "$A" </dev/null
expect_match "D16 … and cvl-pack" "$rc $(head -1 "$tmp/err")" "^1 cvl-pack: .*/dict/00000001.zdict: .+"

# ---- D17: lock errors say what is wrong ---------------------------------------------------------

run "$pack" -o "$tmp/nonexistent" --compact
expect "D17 --compact of a missing directory: exit 2, not 'another cvl-pack'" \
    "$rc $(grep -c 'another cvl-pack' "$tmp/err") $(grep -c 'No such file' "$tmp/err")" "2 0 1"
A=$tmp/d17
"$pack" -q -o "$A" "$tmp/in300.frames"
rm -f "$A/lock"
mkdir "$A/lock"
run "$pack" -o "$A" "$tmp/in300.frames"
# The writer lock is a flock on the archive directory itself (D3), so a stray "lock" entry of
# any kind no longer matters: the append goes ahead and no lock error is invented.
expect "D17 a stray 'lock' directory: appended, exit 0, no 'another cvl-pack'" \
    "$rc $(grep -c 'another cvl-pack' "$tmp/err")" "0 0"

# ---- A missing index: reported with its ordinal range, the other segments served -------------------

for k in 0 2; do
    A=$tmp/idxgone$k
    "$pack" -q -o "$A" --segment-messages 500 --shards 4 "$tmp/in2k.frames"
    rm "$A/seg/0000000$k.idx"
    run "$ccat" -q "$A"
    lo=$((k * 500)); hi=$((k * 500 + 499))
    expect_match "missing index of segment $k: a full read exits 1 (no crash) and names the ordinals not served" \
        "$rc $(grep -c . "$tmp/err") $(head -1 "$tmp/err")" "^1 1 cvl-cat: .*/seg/0000000$k.idx: missing.*ordinals $lo-$hi not served"
    run "$ccat" -q "$A" --first-ordinal 1000 --last-ordinal 1499
    [ $k = 2 ] && want=1 || want=0
    expect "missing index of segment $k: the range 1000-1499 (segment 2) exits $want" "$rc" "$want"
    run "$ccat" -q "$A" --first-ordinal 1500 --last-ordinal 1999
    py slice "$tmp/in2k.frames" 1500 2000 >"$tmp/want"
    cmp -s "$tmp/out" "$tmp/want" && same=equal || same=differs
    expect "missing index of segment $k: segment 3 is served whole, exit 0" "$rc $same" "0 equal"
    run "$ccat" -q "$A" --first-ordinal 500 --last-ordinal 999
    py slice "$tmp/in2k.frames" 500 1000 >"$tmp/want"
    cmp -s "$tmp/out" "$tmp/want" && same=equal || same=differs
    expect "missing index of segment $k: segment 1 is served whole, exit 0" "$rc $same" "0 equal"
done

# ---- SIGINT during a read: whole frames, a prefix of the archive, exit 130 ------------------------

A=$tmp/sigread
"$pack" -q -o "$A" "$tmp/in3k.frames"
read -r src nout prefix last <<<"$(python3 - "$ccat" "$A" "$tmp/in3k.frames" "$h" <<'PYEOF'
import signal, subprocess, sys, time
ccat, arch, inp, helper = sys.argv[1:5]
sys.argv = [helper, 'none']
exec(open(helper).read().split("cmd = sys.argv[1]")[0])  # records()
p = subprocess.Popen([ccat, arch], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
time.sleep(1.0)  # the pipe is full: cvl-cat waits in a write
p.send_signal(signal.SIGINT)
out, err = p.stdout.read(), p.stderr.read().decode()
rc = p.wait()
got, want = records(out), records(open(inp, 'rb').read())
print(rc, len(got), 'prefix' if got == want[:len(got)] and 0 < len(got) < len(want) else 'not-prefix',
      err.strip().splitlines()[-1].replace(' ', '_') if err.strip() else 'none')
PYEOF
)"
expect "SIGINT during a cvl-cat read: exit 130, whole frames, a proper prefix of the archive" "$src $prefix" "130 prefix"
expect_match "… the summary counts what was written and says it was interrupted" "$last" \
    "^cvl-cat:_${nout}_frames_written_.*interrupted_by_SIGINT"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
