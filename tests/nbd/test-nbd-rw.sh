#!/usr/bin/env bash
# tlbd: pread/pwrite/flush/trim/zero/cache round trips through nbdsh, each
# checked against the image file itself, with and without FUA, in both cache
# modes, with every request run on nbdkit's threads (the default,
# offload=never), on the pool when it may wait on a device
# (offload=blocking, both cache modes) and always on the pool
# (offload=always).
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires python3 --version

d=$(mktestdir)

for mode in writeback none writeback,offload=blocking none,offload=blocking \
            writeback,offload=always; do
    cache=${mode%%,*}
    extra=()
    [ "$mode" = "$cache" ] || extra=("${mode#*,}")
    rm -f "$d/disk.img"
    truncate -s 16M "$d/disk.img"
    export EXPECT="$d/expect.bin"
    nbdkit -U - "$plugin" file="$d/disk.img" cache=$cache "${extra[@]}" --run '
    nbdsh -u "$uri" -c "
import errno, os
M = 1024 * 1024
assert h.get_size() == 16 * M
# cache=none advertises the sector as minimum; send unaligned requests
# anyway, the BlockDev bounces them.
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
a = os.urandom(M + 123)
b = os.urandom(64 * 1024)
c = os.urandom(4096)
# unaligned write and read back
h.pwrite(a, 12345)
assert h.pread(len(a), 12345) == a
# FUA write, flush, cache
h.pwrite(b, 4 * M, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(len(b), 4 * M) == b
h.cache(M, 4 * M)
# zero inside the first write, with and without MAY_TRIM / FUA
h.zero(4096, 20000)
h.zero(8192, 50000, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
exp = bytearray(a)
exp[20000 - 12345:20000 - 12345 + 4096] = bytes(4096)
exp[50000 - 12345:50000 - 12345 + 8192] = bytes(8192)
assert h.pread(len(a), 12345) == bytes(exp)
# fast zero: either done, or refused at once with ENOTSUP
if h.can_fast_zero():
    try:
        h.zero(4 * M, 5 * M, nbd.CMD_FLAG_FAST_ZERO)
        assert h.pread(4 * M, 5 * M) == bytes(4 * M)
    except nbd.Error as e:
        assert e.args[1] == errno.ENOTSUP, e
# trim a range, then the rest is untouched and the range reads as zeroes
# (discard=unmap punches holes in a file)
h.pwrite(c, 12 * M)
h.pwrite(c, 12 * M + 2 * M)
h.trim(M, 12 * M + 4096, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 12 * M) == c
assert h.pread(M, 12 * M + 4096) == bytes(M)
assert h.pread(4096, 14 * M) == c
h.flush()
# out of range is an error, and the connection goes on
try:
    h.pread(4096, 16 * M)
    raise AssertionError(\"read past the end succeeded\")
except nbd.Error:
    pass
assert h.pread(4096, 12 * M) == c
open(os.environ[\"EXPECT\"], \"wb\").write(bytes(exp))
"' || die "nbdsh round trip failed ($mode)"

    # The file itself holds what the client wrote.
    python3 - "$d/disk.img" "$EXPECT" <<'PY' || die "image ($mode)"
import os, sys
M = 1024 * 1024
f = open(sys.argv[1], "rb")
def at(off, n):
    f.seek(off)
    return f.read(n)
assert os.path.getsize(sys.argv[1]) == 16 * M
assert at(0, 12345) == bytes(12345)
assert at(20000, 4096) == bytes(4096)
assert at(50000, 8192) == bytes(8192)
assert at(12 * M + 4096, M) == bytes(M)
assert at(12 * M, 4096) != bytes(4096)
exp = open(sys.argv[2], "rb").read()
assert at(12345, len(exp)) == exp
PY
    echo "$mode: ok"
done
