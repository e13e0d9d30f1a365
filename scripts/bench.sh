#!/usr/bin/env bash
# Runs the benchmarks and rewrites docs/PERFORMANCE.md with the results, the command and
# the machine. Usage: scripts/bench.sh [BUILD_DIR] [--only realistic|clusters|plc]   (also: meson compile -C build bench)
# --only realistic (or clusters, plc) runs just the realistic-profile (or cluster-size, PLC) section and
# replaces it in place in docs/PERFORMANCE.md. PLC_ACCOUNTS (default 200000) sizes the directory
# the end-to-end plc-sync run mirrors; PLC_BENCH_ACCOUNTS (default 5000) the one of bench_plc. REAL_EVENTS (default 1000000) sets the size of that traffic and
# REAL_SWEEP_EVENTS (default all of it) how much of it the segment-size sweep packs (its
# zstd -19 --long=27 baseline costs ~15 CPU-minutes per GB: bound it on a busy machine).
# Peers (TypeScript reference @atproto/repo, and @atcute) are installed from npm into
# bench/peers/node_modules by bench/peers/setup.sh; skipped with a note if npm is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
only="${3:-}"; [ "${2:-}" = "--only" ] || only=""
corpus="${SOVEREIGN_CORPUS:-$(pwd)/../shared/corpus}"
[ -d "$corpus" ] || { echo "bench: corpus absent at $corpus (set SOVEREIGN_CORPUS)" >&2; exit 2; }
if [ "$only" = plc ]; then
  ninja -C "$build" bench/bench_plc tools/mesh-sim tools/plc-sync >/dev/null
else
  ninja -C "$build" bench/bench_core bench/bench_cvl bench/bench_plc tools/frame-cat tools/mesh-sim tools/plc-sync tools/cvl-pack tools/cvl-cat >/dev/null
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cores=$(nproc); mem=$(free -g | awk '/Mem:/{print $2}')
load=$(cut -d' ' -f1-3 /proc/loadavg)

