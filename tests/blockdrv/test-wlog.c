/* tlbd: the write log (log-writes=) and its replay, driven through
 * BlockDev and wlog.h: over many seeds and every cut mode, a live cut
 * leaves the same image as a replay of its log to the mark "powercut"
 * with the same mode and seed, and the seed matters where the cut lost
 * something; entries come in the order a disk makes them durable (FUA at
 * completion, the volatile set just before its flush's FLUSH, the cut's
 * volatile set before the mark); a full replay equals an orderly close;
 * --from continues a base; a log cut short at any length, an unknown mark,
 * a limit beyond the log and a bad mode are refused with the image
 * untouched.
 */
#include "blockdrv-test.h"

#include <inttypes.h>
#include <pthread.h>

#include "wlog.h"

enum {
    SECTOR = 512,
    IMG_SIZE = 64 * 1024,
    SEEDS = 400,
};

typedef struct Paths {
    char *dir;
    char *img;    /* the live image */
    char *base;   /* the image before the workload */
    char *replay; /* the replayed image */
    char *log;
} Paths;

static int
setup(void **state)
{
    Paths *p = calloc(1, sizeof(*p));

    p->dir = bt_tmpdir();
    p->img = bt_path(p->dir, "img");
    p->base = bt_path(p->dir, "base");
    p->replay = bt_path(p->dir, "replay");
    p->log = bt_path(p->dir, "log");
    *state = p;
    return 0;
}

static int
teardown(void **state)
{
    Paths *p = *state;

    bt_rmdir(p->dir);
    free(p->dir);
    free(p->img);
    free(p->base);
    free(p->replay);
    free(p->log);
    free(p);
    return 0;
}

static void
copy_file(const char *from, const char *to)
{
    size_t len;
    uint8_t *buf = bt_read_file(from, &len);
    FILE *fp = fopen(to, "w");

    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    free(buf);
}

static bool
same_files(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *x = bt_read_file(a, &la);
    uint8_t *y = bt_read_file(b, &lb);
    bool same = la == lb && memcmp(x, y, la) == 0;

    free(x);
    free(y);
    return same;
}

/* Open P's image with a cache of CACHE, the rule RULE (NULL: none) and
 * the log.
 */
static BlockDev *
open_logged(const Paths *p, const char *cache, const char *rule)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;

    blockdev_options_init(&opts);
    opts.offload = BLOCKDEV_OFFLOAD_NEVER;
    assert_int_equal(
        blockdev_parse_option(&opts, "volatile-cache", cache, &msg), 0);
    if (rule) {
        assert_int_equal(blockdev_parse_option(&opts, "powercut", rule, &msg),
                         0);
    }
    assert_int_equal(blockdev_parse_option(&opts, "log-writes", p->log, &msg),
                     0);
    assert_int_equal(blockdev_open(p->img, &opts, &bd, &msg), 0);
    assert_null(msg);
    return bd;
}

static uint64_t
next(uint64_t *rng)
{
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    return *rng >> 33;
}

/* A workload of NREQ requests from SEED: writes of whole sectors and of
 * odd byte ranges, FUA writes, write-zeroes, discards, a flush now and
 * then; it stops once the power is cut.  Returns the writes done.
 */
static uint32_t
workload(BlockDev *bd, uint64_t seed, uint32_t nreq)
{
    uint64_t rng = seed * 2654435761u + 7;
    uint8_t buf[8 * SECTOR];
    uint32_t writes = 0;

    for (uint32_t i = 0; i < nreq; i++) {
        uint64_t kind = next(&rng) % 16;
        uint64_t off = next(&rng) % (IMG_SIZE / SECTOR - 8) * SECTOR;
        uint64_t len = (1 + next(&rng) % 8) * SECTOR;
        unsigned flags = 0;

        int64_t ret;

        if (kind == 0) {
            ret = blockdev_flush(bd);
        } else {
            if (kind <= 2) {
                /* an odd range inside the sectors */
                off += next(&rng) % SECTOR;
                len = 1 + next(&rng) % (3 * SECTOR);
            }
            if (kind == 3) {
                flags = BLOCKDEV_FUA;
            }
            writes++;
            if (kind == 4) {
                ret = blockdev_write_zeroes(bd, off, len, 0);
            } else if (kind == 5) {
                ret = blockdev_discard(bd, off, len, 0);
            } else {
                memset(buf, (int)(0x20 + (seed * 31 + i) % 200), sizeof(buf));
                memcpy(buf, &i, sizeof(i));
                ret = blockdev_pwrite(bd, buf, len, off, flags);
                ret = ret == (int64_t)len ? 0 : ret;
            }
        }
        if (ret == -EIO) {
            break; /* the power was cut */
        }
        assert_int_equal(ret, 0);
    }
    return writes;
}

