/* tlbd: unit tests of the threadlet pool (core/threadlet.c). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "iothread.h"
#include "threadlet.h"
#include "threadlet-spin.h"

typedef struct Item {
    ThreadletWork work;
    int index;
    sem_t *gate; /* Can be NULL: func waits on it. */
    unsigned sleep_us;
    atomic_bool *hold; /* Can be NULL: func waits until it is true. */
    atomic_int ran;
    atomic_int completed;
    atomic_bool on_iothread;
    pid_t tid;
} Item;

static atomic_int order_next;
static int order[1000];

static void
item_func(ThreadletWork *work)
{
    Item *it = container_of(work, Item, work);
    it->tid = (pid_t)syscall(SYS_gettid);
    if (it->gate) {
        sem_wait(it->gate);
    }
    while (it->hold && !atomic_load(it->hold)) {
        usleep(100);
    }
    if (it->sleep_us) {
        usleep(it->sleep_us);
    }
    atomic_fetch_add(&it->ran, 1);
}

static void
order_func(ThreadletWork *work)
{
    Item *it = container_of(work, Item, work);
    order[atomic_fetch_add(&order_next, 1)] = it->index;
}

static void
wait_state(Item *it, ThreadletState want)
{
    for (int i = 0; i < 10000 && threadlet_work_state(&it->work) != want; i++) {
        usleep(1000);
    }
    assert_int_equal(threadlet_work_state(&it->work), want);
}

static void
wait_threads(ThreadletQueue *q, unsigned want)
{
    ThreadletStats st;
    for (int i = 0; i < 1000; i++) {
        threadlet_queue_get_stats(q, &st);
        if (st.cur_threads == want) {
            break;
        }
        usleep(10000);
    }
    assert_int_equal(st.cur_threads, want);
}

static void
test_fifo_one_worker(void **state)
{
    ThreadletQueue q;
    Item *items = calloc(1000, sizeof(*items));
    sem_t gate;

    sem_init(&gate, 0, 0);
    assert_int_equal(threadlet_queue_init(&q, 1, 0), 0);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, spin_of(state)), 0);
    /* Hold the only worker so that all 1000 are queued behind it. */
    Item blocker = { .work.func = item_func, .gate = &gate };
    assert_int_equal(submit_threadlet_to_queue(&q, &blocker.work), 0);
    atomic_store(&order_next, 0);
    for (int i = 0; i < 1000; i++) {
        items[i].index = i;
        items[i].work.func = order_func;
        assert_int_equal(submit_threadlet_to_queue(&q, &items[i].work), 0);
    }
    sem_post(&gate);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    assert_int_equal(atomic_load(&order_next), 1000);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(order[i], i);
    }
    sem_destroy(&gate);
    free(items);
}

static void
test_burst_spawns_to_max(void **state)
{
    (void)state;
    enum { N = 1000, MAX = 8 };
    ThreadletQueue q;
    ThreadletStats st;
    Item *items = calloc(N, sizeof(*items));
    pid_t tids[N];
    int distinct = 0;
    atomic_bool go = false;

    assert_int_equal(threadlet_queue_init(&q, MAX, 0), 0);
    for (int i = 0; i < N; i++) {
        items[i].work.func = item_func;
        items[i].sleep_us = 200;
        items[i].hold = &go; /* nobody goes idle while we submit */
        assert_int_equal(submit_threadlet_to_queue(&q, &items[i].work), 0);
    }
    atomic_store(&go, true);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&items[i].ran), 1);
        int j;
        for (j = 0; j < distinct && tids[j] != items[i].tid; j++) {
        }
        if (j == distinct) {
            tids[distinct++] = items[i].tid;
        }
    }
    assert_int_equal(distinct, MAX);
    (void)st;
    free(items);
}

static void
test_peak_and_spawned(void **state)
{
    (void)state;
    ThreadletQueue q;
    ThreadletStats st;
    Item *items = calloc(400, sizeof(*items));
    atomic_bool go = false;

    assert_int_equal(threadlet_queue_init(&q, 4, 0), 0);
    for (int i = 0; i < 400; i++) {
        items[i].work.func = item_func;
        items[i].sleep_us = 100;
        items[i].hold = &go;
        assert_int_equal(submit_threadlet_to_queue(&q, &items[i].work), 0);
    }
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.peak_threads, 4);
    assert_int_equal(st.spawned, 4);
    assert_true(st.cur_threads <= 4);
    atomic_store(&go, true);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    free(items);
}

