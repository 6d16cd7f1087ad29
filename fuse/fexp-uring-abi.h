/* tlbd: the few definitions of FUSE over io_uring (<linux/fuse.h> 7.42,
 * Linux 6.14) that older kernel headers lack, Debian 12's among them (7.38).
 * Each is guarded, so newer headers win.
 */
#ifndef TLBD_FEXP_URING_ABI_H
#define TLBD_FEXP_URING_ABI_H

#include <linux/fuse.h>
#include <stdint.h>

#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING (1ULL << 41) /* INIT: flags2 bit 9 */
#endif

#ifndef FUSE_URING_IN_OUT_HEADER_SZ
#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ     128

/* Written by the kernel with a request, by the server with its reply. */
struct fuse_uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id; /* the request's unique */
    uint32_t payload_sz;
    uint32_t padding;
    uint64_t reserved;
};

/* An entry's header buffer (the first iovec of a REGISTER). */
struct fuse_uring_req_header {
    char in_out[FUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in/out_header */
    char op_in[FUSE_URING_OP_IN_OUT_SZ];      /* the opcode's first arg */
    struct fuse_uring_ent_in_out ring_ent_in_out;
};

/* sqe->cmd_op of an IORING_OP_URING_CMD on /dev/fuse. */
enum fuse_uring_cmd {
    FUSE_IO_URING_CMD_INVALID = 0,
    FUSE_IO_URING_CMD_REGISTER = 1,
    FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};

/* In the 80-byte command area of an SQE128. */
struct fuse_uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};
#endif /* FUSE_URING_IN_OUT_HEADER_SZ */

#endif /* TLBD_FEXP_URING_ABI_H */
