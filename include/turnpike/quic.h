/* turnpike/quic.h: the QUIC runtime: UDP endpoints on a libuv loop, connections, streams and
 * datagrams for an application over QUIC (server and client), independent of the proxy pipeline. */
#ifndef TURNPIKE_QUIC_H
#define TURNPIKE_QUIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "turnpike/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Threading: an endpoint and its connections belong to the loop they were made on. Every function
 * here must be called on that loop's thread, with one exception: tp_quic_group_*() hands packets
 * between the loops of a group itself.
 *
 * Reentrancy: every tp_quic_conn_* and tp_quic_stream_* call, tp_quic_connect() and
 * tp_quic_endpoint_close() may be made from inside the application's callbacks (tp_quic_app_t).
 * Bytes written and closes requested there take effect when the callback has returned; nothing
 * is sent from inside a callback.
 */

typedef struct tp_quic_endpoint tp_quic_endpoint_t;
typedef struct tp_quic_conn tp_quic_conn_t;

/* Length of the connection IDs this runtime issues; see docs/quic.md for the byte layout. */
#define TP_QUIC_CID_LEN 16
/* Offsets in a connection ID: byte 0 is the QUIC-LB first octet (config rotation in the top 3
 * bits, the length of the rest in the low 5), bytes 1-2 the server id (big endian), byte 3 the
 * worker index, bytes 4-15 random. */
#define TP_QUIC_CID_SERVER_ID_OFF 1
#define TP_QUIC_CID_WORKER_OFF    3
#define TP_QUIC_CID_NONCE_OFF     4
/* Length of the secret that authenticates Retry/NEW_TOKEN tokens and derives stateless resets. */
#define TP_QUIC_SECRET_LEN 32
/* Longest ALPN protocol name (RFC 7301). */
#define TP_QUIC_ALPN_MAX 255
/* Largest settings.max_udp_payload: jumbo frames fit, and a GSO train of such packets stays a
 * reasonable 64 KiB datagram. */
#define TP_QUIC_MAX_UDP_PAYLOAD 16384
/* The largest frame the automatic max_udp_payload goes up to: a 9000-byte jumbo frame, so
 * 8972 bytes of UDP payload over IPv4 and 8952 over IPv6. */
#define TP_QUIC_JUMBO_MTU 9000

typedef enum tp_quic_cc {
    TP_QUIC_CC_CUBIC = 0, /* the default, as in tokio-quiche */
    TP_QUIC_CC_BBR = 1,   /* ngtcp2's BBRv2 */
    TP_QUIC_CC_RENO = 2,
} tp_quic_cc_t;

typedef enum tp_quic_retry {
    TP_QUIC_RETRY_ALWAYS = 0,     /* every new client proves its address with a Retry first */
    TP_QUIC_RETRY_NEVER = 1,      /* never (the 3x amplification limit still holds) */
    TP_QUIC_RETRY_UNDER_LOAD = 2, /* only while more than retry_threshold handshakes are open */
} tp_quic_retry_t;

/*
 * Settings of an endpoint. Fill with tp_quic_settings_default() and change what you need; the
 * endpoint copies the struct and the strings it points to. Sizes are bytes, times milliseconds.
 */
