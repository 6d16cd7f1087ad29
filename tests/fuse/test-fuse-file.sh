#!/usr/bin/env bash
# tlbd fuse over a regular file: over the image itself and over another
# file.  Size and allocation in stat, dd with fsync, a cp round trip,
# reads short at the end, writes past the end refused, and the data is in
# the image after the unmount.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e

fuse_test_dirs
truncate -s 64M "$img"
head -c 8M /dev/urandom >"$d/pattern"

# Mount over the image itself.
start_fuse "$d/log" "$img" "$img"
[ "$(stat -c %F "$img")" = "regular file" ] || die "not a regular file"
[ "$(stat -c %s "$img")" = 67108864 ] || die "size: $(stat -c %s "$img")"
[ "$(stat -c %b "$img")" = 0 ] || die "sparse image shows blocks"
[ "$(stat -c %o "$img")" -ge 4096 ] || die "st_blksize $(stat -c %o "$img")"

dd if="$d/pattern" of="$img" bs=1M seek=4 conv=notrunc,fsync status=none
blocks=$(stat -c %b "$img")
[ "$blocks" -ge 16384 ] || die "st_blocks $blocks after writing 8 MiB"
dd if="$img" bs=1M skip=4 count=8 status=none | cmp - "$d/pattern"

cp "$img" "$d/copy"
cmp "$d/copy" "$img"
[ "$(stat -c %s "$d/copy")" = 67108864 ]

# Short at the end, nothing past it.
n=$(dd if="$img" bs=1M skip=63 count=2 status=none | wc -c)
[ "$n" = 1048576 ] || die "read across the end returned $n bytes"
n=$(dd if="$img" bs=1M skip=64 count=1 status=none | wc -c)
[ "$n" = 0 ] || die "read past the end returned $n bytes"

# Writes past the end: ENOSPC; across it: the part before the end lands.
if dd if=/dev/zero of="$img" bs=4k seek=16384 count=1 conv=notrunc \
      status=none 2>"$d/err"; then
    die "write past the end succeeded"
fi
grep -q "No space left on device" "$d/err" || die "$(cat "$d/err")"
head -c 8192 /dev/urandom >"$d/tail"
dd if="$d/tail" of="$img" bs=8192 seek=$((64 * 1048576 - 4096)) \
   oflag=seek_bytes conv=notrunc status=none 2>/dev/null || true
[ "$(stat -c %s "$img")" = 67108864 ] || die "size changed"
tail -c 4096 "$img" | cmp - <(head -c 4096 "$d/tail") ||
    die "the part of a write before the end is missing"

# Direct I/O through the FUSE file.
dd if="$d/pattern" of="$img" bs=1M seek=32 count=2 oflag=direct \
   conv=notrunc status=none
dd if="$img" bs=1M skip=32 count=2 iflag=direct status=none |
    cmp - <(head -c 2M "$d/pattern")

stop_fuse "$d/log" "$img"
grep -q "writes" "$d/log" || die "no statistics at exit"

# Now the image file itself holds what was written.
[ "$(stat -c %s "$img")" = 67108864 ]
dd if="$img" bs=1M skip=4 count=8 status=none | cmp - "$d/pattern"
tail -c 4096 "$img" | cmp - <(head -c 4096 "$d/tail")

# Mount over another, empty file.
: >"$d/over"
start_fuse "$d/log2" "$img" "$d/over"
[ "$(stat -c %s "$d/over")" = 67108864 ]
cmp "$d/over" "$img"
stop_fuse "$d/log2" "$d/over"
[ "$(stat -c %s "$d/over")" = 0 ] || die "the covered file changed"
