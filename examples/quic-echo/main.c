/* quic-echo: an application over QUIC that is not HTTP (ALPN "tp-echo"), built on
 * turnpike/quic.h alone. The server echoes every stream (finishing it when the client does) and
 * every datagram; the client opens N streams, sends B bytes on each, checks the echo byte by
 * byte, sends datagrams, and prints a JSON summary. */
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "turnpike/quic.h"

#define ALPN         "tp-echo"
#define DGRAM_SIZE   200
#define WRITE_CHUNK  65536
#define MAX_WORKERS  64
#define MAX_CONNECTS 100

static void usage(void) {
    fprintf(
        stderr,
        "usage: quic-echo server --listen ADDR:PORT --cert FILE --key FILE\n"
        "                        [--retry always|never|load] [--workers N] [--cc cubic|bbr|reno]\n"
        "                        [--qlog-dir DIR] [--keylog FILE] [--steering on|off]\n"
        "       quic-echo client HOST PORT [--streams N] [--bytes B] [--datagrams K]\n"
        "                        [--ca FILE | --insecure] [--sni NAME] [--timeout-ms T]\n"
        "                        [--qlog-dir DIR] [--keylog FILE] [--connects N]\n"
        "                        [--connect-gap-ms G]\n"
        "       (--connects: N connections one after the other on the same endpoint, each\n"
        "        started from the previous one's on_close, or G ms after it)\n");
}

static unsigned long long parse_num(const char *s, const char *what) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) {
        fprintf(stderr, "quic-echo: %s: not a number: %s\n", what, s);
        exit(2);
    }
    switch (*end) {
    case 'k':
    case 'K': v <<= 10; break;
    case 'm':
    case 'M': v <<= 20; break;
    case 'g':
    case 'G': v <<= 30; break;
    default: break;
    }
    return v;
}

/* ======================= server ======================= */

/* Bytes received but not yet taken by the stream's send buffer. Bounded by the stream's receive
 * window: with manual_consume the client may only send what we consumed. */
typedef struct echo_stream {
    uint8_t *pending;
    size_t len, cap;
    bool fin_in;
    bool fin_out;
} echo_stream_t;

typedef struct server {
    uv_loop_t main_loop;
    uv_signal_t sigterm, sigint;
    tp_quic_group_t *group;
    unsigned nworkers;
    struct worker *workers;
} server_t;

typedef struct worker {
    server_t *srv;
    unsigned index;
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    tp_quic_endpoint_t *ep;
    tp_quic_stats_t last; /* the endpoint's own counters when it was told to stop */
} worker_t;

static void print_stats(server_t *srv, const char *why) {
    tp_quic_stats_t st;
    char json[2048];
    tp_quic_group_stats(srv->group, &st);
    tp_quic_stats_json(&st, json, sizeof(json));
    printf("{\"msg\":\"stats\",\"why\":\"%s\",\"stats\":%s}\n", why, json);
    fflush(stdout);
}

static void echo_flush(tp_quic_conn_t *conn, int64_t sid, echo_stream_t *es) {
    if (es->len > 0) {
        ssize_t n = tp_quic_stream_write(conn, sid, es->pending, es->len, es->fin_in);
        if (n < 0) {
            return;
        }
        memmove(es->pending, es->pending + n, es->len - (size_t)n);
        es->len -= (size_t)n;
        tp_quic_stream_consume(conn, sid, (size_t)n);
        if (es->len == 0 && es->fin_in) {
            es->fin_out = true;
        }
    } else if (es->fin_in && !es->fin_out) {
        if (tp_quic_stream_write(conn, sid, NULL, 0, true) == 0) {
            es->fin_out = true;
        }
    }
}

static void srv_stream_open(tp_quic_conn_t *conn, int64_t sid) {
    echo_stream_t *es = calloc(1, sizeof(*es));
    if (!es || tp_quic_stream_set_data(conn, sid, es) != 0) {
        free(es);
        tp_quic_stream_shutdown(conn, sid, TP_QUIC_RESET_RECV | TP_QUIC_RESET_SEND, 1);
    }
}

