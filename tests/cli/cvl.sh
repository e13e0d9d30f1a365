#!/usr/bin/env bash
# Command-line tests of the CVL archive tools (cvl-pack, cvl-cat, tomb-set; docs/design.md §4, §6,
# docs/format-cvl.md): round trips to the byte, filters against frame-cat, proofs, corrupt
# files, tombstones and compaction, and durability under kill -9 (mid-stream and mid-seal).
# Usage: tests/cli/cvl.sh BUILD_DIR [DEFAULT_CORPUS_DIR]
#
# Prints one line per check ("ok - …", or "FAIL - …" with details) and exits 1 if any check
# failed. Inputs come from mesh-sim (deterministic); the real relay capture
# ($SOVEREIGN_CORPUS, else DEFAULT_CORPUS_DIR, else ../shared/corpus beside the checkout) adds
# one round trip and is skipped when absent.
# Needs python3 (record slicing, the slow producer, byte surgery); b3sum is optional.
set -u

build=${1:?usage: $0 BUILD_DIR [CORPUS_DIR]}
here=$(cd "$(dirname "$0")" && pwd)
corpus=${SOVEREIGN_CORPUS:-${2:-$here/../../../shared/corpus}}
pack=$build/tools/cvl-pack
ccat=$build/tools/cvl-cat
tomb=$build/tools/tomb-set
fcat=$build/tools/frame-cat
sim=$build/tools/mesh-sim
cver=$build/tools/cbor-verify

for t in "$pack" "$ccat" "$tomb" "$fcat" "$sim" "$cver"; do
    [ -x "$t" ] || { echo "FAIL - $t is not built"; exit 1; }
