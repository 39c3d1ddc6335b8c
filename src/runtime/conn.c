/* conn.c: an ingress connection's life: accept, ingress hooks, reads, writes, deadlines, close. */
#include <stdlib.h>
#include <string.h>

#include "runtime/core.h"
#include "runtime/log.h"
#include "tls/tls.h"

/* A write in flight: the slabs it references and the heap blocks it frees when done. */
struct tp_wreq {
    uv_write_t req;
    tp_conn_t *conn;
    struct tp_wreq *next_free;
    size_t len;
    int dir;
    unsigned nholds, nheaps;
    tp_buf_t *holds[TP_BATCH_BUFS];
    char *heaps[TP_BATCH_BUFS];
};

static void batch_drop(tp_conn_t *conn, int dir);

/* ---- tracing ---- */

void tp__conn_trace_addr(tp_conn_t *conn, const char *hook, const tp_addr_t *addr) {
    if (!conn->worker->server->cfg.runtime.trace_hooks)
        return;
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_INFO, "hook");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "hook", hook);
    tp__log_str(&l, "peer", conn->peer_str);
    if (addr) {
        char ab[TP_ADDR_STRLEN];
        tp__log_str(&l, "upstream", tp_addr_format(addr, ab, sizeof(ab)));
    }
    tp__log_end(&l);
}

void tp__conn_trace(tp_conn_t *conn, const char *hook) { tp__conn_trace_addr(conn, hook, NULL); }

/* ---- deadlines ---- */

static void timer_cb(uv_timer_t *t);

void tp__conn_touch(tp_conn_t *conn) { conn->last_activity = uv_now(&conn->worker->loop); }

static uint64_t idle_timeout(const tp_conn_t *conn) {
    /* A session's ingress connection has no bytes of its own: QUIC keeps its idle time. */
    return conn->vc && conn->vc->session ? 0 : conn->ep->cfg->timeouts.idle;
}

void tp__conn_rearm(tp_conn_t *conn) {
    if (conn->closing)
        return;
    uint64_t now = uv_now(&conn->worker->loop);
    uint64_t next = 0;
    const tp_timeouts_cfg_t *to = &conn->ep->cfg->timeouts;
    uint64_t cands[9] = {conn->header_deadline, conn->connect_deadline, conn->pending_deadline,
                         conn->attempt_deadline};
    cands[8] = conn->drain_deadline;
    uint64_t idle = idle_timeout(conn);
    if (idle)
        cands[4] = conn->last_activity + idle;
    if (conn->proto == &tp__tunnel_proto) {
        if (to->tunnel_idle_client)
            cands[5] = conn->last_from_client + to->tunnel_idle_client;
        if (to->tunnel_idle_upstream)
            cands[6] = conn->last_from_upstream + to->tunnel_idle_upstream;
    }
    if (to->max_lifetime)
        cands[7] = conn->start_ms + to->max_lifetime;
    for (int i = 0; i < 9; i++)
        if (cands[i] && (next == 0 || cands[i] < next))
            next = cands[i];
    /* An armed timer due no later than needed is kept: when it fires, timer_cb() looks at the
     * deadlines again. That saves a timer-heap update per request on the hot path. */
    if (next == 0 || (conn->timer_due && conn->timer_due <= next))
        return;
    conn->timer_due = next > now ? next : now;
    uv_timer_start(&conn->timer, timer_cb, next > now ? next - now : 0, 0);
}

static void timer_cb(uv_timer_t *t) {
    tp_conn_t *conn = t->data;
    uint64_t now = uv_now(&conn->worker->loop);
    conn->timer_due = 0;
    if (conn->pending_deadline && now >= conn->pending_deadline) {
        conn->pending_deadline = 0;
        void (*cont)(tp_conn_t *, tp_decision_t) = conn->pending_cont;
        tp__conn_pending_release(conn);
        tp_decision_t d = tp_block(503, "proxy_internal_error");
        d.details = "decision timed out";
        tp__log_msg(TP_LOG_WARN, "decision timed out", "conn %llu", (unsigned long long)conn->id);
        if (cont)
            cont(conn, d);
        tp__conn_rearm(conn);
        return;
    }
    if (conn->header_deadline && now >= conn->header_deadline) {
        conn->header_deadline = 0;
        if (conn->proto == &tp__tls_proto)
            tp__tls_onramp_timeout(conn);
        else
            tp__http_proxy_timeout(conn, 0);
        tp__conn_rearm(conn);
        return;
    }
    if (conn->connect_deadline && now >= conn->connect_deadline) {
        conn->connect_deadline = 0;
        tp__egress_cancel(conn);
        tp__conn_rearm(conn);
        return;
    }
    if (conn->attempt_deadline && now >= conn->attempt_deadline) {
        conn->attempt_deadline = 0;
        tp__egress_next_attempt(conn);
        tp__conn_rearm(conn);
        return;
    }
    const tp_timeouts_cfg_t *to = &conn->ep->cfg->timeouts;
    if (conn->drain_deadline && now >= conn->drain_deadline) {
        tp__conn_close(conn, TP_CLOSE_SHUTDOWN);
        return;
    }
    if (to->max_lifetime && now >= conn->start_ms + to->max_lifetime) {
        tp__conn_close(conn, TP_CLOSE_LIFETIME);
        return;
    }
    uint64_t idle = idle_timeout(conn);
    if (idle && now >= conn->last_activity + idle && !conn->pending) {
        tp__conn_close(conn, TP_CLOSE_IDLE_TIMEOUT);
        return;
    }
    if (conn->proto == &tp__tunnel_proto) {
        if (to->tunnel_idle_client && now >= conn->last_from_client + to->tunnel_idle_client) {
            tp__conn_close(conn, TP_CLOSE_CLIENT_IDLE);
            return;
        }
        if (to->tunnel_idle_upstream &&
            now >= conn->last_from_upstream + to->tunnel_idle_upstream) {
            tp__conn_close(conn, TP_CLOSE_UPSTREAM_IDLE);
            return;
        }
    }
    tp__conn_rearm(conn);
}

