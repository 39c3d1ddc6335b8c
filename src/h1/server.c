/* server.c: the HTTP/1.1 server codec, the on-ramp of both `http_proxy` (forward proxy:
 * absolute-form requests and CONNECT) and `http` (reverse proxy and API) endpoints: requests parsed
 * from the client into exchanges (src/http/exchange.c), their answers written back in HTTP/1.1
 * framing. */
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#include "h1/request.h"
#include "h1/write.h"
#include "http/exchange.h"
#include "runtime/log.h"

/* Where the connection stands. */
typedef enum h1_state {
    H1_HEAD,     /* reading a request head */
    H1_EXCHANGE, /* an exchange runs (src/http/exchange.c tells where it stands) */
    H1_LINGER,   /* an error answer is out; discarding input until EOF or a short deadline */
} h1_state_t;

struct tp_h1 {
    h1_state_t state;
    tp_h1_req_t rq; /* requests from the client */
    tp_exchange_t x;
    tp_buf_t *in; /* unparsed client bytes (reads are off while it is set) */
    size_t in_off, in_len;
    tp_buf_t *cur; /* the slab the parser is running over, for zero-copy forwarding */
    bool req_started;
    bool client_keep_alive, http11;
    bool drain;
    bool chunked_out;       /* the response body goes chunked */
    size_t req_head_fields; /* the request head's fields; trailers come after them */
};

static const tp_http_server_ops_t ops;
static void client_parse(tp_conn_t *conn);
static void linger_start(tp_conn_t *conn);

/* ---- state ---- */

static void on_req_begin(void *ctx);
static int on_req_body(void *ctx, const char *at, size_t len);

static tp_h1_t *h1_new(tp_conn_t *conn) {
    const tp_endpoint_cfg_t *cfg = conn->ep->cfg;
    tp_h1_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (tp__h1_req_init(&h->rq, cfg->limits.max_header_bytes, (size_t)cfg->limits.max_headers,
                        conn) != 0 ||
        tp__x_init(&h->x, conn, &ops) != 0) {
        tp__h1_req_free(&h->rq);
        tp__x_free(&h->x);
        free(h);
        return NULL;
    }
    h->rq.on_begin = on_req_begin;
    h->rq.on_body = on_req_body;
    h->x.req.head = &h->rq.head;
    conn->x = &h->x;
    return h;
}

void tp__h1_state_free(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp__x_free(&h->x);
    if (h->in)
        tp__buf_unref(h->in);
    tp__h1_req_free(&h->rq);
    free(h);
    conn->h1 = NULL;
    conn->x = NULL;
}

static tp_exchange_t *xof(tp_conn_t *conn) { return &conn->h1->x; }
static tp_h1_t *hof(tp_exchange_t *x) { return x->conn->h1; }

/* ---- request parser callbacks ---- */

static void on_req_begin(void *ctx) {
    tp_conn_t *conn = ctx;
    conn->h1->req_started = true;
    if (!conn->header_deadline) {
        conn->header_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.header_read;
        tp__conn_rearm(conn);
    }
}

static int on_req_body(void *ctx, const char *at, size_t len) {
    tp_conn_t *conn = ctx;
    int rc = tp__x_request_body(xof(conn), conn->h1->cur, at, len);
    return rc < 0 ? -1 : rc;
}

/* ---- what the exchange writes ---- */

/* Appends the status line: the upstream's reason phrase when the status is still its own. */
static void out_status(tp_h1_out_t *o, const tp_response_t *resp) {
    TP_H1_OUT_LIT(o, "HTTP/1.1 ");
    tp__h1_out_u64(o, resp->status);
    TP_H1_OUT_LIT(o, " ");
    if (resp->head && resp->status == resp->origin_status)
        tp__h1_out_str(o, tp__head_str(resp->head, resp->head->first));
    else
        tp__h1_out_add(o, tp__http_reason(resp->status), strlen(tp__http_reason(resp->status)));
    TP_H1_OUT_LIT(o, "\r\n");
}

