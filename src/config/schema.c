/* schema.c: the framework's configuration schema (runtime, endpoints) and the app's plug-in points.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "config.h"
#include "h1/request.h"

static const char *const onramp_names[] = {"tcp",   "http_proxy",  "http",
                                           "http3", "http3_proxy", NULL};
static const char *const balance_names[] = {"round_robin", "least_conn", "hash", NULL};
static const char *const health_names[] = {"none", "tcp", "http", NULL};
static const char *const xff_names[] = {"off", "append", "replace", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const pp_names[] = {"none", "v1", "v2", "any", NULL};
static const char *const pp_send_names[] = {"none", "v1", "v2", NULL};
static const char *const tls_version_names[] = {"1.2", "1.3", NULL};
static const char *const tls_profile_names[] = {"modern", "compat", "fips", NULL};
static const char *const tls_auth_names[] = {"none", "optional", "required", NULL};

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
    TP_SETTING_INT(tp_runtime_cfg_t, busy_poll_us, "50", 0, 10000,
                   "microseconds a busy worker keeps polling its sockets without sleeping after "
                   "its last read (0: sleep at once); spares peers the wake-ups of a proxy that "
                   "catches up and sleeps between every two requests"),
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
    TP_SETTING_DURATION(tp_timeouts_cfg_t, body_read, "30s", TP_MS(1), TP_SECONDS(3600),
                        "a request body that brings no byte for this long gets 408 (slowloris)"),
    TP_SETTING_DURATION(tp_timeouts_cfg_t, response, "60s", TP_MS(1), TP_SECONDS(3600),
                        "an upstream's response head must come within this after the request (504, "
                        "Proxy-Status http_response_timeout)"),
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
    TP_SETTING_SIZE(tp_limits_cfg_t, max_body_size, "0", 0, (uint64_t)1 << 50,
                    "request bodies larger than this get 413 (0 = unlimited)"),
    TP_SETTING_SIZE(tp_limits_cfg_t, max_body_buffer, "1MiB", TP_KIB(4), TP_MIB(256),
                    "bytes a body hook may hold back per body (then 413 for requests, 502 for "
                    "responses)"),
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

/* ---- upstream groups and routes ---- */

static const tp_setting_t health_settings[] = {
    TP_SETTING_ENUM(tp_health_cfg_t, check, "none", health_names,
                    "active checks: none, tcp (a connect) or http (GET path answered 2xx/3xx)"),
    TP_SETTING_STRING(tp_health_cfg_t, path, "/", "http check: the path asked for"),
    TP_SETTING_STRING(tp_health_cfg_t, host, NULL,
                      "http check: the Host header (default: the server's host:port)"),
    TP_SETTING_DURATION(tp_health_cfg_t, interval, "5s", TP_MS(100), TP_SECONDS(3600),
                        "time between two checks of a server"),
    TP_SETTING_DURATION(tp_health_cfg_t, timeout, "2s", TP_MS(10), TP_SECONDS(600),
                        "a check's connect and answer must come within this"),
    TP_SETTING_INT(tp_health_cfg_t, rise, "2", 1, 100,
                   "consecutive good checks that bring a server back"),
    TP_SETTING_INT(tp_health_cfg_t, fall, "3", 1, 100,
                   "consecutive failed checks that take a server out"),
    TP_SETTING_INT(
        tp_health_cfg_t, max_fails, "3", 0, 10000,
        "passive: failed exchanges within fail_timeout that take a server out (0 = off)"),
    TP_SETTING_DURATION(tp_health_cfg_t, fail_timeout, "10s", TP_MS(100), TP_SECONDS(86400),
                        "passive: the window for max_fails, and how long the server stays out"),
    TP_SETTING_END,
};

static const tp_schema_t health_schema = {
    .name = "health", .size = sizeof(tp_health_cfg_t), .settings = health_settings};

