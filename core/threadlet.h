/* tlbd: threadlets, a generic pool of worker threads for blocking work.
 *
 * A thread that must stay responsive (an I/O thread, a vcpu) embeds a
 * ThreadletWork in its request, sets work.func and submits it; a worker runs
 * func, and the result goes back to the owner.  The usage of the original
 * design still holds:
 *
 *   typedef struct MyRequest { ...; ThreadletWork work; } MyRequest;
 *   static void my_func(ThreadletWork *work)
 *   {
 *       MyRequest *req = container_of(work, MyRequest, work);
 *       ... blocking call, touching only req ...
 *   }
 *   req->work.func = my_func;
 *   submit_threadlet(&req->work);            (the global queue), or
 *   threadlet_queue_init(&my_queue, max_threads, min_threads);
 *   submit_threadlet_to_queue(&my_queue, &req->work);
 *   cancel_threadlet(&req->work) == 0        (dequeued, will never run)
 *
 * Only func needs setting: the submit functions fill in the rest, so a
 * request struct need not be zeroed.  threadlet_submit_complete adds a
 * complete callback that runs exactly once on a given IOThread after func,
 * or after a successful cancel.  See threadlet(3).
 *
 * Threads: every function may be called from any thread, func included,
 * except threadlet_queue_destroy, which must not be called by a worker of the
 * queue it destroys.
 */
#ifndef TLBD_THREADLET_H
#define TLBD_THREADLET_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "gate.h"
#include "iothread.h"
#include "lfstack.h"
#include "util.h" /* container_of */

typedef struct ThreadletWork ThreadletWork;
typedef struct ThreadletQueue ThreadletQueue;
typedef struct ThreadletWorker ThreadletWorker;

typedef enum ThreadletState {
    THREADLET_NEW = 0,   /* never submitted */
    THREADLET_QUEUED,    /* waiting for a worker; cancel succeeds */
    THREADLET_RUNNING,   /* func is running; cancel fails */
    THREADLET_DONE,      /* func returned */
    THREADLET_CANCELLED, /* removed by cancel or destroy; func never ran */
} ThreadletState;

struct ThreadletWork {
    /* public: set by the owner before submitting */
    void (*func)(ThreadletWork *work); /* runs on a worker */

    /* read-only: set by submit */
    void (*complete)(ThreadletWork *work); /* Can be NULL. */
    IOThread *iothread; /* where complete runs; NULL: on the worker */

    /* private */
    TAILQ_ENTRY(ThreadletWork) node; /* in queue->items */
    LfNode inbox_node;               /* in queue->inbox */
    ThreadletQueue *queue;
    uint64_t submit_ns; /* 0: this item's queued time is not sampled */
    IOThreadTask complete_task;
    _Atomic int state; /* read with threadlet_work_state() */
};

/* What a queue has done so far (counters) and looks like now (gauges). */
typedef struct ThreadletStats {
    uint64_t submitted;
    uint64_t completed; /* func returned */
    uint64_t cancelled;
    uint64_t queued; /* now waiting */
    unsigned cur_threads;
    unsigned idle_threads; /* waiting for work, spinning ones included */
    unsigned peak_threads;
    unsigned max_threads;
    unsigned min_threads;
    uint64_t spawned;   /* threads created over the queue's life */
    uint64_t spin_hits; /* items a spinning worker took: no wake-up */
    /* Queued time, measured on one submitted item in THREADLET_WAIT_SAMPLE
     * (the first, then every THREADLET_WAIT_SAMPLE-th, exactly so with one
     * submitting thread): the average is wait_ns_total / wait_samples.
     */
    uint64_t wait_samples;  /* sampled items a worker has taken */
    uint64_t wait_ns_total; /* their queued time, summed */
    uint64_t wait_ns_max;   /* the longest of them */
} ThreadletStats;

/* One submitted item in this many has its queued time measured: reading the
 * clock twice per item would cost more than an empty item's whole trip.
 */
#define THREADLET_WAIT_SAMPLE 64

typedef enum ThreadletDestroyMode {
    THREADLET_DRAIN,  /* run every queued item, then stop */
    THREADLET_CANCEL, /* cancel queued items, wait for running ones */
} ThreadletDestroyMode;

/* The default idle timeout: a worker above min_threads that waits this long
 * for work leaves.
 */
#define THREADLET_DEFAULT_IDLE_MS 10000

/* The default and the largest spin window: a worker that finds the queue
 * empty polls it for up to this long before it sleeps (see
 * threadlet_queue_set_spin_ns).  Off by default: with fewer CPUs than busy
 * threads, spinning takes CPU time from the threads doing the work.
 */
#define THREADLET_DEFAULT_SPIN_NS 0
#define THREADLET_MAX_SPIN_NS     1000000

struct ThreadletQueue {
    /* private, atomic: written by every submit without the lock */
    LfStack inbox;                /* submitted items, newest first */
    _Atomic unsigned pending;     /* submitted, not yet moved to items */
    _Atomic unsigned sample_tick; /* submits, roughly: picks sampled ones */
    char pad1[64];