done
command -v python3 >/dev/null || { echo "FAIL - python3 is required"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-cvl.XXXXXX")
bg=()
cleanup() {
    for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
export LC_ALL=C
start_s=$SECONDS

passed=0
failed=0
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; shift; for l in "$@"; do echo "    $l"; done; failed=$((failed + 1)); }

# run CMD...: stdout in $tmp/out, stderr in $tmp/err, status in $rc.
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
# expect NAME ACTUAL EXPECTED
expect() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $3" "actual:   $2"; fi
}
# expect_match NAME TEXT EXTENDED-REGEX
expect_match() {
    if printf '%s\n' "$2" | grep -Eq -- "$3"; then pass "$1"; else fail "$1" "expected to match: $3" "actual: $2"; fi
}
# same NAME FILE1 FILE2: byte-identical
same() {
    if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$(cmp "$2" "$3" 2>&1 | head -1)" "sizes: $(wc -c <"$2") vs $(wc -c <"$3")"; fi
}
lines() { wc -l <"$1" | tr -d ' '; }
# nfiles PATH...: how many of the (globbed) paths exist
nfiles() {
    local n=0 f
    for f in "$@"; do [ -e "$f" ] && n=$((n + 1)); done
    echo "$n"
}
size() { wc -c <"$1" | tr -d ' '; }
commas() { echo "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }

# ---- python helper: records of a frame stream, the slow producer, the killer, byte surgery ------

h=$tmp/h.py
cat >"$h" <<'PY'
import json, os, random, signal, subprocess, sys, time, fcntl

def records(path):
    d = open(path, 'rb').read()
    i, out = 0, []
    while i < len(d):
        n = s = 0
        st = i
        while True:
            b = d[i]; i += 1; n |= (b & 127) << s; s += 7
            if b < 128: break
        out.append(d[st:i + n]); i += n
    return out

def ends(recs):
    o = [0]
    for r in recs: o.append(o[-1] + len(r))
    return o

def status(path, written, cap, state):
    with open(path + '.tmp', 'w') as f: f.write('%d %d %s\n' % (written, cap, state))
    os.replace(path + '.tmp', path)

def producer(path, st, pipesz, chunk, pause, hold_at):
    """Writes the records to stdout (a pipe made pipesz bytes small) `chunk` records at a time
    with `pause` s between chunks; after `hold_at` records (if ≥ 0) it stops writing and keeps
    the pipe open until `st`.release exists or the reader is gone. `st` always holds the exact
    byte count the pipe accepted."""
    recs = records(path)
    try: fcntl.fcntl(1, 1031, pipesz)        # F_SETPIPE_SZ
    except OSError: pass
    try: cap = fcntl.fcntl(1, 1032)          # F_GETPIPE_SZ
    except OSError: cap = 1 << 20
    data, e = b''.join(recs), ends(recs)
    stop = len(data) if hold_at < 0 else e[hold_at]
    pos, k, state = 0, 0, 'done'
    status(st, 0, cap, 'run')
    try:
        while pos < stop:
            k = min(k + chunk, len(recs))
            nxt = min(e[k], stop)
            while pos < nxt:
                pos += os.write(1, data[pos:nxt])
            status(st, pos, cap, 'run')
            if pause: time.sleep(pause)
        if hold_at >= 0:
            status(st, pos, cap, 'held')
            while not os.path.exists(st + '.release'):
                time.sleep(0.02)
                os.write(1, b'')           # raises once the reader is gone
    except BrokenPipeError:
        state = 'broken'
    status(st, pos, cap, state)

def killer(pid, adir, st, cond, seed):
    """Kills pid with SIGKILL when `cond` holds: 'after-seal:D' = D×random s after segment 0 is
    sealed; 'held:D' = D×random s after the producer stopped at its hold point; 'stage:N' = as
    soon as the seal of segment 0 has reached stage N (1 dictionary written, 2 data files being
    written, 3 index being written, 4 index renamed). Prints what it saw."""
    rng = random.Random(int(seed))
    kind, arg = cond.split(':')
    t_end = time.time() + 30
    deadline = t0 = None
    def stage():
        def has(sub, pred):
            try: return any(pred(f) for f in os.listdir(os.path.join(adir, sub)))
            except FileNotFoundError: return False
        if os.path.exists(os.path.join(adir, 'seg/00000000.idx')): return 4
        if has('seg', lambda f: f.endswith('.idx.tmp')): return 3
        if has('shard/00', lambda f: f.endswith('.tmp')): return 2
        if has('dict', lambda f: f.endswith('.zdict')): return 1
        return 0
    def kill(what):
        try: os.kill(pid, signal.SIGKILL); print(what)
        except ProcessLookupError: print('exited-before-kill')
    while time.time() < t_end:
        if kind == 'stage':
            s = stage()
            if s >= int(arg):
                kill('stage%d' % s); return
        else:
            if deadline is None:
                if kind == 'after-seal' and os.path.exists(os.path.join(adir, 'seg/00000000.idx')):
                    deadline = time.time() + float(arg) * rng.random()
                    t0 = time.time()
                if kind == 'held':
                    try: held = open(st).read().split()[2] == 'held'
                    except (OSError, IndexError): held = False
                    if held: deadline = time.time() + float(arg) * rng.random()
            elif time.time() >= deadline:
                kill('stage%d' % stage() if kind == 'held' else 'first seal + %.2f s' % (time.time() - t0)); return
        time.sleep(0.0002)
    kill('timeout')

def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    out = sys.stdout.buffer
    if cmd == 'count':
        print(len(records(a[0])))
    elif cmd == 'slice':                      # FILE FROM TO
        out.write(b''.join(records(a[0])[int(a[1]):int(a[2])]))
    elif cmd == 'pick':                       # FILE ORD...: those records, in ordinal order, once
        r = records(a[0]); out.write(b''.join(r[o] for o in sorted(set(int(x) for x in a[1:]))))
    elif cmd == 'except':                     # FILE ORD...: every record but those
        r = records(a[0]); drop = set(int(x) for x in a[1:])
        out.write(b''.join(x for i, x in enumerate(r) if i not in drop))
    elif cmd == 'prefix':                     # OUT IN: k if OUT is exactly IN's first k records, else -1
        o = open(a[0], 'rb').read(); e = ends(records(a[1]))
        print(e.index(len(o)) if len(o) in e and open(a[1], 'rb').read(len(o)) == o else -1)
    elif cmd == 'diagnose':                 # OUT IN: 'prefix K', 'gaps M ORD…' or 'other …'
        # gaps: OUT is IN[0:M] with the listed records missing (in order, nothing else).
        o, i = records(a[0]), records(a[1])
        k = 0
        while k < len(o) and k < len(i) and o[k] == i[k]: k += 1
        if k == len(o): print('prefix', k); return
        pos, j, missing = {}, 0, []
        for r in o:
            while j < len(i) and i[j] != r: missing.append(j); j += 1
            if j == len(i): print('other: record not in the input or out of order'); return
            j += 1
        print('gaps', j, ' '.join(map(str, missing)))
    elif cmd == 'bound':                      # IN WRITTEN CAP: records cvl-pack must have read
        # The pipe accepted WRITTEN bytes; at most CAP of them were still in the pipe and at most
        # one read (≤ CAP) plus the record being assembled sat unjournaled in cvl-pack's buffer,
        # so every record k with end(k+1) < WRITTEN - 2·CAP was journaled.
        e = ends(records(a[0]))[1:]; lim = int(a[1]) - 2 * int(a[2]) - 16
        print(sum(1 for x in e if x < lim))
    elif cmd == 'random':                     # SEED N COUNT
        rng = random.Random(int(a[0])); print(' '.join(str(rng.randrange(int(a[1]))) for _ in range(int(a[2]))))
    elif cmd == 'recv-select':                # JSONL SINCE UNTIL [DID]: ordinals with SINCE ≤ recv < UNTIL
        sel = []
        for i, l in enumerate(open(a[0])):
            j = json.loads(l); p = j.get('payload', {})
            if int(a[1]) <= j['recv'] < int(a[2]) and (len(a) < 4 or a[3] in (p.get('repo'), p.get('did'))): sel.append(i)
        print(' '.join(map(str, sel)))
    elif cmd == 'path-select':                # JSONL DID PATH: messages of DID with an op on PATH
        sel = []
        for i, l in enumerate(open(a[0])):
            p = json.loads(l).get('payload', {})
            if (p.get('repo') or p.get('did')) == a[1] and any(op['path'] == a[2] for op in p.get('ops') or []): sel.append(i)
        print(' '.join(map(str, sel)))
    elif cmd == 'path-dids':                  # JSONL PATH: DIDs with an op on PATH, most first
        c = {}
        for l in open(a[0]):
            p = json.loads(l).get('payload', {})
            if any(op['path'] == a[1] for op in p.get('ops') or []):
                d = p.get('repo'); c[d] = c.get(d, 0) + 1
        print(' '.join(d for d, _ in sorted(c.items(), key=lambda x: -x[1])))
    elif cmd == 'top-did':                    # JSONL: the most frequent DID
        c = {}
        for l in open(a[0]):
            p = json.loads(l).get('payload', {}); d = p.get('repo') or p.get('did'); c[d] = c.get(d, 0) + 1
        print(max(c.items(), key=lambda x: x[1])[0])
    elif cmd == 'rec-offset':                 # FILE K: byte offset of record K
        print(ends(records(a[0]))[int(a[1])])
    elif cmd == 'flip':                       # FILE OFFSET: xor one byte with 0x5a
        b = bytearray(open(a[0], 'rb').read()); b[int(a[1])] ^= 0x5a; open(a[0], 'wb').write(b)
    elif cmd == 'poke32':                     # FILE OFFSET VALUE: write a u32 LE
        b = bytearray(open(a[0], 'rb').read()); b[int(a[1]):int(a[1]) + 4] = int(a[2]).to_bytes(4, 'little')
        open(a[0], 'wb').write(b)
    elif cmd == 'resum':                      # FILE: recompute the index checksum with b3sum
        b = bytearray(open(a[0], 'rb').read())
        s = subprocess.run(['b3sum', '--raw', '--no-names'], input=bytes(b[:-36]), capture_output=True, check=True).stdout
        assert len(s) == 32
        b[-36:-4] = s; open(a[0], 'wb').write(b)
    elif cmd == 'root':                       # IDX: the segment's Merkle root (trailer), hex
        b = open(a[0], 'rb').read(); print(b[-100:-68].hex())
    elif cmd == 'roots':                      # DIR: root and previous root of every index
        d = os.path.join(a[0], 'seg')
        for f in sorted(os.listdir(d)):
            if f.endswith('.idx'): b = open(os.path.join(d, f), 'rb').read(); print(f, b[-100:-68].hex(), b[-68:-36].hex())
    elif cmd == 'proof-edit':                 # PROOF FIELD: flip one hex digit of path[0] or leaf
        p = json.load(open(a[0]))
        v = p['path'][0] if a[1] == 'path' else p[a[1]]
        v = ('0' if v[0] != '0' else '1') + v[1:]
        if a[1] == 'path': p['path'][0] = v
        else: p[a[1]] = v
        json.dump(p, sys.stdout)
    elif cmd == 'producer':
        producer(a[0], a[1], int(a[2]), int(a[3]), float(a[4]), int(a[5]) if len(a) > 5 else -1)
    elif cmd == 'killer':
        killer(int(a[0]), a[1], a[2], a[3], a[4])
main()
PY
py() { python3 "$h" "$@"; }

# ---- conventions (docs/design.md §6) ------------------------------------------------------------------

for tool in "$pack" "$ccat" "$tomb"; do
    name=$(basename "$tool")
    run "$tool" --help
    expect "$name --help exits 0" "$rc" 0
    expect_match "$name --help prints usage on stdout" "$(head -3 "$tmp/out")" "Usage: $name"
    expect "$name --help writes nothing on stderr" "$(size "$tmp/err")" 0
    run "$tool" --version
    expect_match "$name --version" "$rc $(cat "$tmp/out")" "^0 $name [0-9]+\.[0-9]+"
    run "$tool" --no-such-flag
    expect "$name bad flag: exit 2, one line on stderr, nothing on stdout" "$rc $(lines "$tmp/err") $(size "$tmp/out")" "2 1 0"
    expect_match "$name bad flag: diagnostic format" "$(cat "$tmp/err")" "^$name: .*no-such-flag"
done
run "$pack" /dev/null
expect "cvl-pack without -o: exit 2, one line" "$rc $(lines "$tmp/err")" "2 1"
run "$ccat"
expect "cvl-cat without DIR: exit 2, one line" "$rc $(lines "$tmp/err")" "2 1"
run "$ccat" "$tmp/no-such-archive"
expect "cvl-cat of a missing directory: exit 2" "$rc" 2
expect_match "cvl-cat of a missing directory: names it" "$(cat "$tmp/err")" "^cvl-cat: $tmp/no-such-archive/cvl.json: No such file or directory"
run "$tomb"
expect "tomb-set without DIR: exit 2" "$rc" 2

# ---- test traffic --------------------------------------------------------------------------------

T=$tmp/T.frames
"$sim" gen -q --no-corpus --accounts 200 --events 3000 --seed 4 --did-docs "$tmp/D.json" >"$T"
"$fcat" -q --to json "$T" >"$tmp/T.jsonl"
expect "mesh-sim: 3000 frames" "$(py count "$T") $(lines "$tmp/T.jsonl")" "3000 3000"
N=3000

# ---- 1. round trips ------------------------------------------------------------------------------

A=$tmp/A
run "$pack" -o "$A" --segment-messages 700 --shards 4 --retrain 2 "$T"
expect "pack: exit 0" "$rc" 0
expect_match "pack: summary (5 segments, 3 dictionaries)" "$(cat "$tmp/err")" \
    "^cvl-pack: 3,000 frames appended \(ordinals 0 to 2,999\), 5 segments sealed, 3 dictionaries trained; $(commas "$(size "$T")") bytes in, [0-9,]+ bytes out \(ratio [0-9.]+\)$"
expect "pack: layout (5 indexes, 4 shards × 5 data files, 3 dictionaries)" \
    "$(nfiles "$A"/seg/*.idx) $(nfiles "$A"/shard/*/*.dat) $(nfiles "$A"/dict/*.zdict)" "5 20 3"
run "$ccat" "$A"
expect "cvl-cat: exit 0" "$rc" 0
same "round trip: cvl-cat gives the packed frames byte for byte" "$tmp/out" "$T"
expect "cvl-cat: summary" "$(cat "$tmp/err")" "cvl-cat: 3,000 frames written ($(commas "$(size "$T")") bytes)"
run "$ccat" "$A" --check
expect "--check of a good archive: exit 0" "$rc" 0
expect "--check summary" "$(cat "$tmp/err")" "cvl-cat: $A: 5 of 5 segments verified (index, clusters, Merkle roots, chain)"
run "$ccat" "$A" --stats
expect "--stats: exit 0, header + 5 segments + total" "$rc $(lines "$tmp/out")" "0 7"
expect_match "--stats: total line" "$(tail -1 "$tmp/out")" "^ +total +3000 "
expect_match "--stats: segment 4 holds 200 from 2800 with dictionary 3, then its anchor" "$(sed -n 6p "$tmp/out")" "^ +4 +2800 +200 .* 3 +0  [0-9a-f]{64}$"

# Appending in several runs equals packing `cat A B`.
py slice "$T" 0 1234 >"$tmp/T1.frames"
py slice "$T" 1234 $N >"$tmp/T2.frames"
"$pack" -q -o "$tmp/A2" --segment-messages 700 --shards 4 --retrain 2 "$tmp/T1.frames"
"$pack" -q -o "$tmp/A2" "$tmp/T2.frames"
run "$pack" -o "$tmp/A2" </dev/null
expect "append run with empty input: exit 0, nothing appended" "$rc $(grep -c '^cvl-pack: 0 frames appended (last ordinal 2,999), 0 segments sealed, 0 dictionaries trained; 0 bytes in' "$tmp/err")" "0 1"
"$ccat" -q "$tmp/A2" >"$tmp/A2.out"
same "two pack runs (A then B) give cat A B" "$tmp/A2.out" "$T"
cat "$tmp/T1.frames" "$tmp/T2.frames" | "$pack" -q -o "$tmp/A3" --segment-messages 700 --shards 4 --retrain 2
"$ccat" -q "$tmp/A3" >"$tmp/A3.out"
same "… and the same frames as packing cat A B from stdin" "$tmp/A3.out" "$tmp/A2.out"
"$pack" -q -o "$tmp/A4" --segment-messages 700 --shards 3 "$tmp/T1.frames" - "$tmp/T2.frames" </dev/null
"$ccat" -q "$tmp/A4" >"$tmp/A4.out"
same "pack of several FILE arguments (and an empty stdin) in one run" "$tmp/A4.out" "$T"
run "$ccat" -q "$tmp/A2" --check
expect "appended archive passes --check" "$rc" 0
expect_match "appended archive: segments 700, 534 then 700, 700, 366" \
    "$("$ccat" "$tmp/A2" --stats | awk 'NR>1 && $1!="total" {printf "%s ", $3}')" "^700 534 700 700 366 $"
rm -rf "$tmp/A3" "$tmp/A4" "$tmp/A3.out" "$tmp/A4.out"

# A framing error in the input: the frames before it are kept, exit 1.
head -c $(($(size "$tmp/T1.frames") + 100)) "$T" >"$tmp/cut.frames"
run "$pack" -o "$tmp/A5" --segment-messages 700 "$tmp/cut.frames"
expect "truncated input: cvl-pack exits 1" "$rc" 1
expect_match "truncated input: diagnostic names file and offset" "$(head -1 "$tmp/err")" \
    "^cvl-pack: $tmp/cut.frames:$(size "$tmp/T1.frames"): truncated"
"$ccat" -q "$tmp/A5" >"$tmp/A5.out"
same "truncated input: the 1234 complete frames are archived" "$tmp/A5.out" "$tmp/T1.frames"
rm -rf "$tmp/A5" "$tmp/A5.out" "$tmp/cut.frames"

# The real relay capture.
capture=$corpus/relay-capture/frames.u32le.zst
if [ -f "$capture" ]; then
    "$fcat" -q --from raw-u32le --src bsky.network "$capture" >"$tmp/cap.frames"
    run "$pack" -o "$tmp/C" --segment-messages 40 --shards 4 --retrain 2 "$tmp/cap.frames"
    expect "capture: pack exit 0, 4 segments" "$rc $(nfiles "$tmp"/C/seg/*.idx)" "0 4"
    "$ccat" -q "$tmp/C" >"$tmp/C.out"
    same "capture: cvl-cat gives the relay frames byte for byte" "$tmp/C.out" "$tmp/cap.frames"
    run "$ccat" -q "$tmp/C" --check
    expect "capture: --check exit 0" "$rc" 0
    run "$ccat" -q "$tmp/C" --first-ordinal 37 --last-ordinal 82
    py slice "$tmp/cap.frames" 37 83 >"$tmp/exp"
    same "capture: --first-ordinal 37 --last-ordinal 82" "$tmp/out" "$tmp/exp"
    rm -rf "$tmp/C" "$tmp/C.out"
else
    echo "SKIP: corpus absent ($corpus): relay capture round trip"
fi

# Ordinal ranges.
range_check() {  # NAME EXPECTED-FROM EXPECTED-TO CVL-CAT-ARGS...
    local name=$1 f=$2 t=$3
    shift 3
    run "$ccat" -q "$A" "$@"
    py slice "$T" "$f" "$t" >"$tmp/exp"
    if [ "$rc" = 0 ] && cmp -s "$tmp/out" "$tmp/exp"; then pass "$name"
    else fail "$name" "exit $rc, $(py count "$tmp/out") frames, expected $((t - f))" "$(head -2 "$tmp/err")"; fi
}
range_check "--first-ordinal 650 --last-ordinal 1449 (three segments)" 650 1450 --first-ordinal 650 --last-ordinal 1449
range_check "--first-ordinal 2990 (to the end)" 2990 $N --first-ordinal 2990
range_check "--last-ordinal 0" 0 1 --last-ordinal 0
range_check "--first-ordinal 700 --last-ordinal 1399 (exactly segment 1)" 700 1400 --first-ordinal 700 --last-ordinal 1399
range_check "--first-ordinal 5 --last-ordinal 5 is one frame" 5 6 --first-ordinal 5 --last-ordinal 5
range_check "--first-ordinal 3000 is empty" 0 0 --first-ordinal 3000
range_check "--last-ordinal 18446744073709551615 (no overflow)" 0 $N --last-ordinal 18446744073709551615

# Random access: 200 random ordinals.
ords=$(py random 17 $N 200)
args=()
for o in $ords; do args+=(--ordinal "$o"); done
run "$ccat" -q "$A" "${args[@]}"
# shellcheck disable=SC2086
py pick "$T" $ords >"$tmp/exp"
expect "--ordinal ×200: exit 0, $(py count "$tmp/exp") distinct frames" "$rc $(py count "$tmp/out")" "0 $(py count "$tmp/exp")"
same "--ordinal ×200: the input records, in ordinal order" "$tmp/out" "$tmp/exp"
run "$ccat" -q "$A" "${args[@]}" --first-ordinal 1000 --last-ordinal 1999
# shellcheck disable=SC2046,SC2086
py pick "$T" $(for o in $ords; do [ "$o" -ge 1000 ] && [ "$o" -lt 2000 ] && echo "$o"; done) >"$tmp/exp"
same "--ordinal ×200 with --first-ordinal 1000 --last-ordinal 1999" "$tmp/out" "$tmp/exp"
run "$ccat" -q "$A" --ordinal 2999 --ordinal 0 --ordinal 99999
py pick "$T" 0 2999 >"$tmp/exp"
same "--ordinal 2999 0 99999: the two that exist" "$tmp/out" "$tmp/exp"

# --did / --collection / --since / --until against frame-cat on the same input.
D=$(py top-did "$tmp/T.jsonl")
D2=$(grep '"#identity"' "$tmp/T.jsonl" | head -1 | sed 's/.*"did":"\([^"]*\)".*/\1/')
for did in "$D" "$D2"; do
    "$fcat" -q --did "$did" "$T" >"$tmp/exp"
    run "$ccat" -q "$A" --did "$did"
    expect "--did $did: exit 0, $(py count "$tmp/exp") frames" "$rc $(py count "$tmp/out")" "0 $(py count "$tmp/exp")"
    same "--did $did equals frame-cat --did" "$tmp/out" "$tmp/exp"
done
for coll in app.bsky.feed.like app.bsky.actor.profile app.bsky.graph.follow com.example.none; do
    "$fcat" -q --collection "$coll" "$T" >"$tmp/exp"
    run "$ccat" -q "$A" --collection "$coll"
    same "--collection $coll equals frame-cat --collection ($(py count "$tmp/exp") frames)" "$tmp/out" "$tmp/exp"
done
"$fcat" -q --did "$D" --collection app.bsky.feed.post "$T" >"$tmp/exp"
run "$ccat" -q "$A" --did "$D" --collection app.bsky.feed.post
same "--did with --collection equals frame-cat (both must match)" "$tmp/out" "$tmp/exp"
# Bounds equal to the recv of existing frames (recv is not monotonic here): since inclusive,
# until exclusive.
since=$(sed -n 1001p "$tmp/T.jsonl" | sed 's/.*"recv":\([0-9]*\).*/\1/')
until=$(sed -n 2001p "$tmp/T.jsonl" | sed 's/.*"recv":\([0-9]*\).*/\1/')
# shellcheck disable=SC2046
py pick "$T" $(py recv-select "$tmp/T.jsonl" "$since" "$until") >"$tmp/exp"
run "$ccat" -q "$A" --since "$since" --until "$until"
expect "--since/--until µs: exit 0, $(py count "$tmp/exp") frames" "$rc $(py count "$tmp/out")" "0 $(py count "$tmp/exp")"
same "--since/--until µs: the frames with since ≤ recv < until (json + python)" "$tmp/out" "$tmp/exp"
# shellcheck disable=SC2046
py pick "$T" $(py recv-select "$tmp/T.jsonl" 1783173602000000 1783173604000000) >"$tmp/exp"
run "$ccat" -q "$A" --since 2026-07-04T14:00:02Z --until 2026-07-04T14:00:04Z
same "--since/--until RFC 3339 ($(py count "$tmp/exp") frames)" "$tmp/out" "$tmp/exp"
# shellcheck disable=SC2046
py pick "$T" $(py recv-select "$tmp/T.jsonl" "$since" 99999999999999999) >"$tmp/exp"
run "$ccat" -q "$A" --since "$since"
same "--since alone" "$tmp/out" "$tmp/exp"
# shellcheck disable=SC2046
py pick "$T" $(py recv-select "$tmp/T.jsonl" 0 "$since" "$D") >"$tmp/exp"
run "$ccat" -q "$A" --until "$since" --did "$D"
same "--until with --did" "$tmp/out" "$tmp/exp"
run "$ccat" "$A" --since yesterday
expect "--since yesterday: exit 2, one line" "$rc $(lines "$tmp/err")" "2 1"

# EPIPE: a closed stdout ends cvl-cat quietly with 0.
"$ccat" "$A" 2>"$tmp/err" | head -c 100 >/dev/null
st=("${PIPESTATUS[@]}")
expect "EPIPE: cvl-cat | head -c 100 exits 0" "${st[0]}" 0
expect "T6 EPIPE: no error and no summary (quietly, docs/design.md §6)" "$(size "$tmp/err")" 0

# ---- 2. proofs -----------------------------------------------------------------------------------

root1=$(py root "$A/seg/00000001.idx")
root2=$(py root "$A/seg/00000002.idx")
run "$ccat" "$A" --proof 1234
cp "$tmp/out" "$tmp/p1234.json"
expect "--proof 1234: exit 0" "$rc" 0
expect_match "--proof 1234: segment 1, index 534 of 700, the root in the index file" "$(cat "$tmp/p1234.json")" \
    "\"index\":534.*\"ordinal\":1234.*\"root\":\"$root1\".*\"segment\":1.*\"size\":700"
run "$ccat" --verify-proof "$tmp/p1234.json"
expect "--verify-proof with neither archive nor --root: not checked, exit 2 (D14)" "$rc $(grep -c 'not checked' "$tmp/err")" "2 1"
run "$ccat" "$A" --verify-proof "$tmp/p1234.json"
expect "--verify-proof against the archive: exit 0" "$rc" 0
expect "--verify-proof: message" "$(cat "$tmp/out")" "valid: ordinal 1234 is leaf 534 of 700 under root $root1"
run "$ccat" "$A" --verify-proof - <"$tmp/p1234.json"
expect "--verify-proof - (stdin): exit 0" "$rc" 0
anchor1=$("$ccat" "$A" --stats | awk '$1 == "1" {print $NF}')
run "$ccat" --verify-proof "$tmp/p1234.json" --root "$anchor1"
expect "--verify-proof --root <segment 1's anchor from --stats>: exit 0" "$rc" 0
run "$ccat" --verify-proof "$tmp/p1234.json" --root "$root1"
expect "--verify-proof --root <segment 1's bare Merkle root>: refused, exit 2 (D14)" "$rc" 2
run "$ccat" --verify-proof "$tmp/p1234.json" --root "$root2"
expect "--verify-proof --root <segment 2's root>: exit 1" "$rc" 1
expect_match "… INVALID on stderr" "$(cat "$tmp/err")" "^cvl-cat: $tmp/p1234.json: INVALID"
py proof-edit "$tmp/p1234.json" path >"$tmp/pbad.json"
run "$ccat" --verify-proof "$tmp/pbad.json"
expect "proof with a flipped path digit: exit 1" "$rc" 1
expect_match "… INVALID" "$(cat "$tmp/err")" "^cvl-cat: $tmp/pbad.json: INVALID"
py proof-edit "$tmp/p1234.json" leaf >"$tmp/pbad.json"
run "$ccat" "$A" --verify-proof "$tmp/pbad.json"
expect "proof with a flipped leaf digit: exit 1" "$rc" 1
py proof-edit "$tmp/p1234.json" root >"$tmp/pbad.json"
run "$ccat" --verify-proof "$tmp/pbad.json"
expect "proof with a changed root: exit 1" "$rc" 1
"$ccat" "$tmp/A2" --proof 1234 >"$tmp/pother.json"
run "$ccat" --verify-proof "$tmp/pother.json" --root "$("$ccat" "$tmp/A2" --stats | awk '$1 ~ /^[0-9]+$/ && $2 <= 1234 && 1234 < $2 + $3 {print $NF}')"
expect "proof from another archive (other segment shape) is valid against its own anchor" "$rc" 0
run "$ccat" "$A" --verify-proof "$tmp/pother.json"
expect "… but not against this archive: exit 1" "$rc" 1
echo 'not json' >"$tmp/pbad.json"
run "$ccat" --verify-proof "$tmp/pbad.json"
expect "--verify-proof of a non-proof: exit 1" "$rc" 1
run "$ccat" --verify-proof "$tmp/p1234.json" --root abc
expect "--root abc: exit 2" "$rc" 2
run "$ccat" "$A" --proof 3000
expect "--proof beyond the archive: exit 1" "$rc" 1
for o in 0 699 700 2999; do
    "$ccat" "$A" --proof $o >"$tmp/p.json" 2>/dev/null
    run "$ccat" "$A" --verify-proof "$tmp/p.json"
    expect "--proof $o verifies" "$rc" 0
done

# ---- 3. corruption -------------------------------------------------------------------------------

# corrupt NAME BAD-SEGMENTS REGEX SETUP...: SETUP runs on a fresh copy $X of the archive. Then
# --check must exit 1 with a diagnostic matching REGEX, report only BAD-SEGMENTS (a
# space-separated list of segment numbers), and the other segments must stay readable.
corrupt() {
    local name=$1 bad=$2 regex=$3
    shift 3
    X=$tmp/X
    rm -rf "$X"
    cp -r "$A" "$X"
    "$@"
    run "$ccat" "$X" --check
    local check_err
    check_err=$(cat "$tmp/err")
    expect "$name: --check exits 1" "$rc" 1
    expect_match "$name: diagnostic names the file (and offset)" "$check_err" "$regex"
    # Which segments does --check complain about?
    local reported
    reported=$(grep -v ' segments verified' "$tmp/err" | grep -oE '(seg/|shard/[0-9]+/)[0-9]+' | sed -E 's/.*\/0*([0-9]+)$/\1/' | sort -un | tr '\n' ' ')
    local s extra=""
    for s in $reported; do case " $bad " in *" $s "*) ;; *) extra="$extra $s" ;; esac; done
    # (Archive::Impl::load_all: a segment that cannot be loaded must not make the next one
    # fail the chain checks; Archive::check_segment compares with the right predecessor.)
    if [ -z "$extra" ]; then pass "$name: --check reports only segment(s) $bad"
    else fail "$name: --check also reports intact segment(s)$extra" "$(printf '%s\n' "$check_err" | head -4)"; fi
    local nbad summary
    nbad=$(echo "$bad" | wc -w)
    summary=$(printf '%s\n' "$check_err" | sed -n 's/.*: \([0-9]*\) of \([0-9]*\) segments verified.*/\1 \2/p')
    # (cvl-cat's --check counts each segment file once, loaded or not.)
    expect "$name: --check summary says $((5 - nbad)) of 5" "$summary" "$((5 - nbad)) 5"
    # Every other segment stays readable.
    for s in 0 1 2 3 4; do
        case " $bad " in *" $s "*) continue ;; esac
        local f=$((s * 700)) t=$((s == 4 ? 3000 : s * 700 + 700))
        "$ccat" -q "$X" --first-ordinal $f --last-ordinal $((t - 1)) >"$tmp/out" 2>"$tmp/err"
        py slice "$T" $f $t >"$tmp/exp"
        if ! cmp -s "$tmp/out" "$tmp/exp"; then fail "$name: segment $s still readable" "$(head -2 "$tmp/err")"; return; fi
    done
    pass "$name: the other segments are still readable byte for byte"
}
idx1=$tmp/X/seg/00000001.idx
idx1_size=$(size "$A/seg/00000001.idx")

