#!/usr/bin/env bash
# tlbd: fio's nbd engine, 2 jobs (2 connections: multi-conn) at iodepth 32:
# random writes verified with crc32c in the same run, then verified again
# by a second server on the same image.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires fio --version
fio --enghelp=nbd 2>&1 | grep -q '^uri' || die "fio has no nbd engine"

d=$(mktestdir)
truncate -s 64M "$d/disk.img"

# Each job owns half of the image, so the verify of one job never sees
# the other's blocks.
cat > "$d/job.fio" <<JOB
[global]
ioengine=nbd
uri=\${URI}
bs=4k
iodepth=32
numjobs=2
size=32M
offset_increment=32M
randrepeat=1
verify=crc32c
verify_fatal=1
group_reporting=1

[randwrite]
rw=randwrite
do_verify=1
JOB

# offload=always threads-max=4 so that 64 requests in flight wait for
# workers; the server that verifies runs them on nbdkit's threads.
nbdkit -U - "$plugin" file="$d/disk.img" offload=always threads-max=4 \
    idle-timeout=1s \
    --run 'URI="$uri" fio --output-format=terse --terse-version=3 \
               "'"$d"'/job.fio"' > "$d/fio.out" ||
    { cat "$d/fio.out"; die "fio randwrite+verify failed"; }
cat "$d/fio.out"
# terse v3: field 5 is the error code of the (grouped) job.
grep '^3;' "$d/fio.out" > "$d/fio.terse" || die "no terse line from fio"
err=$(cut -d';' -f5 "$d/fio.terse")
[ "$err" = 0 ] || die "fio reported error $err"
written=$(cut -d';' -f47 "$d/fio.terse")
[ "$written" -gt 0 ] || die "fio wrote nothing"

# A new server reads the same blocks back: the data is in the image.
nbdkit -U - "$plugin" file="$d/disk.img" \
    --run 'URI="$uri" fio --verify_only --output-format=terse \
               --terse-version=3 "'"$d"'/job.fio"' > "$d/fio2.out" ||
    { cat "$d/fio2.out"; die "fio verify_only failed"; }
err=$(grep '^3;' "$d/fio2.out" | cut -d';' -f5)
[ "$err" = 0 ] || die "fio verify_only reported error '$err'"
read_kb=$(grep '^3;' "$d/fio2.out" | cut -d';' -f6)
[ "$read_kb" -gt 0 ] || die "fio verify_only read nothing"
