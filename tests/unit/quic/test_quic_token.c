/* test_quic_token.c: unit tests of Retry and NEW_TOKEN tokens: round trip, expiry, another
 * client address, another DCID, tampering, another secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "quic/quic_int.h"

static uint8_t secret[TP_QUIC_SECRET_LEN];
static tp_addr_t client;
static tp_addr_t other_client;
static ngtcp2_cid retry_scid;
static ngtcp2_cid odcid;

static int setup(void **state) {
    memset(secret, 0x5a, sizeof(secret));
    assert_int_equal(tp_addr_parse(&client, "192.0.2.7:4433", false), 0);
    assert_int_equal(tp_addr_parse(&other_client, "192.0.2.8:4433", false), 0);
    retry_scid.datalen = TP_QUIC_CID_LEN;
    assert_int_equal(tp__quic_cid_make(retry_scid.data, 1, 0), 0);
    odcid.datalen = 8;
    memcpy(odcid.data, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    return 0;
}

#define NOW   (1000 * NGTCP2_SECONDS)
#define TTLMS 10000

static void test_retry_roundtrip(void **state) {
    uint8_t tok[TP_QUIC_TOKEN_MAX];
    ssize_t n = tp__quic_token_retry_mint(tok, secret, NGTCP2_PROTO_VER_V1, &client, &retry_scid,
                                          &odcid, NOW);
    assert_true(n > 0);
    ngtcp2_cid got;
    memset(&got, 0, sizeof(got));
    assert_int_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret, NGTCP2_PROTO_VER_V1,
                                                 &client, &retry_scid, TTLMS,
                                                 NOW + 9 * NGTCP2_SECONDS),
                     0);
    assert_int_equal(got.datalen, odcid.datalen);
    assert_memory_equal(got.data, odcid.data, odcid.datalen);
}

static void test_retry_expired(void **state) {
    uint8_t tok[TP_QUIC_TOKEN_MAX];
    ssize_t n = tp__quic_token_retry_mint(tok, secret, NGTCP2_PROTO_VER_V1, &client, &retry_scid,
                                          &odcid, NOW);
    ngtcp2_cid got;
    assert_int_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret, NGTCP2_PROTO_VER_V1,
                                                 &client, &retry_scid, TTLMS,
                                                 NOW + 11 * NGTCP2_SECONDS),
                     TP_ERR_REFUSED);
}

static void test_retry_wrong_address(void **state) {
    uint8_t tok[TP_QUIC_TOKEN_MAX];
    ssize_t n = tp__quic_token_retry_mint(tok, secret, NGTCP2_PROTO_VER_V1, &client, &retry_scid,
                                          &odcid, NOW);
    ngtcp2_cid got;
    assert_int_not_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret,
                                                     NGTCP2_PROTO_VER_V1, &other_client,
                                                     &retry_scid, TTLMS, NOW),
                         0);
    /* Another port of the same host is another address too. */
    tp_addr_t moved = client;
    tp_addr_set_port(&moved, 4434);
    assert_int_not_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret,
                                                     NGTCP2_PROTO_VER_V1, &moved, &retry_scid,
                                                     TTLMS, NOW),
                         0);
    /* An Initial sent to another DCID than our Retry SCID. */
    ngtcp2_cid dcid = retry_scid;
    dcid.data[TP_QUIC_CID_LEN - 1] ^= 1;
    assert_int_not_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret,
                                                     NGTCP2_PROTO_VER_V1, &client, &dcid, TTLMS,
                                                     NOW),
                         0);
}

