/* print.c: the complete, commented default configuration (--print-default-config), from schemas. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config.h"
#include "units.h"

typedef struct printer {
    FILE *out;
    yaml_document_t *doc; /* the example being printed, or NULL */
    int rc;               /* TP_ERR_INVAL once an example does not fit its schema */
} printer_t;

static bool is_null_word(const char *t) {
    return !t[0] || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
           !strcmp(t, "NULL");
}

/* Whether `t` reads back as the same string when printed without quotes. Deliberately narrow:
 * anything unusual is quoted, which the loader reads the same way. */
static bool plain_safe(const char *t, bool flow) {
    if (is_null_word(t))
        return false;
    char c0 = t[0];
    if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || (c0 >= '0' && c0 <= '9') ||
          c0 == '.' || c0 == '/' || c0 == '_' || (c0 == '-' && t[1] >= '0' && t[1] <= '9')))
        return false;
    size_t len = strlen(t);
    if (t[len - 1] == ':' || t[len - 1] == ' ')
        return false;
    for (const char *p = t; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("._/+-:@=%", c) || (!flow && (c == ' ' || c == ','));
        if (!ok || (c == ':' && p[1] == ' '))
            return false;
    }
    return true;
}

static void emit_scalar(FILE *out, const char *t, bool flow) {
    if (plain_safe(t, flow)) {
        fputs(t, out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static bool has_settings(const tp_schema_t *sc) {
    return sc && sc->settings && sc->settings[0].type != TP_SETTING_T_END;
}

static bool is_list_type(tp_setting_type_t t) {
    return t == TP_SETTING_T_CIDRS || t == TP_SETTING_T_ADDRS || t == TP_SETTING_T_STRINGS;
}

static bool zero_allowed(const tp_setting_t *s) {
    return (s->min == 0 && s->max == 0) || (s->min <= 0 && s->max >= 0);
}

/* What stands for a setting's value: the example's scalar, else the default text. */
typedef struct value {
    const char *text;
    bool null; /* no value: NULL, "", "~" or "null" written plain */
} value_t;

static value_t value_of(const tp_setting_t *s, yaml_node_t *ex) {
    if (ex && ex->type == YAML_SCALAR_NODE) {
        const char *t = (const char *)ex->data.scalar.value;
        return (value_t){t, ex->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && is_null_word(t)};
    }
    return (value_t){s->def, !s->def || is_null_word(s->def)};
}

/* True when the setting has no value to show and is printed as a commented-out key. */
static bool commented(const tp_setting_t *s, yaml_node_t *ex) {
    if (ex && ex->type != YAML_SCALAR_NODE)
        return false;
    if (!value_of(s, ex).null)
        return false;
    switch (s->type) {
    case TP_SETTING_T_STRING:
    case TP_SETTING_T_HOSTPORT: return true;
    case TP_SETTING_T_INT:
    case TP_SETTING_T_DURATION:
    case TP_SETTING_T_SIZE: return !zero_allowed(s) || (s->flags & TP_SETTING_REQUIRED);
    case TP_SETTING_T_BOOL:
    case TP_SETTING_T_ENUM: return (s->flags & TP_SETTING_REQUIRED) != 0;
    default: return false;
    }
}

/* "# doc (type, bounds, default)" */
static void print_doc(FILE *out, const tp_setting_t *s, int indent) {
    char lo[32], hi[32];
    fprintf(out, "%*s# %s", indent, "", s->doc ? s->doc : s->name);
    const char *type = NULL;
    switch (s->type) {
    case TP_SETTING_T_BOOL: type = "true or false"; break;
    case TP_SETTING_T_INT: type = s->flags & TP_SETTING_AUTO ? "integer or auto" : "integer"; break;
    case TP_SETTING_T_DURATION: type = "duration"; break;
    case TP_SETTING_T_SIZE: type = "size"; break;
    case TP_SETTING_T_STRING: type = "string"; break;
    case TP_SETTING_T_CIDRS: type = "list of IP prefixes"; break;
    case TP_SETTING_T_ADDRS: type = "list of ip:port"; break;
    case TP_SETTING_T_HOSTPORT: type = "host:port"; break;
    case TP_SETTING_T_STRINGS: type = "list of strings"; break;
    case TP_SETTING_T_LIST: fputs(" (list)\n", out); return;
    case TP_SETTING_T_ENUM: break;
    default: fputc('\n', out); return;
    }
    fputs(" (", out);
    if (type) {
        fputs(type, out);
    } else {
        for (size_t i = 0; s->names && s->names[i]; i++)
            fprintf(out, "%s%s", i ? " | " : "", s->names[i]);
    }
    if ((s->type == TP_SETTING_T_INT || s->type == TP_SETTING_T_DURATION ||
         s->type == TP_SETTING_T_SIZE) &&
        (s->min || s->max))
        fprintf(out, ", %s..%s", tp__format_bound(s, s->min, lo, sizeof(lo)),
                tp__format_bound(s, s->max, hi, sizeof(hi)));
    if (s->flags & TP_SETTING_REQUIRED)
        fputs(", required", out);
    else if (s->def && !is_null_word(s->def))
        fprintf(out, ", default %s", s->def);
    else if (is_list_type(s->type))
        fputs(", default empty", out);
    else if (s->type == TP_SETTING_T_STRING || s->type == TP_SETTING_T_HOSTPORT)
        fputs(", default none", out);
    else if (s->type == TP_SETTING_T_BOOL)
        fputs(", default false", out);
    else if (s->type == TP_SETTING_T_ENUM && s->names && s->names[0])
        fprintf(out, ", default %s", s->names[0]);
    else
        fputs(", default 0", out);
    fputs(")\n", out);
}

/* The value node of `name` in the example mapping `map`, or NULL. */
static yaml_node_t *ex_lookup(printer_t *P, yaml_node_t *map, const char *name) {
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(P->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, name))
            return yaml_document_get_node(P->doc, p->value);
    }
    return NULL;
}

/* Every key of an example mapping must be a setting of its schema. */
static void ex_check(printer_t *P, const tp_schema_t *sc, yaml_node_t *map) {
    if (!map)
        return;
    if (map->type == YAML_SCALAR_NODE && is_null_word((const char *)map->data.scalar.value))
        return;
    if (map->type != YAML_MAPPING_NODE) {
        P->rc = TP_ERR_INVAL;
        return;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(P->doc, p->key);
        bool known = false;
        for (const tp_setting_t *s = sc->settings; k && s && s->type != TP_SETTING_T_END; s++)
            known = known || (k->type == YAML_SCALAR_NODE &&
                              !strcmp((const char *)k->data.scalar.value, s->name));
        if (!known)
            P->rc = TP_ERR_INVAL;
    }
}

static void print_body(printer_t *P, const tp_schema_t *sc, yaml_node_t *map, int indent,
                       bool item);

/* One list item with its keys at `indent` ("- " two columns to the left). */
static void print_item(printer_t *P, const tp_schema_t *sc, yaml_node_t *map, int indent) {
    if (!has_settings(sc))
        fprintf(P->out, "%*s- {}\n", indent - 2, "");
    else
        print_body(P, sc, map, indent, true);
}

static void print_list(printer_t *P, const tp_setting_t *s, yaml_node_t *ex, int indent) {
    if (ex) {
        if (ex->type != YAML_SEQUENCE_NODE) {
            P->rc = TP_ERR_INVAL;
            return;
        }
        for (yaml_node_item_t *i = ex->data.sequence.items.start; i < ex->data.sequence.items.top;
             i++)
            print_item(P, s->sub, yaml_document_get_node(P->doc, *i), indent + 4);
        return;
    }
    /* No example from an enclosing one: the item schema's own, over its defaults. */
    yaml_document_t doc;
    yaml_document_t *saved = P->doc;
    yaml_node_t *root = NULL;
    bool loaded = false;
    if (s->sub->example) {
        yaml_parser_t parser;
        if (!yaml_parser_initialize(&parser)) {
            P->rc = TP_ERR_INVAL;
            return;
        }
        yaml_parser_set_input_string(&parser, (const unsigned char *)s->sub->example,
                                     strlen(s->sub->example));
        loaded = yaml_parser_load(&parser, &doc) != 0;
        yaml_parser_delete(&parser);
        if (!loaded) {
            P->rc = TP_ERR_INVAL;
            return;
        }
        P->doc = &doc;
        root = yaml_document_get_root_node(&doc);
    }
    print_item(P, s->sub, root, indent + 4);
    P->doc = saved;
    if (loaded)
        yaml_document_delete(&doc);
}

/* Prints one item of the list `s` with its defaults, every line commented out, so that the
 * printed configuration documents the item's keys and still loads as an empty list. */
/* An example of a list item or of an optional section, as comment lines. */
static void print_commented_item(printer_t *P, const tp_setting_t *s, int indent) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        P->rc = TP_ERR_NOMEM;
        return;
    }
    FILE *saved = P->out;
    P->out = mem;
    fprintf(mem, "%*s%s:\n", indent, "", s->name);
    if (s->type == TP_SETTING_T_SECTION)
        print_body(P, s->sub, NULL, indent + 2, false);
    else
        print_list(P, s, NULL, indent);
    P->out = saved;
    fclose(mem);
    fprintf(saved, "%*s# for example:\n", indent, "");
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        size_t sp = strspn(line, " ");
        if (sp > n)
            sp = n;
        if (line[sp] == '#') /* already a comment: as it is */
            fprintf(saved, "%.*s\n", (int)n, line);
        else
            fprintf(saved, "%.*s# %.*s\n", (int)sp, line, (int)(n - sp), line + sp);
        line = nl ? nl + 1 : line + n;
    }
    free(text);
}

