/* tlbd: BlockDev, opening and describing a raw image or block device.
 *
 * blockdev_open validates every option before it opens anything, opens the
 * path read-only or read-write (never creating or truncating it), learns
 * the size and block sizes, and wraps the descriptor in a PaioDev.  The
 * block device ioctls (BLKGETSIZE64, BLKSSZGET, BLKPBSZGET, BLKROGET) are
 * paio ioctl requests like any other, run by paio_run: on the pool (the
 * opening thread waits on a semaphore the worker posts, since no IOThread
 * is attached yet), or with offload=never on the opening thread itself.
 * Only the O_DIRECT alignment probe (a few preads of the first block)
 * always runs in the opening thread.  The data path is in
 * blockdev-io.c.
 *
 * Threads: blockdev_open and blockdev_close run in the caller's thread; the
 * getters may be called from any thread.  A BlockDev's fields are fixed
 * after open except what its PaioDev keeps (atomics and its own locks).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "imglock.h"
#include "paio-inject.h"
#include "parse.h"
#include "vcache.h"
#include "blockdev-int.h"

void
blockdev_options_init(BlockDevOptions *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->cache = BLOCKDEV_CACHE_WRITEBACK;
    opts->discard = BLOCKDEV_DISCARD_UNMAP;
    opts->inline_max = BLOCKDEV_INLINE_MAX_DEFAULT;
    opts->pool.threads_min = 1;
    opts->pool.idle_timeout_ms = THREADLET_DEFAULT_IDLE_MS;
}

int
blockdev_parse_cache(const char *str, BlockDevCache *cache)
{
    if (str && strcmp(str, "writeback") == 0) {
        *cache = BLOCKDEV_CACHE_WRITEBACK;
    } else if (str && strcmp(str, "none") == 0) {
        *cache = BLOCKDEV_CACHE_NONE;
    } else {
        return -EINVAL;
    }
    return 0;
}

int
blockdev_parse_discard(const char *str, BlockDevDiscard *discard)
{
    if (str && strcmp(str, "unmap") == 0) {
        *discard = BLOCKDEV_DISCARD_UNMAP;
    } else if (str && strcmp(str, "ignore") == 0) {
        *discard = BLOCKDEV_DISCARD_IGNORE;
    } else {
        return -EINVAL;
    }
    return 0;
}

int
blockdev_parse_offload(const char *str, BlockDevOffload *offload)
{
    static const char *const names[] = {
        [BLOCKDEV_OFFLOAD_BLOCKING] = "blocking",
        [BLOCKDEV_OFFLOAD_NEVER] = "never",
        [BLOCKDEV_OFFLOAD_ALWAYS] = "always",
    };

    for (size_t i = 0; str && i < TLBD_ARRAY_SIZE(names); i++) {
        if (strcmp(str, names[i]) == 0) {
            *offload = (BlockDevOffload)i;
            return 0;
        }
    }
    return -EINVAL;
}

int
blockdev_fail(char **errmsg, int err, const char *fmt, ...)
{
    va_list ap;

    if (errmsg) {
        va_start(ap, fmt);
        if (vasprintf(errmsg, fmt, ap) < 0) {
            *errmsg = NULL;
        }
        va_end(ap);
    }
    return err;
}

static int
parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "1", "true", "on", "yes" };
    static const char *const no[] = { "0", "false", "off", "no" };

    for (size_t i = 0; s && i < TLBD_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int
blockdev_parse_inline_max(const char *str, uint32_t *out)
{
    uint64_t v;

    if (!str || tlbd_parse_size(str, &v) < 0 || v > BLOCKDEV_INLINE_MAX_LIMIT) {
        return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

/* A whole number in [MIN, BLOCKDEV_THREADS_LIMIT]. */
static int
parse_threads(const char *str, uint64_t min, int *out)
{
    uint64_t v;

    if (!str || tlbd_parse_uint(str, BLOCKDEV_THREADS_LIMIT, &v) < 0 ||
        v < min) {
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

/* One parser per option: 0, or -EINVAL (the row's reason says why unless
 * the parser set *ERRMSG itself).
 */
static int
set_readonly(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return parse_bool(value, &opts->readonly);
}

static int
set_growable(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return parse_bool(value, &opts->growable);
}

static int
set_cache(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return blockdev_parse_cache(value, &opts->cache);
}

static int
set_discard(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return blockdev_parse_discard(value, &opts->discard);
}

static int
set_inline_max(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return blockdev_parse_inline_max(value, &opts->inline_max);
}

static int
set_offload(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return blockdev_parse_offload(value, &opts->offload);
}

static int
set_inject(BlockDevOptions *opts, const char *value, char **errmsg)
{
    PaioInject *inj = NULL;
    int ret = paio_inject_parse(value ? value : "", &inj, errmsg);

    if (ret < 0) {
        return ret;
    }
    paio_inject_free(inj);
    opts->inject = value;
    return 0;
}

static int
set_threads_min(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return parse_threads(value, 0, &opts->pool.threads_min);
}

static int
set_threads_max(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    return parse_threads(value, 1, &opts->pool.threads_max);
}

static int
set_idle_timeout(BlockDevOptions *opts, const char *value, char **errmsg)
{
    uint64_t ns;

    (void)errmsg;
    if (!value || tlbd_parse_duration(value, &ns) < 0 ||
        ns / 1000000u > BLOCKDEV_IDLE_TIMEOUT_MAX_MS) {
        return -EINVAL;
    }
    opts->pool.idle_timeout_ms = (unsigned)(ns / 1000000u);
    return 0;
}

/* A size from 1 byte to the physical memory. */
static int
set_volatile_cache(BlockDevOptions *opts, const char *value, char **errmsg)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    uint64_t v;

    (void)errmsg;
    if (!value || tlbd_parse_size(value, &v) < 0 || v == 0 ||
        (pages > 0 && page > 0 && v > (uint64_t)pages * (uint64_t)page)) {
        return -EINVAL;
    }
    opts->volatile_cache = v;
    return 0;
}

static int
set_force_share(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    if (!value) { /* --force-share alone */
        opts->force_share = true;
        return 0;
    }
    return parse_bool(value, &opts->force_share);
}

static int
set_enospc(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    if (value && strcmp(value, "error") == 0) {
        opts->enospc_wait = false;
    } else if (value && strcmp(value, "wait") == 0) {
        opts->enospc_wait = true;
    } else {
        return -EINVAL;
    }
    return 0;
}

static int
set_powercut(BlockDevOptions *opts, const char *value, char **errmsg)
{
    PowercutRule rule;
    int ret = powercut_parse(value ? value : "", &rule, errmsg);

    if (ret == 0) {
        opts->powercut = value;
    }
    return ret;
}

static int
set_log_writes(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    if (!value || !*value) {
        return -EINVAL;
    }
    opts->log_writes = value;
    return 0;
}

static int
set_control(BlockDevOptions *opts, const char *value, char **errmsg)
{
    (void)errmsg;
    if (!ctl_path_ok(value)) {
        return -EINVAL;
    }
    opts->control = value;
    return 0;
}

#define STR(x)  #x
#define XSTR(x) STR(x)

/* Every option, in the order of the front ends' help.  A new option is
 * one row here: the plugin and every subcommand take it from this table.
 * SHARED rows are the front ends'; the others only blockdev_parse_option's.
 */
static const struct {
    const char *key;
    int (*set)(BlockDevOptions *opts, const char *value, char **errmsg);
    const char *reason; /* "KEY: 'VALUE' REASON" */
    bool shared;
    const char *arg; /* --KEY=ARG in help */
    const char *help;
} options[] = {
    { "cache", set_cache, "is not one of writeback, none", true,
      "writeback|none", "image side: page cache, or O_DIRECT" },
    { "discard", set_discard, "is not one of unmap, ignore", true,
      "unmap|ignore", "what discard does: punch holes, or nothing" },
    { "offload", set_offload, "is not one of blocking, never, always", true,
      "MODE", "which requests the pool runs: blocking, never, always" },
    { "inline-max", set_inline_max, "is not a size of at most 32M", true,
      "SIZE", "largest read or write run on the calling thread" },
    { "inject", set_inject, "is not an injection spec", true, "SPEC",
      "fault and latency injection, see paio(3)" },
    { "threads-min", set_threads_min,
      "is not a number from 0 to " XSTR(BLOCKDEV_THREADS_LIMIT), true, "N",
      "threadlet workers kept warm" },
    { "threads-max", set_threads_max,
      "is not a number from 1 to " XSTR(BLOCKDEV_THREADS_LIMIT), true, "N",
      "threadlet workers at most" },
    { "idle-timeout", set_idle_timeout,
      "is not a duration of at most 24h (such as 0, 500ms, 10s, 2m)", true,
      "TIME", "idle workers above the minimum leave after TIME" },
    { "volatile-cache", set_volatile_cache,
      "is not a size from 1 byte to the physical memory", true, "SIZE",
      "a disk's volatile write cache of SIZE bytes, see paio(3)" },
    { "powercut", set_powercut, "is not a power-cut rule", true, "RULE",
      "cut the power on a trigger, see paio(3)" },
    { "log-writes", set_log_writes, "is not a file name", true, "FILE",
      "log the writes as dm-log-writes does, see paio(3)" },
    { "control", set_control,
      "is not a socket path of 1 to " XSTR(CTL_PATH_MAX) " bytes", true, "PATH",
      "serve `tlbd ctl` on the Unix socket PATH, see tlbd(1)" },
    { "force-share", set_force_share,
      "is not a boolean (true, false, on, off, yes, no, 1, 0)", true,
      "[=on|off]", "skip the image lock check and share everything (risky)" },
    { "enospc", set_enospc, "is not one of error, wait", true, "error|wait",
      "a write finding the host disk full: fails, or waits for space" },
    { "readonly", set_readonly,
      "is not a boolean (true, false, on, off, yes, no, 1, 0)", false, NULL,
      NULL },
    { "growable", set_growable,
      "is not a boolean (true, false, on, off, yes, no, 1, 0)", false, NULL,
      NULL },
};

int
blockdev_parse_option(BlockDevOptions *opts, const char *key, const char *value,
                      char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(options); i++) {
        if (strcmp(key, options[i].key) == 0) {
            int ret = options[i].set(opts, value, errmsg);
            if (ret < 0 && (!errmsg || !*errmsg)) {
                return blockdev_fail(errmsg, ret, "%s: '%s' %s", key,
                                     value ? value : "", options[i].reason);
            }
            return ret;
        }
    }
    return -ENOENT;
}

