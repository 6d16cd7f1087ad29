/* tlbd: `tlbd stat` (stat.c: options, the snapshots, their difference)
 * and its output (stat-print.c: the columns and the JSON).  Main thread
 * only.
 */
#ifndef TLBD_STAT_H
#define TLBD_STAT_H

#include <stdbool.h>
#include <stdint.h>

#include "histogram.h"

/* read, write, flush, discard, zero: the kinds with a latency histogram */
#define STAT_KINDS 5

extern const char *const stat_kind_names[STAT_KINDS];

/* One answer of stats-raw: cumulative counters, gauges, histograms. */
typedef struct StatSnapshot {
    uint64_t time_ns; /* the export's CLOCK_MONOTONIC */
    uint64_t ops[STAT_KINDS];
    uint64_t requests; /* of every kind, ioctls etc. included */
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t errors;
    uint64_t inline_ops;
    uint64_t in_flight;
    uint64_t volatile_cache; /* its size; 0: none */
    uint64_t volatile_bytes;
    uint64_t destaged;
    uint64_t pool_threads;
    uint64_t pool_idle;
    uint64_t pool_queued;
    uint64_t lat[STAT_KINDS][HIST_BUCKETS];
} StatSnapshot;

/* What happened between two snapshots, and the gauges at the end. */
typedef struct StatInterval {
    double elapsed; /* seconds from the first snapshot to the end */
    double secs;    /* the interval's length */
    double ops_per_s[STAT_KINDS];
    double errors_per_s;
    double read_mib_per_s;
    double write_mib_per_s;
    double inline_per_s;
    double pool_per_s;
    double destaged_per_s;
    uint64_t in_flight;
    uint64_t pool_busy;
    uint64_t pool_idle;
    uint64_t pool_threads;
    uint64_t pool_queued;
    uint64_t volatile_cache;
    uint64_t volatile_bytes;
    Histogram lat[STAT_KINDS]; /* the interval's latencies, ns */
} StatInterval;

typedef struct StatPrinter {
    bool json;
    /* private */
    unsigned lines;        /* data lines since the last header */
    unsigned header_every; /* data lines per header */
} StatPrinter;

/* Decide how often the header comes (the terminal's height, or 20). */
void stat_printer_init(StatPrinter *pr);

/* Print IV: a line under the columns (a header first when due), or one
 * JSON object.  Flushes stdout; exits when it cannot write.
 */
void stat_print(StatPrinter *pr, const StatInterval *iv);

#endif /* TLBD_STAT_H */