corrupt "truncated index" 1 "^cvl-cat: $idx1:$((idx1_size - 10)): section sizes .*truncated or corrupt" \
    truncate -s -10 "$idx1"
corrupt "flipped byte in an index" 1 "^cvl-cat: $idx1:$((idx1_size - 36)): index checksum mismatch" \
    py flip "$idx1" 300
corrupt "index version 2 (checksum not recomputed: the version error is reported, it is checked first)" 1 \
    "^cvl-cat: $idx1:8: unsupported index version 2$" py poke32 "$idx1" 8 2
if command -v b3sum >/dev/null; then
    resum_v2() { py poke32 "$1" 8 2 && py resum "$1"; }
    corrupt "index version 2 with a checksum recomputed by b3sum" 1 "^cvl-cat: $idx1:8: unsupported index version 2$" \
        resum_v2 "$idx1"
    resum_chain() { py flip "$1" $(($(size "$1") - 68)) && py resum "$1"; }
    corrupt "index with a wrong previous root (checksum recomputed)" 2 \
        "^cvl-cat: $tmp/X/seg/00000002.idx: chain broken" resum_chain "$tmp/X/seg/00000002.idx"
else
    echo "SKIP: b3sum absent: index with a recomputed checksum"
fi
# The largest data file of segment 1, one byte flipped in its middle.
big_dat=
for f in "$A"/shard/*/00000001-0.dat; do
    if [ -z "$big_dat" ] || [ "$(size "$f")" -gt "$(size "$A/$big_dat")" ]; then big_dat=${f#"$A"/}; fi
done
corrupt "flipped byte in a data file" 1 "^cvl-cat: $tmp/X/$big_dat:[0-9]+: (corrupt cluster|.*Merkle root mismatch)" \
    py flip "$tmp/X/$big_dat" $(($(size "$A/$big_dat") / 2))
run "$ccat" "$X" --first-ordinal 700 --last-ordinal 1399
expect "flipped data byte: reading that segment exits 1" "$rc" 1
expect_match "flipped data byte: the read error names the file and offset" "$(cat "$tmp/err")" "^cvl-cat: $tmp/X/$big_dat:[0-9]+: corrupt cluster"
dat1=shard/00/00000001-0.dat
corrupt "truncated data file" 1 "^cvl-cat: $tmp/X/$dat1:$(($(size "$A/$dat1") - 100)): data file missing or shorter than the index says" \
    truncate -s -100 "$tmp/X/$dat1"
corrupt "missing dictionary" "2 3" "^cvl-cat: $tmp/X/dict/00000002.zdict: missing dictionary needed by $tmp/X/seg/00000002.idx" \
    rm "$tmp/X/dict/00000002.zdict"
rm -rf "$X"

# ---- 4. tombstones and compaction -----------------------------------------------------------------

E=$tmp/E
cp -r "$A" "$E"
run "$tomb" "$E" 5 10 1500
expect "tomb-set ORD…: exit 0, summary" "$rc $(cat "$tmp/err")" "0 tomb-set: $E: 3 ordinals tombstoned (3 changed)"
run "$tomb" "$E" <<<$'20\n21\n\n22'
expect "tomb-set from stdin: exit 0, summary" "$rc $(cat "$tmp/err")" "0 tomb-set: $E: 3 ordinals tombstoned (3 changed)"
run "$tomb" "$E" 5
expect "tomb-set of a set bit: 0 changed" "$(cat "$tmp/err")" "tomb-set: $E: 1 ordinal tombstoned (0 changed)"
run "$tomb" "$E" --clear 10
expect "tomb-set --clear: summary" "$rc $(cat "$tmp/err")" "0 tomb-set: $E: 1 ordinal cleared (1 changed)"
run "$tomb" "$E" --test 5 6 10 20 21 22 1500
expect "tomb-set --test: one line per ordinal" "$(tr '\n' ',' <"$tmp/out")" "5 deleted,6 present,10 present,20 deleted,21 deleted,22 deleted,1500 deleted,"
expect "tomb-set --test: exit 0, no summary" "$rc $(size "$tmp/err")" "0 0"
printf '7\n' | "$tomb" -q "$E" --test >"$tmp/out"
expect "tomb-set --test from stdin" "$(cat "$tmp/out")" "7 present"
run "$tomb" "$E" 3000
expect "tomb-set beyond the archive: exit 1" "$rc" 1
expect_match "… names the ordinal" "$(head -1 "$tmp/err")" "^tomb-set: ordinal 3000 is beyond the archive \(3000 messages\)"
run "$tomb" "$E" 12x
expect "tomb-set 12x: exit 2" "$rc" 2
run "$tomb" "$E" <<<$'1\nabc'
expect "tomb-set bad stdin line: exit 1, names stdin:2" "$rc $(grep -c '^tomb-set: stdin:2: ' "$tmp/err")" "1 1"
run "$tomb" "$E" --clear --test 1
expect "--clear with --test: exit 2" "$rc" 2
run "$tomb" "$E" --did "$D"
expect "--did without --path: exit 2" "$rc" 2
tombed="5 20 21 22 1500"
# shellcheck disable=SC2086
py except "$T" $tombed >"$tmp/exp"
run "$ccat" "$E"
same "cvl-cat hides tombstoned messages" "$tmp/out" "$tmp/exp"
expect_match "… and says how many" "$(cat "$tmp/err")" "^cvl-cat: 2,995 frames written \(.*\), 5 hidden by tombstones$"
run "$ccat" -q "$E" --include-deleted
same "--include-deleted shows them" "$tmp/out" "$T"
run "$ccat" -q "$E" --ordinal 5 --ordinal 6
py pick "$T" 6 >"$tmp/exp"
same "--ordinal of a tombstoned message gives nothing" "$tmp/out" "$tmp/exp"
run "$ccat" -q "$E" --ordinal 5 --include-deleted
py pick "$T" 5 >"$tmp/exp"
same "--ordinal … --include-deleted gives it" "$tmp/out" "$tmp/exp"
run "$ccat" -q "$E" --first-ordinal 1400 --last-ordinal 2099
# shellcheck disable=SC2046
py pick "$T" $(seq 1400 1499) $(seq 1501 2099) >"$tmp/exp"
same "ranges hide tombstones too" "$tmp/out" "$tmp/exp"

# tomb-set --did DID --path collection/rkey: exactly that DID's messages with an op on that path.
P=app.bsky.actor.profile/self
read -r -a pdids <<<"$(py path-dids "$tmp/T.jsonl" "$P")"
PD=${pdids[0]}
PD2=${pdids[1]:-}
expect_match "path $P is touched by several DIDs (so the DID filter matters)" "${#pdids[@]}" "^([2-9]|[1-9][0-9]+)$"
want=$(py path-select "$tmp/T.jsonl" "$PD" "$P")
E2=$tmp/E2
cp -r "$A" "$E2"
run "$tomb" "$E2" --test --did "$PD" --path "$P"
expect "tomb-set --test --did --path lists exactly the DID's messages touching the path (json + python)" \
    "$(cut -d' ' -f1 "$tmp/out" | tr '\n' ' ')" "$want "
run "$tomb" "$E2" --did "$PD" --path "$P"
nwant=$(echo "$want" | wc -w)
expect "tomb-set --did --path: summary" "$rc $(cat "$tmp/err")" "0 tomb-set: $E2: $nwant ordinals tombstoned ($nwant changed)"
run "$ccat" "$E2"
# shellcheck disable=SC2086
py except "$T" $want >"$tmp/exp"
same "… and cvl-cat hides exactly those" "$tmp/out" "$tmp/exp"
if [ -n "$PD2" ]; then
    want2=$(py path-select "$tmp/T.jsonl" "$PD2" "$P")
    # shellcheck disable=SC2086
    run "$tomb" "$E2" --test $want2
    expect "another DID's messages on the same path are untouched" "$(grep -c ' present$' "$tmp/out")" "$(echo "$want2" | wc -w)"
fi
run "$tomb" "$E2" --test --did "$PD" --path app.bsky.actor.profile/nope
expect "T3 --did --path with no match: exit 1, nothing on stdout" "$rc $(size "$tmp/out")" "1 0"
expect "T3 … and says so" "$(cat "$tmp/err")" "tomb-set: $E2: no message of $PD touches app.bsky.actor.profile/nope"
run "$tomb" "$E2" --did "$PD" --path app.bsky.actor.profile/nope
expect "T3 setting with no match: exit 1, no summary" "$rc $(lines "$tmp/err")" "1 1"

# Compaction: purge, roots and chain unchanged, proofs made before still verify.
for o in 5 6 1500; do "$ccat" "$E" --proof $o >"$tmp/pre$o.json"; done
py roots "$E" >"$tmp/roots.before"
run "$pack" -o "$E" --compact
expect "--compact: exit 0, summary" "$rc $(cat "$tmp/err")" "0 cvl-pack: $E: compacted: 5 tombstoned messages purged"
py roots "$E" >"$tmp/roots.after"
same "--compact keeps every root and previous root" "$tmp/roots.after" "$tmp/roots.before"
run "$ccat" "$E" --check
expect "--check after compaction: exit 0, 5 of 5" "$rc $(cat "$tmp/err")" "0 cvl-cat: $E: 5 of 5 segments verified (index, clusters, Merkle roots, chain)"
expect "--stats shows the purged counts (4, 0, 1, 0, 0)" "$("$ccat" "$E" --stats | awk 'NR>1 && $1!="total" {printf "%s ", $(NF-1)}')" "4 0 1 0 0 "
for o in 5 6 1500; do
    run "$ccat" "$E" --verify-proof "$tmp/pre$o.json"
    expect "proof of $o made before compaction verifies against the compacted archive" "$rc" 0
    "$ccat" "$E" --proof $o >"$tmp/post.json"
    same "proof of $o regenerated after compaction is identical" "$tmp/post.json" "$tmp/pre$o.json"
done
run "$ccat" -q "$E" --include-deleted
# shellcheck disable=SC2086
py except "$T" $tombed >"$tmp/exp"
same "purged content is gone even with --include-deleted" "$tmp/out" "$tmp/exp"
run "$tomb" "$E" --clear 5 6
expect "T3 --clear of a purged ordinal: refused, exit 1 (the other one is cleared)" "$rc" 1
expect "T3 … names the ordinal and the reason, summary counts the refusal" "$(cat "$tmp/err")" \
    "tomb-set: ordinal 5 was purged by compaction: its content is gone, the tombstone stays
tomb-set: $E: 1 ordinal cleared (0 changed); 1 refused, see above"
run "$tomb" "$E" --test 5 6 1500
expect "T3 --test after compaction says purged (not present)" "$rc $(tr '\n' ',' <"$tmp/out")" "0 5 purged,6 present,1500 purged,"
run "$ccat" -q "$E" --ordinal 5 --include-deleted
expect "a purged message stays gone" "$rc $(size "$tmp/out")" "0 0"
run "$pack" -o "$E" --compact
expect "--compact again: nothing to purge" "$(cat "$tmp/err")" "cvl-pack: $E: compacted: 0 tombstoned messages purged"
expect "old-generation data files are deleted" "$(nfiles "$E"/shard/*/00000000-0.dat) $(nfiles "$E"/shard/*/00000000-1.dat)" "0 4"
"$pack" -q -o "$E" "$tmp/T1.frames"
run "$ccat" -q "$E" --check
expect "appending after compaction: --check passes" "$rc" 0
run "$ccat" -q "$E" --first-ordinal 3000
same "appending after compaction: new frames readable" "$tmp/out" "$tmp/T1.frames"
# After compaction, --did/--path must still only name the given DID's messages.
"$pack" -q -o "$E2" --compact
if [ -n "$PD2" ]; then
    run "$tomb" "$E2" --test --did "$PD2" --path "$P"
    got=$(cut -d' ' -f1 "$tmp/out" | tr '\n' ' ')
    # (tomb-set: a purged candidate from the op table is kept only if it is the DID's.)
    expect "after compaction, tomb-set --did $PD2 --path lists only its own messages" "$got" "$want2 "
fi
rm -rf "$E" "$E2"

# ---- 5. durability: kill -9 ------------------------------------------------------------------------

BIG=$tmp/big.frames
"$sim" gen -q --no-corpus --accounts 500 --events 20000 --seed 7 >"$BIG"
NB=$(py count "$BIG")
expect "durability input: 20000 frames" "$NB" 20000

# kill_run NAME SEGMENT-MESSAGES PIPE-BYTES CHUNK PAUSE HOLD KILLER-COND SEED EXACT: streams
# $input through a pipe of PIPE-BYTES into cvl-pack (CHUNK records, then PAUSE s; stopping
# after HOLD records if HOLD ≥ 0), kills it with SIGKILL when KILLER-COND holds, restarts cvl-pack on
# empty input (journal recovery), checks that the archive is exactly a prefix of the input and
# at least as long as what cvl-pack must have read (EXACT: exactly that many), then feeds the
# rest and checks the whole input and --check.
kill_run() {
    local name=$1 segmsg=$2 pipesz=$3 chunk=$4 pause=$5 hold=$6 cond=$7 seed=$8 exact=$9
    local K=$tmp/K fifo=$tmp/fifo stf=$tmp/st
    rm -rf "$K" "$fifo" "$stf" "$stf.release"
    mkfifo "$fifo"
    "$pack" -q -o "$K" --segment-messages "$segmsg" --shards 4 --retrain 2 <"$fifo" 2>"$tmp/pack.err" &
    local pp=$!
    bg+=("$pp")
    py producer "$input" "$stf" "$pipesz" "$chunk" "$pause" "$hold" >"$fifo" &
    local pr=$!
    bg+=("$pr")
    local seen
    seen=$(py killer "$pp" "$K" "$stf" "$cond" "$seed")
    { wait "$pp"; } 2>/dev/null
    local prc=$?
    touch "$stf.release"
    wait "$pr"
    local written cap state
    read -r written cap state <"$stf"
    expect "$name: cvl-pack killed by SIGKILL (at $seen, producer $state after $written bytes)" "$prc" 137
    local sealed
    sealed=$(nfiles "$K"/seg/*.idx)
    run "$pack" -o "$K" </dev/null
    local recovered
    recovered=$(sed -n 's/^cvl-pack: .*: \([0-9,]*\) frames recovered from the journal$/\1/p' "$tmp/err")
    expect "$name: restart on empty input recovers ${recovered:-0} frames from the journal and seals: exit 0" "$rc" 0
    "$ccat" -q "$K" >"$tmp/k.out"
    local diag k bound missing=""
    diag=$(py diagnose "$tmp/k.out" "$input")
    bound=$(py bound "$input" "$written" "$cap")
    if [ "$exact" != - ]; then bound=$exact; fi
    case $diag in
    prefix*)
        k=${diag#prefix }
        pass "$name: archive is exactly the first $k input records (no loss inside, no duplicates; $sealed segments were sealed at the kill)"
        ;;
    gaps*)
        read -r _ k missing <<<"$diag"
        # (Writer::append: a background seal finished while this batch was journaled must
        # carry the batch into the new journal, Impl::finish_seal's `carry`.)
        fail "$name: frames read before the kill are missing from the recovered archive: ordinal(s) $missing of the first $k"
        ;;
    *)
        fail "$name: archive is a prefix of the input" "$diag"
        k=$(py count "$tmp/k.out")
        ;;
    esac
    if [ "$exact" != - ]; then expect "$name: all $exact records read before the kill are accounted for" "$k" "$exact"
    elif [ "$k" -ge "$bound" ]; then pass "$name: nothing read was lost from the end ($k ≥ $bound records surely read)"
    else fail "$name: nothing read was lost" "$k records archived, cvl-pack had read at least $bound"; fi
    py slice "$input" "$k" 999999999 | "$pack" -q -o "$K"
    "$ccat" -q "$K" >"$tmp/k.out"
    if [ -z "$missing" ]; then
        same "$name: after feeding the rest, the archive is the whole input" "$tmp/k.out" "$input"
    else
        # shellcheck disable=SC2086
        py except "$input" $missing >"$tmp/exp"
        same "$name: after feeding the rest, the archive is the whole input but for the lost ordinal(s) above" "$tmp/k.out" "$tmp/exp"
    fi
    run "$ccat" -q "$K" --check
    expect "$name: --check passes" "$rc" 0
    rm -rf "$K" "$fifo" "$stf" "$tmp/k.out"
}

# Three kills at random moments after the first seal, with different pacings of the input:
# chunks of 20 or 7 records with pauses (the kill mostly lands while cvl-pack waits, mid-
# segment), and unpaced chunks of 1000 (it mostly lands inside a seal, the writer blocked).
input=$BIG
kill_run "kill -9 mid-stream #1" 3000 4096 20 0.01 -1 "after-seal:1.5" 1 -
kill_run "kill -9 mid-stream #2" 3000 4096 7 0.003 -1 "after-seal:1.5" 2 -
kill_run "kill -9 mid-stream #3" 3000 4096 1000 0 -1 "after-seal:1.2" 3 -
# Kills during the seal of a 10,000-message segment: the producer stops after exactly 10,000
# frames (all of which cvl-pack journaled before it began to seal), so all of them must survive.
py slice "$BIG" 0 12000 >"$tmp/in12k.frames"
input=$tmp/in12k.frames
kill_run "kill -9 mid-seal, dictionary trained" 10000 1048576 500 0 10000 "stage:1" 4 10000
kill_run "kill -9 mid-seal, index being written" 10000 1048576 500 0 10000 "stage:3" 5 10000
kill_run "kill -9 mid-seal, index renamed" 10000 1048576 500 0 10000 "stage:4" 6 10000
kill_run "kill -9 at a random moment of the seal" 10000 1048576 500 0 10000 "held:0.8" 7 10000
rm -f "$tmp/in12k.frames"

# SIGTERM while cvl-pack waits for input: it should stop (with its journal synced) promptly.
K=$tmp/K
rm -rf "$K" "$tmp/fifo" "$tmp/st" "$tmp/st.release"
mkfifo "$tmp/fifo"
py slice "$BIG" 0 300 >"$tmp/in300.frames"
"$pack" -o "$K" --segment-messages 100 --shards 2 <"$tmp/fifo" 2>"$tmp/pack.err" &
pp=$!
bg+=("$pp")
py producer "$tmp/in300.frames" "$tmp/st" 4096 50 0 150 >"$tmp/fifo" &
pr=$!
bg+=("$pr")
for _ in $(seq 200); do grep -q held "$tmp/st" 2>/dev/null && break; sleep 0.02; done
sleep 0.2
kill -TERM "$pp"
for _ in $(seq 50); do kill -0 "$pp" 2>/dev/null || break; sleep 0.02; done
# (cli::install_stop_handler: the handler must interrupt a blocked read(2), not restart it.)
if kill -0 "$pp" 2>/dev/null; then
    fail "cvl-pack ignores SIGTERM while blocked reading an idle input (still running 1 s later)"
else
    pass "SIGTERM while waiting for input stops cvl-pack within 1 s"
fi
touch "$tmp/st.release"
wait "$pp"
prc=$?
wait "$pr"
expect "SIGTERM: exit 0, 'interrupted' with the frames kept" "$prc $(grep -c 'interrupted: 150 frames are safe' "$tmp/pack.err")" "0 1"
run "$pack" -o "$K" </dev/null
expect_match "SIGTERM: the next run recovers the unsealed 50 from the journal" "$(head -1 "$tmp/err")" "50 frames recovered from the journal"
"$ccat" -q "$K" >"$tmp/k.out"
py slice "$BIG" 0 150 >"$tmp/exp"
same "SIGTERM: nothing lost" "$tmp/k.out" "$tmp/exp"

# A second writer is refused while one holds the lock.
rm -rf "$K" "$tmp/fifo" "$tmp/st" "$tmp/st.release"
mkfifo "$tmp/fifo"
"$pack" -q -o "$K" <"$tmp/fifo" &
pp=$!
bg+=("$pp")
exec 7>"$tmp/fifo"
for _ in $(seq 100); do [ -f "$K/journal/0000000000000000.frames" ] && break; sleep 0.02; done
sleep 0.1
run "$pack" -o "$K" "$tmp/in300.frames"
expect "second cvl-pack on a locked archive: exit 2" "$rc" 2
expect_match "… names the lock" "$(cat "$tmp/err")" "^cvl-pack: $K: another cvl-pack is writing this archive \\(it holds the lock on the archive directory\\)"
run "$pack" -o "$K" --compact
expect "--compact on a locked archive: exit 2 (as the writer path), naming the lock" "$rc $(head -c 200 "$tmp/err" | grep -c "^cvl-pack: $K: another")" "2 1"
exec 7>&-
wait "$pp"
rm -rf "$K" "$tmp/in300.frames" "$BIG"

# ---- 6. writer defects: journal damage, missing indexes, the lock, cvl.json, temp files ------------

W=$tmp/W
W600=$tmp/w600.frames
py slice "$T" 0 600 >"$W600"
# new_pending DIR: an archive with nothing sealed whose journal holds the 600 frames of $W600
# (what a writer killed before its first seal leaves).
new_pending() {
    rm -rf "$1"
    "$pack" -q -o "$1" --shards 2 /dev/null
    cp "$W600" "$1/journal/0000000000000000.frames"
}
# D1: one damaged record in the middle of the journal (its envelope, then its length prefix).
for where in envelope length; do
    new_pending "$W"
    roff=$(py rec-offset "$W600" 300)
    off=$roff
    if [ $where = envelope ]; then off=$((off + 3)); fi
    py flip "$W/journal/0000000000000000.frames" "$off"
    run "$pack" -o "$W" </dev/null
    "$ccat" -q "$W" >"$tmp/w.out"
    py except "$W600" 300 >"$tmp/exp"
    if cmp -s "$tmp/w.out" "$tmp/exp" && [ "$rc" = 1 ] &&
        grep -q "^cvl-pack: $W/journal/0000000000000000.frames:$roff: damaged journal record" "$tmp/err" &&
        grep -q "kept as $W/journal/0000000000000000.frames.damaged$" "$tmp/err" &&
        cmp -s "$W/journal/0000000000000000.frames.damaged" <(cat "$W600" | python3 -c "
import sys; b = bytearray(sys.stdin.buffer.read()); b[$off] ^= 0x5a; sys.stdout.buffer.write(b)"); then
        pass "D1 journal recovery keeps every intact record after a damaged $where (599 of 600), exits 1 naming the journal and offset, keeps the journal as *.damaged"
    else
        fail "D1 journal recovery after a damaged $where" "exit $rc, $(py count "$tmp/w.out") of 599 frames recovered" "$(head -4 "$tmp/err")" \
            "journal/: $(ls "$W/journal" | tr '\n' ' ')"
    fi
done
run "$ccat" -q "$W" --check
expect "D1 after recovery from a damaged journal, --check passes" "$rc" 0
# A truncated last record (a crash inside write) stays a quiet, clean recovery.
new_pending "$W"
head -c -100 "$W600" >"$W/journal/0000000000000000.frames"
run "$pack" -o "$W" </dev/null
expect "D1 a truncated last journal record is dropped quietly: exit 0, 599 frames, no journal kept" \
    "$rc $(py count <("$ccat" -q "$W")) $(ls "$W/journal" | grep -c damaged)" "0 599 0"

# D2: a missing segment index (3 segments of 200 sealed; the journal starts at ordinal 600).
W2=$tmp/W2
rm -rf "$W2"
"$pack" -q -o "$W2" --segment-messages 200 --shards 2 "$W600"
cp -r "$W2" "$W2.orig"
rm "$W2/seg/00000002.idx"
run "$ccat" -q "$W2" --check
expect "D2 last index deleted: cvl-cat --check exits 1 naming it" \
    "$rc $(grep -c "^cvl-cat: $W2/seg/00000002.idx: missing: the journal .* starts at ordinal 600 but the sealed segments end at ordinal 400" "$tmp/err")" "1 1"
run "$pack" -o "$W2" "$W600"
expect "D2 last index deleted: cvl-pack refuses to append (exit 1, names the index), ordinals not reused" \
    "$rc $(grep -c "^cvl-pack: $W2/seg/00000002.idx: missing" "$tmp/err") $(grep -c "refusing to append" "$tmp/err") $(nfiles "$W2"/seg/*.idx) $(ls "$W2/journal")" \
    "1 1 1 2 0000000000000258.frames"
rm "$W2/seg/00000000.idx"
run "$ccat" -q "$W2" --check
expect "D2 first index deleted too: --check exits 1 naming both" \
    "$rc $(grep -c "^cvl-cat: $W2/seg/00000000.idx: missing" "$tmp/err") $(grep -c "^cvl-cat: $W2/seg/00000002.idx: missing" "$tmp/err")" "1 1 1"
rm -rf "$W2"; cp -r "$W2.orig" "$W2"
rm "$W2/seg/00000001.idx"
run "$ccat" -q "$W2" --check; st_check=$rc
run "$pack" -o "$W2" </dev/null
expect "D2 a middle index deleted: --check and cvl-pack exit 1 naming it" \
    "$st_check $rc $(grep -c "^cvl-pack: $W2/seg/00000001.idx: missing (segment 2 follows it)" "$tmp/err")" "1 1 1"
# Without the journal, the data files of a later segment say the index existed.
rm -rf "$W2"; cp -r "$W2.orig" "$W2"
rm "$W2/seg/00000001.idx" "$W2/seg/00000002.idx"
rm "$W2"/journal/*
run "$ccat" -q "$W2" --check
expect "D2 last two indexes and the journal deleted: --check names the missing index from the data files" \
    "$rc $(grep -c "^cvl-cat: $W2/seg/00000001.idx: missing: data files of later segments exist" "$tmp/err")" "1 1"
rm -rf "$W2" "$W2.orig"

# D3: the lock must not depend on a file: a second writer is refused while one runs, even
# after every file named like a lock is removed.
K=$tmp/K3
rm -rf "$K" "$tmp/fifo3"
mkfifo "$tmp/fifo3"
"$pack" -q -o "$K" --segment-messages 100 --shards 2 <"$tmp/fifo3" 2>"$tmp/a3.err" &
pp=$!
bg+=("$pp")
exec 7>"$tmp/fifo3"
py slice "$T" 0 150 >&7
for _ in $(seq 250); do [ -n "$(ls "$K/seg" 2>/dev/null)" ] && break; sleep 0.02; done
rm -f "$K/lock"
run "$pack" -o "$K" "$W600"
st_b=$rc
err_b=$(head -1 "$tmp/err")
py slice "$T" 150 300 >&7
exec 7>&-
wait "$pp"
st_a=$?
"$ccat" -q "$K" >"$tmp/k3.out"
py slice "$T" 0 300 >"$tmp/exp"
if [ "$st_b" = 2 ] && [ "$st_a" = 0 ] && cmp -s "$tmp/k3.out" "$tmp/exp" &&
    printf '%s\n' "$err_b" | grep -q "^cvl-pack: $K: another cvl-pack is writing this archive (it holds the lock on the archive directory)$"; then
    pass "D3 with the lock file removed, a second writer is still refused (exit 2, says what holds the lock); the first writer's frames are intact"
else
    fail "D3 second writer while the first runs and its lock file is removed" "B exit $st_b: $err_b" "A exit $st_a; archive $(py count "$tmp/k3.out") of 300 frames"
fi
rm -rf "$K" "$tmp/fifo3" "$tmp/k3.out"

# cvl.json values out of range: exit 1 (a damaged archive description), naming the key.
for kv in 'segment_messages 0 "segment_messages\" = 0 is outside 1\.\.' 'shards 4.5 "shards\" is not a non-negative integer' \
    'shards 100 "shards\" = 100 is outside 1\.\.99'; do
    read -r key val msg <<<"$kv"
    rm -rf "$W2"; cp -r "$W" "$W2"
    python3 - "$W2/cvl.json" "$key" "$val" <<'PYEOF'
import json, sys
p, k, v = sys.argv[1:]
j = json.load(open(p)); j[k] = json.loads(v)
open(p, 'w').write(json.dumps(j))
PYEOF
    run "$pack" -o "$W2" "$W600"; st_pack=$rc; m_pack=$(grep -cE "^cvl-pack: $W2/cvl.json: \\$msg" "$tmp/err")
    run "$ccat" -q "$W2"; st_cat=$rc
    expect "cvl.json $key: $val is refused: cvl-pack and cvl-cat exit 1, naming the key" "$st_pack $m_pack $st_cat $(nfiles "$W2"/seg/*.idx)" "1 1 1 1"
done
rm -rf "$W2"

# A crashed seal or compaction leaves *.tmp files: the next writer (or compaction) removes them.
for how in append compact; do
    for f in shard/00/00000005-0.dat.tmp shard/01/00000000-1.dat.tmp seg/00000005.idx.tmp dict/00000009.zdict.tmp journal/0000000000000999.frames.tmp; do
        echo junk >"$W/$f"
    done
    if [ $how = append ]; then run "$pack" -o "$W" </dev/null; else run "$pack" -q -o "$W" --compact; fi
    expect "stale *.tmp files are removed when a writer opens the archive ($how)" \
        "$rc $(find "$W" -name '*.tmp' | wc -l) $(py count <("$ccat" -q "$W"))" "0 0 599"
done
rm -rf "$W" "$W600"

# ---- one exit status per failure, in every tool (one Errc → status map) -------------------------

# A missing archive: 2 everywhere. A damaged one: 1 everywhere.
M=$tmp/no-such-archive
run "$ccat" "$M"; st_cat=$rc
run "$ccat" "$M" --ordinal 1; st_ord=$rc
run "$ccat" "$M" --check; st_check=$rc
run "$tomb" "$M" 1; st_tomb=$rc
run "$tomb" "$M" --test 1; st_test=$rc
run "$pack" -o "$M" --compact; st_compact=$rc
expect "missing archive: exit 2 in cvl-cat (read, --ordinal, --check), tomb-set (set, --test), cvl-pack --compact" \
    "$st_cat $st_ord $st_check $st_tomb $st_test $st_compact" "2 2 2 2 2 2"
mkdir -p "$tmp/plain-dir"
run "$ccat" "$tmp/plain-dir"; st_cat=$rc
run "$tomb" "$tmp/plain-dir" --test 1; st_test=$rc
run "$pack" -o "$tmp/plain-dir" --compact; st_compact=$rc
expect "a directory that is not an archive: exit 2 in cvl-cat, tomb-set, cvl-pack --compact" "$st_cat $st_test $st_compact" "2 2 2"
expect_match "… says so" "$(cat "$tmp/err")" "^cvl-pack: $tmp/plain-dir: not a CVL archive"
# cvl.json with a value of the wrong type (D6: no abort).
Y=$tmp/Y
rm -rf "$Y"; cp -r "$A" "$Y"
python3 - "$Y/cvl.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
j = json.load(open(p)); j['shards'] = 'four'
open(p, 'w').write(json.dumps(j))
PYEOF
run "$ccat" "$Y"; st_cat=$rc
run "$ccat" "$Y" --ordinal 1; st_ord=$rc
run "$tomb" "$Y" --test 1; st_test=$rc
run "$pack" -o "$Y" --compact; st_compact=$rc
run "$pack" -o "$Y" /dev/null; st_pack=$rc
expect "cvl.json with a wrong type: exit 1 in cvl-cat, cvl-cat --ordinal, tomb-set --test, cvl-pack --compact, cvl-pack" \
    "$st_cat $st_ord $st_test $st_compact $st_pack" "1 1 1 1 1"
expect_match "… names the file and the key" "$(cat "$tmp/err")" "^cvl-pack: $Y/cvl.json: \"shards\" is not a non-negative integer"
# A damaged index: a point read of that segment, a full read and --check all exit 1.
rm -rf "$Y"; cp -r "$A" "$Y"
py flip "$Y/seg/00000001.idx" 300
run "$ccat" "$Y" --ordinal 800; st_ord=$rc
run "$ccat" "$Y" --proof 800; st_proof=$rc
run "$ccat" "$Y"; st_cat=$rc
run "$ccat" "$Y" --check; st_check=$rc
expect "damaged index: exit 1 for --ordinal, --proof, a full read and --check" "$st_ord $st_proof $st_cat $st_check" "1 1 1 1"
run "$ccat" "$Y" --ordinal 5
expect "damaged index of another segment: --ordinal of an intact one exits 0 (only its own index is read)" "$rc $(py count "$tmp/out")" "0 1"
rm -rf "$Y"

# ---- the rules every tool shares: signals, terminals, progress -----------------------------------

ttysig=$here/ttysig.py
S=$tmp/S
rm -rf "$S"
expect "SIGINT: cvl-pack (a slow producer) exits 130" \
    "$(python3 "$ttysig" signal --sig INT --in "$T" --out "$tmp/out" --err "$tmp/err" -- "$pack" -o "$S" --segment-messages 700)" 130
expect_match "SIGINT: cvl-pack summary says so" "$(tail -1 "$tmp/err")" \
    "^cvl-pack: 3,000 frames appended .*; interrupted by SIGINT before the end of the input$"
run "$pack" -o "$S" /dev/null
run "$ccat" -q "$S"
same "SIGINT: every frame cvl-pack read is in the archive, in order" "$tmp/out" "$T"
cp -r "$A" "$tmp/TS"
printf '1\n2\n' >"$tmp/ords"
expect "SIGINT: tomb-set reading ordinals from a slow producer exits 130" \
    "$(python3 "$ttysig" signal --sig INT --in "$tmp/ords" --out "$tmp/out" --err "$tmp/err" -- "$tomb" "$tmp/TS")" 130
run "$tomb" "$tmp/TS" --test 1 2
expect "SIGINT: tomb-set applied the ordinals read before it" "$(cat "$tmp/out" | tr '\n' ' ')" "1 deleted 2 deleted "
rm -rf "$tmp/TS" "$S"

python3 "$ttysig" pty --transcript "$tmp/tty" -- "$ccat" "$A"
rc=$?
expect "terminal: cvl-cat refuses binary frames to a terminal (exit 2)" "$rc $(grep -c 'cvl-cat: stdout is a terminal, use --force or redirect' "$tmp/tty")" "2 1"
python3 "$ttysig" pty --out "$tmp/out" --transcript "$tmp/tty" -- "$ccat" --force "$A"
rc=$?
expect "terminal: cvl-cat --force writes them" "$rc $(py count "$tmp/out")" "0 $N"
expect_match "progress: cvl-cat shows progress of a whole read, with % and ETA" "$(tr '\r' '\n' <"$tmp/tty")" \
    "^cvl-cat: [0-9]+ frames, .* frames/s, [0-9]+%, ETA"
python3 "$ttysig" pty --out "$tmp/out" --transcript "$tmp/tty" -- "$ccat" "$A" --check
rc=$?
expect "progress: cvl-cat --check on a terminal exits 0" "$rc" 0
expect_match "progress: cvl-cat --check shows progress, with % and ETA" "$(tr '\r' '\n' <"$tmp/tty")" \
    "^cvl-cat: [0-9]+ frames, .* frames/s, [0-9]+%, ETA"
python3 "$ttysig" pty --out "$tmp/out" --transcript "$tmp/tty" -- "$ccat" -q "$A" --check
rc=$?
expect "progress: cvl-cat -q --check draws nothing" "$rc $(size "$tmp/tty")" "0 0"

# ---- command-line frictions of the archive tools (T1–T6) ------------------------------------------

# T1: --did and --collection repeat and take comma lists, as in frame-cat.
"$fcat" -q --did "$D" --did "$D2" "$T" >"$tmp/exp"
run "$ccat" -q "$A" --did "$D" --did "$D2"
expect "T1 cvl-cat --did A --did B: both DIDs ($(py count "$tmp/exp") frames, more than either alone)" \
    "$rc $(py count "$tmp/out") $([ "$(py count "$tmp/exp")" -gt "$("$fcat" -q --did "$D" "$T" | py count /dev/stdin)" ] && echo more)" \
    "0 $(py count "$tmp/exp") more"
same "T1 cvl-cat --did A --did B equals frame-cat --did A --did B" "$tmp/out" "$tmp/exp"
run "$ccat" -q "$A" --did "$D,$D2"
same "T1 cvl-cat --did A,B equals --did A --did B" "$tmp/out" "$tmp/exp"
"$fcat" -q --collection app.bsky.feed.like,app.bsky.graph.follow "$T" >"$tmp/exp"
run "$ccat" -q "$A" --collection app.bsky.feed.like --collection app.bsky.graph.follow
same "T1 cvl-cat --collection X --collection Y equals frame-cat ($(py count "$tmp/exp") frames)" "$tmp/out" "$tmp/exp"
run "$ccat" -q "$A" --collection app.bsky.feed.like,app.bsky.graph.follow
same "T1 cvl-cat --collection X,Y equals --collection X --collection Y" "$tmp/out" "$tmp/exp"
"$fcat" -q --did "$D" --collection app.bsky.feed.like,app.bsky.feed.post "$T" >"$tmp/exp"
run "$ccat" -q "$A" --did "$D" --collection app.bsky.feed.like,app.bsky.feed.post
same "T1 one DID with two collections equals frame-cat" "$tmp/out" "$tmp/exp"
run "$ccat" -q "$A" --did ,
expect "T1 --did with an empty list: exit 2" "$rc" 2

# T2: --from/--to are formats (frame-cat); cvl-cat's ordinal range is --first-ordinal/--last-ordinal.
for old in "--from 5" "--to 7" "--to=7"; do
    # shellcheck disable=SC2086
    run "$ccat" "$A" $old
    expect "T2 cvl-cat $old: exit 2, nothing written" "$rc $(size "$tmp/out")" "2 0"
    expect_match "T2 cvl-cat $old: names the new options" "$(cat "$tmp/err")" "^cvl-cat: --(from|to) .*--first-ordinal N and --last-ordinal N"
done
run "$ccat" "$A" --first-ordinal 10 --last-ordinal 9
expect "T2 --last-ordinal before --first-ordinal: exit 2" "$rc $(lines "$tmp/err")" "2 1"

# T3: tomb-set validates --did and --path (no match, purged: in section 4).
run "$tomb" "$A" --did not-a-did --path nopath
expect "T3 tomb-set --did not-a-did: exit 2" "$rc" 2
expect_match "T3 … gives the reason" "$(cat "$tmp/err")" "^tomb-set: --did 'not-a-did' is not a DID"
run "$tomb" "$A" --did "$D" --path nopath
expect "T3 tomb-set --path nopath: exit 2" "$rc" 2
expect_match "T3 … gives the reason" "$(cat "$tmp/err")" "^tomb-set: --path 'nopath' is not a record path"
run "$tomb" "$A" --did "$D" --path app.bsky.feed.post/x 5
expect "T3 tomb-set with ordinals and --did/--path: exit 2" "$rc" 2

# T4: conflicting or ignored arguments are usage errors (exit 2) naming the reason.
conflict() {  # NAME REGEX CMD...
    local name=$1 re=$2
    shift 2
    run "$@"
    expect "T4 $name: exit 2, one line" "$rc $(lines "$tmp/err")" "2 1"
    expect_match "T4 $name: says why" "$(cat "$tmp/err")" "$re"
}
conflict "cvl-cat --check --stats" "^cvl-cat: --check and --stats exclude each other" "$ccat" "$A" --check --stats
conflict "cvl-cat --proof 1 --check" "exclude each other" "$ccat" "$A" --proof 1 --check
conflict "cvl-cat --check --did" "^cvl-cat: --did has no effect with --check" "$ccat" "$A" --check --did "$D"
conflict "cvl-cat --stats --first-ordinal" "^cvl-cat: --first-ordinal has no effect with --stats" "$ccat" "$A" --stats --first-ordinal 3
conflict "cvl-cat --root without --verify-proof" "^cvl-cat: --root goes with --verify-proof" "$ccat" "$A" --root 00
before=$(cd "$A" && find . -type f | sort | xargs cksum | cksum)
conflict "cvl-pack --compact with an input file" "^cvl-pack: --compact .*reads no input" "$pack" -o "$A" --compact "$T"
conflict "cvl-pack --compact --level 9" "^cvl-pack: --level has no effect with --compact" "$pack" -o "$A" --compact --level 9
conflict "cvl-pack --shards 3 on an archive made with 4" "^cvl-pack: $A: --shards 3 differs from this archive's 4" \
    "$pack" -o "$A" --shards 3 /dev/null
conflict "cvl-pack --segment-messages 100 on an archive made with 700" "segment-messages 100 differs from this archive's 700" \
    "$pack" -o "$A" --segment-messages 100 /dev/null
conflict "cvl-pack --dict-bytes 4096 on an archive made with the default" "dict-bytes 4096 differs from this archive's 112640" \
    "$pack" -o "$A" --dict-bytes 4096 /dev/null
expect "T4 refused cvl-pack runs leave the archive untouched" "$(cd "$A" && find . -type f | sort | xargs cksum | cksum)" "$before"
run "$pack" -o "$tmp/A2" --shards 4 --segment-messages 700 --retrain 2 </dev/null
expect "T4 cvl-pack with the archive's own --shards/--segment-messages/--retrain: accepted" "$rc" 0
conflict "mesh-sim gen --corpus /nonexistent" "^mesh-sim: --corpus /nonexistent: not a directory" "$sim" gen --corpus /nonexistent --events 1
mkdir -p "$tmp/empty-corpus"
conflict "mesh-sim gen --corpus DIR without CARs" "no \*\.car file" "$sim" gen --corpus "$tmp/empty-corpus" --events 1
conflict "mesh-sim gen --corpus --no-corpus" "exclude each other" "$sim" gen --corpus "$tmp/empty-corpus" --no-corpus --events 1
conflict "mesh-sim gen --corpus --entropic-records" "--corpus has no effect with entropic records" \
    "$sim" gen --corpus "$tmp/empty-corpus" --entropic-records --events 1
conflict "mesh-sim gen --window" "--window is an option of 'stats'" "$sim" gen --window 10 --events 1
conflict "mesh-sim stats --events" "--events is an option of 'gen'" "$sim" stats --events 5 "$T"
conflict "tomb-set --clear --test" "exclude each other" "$tomb" "$A" --clear --test 1

# T5: a wrong input format gets a hint.
"$fcat" -q --to raw-u32le "$T" >"$tmp/T.raw"
run "$fcat" "$tmp/T.raw"
expect "T5 frame-cat of a raw capture: exit 1" "$rc" 1
expect_match "T5 … hints --from raw" "$(head -1 "$tmp/err")" "^frame-cat: $tmp/T.raw:[0-9]+: .*looks like a raw capture.*frame-cat --from raw"
run "$pack" -o "$tmp/A6" "$tmp/T.raw"
expect_match "T5 cvl-pack of a raw capture hints --from raw" "$(head -1 "$tmp/err")" "^cvl-pack: $tmp/T.raw:[0-9]+: .*frame-cat --from raw"
rm -rf "$tmp/A6"
run "$fcat" - <"$tmp/T.raw"
expect_match "T5 frame-cat of a raw capture on stdin: a generic hint" "$(head -1 "$tmp/err")" "^frame-cat: stdin:[0-9]+: .*is this a frame stream\?"
run "$fcat" --from raw "$T"
expect "T5 frame-cat --from raw of a frame stream: exit 1" "$rc" 1
expect_match "T5 … hints the frame stream" "$(head -1 "$tmp/err")" "^frame-cat: $T:0: .*looks like a frame stream"
run "$fcat" --from json "$T"
expect_match "T5 frame-cat --from json of a frame stream: hints the frame stream" "$(head -1 "$tmp/err")" "looks like a frame stream"
head -1 "$tmp/T.jsonl" | python3 -m json.tool >"$tmp/pretty.json"
run "$fcat" --from json "$tmp/pretty.json"
expect "T5 frame-cat --from json of pretty-printed JSON: exit 1" "$rc" 1
expect_match "T5 … hints one object per line, jq -c" "$(head -1 "$tmp/err")" "pretty-printed: JSON input is one object per line \(use jq -c\)"
{ echo '['; head -2 "$tmp/T.jsonl" | sed '1s/$/,/'; echo ']'; } >"$tmp/array.json"
run "$fcat" --from json "$tmp/array.json"
expect_match "T5 frame-cat --from json of a JSON array: hints jq -c '.[]'" "$(head -1 "$tmp/err")" "not an array: use jq -c '\.\[\]'"
run "$fcat" "$tmp/T.jsonl"
expect_match "T5 frame-cat of JSON lines: hints --from json" "$(head -1 "$tmp/err")" "looks like JSON text: read it with frame-cat --from json"
run "$ccat" "$T"
expect "T5 cvl-cat of a file: exit 2, one line" "$rc $(lines "$tmp/err")" "2 1"
expect_match "T5 … says it is a frame stream, not an archive" "$(cat "$tmp/err")" \
    "^cvl-cat: $T is a file, not an archive directory: it looks like a frame stream"
run "$tomb" "$tmp/T.jsonl" --test 1
expect "T5 tomb-set of a file: exit 2" "$rc" 2
expect_match "T5 … says it is a file" "$(cat "$tmp/err")" "^tomb-set: $tmp/T.jsonl is a file, not an archive directory"

# T6: summaries: plurals, record bytes, the last ordinal, SIGINT.
py slice "$T" 0 1 >"$tmp/one.frames"
run "$pack" -o "$tmp/A7" "$tmp/one.frames"
expect_match "T6 cvl-pack of 1 frame: singular nouns, ordinal 0, record bytes in" "$(cat "$tmp/err")" \
    "^cvl-pack: 1 frame appended \(ordinal 0\), 1 segment sealed, [01] dictionar(y|ies) trained; $(commas "$(size "$tmp/one.frames")") bytes in, "
run "$ccat" "$tmp/A7"
expect "T6 cvl-cat of 1 frame: '1 frame written', record bytes" "$(cat "$tmp/err")" "cvl-cat: 1 frame written ($(commas "$(size "$tmp/one.frames")") bytes)"
run "$ccat" "$tmp/A7" --check
expect "T6 --check of 1 segment: '1 of 1 segment'" "$(cat "$tmp/err")" "cvl-cat: $tmp/A7: 1 of 1 segment verified (index, clusters, Merkle roots, chain)"
run "$pack" -o "$tmp/A7" "$tmp/one.frames"
expect_match "T6 cvl-pack appending 1 frame to 1: ordinal 1 (the last, not one past it)" "$(cat "$tmp/err")" "^cvl-pack: 1 frame appended \(ordinal 1\), "
run "$tomb" "$tmp/A7" 1
expect "T6 tomb-set of 1 ordinal: singular" "$(cat "$tmp/err")" "tomb-set: $tmp/A7: 1 ordinal tombstoned (1 changed)"
run "$ccat" "$tmp/A7"
expect "T6 cvl-cat: hidden count" "$(cat "$tmp/err")" "cvl-cat: 1 frame written ($(commas "$(size "$tmp/one.frames")") bytes), 1 hidden by tombstones"
rm -rf "$tmp/A7"
# SIGINT while cvl-pack waits for more input: both lines agree with what the archive holds.
py slice "$T" 0 500 >"$tmp/500.frames"
rm -rf "$tmp/A8" "$tmp/fifo8"
mkfifo "$tmp/fifo8"
"$pack" -o "$tmp/A8" --fsync-interval 0 <"$tmp/fifo8" 2>"$tmp/err8" &
pp=$!
bg+=("$pp")
exec 8>"$tmp/fifo8"
cat "$tmp/500.frames" >&8
# Wait (up to 60 s) until the 500 frames are journaled, then interrupt.
for _ in $(seq 600); do
    j=$(find "$tmp/A8" -path '*/journal/*' -type f -size +"$(( ($(size "$tmp/500.frames") - 8192) / 1024 ))"k 2>/dev/null | head -1)
    [ -n "$j" ] && break
    sleep 0.1
done
kill -INT "$pp"
wait "$pp"
prc=$?
exec 8>&-
got=$("$pack" -q -o "$tmp/A8" </dev/null && "$ccat" -q "$tmp/A8" | py count /dev/stdin)
expect "T6 after SIGINT: the archive holds the 500 frames" "$got" 500
expect_match "T6 SIGINT: '500 frames are safe'" "$(cat "$tmp/err8")" "interrupted: 500 frames are safe"
expect_match "T6 SIGINT: summary says 500 frames appended, ordinals 0 to 499, 0 segments, the record bytes" "$(tail -1 "$tmp/err8")" \
    "^cvl-pack: 500 frames appended \(ordinals 0 to 499\), 0 segments sealed, 0 dictionaries trained; $(commas "$(size "$tmp/500.frames")") bytes in"
echo "    (cvl-pack exit status after SIGINT: $prc)"
rm -rf "$tmp/A8" "$tmp/fifo8" "$tmp/T.raw" "$tmp/pretty.json" "$tmp/array.json"

# ---- markers and --last-seq (docs/format-cvl.md §11) -------------------------------------------------

M=$tmp/M
mkdir -p "$M"
# records FILE...: the records of frame streams, by index, for the interleavings below.
cat >"$M/mix.py" <<'PY'
import json, sys
def records(path):
    d = open(path, 'rb').read(); i = 0; out = []
    while i < len(d):
        n = s = 0; st = i
        while True:
            b = d[i]; i += 1; n |= (b & 127) << s; s += 7
            if b < 128: break
        out.append(d[st:i + n]); i += n
    return out
cmd = sys.argv[1]
if cmd == 'every':      # every N MSGS MARKS: a marker before every N messages, the rest after
    n, msgs, marks = int(sys.argv[2]), records(sys.argv[3]), records(sys.argv[4])
    out = []
    for k, m in enumerate(marks):
        out.append(m); out += msgs[n * k:n * (k + 1)]
    out += msgs[n * len(marks):]
elif cmd == 'alternate':  # alternate A B: a, b, a, b, … then the rest
    a, b = records(sys.argv[2]), records(sys.argv[3])
    out = []
    for i in range(max(len(a), len(b))):
        out += a[i:i + 1] + b[i:i + 1]
elif cmd == 'cat':
    out = [r for p in sys.argv[2:] for r in records(p)]
elif cmd == 'maxseq':   # maxseq SRC < JSON lines: the largest payload.seq of SRC's messages
    best = None
    for l in sys.stdin:
        j = json.loads(l)
        if j['src'] == sys.argv[2] and 'mark' not in j and 'seq' in j.get('payload', {}):
            best = j['payload']['seq'] if best is None else max(best, j['payload']['seq'])
    print(best); sys.exit(0)
sys.stdout.buffer.write(b''.join(out))
PY
mix() { python3 "$M/mix.py" "$@"; }
"$sim" gen -q --no-corpus --accounts 30 --events 400 --seed 11 --src a.example --did-docs "$M/docs.json" >"$M/a.frames"
cat >"$M/marks.jsonl" <<'JSONL'
{"src":"a.example","mark":{"kind":"connect","url":"wss://a.example/xrpc/com.atproto.sync.subscribeRepos","cursor":0},"recv":1000}
{"src":"a.example","mark":{"kind":"idle","since":900},"recv":1001}
{"src":"a.example","mark":{"kind":"gap","from":120,"to":130},"recv":1002}
{"src":"a.example","mark":{"kind":"disconnect","reason":"TCP reset"},"recv":1003}
{"src":"a.example","mark":{"kind":"gap","from":999999990,"to":999999999},"recv":1004}
JSONL
"$fcat" -q --from json "$M/marks.jsonl" >"$M/marks.frames"
mix every 90 "$M/a.frames" "$M/marks.frames" >"$M/mixed.frames"   # markers at 0, 91, 182, 273, 364
# cbor-verify | cvl-pack: small segments, so markers land in several segments.
"$cver" -q --did-docs "$M/docs.json" "$M/mixed.frames" >"$M/verified.frames"
"$cver" -q --did-docs "$M/docs.json" "$M/mixed.frames" | "$pack" -q -o "$M/A" --segment-messages 100
expect "markers: cbor-verify | cvl-pack exits 0" "${PIPESTATUS[*]}" "0 0"
run "$ccat" -q "$M/A"
same "markers: cvl-cat gives back the verified stream, markers byte-identical and in place" "$tmp/out" "$M/verified.frames"
"$fcat" -q --type mark "$tmp/out" >"$M/back-marks.frames"
same "markers: the archive's markers are the markers written" "$M/back-marks.frames" "$M/marks.frames"
run "$ccat" -q "$M/A" --ordinal 91 --ordinal 364
"$fcat" -q --type mark "$tmp/out" | "$fcat" -q --to json >"$M/two.jsonl"
expect "markers: ordinals 91 and 364 are the 2nd and 5th markers" "$(cut -c1-60 "$M/two.jsonl" | tr '\n' '|')" \
    "$("$fcat" -q --to json "$M/marks.frames" | sed -n '2p;5p' | cut -c1-60 | tr '\n' '|')"
run "$ccat" -q "$M/A" --until 2000
same "markers: --until selects them by recv (all five, nothing else)" "$tmp/out" "$M/marks.frames"
did=$("$fcat" -q --to json "$M/a.frames" | head -1 | python3 -c 'import json,sys; p=json.load(sys.stdin)["payload"]; print(p.get("repo") or p["did"])')
run "$ccat" -q "$M/A" --did "$did"
expect "markers: --did leaves markers out" "$("$fcat" -q --type mark "$tmp/out" | wc -c | tr -d ' ')" 0
expect "markers: --did still gives the DID's messages" "$("$fcat" -q --did "$did" "$M/verified.frames" | cmp -s - "$tmp/out" && echo same)" same
run "$ccat" "$M/A" --check
expect "markers: cvl-cat --check passes on an archive with markers" "$rc" 0

# --last-seq: two sources alternating, a third only at the very start (found in the first
# segment, read last), a marker-only source, and a marker whose numbers must not count.
"$sim" gen -q --no-corpus --accounts 30 --events 250 --seed 12 --src b.example >"$M/b.frames"
"$sim" gen -q --no-corpus --accounts 5 --events 5 --seed 13 --src c.example >"$M/c.frames"
"$fcat" -q --from json >"$M/m.frames" <<'JSONL'
{"src":"m.example","mark":{"kind":"connect","url":"wss://m.example/"},"recv":5}
JSONL
mix alternate "$M/mixed.frames" "$M/b.frames" >"$M/ab.frames"
mix cat "$M/c.frames" "$M/ab.frames" "$M/m.frames" >"$M/L.frames"
"$pack" -q -o "$M/L" --segment-messages 100 <"$M/L.frames"
"$fcat" -q --to json "$M/L.frames" >"$M/L.jsonl"
for src in a.example b.example c.example; do
    want=$(mix maxseq "$src" <"$M/L.jsonl")
    run "$ccat" "$M/L" --last-seq "$src"
    expect "--last-seq $src: the largest seq, alone on stdout, exit 0" "$rc:$(cat "$tmp/out")" "0:$want"
done
expect "--last-seq: a marker's numbers never count (a.example below the gap marker's 999999999)" \
    "$([ "$("$ccat" "$M/L" --last-seq a.example)" -lt 999999990 ] && echo below)" below
# --last-seqs: every src with a seq, 'SRC SEQ' sorted (mesh-tap's cursors file); m.example
# (markers only) has no line; the same numbers as --last-seq.
run "$ccat" -q "$M/L" --last-seqs
expect "--last-seqs: one 'SRC SEQ' line per src with messages, exit 0" "$rc:$(tr '\n' '|' <"$tmp/out")" \
    "0:a.example $(mix maxseq a.example <"$M/L.jsonl")|b.example $(mix maxseq b.example <"$M/L.jsonl")|c.example $(mix maxseq c.example <"$M/L.jsonl")|"
run "$ccat" "$M/L" --last-seqs --stats
expect "--last-seqs with another mode: usage error" "$rc" 2
run "$ccat" "$M/L" --last-seq d.example
expect "--last-seq of an absent src: exit 1, nothing on stdout" "$rc:$(size "$tmp/out")" "1:0"
expect_match "--last-seq of an absent src: names it" "$(cat "$tmp/err")" \
    "^cvl-cat: .*L: no message with a seq from src 'd.example' in the archive$"
run "$ccat" "$M/L" --last-seq m.example
expect "--last-seq of a src with markers only: exit 1" "$rc:$(size "$tmp/out")" "1:0"
run "$ccat" "$M/L" --last-seq ''
expect "--last-seq '': usage error" "$rc" 2
run "$ccat" "$M/L" --last-seq a.example --did "$did"
expect "--last-seq with a filter: usage error" "$rc" 2
run "$ccat" "$M/L" --last-seq a.example --check
expect "--last-seq with another mode: usage error" "$rc" 2
run "$ccat" "$tmp/nonexistent-archive" --last-seq a.example
expect "--last-seq on a missing archive: exit 2" "$rc" 2
# Damage in the segment that must be read: exit 1, no number (never a guess).
cp -a "$M/L" "$M/L2"
last_seg=$(ls "$M/L2/seg" | sort | tail -1 | cut -d. -f1)
for f in "$M"/L2/shard/*/"$last_seg"-*.dat; do printf '\x55\x55\x55\x55' | dd of="$f" bs=1 seek=8 conv=notrunc 2>/dev/null; done
run "$ccat" "$M/L2" --last-seq a.example
expect "--last-seq: a damaged last segment is exit 1 with nothing on stdout" "$rc:$(size "$tmp/out")" "1:0"
run "$ccat" "$M/L2" --last-seqs
expect "--last-seqs: a damaged segment is exit 1 with nothing on stdout" "$rc:$(size "$tmp/out")" "1:0"
rm -rf "$M/L2"

# The journal: frames cvl-pack has read but not sealed count, while it runs and after kill -9.
"$sim" gen -q --no-corpus --accounts 5 --events 30 --seed 14 --src e.example >"$M/e.frames"
want_e=$("$fcat" -q --to json "$M/e.frames" | mix maxseq e.example)
rm -f "$M/fifo"
mkfifo "$M/fifo"
"$pack" -q -o "$M/L" --fsync-interval 0 <"$M/fifo" 2>"$M/pack-err" &
pe=$!
bg+=("$pe")
exec 9>"$M/fifo"
cat "$M/e.frames" >&9
got=
for _ in $(seq 600); do   # up to 60 s for the 30 frames to be journaled (seen part-way before)
    got=$("$ccat" "$M/L" --last-seq e.example 2>/dev/null)
    [ "$got" = "$want_e" ] && break
    sleep 0.1
done
expect "--last-seq while cvl-pack runs: the journal's frames count" "$got" "$want_e"
kill -9 "$pe" 2>/dev/null
wait "$pe" 2>/dev/null
exec 9>&-
expect "--last-seq after cvl-pack was killed: from the journal" "$("$ccat" "$M/L" --last-seq e.example)" "$want_e"
expect "--last-seq after the kill: the other sources unchanged" "$("$ccat" "$M/L" --last-seq b.example)" \
    "$(mix maxseq b.example <"$M/L.jsonl")"
"$pack" -q -o "$M/L" </dev/null   # recovers and seals the journal
expect "--last-seq after recovery: from the sealed segment" "$("$ccat" "$M/L" --last-seq e.example)" "$want_e"
rm -rf "$M"

echo "$passed passed, $failed failed ($((SECONDS - start_s)) s)"
[ $failed -eq 0 ]
