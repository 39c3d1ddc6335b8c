/* quic_int.h: private types and cross-file functions of the QUIC runtime (src/quic/). */
#ifndef TP_QUIC_INT_H
#define TP_QUIC_INT_H

#include <stdio.h>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "quic/blocks.h"
#include "turnpike/quic.h"

/* ---- cid.c: connection IDs with a server id and a worker index ---- */

/* Makes a new CID: QUIC-LB first octet, server id, worker index, 12 random bytes. Returns 0 or
 * TP_ERR_IO when the random generator fails. */
int tp__quic_cid_make(uint8_t out[TP_QUIC_CID_LEN], uint16_t server_id, uint8_t worker);

/* True when `cid` has this runtime's layout (length and first octet); then fills what it
 * carries. Either out pointer may be NULL. */
bool tp__quic_cid_parse(const uint8_t *cid, size_t len, uint16_t *server_id, uint8_t *worker);

/* The stateless reset token of a CID: HKDF of the secret and the CID, so that any worker or
 * process with the secret can reset a connection it does not know. Returns 0 or TP_ERR_IO. */
int tp__quic_cid_reset_token(uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], const uint8_t *secret,
                             const uint8_t *cid, size_t cidlen);

/* The process-wide random secret (made once, thread-safe), used when settings.static_secret is
 * NULL. */
const uint8_t *tp__quic_process_secret(void);

/* ---- router.c: CID -> connection map, open addressing, allocation-free lookups ---- */

typedef struct tp_quic_route {
    void *value; /* NULL: empty slot */
    uint8_t len;
    uint8_t cid[NGTCP2_MAX_CIDLEN];
} tp_quic_route_t;

typedef struct tp_quic_router {
    tp_quic_route_t *slots;
    size_t mask; /* capacity - 1 (a power of two) */
    size_t count;
    uint64_t seed; /* keyed hash: peers choose some of the keys (their initial DCIDs) */
} tp_quic_router_t;

/* Returns 0, or TP_ERR_NOMEM. */
int tp__quic_router_init(tp_quic_router_t *r, size_t initial_capacity);
void tp__quic_router_free(tp_quic_router_t *r);
/* Returns 0, TP_ERR_INVAL (empty or over-long CID, NULL value, or the CID is taken), or
 * TP_ERR_NOMEM (growing failed; the map is unchanged). */
int tp__quic_router_insert(tp_quic_router_t *r, const uint8_t *cid, size_t len, void *value);
/* The value, or NULL. Never allocates. */
void *tp__quic_router_lookup(const tp_quic_router_t *r, const uint8_t *cid, size_t len);
/* Removes the CID if it maps to `value` (NULL: whatever it maps to). True when removed. */
bool tp__quic_router_remove(tp_quic_router_t *r, const uint8_t *cid, size_t len, const void *value);

/* Removes every CID that maps to `value`. */
void tp__quic_router_purge(tp_quic_router_t *r, const void *value);

/* ---- token.c: Retry and NEW_TOKEN tokens, authenticated with the secret ---- */

#define TP_QUIC_RETRY_TOKEN_TTL_MS   10000
#define TP_QUIC_REGULAR_TOKEN_TTL_MS ((uint64_t)3600 * 1000)
#define TP_QUIC_TOKEN_MAX            NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN2
/* The longest NEW_TOKEN token a client keeps (any server's; longer ones are ignored). */
#define TP_QUIC_CLIENT_TOKEN_MAX 512

/* Mints a Retry token binding the client address, our Retry SCID and the client's original
 * DCID, stamped with `now_ns`. Returns its length, or TP_ERR_IO. */
ssize_t tp__quic_token_retry_mint(uint8_t out[TP_QUIC_TOKEN_MAX], const uint8_t *secret,
                                  uint32_t version, const tp_addr_t *client,
                                  const ngtcp2_cid *retry_scid, const ngtcp2_cid *odcid,
                                  uint64_t now_ns);

/* Checks a Retry token from an Initial sent to `dcid`; on success fills *odcid. Returns 0,
 * TP_ERR_PROHIBITED (unreadable: not ours, or tampered with), TP_ERR_REFUSED (another client
 * address, another DCID, or expired). */
int tp__quic_token_retry_verify(ngtcp2_cid *odcid, const uint8_t *token, size_t len,
                                const uint8_t *secret, uint32_t version, const tp_addr_t *client,
                                const ngtcp2_cid *dcid, uint64_t ttl_ms, uint64_t now_ns);

