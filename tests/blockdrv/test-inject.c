/* tlbd: fault and latency injection: the grammar and its messages, each
 * trigger, errors surfacing as -errno in aio callbacks, deterministic
 * random rates, delays, the latching of a failed flush, and interrupts
 * (a queued request taken back, a delay cut short).
 */
#include "blockdrv-test.h"

#include <linux/fs.h>
#include <sys/ioctl.h>

#include "paio-inject.h"

typedef BtFixture Fixture;

enum { IMG_SIZE = 1 << 20 };

static int
setup(void **state)
{
    *state = bt_fixture_new("inject.img", IMG_SIZE, 3);
    return 0;
}

static BlockDev *
open_inject(Fixture *f, const char *spec)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;

    blockdev_options_init(&opts);
    opts.iothread = f->io;
    opts.inject = spec;
    assert_int_equal(blockdev_open(f->path, &opts, &bd, &msg), 0);
    assert_null(msg);
    return bd;
}

static void
test_grammar_accepts(void **state)
{
    (void)state;
    static const char *const good[] = {
        "write:eio:rate=0.001,flush:eio:after=50,read:delay=2ms",
        "seed=42,any:enospc:every=3:count=2",
        "zero:enotsup:once",
        "read:delay=500us:eio",
        "other:delay=1s,ioctl:einval,truncate:efbig,discard:eopnotsupp",
        "write:edquot:rate=1,read:delay=7",
        "",
    };
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(good); i++) {
        PaioInject *inj = NULL;
        char *msg = NULL;
        assert_int_equal(paio_inject_parse(good[i], &inj, &msg), 0);
        assert_null(msg);
        assert_true(i == TLBD_ARRAY_SIZE(good) - 1 ? inj == NULL : inj != NULL);
        paio_inject_free(inj);
    }
}

static void
test_grammar_messages(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        const char *msg;
    } bad[] = {
        { "write:eoi", "inject: 'write:eoi': unknown error 'eoi' at column 7" },
        { "wirte:eio",
          "inject: 'wirte:eio': unknown operation 'wirte' (want read, write, "
          "flush, discard, zero, ioctl, truncate, other or any) at column 1" },
        { "read:delay=2parsecs",
          "inject: 'read:delay=2parsecs': bad delay '2parsecs' (want "
          "N[ns|us|ms|s], at most 1 h) at column 12" },
        { "write:eio:rate=1.5",
          "inject: 'write:eio:rate=1.5': bad rate '1.5' (want 0 to 1) at "
          "column 16" },
        { "read", "inject: 'read': rule 'read' has neither an error nor a "
                  "delay at column 1" },
        { "read:once", "inject: 'read:once': rule 'read:once' has neither an "
                       "error nor a delay at column 1" },
        { "write:eio,,read:eio",
          "inject: 'write:eio,,read:eio': empty rule at column 11" },
        { "write:eio,", "inject: 'write:eio,': empty rule at column 11" },
        { "write:eio::once",
          "inject: 'write:eio::once': empty term at column 11" },
        { "write:eio:every=0",
          "inject: 'write:eio:every=0': bad number '0' for 'every' at "
          "column 17" },
        { "flush:eio:after=-1",
          "inject: 'flush:eio:after=-1': bad number '-1' for 'after' at "
          "column 17" },
        { "write:eio:foo=1",
          "inject: 'write:eio:foo=1': unknown setting 'foo' at column 11" },
        { "seed=x,write:eio",
          "inject: 'seed=x,write:eio': bad seed 'x' at column 6" },
        { "write:eio:enospc",
          "inject: 'write:eio:enospc': second error 'enospc' at column 11" },
    };
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(bad); i++) {
        PaioInject *inj = NULL;
        char *msg = NULL;
        assert_int_equal(paio_inject_parse(bad[i].spec, &inj, &msg), -EINVAL);
        assert_null(inj);
        assert_non_null(msg);
        assert_string_equal(msg, bad[i].msg);
        free(msg);
    }
}

