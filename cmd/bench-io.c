/* tlbd: the vcpu threads of `tlbd bench` and the completion of their
 * requests.
 *
 * A vcpu thread plays a guest: it plans a request (read, write or flush, its
 * size and offset within the vcpu's own region), stamps the blocks of a
 * write (bench-verify.c) and submits it with blockdev_aio_*; the blocking
 * system call runs on a threadlet worker, and the completion callback runs
 * on the I/O thread, which does the post-processing: it verifies what a
 * read returned, records what a write left, counts, records the latency and
 * hands the request slot back to its vcpu, which plans the next one.  So
 * the shared state (block table, counters, histograms) is only ever touched
 * by the I/O thread, and the vcpus only block waiting for a free slot.
 *
 * A vcpu keeps at most IODEPTH requests in flight and never two on the same
 * block: a planned request that overlaps one in flight is moved (random
 * modes) or waits (sequential ones).  With the regions disjoint, the
 * expected contents of a block are exact when a read of it completes.
 *
 * After the timed phase, when the run wrote and verifies, each vcpu reads
 * back every block of its region that the run wrote (the final pass), so a
 * write that was lost or corrupted later is caught even if no read of the
 * run happened to land on it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "util.h"

static const char *const op_names[] = {
    [BENCH_OP_READ] = "read",       [BENCH_OP_WRITE] = "write",
    [BENCH_OP_FLUSH] = "flush",     [BENCH_OP_GETSIZE] = "BLKGETSIZE64",
    [BENCH_OP_DISCARD] = "discard", [BENCH_OP_ZEROOUT] = "zeroout",
};

const char *
bench_op_name(BenchOp op)
{
    return op_names[op];
}

bool
bench_writes(const BenchConfig *cfg)
{
    return cfg->rw == BENCH_WRITE || cfg->rw == BENCH_RANDWRITE ||
           cfg->rw == BENCH_RANDRW;
}

static bool
is_random(const BenchConfig *cfg)
{
    return cfg->rw == BENCH_RANDREAD || cfg->rw == BENCH_RANDWRITE ||
           cfg->rw == BENCH_RANDRW;
}

/* I/O thread only (or the main thread before the vcpus start). */
void
bench_fail(Bench *b, const char *fmt, ...)
{
    va_list ap;

    b->count.errors++;
    if (!b->failure) {
        va_start(ap, fmt);
        if (vasprintf(&b->failure, fmt, ap) < 0) {
            b->failure = NULL;
        }
        va_end(ap);
    }
    atomic_store(&b->failed, true);
    atomic_store(&b->stop, true);
}

/* splitmix64 */
static uint64_t
rng_next(BenchVcpu *v)
{
    v->rng += 0x9e3779b97f4a7c15ull;
    return bench_mix64(v->rng);
}

/* Take a ticket for one more request under --ops.  False when none left;
 * the other vcpus still issue the tickets they hold.
 */
static bool
take_ticket(Bench *b)
{
    return b->cfg.ops == 0 || atomic_fetch_add(&b->tickets, 1) < b->cfg.ops;
}

static BenchOp
choose_op(BenchVcpu *v)
{
    const BenchConfig *cfg = &v->bench->cfg;
    BenchOp op;

    if (cfg->flush_every && v->writes >= cfg->flush_every) {
        v->writes = 0;
        return BENCH_OP_FLUSH;
    }
    if (cfg->ioctl_mix && bench_ioctl_choose(v->bench, rng_next(v), &op)) {
        return op;
    }
    switch (cfg->rw) {
    case BENCH_READ:
    case BENCH_RANDREAD:
        op = BENCH_OP_READ;
        break;
    case BENCH_RANDRW:
        op = rng_next(v) % 100 < cfg->mix ? BENCH_OP_READ : BENCH_OP_WRITE;
        break;
    default:
        op = BENCH_OP_WRITE;
        break;
    }
    if (op == BENCH_OP_WRITE) {
        v->writes++;
    }
    return op;
}

static uint64_t
choose_len(BenchVcpu *v)
{
    const Bench *b = v->bench;
    uint64_t steps = (b->cfg.bs_max - b->cfg.bs_min) / b->unit + 1;

    if (steps == 1) {
        return b->cfg.bs_min;
    }
    return b->cfg.bs_min + b->unit * (rng_next(v) % steps);
}

/* True when [OFFSET, OFFSET+LEN) overlaps a request of V in flight.
 * Called with v->lock held.
 */
static bool
overlaps_locked(BenchVcpu *v, uint64_t offset, uint64_t len)
{
    for (unsigned i = 0; i < v->bench->cfg.iodepth; i++) {
        const BenchReq *r = &v->reqs[i];
        if (r->busy && r->op != BENCH_OP_FLUSH && offset < r->offset + r->len &&
            r->offset < offset + len) {
            return true;
        }
    }
    return false;
}

/* Pick where a data request of LEN bytes goes, avoiding requests in flight.
 * Returns false when it has to wait for one to finish.  Lock held.
 */
