/* tlbd: `tlbd crashtest`, the crash states (see crashtest.h).
 *
 * The states.  The log (dm-log-writes order: a write is logged just before
 * the FLUSH that made it durable, a FUA write when it completed) is listed
 * with `tlbd replay --list`.  From the entry after the mark "mkfs" on:
 * every FLUSH and FUA entry is a point, the state `--limit INDEX+1`; and
 * every epoch (the writes logged before a FLUSH, since the previous one)
 * gives cuts, `--limit FLUSH-INDEX --cut MODE --seed S` for the modes
 * subset, prefix and torn, with seeds drawn from --seed, as many as make
 * the candidates reach --states where the epochs are few.  When there are
 * more candidates than --states, a seeded draw keeps --states of them.
 * A state's token is "LIMIT" or "LIMIT/MODE/SEED".
 *
 * Building.  The states are taken in log order.  A base image holds the
 * durable state after the last flush before the current state; it only
 * moves forward (`tlbd replay --from BASE --limit F`), and each state is a
 * copy of it (FICLONE, else its data extents) plus the entries from F up
 * to its limit, with the cut.  No state replays the log from entry 0.
 *
 * Each state is then recovered and checked (crashtest-recover.c).
 *
 * Threads: the main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashtest.h"
#include "parse.h"
#include "util.h"

/* At most this many cuts of each mode per epoch. */
#define MAX_REPS 16

typedef struct CtState {
    uint64_t limit;
    int mode; /* -1: no cut; else an index into ct_cut_modes */
    uint64_t seed;
    char token[64];
    char verdict[96];
    bool failed;
    double seconds;
} CtState;

/* The paths and the moving base of the building. */
typedef struct Builder {
    char *base;       /* DIR/base.img */
    char *state;      /* DIR/state.img */
    char *rmnt;       /* DIR/rmnt: where states are mounted */
    char *sout;       /* DIR/state.out: the current state's output */
    char *list;       /* DIR/list */
    uint64_t base_at; /* base holds the state after entries [0, base_at) */
} Builder;

static uint64_t
mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* One line of `tlbd replay --list`: INDEX FLAGS SECTOR NR_SECTORS [MARK]. */
static int
parse_entry(char *line, uint64_t expect, CtEntry *e)
{
    char *save = NULL;
    char *idx = strtok_r(line, " \t\n", &save);
    char *flags = strtok_r(NULL, " \t\n", &save);
    char *sector = strtok_r(NULL, " \t\n", &save);
    char *nr = strtok_r(NULL, " \t\n", &save);
    char *mark = strtok_r(NULL, "\n", &save);
    uint64_t i;

    memset(e, 0, sizeof(*e));
    if (!nr || tlbd_parse_uint(idx, UINT64_MAX, &i) < 0 || i != expect ||
        tlbd_parse_uint(sector, UINT64_MAX, &e->sector) < 0 ||
        tlbd_parse_uint(nr, UINT64_MAX, &e->nr_sectors) < 0) {
        return -EINVAL;
    }
    for (char *f = strtok_r(flags, ",", &save); f;
         f = strtok_r(NULL, ",", &save)) {
        if (!strcmp(f, "FLUSH")) {
            e->flags |= CT_FLUSH;
        } else if (!strcmp(f, "FUA")) {
            e->flags |= CT_FUA;
        } else if (!strcmp(f, "DISCARD")) {
            e->flags |= CT_DISCARD;
        } else if (!strcmp(f, "MARK")) {
            e->flags |= CT_MARK;
        } else if (strcmp(f, "-") != 0) {
            return -EINVAL;
        }
    }
    if ((e->flags & CT_MARK) && mark) {
        e->mark = strdup(mark);
        if (!e->mark) {
            tlbd_die("strdup", ENOMEM);
        }
    }
    return 0;
}

