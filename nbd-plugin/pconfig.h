/* tlbd: the nbdkit plugin's configuration keys.
 *
 * pconfig_set parses one key=value from nbdkit's command line and
 * pconfig_check checks the whole once every key is in.  Both refuse bad
 * input with one message naming the key and the reason, so nbdkit stops
 * before anything is opened.  Nothing here calls nbdkit: the plugin turns
 * the messages into nbdkit_error.
 *
 * Threads: nbdkit's main thread only, before .get_ready.
 */
#ifndef TLBD_PCONFIG_H
#define TLBD_PCONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "blockdev.h"

/* Limits for threads-min and threads-max. */
#define PCONFIG_THREADS_LIMIT 1024
#define PCONFIG_DEFAULT_THREADS_MIN 1
/* Longest idle-timeout: one day. */
#define PCONFIG_IDLE_TIMEOUT_MAX_MS (24u * 3600u * 1000u)

typedef struct PluginConfig {
    char *file; /* absolute path; NULL until file= */
    int threads_min;
    int threads_max; /* 0: threadlet_default_max_threads() */
    bool threads_min_set;
    bool threads_max_set;
    unsigned idle_timeout_ms;
    BlockDevCache cache;
    BlockDevDiscard discard;
    char *inject; /* Can be NULL. */
    uint32_t inline_max; /* BlockDevOptions.inline_max */
    BlockDevOffload offload;
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
 * device, and threads-min <= threads-max.  Returns as pconfig_set.
 */
int pconfig_check(PluginConfig *cfg, char **errmsg);

/* Parse a duration: a number with an optional unit ms, s or m (bare
 * numbers are seconds), into milliseconds.  Returns 0 or -EINVAL with a
 * static reason in *WHY.
 */
int pconfig_parse_duration(const char *str, unsigned *ms, const char **why);

#endif /* TLBD_PCONFIG_H */
