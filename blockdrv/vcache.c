/* tlbd: the volatile write cache, and the power cut that drops part of it.
 *
 * With volatile-cache=SIZE a BlockDev behaves like a disk with a write
 * cache.  A write (or write-zeroes, or discard, kept as a zero extent)
 * completes once it is copied into the cache; reads see the newest data
 * (the image read, then every cached extent over it in completion order);
 * a flush writes the volatile set to the image in completion order and
 * fdatasyncs; a FUA write goes through to the image, durable, and the
 * older cached extents it overlaps are cut out of the cache so they can
 * never be written over it.  When a write does not fit in SIZE, the cache
 * destages (writes to the image early) extents picked by the seeded
 * generator, as a disk picks its own order; a destaged extent survives a
 * cut, and the older extents it overlaps are cut out as for FUA.  A write
 * larger than SIZE is destaged at once.  Without a rule (which must cut
 * the same way for the same requests) and with workers, a write that
 * takes the cache past BG_HIGH also queues background destaging down to
 * BG_LOW, so that the next writes find room.
 *
 * The cache is a list of extents in completion order, the order of
 * record; two indexes (vcache-index.c) find extents in it without a walk:
 * by position in that order (a destage's pick) and by offset (the
 * extents a read or a trim overlaps), O(log extents) each.
 *
 * A power cut (a rule of powercut.c, a mark (vcache_mark), or on demand:
 * vcache_powercut, for the control channel) applies the
 * writes its mode keeps to the image in completion order, fdatasyncs,
 * prints one line on stderr, and kills the device: every request fails
 * with EIO from then on.
 *
 * With log-writes=FILE the cache also writes the log (wlog.c) as a disk
 * makes writes durable: FUA, write-through and destaged writes (flagged
 * FUA) when they reach the image; the volatile set of a flush just before
 * that flush's FLUSH entry, once the flush is done; at a cut the whole
 * volatile set, then a MARK entry "powercut".  So the image always equals
 * a replay of the whole log, and a replay with the cut's mode and seed
 * rebuilds the cut.  A log that cannot be written stops the device.
 *
 * Threads: vcache_handle runs on whatever thread runs the request (pool
 * workers, the caller with offload=never), many at once;
 * vcache_try_inline on the thread that submits a write (paio-inline.c),
 * which it never blocks on I/O: it takes only the short locks.  Two locks:
 *  - flush_lock is held by whoever writes the image on the cache's behalf
 *    (flush, destage, FUA and write-through, the cut) across its system
 *    calls; it alone removes or trims extents, so while it is held no
 *    extent goes away;
 *  - lock protects the list and the counters; it is taken inside
 *    flush_lock, never held across a system call.
 * Reads take neither across their pread: they note gen (bumped whenever
 * an extent leaves or shrinks) before it and retry if it changed, taking
 * flush_lock after a few retries so they cannot starve.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paio-int.h"
#include "vcache-index.h"
#include "vcache-mem.h"
#include "vcache.h"

/* Reads that retry this often take flush_lock. */
#define READ_TRIES 4

typedef struct VcExtent {
    struct VcExtent *prev, *next;
    uint64_t seq; /* completion order; the pieces of a write share it */
    uint64_t offset;
    uint64_t length;
    VcBuf *buf;     /* NULL: zeroes; extents split from one write share it */
    size_t buf_off; /* where offset's byte is in buf */
    VcNode by_ord;  /* in Vcache.by_ord: key (seq, offset) */
    VcNode by_off;  /* in Vcache.by_off: key (offset, seq), end */
} VcExtent;

#define EXTENT_OF(node, field)                                                 \
    ((VcExtent *)(void *)((char *)(node)-offsetof(VcExtent, field)))

/* What one extent costs against SIZE, besides its buffer's charge
 * (vcmem_charge): its slot in its pool.
 */
#define EXTENT_COST ((uint64_t)(sizeof(VcExtent) + 15) / 16 * 16)

/* Iovecs a piece of an extent is written from without the heap (the
 * heap of a worker thread keeps what it once held: vcache-mem.c).
 */
#define LOCAL_IOV 64

struct Vcache {
    PaioDev *dev;
    uint64_t cap; /* SIZE */
    VcMem mem;    /* the data */
    bool has_rule;
    PowercutRule rule; /* read-only; without a rule: mode all, seed 0 */
    uint64_t start_ns; /* open time, for after= */
    _Atomic bool dead; /* the power was cut: written under lock */

    /* flush_lock: see the file header.  It also protects destage_rng and
     * the log. */
    pthread_mutex_t flush_lock;
    uint64_t destage_rng;
    Wlog *log;       /* log-writes; Can be NULL. */
    bool log_failed; /* the log could not be written: said so once */

    /* lock protects everything below */
    pthread_mutex_t lock;
    VcExtent *head, *tail; /* completion order */
    VcNode *by_ord;        /* the list's extents by (seq, offset) */
    VcNode *by_off;        /* and by (offset, seq) */
    uint64_t nindexed;     /* extents indexed: their treap priorities */
    uint64_t nextents;
    uint64_t bytes;     /* charged against cap */
    uint64_t next_seq;  /* the next write's sequence number */
    uint64_t nwrites;   /* writes completed */
    uint64_t nflushes;  /* flushes completed: the epoch */
    uint64_t ndestaged; /* writes destaged early */
    uint64_t gen;       /* bumped when an extent leaves or shrinks */

    _Atomic bool bg_on; /* background destaging is queued or running */
};

/* Background destaging, without a rule on a device with workers: from
 * above the high mark down to the low one.
 */
#define BG_HIGH(vc) ((vc)->cap - (vc)->cap / 8)
#define BG_LOW(vc)  ((vc)->cap - (vc)->cap / 4)

typedef struct BgWork {
    ThreadletWork work;
    Vcache *vc;
} BgWork;

static void
buf_put(Vcache *vc, VcBuf *buf)
{
    if (buf && --buf->refs == 0) {
        vc->bytes -= vcmem_charge(buf);
        vcmem_free(&vc->mem, buf);
    }
}

/* Under lock: index E, with its current offset and length. */
static void
index_add(Vcache *vc, VcExtent *e)
{
    uint64_t prio = powercut_mix(++vc->nindexed);

    e->by_ord = (VcNode){ .k1 = e->seq, .k2 = e->offset, .prio = prio };
    e->by_off = (VcNode){ .k1 = e->offset,
                          .k2 = e->seq,
                          .end = e->offset + e->length,
                          .prio = prio };
    vcix_insert(&vc->by_ord, &e->by_ord);
    vcix_insert(&vc->by_off, &e->by_off);
}

