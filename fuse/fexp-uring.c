/* tlbd: the FUSE export's io_uring transport (FUSE over io_uring, Linux
 * 6.14 and later).
 *
 * INIT goes over /dev/fuse as always; fexp.c hands its reply to
 * fexp_uring_init_reply, which sets up one ring (SQE128) with an entry per
 * queue slot, a queue per possible CPU (the kernel picks the queue of the
 * CPU the caller runs on, and holds every request until each queue has an
 * entry), and announces FUSE_OVER_IO_URING in the reply.  Each entry is a
 * header buffer (struct fuse_uring_req_header) and a payload buffer of the
 * negotiated request size, registered once with FUSE_IO_URING_CMD_REGISTER.
 *
 * The kernel completes an entry's command when it put a request in the
 * entry.  The ring's fd is an fd handler of the export's IOThread; for
 * each completion the request is rebuilt as /dev/fuse would have delivered
 * it (fuse_in_header, the opcode's first argument, the rest) in front of
 * the payload, which is where the rest already is, and goes through
 * fuse_session_process_buf and the same operations as any request.  Its
 * reply, whenever it comes (inline or from a completion), is copied into
 * the entry (a read's data is there already) and a COMMIT_AND_FETCH queued;
 * the loop's pass hook submits all queued commits with one io_uring_enter,
 * and each commit hands its entry back for the next request.  FORGET,
 * INTERRUPT and notifications stay on /dev/fuse.
 *
 * INTERRUPT: the kernel sends it on /dev/fuse for ring requests too, and
 * libfuse finds the request in its list (a ring request passes through
 * fuse_session_process_buf like any other) and calls its interrupt
 * function.  Except for a request that was interrupted before it reached
 * its entry: the ring's send (fuse_uring_prepare_send) sets FR_SENT
 * without the FR_INTERRUPTED check that /dev/fuse's read makes, so that
 * INTERRUPT never comes.  A process dying of a signal always hits this
 * with the FLUSH of its close (the signal is pending before the FLUSH
 * exists), and waits for it uninterruptibly: fexp_uring_interrupt_lost
 * tells the FLUSH that the kernel takes it as interrupted.
 *
 * Thread model: everything runs on the export's IOThread, which is also
 * the thread that submits (so the kernel's task work, which delivers the
 * requests, runs there and interrupts its epoll_wait).  Registration waits
 * for the loop's first pass for that reason.
 *
 * Teardown: unmount or abort completes the entries the kernel holds with
 * -ENOTCONN, and commits get -ENOTCONN: both mean stop.  Closing the ring
 * (fexp_uring_free, or the process's death) cancels the rest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "fexp-int.h"
#include "util.h"

#define RING_MAX_ENTRIES 64 /* over all queues, when CPUs allow */
#define RING_MAX_DEPTH   32 /* entries per queue */
#define RING_MIN_DEPTH   2
#define REQ_ROOM         4096 /* room for the rebuilt request headers */
#define MIN_PAYLOAD      8192 /* the kernel's FUSE_MIN_READ_BUFFER */
#define SERVE_ROUNDS     4    /* submit-and-serve rounds per pass hook */
#define PF_EXITING       0x4  /* task flag: in do_exit (linux/sched.h) */

typedef struct FexpRingEnt {
    struct FexpRing *ring;
    struct fuse_uring_req_header *hdr;
    char *payload;       /* REQ_ROOM bytes after the start of its area */
    struct iovec iov[2]; /* header and payload, as registered */
    uint64_t unique;     /* of the request it holds */
    uint16_t qid;
    bool in_kernel; /* its command is submitted or queued */
    bool busy;      /* holds a request that awaits its reply */
} FexpRingEnt;

typedef struct FexpRing {
    struct io_uring uring;
    FuseExport *exp;
    FexpRingEnt *ents;
    unsigned nents;
    struct fuse_uring_req_header *hdrs; /* nents, one allocation */
    char *area;                         /* nents payload areas */
    size_t area_size;
    size_t ent_stride; /* REQ_ROOM + payload, page-aligned */
    unsigned queued;   /* SQEs not yet submitted */
    bool watching;     /* the ring fd is an fd handler */
    bool hooked;       /* the pass hook is added */
    bool dead;         /* the connection is gone */
} FexpRing;

