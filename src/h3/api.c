/* api.c: what the application calls: the driver and its settings, client connections,
 * requests and responses, bodies with backpressure, trailers, resets, HTTP datagrams, GOAWAY. */
#include <stdlib.h>
#include <string.h>

#include "h3/h3_int.h"

/* Field sections the application sends are built on the stack up to this many fields. */
#define NV_STACK 32
/* HTTP datagrams are built on the stack up to this size (a QUIC packet is smaller). */
#define DGRAM_STACK 2048

void tp_h3_settings_default(tp_h3_settings_t *s) {
    memset(s, 0, sizeof(*s));
    s->max_field_section_size = 65536;
    s->qpack_max_dtable_capacity = 4096;
    s->qpack_encoder_max_dtable_capacity = 4096;
    s->qpack_blocked_streams = 16;
    s->enable_connect_protocol = true;
    s->h3_datagram = true;
    s->body_buffer = (size_t)256 * 1024;
    s->manual_consume = false;
}

int tp_h3_new(tp_h3_t **out, bool server, const tp_h3_settings_t *settings,
              const tp_h3_callbacks_t *cb, void *data) {
    if (!out || !settings) {
        return TP_ERR_INVAL;
    }
    /* Bounds: a section must hold at least a request line's worth; QPACK tables and blocked
     * streams are memory the peer can make us hold. */
    if (settings->max_field_section_size < 1024 ||
        settings->max_field_section_size > (uint64_t)16 * 1024 * 1024 ||
        settings->qpack_max_dtable_capacity > (size_t)1024 * 1024 ||
        settings->qpack_encoder_max_dtable_capacity > (size_t)1024 * 1024 ||
        settings->qpack_blocked_streams > 1000 || settings->body_buffer < 1024 ||
        settings->body_buffer > (size_t)64 * 1024 * 1024) {
        return TP_ERR_INVAL;
    }
    tp_h3_t *h3 = calloc(1, sizeof(*h3));
    if (!h3) {
        return TP_ERR_NOMEM;
    }
    h3->server = server;
    h3->s = *settings;
    if (cb) {
        h3->cb = *cb;
    }
    h3->data = data;
    *out = h3;
    return 0;
}

void tp_h3_del(tp_h3_t *h3) { free(h3); }

void *tp_h3_data(const tp_h3_t *h3) { return h3->data; }

void tp_h3_quic_settings(tp_quic_settings_t *qs) {
    if (!qs->alpn) {
        qs->alpn = TP_H3_ALPN;
    }
    qs->manual_consume = true;
}

int tp_h3_endpoint_new(tp_quic_endpoint_t **out, uv_loop_t *loop, const tp_addr_t *bind,
                       tp_h3_t *h3, const tp_quic_settings_t *qs) {
    tp_quic_settings_t s = *qs;
    tp_h3_quic_settings(&s);
    return tp_quic_endpoint_new(out, loop, bind, h3->server, &s, tp_h3_quic_app(), h3);
}

int tp_h3_connect(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                  void *conn_data, tp_h3_conn_t **out) {
    return tp_h3_connect_resume(ep, remote, server_name, NULL, 0, conn_data, out);
}

int tp_h3_connect_resume(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                         const void *session, size_t session_len, void *conn_data,
                         tp_h3_conn_t **out) {
    tp_h3_t *h3 = tp_quic_endpoint_data(ep);
    if (h3->server) {
        return TP_ERR_STATE;
    }
    tp_h3_conn_t *c = tp__h3_conn_new(h3, ep, NULL, conn_data);
    if (!c) {
        return TP_ERR_NOMEM;
    }
    tp_quic_conn_t *q = NULL;
    c->connecting = true;
    int rc = tp_quic_connect_resume(ep, remote, server_name, session, session_len, c, &q);
    c->connecting = false;
    if (rc == 0 && c->closed_early) {
        rc = TP_ERR_IO; /* the connection ended before tp_quic_connect() returned */
    }
    if (rc != 0) {
        nghttp3_conn_del(c->ng);
        free(c);
        return rc;
    }
    c->q = q;
    if (out) {
        *out = c;
    }
    return 0;
}