/* NEW_TOKEN tokens (sent after a handshake, so the client may skip the Retry next time). */
ssize_t tp__quic_token_regular_mint(uint8_t out[TP_QUIC_TOKEN_MAX], const uint8_t *secret,
                                    const tp_addr_t *client, uint64_t now_ns);
int tp__quic_token_regular_verify(const uint8_t *token, size_t len, const uint8_t *secret,
                                  const tp_addr_t *client, uint64_t ttl_ms, uint64_t now_ns);

/* ---- udp.c: the socket, batched receive (recvmmsg + GRO) and send (sendmmsg + GSO) ---- */

#define TP_QUIC_RX_BATCH   16    /* datagrams per recvmmsg */
#define TP_QUIC_RX_BUFSIZE 65536 /* per datagram: room for a GRO train */
#define TP_QUIC_TX_SLOTS   32    /* super-datagrams queued for one sendmmsg */
#define TP_QUIC_GSO_MAX                                                                            \
    64 /* packets per GSO super-datagram (the kernel's UDP_MAX_SEGMENTS; 64 KiB bounds it first)   \
        */

/* The room in one send slot: a GSO train is under 65000 bytes, and the packet written last
 * (perhaps a PMTUD probe) needs room for a whole max_udp_payload. */
#define TP_QUIC_TX_SLOT_SIZE(max_udp_payload) ((size_t)65000 + (max_udp_payload))

typedef struct tp_quic_tx {
    uint8_t *buf;  /* TP_QUIC_TX_SLOT_SIZE(largest max_udp_payload) bytes */
    size_t len;    /* bytes used */
    size_t seglen; /* GSO segment size (0: one packet) */
    tp_addr_t remote;
    tp_addr_t local; /* source address (used when the socket is bound to a wildcard) */
    uint8_t ecn;
} tp_quic_tx_t;

typedef struct tp_quic_udp {
    int fd;
    int family;
    bool wildcard; /* bound to 0.0.0.0 / ::: send with PKTINFO */
    bool gso;      /* UDP_SEGMENT works (cleared on the first EIO/EINVAL) */
    bool gro;
    int last_ecn;    /* the TOS/TCLASS currently set on the socket (-1: unknown) */
    tp_addr_t local; /* as bound, with the real port */
    uv_poll_t poll;
    int poll_events;
    /* receive: fixed pool, reused for every batch */
    uint8_t *rx_bufs;
    /* send queue */
    tp_quic_tx_t tx[TP_QUIC_TX_SLOTS];
    unsigned tx_head, tx_count; /* ring: slots in use are head .. head+count-1 */
    uint32_t rxq_ovfl;          /* last SO_RXQ_OVFL value seen */
    uint64_t rx_dropped;        /* drops the kernel reported through SO_RXQ_OVFL */
} tp_quic_udp_t;

/* One received datagram (or GRO segment). */
typedef struct tp_quic_rx {
    const uint8_t *data;
    size_t len;
    tp_addr_t remote;
    tp_addr_t local; /* the destination address (PKTINFO), with the bound port */
    uint8_t ecn;
} tp_quic_rx_t;

struct tp_quic_endpoint;
/* Opens and binds the socket (probe: first check that no other socket holds a fixed port).
 * The endpoint polls u->fd itself. Returns 0, TP_ERR_ADDRINUSE, TP_ERR_INVAL, TP_ERR_IO or
 * TP_ERR_NOMEM. */
int tp__quic_udp_open(tp_quic_udp_t *u, const tp_addr_t *bind, bool client, bool probe,
                      size_t max_udp_payload);
/* Closes the socket and frees the buffers (after the poll handle closed). */
void tp__quic_udp_close_fd(tp_quic_udp_t *u);
/* The largest max_udp_payload any connection of an endpoint with these settings may use. */
size_t tp__quic_max_udp_payload_bound(const tp_quic_settings_t *s);
/* The MTU of the kernel's route to `remote` from `local` (NULL or a wildcard: any source) (IP_MTU /
 * IPV6_MTU of a throw-away connected socket: the interface's MTU, or a smaller one the kernel
 * learned for that destination), or 0 when the kernel cannot tell. */
