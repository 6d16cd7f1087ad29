/* tlbd: paio's discard and write-zeroes handlers, run on threadlet workers.
 *
 * Files and block devices take the same requests in bytes, but the kernel
 * takes BLKDISCARD and BLKZEROOUT (and fallocate on a block device) only for
 * whole logical sectors (dev->sector_size): a range that does not start and
 * end on a sector boundary fails with EINVAL.  So each handler has a block
 * device branch, as handle_aiocb_write_zeroes in QEMU's file-posix.c does.
 *
 * Discard punches a hole (fallocate PUNCH_HOLE|KEEP_SIZE) over exactly the
 * range of a file.  On a block device it issues BLKDISCARD for the whole
 * sectors inside the range and leaves the partial sectors at its edges as
 * they are: a discard is a hint (the data of a discarded range is
 * unspecified afterwards), so a range holding no whole sector succeeds
 * having discarded nothing, as a device with a large discard granularity
 * does.
 *
 * Write-zeroes on a file tries, in order: where the caller allows a hole
 * (PAIO_MAY_TRIM), PUNCH_HOLE; fallocate(ZERO_RANGE); PUNCH_HOLE followed,
 * unless the caller allows a hole, by fallocate(0) to allocate the range
 * again; and last, unless PAIO_NO_FALLBACK asks for a fast answer, plain
 * writes of zeroes.  On a block device the whole sectors get BLKZEROOUT
 * (or, with PAIO_NO_FALLBACK and PAIO_MAY_TRIM, fallocate(PUNCH_HOLE),
 * which the kernel turns into an unmapping zero-out with no slow fallback;
 * with PAIO_NO_FALLBACK that is the only fast method), then plain writes
 * if that is refused; the partial sectors at the edges always get plain
 * writes (the page cache, or paio's bounce buffer on O_DIRECT, reads the
 * rest of the sector back first).  Every byte asked for reads back as
 * zero, or the request fails.
 *
 * The first -ENOTSUP of each method clears its has_* flag in the device so
 * it is not tried again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include "paio-int.h"

/* RET of a method guarded by FLAG: on -ENOTSUP (or a synonym) clear FLAG
 * and return -ENOTSUP.
 */
static int
clear_if_notsup(_Atomic bool *flag, int ret)
{
    if (paio_is_notsup(ret)) {
        atomic_store(flag, false);
        return -ENOTSUP;
    }
    return ret;
}

/* A request that succeeded with PAIO_FUA is durable only after a flush. */
static int
flush_if_fua(PaioRequest *req, int ret)
{
    if (ret == 0 && (req->flags & PAIO_FUA)) {
        ret = paio_do_flush(req->dev);
    }
    return ret;
}

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

/* Zeroes that plain writes copy from; never written to. */
static char zero_buf[256 * 1024] __attribute__((aligned(4096)));

/* Write LENGTH zero bytes at OFFSET with plain writes (the slow way). */
static int
write_zero_buffers(PaioDev *dev, uint64_t offset, uint64_t length)
{
    while (length > 0) {
        uint64_t chunk = length < sizeof(zero_buf) ? length : sizeof(zero_buf);
        struct iovec v = { .iov_base = zero_buf, .iov_len = chunk };
        int64_t n = paio_write_range(dev, &v, 1, offset, chunk);
        if (n < 0) {
            return (int)n;
        }
        offset += chunk;
        length -= chunk;
    }
    return 0;
}

int64_t
paio_handle_discard(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t length = req->u.range.length;
    uint64_t start = req->offset;
    uint64_t end = req->offset + length;
    /* Shared with O_DIRECT writes, excluded from read-modify-writes; it
     * never changes the size, so never exclusive.
     */
    PaioRmwMode mode = dev->direct ? PAIO_RMW_SHARED : PAIO_RMW_NONE;
    int ret = paio_check_end(dev, req->offset, length);

    if (ret < 0 || dev->discard_ignore) {
        return ret;
    }
    if (dev->is_blockdev) {
        whole_sectors(dev, req->offset, length, &start, &end);
        if (start >= end) {
            return flush_if_fua(req, 0); /* no whole sector to discard */
        }
    } else if (length == 0) {
        return 0;
    }
    if (!atomic_load(&dev->has_discard)) {
        return -ENOTSUP;
    }
    paio_rmw_lock(dev, mode);
    if (dev->is_blockdev) {
        ret = paio_range_ioctl(dev->fd, BLKDISCARD, start, end - start);
    } else {
        ret =
            paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           start, end - start);
    }
    paio_rmw_unlock(dev, mode);
    return flush_if_fua(req, clear_if_notsup(&dev->has_discard, ret));
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
        int ret = paio_ftruncate(dev->fd, end);
        if (ret < 0) {
            return ret;
        }
    }
    paio_grow_size(dev, end);
    return 0;
}

