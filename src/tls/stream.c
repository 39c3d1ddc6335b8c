/* stream.c: TLS as a stream layer: GnuTLS over memory push/pull, fed by a socket's reads, handing
 * plaintext to the protocol in pooled slabs, with backpressure, corking and close_notify. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "runtime/log.h"
#include "tls/tls.h"

/*
 * The shape of it. GnuTLS never touches a socket: its pull function reads from `in`, the slab the
 * socket's reads land in (ciphertext, at most one slab: reading stops while the protocol does not
 * want plaintext), and its push function appends to `out`, which goes to the socket through the
 * connection's ordinary write path (tp__conn_write_raw: try_write first, queued[] accounting,
 * cork batching). Plaintext goes to the protocol exactly as a plain socket's reads would:
 * on_client_read / on_upstream_read with a slab reference, UV_EOF at close_notify (or at a bare
 * TCP EOF, which TLS 1.3 peers may send), only while the protocol reads that side.
 */

static tp_conn_t *conn_of(const tp_tls_t *t) { return t->up ? t->up->conn : t->conn; }
static int dir_of(const tp_tls_t *t) { return t->up ? TP_TO_UPSTREAM : TP_TO_CLIENT; }
static uv_stream_t *sock_of(tp_tls_t *t) {
    return t->up ? (uv_stream_t *)&t->up->tcp : (uv_stream_t *)&t->conn->client;
}
/* The protocol reads this side (tp__conn_client_read / tp__conn_upstream_read). */
static bool wanted(const tp_tls_t *t) { return t->up ? t->up->reading : t->conn->client_reading; }
/* An upstream stream still belongs to its connection (not replaced, not parked). */
static bool current(const tp_tls_t *t) {
    tp_conn_t *conn = conn_of(t);
    return conn && !conn->closing && (!t->up || conn->up == t->up);
}

gnutls_session_t tp__tls_session(const tp_tls_t *t) { return t ? t->s : NULL; }
const char *tp__tls_why(const tp_tls_t *t) { return t ? t->why : ""; }

/* ---- GnuTLS's transport ---- */

static ssize_t push_cb(gnutls_transport_ptr_t ptr, const void *data, size_t len) {
    tp_tls_t *t = ptr;
    const char *p = data;
    size_t left = len;
    while (left) {
        if (!t->out) {
            t->out = tp__buf_get(&t->worker->bufs);
            t->out_len = 0;
            if (!t->out) {
                gnutls_transport_set_errno(t->s, ENOMEM);
                return -1;
            }
        }
        size_t room = t->out->cap - t->out_len;
        if (room == 0) {
            if (tp__tls_flush(t) < 0) {
                gnutls_transport_set_errno(t->s, EPIPE);
                return -1;
            }
            continue;
        }
        size_t k = left < room ? left : room;
        memcpy(t->out->data + t->out_len, p, k);
        t->out_len += k;
        p += k;
        left -= k;
    }
    return (ssize_t)len;
}

static ssize_t pull_cb(gnutls_transport_ptr_t ptr, void *data, size_t len) {
    tp_tls_t *t = ptr;
    if (t->in_len == 0) {
        if (t->sock_eof)
            return 0;
        gnutls_transport_set_errno(t->s, EAGAIN);
        return -1;
    }
    size_t k = len < t->in_len ? len : t->in_len;
    memcpy(data, t->in->data + t->in_off, k);
    t->in_off += k;
    t->in_len -= k;
    if (t->in_len == 0)
        t->in_off = 0;
    return (ssize_t)k;
}

/* Only called when a timeout is set, which Turnpike never does (its own deadlines rule). */
static int pull_timeout_cb(gnutls_transport_ptr_t ptr, unsigned ms) {
    tp_tls_t *t = ptr;
    return t->in_len > 0 || t->sock_eof ? 1 : 0;
}

int tp__tls_flush(tp_tls_t *t) {
    if (!t->out || t->out_len == 0)
        return 0;
    tp_conn_t *conn = conn_of(t);
    tp_buf_t *b = t->out;
    size_t len = t->out_len;
    t->out = NULL;
    t->out_len = 0;
    int rc = conn && current(t) ? tp__conn_write_raw(conn, dir_of(t), b, len) : TP_ERR_CLOSED;
    tp__buf_unref(b);
    return rc;
}

