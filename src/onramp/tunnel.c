/* tunnel.c: moves bytes both ways between a client and its upstream, with backpressure. */
#include "runtime/core.h"

static void forward(tp_conn_t *conn, int dir, tp_buf_t *b, ssize_t nread) {
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)nread);
    int rc = tp__conn_write(conn, dir, &ub, 1, b, NULL);
    tp__buf_unref(b);
    if (rc != 0)
        return;
    if (conn->queued[dir] > conn->ep->cfg->high_watermark) {
        if (dir == TP_TO_UPSTREAM)
            tp__conn_client_read(conn, false);
        else
            tp__conn_upstream_read(conn, false);
    }
}

static void check_done(tp_conn_t *conn) {
    if (conn->client_eof && conn->up && conn->up->eof && conn->queued[TP_TO_CLIENT] == 0 &&
        conn->queued[TP_TO_UPSTREAM] == 0)
        tp__conn_close(conn, TP_CLOSE_DONE);
}

static void on_client_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (nread > 0) {
        forward(conn, TP_TO_UPSTREAM, b, nread);
        return;
    }
    if (nread == UV_EOF) {
        tp__conn_shutdown(conn, TP_TO_UPSTREAM);
        check_done(conn);
        return;
    }
    tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
}

static void on_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (nread > 0) {
        forward(conn, TP_TO_CLIENT, b, nread);
        return;
    }
    if (nread == UV_EOF) {
        tp__conn_shutdown(conn, TP_TO_CLIENT);
        check_done(conn);
        return;
    }
    tp__conn_close(conn, TP_CLOSE_UPSTREAM_RESET);
}

static void on_written(tp_conn_t *conn, int dir, int status) {
    if (status != 0) {
        tp__conn_close(conn, dir == TP_TO_CLIENT ? TP_CLOSE_CLIENT_RESET : TP_CLOSE_UPSTREAM_RESET);
        return;
    }
    if (conn->queued[dir] <= conn->ep->cfg->high_watermark / 2) {
        if (dir == TP_TO_UPSTREAM)
            tp__conn_client_read(conn, true);
        else
            tp__conn_upstream_read(conn, true);
    }
    check_done(conn);
}

static void on_drain(tp_conn_t *conn) {
    /* Tunnels run on until their ends close them or the drain deadline passes. */
}

const tp_proto_t tp__tunnel_proto = {
    .name = "tunnel",
    .on_client_read = on_client_read,
    .on_upstream_read = on_upstream_read,
    .on_written = on_written,
    .on_drain = on_drain,
};

void tp__tunnel_start(tp_conn_t *conn, tp_buf_t *early, const char *data, size_t len) {
    conn->proto = &tp__tunnel_proto;
    /* The per-direction idle clocks start with the tunnel. */
    conn->last_from_client = conn->last_from_upstream = uv_now(&conn->worker->loop);
    tp__conn_rearm(conn);
    if (early && len > 0) {
        uv_buf_t ub = uv_buf_init((char *)data, (unsigned)len);
        if (tp__conn_write(conn, TP_TO_UPSTREAM, &ub, 1, early, NULL) != 0)
            return;
    }
    tp__conn_upstream_read(conn, true);
    if (conn->client_eof)
        tp__conn_shutdown(conn, TP_TO_UPSTREAM);
    else if (conn->queued[TP_TO_UPSTREAM] <= conn->ep->cfg->high_watermark)
        tp__conn_client_read(conn, true);
}
