/* tls.c: the TLS on-ramp stage: read the ClientHello, run the SNI peek hook, then the handshake. */
#include <stdlib.h>
#include <string.h>

#include "runtime/log.h"
#include "tls/client_hello.h"
#include "tls/tls.h"

/* The ClientHello read before GnuTLS sees it; kept (small) until the connection is freed. */
struct tp_tls_peek {
    tp_tls_client_hello_t hello; /* views into the stash or `scratch` until the handshake starts */
    uint8_t *scratch;            /* reassembly of a ClientHello split across records */
    bool complete;
    bool started; /* the handshake started: the views are gone */
    char sni[256];
    size_t sni_len;
};

static void log_failed(tp_conn_t *conn, const char *reason) {
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "tls handshake failed");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "endpoint", conn->ep->cfg->name);
    tp__log_str(&l, "peer", conn->peer_str);
    if (conn->tls_peek && conn->tls_peek->sni_len)
        tp__log_strn(&l, "sni", conn->tls_peek->sni, conn->tls_peek->sni_len);
    tp__log_str(&l, "reason", reason);
    tp__log_end(&l);
}

static void refuse(tp_conn_t *conn, const char *reason) {
    log_failed(conn, reason);
    tp__conn_close(conn, TP_CLOSE_TLS_HANDSHAKE);
}

static void handshake_done(tp_conn_t *conn, tp_tls_t *t, int rc) {
    if (conn->closing)
        return;
    if (rc < 0) {
        refuse(conn, tp__tls_why(t));
        return;
    }
    conn->header_deadline = 0;
    struct tp_tls_peek *pk = conn->tls_peek;
    tp__tls_info_fill(t, (tp_str_t){pk->sni, pk->sni_len});
    tp__conn_ingress(conn); /* the ingress hook sees the session (tp_conn_tls) */
}

static void hello_decided(tp_conn_t *conn, tp_decision_t d) {
    if (conn->closing)
        return;
    struct tp_tls_peek *pk = conn->tls_peek;
    if (d.verdict != TP_VERDICT_ALLOW) {
        tp__log_msg(TP_LOG_INFO, "connection blocked",
                    "conn %llu by ingress.handle_tls_client_hello", (unsigned long long)conn->id);
        tp__conn_close(conn, TP_CLOSE_BLOCKED);
        return;
    }
    tp_tls_creds_t *creds = conn->ep->tls;
    const tp_tls_cert_t *cert = tp__tls_creds_pick(creds, pk->hello.sni);
    /* The bytes read so far become the stream's first ciphertext. */
    tp_buf_t *in = conn->stash;
    size_t len = conn->stash_len;
    conn->stash = NULL;
    conn->stash_len = 0;
    pk->started = true;
    unsigned offered = pk->hello.max_version;
    free(pk->scratch);
    pk->scratch = NULL;
    memset(&pk->hello, 0, sizeof(pk->hello));
    pk->hello.max_version = (uint16_t)offered;
    if (!cert || tp__tls_server_start(conn, creds, cert, in, len, offered, handshake_done) != 0) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
}