static void print_value(printer_t *P, const tp_setting_t *s, yaml_node_t *ex) {
    FILE *out = P->out;
    if (ex && ex->type == YAML_SEQUENCE_NODE && is_list_type(s->type)) {
        fputc('[', out);
        for (yaml_node_item_t *i = ex->data.sequence.items.start; i < ex->data.sequence.items.top;
             i++) {
            yaml_node_t *item = yaml_document_get_node(P->doc, *i);
            if (!item || item->type != YAML_SCALAR_NODE) {
                P->rc = TP_ERR_INVAL;
                continue;
            }
            if (i > ex->data.sequence.items.start)
                fputs(", ", out);
            emit_scalar(out, (const char *)item->data.scalar.value, true);
        }
        fputc(']', out);
        return;
    }
    if (ex && ex->type != YAML_SCALAR_NODE) {
        P->rc = TP_ERR_INVAL;
        return;
    }
    value_t v = value_of(s, ex);
    if (!v.null) {
        emit_scalar(out, v.text, false);
    } else if (is_list_type(s->type)) {
        fputs("[]", out);
    } else if (s->type == TP_SETTING_T_BOOL) {
        fputs("false", out);
    } else if (s->type == TP_SETTING_T_ENUM) {
        fputs(s->names && s->names[0] ? s->names[0] : "\"\"", out);
    } else {
        fputc('0', out);
    }
}

