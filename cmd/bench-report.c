/* tlbd: what `tlbd bench` prints: the progress line each second (stderr, on
 * a terminal) and the summary at the end, as text or JSON on stdout, or
 * text on stdout and JSON in a file.  Both forms print the same figures
 * with the same rounding.
 *
 * Main thread only.  The progress line takes the I/O thread's interval
 * counters through iothread_call; the summary runs after the I/O thread
 * stopped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "options.h"
#include "util.h"

typedef struct Interval {
    Bench *b;
    BenchCounters count;
    Histogram lat;
} Interval;

static bool progress_shown;
static uint64_t progress_last_ns;

/* On the I/O thread: take the interval's counters and start a new one. */
static void
take_interval(void *opaque)
{
    Interval *in = opaque;
    Bench *b = in->b;

    in->count = b->icount;
    in->lat = b->ilat;
    memset(&b->icount, 0, sizeof(b->icount));
    hist_init(&b->ilat);
}

static double
us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static double
per_s(uint64_t n, uint64_t ns)
{
    return ns ? (double)n * 1e9 / (double)ns : 0.0;
}

void
bench_progress(Bench *b, uint64_t now_ns)
{
    static Interval in; /* a histogram is too large for the stack */
    ThreadletStats pool;

    if (!progress_last_ns) {
        progress_last_ns = b->start_ns;
    }
    in.b = b;
    iothread_call(b->io, take_interval, &in);
    threadlet_queue_get_stats(&b->queue, &pool);

    uint64_t dt = now_ns - progress_last_ns;
    uint64_t ops = in.count.reads + in.count.writes + in.count.flushes;
    uint64_t bytes = in.count.bytes_read + in.count.bytes_written;
    progress_last_ns = now_ns;
    fprintf(stderr,
            "\r\033[K%5.0fs  %8.0f IOPS  %8.1f MB/s  p99 %8.1f us  qd %4u  "
            "threads %u",
            (double)(now_ns - b->start_ns) / 1e9, per_s(ops, dt),
            per_s(bytes, dt) / 1e6, us(hist_percentile(&in.lat, 99.0)),
            atomic_load(&b->in_flight), pool.cur_threads);
    fflush(stderr);
    progress_shown = true;
}

/* Figures shared by both output forms. */
typedef struct Figures {
    double elapsed_s;
    double final_s;
    uint64_t requests;
    double iops;
    double read_iops;
    double write_iops;
    double mbps;
    double read_mbps;
    double write_mbps;
    const char *result;
    uint64_t peak_rss_kib; /* the process's, so far: its VmHWM */
} Figures;

static void
compute(const Bench *b, Figures *f)
{
    const BenchCounters *c = &b->count;
    uint64_t ns = b->end_ns - b->start_ns;
    struct rusage ru;

    f->elapsed_s = (double)ns / 1e9;
    f->final_s = (double)(b->final_end_ns - b->end_ns) / 1e9;
    f->requests = c->reads + c->writes + c->flushes + c->getsizes +
                  c->discards + c->zeroouts;
    f->iops = per_s(f->requests, ns);
    f->read_iops = per_s(c->reads, ns);
    f->write_iops = per_s(c->writes, ns);
    f->read_mbps = per_s(c->bytes_read, ns) / 1e6;
    f->write_mbps = per_s(c->bytes_written, ns) / 1e6;
    f->mbps = per_s(c->bytes_read + c->bytes_written, ns) / 1e6;
    f->peak_rss_kib =
        getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss : 0;
    if (b->failure || c->errors) {
        f->result = "failed";
    } else if (b->cfg.verify) {
        f->result = "ok";
    } else {
        f->result = "off";
    }
}

static const double percentiles[] = { 50.0, 90.0, 99.0, 99.9 };
static const char *const percentile_names[] = { "p50", "p90", "p99", "p99.9" };

static void
text_latency(const char *label, const Histogram *h)
{
    printf("  %-9s", label);
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(percentiles); i++) {
        printf(" %s %.1f", percentile_names[i],
               us(hist_percentile(h, percentiles[i])));
    }
    printf(" max %.1f us (mean %.1f)\n", us(h->count ? h->max : 0),
           us(hist_mean(h)));
}

void
bench_print_params(FILE *fp, const Bench *b)
{
    const BenchConfig *cfg = &b->cfg;

    fprintf(fp, "%s (%" PRIu64 " bytes, cache %s), %u vcpus x iodepth %u, %s",
            cfg->image, b->nunits * b->unit, cfg->cache_name, cfg->vcpus,
            cfg->iodepth, bench_rw_name(cfg->rw));
    if (cfg->rw == BENCH_RANDRW) {
        fprintf(fp, " %u%% reads", cfg->mix);
    }
    if (cfg->bs_min == cfg->bs_max) {
        fprintf(fp, ", bs %" PRIu64, cfg->bs_min);
    } else {
        fprintf(fp, ", bs %" PRIu64 "-%" PRIu64, cfg->bs_min, cfg->bs_max);
    }
    if (cfg->flush_every) {
        fprintf(fp, ", flush every %" PRIu64, cfg->flush_every);
    }
    if (cfg->ioctl_mix) {
        fprintf(fp, ", ioctl mix %u%%", cfg->ioctl_mix);
    }
    fprintf(fp, "%s, seed %" PRIu64, cfg->fua ? ", fua" : "", cfg->seed);
}

