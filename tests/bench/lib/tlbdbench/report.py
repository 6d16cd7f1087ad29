"""Medians, ratios, the one table, summary.md and the issue's targets.

The ratio column reads "how many times better tlbd is than this server":
tlbd/peer for rates (IOPS, MiB/s, pairs/s, tasks/s) and peer/tlbd for times
(untar seconds, round-trip microseconds), so >= 1.00 always means tlbd is at
least as good.  Raw rows compare tlbd's row of the same job with the raw
file (tlbd/raw: how close tlbd comes to the limit).
"""

import statistics

from .rows import POOL_LIBS


class Cell:
    """All runs of one row on one server."""

    def __init__(self, row, server):
        self.row = row
        self.server = server
        self.recs = []
        self.na = None          # reason, when the server cannot run here
        self.errors = []
        self.rss_kib = None

    def values(self, key="value"):
        return [r[key] for r in self.recs if r.get(key) is not None]

    def median(self, key="value"):
        v = self.values(key)
        return statistics.median(v) if v else None

    def cpu(self):
        """(value, unit) of the server's CPU time per I/O or per run."""
        per = []
        for r in self.recs:
            if r.get("cpu_s") is None:
                continue
            if r.get("ios"):
                per.append(r["cpu_s"] / r["ios"] * 1e6)
            elif "ios" not in r:
                per.append(r["cpu_s"] * 1e3)
        if not per:
            return None, None
        unit = "us/IO" if self.recs[0].get("ios") else "ms/run"
        return statistics.median(per), unit

    def switches_per_io(self):
        per = [r["ctx_switches"] / r["ios"] for r in self.recs
               if r.get("ctx_switches") is not None and r.get("ios")]
        return statistics.median(per) if per else None

    @property
    def ok(self):
        return bool(self.recs) and not self.errors and self.na is None


def better_ratio(row, tlbd, other):
    if not tlbd or not other:
        return None
    return tlbd / other if row.higher else other / tlbd


def fmt_num(v, unit=None):
    if v is None:
        return "-"
    a = abs(v)
    if unit in ("IOPS", "pairs/s"):
        if a >= 1e6:
            return "%.2fM" % (v / 1e6)
        if a >= 1e3:
            return "%.1fk" % (v / 1e3)
        return "%.0f" % v
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    return "%.3f" % v


