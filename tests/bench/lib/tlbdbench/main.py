"""Options and the interleaved loop:

    for rep in 1..N:
        for row in rows:
            for server in the row's servers, rotated by rep - 1:
                run

The order turns by one server each repetition (A B C, B C A, C A B), so
that no server always runs first after a row change and pays for what the
row before left behind.  (On the test VM the untar row swings by 2x from
cell to cell, and a profile of the slow cells shows tar itself spending
twice the CPU on zeroing and copying page-cache pages, not waiting for
the server; a fixed order put tlbd first in every repetition.)

Servers start on first use and keep running until the end (so that their
peak RSS covers every row they served); the ext4 file systems are made anew
for each repetition and unmounted before any row that does not use them.
Everything started, mounted or attached is undone at exit by the cleanup
stack, also on Ctrl-C.
"""

import argparse
import datetime
import fnmatch
import os
import shutil
import sys
import time

from . import rows as R
from . import servers as S
from .cleanup import (Cleanup, Interrupted, ignore_signals,
                      install_signal_handlers, log)
from .context import Context
from .procs import RunError
from .report import POOL_LIB_NAMES, Report, fmt_num
from .summary import environment, write_outputs

SECTIONS = ("nbd", "fuse", "pool", "raw")
DEFAULT_RUNTIME = 1.5


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
                   help="comma-separated subset of %s; tlbd's variants "
                   "(%s) run on a few rows unless named here, then on "
                   "every row of their family" % (",".join(
                       S.ALL_NAMES + tuple(POOL_LIB_NAMES)),
                       ",".join(S.VARIANTS)))
    p.add_argument("--reps", type=int, default=3,
                   help="repetitions of every row (default 3)")
    p.add_argument("--runtime", type=float, default=DEFAULT_RUNTIME,
                   help="seconds per fio job (default %g)" % DEFAULT_RUNTIME)
    p.add_argument("--size", type=parse_size, default=R.GIB,
                   help="image size (default 1G)")
    p.add_argument("--out", default=None,
                   help="results folder: results.json, table.txt, "
                   "summary.md, summary.svg, fio/, logs/ (default "
                   "BUILD/bench-results/DATE)")
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
    "crashtest": ["tlbd"],
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
        names = [n for n in FAMILY_SERVERS[row.family]
                 if n not in S.VARIANTS or (keep and n in keep)
                 or any(fnmatch.fnmatchcase(row.name, p)
                        for p in R.VARIANT_ROWS[n])]
        if keep is not None:
            names = [n for n in names if n in keep or n == "tlbd"]
        return names
    return servers_for


def def_for(defs, row, name):
    fam = "nbd" if row.family == "nbd" else "fuse"
    return defs[(fam, name)]


# running -------------------------------------------------------------------


def settle():
    """Write back what earlier rows and servers left dirty (mkfs, buffered
    writes through a FUSE file with a page cache) before an ext4 row starts
    its clock: the kernel throttles every writer once the dirty pages of the
    whole machine pass its limit, and would bill those to this row."""
    os.sync()


def run_cell(ctx, defs, row, name, rep):
    sdef = def_for(defs, row, name)
    if row.kind == "crashtest":
        return R.run_crashtest(ctx, sdef.path())
    inst = ctx.instance(sdef, row)
    tag = "%s-rep%d" % (name, rep)
    if row.kind == "fio":
        fam = "nbd" if row.family == "nbd" else "file"
        rec = R.run_fio(ctx, row, inst.target, fam, inst, tag)
    elif row.kind == "nbdcopy":
        rec = R.run_nbdcopy(ctx, row, inst)
    elif row.kind == "untar":
        mnt = ctx.ext4(inst, row.loop_dio)
        settle()
        rec = R.run_untar(ctx, row, inst, mnt)
    elif row.kind == "meta":
        mnt = ctx.ext4(inst, row.loop_dio)
        settle()
        rec = R.run_meta(ctx, row, inst, mnt)
    elif row.kind == "fsync":
        mnt = ctx.ext4(inst, row.loop_dio)
        settle()
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


def rotated(names, k):
    """NAMES turned left by K places."""
    if not names:
        return names
    k %= len(names)
    return names[k:] + names[:k]


def run_all(ctx, defs, rows, report, servers_for):
    n = ctx.opts.reps
    for rep in range(1, n + 1):
        pool = None
        for row in rows:
            if row.kind not in ("untar", "fsync", "meta"):
                ctx.drop_ext4()
            if row.kind == "pool":
                pool = run_pool_row(ctx, row, report, servers_for, rep, pool)
                continue
            for name in rotated(servers_for(row), rep - 1):
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
        rss["%s/%s/%s" % (fam, name, ik)] = dict(
            kib=v, pids=inst.pids(),
            watchers=[p.pid for p in inst.watchers])
    for c in report.cells.values():
        for r in c.recs:
            if r.get("instance") in rss:
                c.rss_kib = rss[r["instance"]]["kib"]
    return rss


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
    t0 = time.monotonic()
    try:
        mark_unavailable(ctx, defs, rows, report, servers_for)
        ctx.setup()
        run_all(ctx, defs, rows, report, servers_for)
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
    env["elapsed_s"] = round(time.monotonic() - t0)
    table, targets = write_outputs(ctx, report, env, rows, rss)
    print("\n" + table)
    print()
    for t, v, d in targets:
        if v != "n/a":
            print("target: %-46s %-6s %s" % (t, v, d))
    print("\nresults: %s (%d s)" % (out, env["elapsed_s"]))
    if isinstance(stopped, Interrupted):
        return 128 + stopped.signum
    errors = stopped is not None or any(c.errors
                                        for c in report.cells.values())
    return 1 if errors else 0
