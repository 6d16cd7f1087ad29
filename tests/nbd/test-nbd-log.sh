#!/usr/bin/env bash
# tlbd: log-writes= through a real nbdkit and nbdsh, and `tlbd replay`:
# the log of writes, flushes, FUA writes, trims and zeroes holds FLUSH, FUA
# and DISCARD entries that an independent reader (tests/log-writes-reader.py,
# written from the kernel's documentation of dm-log-writes) finds and lists
# as `tlbd replay --list` does; that reader's replay equals `tlbd replay`
# at several limits; a live cut's image equals the replay of its log to
# the mark "powercut" with the cut's token; --to-mark replays to a mark
# placed with `tlbd ctl` (and to an at-mark cut); a log on a full file system
# stops the device (EIO, one message); bad logs, limits, marks and modes
# are refused with exit status 2 and the image untouched.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
# nbdsh needs Debian's python3, which may not be the first on PATH.
export PATH=/usr/bin:$PATH
nbdkit "$plugin" --dump-plugin | grep -qx "tlbd_log_writes=yes" ||
    die "the plugin lacks log-writes="
tlbd=$(tlbd_bin)
reader=$(dirname "$0")/../log-writes-reader.py

d=$(mktestdir)
img=$d/disk.img
base=$d/base.img
log=$d/log

# serve SCRIPT ARGS...: a fresh random image (saved as $base), then the
# python SCRIPT (h connected) against the plugin with a 1M cache, the log
# and ARGS; stderr in $d/err.
serve()
{
    local script=$1
    shift
    head -c 1M /dev/urandom >"$img"
    cp "$img" "$base"
    printf '%s\n' "$script" >"$d/script.py"
    local run="nbdsh -u \"\$uri\" -c 'exec(open(\"$d/script.py\").read())'"
    nbdkit -U - "$plugin" file="$img" volatile-cache=1M log-writes="$log" \
        "$@" --run "$run" 2>"$d/err" ||
        { cat "$d/err"; die "nbdkit or nbdsh failed"; }
    cat "$d/err"
}

lib='
import errno
def w(c, off, n=4096, flags=0):
    h.pwrite(c * n, off, flags)