static void
report_text(const Bench *b, const Figures *f, const ThreadletStats *pool,
            const IOThreadStats *ios)
{
    const BenchConfig *cfg = &b->cfg;
    const BenchCounters *c = &b->count;

    printf("tlbd bench: ");
    bench_print_params(stdout, b);
    printf("\n");
    printf("  elapsed   %.2f s\n", f->elapsed_s);
    printf("  requests  %" PRIu64 " (reads %" PRIu64 ", writes %" PRIu64
           ", flushes %" PRIu64 ")\n",
           f->requests, c->reads, c->writes, c->flushes);
    if (cfg->ioctl_mix) {
        printf("  ioctls    %u%%: getsize %" PRIu64 ", discard %" PRIu64
               ", zeroout %" PRIu64 "\n",
               cfg->ioctl_mix, c->getsizes, c->discards, c->zeroouts);
    }
    printf("  IOPS      %.0f (read %.0f, write %.0f)\n", f->iops, f->read_iops,
           f->write_iops);
    printf("  MB/s      %.1f (read %.1f, write %.1f)\n", f->mbps, f->read_mbps,
           f->write_mbps);
    text_latency("latency", &b->lat_all);
    if (c->reads && c->writes) {
        text_latency("reads", &b->lat_op[BENCH_OP_READ]);
        text_latency("writes", &b->lat_op[BENCH_OP_WRITE]);
    }
    printf("  pool      workers now %u (%u idle), peak %u, spawned %" PRIu64
           ", min %u max %u; submitted %" PRIu64 ", completed %" PRIu64
           ", cancelled %" PRIu64 "; queued avg %.1f us, max %.1f us\n",
           pool->cur_threads, pool->idle_threads, pool->peak_threads,
           pool->spawned, pool->min_threads, pool->max_threads, pool->submitted,
           pool->completed, pool->cancelled,
           pool->wait_samples ? us(pool->wait_ns_total / pool->wait_samples)
                              : 0.0,
           us(pool->wait_ns_max));
    printf("  iothread  completions %" PRIu64 ", kicks %" PRIu64
           ", wake-ups %" PRIu64 ", batches %" PRIu64 ", largest batch %" PRIu64
           "\n",
           ios->posted, ios->kicks, ios->wakeups, ios->batches, ios->max_batch);
    printf("  memory    peak RSS %.1f MiB\n", (double)f->peak_rss_kib / 1024);
    if (!strcmp(f->result, "failed")) {
        printf("  verify    FAILED: %s\n",
               b->failure ? b->failure : "I/O errors");
    } else if (!strcmp(f->result, "off")) {
        printf("  verify    off\n");
    } else {
        printf("  verify    ok: %" PRIu64 " blocks checked by reads, %" PRIu64
               " by the final pass (%.2f s), 0 errors\n",
               c->blocks_checked, c->final_blocks, f->final_s);
    }
}

static void
json_latency(FILE *fp, const char *name, const Histogram *h, const char *sep)
{
    fprintf(fp, "  \"%s\": {", name);
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(percentiles); i++) {
        fprintf(fp, "\"%s\": %.1f, ", percentile_names[i],
                us(hist_percentile(h, percentiles[i])));
    }
    fprintf(fp, "\"max\": %.1f, \"mean\": %.1f, \"count\": %" PRIu64 "}%s\n",
            us(h->count ? h->max : 0), us(hist_mean(h)), h->count, sep);
}

