/* tlbd: replaying a write log onto an image (tlbd replay), optionally with
 * a power cut: the same decisions as the live cut (powercut.c), applied
 * to the volatile set, that is the write entries after the last FLUSH
 * entry before the limit that are not FUA.  The log's extension gives
 * every write its sequence number, so subset, torn and prefix decide as
 * the cache did; replaying to the MARK "powercut" with the live cut's mode
 * and seed gives the live cut's image.
 *
 * Everything is checked before the image is opened for writing.  The
 * image is written through a BlockDev (writes, and write-zeroes for
 * DISCARD entries), then flushed.
 *
 * Threads: the caller's; the BlockDev runs on the global queue.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev.h"
#include "blockdev-int.h"
#include "vcache.h"
#include "wlog.h"

/* The bytes copied from the log at a time. */
#define CHUNK (1024 * 1024)

int
wlog_replay_range(WlogReader *r, const WlogReplayOptions *opts, uint64_t *from,
                  uint64_t *to, char **errmsg)
{
    uint64_t n = wlog_reader_count(r);
    WlogEntry e;

    *to = n;
    if (opts->has_limit && opts->to_mark) {
        return blockdev_fail(errmsg, -EINVAL,
                             "--limit and --to-mark exclude each "
                             "other");
    }
    if (opts->has_limit) {
        if (opts->limit > n) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "--limit %" PRIu64
                                 ": the log has only %" PRIu64 " entries",
                                 opts->limit, n);
        }
        *to = opts->limit;
    } else if (opts->to_mark) {
        uint64_t i;
        for (i = 0; i < n; i++) {
            int ret = wlog_reader_entry(r, i, &e);
            if (ret < 0) {
                return blockdev_fail(errmsg, ret,
                                     "reading entry %" PRIu64 ": %s", i,
                                     strerror(-ret));
            }
            if ((e.flags & WLOG_MARK) && strcmp(e.mark, opts->to_mark) == 0) {
                break;
            }
        }
        if (i == n) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "--to-mark '%s': no such mark in "
                                 "the log",
                                 opts->to_mark);
        }
        *to = i + 1;
    }
    if (opts->from > *to) {
        return blockdev_fail(errmsg, -EINVAL,
                             "--from %" PRIu64
                             ": beyond the end of the range (%" PRIu64 ")",
                             opts->from, *to);
    }
    *from = opts->from;
    return 0;
}

/* What a replay with a cut decides, from the log. */
typedef struct Plan {
    WlogReader *r;
    uint64_t from, to;
    bool cut;
    PowercutRule rule;
    uint64_t vstart; /* the volatile set: [vstart, to), not FUA */
    uint64_t prefix; /* prefix mode: the writes kept */
} Plan;

static bool
is_write(const WlogEntry *e)
{
    return !(e->flags & WLOG_MARK) && (e->nr_sectors > 0);
}

static bool
is_volatile(const Plan *p, uint64_t i, const WlogEntry *e)
{
    return p->cut && i >= p->vstart && is_write(e) && !(e->flags & WLOG_FUA);
}

/* Check the range against the image's SIZE and plan the cut. */
static int
plan(Plan *p, uint64_t size, char **errmsg)
{
    uint64_t ss = wlog_reader_sectorsize(p->r);
    uint64_t nvol = 0, last = 0, writes = 0;
    bool first = true;
    WlogEntry e;

    p->vstart = 0;
    for (uint64_t i = 0; i < p->to; i++) {
        int ret = wlog_reader_entry(p->r, i, &e);
        if (ret < 0) {
            return blockdev_fail(errmsg, ret, "reading entry %" PRIu64 ": %s",
                                 i, strerror(-ret));
        }
        if (e.flags & WLOG_FLUSH) {
            p->vstart = i + 1;
        }
        if (i >= p->from && is_write(&e) &&
            (e.sector + e.nr_sectors) * ss - e.tail > size) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "entry %" PRIu64
                                 " writes past the end of the image "
                                 "(%" PRIu64 " bytes)",
                                 i, size);
        }
        writes = e.has_ext ? e.writes : writes;
    }
    if (!p->cut) {
        return 0;
    }
    if (p->from > p->vstart) {
        return blockdev_fail(errmsg, -EINVAL,
                             "--from %" PRIu64
                             ": a cut needs the image from before "
                             "the volatile set, which starts at entry %" PRIu64,
                             p->from, p->vstart);
    }
    for (uint64_t i = p->vstart; i < p->to; i++) {
        int ret = wlog_reader_entry(p->r, i, &e);
        if (ret < 0) {
            return blockdev_fail(errmsg, ret, "reading entry %" PRIu64 ": %s",
                                 i, strerror(-ret));
        }
        if (!is_volatile(p, i, &e)) {
            continue;
        }
        if (!e.has_ext) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "entry %" PRIu64
                                 " has no sequence number: --cut "
                                 "needs a log written by tlbd",
                                 i);
        }
        if (first || e.seq != last) {
            nvol++;
            last = e.seq;
            first = false;
        }
    }
    if (p->rule.mode == POWERCUT_PREFIX) {
        p->prefix = powercut_prefix(&p->rule, nvol, writes);
    }
    return 0;
}

/* Write bytes [START, END) of the image from entry E (zeroes for a
 * DISCARD entry).
 */
