/* tlbd: the I/O thread.
 *
 * An IOThread is an epoll event loop with two kinds of event source:
 *  - fd handlers (the FUSE session fd is one), and
 *  - a completion list that any thread may post an IOThreadTask to.  The
 *    list is a lock-free stack; a poster writes the loop's eventfd only when
 *    the list goes from empty to non-empty, and the loop takes the whole list
 *    in one exchange, so a burst of completions costs one wake-up.
 *
 * Before it sleeps in epoll_wait the loop may poll the completion list for an
 * adaptive window (iothread_set_poll_max_ns): a completion that comes within
 * it costs no eventfd write and no wake-up.
 *
 * The loop runs either in a thread of its own (iothread_start) or in the
 * caller's thread (iothread_run), so a daemon's main thread can be the I/O
 * thread.  Threads: iothread_post, iothread_call, iothread_stop,
 * iothread_set_poll_max_ns and iothread_get_stats may be called from any
 * thread.  iothread_add_fd and
 * iothread_del_fd must be called on the loop's thread, or while the loop is
 * not running; from another thread wrap them in iothread_call.
 */
#ifndef TLBD_IOTHREAD_H
#define TLBD_IOTHREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "lfstack.h"

typedef struct IOThread IOThread;
typedef struct IOThreadTask IOThreadTask;

/* A unit of work to run on the loop's thread.  Embed it in your own struct
 * and recover the struct with container_of in fn.
 */
struct IOThreadTask {
    /* public */
    void (*fn)(IOThreadTask *task);
    /* private */
    LfNode node; /* on the completion list */
};

/* Called on the loop's thread with the epoll events that fired. */
typedef void IOHandler(void *opaque, int fd, uint32_t events);

/* Called on the loop's thread once per pass of the loop. */
typedef void IOPassHook(void *opaque);

typedef struct IOThreadStats {
    uint64_t posted;    /* tasks posted */
    uint64_t kicks;     /* eventfd writes by posters */
    uint64_t wakeups;   /* times the loop found the eventfd readable */
    uint64_t batches;   /* non-empty completion lists drained */
    uint64_t max_batch; /* most tasks drained in one go */
    uint64_t poll_hits; /* batches found by polling, with no wake-up */
} IOThreadStats;

/* The default and the largest poll window (see iothread_set_poll_max_ns).
 * Off by default: with fewer CPUs than busy threads, polling takes CPU time
 * from the threads doing the work.
 */
#define IOTHREAD_DEFAULT_POLL_NS 0
#define IOTHREAD_MAX_POLL_NS     1000000

/* Create a loop named NAME (used for the thread name "io-NAME").  Returns
 * 0 or -errno.
 */
int iothread_new(const char *name, IOThread **out);

/* Stop the loop if needed, join its thread, run tasks still posted, wait
 * for posters still returning from iothread_post, close its descriptors and
 * free it.  Handlers still registered are dropped.
 */
void iothread_free(IOThread *io);

/* Run the loop in a new thread.  Returns 0 or -errno. */
int iothread_start(IOThread *io);

/* Run the loop in the calling thread until iothread_stop.  Returns 0 or
 * -errno if epoll fails.
 */
int iothread_run(IOThread *io);

/* Ask the loop to return.  If it runs in its own thread and the caller is not
 * that thread, also wait for the thread to end.  Any thread.
 */
void iothread_stop(IOThread *io);

/* True when the caller is the thread running IO's loop. */
bool iothread_is_current(IOThread *io);

/* Post TASK; TASK->fn runs once on the loop's thread, in posting order per
 * poster.  Any thread; never blocks.
 */
void iothread_post(IOThread *io, IOThreadTask *task);

/* Run FN(OPAQUE) on the loop's thread and wait for it to return.  Runs FN
 * directly when called on the loop's thread.  The loop must be running.
 */
void iothread_call(IOThread *io, void (*fn)(void *opaque), void *opaque);

/* Watch FD for EVENTS (EPOLLIN, EPOLLOUT, ...); HANDLER runs on the loop's
 * thread.  Returns 0 or -errno.
 */
int iothread_add_fd(IOThread *io, int fd, uint32_t events, IOHandler *handler,
                    void *opaque);

/* Stop watching FD.  After it returns the handler will not be called again.
 * Returns 0 or -ENOENT.
 */
int iothread_del_fd(IOThread *io, int fd);

/* Run HOOK(OPAQUE) once per pass of the loop: after the pass's fd handlers
 * and tasks have run and before the loop polls or sleeps again, and once
 * more after the loop stopped and ran its last tasks.  The place to flush
 * work that handlers and tasks batch up during a pass (one system call for
 * many replies).  Same thread rules as iothread_add_fd.  Returns 0 or
 * -errno.
 */
int iothread_add_pass_hook(IOThread *io, IOPassHook *hook, void *opaque);

/* Remove a hook added with the same HOOK and OPAQUE.  Returns 0 or -ENOENT.
 */
int iothread_del_pass_hook(IOThread *io, IOPassHook *hook, void *opaque);

/* Have the loop poll its completion list before it sleeps, for a window
 * that adapts between 0 and MAX_NS (at most IOTHREAD_MAX_POLL_NS): it grows
 * while completions come soon after the window ends and shrinks while they
 * do not.  0, the default, turns polling off.  Fd handlers are not polled;
 * they wait for at most one window.  Any thread.  Returns 0 or -EINVAL.
 */
int iothread_set_poll_max_ns(IOThread *io, uint64_t max_ns);

void iothread_get_stats(IOThread *io, IOThreadStats *stats);

#endif /* TLBD_IOTHREAD_H */
