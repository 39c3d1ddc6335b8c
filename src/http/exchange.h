/* exchange.h: one HTTP request and its response through Turnpike, whatever the protocol versions.
 *
 * The pipeline has three parts (see docs/ARCHITECTURE.md, "The HTTP pipeline"):
 *   - a server codec (the on-ramp: HTTP/1.1 today in src/h1/server.c) turns the client's bytes into
 *     messages and events, and writes what the exchange sends back in its own framing;
 *   - the exchange (src/http/exchange.c) holds the version-independent request: the hooks, routing,
 *     upstream groups, retries, body hooks, direct answers and Proxy-Status errors;
 *   - a client codec (the off-ramp: HTTP/1.1 in src/h1/client.c) carries the request to the
 *     upstream and turns its response into events.
 * Messages are heads (tp_http_head_t: fields in the codec's buffer), the hooks' edits
 * (tp_hdr_edits_t) and a framing (no body, a known length, or a stream), never wire bytes.
 */
#ifndef TP_HTTP_EXCHANGE_H
#define TP_HTTP_EXCHANGE_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>

#include "h1/scan.h"
#include "http/edits.h"
#include "http/head.h"
#include "offramp/group.h"
#include "runtime/core.h"

typedef struct tp_exchange tp_exchange_t;

/* The methods the pipeline treats apart. */
typedef enum tp_http_method {
    TP_METHOD_OTHER = 0,
    TP_METHOD_GET,
    TP_METHOD_HEAD,
    TP_METHOD_OPTIONS,
    TP_METHOD_TRACE,
    TP_METHOD_PUT,
    TP_METHOD_DELETE,
    TP_METHOD_POST,
    TP_METHOD_CONNECT,
} tp_http_method_t;

/* How a message's body is known (the version-independent framing). */
typedef enum tp_http_framing {
    TP_FRAMING_NONE = 0, /* no body */
    TP_FRAMING_LENGTH,   /* exactly `length` bytes (Content-Length) */
    TP_FRAMING_STREAM,   /* bytes until an end event (chunked, DATA frames, or the close) */
} tp_http_framing_t;

/* A body as body hooks see it, one direction of an exchange. */
typedef struct tp_body_dir {
    bool active;      /* the app has a hook for this body, and the message has a body */
    bool will_change; /* the hook may change its length: it goes on without a length */
    bool head_held;   /* the message head waits for the first chunk the hook lets go */
    uint8_t *held;    /* bytes held by BUFFER or WATERMARK */
    size_t held_len, held_cap;
    bool watermark; /* held by a watermark: that side's reading and parsing stopped */
    bool has_cl;    /* framed by a length ... */
    uint64_t cl;    /* ... of this many bytes */
    uint64_t out;   /* body bytes passed on */
    bool ended;     /* the last call happened */
} tp_body_dir_t;

struct tp_body {
    const uint8_t *data;
    size_t len;
    bool end;
    uint8_t *own; /* a rewrite's bytes */
    tp_body_dir_t *dir;
};

struct tp_response {
    uint16_t status;
    tp_hdr_edits_t edits;       /* added lines; for an upstream's response, also removed names */
    uint16_t origin_status;     /* the status the upstream sent (its reason phrase goes with it) */
    const tp_http_head_t *head; /* the upstream's response head (NULL for Turnpike's own) */
    size_t nfields;             /* the head's fields (trailers follow them) */
    bool editable;              /* handle_response is running */
    bool will_change;           /* the response body hook may change the body's length */
    char *body;                 /* a direct or error response's body */
    size_t body_len;
};

