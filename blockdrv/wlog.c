/* tlbd: the write log's writer (log-writes=FILE), which the volatile
 * cache calls; the format is dm-log-writes' (wlog.h, paio(3) "THE WRITE
 * LOG"); the reader is in wlog-read.c.
 *
 * Entries are appended at the end; the super block's nr_entries is
 * rewritten after every FLUSH, FUA and MARK entry (as dm-log-writes does
 * for FUA and MARK) and at close.  The first failure is kept and every
 * later append fails with it.  Threads: only the cache's flush_lock
 * holder writes, so a Wlog has no lock of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "blockdev-int.h"
#include "vcache.h"

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
        memcpy(s + WLOG_ENTRY_SIZE, name, len);
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
    char cut[WLOG_SECTOR - WLOG_ENTRY_SIZE - WLOG_EXT_SIZE];
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