static void
report_json(FILE *fp, const Bench *b, const Figures *f,
            const ThreadletStats *pool, const IOThreadStats *ios)
{
    const BenchConfig *cfg = &b->cfg;
    const BenchCounters *c = &b->count;

    fprintf(fp, "{\n  \"image\": ");
    tlbd_json_string(fp, cfg->image);
    fprintf(fp,
            ",\n  \"size\": %" PRIu64 ",\n  \"cache\": ", b->nunits * b->unit);
    tlbd_json_string(fp, cfg->cache_name);
    fprintf(fp,
            ",\n  \"vcpus\": %u,\n  \"iodepth\": %u,\n  \"rw\": \"%s\",\n"
            "  \"mix\": %u,\n  \"bs_min\": %" PRIu64 ",\n  \"bs_max\": %" PRIu64
            ",\n  \"flush_every\": %" PRIu64 ",\n  \"fua\": %s,\n"
            "  \"seed\": %" PRIu64 ",\n  \"verify\": %s,\n",
            cfg->vcpus, cfg->iodepth, bench_rw_name(cfg->rw), cfg->mix,
            cfg->bs_min, cfg->bs_max, cfg->flush_every,
            cfg->fua ? "true" : "false", cfg->seed,
            cfg->verify ? "true" : "false");
    fprintf(fp,
            "  \"elapsed_s\": %.2f,\n  \"requests\": %" PRIu64 ",\n"
            "  \"reads\": %" PRIu64 ",\n  \"writes\": %" PRIu64 ",\n"
            "  \"flushes\": %" PRIu64 ",\n  \"bytes_read\": %" PRIu64 ",\n"
            "  \"bytes_written\": %" PRIu64 ",\n",
            f->elapsed_s, f->requests, c->reads, c->writes, c->flushes,
            c->bytes_read, c->bytes_written);
    fprintf(fp,
            "  \"ioctl_mix\": %u,\n  \"getsizes\": %" PRIu64 ",\n"
            "  \"discards\": %" PRIu64 ",\n  \"zeroouts\": %" PRIu64 ",\n",
            cfg->ioctl_mix, c->getsizes, c->discards, c->zeroouts);
    fprintf(fp,
            "  \"iops\": %.0f,\n  \"read_iops\": %.0f,\n"
            "  \"write_iops\": %.0f,\n  \"mbps\": %.1f,\n"
            "  \"read_mbps\": %.1f,\n  \"write_mbps\": %.1f,\n",
            f->iops, f->read_iops, f->write_iops, f->mbps, f->read_mbps,
            f->write_mbps);
    json_latency(fp, "latency_us", &b->lat_all, ",");
    json_latency(fp, "read_latency_us", &b->lat_op[BENCH_OP_READ], ",");
    json_latency(fp, "write_latency_us", &b->lat_op[BENCH_OP_WRITE], ",");
    fprintf(fp,
            "  \"pool\": {\"threads\": %u, \"idle\": %u, \"peak\": %u, "
            "\"spawned\": %" PRIu64 ", \"min\": %u, \"max\": %u, "
            "\"submitted\": %" PRIu64 ", \"completed\": %" PRIu64
            ", \"cancelled\": %" PRIu64 ", \"queued_avg_us\": %.1f, "
            "\"queued_max_us\": %.1f},\n",
            pool->cur_threads, pool->idle_threads, pool->peak_threads,
            pool->spawned, pool->min_threads, pool->max_threads,
            pool->submitted, pool->completed, pool->cancelled,
            pool->wait_samples ? us(pool->wait_ns_total / pool->wait_samples)
                               : 0.0,
            us(pool->wait_ns_max));
    fprintf(fp,
            "  \"iothread\": {\"completions\": %" PRIu64 ", \"kicks\": %" PRIu64
            ", \"wakeups\": %" PRIu64 ", \"batches\": %" PRIu64
            ", \"max_batch\": %" PRIu64 "},\n",
            ios->posted, ios->kicks, ios->wakeups, ios->batches,
            ios->max_batch);
    fprintf(fp, "  \"peak_rss_kib\": %" PRIu64 ",\n", f->peak_rss_kib);
    fprintf(
        fp,
        "  \"verification\": {\"result\": \"%s\", \"blocks_checked\": %" PRIu64
        ", \"final_blocks\": %" PRIu64 ", \"final_s\": %.2f, "
        "\"failure\": ",
        f->result, c->blocks_checked, c->final_blocks, f->final_s);
    if (b->failure) {
        tlbd_json_string(fp, b->failure);
    } else {
        fprintf(fp, "null");
    }
    fprintf(fp, "},\n  \"errors\": %" PRIu64 "\n}\n", c->errors);
}

int
bench_report(Bench *b, const ThreadletStats *pool, const IOThreadStats *ios)
{
    Figures f;

    if (progress_shown) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    compute(b, &f);
    if (!b->cfg.json || b->cfg.json_file) {
        report_text(b, &f, pool, ios);
    }
    if (b->cfg.json && !b->cfg.json_file) {
        report_json(stdout, b, &f, pool, ios);
    }
    fflush(stdout);
    if (b->cfg.json_file) {
        FILE *fp = fopen(b->cfg.json_file, "w");
        if (!fp) {
            fprintf(stderr, "tlbd: cannot create '%s': %s\n", b->cfg.json_file,
                    strerror(errno));
            return -1;
        }
        report_json(fp, b, &f, pool, ios);
        if (fclose(fp) == EOF) {
            fprintf(stderr, "tlbd: cannot write '%s': %s\n", b->cfg.json_file,
                    strerror(errno));
            return -1;
        }
    }
    return 0;
}
