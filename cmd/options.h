/* tlbd: what the subcommands share on their command lines: the BlockDev
 * options every one of them takes (blockdrv's table, see
 * blockdev_parse_option), plain unsigned numbers, the hidden
 * --long-options/--short-options, and one way to report a bad value.
 * Main thread only.
 */
#ifndef TLBD_OPTIONS_H
#define TLBD_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "blockdev.h"
#include "parse.h"

/* getopt_long's val for each row tlbd_long_options adds. */
#define TLBD_BLOCKDEV_OPTION 0x1000

/* The name messages start with: "tlbd" (the default) or "tlbd fuse". */
void tlbd_set_program(const char *name);

/* Print "PROGRAM: MESSAGE" to stderr and exit(EXIT_FAILURE), for bad
 * configuration at start-up.
 */
void tlbd_fatal(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* The same with the exit status STATUS (tlbd ctl's 2). */
void tlbd_exit(int status, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

struct option;

/* OWN (a getopt_long table ending in a zero row) followed by one row (val
 * TLBD_BLOCKDEV_OPTION) for each option of blockdev_shared_option:
 * required_argument, or optional_argument when its ARG is "[=...]".  Lives
 * until exit or the next call.
 */
struct option *tlbd_long_options(const struct option *own);

/* --NAME=VALUE, one of those rows: set it in OPTS, or print
 * "PROGRAM: MESSAGE" (blockdrv's words) and return false.
 */
bool tlbd_blockdev_option(BlockDevOptions *opts, const char *name,
                          const char *value);

/* After the last option: blockdev_check_pool, printing as above. */
bool tlbd_blockdev_check(BlockDevOptions *opts);

/* Parse an unsigned number option in [MIN, MAX] into *OUT.  On a bad value
 * print "PROGRAM: OPTION: bad value ..." and return false; the caller then
 * prints its usage line.
 */
bool tlbd_uint_option(const char *option, const char *value, uint64_t min,
                      uint64_t max, uint64_t *out);

/* The hidden --long-options / --short-options: print the options of the
 * getopt_long table LONG_OPTIONS (or of SHORT_OPTIONS), one a line, and
 * exit.
 */
void tlbd_print_options(const struct option *long_options,
                        const char *short_options, bool long_ones)
    __attribute__((noreturn));

/* Print "PROGRAM: OPTION: bad value 'STR': REASON" to stderr.  The caller then
 * prints its usage line.
 */
void tlbd_bad_value(const char *option, const char *str, const char *reason);

/* Print S on FP as a JSON string, quotes included. */
void tlbd_json_string(FILE *fp, const char *s);

#endif /* TLBD_OPTIONS_H */
