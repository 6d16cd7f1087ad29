/* tlbd: the fault/latency injection parser and decision.
 *
 *   spec  := item ( ',' item )*
 *   item  := 'seed=' N | rule
 *   rule  := op ( ':' term )+
 *   op    := read | write | flush | discard | zero | ioctl | truncate
 *          | other | any
 *   term  := errname | 'delay=' DUR | 'rate=' P | 'after=' N
 *          | 'every=' N | 'count=' N | 'once'
 *
 * A rule fires for a request of its op when the request is past the first
 * `after` matching ones, is every `every`-th of the rest, the rule has
 * fired fewer than `count` times, and a draw from the seeded generator is
 * below `rate`.  Each rule counts its own requests.  When it fires it adds
 * its delay and, if it has an error and none was chosen yet, fails the
 * request.  Workers call paio_inject_decide_locked under the device's
 * inject lock; parsing runs in the caller's thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paio-inject.h"
#include "spec.h"

#define OP_OTHER_MASK                                                          \
    ((1u << PAIO_LSEEK) | (1u << PAIO_FADVISE) | (1u << PAIO_FSTAT))

typedef struct InjectRule {
    unsigned ops; /* bit per PaioType */
    int err;      /* -errno, or 0 for delay only */
    uint64_t delay_ns;
    double rate; /* 0..1 */
    uint64_t after;
    uint64_t every; /* 0: every request */
    uint64_t count; /* 0: no limit */
    uint64_t seen;  /* matching requests so far */
    uint64_t fired;
} InjectRule;

struct PaioInject {
    uint64_t rng;
    size_t nrules;
    InjectRule rules[];
};

static const struct {
    const char *name;
    unsigned ops;
} op_names[] = {
    { "read", 1u << PAIO_READ },          { "write", 1u << PAIO_WRITE },
    { "flush", 1u << PAIO_FLUSH },        { "discard", 1u << PAIO_DISCARD },
    { "zero", 1u << PAIO_WRITE_ZEROES },  { "ioctl", 1u << PAIO_IOCTL },
    { "truncate", 1u << PAIO_TRUNCATE },  { "other", OP_OTHER_MASK },
    { "any", (1u << PAIO_NR_TYPES) - 1 },
};

static const struct {
    const char *name;
    int err;
} err_names[] = {
    { "eio", EIO },
    { "enospc", ENOSPC },
    { "edquot", EDQUOT },
    { "efbig", EFBIG },
    { "erofs", EROFS },
    { "enotsup", ENOTSUP },
    { "eopnotsupp", EOPNOTSUPP },
    { "enomem", ENOMEM },
    { "eagain", EAGAIN },
    { "ebusy", EBUSY },
    { "einval", EINVAL },
    { "eperm", EPERM },
    { "etimedout", ETIMEDOUT },
    { "enxio", ENXIO },
    { "eshutdown", ESHUTDOWN },
};

/* Set *ERRMSG to "inject: 'SPEC': <what> at column COL" and fail. */
#define bad(errmsg, spec, col, ...)                                            \
    spec_error(errmsg, "inject", spec, col, __VA_ARGS__)

static bool
parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* "2ms", "500us", "1s", "10ns"; a bare number means milliseconds. */
static bool
parse_delay(const char *s, size_t len, uint64_t *ns)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {
        { "ns", 1 }, { "us", 1000 }, { "ms", 1000000 }, { "s", 1000000000 }
    };
    size_t digits = 0;
    uint64_t v;
    uint64_t mul = 1000000;

    while (digits < len && s[digits] >= '0' && s[digits] <= '9') {
        digits++;
    }
    if (!parse_u64(s, digits, &v)) {
        return false;
    }
    if (digits < len) {
        size_t i;
        for (i = 0; i < TLBD_ARRAY_SIZE(units); i++) {
            if (strlen(units[i].suffix) == len - digits &&
                memcmp(units[i].suffix, s + digits, len - digits) == 0) {
                break;
            }
        }
        if (i == TLBD_ARRAY_SIZE(units)) {
            return false;
        }
        mul = units[i].mul;
    }
    if (v > UINT64_MAX / mul || v * mul > 3600ull * 1000000000ull) {
        return false; /* more than an hour is a typo */
    }
    *ns = v * mul;
    return true;
}

static bool
parse_rate(const char *s, size_t len, double *rate)
{
    char buf[64];
    char *end;

    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    *rate = strtod(buf, &end);
    return errno == 0 && *end == '\0' && *rate >= 0.0 && *rate <= 1.0;
}

static bool
token_is(const char *tok, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(tok, word, len) == 0;
}

