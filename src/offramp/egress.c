/* egress.c: the TCP off-ramp's set-up: resolve, egress hook, destination policy, connect. */
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "runtime/core.h"
#include "runtime/log.h"

static void fail(tp_conn_t *conn, uint16_t status, const char *error, tp_close_reason_t reason,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void fail(tp_conn_t *conn, uint16_t status, const char *error, tp_close_reason_t reason,
                 const char *fmt, ...) {
    tp_egress_t *eg = &conn->egress;
    tp_failure_t f = {.status = status, .error = error, .reason = reason};
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f.details, sizeof(f.details), fmt, ap);
        va_end(ap);
    }
    eg->resolving = eg->connecting = false;
    conn->connect_deadline = 0;
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "egress failed");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "host", eg->host);
    tp__log_u64(&l, "port", eg->port);
    tp__log_str(&l, "error", error);
    tp__log_str(&l, "details", f.details);
    tp__log_end(&l);
    tp__conn_upstream_close(conn);
    eg->cb(conn, &f);
}

static void connect_cb(uv_connect_t *req, int status) {
    tp_upstream_t *up = (tp_upstream_t *)req->handle->data;
    tp_conn_t *conn = up->conn;
    tp_egress_t *eg = &conn->egress;
    if (conn->closing || conn->up != up || !eg->connecting)
        return; /* cancelled: the handle is closing */
    eg->connecting = false;
    conn->connect_deadline = 0;
    tp__conn_rearm(conn);
    char ab[TP_ADDR_STRLEN];
    tp_addr_format(&eg->addr, ab, sizeof(ab));
    if (status != 0) {
        if (status == UV_ECONNREFUSED)
            fail(conn, 502, "connection_refused", TP_CLOSE_UPSTREAM_FAILED, "%s refused", ab);
        else if (status == UV_ENETUNREACH || status == UV_EHOSTUNREACH)
            fail(conn, 502, "destination_ip_unroutable", TP_CLOSE_UPSTREAM_FAILED, "%s: %s", ab,
                 uv_strerror(status));
        else if (status == UV_ETIMEDOUT)
            fail(conn, 504, "connection_timeout", TP_CLOSE_UPSTREAM_FAILED, "%s", ab);
        else
            fail(conn, 502, "proxy_internal_error", TP_CLOSE_UPSTREAM_FAILED, "%s: %s", ab,
                 uv_strerror(status));
        return;
    }
    up->addr = eg->addr;
    memcpy(up->host, eg->host, sizeof(up->host));
    up->port = eg->port;
    uv_tcp_nodelay(&up->tcp, 1);
    tp_server_t *srv = conn->worker->server;
    tp__conn_trace(conn, "egress.handle_connection_established");
    if (srv->hooks.egress.handle_connection_established)
        srv->hooks.egress.handle_connection_established(srv->hooks.egress.self, eg, &eg->addr);
    if (conn->closing)
        return;
    eg->cb(conn, NULL);
}

void tp__egress_cancel(tp_conn_t *conn) {
    tp_egress_t *eg = &conn->egress;
    if (!eg->connecting)
        return;
    char ab[TP_ADDR_STRLEN];
    tp_addr_format(&eg->addr, ab, sizeof(ab));
    fail(conn, 504, "connection_timeout", TP_CLOSE_UPSTREAM_FAILED, "no answer from %s", ab);
}

static void egress_decided(tp_conn_t *conn, tp_decision_t d) {
    tp_egress_t *eg = &conn->egress;
    if (conn->closing)
        return;
    if (d.verdict == TP_VERDICT_BLOCK) {
        tp_failure_t f = {.status = d.status ? d.status : 403,
                          .error = d.error ? d.error : "destination_ip_prohibited",
                          .reason = TP_CLOSE_BLOCKED};
        if (d.details)
            snprintf(f.details, sizeof(f.details), "%s", d.details);
        eg->cb(conn, &f);
        return;
    }
    if (d.verdict == TP_VERDICT_REDIRECT) {
        eg->addr = d.addr;
        eg->trusted = false; /* only an L4 endpoint's configured upstream is exempt */
    }
    char ab[TP_ADDR_STRLEN];
    tp_addr_format(&eg->addr, ab, sizeof(ab));
    if (tp_addr_port(&eg->addr) == 0) {
        fail(conn, 502, "destination_not_found", TP_CLOSE_UPSTREAM_FAILED, "%s has no port", ab);
        return;
    }
    /* The policy judges the address actually connected to, after hooks and resolution, for
     * destinations a client chose (an L4 endpoint's configured upstream is the operator's). */
    if (!eg->trusted && tp_addr_is_special(&eg->addr) &&
        !tp_cidr_set_contains(conn->ep->cfg->allow_destinations, &eg->addr)) {
        fail(conn, 403, "destination_ip_prohibited", TP_CLOSE_BLOCKED, "%s is in a special range",
             ab);
        return;
    }
    tp_upstream_t *up = tp__conn_upstream_new(conn);
    if (!up) {
        fail(conn, 502, "proxy_internal_error", TP_CLOSE_INTERNAL, "out of memory");
        return;
    }
    int rc = uv_tcp_connect(&eg->connect_req, &up->tcp, &eg->addr.u.sa, connect_cb);
    if (rc != 0) {
        fail(conn, 502, rc == UV_ENETUNREACH ? "destination_ip_unroutable" : "proxy_internal_error",
             TP_CLOSE_UPSTREAM_FAILED, "%s: %s", ab, uv_strerror(rc));
        return;
    }
    eg->connecting = true;
    conn->connect_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.connect;
    tp__conn_rearm(conn);
}