static const tp_setting_t pool_settings[] = {
    TP_SETTING_INT(tp_pool_cfg_t, max_idle, "32", 0, 100000,
                   "idle kept-alive connections kept per server and worker"),
    TP_SETTING_INT(tp_pool_cfg_t, max_total, "0", 0, 10000000,
                   "requests in flight per server and worker (0 = unlimited); past it, a request "
                   "that finds no idle connection gets 503"),
    TP_SETTING_DURATION(tp_pool_cfg_t, idle_timeout, "60s", TP_MS(100), TP_SECONDS(86400),
                        "an idle pooled connection is closed after this long"),
    TP_SETTING_END,
};

static const tp_schema_t pool_schema = {
    .name = "keepalive", .size = sizeof(tp_pool_cfg_t), .settings = pool_settings};

/* ---- Turnpike as a TLS client: upstream groups' tls, http_proxy's origin_tls ---- */

static const char *const ocsp_names[] = {"if_stapled", "require", "off", NULL};

static int alpn_check(const tp_str_list_t *alpn, char *err, size_t errlen, const char **key) {
    if (alpn->n > 16) {
        *key = "alpn";
        snprintf(err, errlen, "at most 16 ALPN protocols");
        return TP_ERR_CONFIG;
    }
    for (size_t i = 0; i < alpn->n; i++) {
        size_t n = strlen(alpn->items[i]);
        if (n == 0 || n > 255) {
            *key = "alpn";
            snprintf(err, errlen, "an ALPN protocol name is 1 to 255 bytes");
            return TP_ERR_CONFIG;
        }
    }
    return 0;
}

static int tls_client_check(void *section, char *err, size_t errlen, const char **key) {
    tp_tls_client_cfg_t *t = section;
    if (!t->certificate != !t->private_key) {
        *key = t->certificate ? "private_key" : "certificate";
        snprintf(err, errlen,
                 "a client certificate needs both 'certificate' (PEM chain) and 'private_key'");
        return TP_ERR_CONFIG;
    }
    if (t->server_name && (!t->server_name[0] || strlen(t->server_name) > 253)) {
        *key = "server_name";
        snprintf(err, errlen, "server_name is a DNS name or an IP address (1 to 253 bytes)");
        return TP_ERR_CONFIG;
    }
    if (t->ocsp == TP_OCSP_OFF && t->crl.n) {
        *key = "ocsp";
        snprintf(
            err, errlen,
            "ocsp: off also turns CRL checks off (GnuTLS's DISABLE_CRL_CHECKS): give no 'crl', "
            "or keep ocsp: if_stapled");
        return TP_ERR_CONFIG;
    }
    if (!t->verify && t->ocsp == TP_OCSP_REQUIRE) {
        *key = "ocsp";
        snprintf(err, errlen, "ocsp: require needs verify: true");
        return TP_ERR_CONFIG;
    }
    return alpn_check(&t->alpn, err, errlen, key);
}

#define TLS_CLIENT_COMMON                                                                          \
    TP_SETTING_STRING(tp_tls_client_cfg_t, ca, NULL,                                               \
                      "PEM file of the CAs the server's chain must lead to (absent: the system "   \
                      "trust store)"),                                                             \
        TP_SETTING_BOOL(tp_tls_client_cfg_t, verify, "true",                                       \
                        "check the chain, validity dates, revocation and the name (false: "        \
                        "accept any certificate; logged as a warning at start)"),                  \
        TP_SETTING_STRINGS(tp_tls_client_cfg_t, alpn, NULL,                                        \
                           "ALPN protocols offered, in preference order (empty: http/1.1)"),       \
        TP_SETTING_STRING(tp_tls_client_cfg_t, certificate, NULL,                                  \
                          "PEM chain presented to servers that ask for a client certificate"),     \
        TP_SETTING_STRING(tp_tls_client_cfg_t, private_key, NULL, "PEM key of 'certificate'"),     \
        TP_SETTING_ENUM(tp_tls_client_cfg_t, profile, "modern", tls_profile_names,                 \
                        "algorithms: modern, compat or fips (as on the server side)"),             \
        TP_SETTING_ENUM(tp_tls_client_cfg_t, min_version, "1.2", tls_version_names,                \
                        "lowest TLS version offered: 1.2 or 1.3"),                                 \
        TP_SETTING_STRINGS(tp_tls_client_cfg_t, crl, NULL,                                         \
                           "PEM files of CRLs; a certificate they revoke is refused"),             \
        TP_SETTING_ENUM(tp_tls_client_cfg_t, ocsp, "if_stapled", ocsp_names,                       \
                        "stapled OCSP: if_stapled (checked when sent: revoked fails), require "    \
                        "(no valid staple fails) or off (not checked; not with crl)")

