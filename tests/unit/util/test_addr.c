/* test_addr.c: unit tests of addresses, special ranges and common.h's strings and error texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "turnpike/common.h"

static void test_parse_format(void **state) {
    static const struct {
        const char *in;
        bool no_port;
        const char *out; /* NULL: refused */
    } cases[] = {
        {"1.2.3.4:80", false, "1.2.3.4:80"},
        {"0.0.0.0:0", false, "0.0.0.0:0"},
        {"255.255.255.255:65535", false, "255.255.255.255:65535"},
        {"[::1]:443", false, "[::1]:443"},
        {"[2001:DB8::1]:8080", false, "[2001:db8::1]:8080"},
        {"[::ffff:10.0.0.1]:1", false, "[::ffff:10.0.0.1]:1"},
        {"[fe80::1%7]:22", false, "[fe80::1%7]:22"},
        {"[fe80::1%lo]:22", false, "[fe80::1%1]:22"},
        {"10.0.0.1:080", false, "10.0.0.1:80"},
        {"1.2.3.4", true, "1.2.3.4:0"},
        {"::1", true, "[::1]:0"},
        {"[::1]", true, "[::1]:0"},
        {"1.2.3.4:9", true, "1.2.3.4:9"},
        {"1.2.3.4", false, NULL},
        {"::1", false, NULL},
        {"[::1]", false, NULL},
        {"::1:80", false, NULL},
        {"1.2.3.4:65536", false, NULL},
        {"1.2.3.4:-1", false, NULL},
        {"1.2.3.4:+1", false, NULL},
        {"1.2.3.4:", false, NULL},
        {"1.2.3.4: 80", false, NULL},
        {"1.2.3:80", false, NULL},
        {"1.2.3.256:80", false, NULL},
        {"01.2.3.4:80", false, NULL},
        {"localhost:80", false, NULL},
        {"[1.2.3.4]:80", false, NULL},
        {"[::1:80", false, NULL},
        {"[::1]80", false, NULL},
        {"[fe80::1%]:22", false, NULL},
        {"[fe80::1%0]:22", false, NULL},
        {"[fe80::1%no-such-if0]:22", false, NULL},
        {"", true, NULL},
        {" 1.2.3.4:80", false, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tp_addr_t a;
        char buf[TP_ADDR_STRLEN];
        int rc = tp_addr_parse(&a, cases[i].in, cases[i].no_port);
        if (!cases[i].out) {
            if (rc != TP_ERR_INVAL)
                fail_msg("case %zu '%s' accepted", i, cases[i].in);
            assert_int_equal(a.u.sa.sa_family, 0);
            continue;
        }
        if (rc != 0)
            fail_msg("case %zu '%s' refused", i, cases[i].in);
        assert_string_equal(tp_addr_format(&a, buf, sizeof(buf)), cases[i].out);
    }
    assert_int_equal(tp_addr_parse(&(tp_addr_t){0}, NULL, true), TP_ERR_INVAL);
}

