/* tlbd: BlockDev, a raw image file or block device on top of paio.
 *
 * Both front ends (the nbdkit plugin and the FUSE export) and `tlbd bench`
 * use this interface only.  Every data operation is a PaioRequest; one that
 * may wait on a device runs on a threadlet worker, so the caller never
 * blocks in a system call on the disk:
 *  - blockdev_aio_* queue the request and return; the callback runs on the
 *    BlockDev's IOThread (BlockDevOptions.iothread) once the request is done;
 *  - blockdev_try_* run a small read, write or flush on the caller's thread
 *    when it cannot wait on a device (a memory file system, or data in the
 *    page cache: paio_try_inline), and otherwise say so and do nothing, so
 *    an event loop can fall back to blockdev_aio_*;
 *  - blockdev_p* and friends are the blocking forms for callers that are
 *    threads of their own (nbdkit's): they try inline first, else submit
 *    and sleep until the worker wakes them.
 *
 * Return values follow the project's convention: bytes or 0 on success,
 * -errno on failure.  An aio call that returns an error has not queued
 * anything and will not call its callback.
 *
 * Threads: every function may be called from any thread once blockdev_open
 * returned, except blockdev_close, which must not race with new requests.
 */
#ifndef TLBD_BLOCKDEV_H
#define TLBD_BLOCKDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "iothread.h"
#include "threadlet.h"

typedef struct BlockDev BlockDev;

typedef enum BlockDevCache {
    BLOCKDEV_CACHE_WRITEBACK = 0, /* page cache; flush = fdatasync */
    BLOCKDEV_CACHE_NONE,          /* O_DIRECT, with bounce buffers as needed */
} BlockDevCache;

typedef enum BlockDevDiscard {
    BLOCKDEV_DISCARD_UNMAP = 0, /* discard punches holes / BLKDISCARD */
    BLOCKDEV_DISCARD_IGNORE,    /* discard succeeds and does nothing */
} BlockDevDiscard;

/* Which requests of the blocking forms (blockdev_p*, blockdev_flush, ...)
 * the pool runs.  The aio forms always use the pool (after their
 * blockdev_try_* attempt).
 */
typedef enum BlockDevOffload {
    BLOCKDEV_OFFLOAD_BLOCKING = 0, /* those that may wait on a device; the
                                      rest run on the caller's thread */
    BLOCKDEV_OFFLOAD_NEVER,        /* none: the caller's thread runs every
                                      request, since it waits anyway */
    BLOCKDEV_OFFLOAD_ALWAYS,       /* all of them (inline_max is ignored) */
} BlockDevOffload;

/* The worker pool a front end creates for its BlockDev
 * (BlockDevOptions.queue); blockdev_open itself does not read these.
 */
typedef struct BlockDevPoolOptions {
    int threads_min;          /* workers kept warm; default 1 */
    int threads_max;          /* 0 until set: blockdev_check_pool makes it
                                 threadlet_default_max_threads(), or
                                 threads_min if that is more */
    unsigned idle_timeout_ms; /* idle workers above threads_min leave after
                                 this; 0: at once.  Default
                                 THREADLET_DEFAULT_IDLE_MS. */
} BlockDevPoolOptions;

#define BLOCKDEV_THREADS_LIMIT       4096
#define BLOCKDEV_IDLE_TIMEOUT_MAX_MS (24u * 3600u * 1000u)

typedef struct BlockDevOptions {
    bool readonly;
    bool growable; /* writes past the end extend a regular file */
    BlockDevCache cache;
    BlockDevDiscard discard;
    const char *inject;      /* fault/latency spec, see paio(3). Can be NULL. */
    ThreadletQueue *queue;   /* where requests run. NULL: the global queue. */
    IOThread *iothread;      /* where aio callbacks run. Can be NULL: then
                                they run on the worker. */
    uint32_t inline_max;     /* largest read or write blockdev_try_* and the
                                blocking forms may run on the caller's
                                thread; 0 sends everything to the pool.
                                Default BLOCKDEV_INLINE_MAX_DEFAULT. */
    BlockDevOffload offload; /* default BLOCKDEV_OFFLOAD_BLOCKING */
    BlockDevPoolOptions pool;
    uint64_t volatile_cache; /* bytes of volatile write cache; 0: none */
    const char *powercut;    /* power-cut rule, see paio(3); needs
                                volatile_cache.  Can be NULL. */
    const char *log_writes;  /* the write log's file, see paio(3); needs
                                volatile_cache.  Can be NULL. */
    const char *control;     /* the control socket's path, served by
                                blockdev_serve.  Can be NULL. */
    bool force_share;        /* lock the image but share everything and
                                check nothing (QEMU's force-share) */
    bool enospc_wait;        /* enospc=wait: writes finding the host disk
                                full wait for space (paio(3)) */
} BlockDevOptions;