static void
test_idle_shrink_to_min(void **state)
{
    (void)state;
    ThreadletQueue q;
    ThreadletStats st;
    Item items[64];
    atomic_bool go = false;

    memset(items, 0, sizeof(items));
    assert_int_equal(threadlet_queue_init(&q, 8, 2), 0);
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.cur_threads, 2); /* min kept warm from the start */
    threadlet_queue_set_idle_timeout(&q, 50);
    for (int i = 0; i < 64; i++) {
        items[i].work.func = item_func;
        items[i].sleep_us = 2000;
        items[i].hold = &go;
        assert_int_equal(submit_threadlet_to_queue(&q, &items[i].work), 0);
    }
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.peak_threads, 8);
    atomic_store(&go, true);
    for (int i = 0; i < 64; i++) {
        wait_state(&items[i], THREADLET_DONE);
    }
    wait_threads(&q, 2);
    /* and stays there */
    usleep(200000);
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.cur_threads, 2);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
}

static void
test_cancel_states(void **state)
{
    (void)state;
    ThreadletQueue q;
    ThreadletStats st;
    sem_t gate;
    Item a = { .work.func = item_func, .gate = &gate };
    Item b = { .work.func = item_func };
    Item never = { .work.func = item_func };

    sem_init(&gate, 0, 0);
    assert_int_equal(threadlet_queue_init(&q, 1, 0), 0);
    assert_int_equal(cancel_threadlet_on_queue(&q, &never.work), 1);
    assert_int_equal(threadlet_work_state(&never.work), THREADLET_NEW);

    assert_int_equal(submit_threadlet_to_queue(&q, &a.work), 0);
    wait_state(&a, THREADLET_RUNNING);
    assert_int_equal(submit_threadlet_to_queue(&q, &b.work), 0);
    assert_int_equal(threadlet_work_state(&b.work), THREADLET_QUEUED);

    assert_int_equal(cancel_threadlet_on_queue(&q, &b.work), 0);
    assert_int_equal(threadlet_work_state(&b.work), THREADLET_CANCELLED);
    assert_int_equal(cancel_threadlet_on_queue(&q, &b.work), 1);

    assert_int_equal(cancel_threadlet_on_queue(&q, &a.work), 1);
    assert_int_equal(cancel_threadlet(&a.work), 1); /* not on global */
    assert_int_equal(threadlet_work_state(&a.work), THREADLET_RUNNING);
    sem_post(&gate);
    wait_state(&a, THREADLET_DONE);
    assert_int_equal(cancel_threadlet_on_queue(&q, &a.work), 1);
    assert_int_equal(threadlet_work_state(&a.work), THREADLET_DONE);

    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.submitted, 2);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.queued, 0);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    assert_int_equal(atomic_load(&a.ran), 1);
    assert_int_equal(atomic_load(&b.ran), 0);
    sem_destroy(&gate);
}

static void
destroy_with_work(ThreadletDestroyMode mode)
{
    enum { N = 50 };
    ThreadletQueue q;
    sem_t gate;
    Item running[2];
    Item queued[N];

    memset(running, 0, sizeof(running));
    memset(queued, 0, sizeof(queued));
    sem_init(&gate, 0, 0);
    assert_int_equal(threadlet_queue_init(&q, 2, 0), 0);
    for (int i = 0; i < 2; i++) {
        running[i].work.func = item_func;
        running[i].gate = &gate;
        assert_int_equal(submit_threadlet_to_queue(&q, &running[i].work), 0);
        wait_state(&running[i], THREADLET_RUNNING);
    }
    for (int i = 0; i < N; i++) {
        queued[i].work.func = item_func;
        assert_int_equal(submit_threadlet_to_queue(&q, &queued[i].work), 0);
    }
    /* Release the running items a little after destroy starts waiting. */
    sem_post(&gate);
    usleep(20000);
    sem_post(&gate);
    threadlet_queue_destroy(&q, mode);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(atomic_load(&running[i].ran), 1);
        assert_int_equal(threadlet_work_state(&running[i].work),
                         THREADLET_DONE);
    }
    for (int i = 0; i < N; i++) {
        if (mode == THREADLET_DRAIN) {
            assert_int_equal(atomic_load(&queued[i].ran), 1);
            assert_int_equal(threadlet_work_state(&queued[i].work),
                             THREADLET_DONE);
        } else {
            /* The gate was posted once before destroy: a worker may have
             * started some queued items, never more than ran.
             */
            ThreadletState s = threadlet_work_state(&queued[i].work);
            assert_true(s == THREADLET_DONE || s == THREADLET_CANCELLED);
            assert_int_equal(atomic_load(&queued[i].ran),
                             s == THREADLET_DONE ? 1 : 0);
        }
    }
    sem_destroy(&gate);
}