/* Parses what the stash holds; acts once the ClientHello is complete or broken. */
static void try_parse(tp_conn_t *conn) {
    struct tp_tls_peek *pk = conn->tls_peek;
    const char *reason = NULL;
    const uint8_t *b = (const uint8_t *)conn->stash->data;
    int rc = tp__tls_hello_parse(b, conn->stash_len, pk->scratch,
                                 pk->scratch ? conn->stash->cap : 0, &pk->hello, &reason);
    if (rc == TP_ERR_TOO_LARGE && !pk->scratch) {
        /* Split across records: reassemble (the message cannot be longer than the stash). */
        if (!(pk->scratch = malloc(conn->stash->cap))) {
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            return;
        }
        rc = tp__tls_hello_parse(b, conn->stash_len, pk->scratch, conn->stash->cap, &pk->hello,
                                 &reason);
    }
    if (rc < 0) {
        refuse(conn, reason ? reason : tp_strerror(rc));
        return;
    }
    if (rc == 0) {
        if (conn->client_eof)
            refuse(conn, "the client closed before a complete ClientHello");
        else if (conn->stash_len == conn->stash->cap)
            refuse(conn, "ClientHello larger than the read buffer (runtime.buffer_size)");
        return; /* more bytes to come */
    }
    pk->complete = true;
    tp__conn_client_read(conn, false);
    conn->stashing = false;
    if (pk->hello.sni.len < sizeof(pk->sni)) {
        memcpy(pk->sni, pk->hello.sni.ptr ? pk->hello.sni.ptr : "", pk->hello.sni.len);
        pk->sni_len = pk->hello.sni.len;
    }
    tp_server_t *srv = conn->worker->server;
    tp__conn_trace(conn, "ingress.handle_tls_client_hello");
    tp_decision_t d = tp_allow();
    if (srv->hooks.ingress.handle_tls_client_hello) {
        conn->in_decision = true;
        d = srv->hooks.ingress.handle_tls_client_hello(srv->hooks.ingress.self, conn, &pk->hello);
        conn->in_decision = false;
    }
    tp__conn_decide(conn, d, hello_decided);
    tp__conn_rearm(conn);
}

void tp__tls_onramp_start(tp_conn_t *conn) {
    if (!conn->tls_peek && !(conn->tls_peek = calloc(1, sizeof(*conn->tls_peek)))) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    conn->proto = &tp__tls_proto;
    conn->header_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->tls.handshake_timeout;
    tp__conn_rearm(conn);
    conn->stashing = true;
    if (conn->stash && conn->stash_len) { /* bytes that came after a PROXY header */
        try_parse(conn);
        if (conn->closing || conn->tls_peek->complete)
            return;
    } else if (conn->client_eof) {
        refuse(conn, "the client closed before sending a ClientHello");
        return;
    }
    tp__conn_client_read(conn, true);
}

void tp__tls_onramp_timeout(tp_conn_t *conn) {
    struct tp_tls_peek *pk = conn->tls_peek;
    conn->stats.reason = TP_CLOSE_TLS_HANDSHAKE_TIMEOUT; /* wins over refuse()'s reason */
    refuse(conn, pk && pk->started ? "the handshake did not finish within tls.handshake_timeout"
                                   : "no complete ClientHello within tls.handshake_timeout");
}

void tp__tls_peek_free(tp_conn_t *conn) {
    if (!conn->tls_peek)
        return;
    free(conn->tls_peek->scratch);
    free(conn->tls_peek);
    conn->tls_peek = NULL;
}

const tp_tls_client_hello_t *tp_conn_tls_client_hello(const tp_conn_t *conn) {
    return conn && conn->tls_peek && conn->tls_peek->complete && !conn->tls_peek->started
               ? &conn->tls_peek->hello
               : NULL;
}

/* Raw reads while the ClientHello is awaited: the first slab becomes the stash. */
static void on_client_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (nread > 0) {
        conn->stash = b;
        conn->stash_len = (size_t)nread;
        if (conn->stash_len == b->cap)
            tp__conn_client_read(conn, false);
        try_parse(conn);
    } else if (nread == UV_EOF) {
        refuse(conn, "the client closed before sending a ClientHello");
    } else {
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
    }
}

static void on_stash(tp_conn_t *conn) {
    if (conn->closing || conn->tls_peek->complete)
        return;
    try_parse(conn);
}

static void on_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (b)
        tp__buf_unref(b);
}

static void on_written(tp_conn_t *conn, int dir, int status) {
    if (status != 0 && dir == TP_TO_CLIENT)
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
}

static void on_drain(tp_conn_t *conn) { tp__conn_close(conn, TP_CLOSE_SHUTDOWN); }

const tp_proto_t tp__tls_proto = {
    .name = "tls",
    .on_client_read = on_client_read,
    .on_upstream_read = on_upstream_read,
    .on_stash = on_stash,
    .on_written = on_written,
    .on_drain = on_drain,
};
