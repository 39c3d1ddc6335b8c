/* test_request.c: unit tests for HTTP/1 request framing (src/h1/request.c, src/h1/head.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "h1/request.h"

typedef struct {
    char body[256];
    size_t len;
} sink_t;

static int on_body(void *ctx, const char *at, size_t len) {
    sink_t *s = ctx;
    if (s->len + len > sizeof(s->body))
        return -1;
    memcpy(s->body + s->len, at, len);
    s->len += len;
    return 0;
}

/* Feeds `text` in pieces of `step` bytes; returns the first event other than MORE. */
static tp_h1_req_event_t feed(tp_h1_req_t *r, const char *text, size_t *off, size_t step) {
    size_t len = strlen(text);
    while (*off < len || r->kick) {
        size_t n = len - *off < step ? len - *off : step;
        size_t used = 0;
        tp_h1_req_event_t ev = tp__h1_req_execute(r, text + *off, n, &used);
        *off += used;
        if (ev != TP_H1_REQ_MORE)
            return ev;
    }
    return TP_H1_REQ_MORE;
}

static void expect_str(tp_str_t s, const char *want) {
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static void test_absolute_get_split_everywhere(void **state) {
    const char *req = "GET http://example.com:8080/p?q=1#frag HTTP/1.1\r\nHost: example.com\r\n"
                      "X-A: 1\r\n\r\n";
    for (size_t step = 1; step <= strlen(req); step++) {
        sink_t sink = {0};
        tp_h1_req_t r;
        assert_int_equal(tp__h1_req_init(&r, 1024, 16, &sink), 0);
        size_t off = 0;
        assert_int_equal(feed(&r, req, &off, step), TP_H1_REQ_HEAD);
        tp_http_target_t t;
        const char *detail = NULL;
        assert_int_equal(tp__h1_parse_target(&r, &t, &detail), 0);
        expect_str(t.host, "example.com");
        assert_int_equal(t.port, 8080);
        expect_str(t.path, "/p?q=1");
        expect_str(tp__head_get(&r.head, "x-a"), "1");
        expect_str(tp__head_str(&r.head, r.head.first), "GET");
        assert_int_equal(feed(&r, req, &off, step), TP_H1_REQ_MESSAGE);
        tp__h1_req_free(&r);
    }
}

static void test_chunked_body_and_pipelining(void **state) {
    const char *req =
        "POST http://x/u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET http://y/ HTTP/1.1\r\nHost: y\r\n\r\n";
    sink_t sink = {0};
    tp_h1_req_t r;
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, &sink), 0);
    r.on_body = on_body;
    size_t off = 0;
    assert_int_equal(feed(&r, req, &off, 7), TP_H1_REQ_HEAD);
    assert_int_equal(feed(&r, req, &off, 7), TP_H1_REQ_MESSAGE);
    assert_int_equal(sink.len, 11);
    assert_memory_equal(sink.body, "hello world", 11);
    tp__h1_req_next(&r);
    assert_int_equal(feed(&r, req, &off, 7), TP_H1_REQ_HEAD);
    tp_http_target_t t;
    const char *detail;
    assert_int_equal(tp__h1_parse_target(&r, &t, &detail), 0);
    expect_str(t.host, "y");
    assert_int_equal(t.port, 80);
    tp__h1_req_free(&r);
}

