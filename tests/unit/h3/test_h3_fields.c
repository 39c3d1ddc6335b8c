/* test_h3_fields.c: unit tests of the checks on field sections the H3 driver sends (RFC 9114
 * 4.2, 4.3, 4.4, RFC 9220), the field size rule and the QUIC varints of HTTP datagrams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "h3/h3_int.h"

#define F(n, v)                                                                                    \
    { n, sizeof(n) - 1, v, sizeof(v) - 1 }
#define N(a) (sizeof(a) / sizeof((a)[0]))

static int check(const tp_h3_field_t *f, size_t n, tp_h3_section_t kind) {
    return tp__h3_fields_check(f, n, kind, NULL);
}

static void test_requests(void **state) {
    const tp_h3_field_t get[] = {F(":method", "GET"), F(":scheme", "https"),
                                 F(":authority", "example.com"), F(":path", "/"),
                                 F("accept", "*/*")};
    assert_int_equal(check(get, N(get), TP_H3_SECTION_REQUEST), 0);
    const tp_h3_field_t connect[] = {F(":method", "CONNECT"), F(":authority", "a.example:443")};
    assert_int_equal(check(connect, N(connect), TP_H3_SECTION_REQUEST), 0);
    const tp_h3_field_t ext[] = {F(":method", "CONNECT"), F(":protocol", "connect-udp"),
                                 F(":scheme", "https"), F(":authority", "proxy"),
                                 F(":path", "/.well-known/masque/udp/h/53/")};
    assert_int_equal(check(ext, N(ext), TP_H3_SECTION_REQUEST), 0);
    const tp_h3_field_t te[] = {F(":method", "GET"), F(":scheme", "https"), F(":path", "/"),
                                F("te", "trailers")};
    assert_int_equal(check(te, N(te), TP_H3_SECTION_REQUEST), 0);
}

