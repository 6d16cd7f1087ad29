#!/usr/bin/env bash
# tlbd --help, --version, each subcommand's --help and the hidden option
# lists: exit 0, print on stdout, say what they should.
source "$(dirname "$0")/../functions.sh"
set -e

tlbd=$(tlbd_bin)
[ -x "$tlbd" ] || die "$tlbd not built"

out=$("$tlbd" --help)
for cmd in bench nbd info ctl replay stat; do
    grep -q "^  $cmd " <<<"$out" || die "tlbd --help does not list $cmd"
done
grep -q '^usage: tlbd' <<<"$out" || die "tlbd --help: no usage line"

version=$("$tlbd" --version)
[[ $version =~ ^tlbd\ [0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    die "tlbd --version printed '$version'"
[ "$("$tlbd" -V)" = "$version" ] || die "tlbd -V differs from --version"

for cmd in bench nbd info ctl replay stat; do
    out=$("$tlbd" "$cmd" --help)
    grep -q "^usage: tlbd $cmd" <<<"$out" ||
        die "tlbd $cmd --help: no usage line"
    grep -q "tlbd(1)" <<<"$out" || die "tlbd $cmd --help: no pointer to tlbd(1)"
    # Every long option listed for completion is accepted by --help's text.
    for opt in $("$tlbd" "$cmd" --long-options); do
        [ "$opt" = --help ] && continue
        grep -q -- "$opt" <<<"$out" ||
            die "tlbd $cmd --help does not document $opt"
    done
    "$tlbd" "$cmd" --short-options | grep -q '^-h$' ||
        die "tlbd $cmd --short-options lacks -h"
done
"$tlbd" --long-options | grep -q '^--version$' ||
    die "tlbd --long-options lacks --version"
echo "$test_name: ok"
