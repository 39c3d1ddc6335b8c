/* http_proxy.c: the HTTP/1.1 forward proxy on-ramp: absolute-form requests and CONNECT tunnels. */
#include <inttypes.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "h1/head.h"
#include "h1/request.h"
#include "util/fmt.h"
#include "runtime/core.h"
#include "runtime/log.h"

/* Where the exchange on a connection stands. */
typedef enum h1_state {
    H1_HEAD,       /* reading a request head */
    H1_DECIDING,   /* a hook or the egress set-up is in progress; new client bytes wait */
    H1_FORWARDING, /* request head sent upstream; body and response stream */
    H1_LINGER,     /* an error answer is out; discarding input until EOF or a short deadline */
} h1_state_t;

struct tp_response {
    uint16_t status;
    char *extra; /* added header lines, "Name: value\r\n"... */
    size_t extra_len;
    unsigned nextra;
};

struct tp_request {
    tp_conn_t *conn;
    tp_h1_req_t *rq;       /* its parser, which holds the head */
    tp_h1_target_t target; /* host, port and path, inside the head */
    bool is_connect;
    void *ext;
};

struct tp_h1 {
    h1_state_t state;
    tp_h1_req_t rq; /* requests from the client */
    llhttp_t sp;    /* responses from the upstream */
    tp_request_t req;
    tp_h1_head_t resp_head;
    tp_response_t connect_resp;
    tp_buf_t *in; /* unparsed client bytes (reads are off while it is set) */
    size_t in_off, in_len;
    tp_buf_t *cur; /* the slab the parser is running over, for zero-copy forwarding */
    bool req_started, req_done, req_body_chunked;
    bool resp_started, resp_head_sent, resp_done, resp_chunked_out, resp_close_delimited;
    bool resp_no_body;
    bool client_keep_alive, upstream_keep_alive, close_after;
    bool drain;
    bool upstream_reused;
    bool req_has_body;
    const char *rcode; /* a DNS rcode for the next error answer's Proxy-Status */
    uint64_t resp_bytes;
};

static const llhttp_settings_t resp_settings;
static void on_req_begin(void *ctx);
static int on_req_body(void *ctx, const char *at, size_t len);

static void client_parse(tp_conn_t *conn);
static void respond_error(tp_conn_t *conn, uint16_t status, const char *error, const char *details,
                          bool is_connect);
static void respond_failure(tp_conn_t *conn, const tp_failure_t *f, bool is_connect);
static void linger_start(tp_conn_t *conn);

