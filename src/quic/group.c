/* group.c: endpoints of several worker loops on one address (SO_REUSEPORT), and the hand-off of
 * packets that the kernel delivered to the wrong worker: a bounded queue and a uv_async_t. */
#include <stdlib.h>
#include <string.h>

#include "quic/quic_int.h"

/* Packets waiting for one worker; beyond this they are dropped (and counted): QUIC recovers,
 * and a slow worker must not make the others buffer without bound. */
#define HANDOFF_QUEUE 1024

typedef struct handoff_pkt {
    tp_addr_t remote;
    tp_addr_t local;
    uint8_t ecn;
    size_t len;
    uint8_t *data;
} handoff_pkt_t;

struct tp_quic_handoff {
    uv_async_t async;
    uv_mutex_t lock;
    handoff_pkt_t ring[HANDOFF_QUEUE];
    unsigned head, count;
};

struct tp_quic_group {
    uv_mutex_t lock;
    unsigned max, count;
    tp_quic_endpoint_t **members; /* NULL once a member started closing */
    tp_addr_t bound;
    tp_quic_stats_t retired; /* counters of members that closed */
};

int tp_quic_group_new(tp_quic_group_t **out, unsigned max_workers) {
    if (max_workers == 0 || max_workers > 256) {
        return TP_ERR_INVAL;
    }
    tp_quic_group_t *g = calloc(1, sizeof(*g));
    if (!g) {
        return TP_ERR_NOMEM;
    }
    g->members = calloc(max_workers, sizeof(tp_quic_endpoint_t *));
    if (!g->members || uv_mutex_init(&g->lock) != 0) {
        free(g->members);
        free(g);
        return TP_ERR_NOMEM;
    }
    g->max = max_workers;
    *out = g;
    return 0;
}

static void async_cb(uv_async_t *a) {
    tp_quic_endpoint_t *ep = a->data;
    tp_quic_handoff_t *h = ep->handoff;
    handoff_pkt_t batch[64];
    for (;;) {
        unsigned n = 0;
        uv_mutex_lock(&h->lock);
        while (n < 64 && h->count > 0) {
            batch[n++] = h->ring[h->head];
            h->head = (h->head + 1) % HANDOFF_QUEUE;
            h->count--;
        }
        uv_mutex_unlock(&h->lock);
        if (n == 0) {
            break;
        }
        ep->in_recv++;
        for (unsigned i = 0; i < n; i++) {
            tp_quic_rx_t rx = {.data = batch[i].data,
                               .len = batch[i].len,
                               .remote = batch[i].remote,
                               .local = batch[i].local,
                               .ecn = batch[i].ecn};
            if (!ep->closing) {
                tp__quic_endpoint_on_packet(ep, &rx);
            }
            free(batch[i].data);
        }
        ep->in_recv--;
        tp__quic_endpoint_run_flush_list(ep);
        tp__quic_endpoint_flush_tx(ep, false);
    }
}

static int handoff_start(tp_quic_endpoint_t *ep) {
    tp_quic_handoff_t *h = calloc(1, sizeof(*h));
    if (!h) {
        return TP_ERR_NOMEM;
    }
    if (uv_mutex_init(&h->lock) != 0) {
        free(h);
        return TP_ERR_NOMEM;
    }
    if (uv_async_init(ep->loop, &h->async, async_cb) != 0) {
        uv_mutex_destroy(&h->lock);
        free(h);
        return TP_ERR_IO;
    }
    h->async.data = ep;
    ep->handoff = h;
    return 0;
}

static void handoff_closed(uv_handle_t *a) {
    tp_quic_endpoint_t *ep = a->data;
    tp_quic_handoff_t *h = ep->handoff;
    while (h->count > 0) {
        free(h->ring[h->head].data);
        h->head = (h->head + 1) % HANDOFF_QUEUE;
        h->count--;
    }
    uv_mutex_destroy(&h->lock);
    ep->handoff = NULL;
    free(h);
    tp__quic_endpoint_handle_closed((uv_handle_t *)&ep->idle);
}

void tp__quic_handoff_stop(tp_quic_endpoint_t *ep) {
    tp_quic_group_t *g = ep->group;
    /* No sender may touch our queue from now on: the group forgets us under its lock. */
    uv_mutex_lock(&g->lock);
    if (ep->worker < g->max && g->members[ep->worker] == ep) {
        g->members[ep->worker] = NULL;
    }
    uv_mutex_unlock(&g->lock);
    ep->handles_open++;
    uv_close((uv_handle_t *)&ep->handoff->async, handoff_closed);
}

