/* model.h: the framework's configuration structs (runtime and endpoints) that the schemas fill. */
#ifndef TP_CONFIG_MODEL_H
#define TP_CONFIG_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "turnpike/settings.h"

typedef enum tp_onramp_type {
    TP_ONRAMP_TCP = 0,     /* L4: bytes to a fixed or hook-chosen upstream */
    TP_ONRAMP_HTTP_PROXY,  /* HTTP/1.1 forward proxy: absolute-form requests and CONNECT */
    TP_ONRAMP_HTTP,        /* HTTP/1.1 server: reverse proxy by routes, or answered by hooks */
    TP_ONRAMP_HTTP3,       /* HTTP/3 server: as TP_ONRAMP_HTTP, over QUIC */
    TP_ONRAMP_HTTP3_PROXY, /* HTTP/3 forward proxy: CONNECT and requests to :authority */
} tp_onramp_type_t;

/* Whether an endpoint's requests go by its routes to upstream groups (a server), rather than to
 * their own targets (a forward proxy). */
static inline bool tp__onramp_routes(int type) {
    return type == TP_ONRAMP_HTTP || type == TP_ONRAMP_HTTP3;
}

/* Whether an endpoint listens on UDP for QUIC. */
static inline bool tp__onramp_quic(int type) {
    return type == TP_ONRAMP_HTTP3 || type == TP_ONRAMP_HTTP3_PROXY;
}

typedef enum tp_balance {
    TP_BALANCE_ROUND_ROBIN = 0,
    TP_BALANCE_LEAST_CONN,
    TP_BALANCE_HASH, /* consistent hash of hash_key */
} tp_balance_t;

typedef enum tp_health_check {
    TP_HEALTH_NONE = 0,
    TP_HEALTH_TCP,  /* a connect that succeeds */
    TP_HEALTH_HTTP, /* GET path answered 2xx or 3xx */
} tp_health_check_t;

typedef enum tp_xff_mode {
    TP_XFF_OFF = 0,
    TP_XFF_APPEND,  /* X-Forwarded-For gets the client address appended; -Proto and -Host set */
    TP_XFF_REPLACE, /* incoming X-Forwarded-* are dropped, then set from this hop alone */
} tp_xff_mode_t;

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
    uint64_t body_read;          /* a request body must make progress within, ms */
    uint64_t response;           /* an upstream's response head must arrive within, ms */
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
    uint64_t max_body_size;   /* request bodies larger are refused with 413 (0 = unlimited) */
    uint64_t max_body_buffer; /* bytes a body hook may hold (TP_BODY_BUFFER) per body */
    int64_t max_connections;  /* per worker; 0 = unlimited */
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

typedef struct tp_health_cfg {
    int check;             /* tp_health_check_t */
    char *path;            /* HTTP check: the path asked for */
    char *host;            /* HTTP check: the Host header (NULL: the server's host:port) */
    uint64_t interval;     /* between checks of one server, ms */
    uint64_t timeout;      /* one check's connect + answer, ms */
    int64_t rise, fall;    /* successes that bring a server back, failures that take it out */
    int64_t max_fails;     /* passive: failed exchanges within fail_timeout take it out (0 off) */
    uint64_t fail_timeout; /* passive: the window, and how long it stays out, ms */
} tp_health_cfg_t;

typedef struct tp_pool_cfg {
    int64_t max_idle;      /* idle kept-alive connections per server and worker */
    int64_t max_total;     /* connections per server and worker, busy or idle (0 = unlimited) */
    uint64_t idle_timeout; /* an idle pooled connection is closed after this long, ms */
} tp_pool_cfg_t;

typedef enum tp_tls_version {
    TP_TLS_V1_2 = 0,
    TP_TLS_V1_3,
} tp_tls_version_t;

typedef enum tp_tls_profile {
    TP_TLS_MODERN = 0, /* AEAD suites, ECDHE, TLS 1.3 (and 1.2 when allowed) */
    TP_TLS_COMPAT,     /* GnuTLS's NORMAL set: older clients too */
    TP_TLS_FIPS,       /* FIPS 140-approved algorithms only */
} tp_tls_profile_t;

