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

# In an ASan build the uninstrumented nbdkit that tlbd nbd runs needs the
# ASan runtime preloaded to load the plugin; only nbdkit gets it (through
# tlbd's environment), and the --run commands drop it again: clients and
# other uninstrumented tools misbehave with libasan preloaded.
# shellcheck disable=SC2207
asan_env=($(asan_preload
            if [ -n "${LD_PRELOAD:-}" ]; then
                echo env "LD_PRELOAD=$LD_PRELOAD" \
                     "ASAN_OPTIONS=${ASAN_OPTIONS:-}"
            fi))
drop='unset LD_PRELOAD ASAN_OPTIONS;'

tlbd=$(tlbd_bin)
tlbd_nbd() { "${asan_env[@]}" "$tlbd" nbd "$@"; }
dir=$(mktestdir)
img=$dir/disk.img
truncate -s 16M "$img"
printf 'hello from tlbd' | dd of="$img" bs=1 seek=1M conv=notrunc status=none

# --run, with $uri set by nbdkit.
out=$(tlbd_nbd --run "$drop"' nbdinfo --size "$uri"' "$img")
[ "$out" = $((16 << 20)) ] || die "nbdinfo --size through --run: $out"

# Data through the plugin, out with nbdcopy.
tlbd_nbd --run "$drop"' nbdcopy "$uri" '"$dir/copy.img" "$img"
cmp "$img" "$dir/copy.img" || die "nbdcopy copy differs"

# -r: writes are refused.
if tlbd_nbd -r --run "$drop"' nbdcopy '"$dir/copy.img"' "$uri"' "$img" \
    2>/dev/null; then
    die "a write through tlbd nbd -r succeeded"
fi

# Extra nbdkit arguments: an option before the plugin, a filter parameter
# after it.
tlbd_nbd --run "$drop"' nbdinfo "$uri" >/dev/null' "$img" -- \
    --filter=stats statsfile="$dir/stats"
grep -q 'read:' "$dir/stats" || die "the stats filter saw no read"

# The tuning options reach the plugin: good values serve, a bad injection
# spec stops nbdkit, and tlbd nbd says so with a non-zero exit.
out=$(tlbd_nbd --cache none --discard ignore --threads-min 1 \
    --threads-max 4 --idle-timeout 500ms --inject 'read:delay=1ms' \
    --run "$drop"' nbdinfo --size "$uri"' "$img")
[ "$out" = $((16 << 20)) ] || die "tuned tlbd nbd: $out"
# Options may also follow IMAGE (not "--"), and --inline-max is checked.
out=$(tlbd_nbd "$img" --inline-max 0 -r \
    --run "$drop"' nbdinfo --is read-only "$uri" && nbdinfo --size "$uri"')
[ "$out" = $((16 << 20)) ] || die "options after IMAGE: $out"
if "$tlbd" nbd --inline-max 1G --run true "$img" 2>"$dir/err"; then
    die "tlbd nbd --inline-max 1G was accepted"
fi
grep -q -- "^tlbd: inline-max: '1G' is not a size of at most 32M" \
    "$dir/err" || die "--inline-max: $(cat "$dir/err")"
# --offload reaches the plugin (nbdkit -v logs each key) and is checked.
tlbd_nbd -v --offload always --run "$drop"' nbdinfo --size "$uri"' "$img" \
    >/dev/null 2>"$dir/err" || die "--offload always: $(cat "$dir/err")"
grep -q "config key=offload, value=always" "$dir/err" ||
    die "--offload did not reach the plugin"
if "$tlbd" nbd --offload sometimes --run true "$img" 2>"$dir/err"; then
    die "tlbd nbd --offload sometimes was accepted"
fi
grep -q -- "^tlbd: offload: 'sometimes' is not one of" "$dir/err" ||
    die "--offload: $(cat "$dir/err")"
if "$tlbd" nbd "$img" extra --run true 2>"$dir/err"; then
    die "a second IMAGE was accepted"
fi
grep -q "unexpected argument 'extra'" "$dir/err" || die "$(cat "$dir/err")"
# (Not under ASan: there nbdkit can hang in exit() after printing an
# error, in glibc's locale lock, with libasan preloaded.)
if [ ${#asan_env[@]} -eq 0 ]; then
    if tlbd_nbd --inject 'bogus!' --run true "$img" 2>"$dir/err"; then
        die "tlbd nbd --inject 'bogus!' succeeded"
    fi
    grep -q 'bogus' "$dir/err" ||
        die "a bad --inject was not named: $(cat "$dir/err")"
fi

# TCP on localhost, on a port free a moment ago.
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$(tlbd_nbd --port "$port" --run "$drop"' echo "$uri"; nbdinfo --size "$uri"' \
    "$img")
[ "$out" = "nbd://localhost:$port
$((16 << 20))" ] || die "tlbd nbd --port: $out"

# Serving: the URI is printed, works, and SIGTERM stops everything.
"${asan_env[@]}" "$tlbd" nbd "$img" >"$dir/uri" &
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
