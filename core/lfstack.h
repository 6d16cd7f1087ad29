/* tlbd: a lock-free stack of intrusive nodes (the threadlet inbox, the I/O
 * thread's completion list).
 *
 * Any thread pushes one node with a compare-and-swap; one consumer at a
 * time (the lock holder, the loop's thread) takes every node with one
 * exchange and reverses them into push order.  Model: QEMU's
 * QSLIST_INSERT_HEAD_ATOMIC and QSLIST_MOVE_ATOMIC.  The consumer may also
 * close the stack: pushes fail from then on.  A zeroed stack is closed;
 * an empty one holds its own address, so no global sentinel is needed, and
 * the lists the consumer takes end in NULL.  The compare-and-swap of a
 * push, the exchange of a take and the load of lfstack_is_empty are
 * sequentially consistent.
 */
#ifndef TLBD_LFSTACK_H
#define TLBD_LFSTACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct LfNode LfNode;
struct LfNode {
    LfNode *next;
};

typedef struct LfStack {
    _Atomic(LfNode *) top; /* NULL: closed; the stack itself: empty */
} LfStack;

#define LFSTACK_EMPTY(s) ((LfNode *)(s))

static inline void
lfstack_init(LfStack *s)
{
    atomic_init(&s->top, LFSTACK_EMPTY(s));
}

/* Whether S holds no node (closed counts as empty). */
static inline bool
lfstack_is_empty(LfStack *s)
{
    LfNode *top = atomic_load(&s->top);
    return top == NULL || top == LFSTACK_EMPTY(s);
}

/* Push NODE.  Returns 1 when S was empty, 0 when it held nodes, and -1,
 * pushing nothing, when S is closed, or when it is empty and FIRST is
 * false: a caller with something to do before it pushes the first node
 * does it and pushes again (see iothread_post).
 */
static inline int
lfstack_push(LfStack *s, LfNode *node, bool first)
{
    LfNode *old = atomic_load_explicit(&s->top, memory_order_relaxed);
    do {
        if (old == NULL || (old == LFSTACK_EMPTY(s) && !first)) {
            return -1;
        }
        node->next = old == LFSTACK_EMPTY(s) ? NULL : old;
    } while (!atomic_compare_exchange_weak_explicit(
        &s->top, &old, node, memory_order_seq_cst, memory_order_relaxed));
    return old == LFSTACK_EMPTY(s);
}

/* Consumer: take every node, newest first, leaving S empty.  NULL when S
 * is empty or closed.
 */
static inline LfNode *
lfstack_take_all(LfStack *s)
{
    if (lfstack_is_empty(s)) {
        return NULL; /* and a closed stack stays closed */
    }
    return atomic_exchange(&s->top, LFSTACK_EMPTY(s));
}

/* Consumer: take every node, newest first, and close S. */
static inline LfNode *
lfstack_close(LfStack *s)
{
    LfNode *top = atomic_exchange(&s->top, NULL);
    return top == LFSTACK_EMPTY(s) ? NULL : top;
}

/* Reverse the list LIST, as taken, into push order; add its length to
 * *COUNT.
 */
static inline LfNode *
lfstack_reverse(LfNode *list, unsigned *count)
{
    LfNode *out = NULL;

    while (list) {
        LfNode *next = list->next;
        list->next = out;
        out = list;
        list = next;
        (*count)++;
    }
    return out;
}

#endif /* TLBD_LFSTACK_H */
