/* edits.h: header changes hooks make to a message, kept apart and applied when its head is sent. */
#ifndef TP_HTTP_EDITS_H
#define TP_HTTP_EDITS_H

#include <stdbool.h>
#include <stddef.h>

#include "turnpike/common.h"

/*
 * The original head stays as it came (its bytes are shared with the parser); what hooks do is
 * recorded here: names removed from the original, and lines added. Writing the head skips the
 * removed names and appends the added lines. Both are bounded (TP_HDR_EDITS_MAX_BYTES).
 */
typedef struct tp_hdr_edits {
    char *added; /* "Name: value\r\n" lines */
    size_t added_len;
    unsigned nadded;
    char *removed; /* lower-case names, each NUL-terminated */
    size_t removed_len;
} tp_hdr_edits_t;

#define TP_HDR_EDITS_MAX_BYTES 8192
#define TP_HDR_EDITS_MAX_LINES 64

/* Adds a line. 0, TP_ERR_INVAL (a name that is not a token, a value with CR, LF, NUL or other
 * control characters), TP_ERR_TOO_LARGE (past 64 lines or 8 KiB), TP_ERR_NOMEM. */
int tp__edits_add(tp_hdr_edits_t *e, const char *name, const char *value);
/* Appends the lines `from` added (already checked), after e's. 0, TP_ERR_TOO_LARGE, TP_ERR_NOMEM.
 */
int tp__edits_append_lines(tp_hdr_edits_t *e, const tp_hdr_edits_t *from);
/* Removes every field called `name` from the original and from the added lines. 0 or an error
 * as above. */
int tp__edits_remove(tp_hdr_edits_t *e, const char *name);
/* Removes, then adds: the field has this one value from now on. */
int tp__edits_set(tp_hdr_edits_t *e, const char *name, const char *value);
/* True when the original's fields called `name` are removed. */
bool tp__edits_removed(const tp_hdr_edits_t *e, tp_str_t name);
/* The value of the first added line called `name`, or {NULL, 0}. */
tp_str_t tp__edits_get(const tp_hdr_edits_t *e, const char *name);
void tp__edits_free(tp_hdr_edits_t *e); /* and makes it empty again */

/* True for a valid field name (a token) and a valid field value (no CTLs but HTAB). */
bool tp__edits_valid_name(const char *name);
bool tp__edits_valid_value(const char *value);

#endif
