/* tlbd: parsing of command-line values shared by the subcommands: sizes
 * ("4k", "1G", "65536"), durations ("10", "10s", "500ms", "2m") and plain
 * unsigned numbers.  Main thread only.
 */
#ifndef TLBD_OPTIONS_H
#define TLBD_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "parse.h"

/* Parse an unsigned number option in [MIN, MAX] into *OUT.  On a bad value
 * print "tlbd: OPTION: bad value ..." and return false; the caller then
 * prints its usage line.
 */
bool tlbd_uint_option(const char *option, const char *value, uint64_t min,
                      uint64_t max, uint64_t *out);

struct option;

/* The hidden --long-options / --short-options: print the options of the
 * getopt_long table LONG_OPTIONS (or of SHORT_OPTIONS), one a line, and
 * exit.
 */
void tlbd_print_options(const struct option *long_options,
                        const char *short_options, bool long_ones)
    __attribute__((noreturn));

/* Print "tlbd: OPTION: bad value 'STR': REASON" to stderr.  The caller then
 * prints its usage line.
 */
void tlbd_bad_value(const char *option, const char *str, const char *reason);

/* Print S on FP as a JSON string, quotes included. */
void tlbd_json_string(FILE *fp, const char *s);

#endif /* TLBD_OPTIONS_H */
