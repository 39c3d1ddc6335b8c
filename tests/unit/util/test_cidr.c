/* test_cidr.c: unit tests of CIDR sets: parsing, matching (IPv4-mapped included), errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "turnpike/common.h"

static bool has(const tp_cidr_set_t *set, const char *ip) {
    tp_addr_t a;
    assert_int_equal(tp_addr_parse(&a, ip, true), 0);
    return tp_cidr_set_contains(set, &a);
}

static void test_parse(void **state) {
    const char *err_at = "untouched";
    tp_cidr_set_t *set =
        tp_cidr_set_new(" 10.0.0.0/8,172.16.0.0/12\t192.168.1.1 , fd00::/8\n::1", &err_at);
    assert_non_null(set);
    assert_null(err_at);
    assert_int_equal(tp_cidr_set_count(set), 5);
    tp_cidr_set_del(set);

    set = tp_cidr_set_new("", NULL);
    assert_non_null(set);
    assert_int_equal(tp_cidr_set_count(set), 0);
    tp_cidr_set_del(set);
    set = tp_cidr_set_new(NULL, NULL);
    assert_non_null(set);
    assert_int_equal(tp_cidr_set_count(set), 0);
    tp_cidr_set_del(set);

    /* Duplicates are counted once. */
    set = tp_cidr_set_new("10.0.0.0/8, 10.0.0.0/8 ::ffff:10.0.0.0/104", NULL);
    assert_int_equal(tp_cidr_set_count(set), 1);
    tp_cidr_set_del(set);

    static const struct {
        const char *text;
        size_t at;
    } bad[] = {
        {"10.0.0.0/8, 10.0.0.0/33", 12},
        {"10.0.0.1/8", 0},
        {"1.2.3.4/", 0},
        {"1.2.3.4/a", 0},
        {"1.2.3.4/-1", 0},
        {"1.2.3.4/0032", 0},
        {"::/129", 0},
        {"fd00::1/8", 0},
        {"a, 1.2.3.4", 0},
        {"1.2.3.4 10.0.0.0/8 x", 19},
        {"fe80::1%1/128", 0},
        {"1.2.3/24", 0},
        {"10.0.0.0/8;", 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err_at = NULL;
        assert_null(tp_cidr_set_new(bad[i].text, &err_at));
        if (err_at != bad[i].text + bad[i].at)
            fail_msg("case %zu '%s': err_at %td, want %zu", i, bad[i].text,
                     err_at ? err_at - bad[i].text : -1, bad[i].at);
    }
    /* An entry longer than any prefix is refused, not truncated. */
    char longer[200];
    memset(longer, '1', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_null(tp_cidr_set_new(longer, NULL));
}

static void test_add(void **state) {
    tp_cidr_set_t *set = tp_cidr_set_new("", NULL);
    assert_int_equal(tp_cidr_set_add(set, "192.0.2.0/24"), 0);
    assert_int_equal(tp_cidr_set_add(set, "2001:db8::/32"), 0);
    assert_int_equal(tp_cidr_set_add(set, "192.0.2.0/24, 10.0.0.0/8"), TP_ERR_INVAL);
    assert_int_equal(tp_cidr_set_add(set, " 10.0.0.0/8"), TP_ERR_INVAL);
    assert_int_equal(tp_cidr_set_add(set, NULL), TP_ERR_INVAL);
    assert_int_equal(tp_cidr_set_add(NULL, "10.0.0.0/8"), TP_ERR_INVAL);
    assert_int_equal(tp_cidr_set_count(set), 2);
    assert_true(has(set, "192.0.2.200"));
    assert_true(has(set, "2001:db8:1::1"));
    assert_false(has(set, "192.0.3.1"));
    tp_cidr_set_del(set);
}

static void test_contains(void **state) {
    tp_cidr_set_t *set =
        tp_cidr_set_new("10.0.0.0/8 172.16.0.0/12 192.168.1.7 100.64.0.0/10 fd00::/8 fe80::/10 "
                        "2001:db8:abcd::/48 ::ffff:198.51.100.0/120",
                        NULL);
    assert_non_null(set);
    assert_true(has(set, "10.0.0.0"));
    assert_true(has(set, "10.255.255.255"));
    assert_false(has(set, "11.0.0.0"));
    assert_false(has(set, "9.255.255.255"));
    assert_true(has(set, "172.31.255.255"));
    assert_false(has(set, "172.32.0.0"));
    assert_true(has(set, "192.168.1.7"));
    assert_false(has(set, "192.168.1.8"));
    assert_true(has(set, "100.127.0.1"));
    assert_false(has(set, "100.128.0.1"));
    assert_true(has(set, "fd12:3456::1"));
    assert_false(has(set, "fc00::1"));
    assert_true(has(set, "febf:ffff::1"));
    assert_false(has(set, "fec0::1"));
    assert_true(has(set, "2001:db8:abcd:ffff::1"));
    assert_false(has(set, "2001:db8:abce::1"));
    /* IPv4-mapped addresses are matched as the IPv4 address they carry, both ways. */
    assert_true(has(set, "::ffff:10.1.2.3"));
    assert_true(has(set, "::ffff:192.168.1.7"));
    assert_false(has(set, "::ffff:192.168.1.8"));
    assert_true(has(set, "198.51.100.9"));
    assert_true(has(set, "::ffff:198.51.100.9"));
    assert_false(has(set, "198.51.101.9"));
    /* ...but an IPv4 prefix does not match an IPv6 address with the same bits elsewhere. */
    assert_false(has(set, "::10.1.2.3"));
    assert_false(has(set, "a00::1"));
    /* The port is ignored. */
    tp_addr_t a;
    assert_int_equal(tp_addr_parse(&a, "10.0.0.1:443", false), 0);
    assert_true(tp_cidr_set_contains(set, &a));
    tp_addr_t none = {0};
    assert_false(tp_cidr_set_contains(set, &none));
    tp_cidr_set_del(set);

    /* Prefix lengths at the edges. */
    set = tp_cidr_set_new("0.0.0.0/0", NULL);
    assert_true(has(set, "1.2.3.4"));
    assert_true(has(set, "::ffff:1.2.3.4"));
    assert_false(has(set, "2001:db8::1"));
    tp_cidr_set_del(set);
    set = tp_cidr_set_new("::/0", NULL);
    assert_true(has(set, "2001:db8::1"));
    assert_false(has(set, "1.2.3.4")); /* "all of IPv6" is not IPv4 too */
    assert_false(has(set, "::ffff:1.2.3.4"));
    tp_cidr_set_del(set);
    set = tp_cidr_set_new("10.0.0.0/9 10.128.0.0/31 2001:db8::/127", NULL);
    assert_true(has(set, "10.127.255.255"));
    assert_false(has(set, "10.128.0.2"));
    assert_true(has(set, "10.128.0.1"));
    assert_true(has(set, "2001:db8::1"));
    assert_false(has(set, "2001:db8::2"));
    tp_cidr_set_del(set);

    assert_false(tp_cidr_set_contains(NULL, &a));
    assert_int_equal(tp_cidr_set_count(NULL), 0);
    tp_cidr_set_del(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_contains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
