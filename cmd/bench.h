/* tlbd: `tlbd bench`, the vcpu generator: internal interface.
 *
 * The picture of the threadlets design, as a tool:
 *
 *   vcpu threads (bench-io.c)      I/O thread              threadlet pool
 *   plan a request, fill and  ---> blockdev_aio_*  ------> preadv/pwritev/
 *   stamp its blocks, submit       (paio)                  fdatasync
 *            ^                     completion:       <---
 *            |                     verify, count, latency histogram,
 *            +-------------------- hand the slot back to its vcpu
 *
 * Each vcpu owns IODEPTH request slots and a disjoint region of the image;
 * it never has two requests in flight on the same block, so a block's
 * expected contents are known exactly whenever a read of it completes.
 *
 * Ownership of the state below: BenchConfig and the geometry are set by the
 * main thread before any other thread starts and are read-only afterwards.
 * The block table, the counters and the histograms belong to the I/O thread
 * (the main thread reads them through iothread_call or after the I/O thread
 * stopped; a vcpu reads its own region's entries only after its slots all
 * came back).  Each vcpu's free list is protected by that vcpu's lock.
 */
#ifndef TLBD_BENCH_H
#define TLBD_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/queue.h>
#include <sys/uio.h>

#include "histogram.h"
#include "iothread.h"
#include "blockdev.h"
#include "threadlet.h"

typedef enum BenchRw {
    BENCH_READ,
    BENCH_WRITE,
    BENCH_RANDREAD,
    BENCH_RANDWRITE,
    BENCH_RANDRW,
} BenchRw;

typedef struct BenchConfig {
    const char *image;
    unsigned vcpus;
    unsigned iodepth; /* per vcpu */
    BenchRw rw;
    unsigned mix; /* percent of reads (randrw) */
    uint64_t bs_min;
    uint64_t bs_max;
    uint64_t flush_every; /* writes per vcpu between flushes; 0: none */
    bool fua;
    uint64_t duration_ns; /* 0: until --ops */
    uint64_t ops;         /* 0: until --duration */
    uint64_t seed;
    bool verify;
    uint64_t size;          /* --size; 0 when not given */
    BlockDevOptions bdopts; /* --cache, --threads-max...; the pool's in
                               bdopts.pool */
    const char *cache_name;
    bool json;
    const char *json_file;  /* --json=FILE; NULL: JSON on stdout */
    bool progress;          /* a progress line each second on stderr */
    uint64_t corrupt_after; /* test hook; 0: off */
    unsigned ioctl_mix;     /* percent of ioctl-kind requests */
    unsigned ioctl_kinds;   /* BENCH_IOCTL_* */
    const char *plot_file;  /* --plot=FILE; NULL: no picture */
} BenchConfig;

/* --ioctl-kinds (bench-ioctl.c) */
#define BENCH_IOCTL_GETSIZE (1u << 0)
#define BENCH_IOCTL_DISCARD (1u << 1)
#define BENCH_IOCTL_ZEROOUT (1u << 2)
#define BENCH_IOCTL_ALL     7u

typedef enum BenchOp {
    BENCH_OP_READ,
    BENCH_OP_WRITE,
    BENCH_OP_FLUSH,
    BENCH_OP_GETSIZE, /* the ioctl mix, bench-ioctl.c */
    BENCH_OP_DISCARD,
    BENCH_OP_ZEROOUT,
    BENCH_OP_COUNT,
} BenchOp;

/* Requests of each kind that completed in one second of the timed
 * phase (--plot).
 */
typedef struct BenchSecond {
    uint32_t ops[BENCH_OP_COUNT];
} BenchSecond;

typedef struct BenchVcpu BenchVcpu;
typedef struct Bench Bench;

/* One request slot.  The vcpu fills it while it is free; the I/O thread
 * reads it when the request completes.
 */
typedef struct BenchReq {
    BenchVcpu *vcpu;
    BenchOp op;
    bool final; /* a read of the final verification pass */
    bool busy;  /* in flight; protected by vcpu->lock */
    uint64_t offset;
    uint64_t len;
    uint32_t gen; /* writes: generation stamped in each block */
    uint64_t start_ns;
    struct iovec iov;
    void *buf; /* Bench.bufsize bytes, aligned */
    SLIST_ENTRY(BenchReq) next_free;
} BenchReq;

struct BenchVcpu {
    Bench *bench;
    unsigned index;
    pthread_t thread;
    bool started;

    /* vcpu thread only */
    uint64_t first_unit; /* its region of the image, in units */
    uint64_t nunits;
    uint64_t seq_next; /* next unit for sequential modes */
    uint64_t rng;
    uint64_t writes; /* for --flush-every */
    uint32_t next_gen;
    BenchReq *reqs; /* iodepth slots */

    /* protected by lock */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a slot came back */
    SLIST_HEAD(, BenchReq) free;
    unsigned nfree;
};

/* What the image held at one block, as far as this run knows. */
typedef struct BenchBlock {
    uint32_t gen;  /* last completed write of this run; 0: none */
    uint32_t hash; /* gen == 0: hash of the first read, 0: not
                      read yet */
    bool zeroed;   /* a discard or zeroout left zeros here */
} BenchBlock;

