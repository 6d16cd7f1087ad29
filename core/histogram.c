/* tlbd: log-linear latency histogram (see histogram.h).  A Histogram is
 * used by one thread at a time; the bucket functions by any.
 */
#include <string.h>

#include "histogram.h"

/* Bucket of VALUE: values below 2*HIST_SUB map to themselves; above, the
 * top HIST_SUB_BITS+1 bits (leading one included) select the bucket within
 * the octave.
 */
unsigned
hist_bucket_of(uint64_t value)
{
    if (value < 2 * HIST_SUB) {
        return (unsigned)value;
    }
    unsigned msb = 63 - (unsigned)__builtin_clzll(value);
    unsigned shift = msb - HIST_SUB_BITS;
    return shift * HIST_SUB + (unsigned)(value >> shift);
}

uint64_t
hist_bucket_low(unsigned b)
{
    if (b < 2 * HIST_SUB) {
        return b;
    }
    unsigned shift = b / HIST_SUB - 1;
    uint64_t sub = b - shift * HIST_SUB;
    return sub << shift;
}

uint64_t
hist_bucket_high(unsigned b)
{
    /* One less than the next bucket's lowest value (which wraps to 0 past
     * the last bucket). */
    return b < 2 * HIST_SUB ? b : hist_bucket_low(b + 1) - 1;
}

void
hist_init(Histogram *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void
hist_record(Histogram *h, uint64_t value)
{
    h->buckets[hist_bucket_of(value)]++;
    h->count++;
    h->sum += value;
    if (value < h->min) {
        h->min = value;
    }
    if (value > h->max) {
        h->max = value;
    }
}

void
hist_add_bucket(Histogram *h, unsigned b, uint64_t n)
{
    uint64_t low = hist_bucket_low(b);
    uint64_t high = hist_bucket_high(b);

    if (n == 0) {
        return;
    }
    h->buckets[b] += n;
    h->count += n;
    h->sum += n * high;
    if (low < h->min) {
        h->min = low;
    }
    if (high > h->max) {
        h->max = high;
    }
}

void
hist_merge(Histogram *dst, const Histogram *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) {
        dst->min = src->min;
    }
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

uint64_t
hist_percentile(const Histogram *h, double pct)
{
    if (h->count == 0) {
        return 0;
    }
    /* The rank of the value wanted, counting from 1. */
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->count + 0.5);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > h->count) {
        rank = h->count;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

uint64_t
hist_mean(const Histogram *h)
{
    return h->count ? h->sum / h->count : 0;
}
