#!/usr/bin/env bash
# tlbd crashtest finds damage: ext4 without barriers (barrier=0: no flush
# orders the journal's commit blocks after the blocks they commit, nor the
# checkpoint after the commit) under a metadata-heavy workload, checked in
# at most 50 crash states.  Some state must fail and the exit status must
# be 1; the failing state is kept with a command that rebuilds it.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/crashtest-functions.sh"
set -e
crashtest_setup
metadata_workload 400

crashtest_run 1 --fs ext4 --size 64M --states 50 --seed 7 \
    --mount-options barrier=0 --keep "$dir/keep" -- sh "$dir/meta.sh"
nstates=$(awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]/' "$dir/table" | wc -l)
[ "$nstates" -ge 1 ] && [ "$nstates" -le 50 ] || die "$nstates states"
grep -q 'damaged' "$dir/table" || die "no state is damaged"
[ -s "$dir/keep/failed.img" ] || die "the failing state was not kept"
[ -s "$dir/keep/log" ] || die "the log was not kept"
grep -q -- '--limit' "$dir/keep/rebuild" || die "no rebuild command"
crashtest_left_nothing
