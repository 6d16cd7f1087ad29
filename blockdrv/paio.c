/* tlbd: paio submission, completion, cancel, and the small handlers.
 *
 * paio_submit counts the request in its device's in-flight counts and
 * hands it to the threadlet queue.  On a worker, paio_worker applies the
 * checks every request shares (read-only), asks the
 * injection rules whether to sleep or fail, then calls the handler for the
 * request's type: each handler is a small function that returns bytes, 0 or
 * -errno and touches only the request and the device's atomic fields.  The
 * completion (paio_complete) runs on the request's IOThread, or on the
 * worker: it counts statistics, calls the request's callback, and only then
 * drops the in-flight count, so paio_dev_drain returns after the last
 * callback.  The read/write handlers live in paio-rw.c, discard and
 * write-zeroes (files and block devices) in paio-zero.c, the helpers they
 * share in paio-util.c, and the inline path in paio-inline.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "paio-inject.h"
#include "paio-int.h"
#include "vcache.h"

static const char *const type_names[PAIO_NR_TYPES] = {
    [PAIO_READ] = "read",         [PAIO_WRITE] = "write",
    [PAIO_FLUSH] = "flush",       [PAIO_DISCARD] = "discard",
    [PAIO_WRITE_ZEROES] = "zero", [PAIO_IOCTL] = "ioctl",
    [PAIO_TRUNCATE] = "truncate", [PAIO_LSEEK] = "lseek",
    [PAIO_FADVISE] = "fadvise",   [PAIO_FSTAT] = "fstat",
};

const char *
paio_type_name(PaioType type)
{
    return (unsigned)type < PAIO_NR_TYPES ? type_names[type] : "unknown";
}

/* tmpfs and ramfs keep data in memory: nothing there waits on a device. */
static bool
on_mem_fs(int fd)
{
    struct statfs sfs;

    if (fstatfs(fd, &sfs) < 0) {
        return false;
    }
    return (unsigned long)sfs.f_type == TMPFS_MAGIC ||
           (unsigned long)sfs.f_type == RAMFS_MAGIC;
}

int
paio_dev_new(const PaioDevConfig *cfg, PaioDev **out)
{
    PaioDev *dev = calloc(1, sizeof(*dev));

    *out = NULL;
    if (!dev) {
        return -ENOMEM;
    }
    if ((!cfg->queue && !threadlet_global_queue()) ||
        (cfg->name && !(dev->name = strdup(cfg->name)))) {
        free(dev);
        return -ENOMEM;
    }
    dev->fd = cfg->fd;
    dev->enospc_wait = cfg->enospc_wait;
    dev->is_blockdev = cfg->is_blockdev;
    dev->readonly = cfg->readonly;
    dev->growable = cfg->growable && !cfg->is_blockdev;
    dev->discard_ignore = cfg->discard_ignore;
    dev->direct = cfg->direct;
    dev->alignment = cfg->direct && cfg->alignment > 1 ? cfg->alignment : 1;
    dev->queue = cfg->queue ? cfg->queue : threadlet_global_queue();
    atomic_init(&dev->size, cfg->size);
    atomic_init(&dev->has_discard, true);
    atomic_init(&dev->has_zero_range, true);
    atomic_init(&dev->has_punch_zero, !cfg->is_blockdev);
    atomic_init(&dev->has_zeroout, cfg->is_blockdev);
    atomic_init(&dev->flush_err, 0);
    /* With O_DIRECT, RWF_NOWAIT only spares the submission a wait: the
     * read itself still goes to the device. */
    atomic_init(&dev->has_nowait_read, !cfg->direct);
    atomic_init(&dev->has_nowait_write, !cfg->direct);
    dev->inline_max = cfg->inline_max;
    dev->caller_runs = cfg->caller_runs;
    dev->mem_fs = !cfg->is_blockdev && on_mem_fs(cfg->fd);
    pthread_rwlock_init(&dev->rmw_lock, NULL);
    pthread_mutex_init(&dev->inject_lock, NULL);
    pthread_mutex_init(&dev->drain_lock, NULL);
    pthread_cond_init(&dev->drain_cond, NULL);
    pthread_mutex_init(&dev->enospc_lock, NULL);
    pthread_cond_init(&dev->enospc_cond, NULL);
    *out = dev;
    return 0;
}

