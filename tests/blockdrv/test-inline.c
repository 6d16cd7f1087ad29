/* tlbd: requests that run on the caller's thread (paio_try_inline) and the
 * ones that must not: a private tmpfs, where reads, writes and flushes run
 * inline; inline-max=0, where nothing does; requests that are too large,
 * reach past the end or meet injection rules, which go to the pool; and a
 * disk-backed file, where a read runs inline only while the page cache
 * holds its data (RWF_NOWAIT) and falls back to the pool after the pages
 * were dropped; BLOCKDEV_MAY_WAIT lets a write of any size run there, and
 * a buffered one even where the file system refuses RWF_NOWAIT.  With a
 * volatile cache only a write it holds at once runs inline: not a read,
 * not FUA, not one that needs room, not the one a rule cuts at.
 * offload=never runs every request of the blocking forms
 * on the caller's thread, injection and errors included, and offload=always
 * none.  Every path is checked for the data it moves.
 */
#include "blockdrv-test.h"

#include <linux/magic.h>
#include <sys/vfs.h>

enum { IMG_SIZE = 4 << 20, BIG = 1 << 20 };

typedef struct Fixture {
    BtFixture bt;
    char *mnt;     /* a tmpfs, or NULL when the test may not mount */
    char *mempath; /* image on it */
} Fixture;

static int
setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));

    bt_fixture_init(&f->bt, "disk.img", IMG_SIZE, 11);
    f->mnt = bt_path(f->bt.dir, "mnt");
    assert_int_equal(mkdir(f->mnt, 0755), 0);
    assert_int_equal(mount("tmpfs", f->mnt, "tmpfs", 0, "size=64M"), 0);
    f->mempath = bt_path(f->mnt, "mem.img");
    bt_make_file(f->mempath, IMG_SIZE, 12);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    Fixture *f = *state;

    assert_int_equal(umount(f->mnt), 0);
    free(f->mempath);
    free(f->mnt);
    bt_fixture_destroy(&f->bt);
    free(f);
    return 0;
}

/* Open PATH with INLINE_MAX and OFFLOAD (a value of the offload option) on
 * queue Q (NULL: the global one), aio callbacks on IO.
 */
static BlockDev *
open_with(const char *path, uint32_t inline_max, const char *offload,
          ThreadletQueue *q, IOThread *io)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;

    blockdev_options_init(&opts);
    assert_int_equal(opts.inline_max, BLOCKDEV_INLINE_MAX_DEFAULT);
    assert_int_equal(blockdev_parse_option(&opts, "offload", offload, &msg), 0);
    opts.inline_max = inline_max;
    opts.queue = q;
    opts.iothread = io;
    assert_int_equal(blockdev_open(path, &opts, &bd, &msg), 0);
    assert_null(msg);
    return bd;
}

static BlockDev *
open_inline(const char *path, uint32_t inline_max, IOThread *io)
{
    return open_with(path, inline_max, "blocking", NULL, io);
}

static uint64_t
inline_ops(BlockDev *bd)
{
    BlockDevStats st;
    blockdev_get_stats(bd, &st);
    return st.inline_ops;
}

/* What is at OFFSET in the file, read around tlbd. */
static void
assert_file_has(const char *path, uint64_t offset, const void *want, size_t len)
{
    uint8_t *got = malloc(len);
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, got, len, (off_t)offset), (ssize_t)len);
    assert_memory_equal(got, want, len);
    close(fd);
    free(got);
}

