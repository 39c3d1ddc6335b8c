/* group_state.h: an upstream group's private state, shared by group.c (balance, health states)
 * and health.c (the active checks' I/O). */
#ifndef TP_OFFRAMP_GROUP_STATE_H
#define TP_OFFRAMP_GROUP_STATE_H

#include <netdb.h>

#include "group.h"

/* A check's status line must come in this many bytes (with its CRLF). */
#define TP_HEALTH_MAX_STATUS 512

typedef struct tp_group_srv {
    tp_group_server_t pub; /* first: what tp__group_server() and tp__group_pick() hand out */
    tp_group_t *g;
    const char *name; /* the configured "host:port": log lines, the ring, the default Host */

    /* Two independent reasons to be out; healthy is neither. */
    bool passive_out; /* max_fails reached: out until out_until */
    bool check_down;  /* `fall` checks failed (or passive took it out): needs `rise` good ones */
    uint64_t out_until;
    uint64_t down_since;   /* loop time it went out, for any_if_none's "out the longest" */
    uint64_t window_start; /* passive: when the current fail_timeout window began */
    int64_t window_fails;  /* ... and the failures counted in it */
    int64_t oks_in_row;    /* active: consecutive good checks */
    int64_t fails_in_row;  /* ... and failed ones */

    /* Active checks (health.c). One check at a time: `busy` from its start until every resource
     * it used has been given back (address lookup answered, socket closed). */
    bool literal; /* host is an IP address: addr is used as is, no lookup */
    tp_addr_t addr;
    char port_str[6];
    uv_timer_t timer; /* the next check, or the running check's deadline */
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai_list, *ai_next; /* a name's addresses, tried in order within a check */
    bool timer_open, tcp_open, gai_pending, busy, decided;
    char *req; /* the HTTP check's request */
    size_t req_len;
    char rbuf[TP_HEALTH_MAX_STATUS];
    size_t rlen;
} tp_group_srv_t;

/* A point of the consistent-hash ring: a server's virtual node. */
typedef struct tp_ring_point {
    uint64_t hash;
    uint32_t srv;
} tp_ring_point_t;

struct tp_group {
    uv_loop_t *loop;
    const tp_upstream_cfg_t *cfg;
    tp_group_srv_t *srv;
    size_t n;
    tp_ring_point_t *ring; /* sorted by hash; only for balance hash */
    size_t nring;
    size_t rr;                /* round-robin position: the next server to look at */
    uv_timer_t passive_timer; /* the earliest out_until of passively failed servers */
    uint64_t rng;             /* xorshift state for the checks' jitter */
    size_t open;              /* handles and requests whose callbacks are still to come */
    bool closing;
};

/* health.c: starts every server's checks (cfg->health.check is not none). */
void tp__health_start(tp_group_t *g);
/* health.c: abandons checks in flight and closes the check handles (the group is closing). */
void tp__health_close(tp_group_t *g);

/* group.c: a check ended; runs the rise/fall state machine. `reason` says why it failed. */
void tp__group_check_done(tp_group_srv_t *s, bool ok, const char *reason);
/* group.c: a handle closed or a request called back; false, or true when that freed the group
 * (closing and nothing left). */
bool tp__group_put(tp_group_t *g);

#endif
