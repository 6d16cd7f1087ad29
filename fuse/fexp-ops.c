/* tlbd: the FUSE operations of the export.
 *
 * Thread model: libfuse calls every function here from
 * fuse_session_process_buf, which fexp.c runs on the export's IOThread, and
 * the BlockDev posts every completion to the same IOThread.  So nothing here
 * takes a lock: the export's state is touched by one thread only.  No
 * function waits on the disk: a read, write or flush that cannot wait on
 * a device (blockdev_try_*: a memory file system, or the page cache) is
 * done at once and replied to, and so is a buffered write alone in flight
 * (BLOCKDEV_MAY_WAIT); the other data requests (read, write, flush,
 * fsync, fallocate, truncate, lseek) are blockdev_aio_* calls, and the
 * reply is sent from the completion.  Cheap metadata calls (fstat,
 * fstatvfs, futimens) are made inline too.
 *
 * The file is the image: its size is the image's size, st_blocks the
 * image's real allocation.  Writes past the end fail with ENOSPC (or are
 * cut short at the end) unless the export is growable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fexp-int.h"

#define ATTR_TIMEOUT   0.0  /* size and allocation change under us */
#define ENTRY_TIMEOUT  1.0  /* the one name never changes */
#define READ_ALIGN     4096 /* good for O_DIRECT images: no bounce buffer */
#define FEXP_MAX_WRITE (1u << 20) /* libfuse's largest receive buffer */

static int
fill_attr(FuseExport *exp, fuse_ino_t ino, struct stat *st)
{
    struct stat img;

    memset(st, 0, sizeof(*st));
    if (fstat(blockdev_fd(exp->bd), &img) < 0) {
        return -errno;
    }
    st->st_ino = ino;
    st->st_uid = exp->uid;
    st->st_gid = exp->gid;
    st->st_atim = img.st_atim;
    st->st_mtim = img.st_mtim;
    st->st_ctim = img.st_ctim;
    if (!fexp_is_file(exp, ino)) {
        st->st_mode = S_IFDIR | exp->dir_mode_bits;
        st->st_nlink = 2;
        st->st_blksize = 4096;
        return 0;
    }
    st->st_mode = S_IFREG | exp->file_mode;
    st->st_nlink = 1;
    st->st_size = (off_t)blockdev_size(exp->bd);
    st->st_blksize = blockdev_physical_block_size(exp->bd);
    if (st->st_blksize < 4096) {
        st->st_blksize = 4096;
    }
    if (S_ISREG(img.st_mode)) {
        st->st_blocks = img.st_blocks;
    } else {
        st->st_blocks = (blkcnt_t)((blockdev_size(exp->bd) + 511) / 512);
    }
    return 0;
}

static void
reply_attr(FuseExport *exp, fuse_req_t req, fuse_ino_t ino)
{
    struct stat st;
    int ret = fill_attr(exp, ino, &st);
    if (ret < 0) {
        fexp_reply_err(exp, req, -ret);
        return;
    }
    fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void
fexp_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    FuseExport *exp = fuse_req_userdata(req);
    struct fuse_entry_param e;

    if (!exp->dir_mode || parent != FUSE_ROOT_ID || strcmp(name, exp->name)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.ino = FEXP_FILE_INO;
    e.generation = 1;
    e.attr_timeout = ATTR_TIMEOUT;
    e.entry_timeout = ENTRY_TIMEOUT;
    int ret = fill_attr(exp, FEXP_FILE_INO, &e.attr);
    if (ret < 0) {
        fexp_reply_err(exp, req, -ret);
        return;
    }
    fuse_reply_entry(req, &e);
}

static void
fexp_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    reply_attr(fuse_req_userdata(req), req, ino);
}

static void
truncate_done(void *opaque, int64_t ret)
{
    FexpReq *r = opaque;
    FuseExport *exp = r->exp;

    if (ret < 0) {
        fexp_req_fail(r, (int)-ret);
        return;
    }
    reply_attr(exp, r->req, r->length);
    fexp_req_end(r);
}

/* Mode bits may only be taken away, owners never changed, times are set on
 * the image, and the size changes only when the export is growable.
 */
