/* tls.h: the TLS layer's private API: endpoint credentials, and a GnuTLS session that runs as a
 * transparent stream layer under either side of a connection (client: server mode; upstream:
 * client mode). */
#ifndef TP_TLS_TLS_H
#define TP_TLS_TLS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "runtime/core.h"

/* ---- creds.c: what an endpoint serves, loaded once and shared read-only by the workers ---- */

/* One certificate chain (or only the raw public key) and the DNS names SNI matches it by. */
typedef struct tp_tls_cert {
    gnutls_certificate_credentials_t cred;
    char **names; /* lower-case DNS names from the leaf's SANs (or its CN); "*.x" = wildcard */
    size_t nnames;
} tp_tls_cert_t;

/*
 * An endpoint's TLS credentials. Made on the main thread (at start-up and on SIGHUP), then only
 * read; every session holds a reference, so a reload never pulls credentials from under a
 * connection: the old set is freed with its last session. The reference count is atomic because
 * the main thread and the workers drop references.
 */
typedef struct tp_tls_creds {
    atomic_uint refs;
    const tp_endpoint_cfg_t *cfg;
    tp_tls_cert_t *certs; /* SNI candidates, in configured order (the first is the default) */
    size_t ncerts;
    gnutls_priority_t prio;
    gnutls_datum_t alpn[16];
    size_t nalpn;
    uint8_t ticket_key[64]; /* the master key GnuTLS derives rotating ticket keys from */
    bool tickets;
    bool rpk;                 /* raw public keys negotiated (our own key, or accepted peers) */
    uint8_t (*peer_keys)[32]; /* accepted clients' raw keys: SHA-256 of their SPKI */
    size_t npeer_keys;
    unsigned generation; /* 0 at start-up, +1 per reload */
} tp_tls_creds_t;

/*
 * Loads the endpoint's credentials. `prev` (may be NULL) passes on the session ticket key, so
 * tickets issued before a reload still resume. Returns 0, or TP_ERR_CONFIG (a file missing or
 * unusable) / TP_ERR_NOMEM with a message in err.
 */
int tp__tls_creds_load(const tp_endpoint_cfg_t *cfg, const tp_tls_creds_t *prev,
                       tp_tls_creds_t **out, char *err, size_t errlen);
tp_tls_creds_t *tp__tls_creds_ref(tp_tls_creds_t *c);
void tp__tls_creds_unref(tp_tls_creds_t *c);
/* The certificate for a server name (exact, then wildcard, then the first); NULL: none at all. */
const tp_tls_cert_t *tp__tls_creds_pick(const tp_tls_creds_t *c, tp_str_t sni);
/* Logs the profile, versions and FIPS state of an endpoint at start-up. */
void tp__tls_creds_log(const tp_tls_creds_t *c, const char *msg);
/* A profile (tp_tls_profile_t) and minimum version as a GnuTLS priority cache; `rpk` adds raw
 * public key certificate types. 0, or TP_ERR_CONFIG with a message. */
int tp__tls_priority_init(gnutls_priority_t *out, int profile, int min_version, bool rpk, char *err,
                          size_t errlen);

/* ---- stream.c: a session over memory push/pull, driven by the connection's reads ---- */

typedef struct tp_tls tp_tls_t;

/* A resumable session kept for one upstream server on one worker: the last one it gave. */
typedef struct tp_tls_saved {
    uint8_t *data; /* gnutls_session_get_data2()'s bytes (malloc'd), or NULL */
    size_t len;
    uint64_t key; /* whose slot it is (origin sessions: host and port; group servers: 0) */
} tp_tls_saved_t;

/* Frees what a slot holds (the slot itself is its owner's). */
void tp__tls_saved_free(tp_tls_saved_t *s);

/* Called once when the handshake is over: rc 0, or a negative tp_err_t (see tp__tls_why()). */
typedef void (*tp_tls_done_cb)(tp_conn_t *conn, tp_tls_t *t, int rc);

