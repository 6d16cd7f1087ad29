#!/usr/bin/env bash
# FUSE over io_uring itself.  With the fuse module's enable_uring N,
# --io-uring=on is refused with the reason and nothing is mounted, and
# auto serves over /dev/fuse and says why in its statistics.  With Y: kill
# -9 while direct reads and writes are in flight on the ring leaves a dead
# mount that fusermount3 -u clears, and a new mount over io_uring works at
# once; unmounting from outside while the kernel holds every entry ends
# the daemon with status 0, and again a new mount works.  enable_uring
# gets its old value back at exit.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e

fuse_test_dirs
requires fio --version
truncate -s 64M "$img"
head -c 8M /dev/urandom >"$d/pattern"
sum=$(sha256sum <"$img")

# Off: refused, or served over /dev/fuse.
set_enable_uring N
fuse_io_uring=on
rc=0
tlbd_fuse -f "$img" "$mnt" 2>"$d/err" || rc=$?
[ "$rc" != 0 ] || die "--io-uring=on accepted with enable_uring N"
grep -q "^tlbd fuse: --io-uring=on: .*enable_uring is N" "$d/err" ||
    die "--io-uring=on: $(cat "$d/err")"
! fuse_is_mounted "$mnt" || die "--io-uring=on left a mount"
[ "$(sha256sum <"$img")" = "$sum" ] || die "--io-uring=on changed the image"

fuse_io_uring=auto
start_fuse "$d/log-auto" "$img" "$mnt"
dd if="$d/pattern" of="$mnt/disk.img" bs=1M seek=2 conv=notrunc,fsync \
   status=none
stop_fuse "$d/log-auto" "$mnt"
grep -q "^  transport: /dev/fuse (io_uring not used: enable_uring is N" \
     "$d/log-auto" || die "auto: $(cat "$d/log-auto")"

# On: kill -9 with requests in flight on the ring.
set_enable_uring Y
fuse_io_uring=on
start_fuse "$d/log" "$img" "$mnt"
fio --name=inflight --filename="$mnt/disk.img" --direct=1 \
    --ioengine=libaio --iodepth=32 --rw=randrw --bs=4k --size=32M \
    --offset=16M --time_based --runtime=60 --numjobs=2 \
    --output="$d/fio.out" >/dev/null 2>&1 &
writer=$!
cleanup_fn "kill $writer 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    kill -USR1 "$fuse_pid"
    sleep 0.1
    n=$(sed -n 's/^  ring: requests \([0-9]*\) .*/\1/p' "$d/log" | tail -1)
    [ "${n:-0}" -lt 1000 ] || break
done
[ "${n:-0}" -ge 1000 ] || die "fio's requests do not come over the ring"
kill9_fuse "$mnt" "$writer"

# A new mount at once; fusermount3 -u while the kernel holds the entries.
start_fuse "$d/log2" "$img" "$mnt"
dd if="$mnt/disk.img" bs=1M skip=2 count=8 status=none | cmp - "$d/pattern" ||
    die "data written over /dev/fuse lost"
fusermount3 -u "$mnt"
rc=0
wait "$fuse_pid" || rc=$?
[ "$rc" = 0 ] || die "exit status $rc after fusermount3 -u: $(cat "$d/log2")"
check_transport "$d/log2"

start_fuse "$d/log3" "$img" "$mnt"
dd if="$mnt/disk.img" bs=1M skip=2 count=8 status=none | cmp - "$d/pattern"
stop_fuse "$d/log3" "$mnt"
