#!/usr/bin/env bash
# Command-line tests of plc-sync (docs/design.md §6, §9; docs/format-plc-mirror.md): a mirror
# built from the corpus audit logs (valid ones accepted, invalid ones in rejected.jsonl with the
# expected reason), from plc_gen's signed export (every DID's final state through docs/lookup,
# chunks concatenating to the export), from the reference network's plc-export.jsonl when
# present (every DID agrees with its did-docs.json), the lock, SIGINT/SIGTERM, and kill -9 at
# random moments followed by a restart: export chunks, rejected.jsonl, op store, cursor and the
# cache (through docs) identical to an uninterrupted run.
# Usage: tests/cli/plc.sh BUILD_DIR [CORPUS_DIR [REFNET_RESULTS [KILL_RUNS [--kill-only]]]]
#
# Prints one line per check ("ok - …", or "FAIL - …" with details) and exits 1 if any failed.
set -u

build=${1:?usage: $0 BUILD_DIR [CORPUS_DIR [REFNET_RESULTS [KILL_RUNS [--kill-only]]]]}
here=$(cd "$(dirname "$0")" && pwd)
corpus=${SOVEREIGN_CORPUS:-${2:-$here/../../../shared/corpus}}
refnet=${SOVEREIGN_REFNET:-${3:-$here/../../../shared/ref-net/results}}
kill_runs=${4:-6}
kill_only=${5:-}
sync=$build/tools/plc-sync
verify=$build/tools/cbor-verify
fcat=$build/tools/frame-cat
gen=$build/tests/plc_gen

for t in "$sync" "$gen"; do
    [ -x "$t" ] || { echo "FAIL - $t is not built"; exit 1; }
done
command -v python3 >/dev/null || { echo "FAIL - python3 is required"; exit 1; }
command -v zstd >/dev/null || { echo "FAIL - zstd is required"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-plc.XXXXXX")
bg=()
cleanup() {
    for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
export LC_ALL=C

passed=0
failed=0
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; shift; for l in "$@"; do echo "    $l"; done; failed=$((failed + 1)); }
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
expect() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $3" "actual:   $2"; fi
}
expect_match() {
    if printf '%s\n' "$2" | grep -Eq -- "$3"; then pass "$1"; else fail "$1" "expected to match: $3" "actual: $2"; fi
}
same() {
    if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$(cmp "$2" "$3" 2>&1 | head -1)"; fi
}
# mirror_sum DIR: one line per file of the mirror but the cache and the lock (path + sha256),
# then the cache's content as `docs` prints it.
mirror_sum() {
    (cd "$1" && find . -type f ! -name did.cache ! -name lock | sort | xargs sha256sum)
    "$sync" docs -o "$1" | sha256sum
}

# The generated export: every DID's final state follows from its index (plc_gen's rules).
"$gen" 1500 7 >"$tmp/gen.jsonl" || { echo "FAIL - plc_gen"; exit 1; }
gen_lines=$(wc -l <"$tmp/gen.jsonl" | tr -d ' ')

if [ -z "$kill_only" ]; then
# ---- usage ---------------------------------------------------------------------------------------
run "$sync" --help
expect "--help exits 0" "$rc" 0
run "$sync" --from-file "$tmp/gen.jsonl"
expect "no -o: exit 2" "$rc" 2
run "$sync" -o "$tmp/u"
expect "no source: exit 2" "$rc" 2
run "$sync" frobnicate -o "$tmp/u"
expect "unknown command: exit 2" "$rc" 2
run "$sync" lookup -o "$tmp/u"
expect "lookup without a DID: exit 2" "$rc" 2
run "$sync" -o "$tmp/u" --from-file "$tmp/missing.jsonl"
expect "missing input: exit 2" "$rc" 2
expect_match "missing input: named" "$(cat "$tmp/err")" "missing.jsonl"

# ---- the corpus audit logs as one export ----------------------------------------------------------
if [ -d "$corpus/plc" ]; then
    python3 - "$corpus/plc" "$tmp/corpus.jsonl" <<'PY'
import json, glob, sys
entries = []
for f in sorted(glob.glob(sys.argv[1] + '/log_*.json')):
    for e in json.load(open(f)):
        entries.append(e)
entries.sort(key=lambda e: e['createdAt'])   # stable: each log keeps its order
with open(sys.argv[2], 'w') as o:
    for i, e in enumerate(entries):
        o.write(json.dumps({"type": "sequenced_op", "did": e["did"], "operation": e["operation"], "cid": e["cid"],
                            "createdAt": e["createdAt"], "seq": i + 1}, separators=(',', ':')) + "\n")
