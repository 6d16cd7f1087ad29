/* tlbd: stress tests of the threadlet pool's lock-free submit path
 * (core/threadlet.c): many submitters racing workers, cancels, workers that
 * leave and come back, and destroy.  Every item is checked to end exactly
 * once, and the stats to add up.
 *
 * Threads: the test thread, the submitting and cancelling threads it starts,
 * the pool's workers and one IOThread for complete callbacks.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iothread.h"
#include "threadlet.h"
#include "threadlet-spin.h"
#include "util.h"

enum { SUBMITTERS = 4, PER_SUBMITTER = 3000 };

typedef struct Job {
    ThreadletWork work;
    atomic_int ran;       /* func calls */
    atomic_int completed; /* complete calls */
    atomic_int final;     /* the state complete saw */
    unsigned spin;        /* func busy-waits this many rounds */
} Job;

typedef struct Run Run;

typedef struct Submitter {
    pthread_t thread;
    Run *run;
    Job *jobs;
    unsigned seed;
    atomic_int submitted_upto; /* jobs [0, this) have been submitted */
    int accepted;              /* submits that returned 0 */
    int refused;               /* submits that returned -ESHUTDOWN */
} Submitter;

struct Run {
    ThreadletQueue q;
    IOThread *io; /* Can be NULL: complete runs on the worker. */
    Submitter subs[SUBMITTERS];
    atomic_int cancels;     /* cancel calls that returned 0 */
    atomic_int ended;       /* complete calls, all jobs */
    atomic_bool stop;       /* the canceller thread stops */
    unsigned idle_pause_us; /* submitters pause now and then this long */
    bool may_refuse;        /* destroy races the submits */
};

static void
job_func(ThreadletWork *work)
{
    Job *j = container_of(work, Job, work);
    for (volatile unsigned i = 0; i < j->spin; i++) {
    }
    atomic_fetch_add(&j->ran, 1);
}

static Run *complete_run; /* the run whose jobs end */

static void
job_complete(ThreadletWork *work)
{
    Job *j = container_of(work, Job, work);
    atomic_store(&j->final, (int)threadlet_work_state(work));
    atomic_fetch_add(&j->completed, 1);
    atomic_fetch_add(&complete_run->ended, 1);
}

static void *
submitter_main(void *opaque)
{
    Submitter *s = opaque;
    Run *r = s->run;

    for (int i = 0; i < PER_SUBMITTER; i++) {
        Job *j = &s->jobs[i];
        j->work.func = job_func;
        j->spin = rand_r(&s->seed) % 4 == 0 ? rand_r(&s->seed) % 2000 : 0;
        int err =
            threadlet_submit_complete(&r->q, &j->work, r->io, job_complete);
        if (err == 0) {
            s->accepted++;
        } else if (err == -ESHUTDOWN && r->may_refuse) {
            s->refused++;
        } else {
            abort();
        }
        atomic_store(&s->submitted_upto, i + 1);
        /* Cancel one of ours now and then: it may be queued, running or
         * done by now.  Not while destroy races: a destroyed queue takes
         * no cancels.
         */
        if (err == 0 && !r->may_refuse && rand_r(&s->seed) % 8 == 0) {
            Job *c = &s->jobs[rand_r(&s->seed) % (unsigned)(i + 1)];
            if (cancel_threadlet_on_queue(&r->q, &c->work) == 0) {
                atomic_fetch_add(&r->cancels, 1);
            }
        }
        if (r->idle_pause_us && rand_r(&s->seed) % 16 == 0) {
            usleep(rand_r(&s->seed) % r->idle_pause_us);
        }
    }
    return NULL;
}

/* Cancel jobs of every submitter, those whose submit has returned. */
static void *
canceller_main(void *opaque)
{
    Run *r = opaque;
    unsigned seed = 7;

    while (!atomic_load(&r->stop)) {
        Submitter *s = &r->subs[rand_r(&seed) % SUBMITTERS];
        int upto = atomic_load(&s->submitted_upto);
        if (upto == 0) {
            sched_yield();
            continue;
        }
        Job *j = &s->jobs[rand_r(&seed) % (unsigned)upto];
        if (cancel_threadlet_on_queue(&r->q, &j->work) == 0) {
            atomic_fetch_add(&r->cancels, 1);
        }
    }
    return NULL;
}

