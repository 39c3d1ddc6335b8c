/* log.c: structured JSON log lines on stderr, one write(2) per line so threads never interleave. */
#include "log.h"
#include "util/fmt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/* Set once before threads start, read-only afterwards. */
static tp_log_level_t min_level = TP_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void tp__log_set_level(tp_log_level_t level) { min_level = level; }

bool tp__log_enabled(tp_log_level_t level) { return level >= min_level; }

static void put(tp_logline_t *l, const char *s, size_t n) {
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep space for "}\n" */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

size_t tp__json_escape(char *buf, size_t cap, size_t len, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (len + 1 >= cap)
        return len;
    buf[len++] = '"';
    for (size_t i = 0; i < n && len + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            buf[len++] = '\\';
            buf[len++] = 'u';
            buf[len++] = '0';
            buf[len++] = '0';
            buf[len++] = hex[c >> 4];
            buf[len++] = hex[c & 15];
        } else {
            buf[len++] = (char)c;
        }
    }
    if (len < cap)
        buf[len++] = '"';
    return len;
}

static void key(tp_logline_t *l, const char *k) {
    put(l, ",", 1);
    l->len = tp__json_escape(l->buf, sizeof(l->buf) - 2, l->len, k, strlen(k));
    put(l, ":", 1);
}

static void begin(tp_logline_t *l, tp_log_level_t level, const char *msg, bool on) {
    l->len = 0;
    l->on = on;
    if (!l->on)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int n = snprintf(l->buf, sizeof(l->buf), "{\"ts\":%lld.%06ld,\"level\":\"%s\"",
                     (long long)tv.tv_sec, (long)tv.tv_usec, level_names[level]);
    l->len = (size_t)n;
    tp__log_str(l, "msg", msg);
}

void tp__log_begin(tp_logline_t *l, tp_log_level_t level, const char *msg) {
    begin(l, level, msg, tp__log_enabled(level));
}

void tp__log_begin_always(tp_logline_t *l, tp_log_level_t level, const char *msg) {
    begin(l, level, msg, true);
}

void tp__log_strn(tp_logline_t *l, const char *k, const char *value, size_t n) {
    if (!l->on)
        return;
    key(l, k);
    l->len = tp__json_escape(l->buf, sizeof(l->buf) - 2, l->len, value ? value : "", value ? n : 0);
}

void tp__log_str(tp_logline_t *l, const char *k, const char *value) {
    tp__log_strn(l, k, value, value ? strlen(value) : 0);
}

void tp__log_u64(tp_logline_t *l, const char *k, uint64_t value) {
    if (!l->on)
        return;
    char num[24];
    key(l, k);
    put(l, num, tp__fmt_u64(num, value));
}

void tp__log_i64(tp_logline_t *l, const char *k, int64_t value) {
    if (!l->on)
        return;
    char num[24];
    size_t n = 0;
    if (value < 0)
        num[n++] = '-';
    n += tp__fmt_u64(num + n, value < 0 ? 0 - (uint64_t)value : (uint64_t)value);
    key(l, k);
    put(l, num, n);
}

void tp__log_bool(tp_logline_t *l, const char *k, bool value) {
    if (!l->on)
        return;
    key(l, k);
    put(l, value ? "true" : "false", value ? 4 : 5);
}

void tp__log_raw(tp_logline_t *l, const char *k, const char *json) {
    if (!l->on)
        return;
    key(l, k);
    put(l, json, strlen(json));
}

void tp__log_end(tp_logline_t *l) {
    if (!l->on)
        return;
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    size_t off = 0;
    while (off < l->len) {
        ssize_t w = write(STDERR_FILENO, l->buf + off, l->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    l->on = false;
}

void tp__log_msg(tp_log_level_t level, const char *msg, const char *fmt, ...) {
    tp_logline_t l;
    tp__log_begin(&l, level, msg);
    if (!l.on)
        return;
    if (fmt && *fmt) {
        char detail[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        tp__log_str(&l, "detail", detail);
    }
    tp__log_end(&l);
}