static void srv_stream_data(tp_quic_conn_t *conn, int64_t sid, const uint8_t *data, size_t len,
                            bool fin, void *sd) {
    echo_stream_t *es = sd;
    if (!es) {
        return;
    }
    if (len > 0) {
        if (es->len + len > es->cap) {
            size_t cap = es->cap ? es->cap : 65536;
            while (cap < es->len + len) {
                cap *= 2;
            }
            uint8_t *p = realloc(es->pending, cap);
            if (!p) {
                tp_quic_conn_close(conn, 2, "out of memory");
                return;
            }
            es->pending = p;
            es->cap = cap;
        }
        memcpy(es->pending + es->len, data, len);
        es->len += len;
    }
    es->fin_in = es->fin_in || fin;
    echo_flush(conn, sid, es);
}

static void srv_writable(tp_quic_conn_t *conn, int64_t sid, void *sd) {
    if (sid >= 0 && sd) {
        echo_flush(conn, sid, sd);
    }
}

static void srv_stream_close(tp_quic_conn_t *conn, int64_t sid, void *sd) {
    echo_stream_t *es = sd;
    if (es) {
        free(es->pending);
        free(es);
    }
}

static void srv_datagram(tp_quic_conn_t *conn, const uint8_t *data, size_t len) {
    /* A full queue drops the echo, as a datagram may be dropped anywhere. */
    (void)tp_quic_datagram_send(conn, data, len);
}

static void srv_close(tp_quic_conn_t *conn, const tp_quic_close_info_t *info) {
    worker_t *w = tp_quic_endpoint_data(tp_quic_conn_endpoint(conn));
    print_stats(w->srv, "connection closed");
}

static const tp_quic_app_t server_app = {
    .on_stream_open = srv_stream_open,
    .on_stream_data = srv_stream_data,
    .on_writable = srv_writable,
    .on_stream_close = srv_stream_close,
    .on_datagram = srv_datagram,
    .on_close = srv_close,
};

static void worker_stop_cb(uv_async_t *a) {
    worker_t *w = a->data;
    /* Read on the worker's own loop: which worker served what (the group only has sums). */
    tp_quic_endpoint_stats(w->ep, &w->last);
    tp_quic_endpoint_close(w->ep, NULL, NULL);
    uv_close((uv_handle_t *)&w->stop, NULL);
}

static void worker_main(void *arg) {
    worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void on_signal(uv_signal_t *s, int signum) {
    server_t *srv = s->data;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        uv_async_send(&srv->workers[i].stop);
    }
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
}

