#!/usr/bin/env bash
# tlbd bench --ioctl-mix: BLKGETSIZE64, discards and zeroouts mixed into a
# verified random load, on a sparse file, on loop devices with 512- and
# 4096-byte sectors (writeback, and O_DIRECT), and with requests smaller
# than the 4096-byte sector (discards cut to whole sectors).  Every run
# issues each kind, verifies every read and its final pass, and finds no
# error; bad --ioctl-kinds are refused with one message.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/ioctl-functions.sh"
set -e

tlbd=$(tlbd_bin)
d=$(mktestdir)

# mix IMAGE KINDS ARGS...: run, require a clean verification and a count
# above zero for each of KINDS.
mix()
{
    local img=$1 kinds=$2 out k n
    shift 2
    out=$("$tlbd" bench --ops 4000 --ioctl-mix 30 --ioctl-kinds "$kinds" \
          --no-progress "$@" "$img" 2>&1) ||
        die "tlbd bench --ioctl-kinds $kinds $* $img failed: $out"
    grep -q '^  verify    ok: .* 0 errors$' <<<"$out" ||
        die "tlbd bench $* $img: verification not ok: $out"
    for k in ${kinds//,/ }; do
        n=$(sed -n "s/^  ioctls .* $k \([0-9]*\).*/\1/p" <<<"$out")
        [ "${n:-0}" -gt 0 ] || die "$img $*: no $k was issued: $out"
    done
    echo "$out" | grep -E '^  (ioctls|verify)'
}

img=$d/disk.img
mix "$img" discard,zeroout --size 32M --bs 4k-64k
mix "$img" discard,zeroout --bs 512-16k --cache none
if "$tlbd" bench --ops 10 --ioctl-mix 10 --ioctl-kinds getsize "$img" \
        2>"$d/err"; then
    die "getsize on a regular file was accepted"
fi
grep -q "getsize needs a block device" "$d/err" || die "$(cat "$d/err")"
if "$tlbd" bench --ops 10 --ioctl-mix 10 --ioctl-kinds trim "$img" \
        2>"$d/err"; then
    die "--ioctl-kinds trim was accepted"
fi
grep -q "ioctl-kinds" "$d/err" || die "$(cat "$d/err")"

for sector in 512 4096; do
    back=$d/back-$sector
    truncate -s 32M "$back"
    attach_sector_loop "$back" "$sector"
    all=getsize,discard,zeroout
    mix "$loop_dev" getsize --rw randread --verify --bs 4k
    mix "$loop_dev" $all --bs 4k-64k
    mix "$loop_dev" $all --bs 4k-64k --cache none
    # Last: a later run with larger blocks could not tell a block that
    # this one partly zeroed from a corrupted one.
    mix "$loop_dev" $all --bs 512-8k
    detach_loop "$loop_dev"
done
