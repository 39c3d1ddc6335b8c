/* creds.c: an endpoint's TLS credentials: certificates by SNI, profiles, ALPN, tickets, mTLS, RPK.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "runtime/log.h"
#include "tls/tls.h"

/*
 * The profiles as GnuTLS priority strings, before the version part. `modern` keeps AEAD suites
 * with ECDHE and modern signatures; `compat` is GnuTLS's NORMAL (CBC suites, RSA key exchange,
 * for old clients); `fips` lists only FIPS 140-approved algorithms (no ChaCha20, no X25519 or
 * EdDSA): under a library in FIPS mode GnuTLS enforces the same on its own.
 */
static const char *const PROFILE[] = {
    "SECURE128:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:"
    "+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"
    "%SERVER_PRECEDENCE",
    "NORMAL:%SERVER_PRECEDENCE",
    "SECURE128:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+AES-256-CCM:+AES-128-CCM:-MAC-ALL:+AEAD:"
    "-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-SECP256R1:+GROUP-SECP384R1:"
    "+GROUP-SECP521R1:-SIGN-ALL:+SIGN-RSA-SHA256:+SIGN-RSA-SHA384:+SIGN-RSA-SHA512:"
    "+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-PSS-RSAE-SHA384:+SIGN-RSA-PSS-RSAE-SHA512:"
    "+SIGN-ECDSA-SECP256R1-SHA256:+SIGN-ECDSA-SECP384R1-SHA384:+SIGN-ECDSA-SECP521R1-SHA512:"
    "%SERVER_PRECEDENCE",
};

bool tp_tls_fips_mode(void) { return gnutls_fips140_mode_enabled() != 0; }

int tp__tls_priority_init(gnutls_priority_t *out, int profile, int min_version, bool rpk, char *err,
                          size_t errlen) {
    char prio[1024];
    snprintf(prio, sizeof(prio), "%s:-VERS-ALL:+VERS-TLS1.3%s%s", PROFILE[profile],
             min_version == TP_TLS_V1_2 ? ":+VERS-TLS1.2" : "",
             rpk ? ":+CTYPE-CLI-ALL:+CTYPE-SRV-ALL" : "");
    const char *where = NULL;
    int grc = gnutls_priority_init(out, prio, &where);
    if (grc < 0) {
        *out = NULL;
        snprintf(err, errlen, "profile: GnuTLS refused the priority string at '%s': %s",
                 where ? where : "", gnutls_strerror(grc));
        return TP_ERR_CONFIG;
    }
    return 0;
}

