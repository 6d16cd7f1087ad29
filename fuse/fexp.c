/* tlbd: the FUSE export's session: mount, dispatch from the IOThread,
 * shutdown.
 *
 * Thread model: fexp_new mounts and answers the kernel's INIT on the
 * caller's thread before the IOThread's loop runs; then the session's
 * /dev/fuse fd, made non-blocking, is an fd handler of that IOThread.  When
 * it is readable the handler reads up to RECV_BATCH requests with
 * fuse_session_receive_buf and hands each to fuse_session_process_buf,
 * which calls the operations in fexp-ops.c on the same thread.  Those
 * reply at once when the request could be done without waiting on a
 * device, or else submit blockdev_aio_* requests and return; the
 * completions come back to the IOThread and reply.  So every field of
 * FuseExport is touched by the IOThread only (or before and after its loop
 * runs), and there is no lock.
 *
 * Buffers: a request arrives in a receive buffer of libfuse's largest
 * request size (256 pages and a header), always one of ours, never one
 * libfuse allocates.  A write's data stays there: the write takes the
 * buffer over until it completes, and the next request is received into
 * another buffer.  No receive buffer is reused while a write from it is in
 * flight.  Reads get their data buffer from the same free list.  Reusing
 * buffers matters: a fresh megabyte from malloc is an mmap, faults on
 * every page and a TLB shoot-down at munmap, which made 1 MiB reads ten
 * times slower.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fexp-int.h"

#define RECV_BATCH    32   /* requests read per wake-up before completions */
#define MAX_FREE_BUFS 64   /* buffers kept for reuse: max_background */
#define BUF_ALIGN     4096 /* good for O_DIRECT images: no bounce buffer */
#define FEXP_SUBTYPE  "tlbd"

static void flush_and_stop(FuseExport *exp);

FexpReq *
fexp_req_new(FuseExport *exp, fuse_req_t req)
{
    FexpReq *r = calloc(1, sizeof(*r));
    if (!r) {
        return NULL;
    }
    r->exp = exp;
    r->req = req;
    exp->stats.in_flight++;
    if (exp->stats.in_flight > exp->stats.peak_in_flight) {
        exp->stats.peak_in_flight = exp->stats.in_flight;
    }
    return r;
}

void
fexp_req_end(FexpReq *r)
{
    FuseExport *exp = r->exp;

    if (r->buf_ring) {
        /* The entry's; it goes back to the kernel with the reply. */
    } else if (r->buf_pooled) {
        fexp_buf_put(exp, r->buf);
    } else {
        free(r->buf);
    }
    if (r->is_write) {
        exp->stats.writes_in_flight--;
    }
    free(r);
    exp->stats.in_flight--;
    if (exp->stopping && exp->stats.in_flight == 0) {
        flush_and_stop(exp);
    }
}

void
fexp_req_fail(FexpReq *r, int err)
{
    /* Taken back from the pool by an INTERRUPT (req_interrupted). */
    if (err == ECANCELED) {
        err = EINTR;
    }
    fexp_reply_err(r->exp, r->req, err);
    fexp_req_end(r);
}

void
fexp_reply_err(FuseExport *exp, fuse_req_t req, int err)
{
    if (err) {
        exp->stats.errors++;
    }
    fuse_reply_err(req, err);
}

void *
fexp_buf_get(FuseExport *exp)
{
    void *buf = exp->free_bufs;

    if (buf) {
        exp->free_bufs = *(void **)buf;
        exp->n_free_bufs--;
        return buf;
    }
    exp->stats.buf_allocs++;
    if (posix_memalign(&buf, BUF_ALIGN, exp->buf_size)) {
        return NULL;
    }
    return buf;
}

void
fexp_buf_put(FuseExport *exp, void *buf)
{
    if (!buf) {
        return;
    }
    if (exp->n_free_bufs >= MAX_FREE_BUFS) {
        free(buf);
        return;
    }
    *(void **)buf = exp->free_bufs;
    exp->free_bufs = buf;
    exp->n_free_bufs++;
}

