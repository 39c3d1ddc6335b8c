/* test_quic_router.c: unit tests of the CID -> connection map: insert, lookup, remove (with the
 * backward shift keeping chains intact), growth, duplicates and bad keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "quic/quic_int.h"

#define N 5000

static void key(uint8_t out[TP_QUIC_CID_LEN], unsigned i) {
    memset(out, 0, TP_QUIC_CID_LEN);
    out[0] = 0x0f;
    out[5] = (uint8_t)(i >> 16);
    out[6] = (uint8_t)(i >> 8);
    out[7] = (uint8_t)i;
}

static void *val(unsigned i) { return (void *)(uintptr_t)(i + 1); }

static void test_basic(void **state) {
    tp_quic_router_t r;
    assert_int_equal(tp__quic_router_init(&r, 4), 0);
    uint8_t k[TP_QUIC_CID_LEN];
    key(k, 1);
    assert_null(tp__quic_router_lookup(&r, k, sizeof(k)));
    assert_int_equal(tp__quic_router_insert(&r, k, sizeof(k), val(1)), 0);
    assert_ptr_equal(tp__quic_router_lookup(&r, k, sizeof(k)), val(1));
    /* Same bytes, other length: another key. */
    assert_null(tp__quic_router_lookup(&r, k, sizeof(k) - 1));
    /* A CID is taken once. */
    assert_int_equal(tp__quic_router_insert(&r, k, sizeof(k), val(2)), TP_ERR_INVAL);
    /* Removal checks the owner. */
    assert_false(tp__quic_router_remove(&r, k, sizeof(k), val(2)));
    assert_true(tp__quic_router_remove(&r, k, sizeof(k), val(1)));
    assert_false(tp__quic_router_remove(&r, k, sizeof(k), NULL));
    assert_null(tp__quic_router_lookup(&r, k, sizeof(k)));
    assert_int_equal(r.count, 0);
    tp__quic_router_free(&r);
}

static void test_bad_keys(void **state) {
    tp_quic_router_t r;
    assert_int_equal(tp__quic_router_init(&r, 4), 0);
    uint8_t k[NGTCP2_MAX_CIDLEN + 1] = {1};
    assert_int_equal(tp__quic_router_insert(&r, k, 0, val(1)), TP_ERR_INVAL);
    assert_int_equal(tp__quic_router_insert(&r, k, sizeof(k), val(1)), TP_ERR_INVAL);
    assert_int_equal(tp__quic_router_insert(&r, k, 8, NULL), TP_ERR_INVAL);
    assert_null(tp__quic_router_lookup(&r, k, 0));
    assert_null(tp__quic_router_lookup(&r, k, sizeof(k)));
    /* The longest legal CID works. */
    assert_int_equal(tp__quic_router_insert(&r, k, NGTCP2_MAX_CIDLEN, val(9)), 0);
    assert_ptr_equal(tp__quic_router_lookup(&r, k, NGTCP2_MAX_CIDLEN), val(9));
    tp__quic_router_free(&r);
}

static void test_many(void **state) {
    tp_quic_router_t r;
    assert_int_equal(tp__quic_router_init(&r, 4), 0);
    uint8_t k[TP_QUIC_CID_LEN];
    for (unsigned i = 0; i < N; i++) {
        key(k, i);
        assert_int_equal(tp__quic_router_insert(&r, k, sizeof(k), val(i)), 0);
    }
    assert_int_equal(r.count, N);
    assert_true(r.mask + 1 >= 2 * N); /* grew, and keeps the load at or under one half */
    /* Remove every third; the rest must stay reachable through the shifted chains. */
    for (unsigned i = 0; i < N; i += 3) {
        key(k, i);
        assert_true(tp__quic_router_remove(&r, k, sizeof(k), val(i)));
    }
    for (unsigned i = 0; i < N; i++) {
        key(k, i);
        if (i % 3 == 0) {
            assert_null(tp__quic_router_lookup(&r, k, sizeof(k)));
        } else {
            assert_ptr_equal(tp__quic_router_lookup(&r, k, sizeof(k)), val(i));
        }
    }
    /* Re-insert and purge by owner. */
    key(k, 0);
    assert_int_equal(tp__quic_router_insert(&r, k, sizeof(k), val(1)), 0);
    tp__quic_router_purge(&r, val(1));
    assert_null(tp__quic_router_lookup(&r, k, sizeof(k)));
    key(k, 1);
    assert_null(tp__quic_router_lookup(&r, k, sizeof(k)));
    key(k, 2);
    assert_ptr_equal(tp__quic_router_lookup(&r, k, sizeof(k)), val(2));
    tp__quic_router_free(&r);
}

static void test_real_cids(void **state) {
    tp_quic_router_t r;
    assert_int_equal(tp__quic_router_init(&r, 64), 0);
    uint8_t cids[200][TP_QUIC_CID_LEN];
    for (unsigned i = 0; i < 200; i++) {
        assert_int_equal(tp__quic_cid_make(cids[i], 1, (uint8_t)(i % 4)), 0);
        assert_int_equal(tp__quic_router_insert(&r, cids[i], TP_QUIC_CID_LEN, val(i)), 0);
    }
    for (unsigned i = 0; i < 200; i++) {
        assert_ptr_equal(tp__quic_router_lookup(&r, cids[i], TP_QUIC_CID_LEN), val(i));
    }
    for (unsigned i = 0; i < 200; i++) {
        assert_true(tp__quic_router_remove(&r, cids[i], TP_QUIC_CID_LEN, NULL));
    }
    assert_int_equal(r.count, 0);
    tp__quic_router_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_real_cids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
