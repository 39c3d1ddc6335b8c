/* turnpike/hooks.h: flow contexts, decisions (immediate or pending) and the hook tables. */
#ifndef TURNPIKE_HOOKS_H
#define TURNPIKE_HOOKS_H

#include <stdint.h>

#include "common.h"
#include "proxy_protocol.h"
#include "tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Contexts. Each is owned by Turnpike and valid from the hook that first shows it until
 * ingress.handle_connection_close() returns (a request: until its exchange is over). Hooks receive
 * them; apps never free them. All hooks run on the worker loop that owns the connection.
 */
typedef struct tp_endpoint tp_endpoint_t; /* a configured listener set */
typedef struct tp_conn tp_conn_t;         /* an ingress (client) connection */
typedef struct tp_request tp_request_t;   /* an HTTP request and its exchange */
typedef struct tp_response tp_response_t; /* the response Turnpike is about to send */
typedef struct tp_egress tp_egress_t;     /* one upstream connection being set up */

/* ---- Decisions ---------------------------------------------------------------------------- */

typedef enum tp_verdict {
    TP_VERDICT_ALLOW = 0, /* go on (for egress: connect directly to the address) */
    TP_VERDICT_BLOCK,     /* refuse: close the flow, or answer `status` on HTTP flows */
    TP_VERDICT_REDIRECT,  /* egress and CONNECT: connect to `addr` instead (ingress: a block) */
    TP_VERDICT_PENDING,   /* the hook called tp_pending_new() and will complete later */
    TP_VERDICT_RESPOND,   /* HTTP requests: answer with the response built by tp_respond() */
} tp_verdict_t;

/* What a deciding hook returns. Build it with the helpers below. */
typedef struct tp_decision {
    tp_verdict_t verdict;
    uint16_t status;     /* BLOCK on HTTP flows: the response status (0 = 403) */
    const char *error;   /* BLOCK: RFC 9209 Proxy-Status error type, a static string (NULL: none) */
    const char *details; /* BLOCK: optional details for Proxy-Status and the log, static string */
    tp_addr_t addr;      /* REDIRECT: where to connect */
} tp_decision_t;

/* Go on. */
static inline tp_decision_t tp_allow(void) {
    tp_decision_t d = {.verdict = TP_VERDICT_ALLOW};
    return d;
}

/* Refuse with an HTTP status (ignored on L4 flows, which are closed) and a Proxy-Status error. */
static inline tp_decision_t tp_block(uint16_t status, const char *error) {
    tp_decision_t d = {.verdict = TP_VERDICT_BLOCK, .status = status, .error = error};
    return d;
}

/* Egress or CONNECT: connect to `addr` (IP and port) instead of the requested upstream. */
static inline tp_decision_t tp_redirect(const tp_addr_t *addr) {
    tp_decision_t d = {.verdict = TP_VERDICT_REDIRECT, .addr = *addr};
    return d;
}

/* The decision will come later through tp_pending_complete(). Return it only after
 * tp_pending_new(). */
static inline tp_decision_t tp_pending(void) {
    tp_decision_t d = {.verdict = TP_VERDICT_PENDING};
    return d;
}

/* Egress wording for tp_allow(): connect to this (resolved) address. */
#define tp_egress_direct(addr)         ((void)(addr), tp_allow())
#define tp_egress_block(status, error) tp_block((status), (error))

/*
 * A decision that completes later. Inside a deciding hook, call tp_pending_new() on the hook's
 * context, start the asynchronous work, and return tp_pending(). The flow waits, without blocking
 * the loop, until tp_pending_complete() is called or `timeout_ms` passes; on timeout it is refused
 * with 503 and Proxy-Status error proxy_internal_error ("decision timed out").
 *
 * tp_pending_complete() must be called exactly once per handle, on the same worker loop (from a
 * libuv callback, a timer, or an async handle), even when the flow is gone: then it only frees the
 * handle and returns TP_ERR_CLOSED (after a timeout, likewise). It returns 0 when the decision was
 * applied. A completion may itself be TP_VERDICT_PENDING only by mistake: it is treated as BLOCK.
 */
