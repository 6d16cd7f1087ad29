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
    unsigned max_read;    /* from -o max_read=, 0 if not given */
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
    bool is_write;   /* counted in writes_in_flight */
    struct iovec iov;
    int whence;       /* lseek */
    BlockDevAio *aio; /* a read or write in the pool, for an INTERRUPT */
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

/* True for the inode that is the image. */
static inline bool
fexp_is_file(const FuseExport *exp, fuse_ino_t ino)
{
    return exp->dir_mode ? ino == FEXP_FILE_INO : ino == FUSE_ROOT_ID;
}

#endif /* TLBD_FEXP_INT_H */