static const char *reason_phrase(unsigned status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* ---- state ---- */

static tp_h1_t *h1_new(tp_conn_t *conn) {
    const tp_endpoint_cfg_t *cfg = conn->ep->cfg;
    tp_h1_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (tp__h1_req_init(&h->rq, cfg->limits.max_header_bytes, (size_t)cfg->limits.max_headers,
                        conn) != 0 ||
        tp__h1_head_init(&h->resp_head, TP_KIB(64), 256) != 0) {
        tp__h1_req_free(&h->rq);
        free(h);
        return NULL;
    }
    h->rq.on_begin = on_req_begin;
    h->rq.on_body = on_req_body;
    h->req.conn = conn;
    h->req.rq = &h->rq;
    llhttp_init(&h->sp, HTTP_RESPONSE, &resp_settings);
    h->sp.data = conn;
    return h;
}

static void request_ext_free(tp_conn_t *conn) {
    tp_request_t *req = &conn->h1->req;
    if (!req->ext)
        return;
    const tp_ext_spec_t *spec = &conn->worker->server->app->ext[TP_EXT_REQUEST];
    if (spec->free)
        spec->free(req->ext);
    free(req->ext);
    req->ext = NULL;
}

void tp__h1_state_free(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    request_ext_free(conn);
    if (h->in)
        tp__buf_unref(h->in);
    tp__h1_req_free(&h->rq);
    tp__h1_head_free(&h->resp_head);
    free(h->connect_resp.extra);
    free(h);
    conn->h1 = NULL;
}

/* Makes the connection ready for its next request. */
static void exchange_reset(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    request_ext_free(conn);
    tp__h1_req_next(&h->rq);
    tp__h1_head_reset(&h->resp_head);
    memset(&h->req.target, 0, sizeof(h->req.target));
    h->req.is_connect = false;
    h->state = H1_HEAD;
    h->req_started = h->req_done = h->req_body_chunked = false;
    h->resp_started = h->resp_head_sent = h->resp_done = false;
    h->resp_chunked_out = h->resp_close_delimited = h->resp_no_body = false;
    h->upstream_reused = false;
    h->resp_bytes = 0;
    free(h->connect_resp.extra);
    memset(&h->connect_resp, 0, sizeof(h->connect_resp));
}

/* ---- request parser callbacks ---- */

static void on_req_begin(void *ctx) {
    tp_conn_t *conn = ctx;
    conn->h1->req_started = true;
    if (!conn->header_deadline) {
        conn->header_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.header_read;
        tp__conn_rearm(conn);
    }
}

static int send_chunk(tp_conn_t *conn, int dir, tp_buf_t *hold, const char *at, size_t len,
                      bool chunked) {
    if (!chunked) {
        uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
        return tp__conn_write(conn, dir, &b, 1, hold, NULL);
    }
    char *frame = malloc(24);
    if (!frame) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    size_t n = tp__fmt_hex(frame, len);
    frame[n++] = '\r';
    frame[n++] = '\n';
    uv_buf_t b[3] = {uv_buf_init(frame, (unsigned)n), uv_buf_init((char *)at, (unsigned)len),
                     uv_buf_init("\r\n", 2)};
    return tp__conn_write(conn, dir, b, 3, hold, frame);
}

static int on_req_body(void *ctx, const char *at, size_t len) {
    tp_conn_t *conn = ctx;
    tp_h1_t *h = conn->h1;
    if (send_chunk(conn, TP_TO_UPSTREAM, h->cur, at, len, h->req_body_chunked) != 0)
        return -1;
    if (conn->queued[TP_TO_UPSTREAM] > conn->ep->cfg->high_watermark)
        tp__conn_client_read(conn, false);
    return 0;
}

/* ---- responses Turnpike writes itself ---- */

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

/* An egress failure's answer: its status, error type, rcode and details. */
static void respond_failure(tp_conn_t *conn, const tp_failure_t *f, bool is_connect) {
    conn->h1->rcode = f->rcode;
    respond_error(conn, f->status, f->error, f->details, is_connect);
}

static void respond_error(tp_conn_t *conn, uint16_t status, const char *error, const char *details,
                          bool is_connect) {
    tp_h1_t *h = conn->h1;
    tp_server_t *srv = conn->worker->server;
    if (is_connect) {
        h->connect_resp.status = status;
        tp__conn_trace(conn, "http.handle_proxy_connect_response");
        if (srv->hooks.http_request.handle_proxy_connect_response)
            srv->hooks.http_request.handle_proxy_connect_response(srv->hooks.http_request.self,
                                                                  &h->req, &h->connect_resp);
        if (conn->closing)
            return;
    }
    char ps[320] = "";
    for (const char *c = error; c && *c; c++)
        if (!tp__h1_is_tchar((unsigned char)*c)) { /* an app's error type must be a token */
            tp__log_msg(TP_LOG_WARN, "invalid Proxy-Status error type from a hook", "%s", error);
            error = "proxy_internal_error";
            break;
        }
    if (error) {
        int n = snprintf(ps, sizeof(ps), "Proxy-Status: turnpike; error=%s", error);
        if (h->rcode && n > 0 && (size_t)n < sizeof(ps) - 40) /* RFC 9209 2.3.2 */
            n += snprintf(ps + n, sizeof(ps) - (size_t)n, "; rcode=\"%s\"", h->rcode);
        if (details && *details && n > 0 && (size_t)n < sizeof(ps) - 12) {
            memcpy(ps + n, "; details=", 10);
            sf_string(ps + n + 10, sizeof(ps) - (size_t)n - 12, details);
        }
        strncat(ps, "\r\n", sizeof(ps) - strlen(ps) - 1);
    }
    char body[256];
    int blen = snprintf(body, sizeof(body), "%u %s%s%s\n", status, reason_phrase(status),
                        details && *details ? ": " : "", details ? details : "");
    if (blen < 0 || (size_t)blen >= sizeof(body))
        blen = (int)strlen(body);
    size_t extra = h->connect_resp.extra_len;
    size_t cap = 256 + strlen(ps) + extra + (size_t)blen;
    char *out = malloc(cap);
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    int n = snprintf(out, cap,
                     "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n%s",
                     status, reason_phrase(status), blen, ps);
    size_t len = (size_t)n;
    if (extra) {
        memcpy(out + len, h->connect_resp.extra, extra);
        len += extra;
    }
    memcpy(out + len, "\r\n", 2);
    len += 2;
    memcpy(out + len, body, (size_t)blen);
    len += (size_t)blen;
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "error response");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_u64(&l, "status", status);
    tp__log_str(&l, "error", error);
    tp__log_str(&l, "details", details);
    tp__log_end(&l);
    /* Nothing more is read as requests; the answer goes out, then a lingering close. */
    h->state = H1_LINGER;
    h->close_after = true;
    if (h->in) {
        tp__buf_unref(h->in);
        h->in = NULL;
    }
    conn->header_deadline = 0;
    tp__conn_upstream_close(conn);
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    if (tp__conn_write(conn, TP_TO_CLIENT, &b, 1, NULL, out) != 0)
        return;
    tp__conn_client_read(conn, false);
    tp__conn_rearm(conn);
    if (conn->queued[TP_TO_CLIENT] == 0) /* it all went at once */
        linger_start(conn);
}