size_t tp__quic_route_mtu(const tp_addr_t *remote, const tp_addr_t *local);
/* Receives one batch and calls tp__quic_endpoint_on_packet for every datagram or segment. Returns
 * the number of datagrams read (0: nothing pending), or a negative errno. */
int tp__quic_udp_recv_batch(tp_quic_udp_t *u, struct tp_quic_endpoint *ep);
/* Reads the ICMP errors queued on the socket (client endpoints); calls
 * tp__quic_endpoint_on_unreachable for each. */
void tp__quic_udp_read_errors(tp_quic_udp_t *u, struct tp_quic_endpoint *ep);
/* A free slot at the tail of the send queue, or NULL when the queue is full. */
tp_quic_tx_t *tp__quic_udp_tx_slot(tp_quic_udp_t *u);
/* Commits the slot returned by tp__quic_udp_tx_slot (len > 0). */
void tp__quic_udp_tx_commit(tp_quic_udp_t *u);
/* Sends what is queued (sendmmsg). Returns 0 when the queue is empty afterwards, TP_ERR_IO when
 * the kernel would block (the rest stays queued and the socket is polled for writability). */
int tp__quic_udp_flush(tp_quic_udp_t *u, struct tp_quic_endpoint *ep);
/* Sends one datagram now (Retry, Version Negotiation, stateless reset, CONNECTION_CLOSE, a
 * packet the full queue could not take), bypassing the queue, with ECN codepoint `ecn` (what
 * ngtcp2 asked for; 0 for stateless packets); dropped (and counted) when the kernel would
 * block. */
void tp__quic_udp_send_now(tp_quic_udp_t *u, struct tp_quic_endpoint *ep, const uint8_t *data,
                           size_t len, const tp_addr_t *remote, const tp_addr_t *local,
                           uint8_t ecn);

/* ---- tls.c: GnuTLS credentials and sessions ---- */

typedef struct tp_quic_tls {
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
    bool server;
    bool verify;
    bool early_data; /* server: accept 0-RTT (settings.early_data) */
    char alpn[TP_QUIC_ALPN_MAX + 1];
    FILE *keylog;
    /* Server: the session ticket key (derived from the endpoint secret and the transport
     * settings, so every member of a group, and every process sharing static_secret, reads the
     * others' tickets) and, with early_data, the anti-replay state. */
    uint8_t ticket_key[64];
    gnutls_anti_replay_t anti_replay;
} tp_quic_tls_t;

/* Window of the 0-RTT anti-replay check (ClientHellos remembered this long): 10 s. */
#define TP_QUIC_ANTI_REPLAY_WINDOW_MS 10000
/* ClientHellos with early data remembered at once (per process); above it 0-RTT is refused. */
#define TP_QUIC_ANTI_REPLAY_SLOTS 16384

int tp__quic_tls_init(tp_quic_tls_t *t, bool server, const tp_quic_settings_t *s,
                      const uint8_t secret[TP_QUIC_SECRET_LEN]);
void tp__quic_tls_free(tp_quic_tls_t *t);
/* Makes a session for a connection; `conn_ref` is stored in it for ngtcp2_crypto. The client
 * side sets SNI and certificate verification for `server_name` (a DNS name, or an IP literal
 * checked against the certificate's IP addresses, whose bytes are kept in `ip_store`, memory that
 * must live as long as the session). Returns 0, TP_ERR_NOMEM or TP_ERR_IO. */
int tp__quic_tls_session_new(tp_quic_tls_t *t, gnutls_session_t *out,
                             ngtcp2_crypto_conn_ref *conn_ref, const char *server_name,
                             uint8_t ip_store[16]);

/* ---- stream.c: per-stream send buffers ---- */

typedef struct tp_quic_chunk {
    struct tp_quic_chunk *next;
    size_t len;
    size_t cap; /* bytes data[] can hold */
    uint8_t data[];
} tp_quic_chunk_t;

