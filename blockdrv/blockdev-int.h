/* tlbd: the BlockDev structure, shared by blockdev.c (open, close, getters),
 * blockdev-io.c (the aio and blocking entry points) and ctl.c (the control
 * channel).  Nothing else includes it.
 */
#ifndef TLBD_BLOCKDEV_INT_H
#define TLBD_BLOCKDEV_INT_H

#include <stdatomic.h>

#include "paio.h"
#include "blockdev.h"

struct BlockDev {
    /* read-only after blockdev_open; what changes while it runs (size,
     * capabilities, latched flush error, statistics, injection) lives in
     * dev, behind paio.h's accessors */
    char *path;
    int fd;
    PaioDev *dev;
    IOThread *iothread; /* Can be NULL. */
    bool readonly;
    bool discard_ignore; /* discard=ignore */
    bool is_blockdev;
    bool direct;
    unsigned logical_bs;
    unsigned physical_bs;
    unsigned alignment;
    char *warning;           /* Can be NULL. */
    struct Vcache *vcache;   /* volatile-cache (vcache.c); Can be NULL. */
    uint64_t volatile_cache; /* its SIZE */
    struct Ctl *ctl;         /* control= (ctl.c); Can be NULL. */

    /* written before blockdev_serve, read by the ctl thread */
    BlockDevStatsHook *stats_hook; /* Can be NULL. */
    void *stats_opaque;

    /* atomic */
    _Atomic uint64_t marks; /* marks placed (blockdev_mark) */
};

/* Set *ERRMSG (if not NULL) to a formatted message; return ERR. */
int blockdev_fail(char **errmsg, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* TLBD_BLOCKDEV_INT_H */