static void
fexp_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
             struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    bool is_file = fexp_is_file(exp, ino);
    (void)fi;

    if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != exp->uid) {
        fexp_reply_err(exp, req, EPERM);
        return;
    }
    if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != exp->gid) {
        fexp_reply_err(exp, req, EPERM);
        return;
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
        mode_t base = is_file ? exp->base_mode : exp->dir_mode_bits;
        if ((attr->st_mode & 07777) & ~base) {
            fexp_reply_err(exp, req, EPERM);
            return;
        }
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (!is_file) {
            fexp_reply_err(exp, req, EISDIR);
            return;
        }
        if (exp->readonly) {
            fexp_reply_err(exp, req, EROFS);
            return;
        }
        if (!exp->growable &&
            (uint64_t)attr->st_size != blockdev_size(exp->bd)) {
            fexp_reply_err(exp, req, EPERM);
            return;
        }
    }
    if (is_file && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
        struct timespec ts[2] = {
            { .tv_nsec = UTIME_OMIT },
            { .tv_nsec = UTIME_OMIT },
        };
        if (exp->readonly) {
            fexp_reply_err(exp, req, EROFS);
            return;
        }
        if (to_set & FUSE_SET_ATTR_ATIME) {
            ts[0] = attr->st_atim;
            if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
                ts[0].tv_nsec = UTIME_NOW;
            }
        }
        if (to_set & FUSE_SET_ATTR_MTIME) {
            ts[1] = attr->st_mtim;
            if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
                ts[1].tv_nsec = UTIME_NOW;
            }
        }
        if (futimens(blockdev_fd(exp->bd), ts) < 0) {
            fexp_reply_err(exp, req, errno);
            return;
        }
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
        if (is_file) {
            exp->file_mode = attr->st_mode & 07777;
        } else {
            exp->dir_mode_bits = attr->st_mode & 07777;
        }
    }
    if ((to_set & FUSE_SET_ATTR_SIZE) &&
        (uint64_t)attr->st_size != blockdev_size(exp->bd)) {
        FexpReq *r = fexp_req_new(exp, req);
        if (!r) {
            fexp_reply_err(exp, req, ENOMEM);
            return;
        }
        r->offset = (uint64_t)attr->st_size;
        r->length = ino;
        exp->stats.truncates++;
        int ret = blockdev_aio_truncate(exp->bd, r->offset, truncate_done, r);
        if (ret < 0) {
            fexp_req_fail(r, -ret);
        }
        return;
    }
    reply_attr(exp, req, ino);
}

static void
fexp_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    uint32_t flags = 0;

    if (!fexp_is_file(exp, ino)) {
        fexp_reply_err(exp, req, EISDIR);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY && exp->readonly) {
        fexp_reply_err(exp, req, EROFS);
        return;
    }
    if (exp->direct_io) {
        /* Writes to one file may then run in parallel in the kernel; the
         * BlockDev orders nothing, as a disk does not.
         */
        flags |= FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
    }
    fexp_reply_open_flags(exp, req, flags);
}

static void
fexp_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    fuse_reply_err(req, 0);
}

/* libfuse, on the I/O thread, when the kernel sends an INTERRUPT for R's
 * request (or at once if it came first), or submit_interruptible for the
 * INTERRUPT the kernel does not send: a request still queued in the pool
 * is taken back and answered EINTR (read_done or write_done, through
 * fexp_req_fail, later on this thread); an injected delay is cut short; a
 * running request completes as usual.  Once per request, though both may
 * come.
 */
static void
req_interrupted(fuse_req_t req, void *data)
{
    FexpReq *r = data;

    (void)req;
    if (r->interrupted) {
        return;
    }
    r->interrupted = true;
    r->exp->stats.interrupts++;
    if (blockdev_aio_interrupt(r->aio)) {
        r->exp->stats.cancelled++;
    }
}

/* Send R's read or write (R->iov at R->offset) to the pool, or its flush
 * (FLUSH true); an INTERRUPT may then take it back.  A process killed
 * while it waits sends an INTERRUPT for its read, then one for the FLUSH
 * of its close, which the kernel waits out: both must leave the queue.
 * Over io_uring the kernel never sends the FLUSH's INTERRUPT: it is taken
 * as sent.
 */