static const char *const modes[] = { "all", "subset:0.5", "prefix", "torn:0.5",
                                     "ignore-flush" };

/* Replay P's log onto a copy of the base with MODE and SEED to the mark
 * "powercut".
 */
static void
replay_cut(const Paths *p, const char *mode, uint64_t seed)
{
    WlogReplayOptions o = { .to_mark = "powercut", .cut = mode, .seed = seed };
    WlogReplayStats st;
    char *msg = NULL;
    bool wrote;

    copy_file(p->base, p->replay);
    assert_int_equal(wlog_replay(p->log, p->replay, &o, &st, &wrote, &msg), 0);
    assert_null(msg);
}

/* Does the live cut of MODE with SEED over a workload equal its replay? */
static void
live_vs_replay(const Paths *p, size_t m, uint64_t seed, unsigned *differs,
               unsigned *lossy)
{
    char rule[128];
    BlockDev *bd;

    bt_make_file(p->img, IMG_SIZE, (unsigned)seed + 1);
    copy_file(p->img, p->base);
    snprintf(rule, sizeof(rule),
             "after-writes=%" PRIu64 ",mode=%s,seed=%" PRIu64, 20 + seed % 17,
             modes[m], seed);
    /* a cache of 16k: some writes are destaged early */
    bd = open_logged(p, seed % 3 == 0 ? "16k" : "1M", rule);
    workload(bd, seed, 60);
    blockdev_close(bd);

    replay_cut(p, modes[m], seed);
    if (!same_files(p->img, p->replay)) {
        fail_msg("mode %s seed %" PRIu64 ": the replay differs from the "
                 "live cut",
                 modes[m], seed);
    }
    /* the seed matters: seed+1 keeps another part of the volatile set */
    replay_cut(p, modes[m], seed + 1);
    *differs += !same_files(p->img, p->replay);
    /* and a cut of mode all is what the cut could lose */
    replay_cut(p, "all", 0);
    *lossy += !same_files(p->img, p->replay);
}

static void
test_live_equals_replay(void **state)
{
    Paths *p = *state;

    for (size_t m = 0; m < TLBD_ARRAY_SIZE(modes); m++) {
        unsigned differs = 0, lossy = 0;
        for (uint64_t seed = 0; seed < SEEDS; seed++) {
            live_vs_replay(p, m, seed, &differs, &lossy);
        }
        printf("mode %s: %u of %d seeds kept something of the volatile "
               "set, seed+1 differs in %u\n",
               modes[m], lossy, SEEDS, differs);
        if (m == 0 || m == 4) {
            /* all and ignore-flush keep nothing, whatever the seed */
            assert_int_equal(differs, 0);
            assert_int_equal(lossy, 0);
        } else {
            assert_true(lossy > SEEDS / 2);
            assert_true(differs > lossy / 3);
        }
    }
}

/* The list of P's log as "FLAGS SECTOR NR" lines. */
static char *
listing(const Paths *p)
{
    WlogReader *r = NULL;
    char *msg = NULL, *out = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&out, &len);

    assert_int_equal(wlog_reader_open(p->log, &r, &msg), 0);
    for (uint64_t i = 0; i < wlog_reader_count(r); i++) {
        WlogEntry e;
        char flags[64];
        assert_int_equal(wlog_reader_entry(r, i, &e), 0);
        wlog_flags_str(e.flags, flags, sizeof(flags));
        fprintf(fp, "%s %" PRIu64 " %" PRIu64 "%s%s\n", flags, e.sector,
                e.nr_sectors, e.mark[0] ? " " : "", e.mark);
    }
    wlog_reader_close(r);
    fclose(fp);
    return out;
}

static void
write_at(BlockDev *bd, uint64_t sector, uint64_t n, unsigned flags)
{
    uint8_t buf[16 * SECTOR];

    memset(buf, (int)(sector + 1), sizeof(buf));
    assert_int_equal(
        blockdev_pwrite(bd, buf, n * SECTOR, sector * SECTOR, flags),
        (int64_t)(n * SECTOR));
}

