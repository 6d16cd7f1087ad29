#!/usr/bin/env bash
# tlbd crashtest refuses bad input with one message and exit status 2, and
# leaves nothing behind (no work directory, no --keep directory).
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/crashtest-functions.sh"
set -e
crashtest_setup

bad()
{
    local want=$1 err=$dir/err st=0
    shift
    "$tlbd" crashtest "$@" 2>"$err" >/dev/null || st=$?
    [ "$st" = 2 ] || die "crashtest $*: exit status $st, want 2"
    [ "$(wc -l <"$err")" = 1 ] || die "crashtest $*: not one line: $(cat "$err")"
    grep -q -- "$want" "$err" || die "crashtest $*: '$(cat "$err")' lacks '$want'"
    [ -z "$(ls "$dir" | grep -v -e '^err$' -e '^file$')" ] ||
        die "crashtest $*: left $(ls "$dir")"
}

bad "unknown file system 'vfat'" --fs vfat --keep "$dir/k" -- true
bad "size: bad value '12Q'" --size 12Q --keep "$dir/k" -- true
bad "size: bad value '0'" --size 0 -- true
bad "too small for ext4" --size 1M -- true
bad "missing WORKLOAD" --fs ext4 --size 64M
bad "missing WORKLOAD" --fs ext4 --
bad "states: bad value '0'" --states 0 --keep "$dir/k" -- true
bad "seed: bad value 'x'" --seed x -- true
bad "cuts: bad value 'subset,shred'" --cuts subset,shred -- true
bad "unexpected argument 'oops'" oops -- true
bad "'--frobnicate' is unknown" --frobnicate -- true
touch "$dir/file"
bad "'$dir/file' exists and is not an empty directory" --keep "$dir/file" -- true
rm "$dir/file"

# A workload that fails is a setup error too, and is cleaned up after.
st=0
"$tlbd" crashtest --size 16M --states 2 -- false 2>"$dir/err" || st=$?
[ "$st" = 2 ] || die "failing workload: exit status $st, want 2"
grep -q "the workload failed" "$dir/err" || die "failing workload: $(cat "$dir/err")"
rm "$dir/err"
[ -z "$(ls "$dir")" ] || die "failing workload: left $(ls "$dir")"
crashtest_left_nothing