static void
submit_interruptible(FexpReq *r, bool write, bool flush,
                     BlockDevCompleteFn *done)
{
    int ret = flush ? blockdev_aio_flush_intr(r->exp->bd, done, r, &r->aio)
                    : blockdev_aio_rw_intr(r->exp->bd, write, r->offset,
                                           &r->iov, 1, 0, done, r, &r->aio);
    if (ret < 0) {
        fexp_req_fail(r, -ret);
        return;
    }
    fuse_req_interrupt_func(r->req, req_interrupted, r);
    if (flush && fexp_uring_interrupt_lost(r->exp, fuse_req_ctx(r->req)->pid)) {
        r->exp->stats.ring_interrupts++;
        req_interrupted(r->req, r);
    }
}

static void
read_done(void *opaque, int64_t ret)
{
    FexpReq *r = opaque;
    FuseExport *exp = r->exp;

    if (ret < 0) {
        fexp_req_fail(r, (int)-ret);
        return;
    }
    exp->stats.bytes_read += r->length;
    fuse_reply_buf(r->req, r->buf, r->length);
    fexp_req_end(r);
}

/* Short at the end of the image, empty past it. */
static void
fexp_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
          struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    uint64_t end = blockdev_size(exp->bd);
    (void)fi;

    if (!fexp_is_file(exp, ino)) {
        fexp_reply_err(exp, req, EISDIR);
        return;
    }
    exp->stats.reads++;
    if (off < 0 || (uint64_t)off >= end || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > end - (uint64_t)off) {
        size = end - (uint64_t)off;
    }
    FexpReq *r = fexp_req_new(exp, req);
    if (!r) {
        fexp_reply_err(exp, req, ENOMEM);
        return;
    }
    if ((r->buf = fexp_uring_payload(exp, size)) != NULL) {
        r->buf_ring = true; /* read into the ring entry: no copy */
    } else if (size <= exp->buf_size) {
        r->buf = fexp_buf_get(exp);
        r->buf_pooled = true;
    } else if (posix_memalign(&r->buf, READ_ALIGN, size)) {
        r->buf = NULL;
    }
    if (!r->buf) {
        fexp_req_fail(r, ENOMEM);
        return;
    }
    r->offset = (uint64_t)off;
    r->length = size;
    r->iov.iov_base = r->buf;
    r->iov.iov_len = size;
    int64_t done;
    if (blockdev_try_preadv(exp->bd, r->offset, &r->iov, 1, &done)) {
        exp->stats.inline_ops++;
        read_done(r, done);
        return;
    }
    submit_interruptible(r, false, false, read_done);
}

static void
write_done(void *opaque, int64_t ret)
{
    FexpReq *r = opaque;
    FuseExport *exp = r->exp;

    if (ret < 0) {
        fexp_req_fail(r, (int)-ret);
        return;
    }
    exp->stats.bytes_written += r->length;
    fuse_reply_write(r->req, r->length);
    fexp_req_end(r);
}

/* The data stays in the receive buffer it arrived in: the request takes
 * that buffer over until the write completes, and the next request is read
 * into another one.
 */
static void
fexp_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
           off_t off, struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    (void)fi;

    if (!fexp_is_file(exp, ino)) {
        fexp_reply_err(exp, req, EISDIR);
        return;
    }
    exp->stats.writes++;
    if (exp->readonly) {
        fexp_reply_err(exp, req, EROFS);
        return;
    }
    if (off < 0) {
        fexp_reply_err(exp, req, EINVAL);
        return;
    }
    if (size == 0) {
        fuse_reply_write(req, 0);
        return;
    }
    if (!exp->growable) {
        uint64_t end = blockdev_size(exp->bd);
        if ((uint64_t)off >= end) {
            fexp_reply_err(exp, req, ENOSPC);
            return;
        }
        if (size > end - (uint64_t)off) {
            size = end - (uint64_t)off; /* short write at the end */
        }
    }
    FexpReq *r = fexp_req_new(exp, req);
    if (!r) {
        fexp_reply_err(exp, req, ENOMEM);
        return;
    }
    r->offset = (uint64_t)off;
    r->length = size;
    r->iov.iov_base = (void *)buf;
    r->iov.iov_len = size;
    int64_t done;
    /* Alone in flight, a write may take the I/O thread: no other request
     * waits on it, and the kernel runs buffered writes to one file one at
     * a time (the inode lock) whichever thread makes them.
     */
    unsigned flags = exp->stats.in_flight == 1 ? BLOCKDEV_MAY_WAIT : 0;
    if (blockdev_try_pwritev(exp->bd, r->offset, &r->iov, 1, flags, &done)) {
        /* Done already: the receive buffer stays where it is. */
        exp->stats.inline_ops++;
        write_done(r, done);
        return;
    }
    r->buf = fexp_take_rbuf(exp);
    r->buf_pooled = true;
    r->is_write = true;
    if (++exp->stats.writes_in_flight > exp->stats.peak_writes_in_flight) {
        exp->stats.peak_writes_in_flight = exp->stats.writes_in_flight;
    }
    exp->stats.handoffs++;
    submit_interruptible(r, true, false, write_done);
}

