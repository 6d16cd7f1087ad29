#!/usr/bin/env bash
# tlbd: errors injected below the plugin (inject=, see paio(3)) reach the
# client as EIO with a message naming the image, a failed write leaves the
# image untouched, and the server keeps serving; injected latency delays.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
nbdkit "$plugin" --dump-plugin | grep -qx 'tlbd_inject=yes' ||
    die "the plugin lacks inject="

d=$(mktestdir)
head -c 1M /dev/urandom > "$d/disk.img"
before=$(sha256 "$d/disk.img")

# Reads 4 and 5 fail, and the 2nd write.
nbdkit -U - "$plugin" file="$d/disk.img" \
    inject='read:eio:after=3:count=2,write:eio:after=1:once' \
    --run 'nbdsh -u "$uri" -c "
import errno
first = h.pread(4096, 0)
h.pread(4096, 4096)
h.pread(4096, 8192)
for i in range(2):
    try:
        h.pread(4096, 0)
        raise AssertionError(\"injected read error was lost\")
    except nbd.Error as e:
        assert e.args[1] == errno.EIO, e
assert h.pread(4096, 0) == first
h.pwrite(first, 0)
try:
    h.pwrite(b\"\\x00\" * 4096, 65536)
    raise AssertionError(\"injected write error was lost\")
except nbd.Error as e:
    assert e.args[1] == errno.EIO, e
h.flush()
" && nbdsh -u "$uri" -c "assert len(h.pread(65536, 0)) == 65536"' \
    2> "$d/err" || { cat "$d/err"; die "injected errors"; }
cat "$d/err"
eio="Input/output error"
grep -Eq "error: $d/disk.img: read at offset 0, 4096 bytes: $eio" \
    "$d/err" || die "no message naming the image and the read"
grep -Eq "error: $d/disk.img: write at offset 65536, 4096 bytes: $eio" \
    "$d/err" || die "no message naming the image and the write"
[ "$(sha256 "$d/disk.img")" = "$before" ] ||
    die "the failed write (or the rewrite of the same data) changed the image"

# Flush errors too.
nbdkit -U - "$plugin" file="$d/disk.img" inject='flush:eio:once' \
    --run 'nbdsh -u "$uri" -c "
import errno
try:
    h.flush()
    raise AssertionError(\"injected flush error was lost\")
except nbd.Error as e:
    assert e.args[1] == errno.EIO, e
assert len(h.pread(512, 0)) == 512
"' || die "injected flush error"

# Latency: every read waits at least 200ms below the plugin.
nbdkit -U - "$plugin" file="$d/disk.img" inject='read:delay=200ms' \
    --run 'nbdsh -u "$uri" -c "
import time
t = time.monotonic()
h.pread(4096, 0)
assert time.monotonic() - t >= 0.2, \"read was not delayed\"
"' || die "injected latency"
