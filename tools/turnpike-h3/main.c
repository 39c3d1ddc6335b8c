/* turnpike-h3: an HTTP/3 client tool on the QUIC runtime and the H3 driver, for tests and
 * benchmarks: requests (GET, or uploads of a file or of the pattern) on N parallel streams (and a
 * download to a file), a request-rate mode over C connections x S streams, and CONNECT (plain or
 * extended, RFC 9220) with stdin/stdout through the stream. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <uv.h>

#include "turnpike/h3.h"

#define PERIOD      251
#define MAX_STREAMS 10000
#define MAX_CONNS   1000
#define STDIN_CHUNK 65536
#define MAX_EXTRA   32 /* -H headers */
#define BODY_CHUNK  65536
#define BIG_MAX     ((size_t)1 << 20) /* --big-header-first */

static uint8_t body_chunk[BODY_CHUNK]; /* the body being handed to a stream */
static char big_buf[BIG_MAX];

static void usage(void) {
    fprintf(
        stderr,
        "usage: turnpike-h3 get https://HOST:PORT/PATH [-n STREAMS] [-o FILE] [--verify-pattern]\n"
        "                   [-H NAME:VALUE]... [-X METHOD] [--sequential] [--big-header-first B]\n"
        "                   [--body-file FILE | --body-bytes N] [--no-content-length]\n"
        "                   [--rate SECONDS [-c CONNS] [-s STREAMS]]\n"
        "                   [--ca FILE | --insecure] [--sni NAME] [--timeout-ms T]\n"
        "                   [--max-udp-payload N|auto] [--qlog-dir DIR] [--keylog FILE]\n"
        "                   [--session-file FILE [--no-early-data]]\n"
        "       turnpike-h3 connect HOST:PORT TARGET_HOST:TARGET_PORT [--datagrams K]\n"
        "                   [--protocol P [--path /PATH]] [-H NAME:VALUE]...\n"
        "                   [--ca FILE | --insecure] [--sni NAME] [--timeout-ms T]\n");
}

typedef enum mode { MODE_GET, MODE_RATE, MODE_CONNECT } tool_mode_t;

struct tool;

/* One request of the get mode. */
typedef struct xfer {
    struct tool *t;
    unsigned idx;
    int status;
    uint64_t bytes;
    int64_t content_length; /* -1: none */
    uint64_t mismatch_at;   /* first byte off the pattern, or UINT64_MAX */
    bool fin;
    bool closed;
    uint64_t reset_code;
    bool reset;
    gnutls_hash_hd_t hash;
    char sha256[65];
    /* the request body */
    tp_h3_stream_t *s;
    uint64_t sent;  /* body bytes the stream took */
    bool body_done; /* the body ended (or the server stopped it) */
    bool stopped;   /* the server sent STOP_SENDING */
    bool requeue;   /* its 0-RTT request was refused with the early data: send it again */
} xfer_t;

/* One connection of the rate mode. */
typedef struct rconn {
    struct tool *t;
    tp_h3_conn_t *conn;
    unsigned inflight;
} rconn_t;

typedef struct tool {
    tool_mode_t mode;
    uv_loop_t loop;
    uv_timer_t deadline, rate_timer;
    tp_h3_t *h3;
    tp_quic_endpoint_t *ep;
    tp_addr_t remote;
    char sni[256];
    char authority[300];
    char path[2048];
    bool finished;
    int exit_code;
    char error[512];
    uint64_t t0, t_ready;
    /* get */
    tp_h3_field_t extra[MAX_EXTRA]; /* -H NAME:VALUE, pointing into argv */
    size_t nextra;
    unsigned nstreams;
    xfer_t *xfers;
    unsigned started, done;
    const char *out_file;
    FILE *out;
    bool verify;
    const char *method;    /* -X; GET, or POST with a body */
    bool has_body;         /* --body-file or --body-bytes */
    int body_fd;           /* --body-file (read as the stream takes it), or -1: the pattern */
    uint64_t body_len;     /* bytes per stream */
    bool no_length;        /* --no-content-length */
    char body_len_str[24]; /* ... else its content-length */
    bool sequential;       /* one request at a time */
    size_t big_header;     /* --big-header-first: stream 0 gets an x-pad field this long */
    const char *big_value;
    /* rate */
    double seconds;
    unsigned nconns, per_conn;
    rconn_t *rconns;
    unsigned conns_open;
    uint64_t completed, failed, rate_bytes;
    int non2xx_marker; /* its address marks rate-mode streams answered other than 2xx */
    int done_marker;   /* ... and rate-mode streams whose whole response arrived */
    bool stopping;
    uint64_t rate_t0, rate_t1;
    /* connect */
    char target[300];
    const char *protocol; /* extended CONNECT's :protocol, or NULL */
    bool ready, settings; /* on_conn_ready, on_settings came */
    char xpath[2048];     /* ... its :path */
    tp_h3_stream_t *tunnel;
    tp_h3_conn_t *conn;
    uv_pipe_t in_pipe;
    bool in_open, in_reading, in_eof;
    uint8_t *in_buf;
    size_t in_len, in_off;
    bool tunnel_up, tunnel_fin;
    unsigned ndgrams, dgrams_sent, dgrams_echoed, dgrams_bad; /* --datagrams K */
    /* --session-file: resumption and 0-RTT */
    const char *session_file;
    bool no_early; /* --no-early-data */
    uint8_t session[4096];
    size_t session_len;     /* read from the file, then what the connection left */
    bool session_saved;     /* the connection gave a new session */
    bool resumed;           /* the handshake resumed the saved session */
    tp_quic_early_t early;  /* what became of 0-RTT */
    unsigned requeued;      /* requests refused with the 0-RTT, to send again */
    unsigned early_streams; /* requests made before the handshake completed */
} tool_t;

