#!/usr/bin/env bash
# tlbd nbd: --run with $uri, a served image reachable at the printed URI,
# -r, extra nbdkit arguments after "--", and a clean stop on SIGTERM.
source "$(dirname "$0")/../functions.sh"
set -e
requires nbdkit --version
requires nbdinfo --version
requires nbdcopy --version
plugin=$(nbdkit_plugin)
[ -f "$plugin" ] || skip "the nbdkit plugin is not built"
asan_preload

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/disk.img
truncate -s 16M "$img"
printf 'hello from tlbd' | dd of="$img" bs=1 seek=1M conv=notrunc status=none

# --run, with $uri set by nbdkit.
out=$("$tlbd" nbd --run 'nbdinfo --size "$uri"' "$img")
[ "$out" = $((16 << 20)) ] || die "nbdinfo --size through --run: $out"

# Data through the plugin, out with nbdcopy.
"$tlbd" nbd --run 'nbdcopy "$uri" '"$dir/copy.img" "$img"
cmp "$img" "$dir/copy.img" || die "nbdcopy copy differs"

# -r: writes are refused.
if "$tlbd" nbd -r --run 'nbdcopy '"$dir/copy.img"' "$uri"' "$img" \
    2>/dev/null; then
    die "a write through tlbd nbd -r succeeded"
fi

# Extra nbdkit arguments: an option before the plugin, a filter parameter
# after it.
"$tlbd" nbd --run 'nbdinfo "$uri" >/dev/null' "$img" -- \
    --filter=stats statsfile="$dir/stats"
grep -q 'read:' "$dir/stats" || die "the stats filter saw no read"

# The tuning options reach the plugin: good values serve, a bad injection
# spec stops nbdkit, and tlbd nbd says so with a non-zero exit.
out=$("$tlbd" nbd --cache none --discard ignore --threads-min 1 \
    --threads-max 4 --idle-timeout 500ms --inject 'read:delay=1ms' \
    --run 'nbdinfo --size "$uri"' "$img")
[ "$out" = $((16 << 20)) ] || die "tuned tlbd nbd: $out"
if "$tlbd" nbd --inject 'bogus!' --run true "$img" 2>"$dir/err"; then
    die "tlbd nbd --inject 'bogus!' succeeded"
fi
grep -q 'bogus' "$dir/err" || die "a bad --inject was not named: $(cat "$dir/err")"

# TCP on localhost, on a port free a moment ago.
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$("$tlbd" nbd --port "$port" --run 'echo "$uri"; nbdinfo --size "$uri"' \
    "$img")
[ "$out" = "nbd://localhost:$port
$((16 << 20))" ] || die "tlbd nbd --port: $out"

# Serving: the URI is printed, works, and SIGTERM stops everything.
"$tlbd" nbd "$img" >"$dir/uri" &
pid=$!
cleanup_fn "kill $pid 2>/dev/null"
for _ in $(seq 100); do
    [ -s "$dir/uri" ] && break
    sleep 0.1
done
uri=$(cat "$dir/uri")
[[ $uri =~ ^nbd\+unix:///\?socket=(/.*/nbd\.sock)$ ]] || die "URI '$uri'"
sock=${BASH_REMATCH[1]}
[ "$(nbdinfo --size "$uri")" = $((16 << 20)) ] || die "nbdinfo on $uri"
kill -TERM $pid
wait $pid || die "tlbd nbd exited $? on SIGTERM"
[ ! -e "$(dirname "$sock")" ] || die "the socket directory was left behind"
echo "$test_name: ok"
