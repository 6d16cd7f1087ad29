/* tlbd: paio's discard and write-zeroes on block devices, run on threadlet
 * workers.
 *
 * The kernel takes BLKDISCARD and BLKZEROOUT (and fallocate on a block
 * device) only for whole logical sectors: a range that does not start and
 * end on a sector boundary fails with EINVAL.  Requests from the front ends
 * come in bytes, so these handlers split them:
 *  - discard issues BLKDISCARD for the whole sectors inside the range and
 *    leaves the partial sectors at its edges as they are.  A discard is a
 *    hint (the data of a discarded range is unspecified afterwards), so this
 *    is the whole of what can be done; a range holding no whole sector does
 *    nothing and says so by succeeding with nothing discarded, as a device
 *    with a large discard granularity does;
 *  - write-zeroes issues BLKZEROOUT (or, where the caller wants only a fast
 *    answer and allows a hole, fallocate(PUNCH_HOLE), which the kernel turns
 *    into an unmapping zero-out with no slow fallback) for the whole
 *    sectors, and writes zero bytes over the partial sectors at the edges
 *    (the kernel's page cache, or paio's bounce buffer on O_DIRECT, reads
 *    the rest of the sector back first).  Every byte asked for reads back
 *    as zero, or the request fails.
 * The sector size is dev->sector_size (BLKSSZGET at open).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "paio-int.h"

/* Split [OFFSET, OFFSET+LENGTH) at DEV's sector boundaries: *START..*END is
 * the run of whole sectors (empty when *START >= *END).
 */
static void
whole_sectors(const PaioDev *dev, uint64_t offset, uint64_t length,
              uint64_t *start, uint64_t *end)
{
    uint64_t s = dev->sector_size > 1 ? dev->sector_size : 512;

    *start = (offset + s - 1) / s * s;
    *end = (offset + length) / s * s;
}

static int
fua(PaioRequest *req, int ret)
{
    if (ret == 0 && (req->flags & PAIO_FUA)) {
        ret = paio_do_flush(req->dev);
    }
    return ret;
}

int64_t
paio_blk_discard(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t start;
    uint64_t end;
    PaioRmwMode mode = dev->direct ? PAIO_RMW_SHARED : PAIO_RMW_NONE;
    int ret = paio_check_end(dev, req->offset, req->u.range.length);

    if (ret < 0 || dev->discard_ignore) {
        return ret;
    }
    whole_sectors(dev, req->offset, req->u.range.length, &start, &end);
    if (start >= end) {
        return fua(req, 0);
    }
    if (!atomic_load(&dev->has_discard)) {
        return -ENOTSUP;
    }
    paio_rmw_lock(dev, mode);
    ret = paio_range_ioctl(dev->fd, BLKDISCARD, start, end - start);
    paio_rmw_unlock(dev, mode);
    if (paio_is_notsup(ret)) {
        atomic_store(&dev->has_discard, false);
        return -ENOTSUP;
    }
    return fua(req, ret);
}

/* Zero the whole sectors START..END.  -ENOTSUP when no method applies. */
static int
zero_sectors(PaioDev *dev, uint64_t start, uint64_t end, unsigned flags)
{
    int ret = -ENOTSUP;

    if (flags & PAIO_NO_FALLBACK) {
        if ((flags & PAIO_MAY_TRIM) && atomic_load(&dev->has_discard)) {
            ret = paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE |
                                 FALLOC_FL_KEEP_SIZE, start, end - start);
            if (paio_is_notsup(ret)) {
                atomic_store(&dev->has_discard, false);
                ret = -ENOTSUP;
            }
        }
        return ret;
    }
    if (atomic_load(&dev->has_zeroout)) {
        ret = paio_range_ioctl(dev->fd, BLKZEROOUT, start, end - start);
        if (paio_is_notsup(ret)) {
            atomic_store(&dev->has_zeroout, false);
            ret = -ENOTSUP;
        }
    }
    return ret;
}

int64_t
paio_blk_write_zeroes(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t offset = req->offset;
    uint64_t length = req->u.range.length;
    uint64_t start;
    uint64_t end;
    PaioRmwMode mode = dev->direct ? PAIO_RMW_SHARED : PAIO_RMW_NONE;
    int ret = paio_check_end(dev, offset, length);

    if (ret < 0 || length == 0) {
        return ret == 0 ? fua(req, 0) : ret;
    }
    whole_sectors(dev, offset, length, &start, &end);
    if (start >= end) {
        start = end = offset; /* no whole sector: all of it is an edge */
    }
    if ((req->flags & PAIO_NO_FALLBACK) &&
        (start != offset || end != offset + length)) {
        return -ENOTSUP; /* the edges need plain writes */
    }
    if (start < end) {
        /* Not during a read-modify-write of a block it shares. */
        paio_rmw_lock(dev, mode);
        ret = zero_sectors(dev, start, end, req->flags);
        paio_rmw_unlock(dev, mode);
        if (ret == -ENOTSUP && !(req->flags & PAIO_NO_FALLBACK)) {
            ret = paio_write_zero_buffers(dev, start, end - start);
        }
        if (ret < 0) {
            return ret;
        }
    }
    if (start > offset) {
        ret = paio_write_zero_buffers(dev, offset, start - offset);
    }
    if (ret == 0 && end < offset + length) {
        ret = paio_write_zero_buffers(dev, end, offset + length - end);
    }
    return fua(req, ret);
}
