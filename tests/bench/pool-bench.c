/* tlbd: pool-bench, the threadlet pool side by side with GLib's GThreadPool
 * and libuv's uv_queue_work.  A benchmark, not a test: it prints one table
 * of medians and asserts nothing about speed.
 *
 * Every library gets the same number of workers (--threads), the same
 * preallocated items and the same shape of run:
 *
 *  - throughput, completion on a loop: each submitting thread owns an event
 *    loop (an IOThread run by that thread, a uv_loop_t, a GMainContext),
 *    queues its share of empty tasks from it and runs the loop until every
 *    completion has come back to it (threadlet_submit_complete, after_work,
 *    g_main_context_invoke from the task).  libuv can only queue work from
 *    its loop's thread, which is why every submitter is a loop thread.
 *  - throughput, counted in the task: plain submission, the task itself
 *    counts (libuv still routes each item back to its loop, which it cannot
 *    skip; the clock stops at the last task all the same).
 *  - round trip: one item in flight, submitted from a loop and completed on
 *    it; the time from submit to the completion callback.
 *
 * Threads: main runs the loops of the round-trip runs and starts one thread
 * per submitter for the throughput runs; the libraries' workers do the rest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <uv.h>

#include "iothread.h"
#include "threadlet.h"
#include "util.h"

#define MAX_SUBMITTERS 64
#define MAX_REPS       1000

enum { LIB_TLBD, LIB_GLIB, LIB_UV, N_LIBS };
static const char *const lib_names[N_LIBS] = { "tlbd", "GThreadPool", "libuv" };
static const char *const lib_keys[N_LIBS] = { "tlbd", "gthreadpool", "libuv" };

enum {
    ROW_TPUT_LOOP_1,
    ROW_TPUT_LOOP_N,
    ROW_TPUT_FUNC_1,
    ROW_TPUT_FUNC_N,
    ROW_RTT_P50,
    ROW_RTT_P99,
    N_ROWS
};

static struct {
    unsigned tasks;
    unsigned reps;
    unsigned threads;
    unsigned submitters;
    unsigned samples;
    bool json;
    int only;     /* a LIB_ to run alone, or -1 for all */
    long spin_ns; /* tlbd's largest worker spin window */
    long poll_ns; /* tlbd's largest I/O thread poll window */
} opt = { 200000, 5, 4, 4, 20000, false, -1, 20000, 32000 };

/* One work item, with a slot for each library. */
typedef struct Submitter Submitter;
typedef struct Item {
    ThreadletWork work;
    uv_work_t uv;
    Submitter *sub;
    uint64_t t0;
} Item;

/* One submitting thread and, for loop runs, its loop. */
struct Submitter {
    pthread_t thread;
    unsigned index;
    Item *items;
    unsigned count;
    unsigned left;     /* loop thread only */
    uint64_t start_ns; /* when it passed the start barrier */
    IOThread *io;
    uv_loop_t uv_loop;
    GMainContext *ctx;
};

/* The state of the run being measured. */
static Item *items;
static ThreadletQueue tl_queue;
static GThreadPool *glib_pool;
static pthread_barrier_t start_barrier;
static atomic_ulong done_count;
static unsigned long done_target;
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static uint64_t gate_ns; /* when the last item was counted */

/* Add N finished items; the last one opens the gate. */
static void
count_done(unsigned long n)
{
    if (atomic_fetch_add(&done_count, n) + n == done_target) {
        uint64_t now = tlbd_now_ns();
        tlbd_mutex_lock(&gate_lock);
        gate_ns = now;
        gate_open = true;
        pthread_cond_signal(&gate_cond);
        tlbd_mutex_unlock(&gate_lock);
    }
}

/* A loop thread received one completion of its share. */
static bool
loop_count_one(Submitter *s)
{
    if (--s->left == 0) {
        count_done(s->count);
        return true;
    }
    return false;
}

/* Wait for the start and note when it came: the clock starts with the
 * first submitter, not when main wakes up.
 */
static void
start_wait(Submitter *s)
{
    pthread_barrier_wait(&start_barrier);
    s->start_ns = tlbd_now_ns();
}

