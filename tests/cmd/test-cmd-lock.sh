#!/usr/bin/env bash
# Image locking in QEMU's scheme, through every front end and against real
# QEMU: two writable exports of one image are refused with one message; the
# plugin after `tlbd fuse` and the other way round (across nbdkit's fork);
# read-only next to read-only is allowed, read-only next to a writer is
# not; --force-share / force-share=on overrides; `tlbd info` works next to
# a writer; `qemu-img resize` and `qemu-io` fail with QEMU's lock errors on
# an image tlbd exports; tlbd refuses an image a paused qemu-system holds
# and takes it once QEMU is gone; kill -9 of an export frees its locks at
# once.  A refusal leaves the image as it was.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/../nbd/nbd-functions.sh"
source "$(dirname "$0")/../fuse/fuse-functions.sh"
requires_fuse
requires qemu-img --version
requires qemu-io --version
requires qemu-system-x86_64 --version

"${nbdkit_env[@]}" nbdkit "$plugin" --dump-plugin |
    grep -qx 'tlbd_locking=qemu' || die "the plugin does not lock images"
tlbd=$(tlbd_bin)
fuse_test_dirs
rm -rf "$mnt"
m1=$d/m1
m2=$d/m2
: >"$m1"
: >"$m2"
head -c 8M /dev/urandom >"$img"
sum=$(sha256 "$img")
ino=$(stat -c %i "$img")
drop='unset LD_PRELOAD ASAN_OPTIONS;'
writer="is in use by another writer (locks held by another process; use"
writer="$writer --force-share or force-share=on to override)"

# The OFD locks on the image, as "START END" lines.
locks()
{
    awk -v ino=":$ino" '$2 == "OFDLCK" && index($6, ino) {
        print $(NF-1), $NF }' /proc/locks | sort
}

# Wait (up to 60 s: an ASan build exits slowly) until no lock is left.
wait_unlocked()
{
    local i
    for ((i = 0; i < 600; i++)); do
        [ -n "$(locks)" ] || return 0
        sleep 0.1
    done
    die "locks left on the image: $(locks)"
}

# Run CMD... with a time limit (the functions here set their own).
limited()
{
    if declare -F "$1" >/dev/null; then
        "$@"
    else
        timeout 60 "$@"
    fi
}

# expect_refused WHAT CMD...: CMD fails, prints WHAT, leaves the image.
expect_refused()
{
    local what=$1 status=0
    shift
    limited "$@" >"$d/out" 2>"$d/err" || status=$?
    if [ $status = 124 ] && $asan_build && grep -q "$what" "$d/err"; then
        status=1 # nbdkit hung in exit() under the ASan preload
    fi
    [ $status != 0 ] || die "$* was not refused"
    grep -qF -- "$what" "$d/err" || die "$*: wrong message: $(cat "$d/err")"
    [ "$(sha256 "$img")" = "$sum" ] || die "$*: the image changed"
    echo "refused: $*: $(grep -F -- "$what" "$d/err" | head -1)"
}

# The plugin with ARGS (a first -r is nbdkit's); "SERVED" on stdout once
# it serves.
plugin_run()
{
    local ro=()
    if [ "${1:-}" = -r ]; then
        ro=(-r)
        shift
    fi
    timeout 60 "${nbdkit_env[@]}" nbdkit "${ro[@]}" -U - "$plugin" \
        file="$img" "$@" \
        --run "$drop echo SERVED"
}

expect_served()
{
    local status=0
    limited "$@" >"$d/out" 2>"$d/err" || status=$?
    if [ $status = 124 ] && $asan_build && grep -q SERVED "$d/out"; then
        status=0
    fi
    [ $status = 0 ] && grep -q SERVED "$d/out" ||
        die "$* refused: $(cat "$d/err")"
    echo "served: $*"
}

# tlbd nbd with ARGS on the image; "SERVED" once it serves.
nbd_run()
{
    timeout 60 "${nbdkit_env[@]}" "$tlbd" nbd "$@" \
        --run "$drop echo SERVED" "$img"
}

fuse_ro_mount()
{
    timeout 60 "$tlbd" fuse "$@" && fusermount3 -u "${!#}" && echo SERVED
}

# 1. A writable tlbd fuse; what it holds is what QEMU's writers hold, plus
#    resize, and it shares neither write nor resize.
start_fuse "$d/f1.log" "$img" "$m1"
[ "$(locks | tr '\n' ' ')" = "100 101 103 103 201 201 203 203 " ] ||
    die "unexpected locks: $(locks)"
