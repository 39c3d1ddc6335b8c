/* worker.c: worker threads (one libuv loop each, SO_REUSEPORT listeners), drain and shutdown. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns/resolver.h"
#include "offramp/group.h"
#include "offramp/pool.h"
#include "runtime/core.h"
#include "runtime/log.h"
#include "tls/tls.h"

/*
 * SO_REUSEPORT would let a second Turnpike (or anything of the same user) share a port silently.
 * A probe bind without it fails with EADDRINUSE when someone listens there already.
 */
static int probe_free(const tp_addr_t *addr) {
    if (tp_addr_port(addr) == 0)
        return 0;
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->u.sa.sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, &addr->u.sa, tp_addr_len(addr)) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Opens a listening socket; `addr` gets the bound address (its port when 0 was asked). */
static int open_listener(tp_addr_t *addr, int backlog, int *fd_out) {
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (addr->u.sa.sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, &addr->u.sa, tp_addr_len(addr)) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    socklen_t len = sizeof(addr->u);
    getsockname(fd, &addr->u.sa, &len);
    *fd_out = fd;
    return 0;
}

static void on_connection(uv_stream_t *s, int status) {
    tp_listener_t *l = s->data;
    if (status != 0 || l->ep->worker->draining)
        return;
    tp__conn_accept(l);
}

/* Makes the endpoint's resolver on its worker's loop from the endpoint's `dns` settings. */
static int worker_dns_open(tp_endpoint_t *ep) {
    const tp_dns_cfg_t *c = &ep->cfg->dns;
    tp_dns_settings_t s;
    tp__dns_settings_default(&s);
    s.servers = (const char *const *)c->servers.items;
    s.nservers = c->servers.n;
    s.timeout_ms = c->timeout;
    s.attempts = (int)c->attempts;
    s.min_ttl_ms = c->min_ttl;
    s.max_ttl_ms = c->max_ttl;
    s.negative_ttl_ms = c->negative_ttl;
    s.cache_size = (size_t)c->cache_size;
    s.use_hosts = c->use_hosts;
    s.resolution_delay_ms = ep->cfg->egress.resolution_delay;
    const tp_ext_spec_t *ext = &ep->worker->server->app->ext[TP_EXT_DNS_ITEM];
    s.ext_size = ext->size;
    s.ext_init = ext->init;
    s.ext_free = ext->free;
    return tp__dns_new(&ep->worker->loop, &s, &ep->dns);
}

/* Closes what the worker's endpoints use besides connections: resolvers and upstream groups. */
static void close_resolvers(tp_worker_t *w) {
    if (w->pool) {
        tp_pool_stats_t st;
        tp__pool_stats(w->pool, &st);
        if (st.parked) { /* what the upstream pool did, for the operator */
            tp_logline_t l;
            tp__log_begin(&l, TP_LOG_INFO, "upstream pool");
            tp__log_u64(&l, "worker", w->index);
            tp__log_u64(&l, "parked", st.parked);
            tp__log_u64(&l, "reused", st.reused);
            tp__log_u64(&l, "closed_idle", st.closed_idle);
            tp__log_u64(&l, "closed_peer", st.closed_peer);
            tp__log_u64(&l, "closed_full", st.closed_full);
            tp__log_end(&l);
        }
    }
    tp__pool_close(w->pool);
    w->pool = NULL;
    tp__h3_onramps_drain(w);
    for (size_t u = 0; w->groups && u < w->server->cfg.upstreams.n; u++)
        if (w->groups[u]) {
            tp__group_close(w->groups[u]);
            w->groups[u] = NULL;
        }
    for (size_t e = 0; w->endpoints && e < w->server->cfg.endpoints.n; e++)
        if (w->endpoints[e].dns) {
            tp__dns_close(w->endpoints[e].dns, NULL, NULL);
            w->endpoints[e].dns = NULL;
        }
}