/* A setting at `indent`; with `first`, it opens a list item ("- key: ..."). */
static void print_setting(printer_t *P, const tp_setting_t *s, yaml_node_t *ex, int indent,
                          bool first) {
    FILE *out = P->out;
    int at = first ? indent - 2 : indent;
    const char *lead = first ? "- " : "";
    print_doc(out, s, at);
    switch (s->type) {
    case TP_SETTING_T_SECTION:
        if ((s->flags & TP_SETTING_OPTIONAL) && !ex) { /* absent means off: shown, commented */
            print_commented_item(P, s, at);
            return;
        }
        if (!has_settings(s->sub)) {
            fprintf(out, "%*s%s%s: {}\n", at, "", lead, s->name);
        } else {
            fprintf(out, "%*s%s%s:\n", at, "", lead, s->name);
            print_body(P, s->sub, ex, indent + 2, false);
        }
        return;
    case TP_SETTING_T_LIST:
        if (ex && ex->type == YAML_SEQUENCE_NODE &&
            ex->data.sequence.items.start == ex->data.sequence.items.top) {
            fprintf(out, "%*s%s%s: []\n", at, "", lead, s->name);
            return;
        }
        if (!ex && !s->sub->example) {
            /* An optional list with no example: empty, and one item documented in comments. */
            fprintf(out, "%*s%s%s: []\n", at, "", lead, s->name);
            print_commented_item(P, s, indent);
            return;
        }
        fprintf(out, "%*s%s%s:\n", at, "", lead, s->name);
        print_list(P, s, ex, indent);
        return;
    default: break;
    }
    if (commented(s, ex)) {
        fprintf(out, "%*s# %s:%s\n", at, "", s->name,
                s->flags & TP_SETTING_REQUIRED ? "  # required" : "");
        return;
    }
    fprintf(out, "%*s%s%s: ", at, "", lead, s->name);
    print_value(P, s, ex);
    fputc('\n', out);
}

static void print_body(printer_t *P, const tp_schema_t *sc, yaml_node_t *map, int indent,
                       bool item) {
    ex_check(P, sc, map);
    if (map && map->type != YAML_MAPPING_NODE)
        map = NULL;
    bool first = item;
    const tp_setting_t *s0 = &sc->settings[0];
    if (item && s0->type != TP_SETTING_T_SECTION && s0->type != TP_SETTING_T_LIST &&
        commented(s0, ex_lookup(P, map, s0->name))) {
        /* A commented-out first key cannot carry the "- ": put it on a line of its own. */
        fprintf(P->out, "%*s-\n", indent - 2, "");
        first = false;
    }
    for (const tp_setting_t *s = sc->settings; s->type != TP_SETTING_T_END; s++) {
        if (indent == 0 && s != sc->settings)
            fputc('\n', P->out);
        print_setting(P, s, ex_lookup(P, map, s->name), indent, first);
        first = false;
    }
}

int tp__config_print_default(FILE *out, const tp_schema_t *root, const char *header) {
    printer_t P = {.out = out};
    if (header) {
        for (const char *line = header; *line;) {
            size_t n = strcspn(line, "\n");
            fprintf(out, n ? "# %.*s\n" : "#%.*s\n", (int)n, line);
            line += n;
            if (*line == '\n')
                line++;
        }
        fputc('\n', out);
    }
    if (has_settings(root))
        print_body(&P, root, NULL, 0, false);
    else
        fputs("{}\n", out);
    if (fflush(out) != 0 || ferror(out))
        return TP_ERR_IO;
    return P.rc;
}