/* tlbd ------------------------------------------------------------------ */

static void
tl_empty(ThreadletWork *work)
{
    (void)work;
}

static void
tl_count(ThreadletWork *work)
{
    (void)work;
    count_done(1);
}

static void
tl_loop_complete(ThreadletWork *work)
{
    Item *it = container_of(work, Item, work);
    if (loop_count_one(it->sub)) {
        iothread_stop(it->sub->io);
    }
}

static void
tl_submit_or_die(Item *it, IOThread *io, void (*complete)(ThreadletWork *))
{
    int err = threadlet_submit_complete(&tl_queue, &it->work, io, complete);
    if (err) {
        tlbd_die("threadlet_submit_complete", -err);
    }
}

/* A new IOThread with the poll window of the options. */
static IOThread *
tl_iothread_new(const char *name)
{
    IOThread *io;
    int err = iothread_new(name, &io);
    if (err) {
        tlbd_die("iothread_new", -err);
    }
    err = iothread_set_poll_max_ns(io, (uint64_t)opt.poll_ns);
    if (err) {
        tlbd_die("iothread_set_poll_max_ns", -err);
    }
    return io;
}

static void *
tl_loop_body(void *opaque)
{
    Submitter *s = opaque;
    s->io = tl_iothread_new("bench");
    s->left = s->count;
    start_wait(s);
    for (unsigned i = 0; i < s->count; i++) {
        s->items[i].work.func = tl_empty;
        tl_submit_or_die(&s->items[i], s->io, tl_loop_complete);
    }
    iothread_run(s->io);
    iothread_free(s->io);
    return NULL;
}

/* The gate opens when the last func counts, before its worker has marked
 * the item DONE; wait for that before the items are submitted again.
 */
static void
tl_wait_done(unsigned tasks)
{
    for (unsigned i = 0; i < tasks; i++) {
        while (threadlet_work_state(&items[i].work) != THREADLET_DONE) {
            sched_yield();
        }
    }
}

static void *
tl_func_body(void *opaque)
{
    Submitter *s = opaque;
    start_wait(s);
    for (unsigned i = 0; i < s->count; i++) {
        s->items[i].work.func = tl_count;
        tl_submit_or_die(&s->items[i], NULL, NULL);
    }
    return NULL;
}

/* GLib ------------------------------------------------------------------ */

typedef enum { GLIB_COUNT, GLIB_INVOKE } GlibMode;
static GlibMode glib_mode;

static gboolean
glib_loop_complete(gpointer data)
{
    Item *it = data;
    loop_count_one(it->sub);
    return G_SOURCE_REMOVE;
}

static void
glib_func(gpointer data, gpointer user_data)
{
    Item *it = data;
    (void)user_data;
    if (glib_mode == GLIB_COUNT) {
        count_done(1);
    } else {
        g_main_context_invoke(it->sub->ctx, glib_loop_complete, it);
    }
}

static void
glib_push(Item *it)
{
    GError *error = NULL;
    if (!g_thread_pool_push(glib_pool, it, &error)) {
        fprintf(stderr, "pool-bench: g_thread_pool_push: %s\n", error->message);
        exit(EXIT_FAILURE);
    }
}

/* One GMainContext per submitter slot, kept for the whole run: a worker
 * may still be inside g_main_context_invoke (unreferencing its idle source,
 * which locks the context) after the loop has dispatched that source.
 */
static GMainContext *glib_ctx[MAX_SUBMITTERS];

static void *
glib_loop_body(void *opaque)
{
    Submitter *s = opaque;
    s->ctx = glib_ctx[s->index];
    g_main_context_push_thread_default(s->ctx);
    s->left = s->count;
    start_wait(s);
    for (unsigned i = 0; i < s->count; i++) {
        glib_push(&s->items[i]);
    }
    while (s->left > 0) {
        g_main_context_iteration(s->ctx, TRUE);
    }
    g_main_context_pop_thread_default(s->ctx);
    return NULL;
}