/* ---- the ready list: streams whose protocol wants bytes that are already buffered ---- */

static void unschedule(tp_tls_t *t) {
    if (!t->ready)
        return;
    if (t->ready_prev)
        t->ready_prev->ready_next = t->ready_next;
    else
        t->worker->tls_ready = t->ready_next;
    if (t->ready_next)
        t->ready_next->ready_prev = t->ready_prev;
    t->ready = false;
    t->ready_next = t->ready_prev = NULL;
}

/* Resuming reads must not call the protocol from inside its own call (tp__conn_client_read is
 * called from everywhere), so buffered bytes are handed over from the worker's idle handle. */
static void schedule(tp_tls_t *t) {
    if (t->ready)
        return;
    tp_worker_t *w = t->worker;
    t->ready = true;
    t->ready_prev = NULL;
    t->ready_next = w->tls_ready;
    if (w->tls_ready)
        w->tls_ready->ready_prev = t;
    w->tls_ready = t;
    if (!uv_is_active((uv_handle_t *)&w->tls_idle))
        uv_idle_start(&w->tls_idle, tp__tls_worker_pump_cb);
}

/* ---- reading ---- */

static void pump(tp_tls_t *t);

static void sock_alloc(tp_tls_t *t, uv_buf_t *buf) {
    if (!t->in) {
        t->in = tp__buf_get(&t->worker->bufs);
        t->in_off = t->in_len = 0;
    }
    if (!t->in) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    if (t->in_off) { /* a partial record waits: move it down, read behind it */
        memmove(t->in->data, t->in->data + t->in_off, t->in_len);
        t->in_off = 0;
    }
    buf->base = t->in->data + t->in_len;
    buf->len = t->in->cap - t->in_len;
}

static void client_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    sock_alloc(((tp_conn_t *)h->data)->tls, buf);
}

static void upstream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    sock_alloc(((tp_upstream_t *)h->data)->tls, buf);
}

static void sock_read(tp_tls_t *t, bool on);

/* The protocol gets an error of the socket as it would without TLS. */
static void deliver_error(tp_tls_t *t, ssize_t err) {
    tp_conn_t *conn = conn_of(t);
    if (t->up) {
        t->up->reading = false;
        conn->proto->on_upstream_read(conn, NULL, err);
    } else {
        conn->client_reading = false;
        conn->proto->on_client_read(conn, NULL, err);
    }
}

static void hs_fail(tp_tls_t *t, int grc, const char *why);

static void on_sock_read(tp_tls_t *t, ssize_t nread) {
    tp_conn_t *conn = conn_of(t);
    if (nread == 0 || !current(t))
        return;
    if (nread > 0) {
        t->in_len += (size_t)nread;
        tp__conn_touch(conn);
        if (t->up) {
            conn->stats.bytes_from_upstream += (uint64_t)nread;
            conn->last_from_upstream = conn->last_activity;
        } else {
            conn->stats.bytes_from_client += (uint64_t)nread;
            conn->last_from_client = conn->last_activity;
        }
    } else {
        sock_read(t, false);
        if (nread != UV_EOF) {
            if (!t->handshaken) {
                hs_fail(t, 0,
                        t->up ? "the upstream connection failed during the handshake"
                              : "the client connection failed during the handshake");
                return;
            }
            deliver_error(t, nread);
            return;
        }
        t->sock_eof = true;
    }
    pump(t);
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tp_conn_t *conn = s->data;
    tp__worker_busy(conn->worker);
    on_sock_read(conn->tls, nread);
}

static void upstream_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tp_upstream_t *up = s->data;
    if (up->tls) {
        tp__worker_busy(up->tls->worker);
        on_sock_read(up->tls, nread);
    }
}

static void sock_read(tp_tls_t *t, bool on) {
    if (on == t->sock_reading || (on && t->sock_eof))
        return;
    if (on) {
        int rc = t->up ? uv_read_start(sock_of(t), upstream_alloc_cb, upstream_read_cb)
                       : uv_read_start(sock_of(t), client_alloc_cb, client_read_cb);
        t->sock_reading = rc == 0;
    } else {
        uv_read_stop(sock_of(t));
        t->sock_reading = false;
    }
}

