/* tlbd: a log-linear latency histogram, in the manner of HdrHistogram.
 *
 * Values (nanoseconds) below 64 have a bucket each; above, every power of
 * two is cut into 32 linear buckets, so a recorded value is known to within
 * about 3%.  The buckets are a fixed array inside the struct: recording never
 * allocates.  A Histogram is not thread-safe: one thread records (the
 * bench's I/O thread), and copies are taken on that thread.  Who keeps
 * counters shared by threads (paio's latency per request kind) keeps an
 * array of HIST_BUCKETS atomic counters indexed by hist_bucket_of, and
 * rebuilds a Histogram from them with hist_add_bucket (tlbd stat).
 */
#ifndef TLBD_HISTOGRAM_H
#define TLBD_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB      (1u << HIST_SUB_BITS) /* 32 buckets per octave */
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

typedef struct Histogram {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
} Histogram;

void hist_init(Histogram *h);
void hist_record(Histogram *h, uint64_t value);

/* The bucket VALUE lands in (below HIST_BUCKETS), and the lowest and the
 * highest value that land in bucket B.
 */
unsigned hist_bucket_of(uint64_t value);
uint64_t hist_bucket_low(unsigned b);
uint64_t hist_bucket_high(unsigned b);

/* Add N values of bucket B (< HIST_BUCKETS) to H, as if each were the
 * bucket's highest value (min takes its lowest).
 */
void hist_add_bucket(Histogram *h, unsigned b, uint64_t n);

/* Add every value of SRC to DST. */
void hist_merge(Histogram *dst, const Histogram *src);

/* The value at percentile PCT (0..100): the highest value equivalent to the
 * bucket holding it, capped at the maximum seen.  0 when empty.
 */
uint64_t hist_percentile(const Histogram *h, double pct);

uint64_t hist_mean(const Histogram *h);

#endif /* TLBD_HISTOGRAM_H */
