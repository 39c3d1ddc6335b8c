/* http3.c: the HTTP/3 on-ramps (`http3` server, `http3_proxy` forward proxy): a QUIC endpoint per
 * worker and listen address (src/quic, src/h3), an ingress connection per QUIC connection (the
 * session), and per request stream a flow whose HTTP/3 server codec feeds the same exchange as
 * HTTP/1.1 (src/http/exchange.c). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "h1/request.h"
#include "h1/write.h"
#include "http/exchange.h"
#include "runtime/log.h"
#include "turnpike/h3.h"
#include "util/fmt.h"

/* The HTTP/3 endpoints of one configured endpoint: a group per listen address. */
typedef struct h3_listen {
    tp_quic_group_t *group;
    tp_addr_t bound;
} h3_listen_t;

typedef struct h3_onramp {
    const tp_endpoint_cfg_t *cfg;
    h3_listen_t *listens; /* cfg->listen.n */
} h3_onramp_t;

/* One per worker and configured http3 endpoint: the driver (its data: the worker's endpoint) and
 * a QUIC endpoint per listen address. */
typedef struct h3_worker_ep {
    tp_h3_t *h3;
    tp_quic_endpoint_t **qeps;
    size_t nqeps, nopen;
} h3_worker_ep_t;

typedef struct h3_flow h3_flow_t;

/* A QUIC connection and its ingress connection. Freed when both have gone. */
typedef struct h3_session {
    tp_conn_t *conn;  /* NULL once the ingress connection closed */
    tp_h3_conn_t *hc; /* NULL once the QUIC connection closed */
    tp_endpoint_t *ep;
    bool allowed;     /* the ingress hook allowed it */
    h3_flow_t *flows; /* its live flows */
} h3_session_t;

/* A request stream: its flow connection, head and exchange. Freed when both have gone. */
struct h3_flow {
    tp_conn_t *conn;    /* NULL once the flow connection was freed */
    tp_h3_stream_t *s;  /* NULL once the stream closed */
    h3_session_t *sess; /* NULL once the session went */
    h3_flow_t *prev, *next;
    tp_http_head_t head;
    tp_exchange_t x;
    bool x_ready;    /* x was initialized */
    uint16_t refuse; /* the request's head was bad: answer this status */
    const char *refuse_detail;
    bool started;            /* the exchange has the request */
    bool ws;                 /* extended CONNECT for WebSocket: an HTTP/1.1 Upgrade upstream */
    bool ws_head_ended;      /* ... whose request (a GET without a body) went to the exchange */
    char ws_key[25];         /* ... with this Sec-WebSocket-Key (RFC 6455 4.1) */
    bool req_eof;            /* the request's end was seen (or it is not read any more) */
    bool fatal;              /* Turnpike answered (an error, a direct response): the rest of the
                                request is dropped */
    bool fin_sent;           /* the response's end went (or the head ended the stream) */
    bool finish;             /* close the flow once the response ended */
    tp_h3_field_t *trailers; /* trailers to send after the body (in one block with their bytes) */
    size_t ntrailers;
};

static const tp_http_server_ops_t server_ops;
static const tp_vclient_ops_t flow_vc_ops;
static const tp_vclient_ops_t session_vc_ops;
const tp_proto_t tp__h3_flow_proto;

/* ---- fields out ---- */

/* A field section being built: fields whose names and values live in one growing block. */
typedef struct fields_out {
    tp_h3_field_t f[128];
    size_t n;
    char buf[16384];
    size_t len;
    bool full;
} fields_out_t;

static void fo_add(fields_out_t *o, tp_str_t name, tp_str_t value) {
    if (o->n == sizeof(o->f) / sizeof(o->f[0]) || o->len + name.len + value.len > sizeof(o->buf)) {
        o->full = true;
        return;
    }
    char *nm = o->buf + o->len;
    for (size_t i = 0; i < name.len; i++) /* HTTP/3 field names are lower-case (RFC 9114 4.2) */
        nm[i] = (char)((name.ptr[i] >= 'A' && name.ptr[i] <= 'Z') ? name.ptr[i] + 32 : name.ptr[i]);
    memcpy(nm + name.len, value.ptr, value.len);
    o->len += name.len + value.len;
    o->f[o->n++] = (tp_h3_field_t){nm, name.len, nm + name.len, value.len};
}

static void fo_status(fields_out_t *o, unsigned status) {
    char num[8];
    size_t n = tp__fmt_u64(num, status);
    fo_add(o, (tp_str_t){":status", 7}, (tp_str_t){num, n});
}

/* Names HTTP/3 forbids (connection-specific, RFC 9114 4.2), framing Turnpike derives, and the
 * HTTP/1.1 WebSocket handshake's key and answer, which extended CONNECT does without (RFC 8441 5,
 * RFC 9220 3). */
static bool not_for_h3(tp_str_t name) {
    static const char *const names[] = {"connection",
                                        "keep-alive",
                                        "proxy-connection",
                                        "te",
                                        "transfer-encoding",
                                        "upgrade",
                                        "trailer",
                                        "content-length",
                                        "sec-websocket-key",
                                        "sec-websocket-accept",
                                        NULL};
    for (size_t i = 0; names[i]; i++)
        if (tp__h1_name_is(name, names[i]))
            return true;
    return false;
}

/* The end-to-end fields of a head (minus hop-by-hop and removed ones), then the added lines. */
static void fo_fields(fields_out_t *o, const tp_http_head_t *hd, size_t from, size_t to,
                      const tp_hdr_edits_t *ed) {
    for (size_t i = from; hd && i < to; i++) {
        tp_str_t name = tp__head_str(hd, hd->fields[i].name);
        if (tp__http_is_hop_by_hop(hd, name) || not_for_h3(name) ||
            (ed && tp__edits_removed(ed, name)))
            continue;
        fo_add(o, name, tp__head_str(hd, hd->fields[i].value));
    }
    for (size_t r = 0; ed && r < ed->added_len;) {
        const char *line = ed->added + r;
        const char *end = memchr(line, '\n', ed->added_len - r);
        const char *colon = memchr(line, ':', (size_t)(end - line));
        tp_str_t name = {line, (size_t)(colon - line)};
        const char *v = colon + 1;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = end;
        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (!not_for_h3(name))
            fo_add(o, name, (tp_str_t){v, (size_t)(ve - v)});
        r = (size_t)(end + 1 - ed->added);
    }
}

