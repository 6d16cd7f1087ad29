/* tlbd: `tlbd crashtest`, the copy of an image (see crashtest.h): a clone
 * (FICLONE) where the file system shares extents, else the data extents
 * only, found with SEEK_DATA and SEEK_HOLE and copied with
 * copy_file_range, the rest left sparse.
 *
 * Threads: the main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashtest.h"

int
ct_copy_image(const char *src, const char *dst)
{
    int sfd = open(src, O_RDONLY | O_CLOEXEC);
    int dfd = -1;
    struct stat st;
    off_t off = 0;
    int ret = 0;

    if (sfd < 0) {
        return -errno;
    }
    dfd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (dfd < 0 || fstat(sfd, &st) < 0) {
        ret = -errno;
        goto out;
    }
    if (ioctl(dfd, FICLONE, sfd) == 0) {
        goto out;
    }
    if (ftruncate(dfd, st.st_size) < 0) {
        ret = -errno;
        goto out;
    }
    while (off < st.st_size) {
        off_t data = lseek(sfd, off, SEEK_DATA);
        if (data < 0) {
            ret = errno == ENXIO ? 0 : -errno;
            break;
        }
        off_t hole = lseek(sfd, data, SEEK_HOLE);
        if (hole < 0) {
            ret = -errno;
            break;
        }
        off_t in = data;
        off_t out = data;
        while (in < hole) {
            ssize_t n =
                copy_file_range(sfd, &in, dfd, &out, (size_t)(hole - in), 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                ret = n < 0 ? -errno : -EIO;
                goto out;
            }
        }
        off = hole;
    }
out:
    if (dfd >= 0 && close(dfd) < 0 && ret == 0) {
        ret = -errno;
    }
    close(sfd);
    return ret;
}
