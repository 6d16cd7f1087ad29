"""Options, the run context and the interleaved loop:

    for rep in 1..N:
        for row in rows:
            for server in the row's servers:
                run

Servers start on first use and keep running until the end (so that their
peak RSS covers every row they served); the ext4 file systems are made anew
for each repetition and unmounted before any row that does not use them.
Everything started, mounted or attached is undone at exit by the cleanup
stack, also on Ctrl-C.
"""

import argparse
import datetime
import fnmatch
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from . import rows as R
from . import servers as S
from .cleanup import (Cleanup, Interrupted, ignore_signals,
                      install_signal_handlers, log)
from .procs import RunError, SwitchCounter, mounted, run, umount
from .report import POOL_LIB_NAMES, SECTION_TITLES, Report, fmt_num

SECTIONS = ("nbd", "fuse", "pool", "raw")
DEFAULT_RUNTIME = 2


def parse_size(s):
    mult = {"k": R.KIB, "m": R.MIB, "g": R.GIB}
    s = s.strip().lower().rstrip("ib")
    try:
        if s and s[-1] in mult:
            n = int(float(s[:-1]) * mult[s[-1]])
        else:
            n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError("'%s' is not a size" % s)
    if n < 16 * R.MIB or n % R.MIB:
        raise argparse.ArgumentTypeError(
            "size must be a whole number of MiB, at least 16M")
    return n


def parse_args(argv, src):
    p = argparse.ArgumentParser(
        prog="tests/bench/run",
        description="Benchmark tlbd side by side with nbdkit file, qemu-nbd,"
        " nbdfuse and qemu-storage-daemon, interleaved, and print one table"
        " of medians.  Needs root (tmpfs, loop devices, FUSE).")
    p.add_argument("--build", default=os.environ.get(
        "TLBD_BUILD", os.path.join(src, "build")),
        help="tlbd build directory (default: build)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="comma-separated subset of %s (default: all)"
                   % ",".join(SECTIONS))
    p.add_argument("--only", default=None,
                   help="comma-separated row names or shell patterns")
    p.add_argument("--servers", default=None,
                   help="comma-separated subset of %s" % ",".join(
                       S.ALL_NAMES + tuple(POOL_LIB_NAMES)))
    p.add_argument("--reps", type=int, default=3,
                   help="repetitions of every row (default 3)")
    p.add_argument("--runtime", type=float, default=DEFAULT_RUNTIME,
                   help="seconds per fio job (default %d)" % DEFAULT_RUNTIME)
    p.add_argument("--size", type=parse_size, default=R.GIB,
                   help="image size (default 1G)")
    p.add_argument("--out", default=None,
                   help="results folder (default BUILD/bench-results/DATE)")
    p.add_argument("--image-dir", default=None,
                   help="put the images here instead of on a private tmpfs")
    p.add_argument("--disk-dir", default="/var/tmp",
                   help="disk-backed folder for the flush rows "
                   "(default /var/tmp)")
    p.add_argument("--tlbd-nbd-args", default="",
                   help="extra key=value arguments for the tlbd plugin, "
                   "e.g. --tlbd-nbd-args='threads-max=8'")
    p.add_argument("--tlbd-fuse-args", default="",
                   help="extra options for tlbd fuse, "
                   "e.g. --tlbd-fuse-args='--direct-io=off'")
    p.add_argument("--list", action="store_true",
                   help="list the rows and exit")
    o = p.parse_args(argv)
    o.sections = [s for s in o.sections.split(",") if s]
    for s in o.sections:
        if s not in SECTIONS:
            p.error("unknown section '%s' (choose from %s)"
                    % (s, ",".join(SECTIONS)))
    if o.reps < 1:
        p.error("--reps must be at least 1")
    if o.runtime <= 0:
        p.error("--runtime must be positive")
    o.tlbd_nbd_args = o.tlbd_nbd_args.split()
    o.tlbd_fuse_args = o.tlbd_fuse_args.split()
    o.build = os.path.abspath(o.build)
    return p, o


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

    def ext4(self, inst):
        """A fresh ext4 on a loop device over the instance's file."""
        fx = self.fixtures.get(id(inst))
        if fx is not None:
            return fx[0]
        tokens = []
        try:
            loop = run(["losetup", "-f", "--show", inst.target],
                       timeout=60).stdout.strip()
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
        self.fixtures[id(inst)] = (mnt, tokens)
        return mnt

    def drop_ext4(self):
        for mnt, tokens in self.fixtures.values():
            for t in reversed(tokens):
                self.cleanup.pop(t)
        self.fixtures = {}


