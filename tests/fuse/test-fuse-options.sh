#!/usr/bin/env bash
# The command itself: --help, --version, the hidden option lists; the
# detaching form returns only once the mount is usable and writes its pid
# file only while serving; SIGUSR1 dumps statistics into --log; SIGTERM
# and fusermount3 -u end it with status 0 and the pid file removed;
# --direct-io=off and --cache=none serve the same data; with direct I/O,
# writes to the file run in parallel (FOPEN_PARALLEL_DIRECT_WRITES); on a
# tmpfs image small requests run on the I/O thread unless --inline-max=0,
# and so does a write alone in flight on a disk-backed image.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e

fuse_test_dirs
head -c 8M /dev/urandom >"$img"
tlbd=$(tlbd_bin)

"$tlbd" fuse --help >"$d/help"
grep -q "IMAGE MOUNTPOINT" "$d/help" || die "--help: $(cat "$d/help")"
"$tlbd" fuse --version | grep -q "^tlbd fuse [0-9]" || die "--version"
"$tlbd" fuse --long-options | grep -qx -- "--growable" || die "--long-options"
"$tlbd" fuse --short-options | grep -qx -- "-r" || die "--short-options"
if tlbd_fuse --no-such-option "$img" "$mnt" 2>/dev/null; then
    die "an unknown option was accepted"
fi
if tlbd_fuse "$img" 2>/dev/null; then
    die "a missing MOUNTPOINT was accepted"
fi

# Detached: usable as soon as the command returns.
tlbd_fuse -P "$d/pid" --log="$d/log" "$img" "$mnt"
cleanup_fn "kill_fuse \$(cat '$d/pid' 2>/dev/null || echo 0) '$mnt'"
cmp "$img" "$mnt/disk.img"
pid=$(cat "$d/pid")
pid_alive "$pid" || die "the pid file names no live process"
kill -USR1 "$pid"
for ((i = 0; i < 50; i++)); do
    grep -q "requests" "$d/log" && break
    sleep 0.1
done
grep -q "receive buffers" "$d/log" || die "no statistics on SIGUSR1"
kill -TERM "$pid"
for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
done
! pid_alive "$pid" || die "SIGTERM did not end tlbd fuse"
! fuse_is_mounted "$mnt" || die "still mounted after SIGTERM"
[ ! -e "$d/pid" ] || die "the pid file is still there"
[ "$(grep -c "receive buffers" "$d/log")" = 2 ] ||
    die "no statistics at exit"
check_transport "$d/log"

# fusermount3 -u from outside: exit status 0.
start_fuse "$d/log2" --direct-io=off "$img" "$mnt"
cmp "$img" "$mnt/disk.img"
dd if=/dev/zero of="$mnt/disk.img" bs=64k count=1 conv=notrunc,fsync \
   status=none
fusermount3 -u "$mnt"
rc=0
wait "$fuse_pid" || rc=$?
[ "$rc" = 0 ] || die "exit status $rc after fusermount3 -u"
check_transport "$d/log2"
cmp -n 65536 "$img" /dev/zero || die "write with --direct-io=off lost"

# The image opened with O_DIRECT.
start_fuse "$d/log3" --cache=none "$img" "$mnt"
head -c 1M /dev/urandom >"$d/pattern"
dd if="$d/pattern" of="$mnt/disk.img" bs=4k seek=1 conv=notrunc,fsync \
   status=none
dd if="$mnt/disk.img" bs=4k skip=1 count=256 status=none | cmp - "$d/pattern"
stop_fuse "$d/log3" "$mnt"

# Parallel direct writes: four writers, every write held 100 ms by
# --inject; the kernel lets them overlap, so several are in flight at once.
start_fuse "$d/log4" --inject=write:delay=100ms "$img" "$mnt"
writers=()
for i in 1 2 3 4; do
    dd if=/dev/zero of="$mnt/disk.img" bs=4k count=5 seek=$((i * 100)) \
       oflag=direct conv=notrunc status=none &
    writers+=($!)
done
for w in "${writers[@]}"; do
    wait "$w" || die "a parallel writer failed"
done
stop_fuse "$d/log4" "$mnt"
peak=$(sed -n 's/.*in flight [0-9]* (peak [0-9]*, writes \([0-9]*\)).*/\1/p' \
     "$d/log4")
[ "${peak:-0}" -ge 2 ] || die "direct writes did not overlap: peak ${peak:-?}"

# check_inline LOG MAX MIN WHAT: the statistics in LOG of a run with
# --inline-max=MAX count none done on the I/O thread when MAX is 0, else at
# least MIN.
check_inline()
{
    local n
    n=$(sed -n 's/.*done on the I\/O thread \([0-9]*\).*/\1/p' "$1" |
        tail -n 1)
    if [ "$2" = 0 ]; then
        [ "${n:-x}" = 0 ] || die "$4, --inline-max=0: $n done on the I/O thread"
    else
        [ "${n:-0}" -ge "$3" ] || die "$4: only ${n:-?} done inline"
    fi
}

# Requests that cannot wait on a device run on the I/O thread: an image on
# a tmpfs is read and written there ("done on the I/O thread" counts
# them); --inline-max=0 sends everything to the pool; the data is the same.
mem="$d/mem"
mkdir "$mem"
mount -t tmpfs -o size=32M tmpfs "$mem"
cleanup_fn "umount -l '$mem' 2>/dev/null"
head -c 64k /dev/urandom >"$d/pattern64"
for max in 64k 0; do
    cp "$img" "$mem/disk.img"
    start_fuse "$d/log-inline-$max" --inline-max=$max "$mem/disk.img" "$mnt"
    cmp "$img" "$mnt/disk.img" || die "--inline-max=$max: read differs"
    dd if="$d/pattern64" of="$mnt/disk.img" bs=4k seek=16 conv=notrunc,fsync \
       oflag=direct status=none
    stop_fuse "$d/log-inline-$max" "$mnt"
    cmp -n 65536 -i 0:65536 "$d/pattern64" "$mem/disk.img" ||
        die "--inline-max=$max: write lost"
    check_inline "$d/log-inline-$max" "$max" 20 "tmpfs image"
done
umount "$mem"

# A write alone in flight runs on the I/O thread at any size, even where
# the file system refuses RWF_NOWAIT for buffered writes (ext4): nothing
# else waits on that thread meanwhile.  dd sends its 1 MiB writes one at a
# time; --inline-max=0 still sends them all to the pool.
head -c 4M /dev/urandom >"$d/pattern4m"
for max in 64k 0; do
    start_fuse "$d/log-alone-$max" --inline-max=$max "$img" "$mnt"
    dd if="$d/pattern4m" of="$mnt/disk.img" bs=1M seek=1 conv=notrunc,fsync \
       oflag=direct status=none
    stop_fuse "$d/log-alone-$max" "$mnt"
    cmp -n 4M -i 0:1M "$d/pattern4m" "$img" ||
        die "--inline-max=$max: a write alone in flight was lost"
    check_inline "$d/log-alone-$max" "$max" 4 "writes alone"
done

if tlbd_fuse --inline-max=lots "$img" "$mnt" 2>"$d/err"; then
    die "--inline-max=lots was accepted"
fi
grep -q -- "^tlbd fuse: inline-max: 'lots' is not a size" "$d/err" ||
    die "--inline-max: $(cat "$d/err")"
