/* tlbd: `tlbd crashtest`'s child processes, its cleanup list, and the copy
 * of an image (see crashtest.h).
 *
 * Every child runs in its own process group, so a Ctrl-C at the terminal
 * reaches crashtest alone, which then stops the child and undoes what it
 * set up in order: the workload before the file system it runs in, the
 * file system before its loop device, the loop device before the FUSE
 * daemon that serves its file.  The signals are blocked except inside
 * ppoll while a child is waited for, so none is missed.
 *
 * Threads: the main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crashtest.h"
#include "util.h"

static volatile sig_atomic_t interrupted;
static sigset_t orig_mask; /* the mask before ct_signals_init */
static sigset_t wait_mask; /* orig_mask without our three signals */

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

void
ct_signals_init(void)
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    struct sigaction sa = { .sa_handler = on_signal };
    sigset_t set;

    sigemptyset(&sa.sa_mask);
    sigemptyset(&set);
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(sigs); i++) {
        sigaddset(&set, sigs[i]);
    }
    sigprocmask(SIG_BLOCK, &set, &orig_mask);
    wait_mask = orig_mask;
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(sigs); i++) {
        sigdelset(&wait_mask, sigs[i]);
        sigaction(sigs[i], &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
}

bool
ct_interrupted(void)
{
    sigset_t pending;

    /* A signal blocked since the last wait is pending, not yet seen. */
    if (!interrupted && sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM) ||
         sigismember(&pending, SIGHUP))) {
        interrupted = 1;
    }
    return interrupted;
}

char *
ct_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        tlbd_die("vasprintf", ENOMEM);
    }
    return s;
}

void
ct_vmsg(const char *fmt, va_list ap)
{
    fprintf(stderr, "tlbd crashtest: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void
ct_msg(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ct_vmsg(fmt, ap);
    va_end(ap);
}

/* In the child: never returns. */
static void __attribute__((noreturn))
child_exec(char *const *argv, const CtRunOpts *o)
{
    int null_fd = open("/dev/null", O_RDWR);
    int out = o->out_fd;
    int sout = o->stdout_fd > 0 ? o->stdout_fd : out;

    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &orig_mask, NULL);
    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
    }
    if (sout >= 0) {
        dup2(sout, STDOUT_FILENO);
    } else if (o->stdout_to_err) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
    }
    if (out >= 0) {
        dup2(out, STDERR_FILENO);
    }
    if (o->cwd && chdir(o->cwd) < 0) {
        fprintf(stderr, "tlbd crashtest: cannot enter '%s': %s\n", o->cwd,
                strerror(errno));
        _exit(127);
    }
    for (char *const *e = o->env_add; e && *e; e++) {
        putenv(*e);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "tlbd crashtest: cannot run '%s': %s\n", argv[0],
            strerror(errno));
    _exit(127);
}

pid_t
ct_spawn(char *const *argv, const CtRunOpts *opts)
{
    static const CtRunOpts defaults = { .out_fd = -1 };
    const CtRunOpts *o = opts ? opts : &defaults;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        child_exec(argv, o);
    }
    setpgid(pid, pid); /* also here: no race with a kill of the group */
    return pid;
}

static int
shell_status(int status)
{
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return 255;
}

/* Wait for PID at most TIMEOUT_MS (-1: for ever), taking signals in
 * between.  With KILL_ON_SIGNAL an interruption sends SIGTERM to the
 * child's group, and SIGKILL 10 s later.  Returns the shell status,
 * -ETIMEDOUT, or -errno.  *SAW_SIGNAL tells whether it was interrupted.
 */
static int
wait_child(pid_t pid, int timeout_ms, bool kill_on_signal, bool *saw_signal)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    uint64_t deadline =
        timeout_ms < 0 ? 0 : tlbd_now_ns() + (uint64_t)timeout_ms * 1000000;
    uint64_t kill_at = 0;
    int status;

    *saw_signal = false;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            int err = errno;
            if (pidfd >= 0) {
                close(pidfd);
            }
            return -err;
        }
        if (ct_interrupted()) {
            *saw_signal = true;
            if (kill_on_signal && !kill_at) {
                kill(-pid, SIGTERM);
                kill_at = tlbd_now_ns() + 10ull * 1000000000;
            } else if (kill_on_signal && tlbd_now_ns() >= kill_at) {
                kill(-pid, SIGKILL);
            }
        }
        uint64_t now = tlbd_now_ns();
        if (deadline && now >= deadline) {
            if (pidfd >= 0) {
                close(pidfd);
            }
            return -ETIMEDOUT;
        }
        /* Wake at least every 200 ms: for the deadlines, and in case no
         * pidfd could be had. */
        struct timespec ts = { 0, 200 * 1000 * 1000 };
        struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
        ppoll(pidfd >= 0 ? &pfd : NULL, pidfd >= 0 ? 1 : 0, &ts, &wait_mask);
    }
    if (pidfd >= 0) {
        close(pidfd);
    }
    return shell_status(status);
}