static void fo_length(fields_out_t *o, uint64_t n) {
    char num[24];
    size_t k = tp__fmt_u64(num, n);
    fo_add(o, (tp_str_t){"content-length", 14}, (tp_str_t){num, k});
}

static void fo_via(fields_out_t *o, const tp_conn_t *conn) {
    const tp_forwarding_cfg_t *fw = &conn->ep->cfg->forwarding;
    if (!fw->via)
        return;
    char v[160];
    const char *name = fw->via_name && *fw->via_name ? fw->via_name : "turnpike";
    int n = snprintf(v, sizeof(v), "1.1 %s", name);
    fo_add(o, (tp_str_t){"via", 3}, (tp_str_t){v, n > 0 ? (size_t)n : 0});
}

/* ---- the server codec (tp_http_server_ops_t) ---- */

static h3_flow_t *flow_of(tp_exchange_t *x) { return x->conn->vc->ctx; }

/* The flow is done with once its response ended: close it then (or now). What is left of the
 * request (a body nobody needs any more, an extended CONNECT's stream) is not read: the client is
 * asked to stop sending it with H3_NO_ERROR (RFC 9114 4.1) and keeps the complete response. */
static void flow_finish(h3_flow_t *f) {
    tp_conn_t *conn = f->conn;
    if (!conn || conn->closing)
        return;
    if (!f->req_eof && f->s) {
        f->req_eof = true;
        tp_h3_stream_stop_reading(f->s, TP_H3_NO_ERROR);
    }
    if (conn->vc->ended || !f->s) {
        tp__conn_close(conn, conn->stats.reason ? conn->stats.reason : TP_CLOSE_DONE);
        return;
    }
    f->finish = true;
}

static int send_interim(tp_exchange_t *x, uint16_t status, const tp_http_head_t *head,
                        const tp_hdr_edits_t *edits) {
    h3_flow_t *f = flow_of(x);
    fields_out_t o = {.n = 0};
    fo_status(&o, status);
    fo_fields(&o, head, 0, head ? head->nfields : 0, edits);
    if (!f->s || o.full)
        return 0; /* an interim response is optional: dropped rather than fail */
    tp_h3_respond_info(f->s, o.f, o.n);
    return 0;
}

static int respond(h3_flow_t *f, fields_out_t *o, bool end_stream) {
    tp_conn_t *conn = f->conn;
    if (!f->s) {
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
        return TP_ERR_CLOSED;
    }
    if (o->full) {
        tp__log_msg(TP_LOG_WARN, "response head too large for HTTP/3", "conn %llu",
                    (unsigned long long)conn->id);
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_TOO_LARGE;
    }
    int rc = tp_h3_respond(f->s, o->f, o->n, end_stream);
    if (rc != 0) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return rc;
    }
    if (end_stream) {
        f->fin_sent = true;
        conn->client_shut = true;
        conn->vc->end_wanted = conn->vc->ended = true;
    }
    return 0;
}

/* Sec-WebSocket-Accept for a key (RFC 6455 4.2.2): base64(SHA-1(key + GUID)); false on failure. */
static bool ws_accept_of(const char *key, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[24 + sizeof(guid)];
    size_t kl = strlen(key);
    memcpy(in, key, kl);
    memcpy(in + kl, guid, sizeof(guid) - 1);
    uint8_t digest[20];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, in, kl + sizeof(guid) - 1, digest) != 0)
        return false;
    gnutls_datum_t raw = {digest, sizeof(digest)}, b64 = {NULL, 0};
    if (gnutls_base64_encode2(&raw, &b64) != 0)
        return false;
    bool ok = b64.size == 28;
    if (ok) {
        memcpy(out, b64.data, 28);
        out[28] = '\0';
    }
    gnutls_free(b64.data);
    return ok;
}

/* A fresh Sec-WebSocket-Key: 16 random bytes in base64 (RFC 6455 4.1). */
static bool ws_key_new(char out[25]) {
    uint8_t nonce[16];
    if (gnutls_rnd(GNUTLS_RND_NONCE, nonce, sizeof(nonce)) != 0)
        return false;
    gnutls_datum_t raw = {nonce, sizeof(nonce)}, b64 = {NULL, 0};
    if (gnutls_base64_encode2(&raw, &b64) != 0)
        return false;
    bool ok = b64.size == 24;
    if (ok) {
        memcpy(out, b64.data, 24);
        out[24] = '\0';
    }
    gnutls_free(b64.data);
    return ok;
}

/*
 * The origin's answer to the HTTP/1.1 Upgrade an extended CONNECT became: a 101 to websocket with
 * the right Sec-WebSocket-Accept is the tunnel's 200 (RFC 9220 3, RFC 8441 5); a 2xx that did not
 * switch cannot be passed on (the client would take the stream for a WebSocket). A broken answer
 * sets the client codec's error and fails: the exchange answers 502 with it.
 */
static int ws_switched(tp_exchange_t *x, h3_flow_t *f, const tp_response_t *resp,
                       tp_str_t upgrade) {
    const char *why = NULL;
    char want[29];
    if (!upgrade.ptr) {
        why = "the origin answered the WebSocket upgrade with a 2xx, not 101";
    } else if (upgrade.len != 9 || strncasecmp(upgrade.ptr, "websocket", 9) != 0) {
        why = "the origin switched to another protocol than websocket";
    } else {
        tp_str_t accept =
            resp->head ? tp__head_get(resp->head, "sec-websocket-accept") : (tp_str_t){NULL, 0};
        if (!ws_accept_of(f->ws_key, want) || accept.len != 28 || memcmp(accept.ptr, want, 28) != 0)
            why = "the origin's Sec-WebSocket-Accept does not match the key";
    }
    if (why) {
        x->up.error = why;
        return TP_ERR_INVAL;
    }
    fields_out_t o = {.n = 0};
    fo_status(&o, 200);
    fo_fields(&o, resp->head, 0, resp->head ? resp->nfields : 0, &resp->edits);
    fo_via(&o, x->conn);
    return respond(f, &o, false);
}