typedef struct tp_pending tp_pending_t;

tp_pending_t *tp__pending_new_conn(tp_conn_t *conn, uint64_t timeout_ms);
tp_pending_t *tp__pending_new_request(tp_request_t *req, uint64_t timeout_ms);
tp_pending_t *tp__pending_new_egress(tp_egress_t *eg, uint64_t timeout_ms);

/* tp_pending_new(ctx, timeout_ms): ctx is the hook's tp_conn_t *, tp_request_t * or tp_egress_t *.
 * Returns NULL (and the hook should decide at once) when out of memory or when called outside a
 * deciding hook. */
#define tp_pending_new(ctx, timeout_ms)                                                            \
    _Generic((ctx), tp_conn_t *                                                                    \
             : tp__pending_new_conn, tp_request_t *                                                \
             : tp__pending_new_request, tp_egress_t *                                              \
             : tp__pending_new_egress)((ctx), (timeout_ms))

/* Completes a pending decision: 0 if applied, TP_ERR_CLOSED if the flow died or timed out. */
int tp_pending_complete(tp_pending_t *p, tp_decision_t decision);

/* ---- Body decisions ----------------------------------------------------------------------- */

/* What a body hook does with the chunk it was shown (Envoy's vocabulary). */
typedef enum tp_body_action {
    TP_BODY_CONTINUE = 0, /* pass it on (as rewritten), after whatever was held before it */
    TP_BODY_BUFFER,       /* hold it with what is held, show the next chunk (up to the limit) */
    TP_BODY_WATERMARK,    /* hold it and stop reading that side until tp_body_resume() */
    TP_BODY_BLOCK,        /* abort the exchange; the client gets `status` if nothing went out */
} tp_body_action_t;

typedef struct tp_body_decision {
    tp_body_action_t action;
    uint16_t status;     /* BLOCK: the answer (0: 403 for requests, 502 for responses) */
    const char *error;   /* BLOCK: Proxy-Status error type, static (NULL: a default) */
    const char *details; /* BLOCK: Proxy-Status details, static, or NULL */
} tp_body_decision_t;

static inline tp_body_decision_t tp_body_continue(void) {
    tp_body_decision_t d = {.action = TP_BODY_CONTINUE};
    return d;
}
static inline tp_body_decision_t tp_body_buffer(void) {
    tp_body_decision_t d = {.action = TP_BODY_BUFFER};
    return d;
}
static inline tp_body_decision_t tp_body_watermark(void) {
    tp_body_decision_t d = {.action = TP_BODY_WATERMARK};
    return d;
}
static inline tp_body_decision_t tp_body_block(uint16_t status, const char *error) {
    tp_body_decision_t d = {.action = TP_BODY_BLOCK, .status = status, .error = error};
    return d;
}

/* ---- Context accessors -------------------------------------------------------------------- */

/* The endpoint's configured name. */
const char *tp_endpoint_name(const tp_endpoint_t *ep);

/* A per-flow identifier, unique within the process (worker index in the top bits). */
uint64_t tp_conn_id(const tp_conn_t *conn);
/* The client's address and the local address it reached: the PROXY header's, when the endpoint
 * takes one and it carried a PROXY command, else the socket's. */
const tp_addr_t *tp_conn_peer(const tp_conn_t *conn);
const tp_addr_t *tp_conn_local(const tp_conn_t *conn);
tp_endpoint_t *tp_conn_endpoint(const tp_conn_t *conn);
/* The PROXY protocol header the connection began with, or NULL (no proxy_protocol on the
 * endpoint). Its views (TLVs, paths) live as long as the connection. */