static void
test_flush_error_latched(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = open_inject(f, "flush:eio:once");
    uint8_t buf[4096] = { 0 };
    BtWait w;

    bt_wait_init(&w, f->io);
    assert_int_equal(blockdev_aio_flush(bd, bt_wait_cb, &w), 0);
    assert_int_equal(bt_wait(&w), -EIO);
    /* The rule fired once; the error stays until the device is reopened. */
    assert_int_equal(blockdev_flush(bd), -EIO);
    assert_int_equal(blockdev_flush(bd), -EIO);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 0, 0), 4096);
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 0, BLOCKDEV_FUA),
                     -EIO);
    assert_int_equal(blockdev_write_zeroes(bd, 0, 4096, BLOCKDEV_FUA), -EIO);
    /* Clearing the rules does not clear the latched error. */
    assert_int_equal(blockdev_set_inject(bd, NULL, NULL), 0);
    assert_int_equal(blockdev_flush(bd), -EIO);
    BlockDevStats st;
    blockdev_get_stats(bd, &st);
    assert_int_equal(st.flushes, 4);
    assert_int_equal(st.errors, 6);
    blockdev_close(bd);

    bd = open_inject(f, NULL);
    assert_int_equal(blockdev_flush(bd), 0);
    blockdev_close(bd);
}

/* Each op gets its own error through the aio path; nothing is written. */
static void
test_errors_in_callbacks(void **state)
{
    Fixture *f = *state;
    BlockDev *bd =
        open_inject(f, "read:eio,write:enospc,flush:edquot,discard:eopnotsupp,"
                       "zero:efbig,ioctl:ebusy,truncate:eperm,other:etimedout");
    uint8_t buf[4096];
    struct iovec iov = { buf, sizeof(buf) };
    int bsz = 0;
    size_t len;
    uint8_t *before = bt_read_file(f->path, &len);
    uint8_t *after;
    BtWait w;

    memset(buf, 0x5a, sizeof(buf));
#define EXPECT(call, err)                                                      \
    do {                                                                       \
        bt_wait_init(&w, f->io);                                               \
        assert_int_equal((call), 0);                                           \
        assert_int_equal(bt_wait(&w), -(err));                                 \
    } while (0)
    EXPECT(blockdev_aio_preadv(bd, 0, &iov, 1, bt_wait_cb, &w), EIO);
    EXPECT(blockdev_aio_pwritev(bd, 0, &iov, 1, 0, bt_wait_cb, &w), ENOSPC);
    EXPECT(blockdev_aio_flush(bd, bt_wait_cb, &w), EDQUOT);
    EXPECT(blockdev_aio_discard(bd, 0, 4096, 0, bt_wait_cb, &w), EOPNOTSUPP);
    EXPECT(blockdev_aio_write_zeroes(bd, 0, 4096, 0, bt_wait_cb, &w), EFBIG);
    EXPECT(blockdev_aio_ioctl(bd, FIGETBSZ, &bsz, bt_wait_cb, &w), EBUSY);
    EXPECT(blockdev_aio_truncate(bd, 4096, bt_wait_cb, &w), EPERM);
    EXPECT(blockdev_aio_lseek(bd, 0, SEEK_DATA, bt_wait_cb, &w), ETIMEDOUT);
    EXPECT(blockdev_aio_cache(bd, 0, 4096, bt_wait_cb, &w), ETIMEDOUT);
#undef EXPECT
    /* An injected -ENOTSUP is not a capability: discard is still there. */
    assert_true(blockdev_can_discard(bd));
    assert_int_equal(blockdev_size(bd), IMG_SIZE);
    blockdev_close(bd);
    after = bt_read_file(f->path, &len);
    assert_int_equal(len, IMG_SIZE);
    assert_memory_equal(before, after, IMG_SIZE);
    free(before);
    free(after);
}

/* Which of N reads fail under SPEC, as a string of '.' and 'x'. */
static char *
pattern(Fixture *f, const char *spec, int n)
{
    BlockDev *bd = open_inject(f, spec);
    char *out = calloc((size_t)n + 1, 1);
    uint8_t buf[512];

    for (int i = 0; i < n; i++) {
        int64_t r = blockdev_pread(bd, buf, sizeof(buf), 0);
        assert_true(r == 512 || r == -EIO);
        out[i] = r == 512 ? '.' : 'x';
    }
    blockdev_close(bd);
    return out;
}

static void
test_triggers(void **state)
{
    Fixture *f = *state;
    char *p;

    p = pattern(f, "read:eio:after=3", 6);
    assert_string_equal(p, "...xxx");
    free(p);
    p = pattern(f, "read:eio:every=3:count=2", 12);
    assert_string_equal(p, "..x..x......");
    free(p);
    p = pattern(f, "read:eio:after=2:once", 6);
    assert_string_equal(p, "..x...");
    free(p);
    p = pattern(f, "read:eio:after=1:every=2", 7);
    assert_string_equal(p, "..x.x.x");
    free(p);
    p = pattern(f, "write:eio,read:eio:count=2", 4);
    assert_string_equal(p, "xx..");
    free(p);

    /* Rates: the same seed, the same choices; about the rate asked. */
    char *a = pattern(f, "seed=5,read:eio:rate=0.3", 400);
    char *b = pattern(f, "seed=5,read:eio:rate=0.3", 400);
    char *c = pattern(f, "seed=6,read:eio:rate=0.3", 400);
    int fails = 0;
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    for (int i = 0; i < 400; i++) {
        fails += a[i] == 'x';
    }
    assert_true(fails > 60 && fails < 180);
    free(a);
    free(b);
    free(c);
    p = pattern(f, "read:eio:rate=0", 50);
    assert_null(strchr(p, 'x'));
    free(p);
}

