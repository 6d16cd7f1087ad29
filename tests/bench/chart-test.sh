#!/usr/bin/env bash
# tlbd: summary.svg (tests/bench/lib/tlbdbench/chart.py) drawn from a small
# synthetic table with known figures: a standalone SVG that an XML parser
# reads back and rsvg-convert renders (not blank); one group per row in the
# table's order under its section's title; one bar per peer whose ratio,
# whisker ends and side of the 1x line follow from the figures (rates:
# tlbd/peer, times: peer/tlbd; raw rows: tlbd's row of the same job); a
# peer with no figure is named, not drawn.  Runs with every python3 on
# PATH (Debian's, and any other one that may run tests/bench/run).
source "$(dirname "$0")/../functions.sh"
set -e
requires /usr/bin/python3 --version
requires rsvg-convert --version

dir=$(mktestdir)
for py in $(type -ap python3 | xargs readlink -f | awk '!seen[$0]++'); do
    "$py" - "$TLBD_SRC/tests" "$dir/summary.svg" <<'PY'
import sys, types
sys.dont_write_bytecode = True
tests, out = sys.argv[1:]
sys.path.insert(0, tests + "/bench/lib")
sys.path.insert(0, tests)
import svgcheck as S
from tlbdbench import rows as R
from tlbdbench.report import Report, SECTION_TITLES
from tlbdbench.chart import summary_svg

names = ["nbd-4k-randread-qd1", "ext4-untar-sync", "pool-rtt-p50-us",
         "raw-4k-randread-qd1"]
rows = [r for r in R.all_rows() if r.name in names]
assert [r.name for r in rows] == names, [r.name for r in rows]
servers = {"nbd-4k-randread-qd1": ["tlbd", "nbdkit", "qemu-nbd-uring"],
           "ext4-untar-sync": ["tlbd", "qsd", "raw"],
           "pool-rtt-p50-us": ["tlbd", "libuv"],
           "raw-4k-randread-qd1": ["raw"]}
rep = Report(rows, lambda row: servers[row.name])
vals = {("nbd-4k-randread-qd1", "tlbd"): [900, 1000, 1100],
        ("nbd-4k-randread-qd1", "nbdkit"): [400, 500, 600],
        ("nbd-4k-randread-qd1", "qemu-nbd-uring"): [2000, 2000, 2000],
        ("ext4-untar-sync", "tlbd"): [2.0, 2.0, 2.0],
        ("ext4-untar-sync", "raw"): [1.0, 1.0, 1.0],
        ("pool-rtt-p50-us", "tlbd"): [1.0, 1.0, 1.0],
        ("pool-rtt-p50-us", "libuv"): [20.0, 20.0, 20.0],
        ("raw-4k-randread-qd1", "raw"): [4000, 4000, 4000]}
for (row, server), v in vals.items():
    rep.cells[(row, server)].recs = [dict(rep=i + 1, value=x)
                                     for i, x in enumerate(v)]
rep.cells[("ext4-untar-sync", "qsd")].na = "not installed"
env = dict(date="2026-01-01 00:00 UTC", tlbd="0000000",
           command="tests/bench/run --reps 3")
opts = types.SimpleNamespace(reps=3, runtime=1.5)
with open(out, "w", encoding="utf-8") as f:
    f.write(summary_svg(rep, env, opts))

root = S.load(out)
S.check(out)
groups = [g for g in root.iter() if g.get("class") == "row"]
assert [g.get("data-row") for g in groups] == names, groups
assert [g.get("data-section") for g in groups] == \
    ["nbd", "fuse", "pool", "raw"]
texts = " ".join(t.text or "" for t in root.iter(S.SVG + "text"))
for sec in ("nbd", "fuse", "pool", "raw"):
    assert SECTION_TITLES[sec] in texts, sec
one = [el for el in root.iter() if el.get("class") == "one"]
assert len(one) == 1, one
x1 = float(one[0].get("x1"))

# (row, peer): (ratio, low, high)
want = {("nbd-4k-randread-qd1", "nbdkit"): (2.0, 900 / 600, 1100 / 400),
        ("nbd-4k-randread-qd1", "qemu-nbd-uring"): (0.5, 0.45, 0.55),
        ("ext4-untar-sync", "raw"): (0.5, 0.5, 0.5),
        ("pool-rtt-p50-us", "libuv"): (20.0, 20.0, 20.0),
        ("raw-4k-randread-qd1", "raw"): (0.25, 900 / 4000, 1100 / 4000)}
got = {}
for g in groups:
    for el in g.iter():
        if el.get("class") == "bar":
            got[(g.get("data-row"), el.get("data-peer"))] = el
assert set(got) == set(want), sorted(got)
for key, (r, lo, hi) in want.items():
    el = got[key]
    for attr, v in (("data-ratio", r), ("data-min", lo), ("data-max", hi)):
        assert abs(float(el.get(attr)) - v) < 1e-3 * v, (key, attr, el.attrib)
    x, w = float(el.get("x")), float(el.get("width"))
    edge = x if r > 1 else x + w
    assert abs(edge - x1) < 0.2, (key, x, w, x1)
    assert w > 5, (key, w)
missing = [(el.get("data-peer"), el.text) for el in root.iter()
           if el.get("class") == "missing"]
assert missing == [("qsd", "qsd: n/a")], missing
print("chart-test: %s ok" % sys.version.split()[0])
PY
done
echo "$test_name: ok"
