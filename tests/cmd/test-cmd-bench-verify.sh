#!/usr/bin/env bash
# tlbd bench with verification in every --rw mode, with request size
# ranges, flushes, FUA and O_DIRECT: every run verifies and finds nothing
# wrong, and the write modes read every block back in the final pass.
source "$(dirname "$0")/../functions.sh"
set -e

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/disk.img

# bench ARGS...: run, require success and a clean verification line.
bench()
{
    local out
    out=$("$tlbd" bench --ops 3000 "$@" "$img") ||
        die "tlbd bench $* failed: $out"
    grep -q '^  verify    ok: .* 0 errors$' <<<"$out" ||
        die "tlbd bench $*: verification not ok: $out"
    echo "$out"
}

# The first run creates the image (sparse, so unwritten blocks read zeros).
out=$(bench --size 32M --rw write --bs 4k-64k)
[ "$(stat -c %s "$img")" = $((32 << 20)) ] || die "--size made the wrong size"
final=$(sed -n 's/.* \([0-9]*\) by the final pass.*/\1/p' <<<"$out")
[ "$final" -gt 0 ] || die "write run verified nothing in its final pass"

for rw in read randread; do
    out=$(bench --rw "$rw" --verify --bs 4k-16k)
    checked=$(sed -n 's/.*ok: \([0-9]*\) blocks checked by reads.*/\1/p' \
        <<<"$out")
    [ "$checked" -gt 0 ] || die "--rw $rw checked no block"
done
bench --rw randwrite --flush-every 16 --fua >/dev/null
out=$(bench --rw randrw --mix 70 --bs 512-8k --vcpus 3 --iodepth 8)
grep -q 'randrw 70% reads' <<<"$out" || die "the summary lost --mix"
checked=$(sed -n 's/.*ok: \([0-9]*\) blocks checked by reads.*/\1/p' <<<"$out")
[ "$checked" -gt 0 ] || die "randrw checked no block"

# cache=none (O_DIRECT) where the file system allows it.
if "$tlbd" info "$img" | grep -q '^O_DIRECT      yes'; then
    bench --rw randrw --cache none --bs 4k >/dev/null
fi

# A duration-bound run stops on time and still verifies.
start=$(date +%s)
out=$("$tlbd" bench --duration 2 --rw randrw "$img") || die "timed run: $out"
[ $(($(date +%s) - start)) -lt 30 ] || die "a 2 s run took too long"
grep -q '^  verify    ok' <<<"$out" || die "timed run: $out"

# Reads only: the image is opened read-only, so it is untouched.
sum=$(md5sum <"$img")
out=$("$tlbd" bench --ops 3000 --rw randread --no-verify "$img") ||
    die "--no-verify run failed: $out"
grep -q '^  verify    off$' <<<"$out" || die "--no-verify still verified"
[ "$(md5sum <"$img")" = "$sum" ] || die "a read-only run changed the image"
echo "$test_name: ok"
