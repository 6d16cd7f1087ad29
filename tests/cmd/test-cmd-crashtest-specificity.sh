#!/usr/bin/env bash
# tlbd crashtest finds nothing where there is nothing: ext4 with its
# default barriers recovers clean in every one of 50 crash states, and
# every file whose fsync (of the file and its directory) completed before a
# state's point holds the checksum recorded then.  The workload places the
# mark fN after each fsync; the check reads them from $TLBD_MARKS.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/crashtest-functions.sh"
set -e
crashtest_setup
fsync_workload 30

crashtest_run 0 --fs ext4 --size 64M --states 50 --seed 3 \
    --check "sh $dir/fsync_check.sh" -- sh "$dir/fsync.sh"
[ "$(grep -c ' clean$' "$dir/table")" = 50 ] || die "not 50 clean states"
# The check ran in every state and, in some, on fsynced files.
[ "$(wc -l <"$dir/checked")" = 50 ] || die "the check ran $(wc -l <"$dir/checked") times"
grep -q -v ': 0 fsynced' "$dir/checked" || die "no state had an fsynced file"
# Cuts were among the states, not only flush points.
grep -q '/subset/\|/torn/' "$dir/table" || die "no subset or torn cut checked"
crashtest_left_nothing
