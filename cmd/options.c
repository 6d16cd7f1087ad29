/* tlbd: command-line value parsing and JSON strings for the subcommands
 * (see options.h).
 * Main thread only.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "options.h"

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
tlbd_print_options(const struct option *long_options,
                   const char *short_options, bool long_ones)
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
    fprintf(stderr, "tlbd: %s: bad value '%s': %s\n", option, str, reason);
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