# --- CVL on the realistic profile (mesh-sim gen --profile realistic) ---------------------
# Generates REAL_EVENTS messages once (kept in $build/bench-data, never committed), records
# generation rate and peak RSS, compares the traffic's shape with the capture, runs bench_cvl
# on it and sweeps the segment size with cvl-pack against zstd -3 and zstd -19 --long.
realistic_section() {
  local data="$build/bench-data" n="${REAL_EVENTS:-1000000}" f t0 t1
  mkdir -p "$data"; f="$data/real-$n.frames"
  if [ ! -s "$f" ]; then
    /usr/bin/time -v "$build/tools/mesh-sim" gen -q --profile realistic --events "$n" -o "$f" 2> "$data/real-$n.gen.log"
  fi
  local gen="generation not timed in this run (the file was already there)"
  if [ -s "$data/real-$n.gen.log" ]; then
    gen=$(python3 - "$data/real-$n.gen.log" "$n" <<'PY'
import re, sys
log = open(sys.argv[1]).read(); n = int(sys.argv[2])
wall = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', log).group(1)
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(':'))))
cpu = float(re.search(r'User time \(seconds\): (\S+)', log).group(1)) + float(re.search(r'System time \(seconds\): (\S+)', log).group(1))
rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', log).group(1))
print(f'generated in {wall} wall ({n/secs:,.0f} messages/s; {cpu:,.0f} CPU-seconds, {n/cpu:,.0f} messages per CPU-second), peak RSS {rss//1024:,} MiB (`/usr/bin/time -v`)')
PY
)
  fi
  "$build/tools/frame-cat" -q --from raw-u32le --src bsky.network "$corpus/relay-capture/frames.u32le.zst" > "$tmp/cap.frames"
  "$build/tools/mesh-sim" stats "$tmp/cap.frames" > "$tmp/shape-cap"
  "$build/tools/mesh-sim" stats "$f" > "$tmp/shape-real"
  local sweep="$f" sn="${REAL_SWEEP_EVENTS:-}"
  if [ -n "$sn" ] && [ "$sn" -lt "$n" ]; then sweep="$tmp/sweep.frames"; "$build/tools/frame-cat" -q -n "$sn" "$f" > "$sweep"; fi
  local cvl
  cvl=$("$build/bench/bench_cvl" "$sweep" --tmp "$tmp" --random 20000 2>/dev/null | sed "s|$tmp/sweep.frames|first $sn messages of $f|")
  local raw z3 z19 rows=""
  raw=$(stat -c %s "$sweep")
  z3=$(zstd -3 -T2 -q -c "$sweep" | wc -c)
  z19=$(zstd -19 --long=27 -T2 -q -c "$sweep" | wc -c)
  for seg in 16 64 256 1024; do
    rm -rf "$tmp/sweep-arch"
    "$build/tools/cvl-pack" -q -o "$tmp/sweep-arch" --threads 2 --segment-bytes $((seg << 20)) --segment-messages 4000000000 "$sweep"
    local size
    size=$(( $(cat "$tmp"/sweep-arch/shard/*/*.dat | wc -c) + $(cat "$tmp"/sweep-arch/dict/* | wc -c) ))
    rows+=$(python3 -c "
raw, size, z3, z19, seg = $raw, $size, $z3, $z19, $seg
print(f'| {seg} MiB | {size/1e6:,.1f} MB ({raw/size:.2f}×) | {z3/size:.2f}× | {z19/size:.2f}× |')")$'\n'
    rm -rf "$tmp/sweep-arch"
  done
  echo "<!-- realistic:begin -->"
  echo "## CVL on the realistic profile"
  echo
  echo "\`mesh-sim gen --profile realistic --events $n\` (200,000 accounts, Zipf 0.7, repositories of median"
  echo "15,000 records, 1 GiB repository budget, entropic records; man/mesh-sim.1.md), $(python3 -c "print(f'{$(stat -c %s "$f")/1e9:.2f}')") GB:"
  echo "$gen; load average at start of this section: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "Shape against the relay capture (\`mesh-sim stats\`, windows of 150 messages, zstd -3 per window):"
  echo
  echo "| figure | capture | realistic | realistic / capture |"
  echo "|---|---|---|---|"
  python3 - "$tmp/shape-cap" "$tmp/shape-real" <<'PY'
import sys
a = dict(l.split() for l in open(sys.argv[1])); b = dict(l.split() for l in open(sys.argv[2]))
for k in ('bytes_per_message', 'blocks_per_commit', 'nodes_per_commit', 'node_bytes', 'record_bytes',
          'cid_share', 'repeated_did_share', 'zstd_wire', 'zstd_nodes', 'zstd_records', 'zstd_commits'):
    x, y = float(a[k]), float(b[k])
    print(f'| {k} | {a[k]} | {b[k]} | {y/x:.2f} |' if x else f'| {k} | {a[k]} | {b[k]} | |')
PY
  echo
  echo "bench_cvl on it (default segments: 64 MiB / 65,536 messages):"
  echo
  echo "| measurement | CVL | baseline | ratio |"
  echo "|---|---|---|---|"
  echo "$cvl"
  echo
  echo "Segment size (cvl-pack --segment-bytes, level 3, 2 threads; CVL = shard data + dictionaries) on"
  echo "$(python3 -c "print(f'{$raw/1e9:.2f}')") GB of it, against zstd -3 -T2 of the raw frame stream ($(python3 -c "print(f'{$z3/1e6:,.1f}')") MB, $(python3 -c "print(f'{$raw/$z3:.2f}')")×)"
  echo "and zstd -19 --long=27 -T2 ($(python3 -c "print(f'{$z19/1e6:,.1f}')") MB, $(python3 -c "print(f'{$raw/$z19:.2f}')")×); see docs/CVL-SEGMENTS.md:"
  echo
  echo "| segment | CVL with dictionaries | CVL vs zstd -3 | CVL vs zstd -19 --long |"
  echo "|---|---|---|---|"
  printf '%s' "$rows"
  echo "<!-- realistic:end -->"
}

# --- Cluster size: stored bytes against random-access CPU (cvl-pack --cluster-bytes) -------
# Packs the realistic traffic (REAL_EVENTS, generated by the realistic section) and the default
# mesh-sim traffic (sim1m) with 64, 128 and 256 KiB clusters and reads 20,000 random ordinals
# of each archive twice (bench_cvl --archive: the second, warm pass is reported).
clusters_section() {
  local data="$build/bench-data" rows="" f name kib arch line
  for f in "$data/real-${REAL_EVENTS:-1000000}.frames" "$data/sim1m.frames"; do
    [ -s "$f" ] || continue
    name=$(basename "$f" .frames)
    for kib in 64 128 256; do
      arch="$tmp/clusters-$kib"; rm -rf "$arch"
      "$build/tools/cvl-pack" -q -o "$arch" --threads 2 --cluster-bytes $((kib << 10)) "$f"
      line=$("$build/bench/bench_cvl" --archive "$arch" --random 20000 2>&1 >/dev/null | grep '^CVL archive=')
      rows+=$(python3 - "$line" "$kib" "$name" "$(( $(cat "$arch"/shard/*/*.dat | wc -c) + $(cat "$arch"/dict/* | wc -c) ))" "$(stat -c %s "$f")" <<'PY'
import sys
kv = dict(x.split('=') for x in sys.argv[1].split()[1:]); kib, name, size, raw = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
print(f"| {name} | {kib} KiB | {size/1e6:,.1f} MB ({raw/size:.2f}×) | {float(kv['random_us']):.1f} µs ({float(kv['random_cpu_us']):.1f} µs CPU) | {float(kv['point_ms']):.2f} ms | {kv['seq_mb_s']} MB/s |")
PY
)$'\n'
      rm -rf "$arch"
    done
  done
  echo "<!-- clusters:begin -->"
  echo "## Cluster size"
  echo
  echo "\`cvl-pack --threads 2 --cluster-bytes N\` (stored = shard data + dictionaries), then"
  echo "\`bench_cvl --archive DIR --random 20000\` (random access: the warm second pass over 20,000 random"
  echo "ordinals; point read: fresh open + one read, median of 20). Load average at start of this section:"
  echo "$load. The default is 64 KiB."
  echo
  echo "| traffic | cluster | stored | random access | point read | sequential read |"
  echo "|---|---|---|---|---|---|"
  printf '%s' "$rows"
  echo
  echo "Larger clusters compress better where a few DIDs write most messages (the default mesh-sim"
  echo "profile), barely on realistic traffic, and every random read decompresses one cluster: hence the"
  echo "64 KiB default; \`--cluster-bytes 262144\` suits archives of heavily repeating traffic."
  echo "<!-- clusters:end -->"
}

# --- PLC: op validation and export parse (bench_plc), then plc-sync end to end -------------
# bench_plc on a PLC_BENCH_ACCOUNTS directory; then `mesh-sim serve --plc --accounts
# PLC_ACCOUNTS` on loopback and one `plc-sync -o DIR --url` from empty to caught up, under
# /usr/bin/time -v (the server runs on the same 2 cores: its CPU time is reported beside).
plc_section() {
  local n="${PLC_ACCOUNTS:-200000}" bn="${PLC_BENCH_ACCOUNTS:-5000}" load0 bench port="" pid i t0 t1 cpu0 cpu1 tick
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  bench=$("$build/bench/bench_plc" --accounts "$bn" 2>"$tmp/plc-bench.err") || { cat "$tmp/plc-bench.err" >&2; return 1; }
  "$build/tools/mesh-sim" serve --plc --accounts "$n" --seed 7 2>"$tmp/plc-serve.err" &
  pid=$!
  t0=$(date +%s.%N)
  for i in $(seq 1 6000); do
    port=$(sed -n 's|^mesh-sim: serving PLC on http://127.0.0.1:\([0-9]*\)$|\1|p' "$tmp/plc-serve.err")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "bench: mesh-sim serve --plc did not start:" >&2; cat "$tmp/plc-serve.err" >&2; kill "$pid" 2>/dev/null; return 1; }
  t1=$(date +%s.%N)
  tick=$(getconf CLK_TCK)
  cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local load1; load1=$(cut -d' ' -f1-3 /proc/loadavg)
  /usr/bin/time -v "$build/tools/plc-sync" -o "$tmp/plc-mirror" --url "http://127.0.0.1:$port" 2>"$tmp/plc-sync.log"
  cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local m="$tmp/plc-mirror" total
  total=$(du -sb "$m" | cut -f1)
  local e2e
  e2e=$(python3 - "$tmp/plc-sync.log" "$n" "$total" "$(stat -c %s "$m/did.cache")" "$(cat "$m"/export/* | wc -c)" \
        "$(stat -c %s "$m/ops.bin")" "$(stat -c %s "$m/rejected.jsonl")" "$(python3 -c "print(($cpu1 - $cpu0) / $tick)")" \
        "$(python3 -c "print($t1 - $t0)")" "$(sed -n 's/^PLCBENCH .*val1=\([0-9]*\).*/\1/p' "$tmp/plc-bench.err")" <<'PY'
import re, sys
log = open(sys.argv[1]).read(); n = int(sys.argv[2]); total, cache, export, ops_bin, rej = map(int, sys.argv[3:8])
srv_cpu, gen_wall, val1 = float(sys.argv[8]), float(sys.argv[9]), float(sys.argv[10] or 0)
m = re.search(r'plc-sync: ([\d,]+) lines?, ([\d,]+) accepted, ([\d,]+) rejected, ([\d,]+) duplicate, ([\d,]+) DIDs; ([\d,]+) requests?', log)
if not m:
    sys.exit('bench: no plc-sync summary line in:\n' + log)
lines, acc, rej_n, dup, dids, reqs = (int(x.replace(',', '')) for x in m.groups())
wall = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', log).group(1)
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(':'))))
user = float(re.search(r'User time \(seconds\): (\S+)', log).group(1)); sys_ = float(re.search(r'System time \(seconds\): (\S+)', log).group(1))
rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', log).group(1))
cpu = user + sys_
print(f'| export lines mirrored | {lines:,} ({acc:,} accepted, {rej_n:,} rejected, {dup:,} duplicate) from {dids:,} DIDs, {reqs:,} requests of up to 1,000 lines |')
print(f'| wall time | {wall} = {lines/secs:,.0f} ops/s |')
print(f'| plc-sync CPU time | {cpu:,.1f} s ({user:,.1f} user + {sys_:,.1f} system) = {lines/cpu:,.0f} ops per CPU-second; peak RSS {rss//1024:,} MiB |')
if val1:
    print(f'| against validation alone (bench_plc above, 1 thread) | {1e6*cpu/lines:,.0f} µs of CPU per op = {100*(lines/cpu)/val1:.0f}% of the validation rate ({1e6/val1:,.0f} µs per op); the rest: HTTP and parse, page commit (zstd, fsync), op store, DID cache update and sync |')
