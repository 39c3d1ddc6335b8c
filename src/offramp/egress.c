/* egress.c: the TCP off-ramp's set-up: resolve, egress hook, policy, Happy Eyeballs connect, and
 * the TLS handshake when the upstream speaks TLS. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns/cache.h"
#include "dns/resolver.h"
#include "runtime/core.h"
#include "runtime/log.h"
#include "tls/tls.h"

/* Stops waiting for (the rest of) a name's answer. Not for a closing connection: the reference
 * dropped here may be its last (tp__egress_abort() does the same then). */
static void stop_resolving(tp_conn_t *conn) {
    tp_egress_t *eg = &conn->egress;
    eg->dns_more = false;
    if (!eg->resolving || !eg->dnsq)
        return;
    tp__dns_cancel(eg->dnsq); /* a cancelled query never calls back: drop its reference */
    eg->dnsq = NULL;
    eg->resolving = false;
    tp__conn_unref(conn);
}

/* Drops every attempt in flight (their handles close; their callbacks see UV_ECANCELED). */
static void drop_attempts(tp_egress_t *eg) {
    for (size_t i = 0; i < eg->nattempts; i++)
        tp__upstream_discard(eg->attempts[i]);
    eg->nattempts = 0;
    eg->conn->attempt_deadline = 0;
}

/* Ends the set-up with a failure: logged, then handed to the flow's callback. */
static void fail_with(tp_conn_t *conn, const tp_failure_t *f) {
    tp_egress_t *eg = &conn->egress;
    if (!conn->closing)
        stop_resolving(conn);
    eg->resolving = eg->connecting = eg->deciding = eg->handshaking = false;
    drop_attempts(eg);
    conn->connect_deadline = 0;
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "egress failed");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "host", eg->host);
    tp__log_u64(&l, "port", eg->port);
    tp__log_str(&l, "error", f->error);
    if (f->rcode)
        tp__log_str(&l, "rcode", f->rcode);
    tp__log_str(&l, "details", f->details);
    tp__log_end(&l);
    tp__conn_upstream_close(conn);
    eg->cb(conn, f);
}

static void fail(tp_conn_t *conn, uint16_t status, const char *error, tp_close_reason_t reason,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void fail(tp_conn_t *conn, uint16_t status, const char *error, tp_close_reason_t reason,
                 const char *fmt, ...) {
    tp_failure_t f = {.status = status, .error = error, .reason = reason};
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f.details, sizeof(f.details), fmt, ap);
        va_end(ap);
    }
    fail_with(conn, &f);
}

/* Every address failed (or none was left to try): answer with the last failure. */
static void fail_connect(tp_conn_t *conn) {
    tp_egress_t *eg = &conn->egress;
    int status = eg->last_error;
    char ab[TP_ADDR_STRLEN];
    tp_addr_format(&eg->last_addr, ab, sizeof(ab));
    const char *more = eg->ncands > 1 ? " (and every other address)" : "";
    if (status == UV_ECONNREFUSED)
        fail(conn, 502, "connection_refused", TP_CLOSE_UPSTREAM_FAILED, "%s refused%s", ab, more);
    else if (status == UV_ENETUNREACH || status == UV_EHOSTUNREACH || status == UV_EADDRNOTAVAIL)
        fail(conn, 502, "destination_ip_unroutable", TP_CLOSE_UPSTREAM_FAILED, "%s: %s%s", ab,
             uv_strerror(status), more);
    else if (status == UV_ETIMEDOUT)
        fail(conn, 504, "connection_timeout", TP_CLOSE_CONNECT_TIMEOUT, "%s%s", ab, more);
    else
        fail(conn, 502, "proxy_internal_error", TP_CLOSE_UPSTREAM_FAILED, "%s: %s%s", ab,
             status ? uv_strerror(status) : "no address to connect to", more);
}

static void remove_attempt(tp_egress_t *eg, tp_upstream_t *up) {
    for (size_t i = 0; i < eg->nattempts; i++)
        if (eg->attempts[i] == up) {
            eg->attempts[i] = eg->attempts[--eg->nattempts];
            return;
        }
}

static void start_attempts(tp_conn_t *conn);

/* ---- TLS after the connect ---- */

static const char *tls_name(const tp_egress_t *eg) {
    return eg->tls.name ? eg->tls.name : eg->host;
}

