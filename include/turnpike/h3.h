/* turnpike/h3.h: the HTTP/3 driver: an application over the QUIC runtime (turnpike/quic.h) on
 * nghttp3, server and client side, turning HTTP/3 into events and bodies into flow-controlled
 * streams; extended CONNECT (RFC 9220) and HTTP datagrams (RFC 9297) enabled. */
#ifndef TURNPIKE_H3_H
#define TURNPIKE_H3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "turnpike/common.h"
#include "turnpike/quic.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Threading and reentrancy are the QUIC runtime's: everything runs on the endpoint's loop, and
 * every tp_h3_* call may be made from inside the callbacks below (including tp_h3_stream_reset()
 * and tp_h3_conn_close() on the object the callback is for). What a call queues is sent when the
 * current callback returns, or on the next loop iteration when called from elsewhere.
 */

typedef struct tp_h3 tp_h3_t;               /* settings and callbacks, shared by connections */
typedef struct tp_h3_conn tp_h3_conn_t;     /* one HTTP/3 connection */
typedef struct tp_h3_stream tp_h3_stream_t; /* one request stream (a request and its response) */

/* The ALPN protocol of HTTP/3. */
#define TP_H3_ALPN "h3"

/* HTTP/3 error codes (RFC 9114 8.1, RFC 9297 5) for resets and closes. */
#define TP_H3_NO_ERROR               0x100
#define TP_H3_GENERAL_PROTOCOL_ERROR 0x101
#define TP_H3_INTERNAL_ERROR         0x102
#define TP_H3_STREAM_CREATION_ERROR  0x103
#define TP_H3_EXCESSIVE_LOAD         0x107
#define TP_H3_ID_ERROR               0x108
#define TP_H3_REQUEST_REJECTED       0x10b
#define TP_H3_REQUEST_CANCELLED      0x10c
#define TP_H3_REQUEST_INCOMPLETE     0x10d
#define TP_H3_MESSAGE_ERROR          0x10e
#define TP_H3_CONNECT_ERROR          0x10f
#define TP_H3_DATAGRAM_ERROR         0x33

/* One field (header or trailer). Names are lowercase; pseudo-headers (":method", ":path",
 * ":status", ...) come first. Received fields point into the driver's memory and are valid
 * during the callback only; the strings are not NUL-terminated. */
typedef struct tp_h3_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} tp_h3_field_t;

/* Settings of the driver. Fill with tp_h3_settings_default() and change what you need. */
typedef struct tp_h3_settings {
    /* SETTINGS_MAX_FIELD_SECTION_SIZE we announce and enforce (RFC 9114 4.2.2: each field counts
     * name + value + 32 bytes). A larger request header section is answered 431; a larger
     * response or trailer section resets the stream with H3_EXCESSIVE_LOAD: 65 536. */
    uint64_t max_field_section_size;
    /* SETTINGS_QPACK_MAX_TABLE_CAPACITY: the dynamic table the peer's encoder may fill in our
     * decoder: 4096. */
    size_t qpack_max_dtable_capacity;
    /* The most of the peer's table our encoder will use (0: no dynamic table): 4096. */
    size_t qpack_encoder_max_dtable_capacity;
    /* SETTINGS_QPACK_BLOCKED_STREAMS: streams that may wait for encoder instructions: 16. */
    size_t qpack_blocked_streams;
    /* SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220; server side only): true. */
    bool enable_connect_protocol;
    /* SETTINGS_H3_DATAGRAM (RFC 9297): true. Needs the QUIC endpoint's datagrams. */
    bool h3_datagram;
    /* Body bytes queued per stream by tp_h3_stream_send() before it accepts less than asked (the
     * QUIC stream's own send buffer comes after this): 262 144. */
    size_t body_buffer;
    /* false: received body bytes are credited back to the peer (flow control) when on_body
     * returns; true: only by tp_h3_stream_consume(), so a slow consumer slows the sender. */
    bool manual_consume;
} tp_h3_settings_t;

/* Fills `s` with the defaults listed above. */
void tp_h3_settings_default(tp_h3_settings_t *s);

/*
 * What the application implements: a constant table, copied by tp_h3_new(). Every member is
 * optional (NULL: the event is ignored, or the default answer is given). Stream pointers are
 * valid until on_stream_close has returned; connection pointers until on_conn_close has.
 */
