#!/usr/bin/env bash
# tlbd fuse into a directory: the image appears as its base name or
# --name; the directory lists it; other names do not exist; data written
# through the mount is in the image.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e

fuse_test_dirs
truncate -s 16M "$img"
head -c 1M /dev/urandom >"$d/pattern"

start_fuse "$d/log" "$img" "$mnt"
[ "$(ls "$mnt")" = disk.img ] || die "listing: $(ls -a "$mnt")"
[ "$(ls -a "$mnt" | tr '\n' ' ')" = ". .. disk.img " ] || die "ls -a"
[ -d "$mnt" ] || die "the mountpoint is not a directory"
[ "$(stat -c %s "$mnt/disk.img")" = 16777216 ]
[ ! -e "$mnt/other" ] || die "a second name exists"
if touch "$mnt/new" 2>/dev/null; then
    die "created a file in the mount"
fi
dd if="$d/pattern" of="$mnt/disk.img" bs=64k seek=3 conv=notrunc,fsync \
   status=none
# The image is not covered: read it directly.
dd if="$img" bs=64k skip=3 count=16 status=none | cmp - "$d/pattern"
cmp "$img" "$mnt/disk.img"
stop_fuse "$d/log" "$mnt"

start_fuse "$d/log2" --name=vda "$img" "$mnt"
[ "$(ls "$mnt")" = vda ] || die "--name: $(ls "$mnt")"
cmp "$img" "$mnt/vda"
stop_fuse "$d/log2" "$mnt"
[ -z "$(ls "$mnt")" ] || die "the directory is not empty after unmount"
