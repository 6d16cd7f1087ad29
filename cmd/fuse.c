/* tlbd: `tlbd fuse [OPTIONS] IMAGE MOUNTPOINT`, the command around the
 * FUSE export.
 *
 * It checks every argument before anything is opened for writing, then
 * (unless --foreground) forks: the parent waits until the child reports the
 * mount usable, or fails, and exits with 0 or the child's status.  The
 * child opens the image, mounts, writes the pid file and becomes the
 * IOThread itself (iothread_run): the FUSE session fd and a signalfd for
 * SIGINT, SIGTERM, SIGHUP (shut down cleanly) and SIGUSR1 (dump statistics)
 * are its fd handlers.  Threads: the main thread only, plus the threadlet
 * workers the BlockDev uses.
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
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fexp.h"
#include "options.h"
#include "subcommands.h"

enum {
    HELP_OPTION = CHAR_MAX + 1,
    LONG_OPTIONS,
    SHORT_OPTIONS,
    DIRECT_IO_OPTION,
    GROWABLE_OPTION,
    ALLOW_OTHER_OPTION,
    NAME_OPTION,
    LOG_OPTION,
    DEBUG_OPTION,
};

static const char short_options[] = "fo:P:rV";
static const struct option own_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { "allow-other", required_argument, NULL, ALLOW_OTHER_OPTION },
    { "debug", no_argument, NULL, DEBUG_OPTION },
    { "direct-io", required_argument, NULL, DIRECT_IO_OPTION },
    { "foreground", no_argument, NULL, 'f' },
    { "growable", no_argument, NULL, GROWABLE_OPTION },
    { "log", required_argument, NULL, LOG_OPTION },
    { "name", required_argument, NULL, NAME_OPTION },
    { "option", required_argument, NULL, 'o' },
    { "pidfile", required_argument, NULL, 'P' },
    { "readonly", no_argument, NULL, 'r' },
    { "read-only", no_argument, NULL, 'r' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

typedef enum { ALLOW_OFF, ALLOW_ON, ALLOW_AUTO } AllowOther;

/* Everything the command line says, and what the daemon holds. */
typedef struct FuseMain {
    const char *image;
    char *mountpoint; /* absolute */
    char *name;       /* directory mounts */
    const char *pidfile;
    char *pidfile_abs;
    const char *log;
    char *fuse_opts;
    BlockDevOptions bo; /* --readonly, --growable, --cache, ...; the
                           pool's in bo.pool */
    bool direct_io;
    bool foreground;
    bool debug;
    AllowOther allow_other;

    ThreadletQueue queue;
    IOThread *io;
    BlockDev *bd;
    FuseExport *exp;
    int sfd;
    int null_fd; /* detached: stdin, stdout */
    int err_fd;  /* detached: stderr (--log or /dev/null) */
} FuseMain;

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd fuse [-r] [-f] [-P PIDFILE] [-o FUSE-OPTS] "
                "[--direct-io=on|off]\n"
                "                 [--growable] [--name=NAME] "
                "[--allow-other=on|off|auto]\n"
                "                 [--log=FILE] [--DEVICE-OPTION=VALUE...] "
                "IMAGE MOUNTPOINT\n");
    if (fp == stdout) {
        fprintf(
            fp,
            "\n"
            "Present IMAGE (a raw image file or block device) as a "
            "FUSE-mounted file.\n"
            "MOUNTPOINT is a regular file, mounted over (it may be IMAGE "
            "itself), or a\n"
            "directory, in which the image appears as one file.\n"
            "\n"
            "  -r, --readonly          refuse writes\n"
            "      --direct-io=on|off  FUSE side: bypass the page cache "
            "(default on)\n"
            "      --growable          writes past the end and truncate change "
            "the size\n"
            "      --name=NAME         the file's name in a directory mount\n"
            "      --allow-other=on|off|auto   let other users in (default "
            "auto)\n"
            "  -f, --foreground        do not detach\n"
            "  -P, --pidfile=FILE      write the pid there while serving\n"
            "  -o OPTS                 extra FUSE mount options\n"
            "      --log=FILE          where a detached daemon writes messages "
            "and\n"
            "                          statistics (default: nowhere)\n"
            "      --debug             libfuse's request trace\n"
            "  -V, --version\n"
            "DEVICE-OPTION: the image and the threadlet pool (inline-max: "
            "reads and writes up "
            "to SIZE\n"
            "that cannot wait on a device run on the I/O thread; default "
            "64k):\n");
        blockdev_print_options(fp, "  --");
        fprintf(fp, "\n"
                    "SIGINT, SIGTERM or fusermount3 -u: finish, flush, "
                    "unmount, exit 0.\n"
                    "SIGUSR1: statistics on stderr.  See tlbd-fuse(1).\n");
    }
    exit(exitcode);
}