/* Parse one "key=value" term of a rule.  Returns 0 or -EINVAL. */
static int
parse_term(const char *spec, const char *tok, size_t len, InjectRule *r,
           char **errmsg)
{
    size_t col = (size_t)(tok - spec) + 1;
    const char *eq = memchr(tok, '=', len);
    size_t klen = eq ? (size_t)(eq - tok) : len;
    const char *val = eq ? eq + 1 : NULL;
    size_t vlen = eq ? len - klen - 1 : 0;
    size_t vcol = col + klen + 1;

    if (!eq) {
        if (token_is(tok, len, "once")) {
            r->count = 1;
            return 0;
        }
        for (size_t i = 0; i < TLBD_ARRAY_SIZE(err_names); i++) {
            if (token_is(tok, len, err_names[i].name)) {
                if (r->err) {
                    return bad(errmsg, spec, col, "second error '%.*s'",
                               (int)len, tok);
                }
                r->err = -err_names[i].err;
                return 0;
            }
        }
        return bad(errmsg, spec, col, "unknown error '%.*s'", (int)len, tok);
    }
    if (token_is(tok, klen, "delay")) {
        if (!parse_delay(val, vlen, &r->delay_ns)) {
            return bad(errmsg, spec, vcol,
                       "bad delay '%.*s' (want N[ns|us|ms|s], at most 1 h)",
                       (int)vlen, val);
        }
    } else if (token_is(tok, klen, "rate")) {
        if (!parse_rate(val, vlen, &r->rate)) {
            return bad(errmsg, spec, vcol, "bad rate '%.*s' (want 0 to 1)",
                       (int)vlen, val);
        }
    } else if (token_is(tok, klen, "after") || token_is(tok, klen, "every") ||
               token_is(tok, klen, "count")) {
        uint64_t *dst = tok[0] == 'a'   ? &r->after
                        : tok[0] == 'e' ? &r->every
                                        : &r->count;
        if (!parse_u64(val, vlen, dst) || (tok[0] != 'a' && *dst == 0)) {
            return bad(errmsg, spec, vcol, "bad number '%.*s' for '%.*s'",
                       (int)vlen, val, (int)klen, tok);
        }
    } else {
        return bad(errmsg, spec, col, "unknown setting '%.*s'", (int)klen, tok);
    }
    return 0;
}

/* Parse the rule in [TOK, TOK+LEN) of SPEC into R. */
static int
parse_rule(const char *spec, const char *tok, size_t len, InjectRule *r,
           char **errmsg)
{
    const char *end = tok + len;
    const char *p = tok;
    const char *colon = memchr(tok, ':', len);
    size_t oplen = colon ? (size_t)(colon - tok) : len;
    size_t i;
    int ret;

    memset(r, 0, sizeof(*r));
    r->rate = 1.0;
    for (i = 0; i < TLBD_ARRAY_SIZE(op_names); i++) {
        if (token_is(tok, oplen, op_names[i].name)) {
            r->ops = op_names[i].ops;
            break;
        }
    }
    if (i == TLBD_ARRAY_SIZE(op_names)) {
        return bad(errmsg, spec, (size_t)(tok - spec) + 1,
                   "unknown operation '%.*s' (want read, write, flush, "
                   "discard, zero, ioctl, truncate, other or any)",
                   (int)oplen, tok);
    }
    p = colon ? colon + 1 : end;
    while (colon && p <= end) {
        const char *next = memchr(p, ':', (size_t)(end - p));
        size_t tlen = next ? (size_t)(next - p) : (size_t)(end - p);
        if (tlen == 0) {
            return bad(errmsg, spec, (size_t)(p - spec) + 1, "empty term");
        }
        ret = parse_term(spec, p, tlen, r, errmsg);
        if (ret < 0) {
            return ret;
        }
        if (!next) {
            break;
        }
        p = next + 1;
    }
    if (r->err == 0 && r->delay_ns == 0) {
        return bad(errmsg, spec, (size_t)(tok - spec) + 1,
                   "rule '%.*s' has neither an error nor a delay", (int)len,
                   tok);
    }
    return 0;
}

int
paio_inject_parse(const char *spec, PaioInject **out, char **errmsg)
{
    PaioInject *inj;
    size_t nitems = 1;
    const char *p;
    uint64_t seed = 0;

    *out = NULL;
    if (errmsg) {
        *errmsg = NULL;
    }
    if (!spec || !*spec) {
        return 0;
    }
    for (p = spec; *p; p++) {
        nitems += *p == ',';
    }
    inj = calloc(1, sizeof(*inj) + nitems * sizeof(InjectRule));
    if (!inj) {
        return -ENOMEM;
    }
    p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int ret = 0;

        if (len == 0) {
            ret = bad(errmsg, spec, (size_t)(p - spec) + 1, "empty rule");
        } else if (len > 5 && memcmp(p, "seed=", 5) == 0) {
            if (!parse_u64(p + 5, len - 5, &seed)) {
                ret = bad(errmsg, spec, (size_t)(p - spec) + 6,
                          "bad seed '%.*s'", (int)len - 5, p + 5);
            }
        } else {
            ret = parse_rule(spec, p, len, &inj->rules[inj->nrules], errmsg);
            inj->nrules += ret == 0;
        }
        if (ret < 0) {
            free(inj);
            return ret;
        }
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    inj->rng = seed ^ 0x9e3779b97f4a7c15ull;
    *out = inj;
    return 0;
}

void
paio_inject_free(PaioInject *inj)
{
    free(inj);
}

/* splitmix64: a uniform double in [0, 1). */
static double
next_random(PaioInject *inj)
{
    uint64_t z = (inj->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

int
paio_inject_decide_locked(PaioInject *inj, PaioType type, uint64_t *delay_ns)
{
    int err = 0;

    for (size_t i = 0; i < inj->nrules; i++) {
        InjectRule *r = &inj->rules[i];

        if (!(r->ops & (1u << type))) {
            continue;
        }
        r->seen++;
        if (r->seen <= r->after) {
            continue;
        }
        if (r->every && (r->seen - r->after) % r->every != 0) {
            continue;
        }
        if (r->count && r->fired >= r->count) {
            continue;
        }
        if (r->rate < 1.0 && next_random(inj) >= r->rate) {
            continue;
        }
        r->fired++;
        *delay_ns += r->delay_ns;
        if (!err) {
            err = r->err;
        }
    }
    return err;
}