# selection -----------------------------------------------------------------


def server_defs(ctx):
    defs = {}
    for cls in S.NBD_SERVERS:
        defs[("nbd", cls.name)] = cls(ctx)
    for cls in S.FUSE_SERVERS + (S.Raw,):
        defs[("fuse", cls.name)] = cls(ctx)
    return defs


FAMILY_SERVERS = {
    "nbd": [c.name for c in S.NBD_SERVERS],
    "fuse": [c.name for c in S.FUSE_SERVERS],
    "ext4": [c.name for c in S.FUSE_SERVERS] + ["raw"],
    "raw": ["raw"],
    "pool": POOL_LIB_NAMES,
}


def select_rows(opts):
    rows = [r for r in R.all_rows() if r.section in opts.sections]
    if opts.only:
        pats = [p for p in opts.only.split(",") if p]
        rows = [r for r in rows
                if any(fnmatch.fnmatchcase(r.name, p) for p in pats)]
    return rows


def make_servers_for(opts):
    keep = None
    if opts.servers:
        keep = set(opts.servers.split(","))

    def servers_for(row):
        names = FAMILY_SERVERS[row.family]
        if keep is not None:
            names = [n for n in names if n in keep or n == "tlbd"]
        return names
    return servers_for


def def_for(defs, row, name):
    fam = "nbd" if row.family == "nbd" else "fuse"
    return defs[(fam, name)]


# running -------------------------------------------------------------------


def run_cell(ctx, defs, row, name, rep):
    sdef = def_for(defs, row, name)
    inst = ctx.instance(sdef, row)
    tag = "%s-rep%d" % (name, rep)
    if row.kind == "fio":
        fam = "nbd" if row.family == "nbd" else "file"
        rec = R.run_fio(ctx, row, inst.target, fam, inst, tag)
    elif row.kind == "nbdcopy":
        rec = R.run_nbdcopy(ctx, row, inst)
    elif row.kind == "untar":
        rec = R.run_untar(ctx, row, inst, ctx.ext4(inst))
    elif row.kind == "fsync":
        mnt = ctx.ext4(inst)
        rec = R.run_fio(ctx, row, os.path.join(mnt, "fsync.dat"), "file",
                        inst, tag)
    else:
        raise AssertionError(row.kind)
    if not inst.procs:
        rec["cpu_s"] = None
    rec["instance"] = "%s/%s/%s" % (sdef.family, sdef.name, inst.image_key)
    inst.check_alive()
    return rec


def describe(rec, row):
    s = "%s %s" % (fmt_num(rec["value"], row.unit), row.unit)
    if rec.get("cpu_s") is not None and rec.get("ios"):
        s += "  cpu %.1f us/IO" % (rec["cpu_s"] / rec["ios"] * 1e6)
    return s


def run_all(ctx, defs, rows, report, servers_for):
    n = ctx.opts.reps
    for rep in range(1, n + 1):
        pool = None
        for row in rows:
            if row.kind not in ("untar", "fsync"):
                ctx.drop_ext4()
            if row.kind == "pool":
                pool = run_pool_row(ctx, row, report, servers_for, rep, pool)
                continue
            for name in servers_for(row):
                cell = report.cell(row, name)
                if cell.na is not None:
                    continue
                try:
                    rec = run_cell(ctx, defs, row, name, rep)
                except RunError as e:
                    cell.errors.append(str(e))
                    log("rep %d/%d  %s  %s  ERROR: %s"
                        % (rep, n, row.name, name, e))
                    continue
                rec["rep"] = rep
                cell.recs.append(rec)
                log("rep %d/%d  %-34s %-17s %s"
                    % (rep, n, row.name, name, describe(rec, row)))
        ctx.drop_ext4()