static void linger_start(tp_conn_t *conn) {
    /* The answer is written: say so with a FIN, then drop what the client still sends for a
     * moment, so that a reset does not destroy the answer before the client reads it. */
    tp__conn_shutdown(conn, TP_TO_CLIENT);
    conn->header_deadline = uv_now(&conn->worker->loop) + 2000;
    tp__conn_rearm(conn);
    tp__conn_client_read(conn, true);
}

void tp__http_proxy_timeout(tp_conn_t *conn, int which) {
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
        respond_error(conn, 408, "http_request_error", "request head not received in time", false);
        return;
    }
    tp__conn_close(conn, TP_CLOSE_HEADER_TIMEOUT);
}

/* ---- CONNECT ---- */

static void connect_established(tp_conn_t *conn, const tp_failure_t *f) {
    tp_h1_t *h = conn->h1;
    tp_server_t *srv = conn->worker->server;
    if (conn->closing)
        return;
    if (f) {
        conn->stats.reason = f->reason;
        respond_failure(conn, f, true);
        return;
    }
    h->connect_resp.status = 200;
    tp__conn_trace(conn, "http.handle_proxy_connect_response");
    if (srv->hooks.http_request.handle_proxy_connect_response)
        srv->hooks.http_request.handle_proxy_connect_response(srv->hooks.http_request.self, &h->req,
                                                              &h->connect_resp);
    if (conn->closing)
        return;
    static const char line[] = "HTTP/1.1 200 Connection established\r\n";
    size_t len = sizeof(line) - 1 + h->connect_resp.extra_len + 2;
    char *out = malloc(len);
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    memcpy(out, line, sizeof(line) - 1);
    if (h->connect_resp.extra_len)
        memcpy(out + sizeof(line) - 1, h->connect_resp.extra, h->connect_resp.extra_len);
    memcpy(out + len - 2, "\r\n", 2);
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    if (tp__conn_write(conn, TP_TO_CLIENT, &b, 1, NULL, out) != 0)
        return;
    tp_buf_t *early = h->in;
    size_t off = h->in_off, n = h->in_len;
    h->in = NULL;
    tp__tunnel_start(conn, early, early ? early->data + off : NULL, n);
    if (early)
        tp__buf_unref(early);
}

static void connect_decided(tp_conn_t *conn, tp_decision_t d) {
    tp_h1_t *h = conn->h1;
    if (conn->closing)
        return;
    if (d.verdict == TP_VERDICT_BLOCK) {
        conn->stats.reason = TP_CLOSE_BLOCKED;
        respond_error(conn, d.status ? d.status : 403, d.error ? d.error : "http_request_denied",
                      d.details, true);
        return;
    }
    if (d.verdict == TP_VERDICT_REDIRECT) { /* tunnel to the hook's address instead */
        char ip[TP_ADDR_STRLEN];
        tp_addr_format_ip(&d.addr, ip, sizeof(ip));
        tp__egress_start(conn, &h->req, ip, strlen(ip), tp_addr_port(&d.addr), connect_established);
        return;
    }
    tp__egress_start(conn, &h->req, h->req.target.host.ptr, h->req.target.host.len,
                     h->req.target.port, connect_established);
}

