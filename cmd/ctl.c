/* tlbd: `tlbd ctl PATH COMMAND [ARGS...]`: the client of an export's
 * control channel (control=PATH; the server and the protocol are in
 * blockdrv/ctl.c).  It sends "COMMAND ARGS...\n", prints the reply's lines
 * but the last, and exits 0 when the last is "ok", 1 when it is
 * "error: MESSAGE" (printed as "tlbd ctl: MESSAGE"), 2 on a usage error or
 * when it cannot talk to PATH.  PATH "-" stands for $TLBD_CONTROL.  The
 * socket itself is ctl-client.c's.
 *
 * Main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "ctl-client.h"
#include "options.h"
#include "subcommands.h"

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd ctl PATH COMMAND [ARGS...]\n");
    if (fp == stdout) {
        fprintf(fp,
                "\n"
                "Send COMMAND to the control socket PATH of a running export\n"
                "(control=PATH, --control=PATH); PATH '-' means "
                "$TLBD_CONTROL.\n"
                "\n"
                "  mark NAME                 place the mark NAME\n"
                "  powercut [MODE] [seed=N]  cut the power now "
                "(volatile-cache)\n"
                "  flush                     make the volatile set durable\n"
                "  stats                     counters, one key=value a line\n"
                "  stats-raw                 the same, the pool and the "
                "latency\n"
                "                            histograms (for tlbd stat)\n"
                "  help                      the server's list of commands\n"
                "\n"
                "Exit status: 0 ok, 1 the command failed, 2 usage or "
                "connection error.\n"
                "See tlbd(1).\n");
    }
    exit(exitcode);
}

enum {
    HELP_OPTION = 256,
    LONG_OPTIONS,
    SHORT_OPTIONS,
};

static const char short_options[] = "+h";
static const struct option long_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { NULL, 0, NULL, 0 },
};

int
tlbd_ctl_main(int argc, char **argv)
{
    CLEANUP_FREE char *line = NULL;
    CLEANUP_FREE char *reply = NULL;
    const char *path;
    size_t len = 0;
    const char *last;
    int c;

    tlbd_set_program("tlbd ctl");
    argv[0] = (char *)"tlbd ctl"; /* getopt's messages */
    optind = 1;
    while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) !=
           -1) {
        switch (c) {
        case 'h':
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case LONG_OPTIONS:
            tlbd_print_options(long_options, short_options + 1, true);
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options + 1, false);
        default:
            usage(stderr, TLBD_EXIT_USAGE);
        }
    }
    if (argc - optind < 2) {
        fprintf(stderr, "tlbd ctl: %s\n",
                argc == optind ? "missing PATH and COMMAND"
                               : "missing COMMAND");
        usage(stderr, TLBD_EXIT_USAGE);
    }
    path = tlbd_ctl_path(argv[optind++]);
    for (int i = optind; i < argc; i++) {
        if (!*argv[i] || strpbrk(argv[i], " \t\r\n")) {
            tlbd_exit(TLBD_EXIT_USAGE,
                      "'%s': an argument is one word, without spaces", argv[i]);
        }
        len += strlen(argv[i]) + 1;
    }
    line = malloc(len + 1);
    if (!line) {
        tlbd_fatal("out of memory");
    }
    line[0] = '\0';
    for (int i = optind; i < argc; i++) {
        strcat(line, argv[i]);
        strcat(line, i + 1 < argc ? " " : "\n");
    }

    reply = tlbd_ctl_call(path, line, &last);
    fputs(reply, stdout);
    if (fflush(stdout) == EOF) {
        tlbd_fatal("writing the output: %s", strerror(errno));
    }
    if (strcmp(last, "ok") == 0) {
        return EXIT_SUCCESS;
    }
    fprintf(stderr, "tlbd ctl: %s\n", last + 7);
    return EXIT_FAILURE;
}
