/* exchange.c: one HTTP request and its response, whatever the versions: hooks, routing, upstream
 * groups and retries, body hooks, and the answers Turnpike makes itself (see exchange.h). */
#include "http/exchange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/route.h"
#include "offramp/group.h"
#include "offramp/pool.h"
#include "runtime/log.h"
#include "tls/tls.h"

static void respond_failure(tp_exchange_t *x, const tp_failure_t *f);
static void forward_start(tp_exchange_t *x);
static void maybe_done(tp_exchange_t *x);

const char *tp__http_reason(unsigned status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* ---- state ---- */

int tp__x_init(tp_exchange_t *x, tp_conn_t *conn, const tp_http_server_ops_t *ops) {
    memset(x, 0, sizeof(*x));
    x->conn = conn;
    x->server = ops;
    x->req.x = x;
    x->req.conn = conn;
    x->req.group = -1;
    return tp__h1c_init(&x->up);
}

static void request_ext_free(tp_exchange_t *x) {
    tp_request_t *req = &x->req;
    if (!req->ext)
        return;
    const tp_ext_spec_t *spec = &x->conn->worker->server->app->ext[TP_EXT_REQUEST];
    if (spec->free)
        spec->free(req->ext);
    free(req->ext);
    req->ext = NULL;
}

/* Ends the exchange's use of its group server, with how it went. */
static void server_release(tp_exchange_t *x, tp_group_outcome_t outcome) {
    tp_request_t *req = &x->req;
    if (!req->server)
        return;
    tp__group_release(x->conn->worker->groups[req->group], req->server, outcome);
    req->server = NULL;
}

static void response_free(tp_response_t *r) {
    tp__edits_free(&r->edits);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static void body_dir_free(tp_body_dir_t *d) {
    free(d->held);
    memset(d, 0, sizeof(*d));
}

static void request_free(tp_exchange_t *x) {
    tp_request_t *req = &x->req;
    server_release(x, TP_GROUP_ABANDONED);
    request_ext_free(x);
    tp__edits_free(&req->edits);
    response_free(&req->direct);
    free(req->path);
    req->path = NULL;
    req->group = -1;
    req->tries = 0;
    req->editable = false;
    req->body_will_change = false;
    req->is_connect = req->upgrade = req->expect_continue = req->secure = false;
    req->framing = TP_FRAMING_NONE;
    req->length = 0;
    req->method = TP_METHOD_OTHER;
    memset(&req->target, 0, sizeof(req->target));
}

/* Frees what the last request and its answers held (the exchange itself stays usable). */
static void messages_free(tp_exchange_t *x) {
    request_free(x);
    response_free(&x->fwd_resp);
    response_free(&x->connect_resp);
    response_free(&x->answer);
    body_dir_free(&x->body[0]);
    body_dir_free(&x->body[1]);
}

void tp__x_free(tp_exchange_t *x) {
    messages_free(x);
    tp__h1c_free(&x->up);
}

void tp__x_reset(tp_exchange_t *x) {
    messages_free(x);
    if (x->up.rest) {
        tp__buf_unref(x->up.rest);
        x->up.rest = NULL;
    }
    tp__head_reset(&x->up.head);
    x->deciding = x->forwarding = x->answered = x->req_done = x->req_has_body = false;
    x->discard_body = x->resp_started = x->resp_head_sent = x->resp_final = false;
    x->resp_done = x->resp_no_body = x->upgraded = x->redirected = false;
    x->upstream_reused = x->close_after = false;
    x->avoid = NULL;
    x->body_in = x->resp_deadline = x->body_at = x->resp_bytes = 0;
    x->rcode = NULL;
    x->alert_name = NULL;
    x->up_tls = (tp_egress_tls_t){0};
    x->up.error = NULL;
}

bool tp__x_busy(const tp_exchange_t *x) { return x->deciding || x->forwarding; }

/* ---- answers Turnpike makes ---- */

/* Quotes a Proxy-Status details value (sf-string: printable ASCII, \ and " escaped). */
static size_t sf_string(char *out, size_t cap, const char *s) {
    size_t n = 0;
    if (cap < 3)
        return 0;
    out[n++] = '"';
    for (; *s && n + 3 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e)
            c = '?';
        if (c == '"' || c == '\\')
            out[n++] = '\\';
        out[n++] = (char)c;
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

static bool is_token(const char *s) {
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) && !(*s >= '0' && *s <= '9') &&
            !(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z'))
            return false;
    return true;
}

void tp__x_respond_error(tp_exchange_t *x, uint16_t status, const char *error,
                         const char *details) {
    tp_conn_t *conn = x->conn;
    tp_request_t *req = &x->req;
    tp_server_t *srv = conn->worker->server;
    tp_response_t *a = &x->answer;
    response_free(a);
    if (req->is_connect) {
        x->connect_resp.status = status;
        tp__conn_trace(conn, "http.handle_proxy_connect_response");
        if (srv->hooks.http_request.handle_proxy_connect_response)
            srv->hooks.http_request.handle_proxy_connect_response(srv->hooks.http_request.self, req,
                                                                  &x->connect_resp);
        if (conn->closing)
            return;
    }
    if (error && !is_token(error)) { /* an app's error type must be a token */
        tp__log_msg(TP_LOG_WARN, "invalid Proxy-Status error type from a hook", "%s", error);
        error = "proxy_internal_error";
    }
    a->status = status;
    tp__edits_add(&a->edits, "Content-Type", "text/plain");
    if (error) {
        char ps[320];
        int n = snprintf(ps, sizeof(ps), "turnpike; error=%s", error);
        if (x->rcode && n > 0 && (size_t)n < sizeof(ps) - 40) /* RFC 9209 2.3.2 */
            n += snprintf(ps + n, sizeof(ps) - (size_t)n, "; rcode=\"%s\"", x->rcode);
        if (x->alert_name && n > 0 && (size_t)n < sizeof(ps) - 60) /* RFC 9209 2.3.13 */
            n += snprintf(ps + n, sizeof(ps) - (size_t)n, "; alert-id=%u; alert-message=\"%s\"",
                          x->alert_id, x->alert_name);
        if (details && *details && n > 0 && (size_t)n < sizeof(ps) - 12) {
            memcpy(ps + n, "; details=", 10);
            sf_string(ps + n + 10, sizeof(ps) - (size_t)n - 12, details);
        }
        tp__edits_add(&a->edits, "Proxy-Status", ps);
    }
    const tp_hdr_edits_t *ce = &x->connect_resp.edits; /* the connect response hook's lines */
    if (ce->added_len && tp__edits_append_lines(&a->edits, ce) != 0)
        tp__log_msg(TP_LOG_WARN, "dropped header lines of a connect response hook", "conn %llu",
                    (unsigned long long)conn->id);
    char body[256];
    int blen = snprintf(body, sizeof(body), "%u %s%s%s\n", status, tp__http_reason(status),
                        details && *details ? ": " : "", details ? details : "");
    if (blen < 0 || (size_t)blen >= sizeof(body))
        blen = (int)strlen(body);
    a->body = malloc((size_t)blen);
    if (!a->body) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    memcpy(a->body, body, (size_t)blen);
    a->body_len = (size_t)blen;
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "error response");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_u64(&l, "status", status);
    tp__log_str(&l, "error", error);
    tp__log_str(&l, "details", details);
    tp__log_end(&l);
    server_release(x, TP_GROUP_ABANDONED);
    x->answered = true;
    x->deciding = x->forwarding = false;
    tp__conn_upstream_close(conn);
    x->server->answer(x, a, true);
}

/* An egress failure's answer: its status, error type, rcode and details. */
static void respond_failure(tp_exchange_t *x, const tp_failure_t *f) {
    x->rcode = f->rcode;
    x->alert_name = f->has_alert ? f->alert_name : NULL;
    x->alert_id = f->alert;
    tp__x_respond_error(x, f->status, f->error, f->details);
}

void tp__x_request_refused(tp_exchange_t *x, uint16_t status, const char *details) {
    x->conn->stats.reason = TP_CLOSE_PROTOCOL_ERROR;
    if (x->resp_head_sent) {
        /* A broken body once a response is on its way: nothing sane can follow; abort both. */
        tp__log_msg(TP_LOG_INFO, "bad request body", "conn %llu: %s",
                    (unsigned long long)x->conn->id, details);
        tp__conn_close(x->conn, TP_CLOSE_PROTOCOL_ERROR);
        return;
    }
    /* Also after the head went upstream: that connection is dropped mid-body, so the origin
     * never sees a complete request, and the client learns why. */
    tp__x_respond_error(x, status ? status : 400, "http_request_error", details);
}

/* Writes the response a hook built with tp_respond(); the request's body, if any, is then read
 * and dropped (the server codec decides), and the exchange ends. */
static void send_direct(tp_exchange_t *x) {
    tp_response_t *d = &x->req.direct;
    if (!d->status)
        d->status = 500;
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_DEBUG, "direct response");
    tp__log_u64(&l, "conn", x->conn->id);
    tp__log_u64(&l, "status", d->status);
    tp__log_end(&l);
    x->deciding = false;
    x->forwarding = true; /* the request body, if any, flows to the bin */
    x->answered = true;
    x->resp_started = x->resp_head_sent = x->resp_done = true;
    x->discard_body = true;
    x->server->answer(x, d, false);
}

/* ---- timeouts ---- */

uint64_t tp__x_deadline(const tp_exchange_t *x) {
    uint64_t next = x->resp_deadline;
    if (x->forwarding && !x->req_done && x->req_has_body && !x->discard_body) {
        uint64_t b = x->body_at + x->conn->ep->cfg->timeouts.body_read;
        if (!next || b < next)
            next = b;
    }
    return next;
}

/* The exchange's deadlines changed: the connection's protocol timer follows. */
static void rearm(tp_exchange_t *x) {
    x->conn->header_deadline = tp__x_deadline(x);
    tp__conn_rearm(x->conn);
}

bool tp__x_timeout(tp_exchange_t *x) {
    tp_conn_t *conn = x->conn;
    if (!x->forwarding)
        return false;
    uint64_t now = uv_now(&conn->worker->loop);
    if (x->resp_deadline && now >= x->resp_deadline) {
        tp__log_msg(TP_LOG_INFO, "upstream response timeout", "conn %llu",
                    (unsigned long long)conn->id);
        server_release(x, TP_GROUP_TIMEOUT);
        conn->stats.reason = TP_CLOSE_RESPONSE_TIMEOUT;
        if (x->resp_head_sent)
            tp__conn_close(conn, TP_CLOSE_RESPONSE_TIMEOUT);
        else
            tp__x_respond_error(x, 504, "http_response_timeout",
                                "no response head within timeouts.response");
        return true;
    }
    if (!x->req_done && x->req_has_body && now >= x->body_at + conn->ep->cfg->timeouts.body_read) {
        conn->stats.reason = TP_CLOSE_BODY_TIMEOUT;
        if (x->resp_head_sent)
            tp__conn_close(conn, TP_CLOSE_BODY_TIMEOUT);
        else
            tp__x_respond_error(x, 408, "http_request_error",
                                "request body stalled for timeouts.body_read");
        return true;
    }
    rearm(x); /* not yet: the next one */
    return true;
}

/* ---- body hooks ---- */

/* Appends to the held bytes; false past the endpoint's limit or out of memory. */
static bool body_hold(tp_exchange_t *x, tp_body_dir_t *d, const uint8_t *p, size_t n) {
    if (d->held_len + n > x->conn->ep->cfg->limits.max_body_buffer)
        return false;
    if (d->held_len + n > d->held_cap) {
        size_t cap = d->held_cap ? d->held_cap * 2 : 16384;
        while (cap < d->held_len + n)
            cap *= 2;
        uint8_t *m = realloc(d->held, cap);
        if (!m)
            return false;
        d->held = m;
        d->held_cap = cap;
    }
    memcpy(d->held + d->held_len, p, n);
    d->held_len += n;
    return true;
}

/* Passes body bytes on toward `dir`; `hold` keeps `p` alive (a slab) or is NULL (copied). */
static int body_emit(tp_exchange_t *x, int dir, tp_body_dir_t *d, tp_buf_t *hold, const uint8_t *p,
                     size_t n) {
    if (n == 0)
        return 0;
    d->out += n;
    if (d->has_cl && !d->will_change && d->out > d->cl) {
        tp__log_msg(TP_LOG_WARN, "a body hook made a Content-Length body longer", "conn %llu",
                    (unsigned long long)x->conn->id);
        tp__conn_close(x->conn, TP_CLOSE_INTERNAL);
        return TP_ERR_STATE;
    }
    return dir == TP_TO_UPSTREAM ? tp__h1c_send_body(x, hold, p, n)
                                 : x->server->send_body(x, hold, p, n);
}

static int response_head_out(tp_exchange_t *x);

/* Lets everything held go: the head (first time), the held bytes, then `b`'s bytes. */
static int body_flush(tp_exchange_t *x, int dir, tp_body_dir_t *d, tp_buf_t *slab, tp_body_t *b) {
    if (d->head_held) {
        d->head_held = false;
        int rc = dir == TP_TO_UPSTREAM ? tp__h1c_send_head(x) : response_head_out(x);
        if (rc != 0 || x->conn->closing)
            return TP_ERR_CLOSED;
    }
    if (d->held_len) {
        size_t n = d->held_len;
        d->held_len = 0;
        if (body_emit(x, dir, d, NULL, d->held, n) != 0)
            return TP_ERR_CLOSED;
    }
    if (b && b->len && body_emit(x, dir, d, b->own ? NULL : slab, b->data, b->len) != 0)
        return TP_ERR_CLOSED;
    return 0;
}

/* A body hook blocked, or its held bytes overflowed: answer if nothing went out yet, else abort. */
static void body_refuse(tp_exchange_t *x, uint16_t status, const char *error, const char *details) {
    x->conn->stats.reason = TP_CLOSE_BLOCKED;
    if (x->resp_head_sent) { /* the client already has a response head: only an abort is left */
        tp__conn_close(x->conn, TP_CLOSE_BLOCKED);
        return;
    }
    tp__x_respond_error(x, status, error, details);
}

/* Runs the body hook on one chunk (or the end) of `dir`'s body and does what it says. Returns 0
 * to go on, 1 when a watermark stopped the body, a negative error when the flow ended. */
static int body_run(tp_exchange_t *x, int dir, tp_buf_t *slab, const char *at, size_t len,
                    bool end) {
    tp_conn_t *conn = x->conn;
    tp_body_dir_t *d = &x->body[dir];
    tp_server_t *srv = conn->worker->server;
    tp_body_t b = {.data = (const uint8_t *)at, .len = len, .end = end, .dir = d};
    tp_body_decision_t (*hook)(void *, tp_request_t *, tp_body_t *) =
        dir == TP_TO_UPSTREAM ? srv->hooks.http_request.handle_request_body
                              : srv->hooks.http_request.handle_response_body;
    tp_body_decision_t dec = hook(srv->hooks.http_request.self, &x->req, &b);
    if (end)
        d->ended = true;
    bool req = dir == TP_TO_UPSTREAM;
    int rc = 0;
    if (conn->closing) {
        rc = TP_ERR_CLOSED;
    } else if (dec.action == TP_BODY_BLOCK) {
        body_refuse(x,
                    dec.status ? dec.status
                    : req      ? 403
                               : 502,
                    dec.error ? dec.error
                    : req     ? "http_request_denied"
                              : "http_response_content",
                    dec.details ? dec.details : "refused by a body hook");
        rc = TP_ERR_CLOSED;
    } else if (dec.action == TP_BODY_CONTINUE || end) { /* at the end, everything goes */
        rc = body_flush(x, dir, d, slab, &b);
        if (rc == 0 && end && d->has_cl && !d->will_change && d->out != d->cl) {
            tp__log_msg(TP_LOG_WARN, "a body hook changed a Content-Length body's length",
                        "conn %llu", (unsigned long long)conn->id);
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            rc = TP_ERR_CLOSED;
        }
    } else if (!body_hold(x, d, b.data, b.len)) {
        body_refuse(x, req ? 413 : 502, req ? "http_request_error" : "http_response_content",
                    "body hook held more than limits.max_body_buffer");
        rc = TP_ERR_CLOSED;
    } else if (dec.action == TP_BODY_WATERMARK) {
        d->watermark = true;
        if (req)
            x->server->request_flow(x, false);
        else
            tp__conn_upstream_read(conn, false);
        rc = 1;
    }
    free(b.own);
    return rc;
}

/* ---- CONNECT ---- */

static void connect_established(tp_conn_t *conn, const tp_failure_t *f) {
    tp_exchange_t *x = conn->x;
    tp_server_t *srv = conn->worker->server;
    if (conn->closing)
        return;
    if (f) {
        conn->stats.reason = f->reason;
        respond_failure(x, f);
        return;
    }
    x->connect_resp.status = 200;
    tp__conn_trace(conn, "http.handle_proxy_connect_response");
    if (srv->hooks.http_request.handle_proxy_connect_response)
        srv->hooks.http_request.handle_proxy_connect_response(srv->hooks.http_request.self, &x->req,
                                                              &x->connect_resp);
    if (conn->closing)
        return;
    x->deciding = false;
    x->server->tunnel(x, &x->connect_resp);
}

static void connect_decided(tp_conn_t *conn, tp_decision_t d) {
    tp_exchange_t *x = conn->x;
    if (conn->closing)
        return;
    if (d.verdict == TP_VERDICT_BLOCK) {
        conn->stats.reason = TP_CLOSE_BLOCKED;
        tp__x_respond_error(x, d.status ? d.status : 403, d.error ? d.error : "http_request_denied",
                            d.details);
        return;
    }
    if (d.verdict == TP_VERDICT_RESPOND) { /* the hook answered: no tunnel */
        send_direct(x);
        return;
    }
    if (d.verdict == TP_VERDICT_REDIRECT) { /* tunnel to the hook's address instead */
        tp_addr_format_ip(&d.addr, x->up_ip, sizeof(x->up_ip));
        tp__egress_start(conn, &x->req, x->up_ip, strlen(x->up_ip), tp_addr_port(&d.addr), NULL,
                         connect_established);
        return;
    }
    tp__egress_start(conn, &x->req, x->req.target.host.ptr, x->req.target.host.len,
                     x->req.target.port, NULL, connect_established);
}

/* ---- forwarding ---- */

static bool idempotent(const tp_request_t *req) {
    switch (req->method) {
    case TP_METHOD_GET:
    case TP_METHOD_HEAD:
    case TP_METHOD_OPTIONS:
    case TP_METHOD_TRACE:
    case TP_METHOD_PUT:
    case TP_METHOD_DELETE: return true;
    default: return false;
    }
}

/* Whether the request has a body (a stream, or a non-zero length). */
static bool request_has_body(const tp_request_t *req) {
    return req->framing == TP_FRAMING_STREAM || (req->framing == TP_FRAMING_LENGTH && req->length);
}

/* A request to a group server failed before any response byte: may it go to another server?
 * Only idempotent requests without a body (nothing of which has been consumed), within the
 * group's retries. */
static bool may_retry(tp_exchange_t *x) {
    tp_request_t *req = &x->req;
    if (req->group < 0 || x->resp_started || !idempotent(req) || x->redirected)
        return false;
    const tp_upstream_cfg_t *ucfg = tp__group_cfg(x->conn->worker->groups[req->group]);
    return !request_has_body(req) && req->tries <= (unsigned)ucfg->retries;
}

static void retry(tp_exchange_t *x, tp_group_outcome_t why) {
    tp_request_t *req = &x->req;
    tp__log_msg(TP_LOG_INFO, "retrying on another server", "conn %llu: %s:%u failed (try %u)",
                (unsigned long long)x->conn->id, req->server ? req->server->host : "?",
                req->server ? req->server->port : 0, req->tries);
    x->avoid = req->server;
    server_release(x, why);
    tp__conn_upstream_close(x->conn);
    x->forwarding = false;
    x->deciding = true;
    forward_start(x);
}

/* Whether the exchange's upstream connection may serve other clients: on an http endpoint, for a
 * server of a group, when nothing client-specific went on it (a redirect, a PROXY header). */
static bool pool_shared(const tp_exchange_t *x) {
    const tp_conn_t *conn = x->conn;
    return tp__onramp_routes(conn->ep->cfg->type) && x->req.server && !x->redirected &&
           conn->ep->cfg->egress.send_proxy_protocol == TP_PP_NONE;
}

static void forward_established(tp_conn_t *conn, const tp_failure_t *f) {
    tp_exchange_t *x = conn->x;
    if (conn->closing)
        return;
    if (f) {
        if (may_retry(x)) {
            retry(x, TP_GROUP_CONNECT_FAILED);
            return;
        }
        server_release(x, TP_GROUP_CONNECT_FAILED);
        conn->stats.reason = f->reason;
        respond_failure(x, f);
        return;
    }
    tp__h1c_begin(x);
    if (conn->up) {
        conn->up->pool_ok = pool_shared(x);
        conn->up->pool_group = x->req.group;
    }
    x->deciding = false;
    x->forwarding = true;
    /* The response's wait starts once the whole request went (set again at its end). */
    uint64_t now = uv_now(&conn->worker->loop);
    x->resp_deadline = now + conn->ep->cfg->timeouts.response;
    x->body_at = now;
    tp_request_t *req = &x->req;
    tp_server_t *srv = conn->worker->server;
    x->req_has_body = request_has_body(req);
    if (req->expect_continue && srv->hooks.http_request.handle_request_body && x->req_has_body) {
        /* The head waits for the body hook's first chunk, which waits for the client, which waits
         * for a 100: Turnpike answers the expectation itself (RFC 9110 10.1.1). */
        tp__edits_remove(&req->edits, "expect");
        if (x->server->send_interim(x, 100, NULL, NULL) != 0)
            return;
    }
    tp_body_dir_t *bd = &x->body[TP_TO_UPSTREAM];
    bd->active = x->req_has_body && srv->hooks.http_request.handle_request_body;
    bd->will_change = bd->active && req->body_will_change;
    bd->has_cl = req->framing == TP_FRAMING_LENGTH;
    bd->cl = bd->has_cl ? req->length : 0;
    if (bd->active) {
        bd->head_held = true; /* the head goes with the first chunk the body hook lets go */
    } else if (tp__h1c_send_head(x) != 0) {
        return;
    }
    if (x->req_has_body)
        x->resp_deadline = 0;
    if (conn->closing)
        return;
    tp__conn_upstream_read(conn, true);
    rearm(x);
    x->server->resume(x); /* the body, from what is already read */
}

/* The hash key of a request for its group's consistent hash: the client's IP or a header. */
static tp_str_t hash_key(tp_exchange_t *x, const tp_upstream_cfg_t *ucfg, char *buf, size_t cap) {
    if (ucfg->hash_key && strncmp(ucfg->hash_key, "header:", 7) == 0)
        return tp_request_header(&x->req, ucfg->hash_key + 7);
    tp_addr_format_ip(tp_conn_peer(x->conn), buf, cap);
    return (tp_str_t){buf, strlen(buf)};
}

/*
 * Hands the connection's idle kept-alive upstream to the worker's pool, when other clients may use
 * it: when the client connection ends, or its next request goes to another server. (Between two
 * requests to the same server it stays with the client connection: no pool traffic per request.)
 */
void tp__x_park_upstream(tp_exchange_t *x) {
    tp_conn_t *conn = x->conn;
    tp_upstream_t *up = conn->up;
    if (!up || !up->pool_ok || !x->up.keep_alive || up->eof || (x->forwarding && !x->resp_done) ||
        up->pool_group < 0)
        return;
    const tp_upstream_cfg_t *ucfg = tp__group_cfg(conn->worker->groups[up->pool_group]);
    tp_upstream_t *d = tp__conn_upstream_detach(conn);
    if (d)
        tp__pool_park(conn->worker->pool, d, conn->ep->index, (size_t)ucfg->keepalive.max_idle,
                      ucfg->keepalive.idle_timeout);
}

/* Whether `up` is a live kept-alive connection to host:port made with the exchange's TLS (a TLS
 * and a plain connection, or two TLS configurations, are never taken for each other). */
static bool upstream_serves(const tp_exchange_t *x, const tp_upstream_t *up, tp_str_t host,
                            uint16_t port) {
    return up && !up->eof && x->up.keep_alive &&
           tp__pool_same_dest(up, host.ptr, host.len, port, x->up_tls.client, x->up_tls.name);
}

/*
 * The TLS of the request's upstream connection: its group's `tls` (SNI and name: server_name or
 * the server's host; the session kept per server), or for an https:// target on a forward proxy
 * the endpoint's origin_tls (the target's host). A redirect keeps it, checked against the
 * address redirected to.
 */
static void choose_tls(tp_exchange_t *x, const tp_group_server_t *s) {
    tp_conn_t *conn = x->conn;
    tp_server_t *srv = conn->worker->server;
    tp_request_t *req = &x->req;
    x->up_tls = (tp_egress_tls_t){0};
    if (req->group >= 0) {
        const tp_upstream_cfg_t *ucfg = tp__group_cfg(conn->worker->groups[req->group]);
        if (ucfg->tls)
            x->up_tls = (tp_egress_tls_t){.client = srv->tls_upstreams[req->group],
                                          .name = ucfg->tls->server_name,
                                          .session = s ? s->tls_session : NULL};
    } else if (req->target.https && srv->tls_origins) {
        x->up_tls.client = srv->tls_origins[conn->ep->index];
        if (x->up_tls.client && x->up_tls.client->cfg->session_resumption)
            x->up_tls.session = tp__tls_origin_session(conn->worker, req->target.host.ptr,
                                                       req->target.host.len, req->target.port);
        if (x->up_tls.session)
            x->up_tls.session_key = x->up_tls.session->key;
    }
}

/* Where the request goes: a redirect, a group's server, or (forward proxy) its target. */
static void forward_start(tp_exchange_t *x) {
    tp_conn_t *conn = x->conn;
    tp_request_t *req = &x->req;
    if (x->redirected) {
        choose_tls(x, NULL);
        tp_addr_format_ip(&x->redirect_to, x->up_ip, sizeof(x->up_ip));
        x->up_host = (tp_str_t){x->up_ip, strlen(x->up_ip)};
        x->up_port = tp_addr_port(&x->redirect_to);
    } else if (tp__onramp_routes(conn->ep->cfg->type)) {
        if (req->group < 0) {
            conn->stats.reason = TP_CLOSE_BLOCKED;
            tp__x_respond_error(x, 404, "destination_not_found", "no route for this request");
            return;
        }
        tp_group_t *g = conn->worker->groups[req->group];
        char kb[TP_ADDR_STRLEN];
        tp_str_t key = hash_key(x, tp__group_cfg(g), kb, sizeof(kb));
        tp_group_server_t *s = tp__group_pick(g, key, x->avoid, true);
        x->avoid = NULL;
        if (!s) {
            conn->stats.reason = TP_CLOSE_UPSTREAM_FAILED;
            tp__x_respond_error(x, 503, "destination_unavailable",
                                "no server in the upstream group");
            return;
        }
        const tp_upstream_cfg_t *ucfg = tp__group_cfg(g);
        tp_str_t sh = {s->host, strlen(s->host)};
        choose_tls(x, s);
        bool have = upstream_serves(x, conn->up, sh, s->port);
        if (!have && conn->ep->cfg->egress.send_proxy_protocol == TP_PP_NONE) {
            tp__x_park_upstream(x); /* the one it has goes elsewhere: others may use it */
            tp_upstream_t *up = tp__pool_take(conn->worker->pool, conn->ep->index, s->host, sh.len,
                                              s->port, x->up_tls.client, x->up_tls.name);
            if (up) {
                tp__conn_upstream_attach(conn, up);
                x->up.keep_alive = true;
                have = true;
            }
        }
        /* Not taken from the pool: the server has no idle connection, only busy ones. */
        if (!have && ucfg->keepalive.max_total &&
            s->inflight >= (uint64_t)ucfg->keepalive.max_total) {
            conn->stats.reason = TP_CLOSE_UPSTREAM_FAILED;
            tp__x_respond_error(
                x, 503, "connection_limit_reached",
                "the server's connections (upstreams[].keepalive.max_total) are all busy");
            return;
        }
        tp__group_acquire(g, s);
        req->server = s;
        req->tries++;
        x->up_host = sh;
        x->up_port = s->port;
    } else {
        choose_tls(x, NULL);
        x->up_host = req->target.host;
        x->up_port = req->target.port;
    }
    if (upstream_serves(x, conn->up, x->up_host, x->up_port)) {
        /* The last exchange left a live keep-alive connection to the same origin. */
        x->upstream_reused = true;
        forward_established(conn, NULL);
        return;
    }
    tp__conn_upstream_close(conn);
    tp__egress_start(conn, req, x->up_host.ptr, x->up_host.len, x->up_port, &x->up_tls,
                     forward_established);
}

static void request_decided(tp_conn_t *conn, tp_decision_t d) {
    tp_exchange_t *x = conn->x;
    x->req.editable = false;
    if (conn->closing)
        return;
    switch (d.verdict) {
    case TP_VERDICT_BLOCK:
        conn->stats.reason = TP_CLOSE_BLOCKED;
        tp__x_respond_error(x, d.status ? d.status : 403, d.error ? d.error : "http_request_denied",
                            d.details);
        return;
    case TP_VERDICT_RESPOND: send_direct(x); return;
    case TP_VERDICT_REDIRECT:
        x->redirected = true;
        x->redirect_to = d.addr;
        forward_start(x);
        return;
    default: forward_start(x); return;
    }
}

/* ---- events from the server codec ---- */

void tp__x_request_head(tp_exchange_t *x, uint16_t refuse, const char *detail) {
    tp_conn_t *conn = x->conn;
    tp_request_t *req = &x->req;
    tp_server_t *srv = conn->worker->server;
    const tp_endpoint_cfg_t *cfg = conn->ep->cfg;
    conn->stats.requests++;
    conn->x = x;
    x->deciding = true;
    x->redirected = false;
    x->avoid = NULL;
    x->body_in = 0;
    const tp_ext_spec_t *spec = &srv->app->ext[TP_EXT_REQUEST];
    if (spec->size && !req->ext) {
        req->ext = calloc(1, spec->size);
        if (!req->ext) {
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            return;
        }
        if (spec->init)
            spec->init(req->ext, req);
    }
    if (refuse) {
        tp__x_respond_error(x, refuse, "http_request_error", detail);
        return;
    }
    uint64_t max_body = cfg->limits.max_body_size;
    if (max_body && !req->is_connect && req->framing == TP_FRAMING_LENGTH &&
        req->length > max_body) {
        conn->stats.reason = TP_CLOSE_PROTOCOL_ERROR;
        tp__x_respond_error(x, 413, "http_request_error", "request body over limits.max_body_size");
        return;
    }
    if (req->is_connect) {
        tp__conn_trace(conn, "http.handle_proxy_connect_request");
        tp_decision_t d = tp_allow();
        if (srv->hooks.http_request.handle_proxy_connect_request) {
            conn->in_decision = true;
            d = srv->hooks.http_request.handle_proxy_connect_request(srv->hooks.http_request.self,
                                                                     req);
            conn->in_decision = false;
        }
        tp__conn_decide(conn, d, connect_decided);
        return;
    }
    if (tp__onramp_routes(cfg->type)) {
        int r = tp__route_match(&cfg->routes, tp_request_method(req), req->target.host,
                                req->target.path);
        req->group = r >= 0 ? TP_LIST_AT(tp_route_cfg_t, cfg->routes, r)->upstream_index : -1;
    }
    req->editable = true;
    tp__conn_trace(conn, "http.handle_request");
    tp_decision_t d = tp_allow();
    if (srv->hooks.http_request.handle_request) {
        conn->in_decision = true;
        d = srv->hooks.http_request.handle_request(srv->hooks.http_request.self, req);
        conn->in_decision = false;
    }
    tp__conn_decide(conn, d, request_decided);
}

int tp__x_request_body(tp_exchange_t *x, tp_buf_t *hold, const char *at, size_t len) {
    tp_conn_t *conn = x->conn;
    x->body_at = uv_now(&conn->worker->loop); /* the deadline follows lazily (timer_cb) */
    x->body_in += len;
    uint64_t max_body = conn->ep->cfg->limits.max_body_size;
    if (max_body && x->body_in > max_body) { /* a streamed body grew past the limit */
        conn->stats.reason = TP_CLOSE_PROTOCOL_ERROR;
        if (x->resp_head_sent)
            tp__conn_close(conn, TP_CLOSE_PROTOCOL_ERROR);
        else
            tp__x_respond_error(x, 413, "http_request_error",
                                "request body over limits.max_body_size");
        return TP_ERR_CLOSED;
    }
    if (x->discard_body)
        return 0;
    int rc = x->body[TP_TO_UPSTREAM].active ? body_run(x, TP_TO_UPSTREAM, hold, at, len, false)
                                            : tp__h1c_send_body(x, hold, (const uint8_t *)at, len);
    if (rc == 0 && conn->queued[TP_TO_UPSTREAM] > conn->ep->cfg->high_watermark)
        x->server->request_flow(x, false);
    return rc;
}

void tp__x_request_end(tp_exchange_t *x, const tp_http_head_t *trailers, size_t from) {
    tp_conn_t *conn = x->conn;
    tp_body_dir_t *bd = &x->body[TP_TO_UPSTREAM];
    if (!x->discard_body) {
        if (bd->active && !bd->ended &&
            (body_run(x, TP_TO_UPSTREAM, NULL, NULL, 0, true) < 0 || conn->closing || x->answered))
            return;
        if (tp__h1c_send_end(x, trailers, from) != 0)
            return;
    }
    x->req_done = true;
    if (!x->resp_final && !x->discard_body && x->forwarding) {
        x->resp_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.response;
        rearm(x);
    }
    maybe_done(x);
}

void tp__x_client_written(tp_exchange_t *x) {
    tp_conn_t *conn = x->conn;
    if (conn->queued[TP_TO_CLIENT] <= conn->ep->cfg->high_watermark / 2 && x->forwarding &&
        !x->resp_done && !x->body[TP_TO_CLIENT].watermark && !x->up.rest)
        tp__conn_upstream_read(conn, true);
    maybe_done(x);
}

void tp__x_upstream_written(tp_exchange_t *x) {
    tp_conn_t *conn = x->conn;
    if (conn->queued[TP_TO_UPSTREAM] <= conn->ep->cfg->high_watermark / 2 && x->forwarding &&
        !x->req_done && !x->body[TP_TO_UPSTREAM].watermark)
        x->server->request_flow(x, true);
}

/* ---- events from the client codec ---- */

/* Sends the response head to the client (at once, or when the body hook lets the first chunk go).
 */
static int response_head_out(tp_exchange_t *x) {
    tp_response_t *resp = &x->fwd_resp;
    tp_body_dir_t *bd = &x->body[TP_TO_CLIENT];
    tp_http_framing_t framing = bd->has_cl && !bd->will_change ? TP_FRAMING_LENGTH
                                : x->resp_no_body              ? TP_FRAMING_NONE
                                                               : TP_FRAMING_STREAM;
    int rc = x->server->send_head(x, resp, framing, bd->cl, (tp_str_t){NULL, 0});
    if (rc == 0)
        x->resp_head_sent = true;
    return rc;
}

int tp__x_response_head(tp_exchange_t *x, uint16_t status, tp_http_framing_t framing,
                        uint64_t length, tp_str_t upgrade) {
    tp_conn_t *conn = x->conn;
    tp_request_t *req = &x->req;
    bool switching = status == 101;
    bool informational = status >= 100 && status < 200 && !switching;
    if (switching && (!req->upgrade || !upgrade.ptr))
        return TP_ERR_INVAL; /* a 101 nobody asked for, or that names no protocol */
    if (informational)
        return x->server->send_interim(x, (uint16_t)status, &x->up.head, NULL);
    tp_response_t *resp = &x->fwd_resp;
    tp__edits_free(&resp->edits);
    resp->status = resp->origin_status = status;
    resp->will_change = false;
    resp->head = &x->up.head;
    resp->nfields = x->up.nhead;
    tp_server_t *srv = conn->worker->server;
    tp__conn_trace(conn, "http.handle_response");
    if (srv->hooks.http_request.handle_response) {
        resp->editable = true;
        srv->hooks.http_request.handle_response(srv->hooks.http_request.self, req, resp);
        resp->editable = false;
        if (conn->closing)
            return TP_ERR_CLOSED;
    }
    x->resp_no_body = req->method == TP_METHOD_HEAD || switching || status == 204 || status == 304;
    tp_body_dir_t *bd = &x->body[TP_TO_CLIENT];
    bd->active = !x->resp_no_body && srv->hooks.http_request.handle_response_body;
    bd->will_change = bd->active && resp->will_change;
    bd->has_cl = framing == TP_FRAMING_LENGTH;
    bd->cl = bd->has_cl ? length : 0;
    if (req->upgrade && !switching)
        x->close_after = true; /* a declined upgrade: the parser stays out of step; start anew */
    x->resp_final = true;
    x->resp_deadline = 0;
    rearm(x);
    if (switching) {
        int rc = x->server->send_head(x, resp, TP_FRAMING_NONE, 0, upgrade);
        if (rc == 0)
            x->resp_head_sent = true;
        return rc;
    }
    if (bd->active) { /* the head goes with the first chunk the body hook lets go */
        bd->head_held = true;
        return 0;
    }
    return response_head_out(x);
}

int tp__x_response_body(tp_exchange_t *x, tp_buf_t *hold, const char *at, size_t len) {
    tp_conn_t *conn = x->conn;
    x->resp_bytes += len;
    int rc = x->body[TP_TO_CLIENT].active ? body_run(x, TP_TO_CLIENT, hold, at, len, false)
                                          : x->server->send_body(x, hold, (const uint8_t *)at, len);
    if (rc == 0 && conn->queued[TP_TO_CLIENT] > conn->ep->cfg->high_watermark)
        tp__conn_upstream_read(conn, false);
    return rc;
}

int tp__x_response_end(tp_exchange_t *x) {
    tp_body_dir_t *bd = &x->body[TP_TO_CLIENT];
    if (bd->active && !bd->ended &&
        (body_run(x, TP_TO_CLIENT, NULL, NULL, 0, true) < 0 || x->conn->closing))
        return TP_ERR_CLOSED;
    if (x->server->send_end(x, &x->up.head, x->up.nhead) != 0)
        return TP_ERR_CLOSED;
    x->resp_done = true;
    return 0;
}

void tp__x_response_failed(tp_exchange_t *x, ssize_t nread, const char *why) {
    tp_conn_t *conn = x->conn;
    x->up.keep_alive = false;
    if (!x->resp_started && !x->upstream_reused && may_retry(x)) {
        retry(x, nread < 0 ? TP_GROUP_RESET : TP_GROUP_OK);
        return;
    }
    if (!x->resp_started && x->upstream_reused && !x->req_has_body) {
        /* A kept-alive connection the origin closed while it sat idle: nothing of the request
         * can have been processed, so it goes again on a fresh connection, once. */
        tp__log_msg(TP_LOG_DEBUG, "retrying on a fresh upstream connection", "conn %llu",
                    (unsigned long long)conn->id);
        x->upstream_reused = false;
        x->forwarding = false;
        x->deciding = true;
        tp__conn_upstream_close(conn);
        tp__egress_start(conn, &x->req, x->up_host.ptr, x->up_host.len, x->up_port, &x->up_tls,
                         forward_established);
        return;
    }
    server_release(x, nread > 0 ? TP_GROUP_OK : TP_GROUP_RESET);
    if (!x->resp_head_sent) {
        const char *details = nread == UV_EOF ? "origin closed before a complete response head"
                              : nread < 0     ? uv_strerror((int)nread)
                                              : why;
        conn->stats.reason = TP_CLOSE_UPSTREAM_CLOSED;
        tp__x_respond_error(x, 502, nread > 0 ? "http_protocol_error" : "http_response_incomplete",
                            details);
    } else {
        /* The response is partly out: abort, so the client never sees it as complete. */
        tp__conn_close(conn, nread < 0 && nread != UV_EOF ? TP_CLOSE_UPSTREAM_RESET
                                                          : TP_CLOSE_UPSTREAM_CLOSED);
    }
}

void tp__x_response_complete(tp_exchange_t *x) {
    if (!x->req_done) {
        /* The origin answered before the whole request body came: finish, then close. */
        x->close_after = true;
        x->req_done = true;
    }
    maybe_done(x);
}

void tp__x_upgraded(tp_exchange_t *x, tp_buf_t *b, const char *rest, size_t n) {
    server_release(x, TP_GROUP_OK);
    x->resp_deadline = 0;
    x->forwarding = false;
    x->conn->header_deadline = 0;
    tp__log_msg(TP_LOG_DEBUG, "upgraded", "conn %llu", (unsigned long long)x->conn->id);
    if (n) { /* the upstream's first tunnel bytes came with its head */
        uv_buf_t ub = uv_buf_init((char *)rest, (unsigned)n);
        if (tp__conn_write(x->conn, TP_TO_CLIENT, &ub, 1, b, NULL) != 0) {
            tp__buf_unref(b);
            return;
        }
    }
    tp__buf_unref(b);
    x->server->upgraded(x);
}

static void maybe_done(tp_exchange_t *x) {
    if (!x->req_done || !x->resp_done || !x->forwarding)
        return;
    /* Wait until the response is written out before starting on the next request. */
    if (x->conn->queued[TP_TO_CLIENT] > 0)
        return;
    server_release(x, TP_GROUP_OK);
    /* A kept upstream stays read: if it speaks or closes while idle, it is dropped then. */
    x->server->done(x);
}

/* ---- public accessors ---- */

tp_str_t tp_request_method(const tp_request_t *req) {
    return tp__head_str(req->head, req->head->first);
}
tp_str_t tp_request_target(const tp_request_t *req) {
    return tp__head_str(req->head, req->head->url);
}
tp_str_t tp_request_host(const tp_request_t *req) { return req->target.host; }
uint16_t tp_request_port(const tp_request_t *req) { return req->target.port; }
tp_str_t tp_request_header(const tp_request_t *req, const char *name) {
    if (!name)
        return (tp_str_t){NULL, 0};
    if (!tp__edits_removed(&req->edits, (tp_str_t){name, strlen(name)})) {
        tp_str_t v = tp__head_get(req->head, name);
        if (v.ptr)
            return v;
    }
    return tp__edits_get(&req->edits, name);
}
tp_conn_t *tp_request_conn(const tp_request_t *req) { return req->conn; }
void *tp__request_ext(tp_request_t *req) { return req->ext; }
const void *tp__request_app_settings(const tp_request_t *req) {
    return req->conn->worker->server->cfg.app;
}
const void *tp__request_endpoint_settings(const tp_request_t *req) {
    return req->conn->ep->cfg->app;
}
tp_pending_t *tp__pending_new_request(tp_request_t *req, uint64_t timeout_ms) {
    return tp__pending_new_conn(req->conn, timeout_ms);
}
tp_pending_t *tp__pending_new_egress(tp_egress_t *eg, uint64_t timeout_ms) {
    return tp__pending_new_conn(eg->conn, timeout_ms);
}

uint16_t tp_response_status(const tp_response_t *resp) { return resp->status; }

int tp_response_add_header(tp_response_t *resp, const char *name, const char *value) {
    return tp__edits_add(&resp->edits, name, value);
}

bool tp__request_trusted(const tp_request_t *req) { return req->server != NULL; }

tp_str_t tp_request_path(const tp_request_t *req) {
    if (req->path)
        return (tp_str_t){req->path, strlen(req->path)};
    if (req->target.path.len == 0 || req->target.path.ptr[0] != '/')
        return (tp_str_t){"/", 1};
    return req->target.path;
}

int tp_request_set_path(tp_request_t *req, const char *path) {
    if (!req->editable)
        return TP_ERR_STATE;
    if (!path || path[0] != '/')
        return TP_ERR_INVAL;
    size_t n = strlen(path);
    if (n > 8192)
        return TP_ERR_TOO_LARGE;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] <= 0x20 || path[i] == 0x7f)
            return TP_ERR_INVAL;
    char *p = strdup(path);
    if (!p)
        return TP_ERR_NOMEM;
    free(req->path);
    req->path = p;
    return 0;
}

