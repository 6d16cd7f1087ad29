/* tlbd: paio, POSIX AIO emulated on the threadlet pool.
 *
 * A PaioRequest names one blocking operation on a PaioDev (a file or block
 * device descriptor and what tlbd has learnt about it).  paio_submit queues
 * it on the device's ThreadletQueue; a worker runs the operation's handler
 * (preadv, pwritev, fdatasync, fallocate, ioctl, ...), which returns bytes,
 * 0 or -errno in req->ret; then the request's callback runs on
 * req->iothread, or on the worker when that is NULL.  Each handler loops on
 * EINTR and short transfers, zero-fills reads past end of file, and never
 * turns an error into success.  Fault and latency injection (paio-inject.h)
 * runs on the worker in front of the handler, so the whole path is
 * exercised.  See paio(3).
 *
 * Threads: every function may be called from any thread.  A request belongs
 * to paio from paio_submit until its callback starts; paio_cancel may be
 * called on it until then.  paio_dev_free must not race with submissions.
 */
#ifndef TLBD_PAIO_H
#define TLBD_PAIO_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "histogram.h"
#include "iothread.h"
#include "threadlet.h"

/* The most iovec entries one request may carry. */
#ifdef IOV_MAX
#define PAIO_IOV_MAX IOV_MAX
#else
#define PAIO_IOV_MAX 1024
#endif

/* The largest O_DIRECT bounce buffer one request uses (or one block, if the
 * device's blocks are larger): a longer misaligned request goes through it
 * piece by piece.
 */
#define PAIO_BOUNCE_MAX (1u << 20)

typedef struct PaioDev PaioDev;
typedef struct PaioRequest PaioRequest;
typedef struct PaioInject PaioInject;

typedef enum PaioType {
    PAIO_READ = 0,     /* preadv into u.rw */
    PAIO_WRITE,        /* pwritev from u.rw (+ PAIO_FUA) */
    PAIO_FLUSH,        /* fdatasync */
    PAIO_DISCARD,      /* punch a hole / BLKDISCARD over u.range */
    PAIO_WRITE_ZEROES, /* zero u.range */
    PAIO_IOCTL,        /* ioctl(fd, u.ioctl.cmd, u.ioctl.arg) */
    PAIO_TRUNCATE,     /* ftruncate to u.truncate.size */
    PAIO_LSEEK,        /* lseek(fd, offset, u.lseek.whence): the offset */
    PAIO_FADVISE,      /* posix_fadvise(WILLNEED) over u.range */
    PAIO_FSTAT,        /* fstat: allocated bytes (st_blocks * 512) */
    PAIO_NR_TYPES,
} PaioType;

/* The types whose latency a PaioDev keeps (paio_dev_get_latency): read,
 * write, flush, discard and write-zeroes.
 */
#define PAIO_NR_LATENCY (PAIO_WRITE_ZEROES + 1)

/* Request flags (the same bits as BLOCKDEV_FUA etc. in blockdev.h). */
#define PAIO_FUA         (1u << 0) /* durable when the callback runs */
#define PAIO_MAY_TRIM    (1u << 1) /* write-zeroes may leave a hole */
#define PAIO_NO_FALLBACK (1u << 2) /* write-zeroes: fast or -ENOTSUP */
/* PAIO_MAY_WAIT, for paio_try_inline: a buffered write where RWF_NOWAIT
 * is refused may run as a plain pwritev (see paio(3)).
 */
#define PAIO_MAY_WAIT (1u << 3)

typedef void PaioCompleteFn(PaioRequest *req);

struct PaioRequest {
    /* public: set by the caller before paio_submit */
    PaioType type;
    unsigned flags;
    uint64_t offset;
    union {
        struct {
            const struct iovec *iov; /* must stay valid until completion */
            int niov;                /* 0..IOV_MAX */
        } rw;
        struct {
            uint64_t length;
        } range; /* PAIO_DISCARD, PAIO_WRITE_ZEROES, PAIO_FADVISE */
        struct {
            unsigned long cmd;
            void *arg;
        } ioctl;
        struct {
            uint64_t size;
        } truncate;
        struct {
            int whence; /* SEEK_DATA or SEEK_HOLE */
        } lseek;
    } u;
    PaioCompleteFn *cb; /* runs exactly once unless submit fails */
    void *opaque;       /* for cb */
    IOThread *iothread; /* where cb runs.  NULL: on the worker. */

