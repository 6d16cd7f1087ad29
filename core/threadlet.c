/* tlbd: the threadlet pool.
 *
 * Submitting takes no lock.  A submit counts its item in q->pending, an
 * atomic, and pushes it onto the queue's inbox, a lock-free LIFO (one
 * compare-and-swap on q->inbox): two atomic read-modify-writes, on one
 * cache line, per item.  Workers hold q->lock, which guards only the
 * consumer side: the FIFO q->items and its length q->fifo_len, the worker
 * lists, the counters of workers, the spin window and the stats.  A worker
 * that finds the FIFO empty takes the whole inbox with one exchange,
 * appends it reversed, so items still run in the order each thread
 * submitted them, and moves its count from pending to fifo_len in one go:
 * per item, workers and submitters share no written cache line.  It
 * reverses the batch with the lock dropped (each item is a cache miss),
 * under q->moving: meanwhile other workers leave the inbox alone, and
 * cancel and destroy wait on moved_cond, so a QUEUED item is always either
 * in the inbox or on the FIFO when they look.  The queued count is
 * pending + fifo_len, and stats.submitted is q->moved (items moved to the
 * FIFO) + pending.  func runs with no lock held.
 *
 * Workers are spawned while the queued items outnumber the idle workers, up
 * to max_threads; otherwise idle workers are woken one at a time: a submit
 * signals one only when no woken worker is still on its way (q->wakes
 * counts those), and a woken worker that takes an item passes the wake on
 * while items remain.  A burst thus costs the submitter one futex call, not
 * one per item, and wakes no more workers than keep finding work.  q->wakes
 * never exceeds the workers that will return from the wait: each signal is
 * sent while idle_threads exceeds it, and each returning worker takes one
 * off.  A worker that leaves passes any wake on as well.  A worker that
 * waits idle_timeout without work leaves if more than min_threads remain.
 *
 * No lost wake-ups.  The counters a submit reads (idle_threads, spinners,
 * wakes, cur_threads, max_threads) are atomics written under the lock, and
 * the submit reads them after its push, all sequentially consistent.  It
 * takes the lock only when it must spawn (queued > idle + spinners and
 * cur_threads < max_threads) or wake (idle > 0, no wake on its way, queued >
 * spinners), and decides again under the lock.  Otherwise some worker is
 * bound to see the item, because each worker publishes before it looks:
 *  - a worker about to sleep adds itself to idle_threads, then, still under
 *    the lock, checks the inbox once more and only then waits on work_cond;
 *    a submit that pushed before that check is seen by it, one that pushed
 *    after sees the idle worker and signals under the lock, which the
 *    waiter holds until it waits;
 *  - a spinner takes itself off spinners, then checks the inbox;
 *  - a worker that finds another one moving the inbox may sleep: the mover
 *    takes an item once the batch is on the FIFO and passes the wake on;
 *  - a woken worker takes itself off wakes, then looks for items, and
 *    passes the wake on if any remain;
 *  - a worker that times out takes itself off cur_threads, then reads the
 *    queued count, and stays if it is not 0 (a submit that saw it in
 *    cur_threads, and so did not spawn, counted its item before).
 * Busy workers look at the inbox whenever their FIFO runs dry.
 *
 * Spinning: a worker that finds the queue empty may first poll the queued
 * count for its adaptive window, unlocked, before it waits on work_cond.
 * At most one worker spins.  A submit that finds no more queued items
 * than spinners neither signals nor spawns: the spinner relocks and
 * rechecks before it ever sleeps.  The window (q->spin_ns) belongs to the
 * queue, not to a worker, since the worker a signal wakes need not be the
 * one that last went idle: a submit that has to wake a worker adapts it
 * (tlbd_poll_adapt) from the time since the latest worker began to wait
 * (q->idle_since_ns).
 *
 * A leaving worker moves its record to the exited list and touches nothing
 * after unlocking; the next submit (which locks when q->has_exited is set),
 * set_limits or destroy joins it, so no thread outlives its queue.
 *
 * Shutdown: the inbox ends in INBOX_EMPTY while it takes pushes; NULL
 * closes it (a zeroed, never initialized queue is closed too).  q->gate
 * holds QUEUE_OPEN and counts the submits that take the lock.  Destroy
 * clears QUEUE_OPEN, waits until no submit holds the gate, then, under the
 * lock, takes the last items out of the inbox and closes it.  A submit
 * racing destroy either fails its push and returns -ESHUTDOWN, the item
 * untouched, or has pushed before the close, and its item is run
 * (THREADLET_DRAIN) or cancelled (THREADLET_CANCEL) like any other; such a
 * submit takes the lock only if it gets through the gate before destroy
 * closes it, so it never locks a destroyed mutex.  It may still read the
 * queue's atomics after destroy returned: the queue's memory must outlive
 * every call on it.
 *
 * Sampling: q->sample_tick picks the items whose queued time is measured.
 * It is a relaxed load and store, not a read-modify-write: submits racing
 * on it may take the same tick, which only shifts the sampling.
 *
 * Work state: submit stores QUEUED before the push, a worker stores RUNNING
 * when it takes the item and DONE after func returns, cancel stores
 * CANCELLED.  Owners read it with threadlet_work_state (acquire), so
 * whatever func wrote before DONE is visible to them.  Once DONE is stored
 * the worker touches the item only to post its complete callback, which it
 * read beforehand.  Cancel first moves the inbox to the FIFO, so a QUEUED
 * item is always found there; an item's own submit and a cancel of it must
 * not race (the item is the submitter's until submit returns).  Cancel and
 * destroy clear work->queue under the lock when they take an item, so that
 * a concurrent cancel of the same item, which still reads QUEUED until
 * finish stores CANCELLED, leaves it alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "threadlet.h"

/* q->gate: set while the queue takes work; each submit that takes the lock
 * adds QUEUE_SUBMIT while it may.
 */