void tp__tls_read(tp_tls_t *t, bool on) {
    if (!t->handshaken || t->failed)
        return; /* the handshake reads on its own */
    if (!on) {
        sock_read(t, false);
        return;
    }
    if (t->in_len || t->sock_eof || gnutls_record_check_pending(t->s))
        schedule(t);
    else
        sock_read(t, true);
}

/* A fatal error after the handshake: the alert GnuTLS suggests, a log line, the end. */
static void stream_fail(tp_tls_t *t, int grc) {
    tp_conn_t *conn = conn_of(t);
    t->failed = true;
    t->gnutls_err = grc;
    snprintf(t->why, sizeof(t->why), "%s", gnutls_strerror(grc));
    gnutls_alert_send_appropriate(t->s, grc);
    tp__tls_flush(t);
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "tls error");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "side", t->up ? "upstream" : "client");
    tp__log_str(&l, "reason", t->why);
    tp__log_end(&l);
    if (t->up) { /* the exchange answers (502) or ends as for a failed upstream socket */
        sock_read(t, false);
        deliver_error(t, UV_EPROTO);
        return;
    }
    tp__conn_close(conn, TP_CLOSE_TLS_ERROR);
}

static void deliver_eof(tp_tls_t *t) {
    tp_conn_t *conn = conn_of(t);
    sock_read(t, false);
    if (t->up) {
        t->up->eof = true;
        t->up->reading = false;
        conn->proto->on_upstream_read(conn, NULL, UV_EOF);
    } else {
        conn->client_eof = true;
        conn->client_reading = false;
        conn->proto->on_client_read(conn, NULL, UV_EOF);
    }
}

/* Client mode: keeps this connection's session for the next one to the server, once it can be
 * resumed (TLS 1.2: after the handshake; TLS 1.3: once a NewSessionTicket came, which is after
 * the handshake, with the first records or while the connection is parked). */
static void save_session(tp_tls_t *t) {
    if (!t->saved || t->saved_done || !t->handshaken || t->saved->key != t->saved_key)
        return; /* not kept, done, too early, or the slot went to another origin */
    if (gnutls_protocol_get_version(t->s) == GNUTLS_TLS1_3 &&
        !(gnutls_session_get_flags(t->s) & GNUTLS_SFLAGS_SESSION_TICKET))
        return; /* without the flag, get_data2 would wait for a ticket */
    gnutls_datum_t d = {NULL, 0};
    if (gnutls_session_get_data2(t->s, &d) < 0 || d.size == 0) {
        gnutls_free(d.data);
        return;
    }
    uint8_t *copy = malloc(d.size);
    if (copy) {
        memcpy(copy, d.data, d.size);
        tp__tls_saved_free(t->saved);
        t->saved->data = copy;
        t->saved->len = d.size;
        t->saved_done = true;
    }
    gnutls_free(d.data);
}

