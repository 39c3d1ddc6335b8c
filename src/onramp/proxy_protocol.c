/* proxy_protocol.c: the PROXY protocol on-ramp stage (read, check, hook) and the upstream sender.
 */
#include <stdlib.h>
#include <string.h>

#include "proxyproto/parse.h"
#include "runtime/core.h"
#include "runtime/log.h"

void tp__pp_log_refused(tp_conn_t *conn, const char *reason) {
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_WARN, "proxy protocol refused");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "endpoint", conn->ep->cfg->name);
    tp__log_str(&l, "peer", conn->peer_str);
    tp__log_str(&l, "reason", reason);
    tp__log_end(&l);
}

static void refuse(tp_conn_t *conn, const char *reason) {
    tp__pp_log_refused(conn, reason);
    tp__conn_close(conn, TP_CLOSE_PROTOCOL_ERROR);
}

static unsigned accept_mask(const tp_conn_t *conn) {
    switch (conn->ep->cfg->proxy_protocol) {
    case TP_PP_MODE_V1: return TP_PP_V1;
    case TP_PP_MODE_V2: return TP_PP_V2;
    default: return TP_PP_V1 | TP_PP_V2;
    }
}

static void decided(tp_conn_t *conn, tp_decision_t d) {
    if (conn->closing)
        return;
    if (d.verdict != TP_VERDICT_ALLOW) {
        tp__log_msg(TP_LOG_INFO, "connection blocked", "conn %llu by proxy_protocol hook",
                    (unsigned long long)conn->id);
        tp__conn_close(conn, TP_CLOSE_BLOCKED);
        return;
    }
    tp__conn_begin(conn);
}

/* Parses what the stash holds; acts once the header is complete or broken. */
static void try_parse(tp_conn_t *conn) {
    tp_proxy_header_t hdr;
    const char *reason = NULL;
    int rc = tp__pp_parse((const uint8_t *)conn->stash->data, conn->stash_len, accept_mask(conn),
                          TP_PP_V2_DEFAULT_MAX, &hdr, NULL, 0, &reason);
    if (rc < 0) {
        refuse(conn, reason ? reason : tp_strerror(rc));
        return;
    }
    if (rc == 0) {
        if (conn->client_eof)
            refuse(conn, "the client closed before a complete PROXY header");
        else if (conn->stash_len == conn->stash->cap)
            refuse(conn, "PROXY header longer than the read buffer");
        return; /* more bytes to come */
    }
    /* Keep the header's bytes for the connection's life and parse them again there, so that the
     * views an app sees stay valid; what follows is the client's payload. */
    size_t len = (size_t)rc;
    tp_pp_conn_t *pp = malloc(sizeof(*pp) + len);
    if (!pp) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return;
    }
    pp->len = len;
    memcpy(pp->raw, conn->stash->data, len);
    if (tp__pp_parse(pp->raw, len, accept_mask(conn), TP_PP_V2_DEFAULT_MAX, &pp->hdr, pp->tlvs,
                     sizeof(pp->tlvs) / sizeof(pp->tlvs[0]), &reason) != rc) {
        free(pp);
        refuse(conn, reason ? reason : "more TLVs than Turnpike keeps (32)");
        return;
    }
    conn->pp = pp;
    conn->stash_len -= len;
    memmove(conn->stash->data, conn->stash->data + len, conn->stash_len);
    if (conn->stash_len == 0) {
        tp__buf_unref(conn->stash);
        conn->stash = NULL;
    }
    tp__conn_client_read(conn, false);
    conn->stashing = false;
    conn->header_deadline = 0;
    /* A PROXY command names the client: hooks, logs and policies see that address. LOCAL (a
     * health check of the proxy itself) and unspecified families keep the socket's. */
    if (pp->hdr.command == TP_PP_CMD_PROXY &&
        (pp->hdr.family == TP_PP_FAMILY_INET || pp->hdr.family == TP_PP_FAMILY_INET6)) {
        conn->peer = pp->hdr.src;
        conn->local = pp->hdr.dst;
        tp_addr_format(&conn->peer, conn->peer_str, sizeof(conn->peer_str));
    }
    tp_server_t *srv = conn->worker->server;
    tp__conn_trace(conn, "proxy_protocol.handle_connection");
    tp_decision_t d = tp_allow();
    if (srv->hooks.proxy_protocol.handle_connection) {
        conn->in_decision = true;
        d = srv->hooks.proxy_protocol.handle_connection(srv->hooks.proxy_protocol.self, conn,
                                                        &pp->hdr);
        conn->in_decision = false;
    }
    tp__conn_decide(conn, d, decided);
    tp__conn_rearm(conn);
}

