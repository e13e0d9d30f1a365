#!/usr/bin/env bash
# Every long option a tool lists in --help must appear in its man page (man/<tool>.1.md),
# and every man page needs the standard sections. When pandoc rendered the pages
# (BUILD_DIR/man/<tool>.1), the rendered page must spell every option with two hyphens
# ("--name" or roff "\-\-name"), never as a typographic dash. Usage: check_man.sh BUILD_DIR SOURCE_DIR TOOL...
set -u
build=$1; src=$2; shift 2
fail=0
for tool in "$@"; do
  page="$src/man/$tool.1.md"
  if [ ! -f "$page" ]; then echo "FAIL $tool: no man page $page"; fail=1; continue; fi
  for sec in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    grep -q "^# $sec\$" "$page" || { echo "FAIL $tool: man page lacks section $sec"; fail=1; }
  done
  rendered="$build/man/$tool.1"
  [ -f "$rendered" ] || rendered=""
  for opt in $("$build/tools/$tool" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
    grep -q -- "\*\*$opt\*\*" "$page" || { echo "FAIL $tool: $opt is in --help but not in $page"; fail=1; }
    if [ -n "$rendered" ]; then
      grep -qF -e "$opt" -e "\\-\\-${opt#--}" "$rendered" || { echo "FAIL $tool: $opt is not in $rendered"; fail=1; }
      ! grep -qF -- "\[en]${opt#--}" "$rendered" || { echo "FAIL $tool: $opt is typeset as an en dash in $rendered"; fail=1; }
    fi
  done
  [ $fail = 0 ] && echo "ok $tool"
done
exit $fail
