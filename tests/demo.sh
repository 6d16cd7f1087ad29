#!/usr/bin/env bash
# tlbd: `make demo` — tlbd at work on a 1 GiB sparse image in BUILD/demo/.
#
#   tests/demo.sh [BUILD]      (BUILD defaults to build)
#
# 1. tlbd bench: vcpu threads drive the image through the I/O thread and the
#    threadlet pool for 10 s, every block verified.
# 2. tlbd fuse: the image as a FUSE-mounted file; mkfs.ext4 in it, a loop
#    mount (as root; fuse2fs otherwise), a tree copied in, checksummed back
#    after a remount, then e2fsck on the image itself.
# 3. tlbd nbd: the image served by nbdkit and the tlbd plugin; nbdcopy
#    copies it out, and the copy must equal the image.
#
# One line per step with its figures; details in BUILD/demo/*.log.  Leaves
# nothing mounted or running, even when a step fails.
set -euo pipefail
export PATH="/usr/bin:/usr/sbin:/bin:/sbin:$PATH"
export LC_ALL=C

build=$(cd "${1:-build}" && pwd)
tlbd=$build/cmd/tlbd
demo=$build/demo
img=$demo/disk.img
mnt=$demo/mnt
fusefile=$demo/fuse-disk
tree=${TLBD_DEMO_TREE:-/usr/share/doc}
python=/usr/bin/python3

[ -x "$tlbd" ] || { echo "demo: $tlbd is not built" >&2; exit 1; }
mkdir -p "$demo"

# --- cleanup: whatever state a failure leaves ------------------------------
fs_mounted=
fuse_pid=
loop=
cleanup()
{
    local status=$?
    set +e
    if [ -n "$fs_mounted" ]; then
        umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null
    fi
    if [ -n "$loop" ]; then
        losetup -d "$loop" 2>/dev/null
    fi
    if [ -n "$fuse_pid" ]; then
        fusermount3 -u "$fusefile" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$fuse_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$fuse_pid" 2>/dev/null
    fi
    rm -f "$demo/copy.img"
    if [ $status -ne 0 ]; then
        echo "demo: FAILED (exit $status); logs in $demo/" >&2
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
mbps() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) / 1e6 }'; }
fail() { echo "      FAILED: $*" >&2; exit 1; }

json()
{
    "$python" -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("/"):
    v = v[k]
print(v)' "$1" "$2"
}