print(f'| mesh-sim serve CPU time during the sync (same 2 cores) | {srv_cpu:,.1f} s (its generation of the directory before: {gen_wall:,.0f} s wall, not counted) |')
print(f'| mirror size | {total/1e6:,.1f} MB = {total/lines:,.0f} bytes per op: export chunks {export/lines:,.0f}, ops.bin {ops_bin/acc:,.0f} per accepted op, rejected.jsonl {rej/1e3:,.1f} kB |')
print(f'| did.cache | {cache/1e6:,.1f} MB = {cache/dids:,.0f} bytes per DID (the file: slots, and its heap with the room it grows into) |')
PY
) || return 1
  echo "<!-- plc:begin -->"
  echo "## PLC directory: validation and sync"
  echo
  echo "\`$build/bench/bench_plc --accounts $bn\` (bench/bench_plc.cpp) then \`mesh-sim serve --plc --accounts $n --seed 7\`"
  echo "and \`/usr/bin/time -v plc-sync -o DIR --url http://127.0.0.1:PORT\` from an empty DIR to caught up, on"
  echo "$cpu, $cores cores, ${mem} GiB RAM, $(date -u +%Y-%m-%d). The machine is shared and was busy:"
  echo "load average $load0 at the start of this section, $load1 when plc-sync started (2 cores)."
  echo
  echo "$bench"
  echo
  echo "End to end, \`plc-sync --url\` against \`mesh-sim serve --plc\` on loopback (one run; the server and"
  echo "plc-sync share the 2 cores, every page is fsynced and committed, the cache updated per page):"
  echo
  echo "| figure | value |"
  echo "|---|---|"
  echo "$e2e"
  echo
  cat <<'EOF_NOTES'