static void tls_done(tp_conn_t *conn, tp_tls_t *t, int rc) {
    tp_egress_t *eg = &conn->egress;
    if (!eg->handshaking || conn->closing)
        return;
    eg->handshaking = false;
    conn->connect_deadline = 0;
    tp__conn_rearm(conn);
    const tp_tls_client_t *c = eg->tls.client;
    if (rc != 0) {
        tp_failure_t f = {0};
        tp__tls_client_failure(t, tls_name(eg), &f);
        fail_with(conn, &f);
        return;
    }
    if (c->cfg->verify && c->cfg->ocsp == TP_OCSP_REQUIRE && !tp__tls_client_ocsp_ok(t)) {
        fail(conn, 502, "tls_certificate_error", TP_CLOSE_UPSTREAM_FAILED,
             "OCSP staple missing or invalid (ocsp: require)");
        return;
    }
    gnutls_session_t s = tp__tls_session(t);
    gnutls_datum_t alpn = {NULL, 0};
    char ab[64] = "";
    if (gnutls_alpn_get_selected_protocol(s, &alpn) == 0 && alpn.size < sizeof(ab))
        memcpy(ab, alpn.data, alpn.size);
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_DEBUG, "upstream tls");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "host", eg->host);
    tp__log_u64(&l, "port", eg->port);
    tp__log_str(&l, "server_name", tls_name(eg));
    tp__log_str(&l, "version", gnutls_protocol_get_name(gnutls_protocol_get_version(s)));
    tp__log_str(&l, "cipher", gnutls_ciphersuite_get(s));
    tp__log_str(&l, "alpn", ab);
    tp__log_bool(&l, "resumed", gnutls_session_is_resumed(s) != 0);
    tp__log_end(&l);
    conn->up->tls_client = c;
    conn->up->tls_name = eg->tls.name;
    eg->cb(conn, NULL);
}

/* The connection is up (and the PROXY header, if any, went in the clear): the handshake runs
 * under the connect deadline, renewed for it. */
static void start_tls(tp_conn_t *conn, tp_upstream_t *up) {
    tp_egress_t *eg = &conn->egress;
    tp_tls_client_params_t p;
    tp__tls_client_params(eg->tls.client, tls_name(eg), eg->tls.session, eg->tls.session_key, &p);
    eg->handshaking = true;
    conn->connect_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.connect;
    tp__conn_rearm(conn);
    int rc = tp__tls_client_start(conn, up, &p, tls_done);
    if (rc != 0 && eg->handshaking)
        fail(conn, 502, "proxy_internal_error", TP_CLOSE_INTERNAL, "cannot start TLS: %s",
             tp_strerror(rc));
}

/* The winner: the others are dropped, it becomes the connection's upstream. */
static void won(tp_conn_t *conn, tp_upstream_t *up) {
    tp_egress_t *eg = &conn->egress;
    eg->connecting = false;
    stop_resolving(conn);
    drop_attempts(eg);
    conn->connect_deadline = 0;
    tp__conn_rearm(conn);
    tp__conn_upstream_adopt(conn, up);
    eg->addr = up->addr;
    memcpy(up->host, eg->host, sizeof(up->host));
    up->port = eg->port;
    const tp_egress_cfg_t *ecfg = &conn->ep->cfg->egress;
    uv_tcp_nodelay(&up->tcp, ecfg->nodelay);
    if (ecfg->keepalive)
        uv_tcp_keepalive(&up->tcp, 1, (unsigned)((ecfg->keepalive + 999) / 1000));
    tp_server_t *srv = conn->worker->server;
    tp__conn_trace_addr(conn, "egress.handle_connection_established", &eg->addr);
    if (srv->hooks.egress.handle_connection_established)
        srv->hooks.egress.handle_connection_established(srv->hooks.egress.self, eg, &eg->addr);
    if (conn->closing)
        return;
    if (tp__pp_send_upstream(conn) < 0) {
        fail(conn, 502, "proxy_internal_error", TP_CLOSE_INTERNAL, "cannot send a PROXY header");
        return;
    }
    if (eg->tls.client) {
        start_tls(conn, up);
        return;
    }
    eg->cb(conn, NULL);
}