#define BLOCKDEV_INLINE_MAX_DEFAULT (64u * 1024)
#define BLOCKDEV_INLINE_MAX_LIMIT   (32u * 1024 * 1024)

/* An inline-max value: a size such as "64k", at most
 * BLOCKDEV_INLINE_MAX_LIMIT.  Returns 0 or -EINVAL.
 */
int blockdev_parse_inline_max(const char *str, uint32_t *out);

/* Request flags. */
/* BLOCKDEV_FUA: a write, zero or discard is durable on return. */
#define BLOCKDEV_FUA         (1u << 0)
#define BLOCKDEV_MAY_TRIM    (1u << 1) /* write_zeroes may punch a hole */
#define BLOCKDEV_NO_FALLBACK (1u << 2) /* write_zeroes: fast or -ENOTSUP */
/* BLOCKDEV_MAY_WAIT, for blockdev_try_pwritev: a buffered write may run
 * even where the file system refuses RWF_NOWAIT; it may sleep in the
 * kernel, but starts no device I/O of its own.
 */
#define BLOCKDEV_MAY_WAIT (1u << 3)

/* Called once per aio request with bytes transferred (reads and writes: the
 * whole length), 0, or -errno.
 */
typedef void BlockDevCompleteFn(void *opaque, int64_t ret);

/* Called by blockdev_extents for each run; return 0 to go on, or -errno. */
typedef int BlockDevExtentFn(void *opaque, uint64_t offset, uint64_t length,
                             bool hole);

typedef struct BlockDevStats {
    uint64_t reads, writes, flushes, discards, zeroes, ioctls;
    uint64_t bytes_read, bytes_written;
    uint64_t errors;
    uint64_t in_flight;
    uint64_t inline_ops;      /* of the above: run on the caller's thread */
    uint64_t cancelled;       /* of the above: taken back from the queue */
    uint64_t interrupted;     /* of the above: an injected delay cut short */
    uint64_t enospc_episodes; /* enospc=wait: times the host disk filled */
    uint64_t enospc_waits;    /* writes that waited for space */
    uint64_t enospc_pending;  /* writes waiting for space now */
    uint64_t marks;           /* blockdev_mark calls that placed a mark */
    /* volatile-cache (all 0 without one): */
    uint64_t volatile_cache;  /* SIZE */
    uint64_t volatile_bytes;  /* data bytes written but not yet durable */
    uint64_t volatile_writes; /* writes in that volatile set */
    uint64_t cache_writes;    /* writes, zeroes, discards completed */
    uint64_t epoch;           /* flushes completed */
    uint64_t destaged;        /* writes the cache destaged early */
    bool dead;                /* the power was cut */
} BlockDevStats;

/* Defaults: read-write, writeback, discard=unmap, no injection, offload
 * blocking, inline-max 64k; a pool of 1 to (by default) the threadlet
 * default workers, idle after 10 s.
 */
void blockdev_options_init(BlockDevOptions *opts);

/* "writeback" | "none", "unmap" | "ignore" and "blocking" | "never" |
 * "always".  Return 0 or -EINVAL.
 */
int blockdev_parse_cache(const char *str, BlockDevCache *cache);
int blockdev_parse_discard(const char *str, BlockDevDiscard *discard);
int blockdev_parse_offload(const char *str, BlockDevOffload *offload);

/* Open PATH, a regular file or block device.  Returns 0 or -errno; on
 * failure *ERRMSG (if ERRMSG is not NULL) gets a malloc'd one-line message
 * naming PATH or the option and the reason, e.g.
 * "cannot open 'disk.img': No such file or directory".  A failed open never
 * writes to the image.
 */
int blockdev_open(const char *path, const BlockDevOptions *opts, BlockDev **out,
                  char **errmsg);

/* Wait for every request in flight, then close.  NULL is fine. */
void blockdev_close(BlockDev *bd);

const char *blockdev_path(const BlockDev *bd);
int blockdev_fd(const BlockDev *bd);
uint64_t blockdev_size(const BlockDev *bd);
bool blockdev_is_readonly(const BlockDev *bd);
bool blockdev_is_blockdev(const BlockDev *bd); /* a block device, not a file */
bool blockdev_is_direct(const BlockDev *bd);   /* cache=none in effect */
unsigned blockdev_logical_block_size(const BlockDev *bd);
unsigned blockdev_physical_block_size(const BlockDev *bd);
unsigned blockdev_alignment(const BlockDev *bd); /* O_DIRECT; 1 otherwise */
bool blockdev_can_discard(const BlockDev *bd);
bool blockdev_can_fast_zero(const BlockDev *bd);
void blockdev_get_stats(BlockDev *bd, BlockDevStats *stats);