static const tp_setting_t tls_client_settings[] = {
    TLS_CLIENT_COMMON,
    TP_SETTING_STRING(tp_tls_client_cfg_t, server_name, NULL,
                      "SNI and the name the certificate must carry (absent: the server's host; "
                      "an IP address sends no SNI and is checked against IP SANs)"),
    TP_SETTING_BOOL(tp_tls_client_cfg_t, session_resumption, "true",
                    "resume the last session with each server (per worker)"),
    TP_SETTING_END,
};

static const tp_schema_t tls_client_schema = {.name = "tls",
                                              .size = sizeof(tp_tls_client_cfg_t),
                                              .settings = tls_client_settings,
                                              .check = tls_client_check};

static const tp_setting_t origin_tls_settings[] = {
    TLS_CLIENT_COMMON,
    TP_SETTING_BOOL(tp_tls_client_cfg_t, session_resumption, "true",
                    "resume the last session with each origin host:port (per worker, 256 kept)"),
    TP_SETTING_END,
};

static const tp_schema_t origin_tls_schema = {.name = "origin_tls",
                                              .size = sizeof(tp_tls_client_cfg_t),
                                              .settings = origin_tls_settings,
                                              .check = tls_client_check};

static int upstream_check(void *section, char *err, size_t errlen, const char **key) {
    tp_upstream_cfg_t *u = section;
    if (u->servers.n == 0) {
        *key = "servers";
        snprintf(err, errlen, "an upstream group needs at least one server (host:port)");
        return TP_ERR_CONFIG;
    }
    for (size_t i = 0; i < u->servers.n; i++) {
        tp_str_t host;
        uint16_t port = 0;
        const char *s = u->servers.items[i];
        if (!tp__h1_parse_authority((tp_str_t){s, strlen(s)}, 0, &host, &port) || port == 0) {
            *key = "servers";
            snprintf(err, errlen, "'%s' is not host:port ([v6]:port)", s);
            return TP_ERR_CONFIG;
        }
    }
    if (u->hash_key && strcmp(u->hash_key, "client_ip") != 0 &&
        (strncmp(u->hash_key, "header:", 7) != 0 || u->hash_key[7] == '\0')) {
        *key = "hash_key";
        snprintf(err, errlen, "hash_key is client_ip or header:<name>, not '%s'", u->hash_key);
        return TP_ERR_CONFIG;
    }
    if (u->tls && u->health.check == TP_HEALTH_HTTP) {
        *key = "health";
        snprintf(err, errlen,
                 "http health checks speak plain HTTP: a TLS group takes check: tcp (or none)");
        return TP_ERR_CONFIG;
    }
    return 0;
}

