/* head.h: an HTTP message head, any version: first-line parts and fields, bounded. */
#ifndef TP_HTTP_HEAD_H
#define TP_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "turnpike/common.h"

typedef struct tp_http_span {
    uint32_t off, len;
} tp_http_span_t;

typedef struct tp_http_field {
    tp_http_span_t name, value;
} tp_http_field_t;

/* Bytes of the head in one buffer (method/url or status text, then names and values), bounded. */
typedef struct tp_http_head {
    char *buf;
    size_t len, cap;      /* cap = the configured max header bytes */
    tp_http_span_t first; /* request: method; response: status text */
    tp_http_span_t url;
    tp_http_field_t *fields;
    size_t nfields, max_fields;
    int state;         /* which element the next bytes belong to */
    size_t connection; /* 1 + the index of the Connection field, 0 when there is none */
    bool conn_names;   /* a Connection field names more than keep-alive, upgrade, te, trailer */
    uint32_t elem_start;
} tp_http_head_t;

enum { TP_HEAD_IN_NONE = 0, TP_HEAD_IN_FIRST, TP_HEAD_IN_URL, TP_HEAD_IN_NAME, TP_HEAD_IN_VALUE };

/* Results of appending: 0, or the HTTP status the overflow deserves (431, 414). */
int tp__head_init(tp_http_head_t *h, size_t max_bytes, size_t max_fields);
void tp__head_free(tp_http_head_t *h);
void tp__head_reset(tp_http_head_t *h);
int tp__head_append(tp_http_head_t *h, int element, const char *data, size_t len);
/* Closes the element in progress (the on_*_complete callbacks). */
int tp__head_complete(tp_http_head_t *h, int element);

static inline tp_str_t tp__head_str(const tp_http_head_t *h, tp_http_span_t s) {
    return (tp_str_t){h->buf + s.off, s.len};
}

/* Where a request goes, from its target. Strings point into the head. */
typedef struct tp_http_target {
    tp_str_t host; /* without brackets */
    uint16_t port;
    tp_str_t path; /* may be empty or start with '?': "/" is put first when it goes on */
    bool https;    /* a forward proxy's https:// target: TLS to the origin (origin_tls) */
} tp_http_target_t;

/* The first field named `name` (case-insensitive), or {NULL,0}. */
tp_str_t tp__head_get(const tp_http_head_t *h, const char *name);

/* True when `name` is a hop-by-hop header, or is listed in the message's Connection header. */
bool tp__http_is_hop_by_hop(const tp_http_head_t *h, tp_str_t name);

/* True when a comma-separated header list contains the token (case-insensitive). */
bool tp__http_list_has(tp_str_t list, const char *token);

#endif