typedef struct tp_h3_callbacks {
    /* The connection is ready for requests: our control and QPACK streams are open. */
    void (*on_conn_ready)(tp_h3_conn_t *conn);
    /* Server: a request's header section arrived (pseudo-headers first). Answer now or later
     * with tp_h3_respond(); the body follows in on_body. NULL: every request gets 404. */
    void (*on_request)(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n);
    /* Client: a response header section arrived; `status` is its :status (1xx ones may come
     * before the final one). */
    void (*on_response)(tp_h3_stream_t *s, int status, const tp_h3_field_t *fields, size_t n);
    /* Body bytes arrived in order; `fin` is true exactly once, on the last call for the
     * message (len may be 0 then; after on_trailers if there were trailers). */
    void (*on_body)(tp_h3_stream_t *s, const uint8_t *data, size_t len, bool fin);
    /* A trailer section arrived (on_body with fin follows). */
    void (*on_trailers)(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n);
    /* A short tp_h3_stream_send() has room again. */
    void (*on_writable)(tp_h3_stream_t *s);
    /* The peer reset its side of the stream (TP_QUIC_RESET_RECV: RESET_STREAM, no more body
     * will come) with `code`, or asked us to stop sending (TP_QUIC_RESET_SEND: STOP_SENDING,
     * `code` TP_QUIC_APP_ERROR_UNKNOWN: see turnpike/quic.h; our body ends, and what the peer
     * sends is still delivered). */
    void (*on_reset)(tp_h3_stream_t *s, tp_quic_reset_dir_t dir, uint64_t code);
    /* The stream is gone (both sides done, reset, or the connection ended): free what
     * tp_h3_stream_data() points to. */
    void (*on_stream_close)(tp_h3_stream_t *s);
    /* An HTTP datagram arrived (RFC 9297): `quarter_id` is its Quarter Stream ID; `s` is that
     * request stream, or NULL when it is not open (the datagram may be dropped then). */
    void (*on_datagram)(tp_h3_conn_t *conn, uint64_t quarter_id, tp_h3_stream_t *s,
                        const uint8_t *data, size_t len);
    /* The peer sent GOAWAY: a client gets the first stream id the server will not process, a
     * server the client's push id. Requests at or above it fail (H3_REQUEST_REJECTED). */
    void (*on_goaway)(tp_h3_conn_t *conn, int64_t id);
    /* Client: the server allows more streams after tp_h3_request() returned TP_ERR_RANGE. */
    void (*on_streams_available)(tp_h3_conn_t *conn);
    /* The connection ended (why: `info`). Free what tp_h3_conn_data() points to. */
    void (*on_conn_close)(tp_h3_conn_t *conn, const tp_quic_close_info_t *info);
    /* The peer's SETTINGS arrived: tp_h3_conn_peer_datagrams() and
     * tp_h3_conn_peer_connect_protocol() say what it announced. A client sends an extended
     * CONNECT only after this, and only if the server allows it (RFC 9220 3); but nghttp3 1.8
     * drops SETTINGS_ENABLE_CONNECT_PROTOCOL on clients (tp_h3_conn_peer_connect_protocol() is
     * then false there whatever the server said). */
    void (*on_settings)(tp_h3_conn_t *conn);
} tp_h3_callbacks_t;

/* ---- The driver ---- */

/*
 * Makes a driver for server (`server` true) or client connections. `settings` and `cb` are
 * copied; `data` is returned by tp_h3_data(). The driver is read-only afterwards, so the
 * endpoints of several worker threads may share it. Returns 0, TP_ERR_INVAL (a limit is 0 or
 * out of range) or TP_ERR_NOMEM.
 */
int tp_h3_new(tp_h3_t **out, bool server, const tp_h3_settings_t *settings,
              const tp_h3_callbacks_t *cb, void *data);

/* Frees the driver; every endpoint using it must have been closed (their close cb ran). */
void tp_h3_del(tp_h3_t *h3);

/* The data given to tp_h3_new(). */
void *tp_h3_data(const tp_h3_t *h3);

/* The QUIC application table of the driver: for tp_quic_endpoint_new() / tp_quic_group_add()
 * with the tp_h3_t as app_data and QUIC settings passed through tp_h3_quic_settings(). */
