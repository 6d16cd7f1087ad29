/* tlbd: the volatile write cache and power cuts (volatile-cache=,
 * powercut=), driven through BlockDev: the rule grammar and its messages;
 * reads that see the newest data while the cache destages; what each cut
 * mode leaves in the image over many seeds (every sector durable or one
 * written version, torn never mixing versions inside a sector, prefix
 * keeping prefixes, ignore-flush losing flushed data); the same image for
 * the same seed; the after= trigger; FUA writes and
 * destaged writes surviving; EIO after a cut; a known-unsafe protocol
 * caught; destaging in the background without a rule and not with one;
 * and threads hammering one cache (for TSan).
 */
#include "blockdrv-test.h"

#include <inttypes.h>
#include <pthread.h>
#include <time.h>

enum {
    SECTOR = 512,
    NSECTORS = 128,
    IMG_SIZE = NSECTORS * SECTOR,
    SEEDS = 1000,
    UNSAFE_SEEDS = 200,
};

static int
setup(void **state)
{
    *state = bt_fixture_new("vcache.img", IMG_SIZE, 0);
    return 0;
}

/* Open F's image with a cache of CACHE bytes and the rule RULE (NULL:
 * none), with OFFLOAD.
 */
static BlockDev *
open_offload(BtFixture *f, const char *cache, const char *rule,
             BlockDevOffload offload)
{
    return bt_open_cached(f->path, cache, rule, offload);
}

/* The same, every request on the calling thread. */
static BlockDev *
open_cached(BtFixture *f, const char *cache, const char *rule)
{
    return open_offload(f, cache, rule, BLOCKDEV_OFFLOAD_NEVER);
}

/* Fill sector SECTOR of version VERSION (0: the durable base). */
static void
version_sector(uint8_t *buf, uint32_t version, uint32_t sector)
{
    memset(buf, (int)(version * 7 + 1), SECTOR);
    memcpy(buf, &version, sizeof(version));
    memcpy(buf + 4, &sector, sizeof(sector));
}

/* Write version VERSION over sectors [FIRST, FIRST+COUNT). */
static void
write_version(BlockDev *bd, uint32_t version, uint32_t first, uint32_t count,
              unsigned flags)
{
    uint8_t *buf = malloc((size_t)count * SECTOR);

    for (uint32_t i = 0; i < count; i++) {
        version_sector(buf + (size_t)i * SECTOR, version, first + i);
    }
    assert_int_equal(blockdev_pwrite(bd, buf, (size_t)count * SECTOR,
                                     (uint64_t)first * SECTOR, flags),
                     (int64_t)count * SECTOR);
    free(buf);
}

/* Which version sector S of the image holds, or -1 for anything else. */
static int
sector_version(const uint8_t *img, uint32_t s)
{
    uint8_t want[SECTOR];
    uint32_t version;

    memcpy(&version, img + (size_t)s * SECTOR, sizeof(version));
    version_sector(want, version, s);
    return memcmp(want, img + (size_t)s * SECTOR, SECTOR) == 0 ? (int)version
                                                               : -1;
}

/* The base: version 0 everywhere, made durable by a flush. */
static void
write_base(BlockDev *bd)
{
    write_version(bd, 0, 0, NSECTORS, 0);
    assert_int_equal(blockdev_flush(bd), 0);
}

static uint8_t *
image(BtFixture *f)
{
    size_t len;
    uint8_t *img = bt_read_file(f->path, &len);

    assert_int_equal(len, IMG_SIZE);
    return img;
}

