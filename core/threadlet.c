/* tlbd: the threadlet pool.
 *
 * Submitting takes no lock: a submit counts its item in q->pending and
 * pushes it onto q->inbox, a lock-free stack (lfstack.h), two atomic
 * read-modify-writes on one cache line.  q->lock guards the rest: the FIFO
 * q->items and its length fifo_len, the workers and their counters, the
 * spin window and the stats.  A worker that finds the FIFO empty takes the
 * whole inbox and appends it reversed, so items run in the order each
 * thread submitted them.  The queued count is pending + fifo_len, and
 * stats.submitted is q->moved (items moved to the FIFO) + pending.  func
 * runs with no lock held.
 *
 * kick_needed() alone decides what queued items need: a new worker while
 * they outnumber the idle and spinning workers (up to max_threads), else
 * the wake-up of one idle worker unless a woken one is still on its way
 * (q->wakes, never above idle_threads), else nothing.  A woken worker that
 * takes an item passes the wake on while items remain, so a burst costs
 * the submitter one futex call.  A worker that waits idle_timeout without
 * work leaves if more than min_threads remain.
 *
 * No lost wake-ups.  The counters kick_needed() reads are atomics written
 * under the lock.  A submit reads them after its push, all sequentially
 * consistent, and locks only when they call for a kick, to decide again
 * under the lock.  Otherwise some worker is bound to see the item, because
 * each worker publishes before it looks:
 *  - a worker about to sleep adds itself to idle_threads, then checks the
 *    inbox once more under the lock and only then waits; a submit that
 *    pushed after the check sees it idle and signals under the lock;
 *  - a spinner takes itself off spinners, then checks the inbox;
 *  - a woken worker takes itself off wakes, then looks for items;
 *  - a worker that times out takes itself off cur_threads, then reads the
 *    queued count, and stays if it is not 0.
 *
 * Spinning: a worker that finds the queue empty may first poll the queued
 * count, unlocked, for the queue's adaptive window q->spin_ns; one spins
 * at a time.  A submit that wakes a worker adapts the window from the time
 * since the latest worker began to wait (q->idle_since_ns).
 *
 * A leaving worker moves its record to the exited list and touches nothing
 * after unlocking; the next submit (it locks when q->has_exited is set),
 * set_limits or destroy joins it.
 *
 * Shutdown: submits hold q->gate (gate.h) while they lock; destroy closes
 * it, which waits for them, then closes the inbox under the lock.  A
 * submit racing destroy either fails its push (-ESHUTDOWN, the item
 * untouched) or has its item run or cancelled like any other.  It may read
 * the queue's atomics after destroy returned: the queue's memory must
 * outlive every call on it.
 *
 * Work state: submit stores QUEUED before the push, a worker RUNNING when
 * it takes the item and DONE after func, cancel CANCELLED; owners read it
 * with acquire.  After DONE the worker touches the item only to post its
 * complete callback, read beforehand.  Cancel and destroy clear
 * work->queue under the lock when they take an item, so that a concurrent
 * cancel of it, which reads QUEUED until finish stores CANCELLED, leaves
 * it alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    return (ThreadletState)atomic_load_explicit(
        (_Atomic int *)&work->state, memory_order_acquire);
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

    if (complete && io) {
        work->complete_task.fn = run_complete;
        set_state(work, state);
        iothread_post(io, &work->complete_task);
    } else {
        set_state(work, state);
        if (complete) {
            complete(work);
        }
    }
}

/* Move the exited workers out, so they can be joined without the lock. */
static void
take_exited_locked(ThreadletQueue *q, WorkerList *out)
{
    TAILQ_INIT(out);
    TAILQ_CONCAT(out, &q->exited, node);
    atomic_store_explicit(&q->has_exited, false, memory_order_relaxed);
}

