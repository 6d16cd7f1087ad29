#!/usr/bin/env bash
# FUSE INTERRUPT: with every read delayed (--inject=read:delay=20s) and one
# pool worker, a reader whose read is still queued behind another returns
# at once when a signal arrives: killed by SIGINT it exits at once (its
# read and the FLUSH of its close are both taken back from the queue);
# with a handler it sees EINTR.  A read whose delay is running is cut
# short.  The statistics count it all, nothing stays in flight, the daemon
# serves on with the right data, and exits cleanly (no leak under ASan).
# "At once" means before the read ahead of it is done, not a time limit.
# Over io_uring the kernel sends no INTERRUPT for a dying process's FLUSH:
# the daemon takes it as interrupted itself, and counts it.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e
requires perl -e 1

fuse_test_dirs
rm -rf "$mnt"
: >"$mnt"
head -c 4M /dev/urandom >"$img"
log=$d/log

start_fuse "$log" --inject=read:delay=20s --threads-max=1 "$img" "$mnt"

# The last statistics line of the daemon that starts with PATTERN.
stat_line()
{
    local n
    n=$(grep -c 'tlbd fuse: .* on ' "$log" || true)
    kill -USR1 "$fuse_pid"
    for ((i = 0; i < 300; i++)); do
        [ "$(grep -c 'tlbd fuse: .* on ' "$log")" -gt "$n" ] &&
            grep -q '^  io thread' <(tail -1 "$log") && break
        sleep 0.1
    done
    grep -E "^  $1" "$log" | tail -1
}

# Wait until N requests are in flight in the export.
wait_in_flight()
{
    for ((j = 0; j < 300; j++)); do
        [[ "$(stat_line errors)" == *"in flight $1 "* ]] && return 0
        sleep 0.1
    done
    die "never $1 requests in flight: $(stat_line errors)"
}

# A reader of the file's start, with SIGINT at its default (a background
# job of a script ignores it otherwise).  head opens and reads: no close
# (FLUSH) before its read.  exec: $! is then head itself.
reader()
{
    exec env --default-signal=INT head -c 4096 "$mnt" >/dev/null
}

# 1. A queued read, killed by SIGINT.
reader &
first=$!
cleanup_fn "kill -9 $first 2>/dev/null"
wait_in_flight 1
reader &
second=$!
cleanup_fn "kill -9 $second 2>/dev/null"
wait_in_flight 2
kill -INT "$second"
rc=0
wait "$second" || rc=$?
[ $rc = 130 ] || die "the interrupted reader exited with $rc"
pid_alive "$first" || die "the interrupted reader waited for the first read"
echo "killed reader returned while the first read was still delayed"

# 2. A queued read with a handler: read(2) fails with EINTR.  Then it dies
# of SIGKILL, so that the FLUSH of its close does not wait for the first
# read either.
perl -e '$SIG{INT} = sub {}; open(F, "<", $ARGV[0]) or die "$!";
         $n = sysread(F, $b, 4096, 0);
         print defined($n) ? "read $n\n" : "error $!\n";
         close(STDOUT); kill("KILL", $$)' "$mnt" >"$d/perl.out" &
third=$!
cleanup_fn "kill -9 $third 2>/dev/null"
wait_in_flight 2
kill -INT "$third"
wait "$third" || true
pid_alive "$first" || die "the interrupted read waited for the first read"
grep -q "error Interrupted system call" "$d/perl.out" ||
    die "read(2) did not fail with EINTR: $(cat "$d/perl.out")"
echo "read(2) got EINTR"

# 3. The first read, whose delay runs on the worker: cut short.
kill -INT "$first"
rc=0
wait "$first" || rc=$?
[ $rc = 130 ] || die "the first reader exited with $rc"

# Taken back: the two queued reads, and mostly the FLUSH of each dying
# reader's close too (it queues behind the delayed read; the kernel sends
# an INTERRUPT for it as the process has a fatal signal pending).  Plus
# one interrupt for the running delay.
line=$(stat_line interrupts)
echo "$line"
[[ $line =~ ^\ \ interrupts\ ([0-9]+)\ \(cancelled\ in\ the\ queue\ ([0-9]+)\)$ ]] ||
    die "no interrupt counts: $line"
interrupts=${BASH_REMATCH[1]}
cancelled=${BASH_REMATCH[2]}
[ "$cancelled" -ge 2 ] && [ "$interrupts" -ge $((cancelled + 1)) ] ||
    die "wrong interrupt counts: $line"
line=$(stat_line image)
echo "$line"
[[ $line == *"cancelled $cancelled, delays interrupted 1, in flight 0" ]] ||
    die "wrong image counts: $line"
# Over io_uring: at least the FLUSHes of the second reader and of perl.
if [ "$fuse_io_uring" = on ]; then
    line=$(stat_line ring:)
    echo "$line"
    [[ $line =~ flushes\ of\ dying\ processes\ interrupted\ ([0-9]+)$ ]] &&
        [ "${BASH_REMATCH[1]}" -ge 2 ] ||
        die "dying processes' flushes not taken as interrupted: $line"
fi

# 4. The daemon serves on, with the right data (one more delay).
cmp -n 4096 "$img" "$mnt" || die "wrong data after the interrupts"
[[ "$(stat_line errors)" == *"in flight 0 "* ]] || die "requests left"
stop_fuse "$log" "$mnt"
echo "$test_name: ok"