const char *
blockdev_shared_option(size_t i, const char **arg, const char **help)
{
    size_t n = 0;

    for (size_t j = 0; j < TLBD_ARRAY_SIZE(options); j++) {
        if (options[j].shared && n++ == i) {
            if (arg) {
                *arg = options[j].arg;
            }
            if (help) {
                *help = options[j].help;
            }
            return options[j].key;
        }
    }
    return NULL;
}

void
blockdev_print_options(FILE *fp, const char *lead)
{
    const char *key;
    const char *arg;
    const char *help;

    for (size_t i = 0; (key = blockdev_shared_option(i, &arg, &help)); i++) {
        /* An optional value ("[=on|off]") brings its own '='. */
        int n =
            fprintf(fp, "%s%s%s%s", lead, key, arg[0] == '[' ? "" : "=", arg);
        if (n >= 26) {
            fputc('\n', fp);
            n = 0;
        }
        fprintf(fp, "%*s%s\n", 26 - n, "", help);
    }
}

bool
blockdev_is_shared_option(const char *key)
{
    const char *k;

    for (size_t i = 0; (k = blockdev_shared_option(i, NULL, NULL)); i++) {
        if (strcmp(k, key) == 0) {
            return true;
        }
    }
    return false;
}

int
blockdev_check_pool(BlockDevPoolOptions *pool, char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    if (pool->threads_max == 0) {
        pool->threads_max = threadlet_default_max_threads();
        if (pool->threads_max < pool->threads_min) {
            pool->threads_max = pool->threads_min;
        }
    }
    if (pool->threads_min > pool->threads_max) {
        return blockdev_fail(errmsg, -EINVAL,
                             "threads-min: %d is more than threads-max (%d)",
                             pool->threads_min, pool->threads_max);
    }
    return 0;
}