static void *
glib_func_body(void *opaque)
{
    Submitter *s = opaque;
    start_wait(s);
    for (unsigned i = 0; i < s->count; i++) {
        glib_push(&s->items[i]);
    }
    return NULL;
}

/* libuv ----------------------------------------------------------------- */

static void
uv_empty(uv_work_t *req)
{
    (void)req;
}

static void
uv_count(uv_work_t *req)
{
    (void)req;
    count_done(1);
}

static void
uv_loop_after(uv_work_t *req, int status)
{
    Item *it = container_of(req, Item, uv);
    (void)status;
    loop_count_one(it->sub);
}

static void
uv_queue_or_die(uv_loop_t *loop, Item *it, uv_work_cb work,
                uv_after_work_cb after)
{
    int err = uv_queue_work(loop, &it->uv, work, after);
    if (err) {
        fprintf(stderr, "pool-bench: uv_queue_work: %s\n", uv_strerror(err));
        exit(EXIT_FAILURE);
    }
}

static void
uv_body(Submitter *s, uv_work_cb work, uv_after_work_cb after)
{
    uv_loop_init(&s->uv_loop);
    s->left = s->count;
    start_wait(s);
    for (unsigned i = 0; i < s->count; i++) {
        uv_queue_or_die(&s->uv_loop, &s->items[i], work, after);
    }
    uv_run(&s->uv_loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->uv_loop);
}

static void *
uv_loop_body(void *opaque)
{
    uv_body(opaque, uv_empty, uv_loop_after);
    return NULL;
}

static void *
uv_func_body(void *opaque)
{
    uv_body(opaque, uv_count, NULL);
    return NULL;
}

/* Throughput ------------------------------------------------------------ */

/* Run TASKS items split over NSUB threads running BODY; items per second
 * from the start barrier to the last completion.
 */
static double
throughput(void *(*body)(void *), unsigned nsub, unsigned tasks)
{
    Submitter subs[MAX_SUBMITTERS];
    unsigned first = 0;
    uint64_t t0, t1;

    memset(subs, 0, sizeof(subs));
    atomic_store(&done_count, 0);
    done_target = tasks;
    gate_open = false;
    pthread_barrier_init(&start_barrier, NULL, nsub + 1);
    for (unsigned i = 0; i < nsub; i++) {
        subs[i].index = i;
        subs[i].items = items + first;
        subs[i].count = tasks / nsub + (i < tasks % nsub ? 1 : 0);
        for (unsigned j = 0; j < subs[i].count; j++) {
            subs[i].items[j].sub = &subs[i];
        }
        first += subs[i].count;
        int err = pthread_create(&subs[i].thread, NULL, body, &subs[i]);
        if (err) {
            tlbd_die("pthread_create", err);
        }
    }
    pthread_barrier_wait(&start_barrier);
    tlbd_mutex_lock(&gate_lock);
    while (!gate_open) {
        pthread_cond_wait(&gate_cond, &gate_lock);
    }
    t1 = gate_ns;
    tlbd_mutex_unlock(&gate_lock);
    t0 = UINT64_MAX;
    for (unsigned i = 0; i < nsub; i++) {
        pthread_join(subs[i].thread, NULL);
        if (subs[i].start_ns < t0) {
            t0 = subs[i].start_ns;
        }
    }
    pthread_barrier_destroy(&start_barrier);
    return tasks / ((t1 - t0) / 1e9);
}

static double
lib_throughput(int lib, bool loop, unsigned nsub, unsigned tasks)
{
    switch (lib) {
    case LIB_TLBD: {
        double v = throughput(loop ? tl_loop_body : tl_func_body, nsub, tasks);
        tl_wait_done(tasks);
        return v;
    }
    case LIB_GLIB:
        glib_mode = loop ? GLIB_INVOKE : GLIB_COUNT;
        return throughput(loop ? glib_loop_body : glib_func_body, nsub, tasks);
    default:
        return throughput(loop ? uv_loop_body : uv_func_body, nsub, tasks);
    }
}

/* Round trip ------------------------------------------------------------ */