/* ---- absolute-form requests ---- */

/* Response parser callbacks. */
static int resp_head_cb(llhttp_t *p, int element, const char *at, size_t len) {
    tp_conn_t *conn = p->data;
    conn->h1->resp_started = true;
    return tp__h1_head_append(&conn->h1->resp_head, element, at, len) ? HPE_USER : 0;
}
static int resp_head_done(llhttp_t *p, int element) {
    tp_conn_t *conn = p->data;
    return tp__h1_head_complete(&conn->h1->resp_head, element) ? HPE_USER : 0;
}
static int on_status(llhttp_t *p, const char *at, size_t len) {
    return resp_head_cb(p, TP_H1_IN_FIRST, at, len);
}
static int on_status_done(llhttp_t *p) { return resp_head_done(p, TP_H1_IN_FIRST); }
static int on_rname(llhttp_t *p, const char *at, size_t len) {
    return resp_head_cb(p, TP_H1_IN_NAME, at, len);
}
static int on_rname_done(llhttp_t *p) { return resp_head_done(p, TP_H1_IN_NAME); }
static int on_rvalue(llhttp_t *p, const char *at, size_t len) {
    return resp_head_cb(p, TP_H1_IN_VALUE, at, len);
}
static int on_rvalue_done(llhttp_t *p) { return resp_head_done(p, TP_H1_IN_VALUE); }
static int on_resp_begin(llhttp_t *p) {
    tp_conn_t *conn = p->data;
    conn->h1->resp_started = true;
    return 0;
}

static void append(char **out, size_t *len, size_t *cap, const char *s, size_t n) {
    if (!*out)
        return;
    if (*len + n > *cap) {
        size_t nc = (*cap * 2 > *len + n) ? *cap * 2 : *len + n + 256;
        char *o = realloc(*out, nc);
        if (!o) {
            free(*out);
            *out = NULL;
            return;
        }
        *out = o;
        *cap = nc;
    }
    memcpy(*out + *len, s, n);
    *len += n;
}
#define APPEND_LIT(o, l, c, s) append(o, l, c, s, sizeof(s) - 1)

static void append_fields(char **out, size_t *len, size_t *cap, const tp_h1_head_t *hd,
                          bool skip_host) {
    for (size_t i = 0; i < hd->nfields; i++) {
        tp_str_t name = tp__h1_str(hd, hd->fields[i].name);
        if (tp__h1_is_hop_by_hop(hd, name))
            continue;
        if (skip_host && name.len == 4 && strncasecmp(name.ptr, "host", 4) == 0)
            continue;
        tp_str_t value = tp__h1_str(hd, hd->fields[i].value);
        append(out, len, cap, name.ptr, name.len);
        APPEND_LIT(out, len, cap, ": ");
        append(out, len, cap, value.ptr, value.len);
        APPEND_LIT(out, len, cap, "\r\n");
    }
}

