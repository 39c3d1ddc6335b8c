/* token.c: address-validation tokens (Retry and NEW_TOKEN), sealed with AES-GCM under keys
 * derived from the secret by ngtcp2_crypto (GnuTLS underneath), bound to the client address. */
#include <string.h>

#include "quic/quic_int.h"

ssize_t tp__quic_token_retry_mint(uint8_t out[TP_QUIC_TOKEN_MAX], const uint8_t *secret,
                                  uint32_t version, const tp_addr_t *client,
                                  const ngtcp2_cid *retry_scid, const ngtcp2_cid *odcid,
                                  uint64_t now_ns) {
    ngtcp2_ssize n = ngtcp2_crypto_generate_retry_token2(
        out, secret, TP_QUIC_SECRET_LEN, version, (const ngtcp2_sockaddr *)&client->u.sa,
        (ngtcp2_socklen)tp_addr_len(client), retry_scid, odcid, now_ns);
    return n < 0 ? TP_ERR_IO : (ssize_t)n;
}

int tp__quic_token_retry_verify(ngtcp2_cid *odcid, const uint8_t *token, size_t len,
                                const uint8_t *secret, uint32_t version, const tp_addr_t *client,
                                const ngtcp2_cid *dcid, uint64_t ttl_ms, uint64_t now_ns) {
    if (len == 0 || token[0] != NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2) {
        return TP_ERR_PROHIBITED;
    }
    int rc = ngtcp2_crypto_verify_retry_token2(odcid, token, len, secret, TP_QUIC_SECRET_LEN,
                                               version, (const ngtcp2_sockaddr *)&client->u.sa,
                                               (ngtcp2_socklen)tp_addr_len(client), dcid,
                                               ttl_ms * NGTCP2_MILLISECONDS, now_ns);
    switch (rc) {
    case 0: return 0;
    case NGTCP2_CRYPTO_ERR_VERIFY_TOKEN: return TP_ERR_REFUSED;
    default: return TP_ERR_PROHIBITED;
    }
}

ssize_t tp__quic_token_regular_mint(uint8_t out[TP_QUIC_TOKEN_MAX], const uint8_t *secret,
                                    const tp_addr_t *client, uint64_t now_ns) {
    ngtcp2_ssize n = ngtcp2_crypto_generate_regular_token(
        out, secret, TP_QUIC_SECRET_LEN, (const ngtcp2_sockaddr *)&client->u.sa,
        (ngtcp2_socklen)tp_addr_len(client), now_ns);
    return n < 0 ? TP_ERR_IO : (ssize_t)n;
}

int tp__quic_token_regular_verify(const uint8_t *token, size_t len, const uint8_t *secret,
                                  const tp_addr_t *client, uint64_t ttl_ms, uint64_t now_ns) {
    if (len == 0 || token[0] != NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR) {
        return TP_ERR_PROHIBITED;
    }
    /* ngtcp2 does not tell a forged token from an expired one here: both are refused. */
    return ngtcp2_crypto_verify_regular_token(
               token, len, secret, TP_QUIC_SECRET_LEN, (const ngtcp2_sockaddr *)&client->u.sa,
               (ngtcp2_socklen)tp_addr_len(client), ttl_ms * NGTCP2_MILLISECONDS, now_ns) == 0
               ? 0
               : TP_ERR_REFUSED;
}