/* ---- reading ---- */

static const tp_proto_t waiting_proto;

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    tp_conn_t *conn = h->data;
    if (conn->stash && conn->stashing) {
        /* Waiting for a decision or a PROXY header: keep filling the one stash slab. */
        buf->base = conn->stash->data + conn->stash_len;
        buf->len = conn->stash->cap - conn->stash_len;
        return;
    }
    tp_buf_t *b = tp__buf_get(&conn->worker->bufs);
    if (!b) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = b->data;
    buf->len = b->cap;
}

/*
 * Busy polling (runtime.busy_poll_us). A proxy that does less work per request than its peers
 * catches up and sleeps in epoll_wait between every two requests; each sleep costs the peer that
 * wakes it (measured on the 2-core loopback bench: 0.55 sleeps per request, the origin and wrk
 * spending 15-20% more CPU per request than behind HAProxy or h2o, 15% of the machine idle).
 * After a read the worker keeps polling without sleeping for a moment (an active idle handle makes
 * libuv poll with a zero timeout), so a peer's next bytes find it awake.
 */
static void spin_cb(uv_idle_t *h) {
    tp_worker_t *w = h->data;
    if (uv_hrtime() - w->busy_ns > w->spin_ns || w->draining)
        uv_idle_stop(h);
}

void tp__worker_busy(tp_worker_t *w) {
    if (!w->spin_ns)
        return;
    w->busy_ns = uv_hrtime();
    if (!uv_is_active((uv_handle_t *)&w->spin))
        uv_idle_start(&w->spin, spin_cb);
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tp_conn_t *conn = s->data;
    if (conn->stash && buf->base == conn->stash->data + conn->stash_len) {
        /* A read into the stash's free room (pending ingress decision). */
        if (nread > 0) {
            conn->stats.bytes_from_client += (uint64_t)nread;
            conn->stash_len += (size_t)nread;
            if (conn->stash_len == conn->stash->cap)
                tp__conn_client_read(conn, false);
        } else if (nread == 0) {
            return;
        } else {
            if (nread == UV_EOF)
                conn->client_eof = true;
            tp__conn_client_read(conn, false);
            if (nread != UV_EOF) {
                tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
                return;
            }
        }
        if (conn->proto->on_stash)
            conn->proto->on_stash(conn);
        return;
    }
    tp_buf_t *b = buf->base ? tp__buf_of(buf->base) : NULL;
    if (nread == 0 || conn->closing) {
        if (b)
            tp__buf_unref(b);
        return;
    }
    if (nread > 0) {
        conn->stats.bytes_from_client += (uint64_t)nread;
        tp__conn_touch(conn);
        conn->last_from_client = conn->last_activity;
    } else {
        if (b)
            tp__buf_unref(b);
        b = NULL;
        if (nread == UV_EOF)
            conn->client_eof = true;
        if (conn->client_reading) {
            uv_read_stop(s);
            conn->client_reading = false;
        }
    }
    tp__worker_busy(conn->worker);
    conn->proto->on_client_read(conn, b, nread);
}

void tp__conn_client_read(tp_conn_t *conn, bool on) {
    if (conn->closing || conn->client_eof || on == conn->client_reading)
        return;
    if (conn->vc) {
        conn->client_reading = on;
        tp__vc_read(conn, on);
        return;
    }
    if (conn->tls) { /* the stream reads the socket; the protocol gets plaintext */
        conn->client_reading = on;
        tp__tls_read(conn->tls, on);
        return;
    }
    if (on) {
        if (uv_read_start((uv_stream_t *)&conn->client, alloc_cb, client_read_cb) == 0)
            conn->client_reading = true;
    } else {
        uv_read_stop((uv_stream_t *)&conn->client);
        conn->client_reading = false;
    }
}

static void upstream_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tp_upstream_t *up = s->data;
    tp_conn_t *conn = up->conn;
    tp_buf_t *b = buf->base ? tp__buf_of(buf->base) : NULL;
    if (nread == 0 || conn->closing || conn->up != up) {
        if (b)
            tp__buf_unref(b);
        return;
    }
    if (nread > 0) {
        conn->stats.bytes_from_upstream += (uint64_t)nread;
        tp__conn_touch(conn);
        conn->last_from_upstream = conn->last_activity;
    } else {
        if (b)
            tp__buf_unref(b);
        b = NULL;
        if (nread == UV_EOF)
            up->eof = true;
        if (up->reading) {
            uv_read_stop(s);
            up->reading = false;
        }
    }
    tp__worker_busy(conn->worker);
    conn->proto->on_upstream_read(conn, b, nread);
}

