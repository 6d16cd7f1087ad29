/* tlbd: image locking in QEMU's scheme (imglock.c), private to blockdrv.
 *
 * An image user holds some permissions and may refuse to share some with
 * other users.  Each permission P (bit P of the mask, QEMU's BLK_PERM_*
 * order) has two lock bytes in the image: byte IMGLOCK_PERM_BASE + P,
 * share-locked by every user that holds P, and byte IMGLOCK_SHARED_BASE + P,
 * share-locked by every user that does not share P.  The locks are open
 * file description (OFD) locks, so they belong to the open file, survive
 * fork with it, and go when its last descriptor closes (also at SIGKILL).
 * QEMU (block/file-posix.c) reads and writes the same bytes, so tlbd and
 * QEMU see each other.
 *
 * Threads: the caller's (blockdev_open).  No state but a warn-once flag.
 */
#ifndef TLBD_IMGLOCK_H
#define TLBD_IMGLOCK_H

#include <stdbool.h>

#define IMGLOCK_PERM_BASE   100
#define IMGLOCK_SHARED_BASE 200

/* The permissions, in QEMU's bit order. */
#define IMGLOCK_CONSISTENT_READ (1u << 0)
#define IMGLOCK_WRITE           (1u << 1)
#define IMGLOCK_WRITE_UNCHANGED (1u << 2)
#define IMGLOCK_RESIZE          (1u << 3)
#define IMGLOCK_NPERMS          4

/* Lock FD's bytes for a user that holds HELD and does not share UNSHARED,
 * then, unless FORCE, check that no other open file holds what we do not
 * share or refuses to share what we hold.  Returns 0; 1 when the file
 * system has no OFD locks (nothing is locked; the caller warns); -EBUSY on a
 * conflict with *WHAT set to a phrase naming the other user ("another
 * writer"); or another -errno.  The caller closes FD on failure, which drops
 * whatever was locked.
 */
int imglock_acquire(int fd, unsigned held, unsigned unshared, bool force,
                    const char **what);

#endif /* TLBD_IMGLOCK_H */