static bool
place_locked(BenchVcpu *v, uint64_t len, uint64_t *offset)
{
    const Bench *b = v->bench;
    uint64_t n = len / b->unit;

    if (!is_random(&b->cfg)) {
        if (v->seq_next + n > v->nunits) {
            v->seq_next = 0;
        }
        *offset = (v->first_unit + v->seq_next) * b->unit;
        if (overlaps_locked(v, *offset, len)) {
            return false;
        }
        v->seq_next += n;
        return true;
    }
    for (int tries = 0; tries < 8; tries++) {
        uint64_t u = rng_next(v) % (v->nunits - n + 1);
        *offset = (v->first_unit + u) * b->unit;
        if (!overlaps_locked(v, *offset, len)) {
            return true;
        }
    }
    return false;
}

/* Take a free slot of V, marked busy.  Lock held; the free list is not
 * empty.
 */
static BenchReq *
take_slot_locked(BenchVcpu *v)
{
    BenchReq *r = SLIST_FIRST(&v->free);
    SLIST_REMOVE_HEAD(&v->free, next_free);
    v->nfree--;
    r->busy = true;
    return r;
}

/* Wait for a free slot and plan the next request of the timed phase into
 * it.  NULL when the phase is over.
 */
static BenchReq *
next_request(BenchVcpu *v)
{
    Bench *b = v->bench;
    BenchReq *r = NULL;
    uint64_t offset = 0;
    uint64_t len = 0;

    if (!take_ticket(b)) {
        return NULL;
    }
    BenchOp op = choose_op(v);
    if (bench_op_has_range(op)) {
        len = choose_len(v);
    }

    tlbd_mutex_lock(&v->lock);
    for (;;) {
        if (atomic_load(&b->stop)) {
            break;
        }
        if (!SLIST_EMPTY(&v->free) &&
            (!bench_op_has_range(op) || place_locked(v, len, &offset))) {
            r = take_slot_locked(v);
            r->op = op;
            r->offset = offset;
            r->len = len;
            break;
        }
        pthread_cond_wait(&v->cond, &v->lock);
    }
    tlbd_mutex_unlock(&v->lock);
    return r;
}

/* Give R back to its vcpu.  After this the I/O thread must not touch R. */
static void
release(BenchReq *r)
{
    BenchVcpu *v = r->vcpu;

    tlbd_mutex_lock(&v->lock);
    atomic_fetch_sub(&v->bench->in_flight, 1);
    r->busy = false;
    SLIST_INSERT_HEAD(&v->free, r, next_free);
    v->nfree++;
    pthread_cond_signal(&v->cond);
    tlbd_mutex_unlock(&v->lock);
}

/* Test hook (TLBD_BENCH_CORRUPT_AFTER): once enough writes completed,
 * overwrite part of the block just written through a second descriptor,
 * behind paio's back, and end the timed phase; the final pass must then
 * report this block.  I/O thread only.
 */
static void
corrupt_hook(Bench *b, const BenchReq *r)
{
    static const char junk[16] = "corrupted-by-it";

    if (b->corrupt_fd < 0 || b->corrupted ||
        b->count.writes < b->cfg.corrupt_after) {
        return;
    }
    b->corrupted = true;
    b->corrupted_offset = r->offset;
    if (pwrite(b->corrupt_fd, junk, sizeof(junk), r->offset + b->unit / 2) !=
        (ssize_t)sizeof(junk)) {
        bench_fail(b, "test hook: cannot corrupt offset %" PRIu64 ": %s",
                   r->offset, strerror(errno));
        return;
    }
    fprintf(stderr,
            "tlbd: bench: test hook: corrupted the block at offset "
            "%" PRIu64 "\n",
            r->offset);
    atomic_store(&b->stop, true);
}

/* Verify every block of a read.  I/O thread only. */
static void
check_read(Bench *b, const BenchReq *r, uint64_t *checked)
{
    for (uint64_t done = 0; done < r->len; done += b->unit) {
        if (!bench_check(b, (const char *)r->buf + done, r->offset + done)) {
            b->count.verify_failures++;
            return;
        }
        (*checked)++;
    }
}

