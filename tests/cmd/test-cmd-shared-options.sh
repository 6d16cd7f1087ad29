#!/usr/bin/env bash
# The options every front end shares (blockdrv's table: cache, discard,
# offload, inline-max, inject, threads-min, threads-max, idle-timeout,
# volatile-cache, powercut, control, log-writes, force-share, enospc),
# good and bad values, through each front end: the nbdkit plugin under real
# nbdkit, `tlbd nbd`, `tlbd fuse` (a real mount, unmounted again) and
# `tlbd bench` (a short read-only run).  Every front end must accept the
# same values and refuse the same ones with the same words after its own
# prefix, in one message naming the option, exit non-zero, and leave the
# image as it was.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/../nbd/nbd-functions.sh"

tlbd=$(tlbd_bin)
d=$(mktestdir)
img=$d/disk.img
mnt=$d/mnt
head -c 4M /dev/urandom >"$img"
: >"$mnt"
sum=$(sha256 "$img")

frontends="plugin nbd bench"
if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null &&
   "$tlbd" fuse --version >/dev/null 2>&1; then
    frontends="$frontends fuse"
    # A mount or daemon left behind by a failed case.
    cleanup_fn "fusermount3 -u -z '$mnt' 2>/dev/null"
    cleanup_fn "[ ! -s '$d/fuse.pid' ] || kill \$(cat '$d/fuse.pid') \
                2>/dev/null"
else
    echo "$test_name: no FUSE here: testing the other front ends only"
    [ "${CI:-}" != true ] || die "FUSE missing under CI"
fi

# The --run commands do without the ASan runtime (nbd-functions.sh).
drop='unset LD_PRELOAD ASAN_OPTIONS;'

# The status of the nbdkit command that just ran, stdout in $d/out and
# stderr in $d/err.  With the ASan runtime preloaded nbdkit may hang in
# exit() once it is done (see nbd-functions.sh): then judge by what it did
# before.
nbdkit_status()
{
    local status=$1
    if [ "$status" = 124 ] && $asan_build; then
        if grep -q SERVED "$d/out"; then
            status=0
        elif grep -q 'error: ' "$d/err"; then
            status=1
        fi
    fi
    return "$status"
}

# run_FRONTEND KEY=VALUE...: run it with those options; stdout in $d/out,
# stderr in $d/err.
run_plugin()
{
    local status=0
    timeout 30 "${nbdkit_env[@]}" nbdkit -U - "$plugin" file="$img" "$@" \
        --run "$drop echo SERVED" >"$d/out" 2>"$d/err" || status=$?
    nbdkit_status $status
}

# --KEY=VALUE for each KEY=VALUE.
as_options()
{
    local kv
    opts=()
    for kv in "$@"; do
        opts+=("--$kv")
    done
}

run_nbd()
{
    local status=0
    as_options "$@"
    timeout 30 "${nbdkit_env[@]}" "$tlbd" nbd "${opts[@]}" \
        --run "$drop echo SERVED" "$img" >"$d/out" 2>"$d/err" || status=$?
    nbdkit_status $status
}

run_bench()
{
    as_options "$@"
    timeout 60 "$tlbd" bench --rw read --ops 16 --vcpus 1 --iodepth 2 \
        --no-progress "${opts[@]}" "$img" >"$d/out" 2>"$d/err"
}

run_fuse()
{
    local status=0
    as_options "$@"
    rm -f "$d/fuse.pid"
    timeout 60 "$tlbd" fuse -P "$d/fuse.pid" "${opts[@]}" "$img" "$mnt" \
        >"$d/out" 2>"$d/err" || status=$?
    if [ $status = 0 ]; then
        cmp -n 65536 "$img" "$mnt" || die "fuse $*: the mount reads wrong"
        fusermount3 -u "$mnt" || die "fuse $*: cannot unmount"
        # The daemon exits once unmounted.
        for _ in $(seq 100); do
            [ -e "$d/fuse.pid" ] || break
            sleep 0.1
        done
        [ ! -e "$d/fuse.pid" ] || die "fuse $*: the daemon did not exit"
    fi
    return $status
}

# The message of a refusal, without the front end's prefix.  Each front
# end must print exactly one message line.
message()
{
    local fe=$1 re lines
    case $fe in
    plugin) re='^nbdkit: (tlbd(\[[0-9]+\])?: )?error: ' ;;
    fuse) re='^tlbd fuse: ' ;;
    # what only opening the image can tell, nbdkit reports for tlbd nbd
    nbd) re='^(tlbd: |nbdkit: (tlbd(\[[0-9]+\])?: )?error: )' ;;
    *) re='^tlbd: ' ;;
    esac
    lines=$(grep -E -c "$re" "$d/err" || true)
    [ "$lines" = 1 ] ||
        die "$fe: $lines messages instead of one: $(cat "$d/err")"
    grep -E "$re" "$d/err" | sed -E "s/$re//"
}

