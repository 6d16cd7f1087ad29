/* tlbd: `tlbd crashtest [OPTIONS] -- WORKLOAD...`: find crash-consistency
 * bugs of a file system under a workload.
 *
 * It records the workload on a fresh file system made on `tlbd fuse` with
 * a volatile write cache and a write log (crashtest-record.c), then builds
 * sampled crash states from the log, recovers and checks each
 * (crashtest-states.c), and prints a table.  This file holds the options,
 * the file systems it knows, and the order of the steps; crashtest-run.c
 * runs the children and undoes everything at the end, also on failure and
 * on SIGINT.  Exit status: 0 every state clean, 1 some state failed, 2 a
 * usage or setup error, 130 interrupted.
 *
 * Threads: the main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashtest.h"
#include "options.h"
#include "subcommands.h"
#include "util.h"

static const char *const e2fsck_check[] = { "e2fsck", "-fn", NULL };
static const char *const xfs_check[] = { "xfs_repair", "-n", NULL };
static const char *const btrfs_check[] = { "btrfs", "check", "--readonly",
                                           NULL };

static const CtFs filesystems[] = {
    { "ext4", "mkfs.ext4", "-F", e2fsck_check, 4ull << 20, "e2fsprogs" },
    { "xfs", "mkfs.xfs", "-f", xfs_check, 300ull << 20, "xfsprogs" },
    { "btrfs", "mkfs.btrfs", "-f", btrfs_check, 128ull << 20, "btrfs-progs" },
};

const char *const ct_cut_modes[CT_NCUTS] = { "subset", "prefix", "torn" };

/* The default --cuts: not torn, which tears writes at 512 bytes, finer
 * than the 1 KiB superblock ext4 writes in place (see tlbd-crashtest(1)).
 */
#define DEFAULT_CUTS 3u

#define MAX_STATES 1000000
#define MAX_SIZE   (1ull << 40)

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd crashtest [--fs ext4|xfs|btrfs] [--size SIZE] "
                "[--states N] [--seed S]\n"
                "                      [--mkfs-options OPTS] "
                "[--mount-options OPTS]\n"
                "                      [--check CMD] [--keep DIR] "
                "[--volatile-cache SIZE]\n"
                "                      [--cuts subset,prefix,torn|none] "
                "-- WORKLOAD [ARGS...]\n");
    if (fp == stdout) {
        fprintf(
            fp,
            "\n"
            "Make a file system on a tlbd fuse export with a volatile write "
            "cache and a\n"
            "write log, run WORKLOAD in it (cwd: the mount point; "
            "$TLBD_CONTROL: the\n"
            "control socket, for `tlbd ctl \"$TLBD_CONTROL\" mark NAME`), "
            "then rebuild\n"
            "sampled crash states from the log: every flush and FUA point "
            "and seeded\n"
            "cuts (subset, prefix) of each epoch.  Each is mounted "
            "(the kernel's\n"
            "recovery), unmounted and checked read-only (e2fsck -fn, "
            "xfs_repair -n,\n"
            "btrfs check --readonly); then CMD runs on it mounted "
            "read-only.  Needs root.\n"
            "\n"
            "  --fs NAME             ext4 (default), xfs or btrfs\n"
            "  --size SIZE           the device (default 256M)\n"
            "  --states N            how many states to check (default 50)\n"
            "  --seed S              the seed of the sampling and the cuts "
            "(default 1)\n"
            "  --mkfs-options OPTS   more mkfs options, split at blanks\n"
            "  --mount-options OPTS  mount -o OPTS for the workload (e.g. "
            "barrier=0)\n"
            "  --check CMD           sh -c CMD in each recovered file "
            "system; it gets\n"
            "                        $TLBD_STATE, $TLBD_LIMIT and $TLBD_MARKS "
            "(the marks\n"
            "                        before the state); non-zero fails the "
            "state\n"
            "  --keep DIR            keep the first failing state there "
            "(default: in\n"
            "                        the work directory, which is printed)\n"
            "  --volatile-cache SIZE the recording export's cache (default: "
            "--size)\n"
            "  --cuts LIST           the cuts of each epoch, from subset, "
            "prefix, torn;\n"
            "                        or none (default subset,prefix)\n"
            "\n"
            "Exit status: 0 all states clean, 1 some state failed, 2 usage "
            "or setup\n"
            "error, 130 interrupted.  See tlbd-crashtest(1).\n");
    }
    exit(exitcode);
}

enum {
    HELP_OPTION = CHAR_MAX + 1,
    LONG_OPTIONS,
    SHORT_OPTIONS,
    FS_OPTION,
    SIZE_OPTION,
    STATES_OPTION,
    SEED_OPTION,
    MKFS_OPTIONS,
    MOUNT_OPTIONS,
    CHECK_OPTION,
    KEEP_OPTION,
    CACHE_OPTION,
    CUTS_OPTION,
};

