#!/usr/bin/env bash
# tlbd: under nbdkit --fork (the default: nbdkit goes to the background)
# the pool runs in the serving process (and no I/O thread: nbdkit's own
# threads wait for their requests): threads-min workers are there at once;
# with offload=always load grows the pool to threads-max and never beyond,
# idle-timeout shrinks it back to threads-min; with the default
# (offload=never) nbdkit's threads run the same load themselves and the
# pool stays at threads-min.  SIGTERM ends the process with every thread.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires python3 --version

d=$(mktestdir)
truncate -s 8M "$d/disk.img"

# run OFFLOAD PEAK: 16 reads, each held 100ms, against a server with
# threads-min=2 threads-max=5; the pool must peak at PEAK workers.
run() {
    rm -f "$d/pid" "$d/sock"
    # No -f: nbdkit forks, the parent exits once the child is ready.
    nbdkit -U "$d/sock" -P "$d/pid" "$plugin" file="$d/disk.img" \
        offload="$1" threads-min=2 threads-max=5 idle-timeout=300ms \
        inject='read:delay=100ms'
    wait_for "$d/pid"
    pid=$(cat "$d/pid")
    cleanup_fn "kill -9 $pid 2>/dev/null"
    export NBDKIT_PID=$pid PEAK=$2

    nbdsh -u "nbd+unix:///?socket=$d/sock" -c '
import os, time

pid = os.environ["NBDKIT_PID"]

def threads():
    names = []
    for t in os.listdir("/proc/%s/task" % pid):
        try:
            names.append(open("/proc/%s/task/%s/comm" % (pid, t)).read()
                         .strip())
        except OSError:
            pass
    return (sum(n.startswith("tl-nbd") for n in names),
            sum(n == "io-tlbd" for n in names))

def wait_until(cond, what):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out: %s (threads now %s)" % (what, threads()))

wait_until(lambda: threads() == (2, 0), "threads-min workers, no io-tlbd")

# 16 reads in flight, each held 100ms.
t0 = time.monotonic()
bufs = [nbd.Buffer(4096) for i in range(16)]
pending = set(h.aio_pread(bufs[i], i * 4096) for i in range(16))
peak = 0
while pending:
    h.poll(10)
    for c in list(pending):
        if h.aio_command_completed(c):
            pending.discard(c)
    peak = max(peak, threads()[0])
assert time.monotonic() - t0 >= 0.1, "the injected delay was not applied"
for i in range(16):
    assert bufs[i].to_bytearray() == bytearray(4096)
print("peak pool workers:", peak)
assert peak == int(os.environ["PEAK"]), peak
wait_until(lambda: threads() == (2, 0), "idle workers leave")
' || die "offload=$1: pool threads in the forked server"

    kill -TERM "$pid"
    for ((i = 0; i < 300; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    [ ! -d "/proc/$pid" ] || die "offload=$1: nbdkit did not exit on SIGTERM"
}

run always 5
run never 2