static void
test_destroy_drain(void **state)
{
    (void)state;
    destroy_with_work(THREADLET_DRAIN);
}

static void
test_destroy_cancel(void **state)
{
    (void)state;
    destroy_with_work(THREADLET_CANCEL);
}

static void
test_submit_after_stop(void **state)
{
    (void)state;
    ThreadletQueue q;
    Item it = { .work.func = item_func };

    assert_int_equal(threadlet_queue_init(&q, 1, 0), 0);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    /* The queue can be initialized again and used. */
    assert_int_equal(threadlet_queue_init(&q, 2, 1), 0);
    assert_int_equal(submit_threadlet_to_queue(&q, &it.work), 0);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    assert_int_equal(atomic_load(&it.ran), 1);
}

static void
test_bad_limits(void **state)
{
    (void)state;
    ThreadletQueue q;
    assert_int_equal(threadlet_queue_init(&q, 0, 0), -EINVAL);
    assert_int_equal(threadlet_queue_init(&q, 2, 3), -EINVAL);
    assert_int_equal(threadlet_queue_init(&q, 2, -1), -EINVAL);
    assert_int_equal(threadlet_queue_init(&q, 2, 1), 0);
    assert_int_equal(threadlet_queue_set_limits(&q, 1, 2), -EINVAL);
    assert_int_equal(threadlet_queue_set_limits(&q, 0, 0), -EINVAL);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
}

/* Completions: run on the IOThread's thread, once each, cancelled too. */
typedef struct Counter {
    atomic_int completions;
    atomic_int wrong_thread;
    IOThread *io;
} Counter;
static Counter counter;

static void
item_complete(ThreadletWork *work)
{
    Item *it = container_of(work, Item, work);
    if (!iothread_is_current(counter.io)) {
        atomic_fetch_add(&counter.wrong_thread, 1);
    }
    atomic_fetch_add(&it->completed, 1);
    atomic_fetch_add(&counter.completions, 1);
}

static void
test_completion_on_iothread(void **state)
{
    (void)state;
    enum { N = 2000 };
    ThreadletQueue q;
    IOThread *io;
    Item *items = calloc(N, sizeof(*items));
    sem_t gate;
    int cancelled = 0;

    sem_init(&gate, 0, 0);
    assert_int_equal(iothread_new("test", &io), 0);
    assert_int_equal(iothread_start(io), 0);
    counter.io = io;
    atomic_store(&counter.completions, 0);
    assert_int_equal(threadlet_queue_init(&q, 2, 0), 0);
    for (int i = 0; i < N; i++) {
        items[i].work.func = item_func;
        items[i].gate = i < 2 ? &gate : NULL;
        assert_int_equal(
            threadlet_submit_complete(&q, &items[i].work, io, item_complete),
            0);
    }
    /* Cancel every third item that is still queued. */
    for (int i = 2; i < N; i += 3) {
        if (cancel_threadlet_on_queue(&q, &items[i].work) == 0) {
            cancelled++;
        }
    }
    assert_true(cancelled > 0);
    sem_post(&gate);
    sem_post(&gate);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    iothread_stop(io); /* runs every posted completion before returning */
    assert_int_equal(atomic_load(&counter.completions), N);
    assert_int_equal(atomic_load(&counter.wrong_thread), 0);
    int ran = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&items[i].completed), 1);
        ran += atomic_load(&items[i].ran);
    }
    assert_int_equal(ran + cancelled, N);
    iothread_free(io);
    sem_destroy(&gate);
    free(items);
}

/* 8 submitting threads x 100,000 items, every counter checked. */
enum { SUBMITTERS = 8, PER_SUBMITTER = 100000 };

typedef struct Tiny {
    ThreadletWork work;
    atomic_int ran;
} Tiny;

static atomic_int tiny_ran_total;
static atomic_int tiny_completed;

static void
tiny_func(ThreadletWork *work)
{
    Tiny *t = container_of(work, Tiny, work);
    atomic_fetch_add_explicit(&t->ran, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&tiny_ran_total, 1, memory_order_relaxed);
}

