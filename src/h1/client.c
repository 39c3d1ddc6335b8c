/* client.c: the HTTP/1.1 client codec: an exchange's request written to the upstream connection,
 * and its response read back (llhttp behind the strict scanner) as exchange events. */
#include <stdlib.h>
#include <string.h>

#include "h1/request.h"
#include "h1/write.h"
#include "http/exchange.h"
#include "runtime/log.h"
#include "util/fmt.h"

static const llhttp_settings_t resp_settings;

int tp__h1c_init(tp_h1_client_t *c) {
    memset(c, 0, sizeof(*c));
    llhttp_init(&c->sp, HTTP_RESPONSE, &resp_settings);
    return tp__head_init(&c->head, TP_KIB(64), 256);
}

void tp__h1c_free(tp_h1_client_t *c) {
    tp__head_free(&c->head);
    if (c->rest)
        tp__buf_unref(c->rest);
    c->rest = NULL;
}

void tp__h1c_begin(tp_exchange_t *x) {
    tp_h1_client_t *c = &x->up;
    llhttp_init(&c->sp, HTTP_RESPONSE, &resp_settings);
    c->sp.data = x;
    tp__h1_scan_reset_response(&c->scan);
    c->scan_ahead = 0;
    c->nhead = 0;
    c->error = NULL;
    tp__head_reset(&c->head);
}

/* ---- the request ---- */

