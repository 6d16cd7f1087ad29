#!/usr/bin/env bash
# kill -9 of the daemon while writes run: the mount then reports ENOTCONN,
# fusermount3 -u clears it, a new mount works, and everything fsync'ed
# before the kill is in the image.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e

fuse_test_dirs
truncate -s 64M "$img"
head -c 8M /dev/urandom >"$d/pattern"

start_fuse "$d/log" "$img" "$mnt"
dd if="$d/pattern" of="$mnt/disk.img" bs=1M seek=2 conv=notrunc,fsync \
   status=none
# Writes in flight when the daemon dies.
dd if=/dev/urandom of="$mnt/disk.img" bs=64k seek=256 count=100000 \
   conv=notrunc status=none 2>/dev/null &
writer=$!
cleanup_fn "kill $writer 2>/dev/null"
sleep 1
kill9_fuse "$mnt" "$writer"

start_fuse "$d/log2" "$img" "$mnt"
dd if="$mnt/disk.img" bs=1M skip=2 count=8 status=none | cmp - "$d/pattern" ||
    die "fsync'ed data lost"
stop_fuse "$d/log2" "$mnt"
dd if="$img" bs=1M skip=2 count=8 status=none | cmp - "$d/pattern"