const tp_proxy_header_t *tp_conn_proxy_header(const tp_conn_t *conn);
/* The index of the worker thread that owns the connection (0-based). */
unsigned tp_conn_worker(const tp_conn_t *conn);
/* The worker's libuv loop, for an app's own asynchronous work (a uv_loop_t *). */
struct uv_loop_s *tp_conn_loop(const tp_conn_t *conn);

/* The request method ("CONNECT", "GET", ...). */
tp_str_t tp_request_method(const tp_request_t *req);
/* The request target as sent ("example.com:443" for CONNECT, "http://host/path" for a proxy GET).
 */
tp_str_t tp_request_target(const tp_request_t *req);
/* The host the request is for (from the target), without brackets, and its port. */
tp_str_t tp_request_host(const tp_request_t *req);
uint16_t tp_request_port(const tp_request_t *req);
/* The value of the first header named `name` (case-insensitive); absent: {NULL, 0}. */
tp_str_t tp_request_header(const tp_request_t *req, const char *name);
/* The ingress connection the request came on. */
tp_conn_t *tp_request_conn(const tp_request_t *req);

/*
 * Rewriting a request, in http.handle_request (before it is forwarded; afterwards they return
 * TP_ERR_STATE). Header names must be tokens and values free of control characters
 * (TP_ERR_INVAL); the changes are bounded (64 added lines, 8 KiB: TP_ERR_TOO_LARGE).
 * tp_request_header() sees the changes. Framing and hop-by-hop headers (Content-Length,
 * Transfer-Encoding, Connection, ...) are Turnpike's: changes to them are ignored when the head
 * is written.
 */
/* The path and query the upstream will be asked for ("/" at least). */
tp_str_t tp_request_path(const tp_request_t *req);
/* Replaces the path and query: it must start with '/' and hold no space or control character. */
int tp_request_set_path(tp_request_t *req, const char *path);
/* Replaces every field called `name` by one with this value. */
int tp_request_set_header(tp_request_t *req, const char *name, const char *value);
/* Adds a field (after the others). */
int tp_request_add_header(tp_request_t *req, const char *name, const char *value);
/* Removes every field called `name`. */
int tp_request_remove_header(tp_request_t *req, const char *name);
/* An http endpoint: send the request to the upstream group called `name` whatever the routes
 * said. TP_ERR_NOTFOUND when no group has that name. */
int tp_request_set_upstream(tp_request_t *req, const char *name);

/*
 * Answers the request directly, without an upstream (Turnpike as an API server): status 200..599,
 * an optional Content-Type and body (copied; at most 16 MiB), plus any headers added with
 * tp_response_add_header(tp_request_response(req), ...) before. Return its result from
 * handle_request, or pass it to tp_pending_complete(). The connection stays open for the next
 * request (a request body still coming is read and dropped). On a bad argument or out of memory
 * it returns a block decision (500).
 */
tp_decision_t tp_respond(tp_request_t *req, uint16_t status, const char *content_type,
                         const void *body, size_t len);
/* The direct response being built, for tp_response_add_header() before tp_respond(). */
tp_response_t *tp_request_response(tp_request_t *req);

/*
 * Bodies, in the body hooks. A chunk is what one read brought (de-chunked), possibly empty on the
 * last call (end set). Held bytes (TP_BODY_BUFFER, TP_BODY_WATERMARK) go on, in order, before the
 * chunk that continues. While a body hook holds bytes, the message's head is held too (nothing of
 * the message has gone out), so a block or an overflow still gets a clean answer.
 */
typedef struct tp_body tp_body_t;
/* This chunk's bytes (as rewritten so far). */
const uint8_t *tp_body_data(const tp_body_t *body, size_t *len);
/* True on the last call for this body. */
bool tp_body_is_end(const tp_body_t *body);
/* The bytes held from earlier chunks, in order (not counting this one). */
const uint8_t *tp_body_held(const tp_body_t *body, size_t *len);
/* Replaces this chunk's bytes (copied, at most 16 MiB). A Content-Length body must keep its
 * length unless the head hook called tp_*_body_will_change(). 0, TP_ERR_TOO_LARGE, TP_ERR_NOMEM. */