/* Decrypts what `in` holds into slabs for the protocol while it wants them. */
static void pump_records(tp_tls_t *t) {
    tp_conn_t *conn = conn_of(t);
    for (;;) {
        if (!current(t) || t->failed)
            return;
        if (!wanted(t)) {
            sock_read(t, false);
            return;
        }
        char *dst;
        size_t cap;
        tp_buf_t *slab = NULL;
        bool stash = !t->up && conn->stashing && conn->stash;
        if (stash) { /* a pending ingress decision keeps the first plaintext in one slab */
            dst = conn->stash->data + conn->stash_len;
            cap = conn->stash->cap - conn->stash_len;
            if (cap == 0) {
                tp__conn_client_read(conn, false);
                return;
            }
        } else {
            if (!(slab = tp__buf_get(&t->worker->bufs))) {
                tp__conn_close(conn, TP_CLOSE_INTERNAL);
                return;
            }
            dst = slab->data;
            cap = slab->cap;
        }
        size_t got = 0;
        ssize_t r = 0;
        size_t left = t->in_len;
        while (got < cap) {
            r = gnutls_record_recv(t->s, dst + got, cap - got);
            if (r > 0) {
                got += (size_t)r;
            } else if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && t->in_len &&
                       t->in_len != left) {
                /* A post-handshake message (TLS 1.3 NewSessionTicket, KeyUpdate) was handled
                 * and GnuTLS says "again" although records wait behind it: go on with them. */
                left = t->in_len;
            } else if (r == GNUTLS_E_REHANDSHAKE) {
                /* TLS 1.2 renegotiation is refused, politely (RFC 5746 leaves it to us). */
                gnutls_alert_send(t->s, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
            } else if (r < 0 && r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED &&
                       !gnutls_error_is_fatal((int)r)) {
                continue; /* a warning alert */
            } else {
                break;
            }
        }
        if (t->up)
            save_session(t);
        if (tp__tls_flush(t) < 0 || !current(t)) { /* alerts, KeyUpdate answers */
            if (slab)
                tp__buf_unref(slab);
            return;
        }
        if (got > 0) {
            if (stash) {
                conn->stash_len += got;
                if (conn->proto->on_stash)
                    conn->proto->on_stash(conn);
            } else if (t->up) {
                conn->proto->on_upstream_read(conn, slab, (ssize_t)got);
            } else {
                conn->proto->on_client_read(conn, slab, (ssize_t)got);
            }
            if (got == cap || r > 0)
                continue; /* the slab filled up: more may be decrypted */
        } else if (slab) {
            tp__buf_unref(slab);
        }
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            if (current(t) && wanted(t))
                sock_read(t, true); /* ciphertext needed */
            return;
        }
        if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION) {
            /* close_notify, or a TCP EOF without it: the end of the plaintext. Data delivered just
             * before goes first; GnuTLS keeps saying 0 so the loop comes back here. */
            if (got > 0)
                continue;
            if (current(t) && wanted(t))
                deliver_eof(t);
            return;
        }
        if (r < 0 && current(t)) {
            stream_fail(t, (int)r);
            return;
        }
    }
}

static void handshake(tp_tls_t *t);

static void pump(tp_tls_t *t) {
    if (!current(t) || t->failed)
        return;
    if (!t->handshaken)
        handshake(t);
    else
        pump_records(t);
}

void tp__tls_worker_pump_cb(uv_idle_t *h) { tp__tls_worker_pump(h->data); }

void tp__tls_worker_pump(tp_worker_t *w) {
    /* A bounded round: streams scheduled while it runs wait for the next one. */
    size_t n = 0;
    for (tp_tls_t *t = w->tls_ready; t; t = t->ready_next)
        n++;
    while (n-- && w->tls_ready) {
        tp_tls_t *t = w->tls_ready;
        unschedule(t);
        pump(t);
    }
    if (!w->tls_ready)
        uv_idle_stop(&w->tls_idle);
}

/* ---- the handshake ---- */

static const char *version_name(unsigned v) {
    switch (v) {
    case 0x0304: return "TLS1.3";
    case 0x0303: return "TLS1.2";
    case 0x0302: return "TLS1.1";
    case 0x0301: return "TLS1.0";
    case 0x0300: return "SSL3.0";
    }
    return "an unknown version";
}

static unsigned min_version(const tp_tls_creds_t *c) {
    return c->cfg->tls.min_version == TP_TLS_V1_2 ? 0x0303 : 0x0304;
}

