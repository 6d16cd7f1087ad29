#!/usr/bin/env bash
# tlbd ctl: --help; usage errors and paths it cannot talk to (no file, not a
# socket, a stopped export, something that is not tlbd, PATH - without
# $TLBD_CONTROL) exit 2 with one message naming the path and the reason;
# commands the server refuses (unknown, wrong arguments, a bad mark name
# or mode) exit 1 with the server's one message; ok exits 0.  Also
# --control through `tlbd bench` while it runs, and a control path that
# exists refused at open by bench and fuse, the image untouched.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/../nbd/nbd-functions.sh"
export PATH=/usr/bin:$PATH

tlbd=$(tlbd_bin)
d=$(mktestdir)
img=$d/disk.img
truncate -s 4M "$img"

# expect STATUS MESSAGE ARGS...: `tlbd ctl ARGS` exits STATUS and prints
# exactly MESSAGE on stderr (one line); stdout in $d/out.
expect()
{
    local want=$1 msg=$2 status=0
    shift 2
    "$tlbd" ctl "$@" >"$d/out" 2>"$d/err" || status=$?
    [ "$status" = "$want" ] ||
        die "ctl $*: exit $status, expected $want: $(cat "$d/err")"
    [ "$(cat "$d/err")" = "$msg" ] ||
        die "ctl $*: said '$(cat "$d/err")', expected '$msg'"
}

# --help and the usage errors.
"$tlbd" ctl --help >"$d/out"
grep -q '^usage: tlbd ctl PATH COMMAND' "$d/out" || die "--help: no usage"
grep -q 'tlbd(1)' "$d/out" || die "--help: no pointer to tlbd(1)"
for c in mark powercut flush stats help; do
    grep -q "^  $c" "$d/out" || die "--help lacks $c"
done
status=0
"$tlbd" ctl 2>"$d/err" || status=$?
[ $status = 2 ] && grep -q '^tlbd ctl: missing PATH and COMMAND$' "$d/err" ||
    die "no arguments: exit $status: $(cat "$d/err")"
status=0
"$tlbd" ctl "$d/sock" 2>"$d/err" || status=$?
[ $status = 2 ] && grep -q '^tlbd ctl: missing COMMAND$' "$d/err" ||
    die "no command: exit $status: $(cat "$d/err")"
expect 2 "tlbd ctl: 'a b': an argument is one word, without spaces" \
    "$d/sock" mark "a b"
expect 2 "tlbd ctl: PATH is '-' but TLBD_CONTROL is not set" - stats

# Paths it cannot talk to.
expect 2 "tlbd ctl: '$d/none': No such file or directory" "$d/none" stats
expect 2 "tlbd ctl: '$img': not a tlbd control socket (not a socket)" \
    "$img" stats
# A socket nobody listens on: what a stopped export (kill -9) leaves.
/usr/bin/python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$d/stale.sock"
expect 2 "tlbd ctl: '$d/stale.sock': Connection refused (export stopped?)" \
    "$d/stale.sock" stats
# A server that is not tlbd's.
/usr/bin/python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
c = s.accept()[0]; c.recv(100); c.sendall(b"hello\n"); c.close()' \
    "$d/other.sock" &
other=$!
cleanup_fn "kill $other 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    [ -S "$d/other.sock" ] && break
    sleep 0.1
done
expect 2 \
    "tlbd ctl: '$d/other.sock': not a tlbd control socket (unexpected reply)" \
    "$d/other.sock" stats
wait $other

# A live export: what the server refuses exits 1 with its one message.
start_server "$d" file="$img" control="$d/ctl.sock"
expect 1 "tlbd ctl: unknown command 'frobnicate' (help lists them)" \
    "$d/ctl.sock" frobnicate
[ ! -s "$d/out" ] || die "an error printed output"
expect 1 "tlbd ctl: usage: mark NAME" "$d/ctl.sock" mark
expect 1 "tlbd ctl: usage: stats" "$d/ctl.sock" stats now
expect 1 "tlbd ctl: mark: 'a-name-of-more-than-thirty-one-bytes' is not a \
mark name (1 to 31 printable characters, no spaces)" \
    "$d/ctl.sock" mark a-name-of-more-than-thirty-one-bytes
expect 1 "tlbd ctl: powercut needs a volatile cache (volatile-cache=SIZE)" \
    "$d/ctl.sock" powercut
expect 0 "" "$d/ctl.sock" help
grep -q '^mark NAME: ' "$d/out" || die "help lacks mark"
TLBD_CONTROL=$d/ctl.sock expect 0 "" - stats
grep -qx 'marks=0' "$d/out" || die "stats through TLBD_CONTROL"
stop_server
start_server "$d" file="$img" control="$d/ctl.sock" volatile-cache=1M
expect 1 "tlbd ctl: powercut: 'half': unknown mode 'half' (all, subset:P, \
prefix, torn:P, ignore-flush) at column 1" "$d/ctl.sock" powercut half
expect 1 "tlbd ctl: powercut: 'x' is not a whole number" \
    "$d/ctl.sock" powercut seed=x
expect 1 "tlbd ctl: powercut: unexpected 'torn' (powercut [MODE] [seed=N])" \
    "$d/ctl.sock" powercut all torn
expect 0 "" "$d/ctl.sock" stats
grep -qx 'dead=0' "$d/out" || die "a refused powercut cut the power"
stop_server
expect 2 "tlbd ctl: '$d/ctl.sock': No such file or directory" \
    "$d/ctl.sock" stats

# tlbd bench --control: the counters move while it runs.
"$tlbd" bench --rw randwrite --duration 60s --vcpus 1 --iodepth 2 \
    --no-progress --control="$d/bench.sock" "$img" >"$d/bench.out" 2>&1 &
bench=$!
cleanup_fn "kill $bench 2>/dev/null"
for ((i = 0; i < 300; i++)); do
    [ -S "$d/bench.sock" ] && break
    sleep 0.1
done
for ((i = 0; i < 300; i++)); do
    w=$("$tlbd" ctl "$d/bench.sock" stats | sed -n 's/^writes=//p')
    [ "${w:-0}" -gt 0 ] && break
    sleep 0.1
done
[ "${w:-0}" -gt 0 ] || die "bench: no writes counted"
kill -INT $bench
wait $bench || true
[ ! -e "$d/bench.sock" ] || die "bench left its control socket"

# A control path that exists: refused at open, one message, image as it was.
sum=$(sha256 "$img")
: >"$d/taken"
status=0
"$tlbd" bench --rw read --ops 4 --no-progress --control="$d/taken" "$img" \
    >/dev/null 2>"$d/err" || status=$?
[ $status != 0 ] || die "bench took a path that exists"
[ "$(cat "$d/err")" = "tlbd: control: '$d/taken' exists and is not a socket" ] ||
    die "bench: $(cat "$d/err")"
if [ -c /dev/fuse ] && "$tlbd" fuse --version >/dev/null 2>&1; then
    : >"$d/mnt"
    status=0
    "$tlbd" fuse -f --control="$d/taken" "$img" "$d/mnt" 2>"$d/err" ||
        status=$?
    [ $status != 0 ] || die "fuse took a path that exists"
    [ "$(cat "$d/err")" = \
      "tlbd fuse: control: '$d/taken' exists and is not a socket" ] ||
        die "fuse: $(cat "$d/err")"
fi
[ "$(sha256 "$img")" = "$sum" ] || die "a refused open changed the image"
echo "$test_name: ok"
