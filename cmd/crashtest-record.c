/* tlbd: `tlbd crashtest`, the recording (see crashtest.h).
 *
 * In the work directory DIR: `tlbd fuse` (this program, in the foreground,
 * as a child) serves DIR/image, a new sparse file of --size bytes, on the
 * file DIR/dev with a volatile write cache, the write log DIR/log and the
 * control socket DIR/ctl.sock.  A loop device with direct I/O over DIR/dev
 * (so the host's page cache holds nothing back: every write, flush and
 * discard of the file system reaches the export when the kernel sends it),
 * mkfs, a flush and the mark "mkfs" (the states start there), a mount with
 * --mount-options on DIR/mnt, the workload in it, then unmount, detach,
 * and stop the export, which flushes and closes the log.
 *
 * Threads: the main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crashtest.h"
#include "util.h"

/* DIR/NAME, malloc'd. */
static char *
path_in(const char *dir, const char *name)
{
    return ct_asprintf("%s/%s", dir, name);
}

/* A fresh (truncated) output file for the next step's children. */
static int
step_out(const CtWork *w)
{
    return open(w->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

/* Print the last lines of FILE on stderr, indented: what a failed step
 * said.
 */
static void
show_tail(const char *file)
{
    char *lines[20] = { NULL };
    char *line = NULL;
    size_t cap = 0;
    size_t n = 0;
    FILE *fp = fopen(file, "r");

    if (!fp) {
        return;
    }
    while (getline(&line, &cap, fp) > 0) {
        free(lines[n % 20]);
        lines[n % 20] = strdup(line);
        n++;
    }
    for (size_t i = n > 20 ? n - 20 : 0; i < n; i++) {
        if (lines[i % 20]) {
            fprintf(stderr, "  %s", lines[i % 20]);
        }
    }
    for (size_t i = 0; i < 20; i++) {
        free(lines[i]);
    }
    free(line);
    fclose(fp);
}

/* Report a failed step: STATUS is ct_run's.  Returns the exit status. */
static int
step_failed(const CtWork *w, const char *what, int status, const char *file)
{
    if (status == -EINTR || ct_interrupted()) {
        return CT_EXIT_INTERRUPTED;
    }
    if (status < 0) {
        ct_msg("%s: %s", what, strerror(-status));
    } else {
        ct_msg("%s failed (exit status %d)%s", what, status,
               file ? "; its output:" : "");
    }
    if (file) {
        show_tail(file);
    }
    (void)w;
    return CT_EXIT_SETUP;
}

/* Run ARGV for step WHAT with its output in W->out.  0 or the exit
 * status to give.
 */
static int
step(const CtWork *w, const char *what, char *const *argv)
{
    int fd = step_out(w);
    CtRunOpts o = { .out_fd = fd };
    int st;

    if (fd < 0) {
        return step_failed(w, w->out, -errno, NULL);
    }
    st = ct_run(argv, &o);
    close(fd);
    return st == 0 ? 0 : step_failed(w, what, st, w->out);
}

/* Start `tlbd fuse` and wait until it serves (its pid file is written). */
static int
start_export(const CtArgs *a, const CtWork *w, const char *image,
             const char *dev, const char *sock)
{
    char *pidfile = path_in(w->dir, "fuse.pid");
    char *errfile = path_in(w->dir, "fuse.err");
    char *cache = NULL;
    char *logopt = NULL;
    char *ctlopt = NULL;
    int ret = CT_EXIT_SETUP;
    int fd = -1;
    pid_t pid;

    if (asprintf(&cache, "--volatile-cache=%llu",
                 (unsigned long long)a->cache) < 0 ||
        asprintf(&logopt, "--log-writes=%s", w->log) < 0 ||
        asprintf(&ctlopt, "--control=%s", sock) < 0) {
        tlbd_die("asprintf", ENOMEM);
    }
    char *argv[] = { a->self,          "fuse",        "-f",        "-P",
                     pidfile,          cache,         logopt,      ctlopt,
                     "--direct-io=on", (char *)image, (char *)dev, NULL };

    fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        ct_msg("cannot create '%s': %s", errfile, strerror(errno));
        goto out;
    }
    CtRunOpts o = { .out_fd = fd };
    pid = ct_spawn(argv, &o);
    if (pid < 0) {
        ct_msg("cannot run '%s': %s", a->self, strerror((int)-pid));
        goto out;
    }
    ct_cleanup_daemon(pid, dev);
    for (int i = 0; i < 60 * 50; i++) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        struct stat st;
        int status;

        if (stat(pidfile, &st) == 0 && st.st_size > 0) {
            ret = 0;
            goto out;
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ct_forget_daemon();
            ct_msg("tlbd fuse failed to start; its output:");
            show_tail(errfile);
            goto out;
        }
        if (ct_interrupted()) {
            ret = CT_EXIT_INTERRUPTED;
            goto out;
        }
        nanosleep(&ts, NULL);
    }
    ct_msg("tlbd fuse did not start within 60 s; its output:");
    show_tail(errfile);
out:
    if (fd >= 0) {
        close(fd);
    }
    free(cache);
    free(logopt);
    free(ctlopt);
    free(pidfile);
    free(errfile);
    return ret;
}

