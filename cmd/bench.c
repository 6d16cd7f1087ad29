/* tlbd: `tlbd bench`, the vcpu generator: options, set-up, the timed run and
 * tear-down.  The vcpu threads and the completions live in bench-io.c, the
 * block format in bench-verify.c, the output in bench-report.c.
 *
 * Threads: the main thread parses options, creates the threadlet pool, the
 * I/O thread and the BlockDev, starts the vcpu threads, prints a progress
 * line each second while it waits for them, and reports.  It sees the I/O
 * thread's counters through iothread_call while the run goes on, and
 * directly once the I/O thread has stopped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cleanup.h"
#include "options.h"
#include "subcommands.h"
#include "util.h"

#define MAX_VCPUS   256
#define MAX_IODEPTH 1024
#define MAX_BS      (64ull << 20)
#define FINAL_CHUNK (64u << 10)

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void __attribute__((noreturn)) usage(FILE *fp, int exitcode)
{
    fprintf(
        fp,
        "usage: tlbd bench [--vcpus N] [--iodepth D] [--rw MODE] [--mix PCT]\n"
        "                  [--bs SIZE|MIN-MAX] [--flush-every N] [--fua]\n"
        "                  [--duration T] [--ops N] [--seed S] "
        "[--[no-]verify]\n"
        "                  [--size SIZE] [--DEVICE-OPTION=VALUE...] "
        "[--json[=FILE]]\n"
        "                  [--[no-]progress] [--ioctl-mix PCT]\n"
        "                  [--ioctl-kinds LIST] [--plot FILE.svg] IMAGE\n");
    if (fp == stdout) {
        fprintf(
            fp,
            "\n"
            "Drive IMAGE with N vcpu threads, each keeping D requests in "
            "flight through\n"
            "the I/O thread into the threadlet pool, and verify every block "
            "read.\n"
            "\n"
            "  --vcpus N           vcpu threads (default 2)\n"
            "  --iodepth D         requests in flight per vcpu (default 16)\n"
            "  --rw MODE           read, write, randread, randwrite or randrw "
            "(default)\n"
            "  --mix PCT           percent of reads with randrw (default 50)\n"
            "  --bs SIZE|MIN-MAX   request size, or a range (default 4k)\n"
            "  --flush-every N     a flush after every N writes of a vcpu\n"
            "  --fua               writes are FUA (durable on completion)\n"
            "  --duration T        run for T (10, 10s, 500ms, 2m; default "
            "10s)\n"
            "  --ops N             stop after N requests\n"
            "  --seed S            seed of the request pattern\n"
            "  --verify, --no-verify  check every read (default: on when "
            "writing)\n"
            "  --size SIZE         create IMAGE with SIZE bytes when it is "
            "missing\n"
            "  --json[=FILE]       print the summary as JSON (to FILE: as "
            "well)\n"
            "  --progress, --no-progress  a progress line each second on "
            "stderr\n"
            "                      (default: when stderr is a terminal)\n"
            "  --ioctl-mix PCT     percent of requests that are ioctl kinds "
            "(default 0)\n"
            "  --ioctl-kinds LIST  of getsize (BLKGETSIZE64, block devices "
            "only),\n"
            "                      discard, zeroout (default: all three)\n"
            "  --plot FILE.svg     draw the run: IOPS each second, latency "
            "distributions\n"
            "DEVICE-OPTION: the image and the threadlet pool (defaults: "
            "threads-min 0, "
            "threads-max\n"
            "%d):\n",
            threadlet_default_max_threads());
        blockdev_print_options(fp, "  --");
        fprintf(fp, "\nSee tlbd(1).\n");
    }
    exit(exitcode);
}

enum {
    HELP_OPTION = 256,
    LONG_OPTIONS,
    SHORT_OPTIONS,
    VCPUS_OPTION,
    IODEPTH_OPTION,
    RW_OPTION,
    MIX_OPTION,
    BS_OPTION,
    FLUSH_EVERY_OPTION,
    FUA_OPTION,
    DURATION_OPTION,
    OPS_OPTION,
    SEED_OPTION,
    VERIFY_OPTION,
    NO_VERIFY_OPTION,
    SIZE_OPTION,
    JSON_OPTION,
    PROGRESS_OPTION,
    NO_PROGRESS_OPTION,
    IOCTL_MIX_OPTION,
    IOCTL_KINDS_OPTION,
    PLOT_OPTION,
};

static const char short_options[] = "h";
static const struct option own_options[] = {
    { "help", no_argument, NULL, HELP_OPTION },
    { "long-options", no_argument, NULL, LONG_OPTIONS },
    { "short-options", no_argument, NULL, SHORT_OPTIONS },
    { "vcpus", required_argument, NULL, VCPUS_OPTION },
    { "iodepth", required_argument, NULL, IODEPTH_OPTION },
    { "rw", required_argument, NULL, RW_OPTION },
    { "mix", required_argument, NULL, MIX_OPTION },
    { "bs", required_argument, NULL, BS_OPTION },
    { "flush-every", required_argument, NULL, FLUSH_EVERY_OPTION },
    { "fua", no_argument, NULL, FUA_OPTION },
    { "duration", required_argument, NULL, DURATION_OPTION },
    { "ops", required_argument, NULL, OPS_OPTION },
    { "seed", required_argument, NULL, SEED_OPTION },
    { "verify", no_argument, NULL, VERIFY_OPTION },
    { "no-verify", no_argument, NULL, NO_VERIFY_OPTION },
    { "size", required_argument, NULL, SIZE_OPTION },
    { "json", optional_argument, NULL, JSON_OPTION },
    { "progress", no_argument, NULL, PROGRESS_OPTION },
    { "no-progress", no_argument, NULL, NO_PROGRESS_OPTION },
    { "ioctl-mix", required_argument, NULL, IOCTL_MIX_OPTION },
    { "ioctl-kinds", required_argument, NULL, IOCTL_KINDS_OPTION },
    { "plot", required_argument, NULL, PLOT_OPTION },
    { NULL, 0, NULL, 0 },
};

static const char *const rw_names[] = {
    [BENCH_READ] = "read",         [BENCH_WRITE] = "write",
    [BENCH_RANDREAD] = "randread", [BENCH_RANDWRITE] = "randwrite",
    [BENCH_RANDRW] = "randrw",
};

const char *
bench_rw_name(BenchRw rw)
{
    return rw_names[rw];
}

/* A bad option value: one line naming it, then the usage line. */
static void __attribute__((noreturn))
bad(const char *option, const char *value, const char *reason)
{
    tlbd_bad_value(option, value, reason);
    usage(stderr, EXIT_FAILURE);
}