#define DGRAM_SIZE 100

/* Datagram i: its index in 2 bytes, then a pattern that depends on it. */
static void dgram_fill(uint8_t *b, unsigned i) {
    b[0] = (uint8_t)(i >> 8);
    b[1] = (uint8_t)i;
    for (unsigned k = 2; k < DGRAM_SIZE; k++) {
        b[k] = (uint8_t)((i * 7 + k) % 253);
    }
}

static uint8_t pattern_byte(uint64_t off) { return (uint8_t)(off % PERIOD); }

static void finish(tool_t *t, int code, const char *error) {
    if (t->finished) {
        return;
    }
    t->finished = true;
    t->exit_code = code;
    if (error) {
        snprintf(t->error, sizeof(t->error), "%s", error);
    }
    if (t->mode == MODE_RATE) {
        for (unsigned i = 0; i < t->nconns; i++) {
            if (t->rconns[i].conn) {
                tp_h3_conn_close(t->rconns[i].conn, TP_H3_NO_ERROR, "done");
            }
        }
    } else if (t->conn) {
        tp_h3_conn_close(t->conn, code == 0 ? TP_H3_NO_ERROR : TP_H3_REQUEST_CANCELLED,
                         code == 0 ? "done" : "failed");
    }
    if (t->in_open && !uv_is_closing((uv_handle_t *)&t->in_pipe)) {
        uv_close((uv_handle_t *)&t->in_pipe, NULL);
    }
}

/* ---- requests ---- */

/* The request of stream `x` (NULL in the rate mode); its body follows with body_push(). */
static int send_get(tool_t *t, tp_h3_conn_t *c, xfer_t *x, tp_h3_stream_t **out) {
    tp_h3_field_t f[7 + MAX_EXTRA] = {
        {":method", 7, t->method, strlen(t->method)},
        {":scheme", 7, "https", 5},
        {":authority", 10, t->authority, strlen(t->authority)},
        {":path", 5, t->path, strlen(t->path)},
        {"user-agent", 10, "turnpike-h3", 11},
    };
    size_t n = 5;
    if (t->has_body && !t->no_length) {
        f[n++] = (tp_h3_field_t){"content-length", 14, t->body_len_str, strlen(t->body_len_str)};
    }
    if (x && x->idx == 0 && t->big_value) {
        f[n++] = (tp_h3_field_t){"x-pad", 5, t->big_value, t->big_header};
    }
    memcpy(f + n, t->extra, t->nextra * sizeof(tp_h3_field_t));
    return tp_h3_request(c, f, n + t->nextra, !t->has_body, x, out);
}

static void fill_pattern(uint8_t *b, uint64_t off, size_t n) {
    uint8_t v = (uint8_t)(off % PERIOD);
    for (size_t i = 0; i < n; i++) {
        b[i] = v;
        if (++v == PERIOD) {
            v = 0;
        }
    }
}

/* Gives the stream as much of the body as it takes now; on_writable calls again. The body is
 * made (the pattern) or read (the file) a chunk at a time, never held whole. */
static void body_push(xfer_t *x) {
    tool_t *t = x->t;
    while (x->s && !x->body_done && !t->finished) {
        uint64_t left = t->body_len - x->sent;
        size_t n = left < BODY_CHUNK ? (size_t)left : BODY_CHUNK;
        if (n > 0 && t->body_fd >= 0) {
            ssize_t r = pread(t->body_fd, body_chunk, n, (off_t)x->sent);
            if (r != (ssize_t)n) {
                finish(t, 1, "cannot read the body file");
                return;
            }
        } else if (n > 0) {
            fill_pattern(body_chunk, x->sent, n);
        }
        ssize_t w = tp_h3_stream_send(x->s, body_chunk, n, x->sent + n == t->body_len);
        if (w < 0) {
            if (x->stopped) { /* the server stopped the body: its answer still comes */
                x->body_done = true;
                return;
            }
            char msg[128];
            snprintf(msg, sizeof(msg), "stream %u: body: %s", x->idx, tp_strerror((int)w));
            finish(t, 1, msg);
            return;
        }
        x->sent += (uint64_t)w;
        if ((size_t)w < n) {
            return; /* on_writable */
        }
        if (x->sent == t->body_len) {
            x->body_done = true;
        }
    }
}

static void start_gets(tool_t *t, tp_h3_conn_t *c) {
    while (t->started < t->nstreams && !t->finished) {
        if (t->sequential && t->done < t->started) {
            return; /* the next one starts when this one's response is complete */
        }
        xfer_t *x = &t->xfers[t->started];
        int rc = send_get(t, c, x, &x->s);
        if (rc == TP_ERR_RANGE) {
            return; /* on_streams_available */
        }
        if (rc != 0) {
            char msg[128];
            snprintf(msg, sizeof(msg), "request: %s", tp_strerror(rc));
            finish(t, 1, msg);
            return;
        }
        t->started++;
        if (t->has_body) {
            body_push(x);
        }
    }
}

static void rate_fill(rconn_t *rc) {
    tool_t *t = rc->t;
    while (!t->stopping && rc->conn && rc->inflight < t->per_conn) {
        int err = send_get(t, rc->conn, NULL, NULL);
        if (err == TP_ERR_RANGE) {
            return;
        }
        if (err != 0) {
            t->failed++;
            return;
        }
        rc->inflight++;
    }
}

