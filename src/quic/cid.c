/* cid.c: the layout of the connection IDs we issue (server id, worker index, nonce), their
 * stateless reset tokens, and the process-wide secret. */
#include <string.h>

#include <gnutls/crypto.h>
#include <uv.h>

#include "quic/quic_int.h"

/* QUIC-LB first octet: config rotation 0 in the top three bits, then the length of the rest. */
#define CID_FIRST_OCTET ((uint8_t)(TP_QUIC_CID_LEN - 1))

int tp__quic_cid_make(uint8_t out[TP_QUIC_CID_LEN], uint16_t server_id, uint8_t worker) {
    out[0] = CID_FIRST_OCTET;
    out[TP_QUIC_CID_SERVER_ID_OFF] = (uint8_t)(server_id >> 8);
    out[TP_QUIC_CID_SERVER_ID_OFF + 1] = (uint8_t)server_id;
    out[TP_QUIC_CID_WORKER_OFF] = worker;
    if (gnutls_rnd(GNUTLS_RND_NONCE, out + TP_QUIC_CID_NONCE_OFF,
                   TP_QUIC_CID_LEN - TP_QUIC_CID_NONCE_OFF) != 0) {
        return TP_ERR_IO;
    }
    return 0;
}

bool tp__quic_cid_parse(const uint8_t *cid, size_t len, uint16_t *server_id, uint8_t *worker) {
    if (len != TP_QUIC_CID_LEN || cid[0] != CID_FIRST_OCTET) {
        return false;
    }
    if (server_id) {
        *server_id =
            (uint16_t)((cid[TP_QUIC_CID_SERVER_ID_OFF] << 8) | cid[TP_QUIC_CID_SERVER_ID_OFF + 1]);
    }
    if (worker) {
        *worker = cid[TP_QUIC_CID_WORKER_OFF];
    }
    return true;
}

int tp__quic_cid_reset_token(uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], const uint8_t *secret,
                             const uint8_t *cid, size_t cidlen) {
    ngtcp2_cid c;
    if (cidlen > NGTCP2_MAX_CIDLEN) {
        return TP_ERR_INVAL;
    }
    ngtcp2_cid_init(&c, cid, cidlen);
    return ngtcp2_crypto_generate_stateless_reset_token(token, secret, TP_QUIC_SECRET_LEN, &c) == 0
               ? 0
               : TP_ERR_IO;
}

static uint8_t process_secret[TP_QUIC_SECRET_LEN];
static uv_once_t process_secret_once = UV_ONCE_INIT;

static void make_process_secret(void) {
    /* GNUTLS_RND_KEY is the strongest level; failing here leaves no way to issue tokens. */
    if (gnutls_rnd(GNUTLS_RND_KEY, process_secret, sizeof(process_secret)) != 0) {
        abort();
    }
}

const uint8_t *tp__quic_process_secret(void) {
    uv_once(&process_secret_once, make_process_secret);
    return process_secret;
}