def run_pool_row(ctx, row, report, servers_for, rep, pool):
    """pool-bench prints every pool row in one run; run it once per rep."""
    if pool is None:
        if not os.path.exists(ctx.pool_bench()):
            pool = {}
        else:
            try:
                pool = R.run_pool(ctx)
            except (RunError, ValueError, KeyError) as e:
                pool = {"error": str(e)}
    key = row.name[len("pool-"):].replace("-", "_")
    for lib_key, lib in R.POOL_LIBS:
        if lib not in servers_for(row):
            continue
        cell = report.cell(row, lib)
        if cell.na is not None:
            continue
        if "error" in pool:
            cell.errors.append("pool-bench: %s" % pool["error"])
        elif key not in pool:
            cell.errors.append("pool-bench printed no %s" % key)
        else:
            cell.recs.append(dict(rep=rep, value=pool[key][lib_key]))
            log("rep %d/%d  %-34s %-17s %s %s"
                % (rep, ctx.opts.reps, row.name, lib,
                   fmt_num(pool[key][lib_key]), row.unit))
    return pool


def mark_unavailable(ctx, defs, rows, report, servers_for):
    why = {}
    for k, d in defs.items():
        why[k] = d.unavailable()
    for row in rows:
        for name in servers_for(row):
            cell = report.cell(row, name)
            if row.kind == "pool":
                if not os.path.exists(ctx.pool_bench()):
                    cell.na = "not built (no tests/bench/pool-bench)"
                continue
            fam = "nbd" if row.family == "nbd" else "fuse"
            cell.na = why[(fam, name)]


def collect_rss(ctx, report):
    """Peak RSS of every server still running, keyed by instance."""
    rss = {}
    for (fam, name, ik), inst in ctx.instances.items():
        try:
            v = inst.rss_kib()
        except OSError:
            v = None
        rss["%s/%s/%s" % (fam, name, ik)] = dict(kib=v, pids=inst.pids())
    for c in report.cells.values():
        for r in c.recs:
            if r.get("instance") in rss:
                c.rss_kib = rss[r["instance"]]["kib"]
    return rss


# output --------------------------------------------------------------------


def first_line(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
        return p.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


def environment(ctx, argv):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    env = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
        command=" ".join(["tests/bench/run"] + argv),
        kernel=platform.release(), cpu=cpu, cpus=os.cpu_count(),
        mem_mib=mem,
        tlbd=first_line(["git", "-C", ctx.src, "describe", "--always",
                         "--dirty"]),
        fio=first_line(["fio", "--version"]),
        nbdkit=first_line(["nbdkit", "--version"]),
        qemu=first_line(["qemu-nbd", "--version"]),
        libnbd=first_line(["nbdfuse", "--version"]),
        loadavg_start=os.getloadavg(),
    )
    return env


