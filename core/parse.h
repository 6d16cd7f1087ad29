/* tlbd: parsing of numbers, sizes and durations given by users, shared by
 * the tlbd program, the nbdkit plugin and blockdrv's options.  Any thread;
 * no state.
 */
#ifndef TLBD_PARSE_H
#define TLBD_PARSE_H

#include <stdint.h>

/* Parse the leading unsigned decimal of STR; *END points past it.
 * Returns 0, or -EINVAL (no digit first) / -ERANGE.
 */
int tlbd_parse_number(const char *str, uint64_t *out, const char **end);

/* An unsigned decimal number no greater than MAX. */
int tlbd_parse_uint(const char *str, uint64_t max, uint64_t *out);

/* A size in bytes with an optional binary suffix (k, M, G, T; "KiB" and
 * "kB" spell the same), e.g. "4k" = 4096.  Returns 0 or -EINVAL/-ERANGE.
 */
int tlbd_parse_size(const char *str, uint64_t *out);

/* A duration: a number with an optional unit ms, s (the default), m or h,
 * e.g. "500ms" or "10" (ten seconds), into nanoseconds.  Returns 0 or
 * -EINVAL/-ERANGE.
 */
int tlbd_parse_duration(const char *str, uint64_t *out_ns);

#endif /* TLBD_PARSE_H */