/* Announces the endpoint's HTTP/3 alternative (alt_svc, RFC 7838) unless the response has one. */
static void out_alt_svc(tp_h1_out_t *o, const tp_conn_t *conn, const tp_response_t *resp) {
    const char *as = conn->ep->cfg->alt_svc;
    if (!as)
        return;
    if (resp->head && !tp__edits_removed(&resp->edits, (tp_str_t){"alt-svc", 7}) &&
        tp__head_get(resp->head, "alt-svc").ptr)
        return;
    if (tp__edits_get(&resp->edits, "alt-svc").ptr)
        return;
    tp__h1_out_field(o, (tp_str_t){"Alt-Svc", 7}, (tp_str_t){as, strlen(as)});
}

/* Writes an output toward the client (it owns o->p then). */
static int out_write(tp_conn_t *conn, tp_h1_out_t *o) {
    if (!o->p) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    uv_buf_t b = uv_buf_init(o->p, (unsigned)o->len);
    return tp__conn_write(conn, TP_TO_CLIENT, &b, 1, NULL, o->p);
}

static int send_interim(tp_exchange_t *x, uint16_t status, const tp_http_head_t *head,
                        const tp_hdr_edits_t *edits) {
    tp_response_t r = {.status = status, .origin_status = status, .head = head};
    tp_h1_out_t o;
    tp__h1_out_init(&o, (head ? head->len : 0) + 256);
    out_status(&o, &r);
    if (head) {
        tp__h1_out_fields(&o, head, head->nfields, edits, NULL);
        tp__h1_out_via(&o, x->conn);
    }
    TP_H1_OUT_LIT(&o, "\r\n");
    return out_write(x->conn, &o);
}

static int send_head(tp_exchange_t *x, const tp_response_t *resp, tp_http_framing_t framing,
                     uint64_t length, tp_str_t upgrade) {
    tp_h1_t *h = hof(x);
    tp_h1_out_t o;
    tp__h1_out_init(&o, (resp->head ? resp->head->len : 0) + resp->edits.added_len + 256);
    out_status(&o, resp);
    if (resp->head)
        tp__h1_out_fields(&o, resp->head, resp->nfields, &resp->edits, NULL);
    tp__h1_out_added(&o, &resp->edits);
    tp__h1_out_via(&o, x->conn);
    out_alt_svc(&o, x->conn, resp);
    if (framing == TP_FRAMING_LENGTH && resp->status != 204) { /* RFC 9110 8.6 */
        TP_H1_OUT_LIT(&o, "Content-Length: ");
        tp__h1_out_u64(&o, length);
        TP_H1_OUT_LIT(&o, "\r\n");
    }
    h->chunked_out = false;
    if (framing == TP_FRAMING_STREAM) {
        if (h->http11)
            h->chunked_out = true; /* chunked in, read-until-close or a changed body: chunked out */
        else
            x->close_after = true; /* an HTTP/1.0 client reads it until the close */
    }
    if (h->drain || !h->client_keep_alive)
        x->close_after = true;
    if (upgrade.ptr) {
        TP_H1_OUT_LIT(&o, "Connection: upgrade\r\n");
        tp__h1_out_field(&o, (tp_str_t){"Upgrade", 7}, upgrade);
    } else if (x->close_after) {
        TP_H1_OUT_LIT(&o, "Connection: close\r\n");
    }
    if (h->chunked_out)
        TP_H1_OUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    TP_H1_OUT_LIT(&o, "\r\n");
    return out_write(x->conn, &o);
}

static int send_body(tp_exchange_t *x, tp_buf_t *hold, const uint8_t *p, size_t n) {
    if (n == 0)
        return 0;
    return tp__h1_send_chunk(x->conn, TP_TO_CLIENT, hold, p, n, hof(x)->chunked_out);
}

static int send_end(tp_exchange_t *x, const tp_http_head_t *head, size_t from) {
    if (!hof(x)->chunked_out)
        return 0;
    return tp__h1_send_last_chunk(x->conn, TP_TO_CLIENT, head, from);
}