static Run *
run_new(int max_threads, int min_threads, bool on_iothread)
{
    Run *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    complete_run = r;
    if (on_iothread) {
        assert_int_equal(iothread_new("stress", &r->io), 0);
        assert_int_equal(iothread_start(r->io), 0);
    }
    assert_int_equal(
        threadlet_queue_init_named(&r->q, "stress", max_threads, min_threads),
        0);
    for (int i = 0; i < SUBMITTERS; i++) {
        r->subs[i].run = r;
        r->subs[i].seed = 1000u + (unsigned)i;
        r->subs[i].jobs = calloc(PER_SUBMITTER, sizeof(Job));
        assert_non_null(r->subs[i].jobs);
    }
    return r;
}

static void
run_start(Run *r)
{
    for (int i = 0; i < SUBMITTERS; i++) {
        assert_int_equal(pthread_create(&r->subs[i].thread, NULL,
                                        submitter_main, &r->subs[i]),
                         0);
    }
}

static void
run_join(Run *r)
{
    for (int i = 0; i < SUBMITTERS; i++) {
        pthread_join(r->subs[i].thread, NULL);
    }
}

/* Every accepted job ended exactly once, as DONE (func ran once) or
 * CANCELLED (func never ran); refused ones never started.  Returns how many
 * were accepted.
 */
static int
check_jobs(Run *r)
{
    int accepted = 0, done = 0, cancelled = 0;

    for (int i = 0; i < SUBMITTERS; i++) {
        Submitter *s = &r->subs[i];
        accepted += s->accepted;
        for (int k = 0; k < PER_SUBMITTER; k++) {
            Job *j = &s->jobs[k];
            int completed = atomic_load(&j->completed);
            int state = (int)threadlet_work_state(&j->work);
            if (completed == 0) {
                /* Refused by a destroy: never queued. */
                assert_true(r->may_refuse);
                assert_int_equal(atomic_load(&j->ran), 0);
                assert_int_equal(state, THREADLET_NEW);
                continue;
            }
            assert_int_equal(completed, 1);
            assert_int_equal(atomic_load(&j->final), state);
            if (state == THREADLET_DONE) {
                assert_int_equal(atomic_load(&j->ran), 1);
                done++;
            } else {
                assert_int_equal(state, THREADLET_CANCELLED);
                assert_int_equal(atomic_load(&j->ran), 0);
                cancelled++;
            }
        }
    }
    assert_int_equal(done + cancelled, accepted);
    assert_int_equal(atomic_load(&r->ended), accepted);
    return accepted;
}

static void
run_free(Run *r)
{
    if (r->io) {
        iothread_stop(r->io);
        iothread_free(r->io);
    }
    for (int i = 0; i < SUBMITTERS; i++) {
        free(r->subs[i].jobs);
    }
    free(r);
}

/* Wait until every accepted job has ended, for at most 60 s: a lost wake-up
 * shows as a job that never runs, which destroy would hide by waking every
 * worker.
 */
static void
wait_all_ended(Run *r, int accepted)
{
    for (int i = 0; i < 60000 && atomic_load(&r->ended) < accepted; i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&r->ended), accepted);
}

/* Submitted == completed + cancelled, nothing queued, once all ended. */
static void
check_stats_settled(Run *r, int accepted)
{
    ThreadletStats st;

    /* completed is counted just after the complete callback was handed on:
     * give the workers a moment.
     */
    for (int i = 0; i < 10000; i++) {
        threadlet_queue_get_stats(&r->q, &st);
        if (st.completed + st.cancelled == st.submitted) {
            break;
        }
        usleep(1000);
    }
    assert_int_equal(st.submitted, (uint64_t)accepted);
    assert_int_equal(st.completed + st.cancelled, st.submitted);
    assert_int_equal(st.cancelled, (uint64_t)atomic_load(&r->cancels));
    assert_int_equal(st.queued, 0);
}