static void
tiny_complete(ThreadletWork *work)
{
    (void)work;
    atomic_fetch_add_explicit(&tiny_completed, 1, memory_order_relaxed);
}

typedef struct Submitter {
    pthread_t thread;
    ThreadletQueue *q;
    IOThread *io;
    Tiny *items;
} Submitter;

static void *
submitter_main(void *opaque)
{
    Submitter *s = opaque;
    for (int i = 0; i < PER_SUBMITTER; i++) {
        s->items[i].work.func = tiny_func;
        if (threadlet_submit_complete(s->q, &s->items[i].work, s->io,
                                      tiny_complete) != 0) {
            abort();
        }
    }
    return NULL;
}

static void
test_many_submitters(void **state)
{
    ThreadletQueue q;
    ThreadletStats st;
    IOThreadStats ist;
    IOThread *io;
    Submitter subs[SUBMITTERS];

    atomic_store(&tiny_ran_total, 0);
    atomic_store(&tiny_completed, 0);
    assert_int_equal(iothread_new("many", &io), 0);
    assert_int_equal(iothread_set_poll_max_ns(io, spin_of(state)), 0);
    assert_int_equal(iothread_start(io), 0);
    assert_int_equal(threadlet_queue_init(&q, 4, 0), 0);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, spin_of(state)), 0);
    for (int i = 0; i < SUBMITTERS; i++) {
        subs[i].q = &q;
        subs[i].io = io;
        subs[i].items = calloc(PER_SUBMITTER, sizeof(Tiny));
        assert_non_null(subs[i].items);
        assert_int_equal(
            pthread_create(&subs[i].thread, NULL, submitter_main, &subs[i]), 0);
    }
    for (int i = 0; i < SUBMITTERS; i++) {
        pthread_join(subs[i].thread, NULL);
    }
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.submitted, SUBMITTERS * PER_SUBMITTER);
    assert_true(st.peak_threads <= 4);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    iothread_stop(io);

    assert_int_equal(atomic_load(&tiny_ran_total), SUBMITTERS * PER_SUBMITTER);
    assert_int_equal(atomic_load(&tiny_completed), SUBMITTERS * PER_SUBMITTER);
    for (int i = 0; i < SUBMITTERS; i++) {
        for (int j = 0; j < PER_SUBMITTER; j++) {
            assert_int_equal(atomic_load(&subs[i].items[j].ran), 1);
            assert_int_equal(threadlet_work_state(&subs[i].items[j].work),
                             THREADLET_DONE);
        }
        free(subs[i].items);
    }
    iothread_get_stats(io, &ist);
    assert_true(ist.posted >= (uint64_t)SUBMITTERS * PER_SUBMITTER);
    iothread_free(io);
}

static void
test_stats_after_drain(void **state)
{
    (void)state;
    ThreadletQueue q;
    ThreadletStats st;
    Item items[100];

    memset(items, 0, sizeof(items));
    assert_int_equal(threadlet_queue_init(&q, 3, 0), 0);
    for (int i = 0; i < 100; i++) {
        items[i].work.func = item_func;
        items[i].sleep_us = 100;
        assert_int_equal(submit_threadlet_to_queue(&q, &items[i].work), 0);
    }
    for (int i = 0; i < 100; i++) {
        wait_state(&items[i], THREADLET_DONE);
    }
    /* completed is counted just after DONE is stored; give it a moment */
    for (int i = 0; i < 1000; i++) {
        threadlet_queue_get_stats(&q, &st);
        if (st.completed == 100) {
            break;
        }
        usleep(1000);
    }
    assert_int_equal(st.submitted, 100);
    assert_int_equal(st.completed, 100);
    assert_int_equal(st.cancelled, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.max_threads, 3);
    /* Items 0 and 64 were timed.  Item 64 waited behind 64 items of at least
     * 100 us each on 3 workers: over 2 ms, so over 1 ms whatever the load.
     */
    assert_int_equal(st.wait_samples,
                     (100 + THREADLET_WAIT_SAMPLE - 1) / THREADLET_WAIT_SAMPLE);
    assert_true(st.wait_ns_max >= 1000000);
    assert_true(st.wait_ns_total >= st.wait_ns_max);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
}

