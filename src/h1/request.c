/* request.c: HTTP/1.x request framing on llhttp: bounded heads, strict names, pause points. */
#include "h1/request.h"

#include <string.h>
#include <strings.h>

static tp_h1_req_t *req_of(llhttp_t *p) { return p->data; }

static int head_cb(llhttp_t *p, int element, const char *at, size_t len) {
    tp_h1_req_t *r = req_of(p);
    int st = tp__h1_head_append(&r->head, element, at, len);
    if (st) {
        r->err_status = st;
        r->err_detail = st == 414 ? "request target too long" : "request header section too large";
        return HPE_USER;
    }
    return 0;
}

static int head_done(llhttp_t *p, int element) {
    tp_h1_req_t *r = req_of(p);
    int st = tp__h1_head_complete(&r->head, element);
    if (st) {
        r->err_status = st;
        r->err_detail = "request header section too large";
        return HPE_USER;
    }
    return 0;
}

bool tp__h1_is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int on_begin(llhttp_t *p) {
    tp_h1_req_t *r = req_of(p);
    if (r->on_begin)
        r->on_begin(r->ctx);
    return 0;
}
static int on_method(llhttp_t *p, const char *at, size_t n) {
    return head_cb(p, TP_H1_IN_FIRST, at, n);
}
static int on_method_done(llhttp_t *p) { return head_done(p, TP_H1_IN_FIRST); }
static int on_url(llhttp_t *p, const char *at, size_t n) { return head_cb(p, TP_H1_IN_URL, at, n); }
static int on_url_done(llhttp_t *p) { return head_done(p, TP_H1_IN_URL); }
static int on_name(llhttp_t *p, const char *at, size_t n) {
    return head_cb(p, TP_H1_IN_NAME, at, n);
}
static int on_value(llhttp_t *p, const char *at, size_t n) {
    return head_cb(p, TP_H1_IN_VALUE, at, n);
}
static int on_value_done(llhttp_t *p) { return head_done(p, TP_H1_IN_VALUE); }

static int on_name_done(llhttp_t *p) {
    int rc = head_done(p, TP_H1_IN_NAME);
    if (rc)
        return rc;
    /* A field name is a token (RFC 9110 5.1): no whitespace before the colon, nothing odd. */
    tp_h1_req_t *r = req_of(p);
    tp_str_t name = tp__h1_str(&r->head, r->head.fields[r->head.nfields - 1].name);
    for (size_t i = 0; i < name.len; i++)
        if (!tp__h1_is_tchar((unsigned char)name.ptr[i])) {
            r->err_status = 400;
            r->err_detail = "invalid character in header name";
            return HPE_USER;
        }
    if (name.len == 0) {
        r->err_status = 400;
        r->err_detail = "empty header name";
        return HPE_USER;
    }
    return 0;
}

static int on_headers_done(llhttp_t *p) {
    req_of(p)->event = TP_H1_REQ_HEAD;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    tp_h1_req_t *r = req_of(p);
    int rc = r->on_body ? r->on_body(r->ctx, at, len) : 0;
    if (rc < 0) {
        r->err_detail = "request body could not be forwarded";
        return HPE_USER;
    }
    if (rc > 0) { /* the consumer holds the body: stop after this chunk */
        r->event = TP_H1_REQ_PAUSE;
        return HPE_PAUSED;
    }
    return 0;
}

static int on_message_done(llhttp_t *p) {
    req_of(p)->event = TP_H1_REQ_MESSAGE;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_begin,
    .on_method = on_method,
    .on_method_complete = on_method_done,
    .on_url = on_url,
    .on_url_complete = on_url_done,
    .on_header_field = on_name,
    .on_header_field_complete = on_name_done,
    .on_header_value = on_value,
    .on_header_value_complete = on_value_done,
    .on_headers_complete = on_headers_done,
    .on_body = on_body,
    .on_message_complete = on_message_done,
};

int tp__h1_req_init(tp_h1_req_t *r, size_t max_header_bytes, size_t max_headers, void *ctx) {
    memset(r, 0, sizeof(*r));
    int rc = tp__h1_head_init(&r->head, max_header_bytes, max_headers);
    if (rc)
        return rc;
    llhttp_init(&r->p, HTTP_REQUEST, &settings);
    r->p.data = r;
    r->ctx = ctx;
    return 0;
}