/* Entries in the order a disk makes writes durable. */
static void
test_order(void **state)
{
    Paths *p = *state;
    BlockDev *bd;
    char *got;

    bt_make_file(p->img, IMG_SIZE, 0);
    bd = open_logged(p, "1M", "after-writes=7,mode=all");
    write_at(bd, 10, 2, 0);
    write_at(bd, 20, 1, 0);
    write_at(bd, 30, 4, BLOCKDEV_FUA); /* logged at once */
    assert_int_equal(blockdev_flush(bd), 0);
    write_at(bd, 40, 1, 0);
    assert_int_equal(blockdev_discard(bd, 50 * SECTOR, 2 * SECTOR, 0), 0);
    write_at(bd, 60, 1, BLOCKDEV_FUA);
    write_at(bd, 70, 3, 0); /* the 7th write: the cut */
    blockdev_close(bd);
    got = listing(p);
    assert_string_equal(got, "FUA 30 4\n"
                             "- 10 2\n"
                             "- 20 1\n"
                             "FLUSH 0 0\n"
                             "FUA 60 1\n"
                             "- 40 1\n"
                             "DISCARD 50 2\n"
                             "- 70 3\n"
                             "MARK 0 0 powercut\n");
    free(got);

    /* a mark where it is placed; an orderly close writes the volatile
     * set back, before a FLUSH */
    bt_make_file(p->img, IMG_SIZE, 0);
    bd = open_logged(p, "1M", NULL);
    write_at(bd, 1, 1, 0);
    assert_int_equal(blockdev_mark(bd, "here"), 0); /* where placed */
    blockdev_close(bd);
    got = listing(p);
    assert_string_equal(got, "MARK 0 0 here\n- 1 1\nFLUSH 0 0\n");
    free(got);
}

/* Without a cut a replay of the whole log equals the image after an
 * orderly close; the replay of a prefix continued with --from equals the
 * replay of the whole.
 */
static void
test_full_and_from(void **state)
{
    Paths *p = *state;
    WlogReplayStats st;
    char *msg = NULL;
    bool wrote;

    for (uint64_t seed = 0; seed < 20; seed++) {
        WlogReplayOptions o = { 0 };
        BlockDev *bd;
        uint64_t n;
        WlogReader *r = NULL;

        bt_make_file(p->img, IMG_SIZE, (unsigned)seed + 1);
        copy_file(p->img, p->base);
        bd = open_logged(p, seed % 2 ? "16k" : "1M", NULL);
        workload(bd, seed, 80);
        blockdev_close(bd);

        copy_file(p->base, p->replay);
        assert_int_equal(wlog_replay(p->log, p->replay, &o, &st, &wrote, &msg),
                         0);
        assert_true(same_files(p->img, p->replay));

        assert_int_equal(wlog_reader_open(p->log, &r, &msg), 0);
        n = wlog_reader_count(r);
        wlog_reader_close(r);
        copy_file(p->base, p->replay);
        o.has_limit = true;
        o.limit = n / 2;
        assert_int_equal(wlog_replay(p->log, p->replay, &o, &st, &wrote, &msg),
                         0);
        o.from = n / 2;
        o.limit = n;
        assert_int_equal(wlog_replay(p->log, p->replay, &o, &st, &wrote, &msg),
                         0);
        assert_true(same_files(p->img, p->replay));
    }
}

/* Make a small log with every kind of entry. */
static void
small_log(const Paths *p)
{
    BlockDev *bd;

    bt_make_file(p->img, IMG_SIZE, 3);
    copy_file(p->img, p->base);
    bd = open_logged(p, "1M", "after-writes=9,mode=subset:0.5,seed=3");
    write_at(bd, 2, 2, 0);
    write_at(bd, 4, 2, BLOCKDEV_FUA);
    assert_int_equal(blockdev_flush(bd), 0);
    write_at(bd, 8, 2, 0);
    workload(bd, 3, 40);
    blockdev_close(bd);
}

/* Replay with O onto a copy of the base: refused with a message that
 * contains WANT, the image untouched.
 */