static void upstream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    tp_upstream_t *up = h->data;
    tp_buf_t *b = tp__buf_get(&up->conn->worker->bufs);
    buf->base = b ? b->data : NULL;
    buf->len = b ? b->cap : 0;
}

void tp__conn_upstream_read(tp_conn_t *conn, bool on) {
    tp_upstream_t *up = conn->up;
    if (!up || conn->closing || up->eof || on == up->reading)
        return;
    if (up->tls) {
        up->reading = on;
        tp__tls_read(up->tls, on);
        return;
    }
    if (on) {
        if (uv_read_start((uv_stream_t *)&up->tcp, upstream_alloc_cb, upstream_read_cb) == 0)
            up->reading = true;
    } else {
        uv_read_stop((uv_stream_t *)&up->tcp);
        up->reading = false;
    }
}

/* ---- upstream handles ---- */

static void upstream_close_cb(uv_handle_t *h) {
    tp_upstream_t *up = h->data;
    tp_conn_t *conn = up->conn;
    tp__tls_free(up->tls);
    free(up);
    if (conn) /* NULL once handed to the pool */
        tp__conn_unref(conn);
}

tp_upstream_t *tp__conn_upstream_detach(tp_conn_t *conn) {
    tp_upstream_t *up = conn->up;
    if (!up || conn->closing || up->eof || conn->queued[TP_TO_UPSTREAM] || up->shut ||
        (up->tls && tp__conn_corked(conn, TP_TO_UPSTREAM)))
        return NULL;
    /* A TLS one goes with its session, which the pool reads through while it is parked. */
    if (up->tls && !tp__tls_park(up->tls))
        return NULL;
    batch_drop(conn, TP_TO_UPSTREAM);
    conn->up = NULL;
    up->conn = NULL;
    tp__conn_unref(conn); /* the upstream's reference: the "alive" one keeps conn */
    return up;
}

void tp__conn_upstream_attach(tp_conn_t *conn, tp_upstream_t *up) {
    up->conn = conn;
    conn->refs++;
    tp__conn_upstream_adopt(conn, up);
}

tp_upstream_t *tp__upstream_new(tp_conn_t *conn, int family) {
    tp_upstream_t *up = calloc(1, sizeof(*up));
    if (!up)
        return NULL;
    up->conn = conn;
    /* The socket exists at once, so options (SO_MARK, bind) can be set before connect; family 0
     * makes no socket (one handed over by an app is opened into it). */
    if ((family ? uv_tcp_init_ex(&conn->worker->loop, &up->tcp, (unsigned)family)
                : uv_tcp_init(&conn->worker->loop, &up->tcp)) != 0) {
        free(up);
        return NULL;
    }
    up->tcp.data = up;
    conn->refs++;
    return up;
}

void tp__upstream_discard(tp_upstream_t *up) {
    uv_close((uv_handle_t *)&up->tcp, upstream_close_cb);
}

void tp__conn_upstream_adopt(tp_conn_t *conn, tp_upstream_t *up) {
    tp__conn_upstream_close(conn);
    conn->up = up;
}

void tp__conn_upstream_close(tp_conn_t *conn) {
    tp_upstream_t *up = conn->up;
    if (!up)
        return;
    if (up->tls) /* a clean end of the TLS stream when nothing is left to write */
        tp__tls_close_notify(up->tls);
    batch_drop(conn, TP_TO_UPSTREAM);
    conn->up = NULL;
    conn->queued[TP_TO_UPSTREAM] = 0; /* its writes are cancelled with it */
    uv_close((uv_handle_t *)&up->tcp, upstream_close_cb);
}

/* ---- writing ---- */

static struct tp_wreq *wreq_get(tp_worker_t *w) {
    struct tp_wreq *r = w->free_wreqs;
    if (r)
        w->free_wreqs = r->next_free;
    else if (!(r = malloc(sizeof(*r))))
        return NULL;
    r->nholds = r->nheaps = 0;
    r->len = 0;
    return r;
}

static void wreq_put(tp_worker_t *w, struct tp_wreq *r) {
    for (unsigned i = 0; i < r->nholds; i++)
        tp__buf_unref(r->holds[i]);
    for (unsigned i = 0; i < r->nheaps; i++)
        free(r->heaps[i]);
    r->next_free = w->free_wreqs;
    w->free_wreqs = r;
}

void tp__worker_free_wreqs(tp_worker_t *w) {
    while (w->free_wreqs) {
        struct tp_wreq *r = w->free_wreqs;
        w->free_wreqs = r->next_free;
        free(r);
    }
}

static void count_written(tp_conn_t *conn, int dir, size_t n) {
    if (dir == TP_TO_CLIENT)
        conn->stats.bytes_to_client += n;
    else
        conn->stats.bytes_to_upstream += n;
}