/* How many CPUs the kernel may have, from /sys (num_possible_cpus). */
static unsigned
possible_cpus(void)
{
    FILE *fp = fopen("/sys/devices/system/cpu/possible", "re");
    unsigned n = 0;
    unsigned a;
    unsigned b;
    int c;

    if (!fp) {
        long conf = sysconf(_SC_NPROCESSORS_CONF);
        return conf > 0 ? (unsigned)conf : 1;
    }
    /* "0-3,5,7-9" */
    while (fscanf(fp, "%u", &a) == 1) {
        b = a;
        c = fgetc(fp);
        if (c == '-') {
            if (fscanf(fp, "%u", &b) != 1) {
                break;
            }
            c = fgetc(fp);
        }
        n += b - a + 1;
        if (c != ',') {
            break;
        }
    }
    fclose(fp);
    return n ? n : 1;
}

static void
ring_free(FexpRing *ring)
{
    if (ring->uring.ring_fd >= 0) {
        io_uring_queue_exit(&ring->uring);
    }
    if (ring->area && ring->area != MAP_FAILED) {
        munmap(ring->area, ring->area_size);
    }
    free(ring->hdrs);
    free(ring->ents);
    free(ring);
}

/* The ring and its buffers for PAYLOAD-byte requests; 0 or -errno. */
static int
ring_new(FuseExport *exp, size_t payload, FexpRing **out)
{
    size_t page = (size_t)getpagesize();
    unsigned nq = possible_cpus();
    unsigned depth = RING_MAX_ENTRIES / nq;
    struct io_uring_params p;
    FexpRing *ring;
    int ret;

    if (depth > RING_MAX_DEPTH) {
        depth = RING_MAX_DEPTH;
    }
    if (depth < RING_MIN_DEPTH) {
        depth = RING_MIN_DEPTH;
    }
    ring = calloc(1, sizeof(*ring));
    if (!ring) {
        return -ENOMEM;
    }
    ring->uring.ring_fd = -1;
    ring->exp = exp;
    ring->nents = nq * depth;
    ring->ent_stride = (REQ_ROOM + payload + page - 1) / page * page;
    ring->area_size = ring->ent_stride * ring->nents;
    ring->ents = calloc(ring->nents, sizeof(*ring->ents));
    ring->hdrs = calloc(ring->nents, sizeof(*ring->hdrs));
    if (!ring->ents || !ring->hdrs) {
        ret = -ENOMEM;
        goto out_free;
    }
    /* Pages are touched only as far as requests fill them. */
    ring->area = mmap(NULL, ring->area_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ring->area == MAP_FAILED) {
        ret = -errno;
        goto out_free;
    }
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
    p.cq_entries = ring->nents * 2;
    /* Each entry has at most one command in the ring: never full. */
    ret = io_uring_queue_init_params(ring->nents, &ring->uring, &p);
    if (ret < 0) {
        ring->uring.ring_fd = -1;
        goto out_free;
    }
    for (unsigned i = 0; i < ring->nents; i++) {
        FexpRingEnt *ent = &ring->ents[i];
        ent->ring = ring;
        ent->qid = (uint16_t)(i % nq);
        ent->hdr = &ring->hdrs[i];
        ent->payload = ring->area + i * ring->ent_stride + REQ_ROOM;
        ent->iov[0].iov_base = ent->hdr;
        ent->iov[0].iov_len = sizeof(*ent->hdr);
        ent->iov[1].iov_base = ent->payload;
        ent->iov[1].iov_len = ring->ent_stride - REQ_ROOM;
    }
    exp->stats.ring_queues = nq;
    exp->stats.ring_depth = depth;
    exp->stats.ring_payload = ring->ent_stride - REQ_ROOM;
    *out = ring;
    return 0;

out_free:
    ring_free(ring);
    return ret;
}

