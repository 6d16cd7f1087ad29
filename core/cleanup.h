/* tlbd: scope-based cleanup helpers.
 *
 * CLEANUP_FREE frees a pointer when it leaves scope, and
 * ACQUIRE_LOCK_FOR_CURRENT_SCOPE holds a pthread mutex until the end of the
 * enclosing block.  Always initialize a CLEANUP_FREE variable; to hand the
 * pointer out, copy it and set the variable to NULL.
 */
#ifndef TLBD_CLEANUP_H
#define TLBD_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>

#include "util.h"

static inline void
cleanup_free(void *ptr)
{
    free(*(void **)ptr);
}
#define CLEANUP_FREE __attribute__((cleanup(cleanup_free)))

static inline void
cleanup_unlock(pthread_mutex_t **ptr)
{
    tlbd_mutex_unlock(*ptr);
}

#define CLEANUP_CONCAT_(a, b) a##b
#define CLEANUP_CONCAT(a, b)  CLEANUP_CONCAT_(a, b)
#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(mutex)                                  \
    __attribute__((cleanup(cleanup_unlock), unused)) pthread_mutex_t *         \
    CLEANUP_CONCAT(lock_guard_, __COUNTER__) = tlbd_mutex_lock_ret(mutex)

#endif /* TLBD_CLEANUP_H */