/* ---- connections ---- */

void *tp_h3_conn_data(const tp_h3_conn_t *conn) { return conn->data; }
void tp_h3_conn_set_data(tp_h3_conn_t *conn, void *data) { conn->data = data; }
tp_quic_conn_t *tp_h3_conn_quic(const tp_h3_conn_t *conn) { return conn->q; }
tp_h3_t *tp_h3_conn_driver(const tp_h3_conn_t *conn) { return conn->h3; }
bool tp_h3_conn_peer_settings(const tp_h3_conn_t *conn) { return conn->peer_settings; }
bool tp_h3_conn_peer_datagrams(const tp_h3_conn_t *conn) { return conn->peer_datagrams; }
bool tp_h3_stream_headers_ended(const tp_h3_stream_t *s) { return s->headers_fin; }
bool tp_h3_conn_peer_connect_protocol(const tp_h3_conn_t *conn) {
    return conn->peer_connect_protocol;
}

int tp_h3_conn_goaway(tp_h3_conn_t *conn, bool final) {
    if (conn->closing) {
        return TP_ERR_CLOSED;
    }
    if (!conn->ready) {
        return TP_ERR_STATE;
    }
    int rv =
        final ? nghttp3_conn_shutdown(conn->ng) : nghttp3_conn_submit_shutdown_notice(conn->ng);
    if (rv != 0) {
        return TP_ERR_NOMEM;
    }
    if (final) {
        conn->goaway_final = true;
        if (nghttp3_conn_is_drained(conn->ng)) {
            conn->closing = true;
            (void)tp_quic_conn_close(conn->q, TP_H3_NO_ERROR, "goaway");
            return 0;
        }
    }
    tp__h3_conn_kick(conn);
    return 0;
}

int tp_h3_conn_close(tp_h3_conn_t *conn, uint64_t h3_error, const char *reason) {
    if (conn->closing) {
        return TP_ERR_CLOSED;
    }
    conn->closing = true;
    return tp_quic_conn_close(conn->q, h3_error, reason);
}

/* ---- streams ---- */

/* Submits a field section through `submit` with the fields converted to nghttp3's form. */
static nghttp3_nv *nv_of(const tp_h3_field_t *f, size_t n, nghttp3_nv *stack) {
    nghttp3_nv *nv = n <= NV_STACK ? stack : malloc(n * sizeof(*nv));
    if (nv) {
        tp__h3_to_nv(nv, f, n);
    }
    return nv;
}

static int map_ng(int rv) {
    switch (rv) {
    case 0: return 0;
    case NGHTTP3_ERR_NOMEM: return TP_ERR_NOMEM;
    case NGHTTP3_ERR_CONN_CLOSING: return TP_ERR_STATE;
    case NGHTTP3_ERR_STREAM_NOT_FOUND: return TP_ERR_CLOSED;
    default: return TP_ERR_STATE;
    }
}

int tp_h3_request(tp_h3_conn_t *conn, const tp_h3_field_t *fields, size_t n, bool end_stream,
                  void *stream_data, tp_h3_stream_t **out) {
    if (conn->closing) {
        return TP_ERR_CLOSED;
    }
    if (conn->h3->server || !conn->ready || conn->goaway_received) {
        return TP_ERR_STATE;
    }
    if (tp__h3_fields_check(fields, n, TP_H3_SECTION_REQUEST, NULL) != 0) {
        return TP_ERR_INVAL;
    }
    int64_t id = tp_quic_stream_open(conn->q, true);
    if (id < 0) {
        return (int)id;
    }
    tp_h3_stream_t *s = tp__h3_stream_new(conn, id);
    if (!s) {
        (void)tp_quic_stream_shutdown(conn->q, id, TP_QUIC_RESET_SEND | TP_QUIC_RESET_RECV,
                                      TP_H3_INTERNAL_ERROR);
        return TP_ERR_NOMEM;
    }
    s->data = stream_data;
    (void)tp_quic_stream_set_data(conn->q, id, s);
    nghttp3_nv stack[NV_STACK];
    nghttp3_nv *nv = nv_of(fields, n, stack);
    int rv = nv ? nghttp3_conn_submit_request(conn->ng, id, nv, n,
                                              end_stream ? NULL : &tp__h3_body_reader, s)
                : NGHTTP3_ERR_NOMEM;
    if (nv != stack) {
        free(nv);
    }
    if (rv != 0) {
        /* The app never saw the stream: drop it with its QUIC stream. */
        (void)tp_quic_stream_set_data(conn->q, id, NULL);
        (void)tp_quic_stream_shutdown(conn->q, id, TP_QUIC_RESET_SEND | TP_QUIC_RESET_RECV,
                                      TP_H3_INTERNAL_ERROR);
        tp__h3_stream_free(conn, s);
        return map_ng(rv);
    }
    s->responded = true;
    s->has_reader = !end_stream;
    if (out) {
        *out = s;
    }
    tp__h3_conn_kick(conn);
    return 0;
}

