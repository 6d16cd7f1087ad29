#!/usr/bin/env bash
# tlbd: the control channel through `tlbd fuse --control=PATH`, with direct
# I/O on the FUSE side and a loop device on the file (direct I/O too): the
# socket is there, mode 0600, once the mount is;
# flush makes a write durable, mark and stats count, powercut subset:0.5
# seed=3 cuts (then every read and write fails with EIO); the socket goes
# when the daemon exits; and a detached daemon (a relative PATH, chdir /)
# answers as soon as `tlbd fuse` returns and removes it at the end.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e
requires_root
requires losetup --version

tlbd=$(tlbd_bin)
fuse_test_dirs
ctl=$d/ctl.sock
file=$mnt/disk.img
truncate -s 1M "$img"

tctl() { "$tlbd" ctl "$ctl" "$@"; }
stat_of() { ctl_stat "$ctl" "$1"; }
expect_stat() { expect_ctl_stat "$ctl" "$1" "$2"; }
# block N: the 4k block N of the image as its one letter, 0, or mixed.
block() { block_letter "$img" $(($1 * 4096)); }

start_fuse "$d/log" --volatile-cache=1M --control="$ctl" "$img" "$mnt"
[ -S "$ctl" ] || die "no control socket once mounted"
[ "$(stat -c %a "$ctl")" = 600 ] || die "the socket's mode is not 0600"
# Every close() of the mounted file flushes (tlbd-fuse(1)), so the writes
# go through a loop device with direct I/O, which keeps the file open and
# flushes only when asked, as a file system on it would.
attach_loop "$file" --direct-io=on
loop=$loop_dev
# put LETTER BLOCK: 4k of LETTER at 4k block BLOCK of the loop device.
put()
{
    printf "%4096s" "" | tr ' ' "$1" |
        dd of="$loop" bs=4k seek="$2" oflag=direct status=none
}
put A 0
expect_stat volatile_bytes 4096
epoch=$(stat_of epoch) # losetup's own open and close flushed
tctl flush || die "flush"
expect_stat volatile_bytes 0
expect_stat epoch $((epoch + 1))
for i in 1 2 3 4 5 6 7 8; do
    put "$(printf "\\x$(printf %x $((65 + i)))")" "$i"
done
tctl mark eight-written || die "mark"
expect_stat marks 1
expect_stat volatile_writes 8
expect_stat volatile_bytes 32768
expect_stat dead 0
writes=$(stat_of cache_writes)
tctl powercut subset:0.5 seed=3 >"$d/cut" || die "powercut"
cat "$d/cut"
grep -q "^power cut (on demand): mode=subset:0.5 seed=3 epoch=$((epoch + 1)) \
writes=$writes " "$d/cut" || die "powercut's line"
expect_stat dead 1
if dd if="$loop" bs=4k count=1 iflag=direct of=/dev/null status=none \
    2>"$d/err"; then
    die "a read after the cut worked"
fi
grep -q 'Input/output error' "$d/err" || die "read: $(cat "$d/err")"
# (the loop driver may report the failed write as ENOSPC)
if put Z 0 2>"$d/err"; then die "a write after the cut worked"; fi
detach_loop "$loop"
# The final flush fails on a dead device: the exit status says so.
kill -TERM "$fuse_pid"
wait "$fuse_pid" || true
! fuse_is_mounted "$mnt" || die "still mounted"
[ ! -e "$ctl" ] || die "the control socket outlived tlbd fuse"
[ "$(block 0)" = A ] || die "the flushed block is $(block 0)"
kept=0
for i in 1 2 3 4 5 6 7 8; do
    case $(block "$i") in
    0) ;;
    "$(printf "\\x$(printf %x $((65 + i)))")") kept=$((kept + 1)) ;;
    *) die "block $i holds $(block "$i")" ;;
    esac
done
grep -q "kept=$kept dropped=$((8 - kept)) " "$d/cut" ||
    die "$kept blocks kept; the line says otherwise"

# Detached, with a relative PATH: ready means the socket answers.
(cd "$d" && "$tlbd" fuse --io-uring="$fuse_io_uring" -P "$d/pid" \
    --volatile-cache=64k --control=ctl.sock "$img" "$mnt")
pid=$(cat "$d/pid")
cleanup_fn "kill_fuse $pid '$mnt'"
expect_stat volatile_cache 65536
printf "%4096s" "" | tr ' ' Q |
    dd of="$file" bs=4k conv=notrunc oflag=direct status=none
tctl flush || die "flush (detached)"
fusermount3 -u "$mnt"
for ((i = 0; i < 300; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
done
! pid_alive "$pid" || die "the daemon did not exit after the unmount"
[ ! -e "$ctl" ] || die "the detached daemon left its socket"
[ "$(block 0)" = Q ] || die "flushed data lost: $(block 0)"
echo "$test_name: ok"