echo "tlbd demo: a 1 GiB sparse image, $img"
echo "  every read and write below is offloaded to threadlet workers and"
echo "  finished by an I/O thread; details in $demo/*.log"
rm -f "$img" "$demo"/*.log "$demo/bench.json" "$demo/copy.img"

# --- 1. bench ---------------------------------------------------------------
echo "[1/3] tlbd bench: 2 vcpu threads x 16 requests in flight, random 4 KiB"
echo "      reads and writes for 10 s, every block stamped and verified"
t_step=$(now)
"$tlbd" bench --size 1G --duration 10 --vcpus 2 --iodepth 16 --rw randrw \
    --bs 4k --json="$demo/bench.json" "$img" >"$demo/bench.log" ||
    fail "tlbd bench: $(tail -n 3 "$demo/bench.log")"
j=$demo/bench.json
printf '      %s IOPS, %s MB/s, latency p50 %s us p99 %s us; %s workers;\n' \
    "$(json "$j" iops)" "$(json "$j" mbps)" "$(json "$j" latency_us/p50)" \
    "$(json "$j" latency_us/p99)" "$(json "$j" pool/peak)"
printf '      verified %s blocks read + %s in the final pass: %s, %s errors' \
    "$(json "$j" verification/blocks_checked)" \
    "$(json "$j" verification/final_blocks)" \
    "$(json "$j" verification/result)" "$(json "$j" errors)"
echo " ($(secs "$t_step" "$(now)") s)"

# --- 2. fuse ----------------------------------------------------------------
if ! "$tlbd" --help | grep -q '^  fuse '; then
    echo "[2/3] tlbd fuse: skipped (tlbd was built without libfuse3)"
else
    t_step=$(now)
    ntree=$(find "$tree" -type f | wc -l)
    ktree=$(du -sk "$tree" | cut -f1)
    if [ "$(id -u)" = 0 ]; then how="loop mount"; else how="fuse2fs"; fi
    echo "[2/3] tlbd fuse: the image as a FUSE file; mkfs.ext4, $how, copy"
    echo "      $tree ($ntree files) in, checksum it back, e2fsck"
    : >"$fusefile"
    mkdir -p "$mnt"
    "$tlbd" fuse -P "$demo/fuse.pid" --log="$demo/fuse.log" "$img" \
        "$fusefile" || fail "tlbd fuse"
    fuse_pid=$(cat "$demo/fuse.pid")
    # No discard: punching the bench's 1 GiB of scattered blocks out of the
    # host file system can take a minute on a busy disk.
    mkfs.ext4 -q -F -E nodiscard -L tlbd-demo "$fusefile" \
        >"$demo/mkfs.log" 2>&1 ||
        fail "mkfs.ext4: $(cat "$demo/mkfs.log")"
    mount_fs()
    {
        if [ "$(id -u)" = 0 ]; then
            # Direct I/O: the loop device sends several requests at once
            # instead of one at a time (see tlbd-fuse(1)).
            loop=$(losetup -f --show --direct-io=on "$fusefile") &&
                mount "$loop" "$mnt"
        else
            fuse2fs -o fakeroot "$fusefile" "$mnt" >>"$demo/fuse2fs.log"
        fi
        fs_mounted=1
    }
    umount_fs()
    {
        if [ "$(id -u)" = 0 ]; then
            umount "$mnt" && losetup -d "$loop" && loop=
        else
            fusermount3 -u "$mnt"
        fi
        fs_mounted=
    }
    mount_fs || fail "mounting the file system"
    t0=$(now)
    cp -a "$tree" "$mnt/tree" || fail "copying $tree"
    sync -f "$mnt"
    umount_fs || fail "unmounting"
    t1=$(now)
    (cd "$tree" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
        >"$demo/sums.orig"
    mount_fs || fail "mounting the file system again"
    (cd "$mnt/tree" && find . -type f -print0 | sort -z |
        xargs -0 sha256sum) >"$demo/sums.copy"
    t2=$(now)
    umount_fs || fail "unmounting"
    cmp -s "$demo/sums.orig" "$demo/sums.copy" ||
        fail "checksums differ: diff $demo/sums.orig $demo/sums.copy"
    fusermount3 -u "$fusefile" || fail "fusermount3 -u"
    for _ in $(seq 100); do
        kill -0 "$fuse_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$fuse_pid" 2>/dev/null && fail "tlbd fuse did not exit"
    fuse_pid=
    e2fsck -fn "$img" >"$demo/e2fsck.log" 2>&1 ||
        fail "e2fsck: $(tail -n 3 "$demo/e2fsck.log")"
    files=$(sed -n 's/^tlbd-demo: \([0-9]*\)\/.* files.*/\1/p' \
        "$demo/e2fsck.log")
    printf '      copied %s MB in %s s (%s MB/s), read back in %s s: %s\n' \
        "$((ktree / 1000))" "$(secs "$t0" "$t1")" \
        "$(mbps $((ktree * 1024)) "$t0" "$t1")" "$(secs "$t1" "$t2")" \
        "all $ntree checksums match"
    echo "      e2fsck -fn on the image: clean, $files inodes in use" \
        "($(secs "$t_step" "$(now)") s)"
fi

# --- 3. nbd -----------------------------------------------------------------
if ! [ -f "$build/nbd-plugin/nbdkit-tlbd-plugin.so" ]; then
    echo "[3/3] tlbd nbd: skipped (the nbdkit plugin is not built)"
else
    echo "[3/3] tlbd nbd: nbdkit serves the image with the tlbd plugin on a"
    echo "      Unix socket; nbdcopy copies it out, cmp compares"
    t0=$(now)
    # --allocated: a copy full of the bench's scattered blocks would take
    # longer to delete than to make.
    "$tlbd" nbd -r --run 'nbdinfo "$uri" && nbdcopy --allocated "$uri" '"'$demo/copy.img'" \
        "$img" >"$demo/nbd.log" 2>&1 ||
        fail "tlbd nbd: $(tail -n 3 "$demo/nbd.log")"
    t1=$(now)
    cmp "$img" "$demo/copy.img" >>"$demo/nbd.log" 2>&1 ||
        fail "the copy differs from the image: $(tail -n 1 "$demo/nbd.log")"
    rm -f "$demo/copy.img"
    size=$(stat -c %s "$img")
    printf '      %s bytes copied out in %s s (%s MB/s): cmp finds them identical\n' \
        "$size" "$(secs "$t0" "$t1")" "$(mbps "$size" "$t0" "$t1")"
fi
echo "tlbd demo: done; nothing left mounted or running"
