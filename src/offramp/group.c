/* group.c: an upstream group on one worker: picking a server, passive failure detection and the
 * health state machine that active checks (health.c) drive. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group_state.h"
#include "h1/request.h"
#include "runtime/log.h"
#include "tls/tls.h"
#include "util/hash.h"

/* Virtual nodes per server on the hash ring: with 160 each, a server's share of the keys is
 * within about 15% of the fair share for a handful of servers. */
#define RING_VNODES 160

#define NONE SIZE_MAX

/* ---- hashing ---- */

static int point_cmp(const void *a, const void *b) {
    const tp_ring_point_t *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->srv < y->srv ? -1 : x->srv > y->srv;
}

/* The ring depends only on the configured server strings, so every worker (and every process
 * with the same configuration) sends a key to the same server. */
static int ring_build(tp_group_t *g) {
    g->nring = g->n * RING_VNODES;
    g->ring = calloc(g->nring, sizeof(*g->ring));
    if (!g->ring)
        return TP_ERR_NOMEM;
    for (size_t i = 0; i < g->n; i++) {
        uint64_t base = tp__fnv1a(TP_FNV1A_INIT, g->srv[i].name, strlen(g->srv[i].name));
        for (size_t v = 0; v < RING_VNODES; v++)
            g->ring[i * RING_VNODES + v] = (tp_ring_point_t){
                .hash = tp__mix64(base + (v + 1) * 0x9e3779b97f4a7c15ULL), .srv = (uint32_t)i};
    }
    qsort(g->ring, g->nring, sizeof(*g->ring), point_cmp);
    return 0;
}

/* ---- health states ---- */

static bool has_checks(const tp_group_t *g) { return g->cfg->health.check != TP_HEALTH_NONE; }

/* Healthy is "neither reason to be out"; logs every change. */
static void update_health(tp_group_srv_t *s, const char *reason) {
    bool healthy = !s->passive_out && !s->check_down;
    if (healthy == s->pub.healthy)
        return;
    s->pub.healthy = healthy;
    if (!healthy)
        s->down_since = uv_now(s->g->loop);
    tp_logline_t l;
    tp__log_begin(&l, healthy ? TP_LOG_INFO : TP_LOG_WARN, "upstream health");
    tp__log_str(&l, "group", s->g->cfg->name ? s->g->cfg->name : "");
    tp__log_str(&l, "server", s->name);
    tp__log_bool(&l, "healthy", healthy);
    tp__log_str(&l, "reason", reason);
    tp__log_end(&l);
}

void tp__group_check_done(tp_group_srv_t *s, bool ok, const char *reason) {
    const tp_health_cfg_t *h = &s->g->cfg->health;
    char why[192];
    if (ok) {
        s->pub.checks_ok++;
        s->fails_in_row = 0;
        if (s->oks_in_row < h->rise)
            s->oks_in_row++;
        if (s->check_down && s->oks_in_row >= h->rise) {
            s->check_down = false;
            snprintf(why, sizeof(why), "%" PRId64 " checks passed", s->oks_in_row);
            update_health(s, why); /* no change while passive_out: fail_timeout says when */
        }
        return;
    }
    s->pub.checks_failed++;
    s->oks_in_row = 0;
    if (s->fails_in_row < h->fall)
        s->fails_in_row++;
    if (!s->check_down && s->fails_in_row >= h->fall) {
        s->check_down = true;
        snprintf(why, sizeof(why), "%" PRId64 " checks failed, the last: %s", s->fails_in_row,
                 reason);
        update_health(s, why);
    }
}

/* Arms the passive timer for the earliest server to come back (or stops it: none is out). */
static void passive_arm(tp_group_t *g);

static void passive_cb(uv_timer_t *t) {
    tp_group_t *g = t->data;
    uint64_t now = uv_now(g->loop);
    for (size_t i = 0; i < g->n; i++) {
        tp_group_srv_t *s = &g->srv[i];
        if (s->passive_out && s->out_until <= now) {
            s->passive_out = false;
            update_health(s, "fail_timeout passed");
        }
    }
    passive_arm(g);
}

static void passive_arm(tp_group_t *g) {
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < g->n; i++)
        if (g->srv[i].passive_out && g->srv[i].out_until < next)
            next = g->srv[i].out_until;
    if (next == UINT64_MAX) {
        uv_timer_stop(&g->passive_timer);
        return;
    }
    uint64_t now = uv_now(g->loop);
    uv_timer_start(&g->passive_timer, passive_cb, next > now ? next - now : 0, 0);
}

static const char *outcome_text(tp_group_outcome_t o) {
    switch (o) {
    case TP_GROUP_CONNECT_FAILED: return "connect failed";
    case TP_GROUP_RESET: return "connection reset";
    case TP_GROUP_TIMEOUT: return "timed out";
    default: return "";
    }
}

/* ---- the group ---- */

