/* conn_api.c: what the application calls on a connection: streams (open, write with
 * backpressure, consume, shutdown), datagrams, close and wake. Sends happen after the caller's
 * callback returns, or on the next loop iteration when called from outside one. */
#include <stdlib.h>
#include <string.h>

#include "quic/quic_int.h"

static bool usable(const tp_quic_conn_t *c) {
    return (c->state == TP_QUIC_HANDSHAKE || c->state == TP_QUIC_ESTABLISHED) &&
           !c->close_requested;
}

/* Something to send: inside a runtime entry the entry writes at its end; otherwise the flush
 * list runs on the next loop iteration (writes made together leave together). */
static void want_write(tp_quic_conn_t *c) {
    if (c->busy == 0) {
        tp__quic_endpoint_schedule(c->ep, c);
    }
}

void *tp_quic_conn_data(const tp_quic_conn_t *conn) { return conn->app_data; }

void tp_quic_conn_set_data(tp_quic_conn_t *conn, void *data) { conn->app_data = data; }

tp_quic_endpoint_t *tp_quic_conn_endpoint(const tp_quic_conn_t *conn) { return conn->ep; }

bool tp_quic_conn_is_server(const tp_quic_conn_t *conn) { return conn->server; }

uint64_t tp_quic_conn_initial_peer_streams_bidi(const tp_quic_conn_t *conn) {
    return ngtcp2_conn_get_local_transport_params(conn->q)->initial_max_streams_bidi;
}

size_t tp_quic_conn_max_udp_payload(const tp_quic_conn_t *conn, size_t *ceiling) {
    if (ceiling) {
        *ceiling = conn->max_udp_payload;
    }
    return ngtcp2_conn_get_path_max_tx_udp_payload_size(conn->q);
}

void tp_quic_conn_peer_addr(const tp_quic_conn_t *conn, tp_addr_t *out) {
    tp__quic_addr_from_sa(out, (const struct sockaddr *)ngtcp2_conn_get_path(conn->q)->remote.addr);
}

int tp_quic_conn_close(tp_quic_conn_t *conn, uint64_t app_error, const char *reason) {
    if (!usable(conn)) {
        return TP_ERR_CLOSED;
    }
    conn->close_requested = true;
    conn->close_code = app_error;
    size_t n = reason ? strlen(reason) : 0;
    if (n > sizeof(conn->close_reason) - 1) {
        n = sizeof(conn->close_reason) - 1;
    }
    if (n) {
        memcpy(conn->close_reason, reason, n);
    }
    conn->close_reason[n] = '\0';
    want_write(conn);
    return 0;
}

void tp_quic_conn_wake(tp_quic_conn_t *conn) {
    if (!usable(conn)) {
        return;
    }
    conn->wake_requested = true;
    /* Even from inside a callback: on_wake runs from the flush list, never nested. */
    tp__quic_endpoint_schedule(conn->ep, conn);
}

bool tp_quic_conn_in_early_data(const tp_quic_conn_t *conn) {
    return conn->server && conn->state == TP_QUIC_HANDSHAKE &&
           !ngtcp2_conn_get_handshake_completed(conn->q);
}

bool tp_quic_conn_resumed(const tp_quic_conn_t *conn) {
    return conn->tls && gnutls_session_is_resumed(conn->tls);
}

tp_quic_early_t tp_quic_conn_early_data(const tp_quic_conn_t *conn) {
    if (conn->server) {
        return conn->tls && (gnutls_session_get_flags(conn->tls) & GNUTLS_SFLAGS_EARLY_DATA)
                   ? TP_QUIC_EARLY_ACCEPTED
                   : TP_QUIC_EARLY_NONE;
    }
    if (!conn->early_data_sent) {
        return TP_QUIC_EARLY_NONE;
    }
    if (conn->early_data_rejected) {
        return TP_QUIC_EARLY_REJECTED;
    }
    return ngtcp2_conn_get_handshake_completed(conn->q) ? TP_QUIC_EARLY_ACCEPTED
                                                        : TP_QUIC_EARLY_SENT;
}

