/* model.h: the framework's configuration structs (runtime and endpoints) that the schemas fill. */
#ifndef TP_CONFIG_MODEL_H
#define TP_CONFIG_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "turnpike/settings.h"

typedef enum tp_onramp_type {
    TP_ONRAMP_TCP = 0,    /* L4: bytes to a fixed or hook-chosen upstream */
    TP_ONRAMP_HTTP_PROXY, /* HTTP/1.1 forward proxy: absolute-form requests and CONNECT */
} tp_onramp_type_t;

typedef enum tp_pp_mode {
    TP_PP_NONE = 0,
    TP_PP_MODE_V1,
    TP_PP_MODE_V2,
    TP_PP_MODE_ANY,
} tp_pp_mode_t;

typedef enum tp_log_level {
    TP_LOG_DEBUG = 0,
    TP_LOG_INFO,
    TP_LOG_WARN,
    TP_LOG_ERROR,
} tp_log_level_t;

typedef struct tp_timeouts_cfg {
    uint64_t connect;            /* upstream connect, ms */
    uint64_t idle;               /* nothing moved either way, ms */
    uint64_t header_read;        /* a request head must arrive within, ms */
    uint64_t decision;           /* default timeout of a pending hook decision, ms */
    uint64_t tunnel_idle_client; /* a tunnel's client sent nothing for this long, ms (0 = off) */
    uint64_t
        tunnel_idle_upstream; /* a tunnel's upstream sent nothing for this long, ms (0 = off) */
    uint64_t max_lifetime;    /* any connection, from accept, ms (0 = off) */
    uint64_t drain;           /* on SIGTERM, this endpoint's deadline (0 = runtime's), ms */
    uint64_t proxy_protocol;  /* the PROXY header must arrive within this, ms */
} tp_timeouts_cfg_t;

typedef struct tp_limits_cfg {
    uint64_t max_header_bytes; /* request line plus headers */
    int64_t max_headers;
    int64_t max_connections; /* per worker; 0 = unlimited */
} tp_limits_cfg_t;

typedef struct tp_egress_cfg {
    uint64_t attempt_delay;    /* Happy Eyeballs connection attempt delay, ms */
    uint64_t resolution_delay; /* Happy Eyeballs: how long an A answer waits for the AAAA, ms */
    bool nodelay;              /* TCP_NODELAY on upstream sockets */
    uint64_t keepalive;        /* TCP keepalive idle time, ms (0 = off) */
    tp_addr_list_t bind;       /* source addresses, at most one per family (port 0 = any) */
    int64_t mark;              /* SO_MARK on upstream sockets (0 = none; needs CAP_NET_ADMIN) */
    int send_proxy_protocol;   /* tp_pp_mode_t: none, v1 or v2 (any is refused) */
} tp_egress_cfg_t;

typedef struct tp_dns_cfg {
    tp_str_list_t servers; /* "ip" or "ip:port" ([v6]:port); empty = /etc/resolv.conf */
    uint64_t timeout;      /* per question and server, ms (doubles each round) */
    int64_t attempts;      /* rounds over the server list */
    uint64_t min_ttl, max_ttl, negative_ttl; /* cache clamps and NXDOMAIN/NODATA time, ms */
    int64_t cache_size;                      /* names per worker */
    bool use_hosts;                          /* /etc/hosts first */
} tp_dns_cfg_t;

typedef struct tp_endpoint_cfg {
    char *name;
    int type; /* tp_onramp_type_t */
    tp_addr_list_t listen;
    char *upstream; /* tcp: host:port */
    tp_cidr_set_t *allow_destinations;
    int64_t backlog;
    uint64_t
        high_watermark; /* bytes queued toward a peer before reading from the other side stops */
    int proxy_protocol; /* tp_pp_mode_t: a PROXY header the client must send first */
    tp_timeouts_cfg_t timeouts;
    tp_limits_cfg_t limits;
    tp_egress_cfg_t egress;
    tp_dns_cfg_t dns;
    void *app; /* the app's per-endpoint section (indirect) */
} tp_endpoint_cfg_t;

typedef struct tp_runtime_cfg {
    int64_t workers; /* 0 = auto (one per core) */
    uint64_t drain_timeout;
    int log_level; /* tp_log_level_t */
    bool trace_hooks;
    uint64_t buffer_size; /* pooled read buffer size */
} tp_runtime_cfg_t;

typedef struct tp_config {
    tp_runtime_cfg_t runtime;
    tp_list_t endpoints; /* of tp_endpoint_cfg_t */
    void *app;           /* the app's global section (indirect) */
} tp_config_t;

/*
 * The root schema with the app's sections plugged in. `app` and `app_endpoint` may be NULL (then
 * only an empty or absent `app:` is accepted). The schemas live in `storage`, which must outlive
 * use.
 */
typedef struct tp_config_schemas {
    tp_setting_t root_settings[4];
    tp_setting_t endpoint_settings[28];
    tp_schema_t root, endpoint, app, app_endpoint;
} tp_config_schemas_t;

void tp__config_schemas_init(tp_config_schemas_t *storage, const tp_setting_t *app_settings,
                             size_t app_size, const tp_setting_t *app_endpoint_settings,
                             size_t app_endpoint_size);

#endif
