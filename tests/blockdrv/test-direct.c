/* tlbd: cache=none (O_DIRECT) with misaligned buffers, offsets and lengths
 * going through bounce buffers (longer ones piece by piece), an image whose
 * size is not a multiple of the block size, and iovecs up to IOV_MAX in both
 * cache modes.  Files live under /var/tmp (ext4 here), which supports
 * O_DIRECT.
 */
#include "blockdrv-test.h"
#include "paio.h" /* PAIO_BOUNCE_MAX */

#include <limits.h>

enum { IMG_SIZE = (1 << 20) + 1000 };

typedef struct Fixture {
    BtFixture b;
    uint8_t *shadow; /* what the image must contain */
} Fixture;

static int
setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    bt_fixture_init(&f->b, "direct.img", IMG_SIZE, 11);
    f->shadow = malloc(IMG_SIZE + 65536);
    bt_pattern(f->shadow, IMG_SIZE, 0, 11);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    Fixture *f = *state;
    bt_fixture_destroy(&f->b);
    free(f->shadow);
    free(f);
    return 0;
}

/* Compare the whole image, read back through BD, with the shadow. */
static void
check_image(Fixture *f, BlockDev *bd, size_t size)
{
    uint8_t *back = malloc(size + 1);
    size_t len;
    uint8_t *disk;

    /* +1: a misaligned buffer on purpose. */
    assert_int_equal(blockdev_pread(bd, back + 1, size, 0), (int64_t)size);
    assert_memory_equal(back + 1, f->shadow, size);
    free(back);
    disk = bt_read_file(f->b.path, &len);
    assert_int_equal(len, size);
    assert_memory_equal(disk, f->shadow, size);
    free(disk);
}

static void
test_misaligned_reads_and_writes(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = bt_open(f->b.path, false, BLOCKDEV_CACHE_NONE, f->b.io);
    unsigned a = blockdev_alignment(bd);
    static const struct {
        uint64_t off;
        size_t len;
    } cases[] = {
        { 0, 1 },
        { 1, 1 },
        { 511, 2 },
        { 100, 412 },
        { 4095, 4097 },
        { 3, 70000 },
        { 65536, 512 },
        { 65536, 4096 },
        { (1 << 20) - 7, 1007 },
        { (1 << 20) + 999, 1 },
        { (1 << 20), 1000 },
        { 12345, 54321 },
    };
    uint8_t *buf = malloc(80000);

    assert_true(blockdev_is_direct(bd));
    assert_null(blockdev_warning(bd));
    assert_true(a >= 512 && a <= 4096 && (a & (a - 1)) == 0);
    assert_int_equal(blockdev_logical_block_size(bd), a);

    for (size_t i = 0; i < TLBD_ARRAY_SIZE(cases); i++) {
        uint64_t off = cases[i].off;
        size_t len = cases[i].len;
        uint8_t *p = buf + (i % 3); /* misaligned buffer too, mostly */

        /* Read first, compare; then write new bytes and compare again. */
        assert_int_equal(blockdev_pread(bd, p, len, off), (int64_t)len);
        assert_memory_equal(p, f->shadow + off, len);
        bt_pattern(p, len, off, 100 + (unsigned)i);
        memcpy(f->shadow + off, p, len);
        assert_int_equal(
            blockdev_pwrite(bd, p, len, off, i % 2 ? BLOCKDEV_FUA : 0),
            (int64_t)len);
        assert_int_equal(blockdev_size(bd), IMG_SIZE);
    }

    /* Segments whose lengths are not block multiples, aligned offset. */
    uint8_t *al = NULL;
    assert_int_equal(posix_memalign((void **)&al, 4096, 8192), 0);
    bt_pattern(al, 1024, 8192, 200);
    struct iovec iov[3] = { { al, 100 }, { al + 100, 412 }, { al + 512, 512 } };
    assert_int_equal(blockdev_pwritev(bd, iov, 3, 8192, 0), 1024);
    memcpy(f->shadow + 8192, al, 1024);

    /* Zeroing a misaligned range, fast-only and plain. */
    assert_int_equal(blockdev_write_zeroes(bd, 777, 100, BLOCKDEV_NO_FALLBACK),
                     0);
    memset(f->shadow + 777, 0, 100);
    assert_int_equal(blockdev_write_zeroes(bd, 200000, 70001, 0), 0);
    memset(f->shadow + 200000, 0, 70001);

    /* Writes past the end fail even when the block would fit. */
    assert_int_equal(blockdev_pwrite(bd, buf, 100, IMG_SIZE - 50, 0), -ENOSPC);
    assert_int_equal(blockdev_flush(bd), 0);
    check_image(f, bd, IMG_SIZE);
    blockdev_close(bd);
    free(al);
    free(buf);
}

/* The fixture's image, cache=none and growable. */
static BlockDev *
open_direct_growable(Fixture *f)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;

    blockdev_options_init(&opts);
    opts.cache = BLOCKDEV_CACHE_NONE;
    opts.growable = true;
    assert_int_equal(blockdev_open(f->b.path, &opts, &bd, &msg), 0);
    assert_true(blockdev_is_direct(bd));
    return bd;
}

static void
test_direct_growable(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = open_direct_growable(f);
    uint8_t buf[3000];

    /* Misaligned, past the end: the file ends exactly where the write does
     * (the covering block is cut back).
     */
    bt_pattern(buf, sizeof(buf), 0, 33);
    assert_int_equal(blockdev_pwrite(bd, buf + 1, 2999, IMG_SIZE + 10, 0),
                     2999);
    memset(f->shadow + IMG_SIZE, 0, 10);
    memcpy(f->shadow + IMG_SIZE + 10, buf + 1, 2999);
    assert_int_equal(blockdev_size(bd), IMG_SIZE + 10 + 2999);
    check_image(f, bd, IMG_SIZE + 10 + 2999);
    blockdev_close(bd);
}