typedef struct tp_quic_settings {
    /* Transport parameters we announce. */
    uint64_t initial_max_data;          /* connection receive window: 10 MB */
    uint64_t initial_max_stream_data;   /* per-stream receive window (bidi and uni): 1 MB */
    uint64_t initial_max_streams_bidi;  /* concurrent peer-opened bidi streams: 100 */
    uint64_t initial_max_streams_uni;   /* concurrent peer-opened uni streams: 100 */
    uint64_t max_window;                /* ceiling of connection window auto-tuning: 24 MB */
    uint64_t max_stream_window;         /* ceiling of stream window auto-tuning: 16 MB */
    uint32_t idle_timeout_ms;           /* max_idle_timeout: 56 000 */
    uint32_t handshake_timeout_ms;      /* a handshake not done by then fails: 10 000 */
    uint8_t active_connection_id_limit; /* CIDs we accept from the peer (2..8): 4 */
    /* DATAGRAM frames (RFC 9221). */
    bool datagrams;                   /* announce and accept DATAGRAM frames: true */
    uint16_t max_datagram_frame_size; /* largest DATAGRAM frame we accept: 65 535 */
    uint32_t datagram_send_queue;     /* datagrams queued per connection before sends fail: 1024 */
    /* Features. */
    /* 0-RTT (docs/quic.md): a server accepts early data on resumed sessions (replay-checked);
     * a client offers it when tp_quic_connect_resume() is given a session that allows it: false.
     * Session tickets (resumption without early data) are issued by every server. */
    bool early_data;
    tp_quic_retry_t retry;    /* address validation with Retry: TP_QUIC_RETRY_ALWAYS */
    uint32_t retry_threshold; /* open handshakes above which UNDER_LOAD retries: 256 */
    tp_quic_cc_t cc;          /* congestion control: TP_QUIC_CC_CUBIC */
    /* Limits of this runtime. */
    size_t stream_send_buffer; /* bytes buffered per stream (written, not yet acked): 1 MiB */
    /* Largest UDP payload we send: every path starts at 1200 bytes and PMTUD (RFC 8899, in
     * ngtcp2) probes it up to this ceiling. 0 (auto, the default): each connection's ceiling
     * comes from the kernel's route to its peer (IP_MTU): 1452 on an Ethernet-sized MTU or
     * the route's MTU less IP and UDP headers below that; on a larger MTU (jumbo frames,
     * loopback) that MTU's payload, up to TP_QUIC_JUMBO_MTU. Else a fixed ceiling for every
     * path, 1200 .. 16384 (TP_QUIC_MAX_UDP_PAYLOAD). */
    size_t max_udp_payload;
    uint32_t stateless_resets_per_sec; /* stateless resets sent per second per endpoint: 100 */
    uint32_t max_connections; /* connections per endpoint; Initials above it are refused: 10 000 */
    /* Flow control of received stream bytes: false credits them back to the peer as soon as
     * on_stream_data returns; true leaves it to tp_quic_stream_consume() (real backpressure). */
    bool manual_consume;
    /* Routing: the server id and worker index carried in every connection ID we issue. */
    uint16_t server_id;   /* 0 */
    uint8_t worker_index; /* 0; tp_quic_group_add() sets it */
    /* Groups: the first member attaches a classic BPF program to the SO_REUSEPORT group, so
     * the kernel delivers a packet whose DCID is one of ours to the worker byte 3 names (docs/
     * quic.md, "Endpoints, workers and the router"): true. */
    bool reuseport_steering;
    /* The secret for tokens and stateless resets; NULL: one made at random per process. Set it
     * (to the same bytes) on every process behind one address, or tokens will not verify. */
    const uint8_t *static_secret; /* TP_QUIC_SECRET_LEN bytes, or NULL */
    /* TLS. alpn is one protocol name, required on both sides (e.g. "h3", "tp-echo"). */
    const char *alpn;
    const char *cert_file;     /* server: PEM certificate chain (required) */
    const char *key_file;      /* server: PEM private key (required) */
    const char *ca_file;       /* client: PEM trust anchors; NULL: the system trust */
    bool insecure_skip_verify; /* client: accept any server certificate (tests only) */
    /* Diagnostics. */
    const char *qlog_dir;    /* a qlog file per connection (<scid hex>.sqlog): NULL */
    const char *keylog_file; /* TLS secrets in NSS key log format, appended: NULL */
} tp_quic_settings_t;

/* Fills `s` with the defaults listed above. */
void tp_quic_settings_default(tp_quic_settings_t *s);

