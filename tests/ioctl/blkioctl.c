/* tlbd tests: issue the block-device ioctls on a FUSE-exported file and
 * check each answer against the image behind it.
 *
 *   blkioctl [-r] FILE IMAGE
 *
 * FILE is the file `tlbd fuse` presents; IMAGE is what it exports (a block
 * device or a regular file), opened here read-only to learn the expected
 * answers: BLKGETSIZE64, BLKSSZGET, BLKPBSZGET from the device or, for a
 * file, its size, 512 and its st_blksize (at least 512).  Then:
 *  - BLKROGET is 1 with -r (a read-only mount), 0 without;
 *  - an ioctl tlbd does not answer (BLKGETSIZE, a made-up one) fails with
 *    ENOTTY, and FS_IOC_FIEMAP with the kernel's own EOPNOTSUPP;
 *  - with -r, BLKDISCARD and BLKZEROOUT fail with EROFS and the image's
 *    bytes do not change;
 *  - without -r, BLKZEROOUT and BLKDISCARD of whole sectors read back as
 *    zeros through FILE and in IMAGE while the sectors around them keep
 *    their data; ranges that are not whole sectors, or reach past the end,
 *    fail with EINVAL and change nothing; BLKFLSBUF succeeds.
 * Prints one line per check; exits 1 at the first wrong answer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATTERN 0xa5

static const char *file;
static const char *image;

static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "blkioctl: %s: ", file);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ioctl that must succeed. */
static void
ok_ioctl(int fd, unsigned long cmd, void *arg, const char *name)
{
    if (ioctl(fd, cmd, arg) < 0) {
        fail("%s: %s", name, strerror(errno));
    }
}

/* ioctl that must fail with WANT. */
static void
bad_ioctl(int fd, unsigned long cmd, void *arg, int want, const char *name)
{
    if (ioctl(fd, cmd, arg) == 0) {
        fail("%s succeeded; expected %s", name, strerror(want));
    }
    if (errno != want) {
        fail("%s: %s; expected %s", name, strerror(errno), strerror(want));
    }
    printf("%s: %s, as expected\n", name, strerror(want));
}

static void
pread_all(int fd, void *buf, size_t len, uint64_t off, const char *what)
{
    ssize_t n = pread(fd, buf, len, (off_t)off);
    if (n != (ssize_t)len) {
        fail("read %s at %llu: %s", what, (unsigned long long)off,
             n < 0 ? strerror(errno) : "short read");
    }
}

/* Check that [OFF, OFF+LEN) of FD holds PATTERN outside [ZOFF, ZOFF+ZLEN)
 * and zeros inside it.
 */
static void
check_bytes(int fd, uint64_t off, uint64_t len, uint64_t zoff, uint64_t zlen,
            const char *what)
{
    unsigned char *buf = malloc(len);

    if (!buf) {
        fail("out of memory");
    }
    pread_all(fd, buf, len, off, what);
    for (uint64_t i = 0; i < len; i++) {
        uint64_t pos = off + i;
        int want = pos >= zoff && pos < zoff + zlen ? 0 : PATTERN;
        if (buf[i] != want) {
            fail("%s: byte %llu is 0x%02x, expected 0x%02x", what,
                 (unsigned long long)pos, buf[i], want);
        }
    }
    free(buf);
}

static void
fill(int fd, uint64_t off, uint64_t len)
{
    unsigned char *buf = malloc(len);

    if (!buf) {
        fail("out of memory");
    }
    memset(buf, PATTERN, len);
    if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len || fsync(fd) < 0) {
        fail("write: %s", strerror(errno));
    }
    free(buf);
}

/* BLKZEROOUT or BLKDISCARD of sectors 1-2 of an 4-sector window at BASE. */
static void
check_range_op(int fd, int ifd, unsigned long cmd, const char *name,
               uint64_t base, uint64_t s)
{
    uint64_t range[2] = { base + s, 2 * s };
    uint64_t before[2] = { base + s + s / 2, s };

    fill(fd, base, 4 * s);
    bad_ioctl(fd, cmd, before, EINVAL, name);
    range[1] = s + 1;
    bad_ioctl(fd, cmd, range, EINVAL, name);
    range[1] = 2 * s;
    check_bytes(fd, base, 4 * s, 0, 0, "after the refused ranges");
    ok_ioctl(fd, cmd, range, name);
    check_bytes(fd, base, 4 * s, base + s, 2 * s, "the FUSE file");
    ok_ioctl(fd, BLKFLSBUF, NULL, "BLKFLSBUF");
    check_bytes(ifd, base, 4 * s, base + s, 2 * s, "the image");
    printf("%s of 2 sectors: zeros through the file and in the image\n", name);
}

