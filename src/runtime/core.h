/* core.h: the runtime's private structs: server, workers, per-worker endpoints, connections. */
#ifndef TP_RUNTIME_CORE_H
#define TP_RUNTIME_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/model.h"
#include "runtime/buf.h"
#include "turnpike.h"

typedef struct tp_server tp_server_t;
typedef struct tp_worker tp_worker_t;
typedef struct tp_listener tp_listener_t;
typedef struct tp_upstream tp_upstream_t;
typedef struct tp_h1 tp_h1_t;

/* Most buffers one write request carries (a corked head, body pieces and chunk frames). */
#define TP_BATCH_BUFS 8

/* Writes collected while a direction is corked, sent as one writev at uncork. */
typedef struct tp_batch {
    unsigned depth;
    unsigned n;
    struct tp_wreq *r;
    uv_buf_t bufs[TP_BATCH_BUFS];
} tp_batch_t;

/* Directions of a flow, indexing per-direction counters. */
enum { TP_TO_CLIENT = 0, TP_TO_UPSTREAM = 1 };

/* A per-worker view of a configured endpoint (so its app extension is per-worker, lock-free). */
struct tp_endpoint {
    tp_worker_t *worker;
    const tp_endpoint_cfg_t *cfg;
    size_t index;
    void *ext;
    size_t nconns;           /* open client connections on this worker */
    uint64_t refused;        /* connections closed at accept for limits.max_connections */
    struct tp_dns *dns;      /* this worker's resolver for the endpoint */
    struct h3_worker_ep *h3; /* http3: this worker's driver and QUIC endpoints (onramp/http3.c) */
    /* TLS: this worker's reference on the endpoint's credentials (NULL: no TLS), and a newer set
     * the main thread handed over on SIGHUP, taken at the next wakeup. */
    struct tp_tls_creds *tls;
    struct tp_tls_creds *_Atomic tls_next;
};

struct tp_listener {
    uv_tcp_t tcp;
    tp_endpoint_t *ep;
    int fd;
    tp_addr_t addr;
};

struct tp_server {
    const tp_app_t *app;
    tp_hooks_t hooks;
    tp_config_t cfg;
    tp_config_schemas_t schemas;
    const char *config_name;
    unsigned nworkers;
    tp_worker_t *workers;
    uv_loop_t loop; /* the main thread's: signals and worker joins */
    uv_signal_t sig_term, sig_int, sig_hup;
    bool stopping;
    int stop_signal;                 /* the signal that started the drain */
    atomic_uint drain_waiting;       /* workers that have not closed their listeners yet */
    struct h3_onramp *h3_onramps;    /* per configured endpoint: its QUIC groups (onramp/http3.c) */
    struct tp_tls_creds **tls_creds; /* per endpoint: the current credentials (NULL: no TLS) */
    /* TLS client configurations, loaded before the workers start and read-only after: */
    struct tp_tls_client **tls_upstreams; /* per upstream group (NULL: plain TCP) */
    struct tp_tls_client **tls_origins;   /* per endpoint: http_proxy's origin_tls (else NULL) */
};

struct tp_worker {
    tp_server_t *server;
    unsigned index;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wakeup;    /* the main thread asks for a drain or a TLS reload through it */
    atomic_int drain_req; /* set by the main thread before waking */
    uv_idle_t tls_idle;   /* runs while TLS streams have buffered bytes to hand over */
    uv_idle_t spin;       /* active: the loop polls without sleeping (runtime.busy_poll_us) */
    uint64_t busy_ns;     /* uv_hrtime() of the last read */
    uint64_t spin_ns;     /* runtime.busy_poll_us, in ns (0: no spinning) */
    struct tp_tls *tls_ready;
    tp_endpoint_t *endpoints;
    tp_listener_t *listeners;
    size_t nlisteners;
    tp_bufpool_t bufs;
    struct tp_wreq *free_wreqs;
    struct tp_group **groups; /* this worker's instance of each configured upstream group */
    struct tp_pool *pool;     /* idle kept-alive upstream connections, shared by the clients */
    struct tp_tls_saved *tls_origin_sessions; /* http_proxy: sessions with https:// origins */
    tp_conn_t *conns;                         /* intrusive list of live connections */
    size_t nconns;
    uint64_t next_id;
    bool draining;
    uv_timer_t drain_timer;
    int start_err; /* set when the worker failed to start */
};

