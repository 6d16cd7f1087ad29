/* tlbd: small helpers shared by every module: container_of, checked pthread
 * calls (a failing mutex operation is a broken invariant and aborts), and the
 * monotonic clock.  Any thread may call these.
 */
#ifndef TLBD_UTIL_H
#define TLBD_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef container_of
#define container_of(ptr, type, member)                                     \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define TLBD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Abort with a message: only for broken invariants. */
#define tlbd_die(what, err)                                                 \
    do {                                                                    \
        fprintf(stderr, "tlbd: %s:%d: %s: %s\n", __FILE__, __LINE__,        \
                (what), strerror(err));                                     \
        abort();                                                            \
    } while (0)

static inline void
tlbd_mutex_lock(pthread_mutex_t *m)
{
    int err = pthread_mutex_lock(m);
    if (err) {
        tlbd_die("pthread_mutex_lock", err);
    }
}

static inline pthread_mutex_t *
tlbd_mutex_lock_ret(pthread_mutex_t *m)
{
    tlbd_mutex_lock(m);
    return m;
}

static inline void
tlbd_mutex_unlock(pthread_mutex_t *m)
{
    int err = pthread_mutex_unlock(m);
    if (err) {
        tlbd_die("pthread_mutex_unlock", err);
    }
}

/* Nanoseconds on the monotonic clock. */
static inline uint64_t
tlbd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* TLBD_UTIL_H */
