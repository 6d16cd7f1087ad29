/* tlbd: `tlbd bench --plot FILE.svg`, a picture of the run in one standalone
 * SVG (no script, no external file, generic font families only): under the
 * run's parameters, the requests of each kind completed in each second of
 * the timed phase (IOPS over time), and the latency distribution of each
 * kind on a logarithmic axis.
 *
 * Threads: the I/O thread counts the completions of each second
 * (bench_plot_record, called from complete() in bench-io.c) in a table only
 * it grows; the main thread opens the file before the run, so that a path
 * that cannot be written stops the run before it starts, and draws once the
 * I/O thread has stopped.
 *
 * Each series carries its figures as data-* attributes (data-kind, and
 * data-counts or data-count), so that a test can read the picture back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cleanup.h"
#include "util.h"

#define NS_PER_S      1000000000ull
#define FIRST_SECONDS 2 /* grows by doubling; small so that tests grow it */
/* A last partial second shorter than this joins the one before it: its rate
 * would be noise (the drain after the deadline takes a few milliseconds).
 */
#define MIN_TAIL_NS (NS_PER_S / 10)
/* Runs of up to this many seconds mark each second with a dot. */
#define MAX_DOTS 60

/* Latency bins: a tenth of a decade each, from 1 ns (bin 0) up. */
#define BINS_PER_DECADE 10
#define BIN_DECADE_MIN  (-3) /* 10^-3 us = 1 ns */
#define NBINS           (14 * BINS_PER_DECADE)

/* The page and its two panels (plot areas; legends go to their right). */
#define PAGE_W   1000
#define PAGE_H   780
#define PLOT_X   90.0
#define PLOT_W   680.0
#define LEGEND_X 800.0

typedef struct Panel {
    double x;
    double y;
    double w;
    double h;
} Panel;

static const Panel iops_panel = { PLOT_X, 130.0, PLOT_W, 250.0 };
static const Panel lat_panel = { PLOT_X, 490.0, PLOT_W, 230.0 };

static const char *const colours[BENCH_OP_COUNT] = {
    [BENCH_OP_READ] = "#1f77b4",    [BENCH_OP_WRITE] = "#d62728",
    [BENCH_OP_FLUSH] = "#2ca02c",   [BENCH_OP_GETSIZE] = "#9467bd",
    [BENCH_OP_DISCARD] = "#ff7f0e", [BENCH_OP_ZEROOUT] = "#8c564b",
};

int
bench_plot_open(Bench *b)
{
    const char *path = b->cfg.plot_file;
    struct stat st;

    if (!path) {
        return 0;
    }
    bool existed = stat(path, &st) == 0;
    b->plot_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (b->plot_fd < 0) {
        fprintf(stderr, "tlbd: --plot: cannot write '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    b->plot_created = !existed;
    return 0;
}

void
bench_plot_close(Bench *b)
{
    free(b->seconds);
    b->seconds = NULL;
    if (b->plot_fd < 0) {
        return;
    }
    close(b->plot_fd);
    b->plot_fd = -1;
    if (b->plot_created) {
        unlink(b->cfg.plot_file); /* nothing was drawn into it */
    }
}

void
bench_plot_record(Bench *b, BenchOp op, uint64_t now_ns)
{
    uint64_t s = now_ns > b->start_ns ? (now_ns - b->start_ns) / NS_PER_S : 0;

    if (s >= b->seconds_cap) {
        uint64_t cap = b->seconds_cap ? b->seconds_cap : FIRST_SECONDS;
        BenchSecond *grown;

        if (b->seconds_nomem) {
            return;
        }
        while (cap <= s) {
            cap *= 2;
        }
        grown = realloc(b->seconds, cap * sizeof(*grown));
        if (!grown) {
            b->seconds_nomem = true;
            return;
        }
        memset(grown + b->seconds_cap, 0,
               (cap - b->seconds_cap) * sizeof(*grown));
        b->seconds = grown;
        b->seconds_cap = cap;
    }
    b->seconds[s].ops[op]++;
    if (s >= b->nseconds) {
        b->nseconds = s + 1;
    }
}

/* Print S with the five characters XML gives a meaning escaped, and the
 * control characters XML does not allow as '?'.
 */
static void
xml_text(FILE *fp, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", fp);
            break;
        case '<':
            fputs("&lt;", fp);
            break;
        case '>':
            fputs("&gt;", fp);
            break;
        case '"':
            fputs("&quot;", fp);
            break;
        case '\'':
            fputs("&apos;", fp);
            break;
        default:
            fputc((unsigned char)*s < 0x20 ? '?' : *s, fp);
        }
    }
}

