/* tlbd: the threadlet pool.
 *
 * Submitting takes no lock: a submit counts its item in q->pending and
 * pushes it onto q->inbox, a lock-free stack (lfstack.h), two atomic
 * read-modify-writes on one cache line.  q->lock guards the rest.  A
 * worker that finds the FIFO q->items empty appends the whole inbox,
 * reversed, so items run in the order each thread submitted them.  queued
 * is pending + fifo_len; stats.submitted is q->moved + pending.
 *
 * kick_needed() alone decides whether queued items need a new worker, the
 * wake-up of one idle worker, or nothing.  A woken worker that takes an
 * item passes the wake on while items remain, so a burst costs the
 * submitter one futex call.  A worker idle for idle_timeout leaves if
 * above min_threads.
 *
 * No lost wake-ups.  The counters kick_needed() reads are atomics written
 * under the lock; a submit reads them after its push, all sequentially
 * consistent, and locks only when they call for a kick.  Otherwise some
 * worker is bound to see the item, as each one publishes before it looks:
 *  - a worker about to sleep adds itself to idle_threads, then checks the
 *    inbox once more under the lock and only then waits; a submit that
 *    pushed after the check sees it idle and signals under the lock;
 *  - a spinner takes itself off spinners, then checks the inbox;
 *  - a woken worker takes itself off wakes, then looks for items;
 *  - a worker that times out takes itself off cur_threads, then reads the
 *    queued count, and stays if it is not 0.
 *
 * A leaving worker moves its record to the exited list and touches nothing
 * after unlocking; the next submit (it locks when q->has_exited is set),
 * set_limits or destroy joins it.  Destroy closes q->gate (gate.h), which
 * submits hold while they lock, then the inbox: a racing submit fails its
 * push (-ESHUTDOWN) or has its item run or cancelled like any other; it
 * may read the queue's atomics after destroy returned, so the queue's
 * memory must outlive every call on it.
 *
 * Work state: QUEUED before the push, RUNNING and DONE by the worker,
 * CANCELLED by cancel; owners read it with acquire.  After DONE the worker
 * touches the item only to post the complete callback it read before.
 * Cancel and destroy clear work->queue when they take an item, so that a
 * concurrent cancel of it leaves it alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threadlet.h"

struct ThreadletWorker {
    pthread_t thread;
    ThreadletQueue *queue;
    unsigned id;
    TAILQ_ENTRY(ThreadletWorker) node;
};

typedef TAILQ_HEAD(, ThreadletWorker) WorkerList;

/* What queued items need: see kick_needed. */
typedef enum Kick { KICK_NONE, KICK_WAKE, KICK_SPAWN } Kick;

static void
set_state(ThreadletWork *work, ThreadletState state)
{
    atomic_store_explicit(&work->state, (int)state, memory_order_release);
}

ThreadletState
threadlet_work_state(const ThreadletWork *work)
{
    return (ThreadletState)atomic_load_explicit((_Atomic int *)&work->state,
                                                memory_order_acquire);
}

static void
run_complete(IOThreadTask *task)
{
    ThreadletWork *work = container_of(task, ThreadletWork, complete_task);
    work->complete(work);
}

/* Store the final STATE and hand WORK to its complete callback, if any.
 * Nothing touches WORK afterwards.
 */
static void
finish(ThreadletWork *work, ThreadletState state)
{
    void (*complete)(ThreadletWork *) = work->complete;
    IOThread *io = work->iothread;

    work->complete_task.fn = run_complete;
    set_state(work, state);
    if (complete && io) {
        iothread_post(io, &work->complete_task);
    } else if (complete) {
        complete(work);
    }
}

/* Unlock Q, then join the workers that have left. */
static void
unlock_and_join(ThreadletQueue *q)
{
    WorkerList exited = TAILQ_HEAD_INITIALIZER(exited);
    ThreadletWorker *w;

    TAILQ_CONCAT(&exited, &q->exited, node);
    atomic_store_explicit(&q->has_exited, false, memory_order_relaxed);
    tlbd_mutex_unlock(&q->lock);
    while ((w = TAILQ_FIRST(&exited)) != NULL) {
        TAILQ_REMOVE(&exited, w, node);
        int err = pthread_join(w->thread, NULL);
        if (err) {
            tlbd_die("pthread_join", err);
        }
        free(w);
    }
}

