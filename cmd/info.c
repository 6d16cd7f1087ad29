/* tlbd: `tlbd info IMAGE`: what tlbd sees of an image or block device: its
 * type and size, allocated bytes and the data/hole runs (SEEK_DATA and
 * SEEK_HOLE, through the BlockDev), logical and physical block sizes, and
 * whether O_DIRECT (cache=none) works there and with which alignment.
 *
 * Main thread only; the BlockDev runs its requests on the global threadlet
 * queue and the blocking forms wait for them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "options.h"
#include "blockdev.h"
#include "subcommands.h"

typedef struct ImageInfo {
    uint64_t size;
    int64_t allocated;
    uint64_t data;
    uint64_t holes;
    uint64_t data_runs;
    uint64_t hole_runs;
    unsigned logical;
    unsigned physical;
    bool blockdev;
    bool writable;
    bool direct;
    unsigned direct_align; /* smallest aligned read that worked */
    int direct_err;        /* why O_DIRECT failed, or 0 */
} ImageInfo;

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(fp, "usage: tlbd info [--json] IMAGE\n");
    if (fp == stdout) {
        fprintf(fp, "\n"
                    "Show IMAGE's size, allocated and hole bytes, block sizes, "
                    "and whether\n"
                    "O_DIRECT (--cache none) works there.\n"
                    "\n"
                    "  --json              print the same as JSON\n"
                    "\n"
                    "See tlbd(1).\n");
    }
    exit(exitcode);
}

enum {
    HELP_OPTION = 256,
    LONG_OPTIONS,
    SHORT_OPTIONS,
    JSON_OPTION,
};

static const char short_options[] = "h";
static const struct option long_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { "json", no_argument, NULL, JSON_OPTION },
    { NULL, 0, NULL, 0 },
};

static int
count_extent(void *opaque, uint64_t offset, uint64_t length, bool hole)
{
    ImageInfo *info = opaque;
    (void)offset;
    if (hole) {
        info->holes += length;
        info->hole_runs++;
    } else {
        info->data += length;
        info->data_runs++;
    }
    return 0;
}

/* Try O_DIRECT: open, then read the smallest aligned block that works. */
static void
probe_direct(const char *path, ImageInfo *info)
{
    void *buf = NULL;
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);

    if (fd < 0) {
        info->direct_err = errno;
        return;
    }
    if (posix_memalign(&buf, 4096, 4096)) {
        info->direct_err = ENOMEM;
        close(fd);
        return;
    }
    info->direct_err = EINVAL;
    for (unsigned size = 512; size <= 4096; size *= 2) {
        if (pread(fd, buf, size, 0) >= 0) {
            info->direct = true;
            info->direct_align = size;
            info->direct_err = 0;
            break;
        }
        info->direct_err = errno;
        if (errno != EINVAL) {
            break;
        }
    }
    free(buf);
    close(fd);
}

static const char *
human(uint64_t bytes, char *buf, size_t size)
{
    static const char units[] = "KMGTPE";
    double v = (double)bytes;
    int i = -1;

    while (v >= 1024.0 && i < 5) {
        v /= 1024.0;
        i++;
    }
    if (i < 0) {
        snprintf(buf, size, "%" PRIu64 " bytes", bytes);
    } else {
        snprintf(buf, size, "%.1f %ciB", v, units[i]);
    }
    return buf;
}