typedef struct tp_quic_stream {
    int64_t id;
    void *app_data;
    tp_quic_blocks_t *cache; /* the endpoint's, where chunks come from and go back */
    struct tp_quic_stream *pend_prev, *pend_next; /* on the connection's pending list */
    bool pending;
    bool fin_queued; /* the app finished the stream */
    bool fin_sent;
    bool want_writable;    /* a write was short: tell the app when room frees up */
    bool shut_wr;          /* reset by us or stopped by the peer: nothing more goes out */
    bool peer_stopped;     /* ... by the peer's STOP_SENDING: the app hears it after the write */
    uint64_t blocked_pass; /* the write pass in which flow control blocked it */
    /* Chunks hold bytes [acked, written); bytes [acked, sent) are with ngtcp2 until acked. */
    tp_quic_chunk_t *head, *tail;
    uint64_t head_off; /* stream offset of head->data[0] */
    uint64_t acked;    /* bytes acknowledged (freed) */
    uint64_t sent;     /* bytes handed to ngtcp2 */
    uint64_t written;  /* bytes the app wrote */
    /* manual_consume: bytes given to on_stream_data, and how many of them the app consumed.
     * The rest is credited to the connection's window when the stream closes. */
    uint64_t delivered, consumed;
} tp_quic_stream_t;

tp_quic_stream_t *tp__quic_stream_new(int64_t id, tp_quic_blocks_t *cache);
void tp__quic_stream_del(tp_quic_stream_t *s);
/* Copies up to `room` bytes in; returns the count or TP_ERR_NOMEM. */
ssize_t tp__quic_stream_append(tp_quic_stream_t *s, const uint8_t *data, size_t len, size_t room);
/* Fills `vec` with up to `max` pieces of the unsent bytes; returns how many and sets *total. */
size_t tp__quic_stream_unsent(const tp_quic_stream_t *s, ngtcp2_vec *vec, size_t max,
                              size_t *total);
/* Frees what is acknowledged up to `upto` (a stream offset). */
void tp__quic_stream_acked(tp_quic_stream_t *s, uint64_t upto);
/* Drops unsent bytes (the stream was reset); acked bookkeeping stays valid. */
void tp__quic_stream_drop_unsent(tp_quic_stream_t *s);
static inline size_t tp__quic_stream_buffered(const tp_quic_stream_t *s) {
    return (size_t)(s->written - s->acked);
}
static inline bool tp__quic_stream_has_unsent(const tp_quic_stream_t *s) {
    return !s->shut_wr && (s->sent < s->written || (s->fin_queued && !s->fin_sent));
}

typedef struct tp_quic_smap {
    tp_quic_stream_t **slots;
    size_t mask;
    size_t count;
} tp_quic_smap_t;

/* Returns 0 or TP_ERR_NOMEM. */
int tp__quic_smap_put(tp_quic_smap_t *m, tp_quic_stream_t *s);
tp_quic_stream_t *tp__quic_smap_get(const tp_quic_smap_t *m, int64_t id);
/* Unlinks (does not free) the stream. */
void tp__quic_smap_del(tp_quic_smap_t *m, int64_t id);
/* Frees every stream and the map. */
void tp__quic_smap_free(tp_quic_smap_t *m);

/* ---- conn.c ---- */

typedef enum tp_quic_conn_state {
    TP_QUIC_HANDSHAKE,
    TP_QUIC_ESTABLISHED,
    TP_QUIC_CLOSING,  /* we sent CONNECTION_CLOSE; answer stray packets with it, then free */
    TP_QUIC_DRAINING, /* the peer closed; stay silent, then free */
    TP_QUIC_DEAD,     /* free at the end of the current entry */
} tp_quic_conn_state_t;

typedef struct tp_quic_dgram {
    size_t len;
    uint8_t data[];
} tp_quic_dgram_t;