/* A pending decision shared by a flow and the app: freed when both have let go. */
struct tp_pending {
    tp_conn_t *conn; /* NULL once the flow let go (dead, timed out, or completed) */
    bool app_done;
};

/* Why an egress attempt failed, for the HTTP answer and the log. */
typedef struct tp_failure {
    uint16_t status;   /* HTTP status to answer */
    const char *error; /* RFC 9209 error type */
    const char *rcode; /* dns_error: the DNS rcode ("NXDOMAIN", ...), static, or NULL */
    char details[160]; /* Proxy-Status details (may be empty) */
    tp_close_reason_t reason;
    bool has_alert;         /* tls_alert_received: the TLS alert the upstream sent: */
    uint8_t alert;          /* ... its number (alert-id) */
    const char *alert_name; /* ... and its RFC 8446 name (alert-message), static */
} tp_failure_t;

typedef void (*tp_egress_cb)(tp_conn_t *conn, const tp_failure_t *fail);

/* TLS on top of an upstream connection (offramp/egress.c runs the handshake). */
typedef struct tp_egress_tls {
    const struct tp_tls_client *client; /* NULL: plain TCP */
    const char *name;                   /* SNI and the name checked; NULL: the host connected to */
    struct tp_tls_saved *session;       /* where the session for resumption is kept (may be NULL) */
    uint64_t session_key;               /* ... while it has this key (tp_tls_saved_t.key) */
} tp_egress_tls_t;

/* Most addresses one upstream set-up tries (RFC 8305 attempts), and at once. */
#define TP_EGRESS_MAX_ADDRS    16
#define TP_EGRESS_MAX_ATTEMPTS 4

struct tp_egress {
    tp_conn_t *conn;
    tp_request_t *req;
    char host[256];
    uint16_t port;
    tp_addr_t addr; /* the first candidate (shown to the hook), then the address connected to */
    tp_addr_t cands[TP_EGRESS_MAX_ADDRS]; /* in Happy Eyeballs order, families interleaved */
    size_t ncands, next;
    tp_upstream_t *attempts[TP_EGRESS_MAX_ATTEMPTS]; /* connects in flight */
    size_t nattempts;
    tp_addr_t override[TP_EGRESS_MAX_ADDRS]; /* set by dns_resolve_override */
    size_t override_n;
    bool overriding;     /* dns_resolve_override is deciding: tp_egress_set_addresses() allowed */
    int last_error;      /* the libuv error of the last failed attempt */
    tp_addr_t last_addr; /* and its address */
    struct tp_dns_query *dnsq; /* a resolution in flight */
    struct tp_dns_entry *dnse; /* the cached answer used (a reference), for its extension */
    tp_egress_cb cb;
    bool resolving, connecting;
    bool deciding;       /* the egress hook's decision is awaited */
    bool dns_more;       /* only an early answer (one family) is in: the rest will follow */
    bool trusted;        /* the destination came from the operator's config, not from a client */
    tp_egress_tls_t tls; /* TLS after the connect (tls.client NULL: none) */
    bool handshaking;    /* ... which is in progress (the connect deadline covers it) */
};

