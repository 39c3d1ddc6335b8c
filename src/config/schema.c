/* schema.c: the framework's configuration schema (runtime, endpoints) and the app's plug-in points.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "config.h"

static const char *const onramp_names[] = {"tcp", "http_proxy", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const pp_names[] = {"none", "v1", "v2", "any", NULL};
static const char *const pp_send_names[] = {"none", "v1", "v2", NULL};

static const tp_setting_t runtime_settings[] = {
    TP_SETTING_INT_AUTO(
        tp_runtime_cfg_t, workers, "auto", 0, 256,
        "worker threads, each with its own event loop and listeners: auto = one per core"),
    TP_SETTING_DURATION(
        tp_runtime_cfg_t, drain_timeout, "30s", 0, TP_SECONDS(3600),
        "on SIGTERM/SIGINT, how long open connections may finish before they are closed"),
    TP_SETTING_ENUM(tp_runtime_cfg_t, log_level, "info", log_level_names,
                    "least severe level written to the JSON log on stderr"),
    TP_SETTING_BOOL(tp_runtime_cfg_t, trace_hooks, "false",
                    "log every hook point a flow passes (msg \"hook\"), for tests of hook order"),
    TP_SETTING_SIZE(tp_runtime_cfg_t, buffer_size, "64KiB", TP_KIB(4), TP_MIB(4),
                    "size of the pooled buffers that reads land in"),
    TP_SETTING_END,
};

static const tp_schema_t runtime_schema = {
    .name = "runtime", .size = sizeof(tp_runtime_cfg_t), .settings = runtime_settings};

static const tp_setting_t timeouts_settings[] = {
    TP_SETTING_DURATION(tp_timeouts_cfg_t, connect, "10s", TP_MS(1), TP_SECONDS(600),
                        "upstream connect timeout (then 504, Proxy-Status connection_timeout)"),
    TP_SETTING_DURATION(
        tp_timeouts_cfg_t, idle, "60s", 0, TP_SECONDS(86400),
        "close a connection or tunnel when nothing moved either way for this long (0 = never)"),
    TP_SETTING_DURATION(tp_timeouts_cfg_t, header_read, "10s", TP_MS(1), TP_SECONDS(600),
                        "a request head must arrive completely within this time (slowloris guard)"),
    TP_SETTING_DURATION(tp_timeouts_cfg_t, decision, "5s", TP_MS(1), TP_SECONDS(600),
                        "a hook decision left pending longer than this is refused (503)"),
    TP_SETTING_DURATION(
        tp_timeouts_cfg_t, tunnel_idle_client, "0", 0, TP_SECONDS(86400),
        "close a tunnel (L4 or CONNECT) whose client sent nothing for this long (0 = off)"),
    TP_SETTING_DURATION(tp_timeouts_cfg_t, tunnel_idle_upstream, "0", 0, TP_SECONDS(86400),
                        "close a tunnel whose upstream sent nothing for this long (0 = off)"),
    TP_SETTING_DURATION(tp_timeouts_cfg_t, max_lifetime, "0", 0, TP_SECONDS(7 * 86400),
                        "close any connection this long after accept, busy or not (0 = off)"),
    TP_SETTING_DURATION(tp_timeouts_cfg_t, drain, "0", 0, TP_SECONDS(3600),
                        "on SIGTERM, close this endpoint's open connections after this long "
                        "(0 = runtime.drain_timeout)"),
    TP_SETTING_DURATION(tp_timeouts_cfg_t, proxy_protocol, "3s", TP_MS(1), TP_SECONDS(600),
                        "a PROXY header the endpoint expects must arrive completely within this"),
    TP_SETTING_END,
};

static const tp_schema_t timeouts_schema = {
    .name = "timeouts", .size = sizeof(tp_timeouts_cfg_t), .settings = timeouts_settings};

static const tp_setting_t limits_settings[] = {
    TP_SETTING_SIZE(tp_limits_cfg_t, max_header_bytes, "16KiB", 256, TP_MIB(1),
                    "request line plus headers larger than this get 431"),
    TP_SETTING_INT(tp_limits_cfg_t, max_headers, "100", 1, 10000,
                   "requests with more header fields than this get 431"),
    TP_SETTING_INT(tp_limits_cfg_t, max_connections, "0", 0, 10000000,
                   "open client connections per worker and endpoint; more are closed at accept (0 "
                   "= unlimited)"),
    TP_SETTING_END,
};

static const tp_schema_t limits_schema = {
    .name = "limits", .size = sizeof(tp_limits_cfg_t), .settings = limits_settings};

static int egress_check(void *section, char *err, size_t errlen, const char **key) {
    tp_egress_cfg_t *eg = section;
    int seen[2] = {0, 0};
    for (size_t i = 0; i < eg->bind.n; i++) {
        int v6 = eg->bind.items[i].u.sa.sa_family == AF_INET6;
        if (seen[v6]++) {
            *key = "bind";
            snprintf(err, errlen, "at most one source address per family (IPv4, IPv6)");
            return TP_ERR_CONFIG;
        }
    }
    return 0;
}

static const tp_setting_t egress_settings[] = {
    TP_SETTING_DURATION(tp_egress_cfg_t, attempt_delay, "250ms", TP_MS(10), TP_SECONDS(2),
                        "Happy Eyeballs (RFC 8305): start the next address after this long"),
    TP_SETTING_DURATION(tp_egress_cfg_t, resolution_delay, "50ms", 0, TP_SECONDS(1),
                        "Happy Eyeballs: with A in and AAAA not, wait this long before connecting"),
    TP_SETTING_BOOL(tp_egress_cfg_t, nodelay, "true", "TCP_NODELAY on upstream connections"),
    TP_SETTING_DURATION(tp_egress_cfg_t, keepalive, "0", 0, TP_SECONDS(86400),
                        "TCP keepalive probes after this much idle time (0 = off)"),
    TP_SETTING_ADDRS(tp_egress_cfg_t, bind, NULL,
                     "source addresses of upstream connections, one per family, ip:0"),
    TP_SETTING_INT(tp_egress_cfg_t, mark, "0", 0, 4294967295LL,
                   "SO_MARK on upstream sockets for policy routing (0 = none; CAP_NET_ADMIN)"),
    TP_SETTING_ENUM(tp_egress_cfg_t, send_proxy_protocol, "none", pp_send_names,
                    "send a PROXY header with the client's addresses first: none, v1 or v2"),
    TP_SETTING_END,
};

static const tp_schema_t egress_schema = {.name = "egress",
                                          .size = sizeof(tp_egress_cfg_t),
                                          .settings = egress_settings,
                                          .check = egress_check};

static const tp_setting_t dns_settings[] = {
    TP_SETTING_STRINGS(
        tp_dns_cfg_t, servers, NULL,
        "nameservers tried in order, ip or ip:port ([v6]:port); empty = /etc/resolv.conf"),
    TP_SETTING_DURATION(tp_dns_cfg_t, timeout, "2s", TP_MS(10), TP_SECONDS(60),
                        "a question's first wait for one server (doubles each round)"),
    TP_SETTING_INT(tp_dns_cfg_t, attempts, "2", 1, 10, "rounds over the server list"),
    TP_SETTING_DURATION(tp_dns_cfg_t, min_ttl, "1s", 0, TP_SECONDS(86400),
                        "answers are cached at least this long"),
    TP_SETTING_DURATION(tp_dns_cfg_t, max_ttl, "1h", 0, TP_SECONDS(7 * 86400),
                        "and at most this long, whatever the record's TTL"),
    TP_SETTING_DURATION(tp_dns_cfg_t, negative_ttl, "30s", 0, TP_SECONDS(86400),
                        "NXDOMAIN and NODATA are cached this long (0 = not at all)"),
    TP_SETTING_INT(tp_dns_cfg_t, cache_size, "10000", 0, 10000000,
                   "names cached per worker (least recently used go first; 0 = no cache)"),
    TP_SETTING_BOOL(tp_dns_cfg_t, use_hosts, "true", "answer names in /etc/hosts from it first"),
    TP_SETTING_END,
};

static int dns_check(void *section, char *err, size_t errlen, const char **key) {
    tp_dns_cfg_t *d = section;
    for (size_t i = 0; i < d->servers.n; i++) {
        tp_addr_t a;
        if (tp_addr_parse(&a, d->servers.items[i], true) != 0) {
            *key = "servers";
            snprintf(err, errlen, "'%s' is not an IP address or ip:port ([v6]:port)",
                     d->servers.items[i]);
            return TP_ERR_CONFIG;
        }
    }
    if (d->min_ttl > d->max_ttl) {
        *key = "min_ttl";
        snprintf(err, errlen, "min_ttl is longer than max_ttl");
        return TP_ERR_CONFIG;
    }
    return 0;
}

static const tp_schema_t dns_schema = {
    .name = "dns", .size = sizeof(tp_dns_cfg_t), .settings = dns_settings, .check = dns_check};

static int endpoint_check(void *section, char *err, size_t errlen, const char **key) {
    tp_endpoint_cfg_t *ep = section;
    if (ep->listen.n == 0) {
        *key = "listen";
        snprintf(err, errlen, "an endpoint needs at least one listen address");
        return TP_ERR_CONFIG;
    }
    if (ep->type == TP_ONRAMP_HTTP_PROXY && ep->upstream) {
        *key = "upstream";
        snprintf(err, errlen,
                 "'upstream' is for tcp endpoints; an http_proxy goes where each request says");
        return TP_ERR_CONFIG;
    }
    return 0;
}

static int root_check(void *section, char *err, size_t errlen, const char **key) {
    tp_config_t *cfg = section;
    for (size_t i = 0; i < cfg->endpoints.n; i++) {
        const tp_endpoint_cfg_t *a = TP_LIST_AT(tp_endpoint_cfg_t, cfg->endpoints, i);
        for (size_t j = i + 1; j < cfg->endpoints.n; j++) {
            const tp_endpoint_cfg_t *b = TP_LIST_AT(tp_endpoint_cfg_t, cfg->endpoints, j);
            if (strcmp(a->name, b->name) == 0) {
                *key = "endpoints";
                snprintf(err, errlen, "endpoint name '%s' is used twice", a->name);
                return TP_ERR_CONFIG;
            }
        }
    }
    return 0;
}

void tp__config_schemas_init(tp_config_schemas_t *s, const tp_setting_t *app_settings,
                             size_t app_size, const tp_setting_t *app_endpoint_settings,
                             size_t app_endpoint_size) {
    static const tp_setting_t no_settings[] = {TP_SETTING_END};
    memset(s, 0, sizeof(*s));
    s->app = (tp_schema_t){
        .name = "app", .size = app_size, .settings = app_settings ? app_settings : no_settings};
    s->app_endpoint =
        (tp_schema_t){.name = "app",
                      .size = app_endpoint_size,
                      .settings = app_endpoint_settings ? app_endpoint_settings : no_settings};

    const tp_setting_t endpoint[] = {
        {.name = "name",
         .type = TP_SETTING_T_STRING,
         .offset = offsetof(tp_endpoint_cfg_t, name),
         .doc = "unique name, used in logs and metrics",
         .flags = TP_SETTING_REQUIRED},
        {.name = "type",
         .type = TP_SETTING_T_ENUM,
         .offset = offsetof(tp_endpoint_cfg_t, type),
         .names = onramp_names,
         .doc =
             "on-ramp: tcp (L4 to 'upstream') or http_proxy (HTTP/1.1 forward proxy with CONNECT)",
         .flags = TP_SETTING_REQUIRED},
        TP_SETTING_ADDRS(
            tp_endpoint_cfg_t, listen, NULL,
            "addresses to listen on, ip:port ([::1]:port for IPv6); port 0 picks a free port"),
        TP_SETTING_HOSTPORT(
            tp_endpoint_cfg_t, upstream, NULL,
            "tcp: where to connect (host:port); without it the egress hook must redirect"),
        TP_SETTING_CIDRS(
            tp_endpoint_cfg_t, allow_destinations, "",
            "special ranges (loopback, private, link-local, ...) that upstreams may be in anyway"),
        TP_SETTING_ENUM(tp_endpoint_cfg_t, proxy_protocol, "none", pp_names,
                        "a PROXY protocol header the client (a trusted proxy) sends first: none, "
                        "v1, v2 or any (either version; a header is always required)"),
        TP_SETTING_INT(tp_endpoint_cfg_t, backlog, "511", 1, 65535, "listen backlog"),
        TP_SETTING_SIZE(
            tp_endpoint_cfg_t, high_watermark, "256KiB", TP_KIB(4), TP_MIB(64),
            "bytes queued toward a slow peer before Turnpike stops reading from the other side"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, timeouts, &timeouts_schema, "timeouts"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, limits, &limits_schema, "limits"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, dns, &dns_schema,
                           "name resolution for upstreams (c-ares, per worker, cached)"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, egress, &egress_schema,
                           "upstream connections: Happy Eyeballs and socket options"),
        {.name = "app",
         .type = TP_SETTING_T_SECTION,
         .offset = offsetof(tp_endpoint_cfg_t, app),
         .sub = &s->app_endpoint,
         .doc = "the app's per-endpoint settings",
         .flags = TP_SETTING_INDIRECT},
        TP_SETTING_END,
    };
    memcpy(s->endpoint_settings, endpoint, sizeof(endpoint));
    s->endpoint = (tp_schema_t){
        .name = "endpoint",
        .size = sizeof(tp_endpoint_cfg_t),
        .settings = s->endpoint_settings,
        .check = endpoint_check,
        .example = "name: proxy\ntype: http_proxy\nlisten: [127.0.0.1:8080]\n",
    };

    const tp_setting_t root[] = {
        TP_SETTING_SECTION(tp_config_t, runtime, &runtime_schema, "process-wide settings"),
        TP_SETTING_LIST(tp_config_t, endpoints, &s->endpoint,
                        "listeners, each with its on-ramp and settings"),
        {.name = "app",
         .type = TP_SETTING_T_SECTION,
         .offset = offsetof(tp_config_t, app),
         .sub = &s->app,
         .doc = "the app's own settings",
         .flags = TP_SETTING_INDIRECT},
        TP_SETTING_END,
    };
    memcpy(s->root_settings, root, sizeof(root));
    s->root = (tp_schema_t){.name = "turnpike",
                            .size = sizeof(tp_config_t),
                            .settings = s->root_settings,
                            .check = root_check};
}