void *
fexp_take_rbuf(FuseExport *exp)
{
    void *buf = exp->cur_buf;
    exp->cur_buf = NULL;
    return buf;
}

/* Every reply libfuse sends, and ours: a ring request's goes to its ring
 * entry, the rest to /dev/fuse.  The INIT reply gets the io_uring flag
 * here, as libfuse 3.14 cannot set it.
 */
static ssize_t
fexp_send(FuseExport *exp, struct iovec *iov, int count)
{
    const struct fuse_out_header *oh = iov[0].iov_base;

    /* Notifications (unique 0) may come from any thread: they touch no
     * state and always take /dev/fuse.
     */
    if (count >= 1 && iov[0].iov_len >= sizeof(*oh) && oh->unique != 0) {
        if (exp->init_unique && oh->unique == exp->init_unique) {
            exp->init_unique = 0;
            if (oh->error == 0 && count == 2 &&
                iov[1].iov_len == sizeof(exp->init_out)) {
                memcpy(&exp->init_out, iov[1].iov_base, sizeof(exp->init_out));
                fexp_uring_init_reply(exp, &exp->init_out);
                iov[1].iov_base = &exp->init_out;
            }
        } else {
            ssize_t n = fexp_uring_send(exp, iov, count);
            if (n != -ENOENT) {
                return n;
            }
        }
    }
    return writev(exp->fd, iov, count);
}

static ssize_t
io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    (void)fd;
    return fexp_send(userdata, iov, count);
}

static ssize_t
io_read(int fd, void *buf, size_t len, void *userdata)
{
    (void)userdata;
    return read(fd, buf, len);
}

static const struct fuse_custom_io fexp_io = {
    .writev = io_writev,
    .read = io_read,
};

void
fexp_reply_open_flags(FuseExport *exp, fuse_req_t req, uint32_t open_flags)
{
    struct fuse_out_header oh;
    struct fuse_open_out oo;
    struct iovec iov[2];

    memset(&oh, 0, sizeof(oh));
    memset(&oo, 0, sizeof(oo));
    oo.open_flags = open_flags;
    oh.len = sizeof(oh) + sizeof(oo);
    oh.unique = exp->cur_unique;
    iov[0].iov_base = &oh;
    iov[0].iov_len = sizeof(oh);
    iov[1].iov_base = &oo;
    iov[1].iov_len = sizeof(oo);
    /* ENOENT: the opener was interrupted and no longer waits; harmless. */
    if (fexp_send(exp, iov, 2) < 0 && errno != ENOENT) {
        exp->stats.errors++;
    }
    fuse_reply_none(req); /* frees libfuse's request, sends nothing */
}

static void
stop_watching(FuseExport *exp)
{
    if (exp->watching) {
        iothread_del_fd(exp->io, exp->fd);
        exp->watching = false;
    }
}

static void
final_flush_done(void *opaque, int64_t ret)
{
    FuseExport *exp = opaque;
    if (ret < 0 && exp->status == 0) {
        exp->status = (int)ret;
    }
    iothread_stop(exp->io);
}

/* Nothing is in flight any more: flush the image and stop the loop. */
static void
flush_and_stop(FuseExport *exp)
{
    if (exp->finishing) {
        return;
    }
    exp->finishing = true;
    if (exp->readonly) {
        iothread_stop(exp->io);
        return;
    }
    int ret = blockdev_aio_flush(exp->bd, final_flush_done, exp);
    if (ret < 0) {
        final_flush_done(exp, ret);
    }
}

void
fexp_shutdown(FuseExport *exp)
{
    if (exp->stopping) {
        return;
    }
    exp->stopping = true;
    stop_watching(exp);
    fexp_uring_stop(exp);
    if (exp->stats.in_flight == 0) {
        flush_and_stop(exp);
    }
}

