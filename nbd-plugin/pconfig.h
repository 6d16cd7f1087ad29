/* tlbd: the nbdkit plugin's configuration keys.
 *
 * pconfig_set parses one key=value from nbdkit's command line and
 * pconfig_check checks the whole once every key is in.  Both refuse bad
 * input with one message naming the key and the reason, so nbdkit stops
 * before anything is opened.  Apart from file=, every key is a BlockDev
 * option, parsed by blockdev_parse_option as `tlbd fuse`, `tlbd nbd` and
 * `tlbd bench` parse theirs.  Nothing here calls nbdkit: the plugin turns
 * the messages into nbdkit_error.
 *
 * Threads: nbdkit's main thread only, before .get_ready.
 */
#ifndef TLBD_PCONFIG_H
#define TLBD_PCONFIG_H

#include "blockdev.h"

typedef struct PluginConfig {
    char *file;           /* absolute path; NULL until file= */
    BlockDevOptions opts; /* every other key; the pool's in opts.pool */
    char **values;        /* copies of every accepted value, which outlive
                             nbdkit's: opts' strings (inject, powercut,
                             control, log_writes) point into them */
    size_t nvalues;
} PluginConfig;

/* Fill in the defaults. */
void pconfig_init(PluginConfig *cfg);
void pconfig_free(PluginConfig *cfg);

/* Apply KEY=VALUE.  Returns 0, or -EINVAL / -ENOMEM with *ERRMSG set to a
 * malloc'd message (NULL if even that could not be allocated).
 */
int pconfig_set(PluginConfig *cfg, const char *key, const char *value,
                char **errmsg);

/* After the last key: file= is given and is a regular file or a block
 * device, and the pool's options agree (blockdev_check_pool).  Returns as
 * pconfig_set.
 */
int pconfig_check(PluginConfig *cfg, char **errmsg);

#endif /* TLBD_PCONFIG_H */