'
work="$lib
def work():
    w(b\"A\", 0)
    w(b\"B\", 5000, 100)
    h.flush()
    w(b\"C\", 8192, 4096, nbd.CMD_FLAG_FUA)
    h.trim(8192, 65536)
    h.zero(4096, 131072)
    w(b\"D\", 300, 700)
    h.flush()
    for i in range(20):
        w(bytes([69 + i]), 4096 * (40 + i % 7), 1536 + i)
        if i % 6 == 5:
            h.flush()
    w(b\"Z\", 200000)
"
# The work until the power is cut.
cut_work="$work
try:
    work()
    raise AssertionError(\"no cut\")
except nbd.Error as e:
    assert e.args[1] == errno.EIO, e
"

# An orderly run: the reader lists what tlbd lists.
serve "$work
work()"
python3 "$reader" list "$log" >"$d/reader.list"
"$tlbd" replay --list "$log" >"$d/tlbd.list"
cat "$d/tlbd.list"
cmp "$d/reader.list" "$d/tlbd.list" || die "the listings differ"
for f in FLUSH FUA DISCARD; do
    grep -q " $f " "$d/reader.list" || die "the reader finds no $f entry"
done
n=$(wc -l <"$d/reader.list")
# The reader's replay and tlbd's, at several limits; the whole log gives
# the image as the orderly close left it.
for limit in 0 1 3 $((n / 3)) $((n / 2)) $((n - 2)) $n; do
    cp "$base" "$d/a.img"
    cp "$base" "$d/b.img"
    python3 "$reader" replay "$log" "$d/a.img" $limit
    "$tlbd" replay "$log" "$d/b.img" --limit $limit
    cmp "$d/a.img" "$d/b.img" || die "--limit $limit: the replays differ"
done
cmp "$d/b.img" "$img" || die "the whole log does not give the image"
# --from continues a base image.
cp "$base" "$d/b.img"
"$tlbd" replay "$log" "$d/b.img" --limit $((n / 2))
"$tlbd" replay "$log" "$d/b.img" --from $((n / 2))
cmp "$d/b.img" "$img" || die "--from does not continue the base"

# A live cut equals the replay of its log with the cut's token.
for mode in subset:0.5 torn:0.5 prefix all ignore-flush; do
    serve "$cut_work" powercut=after-writes=24,mode=$mode,seed=11
    token=$(grep -o 'powercut-token=[^ ]*' "$d/err" | cut -d= -f2)
    cut_mode=${token%%/*}
    seed=$(cut -d/ -f2 <<<"$token")
    [ "$cut_mode" = "$mode" ] && [ "$seed" = 11 ] || die "token $token"
    "$tlbd" replay --list "$log" | tail -1 | grep -q ' MARK 0 0 powercut$' ||
        die "$mode: the log does not end in the mark powercut"
    cp "$base" "$d/b.img"
    "$tlbd" replay "$log" "$d/b.img" --to-mark powercut --cut "$cut_mode" \
        --seed "$seed"
    cmp "$d/b.img" "$img" || die "$mode: the replay differs from the live cut"
    echo "$mode: the replay of $token equals the live cut"
done

# Marks from `tlbd ctl`: after a flush, the replay to a mark holds what the
# client read there; --to-mark NAME is --limit of the mark's index + 1.
ctl=$d/ctl.sock
serve "$lib
import subprocess
def mark(name):
    subprocess.run([\"$tlbd\", \"ctl\", \"$ctl\", \"mark\", name], check=True)
    with open(\"$d/\" + name + \".want\", \"wb\") as f:
        f.write(h.pread(1048576, 0))
w(b\"A\", 0)
w(b\"B\", 5000, 100)
h.flush()
mark(\"one\")
w(b\"C\", 8192, 4096, nbd.CMD_FLAG_FUA)
h.trim(8192, 65536)
w(b\"D\", 300, 700)
h.flush()
mark(\"two\")
w(b\"E\", 20000, 9000)
" control="$ctl"
"$tlbd" replay --list "$log" | grep -q ' MARK 0 0 two$' || die "no mark two"
for m in one two; do
    cp "$base" "$d/b.img"
    "$tlbd" replay "$log" "$d/b.img" --to-mark $m
    cmp "$d/b.img" "$d/$m.want" || die "--to-mark $m: not what the client read"
    i=$("$tlbd" replay --list "$log" |
        sed -n "s/^\([0-9]*\) MARK 0 0 $m\$/\1/p")
    cp "$base" "$d/a.img"
    "$tlbd" replay "$log" "$d/a.img" --limit $((i + 1))
    cmp "$d/a.img" "$d/b.img" || die "--to-mark $m is not --limit $((i + 1))"
done
# An at-mark cut: its replay with the token equals it.
serve "$lib
import subprocess
w(b\"A\", 0)
h.flush()
w(b\"B\", 0, 2000)
w(b\"C\", 8192, 5000)
subprocess.run([\"$tlbd\", \"ctl\", \"$ctl\", \"mark\", \"two\"], check=True)
try:
    w(b\"x\", 0)
    raise AssertionError(\"no cut at the mark\")
except nbd.Error as e:
    assert e.args[1] == errno.EIO, e
" control="$ctl" powercut=at-mark=two,mode=torn:0.5,seed=4
grep -q 'power cut (at-mark)' "$d/err" || die "no cut at the mark"
cp "$base" "$d/b.img"
"$tlbd" replay "$log" "$d/b.img" --to-mark powercut --cut torn:0.5 --seed 4
cmp "$d/b.img" "$img" || die "at-mark: the replay differs from the live cut"

# A log on a full file system: EIO, one message, then every request EIO.
requires_root
mkdir "$d/full"
mount -t tmpfs -o size=256k tmpfs "$d/full"
cleanup_fn "umount '$d/full'"
log=$d/full/log
serve "$lib
failed = False
for i in range(200):
    try:
        w(bytes([65 + i % 26]), 4096 * (i % 64))
        if i % 8 == 7:
            h.flush()
    except nbd.Error as e:
        assert e.args[1] == errno.EIO, e
        failed = True
        break
assert failed, \"the log never failed\"
for f in (h.flush, lambda: h.pread(4096, 0), lambda: w(b\"Q\", 0)):
    try:
        f()
        raise AssertionError(\"a request after the log failed succeeded\")
    except nbd.Error as e:
        assert e.args[1] == errno.EIO, e
"
[ "$(grep -c 'log-writes:' "$d/err")" = 1 ] ||
    die "not one message for the failing log"
grep -q "No space left on device" "$d/err" || die "the message lacks why"
log=$d/log

# Bad input: exit status 2, one message, the image untouched.
serve "$cut_work" powercut=after-writes=10,mode=subset:0.5,seed=1
sum=$(sha256 "$base")
size=$(stat -c %s "$log")
head -c $((size - 100)) "$log" >"$d/short.log"
head -c 4096 /dev/urandom >"$d/garbage.log"
refuse()
{
    local status=0
    "$tlbd" replay "$@" 2>"$d/err" || status=$?
    cat "$d/err"
    [ $status = 2 ] || die "replay $*: exit status $status, not 2"
    [ "$(grep -c "^tlbd" "$d/err")" = 1 ] || die "replay $*: not one message"
    [ "$(sha256 "$base")" = "$sum" ] || die "replay $*: the image changed"
}
refuse "$d/short.log" "$base"
refuse "$d/garbage.log" "$base"
refuse "$d/missing.log" "$base"
refuse "$log" "$base" --limit 100000
refuse "$log" "$base" --to-mark nope
refuse "$log" "$base" --cut half --to-mark powercut
refuse "$log" "$base" --cut subset:2
refuse "$log" "$base" --limit 2 --from 3
refuse "$log" "$base" --seed 3
refuse "$log" "$base" --limit x
refuse "$log" "$d/missing.img"
"$tlbd" replay "$log" "$base" --cut half 2>&1 | grep -q "unknown mode 'half'" ||
    die "a bad mode's message does not name it"
"$tlbd" replay --help | grep -q -- "--to-mark NAME" || die "--help"
echo "$test_name: ok"