static void
queue_cmd(FexpRing *ring, FexpRingEnt *ent, uint32_t cmd_op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring->uring);
    struct fuse_uring_cmd_req *req;

    /* At most one command per entry, and room for all of them. */
    TLBD_ASSERT(sqe != NULL);
    memset(sqe, 0, 2 * sizeof(*sqe)); /* SQE128 */
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = ring->exp->fd;
    sqe->cmd_op = cmd_op;
    io_uring_sqe_set_data(sqe, ent);
    if (cmd_op == FUSE_IO_URING_CMD_REGISTER) {
        sqe->addr = (uintptr_t)ent->iov;
        sqe->len = 2;
    }
    req = (struct fuse_uring_cmd_req *)sqe->cmd;
    req->qid = ent->qid;
    req->commit_id = ent->unique;
    ent->in_kernel = true;
    ring->queued++;
}

static void ring_readable(void *opaque, int fd, uint32_t events);

/* Submit what is queued; 0 or -errno. */
static int
submit_now(FexpRing *ring)
{
    FuseExport *exp = ring->exp;
    int ret = io_uring_submit(&ring->uring);
    if (ret == -EINTR || ret == -EAGAIN) {
        return ret; /* the next pass tries again */
    }
    exp->stats.ring_enters++;
    if (ret < 0) {
        exp->stats.ring_errors++;
        if (exp->status == 0) {
            exp->status = ret;
        }
        ring->queued = 0;
        fexp_shutdown(exp);
        return ret;
    }
    ring->queued -= (unsigned)ret < ring->queued ? (unsigned)ret : ring->queued;
    return 0;
}

/* The pass hook: one io_uring_enter for every commit of the pass.  A
 * commit fetches the entry's next request at once when one waits: serve
 * those here, a few rounds, rather than through another epoll_wait.
 */
static void
submit_queued(void *opaque)
{
    FexpRing *ring = opaque;

    for (int round = 0; round < SERVE_ROUNDS && ring->queued; round++) {
        if (submit_now(ring) < 0 || !ring->watching ||
            !io_uring_cq_ready(&ring->uring)) {
            return;
        }
        ring_readable(ring, ring->uring.ring_fd, EPOLLIN);
    }
    if (ring->queued) {
        submit_now(ring);
    }
}

static void
fail_entry(FexpRing *ring, FexpRingEnt *ent, int err)
{
    struct fuse_out_header oh = { .error = -err, .unique = ent->unique };
    struct iovec iov = { .iov_base = &oh, .iov_len = sizeof(oh) };

    oh.len = sizeof(oh);
    ring->exp->stats.errors++;
    fexp_uring_send(ring->exp, &iov, 1);
}

/* A request arrived in ENT: rebuild it as /dev/fuse delivers it, in front
 * of the payload that is already in place, and process it.
 */
static void
serve(FexpRing *ring, FexpRingEnt *ent)
{
    FuseExport *exp = ring->exp;
    const struct fuse_in_header *in = (const void *)ent->hdr->in_out;
    size_t psz = ent->hdr->ring_ent_in_out.payload_sz;
    size_t oplen;

    ent->unique = in->unique;
    ent->busy = true;
    exp->stats.ring_requests++;
    if (in->len < sizeof(*in) + psz ||
        in->len - sizeof(*in) - psz > FUSE_URING_OP_IN_OUT_SZ ||
        psz > ent->iov[1].iov_len) {
        fail_entry(ring, ent, EIO);
        return;
    }
    oplen = in->len - sizeof(*in) - psz;
    char *start = ent->payload - sizeof(*in) - oplen;
    memcpy(start, in, sizeof(*in));
    memcpy(start + sizeof(*in), ent->hdr->op_in, oplen);
    struct fuse_buf buf = { .size = in->len, .mem = start };
    fexp_process(exp, &buf, ent);
}