def write_outputs(ctx, report, env, rows, rss):
    table = report.text_table()
    targets = report.targets()
    with open(os.path.join(ctx.out, "table.txt"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(ctx.out, "results.json"), "w") as f:
        json.dump(dict(env=env, options=dict(
            reps=ctx.opts.reps, runtime=ctx.opts.runtime, size=ctx.size,
            sections=ctx.opts.sections, only=ctx.opts.only,
            images="tmpfs" if not ctx.opts.image_dir else ctx.img_dir,
            disk=ctx.disk_fs, tarball=ctx.tarball_info,
            scratch=ctx.scratch, disk_dir=ctx.disk_dir),
            servers=rss,
            unavailable={"%s/%s" % (c.row.name, c.server): c.na
                         for c in report.cells.values() if c.na},
            errors={"%s/%s" % (c.row.name, c.server): c.errors
                    for c in report.cells.values() if c.errors},
            runs=report.raw_records()), f, indent=1)
    md = summary_md(ctx, report, env, rows, targets)
    with open(os.path.join(ctx.out, "summary.md"), "w") as f:
        f.write(md)
    return table, targets


def summary_md(ctx, report, env, rows, targets):
    o = ctx.opts
    L = ["# tlbd benchmark", "",
         "- date: %s" % env["date"],
         "- command: `%s`" % env["command"],
         "- machine: %s, %d CPUs, %d MiB RAM, Linux %s"
         % (env["cpu"], env["cpus"], env["mem_mib"], env["kernel"]),
         "- load average at start %.2f, at end %.2f (other work on the "
         "machine adds noise)" % (env["loadavg_start"][0],
                                  env["loadavg_end"][0]),
         "- tlbd %s; %s; %s; %s; %s"
         % (env["tlbd"], env["fio"], env["nbdkit"], env["qemu"],
            env["libnbd"]),
         "- %d repetitions, interleaved (for each rep, row, server); "
         "%s s per fio job; image %d MiB"
         % (o.reps, o.runtime, ctx.size // R.MIB),
         "- images: %s; flush rows marked -disk: %s"
         % ("private tmpfs" if not o.image_dir else o.image_dir,
            ctx.disk_fs or "not run"),
         ]
    if ctx.tarball_info:
        t = ctx.tarball_info
        L.append("- untar tarball: %s, %d bytes, %d entries, sha256 %s"
                 % (t["source"], t["bytes"], t["entries"], t["sha256"]))
    L += ["", "Medians over the repetitions (min-max).  `tlbd/x` is how "
          "many times better tlbd is than x (tlbd/x for rates, x/tlbd for "
          "times), so >= 1 means tlbd is at least as good; raw rows show "
          "tlbd/raw file.  CPU is the server's user+system time per I/O "
          "(or per run, for nbdcopy and untar); cs/IO its context switches "
          "per I/O (voluntary + involuntary, summed over its threads: a "
          "measure of thread hand-offs); p50/p99 are fio's completion "
          "latency (for write+flush rows: of the flush); RSS is the "
          "server's peak (VmHWM) over the whole run.", "",
          report.markdown_table(), "", "## Targets (issue 7)", "",
          "| target | verdict | detail |", "|---|---|---|"]
    for t, v, d in targets:
        L.append("| %s | %s | %s |" % (t, v, d))
    L += ["", "## Rows", ""]
    for row in rows:
        L.append("- `%s` (%s): %s" % (row.name, row.unit, row.desc))
    L += ["", "## Servers", "",
          "- NBD: `tlbd` = nbdkit with nbd-plugin/nbdkit-tlbd-plugin.so; "
          "`nbdkit` = nbdkit file; `qemu-nbd-threads` / `qemu-nbd-uring` = "
          "qemu-nbd --aio=threads / io_uring, cache=writeback.",
          "- FUSE: `tlbd` = tlbd fuse; `nbdfuse` = nbdfuse over nbdkit "
          "file (RSS and CPU are both processes together); `qsd` = "
          "qemu-storage-daemon --export type=fuse; `raw` = the image file "
          "with no server (ext4 rows: a loop device on the raw file).",
          "- Pool: pool-bench --json --reps 1, once per repetition.",
          "", "Raw fio output: `fio/ROW/SERVER-repN.json` (and the job "
          "file next to it); server logs: `logs/`.", ""]
    return "\n".join(L)


def main(argv, src):
    parser, opts = parse_args(argv, src)
    rows = select_rows(opts)
    servers_for = make_servers_for(opts)
    if opts.list:
        for row in rows:
            print("%-36s %-8s %s" % (row.name, row.unit, row.desc))
        return 0
    if not rows:
        parser.error("no row matches --sections/--only")
    if os.geteuid() != 0:
        print("tests/bench/run: needs root (tmpfs, loop devices, FUSE)",
              file=sys.stderr)
        return 1
    if shutil.which("fio") is None:
        print("tests/bench/run: fio not installed (make deps)",
              file=sys.stderr)
        return 1
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%d-%H%M%S")
    out = os.path.abspath(opts.out or os.path.join(
        opts.build, "bench-results", stamp))
    os.makedirs(out, exist_ok=True)

    cleanup = Cleanup()
    ctx = Context(opts, src, out, cleanup)
    defs = server_defs(ctx)
    report = Report(rows, servers_for)
    env = environment(ctx, argv)
    stopped = None
    rss = {}
    install_signal_handlers()
    try:
        mark_unavailable(ctx, defs, rows, report, servers_for)
        ctx.setup()
        t0 = time.monotonic()
        run_all(ctx, defs, rows, report, servers_for)
        env["elapsed_s"] = round(time.monotonic() - t0)
    except Interrupted as e:
        stopped = e
        log("interrupted by %s: stopping servers, unmounting" % e)
    except RunError as e:
        stopped = e
        log("error: %s" % e)
    finally:
        ignore_signals()
        try:
            rss = collect_rss(ctx, report)
        finally:
            cleanup.run_all()
    env["loadavg_end"] = os.getloadavg()
    table, targets = write_outputs(ctx, report, env, rows, rss)
    print("\n" + table)
    print()
    for t, v, d in targets:
        if v != "n/a":
            print("target: %-46s %-6s %s" % (t, v, d))
    print("\nresults: %s" % out)
    if isinstance(stopped, Interrupted):
        return 128 + stopped.signum
    errors = stopped is not None or any(c.errors
                                        for c in report.cells.values())
    return 1 if errors else 0
