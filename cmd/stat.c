/* tlbd: `tlbd stat CONTROL [--interval T] [--count N] [--json]`: an
 * iostat-like view of a running export.  Every interval it asks the
 * control socket (ctl-client.c) for `stats-raw`, the export's cumulative
 * counters and latency histograms (blockdrv/ctl-cmd.c), and prints the
 * difference from the previous answer: requests per second by kind, MiB/s,
 * in flight, latency percentiles by kind, the pool, inline against pooled
 * requests, and the volatile cache.  The rates use the export's own clock
 * (time_ns), so a late wake-up here does not skew them.  The lines are
 * printed by stat-print.c.
 *
 * Main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "ctl-client.h"
#include "options.h"
#include "stat.h"
#include "subcommands.h"

#define INTERVAL_MIN_NS 10000000ull      /* 10ms */
#define INTERVAL_MAX_NS 3600000000000ull /* 1h */
/* The format= of stats-raw this reads (CTL_STATS_RAW_FORMAT, blockdrv/ctl.h,
 * which cmd/ cannot include).
 */
#define STATS_RAW_FORMAT 1

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd stat [--interval T] [--count N] [--json] "
                "CONTROL\n");
    if (fp == stdout) {
        fprintf(
            fp,
            "\n"
            "Show what a running export does, one line per interval, from "
            "its\n"
            "control socket CONTROL (control=PATH, --control=PATH); '-' "
            "means\n"
            "$TLBD_CONTROL.\n"
            "\n"
            "  --interval T   the interval (1s, 500ms, 2m; 10ms to 1h; "
            "default 1s)\n"
            "  --count N      stop after N lines (default: run until "
            "interrupted)\n"
            "  --json         one JSON object per interval, one a line\n"
            "\n"
            "Columns: requests per second by kind (r/s w/s f/s d/s z/s), "
            "MiB/s\n"
            "read and written, requests in flight, latency p50, p99 and max "
            "per\n"
            "kind (r_ w_ f_ d_ z_; n, u, m, s: ns, us, ms, s), pool workers "
            "busy\n"
            "and idle, requests per second run inline and through the pool, "
            "and\n"
            "with a volatile cache its MiB not yet durable and writes "
            "destaged\n"
            "per second.\n"
            "\n"
            "Exit status: 0 after N lines, 1 the export refused the command, "
            "2\n"
            "usage or connection error.  See tlbd(1).\n");
    }
    exit(exitcode);
}

enum {
    HELP_OPTION = 256,
    INTERVAL_OPTION,
    COUNT_OPTION,
    JSON_OPTION,
    LONG_OPTIONS,
    SHORT_OPTIONS,
};

static const char short_options[] = "+h";
static const struct option long_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "interval", required_argument, NULL, INTERVAL_OPTION },
    { "count", required_argument, NULL, COUNT_OPTION },
    { "json", no_argument, NULL, JSON_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { NULL, 0, NULL, 0 },
};

/* The kinds, in the order of StatSnapshot.ops and the columns. */
const char *const stat_kind_names[STAT_KINDS] = {
    "read", "write", "flush", "discard", "zero",
};

/* The scalar keys of stats-raw this reads, and where they go. */
static const struct {
    const char *key;
    size_t offset;
} keys[] = {
    { "time_ns", offsetof(StatSnapshot, time_ns) },
    { "reads", offsetof(StatSnapshot, ops[0]) },
    { "writes", offsetof(StatSnapshot, ops[1]) },
    { "flushes", offsetof(StatSnapshot, ops[2]) },
    { "discards", offsetof(StatSnapshot, ops[3]) },
    { "zeroes", offsetof(StatSnapshot, ops[4]) },
    { "requests", offsetof(StatSnapshot, requests) },
    { "bytes_read", offsetof(StatSnapshot, bytes_read) },
    { "bytes_written", offsetof(StatSnapshot, bytes_written) },
    { "errors", offsetof(StatSnapshot, errors) },
    { "inline_ops", offsetof(StatSnapshot, inline_ops) },
    { "in_flight", offsetof(StatSnapshot, in_flight) },
    { "volatile_cache", offsetof(StatSnapshot, volatile_cache) },
    { "volatile_bytes", offsetof(StatSnapshot, volatile_bytes) },
    { "destaged", offsetof(StatSnapshot, destaged) },
    { "pool_threads", offsetof(StatSnapshot, pool_threads) },
    { "pool_idle", offsetof(StatSnapshot, pool_idle) },
    { "pool_queued", offsetof(StatSnapshot, pool_queued) },
};