static void add_stats(tp_quic_stats_t *dst, const tp_quic_stats_t *src) {
    /* every member of tp_quic_stats_t is a uint64_t counter */
    uint64_t d[sizeof(*dst) / sizeof(uint64_t)];
    uint64_t s[sizeof(*src) / sizeof(uint64_t)];
    memcpy(d, dst, sizeof(d));
    memcpy(s, src, sizeof(s));
    for (size_t k = 0; k < sizeof(d) / sizeof(d[0]); k++) {
        d[k] += s[k];
    }
    memcpy(dst, d, sizeof(d));
}

void tp__quic_group_member_closed(tp_quic_endpoint_t *ep) {
    tp_quic_group_t *g = ep->group;
    uv_mutex_lock(&g->lock);
    add_stats(&g->retired, &ep->stats);
    uv_mutex_unlock(&g->lock);
}

int tp__quic_group_handoff(tp_quic_group_t *g, unsigned worker, const tp_quic_rx_t *rx) {
    bool queued = false;
    uint8_t *copy = malloc(rx->len);
    if (!copy) {
        return TP_ERR_NOMEM;
    }
    memcpy(copy, rx->data, rx->len);
    uv_mutex_lock(&g->lock);
    tp_quic_endpoint_t *to = worker < g->max ? g->members[worker] : NULL;
    bool member = to && to->handoff;
    if (member) {
        tp_quic_handoff_t *h = to->handoff;
        uv_mutex_lock(&h->lock);
        if (h->count < HANDOFF_QUEUE) {
            handoff_pkt_t *p = &h->ring[(h->head + h->count) % HANDOFF_QUEUE];
            p->remote = rx->remote;
            p->local = rx->local;
            p->ecn = rx->ecn;
            p->len = rx->len;
            p->data = copy;
            h->count++;
            queued = true;
        }
        uv_mutex_unlock(&h->lock);
        if (queued) {
            uv_async_send(&h->async);
        }
    }
    uv_mutex_unlock(&g->lock);
    if (!queued) {
        free(copy);
    }
    return queued ? 0 : member ? TP_ERR_NOMEM : TP_ERR_NOTFOUND;
}

int tp_quic_group_add(tp_quic_group_t *g, tp_quic_endpoint_t **out, uv_loop_t *loop,
                      const tp_addr_t *bind, bool server, const tp_quic_settings_t *settings,
                      const tp_quic_app_t *app, void *app_data) {
    uv_mutex_lock(&g->lock);
    if (g->count == g->max) {
        uv_mutex_unlock(&g->lock);
        return TP_ERR_RANGE;
    }
    unsigned idx = g->count;
    tp_quic_settings_t s = *settings;
    s.worker_index = (uint8_t)idx;
    /* Later members bind the port the first one got (port 0 picks one once). */
    const tp_addr_t *where = idx == 0 ? bind : &g->bound;
    tp_quic_endpoint_t *ep;
    int rc = tp__quic_endpoint_make(&ep, loop, where, server, &s, app, app_data, idx == 0);
    if (rc == 0) {
        rc = handoff_start(ep);
        if (rc != 0) {
            tp_quic_endpoint_close(ep, NULL, NULL);
        }
    }
    if (rc != 0) {
        uv_mutex_unlock(&g->lock);
        return rc;
    }
    ep->group = g;
    ep->worker = idx;
    if (idx == 0) {
        tp_quic_endpoint_local_addr(ep, &g->bound);
    }
    g->members[idx] = ep;
    g->count++;
    uv_mutex_unlock(&g->lock);
    *out = ep;
    return 0;
}

void tp_quic_group_stats(tp_quic_group_t *g, tp_quic_stats_t *out) {
    uv_mutex_lock(&g->lock);
    *out = g->retired;
    for (unsigned i = 0; i < g->count; i++) {
        /* Read while the worker runs: each counter is a snapshot, the set is not atomic. */
        if (g->members[i]) {
            add_stats(out, &g->members[i]->stats);
        }
    }
    uv_mutex_unlock(&g->lock);
}

void tp_quic_group_del(tp_quic_group_t *g) {
    if (!g) {
        return;
    }
    uv_mutex_destroy(&g->lock);
    free(g->members);
    free(g);
}
