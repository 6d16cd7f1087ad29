#!/usr/bin/env bash
# The volatile cache's memory bound: a run of `tlbd bench` with
# --volatile-cache=SIZE peaks (VmHWM, the bench's "peak_rss_kib") within
# SIZE of the same run without the cache, for writes of one size, of many
# sizes (the cache's free space in scattered runs) and of 512 bytes (many
# extents: the bookkeeping counts too), and with flushes that empty the
# cache.  SLACK covers what the two runs differ in besides the cache: the
# cache's code pages (file-backed RSS) and the jitter of the runs (both
# measured at 50-400 KiB; with malloc'd cache data the difference was
# over 2 x SIZE).  Each workload writes several times SIZE, so the
# cache fills and destages; a run with the cache that peaks less than
# SIZE/2 above the one without means the cache was not filled, and fails
# too.
source "$(dirname "$0")/../functions.sh"
set -e
requires /usr/bin/python3 --version

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/disk.img
size_kib=$((32 * 1024))
slack_kib=1024

# peak ARGS...: the peak RSS in KiB of one bench run with ARGS.
peak()
{
    "$tlbd" bench --json="$dir/run.json" --no-progress --size 256M \
        --rw randwrite --seed 3 "$@" "$img" >"$dir/run.txt" ||
        die "bench $* failed: $(cat "$dir/run.txt")"
    /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verification"]["result"] == "ok", r["verification"]
print(r["peak_rss_kib"])' "$dir/run.json" ||
        die "bench $*: no peak or not verified: $(cat "$dir/run.json")"
}

# check FILLS ARGS...: the workload ARGS with and without the cache; FILLS
# says whether it writes enough to fill the cache's memory.
check()
{
    local fills=$1 base base2 cached
    shift
    # the baseline's peak: the larger of two runs (they differ by up to
    # 400 KiB)
    base=$(peak "$@")
    base2=$(peak "$@")
    [ "$base2" -le "$base" ] || base=$base2
    cached=$(peak --volatile-cache=${size_kib}k "$@")
    echo "bench $*: peak RSS ${base} KiB, with a cache of ${size_kib} KiB" \
        "${cached} KiB (+$((cached - base)))"
    [ "$cached" -le $((base + size_kib + slack_kib)) ] ||
        die "bench $*: the cache took $((cached - base)) KiB, over its ${size_kib}"
    if [ "$fills" = fills ] && [ "$cached" -lt $((base + size_kib / 2)) ]; then
        die "bench $*: the cache took only $((cached - base)) KiB: not filled"
    fi
}

check fills --bs 4k --ops 40000
check fills --bs 512-64k --ops 12000
check fills --bs 512 --ops 150000
check no --bs 4k --ops 40000 --flush-every 64
