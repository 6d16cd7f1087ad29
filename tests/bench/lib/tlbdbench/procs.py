"""Child processes and what /proc says about them.

Servers start in a session of their own (Ctrl-C on the terminal reaches only
the runner, which stops them in order) and with PR_SET_PDEATHSIG, so that
even a runner killed with SIGKILL takes them along.  CPU time is utime +
stime of the whole thread group from /proc/PID/stat (threads that already
exited included); peak RSS is VmHWM from /proc/PID/status.
"""

import ctypes
import os
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


class RunError(Exception):
    """A run that failed: the message is the reason shown in the table."""


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run(argv, timeout=None, check=True, merge=False):
    """Run a command to completion in a process group of its own; on
    failure raise RunError with the last line it printed.  If the runner is
    interrupted meanwhile, the whole group is killed (fio's job processes
    too) before the exception goes on, so that nothing keeps a mount busy.
    """
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT if merge
                             else subprocess.PIPE,
                             text=True, errors="replace",
                             start_new_session=True)
    except OSError as e:
        raise RunError("%s: %s" % (argv[0], e.strerror))
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        raise RunError("%s: timed out after %ss"
                       % (os.path.basename(argv[0]), timeout))
    except BaseException:
        kill_group(p)
        raise
    res = subprocess.CompletedProcess(argv, p.returncode, out, err)
    if check and p.returncode != 0:
        raise RunError("%s failed (exit %d): %s"
                       % (os.path.basename(argv[0]), p.returncode,
                          first_line(err or out)))
    return res


def kill_group(p, timeout=10):
    """SIGKILL a child's process group and wait until all of it is gone."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def umount(path, timeout=30):
    """Unmount, retrying while busy; lazily as the last resort."""
    deadline = time.monotonic() + timeout
    while True:
        p = run(["umount", path], check=False, timeout=timeout)
        if p.returncode == 0 or not mounted(path):
            return
        if time.monotonic() > deadline:
            run(["umount", "-l", path], check=False)
            raise RunError("%s busy; unmounted lazily" % path)
        time.sleep(0.2)


def first_line(text):
    """The cause, which tools print first (tar ends with a summary)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0] if lines else "no message"


def last_line(text):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


class Proc:
    """A long-running child (a server) with its output in a log file."""

    def __init__(self, name, argv, log_path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.popen = None

    def start(self):
        with open(self.log_path, "ab") as logf:
            logf.write(("$ " + " ".join(self.argv) + "\n").encode())
            logf.flush()
            try:
                self.popen = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_die_with_parent)
            except OSError as e:
                raise RunError("%s: %s" % (self.argv[0], e.strerror))

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def why_dead(self):
        """The reason a child exited early, from its log."""
        try:
            with open(self.log_path, errors="replace") as f:
                tail = last_line(f.read())
        except OSError:
            tail = "no log"
        return "%s exited (status %s): %s" % (self.name,
                                              self.popen.returncode, tail)

    def stop(self, timeout=15):
        """SIGTERM, wait, then SIGKILL; returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def cpu_ticks(pid):
    """utime + stime of the thread group, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pids):
    return sum(cpu_ticks(p) for p in pids) / CLK_TCK


class SwitchCounter:
    """Context switches of a server's threads, including the threads it
    starts later (nbdkit starts one per connection), from `perf stat -I`
    attached to it for its whole life.  count() sums the intervals that end
    inside a time window, so a window is accurate to one interval."""

    INTERVAL = 0.1

    def __init__(self, pids, path):
        self.path = path
        self.t0 = time.monotonic()
        with open(os.devnull, "wb") as null:
            self.popen = subprocess.Popen(
                ["perf", "stat", "-e", "context-switches", "-x,", "-I",
                 str(int(self.INTERVAL * 1000)), "-o", path, "-p",
                 ",".join(str(p) for p in pids)],
                stdin=subprocess.DEVNULL, stdout=null, stderr=null,
                start_new_session=True, preexec_fn=_die_with_parent)

    def _samples(self):
        out = []
        try:
            with open(self.path) as f:
                for line in f:
                    fields = line.strip().split(",")
                    if len(fields) < 4 or fields[3] != "context-switches":
                        continue
                    n = int(fields[1]) if fields[1].isdigit() else 0
                    out.append((self.t0 + float(fields[0]), n))
        except (OSError, ValueError):
            pass
        return out

    def count(self, start, end):
        """Switches in [start, end], or None if perf is not counting."""
        deadline = time.monotonic() + 10 * self.INTERVAL
        while True:
            samples = self._samples()
            if samples and samples[-1][0] > end:
                break
            if self.popen.poll() is not None or \
                    time.monotonic() > deadline:
                return None
            time.sleep(self.INTERVAL / 2)
        return sum(n for t, n in samples
                   if start < t <= end + self.INTERVAL)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def mounted(path):
    """Is path a mount point (from /proc/self/mountinfo)?"""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            mp = mp.encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def wait_until(what, cond, proc, timeout=30):
    """Poll cond() until true; fail early if proc died."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if proc is not None and not proc.alive():
            raise RunError(proc.why_dead())
        if time.monotonic() > deadline:
            raise RunError("%s: not ready after %ds" % (what, timeout))
        time.sleep(0.02)


def unix_socket_ready(path):
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
