/* tlbd: the write log's file (log-writes=FILE): the writer the volatile
 * cache calls and the reader tlbd replay and the tests use.  The format is
 * dm-log-writes' (wlog.h, paio(3) "THE WRITE LOG").
 *
 * Writer: entries are appended at the end; the super block's nr_entries
 * is rewritten after every FLUSH, FUA and MARK entry (as dm-log-writes
 * does for FUA and MARK) and at close.  The first failure is kept and
 * every later append fails with it.  Threads: only the cache's flush_lock
 * holder writes, so a Wlog has no lock of its own.
 *
 * Reader: wlog_reader_open walks every entry the super block counts and
 * refuses the log if one is cut short or malformed, so whoever uses it
 * knows the whole log is there before it touches anything.  One thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "blockdev-int.h"
#include "vcache.h"

#define ENTRY_SIZE 32u /* struct log_write_entry */
#define KNOWN_FLAGS                                                            \
    (WLOG_FLUSH | WLOG_FUA | WLOG_DISCARD | WLOG_MARK | WLOG_METADATA)

static void
put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void
put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t
get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint32_t
get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* ---- writer ---- */

struct Wlog {
    char *path;
    int fd;
    uint64_t pos;        /* where the next entry goes */
    uint64_t nr_entries; /* appended */
    int err;             /* the first failure, or 0 */
};

static const uint8_t zeroes[64 * 1024];