static void
test_delay(void **state)
{
    Fixture *f = *state;
    BlockDev *bd = open_inject(f, "read:delay=50ms,flush:delay=20000us");
    uint8_t buf[512];
    uint64_t t0 = tlbd_now_ns();

    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 512);
    assert_true(tlbd_now_ns() - t0 >= 50000000u);
    t0 = tlbd_now_ns();
    assert_int_equal(blockdev_flush(bd), 0);
    assert_true(tlbd_now_ns() - t0 >= 20000000u);

    /* A bad spec at run time is refused and the old rules stay. */
    char *msg = NULL;
    assert_int_equal(blockdev_set_inject(bd, "read:eoi", &msg), -EINVAL);
    assert_string_equal(msg, "inject: 'read:eoi': unknown error 'eoi' at "
                             "column 6");
    free(msg);
    t0 = tlbd_now_ns();
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 512);
    assert_true(tlbd_now_ns() - t0 >= 50000000u);
    assert_int_equal(blockdev_set_inject(bd, "", NULL), 0);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 512);
    blockdev_close(bd);
}

typedef struct Interrupt {
    BlockDevAio *aio;
    bool cancelled;
} Interrupt;

/* blockdev_aio_interrupt, on the IOThread that runs the callbacks. */
static void
interrupt_on_io(void *opaque)
{
    Interrupt *in = opaque;
    in->cancelled = blockdev_aio_interrupt(in->aio);
}

/* One worker, reads delayed 10 s: a read queued behind a running one is
 * taken back (-ECANCELED) and the running read's delay is cut short
 * (-EINTR), long before 10 s; both counted; nothing left in flight.
 */
static void
test_interrupt(void **state)
{
    Fixture *f = *state;
    ThreadletQueue q;
    ThreadletStats ts;
    BlockDevOptions opts;
    BlockDevStats st;
    BlockDev *bd = NULL;
    uint8_t buf[2][512];
    struct iovec iov[2] = { { buf[0], 512 }, { buf[1], 512 } };
    BtWait w[2];
    Interrupt in[2];
    uint64_t t0 = tlbd_now_ns();

    assert_int_equal(threadlet_queue_init_named(&q, "intr", 1, 1), 0);
    blockdev_options_init(&opts);
    opts.iothread = f->io;
    opts.queue = &q;
    opts.inject = "read:delay=10s";
    assert_int_equal(blockdev_open(f->path, &opts, &bd, NULL), 0);
    for (int i = 0; i < 2; i++) {
        bt_wait_init(&w[i], f->io);
        assert_int_equal(blockdev_aio_rw_intr(bd, false, 512u * i, &iov[i], 1,
                                              0, bt_wait_cb, &w[i], &in[i].aio),
                         0);
        /* The first one runs (in its delay) before the second comes. */
        do {
            threadlet_queue_get_stats(&q, &ts);
        } while (i == 0 && (ts.queued || ts.idle_threads));
    }
    iothread_call(f->io, interrupt_on_io, &in[1]);
    assert_true(in[1].cancelled);
    assert_int_equal(bt_wait(&w[1]), -ECANCELED);
    iothread_call(f->io, interrupt_on_io, &in[0]);
    assert_false(in[0].cancelled);
    assert_int_equal(bt_wait(&w[0]), -EINTR);
    assert_true(tlbd_now_ns() - t0 < 9000000000u);

    blockdev_get_stats(bd, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.interrupted, 1);
    assert_int_equal(st.in_flight, 0);
    /* The device serves on. */
    assert_int_equal(blockdev_set_inject(bd, "", NULL), 0);
    assert_int_equal(blockdev_pread(bd, buf[0], 512, 0), 512);
    blockdev_close(bd);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grammar_accepts),
        cmocka_unit_test(test_grammar_messages),
        cmocka_unit_test_setup_teardown(test_flush_error_latched, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_errors_in_callbacks, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_triggers, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_interrupt, setup, bt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
