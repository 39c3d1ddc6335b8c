/* request.c: HTTP/1.x request framing on llhttp: bounded heads, strict names, pause points. */
#include "h1/request.h"

#include <string.h>
#include <strings.h>

static tp_h1_req_t *req_of(llhttp_t *p) { return p->data; }

static int head_cb(llhttp_t *p, int element, const char *at, size_t len) {
    tp_h1_req_t *r = req_of(p);
    int st = tp__head_append(&r->head, element, at, len);
    if (st) {
        r->err_status = st;
        r->err_detail = st == 414 ? "request target too long" : "request header section too large";
        return HPE_USER;
    }
    return 0;
}

static int head_done(llhttp_t *p, int element) {
    tp_h1_req_t *r = req_of(p);
    int st = tp__head_complete(&r->head, element);
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
    return head_cb(p, TP_HEAD_IN_FIRST, at, n);
}
static int on_method_done(llhttp_t *p) { return head_done(p, TP_HEAD_IN_FIRST); }
static int on_url(llhttp_t *p, const char *at, size_t n) {
    return head_cb(p, TP_HEAD_IN_URL, at, n);
}
static int on_url_done(llhttp_t *p) { return head_done(p, TP_HEAD_IN_URL); }
static int on_name(llhttp_t *p, const char *at, size_t n) {
    return head_cb(p, TP_HEAD_IN_NAME, at, n);
}
static int on_value(llhttp_t *p, const char *at, size_t n) {
    return head_cb(p, TP_HEAD_IN_VALUE, at, n);
}
static int on_value_done(llhttp_t *p) { return head_done(p, TP_HEAD_IN_VALUE); }

static int on_name_done(llhttp_t *p) {
    int rc = head_done(p, TP_HEAD_IN_NAME);
    if (rc)
        return rc;
    /* A field name is a token (RFC 9110 5.1): no whitespace before the colon, nothing odd. */
    tp_h1_req_t *r = req_of(p);
    tp_str_t name = tp__head_str(&r->head, r->head.fields[r->head.nfields - 1].name);
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

static int refuse(tp_h1_req_t *r, int status, const char *detail) {
    r->err_status = status;
    r->err_detail = detail;
    return HPE_USER;
}

static tp_str_t trim_ows(tp_str_t v) {
    while (v.len && (v.ptr[0] == ' ' || v.ptr[0] == '\t')) {
        v.ptr++;
        v.len--;
    }
    while (v.len && (v.ptr[v.len - 1] == ' ' || v.ptr[v.len - 1] == '\t'))
        v.len--;
    return v;
}

static bool name_is(tp_str_t name, const char *lit) {
    size_t n = strlen(lit);
    return name.len == n && strncasecmp(name.ptr, lit, n) == 0;
}

/* The codings of every Transfer-Encoding line, in order (RFC 9112 6.1): what they add up to. */
typedef struct te_summary {
    unsigned fields, codings, chunked;
    bool last_chunked, chunked_params, malformed;
} te_summary_t;

static void te_add(te_summary_t *te, tp_str_t list) {
    te->fields++;
    size_t i = 0;
    while (i <= list.len) {
        size_t start = i;
        while (i < list.len && list.ptr[i] != ',')
            i++;
        tp_str_t el = trim_ows((tp_str_t){list.ptr + start, i - start});
        i++;
        if (el.len == 0) /* empty list elements are ignored (RFC 9110 5.6.1) */
            continue;
        size_t n = 0;
        while (n < el.len && tp__h1_is_tchar((unsigned char)el.ptr[n]))
            n++;
        tp_str_t rest = trim_ows((tp_str_t){el.ptr + n, el.len - n});
        if (n == 0 || (rest.len && rest.ptr[0] != ';')) {
            te->malformed = true; /* "chun ked", "chunked\v", ... */
            continue;
        }
        te->codings++;
        te->last_chunked = n == 7 && strncasecmp(el.ptr, "chunked", 7) == 0;
        if (te->last_chunked) {
            te->chunked++;
            te->chunked_params |= rest.len > 0; /* chunked has none (RFC 9112 7) */
        }
    }
}

/* Host values: an authority without userinfo (RFC 9112 3.2, RFC 3986 3.2). */
static bool host_value_ok(tp_str_t v) {
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-._~!$&'()*+,;=:[]%", c)))
            return false;
    }
    return true;
}

/*
 * Decides how the body is framed from the head, by RFC 9112 6 and strictly: a request that two
 * parsers could read two ways is refused, never normalized. Then llhttp must have read it the same.
 */