static void connect_cb(uv_connect_t *req, int status) {
    tp_upstream_t *up = (tp_upstream_t *)req->handle->data;
    tp_conn_t *conn = up->conn;
    tp_egress_t *eg = &conn->egress;
    if (status == UV_ECANCELED || conn->closing || !eg->connecting)
        return; /* dropped: its handle is closing */
    remove_attempt(eg, up);
    if (status != 0) {
        eg->last_error = status;
        eg->last_addr = up->addr;
        tp__upstream_discard(up);
        /* RFC 8305 5: a failure starts the next attempt at once. */
        conn->attempt_deadline = 0;
        start_attempts(conn);
        return;
    }
    won(conn, up);
}

/* Opens one attempt to `addr`; 0, or a libuv error (the attempt is then already gone). */
static int open_attempt(tp_conn_t *conn, const tp_addr_t *addr) {
    tp_egress_t *eg = &conn->egress;
    const tp_egress_cfg_t *ecfg = &conn->ep->cfg->egress;
    int family = addr->u.sa.sa_family;
    tp_server_t *srv = conn->worker->server;
    if (srv->hooks.egress.tcp_connect_override) {
        /* Per attempt, so not in the hook trace (which records a flow's hook points). */
        int fd = srv->hooks.egress.tcp_connect_override(srv->hooks.egress.self, eg, addr);
        if (conn->closing)
            return UV_ECANCELED;
        if (fd == -2)
            return UV_ECONNREFUSED;
        if (fd >= 0) { /* the app's own connected socket */
            tp_upstream_t *up = tp__upstream_new(conn, 0);
            if (!up) {
                close(fd);
                return UV_ENOMEM;
            }
            up->addr = *addr;
            int rc = uv_tcp_open(&up->tcp, fd);
            if (rc != 0) {
                close(fd);
                tp__upstream_discard(up);
                return rc;
            }
            won(conn, up); /* not in attempts[]: won() drops those */
            return 1;
        }
    }
    tp_upstream_t *up = tp__upstream_new(conn, family);
    if (!up)
        return UV_ENOMEM;
    up->addr = *addr;
    int rc = 0;
    uv_os_fd_t fd = -1;
    uv_fileno((uv_handle_t *)&up->tcp, &fd);
    if (ecfg->mark) {
        unsigned mark = (unsigned)ecfg->mark;
        if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0)
            rc = -errno;
    }
    for (size_t i = 0; rc == 0 && i < ecfg->bind.n; i++)
        if (ecfg->bind.items[i].u.sa.sa_family == family)
            rc = uv_tcp_bind(&up->tcp, &ecfg->bind.items[i].u.sa, 0);
    if (rc == 0)
        rc = uv_tcp_connect(&up->connect_req, &up->tcp, &addr->u.sa, connect_cb);
    if (rc != 0) {
        tp__upstream_discard(up);
        return rc;
    }
    eg->attempts[eg->nattempts++] = up;
    return 0;
}

/* Starts the next attempt(s): one now, the following one after the attempt delay. */
static void start_attempts(tp_conn_t *conn) {
    tp_egress_t *eg = &conn->egress;
    while (eg->next < eg->ncands && eg->nattempts < TP_EGRESS_MAX_ATTEMPTS) {
        const tp_addr_t *addr = &eg->cands[eg->next++];
        int rc = open_attempt(conn, addr);
        if (rc == 1 || conn->closing) /* connected at once (tcp_connect_override) */
            return;
        if (rc != 0) { /* failed before any packet: try the next one straight away */
            eg->last_error = rc;
            eg->last_addr = *addr;
            if (rc == UV_ENOMEM)
                break;
            continue;
        }
        if (eg->next < eg->ncands)
            conn->attempt_deadline =
                uv_now(&conn->worker->loop) + conn->ep->cfg->egress.attempt_delay;
        tp__conn_rearm(conn);
        return;
    }
    if (eg->nattempts == 0 && !eg->dns_more) /* else the rest of the answer may bring more */
        fail_connect(conn);
}

void tp__egress_next_attempt(tp_conn_t *conn) {
    if (conn->egress.connecting && !conn->closing)
        start_attempts(conn);
}