static int stream_usable(const tp_h3_stream_t *s) {
    if (s->closed || s->conn->closing || s->reset_pending) {
        return TP_ERR_CLOSED;
    }
    return 0;
}

/* Submits a response head, final or interim (1xx), on a server stream not answered yet. */
static int submit_head(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n,
                       tp_h3_section_t section, bool end_stream) {
    tp_h3_conn_t *c = s->conn;
    int rc = stream_usable(s);
    if (rc != 0) {
        return rc;
    }
    if (!c->h3->server || s->responded) {
        return TP_ERR_STATE;
    }
    if (tp__h3_fields_check(fields, n, section, NULL) != 0) {
        return TP_ERR_INVAL;
    }
    nghttp3_nv stack[NV_STACK];
    nghttp3_nv *nv = nv_of(fields, n, stack);
    int rv = NGHTTP3_ERR_NOMEM;
    if (nv && section == TP_H3_SECTION_INFO) {
        rv = nghttp3_conn_submit_info(c->ng, s->id, nv, n);
    } else if (nv) {
        rv = nghttp3_conn_submit_response(c->ng, s->id, nv, n,
                                          end_stream ? NULL : &tp__h3_body_reader);
    }
    if (nv != stack) {
        free(nv);
    }
    if (rv != 0) {
        return map_ng(rv);
    }
    if (section != TP_H3_SECTION_INFO) {
        s->responded = true;
        s->has_reader = !end_stream;
    }
    tp__h3_conn_kick(c);
    return 0;
}

int tp_h3_respond(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n, bool end_stream) {
    return submit_head(s, fields, n, TP_H3_SECTION_RESPONSE, end_stream);
}

int tp_h3_respond_info(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n) {
    return submit_head(s, fields, n, TP_H3_SECTION_INFO, false);
}

/* nghttp3 asked for body bytes and got none: tell it there are some now. Inside nghttp3 the
 * resume waits for the call to return (run_pending). */
static void resume(tp_h3_stream_t *s) {
    tp_h3_conn_t *c = s->conn;
    if (!s->read_blocked) {
        return;
    }
    if (c->in_ng > 0) {
        c->has_pending = true;
        return;
    }
    s->read_blocked = false;
    int rv = nghttp3_conn_resume_stream(c->ng, s->id);
    if (rv != 0) {
        tp__h3_conn_fail(c, rv, "resume stream");
    }
}

ssize_t tp_h3_stream_send(tp_h3_stream_t *s, const void *data, size_t len, bool fin) {
    int rc = stream_usable(s);
    if (rc != 0) {
        return rc;
    }
    if (!s->has_reader || s->body_fin) {
        return TP_ERR_STATE;
    }
    ssize_t n = len ? tp__h3_bodyq_push(&s->body, data, len) : 0;
    if (n < 0) {
        return n;
    }
    if ((size_t)n < len) {
        s->want_writable = true;
    } else if (fin) {
        s->body_fin = true;
    }
    if (n > 0 || s->body_fin) {
        resume(s);
        tp__h3_conn_kick(s->conn);
    }
    return n;
}