    /* private, atomic: written under lock (gate: by submits that lock, and
     * destroy), read by submit without it
     */
    TlbdGate gate;                 /* submits that lock; destroy closes it */
    _Atomic unsigned idle_threads; /* waiting on work_cond */
    _Atomic unsigned spinners;     /* polling for work; at most one */
    _Atomic unsigned wakes;        /* signalled, not yet back from the wait */
    _Atomic unsigned cur_threads;
    _Atomic unsigned max_threads;
    _Atomic bool has_exited; /* the exited list is not empty */
    char pad2[64];

    /* private: protected by lock */
    pthread_mutex_t lock;
    pthread_cond_t work_cond;    /* idle workers wait here, one woken/item */
    pthread_cond_t stopped_cond; /* a worker left */
    TAILQ_HEAD(ThreadletWorkList, ThreadletWork) items; /* oldest first */
    _Atomic unsigned fifo_len; /* on items; also read without the lock */
    uint64_t moved;            /* items moved from the inbox to items */
    TAILQ_HEAD(, ThreadletWorker) workers; /* live ones */
    TAILQ_HEAD(, ThreadletWorker) exited;  /* left, not yet joined */
    unsigned min_threads;
    unsigned peak_threads;
    unsigned next_id;
    uint64_t idle_timeout_ns;
    uint64_t spin_max_ns;   /* 0: workers never spin */
    uint64_t spin_ns;       /* adaptive window, <= spin_max_ns */
    uint64_t idle_since_ns; /* when the latest worker began to wait */
    bool stopping;          /* destroy runs: workers leave when dry */
    ThreadletStats stats;   /* submitted and queued: computed */
    char name[8];
};

/* Initialize QUEUE: at most MAX_THREADS workers, MIN_THREADS kept warm
 * (started now).  Returns 0 or -errno (-EINVAL for bad limits).
 */
int threadlet_queue_init(ThreadletQueue *queue, int max_threads,
                         int min_threads);

/* The same with a name: workers are called "tl-NAME-N".  NAME is cut to 7
 * characters.
 */
int threadlet_queue_init_named(ThreadletQueue *queue, const char *name,
                               int max_threads, int min_threads);

/* Queue WORK.  Returns 0, -ESHUTDOWN when the queue is being destroyed, or
 * -errno from thread creation when the queue has no worker at all (the item
 * is then not queued).
 */
int submit_threadlet_to_queue(ThreadletQueue *queue, ThreadletWork *work);

/* Queue WORK and have COMPLETE(WORK) run exactly once afterwards: on IO's
 * thread when IO is not NULL, else on the worker right after func.  COMPLETE
 * also runs, with the state THREADLET_CANCELLED, for an item that is
 * cancelled.  Until COMPLETE runs the pool owns WORK.  Returns as
 * submit_threadlet_to_queue.
 */
int threadlet_submit_complete(ThreadletQueue *queue, ThreadletWork *work,
                              IOThread *io,
                              void (*complete)(ThreadletWork *work));

/* Queue WORK on the global queue, created on first use (thread-safe). */
int submit_threadlet(ThreadletWork *work);

/* 0 when WORK was still queued and is now removed (it never runs; its
 * complete callback, if any, is posted with state THREADLET_CANCELLED), 1
 * when it was not found queued (running, done, or never submitted).
 */
int cancel_threadlet_on_queue(ThreadletQueue *queue, ThreadletWork *work);

/* cancel_threadlet_on_queue on the global queue. */
int cancel_threadlet(ThreadletWork *work);

/* The state of WORK.  After a failed cancel this tells running from done. */
ThreadletState threadlet_work_state(const ThreadletWork *work);

/* Change the limits while the queue runs: raising min starts workers,
 * lowering max makes surplus workers leave once idle.  Returns 0 or -EINVAL.
 */
int threadlet_queue_set_limits(ThreadletQueue *queue, int max_threads,
                               int min_threads);

/* Workers above min_threads leave after IDLE_MS without work. */
void threadlet_queue_set_idle_timeout(ThreadletQueue *queue, unsigned idle_ms);

/* Let a worker that finds the queue empty first poll it for a while, so that
 * an item submitted soon after needs no wake-up: the window adapts between 0
 * and SPIN_NS (at most THREADLET_MAX_SPIN_NS), growing while items come soon
 * after it ends and shrinking while they do not.  One worker of a queue
 * spins at a time.  0, the default, turns spinning off.  Returns 0 or
 * -EINVAL.
 */
int threadlet_queue_set_spin_ns(ThreadletQueue *queue, unsigned spin_ns);

void threadlet_queue_get_stats(ThreadletQueue *queue, ThreadletStats *stats);

/* Stop accepting work, then drain or cancel what is queued, wait for running
 * items and join every worker.  Complete callbacks of cancelled items are
 * posted, so their IOThreads must still run.  QUEUE may be initialized again
 * afterwards.
 */
void threadlet_queue_destroy(ThreadletQueue *queue, ThreadletDestroyMode mode);

/* The global queue used by submit_threadlet (created if needed). */
ThreadletQueue *threadlet_global_queue(void);

/* Default max_threads of the global queue: 8 per online CPU, at least 16 and
 * at most 64 (the original's fixed number).
 */
int threadlet_default_max_threads(void);

#endif /* TLBD_THREADLET_H */
