/* tlbd: paio's discard and write-zeroes handlers, run on threadlet workers.
 *
 * Discard punches a hole (fallocate PUNCH_HOLE|KEEP_SIZE) in a file and
 * issues BLKDISCARD on a block device.  Write-zeroes tries, in order: on
 * files where the caller allows a hole (PAIO_MAY_TRIM), PUNCH_HOLE;
 * fallocate(ZERO_RANGE); on files PUNCH_HOLE followed by fallocate(0) to
 * allocate the range again (unless the caller allows a hole); on block
 * devices BLKZEROOUT; and last, unless PAIO_NO_FALLBACK asks for a fast
 * answer, plain writes of zeroes.  The first -ENOTSUP of each method clears
 * its has_* flag in the device so it is not tried again.  With
 * PAIO_NO_FALLBACK on a block device only a discard-backed hole counts as
 * fast (the kernel does PUNCH_HOLE there without a slow fallback).  Block
 * devices are handed to paio-blk.c, which cuts requests at sector
 * boundaries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paio-int.h"

int
paio_fallocate(int fd, int mode, uint64_t offset, uint64_t length)
{
    while (fallocate(fd, mode, (off_t)offset, (off_t)length) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

int
paio_range_ioctl(int fd, unsigned long cmd, uint64_t offset, uint64_t length)
{
    uint64_t range[2] = { offset, length };

    while (ioctl(fd, cmd, range) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

/* Try one method guarded by FLAG: on -ENOTSUP clear FLAG. */
static int
try_method(_Atomic bool *flag, int ret)
{
    if (paio_is_notsup(ret)) {
        atomic_store(flag, false);
        return -ENOTSUP;
    }
    return ret;
}

static int
finish(PaioRequest *req, int ret)
{
    if (ret == 0 && (req->flags & PAIO_FUA)) {
        ret = paio_do_flush(req->dev);
    }
    return ret;
}

int64_t
paio_handle_discard(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t length = req->u.range.length;
    PaioRmwMode mode;
    int ret;

    if (dev->is_blockdev) {
        return paio_blk_discard(req);
    }
    ret = paio_check_end(dev, req->offset, length);
    if (ret < 0 || length == 0 || dev->discard_ignore) {
        return ret;
    }
    if (!atomic_load(&dev->has_discard)) {
        return -ENOTSUP;
    }
    /* Shared with O_DIRECT writes, excluded from read-modify-writes; it
     * never changes the size, so never exclusive.
     */
    mode = dev->direct ? PAIO_RMW_SHARED : PAIO_RMW_NONE;
    paio_rmw_lock(dev, mode);
    if (dev->is_blockdev) {
        ret = paio_range_ioctl(dev->fd, BLKDISCARD, req->offset, length);
    } else {
        ret = paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE |
                             FALLOC_FL_KEEP_SIZE, req->offset, length);
    }
    paio_rmw_unlock(dev, mode);
    return finish(req, try_method(&dev->has_discard, ret));
}

/* The file may need to reach END; extend it if it does not. */
static int
grow_to(PaioDev *dev, uint64_t end)
{
    struct stat st;

    if (fstat(dev->fd, &st) < 0) {
        return -errno;
    }
    if ((uint64_t)st.st_size < end) {
        while (ftruncate(dev->fd, (off_t)end) < 0) {
            if (errno != EINTR) {
                return -errno;
            }
        }
    }
    paio_grow_size(dev, end);
    return 0;
}

/* The fast methods.  Returns 0, -ENOTSUP when none applies, or -errno. */
static int
zero_fast(PaioDev *dev, uint64_t offset, uint64_t length, unsigned flags)
{
    int ret = -ENOTSUP;

    if (dev->is_blockdev && (flags & PAIO_NO_FALLBACK)) {
        if ((flags & PAIO_MAY_TRIM) && atomic_load(&dev->has_discard)) {
            ret = try_method(&dev->has_discard,
                             paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE |
                                            FALLOC_FL_KEEP_SIZE, offset,
                                            length));
        }
        return ret;
    }
    if ((flags & PAIO_MAY_TRIM) && !dev->is_blockdev &&
        atomic_load(&dev->has_punch_zero)) {
        /* A hole is allowed and frees the blocks: try it first. */
        ret = try_method(&dev->has_punch_zero,
                         paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE |
                                        FALLOC_FL_KEEP_SIZE, offset, length));
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (atomic_load(&dev->has_zero_range)) {
        ret = try_method(&dev->has_zero_range,
                         paio_fallocate(dev->fd, FALLOC_FL_ZERO_RANGE |
                                        FALLOC_FL_KEEP_SIZE, offset, length));
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (!dev->is_blockdev && atomic_load(&dev->has_punch_zero)) {
        ret = try_method(&dev->has_punch_zero,
                         paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE |
                                        FALLOC_FL_KEEP_SIZE, offset, length));
        if (ret == 0 && !(flags & PAIO_MAY_TRIM)) {
            /* The range reads as zeroes now; allocate it again. */
            ret = paio_fallocate(dev->fd, FALLOC_FL_KEEP_SIZE, offset, length);
        }
    }
    return ret;
}

int64_t
paio_handle_write_zeroes(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t offset = req->offset;
    uint64_t length = req->u.range.length;
    uint64_t end = offset + length;
    PaioRmwMode mode;
    int ret;

    if (dev->is_blockdev) {
        return paio_blk_write_zeroes(req);
    }
    ret = paio_check_end(dev, offset, length);
    if (ret < 0 || length == 0) {
        return ret == 0 ? finish(req, 0) : ret;
    }
    /* Not during a read-modify-write of a block it shares: that would
     * write the old bytes back over the zeroes.
     */
    mode = paio_rmw_mode(dev, offset, length);
    paio_rmw_lock(dev, mode);
    ret = zero_fast(dev, offset, length, req->flags);
    if (ret == -ENOTSUP && dev->is_blockdev &&
        !(req->flags & PAIO_NO_FALLBACK) && atomic_load(&dev->has_zeroout)) {
        ret = try_method(&dev->has_zeroout,
                         paio_range_ioctl(dev->fd, BLKZEROOUT, offset, length));
    }
    if (ret == 0 && mode == PAIO_RMW_EXCLUSIVE) {
        ret = grow_to(dev, end);
    }
    paio_rmw_unlock(dev, mode);
    if (ret == -ENOTSUP && !(req->flags & PAIO_NO_FALLBACK)) {
        ret = paio_write_zero_buffers(dev, offset, length);
    }
    return finish(req, ret);
}