void tp__egress_cancel(tp_conn_t *conn) {
    tp_egress_t *eg = &conn->egress;
    if (eg->handshaking) {
        fail(conn, 504, "connection_timeout", TP_CLOSE_CONNECT_TIMEOUT,
             "the TLS handshake with %s did not finish in time", tls_name(eg));
        return;
    }
    if (!eg->connecting)
        return;
    char ab[TP_ADDR_STRLEN];
    tp_addr_format(eg->nattempts ? &eg->attempts[0]->addr : &eg->addr, ab, sizeof(ab));
    fail(conn, 504, "connection_timeout", TP_CLOSE_CONNECT_TIMEOUT, "no answer from %s%s", ab,
         eg->ncands > 1 ? " (nor any other address)" : "");
}

void tp__egress_abort(tp_conn_t *conn) {
    tp_egress_t *eg = &conn->egress;
    stop_resolving(conn);
    eg->connecting = eg->deciding = eg->handshaking = false;
    if (eg->conn)
        drop_attempts(eg);
}

/* The policy judges the addresses actually connected to, after hooks and resolution, for
 * destinations a client chose (an L4 endpoint's configured upstream is the operator's). Keeps the
 * allowed ones in place; returns their count. */
static size_t policy_filter(tp_conn_t *conn, tp_addr_t *addrs, size_t n) {
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (conn->egress.trusted || !tp_addr_is_special(&addrs[i]) ||
            tp_cidr_set_contains(conn->ep->cfg->allow_destinations, &addrs[i]))
            addrs[kept++] = addrs[i];
    return kept;
}

static void egress_decided(tp_conn_t *conn, tp_decision_t d) {
    tp_egress_t *eg = &conn->egress;
    eg->deciding = false;
    if (conn->closing)
        return;
    if (d.verdict == TP_VERDICT_BLOCK) {
        stop_resolving(conn);
        tp_failure_t f = {.status = d.status ? d.status : 403,
                          .error = d.error ? d.error : "destination_ip_prohibited",
                          .reason = TP_CLOSE_BLOCKED};
        if (d.details)
            snprintf(f.details, sizeof(f.details), "%s", d.details);
        eg->cb(conn, &f);
        return;
    }
    if (d.verdict == TP_VERDICT_REDIRECT) {
        stop_resolving(conn); /* the rest of the name's answer no longer matters */
        eg->cands[0] = eg->addr = d.addr;
        eg->ncands = 1;
        eg->trusted = false; /* only an L4 endpoint's configured upstream is exempt */
    }
    char ab[TP_ADDR_STRLEN];
    tp_addr_format(&eg->addr, ab, sizeof(ab));
    if (eg->ncands == 0 || tp_addr_port(&eg->addr) == 0) {
        fail(conn, 502, "destination_not_found", TP_CLOSE_UPSTREAM_FAILED, "%s has no port",
             eg->ncands ? ab : "the upstream");
        return;
    }
    size_t kept = policy_filter(conn, eg->cands, eg->ncands);
    if (kept == 0) {
        fail(conn, 403, "destination_ip_prohibited", TP_CLOSE_BLOCKED, "%s is in a special range%s",
             ab, eg->ncands > 1 ? " (and so is every address)" : "");
        return;
    }
    eg->ncands = kept;
    eg->next = 0;
    eg->nattempts = 0;
    eg->last_error = 0;
    eg->connecting = true;
    conn->connect_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.connect;
    start_attempts(conn);
}

static void run_egress_hook(tp_conn_t *conn) {
    tp_server_t *srv = conn->worker->server;
    tp_egress_t *eg = &conn->egress;
    eg->addr = eg->ncands ? eg->cands[0] : (tp_addr_t){0};
    tp__conn_trace_addr(conn, "egress.handle_connection", eg->ncands ? &eg->addr : NULL);
    tp_decision_t d = tp_allow();
    eg->deciding = true;
    if (srv->hooks.egress.handle_connection) {
        conn->in_decision = true;
        d = srv->hooks.egress.handle_connection(srv->hooks.egress.self, eg, &eg->addr);
        conn->in_decision = false;
    }
    tp__conn_decide(conn, d, egress_decided);
}

/* Orders addresses as RFC 8305 4 asks: the given order, families interleaved, starting with the
 * family of the first (preferred) address, into out (at most TP_EGRESS_MAX_ADDRS). Duplicates go.
 * Returns the count. */
