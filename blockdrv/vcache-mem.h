/* tlbd: the volatile cache's memory (vcache-mem.c), private to vcache.c.
 *
 * The data of every cached write lives in one anonymous mapping the size
 * of the cache, handed out in units of VCMEM_UNIT bytes.  A buffer is a
 * list of runs of units, so an allocation succeeds whenever enough units
 * are free, wherever they are.  The cache's data thus never holds more
 * than SIZE of memory, whichever threads allocate and free it.  The
 * bookkeeping (extents, buffers, their lists of runs) comes from pools
 * whose slabs are units of the same mapping.
 *
 * Threads: every function may be called from any thread; a VcMem has its
 * own lock, taken inside Vcache.lock when the caller holds that, and
 * never held across a system call but vcmem_trim's madvise.
 */
#ifndef TLBD_VCACHE_MEM_H
#define TLBD_VCACHE_MEM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VCMEM_UNIT 512u

/* UNITS units from UNIT on; they hold the buffer's bytes from POS units
 * on.
 */
typedef struct VcRun {
    uint32_t unit, units, pos;
} VcRun;

/* Runs a buffer holds itself, and runs in each block of the rest. */
#define VCBUF_RUNS  3
#define VCRUN_BLOCK 42

typedef struct VcRunBlock {
    struct VcRunBlock *next;
    VcRun runs[VCRUN_BLOCK];
} VcRunBlock;

/* A buffer of SIZE bytes in NRUNS runs: OWN, then the blocks of MORE.
 * REFS is its owner's (vcache.c keeps it under Vcache.lock).
 */
typedef struct VcBuf {
    unsigned refs;
    uint32_t nruns;
    uint64_t size;
    VcRunBlock *more; /* NBLOCKS of them */
    VcRun own[VCBUF_RUNS];
    uint32_t nblocks;
} VcBuf;

/* Objects of one size, PER_SLAB of them in a unit. */
typedef struct VcPool {
    size_t size;
    uint32_t per_slab;
    struct VcFree *free; /* the free objects of its slabs */
    uint64_t live;       /* objects handed out */
} VcPool;

typedef struct VcMem {
    pthread_mutex_t lock;
    uint8_t *base;
    size_t map_len;    /* the mapping, whole pages */
    uint32_t nunits;   /* the units SIZE holds */
    uint32_t nfree;    /* under lock, as everything below */
    uint64_t *free;    /* a set bit: a free unit */
    uint64_t *summary; /* a set bit: that word of free has one */
    uint32_t nwords, nsummary;
    uint32_t low;       /* no summary word below this one has a set bit */
    uint32_t high;      /* since the pages were last given back: no data
                           unit at or above this one, */
    uint32_t slab_low;  /* and no slab below this one */
    uint8_t *slab_live; /* per unit: the objects handed out of its slab */
    VcPool bufs, blocks, extents;
} VcMem;

/* Map SIZE bytes (reserved, not touched), for extents of EXTENT_SIZE
 * bytes.  0 or -errno.
 */
int vcmem_init(VcMem *m, uint64_t size, size_t extent_size);
void vcmem_destroy(VcMem *m);

/* The units LEN bytes take (what the cache charges for them). */
uint64_t vcmem_units(uint64_t len);

/* A buffer of LEN (> 0) bytes, its refs 1; NULL when too few units are
 * free now.
 */
VcBuf *vcmem_alloc(VcMem *m, uint64_t len);

/* Give B's units back. */
void vcmem_free(VcMem *m, VcBuf *b);

/* When nothing is allocated, give the pages a burst touched back to the
 * system (a system call: not under Vcache.lock).
 */
void vcmem_trim(VcMem *m);

/* What B costs in memory: its units and its bookkeeping. */
uint64_t vcmem_charge(const VcBuf *b);

/* A zeroed extent (EXTENT_SIZE bytes) from the pool; NULL when no unit
 * is free, unless MUST: then from malloc (NULL if out of memory).  And
 * back.
 */
void *vcmem_extent_new(VcMem *m, bool must);
void vcmem_extent_free(VcMem *m, void *e);

/* B's bytes from OFF on: where they are, and in *LEN (in: at most) how
 * many of them are there in a row.
 */
uint8_t *vcmem_at(const VcMem *m, const VcBuf *b, uint64_t off, uint64_t *len);

/* Copy the bytes of IOV[0..NIOV) into B from its start. */
void vcmem_copy_in(const VcMem *m, VcBuf *b, const struct iovec *iov, int niov);

/* B's bytes [OFF, OFF+LEN) as iovecs: the first MAX go to OUT; returns how
 * many there are.
 */
size_t vcmem_iov(const VcMem *m, const VcBuf *b, uint64_t off, uint64_t len,
                 struct iovec *out, size_t max);

#endif