Reading it:

- *Validation / raw* stays far from the 90% goal after the change to public-key recovery, for two
  reasons. First, with the public API of the Debian libsecp256k1 (0.2) a k256 recovery of both
  candidate keys costs about 1.9 verifies (step table): `secp256k1_ecdsa_recover` returns one y
  parity's key per call (one variable-time double multiplication, a verify's worth of work), and
  the other parity's key is T − Q with T = −(2e/r)·G, a constant-time fixed-base multiplication
  (`secp256k1_ec_pubkey_create`, about 0.6 of a verify, the only fixed-base multiplication the
  API offers) after r⁻¹ mod n; a second `secp256k1_ecdsa_recover` would cost more. On P-256
  (OpenSSL's EC_POINT API: u2·R once, u1·G from OpenSSL's precomputed table, Q = u1·G ± u2·R) a
  recovery is about 1.3 verifies: R's decompression (a square root) and two compressions come on
  top of a verify's multiplications. Both parities are always needed on this mix: the simulated
  accounts sign with the key at index 1 (the recovery key at index 0 signs only
  nullifications), so either the first candidate is that key and the second must be compared
  with index 0, or the first is neither. Hence the *raw key recovery* column, one recovery per
  accepted op, is itself only about 60% of *raw*.
- The validator therefore recovers only where that saves work, and stays exact either way
  (comparing with the recovered keys and verifying give the same answer for every key, see
  `crypto::recover`): p256 always (a recovery costs less than building OpenSSL's EVP_PKEY for a
  key and verifying), k256 when two or more k256 keys are left to try; a lone k256 key is
  verified directly. The header line counts what that makes on this directory. Against the
  previous method, a verify per key tried (its column), the signature work is a few percent
  lower, and p256 keys no longer cost an EVP_PKEY each (the per-thread memo of decoded keys now
  holds points checked to be on their curve, not verify contexts). Doing much better needs both
  parities from one variable-base multiplication u2·R plus a variable-time table multiplication
  u1·G, about one verify: libsecp256k1 has them inside, not in its API.