/* Submitters and a canceller race the workers; complete on an IOThread. */
static void
test_submit_cancel_race(void **state)
{
    Run *r = run_new(3, 1, true);
    pthread_t canceller;

    assert_int_equal(threadlet_queue_set_spin_ns(&r->q, spin_of(state)), 0);
    run_start(r);
    assert_int_equal(pthread_create(&canceller, NULL, canceller_main, r), 0);
    run_join(r);
    atomic_store(&r->stop, true);
    pthread_join(canceller, NULL);

    int accepted = SUBMITTERS * PER_SUBMITTER;
    wait_all_ended(r, accepted);
    check_stats_settled(r, accepted);
    threadlet_queue_destroy(&r->q, THREADLET_DRAIN);
    assert_int_equal(check_jobs(r), accepted);
    assert_true(atomic_load(&r->cancels) > 0);
    run_free(r);
}

/* min 0 and an idle timeout of 0: workers leave as soon as they find no
 * work and are spawned again by the next submits, which keep pausing so
 * that the queue runs dry.  Complete runs on the worker.
 */
static void
test_workers_leave_and_return(void **state)
{
    Run *r = run_new(2, 0, false);
    ThreadletStats st;

    r->idle_pause_us = 300;
    threadlet_queue_set_idle_timeout(&r->q, 0);
    assert_int_equal(threadlet_queue_set_spin_ns(&r->q, spin_of(state)), 0);
    run_start(r);
    run_join(r);

    int accepted = SUBMITTERS * PER_SUBMITTER;
    wait_all_ended(r, accepted);
    check_stats_settled(r, accepted);
    threadlet_queue_get_stats(&r->q, &st);
    assert_true(st.spawned > 2); /* some left and were replaced */
    assert_true(st.peak_threads <= 2);
    threadlet_queue_destroy(&r->q, THREADLET_DRAIN);
    assert_int_equal(check_jobs(r), accepted);
    run_free(r);
}

/* Destroy while the submitters still submit: each submit is refused or its
 * job ends, run or cancelled, exactly once.
 */
static void
race_destroy(ThreadletDestroyMode mode)
{
    Run *r = run_new(3, 0, true);

    r->may_refuse = true;
    run_start(r);
    /* Destroy once the submits are well under way. */
    for (;;) {
        int upto = 0;
        for (int i = 0; i < SUBMITTERS; i++) {
            upto += atomic_load(&r->subs[i].submitted_upto);
        }
        if (upto >= SUBMITTERS * PER_SUBMITTER / 8) {
            break;
        }
        sched_yield();
    }
    threadlet_queue_destroy(&r->q, mode);
    run_join(r);

    int accepted = 0, refused = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        accepted += r->subs[i].accepted;
        refused += r->subs[i].refused;
    }
    /* Complete callbacks still run on the IOThread after destroy. */
    wait_all_ended(r, accepted);
    assert_int_equal(check_jobs(r), accepted);
    assert_int_equal(accepted + refused, SUBMITTERS * PER_SUBMITTER);
    /* Destroyed: every later submit is refused. */
    Job late = { .work.func = job_func };
    assert_int_equal(submit_threadlet_to_queue(&r->q, &late.work), -ESHUTDOWN);
    assert_int_equal(threadlet_work_state(&late.work), THREADLET_NEW);
    run_free(r);
}

static void
test_destroy_drain_races_submit(void **state)
{
    (void)state;
    race_destroy(THREADLET_DRAIN);
}

static void
test_destroy_cancel_races_submit(void **state)
{
    (void)state;
    race_destroy(THREADLET_CANCEL);
}

/* Rounds: each of two threads submits a few jobs and waits for them to end
 * before the next round, so that workers keep running dry and going idle
 * (or leaving) just as the next submit comes.  A lost wake-up leaves a
 * round unfinished: with min == max no worker ever times out to find it.
 */
enum { ROUNDS = 1500, ROUND_JOBS = 3, ROUND_THREADS = 2 };

typedef struct Rounds {
    pthread_t thread;
    ThreadletQueue *q;
    Job jobs[ROUND_JOBS];
    atomic_int ended;
    bool lost; /* a round did not finish within 20 s */
} Rounds;

static void
round_complete(ThreadletWork *work)
{
    Job *j = container_of(work, Job, work);
    atomic_fetch_add(&j->completed, 1);
}

