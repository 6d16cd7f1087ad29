"""The servers under test and how each is started, found ready and stopped.

NBD family (served on a Unix socket; target is an NBD URI):
  tlbd              nbdkit BUILD/nbd-plugin/nbdkit-tlbd-plugin.so file=IMG
                    force-share=on
  tlbd-vcache       the same with volatile-cache=64M
  tlbd-stat         the same with control=SOCK and `tlbd stat --interval 1s
                    --json SOCK` watching it (its output in its log)
  nbdkit            nbdkit file file=IMG
  qemu-nbd-threads  qemu-nbd --aio=threads
  qemu-nbd-uring    qemu-nbd --aio=io_uring
FUSE family (target is the exported file):
  tlbd              BUILD/cmd/tlbd fuse -f --io-uring=off IMG MOUNTFILE
  tlbd-uring        the same with --io-uring=on (FUSE over io_uring; the run
                    turns the fuse module's enable_uring on and puts the
                    old value back at its end)
  tlbd-vcache       tlbd with --volatile-cache=64M
  tlbd-stat         tlbd with --control=SOCK and `tlbd stat` watching it
  nbdfuse           nbdfuse DIR --unix SOCK over nbdkit file
  qsd               qemu-storage-daemon --export type=fuse
  raw               no server: the image file itself (the limit)

The NBD servers of one row share one image (qemu's image locking is off,
tlbd's plugin runs with force-share=on), since only one of them does I/O at
a time; each FUSE server has its own image, because the ext4 rows put a
file system on it.  tlbd's variants (VARIANTS) run on the rows that
rows.VARIANT_ROWS names, and on every row of their family when --servers
names them; tlbd-stat's `tlbd stat` is not one of the server's processes
(its CPU time and RSS are not the server's).  A server that is not built or
not installed is "n/a" with the reason; one that fails to start is an error
with the last line of its log.
"""

import os
import shutil

from .procs import (Proc, RunError, mounted, run, unix_socket_ready,
                    vm_hwm_kib, wait_until)
from .cleanup import log


class Instance:
    """One running server on one image."""

    def __init__(self, sdef, image_key, target, procs):
        self.sdef = sdef
        self.image_key = image_key
        self.target = target      # NBD URI or path of the exported file
        self.procs = procs        # [] for raw
        self.watchers = []        # tlbd-stat's `tlbd stat`
        self.counter = None       # SwitchCounter, when perf works

    def switches(self, start, end):
        if self.counter is None:
            return None
        return self.counter.count(start, end)

    def pids(self):
        return [p.pid for p in self.procs]

    def check_alive(self):
        for p in self.procs + self.watchers:
            if not p.alive():
                raise RunError(p.why_dead())

    def rss_kib(self):
        """Peak RSS of the server (summed over its processes)."""
        if not self.procs:
            return None
        return sum(vm_hwm_kib(p.pid) for p in self.procs if p.alive())


class ServerDef:
    family = None
    name = None
    is_tlbd = False
    #: programs that must be installed
    tools = ()

    def __init__(self, ctx):
        self.ctx = ctx

    #: tlbd's servers: the file under BUILD they need
    built = None

    def path(self):
        return os.path.join(self.ctx.build, self.built)

    def unavailable(self):
        """None if the server can run here, else the reason it cannot."""
        if self.built and not os.path.exists(self.path()):
            return "not built (no %s)" % self.built
        for tool in self.tools:
            if shutil.which(tool) is None:
                return "%s not installed (make deps)" % tool
        return None

    def start(self, image_key, image):
        raise NotImplementedError

    # helpers --------------------------------------------------------------

    def _spawn(self, tag, argv):
        ctx = self.ctx
        p = Proc(tag, argv, os.path.join(ctx.logs_dir, tag + ".log"))
        p.start()
        ctx.cleanup.push("stop " + tag, self._stop_proc, p)
        return p

    #: exit statuses that are normal after SIGTERM
    term_ok = (0, None, -15)

    def _stop_proc(self, p):
        st = p.stop()
        if st not in self.term_ok:
            log("%s exited with status %s at stop (see %s)"
                % (p.name, st, p.log_path))

    def _nbdkit_file(self, tag, image, plugin_args):
        sock = self.ctx.sock_path(tag)
        argv = ["nbdkit", "-f", "--exit-with-parent", "-U", sock] \
            + plugin_args(image)
        p = self._spawn(tag, argv)
        wait_until(tag, lambda: unix_socket_ready(sock), p)
        return p, sock

    @staticmethod
    def _uri(sock):
        return "nbd+unix:///?socket=" + sock