- Second, even at one verify per op the rest of an op's time bounds *validation / raw*:
  `check_limits` (DAG-CBOR size, field checks, each rotation key decoded and checked on its curve:
  a point decompression, 5 µs k256, about 20 µs p256 through OpenSSL), the op's DAG-CBOR three
  times with two SHA-256, and the Log's bookkeeping: about 20 µs per line beside a 40 µs k256
  verify. (The mirror also parses the signing keys of a DID's history, read back from `ops.bin`,
  at every page that touches the DID: a per-string parse memo was measured but not kept, in
  favour of the mirror's 56-byte in-memory op records.)
- `parse_export_line` is not the bottleneck: at about 3 µs per 720-byte line it is under 3% of an
  op's validation. Its distance to memcpy is simdjson On-Demand plus strict field checks that build
  each field's path string and copy every string into the `Operation` (many small allocations
  per line); building the paths only on the error path would save part of it, for at most a
  percent or two of the sync: not done.
- End to end, `perf record --call-graph dwarf` of a plc-sync run (20,000 accounts, taken while
  writing an earlier version of this section, before key recovery, not in this run): `apply_op`
  (the validation) was about 60% of plc-sync's CPU (signature verifies 46%, `check_limits` 13%,
  mostly preparing the op's rotation keys), the
  DID cache's `Writer::put` and its msync about 14%, zstd of the export pages about 6%, the rest
  fsync, page faults, HTTP and parsing. The wall time also includes the adaptive rate's start
  (2 requests/s, rising) and the server's share of the cores.
