/* tlbd: the write log's reader (wlog.h), which tlbd replay and the tests
 * use: wlog_reader_open walks every entry the super block counts and
 * refuses the log if one is cut short or malformed, so whoever uses it
 * knows the whole log is there before it touches anything.  A reader
 * belongs to one thread at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev-int.h"
#include "wlog.h"

#define KNOWN_FLAGS                                                            \
    (WLOG_FLUSH | WLOG_FUA | WLOG_DISCARD | WLOG_MARK | WLOG_METADATA)

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
    uint64_t room = r->ss - WLOG_ENTRY_SIZE;

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
        memcpy(e->mark, s + WLOG_ENTRY_SIZE, n);
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