static const tp_setting_t upstream_settings[] = {
    {.name = "name",
     .type = TP_SETTING_T_STRING,
     .offset = offsetof(tp_upstream_cfg_t, name),
     .doc = "unique name that routes refer to",
     .flags = TP_SETTING_REQUIRED},
    TP_SETTING_STRINGS(
        tp_upstream_cfg_t, servers, NULL,
        "the group's servers, host:port ([v6]:port); names resolve like any upstream"),
    TP_SETTING_ENUM(tp_upstream_cfg_t, balance, "round_robin", balance_names,
                    "load balancing: round_robin, least_conn or hash (consistent, by hash_key)"),
    TP_SETTING_STRING(tp_upstream_cfg_t, hash_key, "client_ip",
                      "balance hash: client_ip or header:<name>"),
    TP_SETTING_INT(tp_upstream_cfg_t, retries, "1", 0, 10,
                   "an idempotent request that failed before any response byte is sent again, "
                   "on a fresh connection to another server, at most this often"),
    TP_SETTING_SECTION(tp_upstream_cfg_t, keepalive, &pool_schema,
                       "the per-worker pool of kept-alive connections"),
    TP_SETTING_SECTION(tp_upstream_cfg_t, health, &health_schema,
                       "active health checks and passive failure detection"),
    {.name = "tls",
     .type = TP_SETTING_T_SECTION,
     .offset = offsetof(tp_upstream_cfg_t, tls),
     .sub = &tls_client_schema,
     .doc = "TLS to the group's servers (present, even empty: on; absent: plain TCP)",
     .flags = TP_SETTING_INDIRECT | TP_SETTING_OPTIONAL},
    TP_SETTING_END,
};

static const tp_schema_t upstream_schema = {
    .name = "upstream",
    .size = sizeof(tp_upstream_cfg_t),
    .settings = upstream_settings,
    .check = upstream_check,
};

static int route_check(void *section, char *err, size_t errlen, const char **key) {
    tp_route_cfg_t *r = section;
    r->upstream_index = -1;
    if (r->path_prefix && r->path_prefix[0] != '/') {
        *key = "path_prefix";
        snprintf(err, errlen, "a path prefix starts with '/'");
        return TP_ERR_CONFIG;
    }
    if (r->host && strchr(r->host + (r->host[0] == '*'), '*')) {
        *key = "host";
        snprintf(err, errlen, "a host is exact or '*.suffix' (one leading wildcard)");
        return TP_ERR_CONFIG;
    }
    for (size_t i = 0; i < r->methods.n; i++)
        for (const char *c = r->methods.items[i]; *c; c++)
            if (*c < 'A' || *c > 'Z') {
                *key = "methods";
                snprintf(err, errlen, "'%s' is not a method (upper-case letters)",
                         r->methods.items[i]);
                return TP_ERR_CONFIG;
            }
    return 0;
}

static const tp_setting_t route_settings[] = {
    TP_SETTING_STRING(tp_route_cfg_t, host, NULL,
                      "the request's host: exact or *.suffix (absent: any)"),
    TP_SETTING_STRING(tp_route_cfg_t, path_prefix, NULL, "the path starts with this (absent: any)"),
    TP_SETTING_STRINGS(tp_route_cfg_t, methods, NULL, "request methods (absent: any)"),
    TP_SETTING_STRING(tp_route_cfg_t, upstream, NULL,
                      "the upstream group (absent: only the app's handle_request answers)"),
    TP_SETTING_END,
};

static const tp_schema_t route_schema = {
    .name = "route",
    .size = sizeof(tp_route_cfg_t),
    .settings = route_settings,
    .check = route_check,
};

static const tp_setting_t forwarding_settings[] = {
    TP_SETTING_BOOL(tp_forwarding_cfg_t, via, "true",
                    "add 'Via: 1.1 <via_name>' to forwarded requests and responses"),
    TP_SETTING_STRING(tp_forwarding_cfg_t, via_name, "turnpike", "this hop's name in Via"),
    TP_SETTING_ENUM(tp_forwarding_cfg_t, x_forwarded, "append", xff_names,
                    "X-Forwarded-For/-Proto/-Host on forwarded requests: off, append (to what "
                    "came) or replace (trust nothing that came)"),
    TP_SETTING_BOOL(tp_forwarding_cfg_t, forwarded, "false",
                    "append an RFC 7239 Forwarded element (for, proto, host)"),
    TP_SETTING_END,
};

static const tp_schema_t forwarding_schema = {
    .name = "forwarding", .size = sizeof(tp_forwarding_cfg_t), .settings = forwarding_settings};

static const char *const retry_names[] = {"always", "never", "under_load", NULL};
static const char *const cc_names[] = {"cubic", "bbr", "reno", NULL};