static size_t interleave_into(tp_addr_t *out, const tp_addr_t *in, size_t n) {
    tp_addr_t fam[2][TP_EGRESS_MAX_ADDRS];
    size_t nf[2] = {0, 0};
    int first = n && in[0].u.sa.sa_family == AF_INET6 ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
        int f = in[i].u.sa.sa_family == AF_INET6 ? 1 : 0;
        bool dup = false;
        for (size_t j = 0; j < nf[f] && !dup; j++)
            dup = tp_addr_eq(&fam[f][j], &in[i]);
        if (!dup && nf[f] < TP_EGRESS_MAX_ADDRS)
            fam[f][nf[f]++] = in[i];
    }
    size_t m = 0;
    for (size_t i = 0; m < TP_EGRESS_MAX_ADDRS && (i < nf[0] || i < nf[1]); i++) {
        if (i < nf[first] && m < TP_EGRESS_MAX_ADDRS)
            out[m++] = fam[first][i];
        if (i < nf[!first] && m < TP_EGRESS_MAX_ADDRS)
            out[m++] = fam[!first][i];
    }
    return m;
}

static void interleave(tp_egress_t *eg, const tp_addr_t *in, size_t n) {
    tp_addr_t out[TP_EGRESS_MAX_ADDRS];
    eg->ncands = interleave_into(out, in, n);
    memcpy(eg->cands, out, eg->ncands * sizeof(tp_addr_t));
}

static void resolve(tp_conn_t *conn);
static void take_addresses(tp_conn_t *conn, const tp_dns_result_t *res);

/* A name was resolved (or answered by dns_resolve_override): the app may rework the list. */
static void resolved(tp_conn_t *conn) {
    tp_server_t *srv = conn->worker->server;
    tp_egress_t *eg = &conn->egress;
    tp__conn_trace(conn, "egress.handle_upstream_ips");
    if (srv->hooks.egress.handle_upstream_ips) {
        size_t n = eg->ncands;
        srv->hooks.egress.handle_upstream_ips(srv->hooks.egress.self, eg, eg->cands, &n,
                                              TP_EGRESS_MAX_ADDRS);
        if (conn->closing)
            return;
        eg->ncands = n > TP_EGRESS_MAX_ADDRS ? TP_EGRESS_MAX_ADDRS : n;
    }
    if (eg->ncands == 0) {
        fail(conn, 502, "dns_error", TP_CLOSE_UPSTREAM_FAILED, "%s: no address to connect to",
             eg->host);
        return;
    }
    run_egress_hook(conn);
}

static void override_decided(tp_conn_t *conn, tp_decision_t d) {
    tp_egress_t *eg = &conn->egress;
    eg->overriding = false;
    if (conn->closing)
        return;
    if (d.verdict == TP_VERDICT_BLOCK) {
        fail(conn, d.status ? d.status : 502, d.error ? d.error : "dns_error",
             TP_CLOSE_UPSTREAM_FAILED, "%s: %s", eg->host,
             d.details ? d.details : "refused by dns_resolve_override");
        return;
    }
    if (eg->override_n) { /* the hook answered: no resolver */
        interleave(eg, eg->override, eg->override_n);
        eg->override_n = 0;
        resolved(conn);
        return;
    }
    resolve(conn);
}

/*
 * The rest of a name's answer, after an early one (RFC 8305 3): addresses not seen yet go through
 * handle_upstream_ips and the policy, then join the candidates not tried yet, IPv6 first. While
 * the egress hook decides they simply join the list (its decision applies to them too); after a
 * winner or a failure they do not matter.
 */