    /* read-only: valid in cb */
    int64_t ret; /* bytes (whole length for reads and writes), 0, an
                    offset (PAIO_LSEEK), or -errno; -ECANCELED if
                    paio_cancel removed it */
    PaioDev *dev;

    /* private */
    ThreadletWork work;
    uint64_t start_ns;     /* tlbd_now_ns when it started: its latency */
    _Atomic uint32_t intr; /* paio_interrupt: 1 cuts an injected delay
                              short (a futex word) */
};

/* What the device is, fixed at paio_dev_new. */
typedef struct PaioDevConfig {
    int fd;
    bool is_blockdev;
    bool readonly;       /* every modifying request fails with -EROFS */
    bool growable;       /* writes past the size extend a regular file */
    bool discard_ignore; /* PAIO_DISCARD succeeds doing nothing */
    bool direct;         /* fd has O_DIRECT */
    unsigned alignment;  /* O_DIRECT: offsets, lengths, buffers; else 1 */
    uint64_t size;
    ThreadletQueue *queue; /* NULL: the global queue */
    uint32_t inline_max;   /* reads and writes up to this many bytes may run
                              on the caller's thread (paio_try_inline); 0
                              sends every request to the pool */
    bool caller_runs;      /* paio_run without an I/O thread runs every
                              request on the calling thread, which waits for
                              it anyway; else only what paio_try_inline takes */
    bool enospc_wait;      /* a write failing with ENOSPC or EDQUOT waits
                              and retries until there is space (paio(3)) */
    const char *name;      /* for messages (copied).  Can be NULL. */
} PaioDevConfig;

/* Per-operation counters, all atomic. */
typedef struct PaioStats {
    uint64_t ops[PAIO_NR_TYPES];
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t errors;
    uint64_t in_flight;
    uint64_t inline_ops;      /* of ops[]: run on the caller's thread */
    uint64_t cancelled;       /* of ops[]: taken back from the queue */
    uint64_t interrupted;     /* of ops[]: an injected delay cut short */
    uint64_t enospc_episodes; /* enospc=wait: times the disk filled up */
    uint64_t enospc_waits;    /* writes that waited for space */
    uint64_t enospc_pending;  /* writes waiting for space now */
} PaioStats;

/* Make a PaioDev for CFG->fd (not taken over: the caller closes it after
 * paio_dev_free).  Returns 0 or -errno.
 */
int paio_dev_new(const PaioDevConfig *cfg, PaioDev **out);

/* What DEV's opener learns after paio_dev_new, by requests on DEV itself
 * (BLKGETSIZE64, BLKSSZGET): its size in bytes, the O_DIRECT alignment of
 * offsets, lengths and buffers (ignored without O_DIRECT), and the logical
 * sector size that cuts block-device discards and write-zeroes.  Call it
 * before any request that reads or changes data.
 */
void paio_dev_set_geometry(PaioDev *dev, uint64_t size, unsigned alignment,
                           unsigned sector_size);

/* The size now (it grows with growable writes and changes with truncate). */
uint64_t paio_dev_size(PaioDev *dev);

/* Capabilities, learnt while running: each is on until its method first
 * returns -ENOTSUP on the device.  Whether discards are ignored is fixed
 * at paio_dev_new (PaioDevConfig.discard_ignore).
 */
#define PAIO_CAP_DISCARD    (1u << 0) /* punch a hole / BLKDISCARD */
#define PAIO_CAP_ZERO_RANGE (1u << 1) /* fallocate(ZERO_RANGE), files */
#define PAIO_CAP_PUNCH_ZERO (1u << 2) /* PUNCH_HOLE (+ fallocate), files */
#define PAIO_CAP_ZEROOUT    (1u << 3) /* BLKZEROOUT, block devices */

