/* pool.c: a worker's idle kept-alive upstream connections, by endpoint, host, port and TLS. */
#include "offramp/pool.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/core.h"
#include "tls/tls.h"
#include "util/hash.h"

#define BUCKETS 1024

struct tp_pool {
    uv_loop_t *loop;
    tp_bufpool_t *bufs;
    uv_timer_t sweep; /* drops connections past their idle time */
    tp_upstream_t *bucket[BUCKETS];
    tp_upstream_t *oldest, *newest; /* every idle connection, in parking order */
    size_t nidle;
    tp_pool_stats_t st;
    bool closing;
};

static uint64_t key_hash(size_t endpoint, const char *host, size_t len, uint16_t port) {
    return tp__fnv1a_lower(TP_FNV1A_INIT ^ endpoint ^ ((uint64_t)port << 32), host, len);
}

bool tp__pool_same_dest(const tp_upstream_t *up, const char *host, size_t len, uint16_t port,
                        const tp_tls_client_t *tls, const char *tls_name) {
    return up->port == port && strlen(up->host) == len && strncasecmp(up->host, host, len) == 0 &&
           up->tls_client == tls &&
           (up->tls_name == tls_name ||
            (up->tls_name && tls_name && strcasecmp(up->tls_name, tls_name) == 0));
}

static bool key_is(const tp_upstream_t *up, size_t endpoint, const char *host, size_t len,
                   uint16_t port, const tp_tls_client_t *tls, const char *tls_name) {
    return up->pool_endpoint == endpoint && tp__pool_same_dest(up, host, len, port, tls, tls_name);
}

/* Takes `up` out of its bucket and of the age list. */
static void unlink_up(tp_pool_t *p, tp_upstream_t *up) {
    tp_upstream_t **slot = &p->bucket[up->pool_bucket];
    while (*slot && *slot != up)
        slot = &(*slot)->pool_next;
    if (*slot)
        *slot = up->pool_next;
    if (up->age_prev)
        up->age_prev->age_next = up->age_next;
    else
        p->oldest = up->age_next;
    if (up->age_next)
        up->age_next->age_prev = up->age_prev;
    else
        p->newest = up->age_prev;
    up->pool_next = up->age_prev = up->age_next = NULL;
    up->pool = NULL;
    p->nidle--;
}

static void pooled_close_cb(uv_handle_t *h) {
    tp_upstream_t *up = h->data;
    tp__tls_free(up->tls);
    free(up);
}

/* Drops an idle connection: out of the pool and closed. */
static void drop(tp_pool_t *p, tp_upstream_t *up) {
    unlink_up(p, up);
    if (up->tls)
        tp__tls_park_bye(up->tls);
    uv_close((uv_handle_t *)&up->tcp, pooled_close_cb);
}

static void idle_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    tp_upstream_t *up = h->data;
    tp_buf_t *b = up->pool ? tp__buf_get(up->pool->bufs) : NULL;
    buf->base = b ? b->data : NULL;
    buf->len = b ? b->cap : 0;
}

/* A parked connection is not expected to say anything: any byte or its close ends it. */
static void idle_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tp_upstream_t *up = s->data;
    if (buf->base)
        tp__buf_unref(tp__buf_of(buf->base));
    if (nread == 0 || !up->pool)
        return;
    up->pool->st.closed_peer++;
    drop(up->pool, up);
}

/* A parked TLS connection: the bytes go through its session (tls/stream.c decides). */
static void tls_idle_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    tp__tls_idle_alloc(((tp_upstream_t *)h->data)->tls, buf);
}

static void tls_idle_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    tp_upstream_t *up = s->data;
    if (nread == 0 || !up->pool || tp__tls_idle_input(up->tls, nread) == 0)
        return;
    up->pool->st.closed_peer++;
    drop(up->pool, up);
}

static void sweep_cb(uv_timer_t *t) {
    tp_pool_t *p = t->data;
    uint64_t now = uv_now(p->loop);
    for (tp_upstream_t *up = p->oldest, *next; up; up = next) {
        next = up->age_next;
        if (up->pool_expires <= now) {
            p->st.closed_idle++;
            drop(p, up);
        }
    }
    if (!p->nidle)
        uv_timer_stop(&p->sweep);
}

