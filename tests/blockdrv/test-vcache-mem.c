/* tlbd: the volatile cache's memory (blockdrv/vcache-mem.c), white box:
 * buffers never share a byte (a random model of allocations and frees,
 * each buffer holding its own pattern); a buffer is found in scattered
 * runs, past its own runs into run blocks, and reads back through
 * vcmem_at and vcmem_iov; the mapping is all there is (allocation fails
 * when full, and everything comes back once freed, slabs included); an
 * extent a caller must have comes from malloc when the mapping is full;
 * and the pages above the kept megabyte go back when the cache empties.
 */
#include "blockdrv-test.h"

#include <inttypes.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vcache-mem.h"

enum {
    EXTENT_SIZE = 184, /* about a VcExtent */
    MAX_BUFS = 512,
};

static uint64_t rng = 88172645463325252ull;

static uint64_t
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Fill B with the pattern of TAG. */
static void
fill(VcMem *m, VcBuf *b, unsigned tag)
{
    uint8_t *tmp = malloc(b->size);
    struct iovec v = { tmp, b->size };

    assert_non_null(tmp);
    for (uint64_t i = 0; i < b->size; i++) {
        tmp[i] = (uint8_t)(tag * 31 + i * 7);
    }
    vcmem_copy_in(m, b, &v, 1);
    free(tmp);
}

/* B holds TAG's pattern, read with vcmem_at from every offset step. */
static void
check(const VcMem *m, const VcBuf *b, unsigned tag)
{
    uint64_t off = 0;

    while (off < b->size) {
        uint64_t n = b->size - off;
        const uint8_t *p = vcmem_at(m, b, off, &n);
        assert_true(n > 0);
        for (uint64_t i = 0; i < n; i++) {
            if (p[i] != (uint8_t)(tag * 31 + (off + i) * 7)) {
                fail_msg("buffer %u byte %" PRIu64 " overwritten", tag,
                         off + i);
            }
        }
        off += n;
    }
}

static void
test_model(void **state)
{
    VcMem m;
    VcBuf *bufs[MAX_BUFS] = { 0 };
    unsigned tags[MAX_BUFS];
    unsigned tag = 0, failed = 0;

    (void)state;
    assert_int_equal(vcmem_init(&m, 4 << 20, EXTENT_SIZE), 0);
    for (int round = 0; round < 20000; round++) {
        unsigned i = (unsigned)(next_rand() % MAX_BUFS);

        if (bufs[i]) {
            check(&m, bufs[i], tags[i]);
            vcmem_free(&m, bufs[i]);
            bufs[i] = NULL;
            continue;
        }
        bufs[i] = vcmem_alloc(&m, 1 + next_rand() % (96 * 1024));
        if (!bufs[i]) {
            failed++; /* full: fine, the model frees as it goes */
            continue;
        }
        tags[i] = ++tag;
        fill(&m, bufs[i], tags[i]);
    }
    assert_true(failed > 0); /* the mapping did fill */
    for (unsigned i = 0; i < MAX_BUFS; i++) {
        if (bufs[i]) {
            check(&m, bufs[i], tags[i]);
            vcmem_free(&m, bufs[i]);
        }
    }
    assert_int_equal(m.nfree, m.nunits);
    vcmem_destroy(&m);
}

/* A buffer in more runs than it holds itself: every other unit taken. */
static void
test_scattered(void **state)
{
    VcMem m;
    VcBuf *small[256], *big, *again;
    uint64_t len = 100 * VCMEM_UNIT + 77;
    struct iovec iov[128];
    size_t n;
    uint64_t total = 0;

    (void)state;
    assert_int_equal(vcmem_init(&m, 512 * VCMEM_UNIT, EXTENT_SIZE), 0);
    for (int i = 0; i < 256; i++) {
        small[i] = vcmem_alloc(&m, VCMEM_UNIT);
        assert_non_null(small[i]);
        fill(&m, small[i], 1000 + i);
    }
    for (int i = 0; i < 256; i += 2) {
        vcmem_free(&m, small[i]);
    }
    big = vcmem_alloc(&m, len);
    assert_non_null(big);
    /* 101 holes of one unit: its own 3 runs, then 3 blocks */
    assert_int_equal(big->nruns, 101);
    assert_int_equal(vcmem_charge(big),
                     101 * VCMEM_UNIT + sizeof(VcBuf) + 3 * sizeof(VcRunBlock));
    fill(&m, big, 7);
    check(&m, big, 7);
    for (int i = 1; i < 256; i += 2) {
        check(&m, small[i], 1000 + i);
    }
    /* the iovecs of a piece from the middle cover it, in order */
    n = vcmem_iov(&m, big, 300, len - 600, iov, 128);
    assert_true(n > 1 && n <= 128);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = 1;
        assert_ptr_equal(iov[i].iov_base, vcmem_at(&m, big, 300 + total, &k));
        total += iov[i].iov_len;
    }
    assert_int_equal(total, len - 600);
    assert_int_equal(vcmem_iov(&m, big, 0, len, NULL, 0), big->nruns);
    vcmem_free(&m, big);
    /* the holes are whole again: one run of them */
    again = vcmem_alloc(&m, 128 * VCMEM_UNIT);
    assert_non_null(again);
    vcmem_free(&m, again);
    for (int i = 1; i < 256; i += 2) {
        vcmem_free(&m, small[i]);
    }
    assert_int_equal(m.nfree, m.nunits);
    vcmem_destroy(&m);
}