#define QUEUE_OPEN 1u
#define QUEUE_SUBMIT 2u

/* q->inbox when it holds no items and takes pushes, and the end of its
 * list.  NULL means closed: never initialized, or destroy has taken the
 * last items; pushes fail.
 */
static const char inbox_empty;
#define INBOX_EMPTY ((ThreadletWork *)&inbox_empty)

struct ThreadletWorker {
    pthread_t thread;
    ThreadletQueue *queue;
    unsigned id;
    TAILQ_ENTRY(ThreadletWorker) node;
};

typedef TAILQ_HEAD(, ThreadletWorker) WorkerList;

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

/* Push WORK onto the inbox.  Returns false when destroy has closed it. */
static bool
inbox_push(ThreadletQueue *q, ThreadletWork *work)
{
    ThreadletWork *old = atomic_load_explicit(&q->inbox, memory_order_relaxed);
    do {
        if (old == NULL) {
            return false;
        }
        work->inbox_next = old;
    } while (!atomic_compare_exchange_weak_explicit(
        &q->inbox, &old, work, memory_order_seq_cst, memory_order_relaxed));
    return true;
}

/* Whether the inbox holds items (seq_cst: see the file comment). */
static bool
inbox_has_items(ThreadletQueue *q)
{
    ThreadletWork *head = atomic_load(&q->inbox);
    return head != NULL && head != INBOX_EMPTY;
}

/* The items queued: in the inbox (or about to be) and on the FIFO.
 * Exact for the FIFO under the lock.
 */
static unsigned
queued_count(ThreadletQueue *q)
{
    return atomic_load(&q->pending) + load_counter(&q->fifo_len);
}

/* Count N items moved from the inbox to the FIFO. */
static void
count_moved_locked(ThreadletQueue *q, unsigned n)
{
    /* Onto fifo_len before off pending: unlocked readers may count the
     * items twice for a moment, never miss them.
     */
    atomic_store(&q->fifo_len, load_counter(&q->fifo_len) + n);
    atomic_fetch_sub(&q->pending, n);
    q->moved += n;
}

/* Wait until no worker is moving the inbox. */
static void
wait_moved_locked(ThreadletQueue *q)
{
    while (q->moving) {
        q->move_waiters++;
        pthread_cond_wait(&q->moved_cond, &q->lock);
        q->move_waiters--;
    }
}

/* Put the inbox list that starts at WORK onto BATCH, oldest first (the
 * inbox is newest first).  Returns how many items it held.
 */
static unsigned
inbox_to_batch(ThreadletWork *work, struct ThreadletWorkList *batch)
{
    ThreadletWork *next;
    unsigned n = 0;

    TAILQ_INIT(batch);
    for (; work != INBOX_EMPTY; work = next) {
        next = work->inbox_next;
        TAILQ_INSERT_HEAD(batch, work, node);
        n++;
    }
    return n;
}

/* Called by a worker, with the lock held, the FIFO empty and no other
 * worker moving: take the inbox and put its items on the FIFO, oldest
 * first.  Walking the items costs a cache miss each, so the lock is
 * dropped meanwhile; q->moving keeps other workers, cancel and destroy off
 * the inbox until the batch is on the FIFO, so order holds and a QUEUED
 * item is always found.  Returns with the lock held.
 */