/* A round step (1, 2 or 5 times a power of ten) cutting RANGE into about
 * N parts.
 */
static double
nice_step(double range, int n)
{
    double raw = range > 0 ? range / n : 1.0;
    double mag = pow(10.0, floor(log10(raw)));
    static const double mult[] = { 1.0, 2.0, 5.0, 10.0 };

    for (size_t i = 0; i < TLBD_ARRAY_SIZE(mult); i++) {
        if (mult[i] * mag >= raw * 0.999) {
            return mult[i] * mag;
        }
    }
    return 10.0 * mag;
}

/* A scale and the format of a value at that scale, largest first. */
typedef struct Scale {
    double unit;
    const char *format;
} Scale;

static const Scale counts[] = {
    { 1e6, "%gM" },
    { 1e3, "%gk" },
    { 1.0, "%g" },
};

static const Scale latencies[] = {
    { 1e9, "%.3g s" },
    { 1e6, "%.3g ms" },
    { 1e3, "%.3g \xc2\xb5s" },
    { 1.0, "%.3g ns" },
};

/* V at the largest of the N scales S it reaches: "1.5k", "12.5 us". */
static void
scaled_label(char *buf, size_t size, double v, const Scale *s, size_t n)
{
    size_t i = 0;

    while (i < n - 1 && v < s[i].unit) {
        i++;
    }
    snprintf(buf, size, s[i].format, v / s[i].unit);
}

#define COUNT_LABEL(buf, v)                                                    \
    scaled_label(buf, sizeof(buf), v, counts, TLBD_ARRAY_SIZE(counts))
#define LATENCY_LABEL(buf, ns)                                                 \
    scaled_label(buf, sizeof(buf), ns, latencies, TLBD_ARRAY_SIZE(latencies))

static void
text(FILE *fp, double x, double y, const char *anchor, int size,
     const char *extra, const char *s)
{
    fprintf(fp,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" "
            "font-size=\"%d\"%s>",
            x, y, anchor, size, extra);
    xml_text(fp, s);
    fputs("</text>\n", fp);
}

/* The frame of P, a panel title above it, the axis titles, and the y axis
 * from 0 to YMAX in steps of YSTEP with a grid line at each.
 */
static void
panel_frame(FILE *fp, const Panel *p, const char *title, const char *xtitle,
            const char *ytitle, double ymax, double ystep)
{
    char buf[64];

    text(fp, p->x, p->y - 14, "start", 15, " font-weight=\"bold\"", title);
    fprintf(fp,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
            "fill=\"#fcfcfc\" stroke=\"#444\"/>\n",
            p->x, p->y, p->w, p->h);
    for (double v = 0; v <= ymax * 1.0001; v += ystep) {
        double y = p->y + p->h - v / ymax * p->h;
        fprintf(fp,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"#ddd\"/>\n",
                p->x, y, p->x + p->w, y);
        COUNT_LABEL(buf, v);
        text(fp, p->x - 6, y + 4, "end", 12, "", buf);
    }
    text(fp, p->x + p->w / 2, p->y + p->h + 38, "middle", 13, "", xtitle);
    fprintf(fp,
            "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" "
            "text-anchor=\"middle\" font-size=\"13\">",
            p->x - 58, p->y + p->h / 2);
    xml_text(fp, ytitle);
    fputs("</text>\n", fp);
}

/* A vertical grid line at X with LABEL under the axis (NULL: a minor line
 * with no label).
 */
static void
x_tick(FILE *fp, const Panel *p, double x, const char *label)
{
    fprintf(fp,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
            "stroke=\"%s\"/>\n",
            x, p->y, x, p->y + p->h, label ? "#ddd" : "#f0f0f0");
    if (label) {
        text(fp, x, p->y + p->h + 18, "middle", 12, "", label);
    }
}