/* One item in flight: sample I is items[I]; its completion records the
 * time and submits sample I + 1.  Loop thread only.
 */
static uint64_t *rtt;
static unsigned rtt_next;
static unsigned rtt_samples;

/* Record the sample of IT.  Returns the next item to submit, or NULL. */
static Item *
rtt_record(Item *it)
{
    rtt[it - items] = tlbd_now_ns() - it->t0;
    if (++rtt_next == rtt_samples) {
        return NULL;
    }
    Item *next = &items[rtt_next];
    next->t0 = tlbd_now_ns();
    return next;
}

static IOThread *rtt_io;

static void
tl_rtt_complete(ThreadletWork *work)
{
    Item *next = rtt_record(container_of(work, Item, work));
    if (next) {
        next->work.func = tl_empty;
        tl_submit_or_die(next, rtt_io, tl_rtt_complete);
    } else {
        iothread_stop(rtt_io);
    }
}

static GMainLoop *rtt_glib_loop;

static gboolean
glib_rtt_complete(gpointer data)
{
    Item *next = rtt_record(data);
    if (next) {
        glib_push(next);
    } else {
        g_main_loop_quit(rtt_glib_loop);
    }
    return G_SOURCE_REMOVE;
}

static void
glib_rtt_func(gpointer data, gpointer user_data)
{
    (void)user_data;
    g_main_context_invoke(g_main_loop_get_context(rtt_glib_loop),
                          glib_rtt_complete, data);
}

static void
uv_rtt_after(uv_work_t *req, int status)
{
    Item *next = rtt_record(container_of(req, Item, uv));
    (void)status;
    if (next) {
        uv_queue_or_die(req->loop, next, uv_empty, uv_rtt_after);
    }
}