typedef enum tp_tls_ocsp_mode {
    TP_OCSP_IF_STAPLED = 0, /* a stapled response is checked; revoked or invalid fails */
    TP_OCSP_REQUIRE,        /* no valid stapled response fails the handshake */
    TP_OCSP_OFF,            /* no status request is sent */
} tp_tls_ocsp_mode_t;

/* Turnpike as a TLS client: an upstream group's `tls`, an http_proxy endpoint's `origin_tls`. */
typedef struct tp_tls_client_cfg {
    char *ca;                /* PEM trust anchors (NULL: the system trust store) */
    bool verify;             /* chain, validity, revocation and name are checked */
    char *server_name;       /* SNI and the name checked (NULL: the server's host) */
    tp_str_list_t alpn;      /* protocols offered (empty: http/1.1) */
    char *certificate;       /* PEM chain for upstream mTLS (NULL: none) */
    char *private_key;       /* ... and its key */
    int profile;             /* tp_tls_profile_t */
    int min_version;         /* tp_tls_version_t */
    tp_str_list_t crl;       /* PEM files of CRLs checked with the chain */
    int ocsp;                /* tp_tls_ocsp_mode_t */
    bool session_resumption; /* per worker and server: the last session is resumed */
} tp_tls_client_cfg_t;

/* A named group of servers that routes send requests to. */
typedef struct tp_upstream_cfg {
    char *name;
    tp_str_list_t servers; /* "host:port" ([v6]:port) */
    int balance;           /* tp_balance_t */
    char *hash_key;        /* TP_BALANCE_HASH: "client_ip" or "header:<name>" */
    int64_t retries;       /* idempotent requests retried on a fresh connection, at most */
    tp_pool_cfg_t keepalive;
    tp_health_cfg_t health;
    tp_tls_client_cfg_t *tls; /* TLS to the servers; NULL (no `tls:` key): plain TCP */
} tp_upstream_cfg_t;

/* Where an `http` endpoint sends a request: the first route that matches wins. */
typedef struct tp_route_cfg {
    char *host;            /* exact ("api.example.com") or "*.example.com"; NULL: any */
    char *path_prefix;     /* NULL: any */
    tp_str_list_t methods; /* empty: any */
    char *upstream;        /* the upstream group's name; NULL: only hooks answer */
    int upstream_index;    /* filled by the check: index in tp_config_t.upstreams, -1 none */
} tp_route_cfg_t;

/* The headers an HTTP hop adds about itself. */
typedef struct tp_forwarding_cfg {
    bool via;        /* Via: 1.1 <via_name> on requests and responses */
    char *via_name;  /* the pseudonym in Via (RFC 9110 7.6.3) */
    int x_forwarded; /* tp_xff_mode_t */
    bool forwarded;  /* RFC 7239 Forwarded: for=...;proto=...;host=... appended */
} tp_forwarding_cfg_t;

/* An HTTP/3 endpoint's QUIC settings (tokio-quiche's defaults; see turnpike/quic.h). */
typedef struct tp_quic_cfg {
    char *certificate;       /* PEM certificate chain */
    char *private_key;       /* PEM private key */
    int retry;               /* tp_quic_retry_t: always, never, under_load */
    int64_t retry_threshold; /* under_load: open handshakes above which Retry is asked */
    int cc;                  /* tp_quic_cc_t: cubic, bbr, reno */
    uint64_t idle_timeout;
    uint64_t handshake_timeout;
    uint64_t initial_max_data;
    uint64_t initial_max_stream_data;
    int64_t max_streams;     /* concurrent requests per connection */
    int64_t max_connections; /* per worker */
    int64_t max_udp_payload; /* PMTUD ceiling; 0: auto (from the route to each client) */
    bool datagrams;
    bool extended_connect; /* RFC 9220: SETTINGS_ENABLE_CONNECT_PROTOCOL, WebSocket over HTTP/3 */
    bool early_data;       /* 0-RTT: safe methods forwarded with Early-Data: 1, others get 425 */
    char *qlog_dir;
    char *keylog_file;
} tp_quic_cfg_t;

