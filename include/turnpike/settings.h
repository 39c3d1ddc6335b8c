/* turnpike/settings.h: typed configuration schemas, shared by the framework's sections and apps'.
 */
#ifndef TURNPIKE_SETTINGS_H
#define TURNPIKE_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A schema describes one YAML mapping and the C struct it fills. Each entry names a key, its type,
 * where it lives in the struct, its default (as YAML scalar text, parsed like user input), its
 * bounds and a one-line doc. The same schema validates a config file, fills the defaults and prints
 * the documented default config (`turnpike --print-default-config`).
 *
 * C types of the fields, by setting type:
 *   BOOL      bool                DURATION  uint64_t milliseconds ("250ms", "5s", "2m", "1h"; "0" =
 * off) INT       int64_t             SIZE      uint64_t bytes ("512", "64KiB", "16MiB", "1GiB")
 *   STRING    char * (NULL = unset; owned by the config)
 *   ENUM      int (index into the NULL-terminated `names`)
 *   CIDRS     tp_cidr_set_t * (never NULL once loaded; may be empty)
 *   ADDRS     tp_addr_list_t (numeric "ip:port" entries, e.g. listen addresses)
 *   HOSTPORT  char * ("host:port" with a DNS name or an IP; the port is required)
 *   STRINGS   tp_str_list_t
 *   SECTION   the sub-schema's struct, embedded in place
 *   LIST      tp_list_t of the sub-schema's structs
 * A YAML scalar or a flow/block sequence is accepted for CIDRS, ADDRS and STRINGS.
 */
typedef enum tp_setting_type {
    TP_SETTING_T_END = 0,
    TP_SETTING_T_BOOL,
    TP_SETTING_T_INT,
    TP_SETTING_T_DURATION,
    TP_SETTING_T_SIZE,
    TP_SETTING_T_STRING,
    TP_SETTING_T_ENUM,
    TP_SETTING_T_CIDRS,
    TP_SETTING_T_ADDRS,
    TP_SETTING_T_HOSTPORT,
    TP_SETTING_T_STRINGS,
    TP_SETTING_T_SECTION,
    TP_SETTING_T_LIST,
} tp_setting_type_t;

/* Flags of a setting. */
enum {
    TP_SETTING_REQUIRED = 1u << 0, /* must be present (no default) */
    TP_SETTING_AUTO = 1u << 1,     /* INT: the word "auto" is accepted and stored as 0 */
    TP_SETTING_SECRET = 1u << 2,   /* never printed in logs */
};

typedef struct tp_schema tp_schema_t;

typedef struct tp_setting {
    const char *name;         /* the YAML key */
    tp_setting_type_t type;   /* TP_SETTING_T_END closes a table */
    size_t offset;            /* offsetof() the field in the section's struct */
    const char *def;          /* default as YAML text; NULL: none (0 / NULL / empty) */
    int64_t min, max;         /* INT, DURATION (ms) and SIZE (bytes) bounds, inclusive; 0,0 = any */
    const char *const *names; /* ENUM: the allowed words, NULL-terminated */
    const tp_schema_t *sub;   /* SECTION and LIST: the schema of the mapping */
    const char *doc;          /* one line, printed as a comment */
    unsigned flags;           /* TP_SETTING_* */
} tp_setting_t;

/*
 * A schema: the struct size (allocated zeroed and filled by the loader), its settings, and an
 * optional check run after the section is filled, for rules across keys. `check` returns 0, or
 * writes a message into `err` (size `errlen`) and returns TP_ERR_CONFIG; `key` may name the
 * offending key so that the error points at its line.
 */
struct tp_schema {
    const char *name;
    size_t size;
    const tp_setting_t *settings;
    int (*check)(void *section, char *err, size_t errlen, const char **key);
    /* For LIST items: when printing the default config, the fields to show for the one example
     * item, as YAML text that the loader accepts (NULL: all defaults). */
    const char *example;
};

/* A list of strings. */
typedef struct tp_str_list {
    char **items;
    size_t n;
} tp_str_list_t;

/* A list of addresses. */
typedef struct tp_addr_list {
    tp_addr_t *items;
    size_t n;
} tp_addr_list_t;