/* Run the workload in MNT with TLBD_CONTROL, TLBD and PATH set. */
static int
run_workload(const CtArgs *a, const char *mnt, const char *sock)
{
    char *dir = strdup(a->self);
    const char *path = getenv("PATH");
    char *env[4] = { NULL };
    int st;

    if (!dir || asprintf(&env[0], "TLBD_CONTROL=%s", sock) < 0 ||
        asprintf(&env[1], "TLBD=%s", a->self) < 0 ||
        asprintf(&env[2], "PATH=%s:%s", dirname(dir),
                 path ? path : "/usr/bin:/bin") < 0) {
        tlbd_die("asprintf", ENOMEM);
    }
    CtRunOpts o = {
        .cwd = mnt, .out_fd = -1, .stdout_to_err = true, .env_add = env
    };
    ct_msg("running the workload: %s%s", a->workload[0],
           a->workload[1] ? " ..." : "");
    st = ct_run(a->workload, &o);
    for (int i = 0; i < 3; i++) {
        free(env[i]);
    }
    free(dir);
    if (st == -EINTR || ct_interrupted()) {
        return CT_EXIT_INTERRUPTED;
    }
    if (st != 0) {
        if (st < 0) {
            ct_msg("cannot run the workload '%s': %s", a->workload[0],
                   strerror(-st));
        } else {
            ct_msg("the workload failed (exit status %d)", st);
        }
        return CT_EXIT_SETUP;
    }
    return 0;
}

/* Make the file system on DEV, make it durable and mark the point. */
static int
make_fs(const CtArgs *a, const CtWork *w, const char *loop, const char *sock)
{
    size_t n = 0;
    int ret;

    while (a->mkfs_options[n]) {
        n++;
    }
    char **argv = calloc(n + 4, sizeof(*argv));
    if (!argv) {
        tlbd_die("calloc", ENOMEM);
    }
    argv[0] = (char *)a->fs->mkfs;
    argv[1] = (char *)a->fs->mkfs_force;
    memcpy(&argv[2], a->mkfs_options, n * sizeof(*argv));
    argv[n + 2] = (char *)loop;
    ret = step(w, a->fs->mkfs, argv);
    free(argv);
    if (ret) {
        return ret;
    }
    char *flush_argv[] = { a->self, "ctl", (char *)sock, "flush", NULL };
    char *mark_argv[] = { a->self, "ctl", (char *)sock, "mark", "mkfs", NULL };
    ret = step(w, "tlbd ctl flush", flush_argv);
    return ret ? ret : step(w, "tlbd ctl mark mkfs", mark_argv);
}

/* Mount DEV on MNT with the user's options. */
static int
mount_fs(const CtArgs *a, const CtWork *w, const char *loop, const char *mnt)
{
    char *argv[] = { "mount", "-t", (char *)a->fs->name, NULL, NULL, NULL,
                     NULL,    NULL };
    int n = 3;
    int ret;

    if (a->mount_options) {
        argv[n++] = "-o";
        argv[n++] = (char *)a->mount_options;
    }
    argv[n++] = (char *)loop;
    argv[n++] = (char *)mnt;
    ret = step(w, "mount", argv);
    if (ret == 0) {
        ct_cleanup_mount(mnt);
    }
    return ret;
}

int
ct_record(const CtArgs *a, CtWork *w)
{
    char *image = path_in(w->dir, "image");
    char *dev = path_in(w->dir, "dev");
    char *sock = path_in(w->dir, "ctl.sock");
    char *mnt = path_in(w->dir, "mnt");
    char *loop = NULL;
    int ret = CT_EXIT_SETUP;
    int fd;

    fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)a->size) < 0 || close(fd) < 0) {
        ct_msg("cannot create '%s': %s", image, strerror(errno));
        goto out;
    }
    fd = open(dev, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || close(fd) < 0 || mkdir(mnt, 0755) < 0) {
        ct_msg("cannot create '%s': %s", fd < 0 ? dev : mnt, strerror(errno));
        goto out;
    }
    ret = start_export(a, w, image, dev, sock);
    if (ret) {
        goto out;
    }
    ret = CT_EXIT_SETUP;
    fd = step_out(w);
    loop = ct_loop_attach(dev, true, fd);
    if (fd >= 0) {
        close(fd);
    }
    if (!loop) {
        ret = step_failed(w, "losetup --direct-io=on", 1, w->out);
        goto out;
    }
    ct_msg("recording: %s on %s (%s over tlbd fuse)", a->fs->name, loop, dev);
    ret = make_fs(a, w, loop, sock);
    if (!ret) {
        ret = mount_fs(a, w, loop, mnt);
    }
    if (!ret) {
        ret = run_workload(a, mnt, sock);
    }
    if (ret) {
        goto out;
    }
    fd = step_out(w);
    if (ct_umount(mnt, fd) < 0) {
        ret = step_failed(w, "umount", 1, w->out);
    } else if (ct_loop_detach(loop, fd) < 0) {
        ret = step_failed(w, "losetup -d", 1, w->out);
    }
    if (fd >= 0) {
        close(fd);
    }
    if (ret) {
        goto out;
    }
    int st = ct_stop_daemon();
    if (st != 0) {
        char *errfile = path_in(w->dir, "fuse.err");
        ret = step_failed(w, "tlbd fuse", st, errfile);
        free(errfile);
        goto out;
    }
    unlink(image); /* the log holds everything from here on */
    ret = 0;
out:
    free(loop);
    free(image);
    free(dev);
    free(sock);
    free(mnt);
    return ret;
}
