/* tlbd: BlockDev round trips, one handler at a time, against temporary
 * files under /var/tmp (see blockdrv-test.h): aio forms with callbacks on
 * an IOThread, blocking forms with and without one.
 */
#include "blockdrv-test.h"

#include <linux/fs.h>
#include <sys/ioctl.h>

typedef BtFixture Fixture;

enum { IMG_SIZE = 1 << 20 };

static int
setup(void **state)
{
    *state = bt_fixture_new("disk.img", IMG_SIZE, 7);
    return 0;
}

static void
test_aio_roundtrip(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = bt_open(f->path, false, BLOCKDEV_CACHE_WRITEBACK, f->io);
    uint8_t a[1000], b[3096], c[4096], back[8192], want[8192];
    struct iovec wiov[3] = { { a, sizeof(a) },
                             { b, sizeof(b) },
                             { c, sizeof(c) } };
    struct iovec riov[2] = { { back, 5000 }, { back + 5000, 3192 } };
    BtWait w;
    size_t len;
    uint8_t *disk;

    assert_int_equal(blockdev_size(bd), IMG_SIZE);
    assert_false(blockdev_is_readonly(bd));
    assert_false(blockdev_is_blockdev(bd));
    assert_false(blockdev_is_direct(bd));
    assert_int_equal(blockdev_alignment(bd), 1);
    assert_true(blockdev_logical_block_size(bd) >= 512);
    assert_true(blockdev_physical_block_size(bd) >=
                blockdev_logical_block_size(bd));
    assert_string_equal(blockdev_path(bd), f->path);
    assert_true(blockdev_fd(bd) >= 0);

    bt_pattern(want, sizeof(want), 0, 99);
    memcpy(a, want, sizeof(a));
    memcpy(b, want + 1000, sizeof(b));
    memcpy(c, want + 4096, sizeof(c));

    bt_wait_init(&w, f->io);
    assert_int_equal(
        blockdev_aio_pwritev(bd, 12345, wiov, 3, 0, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 8192);

    bt_wait_init(&w, f->io);
    memset(back, 0xaa, sizeof(back));
    assert_int_equal(blockdev_aio_preadv(bd, 12345, riov, 2, bt_wait_cb, &w),
                     0);
    assert_int_equal(bt_wait(&w), 8192);
    assert_memory_equal(back, want, sizeof(want));

    bt_wait_init(&w, f->io);
    assert_int_equal(blockdev_aio_flush(bd, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 0);

    /* Blocking read through the IOThread sees the same bytes. */
    memset(back, 0, sizeof(back));
    assert_int_equal(blockdev_pread(bd, back, sizeof(back), 12345), 8192);
    assert_memory_equal(back, want, sizeof(want));

    BlockDevStats st;
    blockdev_get_stats(bd, &st);
    assert_int_equal(st.writes, 1);
    assert_int_equal(st.reads, 2);
    assert_int_equal(st.flushes, 1);
    assert_int_equal(st.bytes_written, 8192);
    assert_int_equal(st.bytes_read, 16384);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.in_flight, 0);
    blockdev_close(bd);

    disk = bt_read_file(f->path, &len);
    assert_int_equal(len, IMG_SIZE);
    assert_memory_equal(disk + 12345, want, sizeof(want));
    uint8_t *orig = malloc(IMG_SIZE);
    bt_pattern(orig, IMG_SIZE, 0, 7);
    assert_memory_equal(disk, orig, 12345);
    assert_memory_equal(disk + 12345 + 8192, orig + 12345 + 8192,
                        IMG_SIZE - 12345 - 8192);
    free(orig);
    free(disk);
}

static void
test_blocking_without_iothread(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = bt_open(f->path, false, BLOCKDEV_CACHE_WRITEBACK, NULL);
    uint8_t buf[4096], back[4096];
    BtWait w;

    bt_pattern(buf, sizeof(buf), 0, 3);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 65536, BLOCKDEV_FUA),
                     4096);
    assert_int_equal(blockdev_pread(bd, back, sizeof(back), 65536), 4096);
    assert_memory_equal(buf, back, sizeof(buf));
    assert_int_equal(blockdev_flush(bd), 0);

    /* Without an IOThread the aio callback runs on the worker. */
    bt_wait_init(&w, NULL);
    assert_int_equal(blockdev_aio_flush(bd, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 0);
    blockdev_close(bd);
}