static void start_connect(tool_t *t, tp_h3_conn_t *c) {
    tp_h3_field_t f[5 + MAX_EXTRA] = {
        {":method", 7, "CONNECT", 7},
        {":authority", 10, t->target, strlen(t->target)},
    };
    size_t n = 2;
    if (t->protocol) { /* extended CONNECT (RFC 9220): :protocol, :scheme and :path too */
        f[n++] = (tp_h3_field_t){":protocol", 9, t->protocol, strlen(t->protocol)};
        f[n++] = (tp_h3_field_t){":scheme", 7, "https", 5};
        f[n++] = (tp_h3_field_t){":path", 5, t->xpath, strlen(t->xpath)};
    }
    memcpy(f + n, t->extra, t->nextra * sizeof(tp_h3_field_t));
    n += t->nextra;
    int rc = tp_h3_request(c, f, n, false, NULL, &t->tunnel);
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "CONNECT: %s", tp_strerror(rc));
        finish(t, 1, msg);
    }
}

/* ---- stdin through the tunnel (connect mode) ---- */

static void in_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    tool_t *t = h->data;
    buf->base = (char *)t->in_buf;
    buf->len = STDIN_CHUNK;
}

static void tunnel_push(tool_t *t);

static void in_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    tool_t *t = st->data;
    if (n == UV_EOF) {
        t->in_eof = true;
        uv_read_stop(st);
        t->in_reading = false;
        tunnel_push(t);
        return;
    }
    if (n < 0) {
        finish(t, 1, "stdin read failed");
        return;
    }
    if (n == 0) {
        return;
    }
    t->in_len = (size_t)n;
    t->in_off = 0;
    /* One chunk at a time: reading pauses until the stream took it (backpressure). */
    uv_read_stop(st);
    t->in_reading = false;
    tunnel_push(t);
}

static void tunnel_push(tool_t *t) {
    if (!t->tunnel || t->finished) {
        return;
    }
    if (t->in_off < t->in_len) {
        ssize_t w =
            tp_h3_stream_send(t->tunnel, t->in_buf + t->in_off, t->in_len - t->in_off, false);
        if (w < 0) {
            finish(t, 1, "tunnel send failed");
            return;
        }
        t->in_off += (size_t)w;
        if (t->in_off < t->in_len) {
            return; /* on_writable */
        }
    }
    if (t->in_eof) {
        if (!t->tunnel_fin) {
            t->tunnel_fin = true;
            tp_h3_stream_send(t->tunnel, NULL, 0, true);
        }
        return;
    }
    if (t->in_open && !t->in_reading) {
        t->in_reading = true;
        uv_read_start((uv_stream_t *)&t->in_pipe, in_alloc, in_read);
    }
}

/* ---- H3 events ---- */

static void on_conn_ready(tp_h3_conn_t *c) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(c));
    if (!t->t_ready) {
        t->t_ready = uv_hrtime();
    }
    switch (t->mode) {
    case MODE_GET:
        if (t->requeued > 0) {
            /* 0-RTT refused: every request made so far goes again, now as 1-RTT. */
            t->requeued = 0;
            t->started = 0;
            t->done = 0;
        }
        if (tp_quic_conn_early_data(tp_h3_conn_quic(c)) == TP_QUIC_EARLY_SENT) {
            t->early_streams = t->nstreams;
        }
        start_gets(t, c);
        break;
    case MODE_RATE: rate_fill(tp_h3_conn_data(c)); break;
    case MODE_CONNECT:
        t->ready = true;
        /* RFC 9220 3: an extended CONNECT waits for the server's SETTINGS. */
        if (!t->protocol || t->settings) {
            start_connect(t, c);
        }
        break;
    }
}

/* RFC 9220 3: a client sends an extended CONNECT only once the server's SETTINGS allowed it.
 * nghttp3 1.8 drops SETTINGS_ENABLE_CONNECT_PROTOCOL on the client side (it keeps it only when it
 * is the server), so the value cannot be checked there: the request waits for the SETTINGS, and
 * a server that did not allow it resets the stream (H3_MESSAGE_ERROR). */
static void on_settings(tp_h3_conn_t *c) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(c));
    if (t->mode != MODE_CONNECT || !t->protocol || t->settings) {
        return;
    }
    t->settings = true;
    if (t->ready) {
        start_connect(t, c);
    }
}

static void on_streams_available(tp_h3_conn_t *c) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(c));
    if (t->mode == MODE_GET) {
        start_gets(t, c);
    } else if (t->mode == MODE_RATE) {
        rate_fill(tp_h3_conn_data(c));
    }
}

static bool field_is(const tp_h3_field_t *f, const char *name) {
    return f->name_len == strlen(name) && memcmp(f->name, name, f->name_len) == 0;
}

static void on_response(tp_h3_stream_t *s, int status, const tp_h3_field_t *f, size_t n) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(tp_h3_stream_conn(s)));
    if (status < 200) {
        return; /* interim */
    }
    if (t->mode == MODE_RATE) {
        if (status / 100 != 2) {
            tp_h3_stream_set_data(s, &t->non2xx_marker);
        }
        return;
    }
    if (t->mode == MODE_GET) {
        xfer_t *x = tp_h3_stream_data(s);
        x->status = status;
        for (size_t i = 0; i < n; i++) {
            if (field_is(&f[i], "content-length")) {
                char v[24];
                size_t k = f[i].value_len < sizeof(v) - 1 ? f[i].value_len : sizeof(v) - 1;
                memcpy(v, f[i].value, k);
                v[k] = '\0';
                x->content_length = (int64_t)strtoll(v, NULL, 10);
            }
        }
    } else if (t->mode == MODE_CONNECT) {
        for (size_t i = 0; i < n; i++) { /* the answer's fields, for tests to check */
            fprintf(stderr, "< %.*s: %.*s\n", (int)f[i].name_len, f[i].name, (int)f[i].value_len,
                    f[i].value);
        }
        if (status / 100 != 2) {
            char msg[64];
            snprintf(msg, sizeof(msg), "CONNECT answered %d", status);
            finish(t, 1, msg);
            return;
        }
        t->tunnel_up = true;
        fprintf(stderr, "turnpike-h3: tunnel to %s open\n", t->target);
        for (unsigned i = 0; i < t->ndgrams; i++) {
            uint8_t b[DGRAM_SIZE];
            dgram_fill(b, i);
            if (tp_h3_stream_send_datagram(s, b, sizeof(b)) == 0) {
                t->dgrams_sent++;
            }
        }
        tunnel_push(t);
    }
}

