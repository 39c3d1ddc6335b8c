/* scan.h: a strict HTTP/1.1 request framing scanner (RFC 9112) that vets every byte llhttp parses.
 */
#ifndef TP_H1_SCAN_H
#define TP_H1_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * llhttp (Debian's 8.1) is lenient where a proxy must not be: bare LF line ends, obs-fold, several
 * spaces in the request line, NUL in values, no CRLF check after chunk data. This scanner reads the
 * same bytes by the RFC 9112 grammar, ahead of llhttp, and llhttp only ever sees bytes the scanner
 * passed. It stops where the message head ends (until the caller says how the body is framed,
 * tp__h1_scan_body) and where the message ends (until tp__h1_scan_reset), so both parsers must
 * agree on every boundary. Sans-IO: no allocation, bytes in, a count out.
 */

/* How a message body is delimited, as the head's fields decided. */
typedef enum tp_h1_framing {
    TP_H1_FRAMING_NONE = 0, /* no body: the message ends with its head */
    TP_H1_FRAMING_LENGTH,   /* Content-Length bytes */
    TP_H1_FRAMING_CHUNKED,  /* the chunked coding, then a trailer section */
    TP_H1_FRAMING_TUNNEL,   /* CONNECT: what follows the head is not HTTP */
    TP_H1_FRAMING_CLOSE,    /* a response body that ends when the connection does */
} tp_h1_framing_t;

typedef struct tp_h1_scan {
    uint8_t state;
    bool response;       /* reading responses: a status line instead of a request line */
    uint8_t sub;         /* position inside a literal ("HTTP/1.1") */
    bool trailers;       /* the field lines being read are the trailer section */
    bool chunk_digits;   /* a significant (non-zero) hex digit was seen in this chunk size */
    uint16_t status;     /* after an error: the status it deserves (400, 505) */
    uint32_t line_len;   /* bytes of the current chunk-size line, bounded */
    uint64_t remaining;  /* body bytes left of a Content-Length body or of a chunk */
    uint64_t body_bytes; /* body (chunk data) bytes of this message, to compare with llhttp's */
    const char *err;     /* after an error: a static reason */
} tp_h1_scan_t;

/* The longest chunk-size line (size and extensions) accepted; longer ones are refused (400). */
#define TP_H1_MAX_CHUNK_LINE 4096

/* Prepares for a new message (a request line, after optional empty lines). */
void tp__h1_scan_reset(tp_h1_scan_t *s);
/*
 * Prepares for a new response: "HTTP/1.x" SP 3DIGIT [SP reason-phrase] CRLF, then fields as in a
 * request. The caller decides the body's framing from the request and the status (RFC 9112 6.3:
 * none for HEAD, 1xx, 204, 304; TP_H1_FRAMING_CLOSE without a length) and answers errors with 502.
 */
void tp__h1_scan_reset_response(tp_h1_scan_t *s);

/*
 * Scans up to len bytes and returns how many are valid. Fewer than len means the scanner stopped:
 * at an error (tp__h1_scan_failed), after the head (tp__h1_scan_head_done: call tp__h1_scan_body),
 * or after the message (tp__h1_scan_message_done: call tp__h1_scan_reset for the next one).
 */
size_t tp__h1_scan_run(tp_h1_scan_t *s, const char *data, size_t len);

/* After the head: how the body is framed (length: its Content-Length). */
void tp__h1_scan_body(tp_h1_scan_t *s, tp_h1_framing_t framing, uint64_t length);

bool tp__h1_scan_failed(const tp_h1_scan_t *s);
bool tp__h1_scan_head_done(const tp_h1_scan_t *s);
bool tp__h1_scan_message_done(const tp_h1_scan_t *s);

#endif
