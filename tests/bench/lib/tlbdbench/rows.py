"""The workloads: one Row per line of the table, each run against every
server of its family.

  nbd   fio ioengine=nbd on the server's Unix socket; nbdcopy URI null:
  fuse  fio on the exported file (O_DIRECT and buffered); ext4 on a loop
        device over the exported file (untar + syncfs, 4k write+fsync, a
        metadata round: untar, find, rm -rf, syncfs), each with a plain
        loop and again (-dio) with a direct-I/O loop (losetup
        --direct-io=on)
  raw   the same fio jobs directly on an image file: the limit
  pool  tests/bench/pool-bench, folded in row by row
  crashtest  `tlbd crashtest` on ext4 (tlbd only): seconds per crash state

A row names its image: storage (tmpfs or disk) and whether it is dense
(filled with data) or sparse.  Each run returns a record: the row's metric,
fio's IOPS, bandwidth and completion-latency p50/p99, the I/O count and the
server's CPU seconds over the run.
"""

import json
import os
import re
import time

from .procs import RunError, cpu_seconds, first_line, run

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class Row:
    def __init__(self, name, section, family, kind, unit, desc,
                 fio=None, storage="tmpfs", dense=True, higher=True,
                 ref=None, loop_dio=False):
        self.name = name
        self.section = section    # nbd, fuse, raw or pool
        self.family = family      # servers: nbd, fuse, ext4, raw, crashtest
        self.kind = kind          # fio, nbdcopy, untar, fsync, meta, pool,
        #                           crashtest
        self.unit = unit          # IOPS, MiB/s, s, pairs/s, ...
        self.desc = desc
        self.fio = fio or {}
        self.storage = storage
        self.dense = dense
        self.higher = higher      # is a higher value better?
        self.ref = ref            # raw rows: the row they are the limit of
        self.loop_dio = loop_dio  # ext4 rows: losetup --direct-io=on

    @property
    def image_key(self):
        return "%s-%s" % (self.storage, "dense" if self.dense else "sparse")


def _nbd_rows():
    rows = []

    def add(name, desc, unit="IOPS", storage="tmpfs", **fio):
        rows.append(Row(name, "nbd", "nbd", "fio", unit, desc, fio=fio,
                        storage=storage))

    add("nbd-4k-randread-qd1", "4k random read, QD1, 1 connection",
        rw="randread", bs="4k", iodepth=1)
    add("nbd-4k-randread-qd32", "4k random read, QD32, 1 connection",
        rw="randread", bs="4k", iodepth=32)
    add("nbd-4k-randread-qd32-2conn",
        "4k random read, QD32 in total: 2 connections x QD16",
        rw="randread", bs="4k", iodepth=16, numjobs=2)
    add("nbd-4k-randwrite-qd32", "4k random write, QD32, 1 connection",
        rw="randwrite", bs="4k", iodepth=32)
    add("nbd-1m-read-qd8", "1M sequential read, QD8", unit="MiB/s",
        rw="read", bs="1m", iodepth=8)
    add("nbd-1m-write-qd8", "1M sequential write, QD8", unit="MiB/s",
        rw="write", bs="1m", iodepth=8)
    for storage in ("tmpfs", "disk"):
        add("nbd-4k-write-fsync-2j" + ("-disk" if storage == "disk" else ""),
            "4k random write + flush after each, 2 jobs x QD1, image on %s"
            % storage, storage=storage,
            rw="randwrite", bs="4k", iodepth=1, numjobs=2, fsync=1)
    rows.append(Row("nbdcopy-dense", "nbd", "nbd", "nbdcopy", "MiB/s",
                    "nbdcopy of the whole dense image to null:"))
    rows.append(Row("nbdcopy-sparse", "nbd", "nbd", "nbdcopy", "MiB/s",
                    "nbdcopy of a fully sparse image to null:",
                    dense=False))
    return rows