/* The post-processing of a request, on the I/O thread. */
static void
complete(void *opaque, int64_t ret)
{
    BenchReq *r = opaque;
    Bench *b = r->vcpu->bench;
    uint64_t lat = tlbd_now_ns() - r->start_ns;

    if (ret < 0) {
        if (r->op == BENCH_OP_FLUSH) {
            bench_fail(b, "flush failed: %s", strerror((int)-ret));
        } else {
            bench_fail(
                b, "%s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                op_names[r->op], r->len, r->offset, strerror((int)-ret));
        }
    } else if (r->final) {
        check_read(b, r, &b->count.final_blocks);
        b->count.final_bytes += r->len;
    } else {
        switch (r->op) {
        case BENCH_OP_READ:
            b->count.reads++;
            b->count.bytes_read += r->len;
            b->icount.reads++;
            b->icount.bytes_read += r->len;
            if (b->cfg.verify) {
                check_read(b, r, &b->count.blocks_checked);
            }
            break;
        case BENCH_OP_WRITE:
            b->count.writes++;
            b->count.bytes_written += r->len;
            b->icount.writes++;
            b->icount.bytes_written += r->len;
            if (b->blocks) {
                for (uint64_t u = r->offset / b->unit;
                     u < (r->offset + r->len) / b->unit; u++) {
                    b->blocks[u].gen = r->gen;
                    b->blocks[u].hash = 0;
                }
            }
            corrupt_hook(b, r);
            break;
        case BENCH_OP_FLUSH:
            b->count.flushes++;
            b->icount.flushes++;
            break;
        default:
            bench_ioctl_complete(b, r);
            break;
        }
        hist_record(&b->lat_all, lat);
        hist_record(&b->lat_op[r->op], lat);
        hist_record(&b->ilat, lat);
        if (b->cfg.plot_file) {
            bench_plot_record(b, r->op, r->start_ns + lat);
        }
    }
    release(r);
}

/* Runs complete() for a request that could not be submitted. */
typedef struct SubmitError {
    BenchReq *r;
    int ret;
} SubmitError;

static void
submit_error(void *opaque)
{
    SubmitError *e = opaque;
    complete(e->r, e->ret);
}

static void
submit(BenchVcpu *v, BenchReq *r)
{
    Bench *b = v->bench;
    int ret = 0;

    if (r->op == BENCH_OP_WRITE) {
        r->gen = ++v->next_gen;
        bench_fill(b, r->buf, r->offset, r->len, r->gen);
    }
    r->iov.iov_base = r->buf;
    r->iov.iov_len = r->len;
    atomic_fetch_add(&b->in_flight, 1);
    r->start_ns = tlbd_now_ns();
    switch (r->op) {
    case BENCH_OP_READ:
        ret = blockdev_aio_preadv(b->bd, r->offset, &r->iov, 1, complete, r);
        break;
    case BENCH_OP_WRITE:
        ret = blockdev_aio_pwritev(b->bd, r->offset, &r->iov, 1,
                                   b->cfg.fua ? BLOCKDEV_FUA : 0, complete, r);
        break;
    case BENCH_OP_FLUSH:
        ret = blockdev_aio_flush(b->bd, complete, r);
        break;
    default:
        ret = bench_ioctl_submit(b, r, complete);
        break;
    }
    if (ret < 0) {
        SubmitError e = { r, ret };
        iothread_call(b->io, submit_error, &e);
    }
}

/* Wait until every slot of V is back. */
static void
wait_idle(BenchVcpu *v)
{
    tlbd_mutex_lock(&v->lock);
    while (v->nfree < v->bench->cfg.iodepth) {
        pthread_cond_wait(&v->cond, &v->lock);
    }
    tlbd_mutex_unlock(&v->lock);
}

/* A free slot for the final pass, or NULL after a failure. */
static BenchReq *
final_slot(BenchVcpu *v)
{
    BenchReq *r = NULL;

    tlbd_mutex_lock(&v->lock);
    while (!atomic_load(&v->bench->failed)) {
        if (!SLIST_EMPTY(&v->free)) {
            r = take_slot_locked(v);
            break;
        }
        pthread_cond_wait(&v->cond, &v->lock);
    }
    tlbd_mutex_unlock(&v->lock);
    return r;
}

/* Read back every block of V's region that the run wrote, in runs of up to
 * a slot's buffer.  The table entries of the region are stable now: only
 * completions of V's own requests wrote them, and those all came back.
 */
static void
final_pass(BenchVcpu *v)
{
    Bench *b = v->bench;
    uint64_t max = b->bufsize / b->unit;
    uint64_t u = v->first_unit;
    uint64_t end = v->first_unit + v->nunits;

    while (u < end) {
        if (b->blocks[u].gen == 0 && !b->blocks[u].zeroed) {
            u++;
            continue;
        }
        uint64_t n = 1;
        while (u + n < end && n < max &&
               (b->blocks[u + n].gen != 0 || b->blocks[u + n].zeroed)) {
            n++;
        }
        BenchReq *r = final_slot(v);
        if (!r) {
            break;
        }
        r->final = true;
        r->op = BENCH_OP_READ;
        r->offset = u * b->unit;
        r->len = n * b->unit;
        submit(v, r);
        u += n;
    }
    wait_idle(v);
}

void *
bench_vcpu_thread(void *opaque)
{
    BenchVcpu *v = opaque;
    Bench *b = v->bench;
    BenchReq *r;
    char name[16];

    snprintf(name, sizeof(name), "vcpu-%u", v->index);
    pthread_setname_np(pthread_self(), name);

    while ((r = next_request(v)) != NULL) {
        submit(v, r);
    }
    wait_idle(v);

    tlbd_mutex_lock(&b->lock);
    b->running--;
    pthread_cond_broadcast(&b->cond);
    while (!b->final_go) {
        pthread_cond_wait(&b->cond, &b->lock);
    }
    bool do_final = b->do_final;
    tlbd_mutex_unlock(&b->lock);

    if (do_final) {
        final_pass(v);
    }
    return NULL;
}