static void hs_fail(tp_tls_t *t, int grc, const char *why) {
    tp_conn_t *conn = conn_of(t);
    t->failed = true;
    t->gnutls_err = grc;
    if (why) {
        snprintf(t->why, sizeof(t->why), "%s", why);
    } else if (grc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        snprintf(t->why, sizeof(t->why), "the %s sent a fatal alert: %s",
                 t->up ? "upstream" : "client", gnutls_alert_get_name(gnutls_alert_get(t->s)));
    } else if (grc == GNUTLS_E_PREMATURE_TERMINATION) {
        snprintf(t->why, sizeof(t->why), "the %s closed the connection during the handshake",
                 t->up ? "upstream" : "client");
    } else if (t->creds && t->offered_version < min_version(t->creds)) {
        /* GnuTLS says "no cipher suites" for this; the ClientHello tells the real story. */
        snprintf(t->why, sizeof(t->why),
                 "no TLS version in common: the client offers at most %s, the minimum is %s",
                 version_name(t->offered_version), version_name(min_version(t->creds)));
    } else if (grc == GNUTLS_E_NO_CERTIFICATE_FOUND || grc == GNUTLS_E_CERTIFICATE_REQUIRED) {
        snprintf(t->why, sizeof(t->why), "client certificate required but none was sent");
    } else if (grc == GNUTLS_E_CERTIFICATE_ERROR ||
               grc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        if (!t->why[0])
            snprintf(t->why, sizeof(t->why), "peer certificate refused: %s", gnutls_strerror(grc));
    } else if (grc == GNUTLS_E_NO_CIPHER_SUITES || grc == GNUTLS_E_INSUFFICIENT_CREDENTIALS ||
               grc == GNUTLS_E_NO_COMMON_KEY_SHARE || grc == GNUTLS_E_UNKNOWN_CIPHER_SUITE) {
        snprintf(t->why, sizeof(t->why), "no cipher suite or group in common with the profile (%s)",
                 gnutls_strerror(grc));
    } else {
        snprintf(t->why, sizeof(t->why), "%s", gnutls_strerror(grc));
    }
    if (grc < 0 && grc != GNUTLS_E_FATAL_ALERT_RECEIVED && grc != GNUTLS_E_PREMATURE_TERMINATION)
        gnutls_alert_send_appropriate(t->s, grc);
    tp__tls_flush(t);
    sock_read(t, false);
    if (current(t))
        t->done(conn, t, TP_ERR_PROTOCOL);
}

static void handshake(tp_tls_t *t) {
    tp_conn_t *conn = conn_of(t);
    for (;;) {
        int rc = gnutls_handshake(t->s);
        if (tp__tls_flush(t) < 0 || !current(t))
            return;
        if (rc == 0) {
            t->handshaken = true;
            if (t->up)
                save_session(t);
            sock_read(t, false); /* from now on the protocol says when to read */
            t->done(conn, t, 0);
            return;
        }
        if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
            sock_read(t, true);
            return;
        }
        if (!gnutls_error_is_fatal(rc))
            continue; /* a warning alert */
        hs_fail(t, rc, NULL);
        return;
    }
}

/* The verification of a client's certificate or raw key (server mode), run by GnuTLS during the
 * handshake. Required client auth refuses here; optional keeps the result for the hooks. */
static int verify_cb(gnutls_session_t s) {
    tp_tls_t *t = gnutls_session_get_ptr(s);
    if (!t || !t->creds)
        return 0;
    const tp_tls_creds_t *c = t->creds;
    bool required = c->cfg->tls.client_auth == TP_TLS_AUTH_REQUIRED;
    unsigned n = 0;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &n);
    if (!peers || n == 0)
        return 0; /* nothing sent: GNUTLS_CERT_REQUIRE refuses that by itself */
    if (gnutls_certificate_type_get2(s, GNUTLS_CTYPE_PEERS) == GNUTLS_CRT_RAWPK) {
        uint8_t fp[32];
        gnutls_hash_fast(GNUTLS_DIG_SHA256, peers[0].data, peers[0].size, fp);
        t->peer_key_listed = false;
        for (size_t i = 0; i < c->npeer_keys && !t->peer_key_listed; i++)
            t->peer_key_listed = memcmp(fp, c->peer_keys[i], 32) == 0;
        t->verify_status = t->peer_key_listed ? 0 : GNUTLS_CERT_INVALID;
        if (!t->peer_key_listed && required) {
            snprintf(t->why, sizeof(t->why),
                     "client raw public key refused: not in raw_public_key.peers");
            return -1;
        }
        return 0;
    }
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(s, &status) < 0)
        status = GNUTLS_CERT_INVALID;
    t->verify_status = status;
    if (status && required) {
        gnutls_datum_t text = {NULL, 0};
        gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
        snprintf(t->why, sizeof(t->why), "client certificate refused: %s",
                 text.data ? (const char *)text.data : "not trusted");
        gnutls_free(text.data);
        return -1;
    }
    return 0;
}

