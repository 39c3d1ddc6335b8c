/* write.h: HTTP/1.1 heads written from messages: a growable output and the field writers. */
#ifndef TP_H1_WRITE_H
#define TP_H1_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/edits.h"
#include "http/head.h"
#include "turnpike/common.h"

/* Bytes being written; `p` turns NULL when memory ran out (every later append is then a no-op,
 * and the writer checks once at the end). */
typedef struct tp_h1_out {
    char *p;
    size_t len, cap;
} tp_h1_out_t;

/* Starts an output with room for `cap` bytes. */
void tp__h1_out_init(tp_h1_out_t *o, size_t cap);
void tp__h1_out_add(tp_h1_out_t *o, const char *s, size_t n);
void tp__h1_out_str(tp_h1_out_t *o, tp_str_t s);
void tp__h1_out_u64(tp_h1_out_t *o, uint64_t v);
#define TP_H1_OUT_LIT(o, s) tp__h1_out_add(o, s, sizeof(s) - 1)
/* Adds "name: value\r\n". */
void tp__h1_out_field(tp_h1_out_t *o, tp_str_t name, tp_str_t value);

/* True when `name` equals the lower-case literal, case-insensitively. */
bool tp__h1_name_is(tp_str_t name, const char *lit);

/* The end-to-end fields of a head, minus those the edits removed (ed may be NULL) and those named
 * in `skip` (a NULL-terminated list of names Turnpike writes itself, may be NULL), in order. */
void tp__h1_out_fields(tp_h1_out_t *o, const tp_http_head_t *hd, size_t nfields,
                       const tp_hdr_edits_t *ed, const char *const *skip);
/* The lines hooks added, minus framing and hop-by-hop names, which are Turnpike's. */
void tp__h1_out_added(tp_h1_out_t *o, const tp_hdr_edits_t *ed);
/* The last chunk of a chunked body with the trailer fields of `hd` from index `from` (RFC 9112
 * 7.1.2): hop-by-hop and framing fields are not passed on. hd may be NULL. */
void tp__h1_out_last_chunk(tp_h1_out_t *o, const tp_http_head_t *hd, size_t from);

#endif
