/* client.c: Turnpike as a TLS client: trust anchors, CRLs, client certificates, profiles, ALPN,
 * and what a failed upstream handshake means as an RFC 9209 Proxy-Status error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/ocsp.h>
#include <gnutls/x509.h>

#include "runtime/log.h"
#include "util/hash.h"
#include "tls/tls.h"

tp_tls_saved_t *tp__tls_origin_session(tp_worker_t *w, const char *host, size_t hostlen,
                                       uint16_t port) {
    if (!w->tls_origin_sessions &&
        !(w->tls_origin_sessions = calloc(TP_TLS_ORIGIN_SESSIONS, sizeof(tp_tls_saved_t))))
        return NULL;
    uint64_t key = tp__fnv1a_lower(TP_FNV1A_INIT ^ ((uint64_t)port << 32), host, hostlen) | 1;
    tp_tls_saved_t *s = &w->tls_origin_sessions[key % TP_TLS_ORIGIN_SESSIONS];
    if (s->key != key) { /* another origin had it: its session goes */
        tp__tls_saved_free(s);
        s->key = key;
    }
    return s;
}

void tp__tls_origin_sessions_free(tp_worker_t *w) {
    for (size_t i = 0; w->tls_origin_sessions && i < TP_TLS_ORIGIN_SESSIONS; i++)
        tp__tls_saved_free(&w->tls_origin_sessions[i]);
    free(w->tls_origin_sessions);
    w->tls_origin_sessions = NULL;
}

void tp__tls_saved_free(tp_tls_saved_t *s) {
    if (!s)
        return;
    free(s->data);
    s->data = NULL;
    s->len = 0;
}

/* A file the configuration names: a clear message when it is not there (GnuTLS only says "Error
 * while reading file"). */
static int file_check(const char *key, const char *file, char *err, size_t errlen) {
    if (access(file, R_OK) == 0)
        return 0;
    snprintf(err, errlen, "%s '%s': %s", key, file, strerror(errno));
    return TP_ERR_CONFIG;
}

static int gnutls_fail(char *err, size_t errlen, const char *key, const char *file, int grc) {
    snprintf(err, errlen, "%s '%s': %s", key, file, gnutls_strerror(grc));
    return TP_ERR_CONFIG;
}

static int load(tp_tls_client_t *c, char *err, size_t errlen) {
    const tp_tls_client_cfg_t *cfg = c->cfg;
    if (gnutls_certificate_allocate_credentials(&c->cred) < 0) {
        c->cred = NULL;
        return TP_ERR_NOMEM;
    }
    int grc, rc;
    if (cfg->ca) {
        if ((rc = file_check("ca", cfg->ca, err, errlen)) != 0)
            return rc;
        grc = gnutls_certificate_set_x509_trust_file(c->cred, cfg->ca, GNUTLS_X509_FMT_PEM);
        if (grc <= 0)
            return gnutls_fail(err, errlen, "ca", cfg->ca,
                               grc == 0 ? GNUTLS_E_NO_CERTIFICATE_FOUND : grc);
        c->nanchors = (size_t)grc;
    } else if (cfg->verify) {
        grc = gnutls_certificate_set_x509_system_trust(c->cred);
        c->nanchors = grc > 0 ? (size_t)grc : 0; /* none: logged, every verification fails */
    }
    /* ocsp: off. GnuTLS 3.7 always asks for a staple and checks one that comes; only this flag
     * (which also skips CRLs: the configuration check refuses both together) turns that off. */
    if (cfg->ocsp == TP_OCSP_OFF)
        gnutls_certificate_set_verify_flags(c->cred, GNUTLS_VERIFY_DISABLE_CRL_CHECKS);
    for (size_t i = 0; i < cfg->crl.n; i++) {
        const char *f = cfg->crl.items[i];
        if ((rc = file_check("crl", f, err, errlen)) != 0)
            return rc;
        grc = gnutls_certificate_set_x509_crl_file(c->cred, f, GNUTLS_X509_FMT_PEM);
        if (grc <= 0)
            return gnutls_fail(err, errlen, "crl", f,
                               grc == 0 ? GNUTLS_E_BASE64_DECODING_ERROR : grc);
    }
    if (cfg->certificate) {
        if ((rc = file_check("certificate", cfg->certificate, err, errlen)) != 0 ||
            (rc = file_check("private_key", cfg->private_key, err, errlen)) != 0)
            return rc;
        grc = gnutls_certificate_set_x509_key_file2(c->cred, cfg->certificate, cfg->private_key,
                                                    GNUTLS_X509_FMT_PEM, NULL, 0);
        if (grc < 0)
            return gnutls_fail(err, errlen, "certificate/private_key", cfg->certificate, grc);
    }
    if ((rc = tp__tls_priority_init(&c->prio, cfg->profile, cfg->min_version, false, err,
                                    errlen)) != 0)
        return rc;
    static const char *const http11[] = {"http/1.1"};
    const char *const *protos = cfg->alpn.n ? (const char *const *)cfg->alpn.items : http11;
    size_t n = cfg->alpn.n ? cfg->alpn.n : 1;
    for (size_t i = 0; i < n && i < 16; i++) {
        size_t len = strlen(protos[i]);
        if (!(c->alpn[i].data = malloc(len)))
            return TP_ERR_NOMEM;
        memcpy(c->alpn[i].data, protos[i], len);
        c->alpn[i].size = (unsigned)len;
        c->nalpn++;
    }
    return 0;
}