static void
test_set_limits_while_busy(void **state)
{
    (void)state;
    enum { N = 600 };
    ThreadletQueue q;
    ThreadletStats st;
    Item *items = calloc(N, sizeof(*items));
    atomic_bool go = false;

    assert_int_equal(threadlet_queue_init(&q, 2, 0), 0);
    threadlet_queue_set_idle_timeout(&q, 30);
    for (int i = 0; i < N; i++) {
        items[i].work.func = item_func;
        items[i].sleep_us = 1000;
        items[i].hold = &go; /* all stay queued until the limits are up */
        assert_int_equal(submit_threadlet_to_queue(&q, &items[i].work), 0);
    }
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.peak_threads, 2);

    /* Raise max while 500+ items wait: new workers start at once. */
    assert_int_equal(threadlet_queue_set_limits(&q, 6, 0), 0);
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.cur_threads, 6);
    assert_int_equal(st.peak_threads, 6);

    /* Lower max while busy: the surplus leaves, the work still finishes. */
    atomic_store(&go, true);
    assert_int_equal(threadlet_queue_set_limits(&q, 1, 0), 0);
    wait_threads(&q, 1);

    /* Raise min: started at once, kept after the idle timeout. */
    assert_int_equal(threadlet_queue_set_limits(&q, 3, 3), 0);
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.cur_threads, 3);
    for (int i = 0; i < N; i++) {
        wait_state(&items[i], THREADLET_DONE);
    }
    usleep(100000);
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.cur_threads, 3);
    assert_int_equal(threadlet_queue_set_limits(&q, 3, 0), 0);
    wait_threads(&q, 0);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&items[i].ran), 1);
    }
    free(items);
}

/* A worker may submit more work: each item submits the next one.  (An item
 * is never resubmitted before it is done: the pool owns it until then.)
 */
enum { CHAIN = 1000 };

typedef struct Chain {
    ThreadletWork work;
    ThreadletQueue *q;
    struct Chain *next;
    atomic_int *done;
} Chain;

static void
chain_func(ThreadletWork *work)
{
    Chain *c = container_of(work, Chain, work);
    if (c->next) {
        assert_int_equal(submit_threadlet_to_queue(c->q, &c->next->work), 0);
    }
    atomic_fetch_add(c->done, 1);
}

static void
test_submit_from_worker(void **state)
{
    (void)state;
    ThreadletQueue q;
    atomic_int done = 0;
    Chain *chain = calloc(CHAIN, sizeof(*chain));

    for (int i = 0; i < CHAIN; i++) {
        chain[i].work.func = chain_func;
        chain[i].q = &q;
        chain[i].next = i + 1 < CHAIN ? &chain[i + 1] : NULL;
        chain[i].done = &done;
    }
    assert_int_equal(threadlet_queue_init(&q, 2, 0), 0);
    assert_int_equal(submit_threadlet_to_queue(&q, &chain[0].work), 0);
    for (int i = 0; i < 5000 && atomic_load(&done) < CHAIN; i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&done), CHAIN);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    free(chain);
}

/* One item in flight at a time: the test thread submits the next as soon
 * as it sees the last one done, which is when a spinning worker is polling
 * the queue.  With spinning on, some items must be taken by the spinner
 * (spin_hits); with it off, none.  Either way every item runs once.
 */
static void
test_spin_ping_pong(void **state)
{
    enum { MIN_ROUNDS = 500, MAX_ROUNDS = 20000 };
    unsigned spin = spin_of(state);
    ThreadletQueue q;
    ThreadletStats st;
    Item item;
    int rounds = 0;

    assert_int_equal(threadlet_queue_init(&q, 2, 2), 0);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, spin), 0);
    memset(&item, 0, sizeof(item));
    do {
        item.work.func = item_func;
        assert_int_equal(submit_threadlet_to_queue(&q, &item.work), 0);
        while (threadlet_work_state(&item.work) != THREADLET_DONE) {
            sched_yield();
        }
        rounds++;
        threadlet_queue_get_stats(&q, &st);
    } while (rounds < MIN_ROUNDS ||
             (spin && st.spin_hits == 0 && rounds < MAX_ROUNDS));
    /* completed is counted just after DONE is stored */
    for (int i = 0; i < 1000 && st.completed < (uint64_t)rounds; i++) {
        usleep(1000);
        threadlet_queue_get_stats(&q, &st);
    }
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    assert_int_equal(atomic_load(&item.ran), rounds);
    assert_int_equal(st.submitted, rounds);
    assert_int_equal(st.completed, rounds);
    if (spin) {
        assert_true(st.spin_hits > 0);
    } else {
        assert_int_equal(st.spin_hits, 0);
    }
    assert_true(st.spin_hits <= st.completed);
}