static void more_addresses(tp_conn_t *conn, const tp_dns_result_t *res) {
    tp_egress_t *eg = &conn->egress;
    if (!eg->connecting && !eg->deciding)
        return;
    if (res->entry && !eg->dnse) {
        tp__dns_entry_ref(res->entry);
        eg->dnse = res->entry;
    }
    tp_addr_t fresh[TP_EGRESS_MAX_ADDRS];
    size_t n = 0;
    for (size_t i = 0; res->status == 0 && i < res->naddrs && n < TP_EGRESS_MAX_ADDRS; i++) {
        tp_addr_t a = res->addrs[i];
        tp_addr_set_port(&a, eg->port);
        bool known = false;
        for (size_t j = 0; j < eg->ncands && !known; j++)
            known = tp_addr_eq(&eg->cands[j], &a);
        if (!known)
            fresh[n++] = a;
    }
    tp_server_t *srv = conn->worker->server;
    if (n > 0) {
        tp__conn_trace(conn, "egress.handle_upstream_ips");
        if (srv->hooks.egress.handle_upstream_ips) {
            srv->hooks.egress.handle_upstream_ips(srv->hooks.egress.self, eg, fresh, &n,
                                                  TP_EGRESS_MAX_ADDRS);
            if (conn->closing)
                return;
            n = n > TP_EGRESS_MAX_ADDRS ? TP_EGRESS_MAX_ADDRS : n;
        }
        if (eg->connecting)
            n = policy_filter(conn, fresh, n);
    }
    if (n > 0) {
        /* The untried rest and the newcomers, interleaved; IPv6 first when it is the newcomer. */
        tp_addr_t in[(size_t)2 * TP_EGRESS_MAX_ADDRS];
        size_t m = 0, rest = eg->ncands - eg->next;
        bool fresh_first = fresh[0].u.sa.sa_family == AF_INET6;
        if (fresh_first)
            for (size_t i = 0; i < n; i++)
                in[m++] = fresh[i];
        memcpy(in + m, eg->cands + eg->next, rest * sizeof(tp_addr_t));
        m += rest;
        if (!fresh_first)
            for (size_t i = 0; i < n; i++)
                in[m++] = fresh[i];
        tp_addr_t out[TP_EGRESS_MAX_ADDRS];
        size_t k = interleave_into(out, in, m);
        if (eg->next + k > TP_EGRESS_MAX_ADDRS)
            k = TP_EGRESS_MAX_ADDRS - eg->next;
        memcpy(eg->cands + eg->next, out, k * sizeof(tp_addr_t));
        eg->ncands = eg->next + k;
    }
    if (!eg->connecting)
        return;
    if (eg->nattempts == 0) { /* every early address failed: go on with the new ones, or fail */
        start_attempts(conn);
    } else if (conn->attempt_deadline == 0 && eg->next < eg->ncands) {
        conn->attempt_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->egress.attempt_delay;
        tp__conn_rearm(conn);
    }
}

static void dns_cb(void *arg, const tp_dns_result_t *res) {
    tp_conn_t *conn = arg;
    tp_egress_t *eg = &conn->egress;
    if (res->partial) { /* one family's addresses; the query goes on for the rest */
        if (conn->closing)
            return;
        eg->dns_more = true;
        take_addresses(conn, res);
        return;
    }
    bool late = eg->dns_more;
    eg->dns_more = false;
    eg->resolving = false;
    eg->dnsq = NULL;
    if (conn->closing) {
        tp__conn_unref(conn); /* the resolver's reference; may free the closing connection */
        return;
    }
    tp__conn_unref(conn); /* not closing: the "alive" reference keeps it */
    if (late) {
        more_addresses(conn, res);
        return;
    }
    if (res->status != 0) {
        if (res->status == TP_ERR_TIMEOUT) {
            fail(conn, 504, "dns_timeout", TP_CLOSE_UPSTREAM_FAILED, "%s: %s", eg->host,
                 res->detail);
            return;
        }
        tp_failure_t f = {.status = 502,
                          .error = "dns_error",
                          .rcode = res->rcode,
                          .reason = TP_CLOSE_UPSTREAM_FAILED};
        snprintf(f.details, sizeof(f.details), "%.100s: %.50s", eg->host,
                 res->rcode ? res->rcode : res->detail);
        fail_with(conn, &f);
        return;
    }
    take_addresses(conn, res);
}

/* An answer with addresses (or the early part of one): on to handle_upstream_ips and the rest. */
static void take_addresses(tp_conn_t *conn, const tp_dns_result_t *res) {
    tp_egress_t *eg = &conn->egress;
    if (res->entry) { /* keep the cached answer, and the app's extension of it, for the hooks */
        tp__dns_entry_ref(res->entry);
        eg->dnse = res->entry;
    }
    tp_addr_t found[TP_EGRESS_MAX_ADDRS];
    size_t n = 0;
    for (size_t i = 0; i < res->naddrs && n < TP_EGRESS_MAX_ADDRS; i++) {
        found[n] = res->addrs[i];
        tp_addr_set_port(&found[n], eg->port);
        n++;
    }
    interleave(eg, found, n);
    if (eg->ncands == 0) {
        fail(conn, 502, "dns_error", TP_CLOSE_UPSTREAM_FAILED, "%s: no IPv4 or IPv6 address",
             eg->host);
        return;
    }
    resolved(conn);
}

