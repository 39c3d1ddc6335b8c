/* http_proxy.c: the HTTP/1.1 forward proxy on-ramp: absolute-form requests and CONNECT tunnels. */
#include <inttypes.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "h1/head.h"
#include "h1/request.h"
#include "http/edits.h"
#include "http/route.h"
#include "offramp/group.h"
#include "offramp/pool.h"
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

/* A body as body hooks see it, one direction of an exchange. */
typedef struct body_dir {
    bool active;      /* the app has a hook for this body, and the message has a body */
    bool will_change; /* the hook may change its length: it goes out chunked */
    bool chunked_out; /* how it goes out */
    char *head;       /* the message head, held until the first chunk goes on */
    size_t head_len;
    uint8_t *held; /* bytes held by BUFFER or WATERMARK */
    size_t held_len, held_cap;
    bool watermark; /* held by a watermark: that side's reading and parsing stopped */
    bool has_cl;    /* framed by Content-Length ... */
    uint64_t cl;    /* ... of this many bytes */
    uint64_t out;   /* body bytes passed on */
    bool ended;     /* the last call happened */
} body_dir_t;

struct tp_body {
    const uint8_t *data;
    size_t len;
    bool end;
    uint8_t *own; /* a rewrite's bytes */
    body_dir_t *dir;
};

struct tp_response {
    uint16_t status;
    tp_hdr_edits_t edits;     /* added lines; for an upstream's response, also removed names */
    const tp_h1_head_t *head; /* the upstream's response head, during handle_response */
    bool editable;            /* handle_response is running */
    bool will_change;         /* the response body hook may change the body's length */
    char *body;               /* a direct response's body (tp_respond) */
    size_t body_len;
};

