/* h3-files: a tiny HTTP/3 server over the H3 driver (turnpike/h3.h) that serves generated
 * content: GET /bytes/N answers N bytes of the testkit's pattern (byte i is i % 251) with a
 * content-length; POST /echo answers the request body back; CONNECT host:port (an IP literal)
 * opens a TCP tunnel; extended CONNECT (RFC 9220) to /echo echoes the stream; HTTP datagrams on an
 * open stream are echoed; anything else is 404. Interop clients (ngtcp2's gtlsclient, turnpike-h3)
 * download from it. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "turnpike/h3.h"

#define PERIOD 251
#define SLICE  65536
/* The largest /bytes/N served (1 TiB): bigger is a typo, answered 400. */
#define MAX_BYTES (1ULL << 40)

static uint8_t pattern[SLICE + PERIOD];

/* A CONNECT tunnel: the TCP side outlives the stream until its handle closed. */
typedef struct tunnel {
    tp_h3_stream_t *s; /* NULL once the stream closed */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    uint8_t *rbuf; /* bytes read from TCP not yet taken by the stream */
    size_t rlen, roff;
    bool connected, reading, closing;
} tunnel_t;

typedef struct req {
    uint64_t left;   /* body bytes still to queue */
    uint64_t offset; /* stream offset of the next one */
    bool echo;       /* POST /echo: the body is the request's */
    bool download;   /* GET /bytes/N */
    tunnel_t *tunnel;
    /* Extended CONNECT (RFC 9220) to /echo: a byte-stream echo. Received bytes wait here until
     * the stream takes them back; only then are they credited to the client (manual_consume),
     * so this holds at most the stream's flow-control window. */
    bool echo_stream;
    bool echo_fin;
    uint8_t *pend;
    size_t plen, pcap;
} req_t;

/* One write to the tunnel's TCP side; the bytes are credited to the peer once written. */
typedef struct twrite {
    uv_write_t req;
    tunnel_t *tn;
    size_t len;
    uint8_t data[];
} twrite_t;

#define TUNNEL_READ 65536

typedef struct server {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    tp_h3_t *h3;
    tp_quic_endpoint_t *ep;
    uint64_t requests, responses_done, bytes_out;
    uint64_t early_requests, too_early;      /* requests that came in 0-RTT; of them answered 425 */
    uint64_t downloads_open, downloads_peak; /* GET /bytes/N in flight, and the most at once */
    size_t udp_payload_peak;    /* the largest UDP payload a closed connection's path reached */
    size_t udp_payload_ceiling; /* and the PMTUD ceiling that connection had */
} server_t;

static void usage(void) {
    fprintf(
        stderr,
        "usage: h3-files --listen ADDR:PORT --cert FILE --key FILE\n"
        "                [--retry always|never|load] [--retry-threshold N] [--max-connections N]\n"
        "                [--max-streams N] [--cc cubic|bbr|reno] [--qlog-dir DIR] [--keylog "
        "FILE]\n"
        "                [--early-data] [--max-udp-payload N|auto]\n");
}

static void print_stats(server_t *srv, const char *why) {
    tp_quic_stats_t st;
    char json[2048];
    tp_quic_endpoint_stats(srv->ep, &st);
    tp_quic_stats_json(&st, json, sizeof(json));
    printf("{\"msg\":\"stats\",\"why\":\"%s\",\"requests\":%" PRIu64 ",\"responses_done\":%" PRIu64
           ",\"bytes_out\":%" PRIu64 ",\"downloads_peak\":%" PRIu64 ",\"early_requests\":%" PRIu64
           ",\"too_early\":%" PRIu64 ",\"udp_payload_peak\":%zu,\"udp_payload_ceiling\":%zu"
           ",\"stats\":%s}\n",
           why, srv->requests, srv->responses_done, srv->bytes_out, srv->downloads_peak,
           srv->early_requests, srv->too_early, srv->udp_payload_peak, srv->udp_payload_ceiling,
           json);
    fflush(stdout);
}

static server_t *server_of(tp_h3_stream_t *s) {
    return tp_h3_data(tp_h3_conn_driver(tp_h3_stream_conn(s)));
}

