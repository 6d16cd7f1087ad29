# tlbd: helpers for the FUSE tests.  Source after tests/functions.sh.
#
#   start_fuse LOG [OPTIONS] IMAGE MOUNTPOINT
#                        run `tlbd fuse -f` in the background, stderr in
#                        LOG, and wait until MOUNTPOINT is mounted; sets
#                        fuse_pid.  A cleanup stops it and unmounts, even
#                        when the test fails
#   stop_fuse LOG MNT    SIGTERM; expect exit status 0 and MNT unmounted
#   fuse_is_mounted MNT  true when a tlbd mount sits on MNT (live or dead)
#   pid_alive PID        true while PID runs (a zombie counts as gone)
#   fexp_seek            path of the SEEK_DATA/SEEK_HOLE helper
#   fuse_test_dirs       set d (a fresh test directory), img=$d/disk.img
#                        (not created) and mnt=$d/mnt (an empty directory)
#   tlbd_fuse ARGS       `tlbd fuse --io-uring=$fuse_io_uring ARGS`
#   check_transport LOG  the statistics in LOG show that the requests went
#                        over this run's transport
#   kill9_fuse MNT PID   kill -9 the daemon while PID (a client) runs:
#                        the client fails, MNT's file reports ENOTCONN
#                        and fusermount3 -u clears the mount
#   set_enable_uring Y|N set the fuse module's enable_uring; the old value
#                        comes back at exit, also when the test fails
#
# The suite runs twice (tests/CMakeLists.txt, tlbd_add_fuse_test): with
# TLBD_FUSE_IO_URING=off over /dev/fuse, and with TLBD_FUSE_IO_URING=on
# over io_uring, enable_uring turned on for the test.

fexp_seek()
{
    echo "$TLBD_BUILD/tests/fuse/fexp-seek"
}

fuse_test_dirs()
{
    d=$(mktestdir)
    img=$d/disk.img
    mnt=$d/mnt
    mkdir "$mnt"
}

fuse_is_mounted()
{
    grep -q "^[^ ]* [^ ]* [^ ]* [^ ]* $1 .* - fuse\.tlbd " /proc/self/mountinfo
}

pid_alive()
{
    [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null
}

# Cleanup: TERM, then KILL after 10 s, then a lazy unmount if needed.
kill_fuse()
{
    local pid=$1 mnt=$2 i
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
    fi
    if fuse_is_mounted "$mnt"; then
        fusermount3 -u -z "$mnt"
    fi
}

_uring_param=/sys/module/fuse/parameters/enable_uring
set_enable_uring()
{
    local old
    requires_root
    [ -w "$_uring_param" ] || skip "no $_uring_param"
    old=$(cat "$_uring_param")
    if [ -z "${_uring_restore:-}" ]; then
        _uring_restore=$old
        cleanup_fn "echo '$old' >'$_uring_param'"
    fi
    echo "$1" >"$_uring_param"
}

case ${TLBD_FUSE_IO_URING:-off} in
on)
    fuse_io_uring=on
    set_enable_uring Y
    ;;
off) fuse_io_uring=off ;;
*) die "TLBD_FUSE_IO_URING='$TLBD_FUSE_IO_URING' is neither on nor off" ;;
esac

tlbd_fuse()
{
    "$(tlbd_bin)" fuse --io-uring="$fuse_io_uring" "$@"
}

check_transport()
{
    local log=$1 n
    if [ "$fuse_io_uring" = on ]; then
        grep -q "^  transport: io_uring" "$log" ||
            die "not served over io_uring: $(cat "$log")"
        n=$(sed -n 's/^  ring: requests \([0-9]*\) .*/\1/p' "$log" | tail -1)
        [ "${n:-0}" -gt 0 ] || die "no request came over the ring: $(cat "$log")"
    else
        grep -q "^  transport: /dev/fuse" "$log" ||
            die "not served over /dev/fuse: $(cat "$log")"
    fi
}

# After kill -9 over io_uring the kernel tears the ring down after the
# process is gone, asynchronously, and a request caught in that teardown
# fails with ECONNABORTED; once it is done, every request gets ENOTCONN.
expect_dead_mount()
{
    local f=$1 err i
    err=$(mktemp)
    for ((i = 0; i < 100; i++)); do
        if stat "$f" >/dev/null 2>"$err"; then
            rm -f "$err"
            die "the dead mount still answers"
        fi
        grep -q "Transport endpoint is not connected" "$err" && break
        grep -q "Software caused connection abort" "$err" ||
            die "dead mount: $(cat "$err")"
        sleep 0.1
    done
    grep -q "Transport endpoint is not connected" "$err" ||
        die "dead mount: $(cat "$err")"
    rm -f "$err"
}

kill9_fuse()
{
    local mnt=$1 client=$2 rc=0
    kill -KILL "$fuse_pid"
    wait "$fuse_pid" || true
    wait "$client" || rc=$?
    [ "$rc" != 0 ] || die "the client did not notice the daemon's death"
    expect_dead_mount "$mnt/disk.img"
    fusermount3 -u "$mnt"
    ! fuse_is_mounted "$mnt" || die "fusermount3 -u did not clear the mount"
}

start_fuse()
{
    local log=$1 mnt=${!#} i
    shift
    # Not through tlbd_fuse: $! must be tlbd's pid, not a subshell's.
    "$(tlbd_bin)" fuse --io-uring="$fuse_io_uring" -f "$@" 2>"$log" &
    fuse_pid=$!
    cleanup_fn "kill_fuse $fuse_pid '$mnt'"
    for ((i = 0; i < 300; i++)); do
        if fuse_is_mounted "$mnt"; then
            return 0
        fi
        if ! pid_alive "$fuse_pid"; then
            cat "$log" >&2
            die "tlbd fuse $* exited before mounting"
        fi
        sleep 0.1
    done
    die "tlbd fuse $* did not mount $mnt in 30 s"
}

stop_fuse()
{
    local log=$1 mnt=$2 rc=0
    kill -TERM "$fuse_pid"
    wait "$fuse_pid" || rc=$?
    if [ "$rc" != 0 ]; then
        cat "$log" >&2
        die "tlbd fuse exited with status $rc"
    fi
    if fuse_is_mounted "$mnt"; then
        die "$mnt is still mounted after tlbd fuse exited"
    fi
    check_transport "$log"
}

requires_fuse
requires test -x "$(tlbd_bin)"
"$(tlbd_bin)" fuse --help >/dev/null 2>&1 || skip "tlbd built without fuse"