static int on_resp_headers_done(llhttp_t *p) {
    tp_conn_t *conn = p->data;
    tp_h1_t *h = conn->h1;
    tp_h1_head_t *rh = &h->resp_head;
    unsigned status = p->status_code;
    bool head_req = h->rq.p.method == HTTP_HEAD;
    bool informational = status >= 100 && status < 200;
    if (status == 101) /* Upgrade is hop-by-hop and never forwarded, so 101 is a broken origin */
        return HPE_USER;
    h->upstream_keep_alive = llhttp_should_keep_alive(p);
    bool has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    h->resp_no_body = head_req || informational || status == 204 || status == 304;
    bool client_11 = h->rq.p.http_major == 1 && h->rq.p.http_minor >= 1;
    h->resp_chunked_out = false;
    h->resp_close_delimited = false;
    if (!h->resp_no_body && !has_cl) {
        if (client_11)
            h->resp_chunked_out = true; /* chunked in, or read-until-close: chunked out */
        else
            h->resp_close_delimited = true;
    }
    if (h->resp_close_delimited || h->drain || !h->client_keep_alive)
        h->close_after = !informational;

    size_t cap = rh->len + 256, len = 0;
    char *out = malloc(cap);
    char line[64];
    size_t n = tp__fmt_u64(line, status);
    APPEND_LIT(&out, &len, &cap, "HTTP/1.1 ");
    append(&out, &len, &cap, line, n);
    APPEND_LIT(&out, &len, &cap, " ");
    tp_str_t st = tp__h1_str(rh, rh->first);
    append(&out, &len, &cap, st.ptr, st.len);
    APPEND_LIT(&out, &len, &cap, "\r\n");
    append_fields(&out, &len, &cap, rh, false);
    if (has_cl && !chunked && status != 204 && !informational) { /* RFC 9110 8.6 */
        APPEND_LIT(&out, &len, &cap, "Content-Length: ");
        append(&out, &len, &cap, line, tp__fmt_u64(line, p->content_length));
        APPEND_LIT(&out, &len, &cap, "\r\n");
    }
    if (h->resp_chunked_out)
        APPEND_LIT(&out, &len, &cap, "Transfer-Encoding: chunked\r\n");
    if (h->close_after && !informational)
        APPEND_LIT(&out, &len, &cap, "Connection: close\r\n");
    APPEND_LIT(&out, &len, &cap, "\r\n");
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return HPE_USER;
    }
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    if (tp__conn_write(conn, TP_TO_CLIENT, &b, 1, NULL, out) != 0)
        return HPE_USER;
    if (!informational)
        h->resp_head_sent = true;
    tp__h1_head_reset(rh);
    if (h->resp_no_body) /* HEAD, 1xx, 204, 304: no body follows, whatever the headers say; */
        return 1;        /* bytes after the head are then not this response's (RFC 9112 6.3) */
    return 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t len) {
    tp_conn_t *conn = p->data;
    tp_h1_t *h = conn->h1;
    h->resp_bytes += len;
    if (send_chunk(conn, TP_TO_CLIENT, h->cur, at, len, h->resp_chunked_out) != 0)
        return HPE_USER;
    if (conn->queued[TP_TO_CLIENT] > conn->ep->cfg->high_watermark)
        tp__conn_upstream_read(conn, false);
    return 0;
}

static int on_resp_done(llhttp_t *p) {
    tp_conn_t *conn = p->data;
    tp_h1_t *h = conn->h1;
    if (!h->resp_head_sent) /* an interim (1xx) response: the final one follows */
        return 0;
    if (h->resp_chunked_out)
        tp__conn_write_copy(conn, TP_TO_CLIENT, "0\r\n\r\n", 5);
    h->resp_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_message_begin = on_resp_begin,
    .on_status = on_status,
    .on_status_complete = on_status_done,
    .on_header_field = on_rname,
    .on_header_field_complete = on_rname_done,
    .on_header_value = on_rvalue,
    .on_header_value_complete = on_rvalue_done,
    .on_headers_complete = on_resp_headers_done,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_done,
};

static void exchange_maybe_done(tp_conn_t *conn);

static void send_request_head(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->req;
    tp_h1_head_t *hd = &h->rq.head;
    llhttp_t *p = &h->rq.p;
    size_t cap = hd->len + 256, len = 0;
    char *out = malloc(cap);
    tp_str_t method = tp__h1_str(hd, hd->first);
    append(&out, &len, &cap, method.ptr, method.len);
    APPEND_LIT(&out, &len, &cap, " ");
    if (req->target.path.len == 0 || req->target.path.ptr[0] != '/')
        APPEND_LIT(&out, &len, &cap, "/");
    append(&out, &len, &cap, req->target.path.ptr, req->target.path.len);
    APPEND_LIT(&out, &len, &cap, " HTTP/1.1\r\nHost: ");
    if (memchr(req->target.host.ptr, ':', req->target.host.len)) {
        APPEND_LIT(&out, &len, &cap, "[");
        append(&out, &len, &cap, req->target.host.ptr, req->target.host.len);
        APPEND_LIT(&out, &len, &cap, "]");
    } else {
        append(&out, &len, &cap, req->target.host.ptr, req->target.host.len);
    }
    char line[64];
    if (req->target.port != 80) {
        APPEND_LIT(&out, &len, &cap, ":");
        append(&out, &len, &cap, line, tp__fmt_u64(line, req->target.port));
    }
    APPEND_LIT(&out, &len, &cap, "\r\n");
    append_fields(&out, &len, &cap, hd, true);
    h->req_body_chunked = (p->flags & F_CHUNKED) != 0;
    h->req_has_body = h->req_body_chunked || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    if (h->req_body_chunked) {
        APPEND_LIT(&out, &len, &cap, "Transfer-Encoding: chunked\r\n");
    } else if (p->flags & F_CONTENT_LENGTH) {
        APPEND_LIT(&out, &len, &cap, "Content-Length: ");
        append(&out, &len, &cap, line, tp__fmt_u64(line, p->content_length));
        APPEND_LIT(&out, &len, &cap, "\r\n");
    }
    APPEND_LIT(&out, &len, &cap, "\r\n");
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    tp__conn_write(conn, TP_TO_UPSTREAM, &b, 1, NULL, out);
}