/* Queues pattern bytes until the stream's body buffer is full or the body is done. */
static void pump(tp_h3_stream_t *s, req_t *r) {
    server_t *srv = server_of(s);
    while (r->left > 0) {
        size_t n = r->left < SLICE ? (size_t)r->left : SLICE;
        ssize_t w = tp_h3_stream_send(s, pattern + r->offset % PERIOD, n, n == r->left);
        if (w < 0) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        r->left -= (uint64_t)w;
        r->offset += (uint64_t)w;
        srv->bytes_out += (uint64_t)w;
        if ((size_t)w < n) {
            return; /* on_writable resumes */
        }
    }
}

/* Decimal digits of v into buf (room for 21), NUL-terminated; its length. (snprintf was a
 * visible part of a small response's cost.) */
static size_t fmt_u64(char *buf, unsigned long long v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    buf[n] = '\0';
    return n;
}

static void answer(tp_h3_stream_t *s, const char *status, const char *body) {
    char len[24];
    snprintf(len, sizeof(len), "%zu", strlen(body));
    tp_h3_field_t f[] = {
        {":status", 7, status, strlen(status)},
        {"content-length", 14, len, strlen(len)},
        {"content-type", 12, "text/plain", 10},
    };
    if (tp_h3_respond(s, f, 3, body[0] == '\0') == 0 && body[0]) {
        tp_h3_stream_send(s, body, strlen(body), true);
    }
}

static void tunnel_closed(uv_handle_t *h) {
    tunnel_t *tn = h->data;
    free(tn->rbuf);
    free(tn);
}

static void tunnel_close(tunnel_t *tn) {
    if (!tn->closing) {
        tn->closing = true;
        uv_close((uv_handle_t *)&tn->tcp, tunnel_closed);
    }
}

static void tunnel_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void tunnel_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    tunnel_t *tn = h->data;
    buf->base = (char *)tn->rbuf;
    buf->len = TUNNEL_READ;
}

/* Moves what TCP gave into the stream; reading resumes only when all of it was taken. */
static void tunnel_pump(tunnel_t *tn) {
    if (!tn->s || tn->closing) {
        return;
    }
    if (tn->roff < tn->rlen) {
        ssize_t w = tp_h3_stream_send(tn->s, tn->rbuf + tn->roff, tn->rlen - tn->roff, false);
        if (w < 0) {
            tp_h3_stream_reset(tn->s, TP_H3_CONNECT_ERROR);
            return;
        }
        tn->roff += (size_t)w;
        if (tn->roff < tn->rlen) {
            return; /* on_writable */
        }
    }
    if (!tn->reading) {
        tn->reading = true;
        uv_read_start((uv_stream_t *)&tn->tcp, tunnel_alloc, tunnel_read);
    }
}

static void tunnel_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    tunnel_t *tn = st->data;
    if (n == 0) {
        return;
    }
    uv_read_stop(st);
    tn->reading = false;
    if (!tn->s) {
        tunnel_close(tn);
        return;
    }
    if (n == UV_EOF) {
        tp_h3_stream_send(tn->s, NULL, 0, true); /* the target finished: so does the stream */
        return;
    }
    if (n < 0) {
        tp_h3_stream_reset(tn->s, TP_H3_CONNECT_ERROR);
        return;
    }
    tn->rlen = (size_t)n;
    tn->roff = 0;
    tunnel_pump(tn);
}

static void tunnel_connected(uv_connect_t *req, int status) {
    tunnel_t *tn = req->data;
    if (!tn->s) {
        tunnel_close(tn);
        return;
    }
    if (status != 0) {
        answer(tn->s, "502", "cannot reach the target\n");
        return;
    }
    tn->connected = true;
    tp_h3_field_t f[] = {{":status", 7, "200", 3}};
    if (tp_h3_respond(tn->s, f, 1, false) == 0) {
        tunnel_pump(tn);
    }
}

static void tunnel_written(uv_write_t *req, int status) {
    twrite_t *w = req->data;
    if (w->tn->s) {
        if (status == 0) {
            tp_h3_stream_consume(w->tn->s, w->len);
        } else {
            tp_h3_stream_reset(w->tn->s, TP_H3_CONNECT_ERROR);
        }
    }
    free(w);
}