/* An upstream TCP connection; allocated apart so a new one can open while the last closes. */
struct tp_upstream {
    uv_tcp_t tcp;
    tp_conn_t *conn;
    uv_connect_t connect_req;
    bool reading;
    bool eof;
    bool shut;
    tp_addr_t addr;
    char host[256]; /* the host and port it serves, for reuse between keep-alive requests */
    uint16_t port;
    struct tp_tls *tls; /* TLS over this connection (client mode), or NULL */
    /* What the TLS was made with, part of the pool key (NULL, NULL: plain TCP): the client
     * configuration, and the server name when it is not `host` (config memory). */
    const struct tp_tls_client *tls_client;
    const char *tls_name;
    bool pool_ok;   /* an http endpoint's connection to a group server: other clients may use it */
    int pool_group; /* ... of this upstream group (its keepalive settings) */
    /* While parked in the worker's pool (conn NULL): see src/offramp/pool.c. */
    struct tp_pool *pool;
    size_t pool_endpoint, pool_bucket;
    uint64_t pool_expires;
    struct tp_upstream *pool_next, *age_prev, *age_next;
};

/*
 * The client side of a connection that is not a TCP socket of ours: an HTTP/3 request stream (a
 * "flow" of an ingress connection), or the ingress connection of a QUIC session itself. Its
 * protocol moves the bytes; conn.c routes reads, writes, half-close and close through here
 * (runtime/vclient.c), so protocols above (the exchange, tunnels) see an ordinary client.
 */
typedef struct tp_vclient_ops {
    /* Takes up to `len` bytes toward the client (copied); returns how many (0 when there is no
     * room now: tp__vc_writable() says when there is), or a negative error (the client is gone). */
    ssize_t (*write)(tp_conn_t *conn, const uint8_t *p, size_t len);
    /* Everything written went: end the byte stream toward the client. */
    void (*end)(tp_conn_t *conn);
    /* `n` client bytes were handed to the protocol: the peer may send that many more. */
    void (*consumed)(tp_conn_t *conn, size_t n);
    /* The connection closes (conn->vc->ended says whether the stream ended cleanly). */
    void (*close)(tp_conn_t *conn);
    /* The connection is being freed: free the protocol's state (optional). */
    void (*free)(tp_conn_t *conn);
} tp_vclient_ops_t;

/* Client bytes that arrived while the protocol was not reading. */
typedef struct tp_vc_chunk {
    struct tp_vc_chunk *next;
    tp_buf_t *b;
    size_t len;
} tp_vc_chunk_t;

typedef struct tp_vclient {
    const tp_vclient_ops_t *ops;
    void *ctx;         /* the protocol's (an HTTP/3 stream) */
    tp_conn_t *parent; /* a flow's ingress connection (holds a reference), or NULL */
    bool session;      /* the ingress connection of a session: no bytes, no idle timeout */
    uint8_t *over;     /* bytes toward the client the transport had no room for yet */
    size_t over_off, over_len, over_cap;
    bool end_wanted, ended;           /* the protocol asked for the end; it went */
    tp_vc_chunk_t *in_head, *in_tail; /* client bytes not handed to the protocol yet */
    size_t in_bytes;
    bool in_eof; /* the client's end came after them */
    bool in_err; /* ... as a reset */
} tp_vclient_t;

/* What a protocol does with a connection's events (L4 tunnel, HTTP/1.1 proxy). */
typedef struct tp_proto {
    const char *name;
    void (*start)(tp_conn_t *conn); /* the ingress hook allowed the connection */
    /* Data or end (nread < 0, a libuv error or UV_EOF) from a side; `b` carries one reference
     * for the callee to keep or drop. */
    void (*on_client_read)(tp_conn_t *conn, tp_buf_t *b, ssize_t nread);
    void (*on_upstream_read)(tp_conn_t *conn, tp_buf_t *b, ssize_t nread);
    /* Bytes (or the EOF) landed in conn->stash while it was being filled (optional). */
    void (*on_stash)(tp_conn_t *conn);
    /* A write toward dir completed; queued[dir] is already decreased. */
    void (*on_written)(tp_conn_t *conn, int dir, int status);
    /* The server began draining: finish or close. */
    void (*on_drain)(tp_conn_t *conn);
} tp_proto_t;