static bool
parse_on_off(const char *opt, const char *arg)
{
    if (!strcmp(arg, "on") || !strcmp(arg, "yes") || !strcmp(arg, "1")) {
        return true;
    }
    if (!strcmp(arg, "off") || !strcmp(arg, "no") || !strcmp(arg, "0")) {
        return false;
    }
    tlbd_fatal("%s: '%s' is neither on nor off", opt, arg);
}

static void
add_fuse_opts(FuseMain *m, const char *opts)
{
    char *s;
    if (m->fuse_opts) {
        if (asprintf(&s, "%s,%s", m->fuse_opts, opts) < 0) {
            tlbd_fatal("out of memory");
        }
        free(m->fuse_opts);
    } else {
        s = strdup(opts);
    }
    if (!s) {
        tlbd_fatal("out of memory");
    }
    m->fuse_opts = s;
}

static void
parse_args(FuseMain *m, int argc, char **argv)
{
    const struct option *long_options = tlbd_long_options(own_options);
    int idx;
    int c;

    while ((c = getopt_long(argc, argv, short_options, long_options, &idx)) !=
           -1) {
        switch (c) {
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case LONG_OPTIONS:
            tlbd_print_options(long_options, short_options, true);
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options, false);
        case 'V':
            printf("tlbd fuse %s (libfuse %s)\n", TLBD_VERSION,
                   fexp_libfuse_version());
            exit(EXIT_SUCCESS);
        case 'f':
            m->foreground = true;
            break;
        case 'o':
            add_fuse_opts(m, optarg);
            break;
        case 'P':
            m->pidfile = optarg;
            break;
        case 'r':
            m->bo.readonly = true;
            break;
        case TLBD_BLOCKDEV_OPTION:
            if (!tlbd_blockdev_option(&m->bo, long_options[idx].name, optarg)) {
                exit(EXIT_FAILURE);
            }
            break;
        case DIRECT_IO_OPTION:
            m->direct_io = parse_on_off("--direct-io", optarg);
            break;
        case GROWABLE_OPTION:
            m->bo.growable = true;
            break;
        case ALLOW_OTHER_OPTION:
            if (!strcmp(optarg, "auto")) {
                m->allow_other = ALLOW_AUTO;
            } else {
                m->allow_other = parse_on_off("--allow-other", optarg)
                                     ? ALLOW_ON
                                     : ALLOW_OFF;
            }
            break;
        case NAME_OPTION:
            free(m->name);
            m->name = strdup(optarg);
            if (!m->name) {
                tlbd_fatal("out of memory");
            }
            break;
        case LOG_OPTION:
            m->log = optarg;
            break;
        case DEBUG_OPTION:
            m->debug = true;
            break;
        default:
            usage(stderr, EXIT_FAILURE);
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "tlbd fuse: need IMAGE and MOUNTPOINT\n");
        usage(stderr, EXIT_FAILURE);
    }
    m->image = argv[optind];
    m->mountpoint = argv[optind + 1];
}

/* The absolute path of PATH whose last component may be a dead mount. */
static char *
absolute_path(const char *path)
{
    char *copy1 = strdup(path);
    char *copy2 = strdup(path);
    char *dir = NULL;
    char *abs = NULL;

    if (!copy1 || !copy2) {
        goto out;
    }
    dir = realpath(dirname(copy1), NULL);
    const char *base = basename(copy2);
    if (!dir) {
        goto out;
    }
    if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/")) {
        abs = realpath(path, NULL);
    } else if (asprintf(&abs, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "",
                        base) < 0) {
        abs = NULL;
    }