static void tunnel_start(server_t *srv, tp_h3_stream_t *s, req_t *r, const char *authority) {
    tp_addr_t target;
    if (tp_addr_parse(&target, authority, false) != 0) {
        answer(s, "400", "CONNECT needs an IP literal and a port\n");
        return;
    }
    tunnel_t *tn = calloc(1, sizeof(*tn));
    if (!tn || !(tn->rbuf = malloc(TUNNEL_READ))) {
        free(tn);
        tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
        return;
    }
    tn->s = s;
    r->tunnel = tn;
    uv_tcp_init(&srv->loop, &tn->tcp);
    tn->tcp.data = tn;
    tn->connect.data = tn;
    if (uv_tcp_connect(&tn->connect, &tn->tcp, &target.u.sa, tunnel_connected) != 0) {
        tn->s = NULL;
        r->tunnel = NULL;
        tunnel_close(tn);
        answer(s, "502", "cannot reach the target\n");
    }
}

static bool field_is(const tp_h3_field_t *f, const char *name) {
    return f->name_len == strlen(name) && memcmp(f->name, name, f->name_len) == 0;
}

static void on_request(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n) {
    server_t *srv = server_of(s);
    srv->requests++;
    const tp_h3_field_t *method = NULL;
    const tp_h3_field_t *path = NULL;
    const tp_h3_field_t *authority = NULL;
    const tp_h3_field_t *protocol = NULL;
    for (size_t i = 0; i < n; i++) {
        if (field_is(&fields[i], ":protocol")) {
            protocol = &fields[i];
        } else if (field_is(&fields[i], ":method")) {
            method = &fields[i];
        } else if (field_is(&fields[i], ":path")) {
            path = &fields[i];
        } else if (field_is(&fields[i], ":authority")) {
            authority = &fields[i];
        }
    }
    if (tp_quic_conn_in_early_data(tp_h3_conn_quic(tp_h3_stream_conn(s)))) {
        /* 0-RTT can be replayed: only GET and HEAD are served from it; anything else is asked
         * to come again after the handshake (425 Too Early, RFC 8470 5.2). */
        srv->early_requests++;
        bool safe = method && ((method->value_len == 3 && !memcmp(method->value, "GET", 3)) ||
                               (method->value_len == 4 && !memcmp(method->value, "HEAD", 4)));
        if (!safe) {
            srv->too_early++;
            answer(s, "425", "too early: send it again after the handshake\n");
            return;
        }
    }
    if (method && authority && !path && method->value_len == 7 &&
        !memcmp(method->value, "CONNECT", 7)) {
        char a[300];
        size_t alen = authority->value_len < sizeof(a) - 1 ? authority->value_len : sizeof(a) - 1;
        memcpy(a, authority->value, alen);
        a[alen] = '\0';
        req_t *r = calloc(1, sizeof(*r));
        if (!r) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        tp_h3_stream_set_data(s, r);
        tunnel_start(srv, s, r, a);
        return;
    }
    if (!method || !path) {
        answer(s, "400", "bad request\n");
        return;
    }
    if (protocol) {
        /* Extended CONNECT: the driver let it through only with :scheme, :path, :authority. */
        if (path->value_len != 5 || memcmp(path->value, "/echo", 5) != 0) {
            answer(s, "404", "extended CONNECT is served on /echo only\n");
            return;
        }
        req_t *r = calloc(1, sizeof(*r));
        if (!r) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        r->echo_stream = true;
        tp_h3_stream_set_data(s, r);
        tp_h3_field_t f[] = {{":status", 7, "200", 3}};
        tp_h3_respond(s, f, 1, false);
        return;
    }
    char p[256];
    size_t plen = path->value_len < sizeof(p) - 1 ? path->value_len : sizeof(p) - 1;
    memcpy(p, path->value, plen);
    p[plen] = '\0';
    bool get = method->value_len == 3 && !memcmp(method->value, "GET", 3);
    bool head = method->value_len == 4 && !memcmp(method->value, "HEAD", 4);
    bool post = method->value_len == 4 && !memcmp(method->value, "POST", 4);
    if ((get || head) && !strncmp(p, "/bytes/", 7)) {
        char *end;
        unsigned long long want = strtoull(p + 7, &end, 10);
        if (end == p + 7 || (*end != '\0' && *end != '?') || want > MAX_BYTES) {
            answer(s, "400", "bad size\n");
            return;
        }
        req_t *r = calloc(1, sizeof(*r));
        if (!r) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        r->left = head ? 0 : want;
        r->download = true;
        if (++srv->downloads_open > srv->downloads_peak) {
            srv->downloads_peak = srv->downloads_open;
        }
        tp_h3_stream_set_data(s, r);
        char len[24];
        size_t len_n = fmt_u64(len, want);
        tp_h3_field_t f[] = {
            {":status", 7, "200", 3},
            {"content-length", 14, len, len_n},
            {"content-type", 12, "application/octet-stream", 24},
        };
        if (tp_h3_respond(s, f, 3, r->left == 0) == 0) {
            pump(s, r);
        }
        return;
    }
    if (post && !strcmp(p, "/echo")) {
        req_t *r = calloc(1, sizeof(*r));
        if (!r) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        r->echo = true;
        tp_h3_stream_set_data(s, r);
        tp_h3_field_t f[] = {{":status", 7, "200", 3}};
        tp_h3_respond(s, f, 1, false);
        return;
    }
    answer(s, "404", "not found\n");
}