/* Entry I of a legend right of P: a line in the kind's colour, its name,
 * and NOTE in smaller print under it.
 */
static void
legend_entry(FILE *fp, const Panel *p, unsigned i, BenchOp op, const char *note)
{
    double y = p->y + 16 + i * 40;

    fprintf(fp,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
            "stroke=\"%s\" stroke-width=\"3\"/>\n",
            LEGEND_X, y - 4, LEGEND_X + 24, y - 4, colours[op]);
    text(fp, LEGEND_X + 30, y, "start", 13, "", bench_op_name(op));
    text(fp, LEGEND_X + 30, y + 16, "start", 11, " fill=\"#555\"", note);
}

/* The seconds drawn: one a second of the timed phase, the last one partial
 * unless shorter than MIN_TAIL_NS, which joins the one before.
 */
static uint64_t
plot_seconds(uint64_t elapsed_ns)
{
    uint64_t n = elapsed_ns / NS_PER_S;

    if (elapsed_ns % NS_PER_S >= MIN_TAIL_NS || n == 0) {
        n++;
    }
    return n;
}

/* Completions of kind OP in drawn second I of N. */
static uint64_t
second_count(const Bench *b, BenchOp op, uint64_t i, uint64_t n)
{
    uint64_t c = 0;

    if (i < b->nseconds) {
        c = b->seconds[i].ops[op];
    }
    if (i == n - 1) {
        for (uint64_t j = n; j < b->nseconds; j++) {
            c += b->seconds[j].ops[op]; /* the short tail */
        }
    }
    return c;
}

/* The rate of drawn second I of N, a run of T_END seconds: its count over
 * its length.
 */
static double
second_rate(const Bench *b, BenchOp op, uint64_t i, uint64_t n, double t_end)
{
    double len = i == n - 1 ? t_end - (double)i : 1.0;

    return (double)second_count(b, op, i, n) / len;
}

/* The middle of drawn second I of N, in seconds. */
static double
second_mid(uint64_t i, uint64_t n, double t_end)
{
    return ((double)i + (i == n - 1 ? t_end : (double)i + 1.0)) / 2;
}

/* Whether kind OP has a series: reads and writes always, the others when
 * the run made any.
 */
static bool
drawn(const Bench *b, BenchOp op)
{
    return op == BENCH_OP_READ || op == BENCH_OP_WRITE ||
           b->lat_op[op].count > 0;
}

static void
draw_iops(FILE *fp, const Bench *b)
{
    const Panel *p = &iops_panel;
    uint64_t elapsed = b->end_ns - b->start_ns;
    uint64_t n = plot_seconds(elapsed);
    double t_end = (double)elapsed / 1e9;
    double ymax = 0;
    char buf[64];

    if (t_end <= 0) {
        t_end = 1e-9;
    }
    /* The rate of a second is its count over its length. */
    for (unsigned op = 0; op < BENCH_OP_COUNT; op++) {
        for (uint64_t i = 0; i < n && drawn(b, op); i++) {
            double r = second_rate(b, op, i, n, t_end);
            ymax = r > ymax ? r : ymax;
        }
    }
    double ystep = nice_step(ymax > 0 ? ymax : 1.0, 5);
    ymax = ystep * ceil((ymax > 0 ? ymax : 1.0) / ystep);
    panel_frame(fp, p, "IOPS over time (each second of the timed phase)",
                "time since the start (s)", "requests per second", ymax, ystep);
    double xstep = nice_step(t_end, 10);
    if (xstep < 1.0) {
        xstep = t_end < 1.0 ? nice_step(t_end, 5) : 1.0;
    }
    for (double t = 0; t <= t_end * 1.0001; t += xstep) {
        snprintf(buf, sizeof(buf), "%g", t);
        x_tick(fp, p, p->x + t / t_end * p->w, buf);
    }

    unsigned entry = 0;
    for (unsigned op = 0; op < BENCH_OP_COUNT; op++) {
        if (!drawn(b, op)) {
            continue;
        }
        fprintf(fp, "<polyline class=\"iops\" data-kind=\"%s\" data-counts=\"",
                bench_op_name(op));
        for (uint64_t i = 0; i < n; i++) {
            fprintf(fp, "%s%" PRIu64, i ? " " : "", second_count(b, op, i, n));
        }
        fprintf(fp,
                "\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                "stroke-linejoin=\"round\" points=\"",
                colours[op]);
        for (uint64_t i = 0; i < n; i++) {
            fprintf(fp, "%s%.1f,%.1f", i ? " " : "",
                    p->x + second_mid(i, n, t_end) / t_end * p->w,
                    p->y + p->h -
                        second_rate(b, op, i, n, t_end) / ymax * p->h);
        }
        fputs("\"/>\n", fp);
        for (uint64_t i = 0; i < n && n <= MAX_DOTS; i++) {
            fprintf(fp,
                    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" "
                    "fill=\"%s\"/>\n",
                    p->x + second_mid(i, n, t_end) / t_end * p->w,
                    p->y + p->h - second_rate(b, op, i, n, t_end) / ymax * p->h,
                    colours[op]);
        }
        snprintf(buf, sizeof(buf), "mean %.0f IOPS",
                 (double)b->lat_op[op].count / t_end);
        legend_entry(fp, p, entry++, op, buf);
    }
}

