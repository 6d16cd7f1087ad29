#!/usr/bin/env bash
# nbdkit-tlbd-plugin serving loop devices (512- and 4096-byte sectors):
#  - nbdinfo's size and minimum block size are blockdev --getsize64 and
#    --getss, the preferred size a multiple of --getpbsz;
#  - NBD trim and zero reach the device: the ranges read back as zeros on
#    the device, the bytes around them keep their data, and the trim frees
#    blocks of the sparse backing file (the loop device punches holes in
#    it); trims and zeroes that start and end inside a 4096-byte sector
#    zero exactly what they promise (zero) or whole sectors only (trim);
#  - fio's nbd engine writes (4k-64k, random reads and writes) and
#    verifies over NBD on the device;
#  - a read-only loop device is served read-only (BLKROGET).
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/../nbd/nbd-functions.sh"
source "$(dirname "$0")/ioctl-functions.sh"
requires nbdinfo --version
requires fio --version

d=$(mktestdir)
M=$((1 << 20))

# json KEY: one value of nbdinfo --json (in $d/info.json).
json()
{
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))["exports"][0][sys.argv[2]]
print(str(v).lower() if isinstance(v, bool) else v)' "$d/info.json" "$1"
}

# same FILE OFFSET LENGTH: the device's bytes there equal the saved copy's.
same()
{
    cmp -s -n "$3" -i "$2:$2" "$loop_dev" "$1" ||
        die "$loop_dev: bytes $2+$3 changed"
}

# zeros OFFSET LENGTH: the device reads zeros there.
zeros()
{
    cmp -s -n "$2" -i "$1:0" "$loop_dev" /dev/zero ||
        die "$loop_dev: bytes $1+$2 are not zeros"
}

for sector in 512 4096; do
    back=$d/back-$sector
    truncate -s 64M "$back"
    attach_sector_loop "$back" "$sector"
    dd if=/dev/urandom of="$loop_dev" bs=1M count=32 oflag=direct \
       status=none
    head -c $((32 * M)) "$loop_dev" >"$d/copy"

    nbdkit -U - "$plugin" file="$loop_dev" \
        --run 'nbdinfo --json "$uri"' >"$d/info.json" ||
        die "nbdinfo on $loop_dev failed"
    [ "$(json export-size)" = "$(blockdev --getsize64 "$loop_dev")" ] ||
        die "size $(json export-size), blockdev says" \
            "$(blockdev --getsize64 "$loop_dev")"
    [ "$(json block_size_minimum)" = "$(blockdev --getss "$loop_dev")" ] ||
        die "minimum block size $(json block_size_minimum), blockdev" \
            "--getss says $(blockdev --getss "$loop_dev")"
    pbsz=$(blockdev --getpbsz "$loop_dev")
    [ $(($(json block_size_preferred) % pbsz)) = 0 ] ||
        die "preferred block size $(json block_size_preferred) is not a" \
            "multiple of the physical sector, $pbsz"
    [ "$(json is_read_only)" = false ] || die "served read-only"
    [ "$(json can_trim)" = true ] && [ "$(json can_zero)" = true ] ||
        die "no trim or zero on $loop_dev"

    blocks=$(stat -c %b "$back")
    # Trim 8M at 0, zero 4M at 8M; a trim from 1 byte into the sector at
    # 16M to 1 byte into the sector 3 sectors on, and a zero of bytes
    # 20M+100 to 20M+3*4096+1000.  libnbd would refuse to send these below
    # the minimum block size: its alignment check is switched off, as a
    # client that ignores the block sizes would behave.
    nbdkit -U - "$plugin" file="$loop_dev" --run 'nbdsh -c "
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.connect_uri(\"$uri\")
h.trim(8 << 20, 0)
h.zero(4 << 20, 8 << 20)
h.trim(3 * 4096, (16 << 20) + 1)
h.zero(3 * 4096 + 900, (20 << 20) + 100)
h.flush()
"' || die "nbdsh trim/zero on $loop_dev failed"
    zeros 0 $((12 * M))
    same "$d/copy" $((12 * M)) $((4 * M))
    # The trim: whole sectors inside [16M+1, 16M+12289) only.
    same "$d/copy" $((16 * M)) 1
    zeros $((16 * M + sector)) $((3 * 4096 - sector))
    same "$d/copy" $((16 * M + 3 * 4096 + 1)) $((4 * M - 3 * 4096 - 1))
    # The zero: exactly its bytes.
    same "$d/copy" $((20 * M)) 100
    zeros $((20 * M + 100)) $((3 * 4096 + 900))
    same "$d/copy" $((20 * M + 100 + 3 * 4096 + 900)) 1000
    after=$(stat -c %b "$back")
    [ "$after" -le $((blocks - 8 * M / 512)) ] ||
        die "$back: st_blocks $blocks -> $after; the 8M trim freed nothing"
    echo "sector $sector: st_blocks $blocks -> $after"

    # Mixed sizes and directions over the upper half, verified with md5.
    cat >"$d/job.fio" <<JOB
[verify-on-device]
ioengine=nbd
uri=\${URI}
rw=randrw
bsrange=4k-64k
iodepth=8
offset=32M
size=32M
randrepeat=1
verify=md5
verify_fatal=1
do_verify=1
JOB
    nbdkit -U - "$plugin" file="$loop_dev" \
        --run 'URI="$uri" fio --output-format=terse --terse-version=3 \
               "'"$d"'/job.fio"' >"$d/fio.out" ||
        { cat "$d/fio.out"; die "fio over NBD on $loop_dev failed"; }
    err=$(grep '^3;' "$d/fio.out" | cut -d';' -f5)
    [ "$err" = 0 ] || die "fio reported error '$err' on $loop_dev"
    written=$(grep '^3;' "$d/fio.out" | cut -d';' -f47)
    [ "$written" -gt 0 ] || die "fio wrote nothing on $loop_dev"
    detach_loop "$loop_dev"
done

# A read-only loop device: BLKROGET says so, the export is read-only.
attach_loop "$d/back-512" -r
nbdkit -U - "$plugin" file="$loop_dev" \
    --run 'nbdinfo --json "$uri"' >"$d/info.json" ||
    die "nbdinfo on the read-only $loop_dev failed"
[ "$(json is_read_only)" = true ] || die "read-only $loop_dev served writable"
detach_loop "$loop_dev"