/* Under lock: take E out of the indexes (before its offset or length
 * changes, or it leaves).
 */
static void
index_del(Vcache *vc, VcExtent *e)
{
    vcix_remove(&vc->by_ord, &e->by_ord);
    vcix_remove(&vc->by_off, &e->by_off);
}

/* Under lock. */
static void
unlink_extent(Vcache *vc, VcExtent *e)
{
    index_del(vc, e);
    if (e->prev) {
        e->prev->next = e->next;
    } else {
        vc->head = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    } else {
        vc->tail = e->prev;
    }
    vc->nextents--;
    vc->bytes -= EXTENT_COST;
}

/* Under lock: unlink and free. */
static void
drop_extent(Vcache *vc, VcExtent *e)
{
    unlink_extent(vc, e);
    buf_put(vc, e->buf);
    vcmem_extent_free(&vc->mem, e);
}

/* Under lock: put N after E (or at the tail when E is NULL). */
static void
link_after(Vcache *vc, VcExtent *e, VcExtent *n)
{
    n->prev = e ? e : vc->tail;
    n->next = n->prev ? n->prev->next : NULL;
    if (n->prev) {
        n->prev->next = n;
    } else {
        vc->head = n;
    }
    if (n->next) {
        n->next->prev = n;
    } else {
        vc->tail = n;
    }
    vc->nextents++;
    vc->bytes += EXTENT_COST;
    index_add(vc, n);
}

static bool
overlaps(const VcExtent *e, uint64_t offset, uint64_t end)
{
    return e->offset < end && offset < e->offset + e->length;
}

/* Under lock: the extents older than SEQ that [OFFSET, END) overlaps,
 * in OUT (room for MAX; returns how many, which can be more), and how
 * many of them a trim of [OFFSET, END) splits in two (*SPLITS).
 */
static size_t
older_overlaps(Vcache *vc, uint64_t offset, uint64_t end, uint64_t seq,
               VcNode **out, size_t max, size_t *splits)
{
    size_t n = vcix_overlaps(vc->by_off, offset, end, out, max);
    size_t k = 0;

    *splits = 0;
    for (size_t i = 0; i < n && i < max; i++) {
        VcExtent *e = EXTENT_OF(out[i], by_off);

        if (e->seq < seq) {
            out[k++] = out[i];
            if (e->offset < offset && e->offset + e->length > end) {
                ++*splits;
            }
        }
    }
    return n <= max ? k : n;
}

/* Under lock and flush_lock: cut [OFFSET, END) out of the N extents of
 * OLDER (older_overlaps' nodes); SPARE holds the extents a split needs.
 */
static void
trim_older(Vcache *vc, uint64_t offset, uint64_t end, VcNode **older, size_t n,
           VcExtent **spare)
{
    for (size_t i = 0; i < n; i++) {
        VcExtent *e = EXTENT_OF(older[i], by_off);
        uint64_t e_end = e->offset + e->length;

        vc->gen++;
        if (e->offset >= offset && e_end <= end) {
            drop_extent(vc, e);
            continue;
        }
        index_del(vc, e);
        if (e->offset < offset && e_end > end) {
            VcExtent *t = *spare++;
            *t = *e;
            t->offset = end;
            t->length = e_end - end;
            if (t->buf) {
                t->buf_off += end - e->offset;
                t->buf->refs++;
            }
            e->length = offset - e->offset;
            link_after(vc, e, t);
        } else if (e->offset < offset) {
            e->length = offset - e->offset;
        } else {
            if (e->buf) {
                e->buf_off += end - e->offset;
            }
            e->length = e_end - end;
            e->offset = end;
        }
        index_add(vc, e);
    }
}

/* Under flush_lock: cut [OFFSET, OFFSET+LENGTH) out of every extent older
 * than SEQ.  Only flush_lock's holder trims or removes extents, and newer
 * ones have a larger seq, so the set older_overlaps finds stays.
 */
static int
supersede(Vcache *vc, uint64_t offset, uint64_t length, uint64_t seq)
{
    VcNode *local[16], **older = local;
    VcExtent *spare_local[16], **spare = spare_local;
    size_t max = 16, n, splits = 0;
    int ret = 0;

    for (;;) {
        tlbd_mutex_lock(&vc->lock);
        n = older_overlaps(vc, offset, offset + length, seq, older, max,
                           &splits);
        tlbd_mutex_unlock(&vc->lock);
        if (n <= max) {
            break;
        }
        /* more than room: older holds junk, ask again with room */
        if (older != local) {
            free(older);
        }
        max = n;
        older = malloc(max * sizeof(*older));
        if (!older) {
            return -ENOMEM;
        }
    }
    if (splits > 16) {
        spare = calloc(splits, sizeof(*spare));
    }
    for (size_t i = 0; spare && i < splits; i++) {
        spare[i] = vcmem_extent_new(&vc->mem, true);
        if (!spare[i]) {
            while (i-- > 0) {
                vcmem_extent_free(&vc->mem, spare[i]);
            }
            if (spare != spare_local) {
                free(spare);
            }
            spare = NULL;
        }
    }
    if (spare) {
        tlbd_mutex_lock(&vc->lock);
        trim_older(vc, offset, offset + length, older, n, spare);
        tlbd_mutex_unlock(&vc->lock);
        if (spare != spare_local) {
            free(spare);
        }
    } else {
        ret = -ENOMEM;
    }
    if (older != local) {
        free(older);
    }
    return ret;
}

/* [OFFSET, OFFSET+LENGTH) of extent E (with data) as iovecs in *IOV:
 * LOCAL (LOCAL_IOV of them) or malloc'd.  How many, or -ENOMEM.
 */
static int
piece_iov(Vcache *vc, const VcExtent *e, uint64_t offset, uint64_t length,
          struct iovec *local, struct iovec **iov)
{
    uint64_t off = e->buf_off + (offset - e->offset);
    size_t n = vcmem_iov(&vc->mem, e->buf, off, length, local, LOCAL_IOV);

    *iov = local;
    if (n > LOCAL_IOV) {
        *iov = malloc(n * sizeof(**iov));
        if (!*iov) {
            return -ENOMEM;
        }
        vcmem_iov(&vc->mem, e->buf, off, length, *iov, n);
    }
    return (int)n;
}