static void
join_workers(WorkerList *list)
{
    ThreadletWorker *w;
    while ((w = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, w, node);
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

/* The items queued: in the inbox (or about to be) and on the FIFO.
 * Exact for the FIFO under the lock.
 */
static unsigned
queued_count(ThreadletQueue *q)
{
    return atomic_load(&q->pending) + load_counter(&q->fifo_len);
}

/* Append the inbox's items to the FIFO, oldest first, and with CLOSE leave
 * the inbox closed.  The inbox holds them newest first: each goes to the
 * head of a batch, which is then appended.
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
    for (; node; node = node->next) {
        TAILQ_INSERT_HEAD(&batch, container_of(node, ThreadletWork,
                                               inbox_node), node);
        n++;
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

/* The oldest queued item, or NULL. */
static ThreadletWork *
first_item_locked(ThreadletQueue *q)
{
    if (TAILQ_EMPTY(&q->items)) {
        take_inbox_locked(q, false);
    }
    return TAILQ_FIRST(&q->items);
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

/* The one decision on what queued items need, given PENDING (q->pending as
 * the caller read it): KICK_SPAWN while they outnumber the idle and
 * spinning workers, if MAY_SPAWN and max_threads allow; else KICK_WAKE
 * when a worker is idle and no woken one is on its way; else KICK_NONE.
 * It reads only atomics, so that a submit can ask before it locks; under
 * the lock the answer is exact.  fifo_len, which busy workers change all
 * the time, is read only when it can change the answer.
 */
static Kick
kick_needed(ThreadletQueue *q, unsigned pending, bool may_spawn)
{
    unsigned spinners = atomic_load(&q->spinners);
    unsigned idle = atomic_load(&q->idle_threads);
    unsigned queued = pending;

    if (queued <= idle + spinners) {
        queued += load_counter(&q->fifo_len);
    }
    if (queued <= spinners) {
        return KICK_NONE; /* a spinning worker takes them, no wake-up */
    }
    if (may_spawn && queued > idle + spinners &&
        atomic_load(&q->cur_threads) < load_counter(&q->max_threads)) {
        return KICK_SPAWN;
    }
    return idle > 0 && atomic_load(&q->wakes) == 0 ? KICK_WAKE : KICK_NONE;
}

static void
signal_one_locked(ThreadletQueue *q)
{
    TLBD_ASSERT(load_counter(&q->idle_threads) > 0);
    atomic_store(&q->wakes, 1);
    pthread_cond_signal(&q->work_cond);
}

/* Wake an idle worker if the queued items need one; spawn none.  A worker
 * that takes an item passes the wake on this way.
 */
static void
wake_one_locked(ThreadletQueue *q)
{
    if (kick_needed(q, atomic_load(&q->pending), false) == KICK_WAKE) {
        signal_one_locked(q);
    }
}

/* Wait for work, and for at most the idle timeout if this worker may leave.
 * NOW is the time or 0.  Returns true on timeout.
 */
static bool
wait_for_work_locked(ThreadletQueue *q, uint64_t now)
{
    int err = 0;

    unsigned idle = atomic_fetch_add(&q->idle_threads, 1) + 1;
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
    idle = counter_dec(&q->idle_threads);
    /* Off wakes before looking for items: see the file comment.  Whoever
     * returns takes the wake, so wakes stays at most idle_threads.
     */
    unsigned wakes = load_counter(&q->wakes);
    if (wakes > 0) {
        atomic_store(&q->wakes, wakes - 1);
    }
    TLBD_ASSERT(load_counter(&q->wakes) <= idle);
    if (err && err != ETIMEDOUT) {
        tlbd_die("pthread_cond_timedwait", err);
    }
    return err == ETIMEDOUT;
}


/* Poll the queued counts, unlocked, until one is not 0 or DEADLINE
 * passes.
 */
static void
spin_for_work(ThreadletQueue *q, uint64_t start, uint64_t deadline)
{
    TlbdSpin spin;

    tlbd_spin_start(&spin, start, deadline);
    while (!atomic_load_explicit(&q->pending, memory_order_relaxed) &&
           !load_counter(&q->fifo_len) && tlbd_spin_step(&spin)) {
    }
}

/* Run WORK, taken off the queue by a worker holding the lock, which it
 * drops meanwhile.
 */
static void
run_locked(ThreadletQueue *q, ThreadletWork *work)
{
    uint64_t submit_ns = work->submit_ns;

    set_state(work, THREADLET_RUNNING);
    tlbd_mutex_unlock(&q->lock);

    /* Read the clock outside the lock. */
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
    /* A submit that still counted this worker did not spawn for its item:
     * stay for it.
     */
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
    char name[16];

    snprintf(name, sizeof(name), "tl-%s-%u", q->name, self->id);
    pthread_setname_np(pthread_self(), name);

    bool spun = false; /* waited for this item by spinning */

    tlbd_mutex_lock(&q->lock);
    for (;;) {
        ThreadletWork *work;

        if (load_counter(&q->cur_threads) >
            load_counter(&q->max_threads)) {
            /* Limits were lowered; others carry on. */
            counter_dec(&q->cur_threads);
            break;
        }
        work = first_item_locked(q);
        if (!work) {
            uint64_t now = 0;

            if (q->stopping) {
                counter_dec(&q->cur_threads);
                break;
            }
            if (!spun && q->spin_ns && load_counter(&q->spinners) == 0) {
                spun = true;
                atomic_store(&q->spinners, 1);
                uint64_t start = tlbd_now_ns();
                uint64_t deadline = start + q->spin_ns;
                q->idle_since_ns = start;
                tlbd_mutex_unlock(&q->lock);
                spin_for_work(q, start, deadline);
                tlbd_mutex_lock(&q->lock);
                /* Off spinners before the recheck: see the file comment. */
                atomic_store(&q->spinners, 0);
                continue;
            }
            /* Sleep.  A spinner's wait began with its spin. */
            if (!spun && q->spin_max_ns) {
                now = tlbd_now_ns();
                q->idle_since_ns = now;
            }
            spun = false;
            if (wait_for_work_locked(q, now) &&
                leave_on_timeout_locked(q)) {
                break;
            }
            continue;
        }
        if (spun) {
            q->stats.spin_hits++;
            spun = false;
        }
        unqueue_locked(q, work);
        wake_one_locked(q); /* pass the wake on */
        run_locked(q, work);
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

static bool
limits_valid(int max_threads, int min_threads)
{
    return max_threads >= 1 && min_threads >= 0 && min_threads <= max_threads;
}

/* Start workers until MIN_THREADS run.  Returns 0 or the first error. */
static int
spawn_min_locked(ThreadletQueue *q)
{
    while (load_counter(&q->cur_threads) < q->min_threads) {
        int err = spawn_locked(q);
        if (err) {
            return err;
        }
    }
    return 0;
}

int
threadlet_queue_init_named(ThreadletQueue *q, const char *name,
                           int max_threads, int min_threads)
{
    pthread_condattr_t attr;
    int err;

    if (!limits_valid(max_threads, min_threads)) {
        return -EINVAL;
    }
    memset(q, 0, sizeof(*q));
    pthread_mutexattr_t mattr;
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
    err = spawn_min_locked(q);
    tlbd_mutex_unlock(&q->lock);
    if (err) {
        threadlet_queue_destroy(q, THREADLET_CANCEL);
    }
    return err;
}

int
threadlet_queue_init(ThreadletQueue *q, int max_threads, int min_threads)
{
    return threadlet_queue_init_named(q, "q", max_threads, min_threads);
}

/* Spawn or wake a worker for WORK, just queued, as kick_needed finds
 * needed under the lock.  Returns 0, or -errno when no worker exists and
 * none could be spawned: WORK is then taken back.
 */
static int
kick_locked(ThreadletQueue *q, ThreadletWork *work)
{
    Kick kick = kick_needed(q, atomic_load(&q->pending), true);

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
threadlet_submit_complete(ThreadletQueue *q, ThreadletWork *work,
                          IOThread *io, void (*complete)(ThreadletWork *work))
{
    WorkerList exited;
    int ret = 0;

    work->complete = complete;
    work->iothread = io;
    work->queue = q;

    /* Sampled items read the clock before the push: a worker may take the
     * item as soon as it is in the inbox.  Racing submitters may both take
     * one tick; the sampling does not mind.
     */
    unsigned tick = atomic_load_explicit(&q->sample_tick,
                                         memory_order_relaxed);
    atomic_store_explicit(&q->sample_tick, tick + 1, memory_order_relaxed);
    work->submit_ns = tick % THREADLET_WAIT_SAMPLE == 0 ? tlbd_now_ns() : 0;
    ThreadletState prev = threadlet_work_state(work);
    set_state(work, THREADLET_QUEUED);
    /* Counted before the push, so that pending never drops below the items
     * a worker can take.
     */
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
    /* Lock only while destroy lets us: once it has closed the gate, the
     * item is its to run or cancel.
     */
    if (!tlbd_gate_enter(&q->gate)) {
        return 0;
    }
    tlbd_mutex_lock(&q->lock);
    ret = kick_locked(q, work);
    take_exited_locked(q, &exited);
    tlbd_mutex_unlock(&q->lock);
    tlbd_gate_leave(&q->gate);

    join_workers(&exited);
    return ret;
}

int
submit_threadlet_to_queue(ThreadletQueue *q, ThreadletWork *work)
{
    return threadlet_submit_complete(q, work, NULL, NULL);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static ThreadletQueue global_queue;
static int global_err;

int
threadlet_default_max_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    long max = 8 * (n > 0 ? n : 1);
    return (int)(max < 16 ? 16 : max > 64 ? 64 : max);
}

static void
global_init(void)
{
    global_err = threadlet_queue_init_named(
        &global_queue, "global", threadlet_default_max_threads(), 0);
}

ThreadletQueue *
threadlet_global_queue(void)
{
    pthread_once(&global_once, global_init);
    return global_err ? NULL : &global_queue;
}

int
submit_threadlet(ThreadletWork *work)
{
    ThreadletQueue *q = threadlet_global_queue();
    return q ? submit_threadlet_to_queue(q, work) : global_err;
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
    unqueue_locked(q, work);
    /* The state stays QUEUED until finish: a second cancel finds this. */
    work->queue = NULL;
    q->stats.cancelled++;
    tlbd_mutex_unlock(&q->lock);

    finish(work, THREADLET_CANCELLED);
    return 0;
}

int
cancel_threadlet(ThreadletWork *work)
{
    ThreadletQueue *q = threadlet_global_queue();
    return q ? cancel_threadlet_on_queue(q, work) : 1;
}

int
threadlet_queue_set_limits(ThreadletQueue *q, int max_threads,
                           int min_threads)
{
    WorkerList exited;
    int err;

    if (!limits_valid(max_threads, min_threads)) {
        return -EINVAL;
    }
    tlbd_mutex_lock(&q->lock);
    atomic_store(&q->max_threads, (unsigned)max_threads);
    q->min_threads = (unsigned)min_threads;
    err = spawn_min_locked(q);
    /* Raised max: put queued work on new workers at once. */
    while (!err &&
           kick_needed(q, atomic_load(&q->pending), true) == KICK_SPAWN) {
        err = spawn_locked(q);
    }
    /* Lowered max: idle workers wake, see the surplus and leave. */
    pthread_cond_broadcast(&q->work_cond);
    take_exited_locked(q, &exited);
    tlbd_mutex_unlock(&q->lock);

    join_workers(&exited);
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
    TAILQ_HEAD(, ThreadletWork) cancelled;
    WorkerList exited;
    ThreadletWork *work;

    TAILQ_INIT(&cancelled);
    /* Waits for the submits that lock; later ones find the gate closed. */
    if (!tlbd_gate_close(&q->gate)) {
        return; /* never initialized, or destroyed already */
    }
    tlbd_mutex_lock(&q->lock);
    TLBD_ASSERT(!q->stopping);
    q->stopping = true;
    take_inbox_locked(q, true); /* the last items: pushes fail from now */
    if (mode == THREADLET_CANCEL || load_counter(&q->cur_threads) == 0) {
        while ((work = TAILQ_FIRST(&q->items)) != NULL) {
            unqueue_locked(q, work);
            work->queue = NULL; /* as in cancel */
            q->stats.cancelled++;
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
    take_exited_locked(q, &exited);
    tlbd_mutex_unlock(&q->lock);

    join_workers(&exited);
    while ((work = TAILQ_FIRST(&cancelled)) != NULL) {
        TAILQ_REMOVE(&cancelled, work, node);
        finish(work, THREADLET_CANCELLED);
    }
    pthread_cond_destroy(&q->work_cond);
    pthread_cond_destroy(&q->stopped_cond);
    pthread_mutex_destroy(&q->lock);
}
