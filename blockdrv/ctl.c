/* tlbd: the control channel of a BlockDev (control=PATH): a Unix stream
 * socket that `tlbd ctl` talks to while an export runs.
 *
 * Protocol: the client sends one line, "COMMAND [ARGS...]\n" (words
 * separated by spaces, at most LINE_MAX_LEN bytes); the server answers
 * with text lines and a last line "ok" or "error: MESSAGE", then closes.
 * One connection at a time, one command each.  The commands are the table
 * in ctl-cmd.c; tlbd(1) "TLBD CTL" documents them and the stats keys.
 *
 * Who may connect: the socket is created with mode 0600, and each peer's
 * SO_PEERCRED uid must be the server's effective uid (root included: the
 * socket's owner and nobody else).
 *
 * Lifetime: ctl_open (from blockdev_open) creates, binds and listens, so a
 * client that connects early waits in the backlog; ctl_start (from
 * blockdev_serve, after any fork) starts the thread; ctl_close (from
 * blockdev_close, before the drain) stops it and removes the file.
 *
 * Threads: ctl_open, ctl_start and ctl_close run on the thread that opens
 * and closes the BlockDev.  The thread "ctl" serves the connections and
 * runs the commands (ctl-cmd.c); it takes no lock of its own.  ctl_close
 * wakes it through a pipe and joins it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"
#include "blockdev-int.h"

#define LINE_MAX_LEN   1024
#define READ_TIMEOUT_S 10 /* a client that sends no line is dropped */

struct Ctl {
    /* read-only after ctl_open */
    BlockDev *bd;
    char *path; /* absolute */
    int listen_fd;
    int stop_fd[2]; /* a pipe: ctl_close writes to [1] */

    /* the opening thread only */
    pid_t owner;  /* the process that removes the file at close */
    bool running; /* thread started in this process */
    pthread_t thread;
};

bool
ctl_path_ok(const char *path)
{
    size_t len = path ? strlen(path) : 0;

    return len > 0 && len <= CTL_PATH_MAX;
}

/* Read one line from FD into LINE (LINE_MAX_LEN + 1 bytes), without its
 * newline.  End of file ends a line too.  0 or -errno with *ERRMSG.
 */
static int
read_line(int fd, char *line, char **errmsg)
{
    size_t len = 0;

    for (;;) {
        ssize_t n = recv(fd, line + len, LINE_MAX_LEN + 1 - len, 0);
        char *nl;

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return blockdev_fail(errmsg, -errno, "reading the command: %s",
                                 errno == EAGAIN ? "timed out"
                                                 : strerror(errno));
        }
        nl = memchr(line + len, '\n', (size_t)n);
        len += (size_t)n;
        if (nl || n == 0) {
            if (nl) {
                len = (size_t)(nl - line);
            }
            if (nl && len > 0 && line[len - 1] == '\r') {
                len--;
            }
            line[len] = '\0';
            return strlen(line) == len ? 0
                                       : blockdev_fail(errmsg, -EINVAL,
                                                       "a NUL byte in "
                                                       "the command");
        }
        if (len > LINE_MAX_LEN) {
            return blockdev_fail(errmsg, -E2BIG,
                                 "the command is longer than %d bytes",
                                 LINE_MAX_LEN);
        }
    }
}

static void
send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return; /* the client went away: nothing to tell it */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Check the peer, read its line, run it, answer. */
static void
serve_one(Ctl *c, int fd)
{
    struct timeval tv = { .tv_sec = READ_TIMEOUT_S };
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    char line[LINE_MAX_LEN + 1];
    char *errmsg = NULL;
    char *text = NULL;
    size_t tlen = 0;
    FILE *out;
    int ret;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    out = open_memstream(&text, &tlen);
    if (!out) {
        ret = blockdev_fail(&errmsg, -ENOMEM, "out of memory");
    } else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        ret =
            blockdev_fail(&errmsg, -errno, "SO_PEERCRED: %s", strerror(errno));
    } else if (cred.uid != geteuid()) {
        ret = blockdev_fail(&errmsg, -EPERM,
                            "permission denied: uid %u does not own this "
                            "control socket",
                            (unsigned)cred.uid);
    } else {
        ret = read_line(fd, line, &errmsg);
        if (ret == 0) {
            ret = ctl_run_line(c->bd, line, out, &errmsg);
        }
    }
    if (out) {
        fclose(out);
        send_all(fd, text, tlen);
    }
    free(text);
    if (ret < 0) {
        char *last = NULL;
        int n = asprintf(&last, "error: %s\n", errmsg ? errmsg : "failed");
        if (n > 0) {
            send_all(fd, last, (size_t)n);
        }
        free(last);
    } else {
        send_all(fd, "ok\n", 3);
    }
    free(errmsg);
    /* Closing with unread input would reset the connection, and the
     * client could lose the reply: wait for its end (or the timeout).
     */
    shutdown(fd, SHUT_WR);
    while (recv(fd, line, sizeof(line), 0) > 0) {
    }
}