static uint64_t
parse_uint_opt(const char *option, const char *value, uint64_t min,
               uint64_t max)
{
    uint64_t v;

    if (!tlbd_uint_option(option, value, min, max, &v)) {
        usage(stderr, EXIT_FAILURE);
    }
    return v;
}

/* "SIZE" or "MIN-MAX": multiples of 512, at most MAX_BS. */
static void
parse_bs(const char *value, BenchConfig *cfg)
{
    CLEANUP_FREE char *copy = strdup(value);
    char *dash;

    if (!copy) {
        tlbd_die("strdup", ENOMEM);
    }
    dash = strchr(copy, '-');
    if (dash) {
        *dash = '\0';
    }
    if (tlbd_parse_size(copy, &cfg->bs_min) < 0 ||
        tlbd_parse_size(dash ? dash + 1 : copy, &cfg->bs_max) < 0) {
        bad("--bs", value, "expected a size (4k) or a range (4k-64k)");
    }
    if (cfg->bs_min == 0 || cfg->bs_min % 512 || cfg->bs_max % 512) {
        bad("--bs", value, "sizes must be non-zero multiples of 512");
    }
    if (cfg->bs_min > cfg->bs_max) {
        bad("--bs", value, "the minimum is larger than the maximum");
    }
    if (cfg->bs_max > MAX_BS) {
        bad("--bs", value, "at most 64M");
    }
}