static tp_tls_t *stream_new(tp_conn_t *conn, tp_upstream_t *up, unsigned flags,
                            tp_tls_done_cb done) {
    tp_tls_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (gnutls_init(&t->s, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
        free(t);
        return NULL;
    }
    t->conn = conn;
    t->up = up;
    t->worker = conn->worker;
    t->done = done;
    gnutls_handshake_set_timeout(t->s, 0); /* the connection's deadlines rule */
    gnutls_transport_set_ptr(t->s, t);
    gnutls_transport_set_push_function(t->s, push_cb);
    gnutls_transport_set_pull_function(t->s, pull_cb);
    gnutls_transport_set_pull_timeout_function(t->s, pull_timeout_cb);
    gnutls_session_set_ptr(t->s, t);
    return t;
}

int tp__tls_server_start(tp_conn_t *conn, tp_tls_creds_t *creds, const tp_tls_cert_t *cert,
                         tp_buf_t *in, size_t in_len, unsigned offered_version,
                         tp_tls_done_cb done) {
    const tp_tls_cfg_t *cfg = &creds->cfg->tls;
    tp_tls_t *t =
        stream_new(conn, NULL, GNUTLS_SERVER | (creds->rpk ? GNUTLS_ENABLE_RAWPK : 0), done);
    int rc = t ? 0 : TP_ERR_NOMEM;
    if (rc == 0 && (gnutls_priority_set(t->s, creds->prio) < 0 ||
                    gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, cert->cred) < 0))
        rc = TP_ERR_IO;
    if (rc == 0 && cfg->client_auth != TP_TLS_AUTH_NONE) {
        gnutls_certificate_server_set_request(t->s, cfg->client_auth == TP_TLS_AUTH_REQUIRED
                                                        ? GNUTLS_CERT_REQUIRE
                                                        : GNUTLS_CERT_REQUEST);
        gnutls_session_set_verify_function(t->s, verify_cb);
    }
    if (rc == 0 && creds->tickets) {
        gnutls_datum_t key = {(unsigned char *)creds->ticket_key, sizeof(creds->ticket_key)};
        if (gnutls_session_ticket_enable_server(t->s, &key) < 0)
            rc = TP_ERR_IO;
        gnutls_db_set_cache_expiration(t->s, (int)(cfg->ticket_lifetime / 1000));
    }
    if (rc == 0 && creds->nalpn &&
        gnutls_alpn_set_protocols(t->s, creds->alpn, (unsigned)creds->nalpn,
                                  GNUTLS_ALPN_SERVER_PRECEDENCE) < 0)
        rc = TP_ERR_IO;
    if (rc != 0) {
        if (t) {
            gnutls_deinit(t->s);
            free(t);
        }
        if (in)
            tp__buf_unref(in);
        return rc;
    }
    t->creds = tp__tls_creds_ref(creds);
    t->offered_version = offered_version;
    t->in = in;
    t->in_len = in ? in_len : 0;
    conn->tls = t;
    handshake(t);
    return 0;
}

int tp__tls_client_start(tp_conn_t *conn, tp_upstream_t *up, const tp_tls_client_params_t *p,
                         tp_tls_done_cb done) {
    unsigned flags = GNUTLS_CLIENT;
#if GNUTLS_VERSION_NUMBER >= 0x030800
    if (p->no_status_request)
        flags |= GNUTLS_NO_STATUS_REQUEST;
#endif
    tp_tls_t *t = stream_new(conn, up, flags, done);
    if (!t)
        return TP_ERR_NOMEM;
    int rc = 0;
    if ((p->prio ? gnutls_priority_set(t->s, p->prio) : gnutls_set_default_priority(t->s)) < 0 ||
        gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, p->cred) < 0)
        rc = TP_ERR_IO;
    if (rc == 0 && p->server_name) {
        /* SNI carries DNS names only (RFC 6066 3); an IP is checked against IP SANs. */
        struct in6_addr a6;
        struct in_addr a4;
        bool ip = inet_pton(AF_INET, p->server_name, &a4) == 1 ||
                  inet_pton(AF_INET6, p->server_name, &a6) == 1;
        if (!ip && gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, p->server_name,
                                          strlen(p->server_name)) < 0)
            rc = TP_ERR_IO;
        if (p->verify)
            gnutls_session_set_verify_cert(t->s, p->server_name, 0);
    } else if (rc == 0 && p->verify) {
        gnutls_session_set_verify_cert(t->s, NULL, 0);
    }
    if (rc == 0 && p->nalpn && gnutls_alpn_set_protocols(t->s, p->alpn, (unsigned)p->nalpn, 0) < 0)
        rc = TP_ERR_IO;
    if (rc == 0 && p->session && p->session->data && p->session->key == p->session_key)
        gnutls_session_set_data(t->s, p->session->data, p->session->len); /* stale: a full one */
    if (rc != 0) {
        gnutls_deinit(t->s);
        free(t);
        return rc;
    }
    t->saved = p->session;
    t->saved_key = p->session_key;
    up->tls = t;
    handshake(t);
    return 0;
}

