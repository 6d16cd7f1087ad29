/* tlbd: what paio's own files share and nothing else needs: the PaioDev
 * structure and the functions one paio file calls in another.  The
 * handlers run on threadlet workers; see paio.c for the rules they follow.
 */
#ifndef TLBD_PAIO_INT_H
#define TLBD_PAIO_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cleanup.h"
#include "paio.h"

/* A device: the descriptor, what tlbd has learnt about it, and the state
 * its requests share.  Workers and callers of any thread touch it at once,
 * so every field is read-only, atomic or under one of its locks.
 */
struct PaioDev {
    /* read-only after paio_dev_new (paio_dev_set_geometry sets alignment,
     * sector_size and size once more, before any data request) */
    int fd;
    bool is_blockdev;
    bool readonly;
    bool growable;
    bool discard_ignore;
    bool direct;
    unsigned alignment;
    unsigned sector_size; /* block devices: BLKSSZGET */
    ThreadletQueue *queue;
    bool mem_fs; /* tmpfs or ramfs: I/O never waits on a device */
    uint32_t inline_max;
    bool caller_runs;
    bool enospc_wait;      /* enospc=wait (paio-enospc.c) */
    char *name;            /* for messages; Can be NULL. */
    struct Vcache *vcache; /* volatile-cache: set by vcache_new before any
                              data request; it then takes the reads,
                              writes, flushes, discards and write-zeroes */

    /* atomic: learnt while running */
    _Atomic uint64_t size;         /* grows with growable writes, truncate */
    _Atomic bool has_discard;      /* cleared after the first -ENOTSUP */
    _Atomic bool has_zero_range;   /* FALLOC_FL_ZERO_RANGE */
    _Atomic bool has_punch_zero;   /* PUNCH_HOLE (+ fallocate) to zero */
    _Atomic bool has_zeroout;      /* BLKZEROOUT */
    _Atomic int flush_err;         /* first failed fdatasync, latched */
    _Atomic bool has_nowait_read;  /* preadv2(RWF_NOWAIT) works here */
    _Atomic bool has_nowait_write; /* pwritev2(RWF_NOWAIT) works here */
    _Atomic uint64_t stat_inline;
    _Atomic uint64_t stat_ops[PAIO_NR_TYPES];
    _Atomic uint64_t stat_bytes_read;
    _Atomic uint64_t stat_bytes_written;
    _Atomic uint64_t stat_errors;
    _Atomic uint64_t stat_cancelled;
    _Atomic uint64_t stat_interrupted;

    /* Locks, in the order a request takes them (a worker never holds two
     * at once; anything that must nest them takes them in this order):
     *  1. inject_lock, before the handler, to ask the injection rules;
     *  2. rmw_lock, in the handler;
     *  3. drain_lock, at completion, by the last request in flight.
     */

    /* 1. inject_lock protects inject (the rules and their counters);
     * inject_on mirrors inject != NULL for a lock-free fast path */
    pthread_mutex_t inject_lock;
    PaioInject *inject;
    _Atomic bool inject_on;

    /* 2. rmw_lock orders changes that must not interleave: held exclusively
     * to read-modify-write a partial O_DIRECT block and to extend or
     * truncate the file; shared by the other O_DIRECT writes, write-zeroes
     * and discards (paio-util.c) */
    pthread_rwlock_t rmw_lock;

    /* 3. drain_lock: in_flight counts the requests submitted whose
     * callback has not started (low 32 bits, for PaioStats) and those whose
     * callback has not returned (high 32 bits), so one atomic add starts a
     * request (paio.c).  It is atomic, but the decrement that may leave no
     * callback to return happens under drain_lock (with a broadcast of
     * drain_cond), so paio_dev_drain, which waits under drain_lock, cannot
     * see none while a completion still needs the device. */
    pthread_mutex_t drain_lock;
    pthread_cond_t drain_cond;
    _Atomic uint64_t in_flight;

    /* enospc_lock (paio-enospc.c): the writes waiting for space and the
     * flushes waiting behind them (enospc_cond).  Taken alone, after the
     * handler returned, never across a system call. */
    pthread_mutex_t enospc_lock;
    pthread_cond_t enospc_cond;
    unsigned enospc_pending; /* writes waiting for space now */
    _Atomic uint64_t stat_enospc_episodes;
    _Atomic uint64_t stat_enospc_waits;
    /* atomic: per type, the finished requests by latency bucket
     * (paio_count_done adds one, relaxed; paio_dev_get_latency reads);
     * last, as it is large (5 x HIST_BUCKETS words) */
    _Atomic uint64_t stat_latency[PAIO_NR_LATENCY][HIST_BUCKETS];
};

