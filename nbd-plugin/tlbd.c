/* tlbd: nbdkit-tlbd-plugin, an nbdkit plugin serving a raw image or block
 * device through the threadlet pool.
 *
 * One BlockDev is shared by every connection.  It is opened in .get_ready,
 * so a missing file or a bad option stops nbdkit before it forks, with one
 * message; the pool that the open may use is joined again before
 * .get_ready returns.  It starts for good in .after_fork, since threads do
 * not survive nbdkit --fork, and .cleanup stops it: no thread outlives the
 * plugin.
 *
 * Threads: nbdkit's main thread calls the configuration callbacks,
 * .get_ready, .after_fork, .cleanup and .unload.  Under the PARALLEL thread
 * model any number of nbdkit worker threads call the data callbacks at once,
 * for one connection or many.  Each data callback makes one blockdev_p*
 * call.  With offload=never (the default) the nbdkit thread runs the
 * request itself, since it waits anyway and a hand-off would only add two
 * wake-ups; with offload=blocking only the requests that may wait on a
 * device go to a pool worker, and with offload=always all of them, the
 * worker waking the sleeping nbdkit thread when done.  Either way, when a
 * callback returns, its request is finished.  nbdkit's threads are already
 * threads that may block, so the plugin needs no I/O thread of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cleanup.h"
#include "pconfig.h"
#include "blockdev.h"
#include "threadlet.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Advertised block sizes (NBD_INFO_BLOCK_SIZE). */
#define PREFERRED_BLOCK_SIZE 4096
#define MAXIMUM_BLOCK_SIZE   (32 * 1024 * 1024)

/* Configuration, written by .config and .config_complete only. */
static PluginConfig config;

/* Main thread only: set up by .get_ready and .after_fork, torn down by
 * .cleanup.  The data callbacks only read bd, which stays valid from
 * .get_ready to .cleanup.
 */
static BlockDev *bd;        /* shared by every connection */
static ThreadletQueue pool; /* runs the blocking system calls */
static bool pool_started;

/* The per-connection handle. */
typedef struct TlbdHandle {
    pthread_mutex_t lock;
    pthread_cond_t idle_cond; /* signalled when in_flight drops to 0 */
    unsigned in_flight;       /* protected by lock */
} TlbdHandle;

static void tlbd_cleanup(void);

static void
tlbd_load(void)
{
    pconfig_init(&config);
}

/* .cleanup has normally run already; it does nothing the second time. */
static void
tlbd_unload(void)
{
    tlbd_cleanup();
    pconfig_free(&config);
}

/* Called for each key=value on the command line. */
static int
tlbd_config(const char *key, const char *value)
{
    CLEANUP_FREE char *err = NULL;

    if (pconfig_set(&config, key, value, &err) < 0) {
        nbdkit_error("%s", err ? err : "out of memory");
        return -1;
    }
    return 0;
}

/* Check the combination of keys, and that the file is something to serve. */
static int
tlbd_config_complete(void)
{
    CLEANUP_FREE char *err = NULL;

    if (pconfig_check(&config, &err) < 0) {
        nbdkit_error("%s", err ? err : "out of memory");
        return -1;
    }
    return 0;
}

/* The help nbdkit prints after the plugin's name: file= and blockdrv's
 * shared options, made once when the plugin is loaded (tlbd_make_help).
 */
static char *config_help;

/* Print the compiled-in features. */
static void
tlbd_dump_plugin(void)
{
    printf("tlbd_version=%s\n", TLBD_VERSION);
    printf("tlbd_threads_max_default=%d\n", threadlet_default_max_threads());
    printf("tlbd_threadlets=yes\n");
    printf("tlbd_inline=yes\n");
    printf("tlbd_cache_none=yes\n");
    printf("tlbd_discard_ignore=yes\n");
    printf("tlbd_inject=yes\n");
    printf("tlbd_volatile_cache=yes\n");
    printf("tlbd_powercut=yes\n");
    printf("tlbd_control=yes\n");
    printf("tlbd_log_writes=yes\n");
    printf("tlbd_locking=qemu\n");
    printf("tlbd_enospc_wait=yes\n");
    printf("tlbd_fua=native\n");
    printf("tlbd_fast_zero=yes\n");
    printf("tlbd_extents=yes\n");
    printf("tlbd_cache=native\n");
    printf("tlbd_multi_conn=yes\n");
    printf("tlbd_block_size=yes\n");
}