static void write_cb(uv_write_t *req, int status) {
    struct tp_wreq *r = (struct tp_wreq *)req;
    tp_conn_t *conn = r->conn;
    int dir = r->dir;
    size_t len = r->len;
    bool stale =
        dir == TP_TO_UPSTREAM && (conn->up == NULL || (uv_stream_t *)&conn->up->tcp != req->handle);
    wreq_put(conn->worker, r);
    if (stale || conn->closing)
        return;
    conn->queued[dir] -= len;
    if (status == 0) {
        count_written(conn, dir, len);
        tp__conn_touch(conn);
    }
    conn->proto->on_written(conn, dir, status);
}

static uv_stream_t *stream_of(tp_conn_t *conn, int dir) {
    if (dir == TP_TO_CLIENT)
        return (uv_stream_t *)&conn->client;
    return conn->up ? (uv_stream_t *)&conn->up->tcp : NULL;
}

/*
 * Sends bytes already counted in queued[dir]: first straight to the socket (no request, no
 * callback, no epoll change in the common case), then whatever is left as a libuv write request.
 * Returns 1 when all went at once, 0 when a request is in flight, or a negative tp_err_t.
 */
static int submit(tp_conn_t *conn, int dir, struct tp_wreq *r, const uv_buf_t *bufs, unsigned n) {
    if (dir == TP_TO_CLIENT && conn->vc) { /* the transport copies; what it cannot take waits */
        conn->queued[dir] -= r->len;
        r->len = 0;
        int rc = tp__vc_write(conn, bufs, n); /* before the request lets go of the bytes */
        wreq_put(conn->worker, r);
        if (rc != 0) {
            tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
            return TP_ERR_IO;
        }
        return 1;
    }
    uv_stream_t *s = stream_of(conn, dir);
    int w = uv_try_write(s, bufs, n);
    if (w < 0 && w != UV_EAGAIN) {
        conn->queued[dir] -= r->len;
        r->len = 0;
        wreq_put(conn->worker, r);
        tp__conn_close(conn, dir == TP_TO_CLIENT ? TP_CLOSE_CLIENT_RESET : TP_CLOSE_UPSTREAM_RESET);
        return TP_ERR_IO;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    if (done) {
        count_written(conn, dir, done);
        conn->queued[dir] -= done;
        r->len -= done;
        tp__conn_touch(conn);
    }
    if (r->len == 0) {
        wreq_put(conn->worker, r);
        return 1;
    }
    uv_buf_t rest[TP_BATCH_BUFS];
    unsigned m = 0;
    for (unsigned i = 0; i < n; i++) {
        if (done >= bufs[i].len) {
            done -= bufs[i].len;
            continue;
        }
        rest[m] = uv_buf_init(bufs[i].base + done, (unsigned)(bufs[i].len - done));
        done = 0;
        m++;
    }
    r->conn = conn;
    r->dir = dir;
    int rc = uv_write(&r->req, s, rest, m, write_cb);
    if (rc != 0) {
        conn->queued[dir] -= r->len;
        r->len = 0;
        wreq_put(conn->worker, r);
        tp__conn_close(conn, dir == TP_TO_CLIENT ? TP_CLOSE_CLIENT_RESET : TP_CLOSE_UPSTREAM_RESET);
        return TP_ERR_IO;
    }
    return 0;
}

static void batch_drop(tp_conn_t *conn, int dir) {
    tp_batch_t *b = &conn->batch[dir];
    if (b->r) {
        conn->queued[dir] -= b->r->len;
        b->r->len = 0;
        wreq_put(conn->worker, b->r);
    }
    b->r = NULL;
    b->n = 0;
}

static int batch_flush(tp_conn_t *conn, int dir) {
    tp_batch_t *b = &conn->batch[dir];
    if (!b->r)
        return 0;
    struct tp_wreq *r = b->r;
    unsigned n = b->n;
    b->r = NULL;
    b->n = 0;
    if (conn->closing || !stream_of(conn, dir)) {
        conn->queued[dir] -= r->len;
        r->len = 0;
        wreq_put(conn->worker, r);
        return TP_ERR_CLOSED;
    }
    return submit(conn, dir, r, b->bufs, n);
}

void tp__conn_cork(tp_conn_t *conn, int dir) { conn->batch[dir].depth++; }

bool tp__conn_corked(const tp_conn_t *conn, int dir) { return conn->batch[dir].depth > 0; }

/* The TLS stream of a direction, or NULL for plain TCP. */
static tp_tls_t *tls_of(const tp_conn_t *conn, int dir) {
    return dir == TP_TO_CLIENT ? conn->tls : conn->up ? conn->up->tls : NULL;
}

void tp__conn_uncork(tp_conn_t *conn, int dir) {
    tp_batch_t *b = &conn->batch[dir];
    if (b->depth == 1) {
        tp_tls_t *t = tls_of(conn, dir);
        if (t && tp__tls_uncork(t) < 0) /* the records encrypted while corked join the batch */
            return;
    }
    if (b->depth > 0 && --b->depth == 0 && batch_flush(conn, dir) == 1 && !conn->closing)
        conn->proto->on_written(conn, dir, 0); /* it all went at once: no callback will come */
}

static int write_bufs(tp_conn_t *conn, int dir, const uv_buf_t *bufs, unsigned n, tp_buf_t *hold,
                      char *heap);

int tp__conn_write(tp_conn_t *conn, int dir, const uv_buf_t *bufs, unsigned n, tp_buf_t *hold,
                   char *heap) {
    if (conn->closing || !stream_of(conn, dir) || n > TP_BATCH_BUFS) {
        free(heap);
        return conn->closing || !stream_of(conn, dir) ? TP_ERR_CLOSED : TP_ERR_INVAL;
    }
    tp_tls_t *t = tls_of(conn, dir);
    if (t) /* plaintext in, records out through write_bufs() */
        return tp__tls_write(t, bufs, n, heap);
    return write_bufs(conn, dir, bufs, n, hold, heap);
}

int tp__conn_write_raw(tp_conn_t *conn, int dir, tp_buf_t *b, size_t len) {
    if (conn->closing || !stream_of(conn, dir))
        return TP_ERR_CLOSED;
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)len);
    return write_bufs(conn, dir, &ub, 1, b, NULL);
}