int tp_request_set_header(tp_request_t *req, const char *name, const char *value) {
    return req->editable ? tp__edits_set(&req->edits, name, value) : TP_ERR_STATE;
}
int tp_request_add_header(tp_request_t *req, const char *name, const char *value) {
    return req->editable ? tp__edits_add(&req->edits, name, value) : TP_ERR_STATE;
}
int tp_request_remove_header(tp_request_t *req, const char *name) {
    return req->editable ? tp__edits_remove(&req->edits, name) : TP_ERR_STATE;
}

int tp_request_set_upstream(tp_request_t *req, const char *name) {
    if (!req->editable || !tp__onramp_routes(req->conn->ep->cfg->type))
        return TP_ERR_STATE;
    const tp_list_t *ups = &req->conn->worker->server->cfg.upstreams;
    for (size_t i = 0; name && i < ups->n; i++)
        if (strcmp(TP_LIST_AT(tp_upstream_cfg_t, *ups, i)->name, name) == 0) {
            req->group = (int)i;
            return 0;
        }
    return TP_ERR_NOTFOUND;
}

tp_decision_t tp_respond(tp_request_t *req, uint16_t status, const char *content_type,
                         const void *body, size_t len) {
    if (status < 200 || status > 599 || len > TP_MIB(16) || (len && !body) ||
        (content_type && tp__edits_set(&req->direct.edits, "Content-Type", content_type) != 0))
        return tp_block(500, "proxy_internal_error");
    char *copy = NULL;
    if (len && !(copy = malloc(len)))
        return tp_block(500, "proxy_internal_error");
    if (len)
        memcpy(copy, body, len);
    free(req->direct.body);
    req->direct.body = copy;
    req->direct.body_len = len;
    req->direct.status = status;
    tp_decision_t d = {.verdict = TP_VERDICT_RESPOND, .status = status};
    return d;
}