struct tp_quic_conn {
    struct tp_quic_endpoint *ep;
    ngtcp2_mem mem; /* ngtcp2's allocator over the endpoint's small-object cache (blocks.h) */
    struct tp_quic_conn *prev, *next;             /* the endpoint's connections */
    struct tp_quic_conn *flush_prev, *flush_next; /* the endpoint's flush list */
    bool on_flush_list;
    bool on_blocked_list;
    struct tp_quic_conn *blocked_next;
    ngtcp2_conn *q;
    gnutls_session_t tls;
    ngtcp2_crypto_conn_ref conn_ref;
    uv_timer_t timer;
    bool timer_open;
    bool server;
    tp_quic_conn_state_t state;
    /* This connection's PMTUD ceiling: settings.max_udp_payload, or what auto chose. */
    size_t max_udp_payload;
    int busy;            /* nesting depth of runtime entries: free only at depth 0 */
    bool freed;          /* conn_free ran (the memory goes with the timer handle's close) */
    bool wake_requested; /* call on_wake on the next flush */
    bool close_requested;
    uint64_t close_code;
    char close_reason[1025];
    bool app_closed_notified;
    bool got_packet;          /* a packet from the peer was processed */
    uint32_t key_generations; /* update_key calls (the first one is not a key update) */
    bool confirmed;           /* the handshake is confirmed (RFC 9001 4.1.2) */
    bool close_flushed;       /* client: what was due went out before our CONNECTION_CLOSE */
    bool early_offered;       /* client: resuming with 0-RTT transport parameters */
    /* Client: the server's last NEW_TOKEN token (malloc'd), kept for tp_quic_conn_session(). */
    uint8_t *new_token;
    size_t new_token_len;
    bool early_data_sent;     /* client: ... and the 0-RTT key is in place */
    bool early_data_rejected; /* client: the server refused it */
    void *app_data;
    ngtcp2_path_storage ps; /* the path packets go out on (updated by ngtcp2) */
    ngtcp2_cid odcid;       /* server: the client's first DCID (routed until the handshake) */
    bool odcid_routed;
    uint64_t start_ns;
    tp_quic_smap_t streams;
    uint64_t write_pass;
    bool peer_stops;        /* some stream's peer_stopped waits to be told to the app */
    bool got_reset;         /* a stateless reset ended it */
    bool handshake_counted; /* counted in ep->handshakes_open */
    /* streams with bytes to send, round robin */
    tp_quic_stream_t *pend_head, *pend_tail;
    /* datagrams to send: a ring of pointers */
    tp_quic_dgram_t **dgrams;
    uint32_t dg_head, dg_count, dg_cap;
    /* closing period: the packet we answer with */
    uint8_t *close_pkt;
    size_t close_pkt_len;
    uint32_t close_rx_count; /* packets seen while closing: answer on powers of two */
    FILE *qlog;
    uint8_t verify_ip[16]; /* client: the server IP the certificate must name */
};

/* Server: makes a connection for an accepted Initial. `odcid` is the client's first DCID (the
 * one before a Retry, if any), `retry_scid` our Retry SCID (NULL without Retry). Returns 0 or a
 * TP_ERR_*. */
int tp__quic_conn_accept(struct tp_quic_endpoint *ep, const tp_quic_rx_t *rx,
                         const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                         const ngtcp2_cid *retry_scid, bool token_ok, tp_quic_conn_t **out);
/* Feeds one received packet to the connection. */
void tp__quic_conn_on_packet(tp_quic_conn_t *c, const tp_quic_rx_t *rx);
/* Writes what the connection has to send into the endpoint's send queue. */
void tp__quic_conn_write(tp_quic_conn_t *c);
/* The endpoint's flush: call on_wake if asked, then write. */
void tp__quic_conn_flush(tp_quic_conn_t *c);
/* Closes at once (endpoint close or ICMP): sends CONNECTION_CLOSE if `send`, tells the app with
 * `err`, and marks the connection dead. Never frees: the entry in progress frees it at its end,
 * or (none running) the flush list on the next loop step. Safe to call from anywhere. */
void tp__quic_conn_abort(tp_quic_conn_t *c, int err, bool send, const char *reason);
/* Endpoint close: frees the connection (aborting it first if it still lives) unless a runtime
 * entry is inside it. True when freed. */
bool tp__quic_conn_reap(tp_quic_conn_t *c);
/* A client connection that has not heard from the server yet (ICMP errors may end it). */
bool tp__quic_conn_awaiting_first_packet(const tp_quic_conn_t *c);
/* The stream has something to send: put it on the pending list. */
void tp__quic_conn_stream_ready(tp_quic_conn_t *c, tp_quic_stream_t *s);

/* ---- endpoint.c ---- */

typedef struct tp_quic_handoff tp_quic_handoff_t;

