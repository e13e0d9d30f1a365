#!/usr/bin/env bash
# Command-line tests of `mesh-sim serve --pdses N --relay` on loopback: cursor replay inside
# the window, OutdatedCursor, FutureCursor + close 1008, routing by path and by Host header,
# the relay's merge equal to the union of the PDS streams minus the dropped set of the truth
# file, cbor-verify passing every stream, listHosts/listRepos/describeServer, ConsumerTooSlow
# (PDS: error frame + 1008; relay: TCP drop without close frame), connection cuts, PDS
# restarts, accept-then-drop hosts, signals and usage errors. WebSocket client: ws_bin.py
# (python3 standard library). Waits are generous and only fail on a hang.
# Usage: tests/cli/simnet.sh BUILD_DIR
set -u

build=${1:?usage: $0 BUILD_DIR}
mesh_sim=$build/tools/mesh-sim
cbor_verify=$build/tools/cbor-verify
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$mesh_sim" ] || { echo "FAIL - $mesh_sim is not built"; exit 1; }
[ -x "$cbor_verify" ] || { echo "FAIL - $cbor_verify is not built"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-simnet.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
export LC_ALL=C
export PYTHONPATH=$here

passed=0
failed=0
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; shift; for l in "$@"; do echo "    $l"; done; failed=$((failed + 1)); }

