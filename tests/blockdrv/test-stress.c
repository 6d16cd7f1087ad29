/* tlbd: 100,000 random mixed requests (reads, writes with several segments
 * and FUA, write-zeroes, discards, flushes; blocking and aio) from several
 * threads against one BlockDev, checked against an in-memory shadow copy:
 * every read must match, and the image must equal the shadow byte for byte
 * at the end.  Part of the run uses cache=none, so misaligned O_DIRECT
 * read-modify-writes race with their neighbours.  A thread holds stripe
 * locks over the range of its request, so the shadow's order is the disk's
 * order; requests of different threads still run in parallel on the pool.
 * TLBD_STRESS_OPS changes the number of requests (default 100000).
 */
#include "blockdrv-test.h"

#include <inttypes.h>
#include <pthread.h>

enum {
    IMG_SIZE = 4 << 20,
    STRIPE = 4000, /* not a block multiple: neighbours share blocks */
    NSTRIPES = IMG_SIZE / STRIPE + 1,
    NTHREADS = 4,
};

typedef struct Shared {
    BlockDev *bd;
    IOThread *io;
    uint8_t *shadow;
    pthread_mutex_t stripes[NSTRIPES];
    unsigned max_len;
    long ops; /* per thread */
    unsigned seed;
    _Atomic long failures;
} Shared;

typedef struct Worker {
    Shared *s;
    unsigned id;
    pthread_t thread;
    uint64_t rng;
} Worker;

static uint64_t
rnd(Worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void
lock_range(Shared *s, uint64_t off, uint64_t len, bool lock)
{
    for (uint64_t i = off / STRIPE; i <= (off + len - 1) / STRIPE; i++) {
        if (lock) {
            pthread_mutex_lock(&s->stripes[i]);
        } else {
            pthread_mutex_unlock(&s->stripes[i]);
        }
    }
}

static void
report(Shared *s, const char *what, uint64_t off, uint64_t len, int64_t ret)
{
    if (atomic_fetch_add(&s->failures, 1) < 10) {
        fprintf(stderr, "%s at %" PRIu64 "+%" PRIu64 ": %" PRId64 "\n", what,
                off, len, ret);
    }
}

/* One aio request, waited for; the callback runs on the IOThread. */
static int64_t
aio_rw(Worker *w, bool write, uint64_t off, struct iovec *iov, int niov)
{
    BtWait done;
    int ret;

    bt_wait_init(&done, w->s->io);
    ret = write ? blockdev_aio_pwritev(w->s->bd, off, iov, niov, 0, bt_wait_cb,
                                       &done)
                : blockdev_aio_preadv(w->s->bd, off, iov, niov, bt_wait_cb,
                                      &done);
    if (ret < 0) {
        return ret;
    }
    return bt_wait(&done);
}

static void *
worker_main(void *opaque)
{
    Worker *w = opaque;
    Shared *s = w->s;
    uint8_t *buf = malloc(s->max_len + 64);
    struct iovec iov[4];

    for (long n = 0; n < s->ops; n++) {
        uint64_t len = 1 + rnd(w) % s->max_len;
        uint64_t off = rnd(w) % (IMG_SIZE - len);
        unsigned kind = (unsigned)(rnd(w) % 1000); /* per mille */
        uint8_t *p = buf + rnd(w) % 64;            /* often misaligned */
        int niov = 1 + (int)(rnd(w) % 4);
        int64_t ret;

        /* Split P into NIOV segments. */
        uint64_t left = len, pos = 0;
        for (int i = 0; i < niov; i++) {
            uint64_t seg = i == niov - 1 ? left : rnd(w) % (left + 1);
            iov[i].iov_base = p + pos;
            iov[i].iov_len = seg;
            pos += seg;
            left -= seg;
        }
        if (kind < 5) { /* flushes are slow: few */
            ret = blockdev_flush(s->bd);
            if (ret != 0) {
                report(s, "flush", 0, 0, ret);
            }
            continue;
        }
        lock_range(s, off, len, true);
        if (kind < 450) {
            ret = kind < 150 ? aio_rw(w, false, off, iov, niov)
                             : blockdev_preadv(s->bd, iov, niov, off);
            if (ret != (int64_t)len || memcmp(p, s->shadow + off, len) != 0) {
                report(s, "read", off, len, ret);
            }
        } else if (kind < 850) {
            bt_pattern(p, len, off, (unsigned)(n * NTHREADS + w->id));
            ret = kind < 550 ? aio_rw(w, true, off, iov, niov)
                             : blockdev_pwritev(s->bd, iov, niov, off,
                                                kind < 555 ? BLOCKDEV_FUA : 0);
            if (ret != (int64_t)len) {
                report(s, "write", off, len, ret);
            }
            memcpy(s->shadow + off, p, len);
        } else if (kind < 930) {
            unsigned flags = kind % 2 ? BLOCKDEV_MAY_TRIM : 0;
            ret = blockdev_write_zeroes(s->bd, off, len, flags);
            if (ret != 0) {
                report(s, "zero", off, len, ret);
            }
            memset(s->shadow + off, 0, len);
        } else {
            ret = blockdev_discard(s->bd, off, len, 0);
            if (ret != 0) {
                report(s, "discard", off, len, ret);
            }
            memset(s->shadow + off, 0, len);
        }
        lock_range(s, off, len, false);
    }
    free(buf);
    return NULL;
}

static void
run(Shared *s, const char *path, BlockDevCache cache, long ops)
{
    Worker w[NTHREADS];
    BlockDevOptions opts;
    char *msg = NULL;

    blockdev_options_init(&opts);
    opts.cache = cache;
    opts.iothread = s->io;
    assert_int_equal(blockdev_open(path, &opts, &s->bd, &msg), 0);
    assert_true(blockdev_is_direct(s->bd) == (cache == BLOCKDEV_CACHE_NONE));
    s->ops = ops / NTHREADS;
    for (unsigned i = 0; i < NTHREADS; i++) {
        w[i].s = s;
        w[i].id = i;
        w[i].rng = 0x9e3779b97f4a7c15ull * (i + 1) + s->seed;
        assert_int_equal(pthread_create(&w[i].thread, NULL, worker_main, &w[i]),
                         0);
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].thread, NULL);
    }
    BlockDevStats st;
    blockdev_get_stats(s->bd, &st);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.in_flight, 0);
    assert_true(st.reads + st.writes + st.flushes + st.zeroes + st.discards >=
                (uint64_t)s->ops * NTHREADS);
    blockdev_close(s->bd);
    assert_int_equal(atomic_load(&s->failures), 0);
}