/* Relaxed reads of the counters that only lock holders write. */
static unsigned
load_counter(_Atomic unsigned *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* Take one off *COUNTER, which must not be 0.  Returns the new value. */
static unsigned
counter_dec(_Atomic unsigned *counter)
{
    unsigned old = atomic_fetch_sub(counter, 1);
    TLBD_ASSERT(old > 0);
    return old - 1;
}

/* The items queued; exact for the FIFO under the lock. */
static unsigned
queued_count(ThreadletQueue *q)
{
    return atomic_load(&q->pending) + load_counter(&q->fifo_len);
}

/* Append the inbox's items to the FIFO, oldest first; with CLOSE, close
 * the inbox.  Each item goes to the head of a batch (the inbox is newest
 * first), which is then appended.
 */
static void
take_inbox_locked(ThreadletQueue *q, bool close)
{
    struct ThreadletWorkList batch;
    LfNode *node;
    unsigned n = 0;

    node = close ? lfstack_close(&q->inbox) : lfstack_take_all(&q->inbox);
    if (!node) {
        return;
    }
    TAILQ_INIT(&batch);
    for (; node; node = node->next, n++) {
        ThreadletWork *work = container_of(node, ThreadletWork, inbox_node);
        TAILQ_INSERT_HEAD(&batch, work, node);
    }
    TAILQ_CONCAT(&q->items, &batch, node);
    /* Onto fifo_len before off pending: unlocked readers may count the
     * items twice for a moment, never miss them.
     */
    atomic_store(&q->fifo_len, load_counter(&q->fifo_len) + n);
    unsigned pending = atomic_fetch_sub(&q->pending, n);
    TLBD_ASSERT(pending >= n);
    q->moved += n;
}

/* Take WORK, queued on Q, off the FIFO and the queued count. */
static void
unqueue_locked(ThreadletQueue *q, ThreadletWork *work)
{
    unsigned len = load_counter(&q->fifo_len);

    TLBD_ASSERT(len > 0);
    TAILQ_REMOVE(&q->items, work, node);
    atomic_store_explicit(&q->fifo_len, len - 1, memory_order_relaxed);
}

/* Take WORK, found QUEUED, off the FIFO for cancelling.  Its state stays
 * QUEUED until finish: a second cancel finds work->queue cleared.
 */
static void
cancel_locked(ThreadletQueue *q, ThreadletWork *work)
{
    unqueue_locked(q, work);
    work->queue = NULL;
    q->stats.cancelled++;
}

/* The one decision on what queued items need: KICK_SPAWN while they
 * outnumber the idle and spinning workers, if MAY_SPAWN and max_threads
 * allow; else KICK_WAKE if a worker is idle and no woken one is on its
 * way; else KICK_NONE.  It reads atomics only, so a submit can ask before
 * it locks.  PENDING: the submit's own count, or 0 to read q->pending; it
 * and fifo_len, on lines written all the time, are read only if needed.
 */
static Kick
kick_needed(ThreadletQueue *q, unsigned pending, bool may_spawn)
{
    unsigned spinners = atomic_load(&q->spinners);
    unsigned idle = atomic_load(&q->idle_threads);
    bool spawn = may_spawn &&
                 atomic_load(&q->cur_threads) < load_counter(&q->max_threads);
    bool wake = idle > 0 && atomic_load(&q->wakes) == 0;

    if (!spawn && !wake) {
        return KICK_NONE;
    }
    unsigned queued = pending ? pending : atomic_load(&q->pending);
    if (queued <= idle + spinners) {
        queued += load_counter(&q->fifo_len);
    }
    if (queued <= spinners) {
        return KICK_NONE; /* a spinning worker takes them, no wake-up */
    }
    if (spawn && queued > idle + spinners) {
        return KICK_SPAWN;
    }
    return wake ? KICK_WAKE : KICK_NONE;
}

static void
signal_one_locked(ThreadletQueue *q)
{
    TLBD_ASSERT(load_counter(&q->idle_threads) > 0);
    atomic_store(&q->wakes, 1);
    pthread_cond_signal(&q->work_cond);
}

/* Wake an idle worker if the queued items need one (spawn none): how a
 * worker passes a wake on.
 */
static void
wake_one_locked(ThreadletQueue *q)
{
    if (kick_needed(q, 0, false) == KICK_WAKE) {
        signal_one_locked(q);
    }
}

/* Wait for work, and for at most the idle timeout if this worker may leave.
 * NOW is the time or 0.  Returns true on timeout.
 */
static bool
wait_for_work_locked(ThreadletQueue *q, uint64_t now)
{
    unsigned idle = atomic_fetch_add(&q->idle_threads, 1) + 1;
    int err = 0;

    TLBD_ASSERT(idle + load_counter(&q->spinners) <=
                load_counter(&q->cur_threads));
    /* A submit that pushed before the add is seen here; one that pushes
     * after it sees this worker idle and signals under the lock.
     */
    if (!lfstack_is_empty(&q->inbox)) {
        counter_dec(&q->idle_threads);
        return false;
    }
    if (load_counter(&q->cur_threads) > q->min_threads) {
        struct timespec deadline;
        uint64_t ns = (now ? now : tlbd_now_ns()) + q->idle_timeout_ns;

        deadline.tv_sec = (time_t)(ns / 1000000000u);
        deadline.tv_nsec = (long)(ns % 1000000000u);
        err = pthread_cond_timedwait(&q->work_cond, &q->lock, &deadline);
    } else {
        /* It may not leave: no timer.  set_limits broadcasts. */
        err = pthread_cond_wait(&q->work_cond, &q->lock);
    }
    if (err && err != ETIMEDOUT) {
        tlbd_die("pthread_cond_timedwait", err);
    }
    /* Off wakes before looking for items (see the file comment); whoever
     * returns takes the wake, so wakes stays at most idle_threads.
     */
    idle = counter_dec(&q->idle_threads);
    unsigned wakes = load_counter(&q->wakes);
    if (wakes > 0) {
        atomic_store(&q->wakes, wakes - 1);
    }
    TLBD_ASSERT(load_counter(&q->wakes) <= idle);
    return err == ETIMEDOUT;
}

/* Poll the queued counts, unlocked, until one is not 0 or the spin window
 * ends.  Off spinners before the caller looks again: see the file comment.
 */
static void
spin_locked(ThreadletQueue *q)
{
    TlbdSpin spin;
    uint64_t start = tlbd_now_ns();

    atomic_store(&q->spinners, 1);
    q->idle_since_ns = start;
    tlbd_spin_start(&spin, start, start + q->spin_ns);
    tlbd_mutex_unlock(&q->lock);
    while (!atomic_load_explicit(&q->pending, memory_order_relaxed) &&
           !load_counter(&q->fifo_len) && tlbd_spin_step(&spin)) {
    }
    tlbd_mutex_lock(&q->lock);
    atomic_store(&q->spinners, 0);
}

/* Take WORK off the FIFO and run it, with the lock dropped meanwhile. */
static void
run_locked(ThreadletQueue *q, ThreadletWork *work)
{
    uint64_t submit_ns = work->submit_ns;

    unqueue_locked(q, work);
    wake_one_locked(q); /* pass the wake on */
    set_state(work, THREADLET_RUNNING);
    tlbd_mutex_unlock(&q->lock);

    uint64_t waited = submit_ns ? tlbd_now_ns() - submit_ns : 0;
    work->func(work);
    finish(work, THREADLET_DONE);

    tlbd_mutex_lock(&q->lock);
    q->stats.completed++;
    if (submit_ns) {
        q->stats.wait_samples++;
        q->stats.wait_ns_total += waited;
        if (waited > q->stats.wait_ns_max) {
            q->stats.wait_ns_max = waited;
        }
    }
}

/* A worker that timed out leaves if it may and nothing is queued.  Returns
 * true when it has taken itself off cur_threads.
 */
static bool
leave_on_timeout_locked(ThreadletQueue *q)
{
    if (load_counter(&q->cur_threads) <= q->min_threads ||
        !TAILQ_EMPTY(&q->items)) {
        return false;
    }
    counter_dec(&q->cur_threads);
    /* A submit that still counted this worker did not spawn: stay. */
    if (queued_count(q) > 0) {
        atomic_fetch_add(&q->cur_threads, 1);
        return false;
    }
    return true;
}

static void *
worker_main(void *opaque)
{
    ThreadletWorker *self = opaque;
    ThreadletQueue *q = self->queue;
    bool spun = false; /* waited for this item by spinning */
    bool left = false; /* off cur_threads already */
    char name[16];

    snprintf(name, sizeof(name), "tl-%s-%u", q->name, self->id);
    pthread_setname_np(pthread_self(), name);

    tlbd_mutex_lock(&q->lock);
    /* Above max_threads: the limits were lowered; others carry on. */
    while (load_counter(&q->cur_threads) <= load_counter(&q->max_threads)) {
        if (TAILQ_EMPTY(&q->items)) {
            take_inbox_locked(q, false);
        }
        ThreadletWork *work = TAILQ_FIRST(&q->items);
        uint64_t now = 0;

        if (work) {
            q->stats.spin_hits += spun;
            spun = false;
            run_locked(q, work);
        } else if (q->stopping) {
            break;
        } else if (!spun && q->spin_ns && load_counter(&q->spinners) == 0) {
            spun = true;
            spin_locked(q);
        } else {
            /* Sleep.  A spinner's wait began with its spin. */
            if (!spun && q->spin_max_ns) {
                now = tlbd_now_ns();
                q->idle_since_ns = now;
            }
            spun = false;
            if (wait_for_work_locked(q, now) && leave_on_timeout_locked(q)) {
                left = true;
                break;
            }
        }
    }
    if (!left) {
        counter_dec(&q->cur_threads);
    }
    wake_one_locked(q); /* in case a wake was meant for this one */
    TAILQ_REMOVE(&q->workers, self, node);
    TAILQ_INSERT_TAIL(&q->exited, self, node);
    atomic_store_explicit(&q->has_exited, true, memory_order_relaxed);
    pthread_cond_broadcast(&q->stopped_cond);
    tlbd_mutex_unlock(&q->lock);
    return NULL;
}

/* Start one worker.  Returns 0 or -errno. */
static int
spawn_locked(ThreadletQueue *q)
{
    ThreadletWorker *w = calloc(1, sizeof(*w));
    sigset_t all;
    sigset_t old;
    int err;

    if (!w) {
        return -ENOMEM;
    }
    w->queue = q;
    w->id = q->next_id++;
    /* Workers take no asynchronous signals: block all while creating. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        free(w);
        return -err;
    }
    TAILQ_INSERT_TAIL(&q->workers, w, node);
    unsigned cur = atomic_fetch_add(&q->cur_threads, 1) + 1;
    q->stats.spawned++;
    if (cur > q->peak_threads) {
        q->peak_threads = cur;
    }
    return 0;
}

/* Start workers until min_threads run and the queued items need no more.
 * Returns 0 or the first error.
 */
static int
spawn_needed_locked(ThreadletQueue *q)
{
    int err = 0;

    while (!err && (load_counter(&q->cur_threads) < q->min_threads ||
                    kick_needed(q, 0, true) == KICK_SPAWN)) {
        err = spawn_locked(q);
    }
    return err;
}

static bool
limits_valid(int max_threads, int min_threads)
{
    return max_threads >= 1 && min_threads >= 0 && min_threads <= max_threads;
}

int
threadlet_queue_init_named(ThreadletQueue *q, const char *name, int max_threads,
                           int min_threads)
{
    pthread_mutexattr_t mattr;
    pthread_condattr_t attr;
    int err;

    if (!limits_valid(max_threads, min_threads)) {
        return -EINVAL;
    }
    memset(q, 0, sizeof(*q));
    pthread_mutexattr_init(&mattr);
    pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_ADAPTIVE_NP);
    err = pthread_mutex_init(&q->lock, &mattr);
    pthread_mutexattr_destroy(&mattr);
    if (err) {
        return -err;
    }
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->work_cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&q->stopped_cond, NULL);
    TAILQ_INIT(&q->items);
    TAILQ_INIT(&q->workers);
    TAILQ_INIT(&q->exited);
    snprintf(q->name, sizeof(q->name), "%s", name ? name : "q");
    atomic_init(&q->max_threads, (unsigned)max_threads);
    q->min_threads = (unsigned)min_threads;
    q->idle_timeout_ns = THREADLET_DEFAULT_IDLE_MS * 1000000ull;
    q->spin_max_ns = THREADLET_DEFAULT_SPIN_NS;
    tlbd_gate_init(&q->gate);
    lfstack_init(&q->inbox);

    tlbd_mutex_lock(&q->lock);
    err = spawn_needed_locked(q);
    tlbd_mutex_unlock(&q->lock);
    if (err) {
        threadlet_queue_destroy(q, THREADLET_CANCEL);
    }
    return err;
}

