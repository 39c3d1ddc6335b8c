/* config.h: the YAML loader and default-config printer that turn schemas into settings structs. */
#ifndef TP_CONFIG_CONFIG_H
#define TP_CONFIG_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "turnpike/settings.h"

/* Internal flag: a SECTION stored as a pointer to a block of sub->size bytes that the loader
 * allocates (always, defaults filled, even when the key is absent). Used for the app's sections,
 * whose size is only known at run time. */
#define TP_SETTING_INDIRECT (1u << 8)

/* Internal flag, with TP_SETTING_INDIRECT: the section's pointer stays NULL while the key is
 * absent, so its presence switches a feature on (an upstream group's `tls`). The default config
 * shows it commented out. */
#define TP_SETTING_OPTIONAL (1u << 9)

/* Where and why a configuration was refused. */
typedef struct tp_config_error {
    char file[256]; /* the file name given to the loader */
    int line;       /* 1-based; 0 when unknown */
    int column;     /* 1-based; 0 when unknown */
    char
        key[256]; /* dotted path with list indexes: "endpoints[0].timeouts.idle" ("" at the root) */
    char msg[512]; /* what is wrong, e.g. "unknown key 'lisen' (did you mean 'listen'?)" */
} tp_config_error_t;

/*
 * Parses YAML `text` (named `name` in errors) against `root` into `out` (root->size bytes, zeroed
 * by the caller). Fills defaults for absent keys, checks types, bounds, enums and required keys,
 * refuses unknown keys, duplicate keys, anchors/aliases and multi-document streams, then runs each
 * schema's check(). An empty document means all defaults. Returns 0, or TP_ERR_CONFIG with `err`
 * filled; on error `out` is freed again (tp__config_free) and left zeroed.
 */
int tp__config_load(const tp_schema_t *root, void *out, const char *name, const char *text,
                    size_t len, tp_config_error_t *err);

/* Reads the file and calls tp__config_load(); a missing or unreadable file is TP_ERR_CONFIG too. */
int tp__config_load_file(const tp_schema_t *root, void *out, const char *path,
                         tp_config_error_t *err);

/* Frees everything the loader allocated inside `obj` (strings, lists, CIDR sets, indirect
 * sections), not `obj` itself, and zeroes it. Safe on a zeroed struct. */
void tp__config_free(const tp_schema_t *root, void *obj);

/*
 * Prints a complete, commented YAML document with every key of `root` at its default (LIST entries:
 * one example item made from the item schema's `example` text), each preceded by its doc as a
 * `# ...` comment with type, bounds and allowed words. `header` (may be NULL) is printed first as
 * comment lines. The output loads back with tp__config_load() to the same values. Returns 0 or
 * TP_ERR_IO.
 */
int tp__config_print_default(FILE *out, const tp_schema_t *root, const char *header);

/* "file:line:column: key: msg" (parts omitted when unknown) into buf. */
void tp__config_error_format(const tp_config_error_t *err, char *buf, size_t len);

/* "250ms", "5s", "2m", "1h", "1d" or a bare number of seconds ("0" = off) to milliseconds. */
int tp__parse_duration(const char *text, uint64_t *ms);

/* "512", "64KiB"/"64K"/"64KB", "16MiB", "1GiB" (binary units) to bytes. */
int tp__parse_size(const char *text, uint64_t *bytes);

#endif
