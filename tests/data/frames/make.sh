#!/usr/bin/env bash
# Regenerates the hand-made frame-stream vectors in this directory (docs/design.md §2). They are
# committed; this script documents their bytes. Every file but good.frames starts with the
# two records of good.frames (107 bytes) followed by one faulty record; expected.tsv gives the
# error offset and reason a tool must print for each (`<tool>: <file>:<offset>: <reason>`).
set -eu
cd "$(dirname "$0")"

# hex "a1 62 …" … → bytes on stdout (each argument is split into two-digit words)
# shellcheck disable=SC2048  # the splitting is the point
hex() { local h; for h in $*; do printf '%b' "\\x$h"; done; }

# {t:"#info",op:1} {name:"OutdatedCursor"}  (34 bytes)
INFO_WIRE="a2 61 74 65 23 69 6e 66 6f 62 6f 70 01  a1 64 6e 61 6d 65 6e 4f 75 74 64 61 74 65 64 43 75 72 73 6f 72"
# {op:-1} {error:"FutureCursor"}  (25 bytes)
ERR_WIRE="a1 62 6f 70 20  a1 65 65 72 72 6f 72 6c 46 75 74 75 72 65 43 75 72 73 6f 72"
SRC="63 73 72 63 64 74 65 73 74"   # "src": "test"
RECV="64 72 65 63 76 01"           # "recv": 1
WIRE="64 77 69 72 65"              # "wire"

good() {
  hex 39 a3 "$SRC" "$RECV" "$WIRE" 58 22 "$INFO_WIRE"   # 58 bytes
  hex 30 a3 "$SRC" "$RECV" "$WIRE" 58 19 "$ERR_WIRE"    # 49 bytes
}

good > good.frames
{ good; hex 39 a3 "$SRC" "$RECV" "$WIRE" 58 22 a2 61 74; } > truncated-envelope.frames
{ good; hex 80; } > truncated-varint.frames
{ good; hex 00 39 a3; } > zero-length.frames
{ good; hex 81 80 80 08 a3; } > oversized.frames
{ good; hex 80 80 80 80 01; } > varint-5-bytes.frames
{ good; hex 81 00; } > varint-non-minimal.frames
# recv before src: "src", at envelope byte 7 (record byte 8), is out of order
{ good; hex 39 a3 "$RECV" "$SRC" "$WIRE" 58 22 "$INFO_WIRE"; } > key-order.frames
# an extra key "xxxxx": 1.5 (half float) after wire; the value is at envelope byte 63
# (record byte 64)
{ good; hex 42 a4 "$SRC" "$RECV" "$WIRE" 58 22 "$INFO_WIRE" 65 78 78 78 78 78 f9 3e 00; } > float.frames
# no recv (reported at the envelope start, record byte 1)
{ good; hex 33 a2 "$SRC" "$WIRE" 58 22 "$INFO_WIRE"; } > missing-recv.frames
# src of 254 bytes (reported at the src key: envelope byte 1, record byte 3)
{ good; hex b4 02 a3 63 73 72 63 78 fe; for _ in $(seq 254); do hex 61; done; hex "$RECV" "$WIRE" 58 22 "$INFO_WIRE"; } > src-too-long.frames