/* List the log into W->entries and find W->start. */
static int
list_log(const CtArgs *a, CtWork *w, Builder *b)
{
    char *argv[] = { a->self, "replay", "--list", w->log, NULL };
    int fd = open(b->list, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int efd = open(w->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *line = NULL;
    size_t cap = 0;
    size_t alloc = 0;
    FILE *fp = NULL;
    int st;

    if (fd < 0 || efd < 0) {
        ct_msg("cannot create '%s': %s", fd < 0 ? b->list : w->out,
               strerror(errno));
        return CT_EXIT_SETUP;
    }
    CtRunOpts o = { .out_fd = efd, .stdout_fd = fd };
    st = ct_run(argv, &o);
    close(fd);
    close(efd);
    if (st == -EINTR) {
        return CT_EXIT_INTERRUPTED;
    }
    if (st != 0) {
        ct_msg("tlbd replay --list failed (exit status %d)", st);
        return CT_EXIT_SETUP;
    }
    fp = fopen(b->list, "r");
    while (fp && getline(&line, &cap, fp) > 0) {
        if (w->nentries == alloc) {
            alloc = alloc ? 2 * alloc : 1024;
            w->entries = realloc(w->entries, alloc * sizeof(*w->entries));
            if (!w->entries) {
                tlbd_die("realloc", ENOMEM);
            }
        }
        if (parse_entry(line, w->nentries, &w->entries[w->nentries]) < 0) {
            ct_msg("tlbd replay --list: cannot parse line %" PRIu64,
                   w->nentries + 1);
            free(line);
            fclose(fp);
            return CT_EXIT_SETUP;
        }
        w->nentries++;
    }
    free(line);
    if (fp) {
        fclose(fp);
    }
    for (uint64_t i = 0; i < w->nentries; i++) {
        if (w->entries[i].mark && !strcmp(w->entries[i].mark, "mkfs")) {
            w->start = i + 1;
            return 0;
        }
    }
    ct_msg("the log '%s' has no mark 'mkfs'", w->log);
    return CT_EXIT_SETUP;
}

static void
add_state(CtState **v, size_t *n, size_t *alloc, uint64_t limit, int mode,
          uint64_t seed)
{
    if (*n == *alloc) {
        *alloc = *alloc ? 2 * *alloc : 256;
        *v = realloc(*v, *alloc * sizeof(**v));
        if (!*v) {
            tlbd_die("realloc", ENOMEM);
        }
    }
    CtState *s = &(*v)[(*n)++];
    memset(s, 0, sizeof(*s));
    s->limit = limit;
    s->mode = mode;
    s->seed = seed;
    if (mode < 0) {
        snprintf(s->token, sizeof(s->token), "%" PRIu64, limit);
    } else {
        snprintf(s->token, sizeof(s->token), "%" PRIu64 "/%s/%" PRIu64, limit,
                 ct_cut_modes[mode], seed);
    }
}

static int
cmp_state(const void *pa, const void *pb)
{
    const CtState *x = pa;
    const CtState *y = pb;

    if (x->limit != y->limit) {
        return x->limit < y->limit ? -1 : 1;
    }
    if (x->mode != y->mode) {
        return x->mode < y->mode ? -1 : 1;
    }
    return x->seed < y->seed ? -1 : x->seed > y->seed;
}

/* The candidates (see the top), sampled down to --states, in log order. */
static CtState *
pick_states(const CtArgs *a, const CtWork *w, size_t *nout)
{
    CtState *v = NULL;
    size_t n = 0;
    size_t alloc = 0;
    uint64_t npoints = 0;
    uint64_t nepochs = 0;
    uint64_t vol = 0;

    /* Count first, to size the cuts per epoch. */
    for (uint64_t i = 0; i < w->nentries; i++) {
        unsigned f = w->entries[i].flags;
        if (f & CT_FLUSH) {
            nepochs += i >= w->start && vol > 0;
            npoints += i >= w->start;
            vol = 0;
        } else if (f & CT_FUA) {
            npoints += i >= w->start;
        } else if (!(f & CT_MARK)) {
            vol++;
        }
    }
    nepochs += vol > 0 && w->nentries > w->start;
    uint64_t want = a->states > npoints ? a->states - npoints : 0;
    uint64_t nmodes = (uint64_t)__builtin_popcount(a->cuts);
    uint64_t per = (nmodes ? nmodes : 1) * (nepochs ? nepochs : 1);
    uint64_t reps = (want + per - 1) / per;
    reps = reps < 1 ? 1 : reps > MAX_REPS ? MAX_REPS : reps;

    vol = 0;
    for (uint64_t i = 0; i <= w->nentries; i++) {
        bool end = i == w->nentries;
        unsigned f = end ? 0 : w->entries[i].flags;
        if ((end || (f & CT_FLUSH)) && i >= w->start && vol > 0) {
            for (int m = 0; m < CT_NCUTS; m++) {
                if (!(a->cuts & (1u << m))) {
                    continue;
                }
                for (uint64_t r = 0; r < reps; r++) {
                    uint64_t s = mix(a->seed ^ mix(i * 3 + (uint64_t)m) ^
                                     mix(r + 0x5eedull)) &
                                 0xffffffffu;
                    add_state(&v, &n, &alloc, i, m, s);
                }
            }
        }
        if (end) {
            break;
        }
        if (f & (CT_FLUSH | CT_FUA)) {
            if (i >= w->start) {
                add_state(&v, &n, &alloc, i + 1, -1, 0);
            }
            if (f & CT_FLUSH) {
                vol = 0;
            }
        } else if (!(f & CT_MARK)) {
            vol++;
        }
    }
    /* A seeded partial Fisher-Yates draw of --states of them. */
    uint64_t rng = mix(a->seed);
    for (size_t k = 0; k < n && k < a->states; k++) {
        rng = mix(rng);
        size_t j = k + (size_t)(rng % (n - k));
        CtState t = v[k];
        v[k] = v[j];
        v[j] = t;
    }
    if (n > a->states) {
        n = (size_t)a->states;
    }
    qsort(v, n, sizeof(*v), cmp_state);
    *nout = n;
    return v;
}

/* The entry after the last FLUSH before LIMIT: where the state's delta
 * starts.
 */
static uint64_t
flushed_before(const CtWork *w, uint64_t limit)
{
    for (uint64_t i = limit; i > 0; i--) {
        if (w->entries[i - 1].flags & CT_FLUSH) {
            return i;
        }
    }
    return 0;
}

/* `tlbd replay LOG IMG [--from F] --limit N [--cut MODE --seed S]`. */
static int
replay(const CtArgs *a, const CtWork *w, const char *img, uint64_t from,
       uint64_t limit, int mode, uint64_t seed, int out_fd)
{
    char f[32], l[32], s[32];
    char *argv[16] = { a->self, "replay", w->log, (char *)img };
    int n = 4;

    snprintf(f, sizeof(f), "%" PRIu64, from);
    snprintf(l, sizeof(l), "%" PRIu64, limit);
    snprintf(s, sizeof(s), "%" PRIu64, seed);
    if (from) {
        argv[n++] = "--from";
        argv[n++] = f;
    }
    argv[n++] = "--limit";
    argv[n++] = l;
    if (mode >= 0) {
        argv[n++] = "--cut";
        argv[n++] = (char *)ct_cut_modes[mode];
        argv[n++] = "--seed";
        argv[n++] = s;
    }
    argv[n] = NULL;
    CtRunOpts o = { .out_fd = out_fd };
    return ct_run(argv, &o);
}

/* Build state S into IMG: move the base forward, copy it, apply the rest.
 * 0, or a shell status / -errno.
 */
static int
build_state(const CtArgs *a, const CtWork *w, Builder *b, const CtState *s,
            const char *img, int out_fd)
{
    uint64_t from = flushed_before(w, s->limit);
    int st;

    if (from > b->base_at) {
        st = replay(a, w, b->base, b->base_at, from, -1, 0, out_fd);
        if (st != 0) {
            return st;
        }
        b->base_at = from;
    }
    st = ct_copy_image(b->base, img);
    if (st < 0) {
        dprintf(out_fd, "tlbd crashtest: copying '%s' to '%s': %s\n", b->base,
                img, strerror(-st));
        return st;
    }
    if (s->limit > from || s->mode >= 0) {
        st = replay(a, w, img, from, s->limit, s->mode, s->seed, out_fd);
    }
    return st;
}

/* TLBD_MARKS: the names of the marks before LIMIT, space-separated. */
static char *
marks_before(const CtWork *w, uint64_t limit)
{
    size_t len = 0;
    char *s;

    for (uint64_t i = 0; i < limit; i++) {
        if (w->entries[i].mark) {
            len += strlen(w->entries[i].mark) + 1;
        }
    }
    s = calloc(1, len + 1);
    if (!s) {
        tlbd_die("calloc", ENOMEM);
    }
    for (uint64_t i = 0; i < limit; i++) {
        if (w->entries[i].mark) {
            if (*s) {
                strcat(s, " ");
            }
            strcat(s, w->entries[i].mark);
        }
    }
    return s;
}

/* Keep state S (the base is still where it was built from) in KEEP:
 * failed.img (the crash state before recovery), failed.out (what building,
 * recovery and the checks said), rebuild (the command), and the log.
 */
static void
keep_state(const CtArgs *a, const CtWork *w, Builder *b, const CtState *s,
           const char *keep)
{
    char *img = ct_asprintf("%s/failed.img", keep);
    char *out = ct_asprintf("%s/failed.out", keep);
    char *script = ct_asprintf("%s/rebuild", keep);
    char *log = ct_asprintf("%s/log", keep);
    char *cut = s->mode < 0 ? ct_asprintf("%s", "")
                            : ct_asprintf(" --cut %s --seed %" PRIu64,
                                          ct_cut_modes[s->mode], s->seed);
    char *cmd = ct_asprintf("truncate -s %" PRIu64 " state.img && %s replay %s "
                            "state.img --limit %" PRIu64 "%s",
                            a->size, a->self, log, s->limit, cut);
    FILE *fp;
    int fd;

    if (rename(b->sout, out) < 0) {
        ct_msg("cannot keep '%s': %s", out, strerror(errno));
    }
    fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || build_state(a, w, b, s, img, fd) != 0) {
        ct_msg("cannot keep '%s'", img);
    }
    if (fd >= 0) {
        close(fd);
    }
    fp = fopen(script, "w");
    if (fp) {
        fprintf(fp, "#!/bin/sh\n# tlbd crashtest: state %s (%s)\n%s\n",
                s->token, s->verdict, cmd);
        fclose(fp);
        chmod(script, 0755);
    }
    printf("first failing state %s kept in %s:\n"
           "  failed.img (the crash state, before recovery), failed.out "
           "(what recovery said), log\n"
           "  rebuild: (cd %s && %s)\n",
           s->token, keep, keep, cmd);
    free(cmd);
    free(cut);
    free(img);
    free(out);
    free(script);
    free(log);
}

/* Remove DIR/NAME, a file or an empty directory. */
static void
remove_in(const char *dir, const char *name)
{
    char *p = ct_asprintf("%s/%s", dir, name);

    remove(p);
    free(p);
}

static int
cmp_double(const void *pa, const void *pb)
{
    double x = *(const double *)pa;
    double y = *(const double *)pb;

    return x < y ? -1 : x > y;
}

static void
print_table(const CtState *v, size_t n, uint64_t nfailed)
{
    double *secs = calloc(n ? n : 1, sizeof(*secs));

    printf("%-6s %-32s %s\n", "STATE", "TOKEN", "VERDICT");
    for (size_t i = 0; i < n; i++) {
        printf("%-6zu %-32s %s\n", i + 1, v[i].token, v[i].verdict);
        if (secs) {
            secs[i] = v[i].seconds;
        }
    }
    if (secs && n) {
        qsort(secs, n, sizeof(*secs), cmp_double);
        printf("%zu states, %" PRIu64 " failed, %.3f s per state (median)\n", n,
               nfailed, secs[n / 2]);
    }
    free(secs);
}

/* Move the log to KEEP (a rename, else a copy). */
static void
move_log(const CtWork *w, const char *keep)
{
    char *dst = ct_asprintf("%s/log", keep);

    if (strcmp(dst, w->log) && rename(w->log, dst) < 0 &&
        ct_copy_image(w->log, dst) < 0) {
        ct_msg("cannot copy the log to '%s'", dst);
    }
    free(dst);
}

int
ct_check_states(const CtArgs *a, CtWork *w)
{
    Builder b = {
        .base = ct_asprintf("%s/base.img", w->dir),
        .state = ct_asprintf("%s/state.img", w->dir),
        .rmnt = ct_asprintf("%s/rmnt", w->dir),
        .sout = ct_asprintf("%s/state.out", w->dir),
        .list = ct_asprintf("%s/list", w->dir),
    };
    const char *keep = a->keep ? a->keep : w->dir;
    CtState *v = NULL;
    size_t n = 0;
    uint64_t nfailed = 0;
    bool kept = false;
    int ret;
    int fd;

    fd = open(b.base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)a->size) < 0 || close(fd) < 0 ||
        mkdir(b.rmnt, 0755) < 0) {
        ct_msg("cannot create '%s': %s", fd < 0 ? b.base : b.rmnt,
               strerror(errno));
        ret = CT_EXIT_SETUP;
        goto out;
    }
    ret = list_log(a, w, &b);
    if (ret) {
        goto out;
    }
    v = pick_states(a, w, &n);
    ct_msg("%" PRIu64 " log entries, %" PRIu64 " after the mark mkfs; "
           "checking %zu states",
           w->nentries, w->nentries - w->start, n);
    for (size_t i = 0; i < n && !ct_interrupted(); i++) {
        CtState *s = &v[i];
        uint64_t t0 = tlbd_now_ns();

        fd = open(b.sout, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            ct_msg("cannot create '%s': %s", b.sout, strerror(errno));
            ret = CT_EXIT_SETUP;
            goto out;
        }
        CtResult res = CT_STATE_RETRY;
        char *marks = marks_before(w, s->limit);
        /* A state whose loop device someone else took away is built and
         * checked again, up to three times in all. */
        for (int attempt = 0; attempt < 3 && res == CT_STATE_RETRY; attempt++) {
            int st = build_state(a, w, &b, s, b.state, fd);
            if (st != 0) {
                free(marks);
                close(fd);
                if (st == -EINTR || ct_interrupted()) {
                    goto interrupted;
                }
                ct_msg("state %s: building it failed; output in %s", s->token,
                       b.sout);
                ct_keep_dir();
                ret = CT_EXIT_SETUP;
                goto out;
            }
            res = ct_recover(a, b.state, b.rmnt, s->token, s->limit, marks,
                             s->verdict, sizeof(s->verdict), fd);
        }
        free(marks);
        s->failed = res != CT_STATE_CLEAN;
        close(fd);
        if (ct_interrupted()) {
            break;
        }
        s->seconds = (double)(tlbd_now_ns() - t0) / 1e9;
        fprintf(stderr, "tlbd crashtest: [%zu/%zu] %s: %s (%.2f s)\n", i + 1, n,
                s->token, s->verdict, s->seconds);
        if (s->failed) {
            nfailed++;
            if (!kept) {
                if (!a->keep) {
                    ct_keep_dir();
                }
                keep_state(a, w, &b, s, keep);
                kept = true;
            }
        }
    }
interrupted:
    if (ct_interrupted()) {
        ret = CT_EXIT_INTERRUPTED;
        goto out;
    }
    print_table(v, n, nfailed);
    ret = nfailed ? CT_EXIT_FAILED : CT_EXIT_CLEAN;
out:
    if (kept && a->keep) {
        move_log(w, keep); /* the states were built from it until here */
    }
    if (kept && !a->keep) {
        /* The work directory stays for the failing state: drop the rest. */
        unlink(b.base);
        unlink(b.state);
        unlink(b.list);
        unlink(w->out);
        unlink(b.sout);
        rmdir(b.rmnt);
        remove_in(w->dir, "dev");
        remove_in(w->dir, "fuse.pid");
        remove_in(w->dir, "mnt");
    }
    for (uint64_t i = 0; i < w->nentries; i++) {
        free(w->entries[i].mark);
    }
    free(w->entries);
    w->entries = NULL;
    free(v);
    free(b.base);
    free(b.state);
    free(b.rmnt);
    free(b.sout);
    free(b.list);
    return ret;
}
