/* tlbd: the volatile cache's memory.
 *
 * Why not malloc: cached data is allocated by the worker that runs a
 * write and freed by whichever worker destages or flushes it.  glibc
 * keeps a heap per thread and returns little of it, so each worker's
 * heap grew to its own peak and the process held a multiple of SIZE.
 * Here everything the cache holds, data and bookkeeping, is in one
 * mapping of SIZE (MAP_NORESERVE: pages cost only once touched), so it
 * can never hold more: the units, then the bitmap of free units, its
 * summary and the slabs' counts.
 *
 * Free units are a bitmap with a summary word per 64 of its words.  Data
 * takes the lowest free units first, in runs, so the pages touched stay
 * near the live data's peak.  The bookkeeping (extents, buffers, run
 * blocks) comes from pools (VcPool) whose slabs are single units taken
 * from the top; a slab goes back to the bitmap when its last object is
 * freed.  An extent that a flush_lock holder must have (a split, which
 * cannot wait for room) comes from malloc when no unit is free.
 *
 * When nothing is allocated (vcmem_trim after a flush, say) the data's
 * pages past the first VCMEM_KEEP bytes and the slabs' before the last
 * VCMEM_KEEP go back with MADV_DONTNEED: a burst does not keep its
 * memory, and a cache that a flush empties after every few writes does
 * not pay a system call each time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vcache-mem.h"

/* Bytes at the start of the mapping kept when the cache empties. */
#define VCMEM_KEEP ((uint64_t)1 << 20)

/* A free object of a pool. */
typedef struct VcFree {
    struct VcFree *prev, *next;
} VcFree;

uint64_t
vcmem_units(uint64_t len)
{
    return (len + VCMEM_UNIT - 1) / VCMEM_UNIT;
}

static void
pool_init(VcPool *p, size_t size)
{
    p->size = (size + 15) / 16 * 16;
    p->per_slab = VCMEM_UNIT / p->size;
}

/* The bytes of the mapping with UNITS units: the units, the bitmap and its
 * summary (words), the slabs' counts.
 */
static uint64_t
layout_bytes(uint64_t units)
{
    uint64_t words = (units + 63) / 64;

    return units * VCMEM_UNIT + (words + (words + 63) / 64) * 8 + units;
}

int
vcmem_init(VcMem *m, uint64_t size, size_t extent_size)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t units = size / (VCMEM_UNIT + 2);

    memset(m, 0, sizeof(*m));
    while (layout_bytes(units + 1) <= size) {
        units++;
    }
    if (units > UINT32_MAX - 64) {
        return -EINVAL;
    }
    if (units == 0) {
        units = 1; /* room for bookkeeping: data will not fit anyway */
    }
    pthread_mutex_init(&m->lock, NULL);
    pool_init(&m->bufs, sizeof(VcBuf));
    pool_init(&m->blocks, sizeof(VcRunBlock));
    pool_init(&m->extents, extent_size);
    m->nunits = (uint32_t)units;
    m->nwords = (uint32_t)((units + 63) / 64);
    m->nsummary = (m->nwords + 63) / 64;
    m->map_len = (size_t)((layout_bytes(units) + page - 1) / page * page);
    m->base = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m->base == MAP_FAILED) {
        int err = -errno;
        m->base = NULL;
        vcmem_destroy(m);
        return err;
    }
    m->free = (uint64_t *)(void *)(m->base + units * VCMEM_UNIT);
    m->summary = m->free + m->nwords;
    m->slab_live = (uint8_t *)(m->summary + m->nsummary);
    for (uint32_t w = 0; w < m->nwords; w++) {
        uint32_t left = m->nunits - w * 64;
        m->free[w] = left >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << left) - 1;
        m->summary[w / 64] |= (uint64_t)1 << (w % 64);
    }
    m->nfree = m->nunits;
    m->slab_low = m->nunits;
    return 0;
}

void
vcmem_destroy(VcMem *m)
{
    if (m->base) {
        munmap(m->base, m->map_len);
    }
    pthread_mutex_destroy(&m->lock);
    memset(m, 0, sizeof(*m));
}

