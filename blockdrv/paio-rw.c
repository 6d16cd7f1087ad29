/* tlbd: paio's read and write handlers, run on threadlet workers.
 *
 * preadv/pwritev (pread/pwrite for one segment) loop on EINTR and on short
 * transfers; a read that meets end of file is zero-filled; a write that
 * makes no progress fails with -EIO.  On an O_DIRECT device a request whose
 * offset, length or buffers are not aligned goes through an aligned bounce
 * buffer: reads read the covering blocks and copy out, writes read the
 * partial first and last blocks, copy in and write the covering blocks.
 * The bounce buffer holds at most PAIO_BOUNCE_MAX bytes; a longer request
 * goes through it piece by piece, so a worker never holds more than that
 * however large the request.
 *
 * paio_write_range is the write path without the request around it;
 * write-zeroes uses it for its plain writes of zeroes (paio-zero.c).
 *
 * Locking: a write that read-modify-writes a partial block, or that extends
 * the file, holds dev->rmw_lock exclusively; other O_DIRECT writes hold it
 * shared (paio-util.c says why).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paio-int.h"

typedef struct IovCursor {
    const struct iovec *iov;
    int niov;
    int idx;    /* current segment */
    size_t off; /* bytes of it already done */
} IovCursor;

uint64_t
paio_iov_total(const struct iovec *iov, int niov)
{
    uint64_t total = 0;
    for (int i = 0; i < niov; i++) {
        total += iov[i].iov_len;
    }
    return total;
}

static void
cursor_advance(IovCursor *c, size_t n)
{
    while (n > 0 && c->idx < c->niov) {
        size_t left = c->iov[c->idx].iov_len - c->off;
        if (n < left) {
            c->off += n;
            return;
        }
        n -= left;
        c->idx++;
        c->off = 0;
    }
    /* Skip empty segments so the window starts with data. */
    while (c->idx < c->niov && c->iov[c->idx].iov_len == c->off) {
        c->idx++;
        c->off = 0;
    }
}

/* Describe what is left of C in WIN (up to MAX entries). */
static int
cursor_window(const IovCursor *c, struct iovec *win, int max)
{
    int n = 0;
    for (int i = c->idx; i < c->niov && n < max; i++, n++) {
        size_t skip = i == c->idx ? c->off : 0;
        win[n].iov_base = (char *)c->iov[i].iov_base + skip;
        win[n].iov_len = c->iov[i].iov_len - skip;
    }
    return n;
}

/* Copy LEN bytes between IOV (from byte SKIP on) and BUF; a NULL BUF
 * zeroes that part of IOV instead.
 */
static void
iov_copy(const struct iovec *iov, int niov, uint64_t skip, char *buf,
         uint64_t len, bool to_iov)
{
    for (int i = 0; i < niov && len > 0; i++) {
        size_t seg = iov[i].iov_len;
        if (skip >= seg) {
            skip -= seg;
            continue;
        }
        size_t n = seg - skip < len ? seg - skip : len;
        char *p = (char *)iov[i].iov_base + skip;
        if (!buf) {
            memset(p, 0, n);
        } else if (to_iov) {
            memcpy(p, buf, n);
        } else {
            memcpy(buf, p, n);
        }
        buf = buf ? buf + n : NULL;
        len -= n;
        skip = 0;
    }
}

/* Move TOTAL bytes between IOV and FD at OFFSET.  Returns the bytes done
 * (fewer than TOTAL only for a read that reached end of file) or -errno.
 */
