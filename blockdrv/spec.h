/* tlbd: the error message of blockdrv's spec parsers (inject=, powercut=),
 * private to blockdrv: "KEY: 'SPEC': <what> at column COL".
 *
 * Threads: any (it touches only its arguments).
 */
#ifndef TLBD_SPEC_H
#define TLBD_SPEC_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Set *ERRMSG (if ERRMSG is not NULL) to the message; return -EINVAL. */
static inline int __attribute__((format(printf, 5, 6)))
spec_error(char **errmsg, const char *key, const char *spec, size_t col,
           const char *fmt, ...)
{
    char *what = NULL;
    va_list ap;

    if (!errmsg) {
        return -EINVAL;
    }
    va_start(ap, fmt);
    if (vasprintf(&what, fmt, ap) < 0) {
        what = NULL;
    }
    va_end(ap);
    if (asprintf(errmsg, "%s: '%s': %s at column %zu", key, spec,
                 what ? what : "error", col) < 0) {
        *errmsg = NULL;
    }
    free(what);
    return -EINVAL;
}

#endif /* TLBD_SPEC_H */