/* Stops reading requests: the answer goes out, then a lingering close. */
static void linger_after(tp_conn_t *conn, tp_h1_out_t *o) {
    tp_h1_t *h = conn->h1;
    h->state = H1_LINGER;
    h->x.close_after = true;
    if (h->in) {
        tp__buf_unref(h->in);
        h->in = NULL;
    }
    conn->header_deadline = 0;
    tp__conn_upstream_close(conn);
    if (out_write(conn, o) != 0)
        return;
    tp__conn_client_read(conn, false);
    tp__conn_rearm(conn);
    if (conn->queued[TP_TO_CLIENT] == 0) /* it all went at once */
        linger_start(conn);
}

static void answer(tp_exchange_t *x, const tp_response_t *resp, bool fatal) {
    tp_conn_t *conn = x->conn;
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &x->req;
    bool no_body = req->method == TP_METHOD_HEAD || resp->status == 204 || resp->status == 304;
    bool unread_body = !x->req_done && (req->framing == TP_FRAMING_STREAM ||
                                        (req->framing == TP_FRAMING_LENGTH && req->length));
    if (fatal || h->drain || !h->client_keep_alive || req->is_connect ||
        (unread_body && req->expect_continue))
        x->close_after = true; /* a client that expects a 100 may never send the body: close */
    tp_h1_out_t o;
    tp__h1_out_init(&o, resp->edits.added_len + 256 + resp->body_len);
    out_status(&o, resp);
    tp__h1_out_added(&o, &resp->edits);
    out_alt_svc(&o, conn, resp);
    if (resp->status != 204 && resp->status != 304) {
        TP_H1_OUT_LIT(&o, "Content-Length: ");
        tp__h1_out_u64(&o, resp->body_len);
        TP_H1_OUT_LIT(&o, "\r\n");
    }
    if (x->close_after)
        TP_H1_OUT_LIT(&o, "Connection: close\r\n");
    TP_H1_OUT_LIT(&o, "\r\n");
    if (!no_body && resp->body_len)
        tp__h1_out_add(&o, resp->body, resp->body_len);
    if (fatal || req->is_connect || (x->close_after && unread_body)) {
        /* An error, no tunnel after a CONNECT, or a body that may never come: answered, then
         * closed. */
        linger_after(conn, &o);
        return;
    }
    if (out_write(conn, &o) != 0)
        return;
    h->chunked_out = false;
    client_parse(conn); /* drop the body, then the exchange ends */
}

/* The connection becomes a tunnel; client bytes read after the request head go upstream first. */
static void tunnel_start(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_buf_t *early = h->in;
    h->in = NULL;
    tp__tunnel_start(conn, early, early ? early->data + h->in_off : NULL, early ? h->in_len : 0);
    if (early)
        tp__buf_unref(early);
}

static void tunnel(tp_exchange_t *x, const tp_response_t *resp) {
    tp_conn_t *conn = x->conn;
    tp_h1_out_t o;
    tp__h1_out_init(&o, resp->edits.added_len + 64);
    TP_H1_OUT_LIT(&o, "HTTP/1.1 200 Connection established\r\n");
    tp__h1_out_added(&o, &resp->edits);
    TP_H1_OUT_LIT(&o, "\r\n");
    if (out_write(conn, &o) != 0)
        return;
    tunnel_start(conn);
}

static void upgraded(tp_exchange_t *x) { tunnel_start(x->conn); }

static void request_flow(tp_exchange_t *x, bool on) {
    tp__conn_client_read(x->conn, on && !hof(x)->in);
}

static void resume(tp_exchange_t *x) { client_parse(x->conn); }

static void done(tp_exchange_t *x) {
    tp_conn_t *conn = x->conn;
    tp_h1_t *h = conn->h1;
    if (x->close_after || conn->client_eof) {
        tp__x_park_upstream(x);
        tp__conn_close(conn, conn->client_eof ? TP_CLOSE_CLIENT_CLOSED : TP_CLOSE_DONE);
        return;
    }
    /* A kept upstream stays read: if it speaks or closes while idle, it is dropped then. */
    if (!x->up.keep_alive || (conn->up && conn->up->eof))
        tp__conn_upstream_close(conn);
    tp__x_reset(x);
    tp__h1_req_next(&h->rq);
    h->state = H1_HEAD;
    h->req_started = false;
    h->chunked_out = false;
    conn->header_deadline = 0; /* the next request's starts with its first byte */
    client_parse(conn);
}

