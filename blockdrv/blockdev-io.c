/* tlbd: BlockDev's data path, as aio requests and as blocking calls.
 *
 * An aio call allocates one AioReq (the PaioRequest, the caller's callback
 * and a copy of the iovec array, so the caller's array may go away at
 * once), submits it, and frees it on completion right before calling the
 * callback on the BlockDev's IOThread (or on the worker when it has none).
 * A blocking call keeps its PaioRequest on the caller's stack and runs it
 * with paio_run: inline when it cannot wait on a device, else on a worker
 * that wakes the caller directly (a detour through the IOThread would add
 * a hand-off and nothing else).  blockdev_try_* are the inline attempt
 * alone, for event loops.
 *
 * Threads: any thread, once blockdev_open has returned.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockdev-int.h"

/* An aio request; blockdev.h's BlockDevAio, the handle of
 * blockdev_aio_interrupt.
 */
struct BlockDevAio {
    PaioRequest req;
    BlockDevCompleteFn *cb;
    void *opaque;
    struct iovec iov[];
};
typedef struct BlockDevAio AioReq;

static void
init_req(PaioRequest *req, PaioType type, uint64_t offset, unsigned flags)
{
    memset(req, 0, sizeof(*req));
    req->type = type;
    req->offset = offset;
    req->flags = flags;
}

static void
aio_done(PaioRequest *req)
{
    AioReq *a = container_of(req, AioReq, req);
    BlockDevCompleteFn *cb = a->cb;
    void *opaque = a->opaque;
    int64_t ret = req->ret;

    free(a);
    cb(opaque, ret);
}

static AioReq *
aio_new(BlockDev *bd, PaioType type, uint64_t offset, unsigned flags, int niov,
        BlockDevCompleteFn *cb, void *opaque)
{
    AioReq *a;

    if (!cb || niov < 0 || niov > PAIO_IOV_MAX) {
        return NULL;
    }
    a = malloc(sizeof(*a) + (size_t)niov * sizeof(struct iovec));
    if (!a) {
        return NULL;
    }
    init_req(&a->req, type, offset, flags);
    a->req.cb = aio_done;
    a->req.iothread = bd->iothread;
    a->cb = cb;
    a->opaque = opaque;
    return a;
}

static int
aio_submit(BlockDev *bd, AioReq *a)
{
    int ret;

    if (!a) {
        return -ENOMEM;
    }
    ret = paio_submit(bd->dev, &a->req);
    if (ret < 0) {
        free(a);
    }
    return ret;
}

/* Run REQ and wait for its result. */
static int64_t
run(BlockDev *bd, PaioRequest *req)
{
    return paio_run(bd->dev, req, NULL);
}

/* A read or write attempted on the calling thread only (paio_try_inline):
 * true with *RET set, or false having done nothing.
 */
static bool
try_inline_rw(BlockDev *bd, PaioType type, uint64_t offset,
              const struct iovec *iov, int niov, unsigned flags, int64_t *ret)
{
    PaioRequest req;

    init_req(&req, type, offset, flags);
    req.u.rw.iov = iov;
    req.u.rw.niov = niov;
    if (!paio_try_inline(bd->dev, &req)) {
        return false;
    }
    *ret = req.ret;
    return true;
}

bool
blockdev_try_preadv(BlockDev *bd, uint64_t offset, const struct iovec *iov,
                    int niov, int64_t *ret)
{
    return try_inline_rw(bd, PAIO_READ, offset, iov, niov, 0, ret);
}

bool
blockdev_try_pwritev(BlockDev *bd, uint64_t offset, const struct iovec *iov,
                     int niov, unsigned flags, int64_t *ret)
{
    return try_inline_rw(bd, PAIO_WRITE, offset, iov, niov, flags, ret);
}

bool
blockdev_try_flush(BlockDev *bd, int *ret)
{
    PaioRequest req;

    init_req(&req, PAIO_FLUSH, 0, 0);
    if (!paio_try_inline(bd->dev, &req)) {
        return false;
    }
    *ret = (int)req.ret;
    return true;
}

/* A read or write; *OUT (if not NULL) gets its handle. */
static int
aio_rw(BlockDev *bd, PaioType type, uint64_t offset, const struct iovec *iov,
       int niov, unsigned flags, BlockDevCompleteFn *cb, void *opaque,
       AioReq **out)
{
    AioReq *a;

    if (niov < 0 || niov > PAIO_IOV_MAX || (niov && !iov) || !cb) {
        return -EINVAL;
    }
    a = aio_new(bd, type, offset, flags, niov, cb, opaque);
    if (a) {
        memcpy(a->iov, iov, (size_t)niov * sizeof(*iov));
        a->req.u.rw.iov = a->iov;
        a->req.u.rw.niov = niov;
    }
    if (out) {
        *out = a;
    }
    return aio_submit(bd, a);
}

