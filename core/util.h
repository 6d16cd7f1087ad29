/* tlbd: small helpers shared by every module: container_of, an assert
 * that stays on in every build, checked pthread calls (a failing mutex
 * operation is a broken invariant and aborts), the monotonic clock, and the
 * adaptive window of a thread that polls briefly before it sleeps.  Any
 * thread may call these.
 */
#ifndef TLBD_UTIL_H
#define TLBD_UTIL_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef container_of
#define container_of(ptr, type, member)                                        \
    ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define TLBD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Abort with a message: only for broken invariants. */
#define tlbd_die(what, err)                                                    \
    do {                                                                       \
        fprintf(stderr, "tlbd: %s:%d: %s: %s\n", __FILE__, __LINE__, (what),   \
                strerror(err));                                                \
        abort();                                                               \
    } while (0)

/* Abort with file:line and EXPR unless EXPR holds.  Unlike assert(3) it
 * stays on under NDEBUG (CMake's Release and RelWithDebInfo): use it for
 * invariants that a bug elsewhere could break, never for input.
 */
#define TLBD_ASSERT(expr)                                                      \
    do {                                                                       \
        if (__builtin_expect(!(expr), 0)) {                                    \
            fprintf(stderr, "tlbd: %s:%d: assertion failed: %s\n", __FILE__,   \
                    __LINE__, #expr);                                          \
            abort();                                                           \
        }                                                                      \
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

/* Tell the CPU that this is a busy-wait loop (and let a sibling hyperthread
 * run).
 */
static inline void
tlbd_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* A bounded busy-wait: call tlbd_spin_step between checks of the condition
 * waited for; it pauses, reads the clock every 8 steps and returns false
 * once DEADLINE (tlbd_now_ns) has passed.  After TLBD_SPIN_YIELD_NS of
 * spinning it also yields at each clock reading: on a small machine the
 * thread that would end the wait may be runnable on this very CPU.
 *
 *   TlbdSpin spin;
 *   tlbd_spin_start(&spin, tlbd_now_ns(), deadline);
 *   while (!ready() && tlbd_spin_step(&spin)) {
 *   }
 */
#define TLBD_SPIN_YIELD_NS 1000u

typedef struct TlbdSpin {
    uint64_t deadline;
    uint64_t yield_at;
    unsigned steps;
} TlbdSpin;

static inline void
tlbd_spin_start(TlbdSpin *spin, uint64_t start_ns, uint64_t deadline)
{
    spin->deadline = deadline;
    spin->yield_at = start_ns + TLBD_SPIN_YIELD_NS;
    spin->steps = 0;
}

static inline bool
tlbd_spin_step(TlbdSpin *spin)
{
    tlbd_cpu_relax();
    if (++spin->steps % 8 != 0) {
        return true;
    }
    uint64_t now = tlbd_now_ns();
    if (now >= spin->deadline) {
        return false;
    }
    if (now >= spin->yield_at) {
        sched_yield();
    }
    return true;
}

/* The first poll window after polling was off, in nanoseconds. */
#define TLBD_POLL_GROW_FROM_NS 2000u

/* Adapt the poll window *POLL_NS of a thread that polls before it sleeps,
 * from BLOCK_NS, how long it last waited for an event (polling included),
 * and MAX_NS, the largest window allowed (0: never poll).  Caught by the
 * window: keep it.  Came soon after it (within MAX_NS): polling a little
 * longer would have saved the sleep, so double it.  Came much later: halve
 * it, down to off.
 */
static inline void
tlbd_poll_adapt(uint64_t *poll_ns, uint64_t block_ns, uint64_t max_ns)
{
    uint64_t ns = *poll_ns;

    if (max_ns == 0) {
        ns = 0;
    } else if (block_ns <= ns) {
        /* polling paid off */
    } else if (block_ns > max_ns) {
        ns /= 2;
        if (ns < TLBD_POLL_GROW_FROM_NS) {
            ns = 0;
        }
    } else {
        ns = ns ? ns * 2 : TLBD_POLL_GROW_FROM_NS;
    }
    *poll_ns = ns < max_ns ? ns : max_ns;
}

#endif /* TLBD_UTIL_H */
