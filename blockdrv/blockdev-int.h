/* tlbd: the BlockDev structure, shared by blockdev.c (open, close, getters) and
 * blockdev-io.c (the aio and blocking entry points).  Nothing else includes it.
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
    char *warning;         /* Can be NULL. */
    struct Vcache *vcache; /* volatile-cache (vcache.c); Can be NULL. */

    /* atomic */
    _Atomic uint64_t marks; /* marks placed (blockdev_mark) */
};

#endif /* TLBD_BLOCKDEV_INT_H */
