/* tlbd: the threadlet pool.
 *
 * A queue owns a FIFO of ThreadletWork items and a set of workers.  All queue
 * state is protected by queue->lock; func runs with no lock held.  Workers
 * are spawned on submit while the queued items outnumber the idle workers,
 * up to max_threads; otherwise idle workers are woken one at a time: a
 * submit signals one only when no woken worker is still on its way (q->wakes
 * counts those), and a woken worker that takes an item passes the wake on
 * while items remain.  A burst thus costs the submitter one futex call, not
 * one per item, and wakes no more workers than keep finding work.  q->wakes
 * never exceeds the workers that will return from the wait: each signal is
 * sent while idle_threads exceeds it, and each returning worker takes one
 * off.  A worker that leaves passes any wake on as well.  A
 * worker that waits idle_timeout without work leaves if more than
 * min_threads remain.
 *
 * Spinning: a worker that finds the queue empty may first poll the atomic
 * mirror of the queued count (q->pending) for its adaptive window, unlocked,
 * before it waits on work_cond.  At most one worker spins (q->spinners, under
 * the lock).  A submit that finds no more queued items than spinners neither
 * signals nor spawns: the spinner relocks and rechecks the list before it
 * ever sleeps, and it leaves the spinners count under that same lock, so an
 * item queued while it spins, or just after, is always seen.  The window
 * (q->spin_ns) belongs to the queue, not to a worker, since the worker a
 * signal wakes need not be the one that last went idle: a submit that has
 * to wake a worker adapts it (tlbd_poll_adapt) from the time since the
 * latest worker began to wait (q->idle_since_ns).
 *
 * A leaving worker moves its record to the exited list
 * and touches nothing after unlocking; whoever next submits, changes limits
 * or destroys the queue joins it, so no thread outlives its queue.
 *
 * Work state: submit stores QUEUED, a worker stores RUNNING when it takes the
 * item and DONE after func returns, cancel stores CANCELLED.  Owners read it
 * with threadlet_work_state (acquire), so whatever func wrote before DONE is
 * visible to them.  Once DONE is stored the worker touches the item only to
 * post its complete callback, which it read beforehand.
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

/* Keep the unlocked mirror of the queued count in step. */
static void
queued_changed_locked(ThreadletQueue *q)
{
    atomic_store_explicit(&q->pending, (unsigned)q->stats.queued,
                          memory_order_relaxed);
}

/* Wait for work, and for at most the idle timeout if this worker may leave.
 * NOW is the time or 0.  Returns true on timeout.
 */
static bool
wait_for_work_locked(ThreadletQueue *q, uint64_t now)
{
    int err;

    q->idle_threads++;
    if (q->cur_threads > q->min_threads) {
        struct timespec deadline;
        uint64_t ns = (now ? now : tlbd_now_ns()) + q->idle_timeout_ns;

        deadline.tv_sec = (time_t)(ns / 1000000000u);
        deadline.tv_nsec = (long)(ns % 1000000000u);
        err = pthread_cond_timedwait(&q->work_cond, &q->lock, &deadline);
    } else {
        /* It may not leave: no timer.  set_limits broadcasts. */
        err = pthread_cond_wait(&q->work_cond, &q->lock);
    }
    q->idle_threads--;
    if (q->wakes > 0) {
        q->wakes--;
    }
    if (q->wakes > q->idle_threads) {
        q->wakes = q->idle_threads;
    }
    if (err && err != ETIMEDOUT) {
        tlbd_die("pthread_cond_timedwait", err);
    }
    return err == ETIMEDOUT;
}

/* Wake an idle worker for the queued items that no spinning or woken worker
 * is coming for, unless a woken one is still on its way: that one passes the
 * wake on.  Returns true if it signalled.
 */
static bool
wake_one_locked(ThreadletQueue *q)
{
    if (q->wakes == 0 && q->idle_threads > 0 &&
        q->stats.queued > q->spinners) {
        q->wakes++;
        pthread_cond_signal(&q->work_cond);
        return true;
    }
    return false;
}

