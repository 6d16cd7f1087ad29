/* tlbd: paio itself: cancel while queued, running and done; the blocking
 * wait with and without an IOThread; the write-zeroes fallbacks and the
 * capability flags they clear; closing a BlockDev with requests in flight.
 */
#include "blockdrv-test.h"

#include "paio.h"

typedef struct Fixture {
    BtFixture b;
    int fd;
    ThreadletQueue queue; /* one worker, so requests can be kept queued */
    PaioDev *dev;
} Fixture;

enum { IMG_SIZE = 1 << 20 };

static int
setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    PaioDevConfig cfg = { 0 };

    bt_fixture_init(&f->b, "paio.img", IMG_SIZE, 21);
    f->fd = open(f->b.path, O_RDWR);
    assert_true(f->fd >= 0);
    assert_int_equal(threadlet_queue_init_named(&f->queue, "paio", 1, 1), 0);
    cfg.fd = f->fd;
    cfg.size = IMG_SIZE;
    cfg.queue = &f->queue;
    cfg.alignment = 1;
    assert_int_equal(paio_dev_new(&cfg, &f->dev), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    Fixture *f = *state;
    paio_dev_free(f->dev);
    threadlet_queue_destroy(&f->queue, THREADLET_DRAIN);
    close(f->fd);
    bt_fixture_destroy(&f->b);
    free(f);
    return 0;
}

/* A work item that holds the queue's only worker until released. */
typedef struct Gate {
    ThreadletWork work;
    sem_t entered;
    sem_t release;
} Gate;

static void
gate_fn(ThreadletWork *work)
{
    Gate *g = container_of(work, Gate, work);
    sem_post(&g->entered);
    sem_wait(&g->release);
}

typedef struct Req {
    PaioRequest req;
    uint8_t buf[512];
    struct iovec iov;
    BtWait w;
} Req;

static void
req_done(PaioRequest *req)
{
    Req *r = container_of(req, Req, req);
    bt_wait_cb(&r->w, req->ret);
}

static void
req_init(Req *r, IOThread *io, PaioType type, uint64_t offset)
{
    memset(&r->req, 0, sizeof(r->req));
    r->req.type = type;
    r->req.offset = offset;
    r->iov.iov_base = r->buf;
    r->iov.iov_len = sizeof(r->buf);
    r->req.u.rw.iov = &r->iov;
    r->req.u.rw.niov = 1;
    r->req.cb = req_done;
    r->req.iothread = io;
    bt_wait_init(&r->w, io);
}

static void
test_cancel_queued(void **state)
{
    Fixture *f = *state;
    enum { N = 10 };
    Req *r = calloc(N, sizeof(*r));
    Gate g = { .work.func = gate_fn };
    uint8_t want[512];

    sem_init(&g.entered, 0, 0);
    sem_init(&g.release, 0, 0);
    assert_int_equal(submit_threadlet_to_queue(&f->queue, &g.work), 0);
    sem_wait(&g.entered);

    for (int i = 0; i < N; i++) {
        req_init(&r[i], f->b.io, PAIO_READ, (uint64_t)i * 512);
        assert_int_equal(paio_submit(f->dev, &r[i].req), 0);
    }
    /* Every other one is still queued behind the gate: cancel it. */
    for (int i = 0; i < N; i += 2) {
        assert_int_equal(paio_cancel(&r[i].req), PAIO_CANCELLED);
    }
    sem_post(&g.release);
    for (int i = 0; i < N; i++) {
        int64_t ret = bt_wait(&r[i].w);
        if (i % 2 == 0) {
            assert_int_equal(ret, -ECANCELED);
        } else {
            assert_int_equal(ret, 512);
            bt_pattern(want, sizeof(want), (uint64_t)i * 512, 21);
            assert_memory_equal(r[i].buf, want, sizeof(want));
        }
        assert_int_equal(atomic_load(&r[i].w.calls), 1);
    }
    paio_dev_drain(f->dev);
    PaioStats st;
    paio_dev_get_stats(f->dev, &st);
    assert_int_equal(st.ops[PAIO_READ], N);
    assert_int_equal(st.errors, N / 2);
    assert_int_equal(st.in_flight, 0);
    free(r);
}

static sem_t io_gate;

static void
io_block(IOThreadTask *task)
{
    (void)task;
    sem_wait(&io_gate);
}

static void
test_cancel_running_and_done(void **state)
{
    Fixture *f = *state;
    Req r;
    IOThreadTask blocker = { .fn = io_block };

    /* Running: a delay keeps the worker inside the request. */
    assert_int_equal(paio_dev_set_inject(f->dev, "read:delay=1s", NULL), 0);
    req_init(&r, f->b.io, PAIO_READ, 0);
    assert_int_equal(paio_submit(f->dev, &r.req), 0);
    while (threadlet_work_state(&r.req.work) != THREADLET_RUNNING) {
        usleep(1000);
    }
    assert_int_equal(paio_cancel(&r.req), PAIO_RUNNING);
    assert_int_equal(bt_wait(&r.w), 512);
    assert_int_equal(paio_dev_set_inject(f->dev, NULL, NULL), 0);

    /* Done: the worker finished, the IOThread has not run the callback. */
    sem_init(&io_gate, 0, 0);
    iothread_post(f->b.io, &blocker);
    req_init(&r, f->b.io, PAIO_READ, 0);
    assert_int_equal(paio_submit(f->dev, &r.req), 0);
    while (threadlet_work_state(&r.req.work) != THREADLET_DONE) {
        usleep(1000);
    }
    assert_int_equal(paio_cancel(&r.req), PAIO_DONE);
    assert_int_equal(atomic_load(&r.w.calls), 0);
    sem_post(&io_gate);
    assert_int_equal(bt_wait(&r.w), 512);
}

