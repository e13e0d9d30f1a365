#!/usr/bin/env bash
# Sets up, builds and runs every test: the unit and command-line suites with the release
# build, then the libFuzzer suite with clang. Ends with one line "N passed, N failed".
# Every suite runs by default, the long `slow` one included (CI runs exactly this).
# Options: --no-fuzz (skip the clang fuzz build), --no-slow (skip the slow suite).
set -uo pipefail
cd "$(dirname "$0")/.."
fuzz=1; slow=1
for a in "$@"; do
  case "$a" in
    --no-fuzz) fuzz=0 ;;
    --no-slow) slow=0 ;;
    --slow) slow=1 ;;  # the default; kept for old habits
    *) echo "test.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
[ $fuzz = 1 ] || export SOVEREIGN_NO_FUZZ=1
./scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

logs=()
suites=(--no-suite slow --no-suite fuzz)
[ $slow = 1 ] && suites=(--no-suite fuzz)
meson test -C build --print-errorlogs "${suites[@]}"
logs+=(build/meson-logs/testlog.json)

if [ $fuzz = 1 ]; then
  if [ ! -f build-fuzz/build.ninja ]; then
    CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dtests=false --buildtype=debugoptimized -Db_ndebug=false >/dev/null
  fi
  if ninja -C build-fuzz >/dev/null; then
    meson test -C build-fuzz --suite fuzz --print-errorlogs
    logs+=(build-fuzz/meson-logs/testlog.json)
  else
    echo "test.sh: fuzz build failed" >&2
    echo '{"name": "fuzz-build", "result": "FAIL"}' > build/fuzz-build-failed.json
    logs+=(build/fuzz-build-failed.json)
  fi
fi

python3 - "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
PY