/* True for the errors that mean "this kind of request is not supported
 * here", after which a capability flag is cleared.
 */
static inline bool
paio_is_notsup(int err)
{
    return err == -ENOTSUP || err == -EOPNOTSUPP || err == -ENOSYS;
}

/* The bytes IOV describes; whether OFFSET, TOTAL and every buffer meet
 * dev->alignment (O_DIRECT).
 */
uint64_t paio_iov_total(const struct iovec *iov, int niov);
bool paio_iov_aligned(const PaioDev *dev, const struct iovec *iov, int niov,
                      uint64_t offset, uint64_t total);

/* A known type, and for reads and writes 0..PAIO_IOV_MAX iovecs. */
bool paio_valid_request(const PaioRequest *req);

/* Count a finished request (req->ret set) in the device's statistics,
 * its latency too (since req->start_ns).
 */
void paio_count_done(PaioDev *dev, const PaioRequest *req);

/* Work DEV does on its own (the cache's background destaging) holds it
 * like a request in flight: paio_dev_drain waits until it lets go.
 */
void paio_dev_hold(PaioDev *dev);
void paio_dev_unhold(PaioDev *dev);

/* Sleep NS nanoseconds on REQ's futex word (an injected delay, a write
 * waiting for space), so that paio_interrupt can wake it.  Returns true
 * when REQ was interrupted.
 */
bool paio_sleep_interruptible(PaioRequest *req, uint64_t ns);

/* Handlers: bytes, 0 or -errno. */
typedef int64_t PaioHandler(PaioRequest *req);

/* True for a write failing because the host disk is full (ENOSPC, EDQUOT). */
static inline bool
paio_is_nospace(int64_t ret)
{
    return ret == -ENOSPC || ret == -EDQUOT;
}

/* enospc=wait (paio-enospc.c): run HANDLER on REQ; a write or
 * write-zeroes that fails with ENOSPC or EDQUOT waits and retries with a
 * backoff until it does not; a flush first waits until no write waits.
 */
int64_t paio_enospc_run(PaioRequest *req, PaioHandler *handler);
int64_t paio_handle_read(PaioRequest *req);
int64_t paio_handle_write(PaioRequest *req);
int64_t paio_handle_discard(PaioRequest *req);
int64_t paio_handle_write_zeroes(PaioRequest *req);

/* Write IOV (TOTAL bytes) at OFFSET: the write path under the request,
 * which takes rmw_lock itself and keeps the size right (paio-rw.c).
 * Returns TOTAL or -errno.
 */
int64_t paio_write_range(PaioDev *dev, const struct iovec *iov, int niov,
                         uint64_t offset, uint64_t total);

/* The rest live in paio-util.c, which calls none of the above. */

/* fdatasync unless a flush error is latched; latches a new failure. */
int paio_do_flush(PaioDev *dev);
int paio_latch_flush_error(PaioDev *dev, int err);

/* Raise dev->size to END if it is smaller. */
void paio_grow_size(PaioDev *dev, uint64_t end);

/* How a request holds dev->rmw_lock (see paio-util.c). */
typedef enum PaioRmwMode {
    PAIO_RMW_NONE = 0,
    PAIO_RMW_SHARED,    /* an O_DIRECT change that reads nothing back */
    PAIO_RMW_EXCLUSIVE, /* a partial-block read-modify-write, a change of
                           the file's size */
} PaioRmwMode;

/* The mode for a change of [OFFSET, OFFSET+LENGTH) that is not itself a
 * read-modify-write: exclusive if it extends the file, shared on O_DIRECT.
 */
PaioRmwMode paio_rmw_mode(PaioDev *dev, uint64_t offset, uint64_t length);
void paio_rmw_lock(PaioDev *dev, PaioRmwMode mode);
void paio_rmw_unlock(PaioDev *dev, PaioRmwMode mode);

/* fallocate(MODE), a uint64_t[2] range ioctl (BLKDISCARD, BLKZEROOUT) and
 * ftruncate, again after EINTR: 0 or -errno.
 */
int paio_fallocate(int fd, int mode, uint64_t offset, uint64_t length);
int paio_range_ioctl(int fd, unsigned long cmd, uint64_t offset,
                     uint64_t length);
int paio_ftruncate(int fd, uint64_t size);

/* Writes reaching past the size: -ENOSPC unless the device is growable. */
int paio_check_end(PaioDev *dev, uint64_t offset, uint64_t length);

#endif /* TLBD_PAIO_INT_H */