static void
test_tmpfs_inline(void **state)
{
    Fixture *f = *state;
    BlockDev *bd =
        open_inline(f->mempath, BLOCKDEV_INLINE_MAX_DEFAULT, f->bt.io);
    uint8_t buf[4096], want[4096];
    uint8_t *big = malloc(BIG);
    struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
    int64_t ret = 0;
    int fret = -1;
    BlockDevStats st;

    /* Blocking forms: write, read back, flush, all on this thread. */
    bt_pattern(want, sizeof(want), 8192, 77);
    assert_int_equal(blockdev_pwrite(bd, want, sizeof(want), 8192, 0), 4096);
    assert_int_equal(inline_ops(bd), 1);
    assert_file_has(f->mempath, 8192, want, sizeof(want));
    memset(buf, 0, sizeof(buf));
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 8192), 4096);
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(blockdev_flush(bd), 0);
    assert_int_equal(inline_ops(bd), 3);

    /* The try forms, a FUA write included. */
    memset(buf, 0, sizeof(buf));
    assert_true(blockdev_try_preadv(bd, 8192, &v, 1, &ret));
    assert_int_equal(ret, 4096);
    assert_memory_equal(buf, want, sizeof(want));
    bt_pattern(buf, sizeof(buf), 0, 78);
    assert_true(blockdev_try_pwritev(bd, 0, &v, 1, BLOCKDEV_FUA, &ret));
    assert_int_equal(ret, 4096);
    assert_file_has(f->mempath, 0, buf, sizeof(buf));
    assert_true(blockdev_try_flush(bd, &fret));
    assert_int_equal(fret, 0);
    assert_int_equal(inline_ops(bd), 6);

    /* A read that ends past the end is zero-filled inline, as on a worker. */
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), IMG_SIZE - 1024),
                     4096);
    bt_pattern(want, 1024, IMG_SIZE - 1024, 12);
    assert_memory_equal(buf, want, 1024);
    assert_true(bt_is_zero(buf + 1024, 3072));
    assert_int_equal(inline_ops(bd), 7);

    /* Larger than inline_max: the pool, with the same result. */
    bt_pattern(big, BIG, BIG, 79);
    assert_int_equal(blockdev_pwrite(bd, big, BIG, BIG, 0), BIG);
    assert_file_has(f->mempath, BIG, big, BIG);
    v.iov_base = big;
    v.iov_len = BIG;
    assert_false(blockdev_try_preadv(bd, 0, &v, 1, &ret));
    assert_int_equal(inline_ops(bd), 7);

    /* Past the end: not inline, and the pool refuses it. */
    v.iov_base = buf;
    v.iov_len = sizeof(buf);
    assert_false(blockdev_try_pwritev(bd, IMG_SIZE - 1024, &v, 1, 0, &ret));
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), IMG_SIZE - 1024, 0),
                     -ENOSPC);
    assert_int_equal(inline_ops(bd), 7);

    /* Injection rules run on workers only: nothing inline while set. */
    assert_int_equal(blockdev_set_inject(bd, "read:eio:once", NULL), 0);
    assert_false(blockdev_try_preadv(bd, 0, &v, 1, &ret));
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), -EIO);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 4096);
    assert_int_equal(blockdev_set_inject(bd, NULL, NULL), 0);
    assert_true(blockdev_try_preadv(bd, 0, &v, 1, &ret));
    assert_int_equal(inline_ops(bd), 8);

    blockdev_get_stats(bd, &st);
    assert_int_equal(st.writes, 4);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.in_flight, 0);
    blockdev_close(bd);
    free(big);
}

static void
test_inline_off(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = open_inline(f->mempath, 0, f->bt.io);
    uint8_t buf[4096], want[4096];
    struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
    int64_t ret = 0;
    int fret = 0;

    assert_false(blockdev_try_preadv(bd, 0, &v, 1, &ret));
    assert_false(blockdev_try_pwritev(bd, 0, &v, 1, 0, &ret));
    assert_false(blockdev_try_flush(bd, &fret));
    bt_pattern(want, sizeof(want), 4096, 80);
    assert_int_equal(blockdev_pwrite(bd, want, sizeof(want), 4096, 0), 4096);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 4096), 4096);
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(blockdev_flush(bd), 0);
    assert_int_equal(inline_ops(bd), 0);
    blockdev_close(bd);
}

static uint64_t
pool_submitted(ThreadletQueue *q)
{
    ThreadletStats st;
    threadlet_queue_get_stats(q, &st);
    return st.submitted;
}

static bool dir_on_mem_fs(const char *dir);

/* BLOCKDEV_MAY_WAIT, for a caller with nothing else in flight: a write of
 * any size may run here, and on a buffered regular file even where the
 * file system refuses RWF_NOWAIT (ext4) as a plain pwritev; never with
 * FUA, O_DIRECT or inline-max=0.
 */
