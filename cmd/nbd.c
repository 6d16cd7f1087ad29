/* tlbd: `tlbd nbd IMAGE`: serve IMAGE over NBD by running nbdkit with the
 * tlbd plugin.
 *
 * The plugin is looked for next to the program first (the build tree keeps
 * it in ../nbd-plugin/ relative to cmd/tlbd), else nbdkit finds the
 * installed one by its name, "tlbd".  nbdkit listens on a Unix socket in a
 * fresh temporary directory unless --socket or --port says otherwise, writes
 * a pid file when it is ready, and tlbd then prints the NBD URI.  With --run
 * nbdkit runs the command itself with $uri, $unixsocket and friends set, and
 * exits when it does.  Arguments after "--" go to nbdkit: options before the
 * plugin's name, KEY=VALUE parameters (for filters) after it.
 *
 * Threads: main thread only.  The process forks nbdkit, forwards SIGINT and
 * SIGTERM to it, waits for it and removes the temporary directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "options.h"
#include "blockdev.h"
#include "subcommands.h"
#include "util.h"

#define PLUGIN_FILE "nbdkit-tlbd-plugin.so"

typedef struct NbdArgs {
    const char *image;
    bool readonly;
    const char **keys; /* BlockDev options for the plugin, as given */
    const char **values;
    int nkeys;
    const char *socket; /* --socket PATH */
    const char *port;   /* --port N: TCP on localhost */
    const char *run;    /* --run CMD */
    bool verbose;
    char **extra; /* after "--" */
    int nextra;
} NbdArgs;

static volatile sig_atomic_t child_pid;

static void
forward_signal(int sig)
{
    if (child_pid > 0) {
        kill(child_pid, sig);
    }
}

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd nbd [-r] [--DEVICE-OPTION VALUE...]\n"
                "                [--socket PATH | --port PORT] [--run CMD]\n"
                "                [-v] IMAGE [-- NBDKIT-ARGS...]\n");
    if (fp == stdout) {
        fprintf(fp, "\n"
                    "Serve IMAGE over NBD with nbdkit and the tlbd plugin, on "
                    "a Unix socket in\n"
                    "a temporary directory unless --socket or --port is given, "
                    "and print the\n"
                    "NBD URI.  Stops on SIGINT or SIGTERM.\n"
                    "\n"
                    "  -r, --readonly, --read-only  serve read-only\n"
                    "  --socket PATH       listen on this Unix socket\n"
                    "  --port PORT         listen on TCP port PORT of "
                    "localhost (127.0.0.1)\n"
                    "  --run CMD           run CMD with $uri set, then stop "
                    "(as nbdkit --run)\n"
                    "  -v, --verbose       nbdkit -v\n"
                    "  -- NBDKIT-ARGS      more nbdkit options (--filter=...) "
                    "and filter\n"
                    "                      parameters (KEY=VALUE)\n"
                    "DEVICE-OPTION: the image and the threadlet pool (the "
                    "plugin's keys of "
                    "the same names;\n"
                    "its defaults, e.g. offload never and inline-max 32M):\n");
        blockdev_print_options(fp, "  --");
        fprintf(fp,
                "Options may come before or after IMAGE, but before \"--\".\n"
                "\n"
                "See tlbd(1) and nbdkit-tlbd-plugin(1).\n");
    }
    exit(exitcode);
}

enum {
    HELP_OPTION = 256,
    LONG_OPTIONS,
    SHORT_OPTIONS,
    SOCKET_OPTION,
    PORT_OPTION,
    RUN_OPTION,
};

static const char short_options[] = "hrv";
static const struct option own_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { "readonly", no_argument, NULL, 'r' },
    { "read-only", no_argument, NULL, 'r' },
    { "socket", required_argument, NULL, SOCKET_OPTION },
    { "port", required_argument, NULL, PORT_OPTION },
    { "run", required_argument, NULL, RUN_OPTION },
    { "verbose", no_argument, NULL, 'v' },
    { NULL, 0, NULL, 0 },
};

/* Check a number-valued option; keep its text for the plugin. */
static const char *
number_opt(const char *option, const char *value, uint64_t min, uint64_t max)
{
    uint64_t v;

    if (!tlbd_uint_option(option, value, min, max, &v)) {
        usage(stderr, EXIT_FAILURE);
    }
    return value;
}

