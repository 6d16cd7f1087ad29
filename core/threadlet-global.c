/* tlbd: the threadlet entry points of the original design: the global
 * queue, created on first use, and the shorthands for the common case.
 * They use only the queue API of threadlet.h; any thread may call them.
 */
#include <unistd.h>

#include "threadlet.h"

int
threadlet_queue_init(ThreadletQueue *q, int max_threads, int min_threads)
{
    return threadlet_queue_init_named(q, "q", max_threads, min_threads);
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
    global_err = threadlet_queue_init_named(&global_queue, "global",
                                            threadlet_default_max_threads(), 0);
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
cancel_threadlet(ThreadletWork *work)
{
    ThreadletQueue *q = threadlet_global_queue();
    return q ? cancel_threadlet_on_queue(q, work) : 1;
}