/* The server behind a pointer the caller got from this group; NULL for NULL or a stranger. */
static tp_group_srv_t *srv_of(tp_group_t *g, const tp_group_server_t *p) {
    if (!p || !g->srv || p->index >= g->n || &g->srv[p->index].pub != p)
        return NULL;
    return &g->srv[p->index];
}

static void refuse(const tp_upstream_cfg_t *cfg, const char *detail, const char *what) {
    tp_logline_t l;
    tp__log_begin(&l, TP_LOG_ERROR, "upstream group refused");
    tp__log_str(&l, "group", cfg->name ? cfg->name : "");
    tp__log_str(&l, "detail", detail);
    tp__log_str(&l, "value", what);
    tp__log_end(&l);
}

/* A request target or Host value the check may send: visible ASCII only, so nothing can be
 * smuggled into the request. */
static bool is_token_text(const char *s) {
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static int build_request(tp_group_srv_t *s, const tp_health_cfg_t *h) {
    const char *path = h->path ? h->path : "/";
    const char *host = h->host ? h->host : s->name;
    static const char fmt[] = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                              "User-Agent: turnpike-health\r\n\r\n";
    int n = snprintf(NULL, 0, fmt, path, host);
    if (n < 0)
        return TP_ERR_INVAL;
    s->req = malloc((size_t)n + 1);
    if (!s->req)
        return TP_ERR_NOMEM;
    snprintf(s->req, (size_t)n + 1, fmt, path, host);
    s->req_len = (size_t)n;
    return 0;
}

static void group_free(tp_group_t *g) {
    for (size_t i = 0; i < g->n; i++) {
        tp__tls_saved_free(g->srv[i].pub.tls_session);
        free(g->srv[i].pub.tls_session);
    }
    for (size_t i = 0; i < g->n; i++)
        free(g->srv[i].req);
    free(g->srv);
    free(g->ring);
    free(g);
}

int tp__group_new(uv_loop_t *loop, const tp_upstream_cfg_t *cfg, tp_group_t **out) {
    *out = NULL;
    if (cfg->servers.n == 0 || cfg->servers.n > UINT32_MAX) {
        refuse(cfg, "a group needs at least one server", "");
        return TP_ERR_INVAL;
    }
    const tp_health_cfg_t *h = &cfg->health;
    if (h->check == TP_HEALTH_HTTP) {
        if (h->path && (h->path[0] != '/' || !is_token_text(h->path))) {
            refuse(cfg, "health.path must start with '/' and be visible ASCII", h->path);
            return TP_ERR_INVAL;
        }
        if (h->host && !is_token_text(h->host)) {
            refuse(cfg, "health.host must be visible ASCII without spaces", h->host);
            return TP_ERR_INVAL;
        }
    }
    tp_group_t *g = calloc(1, sizeof(*g));
    if (!g)
        return TP_ERR_NOMEM;
    g->loop = loop;
    g->cfg = cfg;
    g->n = cfg->servers.n;
    g->srv = calloc(g->n, sizeof(*g->srv));
    if (!g->srv) {
        free(g);
        return TP_ERR_NOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < g->n && rc == 0; i++) {
        tp_group_srv_t *s = &g->srv[i];
        const char *text = cfg->servers.items[i];
        tp_str_t host;
        uint16_t port = 0;
        s->g = g;
        s->name = text;
        if (!text || !tp__h1_parse_authority(tp_str(text), 0, &host, &port) || port == 0 ||
            host.len >= sizeof(s->pub.host)) {
            refuse(cfg, "a server is not host:port ([v6]:port)", text ? text : "");
            rc = TP_ERR_INVAL;
            break;
        }
        memcpy(s->pub.host, host.ptr, host.len);
        s->pub.host[host.len] = '\0';
        s->pub.port = port;
        s->pub.index = i;
        s->pub.healthy = true;
        s->literal = tp_addr_parse(&s->addr, text, false) == 0;
        snprintf(s->port_str, sizeof(s->port_str), "%u", (unsigned)port);
        if (h->check == TP_HEALTH_HTTP)
            rc = build_request(s, h);
        if (rc == 0 && cfg->tls && !(s->pub.tls_session = calloc(1, sizeof(tp_tls_saved_t))))
            rc = TP_ERR_NOMEM;
    }
    if (rc == 0 && cfg->balance == TP_BALANCE_HASH)
        rc = ring_build(g);
    if (rc != 0) {
        group_free(g);
        return rc;
    }
    g->rng = tp__mix64(uv_hrtime() ^ (uint64_t)(uintptr_t)g) | 1;
    uv_timer_init(loop, &g->passive_timer);
    g->passive_timer.data = g;
    g->open++;
    if (has_checks(g))
        tp__health_start(g);
    *out = g;
    return 0;
}

bool tp__group_put(tp_group_t *g) {
    if (--g->open > 0 || !g->closing)
        return false;
    group_free(g);
    return true;
}

static void passive_close_cb(uv_handle_t *h) { tp__group_put(h->data); }

void tp__group_close(tp_group_t *g) {
    if (!g || g->closing)
        return;
    g->closing = true;
    if (has_checks(g))
        tp__health_close(g);
    uv_close((uv_handle_t *)&g->passive_timer, passive_close_cb);
}

const tp_upstream_cfg_t *tp__group_cfg(const tp_group_t *g) { return g->cfg; }

size_t tp__group_size(const tp_group_t *g) { return g->n; }

tp_group_server_t *tp__group_server(tp_group_t *g, size_t i) {
    return i < g->n ? &g->srv[i].pub : NULL;
}

/* ---- picking ---- */

/* `avoid` below is a server index, NONE for none. */
static bool eligible(const tp_group_t *g, size_t i, size_t avoid) {
    return g->srv[i].pub.healthy && i != avoid;
}

static size_t pick_round_robin(tp_group_t *g, size_t avoid) {
    for (size_t k = 0; k < g->n; k++) {
        size_t i = (g->rr + k) % g->n;
        if (eligible(g, i, avoid))
            return i;
    }
    return NONE;
}

/* Fewest in flight; among equals the first in round-robin order, so that servers that are all
 * idle (the usual case at low load) still take turns. */
static size_t pick_least_conn(tp_group_t *g, size_t avoid) {
    size_t best = NONE;
    for (size_t k = 0; k < g->n; k++) {
        size_t i = (g->rr + k) % g->n;
        if (eligible(g, i, avoid) &&
            (best == NONE || g->srv[i].pub.inflight < g->srv[best].pub.inflight))
            best = i;
    }
    return best;
}

/* The first point at or after the key's hash (clockwise, wrapping) whose server may be picked.
 * A server that is out is skipped point by point, so only its own keys go elsewhere, each to
 * the next server on the ring, which spreads them over the others. */
static size_t pick_hash(tp_group_t *g, tp_str_t key, size_t avoid) {
    uint64_t h = tp__mix64(tp__fnv1a(TP_FNV1A_INIT, key.ptr, key.len));
    size_t lo = 0, hi = g->nring;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < g->nring; k++) {
        size_t i = g->ring[(lo + k) % g->nring].srv;
        if (eligible(g, i, avoid))
            return i;
    }
    return NONE;
}