static const tp_setting_t quic_settings[] = {
    TP_SETTING_STRING(tp_quic_cfg_t, certificate, NULL,
                      "http3: PEM certificate chain file (required)"),
    TP_SETTING_STRING(tp_quic_cfg_t, private_key, NULL, "http3: PEM private key file (required)"),
    TP_SETTING_ENUM(tp_quic_cfg_t, retry, "always", retry_names,
                    "address validation with a Retry: always, never, or under_load"),
    TP_SETTING_INT(tp_quic_cfg_t, retry_threshold, "256", 0, 1000000,
                   "under_load: a new client must answer a Retry while more than this many "
                   "handshakes are open on the worker"),
    TP_SETTING_ENUM(tp_quic_cfg_t, cc, "cubic", cc_names, "congestion control: cubic, bbr, reno"),
    TP_SETTING_DURATION(tp_quic_cfg_t, idle_timeout, "56s", TP_SECONDS(1), TP_SECONDS(600),
                        "max_idle_timeout: a connection silent for this long closes"),
    TP_SETTING_DURATION(tp_quic_cfg_t, handshake_timeout, "10s", TP_SECONDS(1), TP_SECONDS(120),
                        "a handshake not done by then fails"),
    TP_SETTING_SIZE(tp_quic_cfg_t, initial_max_data, "10MiB", TP_KIB(64), TP_MIB(1024),
                    "the connection's receive window"),
    TP_SETTING_SIZE(tp_quic_cfg_t, initial_max_stream_data, "1MiB", TP_KIB(16), TP_MIB(256),
                    "each stream's receive window"),
    TP_SETTING_INT(tp_quic_cfg_t, max_streams, "100", 1, 10000,
                   "requests a client may have open at once per connection"),
    TP_SETTING_INT(tp_quic_cfg_t, max_connections, "10000", 1, 1000000,
                   "QUIC connections per worker; Initials above it are refused"),
    TP_SETTING_INT_AUTO(tp_quic_cfg_t, max_udp_payload, "auto", 1200, 16384,
                        "largest UDP payload sent once PMTUD confirmed it: auto = 1452, or more "
                        "where the route to the client has a larger MTU (up to a 9000-byte jumbo "
                        "frame)"),
    TP_SETTING_BOOL(tp_quic_cfg_t, datagrams, "true", "DATAGRAM frames (RFC 9221, 9297)"),
    TP_SETTING_BOOL(tp_quic_cfg_t, extended_connect, "true",
                    "http3: extended CONNECT (RFC 9220): WebSocket becomes an HTTP/1.1 Upgrade"),
    TP_SETTING_BOOL(tp_quic_cfg_t, early_data, "false",
                    "0-RTT: GET/HEAD/OPTIONS in early data go on with Early-Data: 1, the rest get "
                    "425 Too Early"),
    TP_SETTING_STRING(tp_quic_cfg_t, qlog_dir, NULL,
                      "a qlog file per connection in this directory"),
    TP_SETTING_STRING(tp_quic_cfg_t, keylog_file, NULL,
                      "TLS secrets appended in NSS key log format (debugging only)"),
    TP_SETTING_END,
};

static const tp_schema_t quic_schema = {
    .name = "quic", .size = sizeof(tp_quic_cfg_t), .settings = quic_settings};
/* ---- tls ---- */

static int tls_cert_check(void *section, char *err, size_t errlen, const char **key) {
    tp_tls_cert_cfg_t *c = section;
    if (!c->cert || !c->key) {
        *key = c->cert ? "key" : "cert";
        snprintf(err, errlen, "a certificate needs both 'cert' (PEM chain) and 'key' (PEM key)");
        return TP_ERR_CONFIG;
    }
    return 0;
}

static const tp_setting_t tls_cert_settings[] = {
    TP_SETTING_STRING(tp_tls_cert_cfg_t, cert, NULL, "PEM file: the certificate chain, leaf first"),
    TP_SETTING_STRING(tp_tls_cert_cfg_t, key, NULL, "PEM file: its private key"),
    TP_SETTING_STRING(tp_tls_cert_cfg_t, ocsp_staple_file, NULL,
                      "DER file: an OCSP response for this certificate, stapled (reloaded on "
                      "SIGHUP)"),
    TP_SETTING_END,
};

