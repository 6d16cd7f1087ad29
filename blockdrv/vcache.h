/* tlbd: the volatile write cache (vcache.c) and the power-cut rules
 * (powercut.c), private to blockdrv.
 *
 * The model (paio(3), "POWER LOSS"): at a power cut the image holds every
 * write completed before the last completed flush, every completed FUA
 * write, every write the cache destaged early, and of the other writes
 * completed since that flush (the volatile set) whatever the cut mode
 * keeps.  Discards and write-zeroes are writes here.
 *
 * Threads: powercut_* are pure functions.  The Vcache is called by
 * paio_worker on whatever thread runs the request (a pool worker, or the
 * caller with offload=never); vcache_new and vcache_free by blockdev_open
 * and blockdev_close.
 */
#ifndef TLBD_VCACHE_H
#define TLBD_VCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev.h"
#include "paio.h"
#include "wlog.h"

typedef enum PowercutMode {
    POWERCUT_ALL = 0,      /* the volatile set is lost */
    POWERCUT_SUBSET,       /* each volatile write kept with probability p */
    POWERCUT_PREFIX,       /* a random prefix in completion order kept */
    POWERCUT_TORN,         /* each 512-byte sector of each write: p */
    POWERCUT_IGNORE_FLUSH, /* flushes do nothing; the cut loses the rest */
} PowercutMode;

/* The sector a torn cut keeps or drops as a whole. */
#define POWERCUT_SECTOR 512u

typedef struct PowercutRule {
    uint64_t after_writes;  /* cut as the N-th write completes; 0: no */
    uint64_t after_flushes; /* cut as the N-th flush completes; 0: no */
    uint64_t after_ns;      /* cut at the first request this long after
                               the open; 0: no */
    char at_mark[BLOCKDEV_MARK_MAX + 1]; /* cut as this mark is placed;
                                            "": no */
    PowercutMode mode;
    double p; /* subset and torn */
    uint64_t seed;
} PowercutRule;

/* Parse "after-writes=N,mode=subset:0.5,seed=7" (see paio(3)).  Returns 0,
 * or -EINVAL with *ERRMSG (malloc'd, if ERRMSG is not NULL) such as
 * "powercut: 'SPEC': unknown mode 'x' at column 12".
 */
int powercut_parse(const char *spec, PowercutRule *rule, char **errmsg);

/* Parse MODE ("subset:0.5") into RULE's mode and p, for a cut on demand.
 * Returns 0, or -EINVAL with *ERRMSG as powercut_parse's, SPEC being MODE.
 */
int powercut_parse_mode(const char *mode, PowercutRule *rule, char **errmsg);

/* The mode as the rule spells it: "all", "subset:0.5", ... */
void powercut_mode_str(const PowercutRule *rule, char *buf, size_t len);

/* The decisions of a cut, functions of the seed and the write's sequence
 * number only, so a split write decides as one and a cut is reproducible:
 * keep write SEQ (subset), keep sector SECTOR (an absolute sector number)
 * of write SEQ (torn), and how many of NVOLATILE writes a prefix cut
 * keeps (0..NVOLATILE) when NWRITES writes have completed.
 */
bool powercut_keep_write(const PowercutRule *rule, uint64_t seq);
bool powercut_keep_sector(const PowercutRule *rule, uint64_t seq,
                          uint64_t sector);
uint64_t powercut_prefix(const PowercutRule *rule, uint64_t nvolatile,
                         uint64_t nwrites);

/* splitmix64 of X: the generator both files use. */
uint64_t powercut_mix(uint64_t x);

/* The write log's writer (wlog.c; the format is in wlog.h).  Only the
 * cache writes a log, under its flush_lock, so a Wlog has no lock.
 */
typedef struct Wlog Wlog;

/* Create (or truncate) the log PATH and write its super block.  Returns
 * 0, or -errno with *ERRMSG "log-writes: cannot create 'PATH': ...".
 */
int wlog_create(const char *path, Wlog **out, char **errmsg);
const char *wlog_path(const Wlog *log);

