/* config.c: YAML loader: reads a document into a tree, checks it against schemas, fills structs. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "config.h"
#include "units.h"

/* Limits against hostile or broken input; a real configuration is far below each. */
#define MAX_DOC_BYTES ((size_t)4 << 20) /* the whole document */
#define MAX_DEPTH     32                /* nested mappings and sequences */
#define MAX_SCALAR    65536             /* bytes of one value */
#define MAX_ITEMS     65536             /* items of one list (or keys of one mapping) */
#define MAX_NODES     262144            /* values in the whole document */

/* How much of a user's key or value is quoted back in a message. */
#define SHOWN_MAX 72

enum { N_SCALAR, N_SEQ, N_MAP };

/* A YAML node with its position. Schema defaults are parsed as scalar nodes at line 0. */
typedef struct node {
    int kind;
    bool plain;    /* a plain scalar without a tag: "", "~" and "null" then mean "no value" */
    int line, col; /* 1-based */
    size_t len;    /* scalar: bytes of text */
    size_t n, cap; /* children: sequence items, or mapping keys and values alternating */
    struct node **kids;
    const char *text; /* scalar: NUL-terminated (NUL bytes inside are refused) */
} node_t;

typedef struct loader {
    tp_config_error_t *err;
    char path[sizeof(((tp_config_error_t *)0)->key)]; /* dotted key path of what is being read */
    size_t path_len;
    const tp_setting_t *in_default; /* set while a schema default is being parsed */
    size_t nodes;
} loader_t;

/* ---- Messages ------------------------------------------------------------------------------ */

/* Copies user text for a message: at most SHOWN_MAX bytes, control characters as '?'. */
static const char *shown(const char *text, size_t len, char *buf, size_t size) {
    size_t max = size - 4 < SHOWN_MAX ? size - 4 : SHOWN_MAX, o = 0;
    for (size_t i = 0; i < len && o < max; i++) {
        unsigned char c = (unsigned char)text[i];
        buf[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (len > max)
        memcpy(buf + o, "...", 3), o += 3;
    buf[o] = '\0';
    return buf;
}

__attribute__((format(printf, 3, 4))) static int fail(loader_t *L, const node_t *at,
                                                      const char *fmt, ...) {
    tp_config_error_t *e = L->err;
    char msg[sizeof(e->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    e->line = at ? at->line : 0;
    e->column = at ? at->col : 0;
    memcpy(e->key, L->path, sizeof(e->key));
    if (L->in_default) {
        /* Not the user's fault: say so, and show the text that came from the program. */
        e->line = e->column = 0;
        char def[SHOWN_MAX + 4];
        snprintf(e->msg, sizeof(e->msg),
                 "invalid default '%s' in the program's schema (a bug): %.300s",
                 shown(L->in_default->def, strlen(L->in_default->def), def, sizeof(def)), msg);
    } else {
        memcpy(e->msg, msg, sizeof(e->msg));
    }
    return TP_ERR_CONFIG;
}

static int fail_nomem(loader_t *L) {
    fail(L, NULL, "out of memory while reading the configuration");
    return TP_ERR_NOMEM;
}

static const char *kind_name(const node_t *n) {
    if (n->kind == N_MAP)
        return "a mapping";
    if (n->kind == N_SEQ)
        return "a list";
    return "a single value";
}

static size_t path_push(loader_t *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(loader_t *L, const char *fmt, ...) {
    size_t saved = L->path_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(L->path + saved, sizeof(L->path) - saved, fmt, ap);
    va_end(ap);
    if (n > 0)
        L->path_len = saved + (size_t)n < sizeof(L->path) ? saved + (size_t)n : sizeof(L->path) - 1;
    return saved;
}

static size_t path_push_key(loader_t *L, const char *key, size_t len) {
    char buf[SHOWN_MAX + 4];
    return path_push(L, "%s%s", L->path_len ? "." : "", shown(key, len, buf, sizeof(buf)));
}

static void path_pop(loader_t *L, size_t saved) {
    L->path_len = saved;
    L->path[saved] = '\0';
}

/* ---- YAML to a tree ------------------------------------------------------------------------ */

static void node_free(node_t *n) {
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n);
}

static bool is_null(const node_t *n) {
    if (n->kind != N_SCALAR || !n->plain)
        return false;
    static const char *const words[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(n->text, words[i]) == 0)
            return true;
    return false;
}

static int clamp_int(size_t v) { return v >= INT_MAX ? INT_MAX : (int)v; }

/* The key path of the node an event is about to create, from the containers still open. */
static void tree_path(loader_t *L, node_t *const *stack, int depth) {
    path_pop(L, 0);
    for (int i = 0; i < depth; i++) {
        const node_t *c = stack[i];
        bool last = i == depth - 1;
        if (c->kind == N_SEQ) {
            path_push(L, "[%zu]", last ? c->n : c->n - 1);
        } else if (last ? c->n % 2 == 1 : c->n >= 2) {
            const node_t *key = c->kids[last ? c->n - 1 : c->n - 2];
            if (key->kind == N_SCALAR)
                path_push_key(L, key->text, key->len);
        }
    }
}

__attribute__((format(printf, 3, 4))) static int fail_mark(loader_t *L, const yaml_mark_t *mark,
                                                           const char *fmt, ...) {
    node_t at = {.line = clamp_int(mark->line + 1), .col = clamp_int(mark->column + 1)};
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fail(L, &at, "%s", msg);
}

static int yaml_fail(loader_t *L, const yaml_parser_t *p, const char *text, size_t len) {
    if (p->error == YAML_MEMORY_ERROR)
        return fail_nomem(L);
    path_pop(L, 0);
    node_t at = {0};
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset only: count the lines to it. */
        at.line = 1;
        at.col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n')
                at.line++, at.col = 1;
            else
                at.col++;
        }
    } else {
        at.line = clamp_int(p->problem_mark.line + 1);
        at.col = clamp_int(p->problem_mark.column + 1);
    }
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->context)
        return fail(L, &at, "invalid YAML: %s (%s at line %d)", problem, p->context,
                    clamp_int(p->context_mark.line + 1));
    return fail(L, &at, "invalid YAML: %s", problem);
}

/* Anchors, aliases and tags other than the failsafe ones would make the file mean something else
 * than it reads as; refuse them rather than half-support them. */
static bool decorated(const char *anchor, const char *tag, const char *allowed_tag, char *why,
                      size_t size) {
    char buf[SHOWN_MAX + 4];
    if (anchor)
        snprintf(why, size, "anchors (&%s) are not supported: write values out",
                 shown(anchor, strlen(anchor), buf, sizeof(buf)));
    else if (tag && strcmp(tag, allowed_tag) != 0)
        snprintf(why, size, "tags ('%s') are not supported: the key decides the type",
                 shown(tag, strlen(tag), buf, sizeof(buf)));
    else
        return false;
    return true;
}

static node_t *node_new(int kind, const yaml_mark_t *mark, const char *text, size_t len) {
    node_t *n = calloc(1, sizeof(*n) + (kind == N_SCALAR ? len + 1 : 0));
    if (!n)
        return NULL;
    n->kind = kind;
    n->line = clamp_int(mark->line + 1);
    n->col = clamp_int(mark->column + 1);
    if (kind == N_SCALAR) {
        char *t = (char *)(n + 1);
        if (len)
            memcpy(t, text, len);
        t[len] = '\0';
        n->text = t;
        n->len = len;
    }
    return n;
}

static int node_append(node_t *parent, node_t *kid) {
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        node_t **kids = realloc(parent->kids, cap * sizeof(node_t *));
        if (!kids)
            return TP_ERR_NOMEM;
        parent->kids = kids;
        parent->cap = cap;
    }
    parent->kids[parent->n++] = kid;
    return 0;
}

