#!/usr/bin/env bash
# A host disk that fills up.  The image is a sparse file on a small tmpfs,
# next to a ballast file; ext4 lives in it through `tlbd fuse
# --enospc=wait` and a loop device.  A writer fills the tmpfs: it blocks,
# no error reaches ext4 (no read-only remount, errors_count stays 0), reads
# of the FUSE file still work; the ballast goes, everything completes, the data checks out
# and e2fsck finds the file system clean.  The statistics and one stderr
# line report the episode.  A writer that waits gives up on SIGINT.  With
# the default enospc=error a write through the FUSE file sees ENOSPC, as
# before.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e
requires_root
requires losetup --version
requires mkfs.ext4 -V
requires e2fsck -V

fuse_test_dirs
tmp=$d/tmpfs
fs=$d/fs
mkdir "$tmp" "$fs"
mount -t tmpfs -o size=64M tmpfs "$tmp"
cleanup_fn "umount -l '$tmp' 2>/dev/null"
img=$tmp/disk.img
truncate -s 96M "$img"
head -c 24M /dev/zero >"$tmp/ballast"
head -c 40M /dev/urandom >"$d/pattern"
head -c 1M /dev/urandom >"$d/before"

start_fuse "$d/log" --enospc=wait "$img" "$mnt"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$mnt/disk.img"
attach_loop "$mnt/disk.img"
loop=$loop_dev
mount -o errors=remount-ro "$loop" "$fs"
cleanup_fn "umount $fs 2>/dev/null"
errors=/sys/fs/ext4/$(basename "$loop")/errors_count
cp "$d/before" "$fs/before"
sync

# The writer needs more than the tmpfs has left.
dd if="$d/pattern" of="$fs/data" bs=1M conv=fsync status=none &
writer=$!
cleanup_fn "kill -9 $writer 2>/dev/null"
for ((i = 0; i < 600; i++)); do
    grep -q "the host file system is full" "$d/log" && break
    pid_alive "$writer" || die "the writer finished: the tmpfs did not fill"
    sleep 0.1
done
grep -q "the host file system is full (No space left on device); writes wait" \
    "$d/log" || die "no ENOSPC episode on stderr: $(cat "$d/log")"
[ "$(df --output=avail "$tmp" | tail -1)" -lt 1024 ] ||
    die "the tmpfs is not full"
sleep 2
pid_alive "$writer" || die "the writer did not block"
echo "the writer blocks on a full host disk"

# Reads go on: the export answers reads of the FUSE file (the loop
# device's own queue is stuck behind its write, in the kernel) with what
# the image holds.
timeout -s KILL 60 dd if="$mnt/disk.img" of="$d/head" bs=1M count=4 \
    iflag=direct status=none || die "reads do not work while writes wait"
cmp -n 4M "$d/head" "$img" || die "the reads return wrong data"
[ "$(cat "$errors")" = 0 ] || die "ext4 saw errors: $(cat "$errors")"
grep -q " $fs ext4 rw," /proc/mounts || die "ext4 is not read-write any more"
kill -USR1 "$fuse_pid"
for ((i = 0; i < 100; i++)); do
    grep -q "waiting now [1-9]" "$d/log" && break
    sleep 0.1
done
grep "host disk full" "$d/log" | tail -1
grep -q "episodes 1, writes that waited [1-9][0-9]*, waiting now [1-9]" \
    "$d/log" || die "the statistics do not show the waiting writes"
echo "reads work, ext4 saw no error"

# Space comes back: everything completes.
rm "$tmp/ballast"
rc=0
timeout 300 tail --pid="$writer" -f /dev/null || die "the writer never ended"
wait "$writer" || rc=$?
[ $rc = 0 ] || die "the writer failed: $rc"
sync
[ "$(cat "$errors")" = 0 ] || die "ext4 saw errors: $(cat "$errors")"
grep -q " $fs ext4 rw," /proc/mounts || die "ext4 is not read-write any more"
echo 3 >/proc/sys/vm/drop_caches
cmp "$d/pattern" "$fs/data" || die "the data written does not check out"
cmp "$d/before" "$fs/before" || die "the data written before changed"
umount "$fs"
detach_loop "$loop"
e2fsck -fn "$mnt/disk.img" >"$d/fsck" 2>&1 ||
    { cat "$d/fsck" >&2; die "e2fsck found problems"; }
kill -USR1 "$fuse_pid"
for ((i = 0; i < 100; i++)); do
    [ "$(grep -c "host disk full" "$d/log")" -ge 2 ] && break
    sleep 0.1
done
grep "host disk full" "$d/log" | tail -1 |
    grep -q "episodes 1, writes that waited [1-9][0-9]*, waiting now 0" ||
    die "wrong statistics: $(grep "host disk full" "$d/log" | tail -1)"
# No request failed on the image (the export's own error count includes
# ioctls mkfs and e2fsck try on a file).
grep "  image:" "$d/log" | tail -1 | grep -q ", errors 0," ||
    die "requests failed on the image: $(grep "  image:" "$d/log")"
stop_fuse "$d/log" "$mnt"
[ "$(grep -c "the host file system is full" "$d/log")" = 1 ] ||
    die "not one stderr line for the episode"
echo "space came back: the writer completed, e2fsck is clean, data ok"

# A writer waiting for space gives up on SIGINT: the export answers EINTR
# (the disk stays full, so it would wait forever otherwise).
head -c 40M /dev/zero >"$tmp/ballast2" 2>/dev/null || true
start_fuse "$d/log3" --enospc=wait "$img" "$mnt"
exec env --default-signal=INT dd if=/dev/urandom of="$mnt/disk.img" \
    bs=1M count=60 seek=30 conv=notrunc oflag=direct status=none &
writer=$!
cleanup_fn "kill -9 $writer 2>/dev/null"
for ((i = 0; i < 600; i++)); do
    grep -q "the host file system is full" "$d/log3" && break
    sleep 0.1
done
grep -q "the host file system is full" "$d/log3" || die "no episode"
kill -INT "$writer"
timeout 60 tail --pid="$writer" -f /dev/null ||
    die "the waiting writer did not give up on SIGINT"
rc=0
wait "$writer" || rc=$?
[ $rc = 130 ] || die "the interrupted writer exited with $rc"
stop_fuse "$d/log3" "$mnt"
echo "a waiting writer gives up on SIGINT"

# enospc=error (the default): the client sees ENOSPC.
start_fuse "$d/log2" "$img" "$mnt"
rc=0
dd if=/dev/urandom of="$mnt/disk.img" bs=1M count=60 seek=30 \
    conv=notrunc,fsync oflag=direct status=none 2>"$d/dd.err" || rc=$?
[ $rc != 0 ] || die "a write to a full disk succeeded"
grep -q "No space left on device" "$d/dd.err" ||
    die "not ENOSPC: $(cat "$d/dd.err")"
stop_fuse "$d/log2" "$mnt"
echo "enospc=error: $(cat "$d/dd.err")"
echo "$test_name: ok"