static int run_server(int argc, char **argv) {
    tp_quic_settings_t s;
    tp_quic_settings_default(&s);
    s.alpn = ALPN;
    s.manual_consume = true; /* real backpressure: consume what the echo could queue */
    const char *listen = NULL;
    unsigned nworkers = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--listen")) {
            listen = v;
        } else if (!strcmp(a, "--cert")) {
            s.cert_file = v;
        } else if (!strcmp(a, "--key")) {
            s.key_file = v;
        } else if (!strcmp(a, "--qlog-dir")) {
            s.qlog_dir = v;
        } else if (!strcmp(a, "--keylog")) {
            s.keylog_file = v;
        } else if (!strcmp(a, "--workers")) {
            nworkers = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "--steering")) {
            s.reuseport_steering = strcmp(v, "off") != 0;
        } else if (!strcmp(a, "--retry")) {
            s.retry = !strcmp(v, "never")  ? TP_QUIC_RETRY_NEVER
                      : !strcmp(v, "load") ? TP_QUIC_RETRY_UNDER_LOAD
                                           : TP_QUIC_RETRY_ALWAYS;
        } else if (!strcmp(a, "--cc")) {
            s.cc = !strcmp(v, "bbr")    ? TP_QUIC_CC_BBR
                   : !strcmp(v, "reno") ? TP_QUIC_CC_RENO
                                        : TP_QUIC_CC_CUBIC;
        } else {
            usage();
            return 2;
        }
    }
    tp_addr_t bind;
    if (!listen || tp_addr_parse(&bind, listen, false) != 0 || nworkers == 0 ||
        nworkers > MAX_WORKERS) {
        usage();
        return 2;
    }
    server_t srv;
    memset(&srv, 0, sizeof(srv));
    srv.nworkers = nworkers;
    srv.workers = calloc(nworkers, sizeof(*srv.workers));
    if (!srv.workers || tp_quic_group_new(&srv.group, nworkers) != 0) {
        fprintf(stderr, "quic-echo: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < nworkers; i++) {
        worker_t *w = &srv.workers[i];
        w->srv = &srv;
        w->index = i;
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->stop, worker_stop_cb);
        w->stop.data = w;
        int rc = tp_quic_group_add(srv.group, &w->ep, &w->loop, &bind, true, &s, &server_app, w);
        if (rc != 0) {
            fprintf(stderr, "quic-echo: cannot listen on %s: %s\n", listen, tp_strerror(rc));
            return 1;
        }
    }
    tp_addr_t local;
    char text[TP_ADDR_STRLEN];
    tp_quic_endpoint_local_addr(srv.workers[0].ep, &local);
    printf("{\"msg\":\"ready\",\"listen\":\"%s\",\"port\":%u,\"workers\":%u,\"steering\":%s}\n",
           tp_addr_format(&local, text, sizeof(text)), tp_addr_port(&local), nworkers,
           tp_quic_group_steering(srv.group) ? "true" : "false");
    fflush(stdout);
    uv_loop_init(&srv.main_loop);
    uv_signal_init(&srv.main_loop, &srv.sigterm);
    uv_signal_init(&srv.main_loop, &srv.sigint);
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    for (unsigned i = 0; i < nworkers; i++) {
        uv_thread_create(&srv.workers[i].thread, worker_main, &srv.workers[i]);
    }
    uv_run(&srv.main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < nworkers; i++) {
        uv_thread_join(&srv.workers[i].thread);
    }
    for (unsigned i = 0; i < nworkers; i++) {
        char json[2048];
        tp_quic_stats_json(&srv.workers[i].last, json, sizeof(json));
        printf("{\"msg\":\"worker_stats\",\"worker\":%u,\"stats\":%s}\n", i, json);
    }
    print_stats(&srv, "exit");
    for (unsigned i = 0; i < nworkers; i++) {
        uv_loop_close(&srv.workers[i].loop);
    }
    uv_loop_close(&srv.main_loop);
    tp_quic_group_del(srv.group);
    free(srv.workers);
    return 0;
}

/* ======================= client ======================= */

typedef struct client_stream {
    struct client *cl;
    unsigned index;
    int64_t id;
    uint64_t sent, received;
    uint64_t mismatch_at; /* first offset whose echo differed, or UINT64_MAX */
    bool fin_received;
} client_stream_t;

typedef struct client_attempt {
    bool ok;
    double ms;
    char error[512];
} client_attempt_t;

typedef struct client {
    uv_loop_t loop;
    uv_timer_t deadline, grace, gap;
    uint64_t gap_ms;
    tp_quic_stats_t ep_stats; /* the endpoint's counters when it closed */
    tp_quic_endpoint_t *ep;
    tp_quic_conn_t *conn;
    tp_addr_t remote;
    const char *sni;
    unsigned nconnects;
    unsigned attempts_done;
    client_attempt_t attempts[MAX_CONNECTS];
    unsigned nstreams;
    uint64_t bytes;
    unsigned ndgrams;
    client_stream_t *streams;
    unsigned streams_opened, streams_done;
    unsigned dgrams_sent, dgrams_echoed, dgrams_bad;
    uint8_t *dgram_seen;
    uint64_t t0, t_established;
    bool finished;
    bool ok;
    char error[512];
    int exit_code;
} client_t;

/* The byte at offset i of stream k: a prime period, shifted per stream, so a byte from the wrong
 * place or the wrong stream shows. */
static uint8_t pattern(unsigned k, uint64_t i) { return (uint8_t)((i + (uint64_t)k * 37) % 251); }