static void *
rounds_main(void *opaque)
{
    Rounds *rd = opaque;
    unsigned seed = (unsigned)(uintptr_t)rd;

    for (int round = 0; round < ROUNDS && !rd->lost; round++) {
        unsigned n = 1 + rand_r(&seed) % ROUND_JOBS;
        for (unsigned i = 0; i < n; i++) {
            Job *j = &rd->jobs[i];
            atomic_store(&j->completed, 0);
            j->work.func = job_func;
            j->spin = rand_r(&seed) % 500;
            if (threadlet_submit_complete(rd->q, &j->work, NULL,
                                          round_complete) != 0) {
                abort();
            }
        }
        uint64_t deadline = tlbd_now_ns() + 20000000000ull;
        for (unsigned i = 0; i < n; i++) {
            while (atomic_load(&rd->jobs[i].completed) == 0) {
                if (tlbd_now_ns() > deadline) {
                    rd->lost = true;
                    break;
                }
                sched_yield();
            }
        }
        if (rand_r(&seed) % 4 == 0) {
            usleep(rand_r(&seed) % 200);
        }
    }
    return NULL;
}

static void
run_rounds(int max_threads, int min_threads, unsigned idle_ms, unsigned spin_ns)
{
    ThreadletQueue q;
    ThreadletStats st;
    Rounds *rd = calloc(ROUND_THREADS, sizeof(*rd));

    assert_non_null(rd);
    assert_int_equal(threadlet_queue_init(&q, max_threads, min_threads), 0);
    threadlet_queue_set_idle_timeout(&q, idle_ms);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, spin_ns), 0);
    for (int i = 0; i < ROUND_THREADS; i++) {
        rd[i].q = &q;
        assert_int_equal(
            pthread_create(&rd[i].thread, NULL, rounds_main, &rd[i]), 0);
    }
    for (int i = 0; i < ROUND_THREADS; i++) {
        pthread_join(rd[i].thread, NULL);
        assert_false(rd[i].lost);
    }
    threadlet_queue_get_stats(&q, &st);
    assert_int_equal(st.queued, 0);
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    free(rd);
}

/* All workers kept: they only sleep and wake. */
static void
test_rounds_fixed_workers(void **state)
{
    run_rounds(2, 2, THREADLET_DEFAULT_IDLE_MS, spin_of(state));
}

/* One worker at most, which leaves at once when idle: each round races its
 * leaving.
 */
static void
test_rounds_leaving_worker(void **state)
{
    run_rounds(1, 0, 0, spin_of(state));
}

/* One submitter, one worker: the inbox, taken newest first, still runs in
 * submission order, batch after batch.
 */
enum { ORDERED = 20000 };
static atomic_int order_next;
static int order_seen[ORDERED];

typedef struct Ordered {
    ThreadletWork work;
    int index;
} Ordered;

static void
ordered_func(ThreadletWork *work)
{
    Ordered *o = container_of(work, Ordered, work);
    order_seen[atomic_fetch_add(&order_next, 1)] = o->index;
}

static void
test_order_across_batches(void **state)
{
    ThreadletQueue q;
    Ordered *items = calloc(ORDERED, sizeof(*items));

    assert_non_null(items);
    atomic_store(&order_next, 0);
    assert_int_equal(threadlet_queue_init(&q, 1, 1), 0);
    assert_int_equal(threadlet_queue_set_spin_ns(&q, spin_of(state)), 0);
    for (int i = 0; i < ORDERED; i++) {
        items[i].index = i;
        items[i].work.func = ordered_func;
        assert_int_equal(submit_threadlet_to_queue(&q, &items[i].work), 0);
        if (i % 1000 == 0) {
            usleep(100); /* let the worker take part of it */
        }
    }
    threadlet_queue_destroy(&q, THREADLET_DRAIN);
    assert_int_equal(atomic_load(&order_next), ORDERED);
    for (int i = 0; i < ORDERED; i++) {
        assert_int_equal(order_seen[i], i);
    }
    free(items);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_cancel_race),
        WITH_SPIN(test_submit_cancel_race),
        cmocka_unit_test(test_workers_leave_and_return),
        WITH_SPIN(test_workers_leave_and_return),
        cmocka_unit_test(test_rounds_fixed_workers),
        WITH_SPIN(test_rounds_fixed_workers),
        cmocka_unit_test(test_rounds_leaving_worker),
        WITH_SPIN(test_rounds_leaving_worker),
        cmocka_unit_test(test_destroy_drain_races_submit),
        cmocka_unit_test(test_destroy_cancel_races_submit),
        cmocka_unit_test(test_order_across_batches),
        WITH_SPIN(test_order_across_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