static void test_connect_target(void **state) {
    struct {
        const char *target;
        int status;
    } cases[] = {
        {"example.com:443", 0}, {"[::1]:8443", 0}, {"example.com", 400}, {"a:0", 400},
        {"a:65536", 400},       {"[::1]", 400},    {"a b:1", 400},       {"[zz]:1", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
        tp_h1_req_t r;
        assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
        size_t off = 0;
        tp_h1_req_event_t ev = feed(&r, req, &off, 64);
        if (ev == TP_H1_REQ_HEAD) {
            tp_http_target_t t;
            const char *detail = NULL;
            assert_int_equal(tp__h1_parse_target(&r, &t, &detail), cases[i].status);
        } else {
            assert_int_equal(ev, TP_H1_REQ_ERROR); /* llhttp refused the target itself */
            assert_int_not_equal(cases[i].status, 0);
        }
        tp__h1_req_free(&r);
    }
}

static void test_bad_targets(void **state) {
    struct {
        const char *target;
        int status;
    } cases[] = {
        {"/origin-form", 400},   {"https://x/", 0},        {"http://user@x/", 400},
        {"http:///nohost", 400}, {"http://x:99999/", 400}, {"http://x", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
        tp_h1_req_t r;
        assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
        size_t off = 0;
        assert_int_equal(feed(&r, req, &off, 64), TP_H1_REQ_HEAD);
        tp_http_target_t t;
        const char *detail = NULL;
        assert_int_equal(tp__h1_parse_target(&r, &t, &detail), cases[i].status);
        if (cases[i].status)
            assert_non_null(detail);
        tp__h1_req_free(&r);
    }
}

/* https:// targets: TLS to the origin, port 443 unless given; http:// stays plain on 80. */
static void test_https_targets(void **state) {
    struct {
        const char *target;
        bool https;
        uint16_t port;
        const char *host;
    } cases[] = {
        {"https://a.example/p", true, 443, "a.example"},
        {"HTTPS://a.example:8443/", true, 8443, "a.example"},
        {"https://[::1]/", true, 443, "::1"},
        {"http://a.example/", false, 80, "a.example"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
        tp_h1_req_t r;
        assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
        size_t off = 0;
        assert_int_equal(feed(&r, req, &off, 64), TP_H1_REQ_HEAD);
        tp_http_target_t t;
        const char *detail = NULL;
        assert_int_equal(tp__h1_parse_target(&r, &t, &detail), 0);
        assert_int_equal(t.https, cases[i].https);
        assert_int_equal(t.port, cases[i].port);
        assert_int_equal(t.host.len, strlen(cases[i].host));
        assert_memory_equal(t.host.ptr, cases[i].host, t.host.len);
        tp__h1_req_free(&r);
    }
}

static void test_errors_and_limits(void **state) {
    struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET http://x/ HTTP/1.1\r\nBad Name: v\r\n\r\n", 400},
        {"GET http://x/ HTTP/1.1\r\nX-Sp : v\r\n\r\n", 400},
        {"GET http://x/ HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET http://x/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
        {"POST http://x/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"GET http://x/ HTTP/1.1\r\nX-Big: "
         "0123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
         431},
        {"GET http://x/0123456789012345678901234567890123456789012345678901234567890123456789"
         "0123456789 HTTP/1.1\r\n\r\n",
         414},
        {"GET http://x/ HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431},
        {"GARBAGE\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tp_h1_req_t r;
        assert_int_equal(tp__h1_req_init(&r, 64, 4, NULL), 0);
        size_t off = 0;
        tp_h1_req_event_t ev = feed(&r, cases[i].req, &off, 5);
        if (ev == TP_H1_REQ_HEAD) /* framing errors after the head show up on the next call */
            ev = feed(&r, cases[i].req, &off, 5);
        assert_int_equal(ev, TP_H1_REQ_ERROR);
        assert_int_equal(r.err_status, cases[i].status);
        assert_non_null(r.err_detail);
        tp__h1_req_free(&r);
    }
}

static void test_hop_by_hop(void **state) {
    const char *req =
        "GET http://x/ HTTP/1.1\r\nHost: x\r\nConnection: close, X-Private\r\nX-Private: 1\r\n"
        "X-Public: 2\r\nKeep-Alive: 5\r\n\r\n";
    tp_h1_req_t r;
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
    size_t off = 0;
    assert_int_equal(feed(&r, req, &off, 64), TP_H1_REQ_HEAD);
    assert_true(tp__http_is_hop_by_hop(&r.head, tp_str("x-private")));
    assert_true(tp__http_is_hop_by_hop(&r.head, tp_str("Keep-Alive")));
    assert_true(tp__http_is_hop_by_hop(&r.head, tp_str("connection")));
    assert_false(tp__http_is_hop_by_hop(&r.head, tp_str("X-Public")));
    tp__h1_req_free(&r);

    /* Only "keep-alive" named: nothing else is hop-by-hop; a second Connection field counts. */
    const char *two = "GET http://x/ HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive , upgrade\r\n"
                      "X-Private: 1\r\nconnection: te,x-private\r\n\r\n";
    const char *ka = "GET http://x/ HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
                     "Close: 1\r\nX-Private: 1\r\n\r\n";
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
    off = 0;
    assert_int_equal(feed(&r, two, &off, 64), TP_H1_REQ_HEAD);
    assert_true(tp__http_is_hop_by_hop(&r.head, tp_str("X-Private")));
    assert_false(tp__http_is_hop_by_hop(&r.head, tp_str("Host")));
    tp__h1_req_free(&r);
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
    off = 0;
    assert_int_equal(feed(&r, ka, &off, 64), TP_H1_REQ_HEAD);
    assert_false(tp__http_is_hop_by_hop(&r.head, tp_str("X-Private")));
    assert_false(tp__http_is_hop_by_hop(&r.head, tp_str("Close")));
    assert_true(tp__http_is_hop_by_hop(&r.head, tp_str("Keep-Alive")));
    tp__h1_req_free(&r);
}

/* One row of the strictness table: bytes, and either the refusal (status and a piece of the
 * detail) or, for status 0, the one body the single request must carry. */
typedef struct {
    const char *name;
    const char *bytes;
    size_t len;
    int status;
    const char *want; /* a substring of err_detail, or the exact body */
} strict_case_t;

#define CASE(n, lit, st, w)                                                                        \
    { n, lit, sizeof(lit) - 1, st, w }
#define POST    "POST http://x/ HTTP/1.1\r\nHost: x\r\n"
#define CHUNKED POST "Transfer-Encoding: chunked\r\n\r\n"

static const strict_case_t strict_cases[] = {
    /* Content-Length and Transfer-Encoding together, in both orders (CL.TE, TE.CL). */
    CASE("cl-te", POST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nhello", 400,
         "Content-Length"),
    CASE("te-cl", POST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nhello", 400,
         "Content-Length"),
    CASE("cl-te-gzip", POST "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400,
         "Content-Length"),
    /* Content-Length values (RFC 9110 8.6). */
    CASE("cl-dup-same", POST "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400,
         "Content-Length"),
    CASE("cl-dup-differ", POST "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400,
         "Content-Length"),
    CASE("cl-list", POST "Content-Length: 5, 5\r\n\r\nhello", 400, "Content-Length"),
    CASE("cl-plus", POST "Content-Length: +5\r\n\r\nhello", 400, "Content-Length"),
    CASE("cl-minus", POST "Content-Length: -5\r\n\r\nhello", 400, "Content-Length"),
    CASE("cl-inner-space", POST "Content-Length: 1 5\r\n\r\nhello", 400, "Content-Length"),
    CASE("cl-hex", POST "Content-Length: 0x5\r\n\r\nhello", 400, "Content-Length"),
    CASE("cl-empty", POST "Content-Length:\r\n\r\n", 400, "Content-Length"),
    CASE("cl-overflow", POST "Content-Length: 18446744073709551616\r\n\r\n", 400, "Content-Length"),
    /* Transfer-Encoding lists (RFC 9112 6.1, 6.3, 7). */
    CASE("te-xchunked", POST "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400,
         "does not end with chunked"),
    CASE("te-identity", POST "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400,
         "does not end with chunked"),
    CASE("te-gzip", POST "Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400,
         "does not end with chunked"),
    CASE("te-chunked-identity", POST "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400,
         "Transfer-Encoding"),
    CASE("te-chunked-twice", POST "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400,
         "Transfer-Encoding"),
    CASE("te-two-lines",
         POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
         "Transfer-Encoding"),
    CASE("te-identity-chunked", POST "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 501,
         "other than chunked"),
    CASE("te-gzip-then-chunked-lines",
         POST "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501,
         "other than chunked"),
    CASE("te-empty", POST "Transfer-Encoding:\r\n\r\n", 400, "empty Transfer-Encoding"),
    CASE("te-params", POST "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400, "parameters"),
    CASE("te-trailing-tab", POST "Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 400, "ambiguous"),
    CASE("te-vtab", POST "Transfer-Encoding: \vchunked\r\n\r\n0\r\n\r\n", 400, "control character"),
    CASE("te-space-colon", POST "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400,
         "whitespace between a field name and its colon"),
    CASE("te-http10", "POST http://x/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
         "HTTP/1.0"),
    CASE("te-folded", POST "X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
         "obs-fold"),
    /* Field lines. */
    CASE("obs-fold", POST "X-A: 1\r\n\t2\r\n\r\n", 400, "obs-fold"),
    CASE("space-before-first-field", "GET http://x/ HTTP/1.1\r\n Host: x\r\n\r\n", 400,
         "between the start line and the first field"),
    CASE("bare-lf-head", "GET http://x/ HTTP/1.1\nHost: x\n\n", 400, "bare LF"),
    CASE("bare-lf-one-line", "GET http://x/ HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", 400, "bare LF"),
    CASE("bare-cr-value", "GET http://x/ HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", 400, "bare CR"),
    CASE("cr-cr-end", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\rX\r\n\r\n", 400, "bare CR"),
    CASE("nul-value", "GET http://x/ HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400,
         "NUL byte in a field value"),
    CASE("ctl-value", "GET http://x/ HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400,
         "control character in a field value"),
    CASE("del-value", "GET http://x/ HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n", 400,
         "control character in a field value"),
    CASE("nul-name", "GET http://x/ HTTP/1.1\r\nHost: x\r\nX\0A: 1\r\n\r\n", 400,
         "NUL byte in a field name"),
    CASE("empty-name", "GET http://x/ HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", 400, "empty field name"),
    CASE("no-host", "GET http://x/ HTTP/1.1\r\n\r\n", 400, "without a Host"),
    CASE("two-hosts", "GET http://x/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400,
         "more than one Host"),
    CASE("bad-host", "GET http://x/ HTTP/1.1\r\nHost: x y\r\n\r\n", 400, "invalid Host"),
    /* Request lines. */
    CASE("two-spaces", "GET  http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "more than one space"),
    CASE("two-spaces-version", "GET http://x/  HTTP/1.1\r\nHost: x\r\n\r\n", 400,
         "more than one space"),
    CASE("nul-target", "GET http://x/a\0b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "NUL byte"),
    CASE("tab-target", "GET http://x/a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request target"),
    CASE("utf8-target", "GET http://x/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "non-ASCII"),
    CASE("version-2", "GET http://x/ HTTP/2.0\r\nHost: x\r\n\r\n", 505, "unsupported HTTP version"),
    CASE("version-0.9", "GET http://x/ HTTP/0.9\r\nHost: x\r\n\r\n", 505, "unsupported"),
    CASE("version-lowercase", "GET http://x/ http/1.1\r\nHost: x\r\n\r\n", 400, "HTTP version"),
    CASE("version-trailing-space", "GET http://x/ HTTP/1.1 \r\nHost: x\r\n\r\n", 400,
         "HTTP version"),
    CASE("leading-bare-lf", "\nGET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bare LF"),
    CASE("connect-with-body", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: 5\r\n\r\n",
         400, "CONNECT request with content"),
    /* Chunk sizes and extensions (RFC 9112 7.1). */
    CASE("chunk-0x", CHUNKED "0x5\r\nhello\r\n0\r\n\r\n", 400, "chunk size"),
    CASE("chunk-plus", CHUNKED "+5\r\nhello\r\n0\r\n\r\n", 400, "chunk size"),
    CASE("chunk-minus", CHUNKED "-5\r\nhello\r\n0\r\n\r\n", 400, "chunk size"),
    CASE("chunk-underscore", CHUNKED "5_0\r\nhello\r\n0\r\n\r\n", 400, "chunk size"),
    CASE("chunk-leading-space", CHUNKED " 5\r\nhello\r\n0\r\n\r\n", 400, "whitespace"),
    CASE("chunk-trailing-space", CHUNKED "5 \r\nhello\r\n0\r\n\r\n", 400, "whitespace"),
    CASE("chunk-trailing-tab", CHUNKED "5\t\r\nhello\r\n0\r\n\r\n", 400, "whitespace"),
    CASE("chunk-overflow", CHUNKED "10000000000000005\r\nhello\r\n0\r\n\r\n", 400, "overflow"),
    CASE("chunk-empty-size", CHUNKED "\r\nhello\r\n0\r\n\r\n", 400, "empty chunk size"),
    CASE("chunk-bare-lf", CHUNKED "5\nhello\r\n0\r\n\r\n", 400, "bare LF"),
    CASE("chunk-bare-cr", CHUNKED "5\rhello\r\n0\r\n\r\n", 400, "bare CR"),
    CASE("chunk-ext-bare-cr", CHUNKED "5;a\rb\r\nhello\r\n0\r\n\r\n", 400, "bare CR"),
    CASE("chunk-ext-bare-lf", CHUNKED "5;a\nb\r\nhello\r\n0\r\n\r\n", 400, "bare LF"),
    CASE("chunk-ext-quoted-lf", CHUNKED "5;a=\"b\nc\"\r\nhello\r\n0\r\n\r\n", 400, "bare LF"),
    CASE("chunk-ext-empty-name", CHUNKED "5;\r\nhello\r\n0\r\n\r\n", 400, "chunk extension"),
    CASE("chunk-data-too-long", CHUNKED "3\r\nhello\r\n0\r\n\r\n", 400, "not followed by CRLF"),
    CASE("chunk-data-no-crlf", CHUNKED "5\r\nhelloXX0\r\n\r\n", 400, "not followed by CRLF"),
    CASE("chunk-data-lf-only", CHUNKED "5\r\nhello\n0\r\n\r\n", 400, "not followed by CRLF"),
    CASE("chunk-last-lf-only", CHUNKED "5\r\nhello\r\n0\r\n\n", 400, "bare LF"),
    CASE("chunk-last-no-crlf", CHUNKED "5\r\nhello\r\n0\n\r\n", 400, "bare LF"),
    CASE("trailer-fold", CHUNKED "5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", 400, "obs-fold"),
    CASE("trailer-nul", CHUNKED "5\r\nhello\r\n0\r\nX-T: \0\r\n\r\n", 400, "NUL"),
    /* What the RFC allows, read the one way both parsers agree on. */
    CASE("ok-cl", POST "Content-Length: 5\r\n\r\nhello", 0, "hello"),
    CASE("ok-cl-leading-zeros", POST "Content-Length: 005\r\n\r\nhello", 0, "hello"),
    CASE("ok-cl-ows", POST "Content-Length:  5  \r\n\r\nhello", 0, "hello"),
    CASE("ok-chunked", CHUNKED "5\r\nhello\r\n0\r\n\r\n", 0, "hello"),
    CASE("ok-chunked-upper", POST "Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0,
         "hello"),
    CASE("ok-chunked-tab-before", POST "Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         0, "hello"),
    CASE("ok-chunked-space-after",
         POST "Transfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, "hello"),
    CASE("ok-te-empty-element", POST "Transfer-Encoding: , chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         0, "hello"),
    CASE("ok-chunk-leading-zeros", CHUNKED "0005\r\nhello\r\n000\r\n\r\n", 0, "hello"),
    CASE("ok-chunk-ext", CHUNKED "5;a=b\r\nhello\r\n0\r\n\r\n", 0, "hello"),
    CASE("ok-chunk-ext-quoted", CHUNKED "5;a=\"b; c\";d\r\nhello\r\n0\r\n\r\n", 0, "hello"),
    CASE("ok-chunk-hex", CHUNKED "a\r\nhellohello\r\n0\r\n\r\n", 0, "hellohello"),
    CASE("ok-trailer", CHUNKED "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", 0, "hello"),
    CASE("ok-leading-crlf", "\r\n\r\nGET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 0, ""),
    CASE("ok-obs-text", "GET http://x/ HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n", 0, ""),
    CASE("ok-http10-no-host", "GET http://x/ HTTP/1.0\r\n\r\n", 0, ""),
    CASE("ok-http10-cl", "POST http://x/ HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello", 0, "hello"),
};

/* Runs one case fed in pieces of `step` bytes, asserting its outcome. */
static void run_strict_case(const strict_case_t *c, size_t step) {
    sink_t sink = {0};
    tp_h1_req_t r;
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, &sink), 0);
    r.on_body = on_body;
    size_t off = 0;
    int messages = 0;
    tp_h1_req_event_t ev = TP_H1_REQ_MORE;
    while (off < c->len || r.kick) {
        size_t n = c->len - off < step ? c->len - off : step;
        size_t used = 0;
        ev = tp__h1_req_execute(&r, c->bytes + off, n, &used);
        assert_true(used <= n);
        off += used;
        if (ev == TP_H1_REQ_ERROR)
            break;
        if (ev == TP_H1_REQ_MESSAGE) {
            messages++;
            tp__h1_req_next(&r);
        }
    }
    if (c->status) {
        if (ev != TP_H1_REQ_ERROR)
            fail_msg("%s (step %zu): accepted, want %d", c->name, step, c->status);
        if (r.err_status != c->status || !strstr(r.err_detail, c->want))
            fail_msg("%s (step %zu): got %d \"%s\", want %d \"...%s...\"", c->name, step,
                     r.err_status, r.err_detail, c->status, c->want);
    } else {
        if (ev == TP_H1_REQ_ERROR)
            fail_msg("%s (step %zu): refused with %d \"%s\"", c->name, step, r.err_status,
                     r.err_detail);
        assert_int_equal(messages, 1);
        assert_int_equal(off, c->len);
        if (sink.len != strlen(c->want) || memcmp(sink.body, c->want, sink.len) != 0)
            fail_msg("%s (step %zu): body \"%.*s\", want \"%s\"", c->name, step, (int)sink.len,
                     sink.body, c->want);
    }
    tp__h1_req_free(&r);
}

static void test_strict_framing(void **state) {
    for (size_t i = 0; i < sizeof(strict_cases) / sizeof(strict_cases[0]); i++) {
        run_strict_case(&strict_cases[i], 1);
        run_strict_case(&strict_cases[i], 7);
        run_strict_case(&strict_cases[i], 4096);
    }
}

/* A broken chunk in the bytes that came with the head is reported instead of the head. */
static void test_body_error_before_head(void **state) {
    static const char req[] = CHUNKED "5\r\nhello\r\n0x1\r\n";
    tp_h1_req_t r;
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
    size_t used = 0;
    assert_int_equal(tp__h1_req_execute(&r, req, sizeof(req) - 1, &used), TP_H1_REQ_ERROR);
    assert_int_equal(r.err_status, 400);
    assert_non_null(strstr(r.err_detail, "chunk size"));
    tp__h1_req_free(&r);
}

/* The body boundary decides where the next request starts, and both parsers agree on it. */
static void test_pipelined_after_body(void **state) {
    static const char req[] =
        POST "Content-Length: 5\r\n\r\nhelloGET http://y/ HTTP/1.1\r\nHost: y\r\n"
             "\r\n";
    for (size_t step = 1; step <= sizeof(req) - 1; step += 5) {
        sink_t sink = {0};
        tp_h1_req_t r;
        assert_int_equal(tp__h1_req_init(&r, 1024, 16, &sink), 0);
        r.on_body = on_body;
        size_t off = 0;
        assert_int_equal(feed(&r, req, &off, step), TP_H1_REQ_HEAD);
        assert_int_equal(feed(&r, req, &off, step), TP_H1_REQ_MESSAGE);
        assert_int_equal(sink.len, 5);
        tp__h1_req_next(&r);
        assert_int_equal(feed(&r, req, &off, step), TP_H1_REQ_HEAD);
        expect_str(tp__head_str(&r.head, r.head.url), "http://y/");
        assert_int_equal(feed(&r, req, &off, step), TP_H1_REQ_MESSAGE);
        assert_int_equal(sink.len, 5);
        tp__h1_req_free(&r);
    }
}

/* A chunk line longer than TP_H1_MAX_CHUNK_LINE is refused (extensions are unbounded in the RFC).
 */
static void test_chunk_line_bound(void **state) {
    static char req[8192];
    size_t n = (size_t)snprintf(req, sizeof(req), "%s5;a=", CHUNKED);
    memset(req + n, 'x', TP_H1_MAX_CHUNK_LINE);
    n += TP_H1_MAX_CHUNK_LINE;
    static const char tail[] = "\r\nhello\r\n0\r\n\r\n";
    memcpy(req + n, tail, sizeof(tail));
    tp_h1_req_t r;
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
    size_t off = 0;
    tp_h1_req_event_t ev = feed(&r, req, &off, 512);
    if (ev == TP_H1_REQ_HEAD)
        ev = feed(&r, req, &off, 512);
    assert_int_equal(ev, TP_H1_REQ_ERROR);
    assert_non_null(strstr(r.err_detail, "chunk-size line too long"));
    tp__h1_req_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absolute_get_split_everywhere),
        cmocka_unit_test(test_chunked_body_and_pipelining),
        cmocka_unit_test(test_connect_target),
        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_https_targets),
        cmocka_unit_test(test_errors_and_limits),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_strict_framing),
        cmocka_unit_test(test_body_error_before_head),
        cmocka_unit_test(test_pipelined_after_body),
        cmocka_unit_test(test_chunk_line_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