/* One write entry: [OFFSET, OFFSET+LENGTH) of IOV (NULL: zeroes, a
 * DISCARD entry when the range is whole sectors).  HEAD and TAIL are the
 * WLOG_SECTOR bytes of the first and last sector as a replay of the log so
 * far leaves them, for a range that starts or ends inside a sector (else
 * NULL).  SEQ is the write's sequence number, WRITES the writes completed.
 */
typedef struct WlogWrite {
    uint64_t flags; /* WLOG_FUA, or 0 */
    uint64_t offset;
    uint64_t length;
    const struct iovec *iov; /* Can be NULL. */
    int niov;
    const uint8_t *head; /* Can be NULL. */
    const uint8_t *tail; /* Can be NULL. */
    uint64_t seq;
    uint64_t writes;
} WlogWrite;

/* Append an entry; a FLUSH entry; a MARK entry.  Returns 0 or -errno;
 * after a failure every append fails.
 */
int wlog_append_write(Wlog *log, const WlogWrite *w);
int wlog_append_flush(Wlog *log, uint64_t writes);
int wlog_append_mark(Wlog *log, const char *name, uint64_t writes);

/* Update the super block, fdatasync and close.  NULL is fine.  Returns 0
 * or -errno.
 */
int wlog_close(Wlog *log);

typedef struct Vcache Vcache;

/* A cache of at most SIZE bytes in front of DEV (which must not have one),
 * with the power-cut RULE (NULL: none) and the write log LOG (NULL: none;
 * the cache owns it from now on).  It takes over DEV's reads, writes,
 * flushes, discards and write-zeroes (paio_worker calls vcache_handle).
 * Returns 0 or -errno.
 */
int vcache_new(PaioDev *dev, uint64_t size, const PowercutRule *rule, Wlog *log,
               Vcache **out);

/* Run REQ through the cache; FALLBACK is paio's own handler for REQ's
 * type, for the requests the cache does not take.  Bytes, 0 or -errno;
 * -EIO for everything once the power was cut.
 */
/* A write that fits in the cache now, without making room, a cut or an
 * error, done on the calling thread (paio_try_inline): true if it was,
 * with REQ->ret set; false leaves nothing changed.
 */
bool vcache_try_inline(Vcache *vc, PaioRequest *req);

int64_t vcache_handle(Vcache *vc, PaioRequest *req,
                      int64_t (*fallback)(PaioRequest *));

/* The device's rule (mode all, p 0.5, seed 0, no trigger without one),
 * the defaults of a cut on demand.
 */
void vcache_rule(const Vcache *vc, PowercutRule *rule);

/* Cut the power now with RULE's mode, p and seed (its triggers do not
 * matter; NULL: vcache_rule's).  The report line, as printed on stderr
 * without "tlbd: ", goes to REPORT (LEN bytes; can be NULL).  Returns 0,
 * -EALREADY if the power was cut already, or -errno if the kept writes
 * could not be written (the device is dead all the same).
 */
int vcache_powercut(Vcache *vc, const PowercutRule *rule, char *report,
                    size_t len);

typedef struct VcacheStats {
    uint64_t volatile_bytes;  /* data bytes in the volatile set */
    uint64_t volatile_writes; /* writes in the volatile set */
    uint64_t writes;          /* writes completed (zeroes, discards too) */
    uint64_t epoch;           /* flushes completed */
    uint64_t destaged;        /* writes destaged early */
    bool dead;                /* the power was cut */
} VcacheStats;

/* A snapshot of the counters; walks the extents, O(extents). */
void vcache_get_stats(Vcache *vc, VcacheStats *st);

/* Place the mark NAME (a name blockdev_is_mark_name accepts): the one
 * place where a mark happens.  A rule's at-mark=NAME cuts the power here,
 * after every write completed before the mark.  VC may be NULL (a device
 * without a cache): the mark then does nothing here.  Returns 0, or -EIO
 * once the power was cut.
 */
int vcache_mark(Vcache *vc, const char *name);

/* An orderly shutdown: write the volatile set and fdatasync, unless the
 * power was cut; then detach from the device and free.  Call it once no
 * request is in flight.  NULL is fine.  Returns 0 or -errno of the flush.
 */
int vcache_free(Vcache *vc);

#endif /* TLBD_VCACHE_H */
