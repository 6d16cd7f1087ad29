/* tlbd: unit tests of the I/O thread (core/iothread.c). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "iothread.h"
#include "util.h"

typedef struct Task {
    IOThreadTask task;
    int index;
    IOThread *io;
    atomic_int ran;
} Task;

static int last_index;
static atomic_int wrong_thread;
static atomic_int total_ran;

static void
task_fn(IOThreadTask *t)
{
    Task *task = container_of(t, Task, task);
    if (!iothread_is_current(task->io)) {
        atomic_fetch_add(&wrong_thread, 1);
    }
    /* One poster: the loop must see its tasks in posting order. */
    if (task->index >= 0) {
        assert_true(task->index == last_index + 1);
        last_index = task->index;
    }
    atomic_fetch_add(&task->ran, 1);
    atomic_fetch_add(&total_ran, 1);
}

static sem_t block_gate;
static sem_t block_entered;

static void
block_fn(IOThreadTask *t)
{
    (void)t;
    sem_post(&block_entered);
    sem_wait(&block_gate);
}

static void
test_post_order_and_coalescing(void **state)
{
    (void)state;
    enum { N = 10000 };
    IOThread *io;
    IOThreadStats before, after;
    Task *tasks = calloc(N, sizeof(*tasks));
    IOThreadTask blocker = { .fn = block_fn };

    sem_init(&block_gate, 0, 0);
    sem_init(&block_entered, 0, 0);
    last_index = -1;
    atomic_store(&total_ran, 0);
    assert_int_equal(iothread_new("t", &io), 0);
    assert_int_equal(iothread_start(io), 0);
    /* Park the loop inside a task, then post a burst. */
    iothread_post(io, &blocker);
    sem_wait(&block_entered); /* the loop has taken the list and is parked */
    iothread_get_stats(io, &before);
    for (int i = 0; i < N; i++) {
        tasks[i].index = i;
        tasks[i].io = io;
        tasks[i].task.fn = task_fn;
        iothread_post(io, &tasks[i].task);
    }
    iothread_get_stats(io, &after);
    /* 10,000 posts while the loop is busy: exactly one eventfd write. */
    assert_int_equal(after.posted - before.posted, N);
    assert_int_equal(after.kicks - before.kicks, 1);
    sem_post(&block_gate);
    for (int i = 0; i < 5000 && atomic_load(&total_ran) < N; i++) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&total_ran), N);
    iothread_get_stats(io, &after);
    assert_true(after.max_batch >= N);
    assert_true(after.wakeups - before.wakeups <= 2);
    iothread_free(io);
    assert_int_equal(atomic_load(&wrong_thread), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&tasks[i].ran), 1);
    }
    free(tasks);
    sem_destroy(&block_gate);
    sem_destroy(&block_entered);
}

/* The poll window a test runs with: 0 for plain cmocka_unit_test, else
 * from WITH_POLL.
 */
static uint64_t poll_max = IOTHREAD_MAX_POLL_NS;

static uint64_t
poll_of(void **state)
{
    return *state ? *(uint64_t *)*state : 0;
}

/* TEST again with polling on, under its own name. */
#define WITH_POLL(test)                                                        \
    {                                                                          \
#test "_polling", test, NULL, NULL, &poll_max                          \
    }

/* Many posters, many tasks: each runs once, few wake-ups per task. */
enum { POSTERS = 4, PER_POSTER = 50000 };

typedef struct Poster {
    pthread_t thread;
    IOThread *io;
    Task *tasks;
} Poster;

static void *
poster_main(void *opaque)
{
    Poster *p = opaque;
    for (int i = 0; i < PER_POSTER; i++) {
        p->tasks[i].index = -1;
        p->tasks[i].io = p->io;
        p->tasks[i].task.fn = task_fn;
        iothread_post(p->io, &p->tasks[i].task);
    }
    return NULL;
}