static void dgram_fill(uint8_t *buf, unsigned i) {
    buf[0] = (uint8_t)(i >> 8);
    buf[1] = (uint8_t)i;
    for (unsigned j = 2; j < DGRAM_SIZE; j++) {
        buf[j] = (uint8_t)((i * 7 + j) % 253);
    }
}

static void client_finish(client_t *cl, bool ok, const char *error) {
    if (cl->finished) {
        return;
    }
    cl->finished = true;
    cl->ok = ok;
    if (error) {
        snprintf(cl->error, sizeof(cl->error), "%s", error);
    }
    if (cl->conn) {
        tp_quic_conn_close(cl->conn, 0, ok ? "done" : "failed");
    }
}

static void pump(client_t *cl, client_stream_t *cs) {
    uint8_t buf[WRITE_CHUNK];
    while (cs->sent < cl->bytes) {
        size_t n =
            cl->bytes - cs->sent < WRITE_CHUNK ? (size_t)(cl->bytes - cs->sent) : WRITE_CHUNK;
        for (size_t i = 0; i < n; i++) {
            buf[i] = pattern(cs->index, cs->sent + i);
        }
        bool last = cs->sent + n == cl->bytes;
        ssize_t w = tp_quic_stream_write(cl->conn, cs->id, buf, n, last);
        if (w < 0) {
            client_finish(cl, false, tp_strerror((int)w));
            return;
        }
        cs->sent += (uint64_t)w;
        if ((size_t)w < n) {
            return; /* on_writable resumes */
        }
    }
    if (cl->bytes == 0) {
        tp_quic_stream_write(cl->conn, cs->id, NULL, 0, true);
    }
}

static void grace_cb(uv_timer_t *t);

static void check_done(client_t *cl) {
    if (cl->streams_done == cl->nstreams && cl->dgrams_echoed == cl->ndgrams) {
        client_finish(cl, true, NULL);
    } else if (cl->streams_done == cl->nstreams && !uv_is_active((uv_handle_t *)&cl->grace)) {
        /* Datagrams are unreliable: give the missing ones a moment, then report what came. */
        uv_timer_start(&cl->grace, grace_cb, 1000, 0);
    }
}

static void grace_cb(uv_timer_t *t) {
    client_t *cl = t->data;
    client_finish(cl, cl->dgrams_echoed > 0 || cl->ndgrams == 0, "datagrams were not echoed");
}

static void open_streams(client_t *cl) {
    while (cl->streams_opened < cl->nstreams) {
        int64_t id = tp_quic_stream_open(cl->conn, true);
        if (id == TP_ERR_RANGE) {
            return; /* on_writable(-1) says when the server allows more */
        }
        if (id < 0) {
            client_finish(cl, false, tp_strerror((int)id));
            return;
        }
        client_stream_t *cs = &cl->streams[cl->streams_opened++];
        cs->id = id;
        tp_quic_stream_set_data(cl->conn, id, cs);
        pump(cl, cs);
    }
}

static void cli_established(tp_quic_conn_t *conn) {
    client_t *cl = tp_quic_conn_data(conn);
    cl->t_established = uv_hrtime();
    open_streams(cl);
    uint8_t buf[DGRAM_SIZE];
    for (unsigned i = 0; i < cl->ndgrams; i++) {
        dgram_fill(buf, i);
        if (tp_quic_datagram_send(conn, buf, sizeof(buf)) == 0) {
            cl->dgrams_sent++;
        }
    }
}

static void cli_stream_data(tp_quic_conn_t *conn, int64_t sid, const uint8_t *data, size_t len,
                            bool fin, void *sd) {
    client_t *cl = tp_quic_conn_data(conn);
    client_stream_t *cs = sd;
    if (!cs) {
        return;
    }
    for (size_t i = 0; i < len && cs->mismatch_at == UINT64_MAX; i++) {
        if (data[i] != pattern(cs->index, cs->received + i)) {
            cs->mismatch_at = cs->received + i;
        }
    }
    cs->received += len;
    if (fin && !cs->fin_received) {
        cs->fin_received = true;
        cl->streams_done++;
        check_done(cl);
    }
}