static int write_bufs(tp_conn_t *conn, int dir, const uv_buf_t *bufs, unsigned n, tp_buf_t *hold,
                      char *heap) {
    tp_batch_t *b = &conn->batch[dir];
    if (b->r && (b->n + n > TP_BATCH_BUFS || b->r->nholds == TP_BATCH_BUFS ||
                 b->r->nheaps == TP_BATCH_BUFS)) {
        int rc = batch_flush(conn, dir);
        if (rc < 0) {
            free(heap);
            return rc;
        }
    }
    struct tp_wreq *r = b->depth ? b->r : NULL;
    if (!r && !(r = wreq_get(conn->worker))) {
        free(heap);
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += bufs[i].len;
    r->len += len;
    conn->queued[dir] += len;
    if (hold) {
        tp__buf_ref(hold);
        r->holds[r->nholds++] = hold;
    }
    if (heap)
        r->heaps[r->nheaps++] = heap;
    if (!b->depth) {
        int rc = submit(conn, dir, r, bufs, n);
        return rc < 0 ? rc : 0;
    }
    /* Corked: collect, so that a head and its body leave in one writev. */
    b->r = r;
    memcpy(b->bufs + b->n, bufs, n * sizeof(*bufs));
    b->n += n;
    return 0;
}

int tp__conn_write_copy(tp_conn_t *conn, int dir, const char *data, size_t len) {
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        tp__conn_close(conn, TP_CLOSE_INTERNAL);
        return TP_ERR_NOMEM;
    }
    memcpy(copy, data, len);
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    return tp__conn_write(conn, dir, &b, 1, NULL, copy);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
    tp_conn_t *conn = req->data;
    free(req);
    tp__conn_unref(conn);
}

void tp__conn_shutdown(tp_conn_t *conn, int dir) {
    if (conn->closing)
        return;
    uv_stream_t *s;
    if (dir == TP_TO_CLIENT) {
        if (conn->client_shut)
            return;
        conn->client_shut = true;
        if (conn->vc) {
            tp__vc_end(conn);
            return;
        }
        s = (uv_stream_t *)&conn->client;
    } else {
        if (!conn->up || conn->up->shut)
            return;
        conn->up->shut = true;
        s = (uv_stream_t *)&conn->up->tcp;
    }
    tp_tls_t *t = tls_of(conn, dir);
    if (t) /* close_notify first: TLS's half-close, then TCP's */
        tp__tls_shutdown(t);
    if (conn->closing)
        return;
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req)
        return;
    req->data = conn;
    conn->refs++;
    if (uv_shutdown(req, s, shutdown_cb) != 0) {
        free(req);
        conn->refs--;
    }
}

/* ---- decisions ---- */

void tp__conn_pending_release(tp_conn_t *conn) {
    tp_pending_t *p = conn->pending;
    if (!p)
        return;
    conn->pending = NULL;
    conn->pending_cont = NULL;
    conn->pending_deadline = 0;
    p->conn = NULL;
    if (p->app_done)
        free(p);
}

tp_pending_t *tp__pending_new_conn(tp_conn_t *conn, uint64_t timeout_ms) {
    if (!conn || conn->pending || conn->closing || !conn->in_decision)
        return NULL;
    tp_pending_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->conn = conn;
    conn->pending = p;
    if (timeout_ms == 0)
        timeout_ms = conn->ep->cfg->timeouts.decision;
    conn->pending_deadline = uv_now(&conn->worker->loop) + timeout_ms;
    return p;
}

int tp_pending_complete(tp_pending_t *p, tp_decision_t d) {
    if (!p)
        return TP_ERR_INVAL;
    tp_conn_t *conn = p->conn;
    p->app_done = true;
    if (!conn) {
        free(p);
        return TP_ERR_CLOSED;
    }
    void (*cont)(tp_conn_t *, tp_decision_t) = conn->pending_cont;
    tp__conn_pending_release(conn);
    if (d.verdict == TP_VERDICT_PENDING) /* "later" is no answer: refuse */
        d = tp_block(503, "proxy_internal_error");
    if (!cont) {
        /* Completed from inside the hook, before it returned tp_pending(): keep the decision
         * for tp__conn_decide(), which is still on the stack. */
        conn->early = d;
        conn->early_set = true;
        return 0;
    }
    if (cont) {
        cont(conn, d);
        tp__conn_rearm(conn);
    }
    return 0;
}

