/* tlbd: enospc=wait, a host disk that fills up (paio-int.h).
 *
 * A write or write-zeroes that fails with ENOSPC or EDQUOT is not
 * reported: its worker sleeps with a backoff (10 ms, doubling to 1 s) and
 * runs the handler again until it succeeds or fails otherwise, as QEMU's
 * werror=stop does for a guest, but without stopping reads.  Writing the
 * same data at the same place again is harmless, so the handler may be
 * rerun from scratch.  Writes that come meanwhile try once and, failing
 * too, wait the same way.  A flush waits until no write waits: it must
 * not report durable what the disk has not taken yet.  A client that
 * gives up on a waiting write (paio_interrupt, a FUSE INTERRUPT) gets
 * -EINTR for it.  The first write to
 * wait starts an episode: one line on stderr, counted in the statistics;
 * the episode ends when no write waits any more.
 *
 * Threads: the worker that runs the request (or the caller, with
 * offload=never).  A waiting write holds its worker; reads run on the
 * others, or inline where paio_try_inline takes them.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "paio-int.h"

#define BACKOFF_MIN_NS (10u * 1000 * 1000)
#define BACKOFF_MAX_NS (1000u * 1000 * 1000)

/* REQ starts waiting for space after failing with ERR. */
static void
wait_begin(PaioDev *dev, int64_t err)
{
    bool first;

    tlbd_mutex_lock(&dev->enospc_lock);
    first = dev->enospc_pending++ == 0;
    tlbd_mutex_unlock(&dev->enospc_lock);
    atomic_fetch_add(&dev->stat_enospc_waits, 1);
    if (first) {
        atomic_fetch_add(&dev->stat_enospc_episodes, 1);
        fprintf(stderr,
                "tlbd: warning: '%s': the host file system is full (%s); "
                "writes wait for space (enospc=wait)\n",
                dev->name ? dev->name : "image", strerror((int)-err));
    }
}

static void
wait_end(PaioDev *dev)
{
    tlbd_mutex_lock(&dev->enospc_lock);
    if (--dev->enospc_pending == 0) {
        pthread_cond_broadcast(&dev->enospc_cond);
    }
    tlbd_mutex_unlock(&dev->enospc_lock);
}

int64_t
paio_enospc_run(PaioRequest *req, PaioHandler *handler)
{
    PaioDev *dev = req->dev;
    uint64_t backoff = BACKOFF_MIN_NS;
    int64_t ret;

    if (req->type == PAIO_FLUSH) {
        tlbd_mutex_lock(&dev->enospc_lock);
        while (dev->enospc_pending) {
            pthread_cond_wait(&dev->enospc_cond, &dev->enospc_lock);
        }
        tlbd_mutex_unlock(&dev->enospc_lock);
        return handler(req);
    }
    ret = handler(req);
    if ((req->type != PAIO_WRITE && req->type != PAIO_WRITE_ZEROES) ||
        !paio_is_nospace(ret)) {
        return ret;
    }
    wait_begin(dev, ret);
    while (paio_is_nospace(ret)) {
        if (paio_sleep_interruptible(req, backoff)) {
            ret = -EINTR; /* the client gave up (paio_interrupt) */
            break;
        }
        backoff = backoff * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : backoff * 2;
        ret = handler(req);
    }
    wait_end(dev);
    return ret;
}
