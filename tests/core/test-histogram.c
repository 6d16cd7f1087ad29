/* tlbd: unit tests of core/histogram: every bucket's bounds map back to
 * the bucket and the buckets tile the values; hist_add_bucket rebuilds
 * what hist_record made, percentiles included; and the atomic bucket
 * counters paio keeps, added to from several threads, lose nothing.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "histogram.h"

static void
test_bucket_bounds(void **state)
{
    (void)state;
    assert_int_equal(hist_bucket_low(0), 0);
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        assert_int_equal(hist_bucket_of(hist_bucket_low(b)), b);
        assert_int_equal(hist_bucket_of(hist_bucket_high(b)), b);
        if (b + 1 < HIST_BUCKETS) {
            assert_true(hist_bucket_high(b) + 1 == hist_bucket_low(b + 1));
        }
        /* about 3% wide above the exact ones */
        if (b >= 2 * HIST_SUB) {
            uint64_t low = hist_bucket_low(b);
            assert_true(hist_bucket_high(b) - low <= low / HIST_SUB);
        }
    }
    assert_true(hist_bucket_high(HIST_BUCKETS - 1) == UINT64_MAX);
    assert_int_equal(hist_bucket_of(UINT64_MAX), HIST_BUCKETS - 1);
}

static void
test_add_bucket(void **state)
{
    Histogram rec, sum;

    (void)state;
    hist_init(&rec);
    hist_init(&sum);
    for (uint64_t v = 1; v < 5000000; v = v * 3 / 2 + 7) {
        for (int i = 0; i < 3; i++) {
            hist_record(&rec, v);
        }
    }
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        hist_add_bucket(&sum, b, rec.buckets[b]);
    }
    assert_true(sum.count == rec.count);
    assert_true(sum.min <= rec.min && sum.max >= rec.max);
    assert_true(sum.max - rec.max <= rec.max / HIST_SUB);
    for (double p = 1; p <= 100; p += 7) {
        uint64_t a = hist_percentile(&rec, p);
        uint64_t b = hist_percentile(&sum, p);
        assert_true(b >= a && b - a <= a / HIST_SUB);
    }
    hist_init(&sum);
    hist_add_bucket(&sum, 100, 0);
    assert_true(sum.count == 0 && hist_percentile(&sum, 50) == 0);
}

#define THREADS 4
#define ADDS    100000

static _Atomic uint64_t counters[HIST_BUCKETS];

static void *
adder(void *arg)
{
    uint64_t v = (uintptr_t)arg;

    for (int i = 0; i < ADDS; i++) {
        v = v * 6364136223846793005ull + 1442695040888963407ull;
        atomic_fetch_add_explicit(&counters[hist_bucket_of(v >> 40)], 1,
                                  memory_order_relaxed);
    }
    return NULL;
}

static void
test_atomic_counters(void **state)
{
    pthread_t t[THREADS];
    Histogram h;

    (void)state;
    for (uintptr_t i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, adder, (void *)i), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    hist_init(&h);
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        hist_add_bucket(&h, b, atomic_load(&counters[b]));
    }
    assert_true(h.count == (uint64_t)THREADS * ADDS);
    assert_true(h.max <= hist_bucket_high(hist_bucket_of(UINT64_MAX >> 40)));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_add_bucket),
        cmocka_unit_test(test_atomic_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