/* The bin of a latency of NS nanoseconds, clamped to the table. */
static int
bin_of(double ns)
{
    double us = ns < 1.0 ? 1e-3 : ns / 1e3;
    int bin = (int)floor((log10(us) - BIN_DECADE_MIN) * BINS_PER_DECADE);

    return bin < 0 ? 0 : bin >= NBINS ? NBINS - 1 : bin;
}

static void
draw_latency(FILE *fp, const Bench *b)
{
    static double pct[BENCH_OP_COUNT][NBINS]; /* main thread only */
    const Panel *p = &lat_panel;
    int lo = NBINS;
    int hi = -1;
    double ymax = 0;
    char buf[96];

    memset(pct, 0, sizeof(pct));
    for (unsigned op = 0; op < BENCH_OP_COUNT; op++) {
        const Histogram *h = &b->lat_op[op];
        for (unsigned i = 0; i < HIST_BUCKETS && h->count; i++) {
            if (!h->buckets[i]) {
                continue;
            }
            double low = i ? (double)hist_bucket_high(i - 1) + 1 : 0;
            int bin = bin_of((low + (double)hist_bucket_high(i)) / 2);
            pct[op][bin] += 100.0 * (double)h->buckets[i] / (double)h->count;
            lo = bin < lo ? bin : lo;
            hi = bin > hi ? bin : hi;
        }
    }
    for (unsigned op = 0; op < BENCH_OP_COUNT; op++) {
        for (int i = 0; i < NBINS; i++) {
            ymax = pct[op][i] > ymax ? pct[op][i] : ymax;
        }
    }
    if (hi < 0) {
        lo = hi = bin_of(1e3);
    }
    /* Whole decades, at least two. */
    int dlo = lo / BINS_PER_DECADE;
    int dhi = hi / BINS_PER_DECADE + 1;
    if (dhi - dlo < 2) {
        dhi = dlo + 2;
    }
    double ystep = nice_step(ymax > 0 ? ymax : 1.0, 5);
    ymax = ystep * ceil((ymax > 0 ? ymax : 1.0) / ystep);
    panel_frame(fp, p, "Latency distribution (logarithmic axis)",
                "latency (submission to completion)",
                "% of requests per 1/10 decade", ymax, ystep);

    double span = (double)(dhi - dlo);
    for (int d = dlo; d <= dhi; d++) {
        double ns = pow(10.0, d + BIN_DECADE_MIN + 3);
        LATENCY_LABEL(buf, ns);
        x_tick(fp, p, p->x + (d - dlo) / span * p->w, buf);
        for (int m = 2; m <= 9 && d < dhi; m++) {
            x_tick(fp, p, p->x + (d - dlo + log10(m)) / span * p->w, NULL);
        }
    }

    unsigned entry = 0;
    for (unsigned op = 0; op < BENCH_OP_COUNT; op++) {
        const Histogram *h = &b->lat_op[op];
        if (!h->count) {
            continue;
        }
        /* From a bin before the kind's first to one after its last. */
        int first = bin_of((double)h->min) - 1;
        int last = bin_of((double)h->max) + 1;
        first = first < dlo * BINS_PER_DECADE ? dlo * BINS_PER_DECADE : first;
        last = last >= dhi * BINS_PER_DECADE ? dhi * BINS_PER_DECADE - 1 : last;
        fprintf(fp,
                "<polyline class=\"latency\" data-kind=\"%s\" "
                "data-count=\"%" PRIu64 "\" fill=\"none\" stroke=\"%s\" "
                "stroke-width=\"2\" stroke-linejoin=\"round\" points=\"",
                bench_op_name(op), h->count, colours[op]);
        for (int i = first; i <= last; i++) {
            double x = ((double)i + 0.5) / BINS_PER_DECADE - dlo;
            fprintf(fp, "%s%.1f,%.1f", i > first ? " " : "",
                    p->x + x / span * p->w,
                    p->y + p->h - pct[op][i] / ymax * p->h);
        }
        fputs("\"/>\n", fp);
        char p50[24];
        char p99[24];
        LATENCY_LABEL(p50, (double)hist_percentile(h, 50.0));
        LATENCY_LABEL(p99, (double)hist_percentile(h, 99.0));
        snprintf(buf, sizeof(buf), "p50 %s, p99 %s", p50, p99);
        legend_entry(fp, p, entry++, op, buf);
    }
}

