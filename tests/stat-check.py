#!/usr/bin/python3
# tlbd: check `tlbd stat --json` against fio's report of the same run.
#
#   stat-check.py STAT.JSON FIO.JSON
#
# STAT.JSON holds the lines of `tlbd stat --json`, taken from before fio
# started until after it ended; FIO.JSON is fio's --output-format=json of
# one job with rate_iops (reads and writes, a sync every few writes).
# Checks:
#   - every line is one JSON object with the documented keys;
#   - the requests counted over all intervals equal fio's exactly (reads,
#     writes; flushes at least fio's syncs: a close may add one);
#   - in the middle intervals of the run (the intervals with reads, less
#     the first and the last, which fio only partly covers), the median
#     per-second rate of reads, writes and flushes is within TOLERANCE of
#     fio's own average rate (its count over its runtime): the machine may
#     be loaded, so single intervals may be off, their median should not;
#   - per kind in each interval: latency count = requests, and
#     0 < p50 <= p99 <= max when there were any; busy + idle = threads.
# Prints one summary line; exits 1 with the reason on the first failure.
import json
import statistics
import sys

TOLERANCE = 0.15
KINDS = ("read", "write", "flush", "discard", "zero")
KEYS = ("elapsed_s", "interval_s", "ops_per_s", "errors_per_s",
        "read_mib_per_s", "write_mib_per_s", "in_flight", "latency_ns",
        "pool", "inline_per_s", "pool_per_s", "volatile")


def fail(msg):
    print("stat-check: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main(stat_path, fio_path):
    lines = open(stat_path).read().splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            o = json.loads(line)
        except ValueError as e:
            fail("line %d is not JSON (%s): %r" % (n, e, line[:80]))
        if not isinstance(o, dict) or any(k not in o for k in KEYS):
            fail("line %d lacks keys: %r" % (n, line[:200]))
        rows.append(o)
    if len(rows) < 5:
        fail("only %d intervals" % len(rows))

    job = json.load(open(fio_path))["jobs"][0]
    runtime = job["read"]["runtime"] / 1000.0  # ms
    want = {"read": job["read"]["total_ios"],
            "write": job["write"]["total_ios"],
            "flush": job["sync"]["total_ios"]}
    if min(want.values()) <= 0 or runtime <= 0:
        fail("fio did nothing: %r" % want)

    # The request counters and the histograms are read one after the
    # other, not as one snapshot, so a request finishing in between lands
    # in one interval's count and the next interval's histogram: a few per
    # interval may move, but over the whole run they add up exactly.
    lat_total = dict.fromkeys(KINDS, 0)
    req_total = dict.fromkeys(KINDS, 0)
    for o in rows:
        secs = o["interval_s"]
        for k in KINDS:
            lat = o["latency_ns"][k]
            n = round(o["ops_per_s"][k] * secs)
            lat_total[k] += lat["count"]
            req_total[k] += n
            if abs(lat["count"] - n) > max(3, n // 20):
                fail("%s: %d latencies for %d requests: %r" %
                     (k, lat["count"], n, o))
            if lat["count"] and not (0 < lat["p50"] <= lat["p99"] <=
                                     lat["max"]):
                fail("%s latency out of order: %r" % (k, lat))
        p = o["pool"]
        if p["busy"] + p["idle"] != p["threads"]:
            fail("pool: busy + idle != threads: %r" % p)
    for k in KINDS:
        if lat_total[k] != req_total[k]:
            fail("%s: %d latencies for %d requests over the run" %
                 (k, lat_total[k], req_total[k]))

    got = {k: sum(o["latency_ns"][k]["count"] for o in rows) for k in want}
    for k in ("read", "write"):
        if got[k] != want[k]:
            fail("%ss: tlbd stat counted %d, fio %d" % (k, got[k], want[k]))
    if got["flush"] < want["flush"]:
        fail("flushes: tlbd stat counted %d, fio synced %d" %
             (got["flush"], want["flush"]))

    active = [i for i, o in enumerate(rows) if o["ops_per_s"]["read"] > 0]
    middle = rows[active[0] + 1:active[-1]] if active else []
    if len(middle) < 3:
        fail("only %d intervals in the middle of the run" % len(middle))
    summary = []
    for k in want:
        rate = want[k] / runtime
        med = statistics.median(o["ops_per_s"][k] for o in middle)
        summary.append("%s %.1f/s (fio %.1f/s)" % (k, med, rate))
        if abs(med - rate) > TOLERANCE * rate:
            fail("%s: median %.1f/s over %d intervals, fio %.1f/s: off by "
                 "more than %d%%" % (k, med, len(middle), rate,
                                     TOLERANCE * 100))
    print("stat-check: ok: %d intervals, %d in the middle: %s" %
          (len(rows), len(middle), ", ".join(summary)))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: stat-check.py STAT.JSON FIO.JSON", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