/* Counters of an endpoint (or the sum over a group), mirroring tokio-quiche's metrics. */
typedef struct tp_quic_stats {
    uint64_t connections;        /* connections in memory now (any state) */
    uint64_t handshakes;         /* handshakes completed */
    uint64_t handshake_time_us;  /* sum of their durations (first packet to done) */
    uint64_t resumed_handshakes; /* of them, resumed from a session ticket */
    /* 0-RTT: the server accepted the client's early data / a client's early data was refused
     * by its server (it is sent again as 1-RTT). A server counts only what it accepted. */
    uint64_t early_data_accepted, early_data_rejected;
    uint64_t key_updates;          /* 1-RTT key updates (either side started them, RFC 9001 6) */
    uint64_t failed_handshakes;    /* connections that closed before their handshake completed */
    uint64_t accepted_initials;    /* Initials that created a connection */
    uint64_t rejected_initials;    /* Initials refused (bad token, over the limit, malformed) */
    uint64_t retries_sent;         /* Retry packets sent */
    uint64_t version_negotiations; /* Version Negotiation packets sent */
    uint64_t stateless_resets;     /* stateless resets sent */
    uint64_t invalid_cid_packets;  /* packets whose DCID matched no connection and were dropped */
    uint64_t handed_off;           /* packets passed to another worker of the group */
    /* datagrams dropped by the kernel (SO_RXQ_OVFL), truncated on receive (over 64 KiB), or
     * dropped on send (an error other than EAGAIN, ENOBUFS included) */
    uint64_t udp_drops;
    uint64_t packets_in, packets_out, bytes_in, bytes_out;
    uint64_t gso_batches; /* sends that carried more than one packet (UDP_SEGMENT) */
    /* Packets with an ECN codepoint (ECT(0), ECT(1) or CE) received, and sent with ECT (ngtcp2
     * keeps marking only while the peer's ACKs confirm the path passes ECN). */
    uint64_t ecn_packets_in, ecn_packets_out;
    /* Close codes of connections that ended. */
    uint64_t close_no_error;          /* transport NO_ERROR, either side */
    uint64_t close_application;       /* an application error code, either side */
    uint64_t close_transport_error;   /* a transport error other than NO_ERROR, either side */
    uint64_t close_tls_alert;         /* a TLS alert (CRYPTO_ERROR 0x100-0x1ff) */
    uint64_t close_idle_timeout;      /* the idle timeout passed */
    uint64_t close_handshake_timeout; /* the handshake timeout passed */
    uint64_t close_stateless_reset;   /* the peer reset the connection statelessly */
    uint64_t close_unreachable;       /* ICMP said the peer's port is unreachable */
} tp_quic_stats_t;

/* Why a connection ended, passed to on_close. */
typedef struct tp_quic_close_info {
    /* TP_OK: closed cleanly (transport NO_ERROR or any application code, either side).
     * TP_ERR_PROTOCOL: a transport error or TLS alert (see code, reason).
     * TP_ERR_TIMEOUT: the idle or handshake timeout passed.
     * TP_ERR_REFUSED: the peer's port is unreachable (ICMP), or it rejected our token.
     * TP_ERR_CLOSED: a stateless reset, or the endpoint was closed.
     * TP_ERR_NOMEM / TP_ERR_IO: a local failure. */
    int err;
    bool remote;         /* the peer closed (or reset) the connection */
    bool application;    /* `code` is an application error code, else a transport one */
    uint64_t code;       /* the wire error code */
    const char *reason;  /* NUL-terminated, never NULL; valid during on_close only */
    bool handshake_done; /* whether the connection had been established */
} tp_quic_close_info_t;

typedef enum tp_quic_reset_dir {
    TP_QUIC_RESET_RECV = 1, /* the peer sent RESET_STREAM: no more bytes will arrive */
    TP_QUIC_RESET_SEND = 2, /* the peer sent STOP_SENDING: it discards what we write */
} tp_quic_reset_dir_t;

/* The app_error of on_stream_reset for TP_QUIC_RESET_SEND: ngtcp2 does not pass STOP_SENDING's
 * code up (it answers the frame with RESET_STREAM itself). */
#define TP_QUIC_APP_ERROR_UNKNOWN UINT64_MAX

/*
 * What an application over QUIC implements: a constant table, copied by the endpoint. Members
 * marked "required" must be set; the others may be NULL. All run on the endpoint's loop; a
 * callback may call any tp_quic_conn_* / tp_quic_stream_* function, including
 * tp_quic_conn_close() on its own connection. `stream_data` is what tp_quic_stream_set_data() set
 * (NULL until then).
 */