static void cli_writable(tp_quic_conn_t *conn, int64_t sid, void *sd) {
    client_t *cl = tp_quic_conn_data(conn);
    if (sid < 0) {
        open_streams(cl);
    } else if (sd) {
        pump(cl, sd);
    }
}

static void cli_datagram(tp_quic_conn_t *conn, const uint8_t *data, size_t len) {
    client_t *cl = tp_quic_conn_data(conn);
    uint8_t want[DGRAM_SIZE];
    unsigned i = len >= 2 ? (unsigned)(data[0] << 8 | data[1]) : 0;
    if (len != DGRAM_SIZE || i >= cl->ndgrams || cl->dgram_seen[i]) {
        cl->dgrams_bad++;
        return;
    }
    dgram_fill(want, i);
    if (memcmp(want, data, len) != 0) {
        cl->dgrams_bad++;
        return;
    }
    cl->dgram_seen[i] = 1;
    cl->dgrams_echoed++;
    check_done(cl);
}

/* Whether the current connection did everything right (every byte and datagram back). */
static bool attempt_ok(client_t *cl) {
    if (!cl->ok || cl->dgrams_bad > 0) {
        return false;
    }
    for (unsigned i = 0; i < cl->nstreams; i++) {
        client_stream_t *cs = &cl->streams[i];
        if (cs->mismatch_at != UINT64_MAX || !cs->fin_received || cs->received != cl->bytes) {
            return false;
        }
    }
    return true;
}

static void record_attempt(client_t *cl) {
    client_attempt_t *a = &cl->attempts[cl->attempts_done++];
    a->ok = attempt_ok(cl);
    a->ms = (double)(uv_hrtime() - cl->t0) / 1e6;
    snprintf(a->error, sizeof(a->error), "%s",
             a->ok ? "" : (cl->error[0] ? cl->error : "echo mismatch"));
}

/* Forgets what the previous connection did, for the next one. */
static void reset_attempt(client_t *cl) {
    for (unsigned i = 0; i < cl->nstreams; i++) {
        client_stream_t *cs = &cl->streams[i];
        cs->id = -1;
        cs->sent = cs->received = 0;
        cs->mismatch_at = UINT64_MAX;
        cs->fin_received = false;
    }
    memset(cl->dgram_seen, 0, cl->ndgrams + 1);
    cl->streams_opened = cl->streams_done = 0;
    cl->dgrams_sent = cl->dgrams_echoed = cl->dgrams_bad = 0;
    cl->finished = false;
    cl->ok = false;
    cl->error[0] = '\0';
    cl->t_established = 0;
    uv_timer_stop(&cl->grace);
    cl->t0 = uv_hrtime();
}

static void client_done(client_t *cl) {
    uv_close((uv_handle_t *)&cl->deadline, NULL);
    uv_close((uv_handle_t *)&cl->grace, NULL);
    uv_close((uv_handle_t *)&cl->gap, NULL);
    tp_quic_endpoint_stats(cl->ep, &cl->ep_stats);
    /* Allowed from a callback: the endpoint finishes closing on the next loop step. */
    tp_quic_endpoint_close(cl->ep, NULL, NULL);
}

/* Starts the next connection on the same endpoint; false (recorded) when that fails. */
static bool next_connect(client_t *cl) {
    reset_attempt(cl);
    int rc = tp_quic_connect(cl->ep, &cl->remote, cl->sni, cl, &cl->conn);
    if (rc == 0) {
        return true;
    }
    snprintf(cl->error, sizeof(cl->error), "connect: %s", tp_strerror(rc));
    record_attempt(cl);
    return false;
}

static void gap_cb(uv_timer_t *t);