int64_t tp_quic_stream_open(tp_quic_conn_t *conn, bool bidi) {
    /* Before the handshake: a server may answer 0-RTT in 0.5-RTT, a client may send 0-RTT. */
    bool early = conn->state == TP_QUIC_HANDSHAKE &&
                 (conn->server || (conn->early_data_sent && !conn->early_data_rejected));
    if (!usable(conn) || (conn->state != TP_QUIC_ESTABLISHED && !early)) {
        return TP_ERR_STATE;
    }
    tp_quic_stream_t *s = tp__quic_stream_new(-1, &conn->ep->blocks);
    if (!s) {
        return TP_ERR_NOMEM;
    }
    int64_t id;
    int rv = bidi ? ngtcp2_conn_open_bidi_stream(conn->q, &id, s)
                  : ngtcp2_conn_open_uni_stream(conn->q, &id, s);
    if (rv != 0) {
        tp__quic_stream_del(s);
        return rv == NGTCP2_ERR_STREAM_ID_BLOCKED ? TP_ERR_RANGE : TP_ERR_NOMEM;
    }
    s->id = id;
    if (tp__quic_smap_put(&conn->streams, s) != 0) {
        (void)ngtcp2_conn_shutdown_stream(conn->q, 0, id, 0);
        ngtcp2_conn_set_stream_user_data(conn->q, id, NULL);
        tp__quic_stream_del(s);
        return TP_ERR_NOMEM;
    }
    return id;
}

ssize_t tp_quic_stream_write(tp_quic_conn_t *conn, int64_t stream_id, const void *data, size_t len,
                             bool fin) {
    if (!usable(conn)) {
        return TP_ERR_CLOSED;
    }
    tp_quic_stream_t *s = tp__quic_smap_get(&conn->streams, stream_id);
    if (!s) {
        return TP_ERR_NOTFOUND;
    }
    bool peer_uni =
        !ngtcp2_is_bidi_stream(stream_id) && !ngtcp2_conn_is_local_stream(conn->q, stream_id);
    if (s->fin_queued || s->shut_wr || peer_uni) {
        return TP_ERR_STATE;
    }
    size_t cap = conn->ep->s.stream_send_buffer;
    size_t buffered = tp__quic_stream_buffered(s);
    size_t room = buffered < cap ? cap - buffered : 0;
    ssize_t n = len ? tp__quic_stream_append(s, data, len, room) : 0;
    if (n < 0) {
        return n;
    }
    if ((size_t)n < len) {
        s->want_writable = true;
    } else if (fin) {
        s->fin_queued = true;
    }
    if (n > 0 || s->fin_queued) {
        tp__quic_conn_stream_ready(conn, s);
        want_write(conn);
    }
    return n;
}

int tp_quic_stream_consume(tp_quic_conn_t *conn, int64_t stream_id, size_t n) {
    if (!conn->ep->s.manual_consume) {
        return TP_ERR_STATE; /* the runtime credits every byte itself: this would double it */
    }
    if (!usable(conn)) {
        return TP_ERR_CLOSED;
    }
    tp_quic_stream_t *s = tp__quic_smap_get(&conn->streams, stream_id);
    if (!s) {
        return TP_ERR_NOTFOUND;
    }
    /* Never more credit than bytes delivered: the peer's window must stay what we can hold. */
    uint64_t left = s->delivered - s->consumed;
    if ((uint64_t)n > left) {
        n = (size_t)left;
    }
    if (n > 0) {
        s->consumed += n;
        (void)ngtcp2_conn_extend_max_stream_offset(conn->q, stream_id, n);
        ngtcp2_conn_extend_max_offset(conn->q, n);
        want_write(conn); /* the window update should not wait for the next packet */
    }
    return 0;
}

