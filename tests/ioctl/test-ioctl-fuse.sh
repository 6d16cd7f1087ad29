#!/usr/bin/env bash
# The FUSE file answers the block-device ioctls, checked by blkioctl
# (and blockdev(8) on loop devices) against the image: a regular file (in
# a file and in a directory mount, with and without the kernel's page
# cache), a loop device with 512-byte sectors and one with 4096-byte
# sectors, a read-only loop device, and a read-only mount of each kind,
# which refuses BLKDISCARD and BLKZEROOUT with EROFS.  On the
# 4096-byte-sector device, fallocate
# --zero-range and --punch-hole over ranges that start and end inside a
# sector zero exactly the bytes asked for (whole sectors by BLKZEROOUT, the
# partial ones written) and keep the bytes around them.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/../fuse/fuse-functions.sh"
source "$(dirname "$0")/ioctl-functions.sh"
set -e

d=$(mktestdir)
mnt=$d/mnt
touch "$mnt"

# export [OPTIONS] IMAGE: mount IMAGE on $mnt, run blkioctl, unmount.
export_check()
{
    local img=${!#} ro=
    case " $* " in *" -r "*) ro=-r ;; esac
    start_fuse "$d/log" "$@" "$mnt"
    "$(blkioctl)" $ro "$mnt" "$img" || die "blkioctl $ro on $img failed"
    if [ -b "$img" ]; then
        # blockdev(8) itself, on the file and on the device.
        q="--getsize64 --getss --getpbsz"
        [ "$(blockdev $q "$mnt")" = "$(blockdev $q "$img")" ] ||
            die "blockdev $q: $(blockdev $q "$mnt" | xargs) on the file," \
                "$(blockdev $q "$img" | xargs) on $img"
    fi
    stop_fuse "$d/log" "$mnt"
}

img=$d/disk.img
head -c 16M /dev/urandom >"$img"
export_check "$img"
export_check --direct-io=off "$img"
# A directory mount: the image is a file inside it.
mkdir "$d/dir"
start_fuse "$d/log" "$img" "$d/dir"
"$(blkioctl)" "$d/dir/disk.img" "$img" || die "blkioctl in a directory mount"
stop_fuse "$d/log" "$d/dir"
sum=$(sha256sum <"$img")
export_check -r "$img"
[ "$(sha256sum <"$img")" = "$sum" ] || die "read-only mount changed $img"

for sector in 512 4096; do
    back=$d/back-$sector
    head -c 16M /dev/urandom >"$back"
    attach_sector_loop "$back" "$sector"
    export_check "$loop_dev"
    sum=$(sha256sum <"$loop_dev")
    export_check -r "$loop_dev"
    [ "$(sha256sum <"$loop_dev")" = "$sum" ] ||
        die "read-only mount changed $loop_dev"
    if [ "$sector" = 4096 ]; then
        start_fuse "$d/log" "$loop_dev" "$mnt"
        for mode in --zero-range --punch-hole; do
            off=$((1024 * 1024 + 512))
            len=$((3 * 4096 + 100))
            head -c $((len + 8192)) /dev/urandom |
                dd of="$mnt" bs=4096 seek=256 conv=notrunc,fsync \
                   status=none iflag=fullblock
            below=$(bytes_at "$loop_dev" $((off - 512)) 512)
            above=$(bytes_at "$loop_dev" $((off + len)) 4000)
            fallocate $mode --keep-size --offset $off --length $len "$mnt" ||
                die "fallocate $mode on $loop_dev"
            [ "$(bytes_at "$loop_dev" $off $len | tr -d 0)" = "" ] ||
                die "$mode: $loop_dev is not zero at $off+$len"
            [ "$(bytes_at "$loop_dev" $((off - 512)) 512)" = "$below" ] ||
                die "$mode: the bytes below $off changed"
            [ "$(bytes_at "$loop_dev" $((off + len)) 4000)" = "$above" ] ||
                die "$mode: the bytes above $((off + len)) changed"
        done
        stop_fuse "$d/log" "$mnt"
    fi
    detach_loop "$loop_dev"
done

# A read-only loop device (BLKROGET 1): refused for writing with one
# message, exported with -r, where the file says BLKROGET 1.
attach_loop "$d/back-512" -r
if tlbd_fuse "$loop_dev" "$mnt" 2>"$d/err"; then
    die "a read-only device was mounted for writing"
fi
grep -q "the device is read-only" "$d/err" || die "$(cat "$d/err")"
export_check -r "$loop_dev"
detach_loop "$loop_dev"
