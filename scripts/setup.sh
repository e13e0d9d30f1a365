#!/usr/bin/env bash
# Installs the Debian 12 packages sovereign needs (only those missing) and configures the
# release build in ./build. Safe to run repeatedly. Needs root (or sudo) only to install.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(g++ meson ninja-build pkg-config python3
      libsecp256k1-dev libssl-dev libsodium-dev libzstd-dev zstd libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libcurl4-openssl-dev
      libcxxopts-dev nlohmann-json3-dev libsimdjson-dev catch2 b3sum)
# clang + compiler-rt for the libFuzzer suite; pandoc turns man/*.md into man pages.
[ "${SOVEREIGN_NO_FUZZ:-}" = 1 ] || PKGS+=(clang libclang-rt-14-dev)
[ "${SOVEREIGN_NO_MAN:-}" = 1 ] || PKGS+=(pandoc)
# The interop suite runs reference servers from the npm registry (node + npm) on a private
# PostgreSQL cluster. An npm that came with another nodejs build is kept (Debian's npm package
# would conflict with it).
if [ "${SOVEREIGN_NO_INTEROP:-}" != 1 ]; then
  command -v npm >/dev/null || PKGS+=(nodejs npm)
  PKGS+=(postgresql)
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
