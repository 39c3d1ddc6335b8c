/* head.h: an HTTP/1.x message head (request or response) collected from llhttp callbacks. */
#ifndef TP_H1_HEAD_H
#define TP_H1_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "turnpike/common.h"

typedef struct tp_h1_span {
    uint32_t off, len;
} tp_h1_span_t;

typedef struct tp_h1_field {
    tp_h1_span_t name, value;
} tp_h1_field_t;

/* Bytes of the head in one buffer (method/url or status text, then names and values), bounded. */
typedef struct tp_h1_head {
    char *buf;
    size_t len, cap;    /* cap = the configured max header bytes */
    tp_h1_span_t first; /* request: method; response: status text */
    tp_h1_span_t url;
    tp_h1_field_t *fields;
    size_t nfields, max_fields;
    int state;         /* which element the next bytes belong to */
    size_t connection; /* 1 + the index of the Connection field, 0 when there is none */
    uint32_t elem_start;
} tp_h1_head_t;

enum { TP_H1_IN_NONE = 0, TP_H1_IN_FIRST, TP_H1_IN_URL, TP_H1_IN_NAME, TP_H1_IN_VALUE };

/* Results of appending: 0, or the HTTP status the overflow deserves (431, 414). */
int tp__h1_head_init(tp_h1_head_t *h, size_t max_bytes, size_t max_fields);
void tp__h1_head_free(tp_h1_head_t *h);
void tp__h1_head_reset(tp_h1_head_t *h);
int tp__h1_head_append(tp_h1_head_t *h, int element, const char *data, size_t len);
/* Closes the element in progress (the on_*_complete callbacks). */
int tp__h1_head_complete(tp_h1_head_t *h, int element);

static inline tp_str_t tp__h1_str(const tp_h1_head_t *h, tp_h1_span_t s) {
    return (tp_str_t){h->buf + s.off, s.len};
}

/* The first field named `name` (case-insensitive), or {NULL,0}. */
tp_str_t tp__h1_head_get(const tp_h1_head_t *h, const char *name);

/* True when `name` is a hop-by-hop header, or is listed in the message's Connection header. */
bool tp__h1_is_hop_by_hop(const tp_h1_head_t *h, tp_str_t name);

/* True when a comma-separated header list contains the token (case-insensitive). */
bool tp__h1_list_has(tp_str_t list, const char *token);

#endif
