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
        tp_h1_target_t t;
        const char *detail = NULL;
        assert_int_equal(tp__h1_parse_target(&r, &t, &detail), 0);
        expect_str(t.host, "example.com");
        assert_int_equal(t.port, 8080);
        expect_str(t.path, "/p?q=1");
        expect_str(tp__h1_head_get(&r.head, "x-a"), "1");
        expect_str(tp__h1_str(&r.head, r.head.first), "GET");
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
    tp_h1_target_t t;
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
            tp_h1_target_t t;
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
        {"/origin-form", 400},   {"https://x/", 501},      {"http://user@x/", 400},
        {"http:///nohost", 400}, {"http://x:99999/", 400}, {"http://x", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
        tp_h1_req_t r;
        assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
        size_t off = 0;
        assert_int_equal(feed(&r, req, &off, 64), TP_H1_REQ_HEAD);
        tp_h1_target_t t;
        const char *detail = NULL;
        assert_int_equal(tp__h1_parse_target(&r, &t, &detail), cases[i].status);
        if (cases[i].status)
            assert_non_null(detail);
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
    const char *req = "GET http://x/ HTTP/1.1\r\nConnection: close, X-Private\r\nX-Private: 1\r\n"
                      "X-Public: 2\r\nKeep-Alive: 5\r\n\r\n";
    tp_h1_req_t r;
    assert_int_equal(tp__h1_req_init(&r, 1024, 16, NULL), 0);
    size_t off = 0;
    assert_int_equal(feed(&r, req, &off, 64), TP_H1_REQ_HEAD);
    assert_true(tp__h1_is_hop_by_hop(&r.head, tp_str("x-private")));
    assert_true(tp__h1_is_hop_by_hop(&r.head, tp_str("Keep-Alive")));
    assert_true(tp__h1_is_hop_by_hop(&r.head, tp_str("connection")));
    assert_false(tp__h1_is_hop_by_hop(&r.head, tp_str("X-Public")));
    tp__h1_req_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absolute_get_split_everywhere),
        cmocka_unit_test(test_chunked_body_and_pipelining),
        cmocka_unit_test(test_connect_target),
        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_errors_and_limits),
        cmocka_unit_test(test_hop_by_hop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
