/* units.c: the config's duration ("250ms", "30s", "1h") and size ("64KiB", "16MiB") syntaxes. */
#include <stdbool.h>
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

/* A unit suffix and what one of it is worth. */
typedef struct unit {
    const char *suffix;
    uint64_t value;
} unit_t;

/* Digits then one of the suffixes (compared case-insensitively when `nocase`), scaled. */
static int parse_with_units(const char *text, const unit_t *units, size_t nunits, bool nocase,
                            uint64_t *out) {
    uint64_t v;
    if (!text)
        return TP_ERR_INVAL;
    int n = parse_digits(text, &v);
    if (n < 0)
        return TP_ERR_RANGE;
    if (n == 0)
        return TP_ERR_INVAL;
    for (size_t i = 0; i < nunits; i++)
        if ((nocase ? strcasecmp(text + n, units[i].suffix) : strcmp(text + n, units[i].suffix)) ==
            0)
            return scale(v, units[i].value, out);
    return TP_ERR_INVAL;
}

int tp__parse_duration(const char *text, uint64_t *ms) {
    static const unit_t units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    return parse_with_units(text, units, sizeof(units) / sizeof(units[0]), false, ms);
}

int tp__parse_size(const char *text, uint64_t *bytes) {
    /* Binary units whatever the spelling: nobody sizing a buffer means 1000. */
    static const unit_t units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1ULL << 10},
        {"kb", 1ULL << 10},
        {"kib", 1ULL << 10},
        {"m", 1ULL << 20},
        {"mb", 1ULL << 20},
        {"mib", 1ULL << 20},
        {"g", 1ULL << 30},
        {"gb", 1ULL << 30},
        {"gib", 1ULL << 30},
        {"t", 1ULL << 40},
        {"tb", 1ULL << 40},
        {"tib", 1ULL << 40},
    };
    return parse_with_units(text, units, sizeof(units) / sizeof(units[0]), true, bytes);
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
