#!/usr/bin/env bash
# Sets up, builds and runs the main job on the default input: the real relay capture
# (150 frames from bsky.network) converted to a frame stream, verified against the DID
# documents captured with it, and summarised.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
corpus="${SOVEREIGN_CORPUS:-../shared/corpus}"
cap="$corpus/relay-capture/frames.u32le.zst"
docs="$corpus/relay-capture/did-docs.json.zst"
if [ ! -f "$cap" ] || [ ! -f "$docs" ]; then
  echo "demo: the default input is missing: $cap and $docs" >&2
  echo "demo: set SOVEREIGN_CORPUS to the shared corpus directory" >&2
  exit 2
fi
out="${TMPDIR:-/tmp}/sovereign-demo"; mkdir -p "$out"
T=build/tools
echo "demo: frame-cat --from raw-u32le --src bsky.network $cap | cbor-verify --did-docs $docs > $out/verified.frames"
$T/frame-cat --from raw-u32le --src bsky.network "$cap" | $T/cbor-verify --did-docs "$docs" > "$out/verified.frames"
echo "demo: verdicts by message type:"
$T/frame-cat --to json -q "$out/verified.frames" | python3 -c '
import json, sys, collections
c = collections.Counter()
for line in sys.stdin:
    j = json.loads(line)
    c[(j.get("header", {}).get("t", "?"), j.get("vrd", "-"))] += 1
for (t, v), n in sorted(c.items()):
    print(f"  {t:10} {v:8} {n}")'
echo "demo: verified frames are in $out/verified.frames (print them: $T/frame-cat --to json $out/verified.frames | jq .)"