static int send_head(tp_exchange_t *x, const tp_response_t *resp, tp_http_framing_t framing,
                     uint64_t length, tp_str_t upgrade) {
    h3_flow_t *f = flow_of(x);
    /* HTTP/3 has no 101 (RFC 9114 4.5): only an extended CONNECT's upgrade asks for one. */
    if (f->ws && (upgrade.ptr || resp->status / 100 == 2))
        return ws_switched(x, f, resp, upgrade);
    fields_out_t o = {.n = 0};
    fo_status(&o, resp->status);
    fo_fields(&o, resp->head, 0, resp->head ? resp->nfields : 0, &resp->edits);
    fo_via(&o, x->conn);
    if (framing == TP_FRAMING_LENGTH && resp->status != 204 && resp->status != 304)
        fo_length(&o, length);
    bool no_body = framing == TP_FRAMING_NONE || x->req.method == TP_METHOD_HEAD ||
                   resp->status == 204 || resp->status == 304;
    return respond(f, &o, no_body);
}

static int send_body(tp_exchange_t *x, tp_buf_t *hold, const uint8_t *p, size_t n) {
    if (n == 0 || flow_of(x)->fin_sent)
        return 0;
    if (!hold)
        return tp__conn_write_copy(x->conn, TP_TO_CLIENT, (const char *)p, n);
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    return tp__conn_write(x->conn, TP_TO_CLIENT, &b, 1, hold, NULL);
}

static int send_end(tp_exchange_t *x, const tp_http_head_t *head, size_t from) {
    h3_flow_t *f = flow_of(x);
    if (f->fin_sent || x->conn->client_shut)
        return 0;
    static const char *const not_trailers[] = {"host", NULL};
    fields_out_t *o = NULL;
    if (head && from < head->nfields && !(o = calloc(1, sizeof(*o)))) {
        tp__conn_close(x->conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    if (o) { /* kept until everything before them went */
        for (size_t i = from; i < head->nfields; i++) {
            tp_str_t name = tp__head_str(head, head->fields[i].name);
            if (!tp__http_is_hop_by_hop(head, name) && !not_for_h3(name) &&
                !tp__h1_name_is(name, not_trailers[0]))
                fo_add(o, name, tp__head_str(head, head->fields[i].value));
        }
        if (o->n && !o->full) {
            f->trailers = o->f; /* the block starts with the array: freed as one */
            f->ntrailers = o->n;
        } else {
            free(o);
        }
    }
    tp__conn_shutdown(x->conn, TP_TO_CLIENT);
    return 0;
}

static void answer(tp_exchange_t *x, const tp_response_t *resp, bool fatal) {
    h3_flow_t *f = flow_of(x);
    tp_conn_t *conn = x->conn;
    bool no_body = x->req.method == TP_METHOD_HEAD || resp->status == 204 || resp->status == 304 ||
                   resp->body_len == 0;
    fields_out_t o = {.n = 0};
    fo_status(&o, resp->status);
    fo_fields(&o, NULL, 0, 0, &resp->edits);
    if (resp->status != 204 && resp->status != 304)
        fo_length(&o, resp->body_len);
    (void)fatal; /* each request has its own stream: an error ends only this one */
    if (respond(f, &o, no_body) != 0)
        return;
    if (!no_body) {
        if (tp__conn_write_copy(conn, TP_TO_CLIENT, resp->body, resp->body_len) != 0)
            return;
        tp__conn_shutdown(conn, TP_TO_CLIENT);
    }
    /* The answer is complete: the rest of the request, if any, is not needed (flow_finish). */
    f->fatal = true;
    flow_finish(f);
}

static void tunnel(tp_exchange_t *x, const tp_response_t *resp) {
    h3_flow_t *f = flow_of(x);
    fields_out_t o = {.n = 0};
    fo_status(&o, 200);
    fo_fields(&o, NULL, 0, 0, &resp->edits);
    if (respond(f, &o, false) != 0)
        return;
    tp__tunnel_start(x->conn, NULL, NULL, 0);
}

/* The origin switched to websocket (its 200 is out): the stream and the upstream connection are
 * a tunnel now; the origin's bytes after its 101 go first, then the client's that waited. */
static void upgraded(tp_exchange_t *x) {
    if (!flow_of(x)->ws) { /* only an extended CONNECT asks for an upgrade */
        tp__conn_close(x->conn, TP_CLOSE_INTERNAL);
        return;
    }
    tp__tunnel_start(x->conn, NULL, NULL, 0);
}

static void request_flow(tp_exchange_t *x, bool on) {
    if (!flow_of(x)->ws) /* an extended CONNECT's bytes wait for the tunnel */
        tp__conn_client_read(x->conn, on);
}

static void resume(tp_exchange_t *x) {
    h3_flow_t *f = flow_of(x);
    if (f->ws) {
        /* The upgrade request went upstream and has no body: the stream's bytes are the
         * tunnel's and wait for the 101 (upgraded) in the flow's client side. */
        if (!f->ws_head_ended) {
            f->ws_head_ended = true;
            tp__x_request_end(x, NULL, 0);
        }
        return;
    }
    if (!x->body[TP_TO_UPSTREAM].watermark)
        tp__conn_client_read(x->conn, true);
}

static void done(tp_exchange_t *x) {
    tp__x_park_upstream(x); /* the kept-alive upstream serves the next request of anyone */
    flow_finish(flow_of(x));
}

static const tp_http_server_ops_t server_ops = {
    .send_interim = send_interim,
    .send_head = send_head,
    .send_body = send_body,
    .send_end = send_end,
    .answer = answer,
    .tunnel = tunnel,
    .upgraded = upgraded,
    .request_flow = request_flow,
    .resume = resume,
    .done = done,
};

/* ---- the flow's client side: the request stream ---- */

static ssize_t flow_write(tp_conn_t *conn, const uint8_t *p, size_t len) {
    h3_flow_t *f = conn->vc->ctx;
    if (!f->s)
        return TP_ERR_CLOSED;
    return tp_h3_stream_send(f->s, p, len, false);
}

static void flow_end(tp_conn_t *conn) {
    h3_flow_t *f = conn->vc->ctx;
    if (!f->s || f->fin_sent)
        return;
    f->fin_sent = true;
    if (f->trailers)
        tp_h3_stream_send_trailers(f->s, f->trailers, f->ntrailers);
    else
        tp_h3_stream_send(f->s, NULL, 0, true);
    if (f->finish)
        tp__conn_close(conn, conn->stats.reason ? conn->stats.reason : TP_CLOSE_DONE);
}

static void flow_consumed(tp_conn_t *conn, size_t n) {
    h3_flow_t *f = conn->vc->ctx;
    if (f->s)
        tp_h3_stream_consume(f->s, n);
}

static void flow_close(tp_conn_t *conn) {
    h3_flow_t *f = conn->vc->ctx;
    if (f->s && (!f->fin_sent || !f->req_eof)) {
        /* Not a clean end: the stream is aborted both ways, so the client never takes a cut
         * response for a whole one. After a complete response the request side is let be. */
        if (!f->fin_sent)
            tp_h3_stream_reset(
                f->s, conn->stats.reason == TP_CLOSE_CLIENT_RESET ? TP_H3_REQUEST_CANCELLED
                      : conn->proto == &tp__tunnel_proto ? TP_H3_CONNECT_ERROR /* RFC 9114 4.4 */
                                                         : TP_H3_INTERNAL_ERROR);
    }
}

static void flow_unlink(h3_flow_t *f) {
    h3_session_t *s = f->sess;
    if (!s)
        return;
    if (f->prev)
        f->prev->next = f->next;
    else
        s->flows = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
    f->sess = NULL;
}

static void flow_free_mem(h3_flow_t *f) {
    tp__head_free(&f->head);
    free(f->trailers);
    free(f);
}

static void flow_free(tp_conn_t *conn) {
    h3_flow_t *f = conn->vc->ctx;
    if (f->x_ready)
        tp__x_free(&f->x);
    conn->x = NULL;
    f->conn = NULL;
    flow_unlink(f);
    if (f->s)
        tp_h3_stream_set_data(f->s, NULL); /* the stream outlives it: its events are dropped */
    flow_free_mem(f);
}

static const tp_vclient_ops_t flow_vc_ops = {
    .write = flow_write,
    .end = flow_end,
    .consumed = flow_consumed,
    .close = flow_close,
    .free = flow_free,
};

/* ---- the flow's protocol ---- */

static void flow_start(h3_flow_t *f) {
    f->started = true;
    tp__x_request_head(&f->x, f->refuse, f->refuse_detail);
}

static void flow_on_client_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    h3_flow_t *f = conn->vc->ctx;
    tp_exchange_t *x = &f->x;
    if (nread > 0) {
        if (!f->fatal)
            tp__x_request_body(x, b, b->data, (size_t)nread);
        tp__buf_unref(b);
        return;
    }
    if (nread != UV_EOF) {
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
        return;
    }
    f->req_eof = true;
    if (f->fatal) {
        flow_finish(f);
        return;
    }
    tp__x_request_end(x, &f->head, x->req.nfields);
}

static void flow_on_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    tp__conn_cork(conn, TP_TO_CLIENT);
    tp__h1c_read(conn->x, b, nread);
    tp__conn_uncork(conn, TP_TO_CLIENT);
}