static void
test_grammar(void **state)
{
    static const struct {
        const char *key, *value, *msg;
    } bad[] = {
        { "powercut", "after-writes=5,mode=sometimes",
          "powercut: 'after-writes=5,mode=sometimes': unknown mode "
          "'sometimes' (all, subset:P, prefix, torn:P, ignore-flush) at "
          "column 21" },
        { "powercut", "after-writes=x",
          "powercut: 'after-writes=x': 'x' is not a whole number of at "
          "least 1 at column 14" },
        { "powercut", "mode=subset:2,after-writes=1",
          "powercut: 'mode=subset:2,after-writes=1': '2' is not a "
          "probability from 0 to 1 at column 13" },
        { "powercut", "mode=all",
          "powercut: 'mode=all': no trigger (after-writes=N, "
          "after-flushes=N, after=DURATION or at-mark=NAME) at column 1" },
        { "powercut", "after=5s,colour=red",
          "powercut: 'after=5s,colour=red': unknown key 'colour' "
          "(after-writes, after-flushes, after, at-mark, mode, seed) at "
          "column 10" },
        { "powercut", "at-mark=two words",
          "powercut: 'at-mark=two words': 'two words' is not a mark name "
          "(1 to 31 printable characters, no spaces) at column 9" },
        { "powercut", "mode=all,at-mark=",
          "powercut: 'mode=all,at-mark=': '' is not a mark name (1 to 31 "
          "printable characters, no spaces) at column 18" },
        { "powercut", "at-mark=abcdefghijklmnopqrstuvwxyz012345",
          "powercut: 'at-mark=abcdefghijklmnopqrstuvwxyz012345': "
          "'abcdefghijklmnopqrstuvwxyz012345' is not a mark name (1 to 31 "
          "printable characters, no spaces) at column 9" },
        { "powercut", "after-flushes=1,,seed=1",
          "powercut: 'after-flushes=1,,seed=1': empty item at column 17" },
        { "powercut", "after-writes=1,mode=prefix:0.5",
          "powercut: 'after-writes=1,mode=prefix:0.5': mode prefix takes "
          "no ':P' at column 27" },
        { "volatile-cache", "0",
          "volatile-cache: '0' is not a size from 1 byte to the physical "
          "memory" },
        { "volatile-cache", "abc",
          "volatile-cache: 'abc' is not a size from 1 byte to the physical "
          "memory" },
        { "volatile-cache", "1000000T",
          "volatile-cache: '1000000T' is not a size from 1 byte to the "
          "physical memory" },
    };
    static const char *const good[] = {
        "after-writes=5000,mode=subset:0.5,seed=7",
        "after-flushes=3,mode=torn",
        "after=500ms,mode=prefix",
        "after-writes=1,mode=ignore-flush,seed=0",
        "after-writes=1,mode=all",
        "at-mark=commit-1,mode=subset:0.5,seed=3",
        "at-mark=abcdefghijklmnopqrstuvwxyz01234",
    };
    BlockDevOptions opts;

    (void)state;
    blockdev_options_init(&opts);
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(bad); i++) {
        char *msg = NULL;
        assert_int_equal(
            blockdev_parse_option(&opts, bad[i].key, bad[i].value, &msg),
            -EINVAL);
        assert_non_null(msg);
        assert_string_equal(msg, bad[i].msg);
        free(msg);
    }
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(good); i++) {
        char *msg = NULL;
        assert_int_equal(
            blockdev_parse_option(&opts, "powercut", good[i], &msg), 0);
        assert_null(msg);
    }
}

/* A rule without a cache, or a growable image with one: refused at open,
 * the image untouched.
 */
static void
test_open_refused(void **state)
{
    BtFixture *f = *state;
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    char *msg = NULL;

    blockdev_options_init(&opts);
    opts.powercut = "after-writes=1";
    assert_int_equal(blockdev_open(f->path, &opts, &bd, &msg), -EINVAL);
    assert_string_equal(msg, "powercut: 'after-writes=1' needs a "
                             "volatile-cache=SIZE");
    free(msg);
    blockdev_options_init(&opts);
    opts.volatile_cache = 1 << 20;
    opts.growable = true;
    assert_int_equal(blockdev_open(f->path, &opts, &bd, &msg), -EINVAL);
    assert_non_null(msg);
    free(msg);
    assert_null(bd);
    uint8_t *img = image(f);
    assert_true(bt_is_zero(img, IMG_SIZE));
    free(img);
}