uint32_t
fexp_process(FuseExport *exp, struct fuse_buf *buf, struct FexpRingEnt *ent)
{
    const struct fuse_in_header *in = buf->mem;
    uint32_t opcode = in->opcode;

    /* A ring request's buffer is the entry's: no write takes it over. */
    exp->cur_buf = ent ? NULL : buf->mem;
    exp->cur_ent = ent;
    exp->cur_unique = in->unique;
    fuse_session_process_buf(exp->se, buf);
    if (!ent && !exp->cur_buf) {
        buf->mem = NULL; /* a write kept it */
    }
    exp->cur_buf = NULL;
    exp->cur_ent = NULL;
    return opcode;
}

/* Process the request just received; returns its opcode. */
static uint32_t
process_one(FuseExport *exp)
{
    return fexp_process(exp, &exp->rbuf, NULL);
}

/* Read and process requests until none is waiting. */
static void
session_readable(void *opaque, int fd, uint32_t events)
{
    FuseExport *exp = opaque;
    uint64_t n = 0;
    (void)fd;
    (void)events;

    exp->stats.wakeups++;
    while (n < RECV_BATCH && !exp->stopping) {
        if (!exp->rbuf.mem) {
            exp->rbuf.mem = fexp_buf_get(exp);
            if (!exp->rbuf.mem) {
                /* Never let libfuse allocate a buffer of its own. */
                exp->status = -ENOMEM;
                fexp_shutdown(exp);
                break;
            }
        }
        int ret = fuse_session_receive_buf(exp->se, &exp->rbuf);
        if (ret == -EAGAIN) {
            break;
        }
        if (ret == -EINTR) {
            continue;
        }
        if (ret <= 0 || fuse_session_exited(exp->se)) {
            /* 0: unmounted (ENODEV) or the connection was aborted. */
            if (ret < 0 && exp->status == 0) {
                exp->status = ret;
            }
            fexp_shutdown(exp);
            break;
        }
        n++;
        exp->stats.requests++;
        process_one(exp);
        if (fuse_session_exited(exp->se)) {
            fexp_shutdown(exp);
            break;
        }
    }
    if (n > exp->stats.max_batch) {
        exp->stats.max_batch = n;
    }
}

/* "-o" value naming the image in the mount table; ',' and '\' escaped. */
static char *
fsname_option(const char *image)
{
    size_t len = strlen(image);
    char *s = malloc(sizeof("fsname=tlbd:") + 2 * len);
    char *p;

    if (!s) {
        return NULL;
    }
    p = stpcpy(s, "fsname=tlbd:");
    for (size_t i = 0; i < len; i++) {
        if (image[i] == ',' || image[i] == '\\') {
            *p++ = '\\';
        }
        *p++ = image[i];
    }
    *p = '\0';
    return s;
}

/* The last max_read=N in the -o options, or 0. */
static unsigned
max_read_option(const char *opts)
{
    unsigned val = 0;
    const char *p = opts;

    while (p && (p = strstr(p, "max_read=")) != NULL) {
        if (p == opts || p[-1] == ',') {
            val = (unsigned)strtoul(p + 9, NULL, 0);
        }
        p += 9;
    }
    return val;
}

static int
make_session(FuseExport *exp, const FexpOptions *opts, char **errmsg)
{
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    char *fsname = fsname_option(exp->image);
    int ret = -ENOMEM;

    if (!fsname || fuse_opt_add_arg(&args, "tlbd") ||
        fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, fsname) ||
        fuse_opt_add_arg(&args, "-o") ||
        fuse_opt_add_arg(&args,
                         "subtype=" FEXP_SUBTYPE ",default_permissions") ||
        (opts->allow_other && (fuse_opt_add_arg(&args, "-o") ||
                               fuse_opt_add_arg(&args, "allow_other"))) ||
        (exp->readonly &&
         (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, "ro"))) ||
        (opts->fuse_opts && *opts->fuse_opts &&
         (fuse_opt_add_arg(&args, "-o") ||
          fuse_opt_add_arg(&args, opts->fuse_opts))) ||
        (opts->debug && fuse_opt_add_arg(&args, "-d"))) {
        goto out;
    }
    exp->se = fuse_session_new(&args, &fexp_ops, sizeof(fexp_ops), exp);
    if (!exp->se) {
        /* libfuse printed which option it did not like. */
        if (asprintf(errmsg, "cannot start a FUSE session: bad -o '%s'",
                     opts->fuse_opts ? opts->fuse_opts : "") < 0) {
            *errmsg = NULL;
        }
        ret = -EINVAL;
        goto out;
    }
    ret = 0;