int tp_body_rewrite(tp_body_t *body, const void *data, size_t len);
/* Replaces the held bytes too (e.g. after scanning the whole buffered body). */
int tp_body_rewrite_held(tp_body_t *body, const void *data, size_t len);
/* After TP_BODY_WATERMARK: pass the held bytes on and read that side again (same loop).
 * `response` picks the body. 0, TP_ERR_STATE when nothing is held by a watermark. */
int tp_body_resume(tp_request_t *req, bool response);
/* In handle_request / handle_response: the body hook may change the body's length, so it goes
 * out chunked (without Content-Length). */
int tp_request_body_will_change(tp_request_t *req);
int tp_response_body_will_change(tp_response_t *resp);

/* The status Turnpike is about to send. */
uint16_t tp_response_status(const tp_response_t *resp);
/* In http.handle_response: the first field called `name` of the upstream's response, with the
 * hook's changes; elsewhere, among the added headers. {NULL, 0} when absent. */
tp_str_t tp_response_header(const tp_response_t *resp, const char *name);
/* In http.handle_response: sends this status instead (200..599; TP_ERR_INVAL otherwise). */
int tp_response_set_status(tp_response_t *resp, uint16_t status);
/* Replaces every field called `name` by one with this value; removes every field so called. */
int tp_response_set_header(tp_response_t *resp, const char *name, const char *value);
int tp_response_remove_header(tp_response_t *resp, const char *name);
/* Adds a header to the response (copied). Returns 0, TP_ERR_INVAL for a name or value with
 * characters HTTP forbids, TP_ERR_TOO_LARGE past 64 headers or 8 KiB, TP_ERR_NOMEM. */
int tp_response_add_header(tp_response_t *resp, const char *name, const char *value);

/* The ingress connection and (on HTTP flows) the request this upstream connection is for. */
tp_conn_t *tp_egress_conn(const tp_egress_t *eg);
tp_request_t *tp_egress_request(const tp_egress_t *eg);
/* The host name or IP literal that was asked for, and its port. */
tp_str_t tp_egress_host(const tp_egress_t *eg);
uint16_t tp_egress_port(const tp_egress_t *eg);
/* The addresses Turnpike will try, in Happy Eyeballs order (RFC 8305: families interleaved, the
 * resolver's preference first); after a redirect, the redirect target alone. Sets *addrs, returns
 * the count. In handle_connection_established, `upstream` says which one won. */
size_t tp_egress_addresses(const tp_egress_t *eg, const tp_addr_t **addrs);
/* In dns_resolve_override: the addresses to use instead of resolving (ports may be 0: the
 * requested port is set). Copies at most 16. Returns 0, or TP_ERR_STATE outside that hook. */
int tp_egress_set_addresses(tp_egress_t *eg, const tp_addr_t *addrs, size_t n);
/* The app's extension (TP_EXT_DNS_ITEM) of the cached DNS answer this upstream's name resolved
 * to: it lives as long as that answer stays cached, so state kept there is shared by every
 * connection of the worker that resolves the name while it is cached. NULL for IP literals,
 * hosts-file names, overridden answers, while only an early answer of one family is in (RFC 8305),
 * or when the app declared no such extension. Valid in the
 * egress hooks after resolution (handle_upstream_ips on). */
void *tp_egress_dns_item_ext(const tp_egress_t *eg);

/* ---- App settings and extensions ----------------------------------------------------------- */