/* Start the pool, keeping MIN_THREADS warm. */
static int
start_threads(int min_threads)
{
    const BlockDevPoolOptions *p = &config.opts.pool;
    int r;

    r = threadlet_queue_init_named(&pool, "nbd", p->threads_max, min_threads);
    if (r < 0) {
        errno = -r;
        nbdkit_error("cannot start the threadlet pool: %m");
        return -1;
    }
    pool_started = true;
    threadlet_queue_set_idle_timeout(&pool, p->idle_timeout_ms);
    return 0;
}

/* Join every thread of the pool; it can start again. */
static void
stop_threads(void)
{
    if (pool_started) {
        threadlet_queue_destroy(&pool, THREADLET_DRAIN);
        pool_started = false;
    }
}

/* True for the errors that mean "this file cannot be written by us". */
static bool
is_readonly_error(int err)
{
    return err == EACCES || err == EPERM || err == EROFS;
}

/* Open the BlockDev.  A file that cannot be opened for writing
 * (permissions, an immutable file, a read-only file system) is served
 * read-only, as nbdkit's file plugin does.
 */
static int
open_device(void)
{
    BlockDevOptions opts;
    CLEANUP_FREE char *err = NULL;
    int r;

    opts = config.opts;
    opts.queue = &pool;

    r = blockdev_open(config.file, &opts, &bd, &err);
    if (r < 0 && is_readonly_error(-r)) {
        nbdkit_debug("%s: serving read-only", err ? err : strerror(-r));
        free(err);
        err = NULL;
        opts.readonly = true;
        r = blockdev_open(config.file, &opts, &bd, &err);
    }
    if (r < 0) {
        if (err) {
            nbdkit_error("%s", err);
        } else {
            errno = -r;
            nbdkit_error("cannot open '%s': %m", config.file);
        }
        return -1;
    }
    nbdkit_debug("%s: size %" PRIu64 ", %s%s, logical %u, physical %u",
                 blockdev_path(bd), blockdev_size(bd),
                 blockdev_is_readonly(bd) ? "read-only" : "read-write",
                 blockdev_is_direct(bd) ? ", O_DIRECT" : "",
                 blockdev_logical_block_size(bd),
                 blockdev_physical_block_size(bd));
    return 0;
}

/* Open the BlockDev before nbdkit forks, so that any failure (a missing
 * file, O_DIRECT refused, a bad inject= spec) is reported on the terminal
 * and nbdkit exits non-zero.  Opening may need the pool (block devices are
 * probed with ioctls, which are paio requests), so it runs for the open and
 * is stopped again before returning: threads do not survive the fork.
 * .after_fork starts it for good.
 */
static int
tlbd_get_ready(void)
{
    int r = start_threads(0);

    if (r == 0) {
        r = open_device();
    }
    stop_threads();
    return r;
}

/* Start the pool and the control channel (control=) in the process that
 * serves.  nbdkit calls this without --fork too, before it serves.
 */
static int
tlbd_after_fork(void)
{
    int r = start_threads(config.opts.pool.threads_min);

    if (r == 0) {
        r = blockdev_serve(bd);
        if (r < 0) {
            errno = -r;
            nbdkit_error("cannot start the control channel: %m");
            return -1;
        }
    }
    return r;
}

/* Stop everything, in dependency order: the BlockDev waits for its requests,
 * which need the pool; then the pool stops.  Also
 * reached from .unload when nbdkit exits before .cleanup.
 */