/* Sends what the echo stream holds; credits the client with what was taken. */
static void echo_pump(tp_h3_stream_t *s, req_t *r) {
    if (r->plen > 0) {
        ssize_t w = tp_h3_stream_send(s, r->pend, r->plen, false);
        if (w < 0) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        memmove(r->pend, r->pend + w, r->plen - (size_t)w);
        r->plen -= (size_t)w;
        tp_h3_stream_consume(s, (size_t)w);
    }
    if (r->plen == 0 && r->echo_fin) {
        r->echo_fin = false;
        tp_h3_stream_send(s, NULL, 0, true);
    }
}

static void on_body(tp_h3_stream_t *s, const uint8_t *data, size_t len, bool fin) {
    req_t *r = tp_h3_stream_data(s);
    if (r && r->echo_stream) {
        if (r->plen + len > r->pcap) {
            size_t cap = r->pcap ? r->pcap : 65536;
            while (cap < r->plen + len) {
                cap *= 2;
            }
            uint8_t *p = realloc(r->pend, cap);
            if (!p) {
                tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
                return;
            }
            r->pend = p;
            r->pcap = cap;
        }
        if (len) {
            memcpy(r->pend + r->plen, data, len);
        }
        r->plen += len;
        r->echo_fin = r->echo_fin || fin;
        echo_pump(s, r);
        return;
    }
    if (r && r->tunnel) {
        tunnel_t *tn = r->tunnel;
        if (len > 0) {
            /* Credited to the client only once TCP took it (manual_consume): a slow target
             * slows the client instead of growing this queue. */
            twrite_t *w = malloc(sizeof(*w) + len);
            if (!w) {
                tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
                return;
            }
            memcpy(w->data, data, len);
            w->len = len;
            w->tn = tn;
            w->req.data = w;
            uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
            if (!tn->connected ||
                uv_write(&w->req, (uv_stream_t *)&tn->tcp, &b, 1, tunnel_written) != 0) {
                free(w);
                tp_h3_stream_reset(s, TP_H3_CONNECT_ERROR);
                return;
            }
        }
        if (fin && tn->connected && !tn->closing) {
            tn->shutdown.data = tn;
            uv_shutdown(&tn->shutdown, (uv_stream_t *)&tn->tcp, NULL);
        }
        return;
    }
    if (len > 0) {
        tp_h3_stream_consume(s, len);
    }
    if (!r || !r->echo) {
        return;
    }
    /* The echo is bounded by the body buffer: a client that sends faster than it reads gets a
     * reset instead of growing memory here. */
    ssize_t w = len ? tp_h3_stream_send(s, data, len, false) : 0;
    if (w < 0 || (size_t)w < len) {
        tp_h3_stream_reset(s, TP_H3_EXCESSIVE_LOAD);
        return;
    }
    if (fin) {
        tp_h3_stream_send(s, NULL, 0, true);
    }
}

static void on_writable(tp_h3_stream_t *s) {
    req_t *r = tp_h3_stream_data(s);
    if (r && r->tunnel) {
        tunnel_pump(r->tunnel);
    } else if (r && r->echo_stream) {
        echo_pump(s, r);
    } else if (r && !r->echo) {
        pump(s, r);
    }
}

static void on_stream_close(tp_h3_stream_t *s) {
    req_t *r = tp_h3_stream_data(s);
    if (r && r->left == 0) {
        server_of(s)->responses_done++;
    }
    if (r && r->download) {
        server_of(s)->downloads_open--;
    }
    if (r && r->tunnel) {
        r->tunnel->s = NULL;
        tunnel_close(r->tunnel);
    }
    if (r) {
        free(r->pend);
    }
    free(r);
}

