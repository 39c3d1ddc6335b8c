/* units.c: the config's duration ("250ms", "30s", "1h") and size ("64KiB", "16MiB") syntaxes. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "units.h"

/* Leading decimal digits of `text` into *v; returns the number of digits (0: none) or -1 on
 * overflow. */
static int parse_digits(const char *text, uint64_t *v) {
    int n = 0;
    *v = 0;
    for (; text[n] >= '0' && text[n] <= '9'; n++) {
        unsigned d = (unsigned)(text[n] - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return n;
}

static int scale(uint64_t v, uint64_t unit, uint64_t *out) {
    if (v != 0 && unit > UINT64_MAX / v)
        return TP_ERR_RANGE;
    *out = v * unit;
    return 0;
}

int tp__parse_duration(const char *text, uint64_t *ms) {
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t v;
    if (!text)
        return TP_ERR_INVAL;
    int n = parse_digits(text, &v);
    if (n < 0)
        return TP_ERR_RANGE;
    if (n == 0)
        return TP_ERR_INVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(text + n, units[i].suffix) == 0)
            return scale(v, units[i].ms, ms);
    return TP_ERR_INVAL;
}

int tp__parse_size(const char *text, uint64_t *bytes) {
    /* Binary units whatever the spelling: nobody sizing a buffer means 1000. */
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {
        {"", 0},     {"b", 0},  {"k", 10},  {"kb", 10},  {"kib", 10}, {"m", 20},  {"mb", 20},
        {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}, {"t", 40},   {"tb", 40}, {"tib", 40},
    };
    uint64_t v;
    if (!text)
        return TP_ERR_INVAL;
    int n = parse_digits(text, &v);
    if (n < 0)
        return TP_ERR_RANGE;
    if (n == 0)
        return TP_ERR_INVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(text + n, units[i].suffix) == 0)
            return scale(v, (uint64_t)1 << units[i].shift, bytes);
    return TP_ERR_INVAL;
}

char *tp__format_duration(uint64_t ms, char *buf, size_t len) {
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    if (ms == 0) {
        snprintf(buf, len, "0");
        return buf;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms % units[i].ms == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].suffix);
            return buf;
        }
    }
    snprintf(buf, len, "%llums", (unsigned long long)ms);
    return buf;
}

char *tp__format_size(uint64_t bytes, char *buf, size_t len) {
    static const char *const suffixes[] = {"TiB", "GiB", "MiB", "KiB"};
    for (unsigned i = 0; bytes != 0 && i < 4; i++) {
        unsigned shift = 40 - 10 * i;
        if (bytes % ((uint64_t)1 << shift) == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(bytes >> shift), suffixes[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)bytes);
    return buf;
}

const char *tp__format_bound(const tp_setting_t *s, int64_t v, char *buf, size_t size) {
    if (s->type == TP_SETTING_T_DURATION && v >= 0)
        return tp__format_duration((uint64_t)v, buf, size);
    if (s->type == TP_SETTING_T_SIZE && v >= 0)
        return tp__format_size((uint64_t)v, buf, size);
    snprintf(buf, size, "%lld", (long long)v);
    return buf;
}