int tp_h3_stream_send_trailers(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n) {
    tp_h3_conn_t *c = s->conn;
    int rc = stream_usable(s);
    if (rc != 0) {
        return rc;
    }
    if (!s->has_reader || s->body_fin) {
        return TP_ERR_STATE;
    }
    if (tp__h3_fields_check(fields, n, TP_H3_SECTION_TRAILERS, NULL) != 0) {
        return TP_ERR_INVAL;
    }
    nghttp3_nv stack[NV_STACK];
    nghttp3_nv *nv = nv_of(fields, n, stack);
    /* Submitted trailers go out after the body's EOF, whatever read_data's flags say. */
    int rv = nv ? nghttp3_conn_submit_trailers(c->ng, s->id, nv, n) : NGHTTP3_ERR_NOMEM;
    if (nv != stack) {
        free(nv);
    }
    if (rv != 0) {
        return map_ng(rv);
    }
    s->body_fin = true;
    resume(s);
    tp__h3_conn_kick(c);
    return 0;
}

int tp_h3_stream_consume(tp_h3_stream_t *s, size_t n) {
    int rc = stream_usable(s);
    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        (void)tp_quic_stream_consume(s->conn->q, s->id, n);
    }
    return 0;
}

int tp_h3_stream_reset(tp_h3_stream_t *s, uint64_t h3_error) {
    tp_h3_conn_t *c = s->conn;
    int rc = stream_usable(s);
    if (rc != 0) {
        return rc;
    }
    s->reset_pending = true;
    s->reset_code = h3_error;
    s->want_writable = false;
    c->has_pending = true;
    tp__h3_conn_kick(c);
    return 0;
}

int tp_h3_stream_stop_reading(tp_h3_stream_t *s, uint64_t h3_error) {
    tp_h3_conn_t *c = s->conn;
    int rc = stream_usable(s);
    if (rc != 0) {
        return rc;
    }
    if (s->read_stopped) {
        return 0;
    }
    s->read_stopped = true;
    if (s->fin_delivered) {
        return 0; /* the peer's side is complete: nothing to stop */
    }
    s->stop_pending = true;
    s->stop_code = h3_error;
    c->has_pending = true;
    tp__h3_conn_kick(c);
    return 0;
}

size_t tp_h3_stream_datagram_max(const tp_h3_stream_t *s) {
    if (s->closed || !s->conn->peer_datagrams || !s->conn->h3->s.h3_datagram) {
        return 0;
    }
    uint8_t tmp[8];
    size_t k = tp__h3_varint_encode(tmp, sizeof(tmp), (uint64_t)s->id / 4);
    size_t max = tp_quic_datagram_max(s->conn->q);
    return max > k ? max - k : 0;
}

int tp_h3_stream_send_datagram(tp_h3_stream_t *s, const void *data, size_t len) {
    int rc = stream_usable(s);
    if (rc != 0) {
        return rc;
    }
    if (!s->conn->peer_datagrams || !s->conn->h3->s.h3_datagram) {
        return TP_ERR_STATE;
    }
    uint8_t stack[DGRAM_STACK];
    uint8_t prefix[8];
    size_t k = tp__h3_varint_encode(prefix, sizeof(prefix), (uint64_t)s->id / 4);
    size_t total = k + len;
    uint8_t *buf = total <= sizeof(stack) ? stack : malloc(total);
    if (!buf) {
        return TP_ERR_NOMEM;
    }
    memcpy(buf, prefix, k);
    if (len) {
        memcpy(buf + k, data, len);
    }
    rc = tp_quic_datagram_send(s->conn->q, buf, total);
    if (buf != stack) {
        free(buf);
    }
    return rc;
}

int64_t tp_h3_stream_id(const tp_h3_stream_t *s) { return s->id; }
tp_h3_conn_t *tp_h3_stream_conn(const tp_h3_stream_t *s) { return s->conn; }
void *tp_h3_stream_data(const tp_h3_stream_t *s) { return s->data; }
void tp_h3_stream_set_data(tp_h3_stream_t *s, void *data) { s->data = data; }
size_t tp_h3_stream_queued(const tp_h3_stream_t *s) { return tp__h3_bodyq_unlent(&s->body); }
