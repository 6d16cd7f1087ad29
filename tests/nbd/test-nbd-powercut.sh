#!/usr/bin/env bash
# tlbd: volatile-cache= and powercut= through a real nbdkit and nbdsh, no
# file system: the export advertises flush and FUA; a write then a cut is
# lost; a flushed write is kept; a FUA write is kept; A, flush, B over A,
# cut: A; a discard after the flush is lost; writes the full cache
# destaged survive; after the cut every request gets EIO; one line reports
# the cut with its token; a bad rule or cache size is refused with one
# message and leaves the image as it was.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
# nbdsh needs Debian's python3, which may not be the first on PATH.
export PATH=/usr/bin:$PATH
for feature in volatile_cache powercut; do
    nbdkit "$plugin" --dump-plugin | grep -qx "tlbd_$feature=yes" ||
        die "the plugin lacks $feature="
done

d=$(mktestdir)
img=$d/disk.img

# run_cut RULE SCRIPT [KEY=VALUE...]: a fresh zeroed image, then SCRIPT
# (python, with h connected) against the plugin with a 1M cache and RULE;
# stderr in $d/err.
run_cut()
{
    local rule=$1 script=$2
    shift 2
    rm -f "$img"
    truncate -s 1M "$img"
    printf '%s\n' "$script" >"$d/script.py"
    local run="nbdsh -u \"\$uri\" -c 'exec(open(\"$d/script.py\").read())'"
    nbdkit -U - "$plugin" file="$img" volatile-cache=1M powercut="$rule" \
        "$@" --run "$run" 2>"$d/err" ||
        { cat "$d/err"; die "$rule: nbdkit or nbdsh failed"; }
    cat "$d/err"
    grep -c 'power cut' "$d/err" | grep -qx 1 ||
        die "$rule: not exactly one line reports the cut"
}

# block OFFSET: the 4k at OFFSET of the image as the one letter it
# repeats, "0" for zeroes, or "mixed".
block() { block_letter "$img" "$1"; }

# The helpers a script uses.
lib='
import errno
def w(c, off, flags=0):
    h.pwrite(c * 4096, off, flags)
def dead():
    for f in (lambda: h.pread(4096, 0), lambda: w(b"X", 0), h.flush,
              lambda: h.trim(4096, 0), lambda: h.zero(4096, 0)):
        try:
            f()
            raise AssertionError("a request after the cut succeeded")
        except nbd.Error as e:
            assert e.args[1] == errno.EIO, e
'

# The export advertises flush and FUA; a write, then the cut: lost; every
# request after it gets EIO.
run_cut after-writes=2,mode=all "$lib
assert h.can_flush() and h.can_fua()
w(b\"A\", 0)
assert h.pread(4096, 0) == b\"A\" * 4096
w(b\"B\", 8192)
dead()
"
[ "$(block 0)" = 0 ] && [ "$(block 8192)" = 0 ] ||
    die "unflushed writes survived a cut of mode all"
grep -q 'mode=all seed=0 epoch=0 writes=2 kept=0 dropped=2' "$d/err" ||
    die "the report does not say what was cut"
grep -q 'powercut-token=all/0/0/2' "$d/err" || die "no token"

# Write, flush, cut: kept.
run_cut after-flushes=1,mode=all "$lib
w(b\"A\", 0)
h.flush()
dead()
"
[ "$(block 0)" = A ] || die "a flushed write was lost"

# A FUA write: kept; the plain write before it: lost.
run_cut after-writes=2,mode=all "$lib
w(b\"A\", 0)
w(b\"F\", 65536, nbd.CMD_FLAG_FUA)
dead()
"
[ "$(block 0)" = 0 ] && [ "$(block 65536)" = F ] ||
    die "FUA: got $(block 0) and $(block 65536)"

# A, flush, B over A, then a trim after the flush, cut: A, and the
# trimmed block still there.
run_cut after-writes=4,mode=all "$lib
w(b\"A\", 0)
w(b\"C\", 131072)
h.flush()
w(b\"B\", 0)
assert h.pread(4096, 0) == b\"B\" * 4096
h.trim(4096, 131072)
dead()
"
[ "$(block 0)" = A ] && [ "$(block 131072)" = C ] ||
    die "A, flush, B: got $(block 0), and $(block 131072) for the trim"

# A full cache destages: with room for 3 writes of 4k, 32 writes, cut all:
# the destaged ones (at least 29) survive whole.
run_cut after-writes=32,mode=all,seed=5 "$lib
for i in range(32):
    w(bytes([65 + i % 26]), i * 4096)
    if i < 31:
        assert h.pread(4096, 0) == b\"A\" * 4096
" volatile-cache=13k
survived=0
for i in $(seq 0 31); do
    b=$(block $((i * 4096)))
    [ "$b" != mixed ] || die "block $i is torn"
    [ "$b" = 0 ] || survived=$((survived + 1))
done
echo "destaged and kept: $survived of 32"
[ $survived -ge 29 ] && [ $survived -lt 32 ] ||
    die "$survived of 32 writes survived a cut with a cache of 3"

# Bad input: one message with the column; the image untouched.
head -c 1M /dev/urandom >"$img"
sum=$(sha256 "$img")
for args in "powercut=after-writes=5,mode=half volatile-cache=1M" \
            "volatile-cache=0" "volatile-cache=abc" \
            "volatile-cache=1000000T" "powercut=after-writes=1"; do
    # shellcheck disable=SC2086
    if nbdkit -U - "$plugin" file="$img" $args --run true 2>"$d/err"; then
        die "accepted $args"
    fi
    cat "$d/err"
    [ "$(grep -c 'error:' "$d/err")" = 1 ] || die "$args: not one message"
    [ "$(sha256 "$img")" = "$sum" ] || die "$args: the image changed"
done
nbdkit -U - "$plugin" file="$img" volatile-cache=1M \
    powercut=after-writes=5,mode=half --run true 2>&1 |
    grep -q "unknown mode 'half'.* at column 21" ||
    die "the bad rule's message lacks its column"
echo "$test_name: ok"