/* The PAIO_CAP_* bits on now. */
unsigned paio_dev_caps(PaioDev *dev);

/* Turn the PAIO_CAP_* bits in CAPS on (ON) or off, as if the device had
 * (not) refused them; for tests of the fallbacks.
 */
void paio_dev_set_caps(PaioDev *dev, unsigned caps, bool on);

/* Run REQ (type, offset, flags and u set by the caller) on the calling
 * thread if it cannot wait on a device: a memory file system, or data the
 * page cache holds (RWF_NOWAIT); with PAIO_MAY_WAIT also a buffered write
 * that may sleep in the kernel but starts no device I/O (paio(3)).  Returns
 * true with req->ret set and the request counted; cb is not called.  false:
 * nothing was done, submit it.
 */
bool paio_try_inline(PaioDev *dev, PaioRequest *req);

/* Wait until no request is in flight (their callbacks have returned). */
void paio_dev_drain(PaioDev *dev);

/* paio_dev_drain, then free.  NULL is fine. */
void paio_dev_free(PaioDev *dev);

/* Replace the device's injection rules (NULL or "" clears them).  Returns 0
 * or -EINVAL with *ERRMSG (malloc'd, if ERRMSG is not NULL) saying where
 * SPEC is wrong; the old rules then stay.
 */
int paio_dev_set_inject(PaioDev *dev, const char *spec, char **errmsg);

void paio_dev_get_stats(PaioDev *dev, PaioStats *stats);

/* Copy DEV's latency counters of TYPE (< PAIO_NR_LATENCY) to
 * BUCKETS[HIST_BUCKETS]: the requests of TYPE finished since paio_dev_new,
 * by the histogram bucket (hist_bucket_of, core/histogram.h) of their
 * latency in nanoseconds, from paio_submit (or the start of a run on the
 * caller's thread) to their completion, before the callback.  Each counter
 * is read atomically, the set is not.
 */
void paio_dev_get_latency(PaioDev *dev, PaioType type, uint64_t *buckets);

/* threadlet_queue_get_stats of the queue DEV's requests go to. */
void paio_dev_get_pool_stats(PaioDev *dev, ThreadletStats *stats);

/* Queue REQ on DEV.  Returns 0 (REQ->cb will run exactly once), or -errno
 * when nothing was queued (-EINVAL for a bad request, -ESHUTDOWN, ...).
 */
int paio_submit(PaioDev *dev, PaioRequest *req);

typedef enum PaioCancelResult {
    PAIO_CANCELLED = 0, /* removed; cb runs with ret -ECANCELED */
    PAIO_RUNNING,       /* a worker has it; cb runs with its result */
    PAIO_DONE,          /* finished; cb has run or is about to */
} PaioCancelResult;

/* Cancel REQ if it is still queued.  Call only before REQ->cb returns. */
PaioCancelResult paio_cancel(PaioRequest *req);

/* A client gave up on REQ (a FUSE INTERRUPT): paio_cancel it if it is
 * still queued (cb then gets -ECANCELED); if a worker runs it, cut an
 * injected delay short, so that cb gets -EINTR without the handler
 * running, or a write's wait for space (enospc=wait; cb gets -EINTR), or
 * else let it complete as usual.  Call only before REQ->cb
 * starts (on the IOThread that runs cb, for instance).
 */
PaioCancelResult paio_interrupt(PaioRequest *req);

/* Run REQ on DEV and wait for it; returns REQ->ret (or the submit error).
 * With IO NULL on a caller_runs device, REQ runs on the calling thread,
 * whatever it is (the same handler, injection and counters as on a worker;
 * cb is not called).  Otherwise paio_try_inline first; else REQ->cb, opaque
 * and iothread are overwritten and REQ goes to a worker.  When IO is not
 * NULL the completion goes through IO's loop (IO must be running and must
 * not be the caller's thread); otherwise the worker wakes the caller
 * directly.
 */
int64_t paio_run(PaioDev *dev, PaioRequest *req, IOThread *io);

/* The name of an operation, for messages: "read", "write", ... */
const char *paio_type_name(PaioType type);

#endif /* TLBD_PAIO_H */