static const char short_options[] = "h";
static const struct option long_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { "fs", required_argument, NULL, FS_OPTION },
    { "size", required_argument, NULL, SIZE_OPTION },
    { "states", required_argument, NULL, STATES_OPTION },
    { "seed", required_argument, NULL, SEED_OPTION },
    { "mkfs-options", required_argument, NULL, MKFS_OPTIONS },
    { "mount-options", required_argument, NULL, MOUNT_OPTIONS },
    { "check", required_argument, NULL, CHECK_OPTION },
    { "keep", required_argument, NULL, KEEP_OPTION },
    { "volatile-cache", required_argument, NULL, CACHE_OPTION },
    { "cuts", required_argument, NULL, CUTS_OPTION },
    { NULL, 0, NULL, 0 },
};

/* One message, exit 2: every usage error. */
static void __attribute__((noreturn, format(printf, 1, 2)))
bad_usage(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ct_vmsg(fmt, ap);
    va_end(ap);
    exit(CT_EXIT_SETUP);
}

static uint64_t
size_opt(const char *option, const char *value)
{
    uint64_t v;

    if (tlbd_parse_size(value, &v) < 0 || v == 0 || v > MAX_SIZE || v % 4096) {
        bad_usage("%s: bad value '%s': expected a size (such as 256M), a "
                  "multiple of 4k, up to 1T",
                  option, value);
    }
    return v;
}

/* OPTS split at blanks into A->mkfs_options, NULL-terminated; the words
 * live in A->mkfs_buf.
 */
static void
split_words(CtArgs *a, const char *opts)
{
    char *save = NULL;
    size_t n = 0;

    free(a->mkfs_buf);
    free(a->mkfs_options);
    a->mkfs_buf = strdup(opts ? opts : "");
    a->mkfs_options =
        calloc(strlen(a->mkfs_buf ? a->mkfs_buf : "") / 2 + 2, sizeof(char *));
    if (!a->mkfs_buf || !a->mkfs_options) {
        tlbd_die("calloc", ENOMEM);
    }
    for (char *w = strtok_r(a->mkfs_buf, " \t\n", &save); w;
         w = strtok_r(NULL, " \t\n", &save)) {
        a->mkfs_options[n++] = w;
    }
}

/* --cuts LIST: "none" or names of ct_cut_modes, comma-separated. */
static unsigned
cuts_opt(const char *value)
{
    char *copy = strdup(value);
    char *save = NULL;
    unsigned mask = 0;

    if (!copy) {
        tlbd_die("strdup", ENOMEM);
    }
    if (strcmp(value, "none") != 0) {
        for (char *w = strtok_r(copy, ",", &save); w;
             w = strtok_r(NULL, ",", &save)) {
            int m = 0;
            while (m < CT_NCUTS && strcmp(w, ct_cut_modes[m])) {
                m++;
            }
            if (m == CT_NCUTS) {
                free(copy);
                bad_usage("--cuts: bad value '%s': not a list of subset, "
                          "prefix, torn, or none",
                          value);
            }
            mask |= 1u << m;
        }
        if (!mask) {
            free(copy);
            bad_usage("--cuts: bad value '%s': empty", value);
        }
    }
    free(copy);
    return mask;
}

/* Is PROG an executable in PATH or an sbin directory? */
static bool
have_program(const char *prog)
{
    const char *path = getenv("PATH");
    char *dirs = NULL;
    char *save = NULL;
    bool found = false;

    if (asprintf(&dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "") <
        0) {
        tlbd_die("asprintf", ENOMEM);
    }
    for (char *d = strtok_r(dirs, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", d, prog) < 0) {
            tlbd_die("asprintf", ENOMEM);
        }
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(dirs);
    return found;
}

static const CtFs *
find_fs(const char *name)
{
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(filesystems); i++) {
        if (!strcmp(name, filesystems[i].name)) {
            return &filesystems[i];
        }
    }
    bad_usage("--fs: unknown file system '%s' (ext4, xfs, btrfs)", name);
}