/* Random writes over a small device with a cache too small for them, and
 * flushes now and then: every read sees the newest data, and an orderly
 * close leaves exactly the model in the image.
 */
static void
test_reads_newest(void **state)
{
    BtFixture *f = *state;
    uint8_t *model = calloc(1, IMG_SIZE);
    uint8_t *got = malloc(IMG_SIZE);
    uint64_t rng = 12345;

    for (unsigned round = 0; round < 20; round++) {
        /* on this thread; or inline, on workers and destaging in the
         * background (no rule) */
        BlockDev *bd =
            round % 2 ? open_cached(f, "6k", NULL)
                      : open_offload(f, "6k", NULL, BLOCKDEV_OFFLOAD_BLOCKING);
        for (uint32_t w = 1; w <= 200; w++) {
            uint32_t first, count;
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            first = (uint32_t)(rng >> 33) % 16;
            count = 1 + (uint32_t)(rng >> 20) % 4;
            if (first + count > 16) {
                count = 16 - first;
            }
            if ((rng >> 40) % 7 == 0) {
                assert_int_equal(
                    blockdev_write_zeroes(bd, (uint64_t)first * SECTOR,
                                          (uint64_t)count * SECTOR, 0),
                    0);
                memset(model + (size_t)first * SECTOR, 0,
                       (size_t)count * SECTOR);
            } else {
                write_version(bd, round * 1000 + w, first, count,
                              (rng >> 50) % 11 == 0 ? BLOCKDEV_FUA : 0);
                for (uint32_t i = 0; i < count; i++) {
                    version_sector(model + (size_t)(first + i) * SECTOR,
                                   round * 1000 + w, first + i);
                }
            }
            if ((rng >> 45) % 13 == 0) {
                assert_int_equal(blockdev_flush(bd), 0);
            }
            assert_int_equal(blockdev_pread(bd, got, 16 * SECTOR, 0),
                             16 * SECTOR);
            assert_memory_equal(got, model, 16 * SECTOR);
        }
        blockdev_close(bd);
        uint8_t *img = image(f);
        assert_memory_equal(img, model, IMG_SIZE);
        free(img);
    }
    free(model);
    free(got);
}

/* The four basic cases of the model, with mode all. */
static void
test_basic_cuts(void **state)
{
    BtFixture *f = *state;
    BlockDev *bd;
    uint8_t *img;

    /* write, cut: lost (the base is flushed first) */
    bd = open_cached(f, "1M", "after-writes=2,mode=all");
    write_base(bd);
    write_version(bd, 1, 0, 8, 0);
    blockdev_close(bd);
    img = image(f);
    for (uint32_t s = 0; s < NSECTORS; s++) {
        assert_int_equal(sector_version(img, s), 0);
    }
    free(img);

    /* write, flush, cut: kept; write A, flush, write B over A, cut: A */
    bd = open_cached(f, "1M", "after-writes=4,mode=all");
    write_base(bd);
    write_version(bd, 1, 0, 8, 0);
    assert_int_equal(blockdev_flush(bd), 0);
    write_version(bd, 2, 10, 8, 0);
    write_version(bd, 3, 0, 8, 0);
    blockdev_close(bd);
    img = image(f);
    for (uint32_t s = 0; s < NSECTORS; s++) {
        assert_int_equal(sector_version(img, s), s < 8 ? 1 : 0);
    }
    free(img);

    /* FUA write: kept; and the older cached write under it, kept by a cut
     * that keeps every volatile write, must not land over it */
    bd = open_cached(f, "1M", "after-writes=4,mode=subset:1");
    write_base(bd);
    write_version(bd, 1, 0, 16, 0);
    write_version(bd, 2, 4, 4, BLOCKDEV_FUA);
    write_version(bd, 3, 32, 4, BLOCKDEV_FUA);
    blockdev_close(bd);
    img = image(f);
    for (uint32_t s = 0; s < NSECTORS; s++) {
        int want = s >= 32 && s < 36 ? 3 : s >= 4 && s < 8 ? 2 : s < 16 ? 1 : 0;
        assert_int_equal(sector_version(img, s), want);
    }
    free(img);

    /* FUA survives mode all too */
    bd = open_cached(f, "1M", "after-writes=3,mode=all");
    write_base(bd);
    write_version(bd, 1, 0, 4, 0);
    write_version(bd, 2, 8, 4, BLOCKDEV_FUA);
    blockdev_close(bd);
    img = image(f);
    for (uint32_t s = 0; s < NSECTORS; s++) {
        assert_int_equal(sector_version(img, s), s >= 8 && s < 12 ? 2 : 0);
    }
    free(img);
}