static void run_egress_hook(tp_conn_t *conn) {
    tp_server_t *srv = conn->worker->server;
    tp_egress_t *eg = &conn->egress;
    tp__conn_trace(conn, "egress.handle_connection");
    tp_decision_t d = tp_allow();
    if (srv->hooks.egress.handle_connection) {
        conn->in_decision = true;
        d = srv->hooks.egress.handle_connection(srv->hooks.egress.self, eg, &eg->addr);
        conn->in_decision = false;
    }
    tp__conn_decide(conn, d, egress_decided);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    tp_conn_t *conn = req->data;
    tp_egress_t *eg = &conn->egress;
    eg->resolving = false;
    if (status == UV_ECANCELED || conn->closing) {
        uv_freeaddrinfo(res);
        tp__conn_unref(conn); /* the resolver's reference; may free the closing connection */
        return;
    }
    tp__conn_unref(conn); /* not closing: the "alive" reference keeps it */
    if (status != 0 || !res) {
        uv_freeaddrinfo(res);
        if (status == UV_EAI_NONAME || status == UV_EAI_NODATA)
            fail(conn, 502, "dns_error", TP_CLOSE_UPSTREAM_FAILED, "%s: no such name", eg->host);
        else if (status == UV_EAI_AGAIN)
            fail(conn, 504, "dns_timeout", TP_CLOSE_UPSTREAM_FAILED, "%s: %s", eg->host,
                 uv_strerror(status));
        else
            fail(conn, 502, "dns_error", TP_CLOSE_UPSTREAM_FAILED, "%s: %s", eg->host,
                 uv_strerror(status));
        return;
    }
    memset(&eg->addr, 0, sizeof(eg->addr));
    memcpy(&eg->addr.u, res->ai_addr, res->ai_addrlen);
    tp_addr_set_port(&eg->addr, eg->port);
    uv_freeaddrinfo(res);
    run_egress_hook(conn);
}

void tp__egress_start(tp_conn_t *conn, tp_request_t *req, const char *host, size_t hostlen,
                      uint16_t port, tp_egress_cb cb) {
    tp_egress_t *eg = &conn->egress;
    eg->conn = conn;
    eg->req = req;
    eg->cb = cb;
    eg->trusted = req == NULL; /* L4: the configured upstream */
    eg->port = port;
    if (hostlen >= sizeof(eg->host))
        hostlen = sizeof(eg->host) - 1;
    memcpy(eg->host, host, hostlen);
    eg->host[hostlen] = '\0';
    if (hostlen == 0) { /* no upstream configured: the egress hook must redirect */
        memset(&eg->addr, 0, sizeof(eg->addr));
        run_egress_hook(conn);
        return;
    }
    if (tp_addr_parse(&eg->addr, eg->host, true) == 0) {
        tp_addr_set_port(&eg->addr, port);
        run_egress_hook(conn);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    eg->gai.data = conn;
    conn->refs++; /* the resolver's callback must find the connection alive */
    int rc = uv_getaddrinfo(&conn->worker->loop, &eg->gai, gai_cb, eg->host, NULL, &hints);
    if (rc != 0) {
        conn->refs--;
        fail(conn, 502, "dns_error", TP_CLOSE_UPSTREAM_FAILED, "%s: %s", eg->host, uv_strerror(rc));
        return;
    }
    eg->resolving = true;
}

/* ---- public accessors ---- */

tp_conn_t *tp_egress_conn(const tp_egress_t *eg) { return eg->conn; }
tp_request_t *tp_egress_request(const tp_egress_t *eg) { return eg->req; }
tp_str_t tp_egress_host(const tp_egress_t *eg) { return (tp_str_t){eg->host, strlen(eg->host)}; }
uint16_t tp_egress_port(const tp_egress_t *eg) { return eg->port; }
const void *tp__egress_app_settings(const tp_egress_t *eg) {
    return eg->conn->worker->server->cfg.app;
}
const void *tp__egress_endpoint_settings(const tp_egress_t *eg) { return eg->conn->ep->cfg->app; }