/* The mapping is the bound: extents and buffers fill it, and then only a
 * MUST extent is had, from malloc; freed, all of it is there again.
 */
static void
test_full(void **state)
{
    VcMem m;
    void *ext[4096], *forced;
    VcBuf *whole;
    unsigned n = 0;

    (void)state;
    assert_int_equal(vcmem_init(&m, 64 * VCMEM_UNIT, EXTENT_SIZE), 0);
    assert_true(m.nunits < 64 && m.nunits >= 60); /* its bitmap is in it */
    assert_true(m.map_len <= 64 * VCMEM_UNIT + (size_t)sysconf(_SC_PAGESIZE));
    while ((ext[n] = vcmem_extent_new(&m, false))) {
        assert_true((uint8_t *)ext[n] >= m.base &&
                    (uint8_t *)ext[n] < m.base + m.map_len);
        n++;
        assert_true(n < 4096);
    }
    assert_int_equal(n,
                     m.nunits * (VCMEM_UNIT / ((EXTENT_SIZE + 15) / 16 * 16)));
    assert_int_equal(m.nfree, 0);
    assert_null(vcmem_alloc(&m, 1));
    forced = vcmem_extent_new(&m, true);
    assert_non_null(forced);
    assert_true((uint8_t *)forced < m.base ||
                (uint8_t *)forced >= m.base + m.map_len);
    vcmem_extent_free(&m, forced);
    for (unsigned i = 0; i < n; i++) {
        vcmem_extent_free(&m, ext[i]);
    }
    assert_int_equal(m.nfree, m.nunits);
    /* the largest buffer: everything but its own bookkeeping's slab */
    whole = vcmem_alloc(&m, (uint64_t)(m.nunits - 1) * VCMEM_UNIT);
    assert_non_null(whole);
    assert_int_equal(whole->nruns, 1);
    assert_null(vcmem_alloc(&m, 1));
    vcmem_free(&m, whole);
    vcmem_destroy(&m);
}

/* Resident pages of [P, P+LEN). */
static size_t
resident(uint8_t *p, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = 0;
    unsigned char *vec = malloc(len / page);

    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    for (size_t i = 0; i < len / page; i++) {
        n += vec[i] & 1;
    }
    free(vec);
    return n;
}

static void
test_release(void **state)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t keep = (1 << 20) / page;
    VcMem m;
    VcBuf *a, *b;
    void *e;

    (void)state;
    assert_int_equal(vcmem_init(&m, 8 << 20, EXTENT_SIZE), 0);
    e = vcmem_extent_new(&m, false); /* a slab at the top, by the bitmap */
    assert_non_null(e);
    a = vcmem_alloc(&m, 3 << 20);
    b = vcmem_alloc(&m, 3 << 20);
    assert_non_null(a);
    assert_non_null(b);
    fill(&m, a, 1);
    fill(&m, b, 2);
    assert_true(resident(m.base, 6 << 20) >= (6 << 20) / page);
    vcmem_free(&m, a);
    vcmem_trim(&m);
    /* not empty: nothing goes back */
    assert_true(resident(m.base, 6 << 20) >= (6 << 20) / page);
    vcmem_free(&m, b);
    assert_true(resident(m.base + (1 << 20), 5 << 20) > 0);
    vcmem_extent_free(&m, e);
    vcmem_trim(&m);
    /* empty: what is above the first megabyte goes back, and the bitmap
     * (in the page after the units) stays */
    assert_int_equal(resident(m.base + (1 << 20), 5 << 20), 0);
    assert_int_equal(resident(m.base, 1 << 20), keep);
    assert_int_equal(m.nfree, m.nunits);
    a = vcmem_alloc(&m, (uint64_t)m.nunits * VCMEM_UNIT - VCMEM_UNIT);
    assert_non_null(a);
    assert_int_equal(a->nruns, 1);
    fill(&m, a, 3);
    check(&m, a, 3);
    vcmem_free(&m, a);
    vcmem_destroy(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_scattered),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
