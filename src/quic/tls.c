/* tls.c: GnuTLS for QUIC: credentials per endpoint (server certificate, or the client's trust
 * anchors), one session per connection wired to ngtcp2_crypto_gnutls, ALPN and the key log. */
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "quic/quic_int.h"

/* TLS 1.3 only (QUIC needs it); no middlebox compatibility mode; no CCM-8 (RFC 9001 5.3). */
static const char PRIORITY[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-AES-128-CCM-8:-AES-256-CCM-8:%DISABLE_TLS13_COMPAT_MODE";

int tp__quic_tls_init(tp_quic_tls_t *t, bool server, const tp_quic_settings_t *s) {
    memset(t, 0, sizeof(*t));
    t->server = server;
    size_t alen = s->alpn ? strlen(s->alpn) : 0;
    if (alen == 0 || alen > TP_QUIC_ALPN_MAX) {
        return TP_ERR_INVAL;
    }
    memcpy(t->alpn, s->alpn, alen + 1);
    if (gnutls_certificate_allocate_credentials(&t->cred) != 0) {
        return TP_ERR_NOMEM;
    }
    if (gnutls_priority_init(&t->prio, PRIORITY, NULL) != 0) {
        tp__quic_tls_free(t);
        return TP_ERR_IO;
    }
    if (server) {
        if (!s->cert_file || !s->key_file) {
            tp__quic_tls_free(t);
            return TP_ERR_INVAL;
        }
        if (gnutls_certificate_set_x509_key_file(t->cred, s->cert_file, s->key_file,
                                                 GNUTLS_X509_FMT_PEM) != 0) {
            tp__quic_tls_free(t);
            return TP_ERR_CONFIG;
        }
    } else if (!s->insecure_skip_verify) {
        int n = s->ca_file ? gnutls_certificate_set_x509_trust_file(t->cred, s->ca_file,
                                                                    GNUTLS_X509_FMT_PEM)
                           : gnutls_certificate_set_x509_system_trust(t->cred);
        if (n <= 0) {
            tp__quic_tls_free(t);
            return TP_ERR_CONFIG;
        }
        t->verify = true;
    }
    if (s->keylog_file) {
        t->keylog = fopen(s->keylog_file, "ae");
        if (!t->keylog) {
            tp__quic_tls_free(t);
            return TP_ERR_CONFIG;
        }
        setvbuf(t->keylog, NULL, _IOLBF, 0);
    }
    return 0;
}

void tp__quic_tls_free(tp_quic_tls_t *t) {
    if (t->cred) {
        gnutls_certificate_free_credentials(t->cred);
        t->cred = NULL;
    }
    if (t->prio) {
        gnutls_priority_deinit(t->prio);
        t->prio = NULL;
    }
    if (t->keylog) {
        fclose(t->keylog);
        t->keylog = NULL;
    }
}

/* NSS key log line: LABEL <client random hex> <secret hex>. */
static int keylog_cb(gnutls_session_t session, const char *label, const gnutls_datum_t *secret) {
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
    tp_quic_conn_t *c = ref ? ref->user_data : NULL;
    if (!c || !c->ep->tls.keylog) {
        return 0;
    }
    gnutls_datum_t crandom;
    gnutls_datum_t srandom;
    gnutls_session_get_random(session, &crandom, &srandom);
    char line[512];
    size_t off = (size_t)snprintf(line, sizeof(line), "%s ", label);
    for (size_t i = 0; i < crandom.size && off + 3 < sizeof(line); i++) {
        off += (size_t)snprintf(line + off, sizeof(line) - off, "%02x", crandom.data[i]);
    }
    if (off + 1 < sizeof(line)) {
        line[off++] = ' ';
    }
    for (size_t i = 0; i < secret->size && off + 3 < sizeof(line); i++) {
        off += (size_t)snprintf(line + off, sizeof(line) - off, "%02x", secret->data[i]);
    }
    fprintf(c->ep->tls.keylog, "%.*s\n", (int)off, line);
    return 0;
}

/* Parses an IP literal into raw bytes (4 or 16); returns the length, or 0 for a DNS name. */
static size_t ip_literal(const char *name, uint8_t out[16]) {
    if (inet_pton(AF_INET, name, out) == 1) {
        return 4;
    }
    return inet_pton(AF_INET6, name, out) == 1 ? 16 : 0;
}

int tp__quic_tls_session_new(tp_quic_tls_t *t, gnutls_session_t *out,
                             ngtcp2_crypto_conn_ref *conn_ref, const char *server_name,
                             uint8_t ip_store[16]) {
    gnutls_session_t s;
    /* No GNUTLS_ENABLE_EARLY_DATA: 0-RTT is off. QUIC has no EndOfEarlyData message. */
    unsigned flags = (t->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_END_OF_EARLY_DATA;
    if (gnutls_init(&s, flags) != 0) {
        return TP_ERR_NOMEM;
    }
    int rc = t->server ? ngtcp2_crypto_gnutls_configure_server_session(s)
                       : ngtcp2_crypto_gnutls_configure_client_session(s);
    if (rc != 0 || gnutls_priority_set(s, t->prio) != 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->cred) != 0) {
        gnutls_deinit(s);
        return TP_ERR_IO;
    }
    gnutls_datum_t alpn = {.data = (unsigned char *)t->alpn, .size = (unsigned)strlen(t->alpn)};
    /* Mandatory: QUIC requires ALPN (RFC 9001 8.1); a peer without ours fails the handshake. */
    if (gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0) {
        gnutls_deinit(s);
        return TP_ERR_IO;
    }
    if (!t->server && server_name) {
        uint8_t ip[16];
        size_t iplen = ip_literal(server_name, ip);
        /* SNI carries DNS names only (RFC 6066 3); an IP is checked against the IP SANs. */
        if (!iplen &&
            gnutls_server_name_set(s, GNUTLS_NAME_DNS, server_name, strlen(server_name)) != 0) {
            gnutls_deinit(s);
            return TP_ERR_IO;
        }
        if (t->verify && !iplen) {
            gnutls_session_set_verify_cert(s, server_name, 0);
        } else if (t->verify) {
            gnutls_typed_vdata_st vd = {
                .type = GNUTLS_DT_IP_ADDRESS, .data = ip_store, .size = (unsigned)iplen};
            memcpy(ip_store, ip, iplen);
            gnutls_session_set_verify_cert2(s, &vd, 1, 0);
        }
    }
    if (t->keylog) {
        gnutls_session_set_keylog_function(s, keylog_cb);
    }
    gnutls_session_set_ptr(s, conn_ref);
    *out = s;
    return 0;
}