/* Wakes are passed on from worker to worker: a burst of items that each
 * wait for all the others must get every idle worker running.  For the
 * burst to be queued before the first woken worker runs, the workers get
 * the lowest priority (nice 19, inherited from the thread that starts them)
 * so that they do not preempt the submitting thread.
 */
enum { MEET = 8 };
static atomic_int met_arrived;
static atomic_int met_all;

static void
meet_func(ThreadletWork *work)
{
    (void)work;
    atomic_fetch_add(&met_arrived, 1);
    /* Up to 10 s: far longer than waking 4 threads takes. */
    for (int i = 0; i < 100000 && atomic_load(&met_arrived) < MEET; i++) {
        usleep(100);
    }
    if (atomic_load(&met_arrived) >= MEET) {
        atomic_fetch_add(&met_all, 1);
    }
}

typedef struct NiceInit {
    ThreadletQueue *q;
    int err;
} NiceInit;

static void *
nice_init_main(void *opaque)
{
    NiceInit *ni = opaque;
    /* Lowering one's own priority needs no privilege. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    ni->err = threadlet_queue_init(ni->q, MEET, MEET);
    return NULL;
}

static void
test_wakes_reach_every_worker(void **state)
{
    ThreadletQueue q;
    ThreadletWork works[MEET];
    NiceInit ni = { .q = &q };
    pthread_t thread;

    for (int round = 0; round < 3; round++) {
        atomic_store(&met_arrived, 0);
        atomic_store(&met_all, 0);
        /* All workers started and idle before the burst. */
        assert_int_equal(pthread_create(&thread, NULL, nice_init_main, &ni), 0);
        pthread_join(thread, NULL);
        assert_int_equal(ni.err, 0);
        assert_int_equal(threadlet_queue_set_spin_ns(&q, spin_of(state)), 0);
        for (int i = 0; i < 1000; i++) {
            ThreadletStats st;
            threadlet_queue_get_stats(&q, &st);
            if (st.idle_threads == MEET) {
                break;
            }
            usleep(1000);
        }
        memset(works, 0, sizeof(works));
        for (int i = 0; i < MEET; i++) {
            works[i].func = meet_func;
            assert_int_equal(submit_threadlet_to_queue(&q, &works[i]), 0);
        }
        /* Not destroy yet: its broadcast would wake every worker.  Up to
         * 15 s; a worker left asleep would leave its item queued.
         */
        bool all_done = true;
        for (int i = 0; i < MEET; i++) {
            for (int j = 0;
                 j < 15000 && threadlet_work_state(&works[i]) != THREADLET_DONE;
                 j++) {
                usleep(1000);
            }
            all_done =
                all_done && threadlet_work_state(&works[i]) == THREADLET_DONE;
        }
        threadlet_queue_destroy(&q, THREADLET_DRAIN);
        assert_true(all_done);
        assert_int_equal(atomic_load(&met_all), MEET);
    }
}

static void
test_bad_spin(void **state)
{
    (void)state;
    ThreadletQueue q;

    assert_int_equal(threadlet_queue_init(&q, 1, 0), 0);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, THREADLET_MAX_SPIN_NS + 1),
                     -EINVAL);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, THREADLET_MAX_SPIN_NS), 0);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, 0), 0);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_one_worker),
        WITH_SPIN(test_fifo_one_worker),
        cmocka_unit_test(test_burst_spawns_to_max),
        cmocka_unit_test(test_peak_and_spawned),
        cmocka_unit_test(test_idle_shrink_to_min),
        cmocka_unit_test(test_cancel_states),
        cmocka_unit_test(test_destroy_drain),
        cmocka_unit_test(test_destroy_cancel),
        cmocka_unit_test(test_submit_after_stop),
        cmocka_unit_test(test_bad_limits),
        cmocka_unit_test(test_completion_on_iothread),
        cmocka_unit_test(test_many_submitters),
        WITH_SPIN(test_many_submitters),
        cmocka_unit_test(test_stats_after_drain),
        cmocka_unit_test(test_set_limits_while_busy),
        cmocka_unit_test(test_submit_from_worker),
        cmocka_unit_test(test_spin_ping_pong),
        WITH_SPIN(test_spin_ping_pong),
        cmocka_unit_test(test_wakes_reach_every_worker),
        WITH_SPIN(test_wakes_reach_every_worker),
        cmocka_unit_test(test_bad_spin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