/* ---- parked in the worker's pool ---- */

/* A parked connection holds no read slab while it has no ciphertext waiting (bounded memory:
 * up to TP_POOL_MAX_IDLE of them per worker). */
static void release_idle_in(tp_tls_t *t) {
    if (t->in && t->in_len == 0) {
        tp__buf_unref(t->in);
        t->in = NULL;
        t->in_off = 0;
    }
}

bool tp__tls_park(tp_tls_t *t) {
    if (!t->handshaken || t->failed || t->bye_sent || t->sock_eof || t->in_len ||
        (t->out && t->out_len) || gnutls_record_check_pending(t->s))
        return false;
    unschedule(t);
    t->sock_reading = false; /* the pool reads the socket now */
    release_idle_in(t);
    return true;
}

/* close_notify with one try to write it: the connection is going away. */
static void bye_once(tp_tls_t *t) {
    t->bye_sent = true;
    gnutls_bye(t->s, GNUTLS_SHUT_WR);
    if (t->out && t->out_len) {
        uv_buf_t b = uv_buf_init(t->out->data, (unsigned)t->out_len);
        uv_try_write(sock_of(t), &b, 1);
        t->out_len = 0;
    }
}

void tp__tls_park_bye(tp_tls_t *t) {
    if (!t->handshaken || t->failed || t->bye_sent)
        return;
    bye_once(t);
}

void tp__tls_idle_alloc(tp_tls_t *t, uv_buf_t *buf) { sock_alloc(t, buf); }

int tp__tls_idle_input(tp_tls_t *t, ssize_t nread) {
    if (nread < 0) {
        t->sock_eof = nread == UV_EOF;
        return TP_ERR_CLOSED;
    }
    t->in_len += (size_t)nread;
    for (;;) {
        char sink[512]; /* anything decrypted ends the connection: its content does not matter */
        size_t left = t->in_len;
        ssize_t r = gnutls_record_recv(t->s, sink, sizeof(sink));
        if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && t->in_len && t->in_len != left)
            continue; /* a post-handshake message was handled; more records wait */
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            break;
        if (r < 0 && r != GNUTLS_E_REHANDSHAKE && !gnutls_error_is_fatal((int)r))
            continue;     /* a warning alert */
        t->failed = true; /* data, close_notify, an alert or a renegotiation: not reusable */
        return r > 0 ? TP_ERR_PROTOCOL : TP_ERR_CLOSED;
    }
    save_session(t);
    release_idle_in(t);
    if (t->out && t->out_len) { /* a KeyUpdate's answer: one try, all of it, or the end */
        uv_buf_t b = uv_buf_init(t->out->data, (unsigned)t->out_len);
        int w = uv_try_write(sock_of(t), &b, 1);
        bool all = w == (int)t->out_len;
        t->out_len = 0;
        if (!all) {
            t->failed = true;
            return TP_ERR_IO;
        }
    }
    return 0;
}

/* ---- writing and closing ---- */

/*
 * Small writes gather here while the connection is corked (or when one call writes several
 * buffers), and are sealed as one record at uncork: an HTTP head and a small body leave as one
 * record, one AEAD pass, not two. Our own buffer, not gnutls_record_cork(): GnuTLS 3.7's uncork
 * skips the KeyUpdate answer a peer asked for, which must go before our next data (RFC 8446
 * 4.6.3). Bigger writes are encrypted at once (no extra copy); what was gathered goes first.
 */