- The issue's 10 M-op sync does not fit here: `mesh-sim serve --plc` holds at most 2,000,000
  accounts (about 4.3 M ops), generating them costs about 3 signatures each, and at the rate above
  10 M ops are over half an hour of plc-sync CPU on a shared 2-core machine. PLC_ACCOUNTS scales
  the run.
EOF_NOTES
  echo "<!-- plc:end -->"
}

# Replaces (or adds, before "How to read this") the section between <!-- NAME:begin/end -->.
splice_section() {
  python3 - docs/PERFORMANCE.md "$1" "$2" <<'PY'
import re, sys
path, name, new = sys.argv[1], sys.argv[2], sys.argv[3]
doc = open(path).read()
if '<!-- %s:begin -->' % name in doc:
    doc = re.sub(r'<!-- %s:begin -->.*?<!-- %s:end -->' % (name, name), lambda m: new, doc, flags=re.S)
else:
    doc = doc.replace('\n## How to read this', '\n' + new + '\n\n## How to read this', 1)
open(path, 'w').write(doc)
PY
  sed -n "/$1:begin/,/$1:end/p" docs/PERFORMANCE.md
}

if [ "$only" = plc ]; then
  sec=$(plc_section) || exit 1
  splice_section plc "$sec"
  exit 0
fi

if [ "$only" = clusters ]; then
  splice_section clusters "$(clusters_section)"
  exit 0
fi

if [ "$only" = realistic ]; then
  splice_section realistic "$(realistic_section)"
  exit 0
fi

# Not pinned: its 2-thread rows need both cores (the 1-thread rows run on one thread anyway).
core=$("$build/bench/bench_core" "$corpus" --seconds 2 2>"$tmp/rates")
eval "$(sed -n 's/^RATES //p' "$tmp/rates" | tr ' ' '\n' | sed 's/^/r_/')"

# The same inputs for the peers: the capture, and the mesh-sim traffic bench_core generated
# in-process (same options and seed, so the same bytes).
"$build/tools/frame-cat" -q --from raw-u32le --src bsky.network "$corpus/relay-capture/frames.u32le.zst" > "$tmp/cap.frames"
"$build/tools/mesh-sim" gen -q --accounts 1000 --events 5000 --seed 7 --corpus "$corpus/repos" \
  --did-docs "$tmp/sim-docs.json" > "$tmp/sim.frames"
peers=""
if bench/peers/setup.sh >/dev/null 2>&1; then
  for p in atproto atcute; do
    for input in cap sim; do
      docs="$corpus/relay-capture/did-docs.json.zst"; [ $input = sim ] && docs="$tmp/sim-docs.json"
      rate=$(taskset -c 0 node "bench/peers/verify-$p.mjs" "$tmp/$input.frames" "$docs" --seconds 3 2>/dev/null |
             python3 -c 'import json,sys; j=json.loads(sys.stdin.readline()); print("%.0f %d %d %s" % (j["commits_per_s"], j["ok"], j["commits"], j["steps"]))')
      eval "p_${p}_${input}=\"$rate\""
    done
  done
  row() {  # "rate ok n steps" ours label
    set -- $1 "$2" "$3"
    python3 -c "
r, ok, n, steps, ours, label = $1, $2, $3, '$4', float('$5'), '$6'
print(f'| {label} | {r:,.0f} commits/s ({ok}/{n} ok; steps {steps}) | sovereign, 1 thread: {ours:,.0f} commits/s | sovereign = {ours/r:.1f}× |')"
  }
  peers=$(
    echo "| peer, input | peer rate | sovereign on the same input | ratio |"
    echo "|---|---|---|---|"
    row "$p_atproto_cap" "$r_cap1" "TypeScript reference (@atproto/repo + @atproto/crypto), capture"
    row "$p_atproto_sim" "$r_sim1" "TypeScript reference, mesh-sim traffic"
    row "$p_atcute_cap" "$r_cap1" "@atcute (cbor, car, cid, crypto, mst), capture"
    row "$p_atcute_sim" "$r_sim1" "@atcute, mesh-sim traffic"
  )
