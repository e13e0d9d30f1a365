#!/usr/bin/env bash
# The committed sample (data/sample) is exactly what scripts/make-sample.sh's mesh-sim command
# produces, and all of it verifies. Usage: check_sample.sh BUILD_DIR SOURCE_DIR
set -u
build=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$build/tools/mesh-sim" gen -q --no-corpus --accounts 100 --events 2000 --seed 1 --did-docs "$tmp/docs.json" > "$tmp/s.frames" || exit 1
zstd -dc "$src/data/sample/sample.frames.zst" | cmp - "$tmp/s.frames" || { echo "FAIL: sample frames differ from a fresh mesh-sim run"; exit 1; }
cmp "$tmp/docs.json" "$src/data/sample/did-docs.json" || { echo "FAIL: sample DID documents differ"; exit 1; }
out=$("$build/tools/cbor-verify" --strict --did-docs "$src/data/sample/did-docs.json" "$src/data/sample/sample.frames.zst" 2>&1 >/dev/null) || { echo "FAIL: $out"; exit 1; }
echo "$out" | grep -q "2,000 frames: 2,000 passed, 0 rejected" || { echo "FAIL: unexpected summary: $out"; exit 1; }
echo "ok: sample reproducible and verified ($out)"