static const tp_http_server_ops_t ops = {
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

static void linger_start(tp_conn_t *conn) {
    /* The answer is written: say so with a FIN, then drop what the client still sends for a
     * moment, so that a reset does not destroy the answer before the client reads it. */
    tp__conn_shutdown(conn, TP_TO_CLIENT);
    conn->header_deadline = uv_now(&conn->worker->loop) + 2000;
    tp__conn_rearm(conn);
    tp__conn_client_read(conn, true);
}

void tp__http_proxy_timeout(tp_conn_t *conn, int which) {
    (void)which;
    if (conn->vc && conn->x) { /* an HTTP/3 flow: only the exchange has deadlines */
        if (!tp__x_timeout(conn->x))
            tp__conn_close(conn, TP_CLOSE_HEADER_TIMEOUT);
        return;
    }
    tp_h1_t *h = conn->h1;
    if (!h || conn->proto != &tp__http_proxy_proto) {
        if (conn->proto == &tp__pp_proto)
            tp__pp_log_refused(conn, "no complete PROXY header within timeouts.proxy_protocol");
        tp__conn_close(conn, TP_CLOSE_HEADER_TIMEOUT);
        return;
    }
    if (h->state == H1_LINGER) {
        tp__conn_close(conn, conn->stats.reason ? conn->stats.reason : TP_CLOSE_PROTOCOL_ERROR);
        return;
    }
    if (h->state == H1_HEAD && h->req_started) {
        conn->stats.reason = TP_CLOSE_HEADER_TIMEOUT;
        tp__x_respond_error(&h->x, 408, "http_request_error", "request head not received in time");
        return;
    }
    if (h->state == H1_EXCHANGE && tp__x_timeout(&h->x))
        return;
    tp__conn_close(conn, TP_CLOSE_HEADER_TIMEOUT);
}

/* ---- the request head ---- */

static tp_http_method_t method_of(uint8_t m) {
    switch (m) {
    case HTTP_GET: return TP_METHOD_GET;
    case HTTP_HEAD: return TP_METHOD_HEAD;
    case HTTP_OPTIONS: return TP_METHOD_OPTIONS;
    case HTTP_TRACE: return TP_METHOD_TRACE;
    case HTTP_PUT: return TP_METHOD_PUT;
    case HTTP_DELETE: return TP_METHOD_DELETE;
    case HTTP_POST: return TP_METHOD_POST;
    case HTTP_CONNECT: return TP_METHOD_CONNECT;
    default: return TP_METHOD_OTHER;
    }
}

/* An http endpoint's target: origin-form with the authority from Host (exactly one, RFC 9112
 * 3.2), or absolute-form. Returns 0 or the status to answer, with *detail. */
static int parse_server_target(tp_h1_t *h, const char **detail) {
    tp_request_t *req = &h->x.req;
    const tp_http_head_t *hd = &h->rq.head;
    if (req->is_connect) {
        *detail = "CONNECT is served by http_proxy endpoints";
        return 405;
    }
    tp_str_t url = tp__head_str(hd, hd->url);
    if (url.len == 0 || url.ptr[0] != '/')
        return tp__h1_parse_target(&h->rq, &req->target, detail);
    size_t nhost = 0;
    tp_str_t host = {NULL, 0};
    for (size_t i = 0; i < hd->nfields; i++)
        if (tp__h1_name_is(tp__head_str(hd, hd->fields[i].name), "host") && nhost++ == 0)
            host = tp__head_str(hd, hd->fields[i].value);
    if (nhost > 1) {
        *detail = "more than one Host header";
        return 400;
    }
    if (nhost == 0 && h->http11) {
        *detail = "no Host header";
        return 400;
    }
    req->target.path = url;
    req->target.port = 80;
    req->target.host = (tp_str_t){"", 0};
    if (host.len && !tp__h1_parse_authority(host, 80, &req->target.host, &req->target.port)) {
        *detail = "invalid Host header";
        return 400;
    }
    return 0;
}

/* The request head is complete: describe it to the exchange, which takes it from there. */
static void on_head(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->x.req;
    const llhttp_t *p = &h->rq.p;
    const tp_http_head_t *hd = &h->rq.head;
    conn->header_deadline = 0;
    tp__conn_rearm(conn);
    h->state = H1_EXCHANGE;
    h->req_head_fields = hd->nfields; /* fields after these, at the end, are trailers */
    h->client_keep_alive = llhttp_should_keep_alive(p);
    h->http11 = p->http_major == 1 && p->http_minor >= 1;
    req->head = hd;
    req->nfields = hd->nfields;
    req->method = method_of(p->method);
    req->is_connect = req->method == TP_METHOD_CONNECT;
    req->framing = (p->flags & F_CHUNKED)          ? TP_FRAMING_STREAM
                   : (p->flags & F_CONTENT_LENGTH) ? TP_FRAMING_LENGTH
                                                   : TP_FRAMING_NONE;
    req->length = req->framing == TP_FRAMING_LENGTH ? p->content_length : 0;
    req->expect_continue = tp__head_get(hd, "expect").ptr != NULL;
    /* RFC 9110 7.8: Upgrade is hop-by-hop, but passed on when the client asks for it. */
    tp_str_t cn = tp__head_get(hd, "connection");
    req->upgrade = !req->is_connect && tp__head_get(hd, "upgrade").ptr && cn.ptr &&
                   tp__http_list_has(cn, "upgrade");
    const char *detail = NULL;
    int status = tp__onramp_routes(conn->ep->cfg->type)
                     ? parse_server_target(h, &detail)
                     : tp__h1_parse_target(&h->rq, &req->target, &detail);
    tp__x_request_head(&h->x, (uint16_t)status, detail);
}

/* ---- the parse loop over client bytes ---- */

/* True while request bytes go on: a head to read, or the body of a forwarded request. */
static bool parsing(const tp_h1_t *h) {
    return h->state == H1_HEAD || (h->state == H1_EXCHANGE && h->x.forwarding && !h->x.req_done);
}

static void client_parse_run(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_exchange_t *x = &h->x;
    while (!conn->closing && !x->body[TP_TO_UPSTREAM].watermark && parsing(h)) {
        if (!h->in && !h->rq.kick)
            break;
        tp_buf_t *cur = h->cur = h->in;
        if (cur)
            tp__buf_ref(cur);
        size_t used = 0;
        tp_h1_req_event_t ev = tp__h1_req_execute(&h->rq, cur ? cur->data + h->in_off : NULL,
                                                  cur ? h->in_len : 0, &used);
        h->cur = NULL;
        if (conn->closing || h->state == H1_LINGER) { /* a body hook ended it */
            if (cur)
                tp__buf_unref(cur);
            return;
        }
        if (h->in && h->in == cur) {
            h->in_off += used;
            h->in_len -= used;
            if (h->in_len == 0) {
                tp__buf_unref(h->in);
                h->in = NULL;
            }
        }
        if (cur)
            tp__buf_unref(cur);
        if (ev == TP_H1_REQ_MORE || ev == TP_H1_REQ_PAUSE)
            break;
        if (ev == TP_H1_REQ_ERROR) {
            tp__x_request_refused(x, (uint16_t)h->rq.err_status, h->rq.err_detail);
            return;
        }
        if (ev == TP_H1_REQ_HEAD) {
            on_head(conn);
        } else if (ev == TP_H1_REQ_MESSAGE) {
            tp__x_request_end(x, &h->rq.head, h->req_head_fields);
            return;
        }
    }
    if (conn->closing || h->state == H1_LINGER) /* lingering reads are linger_start()'s */
        return;
    /* Reading goes on between requests and while a response streams (no epoll churn); bytes
     * that arrive then wait in h->in, and reading stops until they are parsed. */
    bool want = !h->in && !x->body[TP_TO_UPSTREAM].watermark &&
                conn->queued[TP_TO_UPSTREAM] <= conn->ep->cfg->high_watermark;
    tp__conn_client_read(conn, want);
}

/* Parses what the client sent; writes toward the upstream leave together at the end. */
static void client_parse(tp_conn_t *conn) {
    tp__conn_cork(conn, TP_TO_UPSTREAM);
    client_parse_run(conn);
    tp__conn_uncork(conn, TP_TO_UPSTREAM);
}

/* ---- proto callbacks ---- */

static void on_client_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread);