else
  peers="(peers skipped: bench/peers/setup.sh could not install them — npm missing or registry unreachable)"
fi

# --- CVL archive: the capture and >= 1M messages of mesh-sim traffic (default profile) ---
data="$build/bench-data"; mkdir -p "$data"
if [ ! -s "$data/sim1m.frames" ]; then
  "$build/tools/mesh-sim" gen -q --events 1000000 --seed 1 --did-docs "$data/sim1m-docs.json" -o "$data/sim1m.frames"
fi
cvl_cap=$("$build/bench/bench_cvl" "$tmp/cap.frames" --tmp "$tmp" --random 5000 2>/dev/null | sed "s|$tmp/||")
cvl_sim=$("$build/bench/bench_cvl" "$data/sim1m.frames" --tmp "$tmp" --random 20000 2>/dev/null)
# Point reads and random access at 1 M and 10 M messages (small synthetic envelopes; the
# archives are kept in $data and reused by later runs).
cvl_syn1m=$("$build/bench/bench_cvl" --synthetic 1000000 --tmp "$data" --random 20000 2>/dev/null)
cvl_syn10m=$("$build/bench/bench_cvl" --synthetic 10000000 --tmp "$data" --random 20000 2>/dev/null)
# zstd -19 --long over the raw stream: all of the capture; the first 100,000 messages of the
# sim traffic (-19 runs at a few MB/s), beside CVL on exactly the same 100,000 messages.
z19_cap=$(zstd -19 --long -q -c "$tmp/cap.frames" | wc -c)
"$build/tools/frame-cat" -q -n 100000 "$data/sim1m.frames" > "$tmp/sim100k.frames"
z19_sim=$(zstd -19 --long -T2 -q -c "$tmp/sim100k.frames" | wc -c)
"$build/tools/cvl-pack" -q -o "$tmp/a100k" "$tmp/sim100k.frames"
cvl100k=$(( $(cat "$tmp"/a100k/shard/*/*.dat | wc -c) + $(cat "$tmp"/a100k/dict/* | wc -c) ))
capsz=$(stat -c %s "$tmp/cap.frames"); simsz=$(stat -c %s "$tmp/sim100k.frames")
capcvl=$("$build/tools/cvl-pack" -q -o "$tmp/acap" "$tmp/cap.frames"; echo $(( $(cat "$tmp"/acap/shard/*/*.dat | wc -c) + $(cat "$tmp"/acap/dict/* | wc -c) )))
z19=$(python3 -c "
for name, raw, z, c in (('capture (150 frames)', $capsz, $z19_cap, $capcvl), ('mesh-sim, first 100,000 frames', $simsz, $z19_sim, $cvl100k)):
    print(f'| {name} | CVL with its dictionaries: {c/1e6:,.2f} MB ({raw/c:.2f}×) | zstd -19 --long over the raw frame stream: {z/1e6:,.2f} MB ({raw/z:.2f}×) | CVL {z/c:.2f}× smaller |')")

{
  echo "# Performance"
  echo
  echo "Measured by \`scripts/bench.sh\` (= \`meson compile -C build bench\`), release build. Every figure"
  echo "stands beside the physical limit of the same step, measured in the same run on the same machine."
  echo "Regenerate after any change on the hot path."
  echo
  echo "- Machine: $cpu, $cores cores, ${mem} GiB RAM; load average at start: $load"
  echo "- Date: $(date -u +%Y-%m-%d), compiler: $(c++ --version | head -1), node $(node --version 2>/dev/null || echo absent)"
  echo "- Commands: \`$build/bench/bench_core \$SOVEREIGN_CORPUS --seconds 2\`; \`$build/bench/bench_cvl FRAMES\`;"
  echo "  peers: \`taskset -c 0 node bench/peers/verify-{atproto,atcute}.mjs FRAMES DOCS --seconds 3\`"
  echo "- Inputs: the real relay capture (\`relay-capture/frames.u32le.zst\`, 150 messages, 148 commits, all"
  echo "  k256); mesh-sim traffic \`mesh-sim gen --accounts 1000 --events 5000 --seed 7 --corpus repos/\`"
  echo "  (Zipf 1.1, 10% p256 keys)."
  echo
  echo "## Core verification path"
  echo
  echo "$core"
  echo
  echo "## Against other implementations (one core each)"
  echo
  echo "$peers"
  echo
  echo "## CVL archive"
  echo
  echo "\`bench_cvl FRAMES\` packs the frames with the library exactly as \`cvl-pack\` does (one frame per"
  echo "journal write, journal fsync every second, segments fsynced and renamed), with 1 and then 2 threads,"
  echo "and compares, on the same bytes in the same run:"
  echo
  echo "| measurement | CVL | baseline | ratio |"
  echo "|---|---|---|---|"
  echo "$cvl_cap"
  echo "$cvl_sim"
  echo "$cvl_syn1m"
  echo "$cvl_syn10m"
  echo "$z19"
  echo
  realistic_section
  echo
  clusters_section
  echo
  plc_section
  echo
  echo "## How to read this"
  echo
  echo "- *DAG-CBOR strict validate* is the full rule check of docs/protocol.md §2 over every block of every"
  echo "  CAR slice in the capture. Its limit is reading the bytes at all: a word scan and memcpy."
  echo "- *Full verification* is \`verify::Engine\` exactly as \`cbor-verify\` runs it: message parse, CAR parse,"
  echo "  SHA-256 of every block against its CID, commit checks, signature, MST ops-vs-tree and inversion to"
  echo "  \`prevData\`, then the stateful checks. Its limit is the raw signature verification of the same"
  echo "  (digest, signature, key) triples with pre-parsed keys. The gap is hashing that no verifier can skip"
  echo "  (every block, ~4.7 KB per real commit, and one SHA-256 per MST key for its height) plus parsing."
  echo "- 2 threads: the stateless work of each batch of 1,024 frames is split over 2 threads, the ordered"
  echo "  stateful pass runs on one; on a 2-core machine the ideal is 2× minus that pass."
  echo "- CVL sizes: *chronological* compresses the same frames in arrival order with the same zstd level and
  the same trained dictionary, either cut into as many chunks as CVL has clusters (the same random-access
  granularity: the fair comparison of clustering by DID), or into larger chunks / whole segments (the best
  chronological case, which gives up random access). Dictionary bytes are counted where said.
- Pack MB/s counts envelope bytes in, including journaling, fsyncs and dictionary training; its limit
  is zstd -3 compressing the same bytes on one thread with nothing else to do. "1 thread" is one
  compression thread: sealing runs beside the reading thread, so the per-core figure is the MB per
  CPU-second column (user + system time of the whole pack).
- Random access on the capture is served from the cluster cache (4 clusters in all); on the 1M
  traffic every read decompresses one cluster (at most 64 KiB, the default: --cluster-bytes).
- *Point read* opens the archive afresh and reads one random ordinal, as a one-shot `cvl-cat --ordinal K`
  does: it maps and checks only the index it needs, so its cost does not grow with the archive (synthetic
  archives of 1 M and 10 M small messages, built by `bench_cvl --synthetic N`, show it side by side).
- Peers verify the same steps (CIDs, signature, ops against the tree, inversion): see bench/peers/README.md."
} > docs/PERFORMANCE.md
cat docs/PERFORMANCE.md
