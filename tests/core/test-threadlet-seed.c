/* tlbd: the threadlets usage of the original design, written as its
 * documentation says, must compile and behave as documented: the global
 * queue, a private queue, container_of, and cancel returning 0 or 1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <unistd.h>

#include "threadlet.h"

typedef struct MyRequest {
    int input;
    int output;
    sem_t *gate;
    ThreadletWork work;
} MyRequest;

static atomic_int finished;

/* Step 1: the blocking work; touches only its own request. */
static void
my_func(ThreadletWork *work)
{
    MyRequest *req = container_of(work, MyRequest, work);
    if (req->gate) {
        sem_wait(req->gate);
    }
    req->output = req->input * 2;
    atomic_fetch_add(&finished, 1);
}

static void
wait_done(MyRequest *req)
{
    while (threadlet_work_state(&req->work) != THREADLET_DONE) {
        usleep(1000);
    }
}

static void
test_global_queue(void **state)
{
    (void)state;
    MyRequest reqs[100];

    for (int i = 0; i < 100; i++) {
        reqs[i].input = i;
        reqs[i].gate = NULL;
        reqs[i].work.func = my_func;     /* step 2 */
        submit_threadlet(&reqs[i].work); /* step 3, return ignored as of old */
    }
    for (int i = 0; i < 100; i++) {
        wait_done(&reqs[i]);
        assert_int_equal(reqs[i].output, 2 * i);
    }
    ThreadletStats st;
    threadlet_queue_get_stats(threadlet_global_queue(), &st);
    assert_int_equal(st.max_threads, threadlet_default_max_threads());
    assert_true(st.max_threads >= 16 && st.max_threads <= 64);
}

static void
test_private_queue_and_cancel(void **state)
{
    (void)state;
    ThreadletQueue my_queue;
    sem_t gate;
    MyRequest first = { .input = 1, .gate = &gate };
    MyRequest second = { .input = 2 };

    sem_init(&gate, 0, 0);
    threadlet_queue_init(&my_queue, 1, 0);
    first.work.func = my_func;
    second.work.func = my_func;
    submit_threadlet_to_queue(&my_queue, &first.work);
    while (threadlet_work_state(&first.work) != THREADLET_RUNNING) {
        usleep(1000);
    }
    submit_threadlet_to_queue(&my_queue, &second.work);
    /* step 6: 0 = dequeued, will never run; 1 = not found */
    assert_int_equal(cancel_threadlet_on_queue(&my_queue, &second.work), 0);
    assert_int_equal(cancel_threadlet_on_queue(&my_queue, &first.work), 1);
    sem_post(&gate);
    wait_done(&first);
    assert_int_equal(first.output, 2);
    assert_int_equal(second.output, 0);
    threadlet_queue_destroy(&my_queue, THREADLET_DRAIN);
    sem_destroy(&gate);
}

static void
test_global_cancel(void **state)
{
    (void)state;
    MyRequest req = { .input = 3 };
    req.work.func = my_func;
    submit_threadlet(&req.work);
    /* Either it was still queued (0) or a worker had it (1). */
    int r = cancel_threadlet(&req.work);
    if (r == 0) {
        assert_int_equal(threadlet_work_state(&req.work), THREADLET_CANCELLED);
        assert_int_equal(req.output, 0);
    } else {
        assert_int_equal(r, 1);
        wait_done(&req);
        assert_int_equal(req.output, 6);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_global_queue),
        cmocka_unit_test(test_private_queue_and_cancel),
        cmocka_unit_test(test_global_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
