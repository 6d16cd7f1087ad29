/* tlbd: the FUSE export, a BlockDev presented as one regular file.
 *
 * fexp_new mounts a libfuse3 low-level session on a regular file (the file
 * itself becomes the image) or on a directory (the image appears inside it
 * as one file), answers the kernel's INIT and registers the session's fd as
 * a handler of an IOThread; with io_uring (fexp-uring.c) the ring's fd too.
 * From then on everything happens on that IOThread: requests are read from
 * /dev/fuse there, data requests become blockdev_aio_* calls, and their
 * completions, which the BlockDev posts to the same IOThread, send the replies.
 *
 * fexp_shutdown (on the IOThread) stops reading new requests, waits for the
 * ones in flight, flushes the image and then stops the IOThread's loop; the
 * same happens by itself when the file system is unmounted from outside
 * (fusermount3 -u).  fexp_free unmounts and frees.
 *
 * Threads: fexp_new and fexp_free run while the IOThread's loop is not
 * running; everything else runs on the IOThread.
 */
#ifndef TLBD_FEXP_H
#define TLBD_FEXP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "iothread.h"
#include "blockdev.h"

typedef struct FuseExport FuseExport;

/* The transport of requests and replies (--io-uring). */
typedef enum FexpIoUring {
    FEXP_IO_URING_AUTO, /* io_uring where the kernel offers it */
    FEXP_IO_URING_ON,   /* io_uring or fail */
    FEXP_IO_URING_OFF,  /* /dev/fuse only */
} FexpIoUring;

typedef struct FexpOptions {
    const char *mountpoint; /* absolute path, a regular file or directory */
    const char *name;       /* the file's name in a directory mount */
    const char *image;      /* shown in messages and statistics */
    bool growable;          /* writes past the end and truncate grow it */
    bool direct_io;         /* FOPEN_DIRECT_IO: no page cache in between */
    bool allow_other;       /* other users may use the mount */
    const char *fuse_opts;  /* extra -o options. Can be NULL. */
    bool debug;             /* libfuse's -d */
    FexpIoUring io_uring;   /* the transport */
} FexpOptions;

/* What the export has done.  I/O thread only. */
typedef struct FexpStats {
    uint64_t requests;        /* read from /dev/fuse */
    bool io_uring;            /* the ring carries the requests */
    uint64_t ring_requests;   /* arrived in ring entries */
    uint64_t ring_commits;    /* replies committed (COMMIT_AND_FETCH) */
    uint64_t ring_enters;     /* io_uring_enter calls that submitted them */
    uint64_t ring_oversize;   /* replies too big for the entry: sent EIO */
    uint64_t ring_errors;     /* completions with an unexpected error */
    uint64_t ring_interrupts; /* flushes of dying processes, taken as
                                 interrupted (no INTERRUPT over the ring) */
    unsigned ring_queues;     /* one per possible CPU */
    unsigned ring_depth;      /* entries per queue */
    size_t ring_payload;      /* bytes of each entry's payload buffer */
    uint64_t reads, writes, flushes, fsyncs, fallocates, lseeks, truncates;
    uint64_t bytes_read, bytes_written;
    uint64_t errors;    /* replies carrying an error */
    uint64_t in_flight; /* submitted, not yet replied */
    uint64_t peak_in_flight;
    uint64_t writes_in_flight;
    uint64_t peak_writes_in_flight; /* > 1: direct writes ran in parallel */
    uint64_t handoffs;              /* receive buffers handed to a write */
    uint64_t inline_ops;            /* reads, writes, flushes done on the I/O
                                       thread (blockdev_try_*) */
    uint64_t interrupts;            /* INTERRUPTs for requests in the pool */
    uint64_t cancelled;             /* of those: taken back from the queue,
                                       answered EINTR */
    uint64_t buf_allocs;            /* receive buffers allocated */
    uint64_t wakeups;               /* times the session fd was readable */
    uint64_t max_batch;             /* most requests read in one wake-up */
    unsigned max_write;             /* negotiated with the kernel */
    unsigned max_read;
    unsigned max_background;
} FexpStats;

/* Mount BD at OPTS->mountpoint and get ready to serve on IO (not running
 * yet).  Returns 0 or -errno with a malloc'd one-line message in *ERRMSG.
 */
int fexp_new(BlockDev *bd, IOThread *io, const FexpOptions *opts,
             FuseExport **out, char **errmsg);

/* Finish in-flight requests, flush, then stop IO's loop.  I/O thread. */
void fexp_shutdown(FuseExport *exp);

/* 0, or -errno if the final flush (or the session) failed. */
int fexp_status(const FuseExport *exp);

void fexp_get_stats(const FuseExport *exp, FexpStats *stats);
void fexp_dump_stats(const FuseExport *exp, FILE *fp);

/* Unmount (if still mounted) and free.  NULL is fine. */
void fexp_free(FuseExport *exp);

/* True when PATH is the mount point of a tlbd FUSE mount (live or dead). */
bool fexp_is_mounted(const char *path);

/* True when the kernel may carry FUSE over io_uring (its fuse module's
 * enable_uring is Y); else false with the reason in WHY.  The kernel's INIT
 * has the last word.
 */
bool fexp_io_uring_offered(char *why, size_t len);

/* The version of the libfuse the export runs on, e.g. "3.14.0". */
const char *fexp_libfuse_version(void);

#endif /* TLBD_FEXP_H */