/* After a cut every request fails with EIO, and close writes nothing. */
static void
test_dead_after_cut(void **state)
{
    BtFixture *f = *state;
    BlockDev *bd = open_cached(f, "1M", "after-flushes=2,mode=all");
    uint8_t buf[SECTOR] = { 0 };

    write_base(bd); /* flush 1 */
    write_version(bd, 1, 0, 1, 0);
    assert_int_equal(blockdev_flush(bd), 0); /* flush 2: kept, then cut */
    assert_int_equal(blockdev_pread(bd, buf, SECTOR, 0), -EIO);
    assert_int_equal(blockdev_pwrite(bd, buf, SECTOR, 0, 0), -EIO);
    assert_int_equal(blockdev_pwrite(bd, buf, SECTOR, 0, BLOCKDEV_FUA), -EIO);
    assert_int_equal(blockdev_flush(bd), -EIO);
    assert_int_equal(blockdev_discard(bd, 0, SECTOR, 0), -EIO);
    assert_int_equal(blockdev_write_zeroes(bd, 0, SECTOR, 0), -EIO);
    assert_int_equal(blockdev_lseek(bd, 0, SEEK_DATA), -EIO);
    blockdev_close(bd);
    uint8_t *img = image(f);
    assert_int_equal(sector_version(img, 0), 1);
    free(img);
}

/* A volatile workload: NW writes after the flushed base, each of
 * 1..8 sectors; OVERLAP lets them overlap, else each has its own
 * sectors.  Fills FIRST and COUNT per write (1-based versions).
 */
static void
volatile_writes(BlockDev *bd, uint64_t seed, bool overlap, uint32_t nw,
                uint32_t *first, uint32_t *count)
{
    uint64_t rng = seed * 2654435761u + 1;
    uint32_t next = 0;

    for (uint32_t w = 1; w <= nw; w++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        count[w] = 1 + (uint32_t)(rng >> 33) % 8;
        if (overlap) {
            first[w] = (uint32_t)(rng >> 40) % (NSECTORS - count[w]);
        } else {
            first[w] = next;
            next += count[w];
        }
        write_version(bd, w, first[w], count[w], 0);
    }
}

enum { NW = 12 };

/* Run one cut of MODE with SEED over NW writes; the image in *IMG. */
static uint8_t *
cut_once(BtFixture *f, const char *mode, uint64_t seed, bool overlap,
         uint32_t *first, uint32_t *count)
{
    char rule[128];
    BlockDev *bd;

    /* the base is write 1, the volatile ones 2..NW+1 */
    snprintf(rule, sizeof(rule), "after-writes=%d,mode=%s,seed=%" PRIu64,
             NW + 1, mode, seed);
    bd = open_cached(f, "1M", rule);
    write_base(bd);
    volatile_writes(bd, seed, overlap, NW, first, count);
    blockdev_close(bd);
    return image(f);
}

/* Every sector holds the base or a version some write put there. */
static void
check_versions(const uint8_t *img, const uint32_t *first, const uint32_t *count)
{
    for (uint32_t s = 0; s < NSECTORS; s++) {
        int v = sector_version(img, s);
        assert_true(v >= 0 && v <= NW);
        if (v > 0) {
            assert_true(s >= first[v] && s < first[v] + count[v]);
        }
    }
}