static void test_retry_tampered(void **state) {
    uint8_t tok[TP_QUIC_TOKEN_MAX];
    ssize_t n = tp__quic_token_retry_mint(tok, secret, NGTCP2_PROTO_VER_V1, &client, &retry_scid,
                                          &odcid, NOW);
    ngtcp2_cid got;
    for (ssize_t i = 1; i < n; i += 7) {
        tok[i] ^= 0x40;
        assert_int_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret,
                                                     NGTCP2_PROTO_VER_V1, &client, &retry_scid,
                                                     TTLMS, NOW),
                         TP_ERR_PROHIBITED);
        tok[i] ^= 0x40;
    }
    /* Truncated, empty, another magic byte, another secret. */
    assert_int_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n - 1, secret,
                                                 NGTCP2_PROTO_VER_V1, &client, &retry_scid, TTLMS,
                                                 NOW),
                     TP_ERR_PROHIBITED);
    assert_int_equal(tp__quic_token_retry_verify(&got, tok, 0, secret, NGTCP2_PROTO_VER_V1, &client,
                                                 &retry_scid, TTLMS, NOW),
                     TP_ERR_PROHIBITED);
    uint8_t other_secret[TP_QUIC_SECRET_LEN];
    memset(other_secret, 0xa5, sizeof(other_secret));
    assert_int_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, other_secret,
                                                 NGTCP2_PROTO_VER_V1, &client, &retry_scid, TTLMS,
                                                 NOW),
                     TP_ERR_PROHIBITED);
    tok[0] = NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR;
    assert_int_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret, NGTCP2_PROTO_VER_V1,
                                                 &client, &retry_scid, TTLMS, NOW),
                     TP_ERR_PROHIBITED);
}

static void test_regular(void **state) {
    uint8_t tok[TP_QUIC_TOKEN_MAX];
    ssize_t n = tp__quic_token_regular_mint(tok, secret, &client, NOW);
    assert_true(n > 0);
    assert_int_equal(tp__quic_token_regular_verify(tok, (size_t)n, secret, &client, 3600000,
                                                   NOW + 60 * NGTCP2_SECONDS),
                     0);
    assert_int_equal(tp__quic_token_regular_verify(tok, (size_t)n, secret, &client, 3600000,
                                                   NOW + 3601 * NGTCP2_SECONDS),
                     TP_ERR_REFUSED);
    assert_int_not_equal(
        tp__quic_token_regular_verify(tok, (size_t)n, secret, &other_client, 3600000, NOW), 0);
    tok[n / 2] ^= 1;
    assert_int_not_equal(
        tp__quic_token_regular_verify(tok, (size_t)n, secret, &client, 3600000, NOW), 0);
    /* A Retry token is not a NEW_TOKEN token. */
    n = tp__quic_token_retry_mint(tok, secret, NGTCP2_PROTO_VER_V1, &client, &retry_scid, &odcid,
                                  NOW);
    assert_int_equal(tp__quic_token_regular_verify(tok, (size_t)n, secret, &client, 3600000, NOW),
                     TP_ERR_PROHIBITED);
}

static void test_ipv6(void **state) {
    tp_addr_t v6;
    assert_int_equal(tp_addr_parse(&v6, "[2001:db8::1]:443", false), 0);
    uint8_t tok[TP_QUIC_TOKEN_MAX];
    ssize_t n =
        tp__quic_token_retry_mint(tok, secret, NGTCP2_PROTO_VER_V1, &v6, &retry_scid, &odcid, NOW);
    assert_true(n > 0);
    ngtcp2_cid got;
    assert_int_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret, NGTCP2_PROTO_VER_V1,
                                                 &v6, &retry_scid, TTLMS, NOW),
                     0);
    assert_int_not_equal(tp__quic_token_retry_verify(&got, tok, (size_t)n, secret,
                                                     NGTCP2_PROTO_VER_V1, &client, &retry_scid,
                                                     TTLMS, NOW),
                         0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_roundtrip),
        cmocka_unit_test(test_retry_expired),
        cmocka_unit_test(test_retry_wrong_address),
        cmocka_unit_test(test_retry_tampered),
        cmocka_unit_test(test_regular),
        cmocka_unit_test(test_ipv6),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