static void flow_on_written(tp_conn_t *conn, int dir, int status) {
    if (status != 0) {
        tp__conn_close(conn, dir == TP_TO_CLIENT ? TP_CLOSE_CLIENT_RESET : TP_CLOSE_UPSTREAM_RESET);
        return;
    }
    h3_flow_t *f = conn->vc->ctx;
    if (f->fatal || !f->started)
        return;
    if (dir == TP_TO_UPSTREAM)
        tp__x_upstream_written(conn->x);
    else
        tp__x_client_written(conn->x);
}

static void flow_noop_start(tp_conn_t *conn) { (void)conn; }

const tp_proto_t tp__h3_flow_proto = {
    .name = "http3",
    .start = flow_noop_start,
    .on_client_read = flow_on_client_read,
    .on_upstream_read = flow_on_upstream_read,
    .on_written = flow_on_written,
};

/* ---- requests ---- */

static bool name_eq(const tp_h3_field_t *fl, const char *lit) {
    size_t n = strlen(lit);
    return fl->name_len == n && memcmp(fl->name, lit, n) == 0;
}

static int head_add(tp_http_head_t *h, int element, const char *p, size_t n) {
    int rc = tp__head_append(h, element, p, n);
    return rc ? rc : tp__head_complete(h, element);
}