static void test_accessors(void **state) {
    tp_addr_t a, b;
    char buf[TP_ADDR_STRLEN];
    assert_int_equal(tp_addr_parse(&a, "192.0.2.7:1234", false), 0);
    assert_int_equal(tp_addr_port(&a), 1234);
    assert_int_equal(tp_addr_len(&a), sizeof(struct sockaddr_in));
    tp_addr_set_port(&a, 65535);
    assert_int_equal(tp_addr_port(&a), 65535);
    assert_int_equal(ntohs(a.u.in.sin_port), 65535);
    assert_string_equal(tp_addr_format_ip(&a, buf, sizeof(buf)), "192.0.2.7");
    /* IPv4 is formatted by hand (not inet_ntop): every digit count, and truncation. */
    static const char *const v4[] = {"0.0.0.0", "255.255.255.255", "10.0.100.9", "1.20.3.104",
                                     "99.100.199.200"};
    for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        tp_addr_t v;
        char in[32];
        snprintf(in, sizeof(in), "%s:1", v4[i]);
        assert_int_equal(tp_addr_parse(&v, in, false), 0);
        assert_string_equal(tp_addr_format_ip(&v, buf, sizeof(buf)), v4[i]);
    }
    char four[5];
    assert_string_equal(tp_addr_format_ip(&a, four, sizeof(four)), "192.");

    assert_int_equal(tp_addr_parse(&b, "[2001:db8::7]:1", false), 0);
    assert_int_equal(tp_addr_len(&b), sizeof(struct sockaddr_in6));
    tp_addr_set_port(&b, 8443);
    assert_string_equal(tp_addr_format(&b, buf, sizeof(buf)), "[2001:db8::7]:8443");
    assert_string_equal(tp_addr_format_ip(&b, buf, sizeof(buf)), "2001:db8::7");

    /* Longest form fits TP_ADDR_STRLEN; a short buffer truncates, NUL-terminated. */
    tp_addr_t l;
    assert_int_equal(
        tp_addr_parse(&l, "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535",
                      false),
        0);
    tp_addr_format(&l, buf, sizeof(buf));
    assert_string_equal(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535");
    char tiny[6];
    assert_string_equal(tp_addr_format(&b, tiny, sizeof(tiny)), "[2001");

    tp_addr_t zero = {0};
    assert_int_equal(tp_addr_len(&zero), 0);
    assert_int_equal(tp_addr_port(&zero), 0);
}

static void test_eq(void **state) {
    tp_addr_t a, b;
    tp_addr_parse(&a, "10.0.0.1:80", false);
    tp_addr_parse(&b, "10.0.0.1:80", false);
    assert_true(tp_addr_eq(&a, &b));
    tp_addr_set_port(&b, 81);
    assert_false(tp_addr_eq(&a, &b));
    tp_addr_parse(&b, "10.0.0.2:80", false);
    assert_false(tp_addr_eq(&a, &b));
    tp_addr_parse(&b, "[::ffff:10.0.0.1]:80", false);
    assert_false(tp_addr_eq(&a, &b)); /* different families */
    tp_addr_parse(&a, "[fe80::1%1]:80", false);
    tp_addr_parse(&b, "[fe80::1%2]:80", false);
    assert_false(tp_addr_eq(&a, &b));
    tp_addr_parse(&b, "[fe80::1%1]:80", false);
    assert_true(tp_addr_eq(&a, &b));
    tp_addr_t z1 = {0}, z2 = {0};
    assert_false(tp_addr_eq(&z1, &z2));
}

static void test_special(void **state) {
    static const char *const special[] = {
        "0.0.0.0",
        "0.255.255.255",
        "10.0.0.0",
        "10.255.255.255",
        "100.64.0.0",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.1",
        "192.0.0.255",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "239.255.255.255",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "64:ff9b::10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b:1::1",
        "64:ff9b:1:ffff::8.8.8.8",
        "100::1",
        "100::ffff:ffff:ffff:ffff",
        "2001::1",
        "2001:1ff:ffff::1",
        "2001:db8::1",
        "2001:db8:ffff::1",
        "2002:0a00:0001::1",
        "2002:c0a8:0101::1",
        "2002:7f00:1::",
        "3fff::1",
        "5f00::1",
        "fc00::1",
        "fdff:ffff::1",
        "fe80::1",
        "febf::1",
        "ff02::1",
        "ff0e::1",
    };
    static const char *const public[] = {
        "1.1.1.1",         "8.8.8.8",           "9.255.255.255",   "11.0.0.0",
        "100.63.255.255",  "100.128.0.0",       "126.255.255.255", "128.0.0.0",
        "169.253.255.255", "169.255.0.0",       "172.15.255.255",  "172.32.0.0",
        "192.0.1.1",       "192.0.3.1",         "192.88.98.1",     "192.167.255.255",
        "192.169.0.0",     "198.17.255.255",    "198.20.0.0",      "198.51.99.1",
        "203.0.112.1",     "223.255.255.255",   "::ffff:8.8.8.8",  "64:ff9b::8.8.8.8",
        "64:ff9b:2::1",    "100:0:0:1::1",      "2001:200::1",     "2001:db7::1",
        "2001:db9::1",     "2002:0808:0808::1", "2606:4700::1111", "2a00:1450::1",
        "fbff::1",         "fec0::1",           "3fff:1000::1",    "5eff::1",
    };
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
        tp_addr_t a;
        assert_int_equal(tp_addr_parse(&a, special[i], true), 0);
        if (!tp_addr_is_special(&a))
            fail_msg("%s should be special", special[i]);
    }
    for (size_t i = 0; i < sizeof(public) / sizeof(public[0]); i++) {
        tp_addr_t a;
        assert_int_equal(tp_addr_parse(&a, public[i], true), 0);
        if (tp_addr_is_special(&a))
            fail_msg("%s should not be special", public[i]);
    }
    tp_addr_t none = {0};
    assert_true(tp_addr_is_special(&none)); /* not an IP address: never a fine destination */
}