static void
status_done(void *opaque, int64_t ret)
{
    FexpReq *r = opaque;
    if (ret < 0) {
        fexp_req_fail(r, (int)-ret);
        return;
    }
    fuse_reply_err(r->req, 0);
    fexp_req_end(r);
}

/* fsync, fdatasync and close all become fdatasync of the image. */
static void
do_flush(FuseExport *exp, fuse_req_t req)
{
    if (exp->readonly) {
        fuse_reply_err(req, 0);
        return;
    }
    FexpReq *r = fexp_req_new(exp, req);
    if (!r) {
        fexp_reply_err(exp, req, ENOMEM);
        return;
    }
    int done;
    if (blockdev_try_flush(exp->bd, &done)) {
        exp->stats.inline_ops++;
        status_done(r, done);
        return;
    }
    submit_interruptible(r, false, true, status_done);
}

static void
fexp_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    (void)ino;
    (void)fi;
    exp->stats.flushes++;
    do_flush(exp, req);
}

static void
fexp_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
           struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    (void)ino;
    (void)datasync;
    (void)fi;
    exp->stats.fsyncs++;
    do_flush(exp, req);
}

/* PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE[|KEEP_SIZE]; both read back zeros.
 * Plain allocation is refused: the image cannot promise it.
 */
static void
fexp_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
               off_t length, struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    uint64_t size = blockdev_size(exp->bd);
    uint64_t end;
    int ret;
    (void)fi;

    exp->stats.fallocates++;
    if (!fexp_is_file(exp, ino)) {
        fexp_reply_err(exp, req, EISDIR);
        return;
    }
    if (exp->readonly) {
        fexp_reply_err(exp, req, EROFS);
        return;
    }
    if (offset < 0 || length <= 0) {
        fexp_reply_err(exp, req, EINVAL);
        return;
    }
    if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
                  FALLOC_FL_ZERO_RANGE)) ||
        !(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) ||
        ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))) {
        fexp_reply_err(exp, req, EOPNOTSUPP);
        return;
    }
    end = (uint64_t)offset + (uint64_t)length;
    if (end > size) {
        if (mode & FALLOC_FL_KEEP_SIZE) {
            end = size;
        } else if (!exp->growable) {
            fexp_reply_err(exp, req, ENOSPC);
            return;
        }
    }
    if ((uint64_t)offset >= end) {
        fuse_reply_err(req, 0);
        return;
    }
    FexpReq *r = fexp_req_new(exp, req);
    if (!r) {
        fexp_reply_err(exp, req, ENOMEM);
        return;
    }
    r->offset = (uint64_t)offset;
    r->length = end - (uint64_t)offset;
    if ((mode & FALLOC_FL_PUNCH_HOLE) && !blockdev_is_blockdev(exp->bd)) {
        /* A hole in a regular file reads back as zeros. */
        ret = blockdev_aio_discard(exp->bd, r->offset, r->length, 0,
                                   status_done, r);
    } else {
        unsigned flags = (mode & FALLOC_FL_PUNCH_HOLE) ? BLOCKDEV_MAY_TRIM : 0;
        ret = blockdev_aio_write_zeroes(exp->bd, r->offset, r->length, flags,
                                        status_done, r);
    }
    if (ret < 0) {
        fexp_req_fail(r, -ret);
    }
}

static void
lseek_done(void *opaque, int64_t ret)
{
    FexpReq *r = opaque;
    FuseExport *exp = r->exp;
    uint64_t size = blockdev_size(exp->bd);

    if (ret < 0) {
        fexp_reply_err(exp, r->req, (int)-ret);
    } else if ((uint64_t)ret > size) {
        /* The file behind may be longer than the image says. */
        if (r->whence == SEEK_HOLE) {
            fuse_reply_lseek(r->req, (off_t)size);
        } else {
            fexp_reply_err(exp, r->req, ENXIO);
        }
    } else {
        fuse_reply_lseek(r->req, (off_t)ret);
    }
    fexp_req_end(r);
}

