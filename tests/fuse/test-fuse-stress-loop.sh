#!/usr/bin/env bash
# The man page's recipe: mkfs.ext4 on the FUSE file, loop-mount it, run
# stress-ng's file-system stressors with --verify (60 s; TLBD_STRESS_SECS
# changes it), then unmount and e2fsck -fn must find the file system
# clean.  stress-ng may exit 0 when a verification failed, so any "fail:"
# line in its log fails the test too.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e
requires_root
requires losetup --version
requires mkfs.ext4 -V
requires e2fsck -V
requires stress-ng --version

secs=${TLBD_STRESS_SECS:-60}
fuse_test_dirs
fs=$d/fs
mkdir "$fs"
truncate -s 1G "$img"

start_fuse "$d/log" "$img" "$mnt"
mkfs.ext4 -q -F "$mnt/disk.img"
attach_loop "$mnt/disk.img"
loop=$loop_dev
mount "$loop" "$fs"
cleanup_fn "umount $fs 2>/dev/null"

rc=0
stress-ng --temp-path "$fs" --timeout "${secs}s" --verify --metrics-brief \
    --log-file "$d/stress.log" \
    --hdd 2 --hdd-bytes 64m --hdd-opts wr-seq,rd-rnd,fsync,fadv-dontneed \
    --iomix 1 --iomix-bytes 64m --dir 1 --dentry 1 --rename 1 --link 1 \
    --symlink 1 --fallocate 1 --fallocate-bytes 32m --sync-file 1 \
    --sync-file-bytes 32m >/dev/null 2>&1 || rc=$?
if grep -q "fail:" "$d/stress.log" || [ "$rc" != 0 ]; then
    grep -E "fail:|error" "$d/stress.log" >&2 || tail -20 "$d/stress.log" >&2
    die "stress-ng exit status $rc"
fi
grep -q "successful run completed" "$d/stress.log" ||
    die "stress-ng did not complete: $(tail -5 "$d/stress.log")"

umount "$fs"
detach_loop "$loop"
e2fsck -fn "$mnt/disk.img" >"$d/fsck" 2>&1 ||
    { cat "$d/fsck" >&2; die "e2fsck found problems"; }
stop_fuse "$d/log" "$mnt"
e2fsck -fn "$img" >/dev/null 2>&1 || die "the image is not clean"