/* A list of sections; items points at n structs of the item schema's size. */
typedef struct tp_list {
    void *items;
    size_t n;
} tp_list_t;

/* Item i of a tp_list_t whose items are of type T. */
#define TP_LIST_AT(T, list, i) (&((T *)(list).items)[(i)])

#define TP__SETTING(T, field, ty, d, lo, hi, nm, sb, dc, fl)                                       \
    {                                                                                              \
        .name = #field, .type = (ty), .offset = offsetof(T, field), .def = (d), .min = (lo),       \
        .max = (hi), .names = (nm), .sub = (sb), .doc = (dc), .flags = (fl)                        \
    }

/* Table entries; T is the section's struct type and `field` both the member and the YAML key. */
#define TP_SETTING_BOOL(T, field, def, doc)                                                        \
    TP__SETTING(T, field, TP_SETTING_T_BOOL, def, 0, 0, NULL, NULL, doc, 0)
#define TP_SETTING_INT(T, field, def, lo, hi, doc)                                                 \
    TP__SETTING(T, field, TP_SETTING_T_INT, def, lo, hi, NULL, NULL, doc, 0)
#define TP_SETTING_INT_AUTO(T, field, def, lo, hi, doc)                                            \
    TP__SETTING(T, field, TP_SETTING_T_INT, def, lo, hi, NULL, NULL, doc, TP_SETTING_AUTO)
#define TP_SETTING_DURATION(T, field, def, lo, hi, doc)                                            \
    TP__SETTING(T, field, TP_SETTING_T_DURATION, def, lo, hi, NULL, NULL, doc, 0)
#define TP_SETTING_SIZE(T, field, def, lo, hi, doc)                                                \
    TP__SETTING(T, field, TP_SETTING_T_SIZE, def, lo, hi, NULL, NULL, doc, 0)
#define TP_SETTING_STRING(T, field, def, doc)                                                      \
    TP__SETTING(T, field, TP_SETTING_T_STRING, def, 0, 0, NULL, NULL, doc, 0)
#define TP_SETTING_SECRET_STRING(T, field, def, doc)                                               \
    TP__SETTING(T, field, TP_SETTING_T_STRING, def, 0, 0, NULL, NULL, doc, TP_SETTING_SECRET)
#define TP_SETTING_ENUM(T, field, def, names, doc)                                                 \
    TP__SETTING(T, field, TP_SETTING_T_ENUM, def, 0, 0, names, NULL, doc, 0)
#define TP_SETTING_CIDRS(T, field, def, doc)                                                       \
    TP__SETTING(T, field, TP_SETTING_T_CIDRS, def, 0, 0, NULL, NULL, doc, 0)
#define TP_SETTING_ADDRS(T, field, def, doc)                                                       \
    TP__SETTING(T, field, TP_SETTING_T_ADDRS, def, 0, 0, NULL, NULL, doc, 0)
#define TP_SETTING_HOSTPORT(T, field, def, doc)                                                    \
    TP__SETTING(T, field, TP_SETTING_T_HOSTPORT, def, 0, 0, NULL, NULL, doc, 0)
#define TP_SETTING_STRINGS(T, field, def, doc)                                                     \
    TP__SETTING(T, field, TP_SETTING_T_STRINGS, def, 0, 0, NULL, NULL, doc, 0)
#define TP_SETTING_SECTION(T, field, schema, doc)                                                  \
    TP__SETTING(T, field, TP_SETTING_T_SECTION, NULL, 0, 0, NULL, schema, doc, 0)
#define TP_SETTING_LIST(T, field, schema, doc)                                                     \
    TP__SETTING(T, field, TP_SETTING_T_LIST, NULL, 0, 0, NULL, schema, doc, 0)
#define TP_SETTING_END                                                                             \
    { .name = NULL, .type = TP_SETTING_T_END }

/* Durations and sizes for bounds, in the units the fields store. */
#define TP_MS(x)      ((int64_t)(x))
#define TP_SECONDS(x) ((int64_t)(x)*1000)
#define TP_KIB(x)     ((int64_t)(x)*1024)
#define TP_MIB(x)     ((int64_t)(x)*1024 * 1024)
#define TP_GIB(x)     ((int64_t)(x)*1024 * 1024 * 1024)

#ifdef __cplusplus
}
#endif
#endif