/* Poll the queued count, unlocked, until it is not 0 or DEADLINE passes. */
static void
spin_for_work(ThreadletQueue *q, uint64_t start, uint64_t deadline)
{
    TlbdSpin spin;

    tlbd_spin_start(&spin, start, deadline);
    while (!atomic_load_explicit(&q->pending, memory_order_relaxed) &&
           tlbd_spin_step(&spin)) {
    }
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

        if (q->cur_threads > q->max_threads) {
            break; /* limits were lowered; others carry on */
        }
        work = TAILQ_FIRST(&q->items);
        if (!work) {
            uint64_t now = 0;

            if (q->stopping) {
                break;
            }
            if (!spun && q->spin_ns && q->spinners == 0) {
                spun = true;
                q->spinners++;
                uint64_t start = tlbd_now_ns();
                uint64_t deadline = start + q->spin_ns;
                q->idle_since_ns = start;
                tlbd_mutex_unlock(&q->lock);
                spin_for_work(q, start, deadline);
                tlbd_mutex_lock(&q->lock);
                q->spinners--;
                continue; /* recheck the list before sleeping */
            }
            /* Sleep.  A spinner's wait began with its spin. */
            if (!spun && q->spin_max_ns) {
                now = tlbd_now_ns();
                q->idle_since_ns = now;
            }
            spun = false;
            bool timed_out = wait_for_work_locked(q, now);
            if (timed_out && TAILQ_EMPTY(&q->items) &&
                q->cur_threads > q->min_threads) {
                break;
            }
            continue;
        }
        if (spun) {
            q->stats.spin_hits++;
            spun = false;
        }
        TAILQ_REMOVE(&q->items, work, node);
        q->stats.queued--;
        queued_changed_locked(q);
        wake_one_locked(q); /* pass the wake on */
        uint64_t submit_ns = work->submit_ns;
        set_state(work, THREADLET_RUNNING);
        tlbd_mutex_unlock(&q->lock);

        /* Read the clock outside the lock, which every submit contends. */
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
    q->cur_threads--;
    wake_one_locked(q); /* in case a wake was meant for this one */
    TAILQ_REMOVE(&q->workers, self, node);
    TAILQ_INSERT_TAIL(&q->exited, self, node);
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
    q->cur_threads++;
    q->stats.spawned++;
    if (q->cur_threads > q->peak_threads) {
        q->peak_threads = q->cur_threads;
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
    while (q->cur_threads < q->min_threads) {
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
    q->max_threads = (unsigned)max_threads;
    q->min_threads = (unsigned)min_threads;
    q->idle_timeout_ns = THREADLET_DEFAULT_IDLE_MS * 1000000ull;
    q->spin_max_ns = THREADLET_DEFAULT_SPIN_NS;
    atomic_init(&q->pending, 0);
    q->initialized = true;

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

int
threadlet_submit_complete(ThreadletQueue *q, ThreadletWork *work,
                          IOThread *io, void (*complete)(ThreadletWork *work))
{
    WorkerList exited;
    int ret = 0;

    work->complete = complete;
    work->iothread = io;
    work->queue = q;

    tlbd_mutex_lock(&q->lock);
    if (!q->initialized || q->stopping) {
        tlbd_mutex_unlock(&q->lock);
        return -ESHUTDOWN;
    }
    /* Sampled items read the clock here, under the lock: a worker may take
     * the item as soon as it is unlocked.
     */
    work->submit_ns = q->stats.submitted % THREADLET_WAIT_SAMPLE == 0
                          ? tlbd_now_ns()
                          : 0;
    set_state(work, THREADLET_QUEUED);
    TAILQ_INSERT_TAIL(&q->items, work, node);
    q->stats.submitted++;
    q->stats.queued++;
    queued_changed_locked(q);
    if (q->stats.queued <= q->spinners) {
        /* A spinning worker takes it without a wake-up. */
    } else if (q->stats.queued > q->idle_threads + q->spinners &&
               q->cur_threads < q->max_threads) {
        int err = spawn_locked(q);
        if (err && q->cur_threads == 0) {
            /* Nobody would ever run it: hand it back. */
            TAILQ_REMOVE(&q->items, work, node);
            q->stats.submitted--;
            q->stats.queued--;
            queued_changed_locked(q);
            set_state(work, THREADLET_NEW);
            ret = err;
        } else if (err) {
            wake_one_locked(q);
        }
    } else if (q->idle_threads) {
        if (q->spin_max_ns && q->stats.queued == 1) {
            /* How long spinning would have had to last to save this.  Only
             * the first item after the queue ran dry tells.
             */
            tlbd_poll_adapt(&q->spin_ns, tlbd_now_ns() - q->idle_since_ns,
                            q->spin_max_ns);
        }
        wake_one_locked(q);
    }
    take_exited_locked(q, &exited);
    tlbd_mutex_unlock(&q->lock);

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
    TAILQ_REMOVE(&q->items, work, node);
    q->stats.queued--;
    q->stats.cancelled++;
    queued_changed_locked(q);
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
    q->max_threads = (unsigned)max_threads;
    q->min_threads = (unsigned)min_threads;
    err = spawn_min_locked(q);
    /* Raised max: put queued work on new workers at once. */
    while (!err && q->stats.queued > q->idle_threads + q->spinners &&
           q->cur_threads < q->max_threads) {
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
    stats->cur_threads = q->cur_threads;
    stats->idle_threads = q->idle_threads + q->spinners;
    stats->peak_threads = q->peak_threads;
    stats->max_threads = q->max_threads;
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
    tlbd_mutex_lock(&q->lock);
    if (!q->initialized || q->stopping) {
        tlbd_mutex_unlock(&q->lock);
        return;
    }
    q->stopping = true;
    if (mode == THREADLET_CANCEL || q->cur_threads == 0) {
        while ((work = TAILQ_FIRST(&q->items)) != NULL) {
            TAILQ_REMOVE(&q->items, work, node);
            q->stats.queued--;
            q->stats.cancelled++;
            TAILQ_INSERT_TAIL(&cancelled, work, node);
        }
        queued_changed_locked(q);
    }
    pthread_cond_broadcast(&q->work_cond);
    while (q->cur_threads > 0) {
        pthread_cond_wait(&q->stopped_cond, &q->lock);
    }
    take_exited_locked(q, &exited);
    q->initialized = false;
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
