#!/usr/bin/env bash
# tlbd stat on the plugin's control=PATH under a known load: fio's nbd
# engine at 200 reads and 100 writes a second (a flush every 10 writes) for
# 6 s; the per-second counts of `tlbd stat --json` agree with fio's
# (tests/stat-check.py states the tolerance), and with offload=never (the
# plugin's default) every request runs inline.  Then offload=always with a
# volatile cache: the requests go through the pool, the volatile bytes show,
# and the text view has the cache's two columns.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
source "$(dirname "$0")/../stat-functions.sh"
requires fio --version
fio --enghelp=nbd 2>&1 | grep -q '^uri' || die "fio has no nbd engine"

tlbd=$(tlbd_bin)
d=$(mktestdir)
img=$d/disk.img
ctl=$d/ctl.sock
truncate -s 64M "$img"

start_server "$d" file="$img" control="$ctl"
stat_during "$ctl" "$d/stat.json" \
    fio --name=load --ioengine=nbd --uri="$uri" --size=64M \
        "${stat_fio_load[@]}" --output="$d/fio.json" ||
    { cat "$d/fio.json" >&2; die "fio failed"; }
stat_check "$d/stat.json" "$d/fio.json"
/usr/bin/python3 - "$d/stat.json" <<'PY' || die "offload=never: not inline"
import json, sys
for o in map(json.loads, open(sys.argv[1])):
    total = sum(o["ops_per_s"].values())
    assert o["pool_per_s"] == 0 and abs(o["inline_per_s"] - total) <= 1, o
PY
stop_server

# offload=always, a volatile cache: 300 writes and a flush, all pooled.
start_server "$d" file="$img" control="$ctl" offload=always threads-max=4 \
    volatile-cache=4M
stat_during "$ctl" "$d/stat2.json" nbdsh -u "$uri" -c '
import time
for i in range(300):
    h.pwrite(b"%c" % (65 + i % 26) * 4096, 4096 * i)
    time.sleep(0.005)
h.flush()
'
/usr/bin/python3 - "$d/stat2.json" <<'PY' || die "offload=always, volatile"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n = lambda k: round(sum(o["ops_per_s"][k] * o["interval_s"] for o in rows))
assert n("write") == 300 and n("flush") == 1, (n("write"), n("flush"))
for o in rows:
    assert o["inline_per_s"] == 0, o
    assert o["volatile"]["size"] == 4 << 20, o
    assert o["pool"]["threads"] <= 4, o
assert sum(o["pool_per_s"] * o["interval_s"] for o in rows) >= 300, rows
assert max(o["volatile"]["bytes"] for o in rows) > 0, rows
assert rows[-1]["volatile"]["bytes"] == 0, rows[-1]
PY
"$tlbd" stat --interval 100ms --count 2 "$ctl" >"$d/text"
head -1 "$d/text" | grep -q ' vMiB  *dstg/s$' || die "$(head -1 "$d/text")"
[ "$(tail -1 "$d/text" | wc -w)" = 29 ] || die "$(tail -1 "$d/text")"
stop_server
echo "$test_name: ok"