int tp__pool_new(uv_loop_t *loop, tp_bufpool_t *bufs, tp_pool_t **out) {
    tp_pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return TP_ERR_NOMEM;
    p->loop = loop;
    p->bufs = bufs;
    uv_timer_init(loop, &p->sweep);
    p->sweep.data = p;
    *out = p;
    return 0;
}

static void pool_free_cb(uv_handle_t *h) { free(h->data); }

void tp__pool_close(tp_pool_t *p) {
    if (!p || p->closing)
        return;
    p->closing = true;
    while (p->oldest)
        drop(p, p->oldest);
    uv_close((uv_handle_t *)&p->sweep, pool_free_cb);
}

tp_upstream_t *tp__pool_take(tp_pool_t *p, size_t endpoint, const char *host, size_t hostlen,
                             uint16_t port, const tp_tls_client_t *tls, const char *tls_name) {
    size_t b = key_hash(endpoint, host, hostlen, port) % BUCKETS;
    /* The most recently parked first: the warmest connection, and the oldest time out. */
    tp_upstream_t *best = NULL;
    for (tp_upstream_t *up = p->bucket[b]; up; up = up->pool_next)
        if (key_is(up, endpoint, host, hostlen, port, tls, tls_name) &&
            (!best || up->pool_expires > best->pool_expires))
            best = up;
    if (!best)
        return NULL;
    uv_read_stop((uv_stream_t *)&best->tcp);
    unlink_up(p, best);
    p->st.reused++;
    return best;
}

size_t tp__pool_idle(const tp_pool_t *p, size_t endpoint, const char *host, size_t hostlen,
                     uint16_t port, const tp_tls_client_t *tls, const char *tls_name) {
    size_t n = 0;
    size_t b = key_hash(endpoint, host, hostlen, port) % BUCKETS;
    for (const tp_upstream_t *up = p->bucket[b]; up; up = up->pool_next)
        n += key_is(up, endpoint, host, hostlen, port, tls, tls_name);
    return n;
}

void tp__pool_park(tp_pool_t *p, tp_upstream_t *up, size_t endpoint, size_t max_idle,
                   uint64_t idle_ms) {
    size_t hostlen = strlen(up->host);
    if (p->closing || max_idle == 0 ||
        tp__pool_idle(p, endpoint, up->host, hostlen, up->port, up->tls_client, up->tls_name) >=
            max_idle) {
        p->st.closed_full++;
        uv_close((uv_handle_t *)&up->tcp, pooled_close_cb);
        return;
    }
    if (p->nidle >= TP_POOL_MAX_IDLE) { /* the pool's cap: the oldest goes */
        p->st.closed_full++;
        drop(p, p->oldest);
    }
    up->pool = p;
    up->pool_endpoint = endpoint;
    up->pool_expires = uv_now(p->loop) + idle_ms;
    up->pool_bucket = key_hash(endpoint, up->host, hostlen, up->port) % BUCKETS;
    up->pool_next = p->bucket[up->pool_bucket];
    p->bucket[up->pool_bucket] = up;
    up->age_next = NULL;
    up->age_prev = p->newest;
    if (p->newest)
        p->newest->age_next = up;
    else
        p->oldest = up;
    p->newest = up;
    p->nidle++;
    p->st.parked++;
    up->reading = false;
    uv_read_stop((uv_stream_t *)&up->tcp);
    if (up->tls ? uv_read_start((uv_stream_t *)&up->tcp, tls_idle_alloc_cb, tls_idle_read_cb)
                : uv_read_start((uv_stream_t *)&up->tcp, idle_alloc_cb, idle_read_cb)) {
        p->st.closed_peer++;
        drop(p, up);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&p->sweep))
        uv_timer_start(&p->sweep, sweep_cb, 1000, 1000);
}

void tp__pool_stats(const tp_pool_t *p, tp_pool_stats_t *out) {
    *out = p->st;
    out->idle = p->nidle;
}