expect_refused "tlbd fuse: '$img' $writer" "$tlbd" fuse -f "$img" "$m2"
expect_refused "error: '$img' $writer" plugin_run
expect_refused "'$img' $writer" "$tlbd" bench --ops 16 --no-progress "$img"
expect_refused "'$img' is in use by" "$tlbd" fuse -f -r "$img" "$m2"
expect_refused 'Failed to get "write" lock' qemu-img resize -f raw "$img" 16M
expect_refused 'Failed to get "write" lock' \
    qemu-io -f raw -c 'write 0 512' "$img"
# A short look shares everything, as `qemu-img info` does.
"$tlbd" info "$img" >/dev/null
# The override.
expect_served plugin_run force-share=on
expect_served nbd_run --force-share
expect_refused "error: '$img' $writer" nbd_run
expect_served fuse_ro_mount --force-share "$img" "$m2"
stop_fuse "$d/f1.log" "$m1"
wait_unlocked

# 2. Read-only next to read-only; a writer next to a reader is refused.
start_fuse "$d/f1.log" -r "$img" "$m1"
[ "$(locks | tr '\n' ' ')" = "100 100 201 201 " ] ||
    die "unexpected read-only locks: $(locks)"
expect_served plugin_run -r readonly=true
expect_served nbd_run -r
expect_served fuse_ro_mount -r "$img" "$m2"
expect_refused "'$img' is in use by another process that does not share write" \
    "$tlbd" fuse -f "$img" "$m2"
expect_refused "'$img' is in use by another process that does not share write" \
    plugin_run readonly=false
stop_fuse "$d/f1.log" "$m1"
wait_unlocked

# 3. The plugin first, in the background: its locks outlive nbdkit's fork.
rm -f "$d/nbd.pid"
"${nbdkit_env[@]}" nbdkit -U "$d/sock" -P "$d/nbd.pid" "$plugin" \
    file="$img" </dev/null
wait_for "$d/nbd.pid"
nbd_pid=$(cat "$d/nbd.pid")
cleanup_fn "kill -9 $nbd_pid 2>/dev/null"
[ -n "$(locks)" ] || die "no locks after nbdkit forked"
expect_refused "tlbd fuse: '$img' $writer" "$tlbd" fuse -f "$img" "$m2"
# kill -9 frees them: a new export starts at once.
kill -9 "$nbd_pid"
while pid_alive "$nbd_pid"; do sleep 0.1; done
start_fuse "$d/f1.log" "$img" "$m1"
echo "started at once after kill -9 of nbdkit"
# ... and the same for tlbd fuse itself.
kill -9 "$fuse_pid"
wait "$fuse_pid" 2>/dev/null || true
fusermount3 -u -z "$m1"
expect_served plugin_run
wait_unlocked

# 4. A paused guest holds the image; once QEMU is gone, tlbd starts.
qemu-system-x86_64 -S -display none -nodefaults -accel tcg \
    -drive file="$img",format=raw,if=virtio </dev/null >"$d/qemu.log" 2>&1 &
qemu_pid=$!
cleanup_fn "kill -9 $qemu_pid 2>/dev/null"
for ((i = 0; i < 600; i++)); do
    [ "$(locks | tr '\n' ' ')" = "100 101 201 201 " ] && break
    pid_alive "$qemu_pid" || die "qemu-system exited: $(cat "$d/qemu.log")"
    sleep 0.1
done
[ "$(locks | tr '\n' ' ')" = "100 101 201 201 " ] ||
    die "qemu-system does not hold the image: $(locks)"
expect_refused "tlbd fuse: '$img' $writer" "$tlbd" fuse -f "$img" "$m2"
expect_refused "'$img' $writer" plugin_run
expect_refused "'$img' $writer" "$tlbd" fuse -f -r "$img" "$m2"
kill "$qemu_pid"
wait "$qemu_pid" 2>/dev/null || true
start_fuse "$d/f1.log" "$img" "$m1"
# QEMU in turn refuses what tlbd holds.
expect_refused 'Failed to get "write" lock' \
    qemu-system-x86_64 -S -display none -nodefaults -accel tcg \
    -drive file="$img",format=raw,if=virtio -daemonize
stop_fuse "$d/f1.log" "$m1"
wait_unlocked
[ "$(sha256 "$img")" = "$sum" ] || die "the image changed"
echo "$test_name: ok"