static void
test_may_wait(void **state)
{
    Fixture *f = *state;
    bool memfs = dir_on_mem_fs(f->bt.dir);
    BlockDev *bd =
        open_inline(f->bt.path, BLOCKDEV_INLINE_MAX_DEFAULT, f->bt.io);
    uint8_t *big = malloc(BIG);
    struct iovec v = { .iov_base = big, .iov_len = BIG };
    struct statfs sfs;
    int64_t ret = 0;

    assert_int_equal(statfs(f->bt.dir, &sfs), 0);
    bt_pattern(big, BIG, BIG, 95);
    /* Larger than inline-max: only with MAY_WAIT. */
    assert_false(blockdev_try_pwritev(bd, BIG, &v, 1, 0, &ret));
    for (int i = 0; i < 2; i++) { /* the first one also meets ext4's refusal */
        bool done =
            blockdev_try_pwritev(bd, BIG, &v, 1, BLOCKDEV_MAY_WAIT, &ret);
        if (sfs.f_type == EXT4_SUPER_MAGIC || memfs) {
            assert_true(done);
        }
        if (done) {
            assert_int_equal(ret, BIG);
        } else {
            assert_int_equal(blockdev_pwrite(bd, big, BIG, BIG, 0), BIG);
        }
        assert_file_has(f->bt.path, BIG, big, BIG);
        bt_pattern(big, BIG, BIG, 96);
    }
    if (!memfs) {
        assert_false(blockdev_try_pwritev(
            bd, BIG, &v, 1, BLOCKDEV_MAY_WAIT | BLOCKDEV_FUA, &ret));
    }
    blockdev_close(bd);

    bd = open_inline(f->bt.path, 0, f->bt.io);
    assert_false(blockdev_try_pwritev(bd, BIG, &v, 1, BLOCKDEV_MAY_WAIT, &ret));
    blockdev_close(bd);

    if (!memfs) {
        BlockDevOptions opts;
        char *msg = NULL;

        blockdev_options_init(&opts);
        opts.cache = BLOCKDEV_CACHE_NONE;
        opts.iothread = f->bt.io;
        assert_int_equal(blockdev_open(f->bt.path, &opts, &bd, &msg), 0);
        free(msg);
        if (blockdev_is_direct(bd)) {
            assert_false(
                blockdev_try_pwritev(bd, BIG, &v, 1, BLOCKDEV_MAY_WAIT, &ret));
        }
        blockdev_close(bd);
    }
    free(big);
}

/* offload=never on a disk-backed file: every blocking request runs on this
 * thread, even those that may wait on the device; aio requests still go to
 * the pool.
 */
static void
test_offload_never(void **state)
{
    Fixture *f = *state;
    ThreadletQueue q;
    BlockDev *bd;
    uint8_t buf[4096], want[4096];
    struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
    BlockDevStats st;
    BtWait w;

    assert_int_equal(threadlet_queue_init_named(&q, "offl", 2, 0), 0);
    bd = open_with(f->bt.path, BLOCKDEV_INLINE_MAX_DEFAULT, "never", &q,
                   f->bt.io);
    uint64_t before = pool_submitted(&q); /* the open's probes, if any */

    bt_pattern(want, sizeof(want), 12288, 90);
    assert_int_equal(
        blockdev_pwrite(bd, want, sizeof(want), 12288, BLOCKDEV_FUA), 4096);
    assert_file_has(f->bt.path, 12288, want, sizeof(want));
    memset(buf, 0, sizeof(buf));
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 12288), 4096);
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(blockdev_flush(bd), 0);
    assert_int_equal(blockdev_write_zeroes(bd, 12288, 4096, 0), 0);
    assert_file_has(f->bt.path, 12288, (uint8_t[4096]){ 0 }, 4096);
    /* Errors and injection reach the caller the same way. */
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), IMG_SIZE - 1024, 0),
                     -ENOSPC);
    assert_int_equal(blockdev_set_inject(bd, "read:eio:once", NULL), 0);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), -EIO);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 4096);
    assert_int_equal(blockdev_set_inject(bd, NULL, NULL), 0);
    assert_int_equal(pool_submitted(&q), before);

    blockdev_get_stats(bd, &st);
    assert_int_equal(st.inline_ops, 7);
    assert_int_equal(st.reads, 3);
    assert_int_equal(st.writes, 2);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.in_flight, 0);

    /* The aio form goes to the pool, callback on the IOThread. */
    bt_wait_init(&w, f->bt.io);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(blockdev_aio_preadv(bd, 12288, &v, 1, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 4096);
    assert_true(bt_is_zero(buf, sizeof(buf)));
    assert_true(pool_submitted(&q) > before);

    blockdev_close(bd);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
}