static void test_bad_requests(void **state) {
    const char *why = NULL;
    const tp_h3_field_t no_method[] = {F(":scheme", "https"), F(":path", "/")};
    assert_int_equal(tp__h3_fields_check(no_method, N(no_method), TP_H3_SECTION_REQUEST, &why),
                     TP_ERR_INVAL);
    assert_non_null(why);
    const tp_h3_field_t no_path[] = {F(":method", "GET"), F(":scheme", "https")};
    assert_int_equal(check(no_path, N(no_path), TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
    const tp_h3_field_t connect_path[] = {F(":method", "CONNECT"), F(":authority", "a:1"),
                                          F(":path", "/")};
    assert_int_equal(check(connect_path, N(connect_path), TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
    const tp_h3_field_t connect_noauth[] = {F(":method", "CONNECT")};
    assert_int_equal(check(connect_noauth, 1, TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
    const tp_h3_field_t protocol_get[] = {F(":method", "GET"), F(":protocol", "websocket"),
                                          F(":scheme", "https"), F(":path", "/")};
    assert_int_equal(check(protocol_get, N(protocol_get), TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
    const tp_h3_field_t late_pseudo[] = {F(":method", "GET"), F("accept", "*/*"),
                                         F(":scheme", "https"), F(":path", "/")};
    assert_int_equal(check(late_pseudo, N(late_pseudo), TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
    const tp_h3_field_t twice[] = {F(":method", "GET"), F(":method", "GET"), F(":scheme", "https"),
                                   F(":path", "/")};
    assert_int_equal(check(twice, N(twice), TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
    const tp_h3_field_t unknown[] = {F(":method", "GET"), F(":scheme", "https"), F(":path", "/"),
                                     F(":foo", "x")};
    assert_int_equal(check(unknown, N(unknown), TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
    const tp_h3_field_t status[] = {F(":method", "GET"), F(":scheme", "https"), F(":path", "/"),
                                    F(":status", "200")};
    assert_int_equal(check(status, N(status), TP_H3_SECTION_REQUEST), TP_ERR_INVAL);
}

static void test_field_rules(void **state) {
    static const char *const forbidden[] = {"connection", "keep-alive", "proxy-connection",
                                            "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < N(forbidden); i++) {
        tp_h3_field_t f[] = {F(":status", "200"), {forbidden[i], strlen(forbidden[i]), "x", 1}};
        assert_int_equal(check(f, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    }
    const tp_h3_field_t te[] = {F(":status", "200"), F("te", "gzip")};
    assert_int_equal(check(te, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t upper[] = {F(":status", "200"), F("Content-Type", "text/plain")};
    assert_int_equal(check(upper, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t space[] = {F(":status", "200"), F("a b", "x")};
    assert_int_equal(check(space, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t crlf[] = {F(":status", "200"), F("x", "a\r\nb: c")};
    assert_int_equal(check(crlf, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t nul[] = {F(":status", "200"), {"x", 1, "a\0b", 3}};
    assert_int_equal(check(nul, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t edge[] = {F(":status", "200"), F("x", " padded")};
    assert_int_equal(check(edge, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t empty_name[] = {F(":status", "200"), {"", 0, "x", 1}};
    assert_int_equal(check(empty_name, 2, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t empty_value[] = {F(":status", "200"), F("x-empty", "")};
    assert_int_equal(check(empty_value, 2, TP_H3_SECTION_RESPONSE), 0);
}

static void test_responses(void **state) {
    const tp_h3_field_t ok[] = {F(":status", "200"), F("content-length", "5")};
    assert_int_equal(check(ok, N(ok), TP_H3_SECTION_RESPONSE), 0);
    const tp_h3_field_t none[] = {F("content-length", "5")};
    assert_int_equal(check(none, 1, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t bad[] = {F(":status", "20x")};
    assert_int_equal(check(bad, 1, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t big[] = {F(":status", "600")};
    assert_int_equal(check(big, 1, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    const tp_h3_field_t interim[] = {F(":status", "103")};
    assert_int_equal(check(interim, 1, TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
    assert_int_equal(check(interim, 1, TP_H3_SECTION_INFO), 0);
    const tp_h3_field_t switching[] = {F(":status", "101")};
    assert_int_equal(check(switching, 1, TP_H3_SECTION_INFO), TP_ERR_INVAL);
    assert_int_equal(check(ok, 1, TP_H3_SECTION_INFO), TP_ERR_INVAL);
    const tp_h3_field_t path[] = {F(":status", "200"), F(":path", "/")};
    assert_int_equal(check(path, N(path), TP_H3_SECTION_RESPONSE), TP_ERR_INVAL);
}

static void test_trailers(void **state) {
    const tp_h3_field_t ok[] = {F("grpc-status", "0"), F("x-checksum", "abc")};
    assert_int_equal(check(ok, N(ok), TP_H3_SECTION_TRAILERS), 0);
    assert_int_equal(check(NULL, 0, TP_H3_SECTION_TRAILERS), 0);
    const tp_h3_field_t pseudo[] = {F(":status", "200")};
    assert_int_equal(check(pseudo, 1, TP_H3_SECTION_TRAILERS), TP_ERR_INVAL);
}

static void test_status_and_cost(void **state) {
    assert_int_equal(tp__h3_parse_status("204", 3), 204);
    assert_int_equal(tp__h3_parse_status("99", 2), -1);
    assert_int_equal(tp__h3_parse_status("099", 3), -1);
    assert_int_equal(tp__h3_parse_status("2000", 4), -1);
    assert_int_equal(tp__h3_field_cost(4, 10), 46);
}

static void test_varint(void **state) {
    static const uint64_t values[] = {
        0, 1, 63, 64, 16383, 16384, 1073741823, 1073741824, (1ULL << 60) - 1, (1ULL << 62) - 1};
    static const size_t lens[] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 8};
    for (size_t i = 0; i < N(values); i++) {
        uint8_t buf[8];
        size_t n = tp__h3_varint_encode(buf, sizeof(buf), values[i]);
        assert_int_equal(n, lens[i]);
        uint64_t v = 0;
        assert_int_equal(tp__h3_varint_decode(buf, n, &v), n);
        assert_true(v == values[i]);
        /* One byte short never decodes. */
        assert_int_equal(tp__h3_varint_decode(buf, n - 1, &v), 0);
    }
    uint8_t buf[8];
    assert_int_equal(tp__h3_varint_encode(buf, sizeof(buf), 1ULL << 62), 0);
    assert_int_equal(tp__h3_varint_encode(buf, 1, 64), 0);
    /* RFC 9000 A.1 example: 0x7bbd is 15293. */
    const uint8_t ex[] = {0x7b, 0xbd};
    uint64_t v = 0;
    assert_int_equal(tp__h3_varint_decode(ex, 2, &v), 2);
    assert_true(v == 15293);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),    cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_field_rules), cmocka_unit_test(test_responses),
        cmocka_unit_test(test_trailers),    cmocka_unit_test(test_status_and_cost),
        cmocka_unit_test(test_varint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