typedef struct tp_quic_app {
    /* Optional. The handshake completed (the server: also the client proved its address). */
    void (*on_established)(tp_quic_conn_t *conn);
    /* Optional. The peer opened stream `stream_id` (before its first bytes arrive). */
    void (*on_stream_open)(tp_quic_conn_t *conn, int64_t stream_id);
    /* Required. Bytes arrived in order on a stream; `fin` marks the last of them (len may be 0
     * then). With settings.manual_consume, the peer may send more only after
     * tp_quic_stream_consume(). */
    void (*on_stream_data)(tp_quic_conn_t *conn, int64_t stream_id, const uint8_t *data, size_t len,
                           bool fin, void *stream_data);
    /* Optional. A stream that refused bytes (a short tp_quic_stream_write()) has room again; or,
     * with stream_id -1, the peer allows more streams to be opened. */
    void (*on_writable)(tp_quic_conn_t *conn, int64_t stream_id, void *stream_data);
    /* Optional. The peer reset its sending side (RESET_STREAM) with `app_error`, or asked us to
     * stop (STOP_SENDING; app_error TP_QUIC_APP_ERROR_UNKNOWN), which is seen when the stream
     * has bytes to send: our unsent bytes are dropped, and what the peer sends still arrives.
     * Not called for our own tp_quic_stream_shutdown(). */
    void (*on_stream_reset)(tp_quic_conn_t *conn, int64_t stream_id, tp_quic_reset_dir_t dir,
                            uint64_t app_error, void *stream_data);
    /* Optional. Both sides of the stream are done; free what stream_data points to. */
    void (*on_stream_close)(tp_quic_conn_t *conn, int64_t stream_id, void *stream_data);
    /* Optional. A DATAGRAM frame arrived (delivered at once; not queued). */
    void (*on_datagram)(tp_quic_conn_t *conn, const uint8_t *data, size_t len);
    /* Optional. tp_quic_conn_wake() was called: write what you have now. */
    void (*on_wake)(tp_quic_conn_t *conn);
    /* Optional. Client: the server refused our 0-RTT. Every stream opened so far is gone:
     * on_stream_close follows for each (nothing of them reached the server); open them again
     * after on_established. */
    void (*on_early_rejected)(tp_quic_conn_t *conn);
    /* Optional. The connection ended. After this returns the `conn` pointer is invalid; free
     * what tp_quic_conn_data() points to here. Called once for every connection. */
    void (*on_close)(tp_quic_conn_t *conn, const tp_quic_close_info_t *info);
} tp_quic_app_t;

/* ---- Endpoints ---- */

/*
 * Makes an endpoint: a UDP socket bound to `bind` (port 0: any free port) with SO_REUSEPORT,
 * polled on `loop`. A server endpoint (`server` true) accepts connections for settings.alpn and
 * needs cert_file and key_file; a client endpoint makes connections with tp_quic_connect() (bind
 * it to 0.0.0.0:0 or [::]:0). `app` is copied; `app_data` is returned by
 * tp_quic_endpoint_data(). The endpoint starts receiving at once.
 *
 * Returns 0 and sets *out, or TP_ERR_INVAL (bad settings: no alpn, a limit out
 * of range, server without a certificate), TP_ERR_CONFIG (the certificate, key or CA file could
 * not be loaded), TP_ERR_ADDRINUSE, TP_ERR_IO (socket set-up failed), TP_ERR_NOMEM.
 */
int tp_quic_endpoint_new(tp_quic_endpoint_t **out, uv_loop_t *loop, const tp_addr_t *bind,
                         bool server, const tp_quic_settings_t *settings, const tp_quic_app_t *app,
                         void *app_data);

/* The address the endpoint's socket is bound to (with the real port). */
void tp_quic_endpoint_local_addr(const tp_quic_endpoint_t *ep, tp_addr_t *out);

/* The app_data given to tp_quic_endpoint_new(). */
void *tp_quic_endpoint_data(const tp_quic_endpoint_t *ep);

/* Copies the endpoint's counters into *out. */
void tp_quic_endpoint_stats(const tp_quic_endpoint_t *ep, tp_quic_stats_t *out);

/* Writes the counters as one JSON object (no newline) into buf; returns the length (truncated to
 * size - 1, always NUL-terminated). */
size_t tp_quic_stats_json(const tp_quic_stats_t *stats, char *buf, size_t size);

/*
 * Closes the endpoint: every connection is closed with NO_ERROR (its CONNECTION_CLOSE is sent
 * once; on_close runs for each, with TP_ERR_CLOSED, before this returns), the socket stops, the
 * connections' memory is freed on the loop's next step, and once every libuv handle has closed
 * `cb` runs and the endpoint is freed. May be called from inside a tp_quic_app_t callback,
 * on_close included. From the moment it is called tp_quic_connect() on the endpoint fails with
 * TP_ERR_STATE (so an on_close that reconnects cannot keep it open), and a second call does
 * nothing (the first call's `cb` stays).
 */