void
paio_dev_set_geometry(PaioDev *dev, uint64_t size, unsigned alignment,
                      unsigned sector_size)
{
    atomic_store(&dev->size, size);
    dev->alignment = dev->direct && alignment > 1 ? alignment : 1;
    dev->sector_size = sector_size;
}

uint64_t
paio_dev_size(PaioDev *dev)
{
    return atomic_load(&dev->size);
}

/* The flag behind one PAIO_CAP_* bit; NULL for anything else. */
static _Atomic bool *
cap_flag(PaioDev *dev, unsigned bit)
{
    switch (bit) {
    case PAIO_CAP_DISCARD:
        return &dev->has_discard;
    case PAIO_CAP_ZERO_RANGE:
        return &dev->has_zero_range;
    case PAIO_CAP_PUNCH_ZERO:
        return &dev->has_punch_zero;
    case PAIO_CAP_ZEROOUT:
        return &dev->has_zeroout;
    default:
        return NULL;
    }
}

unsigned
paio_dev_caps(PaioDev *dev)
{
    unsigned caps = 0;

    for (unsigned bit = 1; bit <= PAIO_CAP_ZEROOUT; bit <<= 1) {
        if (atomic_load(cap_flag(dev, bit))) {
            caps |= bit;
        }
    }
    return caps;
}

void
paio_dev_set_caps(PaioDev *dev, unsigned caps, bool on)
{
    for (unsigned bit = 1; bit <= PAIO_CAP_ZEROOUT; bit <<= 1) {
        if (caps & bit) {
            atomic_store(cap_flag(dev, bit), on);
        }
    }
}

/* dev->in_flight holds two counts of the device's requests, so that one
 * atomic add starts a request and a completion without a callback ends it
 * with one atomic subtract: the low half counts those whose callback has
 * not started (the statistics' in_flight), the high half those whose
 * callback has not returned (what paio_dev_drain waits for).
 */
#define IN_FLIGHT_PENDING 1ull         /* low half */
#define IN_FLIGHT_HELD    (1ull << 32) /* high half */

static uint64_t
in_flight_pending(uint64_t n)
{
    return n & (IN_FLIGHT_HELD - 1);
}

static uint64_t
in_flight_held(uint64_t n)
{
    return n >> 32;
}

/* Take COUNTS (IN_FLIGHT_* units) off DEV's in-flight counts.  Only the
 * request that leaves none held takes the lock.
 */
static void
dev_put(PaioDev *dev, uint64_t counts)
{
    uint64_t n = atomic_load(&dev->in_flight);

    while (in_flight_held(n) > 1) {
        if (atomic_compare_exchange_weak(&dev->in_flight, &n, n - counts)) {
            return;
        }
    }
    tlbd_mutex_lock(&dev->drain_lock);
    if (in_flight_held(atomic_fetch_sub(&dev->in_flight, counts)) == 1) {
        pthread_cond_broadcast(&dev->drain_cond);
    }
    tlbd_mutex_unlock(&dev->drain_lock);
}

void
paio_dev_hold(PaioDev *dev)
{
    atomic_fetch_add(&dev->in_flight, IN_FLIGHT_HELD);
}

void
paio_dev_unhold(PaioDev *dev)
{
    dev_put(dev, IN_FLIGHT_HELD);
}

void
paio_dev_drain(PaioDev *dev)
{
    tlbd_mutex_lock(&dev->drain_lock);
    while (in_flight_held(atomic_load(&dev->in_flight)) > 0) {
        pthread_cond_wait(&dev->drain_cond, &dev->drain_lock);
    }
    tlbd_mutex_unlock(&dev->drain_lock);
}