static const tp_schema_t tls_cert_schema = {
    .name = "certificate",
    .size = sizeof(tp_tls_cert_cfg_t),
    .settings = tls_cert_settings,
    .check = tls_cert_check,
};

/* A SHA-256 fingerprint: 64 hex digits, colons between bytes allowed. */
static bool fingerprint_ok(const char *s) {
    size_t digits = 0;
    for (; *s; s++) {
        if (*s == ':')
            continue;
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
            return false;
        digits++;
    }
    return digits == 64;
}

static int tls_rpk_check(void *section, char *err, size_t errlen, const char **key) {
    tp_tls_rpk_cfg_t *r = section;
    if (!r->key != !r->public_key) {
        *key = r->key ? "public_key" : "key";
        snprintf(err, errlen, "a raw public key needs both 'key' and 'public_key'");
        return TP_ERR_CONFIG;
    }
    for (size_t i = 0; i < r->peers.n; i++)
        if (!fingerprint_ok(r->peers.items[i])) {
            *key = "peers";
            snprintf(err, errlen, "'%s' is not a SHA-256 fingerprint (64 hex digits)",
                     r->peers.items[i]);
            return TP_ERR_CONFIG;
        }
    return 0;
}

static const tp_setting_t tls_rpk_settings[] = {
    TP_SETTING_STRING(tp_tls_rpk_cfg_t, key, NULL,
                      "PEM private key this endpoint authenticates with as a raw public key"),
    TP_SETTING_STRING(tp_tls_rpk_cfg_t, public_key, NULL,
                      "PEM SubjectPublicKeyInfo of that key (certtool --load-privkey K "
                      "--pubkey-info)"),
    TP_SETTING_STRINGS(tp_tls_rpk_cfg_t, peers, NULL,
                       "clients' raw public keys accepted: SHA-256 (hex) of their "
                       "SubjectPublicKeyInfo DER"),
    TP_SETTING_END,
};

static const tp_schema_t tls_rpk_schema = {.name = "raw_public_key",
                                           .size = sizeof(tp_tls_rpk_cfg_t),
                                           .settings = tls_rpk_settings,
                                           .check = tls_rpk_check};

static int tls_check(void *section, char *err, size_t errlen, const char **key) {
    tp_tls_cfg_t *t = section;
    bool on = t->certificates.n > 0 || t->raw_public_key.key;
    if (!on && (t->client_ca || t->raw_public_key.peers.n || t->client_auth != TP_TLS_AUTH_NONE)) {
        *key = "certificates";
        snprintf(err, errlen,
                 "client authentication needs TLS: give 'certificates' or 'raw_public_key'");
        return TP_ERR_CONFIG;
    }
    if (t->client_auth != TP_TLS_AUTH_NONE && !t->client_ca && !t->raw_public_key.peers.n) {
        *key = "client_auth";
        snprintf(err, errlen,
                 "client_auth needs 'client_ca' (certificates) or raw_public_key.peers (keys)");
        return TP_ERR_CONFIG;
    }
    if (t->client_auth == TP_TLS_AUTH_NONE && (t->client_ca || t->raw_public_key.peers.n)) {
        *key = "client_auth";
        snprintf(err, errlen, "client_ca or raw_public_key.peers given but client_auth is none");
        return TP_ERR_CONFIG;
    }
    if (t->alpn.n > 16) {
        *key = "alpn";
        snprintf(err, errlen, "at most 16 ALPN protocols");
        return TP_ERR_CONFIG;
    }
    for (size_t i = 0; i < t->alpn.n; i++) {
        size_t n = strlen(t->alpn.items[i]);
        if (n == 0 || n > 255) {
            *key = "alpn";
            snprintf(err, errlen, "an ALPN protocol name is 1 to 255 bytes");
            return TP_ERR_CONFIG;
        }
    }
    return 0;
}

