/* tlbd: parsing of numbers, sizes and durations given by users (see parse.h).
 * Any thread; no state.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse.h"

int
tlbd_parse_number(const char *str, uint64_t *out, const char **end)
{
    char *e;

    if (!isdigit((unsigned char)*str)) {
        return -EINVAL;
    }
    errno = 0;
    unsigned long long v = strtoull(str, &e, 10);
    if (errno == ERANGE) {
        return -ERANGE;
    }
    *out = v;
    *end = e;
    return 0;
}

int
tlbd_parse_uint(const char *str, uint64_t max, uint64_t *out)
{
    const char *end;
    uint64_t v;
    int ret = tlbd_parse_number(str, &v, &end);

    if (ret < 0) {
        return ret;
    }
    if (*end != '\0') {
        return -EINVAL;
    }
    if (v > max) {
        return -ERANGE;
    }
    *out = v;
    return 0;
}

int
tlbd_parse_size(const char *str, uint64_t *out)
{
    static const char suffixes[] = "kmgtpe";
    const char *end;
    uint64_t v;
    unsigned shift = 0;
    int ret = tlbd_parse_number(str, &v, &end);

    if (ret < 0) {
        return ret;
    }
    if (*end != '\0') {
        const char *p = strchr(suffixes, tolower((unsigned char)*end));
        if (!p) {
            return -EINVAL;
        }
        shift = 10 * (unsigned)(p - suffixes + 1);
        end++;
        /* "k", "kB", "KiB" all mean 1024. */
        if (!strcasecmp(end, "ib") || !strcasecmp(end, "b")) {
            end += strlen(end);
        }
        if (*end != '\0') {
            return -EINVAL;
        }
    }
    if (shift && v > (UINT64_MAX >> shift)) {
        return -ERANGE;
    }
    *out = v << shift;
    return 0;
}

int
tlbd_parse_duration(const char *str, uint64_t *out_ns)
{
    static const struct {
        const char *unit;
        uint64_t ns;
    } units[] = {
        { "", 1000000000ull },     { "s", 1000000000ull },
        { "ms", 1000000ull },      { "m", 60000000000ull },
        { "h", 3600000000000ull },
    };
    const char *end;
    uint64_t v;
    int ret = tlbd_parse_number(str, &v, &end);

    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (!strcmp(end, units[i].unit)) {
            if (v > UINT64_MAX / units[i].ns) {
                return -ERANGE;
            }
            *out_ns = v * units[i].ns;
            return 0;
        }
    }
    return -EINVAL;
}