static int
apply_range(WlogReader *r, BlockDev *bd, const WlogEntry *e, uint64_t start,
            uint64_t end, uint8_t *buf)
{
    uint64_t base = e->sector * wlog_reader_sectorsize(r);

    if (e->flags & WLOG_DISCARD) {
        int64_t n =
            blockdev_write_zeroes(bd, start, end - start, BLOCKDEV_MAY_TRIM);
        return n < 0 ? (int)n : 0;
    }
    while (start < end) {
        size_t len = end - start > CHUNK ? CHUNK : (size_t)(end - start);
        int64_t n;
        int ret = wlog_reader_data(r, e, start - base, buf, len);
        if (ret < 0) {
            return ret;
        }
        n = blockdev_pwrite(bd, buf, len, start, 0);
        if (n < 0) {
            return (int)n;
        }
        start += len;
    }
    return 0;
}

/* Entry E's bytes, or the sectors of them a torn cut keeps. */
static int
apply_entry(const Plan *p, BlockDev *bd, const WlogEntry *e, bool torn,
            uint8_t *buf, bool *any)
{
    uint64_t ss = wlog_reader_sectorsize(p->r);
    uint64_t start = e->sector * ss + e->head;
    uint64_t end = (e->sector + e->nr_sectors) * ss - e->tail;
    int ret = 0;

    if (!torn) {
        *any = true;
        return apply_range(p->r, bd, e, start, end, buf);
    }
    while (start < end && ret == 0) {
        uint64_t sector = start / POWERCUT_SECTOR;
        uint64_t stop = (sector + 1) * POWERCUT_SECTOR;
        if (stop > end) {
            stop = end;
        }
        if (powercut_keep_sector(&p->rule, e->seq, sector)) {
            ret = apply_range(p->r, bd, e, start, stop, buf);
            *any = true;
        }
        start = stop;
    }
    return ret;
}

/* Apply [from, to) as planned; count kept and dropped volatile writes as
 * the live cut does (per sequence number).
 */
static int
run(const Plan *p, BlockDev *bd, WlogReplayStats *st, char **errmsg)
{
    uint8_t *buf = malloc(CHUNK);
    uint64_t ord = 0, last = 0;
    bool first = true, cur_kept = false;
    WlogEntry e;
    int ret = 0;

    if (!buf) {
        return blockdev_fail(errmsg, -ENOMEM, "out of memory");
    }
    for (uint64_t i = p->from; i < p->to && ret == 0; i++) {
        bool keep = true, torn = false, any = false;

        ret = wlog_reader_entry(p->r, i, &e);
        if (ret < 0 || !is_write(&e)) {
            continue;
        }
        if (is_volatile(p, i, &e)) {
            if (first || e.seq != last) {
                if (!first) {
                    ++*(cur_kept ? &st->kept : &st->dropped);
                }
                first = false;
                cur_kept = false;
                ord++;
                last = e.seq;
            }
            switch (p->rule.mode) {
            case POWERCUT_SUBSET:
                keep = powercut_keep_write(&p->rule, e.seq);
                break;
            case POWERCUT_PREFIX:
                keep = ord <= p->prefix;
                break;
            case POWERCUT_TORN:
                torn = true;
                break;
            default:
                keep = false;
                break;
            }
        }
        if (keep || torn) {
            ret = apply_entry(p, bd, &e, torn, buf, &any);
            st->applied += any;
            cur_kept = cur_kept || any;
        }
        if (ret < 0) {
            blockdev_fail(errmsg, ret, "entry %" PRIu64 ": %s", i,
                          strerror(-ret));
        }
    }
    if (!first) {
        ++*(cur_kept ? &st->kept : &st->dropped);
    }
    free(buf);
    return ret;
}

int
wlog_replay(const char *log, const char *image, const WlogReplayOptions *opts,
            WlogReplayStats *stats, bool *wrote, char **errmsg)
{
    BlockDevOptions bopts;
    WlogReader *r = NULL;
    BlockDev *bd = NULL;
    Plan p;
    int ret;

    *wrote = false;
    if (errmsg) {
        *errmsg = NULL;
    }
    memset(stats, 0, sizeof(*stats));
    memset(&p, 0, sizeof(p));
    if (opts->cut) {
        p.rule = (PowercutRule){ .mode = POWERCUT_ALL, .p = 0.5 };
        ret = powercut_parse_mode(opts->cut, &p.rule, errmsg);
        if (ret < 0) {
            return ret;
        }
        p.rule.seed = opts->seed;
        p.cut = true;
    }
    ret = wlog_reader_open(log, &r, errmsg);
    if (ret < 0) {
        return ret;
    }
    p.r = r;
    ret = wlog_replay_range(r, opts, &p.from, &p.to, errmsg);
    if (ret < 0) {
        goto out;
    }
    blockdev_options_init(&bopts);
    ret = blockdev_open(image, &bopts, &bd, errmsg);
    if (ret < 0) {
        goto out;
    }
    ret = plan(&p, blockdev_size(bd), errmsg);
    if (ret < 0) {
        goto out;
    }
    stats->from = p.from;
    stats->to = p.to;
    *wrote = true;
    ret = run(&p, bd, stats, errmsg);
    if (ret == 0) {
        int64_t n = blockdev_flush(bd);
        if (n < 0) {
            ret = blockdev_fail(errmsg, (int)n, "'%s': flush: %s", image,
                                strerror((int)-n));
        }
    }
out:
    blockdev_close(bd);
    wlog_reader_close(r);
    return ret;
}