/* SEEK_DATA and SEEK_HOLE on the image, on a worker: on some file systems
 * they read metadata from disk.
 */
static void
fexp_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
           struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    (void)fi;

    exp->stats.lseeks++;
    if (!fexp_is_file(exp, ino)) {
        fexp_reply_err(exp, req, EISDIR);
        return;
    }
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fexp_reply_err(exp, req, EINVAL);
        return;
    }
    if (off < 0 || (uint64_t)off >= blockdev_size(exp->bd)) {
        fexp_reply_err(exp, req, ENXIO);
        return;
    }
    FexpReq *r = fexp_req_new(exp, req);
    if (!r) {
        fexp_reply_err(exp, req, ENOMEM);
        return;
    }
    r->offset = (uint64_t)off;
    r->whence = whence;
    int ret = blockdev_aio_lseek(exp->bd, r->offset, whence, lseek_done, r);
    if (ret < 0) {
        fexp_req_fail(r, -ret);
    }
}

static void
fexp_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             struct fuse_file_info *fi)
{
    FuseExport *exp = fuse_req_userdata(req);
    const char *names[] = { ".", "..", exp->name };
    fuse_ino_t inos[] = { FUSE_ROOT_ID, FUSE_ROOT_ID, FEXP_FILE_INO };
    char buf[1024];
    size_t len = 0;
    (void)fi;

    if (fexp_is_file(exp, ino)) {
        fexp_reply_err(exp, req, ENOTDIR);
        return;
    }
    for (off_t i = off; i < 3; i++) {
        struct stat st = { .st_ino = inos[i] };
        st.st_mode = i == 2 ? S_IFREG : S_IFDIR;
        size_t n = fuse_add_direntry(req, buf + len, sizeof(buf) - len,
                                     names[i], &st, i + 1);
        if (n > sizeof(buf) - len || len + n > size) {
            break;
        }
        len += n;
    }
    fuse_reply_buf(req, buf, len);
}

static void
fexp_statfs(fuse_req_t req, fuse_ino_t ino)
{
    FuseExport *exp = fuse_req_userdata(req);
    struct statvfs sv;
    (void)ino;

    if (fstatvfs(blockdev_fd(exp->bd), &sv) < 0) {
        fexp_reply_err(exp, req, errno);
        return;
    }
    fuse_reply_statfs(req, &sv);
}

/* Negotiate large requests and enough background requests for async
 * direct I/O at a queue depth of 32; receive into memory, never a pipe, so
 * a write can keep its buffer.
 */
static void
fexp_init(void *userdata, struct fuse_conn_info *conn)
{
    FuseExport *exp = userdata;

    conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
                    FUSE_CAP_SPLICE_MOVE | FUSE_CAP_WRITEBACK_CACHE);
    /* O_TRUNC then arrives as a SETATTR, where the size rules live. */
    conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_ASYNC_DIO) {
        conn->want |= FUSE_CAP_ASYNC_DIO;
    }
    if (conn->capable & FUSE_CAP_ASYNC_READ) {
        conn->want |= FUSE_CAP_ASYNC_READ;
    }
    if (conn->max_write > FEXP_MAX_WRITE) {
        conn->max_write = FEXP_MAX_WRITE;
    }
    /* libfuse insists that init repeats the mount's max_read. */
    conn->max_read = exp->max_read;
    conn->max_background = 64;
    conn->congestion_threshold = 48;
    exp->stats.max_write = conn->max_write;
    exp->stats.max_read = conn->max_read;
    exp->stats.max_background = conn->max_background;
}

const struct fuse_lowlevel_ops fexp_ops = {
    .init = fexp_init,
    .lookup = fexp_lookup,
    .getattr = fexp_getattr,
    .setattr = fexp_setattr,
    .open = fexp_open,
    .release = fexp_release,
    .read = fexp_read,
    .write = fexp_write,
    .flush = fexp_flush,
    .fsync = fexp_fsync,
    .fallocate = fexp_fallocate,
    .lseek = fexp_lseek,
    .readdir = fexp_readdir,
    .statfs = fexp_statfs,
    .ioctl = fexp_ioctl,
};