/* How many sectors of write W hold version W. */
static uint32_t
sectors_kept(const uint8_t *img, uint32_t w, const uint32_t *first,
             const uint32_t *count)
{
    uint32_t n = 0;

    for (uint32_t s = first[w]; s < first[w] + count[w]; s++) {
        n += sector_version(img, s) == (int)w;
    }
    return n;
}

static void
test_subset_seeds(void **state)
{
    BtFixture *f = *state;
    uint32_t first[NW + 1], count[NW + 1];
    unsigned kept = 0, total = 0;

    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        bool overlap = seed % 2 == 0;
        uint8_t *img = cut_once(f, "subset:0.5", seed, overlap, first, count);
        check_versions(img, first, count);
        if (!overlap) {
            /* a write is kept whole or not at all */
            for (uint32_t w = 1; w <= NW; w++) {
                uint32_t n = sectors_kept(img, w, first, count);
                assert_true(n == 0 || n == count[w]);
                kept += n > 0;
                total++;
            }
        }
        free(img);
    }
    /* about half; surely neither all nor none */
    assert_true(kept > total / 3 && kept < total * 2 / 3);
}

static void
test_torn_seeds(void **state)
{
    BtFixture *f = *state;
    uint32_t first[NW + 1], count[NW + 1];
    unsigned partial = 0;

    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        bool overlap = seed % 2 == 0;
        uint8_t *img = cut_once(f, "torn", seed, overlap, first, count);
        /* sector_version is -1 for a sector mixing two versions */
        check_versions(img, first, count);
        if (!overlap) {
            for (uint32_t w = 1; w <= NW; w++) {
                uint32_t n = sectors_kept(img, w, first, count);
                partial += n > 0 && n < count[w];
            }
        }
        free(img);
    }
    assert_true(partial > 0); /* writes really tear */
}

static void
test_prefix_seeds(void **state)
{
    BtFixture *f = *state;
    uint32_t first[NW + 1], count[NW + 1];
    unsigned lengths[NW + 1] = { 0 };

    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        uint8_t *img = cut_once(f, "prefix", seed, false, first, count);
        uint32_t k = 0;
        check_versions(img, first, count);
        while (k < NW &&
               sectors_kept(img, k + 1, first, count) == count[k + 1]) {
            k++;
        }
        /* writes 1..k kept whole, none after */
        for (uint32_t w = k + 1; w <= NW; w++) {
            assert_int_equal(sectors_kept(img, w, first, count), 0);
        }
        lengths[k]++;
        free(img);
    }
    /* the prefix length varies: an empty one and a full one both occur */
    assert_true(lengths[0] > 0 && lengths[NW] > 0);
}

/* The same rule and requests give the same image. */
static void
test_deterministic(void **state)
{
    BtFixture *f = *state;
    uint32_t first[NW + 1], count[NW + 1];
    static const char *const modes[] = { "subset:0.5", "torn:0.3", "prefix" };

    for (size_t m = 0; m < TLBD_ARRAY_SIZE(modes); m++) {
        uint8_t *a = cut_once(f, modes[m], 7, true, first, count);
        uint8_t *b = cut_once(f, modes[m], 7, true, first, count);
        uint8_t *c = cut_once(f, modes[m], 8, true, first, count);
        assert_memory_equal(a, b, IMG_SIZE);
        /* and another seed another one (for these two seeds) */
        assert_memory_not_equal(a, c, IMG_SIZE);
        free(a);
        free(b);
        free(c);
    }
}

