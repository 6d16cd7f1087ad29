/* tlbd: a BlockDev on a real block device: a loop device over a sparse
 * file in /var/tmp, configured with LO_FLAGS_AUTOCLEAR so the kernel
 * detaches it when the test closes its last descriptor, even if the test
 * dies.  Size and block sizes come from BLKGETSIZE64, BLKSSZGET and
 * BLKPBSZGET; discard is BLKDISCARD; write-zeroes uses ZERO_RANGE or
 * BLKZEROOUT and, fast-only, a discard-backed hole.  Needs root.
 */
#include "blockdrv-test.h"

#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>

enum { IMG_SIZE = 8 << 20 };

typedef struct Fixture {
    BtFixture b; /* b.path is the backing file */
    char dev[32];
    int loop_fd; /* holds the device until teardown */
} Fixture;

static int
setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    struct loop_config cfg;
    int ctl, back_fd, n, tries;

    bt_fixture_init(&f->b, "backing.img", IMG_SIZE, 0);
    back_fd = open(f->b.path, O_RDWR);
    assert_true(back_fd >= 0);
    ctl = open("/dev/loop-control", O_RDWR);
    assert_true(ctl >= 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.fd = (uint32_t)back_fd;
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    /* Others may take the free device first: try again. */
    for (tries = 0; tries < 20; tries++) {
        n = ioctl(ctl, LOOP_CTL_GET_FREE);
        assert_true(n >= 0);
        snprintf(f->dev, sizeof(f->dev), "/dev/loop%d", n);
        f->loop_fd = open(f->dev, O_RDWR);
        if (f->loop_fd < 0) {
            continue;
        }
        if (ioctl(f->loop_fd, LOOP_CONFIGURE, &cfg) == 0) {
            break;
        }
        close(f->loop_fd);
        f->loop_fd = -1;
    }
    assert_true(f->loop_fd >= 0);
    close(back_fd);
    close(ctl);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    Fixture *f = *state;
    close(f->loop_fd); /* autoclear detaches the loop device */
    bt_fixture_destroy(&f->b);
    free(f);
    return 0;
}

static int
one_run(void *opaque, uint64_t offset, uint64_t length, bool hole)
{
    int *runs = opaque;
    assert_int_equal(offset, 0);
    assert_int_equal(length, IMG_SIZE);
    assert_false(hole);
    (*runs)++;
    return 0;
}

static void
test_geometry_and_io(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = bt_open(f->dev, false, BLOCKDEV_CACHE_WRITEBACK, f->b.io);
    uint8_t *buf = malloc(1 << 20);
    uint8_t *back = malloc(1 << 20);
    int runs = 0;
    BtWait w;

    assert_true(blockdev_is_blockdev(bd));
    assert_int_equal(blockdev_size(bd), IMG_SIZE);
    assert_int_equal(blockdev_logical_block_size(bd), 512);
    assert_true(blockdev_physical_block_size(bd) >= 512);
    assert_int_equal(blockdev_alignment(bd), 1);
    assert_int_equal(blockdev_allocated(bd), IMG_SIZE);
    assert_int_equal(blockdev_extents(bd, 0, IMG_SIZE, one_run, &runs), 0);
    assert_int_equal(runs, 1);

    bt_pattern(buf, 1 << 20, 0, 44);
    assert_int_equal(blockdev_pwrite(bd, buf, 1 << 20, 1 << 20, BLOCKDEV_FUA),
                     1 << 20);
    assert_int_equal(blockdev_pread(bd, back, 1 << 20, 1 << 20), 1 << 20);
    assert_memory_equal(buf, back, 1 << 20);
    uint64_t blocks = bt_st_blocks(f->b.path);
    assert_true(blocks >= (1 << 20) / 512);

    /* BLKDISCARD through the loop punches the backing file. */
    assert_true(blockdev_can_discard(bd));
    bt_wait_init(&w, f->b.io);
    assert_int_equal(
        blockdev_aio_discard(bd, 1 << 20, 512 << 10, 0, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 0);
    assert_int_equal(blockdev_flush(bd), 0);
    assert_int_equal(blockdev_pread(bd, back, 512 << 10, 1 << 20), 512 << 10);
    assert_true(bt_is_zero(back, 512 << 10));
    assert_true(bt_st_blocks(f->b.path) < blocks);

    /* Write-zeroes: plain, and fast-only with and without a hole. */
    assert_int_equal(blockdev_write_zeroes(bd, (3 << 19), 4096, 0), 0);
    assert_int_equal(
        blockdev_write_zeroes(bd, (7 << 18), 4096, BLOCKDEV_NO_FALLBACK),
        -ENOTSUP);
    assert_true(blockdev_can_fast_zero(bd));
    assert_int_equal(
        blockdev_write_zeroes(bd, (7 << 18), 4096,
                              BLOCKDEV_NO_FALLBACK | BLOCKDEV_MAY_TRIM),
        0);
    assert_int_equal(blockdev_pread(bd, back, 1 << 20, 1 << 20), 1 << 20);
    assert_true(bt_is_zero(back, (512 << 10) + 4096));
    assert_memory_equal(back + (512 << 10) + 4096, buf + (512 << 10) + 4096,
                        (256 << 10) - 4096);
    assert_true(bt_is_zero(back + (768 << 10), 4096));
    assert_memory_equal(back + (768 << 10) + 4096, buf + (768 << 10) + 4096,
                        (256 << 10) - 4096);

    /* Past the end, resizing, and an ioctl passed through. */
    assert_int_equal(blockdev_pwrite(bd, buf, 512, IMG_SIZE, 0), -ENOSPC);
    assert_int_equal(blockdev_truncate(bd, IMG_SIZE), 0);
    assert_int_equal(blockdev_truncate(bd, IMG_SIZE * 2), -ENOTSUP);
    assert_int_equal(blockdev_ioctl(bd, BLKFLSBUF, NULL), 0);
    uint64_t sz = 0;
    assert_int_equal(blockdev_ioctl(bd, BLKGETSIZE64, &sz), 0);
    assert_int_equal(sz, IMG_SIZE);
    blockdev_close(bd);
    free(buf);
    free(back);
}

static void
test_direct_on_blockdev(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = bt_open(f->dev, false, BLOCKDEV_CACHE_NONE, f->b.io);
    uint8_t buf[3000], back[3000];

    assert_true(blockdev_is_direct(bd));
    assert_int_equal(blockdev_alignment(bd), 512);
    bt_pattern(buf, sizeof(buf), 0, 45);
    assert_int_equal(blockdev_pwrite(bd, buf + 1, 2999, 777, 0), 2999);
    assert_int_equal(blockdev_pread(bd, back + 3, 2990, 780), 2990);
    assert_memory_equal(back + 3, buf + 4, 2990);
    blockdev_close(bd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_geometry_and_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_on_blockdev, setup,
                                        teardown),
    };
    if (!bt_private_mounts()) {
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