void tp__conn_decide(tp_conn_t *conn, tp_decision_t d, void (*cont)(tp_conn_t *, tp_decision_t)) {
    if (d.verdict != TP_VERDICT_PENDING) {
        if (conn->pending) /* the hook made a handle but decided at once: drop it */
            tp__conn_pending_release(conn);
        conn->early_set = false; /* a completion inside the hook lost to the returned decision */
        cont(conn, d);
        return;
    }
    if (conn->early_set) {
        conn->early_set = false;
        cont(conn, conn->early);
        return;
    }
    if (!conn->pending) {
        /* No live handle: either the hook forgot tp_pending_new() or completed synchronously. */
        tp__log_msg(TP_LOG_ERROR, "hook returned pending without a pending handle", "conn %llu",
                    (unsigned long long)conn->id);
        cont(conn, tp_block(500, "proxy_internal_error"));
        return;
    }
    conn->pending_cont = cont;
    tp__conn_rearm(conn);
}

/* ---- accept and close ---- */

/*
 * While the ingress decision is pending, the client is read so that a reset is noticed at once;
 * the first bytes wait in conn->stash (reading stops) and an EOF is remembered, both handed to
 * the protocol once the connection is allowed.
 */
static void waiting_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (nread > 0) {
        /* The first read; later ones land in the same slab (see alloc_cb) until it is full. */
        conn->stash = b;
        conn->stash_len = (size_t)nread;
        if (conn->stash_len == b->cap)
            tp__conn_client_read(conn, false);
    } else if (nread != UV_EOF) {
        tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
    }
}

static void waiting_upstream_read(tp_conn_t *conn, tp_buf_t *b, ssize_t nread) {
    if (b)
        tp__buf_unref(b);
}

static void waiting_written(tp_conn_t *conn, int dir, int status) {}

static const tp_proto_t waiting_proto = {
    .name = "waiting",
    .on_client_read = waiting_read,
    .on_upstream_read = waiting_upstream_read,
    .on_written = waiting_written,
};

static void ingress_decided(tp_conn_t *conn, tp_decision_t d) {
    if (conn->closing)
        return;
    if (d.verdict != TP_VERDICT_ALLOW) {
        tp__log_msg(TP_LOG_INFO, "connection blocked", "conn %llu by ingress hook%s",
                    (unsigned long long)conn->id,
                    d.verdict == TP_VERDICT_REDIRECT ? " (redirect is an egress verdict)" : "");
        tp__conn_close(conn, TP_CLOSE_BLOCKED);
        return;
    }
    tp__conn_client_read(conn, false);
    conn->stashing = false;
    conn->proto = tp__onramp_proto(conn->ep->cfg->type);
    conn->proto->start(conn);
}

const tp_proto_t *tp__onramp_proto(int type) {
    switch (type) {
    case TP_ONRAMP_TCP: return &tp__tcp_proto;
    case TP_ONRAMP_HTTP3:
    case TP_ONRAMP_HTTP3_PROXY: return &tp__h3_session_proto;
    default: return &tp__http_proxy_proto;
    }
}

/* Logs the TLS session of a connection on its close line. */
static void log_tls(tp_logline_t *l, const tp_conn_t *conn) {
    const tp_tls_info_t *ti = tp_conn_tls(conn);
    if (!ti)
        return;
    tp__log_str(l, "tls_version", ti->version);
    tp__log_str(l, "tls_cipher", ti->cipher);
    if (ti->alpn[0])
        tp__log_str(l, "alpn", ti->alpn);
    if (ti->sni[0])
        tp__log_str(l, "sni", ti->sni);
    tp__log_bool(l, "tls_resumed", ti->resumed);
    if (ti->peer != TP_TLS_PEER_NONE) {
        tp__log_str(l, "peer_cert", ti->peer == TP_TLS_PEER_RAW_KEY ? "raw_public_key" : "x509");
        if (ti->peer_subject[0])
            tp__log_str(l, "peer_subject", ti->peer_subject);
        tp__log_str(l, "peer_sha256", ti->peer_sha256);
        tp__log_bool(l, "peer_verified", ti->peer_verified);
    }
}

static void handle_close_cb(uv_handle_t *h) { tp__conn_unref(h->data); }

