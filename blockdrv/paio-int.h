/* tlbd: what paio's own files share and nothing else needs.  The handlers
 * run on threadlet workers; see paio.c for the rules they follow.
 */
#ifndef TLBD_PAIO_INT_H
#define TLBD_PAIO_INT_H

#include "cleanup.h"
#include "paio.h"

/* True for the errors that mean "this kind of request is not supported
 * here", after which a capability flag is cleared.
 */
static inline bool
paio_is_notsup(int err)
{
    return err == -ENOTSUP || err == -EOPNOTSUPP || err == -ENOSYS;
}

/* The bytes IOV describes; whether OFFSET, TOTAL and every buffer meet
 * dev->alignment (O_DIRECT).
 */
uint64_t paio_iov_total(const struct iovec *iov, int niov);
bool paio_iov_aligned(const PaioDev *dev, const struct iovec *iov, int niov,
                      uint64_t offset, uint64_t total);

/* A known type, and for reads and writes 0..PAIO_IOV_MAX iovecs. */
bool paio_valid_request(const PaioRequest *req);

/* Count a finished request (req->ret set) in the device's statistics. */
void paio_count_done(PaioDev *dev, const PaioRequest *req);

/* Handlers: bytes, 0 or -errno. */
int64_t paio_handle_read(PaioRequest *req);
int64_t paio_handle_write(PaioRequest *req);
int64_t paio_handle_discard(PaioRequest *req);
int64_t paio_handle_write_zeroes(PaioRequest *req);

/* Write IOV (TOTAL bytes) at OFFSET: the write path under the request,
 * which takes rmw_lock itself and keeps the size right (paio-rw.c).
 * Returns TOTAL or -errno.
 */
int64_t paio_write_range(PaioDev *dev, const struct iovec *iov, int niov,
                         uint64_t offset, uint64_t total);

/* The rest live in paio-util.c, which calls none of the above. */

/* fdatasync unless a flush error is latched; latches a new failure. */
int paio_do_flush(PaioDev *dev);
int paio_latch_flush_error(PaioDev *dev, int err);

/* Raise dev->size to END if it is smaller. */
void paio_grow_size(PaioDev *dev, uint64_t end);

/* How a request holds dev->rmw_lock (see paio-util.c). */
typedef enum PaioRmwMode {
    PAIO_RMW_NONE = 0,
    PAIO_RMW_SHARED,    /* an O_DIRECT change that reads nothing back */
    PAIO_RMW_EXCLUSIVE, /* a partial-block read-modify-write, a change of
                           the file's size */
} PaioRmwMode;

/* The mode for a change of [OFFSET, OFFSET+LENGTH) that is not itself a
 * read-modify-write: exclusive if it extends the file, shared on O_DIRECT.
 */
PaioRmwMode paio_rmw_mode(PaioDev *dev, uint64_t offset, uint64_t length);
void paio_rmw_lock(PaioDev *dev, PaioRmwMode mode);
void paio_rmw_unlock(PaioDev *dev, PaioRmwMode mode);

/* fallocate(MODE), a uint64_t[2] range ioctl (BLKDISCARD, BLKZEROOUT) and
 * ftruncate, again after EINTR: 0 or -errno.
 */
int paio_fallocate(int fd, int mode, uint64_t offset, uint64_t length);
int paio_range_ioctl(int fd, unsigned long cmd, uint64_t offset,
                     uint64_t length);
int paio_ftruncate(int fd, uint64_t size);

/* Writes reaching past the size: -ENOSPC unless the device is growable. */
int paio_check_end(PaioDev *dev, uint64_t offset, uint64_t length);

#endif /* TLBD_PAIO_INT_H */