const void *tp__conn_app_settings(const tp_conn_t *conn);
const void *tp__request_app_settings(const tp_request_t *req);
const void *tp__egress_app_settings(const tp_egress_t *eg);
const void *tp__endpoint_app_settings_of_endpoint(const tp_endpoint_t *ep);
const void *tp__conn_endpoint_settings(const tp_conn_t *conn);
const void *tp__request_endpoint_settings(const tp_request_t *req);
const void *tp__egress_endpoint_settings(const tp_egress_t *eg);

/* The app's global settings (its `app:` section) as the struct its schema describes. */
#define tp_app_settings(ctx)                                                                       \
    _Generic((ctx), tp_conn_t *                                                                    \
             : tp__conn_app_settings, tp_request_t *                                               \
             : tp__request_app_settings, tp_egress_t *                                             \
             : tp__egress_app_settings)(ctx)

/* The app's per-endpoint settings (the endpoint's `app:` section). */
#define tp_endpoint_settings(ctx)                                                                  \
    _Generic((ctx), tp_conn_t *                                                                    \
             : tp__conn_endpoint_settings, tp_request_t *                                          \
             : tp__request_endpoint_settings, tp_egress_t *                                        \
             : tp__egress_endpoint_settings, tp_endpoint_t *                                       \
             : tp__endpoint_app_settings_of_endpoint)(ctx)

void *tp__endpoint_ext(tp_endpoint_t *ep);
void *tp__conn_ext(tp_conn_t *conn);
void *tp__request_ext(tp_request_t *req);

/* The app's extension of a context, declared in tp_app_t.ext: TP_EXT(my_conn_t, conn)->field.
 * NULL when the app declared none for that kind of context. Zeroed, then the spec's init runs. */
#define TP_EXT(T, ctx)                                                                             \
    ((T *)_Generic((ctx), tp_endpoint_t *                                                          \
                   : tp__endpoint_ext, tp_conn_t *                                                 \
                   : tp__conn_ext, tp_request_t *                                                  \
                   : tp__request_ext)(ctx))

/* ---- Hook tables -------------------------------------------------------------------------- */

/* Why a connection ended; names as in tp_close_reason_name() ("client_closed", ...). */
typedef enum tp_close_reason {
    TP_CLOSE_DONE = 0,        /* both sides finished normally */
    TP_CLOSE_CLIENT_CLOSED,   /* the client closed (between requests, or its half of a tunnel) */
    TP_CLOSE_CLIENT_RESET,    /* the client's connection failed (reset, error) */
    TP_CLOSE_UPSTREAM_CLOSED, /* the upstream closed first and the flow could not go on */
    TP_CLOSE_UPSTREAM_RESET,  /* the upstream connection failed mid-flow */
    TP_CLOSE_UPSTREAM_FAILED, /* no upstream connection could be made */
    TP_CLOSE_BLOCKED,         /* a hook or the policy refused the flow */
    TP_CLOSE_PROTOCOL_ERROR,  /* the client broke the protocol */
    TP_CLOSE_IDLE_TIMEOUT,    /* nothing moved for the idle timeout */
    TP_CLOSE_HEADER_TIMEOUT,  /* the request head did not arrive in time */
    TP_CLOSE_SHUTDOWN,        /* closed by a drain: idle at its start, or open at its deadline */
    TP_CLOSE_INTERNAL,        /* Turnpike failed (out of memory, ...) */
    TP_CLOSE_CONNECT_TIMEOUT, /* no upstream address answered within timeouts.connect */
    TP_CLOSE_CLIENT_IDLE,     /* a tunnel's client sent nothing for timeouts.tunnel_idle_client */
    TP_CLOSE_UPSTREAM_IDLE, /* a tunnel's upstream sent nothing for timeouts.tunnel_idle_upstream */
    TP_CLOSE_LIFETIME,      /* the connection reached timeouts.max_lifetime */
    TP_CLOSE_RESPONSE_TIMEOUT, /* the upstream's response head did not come within timeouts.response
                                */
    TP_CLOSE_BODY_TIMEOUT,     /* the client's request body stalled for timeouts.body_read */
    TP_CLOSE_TLS_HANDSHAKE,    /* "tls_handshake_failed": no ClientHello, no common version or
                                  suite, a refused client certificate, ... (logged with why) */
    TP_CLOSE_TLS_HANDSHAKE_TIMEOUT, /* the handshake was not over within tls.handshake_timeout */
    TP_CLOSE_TLS_ERROR, /* the TLS record layer failed after the handshake (bad record, ...) */
} tp_close_reason_t;

