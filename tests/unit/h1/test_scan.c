/* test_scan.c: unit tests for the strict HTTP/1.1 framing scanner (src/h1/scan.c), responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "h1/scan.h"

/* Scans a response head, sets `framing`, scans the rest; returns the bytes passed. */
static size_t scan_response(tp_h1_scan_t *s, const char *r, size_t len, tp_h1_framing_t framing,
                            uint64_t length) {
    tp__h1_scan_reset_response(s);
    size_t n = tp__h1_scan_run(s, r, len);
    if (!tp__h1_scan_head_done(s))
        return n;
    tp__h1_scan_body(s, framing, length);
    return n + tp__h1_scan_run(s, r + n, len - n);
}

#define LIT(s) s, sizeof(s) - 1

static void test_response_heads(void **state) {
    struct {
        const char *r;
        size_t len;
        const char *err; /* NULL: the head is accepted */
    } cases[] = {
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), NULL},
        {LIT("HTTP/1.0 404 Not Found\r\n\r\n"), NULL},
        {LIT("HTTP/1.1 204\r\n\r\n"), NULL},
        {LIT("HTTP/1.1 200 \r\n\r\n"), NULL},
        {LIT("HTTP/1.1 200 caf\xe9\r\n\r\n"), NULL},
        {LIT("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), "bare LF"},
        {LIT("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), "obs-fold"},
        {LIT("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"), "NUL byte in a field value"},
        {LIT("HTTP/1.1 200 O\0K\r\n\r\n"), "NUL byte in the reason phrase"},
        {LIT("HTTP/1.1 20 OK\r\n\r\n"), "malformed status code"},
        {LIT("HTTP/1.1 2000 OK\r\n\r\n"), "malformed status code"},
        {LIT("HTTP/2.0 200 OK\r\n\r\n"), "unsupported HTTP version"},
        {LIT("HTTP/1.1  200 OK\r\n\r\n"), "malformed status code"},
        {LIT("ICY 200 OK\r\n\r\n"), "malformed HTTP version"},
        {LIT("HTTP/1.1 200 OK\r\nX : a\r\n\r\n"), "whitespace between a field name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tp_h1_scan_t s;
        tp__h1_scan_reset_response(&s);
        size_t n = tp__h1_scan_run(&s, cases[i].r, cases[i].len);
        if (!cases[i].err) {
            if (!tp__h1_scan_head_done(&s))
                fail_msg("case %zu: head refused: %s", i, s.err ? s.err : "(incomplete)");
            assert_int_equal(n, cases[i].len);
        } else {
            if (!tp__h1_scan_failed(&s) || !strstr(s.err, cases[i].err))
                fail_msg("case %zu: got \"%s\", want \"%s\"", i, s.err ? s.err : "(accepted)",
                         cases[i].err);
            assert_true(n < cases[i].len);
        }
    }
}

static void test_response_bodies(void **state) {
    static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
    tp_h1_scan_t s;
    size_t n = scan_response(&s, LIT(chunked), TP_H1_FRAMING_CHUNKED, 0);
    assert_true(tp__h1_scan_message_done(&s));
    assert_int_equal(s.body_bytes, 5);
    assert_int_equal(n, sizeof(chunked) - 1 - strlen("HTTP/1.1 200 OK\r\n")); /* stops at the end */

    /* What llhttp 8.1 lets through: chunk data not followed by CRLF. */
    static const char xx[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
    scan_response(&s, LIT(xx), TP_H1_FRAMING_CHUNKED, 0);
    assert_true(tp__h1_scan_failed(&s));
    assert_non_null(strstr(s.err, "not followed by CRLF"));

    static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
    n = scan_response(&s, LIT(cl), TP_H1_FRAMING_LENGTH, 5);
    assert_true(tp__h1_scan_message_done(&s));
    assert_int_equal(n, sizeof(cl) - 1 - 5); /* "EXTRA" is not this response's */

    /* A 204 (or a HEAD answer) has no body whatever it says: the next bytes are the next head. */
    static const char nc[] = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello";
    n = scan_response(&s, LIT(nc), TP_H1_FRAMING_NONE, 0);
    assert_true(tp__h1_scan_message_done(&s));
    assert_int_equal(n, sizeof(nc) - 1 - 5);

    static const char eof[] = "HTTP/1.0 200 OK\r\n\r\nanything\r\n\0at all";
    n = scan_response(&s, LIT(eof), TP_H1_FRAMING_CLOSE, 0);
    assert_false(tp__h1_scan_failed(&s));
    assert_int_equal(n, sizeof(eof) - 1);
}

/* Split anywhere, the scanner passes the same bytes and stops at the same place. */
static void test_response_split(void **state) {
    static const char r[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
                            "a;x=\"y\"\r\n0123456789\r\n0\r\nT: 1\r\n\r\nnext";
    for (size_t cut = 1; cut < sizeof(r) - 1; cut++) {
        tp_h1_scan_t s;
        tp__h1_scan_reset_response(&s);
        size_t total = 0, off = 0;
        while (off < sizeof(r) - 1) {
            size_t len = off < cut ? cut - off : sizeof(r) - 1 - off;
            size_t n = tp__h1_scan_run(&s, r + off, len);
            off += n;
            total += n;
            if (tp__h1_scan_head_done(&s))
                tp__h1_scan_body(&s, TP_H1_FRAMING_CHUNKED, 0);
            else if (n < len)
                break;
        }
        assert_true(tp__h1_scan_message_done(&s));
        assert_int_equal(total, sizeof(r) - 1 - 4);
        assert_int_equal(s.body_bytes, 10);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_heads),
        cmocka_unit_test(test_response_bodies),
        cmocka_unit_test(test_response_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