struct tp_tls {
    gnutls_session_t s;
    tp_conn_t *conn;
    tp_upstream_t *up; /* NULL: the client side (server mode) */
    tp_worker_t *worker;
    tp_tls_creds_t *creds; /* server mode: a reference on the endpoint's credentials */
    tp_buf_t *in;          /* ciphertext read and not yet given to GnuTLS */
    size_t in_off, in_len;
    tp_buf_t *out; /* ciphertext GnuTLS produced, not yet written */
    size_t out_len;
    tp_tls_done_cb done;
    tp_tls_t *ready_next, *ready_prev; /* in the worker's list of streams to pump */
    bool ready;                        /* ... is in it */
    bool handshaken;
    bool sock_reading; /* the socket is being read */
    bool sock_eof;     /* the socket reached EOF */
    bool bye_sent;     /* close_notify went out */
    bool failed;       /* a fatal error: nothing more goes through GnuTLS */
    tp_buf_t *gather;  /* small writes' plaintext, sealed as one record at uncork (may be NULL) */
    size_t gather_len;
    int gnutls_err; /* the fatal GnuTLS error, for the log */
    char why[160];  /* why the handshake or the stream failed, for the log */
    /* Verification of the peer (server mode: the client's certificate or key). */
    unsigned offered_version; /* server mode: the highest version the ClientHello offered */
    unsigned verify_status;   /* gnutls_certificate_status_t bits (0: fine) */
    bool peer_key_listed;     /* a raw key found in the allow list */
    tp_tls_info_t info;       /* filled when the handshake completed */
    char *info_mem;
    /* Client mode. */
    tp_tls_saved_t *saved; /* where the session is kept for resumption (NULL: not kept) */
    uint64_t saved_key;    /* ... while the slot still has this key */
    bool saved_done;       /* ... this connection's session went there */
};

/*
 * Server mode on conn->client. `creds` gets a reference; `cert` is the one SNI picked; `in` (may
 * be NULL) holds ciphertext already read (the ClientHello), and its reference passes to the
 * stream. `offered_version` is the ClientHello's highest, for the log. The handshake starts at
 * once; `done` runs when it is over. Returns 0 or a negative tp_err_t (then nothing was taken but
 * `in`, which is released).
 */
int tp__tls_server_start(tp_conn_t *conn, tp_tls_creds_t *creds, const tp_tls_cert_t *cert,
                         tp_buf_t *in, size_t in_len, unsigned offered_version,
                         tp_tls_done_cb done);

/* What a client-mode session needs; everything is borrowed and must outlive the session. */
typedef struct tp_tls_client_params {
    gnutls_certificate_credentials_t cred; /* trust anchors (and a client certificate for mTLS) */
    gnutls_priority_t prio;                /* NULL: GnuTLS's defaults */
    const char *server_name;    /* SNI and the name the certificate must match (NULL: none) */
    bool verify;                /* verify the chain and the name (else the caller checks) */
    bool no_status_request;     /* do not ask for a stapled OCSP response (GnuTLS 3.8 and later;
                                 * before, the credentials' verify flags keep it unchecked) */
    const gnutls_datum_t *alpn; /* protocols offered (may be NULL) */
    size_t nalpn;
    /* A session to resume from, refreshed with the session this connection gets (TLS 1.2: at
     * the handshake; TLS 1.3: when the server's NewSessionTicket arrives, possibly while the
     * connection is parked). May be NULL; must outlive the stream's reads. */
    tp_tls_saved_t *session;
    uint64_t session_key; /* the slot is ours while its key is this (see tp_tls_saved_t) */
} tp_tls_client_params_t;

/*
 * Client mode on `up` (connected, and adopted as conn->up): the handshake starts at once and
 * `done` runs when it is over. Until then the protocol must not write toward the upstream; after
 * it, tp__conn_write() / tp__conn_upstream_read() carry plaintext as on a plain upstream. The
 * stream is freed with the upstream. Returns 0 or a negative tp_err_t.
 */
int tp__tls_client_start(tp_conn_t *conn, tp_upstream_t *up, const tp_tls_client_params_t *p,
                         tp_tls_done_cb done);

/* ---- a client-mode stream parked in the worker's pool (offramp/pool.c) ---- */

/* Whether the stream may be parked: handshaken, healthy, nothing buffered either way. Stops its
 * own reading (the pool reads the socket while it is parked). */
bool tp__tls_park(tp_tls_t *t);
/* The pool's alloc callback: room behind the ciphertext the stream holds. */
void tp__tls_idle_alloc(tp_tls_t *t, uv_buf_t *buf);
/* The pool read `nread` bytes (or an error/EOF) into that room. Post-handshake messages (TLS 1.3
 * NewSessionTicket, KeyUpdate) are processed and keep the connection: 0. Application data, a
 * close_notify, an alert or the socket's end: a negative tp_err_t, the pool drops it. */
int tp__tls_idle_input(tp_tls_t *t, ssize_t nread);
/* The pool drops it: close_notify, one try, best effort. */
void tp__tls_park_bye(tp_tls_t *t);

/* The GnuTLS session (for gnutls_session_get_data2() and the like), or NULL. */
gnutls_session_t tp__tls_session(const tp_tls_t *t);
/* Why the handshake or the stream failed ("" when it did not). */
const char *tp__tls_why(const tp_tls_t *t);

/* ---- the hooks into runtime/conn.c (a TLS side is a pointer; NULL means plain TCP) ---- */

/* The protocol wants plaintext from this side (on) or not; conn->client_reading or up->reading
 * is already set. */
