#!/usr/bin/env bash
# tlbd: the control channel (control=PATH) of the plugin under a real
# nbdkit, driven by `tlbd ctl` while nbdsh writes: the socket is there, mode
# 0600, when nbdkit is ready (also with --fork); mark, stats (the keys and
# their values), powercut subset:0.5 seed=3 (reported, reproducible, then
# every request EIO); flush makes the volatile set durable across a cut;
# an at-mark rule cuts at its mark and not at another; a path that exists
# is refused with one message, a stale socket is replaced; another uid is
# refused; the socket is removed when nbdkit stops.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
export PATH=/usr/bin:$PATH
nbdkit "$plugin" --dump-plugin | grep -qx tlbd_control=yes ||
    die "the plugin lacks control="

tlbd=$(tlbd_bin)
d=$(mktestdir)
img=$d/disk.img
ctl=$d/ctl.sock

tctl() { "$tlbd" ctl "$ctl" "$@"; }
stat_of() { ctl_stat "$ctl" "$1"; }
expect_stat() { expect_ctl_stat "$ctl" "$1" "$2"; }
py() { nbdsh -u "$uri" -c "$1"; }
block() { block_letter "$img" "$1"; }
all_eio='
import errno
for f in (lambda: h.pread(4096, 0), lambda: h.pwrite(b"X" * 4096, 0),
          h.flush, lambda: h.zero(4096, 0)):
    try:
        f()
        raise AssertionError("a request after the cut succeeded")
    except nbd.Error as e:
        assert e.args[1] == errno.EIO, e
'

# --- mark, stats, powercut subset:0.5 seed=3 -------------------------------
# cut_run: a fresh image; A flushed at 0, then B..I unflushed at 4k..32k, a
# mark, the cut; prints the cut's line.  The image's sha256 in $d/sum.
cut_run()
{
    rm -f "$img"
    truncate -s 1M "$img"
    start_server "$d" file="$img" volatile-cache=1M control="$ctl" \
        2>"$d/err"
    [ -S "$ctl" ] || die "no control socket once nbdkit is ready"
    [ "$(stat -c %a "$ctl")" = 600 ] || die "the socket's mode is not 0600"
    py '
h.pwrite(b"A" * 4096, 0)
h.flush()
for i in range(8):
    h.pwrite(bytes([66 + i]) * 4096, 4096 * (i + 1))
'
    out=$(tctl mark before-cut) || die "mark failed"
    [ -z "$out" ] || die "mark printed '$out'"
    expect_stat volatile_cache 1048576
    expect_stat volatile_bytes 32768
    expect_stat volatile_writes 8
    expect_stat epoch 1
    expect_stat marks 1
    expect_stat dead 0
    expect_stat writes 9
    expect_stat flushes 1
    expect_stat in_flight 0
    for k in destaged cache_writes reads bytes_written errors; do
        [ -n "$(stat_of $k)" ] || die "stats lacks $k"
    done
    tctl powercut subset:0.5 seed=3 >"$d/cut" || die "powercut failed"
    cat "$d/cut"
    grep -q '^power cut (on demand): mode=subset:0.5 seed=3 epoch=1 writes=9 ' \
        "$d/cut" || die "powercut's line"
    grep -q 'powercut-token=subset:0.5/3/1/9$' "$d/cut" || die "no token"
    expect_stat dead 1
    py "$all_eio"
    if tctl mark after 2>"$d/msg"; then die "a mark after the cut worked"; fi
    grep -qx 'tlbd ctl: mark: the power is cut' "$d/msg" || die "$(cat "$d/msg")"
    if tctl powercut 2>"$d/msg"; then die "a second cut worked"; fi
    grep -q 'already' "$d/msg" || die "$(cat "$d/msg")"
    stop_server
    [ ! -e "$ctl" ] || die "the control socket outlived nbdkit"
    grep -q 'power cut (on demand)' "$d/err" || die "no line on stderr"
    sha256 "$img" >"$d/sum"
}
cut_run
[ "$(block 0)" = A ] || die "the flushed block is $(block 0)"
kept=0
for i in $(seq 1 8); do
    b=$(block $((i * 4096)))
    case $b in
    0) ;;
    "$(printf "\\x$(printf %x $((65 + i)))")") kept=$((kept + 1)) ;;
    *) die "block $i holds $b" ;;
    esac
done
grep -q "kept=$kept dropped=$((8 - kept)) " "$d/cut" ||
    die "kept $kept, the line says otherwise"
first=$(cat "$d/sum")
cut_run
[ "$(cat "$d/sum")" = "$first" ] || die "the same cut gave another image"

# --- flush: durable across a cut ------------------------------------------
rm -f "$img"
truncate -s 1M "$img"
start_server "$d" file="$img" volatile-cache=1M control="$ctl" 2>"$d/err"
py 'h.pwrite(b"X" * 4096, 0)'
expect_stat volatile_bytes 4096
tctl flush || die "flush failed"
expect_stat volatile_bytes 0
expect_stat epoch 1
py 'h.pwrite(b"Y" * 4096, 4096)'
tctl powercut >/dev/null || die "powercut failed"
stop_server
[ "$(block 0)" = X ] && [ "$(block 4096)" = 0 ] ||
    die "after flush, cut all: $(block 0) $(block 4096)"

