/* tlbd: the commands of the control channel (ctl.c serves the socket):
 * one table, commands[], with each command's words, help and function.
 * A new command is one row and one function here; tlbd(1) "TLBD CTL"
 * documents them.
 *
 * Threads: the thread "ctl" only.  The commands call BlockDev functions
 * any thread may call (blockdev_mark, blockdev_flush, blockdev_get_stats),
 * paio's counters (paio_dev_get_latency, paio_dev_get_pool_stats), the
 * cache's vcache_powercut, and the front end's stats hook.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "parse.h"
#include "util.h"
#include "vcache.h"
#include "blockdev-int.h"

#define MAX_WORDS 8

/* A command: 0, or -errno with *ERRMSG.  ARGV[0] is its name. */
typedef int CtlCommandFn(BlockDev *bd, int argc, char **argv, FILE *out,
                         char **errmsg);

static CtlCommandFn cmd_help, cmd_mark, cmd_powercut, cmd_flush, cmd_stats,
    cmd_stats_raw;

static const struct {
    const char *name;
    const char *args;
    int min_args, max_args; /* after the name */
    CtlCommandFn *fn;
    const char *help;
} commands[] = {
    { "mark", "NAME", 1, 1, cmd_mark,
      "place the mark NAME (a powercut rule's at-mark=NAME cuts there)" },
    { "powercut", "[MODE] [seed=N]", 0, 2, cmd_powercut,
      "cut the power now (needs volatile-cache; default: the rule's mode "
      "and seed, or all)" },
    { "flush", "", 0, 0, cmd_flush,
      "write the volatile set to the image and fdatasync" },
    { "stats", "", 0, 0, cmd_stats, "the counters, one key=value a line" },
    { "stats-raw", "", 0, 0, cmd_stats_raw,
      "the counters, the pool and the latency histograms (for tlbd stat)" },
    { "help", "", 0, 0, cmd_help, "list the commands" },
};

static int
cmd_help(BlockDev *bd, int argc, char **argv, FILE *out, char **errmsg)
{
    (void)bd;
    (void)argc;
    (void)argv;
    (void)errmsg;
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(commands); i++) {
        fprintf(out, "%s%s%s: %s\n", commands[i].name,
                *commands[i].args ? " " : "", commands[i].args,
                commands[i].help);
    }
    return 0;
}

static int
cmd_mark(BlockDev *bd, int argc, char **argv, FILE *out, char **errmsg)
{
    int ret = blockdev_mark(bd, argv[1]);

    (void)argc;
    (void)out;
    if (ret == -EINVAL) {
        return blockdev_fail(errmsg, ret, "mark: '%s' %s", argv[1],
                             BLOCKDEV_MARK_REASON);
    }
    if (ret == -EIO) {
        return blockdev_fail(errmsg, ret, "mark: the power is cut");
    }
    if (ret < 0) {
        return blockdev_fail(errmsg, ret, "mark: %s", strerror(-ret));
    }
    return 0;
}

/* powercut [MODE] [seed=N]: MODE as powercut= spells it (mode= may
 * precede it), in either order.
 */
static int
cmd_powercut(BlockDev *bd, int argc, char **argv, FILE *out, char **errmsg)
{
    Vcache *vc = bd->vcache;
    bool have_mode = false, have_seed = false;
    PowercutRule rule;
    char report[320];
    int ret;

    if (!vc) {
        return blockdev_fail(errmsg, -ENOTSUP,
                             "powercut needs a volatile cache "
                             "(volatile-cache=SIZE)");
    }
    vcache_rule(vc, &rule);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!have_seed && strncmp(a, "seed=", 5) == 0) {
            if (tlbd_parse_uint(a + 5, UINT64_MAX, &rule.seed) < 0) {
                return blockdev_fail(errmsg, -EINVAL,
                                     "powercut: '%s' is not a whole number",
                                     a + 5);
            }
            have_seed = true;
            continue;
        }
        if (!have_mode && strncmp(a, "mode=", 5) == 0) {
            a += 5;
        }
        if (have_mode || strchr(a, '=')) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "powercut: unexpected '%s' (powercut "
                                 "[MODE] [seed=N])",
                                 argv[i]);
        }
        ret = powercut_parse_mode(a, &rule, errmsg);
        if (ret < 0) {
            return ret;
        }
        have_mode = true;
    }
    ret = vcache_powercut(vc, &rule, report, sizeof(report));
    if (ret == -EALREADY) {
        return blockdev_fail(errmsg, ret,
                             "powercut: the power is cut "
                             "already");
    }
    fprintf(out, "%s\n", report);
    if (ret < 0) {
        return blockdev_fail(errmsg, ret,
                             "powercut: writing the kept writes: %s",
                             strerror(-ret));
    }
    return 0;
}

static int
cmd_flush(BlockDev *bd, int argc, char **argv, FILE *out, char **errmsg)
{
    int ret = blockdev_flush(bd);

    (void)argc;
    (void)argv;
    (void)out;
    if (ret < 0) {
        return blockdev_fail(errmsg, ret, "flush: %s", strerror(-ret));
    }
    return 0;
}