void tp__tls_read(tp_tls_t *t, bool on);
/* Encrypts n buffers (freeing `heap` after) and writes the records; 0 or a negative tp_err_t. */
int tp__tls_write(tp_tls_t *t, const uv_buf_t *bufs, unsigned n, char *heap);
/* The ciphertext waiting in the stream goes to the socket. */
int tp__tls_flush(tp_tls_t *t);
/* At the connection's uncork: the plaintext gathered by small writes becomes records, and they go
 * to the socket with everything else encrypted meanwhile. 0 or a negative tp_err_t. */
int tp__tls_uncork(tp_tls_t *t);
/* Sends close_notify (the TLS half-close) ahead of the socket's shutdown. */
void tp__tls_shutdown(tp_tls_t *t);
/* Best effort close_notify when the connection closes with nothing queued. */
void tp__tls_close_notify(tp_tls_t *t);
void tp__tls_free(tp_tls_t *t);
/* Pumps the streams of a worker that have buffered bytes for a protocol that wants them again. */
void tp__tls_worker_pump(tp_worker_t *w);
void tp__tls_worker_pump_cb(uv_idle_t *h); /* the worker's tls_idle callback (data: worker) */

/* conn.c: writes ciphertext held in slab `b` (len bytes) toward dir as any write, honouring
 * cork; takes its own reference. */
int tp__conn_write_raw(tp_conn_t *conn, int dir, tp_buf_t *b, size_t len);
bool tp__conn_corked(const tp_conn_t *conn, int dir);

/* ---- client.c: Turnpike as a TLS client (upstream groups' tls, http_proxy's origin_tls) ---- */

/*
 * A TLS client configuration, loaded once on the main thread at start-up and only read by the
 * workers afterwards (they take no reference: it lives until the workers have stopped). Its
 * address is part of the upstream pool's key: connections made with different configurations
 * are never mixed.
 */
typedef struct tp_tls_client {
    const tp_tls_client_cfg_t *cfg;
    char what[160]; /* "upstream 'o'" or "endpoint 'p' origin_tls", for logs */
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
    gnutls_datum_t alpn[16];
    size_t nalpn;
    size_t nanchors; /* trust anchors loaded (CA file or system store) */
} tp_tls_client_t;

/* Loads `cfg` (`what` names it in errors and logs). Returns 0, or TP_ERR_CONFIG (a file missing,
 * unreadable or not PEM, a bad key) / TP_ERR_NOMEM with a message in err. */
int tp__tls_client_load(const tp_tls_client_cfg_t *cfg, const char *what, tp_tls_client_t **out,
                        char *err, size_t errlen);
void tp__tls_client_free(tp_tls_client_t *c);
/* Logs the configuration at start-up (and warns when verification is off). */
void tp__tls_client_log(const tp_tls_client_t *c);
/* The session parameters for a connection to `name` (SNI and the name checked). */
void tp__tls_client_params(const tp_tls_client_t *c, const char *name, tp_tls_saved_t *session,
                           uint64_t session_key, tp_tls_client_params_t *p);
/*
 * Why a client handshake failed, as an RFC 9209 error: tls_certificate_error (with the reason:
 * expired, not yet valid, unknown issuer, name mismatch, revoked, OCSP ...), tls_alert_received
 * (with the alert), tls_protocol_error, or connection_terminated. `name` is the name checked.
 */
void tp__tls_client_failure(const tp_tls_t *t, const char *name, tp_failure_t *f);
/* A forward proxy's sessions with https:// origins, per worker: a direct-mapped cache of this many
 * slots by host and port (a newcomer takes the slot over; a stream still holding the slot of the
 * one it replaced does not write into it). */
#define TP_TLS_ORIGIN_SESSIONS 256
/* The slot for host:port in the worker's cache (allocated on first use; NULL: out of memory). */
tp_tls_saved_t *tp__tls_origin_session(tp_worker_t *w, const char *host, size_t hostlen,
                                       uint16_t port);
void tp__tls_origin_sessions_free(tp_worker_t *w);
/* Whether a finished handshake satisfies `ocsp: require` (a valid stapled response was checked,
 * or the session was resumed from one that had). */
bool tp__tls_client_ocsp_ok(const tp_tls_t *t);

/* ---- info.c ---- */
/* Fills t->info from the finished handshake (`sni` from the ClientHello). */
void tp__tls_info_fill(tp_tls_t *t, tp_str_t sni);

/* ---- onramp/tls.c: the TLS stage after accept (and the PROXY header) ---- */
void tp__tls_onramp_start(tp_conn_t *conn);
/* timeouts.handshake passed. */
void tp__tls_onramp_timeout(tp_conn_t *conn);
/* Frees the ClientHello kept for the connection (at free). */
void tp__tls_peek_free(tp_conn_t *conn);
extern const tp_proto_t tp__tls_proto;

#endif