static void
round_trip(int lib)
{
    rtt_next = 0;
    items[0].t0 = tlbd_now_ns();
    if (lib == LIB_TLBD) {
        rtt_io = tl_iothread_new("rtt");
        items[0].t0 = tlbd_now_ns();
        items[0].work.func = tl_empty;
        tl_submit_or_die(&items[0], rtt_io, tl_rtt_complete);
        iothread_run(rtt_io);
        iothread_free(rtt_io);
    } else if (lib == LIB_GLIB) {
        GMainContext *ctx = g_main_context_new();
        GThreadPool *saved = glib_pool;
        GError *error = NULL;

        g_main_context_push_thread_default(ctx);
        rtt_glib_loop = g_main_loop_new(ctx, FALSE);
        glib_pool = g_thread_pool_new(glib_rtt_func, NULL, (int)opt.threads,
                                      TRUE, &error);
        if (!glib_pool) {
            fprintf(stderr, "pool-bench: g_thread_pool_new: %s\n",
                    error->message);
            exit(EXIT_FAILURE);
        }
        items[0].t0 = tlbd_now_ns();
        glib_push(&items[0]);
        g_main_loop_run(rtt_glib_loop);
        g_thread_pool_free(glib_pool, FALSE, TRUE);
        glib_pool = saved;
        g_main_loop_unref(rtt_glib_loop);
        g_main_context_pop_thread_default(ctx);
        g_main_context_unref(ctx);
    } else {
        uv_loop_t loop;
        uv_loop_init(&loop);
        items[0].t0 = tlbd_now_ns();
        uv_queue_or_die(&loop, &items[0], uv_empty, uv_rtt_after);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
}

/* Statistics ------------------------------------------------------------ */

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The Pth percentile (0..100) of N sorted values, nearest rank. */
static double
percentile_us(const uint64_t *sorted, unsigned n, double p)
{
    unsigned rank = (unsigned)(p / 100.0 * n + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return sorted[rank - 1] / 1000.0;
}

static double
median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One repetition of every metric for LIB; results go to ROW_VALUES. */
static void
run_lib(int lib, unsigned tasks, double row_values[N_ROWS])
{
    row_values[ROW_TPUT_LOOP_1] = lib_throughput(lib, true, 1, tasks);
    row_values[ROW_TPUT_LOOP_N] =
        lib_throughput(lib, true, opt.submitters, tasks);
    row_values[ROW_TPUT_FUNC_1] = lib_throughput(lib, false, 1, tasks);
    row_values[ROW_TPUT_FUNC_N] =
        lib_throughput(lib, false, opt.submitters, tasks);
    round_trip(lib);
    qsort(rtt, rtt_samples, sizeof(*rtt), cmp_u64);
    row_values[ROW_RTT_P50] = percentile_us(rtt, rtt_samples, 50);
    row_values[ROW_RTT_P99] = percentile_us(rtt, rtt_samples, 99);
}

/* Output ---------------------------------------------------------------- */

static void
row_name(int row, char *buf, size_t len)
{
    switch (row) {
    case ROW_TPUT_LOOP_1:
    case ROW_TPUT_LOOP_N:
        snprintf(buf, len, "tput %u sub, done on loop (k/s)",
                 row == ROW_TPUT_LOOP_1 ? 1 : opt.submitters);
        break;
    case ROW_TPUT_FUNC_1:
    case ROW_TPUT_FUNC_N:
        snprintf(buf, len, "tput %u sub, counted in task (k/s)",
                 row == ROW_TPUT_FUNC_1 ? 1 : opt.submitters);
        break;
    case ROW_RTT_P50:
        snprintf(buf, len, "round trip p50 (us)");
        break;
    default:
        snprintf(buf, len, "round trip p99 (us)");
        break;
    }
}

/* A value, or "-" for a library left out with --only. */
static void
print_cell(int width, double v)
{
    if (isnan(v)) {
        printf(" %*s", width, "-");
    } else {
        printf(" %*.1f", width, v);
    }
}

static void
print_ratio(double a, double b)
{
    if (isnan(a) || isnan(b)) {
        printf(" %9s", "-");
    } else {
        printf(" %9.2f", a / b);
    }
}

static void
print_table(double res[N_ROWS][N_LIBS])
{
    char name[64];

    printf("pool-bench: %u workers, %u tasks, %u submitters, %u round trips,"
           " median of %u reps, %ld CPUs\n"
           "tlbd: worker spin up to %ld ns, I/O thread poll up to %ld ns\n",
           opt.threads, opt.tasks, opt.submitters, rtt_samples, opt.reps,
           sysconf(_SC_NPROCESSORS_ONLN), opt.spin_ns, opt.poll_ns);
    printf("%-36s %10s %12s %10s %9s %9s\n", "metric", lib_names[LIB_TLBD],
           lib_names[LIB_GLIB], lib_names[LIB_UV], "tlbd/GTP", "tlbd/uv");
    for (int r = 0; r < N_ROWS; r++) {
        double scale = r < ROW_RTT_P50 ? 1e-3 : 1.0;
        row_name(r, name, sizeof(name));
        printf("%-36s", name);
        print_cell(10, res[r][LIB_TLBD] * scale);
        print_cell(12, res[r][LIB_GLIB] * scale);
        print_cell(10, res[r][LIB_UV] * scale);
        print_ratio(res[r][LIB_TLBD], res[r][LIB_GLIB]);
        print_ratio(res[r][LIB_TLBD], res[r][LIB_UV]);
        printf("\n");
    }
    printf("throughput: higher is better; round trip: lower is better\n");
}

/* The same figures as the table, in the same units (k tasks/s, us). */
static void
print_json(double res[N_ROWS][N_LIBS])
{
    static const char *const keys[N_ROWS] = {
        "tput_loop_1", "tput_loop_n", "tput_task_1",
        "tput_task_n", "rtt_p50_us",  "rtt_p99_us",
    };
    printf("{\"workers\": %u, \"tasks\": %u, \"submitters\": %u, "
           "\"round_trips\": %u, \"reps\": %u, \"tlbd_spin_ns\": %ld, "
           "\"tlbd_poll_ns\": %ld, \"rows\": [\n",
           opt.threads, opt.tasks, opt.submitters, rtt_samples, opt.reps,
           opt.spin_ns, opt.poll_ns);
    for (int r = 0; r < N_ROWS; r++) {
        double scale = r < ROW_RTT_P50 ? 1e-3 : 1.0;
        printf("  {\"metric\": \"%s\", \"unit\": \"%s\"", keys[r],
               r < ROW_RTT_P50 ? "k tasks/s" : "us");
        for (int l = 0; l < N_LIBS; l++) {
            if (!isnan(res[r][l])) {
                printf(", \"%s\": %.3f", lib_keys[l], res[r][l] * scale);
            }
        }
        printf("}%s\n", r + 1 < N_ROWS ? "," : "");
    }
    printf("]}\n");
}

/* Options --------------------------------------------------------------- */

static _Noreturn void
usage(FILE *fp, int exitcode)
{
    fprintf(fp,
            "usage: pool-bench [--tasks N] [--reps N] [--threads N]\n"
            "                  [--submitters N] [--samples N] [--json]\n"
            "Empty-task throughput and submit-to-complete round trip of\n"
            "the tlbd threadlet pool, GLib's GThreadPool and libuv's\n"
            "uv_queue_work, with the same number of workers.\n"
            "  --tasks N       items per throughput run (200000)\n"
            "  --reps N        repetitions; the table shows medians (5)\n"
            "  --threads N     workers in every pool (4)\n"
            "  --submitters N  submitting threads of the multi rows (4)\n"
            "  --samples N     round trips per repetition (20000, at most\n"
            "                  --tasks)\n"
            "  --json          print JSON instead of the table\n"
            "  --only LIB      run only tlbd, gthreadpool or libuv (for\n"
            "                  profiling)\n"
            "  --spin-ns N     tlbd: largest worker spin window, ns (20000;\n"
            "                  0: off, the library's default)\n"
            "  --poll-ns N     tlbd: largest I/O thread poll window, ns\n"
            "                  (32000; 0: off, the library's default)\n");
    exit(exitcode);
}

static unsigned
parse_count(const char *arg, const char *what, unsigned max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno || *end || end == arg || v < 1 || v > max) {
        fprintf(stderr, "pool-bench: %s: '%s' is not a number from 1 to %u\n",
                what, arg, max);
        exit(EXIT_FAILURE);
    }
    return (unsigned)v;
}

/* A window in nanoseconds, 0 allowed. */
static long
parse_window(const char *arg, const char *what, long max)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || *end || end == arg || v < 0 || v > max) {
        fprintf(stderr, "pool-bench: %s: '%s' is not a number from 0 to %ld\n",
                what, arg, max);
        exit(EXIT_FAILURE);
    }
    return v;
}