static int check_framing(tp_h1_req_t *r) {
    const tp_http_head_t *h = &r->head;
    const llhttp_t *p = &r->p;
    te_summary_t te = {0};
    unsigned n_cl = 0, n_host = 0;
    uint64_t cl = 0;
    for (size_t i = 0; i < h->nfields; i++) {
        tp_str_t name = tp__head_str(h, h->fields[i].name);
        tp_str_t value = trim_ows(tp__head_str(h, h->fields[i].value));
        if (name_is(name, "transfer-encoding")) {
            te_add(&te, value);
        } else if (name_is(name, "content-length")) {
            /* RFC 9110 8.6: 1*DIGIT. Even identical repeats ("5, 5" or two lines) are refused:
             * the RFC allows it, and a proxy that merges them hides what a peer may split. */
            if (++n_cl > 1)
                return refuse(r, 400, "more than one Content-Length");
            if (value.len == 0)
                return refuse(r, 400, "empty Content-Length");
            for (size_t k = 0; k < value.len; k++) {
                unsigned char c = (unsigned char)value.ptr[k];
                if (c < '0' || c > '9')
                    return refuse(r, 400, "Content-Length is not a decimal number");
                if (cl > (UINT64_MAX - 9) / 10)
                    return refuse(r, 400, "Content-Length overflow");
                cl = cl * 10 + (uint64_t)(c - '0');
            }
        } else if (name_is(name, "host")) {
            if (++n_host > 1)
                return refuse(r, 400, "more than one Host field");
            if (!host_value_ok(value))
                return refuse(r, 400, "invalid Host field value");
        }
    }
    bool http11 = p->http_major == 1 && p->http_minor == 1;
    if (http11 && n_host == 0)
        return refuse(r, 400, "HTTP/1.1 request without a Host field");
    if (te.fields) {
        /* RFC 9112 6.1: HTTP/1.0 has no chunked coding; its framing is faulty. */
        if (!http11)
            return refuse(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
        /* RFC 9112 6.3 (3): both is a smuggling attempt until proven otherwise. */
        if (n_cl)
            return refuse(r, 400, "both Content-Length and Transfer-Encoding");
        if (te.malformed)
            return refuse(r, 400, "malformed Transfer-Encoding");
        if (te.codings == 0)
            return refuse(r, 400, "empty Transfer-Encoding");
        if (te.chunked > 1)
            return refuse(r, 400, "chunked applied more than once");
        /* RFC 9112 6.3 (4): without a final chunked the length cannot be known. */
        if (!te.last_chunked)
            return refuse(r, 400, "Transfer-Encoding does not end with chunked");
        if (te.chunked_params)
            return refuse(r, 400, "parameters on the chunked coding");
        /* RFC 9112 6.1: other codings are not understood here (they would be lost re-framing). */
        if (te.codings > 1)
            return refuse(r, 501, "transfer codings other than chunked are not supported");
    }
    if (p->method == HTTP_CONNECT) {
        if (te.fields || cl) /* RFC 9110 9.3.6: CONNECT has no content */
            return refuse(r, 400, "CONNECT request with content");
        r->framing = TP_H1_FRAMING_TUNNEL;
        return 0;
    }
    bool chunked = te.fields > 0;
    /* llhttp frames the body itself: it must have come to the same answer. */
    if (chunked != ((p->flags & F_CHUNKED) != 0) ||
        (n_cl > 0) != ((p->flags & F_CONTENT_LENGTH) != 0) || (n_cl && cl != p->content_length))
        return refuse(r, 400, "ambiguous message framing");
    r->framing = chunked ? TP_H1_FRAMING_CHUNKED : n_cl ? TP_H1_FRAMING_LENGTH : TP_H1_FRAMING_NONE;
    return 0;
}

static int on_headers_done(llhttp_t *p) {
    tp_h1_req_t *r = req_of(p);
    if (!tp__h1_scan_head_done(&r->scan))
        return refuse(r, 400, "ambiguous message framing (where the head ends)");
    int rc = check_framing(r);
    if (rc)
        return rc;
    tp__h1_scan_body(&r->scan, r->framing, p->content_length);
    r->event = TP_H1_REQ_HEAD;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    tp_h1_req_t *r = req_of(p);
    r->body_seen += len;
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
    int rc = tp__head_init(&r->head, max_header_bytes, max_headers);
    if (rc)
        return rc;
    llhttp_init(&r->p, HTTP_REQUEST, &settings);
    r->p.data = r;
    r->ctx = ctx;
    return 0;
}

void tp__h1_req_free(tp_h1_req_t *r) { tp__head_free(&r->head); }

void tp__h1_req_next(tp_h1_req_t *r) {
    tp__head_reset(&r->head);
    r->event = TP_H1_REQ_MORE;
    r->kick = false;
}

static tp_h1_req_event_t fail(tp_h1_req_t *r, int status, const char *detail) {
    r->err_status = status;
    r->err_detail = detail;
    r->scan_ahead = 0;
    return TP_H1_REQ_ERROR;
}

static tp_h1_req_event_t scan_failed(tp_h1_req_t *r) {
    return fail(r, r->scan.status ? r->scan.status : 400, r->scan.err);
}

tp_h1_req_event_t tp__h1_req_execute(tp_h1_req_t *r, const char *data, size_t len, size_t *used) {
    r->kick = false;
    r->event = TP_H1_REQ_MORE;
    if (!data)
        data = "";
    /* llhttp gets only what the scanner passed: the bytes it vetted in an earlier call (they come
     * first again), then what it passes now. It stops at an error and at the head's and the
     * message's ends, so llhttp cannot read past a boundary the scanner did not see. */
    size_t ahead = r->scan_ahead < len ? r->scan_ahead : len;
    size_t ok = ahead + tp__h1_scan_run(&r->scan, data + ahead, len - ahead);
    llhttp_errno_t e = llhttp_execute(&r->p, data, ok);
    if (e == HPE_OK) {
        *used = ok;
        r->scan_ahead = 0;
        if (tp__h1_scan_failed(&r->scan))
            return scan_failed(r);
        if (ok < len) /* the scanner saw a boundary here; llhttp did not */
            return fail(r, 400, "ambiguous message framing");
        return TP_H1_REQ_MORE;
    }
    *used = (size_t)(llhttp_get_error_pos(&r->p) - data);
    if (e == HPE_PAUSED) {
        llhttp_resume(&r->p);
        r->scan_ahead = ok - *used;
        if (r->event == TP_H1_REQ_PAUSE) /* the body's consumer holds it; the rest comes again */
            return TP_H1_REQ_PAUSE;
        if (r->event == TP_H1_REQ_HEAD) {
            if (r->scan_ahead) /* llhttp ended the head before the scanner did */
                return fail(r, 400, "ambiguous message framing (where the head ends)");
            /* Vet the body bytes that came with the head now: a request whose body is already
             * known to be broken is refused before anything of it goes anywhere. */
            r->scan_ahead = tp__h1_scan_run(&r->scan, data + *used, len - *used);
            if (tp__h1_scan_failed(&r->scan))
                return scan_failed(r);
            r->kick = true; /* a body-less message completes on the next call */
            return TP_H1_REQ_HEAD;
        }
        if (r->event == TP_H1_REQ_MESSAGE) {
            if (r->framing == TP_H1_FRAMING_TUNNEL)
                return TP_H1_REQ_MESSAGE; /* CONNECT: what follows is not HTTP */
            if (r->scan_ahead || !tp__h1_scan_message_done(&r->scan) ||
                r->body_seen != r->scan.body_bytes)
                return fail(r, 400, "ambiguous message framing (where the message ends)");
            tp__h1_scan_reset(&r->scan);
            r->body_seen = 0;
            r->framing = TP_H1_FRAMING_NONE;
            return TP_H1_REQ_MESSAGE;
        }
        return fail(r, 400, "unexpected parser pause");
    }
    r->scan_ahead = 0;
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

int tp__h1_parse_target(const tp_h1_req_t *r, tp_http_target_t *t, const char **detail) {
    tp_str_t url = tp__head_str(&r->head, r->head.url);
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
    size_t scheme = 0;
    if (url.len >= 8 && strncasecmp(url.ptr, "https://", 8) == 0) {
        t->https = true; /* TLS to the origin, as the endpoint's origin_tls says */
        scheme = 8;
    } else if (url.len >= 7 && strncasecmp(url.ptr, "http://", 7) == 0) {
        scheme = 7;
    } else {
        *detail = "a forward proxy needs an absolute-form target (http://host/path or https://)";
        return 400;
    }
    const char *a = url.ptr + scheme, *end = url.ptr + url.len;
    const char *slash = a;
    while (slash < end && *slash != '/' && *slash != '?' && *slash != '#')
        slash++;
    tp_str_t auth = {a, (size_t)(slash - a)};
    if (memchr(auth.ptr, '@', auth.len) ||
        !tp__h1_parse_authority(auth, t->https ? 443 : 80, &t->host, &t->port)) {
        *detail = "malformed authority in request target";
        return 400;
    }
    const char *frag = memchr(slash, '#', (size_t)(end - slash));
    if (frag) /* a fragment is never sent on the wire */
        end = frag;
    t->path = (tp_str_t){slash, (size_t)(end - slash)};
    return 0;
}