/* Spawn or wake a worker for WORK, just queued, as kick_needed says under
 * the lock.  Returns 0, or -errno when no worker exists and none could be
 * spawned: WORK is then taken back.
 */
static int
kick_locked(ThreadletQueue *q, ThreadletWork *work)
{
    Kick kick = kick_needed(q, 0, true);

    TLBD_ASSERT(!q->stopping); /* the gate keeps submits out of destroy */
    if (kick == KICK_SPAWN) {
        int err = spawn_locked(q);
        if (err && load_counter(&q->cur_threads) == 0) {
            /* Nobody would ever run it: hand it back. */
            take_inbox_locked(q, false); /* a QUEUED item is on the FIFO */
            unqueue_locked(q, work);
            q->moved--;
            set_state(work, THREADLET_NEW);
            return err;
        } else if (err) {
            wake_one_locked(q);
        }
    } else if (kick == KICK_WAKE) {
        if (q->spin_max_ns && queued_count(q) == 1) {
            /* How long spinning would have had to last to save this.  Only
             * the first item after the queue ran dry tells.
             */
            tlbd_poll_adapt(&q->spin_ns, tlbd_now_ns() - q->idle_since_ns,
                            q->spin_max_ns);
        }
        signal_one_locked(q);
    }
    return 0;
}