struct tp_conn {
    tp_worker_t *worker;
    tp_endpoint_t *ep;
    const tp_proto_t *proto;
    tp_conn_t *prev, *next;
    uint64_t id;
    unsigned refs; /* one per open handle, plus one while not closing */
    bool closing;
    bool client_reading;
    bool client_eof;
    bool client_shut;
    uv_tcp_t client;
    uv_timer_t timer;
    tp_upstream_t *up;
    tp_addr_t peer, local;
    uint64_t start_ns;
    tp_conn_stats_t stats;
    size_t queued[2];       /* bytes written but not yet completed, per direction */
    tp_batch_t batch[2];    /* corked writes, per direction */
    uint64_t last_activity; /* uv_now() of the last byte moved */
    uint64_t last_from_client, last_from_upstream; /* uv_now() of the last byte read from each */
    uint64_t start_ms;                             /* uv_now() at accept */
    uint64_t timer_due;                            /* when the armed timer fires (0 = not armed) */
    uint64_t header_deadline;                      /* 0 = none; uv_now() based, like the others */
    uint64_t connect_deadline;
    uint64_t pending_deadline;
    uint64_t attempt_deadline; /* Happy Eyeballs: when the next connection attempt starts */
    uint64_t drain_deadline;   /* set when a drain starts: the endpoint's drain deadline */
    tp_pending_t *pending;
    void (*pending_cont)(tp_conn_t *conn, tp_decision_t d);
    bool in_decision;    /* a deciding hook is running: tp_pending_new() is allowed */
    tp_decision_t early; /* a pending decision completed before its hook returned */
    bool early_set;
    tp_egress_t egress;
    void *ext;
    tp_h1_t *h1;           /* the HTTP/1.1 server codec's state (src/h1/server.c) */
    struct tp_exchange *x; /* the HTTP exchange in progress, if any (src/http/exchange.h) */
    tp_vclient_t *vc;      /* a client side that is not a TCP socket (runtime/vclient.c), or NULL */
    tp_buf_t *stash; /* client bytes read before the protocol starts (decision, PROXY header) */
    size_t stash_len;
    bool stashing;                /* reads go into the stash's free room */
    struct tp_pp_conn *pp;        /* the PROXY protocol header the connection began with */
    struct tp_tls *tls;           /* TLS over the client connection (server mode), or NULL */
    struct tp_tls_peek *tls_peek; /* the ClientHello read before the handshake */
    char peer_str[TP_ADDR_STRLEN];
};

/* ---- runtime/conn.c ---- */
void tp__conn_accept(tp_listener_t *l);
/* Closes the connection (idempotent): handles close, then the close hook runs and it is freed. */
void tp__conn_close(tp_conn_t *conn, tp_close_reason_t reason);
/* Recomputes the timer from the deadlines; call after changing one. */
void tp__conn_rearm(tp_conn_t *conn);
void tp__conn_touch(tp_conn_t *conn);
/* Drops a reference taken for an outstanding request (refs++); frees the connection at zero. */
void tp__conn_unref(tp_conn_t *conn);
/* Starts or stops reading the client. */
void tp__conn_client_read(tp_conn_t *conn, bool on);
/* Opens an upstream handle (closing any previous one); NULL when out of memory. */
/* A new upstream socket of the family, not yet the connection's; discard or adopt it. */
tp_upstream_t *tp__upstream_new(tp_conn_t *conn, int family);
void tp__upstream_discard(tp_upstream_t *up);
/* Makes `up` the connection's upstream (closing the previous one). */
void tp__conn_upstream_adopt(tp_conn_t *conn, tp_upstream_t *up);
void tp__conn_upstream_close(tp_conn_t *conn);
void tp__conn_upstream_read(tp_conn_t *conn, bool on);
/* Half-closes the write side toward dir after the queued writes. */
void tp__conn_shutdown(tp_conn_t *conn, int dir);
/* Writes n buffers toward dir; `hold` (may be NULL) gets a reference for the write's lifetime and
 * `heap` (may be NULL) is freed after. Returns 0 or a negative tp_err_t (the conn is then closing).
 */