static int64_t
rw_loop(int fd, const struct iovec *iov, int niov, uint64_t offset,
        uint64_t total, bool write)
{
    struct iovec win[PAIO_IOV_MAX];
    IovCursor cur = { .iov = iov, .niov = niov };
    uint64_t done = 0;

    while (done < total) {
        off_t pos = (off_t)(offset + done);
        ssize_t n;

        if (done == 0 && niov == 1) {
            n = write ? pwrite(fd, iov[0].iov_base, iov[0].iov_len, pos)
                      : pread(fd, iov[0].iov_base, iov[0].iov_len, pos);
        } else if (done == 0) {
            n = write ? pwritev(fd, iov, niov, pos)
                      : preadv(fd, iov, niov, pos);
        } else {
            int nwin = cursor_window(&cur, win, PAIO_IOV_MAX);
            n = write ? pwritev(fd, win, nwin, pos)
                      : preadv(fd, win, nwin, pos);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            if (write) {
                return -EIO; /* no progress and no reason given */
            }
            break; /* end of file */
        }
        done += (uint64_t)n;
        cursor_advance(&cur, (size_t)n);
    }
    return (int64_t)done;
}

bool
paio_iov_aligned(const PaioDev *dev, const struct iovec *iov, int niov,
                 uint64_t offset, uint64_t total)
{
    uint64_t mask = dev->alignment - 1;

    if ((offset & mask) || (total & mask)) {
        return false;
    }
    for (int i = 0; i < niov; i++) {
        if (((uintptr_t)iov[i].iov_base & mask) || (iov[i].iov_len & mask)) {
            return false;
        }
    }
    return true;
}

/* Read [OFFSET, OFFSET+LEN) into BUF, zero-filling past end of file. */
static int
read_flat(int fd, char *buf, uint64_t offset, uint64_t len)
{
    struct iovec v = { .iov_base = buf, .iov_len = len };
    int64_t n = rw_loop(fd, &v, 1, offset, len, false);

    if (n < 0) {
        return (int)n;
    }
    memset(buf + n, 0, len - (uint64_t)n);
    return 0;
}

static char *
bounce_alloc(const PaioDev *dev, uint64_t len)
{
    void *buf = NULL;
    size_t align = dev->alignment < 4096 ? 4096 : dev->alignment;

    if (len > SIZE_MAX || posix_memalign(&buf, align, (size_t)len) != 0) {
        return NULL;
    }
    return buf;
}

/* Read or write IOV, TOTAL bytes at OFFSET, through an aligned bounce buffer
 * of at most PAIO_BOUNCE_MAX bytes (or one block, if blocks are larger), one
 * piece of the covering aligned range at a time.  A write first reads the
 * partial blocks at either end of the range (only the first piece can hold
 * the first, only the last the last); the caller then holds rmw_lock
 * exclusively.  Returns TOTAL or -errno.
 */
static int64_t
bounce_rw(PaioDev *dev, const struct iovec *iov, int niov, uint64_t offset,
          uint64_t total, bool write)
{
    uint64_t a = dev->alignment;
    uint64_t end = offset + total;
    uint64_t astart = offset & ~(a - 1);
    uint64_t aend = (end + a - 1) & ~(a - 1);
    uint64_t max = PAIO_BOUNCE_MAX > a ? PAIO_BOUNCE_MAX & ~(a - 1) : a;
    uint64_t buflen = aend - astart < max ? aend - astart : max;
    CLEANUP_FREE char *buf = bounce_alloc(dev, buflen);
    uint64_t clen;
    int ret;

    if (!buf) {
        return -ENOMEM;
    }
    for (uint64_t cs = astart; cs < aend; cs += clen) {
        clen = aend - cs < buflen ? aend - cs : buflen;
        uint64_t ce = cs + clen;
        uint64_t us = offset > cs ? offset : cs; /* the caller's bytes */
        uint64_t ue = end < ce ? end : ce;       /* in this piece */

        if (!write) {
            ret = read_flat(dev->fd, buf, cs, clen);
            if (ret < 0) {
                return ret;
            }
            iov_copy(iov, niov, us - offset, buf + (us - cs), ue - us, true);
            continue;
        }
        if (us > cs) {
            ret = read_flat(dev->fd, buf, cs, a);
            if (ret < 0) {
                return ret;
            }
        }
        if (ue < ce && (clen > a || us == cs)) {
            ret = read_flat(dev->fd, buf + clen - a, ce - a, a);
            if (ret < 0) {
                return ret;
            }
        }
        iov_copy(iov, niov, us - offset, buf + (us - cs), ue - us, false);
        struct iovec v = { .iov_base = buf, .iov_len = clen };
        int64_t n = rw_loop(dev->fd, &v, 1, cs, clen, true);
        if (n < 0) {
            return n;
        }
    }
    return (int64_t)total;
}

