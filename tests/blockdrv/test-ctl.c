/* tlbd: the control channel (control=PATH) driven through its socket: the
 * protocol's replies (output lines, then ok or error: MESSAGE), a client
 * that connects before blockdev_serve waits, a front end's stats lines,
 * a path that exists refused and a stale socket replaced, the file removed
 * at close; and commands (stats, mark, flush, powercut) while threads
 * write through the cache, for TSan; stats-raw while threads read, write
 * and flush through the pool: its latency histograms count every request.
 */
#include "blockdrv-test.h"

#include <pthread.h>

#include "histogram.h"
#include <sys/socket.h>
#include <sys/un.h>

enum {
    IMG_SIZE = 1 << 20,
    WRITERS = 2,
};

static int
setup(void **state)
{
    *state = bt_fixture_new("ctl.img", IMG_SIZE, 0);
    return 0;
}

/* A connected socket to PATH. */
static int
dial(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memcpy(sa.sun_path, path, strlen(path));
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Send LINE on FD (connected) and end the input; read the reply until the
 * server closes.
 */
static char *
finish(int fd, const char *line)
{
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    ssize_t n;

    assert_int_equal(send(fd, line, strlen(line), MSG_NOSIGNAL),
                     (ssize_t)strlen(line));
    shutdown(fd, SHUT_WR); /* also ends a line without its newline */
    while ((n = read(fd, buf + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
    }
    assert_int_equal(n, 0);
    buf[len] = '\0';
    close(fd);
    return buf;
}

static char *
ask(const char *path, const char *line)
{
    return finish(dial(path), line);
}

/* ask, and check the reply is exactly WANT. */
static void
expect(const char *path, const char *line, const char *want)
{
    char *reply = ask(path, line);

    assert_string_equal(reply, want);
    free(reply);
}

static BlockDev *
open_ctl(BtFixture *f, const char *ctl, const char *cache, char **errmsg,
         int *ret)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;

    blockdev_options_init(&opts);
    opts.control = ctl;
    /* test_paths opens the image twice: the control socket is the
     * conflict under test, not the image lock */
    opts.force_share = true;
    if (cache) {
        assert_int_equal(
            blockdev_parse_option(&opts, "volatile-cache", cache, NULL), 0);
    }
    *ret = blockdev_open(f->path, &opts, &bd, errmsg);
    return bd;
}

static void
front_stats(void *opaque, FILE *fp)
{
    fprintf(fp, "front_end_key=%d\n", *(int *)opaque);
}

static void
test_protocol(void **state)
{
    BtFixture *f = *state;
    char *ctl = bt_path(f->dir, "ctl.sock");
    char line[2048];
    char *reply;
    int value = 42;
    struct stat st;
    BlockDev *bd;
    int early;
    int ret;

    bd = open_ctl(f, ctl, NULL, NULL, &ret);
    assert_int_equal(ret, 0);
    assert_int_equal(stat(ctl, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* listening already: this one waits for the thread */
    early = dial(ctl);
    blockdev_set_stats_hook(bd, front_stats, &value);
    assert_int_equal(blockdev_serve(bd), 0);
    assert_int_equal(blockdev_serve(bd), 0); /* running: nothing to do */
    reply = finish(early, "stats\n");
    assert_non_null(strstr(reply, "\nmarks=0\n"));
    assert_non_null(strstr(reply, "volatile_cache=0\n"));
    assert_non_null(strstr(reply, "\ndead=0\n"));
    assert_non_null(strstr(reply, "\nfront_end_key=42\nok\n"));
    free(reply);

    expect(ctl, "mark m1\n", "ok\n");
    expect(ctl, "  mark\tm2  \r\n", "ok\n"); /* spaces, tabs, CRLF */
    expect(ctl, "mark m3", "ok\n");          /* the end ends the line */
    expect(ctl, "mark\n", "error: usage: mark NAME\n");
    expect(ctl, "mark a b\n", "error: usage: mark NAME\n");
    expect(ctl, "mark \x01\n",
           "error: mark: '\x01' is not a mark name (1 to 31 printable "
           "characters, no spaces)\n");
    expect(ctl, "\n", "error: no command (help lists them)\n");
    expect(ctl, "frob\n", "error: unknown command 'frob' (help lists them)\n");
    expect(ctl, "powercut\n",
           "error: powercut needs a volatile cache (volatile-cache=SIZE)\n");
    expect(ctl, "a b c d e f g h i\n", "error: too many arguments\n");
    memset(line, 'x', sizeof(line) - 2);
    line[sizeof(line) - 2] = '\n';
    line[sizeof(line) - 1] = '\0';
    expect(ctl, line, "error: the command is longer than 1024 bytes\n");
    reply = ask(ctl, "help\n");
    assert_non_null(strstr(reply, "mark NAME: "));
    assert_non_null(strstr(reply, "\nstats: "));
    free(reply);
    reply = ask(ctl, "stats\n");
    assert_non_null(strstr(reply, "\nmarks=3\n"));
    free(reply);
    expect(ctl, "flush\n", "ok\n");

    blockdev_close(bd);
    assert_int_equal(stat(ctl, &st), -1);
    assert_int_equal(errno, ENOENT);
    free(ctl);
}

/* A path that exists: refused, unless a stale socket of ours. */
static void
test_paths(void **state)
{
    BtFixture *f = *state;
    char *ctl = bt_path(f->dir, "ctl.sock");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char *msg = NULL;
    BlockDev *bd;
    BlockDev *bd2;
    int fd;
    int ret;

    /* a regular file */
    bt_make_file(ctl, 0, 0);
    bd = open_ctl(f, ctl, NULL, &msg, &ret);
    assert_int_equal(ret, -EEXIST);
    assert_null(bd);
    assert_non_null(strstr(msg, "' exists and is not a socket"));
    assert_true(strncmp(msg, "control: '", 10) == 0);
    free(msg);
    assert_int_equal(unlink(ctl), 0);

    /* a stale socket: bound, nobody listens */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memcpy(sa.sun_path, ctl, strlen(ctl));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    bd = open_ctl(f, ctl, NULL, &msg, &ret);
    assert_int_equal(ret, 0);
    assert_int_equal(blockdev_serve(bd), 0);
    expect(ctl, "mark replaced\n", "ok\n");

    /* in use */
    bd2 = open_ctl(f, ctl, NULL, &msg, &ret);
    assert_int_equal(ret, -EADDRINUSE);
    assert_null(bd2);
    assert_non_null(strstr(msg, "is in use"));
    free(msg);
    blockdev_close(bd);

    /* too long, or empty */
    {
        char longp[200];
        BlockDevOptions opts;
        memset(longp, 'a', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = '\0';
        blockdev_options_init(&opts);
        assert_int_equal(blockdev_parse_option(&opts, "control", longp, &msg),
                         -EINVAL);
        assert_non_null(strstr(msg, "is not a socket path of 1 to 107 bytes"));
        free(msg);
        assert_int_equal(blockdev_parse_option(&opts, "control", "", &msg),
                         -EINVAL);
        free(msg);
    }
    free(ctl);
}

typedef struct Writer {
    BlockDev *bd;
    unsigned seed;
    int eio; /* requests that failed with EIO (after the cut) */
} Writer;

static void *
writer(void *arg)
{
    Writer *w = arg;
    uint8_t buf[4096];

    for (unsigned i = 0; i < 4000; i++) {
        uint64_t off = (uint64_t)((i * 7919u + w->seed * 131u) % 256u) * 4096;
        int64_t r;
        bt_pattern(buf, sizeof(buf), off, w->seed + i);
        r = (i % 50 == 49) ? blockdev_flush(w->bd)
                           : blockdev_pwrite(w->bd, buf, sizeof(buf), off, 0);
        if (r == -EIO) {
            w->eio++;
        } else {
            assert_true(r >= 0);
        }
    }
    return NULL;
}

/* Commands while threads write through the cache; then a cut. */
static void
test_busy(void **state)
{
    BtFixture *f = *state;
    char *ctl = bt_path(f->dir, "ctl.sock");
    pthread_t th[WRITERS];
    Writer w[WRITERS];
    BlockDev *bd;
    char *reply;
    int ret;

    bd = open_ctl(f, ctl, "64k", NULL, &ret);
    assert_int_equal(ret, 0);
    assert_int_equal(blockdev_serve(bd), 0);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (Writer){ .bd = bd, .seed = (unsigned)i + 1 };
        assert_int_equal(pthread_create(&th[i], NULL, writer, &w[i]), 0);
    }
    for (int i = 0; i < 40; i++) {
        char mark[32];
        snprintf(mark, sizeof(mark), "mark m%d\n", i);
        expect(ctl, mark, "ok\n");
        reply = ask(ctl, i % 2 ? "stats\n" : "flush\n");
        assert_non_null(strstr(reply, "ok\n"));
        free(reply);
    }
    reply = ask(ctl, "powercut subset:0.5 seed=9\n");
    assert_true(strncmp(reply, "power cut (on demand): mode=subset:0.5 seed=9 ",
                        46) == 0);
    assert_non_null(strstr(reply, "powercut-token=subset:0.5/9/"));
    free(reply);
    expect(ctl, "powercut\n", "error: powercut: the power is cut already\n");
    expect(ctl, "mark late\n", "error: mark: the power is cut\n");
    expect(ctl, "flush\n", "error: flush: Input/output error\n");
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
    }
    reply = ask(ctl, "stats\n");
    assert_non_null(strstr(reply, "\ndead=1\n"));
    assert_non_null(strstr(reply, "\nmarks=40\n"));
    free(reply);
    blockdev_close(bd);
    free(ctl);
}

/* The number after KEY ("\nwrites=") in REPLY. */
static uint64_t
key_value(const char *reply, const char *key)
{
    const char *p = strstr(reply, key);

    assert_non_null(p);
    return strtoull(p + strlen(key), NULL, 10);
}

/* The requests the histogram line KEY ("\nlat_read=") counts. */
static uint64_t
bucket_sum(const char *reply, const char *key)
{
    const char *p = strstr(reply, key);
    uint64_t sum = 0;
    char *end;

    assert_non_null(p);
    p += strlen(key);
    while (*p != '\n') {
        unsigned long b = strtoul(p, &end, 10);
        assert_true(*end == ':' && b < HIST_BUCKETS);
        sum += strtoull(end + 1, &end, 10);
        assert_true(*end == ',' || *end == '\n');
        p = *end == ',' ? end + 1 : end;
    }
    return sum;
}

static void *
reader_writer(void *arg)
{
    BlockDev *bd = arg;
    uint8_t buf[4096] = { 1 };

    for (unsigned i = 0; i < 600; i++) {
        uint64_t off = (uint64_t)(i % 256u) * 4096;
        int64_t r = i % 20 == 19 ? blockdev_flush(bd)
                    : i % 2      ? blockdev_pread(bd, buf, sizeof(buf), off)
                            : blockdev_pwrite(bd, buf, sizeof(buf), off, 0);
        assert_true(r >= 0);
    }
    return NULL;
}

/* stats-raw while threads use the pool; at the end, every read, write and
 * flush is in its kind's histogram.
 */
static void
test_stats_raw(void **state)
{
    BtFixture *f = *state;
    char *ctl = bt_path(f->dir, "ctl.sock");
    BlockDevOptions opts;
    pthread_t th[WRITERS];
    BlockDev *bd = NULL;
    char *reply;

    blockdev_options_init(&opts);
    opts.control = ctl;
    assert_int_equal(blockdev_parse_option(&opts, "offload", "always", NULL),
                     0);
    assert_int_equal(blockdev_open(f->path, &opts, &bd, NULL), 0);
    assert_int_equal(blockdev_serve(bd), 0);
    for (int i = 0; i < WRITERS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, reader_writer, bd), 0);
    }
    for (int i = 0; i < 20; i++) {
        reply = ask(ctl, "stats-raw\n");
        assert_true(strncmp(reply, "format=1\ntime_ns=", 17) == 0);
        assert_non_null(strstr(reply, "\nlat_zero="));
        assert_non_null(strstr(reply, "\nok\n"));
        free(reply);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
    }
    reply = ask(ctl, "stats-raw\n");
    assert_int_equal(key_value(reply, "\nreads="), WRITERS * 270);
    assert_int_equal(key_value(reply, "\nwrites="), WRITERS * 300);
    assert_int_equal(key_value(reply, "\nflushes="), WRITERS * 30);
    assert_int_equal(bucket_sum(reply, "\nlat_read="), WRITERS * 270);
    assert_int_equal(bucket_sum(reply, "\nlat_write="), WRITERS * 300);
    assert_int_equal(bucket_sum(reply, "\nlat_flush="), WRITERS * 30);
    assert_int_equal(bucket_sum(reply, "\nlat_discard="), 0);
    assert_true(key_value(reply, "\nrequests=") >= WRITERS * 600);
    assert_int_equal(key_value(reply, "\ninline_ops="), 0);
    assert_int_equal(key_value(reply, "\nhist_sub_bits="), HIST_SUB_BITS);
    assert_true(key_value(reply, "\npool_threads=") >=
                key_value(reply, "\npool_idle="));
    free(reply);
    blockdev_close(bd);
    free(ctl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_protocol, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_busy, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_stats_raw, setup, bt_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