/* pwritev all of IOV at POS, in pieces of at most IOV_MAX iovecs. */
static int
write_all(int fd, struct iovec *iov, int niov, uint64_t pos)
{
    while (niov > 0) {
        int n = niov > IOV_MAX ? IOV_MAX : niov;
        ssize_t r = pwritev(fd, iov, n, (off_t)pos);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -errno;
        }
        if (r == 0) {
            return -EIO;
        }
        pos += (uint64_t)r;
        while (niov > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

static int
write_super(Wlog *log)
{
    uint8_t sb[WLOG_SECTOR] = { 0 };
    struct iovec v = { sb, sizeof(sb) };

    put_le64(sb, WLOG_MAGIC);
    put_le64(sb + 8, WLOG_VERSION);
    put_le64(sb + 16, log->nr_entries);
    put_le32(sb + 24, WLOG_SECTOR);
    return write_all(log->fd, &v, 1, 0);
}

int
wlog_create(const char *path, Wlog **out, char **errmsg)
{
    Wlog *log = calloc(1, sizeof(*log));
    int ret;

    *out = NULL;
    if (!log || !(log->path = strdup(path))) {
        free(log);
        return blockdev_fail(errmsg, -ENOMEM, "log-writes: '%s': out of memory",
                             path);
    }
    log->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log->fd < 0) {
        ret =
            blockdev_fail(errmsg, -errno, "log-writes: cannot create '%s': %s",
                          path, strerror(errno));
        free(log->path);
        free(log);
        return ret;
    }
    log->pos = WLOG_SECTOR;
    ret = write_super(log);
    if (ret < 0) {
        blockdev_fail(errmsg, ret, "log-writes: '%s': %s", path,
                      strerror(-ret));
        close(log->fd);
        free(log->path);
        free(log);
        return ret;
    }
    *out = log;
    return 0;
}

const char *
wlog_path(const Wlog *log)
{
    return log->path;
}

/* The entry sector: the entry, NAME (a mark's) after it, the extension in
 * its last bytes.
 */
static void
fill_entry(uint8_t *s, uint64_t sector, uint64_t nr, uint64_t flags,
           const char *name, uint64_t seq, uint64_t writes, uint32_t head,
           uint32_t tail)
{
    uint8_t *ext = s + WLOG_SECTOR - WLOG_EXT_SIZE;
    size_t len = name ? strlen(name) : 0;

    memset(s, 0, WLOG_SECTOR);
    put_le64(s, sector);
    put_le64(s + 8, nr);
    put_le64(s + 16, flags);
    put_le64(s + 24, len);
    if (len) {
        memcpy(s + ENTRY_SIZE, name, len);
    }
    put_le64(ext, WLOG_EXT_MAGIC);
    put_le64(ext + 8, seq);
    put_le64(ext + 16, writes);
    put_le32(ext + 24, head);
    put_le32(ext + 28, tail);
}

/* Append the entry sector S and DATA (NIOV iovecs) as one entry. */
static int
append(Wlog *log, uint8_t *s, struct iovec *data, int niov, uint64_t flags)
{
    struct iovec one = { s, WLOG_SECTOR };
    uint64_t len = 0;
    int ret;

    if (log->err) {
        return log->err;
    }
    for (int i = 0; i < niov; i++) {
        len += data[i].iov_len;
    }
    ret = write_all(log->fd, &one, 1, log->pos);
    if (ret == 0 && niov > 0) {
        ret = write_all(log->fd, data, niov, log->pos + WLOG_SECTOR);
    }
    if (ret == 0) {
        log->pos += WLOG_SECTOR + len;
        log->nr_entries++;
        if (flags & (WLOG_FLUSH | WLOG_FUA | WLOG_MARK)) {
            ret = write_super(log);
        }
    }
    if (ret < 0) {
        log->err = ret;
    }
    return ret;
}

/* Copy LEN bytes from byte POS of W's data (zeroes without an iovec). */
static void
gather(const WlogWrite *w, uint64_t pos, uint8_t *dst, uint64_t len)
{
    if (!w->iov) {
        memset(dst, 0, len);
        return;
    }
    for (int i = 0; i < w->niov && len > 0; i++) {
        uint64_t n;
        if (pos >= w->iov[i].iov_len) {
            pos -= w->iov[i].iov_len;
            continue;
        }
        n = w->iov[i].iov_len - pos;
        if (n > len) {
            n = len;
        }
        memcpy(dst, (const uint8_t *)w->iov[i].iov_base + pos, n);
        dst += n;
        len -= n;
        pos = 0;
    }
}

/* Add the iovecs for bytes [POS, POS+LEN) of W's data to V (at *N). */
static void
slice(const WlogWrite *w, uint64_t pos, uint64_t len, struct iovec *v, int *n)
{
    if (!w->iov) {
        while (len > 0) {
            size_t c = len > sizeof(zeroes) ? sizeof(zeroes) : (size_t)len;
            v[(*n)++] = (struct iovec){ (void *)zeroes, c };
            len -= c;
        }
        return;
    }
    for (int i = 0; i < w->niov && len > 0; i++) {
        uint64_t c;
        if (pos >= w->iov[i].iov_len) {
            pos -= w->iov[i].iov_len;
            continue;
        }
        c = w->iov[i].iov_len - pos;
        if (c > len) {
            c = len;
        }
        v[(*n)++] = (struct iovec){ (uint8_t *)w->iov[i].iov_base + pos, c };
        len -= c;
        pos = 0;
    }
}

int
wlog_append_write(Wlog *log, const WlogWrite *w)
{
    uint64_t end = w->offset + w->length;
    uint64_t first = w->offset / WLOG_SECTOR;
    uint64_t last = (end + WLOG_SECTOR - 1) / WLOG_SECTOR;
    uint32_t head = (uint32_t)(w->offset % WLOG_SECTOR);
    uint32_t tail = (uint32_t)(last * WLOG_SECTOR - end);
    uint8_t s[WLOG_SECTOR], hbuf[WLOG_SECTOR], tbuf[WLOG_SECTOR];
    uint64_t flags = w->flags;
    uint64_t pos = 0, len = w->length, nslots;
    struct iovec *v;
    int n = 0, ret;

    if (!w->iov && !head && !tail) {
        fill_entry(s, first, last - first, flags | WLOG_DISCARD, NULL, w->seq,
                   w->writes, 0, 0);
        return append(log, s, NULL, 0, flags);
    }
    nslots = 2 + (w->iov ? (uint64_t)w->niov : len / sizeof(zeroes) + 1);
    v = calloc(nslots, sizeof(*v));
    if (!v) {
        return -ENOMEM;
    }
    fill_entry(s, first, last - first, flags, NULL, w->seq, w->writes, head,
               tail);
    if (head) {
        /* the first sector: what was there, the write's bytes over it */
        uint64_t c = len < WLOG_SECTOR - head ? len : WLOG_SECTOR - head;
        memcpy(hbuf, w->head, WLOG_SECTOR);
        gather(w, 0, hbuf + head, c);
        v[n++] = (struct iovec){ hbuf, WLOG_SECTOR };
        pos = c;
        len -= c;
    }
    if (len > 0 && tail) {
        /* the last sector, unless the first one was also the last */
        uint64_t c = WLOG_SECTOR - tail;
        slice(w, pos, len - c, v, &n);
        memcpy(tbuf, w->tail, WLOG_SECTOR);
        gather(w, pos + len - c, tbuf, c);
        v[n++] = (struct iovec){ tbuf, WLOG_SECTOR };
    } else if (len > 0) {
        slice(w, pos, len, v, &n);
    } else if (head && tail) {
        /* one sector, both ends inside it: the tail side was laid over
         * HBUF already, but from HEAD's picture; take TAIL's for it */
        memcpy(hbuf + WLOG_SECTOR - tail, w->tail + WLOG_SECTOR - tail, tail);
    }
    ret = append(log, s, v, n, flags);
    free(v);
    return ret;
}

int
wlog_append_flush(Wlog *log, uint64_t writes)
{
    uint8_t s[WLOG_SECTOR];

    fill_entry(s, 0, 0, WLOG_FLUSH, NULL, 0, writes, 0, 0);
    return append(log, s, NULL, 0, WLOG_FLUSH);
}

int
wlog_append_mark(Wlog *log, const char *name, uint64_t writes)
{
    char cut[WLOG_SECTOR - ENTRY_SIZE - WLOG_EXT_SIZE];
    uint8_t s[WLOG_SECTOR];

    /* as dm-log-writes does, a long name is cut to what fits */
    snprintf(cut, sizeof(cut), "%s", name);
    fill_entry(s, 0, 0, WLOG_MARK, cut, 0, writes, 0, 0);
    return append(log, s, NULL, 0, WLOG_MARK);
}

int
wlog_close(Wlog *log)
{
    int ret = 0;

    if (!log) {
        return 0;
    }
    if (!log->err) {
        ret = write_super(log);
    }
    if (ret == 0 && !log->err && fdatasync(log->fd) < 0) {
        ret = -errno;
    }
    if (close(log->fd) < 0 && ret == 0 && !log->err) {
        ret = -errno;
    }
    free(log->path);
    free(log);
    return ret;
}

/* ---- reader ---- */

struct WlogReader {
    char *path;
    int fd;
    uint64_t size;  /* of the file */
    uint32_t ss;    /* sector size */
    uint64_t count; /* entries */
    uint64_t *pos;  /* byte offset of each entry's sector */
    uint8_t *sbuf;  /* one sector */
};

static int
read_all(int fd, void *buf, size_t len, uint64_t pos)
{
    while (len > 0) {
        ssize_t r = pread(fd, buf, len, (off_t)pos);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -errno;
        }
        if (r == 0) {
            return -ENODATA;
        }
        buf = (uint8_t *)buf + r;
        len -= (size_t)r;
        pos += (uint64_t)r;
    }
    return 0;
}