static void
move_inbox_locked(ThreadletQueue *q)
{
    struct ThreadletWorkList batch;
    ThreadletWork *work;
    unsigned n;

    q->moving = true;
    work = atomic_exchange(&q->inbox, INBOX_EMPTY);
    tlbd_mutex_unlock(&q->lock);

    n = inbox_to_batch(work, &batch);

    tlbd_mutex_lock(&q->lock);
    TAILQ_CONCAT(&q->items, &batch, node); /* onto an empty FIFO */
    count_moved_locked(q, n);
    q->moving = false;
    if (q->move_waiters) {
        pthread_cond_broadcast(&q->moved_cond);
    }
}

/* Append the items of the inbox to the FIFO, oldest first, and leave
 * EMPTY in it: INBOX_EMPTY, or NULL to close it.
 */
static void
take_inbox_locked(ThreadletQueue *q, ThreadletWork *empty)
{
    struct ThreadletWorkList batch;
    ThreadletWork *work;
    unsigned n;

    wait_moved_locked(q);
    if (!inbox_has_items(q) && empty != NULL) {
        return;
    }
    work = atomic_exchange(&q->inbox, empty);
    if (work == NULL) {
        return; /* closed already */
    }
    n = inbox_to_batch(work, &batch);
    TAILQ_CONCAT(&q->items, &batch, node);
    count_moved_locked(q, n);
}

/* The oldest queued item, or NULL. */
static ThreadletWork *
first_item_locked(ThreadletQueue *q)
{
    ThreadletWork *work = TAILQ_FIRST(&q->items);
    if (!work && !q->moving && inbox_has_items(q)) {
        move_inbox_locked(q);
        work = TAILQ_FIRST(&q->items);
    }
    return work;
}

/* Take WORK, queued on Q, off the FIFO and the queued count. */
static void
unqueue_locked(ThreadletQueue *q, ThreadletWork *work)
{
    TAILQ_REMOVE(&q->items, work, node);
    atomic_store_explicit(&q->fifo_len, load_counter(&q->fifo_len) - 1,
                          memory_order_relaxed);
}

/* Wait for work, and for at most the idle timeout if this worker may leave.
 * NOW is the time or 0.  Returns true on timeout.
 */