/* Drops the worker's references on TLS credentials (the sessions hold their own). */
static void release_tls(tp_worker_t *w) {
    for (size_t e = 0; w->endpoints && e < w->server->cfg.endpoints.n; e++) {
        tp_endpoint_t *ep = &w->endpoints[e];
        tp__tls_creds_unref(ep->tls);
        ep->tls = NULL;
        tp__tls_creds_unref(atomic_exchange(&ep->tls_next, NULL));
    }
}

static void worker_maybe_finish(tp_worker_t *w) {
    if (!w->draining || w->nconns > 0)
        return;
    close_resolvers(w);
    release_tls(w);
    if (!uv_is_closing((uv_handle_t *)&w->tls_idle))
        uv_close((uv_handle_t *)&w->tls_idle, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->spin))
        uv_close((uv_handle_t *)&w->spin, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->drain_timer))
        uv_close((uv_handle_t *)&w->drain_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->wakeup))
        uv_close((uv_handle_t *)&w->wakeup, NULL);
}

static void drain_deadline_cb(uv_timer_t *t) {
    tp_worker_t *w = t->data;
    for (tp_conn_t *c = w->conns; c; c = c->next)
        tp__conn_close(c, TP_CLOSE_SHUTDOWN);
}

/* Takes credentials the main thread reloaded: new handshakes use them, open sessions keep theirs.
 */
static void take_tls_reload(tp_worker_t *w) {
    for (size_t e = 0; w->endpoints && e < w->server->cfg.endpoints.n; e++) {
        tp_endpoint_t *ep = &w->endpoints[e];
        tp_tls_creds_t *next = atomic_exchange(&ep->tls_next, NULL);
        if (!next)
            continue;
        if (w->draining) {
            tp__tls_creds_unref(next);
            continue;
        }
        tp__tls_creds_unref(ep->tls);
        ep->tls = next;
    }
}

