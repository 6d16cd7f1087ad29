#!/usr/bin/env bash
# Truncate rules: a fixed-size export keeps its size (EPERM, but the same
# size is fine); a growable one shrinks and grows, and writes past the end
# extend it; a read-only one refuses (EROFS).
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e

fuse_test_dirs
truncate -s 16M "$img"
f=$mnt/disk.img

start_fuse "$d/log" "$img" "$mnt"
if truncate -s 8M "$f" 2>"$d/err"; then
    die "shrinking a fixed-size export succeeded"
fi
grep -q "Operation not permitted" "$d/err" || die "$(cat "$d/err")"
if truncate -s 32M "$f" 2>"$d/err"; then
    die "growing a fixed-size export succeeded"
fi
truncate -s 16M "$f" || die "truncate to the same size failed"
[ "$(stat -c %s "$f")" = 16777216 ]
[ "$(stat -c %s "$img")" = 16777216 ]
stop_fuse "$d/log" "$mnt"

start_fuse "$d/log2" --growable "$img" "$mnt"
truncate -s 24M "$f"
[ "$(stat -c %s "$f")" = 25165824 ] || die "grow: $(stat -c %s "$f")"
[ "$(stat -c %s "$img")" = 25165824 ] || die "image did not grow"
truncate -s 4M "$f"
[ "$(stat -c %s "$f")" = 4194304 ] || die "shrink: $(stat -c %s "$f")"
# Writes past the end extend the file.
head -c 1M /dev/urandom >"$d/pattern"
dd if="$d/pattern" of="$f" bs=1M seek=6 conv=notrunc,fsync status=none
[ "$(stat -c %s "$f")" = 7340032 ] || die "write past end: $(stat -c %s "$f")"
dd if="$f" bs=1M skip=6 status=none | cmp - "$d/pattern"
cmp -n 2M <(dd if="$f" bs=1M skip=4 count=2 status=none) /dev/zero
# cp truncates and rewrites: works only because the export grows.
head -c 3M /dev/urandom >"$d/new"
cp "$d/new" "$f"
cmp "$d/new" "$f"
[ "$(stat -c %s "$img")" = 3145728 ]
stop_fuse "$d/log2" "$mnt"
cmp "$d/new" "$img"

start_fuse "$d/log3" --readonly "$img" "$mnt"
if truncate -s 3M "$f" 2>"$d/err"; then
    die "truncate on a read-only export succeeded"
fi
grep -Eq "Read-only file system|Permission denied" "$d/err" ||
    die "$(cat "$d/err")"
stop_fuse "$d/log3" "$mnt"
