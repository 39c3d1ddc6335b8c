/* h3_int.h: private types and cross-file functions of the HTTP/3 driver (src/h3/). */
#ifndef TP_H3_INT_H
#define TP_H3_INT_H

#include <nghttp3/nghttp3.h>

#include "quic/blocks.h"
#include "turnpike/h3.h"

/* ---- fields.c: pure checks and codecs (unit-tested in tests/unit/h3/) ---- */

/* What a field section is for: the rules differ (RFC 9114 4.3). */
typedef enum tp_h3_section {
    TP_H3_SECTION_REQUEST = 0,
    TP_H3_SECTION_RESPONSE = 1, /* final (2xx..5xx) */
    TP_H3_SECTION_INFO = 2,     /* interim (1xx other than 101) */
    TP_H3_SECTION_TRAILERS = 3,
} tp_h3_section_t;

/* Checks a field section the application wants to send: names lowercase and valid tokens,
 * values without NUL/CR/LF or edge whitespace, pseudo-headers first, known, once each and
 * allowed in this section, the mandatory ones present, no connection-specific fields
 * (connection, keep-alive, proxy-connection, transfer-encoding, upgrade; te other than
 * "trailers"). Returns 0 or TP_ERR_INVAL; *why (may be NULL) names the problem. */
int tp__h3_fields_check(const tp_h3_field_t *f, size_t n, tp_h3_section_t kind, const char **why);

/* The size RFC 9114 4.2.2 charges for a field: name + value + 32. */
uint64_t tp__h3_field_cost(size_t name_len, size_t value_len);

/* QUIC variable-length integers (RFC 9000 16), for the Quarter Stream ID of HTTP datagrams.
 * encode returns the bytes written (1, 2, 4 or 8; 0 when v >= 2^62 or `cap` is too small);
 * decode returns the bytes read, or 0 when `len` is too short. */
size_t tp__h3_varint_encode(uint8_t *out, size_t cap, uint64_t v);
size_t tp__h3_varint_decode(const uint8_t *in, size_t len, uint64_t *v);

/* :status of a response section as a number (100..999), or -1. */
int tp__h3_parse_status(const char *v, size_t len);

/* ---- bodyq.c: a bounded byte queue whose bytes are lent to nghttp3 ---- */

typedef struct tp_h3_bchunk {
    struct tp_h3_bchunk *next;
    size_t len; /* bytes used */
    size_t cap; /* bytes data[] can hold */
    uint8_t data[];
} tp_h3_bchunk_t;

/* Bytes [0, held) are in the chunks, starting at head_skip in the head chunk; the first `lent`
 * of them were handed to nghttp3 (it reads them until it releases them). */
typedef struct tp_h3_bodyq {
    tp_h3_bchunk_t *head, *tail;
    size_t head_skip;
    size_t held;
    size_t lent;
    size_t cap;
    tp_quic_blocks_t *blocks; /* the endpoint's block cache the chunks come from (NULL: malloc) */
} tp_h3_bodyq_t;

void tp__h3_bodyq_init(tp_h3_bodyq_t *q, size_t cap, tp_quic_blocks_t *blocks);
void tp__h3_bodyq_free(tp_h3_bodyq_t *q);
/* Copies up to the room left (cap - held); returns the count or TP_ERR_NOMEM (nothing taken). */
ssize_t tp__h3_bodyq_push(tp_h3_bodyq_t *q, const uint8_t *data, size_t len);
/* Lends the next bytes not lent yet, as up to `max` vectors; returns how many were filled. */
size_t tp__h3_bodyq_lend(tp_h3_bodyq_t *q, nghttp3_vec *vec, size_t max);
/* Drops the first `n` lent bytes (nghttp3 is done with them). */
void tp__h3_bodyq_release(tp_h3_bodyq_t *q, size_t n);
/* Bytes waiting that were not lent yet. */
static inline size_t tp__h3_bodyq_unlent(const tp_h3_bodyq_t *q) { return q->held - q->lent; }
static inline size_t tp__h3_bodyq_room(const tp_h3_bodyq_t *q) {
    return q->held < q->cap ? q->cap - q->held : 0;
}

/* ---- driver state ---- */

struct tp_h3 {
    bool server;
    tp_h3_settings_t s;
    tp_h3_callbacks_t cb;
    void *data;
};