static void forward_established(tp_conn_t *conn, const tp_failure_t *f) {
    tp_h1_t *h = conn->h1;
    if (conn->closing)
        return;
    if (f) {
        conn->stats.reason = f->reason;
        respond_failure(conn, f, false);
        return;
    }
    llhttp_init(&h->sp, HTTP_RESPONSE, &resp_settings);
    h->sp.data = conn;
    h->state = H1_FORWARDING;
    send_request_head(conn);
    if (conn->closing)
        return;
    tp__conn_upstream_read(conn, true);
    client_parse(conn); /* the body, from what is already read */
}

static void forward_start(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_str_t host = h->req.target.host;
    tp_upstream_t *up = conn->up;
    if (up && !up->eof && h->upstream_keep_alive && up->port == h->req.target.port &&
        strlen(up->host) == host.len && strncasecmp(up->host, host.ptr, host.len) == 0) {
        /* The last exchange left a live keep-alive connection to the same origin. */
        h->upstream_reused = true;
        tp_failure_t *none = NULL;
        forward_established(conn, none);
        return;
    }
    tp__conn_upstream_close(conn);
    tp__egress_start(conn, &h->req, h->req.target.host.ptr, h->req.target.host.len,
                     h->req.target.port, forward_established);
}

/* The request head is complete: validate it and start the exchange. */
static void on_head(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->req;
    tp_server_t *srv = conn->worker->server;
    conn->header_deadline = 0;
    tp__conn_rearm(conn);
    conn->stats.requests++;
    h->state = H1_DECIDING;
    h->client_keep_alive = llhttp_should_keep_alive(&h->rq.p);
    req->is_connect = h->rq.p.method == HTTP_CONNECT;

    const tp_ext_spec_t *spec = &srv->app->ext[TP_EXT_REQUEST];
    if (spec->size) {
        req->ext = calloc(1, spec->size);
        if (!req->ext) {
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            return;
        }
        if (spec->init)
            spec->init(req->ext, req);
    }
    const char *detail = NULL;
    int status = tp__h1_parse_target(&h->rq, &req->target, &detail);
    if (status) {
        respond_error(conn, (uint16_t)status, "http_request_error", detail, req->is_connect);
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
    forward_start(conn);
}

/* ---- the parse loop over client bytes ---- */

static void parse_failed(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    conn->stats.reason = TP_CLOSE_PROTOCOL_ERROR;
    if (h->state == H1_FORWARDING && h->resp_head_sent) {
        /* A broken body once a response is on its way: nothing sane can follow; abort both. */
        tp__log_msg(TP_LOG_INFO, "bad request body", "conn %llu: %s", (unsigned long long)conn->id,
                    h->rq.err_detail);
        tp__conn_close(conn, TP_CLOSE_PROTOCOL_ERROR);
        return;
    }
    /* Also after the head went upstream: respond_error drops that connection mid-body, so the
     * origin never sees a complete request, and the client learns why. */
    int status = h->rq.err_status ? h->rq.err_status : 400;
    respond_error(conn, (uint16_t)status, "http_request_error", h->rq.err_detail, false);
}

static void client_parse_run(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    while (!conn->closing && (h->state == H1_HEAD || (h->state == H1_FORWARDING && !h->req_done))) {
        if (!h->in && !h->rq.kick)
            break;
        tp_buf_t *cur = h->cur = h->in;
        if (cur)
            tp__buf_ref(cur);
        size_t used = 0;
        tp_h1_req_event_t ev = tp__h1_req_execute(&h->rq, cur ? cur->data + h->in_off : NULL,
                                                  cur ? h->in_len : 0, &used);
        h->cur = NULL;
        if (conn->closing) {
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
        if (ev == TP_H1_REQ_MORE)
            break;
        if (ev == TP_H1_REQ_ERROR) {
            parse_failed(conn);
            return;
        }
        if (ev == TP_H1_REQ_HEAD) {
            on_head(conn);
        } else if (ev == TP_H1_REQ_MESSAGE) {
            if (h->req_body_chunked)
                tp__conn_write_copy(conn, TP_TO_UPSTREAM, "0\r\n\r\n", 5);
            h->req_done = true;
            exchange_maybe_done(conn);
            return;
        }
    }
    if (conn->closing || h->state == H1_LINGER) /* lingering reads are linger_start()'s */
        return;
    /* Reading goes on between requests and while a response streams (no epoll churn); bytes
     * that arrive then wait in h->in, and reading stops until they are parsed. */
    bool want = !h->in && h->state != H1_LINGER &&
                conn->queued[TP_TO_UPSTREAM] <= conn->ep->cfg->high_watermark;
    tp__conn_client_read(conn, want);
}

/* Parses what the client sent; writes toward the upstream leave together at the end. */
static void client_parse(tp_conn_t *conn) {
    tp__conn_cork(conn, TP_TO_UPSTREAM);
    client_parse_run(conn);
    tp__conn_uncork(conn, TP_TO_UPSTREAM);
}

static void exchange_maybe_done(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    if (!h->req_done || !h->resp_done || h->state != H1_FORWARDING)
        return;
    /* Wait until the response is written out before starting on the next request. */
    if (conn->queued[TP_TO_CLIENT] > 0)
        return;
    if (h->close_after || conn->client_eof) {
        tp__conn_close(conn, conn->client_eof ? TP_CLOSE_CLIENT_CLOSED : TP_CLOSE_DONE);
        return;
    }
    /* A kept upstream stays read: if it speaks or closes while idle, it is dropped then. */
    if (!h->upstream_keep_alive || (conn->up && conn->up->eof))
        tp__conn_upstream_close(conn);
    exchange_reset(conn);
    client_parse(conn);
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
        if (h->req_started) {
            tp__log_msg(TP_LOG_INFO, "client closed mid-request", "conn %llu",
                        (unsigned long long)conn->id);
        }
        tp__conn_close(conn, TP_CLOSE_CLIENT_CLOSED);
        break;
    case H1_LINGER:
        tp__conn_close(conn, conn->stats.reason ? conn->stats.reason : TP_CLOSE_PROTOCOL_ERROR);
        break;
    case H1_DECIDING: break; /* the request head is complete; answer it, then close */
    case H1_FORWARDING:
        if (!h->req_done) {
            /* The request body was cut short: the origin must not see a complete request. */
            if (llhttp_finish(&h->rq.p) != HPE_OK || !h->req_done) {
                tp__conn_close(conn, TP_CLOSE_CLIENT_CLOSED);
                return;
            }
        }
        break;
    }
}

static void upstream_parse(tp_conn_t *conn, tp_buf_t *b, ssize_t nread);

/* Parses what the upstream sent; writes toward the client leave together at the end. */
static void on_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    tp__conn_cork(conn, TP_TO_CLIENT);
    upstream_parse(conn, b, nread);
    tp__conn_uncork(conn, TP_TO_CLIENT);
}

