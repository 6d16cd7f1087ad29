/* tlbd: the write log (log-writes=FILE) as a file: its format, a reader,
 * and the replay that rebuilds an image from it (tlbd replay).
 *
 * The format is dm-log-writes' (Linux, version 1), see paio(3) "THE WRITE
 * LOG": a super block in the first sector, then per entry one sector that
 * starts with the entry (sector, nr_sectors, flags, data_len; little
 * endian) and then the data's sectors (none for FLUSH, DISCARD and MARK;
 * a mark's name follows the entry inside its sector).  tlbd's one
 * extension sits in the last WLOG_EXT_SIZE bytes of the entry sector,
 * which dm-log-writes leaves zero: the write's sequence number, the writes
 * completed when it was logged, and the bytes of padding around a write
 * that does not fill whole sectors.
 *
 * The log itself is written by the volatile cache (blockdrv/vcache.c,
 * through blockdrv/wlog.c's writer).  This header is for the front ends
 * and the tests.
 *
 * Threads: a WlogReader belongs to one thread at a time.
 */
#ifndef TLBD_WLOG_H
#define TLBD_WLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Entry flags, as dm-log-writes defines them. */
#define WLOG_FLUSH    (1u << 0)
#define WLOG_FUA      (1u << 1)
#define WLOG_DISCARD  (1u << 2)
#define WLOG_MARK     (1u << 3)
#define WLOG_METADATA (1u << 4)

#define WLOG_MAGIC   0x6a736677736872ull
#define WLOG_VERSION 1ull
/* struct log_write_entry, at the start of an entry sector. */
#define WLOG_ENTRY_SIZE 32u
/* The sector size of the logs tlbd writes. */
#define WLOG_SECTOR 512u
/* tlbd's extension: the last bytes of an entry sector. */
#define WLOG_EXT_SIZE  32u
#define WLOG_EXT_MAGIC 0x3171657364626c74ull /* "tlbdseq1" */

/* One entry as the reader sees it. */
typedef struct WlogEntry {
    uint64_t sector;        /* in the log's sector size */
    uint64_t nr_sectors;    /* of data (DISCARD: the range) */
    uint64_t flags;         /* WLOG_* */
    uint64_t pos;           /* byte offset of the data in the log file */
    bool has_ext;           /* tlbd's extension is there */
    uint64_t seq;           /* the write's sequence number; 0: none */
    uint64_t writes;        /* writes completed when it was logged */
    uint32_t head;          /* padding bytes before the data (first sector) */
    uint32_t tail;          /* padding bytes after it (last sector) */
    char mark[WLOG_SECTOR]; /* a MARK's name, NUL-terminated */
} WlogEntry;

typedef struct WlogReader WlogReader;

/* Open the log at PATH and check all of it: the super block, and every
 * entry it counts within the file, with known flags.  Returns 0, or
 * -errno with *ERRMSG (malloc'd) such as "'log': entry 7 is cut short
 * (the file ends at byte 4096)".
 */
int wlog_reader_open(const char *path, WlogReader **out, char **errmsg);
void wlog_reader_close(WlogReader *r);

uint64_t wlog_reader_count(const WlogReader *r);
uint32_t wlog_reader_sectorsize(const WlogReader *r);

/* Entry I (< wlog_reader_count) into *E.  Returns 0 or -errno. */
int wlog_reader_entry(WlogReader *r, uint64_t i, WlogEntry *e);

/* Read LEN bytes of entry E's data from byte OFF of its sectors.  Returns
 * 0 or -errno.
 */
int wlog_reader_data(WlogReader *r, const WlogEntry *e, uint64_t off, void *buf,
                     size_t len);

/* E's flags as "FLUSH,FUA" ("-" for a plain write) into BUF. */
void wlog_flags_str(uint64_t flags, char *buf, size_t len);

/* What tlbd replay does. */
typedef struct WlogReplayOptions {
    bool has_limit;
    uint64_t limit;      /* entries [0, limit); with neither: all */
    const char *to_mark; /* up to and including this mark. Can be NULL. */
    uint64_t from;       /* IMAGE already holds the state after [0, from) */
    const char *cut;     /* a power-cut mode (all, subset:P, prefix, torn:P,
                            ignore-flush) applied to the volatile set. Can be
                            NULL: every entry is applied. */
    uint64_t seed;
} WlogReplayOptions;

/* What a replay did. */
typedef struct WlogReplayStats {
    uint64_t from, to; /* the entries [from, to) */
    uint64_t applied;  /* write and discard entries written */
    uint64_t kept;     /* of the volatile set's writes */
    uint64_t dropped;
} WlogReplayStats;

/* Replay the log LOG onto the image IMAGE (which must exist).  Everything
 * (the whole log, the range, the mark, the mode, the image's size) is
 * checked before IMAGE is opened for writing: then -EINVAL (or another
 * -errno) with *ERRMSG, and IMAGE untouched.  A failure while writing
 * returns -errno with *ERRMSG and sets *WROTE.
 */
int wlog_replay(const char *log, const char *image,
                const WlogReplayOptions *opts, WlogReplayStats *stats,
                bool *wrote, char **errmsg);

/* Resolve OPTS's range in R: [*FROM, *TO).  -EINVAL with *ERRMSG for a
 * limit beyond the log, an unknown mark, or FROM past the end.
 */
int wlog_replay_range(WlogReader *r, const WlogReplayOptions *opts,
                      uint64_t *from, uint64_t *to, char **errmsg);

#endif /* TLBD_WLOG_H */
