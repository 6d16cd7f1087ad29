/* tlbd: image locking in QEMU's scheme (see imglock.h).
 *
 * Every lock taken is a read (shared) lock on one byte, so taking one never
 * fails because of another user: conflicts are found by asking whether a
 * write lock on the other side's byte could be had (F_OFD_GETLK), which it
 * cannot while any other open file holds a read lock there.  Locks of the
 * same open file never conflict with each other.  Two users that start at
 * the same moment both lock, then both see the other and both refuse,
 * which is the safe outcome.
 *
 * Threads: the caller's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>

#include "imglock.h"
#include "paio-int.h"

/* F_OFD_SETLK or F_OFD_GETLK on the one byte OFF; TYPE is F_RDLCK or
 * F_WRLCK.  Returns 0 or -errno; for GETLK, *FREE says whether TYPE could
 * be had.
 */
static int
lock_byte(int fd, int cmd, short type, off_t off, bool *free)
{
    struct flock fl;

    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = off;
    fl.l_len = 1;
    while (fcntl(fd, cmd, &fl) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    if (free) {
        *free = fl.l_type == F_UNLCK;
    }
    return 0;
}

/* Errors that mean "this file system has no (OFD) locks": paio's "not
 * supported" set, plus what fcntl says for an unknown command (EINVAL)
 * and a lock manager that keeps none (ENOLCK).
 */
static bool
unsupported(int err)
{
    return paio_is_notsup(err) || err == -EINVAL || err == -ENOLCK;
}

/* Who holds permission BIT that we do not share. */
static const char *
holder(unsigned bit)
{
    switch (bit) {
    case IMGLOCK_WRITE:
        return "another writer";
    case IMGLOCK_RESIZE:
        return "another process that may resize it";
    case IMGLOCK_WRITE_UNCHANGED:
        return "another process that may write to it";
    default:
        return "another reader";
    }
}

/* Who refuses to share permission BIT that we hold. */
static const char *
refuser(unsigned bit)
{
    switch (bit) {
    case IMGLOCK_WRITE:
        return "another process that does not share write";
    case IMGLOCK_RESIZE:
        return "another process that does not share resize";
    case IMGLOCK_WRITE_UNCHANGED:
        return "another process that does not share unchanged writes";
    default:
        return "another process that does not share reads";
    }
}

/* Is byte BASE + i free of other users' locks for some bit i of MASK?
 * Returns 0, -EBUSY with *BIT set, or -errno.
 */
static int
check_bytes(int fd, off_t base, unsigned mask, unsigned *bit)
{
    for (unsigned i = 0; i < IMGLOCK_NPERMS; i++) {
        bool free = true;
        int ret;

        if (!(mask & (1u << i))) {
            continue;
        }
        ret = lock_byte(fd, F_OFD_GETLK, F_WRLCK, base + i, &free);
        if (ret < 0) {
            return ret;
        }
        if (!free) {
            *bit = 1u << i;
            return -EBUSY;
        }
    }
    return 0;
}

int
imglock_acquire(int fd, unsigned held, unsigned unshared, bool force,
                const char **what)
{
    unsigned bit = 0;
    int ret;

    *what = NULL;
    for (unsigned i = 0; i < IMGLOCK_NPERMS; i++) {
        if (held & (1u << i)) {
            ret = lock_byte(fd, F_OFD_SETLK, F_RDLCK, IMGLOCK_PERM_BASE + i,
                            NULL);
            if (ret < 0) {
                return unsupported(ret) ? 1 : ret;
            }
        }
        if (unshared & (1u << i)) {
            ret = lock_byte(fd, F_OFD_SETLK, F_RDLCK, IMGLOCK_SHARED_BASE + i,
                            NULL);
            if (ret < 0) {
                return unsupported(ret) ? 1 : ret;
            }
        }
    }
    if (force) {
        return 0;
    }
    /* Someone holds what we do not share: "another writer" first. */
    ret = check_bytes(fd, IMGLOCK_PERM_BASE, unshared, &bit);
    if (ret == -EBUSY) {
        *what = holder(bit);
    } else if (ret == 0) {
        ret = check_bytes(fd, IMGLOCK_SHARED_BASE, held, &bit);
        if (ret == -EBUSY) {
            *what = refuser(bit);
        }
    }
    return unsupported(ret) ? 1 : ret;
}