int tp__tls_client_load(const tp_tls_client_cfg_t *cfg, const char *what, tp_tls_client_t **out,
                        char *err, size_t errlen) {
    tp_tls_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return TP_ERR_NOMEM;
    c->cfg = cfg;
    snprintf(c->what, sizeof(c->what), "%s", what);
    int rc = load(c, err, errlen);
    if (rc != 0) {
        if (rc == TP_ERR_NOMEM)
            snprintf(err, errlen, "out of memory");
        tp__tls_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tp__tls_client_free(tp_tls_client_t *c) {
    if (!c)
        return;
    if (c->cred)
        gnutls_certificate_free_credentials(c->cred);
    if (c->prio)
        gnutls_priority_deinit(c->prio);
    for (size_t i = 0; i < c->nalpn; i++)
        free(c->alpn[i].data);
    free(c);
}

void tp__tls_client_log(const tp_tls_client_t *c) {
    static const char *const profiles[] = {"modern", "compat", "fips"};
    static const char *const ocsp[] = {"if_stapled", "require", "off"};
    const tp_tls_client_cfg_t *cfg = c->cfg;
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "tls client");
    tp__log_str(&l, "for", c->what);
    tp__log_str(&l, "ca", cfg->ca ? cfg->ca : "system");
    tp__log_u64(&l, "anchors", c->nanchors);
    tp__log_bool(&l, "verify", cfg->verify);
    tp__log_str(&l, "profile", profiles[cfg->profile]);
    tp__log_str(&l, "min_version", cfg->min_version == TP_TLS_V1_2 ? "TLS1.2" : "TLS1.3");
    tp__log_u64(&l, "crls", cfg->crl.n);
    tp__log_str(&l, "ocsp", ocsp[cfg->ocsp]);
    tp__log_bool(&l, "client_certificate", cfg->certificate != NULL);
    tp__log_bool(&l, "session_resumption", cfg->session_resumption);
    tp__log_end(&l);
    if (!cfg->verify)
        tp__log_msg(TP_LOG_WARN, "tls client verification off",
                    "%s: verify is false: any server certificate is accepted (no chain, name "
                    "or revocation check)",
                    c->what);
    else if (c->nanchors == 0)
        tp__log_msg(TP_LOG_WARN, "tls client without trust anchors",
                    "%s: the system trust store is empty or unreadable: every server "
                    "certificate will be refused (give 'ca')",
                    c->what);
}

void tp__tls_client_params(const tp_tls_client_t *c, const char *name, tp_tls_saved_t *session,
                           uint64_t session_key, tp_tls_client_params_t *p) {
    memset(p, 0, sizeof(*p));
    p->cred = c->cred;
    p->prio = c->prio;
    p->server_name = name;
    p->verify = c->cfg->verify;
    p->no_status_request = c->cfg->ocsp == TP_OCSP_OFF;
    p->alpn = c->alpn;
    p->nalpn = c->nalpn;
    p->session = c->cfg->session_resumption ? session : NULL;
    p->session_key = session_key;
}

bool tp__tls_client_ocsp_ok(const tp_tls_t *t) {
    return gnutls_session_is_resumed(t->s) || gnutls_ocsp_status_request_is_checked(t->s, 0);
}

/* The verification status bits in words, the gravest first. */
static void describe_status(const tp_tls_t *t, unsigned st, const char *name, char *out,
                            size_t cap) {
    static const struct {
        unsigned bit;
        const char *what;
    } reasons[] = {
        {GNUTLS_CERT_REVOKED, "certificate revoked"},
        {GNUTLS_CERT_EXPIRED, "certificate expired"},
        {GNUTLS_CERT_NOT_ACTIVATED, "certificate not yet valid"},
        {GNUTLS_CERT_SIGNER_NOT_FOUND, "unknown issuer (no trusted CA)"},
        {GNUTLS_CERT_SIGNER_NOT_CA, "issuer is not a CA"},
        {GNUTLS_CERT_SIGNATURE_FAILURE, "bad signature"},
        {GNUTLS_CERT_INSECURE_ALGORITHM, "insecure algorithm"},
        {GNUTLS_CERT_UNEXPECTED_OWNER, "hostname mismatch"},
        {GNUTLS_CERT_MISSING_OCSP_STATUS, "OCSP staple missing"},
        {GNUTLS_CERT_INVALID_OCSP_STATUS, "OCSP staple invalid"},
        {GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED, "revocation data too old"},
        {GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE, "revocation data from the future"},
        {GNUTLS_CERT_PURPOSE_MISMATCH, "certificate not for TLS servers"},
        {GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE, "issuer constraints violated"},
    };
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]) && len < cap; i++) {
        if (!(st & reasons[i].bit))
            continue;
        const char *extra = "";
        char buf[300];
        if (reasons[i].bit == GNUTLS_CERT_UNEXPECTED_OWNER && name) {
            snprintf(buf, sizeof(buf), " (not valid for %s)", name);
            extra = buf;
        } else if (reasons[i].bit == GNUTLS_CERT_REVOKED) {
            extra = gnutls_ocsp_status_request_is_checked(t->s, GNUTLS_OCSP_SR_IS_AVAIL)
                        ? " (stapled OCSP response)"
                        : " (CRL)";
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s%s", len ? ", " : "", reasons[i].what,
                                extra);
    }
    if (len == 0) {
        gnutls_datum_t text = {NULL, 0};
        gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &text, 0);
        snprintf(out, cap, "%s", text.data ? (const char *)text.data : "not trusted");
        gnutls_free(text.data);
    }
}

