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
vectors=$here/../data/frames
corpus=${SOVEREIGN_CORPUS:-${2:-$(dirname "$0")/../../../shared/corpus}}

for t in "$frame_cat" "$cbor_verify"; do
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
expect "EPIPE: cbor-verify prints no error (summary only)" "$(grep -vc '^cbor-verify: [0-9,]* frames: ' "$tmp/err")" 0
"$cbor_verify" -q --did-docs "$docs" "$frames" 2>"$tmp/err" | head -c 100 >/dev/null
expect "EPIPE: cbor-verify -q | head prints nothing" "${PIPESTATUS[0]} $(size "$tmp/err")" "0 0"
"$frame_cat" --to json "$frames" 2>"$tmp/err" | head -c 100 >/dev/null
st=("${PIPESTATUS[@]}")
expect "EPIPE: frame-cat --to json | head -c 100 exits 0" "${st[0]}" 0
expect "EPIPE: frame-cat prints no error (summary only)" "$(grep -vc '^frame-cat: [0-9,]* frames read' "$tmp/err")" 0

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

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