class Tlbd(ServerDef):
    """What tlbd's front ends share: the variants' device options."""
    is_tlbd = True
    #: the variants: a volatile write cache of this size ...
    vcache = None
    #: ... or a control socket with `tlbd stat` watching it
    stat = False

    def device_opts(self, tag):
        """[(key, value)]: the plugin's key=value, tlbd's --key=value."""
        opts = []
        if self.vcache:
            opts.append(("volatile-cache", self.vcache))
        if self.stat:
            opts.append(("control", self.ctx.sock_path(tag + "-ctl")))
        return opts

    def unavailable(self):
        why = super().unavailable()
        if why is None and self.stat and not os.path.exists(self.tlbd()):
            why = "not built (no cmd/tlbd)"
        return why

    def tlbd(self):
        return os.path.join(self.ctx.build, "cmd/tlbd")

    def watch(self, inst, tag, opts, server):
        """tlbd-stat: start `tlbd stat` on the control socket; it is
        stopped before the server (the cleanup stack runs backwards)."""
        sock = dict(opts).get("control")
        if sock:
            wait_until(tag + " control", lambda: unix_socket_ready(sock),
                       server)
            inst.watchers.append(self._spawn(
                tag + "-stat", [self.tlbd(), "stat", "--interval", "1s",
                                "--json", sock]))
        return inst


class TlbdNbd(Tlbd):
    family = "nbd"
    name = "tlbd"
    tools = ("nbdkit",)

    built = "nbd-plugin/nbdkit-tlbd-plugin.so"

    def start(self, image_key, image):
        tag = "%s-nbd-%s" % (self.name, image_key)
        opts = self.device_opts(tag)
        p, sock = self._nbdkit_file(
            tag, image, lambda img: [self.path(), "file=" + img,
                                     "force-share=on"]
            + ["%s=%s" % kv for kv in opts] + self.ctx.opts.tlbd_nbd_args)
        inst = Instance(self, image_key, self._uri(sock), [p])
        return self.watch(inst, tag, opts, p)


class NbdkitFile(ServerDef):
    family = "nbd"
    name = "nbdkit"
    tools = ("nbdkit",)

    def start(self, image_key, image):
        tag = "nbdkit-" + image_key
        p, sock = self._nbdkit_file(tag, image,
                                    lambda img: ["file", "file=" + img])
        return Instance(self, image_key, self._uri(sock), [p])


class QemuNbd(ServerDef):
    family = "nbd"
    tools = ("qemu-nbd",)
    aio = None

    def start(self, image_key, image):
        tag = "%s-%s" % (self.name, image_key)
        sock = self.ctx.sock_path(tag)
        argv = ["qemu-nbd", "-k", sock, "--persistent", "--shared=16",
                "--cache=writeback", "--aio=" + self.aio, "--image-opts",
                "driver=raw,file.driver=file,file.filename=%s,"
                "file.locking=off" % image]
        p = self._spawn(tag, argv)
        wait_until(tag, lambda: unix_socket_ready(sock), p)
        return Instance(self, image_key, self._uri(sock), [p])


class QemuNbdThreads(QemuNbd):
    name = "qemu-nbd-threads"
    aio = "threads"


class QemuNbdUring(QemuNbd):
    name = "qemu-nbd-uring"
    aio = "io_uring"