struct tp_h3_stream {
    tp_h3_conn_t *conn;
    int64_t id;
    void *data;
    struct tp_h3_stream *prev, *next; /* the connection's live streams */
    struct tp_h3_stream *wr_next;     /* on the connection's writable-notify list */
    tp_h3_bodyq_t body;
    /* receive side */
    uint64_t section_size; /* of the field section being received */
    size_t nfields;
    size_t fields_cap;
    tp_h3_field_t *fields;  /* the section being received (names/values in `fbuf`) */
    nghttp3_rcbuf **rcbufs; /* references held for `fields`, 2 per field */
    bool too_large;         /* the section being received passed max_field_section_size */
    bool in_trailers;
    bool got_final_headers;
    bool headers_fin; /* the request's header section ended the stream: no body follows */
    bool fin_delivered;
    /* send side */
    bool responded;     /* server: final response submitted (client: request submitted) */
    bool has_reader;    /* nghttp3 pulls our body through read_data */
    bool body_fin;      /* the app ended the body (or sent trailers) */
    bool eof_given;     /* read_data returned EOF */
    bool read_blocked;  /* read_data returned WOULDBLOCK */
    bool want_writable; /* a tp_h3_stream_send() was short */
    bool on_wr_list;
    bool reset_pending; /* a reset requested while inside nghttp3 */
    uint64_t reset_code;
    bool reject_pending; /* answer 431 after the current read */
    bool read_stopped;   /* tp_h3_stream_stop_reading(): nothing more is delivered */
    bool stop_pending;   /* ... and its STOP_SENDING waits for the current nghttp3 call */
    uint64_t stop_code;
    bool closed; /* the QUIC stream closed: only the struct is left */
};

struct tp_h3_conn {
    tp_h3_t *h3;
    tp_quic_conn_t *q;
    nghttp3_conn *ng;
    void *data;
    tp_h3_stream_t *streams;  /* live request streams */
    tp_h3_stream_t *wr_head;  /* streams to tell on_writable */
    tp_h3_stream_t *spare;    /* closed streams kept for reuse (linked by next) */
    nghttp3_mem mem;          /* nghttp3's allocator over the endpoint's small-object cache */
    tp_quic_blocks_t *blocks; /* the endpoint's cache */
    unsigned nspare;
    bool ready;          /* control streams bound */
    bool early_rejected; /* client: 0-RTT refused; streams end as REQUEST_REJECTED until ready */
    bool closing;        /* closed or closing: nghttp3 is not used any more */
    bool goaway_final;
    bool goaway_received;
    bool peer_settings;
    bool peer_datagrams;
    bool peer_connect_protocol;
    int in_ng; /* depth of nghttp3 calls that may call back */
    bool flushing;
    bool again;
    bool has_pending; /* some stream has reset_pending / reject_pending */
    bool connecting;  /* inside tp_quic_connect(): a close then is reported by it */
    bool closed_early;
    uint64_t max_client_bidi; /* cumulative count announced to nghttp3 (server) */
};

/* conn.c */
/* `ep` is the endpoint the connection is (or will be) on; `q` NULL for a client until it connects.
 */
tp_h3_conn_t *tp__h3_conn_new(tp_h3_t *h3, tp_quic_endpoint_t *ep, tp_quic_conn_t *q, void *data);
/* Sends what nghttp3 has and tells the app about room, unless inside nghttp3 (then it runs
 * when that call returns). */
void tp__h3_conn_kick(tp_h3_conn_t *c);
/* A fatal nghttp3 error: close the connection with the matching HTTP/3 code. */
void tp__h3_conn_fail(tp_h3_conn_t *c, int ngerr, const char *what);
tp_h3_stream_t *tp__h3_stream_new(tp_h3_conn_t *c, int64_t id);
/* Unlinks and frees a stream (its QUIC stream must not point at it any more). */
void tp__h3_stream_free(tp_h3_conn_t *c, tp_h3_stream_t *s);
extern const nghttp3_data_reader tp__h3_body_reader;
/* Builds nghttp3 name/value pairs for `f` into `nv` (n entries). */
void tp__h3_to_nv(nghttp3_nv *nv, const tp_h3_field_t *f, size_t n);

#endif