/* Joins every field called `name` into one comma-separated value in buf (RFC 9110 5.3). */
static size_t joined(const tp_http_head_t *hd, size_t nfields, const char *name, char *buf,
                     size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < nfields; i++) {
        if (!tp__h1_name_is(tp__head_str(hd, hd->fields[i].name), name))
            continue;
        tp_str_t v = tp__head_str(hd, hd->fields[i].value);
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

/* The Via line this hop adds (RFC 9110 7.6.3), when the endpoint says so. */
void tp__h1_out_via(tp_h1_out_t *o, const tp_conn_t *conn) {
    const tp_forwarding_cfg_t *fw = &conn->ep->cfg->forwarding;
    if (!fw->via)
        return;
    TP_H1_OUT_LIT(o, "Via: 1.1 ");
    const char *name = fw->via_name && *fw->via_name ? fw->via_name : "turnpike";
    tp__h1_out_add(o, name, strlen(name));
    TP_H1_OUT_LIT(o, "\r\n");
}

/* X-Forwarded-*, Forwarded and Via, as the endpoint's `forwarding` says. */
static void out_forwarding(tp_h1_out_t *o, const tp_exchange_t *x) {
    const tp_conn_t *conn = x->conn;
    const tp_forwarding_cfg_t *fw = &conn->ep->cfg->forwarding;
    const tp_http_head_t *hd = x->req.head;
    char ip[TP_ADDR_STRLEN];
    tp_addr_format_ip(tp_conn_peer(conn), ip, sizeof(ip));
    tp_str_t host = tp__head_get(hd, "host");
    if (fw->x_forwarded != TP_XFF_OFF) {
        char prior[2048];
        size_t pn = fw->x_forwarded == TP_XFF_APPEND
                        ? joined(hd, x->req.nfields, "x-forwarded-for", prior, sizeof(prior))
                        : 0;
        TP_H1_OUT_LIT(o, "X-Forwarded-For: ");
        if (pn) {
            tp__h1_out_add(o, prior, pn);
            TP_H1_OUT_LIT(o, ", ");
        }
        tp__h1_out_add(o, ip, strlen(ip));
        TP_H1_OUT_LIT(o, "\r\n");
        bool replace = fw->x_forwarded == TP_XFF_REPLACE;
        if (replace || !tp__head_get(hd, "x-forwarded-proto").ptr) {
            if (x->req.secure)
                TP_H1_OUT_LIT(o, "X-Forwarded-Proto: https\r\n");
            else
                TP_H1_OUT_LIT(o, "X-Forwarded-Proto: http\r\n");
        }
        if (host.ptr && (replace || !tp__head_get(hd, "x-forwarded-host").ptr))
            tp__h1_out_field(o, (tp_str_t){"X-Forwarded-Host", 16}, host);
    }
    if (fw->forwarded) { /* RFC 7239: IPv6 quoted and bracketed; another line extends the list */
        bool v6 = strchr(ip, ':') != NULL;
        TP_H1_OUT_LIT(o, "Forwarded: for=");
        if (v6)
            TP_H1_OUT_LIT(o, "\"[");
        tp__h1_out_add(o, ip, strlen(ip));
        if (v6)
            TP_H1_OUT_LIT(o, "]\"");
        if (x->req.secure)
            TP_H1_OUT_LIT(o, ";proto=https");
        else
            TP_H1_OUT_LIT(o, ";proto=http");
        bool plain = host.ptr != NULL;
        for (size_t i = 0; plain && i < host.len; i++)
            plain = tp__h1_is_tchar((unsigned char)host.ptr[i]);
        if (plain) { /* a host with ':' or '[' would need quoting: left out rather than wrong */
            TP_H1_OUT_LIT(o, ";host=");
            tp__h1_out_str(o, host);
        }
        TP_H1_OUT_LIT(o, "\r\n");
    }
    tp__h1_out_via(o, conn);
}

int tp__h1c_send_head(tp_exchange_t *x) {
    tp_conn_t *conn = x->conn;
    tp_request_t *req = &x->req;
    const tp_http_head_t *hd = req->head;
    bool server = tp__onramp_routes(conn->ep->cfg->type);
    tp_h1_out_t o;
    tp__h1_out_init(&o, hd->len + req->edits.added_len + 512);
    tp__h1_out_str(&o, tp_request_method(req));
    TP_H1_OUT_LIT(&o, " ");
    tp_str_t path = tp_request_path(req);
    if (path.len == 0 || path.ptr[0] != '/')
        TP_H1_OUT_LIT(&o, "/");
    tp__h1_out_str(&o, path);
    TP_H1_OUT_LIT(&o, " HTTP/1.1\r\n");
    if (!server || !tp__head_get(hd, "host").ptr) {
        /* A forward proxy's origin is the target's; a server's client named it in Host. */
        TP_H1_OUT_LIT(&o, "Host: ");
        bool v6 = memchr(req->target.host.ptr, ':', req->target.host.len) != NULL;
        if (v6)
            TP_H1_OUT_LIT(&o, "[");
        tp__h1_out_str(&o, req->target.host);
        if (v6)
            TP_H1_OUT_LIT(&o, "]");
        if (req->target.port != 80) {
            TP_H1_OUT_LIT(&o, ":");
            tp__h1_out_u64(&o, req->target.port);
        }
        TP_H1_OUT_LIT(&o, "\r\n");
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
    tp__h1_out_fields(&o, hd, req->nfields, &req->edits, skip);
    tp__h1_out_added(&o, &req->edits);
    out_forwarding(&o, x);
    if (req->upgrade) {
        TP_H1_OUT_LIT(&o, "Connection: upgrade\r\n");
        tp__h1_out_field(&o, (tp_str_t){"Upgrade", 7}, tp__head_get(hd, "upgrade"));
    }
    const tp_body_dir_t *bd = &x->body[TP_TO_UPSTREAM];
    x->up.chunked_out =
        req->framing == TP_FRAMING_STREAM || (bd->active && bd->will_change && x->req_has_body);
    if (x->up.chunked_out) {
        TP_H1_OUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    } else if (req->framing == TP_FRAMING_LENGTH) {
        TP_H1_OUT_LIT(&o, "Content-Length: ");
        tp__h1_out_u64(&o, req->length);
        TP_H1_OUT_LIT(&o, "\r\n");
    }
    TP_H1_OUT_LIT(&o, "\r\n");
    if (!o.p) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    uv_buf_t b = uv_buf_init(o.p, (unsigned)o.len);
    return tp__conn_write(conn, TP_TO_UPSTREAM, &b, 1, NULL, o.p);
}

/* Writes body bytes toward `dir`, as a chunk when `chunked`; `hold` keeps them alive or is NULL
 * (then they are copied). */
int tp__h1_send_chunk(tp_conn_t *conn, int dir, tp_buf_t *hold, const uint8_t *p, size_t n,
                      bool chunked) {
    if (hold && !chunked) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        return tp__conn_write(conn, dir, &b, 1, hold, NULL);
    }
    if (hold) {
        char *frame = malloc(24);
        if (!frame) {
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            return TP_ERR_NOMEM;
        }
        size_t k = tp__fmt_hex(frame, n);
        frame[k++] = '\r';
        frame[k++] = '\n';
        uv_buf_t b[3] = {uv_buf_init(frame, (unsigned)k), uv_buf_init((char *)p, (unsigned)n),
                         uv_buf_init("\r\n", 2)};
        return tp__conn_write(conn, dir, b, 3, hold, frame);
    }
    /* One block owned by the write: the chunk frame (when chunked), the bytes, the CRLF. */
    char *copy = malloc(n + 24);
    if (!copy) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    size_t k = 0;
    if (chunked) {
        k = tp__fmt_hex(copy, n);
        copy[k++] = '\r';
        copy[k++] = '\n';
    }
    memcpy(copy + k, p, n);
    k += n;
    if (chunked) {
        copy[k++] = '\r';
        copy[k++] = '\n';
    }
    uv_buf_t b = uv_buf_init(copy, (unsigned)k);
    return tp__conn_write(conn, dir, &b, 1, NULL, copy);
}

int tp__h1c_send_body(tp_exchange_t *x, tp_buf_t *hold, const uint8_t *p, size_t n) {
    if (n == 0)
        return 0;
    return tp__h1_send_chunk(x->conn, TP_TO_UPSTREAM, hold, p, n, x->up.chunked_out);
}

int tp__h1_send_last_chunk(tp_conn_t *conn, int dir, const tp_http_head_t *hd, size_t from) {
    if (!hd || from >= hd->nfields)
        return tp__conn_write_copy(conn, dir, "0\r\n\r\n", 5);
    tp_h1_out_t o;
    tp__h1_out_init(&o, hd->len + 16);
    tp__h1_out_last_chunk(&o, hd, from);
    if (!o.p) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    uv_buf_t b = uv_buf_init(o.p, (unsigned)o.len);
    return tp__conn_write(conn, dir, &b, 1, NULL, o.p);
}

int tp__h1c_send_end(tp_exchange_t *x, const tp_http_head_t *head, size_t from) {
    if (!x->up.chunked_out)
        return 0;
    return tp__h1_send_last_chunk(x->conn, TP_TO_UPSTREAM, head, from);
}

/* ---- the response ---- */

static int resp_head_cb(llhttp_t *p, int element, const char *at, size_t len) {
    tp_exchange_t *x = p->data;
    x->resp_started = true;
    return tp__head_append(&x->up.head, element, at, len) ? HPE_USER : 0;
}
static int resp_head_done(llhttp_t *p, int element) {
    tp_exchange_t *x = p->data;
    return tp__head_complete(&x->up.head, element) ? HPE_USER : 0;
}
static int on_status(llhttp_t *p, const char *at, size_t len) {
    return resp_head_cb(p, TP_HEAD_IN_FIRST, at, len);
}
static int on_status_done(llhttp_t *p) { return resp_head_done(p, TP_HEAD_IN_FIRST); }
static int on_rname(llhttp_t *p, const char *at, size_t len) {
    return resp_head_cb(p, TP_HEAD_IN_NAME, at, len);
}
static int on_rname_done(llhttp_t *p) { return resp_head_done(p, TP_HEAD_IN_NAME); }
static int on_rvalue(llhttp_t *p, const char *at, size_t len) {
    return resp_head_cb(p, TP_HEAD_IN_VALUE, at, len);
}
static int on_rvalue_done(llhttp_t *p) { return resp_head_done(p, TP_HEAD_IN_VALUE); }
static int on_resp_begin(llhttp_t *p) {
    tp_exchange_t *x = p->data;
    x->resp_started = true;
    return 0;
}

static int on_resp_headers_done(llhttp_t *p) {
    tp_exchange_t *x = p->data;
    tp_h1_client_t *c = &x->up;
    unsigned status = p->status_code;
    bool switching = status == 101;
    bool informational = status >= 100 && status < 200 && !switching;
    bool no_body = x->req.method == TP_METHOD_HEAD || informational || switching || status == 204 ||
                   status == 304;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
    c->keep_alive = llhttp_should_keep_alive(p);
    c->rframing = switching ? TP_H1_FRAMING_TUNNEL
                  : no_body ? TP_H1_FRAMING_NONE
                  : chunked ? TP_H1_FRAMING_CHUNKED
                  : has_cl  ? TP_H1_FRAMING_LENGTH
                            : TP_H1_FRAMING_CLOSE;
    c->rlength = p->content_length;
    tp_http_framing_t framing = has_cl && !chunked ? TP_FRAMING_LENGTH
                                : no_body          ? TP_FRAMING_NONE
                                                   : TP_FRAMING_STREAM;
    if (!informational)
        c->nhead = c->head.nfields;
    tp_str_t upgrade = switching ? tp__head_get(&c->head, "upgrade") : (tp_str_t){NULL, 0};
    if (tp__x_response_head(x, (uint16_t)status, framing, p->content_length, upgrade) != 0)
        return HPE_USER;
    if (informational) {
        tp__head_reset(&c->head);
        return 1; /* no body; the final response follows */
    }
    if (switching) { /* what follows the head is the new protocol: tp__h1c_read() hands over */
        x->upgraded = true;
        return HPE_PAUSED;
    }
    if (no_body)  /* HEAD, 204, 304: no body follows, whatever the headers say; */
        return 1; /* bytes after the head are then not this response's (RFC 9112 6.3) */
    return 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t len) {
    tp_exchange_t *x = p->data;
    int rc = tp__x_response_body(x, x->up.cur, at, len);
    if (rc < 0)
        return HPE_USER;
    return rc > 0 ? HPE_PAUSED : 0; /* a watermark: tp__h1c_read keeps the rest of the read */
}

static int on_resp_done(llhttp_t *p) {
    tp_exchange_t *x = p->data;
    if (!x->resp_final) /* an interim (1xx) response: the final one follows */
        return 0;
    return tp__x_response_end(x) != 0 ? HPE_USER : HPE_PAUSED;
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

/*
 * llhttp over a response read, behind the strict scanner (src/h1/scan.c): llhttp only sees bytes
 * the scanner passed, and the scanner stops at the end of each head (until the head's framing is
 * known) and of each message, so the two agree on every boundary. Returns what llhttp_execute()
 * would for the whole read; HPE_USER with *why set when the scanner refused the bytes.
 */
static llhttp_errno_t resp_execute(tp_h1_client_t *c, const char *at, size_t n, const char **why) {
    size_t done = 0;
    while (done < n) {
        size_t ahead = c->scan_ahead < n - done ? c->scan_ahead : n - done;
        c->scan_ahead = 0;
        size_t ok = ahead + tp__h1_scan_run(&c->scan, at + done + ahead, n - done - ahead);
        if (tp__h1_scan_failed(&c->scan) && ok == 0) {
            *why = c->scan.err ? c->scan.err : "invalid response framing";
            return HPE_USER;
        }
        if (ok == 0) { /* at a boundary, nothing to pass: move the scanner on */
            if (tp__h1_scan_head_done(&c->scan)) {
                tp__h1_scan_body(&c->scan, c->rframing, c->rlength);
            } else if (tp__h1_scan_message_done(&c->scan)) {
                tp__h1_scan_reset_response(&c->scan);
            } else {
                *why = "response framing out of step";
                return HPE_USER;
            }
            continue;
        }
        llhttp_errno_t e = llhttp_execute(&c->sp, at + done, ok);
        if (e != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->sp);
            if (pos >= at + done && pos <= at + done + ok)
                c->scan_ahead = (size_t)(at + done + ok - pos);
            return e;
        }
        done += ok;
    }
    return HPE_OK;
}

void tp__h1c_read(tp_exchange_t *x, tp_buf_t *b, ssize_t nread) {
    tp_conn_t *conn = x->conn;
    tp_h1_client_t *c = &x->up;
    if (!x->forwarding || x->answered) {
        /* An idle keep-alive upstream spoke or closed: it cannot be reused. */
        if (b)
            tp__buf_unref(b);
        tp__conn_upstream_close(conn);
        return;
    }
    llhttp_errno_t e;
    const char *why = NULL;
    if (nread > 0) {
        const char *at = b->data;
        if (c->rest == b) { /* tp_body_resume(): the rest of a read a watermark stopped */
            at += c->rest_off;
            c->rest = NULL;
        }
        c->cur = b;
        e = resp_execute(c, at, (size_t)nread, &why);
        if (why)
            c->error = why;
        c->cur = NULL;
        if (e == HPE_PAUSED && x->upgraded && !conn->closing) {
            const char *pos = llhttp_get_error_pos(&c->sp);
            tp__x_upgraded(x, b, pos, (size_t)(at + nread - pos));
            return;
        }
        if (e == HPE_PAUSED && x->body[TP_TO_CLIENT].watermark && !conn->closing) {
            const char *pos = llhttp_get_error_pos(&c->sp);
            size_t left = (size_t)(at + nread - pos);
            if (left) { /* kept, with b's reference, for tp_body_resume() */
                c->rest = b;
                c->rest_off = (size_t)(pos - b->data);
                c->rest_len = left;
            } else {
                tp__buf_unref(b);
            }
            return;
        }
        if (e == HPE_PAUSED) {
            if (llhttp_get_error_pos(&c->sp) != at + nread)
                c->keep_alive = false; /* bytes after a complete response: broken framing */
            llhttp_resume(&c->sp);
            e = HPE_OK;
        }
        tp__buf_unref(b);
    } else if (nread == UV_EOF) {
        e = x->resp_done ? HPE_OK : llhttp_finish(&c->sp);
        if (e == HPE_PAUSED)
            e = HPE_OK;
        c->keep_alive = false;
        if (e == HPE_OK && !x->resp_done)
            e = HPE_INVALID_EOF_STATE;
    } else {
        e = HPE_USER;
        c->keep_alive = false;
    }
    if (conn->closing)
        return;
    if (e != HPE_OK) {
        tp__x_response_failed(x, nread, c->error ? c->error : llhttp_get_error_reason(&c->sp));
        return;
    }
    if (x->resp_done)
        tp__x_response_complete(x);
}

void tp__h1c_resume(tp_exchange_t *x) {
    tp_h1_client_t *c = &x->up;
    llhttp_resume(&c->sp);
    if (c->rest) {
        tp__conn_cork(x->conn, TP_TO_CLIENT);
        tp__h1c_read(x, c->rest, (ssize_t)c->rest_len);
        tp__conn_uncork(x->conn, TP_TO_CLIENT);
    } else if (!x->resp_done) {
        tp__conn_upstream_read(x->conn, true);
    }
}