static void
parse_args(int argc, char **argv, NbdArgs *a)
{
    const struct option *long_options = tlbd_long_options(own_options);
    BlockDevOptions bo;
    int dashes = 1;
    int idx;
    int c;

    memset(a, 0, sizeof(*a));
    blockdev_options_init(&bo);
    a->keys = calloc((size_t)argc, sizeof(*a->keys));
    a->values = calloc((size_t)argc, sizeof(*a->values));
    if (!a->keys || !a->values) {
        tlbd_die("calloc", ENOMEM);
    }
    argv[0] = (char *)"tlbd"; /* getopt's messages: "tlbd: ..." */
    /* Options go anywhere before "--"; what follows it is nbdkit's, so
     * getopt (which permutes) never sees it. */
    while (dashes < argc && strcmp(argv[dashes], "--")) {
        dashes++;
    }
    if (dashes < argc) {
        a->extra = &argv[dashes + 1];
        a->nextra = argc - dashes - 1;
    }
    optind = 1;
    while ((c = getopt_long(dashes, argv, "hrv", long_options, &idx)) != -1) {
        switch (c) {
        case 'h':
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case LONG_OPTIONS:
            tlbd_print_options(long_options, short_options, true);
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options, false);
        case 'r':
            a->readonly = true;
            break;
        case 'v':
            a->verbose = true;
            break;
        case TLBD_BLOCKDEV_OPTION:
            /* Checked here as the plugin will check it, then passed on. */
            if (!tlbd_blockdev_option(&bo, long_options[idx].name, optarg)) {
                usage(stderr, EXIT_FAILURE);
            }
            a->keys[a->nkeys] = long_options[idx].name;
            /* A flag alone (--force-share) is KEY=on for the plugin. */
            a->values[a->nkeys++] = optarg ? optarg : "on";
            break;
        case SOCKET_OPTION:
            a->socket = optarg;
            break;
        case PORT_OPTION:
            a->port = number_opt("--port", optarg, 1, 65535);
            break;
        case RUN_OPTION:
            a->run = optarg;
            break;
        default:
            usage(stderr, EXIT_FAILURE);
        }
    }
    if (optind >= dashes) {
        fprintf(stderr, "tlbd: nbd: missing IMAGE\n");
        usage(stderr, EXIT_FAILURE);
    }
    a->image = argv[optind++];
    if (optind < dashes) {
        fprintf(stderr,
                "tlbd: nbd: unexpected argument '%s' (nbdkit "
                "arguments go after \"--\")\n",
                argv[optind]);
        usage(stderr, EXIT_FAILURE);
    }
    if (a->socket && a->port) {
        fprintf(stderr, "tlbd: nbd: --socket and --port exclude each "
                        "other\n");
        usage(stderr, EXIT_FAILURE);
    }
    if (!tlbd_blockdev_check(&bo)) {
        usage(stderr, EXIT_FAILURE);
    }
}

/* The plugin: $TLBD_NBD_PLUGIN, the build tree's next to this program, or
 * the installed one by name.  Returns a malloc'd string.
 */
static char *
find_plugin(void)
{
    const char *env = getenv("TLBD_NBD_PLUGIN");
    char exe[PATH_MAX];
    char *path = NULL;
    ssize_t n;

    if (env && *env) {
        return strdup(env);
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        if (asprintf(&path, "%s/../nbd-plugin/" PLUGIN_FILE, dirname(exe)) <
            0) {
            path = NULL;
        } else if (access(path, R_OK) == 0) {
            return path;
        }
        free(path);
    }
    return strdup("tlbd");
}

/* Append "KEY=VALUE" to ARGV when VALUE is set. */
static void
add_param(char **argv, int *n, const char *key, const char *value)
{
    char *s;
    if (!value) {
        return;
    }
    if (asprintf(&s, "%s=%s", key, value) < 0) {
        tlbd_die("asprintf", ENOMEM);
    }
    argv[(*n)++] = s;
}

/* True when an argument after "--" is a KEY=VALUE parameter. */
static bool
is_param(const char *arg)
{
    return arg[0] != '-' && strchr(arg, '=') != NULL;
}

