/* tlbd: the nbdkit plugin's configuration keys (see pconfig.h).
 *
 * Threads: nbdkit's main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "parse.h"
#include "pconfig.h"
#include "threadlet.h"

void
pconfig_init(PluginConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->threads_min = PCONFIG_DEFAULT_THREADS_MIN;
    cfg->threads_max = threadlet_default_max_threads();
    cfg->idle_timeout_ms = THREADLET_DEFAULT_IDLE_MS;
    cfg->cache = BLOCKDEV_CACHE_WRITEBACK;
    cfg->discard = BLOCKDEV_DISCARD_UNMAP;
    /* nbdkit's threads wait for their request anyway, and nbdkit runs many
     * of them: a hand-off of a copy that cannot wait on a device would buy
     * no parallelism, at any size.  The limit is for event loops. */
    cfg->inline_max = BLOCKDEV_INLINE_MAX_LIMIT;
    /* For the same reason, and because a hand-off costs two thread
     * wake-ups, requests that may wait on a device run there too. */
    cfg->offload = BLOCKDEV_OFFLOAD_NEVER;
}

void
pconfig_free(PluginConfig *cfg)
{
    free(cfg->file);
    free(cfg->inject);
    cfg->file = NULL;
    cfg->inject = NULL;
}

/* Set *ERRMSG to a formatted message; returns ERR (a -errno). */
__attribute__((format(printf, 3, 4))) static int
fail(char **errmsg, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(errmsg, fmt, ap) < 0) {
        *errmsg = NULL;
    }
    va_end(ap);
    return err;
}

/* A whole decimal number in [MIN, MAX]. */
static int
parse_int(const char *key, const char *value, int min, int max, int *out,
          char **errmsg)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (end == value || *end != '\0' || value[0] == ' ') {
        return fail(errmsg, -EINVAL, "%s=%s: not a whole number", key, value);
    }
    if (errno == ERANGE || v < min || v > max) {
        return fail(errmsg, -EINVAL, "%s=%s: must be between %d and %d", key,
                    value, min, max);
    }
    *out = (int)v;
    return 0;
}