tp_response_t *tp_request_response(tp_request_t *req) { return &req->direct; }

tp_str_t tp_response_header(const tp_response_t *resp, const char *name) {
    size_t nl = name ? strlen(name) : 0;
    if (resp->head && resp->editable && !tp__edits_removed(&resp->edits, (tp_str_t){name, nl})) {
        tp_str_t v = tp__head_get(resp->head, name);
        if (v.ptr)
            return v;
    }
    return name ? tp__edits_get(&resp->edits, name) : (tp_str_t){NULL, 0};
}

int tp_response_set_status(tp_response_t *resp, uint16_t status) {
    if (!resp->editable)
        return TP_ERR_STATE;
    if (status < 200 || status > 599)
        return TP_ERR_INVAL;
    resp->status = status;
    return 0;
}

int tp_response_set_header(tp_response_t *resp, const char *name, const char *value) {
    return tp__edits_set(&resp->edits, name, value);
}
int tp_response_remove_header(tp_response_t *resp, const char *name) {
    return tp__edits_remove(&resp->edits, name);
}

/* ---- bodies ---- */

const uint8_t *tp_body_data(const tp_body_t *body, size_t *len) {
    *len = body->len;
    return body->data;
}
bool tp_body_is_end(const tp_body_t *body) { return body->end; }
const uint8_t *tp_body_held(const tp_body_t *body, size_t *len) {
    *len = body->dir->held_len;
    return body->dir->held;
}