static void upstream_parse(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    tp_h1_t *h = conn->h1;
    if (h->state != H1_FORWARDING) {
        /* An idle keep-alive upstream spoke or closed: it cannot be reused. */
        if (b)
            tp__buf_unref(b);
        tp__conn_upstream_close(conn);
        return;
    }
    llhttp_errno_t e;
    if (nread > 0) {
        h->cur = b;
        e = llhttp_execute(&h->sp, b->data, (size_t)nread);
        h->cur = NULL;
        if (e == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&h->sp);
            if (pos != b->data + nread) {
                /* Bytes after a complete response: the origin broke keep-alive framing. */
                h->upstream_keep_alive = false;
            }
            llhttp_resume(&h->sp);
            e = HPE_OK;
        }
        tp__buf_unref(b);
    } else if (nread == UV_EOF) {
        e = h->resp_done ? HPE_OK : llhttp_finish(&h->sp);
        if (e == HPE_PAUSED)
            e = HPE_OK;
        h->upstream_keep_alive = false;
        if (e == HPE_OK && !h->resp_done) {
            e = HPE_INVALID_EOF_STATE;
        }
    } else {
        e = HPE_USER;
        h->upstream_keep_alive = false;
    }
    if (conn->closing)
        return;
    if (e != HPE_OK) {
        if (!h->resp_started && h->upstream_reused && !h->req_has_body) {
            /* A kept-alive connection the origin closed while it sat idle: nothing of the
             * request can have been processed, so it goes again on a fresh connection, once. */
            tp__log_msg(TP_LOG_DEBUG, "retrying on a fresh upstream connection", "conn %llu",
                        (unsigned long long)conn->id);
            h->upstream_reused = false;
            tp__conn_upstream_close(conn);
            tp__egress_start(conn, &h->req, h->req.target.host.ptr, h->req.target.host.len,
                             h->req.target.port, forward_established);
            return;
        }
        if (!h->resp_head_sent) {
            const char *details = nread == UV_EOF ? "origin closed before a complete response head"
                                  : nread < 0     ? uv_strerror((int)nread)
                                                  : llhttp_get_error_reason(&h->sp);
            conn->stats.reason = TP_CLOSE_UPSTREAM_CLOSED;
            respond_error(conn, 502, nread > 0 ? "http_protocol_error" : "http_response_incomplete",
                          details, false);
        } else {
            /* The response is partly out: abort, so the client never sees it as complete. */
            tp__conn_close(conn, nread < 0 && nread != UV_EOF ? TP_CLOSE_UPSTREAM_RESET
                                                              : TP_CLOSE_UPSTREAM_CLOSED);
        }
        return;
    }
    if (h->resp_done) {
        if (!h->req_done) {
            /* The origin answered before the whole request body came: finish, then close. */
            h->close_after = true;
            h->req_done = true;
        }
        exchange_maybe_done(conn);
    }
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
    size_t low = conn->ep->cfg->high_watermark / 2;
    if (dir == TP_TO_UPSTREAM && conn->queued[dir] <= low && h->state == H1_FORWARDING &&
        !h->req_done && !h->in)
        tp__conn_client_read(conn, true);
    if (dir == TP_TO_CLIENT && conn->queued[dir] <= low && h->state == H1_FORWARDING &&
        !h->resp_done)
        tp__conn_upstream_read(conn, true);
    if (dir == TP_TO_CLIENT)
        exchange_maybe_done(conn);
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
        h->close_after = true;
}

