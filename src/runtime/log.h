/* log.h: structured JSON log lines on stderr, one write(2) per line so threads never interleave. */
#ifndef TP_RUNTIME_LOG_H
#define TP_RUNTIME_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/model.h"

/* A line being built; lives on the caller's stack. Overlong lines are cut, never overflowed. */
typedef struct tp_logline {
    char buf[16384];
    size_t len;
    bool on;
} tp_logline_t;

/* Sets the least severe level that is written (process-wide, set once before workers start). */
void tp__log_set_level(tp_log_level_t level);
bool tp__log_enabled(tp_log_level_t level);

/* Starts a line {"ts":...,"level":...,"msg":msg; does nothing when the level is off. */
void tp__log_begin(tp_logline_t *l, tp_log_level_t level, const char *msg);
/* The same, written whatever log_level says: lifecycle lines (ready, draining, stopped) that
 * supervisors and the testkit wait for. */
void tp__log_begin_always(tp_logline_t *l, tp_log_level_t level, const char *msg);
void tp__log_str(tp_logline_t *l, const char *key, const char *value);
void tp__log_strn(tp_logline_t *l, const char *key, const char *value, size_t len);
void tp__log_u64(tp_logline_t *l, const char *key, uint64_t value);
void tp__log_i64(tp_logline_t *l, const char *key, int64_t value);
void tp__log_bool(tp_logline_t *l, const char *key, bool value);
/* Appends raw JSON text (an array or object the caller built) as the value of key. */
void tp__log_raw(tp_logline_t *l, const char *key, const char *json);
/* Closes the object and writes the line. */
void tp__log_end(tp_logline_t *l);

/* A one-shot line with just a message and a formatted "detail" field. */
void tp__log_msg(tp_log_level_t level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends a JSON string literal (quoted, escaped) to buf; returns the new length (capped). */
size_t tp__json_escape(char *buf, size_t cap, size_t len, const char *s, size_t n);

#endif