/* Handles one node event: checks it, makes the node and hangs it into the tree. */
static int tree_add(loader_t *L, const yaml_event_t *ev, node_t **root, node_t **stack,
                    int *depth) {
    char why[256] = "";
    int kind;
    node_t *parent = *depth > 0 ? stack[*depth - 1] : NULL;
    if (ev->type == YAML_SCALAR_EVENT) {
        kind = N_SCALAR;
        bool refused = decorated((const char *)ev->data.scalar.anchor,
                                 (const char *)ev->data.scalar.tag, YAML_STR_TAG, why, sizeof(why));
        if (!refused && ev->data.scalar.length > MAX_SCALAR)
            snprintf(why, sizeof(why), "value longer than %d bytes", MAX_SCALAR);
        else if (!refused && memchr(ev->data.scalar.value, '\0', ev->data.scalar.length))
            snprintf(why, sizeof(why), "values may not contain NUL characters");
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        kind = N_SEQ;
        decorated((const char *)ev->data.sequence_start.anchor,
                  (const char *)ev->data.sequence_start.tag, YAML_SEQ_TAG, why, sizeof(why));
    } else {
        kind = N_MAP;
        decorated((const char *)ev->data.mapping_start.anchor,
                  (const char *)ev->data.mapping_start.tag, YAML_MAP_TAG, why, sizeof(why));
    }
    if (why[0] == '\0' && ++L->nodes > MAX_NODES) {
        snprintf(why, sizeof(why), "the document has more than %d values", MAX_NODES);
    } else if (why[0] == '\0' && parent &&
               parent->n >= (parent->kind == N_SEQ ? 1 : 2) * (size_t)MAX_ITEMS) {
        snprintf(why, sizeof(why), "more than %d items in one %s", MAX_ITEMS,
                 parent->kind == N_SEQ ? "list" : "mapping");
    } else if (why[0] == '\0' && kind != N_SCALAR && *depth == MAX_DEPTH) {
        snprintf(why, sizeof(why), "nested deeper than %d levels", MAX_DEPTH);
    }
    if (why[0]) {
        tree_path(L, stack, *depth);
        return fail_mark(L, &ev->start_mark, "%s", why);
    }

    node_t *n = kind == N_SCALAR
                    ? node_new(kind, &ev->start_mark, (const char *)ev->data.scalar.value,
                               ev->data.scalar.length)
                    : node_new(kind, &ev->start_mark, NULL, 0);
    if (!n)
        return fail_nomem(L);
    if (kind == N_SCALAR)
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag;
    if (!parent) {
        *root = n;
    } else if (node_append(parent, n) != 0) {
        node_free(n);
        return fail_nomem(L);
    }
    if (kind != N_SCALAR)
        stack[(*depth)++] = n;
    return 0;
}