/* The ring's completions: requests, or the end of the connection. */
static void
ring_readable(void *opaque, int fd, uint32_t events)
{
    FexpRing *ring = opaque;
    FuseExport *exp = ring->exp;
    struct io_uring_cqe *cqe;
    (void)fd;
    (void)events;

    while (ring->watching && io_uring_peek_cqe(&ring->uring, &cqe) == 0) {
        FexpRingEnt *ent = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&ring->uring, cqe);
        ent->in_kernel = false;
        if (res == 0) {
            serve(ring, ent);
            continue;
        }
        if (res == -ENOTCONN || res == -ECONNABORTED) {
            /* Unmounted or aborted: stop, as /dev/fuse will say too. */
            ring->dead = true;
            fexp_shutdown(exp);
            continue;
        }
        exp->stats.ring_errors++;
        if (exp->stats.ring_requests == 0 &&
            exp->io_uring_mode == FEXP_IO_URING_AUTO) {
            /* REGISTER failed: the kernel goes back to /dev/fuse. */
            snprintf(exp->uring_why, sizeof(exp->uring_why),
                     "registering ring entries failed: %s", strerror(-res));
            exp->stats.io_uring = false;
            ring->dead = true;
            fexp_uring_stop(exp);
            break;
        }
        if (exp->status == 0) {
            exp->status = res;
        }
        fexp_shutdown(exp);
    }
}

void
fexp_uring_init_reply(FuseExport *exp, struct fuse_init_out *out)
{
    size_t page = (size_t)getpagesize();
    size_t payload = MIN_PAYLOAD;
    int ret;

    if (exp->io_uring_mode == FEXP_IO_URING_OFF) {
        snprintf(exp->uring_why, sizeof(exp->uring_why), "--io-uring=off");
        return;
    }
    if (!exp->uring_offered) {
        if (fexp_io_uring_offered(exp->uring_why, sizeof(exp->uring_why))) {
            snprintf(exp->uring_why, sizeof(exp->uring_why),
                     "the kernel's FUSE_INIT did not offer it");
        }
        return;
    }
    /* The kernel wants room for max(8192, max_write, max_pages pages). */
    if (out->max_write > payload) {
        payload = out->max_write;
    }
    if ((out->flags & FUSE_MAX_PAGES) && out->max_pages * page > payload) {
        payload = out->max_pages * page;
    } else if (!(out->flags & FUSE_MAX_PAGES) && 32 * page > payload) {
        payload = 32 * page; /* FUSE_DEFAULT_MAX_PAGES_PER_REQ */
    }
    ret = ring_new(exp, payload, &exp->ring);
    if (ret < 0) {
        snprintf(exp->uring_why, sizeof(exp->uring_why),
                 "cannot set up the ring: %s", strerror(-ret));
        return;
    }
    out->flags |= FUSE_INIT_EXT;
    out->flags2 |= (uint32_t)(FUSE_OVER_IO_URING >> 32);
    exp->stats.io_uring = true;
}

int
fexp_uring_start(FuseExport *exp)
{
    FexpRing *ring = exp->ring;
    int ret;

    for (unsigned i = 0; i < ring->nents; i++) {
        queue_cmd(ring, &ring->ents[i], FUSE_IO_URING_CMD_REGISTER);
    }
    ret = iothread_add_pass_hook(exp->io, submit_queued, ring);
    if (ret < 0) {
        return ret;
    }
    ring->hooked = true;
    ret = iothread_add_fd(exp->io, ring->uring.ring_fd, EPOLLIN, ring_readable,
                          ring);
    if (ret < 0) {
        return ret;
    }
    ring->watching = true;
    return 0;
}

