/* tlbd: a gate, an open flag plus a count of the threads inside.
 *
 * A thread that may touch an object after the point where its owner may
 * tear it down enters first and leaves when done; the owner closes the
 * gate, which waits for those inside, and later callers find it closed.
 * Model: the busy count of libuv's uv_async_send and uv__async_spin.  The
 * threadlet pool's submits hold its gate while they lock the queue; the
 * I/O thread's posters hold its gate while they kick the loop.
 */
#ifndef TLBD_GATE_H
#define TLBD_GATE_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#define TLBD_GATE_OPEN   1u
#define TLBD_GATE_INSIDE 2u /* per thread inside */

typedef struct TlbdGate {
    _Atomic unsigned word; /* TLBD_GATE_OPEN | TLBD_GATE_INSIDE * inside */
} TlbdGate;

/* Open G.  A zeroed gate is closed. */
static inline void
tlbd_gate_init(TlbdGate *g)
{
    atomic_init(&g->word, TLBD_GATE_OPEN);
}

static inline void
tlbd_gate_leave(TlbdGate *g)
{
    atomic_fetch_sub_explicit(&g->word, TLBD_GATE_INSIDE, memory_order_release);
}

/* Enter G.  Returns false, having left again, when G is closed. */
static inline bool
tlbd_gate_enter(TlbdGate *g)
{
    if (atomic_fetch_add(&g->word, TLBD_GATE_INSIDE) & TLBD_GATE_OPEN) {
        return true;
    }
    tlbd_gate_leave(g);
    return false;
}

/* Close G and wait until nobody is inside (they leave soon: the wait
 * yields).  Returns false when G was closed already.
 */
static inline bool
tlbd_gate_close(TlbdGate *g)
{
    if (!(atomic_fetch_and(&g->word, ~TLBD_GATE_OPEN) & TLBD_GATE_OPEN)) {
        return false;
    }
    while (atomic_load_explicit(&g->word, memory_order_acquire) != 0) {
        sched_yield();
    }
    return true;
}

#endif /* TLBD_GATE_H */