static void
tlbd_cleanup(void)
{
    blockdev_close(bd);
    bd = NULL;
    stop_threads();
}

/* Create the per-connection handle. */
static void *
tlbd_open(int readonly)
{
    TlbdHandle *h;

    (void)readonly; /* nbdkit itself refuses writes under -r */
    h = calloc(1, sizeof(*h));
    if (!h) {
        nbdkit_error("calloc: %m");
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle_cond, NULL);
    return h;
}

/* Free the handle once the connection has no request in flight.  nbdkit
 * calls .close only after the connection's worker threads have returned
 * from every callback, and each callback returns only once its request
 * is finished (blockdev_p* block), so in_flight is already 0; the wait
 * makes that a checked property rather than an assumption.
 */
static void
tlbd_close(void *handle)
{
    TlbdHandle *h = handle;

    tlbd_mutex_lock(&h->lock);
    while (h->in_flight > 0) {
        pthread_cond_wait(&h->idle_cond, &h->lock);
    }
    tlbd_mutex_unlock(&h->lock);
    pthread_cond_destroy(&h->idle_cond);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static void
begin_request(TlbdHandle *h)
{
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&h->lock);
    h->in_flight++;
}

/* Ends a request; returns R unchanged so callers can tail-call it. */
static int
end_request(TlbdHandle *h, int r)
{
    int saved_errno = errno;

    tlbd_mutex_lock(&h->lock);
    if (--h->in_flight == 0) {
        pthread_cond_broadcast(&h->idle_cond);
    }
    tlbd_mutex_unlock(&h->lock);
    errno = saved_errno;
    return r;
}

/* Turn a project result (0/bytes or -errno) into nbdkit's convention:
 * -1 with errno set and one message naming the operation.
 */
static int
check(int64_t r, const char *what, uint64_t offset, uint64_t count)
{
    if (r >= 0) {
        return 0;
    }
    errno = (int)-r;
    nbdkit_error("%s: %s at offset %" PRIu64 ", %" PRIu64 " bytes: %m",
                 blockdev_path(bd), what, offset, count);
    return -1;
}

/* Get the size of the image. */
static int64_t
tlbd_get_size(void *handle)
{
    (void)handle;
    return (int64_t)blockdev_size(bd);
}

static int
tlbd_can_write(void *handle)
{
    (void)handle;
    return !blockdev_is_readonly(bd);
}

/* can_flush, can_trim, can_zero, can_extents and can_multi_conn.
 *  - trim: with discard=ignore, or where the file system cannot punch
 *    holes, it succeeds without freeing space, which NBD allows;
 *  - zero: where no fast method applies, the BlockDev writes zeroes;
 *  - extents: a block device is one data run;
 *  - multi-conn: one device and one fd for every connection, so a flush on
 *    any connection covers the writes completed on all of them.
 */
static int
tlbd_always(void *handle)
{
    (void)handle;
    return 1;
}

/* FUA is done by the BlockDev itself (the write, then fdatasync). */
static int
tlbd_can_fua(void *handle)
{
    (void)handle;
    return NBDKIT_FUA_NATIVE;
}

/* Only where the BlockDev can zero without writing zeroes. */
static int
tlbd_can_fast_zero(void *handle)
{
    (void)handle;
    return blockdev_can_fast_zero(bd);
}

static int
tlbd_can_cache(void *handle)
{
    (void)handle;
    return NBDKIT_CACHE_NATIVE;
}

/* Buffered I/O takes any byte range; with cache=none the BlockDev bounces
 * unaligned requests, but the logical sector is the honest minimum.  A
 * block device advertises its own logical sector (BLKSSZGET) as minimum.
 */