/* offload=always on tmpfs: nothing runs inline, all of it on the pool. */
static void
test_offload_always(void **state)
{
    Fixture *f = *state;
    ThreadletQueue q;
    BlockDev *bd;
    uint8_t buf[4096], want[4096];
    struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
    int64_t ret = 0;

    assert_int_equal(threadlet_queue_init_named(&q, "offl", 2, 0), 0);
    bd = open_with(f->mempath, BLOCKDEV_INLINE_MAX_DEFAULT, "always", &q,
                   f->bt.io);
    uint64_t before = pool_submitted(&q);

    assert_false(blockdev_try_preadv(bd, 0, &v, 1, &ret));
    bt_pattern(want, sizeof(want), 4096, 91);
    assert_int_equal(blockdev_pwrite(bd, want, sizeof(want), 4096, 0), 4096);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 4096), 4096);
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(blockdev_flush(bd), 0);
    assert_int_equal(inline_ops(bd), 0);
    assert_int_equal(pool_submitted(&q), before + 3);

    blockdev_close(bd);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
}

static bool
dir_on_mem_fs(const char *dir)
{
    struct statfs sfs;
    assert_int_equal(statfs(dir, &sfs), 0);
    return sfs.f_type == TMPFS_MAGIC || sfs.f_type == (long)RAMFS_MAGIC;
}

/* RWF_NOWAIT also gives up on a cached page that is locked for a moment
 * (writeback starting, say), so a cached read gets a few chances.
 */
static bool
try_read_cached(BlockDev *bd, uint64_t offset, struct iovec *v, int64_t *ret)
{
    for (int i = 0; i < 100; i++) {
        if (blockdev_try_preadv(bd, offset, v, 1, ret)) {
            return true;
        }
        usleep(10000);
    }
    return false;
}

static void
test_disk_nowait(void **state)
{
    Fixture *f = *state;
    BlockDev *bd =
        open_inline(f->bt.path, BLOCKDEV_INLINE_MAX_DEFAULT, f->bt.io);
    bool memfs = dir_on_mem_fs(f->bt.dir);
    uint8_t buf[4096], want[4096];
    struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
    int64_t ret = 0;
    uint64_t before;
    int fd = open(f->bt.path, O_RDONLY);

    assert_true(IMG_SIZE >= 9 * 384 * 1024);

    assert_true(fd >= 0);
    bt_pattern(want, sizeof(want), 65536, 11);

    /* Written a moment ago, so cached: inline. */
    memset(buf, 0, sizeof(buf));
    assert_true(try_read_cached(bd, 65536, &v, &ret));
    assert_int_equal(ret, 4096);
    assert_memory_equal(buf, want, sizeof(want));

    /* Dropped from the page cache: the blocking read's attempt fails, it
     * goes to the pool and still returns the data; a try alone does
     * nothing (unless the test directory is itself in memory).  Dropping
     * pages is best effort (a page still in another CPU's LRU batch
     * stays), and a failed attempt may start readahead, so each check
     * gets several offsets, far apart, and must succeed on one of them.
     */
    if (memfs) {
        assert_true(blockdev_try_preadv(bd, 3 << 20, &v, 1, &ret));
    } else {
        bool pooled = false, refused = false;
        for (int i = 0; i < 8 && !(pooled && refused); i++) {
            uint64_t off = (uint64_t)(i + 1) * 384 * 1024;
            uint8_t exp[4096];

            assert_int_equal(fdatasync(fd), 0);
            assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
            before = inline_ops(bd);
            bt_pattern(exp, sizeof(exp), off, 11);
            memset(buf, 0, sizeof(buf));
            assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), off), 4096);
            assert_memory_equal(buf, exp, sizeof(exp));
            pooled |= inline_ops(bd) == before;

            memset(buf, 0, sizeof(buf));
            if (!blockdev_try_preadv(bd, off + 192 * 1024, &v, 1, &ret)) {
                assert_true(bt_is_zero(buf, sizeof(buf)));
                refused = true;
            }
        }
        assert_true(pooled);
        assert_true(refused);
    }
    /* Cached: inline. */
    memset(buf, 0, sizeof(buf));
    assert_true(try_read_cached(bd, 65536, &v, &ret));
    assert_memory_equal(buf, want, sizeof(want));

    /* A write may or may not be accepted without waiting, depending on the
     * file system; either way it lands.
     */
    bt_pattern(buf, sizeof(buf), 0, 81);
    if (!blockdev_try_pwritev(bd, 0, &v, 1, 0, &ret)) {
        assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 0, 0), 4096);
    } else {
        assert_int_equal(ret, 4096);
    }
    assert_int_equal(blockdev_flush(bd), 0);
    assert_file_has(f->bt.path, 0, buf, sizeof(buf));

    /* Aio requests are untouched by all this: the callback on the IOThread. */
    BtWait w;
    bt_wait_init(&w, f->bt.io);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(blockdev_aio_preadv(bd, 65536, &v, 1, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), 4096);
    assert_memory_equal(buf, want, sizeof(want));

    close(fd);
    blockdev_close(bd);
}