/* Parses the whole stream into *root (NULL for an empty stream or document). */
static int read_tree(loader_t *L, const char *text, size_t len, node_t **root) {
    yaml_parser_t parser;
    yaml_event_t ev;
    node_t *stack[MAX_DEPTH];
    int depth = 0, docs = 0, rc = 0;
    bool done = false;

    *root = NULL;
    if (!yaml_parser_initialize(&parser))
        return fail_nomem(L);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = yaml_fail(L, &parser, text, len);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0)
                rc = fail_mark(L, &ev.start_mark, "only one YAML document is allowed per file");
            break;
        case YAML_ALIAS_EVENT: {
            char buf[SHOWN_MAX + 4];
            const char *name = (const char *)ev.data.alias.anchor;
            tree_path(L, stack, depth);
            rc = fail_mark(L, &ev.start_mark, "aliases (*%s) are not supported: write values out",
                           shown(name, strlen(name), buf, sizeof(buf)));
            break;
        }
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: rc = tree_add(L, &ev, root, stack, &depth); break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: depth--; break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    path_pop(L, 0);
    if (rc) {
        node_free(*root);
        *root = NULL;
    }
    return rc;
}

/* ---- Values -------------------------------------------------------------------------------- */

/* Optimal string alignment distance (typos: insertions, deletions, changes, swaps), for the
 * "did you mean" of unknown keys and words. Long strings are never close. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    enum { MAXLEN = 64 };
    size_t rows[3][MAXLEN + 1];
    if (la > MAXLEN || lb > MAXLEN)
        return SIZE_MAX;
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + cost < best)
                best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* The closest of `words` to `text` when it is close enough to be a typo, else NULL. Words are
 * read `stride` bytes apart (setting tables and name arrays alike). */
static const char *suggest(const char *text, size_t len, const char *const *words, size_t stride) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (const char *const *w = words; *w; w = (const char *const *)((const char *)w + stride)) {
        size_t wl = strlen(*w);
        size_t d = edit_distance(text, len, *w, wl);
        if (d < best_d && d <= 2 && d * 2 <= (len > wl ? len : wl)) {
            best = *w;
            best_d = d;
        }
    }
    return best;
}

/* "a, b, c" from a NULL-terminated word list read `stride` bytes apart. */
static const char *word_list(const char *const *words, size_t stride, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    for (const char *const *w = words; *w; w = (const char *const *)((const char *)w + stride)) {
        int n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", *w);
        if (n < 0 || (size_t)n >= size - o)
            break;
        o += (size_t)n;
    }
    return buf;
}

static const char *type_what(const tp_setting_t *s, char *buf, size_t size) {
    switch (s->type) {
    case TP_SETTING_T_BOOL: return "true or false";
    case TP_SETTING_T_INT:
        return s->flags & TP_SETTING_AUTO ? "an integer or 'auto'" : "an integer";
    case TP_SETTING_T_DURATION: return "a duration such as 250ms, 30s, 5m, 1h or 1d";
    case TP_SETTING_T_SIZE: return "a size such as 512, 64KiB, 16MiB or 1GiB";
    case TP_SETTING_T_STRING: return "a string";
    case TP_SETTING_T_ENUM: {
        char words[256];
        snprintf(buf, size, "one of: %s",
                 word_list(s->names, sizeof(*s->names), words, sizeof(words)));
        return buf;
    }
    case TP_SETTING_T_CIDRS: return "IP prefixes such as 10.0.0.0/8 or fd00::/8";
    case TP_SETTING_T_ADDRS: return "addresses such as 127.0.0.1:8080 or [::1]:8080";
    case TP_SETTING_T_HOSTPORT: return "host:port, such as example.com:443 or [2001:db8::1]:80";
    case TP_SETTING_T_STRINGS: return "a list of strings";
    case TP_SETTING_T_SECTION: return "a mapping of keys";
    case TP_SETTING_T_LIST: return "a list of mappings (each item starts with '- ')";
    default: return "a value";
    }
}