int tp_quic_stream_shutdown(tp_quic_conn_t *conn, int64_t stream_id, int dirs, uint64_t app_error) {
    if (!usable(conn)) {
        return TP_ERR_CLOSED;
    }
    if (dirs == 0 || (dirs & ~(TP_QUIC_RESET_RECV | TP_QUIC_RESET_SEND))) {
        return TP_ERR_INVAL;
    }
    tp_quic_stream_t *s = tp__quic_smap_get(&conn->streams, stream_id);
    if (!s) {
        return TP_ERR_NOTFOUND;
    }
    bool local = ngtcp2_conn_is_local_stream(conn->q, stream_id);
    bool bidi = ngtcp2_is_bidi_stream(stream_id);
    if ((dirs & TP_QUIC_RESET_SEND) && (bidi || local)) {
        tp__quic_stream_drop_unsent(s);
        if (ngtcp2_conn_shutdown_stream_write(conn->q, 0, stream_id, app_error) != 0) {
            return TP_ERR_NOMEM;
        }
    }
    if ((dirs & TP_QUIC_RESET_RECV) && (bidi || !local)) {
        if (ngtcp2_conn_shutdown_stream_read(conn->q, 0, stream_id, app_error) != 0) {
            return TP_ERR_NOMEM;
        }
    }
    want_write(conn);
    return 0;
}

int tp_quic_stream_set_data(tp_quic_conn_t *conn, int64_t stream_id, void *data) {
    tp_quic_stream_t *s = tp__quic_smap_get(&conn->streams, stream_id);
    if (!s) {
        return TP_ERR_NOTFOUND;
    }
    s->app_data = data;
    return 0;
}

size_t tp_quic_stream_buffered(const tp_quic_conn_t *conn, int64_t stream_id) {
    const tp_quic_stream_t *s = tp__quic_smap_get(&conn->streams, stream_id);
    return s ? tp__quic_stream_buffered(s) : 0;
}

size_t tp_quic_datagram_max(const tp_quic_conn_t *conn) {
    if (conn->state != TP_QUIC_ESTABLISHED) {
        return 0;
    }
    const ngtcp2_transport_params *p = ngtcp2_conn_get_remote_transport_params(conn->q);
    if (!p || p->max_datagram_frame_size == 0) {
        return 0;
    }
    /* The frame carries a type byte and a length varint (at most 4 bytes here) besides the
     * payload, and must fit in one packet of the path. */
    uint64_t frame = p->max_datagram_frame_size;
    size_t path = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn->q);
    /* short header (1 + CID) + packet number (up to 4) + AEAD tag (16) */
    size_t overhead = 1 + NGTCP2_MAX_CIDLEN + 4 + 16 + 1 + 4;
    size_t by_path = path > overhead ? path - overhead : 0;
    size_t by_frame = frame > 5 ? (size_t)(frame - 5) : 0;
    return by_path < by_frame ? by_path : by_frame;
}

int tp_quic_datagram_send(tp_quic_conn_t *conn, const void *data, size_t len) {
    if (!usable(conn)) {
        return TP_ERR_CLOSED;
    }
    if (conn->state != TP_QUIC_ESTABLISHED || !conn->ep->s.datagrams) {
        return TP_ERR_STATE;
    }
    size_t max = tp_quic_datagram_max(conn);
    if (max == 0) {
        return TP_ERR_STATE;
    }
    if (len > max) {
        return TP_ERR_TOO_LARGE;
    }
    if (!conn->dgrams) {
        conn->dgrams = calloc(conn->dg_cap, sizeof(tp_quic_dgram_t *));
        if (!conn->dgrams) {
            return TP_ERR_NOMEM;
        }
    }
    if (conn->dg_count == conn->dg_cap) {
        return TP_ERR_RANGE;
    }
    tp_quic_dgram_t *d = malloc(sizeof(*d) + len);
    if (!d) {
        return TP_ERR_NOMEM;
    }
    d->len = len;
    if (len) {
        memcpy(d->data, data, len);
    }
    conn->dgrams[(conn->dg_head + conn->dg_count) % conn->dg_cap] = d;
    conn->dg_count++;
    want_write(conn);
    return 0;
}