/* "done", "client_closed", ... for logs and metrics. */
const char *tp_close_reason_name(tp_close_reason_t reason);

typedef struct tp_conn_stats {
    uint64_t bytes_from_client; /* bytes read from the client */
    uint64_t bytes_to_client;   /* bytes written to the client */
    uint64_t bytes_from_upstream;
    uint64_t bytes_to_upstream;
    uint64_t duration_us; /* from accept to close */
    uint64_t requests;    /* HTTP requests seen (0 on L4) */
    tp_close_reason_t reason;
} tp_conn_stats_t;

/* Ingress: the client connection as a whole. */
typedef struct tp_ingress_hook {
    void *self; /* passed to every function below */
    /*
     * After accept, before any byte of the flow is read (on an endpoint with `proxy_protocol`,
     * after its header; on a TLS endpoint, after the handshake, so tp_conn_tls() shows the
     * session and the client's certificate). Allow or block (the connection is closed). May pend.
     */
    tp_decision_t (*handle_connection)(void *self, tp_conn_t *conn);
    /* Once, when the connection is over (also after a block). The context dies after it returns;
     * tp_conn_tls() still works in it. */
    void (*handle_connection_close)(void *self, tp_conn_t *conn, const tp_conn_stats_t *stats);
    /*
     * TLS endpoints: the ClientHello has arrived and nothing else has happened yet (no GnuTLS, no
     * crypto): the SNI peek. `hello` is untrusted and valid until the decision is applied. Allow
     * (the handshake runs, with the certificate SNI picks) or block (the connection is closed,
     * reason "blocked"). May pend. This is where interception will be decided (terminate here,
     * or pass the bytes through untouched) once Turnpike can pass TLS through; today a redirect
     * counts as a block. Runs before handle_connection.
     */
    tp_decision_t (*handle_tls_client_hello)(void *self, tp_conn_t *conn,
                                             const tp_tls_client_hello_t *hello);
} tp_ingress_hook_t;

/* Egress: every upstream connection, L4 and HTTP alike. */
typedef struct tp_egress_hook {
    void *self;
    /*
     * Before connecting to `upstream` (resolved, with port). Allow (connect there), block (the HTTP
     * client gets `status`, default 403; an L4 client is closed) or redirect (connect to
     * decision.addr instead). The destination policy (special ranges, allow_destinations) applies
     * to the address finally connected to, whatever the hook says; the one exemption is an L4
     * endpoint's configured `upstream` when the hook does not redirect. May pend.
     */
    tp_decision_t (*handle_connection)(void *self, tp_egress_t *eg, const tp_addr_t *upstream);
    /* The upstream connection is up; `upstream` is the address actually connected to. */
    void (*handle_connection_established)(void *self, tp_egress_t *eg, const tp_addr_t *upstream);
    /*
     * Before a host name is resolved (IP literals skip it). Allow: resolve as usual, unless the
     * hook supplied the addresses with tp_egress_set_addresses(), which skips the resolver. Block:
     * fail the set-up (default 502 with Proxy-Status dns_error). May pend (the addresses may then
     * be set before tp_pending_complete()).
     */
    tp_decision_t (*dns_resolve_override)(void *self, tp_egress_t *eg, tp_str_t host);
    /*
     * After a name was resolved (or answered by the override; not for IP literals), before
     * handle_connection: the hook may reorder, filter or replace the n addresses in place (at
     * most cap; ports are set), changing *n. Zero left fails the set-up with 502 dns_error.
     * Happy Eyeballs (RFC 8305 3) connects with the first family's answer when the other is
     * late: then this runs once for those addresses and once more for the late family's new
     * ones (which join the candidates not tried yet), if they come before the set-up is over.
     */
    void (*handle_upstream_ips)(void *self, tp_egress_t *eg, tp_addr_t *addrs, size_t *n,
                                size_t cap);
    /*
     * Instead of Turnpike's connect to `addr` (one Happy Eyeballs attempt): return the file
     * descriptor of a TCP socket the app connected itself (Turnpike owns it from then on), or -1
     * to let Turnpike connect, or -2 to fail this attempt (the next address is tried). It must not
     * block the loop: hand over a socket that is already connected.
     */
    int (*tcp_connect_override)(void *self, tp_egress_t *eg, const tp_addr_t *addr);
} tp_egress_hook_t;