/* Everything about OPTS that can be wrong without looking at the disk. */
static int
check_options(const char *path, const BlockDevOptions *opts, char **errmsg)
{
    PaioInject *inj = NULL;
    int ret;

    if (!path || !*path) {
        return blockdev_fail(errmsg, -EINVAL, "no image path given");
    }
    if ((unsigned)opts->cache > BLOCKDEV_CACHE_NONE) {
        return blockdev_fail(errmsg, -EINVAL,
                             "cache: %d is not one of writeback, "
                             "none",
                             (int)opts->cache);
    }
    if ((unsigned)opts->discard > BLOCKDEV_DISCARD_IGNORE) {
        return blockdev_fail(errmsg, -EINVAL,
                             "discard: %d is not one of unmap, "
                             "ignore",
                             (int)opts->discard);
    }
    ret = paio_inject_parse(opts->inject, &inj, errmsg);
    paio_inject_free(inj);
    if (ret < 0) {
        return ret;
    }
    if (opts->powercut) {
        PowercutRule rule;
        ret = powercut_parse(opts->powercut, &rule, errmsg);
        if (ret < 0) {
            return ret;
        }
        if (!opts->volatile_cache) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "powercut: '%s' needs a "
                                 "volatile-cache=SIZE",
                                 opts->powercut);
        }
    }
    if (opts->log_writes && !opts->volatile_cache) {
        return blockdev_fail(errmsg, -EINVAL,
                             "log-writes: '%s' needs a volatile-cache=SIZE",
                             opts->log_writes);
    }
    if (opts->control && !ctl_path_ok(opts->control)) {
        return blockdev_fail(errmsg, -EINVAL,
                             "control: '%s' is not a socket path of 1 to %d "
                             "bytes",
                             opts->control, CTL_PATH_MAX);
    }
    if (opts->volatile_cache && opts->growable) {
        return blockdev_fail(errmsg, -EINVAL,
                             "volatile-cache: a growable image "
                             "cannot have a volatile cache");
    }
    return 0;
}