static void test_str(void **state) {
    assert_int_equal(tp_str("abc").len, 3);
    assert_null(tp_str(NULL).ptr);
    assert_int_equal(tp_str(NULL).len, 0);
    assert_true(tp_str_eq(tp_str("abc"), (tp_str_t){"abcdef", 3}));
    assert_false(tp_str_eq(tp_str("abc"), tp_str("abd")));
    assert_false(tp_str_eq(tp_str("abc"), tp_str("ab")));
    assert_true(tp_str_eq(tp_str(NULL), tp_str("")));
    assert_true(tp_str_eq_nocase(tp_str("Content-Length"), tp_str("content-LENGTH")));
    assert_false(tp_str_eq_nocase(tp_str("a"), tp_str("b")));
    assert_false(tp_str_eq_nocase(tp_str("\xc3\xa9"), tp_str("\xc3\x89"))); /* ASCII only */

    assert_true(tp_str_eq_ct(tp_str("Preshared k3y"), "Preshared ", "k3y"));
    assert_true(tp_str_eq_ct(tp_str("k3y"), NULL, "k3y"));
    assert_true(tp_str_eq_ct(tp_str("k3y"), "", "k3y"));
    assert_false(tp_str_eq_ct(tp_str("Preshared k3z"), "Preshared ", "k3y"));
    assert_false(tp_str_eq_ct(tp_str("Preshared k3"), "Preshared ", "k3y"));
    assert_false(tp_str_eq_ct(tp_str("Preshared k3yy"), "Preshared ", "k3y"));
    assert_false(tp_str_eq_ct(tp_str("preshared k3y"), "Preshared ", "k3y"));
    assert_false(tp_str_eq_ct(tp_str("Preshared k3y"), "Preshared ", NULL));
    assert_false(tp_str_eq_ct(tp_str(NULL), "", ""));           /* absent never matches */
    assert_false(tp_str_eq_ct(tp_str("Basic "), "Basic ", "")); /* nor an empty secret */
    assert_false(tp_str_eq_ct((tp_str_t){"k3y\0", 4}, NULL, "k3y"));
}

static void test_strerror(void **state) {
    assert_string_equal(tp_strerror(TP_OK), "success");
    assert_string_equal(tp_strerror(TP_ERR_CONFIG), "invalid configuration");
    assert_string_equal(tp_strerror(12345), "unknown error");
    for (int e = TP_ERR_CONFIG; e <= TP_OK; e++) {
        assert_non_null(tp_strerror(e));
        assert_string_not_equal(tp_strerror(e), "unknown error");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_format), cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_eq),           cmocka_unit_test(test_special),
        cmocka_unit_test(test_str),          cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