/* Marks name points in a device's history (a write log's MARK entries, a
 * power-cut rule's at-mark=NAME).  A name is 1 to BLOCKDEV_MARK_MAX
 * printable ASCII characters without spaces: dm-log-writes keeps a mark
 * in one sector, as a C string of at most 31 bytes.
 */
#define BLOCKDEV_MARK_MAX 31
#define BLOCKDEV_MARK_REASON                                                   \
    "is not a mark name (1 to 31 printable characters, no spaces)"

bool blockdev_is_mark_name(const char *name);

/* Place the mark NAME after every request completed so far: a power-cut
 * rule's at-mark=NAME cuts the power here.  Without volatile-cache the
 * mark is only counted (BlockDevStats.marks).  Returns 0, -EINVAL for a
 * name blockdev_is_mark_name refuses, or -EIO once the power was cut.
 */
int blockdev_mark(BlockDev *bd, const char *name);

/* The control channel (control=PATH, see tlbd(1) "TLBD CTL").
 * blockdev_open creates the Unix socket PATH (mode 0600) and listens on
 * it, refusing a PATH that exists unless it is a stale socket of the same
 * user that nobody listens on; blockdev_close removes it.  Connections
 * wait until blockdev_serve starts the thread "ctl" that answers them:
 * call it in the process that serves, after any fork (threads do not
 * survive one), and before telling anyone the device is ready.  Returns 0
 * (also without control=, or when already serving) or -errno.
 */
int blockdev_serve(BlockDev *bd);

/* Lines a front end adds to the control channel's `stats`: FN prints
 * "key=value\n" lines on FP.  It runs on the ctl thread, while requests
 * run, so it reads only what is safe there.  Set it before
 * blockdev_serve.  FN can be NULL.
 */
typedef void BlockDevStatsHook(void *opaque, FILE *fp);
void blockdev_set_stats_hook(BlockDev *bd, BlockDevStatsHook *fn, void *opaque);

/* Change the fault/latency injection spec at run time (NULL or "" clears).
 * Returns 0, or -EINVAL with *ERRMSG showing where SPEC is wrong.
 */
int blockdev_set_inject(BlockDev *bd, const char *spec, char **errmsg);

/* Asynchronous forms: the callback runs on the BlockDev's IOThread. */
int blockdev_aio_preadv(BlockDev *bd, uint64_t offset, const struct iovec *iov,
                        int niov, BlockDevCompleteFn *cb, void *opaque);
int blockdev_aio_pwritev(BlockDev *bd, uint64_t offset, const struct iovec *iov,
                         int niov, unsigned flags, BlockDevCompleteFn *cb,
                         void *opaque);
int blockdev_aio_flush(BlockDev *bd, BlockDevCompleteFn *cb, void *opaque);
int blockdev_aio_discard(BlockDev *bd, uint64_t offset, uint64_t length,
                         unsigned flags, BlockDevCompleteFn *cb, void *opaque);
int blockdev_aio_write_zeroes(BlockDev *bd, uint64_t offset, uint64_t length,
                              unsigned flags, BlockDevCompleteFn *cb,
                              void *opaque);
int blockdev_aio_ioctl(BlockDev *bd, unsigned long cmd, void *arg,
                       BlockDevCompleteFn *cb, void *opaque);
int blockdev_aio_truncate(BlockDev *bd, uint64_t size, BlockDevCompleteFn *cb,
                          void *opaque);

/* An aio read or write in flight, for blockdev_aio_interrupt. */
typedef struct BlockDevAio BlockDevAio;

/* blockdev_aio_preadv (WRITE false) or blockdev_aio_pwritev (WRITE true)
 * that also sets *AIO to the request's handle, valid until its callback
 * starts.
 */
int blockdev_aio_rw_intr(BlockDev *bd, bool write, uint64_t offset,
                         const struct iovec *iov, int niov, unsigned flags,
                         BlockDevCompleteFn *cb, void *opaque,
                         BlockDevAio **aio);
/* blockdev_aio_flush with a handle, the same way. */
int blockdev_aio_flush_intr(BlockDev *bd, BlockDevCompleteFn *cb, void *opaque,
                            BlockDevAio **aio);

/* The client gave up on AIO (a FUSE INTERRUPT).  Still queued in the
 * pool: it is taken back, and its callback gets -ECANCELED without the
 * image being touched; returns true.  Running: an injected delay is cut
 * short (the callback gets -EINTR, the image untouched), so is a write's
 * wait for space (enospc=wait), else it completes as usual; returns
 * false.  Call it on the IOThread where the callback
 * runs, before the callback ran.
 */
bool blockdev_aio_interrupt(BlockDevAio *aio);

/* Run on the caller's thread if that cannot wait on a device: true with
 * *RET set to what the aio form would have passed its callback; false when
 * nothing was done and the request must go through blockdev_aio_*.
 */
bool blockdev_try_preadv(BlockDev *bd, uint64_t offset, const struct iovec *iov,
                         int niov, int64_t *ret);
