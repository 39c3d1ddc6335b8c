/* tcp.c: the L4 on-ramp: each client connection is tunnelled to the endpoint's upstream. */
#include <stdlib.h>
#include <string.h>

#include "runtime/core.h"

static void connected(tp_conn_t *conn, const tp_failure_t *f) {
    if (conn->closing)
        return;
    if (f) {
        tp__conn_close(conn, f->reason);
        return;
    }
    tp_buf_t *stash = conn->stash; /* bytes read while the ingress decision was pending */
    conn->stash = NULL;
    tp__tunnel_start(conn, stash, stash ? stash->data : NULL, conn->stash_len);
    if (stash)
        tp__buf_unref(stash);
}

/* Splits "host:port" or "[v6]:port" (validated by the config loader). */
static void split_hostport(const char *hp, const char **host, size_t *hostlen, uint16_t *port) {
    const char *colon = strrchr(hp, ':');
    *host = hp;
    *hostlen = colon ? (size_t)(colon - hp) : strlen(hp);
    *port = colon ? (uint16_t)strtoul(colon + 1, NULL, 10) : 0;
    if (*hostlen >= 2 && hp[0] == '[' && hp[*hostlen - 1] == ']') {
        (*host)++;
        *hostlen -= 2;
    }
}

static void start(tp_conn_t *conn) {
    const char *host = "";
    size_t hostlen = 0;
    uint16_t port = 0;
    if (conn->ep->cfg->upstream)
        split_hostport(conn->ep->cfg->upstream, &host, &hostlen, &port);
    tp__egress_start(conn, NULL, host, hostlen, port, NULL, connected);
}

static void on_client_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    /* Not reading before the tunnel starts; only an error can land here. */
    if (b)
        tp__buf_unref(b);
    if (nread < 0 && nread != UV_EOF)
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
}

static void on_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (b)
        tp__buf_unref(b);
}

static void on_written(tp_conn_t *conn, int dir, int status) {}

static void on_drain(tp_conn_t *conn) {}

const tp_proto_t tp__tcp_proto = {
    .name = "tcp",
    .start = start,
    .on_client_read = on_client_read,
    .on_upstream_read = on_upstream_read,
    .on_written = on_written,
    .on_drain = on_drain,
};
