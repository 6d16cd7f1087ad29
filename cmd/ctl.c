/* tlbd: `tlbd ctl PATH COMMAND [ARGS...]`: the client of an export's
 * control channel (control=PATH; the server and the protocol are in
 * blockdrv/ctl.c).  It sends "COMMAND ARGS...\n", prints the reply's lines
 * but the last, and exits 0 when the last is "ok", 1 when it is
 * "error: MESSAGE" (printed as "tlbd ctl: MESSAGE"), 2 on a usage error or
 * when it cannot talk to PATH.  PATH "-" stands for $TLBD_CONTROL.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "options.h"
#include "subcommands.h"

#define EXIT_USAGE 2
#define REPLY_MAX  (1024 * 1024) /* more is not a tlbd reply */

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

/* Print "tlbd ctl: 'PATH': WHAT" and exit 2. */
#define cannot(path, fmt, ...)                                                 \
    tlbd_exit(EXIT_USAGE, "'%s': " fmt, path, ##__VA_ARGS__)

/* Connect to PATH or exit 2 saying why. */
static int
connect_to(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        cannot(path, "path too long for a Unix socket");
    }
    if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        cannot(path, "not a tlbd control socket (not a socket)");
    }
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cannot(path, "socket: %s", strerror(errno));
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        cannot(path, "%s%s", strerror(err),
               err == ECONNREFUSED ? " (export stopped?)"
               : err == EPROTOTYPE ? " (not a tlbd control socket)"
                                   : "");
    }
    return fd;
}

/* Read the whole reply (the server closes after it) into a string. */
static char *
read_reply(const char *path, int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap + 1);

    for (;;) {
        ssize_t n;
        if (!buf) {
            cannot(path, "reading the reply: %s", strerror(ENOMEM));
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            cannot(path, "reading the reply: %s", strerror(errno));
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len == cap) {
            if (cap >= REPLY_MAX) {
                cannot(path, "not a tlbd control socket (endless reply)");
            }
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    buf[len] = '\0';
    return buf;
}

int
tlbd_ctl_main(int argc, char **argv)
{
    CLEANUP_FREE char *line = NULL;
    CLEANUP_FREE char *reply = NULL;
    const char *path;
    size_t len = 0;
    char *last;
    int fd;
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
            usage(stderr, EXIT_USAGE);
        }
    }
    if (argc - optind < 2) {
        fprintf(stderr, "tlbd ctl: %s\n",
                argc == optind ? "missing PATH and COMMAND"
                               : "missing COMMAND");
        usage(stderr, EXIT_USAGE);
    }
    path = argv[optind++];
    if (strcmp(path, "-") == 0) {
        path = getenv("TLBD_CONTROL");
        if (!path || !*path) {
            tlbd_exit(EXIT_USAGE, "PATH is '-' but TLBD_CONTROL is not set");
        }
    }
    for (int i = optind; i < argc; i++) {
        if (!*argv[i] || strpbrk(argv[i], " \t\r\n")) {
            cannot(argv[i], "an argument is one word, without spaces");
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

    fd = connect_to(path);
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            break; /* the server answered early (a refused peer) */
        }
        if (n < 0) {
            cannot(path, "sending the command: %s", strerror(errno));
        }
        off += (size_t)n;
    }
    reply = read_reply(path, fd);
    close(fd);

    /* The last line decides; the others are the output. */
    len = strlen(reply);
    if (len == 0 || reply[len - 1] != '\n') {
        cannot(path, "not a tlbd control socket (unexpected reply)");
    }
    reply[--len] = '\0';
    last = strrchr(reply, '\n');
    last = last ? last + 1 : reply;
    if (strcmp(last, "ok") != 0 && strncmp(last, "error: ", 7) != 0) {
        cannot(path, "not a tlbd control socket (unexpected reply)");
    }
    fwrite(reply, 1, (size_t)(last - reply), stdout);
    if (fflush(stdout) == EOF) {
        tlbd_fatal("writing the output: %s", strerror(errno));
    }
    if (strcmp(last, "ok") == 0) {
        return EXIT_SUCCESS;
    }
    fprintf(stderr, "tlbd ctl: %s\n", last + 7);
    return EXIT_FAILURE;
}