/* Every response is complete, and every body too, or ended by the server: an upload answered
 * before its end waits for its stream to close (our side ended by the server's STOP_SENDING). */
static bool all_settled(const tool_t *t) {
    if (t->done < t->nstreams) {
        return false;
    }
    for (unsigned i = 0; t->has_body && i < t->nstreams; i++) {
        if (!t->xfers[i].body_done && !t->xfers[i].closed) {
            return false;
        }
    }
    return true;
}

static void on_body(tp_h3_stream_t *s, const uint8_t *data, size_t len, bool fin) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(tp_h3_stream_conn(s)));
    if (t->mode == MODE_RATE) {
        t->rate_bytes += len;
        if (fin && tp_h3_stream_data(s) != &t->non2xx_marker) {
            /* The request is done when its response is: its slot is free now, not when the
             * QUIC stream closes (after the peer acknowledged our FIN, an ACK delay later). */
            if (!t->stopping) {
                t->completed++;
            }
            tp_h3_stream_set_data(s, &t->done_marker);
            rconn_t *rc = tp_h3_conn_data(tp_h3_stream_conn(s));
            rc->inflight--;
            rate_fill(rc);
        }
        return;
    }
    if (t->mode == MODE_CONNECT) {
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(STDOUT_FILENO, data + off, len - off);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                finish(t, 1, "stdout write failed");
                return;
            }
            off += (size_t)w;
        }
        if (fin) {
            /* The target closed its side; ours ends at stdin's EOF (or now if it came). */
            if (t->tunnel_fin) {
                finish(t, 0, NULL);
            }
        }
        return;
    }
    xfer_t *x = tp_h3_stream_data(s);
    if (len > 0) {
        if (t->verify && x->mismatch_at == UINT64_MAX) {
            for (size_t i = 0; i < len; i++) {
                if (data[i] != pattern_byte(x->bytes + i)) {
                    x->mismatch_at = x->bytes + i;
                    break;
                }
            }
        }
        gnutls_hash(x->hash, data, len);
        if (x->idx == 0 && t->out && fwrite(data, 1, len, t->out) != len) {
            finish(t, 1, "cannot write the output file");
            return;
        }
        x->bytes += len;
    }
    if (fin && !x->fin) {
        x->fin = true;
        uint8_t d[32];
        gnutls_hash_output(x->hash, d);
        for (int i = 0; i < 32; i++) {
            snprintf(x->sha256 + (size_t)i * 2, 3, "%02x", d[i]);
        }
        t->done++;
        if (all_settled(t)) {
            finish(t, 0, NULL);
        } else if (t->sequential && t->done < t->nstreams) {
            start_gets(t, tp_h3_stream_conn(s));
        }
    }
}

static void on_writable(tp_h3_stream_t *s) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(tp_h3_stream_conn(s)));
    if (t->mode == MODE_CONNECT) {
        tunnel_push(t);
    } else if (t->mode == MODE_GET && t->has_body) {
        body_push(tp_h3_stream_data(s));
    }
}

static void on_reset(tp_h3_stream_t *s, tp_quic_reset_dir_t dir, uint64_t code) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(tp_h3_stream_conn(s)));
    if (t->mode == MODE_GET && dir == TP_QUIC_RESET_SEND) {
        /* STOP_SENDING: the server needs no more of the body (RFC 9114 4.1: with H3_NO_ERROR
         * after a complete response, which still arrives). */
        xfer_t *x = tp_h3_stream_data(s);
        x->stopped = true;
        x->body_done = true;
    } else if (t->mode == MODE_GET && code == TP_H3_REQUEST_REJECTED &&
               tp_quic_conn_early_data(tp_h3_conn_quic(tp_h3_stream_conn(s))) ==
                   TP_QUIC_EARLY_REJECTED) {
        xfer_t *x = tp_h3_stream_data(s); /* the server saw none of it: on_conn_ready resends */
        x->requeue = true;
    } else if (t->mode == MODE_GET) {
        xfer_t *x = tp_h3_stream_data(s);
        x->reset = true;
        x->reset_code = code;
    } else if (t->mode == MODE_CONNECT && s == t->tunnel && dir == TP_QUIC_RESET_SEND) {
        /* STOP_SENDING: nothing more of stdin goes; the answer (or the rest of the tunnel) may
         * still come, and a refusal's response should be seen. */
        fprintf(stderr, "turnpike-h3: the peer stopped our side (STOP_SENDING)\n");
        t->in_eof = true;
        t->tunnel_fin = true;
        t->in_len = t->in_off = 0;
        if (t->in_open && t->in_reading) {
            uv_read_stop((uv_stream_t *)&t->in_pipe);
            t->in_reading = false;
        }
    } else if (t->mode == MODE_CONNECT && s == t->tunnel) {
        char msg[96];
        snprintf(msg, sizeof(msg), "tunnel reset by the peer (code 0x%" PRIx64 ")", code);
        finish(t, 1, msg);
    }
}

