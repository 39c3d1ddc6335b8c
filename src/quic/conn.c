/* conn.c: one QUIC connection: ngtcp2 set-up and callbacks, packet input, the write loop that
 * fills GSO trains, one timer from ngtcp2_conn_get_expiry, and closing, draining and freeing. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "quic/quic_int.h"

/* Bytes of ngtcp2_vec per writev_stream call: 16 chunks of 16 KiB cover a full GSO train. */
#define MAX_VECS 16

uint64_t tp__quic_now(void) { return uv_hrtime(); }

void tp__quic_addr_to_ngtcp2(ngtcp2_addr *out, const tp_addr_t *in) {
    out->addr = (ngtcp2_sockaddr *)&in->u.sa;
    out->addrlen = (ngtcp2_socklen)tp_addr_len(in);
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
    return ((tp_quic_conn_t *)ref->user_data)->q;
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
    (void)ctx;
    if (gnutls_rnd(GNUTLS_RND_RANDOM, dest, len) != 0) {
        memset(dest, 0, len); /* cannot fail in practice; never leave it uninitialised */
    }
}

/* ---- pending-stream list (round robin) ---- */

static void pend_add(tp_quic_conn_t *c, tp_quic_stream_t *s) {
    if (s->pending) {
        return;
    }
    s->pending = true;
    s->pend_next = NULL;
    s->pend_prev = c->pend_tail;
    if (c->pend_tail) {
        c->pend_tail->pend_next = s;
    } else {
        c->pend_head = s;
    }
    c->pend_tail = s;
}

static void pend_remove(tp_quic_conn_t *c, tp_quic_stream_t *s) {
    if (!s->pending) {
        return;
    }
    if (s->pend_prev) {
        s->pend_prev->pend_next = s->pend_next;
    } else {
        c->pend_head = s->pend_next;
    }
    if (s->pend_next) {
        s->pend_next->pend_prev = s->pend_prev;
    } else {
        c->pend_tail = s->pend_prev;
    }
    s->pending = false;
    s->pend_prev = s->pend_next = NULL;
}

void tp__quic_conn_stream_ready(tp_quic_conn_t *c, tp_quic_stream_t *s) {
    if (tp__quic_stream_has_unsent(s)) {
        pend_add(c, s);
    }
}

/* ---- close bookkeeping ---- */

static void count_close(tp_quic_endpoint_t *ep, const tp_quic_close_info_t *i, int kind) {
    tp_quic_stats_t *st = &ep->stats;
    switch (kind) {
    case NGTCP2_CCERR_TYPE_IDLE_CLOSE: st->close_idle_timeout++; return;
    default: break;
    }
    if (i->err == TP_ERR_TIMEOUT) {
        st->close_handshake_timeout++;
    } else if (i->err == TP_ERR_CLOSED && i->remote) {
        st->close_stateless_reset++;
    } else if (i->err == TP_ERR_REFUSED && !i->application && i->code == 0) {
        st->close_unreachable++;
    } else if (i->application) {
        st->close_application++;
    } else if (i->code == 0) {
        st->close_no_error++;
    } else if (i->code >= 0x100 && i->code <= 0x1ff) {
        st->close_tls_alert++;
    } else {
        st->close_transport_error++;
    }
}

static void handshake_over(tp_quic_conn_t *c) {
    if (c->handshake_counted) {
        c->handshake_counted = false;
        c->ep->handshakes_open--;
    }
}

/* Tells the app (once) why the connection ends, and counts it. */
static void notify_close(tp_quic_conn_t *c, tp_quic_close_info_t *info, int kind) {
    if (c->app_closed_notified) {
        return;
    }
    c->app_closed_notified = true;
    info->handshake_done =
        c->state != TP_QUIC_HANDSHAKE && ngtcp2_conn_get_handshake_completed(c->q);
    if (!ngtcp2_conn_get_handshake_completed(c->q)) {
        c->ep->stats.failed_handshakes++;
    }
    handshake_over(c);
    count_close(c->ep, info, kind);
    /* ngtcp2 does not close the streams of a closed connection: end them for the app here, so
     * it can free what it attached, before on_close. */
    for (size_t i = 0; c->streams.slots && i <= c->streams.mask; i++) {
        tp_quic_stream_t *st = c->streams.slots[i];
        if (st && c->ep->app.on_stream_close) {
            c->busy++;
            c->ep->app.on_stream_close(c, st->id, st->app_data);
            c->busy--;
        }
        if (st) {
            st->app_data = NULL;
        }
    }
    if (c->ep->app.on_close) {
        c->busy++;
        c->ep->app.on_close(c, info);
        c->busy--;
    }
}

static void info_from_ccerr(tp_quic_close_info_t *i, char *buf, size_t cap, const ngtcp2_ccerr *e,
                            bool remote) {
    memset(i, 0, sizeof(*i));
    i->remote = remote;
    i->code = e->error_code;
    i->application = e->type == NGTCP2_CCERR_TYPE_APPLICATION;
    size_t n = e->reasonlen < cap - 1 ? e->reasonlen : cap - 1;
    if (n) {
        memcpy(buf, e->reason, n);
    }
    buf[n] = '\0';
    if (n == 0 && !i->application && e->error_code >= 0x100 && e->error_code <= 0x1ff) {
        const char *name =
            gnutls_alert_get_name((gnutls_alert_description_t)(e->error_code & 0xff));
        snprintf(buf, cap, "TLS alert: %s", name ? name : "unknown");
    }
    i->reason = buf;
    switch (e->type) {
    case NGTCP2_CCERR_TYPE_APPLICATION: i->err = TP_OK; break;
    case NGTCP2_CCERR_TYPE_IDLE_CLOSE:
        i->err = TP_ERR_TIMEOUT;
        if (!n) {
            snprintf(buf, cap, "idle timeout");
        }
        break;
    case NGTCP2_CCERR_TYPE_TRANSPORT: i->err = e->error_code == 0 ? TP_OK : TP_ERR_PROTOCOL; break;
    default: i->err = TP_ERR_PROTOCOL; break;
    }
}

static void close_timer_cb(uv_timer_t *t);

/* Arms the timer to free the connection after three PTOs (closing or draining period). */
static void arm_close_timer(tp_quic_conn_t *c) {
    uint64_t ms = 3 * ngtcp2_conn_get_pto(c->q) / NGTCP2_MILLISECONDS + 1;
    uv_timer_start(&c->timer, close_timer_cb, ms, 0);
}

/* Enters the closing period with `ccerr`: writes CONNECTION_CLOSE, keeps it to answer stray
 * packets, tells the app. Never from inside an ngtcp2 callback. */
static void start_closing(tp_quic_conn_t *c, const ngtcp2_ccerr *ccerr, int err_override) {
    tp_quic_endpoint_t *ep = c->ep;
    if (c->state >= TP_QUIC_CLOSING) {
        return;
    }
    size_t cap = c->max_udp_payload ? c->max_udp_payload : 1200;
    c->close_pkt = malloc(cap);
    ngtcp2_ssize n = -1;
    ngtcp2_pkt_info pi;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    if (c->close_pkt) {
        n = ngtcp2_conn_write_connection_close(c->q, &ps.path, &pi, c->close_pkt, cap, ccerr,
                                               tp__quic_now());
    }
    char reason[256];
    tp_quic_close_info_t info;
    info_from_ccerr(&info, reason, sizeof(reason), ccerr, false);
    if (err_override) {
        info.err = err_override;
    }
    if (n > 0) {
        c->close_pkt_len = (size_t)n;
        tp_addr_t remote;
        tp_addr_t local;
        tp__quic_addr_from_sa(&remote, (const struct sockaddr *)ps.path.remote.addr);
        tp__quic_addr_from_sa(&local, (const struct sockaddr *)ps.path.local.addr);
        tp__quic_udp_send_now(&ep->udp, ep, c->close_pkt, c->close_pkt_len, &remote, &local,
                              pi.ecn);
        c->state = TP_QUIC_CLOSING;
        arm_close_timer(c);
    } else {
        c->state = TP_QUIC_DEAD;
    }
    notify_close(c, &info, ccerr->type);
}

