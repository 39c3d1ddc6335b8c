/* request.h: HTTP/1.x request framing on llhttp: bounded heads, strict names, pause points. */
#ifndef TP_H1_REQUEST_H
#define TP_H1_REQUEST_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/head.h"
#include "h1/scan.h"

/* What one run of the parser stopped at. */
typedef enum tp_h1_req_event {
    TP_H1_REQ_MORE = 0, /* all bytes used; more are needed */
    TP_H1_REQ_HEAD,     /* a request head is complete (the body, if any, is not parsed yet) */
    TP_H1_REQ_MESSAGE,  /* the request (head and body) is complete */
    TP_H1_REQ_ERROR,    /* malformed or over a limit: see status and detail */
    TP_H1_REQ_PAUSE,    /* on_body asked to stop after its chunk; call again to go on */
} tp_h1_req_event_t;

typedef struct tp_h1_req {
    llhttp_t p;
    tp_http_head_t head;
    int event;
    int err_status;         /* 400, 414, 431, 501 or 505 after TP_H1_REQ_ERROR */
    const char *err_detail; /* a static reason after TP_H1_REQ_ERROR */
    bool kick;              /* after a head, run once more even with no bytes */
    tp_h1_scan_t scan;      /* the strict scanner llhttp runs behind (see scan.h) */
    size_t scan_ahead;      /* bytes at the start of the next call the scanner already passed */
    uint64_t body_seen;     /* body bytes llhttp gave for this message, to compare */
    tp_h1_framing_t framing;
    void *ctx;
    void (*on_begin)(void *ctx);
    /* Body bytes as they are parsed (de-chunked); negative stops the parser with an error,
     * positive pauses it after this chunk (TP_H1_REQ_PAUSE). */
    int (*on_body)(void *ctx, const char *at, size_t len);
} tp_h1_req_t;

/* Prepares a parser with the limits; returns 0 or TP_ERR_NOMEM. */
int tp__h1_req_init(tp_h1_req_t *r, size_t max_header_bytes, size_t max_headers, void *ctx);
void tp__h1_req_free(tp_h1_req_t *r);
/* Forgets the last head (the parser itself moves on to the next message by itself). */
void tp__h1_req_next(tp_h1_req_t *r);

/*
 * Parses up to len bytes; *used says how many were consumed. Call again with the rest after
 * HEAD or MESSAGE (with len 0 if nothing is left but kick is set): the unconsumed bytes must come
 * first, as the scanner may have vetted them already. After ERROR the parser is dead.
 *
 * Strict RFC 9112 framing (see docs/http1-strictness.md): anything ambiguous is an ERROR (400, or
 * 501 for transfer codings other than chunked, 505 for versions other than 1.0 and 1.1). A body
 * error found in bytes that came with the head is reported instead of the HEAD, so such a
 * request never reaches an origin.
 */
tp_h1_req_event_t tp__h1_req_execute(tp_h1_req_t *r, const char *data, size_t len, size_t *used);

/* True for the characters of an HTTP token (RFC 9110 5.6.2). */
bool tp__h1_is_tchar(unsigned char c);

/* Splits an authority ("host:port", "[v6]:port", "host" when default_port is non-zero). */
bool tp__h1_parse_authority(tp_str_t a, uint16_t default_port, tp_str_t *host, uint16_t *port);

/* Parses a CONNECT target (authority-form) or an absolute-form http:// target. Returns 0, or the
 * status to answer (400, 501) with *detail set. */
int tp__h1_parse_target(const tp_h1_req_t *r, tp_http_target_t *t, const char **detail);

#endif