static void
test_short_read_at_eof(void **state)
{
    Fixture *f = *state;
    char *path = bt_path(f->dir, "small.img");
    uint8_t want[1000], back[8192];
    BlockDev *bd;
    BtWait w;

    bt_make_file(path, 1000, 5);
    bd = bt_open(path, true, BLOCKDEV_CACHE_WRITEBACK, f->io);
    assert_int_equal(blockdev_size(bd), 1000);
    bt_pattern(want, sizeof(want), 0, 5);
    memset(back, 0xee, sizeof(back));
    assert_int_equal(blockdev_pread(bd, back, 4096, 0), 4096);
    assert_memory_equal(back, want, 1000);
    assert_true(bt_is_zero(back + 1000, 4096 - 1000));

    /* Several segments across end of file: the first preadv is short in
     * the middle of a segment, the rest is zero-filled.
     */
    memset(back, 0xee, sizeof(back));
    struct iovec segs[3] = { { back, 300 },
                             { back + 300, 900 },
                             { back + 1200, 3000 } };
    assert_int_equal(blockdev_preadv(bd, segs, 3, 0), 4200);
    assert_memory_equal(back, want, 1000);
    assert_true(bt_is_zero(back + 1000, 3200));
    assert_int_equal(back[4200], 0xee);
    assert_int_equal(blockdev_preadv(bd, segs, 3, 990), 4200);
    assert_memory_equal(back, want + 990, 10);
    assert_true(bt_is_zero(back + 10, 4190));

    /* Entirely past end of file: all zeroes, full length. */
    memset(back, 0xee, sizeof(back));
    bt_wait_init(&w, f->io);
    struct iovec iov = { back, sizeof(back) };
    assert_int_equal(blockdev_aio_preadv(bd, 1 << 20, &iov, 1, bt_wait_cb, &w),
                     0);
    assert_int_equal(bt_wait(&w), (int64_t)sizeof(back));
    assert_true(bt_is_zero(back, sizeof(back)));
    blockdev_close(bd);
    free(path);
}

static void
test_discard_and_zero(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = bt_open(f->path, false, BLOCKDEV_CACHE_WRITEBACK, f->io);
    uint8_t *back = malloc(IMG_SIZE);
    uint64_t blocks0 = bt_st_blocks(f->path);
    uint64_t blocks;
    BtWait w;

    assert_true(blockdev_can_discard(bd));
    assert_true(blockdev_can_fast_zero(bd));
    assert_true(blockdev_allocated(bd) >= IMG_SIZE);

    /* Discard releases blocks and reads back as zeroes. */
    bt_wait_init(&w, f->io);
    assert_int_equal(blockdev_aio_discard(bd, 65536, 262144, 0, bt_wait_cb, &w),
                     0);
    assert_int_equal(bt_wait(&w), 0);
    assert_int_equal(blockdev_pread(bd, back, 262144, 65536), 262144);
    assert_true(bt_is_zero(back, 262144));
    blocks = bt_st_blocks(f->path);
    assert_true(blocks <= blocks0 - 262144 / 512);
    assert_true(blockdev_allocated(bd) <= (int64_t)(blocks0 * 512 - 262144));

    /* Write-zeroes allowed to trim releases blocks too. */
    assert_int_equal(
        blockdev_write_zeroes(bd, 524288, 131072, BLOCKDEV_MAY_TRIM), 0);
    assert_int_equal(blockdev_pread(bd, back, 131072, 524288), 131072);
    assert_true(bt_is_zero(back, 131072));
    assert_true(bt_st_blocks(f->path) < blocks);

    /* Plain and fast-only write-zeroes leave zeroes, FUA too. */
    bt_wait_init(&w, f->io);
    assert_int_equal(
        blockdev_aio_write_zeroes(bd, 1000, 3000, BLOCKDEV_FUA, bt_wait_cb, &w),
        0);
    assert_int_equal(bt_wait(&w), 0);
    assert_int_equal(
        blockdev_write_zeroes(bd, 700000, 5000, BLOCKDEV_NO_FALLBACK), 0);
    assert_int_equal(blockdev_pread(bd, back, IMG_SIZE, 0), IMG_SIZE);
    assert_true(bt_is_zero(back + 1000, 3000));
    assert_true(bt_is_zero(back + 700000, 5000));
    uint8_t edge[2];
    bt_pattern(edge, 1, 999, 7);
    bt_pattern(edge + 1, 1, 4000, 7);
    assert_int_equal(back[999], edge[0]);
    assert_int_equal(back[4000], edge[1]);
    blockdev_close(bd);
    free(back);
}

