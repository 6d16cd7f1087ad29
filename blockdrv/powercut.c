/* tlbd: power-cut rules: the parser and the seeded decisions of a cut.
 *
 *   rule    := item ( ',' item )*
 *   item    := 'after-writes=' N | 'after-flushes=' N | 'after=' DURATION
 *            | 'at-mark=' NAME | 'mode=' mode | 'seed=' N
 *   mode    := 'all' | 'subset' [ ':' P ] | 'prefix' | 'torn' [ ':' P ]
 *            | 'ignore-flush'
 *
 * At least one trigger (after-writes, after-flushes, after, at-mark) is
 * needed; the first to fire cuts.  The mode defaults to all, P to 0.5
 * and the seed to 0.  Every decision is a
 * pure function of the seed and a write's sequence number, so the same
 * rule and the same sequence of requests give the same crash state.
 *
 * Threads: pure functions, any thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "spec.h"
#include "vcache.h"

/* Set *ERRMSG to "powercut: 'SPEC': <what> at column COL" and fail. */
#define bad(errmsg, spec, col, ...)                                            \
    spec_error(errmsg, "powercut", spec, col, __VA_ARGS__)

/* "0.5": a probability in [0, 1]. */
static bool
parse_p(const char *s, double *p)
{
    char *end;

    if (!*s) {
        return false;
    }
    errno = 0;
    *p = strtod(s, &end);
    return errno == 0 && *end == '\0' && *p >= 0.0 && *p <= 1.0;
}

static int
parse_mode(const char *spec, const char *val, size_t col, PowercutRule *r,
           char **errmsg)
{
    static const char *const names[] = {
        [POWERCUT_ALL] = "all",
        [POWERCUT_SUBSET] = "subset",
        [POWERCUT_PREFIX] = "prefix",
        [POWERCUT_TORN] = "torn",
        [POWERCUT_IGNORE_FLUSH] = "ignore-flush",
    };
    const char *colon = strchr(val, ':');
    size_t len = colon ? (size_t)(colon - val) : strlen(val);

    for (size_t i = 0; i < TLBD_ARRAY_SIZE(names); i++) {
        if (strlen(names[i]) != len || memcmp(val, names[i], len) != 0) {
            continue;
        }
        r->mode = (PowercutMode)i;
        if (!colon) {
            return 0;
        }
        if (r->mode != POWERCUT_SUBSET && r->mode != POWERCUT_TORN) {
            return bad(errmsg, spec, col + len, "mode %s takes no ':P'",
                       names[i]);
        }
        if (!parse_p(colon + 1, &r->p)) {
            return bad(errmsg, spec, col + len + 1,
                       "'%s' is not a probability from 0 to 1", colon + 1);
        }
        return 0;
    }
    return bad(errmsg, spec, col,
               "unknown mode '%.*s' (all, subset:P, "
               "prefix, torn:P, ignore-flush)",
               (int)len, val);
}

int
powercut_parse_mode(const char *mode, PowercutRule *rule, char **errmsg)
{
    if (errmsg) {
        *errmsg = NULL;
    }
    return parse_mode(mode, mode, 1, rule, errmsg);
}

