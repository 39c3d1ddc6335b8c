/* head.c: an HTTP message head, any version: first-line parts and fields, bounded. */
#include "http/head.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int tp__head_init(tp_http_head_t *h, size_t max_bytes, size_t max_fields) {
    memset(h, 0, sizeof(*h));
    h->buf = malloc(max_bytes);
    h->fields = malloc(sizeof(*h->fields) * max_fields);
    if (!h->buf || !h->fields) {
        tp__head_free(h);
        return TP_ERR_NOMEM;
    }
    h->cap = max_bytes;
    h->max_fields = max_fields;
    return 0;
}

void tp__head_free(tp_http_head_t *h) {
    free(h->buf);
    free(h->fields);
    h->buf = NULL;
    h->fields = NULL;
}

void tp__head_reset(tp_http_head_t *h) {
    h->len = 0;
    h->nfields = 0;
    h->connection = 0;
    h->conn_names = false;
    h->state = TP_HEAD_IN_NONE;
    h->first = h->url = (tp_http_span_t){0, 0};
}

int tp__head_append(tp_http_head_t *h, int element, const char *data, size_t len) {
    if (h->state != element) {
        if (element == TP_HEAD_IN_NAME && h->nfields >= h->max_fields)
            return 431;
        h->state = element;
        h->elem_start = (uint32_t)h->len;
    }
    if (len > h->cap - h->len)
        return element == TP_HEAD_IN_URL ? 414 : 431;
    memcpy(h->buf + h->len, data, len);
    h->len += len;
    return 0;
}

static bool eq_nocase(tp_str_t a, const char *lit, size_t n);

static bool is_connection(const tp_http_head_t *h, size_t i) {
    tp_str_t f = tp__head_str(h, h->fields[i].name);
    return eq_nocase(f, "connection", 10);
}

/* The next element of a comma-separated list from *i on, without the blanks around it (empty
 * when the list is done or the element is empty). */
static tp_str_t next_element(tp_str_t list, size_t *i) {
    size_t k = *i;
    while (k < list.len && (list.ptr[k] == ' ' || list.ptr[k] == '\t' || list.ptr[k] == ','))
        k++;
    size_t start = k;
    while (k < list.len && list.ptr[k] != ',')
        k++;
    size_t end = k;
    while (end > start && (list.ptr[end - 1] == ' ' || list.ptr[end - 1] == '\t'))
        end--;
    *i = k;
    return (tp_str_t){list.ptr + start, end - start};
}

/* Whether a Connection value names a field that is not hop-by-hop anyway (the common
 * "keep-alive" names none), so that tp__http_is_hop_by_hop() must look the names up. */
static bool names_others(tp_str_t v) {
    size_t i = 0;
    while (i < v.len) {
        tp_str_t t = next_element(v, &i);
        if (t.len && !eq_nocase(t, "keep-alive", 10) && !eq_nocase(t, "upgrade", 7) &&
            !eq_nocase(t, "te", 2) && !eq_nocase(t, "trailer", 7))
            return true;
    }
    return false;
}

int tp__head_complete(tp_http_head_t *h, int element) {
    if (h->state != element) { /* an empty element: no data callback came */
        if (element == TP_HEAD_IN_NAME && h->nfields >= h->max_fields)
            return 431;
        h->elem_start = (uint32_t)h->len;
    }
    tp_http_span_t s = {h->elem_start, (uint32_t)h->len - h->elem_start};
    switch (element) {
    case TP_HEAD_IN_FIRST: h->first = s; break;
    case TP_HEAD_IN_URL: h->url = s; break;
    case TP_HEAD_IN_NAME:
        h->fields[h->nfields].name = s;
        h->fields[h->nfields].value = (tp_http_span_t){s.off + s.len, 0};
        h->nfields++;
        if (s.len == 10 && !h->connection && strncasecmp(h->buf + s.off, "connection", 10) == 0)
            h->connection = h->nfields;
        break;
    case TP_HEAD_IN_VALUE:
        if (h->nfields > 0) {
            h->fields[h->nfields - 1].value = s;
            if (h->connection && !h->conn_names && is_connection(h, h->nfields - 1))
                h->conn_names = names_others(tp__head_str(h, s));
        }
        break;
    default: break;
    }
    h->state = TP_HEAD_IN_NONE;
    return 0;
}

tp_str_t tp__head_get(const tp_http_head_t *h, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nfields; i++) {
        tp_str_t f = tp__head_str(h, h->fields[i].name);
        if (f.len == n && strncasecmp(f.ptr, name, n) == 0)
            return tp__head_str(h, h->fields[i].value);
    }
    return (tp_str_t){NULL, 0};
}

bool tp__http_list_has(tp_str_t list, const char *token) {
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < list.len) {
        tp_str_t t = next_element(list, &i);
        if (t.len == tl && strncasecmp(t.ptr, token, tl) == 0)
            return true;
    }
    return false;
}

static bool eq_nocase(tp_str_t a, const char *lit, size_t n) {
    return a.len == n && strncasecmp(a.ptr, lit, n) == 0;
}

bool tp__http_is_hop_by_hop(const tp_http_head_t *h, tp_str_t name) {
    /* Hop-by-hop headers (RFC 9110 7.6.1) and the framing ones Turnpike writes itself; most
     * names are ruled out by their length alone. */
    switch (name.len) {
    case 2:
        if (eq_nocase(name, "te", 2))
            return true;
        break;
    case 7:
        if (eq_nocase(name, "trailer", 7) || eq_nocase(name, "upgrade", 7))
            return true;
        break;
    case 10:
        if (eq_nocase(name, "connection", 10) || eq_nocase(name, "keep-alive", 10))
            return true;
        break;
    case 14:
        if (eq_nocase(name, "content-length", 14))
            return true;
        break;
    case 16:
        if (eq_nocase(name, "proxy-connection", 16))
            return true;
        break;
    case 17:
        if (eq_nocase(name, "transfer-encoding", 17))
            return true;
        break;
    case 18:
        if (eq_nocase(name, "proxy-authenticate", 18))
            return true;
        break;
    case 19:
        if (eq_nocase(name, "proxy-authorization", 19))
            return true;
        break;
    default: break;
    }
    if (!h->connection || !h->conn_names)
        return false;
    /* Headers the Connection header names are hop-by-hop too. */
    char tok[64];
    if (name.len >= sizeof(tok))
        return false;
    memcpy(tok, name.ptr, name.len);
    tok[name.len] = '\0';
    for (size_t i = h->connection - 1; i < h->nfields; i++) {
        tp_str_t f = tp__head_str(h, h->fields[i].name);
        if (eq_nocase(f, "connection", 10) &&
            tp__http_list_has(tp__head_str(h, h->fields[i].value), tok))
            return true;
    }
    return false;
}