static void on_stream_close(tp_h3_stream_t *s) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(tp_h3_stream_conn(s)));
    if (t->mode == MODE_GET) {
        xfer_t *x = tp_h3_stream_data(s);
        x->s = NULL;
        if (x->requeue) {
            x->requeue = false;
            x->sent = 0;
            x->body_done = false;
            t->requeued++;
            return;
        }
        x->closed = true;
        if (t->has_body && !x->body_done && x->fin) {
            /* Our side closed without our end: the server stopped the body (STOP_SENDING), whose
             * notice may not have come first (ngtcp2 tells it only at a write). */
            x->stopped = true;
            x->body_done = true;
        }
        if (x->fin && !t->finished && all_settled(t)) {
            finish(t, 0, NULL);
        }
        if (!x->fin && !t->finished) {
            char msg[96];
            snprintf(msg, sizeof(msg), "stream %u ended before its response did", x->idx);
            finish(t, 1, msg);
        }
    } else if (t->mode == MODE_RATE) {
        if (tp_h3_stream_data(s) != &t->done_marker) {
            /* Closed without a whole 2xx response: reset, or answered otherwise. */
            rconn_t *rc = tp_h3_conn_data(tp_h3_stream_conn(s));
            rc->inflight--;
            if (!t->stopping) {
                t->failed++;
            }
            rate_fill(rc);
        }
    } else if (s == t->tunnel) {
        t->tunnel = NULL;
        if (!t->finished) {
            finish(t, t->tunnel_up && t->tunnel_fin ? 0 : 1, "tunnel closed");
        }
    }
}

static void on_conn_close(tp_h3_conn_t *c, const tp_quic_close_info_t *info) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(c));
    if (t->session_file && t->mode == MODE_GET) {
        tp_quic_conn_t *q = tp_h3_conn_quic(c);
        t->resumed = tp_quic_conn_resumed(q);
        t->early = tp_quic_conn_early_data(q);
        ssize_t n = tp_quic_conn_session(q, t->session, sizeof(t->session));
        t->session_saved = n > 0;
        t->session_len = n > 0 ? (size_t)n : 0;
    }
    if (!t->finished && (t->mode != MODE_RATE || !t->stopping)) {
        char msg[400];
        /* The wire code too: a refusal (CONNECTION_REFUSED, 0x2) says nothing in its reason. */
        snprintf(msg, sizeof(msg), "connection closed: %s: %s %s error 0x%" PRIx64 "%s%s",
                 tp_strerror(info->err), info->remote ? "by the peer," : "locally,",
                 info->application ? "application" : "transport", info->code,
                 info->reason[0] ? ": " : "", info->reason);
        finish(t, 1, msg);
    }
    if (t->mode == MODE_RATE) {
        rconn_t *rc = tp_h3_conn_data(c);
        rc->conn = NULL;
        if (--t->conns_open > 0) {
            return;
        }
    } else {
        t->conn = NULL;
    }
    uv_close((uv_handle_t *)&t->deadline, NULL);
    uv_close((uv_handle_t *)&t->rate_timer, NULL);
    tp_quic_endpoint_close(t->ep, NULL, NULL);
}

static void on_datagram(tp_h3_conn_t *c, uint64_t quarter_id, tp_h3_stream_t *s,
                        const uint8_t *data, size_t len) {
    tool_t *t = tp_h3_data(tp_h3_conn_driver(c));
    uint8_t want[DGRAM_SIZE];
    unsigned i = len >= 2 ? (unsigned)(data[0] << 8 | data[1]) : 0;
    if (!s || s != t->tunnel || len != DGRAM_SIZE || i >= t->ndgrams) {
        t->dgrams_bad++;
        return;
    }
    dgram_fill(want, i);
    if (memcmp(want, data, len) != 0) {
        t->dgrams_bad++;
        return;
    }
    t->dgrams_echoed++;
}

static const tp_h3_callbacks_t callbacks = {
    .on_datagram = on_datagram,
    .on_conn_ready = on_conn_ready,
    .on_response = on_response,
    .on_body = on_body,
    .on_writable = on_writable,
    .on_reset = on_reset,
    .on_stream_close = on_stream_close,
    .on_streams_available = on_streams_available,
    .on_conn_close = on_conn_close,
    .on_settings = on_settings,
};

static void deadline_cb(uv_timer_t *tm) {
    tool_t *t = tm->data;
    finish(t, 1, "timed out");
}

static void rate_cb(uv_timer_t *tm) {
    tool_t *t = tm->data;
    t->stopping = true;
    t->rate_t1 = uv_hrtime();
    finish(t, 0, NULL);
}

/* ---- command line ---- */

static unsigned long long parse_num(const char *s, const char *what) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end) {
        fprintf(stderr, "turnpike-h3: %s: not a number: %s\n", what, s);
        exit(2);
    }
    return v;
}

static bool is_ip_literal(const char *host) {
    tp_addr_t a;
    char buf[300];
    snprintf(buf, sizeof(buf), strchr(host, ':') ? "[%s]:1" : "%s:1", host);
    return tp_addr_parse(&a, buf, false) == 0;
}

/* Splits HOST:PORT ([v6]:PORT) into host and port; returns 0 or -1. */
static int split_hostport(const char *s, size_t len, char *host, size_t hcap, char *port,
                          size_t pcap) {
    const char *end = s + len;
    const char *h = s;
    const char *hend;
    const char *colon;
    if (len > 0 && *s == '[') {
        hend = memchr(s, ']', len);
        if (!hend || hend + 1 >= end || hend[1] != ':') {
            return -1;
        }
        h = s + 1;
        colon = hend + 1;
    } else {
        colon = NULL;
        for (const char *p = s; p < end; p++) {
            if (*p == ':') {
                colon = p;
            }
        }
        if (!colon) {
            return -1;
        }
        hend = colon;
    }
    size_t hl = (size_t)(hend - h);
    size_t pl = (size_t)(end - colon - 1);
    if (hl == 0 || hl >= hcap || pl == 0 || pl >= pcap) {
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl);
    port[pl] = '\0';
    return 0;
}