/* Parse the sector in r->sbuf as entry I at POS. */
static int
parse_entry(WlogReader *r, uint64_t i, uint64_t pos, WlogEntry *e,
            char **errmsg)
{
    const uint8_t *s = r->sbuf;
    const uint8_t *ext = s + r->ss - WLOG_EXT_SIZE;
    uint64_t data_len = get_le64(s + 24);
    uint64_t room = r->ss - ENTRY_SIZE;

    memset(e, 0, sizeof(*e));
    e->sector = get_le64(s);
    e->nr_sectors = get_le64(s + 8);
    e->flags = get_le64(s + 16);
    e->pos = pos + r->ss;
    if (e->flags & ~(uint64_t)KNOWN_FLAGS) {
        return blockdev_fail(errmsg, -EINVAL,
                             "'%s': entry %" PRIu64
                             " has unknown flags 0x%" PRIx64
                             " (not a write log?)",
                             r->path, i, e->flags);
    }
    e->has_ext = get_le64(ext) == WLOG_EXT_MAGIC;
    if (e->has_ext) {
        room -= WLOG_EXT_SIZE;
        e->seq = get_le64(ext + 8);
        e->writes = get_le64(ext + 16);
        e->head = get_le32(ext + 24);
        e->tail = get_le32(ext + 28);
    }
    if ((e->flags & WLOG_MARK) && data_len >= room) {
        return blockdev_fail(errmsg, -EINVAL,
                             "'%s': entry %" PRIu64 " has a mark of %" PRIu64
                             " bytes, more than fit",
                             r->path, i, data_len);
    }
    if (!(e->flags & WLOG_MARK) && data_len != 0) {
        return blockdev_fail(errmsg, -EINVAL,
                             "'%s': entry %" PRIu64
                             " has inline data, which tlbd does not replay",
                             r->path, i);
    }
    if (e->flags & WLOG_MARK) {
        /* a longer name (a log with larger sectors) is cut */
        size_t n =
            data_len < sizeof(e->mark) ? (size_t)data_len : sizeof(e->mark) - 1;
        memcpy(e->mark, s + ENTRY_SIZE, n);
        e->mark[n] = '\0';
    }
    if (e->nr_sectors > UINT64_MAX / r->ss / 2 ||
        e->sector > UINT64_MAX / r->ss / 2 || e->head >= r->ss ||
        e->tail >= r->ss ||
        ((e->head || e->tail) &&
         (uint64_t)e->head + e->tail >= e->nr_sectors * r->ss)) {
        return blockdev_fail(errmsg, -EINVAL,
                             "'%s': entry %" PRIu64
                             " has a bad range (sector %" PRIu64 ", %" PRIu64
                             " sectors)",
                             r->path, i, e->sector, e->nr_sectors);
    }
    return 0;
}

