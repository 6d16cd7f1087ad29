/* tlbd: the `tlbd` program, a dispatcher to its subcommands.
 *
 *   tlbd fuse   IMAGE MOUNTPOINT   (cmd/fuse.c)
 *   tlbd bench  IMAGE              (cmd/bench.c)
 *   tlbd nbd    IMAGE              (cmd/nbd.c)
 *   tlbd info   IMAGE              (cmd/info.c)
 *   tlbd ctl    PATH COMMAND       (cmd/ctl.c)
 *   tlbd replay LOG IMAGE          (cmd/replay.c)
 *   tlbd stat   PATH               (cmd/stat.c)
 *   tlbd crashtest -- WORKLOAD     (cmd/crashtest*.c)
 *
 * Each subcommand parses its own options and prints its own --help.  A
 * subcommand whose code is not built (FUSE without libfuse3) is not listed.
 * Runs on the main thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subcommands.h"

static const struct subcommand {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} subcommands[] = {
#ifdef TLBD_HAVE_FUSE
    { "fuse", tlbd_fuse_main, "present IMAGE as a FUSE-mounted file" },
    { "crashtest", tlbd_crashtest_main,
      "check a file system's crash states under a workload" },
#endif
    { "nbd", tlbd_nbd_main, "serve IMAGE over NBD with nbdkit" },
    { "bench", tlbd_bench_main, "drive IMAGE with verified vcpu I/O" },
    { "info", tlbd_info_main, "show size, allocation and block sizes" },
    { "ctl", tlbd_ctl_main, "send a command to an export's control socket" },
    { "replay", tlbd_replay_main, "rebuild IMAGE from a write log" },
    { "stat", tlbd_stat_main, "watch a running export, one line a second" },
    { NULL, NULL, NULL },
};

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd [--help | --version] COMMAND [OPTIONS] ...\n");
    if (fp == stdout) {
        fprintf(fp, "\ncommands:\n");
        for (size_t i = 0; subcommands[i].name; i++) {
            fprintf(fp, "  %-9s %s\n", subcommands[i].name,
                    subcommands[i].summary);
        }
        fprintf(fp, "\n'tlbd COMMAND --help' shows a command's options;"
                    " see tlbd(1).\n");
    }
    exit(exitcode);
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr, EXIT_FAILURE);
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout, EXIT_SUCCESS);
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("tlbd %s\n", TLBD_VERSION);
        return EXIT_SUCCESS;
    }
    /* Hidden, for shell completion, as nbdfuse has them. */
    if (!strcmp(argv[1], "--long-options")) {
        printf("--help\n--version\n");
        return EXIT_SUCCESS;
    }
    if (!strcmp(argv[1], "--short-options")) {
        printf("-h\n-V\n");
        return EXIT_SUCCESS;
    }
    if (argv[1][0] == '-') {
        fprintf(stderr, "tlbd: unrecognized option '%s'\n", argv[1]);
        usage(stderr, EXIT_FAILURE);
    }
    for (size_t i = 0; subcommands[i].name; i++) {
        if (!strcmp(argv[1], subcommands[i].name)) {
            return subcommands[i].main(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "tlbd: unknown command '%s'\n", argv[1]);
    usage(stderr, EXIT_FAILURE);
}
