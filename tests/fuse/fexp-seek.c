/* tlbd tests: print the data and hole runs of a file as SEEK_DATA and
 * SEEK_HOLE report them, one "data|hole OFFSET LENGTH" line each, so a test
 * can compare a FUSE file with the image behind it.  Single-threaded.
 *
 *   fexp-seek FILE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    struct stat st;
    off_t pos = 0;
    int fd;

    if (argc != 2) {
        fprintf(stderr, "usage: fexp-seek FILE\n");
        return 2;
    }
    fd = open(argv[1], O_RDONLY);
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "fexp-seek: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    while (pos < st.st_size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0 && errno != ENXIO) {
            fprintf(stderr, "fexp-seek: SEEK_DATA %lld: %s\n", (long long)pos,
                    strerror(errno));
            return 1;
        }
        if (data < 0) {
            data = st.st_size; /* only a hole is left */
        }
        if (data > pos) {
            printf("hole %lld %lld\n", (long long)pos, (long long)(data - pos));
            pos = data;
            continue;
        }
        off_t hole = lseek(fd, pos, SEEK_HOLE);
        if (hole < 0) {
            fprintf(stderr, "fexp-seek: SEEK_HOLE %lld: %s\n", (long long)pos,
                    strerror(errno));
            return 1;
        }
        printf("data %lld %lld\n", (long long)pos, (long long)(hole - pos));
        pos = hole;
    }
    close(fd);
    return 0;
}
