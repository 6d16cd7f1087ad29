/* tlbd: the helpers paio's handlers share, run on threadlet workers (and on
 * the caller's thread for requests paio runs inline).
 *
 * The system calls that more than one handler makes, each retried after
 * EINTR and returning 0 or -errno; the flush that latches its first
 * failure; the size checks; and dev->rmw_lock, which orders the changes
 * that must not interleave: it is taken exclusively by a write that
 * read-modify-writes a partial O_DIRECT block and by any change that
 * extends or truncates the file (so the size it leaves behind is right),
 * and shared by the other O_DIRECT changes (writes, write-zeroes,
 * discards), so none lands between the read and the write of a partial
 * block.  Nothing here calls back into the other paio files.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
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

int
paio_ftruncate(int fd, uint64_t size)
{
    while (ftruncate(fd, (off_t)size) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

/* The latched flush error, or fdatasync's; a first failure is latched. */
int
paio_do_flush(PaioDev *dev)
{
    int err = atomic_load(&dev->flush_err);

    if (err) {
        return err;
    }
    while (fdatasync(dev->fd) < 0) {
        if (errno != EINTR) {
            return paio_latch_flush_error(dev, -errno);
        }
    }
    return 0;
}

/* Remember ERR as the device's flush error unless one is already there;
 * returns the error that is latched now.
 */
int
paio_latch_flush_error(PaioDev *dev, int err)
{
    int expected = 0;

    if (!atomic_compare_exchange_strong(&dev->flush_err, &expected, err)) {
        return expected;
    }
    return err;
}

int
paio_check_end(PaioDev *dev, uint64_t offset, uint64_t length)
{
    uint64_t end = offset + length;

    if (end < offset || end > INT64_MAX) {
        return dev->growable ? -EFBIG : -ENOSPC;
    }
    if (end > atomic_load(&dev->size) && !dev->growable) {
        return -ENOSPC;
    }
    return 0;
}

void
paio_grow_size(PaioDev *dev, uint64_t end)
{
    uint64_t cur = atomic_load(&dev->size);

    while (end > cur && !atomic_compare_exchange_weak(&dev->size, &cur, end)) {
    }
}

PaioRmwMode
paio_rmw_mode(PaioDev *dev, uint64_t offset, uint64_t length)
{
    if (offset + length > atomic_load(&dev->size)) {
        return PAIO_RMW_EXCLUSIVE;
    }
    return dev->direct ? PAIO_RMW_SHARED : PAIO_RMW_NONE;
}

void
paio_rmw_lock(PaioDev *dev, PaioRmwMode mode)
{
    if (mode == PAIO_RMW_EXCLUSIVE) {
        pthread_rwlock_wrlock(&dev->rmw_lock);
    } else if (mode == PAIO_RMW_SHARED) {
        pthread_rwlock_rdlock(&dev->rmw_lock);
    }
}

void
paio_rmw_unlock(PaioDev *dev, PaioRmwMode mode)
{
    if (mode != PAIO_RMW_NONE) {
        pthread_rwlock_unlock(&dev->rmw_lock);
    }
}