# start NAME ARGS...: starts `mesh-sim serve ARGS` in the background and waits for its
# "serving" line; sets $pid and $port.
start() {
    local name=$1
    shift
    "$mesh_sim" serve --no-corpus "$@" 2>"$tmp/$name.err" &
    pid=$!
    pids+=("$pid")
    port=""
    for _ in $(seq 1 1200); do
        port=$(sed -n 's|^mesh-sim: serving .* on http://127.0.0.1:\([0-9]*\) .*|\1|p' "$tmp/$name.err")
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# check NAME PYTHON...: runs the python code (with ws_bin imported, `port` and `tmp` set);
# passes when it exits 0, fails with its output otherwise.
check() {
    local name=$1 code=$2 out
    shift 2
    if out=$(python3 -c "import sys, time, ws_bin; port = int(sys.argv[1]); tmp = sys.argv[2]
$code" "$port" "$tmp" "$@" 2>&1); then
        pass "$name"
    else
        fail "$name" "$out"
    fi
}

# ---- one network: 3 PDSes and a relay with drops and delay; wait until all 400 events are out
start net --pdses 3 --relay --accounts 60 --seed 3 --rate 400 --events 400 --pds-window 30 \
    --relay-drop 0.2 --relay-drop-collection app.bsky.feed.like --relay-delay-ms 20 \
    --truth "$tmp/truth.frames" --did-docs "$tmp/docs.json" ||
    fail "serve --pdses starts" "$(cat "$tmp/net.err")"
check "all 400 events emitted (truth file)" '
deadline = time.time() + 300
while time.time() < deadline:
    try:
        recs = ws_bin.frames(tmp + "/truth.frames")
    except (FileNotFoundError, IndexError, ValueError, AssertionError):
        recs = []  # a partial flush
    if sum(1 for r in recs if r["src"].startswith("pds")) == 400:
        time.sleep(2)  # the relay delays (20 ms mean) and the next flush (1 s)
        sys.exit(0)
    time.sleep(0.2)
sys.exit("the truth file did not reach 400 PDS events")'

# The helpers below read the truth: host → [PDS messages] in seq order.
truth='
recs = ws_bin.frames(tmp + "/truth.frames")
pds = {}
for r in recs:
    if r["src"].startswith("pds"):
        pds.setdefault(r["src"], []).append(r["wire"])
big = max(pds, key=lambda h: len(pds[h]))
n = len(pds[big])
idx = big[3:-5]
assert n > 40, "the busiest PDS emitted only %d events" % n
def sub(path, **kw):
    return ws_bin.Stream(port, path, **kw).read(want=0, quiet=1.5, deadline=60)
def seqs(msgs):
    return [ws_bin.message(m)[1].get("seq") for m in msgs]
'

check "PDS: a cursor inside the window replays the events after it, then stays live" "$truth"'
s = sub("/pds/%s/xrpc/com.atproto.sync.subscribeRepos?cursor=%d" % (idx, n - 10))
assert s.status == 101, s.status
assert s.end == "quiet", s.end
assert seqs(s.messages) == list(range(n - 9, n + 1)), seqs(s.messages)
assert s.messages == pds[big][-10:], "replayed bytes differ from the truth"'

check "PDS: a cursor before the window gives #info OutdatedCursor, then the whole window" "$truth"'
s = sub("/pds/%s/xrpc/com.atproto.sync.subscribeRepos?cursor=0" % idx)
h, p = ws_bin.message(s.messages[0])
assert h == {"op": 1, "t": "#info"} and p["name"] == "OutdatedCursor", (h, p)
assert seqs(s.messages[1:]) == list(range(n - 29, n + 1)), seqs(s.messages[1:])
assert s.messages[1:] == pds[big][-30:]'

check "PDS: a cursor past the head gives error FutureCursor, then close 1008" "$truth"'
s = sub("/pds/%s/xrpc/com.atproto.sync.subscribeRepos?cursor=%d" % (idx, n + 1))
assert len(s.messages) == 1, len(s.messages)
h, p = ws_bin.message(s.messages[0])
assert h == {"op": -1} and p["error"] == "FutureCursor", (h, p)
assert s.end == "close" and s.close_code == 1008, (s.end, s.close_code)'

check "PDS: routing by Host header (pds<i>.test) serves the same stream" "$truth"'
s = ws_bin.Stream(port, "/xrpc/com.atproto.sync.subscribeRepos?cursor=%d" % (n - 2), host=big).read(want=2, quiet=1.5)
assert s.messages == pds[big][-2:], seqs(s.messages)
s = sub("/pds/99/xrpc/com.atproto.sync.subscribeRepos")
assert s.end == "close" and s.close_code == 1008 and not s.messages, (s.end, s.close_code)'

check "relay: its stream from cursor 0 is the union of the PDS streams minus the dropped set" "$truth"'
s = sub("/relay/xrpc/com.atproto.sync.subscribeRepos?cursor=0")
relay = [r for r in recs if r["src"] == "relay.test"]
dropped = [r for r in recs if r["src"] == "dropped.relay.test"]
assert s.messages == [r["wire"] for r in relay], "relay stream differs from the truth relay records"
assert seqs(s.messages) == list(range(1, len(relay) + 1)), "relay seqs are not 1, 2, ..."
emitted = {(h, i + 1): w for h, ws in pds.items() for i, w in enumerate(ws)}
got = {(r["host"], r["hseq"]): r["wire"] for r in relay}
lost = {(r["host"], r["hseq"]): r for r in dropped}
assert len(got) == len(relay) and len(lost) == len(dropped), "an event relayed or dropped twice"
assert not (set(got) & set(lost)), "an event both relayed and dropped"
assert set(got) | set(lost) == set(emitted), "relayed + dropped is not every PDS event"
for k, w in got.items():
    assert ws_bin.without_seq(w) == ws_bin.without_seq(emitted[k]), "relay changed more than the seq of %s" % (k,)
for k, r in lost.items():
    assert r["wire"] == emitted[k] and r["drop"] in ("share", "collection"), r["drop"]
assert len(dropped) > 20, "too few drops (%d) for --relay-drop 0.2" % len(dropped)
for w in got.values():
    for op in ws_bin.message(w)[1].get("ops", []):
        assert not op["path"].startswith("app.bsky.feed.like/"), "a dropped collection was relayed"
# Per host, the relay keeps the PDS order (the delay does not reorder a host).
for h in pds:
    hs = [r["hseq"] for r in relay if r["host"] == h]
    assert hs == sorted(hs), "relay reordered " + h
# A relay cursor past its head goes live quietly (no FutureCursor).
s = sub("/relay/xrpc/com.atproto.sync.subscribeRepos?cursor=%d" % (len(relay) + 1000))
assert s.end == "quiet" and not s.messages, (s.end, len(s.messages))'

check "cbor-verify passes every PDS stream; the relay stream only loses what it dropped" '
import re, subprocess
parts = ws_bin.split_by_src(tmp + "/truth.frames")
for src, data in parts.items():
    if src.startswith("dropped."):
        continue
    relay = src == "relay.test"
    p = subprocess.run([sys.argv[3], "--did-docs", tmp + "/docs.json"] + ([] if relay else ["--strict", "-q"]),
                       input=bytes(data), capture_output=True)
    assert p.returncode == 0, "%s: exit %d: %s" % (src, p.returncode, p.stderr.decode()[-500:])
    assert relay or len(p.stdout) >= len(data), src
    if relay:
        # A dropped commit leaves a hole in its account chain (ok-gap), a dropped reactivation
        # makes the next commits of the account inactive; nothing else may be rejected.
        summary = p.stderr.decode().strip().splitlines()[-1]
        verdicts = set(re.findall(r"([a-z-]+) [0-9,]+[,)]", summary.split("(", 1)[1]))
        assert verdicts <= {"ok", "ok-gap", "inactive"}, summary' "$cbor_verify"

check "the relay says atproto-relay in its upgrade answer, a PDS does not" '
r = ws_bin.Stream(port, "/relay/xrpc/com.atproto.sync.subscribeRepos")
p = ws_bin.Stream(port, "/pds/0/xrpc/com.atproto.sync.subscribeRepos")
assert r.status == 101 and "atproto-relay" in r.headers.get("server", ""), r.headers
assert p.status == 101 and "atproto-relay" not in p.headers.get("server", ""), p.headers'

check "listHosts pages through the hosts that emitted; listRepos, describeServer" "$truth"'
import json, urllib.request
def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=60) as r:
        return json.loads(r.read())
hosts, cursor = [], None
for _ in range(10):
    page = get("/relay/xrpc/com.atproto.sync.listHosts?limit=1" + ("&cursor=" + cursor if cursor else ""))
    hosts += [h["hostname"] for h in page["hosts"]]
    cursor = page.get("cursor")
    if not cursor:
        break
assert hosts == sorted(pds), (hosts, sorted(pds))
d = get("/pds/%s/xrpc/com.atproto.server.describeServer" % idx)
assert d["did"] == "did:web:" + big, d
repos = get("/pds/%s/xrpc/com.atproto.sync.listRepos?limit=1000" % idx)["repos"]
docs = json.load(open(tmp + "/docs.json"))
assert repos and all(docs[r["did"]]["service"][0]["serviceEndpoint"] == "https://" + big for r in repos), repos[:2]'

kill -TERM "$pid"
wait "$pid"
rc=$?
if [ "$rc" = 0 ] && grep -q "400 events emitted" "$tmp/net.err" && grep -q "stopped by SIGTERM" "$tmp/net.err"; then
    pass "SIGTERM: exit 0 with a summary"
else
    fail "SIGTERM: exit 0 with a summary" "exit $rc" "$(tail -3 "$tmp/net.err")"
fi

# ---- many subscribers at once: 100 PDSes and the relay, each read from cursor 0 concurrently
start many --pdses 100 --relay --accounts 300 --seed 5 --rate 500 --events 1500 --truth "$tmp/many.frames" ||
    fail "serve --pdses 100 starts" "$(cat "$tmp/many.err")"
check "101 concurrent subscribers each get exactly the stream of their host" '
import threading
subs, want, done = {}, {}, threading.Event()
def run(name, path):
    s = ws_bin.Stream(port, path)
    subs[name] = s
    stop_at = time.time() + 240
    while time.time() < stop_at:
        s.read(want=0, quiet=0.5, deadline=5)
        if s.end != "quiet":
            break
        if done.is_set() and len(s.messages) >= len(want.get(name, [])):
            s.read(want=0, quiet=0.5, deadline=5)  # anything more would be a duplicate
            break
threads = [threading.Thread(target=run, args=("pds%d.test" % i, "/pds/%d/xrpc/com.atproto.sync.subscribeRepos?cursor=0" % i))
           for i in range(100)]
threads.append(threading.Thread(target=run, args=("relay.test", "/relay/xrpc/com.atproto.sync.subscribeRepos?cursor=0")))
for t in threads: t.start()
stop_at = time.time() + 240
while time.time() < stop_at and not done.is_set():
    try:
        recs = ws_bin.frames(tmp + "/many.frames")
    except (IndexError, ValueError, AssertionError):
        recs = []
    if sum(1 for r in recs if r["src"] == "relay.test") == 1500:
        for r in recs:
            want.setdefault(r["src"], []).append(r["wire"])
        done.set()
    time.sleep(0.2)
for t in threads: t.join()
assert done.is_set(), "the truth did not reach 1500 relayed events"
for name, s in subs.items():
    assert s.messages == want.get(name, []), "%s: %d messages, truth %d" % (name, len(s.messages), len(want.get(name, [])))
assert sum(1 for k in want if k.startswith("pds")) > 10, "too few hosts emitted"'
kill -TERM "$pid"
wait "$pid"

# ---- ConsumerTooSlow: a reader that stops reading (tiny receive buffer) while 20,000 events
# (about 20 MB: far more than the socket buffers hold) go out
start slow --pdses 1 --relay --accounts 30 --pool 300 --rate 10000 --events 20000 --truth "$tmp/slow.frames" ||
    fail "serve for ConsumerTooSlow starts" "$(cat "$tmp/slow.err")"
check "ConsumerTooSlow: the PDS sends the error frame and closes 1008, the relay drops TCP with no close frame" '
p = ws_bin.Stream(port, "/pds/0/xrpc/com.atproto.sync.subscribeRepos", rcvbuf=4096)
r = ws_bin.Stream(port, "/relay/xrpc/com.atproto.sync.subscribeRepos", rcvbuf=4096)
deadline = time.time() + 300
while time.time() < deadline:  # until 8,000 events are out (the truth file is flushed each second)
    try:
        # (not all 20,000: a reader that takes nothing for 10 s after the error is cut instead)
        if sum(1 for x in ws_bin.frames(tmp + "/slow.frames") if x["src"] == "pds0.test") >= 8000:
            break
    except (IndexError, ValueError, AssertionError):
        pass
    time.sleep(0.5)
p.read(deadline=60)
r.read(deadline=60)
assert p.messages, "the PDS sent nothing"
h, b = ws_bin.message(p.messages[-1])
assert h == {"op": -1} and b["error"] == "ConsumerTooSlow", (h, b)
assert p.end == "close" and p.close_code == 1008, (p.end, p.close_code)
assert len(p.messages) < 20000, len(p.messages)
assert r.end in ("eof", "reset"), r.end
assert len(r.messages) < 20000 and all(ws_bin.message(m)[0].get("op") == 1 for m in r.messages)'
kill -TERM "$pid"
wait "$pid"

# ---- faults: cuts, restarts, accept-then-drop
start cut --pdses 1 --accounts 30 --rate 100 --cut-every 1 || fail "serve --cut-every starts" "$(cat "$tmp/cut.err")"
check "--cut-every: a live subscription ends without a close frame" '
s = ws_bin.Stream(port, "/pds/0/xrpc/com.atproto.sync.subscribeRepos").read(deadline=60)
assert s.end in ("eof", "reset"), s.end'
kill -TERM "$pid"
wait "$pid"

start restart --pdses 1 --accounts 30 --rate 300 --pds-restart-every 3 ||
    fail "serve --pds-restart-every starts" "$(cat "$tmp/restart.err")"
check "--pds-restart-every: connections are cut, the log restarts at seq 1 (the old head is a future cursor)" '
for attempt in range(4):
    # From cursor 0 until the cut: the last seq seen is the head at the restart.
    s = ws_bin.Stream(port, "/pds/0/xrpc/com.atproto.sync.subscribeRepos?cursor=0").read(deadline=60)
    assert s.end in ("eof", "reset"), s.end
    last = ws_bin.message(s.messages[-1])[1]["seq"] if s.messages else 0
    if last >= 100:
        break
assert last >= 100, "no full epoch seen"
t = ws_bin.Stream(port, "/pds/0/xrpc/com.atproto.sync.subscribeRepos?cursor=%d" % last).read(deadline=60)
h, b = ws_bin.message(t.messages[0])
assert b.get("error") == "FutureCursor" and t.close_code == 1008, b
u = ws_bin.Stream(port, "/pds/0/xrpc/com.atproto.sync.subscribeRepos?cursor=0").read(want=1, quiet=0.3, deadline=60)
assert u.messages and ws_bin.message(u.messages[0])[1]["seq"] == 1'
kill -TERM "$pid"
wait "$pid"

start flaky --pdses 2 --accounts 30 --rate 100 --accept-drop 1 || fail "serve --accept-drop starts" "$(cat "$tmp/flaky.err")"
check "--accept-drop: the upgrade is accepted, then the connection is cut with nothing sent" '
s = ws_bin.Stream(port, "/pds/1/xrpc/com.atproto.sync.subscribeRepos?cursor=0").read(deadline=60)
assert s.status == 101 and s.end in ("eof", "reset") and not s.messages, (s.status, s.end, len(s.messages))'
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" = 130 ] && pass "SIGINT: exit 130" || fail "SIGINT: exit 130" "exit $rc"

# ---- --events with --linger: exits by itself
if timeout 300 "$mesh_sim" serve --no-corpus --pdses 2 --accounts 20 --rate 500 --events 50 --linger 0.5 2>"$tmp/linger.err" &&
    grep -q "50 events emitted" "$tmp/linger.err"; then
    pass "--events with --linger exits 0 after the last event"
else
    fail "--events with --linger exits 0 after the last event" "$(cat "$tmp/linger.err")"
fi

# ---- --pool: pre-generated messages sent in turn, each PDS still numbering its own events
if timeout 300 "$mesh_sim" serve --no-corpus --pdses 4 --accounts 20 --pool 50 --rate 5000 --events 600 --linger 0 \
    --truth "$tmp/pool.frames" 2>"$tmp/pool.err"; then
    port=0
    check "--pool: 600 events from a pool of 50, consecutive seqs per PDS" '
recs = ws_bin.frames(tmp + "/pool.frames")
assert len(recs) == 600, len(recs)
by = {}
for r in recs:
    by.setdefault(r["src"], []).append(ws_bin.message(r["wire"])[1]["seq"])
for src, seqs in by.items():
    assert seqs == list(range(1, len(seqs) + 1)), src
assert len({ws_bin.without_seq(r["wire"]) for r in recs}) <= 50'
else
    fail "--pool runs" "$(cat "$tmp/pool.err")"
fi

# ---- usage errors exit 2 with one line
for args in "--pdses 0" "--pdses 2 --relay-drop 0.1" "--pdses 2 --relay --relay-drop 1.5" \
    "--pdses 2 --relay --relay-drop-host pds7.test" "--pdses 2 --plc" "--pdses 2 --linger 3" \
    "--plc --truth x" "--pdses 2 --start 5" "--pdses 2 --pool 0" "--pdses 2 --too-slow 0" "--plc --too-slow 5"; do
    # shellcheck disable=SC2086
    "$mesh_sim" serve --no-corpus $args >/dev/null 2>"$tmp/usage.err"
    rc=$?
    if [ "$rc" = 2 ] && [ "$(wc -l <"$tmp/usage.err")" = 1 ]; then
        pass "usage: serve $args → exit 2"
    else
        fail "usage: serve $args → exit 2" "exit $rc" "$(cat "$tmp/usage.err")"
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
