#!/usr/bin/env bash
# Command-line tests of `mesh-sim serve --plc` and `mesh-sim plc-truth`: the server answers on
# loopback, its whole export agrees with the truth, /export/stream replays and closes as the
# reference does, faults give the statuses asked for, SIGTERM
# exits 0 and SIGINT 130, usage errors exit 2. HTTP through python3's urllib.
# Usage: tests/cli/plc_serve.sh BUILD_DIR
set -u

build=${1:?usage: $0 BUILD_DIR}
mesh_sim=$build/tools/mesh-sim
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$mesh_sim" ] || { echo "FAIL - $mesh_sim is not built"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-plc.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
export LC_ALL=C

passed=0
failed=0
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; shift; for l in "$@"; do echo "    $l"; done; failed=$((failed + 1)); }

# start NAME ARGS...: starts `mesh-sim serve --plc ARGS` in the background, waits (generously:
# only a hang fails) for its "serving PLC on" line; sets $pid and $port.
start() {
    local name=$1
    shift
    "$mesh_sim" serve --plc "$@" 2>"$tmp/$name.err" &
    pid=$!
    pids+=("$pid")
    port=""
    for _ in $(seq 1 1200); do
        port=$(sed -n 's|^mesh-sim: serving PLC on http://127.0.0.1:\([0-9]*\)$|\1|p' "$tmp/$name.err")
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop SIGNAL: signals $pid and sets $rc to its exit status.
stop() {
    kill "-$1" "$pid"
    wait "$pid"
    rc=$?
}

py_get='
import sys, urllib.request, urllib.error
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
'

# ---- the export agrees with the truth
"$mesh_sim" plc-truth --accounts 300 --seed 9 -o "$tmp/truth.jsonl" 2>"$tmp/truth.err"
rc=$?
if [ $rc = 0 ] && [ "$(wc -l <"$tmp/truth.jsonl")" = 300 ] && grep -q "^mesh-sim: 300 accounts, " "$tmp/truth.err"; then
    pass "plc-truth writes one line per account and a summary"
else
    fail "plc-truth writes one line per account and a summary" "rc=$rc" "$(cat "$tmp/truth.err")"
fi

if start main --accounts 300 --seed 9; then
    pass "serve --plc prints its address"
    out=$(python3 - "$port" "$tmp/truth.jsonl" <<EOF 2>&1
$py_get
import json
port, truth_path = sys.argv[1], sys.argv[2]
base = "http://127.0.0.1:%s" % port
truth = {}
for line in open(truth_path):
    t = json.loads(line)
    truth[t["did"]] = t
after, seqs, dids, cids = 0, [], set(), set()
while True:
    st, h, body = get(base + "/export?count=100&after=%d" % after)
    assert st == 200, (st, body)
    assert h.get("content-type") == "application/jsonlines", h
    lines = body.split("\n") if body else []
    for l in lines:
        o = json.loads(l)
        assert o["type"] == "sequenced_op" and o["seq"] == after + 1, o
        after = o["seq"]
        dids.add(o["did"])
        cids.add(o["cid"])
    if len(lines) < 100:
        break
assert dids == set(truth), "export DIDs differ from the truth"
invalid = {i["cid"] for t in truth.values() for i in t["invalid"]}
assert invalid and invalid <= cids, "invalid ops missing from the export"
live = dead = 0
for did, t in truth.items():
    st, h, body = get(base + "/" + did)
    if t["tombstoned"]:
        assert st == 410, (did, st)
        dead += 1
    else:
        assert st == 200, (did, st)
        doc = json.loads(body)
        assert doc["service"][0]["serviceEndpoint"] == t["pds"], did
        assert doc["alsoKnownAs"] == ["at://" + t["handle"]], did
        assert "did:key:" + doc["verificationMethod"][0]["publicKeyMultibase"] == t["signingKey"], did
        live += 1
st, h, body = get(base + "/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
assert st == 404, st
st, h, body = get(base + "/export?count=0")
assert st == 400 and json.loads(body)["message"] == "Invalid count parameter", (st, body)
print("ops=%d live=%d dead=%d" % (after, live, dead))
EOF
)
    if [ $? = 0 ]; then pass "the export pages to every op once, DID documents match the truth ($out)"
    else fail "the export pages to every op once, DID documents match the truth" "$out"; fi

    # /export/stream: a replay of the last ops (then the stream stays open), FutureCursor,
    # OutdatedCursor (geneses spread over 30 days: seq 1 is weeks before the newest op), and a
    # refused cursor.
    out=$(python3 - "$port" "$here" <<EOF 2>&1
import sys, json
sys.path.insert(0, sys.argv[2])
from ws_client import ws
port = int(sys.argv[1])
$py_get
st, h, body = get("http://127.0.0.1:%d/export?after=0&count=1000" % port)
total = len(body.split("\n"))
st, msgs, close = ws(port, "/export/stream?cursor=%d" % (total - 5), want=5, timeout=1)
assert st == 101 and close is None, (st, close)
assert [json.loads(m)["seq"] for m in msgs] == list(range(total - 4, total + 1)), msgs
assert all(json.loads(m)["type"] == "sequenced_op" for m in msgs)
st, msgs, close = ws(port, "/export/stream?cursor=%d" % (total + 1))
assert close == (1000, "FutureCursor") and not msgs, (close, msgs)
st, msgs, close = ws(port, "/export/stream?cursor=0")
assert close == (1000, "OutdatedCursor") and not msgs, (close, msgs)
st, msgs, close = ws(port, "/export/stream?cursor=abc")
assert close == (1008, "Invalid cursor parameter"), close
st, h, body = get("http://127.0.0.1:%d/export/stream" % port)
assert st == 426, st
EOF
)
    if [ $? = 0 ]; then pass "/export/stream replays, closes with FutureCursor / OutdatedCursor, refuses a bad cursor"
    else fail "/export/stream replays, closes with FutureCursor / OutdatedCursor, refuses a bad cursor" "$out"; fi

    # A second server on the same port cannot listen: exit 2.
    "$mesh_sim" serve --plc --accounts 5 --listen "127.0.0.1:$port" 2>"$tmp/busy.err"
    rc=$?
    if [ $rc = 2 ] && grep -q "cannot listen" "$tmp/busy.err"; then pass "a port in use: exit 2"
    else fail "a port in use: exit 2" "rc=$rc" "$(cat "$tmp/busy.err")"; fi

    stop TERM
    if [ $rc = 0 ] && grep -q "requests (.*); stopped by SIGTERM$" "$tmp/main.err"; then pass "SIGTERM: exit 0 and a summary"
    else fail "SIGTERM: exit 0 and a summary" "rc=$rc" "$(cat "$tmp/main.err")"; fi
else
    fail "serve --plc prints its address" "$(cat "$tmp/main.err")"
fi

# ---- faults
if start faults --accounts 50 --fault-5xx 1 -q; then
    out=$(python3 - "$port" <<EOF 2>&1
$py_get
st, h, body = get("http://127.0.0.1:%s/export?after=0" % sys.argv[1])
assert st in (500, 503), st
EOF
)
    if [ $? = 0 ]; then pass "--fault-5xx 1 answers 5xx"; else fail "--fault-5xx 1 answers 5xx" "$out"; fi
    stop INT
    if [ $rc = 130 ]; then pass "SIGINT: exit 130"; else fail "SIGINT: exit 130" "rc=$rc"; fi
else
    fail "serve --plc --fault-5xx starts" "$(cat "$tmp/faults.err")"
fi

if start rate --accounts 50 --fault-429-above 1 -q; then
    out=$(python3 - "$port" <<EOF 2>&1
$py_get
base = "http://127.0.0.1:%s/export?after=0&count=1" % sys.argv[1]
codes = [get(base) for _ in range(3)]
assert codes[0][0] == 200, codes[0][0]
assert codes[1][0] == 429 and codes[1][1].get("retry-after") == "1", (codes[1][0], dict(codes[1][1]))
EOF
)
    if [ $? = 0 ]; then pass "--fault-429-above answers 429 with Retry-After"; else fail "--fault-429-above answers 429 with Retry-After" "$out"; fi
    stop TERM
else
    fail "serve --plc --fault-429-above starts" "$(cat "$tmp/rate.err")"
fi

if start drop --accounts 200 --fault-drop 1 -q; then
    out=$(python3 - "$port" <<EOF 2>&1
import http.client
c = http.client.HTTPConnection("127.0.0.1", int(__import__("sys").argv[1]), timeout=120)
c.request("GET", "/export?after=0")
r = c.getresponse()
try:
    r.read()
    raise SystemExit("the whole body arrived")
except http.client.IncompleteRead:
    pass
EOF
)
    if [ $? = 0 ]; then pass "--fault-drop 1 cuts the body"; else fail "--fault-drop 1 cuts the body" "$out"; fi
    stop TERM
else
    fail "serve --plc --fault-drop starts" "$(cat "$tmp/drop.err")"
fi

if start legacy --accounts 50 --legacy-only -q; then
    out=$(python3 - "$port" <<EOF 2>&1
$py_get
import json
st, h, body = get("http://127.0.0.1:%s/export?after=0&count=5" % sys.argv[1])
assert st == 200, st
lines = [json.loads(l) for l in body.split("\n")]
assert len(lines) == 5 and all("type" not in l and "nullified" in l for l in lines), lines
EOF
)
    if [ $? = 0 ]; then pass "--legacy-only answers the createdAt form to after=0"; else fail "--legacy-only answers the createdAt form to after=0" "$out"; fi
    stop TERM
else
    fail "serve --plc --legacy-only starts" "$(cat "$tmp/legacy.err")"
fi

# ---- usage errors: exit 2 with one line
for args in "serve --plc --listen 0.0.0.0:0" "serve --accounts 5" "serve --plc --fault-5xx 2" \
            "plc-truth --plc" "gen --fault-drop 0.5" "serve --plc --accounts 0"; do
    # shellcheck disable=SC2086
    "$mesh_sim" $args >"$tmp/u.out" 2>"$tmp/u.err"
    rc=$?
    if [ $rc = 2 ] && [ "$(wc -l <"$tmp/u.err")" = 1 ]; then pass "usage: mesh-sim $args → exit 2"
    else fail "usage: mesh-sim $args → exit 2" "rc=$rc" "$(cat "$tmp/u.err")"; fi
done

echo "# $passed passed, $failed failed"
[ $failed = 0 ]