/* A reply that is not what stats-raw sends: say so and exit 2. */
static void __attribute__((noreturn))
bad_reply(const char *path, const char *what, const char *line)
{
    tlbd_exit(TLBD_EXIT_USAGE, "'%s': not a tlbd stats-raw reply (%s%s%.60s%s)",
              path, what, line ? ": '" : "", line ? line : "", line ? "'" : "");
}

/* VALUE of lat_KIND: "BUCKET:COUNT,..." into BUCKETS.  false if bad. */
static bool
parse_buckets(const char *value, uint64_t *buckets)
{
    const char *p = value;

    while (*p) {
        uint64_t b, n;
        if (tlbd_parse_number(p, &b, &p) < 0 || *p++ != ':' ||
            b >= HIST_BUCKETS || tlbd_parse_number(p, &n, &p) < 0) {
            return false;
        }
        buckets[b] = n;
        if (*p == ',') {
            p++;
        } else if (*p) {
            return false;
        }
    }
    return true;
}

/* One line of the reply into S; false when it is not key=value. */
static bool
parse_line(char *line, StatSnapshot *s, uint64_t *seen, const char *path)
{
    char *eq = strchr(line, '=');
    const char *value;
    uint64_t v;

    if (!eq) {
        return false;
    }
    *eq = '\0';
    value = eq + 1;
    if (strcmp(line, "format") == 0) {
        if (tlbd_parse_uint(value, UINT64_MAX, &v) < 0 ||
            v != STATS_RAW_FORMAT) {
            tlbd_exit(TLBD_EXIT_USAGE,
                      "'%s': stats-raw format %s, this tlbd reads "
                      "format %d",
                      path, value, STATS_RAW_FORMAT);
        }
        return true;
    }
    if (strcmp(line, "hist_sub_bits") == 0) {
        if (tlbd_parse_uint(value, UINT64_MAX, &v) < 0 || v != HIST_SUB_BITS) {
            bad_reply(path, "histogram buckets of another tlbd", value);
        }
        return true;
    }
    if (strncmp(line, "lat_", 4) == 0) {
        for (int k = 0; k < STAT_KINDS; k++) {
            if (strcmp(line + 4, stat_kind_names[k]) == 0) {
                if (!parse_buckets(value, s->lat[k])) {
                    bad_reply(path, "bad histogram", line);
                }
                return true;
            }
        }
        return true; /* a kind this tlbd does not show */
    }
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(keys); i++) {
        if (strcmp(line, keys[i].key) == 0) {
            if (tlbd_parse_uint(value, UINT64_MAX, &v) < 0) {
                bad_reply(path, "not a number", value);
            }
            *(uint64_t *)((char *)s + keys[i].offset) = v;
            *seen |= 1ull << i;
            return true;
        }
    }
    return true; /* a key for someone else */
}

/* Ask PATH for stats-raw and fill S. */
static void
take_snapshot(const char *path, StatSnapshot *s)
{
    CLEANUP_FREE char *reply = NULL;
    const char *last;
    uint64_t seen = 0;
    char *save = NULL;

    memset(s, 0, sizeof(*s));
    reply = tlbd_ctl_call(path, "stats-raw\n", &last);
    if (strcmp(last, "ok") != 0) {
        fprintf(stderr, "tlbd stat: '%s': %s\n", path, last + 7);
        exit(EXIT_FAILURE);
    }
    if (strncmp(reply, "format=", 7) != 0) {
        bad_reply(path, "no format line", NULL);
    }
    for (char *line = strtok_r(reply, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (!parse_line(line, s, &seen, path)) {
            bad_reply(path, "not key=value", line);
        }
    }
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(keys); i++) {
        if (!(seen & (1ull << i))) {
            bad_reply(path, "missing key", keys[i].key);
        }
    }
}

/* The counter that went from A to B: false if it went back. */
static bool
delta(uint64_t a, uint64_t b, uint64_t *out)
{
    *out = b - a;
    return b >= a;
}

/* The interval from A to B into IV; false when a counter went back (the
 * export restarted on the same socket).
 */