/* Build nbdkit's argv (the strings leak until exec or exit). */
static char **
build_argv(const NbdArgs *a, const char *nbdkit, const char *plugin,
           const char *socket, const char *pidfile)
{
    char **argv =
        calloc(32 + (size_t)a->nkeys + (size_t)a->nextra, sizeof(*argv));
    int n = 0;

    if (!argv) {
        tlbd_die("calloc", ENOMEM);
    }
    argv[n++] = (char *)nbdkit;
    argv[n++] = "--foreground";
    argv[n++] = "--exit-with-parent";
    if (a->port) {
        argv[n++] = "-i";
        argv[n++] = "127.0.0.1";
        argv[n++] = "-p";
        argv[n++] = (char *)a->port;
    } else {
        argv[n++] = "-U";
        argv[n++] = (char *)socket;
    }
    argv[n++] = "-P";
    argv[n++] = (char *)pidfile;
    if (a->readonly) {
        argv[n++] = "-r";
    }
    if (a->verbose) {
        argv[n++] = "-v";
    }
    if (a->run) {
        argv[n++] = "--run";
        argv[n++] = (char *)a->run;
    }
    for (int i = 0; i < a->nextra; i++) {
        if (!is_param(a->extra[i])) {
            argv[n++] = a->extra[i];
        }
    }
    argv[n++] = (char *)plugin;
    add_param(argv, &n, "file", a->image);
    if (a->readonly) {
        /* The plugin opens read-only too, and locks as a reader. */
        add_param(argv, &n, "readonly", "true");
    }
    for (int i = 0; i < a->nkeys; i++) {
        add_param(argv, &n, a->keys[i], a->values[i]);
    }
    for (int i = 0; i < a->nextra; i++) {
        if (is_param(a->extra[i])) {
            argv[n++] = a->extra[i];
        }
    }
    argv[n] = NULL;
    return argv;
}

/* Wait until nbdkit wrote its pid file (it is serving) or exited.
 * Returns true when it is serving.
 */
static bool
wait_ready(pid_t pid, const char *pidfile, int *status)
{
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    struct stat st;

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            child_pid = 0;
            return false;
        }
        if (stat(pidfile, &st) == 0 && st.st_size > 0) {
            return true;
        }
        nanosleep(&ts, NULL);
    }
}

static int
exit_status(int status)
{
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        /* Stopped by the signal we forwarded: a normal end. */
        return sig == SIGINT || sig == SIGTERM ? 0 : 128 + sig;
    }
    return EXIT_FAILURE;
}

int
tlbd_nbd_main(int argc, char **argv)
{
    NbdArgs a;
    struct stat st;
    char tmpl[PATH_MAX];
    char sockpath[PATH_MAX + 16];
    char pidfile[PATH_MAX + 16];
    const char *tmpdir = getenv("TMPDIR");
    const char *nbdkit = getenv("NBDKIT");
    int status = 0;

    parse_args(argc, argv, &a);
    if (stat(a.image, &st) < 0) {
        fprintf(stderr, "tlbd: cannot open '%s': %s\n", a.image,
                strerror(errno));
        free(a.keys);
        free(a.values);
        return EXIT_FAILURE;
    }
    if (!nbdkit || !*nbdkit) {
        nbdkit = "nbdkit";
    }
    char *plugin = find_plugin();
    if (!plugin) {
        tlbd_die("strdup", ENOMEM);
    }

    snprintf(tmpl, sizeof(tmpl), "%s/tlbd-nbd.XXXXXX",
             tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "tlbd: cannot create a directory in '%s': %s\n",
                tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
        free(plugin);
        free(a.keys);
        free(a.values);
        return EXIT_FAILURE;
    }
    snprintf(sockpath, sizeof(sockpath), "%s/nbd.sock", tmpl);
    snprintf(pidfile, sizeof(pidfile), "%s/nbdkit.pid", tmpl);
    const char *socket = a.socket ? a.socket : sockpath;
    char **nargv = build_argv(&a, nbdkit, plugin, socket, pidfile);

    struct sigaction sa = { .sa_handler = forward_signal };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "tlbd: cannot fork: %s\n", strerror(errno));
        status = 1 << 8;
        goto out;
    }
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execvp(nbdkit, nargv);
        fprintf(stderr, "tlbd: cannot run '%s': %s\n", nbdkit, strerror(errno));
        _exit(127);
    }
    child_pid = pid;

    if (!a.run) {
        if (!wait_ready(pid, pidfile, &status)) {
            goto out;
        }
        if (a.port) {
            printf("nbd://localhost:%s\n", a.port);
        } else {
            printf("nbd+unix:///?socket=%s\n", socket);
        }
        fflush(stdout);
    }
    while (child_pid > 0 && waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "tlbd: waitpid: %s\n", strerror(errno));
            status = 1 << 8;
            break;
        }
    }
    child_pid = 0;

out:
    unlink(pidfile);
    unlink(sockpath);
    rmdir(tmpl);
    free(nargv);
    free(plugin);
    free(a.keys);
    free(a.values);
    return exit_status(status);
}