/* HTTP: requests that come through an HTTP on-ramp. */
typedef struct tp_http_request_hook {
    void *self;
    /* A CONNECT request's head has arrived. Allow, block with a status (default 403), or
     * redirect the tunnel to decision.addr (the egress hook and the policy still apply). May pend.
     */
    tp_decision_t (*handle_proxy_connect_request)(void *self, tp_request_t *req);
    /* The CONNECT tunnel is about to be answered (2xx or an error); may add response headers. */
    void (*handle_proxy_connect_response)(void *self, tp_request_t *req, tp_response_t *resp);
    /*
     * Any other request's head has arrived (absolute-form on an http_proxy endpoint, origin-form
     * on an http endpoint, after its route was found). The hook may rewrite the path and headers
     * and, on an http endpoint, choose the upstream group (tp_request_set_upstream). Then: allow
     * (forward it), block with a status (default 403) and a Proxy-Status error, respond directly
     * (tp_respond), or redirect (connect to decision.addr instead; the policy still applies).
     * May pend.
     */
    tp_decision_t (*handle_request)(void *self, tp_request_t *req);
    /* The upstream's response head has arrived (not an interim 1xx): the hook may change its
     * status and headers before it goes to the client. Not for responses Turnpike makes itself. */
    void (*handle_response)(void *self, tp_request_t *req, tp_response_t *resp);
    /*
     * Each chunk of a forwarded request's body (not for CONNECT, nor for requests answered
     * directly), in order, then once more with end set (len may be 0). Continue, buffer,
     * watermark or block (see tp_body_action_t). Memory stays bounded: what a hook holds is
     * limited by limits.max_body_buffer (past it: 413), and a watermark stops reading the client.
     */
    tp_body_decision_t (*handle_request_body)(void *self, tp_request_t *req, tp_body_t *body);
    /* The same for the upstream's response body (past the limit: 502, or an aborted response
     * when its head already went out). */
    tp_body_decision_t (*handle_response_body)(void *self, tp_request_t *req, tp_body_t *body);
} tp_http_request_hook_t;

/* PROXY protocol: the header an endpoint with `proxy_protocol` set reads first. */
typedef struct tp_proxy_protocol_hook {
    void *self;
    /* The header arrived and is valid (the connection's peer and local addresses are already the
     * header's, for a PROXY command). Allow, or block (the connection is closed). May pend. Runs
     * before ingress.handle_connection, which sees the same header (tp_conn_proxy_header). */
    tp_decision_t (*handle_connection)(void *self, tp_conn_t *conn, const tp_proxy_header_t *hdr);
} tp_proxy_protocol_hook_t;

/* All the hook tables of an app. A NULL function means "do the default". */
typedef struct tp_hooks {
    tp_proxy_protocol_hook_t proxy_protocol;
    tp_ingress_hook_t ingress;
    tp_egress_hook_t egress;
    tp_http_request_hook_t http_request;
} tp_hooks_t;

#ifdef __cplusplus
}
#endif
#endif