/* Under lock: mark UNITS units from UNIT on FREE (or taken). */
static void
set_units(VcMem *m, uint32_t unit, uint32_t units, bool free)
{
    while (units > 0) {
        uint32_t w = unit / 64, b = unit % 64;
        uint32_t len = units < 64 - b ? units : 64 - b;
        uint64_t mask =
            len == 64 ? ~(uint64_t)0 : (((uint64_t)1 << len) - 1) << b;
        uint64_t sbit = (uint64_t)1 << (w % 64);

        if (free) {
            m->free[w] |= mask;
            m->summary[w / 64] |= sbit;
            if (w / 64 < m->low) {
                m->low = w / 64;
            }
        } else {
            m->free[w] &= ~mask;
            if (m->free[w] == 0) {
                m->summary[w / 64] &= ~sbit;
            }
        }
        unit += len;
        units -= len;
    }
}

/* Under lock: the first word at or after W with a free unit (there is
 * one: the caller checked nfree).
 */
static uint32_t
next_word(const VcMem *m, uint32_t w)
{
    uint32_t s = w / 64;
    uint64_t bits = m->summary[s] & (~(uint64_t)0 << (w % 64));

    while (bits == 0) {
        bits = m->summary[++s];
    }
    return s * 64 + (uint32_t)__builtin_ctzll(bits);
}

/* Under lock: take the highest free unit; its index, or -1 if none. */
static int64_t
take_top_unit(VcMem *m)
{
    for (uint32_t s = m->nsummary; s-- > 0;) {
        if (m->summary[s]) {
            uint32_t w = s * 64 + 63 - (uint32_t)__builtin_clzll(m->summary[s]);
            uint32_t u = w * 64 + 63 - (uint32_t)__builtin_clzll(m->free[w]);
            set_units(m, u, 1, false);
            m->nfree--;
            if (u < m->slab_low) {
                m->slab_low = u;
            }
            return u;
        }
    }
    return -1;
}

static void
free_push(VcPool *p, VcFree *f)
{
    f->prev = NULL;
    f->next = p->free;
    if (f->next) {
        f->next->prev = f;
    }
    p->free = f;
}

static void
free_unlink(VcPool *p, VcFree *f)
{
    if (f->prev) {
        f->prev->next = f->next;
    } else {
        p->free = f->next;
    }
    if (f->next) {
        f->next->prev = f->prev;
    }
}

/* Under lock: a zeroed object of P, or NULL when no unit is free. */
static void *
pool_get(VcMem *m, VcPool *p)
{
    VcFree *f = p->free;
    uint32_t u;

    if (!f) {
        int64_t slab = take_top_unit(m);
        if (slab < 0) {
            return NULL;
        }
        for (uint32_t i = p->per_slab; i-- > 0;) {
            free_push(p,
                      (VcFree *)(void *)(m->base + (uint64_t)slab * VCMEM_UNIT +
                                         i * p->size));
        }
        f = p->free;
    }
    free_unlink(p, f);
    u = (uint32_t)(((uint8_t *)f - m->base) / VCMEM_UNIT);
    m->slab_live[u]++;
    p->live++;
    memset(f, 0, p->size);
    return f;
}

/* Under lock: OBJ back to P; its slab back to the bitmap when empty. */
static void
pool_put(VcMem *m, VcPool *p, void *obj)
{
    uint32_t u = (uint32_t)(((uint8_t *)obj - m->base) / VCMEM_UNIT);

    free_push(p, obj);
    p->live--;
    if (--m->slab_live[u] == 0) {
        uint8_t *slab = m->base + (uint64_t)u * VCMEM_UNIT;
        for (uint32_t i = 0; i < p->per_slab; i++) {
            free_unlink(p, (VcFree *)(void *)(slab + i * p->size));
        }
        set_units(m, u, 1, true);
        m->nfree++;
    }
}

/* Under lock: give back the whole pages of units [FROM, TO). */
static void
drop_pages(VcMem *m, uint64_t from, uint64_t to)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t a = (from * VCMEM_UNIT + page - 1) / page * page;
    uint64_t b = to * VCMEM_UNIT / page * page; /* not the bitmap's page */

    if (b > a) {
        (void)madvise(m->base + a, b - a, MADV_DONTNEED);
    }
}