def _fuse_rows():
    rows = []
    shapes = [
        ("fuse-4k-randread-psync-2j", "4k random read, psync, 2 jobs",
         "IOPS", dict(rw="randread", bs="4k", ioengine="psync", numjobs=2)),
        ("fuse-4k-randwrite-psync-2j", "4k random write, psync, 2 jobs",
         "IOPS", dict(rw="randwrite", bs="4k", ioengine="psync",
                      numjobs=2)),
        ("fuse-4k-randwrite-fdatasync-2j",
         "4k random write + fdatasync after each, psync, 2 jobs", "IOPS",
         dict(rw="randwrite", bs="4k", ioengine="psync", numjobs=2,
              fdatasync=1)),
        ("fuse-4k-randread-uring-qd32", "4k random read, io_uring QD32",
         "IOPS", dict(rw="randread", bs="4k", ioengine="io_uring",
                      iodepth=32)),
        ("fuse-1m-read-uring-qd8", "1M sequential read, io_uring QD8",
         "MiB/s", dict(rw="read", bs="1m", ioengine="io_uring", iodepth=8)),
        ("fuse-1m-write-uring-qd8", "1M sequential write, io_uring QD8",
         "MiB/s", dict(rw="write", bs="1m", ioengine="io_uring",
                       iodepth=8)),
    ]
    for direct in (1, 0):
        for name, desc, unit, fio in shapes:
            fio = dict(fio, direct=direct)
            rows.append(Row(name + ("-direct" if direct else "-buffered"),
                            "fuse", "fuse", "fio", unit,
                            desc + (", O_DIRECT" if direct else ", buffered"),
                            fio=fio))
    for storage in ("tmpfs", "disk"):
        for dio in (False, True):
            sfx = ("-disk" if storage == "disk" else "") + \
                ("-dio" if dio else "")
            loop = ("a direct-I/O loop device" if dio
                    else "a loop device")
            common = dict(storage=storage, dense=(storage == "tmpfs"),
                          loop_dio=dio)
            rows.append(Row(
                "ext4-untar-sync" + sfx, "fuse", "ext4", "untar", "s",
                "ext4 on %s over the export: untar the fixed tarball, "
                "then syncfs; image on %s" % (loop, storage),
                higher=False, **common))
            rows.append(Row(
                "ext4-write-fsync" + sfx, "fuse", "ext4", "fsync",
                "pairs/s",
                "ext4 on %s over the export: 4k write + fsync pairs per "
                "second, one file; image on %s" % (loop, storage),
                fio=dict(rw="write", bs="4k", ioengine="psync", fsync=1,
                         size="16m"), **common))
            rows.append(Row(
                "ext4-meta" + sfx, "fuse", "ext4", "meta", "s",
                "ext4 on %s over the export: untar the fixed tarball, "
                "find, rm -rf, syncfs (metadata); image on %s"
                % (loop, storage), higher=False, **common))
    rows.append(Row(
        "crashtest-ext4-per-state", "fuse", "crashtest", "crashtest", "s",
        "tlbd crashtest --fs ext4 --size 256M --states 20: median seconds "
        "to build, recover and check one crash state", higher=False))
    return rows


def _raw_rows(nbd, fuse):
    """The limit: every fio row again, directly on an image file."""
    rows = []
    for r in nbd + fuse:
        if r.kind != "fio":
            continue
        fio = dict(r.fio)
        if r.section == "nbd":
            fio.update(ioengine="io_uring", direct=0)
        short = r.name.split("-", 1)[1]
        rows.append(Row("raw-" + short, "raw", "raw", "fio", r.unit,
                        "fio on the image file itself: " + r.desc,
                        fio=fio, storage=r.storage, ref=r.name))
    return rows