# check good|bad KEY=VALUE...: run every front end and compare.
check()
{
    local want=$1 fe status first_msg="" msg first_fe=""
    shift
    for fe in $frontends; do
        status=0
        "run_$fe" "$@" || status=$?
        [ $status -lt 124 ] || die "$fe $*: exit $status: $(cat "$d/err")"
        [ "$(sha256 "$img")" = "$sum" ] || die "$fe $*: the image changed"
        if [ "$want" = good ]; then
            [ $status = 0 ] || die "$fe refused $*: $(cat "$d/err")"
            continue
        fi
        [ $status != 0 ] || die "$fe accepted $*"
        msg=$(message "$fe")
        if [ -z "$first_fe" ]; then
            first_fe=$fe
            first_msg=$msg
        elif [ "$msg" != "$first_msg" ]; then
            die "$*: $first_fe says '$first_msg', $fe says '$msg'"
        fi
    done
    if [ "$want" = bad ]; then
        # The message names the (first) option and its value.
        local key=${1%%=*} value=${1#*=}
        [[ $first_msg == "$key: "* ]] ||
            die "$*: '$first_msg' does not start with '$key: '"
        [[ $first_msg == *"$value"* ]] ||
            die "$*: '$first_msg' does not quote '$value'"
        echo "refused $*: $first_msg"
    else
        echo "accepted $*"
    fi
}

# Every shared option, each good and bad value, in one table.
while IFS='|' read -r want a b; do
    [ -n "$want" ] || continue
    case $want in \#*) continue ;; esac
    if [ -n "$b" ]; then
        check "$want" "$a" "$b"
    else
        check "$want" "$a"
    fi
done <<'EOF'
good|cache=writeback
good|cache=none
bad|cache=fast
bad|cache=
good|discard=unmap
good|discard=ignore
bad|discard=maybe
good|offload=blocking
good|offload=never
good|offload=always
bad|offload=sometimes
good|inline-max=0
good|inline-max=64k
good|inline-max=32M
bad|inline-max=1G
bad|inline-max=lots
bad|inline-max=-1
good|inject=read:delay=1ms
bad|inject=nonsense!
bad|inject=read:eio:rate=2
good|threads-min=0
good|threads-min=4
bad|threads-min=-1
bad|threads-min=2x
bad|threads-min=4097
good|threads-max=1
good|threads-max=16
bad|threads-max=0
bad|threads-max=many
bad|threads-max=4097
good|idle-timeout=0
good|idle-timeout=500ms
good|idle-timeout=10
good|idle-timeout=2m
good|idle-timeout=24h
bad|idle-timeout=soon
bad|idle-timeout=10x
bad|idle-timeout=25h
bad|idle-timeout=5 min
good|volatile-cache=1M
good|volatile-cache=4k
bad|volatile-cache=0
bad|volatile-cache=abc
bad|volatile-cache=1000000T
good|volatile-cache=1M|powercut=after-writes=100000,mode=subset:0.5,seed=7
good|volatile-cache=1M|powercut=after-flushes=1000,mode=torn
bad|powercut=after-writes=10,mode=sometimes
bad|powercut=mode=all
bad|powercut=after=soon
good|force-share=on
good|force-share=off
bad|force-share=maybe
good|enospc=error
good|enospc=wait
bad|enospc=later
# threads-min alone above the default threads-max raises it; given both,
# threads-min may not be above threads-max.
good|threads-min=100
good|threads-min=3|threads-max=3
bad|threads-min=8|threads-max=2
bad|control=
bad|control=/a-path-longer-than-a-unix-socket-can-name/0123456789012345678901234567890123456789012345678901234567890123456789
EOF

# control=PATH: a socket while it runs, gone after (a path that exists is
# refused at open: test-cmd-ctl).
check good "control=$d/ctl.sock"
[ ! -e "$d/ctl.sock" ] || die "control=: a front end left its socket"

# log-writes= names a file: cases with paths of this run.
check good volatile-cache=1M "log-writes=$d/opt.log"
[ -s "$d/opt.log" ] || die "log-writes did not create the log"
check bad "log-writes="
check bad "log-writes=$d/alone.log"
[ ! -e "$d/alone.log" ] || die "a refused log-writes created its log"
check bad "log-writes=$d/nodir/x.log" volatile-cache=1M
check bad "log-writes=$img" volatile-cache=1M

# The help of each subcommand lists every shared option.
for fe in nbd bench ${frontends##*bench}; do
    help=$("$tlbd" "$fe" --help)
    for key in cache discard offload inline-max inject threads-min \
               threads-max idle-timeout volatile-cache powercut control \
               log-writes; do
        grep -q -- "--$key=" <<<"$help" ||
            die "tlbd $fe --help lacks --$key"
    done
    grep -qF -- "--enospc=error|wait" <<<"$help" ||
        die "tlbd $fe --help lacks --enospc"
    grep -qF -- "--force-share[=on|off]" <<<"$help" ||
        die "tlbd $fe --help lacks --force-share"
done
echo "$test_name: ok"