int
pconfig_parse_duration(const char *str, unsigned *ms, const char **why)
{
    char *end = NULL;
    unsigned long long v;
    unsigned long long scale;

    if (str[0] < '0' || str[0] > '9') {
        *why = "not a duration (use e.g. 10s or 500ms)";
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(str, &end, 10);
    if (errno == ERANGE) {
        *why = "too long";
        return -EINVAL;
    }
    if (*end == '\0' || strcmp(end, "s") == 0) {
        scale = 1000;
    } else if (strcmp(end, "ms") == 0) {
        scale = 1;
    } else if (strcmp(end, "m") == 0) {
        scale = 60 * 1000;
    } else {
        *why = "unknown unit (use ms, s or m)";
        return -EINVAL;
    }
    if (v > PCONFIG_IDLE_TIMEOUT_MAX_MS / scale) {
        *why = "too long (at most 24 hours)";
        return -EINVAL;
    }
    if (v == 0) {
        *why = "must be more than zero";
        return -EINVAL;
    }
    *ms = (unsigned)(v * scale);
    return 0;
}

/* FILE made absolute against the current directory, since nbdkit --fork
 * changes directory to /.
 */
static int
set_file(PluginConfig *cfg, const char *value, char **errmsg)
{
    char *path = NULL;

    if (cfg->file) {
        return fail(errmsg, -EINVAL, "file=%s: file= given more than once",
                    value);
    }
    if (value[0] == '\0') {
        return fail(errmsg, -EINVAL, "file=: empty file name");
    }
    if (value[0] == '/') {
        path = strdup(value);
    } else {
        CLEANUP_FREE char *cwd = getcwd(NULL, 0);
        if (!cwd) {
            return fail(errmsg, -errno, "file=%s: getcwd: %s", value,
                        strerror(errno));
        }
        if (asprintf(&path, "%s/%s", cwd, value) < 0) {
            path = NULL;
        }
    }
    if (!path) {
        return fail(errmsg, -ENOMEM, "file=%s: out of memory", value);
    }
    cfg->file = path;
    return 0;
}

int
pconfig_set(PluginConfig *cfg, const char *key, const char *value,
            char **errmsg)
{
    const char *why = NULL;

    *errmsg = NULL;
    if (strcmp(key, "file") == 0) {
        return set_file(cfg, value, errmsg);
    }
    if (strcmp(key, "threads-min") == 0) {
        cfg->threads_min_set = true;
        return parse_int(key, value, 0, PCONFIG_THREADS_LIMIT,
                         &cfg->threads_min, errmsg);
    }
    if (strcmp(key, "threads-max") == 0) {
        cfg->threads_max_set = true;
        return parse_int(key, value, 1, PCONFIG_THREADS_LIMIT,
                         &cfg->threads_max, errmsg);
    }
    if (strcmp(key, "idle-timeout") == 0) {
        if (pconfig_parse_duration(value, &cfg->idle_timeout_ms, &why) < 0) {
            return fail(errmsg, -EINVAL, "idle-timeout=%s: %s", value, why);
        }
        return 0;
    }
    if (strcmp(key, "cache") == 0) {
        if (blockdev_parse_cache(value, &cfg->cache) < 0) {
            return fail(errmsg, -EINVAL,
                        "cache=%s: must be 'writeback' or 'none'", value);
        }
        return 0;
    }
    if (strcmp(key, "discard") == 0) {
        if (blockdev_parse_discard(value, &cfg->discard) < 0) {
            return fail(errmsg, -EINVAL,
                        "discard=%s: must be 'unmap' or 'ignore'", value);
        }
        return 0;
    }
    if (strcmp(key, "inline-max") == 0) {
        uint64_t v;
        if (tlbd_parse_size(value, &v) == -EINVAL) {
            return fail(errmsg, -EINVAL,
                        "inline-max=%s: not a size (use e.g. 64k or 0)",
                        value);
        }
        if (blockdev_parse_inline_max(value, &cfg->inline_max) < 0) {
            return fail(errmsg, -EINVAL, "inline-max=%s: must be at most 32M",
                        value);
        }
        return 0;
    }
    if (strcmp(key, "offload") == 0) {
        if (blockdev_parse_offload(value, &cfg->offload) < 0) {
            return fail(errmsg, -EINVAL,
                        "offload=%s: must be 'never', 'blocking' or 'always'",
                        value);
        }
        return 0;
    }
    if (strcmp(key, "inject") == 0) {
        /* Checked by blockdev_open, in .get_ready, before nbdkit forks. */
        free(cfg->inject);
        cfg->inject = strdup(value);
        if (!cfg->inject) {
            return fail(errmsg, -ENOMEM, "inject=: out of memory");
        }
        return 0;
    }
    return fail(errmsg, -EINVAL,
                "unknown parameter '%s' (see nbdkit tlbd --help)", key);
}

int
pconfig_check(PluginConfig *cfg, char **errmsg)
{
    struct stat st;

    *errmsg = NULL;
    if (!cfg->file) {
        return fail(errmsg, -EINVAL,
                    "you must supply the file=<FILENAME> parameter after "
                    "the plugin name on the command line");
    }
    if (stat(cfg->file, &st) < 0) {
        return fail(errmsg, -errno, "file '%s': %s", cfg->file,
                    strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        return fail(errmsg, -EISDIR,
                    "file '%s': is a directory; need a regular file or a "
                    "block device",
                    cfg->file);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        return fail(errmsg, -EINVAL,
                    "file '%s': not a regular file or a block device",
                    cfg->file);
    }
    if (cfg->threads_min > cfg->threads_max) {
        return fail(errmsg, -EINVAL,
                    "threads-min=%d is more than threads-max=%d%s",
                    cfg->threads_min, cfg->threads_max,
                    cfg->threads_max_set ? "" : " (the default)");
    }
    return 0;
}
