#!/usr/bin/env bash
# Every long option a tool lists in --help must appear in its man page (man/<tool>.1.md),
# and every man page needs the standard sections. Usage: check_man.sh BUILD_DIR SOURCE_DIR TOOL...
set -u
build=$1; src=$2; shift 2
fail=0
for tool in "$@"; do
  page="$src/man/$tool.1.md"
  if [ ! -f "$page" ]; then echo "FAIL $tool: no man page $page"; fail=1; continue; fi
  for sec in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    grep -q "^# $sec\$" "$page" || { echo "FAIL $tool: man page lacks section $sec"; fail=1; }
  done
  for opt in $("$build/tools/$tool" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
    grep -q -- "\*\*$opt\*\*" "$page" || { echo "FAIL $tool: $opt is in --help but not in $page"; fail=1; }
  done
  [ $fail = 0 ] && echo "ok $tool"
done
exit $fail