int
blockdev_aio_preadv(BlockDev *bd, uint64_t offset, const struct iovec *iov,
                    int niov, BlockDevCompleteFn *cb, void *opaque)
{
    return aio_rw(bd, PAIO_READ, offset, iov, niov, 0, cb, opaque, NULL);
}

int
blockdev_aio_pwritev(BlockDev *bd, uint64_t offset, const struct iovec *iov,
                     int niov, unsigned flags, BlockDevCompleteFn *cb,
                     void *opaque)
{
    return aio_rw(bd, PAIO_WRITE, offset, iov, niov, flags, cb, opaque, NULL);
}

int
blockdev_aio_rw_intr(BlockDev *bd, bool write, uint64_t offset,
                     const struct iovec *iov, int niov, unsigned flags,
                     BlockDevCompleteFn *cb, void *opaque, BlockDevAio **aio)
{
    return aio_rw(bd, write ? PAIO_WRITE : PAIO_READ, offset, iov, niov,
                  write ? flags : 0, cb, opaque, aio);
}

bool
blockdev_aio_interrupt(BlockDevAio *aio)
{
    return paio_interrupt(&aio->req) == PAIO_CANCELLED;
}

/* An aio request with no iovec; RANGE is the length where it has one.
 * *OUT (if not NULL) gets its handle.
 */
static int
aio_simple_h(BlockDev *bd, PaioType type, uint64_t offset, uint64_t range,
             unsigned flags, BlockDevCompleteFn *cb, void *opaque, AioReq **out)
{
    AioReq *a;

    if (!cb) {
        return -EINVAL;
    }
    a = aio_new(bd, type, offset, flags, 0, cb, opaque);
    if (a) {
        a->req.u.range.length = range;
    }
    if (out) {
        *out = a;
    }
    return aio_submit(bd, a);
}

static int
aio_simple(BlockDev *bd, PaioType type, uint64_t offset, uint64_t range,
           unsigned flags, BlockDevCompleteFn *cb, void *opaque)
{
    return aio_simple_h(bd, type, offset, range, flags, cb, opaque, NULL);
}

int
blockdev_aio_flush(BlockDev *bd, BlockDevCompleteFn *cb, void *opaque)
{
    return aio_simple(bd, PAIO_FLUSH, 0, 0, 0, cb, opaque);
}

int
blockdev_aio_flush_intr(BlockDev *bd, BlockDevCompleteFn *cb, void *opaque,
                        BlockDevAio **aio)
{
    return aio_simple_h(bd, PAIO_FLUSH, 0, 0, 0, cb, opaque, aio);
}

int
blockdev_aio_discard(BlockDev *bd, uint64_t offset, uint64_t length,
                     unsigned flags, BlockDevCompleteFn *cb, void *opaque)
{
    return aio_simple(bd, PAIO_DISCARD, offset, length, flags, cb, opaque);
}

int
blockdev_aio_write_zeroes(BlockDev *bd, uint64_t offset, uint64_t length,
                          unsigned flags, BlockDevCompleteFn *cb, void *opaque)
{
    return aio_simple(bd, PAIO_WRITE_ZEROES, offset, length, flags, cb, opaque);
}

int
blockdev_aio_cache(BlockDev *bd, uint64_t offset, uint64_t length,
                   BlockDevCompleteFn *cb, void *opaque)
{
    return aio_simple(bd, PAIO_FADVISE, offset, length, 0, cb, opaque);
}

int
blockdev_aio_allocated(BlockDev *bd, BlockDevCompleteFn *cb, void *opaque)
{
    return aio_simple(bd, PAIO_FSTAT, 0, 0, 0, cb, opaque);
}

int
blockdev_aio_ioctl(BlockDev *bd, unsigned long cmd, void *arg,
                   BlockDevCompleteFn *cb, void *opaque)
{
    AioReq *a;

    if (!cb) {
        return -EINVAL;
    }
    a = aio_new(bd, PAIO_IOCTL, 0, 0, 0, cb, opaque);
    if (a) {
        a->req.u.ioctl.cmd = cmd;
        a->req.u.ioctl.arg = arg;
    }
    return aio_submit(bd, a);
}

int
blockdev_aio_truncate(BlockDev *bd, uint64_t size, BlockDevCompleteFn *cb,
                      void *opaque)
{
    AioReq *a;

    if (!cb) {
        return -EINVAL;
    }
    a = aio_new(bd, PAIO_TRUNCATE, 0, 0, 0, cb, opaque);
    if (a) {
        a->req.u.truncate.size = size;
    }
    return aio_submit(bd, a);
}

int
blockdev_aio_lseek(BlockDev *bd, uint64_t offset, int whence,
                   BlockDevCompleteFn *cb, void *opaque)
{
    AioReq *a;

    if (!cb || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
        return -EINVAL;
    }
    a = aio_new(bd, PAIO_LSEEK, offset, 0, 0, cb, opaque);
    if (a) {
        a->req.u.lseek.whence = whence;
    }
    return aio_submit(bd, a);
}