static const tp_setting_t tls_settings[] = {
    TP_SETTING_LIST(tp_tls_cfg_t, certificates, &tls_cert_schema,
                    "certificates served (TLS is on when this or raw_public_key is set); SNI picks "
                    "one: an exact name, then a wildcard (*.example.com), else the first"),
    TP_SETTING_ENUM(tp_tls_cfg_t, min_version, "1.3", tls_version_names,
                    "lowest TLS version accepted: 1.3 or 1.2"),
    TP_SETTING_ENUM(tp_tls_cfg_t, profile, "modern", tls_profile_names,
                    "algorithms: modern (AEAD, ECDHE), compat (GnuTLS NORMAL) or fips (FIPS "
                    "140-approved only)"),
    TP_SETTING_STRINGS(tp_tls_cfg_t, alpn, NULL,
                       "ALPN protocols offered, in preference order (empty: http endpoints "
                       "offer http/1.1, tcp endpoints none)"),
    TP_SETTING_BOOL(tp_tls_cfg_t, session_tickets, "true",
                    "resumption with session tickets; the key is made at start-up and shared by "
                    "all workers"),
    TP_SETTING_DURATION(tp_tls_cfg_t, ticket_lifetime, "6h", TP_SECONDS(60), TP_SECONDS(604800),
                        "a ticket's lifetime; GnuTLS derives a new ticket key every such period"),
    TP_SETTING_DURATION(tp_tls_cfg_t, handshake_timeout, "10s", TP_MS(10), TP_SECONDS(600),
                        "the ClientHello and the whole handshake must be over within this"),
    TP_SETTING_ENUM(tp_tls_cfg_t, client_auth, "none", tls_auth_names,
                    "client certificates (mTLS): none, optional (verified if sent; hooks judge) "
                    "or required"),
    TP_SETTING_STRING(tp_tls_cfg_t, client_ca, NULL,
                      "PEM CA bundle that client certificates must chain to"),
    TP_SETTING_SECTION(tp_tls_cfg_t, raw_public_key, &tls_rpk_schema,
                       "RFC 7250 raw public keys instead of certificates"),
    TP_SETTING_END,
};

static const tp_schema_t tls_schema = {
    .name = "tls", .size = sizeof(tp_tls_cfg_t), .settings = tls_settings, .check = tls_check};

static int endpoint_check(void *section, char *err, size_t errlen, const char **key) {
    tp_endpoint_cfg_t *ep = section;
    if (ep->listen.n == 0) {
        *key = "listen";
        snprintf(err, errlen, "an endpoint needs at least one listen address");
        return TP_ERR_CONFIG;
    }
    if (ep->type != TP_ONRAMP_TCP && ep->upstream) {
        *key = "upstream";
        snprintf(err, errlen,
                 "'upstream' is for tcp endpoints; http_proxy goes where each request says, http "
                 "where its routes say");
        return TP_ERR_CONFIG;
    }
    if (!tp__onramp_routes(ep->type) && ep->routes.n) {
        *key = "routes";
        snprintf(err, errlen, "'routes' are for http and http3 endpoints");
        return TP_ERR_CONFIG;
    }
    if (tp__onramp_quic(ep->type) && (!ep->quic.certificate || !ep->quic.private_key)) {
        *key = "quic";
        snprintf(err, errlen, "an %s endpoint needs quic.certificate and quic.private_key",
                 onramp_names[ep->type]);
        return TP_ERR_CONFIG;
    }
    if (tp__onramp_quic(ep->type) && TP_TLS_ON(ep)) {
        *key = "tls";
        snprintf(err, errlen,
                 "an %s endpoint's TLS is QUIC's: give its certificate in quic.certificate and "
                 "quic.private_key",
                 onramp_names[ep->type]);
        return TP_ERR_CONFIG;
    }
    if (tp__onramp_quic(ep->type) && ep->proxy_protocol != TP_PP_NONE) {
        *key = "proxy_protocol";
        snprintf(err, errlen, "the PROXY protocol is for TCP endpoints");
        return TP_ERR_CONFIG;
    }
    if (ep->alt_svc) {
        for (const char *c = ep->alt_svc; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                *key = "alt_svc";
                snprintf(err, errlen, "an Alt-Svc value has no control characters");
                return TP_ERR_CONFIG;
            }
        if (ep->type != TP_ONRAMP_HTTP && ep->type != TP_ONRAMP_HTTP_PROXY) {
            *key = "alt_svc";
            snprintf(err, errlen, "'alt_svc' is for http and http_proxy endpoints");
            return TP_ERR_CONFIG;
        }
    }
    return 0;
}