static void
test_discard_ignore(void **state)
{
    Fixture *f = *state;
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    uint8_t back[65536], want[65536];
    uint64_t blocks = bt_st_blocks(f->path);

    blockdev_options_init(&opts);
    assert_int_equal(blockdev_parse_option(&opts, "discard", "ignore", NULL),
                     0);
    opts.iothread = f->io;
    assert_int_equal(blockdev_open(f->path, &opts, &bd, NULL), 0);
    assert_false(blockdev_can_discard(bd));
    assert_int_equal(blockdev_discard(bd, 0, 65536, BLOCKDEV_FUA), 0);
    assert_int_equal(blockdev_pread(bd, back, sizeof(back), 0), 65536);
    bt_pattern(want, sizeof(want), 0, 7);
    assert_memory_equal(back, want, sizeof(back));
    assert_int_equal(bt_st_blocks(f->path), blocks);
    /* Zeroing is not a discard: it still zeroes. */
    assert_int_equal(blockdev_write_zeroes(bd, 0, 4096, BLOCKDEV_MAY_TRIM), 0);
    assert_int_equal(blockdev_pread(bd, back, 4096, 0), 4096);
    assert_true(bt_is_zero(back, 4096));
    /* Past the end is still refused. */
    assert_int_equal(blockdev_discard(bd, IMG_SIZE, 1, 0), -ENOSPC);
    blockdev_close(bd);
}

static int
count_extent(void *opaque, uint64_t offset, uint64_t length, bool hole)
{
    uint64_t *v = opaque; /* [data bytes, hole bytes, next offset] */
    assert_int_equal(offset, v[2]);
    v[hole ? 1 : 0] += length;
    v[2] = offset + length;
    return 0;
}