void tp__h1_req_free(tp_h1_req_t *r) { tp__h1_head_free(&r->head); }

void tp__h1_req_next(tp_h1_req_t *r) {
    tp__h1_head_reset(&r->head);
    r->event = TP_H1_REQ_MORE;
    r->kick = false;
}

tp_h1_req_event_t tp__h1_req_execute(tp_h1_req_t *r, const char *data, size_t len, size_t *used) {
    r->kick = false;
    r->event = TP_H1_REQ_MORE;
    if (!data)
        data = "";
    llhttp_errno_t e = llhttp_execute(&r->p, data, len);
    if (e == HPE_OK) {
        *used = len;
        return TP_H1_REQ_MORE;
    }
    *used = (size_t)(llhttp_get_error_pos(&r->p) - data);
    if (e == HPE_PAUSED) {
        llhttp_resume(&r->p);
        if (r->event == TP_H1_REQ_HEAD)
            r->kick = true; /* a body-less message completes on the next call */
        return (tp_h1_req_event_t)r->event;
    }
    if (!r->err_status)
        r->err_status = 400;
    if (!r->err_detail)
        r->err_detail = llhttp_get_error_reason(&r->p);
    return TP_H1_REQ_ERROR;
}

bool tp__h1_parse_authority(tp_str_t a, uint16_t default_port, tp_str_t *host, uint16_t *port) {
    const char *p = a.ptr, *end = a.ptr + a.len;
    if (a.len == 0)
        return false;
    const char *colon = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', a.len);
        if (!close)
            return false;
        *host = (tp_str_t){p + 1, (size_t)(close - p - 1)};
        for (const char *c = p + 1; c < close; c++)
            if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
                  (*c >= 'A' && *c <= 'F') || *c == ':' || *c == '.'))
                return false;
        if (close + 1 < end) {
            if (close[1] != ':')
                return false;
            colon = close + 1;
        }
    } else {
        colon = memchr(p, ':', a.len);
        const char *hend = colon ? colon : end;
        *host = (tp_str_t){p, (size_t)(hend - p)};
        for (const char *c = p; c < hend; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_'))
                return false;
    }
    if (host->len == 0 || host->len > 253)
        return false;
    if (!colon) {
        if (!default_port)
            return false;
        *port = default_port;
        return true;
    }
    unsigned long v = 0;
    const char *c = colon + 1;
    if (c == end || end - c > 5)
        return false;
    for (; c < end; c++) {
        if (*c < '0' || *c > '9')
            return false;
        v = v * 10 + (unsigned long)(*c - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

int tp__h1_parse_target(const tp_h1_req_t *r, tp_h1_target_t *t, const char **detail) {
    tp_str_t url = tp__h1_str(&r->head, r->head.url);
    memset(t, 0, sizeof(*t));
    if (r->p.method == HTTP_CONNECT) {
        if (!tp__h1_parse_authority(url, 0, &t->host, &t->port)) {
            *detail = "CONNECT needs an authority-form target (host:port)";
            return 400;
        }
        return 0;
    }
    if (r->p.http_major != 1) {
        *detail = "unsupported HTTP version";
        return 400;
    }
    if (url.len >= 8 && strncasecmp(url.ptr, "https://", 8) == 0) {
        *detail = "https:// targets need CONNECT (TLS to origins is not enabled)";
        return 501;
    }
    if (url.len < 7 || strncasecmp(url.ptr, "http://", 7) != 0) {
        *detail = "a forward proxy needs an absolute-form target (http://host/path)";
        return 400;
    }
    const char *a = url.ptr + 7, *end = url.ptr + url.len;
    const char *slash = a;
    while (slash < end && *slash != '/' && *slash != '?' && *slash != '#')
        slash++;
    tp_str_t auth = {a, (size_t)(slash - a)};
    if (memchr(auth.ptr, '@', auth.len) || !tp__h1_parse_authority(auth, 80, &t->host, &t->port)) {
        *detail = "malformed authority in request target";
        return 400;
    }
    const char *frag = memchr(slash, '#', (size_t)(end - slash));
    if (frag) /* a fragment is never sent on the wire */
        end = frag;
    t->path = (tp_str_t){slash, (size_t)(end - slash)};
    return 0;
}