static int resolve(const char *host, const char *port, tp_addr_t *out) {
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->u, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}

static void print_get(tool_t *t) {
    uint64_t total = 0;
    unsigned bad = 0;
    for (unsigned i = 0; i < t->nstreams; i++) {
        xfer_t *x = &t->xfers[i];
        total += x->bytes;
        bool ok = x->fin && x->status / 100 == 2 &&
                  (x->content_length < 0 || (uint64_t)x->content_length == x->bytes) &&
                  x->mismatch_at == UINT64_MAX;
        bad += !ok;
    }
    bool ok = t->exit_code == 0 && bad == 0;
    double secs = (double)(uv_hrtime() - t->t0) / 1e9;
    printf("{\"ok\":%s,\"streams\":%u,\"bytes\":%" PRIu64 ",\"failed_streams\":%u,"
           "\"seconds\":%.3f,\"mbit_per_s\":%.1f,\"error\":",
           ok ? "true" : "false", t->nstreams, total, bad, secs,
           secs > 0 ? (double)total * 8 / secs / 1e6 : 0.0);
    json_str(stdout, ok ? "" : (t->error[0] ? t->error : "a stream failed"));
    printf(",\"per_stream\":[");
    for (unsigned i = 0; i < t->nstreams; i++) {
        xfer_t *x = &t->xfers[i];
        printf("%s{\"status\":%d,\"bytes\":%" PRIu64 ",\"content_length\":%" PRId64
               ",\"complete\":%s,\"sha256\":\"%s\"",
               i ? "," : "", x->status, x->bytes, x->content_length, x->fin ? "true" : "false",
               x->sha256);
        if (t->verify) {
            printf(",\"pattern_ok\":%s", x->mismatch_at == UINT64_MAX ? "true" : "false");
        }
        if (x->reset) {
            printf(",\"reset_code\":%" PRIu64, x->reset_code);
        }
        if (t->has_body) {
            printf(",\"sent\":%" PRIu64 ",\"body_complete\":%s", x->sent,
                   x->sent == t->body_len && !x->stopped ? "true" : "false");
        }
        if (x->stopped) { /* ngtcp2 does not tell STOP_SENDING's code */
            printf(",\"stop_sending\":true");
        }
        printf("}");
    }
    printf("]");
    if (t->session_file) {
        static const char *const early[] = {"none", "sent", "accepted", "rejected"};
        printf(",\"resumed\":%s,\"early_data\":\"%s\",\"early_requests\":%u,"
               "\"session_saved\":%s",
               t->resumed ? "true" : "false", early[t->early], t->early_streams,
               t->session_saved ? "true" : "false");
    }
    printf("}\n");
    fflush(stdout);
    t->exit_code = ok ? 0 : 1;
}

/* --session-file: what an earlier run left (none yet is fine; an unreadable one is not). */
static int session_read(tool_t *t) {
    FILE *f = fopen(t->session_file, "rbe");
    if (!f) {
        return errno == ENOENT ? 0 : -1;
    }
    t->session_len = fread(t->session, 1, sizeof(t->session), f);
    int rc = ferror(f) ? -1 : 0;
    fclose(f);
    return rc;
}

