/* test_quic_cid.c: unit tests of the QUIC connection-ID layout (server id, worker index, nonce)
 * and of stateless reset token derivation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "quic/quic_int.h"

static void test_layout(void **state) {
    uint8_t cid[TP_QUIC_CID_LEN];
    assert_int_equal(tp__quic_cid_make(cid, 0xbeef, 7), 0);
    /* QUIC-LB first octet: config rotation 0, length of the rest (15). */
    assert_int_equal(cid[0], TP_QUIC_CID_LEN - 1);
    assert_int_equal(cid[TP_QUIC_CID_SERVER_ID_OFF], 0xbe);
    assert_int_equal(cid[TP_QUIC_CID_SERVER_ID_OFF + 1], 0xef);
    assert_int_equal(cid[TP_QUIC_CID_WORKER_OFF], 7);
    uint16_t sid = 0;
    uint8_t worker = 0;
    assert_true(tp__quic_cid_parse(cid, sizeof(cid), &sid, &worker));
    assert_int_equal(sid, 0xbeef);
    assert_int_equal(worker, 7);
    assert_true(tp__quic_cid_parse(cid, sizeof(cid), NULL, NULL));
}

static void test_bounds(void **state) {
    uint8_t cid[TP_QUIC_CID_LEN];
    for (unsigned w = 0; w < 256; w += 51) {
        assert_int_equal(tp__quic_cid_make(cid, 0, (uint8_t)w), 0);
        uint8_t got = 0;
        uint16_t sid = 1;
        assert_true(tp__quic_cid_parse(cid, sizeof(cid), &sid, &got));
        assert_int_equal(got, w);
        assert_int_equal(sid, 0);
    }
    assert_int_equal(tp__quic_cid_make(cid, 0xffff, 255), 0);
    uint16_t sid = 0;
    uint8_t worker = 0;
    assert_true(tp__quic_cid_parse(cid, sizeof(cid), &sid, &worker));
    assert_int_equal(sid, 0xffff);
    assert_int_equal(worker, 255);
}

static void test_foreign(void **state) {
    uint8_t cid[TP_QUIC_CID_LEN];
    assert_int_equal(tp__quic_cid_make(cid, 1, 2), 0);
    /* Other lengths, and a first octet of another layout, are not ours. */
    assert_false(tp__quic_cid_parse(cid, TP_QUIC_CID_LEN - 1, NULL, NULL));
    uint8_t longer[TP_QUIC_CID_LEN + 2] = {0};
    memcpy(longer, cid, sizeof(cid));
    assert_false(tp__quic_cid_parse(longer, sizeof(longer), NULL, NULL));
    cid[0] = 0x4f; /* config rotation 2 */
    assert_false(tp__quic_cid_parse(cid, sizeof(cid), NULL, NULL));
}

static void test_nonce_random(void **state) {
    uint8_t a[TP_QUIC_CID_LEN];
    uint8_t b[TP_QUIC_CID_LEN];
    assert_int_equal(tp__quic_cid_make(a, 3, 4), 0);
    assert_int_equal(tp__quic_cid_make(b, 3, 4), 0);
    assert_memory_equal(a, b, TP_QUIC_CID_NONCE_OFF);
    assert_memory_not_equal(a + TP_QUIC_CID_NONCE_OFF, b + TP_QUIC_CID_NONCE_OFF,
                            TP_QUIC_CID_LEN - TP_QUIC_CID_NONCE_OFF);
}

static void test_reset_token(void **state) {
    uint8_t secret[TP_QUIC_SECRET_LEN];
    uint8_t other[TP_QUIC_SECRET_LEN];
    memset(secret, 0x11, sizeof(secret));
    memset(other, 0x22, sizeof(other));
    uint8_t cid1[TP_QUIC_CID_LEN];
    uint8_t cid2[TP_QUIC_CID_LEN];
    assert_int_equal(tp__quic_cid_make(cid1, 9, 1), 0);
    assert_int_equal(tp__quic_cid_make(cid2, 9, 1), 0);
    uint8_t t1[NGTCP2_STATELESS_RESET_TOKENLEN];
    uint8_t t1again[NGTCP2_STATELESS_RESET_TOKENLEN];
    uint8_t t2[NGTCP2_STATELESS_RESET_TOKENLEN];
    uint8_t t1other[NGTCP2_STATELESS_RESET_TOKENLEN];
    assert_int_equal(tp__quic_cid_reset_token(t1, secret, cid1, sizeof(cid1)), 0);
    assert_int_equal(tp__quic_cid_reset_token(t1again, secret, cid1, sizeof(cid1)), 0);
    assert_int_equal(tp__quic_cid_reset_token(t2, secret, cid2, sizeof(cid2)), 0);
    assert_int_equal(tp__quic_cid_reset_token(t1other, other, cid1, sizeof(cid1)), 0);
    /* Deterministic (any worker with the secret derives the same), per CID and per secret. */
    assert_memory_equal(t1, t1again, sizeof(t1));
    assert_memory_not_equal(t1, t2, sizeof(t1));
    assert_memory_not_equal(t1, t1other, sizeof(t1));
    uint8_t toolong[NGTCP2_MAX_CIDLEN + 1] = {0};
    assert_int_equal(tp__quic_cid_reset_token(t1, secret, toolong, sizeof(toolong)), TP_ERR_INVAL);
}

static void test_process_secret(void **state) {
    const uint8_t *a = tp__quic_process_secret();
    const uint8_t *b = tp__quic_process_secret();
    assert_ptr_equal(a, b);
    uint8_t zero[TP_QUIC_SECRET_LEN] = {0};
    assert_memory_not_equal(a, zero, sizeof(zero));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),      cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_foreign),     cmocka_unit_test(test_nonce_random),
        cmocka_unit_test(test_reset_token), cmocka_unit_test(test_process_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