/* An alert's name as RFC 8446 6 spells it (Proxy-Status alert-message). */
static const char *alert_rfc_name(unsigned a) {
    switch (a) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 113: return "bad_certificate_status_response";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    }
    return "unknown";
}

void tp__tls_client_failure(const tp_tls_t *t, const char *name, tp_failure_t *f) {
    f->status = 502;
    f->reason = TP_CLOSE_UPSTREAM_FAILED;
    int grc = t->gnutls_err;
    if (grc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || grc == GNUTLS_E_CERTIFICATE_ERROR) {
        f->error = "tls_certificate_error";
        describe_status(t, gnutls_session_get_verify_cert_status(t->s), name, f->details,
                        sizeof(f->details));
    } else if (grc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        gnutls_alert_description_t a = gnutls_alert_get(t->s);
        f->error = "tls_alert_received";
        f->has_alert = true;
        f->alert = (uint8_t)a;
        f->alert_name = alert_rfc_name((unsigned)a);
        snprintf(f->details, sizeof(f->details), "the server sent the fatal alert %s (%d)",
                 f->alert_name, (int)a);
    } else if (grc == 0 || grc == GNUTLS_E_PREMATURE_TERMINATION) {
        f->error = "connection_terminated";
        snprintf(f->details, sizeof(f->details), "%s", t->why);
    } else {
        f->error = "tls_protocol_error";
        snprintf(f->details, sizeof(f->details), "%s", t->why);
    }
}