static bool
wait_for_work_locked(ThreadletQueue *q, uint64_t now)
{
    int err = 0;

    atomic_fetch_add(&q->idle_threads, 1);
    /* A submit that pushed before the add is seen here; one that pushes
     * after it sees this worker idle and signals under the lock.
     */
    if (inbox_has_items(q) && !q->moving) {
        atomic_fetch_sub(&q->idle_threads, 1);
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
    unsigned idle = atomic_fetch_sub(&q->idle_threads, 1) - 1;
    unsigned wakes = load_counter(&q->wakes);
    if (wakes > 0) {
        wakes--;
    }
    if (wakes > idle) {
        wakes = idle;
    }
    /* Off wakes before looking for items: see the file comment. */
    atomic_store(&q->wakes, wakes);
    if (err && err != ETIMEDOUT) {
        tlbd_die("pthread_cond_timedwait", err);
    }
    return err == ETIMEDOUT;
}

/* Wake an idle worker for the queued items that no spinning or woken worker
 * is coming for, unless a woken one is still on its way: that one passes the
 * wake on.
 */
static void
wake_one_locked(ThreadletQueue *q)
{
    unsigned idle = load_counter(&q->idle_threads);
    unsigned wakes = load_counter(&q->wakes);

    if (wakes == 0 && idle > 0 &&
        queued_count(q) > load_counter(&q->spinners)) {
        atomic_store(&q->wakes, 1);
        pthread_cond_signal(&q->work_cond);
    }
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
    atomic_fetch_sub(&q->cur_threads, 1);
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
            atomic_fetch_sub(&q->cur_threads, 1);
            break;
        }
        work = first_item_locked(q);
        if (!work) {
            uint64_t now = 0;

            if (q->stopping) {
                atomic_fetch_sub(&q->cur_threads, 1);
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
    sigset_t all, old;
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
    pthread_cond_init(&q->moved_cond, NULL);
    TAILQ_INIT(&q->items);
    TAILQ_INIT(&q->workers);
    TAILQ_INIT(&q->exited);
    snprintf(q->name, sizeof(q->name), "%s", name ? name : "q");
    atomic_init(&q->max_threads, (unsigned)max_threads);
    q->min_threads = (unsigned)min_threads;
    q->idle_timeout_ns = THREADLET_DEFAULT_IDLE_MS * 1000000ull;
    q->spin_max_ns = THREADLET_DEFAULT_SPIN_NS;
    atomic_init(&q->gate, QUEUE_OPEN);
    atomic_init(&q->inbox, INBOX_EMPTY);

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

/* Whether a submit that made QUEUED items queued must spawn or wake a
 * worker, judged without the lock.  False means some worker is bound to
 * see the items: see the file comment.
 */
static bool
must_kick(ThreadletQueue *q, unsigned pending)
{
    unsigned spinners = atomic_load(&q->spinners);
    unsigned idle = atomic_load(&q->idle_threads);

    if (idle == 0 && spinners == 0) {
        /* Spawn, or leave it to the busy workers. */
        return atomic_load(&q->cur_threads) < load_counter(&q->max_threads);
    }
    /* The FIFO's length only now: busy workers change it all the time. */
    unsigned queued = pending + load_counter(&q->fifo_len);
    if (queued <= spinners) {
        return false;
    }
    if (queued > idle + spinners &&
        atomic_load(&q->cur_threads) < load_counter(&q->max_threads)) {
        return true;
    }
    return idle > 0 && atomic_load(&q->wakes) == 0;
}

/* Spawn or wake a worker for WORK, just queued, as must_kick found needed.
 * Returns 0, or -errno when no worker exists and none could be spawned:
 * WORK is then taken back.
 */
static int
kick_locked(ThreadletQueue *q, ThreadletWork *work)
{
    unsigned queued = queued_count(q);
    unsigned spinners = load_counter(&q->spinners);
    unsigned idle = load_counter(&q->idle_threads);

    if (queued <= spinners) {
        /* A spinning worker takes it without a wake-up. */
    } else if (queued > idle + spinners &&
               load_counter(&q->cur_threads) <
                   load_counter(&q->max_threads)) {
        int err = spawn_locked(q);
        if (err && load_counter(&q->cur_threads) == 0) {
            /* Nobody would ever run it: hand it back. */
            take_inbox_locked(q, INBOX_EMPTY);
            unqueue_locked(q, work);
            q->moved--;
            set_state(work, THREADLET_NEW);
            return err;
        } else if (err) {
            wake_one_locked(q);
        }
    } else if (idle) {
        if (q->spin_max_ns && queued == 1) {
            /* How long spinning would have had to last to save this.  Only
             * the first item after the queue ran dry tells.
             */
            tlbd_poll_adapt(&q->spin_ns, tlbd_now_ns() - q->idle_since_ns,
                            q->spin_max_ns);
        }
        wake_one_locked(q);
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
    if (!inbox_push(q, work)) {
        atomic_fetch_sub(&q->pending, 1);
        set_state(work, prev);
        return -ESHUTDOWN;
    }
    if (!must_kick(q, pending) &&
        !atomic_load_explicit(&q->has_exited, memory_order_relaxed)) {
        return 0;
    }
    /* Take the lock only while destroy lets us: once it has closed the
     * gate, the item is its to run or cancel.
     */
    if (!(atomic_fetch_add(&q->gate, QUEUE_SUBMIT) & QUEUE_OPEN)) {
        atomic_fetch_sub(&q->gate, QUEUE_SUBMIT);
        return 0;
    }
    tlbd_mutex_lock(&q->lock);
    ret = kick_locked(q, work);
    take_exited_locked(q, &exited);
    tlbd_mutex_unlock(&q->lock);
    atomic_fetch_sub_explicit(&q->gate, QUEUE_SUBMIT, memory_order_release);

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
    wait_moved_locked(q);
    if (work->queue != q || threadlet_work_state(work) != THREADLET_QUEUED) {
        tlbd_mutex_unlock(&q->lock);
        return 1;
    }
    take_inbox_locked(q, INBOX_EMPTY); /* a QUEUED item is in the FIFO now */
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
           queued_count(q) > load_counter(&q->idle_threads) +
                                  load_counter(&q->spinners) &&
           load_counter(&q->cur_threads) < (unsigned)max_threads) {
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
    if (!(atomic_fetch_and(&q->gate, ~QUEUE_OPEN) & QUEUE_OPEN)) {
        return; /* never initialized, or destroyed already */
    }
    /* Let the submits that lock finish; later ones see the gate closed. */
    while (atomic_load(&q->gate) != 0) {
        sched_yield();
    }
    tlbd_mutex_lock(&q->lock);
    q->stopping = true;
    /* The last items: pushes fail from now on. */
    take_inbox_locked(q, NULL);
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
    take_exited_locked(q, &exited);
    tlbd_mutex_unlock(&q->lock);

    join_workers(&exited);
    while ((work = TAILQ_FIRST(&cancelled)) != NULL) {
        TAILQ_REMOVE(&cancelled, work, node);
        finish(work, THREADLET_CANCELLED);
    }
    pthread_cond_destroy(&q->work_cond);
    pthread_cond_destroy(&q->stopped_cond);
    pthread_cond_destroy(&q->moved_cond);
    pthread_mutex_destroy(&q->lock);
}