/* None is healthy: the one out the longest has had the most time to recover. `avoid` only when
 * it is the group's one server. */
static size_t longest_out(tp_group_t *g, size_t avoid) {
    size_t best = NONE;
    for (size_t k = 0; k < g->n; k++) {
        size_t i = (g->rr + k) % g->n;
        if (i == avoid && g->n > 1)
            continue;
        if (best == NONE || g->srv[i].down_since < g->srv[best].down_since)
            best = i;
    }
    return best;
}

tp_group_server_t *tp__group_pick(tp_group_t *g, tp_str_t key, const tp_group_server_t *avoid,
                                  bool any_if_none) {
    tp_group_srv_t *as = srv_of(g, avoid);
    size_t av = as ? avoid->index : NONE, i;
    switch (g->cfg->balance) {
    case TP_BALANCE_LEAST_CONN: i = pick_least_conn(g, av); break;
    case TP_BALANCE_HASH: i = pick_hash(g, key, av); break;
    default: i = pick_round_robin(g, av); break;
    }
    if (i == NONE && av != NONE && g->srv[av].pub.healthy)
        i = av; /* the only healthy one: a retry there beats none */
    if (i == NONE && any_if_none)
        i = longest_out(g, av);
    if (i >= g->n)
        return NULL;
    if (g->cfg->balance != TP_BALANCE_HASH)
        g->rr = (i + 1) % g->n;
    g->srv[i].pub.picks++;
    return &g->srv[i].pub;
}

void tp__group_acquire(tp_group_t *g, tp_group_server_t *s) {
    if (srv_of(g, s))
        s->inflight++;
}

void tp__group_release(tp_group_t *g, tp_group_server_t *p, tp_group_outcome_t outcome) {
    tp_group_srv_t *s = srv_of(g, p);
    if (!s)
        return;
    if (s->pub.inflight > 0)
        s->pub.inflight--;
    if (outcome == TP_GROUP_OK || outcome == TP_GROUP_ABANDONED)
        return;
    s->pub.failures++;
    const tp_health_cfg_t *h = &g->cfg->health;
    if (h->max_fails <= 0 || s->passive_out)
        return;
    uint64_t now = uv_now(g->loop);
    if (s->window_fails == 0 || now - s->window_start >= h->fail_timeout) {
        s->window_start = now;
        s->window_fails = 0;
    }
    if (++s->window_fails < h->max_fails)
        return;
    s->window_fails = 0;
    s->passive_out = true;
    s->out_until = now + h->fail_timeout;
    if (has_checks(g)) {
        /* Back only once the checks agree again, not on the clock alone. */
        s->check_down = true;
        s->oks_in_row = 0;
    }
    char why[160];
    snprintf(why, sizeof(why), "%" PRId64 " failed exchanges within fail_timeout, the last: %s",
             h->max_fails, outcome_text(outcome));
    update_health(s, why);
    passive_arm(g);
}