void
vcmem_trim(VcMem *m)
{
    uint64_t keep = VCMEM_KEEP / VCMEM_UNIT;

    pthread_mutex_lock(&m->lock);
    if (m->nfree != m->nunits) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    if (m->high > keep) {
        drop_pages(m, keep, m->high);
        m->high = (uint32_t)keep;
    }
    if (m->nunits > keep && m->slab_low < m->nunits - keep) {
        drop_pages(m, m->slab_low, m->nunits - keep);
        m->slab_low = m->nunits - (uint32_t)keep;
    }
    pthread_mutex_unlock(&m->lock);
}

/* Walks a buffer's runs in order. */
typedef struct RunCursor {
    VcBuf *b;
    VcRunBlock *blk;
    uint32_t i;
} RunCursor;

static VcRun *
next_run(RunCursor *c)
{
    uint32_t i = c->i++;

    if (i < VCBUF_RUNS) {
        return &c->b->own[i];
    }
    i -= VCBUF_RUNS;
    if (i % VCRUN_BLOCK == 0) {
        c->blk = i ? c->blk->next : c->b->more;
    }
    return &c->blk->runs[i % VCRUN_BLOCK];
}

/* Under lock: the lowest NEED free units as runs, written to B's runs
 * when B is not NULL (it has room for them); returns how many runs.
 */
static uint32_t
find_runs(const VcMem *m, uint32_t need, VcBuf *b)
{
    RunCursor c = { .b = b };
    VcRun *last = NULL;
    uint32_t n = 0, got = 0, w = m->low * 64, end = UINT32_MAX;

    while (got < need) {
        uint64_t bits;

        w = next_word(m, w);
        bits = m->free[w];
        while (bits && got < need) {
            uint32_t bit = (uint32_t)__builtin_ctzll(bits);
            uint64_t rest = ~(bits >> bit);
            uint32_t len = rest ? (uint32_t)__builtin_ctzll(rest) : 64 - bit;
            uint32_t unit = w * 64 + bit;

            if (len > need - got) {
                len = need - got;
            }
            if (unit == end) {
                if (b) {
                    last->units += len;
                }
            } else {
                if (b) {
                    last = next_run(&c);
                    *last = (VcRun){ .unit = unit, .units = len, .pos = got };
                }
                n++;
            }
            got += len;
            end = unit + len;
            bits &= bit + len >= 64 ? 0 : ~(uint64_t)0 << (bit + len);
        }
        w++;
    }
    return n;
}

/* The run blocks N runs need. */
static uint32_t
blocks_for(uint32_t n)
{
    return n <= VCBUF_RUNS ? 0
                           : (n - VCBUF_RUNS + VCRUN_BLOCK - 1) / VCRUN_BLOCK;
}

/* Under lock: give B and its blocks back to their pools. */
static void
put_buf(VcMem *m, VcBuf *b)
{
    for (VcRunBlock *k = b->more, *next; k; k = next) {
        next = k->next;
        pool_put(m, &m->blocks, k);
    }
    pool_put(m, &m->bufs, b);
}

VcBuf *
vcmem_alloc(VcMem *m, uint64_t len)
{
    uint64_t need = vcmem_units(len);
    uint32_t n = 0, have = 0;
    RunCursor c;
    VcBuf *b;

    pthread_mutex_lock(&m->lock);
    b = need <= m->nfree ? pool_get(m, &m->bufs) : NULL;
    /* the run blocks the runs need; taking them can split the runs */
    while (b && need <= m->nfree &&
           blocks_for(n = find_runs(m, (uint32_t)need, NULL)) > have) {
        VcRunBlock *blk = pool_get(m, &m->blocks);
        if (!blk) {
            break;
        }
        blk->next = b->more;
        b->more = blk;
        have++;
    }
    if (!b || need > m->nfree || blocks_for(n) > have) {
        if (b) {
            put_buf(m, b);
        }
        pthread_mutex_unlock(&m->lock);
        return NULL;
    }
    /* Blocks beyond what the runs need stay: giving one back could free a
     * slab, and change the runs. */
    b->refs = 1;
    b->nblocks = have;
    b->nruns = find_runs(m, (uint32_t)need, b);
    b->size = len;
    c = (RunCursor){ .b = b };
    for (uint32_t i = 0; i < b->nruns; i++) {
        const VcRun *r = next_run(&c);
        set_units(m, r->unit, r->units, false);
        if (r->unit + r->units > m->high) {
            m->high = r->unit + r->units;
        }
    }
    m->nfree -= (uint32_t)need;
    pthread_mutex_unlock(&m->lock);
    return b;
}

