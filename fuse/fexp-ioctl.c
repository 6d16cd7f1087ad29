/* tlbd: block-device ioctls on the exported FUSE file.
 *
 * The file answers BLKGETSIZE64, BLKSSZGET, BLKPBSZGET, BLKROGET,
 * BLKDISCARD, BLKZEROOUT and BLKFLSBUF as a block device of the image's size
 * and sector size would.  When the image is a block device the question goes
 * to it as a paio ioctl request (BLKGETSIZE64, BLKSSZGET, BLKPBSZGET,
 * BLKROGET, BLKFLSBUF) or as a paio discard / write-zeroes request (which
 * issue BLKDISCARD / BLKZEROOUT on a worker); when it is a regular file the
 * answer comes from what the BlockDev knows (size, sector sizes, read-only)
 * and the changes become paio requests too (discard punches a hole,
 * zeroout zeroes the range, BLKFLSBUF is fdatasync).  Any other ioctl gets
 * ENOTTY; BLKDISCARD and BLKZEROOUT get EROFS on a read-only export, and
 * EINVAL for a range that is not whole sectors inside the image, as the
 * kernel answers them on a block device.
 *
 * How the argument travels: for a regular FUSE file (not CUSE) the kernel
 * runs every ioctl "restricted": it copies _IOC_SIZE(cmd) bytes in (for
 * _IOW) and out (for _IOR), and FUSE_IOCTL_RETRY is refused.  BLKGETSIZE64
 * is _IOR(0x12, 114, size_t), so its 8 bytes come back in the reply.  All
 * the others are _IO(0x12, n): the kernel moves no data and hands over only
 * the argument's value, the caller's pointer.  tlbd reads the uint64_t[2]
 * range of BLKDISCARD/BLKZEROOUT and writes the int answer of
 * BLKSSZGET/BLKPBSZGET/BLKROGET in the calling thread's memory with
 * process_vm_readv/process_vm_writev (the caller is blocked in ioctl(2)
 * meanwhile).  That needs ptrace access to the caller (tlbd run as root, or
 * as the caller's user where Yama allows it); without it these ioctls fail
 * with EPERM.  FS_IOC_FIEMAP and FIGETBSZ never reach the file system:
 * the kernel answers them itself (FIEMAP with EOPNOTSUPP, since FUSE has no
 * fiemap).
 *
 * Threads: called by libfuse on the export's IOThread, where the
 * completions run too.  The copies to and from the caller (at most 16 bytes)
 * are made there; everything that touches the image goes to the pool.  With
 * --direct-io=off the kernel caches the file's pages, so after a discard or
 * zeroout a worker of the global threadlet queue invalidates the range
 * (fuse_lowlevel_notify_inval_inode may wait for a page a pending read
 * holds, which the IOThread must stay free to answer) before the reply.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "fexp-int.h"
#include "threadlet.h"

typedef struct IoctlReq {
    FexpReq *r;
    ThreadletWork work; /* invalidates the kernel's cached pages */
    fuse_ino_t ino;
    uint64_t offset; /* BLKDISCARD, BLKZEROOUT */
    uint64_t length;
    unsigned int cmd;
    void *uarg; /* the caller's argument, a pointer */
    pid_t pid;  /* the calling thread */
    union {
        uint64_t u64;   /* BLKGETSIZE64 */
        int i;          /* BLKSSZGET, BLKROGET */
        unsigned int u; /* BLKPBSZGET */
    } val;
} IoctlReq;

/* Copy LEN bytes between BUF and ADDR in process PID. */
static int
peer_copy(pid_t pid, void *addr, void *buf, size_t len, bool to_peer)
{
    struct iovec local = { .iov_base = buf, .iov_len = len };
    struct iovec remote = { .iov_base = addr, .iov_len = len };
    ssize_t n;

    if (pid <= 0) {
        return -EPERM; /* the caller is not visible from here */
    }
    n = to_peer ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
                : process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0) {
        return errno == ESRCH ? -EPERM : -errno;
    }
    return (size_t)n == len ? 0 : -EFAULT;
}

/* Answer an int-valued ioctl: write VAL where the caller pointed. */
static void
reply_int(FuseExport *exp, fuse_req_t req, const IoctlReq *io, int val)
{
    int ret = peer_copy(io->pid, io->uarg, &val, sizeof(val), true);

    if (ret < 0) {
        fexp_reply_err(exp, req, -ret);
        return;
    }
    fuse_reply_ioctl(req, 0, NULL, 0);
}

/* On a worker: drop the kernel's cached pages of the changed range; it
 * may wait for a page lock held by a read that the IOThread will answer.
 */
static void
inval_work(ThreadletWork *work)
{
    IoctlReq *io = container_of(work, IoctlReq, work);

    fuse_lowlevel_notify_inval_inode(io->r->exp->se, io->ino, (off_t)io->offset,
                                     (off_t)io->length);
}

/* Back on the IOThread: the range is changed and no longer cached. */
static void
inval_done(ThreadletWork *work)
{
    IoctlReq *io = container_of(work, IoctlReq, work);

    fuse_reply_ioctl(io->r->req, 0, NULL, 0);
    fexp_req_end(io->r);
}

