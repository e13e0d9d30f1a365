#!/bin/sh
# Installs the bench-only JavaScript peers (bench/peers/node_modules) from the npm registry, exactly as
# pinned in package-lock.json. Idempotent: does nothing if node_modules already matches the lock file.
# Usage: bench/peers/setup.sh [--force]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

die() { printf 'bench/peers/setup.sh: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node not found (need Node.js >= 20 with npm)"
command -v npm >/dev/null 2>&1 || die "npm not found (need Node.js >= 20 with npm); the JS peers cannot be installed"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || die "node does not run"
[ "$node_major" -ge 20 ] 2>/dev/null || die "node $(node --version) is too old (need >= 20)"

stamp=node_modules/.sovereign-peers.stamp
want=$(cat package.json package-lock.json 2>/dev/null | cksum)
if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# --engine-strict=false: the @atproto packages declare node >= 22 but run on node 20 (checked by the peers'
# own runs on the capture and mesh-sim traffic); keep npm from refusing if the user config says otherwise.
if [ -f package-lock.json ]; then cmd=ci; else cmd=install; fi
log=$(mktemp "${TMPDIR:-/tmp}/sovereign-peers-npm.XXXXXX")
if ! npm "$cmd" --no-audit --no-fund --loglevel=error --engine-strict=false >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  die "npm $cmd failed (is the npm registry reachable?)"
fi
rm -f "$log"
printf '%s\n' "$want" >"$stamp"