static void start(tp_conn_t *conn) {
    conn->h1 = h1_new(conn);
    if (!conn->h1) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    conn->header_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.header_read;
    tp__conn_rearm(conn);
    if (conn->stash) { /* bytes read while the ingress decision was pending */
        conn->h1->in = conn->stash;
        conn->h1->in_off = 0;
        conn->h1->in_len = conn->stash_len;
        conn->stash = NULL;
    }
    client_parse(conn);
    if (conn->client_eof && !conn->closing)
        on_client_read(conn, NULL, UV_EOF);
}

static void on_client_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    tp_h1_t *h = conn->h1;
    if (nread > 0) {
        if (h->state == H1_LINGER) {
            tp__buf_unref(b);
            return;
        }
        if (h->in) { /* cannot happen: reads stop while bytes wait */
            tp__buf_unref(b);
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            return;
        }
        h->in = b;
        h->in_off = 0;
        h->in_len = (size_t)nread;
        client_parse(conn);
        return;
    }
    if (nread != UV_EOF) {
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
        return;
    }
    /* EOF from the client. */
    switch (h->state) {
    case H1_HEAD:
        if (h->req_started)
            tp__log_msg(TP_LOG_INFO, "client closed mid-request", "conn %llu",
                        (unsigned long long)conn->id);
        else
            tp__x_park_upstream(&h->x); /* between requests: the upstream can serve others */
        tp__conn_close(conn, TP_CLOSE_CLIENT_CLOSED);
        break;
    case H1_LINGER:
        tp__conn_close(conn, conn->stats.reason ? conn->stats.reason : TP_CLOSE_PROTOCOL_ERROR);
        break;
    case H1_EXCHANGE:
        /* Deciding: the request head is complete; answer it, then close. Forwarding a body
         * that was cut short: the origin must not see a complete request. */
        if (h->x.forwarding && !h->x.req_done &&
            (llhttp_finish(&h->rq.p) != HPE_OK || !h->x.req_done))
            tp__conn_close(conn, TP_CLOSE_CLIENT_CLOSED);
        break;
    }
}