bool blockdev_try_pwritev(BlockDev *bd, uint64_t offset,
                          const struct iovec *iov, int niov, unsigned flags,
                          int64_t *ret);
bool blockdev_try_flush(BlockDev *bd, int *ret);

/* Blocking forms, for callers that are threads.  Same results. */
int64_t blockdev_pread(BlockDev *bd, void *buf, size_t count, uint64_t offset);
int64_t blockdev_pwrite(BlockDev *bd, const void *buf, size_t count,
                        uint64_t offset, unsigned flags);
int64_t blockdev_preadv(BlockDev *bd, const struct iovec *iov, int niov,
                        uint64_t offset);
int64_t blockdev_pwritev(BlockDev *bd, const struct iovec *iov, int niov,
                         uint64_t offset, unsigned flags);
int blockdev_flush(BlockDev *bd);
int blockdev_discard(BlockDev *bd, uint64_t offset, uint64_t length,
                     unsigned flags);
int blockdev_write_zeroes(BlockDev *bd, uint64_t offset, uint64_t length,
                          unsigned flags);
int blockdev_ioctl(BlockDev *bd, unsigned long cmd, void *arg);
int blockdev_truncate(BlockDev *bd, uint64_t size);

/* Report data/hole runs in [OFFSET, OFFSET+LENGTH) from SEEK_DATA/SEEK_HOLE,
 * or one data run where those are not supported.
 */
int blockdev_extents(BlockDev *bd, uint64_t offset, uint64_t length,
                     BlockDevExtentFn *fn, void *opaque);

/* Bytes really allocated (st_blocks * 512; the size for block devices). */
int64_t blockdev_allocated(BlockDev *bd);

/* posix_fadvise(WILLNEED) on a range, for NBD_CMD_CACHE. */
int blockdev_cache(BlockDev *bd, uint64_t offset, uint64_t length);

/* The one parser of the options the front ends share (the plugin's
 * KEY=VALUE, the subcommands' --KEY=VALUE): cache, discard, inline-max,
 * offload, inject, threads-min, threads-max, idle-timeout, volatile-cache
 * and powercut; readonly and growable (true/false, on/off, yes/no, 1/0)
 * too, though the front ends take those as flags or not at all.  VALUE is
 * used as it is (inject and powercut keep the pointer).  Returns 0, -ENOENT for
 * a key that is not a BlockDev option (nothing is set), or -EINVAL with *ERRMSG
 * (malloc'd, if ERRMSG is not NULL) naming the key, the value and the reason,
 * such as "cache: 'fast' is not one of writeback, none".  Front ends print it
 * after their own prefix and never reword it.
 */
int blockdev_parse_option(BlockDevOptions *opts, const char *key,
                          const char *value, char **errmsg);

/* The options every front end takes, in the order of their help: for
 * I = 0, 1, ... until it returns NULL, the key, and in *ARG and *HELP (if
 * not NULL) the value's placeholder ("MODE") and a line of help.
 */
const char *blockdev_shared_option(size_t i, const char **arg,
                                   const char **help);

/* Print the help of every shared option on FP, one "LEADKEY=ARG" column
 * and its line of help each: LEAD is "  --" for a command line, "" for
 * nbdkit's key=value list.
 */
void blockdev_print_options(FILE *fp, const char *lead);

/* True when KEY is one of blockdev_shared_option's keys. */
bool blockdev_is_shared_option(const char *key);

/* After the last option: fill in the default threads-max (raised to
 * threads-min when only threads-min was given) and refuse threads-min
 * above a threads-max that was given.  Returns 0 or -EINVAL with *ERRMSG
 * as blockdev_parse_option.
 */
int blockdev_check_pool(BlockDevPoolOptions *pool, char **errmsg);

/* A warning from blockdev_open that did not stop it (cache=none falling
 * back to writeback where the file system refuses O_DIRECT), or NULL.
 * blockdev_open also prints it on stderr.
 */
const char *blockdev_warning(const BlockDev *bd);

/* lseek(SEEK_DATA or SEEK_HOLE) on a worker: the callback gets the offset,
 * or -ENXIO past the last data / -errno.
 */
int blockdev_aio_lseek(BlockDev *bd, uint64_t offset, int whence,
                       BlockDevCompleteFn *cb, void *opaque);
int64_t blockdev_lseek(BlockDev *bd, uint64_t offset, int whence);

/* blockdev_cache and blockdev_allocated as aio requests. */
int blockdev_aio_cache(BlockDev *bd, uint64_t offset, uint64_t length,
                       BlockDevCompleteFn *cb, void *opaque);
int blockdev_aio_allocated(BlockDev *bd, BlockDevCompleteFn *cb, void *opaque);

#endif /* TLBD_BLOCKDEV_H */