/* Misaligned requests longer than PAIO_BOUNCE_MAX go through the bounce
 * buffer piece by piece: partial blocks at both ends, a misaligned buffer
 * over whole blocks, reads across the pieces' edges, and an extending write
 * whose last piece is cut back to the exact end.
 */
static void
test_long_bounce(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = open_direct_growable(f);
    const uint64_t max = PAIO_BOUNCE_MAX;
    const size_t size = 3 * max + 4095 + 777; /* after the extending write */
    uint8_t *shadow = calloc(1, size);
    uint8_t *buf = malloc(size + 1);

    memcpy(shadow, f->shadow, IMG_SIZE);

    /* Partial first and last blocks, four pieces, past the end. */
    bt_pattern(buf + 1, size - 4095, 4095, 61);
    assert_int_equal(
        blockdev_pwrite(bd, buf + 1, size - 4095, 4095, BLOCKDEV_FUA),
        (int64_t)(size - 4095));
    memcpy(shadow + 4095, buf + 1, size - 4095);
    assert_int_equal(blockdev_size(bd), size);

    /* Whole blocks from a misaligned buffer, three pieces. */
    bt_pattern(buf + 3, 2 * max + 4096, 8192, 62);
    assert_int_equal(blockdev_pwrite(bd, buf + 3, 2 * max + 4096, 8192, 0),
                     (int64_t)(2 * max + 4096));
    memcpy(shadow + 8192, buf + 3, 2 * max + 4096);

    /* Reads that start and end inside a piece, and one block into the
     * next.
     */
    static const struct {
        uint64_t off, len;
    } reads[] = {
        { (1 << 20) - 100, (1 << 20) + 300 },
        { 1, 2 * (1 << 20) },
        { 2 * (1 << 20) - 1, (1 << 20) + 4096 },
    };
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(reads); i++) {
        memset(buf, 0, size + 1);
        assert_int_equal(
            blockdev_pread(bd, buf + 1, reads[i].len, reads[i].off),
            (int64_t)reads[i].len);
        assert_memory_equal(buf + 1, shadow + reads[i].off, reads[i].len);
    }
    assert_int_equal(blockdev_flush(bd), 0);
    f->shadow = realloc(f->shadow, size);
    memcpy(f->shadow, shadow, size);
    check_image(f, bd, size);
    blockdev_close(bd);
    free(shadow);
    free(buf);
}

/* IOV_MAX segments of odd sizes; then one segment too many. */
static void
iov_max_roundtrip(Fixture *f, BlockDevCache cache)
{
    BlockDev *bd = bt_open(f->b.path, false, cache, f->b.io);
    int n = IOV_MAX;
    struct iovec *iov = calloc((size_t)n + 1, sizeof(*iov));
    struct iovec *riov = calloc((size_t)n, sizeof(*riov));
    size_t total = 0;
    uint8_t *src, *dst;
    uint64_t off = 4097;
    BtWait w;

    for (int i = 0; i < n; i++) {
        total += (size_t)(i % 7) + 1;
    }
    src = malloc(total + 1);
    dst = malloc(total + 1);
    bt_pattern(src, total, off, (unsigned)cache + 50);
    for (int i = 0, pos = 0; i < n; i++) {
        iov[i].iov_base = src + pos;
        iov[i].iov_len = (size_t)(i % 7) + 1;
        pos += (int)iov[i].iov_len;
    }
    bt_wait_init(&w, f->b.io);
    assert_int_equal(blockdev_aio_pwritev(bd, off, iov, n, 0, bt_wait_cb, &w),
                     0);
    memset(iov, 0, (size_t)n * sizeof(*iov)); /* aio copied the array */
    assert_int_equal(bt_wait(&w), (int64_t)total);
    memcpy(f->shadow + off, src, total);

    /* Read back in IOV_MAX segments of other sizes. */
    size_t per = total / (size_t)n;
    for (int i = 0; i < n; i++) {
        riov[i].iov_base = dst + (size_t)i * per;
        riov[i].iov_len = i == n - 1 ? total - (size_t)i * per : per;
    }
    memset(dst, 0, total);
    assert_int_equal(blockdev_preadv(bd, riov, n, off), (int64_t)total);
    assert_memory_equal(dst, src, total);

    iov[0].iov_base = src;
    iov[0].iov_len = 1;
    for (int i = 1; i <= n; i++) {
        iov[i] = iov[0];
    }
    assert_int_equal(blockdev_pwritev(bd, iov, n + 1, 0, 0), -EINVAL);
    bt_wait_init(&w, f->b.io);
    assert_int_equal(blockdev_aio_preadv(bd, 0, iov, n + 1, bt_wait_cb, &w),
                     -EINVAL);
    check_image(f, bd, IMG_SIZE);
    blockdev_close(bd);
    free(src);
    free(dst);
    free(iov);
    free(riov);
}

static void
test_iov_max_writeback(void **state)
{
    iov_max_roundtrip(*state, BLOCKDEV_CACHE_WRITEBACK);
}

static void
test_iov_max_direct(void **state)
{
    iov_max_roundtrip(*state, BLOCKDEV_CACHE_NONE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_misaligned_reads_and_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_direct_growable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_bounce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iov_max_writeback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_iov_max_direct, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
