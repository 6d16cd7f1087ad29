"""The run's context: where things live (a private tmpfs for the images,
a folder on a disk-backed file system for the -disk rows), the images, the
fixed tarball, the servers started so far, and the ext4 file systems made
over the exports.  Everything it makes is registered with the cleanup
stack.  Runner thread only.
"""

import hashlib
import os
import shutil
import tempfile

from . import rows as R
from .cleanup import log
from .procs import RunError, SwitchCounter, mounted, run, umount


class Context:
    def __init__(self, opts, src, out, cleanup):
        self.opts = opts
        self.src = src
        self.build = opts.build
        self.out = out
        self.logs_dir = os.path.join(out, "logs")
        os.makedirs(self.logs_dir, exist_ok=True)
        self.cleanup = cleanup
        self.size = opts.size
        self.scratch = None
        self.img_dir = None
        self.disk_dir = None
        self.instances = {}       # (family, name, image_key) -> Instance
        self.failed = {}          # same key -> reason
        self.images = {}
        self.fixtures = {}        # instance id -> (mnt, [tokens])
        self._tarball = None
        self.tarball_info = None
        self.disk_fs = None

    # places -------------------------------------------------------------

    def setup(self):
        self.scratch = tempfile.mkdtemp(prefix="tlbd-bench.")
        self.cleanup.push("remove " + self.scratch, shutil.rmtree,
                          self.scratch, True)
        if self.opts.image_dir:
            self.img_dir = tempfile.mkdtemp(prefix="tlbd-bench.",
                                            dir=self.opts.image_dir)
            self.cleanup.push("remove " + self.img_dir, shutil.rmtree,
                              self.img_dir, True)
        else:
            run(["mount", "-t", "tmpfs", "-o", "mode=0700",
                 "tlbd-bench", self.scratch])
            self.cleanup.push("unmount tmpfs", umount, self.scratch)
            run(["mount", "--make-private", self.scratch])
            self.img_dir = self.scratch
        for d in ("sock", "mnt", "ext4"):
            os.mkdir(os.path.join(self.scratch, d))

    def disk(self):
        if self.disk_dir is None:
            self.disk_dir = tempfile.mkdtemp(prefix="tlbd-bench.",
                                             dir=self.opts.disk_dir)
            self.cleanup.push("remove " + self.disk_dir, shutil.rmtree,
                              self.disk_dir, True)
            p = run(["findmnt", "-n", "-o", "FSTYPE,SOURCE,TARGET", "-T",
                     self.disk_dir], check=False)
            self.disk_fs = " ".join(p.stdout.split()) or "unknown"
        return self.disk_dir

    def sock_path(self, tag):
        return os.path.join(self.scratch, "sock", tag)

    def _fallback_unmount(self, path):
        """After the daemon stopped: if it left its mount, remove it."""
        if mounted(path):
            log("%s still mounted after its server stopped; unmounting"
                % path)
            run(["fusermount3", "-u", "-z", path], check=False)
        if mounted(path):
            run(["umount", "-l", path], check=False)

    def mount_file(self, tag):
        path = os.path.join(self.scratch, "mnt", tag)
        open(path, "w").close()
        self.cleanup.push("unmount " + path, self._fallback_unmount, path)
        return path

    def mount_dir(self, tag):
        path = os.path.join(self.scratch, "mnt", tag)
        os.mkdir(path)
        self.cleanup.push("unmount " + path, self._fallback_unmount, path)
        return path

    # images -------------------------------------------------------------

    def image(self, name, storage, dense):
        d = self.disk() if storage == "disk" else self.img_dir
        path = os.path.join(d, name + ".img")
        if path in self.images:
            return path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if dense:
                chunk = bytearray(os.urandom(4 * R.MIB))
                for off in range(0, self.size, len(chunk)):
                    chunk[:8] = off.to_bytes(8, "little")
                    os.pwrite(fd, chunk[:min(len(chunk), self.size - off)],
                              off)
                if storage == "disk":
                    os.fsync(fd)
            else:
                os.ftruncate(fd, self.size)
        finally:
            os.close(fd)
        self.images[path] = (storage, dense)
        return path

    def tarball(self):
        """The fixed tarball of the untar rows, made once per run from
        /usr/include with sorted names, fixed owners and mtimes."""
        if self._tarball is None:
            path = os.path.join(self.img_dir, "untar.tar")
            run(["tar", "--sort=name", "--mtime=@0", "--owner=0",
                 "--group=0", "--numeric-owner", "--format=gnu", "-cf",
                 path, "-C", "/usr", "include"], timeout=600)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for b in iter(lambda: f.read(R.MIB), b""):
                    h.update(b)
            n = run(["tar", "-tf", path]).stdout.count("\n")
            self.tarball_info = dict(source="/usr/include",
                                     bytes=os.path.getsize(path),
                                     entries=n, sha256=h.hexdigest())
            self._tarball = path
        return self._tarball

    def pool_bench(self):
        return os.path.join(self.build, "tests", "bench", "pool-bench")

    # servers ------------------------------------------------------------

    def instance(self, sdef, row):
        key = (sdef.family, sdef.name, row.image_key)
        if key in self.failed:
            raise RunError(self.failed[key])
        inst = self.instances.get(key)
        if inst is None:
            owner = "nbd" if sdef.family == "nbd" else sdef.name
            img = self.image("%s-%s" % (owner, row.image_key), row.storage,
                             row.dense)
            try:
                inst = sdef.start(row.image_key, img)
            except RunError as e:
                self.failed[key] = "start: %s" % e
                raise RunError(self.failed[key])
            self.instances[key] = inst
            if inst.procs and shutil.which("perf"):
                tag = "-".join(key)
                inst.counter = SwitchCounter(
                    inst.pids(), os.path.join(self.logs_dir,
                                              "perf-%s.txt" % tag))
                self.cleanup.push("stop perf " + tag, inst.counter.stop)
        inst.check_alive()
        return inst

    # ext4 over the export ------------------------------------------------

    def enable_uring(self):
        """Turn the fuse module's enable_uring on for this run (tlbd-uring
        mounts); the old value comes back when the run ends."""
        path = "/sys/module/fuse/parameters/enable_uring"
        with open(path) as f:
            old = f.read().strip()
        if old != "Y":
            self.cleanup.push("enable_uring back to " + old, _write, path,
                              old)
            _write(path, "Y")

    def ext4(self, inst, dio=False):
        """A fresh ext4 on a loop device over the instance's file, with
        the loop in direct-I/O mode (losetup --direct-io=on) when DIO.  One
        ext4 per instance at a time: the other kind is dropped first."""
        fx = self.fixtures.get(id(inst))
        if fx is not None and fx[2] == dio:
            return fx[0]
        if fx is not None:
            for t in reversed(fx[1]):
                self.cleanup.pop(t)
            del self.fixtures[id(inst)]
        tokens = []
        try:
            loop = run(["losetup", "-f", "--show",
                        "--direct-io=" + ("on" if dio else "off"),
                        inst.target], timeout=60).stdout.strip()
            tokens.append(self.cleanup.push(
                "detach " + loop, run, ["losetup", "-d", loop]))
            run(["mkfs.ext4", "-q", "-F", "-E",
                 "nodiscard,lazy_itable_init=0,lazy_journal_init=0", loop],
                timeout=300)
            mnt = tempfile.mkdtemp(dir=os.path.join(self.scratch, "ext4"))
            run(["mount", "-t", "ext4", loop, mnt], timeout=60)
            tokens.append(self.cleanup.push("unmount " + mnt, umount, mnt,
                                            300))
        except RunError:
            for t in reversed(tokens):
                self.cleanup.pop(t)
            raise
        self.fixtures[id(inst)] = (mnt, tokens, dio)
        return mnt

    def drop_ext4(self):
        for mnt, tokens, _ in self.fixtures.values():
            for t in reversed(tokens):
                self.cleanup.pop(t)
        self.fixtures = {}


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
