#!/usr/bin/env bash
# tlbd stat on `tlbd fuse --control=PATH` under a known load: fio at 200
# reads and 100 writes a second (psync, O_DIRECT, a sync every 10 writes)
# for 6 s; the per-second counts of `tlbd stat --json` agree with fio's
# (tests/stat-check.py states the tolerance), and the text view has its
# header and columns.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
source "$(dirname "$0")/../stat-functions.sh"
set -e
requires fio --version

tlbd=$(tlbd_bin)
fuse_test_dirs
ctl=$d/ctl.sock
truncate -s 64M "$img"
start_fuse "$d/log" --control="$ctl" "$img" "$mnt"

stat_during "$ctl" "$d/stat.json" \
    fio --name=load --filename="$mnt/disk.img" --ioengine=psync --direct=1 \
        --size=64M "${stat_fio_load[@]}" --output="$d/fio.json" ||
    { cat "$d/fio.json" >&2; die "fio failed"; }
stat_check "$d/stat.json" "$d/fio.json"
# Everything took the inline path or the pool, and fio's reads were inline
# (page cache or not, the FUSE read runs at once when it can).
/usr/bin/python3 - "$d/stat.json" <<'PY' || die "inline/pool counts"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for o in rows:
    total = sum(o["ops_per_s"].values())
    assert abs(o["inline_per_s"] + o["pool_per_s"] - total) <= 0.02 * total + 2, o
    assert o["volatile"] is None, o
PY

# The text view: a header, then a line per interval with as many columns.
"$tlbd" stat --interval 100ms --count 3 "$ctl" >"$d/text"
[ "$(wc -l <"$d/text")" = 4 ] || { cat "$d/text"; die "not 1 + 3 lines"; }
head -1 "$d/text" | grep -q '^ *r/s  *w/s .* r_p50 r_p99 r_max .* busy  *idle  *inl/s  *pool/s$' ||
    die "header: $(head -1 "$d/text")"
cols=$(head -1 "$d/text" | wc -w)
[ "$cols" = 27 ] || die "$cols columns in the header"
tail -3 "$d/text" | while read -r line; do
    [ "$(wc -w <<<"$line")" = "$cols" ] || die "columns of '$line'"
done
stop_fuse "$d/log" "$mnt"
# Stopped: one message, non-zero.
status=0
"$tlbd" stat "$ctl" 2>"$d/err" || status=$?
[ $status = 2 ] || die "stat on a stopped export: exit $status"
[ "$(cat "$d/err")" = "tlbd stat: '$ctl': No such file or directory" ] ||
    die "$(cat "$d/err")"
echo "$test_name: ok"