#define TLS_GATHER_MAX 16384

/* Encrypts len bytes at p into t->out; 0 or a negative tp_err_t. */
static int seal(tp_tls_t *t, const char *p, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t r = gnutls_record_send(t->s, p + off, len - off);
        if (r <= 0)
            return TP_ERR_IO;
        off += (size_t)r;
    }
    return 0;
}

/* Seals what was gathered; 0 or a negative tp_err_t. */
static int seal_gathered(tp_tls_t *t) {
    if (!t->gather)
        return 0;
    tp_buf_t *g = t->gather;
    size_t len = t->gather_len;
    t->gather = NULL;
    t->gather_len = 0;
    int rc = seal(t, g->data, len);
    tp__buf_unref(g);
    return rc;
}

int tp__tls_uncork(tp_tls_t *t) {
    int rc = t->failed ? 0 : seal_gathered(t);
    if (rc < 0) {
        tp_conn_t *conn = conn_of(t);
        t->failed = true;
        if (conn && !conn->closing)
            tp__conn_close(conn, TP_CLOSE_TLS_ERROR);
        return rc;
    }
    return tp__tls_flush(t);
}

int tp__tls_write(tp_tls_t *t, const uv_buf_t *bufs, unsigned n, char *heap) {
    tp_conn_t *conn = conn_of(t);
    int rc = !t->handshaken || t->failed || t->bye_sent ? TP_ERR_STATE : 0;
    bool corked = tp__conn_corked(conn, dir_of(t));
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (rc == 0 && t->gather && t->gather_len + total > t->gather->cap)
        rc = seal_gathered(t); /* what was gathered goes first, in its own record */
    if (rc == 0 && !t->gather && total < TLS_GATHER_MAX && (n > 1 || corked)) {
        t->gather = tp__buf_get(&t->worker->bufs);
        t->gather_len = 0;
        if (t->gather && t->gather->cap < total) {
            tp__buf_unref(t->gather);
            t->gather = NULL;
        }
    }
    for (unsigned i = 0; i < n && rc == 0; i++) {
        if (t->gather) {
            memcpy(t->gather->data + t->gather_len, bufs[i].base, bufs[i].len);
            t->gather_len += bufs[i].len;
        } else {
            rc = seal(t, bufs[i].base, bufs[i].len);
        }
    }
    if (rc < 0 && conn->closing)
        rc = TP_ERR_CLOSED;
    free(heap); /* encrypted or copied: the plaintext is not needed any more */
    if (rc == 0 && !corked)
        rc = tp__tls_uncork(t);
    if (rc < 0 && !conn->closing)
        tp__conn_close(conn, rc == TP_ERR_NOMEM ? TP_CLOSE_INTERNAL : TP_CLOSE_TLS_ERROR);
    return rc;
}

void tp__tls_shutdown(tp_tls_t *t) {
    if (!t->handshaken || t->failed || t->bye_sent)
        return;
    t->bye_sent = true;
    if (seal_gathered(t) < 0) { /* the gathered plaintext goes before close_notify */
        t->failed = true;
        return;
    }
    gnutls_bye(t->s, GNUTLS_SHUT_WR); /* never waits: the push always takes the bytes */
    tp__tls_flush(t);
}

void tp__tls_close_notify(tp_tls_t *t) {
    tp_conn_t *conn = conn_of(t);
    if (!t->handshaken || t->failed || t->bye_sent || !conn || conn->queued[dir_of(t)] ||
        tp__conn_corked(conn, dir_of(t)) || t->gather)
        return;
    bye_once(t);
}

void tp__tls_free(tp_tls_t *t) {
    if (!t)
        return;
    unschedule(t);
    gnutls_deinit(t->s);
    if (t->in)
        tp__buf_unref(t->in);
    if (t->out)
        tp__buf_unref(t->out);
    if (t->gather)
        tp__buf_unref(t->gather);
    tp__tls_creds_unref(t->creds);
    free(t->info_mem);
    free(t);
}