/* Bytes of data entry E carries in the log. */
static uint64_t
data_bytes(const WlogReader *r, const WlogEntry *e)
{
    return (e->flags & WLOG_DISCARD) ? 0 : e->nr_sectors * r->ss;
}

static int
check_all(WlogReader *r, char **errmsg)
{
    uint64_t pos = r->ss;
    WlogEntry e;

    for (uint64_t i = 0; i < r->count; i++) {
        int ret;
        if (pos > r->size || r->size - pos < r->ss) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "'%s': entry %" PRIu64 " of %" PRIu64
                                 " is cut short (the file ends at "
                                 "byte %" PRIu64 ")",
                                 r->path, i, r->count, r->size);
        }
        ret = read_all(r->fd, r->sbuf, r->ss, pos);
        if (ret < 0) {
            return blockdev_fail(errmsg, ret, "'%s': %s", r->path,
                                 strerror(-ret));
        }
        ret = parse_entry(r, i, pos, &e, errmsg);
        if (ret < 0) {
            return ret;
        }
        r->pos[i] = pos;
        pos += r->ss;
        if (data_bytes(r, &e) > r->size - pos) {
            return blockdev_fail(errmsg, -EINVAL,
                                 "'%s': entry %" PRIu64 " of %" PRIu64
                                 " is cut short (the file ends at "
                                 "byte %" PRIu64 ")",
                                 r->path, i, r->count, r->size);
        }
        pos += data_bytes(r, &e);
    }
    return 0;
}