static void
test_run_and_bad_requests(void **state)
{
    Fixture *f = *state;
    PaioRequest req;
    uint8_t buf[100];
    struct iovec iov = { buf, sizeof(buf) };

    /* paio_run, completing through the IOThread and on the worker. */
    for (int i = 0; i < 2; i++) {
        memset(&req, 0, sizeof(req));
        req.type = PAIO_READ;
        req.offset = 10;
        req.u.rw.iov = &iov;
        req.u.rw.niov = 1;
        assert_int_equal(paio_run(f->dev, &req, i ? f->b.io : NULL), 100);
        assert_ptr_equal(req.dev, f->dev);
    }
    memset(&req, 0, sizeof(req));
    req.type = PAIO_NR_TYPES;
    assert_int_equal(paio_run(f->dev, &req, NULL), -EINVAL);
    req.type = PAIO_WRITE;
    req.u.rw.niov = -1;
    assert_int_equal(paio_run(f->dev, &req, NULL), -EINVAL);
    req.u.rw.niov = 2;
    req.u.rw.iov = NULL;
    assert_int_equal(paio_run(f->dev, &req, NULL), -EINVAL);
    assert_string_equal(paio_type_name(PAIO_WRITE_ZEROES), "zero");
}

static int64_t
zero(Fixture *f, uint64_t off, uint64_t len, unsigned flags)
{
    PaioRequest req;

    memset(&req, 0, sizeof(req));
    req.type = PAIO_WRITE_ZEROES;
    req.offset = off;
    req.flags = flags;
    req.u.range.length = len;
    return paio_run(f->dev, &req, NULL);
}

static void
test_zero_fallbacks(void **state)
{
    Fixture *f = *state;
    uint8_t *buf = malloc(IMG_SIZE);

    /* No fast method left: fast-only fails, plain falls back to writes. */
    paio_dev_set_caps(f->dev, PAIO_CAP_ZERO_RANGE | PAIO_CAP_PUNCH_ZERO, false);
    assert_int_equal(zero(f, 4096, 65536, PAIO_NO_FALLBACK), -ENOTSUP);
    assert_int_equal(pread(f->fd, buf, 65536, 4096), 65536);
    assert_false(bt_is_zero(buf, 65536));
    assert_int_equal(zero(f, 4096, 65536, PAIO_MAY_TRIM), 0);
    assert_int_equal(pread(f->fd, buf, 65536, 4096), 65536);
    assert_true(bt_is_zero(buf, 65536));

    /* Punch + allocate: zeroes, and the blocks stay allocated. */
    paio_dev_set_caps(f->dev, PAIO_CAP_PUNCH_ZERO, true);
    uint64_t blocks = bt_st_blocks(f->b.path);
    assert_int_equal(zero(f, 131072, 131072, PAIO_NO_FALLBACK), 0);
    assert_int_equal(pread(f->fd, buf, 131072, 131072), 131072);
    assert_true(bt_is_zero(buf, 131072));
    assert_int_equal(bt_st_blocks(f->b.path), blocks);
    /* ... and with MAY_TRIM it leaves a hole. */
    assert_int_equal(zero(f, 524288, 131072, PAIO_MAY_TRIM), 0);
    assert_true(bt_st_blocks(f->b.path) <= blocks - 131072 / 512);
    free(buf);
}

static void
count_cb(void *opaque, int64_t ret)
{
    atomic_int *n = opaque;
    if (ret == 4096) {
        atomic_fetch_add(n, 1);
    }
}

static void
test_close_in_flight(void **state)
{
    Fixture *f = *state;
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    enum { N = 64 };
    static uint8_t bufs[N][4096];
    atomic_int done = 0;

    blockdev_options_init(&opts);
    opts.iothread = f->b.io;
    opts.queue = &f->queue;
    opts.inject = "any:delay=2ms";
    assert_int_equal(blockdev_open(f->b.path, &opts, &bd, NULL), 0);
    for (int i = 0; i < N; i++) {
        struct iovec iov = { bufs[i], sizeof(bufs[i]) };
        if (i % 2) {
            assert_int_equal(blockdev_aio_preadv(bd, (uint64_t)i * 4096, &iov,
                                                 1, count_cb, &done),
                             0);
        } else {
            assert_int_equal(blockdev_aio_pwritev(bd, (uint64_t)i * 4096, &iov,
                                                  1, 0, count_cb, &done),
                             0);
        }
    }
    /* One worker at 2 ms each: most are still queued now. */
    blockdev_close(bd);
    assert_int_equal(atomic_load(&done), N);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_running_and_done, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_run_and_bad_requests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_zero_fallbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