void tp_quic_endpoint_close(tp_quic_endpoint_t *ep, void (*cb)(void *arg), void *arg);

/*
 * Server: from now on an Initial that would make a new connection is answered with a stateless
 * CONNECTION_CLOSE (CONNECTION_REFUSED), as when max_connections is reached; the connections
 * already made go on (a server draining before it closes). Cannot be undone.
 */
void tp_quic_endpoint_refuse_new(tp_quic_endpoint_t *ep);

/*
 * Client: starts a connection to `remote` from a client endpoint. `server_name` is sent as SNI
 * (unless it is an IP literal) and the certificate is verified against it (an IP literal is
 * checked against the certificate's IP addresses); NULL uses the remote IP. `conn_data` is
 * returned by tp_quic_conn_data(). The first packet leaves on the loop's next step and the
 * handshake runs there; on_established or on_close follows, never before this returns (a refused
 * port fails fast through ICMP, a silent one after handshake_timeout_ms). May be called from a
 * callback, on_close included (another connection on the same endpoint).
 *
 * Returns 0 and sets *out (may be NULL), or TP_ERR_STATE (a server endpoint, or closing),
 * TP_ERR_INVAL (remote's family differs from the endpoint's and cannot be mapped),
 * TP_ERR_UNREACHABLE (no route to remote), TP_ERR_NOMEM, TP_ERR_IO.
 */
int tp_quic_connect(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                    void *conn_data, tp_quic_conn_t **out);

/*
 * Client: as tp_quic_connect(), resuming the TLS session saved from an earlier connection to the
 * same server with tp_quic_conn_session() (`session`, `session_len` bytes; NULL: a full
 * handshake). The server's NEW_TOKEN token saved with it goes in the Initial, so a server that
 * asks new clients for a Retry need not ask this one (RFC 9000 8.1.3). With settings.early_data the
 * remembered transport parameters are set as well and 0-RTT is offered: once the first flight is
 * built (the ticket allows early data), tp_quic_conn_early_data() says TP_QUIC_EARLY_SENT and
 * on_wake runs; streams opened and written from then on leave as 0-RTT. If the server refuses,
 * on_early_rejected runs. They are replayable (see docs/quic.md): send only what is safe to repeat.
 * tp_quic_conn_early_data() tells whether the server took them; a refusal costs nothing but time
 * (ngtcp2 sends them again as 1-RTT). An expired or foreign ticket just gives a full handshake.
 *
 * Returns what tp_quic_connect() returns, or TP_ERR_INVAL (the blob is not one of ours).
 */
int tp_quic_connect_resume(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                           const void *session, size_t session_len, void *conn_data,
                           tp_quic_conn_t **out);

/* ---- Connections ---- */

/*
 * Client: writes what a later tp_quic_connect_resume() needs (the server's TLS session ticket,
 * the transport parameters 0-RTT must respect and the server's last NEW_TOKEN token, if any; a
 * few hundred bytes, secret: keep it private) into buf. The ticket arrives shortly after the
 * handshake; until then, and on a server, returns TP_ERR_STATE. Returns the length, or TP_ERR_RANGE
 * (buf too small: 4096 bytes is plenty), TP_ERR_NOMEM. Valid until on_close returns.
 */
ssize_t tp_quic_conn_session(const tp_quic_conn_t *conn, void *buf, size_t size);

/* The application's pointer for this connection (conn_data, or what set_data stored). */
void *tp_quic_conn_data(const tp_quic_conn_t *conn);
void tp_quic_conn_set_data(tp_quic_conn_t *conn, void *data);

/* The endpoint the connection lives on. */
tp_quic_endpoint_t *tp_quic_conn_endpoint(const tp_quic_conn_t *conn);

/* The peer's current address (it changes when the peer migrates). */
void tp_quic_conn_peer_addr(const tp_quic_conn_t *conn, tp_addr_t *out);

/* True for connections accepted by a server endpoint. */
bool tp_quic_conn_is_server(const tp_quic_conn_t *conn);

/* The largest UDP payload this connection sends on its current path now (1200 until PMTUD
 * confirms more), and the ceiling PMTUD may raise it to (settings.max_udp_payload, or what
 * auto chose for the path). `ceiling` may be NULL. */