const tp_proto_t tp__http_proxy_proto = {
    .name = "http_proxy",
    .start = start,
    .on_client_read = on_client_read,
    .on_upstream_read = on_upstream_read,
    .on_written = on_written,
    .on_drain = on_drain,
};

/* ---- public accessors ---- */

tp_str_t tp_request_method(const tp_request_t *req) {
    return tp__h1_str(&req->rq->head, req->rq->head.first);
}
tp_str_t tp_request_target(const tp_request_t *req) {
    return tp__h1_str(&req->rq->head, req->rq->head.url);
}
tp_str_t tp_request_host(const tp_request_t *req) { return req->target.host; }
uint16_t tp_request_port(const tp_request_t *req) { return req->target.port; }
tp_str_t tp_request_header(const tp_request_t *req, const char *name) {
    return tp__h1_head_get(&req->rq->head, name);
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
    if (!name || !value || !*name)
        return TP_ERR_INVAL;
    size_t nl = strlen(name), vl = strlen(value);
    for (size_t i = 0; i < nl; i++)
        if (!tp__h1_is_tchar((unsigned char)name[i]))
            return TP_ERR_INVAL;
    for (size_t i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return TP_ERR_INVAL;
    }
    if (resp->nextra >= 64 || resp->extra_len + nl + vl + 4 > 8192)
        return TP_ERR_TOO_LARGE;
    char *e = realloc(resp->extra, resp->extra_len + nl + vl + 4);
    if (!e)
        return TP_ERR_NOMEM;
    resp->extra = e;
    memcpy(e + resp->extra_len, name, nl);
    memcpy(e + resp->extra_len + nl, ": ", 2);
    memcpy(e + resp->extra_len + nl + 2, value, vl);
    memcpy(e + resp->extra_len + nl + 2 + vl, "\r\n", 2);
    resp->extra_len += nl + vl + 4;
    resp->nextra++;
    return 0;
}