int
wlog_reader_open(const char *path, WlogReader **out, char **errmsg)
{
    uint8_t sb[32];
    struct stat st;
    WlogReader *r = calloc(1, sizeof(*r));
    int ret;

    *out = NULL;
    if (errmsg) {
        *errmsg = NULL;
    }
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return blockdev_fail(errmsg, -ENOMEM, "'%s': out of memory", path);
    }
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        ret = blockdev_fail(errmsg, -errno, "cannot open the log '%s': %s",
                            path, strerror(errno));
        goto out_free;
    }
    if (fstat(r->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ret = blockdev_fail(errmsg, -EINVAL, "'%s': not a regular file", path);
        goto out_free;
    }
    r->size = (uint64_t)st.st_size;
    ret = read_all(r->fd, sb, sizeof(sb), 0);
    if (ret < 0 || get_le64(sb) != WLOG_MAGIC) {
        ret = blockdev_fail(
            errmsg, -EINVAL,
            "'%s': not a write log (no dm-log-writes super block)", path);
        goto out_free;
    }
    if (get_le64(sb + 8) != WLOG_VERSION) {
        ret = blockdev_fail(errmsg, -EINVAL,
                            "'%s': log version %" PRIu64
                            " (tlbd reads version 1)",
                            path, get_le64(sb + 8));
        goto out_free;
    }
    r->count = get_le64(sb + 16);
    r->ss = get_le32(sb + 24);
    if (r->ss < 512 || r->ss > 65536 || (r->ss & (r->ss - 1))) {
        ret = blockdev_fail(errmsg, -EINVAL, "'%s': bad sector size %u", path,
                            r->ss);
        goto out_free;
    }
    if (r->count > r->size / r->ss) {
        ret = blockdev_fail(errmsg, -EINVAL,
                            "'%s': %" PRIu64 " entries do not fit in "
                            "%" PRIu64 " bytes: the log is cut short",
                            path, r->count, r->size);
        goto out_free;
    }
    r->pos = malloc((r->count + 1) * sizeof(*r->pos));
    r->sbuf = malloc(r->ss);
    if (!r->pos || !r->sbuf) {
        ret = blockdev_fail(errmsg, -ENOMEM, "'%s': out of memory", path);
        goto out_free;
    }
    ret = check_all(r, errmsg);
    if (ret < 0) {
        goto out_free;
    }
    *out = r;
    return 0;

out_free:
    wlog_reader_close(r);
    return ret;
}

void
wlog_reader_close(WlogReader *r)
{
    if (!r) {
        return;
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    free(r->pos);
    free(r->sbuf);
    free(r->path);
    free(r);
}

uint64_t
wlog_reader_count(const WlogReader *r)
{
    return r->count;
}

uint32_t
wlog_reader_sectorsize(const WlogReader *r)
{
    return r->ss;
}

int
wlog_reader_entry(WlogReader *r, uint64_t i, WlogEntry *e)
{
    int ret;

    if (i >= r->count) {
        return -ERANGE;
    }
    ret = read_all(r->fd, r->sbuf, r->ss, r->pos[i]);
    if (ret < 0) {
        return ret;
    }
    return parse_entry(r, i, r->pos[i], e, NULL);
}

int
wlog_reader_data(WlogReader *r, const WlogEntry *e, uint64_t off, void *buf,
                 size_t len)
{
    if (off + len > data_bytes(r, e)) {
        return -ERANGE;
    }
    return read_all(r->fd, buf, len, e->pos + off);
}

void
wlog_flags_str(uint64_t flags, char *buf, size_t len)
{
    static const char *const names[] = { "FLUSH", "FUA", "DISCARD", "MARK",
                                         "METADATA" };
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < 5; i++) {
        if (flags & (1u << i)) {
            n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s",
                                  n ? "," : "", names[i]);
        }
    }
    if (n == 0) {
        snprintf(buf, len, "-");
    }
}