/* Blocking forms. */

int64_t
blockdev_preadv(BlockDev *bd, const struct iovec *iov, int niov,
                uint64_t offset)
{
    PaioRequest req;

    init_req(&req, PAIO_READ, offset, 0);
    req.u.rw.iov = iov;
    req.u.rw.niov = niov;
    return run(bd, &req);
}

int64_t
blockdev_pwritev(BlockDev *bd, const struct iovec *iov, int niov,
                 uint64_t offset, unsigned flags)
{
    PaioRequest req;

    init_req(&req, PAIO_WRITE, offset, flags);
    req.u.rw.iov = iov;
    req.u.rw.niov = niov;
    return run(bd, &req);
}

int64_t
blockdev_pread(BlockDev *bd, void *buf, size_t count, uint64_t offset)
{
    struct iovec v = { .iov_base = buf, .iov_len = count };
    return blockdev_preadv(bd, &v, 1, offset);
}

int64_t
blockdev_pwrite(BlockDev *bd, const void *buf, size_t count, uint64_t offset,
                unsigned flags)
{
    struct iovec v = { .iov_base = (void *)buf, .iov_len = count };
    return blockdev_pwritev(bd, &v, 1, offset, flags);
}

static int64_t
run_simple(BlockDev *bd, PaioType type, uint64_t offset, uint64_t range,
           unsigned flags)
{
    PaioRequest req;

    init_req(&req, type, offset, flags);
    req.u.range.length = range;
    return run(bd, &req);
}

int
blockdev_flush(BlockDev *bd)
{
    return (int)run_simple(bd, PAIO_FLUSH, 0, 0, 0);
}

int
blockdev_discard(BlockDev *bd, uint64_t offset, uint64_t length, unsigned flags)
{
    return (int)run_simple(bd, PAIO_DISCARD, offset, length, flags);
}

int
blockdev_write_zeroes(BlockDev *bd, uint64_t offset, uint64_t length,
                      unsigned flags)
{
    return (int)run_simple(bd, PAIO_WRITE_ZEROES, offset, length, flags);
}

int
blockdev_cache(BlockDev *bd, uint64_t offset, uint64_t length)
{
    return (int)run_simple(bd, PAIO_FADVISE, offset, length, 0);
}

int64_t
blockdev_allocated(BlockDev *bd)
{
    return run_simple(bd, PAIO_FSTAT, 0, 0, 0);
}

int
blockdev_ioctl(BlockDev *bd, unsigned long cmd, void *arg)
{
    PaioRequest req;
    int64_t ret;

    init_req(&req, PAIO_IOCTL, 0, 0);
    req.u.ioctl.cmd = cmd;
    req.u.ioctl.arg = arg;
    ret = run(bd, &req);
    return ret > INT32_MAX ? INT32_MAX : (int)ret;
}

int
blockdev_truncate(BlockDev *bd, uint64_t size)
{
    PaioRequest req;

    init_req(&req, PAIO_TRUNCATE, 0, 0);
    req.u.truncate.size = size;
    return (int)run(bd, &req);
}

int64_t
blockdev_lseek(BlockDev *bd, uint64_t offset, int whence)
{
    PaioRequest req;

    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        return -EINVAL;
    }
    init_req(&req, PAIO_LSEEK, offset, 0);
    req.u.lseek.whence = whence;
    return run(bd, &req);
}

int
blockdev_extents(BlockDev *bd, uint64_t offset, uint64_t length,
                 BlockDevExtentFn *fn, void *opaque)
{
    uint64_t size = blockdev_size(bd);
    uint64_t end = offset + length;
    uint64_t pos = offset;

    if (end < offset || end > size) {
        end = size;
    }
    if (pos >= end) {
        return 0;
    }
    if (bd->is_blockdev) {
        return fn(opaque, pos, end - pos, false);
    }
    while (pos < end) {
        int64_t data = blockdev_lseek(bd, pos, SEEK_DATA);
        int64_t hole;
        int ret;

        if (data == -ENXIO) {
            data = (int64_t)end; /* only a hole is left */
        } else if (data < 0) {
            /* SEEK_DATA unsupported or failing: call the rest data. */
            return fn(opaque, pos, end - pos, false);
        }
        if ((uint64_t)data > pos) {
            uint64_t stop = (uint64_t)data < end ? (uint64_t)data : end;
            ret = fn(opaque, pos, stop - pos, true);
            if (ret < 0) {
                return ret;
            }
            pos = stop;
            if (pos >= end) {
                break;
            }
        }
        hole = blockdev_lseek(bd, pos, SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole > end) {
            hole = (int64_t)end;
        }
        if ((uint64_t)hole <= pos) {
            hole = (int64_t)end; /* the file changed under us */
        }
        ret = fn(opaque, pos, (uint64_t)hole - pos, false);
        if (ret < 0) {
            return ret;
        }
        pos = (uint64_t)hole;
    }
    return 0;
}
