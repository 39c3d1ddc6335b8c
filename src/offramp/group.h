/* group.h: upstream groups on one worker: their servers, load balancing, and health. */
#ifndef TP_OFFRAMP_GROUP_H
#define TP_OFFRAMP_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/model.h"
#include "turnpike/common.h"

/*
 * A configured upstream group (tp_upstream_cfg_t) as one worker sees it. Every worker has its own
 * instance: its own round-robin position, in-flight counts, passive failure counts and active
 * health checks, so nothing here is shared between threads and nothing takes a lock. (A server
 * that is down is therefore found out by each worker on its own; checks cost one connection per
 * worker per interval.) Every function must be called on the loop's thread.
 */
typedef struct tp_group tp_group_t;

/* One server of a group. Read-only for users of this header. */
typedef struct tp_group_server {
    char host[256]; /* a DNS name or an IP literal, without brackets */
    uint16_t port;
    size_t index;      /* in the group's configured order */
    bool healthy;      /* in rotation: passed its checks and not taken out by passive failures */
    uint32_t inflight; /* exchanges using it now (tp__group_acquire .. release) */
    /* Counters for metrics and tests. */
    uint64_t picks, failures, checks_ok, checks_failed;
    /* A TLS group: the session this worker resumes with the server (tls/tls.h), else NULL. */
    struct tp_tls_saved *tls_session;
} tp_group_server_t;

/* How an exchange with a server ended, for passive failure detection. */
typedef enum tp_group_outcome {
    TP_GROUP_OK = 0,         /* a response came (any status) */
    TP_GROUP_CONNECT_FAILED, /* no connection (refused, timeout, unreachable, DNS) */
    TP_GROUP_RESET,          /* the connection failed before or while the response came */
    TP_GROUP_TIMEOUT,        /* the server did not answer in time */
    TP_GROUP_ABANDONED,      /* the client went away: says nothing about the server */
} tp_group_outcome_t;

/*
 * Makes the group on `loop` from its configuration (which must outlive it) and starts its active
 * health checks, if configured. Servers start healthy; with active checks they stay in rotation
 * until `fall` checks fail. Returns 0, TP_ERR_INVAL (a bad server) or TP_ERR_NOMEM.
 */
int tp__group_new(uv_loop_t *loop, const tp_upstream_cfg_t *cfg, tp_group_t **out);

/* Asynchronous teardown: checks in flight are abandoned, handles close, the memory goes when the
 * last handle closed. Safe with exchanges still holding servers (their release is then a no-op
 * that must not be made: callers release before closing the group, at worker shutdown). */
void tp__group_close(tp_group_t *g);

const tp_upstream_cfg_t *tp__group_cfg(const tp_group_t *g);
size_t tp__group_size(const tp_group_t *g);
tp_group_server_t *tp__group_server(tp_group_t *g, size_t i);

/*
 * Picks a healthy server for a new exchange by the group's balance: round robin, least
 * connections (fewest in flight, ties by round robin), or a consistent hash of `key` (a ring
 * with virtual nodes, so that a server going out moves only its own keys; an empty key hashes
 * like any other). `avoid` (may be NULL) is not picked when another healthy server exists: a
 * retry goes elsewhere. When no server is healthy, returns the one that has been out the
 * longest if `any_if_none` (a last resort), else NULL.
 */
tp_group_server_t *tp__group_pick(tp_group_t *g, tp_str_t key, const tp_group_server_t *avoid,
                                  bool any_if_none);

/* An exchange starts using `s` (counts for least_conn). */
void tp__group_acquire(tp_group_t *g, tp_group_server_t *s);
/* ... and ends, with its outcome: failures count toward max_fails within fail_timeout, which
 * takes the server out for fail_timeout (then it is tried again; with active checks it needs
 * `rise` good checks). */
void tp__group_release(tp_group_t *g, tp_group_server_t *s, tp_group_outcome_t outcome);

/* Logged as {"msg":"upstream health","group","server","healthy","reason"} on every change. */

#endif