static int
tlbd_block_size(void *handle, uint32_t *minimum, uint32_t *preferred,
                uint32_t *maximum)
{
    unsigned physical = blockdev_physical_block_size(bd);

    (void)handle;
    *minimum = 1;
    if (blockdev_is_direct(bd)) {
        *minimum = blockdev_alignment(bd);
    }
    if (blockdev_is_blockdev(bd)) {
        *minimum = blockdev_logical_block_size(bd);
    }
    *preferred = PREFERRED_BLOCK_SIZE;
    if (physical > *preferred && physical <= MAXIMUM_BLOCK_SIZE) {
        *preferred = physical;
    }
    if (*preferred < *minimum) {
        *preferred = *minimum;
    }
    *maximum = MAXIMUM_BLOCK_SIZE;
    return 0;
}

/* Read data. */
static int
tlbd_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
    TlbdHandle *h = handle;
    int64_t r;

    (void)flags;
    begin_request(h);
    r = blockdev_pread(bd, buf, count, offset);
    if (r >= 0 && r != count) {
        r = -EIO; /* the BlockDev zero-fills past EOF: never short */
    }
    return end_request(h, check(r, "read", offset, count));
}

/* Write data, durably when FUA is set. */
static int
tlbd_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
    TlbdHandle *h = handle;
    unsigned bflags = (flags & NBDKIT_FLAG_FUA) ? BLOCKDEV_FUA : 0;
    int64_t r;

    begin_request(h);
    r = blockdev_pwrite(bd, buf, count, offset, bflags);
    if (r >= 0 && r != count) {
        r = -EIO; /* a short write is an error */
    }
    return end_request(h, check(r, "write", offset, count));
}

/* Flush the device: fdatasync covers every connection's writes. */
static int
tlbd_flush(void *handle, uint32_t flags)
{
    TlbdHandle *h = handle;

    (void)flags;
    begin_request(h);
    return end_request(
        h, check(blockdev_flush(bd), "flush", 0, blockdev_size(bd)));
}

/* Discard.  Where holes cannot be punched the data stays, which NBD
 * allows for trim; any other error reaches the client.
 */
static int
tlbd_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    TlbdHandle *h = handle;
    unsigned bflags = (flags & NBDKIT_FLAG_FUA) ? BLOCKDEV_FUA : 0;
    int r;

    begin_request(h);
    r = blockdev_discard(bd, offset, count, bflags);
    if (r == -EOPNOTSUPP) {
        /* Nothing was written, so there is nothing to make durable. */
        nbdkit_debug("trim: not supported here, ignored");
        r = 0;
    }
    return end_request(h, check(r, "trim", offset, count));
}

/* Write zeroes.  With FAST_ZERO the BlockDev must not fall back to writing
 * buffers of zeroes: it fails with ENOTSUP, which the client sees.  Without
 * it, an ENOTSUP left over makes nbdkit write the zeroes itself.
 */
static int
tlbd_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    TlbdHandle *h = handle;
    unsigned bflags = 0;
    int r;

    if (flags & NBDKIT_FLAG_FUA) {
        bflags |= BLOCKDEV_FUA;
    }
    if (flags & NBDKIT_FLAG_MAY_TRIM) {
        bflags |= BLOCKDEV_MAY_TRIM;
    }
    if (flags & NBDKIT_FLAG_FAST_ZERO) {
        bflags |= BLOCKDEV_NO_FALLBACK;
    }
    begin_request(h);
    r = blockdev_write_zeroes(bd, offset, count, bflags);
    if (r == -EOPNOTSUPP) {
        /* Not an error worth a message: nbdkit falls back, or the client
         * asked to fail fast.
         */
        errno = EOPNOTSUPP;
        return end_request(h, -1);
    }
    return end_request(h, check(r, "zero", offset, count));
}

/* Collects runs from blockdev_extents into nbdkit's list. */
typedef struct ExtentsCtx {
    struct nbdkit_extents *extents;
    bool req_one;
    bool stopped; /* req_one: the first run is in */
} ExtentsCtx;

