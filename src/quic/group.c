/* group.c: endpoints of several worker loops on one address (SO_REUSEPORT), and the hand-off of
 * packets that the kernel delivered to the wrong worker: a bounded queue and a uv_async_t. */
#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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
    bool steering;           /* the kernel took steer_prog */
};

/*
 * The steering program (classic BPF, SO_ATTACH_REUSEPORT_CBPF): the kernel runs it on the UDP
 * payload of every datagram for the port and delivers it to the socket whose index in the
 * SO_REUSEPORT group it returns. Members bind in worker order, so socket index = worker index.
 * A DCID of ours (16 bytes, first octet 0x0f) gives its worker byte; anything else returns an
 * index no socket has, and the kernel falls back to its 4-tuple hash. Long header: DCID length
 * at byte 5, DCID from byte 6; short header: DCID from byte 1. A datagram too short to read
 * ends the program with 0 (worker 0), which drops it as any worker would.
 */
#define STEER_LONG_DCID  (6 + TP_QUIC_CID_WORKER_OFF)
#define STEER_SHORT_DCID (1 + TP_QUIC_CID_WORKER_OFF)
static struct sock_filter steer_prog[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 0, 6), /* long header, else to 8 */
    /* 2 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 5),
    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TP_QUIC_CID_LEN, 0, 8), /* else to 12 */
    /* 4 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),
    /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TP_QUIC_CID_LEN - 1, 0, 6), /* else to 12 */
    /* 6 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, STEER_LONG_DCID),
    /* 7 */ BPF_STMT(BPF_RET | BPF_A, 0),
    /* 8 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),
    /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TP_QUIC_CID_LEN - 1, 0, 2), /* else to 12 */
    /* 10 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, STEER_SHORT_DCID),
    /* 11 */ BPF_STMT(BPF_RET | BPF_A, 0),
    /* 12 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffffU),
};

static bool steer_attach(int fd) {
    struct sock_fprog prog = {.len = sizeof(steer_prog) / sizeof(steer_prog[0]),
                              .filter = steer_prog};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) == 0;
}

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
        /* The program belongs to the port's SO_REUSEPORT group, so later members have it too. */
        g->steering = s.reuseport_steering && steer_attach(ep->udp.fd);
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

bool tp_quic_group_steering(tp_quic_group_t *g) {
    uv_mutex_lock(&g->lock);
    bool on = g->steering;
    uv_mutex_unlock(&g->lock);
    return on;
}

void tp_quic_group_del(tp_quic_group_t *g) {
    if (!g) {
        return;
    }
    uv_mutex_destroy(&g->lock);
    free(g->members);
    free(g);
}
