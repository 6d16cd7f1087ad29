#!/usr/bin/env bash
# A crash state's token rebuilds the same image: the state crashtest built
# (a copy of its base image plus the entries since the last flush, with the
# cut) and two rebuilds from entry 0 by the kept command have one sha256.
# The --check fails every cut, so the first cut is the state kept.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/crashtest-functions.sh"
set -e
crashtest_setup
metadata_workload 100

crashtest_run 1 --fs ext4 --size 32M --states 12 --seed 11 \
    --keep "$dir/keep" --check 'case $TLBD_STATE in */*) exit 1;; esac' \
    -- sh "$dir/meta.sh"
token=$(sed -n 's/^first failing state \([^ ]*\) kept.*/\1/p' "$dir/table")
case $token in
*/*/*) ;;
*) die "the kept state '$token' is not a cut" ;;
esac
want=$(sha256sum <"$dir/keep/failed.img")
for i in 1 2; do
    mkdir "$dir/r$i"
    (cd "$dir/r$i" && sh "$dir/keep/rebuild")
    got=$(sha256sum <"$dir/r$i/state.img")
    [ "$got" = "$want" ] || die "rebuild $i of $token: $got, want $want"
done
crashtest_left_nothing