POOL_METRICS = [
    ("tput_loop_1", "k tasks/s", True,
     "empty tasks per second, 1 submitter, completion on its loop"),
    ("tput_loop_n", "k tasks/s", True,
     "empty tasks per second, N submitters, completion on their loops"),
    ("tput_task_1", "k tasks/s", True,
     "empty tasks per second, 1 submitter, counted in the task"),
    ("tput_task_n", "k tasks/s", True,
     "empty tasks per second, N submitters, counted in the task"),
    ("rtt_p50_us", "us", False,
     "round trip submit -> completion callback on the loop, p50"),
    ("rtt_p99_us", "us", False,
     "round trip submit -> completion callback on the loop, p99"),
]
POOL_LIBS = [("tlbd", "tlbd"), ("gthreadpool", "GThreadPool"),
             ("libuv", "libuv")]


def _pool_rows():
    return [Row("pool-" + key.replace("_", "-"), "pool", "pool", "pool",
                unit, desc, higher=higher)
            for key, unit, higher, desc in POOL_METRICS]


#: tlbd's variants (servers.VARIANTS) and the rows they run on unless
#: --servers names them: the volatile cache's rows (a write-heavy row of
#: each kind, with and without flushes) and the rows where the per-request
#: cost of counting for `tlbd stat` would show (small I/O, many in flight)
VARIANT_ROWS = {
    "tlbd-vcache": ("nbd-4k-randwrite-qd32", "fuse-4k-randwrite-*",
                    "ext4-untar-sync*"),
    "tlbd-stat": ("nbd-4k-rand*-qd32", "fuse-4k-rand*-direct"),
}


def all_rows():
    nbd = _nbd_rows()
    fuse = _fuse_rows()
    return nbd + fuse + _pool_rows() + _raw_rows(nbd, fuse)


# Running ------------------------------------------------------------------


def fio_jobfile(row, target, runtime, family):
    opts = dict(time_based=1, runtime="%g" % runtime, group_reporting=1,
                randrepeat=0, norandommap=1)
    if family == "nbd":
        opts.update(ioengine="nbd", uri=target)
    else:
        opts.update(filename=target)
    opts.update(row.fio)
    lines = ["# tlbd bench: %s" % row.desc, "[%s]" % row.name]
    lines += ["%s=%s" % kv for kv in opts.items()]
    return "\n".join(lines) + "\n"


def parse_fio(path):
    with open(path, errors="replace") as f:
        text = f.read()
    if "{" not in text:
        raise RunError("fio wrote no JSON")
    d = json.loads(text[text.index("{"):])
    j = d["jobs"][0]
    if j.get("error"):
        raise RunError("fio job error %d" % j["error"])
    r = j["read"]
    w = j["write"]
    dom = r if r["total_ios"] >= w["total_ios"] else w
    pct = dom.get("clat_ns", {}).get("percentile", {})
    if j.get("sync", {}).get("total_ios"):
        # write + flush rows: the flush is what the row is about
        pct = j["sync"].get("lat_ns", {}).get("percentile", pct)
    return dict(iops=r["iops"] + w["iops"],
                bw_mib=(r["bw"] + w["bw"]) / KIB,
                p50_us=pct.get("50.000000", 0) / 1000,
                p99_us=pct.get("99.000000", 0) / 1000,
                ios=r["total_ios"] + w["total_ios"])


def run_fio(ctx, row, target, family, inst, tag):
    """Run one fio job; returns the record fields."""
    pids = inst.pids()
    base = os.path.join(ctx.out, "fio", row.name, tag)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    job = base + ".fio"
    out = base + ".json"
    with open(job, "w") as f:
        f.write(fio_jobfile(row, target, ctx.opts.runtime, family))
    t0 = time.monotonic()
    cpu0 = cpu_seconds(pids)
    p = run(["fio", "--output-format=json", "--output=" + out, job],
            timeout=float(ctx.opts.runtime) + 120, check=False, merge=True)
    cpu = cpu_seconds(pids) - cpu0
    t1 = time.monotonic()
    if p.returncode != 0:
        lines = [ln for ln in p.stdout.splitlines()
                 if "connected to NBD" not in ln]
        raise RunError("fio failed: %s" % (lines[-1] if lines else
                                           "exit %d" % p.returncode))
    rec = parse_fio(out)
    rec["cpu_s"] = cpu
    rec["ctx_switches"] = inst.switches(t0, t1)
    rec["fio_json"] = os.path.relpath(out, ctx.out)
    rec["value"] = rec["bw_mib"] if row.unit == "MiB/s" else rec["iops"]
    return rec