int tp_body_rewrite(tp_body_t *body, const void *data, size_t len) {
    if (len > TP_MIB(16))
        return TP_ERR_TOO_LARGE;
    uint8_t *own = len ? malloc(len) : NULL;
    if (len && !own)
        return TP_ERR_NOMEM;
    if (len)
        memcpy(own, data, len);
    free(body->own);
    body->own = own;
    body->data = own;
    body->len = len;
    return 0;
}

int tp_body_rewrite_held(tp_body_t *body, const void *data, size_t len) {
    tp_body_dir_t *d = body->dir;
    if (len > TP_MIB(16))
        return TP_ERR_TOO_LARGE;
    if (len > d->held_cap) {
        uint8_t *m = realloc(d->held, len);
        if (!m)
            return TP_ERR_NOMEM;
        d->held = m;
        d->held_cap = len;
    }
    memmove(d->held, data, len);
    d->held_len = len;
    return 0;
}

int tp_body_resume(tp_request_t *req, bool response) {
    tp_exchange_t *x = req->x;
    tp_conn_t *conn = x->conn;
    int dir = response ? TP_TO_CLIENT : TP_TO_UPSTREAM;
    tp_body_dir_t *d = &x->body[dir];
    if (conn->closing || !d->watermark)
        return TP_ERR_STATE;
    d->watermark = false;
    tp__conn_cork(conn, dir);
    int rc = body_flush(x, dir, d, NULL, NULL);
    tp__conn_uncork(conn, dir);
    if (rc != 0 || conn->closing)
        return 0;
    if (!response)
        x->server->resume(x); /* parses what is left, and reads again */
    else
        tp__h1c_resume(x);
    return 0;
}

int tp_request_body_will_change(tp_request_t *req) {
    if (!req->editable)
        return TP_ERR_STATE;
    req->body_will_change = true;
    return 0;
}

int tp_response_body_will_change(tp_response_t *resp) {
    if (!resp->editable)
        return TP_ERR_STATE;
    resp->will_change = true;
    return 0;
}