/* Parses a decimal Content-Length (RFC 9110 8.6); false when it is not one. */
static bool parse_length(const char *p, size_t n, uint64_t *out) {
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

static tp_http_method_t method_of(tp_str_t m) {
    static const struct {
        const char *name;
        tp_http_method_t m;
    } ms[] = {{"GET", TP_METHOD_GET},         {"HEAD", TP_METHOD_HEAD},
              {"OPTIONS", TP_METHOD_OPTIONS}, {"TRACE", TP_METHOD_TRACE},
              {"PUT", TP_METHOD_PUT},         {"DELETE", TP_METHOD_DELETE},
              {"POST", TP_METHOD_POST},       {"CONNECT", TP_METHOD_CONNECT}};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        if (m.len == strlen(ms[i].name) && memcmp(m.ptr, ms[i].name, m.len) == 0)
            return ms[i].m;
    return TP_METHOD_OTHER;
}

/* Fills the flow's head and request from the header section; sets f->refuse on a bad one. */
static void describe(h3_flow_t *f, const tp_h3_field_t *fl, size_t n, bool ended) {
    tp_request_t *req = &f->x.req;
    const tp_h3_field_t *method = NULL, *scheme = NULL, *authority = NULL, *path = NULL,
                        *protocol = NULL;
    for (size_t i = 0; i < n && fl[i].name_len && fl[i].name[0] == ':'; i++) {
        if (name_eq(&fl[i], ":method"))
            method = &fl[i];
        else if (name_eq(&fl[i], ":scheme"))
            scheme = &fl[i];
        else if (name_eq(&fl[i], ":authority"))
            authority = &fl[i];
        else if (name_eq(&fl[i], ":path"))
            path = &fl[i];
        else if (name_eq(&fl[i], ":protocol"))
            protocol = &fl[i];
    }
    const tp_endpoint_cfg_t *cfg = f->conn->ep->cfg;
    /* RFC 9220 3 / RFC 8441 5: an extended CONNECT for websocket is, toward HTTP/1.1, a GET of
     * :path with Upgrade: websocket, the Sec-WebSocket-* fields carried over and a key of ours
     * (the client sends none over HTTP/3); nghttp3 let :protocol through only because we
     * announced SETTINGS_ENABLE_CONNECT_PROTOCOL (quic.extended_connect). */
    f->ws = protocol && method && method->value_len == 7 &&
            memcmp(method->value, "CONNECT", 7) == 0 && protocol->value_len == 9 &&
            strncasecmp(protocol->value, "websocket", 9) == 0 && cfg->quic.extended_connect;
    if (f->ws && !ws_key_new(f->ws_key)) {
        f->refuse = 500;
        f->refuse_detail = "no random bytes for a Sec-WebSocket-Key";
    }
    tp_http_head_t *h = &f->head;
    int rc = f->ws ? head_add(h, TP_HEAD_IN_FIRST, "GET", 3)
                   : head_add(h, TP_HEAD_IN_FIRST, method ? method->value : "",
                              method ? method->value_len : 0);
    if (!rc)
        rc = head_add(h, TP_HEAD_IN_URL, path ? path->value : "", path ? path->value_len : 0);
    bool has_host = false, has_cl = false, has_version = false;
    uint64_t cl = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (fl[i].name_len && fl[i].name[0] == ':')
            continue;
        if (f->ws && name_eq(&fl[i], "sec-websocket-key"))
            continue; /* not used over HTTP/3; the upstream gets ours */
        if (name_eq(&fl[i], "sec-websocket-version"))
            has_version = true;
        if (name_eq(&fl[i], "host"))
            has_host = true;
        if (name_eq(&fl[i], "content-length")) {
            if (has_cl || !parse_length(fl[i].value, fl[i].value_len, &cl)) {
                f->refuse = 400;
                f->refuse_detail = "invalid content-length";
            }
            has_cl = true;
        }
        rc = head_add(h, TP_HEAD_IN_NAME, fl[i].name, fl[i].name_len);
        if (!rc)
            rc = head_add(h, TP_HEAD_IN_VALUE, fl[i].value, fl[i].value_len);
    }
    if (!rc && authority && !has_host) /* RFC 9114 4.3.1: :authority is the Host of HTTP/1.1 */
        rc = head_add(h, TP_HEAD_IN_NAME, "host", 4);
    if (!rc && authority && !has_host)
        rc = head_add(h, TP_HEAD_IN_VALUE, authority->value, authority->value_len);
    /* 0-RTT (quic.early_data) can be replayed (docs/quic.md): only methods that are safe to
     * repeat go on, marked Early-Data: 1 for the origin (RFC 8470 5.1); the others are asked to
     * come again after the handshake (425, RFC 8470 5.2). */
    if (!rc && !f->refuse && cfg->quic.early_data &&
        tp_quic_conn_in_early_data(tp_h3_conn_quic(tp_h3_stream_conn(f->s)))) {
        bool safe = method && !f->ws &&
                    ((method->value_len == 3 && memcmp(method->value, "GET", 3) == 0) ||
                     (method->value_len == 4 && memcmp(method->value, "HEAD", 4) == 0) ||
                     (method->value_len == 7 && memcmp(method->value, "OPTIONS", 7) == 0));
        if (safe) {
            rc = head_add(h, TP_HEAD_IN_NAME, "early-data", 10);
            if (!rc)
                rc = head_add(h, TP_HEAD_IN_VALUE, "1", 1);
        } else {
            f->refuse = 425;
            f->refuse_detail = "request in 0-RTT early data: send it again after the handshake";
        }
    }
    if (!rc && f->ws) {
        rc = head_add(h, TP_HEAD_IN_NAME, "upgrade", 7);
        if (!rc)
            rc = head_add(h, TP_HEAD_IN_VALUE, "websocket", 9);
        if (!rc)
            rc = head_add(h, TP_HEAD_IN_NAME, "sec-websocket-key", 17);
        if (!rc)
            rc = head_add(h, TP_HEAD_IN_VALUE, f->ws_key, strlen(f->ws_key));
        if (!rc && !has_version) /* RFC 6455 4.1: the one version there is */
            rc = head_add(h, TP_HEAD_IN_NAME, "sec-websocket-version", 21);
        if (!rc && !has_version)
            rc = head_add(h, TP_HEAD_IN_VALUE, "13", 2);
    }
    if (rc) {
        f->refuse = (uint16_t)rc;
        f->refuse_detail = "request head over limits.max_header_bytes or max_headers";
    }
    req->head = h;
    req->nfields = h->nfields;
    req->secure = true;
    tp_str_t m = tp__head_str(h, h->first);
    req->method = method_of(m);
    req->is_connect = req->method == TP_METHOD_CONNECT;
    req->framing = ended ? TP_FRAMING_NONE : has_cl ? TP_FRAMING_LENGTH : TP_FRAMING_STREAM;
    req->length = has_cl ? cl : 0;
    if (f->ws) {
        /* The stream's bytes after the head are the tunnel's, not a body. */
        req->upgrade = true;
        req->framing = TP_FRAMING_NONE;
        req->length = 0;
        if (has_cl && !f->refuse) {
            f->refuse = 400;
            f->refuse_detail = "extended CONNECT with a content-length";
        }
        if (ended && !f->refuse) {
            f->refuse = 400;
            f->refuse_detail = "extended CONNECT whose stream already ended";
        }
    }
    if (ended && has_cl && cl) {
        f->refuse = 400;
        f->refuse_detail = "content-length without a body";
    }
    if (ended && has_cl)
        req->framing = TP_FRAMING_LENGTH;
    req->expect_continue = false; /* an HTTP/3 client sends its body without waiting */
    if (f->refuse)
        return;
    if (!method) {
        f->refuse = 400;
        f->refuse_detail = "no :method";
        return;
    }
    if (protocol && !f->ws) {
        /* connect-udp (RFC 9298) and connect-ip (RFC 9484) wait for MASQUE. */
        f->refuse = 501;
        f->refuse_detail = "extended CONNECT is served for :protocol websocket only";
        return;
    }
    bool server = tp__onramp_routes(cfg->type);
    tp_str_t auth =
        authority ? (tp_str_t){authority->value, authority->value_len} : (tp_str_t){NULL, 0};
    if (req->is_connect) {
        if (server) {
            f->refuse = 405;
            f->refuse_detail = "CONNECT is served by http3_proxy endpoints";
        } else if (!auth.len ||
                   !tp__h1_parse_authority(auth, 0, &req->target.host, &req->target.port)) {
            f->refuse = 400;
            f->refuse_detail = "CONNECT needs :authority host:port";
        }
        return;
    }
    bool https = scheme && scheme->value_len == 5 && memcmp(scheme->value, "https", 5) == 0;
    if (!scheme || !path || !path->value_len) {
        f->refuse = 400;
        f->refuse_detail = "a request needs :scheme and :path";
        return;
    }
    if (!server && https) {
        f->refuse = 501;
        f->refuse_detail = "https targets need TLS to origins, which this build does not have yet";
        return;
    }
    req->target.path = tp__head_str(h, h->url);
    req->target.port = https ? 443 : 80;
    req->target.host = (tp_str_t){"", 0};
    if (!auth.len) {
        if (!server) {
            f->refuse = 400;
            f->refuse_detail = "no :authority";
        }
        return;
    }
    if (!tp__h1_parse_authority(auth, req->target.port, &req->target.host, &req->target.port)) {
        f->refuse = 400;
        f->refuse_detail = "invalid :authority";
    }
}