int64_t
paio_handle_read(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    const struct iovec *iov = req->u.rw.iov;
    int niov = req->u.rw.niov;
    uint64_t total = paio_iov_total(iov, niov);
    int64_t n;

    if (total == 0) {
        return 0;
    }
    if (dev->direct && !paio_iov_aligned(dev, iov, niov, req->offset, total)) {
        return bounce_rw(dev, iov, niov, req->offset, total, false);
    }
    n = rw_loop(dev->fd, iov, niov, req->offset, total, false);
    if (n < 0) {
        return n;
    }
    iov_copy(iov, niov, (uint64_t)n, NULL, total - (uint64_t)n, true);
    return (int64_t)total;
}

/* Write through the bounce buffer and leave the file's size right; caller
 * holds rmw_lock exclusively.
 */
static int64_t
bounce_write_locked(PaioDev *dev, const struct iovec *iov, int niov,
                    uint64_t offset, uint64_t total)
{
    uint64_t a = dev->alignment;
    uint64_t end = offset + total;
    uint64_t aend = (end + a - 1) & ~(a - 1);
    uint64_t size = atomic_load(&dev->size);
    uint64_t new_size = end > size ? end : size;
    int64_t n = bounce_rw(dev, iov, niov, offset, total, true);

    if (n < 0) {
        return n;
    }
    if (aend > new_size && !dev->is_blockdev) {
        /* The covering block reached past the image: cut it back. */
        int ret = paio_ftruncate(dev->fd, new_size);
        if (ret < 0) {
            return ret;
        }
    }
    atomic_store(&dev->size, new_size);
    return n;
}

int64_t
paio_write_range(PaioDev *dev, const struct iovec *iov, int niov,
                 uint64_t offset, uint64_t total)
{
    uint64_t mask = dev->alignment - 1;
    PaioRmwMode mode = paio_rmw_mode(dev, offset, total);
    bool bounce =
        dev->direct && !paio_iov_aligned(dev, iov, niov, offset, total);
    int64_t n;

    if (bounce && ((offset & mask) || (total & mask))) {
        mode = PAIO_RMW_EXCLUSIVE;
    }
    paio_rmw_lock(dev, mode);
    if (bounce && mode == PAIO_RMW_EXCLUSIVE) {
        n = bounce_write_locked(dev, iov, niov, offset, total);
    } else if (bounce) {
        /* Whole blocks from a misaligned buffer: copy, no reads. */
        n = bounce_rw(dev, iov, niov, offset, total, true);
    } else {
        n = rw_loop(dev->fd, iov, niov, offset, total, true);
        if (n >= 0) {
            paio_grow_size(dev, offset + total);
        }
    }
    paio_rmw_unlock(dev, mode);
    return n;
}

int64_t
paio_handle_write(PaioRequest *req)
{
    PaioDev *dev = req->dev;
    uint64_t total = paio_iov_total(req->u.rw.iov, req->u.rw.niov);
    int64_t n;
    int ret;

    ret = paio_check_end(dev, req->offset, total);
    if (ret < 0) {
        return ret;
    }
    if (total > 0) {
        n = paio_write_range(dev, req->u.rw.iov, req->u.rw.niov, req->offset,
                             total);
        if (n < 0) {
            return n;
        }
    }
    if (req->flags & PAIO_FUA) {
        ret = paio_do_flush(dev);
        if (ret < 0) {
            return ret;
        }
    }
    return (int64_t)total;
}