static void
refused(const Paths *p, const WlogReplayOptions *o, const char *want)
{
    WlogReplayStats st;
    char *msg = NULL;
    bool wrote = true;

    copy_file(p->base, p->replay);
    assert_true(wlog_replay(p->log, p->replay, o, &st, &wrote, &msg) < 0);
    assert_false(wrote);
    assert_non_null(msg);
    if (!strstr(msg, want)) {
        fail_msg("'%s' does not say '%s'", msg, want);
    }
    free(msg);
    assert_true(same_files(p->base, p->replay));
}

static void
test_bad_input(void **state)
{
    Paths *p = *state;
    WlogReplayOptions o = { 0 };
    size_t len;
    uint8_t *log;
    char *cut;
    FILE *fp;

    small_log(p);
    o.to_mark = "nope";
    refused(p, &o, "--to-mark 'nope': no such mark");
    memset(&o, 0, sizeof(o));
    o.has_limit = true;
    o.limit = 1000;
    refused(p, &o, "--limit 1000: the log has only");
    memset(&o, 0, sizeof(o));
    o.cut = "sometimes";
    refused(p, &o, "'sometimes': unknown mode 'sometimes'");
    o.cut = "subset:2";
    refused(p, &o, "is not a probability");
    memset(&o, 0, sizeof(o));
    o.has_limit = true;
    o.limit = 2;
    o.from = 3;
    refused(p, &o, "--from 3");

    /* cut short at every length: refused, image untouched */
    log = bt_read_file(p->log, &len);
    cut = bt_path(p->dir, "cut");
    memset(&o, 0, sizeof(o));
    for (size_t l = 0; l < len; l++) {
        WlogReader *r = NULL;
        char *msg = NULL;
        fp = fopen(cut, "w");
        assert_int_equal(fwrite(log, 1, l, fp), l);
        assert_int_equal(fclose(fp), 0);
        assert_true(wlog_reader_open(cut, &r, &msg) < 0);
        assert_null(r);
        assert_non_null(msg);
        free(msg);
    }
    /* and garbage */
    fp = fopen(cut, "w");
    for (size_t i = 0; i < len; i++) {
        fputc((int)(i * 7919 % 251), fp);
    }
    assert_int_equal(fclose(fp), 0);
    free(p->log);
    p->log = cut;
    refused(p, &o, "not a write log");
    /* a bad flag in an entry */
    log[WLOG_SECTOR + 16] = 0x80;
    fp = fopen(cut, "w");
    assert_int_equal(fwrite(log, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    refused(p, &o, "entry 0 has unknown flags 0x80");
    free(log);
}

/* Threads writing, flushing and placing marks through the pool on one
 * logged cache small enough to destage (for TSan): the whole log's
 * replay equals the image after close.
 */
typedef struct Hammer {
    BlockDev *bd;
    uint32_t id;
} Hammer;

static void *
hammer(void *arg)
{
    Hammer *h = arg;

    for (uint32_t i = 1; i <= 200; i++) {
        uint64_t s = h->id * 16 + (i % 8) * 2;
        write_at(h->bd, s, 2, i % 13 == 0 ? BLOCKDEV_FUA : 0);
        if (i % 17 == 0) {
            assert_int_equal(blockdev_flush(h->bd), 0);
        }
        if (i % 50 == 0) {
            assert_int_equal(blockdev_mark(h->bd, "m"), 0);
        }
    }
    return NULL;
}

static void
test_threads(void **state)
{
    Paths *p = *state;
    WlogReplayOptions o = { 0 };
    WlogReplayStats st;
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;
    pthread_t t[4];
    Hammer h[4];
    bool wrote;

    bt_make_file(p->img, IMG_SIZE, 5);
    copy_file(p->img, p->base);
    blockdev_options_init(&opts);
    opts.offload = BLOCKDEV_OFFLOAD_ALWAYS;
    opts.volatile_cache = 8192;
    opts.log_writes = p->log;
    assert_int_equal(blockdev_open(p->img, &opts, &bd, &msg), 0);
    for (uint32_t i = 0; i < 4; i++) {
        h[i].bd = bd;
        h[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &h[i]), 0);
    }
    for (uint32_t i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    blockdev_close(bd);
    copy_file(p->base, p->replay);
    assert_int_equal(wlog_replay(p->log, p->replay, &o, &st, &wrote, &msg), 0);
    assert_true(same_files(p->img, p->replay));
}

int
main(void)
{
    if (!getenv("TLBD_TEST_DIR") && access("/dev/shm", W_OK) == 0) {
        setenv("TLBD_TEST_DIR", "/dev/shm", 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_and_from, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_equals_replay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
