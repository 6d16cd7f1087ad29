/* tlbd: the I/O thread, an epoll loop with a coalescing completion list.
 *
 * Posters (threadlet workers, nbdkit threads, anyone) push IOThreadTasks on
 * a lock-free stack (lfstack.h) and write the eventfd only when it was
 * empty.  The loop reads the eventfd, then takes the whole stack, so a push
 * after the take finds it empty and kicks again: no wake-up is lost.  Tasks
 * run in posting order, outside any lock.  A poster that kicks holds
 * kick_gate (gate.h) from before its push, since its task may run and the
 * loop be freed before the kick; iothread_free closes the gate.
 *
 * Polling: before epoll_wait the loop may spin on the stack for its
 * adaptive window with `polling` set, and posters then skip the kick.  A
 * poster pushes, then reads `polling`; the loop clears it, then reads the
 * stack (seq_cst): either the poster kicks or the loop finds the task.
 *
 * A fd handler removed during a dispatch is only marked dead and freed
 * after the batch, so a stale event never reaches freed memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include "gate.h"
#include "iothread.h"
#include "lfstack.h"
#include "util.h"

#define MAX_EVENTS 64

typedef struct PassHook {
    IOPassHook *hook;
    void *opaque;
    LIST_ENTRY(PassHook) next;
} PassHook;

typedef struct FdHandler {
    int fd;
    bool dead;
    IOHandler *handler;
    void *opaque;
    LIST_ENTRY(FdHandler) next;
} FdHandler;

struct IOThread {
    /* written by posters */
    LfStack tasks;           /* posted, not yet taken */
    _Atomic uint64_t posted; /* on the line the push writes anyway */
    _Atomic uint64_t kicks;
    _Atomic uint64_t kick_ns; /* when a poster last kicked */
    TlbdGate kick_gate;       /* posters that are to kick */
    char pad1[64];

    /* read by posters, written by the loop or the owner */
    atomic_bool polling; /* the loop spins on `tasks` */
    atomic_bool stopping;
    _Atomic uint64_t poll_max_ns;
    char pad2[64];

    /* written by the loop only, read by iothread_get_stats */
    _Atomic uint64_t wakeups;
    _Atomic uint64_t batches;
    _Atomic uint64_t max_batch;
    _Atomic uint64_t poll_hits;

    /* loop thread only (or while the loop is not running) */
    uint64_t poll_ns; /* adaptive poll window */
    LIST_HEAD(FdHandlerList, FdHandler) handlers;
    struct FdHandlerList graveyard; /* removed during a dispatch */
    LIST_HEAD(PassHookList, PassHook) pass_hooks;
    bool dispatching;

    /* set up by iothread_new; thread and has_thread: owner only */
    char name[16];
    int epfd;
    int efd;
    pthread_t thread;
    bool has_thread;
};

static __thread IOThread *current_iothread;

int
iothread_new(const char *name, IOThread **out)
{
    IOThread *io = calloc(1, sizeof(*io));
    int err;

    if (!io) {
        return -ENOMEM;
    }
    snprintf(io->name, sizeof(io->name), "io-%s", name ? name : "loop");
    LIST_INIT(&io->handlers);
    LIST_INIT(&io->graveyard);
    LIST_INIT(&io->pass_hooks);
    lfstack_init(&io->tasks);
    tlbd_gate_init(&io->kick_gate);
    atomic_init(&io->poll_max_ns, IOTHREAD_DEFAULT_POLL_NS);

    io->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (io->epfd < 0) {
        err = -errno;
        goto out_free;
    }
    io->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (io->efd < 0) {
        err = -errno;
        goto out_close_epfd;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->efd, &ev) < 0) {
        err = -errno;
        goto out_close_efd;
    }
    *out = io;
    return 0;

out_close_efd:
    close(io->efd);
out_close_epfd:
    close(io->epfd);
out_free:
    free(io);
    return err;
}