static void
test_many_posters(void **state)
{
    IOThread *io;
    IOThreadStats st;
    Poster posters[POSTERS];

    atomic_store(&total_ran, 0);
    assert_int_equal(iothread_new("mp", &io), 0);
    assert_int_equal(iothread_set_poll_max_ns(io, poll_of(state)), 0);
    assert_int_equal(iothread_start(io), 0);
    for (int i = 0; i < POSTERS; i++) {
        posters[i].io = io;
        posters[i].tasks = calloc(PER_POSTER, sizeof(Task));
        pthread_create(&posters[i].thread, NULL, poster_main, &posters[i]);
    }
    for (int i = 0; i < POSTERS; i++) {
        pthread_join(posters[i].thread, NULL);
    }
    iothread_stop(io);
    assert_int_equal(atomic_load(&total_ran), POSTERS * PER_POSTER);
    iothread_get_stats(io, &st);
    assert_int_equal(st.posted, POSTERS * PER_POSTER);
    /* Each kick is one empty-to-non-empty transition (plus the stop). */
    assert_true(st.kicks <= st.batches + 1 + POSTERS);
    for (int i = 0; i < POSTERS; i++) {
        for (int j = 0; j < PER_POSTER; j++) {
            assert_int_equal(atomic_load(&posters[i].tasks[j].ran), 1);
        }
        free(posters[i].tasks);
    }
    iothread_free(io);
}

/* fd handlers: a pipe's read end fires the handler on the loop's thread. */
typedef struct PipeCtx {
    IOThread *io;
    int fds[2];
    atomic_int bytes;
    atomic_int wrong_thread;
    sem_t got;
} PipeCtx;

static void
pipe_handler(void *opaque, int fd, uint32_t events)
{
    PipeCtx *ctx = opaque;
    char buf[64];
    ssize_t n;

    assert_true(events & EPOLLIN);
    if (!iothread_is_current(ctx->io)) {
        atomic_fetch_add(&ctx->wrong_thread, 1);
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        atomic_fetch_add(&ctx->bytes, (int)n);
        sem_post(&ctx->got);
    }
}

static void
del_on_loop(void *opaque)
{
    PipeCtx *ctx = opaque;
    assert_int_equal(iothread_del_fd(ctx->io, ctx->fds[0]), 0);
    assert_int_equal(iothread_del_fd(ctx->io, ctx->fds[0]), -ENOENT);
}

static void
test_fd_handler(void **state)
{
    (void)state;
    PipeCtx ctx = { 0 };

    sem_init(&ctx.got, 0, 0);
    assert_int_equal(pipe2(ctx.fds, O_NONBLOCK), 0);
    assert_int_equal(iothread_new("fd", &ctx.io), 0);
    assert_int_equal(
        iothread_add_fd(ctx.io, ctx.fds[0], EPOLLIN, pipe_handler, &ctx), 0);
    assert_int_equal(iothread_start(ctx.io), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(write(ctx.fds[1], "abcd", 4), 4);
        sem_wait(&ctx.got);
    }
    while (atomic_load(&ctx.bytes) < 40) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(&ctx.bytes), 40);
    /* Removing from another thread goes through iothread_call. */
    iothread_call(ctx.io, del_on_loop, &ctx);
    assert_int_equal(write(ctx.fds[1], "zz", 2), 2);
    usleep(50000);
    assert_int_equal(atomic_load(&ctx.bytes), 40);
    assert_int_equal(atomic_load(&ctx.wrong_thread), 0);
    iothread_free(ctx.io);
    close(ctx.fds[0]);
    close(ctx.fds[1]);
    sem_destroy(&ctx.got);
}

/* A pass hook flushes what the tasks of a pass batched: ten tasks posted
 * at once are flushed in one call, on the loop's thread, also when the last
 * task stops the loop.
 */
typedef struct HookCtx HookCtx;

typedef struct HookTask {
    IOThreadTask task;
    HookCtx *c;
    bool last; /* stops the loop */
} HookTask;

struct HookCtx {
    HookTask tasks[10];
    IOThread *io;
    int batched;
    int flushed;
    int flushes;
    int max_flush;
    int wrong_thread;
};

static void
batch_task_fn(IOThreadTask *t)
{
    HookTask *ht = container_of(t, HookTask, task);

    ht->c->batched++;
    if (ht->last) {
        iothread_stop(ht->c->io);
    }
}