def run_nbdcopy(ctx, row, inst):
    pids = inst.pids()
    cpu0 = cpu_seconds(pids)
    t0 = time.monotonic()
    run(["nbdcopy", inst.target, "null:"], timeout=600)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pids) - cpu0
    return dict(value=ctx.size / MIB / elapsed, elapsed_s=elapsed,
                cpu_s=cpu)


def run_untar(ctx, row, inst, mnt):
    pids = inst.pids()
    dest = os.path.join(mnt, "untar")
    os.mkdir(dest)
    tarball = ctx.tarball()
    cpu0 = cpu_seconds(pids)
    t0 = time.monotonic()
    run(["tar", "-xf", tarball, "-C", dest], timeout=600)
    run(["sync", "-f", mnt], timeout=600)     # syncfs(2)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pids) - cpu0
    return dict(value=elapsed, elapsed_s=elapsed, cpu_s=cpu)


def run_meta(ctx, row, inst, mnt):
    """A metadata round on the ext4: untar, find, rm -rf, syncfs."""
    pids = inst.pids()
    dest = os.path.join(mnt, "meta")
    tarball = ctx.tarball()
    cpu0 = cpu_seconds(pids)
    t0 = time.monotonic()
    os.mkdir(dest)
    run(["tar", "-xf", tarball, "-C", dest], timeout=600)
    run(["find", dest, "-type", "f"], timeout=600)
    run(["rm", "-rf", dest], timeout=600)
    run(["sync", "-f", mnt], timeout=600)     # syncfs(2)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pids) - cpu0
    return dict(value=elapsed, elapsed_s=elapsed, cpu_s=cpu)


# A small workload for the crashtest row: files written and fsynced, a
# directory, a rename.
CRASHTEST_WORKLOAD = ("for i in 1 2 3 4 5 6 7 8; do "
                      "head -c 64k /dev/urandom >f$i; sync f$i; done; "
                      "mkdir d; mv f1 f2 d/; sync")


def run_crashtest(ctx, tlbd):
    """tlbd crashtest's own median seconds per state; its work directory
    on the run's tmpfs."""
    t0 = time.monotonic()
    p = run(["env", "TMPDIR=" + ctx.scratch, tlbd, "crashtest", "--fs",
             "ext4", "--size", "256M", "--states", "20", "--seed", "1",
             "--", "sh", "-c", CRASHTEST_WORKLOAD], timeout=600,
            check=False)
    elapsed = time.monotonic() - t0
    m = re.search(r"^(\d+) states, (\d+) failed, ([0-9.]+) s per state",
                  p.stdout, re.M)
    if p.returncode not in (0, 1) or m is None:
        raise RunError("tlbd crashtest failed (exit %d): %s"
                       % (p.returncode, first_line(p.stderr or p.stdout)))
    return dict(value=float(m.group(3)), states=int(m.group(1)),
                failed=int(m.group(2)), elapsed_s=elapsed, cpu_s=None)


# Runs of pool-bench's libraries, interleaved, within one repetition: one
# empty-task run lasts tens of milliseconds, a few scheduler time slices,
# and on 2 CPUs single runs of the same library differ by 3x.
POOL_INNER_REPS = 5


def run_pool(ctx):
    """One pool-bench run, medians of POOL_INNER_REPS: {metric: {lib: v}}."""
    p = run([ctx.pool_bench(), "--json", "--reps", str(POOL_INNER_REPS)],
            timeout=600)
    d = json.loads(p.stdout)
    return {r["metric"]: {k: r[k] for k, _ in POOL_LIBS} for r in d["rows"]}
