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

void
pconfig_init(PluginConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    blockdev_options_init(&cfg->opts);
    /* nbdkit's threads wait for their request anyway, and nbdkit runs many
     * of them: a hand-off of a copy that cannot wait on a device would buy
     * no parallelism, at any size.  The limit is for event loops. */
    cfg->opts.inline_max = BLOCKDEV_INLINE_MAX_LIMIT;
    /* For the same reason, and because a hand-off costs two thread
     * wake-ups, requests that may wait on a device run there too. */
    cfg->opts.offload = BLOCKDEV_OFFLOAD_NEVER;
}

void
pconfig_free(PluginConfig *cfg)
{
    free(cfg->file);
    cfg->file = NULL;
    for (size_t i = 0; i < cfg->nvalues; i++) {
        free(cfg->values[i]);
    }
    free(cfg->values);
    cfg->values = NULL;
    cfg->nvalues = 0;
    cfg->opts.inject = NULL;
    cfg->opts.powercut = NULL;
    cfg->opts.control = NULL;
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
    char **values;
    char *copy;
    int ret;

    *errmsg = NULL;
    if (strcmp(key, "file") == 0) {
        return set_file(cfg, value, errmsg);
    }
    /* readonly= is the plugin's own: nbdkit -r alone does not tell the
     * plugin before it opens (and locks) the image.
     */
    if (!blockdev_is_shared_option(key) && strcmp(key, "readonly") != 0) {
        return fail(errmsg, -EINVAL,
                    "unknown parameter '%s' (see nbdkit tlbd --help)", key);
    }
    /* inject=, powercut=, control= and log-writes= keep their value: give
     * every key one that outlives nbdkit's. */
    values = realloc(cfg->values, (cfg->nvalues + 1) * sizeof(*values));
    if (values) {
        cfg->values = values;
    }
    copy = values ? strdup(value) : NULL;
    if (!copy) {
        return fail(errmsg, -ENOMEM, "%s: out of memory", key);
    }
    ret = blockdev_parse_option(&cfg->opts, key, copy, errmsg);
    if (ret == 0) {
        cfg->values[cfg->nvalues++] = copy;
    } else {
        free(copy);
    }
    return ret;
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
    return blockdev_check_pool(&cfg->opts.pool, errmsg);
}