static void
parse_args(int argc, char **argv, BenchConfig *cfg)
{
    const struct option *long_options = tlbd_long_options(own_options);
    int verify = -1;
    bool mix_set = false;
    bool duration_set = false;
    int progress = -1;
    bool seed_set = false;
    uint64_t v;
    int idx;
    int c;

    memset(cfg, 0, sizeof(*cfg));
    cfg->vcpus = 2;
    cfg->iodepth = 16;
    cfg->rw = BENCH_RANDRW;
    cfg->mix = 50;
    cfg->ioctl_kinds = BENCH_IOCTL_ALL;
    cfg->bs_min = cfg->bs_max = 4096;
    blockdev_options_init(&cfg->bdopts);
    cfg->bdopts.pool.threads_min = 0;

    argv[0] = (char *)"tlbd"; /* getopt's messages: "tlbd: ..." */
    optind = 1;
    while ((c = getopt_long(argc, argv, short_options, long_options, &idx)) !=
           -1) {
        switch (c) {
        case 'h':
        case HELP_OPTION:
            usage(stdout, EXIT_SUCCESS);
        case LONG_OPTIONS:
            tlbd_print_options(long_options, short_options, true);
        case SHORT_OPTIONS:
            tlbd_print_options(long_options, short_options, false);
        case VCPUS_OPTION:
            cfg->vcpus = parse_uint_opt("--vcpus", optarg, 1, MAX_VCPUS);
            break;
        case IODEPTH_OPTION:
            cfg->iodepth = parse_uint_opt("--iodepth", optarg, 1, MAX_IODEPTH);
            break;
        case RW_OPTION: {
            size_t i;
            for (i = 0; i < TLBD_ARRAY_SIZE(rw_names); i++) {
                if (!strcmp(optarg, rw_names[i])) {
                    break;
                }
            }
            if (i == TLBD_ARRAY_SIZE(rw_names)) {
                bad("--rw", optarg,
                    "expected read, write, randread, randwrite or randrw");
            }
            cfg->rw = (BenchRw)i;
            break;
        }
        case MIX_OPTION:
            cfg->mix = parse_uint_opt("--mix", optarg, 0, 100);
            mix_set = true;
            break;
        case BS_OPTION:
            parse_bs(optarg, cfg);
            break;
        case FLUSH_EVERY_OPTION:
            cfg->flush_every =
                parse_uint_opt("--flush-every", optarg, 1, UINT32_MAX);
            break;
        case FUA_OPTION:
            cfg->fua = true;
            break;
        case DURATION_OPTION:
            if (tlbd_parse_duration(optarg, &cfg->duration_ns) < 0 ||
                cfg->duration_ns == 0) {
                bad("--duration", optarg,
                    "expected a time such as 10, 10s, 500ms or 2m");
            }
            duration_set = true;
            break;
        case OPS_OPTION:
            cfg->ops = parse_uint_opt("--ops", optarg, 1, UINT64_MAX / 2);
            break;
        case SEED_OPTION:
            cfg->seed = parse_uint_opt("--seed", optarg, 0, UINT64_MAX);
            seed_set = true;
            break;
        case VERIFY_OPTION:
            verify = 1;
            break;
        case NO_VERIFY_OPTION:
            verify = 0;
            break;
        case SIZE_OPTION:
            if (tlbd_parse_size(optarg, &v) < 0 || v == 0 || v > INT64_MAX) {
                bad("--size", optarg, "expected a size such as 1G");
            }
            cfg->size = v;
            break;
        case TLBD_BLOCKDEV_OPTION:
            if (!tlbd_blockdev_option(&cfg->bdopts, long_options[idx].name,
                                      optarg)) {
                usage(stderr, EXIT_FAILURE);
            }
            break;
        case JSON_OPTION:
            cfg->json = true;
            cfg->json_file = optarg;
            break;
        case PROGRESS_OPTION:
            progress = 1;
            break;
        case NO_PROGRESS_OPTION:
            progress = 0;
            break;
        case IOCTL_MIX_OPTION:
            cfg->ioctl_mix = parse_uint_opt("--ioctl-mix", optarg, 0, 100);
            break;
        case IOCTL_KINDS_OPTION:
            if (bench_parse_ioctl_kinds(optarg, &cfg->ioctl_kinds) < 0) {
                bad("--ioctl-kinds", optarg,
                    "expected a list of getsize, discard, zeroout");
            }
            break;
        case PLOT_OPTION:
            if (!*optarg) {
                bad("--plot", optarg, "expected a file name");
            }
            cfg->plot_file = optarg;
            break;
        default:
            usage(stderr, EXIT_FAILURE);
        }
    }

    if (argc - optind != 1) {
        fprintf(stderr, "tlbd: bench: %s\n",
                argc == optind ? "missing IMAGE" : "too many arguments");
        usage(stderr, EXIT_FAILURE);
    }
    cfg->image = argv[optind];

    if (mix_set && cfg->rw != BENCH_RANDRW) {
        fprintf(stderr, "tlbd: --mix: only applies to --rw randrw\n");
        usage(stderr, EXIT_FAILURE);
    }
    if (!tlbd_blockdev_check(&cfg->bdopts)) {
        usage(stderr, EXIT_FAILURE);
    }
    cfg->cache_name =
        cfg->bdopts.cache == BLOCKDEV_CACHE_NONE ? "none" : "writeback";
    if (!duration_set && cfg->ops == 0) {
        cfg->duration_ns = 10 * 1000000000ull;
    }
    cfg->verify = verify < 0 ? bench_writes(cfg) : verify;
    if (cfg->flush_every && !bench_writes(cfg)) {
        fprintf(stderr, "tlbd: --flush-every: the run does not write\n");
        usage(stderr, EXIT_FAILURE);
    }
    cfg->progress = progress < 0 ? isatty(STDERR_FILENO) : progress;

    const char *hook = getenv("TLBD_BENCH_CORRUPT_AFTER");
    if (hook && *hook) {
        cfg->corrupt_after =
            parse_uint_opt("TLBD_BENCH_CORRUPT_AFTER", hook, 1, UINT64_MAX);
    }
    if (!seed_set) {
        cfg->seed = (tlbd_now_ns() ^ ((uint64_t)getpid() << 32)) & INT64_MAX;
    }
}