int
threadlet_submit_complete(ThreadletQueue *q, ThreadletWork *work, IOThread *io,
                          void (*complete)(ThreadletWork *work))
{
    int ret = 0;

    work->complete = complete;
    work->iothread = io;
    work->queue = q;
    /* Sampled items read the clock before the push, after which a worker
     * may take them.  Racing submits may take one tick: no matter.
     */
    unsigned tick = atomic_load_explicit(&q->sample_tick, memory_order_relaxed);
    atomic_store_explicit(&q->sample_tick, tick + 1, memory_order_relaxed);
    work->submit_ns = tick % THREADLET_WAIT_SAMPLE == 0 ? tlbd_now_ns() : 0;
    ThreadletState prev = threadlet_work_state(work);
    set_state(work, THREADLET_QUEUED);
    /* Counted before the push: pending never lags the items in the inbox. */
    unsigned pending = atomic_fetch_add(&q->pending, 1) + 1;
    if (lfstack_push(&q->inbox, &work->inbox_node, true) < 0) {
        atomic_fetch_sub(&q->pending, 1);
        set_state(work, prev);
        return -ESHUTDOWN;
    }
    if (kick_needed(q, pending, true) == KICK_NONE &&
        !atomic_load_explicit(&q->has_exited, memory_order_relaxed)) {
        return 0;
    }
    /* Once destroy has closed the gate, the item is its to run or cancel. */
    if (!tlbd_gate_enter(&q->gate)) {
        return 0;
    }
    tlbd_mutex_lock(&q->lock);
    ret = kick_locked(q, work);
    unlock_and_join(q);
    tlbd_gate_leave(&q->gate);
    return ret;
}