/* Write [OFFSET, OFFSET+LENGTH) of extent E to the image (no sync). */
static int64_t
write_piece(Vcache *vc, const VcExtent *e, uint64_t offset, uint64_t length)
{
    PaioRequest z;

    if (e->buf) {
        struct iovec local[LOCAL_IOV], *iov;
        int n = piece_iov(vc, e, offset, length, local, &iov);
        int64_t ret =
            n < 0 ? n : paio_write_range(vc->dev, iov, n, offset, length);
        if (iov != local) {
            free(iov);
        }
        return ret;
    }
    memset(&z, 0, sizeof(z));
    z.type = PAIO_WRITE_ZEROES;
    z.dev = vc->dev;
    z.offset = offset;
    z.u.range.length = length;
    return paio_handle_write_zeroes(&z);
}

/* Copy the iovec's bytes [POS, POS+LEN) from SRC (NULL: zeroes). */
static void
iov_fill(const struct iovec *iov, int niov, uint64_t pos, const uint8_t *src,
         uint64_t len)
{
    for (int i = 0; i < niov && len > 0; i++) {
        uint64_t n;

        if (pos >= iov[i].iov_len) {
            pos -= iov[i].iov_len;
            continue;
        }
        n = iov[i].iov_len - pos;
        if (n > len) {
            n = len;
        }
        if (src) {
            memcpy((uint8_t *)iov[i].iov_base + pos, src, n);
            src += n;
        } else {
            memset((uint8_t *)iov[i].iov_base + pos, 0, n);
        }
        len -= n;
        pos = 0;
    }
}

/* Lay extent E over the read REQ of [OFFSET, END). */
static void
overlay_one(Vcache *vc, const VcExtent *e, const PaioRequest *req,
            uint64_t offset, uint64_t end)
{
    uint64_t from = e->offset > offset ? e->offset : offset;
    uint64_t to = e->offset + e->length < end ? e->offset + e->length : end;

    while (from < to) {
        uint64_t n = to - from;
        const uint8_t *src = NULL;

        if (e->buf) {
            src =
                vcmem_at(&vc->mem, e->buf, e->buf_off + (from - e->offset), &n);
        }
        iov_fill(req->u.rw.iov, req->u.rw.niov, from - offset, src, n);
        from += n;
    }
}

/* qsort: by_off nodes in completion order (pieces of one write do not
 * overlap, so seq alone orders what matters).
 */
