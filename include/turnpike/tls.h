/* turnpike/tls.h: what hooks see of TLS on an ingress connection: the ClientHello and the session.
 */
#ifndef TURNPIKE_TLS_H
#define TURNPIKE_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tp_conn;

/* Most ALPN protocol names of a ClientHello that Turnpike shows (the rest are not listed). */
#define TP_TLS_HELLO_MAX_ALPN 16

/*
 * The client's first flight as read before any TLS processing (the "SNI peek"), shown to
 * ingress.handle_tls_client_hello. Untrusted: nothing here has been authenticated. The views point
 * into bytes Turnpike holds until the hook's decision is applied (after tp_pending_complete() for
 * a pending hook); copy what must live longer.
 */
typedef struct tp_tls_client_hello {
    tp_str_t sni;                         /* server_name host_name, or {NULL, 0} when absent */
    tp_str_t alpn[TP_TLS_HELLO_MAX_ALPN]; /* application_layer_protocol_negotiation, in order */
    size_t nalpn;                         /* how many of alpn[] are set */
    uint16_t legacy_version;              /* ClientHello.legacy_version (0x0303 for TLS 1.2+) */
    uint16_t max_version;  /* the highest version offered: supported_versions, else legacy */
    size_t ncipher_suites; /* how many cipher suites were offered */
} tp_tls_client_hello_t;

/* How the client authenticated itself (mTLS), when it did. */
typedef enum tp_tls_peer_kind {
    TP_TLS_PEER_NONE = 0, /* no client certificate (client_auth none, or optional and none sent) */
    TP_TLS_PEER_X509,     /* an X.509 certificate chain */
    TP_TLS_PEER_RAW_KEY,  /* an RFC 7250 raw public key */
} tp_tls_peer_kind_t;

/*
 * A terminated TLS session as hooks see it, from ingress.handle_connection (which runs after the
 * handshake on TLS endpoints) until ingress.handle_connection_close returns. Strings are
 * NUL-terminated; absent ones are empty (""), never NULL.
 */
typedef struct tp_tls_info {
    const char *version; /* "TLS1.3", "TLS1.2" */
    const char *cipher;  /* "TLS_AES_128_GCM_SHA256", ... (the IANA name) */
    const char *group;   /* the key exchange group ("X25519", "SECP256R1"), or "" */
    const char *alpn;    /* the protocol agreed on, or "" */
    const char *sni;     /* the server name the client asked for, or "" */
    bool resumed;        /* the session was resumed (from a ticket) */
    /* The client's identity (mTLS). */
    tp_tls_peer_kind_t peer;
    bool peer_verified;       /* X.509: the chain verified against client_ca; raw key: listed */
    const char *peer_verify;  /* "ok", or why verification failed ("signer not found", ...) */
    const char *peer_subject; /* X.509 subject DN (RFC 4514), or "" */
    const char *peer_issuer;  /* X.509 issuer DN, or "" */
    const char *peer_serial;  /* X.509 serial number in hex, or "" */
    const char *peer_sans;    /* subject alternative names: "DNS:a.example,IP:192.0.2.1,...", "" */
    /* SHA-256 in lower-case hex: of the leaf certificate's DER (X.509), or of the raw key's
     * SubjectPublicKeyInfo DER (RFC 7250), as allow lists compare it. "" without a peer. */
    const char *peer_sha256;
} tp_tls_info_t;

/*
 * The TLS session of an ingress connection, or NULL when the endpoint has no `tls` section or the
 * handshake has not completed yet (so NULL in ingress.handle_tls_client_hello). Valid until
 * ingress.handle_connection_close returns.
 */
const tp_tls_info_t *tp_conn_tls(const struct tp_conn *conn);

/*
 * The ClientHello the connection began with (the same the hook saw), or NULL when the endpoint
 * has no TLS or the handshake has started (its bytes are then GnuTLS's). For
 * ingress.handle_tls_client_hello and what it completes later.
 */
const tp_tls_client_hello_t *tp_conn_tls_client_hello(const struct tp_conn *conn);

/* True when GnuTLS runs in FIPS 140 mode (gnutls_fips140_mode_enabled()), as the `fips` profile
 * reports at start-up. */
bool tp_tls_fips_mode(void);

#ifdef __cplusplus
}
#endif
#endif