out:
    fuse_opt_free_args(&args);
    free(fsname);
    return ret;
}

/* Before INIT is answered: remember it, and whether the kernel offers
 * FUSE over io_uring (FUSE_INIT_EXT, flags2).
 */
static void
note_init(FuseExport *exp)
{
    const struct fuse_in_header *in = exp->rbuf.mem;
    const struct fuse_init_in *ii = (const void *)(in + 1);

    if (in->opcode != FUSE_INIT) {
        return;
    }
    exp->init_unique = in->unique;
    exp->uring_offered = in->len >= sizeof(*in) + sizeof(*ii) &&
                         (ii->flags & FUSE_INIT_EXT) &&
                         (ii->flags2 & (uint32_t)(FUSE_OVER_IO_URING >> 32));
}

/* The kernel sends INIT as soon as the mount exists; answer it before the
 * loop runs, so the mount is usable when fexp_new returns.
 */
static int
answer_init(FuseExport *exp)
{
    while (!fuse_session_exited(exp->se)) {
        if (!exp->rbuf.mem && !(exp->rbuf.mem = fexp_buf_get(exp))) {
            return -ENOMEM;
        }
        int ret = fuse_session_receive_buf(exp->se, &exp->rbuf);
        if (ret == -EINTR) {
            continue;
        }
        if (ret <= 0) {
            return ret < 0 ? ret : -ENOTCONN;
        }
        note_init(exp);
        if (process_one(exp) == FUSE_INIT) {
            return fuse_session_exited(exp->se) ? -EPROTO : 0;
        }
    }
    return -ENOTCONN;
}

