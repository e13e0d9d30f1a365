#!/usr/bin/env bash
# D18: the tools built with AddressSanitizer + UndefinedBehaviorSanitizer (warnings as errors,
# as every build) in a build directory of their own, then the command-line tests of
# tests/cli/run.sh run against them: any sanitizer report changes a tool's stderr or status and
# fails a check. Usage: tests/cli/sanitize.sh SOURCE_DIR BUILD_DIR [DEFAULT_CORPUS_DIR]
# (builds in BUILD_DIR/sanitize, reused by the next run). Slow: the `slow` suite.
set -u
src=${1:?usage: $0 SOURCE_DIR BUILD_DIR [CORPUS_DIR]}
build=${2:?usage: $0 SOURCE_DIR BUILD_DIR [CORPUS_DIR]}
out=$build/sanitize
log=$build/sanitize.log
if [ ! -f "$out/build.ninja" ]; then
    meson setup "$out" "$src" -Db_sanitize=address,undefined -Dtests=false >"$log" 2>&1 ||
        { echo "FAIL - D18 sanitizer build: meson setup failed"; tail -20 "$log"; exit 1; }
fi
ninja -C "$out" tools/frame-cat tools/cbor-verify tools/mesh-sim >>"$log" 2>&1 ||
    { echo "FAIL - D18 sanitizer build: the tools do not build with -Db_sanitize=address,undefined"; grep -E "error|warning" "$log" | head -20; exit 1; }
echo "ok - D18 sanitizer build: frame-cat, cbor-verify and mesh-sim build with ASan + UBSan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
exec "$src/tests/cli/run.sh" "$out" "${3:-}"