/* after=DURATION: the first request after it fails, the power is off. */
static void
test_after_duration(void **state)
{
    BtFixture *f = *state;
    BlockDev *bd = open_cached(f, "1M", "after=100ms,mode=all");
    struct timespec ts = { 0, 150 * 1000 * 1000 };
    uint8_t buf[SECTOR];
    uint8_t *img;

    write_base(bd);
    write_version(bd, 1, 0, 4, 0);
    nanosleep(&ts, NULL);
    assert_int_equal(blockdev_pread(bd, buf, SECTOR, 0), -EIO);
    blockdev_close(bd);
    img = image(f);
    for (uint32_t s = 0; s < NSECTORS; s++) {
        assert_int_equal(sector_version(img, s), 0);
    }
    free(img);
}

/* Marks: names checked, counted with or without a cache; at-mark cuts as
 * its mark is placed (after every write before it), not at another mark.
 */
static void
test_at_mark(void **state)
{
    BtFixture *f = *state;
    BlockDev *bd;
    BlockDevStats st;
    uint8_t buf[SECTOR];
    uint8_t *img;

    assert_false(blockdev_is_mark_name(NULL));
    assert_false(blockdev_is_mark_name(""));
    assert_false(blockdev_is_mark_name("a b"));
    assert_false(blockdev_is_mark_name("tab\there"));
    assert_false(blockdev_is_mark_name("\xc3\xa9t\xc3\xa9"));
    assert_false(blockdev_is_mark_name("abcdefghijklmnopqrstuvwxyz012345"));
    assert_true(blockdev_is_mark_name("abcdefghijklmnopqrstuvwxyz01234"));
    assert_true(blockdev_is_mark_name("a"));

    /* no cache: counted, nothing else */
    assert_int_equal(blockdev_open(f->path, NULL, &bd, NULL), 0);
    assert_int_equal(blockdev_mark(bd, "one"), 0);
    assert_int_equal(blockdev_mark(bd, "bad name"), -EINVAL);
    blockdev_get_stats(bd, &st);
    assert_int_equal(st.marks, 1);
    blockdev_close(bd);

    bd = open_cached(f, "1M", "at-mark=commit,mode=subset:1");
    write_base(bd);
    write_version(bd, 1, 0, 4, 0);
    assert_int_equal(blockdev_mark(bd, "other"), 0);
    write_version(bd, 2, 8, 4, 0);
    assert_int_equal(blockdev_pread(bd, buf, SECTOR, 0), SECTOR);
    assert_int_equal(blockdev_mark(bd, "commit"), 0); /* cut: keep all */
    assert_int_equal(blockdev_pread(bd, buf, SECTOR, 0), -EIO);
    assert_int_equal(blockdev_mark(bd, "later"), -EIO);
    blockdev_get_stats(bd, &st);
    assert_int_equal(st.marks, 2);
    blockdev_close(bd);
    img = image(f);
    for (uint32_t s = 0; s < NSECTORS; s++) {
        assert_int_equal(sector_version(img, s), s < 4    ? 1
                                                 : s < 8  ? 0
                                                 : s < 12 ? 2
                                                          : 0);
    }
    free(img);

    /* mode all at the mark: the volatile set before it is lost */
    bd = open_cached(f, "1M", "at-mark=commit,mode=all");
    write_base(bd);
    write_version(bd, 1, 0, 4, 0);
    assert_int_equal(blockdev_mark(bd, "commit"), 0);
    blockdev_close(bd);
    img = image(f);
    for (uint32_t s = 0; s < NSECTORS; s++) {
        assert_int_equal(sector_version(img, s), 0);
    }
    free(img);
}

/* ignore-flush: flushed data is lost, FUA data is not. */
static void
test_ignore_flush(void **state)
{
    BtFixture *f = *state;
    BlockDev *bd;
    uint8_t *img;

    for (uint64_t seed = 0; seed < 20; seed++) {
        char rule[96];
        bt_make_file(f->path, IMG_SIZE, 0);
        snprintf(rule, sizeof(rule),
                 "after-writes=3,mode=ignore-flush,seed=%" PRIu64, seed);
        bd = open_cached(f, "1M", rule);
        write_version(bd, 1, 0, 8, 0);
        assert_int_equal(blockdev_flush(bd), 0);
        write_version(bd, 2, 16, 4, BLOCKDEV_FUA);
        write_version(bd, 3, 32, 4, 0);
        blockdev_close(bd);
        img = image(f);
        for (uint32_t s = 0; s < 8; s++) {
            assert_int_not_equal(sector_version(img, s), 1);
        }
        for (uint32_t s = 16; s < 20; s++) {
            assert_int_equal(sector_version(img, s), 2);
        }
        free(img);
    }
}

