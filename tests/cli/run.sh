#!/usr/bin/env bash
# Command-line tests: real pipelines of the built tools, checking stdout, stderr and exit
# status (docs/design.md §2, §3, §6). Usage: tests/cli/run.sh BUILD_DIR [DEFAULT_CORPUS_DIR]
#
# Prints one line per check ("ok - …" or "FAIL - …" with details) and exits 1 if any check
# failed. The hand-made vectors in tests/data/frames are always checked; the pipelines over
# the real relay capture need the corpus ($SOVEREIGN_CORPUS, else DEFAULT_CORPUS_DIR, else
# ../shared/corpus beside the checkout) and are skipped with "SKIP: corpus absent" when it
# is missing.
set -u

build=${1:?usage: $0 BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
frame_cat=$build/tools/frame-cat
cbor_verify=$build/tools/cbor-verify
mesh_sim=$build/tools/mesh-sim
ttysig=$here/ttysig.py
vectors=$here/../data/frames
corpus=${SOVEREIGN_CORPUS:-${2:-$(dirname "$0")/../../../shared/corpus}}

for t in "$frame_cat" "$cbor_verify" "$mesh_sim"; do
    [ -x "$t" ] || { echo "FAIL - $t is not built"; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C

passed=0
failed=0
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; shift; for l in "$@"; do echo "    $l"; done; failed=$((failed + 1)); }

# run CMD...: runs with stdout in $tmp/out, stderr in $tmp/err, status in $rc.
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
# Number of frames in a frame stream.
count_frames() { "$frame_cat" -q --to json "$1" | wc -l | tr -d ' '; }
lines() { wc -l <"$1" | tr -d ' '; }
size() { wc -c <"$1" | tr -d ' '; }
# 1234567 -> 1,234,567 (the tools' summary format)
commas() { echo "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }

echo '{}' >"$tmp/no-docs.json"

# ---- conventions (docs/design.md §6) ----------------------------------------------------------------

for tool in "$frame_cat" "$cbor_verify"; do
    name=$(basename "$tool")
    run "$tool" --help
    expect "$name --help exits 0" "$rc" 0
    expect_match "$name --help prints usage on stdout" "$(head -3 "$tmp/out")" "Usage: $name"
    expect "$name --help writes nothing on stderr" "$(size "$tmp/err")" 0

    run "$tool" --version
    expect "$name --version exits 0" "$rc" 0
    expect_match "$name --version prints name and version" "$(cat "$tmp/out")" "^$name [0-9]+\.[0-9]+"

    run "$tool" --no-such-flag
    expect "$name bad flag exits 2" "$rc" 2
    expect "$name bad flag: one line on stderr" "$(lines "$tmp/err")" 1
    expect_match "$name bad flag: diagnostic format" "$(cat "$tmp/err")" "^$name: .*no-such-flag"
    expect "$name bad flag: nothing on stdout" "$(size "$tmp/out")" 0

    if [ "$name" = cbor-verify ]; then run "$tool" --did-docs "$tmp/no-docs.json" /nonexistent/x.frames
    else run "$tool" /nonexistent/x.frames; fi
    expect "$name missing file exits 2" "$rc" 2
    expect_match "$name missing file: diagnostic" "$(head -1 "$tmp/err")" \
        "^$name: /nonexistent/x.frames: No such file or directory$"
    expect "$name missing file: nothing on stdout" "$(size "$tmp/out")" 0
done

run "$frame_cat" --from nope
expect "frame-cat --from nope exits 2" "$rc" 2
expect "frame-cat --from nope: one line on stderr" "$(lines "$tmp/err")" 1
run "$frame_cat" --type nope "$vectors/good.frames"
expect "frame-cat --type nope exits 2" "$rc" 2
expect "frame-cat --type nope: one line on stderr" "$(lines "$tmp/err")" 1
run "$cbor_verify" --did-docs /nonexistent/docs.json "$vectors/good.frames"
expect "cbor-verify missing --did-docs file exits 2" "$rc" 2
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --rejects /nonexistent/dir/rejects.frames "$vectors/good.frames"
expect "cbor-verify unwritable --rejects exits 2" "$rc" 2

# ---- hand-made vectors (tests/data/frames) -----------------------------------------------------

run "$cbor_verify" --did-docs "$tmp/no-docs.json" "$vectors/good.frames"
expect "good.frames: cbor-verify exits 0" "$rc" 0
expect "good.frames: both frames pass (skip)" "$(count_frames "$tmp/out")" 2
expect "good.frames: summary" "$(cat "$tmp/err")" \
    "cbor-verify: 2 frames: 2 passed, 0 rejected (skip 2); 107 bytes in, $(size "$tmp/out") bytes out"
expect "good.frames: vrd is skip" "$("$frame_cat" -q --to json "$tmp/out" | grep -c '"vrd":"skip"')" 2

while IFS=$'\t' read -r file offset reason; do
    case $file in '#'* | '') continue ;; esac
    f=$vectors/$file
    for tool in frame-cat cbor-verify; do
        if [ $tool = frame-cat ]; then run "$frame_cat" -q "$f"; else run "$cbor_verify" -q --did-docs "$tmp/no-docs.json" "$f"; fi
        expect "$file: $tool exits 1" "$rc" 1
        expect "$file: $tool diagnostic" "$(cat "$tmp/err")" "$tool: $f:$offset: $reason"
        expect "$file: $tool wrote the 2 frames before the error" "$(count_frames "$tmp/out")" 2
    done
    run "$frame_cat" -q <"$f"
    expect "$file: frame-cat on stdin names stdin" "$(cat "$tmp/err")" "frame-cat: stdin:$offset: $reason"
done <"$vectors/expected.tsv"

# ---- D12, D13: no tool writes a record its readers reject ---------------------------------------

# D12: a JSON line whose wire makes the envelope longer than 16 MiB is rejected (file:line,
# reason, exit 1); the line before it is written, and no zero-length record.
"$frame_cat" -q --to json "$vectors/good.frames" | head -1 >"$tmp/big.jsonl"
python3 -c "open('$tmp/big.jsonl','ab').write(b'{\"src\":\"a\",\"recv\":0,\"wire\":{\"\$bytes\":\"' + b'A'*22400000 + b'\"}}\n')"
run "$frame_cat" --from json "$tmp/big.jsonl"
expect "D12 frame-cat --from json: a wire over 16 MiB exits 1" "$rc" 1
expect_match "D12 frame-cat --from json: names file, offset, line and reason" "$(head -1 "$tmp/err")" \
    "^frame-cat: $tmp/big.jsonl:[0-9]+ \(line 2\): record longer than 16 MiB at /wire$"
expect "D12 frame-cat --from json: only the good line before it is written, readable" \
    "$("$frame_cat" -q --to json "$tmp/out" | wc -l | tr -d ' ') $(size "$tmp/out")" "1 $("$frame_cat" -q --limit 1 "$vectors/good.frames" | wc -c | tr -d ' ')"
rm -f "$tmp/big.jsonl"

# D13: an envelope that passes (#info: skip) but would exceed 16 MiB with vrd is rejected as
# too-big with a clear error and written nowhere; one that fits exactly is written, readable.
# big_env N: the first good.frames frame with an unknown key "zz" making the envelope N bytes.
big_env() {
    python3 - "$1" "$frame_cat" "$vectors/good.frames" "$tmp" <<'PYEOF'
import json, subprocess, sys, base64
want, fc, good, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
line = json.loads(subprocess.run([fc, "-q", "--to", "json", "--limit", "1", good], capture_output=True).stdout)
def env_size(n):
    line["zz"] = {"$bytes": base64.b64encode(b"\0" * n).decode().rstrip("=")}
    out = subprocess.run([fc, "-q", "--from", "json"], input=json.dumps(line).encode(), capture_output=True).stdout
    return len(out) - 4, out  # a 4-byte varint at these sizes
base = env_size(3000000)[0] - 3000000
size, out = env_size(want - base)
assert size == want, (size, want)
open(tmp + "/big.frames", "wb").write(out)
PYEOF
}
big_env $((16 << 20))
run "$cbor_verify" --did-docs "$tmp/no-docs.json" "$tmp/big.frames"
expect "D13 cbor-verify: a 16 MiB envelope that cannot carry vrd is written nowhere" "$rc $(size "$tmp/out")" "0 0"
expect_match "D13 cbor-verify: says why (too-big, size, the record limit)" "$(head -1 "$tmp/err")" \
    "^cbor-verify: $tmp/big.frames:0: too-big: the envelope \(16,777,216 bytes\) with its verdict would exceed the 16 MiB record limit; not written$"
expect_match "D13 cbor-verify: counted as too-big" "$(tail -1 "$tmp/err")" "1 frame: 0 passed, 1 rejected \(too-big 1\)"
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --annotate --rejects "$tmp/big-rej.frames" "$tmp/big.frames"
expect "D13 cbor-verify --annotate --rejects: not written either" "$(size "$tmp/out") $(size "$tmp/big-rej.frames")" "0 0"
big_env $(((16 << 20) - 9))  # + "vrd":"skip" (9 bytes) = 16 MiB exactly
run "$cbor_verify" --did-docs "$tmp/no-docs.json" "$tmp/big.frames"
expect "D13 cbor-verify: an envelope that reaches exactly 16 MiB with vrd passes" "$rc $(count_frames "$tmp/out")" "0 1"
rm -f "$tmp/big.frames" "$tmp/out"

# ---- output paths that are inputs, state checked at start (items 5, 6) -------------------------

cp "$vectors/good.frames" "$tmp/in.frames"
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --rejects "$tmp/in.frames" "$tmp/in.frames"
expect "same-file: cbor-verify --rejects IN IN exits 2" "$rc" 2
expect "same-file: the input is untouched" "$(cmp -s "$tmp/in.frames" "$vectors/good.frames" && echo same)" same
expect "same-file: one line naming the file" "$(cat "$tmp/err")" \
    "cbor-verify: $tmp/in.frames: --rejects is the same file as the input $tmp/in.frames; refusing to overwrite it"
ln "$tmp/in.frames" "$tmp/in-link.frames"
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --state "$tmp/in-link.frames" "$tmp/in.frames"
expect "same-file: cbor-verify --state (a hard link of the input) exits 2, input untouched" \
    "$rc $(cmp -s "$tmp/in.frames" "$vectors/good.frames" && echo same)" "2 same"
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --rejects "$tmp/no-docs.json" "$tmp/in.frames"
expect "same-file: cbor-verify --rejects equal to --did-docs exits 2" "$rc $(cat "$tmp/no-docs.json")" "2 {}"
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --rejects "$tmp/in.frames" <"$tmp/in.frames"
expect "same-file: cbor-verify --rejects naming the file on stdin exits 2, input untouched" \
    "$rc $(cmp -s "$tmp/in.frames" "$vectors/good.frames" && echo same)" "2 same"
# An unwritable --state fails at once, before reading any input (stdin stays open here).
exec {idle}< <(sleep 300)
idle_pid=$!
SECONDS_0=$SECONDS
timeout 120 "$cbor_verify" --did-docs "$tmp/no-docs.json" --state /nonexistent/dir/state <&$idle >"$tmp/out" 2>"$tmp/err"
rc=$?
kill "$idle_pid" 2>/dev/null
exec {idle}<&-
expect "state at start: unwritable --state exits 2 before reading the input" "$rc" 2
expect_match "state at start: names the path" "$(cat "$tmp/err")" "^cbor-verify: --state: .*/nonexistent/dir/state"
# D8: --state naming a directory is refused with its name (exit 2), not an abort.
mkdir -p "$tmp/statedir"
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --state "$tmp/statedir" "$vectors/good.frames"
expect_match "D8 cbor-verify --state DIR: exit 2, names the directory, nothing written" \
    "$rc $(size "$tmp/out") $(head -1 "$tmp/err")" "^2 0 cbor-verify: $tmp/statedir: not a regular file"

# ---- terminals: binary output refused, progress (items 2, 3) ------------------------------------

tty_run() { python3 "$ttysig" pty "$@"; rc=$?; }
for t in "frame-cat:$frame_cat" "cbor-verify:$cbor_verify --did-docs $tmp/no-docs.json"; do
    name=${t%%:*}
    # shellcheck disable=SC2086  # the tool and its arguments
    tty_run --transcript "$tmp/tty" -- ${t#*:} "$vectors/good.frames"
    expect "terminal: $name refuses binary frames to a terminal (exit 2)" "$rc" 2
    expect_match "terminal: $name says so, as zstd does" "$(tr -d '\r' <"$tmp/tty")" "^$name: stdout is a terminal, use --force or redirect$"
    # shellcheck disable=SC2086
    tty_run --out "$tmp/out" --transcript "$tmp/tty" -- ${t#*:} --force "$vectors/good.frames"
    expect "terminal: $name --force writes them" "$rc $(count_frames "$tmp/out")" "0 2"
done
tty_run --transcript "$tmp/tty" -- "$frame_cat" --to raw-u32le "$vectors/good.frames"
expect "terminal: frame-cat --to raw-u32le is binary too (exit 2)" "$rc" 2
tty_run --transcript "$tmp/tty" -- "$frame_cat" -q --to json "$vectors/good.frames"
expect "terminal: frame-cat --to json prints to a terminal" "$rc $(grep -c '"src"' "$tmp/tty")" "0 2"
tty_run --transcript "$tmp/tty" -- "$mesh_sim" gen --no-corpus --accounts 10 --events 5
expect "terminal: mesh-sim gen refuses binary frames to a terminal (exit 2)" "$rc $(grep -c 'stdout is a terminal, use --force or redirect' "$tmp/tty")" "2 1"
tty_run --transcript "$tmp/tty" -- "$mesh_sim" gen --no-corpus --accounts 10 --events 5 -o "$tmp/sim5.frames"
expect "terminal: mesh-sim gen -o FILE is fine on a terminal" "$rc $(count_frames "$tmp/sim5.frames")" "0 5"

# Progress: drawn on a terminal stderr (with % and ETA for a regular file), not with -q, not
# when stdout is that same terminal.
tty_run --out "$tmp/out" --transcript "$tmp/tty" -- "$cbor_verify" --did-docs "$tmp/no-docs.json" "$vectors/good.frames"
expect_match "progress: cbor-verify draws it on a terminal, with % and ETA" "$(tr '\r' '\n' <"$tmp/tty")" \
    "^cbor-verify: 2 frames, .* frames/s, 100%, ETA 0:00"
expect_match "progress: … and clears it before the summary" "$(cat -v "$tmp/tty")" '\^\[\[K\^M\^\[\[Kcbor-verify: 2 frames: 2 passed'
tty_run --out "$tmp/out" --transcript "$tmp/tty" -- "$cbor_verify" -q --did-docs "$tmp/no-docs.json" "$vectors/good.frames"
expect "progress: -q draws nothing" "$rc $(size "$tmp/tty")" "0 0"
tty_run --transcript "$tmp/tty" -- "$frame_cat" --to json "$vectors/good.frames"
expect "progress: not drawn when stdout is the same terminal" "$(grep -c 'frames/s' "$tmp/tty")" 0
tty_run --in "$vectors/good.frames" --out "$tmp/out" --transcript "$tmp/tty" -- "$frame_cat"
expect_match "progress: from stdin, no % or ETA (size unknown)" "$(tr '\r' '\n' <"$tmp/tty" | grep 'frames/s')" \
    '^frame-cat: [0-9]+ frames, [0-9.]+ MB, [0-9]+ frames/s\^?\[?\[?K?'

# ---- mesh-sim arguments (item 8) -----------------------------------------------------------------

run "$mesh_sim" gen --no-corpus --accounts 10 --events 5 --src "$(printf 'x%.0s' $(seq 300))"
expect "mesh-sim: a 300-byte --src exits 2, writes nothing" "$rc $(size "$tmp/out")" "2 0"
expect_match "mesh-sim: … says why" "$(cat "$tmp/err")" "^mesh-sim: --src is longer than 253 bytes"
run "$mesh_sim" gen --no-corpus --accounts 10 --events 5 --start 9223372036854775807
expect "mesh-sim: --start 9223372036854775807 exits 2, writes nothing" "$rc $(size "$tmp/out")" "2 0"
expect_match "mesh-sim: … says why" "$(cat "$tmp/err")" "^mesh-sim: --start 9223372036854775807 is out of range"
run "$mesh_sim" gen --no-corpus --accounts 10 --events 5 --start -5
expect "mesh-sim: a negative --start exits 2" "$rc" 2
run "$mesh_sim" gen --no-corpus --accounts 4294967296 --events 5
expect "mesh-sim: --accounts 4294967296 exits 2 (no abort)" "$rc $(size "$tmp/out")" "2 0"
expect_match "mesh-sim: … says why" "$(cat "$tmp/err")" "^mesh-sim: --accounts 4294967296 is more than"
run "$mesh_sim" gen --no-corpus --accounts 10 --events 5 --did-docs "$tmp/d.json" -o "$tmp/d.json"
expect "mesh-sim: -o equal to --did-docs exits 2" "$rc" 2
# The man page's pipeline: cbor-verify reads --did-docs at its first frame, mesh-sim writes it
# whole before its first frame, so no commit is no-key — even when a stale file is there.
echo '{}' >"$tmp/race.json"
"$mesh_sim" gen -q --no-corpus --accounts 50 --events 300 --seed 7 --did-docs "$tmp/race.json" |
    "$cbor_verify" --did-docs "$tmp/race.json" >"$tmp/race.frames" 2>"$tmp/err"
st=("${PIPESTATUS[@]}")
expect "mesh-sim --did-docs race: the pipeline exits 0 0" "${st[*]}" "0 0"
expect_match "mesh-sim --did-docs race: 0 no-key, all 300 pass" "$(tail -1 "$tmp/err")" "^cbor-verify: 300 frames: 300 passed, 0 rejected"
rm -f "$tmp/race.json"
"$mesh_sim" gen -q --no-corpus --accounts 50 --events 300 --seed 7 --did-docs "$tmp/race.json" |
    "$cbor_verify" --did-docs "$tmp/race.json" >"$tmp/race.frames" 2>"$tmp/err"
expect_match "mesh-sim --did-docs race: also when the file does not exist yet" "$(tail -1 "$tmp/err")" "^cbor-verify: 300 frames: 300 passed, 0 rejected"

# ---- SIGINT and SIGTERM (item 1): one rule, everything read is written ---------------------------

sig_run() { python3 "$ttysig" signal --sig "$1" --in "$2" --out "$tmp/out" --err "$tmp/err" -- "${@:3}"; }
cp "$vectors/good.frames" "$tmp/g.frames"
expect "SIGINT: frame-cat (a slow producer) exits 130" "$(sig_run INT "$tmp/g.frames" "$frame_cat")" 130
expect "SIGINT: frame-cat wrote every frame it read" "$(cmp -s "$tmp/out" "$tmp/g.frames" && echo same)" same
expect_match "SIGINT: frame-cat summary says so" "$(tail -1 "$tmp/err")" "2 written .*; interrupted by SIGINT before the end of the input$"
"$cbor_verify" -q --did-docs "$tmp/no-docs.json" "$tmp/g.frames" >"$tmp/g-verified.frames"
expect "SIGINT: cbor-verify exits 130" "$(sig_run INT "$tmp/g.frames" "$cbor_verify" --did-docs "$tmp/no-docs.json")" 130
expect "SIGINT: cbor-verify wrote every frame it read" "$(cmp -s "$tmp/out" "$tmp/g-verified.frames" && echo same)" same
expect_match "SIGINT: cbor-verify summary says so" "$(tail -1 "$tmp/err")" "^cbor-verify: 2 frames: 2 passed.*; interrupted by SIGINT before the end of the input$"
expect "SIGTERM: cbor-verify exits 0 (docs/design.md §6: a service asked to stop)" \
    "$(sig_run TERM "$tmp/g.frames" "$cbor_verify" --did-docs "$tmp/no-docs.json")" 0
expect_match "SIGTERM: cbor-verify summary says so" "$(tail -1 "$tmp/err")" "; stopped by SIGTERM before the end of the input$"
"$frame_cat" -q --to json "$tmp/g.frames" >"$tmp/g.jsonl"
expect "SIGINT: frame-cat --from json exits 130" "$(sig_run INT "$tmp/g.jsonl" "$frame_cat" --from json)" 130
expect "SIGINT: frame-cat --from json wrote every line it read" "$(cmp -s "$tmp/out" "$tmp/g.frames" && echo same)" same
expect "SIGINT: mesh-sim gen exits 130" \
    "$(sig_run INT none "$mesh_sim" gen --no-corpus --accounts 100 --events 100000000)" 130
n=$(sed -n 's/^mesh-sim: \([0-9,]*\) messages.*/\1/p' "$tmp/err" | tr -d ,)
expect "SIGINT: mesh-sim output is valid and holds the count of its summary" "$("$frame_cat" -q --to json "$tmp/out" | wc -l | tr -d ' ')" "$n"
expect_match "SIGINT: mesh-sim summary says so" "$(tail -1 "$tmp/err")" "; interrupted by SIGINT before the end of the input$"
# T5: a raw capture given where frames are expected: the framing error carries a hint.
"$frame_cat" -q --to raw-u32le "$vectors/good.frames" >"$tmp/good.u32le"
run "$cbor_verify" -q --did-docs "$tmp/no-docs.json" "$tmp/good.u32le"
expect "T5 cbor-verify of a raw capture: exit 1, nothing written" "$rc $(size "$tmp/out")" "1 0"
expect_match "T5 cbor-verify of a raw capture: hints frame-cat --from raw" "$(cat "$tmp/err")" \
    "^cbor-verify: $tmp/good.u32le:[0-9]+: .* \(this looks like a raw capture .*: read it with frame-cat --from raw\)$"

# ---- the real relay capture --------------------------------------------------------------------

capture=$corpus/relay-capture/frames.u32le.zst
docs=$corpus/relay-capture/did-docs.json.zst
if [ ! -f "$capture" ] || [ ! -f "$docs" ]; then
    echo "SKIP: corpus absent ($corpus)"
    echo "$passed passed, $failed failed"
    [ $failed -eq 0 ]
    exit
fi

frames=$tmp/cap.frames
run "$frame_cat" --from raw-u32le --src bsky.network "$capture"
cp "$tmp/out" "$frames"
expect "capture: frame-cat --from raw-u32le exits 0" "$rc" 0
expect "capture: frame-cat summary" "$(cat "$tmp/err")" \
    "frame-cat: 150 frames read, 150 written (819,376 bytes in, $(commas "$(size "$frames")") bytes out)"
expect "capture: 150 frames" "$(count_frames "$frames")" 150
frames_size=$(size "$frames")

# The pipeline of the brief, verbatim.
"$frame_cat" --from raw-u32le --src bsky.network "$capture" 2>/dev/null |
    "$cbor_verify" --did-docs "$docs" >"$tmp/verified.frames" 2>"$tmp/err"
st=("${PIPESTATUS[@]}")
expect "pipeline: exit statuses" "${st[*]}" "0 0"
expect "pipeline: 150 of 150 frames out" "$("$frame_cat" -q --to json "$tmp/verified.frames" | wc -l | tr -d ' ')" 150
expect "pipeline: every frame has vrd ok" "$("$frame_cat" -q --to json "$tmp/verified.frames" | grep -c '"vrd":"ok"')" 150
expect "pipeline: summary" "$(cat "$tmp/err")" \
    "cbor-verify: 150 frames: 150 passed, 0 rejected (ok 150); $(commas "$frames_size") bytes in, $(commas "$(size "$tmp/verified.frames")") bytes out"

run "$cbor_verify" --did-docs "$docs" --strict "$frames"
expect "clean capture: --strict exits 0" "$rc" 0
run "$cbor_verify" --did-docs "$docs" -q "$frames"
expect "clean capture: -q prints nothing on stderr" "$(size "$tmp/err")" 0

# Verified frames verify again (vrd replaced, not duplicated), to the byte.
run "$cbor_verify" --did-docs "$docs" -q "$tmp/verified.frames"
if cmp -s "$tmp/out" "$tmp/verified.frames"; then pass "re-verifying is idempotent"; else fail "re-verifying is idempotent"; fi

# Without keys every commit is no-key; identity/account still pass.
run "$cbor_verify" "$frames"
expect "no --did-docs: exit 0" "$rc" 0
expect "no --did-docs: identity and account pass" "$(count_frames "$tmp/out")" 2
expect_match "no --did-docs: summary" "$(tail -1 "$tmp/err")" "150 frames: 2 passed, 148 rejected \(ok 2, no-key 148\)"

# One corrupted frame: the 5th message's repo replaced by another valid DID (bad-commit).
"$frame_cat" -q --to json "$frames" >"$tmp/cap.jsonl"
sed '5s/"repo":"did:plc:[a-z2-7]*"/"repo":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"/' "$tmp/cap.jsonl" >"$tmp/bad.jsonl"
expect "corrupted input: one line differs" "$(diff "$tmp/cap.jsonl" "$tmp/bad.jsonl" | grep -c '^>')" 1
run "$frame_cat" -q --from json "$tmp/bad.jsonl"
cp "$tmp/out" "$tmp/bad.frames"
bad_seq=$(sed -n '5s/.*"seq":\([0-9]*\).*/\1/p' "$tmp/cap.jsonl")
bad_off=$("$frame_cat" -q --limit 4 "$tmp/bad.frames" | wc -c | tr -d ' ')

run "$cbor_verify" --did-docs "$docs" "$tmp/bad.frames"
expect "corrupted: exit 0 without --strict" "$rc" 0
expect "corrupted: 149 frames out" "$(count_frames "$tmp/out")" 149
expect "corrupted: stderr lines (reason + summary)" "$(lines "$tmp/err")" 2
expect_match "corrupted: reason names file, offset, verdict, DID and seq" "$(head -1 "$tmp/err")" \
    "^cbor-verify: $tmp/bad.frames:$bad_off: bad-commit: did:plc:a{24} seq ${bad_seq}[: ].*commit.did"
expect_match "corrupted: summary" "$(tail -1 "$tmp/err")" "^cbor-verify: 150 frames: 149 passed, 1 rejected \(ok 149, bad-commit 1\)"

run "$cbor_verify" --did-docs "$docs" --strict "$tmp/bad.frames"
expect "corrupted: --strict exits 1" "$rc" 1
expect "corrupted: --strict still writes the 149 passing frames" "$(count_frames "$tmp/out")" 149

run "$cbor_verify" --did-docs "$docs" --annotate "$tmp/bad.frames"
expect "corrupted: --annotate exits 0" "$rc" 0
"$frame_cat" -q --to json "$tmp/out" >"$tmp/annotated.jsonl"
expect "corrupted: --annotate writes all 150 frames" "$(lines "$tmp/annotated.jsonl")" 150
expect "corrupted: --annotate marks the bad one" "$(sed -n '5p' "$tmp/annotated.jsonl" | grep -c '"vrd":"bad-commit"')" 1
expect "corrupted: --annotate marks the others ok" "$(grep -c '"vrd":"ok"' "$tmp/annotated.jsonl")" 149
run "$cbor_verify" --did-docs "$docs" --annotate --strict "$tmp/bad.frames"
expect "corrupted: --annotate --strict exits 1" "$rc" 1

run "$cbor_verify" --did-docs "$docs" --rejects "$tmp/rejects.frames" "$tmp/bad.frames"
expect "corrupted: --rejects exits 0" "$rc" 0
expect "corrupted: --rejects keeps stdout to the 149" "$(count_frames "$tmp/out")" 149
expect "corrupted: --rejects file holds 1 frame" "$(count_frames "$tmp/rejects.frames")" 1
expect "corrupted: --rejects frame has vrd bad-commit" \
    "$("$frame_cat" -q --to json "$tmp/rejects.frames" | grep -c "\"vrd\":\"bad-commit\".*\"seq\":$bad_seq")" 1
run "$cbor_verify" --did-docs "$docs" --rejects "$tmp/rejects2.frames" --strict "$frames"
expect "clean: --rejects --strict exits 0" "$rc" 0
expect "clean: --rejects file is empty" "$(size "$tmp/rejects2.frames")" 0

# Rejected frames carry the reason in `why` (canonical order src, vrd, why, recv, wire); passing
# ones have none; re-annotating replaces it.
why_line=$("$frame_cat" -q --to json "$tmp/rejects.frames")
expect_match "why: a --rejects frame carries the reason in why, after vrd" "$why_line" \
    '^\{"src":"bsky.network","vrd":"bad-commit","why":"[^"]*commit.did[^"]*","recv":'
expect "why: frame-cat --to json | jq groups by it" \
    "$(printf '%s\n' "$why_line" | python3 -c 'import json,sys; print(sorted({json.loads(l)["why"] != "" for l in sys.stdin}))')" "[True]"
run "$cbor_verify" -q --did-docs "$docs" --annotate "$tmp/bad.frames"
expect "why: --annotate gives why to the rejected frame only" "$("$frame_cat" -q --to json "$tmp/out" | grep -c '"why":')" 1
cp "$tmp/out" "$tmp/annotated.frames"
run "$cbor_verify" -q --did-docs "$docs" --annotate "$tmp/annotated.frames"
expect "why: re-annotating replaces why (one key, readable, same bytes)" \
    "$rc $(cmp -s "$tmp/out" "$tmp/annotated.frames" && echo same)" "0 same"
# The rejection reason on a terminal clears the progress line first.
python3 "$ttysig" pty --out "$tmp/out" --transcript "$tmp/tty" -- "$cbor_verify" --did-docs "$docs" --batch 1 "$tmp/bad.frames"
expect "progress: a diagnostic clears the progress line first" \
    "$(python3 -c 'import re,sys; t=open(sys.argv[1],"rb").read(); print(bool(re.search(rb"frames/s", t)), bool(re.search(rb"\r\x1b\[Kcbor-verify: [^\r]*bad-commit", t)))' "$tmp/tty")" "True True"

run "$cbor_verify" --did-docs "$docs" --max-reports 0 "$tmp/bad.frames"
expect "corrupted: --max-reports 0 leaves only the summary" "$(lines "$tmp/err")" 1

# Truncated frame stream: the last record cut by 10 bytes.
last_off=$("$frame_cat" -q --limit 149 "$frames" | wc -c | tr -d ' ')
head -c $((frames_size - 10)) "$frames" >"$tmp/trunc.frames"
run "$cbor_verify" --did-docs "$docs" "$tmp/trunc.frames"
expect "truncated: cbor-verify exits 1" "$rc" 1
expect "truncated: diagnostic" "$(head -1 "$tmp/err")" "cbor-verify: $tmp/trunc.frames:$last_off: truncated input"
expect "truncated: the 149 frames before the error are on stdout" "$(count_frames "$tmp/out")" 149
run "$cbor_verify" --did-docs "$docs" -q <"$tmp/trunc.frames"
expect "truncated via stdin: diagnostic" "$(cat "$tmp/err")" "cbor-verify: stdin:$last_off: truncated input"
expect "truncated via stdin: exit 1" "$rc" 1
run "$frame_cat" -q "$tmp/trunc.frames"
expect "truncated: frame-cat exits 1" "$rc" 1
expect "truncated: frame-cat diagnostic" "$(cat "$tmp/err")" "frame-cat: $tmp/trunc.frames:$last_off: truncated input"
expect "truncated: frame-cat wrote 149 frames" "$(count_frames "$tmp/out")" 149
# A framing error in the first file stops before the second.
run "$cbor_verify" --did-docs "$docs" -q "$tmp/trunc.frames" "$frames"
expect "truncated then good file: exit 1, stops at the error" "$rc $(count_frames "$tmp/out")" "1 149"

# Several inputs, `cat a b` and zstd.
"$frame_cat" -q --limit 75 "$frames" >"$tmp/first.frames"
tail -c +$(($(size "$tmp/first.frames") + 1)) "$frames" >"$tmp/rest.frames"
expect "split capture: 75 + 75 frames" "$(count_frames "$tmp/first.frames") $(count_frames "$tmp/rest.frames")" "75 75"
run "$cbor_verify" --did-docs "$docs" "$tmp/first.frames" "$tmp/rest.frames"
expect "two files: 150 frames, exit 0" "$rc $(count_frames "$tmp/out")" "0 150"
if cmp -s "$tmp/out" "$tmp/verified.frames"; then pass "two files: same output as one"; else fail "two files: same output as one"; fi
# The same capture twice: the replay repeats seq numbers from the same src (bad-seq).
run "$cbor_verify" --did-docs "$docs" "$frames" "$frames"
expect "capture twice: exit 0, the 150 originals pass" "$rc $(count_frames "$tmp/out")" "0 150"
expect_match "capture twice: summary" "$(tail -1 "$tmp/err")" "^cbor-verify: 300 frames: 150 passed, 150 rejected "
expect "cat a b is a valid stream" "$(cat "$frames" "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" 300
if command -v zstd >/dev/null; then
    zstd -q -c "$frames" >"$tmp/cap.frames.zst"
    run "$cbor_verify" --did-docs "$docs" -q "$tmp/cap.frames.zst"
    expect "zstd-compressed frames: 150 frames ok" "$rc $(count_frames "$tmp/out")" "0 150"
    run "$frame_cat" -q --to raw-u32le "$frames"
    if zstd -q -d -c "$capture" | cmp -s - "$tmp/out"; then pass "frame-cat --to raw-u32le restores the capture"
    else fail "frame-cat --to raw-u32le restores the capture"; fi
fi

# EPIPE: a closed stdout ends the tools quietly with 0.
"$cbor_verify" --did-docs "$docs" "$frames" 2>"$tmp/err" | head -c 100 >/dev/null
st=("${PIPESTATUS[@]}")
expect "EPIPE: cbor-verify | head -c 100 exits 0" "${st[0]}" 0
expect "EPIPE: cbor-verify prints nothing: no error, no summary claiming frames written" "$(size "$tmp/err")" 0
"$cbor_verify" -q --did-docs "$docs" "$frames" 2>"$tmp/err" | head -c 100 >/dev/null
expect "EPIPE: cbor-verify -q | head prints nothing" "${PIPESTATUS[0]} $(size "$tmp/err")" "0 0"
"$frame_cat" --to json "$frames" 2>"$tmp/err" | head -c 100 >/dev/null
st=("${PIPESTATUS[@]}")
expect "EPIPE: frame-cat --to json | head -c 100 exits 0" "${st[0]}" 0
expect "EPIPE: frame-cat prints nothing: no error, no summary claiming frames written" "$(size "$tmp/err")" 0
# Options that would be ignored are refused (exit 2, with the reason), not silently accepted.
run "$frame_cat" --blocks "$vectors/good.frames"
expect "ignored options: frame-cat --blocks without --to json exits 2, says why" \
    "$rc $(size "$tmp/out") $(cat "$tmp/err")" "2 0 frame-cat: --blocks works only with --to json"
for o in "--src x" "--recv 5"; do
    run "$frame_cat" $o --to json "$vectors/good.frames"
    expect_match "ignored options: frame-cat $o without --from raw-u32le exits 2, says why" \
        "$rc $(size "$tmp/out") $(cat "$tmp/err")" "^2 0 frame-cat: ${o%% *} labels raw input: it works only with --from raw-u32le"
done
run "$frame_cat" --recv-from payload-time --to json "$vectors/good.frames"
expect_match "ignored options: frame-cat --recv-from without --from raw-u32le exits 2, says why" \
    "$rc $(size "$tmp/out") $(cat "$tmp/err")" "^2 0 frame-cat: --recv-from labels raw input"
run "$frame_cat" --from raw-u32le --recv-from clock "$capture"
expect "--recv-from clock: exit 2, names the one choice" "$rc $(cat "$tmp/err")" \
    "2 frame-cat: unknown --recv-from 'clock' (the one choice is payload-time)"
run "$frame_cat" --from raw-u32le --recv 5 --recv-from payload-time "$capture"
expect "--recv with --recv-from: exit 2" "$rc $(cat "$tmp/err")" "2 frame-cat: --recv and --recv-from both set recv: choose one"
# --recv-from payload-time: every frame's recv is its message's own time, to the microsecond.
run "$frame_cat" --from raw-u32le --recv-from payload-time --to json "$capture"
expect "--recv-from payload-time: exit 0, no message without a time" "$rc $(cat "$tmp/err")" \
    "0 frame-cat: 150 frames read, 150 written (819,376 bytes in, $(commas "$(size "$tmp/out")") bytes out)"
expect "--recv-from payload-time: recv = payload time on every frame" "$(python3 -c '
import json, sys, datetime
bad = 0
for line in open(sys.argv[1]):
    f = json.loads(line)
    t = datetime.datetime.fromisoformat(f["payload"]["time"].replace("Z", "+00:00"))
    us = (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)
    bad += f["recv"] != us
print(bad)' "$tmp/out")" 0
printf '\x0d\x00\x00\x00\xa2\x61\x74\x65\x23\x69\x6e\x66\x6f\x62\x6f\x70\x01' >"$tmp/info-only.u32le"
run "$frame_cat" --from raw-u32le --recv-from payload-time --to json "$tmp/info-only.u32le"
expect_match "--recv-from payload-time: a message without a time gets recv 0 and is counted" \
    "$rc $(cut -c1-30 "$tmp/out") $(cat "$tmp/err")" '^0 \{"src":"capture","recv":0,.* 1 message without a time \(recv 0\)$'
# Plurals: one frame is "1 frame".
"$frame_cat" -q --limit 1 "$frames" >"$tmp/one.frames"
run "$frame_cat" "$tmp/one.frames"
expect_match "summary: frame-cat says '1 frame read'" "$(cat "$tmp/err")" "^frame-cat: 1 frame read, 1 written \\([0-9,]+ bytes in, [0-9,]+ bytes out\\)$"
run "$cbor_verify" --did-docs "$docs" "$tmp/one.frames"
expect_match "summary: cbor-verify says '1 frame:'" "$(cat "$tmp/err")" "^cbor-verify: 1 frame: 1 passed, 0 rejected "

# DAG-JSON lines round trip to the byte.
"$frame_cat" -q --to json "$frames" | "$frame_cat" -q --from json >"$tmp/rt.frames"
if cmp -s "$frames" "$tmp/rt.frames"; then pass "frame-cat --to json | --from json is byte-identical"
else fail "frame-cat --to json | --from json is byte-identical"; fi
"$frame_cat" -q --to json "$tmp/verified.frames" | "$frame_cat" -q --from json >"$tmp/rt2.frames"
if cmp -s "$tmp/verified.frames" "$tmp/rt2.frames"; then pass "json round trip keeps vrd, byte-identical"
else fail "json round trip keeps vrd, byte-identical"; fi
"$frame_cat" -q --to json --blocks "$frames" | "$frame_cat" -q --from json >"$tmp/rt3.frames"
if cmp -s "$frames" "$tmp/rt3.frames"; then pass "json --blocks round trip is byte-identical (blocks_json ignored)"
else fail "json --blocks round trip is byte-identical (blocks_json ignored)"; fi
expect "--blocks adds blocks_json to the 148 commits" "$("$frame_cat" -q --to json --blocks "$frames" | grep -c '"blocks_json":{"roots":')" 148
# shellcheck disable=SC2016  # a literal $bytes key, not an expansion
printf '{"src":"x","recv":1,"wire":{"$bytes":"/wA"}}\nnot json\n' >"$tmp/badline.jsonl"
run "$frame_cat" --from json "$tmp/badline.jsonl"
expect "bad JSON line: exit 1" "$rc" 1
expect_match "bad JSON line: names the file, offset and line" "$(head -1 "$tmp/err")" \
    "^frame-cat: $tmp/badline.jsonl:$(head -1 "$tmp/badline.jsonl" | wc -c | tr -d ' ') \(line 2\): invalid JSON"
expect "bad JSON line: the frame before it is written" "$(count_frames "$tmp/out")" 1

# Filters.
run "$frame_cat" --type identity "$frames"
expect "--type identity: 1 frame" "$(count_frames "$tmp/out")" 1
expect "--type identity: summary" "$(cat "$tmp/err")" \
    "frame-cat: 150 frames read, 1 written ($(commas "$frames_size") bytes in, $(commas "$(size "$tmp/out")") bytes out)"
expect "--type account: 1 frame" "$("$frame_cat" -q --type account "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" 1
expect "--type commit: 148 frames" "$("$frame_cat" -q --type commit "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" 148
expect "--type identity,account: 2 frames" "$("$frame_cat" -q --type identity,account "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" 2
expect "--type '#identity' --type account: 2 frames" "$("$frame_cat" -q --type '#identity' --type account "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" 2
did=$(grep '"#identity"' "$tmp/cap.jsonl" | sed 's/.*"did":"\([^"]*\)".*/\1/')
expect_match "identity DID found" "$did" '^did:plc:[a-z2-7]{24}$'
want=$(grep -Ec "\"(did|repo)\":\"$did\"" "$tmp/cap.jsonl")
expect "--did: as many frames as mention the DID" "$("$frame_cat" -q --did "$did" "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" "$want"
repo=$(sed -n '1s/.*"repo":"\([^"]*\)".*/\1/p' "$tmp/cap.jsonl")
want=$(grep -c "\"repo\":\"$repo\"" "$tmp/cap.jsonl")
expect "--did of a committer: its commits" "$("$frame_cat" -q --did "$repo" --type commit "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" "$want"
want=$(grep -c '"path":"app.bsky.feed.like/' "$tmp/cap.jsonl")
got=$("$frame_cat" -q --collection app.bsky.feed.like --to json "$frames")
expect "--collection app.bsky.feed.like: the commits with a like op ($want)" "$(printf '%s\n' "$got" | grep -c .)" "$want"
expect "--collection app.bsky.feed.like: every one has a like op" "$(printf '%s\n' "$got" | grep -vc '"path":"app.bsky.feed.like/')" 0
expect "--collection: no match gives no frames" "$("$frame_cat" -q --collection com.example.none "$frames" | wc -c | tr -d ' ')" 0
expect "--type identity --collection app.bsky.feed.like: both must match" \
    "$("$frame_cat" -q --type identity --collection app.bsky.feed.like "$frames" | wc -c | tr -d ' ')" 0
run "$frame_cat" --limit 5 "$frames"
expect "--limit 5: 5 frames" "$(count_frames "$tmp/out")" 5
if head -c "$(size "$tmp/out")" "$frames" | cmp -s - "$tmp/out"; then pass "--limit 5: a prefix of the input"
else fail "--limit 5: a prefix of the input"; fi
expect "-n 0: nothing" "$("$frame_cat" -q -n 0 "$frames" | wc -c | tr -d ' ')" 0
expect "--limit with a filter counts written frames" "$("$frame_cat" -q --type commit --limit 3 "$frames" | "$frame_cat" -q --to json | wc -l | tr -d ' ')" 3

# --to jetstream: the 150 capture events as production Jetstream served them (152 lines:
# 150 record ops, 1 identity, 1 account), field for field except time_us (Jetstream's clock).
run "$frame_cat" --to jetstream "$frames"
expect "--to jetstream: exits 0" "$rc" 0
expect "--to jetstream: 152 lines" "$(lines "$tmp/out")" 152
expect "--to jetstream: equal to production Jetstream except time_us" "$(python3 - "$tmp/out" "$corpus/relay-capture/jetstream-v1.jsonl" <<'PY'
import json, sys
def key(j):
    c = j.get("commit", {})
    return (j["did"], j["kind"], c.get("rev"), c.get("operation"), c.get("collection"), c.get("rkey"))
ours = {key(j): j for j in map(json.loads, open(sys.argv[1]))}
want = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
bad = sum(1 for w in want if dict(ours.get(key(w), {}), time_us=w["time_us"]) != w)
print(f"{len(want) - bad}/{len(want)} equal")
PY
)" "152/152 equal"
run "$frame_cat" --from jetstream "$frames"
expect "--from jetstream: usage error (output format only)" "$rc" 2
printf 'garbage' > "$tmp/garbage.u32le"
printf '\x07\x00\x00\x00' | cat - "$tmp/garbage.u32le" > "$tmp/bad.u32le"
run "$frame_cat" --from raw-u32le --src x --to jetstream "$tmp/bad.u32le"
expect "--to jetstream: an unparsable message exits 1" "$rc" 1
expect_match "--to jetstream: names file and offset" "$(cat "$tmp/err")" "bad.u32le:0: not convertible to Jetstream"

# ---- markers (docs/design.md §2 "Markers", docs/format-frame-stream.md) -----------------------------
# A stream of signed messages with five markers interleaved (made from DAG-JSON lines).

mk=$tmp/mk
mkdir -p "$mk"
"$mesh_sim" gen -q --no-corpus --accounts 20 --events 200 --seed 3 --src pds.example \
    --did-docs "$mk/docs.json" >"$mk/msgs.frames"
cat >"$mk/marks.jsonl" <<'JSONL'
{"src":"pds.example","mark":{"kind":"connect","url":"wss://pds.example/xrpc/com.atproto.sync.subscribeRepos"},"recv":1783173600000001}
{"src":"pds.example","mark":{"kind":"gap","from":40,"to":45},"recv":1783173600000002}
{"src":"pds.example","mark":{"kind":"idle","since":1783173600000000},"recv":1783173600000003}
{"src":"pds.example","mark":{"kind":"disconnect","reason":"close 1001"},"recv":1783173600000004}
{"src":"pds.example","mark":{"kind":"resync","note":"a kind no tool knows"},"recv":1783173600000005}
JSONL
run "$frame_cat" --from json "$mk/marks.jsonl"
expect "markers: frame-cat --from json reads marker lines" "$rc" 0
cp "$tmp/out" "$mk/marks.frames"
# interleave MSGS MARKS: marker k goes before message 50·k (the last one after every message).
python3 - "$mk/msgs.frames" "$mk/marks.frames" >"$mk/mixed.frames" <<'PY'
import sys
def records(path):
    d = open(path, 'rb').read(); i = 0; out = []
    while i < len(d):
        n = s = 0; st = i
        while True:
            b = d[i]; i += 1; n |= (b & 127) << s; s += 7
            if b < 128: break
        out.append(d[st:i + n]); i += n
    return out
msgs, marks = records(sys.argv[1]), records(sys.argv[2])
out = []
for k, m in enumerate(marks):
    out += msgs[50 * (k - 1):50 * k] if k else []
    out.append(m)
out += msgs[50 * (len(marks) - 1):]
sys.stdout.buffer.write(b''.join(out))
PY
expect "markers: the mixed stream has 205 frames" "$(count_frames "$mk/mixed.frames")" 205

run "$frame_cat" --type mark "$mk/mixed.frames"
expect "frame-cat --type mark exits 0" "$rc" 0
if cmp -s "$tmp/out" "$mk/marks.frames"; then pass "frame-cat --type mark: exactly the markers, byte for byte"
else fail "frame-cat --type mark: exactly the markers, byte for byte" "$(cmp "$tmp/out" "$mk/marks.frames" 2>&1)"; fi
expect_match "frame-cat --type mark: summary counts the markers" "$(cat "$tmp/err")" \
    "^frame-cat: 205 frames read \(5 markers\), 5 written"
run "$frame_cat" "$mk/mixed.frames"
if cmp -s "$tmp/out" "$mk/mixed.frames"; then pass "frame-cat without a filter keeps markers in place"
else fail "frame-cat without a filter keeps markers in place" "$(cmp "$tmp/out" "$mk/mixed.frames" 2>&1)"; fi
run "$frame_cat" --type commit "$mk/mixed.frames"
"$frame_cat" -q --type mark "$tmp/out" >"$mk/none.frames"
expect "frame-cat --type commit drops the markers" "$(size "$mk/none.frames")" 0
did=$("$frame_cat" -q --to json "$mk/msgs.frames" | head -1 | python3 -c 'import json,sys; p=json.load(sys.stdin)["payload"]; print(p.get("repo") or p["did"])')
run "$frame_cat" --did "$did" --to json "$mk/mixed.frames"
expect "frame-cat --did drops the markers" "$(grep -c '"mark":' "$tmp/out")" 0
ndid=$(lines "$tmp/out")
run "$frame_cat" --type commit,identity,account,sync,mark --did "$did" --to json "$mk/mixed.frames"
expect "frame-cat --type …,mark --did: the DID's messages and every marker" "$(lines "$tmp/out"):$(grep -c '"mark":' "$tmp/out")" \
    "$((ndid + 5)):5"
run "$frame_cat" --to json "$mk/mixed.frames"
expect "frame-cat --to json: a marker line shows its kind and keys" "$(sed -n 2p "$tmp/out")" \
    '{"src":"pds.example","mark":{"to":45,"from":40,"kind":"gap"},"recv":1783173600000002}'
cp "$tmp/out" "$mk/mixed.jsonl"
run "$frame_cat" --from json "$mk/mixed.jsonl"
if cmp -s "$tmp/out" "$mk/mixed.frames"; then pass "frame-cat --to json | --from json: markers round trip byte for byte"
else fail "frame-cat --to json | --from json: markers round trip byte for byte" "$(cmp "$tmp/out" "$mk/mixed.frames" 2>&1)"; fi
run "$frame_cat" --to raw-u32le --force "$mk/mixed.frames"
expect_match "frame-cat --to raw-u32le: markers are counted as not written" "$(cat "$tmp/err")" \
    "5 markers not written \(a raw capture carries messages only\)"
run "$frame_cat" --to jetstream "$mk/mixed.frames"
expect "frame-cat --to jetstream with markers exits 0" "$rc" 0
expect_match "frame-cat --to jetstream: markers are counted as not written" "$(cat "$tmp/err")" \
    "5 markers not written \(Jetstream carries messages only\)"

# Malformed markers are framing errors with the offset.
run "$frame_cat" --from json - <<<'{"src":"s","mark":{"kind":"gap","from":9,"to":1},"recv":1}'
expect "frame-cat --from json: gap from > to exits 1" "$rc" 1
expect_match "frame-cat --from json: gap from > to is named" "$(cat "$tmp/err")" "marker malformed"
# {src:"s", mark:{kind:"x"}, recv:1, wire:h''} after one good marker: offset of the wire entry.
python3 - "$mk/marks.frames" >"$mk/both.frames" <<'PY'
import sys
good = open(sys.argv[1], 'rb').read()
first = good[:1 + good[0]]
env = bytes([0xa4, 0x63]) + b'src' + bytes([0x61]) + b's' + bytes([0x64]) + b'mark' + bytes([0xa1, 0x64]) + b'kind' + \
      bytes([0x61]) + b'x' + bytes([0x64]) + b'recv' + bytes([0x01, 0x64]) + b'wire' + bytes([0x41, 0x00])
sys.stdout.buffer.write(first + bytes([len(env)]) + env)
PY
first_len=$(( $(od -An -tu1 -N1 "$mk/marks.frames") + 1 ))
run "$frame_cat" --to json "$mk/both.frames"
expect "frame-cat: a record with both mark and wire exits 1" "$rc" 1
expect_match "frame-cat: both mark and wire: file, offset of the wire entry, reason" "$(cat "$tmp/err")" \
    "both.frames:$((first_len + 1 + 26)): envelope has both mark and wire"
expect "frame-cat: the record before it was written" "$(lines "$tmp/out")" 1

# cbor-verify: markers pass unchanged, in place, with no verdict, and change no verdict.
run "$cbor_verify" --did-docs "$mk/docs.json" "$mk/mixed.frames"
expect "cbor-verify with markers exits 0" "$rc" 0
cp "$tmp/out" "$mk/verified.frames"
expect_match "cbor-verify: summary counts markers apart" "$(cat "$tmp/err")" \
    "^cbor-verify: 205 frames: 200 passed, 0 rejected \(ok 200\), markers 5; "
"$frame_cat" -q --type mark "$mk/verified.frames" >"$mk/verified-marks.frames"
if cmp -s "$mk/verified-marks.frames" "$mk/marks.frames"; then pass "cbor-verify: markers byte-identical, no vrd"
else fail "cbor-verify: markers byte-identical, no vrd" "$(cmp "$mk/verified-marks.frames" "$mk/marks.frames" 2>&1)"; fi
"$frame_cat" -q --to json "$mk/verified.frames" | grep -n '"mark":' | cut -d: -f1 | tr '\n' ' ' >"$mk/pos"
expect "cbor-verify: markers in place (lines of the JSON)" "$(cat "$mk/pos")" "1 52 103 154 205 "
"$cbor_verify" -q --did-docs "$mk/docs.json" "$mk/msgs.frames" >"$mk/verified-plain.frames"
"$frame_cat" -q --to json "$mk/verified.frames" | grep -v '"mark":' >"$mk/a.jsonl"
"$frame_cat" -q --to json "$mk/verified-plain.frames" >"$mk/b.jsonl"
if cmp -s "$mk/a.jsonl" "$mk/b.jsonl"; then pass "cbor-verify: the messages' verdicts are those of the stream without markers"
else fail "cbor-verify: the messages' verdicts are those of the stream without markers" "$(cmp "$mk/a.jsonl" "$mk/b.jsonl" 2>&1)"; fi
run "$cbor_verify" --did-docs "$tmp/no-docs.json" --annotate --rejects "$mk/rej.frames" "$mk/mixed.frames"
"$frame_cat" -q --type mark "$tmp/out" >"$mk/ann-marks.frames"
expect "cbor-verify --annotate: markers still unchanged" "$(cmp -s "$mk/ann-marks.frames" "$mk/marks.frames" && echo same)" same
expect "cbor-verify --rejects: no marker among the rejects" "$("$frame_cat" -q --type mark "$mk/rej.frames" | wc -c | tr -d ' ')" 0

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
