/* tlbd: helpers shared by the blockdrv unit tests (header only; each test
 * file is its own executable).
 *
 * Temporary files live under $TLBD_TEST_DIR or else /var/tmp, which is
 * disk-backed (ext4 on the development machines), so O_DIRECT, fallocate
 * and SEEK_DATA behave as on a real image; /tmp may be tmpfs.
 */
#ifndef TLBD_BLOCKDRV_TEST_H
#define TLBD_BLOCKDRV_TEST_H

#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"

/* For tests that mount things: returns false (the caller skips) unless
 * root; under CI=true a missing privilege fails instead.  Moves the process
 * into a private mount namespace, so whatever it mounts vanishes with it
 * even if a test dies before its teardown; call it before any thread
 * starts.
 */
static inline bool
bt_private_mounts(void)
{
    if (geteuid() != 0) {
        const char *ci = getenv("CI");
        fprintf(stderr, "needs root to mount file systems\n");
        if (ci && strcmp(ci, "true") == 0) {
            exit(EXIT_FAILURE);
        }
        return false;
    }
    if (unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        perror("unshare/mount private");
        exit(EXIT_FAILURE);
    }
    return true;
}

/* A fresh directory for one test; free the result after bt_rmdir. */
static inline char *
bt_tmpdir(void)
{
    const char *base = getenv("TLBD_TEST_DIR");
    char *dir = NULL;

    if (!base || !*base) {
        base = "/var/tmp";
    }
    assert_true(asprintf(&dir, "%s/tlbd-blockdrv.XXXXXX", base) > 0);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static inline int
bt_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void
bt_rmdir(const char *dir)
{
    nftw(dir, bt_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *
bt_path(const char *dir, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

/* Deterministic bytes: the same SEED and offset always give the same.
 * Built a word at a time (byte X of the image is byte X % 8 of word X / 8),
 * so the sanitizer builds fill large buffers quickly.
 */
static inline uint64_t
bt_pattern_word(uint64_t index, unsigned seed)
{
    uint64_t z = index * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 31)) * 0x94d049bb133111ebull;
    return z ^ (z >> 29);
}

static inline void
bt_pattern(void *buf, size_t len, uint64_t offset, unsigned seed)
{
    uint8_t *p = buf;
    size_t i = 0;

    while (i < len) {
        uint64_t x = offset + i;
        uint64_t w = bt_pattern_word(x / 8, seed);
        size_t skip = (size_t)(x % 8);
        size_t n = 8 - skip < len - i ? 8 - skip : len - i;
        memcpy(p + i, (uint8_t *)&w + skip, n);
        i += n;
    }
}

/* Create PATH with SIZE bytes of pattern SEED (0: leave it sparse). */
static inline void
bt_make_file(const char *path, size_t size, unsigned seed)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    if (seed) {
        uint8_t *buf = malloc(size ? size : 1);
        bt_pattern(buf, size, 0, seed);
        assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
        free(buf);
    } else {
        assert_int_equal(ftruncate(fd, (off_t)size), 0);
    }
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* The whole file, malloc'd; *LEN gets its size. */
static inline uint8_t *
bt_read_file(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    uint8_t *buf;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0),
                     (ssize_t)st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static inline bool
bt_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

static inline uint64_t
bt_st_blocks(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks;
}

/* What most tests start from: a fresh directory, an image in it, and a
 * running IOThread.
 */
typedef struct BtFixture {
    char *dir;
    char *path; /* NAME in dir; NULL without a NAME */
    IOThread *io;
} BtFixture;

/* Fill F: an image NAME of SIZE bytes of pattern SEED (0: sparse). */
static inline void
bt_fixture_init(BtFixture *f, const char *name, size_t size, unsigned seed)
{
    f->dir = bt_tmpdir();
    f->path = name ? bt_path(f->dir, name) : NULL;
    if (name) {
        bt_make_file(f->path, size, seed);
    }
    assert_int_equal(iothread_new("test", &f->io), 0);
    assert_int_equal(iothread_start(f->io), 0);
}

static inline void
bt_fixture_destroy(BtFixture *f)
{
    iothread_free(f->io);
    bt_rmdir(f->dir);
    free(f->path);
    free(f->dir);
}

static inline BtFixture *
bt_fixture_new(const char *name, size_t size, unsigned seed)
{
    BtFixture *f = calloc(1, sizeof(*f));
    bt_fixture_init(f, name, size, seed);
    return f;
}

/* A cmocka teardown for a BtFixture from bt_fixture_new. */
static inline int
bt_teardown(void **state)
{
    bt_fixture_destroy(*state);
    free(*state);
    return 0;
}

/* Open PATH with a volatile cache of CACHE bytes, the rule RULE (NULL:
 * none) and OFFLOAD; assert success.
 */
static inline BlockDev *
bt_open_cached(const char *path, const char *cache, const char *rule,
               BlockDevOffload offload)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;

    blockdev_options_init(&opts);
    opts.offload = offload;
    assert_int_equal(
        blockdev_parse_option(&opts, "volatile-cache", cache, &msg), 0);
    if (rule) {
        assert_int_equal(blockdev_parse_option(&opts, "powercut", rule, &msg),
                         0);
    }
    assert_int_equal(blockdev_open(path, &opts, &bd, &msg), 0);
    assert_null(msg);
    return bd;
}

/* Open PATH with default options plus QUEUE and IO; assert success. */
static inline BlockDev *
bt_open(const char *path, bool readonly, BlockDevCache cache, IOThread *io)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;
    int ret;

    blockdev_options_init(&opts);
    opts.readonly = readonly;
    opts.cache = cache;
    opts.iothread = io;
    ret = blockdev_open(path, &opts, &bd, &msg);
    if (ret < 0) {
        fprintf(stderr, "blockdev_open: %s\n", msg ? msg : "?");
    }
    assert_int_equal(ret, 0);
    assert_null(msg);
    return bd;
}

/* An aio completion that records its result and wakes a waiter. */
typedef struct BtWait {
    sem_t sem;
    _Atomic int64_t ret;
    IOThread *io; /* if set, the callback must run there */
    _Atomic int wrong_thread;
    _Atomic int calls;
} BtWait;

static inline void
bt_wait_init(BtWait *w, IOThread *io)
{
    memset(w, 0, sizeof(*w));
    sem_init(&w->sem, 0, 0);
    w->io = io;
}

static inline void
bt_wait_cb(void *opaque, int64_t ret)
{
    BtWait *w = opaque;
    if (w->io && !iothread_is_current(w->io)) {
        atomic_fetch_add(&w->wrong_thread, 1);
    }
    atomic_store(&w->ret, ret);
    atomic_fetch_add(&w->calls, 1);
    sem_post(&w->sem);
}

static inline int64_t
bt_wait(BtWait *w)
{
    while (sem_wait(&w->sem) < 0) {
    }
    assert_int_equal(atomic_load(&w->wrong_thread), 0);
    return atomic_load(&w->ret);
}

#endif /* TLBD_BLOCKDRV_TEST_H */