ssize_t
fexp_uring_send(FuseExport *exp, const struct iovec *iov, int count)
{
    FexpRing *ring = exp->ring;
    const struct fuse_out_header *oh = iov[0].iov_base;
    struct fuse_out_header h = *oh;
    FexpRingEnt *ent = NULL;
    size_t len = 0;

    if (!ring || oh->unique == 0) {
        return -ENOENT;
    }
    if (exp->cur_ent && exp->cur_ent->unique == oh->unique &&
        exp->cur_ent->busy) {
        ent = exp->cur_ent;
    }
    for (unsigned i = 0; !ent && i < ring->nents; i++) {
        if (ring->ents[i].busy && ring->ents[i].unique == oh->unique) {
            ent = &ring->ents[i];
        }
    }
    if (!ent) {
        return -ENOENT;
    }
    for (int i = 0; i < count; i++) {
        len += iov[i].iov_len;
    }
    ssize_t total = (ssize_t)len;
    len -= sizeof(h);
    /* An oversized reply can crash a kernel: never commit one. */
    if (len > ent->iov[1].iov_len) {
        exp->stats.ring_oversize++;
        h.error = -EIO;
    }
    if (h.error) {
        len = 0;
    } else {
        char *p = ent->payload;
        size_t skip = sizeof(h);
        for (int i = 0; i < count; i++) {
            const char *src = iov[i].iov_base;
            size_t n = iov[i].iov_len;
            if (skip >= n) {
                skip -= n;
                continue;
            }
            src += skip;
            n -= skip;
            skip = 0;
            if (src != p) {
                memmove(p, src, n);
            }
            p += n;
        }
    }
    h.len = (uint32_t)(sizeof(h) + len);
    memcpy(ent->hdr->in_out, &h, sizeof(h));
    ent->hdr->ring_ent_in_out.payload_sz = (uint32_t)len;
    ent->busy = false;
    if (ring->dead) {
        return total; /* nowhere to commit to */
    }
    queue_cmd(ring, ent, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
    exp->stats.ring_commits++;
    return total;
}

/* /proc/TID/NAME into BUF, NUL-terminated; false if it cannot be read. */
static bool
read_proc(pid_t tid, const char *name, char *buf, size_t size)
{
    char path[64];
    FILE *fp;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)tid, name);
    fp = fopen(path, "re");
    if (!fp) {
        return false;
    }
    n = fread(buf, 1, size - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return n > 0;
}

/* The signal set of the line "KEY:\tHEX" in /proc/TID/status text S. */
static uint64_t
status_sigset(const char *s, const char *key)
{
    const char *line = strstr(s, key);
    return line ? strtoull(line + strlen(key), NULL, 16) : 0;
}

bool
fexp_uring_interrupt_lost(FuseExport *exp, pid_t tid)
{
    char buf[4096];
    const char *p;
    unsigned flags = 0;
    uint64_t pending;

    if (!exp->cur_ent || tid <= 0) {
        return false; /* over /dev/fuse its INTERRUPT comes */
    }
    /* "TID (COMM) STATE PPID PGRP SESSION TTY TPGID FLAGS ..." */
    if (!read_proc(tid, "stat", buf, sizeof(buf)) || !(p = strrchr(buf, ')')) ||
        sscanf(p, ") %*c %*d %*d %*d %*d %*d %u", &flags) != 1 ||
        !(flags & PF_EXITING) || !read_proc(tid, "status", buf, sizeof(buf))) {
        return false;
    }
    /* signal_pending() of the exiting thread: what the kernel saw when it
     * began to wait.
     */
    pending = status_sigset(buf, "\nSigPnd:") | status_sigset(buf, "\nShdPnd:");
    return (pending & ~status_sigset(buf, "\nSigBlk:")) != 0;
}

void *
fexp_uring_payload(FuseExport *exp, size_t size)
{
    FexpRingEnt *ent = exp->cur_ent;
    if (!ent || size > ent->iov[1].iov_len) {
        return NULL;
    }
    return ent->payload;
}

void
fexp_uring_stop(FuseExport *exp)
{
    FexpRing *ring = exp->ring;
    if (ring && ring->watching) {
        iothread_del_fd(exp->io, ring->uring.ring_fd);
        ring->watching = false;
    }
}

void
fexp_uring_free(FuseExport *exp)
{
    FexpRing *ring = exp->ring;
    if (!ring) {
        return;
    }
    fexp_uring_stop(exp);
    if (ring->hooked) {
        iothread_del_pass_hook(exp->io, submit_queued, ring);
    }
    ring_free(ring);
    exp->ring = NULL;
}