void
paio_dev_free(PaioDev *dev)
{
    if (!dev) {
        return;
    }
    paio_dev_drain(dev);
    paio_inject_free(dev->inject);
    pthread_cond_destroy(&dev->drain_cond);
    pthread_mutex_destroy(&dev->drain_lock);
    pthread_mutex_destroy(&dev->inject_lock);
    pthread_rwlock_destroy(&dev->rmw_lock);
    pthread_cond_destroy(&dev->enospc_cond);
    pthread_mutex_destroy(&dev->enospc_lock);
    free(dev->name);
    free(dev);
}

int
paio_dev_set_inject(PaioDev *dev, const char *spec, char **errmsg)
{
    PaioInject *inj = NULL;
    PaioInject *old;
    int ret = paio_inject_parse(spec, &inj, errmsg);

    if (ret < 0) {
        return ret;
    }
    tlbd_mutex_lock(&dev->inject_lock);
    old = dev->inject;
    dev->inject = inj;
    atomic_store(&dev->inject_on, inj != NULL);
    tlbd_mutex_unlock(&dev->inject_lock);
    paio_inject_free(old);
    return 0;
}

void
paio_dev_get_stats(PaioDev *dev, PaioStats *st)
{
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < PAIO_NR_TYPES; i++) {
        st->ops[i] = atomic_load(&dev->stat_ops[i]);
    }
    st->bytes_read = atomic_load(&dev->stat_bytes_read);
    st->bytes_written = atomic_load(&dev->stat_bytes_written);
    st->errors = atomic_load(&dev->stat_errors);
    st->in_flight = in_flight_pending(atomic_load(&dev->in_flight));
    st->inline_ops = atomic_load(&dev->stat_inline);
    st->cancelled = atomic_load(&dev->stat_cancelled);
    st->interrupted = atomic_load(&dev->stat_interrupted);
    st->enospc_episodes = atomic_load(&dev->stat_enospc_episodes);
    st->enospc_waits = atomic_load(&dev->stat_enospc_waits);
    tlbd_mutex_lock(&dev->enospc_lock);
    st->enospc_pending = dev->enospc_pending;
    tlbd_mutex_unlock(&dev->enospc_lock);
}

void
paio_dev_get_latency(PaioDev *dev, PaioType type, uint64_t *buckets)
{
    TLBD_ASSERT((unsigned)type < PAIO_NR_LATENCY);
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        buckets[i] = atomic_load_explicit(&dev->stat_latency[type][i],
                                          memory_order_relaxed);
    }
}

void
paio_dev_get_pool_stats(PaioDev *dev, ThreadletStats *stats)
{
    threadlet_queue_get_stats(dev->queue, stats);
}

static int64_t
handle_flush(PaioRequest *req)
{
    return paio_do_flush(req->dev);
}

static int64_t
handle_ioctl(PaioRequest *req)
{
    int r = ioctl(req->dev->fd, req->u.ioctl.cmd, req->u.ioctl.arg);
    return r < 0 ? -errno : r;
}

static int64_t
handle_truncate(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t size = req->u.truncate.size;

    if (dev->is_blockdev) {
        return size == atomic_load(&dev->size) ? 0 : -ENOTSUP;
    }
    if (size > INT64_MAX) {
        return -EFBIG;
    }
    /* Serialized with writes that extend the file (paio-util.c). */
    paio_rmw_lock(dev, PAIO_RMW_EXCLUSIVE);
    int ret = paio_ftruncate(dev->fd, size);
    if (ret == 0) {
        atomic_store(&dev->size, size);
    }
    paio_rmw_unlock(dev, PAIO_RMW_EXCLUSIVE);
    return ret;
}

static int64_t
handle_lseek(PaioRequest *req)
{
    off_t r = lseek(req->dev->fd, (off_t)req->offset, req->u.lseek.whence);
    return r < 0 ? -errno : (int64_t)r;
}

static int64_t
handle_fadvise(PaioRequest *req)
{
    int err = posix_fadvise(req->dev->fd, (off_t)req->offset,
                            (off_t)req->u.range.length, POSIX_FADV_WILLNEED);
    return -err;
}