class TlbdFuse(Tlbd):
    family = "fuse"
    name = "tlbd"
    tools = ("fusermount3",)

    built = "cmd/tlbd"

    def unavailable(self):
        why = super().unavailable()
        if why is not None:
            return why
        try:
            out = run([self.path(), "--help"], timeout=10).stdout
        except RunError as e:
            return str(e)
        if not any(ln.split()[:1] == ["fuse"] for ln in out.splitlines()):
            return "not built (tlbd has no fuse command yet)"
        return None

    #: the transport, chosen explicitly: auto would follow enable_uring
    io_uring = "off"

    def start(self, image_key, image):
        tag = "%s-fuse-%s" % (self.name, image_key)
        mnt = self.ctx.mount_file(tag)
        opts = self.device_opts(tag)
        p = self._spawn(tag, [self.path(), "fuse", "-f",
                              "--io-uring=" + self.io_uring]
                        + ["--%s=%s" % kv for kv in opts]
                        + self.ctx.opts.tlbd_fuse_args + [image, mnt])
        wait_until(tag + " mount", lambda: mounted(mnt), p)
        return self.watch(Instance(self, image_key, mnt, [p]), tag, opts, p)


class TlbdFuseUring(TlbdFuse):
    name = "tlbd-uring"
    io_uring = "on"

    def unavailable(self):
        why = super().unavailable()
        if why is None and not os.access(ENABLE_URING, os.W_OK):
            why = "no FUSE over io_uring here (%s)" % ENABLE_URING
        return why

    def start(self, image_key, image):
        self.ctx.enable_uring()
        return super().start(image_key, image)


ENABLE_URING = "/sys/module/fuse/parameters/enable_uring"


class Nbdfuse(ServerDef):
    family = "fuse"
    name = "nbdfuse"
    tools = ("nbdfuse", "nbdkit", "fusermount3")
    # "fuse loop terminated by signal 15", exit 1
    term_ok = ServerDef.term_ok + (1,)

    def start(self, image_key, image):
        tag = "nbdfuse-" + image_key
        kit, sock = self._nbdkit_file("nbdkit-under-" + tag, image,
                                      lambda img: ["file", "file=" + img])
        mdir = self.ctx.mount_dir(tag)
        p = self._spawn(tag, ["nbdfuse", mdir, "--unix", sock])
        wait_until(tag + " mount", lambda: mounted(mdir), p)
        return Instance(self, image_key, os.path.join(mdir, "nbd"),
                        [p, kit])


class QsdFuse(ServerDef):
    family = "fuse"
    name = "qsd"
    tools = ("qemu-storage-daemon", "fusermount3")

    def start(self, image_key, image):
        tag = "qsd-" + image_key
        mnt = self.ctx.mount_file(tag)
        argv = ["qemu-storage-daemon",
                "--blockdev", "driver=file,node-name=file0,filename=" + image,
                "--blockdev", "driver=raw,node-name=disk0,file=file0",
                "--export", "type=fuse,id=exp0,node-name=disk0,"
                "mountpoint=%s,writable=on" % mnt]
        p = self._spawn(tag, argv)
        wait_until(tag + " mount", lambda: mounted(mnt), p)
        return Instance(self, image_key, mnt, [p])


class Raw(ServerDef):
    family = "fuse"
    name = "raw"

    def start(self, image_key, image):
        return Instance(self, image_key, image, [])


def variants(base):
    """tlbd-vcache and tlbd-stat of one of tlbd's front ends."""
    return (type(base.__name__ + "Vcache", (base,),
                 dict(name="tlbd-vcache", vcache="64M")),
            type(base.__name__ + "Stat", (base,),
                 dict(name="tlbd-stat", stat=True)))


NBD_SERVERS = (TlbdNbd,) + variants(TlbdNbd) + (NbdkitFile, QemuNbdThreads,
                                                 QemuNbdUring)
FUSE_SERVERS = (TlbdFuse,) + variants(TlbdFuse) + (TlbdFuseUring, Nbdfuse,
                                                   QsdFuse)
ALL_NAMES = ("tlbd", "tlbd-vcache", "tlbd-stat", "nbdkit",
             "qemu-nbd-threads", "qemu-nbd-uring", "tlbd-uring", "nbdfuse",
             "qsd", "raw")
#: tlbd's variants, which run only where rows.VARIANT_ROWS or --servers
#: puts them
VARIANTS = ("tlbd-vcache", "tlbd-stat")
