#!/usr/bin/env bash
# tlbd stat: --help; bad intervals and counts, and control paths it cannot
# use (no file, not a socket, nobody listening, a server that is not tlbd's,
# one that answers but not stats-raw, one without the command, PATH -
# without $TLBD_CONTROL): one message naming the thing and the reason, exit
# 2 (1 when the export refuses the command).  Against `tlbd bench
# --control`: the header comes every 20 lines when stdout is not a
# terminal, --json gives one JSON object per line, and an export that stops
# under it ends it with one message and status 2.
source "$(dirname "$0")/../functions.sh"
set -e
export PATH=/usr/bin:$PATH

tlbd=$(tlbd_bin)
d=$(mktestdir)
img=$d/disk.img
truncate -s 4M "$img"
usage_line='usage: tlbd stat [--interval T] [--count N] [--json] CONTROL'

# expect STATUS MESSAGE ARGS...: `tlbd stat ARGS` exits STATUS and prints
# MESSAGE as its first line on stderr, then at most the usage line.
expect()
{
    local want=$1 msg=$2 status=0
    shift 2
    "$tlbd" stat "$@" >"$d/out" 2>"$d/err" || status=$?
    [ "$status" = "$want" ] ||
        die "stat $*: exit $status, expected $want: $(cat "$d/err")"
    [ "$(head -1 "$d/err")" = "$msg" ] ||
        die "stat $*: said '$(cat "$d/err")', expected '$msg'"
    case $(wc -l <"$d/err") in
    1) ;;
    2) [ "$(sed -n 2p "$d/err")" = "$usage_line" ] ||
           die "stat $*: a second line that is not the usage line" ;;
    *) die "stat $*: more than the message and the usage line" ;;
    esac
    [ ! -s "$d/out" ] || die "stat $*: printed '$(cat "$d/out")'"
}
# serve SOCKET REPLY: a Unix server answering REPLY to one connection.
serve()
{
    rm -f "$1"
    /usr/bin/python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
c = s.accept()[0]; c.recv(100); c.sendall(sys.argv[2].encode()); c.close()' \
        "$1" "$2" &
    server=$!
    cleanup_fn "kill $server 2>/dev/null"
    for ((i = 0; i < 100; i++)); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    die "the test server did not start"
}

"$tlbd" stat --help >"$d/out"
grep -qxF "$usage_line" "$d/out" || die "--help: no usage"
grep -q 'tlbd(1)' "$d/out" || die "--help: no pointer to tlbd(1)"

# Bad options.
expect 2 "tlbd stat: missing CONTROL"
expect 2 "tlbd stat: too many arguments" a b
for t in 0 abc 5ms 2h -1 1.5 ""; do
    expect 2 "tlbd stat: --interval: bad value '$t': expected a duration \
from 10ms to 1h (2s, 500ms, 1m)" --interval "$t" "$d/sock"
done
for n in 0 x -3 99999999999; do
    expect 2 "tlbd stat: --count: bad value '$n': expected a number from 1 \
to 4294967295" --count "$n" "$d/sock"
done
expect 2 "tlbd stat: PATH is '-' but TLBD_CONTROL is not set" -

# Control paths that are not a running tlbd export.
expect 2 "tlbd stat: '$d/none': No such file or directory" "$d/none"
expect 2 "tlbd stat: '$img': not a tlbd control socket (not a socket)" "$img"
/usr/bin/python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$d/stale.sock"
expect 2 "tlbd stat: '$d/stale.sock': Connection refused (export stopped?)" \
    "$d/stale.sock"
serve "$d/other.sock" 'hello
'
expect 2 \
    "tlbd stat: '$d/other.sock': not a tlbd control socket (unexpected reply)" \
    "$d/other.sock"
serve "$d/other.sock" 'hello
ok
'
expect 2 \
    "tlbd stat: '$d/other.sock': not a tlbd stats-raw reply (no format line)" \
    "$d/other.sock"
serve "$d/other.sock" 'format=7
ok
'
expect 2 "tlbd stat: '$d/other.sock': stats-raw format 7, this tlbd reads \
format 1" "$d/other.sock"
serve "$d/other.sock" "error: unknown command 'stats-raw' (help lists them)
"
expect 1 "tlbd stat: '$d/other.sock': unknown command 'stats-raw' (help \
lists them)" "$d/other.sock"

# A running export: tlbd bench.
"$tlbd" bench --rw randrw --duration 120s --vcpus 1 --iodepth 2 \
    --no-progress --control="$d/bench.sock" "$img" >"$d/bench.out" 2>&1 &
bench=$!
cleanup_fn "kill $bench 2>/dev/null"
for ((i = 0; i < 300; i++)); do
    [ -S "$d/bench.sock" ] && break
    sleep 0.1
done
# 45 lines, not a terminal: a header before lines 1, 21 and 41.
"$tlbd" stat --interval 10ms --count 45 "$d/bench.sock" >"$d/text"
[ "$(wc -l <"$d/text")" = 48 ] || die "$(wc -l <"$d/text") lines, not 48"
[ "$(grep -n 'r/s' "$d/text" | cut -d: -f1 | tr '\n' ' ')" = "1 22 43 " ] ||
    die "headers at $(grep -n 'r/s' "$d/text" | cut -d: -f1 | tr '\n' ' ')"
TLBD_CONTROL=$d/bench.sock "$tlbd" stat --json --interval 200ms --count 3 - \
    >"$d/json"
[ "$(wc -l <"$d/json")" = 3 ] || die "not 3 JSON lines"
/usr/bin/python3 - "$d/json" <<'PY' || die "--json"
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    # lines keep to a 200ms beat: after a late answer the next comes sooner
    assert 0 < o["interval_s"] < 1.0, o
    assert o["ops_per_s"]["read"] + o["ops_per_s"]["write"] > 0, o
    lat = o["latency_ns"]["write"]
    assert lat["count"] > 0 and 0 < lat["p50"] <= lat["p99"] <= lat["max"], o
PY

# The export stops under a running tlbd stat.
"$tlbd" stat --interval 100ms "$d/bench.sock" >"$d/out" 2>"$d/err" &
stat=$!
cleanup_fn "kill $stat 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    [ "$(wc -l <"$d/out")" -ge 3 ] && break
    sleep 0.1
done
kill -INT $bench
wait $bench || true
status=0
wait $stat || status=$?
[ $status = 2 ] || die "stat on an export that stopped: exit $status"
grep -qx "tlbd stat: '$d/bench.sock': \(No such file or directory\|\
Connection refused (export stopped?)\)" "$d/err" ||
    die "stopped export: $(cat "$d/err")"
[ "$(wc -l <"$d/err")" = 1 ] || die "more than one message: $(cat "$d/err")"
echo "$test_name: ok"
