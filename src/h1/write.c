/* write.c: HTTP/1.1 heads written from messages: a growable output and the field writers. */
#include "h1/write.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/fmt.h"

void tp__h1_out_init(tp_h1_out_t *o, size_t cap) {
    o->p = malloc(cap);
    o->len = 0;
    o->cap = cap;
}

void tp__h1_out_add(tp_h1_out_t *o, const char *s, size_t n) {
    if (!o->p)
        return;
    if (o->len + n > o->cap) {
        size_t nc = o->cap * 2 > o->len + n ? o->cap * 2 : o->len + n + 256;
        char *p = realloc(o->p, nc);
        if (!p) {
            free(o->p);
            o->p = NULL;
            return;
        }
        o->p = p;
        o->cap = nc;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

void tp__h1_out_str(tp_h1_out_t *o, tp_str_t s) { tp__h1_out_add(o, s.ptr, s.len); }

void tp__h1_out_u64(tp_h1_out_t *o, uint64_t v) {
    char num[24];
    tp__h1_out_add(o, num, tp__fmt_u64(num, v));
}

void tp__h1_out_field(tp_h1_out_t *o, tp_str_t name, tp_str_t value) {
    tp__h1_out_str(o, name);
    TP_H1_OUT_LIT(o, ": ");
    tp__h1_out_str(o, value);
    TP_H1_OUT_LIT(o, "\r\n");
}

bool tp__h1_name_is(tp_str_t name, const char *lit) {
    size_t n = strlen(lit);
    return name.len == n && strncasecmp(name.ptr, lit, n) == 0;
}

static bool listed(tp_str_t name, const char *const *names) {
    for (size_t k = 0; names && names[k]; k++)
        if (tp__h1_name_is(name, names[k]))
            return true;
    return false;
}

void tp__h1_out_fields(tp_h1_out_t *o, const tp_http_head_t *hd, size_t nfields,
                       const tp_hdr_edits_t *ed, const char *const *skip) {
    for (size_t i = 0; i < nfields; i++) {
        tp_str_t name = tp__head_str(hd, hd->fields[i].name);
        if (tp__http_is_hop_by_hop(hd, name) || (ed && tp__edits_removed(ed, name)) ||
            listed(name, skip))
            continue;
        tp__h1_out_field(o, name, tp__head_str(hd, hd->fields[i].value));
    }
}

void tp__h1_out_added(tp_h1_out_t *o, const tp_hdr_edits_t *ed) {
    static const char *const ours[] = {
        "content-length", "transfer-encoding", "connection",       "keep-alive", "te",
        "trailer",        "upgrade",           "proxy-connection", NULL};
    for (size_t r = 0; r < ed->added_len;) {
        const char *line = ed->added + r;
        const char *end = (const char *)memchr(line, '\n', ed->added_len - r) + 1;
        const char *colon = memchr(line, ':', (size_t)(end - line));
        tp_str_t name = {line, (size_t)(colon - line)};
        if (!listed(name, ours))
            tp__h1_out_add(o, line, (size_t)(end - line));
        r = (size_t)(end - ed->added);
    }
}

void tp__h1_out_last_chunk(tp_h1_out_t *o, const tp_http_head_t *hd, size_t from) {
    static const char *const not_trailers[] = {"content-length", "transfer-encoding", "host",
                                               "trailer", NULL};
    TP_H1_OUT_LIT(o, "0\r\n");
    for (size_t i = from; hd && i < hd->nfields; i++) {
        tp_str_t name = tp__head_str(hd, hd->fields[i].name);
        if (tp__http_is_hop_by_hop(hd, name) || listed(name, not_trailers))
            continue;
        tp__h1_out_field(o, name, tp__head_str(hd, hd->fields[i].value));
    }
    TP_H1_OUT_LIT(o, "\r\n");
}