static int
parse_lib(const char *arg)
{
    for (int l = 0; l < N_LIBS; l++) {
        if (strcmp(arg, lib_keys[l]) == 0) {
            return l;
        }
    }
    fprintf(stderr,
            "pool-bench: --only: '%s' is not tlbd, gthreadpool or "
            "libuv\n",
            arg);
    exit(EXIT_FAILURE);
}

static void
parse_options(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "json", no_argument, NULL, 'j' },
        { "only", required_argument, NULL, 'o' },
        { "poll-ns", required_argument, NULL, 'P' },
        { "reps", required_argument, NULL, 'r' },
        { "samples", required_argument, NULL, 's' },
        { "spin-ns", required_argument, NULL, 'N' },
        { "submitters", required_argument, NULL, 'S' },
        { "tasks", required_argument, NULL, 'n' },
        { "threads", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    while ((c = getopt_long(argc, argv, "hjn:N:o:P:r:s:S:t:", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout, EXIT_SUCCESS);
        case 'j':
            opt.json = true;
            break;
        case 'o':
            opt.only = parse_lib(optarg);
            break;
        case 'N':
            opt.spin_ns =
                parse_window(optarg, "--spin-ns", THREADLET_MAX_SPIN_NS);
            break;
        case 'P':
            opt.poll_ns =
                parse_window(optarg, "--poll-ns", IOTHREAD_MAX_POLL_NS);
            break;
        case 'n':
            opt.tasks = parse_count(optarg, "--tasks", 100000000);
            break;
        case 'r':
            opt.reps = parse_count(optarg, "--reps", MAX_REPS);
            break;
        case 's':
            opt.samples = parse_count(optarg, "--samples", 100000000);
            break;
        case 'S':
            opt.submitters =
                parse_count(optarg, "--submitters", MAX_SUBMITTERS);
            break;
        case 't':
            opt.threads = parse_count(optarg, "--threads", 1024);
            break;
        default:
            usage(stderr, EXIT_FAILURE);
        }
    }
    if (optind != argc) {
        usage(stderr, EXIT_FAILURE);
    }
    if (opt.submitters > opt.tasks) {
        opt.submitters = opt.tasks;
    }
    rtt_samples = opt.samples < opt.tasks ? opt.samples : opt.tasks;
}