struct tp_request {
    tp_exchange_t *x;
    tp_conn_t *conn;
    const tp_http_head_t *head; /* method in `first`, target in `url`, the fields */
    size_t nfields;             /* the head's own fields; those after (trailers) come at the end */
    tp_http_method_t method;
    tp_http_target_t target;
    tp_http_framing_t framing; /* the request body, as the client sent it */
    uint64_t length;
    bool is_connect;
    bool secure;           /* the client's connection is encrypted (X-Forwarded-Proto: https) */
    bool upgrade;          /* asks for a protocol upgrade (WebSocket, ...): Upgrade + Connection */
    bool expect_continue;  /* Expect: 100-continue */
    bool editable;         /* before it is forwarded: hooks may rewrite it */
    bool body_will_change; /* the request body hook may change its length */
    tp_hdr_edits_t edits;  /* the hooks' header changes */
    char *path;            /* the hooks' new path, or NULL */
    int group;             /* the upstream group (index in the config), -1 none */
    tp_group_server_t *server; /* the group's server this exchange uses */
    unsigned tries;            /* servers tried for it */
    tp_response_t direct;      /* a direct response (tp_respond) */
    void *ext;
};

/* What the exchange asks of its server codec (the on-ramp side). Functions that write return 0, or
 * an error when the flow ended (the codec closed it). */
typedef struct tp_http_server_ops {
    /* An interim (1xx, not 101) response. */
    int (*send_interim)(tp_exchange_t *x, uint16_t status, const tp_http_head_t *head,
                        const tp_hdr_edits_t *edits);
    /* The final response head; `framing`/`length` say how its body comes (after a HEAD request or
     * a 204/304 the codec sends no body whatever they say). `upgrade` names the protocol of a 101.
     */
    int (*send_head)(tp_exchange_t *x, const tp_response_t *resp, tp_http_framing_t framing,
                     uint64_t length, tp_str_t upgrade);
    /* Body bytes; `hold` keeps `p` alive (a slab), or is NULL and the bytes are copied. */
    int (*send_body)(tp_exchange_t *x, tp_buf_t *hold, const uint8_t *p, size_t n);
    /* The end of the body, with trailer fields of `head` from index `from` (none when NULL). */
    int (*send_end)(tp_exchange_t *x, const tp_http_head_t *head, size_t from);
    /* Turnpike's own final answer (an error with Proxy-Status, or a direct response): head,
     * whole body, and then what the protocol does after it. `fatal`: nothing more can be read
     * from this client as requests (an error); else the exchange ends normally. */
    void (*answer)(tp_exchange_t *x, const tp_response_t *resp, bool fatal);
    /* A CONNECT tunnel is up: the 2xx head, then bytes both ways between client and upstream. */
    void (*tunnel)(tp_exchange_t *x, const tp_response_t *resp);
    /* The upstream agreed to an upgrade (101, head already sent, and the upstream's bytes after
     * its head already written toward the client): bytes both ways from now on. */
    void (*upgraded)(tp_exchange_t *x);
    /* Start or stop reading the request body (backpressure and watermarks). */
    void (*request_flow)(tp_exchange_t *x, bool on);
    /* Parse what the client already sent (the request body, after the head went upstream). */
    void (*resume)(tp_exchange_t *x);
    /* The exchange is complete (request and response): the codec moves on or closes. */
    void (*done)(tp_exchange_t *x);
    /* May the exchange go on to the next request on this connection (keep-alive)? */
    bool (*keep_alive)(const tp_exchange_t *x);
} tp_http_server_ops_t;

/* The HTTP/1.1 client codec's state (src/h1/client.c), one per exchange. */
typedef struct tp_h1_client {
    llhttp_t sp;              /* responses from the upstream */
    tp_http_head_t head;      /* the response head being read, then its trailers */
    size_t nhead;             /* the final head's fields; trailers follow */
    tp_h1_scan_t scan;        /* the strict scanner in front of the response parser */
    size_t scan_ahead;        /* response bytes it vetted that llhttp has not consumed yet */
    tp_h1_framing_t rframing; /* the response body's framing, for the scanner */
    uint64_t rlength;
    const char *error;         /* why the response's framing was refused, for the 502 */
    tp_buf_t *cur;             /* the slab llhttp is running over */
    tp_buf_t *rest;            /* a response read whose parse a watermark stopped ... */
    size_t rest_off, rest_len; /* ... and where it resumes */
    bool chunked_out;          /* the request body goes chunked */
    bool keep_alive;           /* the upstream connection may carry the next request */
} tp_h1_client_t;