int tp__conn_write(tp_conn_t *conn, int dir, const uv_buf_t *bufs, unsigned n, tp_buf_t *hold,
                   char *heap);
/* Between cork and uncork (nestable), writes toward dir are collected and leave as one writev. */
void tp__conn_cork(tp_conn_t *conn, int dir);
void tp__conn_uncork(tp_conn_t *conn, int dir);
/* A read happened: the worker polls without sleeping for runtime.busy_poll_us from now. */
void tp__worker_busy(tp_worker_t *w);
/* Writes a copy of the bytes. */
int tp__conn_write_copy(tp_conn_t *conn, int dir, const char *data, size_t len);
/* Logs a hook point when tracing is on. */
void tp__conn_trace(tp_conn_t *conn, const char *hook);
/* The same with the upstream address the hook is given (egress hooks). */
void tp__conn_trace_addr(tp_conn_t *conn, const char *hook, const tp_addr_t *addr);
/* Runs a deciding hook's result: immediate decisions call cont at once, pending ones later. */
void tp__conn_decide(tp_conn_t *conn, tp_decision_t d, void (*cont)(tp_conn_t *, tp_decision_t));
/* Drops a pending decision the flow no longer waits for. */
void tp__conn_pending_release(tp_conn_t *conn);

/* Runs the ingress hook (after accept, the PROXY header, the TLS handshake). */
void tp__conn_ingress(tp_conn_t *conn);
/*
 * Makes a connection whose client side is `ops` (runtime/vclient.c). With `parent` it is a flow
 * of that ingress connection: it shares its extension, peer and endpoint, adds its statistics to
 * it when it ends, and no ingress hook runs for it (the protocol starts it: conn->proto->start).
 * Without, it is the ingress connection of a session (`tp__conn_ingress()` runs its hooks).
 * Returns NULL when out of memory.
 */
tp_conn_t *tp__conn_new_virtual(tp_endpoint_t *ep, tp_conn_t *parent, const tp_vclient_ops_t *ops,
                                void *ctx, const tp_addr_t *peer, const tp_addr_t *local);

/* ---- runtime/vclient.c ---- */
/* Writes toward a virtual client: what the transport does not take now waits (counted in
 * queued[TP_TO_CLIENT]). Returns 0 or a negative error (the client is gone). */
int tp__vc_write(tp_conn_t *conn, const uv_buf_t *bufs, unsigned n);
/* The transport has room again: what waits goes on; the protocol hears on_written. */
void tp__vc_writable(tp_conn_t *conn);
/* End the byte stream toward the client once everything waiting went. */
void tp__vc_end(tp_conn_t *conn);
/* Bytes from the client (copied into slabs), or its end (`fin`), or a reset (`reset`). */
int tp__vc_deliver(tp_conn_t *conn, const uint8_t *p, size_t len, bool fin, bool reset);
/* The protocol starts or stops reading: bytes that waited are handed over now. */
void tp__vc_read(tp_conn_t *conn, bool on);
/* The connection closes: the transport hears it, waiting bytes are dropped. */
void tp__vc_close(tp_conn_t *conn);
void tp__vc_free(tp_conn_t *conn);
/* After accept and the PROXY header: the TLS stage on a TLS endpoint, then the ingress hook. */
void tp__conn_begin(tp_conn_t *conn);

/* ---- onramp/proxy_protocol.c ---- */
/* A PROXY header, kept (with its bytes) for the connection's life. */
typedef struct tp_pp_conn {
    tp_proxy_header_t hdr;
    tp_pp_tlv_t tlvs[32];
    size_t len;
    uint8_t raw[]; /* the header's bytes: hdr's views point here */
} tp_pp_conn_t;
/* Reads and checks the PROXY header the endpoint expects, then calls tp__conn_ingress(). */
void tp__pp_start(tp_conn_t *conn);
/* Writes the PROXY header the endpoint sends upstream (egress.send_proxy_protocol), if any. */
int tp__pp_send_upstream(tp_conn_t *conn);
/* Logs "proxy protocol refused" with the reason (the caller closes). */
void tp__pp_log_refused(tp_conn_t *conn, const char *reason);