/* Handles an error from ngtcp2_conn_read_pkt / handle_expiry / a write. */
static void conn_error(tp_quic_conn_t *c, int rv) {
    ngtcp2_ccerr ccerr;
    ngtcp2_ccerr_default(&ccerr);
    char reason[256];
    tp_quic_close_info_t info;
    switch (rv) {
    case NGTCP2_ERR_DRAINING:
        /* The peer closed (or reset) the connection: stay silent for three PTOs. */
        c->state = TP_QUIC_DRAINING;
        arm_close_timer(c);
        if (c->got_reset) {
            memset(&info, 0, sizeof(info));
            info.err = TP_ERR_CLOSED;
            info.remote = true;
            info.reason = "stateless reset";
            notify_close(c, &info, -1);
        } else {
            info_from_ccerr(&info, reason, sizeof(reason), ngtcp2_conn_get_ccerr(c->q), true);
            notify_close(c, &info, ngtcp2_conn_get_ccerr(c->q)->type);
        }
        return;
    case NGTCP2_ERR_CLOSING: return;
    case NGTCP2_ERR_IDLE_CLOSE:
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
        memset(&info, 0, sizeof(info));
        info.err = TP_ERR_TIMEOUT;
        info.reason = rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout";
        c->state = TP_QUIC_DEAD;
        notify_close(c, &info, rv == NGTCP2_ERR_IDLE_CLOSE ? NGTCP2_CCERR_TYPE_IDLE_CLOSE : -1);
        return;
    case NGTCP2_ERR_DROP_CONN:
    case NGTCP2_ERR_RETRY:
        memset(&info, 0, sizeof(info));
        info.err = TP_ERR_PROTOCOL;
        info.reason = "connection dropped";
        c->state = TP_QUIC_DEAD;
        notify_close(c, &info, -1);
        return;
    case NGTCP2_ERR_CRYPTO:
        ngtcp2_ccerr_set_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(c->q), NULL, 0);
        break;
    case NGTCP2_ERR_NOMEM:
        ngtcp2_ccerr_set_liberr(&ccerr, rv, NULL, 0);
        start_closing(c, &ccerr, TP_ERR_NOMEM);
        return;
    default: ngtcp2_ccerr_set_liberr(&ccerr, rv, NULL, 0); break;
    }
    start_closing(c, &ccerr, 0);
}

/* ---- ngtcp2 callbacks ---- */

static tp_quic_stream_t *stream_of(tp_quic_conn_t *c, int64_t id, void *sud, bool create) {
    if (sud) {
        return sud;
    }
    tp_quic_stream_t *s = tp__quic_smap_get(&c->streams, id);
    if (s || !create) {
        return s;
    }
    s = tp__quic_stream_new(id, &c->ep->blocks);
    if (!s) {
        return NULL;
    }
    if (tp__quic_smap_put(&c->streams, s) != 0) {
        tp__quic_stream_del(s);
        return NULL;
    }
    ngtcp2_conn_set_stream_user_data(c->q, id, s);
    return s;
}

