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

start_fuse()
{
    local log=$1 mnt=${!#} i
    shift
    "$(tlbd_bin)" fuse -f "$@" 2>"$log" &
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
}

requires_fuse
requires test -x "$(tlbd_bin)"
"$(tlbd_bin)" fuse --help >/dev/null 2>&1 || skip "tlbd built without fuse"