static void on_client_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (nread > 0) { /* the first read: its slab becomes the stash, later reads fill it */
        conn->stash = b;
        conn->stash_len = (size_t)nread;
        if (conn->stash_len == b->cap)
            tp__conn_client_read(conn, false);
        try_parse(conn);
    } else if (nread == UV_EOF) {
        refuse(conn, "the client closed before sending a PROXY header");
    } else {
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
    }
}

static void on_stash(tp_conn_t *conn) {
    if (conn->pp || conn->closing)
        return;
    try_parse(conn);
}

static void on_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (b)
        tp__buf_unref(b);
}

static void on_written(tp_conn_t *conn, int dir, int status) {}

static void on_drain(tp_conn_t *conn) { tp__conn_close(conn, TP_CLOSE_SHUTDOWN); }

const tp_proto_t tp__pp_proto = {
    .name = "proxy_protocol",
    .on_client_read = on_client_read,
    .on_stash = on_stash,
    .on_upstream_read = on_upstream_read,
    .on_written = on_written,
    .on_drain = on_drain,
};

void tp__pp_start(tp_conn_t *conn) {
    conn->proto = &tp__pp_proto;
    conn->stashing = true;
    conn->header_deadline = uv_now(&conn->worker->loop) + conn->ep->cfg->timeouts.proxy_protocol;
    tp__conn_client_read(conn, true);
}

int tp__pp_send_upstream(tp_conn_t *conn) {
    int mode = conn->ep->cfg->egress.send_proxy_protocol;
    if (mode == TP_PP_NONE)
        return 0;
    const tp_addr_t *src = &conn->peer, *dst = &conn->local;
    if (src->u.sa.sa_family != dst->u.sa.sa_family) /* a v4 client on a v6 socket, say */
        src = dst = NULL;
    uint8_t out[TP_PP_V2_DEFAULT_MAX];
    int n;
    if (mode == TP_PP_MODE_V1) {
        n = tp__pp_encode_v1((char *)out, sizeof(out), src, dst);
    } else {
        /* v2 passes on what the incoming header said about the client's TLS and identity. */
        tp_pp_tlv_t tlvs[3];
        size_t ntlvs = 0;
        const tp_proxy_header_t *in = conn->pp ? &conn->pp->hdr : NULL;
        if (in && in->alpn.ptr)
            tlvs[ntlvs++] = (tp_pp_tlv_t){TP_PP_TLV_ALPN, in->alpn};
        if (in && in->authority.ptr)
            tlvs[ntlvs++] = (tp_pp_tlv_t){TP_PP_TLV_AUTHORITY, in->authority};
        if (in && in->unique_id.ptr)
            tlvs[ntlvs++] = (tp_pp_tlv_t){TP_PP_TLV_UNIQUE_ID, in->unique_id};
        n = tp__pp_encode_v2(out, sizeof(out), src ? TP_PP_CMD_PROXY : TP_PP_CMD_LOCAL, src, dst,
                             tlvs, ntlvs, true);
    }
    if (n < 0) {
        tp__log_msg(TP_LOG_ERROR, "cannot encode a PROXY header", "conn %llu: %s",
                    (unsigned long long)conn->id, tp_strerror(n));
        return n;
    }
    return tp__conn_write_copy(conn, TP_TO_UPSTREAM, (const char *)out, (size_t)n);
}