static int stream_open_cb(ngtcp2_conn *q, int64_t id, void *ud) {
    tp_quic_conn_t *c = ud;
    if (!stream_of(c, id, NULL, true)) {
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    if (c->ep->app.on_stream_open) {
        c->ep->app.on_stream_open(c, id);
    }
    return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *q, uint32_t flags, int64_t id, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud, void *sud) {
    tp_quic_conn_t *c = ud;
    tp_quic_stream_t *s = stream_of(c, id, sud, true);
    if (!s) {
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    s->delivered += len;
    c->ep->app.on_stream_data(c, id, data, len, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0,
                              s->app_data);
    if (!c->ep->s.manual_consume && len > 0) {
        ngtcp2_conn_extend_max_stream_offset(q, id, len);
        ngtcp2_conn_extend_max_offset(q, len);
    }
    return 0;
}

static int acked_cb(ngtcp2_conn *q, int64_t id, uint64_t offset, uint64_t len, void *ud,
                    void *sud) {
    tp_quic_conn_t *c = ud;
    tp_quic_stream_t *s = stream_of(c, id, sud, false);
    if (!s) {
        return 0;
    }
    tp__quic_stream_acked(s, offset + len);
    if (s->want_writable && tp__quic_stream_buffered(s) < c->ep->s.stream_send_buffer) {
        s->want_writable = false;
        if (c->ep->app.on_writable) {
            c->ep->app.on_writable(c, id, s->app_data);
        }
    }
    return 0;
}

static int stream_close_cb(ngtcp2_conn *q, uint32_t flags, int64_t id, uint64_t code, void *ud,
                           void *sud) {
    tp_quic_conn_t *c = ud;
    tp_quic_stream_t *s = stream_of(c, id, sud, false);
    if (s) {
        if (c->ep->app.on_stream_close) {
            c->ep->app.on_stream_close(c, id, s->app_data);
        }
        if (c->ep->s.manual_consume && s->delivered > s->consumed) {
            /* Bytes the app can no longer consume (the stream is gone): the connection's window
             * must not shrink by them for good. */
            ngtcp2_conn_extend_max_offset(q, s->delivered - s->consumed);
        }
        pend_remove(c, s);
        tp__quic_smap_del(&c->streams, id);
        tp__quic_stream_del(s);
    }
    if (!ngtcp2_conn_is_local_stream(q, id)) {
        /* Let the peer open another one in its place: the limit is on concurrent streams. */
        if (ngtcp2_is_bidi_stream(id)) {
            ngtcp2_conn_extend_max_streams_bidi(q, 1);
        } else {
            ngtcp2_conn_extend_max_streams_uni(q, 1);
        }
    }
    return 0;
}

static int stream_reset_cb(ngtcp2_conn *q, int64_t id, uint64_t final_size, uint64_t code, void *ud,
                           void *sud) {
    tp_quic_conn_t *c = ud;
    tp_quic_stream_t *s = stream_of(c, id, sud, false);
    if (c->ep->app.on_stream_reset) {
        c->ep->app.on_stream_reset(c, id, TP_QUIC_RESET_RECV, code, s ? s->app_data : NULL);
    }
    return 0;
}

/* ngtcp2 calls this when *we* stop reading a stream (tp_quic_stream_shutdown with RESET_RECV),
 * not when the peer sends STOP_SENDING: our sending side goes on (a server that stopped a request
 * body still sends its response). A peer's STOP_SENDING shows as NGTCP2_ERR_STREAM_SHUT_WR when
 * the stream is written next (write_one), and is told to the app from there. */
static int stream_stop_sending_cb(ngtcp2_conn *q, int64_t id, uint64_t code, void *ud, void *sud) {
    (void)q;
    (void)id;
    (void)code;
    (void)ud;
    (void)sud;
    return 0;
}

/* Tells the app about the streams the peer stopped (STOP_SENDING), outside the write loop so
 * that it may write, reset or close from the callback. ngtcp2 does not pass the frame's error
 * code up: the app gets TP_QUIC_APP_ERROR_UNKNOWN. */
static void notify_peer_stops(tp_quic_conn_t *c) {
    c->peer_stops = false;
    /* One at a time, scanning again after each: a callback may close streams (the map shifts). */
    for (bool found = true; found && c->state <= TP_QUIC_ESTABLISHED;) {
        found = false;
        for (size_t i = 0; c->streams.slots && i <= c->streams.mask; i++) {
            tp_quic_stream_t *s = c->streams.slots[i];
            if (!s || !s->peer_stopped) {
                continue;
            }
            s->peer_stopped = false;
            found = true;
            if (c->ep->app.on_stream_reset) {
                c->ep->app.on_stream_reset(c, s->id, TP_QUIC_RESET_SEND, TP_QUIC_APP_ERROR_UNKNOWN,
                                           s->app_data);
            }
            break;
        }
    }
}

/* Writes; then tells the app of the peer's STOP_SENDINGs the write found, and writes what the app
 * did about them. */
static void write_and_notify(tp_quic_conn_t *c) {
    tp__quic_conn_write(c);
    if (c->peer_stops && c->busy == 0) {
        c->busy++;
        notify_peer_stops(c);
        c->busy--;
        if (c->state != TP_QUIC_DEAD) {
            tp__quic_conn_write(c); /* what the app did about it */
        }
    }
}

static int extend_max_stream_data_cb(ngtcp2_conn *q, int64_t id, uint64_t max_data, void *ud,
                                     void *sud) {
    tp_quic_conn_t *c = ud;
    tp_quic_stream_t *s = stream_of(c, id, sud, false);
    if (s) {
        tp__quic_conn_stream_ready(c, s);
    }
    return 0;
}

static int extend_max_local_streams_cb(ngtcp2_conn *q, uint64_t max_streams, void *ud) {
    tp_quic_conn_t *c = ud;
    if (c->state == TP_QUIC_ESTABLISHED && c->ep->app.on_writable) {
        c->ep->app.on_writable(c, -1, NULL);
    }
    return 0;
}

static int recv_datagram_cb(ngtcp2_conn *q, uint32_t flags, const uint8_t *data, size_t len,
                            void *ud) {
    tp_quic_conn_t *c = ud;
    if (c->ep->app.on_datagram) {
        c->ep->app.on_datagram(c, data, len);
    }
    return 0;
}

/* Client: a NEW_TOKEN token (RFC 9000 8.1.3) to present in the Initial of a later connection
 * to this server, so that it need not ask for a Retry. The latest one wins. */
static int recv_new_token_cb(ngtcp2_conn *q, const uint8_t *token, size_t len, void *ud) {
    tp_quic_conn_t *c = ud;
    if (len == 0 || len > TP_QUIC_CLIENT_TOKEN_MAX) {
        return 0;
    }
    uint8_t *copy = malloc(len);
    if (copy) {
        memcpy(copy, token, len);
        free(c->new_token);
        c->new_token = copy;
        c->new_token_len = len;
    }
    return 0;
}

static int recv_stateless_reset_cb(ngtcp2_conn *q, const ngtcp2_pkt_stateless_reset *sr, void *ud) {
    ((tp_quic_conn_t *)ud)->got_reset = true;
    return 0;
}

static int get_new_cid_cb(ngtcp2_conn *q, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                          void *ud) {
    tp_quic_conn_t *c = ud;
    /* A collision with a live CID is astronomically unlikely; try a few times anyway. */
    for (int i = 0; i < 4; i++) {
        if (tp__quic_endpoint_new_cid(c->ep, cid, token) != 0) {
            return NGTCP2_ERR_CALLBACK_FAILURE;
        }
        int rc = tp__quic_router_insert(&c->ep->router, cid->data, cid->datalen, c);
        if (rc == 0) {
            return 0;
        }
        if (rc == TP_ERR_NOMEM) {
            return NGTCP2_ERR_CALLBACK_FAILURE;
        }
    }
    return NGTCP2_ERR_CALLBACK_FAILURE;
}

static int remove_cid_cb(ngtcp2_conn *q, const ngtcp2_cid *cid, void *ud) {
    tp_quic_conn_t *c = ud;
    tp__quic_router_remove(&c->ep->router, cid->data, cid->datalen, c);
    return 0;
}

static int handshake_completed_cb(ngtcp2_conn *q, void *ud) {
    tp_quic_conn_t *c = ud;
    tp_quic_endpoint_t *ep = c->ep;
    c->state = TP_QUIC_ESTABLISHED;
    ep->stats.handshakes++;
    ep->stats.handshake_time_us += (tp__quic_now() - c->start_ns) / 1000;
    handshake_over(c);
    if (gnutls_session_is_resumed(c->tls)) {
        ep->stats.resumed_handshakes++;
    }
    if (c->server && (gnutls_session_get_flags(c->tls) & GNUTLS_SFLAGS_EARLY_DATA)) {
        ep->stats.early_data_accepted++;
    }
    if (!c->server && c->early_data_sent && !c->early_data_rejected) {
        if (gnutls_session_get_flags(c->tls) & GNUTLS_SFLAGS_EARLY_DATA) {
            ep->stats.early_data_accepted++;
        } else {
            c->early_data_rejected = true; /* the ticket did not allow it, or the server said no */
            ep->stats.early_data_rejected++;
        }
    }
    if (c->server) {
        /* A NEW_TOKEN lets this client skip the Retry round trip next time. */
        uint8_t token[TP_QUIC_TOKEN_MAX];
        tp_addr_t remote;
        tp__quic_addr_from_sa(&remote,
                              (const struct sockaddr *)ngtcp2_conn_get_path(q)->remote.addr);
        ssize_t n = tp__quic_token_regular_mint(token, ep->secret, &remote, tp__quic_now());
        if (n > 0) {
            (void)ngtcp2_conn_submit_new_token(q, token, (size_t)n);
        }
    }
    if (ep->app.on_established) {
        ep->app.on_established(c);
    }
    return 0;
}

/* ngtcp2 derives the next 1-RTT keys once when the handshake is confirmed and again after every
 * key update: every call after the first is a key update. */
static int handshake_confirmed_cb(ngtcp2_conn *q, void *ud) {
    (void)q;
    ((tp_quic_conn_t *)ud)->confirmed = true;
    return 0;
}

static int update_key_cb(ngtcp2_conn *q, uint8_t *rx_secret, uint8_t *tx_secret,
                         ngtcp2_crypto_aead_ctx *rx_aead_ctx, uint8_t *rx_iv,
                         ngtcp2_crypto_aead_ctx *tx_aead_ctx, uint8_t *tx_iv,
                         const uint8_t *current_rx_secret, const uint8_t *current_tx_secret,
                         size_t secretlen, void *ud) {
    tp_quic_conn_t *c = ud;
    if (c->key_generations++ > 0) {
        c->ep->stats.key_updates++;
    }
    return ngtcp2_crypto_update_key_cb(q, rx_secret, tx_secret, rx_aead_ctx, rx_iv, tx_aead_ctx,
                                       tx_iv, current_rx_secret, current_tx_secret, secretlen, ud);
}

/* The client: the 0-RTT key is in place (the ClientHello offers early data): the app may open
 * streams now; on_wake tells it. */
static int recv_tx_key_cb(ngtcp2_conn *q, ngtcp2_encryption_level level, void *ud) {
    (void)q;
    tp_quic_conn_t *c = ud;
    if (!c->server && level == NGTCP2_ENCRYPTION_LEVEL_0RTT && c->early_offered) {
        c->early_data_sent = true;
        tp_quic_conn_wake(c);
    }
    return 0;
}

/* The client: the server refused our 0-RTT. ngtcp2 has forgotten every stream; so do we (the app
 * hears on_early_rejected, then on_stream_close for each) and the app opens them again once
 * on_established runs. */
static int early_data_rejected_cb(ngtcp2_conn *q, void *ud) {
    (void)q;
    tp_quic_conn_t *c = ud;
    if (!c->early_data_sent || c->early_data_rejected) {
        return 0; /* 0-RTT was never attempted */
    }
    c->early_data_rejected = true;
    c->ep->stats.early_data_rejected++;
    if (c->ep->app.on_early_rejected) {
        c->ep->app.on_early_rejected(c);
    }
    for (size_t i = 0; c->streams.slots && i <= c->streams.mask; i++) {
        tp_quic_stream_t *st = c->streams.slots[i];
        if (!st) {
            continue;
        }
        if (c->ep->app.on_stream_close) {
            c->ep->app.on_stream_close(c, st->id, st->app_data);
        }
        pend_remove(c, st);
        tp__quic_smap_del(&c->streams, st->id);
        tp__quic_stream_del(st);
        i = (size_t)-1; /* the table may have moved entries: start over */
    }
    return 0;
}

static void qlog_cb(void *ud, uint32_t flags, const void *data, size_t len) {
    tp_quic_conn_t *c = ud;
    if (!c->qlog) {
        return;
    }
    fwrite(data, 1, len, c->qlog);
    if (flags & NGTCP2_QLOG_WRITE_FLAG_FIN) {
        fclose(c->qlog);
        c->qlog = NULL;
    }
}

static void fill_callbacks(ngtcp2_callbacks *cb, bool server) {
    memset(cb, 0, sizeof(*cb));
    if (server) {
        cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    } else {
        cb->client_initial = ngtcp2_crypto_client_initial_cb;
        cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
        cb->tls_early_data_rejected = early_data_rejected_cb;
        cb->recv_tx_key = recv_tx_key_cb;
    }
    cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb->encrypt = ngtcp2_crypto_encrypt_cb;
    cb->decrypt = ngtcp2_crypto_decrypt_cb;
    cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb->update_key = update_key_cb;
    cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb->rand = rand_cb;
    cb->get_new_connection_id = get_new_cid_cb;
    cb->remove_connection_id = remove_cid_cb;
    cb->handshake_completed = handshake_completed_cb;
    cb->handshake_confirmed = handshake_confirmed_cb;
    cb->stream_open = stream_open_cb;
    cb->recv_stream_data = recv_stream_data_cb;
    cb->acked_stream_data_offset = acked_cb;
    cb->stream_close = stream_close_cb;
    cb->stream_reset = stream_reset_cb;
    cb->stream_stop_sending = stream_stop_sending_cb;
    cb->extend_max_stream_data = extend_max_stream_data_cb;
    cb->extend_max_local_streams_bidi = extend_max_local_streams_cb;
    cb->extend_max_local_streams_uni = extend_max_local_streams_cb;
    cb->recv_datagram = recv_datagram_cb;
    cb->recv_stateless_reset = recv_stateless_reset_cb;
    if (!server) {
        cb->recv_new_token = recv_new_token_cb;
    }
}

size_t tp__quic_max_udp_payload_bound(const tp_quic_settings_t *s) {
    return s->max_udp_payload ? s->max_udp_payload : TP_QUIC_JUMBO_MTU - 28;
}

/* The PMTUD ceiling for a path to `remote` (docs/quic.md, "Path MTU"). */
static size_t path_ceiling(const tp_quic_settings_t *s, const tp_addr_t *remote,
                           const tp_addr_t *local) {
    if (s->max_udp_payload) {
        return s->max_udp_payload;
    }
    const struct in6_addr *a6 = &remote->u.in6.sin6_addr;
    bool v6 = remote->u.sa.sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(a6);
    size_t hdr = v6 ? 48 : 28; /* IP header + 8 bytes of UDP */
    size_t mtu = tp__quic_route_mtu(remote, local);
    if (mtu <= 1500) { /* 0: the kernel could not tell */
        /* Ethernet or smaller (or unknown): ngtcp2's usual 1452, or less on a smaller link. */
        size_t p = mtu > hdr ? mtu - hdr : 1452;
        p = p < 1452 ? p : 1452;
        return p < 1200 ? 1200 : p;
    }
    if (mtu > TP_QUIC_JUMBO_MTU) {
        mtu = TP_QUIC_JUMBO_MTU;
    }
    return mtu - hdr;
}

static void fill_settings(tp_quic_conn_t *c, ngtcp2_settings *st, ngtcp2_transport_params *tp,
                          const tp_addr_t *remote, const tp_addr_t *local, uint16_t probes[5]) {
    const tp_quic_settings_t *s = &c->ep->s;
    ngtcp2_settings_default(st);
    st->initial_ts = c->start_ns;
    st->cc_algo = s->cc == TP_QUIC_CC_BBR    ? NGTCP2_CC_ALGO_BBR
                  : s->cc == TP_QUIC_CC_RENO ? NGTCP2_CC_ALGO_RENO
                                             : NGTCP2_CC_ALGO_CUBIC;
    c->max_udp_payload = path_ceiling(s, remote, local);
    st->max_tx_udp_payload_size = c->max_udp_payload;
    if (c->max_udp_payload > 1200) {
        /* ngtcp2's own probes (1406, then 1342 and 1232 if it was lost, then 1444) and, last,
         * the ceiling itself: a path that loses a large ceiling costs only those probes and
         * keeps what the usual sizes reached. Larger than the ceiling is skipped; ngtcp2 copies
         * the list. */
        probes[0] = 1406;
        probes[1] = 1342;
        probes[2] = 1232;
        probes[3] = 1444;
        probes[4] = (uint16_t)c->max_udp_payload;
        st->pmtud_probes = probes;
        st->pmtud_probeslen = 5;
    }
    st->handshake_timeout = (uint64_t)s->handshake_timeout_ms * NGTCP2_MILLISECONDS;
    st->max_window = s->max_window;
    st->max_stream_window = s->max_stream_window;
    if (c->qlog) {
        st->qlog_write = qlog_cb;
    }
    ngtcp2_transport_params_default(tp);
    tp->initial_max_stream_data_bidi_local = s->initial_max_stream_data;
    tp->initial_max_stream_data_bidi_remote = s->initial_max_stream_data;
    tp->initial_max_stream_data_uni = s->initial_max_stream_data;
    tp->initial_max_data = s->initial_max_data;
    tp->initial_max_streams_bidi = s->initial_max_streams_bidi;
    tp->initial_max_streams_uni = s->initial_max_streams_uni;
    tp->max_idle_timeout = (uint64_t)s->idle_timeout_ms * NGTCP2_MILLISECONDS;
    tp->active_connection_id_limit = s->active_connection_id_limit;
    tp->max_datagram_frame_size = s->datagrams ? s->max_datagram_frame_size : 0;
}

static void timer_cb(uv_timer_t *t);

static tp_quic_conn_t *conn_alloc(tp_quic_endpoint_t *ep, bool server, const uint8_t *scid) {
    tp_quic_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    c->ep = ep;
    c->server = server;
    c->state = TP_QUIC_HANDSHAKE;
    c->start_ns = tp__quic_now();
    c->conn_ref.get_conn = get_conn;
    c->conn_ref.user_data = c;
    c->dg_cap = ep->s.datagram_send_queue;
    if (ep->s.qlog_dir) {
        char path[4096];
        int off = snprintf(path, sizeof(path), "%s/", ep->s.qlog_dir);
        for (size_t i = 0; i < TP_QUIC_CID_LEN && off > 0 && (size_t)off + 3 < sizeof(path); i++) {
            off += snprintf(path + off, sizeof(path) - (size_t)off, "%02x", scid[i]);
        }
        if (off > 0 && (size_t)off + 8 < sizeof(path)) {
            snprintf(path + off, sizeof(path) - (size_t)off, ".sqlog");
            c->qlog = fopen(path, "we");
        }
    }
    uv_timer_init(ep->loop, &c->timer);
    c->timer.data = c;
    c->timer_open = true;
    c->next = ep->conns;
    if (ep->conns) {
        ep->conns->prev = c;
    }
    ep->conns = c;
    ep->stats.connections++;
    ep->handshakes_open++;
    c->handshake_counted = true;
    return c;
}

static void free_cb(uv_handle_t *h) { free(h->data); }

/* Frees the connection: its routes, streams, TLS and ngtcp2 state, then the timer handle. */
/* ngtcp2's allocator: small objects from the endpoint's cache, or NULL (malloc) under ASan.
 * ngtcp2 makes about nine small allocations per request of a busy HTTP/3 server. */
static const ngtcp2_mem *conn_mem(tp_quic_conn_t *c) {
    if (!TP_QUIC_MEM_CACHE) {
        return NULL;
    }
    c->mem = (ngtcp2_mem){.user_data = &c->ep->blocks,
                          .malloc = tp__quic_mem_malloc,
                          .free = tp__quic_mem_free,
                          .calloc = tp__quic_mem_calloc,
                          .realloc = tp__quic_mem_realloc};
    return &c->mem;
}

static void conn_free(tp_quic_conn_t *c) {
    /* The memory lives until the timer handle's close callback: a second call in the same
     * iteration (an inner entry freed it) must be harmless. */
    if (c->freed) {
        return;
    }
    c->freed = true;
    tp_quic_endpoint_t *ep = c->ep;
    if (!c->app_closed_notified) {
        tp_quic_close_info_t info = {.err = TP_ERR_CLOSED, .reason = "connection freed"};
        notify_close(c, &info, -1);
    }
    handshake_over(c);
    if (c->q) {
        size_t n = ngtcp2_conn_get_scid(c->q, NULL);
        ngtcp2_cid *scids = n ? malloc(n * sizeof(*scids)) : NULL;
        if (scids) {
            n = ngtcp2_conn_get_scid(c->q, scids);
            for (size_t i = 0; i < n; i++) {
                tp__quic_router_remove(&ep->router, scids[i].data, scids[i].datalen, c);
            }
            free(scids);
        } else if (n) {
            tp__quic_router_purge(&ep->router, c); /* no memory for the list: sweep the table */
        }
    }
    /* Whatever is left pointing at us (retired CIDs, the original DCID). */
    if (c->odcid_routed) {
        tp__quic_router_remove(&ep->router, c->odcid.data, c->odcid.datalen, c);
    }
    tp__quic_endpoint_forget(ep, c);
    tp__quic_smap_free(&c->streams);
    for (uint32_t i = 0; i < c->dg_count; i++) {
        free(c->dgrams[(c->dg_head + i) % c->dg_cap]);
    }
    free(c->dgrams);
    free(c->close_pkt);
    free(c->new_token);
    if (c->q) {
        ngtcp2_conn_del(c->q);
    }
    if (c->tls) {
        gnutls_deinit(c->tls);
    }
    if (c->qlog) {
        fclose(c->qlog);
    }
    uv_close((uv_handle_t *)&c->timer, free_cb);
}

/* The end of every entry into a connection: free it if it died, else write what it has. */
static void finish(tp_quic_conn_t *c) {
    if (c->busy > 0) {
        return;
    }
    if (c->state == TP_QUIC_DEAD) {
        conn_free(c);
        return;
    }
    if (c->ep->in_recv) {
        /* The receive batch writes every connection it touched once, at its end. */
        tp__quic_endpoint_schedule(c->ep, c);
        return;
    }
    write_and_notify(c);
    if (c->state == TP_QUIC_DEAD && c->busy == 0) {
        conn_free(c);
    }
}

static void arm_timer(tp_quic_conn_t *c) {
    if (c->state >= TP_QUIC_CLOSING) {
        return;
    }
    uint64_t expiry = ngtcp2_conn_get_expiry(c->q);
    uint64_t now = tp__quic_now();
    uint64_t ms =
        expiry <= now ? 0 : (expiry - now + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS;
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

static void timer_cb(uv_timer_t *t) {
    tp_quic_conn_t *c = t->data;
    c->busy++;
    int rv = ngtcp2_conn_handle_expiry(c->q, tp__quic_now());
    if (rv != 0) {
        conn_error(c, rv);
    }
    c->busy--;
    finish(c);
}

static void close_timer_cb(uv_timer_t *t) {
    tp_quic_conn_t *c = t->data;
    c->state = TP_QUIC_DEAD;
    finish(c);
}

/* ---- creation ---- */

static int conn_tls(tp_quic_conn_t *c, const char *server_name) {
    int rc =
        tp__quic_tls_session_new(&c->ep->tls, &c->tls, &c->conn_ref, server_name, c->verify_ip);
    if (rc == 0) {
        ngtcp2_conn_set_tls_native_handle(c->q, c->tls);
    }
    return rc;
}

int tp__quic_conn_accept(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx, const ngtcp2_pkt_hd *hd,
                         const ngtcp2_cid *odcid, const ngtcp2_cid *retry_scid, bool token_ok,
                         tp_quic_conn_t **out) {
    ngtcp2_cid scid;
    uint8_t reset_token[NGTCP2_STATELESS_RESET_TOKENLEN];
    int rc = tp__quic_endpoint_new_cid(ep, &scid, reset_token);
    if (rc != 0) {
        return rc;
    }
    tp_quic_conn_t *c = conn_alloc(ep, true, scid.data);
    if (!c) {
        return TP_ERR_NOMEM;
    }
    ngtcp2_callbacks cb;
    ngtcp2_settings st;
    ngtcp2_transport_params tp;
    fill_callbacks(&cb, true);
    uint16_t probes[5];
    fill_settings(c, &st, &tp, &rx->remote, &rx->local, probes);
    if (hd->tokenlen && token_ok) {
        st.token = hd->token;
        st.tokenlen = hd->tokenlen;
        st.token_type = retry_scid ? NGTCP2_TOKEN_TYPE_RETRY : NGTCP2_TOKEN_TYPE_NEW_TOKEN;
    }
    tp.original_dcid = *odcid;
    tp.original_dcid_present = 1;
    if (retry_scid) {
        tp.retry_scid = *retry_scid;
        tp.retry_scid_present = 1;
    }
    tp.stateless_reset_token_present = 1;
    memcpy(tp.stateless_reset_token, reset_token, sizeof(reset_token));
    ngtcp2_path path;
    tp__quic_addr_to_ngtcp2(&path.local, &rx->local);
    tp__quic_addr_to_ngtcp2(&path.remote, &rx->remote);
    path.user_data = NULL;
    rc = ngtcp2_conn_server_new(&c->q, &hd->scid, &scid, &path, hd->version, &cb, &st, &tp,
                                conn_mem(c), c);
    if (rc != 0) {
        c->q = NULL;
        c->state = TP_QUIC_DEAD;
        c->app_closed_notified = true; /* the app never saw it */
        conn_free(c);
        return TP_ERR_NOMEM;
    }
    rc = conn_tls(c, NULL);
    if (rc == 0) {
        rc = tp__quic_router_insert(&ep->router, scid.data, scid.datalen, c);
    }
    if (rc == 0) {
        /* The DCID the client uses now (its random one, or our Retry SCID) until it learns ours. */
        c->odcid = hd->dcid;
        c->odcid_routed =
            tp__quic_router_insert(&ep->router, hd->dcid.data, hd->dcid.datalen, c) == 0;
    }
    if (rc != 0) {
        c->state = TP_QUIC_DEAD;
        c->app_closed_notified = true;
        conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* The source address the kernel would pick toward `remote` (an unconnected wildcard socket does
 * not tell us); ngtcp2 needs the real local address of the path. */
static int local_addr_for(const tp_quic_endpoint_t *ep, const tp_addr_t *remote, tp_addr_t *out) {
    *out = ep->udp.local;
    if (!ep->udp.wildcard) {
        return 0;
    }
    int fd = socket(remote->u.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return TP_ERR_IO;
    }
    int rc = 0;
    tp_addr_t got;
    socklen_t len = sizeof(got.u);
    if (connect(fd, &remote->u.sa, tp_addr_len(remote)) != 0 ||
        getsockname(fd, &got.u.sa, &len) != 0) {
        rc = TP_ERR_UNREACHABLE;
    }
    close(fd);
    if (rc == 0) {
        *out = got;
        tp_addr_set_port(out, tp_addr_port(&ep->udp.local));
    }
    return rc;
}

/* The blob of tp_quic_conn_session(): magic, then the TLS session, the 0-RTT transport
 * parameters and the server's NEW_TOKEN token (maybe empty), each with a 4-byte big-endian
 * length. "TPQ1" blobs (from before tokens were kept) have the first two parts only. */
static const uint8_t SESSION_MAGIC[4] = {'T', 'P', 'Q', '2'};
static const uint8_t SESSION_MAGIC_V1[4] = {'T', 'P', 'Q', '1'};

typedef struct session_parts {
    const uint8_t *tls, *tp, *token;
    size_t tls_len, tp_len, token_len;
} session_parts_t;

static bool blob_part(const uint8_t **p, size_t *left, const uint8_t **part, size_t *len) {
    if (*left < 4) {
        return false;
    }
    size_t n = ((size_t)(*p)[0] << 24) | ((size_t)(*p)[1] << 16) | ((size_t)(*p)[2] << 8) | (*p)[3];
    if (n > *left - 4) {
        return false;
    }
    *part = *p + 4;
    *len = n;
    *p += 4 + n;
    *left -= 4 + n;
    return true;
}

/* Splits a tp_quic_conn_session() blob into its parts; false if it is not one of ours. */
static bool session_split(const uint8_t *blob, size_t len, session_parts_t *out) {
    memset(out, 0, sizeof(*out));
    if (len < sizeof(SESSION_MAGIC)) {
        return false;
    }
    bool v1 = memcmp(blob, SESSION_MAGIC_V1, sizeof(SESSION_MAGIC_V1)) == 0;
    if (!v1 && memcmp(blob, SESSION_MAGIC, sizeof(SESSION_MAGIC)) != 0) {
        return false;
    }
    const uint8_t *p = blob + sizeof(SESSION_MAGIC);
    size_t left = len - sizeof(SESSION_MAGIC);
    if (!blob_part(&p, &left, &out->tls, &out->tls_len) ||
        !blob_part(&p, &left, &out->tp, &out->tp_len) ||
        (!v1 && !blob_part(&p, &left, &out->token, &out->token_len)) || left != 0 ||
        out->tls_len == 0 || out->token_len > TP_QUIC_CLIENT_TOKEN_MAX) {
        return false;
    }
    return true;
}

/* Client: resume from a tp_quic_conn_session() blob, and with early_data set the remembered
 * transport parameters so streams can be opened and written as 0-RTT at once. (Its token went
 * into the settings when the connection was made.) */
static int conn_resume(tp_quic_conn_t *c, const session_parts_t *sp) {
    if (gnutls_session_set_data(c->tls, sp->tls, sp->tls_len) != 0) {
        return TP_ERR_INVAL;
    }
    if (c->ep->s.early_data && sp->tp_len > 0 &&
        ngtcp2_conn_decode_and_set_0rtt_transport_params(c->q, sp->tp, sp->tp_len) == 0) {
        c->early_offered = true; /* sent once GnuTLS installs the 0-RTT key (recv_tx_key_cb) */
    }
    return 0;
}

ssize_t tp_quic_conn_session(const tp_quic_conn_t *conn, void *buf, size_t size) {
    if (conn->server || !conn->tls ||
        !(gnutls_session_get_flags(conn->tls) & GNUTLS_SFLAGS_SESSION_TICKET)) {
        return TP_ERR_STATE;
    }
    gnutls_datum_t d = {NULL, 0};
    if (gnutls_session_get_data2(conn->tls, &d) != 0) {
        return TP_ERR_NOMEM;
    }
    uint8_t tp[256];
    ngtcp2_ssize tplen = ngtcp2_conn_encode_0rtt_transport_params(conn->q, tp, sizeof(tp));
    if (tplen < 0) {
        tplen = 0; /* resumption still works; 0-RTT will not be offered */
    }
    size_t need = sizeof(SESSION_MAGIC) + 4 + d.size + 4 + (size_t)tplen + 4 + conn->new_token_len;
    ssize_t rc = (ssize_t)need;
    if (need > size) {
        rc = TP_ERR_RANGE;
    } else {
        uint8_t *o = buf;
        memcpy(o, SESSION_MAGIC, sizeof(SESSION_MAGIC));
        o += sizeof(SESSION_MAGIC);
        size_t lens[3] = {d.size, (size_t)tplen, conn->new_token_len};
        const uint8_t *parts[3] = {d.data, tp, conn->new_token};
        for (int i = 0; i < 3; i++) {
            o[0] = (uint8_t)(lens[i] >> 24);
            o[1] = (uint8_t)(lens[i] >> 16);
            o[2] = (uint8_t)(lens[i] >> 8);
            o[3] = (uint8_t)lens[i];
            if (lens[i]) {
                memcpy(o + 4, parts[i], lens[i]);
            }
            o += 4 + lens[i];
        }
    }
    gnutls_free(d.data);
    return rc;
}

int tp_quic_connect(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                    void *conn_data, tp_quic_conn_t **out) {
    return tp_quic_connect_resume(ep, remote, server_name, NULL, 0, conn_data, out);
}

int tp_quic_connect_resume(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                           const void *session, size_t session_len, void *conn_data,
                           tp_quic_conn_t **out) {
    if (ep->server || ep->closing) {
        return TP_ERR_STATE;
    }
    session_parts_t sp;
    if (session && !session_split(session, session_len, &sp)) {
        return TP_ERR_INVAL;
    }
    tp_addr_t peer = *remote;
    if (ep->udp.family == AF_INET6 && remote->u.sa.sa_family == AF_INET) {
        /* A dual-stack client socket speaks IPv4 through mapped addresses. */
        memset(&peer, 0, sizeof(peer));
        peer.u.in6.sin6_family = AF_INET6;
        peer.u.in6.sin6_port = remote->u.in.sin_port;
        peer.u.in6.sin6_addr.s6_addr[10] = 0xff;
        peer.u.in6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&peer.u.in6.sin6_addr.s6_addr[12], &remote->u.in.sin_addr, 4);
    } else if (ep->udp.family != remote->u.sa.sa_family) {
        return TP_ERR_INVAL;
    }
    tp_addr_t local;
    int rc = local_addr_for(ep, &peer, &local);
    if (rc != 0) {
        return rc;
    }
    ngtcp2_cid scid;
    ngtcp2_cid dcid;
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    rc = tp__quic_endpoint_new_cid(ep, &scid, token);
    if (rc != 0) {
        return rc;
    }
    dcid.datalen = 18;
    if (gnutls_rnd(GNUTLS_RND_NONCE, dcid.data, dcid.datalen) != 0) {
        return TP_ERR_IO;
    }
    tp_quic_conn_t *c = conn_alloc(ep, false, scid.data);
    if (!c) {
        return TP_ERR_NOMEM;
    }
    c->app_data = conn_data;
    ngtcp2_callbacks cb;
    ngtcp2_settings st;
    ngtcp2_transport_params tp;
    fill_callbacks(&cb, false);
    uint16_t probes[5];
    fill_settings(c, &st, &tp, &peer, &local, probes);
    if (session && sp.token_len) {
        st.token = sp.token; /* the server's NEW_TOKEN: no Retry round trip (RFC 9000 8.1.3) */
        st.tokenlen = sp.token_len;
    }
    ngtcp2_path path;
    tp__quic_addr_to_ngtcp2(&path.local, &local);
    tp__quic_addr_to_ngtcp2(&path.remote, &peer);
    path.user_data = NULL;
    rc = ngtcp2_conn_client_new(&c->q, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &st, &tp,
                                conn_mem(c), c);
    char ipbuf[TP_ADDR_STRLEN];
    if (rc == 0) {
        rc = conn_tls(c,
                      server_name ? server_name : tp_addr_format_ip(remote, ipbuf, sizeof(ipbuf)));
        if (rc == 0 && session) {
            rc = conn_resume(c, &sp);
        }
        if (rc == 0) {
            rc = tp__quic_router_insert(&ep->router, scid.data, scid.datalen, c);
        }
    } else {
        c->q = NULL;
        rc = TP_ERR_NOMEM;
    }
    if (rc != 0) {
        c->state = TP_QUIC_DEAD;
        c->app_closed_notified = true;
        conn_free(c);
        return rc;
    }
    if (out) {
        *out = c;
    }
    /* The first Initial leaves on the next loop step, not from here: sending may read a pending
     * ICMP error that ends the connection, and on_close must never run before we return. */
    tp__quic_endpoint_schedule(ep, c);
    return 0;
}

/* ---- input ---- */

void tp__quic_conn_on_packet(tp_quic_conn_t *c, const tp_quic_rx_t *rx) {
    if (c->state == TP_QUIC_CLOSING) {
        /* Answer stray packets with our CONNECTION_CLOSE, on the 1st, 2nd, 4th, 8th ... so a
         * peer cannot make us send more than it sends (amplification). */
        c->close_rx_count++;
        if ((c->close_rx_count & (c->close_rx_count - 1)) == 0 && c->close_pkt_len <= rx->len * 3) {
            tp__quic_udp_send_now(&c->ep->udp, c->ep, c->close_pkt, c->close_pkt_len, &rx->remote,
                                  &rx->local, 0);
        }
        return;
    }
    if (c->state != TP_QUIC_HANDSHAKE && c->state != TP_QUIC_ESTABLISHED) {
        return;
    }
    ngtcp2_path path;
    tp__quic_addr_to_ngtcp2(&path.local, &rx->local);
    tp__quic_addr_to_ngtcp2(&path.remote, &rx->remote);
    path.user_data = NULL;
    ngtcp2_pkt_info pi = {.ecn = rx->ecn};
    c->busy++;
    int rv = ngtcp2_conn_read_pkt(c->q, &path, &pi, rx->data, rx->len, tp__quic_now());
    if (rv == 0) {
        c->got_packet = true;
    } else {
        conn_error(c, rv);
    }
    c->busy--;
    finish(c);
}

/* ---- output ---- */

static tp_quic_stream_t *next_stream(tp_quic_conn_t *c) {
    for (tp_quic_stream_t *s = c->pend_head; s; s = s->pend_next) {
        if (s->blocked_pass != c->write_pass) {
            return s;
        }
    }
    return NULL;
}

static void dgram_pop(tp_quic_conn_t *c) {
    free(c->dgrams[c->dg_head]);
    c->dgrams[c->dg_head] = NULL;
    c->dg_head = (c->dg_head + 1) % c->dg_cap;
    c->dg_count--;
}

/* Writes one packet (coalescing datagrams and stream frames) into dest. Returns its length, 0
 * when there is nothing to send or sending is blocked, or a fatal ngtcp2 error. */
static ngtcp2_ssize write_one(tp_quic_conn_t *c, ngtcp2_path *path, ngtcp2_pkt_info *pi,
                              uint8_t *dest, size_t destlen, uint64_t ts) {
    for (int guard = 0; guard < 4096; guard++) {
        if (c->dg_count > 0) {
            tp_quic_dgram_t *d = c->dgrams[c->dg_head];
            ngtcp2_vec v = {.base = d->data, .len = d->len};
            int accepted = 0;
            ngtcp2_ssize n =
                ngtcp2_conn_writev_datagram(c->q, path, pi, dest, destlen, &accepted,
                                            NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, ts);
            if (accepted || n == NGTCP2_ERR_INVALID_ARGUMENT || n == NGTCP2_ERR_INVALID_STATE) {
                dgram_pop(c); /* sent, or one the peer can never take: drop it */
            }
            if (n == NGTCP2_ERR_WRITE_MORE || n == NGTCP2_ERR_INVALID_ARGUMENT ||
                n == NGTCP2_ERR_INVALID_STATE) {
                continue;
            }
            if (n != 0 || accepted) {
                return n;
            }
            /* Congestion-limited or the packet is full: fall through to streams (ACKs). */
        }
        tp_quic_stream_t *s = next_stream(c);
        ngtcp2_vec vec[MAX_VECS];
        size_t nv = 0;
        size_t total = 0;
        int64_t sid = -1;
        uint32_t flags = 0;
        if (s) {
            nv = tp__quic_stream_unsent(s, vec, MAX_VECS, &total);
            sid = s->id;
            flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
            if (s->fin_queued && s->sent + total == s->written) {
                flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
            }
        }
        ngtcp2_ssize ndatalen = -1;
        ngtcp2_ssize n = ngtcp2_conn_writev_stream(c->q, path, pi, dest, destlen, &ndatalen, flags,
                                                   sid, vec, nv, ts);
        if (s && ndatalen >= 0) {
            s->sent += (uint64_t)ndatalen;
            if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s->sent == s->written) {
                s->fin_sent = true;
            }
            pend_remove(c, s);
            if (tp__quic_stream_has_unsent(s)) {
                pend_add(c, s); /* to the tail: round robin */
            }
        }
        if (!s && n < 0 && n != NGTCP2_ERR_WRITE_MORE) {
            return n; /* without a stream only fatal errors remain */
        }
        switch (n) {
        case NGTCP2_ERR_WRITE_MORE: continue;
        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
            /* Flow control: skip it for the rest of this pass; MAX_DATA/MAX_STREAM_DATA will
             * schedule a new pass. */
            if (s) {
                s->blocked_pass = c->write_pass;
            }
            continue;
        case NGTCP2_ERR_STREAM_SHUT_WR:
        case NGTCP2_ERR_STREAM_NOT_FOUND:
            if (s) {
                if (n == NGTCP2_ERR_STREAM_SHUT_WR && !s->shut_wr) {
                    /* Not ours: the peer's STOP_SENDING (ngtcp2 answered it with
                     * RESET_STREAM). The app hears it once this write is over. */
                    s->peer_stopped = true;
                    c->peer_stops = true;
                }
                tp__quic_stream_drop_unsent(s);
                pend_remove(c, s);
            }
            continue;
        default: return n;
        }
    }
    return 0;
}

static bool same_path(const tp_quic_tx_t *t, const ngtcp2_path *p) {
    tp_addr_t r;
    tp_addr_t l;
    tp__quic_addr_from_sa(&r, (const struct sockaddr *)p->remote.addr);
    tp__quic_addr_from_sa(&l, (const struct sockaddr *)p->local.addr);
    return tp_addr_eq(&r, &t->remote) && tp_addr_eq(&l, &t->local);
}

static void set_slot_path(tp_quic_tx_t *t, const ngtcp2_path *p, uint8_t ecn) {
    tp__quic_addr_from_sa(&t->remote, (const struct sockaddr *)p->remote.addr);
    tp__quic_addr_from_sa(&t->local, (const struct sockaddr *)p->local.addr);
    t->ecn = ecn;
}

static void write_pkts(tp_quic_conn_t *c);

void tp__quic_conn_write(tp_quic_conn_t *c) {
    if (c->state != TP_QUIC_HANDSHAKE && c->state != TP_QUIC_ESTABLISHED) {
        return;
    }
    if (c->close_requested && !c->server && !c->close_flushed && !c->confirmed &&
        ngtcp2_conn_get_handshake_completed(c->q)) {
        /* A client that closes right after its handshake completed (a whole 0.5-RTT answer
         * came with the server's flight) still owes the server its Finished: send it first, or
         * the server sees the close in the Handshake space and its handshake fails. */
        c->close_flushed = true;
        write_pkts(c);
        if (c->state != TP_QUIC_HANDSHAKE && c->state != TP_QUIC_ESTABLISHED) {
            return;
        }
    }
    c->busy++;
    if (c->close_requested) {
        ngtcp2_ccerr ccerr;
        ngtcp2_ccerr_set_application_error(&ccerr, c->close_code, (const uint8_t *)c->close_reason,
                                           strlen(c->close_reason));
        start_closing(c, &ccerr, 0);
        c->busy--;
        return;
    }
    c->busy--;
    write_pkts(c);
}

static void write_pkts(tp_quic_conn_t *c) {
    tp_quic_endpoint_t *ep = c->ep;
    c->busy++;
    uint64_t ts = tp__quic_now();
    size_t pmax = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->q);
    size_t quantum = ngtcp2_conn_get_send_quantum(c->q);
    size_t max_segs = quantum / pmax;
    if (max_segs < 1) {
        max_segs = 1;
    }
    if (max_segs > TP_QUIC_GSO_MAX) {
        max_segs = TP_QUIC_GSO_MAX;
    }
    if (max_segs > 65000 / pmax) {
        max_segs = 65000 / pmax; /* a GSO train is one UDP datagram: at most 64 KiB */
    }
    if (max_segs < 1) {
        max_segs = 1;
    }
    /* ngtcp2 keeps ordinary packets to the path's size itself; a PMTUD probe is larger, and is
     * only written when the buffer has room for max_tx_udp_payload_size. Every slot has room
     * for a train of max_segs packets and then one of max_udp_payload (TP_QUIC_TX_SLOT_SIZE). */
    size_t destlen = c->max_udp_payload;
    c->write_pass++;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    bool done = false;
    size_t total_pkts = 0;
    while (!done) {
        tp_quic_tx_t *t = tp__quic_udp_tx_slot(&ep->udp);
        if (!t) {
            tp__quic_endpoint_flush_tx(ep, true);
            if (c->state != TP_QUIC_HANDSHAKE && c->state != TP_QUIC_ESTABLISHED) {
                break; /* the send reported an ICMP error that ended this connection */
            }
            t = tp__quic_udp_tx_slot(&ep->udp);
        }
        if (!t) {
            tp__quic_endpoint_block(ep, c);
            break;
        }
        size_t nsegs = 0;
        size_t seglen = 0;
        while (nsegs < max_segs) {
            ngtcp2_ssize n = write_one(c, &ps.path, &pi, t->buf + t->len, destlen, ts);
            if (n < 0) {
                if (t->len) {
                    t->seglen = nsegs > 1 ? seglen : 0;
                    tp__quic_udp_tx_commit(&ep->udp);
                }
                conn_error(c, (int)n);
                c->busy--;
                return;
            }
            if (n == 0) {
                done = true;
                break;
            }
            total_pkts++;
            if (nsegs == 0) {
                set_slot_path(t, &ps.path, pi.ecn);
                seglen = (size_t)n;
                t->len = (size_t)n;
                nsegs = 1;
                if (!ep->udp.gso || (size_t)n > pmax) {
                    break; /* a PMTUD probe leaves alone (see below) */
                }
                continue;
            }
            if (!same_path(t, &ps.path) || pi.ecn != t->ecn || (size_t)n > seglen) {
                /* This packet cannot ride in the train: it starts the next one. */
                uint8_t *pkt = t->buf + t->len;
                t->seglen = nsegs > 1 ? seglen : 0;
                tp__quic_udp_tx_commit(&ep->udp);
                tp_quic_tx_t *t2 = tp__quic_udp_tx_slot(&ep->udp);
                if (!t2) {
                    tp_addr_t r;
                    tp_addr_t l;
                    tp__quic_addr_from_sa(&r, (const struct sockaddr *)ps.path.remote.addr);
                    tp__quic_addr_from_sa(&l, (const struct sockaddr *)ps.path.local.addr);
                    tp__quic_udp_send_now(&ep->udp, ep, pkt, (size_t)n, &r, &l, pi.ecn);
                    t = NULL;
                    break;
                }
                memcpy(t2->buf, pkt, (size_t)n);
                t = t2;
                set_slot_path(t, &ps.path, pi.ecn);
                seglen = (size_t)n;
                t->len = (size_t)n;
                nsegs = 1;
                if ((size_t)n > pmax) {
                    /* A PMTUD probe (larger than the path's size) is a datagram of its own: as
                     * the head of a GSO train its size would be the segment size of the packets
                     * behind it, and a probe the link cannot carry would fail the whole train
                     * (EMSGSIZE, or EINVAL, which turns GSO off for the socket). */
                    break;
                }
                continue;
            }
            t->len += (size_t)n;
            nsegs++;
            if ((size_t)n < seglen) {
                break; /* a short packet ends the train */
            }
        }
        if (t && t->len > 0) {
            t->seglen = nsegs > 1 ? seglen : 0;
            tp__quic_udp_tx_commit(&ep->udp);
        }
    }
    if (total_pkts) {
        ngtcp2_conn_update_pkt_tx_time(c->q, ts);
    }
    arm_timer(c);
    /* Still busy while sending: an ICMP error read during the send may abort this connection,
     * and only the caller's finish may free it. */
    tp__quic_endpoint_flush_tx(ep, false);
    c->busy--;
}

void tp__quic_conn_flush(tp_quic_conn_t *c) {
    c->busy++;
    if (c->wake_requested && c->state <= TP_QUIC_ESTABLISHED) {
        c->wake_requested = false;
        if (c->ep->app.on_wake) {
            c->ep->app.on_wake(c);
        }
    }
    c->busy--;
    if (c->busy > 0) {
        return;
    }
    if (c->state == TP_QUIC_DEAD) {
        conn_free(c);
        return;
    }
    write_and_notify(c);
    if (c->wake_requested && c->early_data_sent && c->state == TP_QUIC_HANDSHAKE && c->busy == 0) {
        /* The 0-RTT key came with the first flight just built: the app writes its early streams
         * now, and they leave right behind it rather than a loop iteration later. */
        c->wake_requested = false;
        c->busy++;
        if (c->ep->app.on_wake) {
            c->ep->app.on_wake(c);
        }
        c->busy--;
        if (c->state != TP_QUIC_DEAD) {
            write_and_notify(c);
        }
    }
    if (c->state == TP_QUIC_DEAD && c->busy == 0) {
        conn_free(c);
    }
}

void tp__quic_conn_abort(tp_quic_conn_t *c, int err, bool send, const char *reason) {
    if (c->state == TP_QUIC_DEAD) {
        return;
    }
    c->busy++;
    if (send && c->state <= TP_QUIC_ESTABLISHED) {
        ngtcp2_ccerr ccerr;
        ngtcp2_ccerr_default(&ccerr); /* transport NO_ERROR */
        start_closing(c, &ccerr, err);
    }
    tp_quic_close_info_t info = {.err = err, .reason = reason};
    notify_close(c, &info, -1);
    c->state = TP_QUIC_DEAD;
    uv_timer_stop(&c->timer);
    c->busy--;
    /* Never freed here: the caller may be inside this connection (a write whose send read the
     * ICMP error) or iterating over the endpoint's connections. An entry in progress frees it
     * at its end; otherwise the flush list does, on the next loop step. */
    if (c->busy == 0) {
        tp__quic_endpoint_schedule(c->ep, c);
    }
}

bool tp__quic_conn_reap(tp_quic_conn_t *c) {
    if (c->busy > 0) {
        return false;
    }
    if (c->state != TP_QUIC_DEAD) {
        tp__quic_conn_abort(c, TP_ERR_CLOSED, false, "endpoint closed");
    }
    conn_free(c);
    return true;
}

bool tp__quic_conn_awaiting_first_packet(const tp_quic_conn_t *c) {
    return !c->server && !c->got_packet && c->state == TP_QUIC_HANDSHAKE;
}