typedef struct BenchCounters {
    uint64_t reads;
    uint64_t writes;
    uint64_t flushes;
    uint64_t getsizes; /* the ioctl mix */
    uint64_t discards;
    uint64_t zeroouts;
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t blocks_checked; /* blocks verified by reads of the run */
    uint64_t final_blocks;   /* blocks verified by the final pass */
    uint64_t final_bytes;
    uint64_t errors; /* I/O errors and verification failures */
    uint64_t verify_failures;
} BenchCounters;

struct Bench {
    BenchConfig cfg;
    BlockDev *bd;
    IOThread *io;
    ThreadletQueue queue;
    bool queue_ready;
    BenchVcpu *vcpus;

    /* geometry, fixed before the vcpus start */
    uint64_t unit; /* verification block size */
    uint64_t nunits;
    uint64_t bufsize; /* per slot */
    uint64_t run_id;
    bool known_zero;      /* the image was created by this run */
    int corrupt_fd;       /* test hook; -1 when off */
    unsigned ioctl_kinds; /* the kinds that apply to this image */
    uint64_t sector;      /* block devices: logical sector; files: 1 */
    uint32_t zero_hash;   /* the table's hash of a zero block */

    /* atomic */
    atomic_bool stop;             /* issue no new requests */
    atomic_bool failed;           /* a failure was recorded: stop everything */
    atomic_uint_fast64_t tickets; /* requests issued, for --ops */
    atomic_uint in_flight;

    /* I/O thread only */
    BenchBlock *blocks; /* nunits entries */
    BenchCounters count;
    Histogram lat_all;
    Histogram lat_op[BENCH_OP_COUNT]; /* per kind */
    BenchSecond *seconds;             /* --plot: completions per second of
                                         the timed phase. Can be NULL. */
    uint64_t nseconds;                /* entries of seconds in use */
    uint64_t seconds_cap;
    bool seconds_nomem;   /* the table could not grow: the picture fails */
    BenchCounters icount; /* since the last progress line */
    Histogram ilat;
    uint64_t corrupted_offset;
    bool corrupted;
    char *failure; /* the first failure, one line. Can be NULL. */

    /* protected by lock */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a vcpu finished a phase */
    unsigned running;    /* vcpus still in the timed phase */
    bool final_go;       /* the timed phase is over */
    bool do_final;       /* run the final verification pass */
    unsigned finishing;  /* vcpus still in the final pass */

    /* main thread only */
    uint64_t start_ns;
    uint64_t end_ns; /* end of the timed phase */
    uint64_t final_end_ns;
    int plot_fd;       /* --plot's file, open from before the run; -1 */
    bool plot_created; /* bench_plot_open created it */
};

/* A 64-bit mixer (splitmix64's finalizer). */
static inline uint64_t
bench_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* bench-io.c */
void *bench_vcpu_thread(void *opaque);
bool bench_writes(const BenchConfig *cfg);
/* "read", "write", "flush", "BLKGETSIZE64", "discard", "zeroout" */
const char *bench_op_name(BenchOp op);
void bench_fail(Bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* bench-verify.c */
#define BENCH_MAGIC 0x44424c54u /* "TLBD" */
void bench_fill(const Bench *b, void *buf, uint64_t offset, uint64_t len,
                uint32_t gen);
/* Check a block read at OFFSET against the table; updates the table for
 * blocks first seen.  Returns true when it matches; otherwise calls
 * bench_fail with the offset, what was expected and what was found.
 */
bool bench_check(Bench *b, const void *block, uint64_t offset);

/* The hash bench_check expects of a block of zeros. */
uint32_t bench_zero_hash(const Bench *b);

/* bench-ioctl.c */
int bench_parse_ioctl_kinds(const char *list, unsigned *kinds);
/* After open: the kinds that apply to the image, its sector size.
 * Returns 0, or -1 after printing why no kind applies.
 */
int bench_ioctl_setup(Bench *b);
bool bench_op_has_range(BenchOp op);
/* With RND a random number, whether the next request is an ioctl kind, and
 * which (*OP).
 */
bool bench_ioctl_choose(const Bench *b, uint64_t rnd, BenchOp *op);
int bench_ioctl_submit(Bench *b, BenchReq *r, BlockDevCompleteFn *cb);
/* Count R and record what it left in the block table.  I/O thread. */
void bench_ioctl_complete(Bench *b, BenchReq *r);

/* bench-plot.c: --plot.  Open (create) the file before the run: 0, or -1
 * after printing why it cannot be written.
 */
int bench_plot_open(Bench *b);
/* Count a request of kind OP that completed at NOW_NS.  I/O thread. */
void bench_plot_record(Bench *b, BenchOp op, uint64_t now_ns);
/* Write the picture of the finished run: 0, or -1 after printing why not. */
int bench_plot_write(Bench *b);
/* Close the file; remove it when the run never started and it was ours. */
void bench_plot_close(Bench *b);

/* bench-report.c */
/* The run's parameters, one line without a newline, as the summary's first
 * line shows them.
 */
void bench_print_params(FILE *fp, const Bench *b);
void bench_progress(Bench *b, uint64_t now_ns);
/* Returns 0, or -1 when the JSON file could not be written. */
int bench_report(Bench *b, const ThreadletStats *pool,
                 const IOThreadStats *ios);
const char *bench_rw_name(BenchRw rw);

#endif /* TLBD_BENCH_H */