# --- at-mark: cuts at its mark, not at another ------------------------------
rm -f "$img"
truncate -s 1M "$img"
start_server "$d" file="$img" volatile-cache=1M control="$ctl" \
    powercut=at-mark=commit,mode=all 2>"$d/err"
py 'h.pwrite(b"A" * 4096, 0); h.flush(); h.pwrite(b"B" * 4096, 4096)'
tctl mark other || die "mark other"
expect_stat dead 0
tctl mark commit || die "mark commit"
expect_stat dead 1
expect_stat marks 2
py "$all_eio"
stop_server
grep -q '^tlbd: power cut (at-mark): mode=all seed=0 epoch=1 writes=2 ' \
    "$d/err" || { cat "$d/err"; die "no at-mark line"; }
[ "$(block 0)" = A ] && [ "$(block 4096)" = 0 ] ||
    die "at-mark: $(block 0) $(block 4096)"

# --- without a cache: marks count, powercut refused ------------------------
start_server "$d" file="$img" control="$ctl"
tctl mark m1 || die "mark without a cache"
expect_stat marks 1
expect_stat volatile_cache 0
if tctl powercut 2>"$d/msg"; then die "powercut without a cache"; fi
grep -qx 'tlbd ctl: powercut needs a volatile cache (volatile-cache=SIZE)' \
    "$d/msg" || die "$(cat "$d/msg")"

# --- another uid: the mode keeps it out, and so does SO_PEERCRED -----------
if [ "$(id -u)" = 0 ]; then
    requires setpriv --version
    nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    chmod 711 "$d" # the socket's own mode must keep nobody out
    if "${nobody[@]}" "$tlbd" ctl "$ctl" stats 2>"$d/msg"; then
        die "uid nobody got in"
    else
        [ $? = 2 ] || die "not exit 2 for a refused connect"
    fi
    grep -q 'Permission denied' "$d/msg" || die "$(cat "$d/msg")"
    chmod 666 "$ctl"
    if "${nobody[@]}" "$tlbd" ctl "$ctl" stats >"$d/out" 2>"$d/msg"; then
        die "uid nobody got in through a mode 0666 socket"
    else
        st=$?
        [ $st = 1 ] || die "exit $st for a refused peer: $(cat "$d/msg")"
    fi
    [ ! -s "$d/out" ] || die "a refused peer got stats"
    grep -q 'permission denied: uid [0-9]* does not own' "$d/msg" ||
        die "$(cat "$d/msg")"
fi

# --- a path in use, a path that exists: refused; a stale socket: replaced --
before=$(sha256 "$img")
# force-share: the control socket is the conflict under test, not the lock
if nbdkit -U - "$plugin" file="$img" control="$ctl" force-share=on --run true \
    2>"$d/msg"; then
    die "a second export took a control socket in use"
fi
[ "$(grep -c 'error:' "$d/msg")" = 1 ] || die "not one message"
grep -q "control: '$ctl' is in use" "$d/msg" || die "$(cat "$d/msg")"
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null || true
[ -S "$ctl" ] || die "kill -9 removed the socket?"
if tctl stats 2>"$d/msg"; then die "a stale socket answered"; fi
grep -q "Connection refused (export stopped?)" "$d/msg" || die "$(cat "$d/msg")"
start_server "$d" file="$img" control="$ctl"
expect_stat marks 0
stop_server
touch "$ctl"
if nbdkit -U - "$plugin" file="$img" control="$ctl" --run true \
    2>"$d/msg"; then
    die "a regular file was taken as the control socket"
fi
[ "$(grep -c 'error:' "$d/msg")" = 1 ] || die "not one message"
grep -q "control: '$ctl' exists and is not a socket" "$d/msg" ||
    die "$(cat "$d/msg")"
[ -f "$ctl" ] && [ "$(sha256 "$img")" = "$before" ] ||
    die "the refused open changed something"
rm -f "$ctl"

# --- nbdkit --fork: the socket answers as soon as nbdkit returns ----------
rm -f "$d/sock" "$d/pid"
# (nbdkit_env is `env ...` under ASan; `env` runs the real nbdkit)
real_nbdkit=(command nbdkit)
! $asan_build || real_nbdkit=("${nbdkit_env[@]}" nbdkit)
(cd "$d" && "${real_nbdkit[@]}" -U "$d/sock" -P "$d/pid" "$plugin" \
    file="$img" volatile-cache=64k control=ctl.sock)
pid=$(cat "$d/pid")
cleanup_fn "kill -9 $pid 2>/dev/null"
expect_stat volatile_cache 65536
kill "$pid"
for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ ! -e "$ctl" ] || die "nbdkit --fork left the socket (a relative path)"
echo "$test_name: ok"