static void
print_text(const char *path, const ImageInfo *info)
{
    char h[32];

    printf("image         %s\n", path);
    printf("type          %s\n",
           info->blockdev ? "block device" : "regular file");
    printf("size          %" PRIu64 " (%s)\n", info->size,
           human(info->size, h, sizeof(h)));
    printf("allocated     %" PRId64 " (%s)\n", info->allocated,
           human((uint64_t)info->allocated, h, sizeof(h)));
    printf("data          %" PRIu64 " in %" PRIu64 " extent%s\n", info->data,
           info->data_runs, info->data_runs == 1 ? "" : "s");
    printf("holes         %" PRIu64 " in %" PRIu64 " extent%s\n", info->holes,
           info->hole_runs, info->hole_runs == 1 ? "" : "s");
    printf("block size    logical %u, physical %u\n", info->logical,
           info->physical);
    if (info->direct) {
        printf("O_DIRECT      yes (alignment %u)\n", info->direct_align);
    } else {
        printf("O_DIRECT      no (%s)\n", strerror(info->direct_err));
    }
    printf("writable      %s\n", info->writable ? "yes" : "no");
}

static void
print_json(const char *path, const ImageInfo *info)
{
    printf("{\n  \"image\": ");
    tlbd_json_string(stdout, path);
    printf(",\n  \"type\": \"%s\",\n", info->blockdev ? "block" : "file");
    printf("  \"size\": %" PRIu64 ",\n  \"allocated\": %" PRId64 ",\n"
           "  \"data\": %" PRIu64 ",\n  \"holes\": %" PRIu64 ",\n"
           "  \"data_extents\": %" PRIu64 ",\n  \"hole_extents\": %" PRIu64
           ",\n",
           info->size, info->allocated, info->data, info->holes,
           info->data_runs, info->hole_runs);
    printf("  \"logical_block_size\": %u,\n  \"physical_block_size\": %u,\n",
           info->logical, info->physical);
    printf("  \"direct_io\": %s,\n  \"direct_io_alignment\": %u,\n",
           info->direct ? "true" : "false", info->direct_align);
    printf("  \"writable\": %s\n}\n", info->writable ? "true" : "false");
}

int
tlbd_info_main(int argc, char **argv)
{
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    CLEANUP_FREE char *errmsg = NULL;
    ImageInfo info = { 0 };
    bool json = false;
    int c;
    int ret;

    argv[0] = (char *)"tlbd"; /* getopt's messages: "tlbd: ..." */
    optind = 1;
    while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) !=
           -1) {
        switch (c) {
        case 'h':
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case LONG_OPTIONS:
            tlbd_print_options(long_options, short_options, true);
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options, false);
        case JSON_OPTION:
            json = true;
            break;
        default:
            usage(stderr, EXIT_FAILURE);
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "tlbd: info: %s\n",
                argc == optind ? "missing IMAGE" : "too many arguments");
        usage(stderr, EXIT_FAILURE);
    }
    const char *path = argv[optind];

    blockdev_options_init(&opts);
    opts.readonly = true;
    /* As `qemu-img info`: a short look that shares everything, so it
     * works next to a running export and never stops one from starting.
     */
    opts.force_share = true;
    ret = blockdev_open(path, &opts, &bd, &errmsg);
    if (ret < 0) {
        if (errmsg) {
            fprintf(stderr, "tlbd: %s\n", errmsg);
        } else {
            fprintf(stderr, "tlbd: cannot open '%s': %s\n", path,
                    strerror(-ret));
        }
        return EXIT_FAILURE;
    }
    info.size = blockdev_size(bd);
    info.blockdev = blockdev_is_blockdev(bd);
    info.logical = blockdev_logical_block_size(bd);
    info.physical = blockdev_physical_block_size(bd);
    info.writable = access(path, W_OK) == 0;
    info.allocated = blockdev_allocated(bd);
    if (info.allocated < 0) {
        ret = (int)info.allocated;
    } else if (info.size) {
        ret = blockdev_extents(bd, 0, info.size, count_extent, &info);
    }
    blockdev_close(bd);
    if (ret < 0) {
        fprintf(stderr, "tlbd: cannot map the extents of '%s': %s\n", path,
                strerror(-ret));
        return EXIT_FAILURE;
    }
    probe_direct(path, &info);

    if (json) {
        print_json(path, &info);
    } else {
        print_text(path, &info);
    }
    return EXIT_SUCCESS;
}