/* A cache of a little more than 3 writes of 4k and 16 writes: the cache
 * destages early, the destaged writes survive a cut of mode all, and
 * reads before the cut see every write.
 */
static void
test_destage_survives(void **state)
{
    BtFixture *f = *state;
    uint8_t got[8 * SECTOR];
    unsigned survived_total = 0;

    for (uint64_t seed = 0; seed < 10; seed++) {
        char rule[96];
        unsigned survived = 0;
        BlockDev *bd;
        uint8_t *img;

        bt_make_file(f->path, IMG_SIZE, 0);
        snprintf(rule, sizeof(rule), "after-writes=16,mode=all,seed=%" PRIu64,
                 seed);
        bd = open_cached(f, "13k", rule);
        for (uint32_t w = 1; w <= 16; w++) {
            write_version(bd, w, (w - 1) * 8, 8, 0);
            if (w < 16) {
                for (uint32_t v = 1; v <= w; v++) {
                    uint8_t want[SECTOR];
                    assert_int_equal(blockdev_pread(bd, got, sizeof(got),
                                                    (v - 1) * 8 * SECTOR),
                                     (int64_t)sizeof(got));
                    version_sector(want, v, (v - 1) * 8);
                    assert_memory_equal(got, want, SECTOR);
                }
            }
        }
        blockdev_close(bd);
        img = image(f);
        for (uint32_t w = 1; w <= 16; w++) {
            uint32_t n = 0;
            for (uint32_t s = (w - 1) * 8; s < w * 8; s++) {
                n += sector_version(img, s) == (int)w;
            }
            assert_true(n == 0 || n == 8);
            survived += n == 8;
        }
        /* at most 3 fit: at least 13 were destaged, and survive */
        assert_true(survived >= 13 && survived < 16);
        survived_total += survived;
        free(img);
    }
    assert_true(survived_total > 0);
}

/* The known-unsafe protocol: data block, then a commit record pointing to
 * it.  Without a flush between, some crash state holds the commit without
 * the data; with one, none does.
 */
static unsigned
commits_without_data(BtFixture *f, bool flush_between)
{
    unsigned bad = 0;

    for (uint64_t seed = 0; seed < UNSAFE_SEEDS; seed++) {
        char rule[96];
        BlockDev *bd;
        uint8_t *img;

        bt_make_file(f->path, IMG_SIZE, 0);
        snprintf(rule, sizeof(rule),
                 "after-writes=2,mode=subset:0.5,seed=%" PRIu64, seed);
        bd = open_cached(f, "1M", rule);
        write_version(bd, 7, 64, 8, 0); /* the data */
        if (flush_between) {
            assert_int_equal(blockdev_flush(bd), 0);
        }
        write_version(bd, 9, 0, 1, 0); /* the commit record */
        blockdev_close(bd);
        img = image(f);
        bad += sector_version(img, 0) == 9 && sector_version(img, 64) != 7;
        free(img);
    }
    return bad;
}

static void
test_unsafe_protocol(void **state)
{
    BtFixture *f = *state;

    assert_true(commits_without_data(f, false) > 0);
    assert_int_equal(commits_without_data(f, true), 0);
}

/* Threads writing, reading back and flushing their own ranges of one
 * cache, through the pool, with a cache small enough to destage.
 */
typedef struct Hammer {
    BlockDev *bd;
    uint32_t id;
} Hammer;