static void on_conn_close(tp_h3_conn_t *c, const tp_quic_close_info_t *info) {
    server_t *srv = tp_h3_data(tp_h3_conn_driver(c));
    size_t ceiling;
    size_t now = tp_quic_conn_max_udp_payload(tp_h3_conn_quic(c), &ceiling);
    if (now > srv->udp_payload_peak) {
        srv->udp_payload_peak = now;
        srv->udp_payload_ceiling = ceiling;
    }
    print_stats(srv, "connection closed");
}

/* HTTP datagrams (RFC 9297) on an open request stream are echoed on the same stream. */
static void on_datagram(tp_h3_conn_t *c, uint64_t quarter_id, tp_h3_stream_t *s,
                        const uint8_t *data, size_t len) {
    if (s) {
        (void)tp_h3_stream_send_datagram(s, data, len); /* a full queue drops it, like the net */
    }
}

static const tp_h3_callbacks_t callbacks = {
    .on_datagram = on_datagram,
    .on_request = on_request,
    .on_body = on_body,
    .on_writable = on_writable,
    .on_stream_close = on_stream_close,
    .on_conn_close = on_conn_close,
};

static void on_signal(uv_signal_t *sig, int signum) {
    server_t *srv = sig->data;
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    print_stats(srv, "exit");
    tp_quic_endpoint_close(srv->ep, NULL, NULL);
}

int main(int argc, char **argv) {
    tp_quic_settings_t qs;
    tp_quic_settings_default(&qs);
    qs.retry = TP_QUIC_RETRY_NEVER;
    const char *listen = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--early-data")) {
            qs.early_data = true; /* 0-RTT: GET and HEAD only, the rest gets 425 */
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--listen")) {
            listen = v;
        } else if (!strcmp(a, "--cert")) {
            qs.cert_file = v;
        } else if (!strcmp(a, "--key")) {
            qs.key_file = v;
        } else if (!strcmp(a, "--qlog-dir")) {
            qs.qlog_dir = v;
        } else if (!strcmp(a, "--keylog")) {
            qs.keylog_file = v;
        } else if (!strcmp(a, "--max-udp-payload")) {
            qs.max_udp_payload = !strcmp(v, "auto") ? 0 : (size_t)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--max-connections")) {
            qs.max_connections = (uint32_t)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--retry-threshold")) {
            qs.retry_threshold = (uint32_t)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--max-streams")) {
            qs.initial_max_streams_bidi = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--cc")) {
            qs.cc = !strcmp(v, "bbr")    ? TP_QUIC_CC_BBR
                    : !strcmp(v, "reno") ? TP_QUIC_CC_RENO
                                         : TP_QUIC_CC_CUBIC;
        } else if (!strcmp(a, "--retry")) {
            qs.retry = !strcmp(v, "always") ? TP_QUIC_RETRY_ALWAYS
                       : !strcmp(v, "load") ? TP_QUIC_RETRY_UNDER_LOAD
                                            : TP_QUIC_RETRY_NEVER;
        } else {
            usage();
            return 2;
        }
    }
    tp_addr_t bind;
    if (!listen || tp_addr_parse(&bind, listen, false) != 0) {
        usage();
        return 2;
    }
    for (size_t i = 0; i < sizeof(pattern); i++) {
        pattern[i] = (uint8_t)(i % PERIOD);
    }
    server_t srv;
    memset(&srv, 0, sizeof(srv));
    uv_loop_init(&srv.loop);
    tp_h3_settings_t hs;
    tp_h3_settings_default(&hs);
    hs.manual_consume = true; /* tunnels credit what TCP took; everything else at once */
    int rc = tp_h3_new(&srv.h3, true, &hs, &callbacks, &srv);
    if (rc == 0) {
        rc = tp_h3_endpoint_new(&srv.ep, &srv.loop, &bind, srv.h3, &qs);
    }
    if (rc != 0) {
        fprintf(stderr, "h3-files: cannot listen on %s: %s\n", listen, tp_strerror(rc));
        return 1;
    }
    tp_addr_t local;
    char text[TP_ADDR_STRLEN];
    tp_quic_endpoint_local_addr(srv.ep, &local);
    printf("{\"msg\":\"ready\",\"listen\":\"%s\",\"port\":%u}\n",
           tp_addr_format(&local, text, sizeof(text)), tp_addr_port(&local));
    fflush(stdout);
    uv_signal_init(&srv.loop, &srv.sigterm);
    uv_signal_init(&srv.loop, &srv.sigint);
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv.loop);
    tp_h3_del(srv.h3);
    return 0;
}