int
main(int argc, char **argv)
{
    bool ro = argc > 1 && strcmp(argv[1], "-r") == 0;
    uint64_t size;
    uint64_t want_size;
    int ssz;
    int want_ssz;
    unsigned int pbsz;
    unsigned int want_pbsz;
    int roflag = -1;
    struct stat st;
    int fd;
    int ifd;

    if (argc != 3 + ro) {
        fprintf(stderr, "usage: blkioctl [-r] FILE IMAGE\n");
        return 2;
    }
    file = argv[1 + ro];
    image = argv[2 + ro];
    fd = open(file, ro ? O_RDONLY : O_RDWR);
    ifd = open(image, O_RDONLY);
    if (fd < 0 || ifd < 0 || fstat(ifd, &st) < 0) {
        fail("open: %s", strerror(errno));
    }
    if (S_ISBLK(st.st_mode)) {
        ok_ioctl(ifd, BLKGETSIZE64, &want_size, "image BLKGETSIZE64");
        ok_ioctl(ifd, BLKSSZGET, &want_ssz, "image BLKSSZGET");
        ok_ioctl(ifd, BLKPBSZGET, &want_pbsz, "image BLKPBSZGET");
    } else {
        want_size = (uint64_t)st.st_size;
        want_ssz = 512;
        want_pbsz = st.st_blksize > 512 ? (unsigned)st.st_blksize : 512;
    }

    ok_ioctl(fd, BLKGETSIZE64, &size, "BLKGETSIZE64");
    if (size != want_size) {
        fail("BLKGETSIZE64 %llu, expected %llu", (unsigned long long)size,
             (unsigned long long)want_size);
    }
    printf("BLKGETSIZE64: %llu\n", (unsigned long long)size);
    ok_ioctl(fd, BLKSSZGET, &ssz, "BLKSSZGET");
    if (ssz != want_ssz) {
        fail("BLKSSZGET %d, expected %d", ssz, want_ssz);
    }
    printf("BLKSSZGET: %d\n", ssz);
    ok_ioctl(fd, BLKPBSZGET, &pbsz, "BLKPBSZGET");
    if (pbsz != want_pbsz) {
        fail("BLKPBSZGET %u, expected %u", pbsz, want_pbsz);
    }
    printf("BLKPBSZGET: %u\n", pbsz);
    ok_ioctl(fd, BLKROGET, &roflag, "BLKROGET");
    if (roflag != (int)ro) {
        fail("BLKROGET %d, expected %d", roflag, (int)ro);
    }
    printf("BLKROGET: %d\n", roflag);

    {
        unsigned long sectors = 0;
        struct {
            struct fiemap fm;
            struct fiemap_extent ext[4];
        } fmap;
        memset(&fmap, 0, sizeof(fmap));
        fmap.fm.fm_length = FIEMAP_MAX_OFFSET;
        fmap.fm.fm_extent_count = 4;
        bad_ioctl(fd, BLKGETSIZE, &sectors, ENOTTY, "BLKGETSIZE");
        bad_ioctl(fd, _IO(0x12, 250), NULL, ENOTTY, "_IO(0x12, 250)");
        bad_ioctl(fd, FS_IOC_FIEMAP, &fmap, EOPNOTSUPP, "FS_IOC_FIEMAP");
    }

    if (ro) {
        uint64_t range[2] = { 0, (uint64_t)ssz };
        unsigned char *a = malloc((size_t)ssz);
        unsigned char *b = malloc((size_t)ssz);
        if (!a || !b) {
            fail("out of memory");
        }
        pread_all(ifd, a, (size_t)ssz, 0, "the image");
        bad_ioctl(fd, BLKDISCARD, range, EROFS, "BLKDISCARD");
        bad_ioctl(fd, BLKZEROOUT, range, EROFS, "BLKZEROOUT");
        ok_ioctl(fd, BLKFLSBUF, NULL, "BLKFLSBUF");
        pread_all(ifd, b, (size_t)ssz, 0, "the image");
        if (memcmp(a, b, (size_t)ssz) != 0) {
            fail("the image changed under a read-only mount");
        }
        free(a);
        free(b);
    } else {
        uint64_t s = (uint64_t)ssz;
        uint64_t past[2] = { size - s, 2 * s };
        check_range_op(fd, ifd, BLKZEROOUT, "BLKZEROOUT", 16 * s, s);
        check_range_op(fd, ifd, BLKDISCARD, "BLKDISCARD", 32 * s, s);
        bad_ioctl(fd, BLKZEROOUT, past, EINVAL, "BLKZEROOUT past the end");
        bad_ioctl(fd, BLKDISCARD, past, EINVAL, "BLKDISCARD past the end");
    }
    printf("BLKFLSBUF: ok\n");
    close(fd);
    close(ifd);
    return 0;
}