int
fexp_new(BlockDev *bd, IOThread *io, const FexpOptions *opts, FuseExport **out,
         char **errmsg)
{
    FuseExport *exp;
    struct stat mst;
    struct stat ist;
    int ret;

    *errmsg = NULL;
    if (stat(opts->mountpoint, &mst) < 0) {
        ret = -errno;
        if (asprintf(errmsg, "cannot use mountpoint '%s': %s", opts->mountpoint,
                     strerror(-ret)) < 0) {
            *errmsg = NULL;
        }
        return ret;
    }
    if (fstat(blockdev_fd(bd), &ist) < 0) {
        return -errno;
    }
    exp = calloc(1, sizeof(*exp));
    if (!exp) {
        return -ENOMEM;
    }
    exp->bd = bd;
    exp->io = io;
    exp->fd = -1;
    exp->dir_mode = S_ISDIR(mst.st_mode);
    exp->readonly = blockdev_is_readonly(bd);
    exp->growable = opts->growable;
    exp->direct_io = opts->direct_io;
    exp->io_uring_mode = opts->io_uring;
    exp->base_mode = ist.st_mode & 0777;
    if (exp->readonly) {
        exp->base_mode &= ~0222;
    }
    exp->file_mode = exp->base_mode;
    exp->dir_mode_bits = exp->dir_mode ? (mst.st_mode & 0777) : 0755;
    /* libfuse's largest request: FUSE_MAX_MAX_PAGES pages and a header. */
    exp->buf_size = 256 * (size_t)getpagesize() + 4096;
    exp->uid = getuid();
    exp->gid = getgid();
    exp->mountpoint = strdup(opts->mountpoint);
    exp->image = strdup(opts->image ? opts->image : blockdev_path(bd));
    exp->name = strdup(opts->name ? opts->name : "image");
    if (!exp->mountpoint || !exp->image || !exp->name) {
        ret = -ENOMEM;
        goto out_free;
    }

    exp->max_read = max_read_option(opts->fuse_opts);
    ret = make_session(exp, opts, errmsg);
    if (ret < 0) {
        goto out_free;
    }
    if (fuse_session_mount(exp->se, exp->mountpoint) != 0) {
        ret = -EIO;
        if (asprintf(errmsg, "cannot mount on '%s'%s", exp->mountpoint,
                     opts->allow_other && getuid() != 0
                         ? ": allow_other needs 'user_allow_other' in"
                           " /etc/fuse.conf"
                         : " (see the message above)") < 0) {
            *errmsg = NULL;
        }
        goto out_free;
    }
    exp->mounted = true;
    exp->fd = fuse_session_fd(exp->se);
    /* Our read and writev: replies to ring requests go to the ring. */
    if (fuse_session_custom_io(exp->se, &fexp_io, exp->fd) != 0) {
        ret = -ENOMEM;
        goto out_free;
    }
    ret = answer_init(exp);
    if (ret < 0) {
        if (asprintf(errmsg, "FUSE handshake on '%s' failed: %s",
                     exp->mountpoint, strerror(-ret)) < 0) {
            *errmsg = NULL;
        }
        goto out_free;
    }
    if (exp->ring) {
        ret = fexp_uring_start(exp);
        if (ret < 0) {
            if (asprintf(errmsg, "cannot start io_uring on '%s': %s",
                         exp->mountpoint, strerror(-ret)) < 0) {
                *errmsg = NULL;
            }
            goto out_free;
        }
    } else if (exp->io_uring_mode == FEXP_IO_URING_ON) {
        ret = -EOPNOTSUPP;
        if (asprintf(errmsg,
                     "--io-uring=on: FUSE over io_uring is not available: %s",
                     exp->uring_why) < 0) {
            *errmsg = NULL;
        }
        goto out_free;
    }
    int fl = fcntl(exp->fd, F_GETFL);
    if (fl < 0 || fcntl(exp->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        ret = -errno;
        goto out_free;
    }
    ret = iothread_add_fd(io, exp->fd, EPOLLIN, session_readable, exp);
    if (ret < 0) {
        goto out_free;
    }
    exp->watching = true;
    *out = exp;
    return 0;

out_free:
    fexp_free(exp);
    return ret;
}

int
fexp_status(const FuseExport *exp)
{
    return exp->status;
}

void
fexp_get_stats(const FuseExport *exp, FexpStats *stats)
{
    *stats = exp->stats;
}

void
fexp_dump_stats(const FuseExport *exp, FILE *fp)
{
    const FexpStats *s = &exp->stats;

    fprintf(fp,
            "tlbd fuse: %s on %s\n"
            "  requests %" PRIu64 ": /dev/fuse %" PRIu64 " in %" PRIu64
            " wake-ups (%.2f per wake-up, max batch %" PRIu64
            "), io_uring %" PRIu64 "\n"
            "  reads %" PRIu64 " (%" PRIu64 " bytes), writes %" PRIu64
            " (%" PRIu64 " bytes)\n"
            "  flushes %" PRIu64 ", fsyncs %" PRIu64 ", fallocates %" PRIu64
            ", lseeks %" PRIu64 ", truncates %" PRIu64 "\n"
            "  errors %" PRIu64 ", in flight %" PRIu64 " (peak %" PRIu64
            ", writes %" PRIu64 ")\n"
            "  done on the I/O thread %" PRIu64 "\n"
            "  interrupts %" PRIu64 " (cancelled in the queue %" PRIu64 ")\n"
            "  buffers: allocated %" PRIu64 ", receive buffers handed to"
            " writes %" PRIu64 "\n"
            "  max_write %u, max_read %u, max_background %u\n",
            exp->image, exp->mountpoint, s->requests + s->ring_requests,
            s->requests, s->wakeups,
            s->wakeups ? (double)s->requests / (double)s->wakeups : 0.0,
            s->max_batch, s->ring_requests, s->reads, s->bytes_read, s->writes,
            s->bytes_written, s->flushes, s->fsyncs, s->fallocates, s->lseeks,
            s->truncates, s->errors, s->in_flight, s->peak_in_flight,
            s->peak_writes_in_flight, s->inline_ops, s->interrupts,
            s->cancelled, s->buf_allocs, s->handoffs, s->max_write, s->max_read,
            s->max_background);
    if (s->io_uring) {
        fprintf(
            fp,
            "  transport: io_uring, %u queues x %u entries, payload %zu"
            " bytes\n"
            "  ring: requests %" PRIu64 " (%.1f per entry), commits %" PRIu64
            " in %" PRIu64 " io_uring_enter (%.2f per enter),"
            " oversized replies %" PRIu64 ", errors %" PRIu64
            ", flushes of dying processes interrupted %" PRIu64 "\n",
            s->ring_queues, s->ring_depth, s->ring_payload, s->ring_requests,
            (double)s->ring_requests / (double)(s->ring_queues * s->ring_depth),
            s->ring_commits, s->ring_enters,
            s->ring_enters ? (double)s->ring_commits / (double)s->ring_enters
                           : 0.0,
            s->ring_oversize, s->ring_errors, s->ring_interrupts);
    } else {
        fprintf(fp, "  transport: /dev/fuse%s%s%s\n",
                exp->uring_why[0] ? " (io_uring not used: " : "",
                exp->uring_why, exp->uring_why[0] ? ")" : "");
    }
}

void
fexp_free(FuseExport *exp)
{
    void *buf;

    if (!exp) {
        return;
    }
    stop_watching(exp);
    /* First the ring: the entries the kernel holds come back cancelled. */
    fexp_uring_free(exp);
    if (exp->se) {
        if (exp->mounted) {
            /* Also after an unmount from outside: libfuse then sees the
             * dead connection, leaves the mount point alone, and frees.
             */
            fuse_session_unmount(exp->se);
        }
        fuse_session_destroy(exp->se); /* closes the fd */
    }
    free(exp->rbuf.mem);
    while ((buf = exp->free_bufs) != NULL) {
        exp->free_bufs = *(void **)buf;
        free(buf);
    }
    free(exp->mountpoint);
    free(exp->image);
    free(exp->name);
    free(exp);
}

/* Undo the octal escapes (\040 for a space) of /proc/self/mountinfo. */
static void
unescape(char *s)
{
    char *d = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
            s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *d++ = *s++;
        }
    }
    *d = '\0';
}