int
cancel_threadlet_on_queue(ThreadletQueue *q, ThreadletWork *work)
{
    tlbd_mutex_lock(&q->lock);
    if (work->queue != q || threadlet_work_state(work) != THREADLET_QUEUED) {
        tlbd_mutex_unlock(&q->lock);
        return 1;
    }
    take_inbox_locked(q, false); /* a QUEUED item is on the FIFO now */
    cancel_locked(q, work);
    tlbd_mutex_unlock(&q->lock);

    finish(work, THREADLET_CANCELLED);
    return 0;
}

int
threadlet_queue_set_limits(ThreadletQueue *q, int max_threads, int min_threads)
{
    int err;

    if (!limits_valid(max_threads, min_threads)) {
        return -EINVAL;
    }
    tlbd_mutex_lock(&q->lock);
    atomic_store(&q->max_threads, (unsigned)max_threads);
    q->min_threads = (unsigned)min_threads;
    err = spawn_needed_locked(q); /* raised max: queued work starts now */
    /* Lowered max: idle workers wake, see the surplus and leave. */
    pthread_cond_broadcast(&q->work_cond);
    unlock_and_join(q);
    return err;
}

void
threadlet_queue_set_idle_timeout(ThreadletQueue *q, unsigned idle_ms)
{
    tlbd_mutex_lock(&q->lock);
    q->idle_timeout_ns = idle_ms * 1000000ull;
    pthread_cond_broadcast(&q->work_cond); /* re-arm with the new timeout */
    tlbd_mutex_unlock(&q->lock);
}