typedef struct StatKey {
    const char *key;
    uint64_t value;
} StatKey;

/* The lines of `stats`: the counters, then the front end's. */
static void
print_stats(BlockDev *bd, FILE *out)
{
    BlockDevStats st;

    blockdev_get_stats(bd, &st);
    const StatKey keys[] = {
        { "volatile_cache", st.volatile_cache },
        { "volatile_bytes", st.volatile_bytes },
        { "volatile_writes", st.volatile_writes },
        { "epoch", st.epoch },
        { "destaged", st.destaged },
        { "cache_writes", st.cache_writes },
        { "marks", st.marks },
        { "dead", st.dead },
        { "in_flight", st.in_flight },
        { "reads", st.reads },
        { "writes", st.writes },
        { "flushes", st.flushes },
        { "discards", st.discards },
        { "zeroes", st.zeroes },
        { "bytes_read", st.bytes_read },
        { "bytes_written", st.bytes_written },
        { "errors", st.errors },
        { "inline_ops", st.inline_ops },
    };
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(keys); i++) {
        fprintf(out, "%s=%" PRIu64 "\n", keys[i].key, keys[i].value);
    }
    if (bd->stats_hook) {
        bd->stats_hook(bd->stats_opaque, out);
    }
}

static int
cmd_stats(BlockDev *bd, int argc, char **argv, FILE *out, char **errmsg)
{
    (void)argc;
    (void)argv;
    (void)errmsg;
    print_stats(bd, out);
    return 0;
}

/* What `tlbd stat` differences (tlbd(1) "TLBD STAT" reads it): a format
 * number, the server's monotonic clock, the lines of `stats`, the
 * requests of every kind, the pool's workers, and per request kind its latency
 * histogram since the start, "lat_KIND=BUCKET:COUNT,..." with the buckets of
 * core/histogram.h (hist_sub_bits of them per octave) that are not empty.
 */
static int
cmd_stats_raw(BlockDev *bd, int argc, char **argv, FILE *out, char **errmsg)
{
    uint64_t buckets[HIST_BUCKETS];
    uint64_t requests = 0;
    ThreadletStats ts;
    PaioStats ps;

    (void)argc;
    (void)argv;
    (void)errmsg;
    fprintf(out, "format=%d\ntime_ns=%" PRIu64 "\n", CTL_STATS_RAW_FORMAT,
            tlbd_now_ns());
    print_stats(bd, out);
    paio_dev_get_stats(bd->dev, &ps);
    for (int type = 0; type < PAIO_NR_TYPES; type++) {
        requests += ps.ops[type];
    }
    fprintf(out, "requests=%" PRIu64 "\n", requests);
    paio_dev_get_pool_stats(bd->dev, &ts);
    fprintf(out,
            "pool_threads=%u\npool_idle=%u\npool_max=%u\n"
            "pool_queued=%" PRIu64 "\nhist_sub_bits=%d\n",
            ts.cur_threads, ts.idle_threads, ts.max_threads, ts.queued,
            HIST_SUB_BITS);
    for (int type = 0; type < PAIO_NR_LATENCY; type++) {
        const char *sep = "";
        paio_dev_get_latency(bd->dev, type, buckets);
        fprintf(out, "lat_%s=", paio_type_name(type));
        for (unsigned b = 0; b < HIST_BUCKETS; b++) {
            if (buckets[b]) {
                fprintf(out, "%s%u:%" PRIu64, sep, b, buckets[b]);
                sep = ",";
            }
        }
        fputc('\n', out);
    }
    return 0;
}

/* Split LINE into words at spaces and tabs; -1 if there are too many. */
static int
split(char *line, char **words)
{
    int n = 0;

    for (char *save = NULL, *w = strtok_r(line, " \t", &save); w;
         w = strtok_r(NULL, " \t", &save)) {
        if (n == MAX_WORDS) {
            return -1;
        }
        words[n++] = w;
    }
    return n;
}

int
ctl_run_line(BlockDev *bd, char *line, FILE *out, char **errmsg)
{
    char *words[MAX_WORDS];
    int n = split(line, words);

    if (n < 0) {
        return blockdev_fail(errmsg, -E2BIG, "too many arguments");
    }
    if (n == 0) {
        return blockdev_fail(errmsg, -EINVAL, "no command (help lists them)");
    }
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(commands); i++) {
        if (strcmp(words[0], commands[i].name) != 0) {
            continue;
        }
        if (n - 1 < commands[i].min_args || n - 1 > commands[i].max_args) {
            return blockdev_fail(errmsg, -EINVAL, "usage: %s%s%s",
                                 commands[i].name, *commands[i].args ? " " : "",
                                 commands[i].args);
        }
        return commands[i].fn(bd, n, words, out, errmsg);
    }
    return blockdev_fail(errmsg, -EINVAL,
                         "unknown command '%s' (help lists them)", words[0]);
}