out:
    free(dir);
    free(copy1);
    free(copy2);
    return abs;
}

/* Refuse bad arguments before anything is opened for writing. */
static void
check_args(FuseMain *m)
{
    struct stat st;
    const char *mp = m->mountpoint;

    if (m->bo.readonly && m->bo.growable) {
        tlbd_fatal("--readonly and --growable exclude each other");
    }
    if (!tlbd_blockdev_check(&m->bo)) {
        exit(EXIT_FAILURE);
    }
    if (stat(m->image, &st) < 0) {
        tlbd_fatal("cannot open '%s': %s", m->image, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        tlbd_fatal("image '%s' is a directory, not a file or block device",
                   m->image);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        tlbd_fatal("image '%s' is not a regular file or block device",
                   m->image);
    }

    char *abs = absolute_path(mp);
    if (!abs) {
        tlbd_fatal("cannot use mountpoint '%s': %s", mp, strerror(errno));
    }
    if (fexp_is_mounted(abs)) {
        tlbd_fatal("mountpoint '%s' is already a tlbd mount (unmount it with"
                   " 'fusermount3 -u %s')",
                   mp, abs);
    }
    if (stat(abs, &st) < 0) {
        if (errno == ENOTCONN) {
            tlbd_fatal("cannot use mountpoint '%s': %s (a dead FUSE mount:"
                       " 'fusermount3 -u %s' clears it)",
                       mp, strerror(errno), abs);
        }
        tlbd_fatal("cannot use mountpoint '%s': %s", mp, strerror(errno));
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        tlbd_fatal("mountpoint '%s' is not a regular file or directory", mp);
    }
    m->mountpoint = abs;

    if (S_ISDIR(st.st_mode)) {
        if (!m->name) {
            char *copy = strdup(m->image);
            if (!copy) {
                tlbd_fatal("out of memory");
            }
            m->name = strdup(basename(copy));
            free(copy);
        }
        if (!m->name || !*m->name || strchr(m->name, '/') ||
            !strcmp(m->name, ".") || !strcmp(m->name, "..")) {
            tlbd_fatal("--name: '%s' is not a file name",
                       m->name ? m->name : "");
        }
    } else if (m->name) {
        tlbd_fatal("--name needs MOUNTPOINT '%s' to be a directory", mp);
    }

    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        tlbd_fatal("cannot open /dev/fuse: %s", strerror(errno));
    }
    close(fd);

    if (m->pidfile) {
        m->pidfile_abs = m->pidfile[0] == '/' ? strdup(m->pidfile)
                                              : absolute_path(m->pidfile);
        if (!m->pidfile_abs) {
            tlbd_fatal("--pidfile: cannot use '%s': %s", m->pidfile,
                       strerror(errno));
        }
    }
}

/* allow_other: on, off, or (auto) whenever the system permits it. */
static bool
want_allow_other(const FuseMain *m)
{
    FILE *fp;
    char line[256];
    bool allowed = false;

    if (m->allow_other != ALLOW_AUTO) {
        return m->allow_other == ALLOW_ON;
    }
    if (getuid() == 0) {
        return true;
    }
    fp = fopen("/etc/fuse.conf", "re");
    while (fp && fgets(line, sizeof(line), fp)) {
        if (!strncmp(line, "user_allow_other", 16) &&
            (line[16] == '\n' || line[16] == '\0' || line[16] == ' ')) {
            allowed = true;
        }
    }
    if (fp) {
        fclose(fp);
    }
    if (!allowed) {
        fprintf(stderr, "tlbd fuse: note: only you can use the mount; add"
                        " 'user_allow_other' to /etc/fuse.conf to share it\n");
    }
    return allowed;
}

