/* tlbd: the output of `tlbd stat` (see stat.h): a line of columns per
 * interval under a header repeated every screenful, as iostat does, or one
 * JSON object per interval.  tlbd(1) "TLBD STAT" documents both.
 *
 * Main thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "options.h"
#include "stat.h"

#define HEADER_EVERY 20 /* data lines per header when not a terminal */

/* The one-letter column prefix of each kind: r_p50, w_p99, ... */
static const char kind_letter[STAT_KINDS] = { 'r', 'w', 'f', 'd', 'z' };

void
stat_printer_init(StatPrinter *pr)
{
    struct winsize ws;

    pr->lines = 0;
    pr->header_every = HEADER_EVERY;
    if (!pr->json && isatty(STDOUT_FILENO) &&
        ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 2) {
        pr->header_every = ws.ws_row - 1u;
    }
}

/* NS as at most 6 characters with a unit: 850n, 12.3u, 1.23m, 2.00s. */
static void
format_ns(char *buf, size_t size, uint64_t ns)
{
    static const struct {
        double scale;
        char unit;
    } units[] = { { 1e3, 'u' }, { 1e6, 'm' }, { 1e9, 's' } };
    double v = (double)ns;

    if (ns < 1000) {
        snprintf(buf, size, "%" PRIu64 "n", ns);
        return;
    }
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(units); i++) {
        double x = v / units[i].scale;
        if (x < 999.5 || i + 1 == TLBD_ARRAY_SIZE(units)) {
            snprintf(buf, size,
                     x < 9.995   ? "%.2f%c"
                     : x < 99.95 ? "%.1f%c"
                                 : "%.0f%c",
                     x, units[i].unit);
            return;
        }
    }
}

static void
print_header(const StatPrinter *pr, bool vcache)
{
    (void)pr;
    printf("%8s %8s %7s %7s %7s %7s %7s %5s", "r/s", "w/s", "f/s", "d/s", "z/s",
           "rMiB/s", "wMiB/s", "infl");
    for (int k = 0; k < STAT_KINDS; k++) {
        printf(" %c_p50 %c_p99 %c_max", kind_letter[k], kind_letter[k],
               kind_letter[k]);
    }
    printf(" %4s %4s %8s %8s", "busy", "idle", "inl/s", "pool/s");
    if (vcache) {
        printf(" %7s %7s", "vMiB", "dstg/s");
    }
    putchar('\n');
}

static void
print_line(const StatInterval *iv, bool vcache)
{
    for (int k = 0; k < STAT_KINDS; k++) {
        printf(k < 2 ? "%8.1f " : "%7.1f ", iv->ops_per_s[k]);
    }
    printf("%7.2f %7.2f %5" PRIu64, iv->read_mib_per_s, iv->write_mib_per_s,
           iv->in_flight);
    for (int k = 0; k < STAT_KINDS; k++) {
        const Histogram *h = &iv->lat[k];
        uint64_t v[3] = { hist_percentile(h, 50.0), hist_percentile(h, 99.0),
                          h->max };
        for (int i = 0; i < 3; i++) {
            char buf[16] = "-";
            if (h->count) {
                format_ns(buf, sizeof(buf), v[i]);
            }
            printf(" %5s", buf);
        }
    }
    printf(" %4" PRIu64 " %4" PRIu64 " %8.1f %8.1f", iv->pool_busy,
           iv->pool_idle, iv->inline_per_s, iv->pool_per_s);
    if (vcache) {
        printf(" %7.2f %7.1f", (double)iv->volatile_bytes / 1048576.0,
               iv->destaged_per_s);
    }
    putchar('\n');
}

static void
print_json(const StatInterval *iv)
{
    printf("{\"elapsed_s\":%.3f,\"interval_s\":%.3f,\"ops_per_s\":{",
           iv->elapsed, iv->secs);
    for (int k = 0; k < STAT_KINDS; k++) {
        printf("%s\"%s\":%.2f", k ? "," : "", stat_kind_names[k],
               iv->ops_per_s[k]);
    }
    printf("},\"errors_per_s\":%.2f,\"read_mib_per_s\":%.3f,"
           "\"write_mib_per_s\":%.3f,\"in_flight\":%" PRIu64
           ",\"latency_ns\":{",
           iv->errors_per_s, iv->read_mib_per_s, iv->write_mib_per_s,
           iv->in_flight);
    for (int k = 0; k < STAT_KINDS; k++) {
        const Histogram *h = &iv->lat[k];
        printf("%s\"%s\":{\"count\":%" PRIu64 ",\"p50\":%" PRIu64
               ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "}",
               k ? "," : "", stat_kind_names[k], h->count,
               hist_percentile(h, 50.0), hist_percentile(h, 99.0),
               h->count ? h->max : 0);
    }
    printf("},\"pool\":{\"busy\":%" PRIu64 ",\"idle\":%" PRIu64
           ",\"threads\":%" PRIu64 ",\"queued\":%" PRIu64 "},"
           "\"inline_per_s\":%.2f,\"pool_per_s\":%.2f,\"volatile\":",
           iv->pool_busy, iv->pool_idle, iv->pool_threads, iv->pool_queued,
           iv->inline_per_s, iv->pool_per_s);
    if (iv->volatile_cache) {
        printf("{\"size\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"destaged_per_s\":%.2f}",
               iv->volatile_cache, iv->volatile_bytes, iv->destaged_per_s);
    } else {
        printf("null");
    }
    printf("}\n");
}

void
stat_print(StatPrinter *pr, const StatInterval *iv)
{
    bool vcache = iv->volatile_cache != 0;

    if (pr->json) {
        print_json(iv);
    } else {
        if (pr->lines % pr->header_every == 0) {
            print_header(pr, vcache);
        }
        pr->lines++;
        print_line(iv, vcache);
    }
    if (fflush(stdout) == EOF) {
        tlbd_fatal("writing the output: %s", strerror(errno));
    }
}
