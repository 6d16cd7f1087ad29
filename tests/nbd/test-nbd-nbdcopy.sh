#!/usr/bin/env bash
# tlbd: nbdcopy the export to a file and a file into the export (several
# connections, since the plugin offers multi-conn); cmp both ways.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires nbdcopy --version

d=$(mktestdir)
truncate -s 48M "$d/disk.img"
for off in 0 7 8 20 47; do
    dd if=/dev/urandom of="$d/disk.img" bs=1M seek=$off count=1 \
       conv=notrunc status=none
done

# Export -> file.
nbdkit -U - "$plugin" file="$d/disk.img" \
    --run 'nbdcopy --connections=4 --requests=16 "$uri" "'"$d"'/out.img"' ||
    die "nbdcopy export -> file failed"
cmp "$d/disk.img" "$d/out.img" || die "copy out differs"

# File -> export, flushed, into a zeroed image of the same size.
head -c 48M /dev/urandom > "$d/src.img"
truncate -s 48M "$d/dst.img"
nbdkit -U - "$plugin" file="$d/dst.img" \
    --run 'nbdcopy --flush --connections=4 "'"$d"'/src.img" "$uri"' ||
    die "nbdcopy file -> export failed"
cmp "$d/src.img" "$d/dst.img" || die "copy in differs"

# Read-only export -> file still works.
nbdkit -r -U - "$plugin" file="$d/dst.img" \
    --run 'nbdcopy "$uri" "'"$d"'/out2.img"' ||
    die "nbdcopy from a read-only export failed"
cmp "$d/src.img" "$d/out2.img" || die "read-only copy differs"