static void
dump_stats(FuseMain *m, FILE *fp)
{
    BlockDevStats bs;
    ThreadletStats ts;
    IOThreadStats is;

    fexp_dump_stats(m->exp, fp);
    blockdev_get_stats(m->bd, &bs);
    fprintf(fp,
            "  image: reads %" PRIu64 ", writes %" PRIu64 ", flushes %" PRIu64
            ", discards %" PRIu64 ", zeroes %" PRIu64 ", errors %" PRIu64
            ", cancelled %" PRIu64 ", delays interrupted %" PRIu64
            ", in flight %" PRIu64 "\n",
            bs.reads, bs.writes, bs.flushes, bs.discards, bs.zeroes, bs.errors,
            bs.cancelled, bs.interrupted, bs.in_flight);
    fprintf(fp,
            "  host disk full (enospc=wait): episodes %" PRIu64
            ", writes that waited %" PRIu64 ", waiting now %" PRIu64 "\n",
            bs.enospc_episodes, bs.enospc_waits, bs.enospc_pending);
    threadlet_queue_get_stats(&m->queue, &ts);
    fprintf(fp,
            "  workers: %u now, %u idle, %u peak, %u..%u; submitted %" PRIu64
            ", average wait %" PRIu64 " ns\n",
            ts.cur_threads, ts.idle_threads, ts.peak_threads, ts.min_threads,
            ts.max_threads, ts.submitted,
            ts.wait_samples ? ts.wait_ns_total / ts.wait_samples : 0);
    iothread_get_stats(m->io, &is);
    fprintf(fp,
            "  io thread: completions %" PRIu64 ", wake-ups %" PRIu64
            ", max batch %" PRIu64 "\n",
            is.posted, is.wakeups, is.max_batch);
    fflush(fp);
}

static void
signal_readable(void *opaque, int fd, uint32_t events)
{
    FuseMain *m = opaque;
    struct signalfd_siginfo si;
    (void)events;

    while (read(fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGUSR1) {
            dump_stats(m, stderr);
        } else {
            fexp_shutdown(m->exp);
        }
    }
}

/* Returns 0 or -errno. */
static int
write_pidfile(const FuseMain *m)
{
    FILE *fp;
    int ret = 0;

    if (!m->pidfile_abs) {
        return 0;
    }
    fp = fopen(m->pidfile_abs, "we");
    if (!fp) {
        return -errno;
    }
    if (fprintf(fp, "%d\n", (int)getpid()) < 0) {
        ret = -errno;
    }
    if (fclose(fp) != 0 && ret == 0) {
        ret = -errno;
    }
    return ret;
}

/* Fork; the parent returns only to exit with the child's verdict.  Returns
 * the fd on which the child says it is ready.
 */
static int
detach(void)
{
    int p[2];
    pid_t pid;
    char c;
    ssize_t n;
    int status;

    if (pipe2(p, O_CLOEXEC) < 0) {
        tlbd_fatal("pipe: %s", strerror(errno));
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        tlbd_fatal("fork: %s", strerror(errno));
    }
    if (pid > 0) {
        close(p[1]);
        while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR) {
        }
        if (n == 1) {
            _exit(EXIT_SUCCESS);
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
            _exit(WEXITSTATUS(status));
        }
        _exit(EXIT_FAILURE);
    }
    close(p[0]);
    setsid();
    return p[1];
}

/* Where a detached daemon's stdio goes; opened before anything else
 * happens, so that a bad --log is refused like any bad argument.
 */
