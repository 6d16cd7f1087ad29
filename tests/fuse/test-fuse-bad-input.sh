#!/usr/bin/env bash
# Bad input: one clear message naming the thing and the reason, a non-zero
# exit, nothing mounted and the image untouched.  Covers a missing image, a
# missing mountpoint, an image that is a directory, a mountpoint that is
# already a tlbd mount (live or dead), bad options, and /dev/fuse that the
# user may not open.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e

fuse_test_dirs
head -c 4M /dev/urandom >"$img"
sum=$(sha256sum <"$img")
tlbd=$(tlbd_bin)

# refuse PATTERN CMD...: CMD fails, says PATTERN in one "tlbd fuse:" line,
# mounts nothing and leaves the image alone.
refuse()
{
    local pattern=$1 rc=0 mounts
    shift
    mounts=$(grep -c " $mnt " /proc/self/mountinfo || true)
    "$@" >"$d/out" 2>"$d/err" || rc=$?
    [ "$rc" != 0 ] || die "accepted: $*"
    grep -q "^tlbd fuse: .*$pattern" "$d/err" ||
        die "$*: expected '$pattern', got: $(cat "$d/err")"
    [ "$(grep -c '^tlbd fuse:' "$d/err")" = 1 ] ||
        die "$*: more than one message: $(cat "$d/err")"
    [ "$(grep -c " $mnt " /proc/self/mountinfo || true)" = "$mounts" ] ||
        die "$*: left a mount"
    [ "$(sha256sum <"$img")" = "$sum" ] || die "$*: the image changed"
}

refuse "cannot open '$d/missing.img': No such file or directory" \
       tlbd_fuse -f "$d/missing.img" "$mnt"
refuse "cannot use mountpoint '$d/nowhere': No such file or directory" \
       tlbd_fuse -f "$img" "$d/nowhere"
refuse "image '$d' is a directory" tlbd_fuse -f "$d" "$mnt"
refuse "--io-uring: 'maybe' is neither on nor off" \
       tlbd_fuse --io-uring=maybe "$img" "$mnt"
refuse "is not a regular file or block device" \
       tlbd_fuse -f /dev/null "$mnt"
refuse "mountpoint '/dev/null' is not a regular file or directory" \
       tlbd_fuse -f "$img" /dev/null
refuse "cache: 'fast' is not one of writeback, none" \
       tlbd_fuse --cache=fast "$img" "$mnt"
refuse "--direct-io: 'maybe' is neither on nor off" \
       tlbd_fuse --direct-io=maybe "$img" "$mnt"
refuse "threads-max: 'many' is not a number from 1 to 4096" \
       tlbd_fuse --threads-max=many "$img" "$mnt"
refuse "--readonly and --growable exclude each other" \
       tlbd_fuse -r --growable "$img" "$mnt"
refuse "--name needs MOUNTPOINT" \
       tlbd_fuse --name=x "$img" "$img"
refuse "--name: 'a/b' is not a file name" \
       tlbd_fuse --name=a/b "$img" "$mnt"
refuse "--log: cannot open '$d/no/log'" \
       tlbd_fuse --log="$d/no/log" "$img" "$mnt"
# Both the foreground and the detaching form report and fail.
refuse "cannot open '$d/missing.img'" tlbd_fuse "$d/missing.img" "$mnt"

# Already mounted: refused, the first mount keeps working.
start_fuse "$d/log" "$img" "$mnt"
refuse "mountpoint '$mnt' is already a tlbd mount" \
       tlbd_fuse -f "$img" "$mnt"
fuse_is_mounted "$mnt" || die "the first mount went away"
cmp "$img" "$mnt/disk.img"
# ... and while it is dead too.
kill -KILL "$fuse_pid"
wait "$fuse_pid" || true
tlbd_fuse -f "$img" "$mnt" 2>"$d/err" && die "mounted over a dead mount"
grep -q "already a tlbd mount" "$d/err" || die "dead: $(cat "$d/err")"
fusermount3 -u "$mnt"
[ "$(sha256sum <"$img")" = "$sum" ] || die "the image changed"

# /dev/fuse that the user may not open: an unprivileged user, and a
# private mount namespace in which /dev/fuse is a root-only copy.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
   command -v setpriv >/dev/null; then
    chmod 755 "$d"
    cp "$tlbd" "$d/tlbd"
    chmod 755 "$d/tlbd"
    chmod 644 "$img"
    chmod 777 "$mnt"
    mknod -m 600 "$d/fuse-dev" c 10 229
    unshare -m sh -c "
        mount --make-rprivate / &&
        mount --bind '$d/fuse-dev' /dev/fuse &&
        exec setpriv --reuid=nobody --regid=nogroup --clear-groups \
            '$d/tlbd' fuse -f '$img' '$mnt'" >"$d/out" 2>"$d/err" &&
        die "an unprivileged user without /dev/fuse mounted"
    grep -q "^tlbd fuse: cannot open /dev/fuse: Permission denied" \
        "$d/err" || die "/dev/fuse: $(cat "$d/err")"
    [ "$(sha256sum <"$img")" = "$sum" ] || die "the image changed"
else
    echo "$test_name: not root: skipping the /dev/fuse permission case"
fi
! fuse_is_mounted "$mnt" || die "left a mount"