/* ---- offramp/egress.c ---- */
/* Resolves host, runs egress.handle_connection, applies the destination policy and connects
 * conn->up; cb runs with NULL on success (after handle_connection_established) or a failure. */
/* Hands the connection's upstream over (to the pool): NULL unless it is idle and clean (nothing
 * queued, not shut or at EOF). The caller owns it then; its reads are stopped by the new owner. */
tp_upstream_t *tp__conn_upstream_detach(tp_conn_t *conn);
/* Makes a detached upstream the connection's (closing the one it had). */
void tp__conn_upstream_attach(tp_conn_t *conn, tp_upstream_t *up);
/* True when the request goes to a server of a configured upstream group (the operator's choice,
 * exempt from the destination policy like an L4 endpoint's upstream). */
bool tp__request_trusted(const tp_request_t *req);
/* `tls` (may be NULL: plain TCP) is copied: a handshake follows the connect, and its failure is
 * the set-up's (502 tls_certificate_error, tls_alert_received, tls_protocol_error). */
void tp__egress_start(tp_conn_t *conn, tp_request_t *req, const char *host, size_t hostlen,
                      uint16_t port, const tp_egress_tls_t *tls, tp_egress_cb cb);
/* The connect deadline passed: fail the set-up with 504 connection_timeout. */
void tp__egress_cancel(tp_conn_t *conn);
/* The attempt delay passed: start the next Happy Eyeballs attempt. */
void tp__egress_next_attempt(tp_conn_t *conn);
/* The connection is closing: stop resolving and drop attempts in flight, silently. */
void tp__egress_abort(tp_conn_t *conn);
/* Drops what the last set-up kept (the cached DNS answer); at free and before a new set-up. */
void tp__egress_release(tp_conn_t *conn);

/* ---- onramp/tunnel.c: bytes both ways between client and conn->up ---- */
/* Starts the tunnel; `early` (may be NULL) holds client bytes already read, sent upstream first. */
void tp__tunnel_start(tp_conn_t *conn, tp_buf_t *early, const char *data, size_t len);
extern const tp_proto_t tp__tunnel_proto;

/* ---- onramp/tcp.c, h1/server.c ---- */
extern const tp_proto_t tp__tcp_proto;
extern const tp_proto_t tp__http_proxy_proto;
extern const tp_proto_t tp__pp_proto;
/* ---- onramp/http3.c ---- */
extern const tp_proto_t tp__h3_session_proto; /* a QUIC connection's ingress connection */
/* The protocol that starts once an endpoint's connection is allowed. */
const tp_proto_t *tp__onramp_proto(int type);
/* Opens the HTTP/3 endpoints of every worker (before the workers run) and closes them. */
int tp__h3_onramps_open(tp_server_t *srv);
void tp__h3_onramps_drain(tp_worker_t *w);
/* At the start of a drain: the worker's HTTP/3 endpoints refuse new connections. */
void tp__h3_onramps_refuse_new(tp_worker_t *w);
void tp__h3_onramps_free(tp_server_t *srv);
/* The address an http3 endpoint's listen address `index` got (its port when 0 was asked). */
bool tp__h3_onramp_bound(const tp_server_t *srv, size_t endpoint, size_t index, tp_addr_t *out);

/* ---- runtime/worker.c ---- */
int tp__worker_run_all(tp_server_t *srv);
void tp__worker_free_wreqs(tp_worker_t *w); /* conn.c */
void tp__h1_state_free(tp_conn_t *conn);    /* h1/server.c */
void tp__http_proxy_timeout(tp_conn_t *conn, int which);

#endif