static void conn_free(tp_conn_t *conn) {
    tp_worker_t *w = conn->worker;
    tp_server_t *srv = w->server;
    bool flow = conn->vc && conn->vc->parent;
    conn->stats.duration_us = (uv_hrtime() - conn->start_ns) / 1000;
    if (!flow) { /* a flow's statistics go to its ingress connection, whose close this is */
        tp__conn_trace(conn, "ingress.handle_connection_close");
        if (srv->hooks.ingress.handle_connection_close)
            srv->hooks.ingress.handle_connection_close(srv->hooks.ingress.self, conn, &conn->stats);
    }
    tp_logline_t l;
    tp__log_begin(&l, flow ? TP_LOG_DEBUG : TP_LOG_INFO, flow ? "flow close" : "close");
    tp__log_u64(&l, "conn", conn->id);
    tp__log_str(&l, "endpoint", conn->ep->cfg->name);
    tp__log_str(&l, "peer", conn->peer_str);
    tp__log_str(&l, "reason", tp_close_reason_name(conn->stats.reason));
    tp__log_u64(&l, "bytes_from_client", conn->stats.bytes_from_client);
    tp__log_u64(&l, "bytes_to_client", conn->stats.bytes_to_client);
    tp__log_u64(&l, "bytes_from_upstream", conn->stats.bytes_from_upstream);
    tp__log_u64(&l, "bytes_to_upstream", conn->stats.bytes_to_upstream);
    tp__log_u64(&l, "requests", conn->stats.requests);
    tp__log_u64(&l, "duration_us", conn->stats.duration_us);
    log_tls(&l, conn);
    tp__log_end(&l);
    if (conn->h1)
        tp__h1_state_free(conn);
    if (conn->stash)
        tp__buf_unref(conn->stash);
    tp__egress_release(conn);
    free(conn->pp);
    tp__tls_free(conn->tls);
    tp__tls_peek_free(conn);
    const tp_ext_spec_t *spec = &srv->app->ext[TP_EXT_INGRESS_CONNECTION];
    if (conn->ext && spec->free && !flow)
        spec->free(conn->ext);
    if (!flow) /* a flow's is its ingress connection's */
        free(conn->ext);
    if (conn->vc)
        tp__vc_free(conn); /* and a flow lets go of its ingress connection */
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        w->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    w->nconns--;
    if (!flow)
        conn->ep->nconns--;
    free(conn);
    if (w->draining && w->nconns == 0)
        uv_async_send(&w->wakeup); /* let the worker finish its drain */
}

void tp__conn_unref(tp_conn_t *conn) {
    if (--conn->refs == 0)
        conn_free(conn);
}

void tp__conn_close(tp_conn_t *conn, tp_close_reason_t reason) {
    if (conn->closing)
        return;
    if (conn->tls) /* a clean end of the TLS stream when nothing is left to write */
        tp__tls_close_notify(conn->tls);
    conn->closing = true;
    if (conn->stats.reason == TP_CLOSE_DONE) /* a reason recorded earlier (an error answer) wins */
        conn->stats.reason = reason;
    tp__conn_pending_release(conn);
    batch_drop(conn, TP_TO_CLIENT);
    tp__egress_abort(conn);
    tp__conn_upstream_close(conn);
    if (conn->vc) {
        tp__vc_close(conn);
        conn->refs--; /* the client side's: no handle to wait for (the timer's and "alive" stay) */
    } else {
        uv_close((uv_handle_t *)&conn->client, handle_close_cb);
    }
    uv_close((uv_handle_t *)&conn->timer, handle_close_cb);
    tp__conn_unref(conn); /* the "alive" reference */
}

/* A connection refused before it started: only its client handle is open. */
static void free_unaccepted_cb(uv_handle_t *h) { free(h->data); }

void tp__conn_accept(tp_listener_t *l) {
    tp_endpoint_t *ep = l->ep;
    tp_worker_t *w = ep->worker;
    tp_server_t *srv = w->server;
    tp_conn_t *conn = calloc(1, sizeof(*conn));
    if (!conn)
        return;
    uv_tcp_init(&w->loop, &conn->client);
    conn->client.data = conn;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&conn->client) != 0) {
        uv_close((uv_handle_t *)&conn->client, free_unaccepted_cb);
        return;
    }
    int64_t max = ep->cfg->limits.max_connections;
    if (max > 0 && ep->nconns >= (size_t)max) {
        /* Over the limit: close at once (as Envoy's listener limit does), before any hook. */
        ep->refused++;
        tp__log_msg(TP_LOG_WARN, "connection refused",
                    "endpoint %s: limits.max_connections (%lld) reached", ep->cfg->name,
                    (long long)max);
        uv_close((uv_handle_t *)&conn->client, free_unaccepted_cb);
        return;
    }
    conn->worker = w;
    conn->ep = ep;
    conn->id = ((uint64_t)w->index << 48) | ++w->next_id;
    conn->start_ns = uv_hrtime();
    conn->start_ms = uv_now(&w->loop);
    conn->refs = 3; /* client handle, timer, alive */
    uv_timer_init(&w->loop, &conn->timer);
    conn->timer.data = conn;
    int len = sizeof(conn->peer.u);
    uv_tcp_getpeername(&conn->client, &conn->peer.u.sa, &len);
    len = sizeof(conn->local.u);
    uv_tcp_getsockname(&conn->client, &conn->local.u.sa, &len);
    tp_addr_format(&conn->peer, conn->peer_str, sizeof(conn->peer_str));
    uv_tcp_nodelay(&conn->client, 1);
    conn->proto = tp__onramp_proto(ep->cfg->type);
    conn->next = w->conns;
    if (w->conns)
        w->conns->prev = conn;
    w->conns = conn;
    w->nconns++;
    ep->nconns++;
    tp__conn_touch(conn);

    const tp_ext_spec_t *spec = &srv->app->ext[TP_EXT_INGRESS_CONNECTION];
    if (spec->size) {
        conn->ext = calloc(1, spec->size);
        if (!conn->ext) {
            tp__conn_close(conn, TP_CLOSE_INTERNAL);
            return;
        }
        if (spec->init)
            spec->init(conn->ext, conn);
    }
    if (ep->cfg->proxy_protocol != TP_PP_NONE) {
        tp__pp_start(conn); /* the PROXY header first; it calls tp__conn_begin() */
        tp__conn_rearm(conn);
        return;
    }
    tp__conn_begin(conn);
}

