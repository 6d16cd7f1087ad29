#!/usr/bin/env bash
# tlbd info on a sparse file reports the size, the data and hole bytes and
# the allocation; text and JSON agree.
source "$(dirname "$0")/../functions.sh"
set -e
requires /usr/bin/python3 --version

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/sparse.img

truncate -s 64M "$img"
dd if=/dev/urandom of="$img" bs=1M count=1 seek=8 conv=notrunc,fsync \
    status=none
dd if=/dev/urandom of="$img" bs=1M count=2 seek=40 conv=notrunc,fsync \
    status=none

"$tlbd" info --json "$img" >"$dir/info.json"
field()
{
    /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
        "$dir/info.json" "$1"
}
[ "$(field size)" = $((64 << 20)) ] || die "size $(field size)"
[ "$(field type)" = file ] || die "type $(field type)"
[ "$(field data)" = $((3 << 20)) ] || die "data $(field data), want 3 MiB"
[ "$(field holes)" = $((61 << 20)) ] || die "holes $(field holes)"
[ "$(field data_extents)" = 2 ] || die "data extents $(field data_extents)"
[ "$(field hole_extents)" = 3 ] || die "hole extents $(field hole_extents)"
alloc=$(field allocated)
[ "$alloc" = $(($(stat -c %b "$img") * 512)) ] || die "allocated $alloc"
[ "$alloc" -ge $((3 << 20)) ] && [ "$alloc" -lt $((8 << 20)) ] ||
    die "allocated $alloc for 3 MiB of data"
[ "$(field logical_block_size)" -ge 512 ] || die "no logical block size"

text=$("$tlbd" info "$img")
grep -q "^size          $((64 << 20)) (64.0 MiB)$" <<<"$text" ||
    die "text size: $text"
grep -q "^data          $((3 << 20)) in 2 extents$" <<<"$text" ||
    die "text data: $text"
grep -q "^allocated     $alloc " <<<"$text" || die "text allocated: $text"
grep -Eq '^O_DIRECT      (yes \(alignment [0-9]+\)|no \(.*\))$' <<<"$text" ||
    die "text O_DIRECT: $text"

# A fully allocated file has no hole.
dd if=/dev/urandom of="$dir/full.img" bs=1M count=4 conv=fsync status=none
"$tlbd" info --json "$dir/full.img" >"$dir/info.json"
[ "$(field holes)" = 0 ] || die "holes in a fallocated file: $(field holes)"
[ "$(field data)" = $((4 << 20)) ] || die "data $(field data)"
echo "$test_name: ok"