static void
parse_args(int argc, char **argv, CtArgs *a)
{
    int dashes = 1;
    uint64_t v;
    int c;

    memset(a, 0, sizeof(*a));
    a->fs = &filesystems[0];
    a->size = 256ull << 20;
    a->states = 50;
    a->seed = 1;
    a->cuts = DEFAULT_CUTS;
    argv[0] = (char *)"tlbd crashtest"; /* getopt's messages */
    while (dashes < argc && strcmp(argv[dashes], "--")) {
        dashes++;
    }
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(dashes, argv, short_options, long_options, NULL)) !=
           -1) {
        switch (c) {
        case 'h':
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case LONG_OPTIONS:
            tlbd_print_options(long_options, short_options, true);
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options, false);
        case FS_OPTION:
            a->fs = find_fs(optarg);
            break;
        case SIZE_OPTION:
            a->size = size_opt("--size", optarg);
            break;
        case CACHE_OPTION:
            a->cache = size_opt("--volatile-cache", optarg);
            break;
        case STATES_OPTION:
        case SEED_OPTION:
            if (!tlbd_uint_option(c == SEED_OPTION ? "--seed" : "--states",
                                  optarg, c == SEED_OPTION ? 0 : 1,
                                  c == SEED_OPTION ? UINT32_MAX : MAX_STATES,
                                  &v)) {
                exit(CT_EXIT_SETUP);
            }
            *(c == SEED_OPTION ? &a->seed : &a->states) = v;
            break;
        case CUTS_OPTION:
            a->cuts = cuts_opt(optarg);
            break;
        case MKFS_OPTIONS:
            split_words(a, optarg);
            break;
        case MOUNT_OPTIONS:
            a->mount_options = *optarg ? optarg : NULL;
            break;
        case CHECK_OPTION:
            a->check = optarg;
            break;
        case KEEP_OPTION:
            a->keep = optarg;
            break;
        case '?':
            if (optopt) {
                bad_usage("option '-%c' is unknown or needs a value", optopt);
            }
            bad_usage("option '%s' is unknown or needs a value",
                      argv[optind - 1]);
        default:
            usage(stderr, CT_EXIT_SETUP);
        }
    }
    if (optind < dashes) {
        bad_usage("unexpected argument '%s' (the workload goes after "
                  "\"--\")",
                  argv[optind]);
    }
    if (dashes + 1 >= argc) {
        bad_usage("missing WORKLOAD (a command after \"--\")");
    }
    a->workload = &argv[dashes + 1];
    if (!a->mkfs_options) {
        split_words(a, NULL);
    }
    if (!a->cache) {
        a->cache = a->size;
    }
}

/* What must be there before anything is created. */
static void
check_setup(CtArgs *a)
{
    const char *need[] = { a->fs->mkfs, a->fs->check[0], "losetup",
                           "mount",     "umount",        "fusermount3" };
    char exe[PATH_MAX];
    ssize_t n;

    for (size_t i = 0; i < TLBD_ARRAY_SIZE(need); i++) {
        if (!have_program(need[i])) {
            bad_usage("--fs %s needs '%s', which is not installed (Debian "
                      "package %s)",
                      a->fs->name, need[i],
                      i < 2 ? a->fs->package : "util-linux or fuse3");
        }
    }
    if (a->size < a->fs->min_size) {
        bad_usage("--size: %" PRIu64 " bytes is too small for %s (at least "
                  "%" PRIu64 "M)",
                  a->size, a->fs->name, a->fs->min_size >> 20);
    }
    if (geteuid() != 0) {
        bad_usage("needs root (loop devices and mounts)");
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        bad_usage("cannot find this program: %s", strerror(errno));
    }
    exe[n] = '\0';
    a->self = strdup(exe);
    if (!a->self) {
        tlbd_die("strdup", ENOMEM);
    }
    if (a->keep) {
        struct stat st;
        if (stat(a->keep, &st) == 0) {
            if (!S_ISDIR(st.st_mode) || rmdir(a->keep) < 0) {
                bad_usage("--keep: '%s' exists and is not an empty directory",
                          a->keep);
            }
        }
        if (mkdir(a->keep, 0755) < 0) {
            bad_usage("--keep: cannot create '%s': %s", a->keep,
                      strerror(errno));
        }
    }
}

int
tlbd_crashtest_main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    CtArgs a;
    CtWork w = { NULL };
    char tmpl[PATH_MAX];
    int ret;

    tlbd_set_program("tlbd crashtest");
    parse_args(argc, argv, &a);
    check_setup(&a);
    ct_signals_init();

    snprintf(tmpl, sizeof(tmpl), "%s/tlbd-crashtest.XXXXXX",
             tmp && *tmp ? tmp : "/var/tmp");
    if (!mkdtemp(tmpl)) {
        ct_msg("cannot create a directory '%s': %s", tmpl, strerror(errno));
        if (a.keep) {
            rmdir(a.keep);
        }
        return CT_EXIT_SETUP;
    }
    w.dir = tmpl;
    ct_cleanup_dir(tmpl);
    if (asprintf(&w.log, "%s/log", tmpl) < 0 ||
        asprintf(&w.out, "%s/out", tmpl) < 0) {
        tlbd_die("asprintf", ENOMEM);
    }
    ret = ct_record(&a, &w);
    if (ret == 0) {
        ret = ct_check_states(&a, &w);
    }
    if (ct_interrupted()) {
        ret = CT_EXIT_INTERRUPTED;
    }
    ct_cleanup();
    if (a.keep && ret != CT_EXIT_FAILED) {
        rmdir(a.keep); /* nothing kept: only if still empty */
    }
    if (ret == CT_EXIT_INTERRUPTED) {
        ct_msg("interrupted; everything undone");
    }
    free(w.log);
    free(w.out);
    free(a.self);
    free(a.mkfs_options);
    free(a.mkfs_buf);
    return ret;
}
