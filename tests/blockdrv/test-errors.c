/* tlbd: real errors from the kernel reaching the caller as -errno: ENOSPC
 * from a full 256 KiB tmpfs (mounted under a mktemp directory in a private
 * mount namespace, unmounted in teardown), EFBIG from RLIMIT_FSIZE, and
 * ENOTSUP from tmpfs, which has no FALLOC_FL_ZERO_RANGE: the capability is
 * remembered and write-zeroes uses the next method.  ramfs refuses
 * O_DIRECT: cache=none falls back to writeback with a warning.  Needs
 * root.
 */
#include "blockdrv-test.h"

#include <signal.h>
#include <sys/resource.h>

#include "paio.h"

typedef struct Fixture {
    BtFixture b; /* its dir is on /var/tmp */
    char *mnt;   /* the tmpfs */
} Fixture;

static int
setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    bt_fixture_init(&f->b, NULL, 0, 0);
    f->mnt = bt_path(f->b.dir, "mnt");
    assert_int_equal(mkdir(f->mnt, 0700), 0);
    assert_int_equal(
        mount("tlbd-test", f->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k"),
        0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    Fixture *f = *state;
    char *ram = bt_path(f->b.dir, "ram");
    umount2(f->mnt, MNT_DETACH);
    umount2(ram, MNT_DETACH); /* if test_direct_refused failed early */
    free(ram);
    bt_fixture_destroy(&f->b);
    free(f->mnt);
    free(f);
    return 0;
}

/* A sparse 4 MiB image on a 256 KiB file system: writes into the holes
 * run out of space, and each failure reaches the callback as -ENOSPC.
 */
static void
test_enospc(void **state)
{
    Fixture *f = *state;
    char *path = bt_path(f->mnt, "thin.img");
    BlockDev *bd;
    static uint8_t buf[65536];
    uint8_t back[65536];
    struct iovec iov = { buf, sizeof(buf) };
    int64_t ret = 0;
    uint64_t off;
    BtWait w;

    bt_make_file(path, 4 << 20, 0);
    bd = bt_open(path, false, BLOCKDEV_CACHE_WRITEBACK, f->b.io);
    for (off = 0; off < (4u << 20); off += sizeof(buf)) {
        bt_pattern(buf, sizeof(buf), off, 9);
        bt_wait_init(&w, f->b.io);
        assert_int_equal(
            blockdev_aio_pwritev(bd, off, &iov, 1, 0, bt_wait_cb, &w), 0);
        ret = bt_wait(&w);
        if (ret < 0) {
            break;
        }
        assert_int_equal(ret, sizeof(buf));
    }
    assert_int_equal(ret, -ENOSPC);
    assert_true(off > 0 && off < (4u << 20));
    /* What was acknowledged is there. */
    assert_int_equal(blockdev_pread(bd, back, sizeof(back), 0), sizeof(back));
    bt_pattern(buf, sizeof(buf), 0, 9);
    assert_memory_equal(back, buf, sizeof(back));
    /* Write-zeroes without a hole must allocate: no space either. */
    assert_int_equal(blockdev_write_zeroes(bd, 3 << 20, 1 << 20, 0), -ENOSPC);
    /* Freeing space by discard lets writes go on. */
    assert_int_equal(blockdev_discard(bd, 0, off, 0), 0);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 3 << 20, 0),
                     sizeof(buf));
    BlockDevStats st;
    blockdev_get_stats(bd, &st);
    assert_int_equal(st.errors, 2);
    blockdev_close(bd);
    free(path);
}

/* RLIMIT_FSIZE: a growable image cannot pass the limit; a write that
 * straddles it fails as a whole with -EFBIG.
 */