static int
by_seq(const void *a, const void *b)
{
    const VcExtent *x = EXTENT_OF(*(VcNode *const *)a, by_off);
    const VcExtent *y = EXTENT_OF(*(VcNode *const *)b, by_off);

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Under lock: lay every extent over a read of [OFFSET, OFFSET+TOTAL), in
 * completion order.
 */
static void
overlay(Vcache *vc, const PaioRequest *req, uint64_t total)
{
    uint64_t offset = req->offset;
    uint64_t end = offset + total;
    VcNode *local[32], **found = local;
    size_t n = vcix_overlaps(vc->by_off, offset, end, local, 32);

    if (n > 32) {
        found = malloc(n * sizeof(*found));
        if (!found) {
            /* no room to sort: the walk of the list, in order */
            for (VcExtent *e = vc->head; e; e = e->next) {
                if (overlaps(e, offset, end)) {
                    overlay_one(vc, e, req, offset, end);
                }
            }
            return;
        }
        vcix_overlaps(vc->by_off, offset, end, found, n);
    }
    qsort(found, n, sizeof(*found), by_seq);
    for (size_t i = 0; i < n; i++) {
        overlay_one(vc, EXTENT_OF(found[i], by_off), req, offset, end);
    }
    if (found != local) {
        free(found);
    }
}

static int64_t
do_read(Vcache *vc, PaioRequest *req)
{
    uint64_t total = paio_iov_total(req->u.rw.iov, req->u.rw.niov);

    for (int tries = 0;; tries++) {
        bool serial = tries >= READ_TRIES;
        uint64_t gen;
        int64_t ret;

        if (serial) {
            tlbd_mutex_lock(&vc->flush_lock);
        }
        tlbd_mutex_lock(&vc->lock);
        gen = vc->gen;
        tlbd_mutex_unlock(&vc->lock);
        ret = paio_handle_read(req);
        tlbd_mutex_lock(&vc->lock);
        if (atomic_load(&vc->dead)) {
            ret = -EIO;
        } else if (ret >= 0 && vc->gen == gen) {
            overlay(vc, req, total);
        } else if (ret >= 0) {
            ret = -EAGAIN; /* an extent left during the read: again */
        }
        tlbd_mutex_unlock(&vc->lock);
        if (serial) {
            tlbd_mutex_unlock(&vc->flush_lock);
        }
        if (ret != -EAGAIN) {
            return ret;
        }
    }
}

static void
free_list(Vcache *vc, VcExtent *e)
{
    while (e) {
        VcExtent *next = e->next;
        if (e->buf && --e->buf->refs == 0) {
            vcmem_free(&vc->mem, e->buf);
        }
        vcmem_extent_free(&vc->mem, e);
        e = next;
    }
}

/* Under flush_lock: write the sectors of E a torn cut keeps; *ANY is set
 * if it kept one.
 */
static int64_t
write_torn(Vcache *vc, const PowercutRule *r, const VcExtent *e, bool *any)
{
    uint64_t pos = e->offset, end = e->offset + e->length;
    int64_t n = 0;

    while (pos < end && n >= 0) {
        uint64_t sector = pos / POWERCUT_SECTOR;
        uint64_t stop = (sector + 1) * POWERCUT_SECTOR;
        if (stop > end) {
            stop = end;
        }
        if (powercut_keep_sector(r, e->seq, sector)) {
            n = write_piece(vc, e, pos, stop - pos);
            *any = true;
        }
        pos = stop;
    }
    return n;
}

/* Under flush_lock: write the extents of a cut that MODE keeps, in
 * completion order; count kept and dropped writes (a torn write counts
 * as kept if any of its sectors is).
 */
static int
apply_cut(Vcache *vc, const PowercutRule *r, VcExtent *list, uint64_t nwrites,
          uint64_t *kept, uint64_t *dropped)
{
    uint64_t nvol = 0, prefix = 0, ord = 0, last = UINT64_MAX;
    bool cur_kept = false;
    int ret = 0;

    for (VcExtent *e = list; e; e = e->next) {
        if (e->seq != last) {
            nvol++;
            last = e->seq;
        }
    }
    if (r->mode == POWERCUT_PREFIX) {
        prefix = powercut_prefix(r, nvol, nwrites);
    }
    last = UINT64_MAX;
    for (VcExtent *e = list; e; e = e->next) {
        int64_t n = 0;
        bool keep = false;

        if (e->seq != last) {
            if (last != UINT64_MAX) {
                ++*(cur_kept ? kept : dropped);
            }
            cur_kept = false;
            ord++;
            last = e->seq;
        }
        if (r->mode == POWERCUT_SUBSET) {
            keep = powercut_keep_write(r, e->seq);
        } else if (r->mode == POWERCUT_PREFIX) {
            keep = ord <= prefix;
        }
        if (r->mode == POWERCUT_TORN) {
            n = write_torn(vc, r, e, &cur_kept);
        } else if (keep) {
            n = write_piece(vc, e, e->offset, e->length);
            cur_kept = true;
        }
        if (n < 0 && ret == 0) {
            ret = (int)n;
        }
    }
    if (last != UINT64_MAX) {
        ++*(cur_kept ? kept : dropped);
    }
    return ret;
}

/* ---- the write log; everything here runs under flush_lock ---- */

/* Read [OFFSET, OFFSET+LEN) of the image into BUF. */
static int64_t
read_image(Vcache *vc, uint8_t *buf, uint64_t offset, uint64_t len)
{
    struct iovec v = { buf, len };
    PaioRequest r;

    memset(&r, 0, sizeof(r));
    r.type = PAIO_READ;
    r.dev = vc->dev;
    r.offset = offset;
    r.u.rw.iov = &v;
    r.u.rw.niov = 1;
    return paio_handle_read(&r);
}

/* Lay the bytes of E in the sector at POS over SEC. */
static void
lay_over(Vcache *vc, const VcExtent *e, uint64_t pos, uint8_t *sec)
{
    uint64_t from, to;

    if (!overlaps(e, pos, pos + WLOG_SECTOR)) {
        return;
    }
    from = e->offset > pos ? e->offset : pos;
    to = e->offset + e->length < pos + WLOG_SECTOR ? e->offset + e->length
                                                   : pos + WLOG_SECTOR;
    while (e->buf && from < to) {
        uint64_t n = to - from;
        const uint8_t *src =
            vcmem_at(&vc->mem, e->buf, e->buf_off + (from - e->offset), &n);
        memcpy(sec + (from - pos), src, n);
        from += n;
    }
    if (!e->buf) {
        memset(sec + (from - pos), 0, to - from);
    }
}

/* The sector at POS as a replay of the log will hold it just before
 * LIST[I]: the image's, with LIST[0..I) over it.  LIST has not reached the
 * image yet.  A malloc'd sector, or NULL with *ERR set.
 */
static uint8_t *
sector_before(Vcache *vc, VcExtent *const *list, size_t i, uint64_t pos,
              int *err)
{
    uint8_t *sec = malloc(WLOG_SECTOR);
    int64_t n;

    if (!sec) {
        *err = -ENOMEM;
        return NULL;
    }
    n = read_image(vc, sec, pos, WLOG_SECTOR);
    if (n < 0) {
        *err = (int)n;
        free(sec);
        return NULL;
    }
    for (size_t j = 0; j < i; j++) {
        lay_over(vc, list[j], pos, sec);
    }
    return sec;
}

static void
free_pads(uint8_t **pads, size_t n)
{
    for (size_t i = 0; pads && i < 2 * n; i++) {
        free(pads[i]);
    }
    free(pads);
}

/* Before LIST[0..N) reach the image: for each extent that starts or ends
 * inside a sector, that sector as the log's replay sees it before the
 * extent (*PADS[2i] and [2i+1]; NULL where whole; *PADS NULL if none).
 */
static int
pad_list(Vcache *vc, VcExtent *const *list, size_t n, uint8_t ***pads)
{
    int err = 0;

    *pads = NULL;
    for (size_t i = 0; i < n && err == 0; i++) {
        uint64_t end = list[i]->offset + list[i]->length;
        bool head = list[i]->offset % WLOG_SECTOR != 0;
        bool tail = end % WLOG_SECTOR != 0;

        if ((head || tail) && !*pads &&
            !(*pads = calloc(2 * n, sizeof(**pads)))) {
            return -ENOMEM;
        }
        if (head) {
            (*pads)[2 * i] = sector_before(
                vc, list, i, list[i]->offset / WLOG_SECTOR * WLOG_SECTOR, &err);
        }
        if (tail && err == 0) {
            (*pads)[2 * i + 1] = sector_before(
                vc, list, i, (end - 1) / WLOG_SECTOR * WLOG_SECTOR, &err);
        }
    }
    if (err < 0) {
        free_pads(*pads, n);
        *pads = NULL;
    }
    return err;
}

/* Log [OFFSET, OFFSET+LENGTH) of DATA (NULL: zeroes) as one entry. */
static int
log_range(Vcache *vc, uint64_t flags, uint64_t offset, uint64_t length,
          const struct iovec *iov, int niov, const uint8_t *head,
          const uint8_t *tail, uint64_t seq)
{
    WlogWrite w = {
        .flags = flags,
        .offset = offset,
        .length = length,
        .iov = iov,
        .niov = niov,
        .head = head,
        .tail = tail,
        .seq = seq,
    };

    tlbd_mutex_lock(&vc->lock);
    w.writes = vc->nwrites;
    tlbd_mutex_unlock(&vc->lock);
    return wlog_append_write(vc->log, &w);
}

static int
log_extent(Vcache *vc, const VcExtent *e, uint64_t flags, uint8_t *const *pads)
{
    struct iovec local[LOCAL_IOV], *iov = NULL;
    int n = 0, ret;

    if (e->buf) {
        n = piece_iov(vc, e, e->offset, e->length, local, &iov);
        if (n < 0) {
            return n;
        }
    }
    ret = log_range(vc, flags, e->offset, e->length, iov, n,
                    pads ? pads[0] : NULL, pads ? pads[1] : NULL, e->seq);
    if (iov != local) {
        free(iov);
    }
    return ret;
}

/* Log LIST[0..N) (flags 0: volatile), with the pads pad_list made. */
static int
log_list(Vcache *vc, VcExtent *const *list, size_t n, uint8_t *const *pads)
{
    int ret = 0;

    for (size_t i = 0; i < n && ret == 0; i++) {
        ret = log_extent(vc, list[i], 0, pads ? pads + 2 * i : NULL);
    }
    return ret;
}

/* Log a write that has just reached the image, durable: the sectors
 * around it are the image's as they are now.
 */
static int
log_durable(Vcache *vc, uint64_t offset, uint64_t length,
            const struct iovec *iov, int niov, uint64_t seq)
{
    uint8_t head[WLOG_SECTOR], tail[WLOG_SECTOR];
    uint64_t end = offset + length;
    bool h = offset % WLOG_SECTOR != 0;
    bool t = end % WLOG_SECTOR != 0;
    int64_t n = 0;

    if (h) {
        n = read_image(vc, head, offset / WLOG_SECTOR * WLOG_SECTOR,
                       WLOG_SECTOR);
    }
    if (t && n >= 0) {
        n = read_image(vc, tail, (end - 1) / WLOG_SECTOR * WLOG_SECTOR,
                       WLOG_SECTOR);
    }
    if (n < 0) {
        return (int)n;
    }
    return log_range(vc, WLOG_FUA, offset, length, iov, niov, h ? head : NULL,
                     t ? tail : NULL, seq);
}

static int
log_flush(Vcache *vc)
{
    uint64_t writes;

    tlbd_mutex_lock(&vc->lock);
    writes = vc->nwrites;
    tlbd_mutex_unlock(&vc->lock);
    return wlog_append_flush(vc->log, writes);
}

/* The log could not be written (ERR): stop the device, say so once.
 * Returns -EIO.
 */
static int
log_failed(Vcache *vc, int err)
{
    tlbd_mutex_lock(&vc->lock);
    atomic_store(&vc->dead, true);
    tlbd_mutex_unlock(&vc->lock);
    if (!vc->log_failed) {
        vc->log_failed = true;
        fprintf(stderr,
                "tlbd: log-writes: '%s': %s: the device stops, every "
                "request now fails with EIO\n",
                wlog_path(vc->log), strerror(-err));
    }
    return -EIO;
}

/* LIST as an array of its N extents (N may be 0: then NULL). */
static VcExtent **
list_array(VcExtent *list, size_t *n, bool *oom)
{
    VcExtent **a;
    size_t i = 0;

    *n = 0;
    for (VcExtent *e = list; e; e = e->next) {
        ++*n;
    }
    a = *n ? malloc(*n * sizeof(*a)) : NULL;
    *oom = *n && !a;
    for (VcExtent *e = list; a && e; e = e->next) {
        a[i++] = e;
    }
    return a;
}

/* At a cut: log the whole volatile set LIST, then the mark "powercut". */
static void
log_cut(Vcache *vc, VcExtent *list, uint64_t nwrites)
{
    uint8_t **pads = NULL;
    VcExtent **a;
    size_t n;
    bool oom;
    int ret;

    a = list_array(list, &n, &oom);
    ret = oom ? -ENOMEM : pad_list(vc, a, n, &pads);
    if (ret == 0) {
        ret = log_list(vc, a, n, pads);
    }
    if (ret == 0) {
        ret = wlog_append_mark(vc->log, "powercut", nwrites);
    }
    if (ret < 0) {
        log_failed(vc, ret);
    }
    free_pads(pads, n);
    free(a);
}

/* Under flush_lock: cut the power (once) with rule R, for the trigger
 * WHY.  Writes the report line (without the "tlbd: " of stderr) to
 * REPORT (LEN bytes; can be NULL).  Returns 0, -EALREADY if the power was
 * cut already, or -errno if the kept writes could not be written.
 */
static int
cut_locked(Vcache *vc, const PowercutRule *r, const char *why, char *report,
           size_t len)
{
    uint64_t kept = 0, dropped = 0, epoch, nwrites, destaged;
    VcExtent *list;
    char mode[32];
    char line[320];
    int ret;

    tlbd_mutex_lock(&vc->lock);
    if (atomic_load(&vc->dead)) {
        tlbd_mutex_unlock(&vc->lock);
        return -EALREADY;
    }
    atomic_store(&vc->dead, true);
    list = vc->head;
    vc->head = vc->tail = NULL;
    vc->by_ord = vc->by_off = NULL;
    vc->nextents = 0;
    vc->bytes = 0;
    vc->gen++;
    epoch = vc->nflushes;
    nwrites = vc->nwrites;
    destaged = vc->ndestaged;
    tlbd_mutex_unlock(&vc->lock);

    if (vc->log) {
        log_cut(vc, list, nwrites);
    }
    ret = apply_cut(vc, r, list, nwrites, &kept, &dropped);
    free_list(vc, list);
    vcmem_trim(&vc->mem);
    if (ret == 0) {
        ret = paio_do_flush(vc->dev);
    }
    powercut_mode_str(r, mode, sizeof(mode));
    snprintf(line, sizeof(line),
             "power cut (%s): mode=%s seed=%" PRIu64 " epoch=%" PRIu64
             " writes=%" PRIu64 " kept=%" PRIu64 " dropped=%" PRIu64
             " destaged=%" PRIu64 " powercut-token=%s/%" PRIu64 "/%" PRIu64
             "/%" PRIu64 "%s%s",
             why, mode, r->seed, epoch, nwrites, kept, dropped, destaged, mode,
             r->seed, epoch, nwrites, ret < 0 ? ": " : "",
             ret < 0 ? strerror(-ret) : "");
    fprintf(stderr, "tlbd: %s\n", line);
    if (report) {
        snprintf(report, len, "%s", line);
    }
    return ret;
}

/* A cut by the device's rule. */
static void
cut(Vcache *vc, const char *why)
{
    tlbd_mutex_lock(&vc->flush_lock);
    (void)cut_locked(vc, &vc->rule, why, NULL, 0);
    tlbd_mutex_unlock(&vc->flush_lock);
}

void
vcache_rule(const Vcache *vc, PowercutRule *rule)
{
    *rule = vc->rule;
}

int
vcache_powercut(Vcache *vc, const PowercutRule *rule, char *report, size_t len)
{
    int ret;

    tlbd_mutex_lock(&vc->flush_lock);
    ret = cut_locked(vc, rule ? rule : &vc->rule, "on demand", report, len);
    tlbd_mutex_unlock(&vc->flush_lock);
    return ret;
}

void
vcache_get_stats(Vcache *vc, VcacheStats *st)
{
    uint64_t last = 0;

    memset(st, 0, sizeof(*st));
    tlbd_mutex_lock(&vc->lock);
    for (VcExtent *e = vc->head; e; e = e->next) {
        st->volatile_bytes += e->length;
        if (e->seq != last) {
            st->volatile_writes++;
            last = e->seq;
        }
    }
    st->writes = vc->nwrites;
    st->epoch = vc->nflushes;
    st->destaged = vc->ndestaged;
    tlbd_mutex_unlock(&vc->lock);
    st->dead = atomic_load(&vc->dead);
}

int
vcache_mark(Vcache *vc, const char *name)
{
    uint64_t writes;
    bool cut_now;
    bool dead;
    int ret = 0;

    if (!vc) {
        return 0;
    }
    /* flush_lock orders the mark with the log's other entries */
    tlbd_mutex_lock(&vc->flush_lock);
    tlbd_mutex_lock(&vc->lock);
    dead = atomic_load(&vc->dead);
    cut_now = vc->has_rule && strcmp(vc->rule.at_mark, name) == 0;
    writes = vc->nwrites;
    tlbd_mutex_unlock(&vc->lock);
    if (dead) {
        ret = -EIO;
    } else if (vc->log) {
        ret = wlog_append_mark(vc->log, name, writes);
        if (ret < 0) {
            ret = log_failed(vc, ret);
        }
    }
    tlbd_mutex_unlock(&vc->flush_lock);
    if (ret == 0 && cut_now) {
        cut(vc, "at-mark");
    }
    return ret;
}

/* Under flush_lock: write the whole volatile set and fdatasync; then log
 * it and the FLUSH entry.
 */
static int
flush_locked(Vcache *vc)
{
    VcExtent **snap = NULL;
    uint8_t **pads = NULL;
    size_t n = 0, i = 0;
    bool oom;
    int ret = 0;

    tlbd_mutex_lock(&vc->lock);
    if (vc->nextents > 0) {
        snap = malloc(vc->nextents * sizeof(*snap));
    }
    oom = vc->nextents > 0 && !snap;
    for (VcExtent *e = vc->head; snap && e; e = e->next) {
        snap[n++] = e;
    }
    tlbd_mutex_unlock(&vc->lock);
    if (oom) {
        return -ENOMEM;
    }
    /* Only this thread removes extents, so SNAP stays valid. */
    if (vc->log && n > 0) {
        ret = pad_list(vc, snap, n, &pads);
    }
    for (i = 0; i < n && ret == 0; i++) {
        int64_t w = write_piece(vc, snap[i], snap[i]->offset, snap[i]->length);
        ret = w < 0 ? (int)w : 0;
    }
    if (ret == 0) {
        ret = paio_do_flush(vc->dev);
    }
    if (ret == 0 && vc->log) {
        ret = log_list(vc, snap, n, pads);
        if (ret == 0) {
            ret = log_flush(vc);
        }
        if (ret < 0) {
            ret = log_failed(vc, ret);
        }
    }
    free_pads(pads, n);
    if (ret == 0) {
        tlbd_mutex_lock(&vc->lock);
        for (i = 0; i < n; i++) {
            drop_extent(vc, snap[i]);
        }
        vc->gen++;
        tlbd_mutex_unlock(&vc->lock);
        vcmem_trim(&vc->mem);
    }
    free(snap);
    return ret;
}

/* After a completed flush: count it; true if the rule cuts now. */
static bool
flush_done(Vcache *vc)
{
    bool cut_now;

    tlbd_mutex_lock(&vc->lock);
    vc->nflushes++;
    cut_now = vc->has_rule && vc->nflushes == vc->rule.after_flushes;
    tlbd_mutex_unlock(&vc->lock);
    return cut_now;
}

static int64_t
do_flush(Vcache *vc)
{
    int ret = 0;

    tlbd_mutex_lock(&vc->flush_lock);
    if (atomic_load(&vc->dead)) {
        ret = -EIO;
    } else if (!vc->has_rule || vc->rule.mode != POWERCUT_IGNORE_FLUSH) {
        ret = flush_locked(vc);
    } else if (vc->log) {
        /* a disk that lies: the flush made nothing durable */
        ret = log_flush(vc);
        if (ret < 0) {
            ret = log_failed(vc, ret);
        }
    }
    tlbd_mutex_unlock(&vc->flush_lock);
    if (ret == 0 && flush_done(vc)) {
        cut(vc, "after-flushes");
    }
    return ret;
}

/* Under flush_lock: destage one extent picked by the seeded generator.
 * 1 if it did, 0 if the cache holds none, or -errno.
 */
static int
destage_one(Vcache *vc)
{
    VcExtent *e;
    uint64_t pick;
    int64_t n;
    int ret;

    tlbd_mutex_lock(&vc->lock);
    if (vc->nextents == 0) {
        tlbd_mutex_unlock(&vc->lock);
        return 0;
    }
    vc->destage_rng = powercut_mix(vc->destage_rng);
    pick = vc->destage_rng % vc->nextents;
    /* the list is in (seq, offset) order: the pick-th of by_ord */
    e = EXTENT_OF(vcix_nth(vc->by_ord, pick), by_ord);
    tlbd_mutex_unlock(&vc->lock);

    /* E stays: only this thread removes extents. */
    n = write_piece(vc, e, e->offset, e->length);
    if (n < 0) {
        return (int)n;
    }
    ret = supersede(vc, e->offset, e->length, e->seq);
    if (ret < 0) {
        return ret;
    }
    if (vc->log) {
        struct iovec local[LOCAL_IOV], *iov = NULL;
        int niov = 0;
        if (e->buf) {
            niov = piece_iov(vc, e, e->offset, e->length, local, &iov);
        }
        ret = niov < 0
                  ? niov
                  : log_durable(vc, e->offset, e->length, iov, niov, e->seq);
        if (iov != local) {
            free(iov);
        }
        if (ret < 0) {
            return log_failed(vc, ret);
        }
    }
    tlbd_mutex_lock(&vc->lock);
    drop_extent(vc, e);
    vc->gen++;
    vc->ndestaged++;
    tlbd_mutex_unlock(&vc->lock);
    return 1;
}

/* Under lock: a write completed; true if the rule cuts now. */
static bool
write_done_locked(Vcache *vc)
{
    vc->nwrites++;
    return vc->has_rule && vc->nwrites == vc->rule.after_writes;
}

/* The image side of REQ: a write, or zeroes for a discard or write-zeroes,
 * with REQ's FUA.  Bytes or -errno.
 */
static int64_t
image_write(Vcache *vc, PaioRequest *req)
{
    PaioRequest z;

    if (req->type == PAIO_WRITE) {
        return paio_handle_write(req);
    }
    z = *req;
    z.type = PAIO_WRITE_ZEROES;
    z.flags = req->flags & PAIO_FUA;
    (void)vc;
    return paio_handle_write_zeroes(&z);
}

/* A write that goes through to the image (FUA, or larger than the cache):
 * durable (FUA) or destaged when it completes, and older cached data for
 * its range cut out of the cache.
 */
static int64_t
write_through(Vcache *vc, PaioRequest *req, uint64_t length, bool *cut_now)
{
    uint64_t seq;
    int64_t ret;
    int err;

    tlbd_mutex_lock(&vc->flush_lock);
    tlbd_mutex_lock(&vc->lock);
    seq = vc->next_seq++;
    tlbd_mutex_unlock(&vc->lock);
    if (atomic_load(&vc->dead)) {
        ret = -EIO;
    } else {
        ret = image_write(vc, req);
    }
    if (ret >= 0) {
        err = supersede(vc, req->offset, length, seq);
        if (err < 0) {
            ret = err;
        }
    }
    if (ret >= 0) {
        tlbd_mutex_lock(&vc->lock);
        *cut_now = write_done_locked(vc);
        if (!(req->flags & PAIO_FUA)) {
            vc->ndestaged++;
        }
        tlbd_mutex_unlock(&vc->lock);
    }
    if (ret >= 0 && vc->log) {
        bool data = req->type == PAIO_WRITE;
        int lerr =
            log_durable(vc, req->offset, length, data ? req->u.rw.iov : NULL,
                        data ? req->u.rw.niov : 0, seq);
        if (lerr < 0) {
            *cut_now = false;
            ret = log_failed(vc, lerr);
        }
    }
    tlbd_mutex_unlock(&vc->flush_lock);
    return ret;
}

/* Under neither lock: make room by destaging one extent; when the cache
 * holds none (what fills it is still being copied in), let those writers
 * run.  0 or -errno.
 */
static int
make_room(Vcache *vc)
{
    int ret;

    tlbd_mutex_lock(&vc->flush_lock);
    ret = atomic_load(&vc->dead) ? -EIO : destage_one(vc);
    tlbd_mutex_unlock(&vc->flush_lock);
    if (ret == 0) {
        sched_yield();
    }
    return ret < 0 ? ret : 0;
}

/* An extent for REQ, and for a write a buffer holding its data (*BUF),
 * in the cache's memory, made room for as a full cache does.  NULL with
 * *ERR set (-EIO once the power is cut).
 */
static VcExtent *
new_extent(Vcache *vc, const PaioRequest *req, uint64_t length, VcBuf **buf,
           int *err)
{
    bool data = req->type == PAIO_WRITE;
    VcExtent *e = NULL;

    *buf = NULL;
    for (;;) {
        if (data && !*buf) {
            *buf = vcmem_alloc(&vc->mem, length);
        }
        if ((!data || *buf) && !e) {
            e = vcmem_extent_new(&vc->mem, false);
        }
        if ((!data || *buf) && e) {
            break;
        }
        *err = make_room(vc);
        if (*err < 0) {
            vcmem_free(&vc->mem, *buf);
            vcmem_extent_free(&vc->mem, e);
            return NULL;
        }
    }
    if (data) {
        vcmem_copy_in(&vc->mem, *buf, req->u.rw.iov, req->u.rw.niov);
    }
    return e;
}

static void start_background(Vcache *vc);

/* On a worker: destage until under the low mark, the cache empty or dead,
 * or an error (which the next write that needs room meets).
 */
static void
background(ThreadletWork *w)
{
    Vcache *vc = container_of(w, BgWork, work)->vc;
    int ret = 1;

    while (ret > 0) {
        tlbd_mutex_lock(&vc->flush_lock);
        tlbd_mutex_lock(&vc->lock);
        ret = !atomic_load(&vc->dead) && vc->bytes > BG_LOW(vc);
        tlbd_mutex_unlock(&vc->lock);
        if (ret) {
            ret = destage_one(vc);
        }
        tlbd_mutex_unlock(&vc->flush_lock);
    }
}

/* After background: the pool is done with W.  A write that went over the
 * high mark meanwhile saw bg_on and started nothing: start again.
 */
static void
background_done(ThreadletWork *w)
{
    Vcache *vc = container_of(w, BgWork, work)->vc;
    bool again;

    free(container_of(w, BgWork, work));
    atomic_store(&vc->bg_on, false);
    tlbd_mutex_lock(&vc->lock);
    again = !atomic_load(&vc->dead) && vc->bytes > BG_HIGH(vc);
    tlbd_mutex_unlock(&vc->lock);
    if (again) {
        start_background(vc);
    }
    paio_dev_unhold(vc->dev);
}

/* Queue background destaging unless it is queued or running. */
static void
start_background(Vcache *vc)
{
    BgWork *bg;

    if (atomic_exchange(&vc->bg_on, true)) {
        return;
    }
    bg = calloc(1, sizeof(*bg));
    if (bg) {
        bg->vc = vc;
        bg->work.func = background;
        paio_dev_hold(vc->dev);
        if (threadlet_submit_complete(vc->dev->queue, &bg->work, NULL,
                                      background_done) == 0) {
            return;
        }
        paio_dev_unhold(vc->dev);
        free(bg);
    }
    atomic_store(&vc->bg_on, false); /* writes make room themselves */
}

/* Under lock: link E (its BUF charged COST with it) as the newest write
 * if it fits now and the power is on; *CUT_NOW as write_done_locked, *BG
 * whether background destaging should start.
 */
static bool
admit_locked(Vcache *vc, VcExtent *e, uint64_t cost, bool *cut_now, bool *bg)
{
    if (atomic_load(&vc->dead) || vc->bytes + cost > vc->cap) {
        return false;
    }
    e->seq = vc->next_seq++;
    link_after(vc, NULL, e);
    vc->bytes += e->buf ? vcmem_charge(e->buf) : 0;
    *cut_now = write_done_locked(vc);
    *bg = !vc->has_rule && !vc->dev->caller_runs && vc->bytes > BG_HIGH(vc) &&
          !atomic_load(&vc->bg_on);
    return true;
}

/* The least a write of LENGTH bytes of data costs: its units, one run. */
static uint64_t
least_cost(uint64_t length)
{
    return EXTENT_COST + vcmem_units(length) * VCMEM_UNIT + sizeof(VcBuf);
}

/* A write, write-zeroes or discard of LENGTH bytes into the cache. */
static int64_t
do_write(Vcache *vc, PaioRequest *req, uint64_t length, bool *cut_now)
{
    uint64_t cost = req->type == PAIO_WRITE ? least_cost(length) : EXTENT_COST;
    VcExtent *e;
    VcBuf *buf = NULL;
    int ret;

    ret = paio_check_end(vc->dev, req->offset, length);
    if (ret < 0) {
        return ret;
    }
    if (length == 0) {
        return 0;
    }
    if ((req->flags & PAIO_FUA) || cost > vc->cap) {
        return write_through(vc, req, length, cut_now);
    }
    e = new_extent(vc, req, length, &buf, &ret);
    if (!e) {
        return ret;
    }
    if (buf) {
        cost = EXTENT_COST + vcmem_charge(buf);
        if (cost > vc->cap) {
            /* scattered in too many runs to be charged: write it through */
            vcmem_free(&vc->mem, buf);
            vcmem_extent_free(&vc->mem, e);
            return write_through(vc, req, length, cut_now);
        }
    }
    e->offset = req->offset;
    e->length = length;
    e->buf = buf;
    for (;;) {
        bool bg = false;

        tlbd_mutex_lock(&vc->lock);
        if (admit_locked(vc, e, cost, cut_now, &bg)) {
            tlbd_mutex_unlock(&vc->lock);
            if (bg) {
                start_background(vc);
            }
            return (int64_t)length;
        }
        if (atomic_load(&vc->dead)) {
            ret = -EIO;
        }
        tlbd_mutex_unlock(&vc->lock);
        if (ret == 0) {
            ret = make_room(vc);
        }
        if (ret < 0) {
            vcmem_free(&vc->mem, buf); /* never charged */
            vcmem_extent_free(&vc->mem, e);
            return ret;
        }
    }
}

bool
vcache_try_inline(Vcache *vc, PaioRequest *req)
{
    uint64_t length = paio_iov_total(req->u.rw.iov, req->u.rw.niov);
    bool cut_now = false, bg = false, done;
    VcExtent *e;
    VcBuf *buf;

    if (req->type != PAIO_WRITE || (req->flags & PAIO_FUA) || length == 0 ||
        least_cost(length) > vc->cap || atomic_load(&vc->dead) ||
        (vc->has_rule && vc->rule.after_ns) ||
        paio_check_end(vc->dev, req->offset, length) < 0) {
        return false; /* a cut, an error, or the image to write */
    }
    buf = vcmem_alloc(&vc->mem, length);
    e = buf ? vcmem_extent_new(&vc->mem, false) : NULL;
    if (!e) {
        vcmem_free(&vc->mem, buf);
        return false; /* full: making room writes the image */
    }
    vcmem_copy_in(&vc->mem, buf, req->u.rw.iov, req->u.rw.niov);
    e->offset = req->offset;
    e->length = length;
    e->buf = buf;
    tlbd_mutex_lock(&vc->lock);
    /* not the write a rule cuts at: the cut writes the image */
    done = !(vc->has_rule && vc->nwrites + 1 == vc->rule.after_writes) &&
           admit_locked(vc, e, EXTENT_COST + vcmem_charge(buf), &cut_now, &bg);
    tlbd_mutex_unlock(&vc->lock);
    if (bg) {
        start_background(vc);
    }
    if (!done) {
        vcmem_free(&vc->mem, buf);
        vcmem_extent_free(&vc->mem, e);
        return false;
    }
    req->ret = (int64_t)length;
    return true;
}

int64_t
vcache_handle(Vcache *vc, PaioRequest *req, int64_t (*fallback)(PaioRequest *))
{
    bool cut_now = false;
    uint64_t length;
    int64_t ret;

    if (vc->has_rule && vc->rule.after_ns && !atomic_load(&vc->dead) &&
        tlbd_now_ns() - vc->start_ns >= vc->rule.after_ns) {
        cut(vc, "after");
    }
    if (atomic_load(&vc->dead)) {
        return -EIO;
    }
    switch (req->type) {
    case PAIO_READ:
        return do_read(vc, req);
    case PAIO_FLUSH:
        return do_flush(vc);
    case PAIO_WRITE:
        length = paio_iov_total(req->u.rw.iov, req->u.rw.niov);
        break;
    case PAIO_DISCARD:
        if (vc->dev->discard_ignore) {
            return fallback(req);
        }
        length = req->u.range.length; /* cached as zeroes */
        break;
    case PAIO_WRITE_ZEROES:
        length = req->u.range.length;
        break;
    case PAIO_TRUNCATE:
        /* The cache holds no size changes. */
        return req->u.truncate.size == paio_dev_size(vc->dev) ? 0 : -ENOTSUP;
    default:
        return fallback(req);
    }
    ret = do_write(vc, req, length, &cut_now);
    if (ret >= 0 && req->type != PAIO_WRITE) {
        ret = 0;
    }
    if (cut_now) {
        cut(vc, "after-writes");
    }
    return ret;
}

int
vcache_new(PaioDev *dev, uint64_t size, const PowercutRule *rule, Wlog *log,
           Vcache **out)
{
    Vcache *vc = calloc(1, sizeof(*vc));
    int err = vc ? vcmem_init(&vc->mem, size, sizeof(VcExtent)) : -ENOMEM;

    *out = NULL;
    if (err < 0) {
        free(vc);
        wlog_close(log);
        return err;
    }
    vc->dev = dev;
    vc->log = log;
    vc->cap = size;
    vc->has_rule = rule != NULL;
    vc->rule = (PowercutRule){ .mode = POWERCUT_ALL, .p = 0.5 };
    if (rule) {
        vc->rule = *rule;
        vc->destage_rng = rule->seed;
    }
    vc->start_ns = tlbd_now_ns();
    vc->next_seq = 1;
    atomic_init(&vc->dead, false);
    pthread_mutex_init(&vc->flush_lock, NULL);
    pthread_mutex_init(&vc->lock, NULL);
    dev->vcache = vc;
    *out = vc;
    return 0;
}

int
vcache_free(Vcache *vc)
{
    int ret = 0;

    if (!vc) {
        return 0;
    }
    tlbd_mutex_lock(&vc->flush_lock);
    if (!atomic_load(&vc->dead)) {
        ret = flush_locked(vc);
    }
    if (vc->log) {
        char *path = strdup(wlog_path(vc->log));
        int err = wlog_close(vc->log);
        vc->log = NULL;
        if (err < 0 && !vc->log_failed) {
            fprintf(stderr, "tlbd: log-writes: '%s': %s\n", path ? path : "",
                    strerror(-err));
        }
        free(path);
    }
    tlbd_mutex_unlock(&vc->flush_lock);
    free_list(vc, vc->head);
    vcmem_destroy(&vc->mem);
    vc->dev->vcache = NULL;
    pthread_mutex_destroy(&vc->lock);
    pthread_mutex_destroy(&vc->flush_lock);
    free(vc);
    return ret;
}