typedef enum tp_tls_client_auth {
    TP_TLS_AUTH_NONE = 0,
    TP_TLS_AUTH_OPTIONAL, /* asked for; verified when sent, the result is the hooks' to judge */
    TP_TLS_AUTH_REQUIRED, /* a client without a valid certificate (or listed key) is refused */
} tp_tls_client_auth_t;

/* One certificate chain and its key; SNI picks among an endpoint's certificates. */
typedef struct tp_tls_cert_cfg {
    char *cert;             /* PEM chain, leaf first */
    char *key;              /* PEM private key */
    char *ocsp_staple_file; /* DER OCSP response stapled for this certificate (NULL: none) */
} tp_tls_cert_cfg_t;

/* RFC 7250 raw public keys: this endpoint's own, and the clients' keys it accepts. */
typedef struct tp_tls_rpk_cfg {
    char *key;           /* PEM private key (NULL: no raw public key of our own) */
    char *public_key;    /* PEM SubjectPublicKeyInfo of that key */
    tp_str_list_t peers; /* SHA-256 (hex) of the SubjectPublicKeyInfo of accepted clients */
} tp_tls_rpk_cfg_t;

typedef struct tp_tls_cfg {
    tp_list_t certificates;     /* of tp_tls_cert_cfg_t; TLS is on when this or rpk.key is set */
    int min_version;            /* tp_tls_version_t */
    int profile;                /* tp_tls_profile_t */
    tp_str_list_t alpn;         /* protocols offered, in preference order */
    bool session_tickets;       /* resumption with tickets (keys shared by all workers) */
    uint64_t ticket_lifetime;   /* ms; GnuTLS rotates the derived ticket keys on this period */
    uint64_t handshake_timeout; /* ClientHello and handshake must be over within, ms */
    int client_auth;            /* tp_tls_client_auth_t */
    char *client_ca;            /* PEM CA bundle client certificates are verified against */
    tp_tls_rpk_cfg_t raw_public_key;
} tp_tls_cfg_t;

/* True when the endpoint terminates TLS. */
#define TP_TLS_ON(cfg) ((cfg)->tls.certificates.n > 0 || (cfg)->tls.raw_public_key.key != NULL)

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
    tp_list_t routes; /* http: of tp_route_cfg_t */
    tp_forwarding_cfg_t forwarding;
    tp_quic_cfg_t quic; /* http3, http3_proxy */
    char *alt_svc;      /* http: an Alt-Svc field value added to responses (RFC 7838) */
    tp_tls_cfg_t tls;
    tp_tls_client_cfg_t origin_tls; /* http_proxy: TLS to https:// targets */
    void *app;                      /* the app's per-endpoint section (indirect) */
} tp_endpoint_cfg_t;

typedef struct tp_runtime_cfg {
    int64_t workers; /* 0 = auto (one per core) */
    uint64_t drain_timeout;
    int log_level; /* tp_log_level_t */
    bool trace_hooks;
    uint64_t buffer_size; /* pooled read buffer size */
    int64_t busy_poll_us; /* a worker polls without sleeping this long after its last read */
} tp_runtime_cfg_t;

typedef struct tp_config {
    tp_runtime_cfg_t runtime;
    tp_list_t endpoints; /* of tp_endpoint_cfg_t */
    tp_list_t upstreams; /* of tp_upstream_cfg_t */
    void *app;           /* the app's global section (indirect) */
} tp_config_t;

/*
 * The root schema with the app's sections plugged in. `app` and `app_endpoint` may be NULL (then
 * only an empty or absent `app:` is accepted). The schemas live in `storage`, which must outlive
 * use.
 */
typedef struct tp_config_schemas {
    tp_setting_t root_settings[5];
    tp_setting_t endpoint_settings[32];
    tp_schema_t root, endpoint, app, app_endpoint;
} tp_config_schemas_t;

void tp__config_schemas_init(tp_config_schemas_t *storage, const tp_setting_t *app_settings,
                             size_t app_size, const tp_setting_t *app_endpoint_settings,
                             size_t app_endpoint_size);

#endif