static void session_close_flows(h3_session_t *s, tp_close_reason_t reason);

static h3_session_t *session_of(tp_h3_conn_t *hc);

static void on_request(tp_h3_stream_t *st, const tp_h3_field_t *fl, size_t n) {
    tp_h3_conn_t *hc = tp_h3_stream_conn(st);
    h3_session_t *s = session_of(hc);
    if (!s || !s->conn || s->conn->closing) {
        tp_h3_stream_reset(st, TP_H3_REQUEST_REJECTED);
        return;
    }
    tp_endpoint_t *ep = s->ep;
    const tp_endpoint_cfg_t *cfg = ep->cfg;
    h3_flow_t *f = calloc(1, sizeof(*f));
    if (!f || tp__head_init(&f->head, cfg->limits.max_header_bytes,
                            (size_t)cfg->limits.max_headers + 8) != 0) {
        if (f)
            flow_free_mem(f);
        tp_h3_stream_reset(st, TP_H3_INTERNAL_ERROR);
        return;
    }
    f->s = st;
    f->conn = tp__conn_new_virtual(ep, s->conn, &flow_vc_ops, f, &s->conn->peer, &s->conn->local);
    if (!f->conn) {
        flow_free_mem(f);
        tp_h3_stream_reset(st, TP_H3_INTERNAL_ERROR);
        return;
    }
    tp_conn_t *conn = f->conn;
    conn->proto = &tp__h3_flow_proto;
    if (tp__x_init(&f->x, conn, &server_ops) != 0) {
        tp__x_free(&f->x);
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    f->x_ready = true;
    conn->x = &f->x;
    tp_h3_stream_set_data(st, f);
    f->sess = s;
    f->next = s->flows;
    if (s->flows)
        s->flows->prev = f;
    s->flows = f;
    describe(f, fl, n, tp_h3_stream_headers_ended(st));
    if (s->allowed)
        flow_start(f);
}

static void on_body(tp_h3_stream_t *st, const uint8_t *data, size_t len, bool fin) {
    h3_flow_t *f = tp_h3_stream_data(st);
    if (!f || !f->conn) {
        if (len)
            tp_h3_stream_consume(st, len); /* nobody reads it: let the stream finish */
        return;
    }
    tp__vc_deliver(f->conn, data, len, fin, false);
}

static void on_trailers(tp_h3_stream_t *st, const tp_h3_field_t *fl, size_t n) {
    h3_flow_t *f = tp_h3_stream_data(st);
    if (!f || !f->conn)
        return;
    for (size_t i = 0; i < n; i++)
        if (head_add(&f->head, TP_HEAD_IN_NAME, fl[i].name, fl[i].name_len) ||
            head_add(&f->head, TP_HEAD_IN_VALUE, fl[i].value, fl[i].value_len)) {
            tp__conn_close(f->conn, TP_CLOSE_PROTOCOL_ERROR); /* over the head's limits */
            return;
        }
}

static void on_writable(tp_h3_stream_t *st) {
    h3_flow_t *f = tp_h3_stream_data(st);
    if (f && f->conn)
        tp__vc_writable(f->conn);
}

static void on_reset(tp_h3_stream_t *st, tp_quic_reset_dir_t dir, uint64_t code) {
    h3_flow_t *f = tp_h3_stream_data(st);
    (void)code;
    if (!f || !f->conn)
        return;
    if (dir == TP_QUIC_RESET_RECV && f->req_eof)
        return; /* the request was complete, or Turnpike asked for no more of it */
    tp__conn_close(f->conn, TP_CLOSE_CLIENT_RESET);
}

static void on_stream_close(tp_h3_stream_t *st) {
    h3_flow_t *f = tp_h3_stream_data(st);
    if (!f)
        return;
    f->s = NULL;
    tp_h3_stream_set_data(st, NULL);
    if (f->conn)
        tp__conn_close(f->conn, f->fin_sent ? TP_CLOSE_DONE : TP_CLOSE_CLIENT_RESET);
}

/* ---- sessions ---- */

static ssize_t session_write(tp_conn_t *conn, const uint8_t *p, size_t len) {
    (void)conn;
    (void)p;
    (void)len;
    return TP_ERR_STATE; /* a session carries no bytes of its own */
}
static void session_end(tp_conn_t *conn) { (void)conn; }
static void session_consumed(tp_conn_t *conn, size_t n) {
    (void)conn;
    (void)n;
}

static void session_maybe_free(h3_session_t *s) {
    if (!s->conn && !s->hc)
        free(s);
}

static void session_close(tp_conn_t *conn) {
    h3_session_t *s = conn->vc->ctx;
    session_close_flows(s, conn->stats.reason);
    if (s->hc) {
        bool blocked = conn->stats.reason == TP_CLOSE_BLOCKED;
        tp_h3_conn_close(s->hc, blocked ? TP_H3_REQUEST_REJECTED : TP_H3_NO_ERROR,
                         blocked ? "refused by the ingress hook" : NULL);
    }
}

static void session_free(tp_conn_t *conn) {
    h3_session_t *s = conn->vc->ctx;
    s->conn = NULL;
    if (s->hc) { /* the QUIC connection is closing: its last events find no session */
        tp_h3_conn_set_data(s->hc, NULL);
        s->hc = NULL;
    }
    session_maybe_free(s);
}

static const tp_vclient_ops_t session_vc_ops = {
    .write = session_write,
    .end = session_end,
    .consumed = session_consumed,
    .close = session_close,
    .free = session_free,
};

static void session_close_flows(h3_session_t *s, tp_close_reason_t reason) {
    for (h3_flow_t *f = s->flows; f; f = f->next)
        if (f->conn && !f->conn->closing)
            tp__conn_close(f->conn, reason ? reason : TP_CLOSE_SHUTDOWN);
}

/* The ingress hook allowed the connection: its requests go on. */
static void session_start(tp_conn_t *conn) {
    h3_session_t *s = conn->vc->ctx;
    s->allowed = true;
    for (h3_flow_t *f = s->flows; f; f = f->next)
        if (f->conn && !f->conn->closing && !f->started)
            flow_start(f);
    if (conn->worker->draining && s->hc)
        tp_h3_conn_goaway(s->hc, true);
}

static void session_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    (void)conn;
    (void)nread;
    if (b)
        tp__buf_unref(b);
}