int
ct_wait(pid_t pid)
{
    bool saw_signal;
    int ret = wait_child(pid, -1, true, &saw_signal);

    return saw_signal ? -EINTR : ret;
}

int
ct_run(char *const *argv, const CtRunOpts *opts)
{
    pid_t pid = ct_spawn(argv, opts);

    return pid < 0 ? (int)pid : ct_wait(pid);
}

/* The cleanup list. */
typedef enum { CL_MOUNT, CL_LOOP, CL_DAEMON, CL_DIR } CleanKind;
typedef struct Clean {
    CleanKind kind;
    char *what; /* the mount point, device, daemon's mount point, dir */
    pid_t pid;  /* CL_DAEMON */
    dev_t fdev; /* CL_LOOP: the backing file's device and inode */
    ino_t ino;
} Clean;

static Clean cleans[16];
static int ncleans;
static bool keep_dir;

static void
push(CleanKind kind, const char *what, pid_t pid)
{
    char *copy = strdup(what);

    if (!copy || ncleans == (int)TLBD_ARRAY_SIZE(cleans)) {
        tlbd_die("crashtest cleanup list", ENOMEM);
    }
    cleans[ncleans++] = (Clean){ kind, copy, pid, 0, 0 };
}

static void
forget(CleanKind kind, const char *what)
{
    for (int i = ncleans - 1; i >= 0; i--) {
        if (cleans[i].kind == kind &&
            (!what || !strcmp(cleans[i].what, what))) {
            free(cleans[i].what);
            memmove(&cleans[i], &cleans[i + 1],
                    (size_t)(ncleans - i - 1) * sizeof(cleans[0]));
            ncleans--;
            return;
        }
    }
}

void
ct_cleanup_mount(const char *dir)
{
    push(CL_MOUNT, dir, 0);
}

void
ct_forget_mount(const char *dir)
{
    forget(CL_MOUNT, dir);
}

/* The entry of KIND for WHAT, or NULL. */
static Clean *
find(CleanKind kind, const char *what)
{
    for (int i = ncleans - 1; i >= 0; i--) {
        if (cleans[i].kind == kind && !strcmp(cleans[i].what, what)) {
            return &cleans[i];
        }
    }
    return NULL;
}

/* DEV, attached to the file ST describes. */
static void
cleanup_loop(const char *dev, const struct stat *st)
{
    push(CL_LOOP, dev, 0);
    cleans[ncleans - 1].fdev = st->st_dev;
    cleans[ncleans - 1].ino = st->st_ino;
}

static void
forget_loop(const char *dev)
{
    forget(CL_LOOP, dev);
}

/* Open C's device; true if it is still attached to C's file.  Loop
 * devices are shared by the whole machine: a number we detached, or that
 * someone else detached by mistake, may already serve another file.
 */
static bool
loop_owned(const Clean *c, int *fdp)
{
    struct loop_info64 li;
    int fd = open(c->what, O_RDONLY | O_CLOEXEC);
    bool owned = fd >= 0 && ioctl(fd, LOOP_GET_STATUS64, &li) == 0 &&
                 li.lo_device == (uint64_t)c->fdev &&
                 li.lo_inode == (uint64_t)c->ino;

    if (fdp) {
        *fdp = fd;
    } else if (fd >= 0) {
        close(fd);
    }
    return owned;
}

bool
ct_loop_owned(const char *dev)
{
    const Clean *c = find(CL_LOOP, dev);

    return c && loop_owned(c, NULL);
}

void
ct_cleanup_daemon(pid_t pid, const char *mountpoint)
{
    push(CL_DAEMON, mountpoint, pid);
}

void
ct_forget_daemon(void)
{
    forget(CL_DAEMON, NULL);
}

void
ct_cleanup_dir(const char *dir)
{
    push(CL_DIR, dir, 0);
}

void
ct_keep_dir(void)
{
    keep_dir = true;
}

/* Run a cleanup command quietly; its status. */
static int
run_quiet(char *const *argv, int out_fd)
{
    CtRunOpts o = { .out_fd = out_fd, .stdout_fd = out_fd };
    bool saw_signal;
    pid_t pid;

    if (out_fd < 0) {
        o.out_fd = o.stdout_fd = open("/dev/null", O_WRONLY);
    }
    pid = ct_spawn(argv, &o);
    if (out_fd < 0 && o.out_fd >= 0) {
        close(o.out_fd);
    }
    /* Cleanup runs also after an interruption: no killing here, but no
     * waiting for ever either. */
    return pid < 0 ? (int)pid : wait_child(pid, 60000, false, &saw_signal);
}

int
ct_umount(const char *dir, int out_fd)
{
    char *umount_argv[] = { "umount", (char *)dir, NULL };
    char *lazy_argv[] = { "umount", "-l", (char *)dir, NULL };

    for (int i = 0; i < 5; i++) {
        if (run_quiet(umount_argv, out_fd) == 0) {
            ct_forget_mount(dir);
            return 0;
        }
        usleep(200 * 1000); /* a process of the workload still leaving */
    }
    if (run_quiet(lazy_argv, out_fd) == 0) {
        ct_forget_mount(dir);
        return 0;
    }
    return -1;
}

