#!/usr/bin/env bash
# Bad commands and options are refused with one message naming the thing
# and the reason, then the usage line, a non-zero exit, and the image left
# exactly as it was.
source "$(dirname "$0")/../functions.sh"
set -e

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/disk.img
truncate -s 8M "$img"
printf 'precious' | dd of="$img" bs=1 seek=4096 conv=notrunc status=none
before=$(md5sum <"$img")

# refused EXPECTED-MESSAGE-REGEX ARGS...
refused()
{
    local want=$1 err status
    shift
    set +e
    err=$("$tlbd" "$@" 2>&1 >/dev/null)
    status=$?
    set -e
    [ $status -ne 0 ] || die "tlbd $* succeeded"
    [ $status -lt 126 ] || die "tlbd $* crashed (exit $status): $err"
    local first
    first=$(head -n1 <<<"$err")
    [[ $first =~ ^tlbd:\  ]] || die "tlbd $*: first line '$first'"
    [[ $first =~ $want ]] || die "tlbd $*: '$first' does not match '$want'"
    [ "$(grep -c '^tlbd:' <<<"$err")" = 1 ] ||
        die "tlbd $*: more than one message: $err"
    grep -q '^usage: tlbd' <<<"$err" || die "tlbd $*: no usage line: $err"
    [ "$(md5sum <"$img")" = "$before" ] || die "tlbd $* changed the image"
}

refused "unknown command 'frob'" frob
refused "unrecognized option '--frob'" --frob
refused "unrecognized option '--frob'" bench --frob "$img"
refused "missing IMAGE" bench
refused "too many arguments" bench "$img" "$img"
refused "--vcpus: bad value '0'" bench --vcpus 0 "$img"
refused "--vcpus: bad value 'two'" bench --vcpus two "$img"
refused "--iodepth: bad value '5000'" bench --iodepth 5000 "$img"
refused "--rw: bad value 'sideways'" bench --rw sideways "$img"
refused "--mix: bad value '101'" bench --mix 101 "$img"
refused "--mix: only applies to --rw randrw" bench --rw write --mix 10 "$img"
refused "--bs: bad value '1000'" bench --bs 1000 "$img"
refused "--bs: bad value '8k-4k'.*larger" bench --bs 8k-4k "$img"
refused "--bs: bad value '4q'" bench --bs 4q "$img"
refused "--duration: bad value '0'" bench --duration 0 "$img"
refused "--duration: bad value '3 weeks'" bench --duration "3 weeks" "$img"
refused "--size: bad value 'big'" bench --size big "$dir/new.img"
refused "cache: 'fast' is not one of writeback, none" \
    bench --cache fast "$img"
refused "threads-min: 8 is more than threads-max \(2\)" \
    bench --threads-min 8 --threads-max 2 "$img"
refused "--flush-every: the run does not write" \
    bench --rw read --flush-every 4 "$img"
refused "missing IMAGE" info
refused "unrecognized option '--frob'" info --frob "$img"
refused "missing IMAGE" nbd
refused "--port: bad value '0'" nbd --port 0 "$img"
refused "idle-timeout: '5 min' is not a duration" \
    nbd --idle-timeout "5 min" "$img"
refused "cache: 'fast' is not one of writeback, none" nbd --cache fast "$img"
refused "unexpected argument 'extra'" nbd "$img" extra
[ ! -e "$dir/new.img" ] || die "a refused bench created its image"

# A missing image: one line naming the path and the reason, and nothing created.
for cmd in bench info nbd; do
    set +e
    err=$("$tlbd" $cmd "$dir/missing.img" 2>&1 >/dev/null)
    status=$?
    set -e
    [ $status -ne 0 ] || die "tlbd $cmd on a missing image succeeded"
    [ "$err" = "tlbd: cannot open '$dir/missing.img': No such file or directory" ] ||
        die "tlbd $cmd on a missing image said: $err"
    [ ! -e "$dir/missing.img" ] || die "tlbd $cmd created the missing image"
done

# Bad injection specs are refused before any I/O.
set +e
err=$("$tlbd" bench --inject 'nonsense!' --ops 10 "$img" 2>&1 >/dev/null)
status=$?
set -e
[ $status -ne 0 ] || die "tlbd bench --inject nonsense succeeded"
[ "$(md5sum <"$img")" = "$before" ] || die "a bad --inject changed the image"
echo "$test_name: ok"