bool
fexp_is_mounted(const char *path)
{
    FILE *fp = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    bool found = false;

    if (!fp) {
        return false;
    }
    while (!found && getline(&line, &cap, fp) > 0) {
        /* id parent maj:min root MOUNTPOINT opts [tags] - FSTYPE src ... */
        char *save = NULL;
        char *mnt = NULL;
        char *tok = strtok_r(line, " \n", &save);
        for (int i = 0; tok && i < 4; i++) {
            tok = strtok_r(NULL, " \n", &save);
        }
        mnt = tok;
        while (tok && strcmp(tok, "-")) {
            tok = strtok_r(NULL, " \n", &save);
        }
        char *fstype = tok ? strtok_r(NULL, " \n", &save) : NULL;
        if (!mnt || !fstype) {
            continue;
        }
        unescape(mnt);
        found = !strcmp(mnt, path) && !strcmp(fstype, "fuse." FEXP_SUBTYPE);
    }
    free(line);
    fclose(fp);
    return found;
}

bool
fexp_io_uring_offered(char *why, size_t len)
{
    static const char param[] = "/sys/module/fuse/parameters/enable_uring";
    FILE *fp = fopen(param, "re");
    int c;

    if (!fp) {
        snprintf(why, len, "this kernel has no FUSE over io_uring (no %s)",
                 param);
        return false;
    }
    c = fgetc(fp);
    fclose(fp);
    if (c != 'Y' && c != 'y' && c != '1') {
        snprintf(why, len, "enable_uring is %c (%s)", c == EOF ? '?' : c,
                 param);
        return false;
    }
    return true;
}

const char *
fexp_libfuse_version(void)
{
    return fuse_pkgversion();
}