/* The title: the run's parameters, cut at ", " into lines of at most about
 * 110 characters, and a line of totals.
 */
static void
draw_title(FILE *fp, const Bench *b)
{
    CLEANUP_FREE char *params = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&params, &size);
    double y = 28;
    char buf[160];

    if (!mem) {
        tlbd_die("open_memstream", ENOMEM);
    }
    fputs("tlbd bench: ", mem);
    bench_print_params(mem, b);
    if (fclose(mem) == EOF) {
        tlbd_die("open_memstream", ENOMEM);
    }
    char *line = params;
    while (*line) {
        char *cut = NULL;
        for (char *s = strstr(line, ", "); s; s = strstr(s + 2, ", ")) {
            if (s - line > 110 && cut) {
                break;
            }
            cut = s;
        }
        if (strlen(line) <= 110 || !cut) {
            cut = line + strlen(line);
        }
        char saved = *cut;
        *cut = '\0';
        text(fp, 20, y, "start", 15, " font-weight=\"bold\"", line);
        *cut = saved;
        line = saved ? cut + 2 : cut;
        y += 20;
    }
    double elapsed = (double)(b->end_ns - b->start_ns) / 1e9;
    uint64_t requests = 0;
    for (unsigned op = 0; op < BENCH_OP_COUNT; op++) {
        requests += b->lat_op[op].count;
    }
    snprintf(buf, sizeof(buf),
             "timed phase %.2f s: %" PRIu64 " requests, %.0f IOPS, "
             "%.1f MB/s",
             elapsed, requests, elapsed > 0 ? (double)requests / elapsed : 0.0,
             elapsed > 0
                 ? (double)(b->count.bytes_read + b->count.bytes_written) /
                       elapsed / 1e6
                 : 0.0);
    text(fp, 20, y, "start", 13, " fill=\"#333\"", buf);
}

int
bench_plot_write(Bench *b)
{
    const char *path = b->cfg.plot_file;
    FILE *fp;

    if (b->seconds_nomem) {
        fprintf(stderr, "tlbd: --plot: '%s': %s\n", path, strerror(ENOMEM));
        return -1;
    }
    if (ftruncate(b->plot_fd, 0) < 0 && errno != EINVAL) {
        fprintf(stderr, "tlbd: --plot: cannot write '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    fp = fdopen(b->plot_fd, "w");
    if (!fp) {
        fprintf(stderr, "tlbd: --plot: cannot write '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    b->plot_fd = -1; /* fp owns it now */
    b->plot_created = false;
    fprintf(fp,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" "
            "data-elapsed-ns=\"%" PRIu64 "\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            PAGE_W, PAGE_H, PAGE_W, PAGE_H, b->end_ns - b->start_ns);
    draw_title(fp, b);
    draw_iops(fp, b);
    draw_latency(fp, b);
    fputs("</svg>\n", fp);
    if (ferror(fp) | (fclose(fp) == EOF)) {
        fprintf(stderr, "tlbd: --plot: cannot write '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    return 0;
}