void tp__conn_begin(tp_conn_t *conn) {
    if (conn->ep->tls)
        tp__tls_onramp_start(
            conn); /* ClientHello, its hook, the handshake, then the ingress hook */
    else
        tp__conn_ingress(conn);
}

tp_conn_t *tp__conn_new_virtual(tp_endpoint_t *ep, tp_conn_t *parent, const tp_vclient_ops_t *ops,
                                void *ctx, const tp_addr_t *peer, const tp_addr_t *local) {
    tp_worker_t *w = ep->worker;
    tp_conn_t *conn = calloc(1, sizeof(*conn));
    tp_vclient_t *vc = calloc(1, sizeof(*vc));
    if (!conn || !vc) {
        free(conn);
        free(vc);
        return NULL;
    }
    const tp_ext_spec_t *spec = &w->server->app->ext[TP_EXT_INGRESS_CONNECTION];
    if (!parent && spec->size && !(conn->ext = calloc(1, spec->size))) {
        free(conn);
        free(vc);
        return NULL;
    }
    vc->ops = ops;
    vc->ctx = ctx;
    vc->parent = parent;
    vc->session = parent == NULL;
    conn->vc = vc;
    conn->worker = w;
    conn->ep = ep;
    conn->id = ((uint64_t)w->index << 48) | ++w->next_id;
    conn->start_ns = uv_hrtime();
    conn->start_ms = uv_now(&w->loop);
    conn->refs = 3; /* client side, timer, alive */
    uv_timer_init(&w->loop, &conn->timer);
    conn->timer.data = conn;
    conn->peer = *peer;
    conn->local = *local;
    tp_addr_format(&conn->peer, conn->peer_str, sizeof(conn->peer_str));
    conn->next = w->conns;
    if (w->conns)
        w->conns->prev = conn;
    w->conns = conn;
    w->nconns++;
    if (parent) {
        parent->refs++; /* the flow's, until it is freed */
        conn->ext = parent->ext;
        conn->pp = NULL;
    } else {
        ep->nconns++;
        if (spec->init)
            spec->init(conn->ext, conn);
    }
    tp__conn_touch(conn);
    return conn;
}

void tp__conn_ingress(tp_conn_t *conn) {
    tp_server_t *srv = conn->worker->server;
    tp__conn_trace(conn, "ingress.handle_connection");
    tp_decision_t d = tp_allow();
    if (srv->hooks.ingress.handle_connection) {
        conn->in_decision = true;
        d = srv->hooks.ingress.handle_connection(srv->hooks.ingress.self, conn);
        conn->in_decision = false;
    }
    if (d.verdict == TP_VERDICT_PENDING && conn->pending) {
        conn->proto = &waiting_proto;
        conn->stashing = true;
        if (!conn->client_eof && (!conn->stash || conn->stash_len < conn->stash->cap))
            tp__conn_client_read(conn, true);
    }
    tp__conn_decide(conn, d, ingress_decided);
    tp__conn_rearm(conn);
}

/* ---- public accessors ---- */

uint64_t tp_conn_id(const tp_conn_t *conn) { return conn->id; }
const tp_addr_t *tp_conn_peer(const tp_conn_t *conn) { return &conn->peer; }
const tp_addr_t *tp_conn_local(const tp_conn_t *conn) { return &conn->local; }
tp_endpoint_t *tp_conn_endpoint(const tp_conn_t *conn) { return conn->ep; }
unsigned tp_conn_worker(const tp_conn_t *conn) { return conn->worker->index; }
struct uv_loop_s *tp_conn_loop(const tp_conn_t *conn) {
    return &conn->worker->loop;
}
const char *tp_endpoint_name(const tp_endpoint_t *ep) { return ep->cfg->name; }
void *tp__conn_ext(tp_conn_t *conn) { return conn->ext; }
void *tp__endpoint_ext(tp_endpoint_t *ep) { return ep->ext; }
const void *tp__conn_app_settings(const tp_conn_t *conn) { return conn->worker->server->cfg.app; }
const void *tp__conn_endpoint_settings(const tp_conn_t *conn) { return conn->ep->cfg->app; }
const void *tp__endpoint_app_settings_of_endpoint(const tp_endpoint_t *ep) { return ep->cfg->app; }
const tp_proxy_header_t *tp_conn_proxy_header(const tp_conn_t *conn) {
    return conn->pp ? &conn->pp->hdr : NULL;
}

const char *tp_close_reason_name(tp_close_reason_t reason) {
    static const char *const names[] = {
        "done",
        "client_closed",
        "client_reset",
        "upstream_closed",
        "upstream_reset",
        "upstream_failed",
        "blocked",
        "protocol_error",
        "idle_timeout",
        "header_timeout",
        "shutdown",
        "internal_error",
        "connect_timeout",
        "client_idle_timeout",
        "upstream_idle_timeout",
        "lifetime_exceeded",
        "response_timeout",
        "body_timeout",
        "tls_handshake_failed",
        "tls_handshake_timeout",
        "tls_error",
    };
    if ((unsigned)reason >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[reason];
}