static bool
difference(const StatSnapshot *a, const StatSnapshot *b, StatInterval *iv)
{
    uint64_t d, all, ns;
    bool ok = delta(a->time_ns, b->time_ns, &ns) && ns > 0;
    double secs = (double)ns / 1e9;

    memset(iv, 0, sizeof(*iv));
    iv->secs = secs;
    for (int k = 0; k < STAT_KINDS; k++) {
        ok &= delta(a->ops[k], b->ops[k], &d);
        iv->ops_per_s[k] = (double)d / secs;
        hist_init(&iv->lat[k]);
        for (unsigned i = 0; i < HIST_BUCKETS; i++) {
            ok &= delta(a->lat[k][i], b->lat[k][i], &d);
            hist_add_bucket(&iv->lat[k], i, d);
        }
    }
    ok &= delta(a->bytes_read, b->bytes_read, &d);
    iv->read_mib_per_s = (double)d / secs / 1048576.0;
    ok &= delta(a->bytes_written, b->bytes_written, &d);
    iv->write_mib_per_s = (double)d / secs / 1048576.0;
    ok &= delta(a->errors, b->errors, &d);
    iv->errors_per_s = (double)d / secs;
    ok &= delta(a->inline_ops, b->inline_ops, &d);
    ok &= delta(a->requests, b->requests, &all);
    iv->inline_per_s = (double)d / secs;
    iv->pool_per_s = all > d ? (double)(all - d) / secs : 0;
    ok &= delta(a->destaged, b->destaged, &d);
    iv->destaged_per_s = (double)d / secs;
    iv->in_flight = b->in_flight;
    iv->pool_busy =
        b->pool_threads > b->pool_idle ? b->pool_threads - b->pool_idle : 0;
    iv->pool_idle = b->pool_idle;
    iv->pool_threads = b->pool_threads;
    iv->pool_queued = b->pool_queued;
    iv->volatile_cache = b->volatile_cache;
    iv->volatile_bytes = b->volatile_bytes;
    return ok;
}

/* Sleep until DEADLINE (CLOCK_MONOTONIC, ns). */
static void
sleep_until(uint64_t deadline)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000u),
                           .tv_nsec = (long)(deadline % 1000000000u) };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
           EINTR) {
    }
}

int
tlbd_stat_main(int argc, char **argv)
{
    CLEANUP_FREE StatSnapshot *snap = calloc(2, sizeof(*snap));
    CLEANUP_FREE StatInterval *iv = calloc(1, sizeof(*iv));
    StatPrinter pr = { .json = false };
    uint64_t interval_ns = 1000000000ull;
    uint64_t count = 0; /* 0: forever */
    uint64_t start, first_ns;
    const char *path;
    int cur = 0;
    int c;

    tlbd_set_program("tlbd stat");
    argv[0] = (char *)"tlbd stat"; /* getopt's messages */
    optind = 1;
    while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) !=
           -1) {
        switch (c) {
        case 'h':
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case INTERVAL_OPTION:
            if (tlbd_parse_duration(optarg, &interval_ns) < 0 ||
                interval_ns < INTERVAL_MIN_NS ||
                interval_ns > INTERVAL_MAX_NS) {
                tlbd_bad_value("--interval", optarg,
                               "expected a duration from 10ms to 1h (2s, "
                               "500ms, 1m)");
                usage(stderr, TLBD_EXIT_USAGE);
            }
            break;
        case COUNT_OPTION:
            if (!tlbd_uint_option("--count", optarg, 1, UINT32_MAX, &count)) {
                usage(stderr, TLBD_EXIT_USAGE);
            }
            break;
        case JSON_OPTION:
            pr.json = true;
            break;
        case LONG_OPTIONS:
            tlbd_print_options(long_options, short_options + 1, true);
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options + 1, false);
        default:
            usage(stderr, TLBD_EXIT_USAGE);
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "tlbd stat: %s\n",
                argc == optind ? "missing CONTROL" : "too many arguments");
        usage(stderr, TLBD_EXIT_USAGE);
    }
    if (!snap || !iv) {
        tlbd_fatal("out of memory");
    }
    path = tlbd_ctl_path(argv[optind]);
    stat_printer_init(&pr);

    take_snapshot(path, &snap[cur]);
    first_ns = snap[cur].time_ns;
    start = tlbd_now_ns();
    for (uint64_t n = 0, tick = 1; count == 0 || n < count; tick++) {
        sleep_until(start + tick * interval_ns);
        take_snapshot(path, &snap[!cur]);
        if (difference(&snap[cur], &snap[!cur], iv)) {
            iv->elapsed = (double)(snap[!cur].time_ns - first_ns) / 1e9;
            stat_print(&pr, iv);
            n++;
        } else {
            fprintf(stderr,
                    "tlbd stat: '%s': the counters went back (the "
                    "export restarted?); starting over\n",
                    path);
            first_ns = snap[!cur].time_ns;
        }
        cur = !cur;
    }
    return EXIT_SUCCESS;
}