size_t tp_quic_conn_max_udp_payload(const tp_quic_conn_t *conn, size_t *ceiling);

/* Server: true while the handshake is not complete, so stream bytes delivered now came in 0-RTT
 * (early data: replayable by an attacker within the anti-replay window's limits; see
 * docs/quic.md). Always false on a client, and on a server without settings.early_data (its
 * streams see bytes only once the handshake is done). */
bool tp_quic_conn_in_early_data(const tp_quic_conn_t *conn);

/* True once the handshake resumed a TLS session (a ticket) instead of a full exchange. */
bool tp_quic_conn_resumed(const tp_quic_conn_t *conn);

typedef enum tp_quic_early {
    TP_QUIC_EARLY_NONE = 0,     /* no 0-RTT on this connection (or not accepted, on a server) */
    TP_QUIC_EARLY_SENT = 1,     /* client: 0-RTT sent, the server has not answered yet */
    TP_QUIC_EARLY_ACCEPTED = 2, /* the server took the early data */
    TP_QUIC_EARLY_REJECTED = 3, /* client: the server refused it; ngtcp2 resent it as 1-RTT */
} tp_quic_early_t;

/* What became of 0-RTT on this connection. */
tp_quic_early_t tp_quic_conn_early_data(const tp_quic_conn_t *conn);

/* The number of bidirectional streams the peer could open at first (the initial_max_streams_bidi
 * we announced); the runtime allows one more each time one of them closes. */
uint64_t tp_quic_conn_initial_peer_streams_bidi(const tp_quic_conn_t *conn);

/*
 * Closes the connection with an application error code (0 is usually "no error") and a reason
 * (NULL or text; cut at 1024 bytes). The CONNECTION_CLOSE leaves after the current callback;
 * on_close follows with info->remote false. Returns 0, or TP_ERR_CLOSED when it is already
 * closing.
 */
int tp_quic_conn_close(tp_quic_conn_t *conn, uint64_t app_error, const char *reason);

/* Asks the runtime to call on_wake and then write whatever the streams and datagram queue hold,
 * soon (on the next loop iteration). Idempotent until on_wake ran; no-op on a closing conn. */
void tp_quic_conn_wake(tp_quic_conn_t *conn);

/* ---- Streams ---- */

/*
 * Opens a stream of our own (bidirectional or unidirectional). A server may open streams before
 * its handshake completes (0.5-RTT, e.g. to answer 0-RTT requests); a client only once
 * established, or while its 0-RTT is out (tp_quic_conn_early_data() is TP_QUIC_EARLY_SENT).
 * Returns its id (>= 0), or TP_ERR_STATE (a client not established yet, or closing),
 * TP_ERR_RANGE (the peer's stream limit is reached: on_writable(conn, -1, NULL) says when more
 * are allowed), TP_ERR_NOMEM.
 */
int64_t tp_quic_stream_open(tp_quic_conn_t *conn, bool bidi);

/*
 * Queues bytes on a stream. Copies as much as the stream's buffer has room for (settings.
 * stream_send_buffer minus what is written and not yet acknowledged) and returns that count; when
 * it is less than `len`, on_writable(conn, stream_id, ...) follows once room frees up. `fin` ends
 * the stream after these bytes and counts only when all `len` bytes were taken (len 0 with fin
 * just ends it). Returns the count (>= 0), or TP_ERR_NOTFOUND (no such stream, or it is closed),
 * TP_ERR_STATE (its sending side was finished or reset, or it is the peer's uni stream),
 * TP_ERR_CLOSED (the connection is closing), TP_ERR_NOMEM.
 */
ssize_t tp_quic_stream_write(tp_quic_conn_t *conn, int64_t stream_id, const void *data, size_t len,
                             bool fin);

/*
 * With settings.manual_consume: tells the peer that `n` more bytes of the stream were consumed,
 * so it may send that many more (stream and connection windows); at most the bytes delivered by
 * on_stream_data and not consumed yet count. Bytes never consumed are credited to the connection
 * window when the stream closes (after on_stream_close, which may still consume). Returns 0, or
 * TP_ERR_STATE (without manual_consume: the runtime credits every byte itself),
 * TP_ERR_NOTFOUND, TP_ERR_CLOSED.
 */