static void session_written(tp_conn_t *conn, int dir, int status) {
    (void)conn;
    (void)dir;
    (void)status;
}

static void session_drain(tp_conn_t *conn) {
    h3_session_t *s = conn->vc->ctx;
    /* GOAWAY: the requests in flight finish, new ones are refused, then the connection closes. */
    if (s->hc && tp_h3_conn_goaway(s->hc, true) != 0)
        tp__conn_close(conn, TP_CLOSE_SHUTDOWN);
}

const tp_proto_t tp__h3_session_proto = {
    .name = "http3",
    .start = session_start,
    .on_client_read = session_read,
    .on_upstream_read = session_read,
    .on_written = session_written,
    .on_drain = session_drain,
};

/* Makes the session of a new QUIC connection and runs the ingress hook (at its first event). */
static h3_session_t *session_of(tp_h3_conn_t *hc) {
    h3_session_t *s = tp_h3_conn_data(hc);
    if (s)
        return s;
    tp_endpoint_t *ep = tp_h3_data(tp_h3_conn_driver(hc));
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    tp_quic_conn_t *q = tp_h3_conn_quic(hc);
    tp_addr_t peer, local;
    tp_quic_conn_peer_addr(q, &peer);
    tp_quic_endpoint_local_addr(tp_quic_conn_endpoint(q), &local);
    s->hc = hc;
    s->ep = ep;
    s->conn = tp__conn_new_virtual(ep, NULL, &session_vc_ops, s, &peer, &local);
    if (!s->conn) {
        free(s);
        tp_h3_conn_close(hc, TP_H3_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    tp_h3_conn_set_data(hc, s);
    s->conn->proto = &tp__h3_session_proto;
    tp__conn_ingress(s->conn);
    return tp_h3_conn_data(hc) ? s : NULL;
}

static void on_conn_ready(tp_h3_conn_t *hc) { (void)session_of(hc); }

static void on_conn_close(tp_h3_conn_t *hc, const tp_quic_close_info_t *info) {
    h3_session_t *s = tp_h3_conn_data(hc);
    if (!s)
        return;
    s->hc = NULL;
    tp_h3_conn_set_data(hc, NULL);
    /* The driver frees its streams after this returns, without on_stream_close: let go. */
    for (h3_flow_t *f = s->flows; f; f = f->next)
        if (f->s) {
            tp_h3_stream_set_data(f->s, NULL);
            f->s = NULL;
        }
    if (s->conn && !s->conn->closing)
        tp__conn_close(s->conn, info->err == TP_ERR_CLOSED || !info->remote ? TP_CLOSE_DONE
                                : info->application && info->code == TP_H3_NO_ERROR
                                    ? TP_CLOSE_CLIENT_CLOSED
                                    : TP_CLOSE_CLIENT_RESET);
    else
        session_maybe_free(s);
}

static const tp_h3_callbacks_t callbacks = {
    .on_conn_ready = on_conn_ready,
    .on_request = on_request,
    .on_body = on_body,
    .on_trailers = on_trailers,
    .on_writable = on_writable,
    .on_reset = on_reset,
    .on_stream_close = on_stream_close,
    .on_conn_close = on_conn_close,
};

/* ---- endpoints ---- */

static void quic_settings(const tp_endpoint_cfg_t *cfg, tp_quic_settings_t *qs) {
    tp_quic_settings_default(qs);
    const tp_quic_cfg_t *q = &cfg->quic;
    qs->cert_file = q->certificate;
    qs->key_file = q->private_key;
    qs->retry = (tp_quic_retry_t)q->retry;
    qs->retry_threshold = (uint32_t)q->retry_threshold;
    qs->cc = (tp_quic_cc_t)q->cc;
    qs->idle_timeout_ms = (uint32_t)q->idle_timeout;
    qs->handshake_timeout_ms = (uint32_t)q->handshake_timeout;
    qs->initial_max_data = q->initial_max_data;
    qs->initial_max_stream_data = q->initial_max_stream_data;
    qs->initial_max_streams_bidi = (uint64_t)q->max_streams;
    qs->max_connections = (uint32_t)q->max_connections;
    qs->max_udp_payload = (size_t)q->max_udp_payload;
    qs->datagrams = q->datagrams;
    qs->early_data = q->early_data;
    qs->qlog_dir = q->qlog_dir;
    qs->keylog_file = q->keylog_file;
    tp_h3_quic_settings(qs);
}

int tp__h3_onramps_open(tp_server_t *srv) {
    size_t nep = srv->cfg.endpoints.n;
    h3_onramp_t *onramps = calloc(nep ? nep : 1, sizeof(*onramps));
    if (!onramps)
        return TP_ERR_NOMEM;
    srv->h3_onramps = onramps;
    for (size_t e = 0; e < nep; e++) {
        const tp_endpoint_cfg_t *cfg = TP_LIST_AT(tp_endpoint_cfg_t, srv->cfg.endpoints, e);
        if (!tp__onramp_quic(cfg->type))
            continue;
        h3_onramp_t *o = &onramps[e];
        o->cfg = cfg;
        o->listens = calloc(cfg->listen.n, sizeof(*o->listens));
        if (!o->listens)
            return TP_ERR_NOMEM;
        for (size_t a = 0; a < cfg->listen.n; a++)
            if (tp_quic_group_new(&o->listens[a].group, srv->nworkers) != 0)
                return TP_ERR_NOMEM;
        tp_quic_settings_t qs;
        quic_settings(cfg, &qs);
        tp_h3_settings_t hs;
        tp_h3_settings_default(&hs);
        hs.manual_consume = true;
        hs.enable_connect_protocol = cfg->quic.extended_connect;
        hs.max_field_section_size =
            cfg->limits.max_header_bytes + 32 * (uint64_t)cfg->limits.max_headers;
        for (unsigned i = 0; i < srv->nworkers; i++) {
            tp_worker_t *w = &srv->workers[i];
            tp_endpoint_t *ep = &w->endpoints[e];
            h3_worker_ep_t *we = calloc(1, sizeof(*we));
            if (!we)
                return TP_ERR_NOMEM;
            ep->h3 = we;
            we->qeps = calloc(cfg->listen.n, sizeof(tp_quic_endpoint_t *));
            if (!we->qeps || tp_h3_new(&we->h3, true, &hs, &callbacks, ep) != 0)
                return TP_ERR_NOMEM;
            for (size_t a = 0; a < cfg->listen.n; a++) {
                int rc =
                    tp_quic_group_add(o->listens[a].group, &we->qeps[a], &w->loop,
                                      &cfg->listen.items[a], true, &qs, tp_h3_quic_app(), we->h3);
                if (rc != 0) {
                    char ab[TP_ADDR_STRLEN];
                    tp_addr_format(&cfg->listen.items[a], ab, sizeof(ab));
                    tp__log_msg(TP_LOG_ERROR, "cannot listen", "endpoint %s on udp %s: %s",
                                cfg->name, ab, tp_strerror(rc));
                    fprintf(stderr, "turnpike: cannot listen on udp %s for endpoint '%s': %s\n", ab,
                            cfg->name, tp_strerror(rc));
                    return rc;
                }
                we->nqeps = a + 1;
                we->nopen++;
                if (i == 0)
                    tp_quic_endpoint_local_addr(we->qeps[a], &o->listens[a].bound);
            }
        }
    }
    return 0;
}

bool tp__h3_onramp_bound(const tp_server_t *srv, size_t endpoint, size_t index, tp_addr_t *out) {
    const h3_onramp_t *onramps = srv->h3_onramps;
    if (!onramps || endpoint >= srv->cfg.endpoints.n || !onramps[endpoint].listens)
        return false;
    *out = onramps[endpoint].listens[index].bound;
    return true;
}

static void qep_closed(void *arg) {
    h3_worker_ep_t *we = arg;
    if (--we->nopen == 0) {
        tp_h3_del(we->h3);
        free(we->qeps);
        free(we);
    }
}

void tp__h3_onramps_refuse_new(tp_worker_t *w) {
    for (size_t e = 0; w->endpoints && w->server->h3_onramps && e < w->server->cfg.endpoints.n;
         e++) {
        h3_worker_ep_t *we = w->endpoints[e].h3;
        for (size_t a = 0; we && a < we->nqeps; a++)
            tp_quic_endpoint_refuse_new(we->qeps[a]);
    }
}

void tp__h3_onramps_drain(tp_worker_t *w) {
    for (size_t e = 0; w->endpoints && w->server->h3_onramps && e < w->server->cfg.endpoints.n;
         e++) {
        tp_endpoint_t *ep = &w->endpoints[e];
        h3_worker_ep_t *we = ep->h3;
        if (!we)
            continue;
        ep->h3 = NULL;
        size_t n = we->nqeps;
        if (n == 0) {
            tp_h3_del(we->h3);
            free(we->qeps);
            free(we);
            continue;
        }
        we->nopen = n;
        for (size_t a = 0; a < n; a++)
            tp_quic_endpoint_close(we->qeps[a], qep_closed, we);
    }
}

void tp__h3_onramps_free(tp_server_t *srv) {
    h3_onramp_t *onramps = srv->h3_onramps;
    for (size_t e = 0; onramps && e < srv->cfg.endpoints.n; e++) {
        h3_onramp_t *o = &onramps[e];
        for (size_t a = 0; o->listens && a < o->cfg->listen.n; a++)
            if (o->listens[a].group)
                tp_quic_group_del(o->listens[a].group);
        free(o->listens);
    }
    free(onramps);
    srv->h3_onramps = NULL;
}