static void
test_truncate_extents_cache_ioctl(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = bt_open(f->path, false, BLOCKDEV_CACHE_WRITEBACK, f->io);
    uint64_t v[3] = { 0, 0, 0 };
    int bsz = 0;
    BtWait w;

    /* Grow by 4 MiB: the new part is a hole. */
    bt_wait_init(&w, f->io);
    assert_int_equal(blockdev_aio_truncate(bd, 5 << 20, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 0);
    assert_int_equal(blockdev_size(bd), 5 << 20);
    assert_int_equal(blockdev_extents(bd, 0, 5 << 20, count_extent, v), 0);
    assert_int_equal(v[2], 5 << 20);
    assert_int_equal(v[0] + v[1], 5 << 20);
    assert_true(v[0] >= IMG_SIZE);
    assert_true(v[1] >= 4 << 20);

    assert_int_equal(blockdev_lseek(bd, 0, SEEK_DATA), 0);
    assert_int_equal(blockdev_lseek(bd, IMG_SIZE, SEEK_HOLE), IMG_SIZE);
    assert_int_equal(blockdev_lseek(bd, 2 << 20, SEEK_DATA), -ENXIO);

    assert_int_equal(blockdev_truncate(bd, IMG_SIZE), 0);
    assert_int_equal(blockdev_size(bd), IMG_SIZE);

    assert_int_equal(blockdev_cache(bd, 0, 65536), 0);
    bt_wait_init(&w, f->io);
    assert_int_equal(blockdev_aio_cache(bd, 0, 65536, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 0);

    bt_wait_init(&w, f->io);
    assert_int_equal(blockdev_aio_allocated(bd, bt_wait_cb, &w), 0);
    assert_true(bt_wait(&w) >= IMG_SIZE);

    /* ioctl passes through: the file system's block size, then an ioctl a
     * regular file does not know.
     */
    assert_int_equal(blockdev_ioctl(bd, FIGETBSZ, &bsz), 0);
    assert_true(bsz >= 512);
    bt_wait_init(&w, f->io);
    assert_int_equal(
        blockdev_aio_ioctl(bd, BLKGETSIZE64, &v[0], bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), -ENOTTY);
    blockdev_close(bd);
}

static void
test_readonly_and_bounds(void **state)
{
    Fixture *f = *state;
    BlockDevOptions opts;
    BlockDev *bd = bt_open(f->path, true, BLOCKDEV_CACHE_WRITEBACK, f->io);
    uint8_t buf[512] = { 1 };
    char *msg = NULL;
    size_t len;
    uint8_t *before = bt_read_file(f->path, &len);
    uint8_t *after;

    assert_true(blockdev_is_readonly(bd));
    assert_false(blockdev_can_discard(bd));
    assert_false(blockdev_can_fast_zero(bd));
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 0, 0), -EROFS);
    assert_int_equal(blockdev_write_zeroes(bd, 0, 4096, 0), -EROFS);
    assert_int_equal(blockdev_discard(bd, 0, 4096, 0), -EROFS);
    assert_int_equal(blockdev_truncate(bd, 4096), -EROFS);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 512);
    assert_int_equal(blockdev_flush(bd), 0);
    blockdev_close(bd);

    /* Writes past the end: -ENOSPC unless growable. */
    memset(buf, 0, sizeof(buf));
    buf[0] = 1;
    bd = bt_open(f->path, false, BLOCKDEV_CACHE_WRITEBACK, f->io);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), IMG_SIZE - 100, 0),
                     -ENOSPC);
    assert_int_equal(blockdev_write_zeroes(bd, IMG_SIZE, 1, 0), -ENOSPC);
    blockdev_close(bd);
    after = bt_read_file(f->path, &len);
    assert_int_equal(len, IMG_SIZE);
    assert_memory_equal(before, after, IMG_SIZE);
    free(after);

    blockdev_options_init(&opts);
    opts.growable = true;
    opts.iothread = f->io;
    assert_int_equal(blockdev_open(f->path, &opts, &bd, &msg), 0);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), IMG_SIZE + 4096, 0),
                     512);
    assert_int_equal(blockdev_size(bd), IMG_SIZE + 4096 + 512);
    assert_int_equal(blockdev_write_zeroes(bd, IMG_SIZE + 8192, 100, 0), 0);
    assert_int_equal(blockdev_size(bd), IMG_SIZE + 8192 + 100);
    blockdev_close(bd);
    after = bt_read_file(f->path, &len);
    assert_int_equal(len, IMG_SIZE + 8192 + 100);
    assert_memory_equal(before, after, IMG_SIZE);
    assert_true(bt_is_zero(after + IMG_SIZE, 4096));
    assert_int_equal(after[IMG_SIZE + 4096], 1);
    assert_true(bt_is_zero(after + IMG_SIZE + 4096 + 512, 8192 + 100 - 4608));
    free(after);
    free(before);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_aio_roundtrip, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_blocking_without_iothread, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_short_read_at_eof, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_discard_and_zero, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_discard_ignore, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_truncate_extents_cache_ioctl,
                                        setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_readonly_and_bounds, setup,
                                        bt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
