#!/usr/bin/env bash
# tlbd: smoke run of tests/bench/run, so that the runner keeps working: one
# NBD row, one repetition of one second, on a small image, against the real
# servers and tlbd's variants (tlbd-vcache; tlbd-stat, with `tlbd stat`
# watching it).  It must exit 0, print the table, write summary.md and
# results.json with a positive figure and a fio JSON file for every server
# that can run here (tlbd too once the plugin is built, "n/a" with a reason
# before), summary.svg with the row's bar for each peer, and leave nothing
# mounted or running, `tlbd stat` included.  Speed is not checked.
. "$(dirname "$0")/../functions.sh"
set -e

requires_root
requires fio --version
requires nbdkit --version
requires qemu-nbd --version
requires rsvg-convert --version

d=$(mktestdir)
row=nbd-4k-randread-qd1
"$TLBD_SRC/tests/bench/run" --build "$TLBD_BUILD" --reps 1 --runtime 1 \
    --size 64M --sections nbd --only "$row" --out "$d/out" \
    --servers tlbd-vcache,tlbd-stat,nbdkit,qemu-nbd-threads,qemu-nbd-uring \
    >"$d/stdout" ||
    { cat "$d/stdout"; die "tests/bench/run failed"; }
cat "$d/stdout"

grep -q '^row  *server  *median  *min-max  *unit  *tlbd/x' "$d/stdout" ||
    die "no table header in the output"
grep -q "^$row " "$d/stdout" || die "no $row line in the table"
[ -s "$d/out/summary.md" ] || die "no summary.md"
/usr/bin/python3 "$TLBD_SRC/tests/svgcheck.py" "$d/out/summary.svg"
grep -q "| $row | tlbd |" "$d/out/summary.md" || die "summary.md lacks $row"

plugin=$(nbdkit_plugin)
/usr/bin/python3 - "$d/out" "$row" "$plugin" "$TLBD_SRC/tests" <<'PY'
import json, os, shutil, sys
out, row, plugin, tests = sys.argv[1:]
sys.path.insert(0, tests)
import svgcheck as S
res = json.load(open(os.path.join(out, "results.json")))
want = ["nbdkit", "qemu-nbd-threads", "qemu-nbd-uring"]
tlbds = ["tlbd", "tlbd-vcache", "tlbd-stat"]
if os.path.exists(plugin):
    want += tlbds
else:
    for s in tlbds:
        why = res["unavailable"].get(row + "/" + s, "")
        assert why.startswith("not built"), "%s not n/a: %r" % (s, why)
runs = {r["server"]: r for r in res["runs"] if r["row"] == row}
for s in want:
    r = runs.get(s)
    assert r is not None, "no run of %s: %r" % (s, res["errors"])
    assert r["value"] > 0 and r["ios"] > 0, r
    assert r["cpu_s"] is not None and r["cpu_s"] >= 0, r
    if shutil.which("perf"):
        assert r["ctx_switches"] is not None and r["ctx_switches"] > 0, r
    fj = json.load(open(os.path.join(out, r["fio_json"])))
    assert fj["jobs"][0]["read"]["total_ios"] == r["ios"], r
# summary.svg: the row, and with tlbd's figure a bar per peer whose ratio
# is tlbd's over the peer's (one repetition: no spread)
svg = S.load(os.path.join(out, "summary.svg"))
groups = [g for g in svg.iter() if g.get("class") == "row"]
assert [g.get("data-row") for g in groups] == [row], groups
bars = {el.get("data-peer"): el for el in groups[0].iter()
        if el.get("class") == "bar"}
if "tlbd" in want:
    for s in want:
        if s == "tlbd":
            continue
        want_r = runs["tlbd"]["value"] / runs[s]["value"]
        el = bars[s]
        for k in ("data-ratio", "data-min", "data-max"):
            assert abs(float(el.get(k)) - want_r) < 1e-3 * want_r, (s, k)
else:
    assert not bars, bars
# every server the runner started is gone, and so is its scratch tmpfs
for inst in res["servers"].values():
    for pid in inst["pids"] + inst["watchers"]:
        assert not os.path.exists("/proc/%d" % pid), "pid %d alive" % pid
    assert inst["kib"] and inst["kib"] > 0, inst
if "tlbd-stat" in want:
    stat = [i for k, i in res["servers"].items()
            if k.startswith("nbd/tlbd-stat/")]
    assert len(stat) == 1 and len(stat[0]["watchers"]) == 1, stat
scratch = res["options"]["scratch"]
assert not os.path.exists(scratch), scratch + " left behind"
mounts = open("/proc/self/mountinfo").read()
assert scratch not in mounts, scratch + " still mounted"
print("run-smoke.sh: ok")
PY