static void wakeup_cb(uv_async_t *a) {
    tp_worker_t *w = a->data;
    take_tls_reload(w);
    if (atomic_load(&w->drain_req) && !w->draining) {
        w->draining = true;
        for (size_t i = 0; i < w->nlisteners; i++)
            uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
        tp__h3_onramps_refuse_new(w);
        /* "draining" is logged once no worker accepts any more: a client that reads it and
         * connects is refused, not served (06-drain). */
        tp_server_t *srv = w->server;
        if (atomic_fetch_sub(&srv->drain_waiting, 1) == 1) {
            tp_logline_t l;
            tp__log_begin_always(&l, TP_LOG_INFO, "draining");
            tp__log_str(&l, "signal", srv->stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
            tp__log_u64(&l, "drain_timeout_ms", srv->cfg.runtime.drain_timeout);
            tp__log_end(&l);
        }
        uint64_t now = uv_now(&w->loop);
        for (tp_conn_t *c = w->conns; c; c = c->next) {
            if (c->closing)
                continue;
            uint64_t d = c->ep->cfg->timeouts.drain;
            if (d) { /* this endpoint's own deadline; the runtime's stays the backstop */
                c->drain_deadline = now + d;
                tp__conn_rearm(c);
            }
            if (c->proto->on_drain)
                c->proto->on_drain(c);
        }
        uint64_t deadline = w->server->cfg.runtime.drain_timeout;
        uv_timer_start(&w->drain_timer, drain_deadline_cb, deadline, 0);
    }
    worker_maybe_finish(w);
}

static void worker_main(void *arg) {
    tp_worker_t *w = arg;
    for (size_t i = 0; i < w->nlisteners; i++) {
        tp_listener_t *l = &w->listeners[i];
        uv_tcp_init(&w->loop, &l->tcp);
        l->tcp.data = l;
        int rc = uv_tcp_open(&l->tcp, l->fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&l->tcp, (int)l->ep->cfg->backlog, on_connection);
        if (rc != 0) {
            tp__log_msg(TP_LOG_ERROR, "listen failed", "worker %u: %s", w->index, uv_strerror(rc));
            w->start_err = rc;
        }
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void on_signal(uv_signal_t *s, int signum) {
    tp_server_t *srv = s->data;
    if (srv->stopping)
        return;
    srv->stopping = true;
    srv->stop_signal = signum;
    atomic_store(&srv->drain_waiting, srv->nworkers);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        atomic_store(&srv->workers[i].drain_req, 1);
        uv_async_send(&srv->workers[i].wakeup);
    }
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
}

/*
 * SIGHUP: reload every TLS endpoint's certificates and keys (and OCSP responses, client CAs, raw
 * keys) from their files. A set that fails to load is logged and the old one stays. Each worker
 * gets a reference through its wakeup handle and switches at its next wakeup; connections keep the
 * credentials they started with, the old set is freed with the last of them.
 */
static void on_reload(uv_signal_t *s, int signum) {
    tp_server_t *srv = s->data;
    if (srv->stopping)
        return;
    size_t reloaded = 0, failed = 0;
    for (size_t e = 0; e < srv->cfg.endpoints.n; e++) {
        tp_tls_creds_t *old = srv->tls_creds[e];
        if (!old)
            continue;
        const tp_endpoint_cfg_t *cfg = TP_LIST_AT(tp_endpoint_cfg_t, srv->cfg.endpoints, e);
        tp_tls_creds_t *c;
        char err[512];
        if (tp__tls_creds_load(cfg, old, &c, err, sizeof(err)) != 0) {
            tp__log_msg(TP_LOG_ERROR, "tls reload failed", "endpoint %s: %s (kept the old ones)",
                        cfg->name, err);
            failed++;
            continue;
        }
        for (unsigned i = 0; i < srv->nworkers; i++)
            tp__tls_creds_unref(
                atomic_exchange(&srv->workers[i].endpoints[e].tls_next, tp__tls_creds_ref(c)));
        srv->tls_creds[e] = c;
        tp__tls_creds_unref(old);
        tp__tls_creds_log(c, "tls reloaded");
        reloaded++;
    }
    for (unsigned i = 0; i < srv->nworkers; i++)
        uv_async_send(&srv->workers[i].wakeup);
    tp_logline_t l;
    tp__log_begin_always(&l, TP_LOG_INFO, "reload");
    tp__log_str(&l, "signal", "SIGHUP");
    tp__log_u64(&l, "tls_endpoints", reloaded);
    tp__log_u64(&l, "failed", failed);
    tp__log_end(&l);
}

static int client_load(const tp_tls_client_cfg_t *cfg, const char *what, tp_tls_client_t **out) {
    char err[512];
    if (tp__tls_client_load(cfg, what, out, err, sizeof(err)) != 0) {
        fprintf(stderr, "turnpike: %s: %s\n", what, err);
        tp__log_msg(TP_LOG_ERROR, "tls client setup failed", "%s: %s", what, err);
        return 1;
    }
    tp__tls_client_log(*out);
    return 0;
}

/* The TLS client configurations (upstream groups' tls, http_proxy endpoints' origin_tls), on the
 * main thread before the workers exist; the workers only read them. */
static int load_tls_clients(tp_server_t *srv) {
    size_t nu = srv->cfg.upstreams.n, nep = srv->cfg.endpoints.n;
    srv->tls_upstreams = calloc(nu ? nu : 1, sizeof(tp_tls_client_t *));
    srv->tls_origins = calloc(nep ? nep : 1, sizeof(tp_tls_client_t *));
    if (!srv->tls_upstreams || !srv->tls_origins)
        return 1;
    char what[320];
    for (size_t u = 0; u < nu; u++) {
        const tp_upstream_cfg_t *ucfg = TP_LIST_AT(tp_upstream_cfg_t, srv->cfg.upstreams, u);
        snprintf(what, sizeof(what), "upstream '%s': tls", ucfg->name);
        if (ucfg->tls && client_load(ucfg->tls, what, &srv->tls_upstreams[u]) != 0)
            return 1;
    }
    for (size_t e = 0; e < nep; e++) {
        const tp_endpoint_cfg_t *cfg = TP_LIST_AT(tp_endpoint_cfg_t, srv->cfg.endpoints, e);
        snprintf(what, sizeof(what), "endpoint '%s': origin_tls", cfg->name);
        if (cfg->type == TP_ONRAMP_HTTP_PROXY &&
            client_load(&cfg->origin_tls, what, &srv->tls_origins[e]) != 0)
            return 1;
    }
    return 0;
}

/* Loads every TLS endpoint's credentials on the main thread, before the workers exist. */
static int load_tls(tp_server_t *srv) {
    size_t nep = srv->cfg.endpoints.n;
    srv->tls_creds = calloc(nep ? nep : 1, sizeof(tp_tls_creds_t *));
    if (!srv->tls_creds)
        return 1;
    for (size_t e = 0; e < nep; e++) {
        const tp_endpoint_cfg_t *cfg = TP_LIST_AT(tp_endpoint_cfg_t, srv->cfg.endpoints, e);
        if (!TP_TLS_ON(cfg))
            continue;
        char err[512];
        if (tp__tls_creds_load(cfg, NULL, &srv->tls_creds[e], err, sizeof(err)) != 0) {
            fprintf(stderr, "turnpike: endpoint '%s': tls: %s\n", cfg->name, err);
            tp__log_msg(TP_LOG_ERROR, "tls setup failed", "endpoint %s: %s", cfg->name, err);
            return 1;
        }
        tp__tls_creds_log(srv->tls_creds[e], "tls");
    }
    return load_tls_clients(srv);
}

static void free_tls(tp_server_t *srv) {
    for (size_t e = 0; srv->tls_creds && e < srv->cfg.endpoints.n; e++)
        tp__tls_creds_unref(srv->tls_creds[e]);
    free(srv->tls_creds);
    srv->tls_creds = NULL;
    for (size_t u = 0; srv->tls_upstreams && u < srv->cfg.upstreams.n; u++)
        tp__tls_client_free(srv->tls_upstreams[u]);
    free(srv->tls_upstreams);
    srv->tls_upstreams = NULL;
    for (size_t e = 0; srv->tls_origins && e < srv->cfg.endpoints.n; e++)
        tp__tls_client_free(srv->tls_origins[e]);
    free(srv->tls_origins);
    srv->tls_origins = NULL;
}

static void log_ready(tp_server_t *srv) {
    char json[12288];
    size_t len = 0;
    json[len++] = '[';
    for (size_t e = 0; e < srv->cfg.endpoints.n; e++) {
        const tp_endpoint_cfg_t *cfg = TP_LIST_AT(tp_endpoint_cfg_t, srv->cfg.endpoints, e);
        len += (size_t)snprintf(json + len, sizeof(json) - len, "%s{\"name\":", e ? "," : "");
        len = tp__json_escape(json, sizeof(json), len, cfg->name, strlen(cfg->name));
        static const char *const types[] = {"tcp", "http_proxy", "http", "http3", "http3_proxy"};
        len += (size_t)snprintf(json + len, sizeof(json) - len, ",\"type\":\"%s\",\"listen\":[",
                                types[cfg->type]);
        /* Worker 0's listeners carry the bound ports (port 0 resolved). */
        bool first = true;
        for (size_t a = 0; tp__onramp_quic(cfg->type) && a < cfg->listen.n; a++) {
            tp_addr_t bound;
            char ab[TP_ADDR_STRLEN];
            if (!tp__h3_onramp_bound(srv, e, a, &bound) || len >= sizeof(json) - 100)
                continue;
            tp_addr_format(&bound, ab, sizeof(ab));
            len +=
                (size_t)snprintf(json + len, sizeof(json) - len, "%s\"%s\"", first ? "" : ",", ab);
            first = false;
        }
        for (size_t i = 0; i < srv->workers[0].nlisteners && len < sizeof(json) - 100; i++) {
            const tp_listener_t *li = &srv->workers[0].listeners[i];
            if (li->ep->cfg != cfg)
                continue;
            char ab[TP_ADDR_STRLEN];
            tp_addr_format(&li->addr, ab, sizeof(ab));
            len +=
                (size_t)snprintf(json + len, sizeof(json) - len, "%s\"%s\"", first ? "" : ",", ab);
            first = false;
        }
        len += (size_t)snprintf(json + len, sizeof(json) - len, "]}");
        if (len >= sizeof(json) - 100)
            break;
    }
    json[len++] = ']';
    json[len] = '\0';
    tp_logline_t l;
    tp__log_begin_always(&l, TP_LOG_INFO, "ready");
    tp__log_i64(&l, "pid", (int64_t)getpid());
    tp__log_u64(&l, "workers", srv->nworkers);
    tp__log_raw(&l, "endpoints", json);
    tp__log_end(&l);
}

/* Frees a worker whose loop has no open handles left. */
static void worker_free(tp_worker_t *w, size_t nep) {
    const tp_ext_spec_t *ep_ext = &w->server->app->ext[TP_EXT_ENDPOINT];
    for (size_t e = 0; w->endpoints && e < nep; e++) {
        if (w->endpoints[e].ext && ep_ext->free)
            ep_ext->free(w->endpoints[e].ext);
        free(w->endpoints[e].ext);
    }
    release_tls(w);
    tp__tls_origin_sessions_free(w);
    tp__worker_free_wreqs(w);
    tp__bufpool_free(&w->bufs);
    uv_loop_close(&w->loop);
    free(w->endpoints);
    free(w->listeners);
    free(w->groups);
}

/* Undoes a start-up that failed part way: workers [0, ninit) have loops, handles and sockets. */
static void workers_abort(tp_server_t *srv, unsigned ninit, size_t nep) {
    for (unsigned i = 0; i < ninit; i++) {
        tp_worker_t *w = &srv->workers[i];
        for (size_t li = 0; w->listeners && li < w->nlisteners; li++)
            if (w->listeners[li].fd >= 0)
                close(w->listeners[li].fd);
        close_resolvers(w);
        release_tls(w);
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        uv_close((uv_handle_t *)&w->drain_timer, NULL);
        uv_close((uv_handle_t *)&w->tls_idle, NULL);
        uv_close((uv_handle_t *)&w->spin, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        worker_free(w, nep);
    }
    free(srv->workers);
    srv->workers = NULL;
    free_tls(srv);
}

int tp__worker_run_all(tp_server_t *srv) {
    unsigned n =
        srv->cfg.runtime.workers ? (unsigned)srv->cfg.runtime.workers : uv_available_parallelism();
    if (n == 0)
        n = 1;
    srv->nworkers = n;
    srv->workers = calloc(n, sizeof(*srv->workers));
    if (!srv->workers)
        return 1;
    size_t nep = srv->cfg.endpoints.n, nl = 0;
    for (size_t e = 0; e < nep; e++)
        nl += TP_LIST_AT(tp_endpoint_cfg_t, srv->cfg.endpoints, e)->listen.n;
    const tp_ext_spec_t *ep_ext = &srv->app->ext[TP_EXT_ENDPOINT];

    int status = load_tls(srv);
    if (status != 0) {
        free(srv->workers);
        srv->workers = NULL;
        free_tls(srv);
        return status;
    }
    unsigned ninit = 0;
    for (unsigned i = 0; i < n && status == 0; i++, ninit++) {
        tp_worker_t *w = &srv->workers[i];
        w->server = srv;
        w->index = i;
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->wakeup, wakeup_cb);
        w->wakeup.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        uv_idle_init(&w->loop, &w->tls_idle);
        w->tls_idle.data = w;
        uv_idle_init(&w->loop, &w->spin);
        w->spin.data = w;
        w->spin_ns = (uint64_t)srv->cfg.runtime.busy_poll_us * 1000;
        tp__bufpool_init(&w->bufs, (uint32_t)srv->cfg.runtime.buffer_size, 256);
        w->endpoints = calloc(nep ? nep : 1, sizeof(*w->endpoints));
        w->listeners = calloc(nl ? nl : 1, sizeof(*w->listeners));
        size_t nup = srv->cfg.upstreams.n;
        w->groups = calloc(nup ? nup : 1, sizeof(struct tp_group *));
        if (!w->endpoints || !w->listeners || !w->groups) {
            status = 1;
            continue;
        }
        if (tp__pool_new(&w->loop, &w->bufs, &w->pool) != 0)
            status = 1;
        for (size_t u = 0; u < nup && status == 0; u++) {
            const tp_upstream_cfg_t *ucfg = TP_LIST_AT(tp_upstream_cfg_t, srv->cfg.upstreams, u);
            if (tp__group_new(&w->loop, ucfg, &w->groups[u]) != 0) {
                fprintf(stderr, "turnpike: upstream '%s': cannot set it up\n", ucfg->name);
                status = 1;
            }
        }
        if (status != 0)
            continue;
        size_t li = 0;
        for (size_t e = 0; e < nep; e++) {
            tp_endpoint_t *ep = &w->endpoints[e];
            ep->worker = w;
            ep->cfg = TP_LIST_AT(tp_endpoint_cfg_t, srv->cfg.endpoints, e);
            ep->index = e;
            ep->tls = tp__tls_creds_ref(srv->tls_creds[e]);
            if (worker_dns_open(ep) != 0) {
                fprintf(stderr, "turnpike: endpoint '%s': cannot set up its DNS resolver\n",
                        ep->cfg->name);
                status = 1;
                break;
            }
            if (ep_ext->size) {
                ep->ext = calloc(1, ep_ext->size);
                if (ep->ext && ep_ext->init)
                    ep_ext->init(ep->ext, ep);
            }
            for (size_t a = 0; !tp__onramp_quic(ep->cfg->type) && a < ep->cfg->listen.n;
                 a++, li++) {
                tp_listener_t *l = &w->listeners[li];
                l->ep = ep;
                l->fd = -1;
                /* Later workers bind where worker 0 did, so port 0 means one port for all. */
                l->addr = i == 0 ? ep->cfg->listen.items[a] : srv->workers[0].listeners[li].addr;
                int rc = i == 0 ? probe_free(&l->addr) : 0;
                if (rc == 0)
                    rc = open_listener(&l->addr, (int)ep->cfg->backlog, &l->fd);
                if (rc != 0) {
                    char ab[TP_ADDR_STRLEN];
                    tp_addr_format(&l->addr, ab, sizeof(ab));
                    tp__log_msg(TP_LOG_ERROR, "cannot listen", "endpoint %s on %s: %s",
                                ep->cfg->name, ab, strerror(-rc));
                    fprintf(stderr, "turnpike: cannot listen on %s for endpoint '%s': %s\n", ab,
                            ep->cfg->name, strerror(-rc));
                    status = 1;
                    break;
                }
            }
            if (status)
                break;
        }
        w->nlisteners = li + (status ? 1 : 0); /* the failed one has fd -1 */
    }
    if (status == 0 && tp__h3_onramps_open(srv) != 0)
        status = 1;
    if (status != 0) {
        workers_abort(srv, ninit, nep);
        tp__h3_onramps_free(srv);
        return status;
    }

    uv_loop_init(&srv->loop);
    uv_signal_init(&srv->loop, &srv->sig_term);
    uv_signal_init(&srv->loop, &srv->sig_int);
    srv->sig_term.data = srv->sig_int.data = srv;
    uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv->sig_int, on_signal, SIGINT);
    uv_signal_init(&srv->loop, &srv->sig_hup);
    srv->sig_hup.data = srv;
    uv_signal_start(&srv->sig_hup, on_reload, SIGHUP);

    log_ready(srv);
    for (unsigned i = 0; i < n; i++)
        uv_thread_create(&srv->workers[i].thread, worker_main, &srv->workers[i]);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < n; i++) {
        tp_worker_t *w = &srv->workers[i];
        uv_thread_join(&w->thread);
        if (w->start_err)
            status = 1;
        worker_free(w, nep);
    }
    uv_loop_close(&srv->loop);
    free(srv->workers);
    tp__h3_onramps_free(srv);
    free_tls(srv);
    tp_logline_t stopped;
    tp__log_begin_always(&stopped, TP_LOG_INFO, "stopped");
    tp__log_end(&stopped);
    return status;
}