struct tp_quic_endpoint {
    uv_loop_t *loop;
    bool server;
    bool closing;
    bool refusing; /* tp_quic_endpoint_refuse_new(): no new connections */
    tp_quic_settings_t s;
    char *str_alpn, *str_cert, *str_key, *str_ca, *str_qlog, *str_keylog; /* owned copies */
    uint8_t secret[TP_QUIC_SECRET_LEN];
    tp_quic_app_t app;
    void *app_data;
    tp_quic_udp_t udp;
    tp_quic_tls_t tls;
    tp_quic_router_t router;
    tp_quic_conn_t *conns;        /* every connection */
    tp_quic_blocks_t blocks;      /* send-buffer blocks for reuse (streams, HTTP/3 bodies) */
    uint32_t handshakes_open;     /* for TP_QUIC_RETRY_UNDER_LOAD */
    tp_quic_conn_t *flush_head;   /* connections to wake or write on the next idle */
    tp_quic_conn_t *blocked_head; /* connections waiting for send-queue room */
    uv_idle_t idle;
    bool idle_active;
    int in_recv; /* inside a receive batch: flush once at its end */
    /* stateless reset token bucket */
    uint64_t reset_tokens_ms; /* refill clock, ms */
    uint32_t reset_tokens;
    tp_quic_stats_t stats;
    /* closing */
    int handles_open;
    void (*close_cb)(void *arg);
    void *close_arg;
    /* group membership (NULL when alone) */
    struct tp_quic_group *group;
    unsigned worker;
    tp_quic_handoff_t *handoff;
};

/* Called by udp.c for every received datagram (or GRO segment). */
void tp__quic_endpoint_on_packet(struct tp_quic_endpoint *ep, const tp_quic_rx_t *rx);
/* Called by udp.c for an ICMP error about a datagram we sent to `remote`. */
void tp__quic_endpoint_on_unreachable(struct tp_quic_endpoint *ep, const tp_addr_t *remote);
/* Puts the connection on the flush list (on_wake and/or write on the next loop iteration). */
void tp__quic_endpoint_schedule(struct tp_quic_endpoint *ep, tp_quic_conn_t *c);
void tp__quic_endpoint_unschedule(struct tp_quic_endpoint *ep, tp_quic_conn_t *c);
/* The connection needs send-queue room: retried after the queue drained. */
void tp__quic_endpoint_block(struct tp_quic_endpoint *ep, tp_quic_conn_t *c);
/* The send queue drained: let blocked connections write again. */
void tp__quic_endpoint_unblock_all(struct tp_quic_endpoint *ep);
/* Sends the send queue unless a receive batch is running (it flushes at its end) and `force`
 * is false. */
void tp__quic_endpoint_flush_tx(struct tp_quic_endpoint *ep, bool force);
/* A fresh CID of this endpoint's layout, with its stateless reset token. */
int tp__quic_endpoint_new_cid(struct tp_quic_endpoint *ep, ngtcp2_cid *cid, uint8_t *token);
/* Unlinks a connection from the endpoint (the connection frees itself). */
void tp__quic_endpoint_forget(struct tp_quic_endpoint *ep, tp_quic_conn_t *c);

/* Makes an endpoint (tp_quic_endpoint_new with the exclusive-port probe optional). */
int tp__quic_endpoint_make(struct tp_quic_endpoint **out, uv_loop_t *loop, const tp_addr_t *bind,
                           bool server, const tp_quic_settings_t *settings,
                           const tp_quic_app_t *app, void *app_data, bool probe);
/* Writes every connection on the flush list (after a receive batch or a hand-off batch). */
void tp__quic_endpoint_run_flush_list(struct tp_quic_endpoint *ep);
/* Close callback of the endpoint's handles: frees it after the last one. */
void tp__quic_endpoint_handle_closed(uv_handle_t *h);

/* group.c: hands a packet for worker `worker` to that worker's endpoint. Returns 0 when queued,
 * TP_ERR_NOMEM when it was dropped (no memory, or that worker's queue is full), TP_ERR_NOTFOUND
 * when the group has no such worker (an index it never had, or a member that is closing). */
int tp__quic_group_handoff(struct tp_quic_group *g, unsigned worker, const tp_quic_rx_t *rx);
/* The endpoint's memory is about to go. */
void tp__quic_group_member_closed(struct tp_quic_endpoint *ep);
/* Stops receiving hand-offs (closes the async handle, counted in handles_open). */
void tp__quic_handoff_stop(struct tp_quic_endpoint *ep);

/* ngtcp2's clock: nanoseconds of the monotonic clock. */
uint64_t tp__quic_now(void);
/* Conversions between tp_addr_t and ngtcp2_addr. */
void tp__quic_addr_to_ngtcp2(ngtcp2_addr *out, const tp_addr_t *in);
void tp__quic_addr_from_sa(tp_addr_t *out, const struct sockaddr *sa);

#endif