void
vcmem_free(VcMem *m, VcBuf *b)
{
    RunCursor c = { .b = b };

    if (!b) {
        return;
    }
    pthread_mutex_lock(&m->lock);
    for (uint32_t i = 0; i < b->nruns; i++) {
        const VcRun *r = next_run(&c);
        set_units(m, r->unit, r->units, true);
        m->nfree += r->units;
    }
    put_buf(m, b);
    pthread_mutex_unlock(&m->lock);
}

uint64_t
vcmem_charge(const VcBuf *b)
{
    return vcmem_units(b->size) * VCMEM_UNIT + sizeof(VcBuf) +
           (uint64_t)b->nblocks * sizeof(VcRunBlock);
}

void *
vcmem_extent_new(VcMem *m, bool must)
{
    void *e;

    pthread_mutex_lock(&m->lock);
    e = pool_get(m, &m->extents);
    pthread_mutex_unlock(&m->lock);
    if (!e && must) {
        e = calloc(1, m->extents.size);
    }
    return e;
}

void
vcmem_extent_free(VcMem *m, void *e)
{
    uintptr_t p = (uintptr_t)e, base = (uintptr_t)m->base;

    if (!e) {
        return;
    }
    if (p < base || p >= base + m->map_len) {
        free(e); /* one vcmem_extent_new had to malloc */
        return;
    }
    pthread_mutex_lock(&m->lock);
    pool_put(m, &m->extents, e);
    pthread_mutex_unlock(&m->lock);
}

/* The run of B that holds unit U. */
static const VcRun *
find_run(const VcBuf *b, uint64_t u)
{
    const VcRun *runs = b->own;
    const VcRunBlock *blk = b->more;
    uint32_t n = b->nruns < VCBUF_RUNS ? b->nruns : VCBUF_RUNS;
    uint32_t base = VCBUF_RUNS, lo = 0, hi;

    if (b->nruns > VCBUF_RUNS && runs[n - 1].pos + runs[n - 1].units <= u) {
        /* past its own runs: the block that holds U */
        for (;;) {
            n = b->nruns - base < VCRUN_BLOCK ? b->nruns - base : VCRUN_BLOCK;
            if (blk->runs[n - 1].pos + blk->runs[n - 1].units > u) {
                break;
            }
            blk = blk->next;
            base += VCRUN_BLOCK;
        }
        runs = blk->runs;
    }
    /* the last run of RUNS[0..N) that starts at or before U */
    hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (runs[mid].pos <= u) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return &runs[lo];
}

uint8_t *
vcmem_at(const VcMem *m, const VcBuf *b, uint64_t off, uint64_t *len)
{
    const VcRun *r = find_run(b, off / VCMEM_UNIT);
    uint64_t in_run = off - (uint64_t)r->pos * VCMEM_UNIT;
    uint64_t left = (uint64_t)r->units * VCMEM_UNIT - in_run;

    if (left > b->size - off) {
        left = b->size - off;
    }
    if (*len > left) {
        *len = left;
    }
    return m->base + (uint64_t)r->unit * VCMEM_UNIT + in_run;
}

void
vcmem_copy_in(const VcMem *m, VcBuf *b, const struct iovec *iov, int niov)
{
    uint64_t off = 0;

    for (int i = 0; i < niov; i++) {
        const uint8_t *src = iov[i].iov_base;
        uint64_t left = iov[i].iov_len;

        while (left > 0) {
            uint64_t n = left;
            uint8_t *dst = vcmem_at(m, b, off, &n);
            memcpy(dst, src, n);
            src += n;
            off += n;
            left -= n;
        }
    }
}

size_t
vcmem_iov(const VcMem *m, const VcBuf *b, uint64_t off, uint64_t len,
          struct iovec *out, size_t max)
{
    size_t n = 0;

    while (len > 0) {
        uint64_t k = len;
        uint8_t *p = vcmem_at(m, b, off, &k);
        if (n < max) {
            out[n] = (struct iovec){ p, k };
        }
        n++;
        off += k;
        len -= k;
    }
    return n;
}