static void
open_outputs(FuseMain *m)
{
    m->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (m->null_fd < 0) {
        tlbd_fatal("cannot open /dev/null: %s", strerror(errno));
    }
    m->err_fd = m->null_fd;
    if (m->log) {
        m->err_fd =
            open(m->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (m->err_fd < 0) {
            tlbd_fatal("--log: cannot open '%s': %s", m->log, strerror(errno));
        }
    }
}

/* The child is serving: let the parent go and leave the terminal. */
static void
report_ready(FuseMain *m, int ready_fd)
{
    dup2(m->null_fd, STDIN_FILENO);
    dup2(m->null_fd, STDOUT_FILENO);
    dup2(m->err_fd, STDERR_FILENO);
    if (m->err_fd != m->null_fd) {
        close(m->err_fd);
    }
    close(m->null_fd);
    if (chdir("/") < 0) {
        /* Only to let the old directory be unmounted; not fatal. */
    }
    if (write(ready_fd, "R", 1) != 1) {
        /* The parent is gone; serve anyway. */
    }
    close(ready_fd);
}

static int
serve(FuseMain *m, int ready_fd)
{
    BlockDevOptions bo;
    FexpOptions fo;
    sigset_t sigs;
    char *errmsg = NULL;
    int ret;

    /* Threads created from here on inherit the mask; the signalfd takes
     * the signals on the IOThread.
     */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    m->sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m->sfd < 0) {
        tlbd_fatal("signalfd: %s", strerror(errno));
    }

    ret = threadlet_queue_init_named(&m->queue, "fuse", m->bo.pool.threads_max,
                                     m->bo.pool.threads_min);
    if (ret < 0) {
        tlbd_fatal("cannot start the worker pool: %s", strerror(-ret));
    }
    threadlet_queue_set_idle_timeout(&m->queue, m->bo.pool.idle_timeout_ms);
    ret = iothread_new("fuse", &m->io);
    if (ret < 0) {
        tlbd_fatal("cannot create the I/O thread: %s", strerror(-ret));
    }

    bo = m->bo;
    bo.queue = &m->queue;
    bo.iothread = m->io;
    ret = blockdev_open(m->image, &bo, &m->bd, &errmsg);
    if (ret < 0) {
        tlbd_fatal("%s", errmsg ? errmsg : strerror(-ret));
    }

    memset(&fo, 0, sizeof(fo));
    fo.mountpoint = m->mountpoint;
    fo.name = m->name;
    fo.image = m->image;
    fo.growable = m->bo.growable;
    fo.direct_io = m->direct_io;
    fo.allow_other = want_allow_other(m);
    fo.fuse_opts = m->fuse_opts;
    fo.debug = m->debug;
    ret = fexp_new(m->bd, m->io, &fo, &m->exp, &errmsg);
    if (ret < 0) {
        blockdev_close(m->bd);
        tlbd_fatal("%s", errmsg ? errmsg : strerror(-ret));
    }
    ret = iothread_add_fd(m->io, m->sfd, EPOLLIN, signal_readable, m);
    if (ret < 0) {
        fexp_free(m->exp);
        blockdev_close(m->bd);
        tlbd_fatal("cannot watch signals: %s", strerror(-ret));
    }
    ret = write_pidfile(m);
    if (ret < 0) {
        fexp_free(m->exp);
        blockdev_close(m->bd);
        unlink(m->pidfile_abs);
        tlbd_fatal("cannot write pid file '%s': %s", m->pidfile_abs,
                   strerror(-ret));
    }
    /* The control socket (control=) answers before anyone hears we are
     * ready.
     */
    ret = blockdev_serve(m->bd);
    if (ret < 0) {
        fexp_free(m->exp);
        blockdev_close(m->bd);
        unlink(m->pidfile_abs);
        tlbd_fatal("cannot start the control channel: %s", strerror(-ret));
    }
    if (ready_fd >= 0) {
        report_ready(m, ready_fd);
    }

    ret = iothread_run(m->io);
    if (ret < 0) {
        fprintf(stderr, "tlbd fuse: event loop failed: %s\n", strerror(-ret));
    } else {
        ret = fexp_status(m->exp);
        if (ret < 0) {
            fprintf(stderr, "tlbd fuse: '%s': %s\n", m->image, strerror(-ret));
        }
    }

    dump_stats(m, stderr);
    fexp_free(m->exp);
    iothread_del_fd(m->io, m->sfd);
    close(m->sfd);
    blockdev_close(m->bd);
    threadlet_queue_destroy(&m->queue, THREADLET_DRAIN);
    iothread_free(m->io);
    if (m->pidfile_abs) {
        unlink(m->pidfile_abs);
    }
    return ret < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int
tlbd_fuse_main(int argc, char **argv)
{
    FuseMain m;
    int ready_fd = -1;
    int status;

    memset(&m, 0, sizeof(m));
    blockdev_options_init(&m.bo);
    m.direct_io = true;
    m.allow_other = ALLOW_AUTO;
    m.sfd = -1;

    tlbd_set_program("tlbd fuse");
    parse_args(&m, argc, argv);
    check_args(&m);
    if (!m.foreground) {
        open_outputs(&m);
        ready_fd = detach();
    }
    status = serve(&m, ready_fd);
    free(m.mountpoint);
    free(m.name);
    free(m.pidfile_abs);
    free(m.fuse_opts);
    return status;
}