static int root_check(void *section, char *err, size_t errlen, const char **key) {
    tp_config_t *cfg = section;
    for (size_t i = 0; i < cfg->upstreams.n; i++) {
        const tp_upstream_cfg_t *a = TP_LIST_AT(tp_upstream_cfg_t, cfg->upstreams, i);
        for (size_t j = i + 1; j < cfg->upstreams.n; j++)
            if (strcmp(a->name, TP_LIST_AT(tp_upstream_cfg_t, cfg->upstreams, j)->name) == 0) {
                *key = "upstreams";
                snprintf(err, errlen, "upstream name '%s' is used twice", a->name);
                return TP_ERR_CONFIG;
            }
    }
    for (size_t i = 0; i < cfg->endpoints.n; i++) {
        tp_endpoint_cfg_t *ep = TP_LIST_AT(tp_endpoint_cfg_t, cfg->endpoints, i);
        for (size_t r = 0; r < ep->routes.n; r++) {
            tp_route_cfg_t *rt = TP_LIST_AT(tp_route_cfg_t, ep->routes, r);
            rt->upstream_index = -1;
            if (!rt->upstream)
                continue;
            for (size_t u = 0; u < cfg->upstreams.n && rt->upstream_index < 0; u++)
                if (strcmp(rt->upstream, TP_LIST_AT(tp_upstream_cfg_t, cfg->upstreams, u)->name) ==
                    0)
                    rt->upstream_index = (int)u;
            if (rt->upstream_index < 0) {
                *key = "endpoints";
                snprintf(err, errlen, "endpoint '%s', route %zu: no upstream named '%s'", ep->name,
                         r + 1, rt->upstream);
                return TP_ERR_CONFIG;
            }
        }
    }
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
         .doc = "on-ramp: tcp (L4 to 'upstream'), http_proxy (HTTP/1.1 forward proxy with "
                "CONNECT), http (HTTP/1.1 server: reverse proxy by routes, or hooks answer), "
                "http3 (the same server over QUIC) or http3_proxy (forward proxy over QUIC)",
         .flags = TP_SETTING_REQUIRED},
        TP_SETTING_ADDRS(
            tp_endpoint_cfg_t, listen, NULL,
            "addresses to listen on, ip:port ([::1]:port for IPv6; UDP for http3); port 0 picks a "
            "free port"),
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
        TP_SETTING_LIST(tp_endpoint_cfg_t, routes, &route_schema,
                        "http: where requests go, the first match wins"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, forwarding, &forwarding_schema,
                           "HTTP endpoints: the headers this hop adds (Via, X-Forwarded-*)"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, quic, &quic_schema,
                           "http3 and http3_proxy: QUIC and its TLS certificate"),
        TP_SETTING_STRING(tp_endpoint_cfg_t, alt_svc, NULL,
                          "http, http_proxy: an Alt-Svc value for responses, e.g. 'h3=\":8443\"; "
                          "ma=86400' to announce an http3 endpoint (RFC 7838)"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, tls, &tls_schema,
                           "TLS termination: the client speaks TLS, then the endpoint's protocol"),
        TP_SETTING_SECTION(tp_endpoint_cfg_t, origin_tls, &origin_tls_schema,
                           "http_proxy: TLS to https:// request targets (port 443 by default)"),
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
        TP_SETTING_LIST(tp_config_t, upstreams, &upstream_schema,
                        "named server groups that http endpoints' routes send requests to"),
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