static void
kick(IOThread *io)
{
    uint64_t one = 1;
    atomic_fetch_add_explicit(&io->kicks, 1, memory_order_relaxed);
    /* EAGAIN means the counter is already non-zero: the loop will wake. */
    while (write(io->efd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

void
iothread_post(IOThread *io, IOThreadTask *task)
{
    bool guarded = false;
    int was_empty;

    atomic_fetch_add_explicit(&io->posted, 1, memory_order_relaxed);
    /* Only a push onto an empty stack kicks, when the task may have run
     * and IO been freed: it enters the gate first.  Others touch nothing
     * after the push.
     */
    while ((was_empty = lfstack_push(&io->tasks, &task->node, guarded)) < 0) {
        guarded = tlbd_gate_enter(&io->kick_gate);
        TLBD_ASSERT(guarded); /* no post once iothread_free has begun */
    }
    /* A polling loop finds the task: see the file comment. */
    if (was_empty &&
        !atomic_load_explicit(&io->polling, memory_order_seq_cst)) {
        /* For the poll window: when the task came, not when the loop woke */
        if (atomic_load_explicit(&io->poll_max_ns, memory_order_relaxed)) {
            atomic_store_explicit(&io->kick_ns, tlbd_now_ns(),
                                  memory_order_relaxed);
        }
        kick(io);
    }
    if (guarded) {
        tlbd_gate_leave(&io->kick_gate);
    }
}

/* Run every posted task, in posting order.  Returns how many ran. */
static unsigned
drain_tasks(IOThread *io)
{
    unsigned n = 0;
    LfNode *node = lfstack_reverse(lfstack_take_all(&io->tasks), &n);

    while (node) {
        IOThreadTask *task = container_of(node, IOThreadTask, node);
        node = node->next;
        task->fn(task); /* may free task */
    }
    if (n) {
        atomic_fetch_add_explicit(&io->batches, 1, memory_order_relaxed);
        if (n > atomic_load_explicit(&io->max_batch, memory_order_relaxed)) {
            atomic_store_explicit(&io->max_batch, n, memory_order_relaxed);
        }
    }
    return n;
}

static void
free_handlers(struct FdHandlerList *list)
{
    FdHandler *h;
    while ((h = LIST_FIRST(list)) != NULL) {
        LIST_REMOVE(h, next);
        free(h);
    }
}

/* The end of a pass: let the hooks flush what the pass batched. */
static void
run_pass_hooks(IOThread *io)
{
    PassHook *h;
    PassHook *next;

    for (h = LIST_FIRST(&io->pass_hooks); h; h = next) {
        next = LIST_NEXT(h, next); /* a hook may remove itself */
        h->hook(h->opaque);
    }
}

/* Spin until a task is posted, the loop is asked to stop or DEADLINE
 * passes.  Returns true when a task is waiting.
 */
static bool
poll_tasks(IOThread *io, uint64_t start, uint64_t deadline)
{
    TlbdSpin spin;

    tlbd_spin_start(&spin, start, deadline);
    atomic_store_explicit(&io->polling, true, memory_order_seq_cst);
    while (lfstack_is_empty(&io->tasks) &&
           !atomic_load_explicit(&io->stopping, memory_order_relaxed) &&
           tlbd_spin_step(&spin)) {
    }
    atomic_store_explicit(&io->polling, false, memory_order_seq_cst);
    /* A poster that saw `polling` set did not kick: look once more. */
    return !lfstack_is_empty(&io->tasks);
}

int
iothread_run(IOThread *io)
{
    struct epoll_event events[MAX_EVENTS];
    int ret = 0;

    current_iothread = io;

    while (!atomic_load_explicit(&io->stopping, memory_order_acquire)) {
        uint64_t max =
            atomic_load_explicit(&io->poll_max_ns, memory_order_relaxed);
        uint64_t t0 = max ? tlbd_now_ns() : 0;
        int timeout = -1;

        run_pass_hooks(io);
        if (io->poll_ns > max) {
            io->poll_ns = max;
        }
        if (io->poll_ns && poll_tasks(io, t0, t0 + io->poll_ns)) {
            atomic_fetch_add_explicit(&io->poll_hits, 1, memory_order_relaxed);
            drain_tasks(io);
            if (LIST_EMPTY(&io->handlers)) {
                continue;
            }
            timeout = 0; /* look at the fds too, without sleeping */
        }
        int n = epoll_wait(io->epfd, events, MAX_EVENTS, timeout);
        if (max && timeout < 0) {
            uint64_t t1 =
                atomic_load_explicit(&io->kick_ns, memory_order_relaxed);
            if (t1 <= t0) {
                t1 = tlbd_now_ns(); /* woken by an fd, or kicked before */
            }
            tlbd_poll_adapt(&io->poll_ns, t1 - t0, max);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ret = -errno;
            break;
        }
        io->dispatching = true;
        for (int i = 0; i < n; i++) {
            FdHandler *h = events[i].data.ptr;
            if (h == NULL) {
                uint64_t cnt;
                /* Read first, then take the list: see the file comment. */
                if (read(io->efd, &cnt, sizeof(cnt)) == sizeof(cnt)) {
                    atomic_fetch_add_explicit(&io->wakeups, 1,
                                              memory_order_relaxed);
                }
                drain_tasks(io);
            } else if (!h->dead) {
                h->handler(h->opaque, h->fd, events[i].events);
            }
        }
        io->dispatching = false;
        free_handlers(&io->graveyard);
    }
    /* Tasks posted before the stop still run exactly once. */
    while (drain_tasks(io)) {
    }
    run_pass_hooks(io);
    current_iothread = NULL;
    return ret;
}

static void *
loop_thread(void *opaque)
{
    IOThread *io = opaque;
    pthread_setname_np(pthread_self(), io->name);
    iothread_run(io);
    return NULL;
}

int
iothread_start(IOThread *io)
{
    sigset_t all;
    sigset_t old;
    int err;

    if (io->has_thread) {
        return -EBUSY;
    }
    atomic_store(&io->stopping, false);
    /* The loop handles no signals; those go to the process's main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&io->thread, NULL, loop_thread, io);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        return -err;
    }
    io->has_thread = true;
    return 0;
}

bool
iothread_is_current(IOThread *io)
{
    return current_iothread == io;
}

void
iothread_stop(IOThread *io)
{
    atomic_store_explicit(&io->stopping, true, memory_order_release);
    kick(io);
    if (io->has_thread && !pthread_equal(pthread_self(), io->thread)) {
        int err = pthread_join(io->thread, NULL);
        if (err) {
            tlbd_die("pthread_join", err);
        }
        io->has_thread = false;
    }
}

void
iothread_free(IOThread *io)
{
    if (!io) {
        return;
    }
    iothread_stop(io);
    drain_tasks(io);
    /* A poster whose task already ran may still be about to kick. */
    tlbd_gate_close(&io->kick_gate);
    free_handlers(&io->handlers);
    free_handlers(&io->graveyard);
    PassHook *h;
    while ((h = LIST_FIRST(&io->pass_hooks)) != NULL) {
        LIST_REMOVE(h, next);
        free(h);
    }
    close(io->efd);
    close(io->epfd);
    free(io);
}

typedef struct CallTask {
    IOThreadTask task;
    void (*fn)(void *opaque);
    void *opaque;
    sem_t done;
} CallTask;

static void
call_task_run(IOThreadTask *task)
{
    CallTask *ct = container_of(task, CallTask, task);
    ct->fn(ct->opaque);
    sem_post(&ct->done);
}

void
iothread_call(IOThread *io, void (*fn)(void *opaque), void *opaque)
{
    if (iothread_is_current(io)) {
        fn(opaque);
        return;
    }
    CallTask ct = { .task.fn = call_task_run, .fn = fn, .opaque = opaque };
    sem_init(&ct.done, 0, 0);
    iothread_post(io, &ct.task);
    while (sem_wait(&ct.done) < 0 && errno == EINTR) {
    }
    sem_destroy(&ct.done);
}

int
iothread_add_fd(IOThread *io, int fd, uint32_t events, IOHandler *handler,
                void *opaque)
{
    FdHandler *h = calloc(1, sizeof(*h));
    if (!h) {
        return -ENOMEM;
    }
    h->fd = fd;
    h->handler = handler;
    h->opaque = opaque;
    struct epoll_event ev = { .events = events, .data.ptr = h };
    if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        free(h);
        return err;
    }
    LIST_INSERT_HEAD(&io->handlers, h, next);
    return 0;
}

int
iothread_del_fd(IOThread *io, int fd)
{
    FdHandler *h;
    LIST_FOREACH(h, &io->handlers, next)
    {
        if (h->fd == fd && !h->dead) {
            break;
        }
    }
    if (!h) {
        return -ENOENT;
    }
    /* The fd may already be closed by its owner; the error is harmless. */
    epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
    LIST_REMOVE(h, next);
    if (io->dispatching) {
        h->dead = true;
        LIST_INSERT_HEAD(&io->graveyard, h, next);
    } else {
        free(h);
    }
    return 0;
}

int
iothread_add_pass_hook(IOThread *io, IOPassHook *hook, void *opaque)
{
    PassHook *h = calloc(1, sizeof(*h));
    if (!h) {
        return -ENOMEM;
    }
    h->hook = hook;
    h->opaque = opaque;
    LIST_INSERT_HEAD(&io->pass_hooks, h, next);
    return 0;
}

int
iothread_del_pass_hook(IOThread *io, IOPassHook *hook, void *opaque)
{
    PassHook *h;
    LIST_FOREACH(h, &io->pass_hooks, next)
    {
        if (h->hook == hook && h->opaque == opaque) {
            LIST_REMOVE(h, next);
            free(h);
            return 0;
        }
    }
    return -ENOENT;
}

int
iothread_set_poll_max_ns(IOThread *io, uint64_t max_ns)
{
    if (max_ns > IOTHREAD_MAX_POLL_NS) {
        return -EINVAL;
    }
    atomic_store_explicit(&io->poll_max_ns, max_ns, memory_order_relaxed);
    return 0;
}

void
iothread_get_stats(IOThread *io, IOThreadStats *stats)
{
    stats->posted = atomic_load(&io->posted);
    stats->kicks = atomic_load(&io->kicks);
    stats->wakeups = atomic_load(&io->wakeups);
    stats->batches = atomic_load(&io->batches);
    stats->max_batch = atomic_load(&io->max_batch);
    stats->poll_hits = atomic_load(&io->poll_hits);
}
