#!/usr/bin/env bash
# tlbd: nbdkit's own filters stack on the plugin: stats counts the
# requests that reach the plugin, delay slows them, error fails them.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires nbdkit --filter=stats null --dump-plugin
requires nbdkit --filter=delay null --dump-plugin
requires nbdkit --filter=error null --dump-plugin

d=$(mktestdir)
truncate -s 8M "$d/disk.img"

# stats: 8 writes of 64k, 4 reads, a flush.
nbdkit -U - --filter=stats "$plugin" file="$d/disk.img" \
    statsfile="$d/stats" statsappend=false --run 'nbdsh -u "$uri" -c "
buf = bytes(range(256)) * 256
for i in range(8):
    h.pwrite(buf, i * 65536)
h.flush()
for i in range(4):
    assert h.pread(65536, i * 65536) == buf
"' || die "I/O under the stats filter failed"
cat "$d/stats"
grep -Eq '^write: 8 ops, [0-9.]+ s, 512.00 KiB,' "$d/stats" ||
    die "stats: 8 writes of 64k"
grep -Eq '^read: 4 ops, [0-9.]+ s, 256.00 KiB,' "$d/stats" ||
    die "stats: 4 reads of 64k"
grep -Eq '^flush: 1 ops' "$d/stats" || die "stats: 1 flush"

# delay and error stacked: reads are delayed by 300ms each, writes fail
# with EIO; the data on the plugin's side is untouched.
before=$(sha256 "$d/disk.img")
nbdkit -U - --filter=delay --filter=error "$plugin" file="$d/disk.img" \
    delay-read=300ms error=EIO error-pwrite-rate=100% \
    --run 'nbdsh -u "$uri" -c "
import errno, time
t = time.monotonic()
buf = h.pread(4096, 0)
assert time.monotonic() - t >= 0.3, \"read was not delayed\"
try:
    h.pwrite(b\"x\" * 4096, 0)
    raise AssertionError(\"write did not fail\")
except nbd.Error as e:
    assert e.args[1] == errno.EIO, e
assert h.pread(4096, 0) == buf
"' || die "delay + error filters"
[ "$(sha256 "$d/disk.img")" = "$before" ] || die "image changed"