static int64_t
handle_fstat(PaioRequest *req)
{
    struct stat st;

    if (req->dev->is_blockdev) {
        return (int64_t)atomic_load(&req->dev->size);
    }
    if (fstat(req->dev->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

static int64_t (*const handlers[PAIO_NR_TYPES])(PaioRequest *) = {
    [PAIO_READ] = paio_handle_read,
    [PAIO_WRITE] = paio_handle_write,
    [PAIO_FLUSH] = handle_flush,
    [PAIO_DISCARD] = paio_handle_discard,
    [PAIO_WRITE_ZEROES] = paio_handle_write_zeroes,
    [PAIO_IOCTL] = handle_ioctl,
    [PAIO_TRUNCATE] = handle_truncate,
    [PAIO_LSEEK] = handle_lseek,
    [PAIO_FADVISE] = handle_fadvise,
    [PAIO_FSTAT] = handle_fstat,
};

static bool
modifies(PaioType type)
{
    return type == PAIO_WRITE || type == PAIO_DISCARD ||
           type == PAIO_WRITE_ZEROES || type == PAIO_TRUNCATE;
}

bool
paio_sleep_interruptible(PaioRequest *req, uint64_t ns)
{
    uint64_t end = tlbd_now_ns() + ns;

    for (;;) {
        uint64_t now = tlbd_now_ns();
        struct timespec ts;

        if (atomic_load(&req->intr)) {
            return true;
        }
        if (now >= end) {
            return false;
        }
        ts.tv_sec = (time_t)((end - now) / 1000000000u);
        ts.tv_nsec = (long)((end - now) % 1000000000u);
        /* EINTR, EAGAIN (the word changed) and ETIMEDOUT all loop. */
        syscall(SYS_futex, &req->intr, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
    }
}

/* Checks shared by every request, then injection.  0 lets the handler run. */
static int
precheck(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t delay = 0;
    int err = 0;

    if (modifies(req->type) && dev->readonly) {
        return -EROFS;
    }
    if (atomic_load_explicit(&dev->inject_on, memory_order_relaxed)) {
        tlbd_mutex_lock(&dev->inject_lock);
        if (dev->inject) {
            err = paio_inject_decide_locked(dev->inject, req->type, &delay);
        }
        tlbd_mutex_unlock(&dev->inject_lock);
        if (delay && paio_sleep_interruptible(req, delay)) {
            atomic_fetch_add(&dev->stat_interrupted, 1);
            return -EINTR;
        }
    }
    return err;
}

static void
paio_worker(ThreadletWork *work)
{
    PaioRequest *req = container_of(work, PaioRequest, work);
    int64_t ret = precheck(req);

    if (ret == 0 && req->dev->vcache) {
        ret = vcache_handle(req->dev->vcache, req, handlers[req->type]);
    } else if (ret == 0 && req->dev->enospc_wait) {
        ret = paio_enospc_run(req, handlers[req->type]);
    } else if (ret == 0) {
        ret = handlers[req->type](req);
    } else if (req->type == PAIO_FLUSH && ret != -EROFS) {
        /* An injected flush failure is latched like a real one. */
        ret = paio_latch_flush_error(req->dev, (int)ret);
    }
    req->ret = ret;
}

void
paio_count_done(PaioDev *dev, const PaioRequest *req)
{
    atomic_fetch_add(&dev->stat_ops[req->type], 1);
    if (req->type < PAIO_NR_LATENCY) {
        uint64_t ns = tlbd_now_ns() - req->start_ns;
        atomic_fetch_add_explicit(
            &dev->stat_latency[req->type][hist_bucket_of(ns)], 1,
            memory_order_relaxed);
    }
    if (req->ret < 0) {
        atomic_fetch_add(&dev->stat_errors, 1);
    } else if (req->type == PAIO_READ) {
        atomic_fetch_add(&dev->stat_bytes_read, (uint64_t)req->ret);
    } else if (req->type == PAIO_WRITE) {
        atomic_fetch_add(&dev->stat_bytes_written, (uint64_t)req->ret);
    }
}

/* REQ, checked, is now in flight on DEV: pending until it is counted
 * done, and held (paio_dev_drain waits for it) until dev_put.
 */
static void
request_start(PaioDev *dev, PaioRequest *req)
{
    req->dev = dev;
    req->ret = 0;
    req->start_ns = tlbd_now_ns();
    atomic_store(&req->intr, 0);
    atomic_fetch_add(&dev->in_flight, IN_FLIGHT_PENDING | IN_FLIGHT_HELD);
}

static void
paio_complete(ThreadletWork *work)
{
    PaioRequest *req = container_of(work, PaioRequest, work);
    PaioDev *dev = req->dev;

    if (threadlet_work_state(work) == THREADLET_CANCELLED) {
        req->ret = -ECANCELED;
        atomic_fetch_add(&dev->stat_cancelled, 1);
    }
    paio_count_done(dev, req);
    atomic_fetch_sub(&dev->in_flight, IN_FLIGHT_PENDING);

    req->cb(req); /* may free or reuse REQ */

    dev_put(dev, IN_FLIGHT_HELD);
}

bool
paio_valid_request(const PaioRequest *req)
{
    if ((unsigned)req->type >= PAIO_NR_TYPES) {
        return false;
    }
    return !((req->type == PAIO_READ || req->type == PAIO_WRITE) &&
             (req->u.rw.niov < 0 || req->u.rw.niov > PAIO_IOV_MAX ||
              (req->u.rw.niov > 0 && !req->u.rw.iov)));
}

int
paio_submit(PaioDev *dev, PaioRequest *req)
{
    int ret;

    if (!paio_valid_request(req) || !req->cb) {
        return -EINVAL;
    }
    req->work.func = paio_worker;
    request_start(dev, req);
    ret = threadlet_submit_complete(dev->queue, &req->work, req->iothread,
                                    paio_complete);
    if (ret < 0) {
        dev_put(dev, IN_FLIGHT_PENDING | IN_FLIGHT_HELD);
    }
    return ret;
}

PaioCancelResult
paio_cancel(PaioRequest *req)
{
    if (cancel_threadlet_on_queue(req->dev->queue, &req->work) == 0) {
        return PAIO_CANCELLED;
    }
    return threadlet_work_state(&req->work) == THREADLET_RUNNING ? PAIO_RUNNING
                                                                 : PAIO_DONE;
}

PaioCancelResult
paio_interrupt(PaioRequest *req)
{
    PaioCancelResult r = paio_cancel(req);

    if (r == PAIO_RUNNING) {
        atomic_store(&req->intr, 1);
        syscall(SYS_futex, &req->intr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    return r;
}

static void
run_done(PaioRequest *req)
{
    sem_post(req->opaque);
}

/* paio_run on a caller_runs device: the worker's part, on the calling
 * thread.  In flight meanwhile, so paio_dev_drain waits for it.
 */
static int64_t
run_on_caller(PaioDev *dev, PaioRequest *req)
{
    if (!paio_valid_request(req)) {
        return -EINVAL;
    }
    request_start(dev, req);
    paio_worker(&req->work);
    atomic_fetch_add_explicit(&dev->stat_inline, 1, memory_order_relaxed);
    paio_count_done(dev, req);
    dev_put(dev, IN_FLIGHT_PENDING | IN_FLIGHT_HELD);
    return req->ret;
}

int64_t
paio_run(PaioDev *dev, PaioRequest *req, IOThread *io)
{
    sem_t done;
    int64_t ret;

    if (!io && dev->caller_runs) {
        return run_on_caller(dev, req);
    }
    /* Both check the request: a bad one fails in paio_submit. */
    if (paio_try_inline(dev, req)) {
        return req->ret;
    }
    sem_init(&done, 0, 0);
    req->cb = run_done;
    req->opaque = &done;
    req->iothread = io;
    ret = paio_submit(dev, req);
    if (ret == 0) {
        while (sem_wait(&done) < 0) {
            /* EINTR: keep waiting; the request still owns DONE. */
        }
        ret = req->ret;
    }
    sem_destroy(&done);
    return ret;
}