static void
flush_hook(void *opaque)
{
    HookCtx *c = opaque;

    if (!iothread_is_current(c->io)) {
        c->wrong_thread++;
    }
    if (c->batched) {
        c->flushes++;
        if (c->batched > c->max_flush) {
            c->max_flush = c->batched;
        }
        c->flushed += c->batched;
        c->batched = 0;
    }
}

static void
test_pass_hook(void **state)
{
    (void)state;
    HookCtx c;

    memset(&c, 0, sizeof(c));
    assert_int_equal(iothread_new("hook", &c.io), 0);
    assert_int_equal(iothread_add_pass_hook(c.io, flush_hook, &c), 0);
    for (int i = 0; i < 10; i++) {
        c.tasks[i].task.fn = batch_task_fn;
        c.tasks[i].c = &c;
        c.tasks[i].last = i == 9;
        iothread_post(c.io, &c.tasks[i].task);
    }
    assert_int_equal(iothread_run(c.io), 0);
    assert_int_equal(c.flushed, 10);
    assert_int_equal(c.flushes, 1);
    assert_int_equal(c.max_flush, 10);
    assert_int_equal(c.wrong_thread, 0);
    assert_int_equal(iothread_del_pass_hook(c.io, flush_hook, &c), 0);
    assert_int_equal(iothread_del_pass_hook(c.io, flush_hook, &c), -ENOENT);
    /* A hook still added when the loop is freed is freed with it. */
    assert_int_equal(iothread_add_pass_hook(c.io, flush_hook, &c), 0);
    iothread_free(c.io);
}

/* iothread_run in the caller's thread; stop from another thread. */
static void *
stopper_main(void *opaque)
{
    usleep(20000);
    iothread_stop(opaque);
    return NULL;
}

static void
test_run_in_caller(void **state)
{
    (void)state;
    IOThread *io;
    pthread_t stopper;
    Task t = { .index = -1, .task.fn = task_fn };

    assert_int_equal(iothread_new("caller", &io), 0);
    t.io = io;
    iothread_post(io, &t.task);
    pthread_create(&stopper, NULL, stopper_main, io);
    assert_int_equal(iothread_run(io), 0);
    pthread_join(stopper, NULL);
    assert_int_equal(atomic_load(&t.ran), 1);
    assert_false(iothread_is_current(io));
    iothread_free(io);
}

/* Tasks posted right before stop still run exactly once. */
static void
test_stop_runs_pending(void **state)
{
    (void)state;
    enum { N = 1000 };
    IOThread *io;
    Task *tasks = calloc(N, sizeof(*tasks));

    assert_int_equal(iothread_new("stop", &io), 0);
    assert_int_equal(iothread_start(io), 0);
    for (int i = 0; i < N; i++) {
        tasks[i].index = -1;
        tasks[i].io = io;
        tasks[i].task.fn = task_fn;
        iothread_post(io, &tasks[i].task);
    }
    iothread_stop(io);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&tasks[i].ran), 1);
    }
    iothread_free(io);
    free(tasks);
}

/* The owner may free the IOThread as soon as the last task it waits for has
 * run, while the posters of those tasks are still returning from
 * iothread_post: iothread_free must wait for them, and a poster must not
 * touch the loop after its task may have run.  Under AddressSanitizer a
 * violation is a heap-use-after-free report.
 */
enum { RACE_ROUNDS = 300, RACE_POSTERS = 2, RACE_TASKS = 200 };

typedef struct RaceRound {
    IOThread *io;
    Task *tasks;
    int left; /* loop thread only */
    atomic_bool all_ran;
} RaceRound;

static void
race_task_fn(IOThreadTask *t)
{
    Task *task = container_of(t, Task, task);
    RaceRound *round = (RaceRound *)task->io;
    if (--round->left == 0) {
        atomic_store(&round->all_ran, true);
    }
}

typedef struct RacePoster {
    pthread_t thread;
    RaceRound *round;
    Task *tasks;
} RacePoster;

static void *
race_poster_main(void *opaque)
{
    RacePoster *p = opaque;
    for (int i = 0; i < RACE_TASKS; i++) {
        p->tasks[i].io = (IOThread *)p->round; /* opaque back pointer */
        p->tasks[i].task.fn = race_task_fn;
        iothread_post(p->round->io, &p->tasks[i].task);
    }
    return NULL;
}

