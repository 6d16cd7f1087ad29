"""The undo stack: everything the runner starts, mounts or attaches pushes
the action that undoes it; the stack runs last-in first-out at exit, on
success, failure, Ctrl-C (SIGINT), SIGTERM or SIGHUP alike.  An entry can
also be run early (pop) when, say, an ext4 mount is torn down between
repetitions.
"""

import signal
import sys


class Interrupted(BaseException):
    """Raised from a signal handler so that `finally` blocks run."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


class Cleanup:
    def __init__(self):
        self._stack = []
        self._next = 0

    def push(self, desc, fn, *args):
        """Register fn(*args) to run at exit; returns a token for pop()."""
        self._next += 1
        self._stack.append((self._next, desc, fn, args))
        return self._next

    def pop(self, token):
        """Run one registered action now and forget it."""
        for i, (tok, desc, fn, args) in enumerate(self._stack):
            if tok == token:
                del self._stack[i]
                self._run(desc, fn, args)
                return

    def run_all(self):
        while self._stack:
            _, desc, fn, args = self._stack.pop()
            self._run(desc, fn, args)

    @staticmethod
    def _run(desc, fn, args):
        try:
            fn(*args)
        except Exception as e:  # keep undoing the rest
            log("cleanup: %s: %s" % (desc, e))


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def install_signal_handlers():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)


def ignore_signals():
    """While cleaning up, a second Ctrl-C must not stop the cleanup."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