struct tp_exchange {
    tp_conn_t *conn;
    const tp_http_server_ops_t *server;
    tp_request_t req;
    tp_response_t fwd_resp;     /* the upstream's response, as handle_response sees it */
    tp_response_t connect_resp; /* a CONNECT's answer, as handle_proxy_connect_response sees it */
    tp_response_t answer;       /* an error answer Turnpike makes */
    tp_h1_client_t up;
    tp_body_dir_t body[2]; /* [TP_TO_UPSTREAM]: the request body; [TP_TO_CLIENT]: response */
    bool deciding;         /* hooks or the upstream set-up run: request body bytes wait */
    bool forwarding;       /* the request head went (or is held for the body hook) upstream */
    bool answered;         /* Turnpike answered (error or direct): no upstream response comes */
    bool req_done;         /* the whole request went (or was dropped) */
    bool req_has_body;
    bool discard_body;    /* a direct response went out: the request body is read and dropped */
    bool resp_started;    /* the upstream began a response */
    bool resp_head_sent;  /* the client has a final response head */
    bool resp_final;      /* the final (not 1xx) response head was parsed */
    bool resp_done;       /* the final response is complete */
    bool resp_no_body;    /* HEAD, 1xx, 204, 304 */
    bool upgraded;        /* the upstream agreed (101): the flow becomes a tunnel */
    bool redirected;      /* handle_request redirected the request to redirect_to */
    bool upstream_reused; /* the request went on a kept-alive connection */
    bool close_after;     /* the client connection ends after this exchange */
    tp_addr_t redirect_to;
    tp_str_t up_host; /* where the request goes: the target's host, a group server, a redirect */
    uint16_t up_port;
    char up_ip[TP_ADDR_STRLEN];
    tp_group_server_t *avoid; /* a retry goes to another server than this one */
    uint64_t body_in;         /* request body bytes read so far (limits.max_body_size) */
    uint64_t resp_deadline;   /* the response head must come by then (0: not waiting) */
    uint64_t body_at;         /* when the request body last made progress */
    const char *rcode;        /* a DNS rcode for the next error answer's Proxy-Status */
    const char *alert_name;   /* ... a TLS alert's name (and alert_id) for it, or NULL */
    uint8_t alert_id;
    tp_egress_tls_t up_tls; /* the TLS the upstream connection is made with (client NULL: none) */
    uint64_t resp_bytes;
};

/* ---- the exchange (src/http/exchange.c) ---- */
int tp__x_init(tp_exchange_t *x, tp_conn_t *conn, const tp_http_server_ops_t *ops);
void tp__x_free(tp_exchange_t *x);
/* Forgets the last request, for the next one on the same connection. */
void tp__x_reset(tp_exchange_t *x);

/* Events from the server codec. The request head is in x->req (head, method, target, framing,
 * flags): hooks run and the request goes on, or an answer is sent. A non-zero `refuse` is the
 * status for a request the codec found malformed (its target), with `detail`. */
void tp__x_request_head(tp_exchange_t *x, uint16_t refuse, const char *detail);
/* Refuses a request the codec found malformed (before or while its body streams). */
void tp__x_request_refused(tp_exchange_t *x, uint16_t status, const char *details);
/* Body bytes of the request (`hold` keeps them alive, or NULL). Returns 0, 1 when a watermark
 * stopped the body (the codec pauses until tp_body_resume), or a negative error (flow ended). */
int tp__x_request_body(tp_exchange_t *x, tp_buf_t *hold, const char *at, size_t len);
/* The request is complete; its trailers are the head's fields from index `from`. */
void tp__x_request_end(tp_exchange_t *x, const tp_http_head_t *trailers, size_t from);
/* The client's writes drained below the low watermark, or completed. */
void tp__x_client_written(tp_exchange_t *x);
/* The upstream's writes drained below the low watermark. */
void tp__x_upstream_written(tp_exchange_t *x);
/* The protocol deadline passed: true when it was the exchange's (response or body timeout). */
bool tp__x_timeout(tp_exchange_t *x);
/* The next deadline of the exchange (0: none): the codec's timer takes the earliest. */
uint64_t tp__x_deadline(const tp_exchange_t *x);
/* The kept-alive upstream may serve other clients: give it to the worker's pool (idle only). */
void tp__x_park_upstream(tp_exchange_t *x);
/* True while the exchange has a request to finish (its head was read, its answer is not out). */
bool tp__x_busy(const tp_exchange_t *x);