static void
test_vcache_inline(void **state)
{
    Fixture *f = *state;
    BlockDev *bd =
        bt_open_cached(f->bt.path, "16k", NULL, BLOCKDEV_OFFLOAD_BLOCKING);
    uint8_t buf[4096], want[4096], old[4096];
    struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
    int64_t ret = 0;
    int n = 0;
    int fd = open(f->bt.path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, old, sizeof(old), 0), (ssize_t)sizeof(old));
    close(fd);
    bt_pattern(want, sizeof(want), 0, 99);
    memcpy(buf, want, sizeof(buf));
    /* in the cache, on this thread; the image has not changed */
    assert_true(blockdev_try_pwritev(bd, 0, &v, 1, 0, &ret));
    assert_int_equal(ret, 4096);
    assert_int_equal(inline_ops(bd), 1);
    assert_file_has(f->bt.path, 0, old, sizeof(old));
    /* a read and a FUA write touch the image: the pool's */
    assert_false(blockdev_try_preadv(bd, 0, &v, 1, &ret));
    assert_false(blockdev_try_pwritev(bd, 4096, &v, 1, BLOCKDEV_FUA, &ret));
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 4096);
    assert_memory_equal(buf, want, sizeof(want));
    /* until the cache is full: then room must be made, by the pool */
    while (blockdev_try_pwritev(bd, 8192 * (n + 1), &v, 1, 0, &ret)) {
        n++;
        assert_true(n < 4);
    }
    assert_int_equal(n, 2); /* 16k holds three 4k writes */
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 65536, 0), 4096);
    assert_int_equal(inline_ops(bd), 3);
    blockdev_close(bd);

    /* the write a rule cuts at is not taken inline: the cut writes */
    bd = bt_open_cached(f->bt.path, "64k", "after-writes=2,mode=all",
                        BLOCKDEV_OFFLOAD_BLOCKING);
    assert_true(blockdev_try_pwritev(bd, 0, &v, 1, 0, &ret));
    assert_false(blockdev_try_pwritev(bd, 4096, &v, 1, 0, &ret));
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 4096, 0), 4096);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 8192, 0), -EIO);
    assert_false(blockdev_try_pwritev(bd, 12288, &v, 1, 0, &ret));
    blockdev_close(bd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tmpfs_inline),
        cmocka_unit_test(test_inline_off),
        cmocka_unit_test(test_disk_nowait),
        cmocka_unit_test(test_may_wait),
        cmocka_unit_test(test_offload_never),
        cmocka_unit_test(test_offload_always),
        cmocka_unit_test(test_vcache_inline),
    };

    if (!bt_private_mounts()) {
        return 77;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
