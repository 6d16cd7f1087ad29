#!/usr/bin/env bash
# The loop-device helpers of tests/functions.sh.  detach_loop detaches
# what attach_loop attached, and a second call (the cleanup's) leaves the
# number alone, whoever has it by then.  A device detached behind the
# test's back whose number serves another file by then is left attached,
# with one message.  A test that fails leaves no device attached.
source "$(dirname "$0")/../functions.sh"
set -e
requires_root
requires losetup --version

d=$(mktestdir)
truncate -s 1M "$d/a" "$d/b" "$d/c"
a=$(readlink -f "$d/a")
b=$(readlink -f "$d/b")
c=$(readlink -f "$d/c")

# serves DEV FILE: DEV serves FILE.
serves() { [ "$(loop_backing_file "$1")" = "$2" ]; }

attach_loop "$d/a"
serves "$loop_dev" "$a" || die "attach_loop: $loop_dev does not serve $a"
detach_loop "$loop_dev"
! serves "$loop_dev" "$a" || die "detach_loop left $loop_dev attached"
# The number may serve another test now: the second call leaves it alone.
other=$(loop_backing_file "$loop_dev")
detach_loop "$loop_dev" 2>"$d/err" || die "a second detach_loop failed"
serves "$loop_dev" "$other" || die "a second detach_loop detached $other"
[ ! -s "$d/err" ] || die "a second detach_loop said: $(cat "$d/err")"

# Our device is detached behind our back (losetup -d) and its number
# attached to another file (retried while others take the number first).
for ((i = 0; ; i++)); do
    [ $i -lt 20 ] || die "could not attach $b to a number just freed"
    attach_loop "$d/a"
    losetup -d "$loop_dev"
    if losetup "$loop_dev" "$d/b" 2>/dev/null; then
        break
    fi
done
x=$loop_dev
cleanup_fn "detach_loop $x '$b'"
detach_loop "$x" 2>"$d/err" || die "detach_loop $x failed"
serves "$x" "$b" || die "detach_loop detached $x, which serves $b now"
grep -q "^$test_name: $x serves $b now, not $a: left alone$" "$d/err" ||
    die "detach_loop $x said: '$(cat "$d/err")'"
detach_loop "$x"
detach_loop "$x" "$d/a"
serves "$x" "$b" || die "detach_loop detached $x, which serves $b now"
detach_loop "$x" "$d/b"
! serves "$x" "$b" || die "detach_loop $x $b left it attached"

# A failing test: its cleanup detaches the device.
if TLBD_TEST_DIR=$d bash -c 'source "$1"; set -e
        attach_loop "$2"; echo "$loop_dev" >"$3"; false' \
        failing "$TLBD_SRC/tests/functions.sh" "$c" "$d/dev"; then
    die "the failing script succeeded"
fi
y=$(cat "$d/dev")
if serves "$y" "$c"; then
    detach_loop "$y" "$c"
    die "a failing test left $y attached to $c"
fi
echo "$test_name: ok"
