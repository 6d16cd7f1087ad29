#!/usr/bin/env bash
# tlbd: qemu-io patterns, discard and write -z through the export, then
# qemu-img convert into and out of the export and qemu-img compare.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires qemu-io --version
requires qemu-img --version

d=$(mktestdir)
truncate -s 32M "$d/disk.img"

# qemu-io: every command must succeed and every pattern must verify.
nbdkit -U - "$plugin" file="$d/disk.img" --run '
    qemu-io -f raw \
        -c "write -P 0xa5 0 1M" \
        -c "write -P 0x5a 1M 3M" \
        -c "aio_write -P 0x11 8M 64k" -c "aio_write -P 0x22 9M 64k" \
        -c aio_flush \
        -c "write -P 0x33 -f 12M 512k" \
        -c "read -P 0xa5 0 1M" \
        -c "read -P 0x5a 1M 3M" \
        -c "read -P 0x11 8M 64k" -c "read -P 0x22 9M 64k" \
        -c "read -P 0x33 12M 512k" \
        -c "discard 1M 1M" \
        -c "write -z 2M 1M" \
        -c "read -P 0 2M 1M" \
        -c "read -P 0x5a 3M 1M" \
        -c "write -z -u 8M 64k" \
        -c "read -P 0 8M 64k" \
        -c flush \
        "$uri"' > "$d/qemu-io.out" 2>&1 ||
    { cat "$d/qemu-io.out"; die "qemu-io failed"; }
cat "$d/qemu-io.out"
! grep -Eqi 'fail|error|mismatch' "$d/qemu-io.out" ||
    die "qemu-io reported an error"

# The file holds the same: check a few regions directly.
cmp -n 1M "$d/disk.img" <(head -c 1M /dev/zero | tr '\0' '\245') ||
    die "0xa5 region"
cmp -i 2M:0 -n 1M "$d/disk.img" /dev/zero || die "write -z region"
cmp -i 9M:0 -n 64k "$d/disk.img" <(head -c 64k /dev/zero | tr '\0' '\042') ||
    die "aio_write region"

# qemu-img convert into the export, compare, then convert out to qcow2 and
# compare again.
truncate -s 32M "$d/src.img"
for off in 0 5 13 31; do
    dd if=/dev/urandom of="$d/src.img" bs=1M seek=$off count=1 \
       conv=notrunc status=none
done
nbdkit -U - "$plugin" file="$d/disk.img" --run '
    set -e
    qemu-img convert -n -f raw -O raw "'"$d"'/src.img" "$uri"
    qemu-img compare -f raw -F raw "'"$d"'/src.img" "$uri"
    qemu-img convert -f raw -O qcow2 "$uri" "'"$d"'/out.qcow2"
    qemu-img compare -f raw -F qcow2 "$uri" "'"$d"'/out.qcow2"
' || die "qemu-img convert/compare through the export"
cmp "$d/src.img" "$d/disk.img" || die "image differs from the source"
qemu-img compare -f raw -F qcow2 "$d/src.img" "$d/out.qcow2" ||
    die "qcow2 copy differs"