/* Without a rule, a cache filled past 7/8 destages in the background, with
 * no write waiting, down to 3/4; with a rule it destages only when a
 * write needs room, so that a workload and a seed cut the same way.
 */
static void
test_background(void **state)
{
    BtFixture *f = *state;
    uint8_t *got = malloc(IMG_SIZE);
    BlockDevStats st;

    for (int rule = 0; rule < 2; rule++) {
        BlockDev *bd =
            open_offload(f, "64k", rule ? "after-writes=1000,mode=all" : NULL,
                         BLOCKDEV_OFFLOAD_BLOCKING);
        /* 14 writes of 4k: over 7/8 of 64k with their bookkeeping */
        for (uint32_t w = 0; w < 14; w++) {
            write_version(bd, 100 + w, w * 8, 8, 0);
        }
        for (int tries = 0; tries < 500; tries++) {
            blockdev_get_stats(bd, &st);
            if (st.destaged >= 3) {
                break;
            }
            usleep(10000);
        }
        if (rule) {
            assert_int_equal(st.destaged, 0);
            assert_int_equal(st.volatile_bytes, 14 * 4096);
        } else {
            /* 3/4 of 64k holds 11 of them at most */
            assert_true(st.destaged >= 3);
            assert_true(st.volatile_bytes <= 11 * 4096);
        }
        assert_int_equal(blockdev_pread(bd, got, 14 * 4096, 0), 14 * 4096);
        for (uint32_t s = 0; s < 14 * 8; s++) {
            uint8_t want[SECTOR];
            version_sector(want, 100 + s / 8, s);
            assert_memory_equal(got + (size_t)s * SECTOR, want, SECTOR);
        }
        blockdev_close(bd);
    }
    free(got);
}

static void *
hammer(void *arg)
{
    Hammer *h = arg;
    uint8_t buf[2 * SECTOR], want[2 * SECTOR];

    for (uint32_t i = 1; i <= 300; i++) {
        uint32_t s = h->id * 16 + (i % 8) * 2;
        version_sector(want, i, s);
        version_sector(want + SECTOR, i, s + 1);
        assert_int_equal(blockdev_pwrite(h->bd, want, sizeof(want),
                                         (uint64_t)s * SECTOR,
                                         i % 17 == 0 ? BLOCKDEV_FUA : 0),
                         (int64_t)sizeof(want));
        assert_int_equal(
            blockdev_pread(h->bd, buf, sizeof(buf), (uint64_t)s * SECTOR),
            (int64_t)sizeof(buf));
        assert_memory_equal(buf, want, sizeof(buf));
        if (i % 29 == 0) {
            assert_int_equal(blockdev_flush(h->bd), 0);
        }
    }
    return NULL;
}

static void
test_threads(void **state)
{
    BtFixture *f = *state;
    BlockDev *bd = open_offload(f, "8k", NULL, BLOCKDEV_OFFLOAD_ALWAYS);
    pthread_t t[4];
    Hammer h[4];

    for (uint32_t i = 0; i < 4; i++) {
        h[i].bd = bd;
        h[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &h[i]), 0);
    }
    for (uint32_t i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    blockdev_close(bd);
}

int
main(void)
{
    /* Thousands of crash states, each with its fdatasyncs: on a memory
     * file system unless the caller chose a directory.  What the cache
     * does does not depend on the file system.
     */
    if (!getenv("TLBD_TEST_DIR") && access("/dev/shm", W_OK) == 0) {
        setenv("TLBD_TEST_DIR", "/dev/shm", 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grammar),
        cmocka_unit_test_setup_teardown(test_open_refused, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_reads_newest, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_basic_cuts, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_dead_after_cut, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_subset_seeds, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_torn_seeds, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_prefix_seeds, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_deterministic, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_after_duration, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_ignore_flush, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_at_mark, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_destage_survives, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_protocol, setup,
                                        bt_teardown),
        cmocka_unit_test_setup_teardown(test_background, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, bt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
