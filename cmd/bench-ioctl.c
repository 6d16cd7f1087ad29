/* tlbd: the ioctl mix of `tlbd bench` (--ioctl-mix, --ioctl-kinds).
 *
 * With --ioctl-mix PCT, PCT percent of the requests a vcpu plans are
 * ioctl-kind requests instead of reads and writes, taken in turn from the
 * kinds --ioctl-kinds allows:
 *  - getsize: BLKGETSIZE64 as a paio ioctl request (block devices only: a
 *    regular file has no such ioctl); the answer must equal the size the
 *    BlockDev learnt at open;
 *  - discard: a paio discard (BLKDISCARD on a block device, a punched hole
 *    in a file) of a range placed like a write;
 *  - zeroout: a paio write-zeroes (BLKZEROOUT on a block device, a zeroed
 *    range in a file), placed like a write.
 * After a zeroout every block of the range must read back as zeros; after
 * a discard every block inside the whole sectors of the range must (a
 * block device discards whole logical sectors only, and the partial ones
 * keep their data, see paio-zero.c; a file punches exactly the range).  The
 * block table records that (no generation, the hash of a zero block), so
 * later reads and the final pass check it like any written block.  This
 * assumes a discard that reads back zeros, as files and loop devices give;
 * leave discard out of --ioctl-kinds on a device that does not.
 *
 * Threads: bench_ioctl_choose runs on a vcpu thread, bench_ioctl_submit on
 * the vcpu thread that owns the request, bench_ioctl_complete on the I/O
 * thread (it owns the block table and the counters).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static const char *const kind_names[] = { "getsize", "discard", "zeroout" };
static const BenchOp kind_ops[] = { BENCH_OP_GETSIZE, BENCH_OP_DISCARD,
                                    BENCH_OP_ZEROOUT };

int
bench_parse_ioctl_kinds(const char *list, unsigned *kinds)
{
    const char *p = list;

    *kinds = 0;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        size_t i;
        for (i = 0; i < TLBD_ARRAY_SIZE(kind_names); i++) {
            if (strlen(kind_names[i]) == len &&
                strncmp(p, kind_names[i], len) == 0) {
                *kinds |= 1u << i;
                break;
            }
        }
        if (i == TLBD_ARRAY_SIZE(kind_names)) {
            return -EINVAL;
        }
        p += len;
        p += *p == ',';
    }
    return *kinds ? 0 : -EINVAL;
}

int
bench_ioctl_setup(Bench *b)
{
    const BenchConfig *cfg = &b->cfg;

    b->ioctl_kinds = cfg->ioctl_mix ? cfg->ioctl_kinds : 0;
    if (!blockdev_is_blockdev(b->bd)) {
        b->ioctl_kinds &= ~(unsigned)BENCH_IOCTL_GETSIZE;
    }
    if (!bench_writes(cfg)) {
        b->ioctl_kinds &= BENCH_IOCTL_GETSIZE;
    }
    if (cfg->ioctl_mix && !b->ioctl_kinds) {
        fprintf(stderr,
                "tlbd: --ioctl-kinds: none applies to '%s': getsize "
                "needs a block device, discard and zeroout a run "
                "that writes\n",
                cfg->image);
        return -1;
    }
    b->sector =
        blockdev_is_blockdev(b->bd) ? blockdev_logical_block_size(b->bd) : 1;
    b->zero_hash = bench_zero_hash(b);
    return 0;
}

bool
bench_op_has_range(BenchOp op)
{
    return op != BENCH_OP_FLUSH && op != BENCH_OP_GETSIZE;
}

bool
bench_ioctl_choose(const Bench *b, uint64_t rnd, BenchOp *op)
{
    unsigned kinds = b->ioctl_kinds;
    unsigned n = (unsigned)__builtin_popcount(kinds);
    unsigned pick;

    if (n == 0 || rnd % 100 >= b->cfg.ioctl_mix) {
        return false;
    }
    pick = (unsigned)((rnd / 100) % n);
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(kind_ops); i++) {
        if ((kinds & (1u << i)) && pick-- == 0) {
            *op = kind_ops[i];
            return true;
        }
    }
    return false;
}

int
bench_ioctl_submit(Bench *b, BenchReq *r, BlockDevCompleteFn *cb)
{
    switch (r->op) {
    case BENCH_OP_GETSIZE:
        memset(r->buf, 0, sizeof(uint64_t));
        return blockdev_aio_ioctl(b->bd, BLKGETSIZE64, r->buf, cb, r);
    case BENCH_OP_DISCARD:
        return blockdev_aio_discard(b->bd, r->offset, r->len, 0, cb, r);
    case BENCH_OP_ZEROOUT:
        return blockdev_aio_write_zeroes(b->bd, r->offset, r->len, 0, cb, r);
    default:
        return -EINVAL;
    }
}

/* Record that the blocks of [START, END) read as zeros now. */
static void
mark_zero(Bench *b, uint64_t start, uint64_t end)
{
    if (!b->blocks) {
        return;
    }
    for (uint64_t u = (start + b->unit - 1) / b->unit; u < end / b->unit; u++) {
        b->blocks[u].gen = 0;
        b->blocks[u].hash = b->zero_hash;
        b->blocks[u].zeroed = true;
    }
}

void
bench_ioctl_complete(Bench *b, BenchReq *r)
{
    uint64_t size;
    uint64_t s = b->sector;

    switch (r->op) {
    case BENCH_OP_GETSIZE:
        b->count.getsizes++;
        memcpy(&size, r->buf, sizeof(size));
        if (size != blockdev_size(b->bd)) {
            bench_fail(b,
                       "BLKGETSIZE64 said %" PRIu64 " bytes; the image "
                       "has %" PRIu64,
                       size, blockdev_size(b->bd));
        }
        break;
    case BENCH_OP_DISCARD:
        b->count.discards++;
        mark_zero(b, (r->offset + s - 1) / s * s, (r->offset + r->len) / s * s);
        break;
    case BENCH_OP_ZEROOUT:
        b->count.zeroouts++;
        mark_zero(b, r->offset, r->offset + r->len);
        break;
    default:
        break;
    }
}
