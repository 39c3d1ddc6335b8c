/* pool.h: a worker's idle kept-alive upstream connections, shared by its client connections. */
#ifndef TP_OFFRAMP_POOL_H
#define TP_OFFRAMP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/buf.h"

struct tp_upstream;

struct tp_tls_client;

/*
 * Connections are kept by key: the endpoint (its egress settings made the connection), the host,
 * the port, and for TLS the client configuration and server name it was made with (a plain and a
 * TLS connection, or two TLS configurations, never serve each other). A parked connection is read
 * while idle: if the server speaks or closes, it is dropped; a TLS one is read through its
 * session, so that TLS 1.3 NewSessionTicket and KeyUpdate messages keep it (a new ticket is taken
 * for resumption) while application data, an alert or close_notify drop it. Each is dropped after
 * its own idle timeout, and the pool as a whole holds at most TP_POOL_MAX_IDLE (the oldest go
 * first). Only the worker's thread touches it.
 */
#define TP_POOL_MAX_IDLE 4096

typedef struct tp_pool_stats {
    uint64_t parked;      /* connections put in */
    uint64_t reused;      /* ... taken out again for a request */
    uint64_t closed_idle; /* ... dropped after their idle timeout */
    uint64_t closed_peer; /* ... dropped because the server spoke or closed while idle */
    uint64_t closed_full; /* ... not kept: the key's max_idle, or the pool's cap */
    size_t idle;          /* idle now */
} tp_pool_stats_t;

typedef struct tp_pool tp_pool_t;

/* Makes the worker's pool on its loop (buffers for idle reads come from `bufs`). */
int tp__pool_new(uv_loop_t *loop, tp_bufpool_t *bufs, tp_pool_t **out);
/* Closes every idle connection; the memory goes when their handles have closed. */
void tp__pool_close(tp_pool_t *p);

/* Whether `up` goes to host:port with the TLS client configuration and server name given (NULL,
 * NULL: plain TCP): the part of the key that decides whether a connection can serve a request. */
bool tp__pool_same_dest(const struct tp_upstream *up, const char *host, size_t hostlen,
                        uint16_t port, const struct tp_tls_client *tls, const char *tls_name);

/* An idle connection for the key, detached from the pool (not reading), or NULL. `tls` and
 * `tls_name` (NULL, NULL: plain TCP) as in tp_upstream_t. */
struct tp_upstream *tp__pool_take(tp_pool_t *p, size_t endpoint, const char *host, size_t hostlen,
                                  uint16_t port, const struct tp_tls_client *tls,
                                  const char *tls_name);
/* How many idle connections the key has. */
size_t tp__pool_idle(const tp_pool_t *p, size_t endpoint, const char *host, size_t hostlen,
                     uint16_t port, const struct tp_tls_client *tls, const char *tls_name);
/*
 * Parks `up` (already detached from its client connection: up->conn NULL, nothing queued, not at
 * EOF; a TLS stream already told it is parked, tp__tls_park()) under the key, its host, port and
 * TLS, for at most idle_ms, unless the key has max_idle idle already (then it is closed). The
 * pool owns it from then on.
 */
void tp__pool_park(tp_pool_t *p, struct tp_upstream *up, size_t endpoint, size_t max_idle,
                   uint64_t idle_ms);

void tp__pool_stats(const tp_pool_t *p, tp_pool_stats_t *out);

#endif