static void
test_free_while_posters_return(void **state)
{
    (void)state;
    Task *tasks = calloc(RACE_POSTERS * RACE_TASKS, sizeof(*tasks));

    for (int r = 0; r < RACE_ROUNDS; r++) {
        RaceRound round = { .left = RACE_POSTERS * RACE_TASKS };
        RacePoster posters[RACE_POSTERS];

        atomic_init(&round.all_ran, false);
        assert_int_equal(iothread_new("race", &round.io), 0);
        assert_int_equal(iothread_start(round.io), 0);
        for (int i = 0; i < RACE_POSTERS; i++) {
            posters[i].round = &round;
            posters[i].tasks = tasks + i * RACE_TASKS;
            pthread_create(&posters[i].thread, NULL, race_poster_main,
                           &posters[i]);
        }
        while (!atomic_load(&round.all_ran)) {
            sched_yield();
        }
        /* Every task has run; the posters may still be inside post. */
        iothread_free(round.io);
        for (int i = 0; i < RACE_POSTERS; i++) {
            pthread_join(posters[i].thread, NULL);
        }
    }
    free(tasks);
}

/* One task in flight at a time: the test thread posts the next as soon as
 * it sees the last one run, which is when a polling loop is polling.  With
 * polling on, some tasks must be found by the poll (poll_hits) without a
 * kick; with it off, none.  Either way every task runs once.
 */
static void
test_poll_ping_pong(void **state)
{
    enum { MIN_ROUNDS = 500, MAX_ROUNDS = 20000 };
    uint64_t poll = poll_of(state);
    IOThread *io;
    IOThreadStats st;
    Task task = { .index = -1 };
    int rounds = 0;

    atomic_store(&total_ran, 0);
    atomic_store(&wrong_thread, 0);
    assert_int_equal(iothread_new("pp", &io), 0);
    assert_int_equal(iothread_set_poll_max_ns(io, poll), 0);
    assert_int_equal(iothread_start(io), 0);
    task.io = io;
    do {
        task.task.fn = task_fn;
        iothread_post(io, &task.task);
        while (atomic_load(&task.ran) == rounds) {
            sched_yield();
        }
        rounds++;
        iothread_get_stats(io, &st);
    } while (rounds < MIN_ROUNDS ||
             (poll && st.poll_hits == 0 && rounds < MAX_ROUNDS));
    iothread_stop(io);
    iothread_get_stats(io, &st);
    assert_int_equal(atomic_load(&task.ran), rounds);
    assert_int_equal(atomic_load(&wrong_thread), 0);
    assert_int_equal(st.posted, rounds);
    if (poll) {
        assert_true(st.poll_hits > 0);
        /* A task the poll found needed no kick (the stop kicks once). */
        assert_true(st.kicks < (uint64_t)rounds + 1);
    } else {
        assert_int_equal(st.poll_hits, 0);
        assert_int_equal(st.kicks, (uint64_t)rounds + 1);
    }
    iothread_free(io);
}

static void
test_bad_poll(void **state)
{
    (void)state;
    IOThread *io;

    assert_int_equal(iothread_new("bp", &io), 0);
    assert_int_equal(iothread_set_poll_max_ns(io, IOTHREAD_MAX_POLL_NS + 1),
                     -EINVAL);
    assert_int_equal(iothread_set_poll_max_ns(io, IOTHREAD_MAX_POLL_NS), 0);
    assert_int_equal(iothread_set_poll_max_ns(io, 0), 0);
    iothread_free(io);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_order_and_coalescing),
        cmocka_unit_test(test_many_posters),
        WITH_POLL(test_many_posters),
        cmocka_unit_test(test_fd_handler),
        cmocka_unit_test(test_run_in_caller),
        cmocka_unit_test(test_pass_hook),
        cmocka_unit_test(test_stop_runs_pending),
        cmocka_unit_test(test_free_while_posters_return),
        cmocka_unit_test(test_poll_ping_pong),
        WITH_POLL(test_poll_ping_pong),
        cmocka_unit_test(test_bad_poll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