tp_tls_creds_t *tp__tls_creds_ref(tp_tls_creds_t *c) {
    if (c)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

static void creds_free(tp_tls_creds_t *c) {
    for (size_t i = 0; c->certs && i < c->ncerts; i++) {
        if (c->certs[i].cred)
            gnutls_certificate_free_credentials(c->certs[i].cred);
        for (size_t j = 0; j < c->certs[i].nnames; j++)
            free(c->certs[i].names[j]);
        free(c->certs[i].names);
    }
    free(c->certs);
    if (c->prio)
        gnutls_priority_deinit(c->prio);
    for (size_t i = 0; i < c->nalpn; i++)
        free(c->alpn[i].data);
    free(c->peer_keys);
    gnutls_memset(c->ticket_key, 0, sizeof(c->ticket_key));
    free(c);
}

void tp__tls_creds_unref(tp_tls_creds_t *c) {
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        creds_free(c);
}

static int fail(char *err, size_t errlen, const char *what, const char *file, int grc) {
    snprintf(err, errlen, "%s '%s': %s", what, file ? file : "", gnutls_strerror(grc));
    return TP_ERR_CONFIG;
}

static int add_name(tp_tls_cert_t *ct, const char *name, size_t len) {
    if (len == 0 || len > 255)
        return 0;
    char **names = realloc(ct->names, (ct->nnames + 1) * sizeof(*names));
    if (!names)
        return TP_ERR_NOMEM;
    ct->names = names;
    char *s = malloc(len + 1);
    if (!s)
        return TP_ERR_NOMEM;
    for (size_t i = 0; i < len; i++)
        s[i] = (char)tolower((unsigned char)name[i]);
    s[len] = '\0';
    if (len > 1 && s[len - 1] == '.')
        s[len - 1] = '\0';
    ct->names[ct->nnames++] = s;
    return 0;
}

/* The DNS names of the leaf the credentials just got (index idx): SANs, else the CN. */
static int collect_names(tp_tls_cert_t *ct, unsigned idx) {
    gnutls_x509_crt_t *crts = NULL;
    unsigned ncrts = 0;
    if (gnutls_certificate_get_x509_crt(ct->cred, idx, &crts, &ncrts) < 0 || ncrts == 0)
        return 0; /* no X.509 (a raw key): it matches no name */
    int rc = 0;
    for (unsigned seq = 0; rc == 0; seq++) {
        char name[256];
        size_t len = sizeof(name);
        int type = gnutls_x509_crt_get_subject_alt_name(crts[0], seq, name, &len, NULL);
        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type == GNUTLS_SAN_DNSNAME)
            rc = add_name(ct, name, len);
    }
    if (rc == 0 && ct->nnames == 0) {
        char cn[256];
        size_t len = sizeof(cn);
        if (gnutls_x509_crt_get_dn_by_oid(crts[0], GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &len) ==
            0)
            rc = add_name(ct, cn, len);
    }
    for (unsigned i = 0; i < ncrts; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);
    return rc;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A fingerprint the schema checked (64 hex digits, colons allowed) into 32 bytes. */
static void parse_fingerprint(const char *s, uint8_t out[32]) {
    size_t n = 0;
    int hi = -1;
    for (; *s && n < 32; s++) {
        int v = hexval(*s);
        if (v < 0)
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
}

/* Everything a certificate's credentials carry besides the key pair. */
static int cert_common(tp_tls_creds_t *c, tp_tls_cert_t *ct, char *err, size_t errlen) {
    const tp_tls_cfg_t *t = &c->cfg->tls;
    int grc;
    if (t->client_ca && (grc = gnutls_certificate_set_x509_trust_file(ct->cred, t->client_ca,
                                                                      GNUTLS_X509_FMT_PEM)) <= 0)
        return fail(err, errlen, "client_ca", t->client_ca,
                    grc == 0 ? GNUTLS_E_NO_CERTIFICATE_FOUND : grc);
    if (t->raw_public_key.key && (grc = gnutls_certificate_set_rawpk_key_file(
                                      ct->cred, t->raw_public_key.public_key, t->raw_public_key.key,
                                      GNUTLS_X509_FMT_PEM, NULL, 0, NULL, 0, 0, 0)) < 0)
        return fail(err, errlen, "raw_public_key", t->raw_public_key.key, grc);
    return 0;
}

int tp__tls_creds_load(const tp_endpoint_cfg_t *cfg, const tp_tls_creds_t *prev,
                       tp_tls_creds_t **out, char *err, size_t errlen) {
    const tp_tls_cfg_t *t = &cfg->tls;
    tp_tls_creds_t *c = calloc(1, sizeof(*c));
    if (!c)
        return TP_ERR_NOMEM;
    atomic_init(&c->refs, 1);
    c->cfg = cfg;
    c->generation = prev ? prev->generation + 1 : 0;
    c->rpk = t->raw_public_key.key || t->raw_public_key.peers.n;
    size_t n = t->certificates.n ? t->certificates.n : 1; /* a raw key alone: one entry */
    c->certs = calloc(n, sizeof(*c->certs));
    int rc = c->certs ? 0 : TP_ERR_NOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        tp_tls_cert_t *ct = &c->certs[i];
        c->ncerts++;
        int grc = gnutls_certificate_allocate_credentials(&ct->cred);
        if (grc < 0) {
            rc = TP_ERR_NOMEM;
            break;
        }
        if (t->certificates.n) {
            const tp_tls_cert_cfg_t *cc = TP_LIST_AT(tp_tls_cert_cfg_t, t->certificates, i);
            grc = gnutls_certificate_set_x509_key_file2(ct->cred, cc->cert, cc->key,
                                                        GNUTLS_X509_FMT_PEM, NULL, 0);
            if (grc < 0) {
                rc = fail(err, errlen, "certificate", cc->cert, grc);
                break;
            }
            /* set_x509_key_file2 returns the index of the pair it added. */
            if ((rc = collect_names(ct, (unsigned)grc)) != 0)
                break;
            if (cc->ocsp_staple_file &&
                (grc = gnutls_certificate_set_ocsp_status_request_file2(
                     ct->cred, cc->ocsp_staple_file, 0, GNUTLS_X509_FMT_DER)) < 0) {
                rc = fail(err, errlen, "ocsp_staple_file", cc->ocsp_staple_file, grc);
                break;
            }
        }
        rc = cert_common(c, ct, err, errlen);
    }
    if (rc == 0)
        rc = tp__tls_priority_init(&c->prio, t->profile, t->min_version, c->rpk, err, errlen);
    /* ALPN: the configured list, else what the on-ramp speaks. */
    static const char *const http11[] = {"http/1.1"};
    const char *const *protos = (const char *const *)t->alpn.items;
    size_t nprotos = t->alpn.n;
    if (nprotos == 0 && cfg->type != TP_ONRAMP_TCP) {
        protos = http11;
        nprotos = 1;
    }
    for (size_t i = 0; rc == 0 && i < nprotos && i < 16; i++) {
        size_t len = strlen(protos[i]);
        c->alpn[i].data = malloc(len);
        if (!c->alpn[i].data) {
            rc = TP_ERR_NOMEM;
            break;
        }
        memcpy(c->alpn[i].data, protos[i], len);
        c->alpn[i].size = (unsigned)len;
        c->nalpn++;
    }
    if (rc == 0 && t->raw_public_key.peers.n) {
        c->peer_keys = calloc(t->raw_public_key.peers.n, sizeof(*c->peer_keys));
        if (!c->peer_keys)
            rc = TP_ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < t->raw_public_key.peers.n; i++)
            parse_fingerprint(t->raw_public_key.peers.items[i], c->peer_keys[i]);
        c->npeer_keys = t->raw_public_key.peers.n;
    }
    if (rc == 0 && t->session_tickets) {
        c->tickets = true;
        if (prev && prev->tickets) {
            memcpy(c->ticket_key, prev->ticket_key, sizeof(c->ticket_key));
        } else {
            gnutls_datum_t key;
            if (gnutls_session_ticket_key_generate(&key) < 0 || key.size != sizeof(c->ticket_key))
                rc = TP_ERR_NOMEM;
            else
                memcpy(c->ticket_key, key.data, sizeof(c->ticket_key));
            if (key.data) {
                gnutls_memset(key.data, 0, key.size);
                gnutls_free(key.data);
            }
        }
    }
    if (rc != 0) {
        if (rc == TP_ERR_NOMEM)
            snprintf(err, errlen, "out of memory");
        creds_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* `name` (lower-case) against a pattern: exact, or "*.suffix" for exactly one more label. */
static bool name_matches(const char *pat, const char *name, size_t len, bool wildcard) {
    if (pat[0] == '*' && pat[1] == '.') {
        if (!wildcard)
            return false;
        const char *dot = memchr(name, '.', len);
        if (!dot || dot == name)
            return false;
        size_t rest = len - (size_t)(dot - name);
        return strlen(pat + 1) == rest && memcmp(pat + 1, dot, rest) == 0;
    }
    return !wildcard && strlen(pat) == len && memcmp(pat, name, len) == 0;
}

const tp_tls_cert_t *tp__tls_creds_pick(const tp_tls_creds_t *c, tp_str_t sni) {
    if (c->ncerts == 0)
        return NULL;
    char name[256];
    size_t len = sni.len < sizeof(name) ? sni.len : 0;
    for (size_t i = 0; i < len; i++)
        name[i] = (char)tolower((unsigned char)sni.ptr[i]);
    if (len > 1 && name[len - 1] == '.')
        len--;
    /* GnuTLS 3.7 matches SNI against its key pairs exactly, without wildcards, so the choice is
     * made here, before the session exists: exact names first, then wildcards. */
    for (int wild = 0; len && wild < 2; wild++)
        for (size_t i = 0; i < c->ncerts; i++)
            for (size_t j = 0; j < c->certs[i].nnames; j++)
                if (name_matches(c->certs[i].names[j], name, len, wild))
                    return &c->certs[i];
    return &c->certs[0];
}

void tp__tls_creds_log(const tp_tls_creds_t *c, const char *msg) {
    static const char *const profiles[] = {"modern", "compat", "fips"};
    const tp_tls_cfg_t *t = &c->cfg->tls;
    tp_logline_t l;
    tp__log_begin_always(&l, TP_LOG_INFO, msg);
    tp__log_str(&l, "endpoint", c->cfg->name);
    tp__log_str(&l, "profile", profiles[t->profile]);
    tp__log_str(&l, "min_version", t->min_version == TP_TLS_V1_2 ? "TLS1.2" : "TLS1.3");
    tp__log_u64(&l, "certificates", t->certificates.n);
    tp__log_bool(&l, "raw_public_key", c->rpk);
    tp__log_bool(&l, "session_tickets", c->tickets);
    tp__log_u64(&l, "generation", c->generation);
    tp__log_bool(&l, "fips_mode", tp_tls_fips_mode());
    tp__log_end(&l);
    if (t->profile == TP_TLS_FIPS && !tp_tls_fips_mode())
        tp__log_msg(TP_LOG_WARN, "tls fips profile without FIPS mode",
                    "endpoint %s: the fips profile limits the algorithms, but GnuTLS does not run "
                    "in FIPS 140 mode (no validated module)",
                    c->cfg->name);
}
