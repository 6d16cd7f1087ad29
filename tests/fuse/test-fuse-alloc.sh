#!/usr/bin/env bash
# Allocation through the FUSE file: fallocate --punch-hole and
# --zero-range read back zeros, a punched hole lowers st_blocks, the data
# around them stays, plain allocation is refused, and SEEK_DATA/SEEK_HOLE
# on the FUSE file agree with the image.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e
requires fallocate --version
requires test -x "$(fexp_seek)"

fuse_test_dirs
head -c 32M /dev/urandom >"$d/pattern"
cp "$d/pattern" "$img"
sync "$img"

start_fuse "$d/log" "$img" "$mnt"
f=$mnt/disk.img
blocks0=$(stat -c %b "$f")
[ "$blocks0" -ge 65536 ] || die "st_blocks $blocks0 for 32 MiB of data"

fallocate --punch-hole --offset 4MiB --length 8MiB "$f"
cmp -n 8M <(dd if="$f" bs=1M skip=4 count=8 status=none) /dev/zero ||
    die "a punched hole does not read back as zeros"
blocks1=$(stat -c %b "$f")
[ "$blocks1" -le $((blocks0 - 16384)) ] ||
    die "st_blocks $blocks0 -> $blocks1 after punching 8 MiB"

fallocate --zero-range --offset 16MiB --length 4MiB "$f"
cmp -n 4M <(dd if="$f" bs=1M skip=16 count=4 status=none) /dev/zero ||
    die "a zeroed range does not read back as zeros"
[ "$(stat -c %s "$f")" = 33554432 ] || die "size changed"

# Everything else is untouched.
cmp -n 4M "$f" "$d/pattern"
cmp -i 12M:12M -n 4M "$f" "$d/pattern"
cmp -i 20M:20M "$f" "$d/pattern"

# Plain allocation cannot be promised: refused, nothing changes.
if fallocate --offset 0 --length 1MiB "$f" 2>"$d/err"; then
    die "plain fallocate succeeded"
fi
grep -q "not supported" "$d/err" || die "plain fallocate: $(cat "$d/err")"

# SEEK_DATA/SEEK_HOLE through FUSE agree with the image itself.
"$(fexp_seek)" "$f" >"$d/seek.fuse"
"$(fexp_seek)" "$img" >"$d/seek.img"
cat "$d/seek.fuse"
diff "$d/seek.img" "$d/seek.fuse" || die "extents differ"
grep -q "^hole 4194304 " "$d/seek.fuse" || die "the punched hole is not seen"
grep -q "^data 0 " "$d/seek.fuse" || die "no data at 0"

# A hole at the very end, and a file that is one hole.
truncate -s 8M "$d/sparse.img"
stop_fuse "$d/log" "$mnt"
start_fuse "$d/log2" "$d/sparse.img" "$mnt"
"$(fexp_seek)" "$mnt/sparse.img" >"$d/seek2"
[ "$(cat "$d/seek2")" = "hole 0 8388608" ] || die "sparse: $(cat "$d/seek2")"
stop_fuse "$d/log2" "$mnt"
