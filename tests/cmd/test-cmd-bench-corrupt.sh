#!/usr/bin/env bash
# tlbd bench catches data changed behind its back and says where:
#  1. the test hook overwrites a block it just wrote through another fd;
#  2. a block of an earlier run is corrupted while no bench runs;
#  3. a good block is copied over another (misplaced);
#  4. another process writes garbage over the image during a run.
# Each time it exits non-zero naming the offset.  An I/O error (injected)
# ends the run the same way.
source "$(dirname "$0")/../functions.sh"
set -e

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/disk.img

# fails OFFSET-REGEX ARGS...: the run must fail and name the offset.
fails()
{
    local want=$1 err status
    shift
    set +e
    err=$("$tlbd" bench --no-progress "$@" "$img" 2>&1 >/dev/null)
    status=$?
    set -e
    [ $status -ne 0 ] || die "tlbd bench $* missed the corruption"
    [ $status -lt 126 ] || die "tlbd bench $* crashed (exit $status): $err"
    grep -Eq "^tlbd: bench: verification failed at offset $want:" \
        <<<"$err" || die "tlbd bench $*: wrong report: $err"
    echo "$err"
}

# 1. The hook.
"$tlbd" bench --size 8M --ops 2000 --rw randwrite "$img" >/dev/null
err=$(TLBD_BENCH_CORRUPT_AFTER=300 fails '[0-9]+' --ops 100000 --rw randrw)
off=$(sed -n 's/.*test hook: corrupted the block at offset \([0-9]*\)$/\1/p' \
    <<<"$err")
[ -n "$off" ] || die "the hook did not run: $err"
grep -q "verification failed at offset $off: .*bad checksum" <<<"$err" ||
    die "the report does not name offset $off: $err"

# 2. A whole image of blocks from one run, then one of them damaged.
rm -f "$img"
"$tlbd" bench --size 4M --rw write --vcpus 1 --ops 1024 "$img" >/dev/null
bad=$((37 * 4096))
printf 'garbage!' |
    dd of="$img" bs=1 seek=$((bad + 1000)) conv=notrunc status=none
fails "$bad" --rw read --verify --vcpus 1 --ops 1024 >/dev/null
"$tlbd" bench --rw write --vcpus 1 --ops 1024 "$img" >/dev/null

# 3. Block 5 copied over block 9: a good block in the wrong place.
dd if="$img" of="$img" bs=4096 skip=5 seek=9 count=1 conv=notrunc \
    status=none
err=$(fails $((9 * 4096)) --rw read --verify --vcpus 1 --ops 1024)
grep -q "for offset $((5 * 4096)) (a misplaced block)" <<<"$err" ||
    die "a misplaced block was not called so: $err"

# 4. Garbage over the first MiB from another process, mid-run.
rm -f "$img"
"$tlbd" bench --no-progress --size 16M --duration 3 --rw randrw \
    "$img" >"$dir/out" 2>"$dir/err" &
pid=$!
cleanup_fn "kill $pid 2>/dev/null"
sleep 1
dd if=/dev/urandom of="$img" bs=64k count=16 conv=notrunc status=none
set +e
wait $pid
status=$?
set -e
[ $status -eq 1 ] || die "garbage mid-run: exit $status: $(cat "$dir/err")"
off=$(sed -n 's/^tlbd: bench: verification failed at offset \([0-9]*\):.*/\1/p' \
    "$dir/err")
[ -n "$off" ] && [ "$off" -lt $((1 << 20)) ] ||
    die "garbage mid-run: wrong report: $(cat "$dir/err")"
grep -q '^  verify    FAILED' "$dir/out" || die "the summary hides the failure"

# 5. An I/O error is reported with the request that failed.
set +e
err=$("$tlbd" bench --no-progress --ops 2000 --inject 'write:eio:after=50' \
    "$img" 2>&1 >/dev/null)
status=$?
set -e
[ $status -eq 1 ] || die "an injected EIO: exit $status: $err"
grep -Eq '^tlbd: bench: write of [0-9]+ bytes at offset [0-9]+ failed: Input/output error$' \
    <<<"$err" || die "an injected EIO was reported as: $err"
echo "$test_name: ok"
