#!/usr/bin/env bash
# tlbd bench --plot FILE.svg: a standalone SVG that an XML parser reads
# back and rsvg-convert renders into a picture that is not blank, with one
# IOPS series per request kind whose per-second counts add up to the run's
# totals (one point a second of the run), a latency distribution per kind
# that ran, and the run's parameters in the title.  A path that cannot be
# written ends the command before the run, with one message.
source "$(dirname "$0")/../functions.sh"
set -e
requires /usr/bin/python3 --version
requires rsvg-convert --version

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/disk.img

"$tlbd" bench --size 16M --duration 2500ms --seed 11 --flush-every 40 \
    --plot "$dir/run.svg" --json="$dir/run.json" "$img" >"$dir/run.txt" ||
    die "bench --plot failed: $(cat "$dir/run.txt")"
/usr/bin/python3 "$TLBD_SRC/tests/svgcheck.py" "$dir/run.svg" "$dir/run.png"

/usr/bin/python3 - "$TLBD_SRC/tests" "$dir/run.svg" "$dir/run.json" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import svgcheck as S
root = S.load(sys.argv[2])
run = json.load(open(sys.argv[3]))

# One point a second: a last partial second under 0.1 s joins the one
# before; the picture's elapsed time is the run's.
ns = int(root.get("data-elapsed-ns"))
assert abs(ns / 1e9 - run["elapsed_s"]) < 0.006, (ns, run["elapsed_s"])
want = ns // 10**9 + (1 if ns % 10**9 >= 10**8 else 0)
assert want in (2, 3), ns

iops = S.series(root, "iops")
assert set(iops) == {"read", "write", "flush"}, sorted(iops)
for kind, key in (("read", "reads"), ("write", "writes"),
                  ("flush", "flushes")):
    el = iops[kind]
    counts = [int(c) for c in el.get("data-counts").split()]
    pts = S.points(el)
    assert len(counts) == want and len(pts) == want, (kind, counts, want)
    assert sum(counts) == run[key], (kind, sum(counts), run[key])
    assert all(c > 0 for c in counts), (kind, counts)
    xs = [x for x, _ in pts]
    assert xs == sorted(xs), (kind, xs)

lat = S.series(root, "latency")
assert set(lat) == {"read", "write", "flush"}, sorted(lat)
for kind, key in (("read", "reads"), ("write", "writes"),
                  ("flush", "flushes")):
    assert int(lat[kind].get("data-count")) == run[key], kind
    assert len(S.points(lat[kind])) >= 3, kind

texts = [t.text or "" for t in root.iter(S.SVG + "text")]
title = " ".join(texts)
for want_text in ("tlbd bench:", "randrw 50% reads", "bs 4096",
                  "flush every 40", "seed 11", "IOPS over time",
                  "Latency distribution"):
    assert want_text in title, (want_text, texts[:4])
print("plot: ok, %d seconds" % want)
PY

# A read-only run: reads and writes are always drawn, writes at zero.
"$tlbd" bench --rw randread --ops 3000 --plot "$dir/read.svg" "$img" \
    >/dev/null || die "bench --rw randread --plot failed"
/usr/bin/python3 "$TLBD_SRC/tests/svgcheck.py" "$dir/read.svg"
/usr/bin/python3 - "$TLBD_SRC/tests" "$dir/read.svg" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import svgcheck as S
root = S.load(sys.argv[2])
iops = S.series(root, "iops")
assert set(iops) == {"read", "write"}, sorted(iops)
assert sum(int(c) for c in iops["read"].get("data-counts").split()) == 3000
assert set(iops["write"].get("data-counts").split()) == {"0"}
assert set(S.series(root, "latency")) == {"read"}
PY

# Bad input: a missing directory and a directory; nothing is created, not
# even the image that --size would create.
for bad in "$dir/no-such-dir/x.svg" "$dir"; do
    if "$tlbd" bench --size 16M --ops 10 --plot "$bad" "$dir/new.img" \
        >"$dir/out" 2>"$dir/err"; then
        die "--plot $bad succeeded"
    fi
    [ "$(wc -l <"$dir/err")" = 1 ] || die "not one line: $(cat "$dir/err")"
    grep -q "^tlbd: --plot: cannot write '$bad': " "$dir/err" ||
        die "unclear message: $(cat "$dir/err")"
    [ ! -s "$dir/out" ] || die "the run started: $(cat "$dir/out")"
    [ ! -e "$dir/new.img" ] || die "--plot $bad: the image was created"
done
# The run cannot start (no image): the picture it created is removed.
if "$tlbd" bench --plot "$dir/gone.svg" "$dir/missing.img" 2>"$dir/err"; then
    die "bench on a missing image succeeded"
fi
[ ! -e "$dir/gone.svg" ] || die "an empty picture was left behind"
echo "$test_name: ok"