struct tp_request {
    tp_conn_t *conn;
    tp_h1_req_t *rq;       /* its parser, which holds the head */
    tp_h1_target_t target; /* host, port and path, inside the head */
    bool is_connect;
    bool editable;             /* before it is forwarded: hooks may rewrite it */
    bool body_will_change;     /* the request body hook may change its length */
    tp_hdr_edits_t edits;      /* the hooks' header changes */
    char *path;                /* the hooks' new path, or NULL */
    int group;                 /* http: the upstream group (index in the config), -1 none */
    tp_group_server_t *server; /* http: the group's server this exchange uses */
    unsigned tries;            /* http: servers tried for it */
    tp_response_t direct;      /* a direct response (tp_respond) */
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
    bool discard_body; /* a direct response went out: the request body is read and dropped */
    bool redirected;   /* handle_request redirected the request to redirect_to */
    tp_addr_t redirect_to;
    tp_str_t up_host; /* where the request goes: the target's host, a group server, a redirect */
    uint16_t up_port;
    char up_ip[TP_ADDR_STRLEN];
    tp_response_t fwd_resp;   /* the upstream's response, as handle_response sees it */
    tp_group_server_t *avoid; /* a retry goes to another server than this one */
    body_dir_t body[2];       /* [TP_TO_UPSTREAM]: the request body; [TP_TO_CLIENT]: response */
    bool resp_final;          /* the final (not 1xx) response head was parsed */
    bool upgrade;             /* the request asks for a protocol upgrade (WebSocket, ...) */
    size_t req_head_fields;   /* the request head's fields; trailers come after them */
    tp_h1_scan_t rscan;       /* the strict scanner in front of the response parser */
    size_t rscan_ahead;       /* response bytes it vetted that llhttp has not consumed yet */
    tp_h1_framing_t rframing; /* the response body's framing, for the scanner */
    uint64_t rlength;
    uint64_t body_in;       /* request body bytes read so far (limits.max_body_size) */
    const char *resp_error; /* why the response's framing was refused, for the 502 */
    bool upgraded;          /* the upstream agreed (101): the connection becomes a tunnel */
    uint64_t resp_deadline; /* the response head must come by then (0: not waiting) */
    uint64_t body_at;       /* when the request body last made progress */
    tp_buf_t *resp_rest;    /* a response read whose parse a watermark stopped ... */
    size_t resp_rest_off, resp_rest_len; /* ... and where it resumes */
    const char *rcode;                   /* a DNS rcode for the next error answer's Proxy-Status */
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
static void send_direct(tp_conn_t *conn);
static int body_run(tp_conn_t *conn, int dir, tp_buf_t *slab, const char *at, size_t len, bool end);
static void server_release(tp_conn_t *conn, tp_group_outcome_t outcome);
static void body_dir_free(body_dir_t *d);
static void upstream_parse(tp_conn_t *conn, tp_buf_t *b, ssize_t nread);

static const char *reason_phrase(unsigned status) {
    switch (status) {
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
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
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
    h->req.group = -1;
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

/* Ends the exchange's use of its group server (http endpoints), with how it went. */
static void server_release(tp_conn_t *conn, tp_group_outcome_t outcome) {
    tp_request_t *req = &conn->h1->req;
    if (!req->server)
        return;
    tp__group_release(conn->worker->groups[req->group], req->server, outcome);
    req->server = NULL;
}

static void request_edits_free(tp_conn_t *conn) {
    tp_request_t *req = &conn->h1->req;
    server_release(conn, TP_GROUP_ABANDONED);
    tp__edits_free(&req->edits);
    tp__edits_free(&req->direct.edits);
    free(req->path);
    free(req->direct.body);
    req->path = req->direct.body = NULL;
    req->direct.body_len = 0;
    req->direct.status = 0;
    req->group = -1;
    req->tries = 0;
    req->editable = false;
    req->body_will_change = false;
}

void tp__h1_state_free(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    request_ext_free(conn);
    if (h->in)
        tp__buf_unref(h->in);
    tp__h1_req_free(&h->rq);
    tp__h1_head_free(&h->resp_head);
    tp__edits_free(&h->connect_resp.edits);
    tp__edits_free(&h->fwd_resp.edits);
    request_edits_free(conn);
    body_dir_free(&h->body[0]);
    body_dir_free(&h->body[1]);
    if (h->resp_rest)
        tp__buf_unref(h->resp_rest);
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
    h->discard_body = false;
    h->resp_final = false;
    h->resp_deadline = 0;
    h->resp_error = NULL;
    conn->header_deadline = 0; /* the next request's starts with its first byte */
    body_dir_free(&h->body[0]);
    body_dir_free(&h->body[1]);
    if (h->resp_rest) {
        tp__buf_unref(h->resp_rest);
        h->resp_rest = NULL;
    }
    tp__edits_free(&h->connect_resp.edits);
    memset(&h->connect_resp, 0, sizeof(h->connect_resp));
    request_edits_free(conn);
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
    h->body_at = uv_now(&conn->worker->loop); /* the deadline follows lazily (timer_cb) */
    h->body_in += len;
    uint64_t max_body = conn->ep->cfg->limits.max_body_size;
    if (max_body && h->body_in > max_body) { /* a chunked body grew past the limit */
        conn->stats.reason = TP_CLOSE_PROTOCOL_ERROR;
        if (h->resp_head_sent) {
            tp__conn_close(conn, TP_CLOSE_PROTOCOL_ERROR);
        } else {
            server_release(conn, TP_GROUP_ABANDONED);
            respond_error(conn, 413, "http_request_error", "request body over limits.max_body_size",
                          false);
        }
        return -1;
    }
    if (h->discard_body)
        return 0;
    if (h->body[TP_TO_UPSTREAM].active) {
        int rc = body_run(conn, TP_TO_UPSTREAM, h->cur, at, len, false);
        if (rc == 0 && conn->queued[TP_TO_UPSTREAM] > conn->ep->cfg->high_watermark)
            tp__conn_client_read(conn, false);
        return rc < 0 ? -1 : rc;
    }
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
    size_t extra = h->connect_resp.edits.added_len;
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
        memcpy(out + len, h->connect_resp.edits.added, extra);
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

/* While forwarding, the protocol's deadline is the earlier of the response head's and the request
 * body's next byte; tp__http_proxy_timeout() tells which passed. */
static void forward_deadline(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    uint64_t next = h->resp_deadline;
    if (h->state == H1_FORWARDING && !h->req_done && h->req_has_body && !h->discard_body) {
        uint64_t b = h->body_at + conn->ep->cfg->timeouts.body_read;
        if (!next || b < next)
            next = b;
    }
    conn->header_deadline = next;
    tp__conn_rearm(conn);
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
    if (h->state == H1_FORWARDING) {
        uint64_t now = uv_now(&conn->worker->loop);
        if (h->resp_deadline && now >= h->resp_deadline) {
            tp__log_msg(TP_LOG_INFO, "upstream response timeout", "conn %llu",
                        (unsigned long long)conn->id);
            server_release(conn, TP_GROUP_TIMEOUT);
            conn->stats.reason = TP_CLOSE_RESPONSE_TIMEOUT;
            if (h->resp_head_sent)
                tp__conn_close(conn, TP_CLOSE_RESPONSE_TIMEOUT);
            else
                respond_error(conn, 504, "http_response_timeout",
                              "no response head within timeouts.response", false);
            return;
        }
        if (!h->req_done && h->req_has_body &&
            now >= h->body_at + conn->ep->cfg->timeouts.body_read) {
            conn->stats.reason = TP_CLOSE_BODY_TIMEOUT;
            if (h->resp_head_sent)
                tp__conn_close(conn, TP_CLOSE_BODY_TIMEOUT);
            else
                respond_error(conn, 408, "http_request_error",
                              "request body stalled for timeouts.body_read", false);
            return;
        }
        forward_deadline(conn); /* not yet: the next one */
        return;
    }
    tp__conn_close(conn, TP_CLOSE_HEADER_TIMEOUT);
}

/* ---- body hooks ---- */

static void body_dir_free(body_dir_t *d) {
    free(d->head);
    free(d->held);
    memset(d, 0, sizeof(*d));
}

/* Appends to the held bytes; false past the endpoint's limit or out of memory. */
static bool body_hold(tp_conn_t *conn, body_dir_t *d, const uint8_t *p, size_t n) {
    if (d->held_len + n > conn->ep->cfg->limits.max_body_buffer)
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

/* Writes body bytes toward `dir`, framed as the body goes out; `hold` keeps `p` alive (a slab)
 * or is NULL (then the bytes are copied). */
static int body_emit(tp_conn_t *conn, int dir, body_dir_t *d, tp_buf_t *hold, const uint8_t *p,
                     size_t n) {
    if (n == 0)
        return 0;
    d->out += n;
    if (d->has_cl && !d->will_change && d->out > d->cl) {
        tp__log_msg(TP_LOG_WARN, "a body hook made a Content-Length body longer", "conn %llu",
                    (unsigned long long)conn->id);
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_STATE;
    }
    if (hold)
        return send_chunk(conn, dir, hold, (const char *)p, n, d->chunked_out);
    /* One block owned by the write: the chunk frame (when chunked), the bytes, the CRLF. */
    char *copy = malloc(n + 24);
    if (!copy) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    size_t k = 0;
    if (d->chunked_out) {
        k = tp__fmt_hex(copy, n);
        copy[k++] = '\r';
        copy[k++] = '\n';
    }
    memcpy(copy + k, p, n);
    k += n;
    if (d->chunked_out) {
        copy[k++] = '\r';
        copy[k++] = '\n';
    }
    uv_buf_t b = uv_buf_init(copy, (unsigned)k);
    return tp__conn_write(conn, dir, &b, 1, NULL, copy);
}

/* Lets everything held go: the head (first time), the held bytes, then `b`'s bytes. */
static int body_flush(tp_conn_t *conn, int dir, body_dir_t *d, tp_buf_t *slab, tp_body_t *b) {
    if (d->head) {
        uv_buf_t hb = uv_buf_init(d->head, (unsigned)d->head_len);
        char *head = d->head;
        d->head = NULL;
        if (tp__conn_write(conn, dir, &hb, 1, NULL, head) != 0)
            return TP_ERR_CLOSED;
        if (dir == TP_TO_CLIENT)
            conn->h1->resp_head_sent = true;
    }
    if (d->held_len) {
        size_t n = d->held_len;
        d->held_len = 0;
        if (body_emit(conn, dir, d, NULL, d->held, n) != 0)
            return TP_ERR_CLOSED;
    }
    if (b && b->len && body_emit(conn, dir, d, b->own ? NULL : slab, b->data, b->len) != 0)
        return TP_ERR_CLOSED;
    return 0;
}

/* A body hook blocked, or its held bytes overflowed: answer if nothing went out yet, else abort. */
static void body_refuse(tp_conn_t *conn, int dir, uint16_t status, const char *error,
                        const char *details) {
    tp_h1_t *h = conn->h1;
    conn->stats.reason = TP_CLOSE_BLOCKED;
    if (h->resp_head_sent) { /* the client already has a response head: only an abort is left */
        tp__conn_close(conn, TP_CLOSE_BLOCKED);
        return;
    }
    server_release(conn, TP_GROUP_ABANDONED);
    respond_error(conn, status, error, details, false);
}

/* Runs the body hook on one chunk (or the end) of `dir`'s body and does what it says. Returns 0
 * to go on, 1 when a watermark stopped the body, a negative error when the flow ended. */
static int body_run(tp_conn_t *conn, int dir, tp_buf_t *slab, const char *at, size_t len,
                    bool end) {
    tp_h1_t *h = conn->h1;
    body_dir_t *d = &h->body[dir];
    tp_server_t *srv = conn->worker->server;
    tp_body_t b = {.data = (const uint8_t *)at, .len = len, .end = end, .dir = d};
    tp_body_decision_t (*hook)(void *, tp_request_t *, tp_body_t *) =
        dir == TP_TO_UPSTREAM ? srv->hooks.http_request.handle_request_body
                              : srv->hooks.http_request.handle_response_body;
    tp_body_decision_t dec = hook(srv->hooks.http_request.self, &h->req, &b);
    if (end)
        d->ended = true;
    int rc = 0;
    if (conn->closing) {
        rc = TP_ERR_CLOSED;
    } else if (dec.action == TP_BODY_BLOCK) {
        bool req = dir == TP_TO_UPSTREAM;
        body_refuse(conn, dir,
                    dec.status ? dec.status
                    : req      ? 403
                               : 502,
                    dec.error ? dec.error
                    : req     ? "http_request_denied"
                              : "http_response_content",
                    dec.details ? dec.details : "refused by a body hook");
        rc = TP_ERR_CLOSED;
    } else if (dec.action == TP_BODY_CONTINUE || end) { /* at the end, everything goes */
        rc = body_flush(conn, dir, d, slab, &b);
        if (rc == 0 && end && d->has_cl && !d->will_change && d->out != d->cl) {
            tp__log_msg(TP_LOG_WARN, "a body hook changed a Content-Length body's length",
                        "conn %llu", (unsigned long long)conn->id);
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            rc = TP_ERR_CLOSED;
        }
    } else if (!body_hold(conn, d, b.data, b.len)) {
        bool req = dir == TP_TO_UPSTREAM;
        body_refuse(conn, dir, req ? 413 : 502,
                    req ? "http_request_error" : "http_response_content",
                    "body hook held more than limits.max_body_buffer");
        rc = TP_ERR_CLOSED;
    } else if (dec.action == TP_BODY_WATERMARK) {
        d->watermark = true;
        if (dir == TP_TO_UPSTREAM)
            tp__conn_client_read(conn, false);
        else
            tp__conn_upstream_read(conn, false);
        rc = 1;
    }
    free(b.own);
    return rc;
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
    size_t len = sizeof(line) - 1 + h->connect_resp.edits.added_len + 2;
    char *out = malloc(len);
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    memcpy(out, line, sizeof(line) - 1);
    if (h->connect_resp.edits.added_len)
        memcpy(out + sizeof(line) - 1, h->connect_resp.edits.added,
               h->connect_resp.edits.added_len);
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
    if (d.verdict == TP_VERDICT_RESPOND) { /* the hook answered: no tunnel */
        send_direct(conn);
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

static bool name_is(tp_str_t name, const char *lit) {
    size_t n = strlen(lit);
    return name.len == n && strncasecmp(name.ptr, lit, n) == 0;
}

/* The end-to-end fields of a head, minus those the edits removed and those in `skip` (names
 * Turnpike writes itself), in their order. */
static void append_fields(char **out, size_t *len, size_t *cap, const tp_h1_head_t *hd,
                          const tp_hdr_edits_t *ed, const char *const *skip) {
    for (size_t i = 0; i < hd->nfields; i++) {
        tp_str_t name = tp__h1_str(hd, hd->fields[i].name);
        if (tp__h1_is_hop_by_hop(hd, name) || (ed && tp__edits_removed(ed, name)))
            continue;
        bool skipped = false;
        for (size_t k = 0; skip && skip[k] && !skipped; k++)
            skipped = name_is(name, skip[k]);
        if (skipped)
            continue;
        tp_str_t value = tp__h1_str(hd, hd->fields[i].value);
        append(out, len, cap, name.ptr, name.len);
        APPEND_LIT(out, len, cap, ": ");
        append(out, len, cap, value.ptr, value.len);
        APPEND_LIT(out, len, cap, "\r\n");
    }
}

/* Lines the hooks added, minus framing and hop-by-hop names, which are Turnpike's. */
static void append_added(char **out, size_t *len, size_t *cap, const tp_hdr_edits_t *ed) {
    static const char *const ours[] = {
        "content-length", "transfer-encoding", "connection",       "keep-alive", "te",
        "trailer",        "upgrade",           "proxy-connection", NULL};
    for (size_t r = 0; r < ed->added_len;) {
        const char *line = ed->added + r;
        const char *end = memchr(line, '\n', ed->added_len - r) + 1;
        tp_str_t name = {line,
                         (size_t)((const char *)memchr(line, ':', (size_t)(end - line)) - line)};
        bool skipped = false;
        for (size_t k = 0; ours[k] && !skipped; k++)
            skipped = name_is(name, ours[k]);
        if (!skipped)
            append(out, len, cap, line, (size_t)(end - line));
        r = (size_t)(end - ed->added);
    }
}

/* The Via line this hop adds (RFC 9110 7.6.3), when the endpoint says so. */
static void append_via(char **out, size_t *len, size_t *cap, const tp_conn_t *conn) {
    const tp_forwarding_cfg_t *fw = &conn->ep->cfg->forwarding;
    if (!fw->via)
        return;
    APPEND_LIT(out, len, cap, "Via: 1.1 ");
    const char *name = fw->via_name && *fw->via_name ? fw->via_name : "turnpike";
    append(out, len, cap, name, strlen(name));
    APPEND_LIT(out, len, cap, "\r\n");
}

static int on_resp_headers_done(llhttp_t *p) {
    tp_conn_t *conn = p->data;
    tp_h1_t *h = conn->h1;
    tp_h1_head_t *rh = &h->resp_head;
    unsigned status = p->status_code;
    bool head_req = h->rq.p.method == HTTP_HEAD;
    bool switching = status == 101;
    bool informational = status >= 100 && status < 200 && !switching;
    if (switching && (!h->upgrade || !tp__h1_head_get(rh, "upgrade").ptr))
        return HPE_USER; /* a 101 nobody asked for, or that names no protocol: a broken origin */
    h->upstream_keep_alive = llhttp_should_keep_alive(p);
    tp_response_t *resp = &h->fwd_resp;
    tp__edits_free(&resp->edits);
    resp->status = (uint16_t)status;
    resp->will_change = false;
    if (!informational) {
        tp_server_t *srv = conn->worker->server;
        tp__conn_trace(conn, "http.handle_response");
        if (srv->hooks.http_request.handle_response) {
            resp->head = rh;
            resp->editable = true;
            srv->hooks.http_request.handle_response(srv->hooks.http_request.self, &h->req, resp);
            resp->editable = false;
            resp->head = NULL;
            if (conn->closing)
                return HPE_USER;
        }
    }
    bool chunked = (p->flags & F_CHUNKED) != 0;
    h->resp_no_body = head_req || informational || switching || status == 204 || status == 304;
    body_dir_t *bd = &h->body[TP_TO_CLIENT];
    bd->active = !h->resp_no_body && conn->worker->server->hooks.http_request.handle_response_body;
    bd->will_change = bd->active && resp->will_change;
    bd->has_cl = (p->flags & F_CONTENT_LENGTH) && !chunked;
    bd->cl = bd->has_cl ? p->content_length : 0;
    bool has_cl = (p->flags & F_CONTENT_LENGTH) != 0 && !bd->will_change;
    bool client_11 = h->rq.p.http_major == 1 && h->rq.p.http_minor >= 1;
    h->resp_chunked_out = false;
    h->resp_close_delimited = false;
    if (!h->resp_no_body && !has_cl) {
        if (client_11)
            h->resp_chunked_out = true; /* chunked in, or read-until-close: chunked out */
        else
            h->resp_close_delimited = true;
    }
    bd->chunked_out = h->resp_chunked_out;
    h->rframing = switching                       ? TP_H1_FRAMING_TUNNEL
                  : h->resp_no_body               ? TP_H1_FRAMING_NONE
                  : chunked                       ? TP_H1_FRAMING_CHUNKED
                  : (p->flags & F_CONTENT_LENGTH) ? TP_H1_FRAMING_LENGTH
                                                  : TP_H1_FRAMING_CLOSE;
    h->rlength = p->content_length;
    if (h->resp_close_delimited || h->drain || !h->client_keep_alive)
        h->close_after = !informational;
    if (h->upgrade && !switching && !informational)
        h->close_after = true; /* a declined upgrade: the parser stays out of step; start anew */

    size_t cap = rh->len + resp->edits.added_len + 256, len = 0;
    char *out = malloc(cap);
    char line[64];
    size_t n = tp__fmt_u64(line, resp->status);
    APPEND_LIT(&out, &len, &cap, "HTTP/1.1 ");
    append(&out, &len, &cap, line, n);
    APPEND_LIT(&out, &len, &cap, " ");
    tp_str_t st = tp__h1_str(rh, rh->first);
    if (resp->status != status)
        st = (tp_str_t){reason_phrase(resp->status), strlen(reason_phrase(resp->status))};
    append(&out, &len, &cap, st.ptr, st.len);
    APPEND_LIT(&out, &len, &cap, "\r\n");
    append_fields(&out, &len, &cap, rh, &h->fwd_resp.edits, NULL);
    append_added(&out, &len, &cap, &h->fwd_resp.edits);
    append_via(&out, &len, &cap, conn);
    if (has_cl && !chunked && status != 204 && !informational) { /* RFC 9110 8.6 */
        APPEND_LIT(&out, &len, &cap, "Content-Length: ");
        append(&out, &len, &cap, line, tp__fmt_u64(line, p->content_length));
        APPEND_LIT(&out, &len, &cap, "\r\n");
    }
    if (h->resp_chunked_out)
        APPEND_LIT(&out, &len, &cap, "Transfer-Encoding: chunked\r\n");
    if (switching) {
        tp_str_t up = tp__h1_head_get(rh, "upgrade");
        APPEND_LIT(&out, &len, &cap, "Connection: upgrade\r\nUpgrade: ");
        append(&out, &len, &cap, up.ptr, up.len);
        APPEND_LIT(&out, &len, &cap, "\r\n");
    } else if (h->close_after && !informational) {
        APPEND_LIT(&out, &len, &cap, "Connection: close\r\n");
    }
    APPEND_LIT(&out, &len, &cap, "\r\n");
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return HPE_USER;
    }
    if (!informational) {
        h->resp_final = true;
        h->resp_deadline = 0;
        conn->header_deadline = 0;
        forward_deadline(conn);
    }
    if (bd->active) { /* the head goes with the first chunk the body hook lets go */
        bd->head = out;
        bd->head_len = len;
    } else {
        uv_buf_t b = uv_buf_init(out, (unsigned)len);
        if (tp__conn_write(conn, TP_TO_CLIENT, &b, 1, NULL, out) != 0)
            return HPE_USER;
        if (!informational)
            h->resp_head_sent = true;
    }
    tp__h1_head_reset(rh);
    if (switching) { /* what follows the head is the new protocol: upstream_parse() hands over */
        h->upgraded = true;
        return HPE_PAUSED;
    }
    if (h->resp_no_body) /* HEAD, 1xx, 204, 304: no body follows, whatever the headers say; */
        return 1;        /* bytes after the head are then not this response's (RFC 9112 6.3) */
    return 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t len) {
    tp_conn_t *conn = p->data;
    tp_h1_t *h = conn->h1;
    h->resp_bytes += len;
    if (h->body[TP_TO_CLIENT].active) {
        int rc = body_run(conn, TP_TO_CLIENT, h->cur, at, len, false);
        if (rc < 0)
            return HPE_USER;
        if (rc > 0)
            return HPE_PAUSED; /* a watermark: upstream_parse keeps the rest of the read */
        if (conn->queued[TP_TO_CLIENT] > conn->ep->cfg->high_watermark)
            tp__conn_upstream_read(conn, false);
        return 0;
    }
    if (send_chunk(conn, TP_TO_CLIENT, h->cur, at, len, h->resp_chunked_out) != 0)
        return HPE_USER;
    if (conn->queued[TP_TO_CLIENT] > conn->ep->cfg->high_watermark)
        tp__conn_upstream_read(conn, false);
    return 0;
}

/* The last chunk of a chunked body, with the trailer fields of `hd` from index `from` on (RFC 9112
 * 7.1.2): hop-by-hop and framing fields are not passed on. */
static void write_last_chunk(tp_conn_t *conn, int dir, const tp_h1_head_t *hd, size_t from) {
    static const char *const not_trailers[] = {"content-length", "transfer-encoding", "host",
                                               "trailer", NULL};
    if (from >= hd->nfields) {
        tp__conn_write_copy(conn, dir, "0\r\n\r\n", 5);
        return;
    }
    size_t cap = hd->len + 16, len = 0;
    char *out = malloc(cap);
    APPEND_LIT(&out, &len, &cap, "0\r\n");
    for (size_t i = from; i < hd->nfields; i++) {
        tp_str_t name = tp__h1_str(hd, hd->fields[i].name);
        bool skip = tp__h1_is_hop_by_hop(hd, name);
        for (size_t k = 0; not_trailers[k] && !skip; k++)
            skip = name_is(name, not_trailers[k]);
        if (skip)
            continue;
        tp_str_t value = tp__h1_str(hd, hd->fields[i].value);
        append(&out, &len, &cap, name.ptr, name.len);
        APPEND_LIT(&out, &len, &cap, ": ");
        append(&out, &len, &cap, value.ptr, value.len);
        APPEND_LIT(&out, &len, &cap, "\r\n");
    }
    APPEND_LIT(&out, &len, &cap, "\r\n");
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    tp__conn_write(conn, dir, &b, 1, NULL, out);
}

static int on_resp_done(llhttp_t *p) {
    tp_conn_t *conn = p->data;
    tp_h1_t *h = conn->h1;
    if (!h->resp_final) /* an interim (1xx) response: the final one follows */
        return 0;
    body_dir_t *bd = &h->body[TP_TO_CLIENT];
    if (bd->active && !bd->ended &&
        (body_run(conn, TP_TO_CLIENT, NULL, NULL, 0, true) < 0 || conn->closing))
        return HPE_USER;
    if (h->resp_chunked_out) /* what the head buffer holds now are the trailers, if any */
        write_last_chunk(conn, TP_TO_CLIENT, &h->resp_head, 0);
    tp__h1_head_reset(&h->resp_head);
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

/* Whether the request head announced a body (chunked, or a non-zero Content-Length). */
static bool request_has_body(const tp_h1_t *h) {
    const llhttp_t *p = &h->rq.p;
    return (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
}

/* Joins every field called `name` into one comma-separated value in buf (RFC 9110 5.3). */
static size_t joined(const tp_h1_head_t *hd, const char *name, char *buf, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < hd->nfields; i++) {
        if (!name_is(tp__h1_str(hd, hd->fields[i].name), name))
            continue;
        tp_str_t v = tp__h1_str(hd, hd->fields[i].value);
        if (n && n + 2 < cap) {
            memcpy(buf + n, ", ", 2);
            n += 2;
        }
        size_t k = v.len < cap - n ? v.len : cap - n;
        memcpy(buf + n, v.ptr, k);
        n += k;
    }
    return n;
}

/* X-Forwarded-*, Forwarded and Via, as the endpoint's `forwarding` says. */
static void append_forwarding(char **out, size_t *len, size_t *cap, tp_conn_t *conn) {
    const tp_forwarding_cfg_t *fw = &conn->ep->cfg->forwarding;
    tp_h1_t *h = conn->h1;
    const tp_h1_head_t *hd = &h->rq.head;
    char ip[TP_ADDR_STRLEN];
    tp_addr_format_ip(tp_conn_peer(conn), ip, sizeof(ip));
    tp_str_t host = tp__h1_head_get(hd, "host");
    if (fw->x_forwarded != TP_XFF_OFF) {
        char prior[2048];
        size_t pn = fw->x_forwarded == TP_XFF_APPEND
                        ? joined(hd, "x-forwarded-for", prior, sizeof(prior))
                        : 0;
        APPEND_LIT(out, len, cap, "X-Forwarded-For: ");
        if (pn) {
            append(out, len, cap, prior, pn);
            APPEND_LIT(out, len, cap, ", ");
        }
        append(out, len, cap, ip, strlen(ip));
        APPEND_LIT(out, len, cap, "\r\n");
        bool replace = fw->x_forwarded == TP_XFF_REPLACE;
        if (replace || !tp__h1_head_get(hd, "x-forwarded-proto").ptr)
            APPEND_LIT(out, len, cap, "X-Forwarded-Proto: http\r\n");
        if (host.ptr && (replace || !tp__h1_head_get(hd, "x-forwarded-host").ptr)) {
            APPEND_LIT(out, len, cap, "X-Forwarded-Host: ");
            append(out, len, cap, host.ptr, host.len);
            APPEND_LIT(out, len, cap, "\r\n");
        }
    }
    if (fw->forwarded) { /* RFC 7239: IPv6 quoted and bracketed; another line extends the list */
        bool v6 = strchr(ip, ':') != NULL;
        APPEND_LIT(out, len, cap, "Forwarded: for=");
        if (v6)
            APPEND_LIT(out, len, cap, "\"[");
        append(out, len, cap, ip, strlen(ip));
        if (v6)
            APPEND_LIT(out, len, cap, "]\"");
        APPEND_LIT(out, len, cap, ";proto=http");
        bool plain = host.ptr != NULL;
        for (size_t i = 0; plain && i < host.len; i++)
            plain = tp__h1_is_tchar((unsigned char)host.ptr[i]);
        if (plain) { /* a host with ':' or '[' would need quoting: left out rather than wrong */
            APPEND_LIT(out, len, cap, ";host=");
            append(out, len, cap, host.ptr, host.len);
        }
        APPEND_LIT(out, len, cap, "\r\n");
    }
    append_via(out, len, cap, conn);
}

static void send_request_head(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->req;
    tp_h1_head_t *hd = &h->rq.head;
    llhttp_t *p = &h->rq.p;
    bool server = conn->ep->cfg->type == TP_ONRAMP_HTTP;
    tp_str_t expect = tp__h1_head_get(hd, "expect");
    bool continue_here = expect.ptr &&
                         conn->worker->server->hooks.http_request.handle_request_body &&
                         request_has_body(h);
    if (continue_here) {
        /* The head waits for the body hook's first chunk, which waits for the client, which waits
         * for a 100: Turnpike answers the expectation itself (RFC 9110 10.1.1). */
        tp__edits_remove(&req->edits, "expect");
        tp__conn_write_copy(conn, TP_TO_CLIENT, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    size_t cap = hd->len + req->edits.added_len + 512, len = 0;
    char *out = malloc(cap);
    tp_str_t method = tp__h1_str(hd, hd->first);
    append(&out, &len, &cap, method.ptr, method.len);
    APPEND_LIT(&out, &len, &cap, " ");
    tp_str_t path = tp_request_path(req);
    if (path.len == 0 || path.ptr[0] != '/')
        APPEND_LIT(&out, &len, &cap, "/");
    append(&out, &len, &cap, path.ptr, path.len);
    APPEND_LIT(&out, &len, &cap, " HTTP/1.1\r\n");
    char line[64];
    if (!server || !tp__h1_head_get(hd, "host").ptr) {
        /* A forward proxy's origin is the target's; a server's client named it in Host. */
        APPEND_LIT(&out, &len, &cap, "Host: ");
        if (memchr(req->target.host.ptr, ':', req->target.host.len)) {
            APPEND_LIT(&out, &len, &cap, "[");
            append(&out, &len, &cap, req->target.host.ptr, req->target.host.len);
            APPEND_LIT(&out, &len, &cap, "]");
        } else {
            append(&out, &len, &cap, req->target.host.ptr, req->target.host.len);
        }
        if (req->target.port != 80) {
            APPEND_LIT(&out, &len, &cap, ":");
            append(&out, &len, &cap, line, tp__fmt_u64(line, req->target.port));
        }
        APPEND_LIT(&out, &len, &cap, "\r\n");
    }
    const tp_forwarding_cfg_t *fw = &conn->ep->cfg->forwarding;
    static const char *const xff[] = {"x-forwarded-for", NULL};
    static const char *const xff_all[] = {"x-forwarded-for", "x-forwarded-proto",
                                          "x-forwarded-host", NULL};
    static const char *const host_only[] = {"host", NULL};
    static const char *const host_xff[] = {"host", "x-forwarded-for", NULL};
    static const char *const host_xff_all[] = {"host", "x-forwarded-for", "x-forwarded-proto",
                                               "x-forwarded-host", NULL};
    const char *const *skip = NULL;
    if (fw->x_forwarded == TP_XFF_APPEND)
        skip = server ? xff : host_xff;
    else if (fw->x_forwarded == TP_XFF_REPLACE)
        skip = server ? xff_all : host_xff_all;
    else
        skip = server ? NULL : host_only;
    append_fields(&out, &len, &cap, hd, &req->edits, skip);
    append_added(&out, &len, &cap, &req->edits);
    append_forwarding(&out, &len, &cap, conn);
    if (h->upgrade) {
        tp_str_t up = tp__h1_head_get(hd, "upgrade");
        APPEND_LIT(&out, &len, &cap, "Connection: upgrade\r\nUpgrade: ");
        append(&out, &len, &cap, up.ptr, up.len);
        APPEND_LIT(&out, &len, &cap, "\r\n");
    }
    h->req_has_body = request_has_body(h);
    body_dir_t *bd = &h->body[TP_TO_UPSTREAM];
    bd->active = h->req_has_body && conn->worker->server->hooks.http_request.handle_request_body;
    bd->will_change = bd->active && req->body_will_change;
    bd->has_cl = !(p->flags & F_CHUNKED) && (p->flags & F_CONTENT_LENGTH);
    bd->cl = bd->has_cl ? p->content_length : 0;
    h->req_body_chunked = (p->flags & F_CHUNKED) || (bd->active && bd->will_change);
    bd->chunked_out = h->req_body_chunked;
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
    if (bd->active) { /* the head goes with the first chunk the body hook lets go */
        bd->head = out;
        bd->head_len = len;
        return;
    }
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    tp__conn_write(conn, TP_TO_UPSTREAM, &b, 1, NULL, out);
}

static void forward_start(tp_conn_t *conn);
static bool pool_shared(const tp_conn_t *conn);

static bool idempotent(const tp_h1_t *h) {
    switch (h->rq.p.method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE: return true;
    default: return false;
    }
}

/* A request to a group server failed before any response byte: may it go to another server?
 * Only idempotent requests without a body (nothing of which has been consumed), within the
 * group's retries. */
static bool may_retry(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->req;
    if (req->group < 0 || h->resp_started || !idempotent(h) || h->redirected)
        return false;
    const tp_upstream_cfg_t *ucfg = tp__group_cfg(conn->worker->groups[req->group]);
    return !request_has_body(h) && req->tries <= (unsigned)ucfg->retries;
}

static void retry(tp_conn_t *conn, tp_group_outcome_t why) {
    tp_request_t *req = &conn->h1->req;
    tp__log_msg(TP_LOG_INFO, "retrying on another server", "conn %llu: %s:%u failed (try %u)",
                (unsigned long long)conn->id, req->server ? req->server->host : "?",
                req->server ? req->server->port : 0, req->tries);
    conn->h1->avoid = req->server;
    server_release(conn, why);
    tp__conn_upstream_close(conn);
    conn->h1->state = H1_DECIDING;
    forward_start(conn);
}

static void forward_established(tp_conn_t *conn, const tp_failure_t *f) {
    tp_h1_t *h = conn->h1;
    if (conn->closing)
        return;
    if (f) {
        if (may_retry(conn)) {
            retry(conn, TP_GROUP_CONNECT_FAILED);
            return;
        }
        server_release(conn, TP_GROUP_CONNECT_FAILED);
        conn->stats.reason = f->reason;
        respond_failure(conn, f, false);
        return;
    }
    llhttp_init(&h->sp, HTTP_RESPONSE, &resp_settings);
    h->sp.data = conn;
    tp__h1_scan_reset_response(&h->rscan);
    h->rscan_ahead = 0;
    if (conn->up) {
        conn->up->pool_ok = pool_shared(conn);
        conn->up->pool_group = h->req.group;
    }
    h->state = H1_FORWARDING;
    /* The response's wait starts once the whole request went (set again at its end). */
    uint64_t now = uv_now(&conn->worker->loop);
    h->resp_deadline = now + conn->ep->cfg->timeouts.response;
    h->body_at = now;
    send_request_head(conn);
    if (h->req_has_body)
        h->resp_deadline = 0;
    if (conn->closing)
        return;
    tp__conn_upstream_read(conn, true);
    forward_deadline(conn);
    client_parse(conn); /* the body, from what is already read */
}

/* The hash key of a request for its group's consistent hash: the client's IP or a header. */
static tp_str_t hash_key(tp_conn_t *conn, const tp_upstream_cfg_t *ucfg, char *buf, size_t cap) {
    if (ucfg->hash_key && strncmp(ucfg->hash_key, "header:", 7) == 0)
        return tp_request_header(&conn->h1->req, ucfg->hash_key + 7);
    tp_addr_format_ip(tp_conn_peer(conn), buf, cap);
    return (tp_str_t){buf, strlen(buf)};
}

/* Whether the exchange's upstream connection may serve other clients: on an http endpoint, for a
 * server of a group, when nothing client-specific went on it (a redirect, a PROXY header). */
static bool pool_shared(const tp_conn_t *conn) {
    const tp_h1_t *h = conn->h1;
    return conn->ep->cfg->type == TP_ONRAMP_HTTP && h->req.server && !h->redirected &&
           conn->ep->cfg->egress.send_proxy_protocol == TP_PP_NONE;
}

/*
 * Hands the connection's idle kept-alive upstream to the worker's pool, when other clients may use
 * it: when the client connection ends, or its next request goes to another server. (Between two
 * requests to the same server it stays with the client connection: no pool traffic per request.)
 */
static void park_upstream(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_upstream_t *up = conn->up;
    if (!up || !up->pool_ok || !h->upstream_keep_alive || up->eof ||
        (h->state == H1_FORWARDING && !h->resp_done) || up->pool_group < 0)
        return;
    const tp_upstream_cfg_t *ucfg = tp__group_cfg(conn->worker->groups[up->pool_group]);
    tp_upstream_t *d = tp__conn_upstream_detach(conn);
    if (d)
        tp__pool_park(conn->worker->pool, d, conn->ep->index, (size_t)ucfg->keepalive.max_idle,
                      ucfg->keepalive.idle_timeout);
}

/* Where the request goes: a redirect, a group's server, or (forward proxy) its target. */
static void forward_start(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->req;
    if (h->redirected) {
        tp_addr_format_ip(&h->redirect_to, h->up_ip, sizeof(h->up_ip));
        h->up_host = (tp_str_t){h->up_ip, strlen(h->up_ip)};
        h->up_port = tp_addr_port(&h->redirect_to);
    } else if (conn->ep->cfg->type == TP_ONRAMP_HTTP) {
        if (req->group < 0) {
            conn->stats.reason = TP_CLOSE_BLOCKED;
            respond_error(conn, 404, "destination_not_found", "no route for this request", false);
            return;
        }
        tp_group_t *g = conn->worker->groups[req->group];
        char kb[TP_ADDR_STRLEN];
        tp_str_t key = hash_key(conn, tp__group_cfg(g), kb, sizeof(kb));
        tp_group_server_t *s = tp__group_pick(g, key, h->avoid, true);
        h->avoid = NULL;
        if (!s) {
            conn->stats.reason = TP_CLOSE_UPSTREAM_FAILED;
            respond_error(conn, 503, "destination_unavailable", "no server in the upstream group",
                          false);
            return;
        }
        const tp_upstream_cfg_t *ucfg = tp__group_cfg(g);
        size_t hl = strlen(s->host);
        tp_upstream_t *mine = conn->up;
        bool have = mine && !mine->eof && h->upstream_keep_alive && mine->port == s->port &&
                    strlen(mine->host) == hl && strncasecmp(mine->host, s->host, hl) == 0;
        if (!have && !h->redirected && conn->ep->cfg->egress.send_proxy_protocol == TP_PP_NONE) {
            park_upstream(conn); /* the one it has goes elsewhere: others may use it */
            tp_upstream_t *up =
                tp__pool_take(conn->worker->pool, conn->ep->index, s->host, hl, s->port);
            if (up) {
                tp__conn_upstream_attach(conn, up);
                h->upstream_keep_alive = true;
                have = true;
            }
        }
        /* Not taken from the pool: the server has no idle connection, only busy ones. */
        if (!have && ucfg->keepalive.max_total &&
            s->inflight >= (uint64_t)ucfg->keepalive.max_total) {
            conn->stats.reason = TP_CLOSE_UPSTREAM_FAILED;
            respond_error(conn, 503, "connection_limit_reached",
                          "the server's connections (upstreams[].keepalive.max_total) are all busy",
                          false);
            return;
        }
        tp__group_acquire(g, s);
        req->server = s;
        req->tries++;
        h->up_host = (tp_str_t){s->host, strlen(s->host)};
        h->up_port = s->port;
    } else {
        h->up_host = req->target.host;
        h->up_port = req->target.port;
    }
    tp_str_t host = h->up_host;
    tp_upstream_t *up = conn->up;
    if (up && !up->eof && h->upstream_keep_alive && up->port == h->up_port &&
        strlen(up->host) == host.len && strncasecmp(up->host, host.ptr, host.len) == 0) {
        /* The last exchange left a live keep-alive connection to the same origin. */
        h->upstream_reused = true;
        tp_failure_t *none = NULL;
        forward_established(conn, none);
        return;
    }
    tp__conn_upstream_close(conn);
    tp__egress_start(conn, &h->req, host.ptr, host.len, h->up_port, forward_established);
}

/* Writes the response a hook built with tp_respond(); the request's body, if any, is then read
 * and dropped, and the connection goes on with the next request. */
static void send_direct(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_response_t *d = &h->req.direct;
    uint16_t status = d->status ? d->status : 500;
    bool no_body = h->rq.p.method == HTTP_HEAD || status == 204 || status == 304;
    bool unread_body = !h->req_done && request_has_body(h);
    if (h->drain || !h->client_keep_alive || h->req.is_connect ||
        (unread_body && tp__h1_head_get(&h->rq.head, "expect").ptr))
        h->close_after = true; /* a client that expects a 100 may never send the body: close */
    size_t cap = d->edits.added_len + 256 + (no_body ? 0 : d->body_len), len = 0;
    char *out = malloc(cap);
    char num[32];
    APPEND_LIT(&out, &len, &cap, "HTTP/1.1 ");
    append(&out, &len, &cap, num, tp__fmt_u64(num, status));
    APPEND_LIT(&out, &len, &cap, " ");
    append(&out, &len, &cap, reason_phrase(status), strlen(reason_phrase(status)));
    APPEND_LIT(&out, &len, &cap, "\r\n");
    append_added(&out, &len, &cap, &d->edits);
    if (status != 204 && status != 304) {
        APPEND_LIT(&out, &len, &cap, "Content-Length: ");
        append(&out, &len, &cap, num, tp__fmt_u64(num, d->body_len));
        APPEND_LIT(&out, &len, &cap, "\r\n");
    }
    if (h->close_after)
        APPEND_LIT(&out, &len, &cap, "Connection: close\r\n");
    APPEND_LIT(&out, &len, &cap, "\r\n");
    if (!no_body && d->body_len)
        append(&out, &len, &cap, d->body, d->body_len);
    if (!out) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_DEBUG, "direct response");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_u64(&l, "status", status);
    tp__log_end(&l);
    if (h->req.is_connect || (h->close_after && unread_body)) {
        /* No tunnel follows, or a body that may never come: answered, then closed. */
        h->state = H1_LINGER;
        if (h->in) {
            tp__buf_unref(h->in);
            h->in = NULL;
        }
        tp__conn_upstream_close(conn);
        uv_buf_t b = uv_buf_init(out, (unsigned)len);
        if (tp__conn_write(conn, TP_TO_CLIENT, &b, 1, NULL, out) != 0)
            return;
        tp__conn_client_read(conn, false);
        if (conn->queued[TP_TO_CLIENT] == 0)
            linger_start(conn);
        return;
    }
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    if (tp__conn_write(conn, TP_TO_CLIENT, &b, 1, NULL, out) != 0)
        return;
    h->state = H1_FORWARDING;
    h->resp_started = h->resp_head_sent = h->resp_done = true;
    h->discard_body = true;
    h->req_body_chunked = false;
    client_parse(conn); /* drop the body, then the exchange ends */
}

static void request_decided(tp_conn_t *conn, tp_decision_t d) {
    tp_h1_t *h = conn->h1;
    h->req.editable = false;
    if (conn->closing)
        return;
    switch (d.verdict) {
    case TP_VERDICT_BLOCK:
        conn->stats.reason = TP_CLOSE_BLOCKED;
        respond_error(conn, d.status ? d.status : 403, d.error ? d.error : "http_request_denied",
                      d.details, false);
        return;
    case TP_VERDICT_RESPOND: send_direct(conn); return;
    case TP_VERDICT_REDIRECT:
        h->redirected = true;
        h->redirect_to = d.addr;
        forward_start(conn);
        return;
    default: forward_start(conn); return;
    }
}

/* An http endpoint's target: origin-form with the authority from Host (exactly one, RFC 9112
 * 3.2), or absolute-form. Returns 0 or the status to answer, with *detail. */
static int parse_server_target(tp_conn_t *conn, const char **detail) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->req;
    const tp_h1_head_t *hd = &h->rq.head;
    if (req->is_connect) {
        *detail = "CONNECT is served by http_proxy endpoints";
        return 405;
    }
    tp_str_t url = tp__h1_str(hd, hd->url);
    if (url.len == 0 || url.ptr[0] != '/')
        return tp__h1_parse_target(&h->rq, &req->target, detail);
    size_t nhost = 0;
    tp_str_t host = {NULL, 0};
    for (size_t i = 0; i < hd->nfields; i++)
        if (name_is(tp__h1_str(hd, hd->fields[i].name), "host") && nhost++ == 0)
            host = tp__h1_str(hd, hd->fields[i].value);
    bool http11 = h->rq.p.http_major == 1 && h->rq.p.http_minor >= 1;
    if (nhost > 1) {
        *detail = "more than one Host header";
        return 400;
    }
    if (nhost == 0 && http11) {
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

/* The request head is complete: validate it and start the exchange. */
static void on_head(tp_conn_t *conn) {
    tp_h1_t *h = conn->h1;
    tp_request_t *req = &h->req;
    tp_server_t *srv = conn->worker->server;
    const tp_endpoint_cfg_t *cfg = conn->ep->cfg;
    conn->header_deadline = 0;
    tp__conn_rearm(conn);
    conn->stats.requests++;
    h->state = H1_DECIDING;
    h->req_head_fields = h->rq.head.nfields; /* fields after these, at the end, are trailers */
    h->client_keep_alive = llhttp_should_keep_alive(&h->rq.p);
    req->is_connect = h->rq.p.method == HTTP_CONNECT;
    h->redirected = false;
    h->avoid = NULL;

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
    int status = cfg->type == TP_ONRAMP_HTTP ? parse_server_target(conn, &detail)
                                             : tp__h1_parse_target(&h->rq, &req->target, &detail);
    if (status) {
        respond_error(conn, (uint16_t)status, "http_request_error", detail, req->is_connect);
        return;
    }
    uint64_t max_body = cfg->limits.max_body_size;
    if (max_body && !req->is_connect && (h->rq.p.flags & F_CONTENT_LENGTH) &&
        h->rq.p.content_length > max_body) {
        conn->stats.reason = TP_CLOSE_PROTOCOL_ERROR;
        respond_error(conn, 413, "http_request_error", "request body over limits.max_body_size",
                      false);
        return;
    }
    h->body_in = 0;
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
    { /* RFC 9110 7.8: Upgrade is hop-by-hop, but passed on when the client asks for it */
        const tp_h1_head_t *hd = &h->rq.head;
        tp_str_t cn = tp__h1_head_get(hd, "connection");
        h->upgrade = tp__h1_head_get(hd, "upgrade").ptr && cn.ptr && tp__h1_list_has(cn, "upgrade");
        h->upgraded = false;
    }
    if (cfg->type == TP_ONRAMP_HTTP) {
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
    while (!conn->closing && !h->body[TP_TO_UPSTREAM].watermark &&
           (h->state == H1_HEAD || (h->state == H1_FORWARDING && !h->req_done))) {
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
            parse_failed(conn);
            return;
        }
        if (ev == TP_H1_REQ_HEAD) {
            on_head(conn);
        } else if (ev == TP_H1_REQ_MESSAGE) {
            if (h->body[TP_TO_UPSTREAM].active && !h->body[TP_TO_UPSTREAM].ended &&
                !h->discard_body &&
                (body_run(conn, TP_TO_UPSTREAM, NULL, NULL, 0, true) < 0 || conn->closing ||
                 h->state == H1_LINGER))
                return;
            if (h->req_body_chunked)
                write_last_chunk(conn, TP_TO_UPSTREAM, &h->rq.head, h->req_head_fields);
            h->req_done = true;
            if (!h->resp_final && !h->discard_body && h->state == H1_FORWARDING) {
                h->resp_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.response;
                forward_deadline(conn);
            }
            exchange_maybe_done(conn);
            return;
        }
    }
    if (conn->closing || h->state == H1_LINGER) /* lingering reads are linger_start()'s */
        return;
    /* Reading goes on between requests and while a response streams (no epoll churn); bytes
     * that arrive then wait in h->in, and reading stops until they are parsed. */
    bool want = !h->in && h->state != H1_LINGER && !h->body[TP_TO_UPSTREAM].watermark &&
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
    server_release(conn, TP_GROUP_OK);
    if (h->close_after || conn->client_eof) {
        park_upstream(conn);
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
        if (h->req_started)
            tp__log_msg(TP_LOG_INFO, "client closed mid-request", "conn %llu",
                        (unsigned long long)conn->id);
        else
            park_upstream(conn); /* between requests: the upstream can serve other clients */
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

/*
 * llhttp over a response read, behind the strict scanner (src/h1/scan.c): llhttp only sees bytes
 * the scanner passed, and the scanner stops at the end of each head (until the head's framing is
 * known) and of each message, so the two agree on every boundary. Returns what llhttp_execute()
 * would for the whole read; HPE_USER with *why set when the scanner refused the bytes.
 */
static llhttp_errno_t resp_execute(tp_conn_t *conn, const char *at, size_t n, const char **why) {
    tp_h1_t *h = conn->h1;
    size_t done = 0;
    while (done < n) {
        size_t ahead = h->rscan_ahead < n - done ? h->rscan_ahead : n - done;
        h->rscan_ahead = 0;
        size_t ok = ahead + tp__h1_scan_run(&h->rscan, at + done + ahead, n - done - ahead);
        if (tp__h1_scan_failed(&h->rscan) && ok == 0) {
            *why = h->rscan.err ? h->rscan.err : "invalid response framing";
            return HPE_USER;
        }
        if (ok == 0) { /* at a boundary, nothing to pass: move the scanner on */
            if (tp__h1_scan_head_done(&h->rscan)) {
                tp__h1_scan_body(&h->rscan, h->rframing, h->rlength);
            } else if (tp__h1_scan_message_done(&h->rscan)) {
                tp__h1_scan_reset_response(&h->rscan);
            } else {
                *why = "response framing out of step";
                return HPE_USER;
            }
            continue;
        }
        llhttp_errno_t e = llhttp_execute(&h->sp, at + done, ok);
        if (e != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&h->sp);
            if (pos >= at + done && pos <= at + done + ok)
                h->rscan_ahead = (size_t)(at + done + ok - pos);
            return e;
        }
        done += ok;
    }
    return HPE_OK;
}

/* The upstream answered 101: its bytes after the head go to the client, the client's bytes held
 * since the request go upstream, and the connection is a tunnel from now on (b's reference is
 * taken over). */
static void upgrade_to_tunnel(tp_conn_t *conn, tp_buf_t *b, const char *rest, size_t n) {
    tp_h1_t *h = conn->h1;
    server_release(conn, TP_GROUP_OK);
    conn->header_deadline = 0;
    h->resp_deadline = 0;
    tp__log_msg(TP_LOG_DEBUG, "upgraded", "conn %llu", (unsigned long long)conn->id);
    if (n) {
        uv_buf_t ub = uv_buf_init((char *)rest, (unsigned)n);
        if (tp__conn_write(conn, TP_TO_CLIENT, &ub, 1, b, NULL) != 0) {
            tp__buf_unref(b);
            return;
        }
    }
    tp__buf_unref(b);
    tp_buf_t *early = h->in;
    size_t off = h->in_off, len = h->in_len;
    h->in = NULL;
    tp__tunnel_start(conn, early, early ? early->data + off : NULL, len);
    if (early)
        tp__buf_unref(early);
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
        const char *at = b->data;
        if (h->resp_rest == b) { /* tp_body_resume(): the rest of a read a watermark stopped */
            at += h->resp_rest_off;
            h->resp_rest = NULL;
        }
        h->cur = b;
        const char *why = NULL;
        e = resp_execute(conn, at, (size_t)nread, &why);
        if (why)
            h->resp_error = why;
        h->cur = NULL;
        if (e == HPE_PAUSED && h->upgraded && !conn->closing) {
            upgrade_to_tunnel(conn, b, llhttp_get_error_pos(&h->sp),
                              (size_t)(at + nread - llhttp_get_error_pos(&h->sp)));
            return;
        }
        if (e == HPE_PAUSED && h->body[TP_TO_CLIENT].watermark && !conn->closing) {
            const char *pos = llhttp_get_error_pos(&h->sp);
            size_t left = (size_t)(at + nread - pos);
            if (left) { /* kept, with b's reference, for tp_body_resume() */
                h->resp_rest = b;
                h->resp_rest_off = (size_t)(pos - b->data);
                h->resp_rest_len = left;
            } else {
                tp__buf_unref(b);
            }
            return;
        }
        if (e == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&h->sp);
            if (pos != at + nread) {
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
        if (!h->resp_started && !h->upstream_reused && may_retry(conn)) {
            retry(conn, nread < 0 ? TP_GROUP_RESET : TP_GROUP_OK);
            return;
        }
        if (!h->resp_started && h->upstream_reused && !h->req_has_body) {
            /* A kept-alive connection the origin closed while it sat idle: nothing of the
             * request can have been processed, so it goes again on a fresh connection, once. */
            tp__log_msg(TP_LOG_DEBUG, "retrying on a fresh upstream connection", "conn %llu",
                        (unsigned long long)conn->id);
            h->upstream_reused = false;
            tp__conn_upstream_close(conn);
            tp__egress_start(conn, &h->req, h->up_host.ptr, h->up_host.len, h->up_port,
                             forward_established);
            return;
        }
        server_release(conn, nread > 0 ? TP_GROUP_OK : TP_GROUP_RESET);
        if (!h->resp_head_sent) {
            const char *details = nread == UV_EOF ? "origin closed before a complete response head"
                                  : nread < 0     ? uv_strerror((int)nread)
                                  : h->resp_error ? h->resp_error
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
        !h->req_done && !h->in && !h->body[TP_TO_UPSTREAM].watermark)
        tp__conn_client_read(conn, true);
    if (dir == TP_TO_CLIENT && conn->queued[dir] <= low && h->state == H1_FORWARDING &&
        !h->resp_done && !h->body[TP_TO_CLIENT].watermark && !h->resp_rest)
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
    if (!name)
        return (tp_str_t){NULL, 0};
    if (!tp__edits_removed(&req->edits, (tp_str_t){name, strlen(name)})) {
        tp_str_t v = tp__h1_head_get(&req->rq->head, name);
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
    if (!req->editable || req->conn->ep->cfg->type != TP_ONRAMP_HTTP)
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
    if (resp->head && !tp__edits_removed(&resp->edits, (tp_str_t){name, nl})) {
        tp_str_t v = tp__h1_head_get(resp->head, name);
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
    body_dir_t *d = body->dir;
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
    tp_conn_t *conn = req->conn;
    tp_h1_t *h = conn->h1;
    int dir = response ? TP_TO_CLIENT : TP_TO_UPSTREAM;
    body_dir_t *d = &h->body[dir];
    if (conn->closing || !d->watermark)
        return TP_ERR_STATE;
    d->watermark = false;
    tp__conn_cork(conn, dir);
    int rc = body_flush(conn, dir, d, NULL, NULL);
    tp__conn_uncork(conn, dir);
    if (rc != 0 || conn->closing)
        return 0;
    if (!response) {
        client_parse(conn); /* parses what is left, and reads again */
        return 0;
    }
    llhttp_resume(&h->sp);
    if (h->resp_rest) {
        tp__conn_cork(conn, TP_TO_CLIENT);
        upstream_parse(conn, h->resp_rest, (ssize_t)h->resp_rest_len);
        tp__conn_uncork(conn, TP_TO_CLIENT);
    } else if (!h->resp_done) {
        tp__conn_upstream_read(conn, true);
    }
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