/* Parses what the upstream sent; writes toward the client leave together at the end. */
static void on_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    tp__conn_cork(conn, TP_TO_CLIENT);
    tp__h1c_read(xof(conn), b, nread);
    tp__conn_uncork(conn, TP_TO_CLIENT);
}

static void on_written(tp_conn_t *conn, int dir, int status) {
    tp_h1_t *h = conn->h1;
    if (status != 0) {
        tp__conn_close(conn, dir == TP_TO_CLIENT ? TP_CLOSE_CLIENT_RESET : TP_CLOSE_UPSTREAM_RESET);
        return;
    }
    if (h->state == H1_LINGER) {
        if (dir == TP_TO_CLIENT && conn->queued[TP_TO_CLIENT] == 0)
            linger_start(conn);
        return;
    }
    if (h->state != H1_EXCHANGE)
        return;
    if (dir == TP_TO_UPSTREAM)
        tp__x_upstream_written(&h->x);
    else
        tp__x_client_written(&h->x);
}

static void on_drain(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    if (!h) {
        tp__conn_close(conn, TP_CLOSE_SHUTDOWN);
        return;
    }
    h->drain = true;
    if (h->state == H1_HEAD && !h->req_started)
        tp__conn_close(conn, TP_CLOSE_SHUTDOWN); /* idle keep-alive: nothing is lost */
    else
        h->x.close_after = true;
}

const tp_proto_t tp__http_proxy_proto = {
    .name = "http_proxy",
    .start = start,
    .on_client_read = on_client_read,
    .on_upstream_read = on_upstream_read,
    .on_written = on_written,
    .on_drain = on_drain,
};