int tp_quic_stream_consume(tp_quic_conn_t *conn, int64_t stream_id, size_t n);

/* Ends a stream abruptly with `app_error`: TP_QUIC_RESET_SEND resets our sending side
 * (RESET_STREAM; buffered bytes are dropped), TP_QUIC_RESET_RECV asks the peer to stop
 * (STOP_SENDING); both may be or-ed. Returns 0, or TP_ERR_NOTFOUND, TP_ERR_CLOSED, TP_ERR_INVAL. */
int tp_quic_stream_shutdown(tp_quic_conn_t *conn, int64_t stream_id, int dirs, uint64_t app_error);

/* Attaches the application's pointer to a stream (passed to the stream callbacks). Returns 0 or
 * TP_ERR_NOTFOUND. */
int tp_quic_stream_set_data(tp_quic_conn_t *conn, int64_t stream_id, void *data);

/* Bytes buffered on a stream (written, not yet acknowledged); 0 for an unknown stream. */
size_t tp_quic_stream_buffered(const tp_quic_conn_t *conn, int64_t stream_id);

/* ---- Datagrams (RFC 9221) ---- */

/*
 * Queues one DATAGRAM frame (copied; sent unreliably, in order with other datagrams). Returns 0,
 * or TP_ERR_STATE (not established, or the peer does not accept datagrams), TP_ERR_TOO_LARGE
 * (larger than the peer's max_datagram_frame_size allows), TP_ERR_RANGE (settings.
 * datagram_send_queue datagrams are waiting already: drop it or try later), TP_ERR_CLOSED,
 * TP_ERR_NOMEM.
 */
int tp_quic_datagram_send(tp_quic_conn_t *conn, const void *data, size_t len);

/* The largest datagram payload tp_quic_datagram_send() accepts now (0 before the handshake or
 * when the peer takes none). */
size_t tp_quic_datagram_max(const tp_quic_conn_t *conn);

/* ---- Groups: one endpoint per worker loop on the same port ---- */

/*
 * A group ties the endpoints of several worker loops (threads) that share one address through
 * SO_REUSEPORT. With settings.reuseport_steering (the default) the kernel picks the socket by
 * byte TP_QUIC_CID_WORKER_OFF of a packet's DCID when that DCID is one of ours, else by a hash
 * of the 4-tuple. A packet that still lands on another worker (no steering, an old kernel, a
 * member closed) is handed over: each endpoint looks at byte TP_QUIC_CID_WORKER_OFF of the
 * destination CID and passes such packets to the right worker through a bounded queue and a
 * uv_async_t. Workers are numbered 0..n-1 in the order
 * they are added; the settings of every member must use the same secret.
 */
typedef struct tp_quic_group tp_quic_group_t;

/* Makes a group for up to `max_workers` (1..256) endpoints. Returns 0, TP_ERR_INVAL or
 * TP_ERR_NOMEM. */
int tp_quic_group_new(tp_quic_group_t **out, unsigned max_workers);

/*
 * Makes the endpoint of the next worker on `loop`, as tp_quic_endpoint_new() (its
 * settings.worker_index is set to the worker's number). The first member binds `bind`; the
 * others bind the port it got. Call from the thread that owns `loop`, or before that loop runs.
 * Returns what tp_quic_endpoint_new() returns, or TP_ERR_RANGE when the group is full.
 */
int tp_quic_group_add(tp_quic_group_t *group, tp_quic_endpoint_t **out, uv_loop_t *loop,
                      const tp_addr_t *bind, bool server, const tp_quic_settings_t *settings,
                      const tp_quic_app_t *app, void *app_data);

/* Sums the counters of every member (reads them without locks: each value is a snapshot). */
void tp_quic_group_stats(tp_quic_group_t *group, tp_quic_stats_t *out);

/* True when the kernel took the group's steering program (settings.reuseport_steering): packets
 * for one of our CIDs go straight to the worker that owns it, and the hand-off is left for the
 * rare packet the program cannot place. False: the kernel hashes the 4-tuple, as without it. */
bool tp_quic_group_steering(tp_quic_group_t *group);

/* Frees the group once every member endpoint has been closed (their close callbacks ran). */
void tp_quic_group_del(tp_quic_group_t *group);

#ifdef __cplusplus
}
#endif
#endif
