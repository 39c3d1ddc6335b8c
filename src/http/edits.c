/* edits.c: header changes hooks make to a message, applied when its head is sent. */
#include "http/edits.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "h1/request.h"

bool tp__edits_valid_name(const char *name) {
    if (!name || !*name)
        return false;
    for (const char *c = name; *c; c++)
        if (!tp__h1_is_tchar((unsigned char)*c))
            return false;
    return true;
}

bool tp__edits_valid_value(const char *value) {
    if (!value)
        return false;
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        if ((*c < 0x20 && *c != '\t') || *c == 0x7f)
            return false;
    return true;
}

int tp__edits_add(tp_hdr_edits_t *e, const char *name, const char *value) {
    if (!tp__edits_valid_name(name) || !tp__edits_valid_value(value))
        return TP_ERR_INVAL;
    size_t nl = strlen(name), vl = strlen(value);
    if (e->nadded >= TP_HDR_EDITS_MAX_LINES ||
        e->added_len + e->removed_len + nl + vl + 4 > TP_HDR_EDITS_MAX_BYTES)
        return TP_ERR_TOO_LARGE;
    char *a = realloc(e->added, e->added_len + nl + vl + 4);
    if (!a)
        return TP_ERR_NOMEM;
    e->added = a;
    a += e->added_len;
    memcpy(a, name, nl);
    memcpy(a + nl, ": ", 2);
    memcpy(a + nl + 2, value, vl);
    memcpy(a + nl + 2 + vl, "\r\n", 2);
    e->added_len += nl + vl + 4;
    e->nadded++;
    return 0;
}

int tp__edits_append_lines(tp_hdr_edits_t *e, const tp_hdr_edits_t *from) {
    if (!from->added_len)
        return 0;
    if (e->nadded + from->nadded > TP_HDR_EDITS_MAX_LINES ||
        e->added_len + e->removed_len + from->added_len > TP_HDR_EDITS_MAX_BYTES)
        return TP_ERR_TOO_LARGE;
    char *a = realloc(e->added, e->added_len + from->added_len);
    if (!a)
        return TP_ERR_NOMEM;
    memcpy(a + e->added_len, from->added, from->added_len);
    e->added = a;
    e->added_len += from->added_len;
    e->nadded += from->nadded;
    return 0;
}

/* The name of the added line at `line` (which points at its first byte). */
static size_t line_name_len(const char *line) { return (size_t)(strchr(line, ':') - line); }

int tp__edits_remove(tp_hdr_edits_t *e, const char *name) {
    if (!tp__edits_valid_name(name))
        return TP_ERR_INVAL;
    size_t nl = strlen(name);
    /* Drop added lines of that name. */
    size_t w = 0;
    for (size_t r = 0; r < e->added_len;) {
        const char *line = e->added + r;
        size_t len = (size_t)((const char *)memchr(line, '\n', e->added_len - r) - line) + 1;
        if (line_name_len(line) == nl && strncasecmp(line, name, nl) == 0) {
            e->nadded--;
        } else {
            memmove(e->added + w, line, len);
            w += len;
        }
        r += len;
    }
    e->added_len = w;
    if (tp__edits_removed(e, (tp_str_t){name, nl}))
        return 0;
    if (e->added_len + e->removed_len + nl + 1 > TP_HDR_EDITS_MAX_BYTES)
        return TP_ERR_TOO_LARGE;
    char *rm = realloc(e->removed, e->removed_len + nl + 1);
    if (!rm)
        return TP_ERR_NOMEM;
    e->removed = rm;
    for (size_t i = 0; i < nl; i++) {
        char c = name[i];
        rm[e->removed_len + i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    rm[e->removed_len + nl] = '\0';
    e->removed_len += nl + 1;
    return 0;
}

int tp__edits_set(tp_hdr_edits_t *e, const char *name, const char *value) {
    if (!tp__edits_valid_name(name) || !tp__edits_valid_value(value))
        return TP_ERR_INVAL;
    int rc = tp__edits_remove(e, name);
    return rc ? rc : tp__edits_add(e, name, value);
}

bool tp__edits_removed(const tp_hdr_edits_t *e, tp_str_t name) {
    for (size_t off = 0; off < e->removed_len;) {
        const char *n = e->removed + off;
        size_t len = strlen(n);
        if (len == name.len && strncasecmp(n, name.ptr, len) == 0)
            return true;
        off += len + 1;
    }
    return false;
}

tp_str_t tp__edits_get(const tp_hdr_edits_t *e, const char *name) {
    size_t nl = strlen(name);
    for (size_t r = 0; r < e->added_len;) {
        const char *line = e->added + r;
        const char *end = memchr(line, '\n', e->added_len - r);
        if (line_name_len(line) == nl && strncasecmp(line, name, nl) == 0)
            return (tp_str_t){line + nl + 2, (size_t)(end - 1 - (line + nl + 2))};
        r = (size_t)(end + 1 - e->added);
    }
    return (tp_str_t){NULL, 0};
}

void tp__edits_free(tp_hdr_edits_t *e) {
    free(e->added);
    free(e->removed);
    memset(e, 0, sizeof(*e));
}
