/* info.c: a finished handshake as hooks and logs see it (tp_tls_info_t), and its accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "tls/tls.h"

/* All the strings of one tp_tls_info_t live in one block; a value too long is cut. */
#define INFO_MEM 4096

typedef struct pool {
    char *mem;
    size_t used;
} pool_t;

static const char *keep(pool_t *p, const char *s, size_t len) {
    if (!s || len == 0 || !p->mem)
        return "";
    size_t room = INFO_MEM - p->used;
    if (room < 2)
        return "";
    if (len > room - 1)
        len = room - 1;
    char *dst = p->mem + p->used;
    memcpy(dst, s, len);
    dst[len] = '\0';
    p->used += len + 1;
    return dst;
}

static const char *keepz(pool_t *p, const char *s) { return s ? keep(p, s, strlen(s)) : ""; }

static const char *hex(pool_t *p, const uint8_t *b, size_t n) {
    char buf[2 * 64 + 1];
    if (n > 64)
        n = 64;
    for (size_t i = 0; i < n; i++)
        snprintf(buf + 2 * i, 3, "%02x", b[i]);
    return keep(p, buf, 2 * n);
}

/* "DNS:a.example,IP:192.0.2.1,email:x@y,URI:..." */
static const char *sans(pool_t *p, gnutls_x509_crt_t crt) {
    char out[1024];
    size_t len = 0;
    for (unsigned seq = 0; len < sizeof(out) - 1; seq++) {
        char v[512];
        size_t vlen = sizeof(v) - 1;
        int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, v, &vlen, NULL);
        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type < 0)
            continue;
        const char *tag = NULL;
        char ip[INET6_ADDRSTRLEN];
        switch (type) {
        case GNUTLS_SAN_DNSNAME: tag = "DNS"; break;
        case GNUTLS_SAN_RFC822NAME: tag = "email"; break;
        case GNUTLS_SAN_URI: tag = "URI"; break;
        case GNUTLS_SAN_IPADDRESS:
            if ((vlen == 4 || vlen == 16) &&
                inet_ntop(vlen == 4 ? AF_INET : AF_INET6, v, ip, sizeof(ip))) {
                tag = "IP";
                vlen = strlen(ip);
                memcpy(v, ip, vlen);
            }
            break;
        default: break;
        }
        if (!tag)
            continue;
        v[vlen] = '\0';
        int k = snprintf(out + len, sizeof(out) - len, "%s%s:%s", len ? "," : "", tag, v);
        if (k < 0 || (size_t)k >= sizeof(out) - len)
            break;
        len += (size_t)k;
    }
    return keep(p, out, len);
}

static void peer_x509(tp_tls_t *t, pool_t *p, const gnutls_datum_t *der) {
    tp_tls_info_t *in = &t->info;
    uint8_t fp[32];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, der->data, der->size, fp) == 0)
        in->peer_sha256 = hex(p, fp, sizeof(fp));
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0) {
        gnutls_datum_t d = {NULL, 0};
        if (gnutls_x509_crt_get_dn3(crt, &d, 0) == 0)
            in->peer_subject = keep(p, (const char *)d.data, d.size);
        gnutls_free(d.data);
        d.data = NULL;
        if (gnutls_x509_crt_get_issuer_dn3(crt, &d, 0) == 0)
            in->peer_issuer = keep(p, (const char *)d.data, d.size);
        gnutls_free(d.data);
        uint8_t serial[64];
        size_t slen = sizeof(serial);
        if (gnutls_x509_crt_get_serial(crt, serial, &slen) == 0)
            in->peer_serial = hex(p, serial, slen);
        in->peer_sans = sans(p, crt);
    }
    gnutls_x509_crt_deinit(crt);
}

void tp__tls_info_fill(tp_tls_t *t, tp_str_t sni) {
    tp_tls_info_t *in = &t->info;
    pool_t p = {malloc(INFO_MEM), 0};
    free(t->info_mem);
    t->info_mem = p.mem;
    gnutls_session_t s = t->s;
    in->version = keepz(&p, gnutls_protocol_get_name(gnutls_protocol_get_version(s)));
    in->cipher = keepz(&p, gnutls_ciphersuite_get(s));
    in->group = keepz(&p, gnutls_group_get_name(gnutls_group_get(s)));
    gnutls_datum_t alpn = {NULL, 0};
    in->alpn = gnutls_alpn_get_selected_protocol(s, &alpn) == 0
                   ? keep(&p, (const char *)alpn.data, alpn.size)
                   : "";
    in->sni = keep(&p, sni.ptr, sni.len);
    in->resumed = gnutls_session_is_resumed(s) != 0;
    in->peer = TP_TLS_PEER_NONE;
    in->peer_verified = false;
    in->peer_verify = in->peer_subject = in->peer_issuer = in->peer_serial = in->peer_sans =
        in->peer_sha256 = "";
    unsigned n = 0;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &n);
    if (!peers || n == 0 || !t->creds) /* client mode: the server's chain is not "the peer" here */
        return;
    if (gnutls_certificate_type_get2(s, GNUTLS_CTYPE_PEERS) == GNUTLS_CRT_RAWPK) {
        in->peer = TP_TLS_PEER_RAW_KEY;
        uint8_t fp[32];
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, peers[0].data, peers[0].size, fp) == 0)
            in->peer_sha256 = hex(&p, fp, sizeof(fp));
        in->peer_verified = t->peer_key_listed;
        in->peer_verify = t->peer_key_listed ? "ok" : "raw public key not in raw_public_key.peers";
        return;
    }
    in->peer = TP_TLS_PEER_X509;
    peer_x509(t, &p, &peers[0]);
    in->peer_verified = t->verify_status == 0;
    if (t->verify_status == 0) {
        in->peer_verify = "ok";
    } else {
        gnutls_datum_t text = {NULL, 0};
        gnutls_certificate_verification_status_print(t->verify_status, GNUTLS_CRT_X509, &text, 0);
        in->peer_verify = text.data ? keepz(&p, (const char *)text.data) : "not trusted";
        gnutls_free(text.data);
    }
}

const tp_tls_info_t *tp_conn_tls(const tp_conn_t *conn) {
    return conn && conn->tls && conn->tls->handshaken && conn->tls->info.version ? &conn->tls->info
                                                                                 : NULL;
}
