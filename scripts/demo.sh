#!/usr/bin/env bash
# Sets up, builds and runs the main job on the default input, then prints what it did.
#   1. The committed sample (data/sample: 2,000 messages of mesh-sim traffic from 100
#      accounts, k256 and p256 keys, with their DID documents) is verified in full: CAR and
#      block CIDs, commit, signature, MST proof by inversion, seq/rev/account order.
#   2. When the shared corpus is present, the real relay capture (150 frames from
#      bsky.network) goes through frame-cat and cbor-verify the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
SOVEREIGN_NO_FUZZ=1 ./scripts/setup.sh  # the demo needs no clang (only the fuzz suite does)
T=build/tools
out="${TMPDIR:-/tmp}/sovereign-demo"; mkdir -p "$out"

summary() {  # verdicts by message type of a verified frame stream
  $T/frame-cat --to json -q "$1" | python3 -c '
import json, sys, collections
c = collections.Counter()
for line in sys.stdin:
    j = json.loads(line)
    c[(j.get("header", {}).get("t", "?"), j.get("vrd", "-"))] += 1
for (t, v), n in sorted(c.items()):
    print(f"  {t:10} {v:8} {n}")'
}

echo "demo: [1] cbor-verify --did-docs data/sample/did-docs.json data/sample/sample.frames.zst > $out/sample.verified.frames" >&2
$T/cbor-verify --did-docs data/sample/did-docs.json data/sample/sample.frames.zst > "$out/sample.verified.frames"
summary "$out/sample.verified.frames"

corpus="${SOVEREIGN_CORPUS:-../shared/corpus}"
cap="$corpus/relay-capture/frames.u32le.zst"
docs="$corpus/relay-capture/did-docs.json.zst"
if [ -f "$cap" ] && [ -f "$docs" ]; then
  echo "demo: [2] frame-cat --from raw-u32le --src bsky.network $cap | cbor-verify --did-docs $docs > $out/capture.verified.frames" >&2
  $T/frame-cat --from raw-u32le --src bsky.network "$cap" | $T/cbor-verify --did-docs "$docs" > "$out/capture.verified.frames"
  summary "$out/capture.verified.frames"
else
  echo "demo: [2] skipped: the real relay capture is not at $cap (set SOVEREIGN_CORPUS)" >&2
fi
echo "demo: verified frames are in $out/ (read them: $T/frame-cat --to json $out/sample.verified.frames | jq .)" >&2