static void
test_efbig(void **state)
{
    Fixture *f = *state;
    char *path = bt_path(f->b.dir, "limit.img");
    struct rlimit old, lim;
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    uint8_t buf[8192];
    BtWait w;
    struct iovec iov = { buf, sizeof(buf) };

    bt_make_file(path, 65536, 4);
    blockdev_options_init(&opts);
    opts.growable = true;
    opts.iothread = f->b.io;
    assert_int_equal(blockdev_open(path, &opts, &bd, NULL), 0);
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 100000;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    memset(buf, 0x77, sizeof(buf));
    bt_wait_init(&w, f->b.io);
    assert_int_equal(
        blockdev_aio_pwritev(bd, 96000, &iov, 1, 0, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), -EFBIG);
    bt_wait_init(&w, f->b.io);
    assert_int_equal(
        blockdev_aio_pwritev(bd, 200000, &iov, 1, 0, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), -EFBIG);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 65536, 0),
                     sizeof(buf));

    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    blockdev_close(bd);
    free(path);
}

/* tmpfs refuses FALLOC_FL_ZERO_RANGE: the first write-zeroes learns it,
 * falls back to punch + allocate, and later ones skip straight there.
 */
static void
test_enotsup_remembered(void **state)
{
    Fixture *f = *state;
    char *path = bt_path(f->mnt, "z.img");
    PaioDevConfig cfg = { 0 };
    PaioDev *dev;
    PaioRequest req;
    uint8_t buf[16384];
    int fd;

    bt_make_file(path, 65536, 8);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    cfg.fd = fd;
    cfg.size = 65536;
    assert_int_equal(paio_dev_new(&cfg, &dev), 0);
    assert_true(paio_dev_caps(dev) & PAIO_CAP_ZERO_RANGE);
    for (int i = 0; i < 2; i++) {
        memset(&req, 0, sizeof(req));
        req.type = PAIO_WRITE_ZEROES;
        req.offset = 4096 + (uint64_t)i * 16384;
        req.flags = PAIO_NO_FALLBACK;
        req.u.range.length = 16384;
        assert_int_equal(paio_run(dev, &req, i ? f->b.io : NULL), 0);
        assert_false(paio_dev_caps(dev) & PAIO_CAP_ZERO_RANGE);
        assert_true(paio_dev_caps(dev) & PAIO_CAP_PUNCH_ZERO);
        assert_int_equal(pread(fd, buf, sizeof(buf), (off_t)req.offset),
                         sizeof(buf));
        assert_true(bt_is_zero(buf, sizeof(buf)));
    }
    paio_dev_free(dev);
    close(fd);
    free(path);
}

static void
test_direct_refused(void **state)
{
    Fixture *f = *state;
    char *ram = bt_path(f->b.dir, "ram");
    char *path = bt_path(ram, "r.img");
    char *want = NULL;
    BlockDev *bd;
    uint8_t buf[1000], back[1000];

    assert_int_equal(mkdir(ram, 0700), 0);
    assert_int_equal(mount("tlbd-test", ram, "ramfs", 0, NULL), 0);
    bt_make_file(path, 65536, 12);
    bd = bt_open(path, false, BLOCKDEV_CACHE_NONE, f->b.io);
    assert_false(blockdev_is_direct(bd));
    assert_int_equal(blockdev_alignment(bd), 1);
    assert_true(asprintf(&want,
                         "'%s': the file system refuses O_DIRECT; "
                         "cache=none falls back to writeback",
                         path) > 0);
    assert_string_equal(blockdev_warning(bd), want);
    bt_pattern(buf, sizeof(buf), 0, 1);
    assert_int_equal(blockdev_pwrite(bd, buf + 1, 999, 3, BLOCKDEV_FUA), 999);
    assert_int_equal(blockdev_pread(bd, back, 999, 3), 999);
    assert_memory_equal(back, buf + 1, 999);
    blockdev_close(bd);
    /* A normal open has no warning. */
    bd = bt_open(path, false, BLOCKDEV_CACHE_WRITEBACK, f->b.io);
    assert_null(blockdev_warning(bd));
    blockdev_close(bd);
    umount2(ram, MNT_DETACH);
    free(want);
    free(path);
    free(ram);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_efbig, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enotsup_remembered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_direct_refused, setup, teardown),
    };
    if (!bt_private_mounts()) {
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