static void
test_stress(void **state)
{
    (void)state;
    const char *env = getenv("TLBD_STRESS_OPS");
    long ops = env ? atol(env) : 100000;
    char *dir = bt_tmpdir();
    char *path = bt_path(dir, "stress.img");
    Shared *s = calloc(1, sizeof(*s));
    uint8_t *disk;
    size_t len;

    assert_true(ops >= NTHREADS);
    bt_make_file(path, IMG_SIZE, 77);
    s->shadow = malloc(IMG_SIZE);
    bt_pattern(s->shadow, IMG_SIZE, 0, 77);
    for (int i = 0; i < NSTRIPES; i++) {
        pthread_mutex_init(&s->stripes[i], NULL);
    }
    assert_int_equal(iothread_new("stress", &s->io), 0);
    assert_int_equal(iothread_start(s->io), 0);

    /* Most requests through the page cache, the rest with O_DIRECT and
     * shorter lengths.
     */
    s->max_len = 8192;
    s->seed = 1;
    uint64_t t0 = tlbd_now_ns();
    run(s, path, BLOCKDEV_CACHE_WRITEBACK, ops - ops / 10);
    fprintf(stderr, "writeback: %.1f s\n", (tlbd_now_ns() - t0) / 1e9);
    t0 = tlbd_now_ns();
    s->max_len = 6000;
    s->seed = 2;
    run(s, path, BLOCKDEV_CACHE_NONE, ops / 10);
    fprintf(stderr, "direct: %.1f s\n", (tlbd_now_ns() - t0) / 1e9);

    disk = bt_read_file(path, &len);
    assert_int_equal(len, IMG_SIZE);
    assert_memory_equal(disk, s->shadow, IMG_SIZE);
    free(disk);
    iothread_free(s->io);
    free(s->shadow);
    free(s);
    bt_rmdir(dir);
    free(path);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