/* Saves the connection's session (0600: it holds the resumption secret). */
static int session_write(const tool_t *t) {
    int fd = open(t->session_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    ssize_t w = write(fd, t->session, t->session_len);
    int rc = w == (ssize_t)t->session_len ? 0 : -1;
    if (close(fd) != 0) {
        rc = -1;
    }
    return rc;
}

static void print_rate(tool_t *t) {
    uint64_t end = t->rate_t1 ? t->rate_t1 : uv_hrtime();
    double secs = (double)(end - (t->rate_t0 ? t->rate_t0 : t->t0)) / 1e9;
    bool ok = t->completed > 0 && (t->exit_code == 0 || t->stopping);
    printf("{\"ok\":%s,\"connections\":%u,\"streams_per_connection\":%u,\"seconds\":%.3f,"
           "\"requests\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"req_per_s\":%.1f,"
           "\"bytes\":%" PRIu64 ",\"error\":",
           ok ? "true" : "false", t->nconns, t->per_conn, secs, t->completed, t->failed,
           secs > 0 ? (double)t->completed / secs : 0.0, t->rate_bytes);
    json_str(stdout, ok ? "" : t->error);
    printf("}\n");
    fflush(stdout);
    t->exit_code = ok ? 0 : 1;
}

static int parse_url(tool_t *t, const char *url, char *host, size_t hcap, char *port, size_t pcap) {
    if (strncmp(url, "https://", 8) != 0) {
        return -1;
    }
    const char *hp = url + 8;
    const char *slash = strchr(hp, '/');
    size_t hplen = slash ? (size_t)(slash - hp) : strlen(hp);
    if (hplen >= sizeof(t->authority)) {
        return -1;
    }
    if (split_hostport(hp, hplen, host, hcap, port, pcap) != 0) {
        /* No port: 443. */
        if (hplen == 0 || hplen >= hcap || memchr(hp, ':', hplen)) {
            return -1;
        }
        memcpy(host, hp, hplen);
        host[hplen] = '\0';
        snprintf(port, pcap, "443");
    }
    memcpy(t->authority, hp, hplen);
    t->authority[hplen] = '\0';
    snprintf(t->path, sizeof(t->path), "%s", slash ? slash : "/");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        usage();
        return 2;
    }
    tool_t t;
    memset(&t, 0, sizeof(t));
    t.body_fd = -1;
    snprintf(t.xpath, sizeof(t.xpath), "/");
    t.nstreams = 1;
    t.nconns = 1;
    t.per_conn = 1;
    uint64_t timeout_ms = 120000;
    const char *sni = NULL;
    tp_quic_settings_t qs;
    tp_quic_settings_default(&qs);
    char host[256];
    char port[16];
    int first_opt;
    if (!strcmp(argv[1], "get")) {
        t.mode = MODE_GET;
        if (parse_url(&t, argv[2], host, sizeof(host), port, sizeof(port)) != 0) {
            fprintf(stderr, "turnpike-h3: not an https://HOST[:PORT]/PATH URL: %s\n", argv[2]);
            return 2;
        }
        first_opt = 3;
    } else if (!strcmp(argv[1], "connect") && argc >= 4) {
        t.mode = MODE_CONNECT;
        if (split_hostport(argv[2], strlen(argv[2]), host, sizeof(host), port, sizeof(port)) != 0 ||
            strlen(argv[3]) >= sizeof(t.target) || !strchr(argv[3], ':')) {
            usage();
            return 2;
        }
        snprintf(t.target, sizeof(t.target), "%s", argv[3]);
        first_opt = 4;
    } else {
        usage();
        return 2;
    }
    for (int i = first_opt; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--insecure")) {
            qs.insecure_skip_verify = true;
            continue;
        }
        if (!strcmp(a, "--no-early-data")) {
            qs.early_data = false;
            t.no_early = true;
            continue;
        }
        if (!strcmp(a, "--verify-pattern")) {
            t.verify = true;
            continue;
        }
        if (!strcmp(a, "--no-content-length")) {
            t.no_length = true;
            continue;
        }
        if (!strcmp(a, "--sequential")) {
            t.sequential = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "-H")) {
            const char *colon = strchr(v, ':');
            if (!colon || colon == v || t.nextra == MAX_EXTRA) {
                usage();
                return 2;
            }
            const char *val = colon + 1;
            while (*val == ' ') {
                val++;
            }
            t.extra[t.nextra++] = (tp_h3_field_t){v, (size_t)(colon - v), val, strlen(val)};
        } else if (!strcmp(a, "-X")) {
            t.method = v;
        } else if (!strcmp(a, "--body-bytes")) {
            t.has_body = true;
            t.body_len = parse_num(v, a);
        } else if (!strcmp(a, "--body-file")) {
            struct stat st;
            t.has_body = true;
            t.body_fd = open(v, O_RDONLY | O_CLOEXEC);
            if (t.body_fd < 0 || fstat(t.body_fd, &st) != 0) {
                fprintf(stderr, "turnpike-h3: cannot open %s: %s\n", v, strerror(errno));
                return 2;
            }
            t.body_len = (uint64_t)st.st_size;
        } else if (!strcmp(a, "--big-header-first")) {
            t.big_header = (size_t)parse_num(v, a);
        } else if (!strcmp(a, "--protocol")) {
            t.protocol = v;
        } else if (!strcmp(a, "--path")) {
            snprintf(t.xpath, sizeof(t.xpath), "%s", v);
        } else if (!strcmp(a, "--datagrams")) {
            t.ndgrams = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "-n")) {
            t.nstreams = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "-o")) {
            t.out_file = v;
        } else if (!strcmp(a, "--rate")) {
            t.seconds = strtod(v, NULL);
            t.mode = MODE_RATE;
        } else if (!strcmp(a, "-c")) {
            t.nconns = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "-s")) {
            t.per_conn = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "--ca")) {
            qs.ca_file = v;
        } else if (!strcmp(a, "--sni")) {
            sni = v;
        } else if (!strcmp(a, "--timeout-ms")) {
            timeout_ms = parse_num(v, a);
        } else if (!strcmp(a, "--session-file")) {
            t.session_file = v;
        } else if (!strcmp(a, "--max-udp-payload")) {
            qs.max_udp_payload = !strcmp(v, "auto") ? 0 : (size_t)parse_num(v, a);
        } else if (!strcmp(a, "--qlog-dir")) {
            qs.qlog_dir = v;
        } else if (!strcmp(a, "--keylog")) {
            qs.keylog_file = v;
        } else {
            usage();
            return 2;
        }
    }
    if (t.nstreams == 0 || t.nstreams > MAX_STREAMS || t.nconns == 0 || t.nconns > MAX_CONNS ||
        t.per_conn == 0 || t.per_conn > MAX_STREAMS || t.ndgrams > 60000 ||
        (t.mode == MODE_RATE && !(t.seconds > 0 && t.seconds < 86400))) {
        usage();
        return 2;
    }
    if (t.has_body && t.mode != MODE_GET) {
        usage();
        return 2;
    }
    if (!t.method) {
        t.method = t.has_body ? "POST" : "GET";
    }
    if (t.has_body) {
        snprintf(t.body_len_str, sizeof(t.body_len_str), "%" PRIu64, t.body_len);
    }
    if (t.big_header > BIG_MAX) {
        usage();
        return 2;
    }
    if (t.big_header > 0) {
        memset(big_buf, 'p', t.big_header);
        t.big_value = big_buf;
    }
    if (!sni && !is_ip_literal(host)) {
        sni = host;
    }
    if (sni) {
        snprintf(t.sni, sizeof(t.sni), "%s", sni);
    }
    if (resolve(host, port, &t.remote) != 0) {
        printf("{\"ok\":false,\"error\":\"cannot resolve %s\"}\n", host);
        return 1;
    }
    if (t.out_file) {
        t.out = fopen(t.out_file, "wb");
        if (!t.out) {
            fprintf(stderr, "turnpike-h3: cannot open %s: %s\n", t.out_file, strerror(errno));
            return 1;
        }
    }
    if (t.mode == MODE_GET) {
        t.xfers = calloc(t.nstreams, sizeof(*t.xfers));
        if (!t.xfers) {
            return 1;
        }
        for (unsigned i = 0; i < t.nstreams; i++) {
            t.xfers[i].t = &t;
            t.xfers[i].idx = i;
            t.xfers[i].content_length = -1;
            t.xfers[i].mismatch_at = UINT64_MAX;
            if (gnutls_hash_init(&t.xfers[i].hash, GNUTLS_DIG_SHA256) != 0) {
                return 1;
            }
        }
    }
    if (t.session_file) {
        if (t.mode != MODE_GET || t.seconds > 0) {
            fprintf(stderr, "turnpike-h3: --session-file is for the get mode (no --rate)\n");
            return 2;
        }
        if (session_read(&t) != 0) {
            fprintf(stderr, "turnpike-h3: cannot read %s: %s\n", t.session_file, strerror(errno));
            return 2;
        }
        qs.early_data = !t.no_early; /* offer 0-RTT when the saved ticket allows it */
    }
    uv_loop_init(&t.loop);
    tp_h3_settings_t hs;
    tp_h3_settings_default(&hs);
    int rc = tp_h3_new(&t.h3, false, &hs, &callbacks, &t);
    tp_addr_t bind;
    tp_addr_parse(&bind, t.remote.u.sa.sa_family == AF_INET6 ? "[::]:0" : "0.0.0.0:0", false);
    if (rc == 0) {
        rc = tp_h3_endpoint_new(&t.ep, &t.loop, &bind, t.h3, &qs);
    }
    if (rc != 0) {
        printf("{\"ok\":false,\"error\":\"client endpoint: %s\"}\n", tp_strerror(rc));
        return 1;
    }
    uv_timer_init(&t.loop, &t.deadline);
    uv_timer_init(&t.loop, &t.rate_timer);
    t.deadline.data = t.rate_timer.data = &t;
    t.t0 = uv_hrtime();
    if (t.mode == MODE_RATE) {
        t.rconns = calloc(t.nconns, sizeof(*t.rconns));
        if (!t.rconns) {
            return 1;
        }
        t.rate_t0 = uv_hrtime();
        uv_timer_start(&t.rate_timer, rate_cb, (uint64_t)(t.seconds * 1000), 0);
        uv_timer_start(&t.deadline, deadline_cb, (uint64_t)(t.seconds * 1000) + timeout_ms, 0);
        for (unsigned i = 0; i < t.nconns; i++) {
            t.rconns[i].t = &t;
            rc = tp_h3_connect(t.ep, &t.remote, sni, &t.rconns[i], &t.rconns[i].conn);
            if (rc != 0) {
                break;
            }
            t.conns_open++;
        }
    } else {
        uv_timer_start(&t.deadline, deadline_cb, timeout_ms, 0);
        rc = tp_h3_connect_resume(t.ep, &t.remote, sni, t.session_len ? t.session : NULL,
                                  t.session_len, NULL, &t.conn);
        if (rc == 0 && t.mode == MODE_CONNECT) {
            t.in_buf = malloc(STDIN_CHUNK);
            if (!t.in_buf || uv_pipe_init(&t.loop, &t.in_pipe, 0) != 0 ||
                uv_pipe_open(&t.in_pipe, STDIN_FILENO) != 0) {
                fprintf(stderr, "turnpike-h3: stdin must be a pipe or a socket\n");
                return 2;
            }
            t.in_pipe.data = &t;
            t.in_open = true;
        }
    }
    if (rc != 0 && t.mode != MODE_RATE) {
        printf("{\"ok\":false,\"error\":\"connect: %s%s\"}\n", tp_strerror(rc),
               rc == TP_ERR_INVAL && t.session_len ? " (the --session-file is not a saved session)"
                                                   : "");
        fflush(stdout);
        /* Let the endpoint and what the attempt left close before leaving. */
        uv_close((uv_handle_t *)&t.deadline, NULL);
        uv_close((uv_handle_t *)&t.rate_timer, NULL);
        tp_quic_endpoint_close(t.ep, NULL, NULL);
        uv_run(&t.loop, UV_RUN_DEFAULT);
        uv_loop_close(&t.loop);
        tp_h3_del(t.h3);
        for (unsigned i = 0; t.mode == MODE_GET && i < t.nstreams; i++) {
            gnutls_hash_deinit(t.xfers[i].hash, NULL);
        }
        free(t.xfers);
        free(t.in_buf);
        return 1;
    }
    if (rc != 0) {
        printf("{\"ok\":false,\"error\":\"connect: %s\"}\n", tp_strerror(rc));
        return 1;
    }
    uv_run(&t.loop, UV_RUN_DEFAULT);
    if (t.mode == MODE_GET) {
        print_get(&t);
        for (unsigned i = 0; i < t.nstreams; i++) {
            gnutls_hash_deinit(t.xfers[i].hash, NULL);
        }
        free(t.xfers);
    } else if (t.mode == MODE_RATE) {
        print_rate(&t);
        free(t.rconns);
    } else {
        if (t.ndgrams > 0) {
            fprintf(stderr,
                    "{\"datagrams_sent\":%u,\"datagrams_echoed\":%u,\"datagrams_bad\":%u}\n",
                    t.dgrams_sent, t.dgrams_echoed, t.dgrams_bad);
        }
        if (t.exit_code != 0) {
            fprintf(stderr, "turnpike-h3: %s\n", t.error);
        }
    }
    if (t.out && fclose(t.out) != 0) {
        t.exit_code = 1;
    }
    if (t.session_saved && session_write(&t) != 0) {
        fprintf(stderr, "turnpike-h3: cannot write %s: %s\n", t.session_file, strerror(errno));
        t.exit_code = 1;
    }
    free(t.in_buf);
    if (t.body_fd >= 0) {
        close(t.body_fd);
    }
    uv_loop_close(&t.loop);
    tp_h3_del(t.h3);
    return t.exit_code;
}
