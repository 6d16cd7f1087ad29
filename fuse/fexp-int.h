/* tlbd: what fexp.c (session, dispatch, lifecycle) and fexp-ops.c (the
 * FUSE operations) share.  Everything here is used on the export's
 * IOThread only.
 */
#ifndef TLBD_FEXP_INT_H
#define TLBD_FEXP_INT_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fexp-uring-abi.h"

#include "fexp.h"

/* In a directory mount the root is the directory and the image is this
 * inode; in a file mount the root (FUSE_ROOT_ID) is the image.
 */
#define FEXP_FILE_INO 2

struct FuseExport {
    /* read-only after fexp_new */
    BlockDev *bd;
    IOThread *io;
    struct fuse_session *se;
    int fd; /* the session's /dev/fuse fd */
    char *mountpoint;
    char *name; /* directory mounts only */
    char *image;
    bool dir_mode;
    bool readonly;
    bool growable;
    bool direct_io;
    unsigned max_read; /* from -o max_read=, 0 if not given */
    FexpIoUring io_uring_mode;
    mode_t base_mode;     /* the most the file's mode may grant */
    mode_t file_mode;     /* permission bits of the file */
    mode_t dir_mode_bits; /* permission bits of the root directory */
    uid_t uid;
    gid_t gid;

    /* I/O thread only */
    struct fuse_buf rbuf; /* the next request is received here */
    void *cur_buf;        /* buffer of the request being processed;
                             NULL once a write took it over */
    uint64_t cur_unique;  /* its unique id */
    size_t buf_size;      /* of every pooled buffer */
    void *free_bufs;      /* buffers to reuse, linked through their
                             first word */
    unsigned n_free_bufs;
    struct FexpRing *ring;         /* the io_uring transport, or NULL */
    struct FexpRingEnt *cur_ent;   /* ring entry of the request being
                                      processed, or NULL */
    uint64_t init_unique;          /* of the INIT being answered, or 0 */
    bool uring_offered;            /* the kernel's INIT offered io_uring */
    char uring_why[160];           /* why not io_uring, or "" */
    struct fuse_init_out init_out; /* the INIT reply, patched */
    bool mounted;
    bool watching;  /* the fd handler is registered */
    bool stopping;  /* fexp_shutdown or session gone */
    bool finishing; /* the final flush is in flight */
    int status;     /* 0 or -errno, see fexp_status */
    FexpStats stats;
};

/* One FUSE request waiting for the BlockDev. */
typedef struct FexpReq {
    FuseExport *exp;
    fuse_req_t req;
    uint64_t offset;
    uint64_t length;
    void *buf;       /* read data, or the write's receive buffer */
    bool buf_pooled; /* buf goes back with fexp_buf_put */
    bool buf_ring;   /* buf is a ring entry's payload: not ours to free */
    bool is_write;   /* counted in writes_in_flight */
    struct iovec iov;
    int whence;       /* lseek */
    BlockDevAio *aio; /* a read or write in the pool, for an INTERRUPT */
    bool interrupted; /* req_interrupted ran */
} FexpReq;

extern const struct fuse_lowlevel_ops fexp_ops;

/* The block-device ioctls (fexp-ioctl.c). */
void fexp_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                struct fuse_file_info *fi, unsigned flags, const void *in_buf,
                size_t in_bufsz, size_t out_bufsz);

/* Start a request: count it in flight.  Returns NULL when out of memory
 * (the caller replies ENOMEM).
 */
FexpReq *fexp_req_new(FuseExport *exp, fuse_req_t req);

/* A request has been replied to: free it and its buffer and, when the
 * export is shutting down and nothing is left in flight, go on with the
 * shutdown.
 */
void fexp_req_end(FexpReq *r);

/* Reply with the positive errno ERR, then fexp_req_end. */
void fexp_req_fail(FexpReq *r, int err);

/* Reply with error ERR (a positive errno or 0), counting errors. */
void fexp_reply_err(FuseExport *exp, fuse_req_t req, int err);

/* A buffer of exp->buf_size bytes, page-aligned, from the free list or
 * new; NULL when out of memory.  Give it back with fexp_buf_put.
 */
void *fexp_buf_get(FuseExport *exp);
void fexp_buf_put(FuseExport *exp, void *buf);

/* Let the write being processed keep the receive buffer it arrived in.
 * Returns the buffer, a pooled one.
 */
void *fexp_take_rbuf(FuseExport *exp);

/* Reply to an OPEN with FOPEN_* flags of our own choosing (libfuse 3.14
 * cannot express FOPEN_PARALLEL_DIRECT_WRITES).  Consumes REQ.
 */
void fexp_reply_open_flags(FuseExport *exp, fuse_req_t req,
                           uint32_t open_flags);

/* The io_uring transport (fexp-uring.c).  I/O thread only, like the rest;
 * fexp_uring_init_reply runs within fexp_new.
 */

/* The INIT reply OUT is about to be written: set up the ring for its
 * max_write and, if that worked, announce FUSE_OVER_IO_URING in it.  Else
 * leave it alone and say why in exp->uring_why.
 */
void fexp_uring_init_reply(FuseExport *exp, struct fuse_init_out *out);

/* After the INIT reply: register every entry (on the loop's first pass, so
 * from the loop's thread) and watch the ring.  Returns 0 or -errno.
 */
int fexp_uring_start(FuseExport *exp);

/* Send a reply: a ring request's reply goes into its entry and is committed
 * at the end of the loop's pass.  Returns the bytes taken, or -ENOENT when
 * the reply is not for a ring request (it goes to /dev/fuse).
 */
ssize_t fexp_uring_send(FuseExport *exp, const struct iovec *iov, int count);

/* The payload buffer of the ring entry the request being processed came
 * in, when it holds SIZE bytes; else NULL.  A read's data goes straight
 * there.
 */
void *fexp_uring_payload(FuseExport *exp, size_t size);

/* The request being processed came over the ring and its requester,
 * thread TID, is exiting with a signal pending: the kernel took the
 * request as interrupted but sends no INTERRUPT for it (fexp-uring.c).
 * For a FLUSH only: it reads /proc.
 */
bool fexp_uring_interrupt_lost(FuseExport *exp, pid_t tid);

/* Stop taking requests from the ring (shutdown); replies still commit. */
void fexp_uring_stop(FuseExport *exp);

/* Tear the ring down.  NULL ring is fine. */
void fexp_uring_free(FuseExport *exp);

/* Run one request from buffer BUF (a /dev/fuse receive buffer, or a ring
 * entry's rebuilt request when ENT is not NULL).  Returns its opcode.
 */
uint32_t fexp_process(FuseExport *exp, struct fuse_buf *buf,
                      struct FexpRingEnt *ent);

/* True for the inode that is the image. */
static inline bool
fexp_is_file(const FuseExport *exp, fuse_ino_t ino)
{
    return exp->dir_mode ? ino == FEXP_FILE_INO : ino == FUSE_ROOT_ID;
}

#endif /* TLBD_FEXP_INT_H */
