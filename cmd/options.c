/* tlbd: command-line options and messages shared by the subcommands, and
 * JSON strings (see options.h).  Main thread only.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "options.h"
#include "util.h"

static const char *program = "tlbd";

void
tlbd_set_program(const char *name)
{
    program = name;
}

static void __attribute__((noreturn))
vexit(int status, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", program);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    exit(status);
}

void
tlbd_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vexit(EXIT_FAILURE, fmt, ap);
}

void
tlbd_exit(int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vexit(status, fmt, ap);
}

/* tlbd_long_options' table: one subcommand runs per process. */
static struct option *long_table;

struct option *
tlbd_long_options(const struct option *own)
{
    size_t nown = 0;
    size_t nshared = 0;
    struct option *table;

    while (own[nown].name) {
        nown++;
    }
    while (blockdev_shared_option(nshared, NULL, NULL)) {
        nshared++;
    }
    table = calloc(nown + nshared + 1, sizeof(*table));
    if (!table) {
        tlbd_die("calloc", ENOMEM);
    }
    memcpy(table, own, nown * sizeof(*table));
    for (size_t i = 0; i < nshared; i++) {
        const char *arg = NULL;
        table[nown + i].name = blockdev_shared_option(i, &arg, NULL);
        /* "[=on|off]": a flag that may take a value (--force-share). */
        table[nown + i].has_arg =
            arg && arg[0] == '[' ? optional_argument : required_argument;
        table[nown + i].val = TLBD_BLOCKDEV_OPTION;
    }
    free(long_table);
    long_table = table;
    return table;
}

/* Print blockdrv's message for RET (0 or -errno) and say whether RET is 0.
 * Frees ERRMSG.
 */
static bool
report(int ret, char *errmsg)
{
    if (ret < 0) {
        fprintf(stderr, "%s: %s\n", program, errmsg ? errmsg : strerror(-ret));
    }
    free(errmsg);
    return ret == 0;
}

bool
tlbd_blockdev_option(BlockDevOptions *opts, const char *name, const char *value)
{
    char *errmsg = NULL;
    int ret = blockdev_parse_option(opts, name, value, &errmsg);

    return report(ret, errmsg);
}

bool
tlbd_blockdev_check(BlockDevOptions *opts)
{
    char *errmsg = NULL;
    int ret = blockdev_check_pool(&opts->pool, &errmsg);

    return report(ret, errmsg);
}

bool
tlbd_uint_option(const char *option, const char *value, uint64_t min,
                 uint64_t max, uint64_t *out)
{
    char reason[64];

    if (tlbd_parse_uint(value, max, out) < 0 || *out < min) {
        snprintf(reason, sizeof(reason),
                 "expected a number from %" PRIu64 " to %" PRIu64, min, max);
        tlbd_bad_value(option, value, reason);
        return false;
    }
    return true;
}

void
tlbd_print_options(const struct option *long_options, const char *short_options,
                   bool long_ones)
{
    if (long_ones) {
        for (size_t i = 0; long_options[i].name; i++) {
            if (strcmp(long_options[i].name, "long-options") &&
                strcmp(long_options[i].name, "short-options")) {
                printf("--%s\n", long_options[i].name);
            }
        }
    } else {
        for (size_t i = 0; short_options[i]; i++) {
            if (short_options[i] != ':' && short_options[i] != '+') {
                printf("-%c\n", short_options[i]);
            }
        }
    }
    exit(EXIT_SUCCESS);
}

void
tlbd_bad_value(const char *option, const char *str, const char *reason)
{
    fprintf(stderr, "%s: %s: bad value '%s': %s\n", program, option, str,
            reason);
}

void
tlbd_json_string(FILE *fp, const char *s)
{
    putc('"', fp);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(fp, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(fp, "\\u%04x", ch);
        } else {
            putc(ch, fp);
        }
    }
    putc('"', fp);
}
