#!/usr/bin/env bash
# tlbd: the base:allocation map a client reads through the plugin is the
# SEEK_DATA/SEEK_HOLE map of the sparse file, and it follows trim and write.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires python3 --version

d=$(mktestdir)
M=$((1024 * 1024))
truncate -s 40M "$d/disk.img"
# Data at a few places, some touching the ends.
for off in 0 3 4 10 17 39; do
    dd if=/dev/urandom of="$d/disk.img" bs=64k seek=$((off * 16)) count=3 \
       conv=notrunc status=none
done
dd if=/dev/urandom of="$d/disk.img" bs=4k seek=5000 count=1 conv=notrunc \
   status=none
sync "$d/disk.img"

export IMG="$d/disk.img"
nbdkit -U - "$plugin" file="$IMG" --run 'nbdsh --base-allocation -u "$uri" -c "
import os

def seek_map(path):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    runs = []
    off = 0
    while off < size:
        try:
            data = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            data = size
        if data > off:
            runs.append((off, data - off, True))
        if data >= size:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        runs.append((data, hole - data, False))
        off = hole
    os.close(fd)
    return runs

def nbd_map():
    size = h.get_size()
    runs = []
    off = 0
    while off < size:
        got = []
        def cb(meta, offset, entries, err):
            if meta == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(entries)
            return 0
        h.block_status(min(size - off, 64 * 1024 * 1024), off, cb)
        assert got, off
        for i in range(0, len(got), 2):
            length, flags = got[i], got[i + 1]
            hole = bool(flags & nbd.STATE_HOLE)
            if hole:
                assert flags & nbd.STATE_ZERO, flags
            length = min(length, size - off)
            if runs and runs[-1][2] == hole:
                runs[-1] = (runs[-1][0], runs[-1][1] + length, hole)
            else:
                runs.append((off, length, hole))
            off += length
    return runs

def check(what):
    want = seek_map(os.environ[\"IMG\"])
    got = nbd_map()
    print(what, \"SEEK_DATA map:\", want)
    assert got == want, (what, got, want)
    assert any(r[2] for r in want) and any(not r[2] for r in want)

check(\"initial\")
M = 1024 * 1024
h.trim(M, 3 * M, nbd.CMD_FLAG_FUA)
h.pwrite(os.urandom(256 * 1024), 30 * M, nbd.CMD_FLAG_FUA)
h.zero(M, 17 * M)
h.flush()
check(\"after trim/write/zero\")
# REQ_ONE: one extent, starting at the offset asked
got = []
h.block_status(40 * M, 0, lambda m, o, e, err: got.extend(e) or 0,
               nbd.CMD_FLAG_REQ_ONE)
assert len(got) == 2 and got[0] > 0, got
"' || die "extents differ from the SEEK_DATA map"