PY
    run "$sync" -o "$tmp/c" --from-file "$tmp/corpus.jsonl" --page-lines 5 --ops-per-chunk 8
    expect "corpus export: exit 0" "$rc" 0
    expect_match "corpus export: summary line" "$(tail -1 "$tmp/err")" \
        '^plc-sync: [0-9]+ lines, [0-9]+ accepted, [0-9]+ rejected, 0 duplicate, [0-9]+ DIDs$'
    zstd -qdc "$tmp"/c/export/* >"$tmp/c.export"
    same "corpus export: zstd -dc DIR/export/* is the export" "$tmp/c.export" "$tmp/corpus.jsonl"
    # The first rejected op of every invalid log has the reason test_plc expects.
    out=$(python3 - "$corpus/plc" "$tmp/c/rejected.jsonl" <<'PY'
import json, sys
want = {
    "log_invalid_sig_b64_newline.json": "base_bad_char",
    "log_invalid_sig_b64_padding_bits.json": "base_bad_padding",
    "log_invalid_sig_b64_padding_chars.json": "base_bad_padding",
    "log_invalid_sig_der.json": "sig_invalid",
    "log_invalid_sig_k256_high_s.json": "sig_high_s",
    "log_invalid_sig_p256_high_s.json": "sig_high_s",
    "log_invalid_update_nullified.json": "plc_prev_nullified",
    "log_invalid_update_tombstoned.json": "plc_after_tombstone",
    "log_invalid_nullification_reused_key.json": "plc_nullify_key",
    "log_invalid_nullification_too_slow.json": "plc_nullify_late",
}
first = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    first.setdefault(r["did"], r["error"])
bad = []
for f, err in want.items():
    did = json.load(open(sys.argv[1] + "/" + f))[0]["did"]
    if first.get(did) != err:
        bad.append("%s: %s, expected %s" % (f, first.get(did), err))
print("; ".join(bad) if bad else "ok %d" % len(first))
PY
)
    expect "corpus export: every invalid log rejected with its reason" "$out" "ok 10"
    dids=$(python3 -c "
import json,glob,sys
print(' '.join(sorted({json.load(open(f))[0]['did'] for f in glob.glob('$corpus/plc/log_*.json') if 'invalid' not in f})))")
    # shellcheck disable=SC2086
    run "$sync" lookup -o "$tmp/c" $dids
    expect "corpus export: lookup of every valid log's DID exits 0" "$rc" 0
    expect "corpus export: every valid DID found" "$(grep -c '"found":true' "$tmp/out")" "$(echo $dids | wc -w | tr -d ' ')"
    expect_match "corpus export: dholms' key history" "$(grep yk4dd2qk "$tmp/out")" \
        '"history":\[\{"key":"did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ","valid_from":"2022-11-17T01:07:13.996Z"\},\{"key":"did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"'
    run "$sync" -o "$tmp/c" --from-file "$tmp/corpus.jsonl" --page-lines 5
    expect_match "corpus export again: all duplicates (resumed at the end)" "$(tail -1 "$tmp/err")" '^plc-sync: 0 lines, 0 accepted'
    cp "$tmp/corpus.jsonl" "$tmp/corpus2.jsonl"
    run "$sync" -o "$tmp/c" --from-file "$tmp/corpus2.jsonl"
    expect_match "another dump with the same lines: every line a duplicate" "$(tail -1 "$tmp/err")" \
        "^plc-sync: 0 lines, 0 accepted, 0 rejected, $(wc -l <"$tmp/corpus.jsonl" | tr -d ' ') duplicate"
else
    echo "ok - corpus absent at $corpus: corpus export checks skipped"
fi

# ---- the generated export ----------------------------------------------------------------------
zstd -q -19 "$tmp/gen.jsonl" -o "$tmp/gen.jsonl.zst"
run "$sync" -o "$tmp/g" --from-file "$tmp/gen.jsonl.zst" --ops-per-chunk 1000
expect "generated export (zstd): exit 0" "$rc" 0
zstd -qdc "$tmp"/g/export/* >"$tmp/g.export"
same "generated export: the chunks concatenate to the export" "$tmp/g.export" "$tmp/gen.jsonl"
run "$sync" docs -o "$tmp/g"
cp "$tmp/out" "$tmp/g.docs"
out=$(python3 - "$tmp/g.docs" 1500 <<'PY'
import json, re, sys
docs = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
bad, seen, tomb = [], set(), 0
for did, d in docs.items():
    if d is None:
        tomb += 1
        continue
    h = d["alsoKnownAs"][0][5:]
    i = int(re.search(r"u(\d+)\.test$", h).group(1))
    seen.add(i)
    if i % 11 == 0: bad.append("%d should be tombstoned" % i); continue
    if i % 7 == 0: want = ("recovered-u%d.test" % i, "https://pds%d.test" % (i % 3))
    elif i % 5 == 0: want = ("renamed-u%d.test" % i, "https://moved.test")
    else: want = ("renamed-u%d.test" % i, "https://pds%d.test" % (i % 3))
    got = (h, d["service"][0]["serviceEndpoint"])
    if got != want: bad.append("%d: %s, expected %s" % (i, got, want))
    if len(d["verificationMethod"]) != 1: bad.append("%d: no key" % i)
want_tomb = len([i for i in range(n) if i % 11 == 0])
if tomb != want_tomb: bad.append("%d tombstoned, expected %d" % (tomb, want_tomb))
if len(seen) + tomb != n: bad.append("%d DIDs" % (len(seen) + tomb))
print("; ".join(bad[:5]) if bad else "ok")
PY
)
expect "generated export: every DID's handle, PDS, key and tombstone as generated" "$out" "ok"
expect "generated export: rejected ops are the invalid ones (sig_invalid)" \
    "$(grep -c '"error":"sig_invalid"' "$tmp/g/rejected.jsonl")" "$(python3 -c 'print(len([i for i in range(1500) if i % 13 == 0]))')"
expect "generated export: nothing else rejected" "$(wc -l <"$tmp/g/rejected.jsonl" | tr -d ' ')" \
    "$(python3 -c 'print(len([i for i in range(1500) if i % 13 == 0]))')"
if [ -x "$verify" ]; then
    run "$verify" --did-docs "$tmp/g.docs" </dev/null
    expect "docs: cbor-verify --did-docs reads them" "$rc" 0
fi

# ---- lock, signals -------------------------------------------------------------------------------
python3 -c "
import fcntl, subprocess, sys
f = open('$tmp/g/lock', 'a')
fcntl.flock(f, fcntl.LOCK_EX)
sys.exit(subprocess.call(['$sync', '-o', '$tmp/g', '--from-file', '$tmp/gen.jsonl'], stderr=open('$tmp/err', 'w')))
"
rc=$?
expect "a held mirror: exit 2" "$rc" 2
expect_match "a held mirror: says so" "$(cat "$tmp/err")" "another plc-sync holds this mirror"

for sig in INT TERM; do
    want=$([ $sig = INT ] && echo 130 || echo 0)
    rm -rf "$tmp/s"
    "$sync" -o "$tmp/s" --from-file "$tmp/gen.jsonl" --page-lines 20 2>"$tmp/s.err" &
    pid=$!
    sleep 0.3
    kill -$sig $pid 2>/dev/null
    wait $pid
    rc=$?
    if [ $rc = 0 ] && ! grep -q "stopped by SIGTERM\|interrupted" "$tmp/s.err"; then
        pass "SIG$sig: (finished before the signal)"
    else
        expect "SIG$sig: exit $want" "$rc" "$want"
    fi
    run "$sync" -o "$tmp/s" --from-file "$tmp/gen.jsonl" --page-lines 20
    zstd -qdc "$tmp"/s/export/* >"$tmp/s.export"
    same "SIG$sig then restart: the export is whole" "$tmp/s.export" "$tmp/gen.jsonl"
done

# ---- the reference network's export --------------------------------------------------------------
if [ -f "$refnet/plc-export.jsonl" ] && [ -f "$refnet/did-docs.json" ]; then
    run "$sync" -o "$tmp/r" --from-file "$refnet/plc-export.jsonl"
    expect "ref-net export: exit 0" "$rc" 0
    dids=$(python3 -c "import json; print(' '.join(json.load(open('$refnet/did-docs.json')).keys()))")
    # shellcheck disable=SC2086
    run "$sync" lookup -o "$tmp/r" $dids
    out=$(python3 - "$refnet/did-docs.json" "$tmp/out" <<'PY'
import json, sys
docs = json.load(open(sys.argv[1]))
def b58(z):
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = 0
    for c in z[1:]: n = n * 58 + alphabet.index(c)
    out = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes(len(z[1:]) - len(z[1:].lstrip("1"))) + out
got = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    got[r["did"]] = r
bad = []
for did, d in docs.items():
    r = got.get(did)
    if r is None or not r["found"]: bad.append(did + ": not found"); continue
    if d is None:
        if not r["tombstoned"]: bad.append(did + ": not tombstoned")
        continue
    pds = [s["serviceEndpoint"] for s in d.get("service", []) if s["id"].endswith("#atproto_pds")]
    aka = [a[5:] for a in d.get("alsoKnownAs", []) if a.startswith("at://")]
    vm = [v for v in d.get("verificationMethod", []) if v["id"].endswith("#atproto")]
    if (pds[0] if pds else "") != r["pds"]: bad.append(did + ": pds " + r["pds"])
    if (aka[0] if aka else "") != r["handle"]: bad.append(did + ": handle " + r["handle"])
    if vm:
        mk = vm[0]["publicKeyMultibase"]
        key = r["key"] or ""
        if not key: bad.append(did + ": no key"); continue
        # Multikey documents give the did:key's multibase; the 2019 types give the raw point
        # (uncompressed): compare x and the parity of y with the compressed point.
        mine = b58(key[len("did:key:"):])[2:]
        if vm[0]["type"] == "Multikey": theirs = b58(mk)[2:]
        else:
            raw = b58(mk)
            theirs = raw if len(raw) == 33 else bytes([2 + (raw[64] & 1)]) + raw[1:33]
        if mine != theirs: bad.append(did + ": key " + key)
print("; ".join(bad[:5]) if bad else "ok %d" % len(docs))
PY
)
    expect_match "ref-net export: every DID's key, PDS and handle agree with did-docs.json" "$out" "^ok "
    # Issue 9 item 5: the captures span a PDS migration with two signing keys; with the keys
    # valid at each frame's time (from the mirror's cache) no commit is bad-sig (the final DID
    # documents alone fail 15 of pds1's).
    if [ -x "$verify" ] && [ -x "$fcat" ]; then
        for p in pds1 pds2 pds3; do
            [ -f "$refnet/$p.u32le.zst" ] || continue
            "$fcat" --from raw-u32le --recv-from payload-time "$refnet/$p.u32le.zst" 2>/dev/null |
                "$verify" --cache "$tmp/r" >/dev/null 2>"$tmp/v.err"
            expect_match "ref-net $p: cbor-verify --cache verifies every signature" "$(tail -1 "$tmp/v.err")" \
                '^cbor-verify: [0-9]+ frames: .*\(ok [0-9]+(, bad-commit [0-9]+)?\)'
        done
    fi
else
    echo "ok - $refnet/plc-export.jsonl absent: the reference network's export is skipped (run ../shared/ref-net to make it)"
fi
fi  # kill_only

# ---- kill -9 at random moments, then restart --------------------------------------------------------
# Pages of 40 lines, chunks of 500 (seals) and a cache of 1024 slots (it grows past 768 DIDs):
# kills land mid-page, mid-seal and mid-growth.
ref=$tmp/kref
start=$(date +%s%N)
"$sync" -q -o "$ref" --from-file "$tmp/gen.jsonl" --page-lines 40 --ops-per-chunk 500 --cache-slots 1024 || fail "kill: reference run"
dur_ms=$(( ($(date +%s%N) - start) / 1000000 ))
mirror_sum "$ref" >"$tmp/kref.sum"
bad_runs=0
kills=0
for r in $(seq 1 "$kill_runs"); do
    d=$tmp/k$r
    # Three kills per run at random moments: the k-th within 0.9 × the sync's duration / k
    # (each restart has less left to do).
    for k in 1 2 3; do
        "$sync" -q -o "$d" --from-file "$tmp/gen.jsonl" --page-lines 40 --ops-per-chunk 500 --cache-slots 1024 2>/dev/null &
        pid=$!
        bg+=("$pid")
        ms=$(( (RANDOM * 32768 + RANDOM) % (dur_ms * 9 / 10 / k + 1) ))  # bash: no interpreter start-up delay
        sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
        kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
        wait "$pid" 2>/dev/null
    done
    if ! "$sync" -q -o "$d" --from-file "$tmp/gen.jsonl" --page-lines 40 --ops-per-chunk 500 --cache-slots 1024 2>"$tmp/k.err"; then
        fail "kill run $r: the restart failed" "$(cat "$tmp/k.err")"
        bad_runs=$((bad_runs + 1))
        continue
    fi
    mirror_sum "$d" >"$tmp/k.sum"
    if ! cmp -s "$tmp/k.sum" "$tmp/kref.sum"; then
        fail "kill run $r: differs from the uninterrupted run" "$(diff "$tmp/kref.sum" "$tmp/k.sum" | head -5)"
        bad_runs=$((bad_runs + 1))
    fi
    rm -rf "$d"
done
expect "kill -9 at random moments ($kill_runs runs, $kills kills, sync of ${dur_ms} ms): mirror identical after restart" "$bad_runs" 0
# Not vacuous: some kills must have hit a running sync (timing on a busy machine decides how
# many; each run tries three, the first early in the sync).
[ "$kills" -ge 1 ] && pass "kills landed on a running sync ($kills in $kill_runs runs)" || fail "no kill landed in $kill_runs runs"
expect "the generated export has $gen_lines lines" "$(zstd -qdc "$ref"/export/* | wc -l | tr -d ' ')" "$gen_lines"

echo "# $passed passed, $failed failed"
[ "$failed" = 0 ]