void tp__egress_start(tp_conn_t *conn, tp_request_t *req, const char *host, size_t hostlen,
                      uint16_t port, const tp_egress_tls_t *tls, tp_egress_cb cb) {
    tp_egress_t *eg = &conn->egress;
    eg->conn = conn;
    eg->tls = tls ? *tls : (tp_egress_tls_t){0};
    eg->handshaking = false;
    eg->req = req;
    eg->cb = cb;
    eg->port = port;
    eg->trusted = req == NULL || tp__request_trusted(req); /* configured upstreams */
    eg->ncands = eg->next = eg->nattempts = eg->override_n = 0;
    tp__egress_release(conn);
    eg->overriding = eg->deciding = eg->dns_more = false;
    if (hostlen >= sizeof(eg->host))
        hostlen = sizeof(eg->host) - 1;
    memcpy(eg->host, host, hostlen);
    eg->host[hostlen] = '\0';
    if (hostlen == 0) { /* no upstream configured: the egress hook must redirect */
        run_egress_hook(conn);
        return;
    }
    if (tp_addr_parse(&eg->cands[0], eg->host, true) == 0) {
        tp_addr_set_port(&eg->cands[0], port);
        eg->ncands = 1;
        run_egress_hook(conn);
        return;
    }
    tp_server_t *srv = conn->worker->server;
    tp__conn_trace(conn, "egress.dns_resolve_override");
    if (srv->hooks.egress.dns_resolve_override) {
        eg->overriding = true;
        conn->in_decision = true;
        tp_decision_t d = srv->hooks.egress.dns_resolve_override(
            srv->hooks.egress.self, eg, (tp_str_t){eg->host, strlen(eg->host)});
        conn->in_decision = false;
        tp__conn_decide(conn, d, override_decided);
        return;
    }
    resolve(conn);
}

/* Resolves eg->host with the endpoint's resolver (c-ares on this worker's loop, cached). */
static void resolve(tp_conn_t *conn) {
    tp_egress_t *eg = &conn->egress;
    conn->refs++; /* the resolver's callback must find the connection alive */
    eg->resolving = true;
    tp_dns_query_t *q = tp__dns_resolve_early(conn->ep->dns, eg->host, dns_cb, conn);
    if (eg->resolving) /* not answered yet (a cache hit has already called back) */
        eg->dnsq = q;
}

void tp__egress_release(tp_conn_t *conn) {
    tp__dns_entry_unref(conn->egress.dnse);
    conn->egress.dnse = NULL;
}

/* ---- public accessors ---- */

void *tp_egress_dns_item_ext(const tp_egress_t *eg) { return eg->dnse ? eg->dnse->ext : NULL; }

int tp_egress_set_addresses(tp_egress_t *eg, const tp_addr_t *addrs, size_t n) {
    if (!eg->overriding)
        return TP_ERR_STATE;
    if (n > TP_EGRESS_MAX_ADDRS)
        n = TP_EGRESS_MAX_ADDRS;
    for (size_t i = 0; i < n; i++) {
        eg->override[i] = addrs[i];
        if (tp_addr_port(&addrs[i]) == 0)
            tp_addr_set_port(&eg->override[i], eg->port);
    }
    eg->override_n = n;
    return 0;
}

tp_conn_t *tp_egress_conn(const tp_egress_t *eg) { return eg->conn; }
tp_request_t *tp_egress_request(const tp_egress_t *eg) { return eg->req; }
tp_str_t tp_egress_host(const tp_egress_t *eg) { return (tp_str_t){eg->host, strlen(eg->host)}; }
uint16_t tp_egress_port(const tp_egress_t *eg) { return eg->port; }
size_t tp_egress_addresses(const tp_egress_t *eg, const tp_addr_t **addrs) {
    *addrs = eg->cands;
    return eg->ncands;
}
const void *tp__egress_app_settings(const tp_egress_t *eg) {
    return eg->conn->worker->server->cfg.app;
}
const void *tp__egress_endpoint_settings(const tp_egress_t *eg) { return eg->conn->ep->cfg->app; }