/* Create IMAGE as a sparse file of --size bytes if it is missing.  Returns
 * 1 when it created it, 0 when it exists, -1 after printing an error.
 */
static int
create_image(const BenchConfig *cfg)
{
    struct stat st;

    if (stat(cfg->image, &st) == 0 || errno != ENOENT || cfg->size == 0) {
        return 0; /* blockdev_open reports any problem */
    }
    int fd = open(cfg->image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "tlbd: cannot create '%s': %s\n", cfg->image,
                strerror(errno));
        return -1;
    }
    if (ftruncate(fd, (off_t)cfg->size) < 0) {
        fprintf(stderr, "tlbd: cannot set the size of '%s': %s\n", cfg->image,
                strerror(errno));
        close(fd);
        unlink(cfg->image);
        return -1;
    }
    close(fd);
    return 1;
}

/* The largest power of two up to 4096 dividing both request sizes. */
static uint64_t
choose_unit(const BenchConfig *cfg)
{
    uint64_t unit = 4096;
    while (cfg->bs_min % unit || cfg->bs_max % unit) {
        unit /= 2;
    }
    return unit;
}

/* Block sizes, regions, slots and the block table.  Returns 0, or -1 after
 * printing an error.
 */
static int
setup_geometry(Bench *b)
{
    const BenchConfig *cfg = &b->cfg;
    unsigned align = blockdev_alignment(b->bd);

    b->unit = choose_unit(cfg);
    if (b->unit % align) {
        fprintf(stderr,
                "tlbd: --bs: requests must be multiples of %u, "
                "the alignment of '%s' with --cache none\n",
                align, cfg->image);
        return -1;
    }
    b->nunits = blockdev_size(b->bd) / b->unit;
    if (b->nunits / cfg->vcpus < cfg->bs_max / b->unit) {
        fprintf(stderr,
                "tlbd: '%s' (%" PRIu64 " bytes) is too small for %u "
                "vcpus with requests of %" PRIu64 " bytes\n",
                cfg->image, blockdev_size(b->bd), cfg->vcpus, cfg->bs_max);
        return -1;
    }
    b->bufsize = cfg->bs_max > FINAL_CHUNK ? cfg->bs_max : FINAL_CHUNK;
    if (cfg->verify || bench_writes(cfg)) {
        b->blocks = calloc(b->nunits, sizeof(*b->blocks));
        if (!b->blocks) {
            fprintf(stderr,
                    "tlbd: '%s' is too large to track (%" PRIu64
                    " blocks); try --no-verify or a larger --bs\n",
                    cfg->image, b->nunits);
            return -1;
        }
    }
    if (getrandom(&b->run_id, sizeof(b->run_id), 0) != sizeof(b->run_id)) {
        b->run_id = bench_mix64(tlbd_now_ns() ^ (uint64_t)getpid());
    }

    uint64_t per = b->nunits / cfg->vcpus;
    b->vcpus = calloc(cfg->vcpus, sizeof(*b->vcpus));
    if (!b->vcpus) {
        goto out_nomem;
    }
    for (unsigned i = 0; i < cfg->vcpus; i++) {
        BenchVcpu *v = &b->vcpus[i];
        v->bench = b;
        v->index = i;
        v->first_unit = i * per;
        v->nunits = per;
        v->rng = bench_mix64(cfg->seed + i);
        pthread_mutex_init(&v->lock, NULL);
        pthread_cond_init(&v->cond, NULL);
        SLIST_INIT(&v->free);
        v->reqs = calloc(cfg->iodepth, sizeof(*v->reqs));
        if (!v->reqs) {
            goto out_nomem;
        }
        for (unsigned j = 0; j < cfg->iodepth; j++) {
            BenchReq *r = &v->reqs[j];
            r->vcpu = v;
            if (posix_memalign(&r->buf, 4096, b->bufsize)) {
                r->buf = NULL;
                goto out_nomem;
            }
            SLIST_INSERT_HEAD(&v->free, r, next_free);
            v->nfree++;
        }
    }
    return 0;

out_nomem:
    fprintf(stderr, "tlbd: bench: cannot allocate request buffers: %s\n",
            strerror(ENOMEM));
    return -1;
}