/* The fast methods on a file.  Returns 0, -ENOTSUP when none applies, or
 * -errno.
 */
static int
zero_file_fast(PaioDev *dev, uint64_t offset, uint64_t length, unsigned flags)
{
    int ret = -ENOTSUP;

    if ((flags & PAIO_MAY_TRIM) && atomic_load(&dev->has_punch_zero)) {
        /* A hole is allowed and frees the blocks: try it first. */
        ret = clear_if_notsup(
            &dev->has_punch_zero,
            paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           offset, length));
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (atomic_load(&dev->has_zero_range)) {
        ret = clear_if_notsup(
            &dev->has_zero_range,
            paio_fallocate(dev->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                           offset, length));
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (atomic_load(&dev->has_punch_zero)) {
        ret = clear_if_notsup(
            &dev->has_punch_zero,
            paio_fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           offset, length));
        if (ret == 0 && !(flags & PAIO_MAY_TRIM)) {
            /* The range reads as zeroes now; allocate it again. */
            ret = paio_fallocate(dev->fd, FALLOC_FL_KEEP_SIZE, offset, length);
        }
    }
    return ret;
}

/* Zero [OFFSET, OFFSET+LENGTH) of a file, inside its size or (growable)
 * past it.
 */
static int
zero_file(PaioDev *dev, uint64_t offset, uint64_t length, unsigned flags)
{
    /* Not during a read-modify-write of a block it shares: that would
     * write the old bytes back over the zeroes.
     */
    PaioRmwMode mode = paio_rmw_mode(dev, offset, length);
    int ret;

    paio_rmw_lock(dev, mode);
    ret = zero_file_fast(dev, offset, length, flags);
    if (ret == 0 && mode == PAIO_RMW_EXCLUSIVE) {
        ret = grow_to(dev, offset + length);
    }
    paio_rmw_unlock(dev, mode);
    if (ret == -ENOTSUP && !(flags & PAIO_NO_FALLBACK)) {
        ret = write_zero_buffers(dev, offset, length);
    }
    return ret;
}

/* Zero the whole sectors START..END of a block device.  -ENOTSUP when no
 * method applies.
 */
static int
zero_sectors(PaioDev *dev, uint64_t start, uint64_t end, unsigned flags)
{
    int ret = -ENOTSUP;

    if (flags & PAIO_NO_FALLBACK) {
        if ((flags & PAIO_MAY_TRIM) && atomic_load(&dev->has_discard)) {
            ret = clear_if_notsup(
                &dev->has_discard,
                paio_fallocate(dev->fd,
                               FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               start, end - start));
        }
        return ret;
    }
    if (atomic_load(&dev->has_zeroout)) {
        ret = clear_if_notsup(
            &dev->has_zeroout,
            paio_range_ioctl(dev->fd, BLKZEROOUT, start, end - start));
    }
    return ret;
}

/* Zero [OFFSET, OFFSET+LENGTH) of a block device: the whole sectors fast
 * where it can, the partial ones at the edges with plain writes.
 */
static int
zero_blockdev(PaioDev *dev, uint64_t offset, uint64_t length, unsigned flags)
{
    PaioRmwMode mode = dev->direct ? PAIO_RMW_SHARED : PAIO_RMW_NONE;
    uint64_t start;
    uint64_t end;
    int ret = 0;

    whole_sectors(dev, offset, length, &start, &end);
    if (start >= end) {
        start = end = offset; /* no whole sector: all of it is an edge */
    }
    if ((flags & PAIO_NO_FALLBACK) &&
        (start != offset || end != offset + length)) {
        return -ENOTSUP; /* the edges need plain writes */
    }
    if (start < end) {
        /* Not during a read-modify-write of a block it shares. */
        paio_rmw_lock(dev, mode);
        ret = zero_sectors(dev, start, end, flags);
        paio_rmw_unlock(dev, mode);
        if (ret == -ENOTSUP && !(flags & PAIO_NO_FALLBACK)) {
            ret = write_zero_buffers(dev, start, end - start);
        }
        if (ret < 0) {
            return ret;
        }
    }
    if (start > offset) {
        ret = write_zero_buffers(dev, offset, start - offset);
    }
    if (ret == 0 && end < offset + length) {
        ret = write_zero_buffers(dev, end, offset + length - end);
    }
    return ret;
}

int64_t
paio_handle_write_zeroes(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t length = req->u.range.length;
    int ret = paio_check_end(dev, req->offset, length);

    if (ret < 0) {
        return ret;
    }
    if (length > 0) {
        ret = dev->is_blockdev
                  ? zero_blockdev(dev, req->offset, length, req->flags)
                  : zero_file(dev, req->offset, length, req->flags);
    }
    return flush_if_fua(req, ret);
}