static int
add_extent(void *opaque, uint64_t offset, uint64_t length, bool hole)
{
    ExtentsCtx *ctx = opaque;
    uint32_t type = hole ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0;

    if (nbdkit_add_extent(ctx->extents, offset, length, type) < 0) {
        return -errno;
    }
    if (ctx->req_one) {
        ctx->stopped = true;
        return -ECANCELED;
    }
    return 0;
}

/* Report data and holes (SEEK_DATA/SEEK_HOLE in the BlockDev). */
static int
tlbd_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
             struct nbdkit_extents *extents)
{
    TlbdHandle *h = handle;
    ExtentsCtx ctx = {
        .extents = extents,
        .req_one = (flags & NBDKIT_FLAG_REQ_ONE) != 0,
        .stopped = false,
    };
    int r;

    begin_request(h);
    r = blockdev_extents(bd, offset, count, add_extent, &ctx);
    if (r == -ECANCELED && ctx.stopped) {
        r = 0;
    }
    return end_request(h, check(r, "extents", offset, count));
}

/* Prefetch into the page cache (posix_fadvise WILLNEED). */
static int
tlbd_cache(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    TlbdHandle *h = handle;

    (void)flags;
    begin_request(h);
    return end_request(
        h, check(blockdev_cache(bd, offset, count), "cache", offset, count));
}

/* clang-format off */
static struct nbdkit_plugin plugin = {
    .name               = "tlbd",
    .longname           = "tlbd threadlet block device plugin",
    .version            = TLBD_VERSION,
    .description        = "Serve a raw image or block device through "
                          "the tlbd threadlet pool",
    .load               = tlbd_load,
    .unload             = tlbd_unload,
    .config             = tlbd_config,
    .config_complete    = tlbd_config_complete,
    .magic_config_key   = "file",
    .dump_plugin        = tlbd_dump_plugin,
    .get_ready          = tlbd_get_ready,
    .after_fork         = tlbd_after_fork,
    .cleanup            = tlbd_cleanup,
    .open               = tlbd_open,
    .close              = tlbd_close,
    .get_size           = tlbd_get_size,
    .block_size         = tlbd_block_size,
    .can_write          = tlbd_can_write,
    .can_flush          = tlbd_always,
    .can_fua            = tlbd_can_fua,
    .can_trim           = tlbd_always,
    .can_zero           = tlbd_always,
    .can_fast_zero      = tlbd_can_fast_zero,
    .can_extents        = tlbd_always,
    .can_cache          = tlbd_can_cache,
    .can_multi_conn     = tlbd_always,
    .pread              = tlbd_pread,
    .pwrite             = tlbd_pwrite,
    .flush              = tlbd_flush,
    .trim               = tlbd_trim,
    .zero               = tlbd_zero,
    .extents            = tlbd_extents,
    .cache              = tlbd_cache,
    .errno_is_preserved = 1,
};
/* clang-format on */

/* Runs when nbdkit loads the plugin, before plugin_init hands nbdkit the
 * table: the help text comes from blockdrv's option table, so a new shared
 * option needs no line here.
 */
__attribute__((constructor)) static void
tlbd_make_help(void)
{
    size_t len = 0;
    FILE *fp = open_memstream(&config_help, &len);

    if (!fp) {
        return;
    }
    fprintf(fp, "%-26s%s\n", "file=<FILENAME>",
            "(required) the raw image or block device");
    fprintf(fp, "%-26s%s\n", "readonly=true|false",
            "open read-only and lock as a reader (use with -r)");
    blockdev_print_options(fp, "");
    if (fclose(fp) != 0) {
        free(config_help);
        config_help = NULL;
        return;
    }
    if (len > 0 && config_help[len - 1] == '\n') {
        config_help[len - 1] = '\0'; /* nbdkit adds the last newline */
    }
    plugin.config_help = config_help;
}

__attribute__((destructor)) static void
tlbd_free_help(void)
{
    free(config_help);
}

NBDKIT_REGISTER_PLUGIN(plugin)
