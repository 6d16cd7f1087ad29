/* tlbd: `tlbd replay LOG IMAGE`: rebuild an image from a write log
 * (log-writes=FILE), up to an entry or a mark, from a base that already
 * holds a prefix, optionally with a power cut; or list the log's entries.
 * The work is blockdrv's (wlog.h); this file is the command line.
 *
 * Exit status: 0, 1 if writing the image failed, 2 for bad input (then
 * the image is untouched).  Main thread only.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "subcommands.h"
#include "wlog.h"

#define EXIT_BAD_INPUT 2

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd replay LOG IMAGE [--limit N | --to-mark NAME] "
                "[--from F]\n"
                "                   [--cut MODE [--seed S]]\n"
                "       tlbd replay --list LOG [--limit N | --to-mark NAME]\n");
    if (fp == stdout) {
        fprintf(fp,
                "\n"
                "Apply the entries of the write LOG (log-writes=FILE, the "
                "format of\n"
                "dm-log-writes) to IMAGE, which must exist.\n"
                "\n"
                "  --limit N        entries [0, N) (default: all)\n"
                "  --to-mark NAME   up to and including the mark NAME\n"
                "  --from F         IMAGE already holds entries [0, F): "
                "apply [F, N)\n"
                "  --cut MODE       apply only what a power cut of MODE "
                "keeps of the\n"
                "                   volatile set (all, subset:P, prefix, "
                "torn:P, ignore-flush)\n"
                "  --seed S         the cut's seed (default 0)\n"
                "  --list           print the entries: INDEX FLAGS SECTOR "
                "NR_SECTORS [MARK]\n"
                "\n"
                "Exit status 2: bad input, IMAGE untouched.  See tlbd(1).\n");
    }
    exit(exitcode);
}

enum {
    HELP_OPTION = 256,
    LONG_OPTIONS,
    SHORT_OPTIONS,
    LIMIT_OPTION,
    TO_MARK_OPTION,
    FROM_OPTION,
    CUT_OPTION,
    SEED_OPTION,
    LIST_OPTION,
};

static const char short_options[] = "h";
static const struct option long_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { "limit", required_argument, NULL, LIMIT_OPTION },
    { "to-mark", required_argument, NULL, TO_MARK_OPTION },
    { "from", required_argument, NULL, FROM_OPTION },
    { "cut", required_argument, NULL, CUT_OPTION },
    { "seed", required_argument, NULL, SEED_OPTION },
    { "list", no_argument, NULL, LIST_OPTION },
    { NULL, 0, NULL, 0 },
};

/* Print entries [0, the limit) of LOG. */
static int
list(const char *log, const WlogReplayOptions *opts)
{
    WlogReader *r = NULL;
    uint64_t from, to;
    char *msg = NULL;
    WlogEntry e;
    int ret = wlog_reader_open(log, &r, &msg);

    if (ret == 0) {
        ret = wlog_replay_range(r, opts, &from, &to, &msg);
    }
    for (uint64_t i = 0; ret == 0 && i < to; i++) {
        char flags[64];
        ret = wlog_reader_entry(r, i, &e);
        if (ret < 0) {
            break;
        }
        wlog_flags_str(e.flags, flags, sizeof(flags));
        printf("%" PRIu64 " %s %" PRIu64 " %" PRIu64 "%s%s\n", i, flags,
               e.sector, e.nr_sectors, (e.flags & WLOG_MARK) ? " " : "",
               (e.flags & WLOG_MARK) ? e.mark : "");
    }
    wlog_reader_close(r);
    if (ret < 0) {
        fprintf(stderr, "tlbd: replay: %s\n", msg ? msg : strerror(-ret));
        free(msg);
        return EXIT_BAD_INPUT;
    }
    return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int
tlbd_replay_main(int argc, char **argv)
{
    WlogReplayOptions opts = { 0 };
    WlogReplayStats stats;
    bool do_list = false, has_seed = false, wrote = false;
    char *msg = NULL;
    int c, ret;

    tlbd_set_program("tlbd");
    argv[0] = (char *)"tlbd"; /* getopt's messages: "tlbd: ..." */
    while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) !=
           -1) {
        switch (c) {
        case 'h':
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case LONG_OPTIONS:
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options, c == LONG_OPTIONS);
        case LIMIT_OPTION:
            if (!tlbd_uint_option("--limit", optarg, 0, UINT64_MAX,
                                  &opts.limit)) {
                usage(stderr, EXIT_BAD_INPUT);
            }
            opts.has_limit = true;
            break;
        case TO_MARK_OPTION:
            opts.to_mark = optarg;
            break;
        case FROM_OPTION:
            if (!tlbd_uint_option("--from", optarg, 0, UINT64_MAX,
                                  &opts.from)) {
                usage(stderr, EXIT_BAD_INPUT);
            }
            break;
        case CUT_OPTION:
            opts.cut = optarg;
            break;
        case SEED_OPTION:
            if (!tlbd_uint_option("--seed", optarg, 0, UINT64_MAX,
                                  &opts.seed)) {
                usage(stderr, EXIT_BAD_INPUT);
            }
            has_seed = true;
            break;
        case LIST_OPTION:
            do_list = true;
            break;
        default:
            usage(stderr, EXIT_BAD_INPUT);
        }
    }
    if (has_seed && !opts.cut) {
        fprintf(stderr, "tlbd: replay: --seed needs --cut MODE\n");
        return EXIT_BAD_INPUT;
    }
    if (do_list) {
        if (optind + 1 != argc && optind + 2 != argc) {
            usage(stderr, EXIT_BAD_INPUT);
        }
        return list(argv[optind], &opts);
    }
    if (optind + 2 != argc) {
        usage(stderr, EXIT_BAD_INPUT);
    }
    ret = wlog_replay(argv[optind], argv[optind + 1], &opts, &stats, &wrote,
                      &msg);
    if (ret < 0) {
        fprintf(stderr, "tlbd: replay: %s\n", msg ? msg : strerror(-ret));
        free(msg);
        return wrote ? EXIT_FAILURE : EXIT_BAD_INPUT;
    }
    return EXIT_SUCCESS;
}
