/* tls.c: GnuTLS for QUIC: credentials per endpoint (server certificate, or the client's trust
 * anchors), one session per connection wired to ngtcp2_crypto_gnutls, ALPN and the key log. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "quic/quic_int.h"

/* ---- 0-RTT anti-replay: one table per process, shared by every server endpoint ---- */

/* A ClientHello carrying early data, remembered until `exp` (seconds, as GnuTLS gives it). */
typedef struct replay_slot {
    uint8_t digest[16];
    time_t exp;
} replay_slot_t;

static replay_slot_t replay_slots[TP_QUIC_ANTI_REPLAY_SLOTS];
static uv_mutex_t replay_lock;
static uv_once_t replay_once = UV_ONCE_INIT;

static void replay_init(void) {
    if (uv_mutex_init(&replay_lock) != 0) {
        abort();
    }
}

/* GnuTLS asks us to remember a ClientHello: GNUTLS_E_DB_ENTRY_EXISTS when it was seen within the
 * window (a replay: its early data is rejected), an error when the table has no room nearby (the
 * early data is rejected too: never accept what we could not remember). Only handshakes that
 * offer 0-RTT get here, so the lock is off the packet path. */
static int replay_add(void *ptr, time_t exp, const gnutls_datum_t *key,
                      const gnutls_datum_t *data) {
    (void)ptr;
    (void)data;
    uint8_t full[32];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, key->data, key->size, full) != 0) {
        return GNUTLS_E_DB_ERROR;
    }
    size_t h = 0;
    memcpy(&h, full + 16, sizeof(h));
    time_t now = time(NULL);
    int rc = GNUTLS_E_DB_ERROR;
    uv_mutex_lock(&replay_lock);
    replay_slot_t *free_slot = NULL;
    for (size_t i = 0; i < 32; i++) {
        replay_slot_t *e = &replay_slots[(h + i) % TP_QUIC_ANTI_REPLAY_SLOTS];
        if (e->exp >= now && memcmp(e->digest, full, sizeof(e->digest)) == 0) {
            free_slot = NULL;
            rc = GNUTLS_E_DB_ENTRY_EXISTS;
            break;
        }
        if (e->exp < now && !free_slot) {
            free_slot = e;
        }
    }
    if (free_slot) {
        memcpy(free_slot->digest, full, sizeof(free_slot->digest));
        free_slot->exp = exp;
        rc = 0;
    }
    uv_mutex_unlock(&replay_lock);
    return rc;
}

/* The ticket key: HMAC(secret, label, the settings a 0-RTT client remembers). Endpoints with the
 * same secret read each other's tickets; a change of those settings makes old tickets unreadable,
 * so a client never sends 0-RTT under limits larger than ours (RFC 9000 7.4.1). */
static int derive_ticket_key(uint8_t out[64], const uint8_t secret[TP_QUIC_SECRET_LEN],
                             const tp_quic_settings_t *s) {
    uint64_t v[] = {s->initial_max_data,
                    s->initial_max_stream_data,
                    s->initial_max_streams_bidi,
                    s->initial_max_streams_uni,
                    s->active_connection_id_limit,
                    s->datagrams ? s->max_datagram_frame_size : 0,
                    s->early_data};
    uint8_t msg[32 + sizeof(v) + TP_QUIC_ALPN_MAX + 1];
    size_t alen = strlen(s->alpn);
    memset(msg, 0, sizeof(msg));
    memcpy(msg, "turnpike quic ticket key", 24);
    memcpy(msg + 32, v, sizeof(v));
    memcpy(msg + 32 + sizeof(v), s->alpn, alen);
    for (uint8_t i = 0; i < 2; i++) {
        msg[31] = i;
        if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, TP_QUIC_SECRET_LEN, msg,
                             32 + sizeof(v) + alen, out + (size_t)32 * i) != 0) {
            return TP_ERR_IO;
        }
    }
    return 0;
}

/* TLS 1.3 only (QUIC needs it); no middlebox compatibility mode; no CCM-8 (RFC 9001 5.3). */
static const char PRIORITY[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-AES-128-CCM-8:-AES-256-CCM-8:%DISABLE_TLS13_COMPAT_MODE";

int tp__quic_tls_init(tp_quic_tls_t *t, bool server, const tp_quic_settings_t *s,
                      const uint8_t secret[TP_QUIC_SECRET_LEN]) {
    memset(t, 0, sizeof(*t));
    t->server = server;
    t->early_data = s->early_data;
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
        if (derive_ticket_key(t->ticket_key, secret, s) != 0) {
            tp__quic_tls_free(t);
            return TP_ERR_IO;
        }
        if (s->early_data) {
            uv_once(&replay_once, replay_init);
            if (gnutls_anti_replay_init(&t->anti_replay) != 0) {
                tp__quic_tls_free(t);
                return TP_ERR_NOMEM;
            }
            gnutls_anti_replay_set_window(t->anti_replay, TP_QUIC_ANTI_REPLAY_WINDOW_MS);
            gnutls_anti_replay_set_add_function(t->anti_replay, replay_add);
            gnutls_anti_replay_set_ptr(t->anti_replay, NULL);
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
    if (t->anti_replay) {
        gnutls_anti_replay_deinit(t->anti_replay);
        t->anti_replay = NULL;
    }
    memset(t->ticket_key, 0, sizeof(t->ticket_key));
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
    /* GNUTLS_ENABLE_EARLY_DATA only with settings.early_data: without it a server never accepts
     * 0-RTT (and the client never offers it). QUIC has no EndOfEarlyData message. */
    unsigned flags = (t->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_END_OF_EARLY_DATA;
    if (t->early_data) {
        flags |= GNUTLS_ENABLE_EARLY_DATA;
    }
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
    if (t->server) {
        /* Session tickets always (resumption saves the certificate exchange); 0-RTT only with
         * early_data, replay-checked, and with the unlimited size QUIC requires (RFC 9001
         * 4.6.1). */
        gnutls_datum_t key = {.data = t->ticket_key, .size = sizeof(t->ticket_key)};
        if (gnutls_session_ticket_enable_server(s, &key) != 0) {
            gnutls_deinit(s);
            return TP_ERR_IO;
        }
        if (t->early_data) {
            gnutls_anti_replay_enable(s, t->anti_replay);
            if (gnutls_record_set_max_early_data_size(s, UINT32_MAX) != 0) {
                gnutls_deinit(s);
                return TP_ERR_IO;
            }
        }
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