static void
ioctl_done(void *opaque, int64_t ret)
{
    FexpReq *r = opaque;
    IoctlReq *io = r->buf;

    if (ret < 0) {
        fexp_req_fail(r, (int)-ret);
        return;
    }
    if ((io->cmd == BLKDISCARD || io->cmd == BLKZEROOUT) &&
        !r->exp->direct_io) {
        /* The FUSE file has a page cache: invalidate it, then reply. */
        ThreadletQueue *q = threadlet_global_queue(); /* NULL: no memory */
        io->work.func = inval_work;
        if (q && threadlet_submit_complete(q, &io->work, r->exp->io,
                                           inval_done) == 0) {
            return;
        }
        fexp_req_fail(r, ENOMEM);
        return;
    }
    switch (io->cmd) {
    case BLKGETSIZE64:
        fuse_reply_ioctl(r->req, 0, &io->val.u64, sizeof(io->val.u64));
        break;
    case BLKSSZGET:
        reply_int(r->exp, r->req, io, io->val.i);
        break;
    case BLKPBSZGET:
        reply_int(r->exp, r->req, io, (int)io->val.u);
        break;
    case BLKROGET:
        reply_int(r->exp, r->req, io, io->val.i || r->exp->readonly);
        break;
    default: /* BLKDISCARD, BLKZEROOUT, BLKFLSBUF */
        fuse_reply_ioctl(r->req, 0, NULL, 0);
        break;
    }
    fexp_req_end(r);
}

/* Read and check the uint64_t[2] range of BLKDISCARD/BLKZEROOUT. */
static int
get_range(FuseExport *exp, IoctlReq *io, uint64_t *offset, uint64_t *length)
{
    uint64_t range[2];
    uint64_t sector = blockdev_logical_block_size(exp->bd);
    int ret;

    if (exp->readonly) {
        return -EROFS;
    }
    ret = peer_copy(io->pid, io->uarg, range, sizeof(range), false);
    if (ret < 0) {
        return ret;
    }
    *offset = range[0];
    *length = range[1];
    if (sector == 0) {
        sector = 512;
    }
    if (*offset % sector || *length % sector || *offset + *length < *offset ||
        *offset + *length > blockdev_size(exp->bd)) {
        return -EINVAL;
    }
    return 0;
}

/* Start the paio request for IO; 0 when its completion will reply. */
static int
submit(FexpReq *r, IoctlReq *io)
{
    FuseExport *exp = r->exp;
    BlockDev *bd = exp->bd;
    bool dev = blockdev_is_blockdev(bd);
    uint64_t offset;
    uint64_t length;
    int ret;

    switch (io->cmd) {
    case BLKDISCARD:
    case BLKZEROOUT:
        ret = get_range(exp, io, &offset, &length);
        if (ret < 0) {
            return ret;
        }
        io->offset = offset;
        io->length = length;
        if (io->cmd == BLKDISCARD) {
            return blockdev_aio_discard(bd, offset, length, 0, ioctl_done, r);
        }
        return blockdev_aio_write_zeroes(bd, offset, length, 0, ioctl_done, r);
    case BLKFLSBUF:
        if (dev) {
            return blockdev_aio_ioctl(bd, BLKFLSBUF, NULL, ioctl_done, r);
        }
        return blockdev_aio_flush(bd, ioctl_done, r);
    default:
        break;
    }
    if (dev) {
        /* The device answers for itself, on a worker. */
        return blockdev_aio_ioctl(bd, io->cmd, &io->val, ioctl_done, r);
    }
    switch (io->cmd) {
    case BLKGETSIZE64:
        io->val.u64 = blockdev_size(bd);
        break;
    case BLKSSZGET:
        io->val.i = (int)blockdev_logical_block_size(bd);
        break;
    case BLKPBSZGET:
        io->val.u = blockdev_physical_block_size(bd);
        break;
    default: /* BLKROGET */
        io->val.i = blockdev_is_readonly(bd);
        break;
    }
    ioctl_done(r, 0);
    return 0;
}

static bool
answered(unsigned int cmd)
{
    return cmd == BLKGETSIZE64 || cmd == BLKSSZGET || cmd == BLKPBSZGET ||
           cmd == BLKROGET || cmd == BLKDISCARD || cmd == BLKZEROOUT ||
           cmd == BLKFLSBUF;
}

void
fexp_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
           struct fuse_file_info *fi, unsigned flags, const void *in_buf,
           size_t in_bufsz, size_t out_bufsz)
{
    FuseExport *exp = fuse_req_userdata(req);
    FexpReq *r;
    IoctlReq *io;
    int ret;
    (void)fi;
    (void)in_buf;
    (void)in_bufsz;

    if (!fexp_is_file(exp, ino) || (flags & FUSE_IOCTL_COMPAT) ||
        !answered(cmd)) {
        fexp_reply_err(exp, req, ENOTTY);
        return;
    }
    if (cmd == BLKGETSIZE64 && out_bufsz < sizeof(uint64_t)) {
        fexp_reply_err(exp, req, EINVAL);
        return;
    }
    r = fexp_req_new(exp, req);
    io = calloc(1, sizeof(*io));
    if (!r || !io) {
        free(io);
        if (r) {
            fexp_req_fail(r, ENOMEM);
        } else {
            fexp_reply_err(exp, req, ENOMEM);
        }
        return;
    }
    r->buf = io; /* freed by fexp_req_end */
    io->r = r;
    io->ino = ino;
    io->cmd = cmd;
    io->uarg = arg;
    io->pid = fuse_req_ctx(req)->pid;
    ret = submit(r, io);
    if (ret < 0) {
        fexp_req_fail(r, -ret);
    }
}
