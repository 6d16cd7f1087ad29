#!/usr/bin/env bash
# fio on the FUSE file: random writes then crc32c verification, two jobs
# on separate halves, with psync (buffered and O_DIRECT) and libaio and
# io_uring at iodepth 32 (O_DIRECT).
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e
requires fio --version

fuse_test_dirs
truncate -s 64M "$img"

start_fuse "$d/log" "$img" "$mnt"
run_fio()
{
    local name=$1
    shift
    fio --name="$name" --filename="$mnt/disk.img" --rw=randwrite \
        --bs=4k --size=32M --offset_increment=32M --numjobs=2 \
        --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output="$d/$name.out" "$@" ||
        { cat "$d/$name.out" >&2; die "fio $name failed"; }
    grep -q "err= 0" "$d/$name.out" || die "fio $name reported errors"
    if grep -q "verify:" "$d/$name.out"; then
        die "fio $name: $(grep "verify:" "$d/$name.out")"
    fi
}
run_fio psync-buffered --ioengine=psync --direct=0
run_fio psync-direct --ioengine=psync --direct=1
run_fio libaio --ioengine=libaio --direct=1 --iodepth=32
if fio --enghelp=io_uring >/dev/null 2>&1 &&
   fio --name=probe --filename="$d/probe" --size=4k --ioengine=io_uring \
       --direct=1 --output=/dev/null 2>/dev/null; then
    run_fio io_uring --ioengine=io_uring --direct=1 --iodepth=32
else
    echo "$test_name: io_uring not available here"
fi
stop_fuse "$d/log" "$mnt"
grep -q "writes" "$d/log"