char *
ct_loop_attach(const char *file, bool direct_io, int out_fd)
{
    char *argv[] = { "losetup", "-f", "--show", NULL, NULL, NULL };
    struct stat fst;
    char buf[PATH_MAX];
    char sys[PATH_MAX + 64];
    int fds[2];
    int n = 3;
    ssize_t len;

    if (direct_io) {
        argv[n++] = "--direct-io=on";
    }
    argv[n] = (char *)file;
    if (pipe2(fds, O_CLOEXEC) < 0) {
        return NULL;
    }
    CtRunOpts o = { .out_fd = out_fd, .stdout_fd = fds[1] };
    int st = ct_run(argv, &o);
    close(fds[1]);
    len = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    if (st != 0 || len <= 0 || stat(file, &fst) < 0) {
        return NULL;
    }
    buf[len] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    cleanup_loop(buf, &fst);
    if (direct_io) {
        /* losetup falls back to buffered I/O with only a warning; the
         * host's page cache would then hold writes back from the cut. */
        const char *name = strrchr(buf, '/');
        snprintf(sys, sizeof(sys), "/sys/block/%s/loop/dio",
                 name ? name + 1 : buf);
        FILE *fp = fopen(sys, "r");
        int dio = fp ? fgetc(fp) : EOF;
        if (fp) {
            fclose(fp);
        }
        if (dio != '1') {
            ct_msg("loop device %s over '%s' does not use direct I/O", buf,
                   file);
            ct_loop_detach(buf, out_fd);
            return NULL;
        }
    }
    return strdup(buf);
}

int
ct_loop_detach(const char *dev, int out_fd)
{
    Clean *c = find(CL_LOOP, dev);
    int ret = 0;
    int fd = -1;

    if (!c) {
        return -1;
    }
    /* Never by number alone (losetup -d): only while it is still ours.
     * With our descriptor open the kernel detaches it at our close.  A
     * device someone else detached while we used it was let go by the
     * kernel at our last close: nothing left to do. */
    if (!loop_owned(c, &fd)) {
        if (out_fd >= 0) {
            dprintf(out_fd, "tlbd crashtest: %s no longer serves our file\n",
                    dev);
        }
    } else if (ioctl(fd, LOOP_CLR_FD, 0) < 0) {
        if (out_fd >= 0) {
            dprintf(out_fd, "tlbd crashtest: detaching %s: %s\n", dev,
                    strerror(errno));
        }
        ret = -1;
    }
    if (fd >= 0) {
        close(fd);
    }
    /* The kernel lets the device go at the last close, maybe a moment
     * later: wait for that (at most 5 s), so that nothing of ours is left
     * attached when we exit. */
    for (int i = 0; ret == 0 && i < 500 && loop_owned(c, NULL); i++) {
        usleep(10 * 1000);
    }
    forget_loop(dev); /* in no case try that number again */
    return ret;
}

/* Stop the FUSE daemon PID serving MOUNTPOINT: SIGTERM (it flushes and
 * unmounts), and if it is still there after 60 s, SIGKILL and a lazy
 * unmount.  Its shell status.
 */
static int
stop_daemon(pid_t pid, const char *mountpoint)
{
    char *argv[] = { "fusermount3", "-u", "-z", (char *)mountpoint, NULL };
    bool saw_signal;
    int st;

    kill(pid, SIGTERM);
    st = wait_child(pid, 60000, false, &saw_signal);
    if (st == -ETIMEDOUT) {
        kill(pid, SIGKILL);
        st = wait_child(pid, 10000, false, &saw_signal);
        run_quiet(argv, -1);
    }
    return st;
}

int
ct_stop_daemon(void)
{
    for (int i = ncleans - 1; i >= 0; i--) {
        if (cleans[i].kind == CL_DAEMON) {
            int st = stop_daemon(cleans[i].pid, cleans[i].what);
            forget(CL_DAEMON, NULL);
            return st;
        }
    }
    return -ENOENT;
}

void
ct_cleanup(void)
{
    while (ncleans > 0) {
        Clean *c = &cleans[ncleans - 1];
        char *rm_argv[] = { "rm", "-rf", "--one-file-system", c->what, NULL };

        switch (c->kind) {
        case CL_MOUNT:
            ct_umount(c->what, -1);
            break;
        case CL_LOOP:
            ct_loop_detach(c->what, -1);
            break;
        case CL_DAEMON:
            stop_daemon(c->pid, c->what);
            break;
        case CL_DIR:
            if (!keep_dir) {
                run_quiet(rm_argv, -1);
            }
            break;
        }
        /* The helpers above forget what they undid; forget the rest. */
        if (ncleans > 0 && c == &cleans[ncleans - 1]) {
            free(c->what);
            ncleans--;
        }
    }
}
