/* tlbd: running a request on the caller's thread when it cannot wait on a
 * device.
 *
 * A hand-off to a worker costs two thread wake-ups (to the worker and back),
 * several microseconds each on a VM; a 4k copy from the page cache costs
 * one.  The pool exists for the calls that sleep on a device, so a request
 * that is known not to sleep runs where it was asked:
 *
 *  - on a memory file system (tmpfs, ramfs) reads, writes inside the image
 *    and fdatasync never wait on a device: they run inline;
 *  - elsewhere, without O_DIRECT, a read runs inline as
 *    preadv2(RWF_NOWAIT), which the kernel answers only from the page
 *    cache; a write inside the image that needs no flush tries
 *    pwritev2(RWF_NOWAIT).  (With O_DIRECT, RWF_NOWAIT would still wait
 *    for the device, so such requests always go to the pool.)  EAGAIN or
 *    a short transfer sends the whole request to the pool (reads and
 *    writes are idempotent), and the first EOPNOTSUPP turns that attempt
 *    off for the device;
 *  - a write with PAIO_MAY_WAIT, whose caller waits for nothing else
 *    meanwhile, may be of any size, and on a buffered regular file runs
 *    as a plain pwritev where RWF_NOWAIT is refused: it may sleep in the
 *    kernel (the inode lock, page allocation, dirty throttling) but starts
 *    no device I/O, and the kernel serializes buffered writes to one file
 *    on the inode lock whichever thread makes them;
 *  - with a volatile cache, a write that the cache takes in memory at once
 *    (vcache_try_inline: it fits, it is not FUA, no rule cuts at it) is a
 *    copy; everything else the cache does (reads of the image, making
 *    room, flushes) may wait on the device and goes to the pool.
 *
 * Only plain requests qualify: no injection rules, at most dev->inline_max
 * bytes (but see PAIO_MAY_WAIT; 0 turns all of this off), no O_DIRECT
 * bounce buffer, no lock to take, nothing read-only to refuse.  The rest
 * goes to the pool as before.
 *
 * Threads: any thread; the caller owns REQ throughout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/uio.h>

#include "paio-int.h"
#include "vcache.h"

/* One RWF_NOWAIT transfer of the whole of REQ: true if it all moved. */
static bool
try_nowait(PaioDev *dev, PaioRequest *req, uint64_t total, bool write)
{
    _Atomic bool *has = write ? &dev->has_nowait_write : &dev->has_nowait_read;
    ssize_t n;

    n = write ? pwritev2(dev->fd, req->u.rw.iov, req->u.rw.niov,
                         (off_t)req->offset, RWF_NOWAIT)
              : preadv2(dev->fd, req->u.rw.iov, req->u.rw.niov,
                        (off_t)req->offset, RWF_NOWAIT);
    if (n < 0 && paio_is_notsup(-errno)) {
        atomic_store_explicit(has, false, memory_order_relaxed);
    }
    if (n < 0 || (uint64_t)n != total) {
        return false; /* EAGAIN, a short transfer, end of file, an error */
    }
    req->ret = n;
    return true;
}

static bool
try_rw(PaioDev *dev, PaioRequest *req)
{
    bool write = req->type == PAIO_WRITE;
    bool nowait = atomic_load_explicit(write ? &dev->has_nowait_write
                                             : &dev->has_nowait_read,
                                       memory_order_relaxed);
    /* PAIO_MAY_WAIT: the caller waits for nothing else meanwhile, so a
     * write of any size may run here, and a buffered write to a regular
     * file even where RWF_NOWAIT is refused, as a plain pwritev. */
    bool may_wait = write && (req->flags & PAIO_MAY_WAIT);
    bool can_plain = may_wait && !dev->direct && !dev->is_blockdev;
    uint64_t total;

    if (!dev->mem_fs &&
        ((write && (req->flags & PAIO_FUA)) || (!nowait && !can_plain))) {
        return false; /* would need a flush, or RWF_NOWAIT is refused */
    }
    total = paio_iov_total(req->u.rw.iov, req->u.rw.niov);
    if (total == 0 || (total > dev->inline_max && !may_wait)) {
        return false;
    }
    if (dev->direct && !paio_iov_aligned(dev, req->u.rw.iov, req->u.rw.niov,
                                         req->offset, total)) {
        return false; /* bounce buffer */
    }
    if (write && (dev->readonly ||
                  paio_rmw_mode(dev, req->offset, total) != PAIO_RMW_NONE)) {
        return false; /* refused, extends the file, or shares rmw_lock */
    }
    if (!dev->mem_fs && nowait) {
        if (try_nowait(dev, req, total, write)) {
            return true;
        }
        /* Unless this was the first refusal of RWF_NOWAIT, which has just
         * turned the attempts off. */
        if (!can_plain || atomic_load_explicit(&dev->has_nowait_write,
                                               memory_order_relaxed)) {
            return false;
        }
    }
    req->ret = write ? paio_handle_write(req) : paio_handle_read(req);
    return true;
}

bool
paio_try_inline(PaioDev *dev, PaioRequest *req)
{
    bool done = false;

    if (dev->inline_max == 0 || !paio_valid_request(req) ||
        atomic_load_explicit(&dev->inject_on, memory_order_relaxed)) {
        return false; /* injection must see it, or a bad request:
                         paio_submit says why */
    }
    req->dev = dev;
    req->start_ns = tlbd_now_ns();
    if (dev->vcache) {
        /* only a write the cache takes in memory, as a disk's cache does */
        done =
            req->type == PAIO_WRITE && !dev->readonly &&
            paio_iov_total(req->u.rw.iov, req->u.rw.niov) <= dev->inline_max &&
            vcache_try_inline(dev->vcache, req);
    } else {
        switch (req->type) {
        case PAIO_READ:
        case PAIO_WRITE:
            done = try_rw(dev, req);
            break;
        case PAIO_FLUSH:
            if (dev->mem_fs) {
                req->ret = paio_do_flush(dev);
                done = true;
            }
            break;
        default:
            break;
        }
    }
    if (done && dev->enospc_wait && req->type == PAIO_WRITE &&
        paio_is_nospace(req->ret)) {
        done = false; /* a worker waits for space (paio-enospc.c) */
    }
    if (done) {
        atomic_fetch_add_explicit(&dev->stat_inline, 1, memory_order_relaxed);
        paio_count_done(dev, req);
    }
    return done;
}