const tp_quic_app_t *tp_h3_quic_app(void);

/* Adjusts QUIC settings for HTTP/3: ALPN "h3" when none is set, and manual_consume (the driver
 * credits flow control itself: without it, body bytes would be credited twice). */
void tp_h3_quic_settings(tp_quic_settings_t *qs);

/*
 * Makes a QUIC endpoint that speaks HTTP/3 through `h3` (server or client as the driver is):
 * tp_quic_endpoint_new() with a copy of `qs` adjusted by tp_h3_quic_settings(). Returns what
 * tp_quic_endpoint_new() returns.
 */
int tp_h3_endpoint_new(tp_quic_endpoint_t **out, uv_loop_t *loop, const tp_addr_t *bind,
                       tp_h3_t *h3, const tp_quic_settings_t *qs);

/*
 * Client: connects to `remote` (see tp_quic_connect() for `server_name`). `conn_data` is
 * returned by tp_h3_conn_data(); on_conn_ready or on_conn_close follows. Returns 0 and sets *out
 * (may be NULL), TP_ERR_STATE (a server driver), TP_ERR_NOMEM, TP_ERR_IO (the connection ended
 * while its first flight was sent; on_conn_close does not run then), or what tp_quic_connect()
 * returns.
 */
int tp_h3_connect(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                  void *conn_data, tp_h3_conn_t **out);

/*
 * Client: as tp_h3_connect(), resuming a session saved with tp_quic_conn_session() (see
 * tp_quic_connect_resume()). When 0-RTT is offered (the endpoint's settings.early_data and a
 * ticket that allows it), on_conn_ready runs on the loop's next step, before the handshake, and
 * the requests made there leave as 0-RTT: make only safe, idempotent ones (GET, HEAD), since
 * early data can be replayed; a server may answer 425 (Too Early, RFC 8470) to the others.
 */
int tp_h3_connect_resume(tp_quic_endpoint_t *ep, const tp_addr_t *remote, const char *server_name,
                         const void *session, size_t session_len, void *conn_data,
                         tp_h3_conn_t **out);

/* ---- Connections ---- */

void *tp_h3_conn_data(const tp_h3_conn_t *conn);
void tp_h3_conn_set_data(tp_h3_conn_t *conn, void *data);
/* The QUIC connection underneath (peer address, stats). */
tp_quic_conn_t *tp_h3_conn_quic(const tp_h3_conn_t *conn);
/* The driver this connection belongs to. */
tp_h3_t *tp_h3_conn_driver(const tp_h3_conn_t *conn);
/* Whether the peer's SETTINGS arrived (on_settings), and announced H3 datagrams / extended
 * CONNECT. */
bool tp_h3_conn_peer_settings(const tp_h3_conn_t *conn);
bool tp_h3_conn_peer_datagrams(const tp_h3_conn_t *conn);
bool tp_h3_conn_peer_connect_protocol(const tp_h3_conn_t *conn);

/*
 * Starts a graceful shutdown: `final` false sends a GOAWAY that lets every request in flight
 * finish (a server announces the largest id; call again with `final` true a round trip later);
 * `final` true sends the GOAWAY with the first unprocessed id, new requests are refused with
 * H3_REQUEST_REJECTED, and the connection closes with H3_NO_ERROR once its requests are done.
 * Returns 0, TP_ERR_CLOSED, TP_ERR_STATE (before on_conn_ready), TP_ERR_NOMEM.
 */
int tp_h3_conn_goaway(tp_h3_conn_t *conn, bool final);

/* Closes the connection at once with an HTTP/3 error code (TP_H3_NO_ERROR for none) and a
 * reason (may be NULL). Returns 0 or TP_ERR_CLOSED. */
int tp_h3_conn_close(tp_h3_conn_t *conn, uint64_t h3_error, const char *reason);

/* ---- Streams ---- */

/*
 * Client: sends a request (pseudo-headers :method, :scheme, :authority, :path, or for CONNECT
 * :method and :authority, or for extended CONNECT also :protocol). `end_stream` true: no body;
 * false: the body follows with tp_h3_stream_send(). `stream_data` is returned by
 * tp_h3_stream_data(). Returns 0 and sets *out (may be NULL), or TP_ERR_INVAL (malformed or
 * connection-specific fields: see docs/quic.md), TP_ERR_STATE (not ready, or GOAWAY received),
 * TP_ERR_RANGE (the server's stream limit: on_streams_available says when to retry),
 * TP_ERR_CLOSED, TP_ERR_NOMEM.
 */