/* The scalar text of `v`, or an error naming what was expected. */
static int want_scalar(loader_t *L, const tp_setting_t *s, const node_t *v) {
    char buf[320];
    if (v->kind != N_SCALAR)
        return fail(L, v, "expected %s, got %s", type_what(s, buf, sizeof(buf)), kind_name(v));
    if (is_null(v))
        return fail(L, v, "missing value: expected %s", type_what(s, buf, sizeof(buf)));
    return 0;
}

static bool parse_int(const char *t, int64_t *out) {
    bool neg = *t == '-';
    if (*t == '-' || *t == '+')
        t++;
    if (*t == '\0')
        return false;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; *t; t++) {
        if (*t < '0' || *t > '9')
            return false;
        unsigned d = (unsigned)(*t - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return true;
}

static bool bounded(const tp_setting_t *s) { return s->min != 0 || s->max != 0; }

static int fail_range(loader_t *L, const tp_setting_t *s, const node_t *v) {
    char lo[32], hi[32], text[SHOWN_MAX + 4];
    return fail(L, v, "%s is out of range %s..%s", shown(v->text, v->len, text, sizeof(text)),
                tp__format_bound(s, s->min, lo, sizeof(lo)),
                tp__format_bound(s, s->max, hi, sizeof(hi)));
}

/* A DNS name (letters, digits, '-' and '_' in labels of 1..63 bytes, 253 in all, one trailing dot
 * allowed) or an IP address; IPv6 in brackets. */
static bool valid_host(const char *h, size_t len) {
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        char buf[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (len - 2 >= sizeof(buf))
            return false;
        memcpy(buf, h + 1, len - 2);
        buf[len - 2] = '\0';
        return inet_pton(AF_INET6, buf, &a6) == 1;
    }
    if (len > 0 && h[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    bool all_numeric = true;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? h[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || h[i - 1] == '-' || h[i - label] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '_')
            return false;
        if (c < '0' || c > '9')
            all_numeric = false;
        label++;
    }
    if (all_numeric) {
        /* Digits and dots only is an IPv4 address, and a wrong one is not a host name. */
        char buf[INET_ADDRSTRLEN];
        struct in_addr a4;
        if (len >= sizeof(buf))
            return false;
        memcpy(buf, h, len);
        buf[len] = '\0';
        return inet_pton(AF_INET, buf, &a4) == 1;
    }
    return true;
}

static int parse_hostport(loader_t *L, const node_t *v) {
    char text[SHOWN_MAX + 4];
    const char *colon = strrchr(v->text, ':');
    const char *close = v->text[0] == '[' ? strchr(v->text, ']') : NULL;
    const char *why = NULL;
    if (v->text[0] == '[' && (!close || close[1] != ':')) {
        why = close ? "the port is missing" : "the ']' after the IPv6 address is missing";
    } else if (!colon) {
        why = "the port is missing";
    } else if (v->text[0] != '[' && memchr(v->text, ':', (size_t)(colon - v->text))) {
        why = "an IPv6 address needs brackets: [2001:db8::1]:443";
    } else {
        int64_t port;
        if (!parse_int(colon + 1, &port) || colon[1] == '+' || colon[1] == '-' || port < 1 ||
            port > 65535)
            why = "the port must be a number from 1 to 65535";
        else if (!valid_host(v->text, (size_t)(colon - v->text)))
            why = "the host is neither a DNS name nor an IP address";
    }
    if (why)
        return fail(L, v, "'%s' is not a valid host:port: %s",
                    shown(v->text, v->len, text, sizeof(text)), why);
    return 0;
}

static int set_string(loader_t *L, char **field, const node_t *v) {
    free(*field);
    *field = NULL;
    if (is_null(v))
        return 0;
    *field = strdup(v->text);
    return *field ? 0 : fail_nomem(L);
}

/* BOOL, INT, DURATION, SIZE, STRING, ENUM and HOSTPORT. */
static int apply_scalar(loader_t *L, const tp_setting_t *s, void *field, const node_t *v) {
    char text[SHOWN_MAX + 4], buf[320];
    int rc;
    if (v->kind != N_SCALAR)
        return fail(L, v, "expected %s, got %s", type_what(s, buf, sizeof(buf)), kind_name(v));
    if ((s->type == TP_SETTING_T_STRING || s->type == TP_SETTING_T_HOSTPORT) && is_null(v))
        return set_string(L, field, v);
    if ((rc = want_scalar(L, s, v)) != 0)
        return rc;
    const char *t = v->text;
    switch (s->type) {
    case TP_SETTING_T_BOOL:
        /* YAML 1.2 core schema only: "yes", "on" and friends are refused rather than guessed. */
        if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE"))
            *(bool *)field = true;
        else if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE"))
            *(bool *)field = false;
        else if (!strcasecmp(t, "yes") || !strcasecmp(t, "no") || !strcasecmp(t, "on") ||
                 !strcasecmp(t, "off") || !strcasecmp(t, "y") || !strcasecmp(t, "n"))
            return fail(L, v, "expected true or false, got '%s' (YAML 1.2 has no yes/no/on/off)",
                        t);
        else
            return fail(L, v, "expected true or false, got '%s'",
                        shown(t, v->len, text, sizeof(text)));
        return 0;
    case TP_SETTING_T_INT: {
        int64_t i;
        if ((s->flags & TP_SETTING_AUTO) && strcmp(t, "auto") == 0) {
            *(int64_t *)field = 0;
            return 0;
        }
        if (!parse_int(t, &i))
            return fail(L, v, "expected %s, got '%s'", type_what(s, buf, sizeof(buf)),
                        shown(t, v->len, text, sizeof(text)));
        if (bounded(s) && (i < s->min || i > s->max))
            return fail_range(L, s, v);
        *(int64_t *)field = i;
        return 0;
    }
    case TP_SETTING_T_DURATION:
    case TP_SETTING_T_SIZE: {
        uint64_t u;
        rc = s->type == TP_SETTING_T_DURATION ? tp__parse_duration(t, &u) : tp__parse_size(t, &u);
        if (rc == TP_ERR_RANGE)
            return fail(L, v, "'%s' is too large", shown(t, v->len, text, sizeof(text)));
        if (rc != 0)
            return fail(L, v, "expected %s, got '%s'", type_what(s, buf, sizeof(buf)),
                        shown(t, v->len, text, sizeof(text)));
        if (bounded(s) &&
            ((s->min > 0 && u < (uint64_t)s->min) || s->max < 0 || u > (uint64_t)s->max))
            return fail_range(L, s, v);
        *(uint64_t *)field = u;
        return 0;
    }
    case TP_SETTING_T_STRING: return set_string(L, field, v);
    case TP_SETTING_T_HOSTPORT:
        if ((rc = parse_hostport(L, v)) != 0)
            return rc;
        return set_string(L, field, v);
    case TP_SETTING_T_ENUM: {
        for (int i = 0; s->names[i]; i++) {
            if (strcmp(t, s->names[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        char words[256];
        const char *near = suggest(t, v->len, s->names, sizeof(*s->names));
        word_list(s->names, sizeof(*s->names), words, sizeof(words));
        if (near)
            return fail(L, v, "'%s' is not one of: %s (did you mean '%s'?)",
                        shown(t, v->len, text, sizeof(text)), words, near);
        return fail(L, v, "'%s' is not one of: %s", shown(t, v->len, text, sizeof(text)), words);
    }
    default: return fail(L, v, "internal error: setting type %d is not a scalar", (int)s->type);
    }
}

/* One entry of a CIDRS, ADDRS or STRINGS value: a piece of a scalar or an item of a sequence. */
typedef struct item {
    const char *text;
    size_t len;
    const node_t *at;
    bool indexed; /* from a sequence: the key path gets "[i]" */
} item_t;

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Splits a scalar on commas (and, except for STRINGS, on white space) or takes the items of a
 * sequence; an explicit empty value is an empty list. */
static int collect_items(loader_t *L, const tp_setting_t *s, const node_t *v, item_t **out,
                         size_t *n) {
    char buf[320];
    *out = NULL;
    *n = 0;
    if (v->kind == N_MAP)
        return fail(L, v, "expected %s, got a mapping", type_what(s, buf, sizeof(buf)));
    if (is_null(v))
        return 0;
    size_t cap = v->kind == N_SEQ ? v->n : 1;
    if (v->kind == N_SCALAR)
        for (size_t i = 0; i < v->len; i++)
            cap += v->text[i] == ',' || (s->type != TP_SETTING_T_STRINGS && is_space(v->text[i]));
    if (cap > MAX_ITEMS)
        return fail(L, v, "more than %d items in one list", MAX_ITEMS);
    item_t *items = calloc(cap ? cap : 1, sizeof(*items));
    if (!items)
        return fail_nomem(L);
    if (v->kind == N_SEQ) {
        for (size_t i = 0; i < v->n; i++) {
            const node_t *k = v->kids[i];
            if (k->kind != N_SCALAR || is_null(k)) {
                size_t saved = path_push(L, "[%zu]", i);
                int rc =
                    k->kind != N_SCALAR
                        ? fail(L, k, "expected a single value in the list, got %s", kind_name(k))
                        : fail(L, k, "empty list item");
                path_pop(L, saved);
                free(items);
                return rc;
            }
            items[(*n)++] = (item_t){k->text, k->len, k, true};
        }
    } else {
        const char *p = v->text, *end = v->text + v->len;
        while (p < end) {
            const char *start = p;
            if (s->type == TP_SETTING_T_STRINGS) {
                while (p < end && *p != ',')
                    p++;
                const char *e = p;
                while (start < e && is_space(*start))
                    start++;
                while (e > start && is_space(e[-1]))
                    e--;
                if (e > start)
                    items[(*n)++] = (item_t){start, (size_t)(e - start), v, false};
            } else {
                while (p < end && *p != ',' && !is_space(*p))
                    p++;
                if (p > start)
                    items[(*n)++] = (item_t){start, (size_t)(p - start), v, false};
            }
            if (p < end)
                p++;
        }
    }
    *out = items;
    return 0;
}

static int apply_list(loader_t *L, const tp_setting_t *s, void *field, const node_t *v) {
    item_t *items;
    size_t n;
    int rc = collect_items(L, s, v, &items, &n);
    if (rc)
        return rc;
    if (s->type == TP_SETTING_T_CIDRS) {
        tp_cidr_set_t **set = field;
        tp_cidr_set_del(*set);
        *set = tp_cidr_set_new("", NULL);
        if (!*set)
            rc = fail_nomem(L);
    } else if (s->type == TP_SETTING_T_ADDRS) {
        tp_addr_list_t *list = field;
        list->items = n ? calloc(n, sizeof(*list->items)) : NULL;
        list->n = n;
        if (n && !list->items)
            rc = fail_nomem(L), list->n = 0;
    } else {
        tp_str_list_t *list = field;
        list->items = n ? calloc(n, sizeof(*list->items)) : NULL;
        list->n = n;
        if (n && !list->items)
            rc = fail_nomem(L), list->n = 0;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        char buf[TP_ADDR_STRLEN + 16], text[SHOWN_MAX + 4];
        const item_t *it = &items[i];
        size_t saved = it->indexed ? path_push(L, "[%zu]", i) : L->path_len;
        bool fits = it->len < sizeof(buf);
        if (fits) {
            memcpy(buf, it->text, it->len);
            buf[it->len] = '\0';
        }
        shown(it->text, it->len, text, sizeof(text));
        if (s->type == TP_SETTING_T_CIDRS) {
            int r = fits ? tp_cidr_set_add(*(tp_cidr_set_t **)field, buf) : TP_ERR_INVAL;
            if (r == TP_ERR_NOMEM)
                rc = fail_nomem(L);
            else if (r != 0)
                rc = fail(L, it->at,
                          "'%s' is not an IP prefix such as 10.0.0.0/8, fd00::/8 or 192.0.2.1 "
                          "(host bits after the prefix length must be zero)",
                          text);
        } else if (s->type == TP_SETTING_T_ADDRS) {
            tp_addr_list_t *list = field;
            if (!fits || tp_addr_parse(&list->items[i], buf, false) != 0)
                rc = fail(L, it->at,
                          "'%s' is not a numeric ip:port such as 127.0.0.1:8080 or [::1]:8080",
                          text);
        } else {
            tp_str_list_t *list = field;
            list->items[i] = strndup(it->text, it->len);
            if (!list->items[i])
                rc = fail_nomem(L);
        }
        path_pop(L, saved);
    }
    free(items);
    return rc;
}

static int fill_section(loader_t *L, const tp_schema_t *sc, void *obj, const node_t *map,
                        const node_t *where);

static int apply_section(loader_t *L, const tp_setting_t *s, void *field, const node_t *v,
                         const node_t *where) {
    void *obj = field;
    if (s->flags & TP_SETTING_INDIRECT) {
        void **slot = field;
        if (!*slot && !(*slot = calloc(1, s->sub->size ? s->sub->size : 1)))
            return fail_nomem(L);
        obj = *slot;
    }
    return fill_section(L, s->sub, obj, v, v ? v : where);
}

static int apply_items(loader_t *L, const tp_setting_t *s, tp_list_t *list, const node_t *v) {
    char buf[320];
    if (is_null(v))
        return 0;
    if (v->kind != N_SEQ)
        return fail(L, v, "expected %s, got %s", type_what(s, buf, sizeof(buf)), kind_name(v));
    if (v->n == 0)
        return 0;
    size_t size = s->sub->size ? s->sub->size : 1;
    list->items = calloc(v->n, size);
    if (!list->items)
        return fail_nomem(L);
    list->n = v->n;
    for (size_t i = 0; i < v->n; i++) {
        size_t saved = path_push(L, "[%zu]", i);
        int rc = fill_section(L, s->sub, (char *)list->items + i * size, v->kids[i], v->kids[i]);
        path_pop(L, saved);
        if (rc)
            return rc;
    }
    return 0;
}

static int apply(loader_t *L, const tp_setting_t *s, void *obj, const node_t *v) {
    void *field = (char *)obj + s->offset;
    if ((s->flags & TP_SETTING_REQUIRED) && is_null(v))
        return fail(L, v, "'%s' is required and needs a value", s->name);
    switch (s->type) {
    case TP_SETTING_T_CIDRS:
    case TP_SETTING_T_ADDRS:
    case TP_SETTING_T_STRINGS: return apply_list(L, s, field, v);
    case TP_SETTING_T_SECTION: return apply_section(L, s, field, v, v);
    case TP_SETTING_T_LIST: return apply_items(L, s, field, v);
    default: return apply_scalar(L, s, field, v);
    }
}

/* An absent key: its default, parsed like user input, or the zero value. */
static int apply_default(loader_t *L, const tp_setting_t *s, void *obj, const node_t *where) {
    void *field = (char *)obj + s->offset;
    if (s->type == TP_SETTING_T_SECTION && (s->flags & TP_SETTING_OPTIONAL))
        return 0; /* absent: off */
    if (s->type == TP_SETTING_T_SECTION)
        return apply_section(L, s, field, NULL, where);
    if (s->type == TP_SETTING_T_LIST)
        return 0;
    if (!s->def) {
        if (s->type == TP_SETTING_T_CIDRS &&
            !(*(tp_cidr_set_t **)field = tp_cidr_set_new("", NULL)))
            return fail_nomem(L);
        return 0;
    }
    node_t def = {.kind = N_SCALAR, .plain = true, .text = s->def, .len = strlen(s->def)};
    L->in_default = s;
    int rc = apply(L, s, obj, &def);
    L->in_default = NULL;
    return rc;
}

static const tp_setting_t *find_setting(const tp_schema_t *sc, const node_t *key) {
    for (const tp_setting_t *s = sc->settings; s && s->type != TP_SETTING_T_END; s++)
        if (strlen(s->name) == key->len && memcmp(s->name, key->text, key->len) == 0)
            return s;
    return NULL;
}

/* The key node named `name` in a mapping, or NULL. */
static const node_t *find_key(const node_t *map, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; map && i + 1 < map->n; i += 2) {
        const node_t *k = map->kids[i];
        if (k->kind == N_SCALAR && k->len == len && memcmp(k->text, name, len) == 0)
            return k;
    }
    return NULL;
}

static int fail_unknown(loader_t *L, const tp_schema_t *sc, const node_t *key) {
    char text[SHOWN_MAX + 4], words[400];
    shown(key->text, key->len, text, sizeof(text));
    if (!sc->settings || sc->settings[0].type == TP_SETTING_T_END)
        return fail(L, key, "unknown key '%s' (this section takes no keys)", text);
    const char *near = suggest(key->text, key->len, &sc->settings[0].name, sizeof(tp_setting_t));
    if (near)
        return fail(L, key, "unknown key '%s' (did you mean '%s'?)", text, near);
    return fail(L, key, "unknown key '%s' (expected one of: %s)", text,
                word_list(&sc->settings[0].name, sizeof(tp_setting_t), words, sizeof(words)));
}

/* Fills `obj` from the mapping `map` (NULL: absent, all defaults): keys in document order, then
 * defaults and required keys, then the schema's check. `where` is what errors about the mapping as
 * a whole point at. */
static int fill_section(loader_t *L, const tp_schema_t *sc, void *obj, const node_t *map,
                        const node_t *where) {
    char buf[320];
    int rc;
    if (map && is_null(map))
        map = NULL;
    if (map && map->kind == N_SCALAR)
        return fail(L, map, "expected a mapping of keys, got '%s'",
                    shown(map->text, map->len, buf, sizeof(buf)));
    if (map && map->kind != N_MAP)
        return fail(L, map, "expected a mapping of keys, got %s", kind_name(map));
    for (size_t i = 0; map && i + 1 < map->n; i += 2) {
        const node_t *k = map->kids[i], *v = map->kids[i + 1];
        if (k->kind != N_SCALAR)
            return fail(L, k, "keys must be single words, not %s", kind_name(k));
        size_t saved = path_push_key(L, k->text, k->len);
        const tp_setting_t *s = find_setting(sc, k);
        if (!s)
            rc = fail_unknown(L, sc, k);
        else if (find_key(map, s->name) != k)
            rc = fail(L, k, "duplicate key '%s' (first at line %d)", s->name,
                      find_key(map, s->name)->line);
        else
            rc = apply(L, s, obj, v);
        path_pop(L, saved);
        if (rc)
            return rc;
    }
    for (const tp_setting_t *s = sc->settings; s && s->type != TP_SETTING_T_END; s++) {
        if (find_key(map, s->name))
            continue;
        size_t saved = path_push_key(L, s->name, strlen(s->name));
        if (s->flags & TP_SETTING_REQUIRED)
            rc = fail(L, map ? map : where, "missing required key '%s'", s->name);
        else
            rc = apply_default(L, s, obj, map ? map : where);
        path_pop(L, saved);
        if (rc)
            return rc;
    }
    if (sc->check) {
        char msg[sizeof(L->err->msg)] = "";
        const char *key = NULL;
        if (sc->check(obj, msg, sizeof(msg), &key) != 0) {
            const node_t *at = map ? map : where;
            size_t saved = L->path_len;
            if (key) {
                path_push_key(L, key, strlen(key));
                if (find_key(map, key))
                    at = find_key(map, key);
            }
            rc = fail(L, at, "%s", msg[0] ? msg : "invalid settings");
            path_pop(L, saved);
            return rc;
        }
    }
    return 0;
}

/* ---- Entry points -------------------------------------------------------------------------- */

static void free_section(const tp_schema_t *sc, void *obj) {
    for (const tp_setting_t *s = sc->settings; s && s->type != TP_SETTING_T_END; s++) {
        void *field = (char *)obj + s->offset;
        switch (s->type) {
        case TP_SETTING_T_STRING:
        case TP_SETTING_T_HOSTPORT: free(*(char **)field); break;
        case TP_SETTING_T_STRINGS: {
            tp_str_list_t *list = field;
            for (size_t i = 0; i < list->n; i++)
                free(list->items[i]);
            free(list->items);
            break;
        }
        case TP_SETTING_T_ADDRS: free(((tp_addr_list_t *)field)->items); break;
        case TP_SETTING_T_CIDRS: tp_cidr_set_del(*(tp_cidr_set_t **)field); break;
        case TP_SETTING_T_SECTION:
            if (s->flags & TP_SETTING_INDIRECT) {
                void *p = *(void **)field;
                if (p)
                    free_section(s->sub, p);
                free(p);
            } else {
                free_section(s->sub, field);
            }
            break;
        case TP_SETTING_T_LIST: {
            tp_list_t *list = field;
            size_t size = s->sub->size ? s->sub->size : 1;
            for (size_t i = 0; i < list->n; i++)
                free_section(s->sub, (char *)list->items + i * size);
            free(list->items);
            break;
        }
        default: break;
        }
    }
}

void tp__config_free(const tp_schema_t *root, void *obj) {
    if (!obj)
        return;
    free_section(root, obj);
    memset(obj, 0, root->size);
}

int tp__config_load(const tp_schema_t *root, void *out, const char *name, const char *text,
                    size_t len, tp_config_error_t *err) {
    tp_config_error_t scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof(*err));
    snprintf(err->file, sizeof(err->file), "%s", name ? name : "");
    memset(out, 0, root->size);
    loader_t L = {.err = err};
    int rc;
    node_t *doc = NULL;
    if (len > MAX_DOC_BYTES)
        rc = fail(&L, NULL, "the configuration is larger than 4 MiB (%zu bytes)", len);
    else
        rc = read_tree(&L, text ? text : "", text ? len : 0, &doc);
    if (rc == 0) {
        if (doc && doc->kind != N_MAP && !is_null(doc))
            rc = fail(&L, doc, "the configuration must be a mapping of keys, not %s",
                      kind_name(doc));
        else
            rc = fill_section(&L, root, out, doc, doc);
    }
    node_free(doc);
    if (rc)
        tp__config_free(root, out);
    return rc;
}

int tp__config_load_file(const tp_schema_t *root, void *out, const char *path,
                         tp_config_error_t *err) {
    tp_config_error_t scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof(*err));
    snprintf(err->file, sizeof(err->file), "%s", path);
    memset(out, 0, root->size);
    FILE *f = fopen(path, "rb");
    if (!f) {
        char ebuf[128];
        snprintf(err->msg, sizeof(err->msg), "cannot open the configuration: %s",
                 strerror_r(errno, ebuf, sizeof(ebuf)));
        return TP_ERR_CONFIG;
    }
    /* Read one byte past the limit so that an oversized file is told apart from a full one. */
    size_t cap = (size_t)64 * 1024, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        if (len == cap) {
            if (cap > MAX_DOC_BYTES)
                break;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (!buf) {
        snprintf(err->msg, sizeof(err->msg), "out of memory while reading the configuration");
        rc = TP_ERR_NOMEM;
    } else if (ferror(f)) {
        char ebuf[128];
        snprintf(err->msg, sizeof(err->msg), "cannot read the configuration: %s",
                 strerror_r(errno, ebuf, sizeof(ebuf)));
        rc = TP_ERR_CONFIG;
    } else {
        rc = tp__config_load(root, out, path, buf, len, err);
    }
    free(buf);
    fclose(f);
    return rc;
}

/* Appends to buf at *o, keeping it NUL-terminated and cutting what does not fit. */
static void appendf(char *buf, size_t len, size_t *o, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t len, size_t *o, const char *fmt, ...) {
    if (*o + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *o, len - *o, fmt, ap);
    va_end(ap);
    if (n > 0)
        *o = *o + (size_t)n < len ? *o + (size_t)n : len - 1;
}

void tp__config_error_format(const tp_config_error_t *err, char *buf, size_t len) {
    if (len == 0)
        return;
    size_t o = 0;
    buf[0] = '\0';
    if (err->file[0])
        appendf(buf, len, &o, "%s", err->file);
    if (err->line > 0) {
        appendf(buf, len, &o, "%s%d", o ? ":" : "line ", err->line);
        if (err->column > 0)
            appendf(buf, len, &o, ":%d", err->column);
    }
    if (o)
        appendf(buf, len, &o, ": ");
    if (err->key[0])
        appendf(buf, len, &o, "%s: ", err->key);
    appendf(buf, len, &o, "%s", err->msg);
}