class Report:
    def __init__(self, rows, servers_for):
        self.rows = rows
        self.servers_for = servers_for   # row -> [server name]
        self.cells = {}
        for row in rows:
            for s in servers_for(row):
                self.cells[(row.name, s)] = Cell(row, s)
        self.by_name = {r.name: r for r in rows}

    def cell(self, row, server):
        return self.cells[(row.name, server)]

    def tlbd_cell(self, row):
        """The tlbd cell this row compares with (raw: the ref row's)."""
        if row.section == "raw":
            ref = self.by_name.get(row.ref)
            if ref is None:
                return None
            return self.cells.get((ref.name, "tlbd"))
        return self.cells.get((row.name, "tlbd"))

    def ratio(self, row, server):
        t = self.tlbd_cell(row)
        c = self.cell(row, server)
        if t is None or (server == "tlbd" and row.section != "raw"):
            return None
        if not (t.ok and c.ok):
            return None
        return better_ratio(row, t.median(), c.median())

    # rendering ------------------------------------------------------------

    HEAD = ["row", "server", "median", "min-max", "unit", "tlbd/x",
            "CPU", "cs/IO", "p50 us", "p99 us", "RSS MiB"]

    def table_rows(self):
        out = []
        for row in self.rows:
            first = True
            for s in self.servers_for(row):
                c = self.cell(row, s)
                name = row.name if first else ""
                first = False
                if c.na is not None or c.errors or not c.recs:
                    why = (("n/a: " + c.na) if c.na is not None else
                           ("error: " + c.errors[0]) if c.errors else
                           "no result")
                    out.append([name, s, why])
                    continue
                v = c.values()
                r = self.ratio(row, s)
                cpu, cunit = c.cpu()
                out.append([
                    name, s, fmt_num(c.median(), row.unit),
                    "%s-%s" % (fmt_num(min(v), row.unit),
                               fmt_num(max(v), row.unit)),
                    row.unit,
                    "%.2f" % r if r is not None else "",
                    "%s %s" % (fmt_num(cpu), cunit) if cpu is not None
                    else "",
                    "%.2f" % c.switches_per_io()
                    if c.switches_per_io() is not None else "",
                    fmt_num(c.median("p50_us")) if c.values("p50_us")
                    else "",
                    fmt_num(c.median("p99_us")) if c.values("p99_us")
                    else "",
                    "%.1f" % (c.rss_kib / 1024) if c.rss_kib else "",
                ])
        return out

    def text_table(self):
        rows = self.table_rows()
        full = [r for r in rows if len(r) == len(self.HEAD)]
        widths = [max([len(h)] + [len(r[i]) for r in full])
                  for i, h in enumerate(self.HEAD)]
        widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
        widths[1] = max([widths[1]] + [len(r[1]) for r in rows])
        right = {2, 3, 5, 6, 7, 8, 9, 10}

        def fmt(r):
            cols = []
            for i, x in enumerate(r):
                if len(r) == 3 and i == 2:
                    cols.append(x)
                elif i in right:
                    cols.append(x.rjust(widths[i]))
                else:
                    cols.append(x.ljust(widths[i]))
            return "  ".join(cols).rstrip()

        lines = [fmt(self.HEAD), "  ".join("-" * w for w in widths)]
        section = None
        for r, trow in zip(rows, self._row_of_each_line()):
            if trow.section != section:
                section = trow.section
                lines.append("[%s]" % SECTION_TITLES[section])
            lines.append(fmt(r))
        return "\n".join(lines)

    def markdown_table(self):
        lines = ["| " + " | ".join(self.HEAD) + " |",
                 "|" + "---|" * len(self.HEAD)]
        section = None
        for r, trow in zip(self.table_rows(), self._row_of_each_line()):
            if trow.section != section:
                section = trow.section
                lines.append("| **%s** |" % SECTION_TITLES[section]
                             + " |" * (len(self.HEAD) - 1))
            if len(r) == 3:
                r = r[:2] + [r[2]] + [""] * (len(self.HEAD) - 3)
            lines.append("| " + " | ".join(x.replace("|", "/") for x in r)
                         + " |")
        return "\n".join(lines)

    def _row_of_each_line(self):
        for row in self.rows:
            for _ in self.servers_for(row):
                yield row

    def raw_records(self):
        out = []
        for c in self.cells.values():
            for r in c.recs:
                out.append(dict(r, row=c.row.name, server=c.server))
        return out

    # targets --------------------------------------------------------------

    def targets(self):
        """[(target, verdict, detail)] for the issue's goals."""
        res = []

        def worst(rows, peer):
            got = []
            for row in rows:
                if (row.name, peer) not in self.cells:
                    continue
                r = self.ratio(row, peer)
                if r is not None:
                    got.append((r, row.name))
            return min(got) if got else None

        def check(label, rows, peer, goal):
            w = worst(rows, peer)
            if w is None:
                res.append((label, "n/a", "no data"))
            else:
                res.append((label, "met" if w[0] >= goal else "MISSED",
                            "worst %.2fx (%s)" % w))

        nbd = [r for r in self.rows if r.section == "nbd"]
        fuse_fio = [r for r in self.rows
                    if r.section == "fuse" and r.kind == "fio"]
        f4k = [r for r in fuse_fio if "-4k-" in r.name]
        f1m = [r for r in fuse_fio if "-1m-" in r.name]
        check("NBD >= 1.0x nbdkit file, every row", nbd, "nbdkit", 1.0)
        for q in ("qemu-nbd-threads", "qemu-nbd-uring"):
            check("NBD >= 2x %s, every row" % q, nbd, q, 2.0)
        check("FUSE 4k >= 1.5x qsd", f4k, "qsd", 1.5)
        check("FUSE 1M >= 1.0x qsd", f1m, "qsd", 1.0)
        check("FUSE >= 2x nbdfuse", fuse_fio, "nbdfuse", 2.0)
        untar = [r for r in self.rows if r.kind == "untar"]
        # within 1.2x of the loop on the raw file: raw/tlbd >= 1/1.2
        check("ext4 untar+sync within 1.2x of no-FUSE loop", untar, "raw",
              1 / 1.2)
        fsync = [r for r in self.rows if r.kind == "fsync"]
        check("ext4 write+fsync >= 1.6x qsd", fsync, "qsd", 1.6)
        pool = [r for r in self.rows if r.section == "pool"]
        check("pool throughput >= 1.5x libuv",
              [r for r in pool if "tput" in r.name], "libuv", 1.5)
        check("pool round trip p50 <= 0.5x libuv",
              [r for r in pool if r.name == "pool-rtt-p50-us"], "libuv",
              2.0)
        for fam, peers in (("nbd", ("nbdkit", "qemu-nbd-threads",
                                    "qemu-nbd-uring")),
                           ("fuse", ("nbdfuse", "qsd"))):
            rss = self._peak_rss(fam)
            if "tlbd" not in rss or not any(p in rss for p in peers):
                res.append(("%s: tlbd RSS <= smallest peer" % fam.upper(),
                            "n/a", "no data"))
                continue
            small = min((rss[p], p) for p in peers if p in rss)
            res.append(("%s: tlbd RSS <= smallest peer" % fam.upper(),
                        "met" if rss["tlbd"] <= small[0] else "MISSED",
                        "tlbd %.1f MiB, %s %.1f MiB"
                        % (rss["tlbd"] / 1024, small[1], small[0] / 1024)))
        return res

    def _peak_rss(self, section):
        peak = {}
        for c in self.cells.values():
            if c.row.section == section and c.rss_kib:
                peak[c.server] = max(peak.get(c.server, 0), c.rss_kib)
        return peak


SECTION_TITLES = {
    "nbd": "NBD (fio ioengine=nbd over a Unix socket; nbdcopy)",
    "fuse": "FUSE (fio on the exported file; ext4 on a loop device over it)",
    "pool": "Pool (tests/bench/pool-bench)",
    "raw": "Raw limit (fio directly on the image file)",
}

POOL_LIB_NAMES = [name for _, name in POOL_LIBS]