/* Events from the client codec. */
/* The response head is in x->up.head (x->up.nhead fields) with its status and framing (LENGTH
 * whenever it has a Content-Length, even when no body follows): run handle_response, then send it
 * to the client. Returns 0, or negative when the flow ended or the head was refused. */
int tp__x_response_head(tp_exchange_t *x, uint16_t status, tp_http_framing_t framing,
                        uint64_t length, tp_str_t upgrade);
/* Body bytes of the response: 0, 1 when a watermark stopped it, negative when the flow ended. */
int tp__x_response_body(tp_exchange_t *x, tp_buf_t *hold, const char *at, size_t len);
/* The response is complete; trailers are x->up.head's fields from index x->up.nhead. */
int tp__x_response_end(tp_exchange_t *x);
/* The upstream failed: `nread` is the read result (>0: bad bytes, UV_EOF, or an error). */
void tp__x_response_failed(tp_exchange_t *x, ssize_t nread, const char *why);
/* The response is complete and the request too, or the upstream answered early. */
void tp__x_response_complete(tp_exchange_t *x);
/* The upstream agreed to an upgrade: hand the flow to the server codec's tunnel. */
void tp__x_upgraded(tp_exchange_t *x, tp_buf_t *b, const char *rest, size_t n);

/* Sends Turnpike's own error answer with Proxy-Status (RFC 9209): `error` is its error type,
 * `details` (may be NULL) a human reason. */
void tp__x_respond_error(tp_exchange_t *x, uint16_t status, const char *error, const char *details);

/* The reason phrase of a status, for codecs that send one. */
const char *tp__http_reason(unsigned status);

/* ---- shared by the HTTP/1.1 codecs (src/h1/client.c) ---- */
/* Writes body bytes toward `dir`, as a chunk when `chunked`; `hold` keeps them alive or is NULL
 * (then they are copied). */
int tp__h1_send_chunk(tp_conn_t *conn, int dir, tp_buf_t *hold, const uint8_t *p, size_t n,
                      bool chunked);
/* Writes the last chunk, with the trailer fields of `hd` from index `from` (hd may be NULL). */
int tp__h1_send_last_chunk(tp_conn_t *conn, int dir, const tp_http_head_t *hd, size_t from);
struct tp_h1_out;
/* Adds the Via line of this hop (RFC 9110 7.6.3) when the endpoint's forwarding.via says so. */
void tp__h1_out_via(struct tp_h1_out *o, const tp_conn_t *conn);

/* ---- the HTTP/1.1 client codec (src/h1/client.c) ---- */
int tp__h1c_init(tp_h1_client_t *c);
void tp__h1c_free(tp_h1_client_t *c);
/* A fresh response parser for the next request on the upstream connection. */
void tp__h1c_begin(tp_exchange_t *x);
/* Writes the request head upstream (or holds it for the request body hook). */
int tp__h1c_send_head(tp_exchange_t *x);
/* Writes request body bytes, framed as the body goes (chunked or not). */
int tp__h1c_send_body(tp_exchange_t *x, tp_buf_t *hold, const uint8_t *p, size_t n);
/* Ends the request body (the last chunk with trailers of `head` from `from`). */
int tp__h1c_send_end(tp_exchange_t *x, const tp_http_head_t *head, size_t from);
/* Bytes (or the end) read from the upstream. */
void tp__h1c_read(tp_exchange_t *x, tp_buf_t *b, ssize_t nread);
/* A watermark released the response: parse what was held back, or read again. */
void tp__h1c_resume(tp_exchange_t *x);

#endif