int
main(int argc, char **argv)
{
    static double per_rep[N_ROWS][N_LIBS][MAX_REPS];
    double res[N_ROWS][N_LIBS];
    double warm[N_ROWS];
    char size[16];
    GError *error = NULL;
    int err;

    parse_options(argc, argv);

    /* libuv sizes its one global pool from the environment, on first use. */
    snprintf(size, sizeof(size), "%u", opt.threads);
    setenv("UV_THREADPOOL_SIZE", size, 1);

    items = calloc(opt.tasks, sizeof(*items));
    rtt = calloc(opt.tasks, sizeof(*rtt));
    if (!items || !rtt) {
        fprintf(stderr, "pool-bench: out of memory for %u items\n", opt.tasks);
        return EXIT_FAILURE;
    }
    /* Every pool keeps all its workers for the whole run. */
    err = threadlet_queue_init_named(&tl_queue, "bench", (int)opt.threads,
                                     (int)opt.threads);
    if (err) {
        fprintf(stderr, "pool-bench: threadlet_queue_init: %s\n",
                strerror(-err));
        return EXIT_FAILURE;
    }
    err = threadlet_queue_set_spin_ns(&tl_queue, (unsigned)opt.spin_ns);
    if (err) {
        tlbd_die("threadlet_queue_set_spin_ns", -err);
    }
    glib_pool =
        g_thread_pool_new(glib_func, NULL, (int)opt.threads, TRUE, &error);
    if (!glib_pool) {
        fprintf(stderr, "pool-bench: g_thread_pool_new: %s\n", error->message);
        return EXIT_FAILURE;
    }

    for (unsigned i = 0; i < opt.submitters; i++) {
        glib_ctx[i] = g_main_context_new();
    }

    /* A short warm-up starts libuv's workers and faults the items in. */
    for (int lib = 0; lib < N_LIBS; lib++) {
        if (opt.only >= 0 && lib != opt.only) {
            continue;
        }
        run_lib(lib, opt.tasks < 1000 ? opt.tasks : 1000, warm);
    }
    for (unsigned rep = 0; rep < opt.reps; rep++) {
        /* Rotate the order so that no library always goes first. */
        for (int k = 0; k < N_LIBS; k++) {
            int lib = (int)((rep + (unsigned)k) % N_LIBS);
            double v[N_ROWS];
            if (opt.only >= 0 && lib != opt.only) {
                for (int r = 0; r < N_ROWS; r++) {
                    per_rep[r][lib][rep] = NAN;
                }
                continue;
            }
            run_lib(lib, opt.tasks, v);
            for (int r = 0; r < N_ROWS; r++) {
                per_rep[r][lib][rep] = v[r];
            }
        }
    }
    for (int r = 0; r < N_ROWS; r++) {
        for (int l = 0; l < N_LIBS; l++) {
            res[r][l] = median(per_rep[r][l], opt.reps);
        }
    }
    if (opt.json) {
        print_json(res);
    } else {
        print_table(res);
    }

    g_thread_pool_free(glib_pool, FALSE, TRUE);
    for (unsigned i = 0; i < opt.submitters; i++) {
        g_main_context_unref(glib_ctx[i]);
    }
    threadlet_queue_destroy(&tl_queue, THREADLET_DRAIN);
    free(rtt);
    free(items);
    return EXIT_SUCCESS;
}