int tp_h3_request(tp_h3_conn_t *conn, const tp_h3_field_t *fields, size_t n, bool end_stream,
                  void *stream_data, tp_h3_stream_t **out);

/*
 * Server: sends the response header section (:status first, 200..599; for 1xx use
 * tp_h3_respond_info()). `end_stream` as for tp_h3_request(). Returns 0, TP_ERR_INVAL,
 * TP_ERR_STATE (already answered, or a client stream), TP_ERR_CLOSED, TP_ERR_NOMEM.
 */
int tp_h3_respond(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n, bool end_stream);

/* Server: an interim (1xx) response before the final one. Returns as tp_h3_respond(). */
int tp_h3_respond_info(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n);

/*
 * Queues body bytes (copied) after the header section. Takes as many as the stream's body
 * buffer (settings.body_buffer) has room for and returns that count; when it is less than
 * `len`, on_writable follows once room frees up. `fin` ends the body after these bytes and
 * counts only when all were taken. Returns the count, or TP_ERR_STATE (no header section sent
 * yet with end_stream false, or the body already ended), TP_ERR_CLOSED (reset or gone),
 * TP_ERR_NOMEM.
 */
ssize_t tp_h3_stream_send(tp_h3_stream_t *s, const void *data, size_t len, bool fin);

/* Ends the body with a trailer section (no pseudo-headers). Returns 0, TP_ERR_INVAL,
 * TP_ERR_STATE (the body already ended), TP_ERR_CLOSED, TP_ERR_NOMEM. */
int tp_h3_stream_send_trailers(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n);

/* With settings.manual_consume: `n` body bytes were consumed; the peer may send that many more.
 * Returns 0 or TP_ERR_CLOSED. */
int tp_h3_stream_consume(tp_h3_stream_t *s, size_t n);

/* Aborts the stream both ways (RESET_STREAM and STOP_SENDING) with an HTTP/3 error code, e.g.
 * TP_H3_REQUEST_CANCELLED. on_stream_close follows. Returns 0 or TP_ERR_CLOSED. */
int tp_h3_stream_reset(tp_h3_stream_t *s, uint64_t h3_error);

/*
 * Stops reading the peer's side of the stream: STOP_SENDING with `h3_error` (TP_H3_NO_ERROR when
 * a server answered completely and does not need the rest of the request, RFC 9114 4.1), and no
 * more on_body for it (bytes still arriving are dropped and credited by the QUIC layer). Our side
 * of the stream goes on. Returns 0 or TP_ERR_CLOSED.
 */
int tp_h3_stream_stop_reading(tp_h3_stream_t *s, uint64_t h3_error);

/*
 * Sends an HTTP datagram (RFC 9297) tied to this request stream (its Quarter Stream ID is
 * prepended). Returns 0, TP_ERR_STATE (the peer did not announce SETTINGS_H3_DATAGRAM or QUIC
 * datagrams), TP_ERR_TOO_LARGE, TP_ERR_RANGE (the datagram queue is full), TP_ERR_CLOSED,
 * TP_ERR_NOMEM.
 */
int tp_h3_stream_send_datagram(tp_h3_stream_t *s, const void *data, size_t len);

/* The largest payload tp_h3_stream_send_datagram() accepts now (0: none). */
size_t tp_h3_stream_datagram_max(const tp_h3_stream_t *s);

int64_t tp_h3_stream_id(const tp_h3_stream_t *s);
tp_h3_conn_t *tp_h3_stream_conn(const tp_h3_stream_t *s);
void *tp_h3_stream_data(const tp_h3_stream_t *s);
void tp_h3_stream_set_data(tp_h3_stream_t *s, void *data);

/* Server: true when the request's header section ended its stream (no body follows); known from
 * on_request on. */
bool tp_h3_stream_headers_ended(const tp_h3_stream_t *s);

/* Bytes queued by tp_h3_stream_send() and not yet handed to the QUIC stream. */
size_t tp_h3_stream_queued(const tp_h3_stream_t *s);

#ifdef __cplusplus
}
#endif
#endif