static void cli_close(tp_quic_conn_t *conn, const tp_quic_close_info_t *info) {
    client_t *cl = tp_quic_conn_data(conn);
    cl->conn = NULL;
    if (!cl->finished) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s: %s", tp_strerror(info->err), info->reason);
        client_finish(cl, false, msg);
    }
    record_attempt(cl);
    if (cl->attempts_done < cl->nconnects && uv_is_active((uv_handle_t *)&cl->deadline)) {
        if (cl->gap_ms > 0) {
            uv_timer_start(&cl->gap, gap_cb, cl->gap_ms, 0);
            return;
        }
        /* The next connection starts from inside on_close, on the same endpoint. */
        if (next_connect(cl)) {
            return;
        }
    }
    client_done(cl);
}

static void gap_cb(uv_timer_t *t) {
    client_t *cl = t->data;
    if (!uv_is_active((uv_handle_t *)&cl->deadline) || !next_connect(cl)) {
        client_done(cl);
    }
}

static const tp_quic_app_t client_app = {
    .on_established = cli_established,
    .on_stream_data = cli_stream_data,
    .on_writable = cli_writable,
    .on_datagram = cli_datagram,
    .on_close = cli_close,
};

static void deadline_cb(uv_timer_t *t) {
    client_t *cl = t->data;
    client_finish(cl, false, "timed out");
    uv_timer_stop(t); /* no further connection after this one */
    if (cl->conn) {
        /* Not established yet (or the close is stuck): give up on the connection now. */
        tp_quic_conn_close(cl->conn, 1, "timed out");
    }
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

static void print_summary(client_t *cl) {
    bool all = true;
    if (cl->nconnects > 1) {
        /* One result per connection; the fields after it describe the last one. */
        all = cl->attempts_done == cl->nconnects;
        printf("{\"attempts\":[");
        for (unsigned i = 0; i < cl->attempts_done; i++) {
            client_attempt_t *a = &cl->attempts[i];
            all = all && a->ok;
            printf("%s{\"ok\":%s,\"duration_ms\":%.3f,\"error\":\"%s\"}", i ? "," : "",
                   a->ok ? "true" : "false", a->ms, a->error);
        }
        /* The endpoint's counters: a refused port costs one Initial per connection when every
         * ICMP error is read as it comes (no retransmission needed to notice it). */
        char json[2048];
        tp_quic_stats_json(&cl->ep_stats, json, sizeof(json));
        printf("],\"all_ok\":%s,\"stats\":%s}\n", all ? "true" : "false", json);
    }
    uint64_t echoed = 0;
    unsigned mismatched = 0;
    unsigned incomplete = 0;
    for (unsigned i = 0; i < cl->nstreams; i++) {
        client_stream_t *cs = &cl->streams[i];
        echoed += cs->received;
        if (cs->mismatch_at != UINT64_MAX) {
            mismatched++;
        }
        if (!cs->fin_received || cs->received != cl->bytes) {
            incomplete++;
        }
    }
    bool ok = cl->ok && mismatched == 0 && incomplete == 0 && cl->dgrams_bad == 0;
    if (cl->ok && !ok && !cl->error[0]) {
        snprintf(cl->error, sizeof(cl->error), "echo mismatch");
    }
    uint64_t now = uv_hrtime();
    printf("{\"ok\":%s,\"streams\":%u,\"bytes_per_stream\":%llu,\"bytes_echoed\":%llu,"
           "\"mismatched_streams\":%u,\"incomplete_streams\":%u,\"datagrams_sent\":%u,"
           "\"datagrams_echoed\":%u,\"datagrams_bad\":%u,\"handshake_ms\":%.3f,"
           "\"duration_ms\":%.3f,\"error\":\"%s\"}\n",
           ok ? "true" : "false", cl->nstreams, (unsigned long long)cl->bytes,
           (unsigned long long)echoed, mismatched, incomplete, cl->dgrams_sent, cl->dgrams_echoed,
           cl->dgrams_bad, cl->t_established ? (double)(cl->t_established - cl->t0) / 1e6 : -1.0,
           (double)(now - cl->t0) / 1e6, ok ? "" : cl->error);
    fflush(stdout);
    cl->exit_code = ok && all ? 0 : 1;
}

static int run_client(int argc, char **argv) {
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *host = argv[0];
    const char *port = argv[1];
    client_t cl;
    memset(&cl, 0, sizeof(cl));
    cl.nstreams = 1;
    cl.bytes = 1024;
    cl.ndgrams = 10;
    uint64_t timeout_ms = 60000;
    const char *sni = NULL;
    cl.nconnects = 1;
    tp_quic_settings_t s;
    tp_quic_settings_default(&s);
    s.alpn = ALPN;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--insecure")) {
            s.insecure_skip_verify = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--streams")) {
            cl.nstreams = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "--bytes")) {
            cl.bytes = parse_num(v, a);
        } else if (!strcmp(a, "--datagrams")) {
            cl.ndgrams = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "--ca")) {
            s.ca_file = v;
        } else if (!strcmp(a, "--sni")) {
            sni = v;
        } else if (!strcmp(a, "--timeout-ms")) {
            timeout_ms = parse_num(v, a);
        } else if (!strcmp(a, "--qlog-dir")) {
            s.qlog_dir = v;
        } else if (!strcmp(a, "--keylog")) {
            s.keylog_file = v;
        } else if (!strcmp(a, "--connects")) {
            cl.nconnects = (unsigned)parse_num(v, a);
        } else if (!strcmp(a, "--connect-gap-ms")) {
            cl.gap_ms = parse_num(v, a);
        } else {
            usage();
            return 2;
        }
    }
    if (cl.nstreams == 0 || cl.nstreams > 10000 || cl.ndgrams > 60000 || cl.nconnects == 0 ||
        cl.nconnects > MAX_CONNECTS) {
        usage();
        return 2;
    }
    cl.sni = sni;
    tp_addr_t *remote = &cl.remote;
    if (resolve(host, port, remote) != 0) {
        printf("{\"ok\":false,\"error\":\"cannot resolve %s\"}\n", host);
        return 1;
    }
    cl.streams = calloc(cl.nstreams, sizeof(*cl.streams));
    cl.dgram_seen = calloc(cl.ndgrams + 1, 1);
    if (!cl.streams || !cl.dgram_seen) {
        free(cl.streams);
        free(cl.dgram_seen);
        return 1;
    }
    for (unsigned i = 0; i < cl.nstreams; i++) {
        cl.streams[i].cl = &cl;
        cl.streams[i].index = i;
        cl.streams[i].mismatch_at = UINT64_MAX;
    }
    uv_loop_init(&cl.loop);
    tp_addr_t bind;
    tp_addr_parse(&bind, remote->u.sa.sa_family == AF_INET6 ? "[::]:0" : "0.0.0.0:0", false);
    int rc = tp_quic_endpoint_new(&cl.ep, &cl.loop, &bind, false, &s, &client_app, &cl);
    if (rc != 0) {
        printf("{\"ok\":false,\"error\":\"client endpoint: %s\"}\n", tp_strerror(rc));
        free(cl.streams);
        free(cl.dgram_seen);
        return 1;
    }
    uv_timer_init(&cl.loop, &cl.deadline);
    uv_timer_init(&cl.loop, &cl.grace);
    uv_timer_init(&cl.loop, &cl.gap);
    cl.deadline.data = cl.grace.data = cl.gap.data = &cl;
    uv_timer_start(&cl.deadline, deadline_cb, timeout_ms, 0);
    cl.t0 = uv_hrtime();
    rc = tp_quic_connect(cl.ep, remote, sni, &cl, &cl.conn);
    if (rc != 0) {
        printf("{\"ok\":false,\"error\":\"connect: %s\"}\n", tp_strerror(rc));
        free(cl.streams);
        free(cl.dgram_seen);
        return 1;
    }
    uv_run(&cl.loop, UV_RUN_DEFAULT);
    print_summary(&cl);
    uv_loop_close(&cl.loop);
    free(cl.streams);
    free(cl.dgram_seen);
    return cl.exit_code;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "server")) {
        return run_server(argc - 2, argv + 2);
    }
    if (argc >= 2 && !strcmp(argv[1], "client")) {
        return run_client(argc - 2, argv + 2);
    }
    usage();
    return 2;
}