static void *
ctl_thread(void *arg)
{
    Ctl *c = arg;
    struct pollfd fds[2] = {
        { .fd = c->listen_fd, .events = POLLIN },
        { .fd = c->stop_fd[0], .events = POLLIN },
    };

    for (;;) {
        int fd;

        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            tlbd_die("poll", errno);
        }
        if (fds[1].revents) {
            return NULL;
        }
        fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            continue; /* the client gave up (ECONNABORTED), or EINTR */
        }
        serve_one(c, fd);
        close(fd);
    }
}

/* PATH exists: remove it if it is a stale socket of ours, else refuse. */
static int
claim_path(const char *path, const struct sockaddr_un *sa, char **errmsg)
{
    struct stat st;
    int fd;
    int err;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        return blockdev_fail(errmsg, -errno, "control: '%s': %s", path,
                             strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode)) {
        return blockdev_fail(errmsg, -EEXIST,
                             "control: '%s' exists and is not a socket", path);
    }
    if (st.st_uid != geteuid()) {
        return blockdev_fail(errmsg, -EEXIST,
                             "control: '%s' exists and belongs to uid %u", path,
                             (unsigned)st.st_uid);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return blockdev_fail(errmsg, -errno, "control: socket: %s",
                             strerror(errno));
    }
    err =
        connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 0 : errno;
    close(fd);
    if (err == 0) {
        return blockdev_fail(errmsg, -EADDRINUSE,
                             "control: '%s' is in use: a running export "
                             "listens on it",
                             path);
    }
    if (err != ECONNREFUSED) {
        return blockdev_fail(errmsg, -err, "control: '%s' exists: %s", path,
                             strerror(err));
    }
    /* A stale socket of ours: nobody listens. */
    if (unlink(path) < 0 && errno != ENOENT) {
        return blockdev_fail(errmsg, -errno,
                             "control: cannot remove the stale socket "
                             "'%s': %s",
                             path, strerror(errno));
    }
    return 0;
}

/* PATH made absolute, as the process may change directory before close
 * (nbdkit --fork, tlbd fuse).  NULL when out of memory.
 */
static char *
absolute(const char *path)
{
    char *cwd;
    char *abs = NULL;

    if (path[0] == '/') {
        return strdup(path);
    }
    cwd = getcwd(NULL, 0);
    if (!cwd || asprintf(&abs, "%s/%s", cwd, path) < 0) {
        abs = NULL;
    }
    free(cwd);
    return abs;
}

int
ctl_open(BlockDev *bd, const char *path, Ctl **out, char **errmsg)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    Ctl *c;
    int ret;

    *out = NULL;
    if (!ctl_path_ok(path)) {
        return blockdev_fail(errmsg, -EINVAL,
                             "control: '%s' is not a socket path of 1 to %d "
                             "bytes",
                             path ? path : "", CTL_PATH_MAX);
    }
    memcpy(sa.sun_path, path, strlen(path));
    ret = claim_path(path, &sa, errmsg);
    if (ret < 0) {
        return ret;
    }
    c = calloc(1, sizeof(*c));
    if (!c || !(c->path = absolute(path))) {
        free(c);
        return blockdev_fail(errmsg, -ENOMEM, "control: out of memory");
    }
    c->bd = bd;
    c->owner = getpid();
    c->stop_fd[0] = c->stop_fd[1] = -1;
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->listen_fd < 0 || pipe2(c->stop_fd, O_CLOEXEC) < 0) {
        ret = blockdev_fail(errmsg, -errno, "control: %s", strerror(errno));
        goto out_close;
    }
    if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = blockdev_fail(errmsg, -errno, "control: '%s': %s", path,
                            strerror(errno));
        goto out_close;
    }
    /* The peer check covers the moment before chmod. */
    if (chmod(path, 0600) < 0 || listen(c->listen_fd, 16) < 0) {
        ret = blockdev_fail(errmsg, -errno, "control: '%s': %s", path,
                            strerror(errno));
        unlink(path);
        goto out_close;
    }
    *out = c;
    return 0;

out_close:
    if (c->listen_fd >= 0) {
        close(c->listen_fd);
    }
    if (c->stop_fd[0] >= 0) {
        close(c->stop_fd[0]);
        close(c->stop_fd[1]);
    }
    free(c->path);
    free(c);
    return ret;
}

int
ctl_start(Ctl *c)
{
    sigset_t all, old;
    int ret;

    if (c->running) {
        return 0;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ret = pthread_create(&c->thread, NULL, ctl_thread, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret != 0) {
        return -ret;
    }
    pthread_setname_np(c->thread, "ctl");
    c->running = true;
    c->owner = getpid();
    return 0;
}

void
ctl_close(Ctl *c)
{
    if (!c) {
        return;
    }
    if (c->running) {
        while (write(c->stop_fd[1], "x", 1) < 0 && errno == EINTR) {
        }
        pthread_join(c->thread, NULL);
    }
    if (c->owner == getpid()) {
        unlink(c->path);
    }
    close(c->listen_fd);
    close(c->stop_fd[0]);
    close(c->stop_fd[1]);
    free(c->path);
    free(c);
}

int
blockdev_serve(BlockDev *bd)
{
    return bd->ctl ? ctl_start(bd->ctl) : 0;
}

void
blockdev_set_stats_hook(BlockDev *bd, BlockDevStatsHook *fn, void *opaque)
{
    bd->stats_hook = fn;
    bd->stats_opaque = opaque;
}