static void
free_vcpus(Bench *b)
{
    if (!b->vcpus) {
        return;
    }
    for (unsigned i = 0; i < b->cfg.vcpus; i++) {
        BenchVcpu *v = &b->vcpus[i];
        if (v->reqs) {
            for (unsigned j = 0; j < b->cfg.iodepth; j++) {
                free(v->reqs[j].buf);
            }
        }
        free(v->reqs);
        pthread_mutex_destroy(&v->lock);
        pthread_cond_destroy(&v->cond);
    }
    free(b->vcpus);
    b->vcpus = NULL;
}

/* Start the vcpu threads with every signal blocked: the main thread takes
 * SIGINT and SIGTERM.  Returns 0 or -errno.
 */
static int
start_vcpus(Bench *b)
{
    sigset_t all;
    sigset_t old;
    int err = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    b->start_ns = tlbd_now_ns();
    for (unsigned i = 0; i < b->cfg.vcpus && !err; i++) {
        BenchVcpu *v = &b->vcpus[i];
        err = pthread_create(&v->thread, NULL, bench_vcpu_thread, v);
        if (!err) {
            v->started = true;
            tlbd_mutex_lock(&b->lock);
            b->running++;
            tlbd_mutex_unlock(&b->lock);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -err;
}

static void
timespec_at(struct timespec *ts, uint64_t ns)
{
    ts->tv_sec = (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

/* The timed phase: wait for the vcpus, end it at the deadline or on a
 * signal, print a progress line each second.
 */
static void
run_timed(Bench *b)
{
    const BenchConfig *cfg = &b->cfg;
    uint64_t deadline = cfg->duration_ns ? b->start_ns + cfg->duration_ns : 0;
    uint64_t tick = b->start_ns + 1000000000u;

    tlbd_mutex_lock(&b->lock);
    while (b->running > 0) {
        uint64_t now = tlbd_now_ns();
        if ((deadline && now >= deadline) || interrupted) {
            atomic_store(&b->stop, true);
        }
        if (cfg->progress && now >= tick) {
            tlbd_mutex_unlock(&b->lock);
            bench_progress(b, now);
            tlbd_mutex_lock(&b->lock);
            tick += 1000000000u;
            continue;
        }
        uint64_t wake = now + 100000000u; /* see signals soon */
        if (deadline && deadline < wake && !atomic_load(&b->stop)) {
            wake = deadline;
        }
        if (cfg->progress && tick < wake) {
            wake = tick;
        }
        struct timespec ts;
        timespec_at(&ts, wake);
        pthread_cond_timedwait(&b->cond, &b->lock, &ts);
    }
    b->end_ns = tlbd_now_ns();
    tlbd_mutex_unlock(&b->lock);
}

static void
run_final(Bench *b)
{
    tlbd_mutex_lock(&b->lock);
    b->do_final =
        b->cfg.verify && bench_writes(&b->cfg) && !atomic_load(&b->failed);
    b->final_go = true;
    pthread_cond_broadcast(&b->cond);
    tlbd_mutex_unlock(&b->lock);
}

static void
join_vcpus(Bench *b)
{
    for (unsigned i = 0; i < b->cfg.vcpus; i++) {
        if (b->vcpus[i].started) {
            pthread_join(b->vcpus[i].thread, NULL);
            b->vcpus[i].started = false;
        }
    }
}

static int
open_corrupt_fd(Bench *b)
{
    b->corrupt_fd = -1;
    if (!b->cfg.corrupt_after) {
        return 0;
    }
    b->corrupt_fd = open(b->cfg.image, O_WRONLY | O_CLOEXEC);
    if (b->corrupt_fd < 0) {
        fprintf(stderr, "tlbd: cannot open '%s': %s\n", b->cfg.image,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Create the pool, the I/O thread and the BlockDev.  -1 after an error. */
static int
open_all(Bench *b)
{
    const BenchConfig *cfg = &b->cfg;
    BlockDevOptions opts;
    CLEANUP_FREE char *errmsg = NULL;
    int ret;

    ret = threadlet_queue_init_named(&b->queue, "bench",
                                     cfg->bdopts.pool.threads_max,
                                     cfg->bdopts.pool.threads_min);
    if (ret < 0) {
        fprintf(stderr, "tlbd: cannot start the threadlet pool: %s\n",
                strerror(-ret));
        return -1;
    }
    threadlet_queue_set_idle_timeout(&b->queue,
                                     cfg->bdopts.pool.idle_timeout_ms);
    b->queue_ready = true;
    ret = iothread_new("bench", &b->io);
    if (ret == 0) {
        ret = iothread_start(b->io);
    }
    if (ret < 0) {
        fprintf(stderr, "tlbd: cannot start the I/O thread: %s\n",
                strerror(-ret));
        return -1;
    }
    opts = cfg->bdopts;
    opts.readonly = !bench_writes(cfg);
    opts.queue = &b->queue;
    opts.iothread = b->io;
    ret = blockdev_open(cfg->image, &opts, &b->bd, &errmsg);
    if (ret < 0) {
        if (errmsg) {
            fprintf(stderr, "tlbd: %s\n", errmsg);
        } else {
            fprintf(stderr, "tlbd: cannot open '%s': %s\n", cfg->image,
                    strerror(-ret));
        }
        return -1;
    }
    ret = blockdev_serve(b->bd);
    if (ret < 0) {
        fprintf(stderr, "tlbd: cannot start the control channel: %s\n",
                strerror(-ret));
        return -1;
    }
    return 0;
}

static void
close_all(Bench *b)
{
    blockdev_close(b->bd);
    b->bd = NULL;
    if (b->queue_ready) {
        threadlet_queue_destroy(&b->queue, THREADLET_DRAIN);
        b->queue_ready = false;
    }
    if (b->io) {
        iothread_free(b->io);
        b->io = NULL;
    }
    if (b->corrupt_fd >= 0) {
        close(b->corrupt_fd);
    }
    bench_plot_close(b);
    free_vcpus(b);
    free(b->blocks);
    free(b->failure);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
}

int
tlbd_bench_main(int argc, char **argv)
{
    static Bench bench; /* large (histograms); one per process */
    Bench *b = &bench;
    ThreadletStats pool;
    IOThreadStats ios;
    pthread_condattr_t attr;
    int created;
    int status = EXIT_FAILURE;

    parse_args(argc, argv, &b->cfg);

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&b->lock, NULL);
    hist_init(&b->lat_all);
    for (unsigned i = 0; i < BENCH_OP_COUNT; i++) {
        hist_init(&b->lat_op[i]);
    }
    hist_init(&b->ilat);
    b->corrupt_fd = -1;
    b->plot_fd = -1;

    /* Before the image: a picture that cannot be written stops the run
     * before anything else happens.
     */
    created = 0;
    if (bench_plot_open(b) < 0) {
        goto out;
    }
    created = create_image(&b->cfg);
    if (created < 0) {
        goto out;
    }
    b->known_zero = created == 1;
    if (open_all(b) < 0 || setup_geometry(b) < 0 || bench_ioctl_setup(b) < 0 ||
        open_corrupt_fd(b) < 0) {
        goto out;
    }

    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int ret = start_vcpus(b);
    if (ret < 0) {
        fprintf(stderr, "tlbd: cannot start the vcpu threads: %s\n",
                strerror(-ret));
        atomic_store(&b->stop, true);
    }
    run_timed(b);
    run_final(b);
    join_vcpus(b);
    b->final_end_ns = tlbd_now_ns();
    if (ret < 0) {
        goto out;
    }

    /* Every request is back: stop the pool and the I/O thread, after which
     * the main thread owns the counters.
     */
    blockdev_close(b->bd);
    b->bd = NULL;
    threadlet_queue_get_stats(&b->queue, &pool);
    iothread_get_stats(b->io, &ios);
    iothread_stop(b->io);
    int reported = bench_report(b, &pool, &ios);
    if (b->cfg.plot_file && bench_plot_write(b) < 0) {
        reported = -1;
    }
    if (b->failure) {
        fprintf(stderr, "tlbd: bench: %s\n", b->failure);
    } else if (b->count.errors == 0 && reported == 0) {
        status = EXIT_SUCCESS;
    }

out:
    if (created == 1 && !b->start_ns) {
        unlink(b->cfg.image); /* created for a run that never started */
    }
    close_all(b);
    return status;
}