int
threadlet_queue_set_spin_ns(ThreadletQueue *q, unsigned spin_ns)
{
    if (spin_ns > THREADLET_MAX_SPIN_NS) {
        return -EINVAL;
    }
    tlbd_mutex_lock(&q->lock);
    q->spin_max_ns = spin_ns;
    if (q->spin_ns > spin_ns) {
        q->spin_ns = spin_ns;
    }
    tlbd_mutex_unlock(&q->lock);
    return 0;
}

void
threadlet_queue_get_stats(ThreadletQueue *q, ThreadletStats *stats)
{
    tlbd_mutex_lock(&q->lock);
    *stats = q->stats;
    stats->queued = queued_count(q);
    stats->submitted = q->moved + atomic_load(&q->pending);
    stats->cur_threads = load_counter(&q->cur_threads);
    stats->idle_threads =
        load_counter(&q->idle_threads) + load_counter(&q->spinners);
    stats->peak_threads = q->peak_threads;
    stats->max_threads = load_counter(&q->max_threads);
    stats->min_threads = q->min_threads;
    tlbd_mutex_unlock(&q->lock);
}

void
threadlet_queue_destroy(ThreadletQueue *q, ThreadletDestroyMode mode)
{
    struct ThreadletWorkList cancelled;
    ThreadletWork *work;

    /* Waits for the submits that lock; later ones find the gate closed. */
    if (!tlbd_gate_close(&q->gate)) {
        return; /* never initialized, or destroyed already */
    }
    TAILQ_INIT(&cancelled);
    tlbd_mutex_lock(&q->lock);
    TLBD_ASSERT(!q->stopping);
    q->stopping = true;
    take_inbox_locked(q, true); /* the last items: pushes fail from now */
    if (mode == THREADLET_CANCEL || load_counter(&q->cur_threads) == 0) {
        while ((work = TAILQ_FIRST(&q->items)) != NULL) {
            cancel_locked(q, work);
            TAILQ_INSERT_TAIL(&cancelled, work, node);
        }
    }
    pthread_cond_broadcast(&q->work_cond);
    while (load_counter(&q->cur_threads) > 0) {
        pthread_cond_wait(&q->stopped_cond, &q->lock);
    }
    TLBD_ASSERT(TAILQ_EMPTY(&q->items) && load_counter(&q->fifo_len) == 0);
    TLBD_ASSERT(load_counter(&q->idle_threads) == 0 &&
                load_counter(&q->spinners) == 0 &&
                load_counter(&q->wakes) == 0);
    unlock_and_join(q);
    while ((work = TAILQ_FIRST(&cancelled)) != NULL) {
        TAILQ_REMOVE(&cancelled, work, node);
        finish(work, THREADLET_CANCELLED);
    }
    pthread_cond_destroy(&q->work_cond);
    pthread_cond_destroy(&q->stopped_cond);
    pthread_mutex_destroy(&q->lock);
}
