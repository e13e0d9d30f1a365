#!/usr/bin/env bash
# Regenerates the committed demo sample (data/sample/): 2,000 messages of mesh-sim traffic
# from 100 accounts with built-in record content (no corpus), and their DID documents.
# The test `sample_reproducible` checks that this command still yields identical bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-build}/tools
$T/mesh-sim gen -q --no-corpus --accounts 100 --events 2000 --seed 1 \
  --did-docs data/sample/did-docs.json | zstd -19 -q -f -o data/sample/sample.frames.zst
ls -l data/sample