/* Open PATH; with cache=none fall back to writeback where O_DIRECT is
 * refused (noting it in bd->warning).
 */
static int
open_path(BlockDev *bd, const BlockDevOptions *opts, char **errmsg)
{
    int flags = (opts->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    int fd;

    if (opts->cache == BLOCKDEV_CACHE_NONE) {
        fd = open(bd->path, flags | O_DIRECT);
        if (fd >= 0) {
            bd->direct = true;
            return fd;
        }
        if (errno != EINVAL) {
            goto failed;
        }
        if (asprintf(&bd->warning,
                     "'%s': the file system refuses O_DIRECT; "
                     "cache=none falls back to writeback",
                     bd->path) < 0) {
            bd->warning = NULL;
        }
    }
    fd = open(bd->path, flags);
    if (fd >= 0) {
        return fd;
    }
failed:
    if (errno == EISDIR) {
        return blockdev_fail(errmsg, -EISDIR, "'%s': is a directory", bd->path);
    }
    if (!opts->readonly && (errno == EROFS || errno == EACCES ||
                            errno == EPERM || errno == ETXTBSY)) {
        int err = errno;
        return blockdev_fail(errmsg, -err,
                             "cannot open '%s' for writing: %s "
                             "(readonly=true opens it read-only)",
                             bd->path, strerror(err));
    }
    return blockdev_fail(errmsg, -errno, "cannot open '%s': %s", bd->path,
                         strerror(errno));
}

/* The smallest request alignment O_DIRECT accepts on FD (512..4096). */
static unsigned
probe_alignment(int fd, uint64_t size)
{
    void *buf = NULL;
    unsigned align = 4096;

    if (size < 4096 || posix_memalign(&buf, 4096, 4096) != 0) {
        return align; /* too little to probe: the safe choice */
    }
    for (unsigned a = 512; a <= 4096; a *= 2) {
        if (pread(fd, buf, a, 0) == (ssize_t)a) {
            align = a;
            break;
        }
    }
    free(buf);
    return align;
}

/* A read-only block device (BLKROGET) opens with O_RDWR, but every write
 * would fail with EPERM: refuse it up front unless readonly was asked for.
 */
static int
check_readonly(BlockDev *bd, char **errmsg)
{
    int ro = 0;
    int64_t ret = blockdev_ioctl(bd, BLKROGET, &ro);

    if (ret < 0) {
        return blockdev_fail(errmsg, (int)ret, "'%s': BLKROGET: %s", bd->path,
                             strerror((int)-ret));
    }
    if (ro && !bd->readonly) {
        return blockdev_fail(
            errmsg, -EROFS,
            "cannot open '%s' for writing: the "
            "device is read-only (readonly=true opens it read-only)",
            bd->path);
    }
    return 0;
}

/* Lock the image in QEMU's scheme (imglock.h): a writable BlockDev holds
 * consistent read, write and resize and shares neither write nor resize; a
 * read-only one holds consistent read and does not share write, as QEMU's
 * read-only guest disks do.  force-share shares everything and checks
 * nothing.  A file system without OFD locks gets one warning per process.
 */
static int
lock_image(BlockDev *bd, const BlockDevOptions *opts, char **errmsg)
{
    static atomic_bool warned;
    unsigned held = IMGLOCK_CONSISTENT_READ;
    unsigned unshared = IMGLOCK_WRITE;
    const char *what = NULL;
    int ret;

    if (!opts->readonly) {
        held |= IMGLOCK_WRITE | IMGLOCK_RESIZE;
        unshared |= IMGLOCK_RESIZE;
    }
    if (opts->force_share) {
        unshared = 0;
    }
    ret = imglock_acquire(bd->fd, held, unshared, opts->force_share, &what);
    if (ret == 1) {
        if (!atomic_exchange(&warned, true)) {
            fprintf(stderr,
                    "tlbd: warning: '%s': the file system does not "
                    "support OFD locks; the image is not locked\n",
                    bd->path);
        }
        return 0;
    }
    if (ret == -EBUSY) {
        return blockdev_fail(errmsg, ret,
                             "'%s' is in use by %s (locks held by another "
                             "process; use --force-share or force-share=on to "
                             "override)",
                             bd->path, what);
    }
    if (ret < 0) {
        return blockdev_fail(errmsg, ret, "'%s': cannot lock the image: %s",
                             bd->path, strerror(-ret));
    }
    return 0;
}

/* Learn size and block sizes.  Block devices ask through the pool. */
static int
probe_geometry(BlockDev *bd, const struct stat *st, char **errmsg)
{
    uint64_t size = (uint64_t)st->st_size;

    if (bd->is_blockdev) {
        int lbs = 0;
        unsigned int pbs = 0;
        int64_t ret = blockdev_ioctl(bd, BLKGETSIZE64, &size);
        if (ret < 0) {
            return blockdev_fail(errmsg, (int)ret, "'%s': BLKGETSIZE64: %s",
                                 bd->path, strerror((int)-ret));
        }
        if (blockdev_ioctl(bd, BLKSSZGET, &lbs) < 0 || lbs <= 0) {
            lbs = 512;
        }
        if (blockdev_ioctl(bd, BLKPBSZGET, &pbs) < 0 || pbs == 0) {
            pbs = (unsigned)lbs;
        }
        bd->logical_bs = (unsigned)lbs;
        bd->physical_bs = pbs;
        bd->alignment = bd->direct ? (unsigned)lbs : 1;
        ret = check_readonly(bd, errmsg);
        if (ret < 0) {
            return (int)ret;
        }
    } else {
        bd->alignment = bd->direct ? probe_alignment(bd->fd, size) : 1;
        bd->logical_bs = bd->direct ? bd->alignment : 512;
        bd->physical_bs = st->st_blksize > (blksize_t)bd->logical_bs
                              ? (unsigned)st->st_blksize
                              : bd->logical_bs;
    }
    paio_dev_set_geometry(bd->dev, size, bd->alignment, bd->logical_bs);
    return 0;
}

/* Create the write log PATH, which must not be the image (ST). */
static int
open_log(const char *path, const struct stat *image, Wlog **log, char **errmsg)
{
    struct stat st;

    if (stat(path, &st) == 0 && st.st_dev == image->st_dev &&
        st.st_ino == image->st_ino) {
        return blockdev_fail(errmsg, -EINVAL, "log-writes: '%s' is the image",
                             path);
    }
    return wlog_create(path, log, errmsg);
}

int
blockdev_open(const char *path, const BlockDevOptions *opts_in, BlockDev **out,
              char **errmsg)
{
    BlockDevOptions defaults;
    const BlockDevOptions *opts = opts_in;
    PaioDevConfig cfg;
    struct stat st;
    BlockDev *bd;
    int ret;

    *out = NULL;
    if (errmsg) {
        *errmsg = NULL;
    }
    if (!opts) {
        blockdev_options_init(&defaults);
        opts = &defaults;
    }
    ret = check_options(path, opts, errmsg);
    if (ret < 0) {
        return ret;
    }
    bd = calloc(1, sizeof(*bd));
    if (!bd || !(bd->path = strdup(path))) {
        free(bd);
        return blockdev_fail(errmsg, -ENOMEM, "'%s': out of memory", path);
    }
    bd->readonly = opts->readonly;
    bd->discard_ignore = opts->discard == BLOCKDEV_DISCARD_IGNORE;
    bd->fd = open_path(bd, opts, errmsg);
    if (bd->fd < 0) {
        ret = bd->fd;
        goto out_free;
    }
    if (fstat(bd->fd, &st) < 0) {
        ret = blockdev_fail(errmsg, -errno, "'%s': %s", path, strerror(errno));
        goto out_close;
    }
    if (S_ISDIR(st.st_mode)) {
        ret = blockdev_fail(errmsg, -EISDIR, "'%s': is a directory", path);
        goto out_close;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        ret = blockdev_fail(errmsg, -EINVAL,
                            "'%s': not a regular file or block "
                            "device",
                            path);
        goto out_close;
    }
    bd->is_blockdev = S_ISBLK(st.st_mode);
    ret = lock_image(bd, opts, errmsg);
    if (ret < 0) {
        goto out_close;
    }

    memset(&cfg, 0, sizeof(cfg));
    cfg.fd = bd->fd;
    cfg.is_blockdev = bd->is_blockdev;
    cfg.readonly = opts->readonly;
    cfg.growable = opts->growable;
    cfg.discard_ignore = bd->discard_ignore;
    cfg.direct = bd->direct;
    cfg.size = bd->is_blockdev ? 0 : (uint64_t)st.st_size;
    cfg.queue = opts->queue;
    cfg.inline_max =
        opts->offload == BLOCKDEV_OFFLOAD_ALWAYS ? 0 : opts->inline_max;
    cfg.caller_runs = opts->offload == BLOCKDEV_OFFLOAD_NEVER;
    cfg.enospc_wait = opts->enospc_wait;
    cfg.name = path;
    ret = paio_dev_new(&cfg, &bd->dev);
    if (ret < 0) {
        blockdev_fail(errmsg, ret, "'%s': %s", path, strerror(-ret));
        goto out_close;
    }
    ret = probe_geometry(bd, &st, errmsg);
    if (ret < 0) {
        goto out_dev;
    }
    if (blockdev_size(bd) == 0 && !(opts->growable && !bd->is_blockdev)) {
        ret = blockdev_fail(errmsg, -EINVAL, "'%s': image is empty (0 bytes)",
                            path);
        goto out_dev;
    }
    ret = paio_dev_set_inject(bd->dev, opts->inject, errmsg);
    if (ret < 0) {
        goto out_dev;
    }
    if (opts->volatile_cache) {
        PowercutRule rule;
        bool has_rule =
            opts->powercut && powercut_parse(opts->powercut, &rule, NULL) == 0;
        Wlog *log = NULL;
        if (opts->log_writes) {
            ret = open_log(opts->log_writes, &st, &log, errmsg);
            if (ret < 0) {
                goto out_dev;
            }
        }
        ret = vcache_new(bd->dev, opts->volatile_cache, has_rule ? &rule : NULL,
                         log, &bd->vcache);
        if (ret < 0) {
            blockdev_fail(errmsg, ret, "'%s': %s", path, strerror(-ret));
            goto out_dev;
        }
        bd->volatile_cache = opts->volatile_cache;
    }
    if (opts->control) {
        ret = ctl_open(bd, opts->control, &bd->ctl, errmsg);
        if (ret < 0) {
            goto out_vcache;
        }
    }
    /* Only now: the probes above must not wait for a loop that may not
     * run yet.
     */
    bd->iothread = opts->iothread;
    if (bd->warning) {
        fprintf(stderr, "tlbd: warning: %s\n", bd->warning);
    }
    *out = bd;
    return 0;

out_vcache:
    vcache_free(bd->vcache);
out_dev:
    paio_dev_free(bd->dev);
out_close:
    close(bd->fd);
out_free:
    free(bd->warning);
    free(bd->path);
    free(bd);
    return ret;
}

void
blockdev_close(BlockDev *bd)
{
    int ret;

    if (!bd) {
        return;
    }
    /* No command may start a request from now on. */
    ctl_close(bd->ctl);
    /* An orderly shutdown writes the volatile set back. */
    paio_dev_drain(bd->dev);
    ret = vcache_free(bd->vcache);
    if (ret < 0) {
        fprintf(stderr, "tlbd: '%s': writing the volatile cache back: %s\n",
                bd->path, strerror(-ret));
    }
    paio_dev_free(bd->dev);
    close(bd->fd);
    free(bd->warning);
    free(bd->path);
    free(bd);
}

const char *
blockdev_path(const BlockDev *bd)
{
    return bd->path;
}

int
blockdev_fd(const BlockDev *bd)
{
    return bd->fd;
}

uint64_t
blockdev_size(const BlockDev *bd)
{
    return paio_dev_size(bd->dev);
}

bool
blockdev_is_readonly(const BlockDev *bd)
{
    return bd->readonly;
}

bool
blockdev_is_blockdev(const BlockDev *bd)
{
    return bd->is_blockdev;
}

bool
blockdev_is_direct(const BlockDev *bd)
{
    return bd->direct;
}

unsigned
blockdev_logical_block_size(const BlockDev *bd)
{
    return bd->logical_bs;
}

unsigned
blockdev_physical_block_size(const BlockDev *bd)
{
    return bd->physical_bs;
}

unsigned
blockdev_alignment(const BlockDev *bd)
{
    return bd->alignment;
}

bool
blockdev_can_discard(const BlockDev *bd)
{
    return !bd->readonly && !bd->discard_ignore &&
           (paio_dev_caps(bd->dev) & PAIO_CAP_DISCARD);
}

bool
blockdev_can_fast_zero(const BlockDev *bd)
{
    unsigned caps = paio_dev_caps(bd->dev);

    if (bd->readonly) {
        return false;
    }
    if (bd->is_blockdev) {
        return caps & PAIO_CAP_DISCARD;
    }
    return caps & (PAIO_CAP_ZERO_RANGE | PAIO_CAP_PUNCH_ZERO);
}

const char *
blockdev_warning(const BlockDev *bd)
{
    return bd->warning;
}

void
blockdev_get_stats(BlockDev *bd, BlockDevStats *stats)
{
    PaioStats st;

    paio_dev_get_stats(bd->dev, &st);
    stats->reads = st.ops[PAIO_READ];
    stats->writes = st.ops[PAIO_WRITE];
    stats->flushes = st.ops[PAIO_FLUSH];
    stats->discards = st.ops[PAIO_DISCARD];
    stats->zeroes = st.ops[PAIO_WRITE_ZEROES];
    stats->ioctls = st.ops[PAIO_IOCTL];
    stats->bytes_read = st.bytes_read;
    stats->bytes_written = st.bytes_written;
    stats->errors = st.errors;
    stats->in_flight = st.in_flight;
    stats->inline_ops = st.inline_ops;
    stats->cancelled = st.cancelled;
    stats->interrupted = st.interrupted;
    stats->enospc_episodes = st.enospc_episodes;
    stats->enospc_waits = st.enospc_waits;
    stats->enospc_pending = st.enospc_pending;
    stats->marks = atomic_load(&bd->marks);
    stats->volatile_cache = bd->volatile_cache;
    if (bd->vcache) {
        VcacheStats vs;
        vcache_get_stats(bd->vcache, &vs);
        stats->volatile_bytes = vs.volatile_bytes;
        stats->volatile_writes = vs.volatile_writes;
        stats->cache_writes = vs.writes;
        stats->epoch = vs.epoch;
        stats->destaged = vs.destaged;
        stats->dead = vs.dead;
    } else {
        stats->volatile_bytes = stats->volatile_writes = 0;
        stats->cache_writes = stats->epoch = stats->destaged = 0;
        stats->dead = false;
    }
}

bool
blockdev_is_mark_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > BLOCKDEV_MARK_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (name[i] <= ' ' || name[i] > '~') {
            return false;
        }
    }
    return true;
}

int
blockdev_mark(BlockDev *bd, const char *name)
{
    int ret;

    if (!blockdev_is_mark_name(name)) {
        return -EINVAL;
    }
    ret = vcache_mark(bd->vcache, name);
    if (ret == 0) {
        atomic_fetch_add(&bd->marks, 1);
    }
    return ret;
}

int
blockdev_set_inject(BlockDev *bd, const char *spec, char **errmsg)
{
    return paio_dev_set_inject(bd->dev, spec, errmsg);
}
