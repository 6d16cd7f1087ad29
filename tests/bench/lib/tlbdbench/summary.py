"""What the run writes: results.json (every run, the servers' peak RSS
and pids, what was n/a and why), table.txt, summary.md (machine, exact
command, versions, the table, the targets, what each row means) and
summary.svg (tlbd's ratio to each peer, row by row: chart.py).
"""

import datetime
import json
import os
import platform
import subprocess

from . import rows as R
from .chart import summary_svg


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
    with open(os.path.join(ctx.out, "summary.svg"), "w",
              encoding="utf-8") as f:
        f.write(summary_svg(report, env, ctx.opts))
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
         "- %d repetitions, interleaved (for each rep, row, server; the "
         "server order turns by one each rep); "
         "%g s per fio job; image %d MiB; the whole run took %d s"
         % (o.reps, o.runtime, ctx.size // R.MIB, env["elapsed_s"]),
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
          report.markdown_table(), "",
          "The same ratios as a picture, with their spread: "
          "[summary.svg](summary.svg).", "", "## Targets (issue 7)", "",
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