/* One "key=value" item, ITEM being a NUL-terminated copy at column COL. */
static int
parse_item(const char *spec, char *item, size_t col, PowercutRule *r,
           char **errmsg)
{
    char *eq = strchr(item, '=');
    const char *val;
    size_t vcol;
    uint64_t v;

    if (!eq) {
        return bad(errmsg, spec, col, "'%s' is not KEY=VALUE", item);
    }
    *eq = '\0';
    val = eq + 1;
    vcol = col + (size_t)(eq - item) + 1;
    if (strcmp(item, "mode") == 0) {
        return parse_mode(spec, val, vcol, r, errmsg);
    }
    if (strcmp(item, "after") == 0) {
        if (tlbd_parse_duration(val, &v) < 0 || v == 0) {
            return bad(errmsg, spec, vcol,
                       "'%s' is not a duration of more "
                       "than 0 (such as 500ms, 10s, 2m)",
                       val);
        }
        r->after_ns = v;
        return 0;
    }
    if (strcmp(item, "at-mark") == 0) {
        if (!blockdev_is_mark_name(val)) {
            return bad(errmsg, spec, vcol, "'%s' %s", val,
                       BLOCKDEV_MARK_REASON);
        }
        strcpy(r->at_mark, val);
        return 0;
    }
    if (strcmp(item, "after-writes") != 0 &&
        strcmp(item, "after-flushes") != 0 && strcmp(item, "seed") != 0) {
        return bad(errmsg, spec, col,
                   "unknown key '%s' (after-writes, "
                   "after-flushes, after, at-mark, mode, seed)",
                   item);
    }
    if (tlbd_parse_uint(val, UINT64_MAX, &v) < 0 ||
        (v == 0 && strcmp(item, "seed") != 0)) {
        return bad(errmsg, spec, vcol, "'%s' is not a whole number%s", val,
                   strcmp(item, "seed") == 0 ? "" : " of at least 1");
    }
    if (strcmp(item, "seed") == 0) {
        r->seed = v;
    } else if (strcmp(item, "after-writes") == 0) {
        r->after_writes = v;
    } else {
        r->after_flushes = v;
    }
    return 0;
}

int
powercut_parse(const char *spec, PowercutRule *rule, char **errmsg)
{
    PowercutRule r = { .mode = POWERCUT_ALL, .p = 0.5 };
    const char *s = spec ? spec : "";
    size_t pos = 0;

    if (errmsg) {
        *errmsg = NULL;
    }
    for (;;) {
        size_t len = strcspn(s + pos, ",");
        char *item = strndup(s + pos, len);
        int ret;

        if (!item) {
            return -ENOMEM;
        }
        ret = len == 0 ? bad(errmsg, s, pos + 1, "empty item")
                       : parse_item(s, item, pos + 1, &r, errmsg);
        free(item);
        if (ret < 0) {
            return ret;
        }
        pos += len;
        if (s[pos] == '\0') {
            break;
        }
        pos++; /* the comma */
    }
    if (!r.after_writes && !r.after_flushes && !r.after_ns && !r.at_mark[0]) {
        return bad(errmsg, s, 1,
                   "no trigger (after-writes=N, after-flushes=N, "
                   "after=DURATION or at-mark=NAME)");
    }
    *rule = r;
    return 0;
}

void
powercut_mode_str(const PowercutRule *rule, char *buf, size_t len)
{
    switch (rule->mode) {
    case POWERCUT_SUBSET:
        snprintf(buf, len, "subset:%g", rule->p);
        break;
    case POWERCUT_TORN:
        snprintf(buf, len, "torn:%g", rule->p);
        break;
    case POWERCUT_PREFIX:
        snprintf(buf, len, "prefix");
        break;
    case POWERCUT_IGNORE_FLUSH:
        snprintf(buf, len, "ignore-flush");
        break;
    default:
        snprintf(buf, len, "all");
        break;
    }
}

uint64_t
powercut_mix(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1) from X. */
static double
unit(uint64_t x)
{
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

bool
powercut_keep_write(const PowercutRule *rule, uint64_t seq)
{
    return unit(powercut_mix(powercut_mix(rule->seed) ^ seq)) < rule->p;
}

bool
powercut_keep_sector(const PowercutRule *rule, uint64_t seq, uint64_t sector)
{
    uint64_t h = powercut_mix(powercut_mix(rule->seed) ^ seq);

    return unit(powercut_mix(h ^ sector)) < rule->p;
}

uint64_t
powercut_prefix(const PowercutRule *rule, uint64_t nvolatile, uint64_t nwrites)
{
    uint64_t h = powercut_mix(powercut_mix(rule->seed) ^ nwrites);

    return h % (nvolatile + 1);
}
