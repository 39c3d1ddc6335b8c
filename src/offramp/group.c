/* group.c: TEMPORARY round-robin-only stand-in until the groups branch lands (not committed). */
#include "offramp/group.h"

#include <stdlib.h>
#include <string.h>

#include "h1/request.h"

struct tp_group {
    const tp_upstream_cfg_t *cfg;
    size_t n, rr;
    tp_group_server_t *servers;
};

int tp__group_new(uv_loop_t *loop, const tp_upstream_cfg_t *cfg, tp_group_t **out) {
    tp_group_t *g = calloc(1, sizeof(*g));
    if (!g)
        return TP_ERR_NOMEM;
    g->cfg = cfg;
    g->n = cfg->servers.n;
    g->servers = calloc(g->n, sizeof(*g->servers));
    for (size_t i = 0; i < g->n; i++) {
        tp_str_t host;
        uint16_t port = 0;
        const char *s = cfg->servers.items[i];
        tp__h1_parse_authority((tp_str_t){s, strlen(s)}, 0, &host, &port);
        memcpy(g->servers[i].host, host.ptr, host.len);
        g->servers[i].port = port;
        g->servers[i].index = i;
        g->servers[i].healthy = true;
    }
    *out = g;
    return 0;
}
void tp__group_close(tp_group_t *g) {
    free(g->servers);
    free(g);
}
const tp_upstream_cfg_t *tp__group_cfg(const tp_group_t *g) { return g->cfg; }
size_t tp__group_size(const tp_group_t *g) { return g->n; }
tp_group_server_t *tp__group_server(tp_group_t *g, size_t i) { return &g->servers[i]; }
tp_group_server_t *tp__group_pick(tp_group_t *g, tp_str_t key, const tp_group_server_t *avoid,
                                  bool any_if_none) {
    for (size_t k = 0; k < g->n; k++) {
        tp_group_server_t *s = &g->servers[g->rr++ % g->n];
        if (s != avoid || g->n == 1)
            return s;
    }
    return NULL;
}
void tp__group_acquire(tp_group_t *g, tp_group_server_t *s) { s->inflight++; }
void tp__group_release(tp_group_t *g, tp_group_server_t *s, tp_group_outcome_t o) { s->inflight--; }
