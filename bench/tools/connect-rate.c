/*
 * connect-rate: load tool for bench/run's `setup` workload: how many CONNECT tunnels per second an
 * HTTP proxy sets up, one new tunnel per request.
 *
 * C clients run side by side on one libuv loop. Each loops: open a TCP connection to the proxy,
 * send `CONNECT host:port HTTP/1.1`, wait for the response head, and when it says 200 send one
 * `GET path` (Connection: close) through the tunnel, read the origin's whole reply, wait for the
 * proxy to close the tunnel after the origin closed, close, and start again. The host
 * names come from a template (`--host-template 'n%u.bench.test'`): with `--names K` the clients
 * cycle through K names (K = 1: one name, the proxy's DNS cache stays warm); with `--names 0` a
 * counter makes every tunnel ask for a name never asked before (the cache is always cold).
 *
 * At the end it prints one JSON line: tunnels/s over the measured time, failures by kind, and the
 * set-up latency (TCP connect started -> 200 head received) and whole-tunnel latency percentiles.
 * Tunnels still open when the time is up are closed and counted as "aborted", neither success nor
 * failure; "started" counts every tunnel begun, warm-up included (bench/run divides the DNS
 * server's query count by it). Exit status: 0 when it ran (whatever the failures: the caller judges
 * them), 1 when it could not run, 2 for bad arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <uv.h>

#define MAX_CONNECTIONS 10000
#define MAX_NAME        253
#define MAX_PATH_LEN    512
#define OUT_SIZE        1024 /* one request: CONNECT or GET, always far below this */
#define IN_SIZE         8192 /* the CONNECT head, then the origin's reply head and body */
#define STATUS_CODES    1000

/* Latency histogram over microseconds: exact below 128 us, then 64 steps per power of two (about
 * 1.5% resolution), up to 2^40 us; bounded memory whatever the run's length. */
#define HIST_EXACT   128
#define HIST_SUB     64
#define HIST_SHIFTS  34
#define HIST_BUCKETS (HIST_EXACT + HIST_SUB * HIST_SHIFTS)

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t n;
    uint64_t max_us;
} hist_t;

typedef enum {
    FAIL_CONNECT = 0, /* the TCP connection to the proxy failed */
    FAIL_STATUS,      /* the proxy answered the CONNECT with something other than 200 */
    FAIL_TIMEOUT,     /* the tunnel did not complete within --timeout */
    FAIL_IO,          /* reset, early EOF, write error or a malformed head, from the proxy's side */
    FAIL_ORIGIN,      /* the origin's reply through the tunnel was not a 200 */
    FAIL_KINDS
} fail_kind_t;

static const char *const fail_names[FAIL_KINDS] = {"connect", "status", "timeout", "io", "origin"};

typedef enum {
    PHASE_IDLE = 0,
    PHASE_CONNECTING, /* TCP connect to the proxy in progress */
    PHASE_CONNECT,    /* CONNECT sent, waiting for the response head */
    PHASE_REPLY,      /* GET sent through the tunnel, reading the origin's reply */
    PHASE_DRAIN,      /* the reply is complete; waiting for the proxy to close the tunnel */
    PHASE_CLOSING
} phase_t;

typedef struct bench bench_t;

typedef struct {
    bench_t *bench;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_timer_t timer;
    phase_t phase;
    uint64_t t_start;  /* ns, uv_hrtime() when the TCP connect started */
    uint64_t t_200;    /* ns, when the 200 head was complete */
    size_t reply_head; /* length of the origin's reply head, once complete; 0 before */
    int64_t reply_len; /* Content-Length of the origin's reply, -1: read until EOF */
    char name[MAX_NAME + 8];
    char out[OUT_SIZE];
    char in[IN_SIZE];
    size_t in_len;
} client_t;

struct bench {
    uv_loop_t *loop;
    struct sockaddr_storage proxy;
    /* options */
    unsigned connections;
    uint64_t names; /* 0: never repeat */
    uint64_t duration_ms, warmup_ms, timeout_ms;
    unsigned port;
    char prefix[MAX_NAME + 1], suffix[MAX_NAME + 1];
    char path[MAX_PATH_LEN + 1];
    /* state */
    client_t *clients;
    uv_timer_t phase_timer;
    bool measuring, stopping;
    uint64_t next_name;
    uint64_t t_measure, t_end; /* ns */
    unsigned open_handles;
    /* results (measured window only) */
    uint64_t tunnels, aborted;
    uint64_t started; /* every tunnel begun, warm-up included: what the proxy was asked for */
    uint64_t fails[FAIL_KINDS];
    uint64_t status_counts[STATUS_CODES];
    hist_t setup_hist, tunnel_hist;
};

/* ---- Histogram ----------------------------------------------------------------------------- */

static size_t hist_bucket(uint64_t us) {
    if (us < HIST_EXACT)
        return (size_t)us;
    int msb = 63 - __builtin_clzll(us); /* >= 7 */
    int shift = msb - 6;                /* us >> shift is in [64, 128) */
    if (shift > HIST_SHIFTS)
        return HIST_BUCKETS - 1;
    return HIST_EXACT + (size_t)(shift - 1) * HIST_SUB + (size_t)((us >> shift) - HIST_SUB);
}

/* The middle of a bucket's range, in microseconds. */
static double hist_value(size_t b) {
    if (b < HIST_EXACT)
        return (double)b;
    size_t shift = (b - HIST_EXACT) / HIST_SUB + 1;
    uint64_t lo = (uint64_t)((b - HIST_EXACT) % HIST_SUB + HIST_SUB) << shift;
    return (double)lo + (double)(((uint64_t)1 << shift) - 1) / 2.0;
}

static void hist_add(hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    h->counts[hist_bucket(us)]++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
}

/* The p-th percentile (0 < p <= 100) in milliseconds; 0 when empty. */
static double hist_percentile_ms(const hist_t *h, double p) {
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)((double)h->n * p / 100.0 + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t b = 0; b < HIST_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) {
            double v = hist_value(b);
            if (v > (double)h->max_us)
                v = (double)h->max_us;
            return v / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ---- Tunnels ------------------------------------------------------------------------------- */

static void client_start(client_t *c);

static void on_tcp_closed(uv_handle_t *h) {
    client_t *c = h->data;
    bench_t *b = c->bench;
    b->open_handles--;
    c->phase = PHASE_IDLE;
    if (!b->stopping)
        client_start(c);
}

/* Ends the client's current tunnel; ok or a failure kind. The next one starts once the socket is
 * closed. */
static void client_finish(client_t *c, bool ok, fail_kind_t kind) {
    bench_t *b = c->bench;
    if (c->phase == PHASE_IDLE || c->phase == PHASE_CLOSING)
        return;
    uv_timer_stop(&c->timer);
    if (b->measuring && !b->stopping) {
        if (ok) {
            b->tunnels++;
            hist_add(&b->setup_hist, c->t_200 - c->t_start);
            hist_add(&b->tunnel_hist, uv_hrtime() - c->t_start);
        } else {
            b->fails[kind]++;
        }
    }
    c->phase = PHASE_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

/* Stops the client where it is, at the end of the run: neither a success nor a failure. */
static void client_abort(client_t *c) {
    if (c->phase == PHASE_IDLE || c->phase == PHASE_CLOSING)
        return;
    c->bench->aborted++;
    uv_timer_stop(&c->timer);
    c->phase = PHASE_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

static void on_timeout(uv_timer_t *t) { client_finish(t->data, false, FAIL_TIMEOUT); }

static void on_write(uv_write_t *req, int status) {
    client_t *c = req->data;
    /* UV_ECANCELED: the tunnel was closed with the write pending, and is already accounted. */
    if (status < 0 && status != UV_ECANCELED)
        client_finish(c, false, FAIL_IO);
}

static int client_send(client_t *c, size_t len) {
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)len);
    c->write_req.data = c;
    return uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
}

/* The end of the head ("\r\n\r\n") in the first len bytes of p: the head's length, or 0. */
static size_t head_length(const char *p, size_t len) {
    for (size_t i = 3; i < len; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* "HTTP/1.x NNN ...": the status code, or -1. */
static int head_status(const char *p, size_t len) {
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
        return -1;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        code = code * 10 + (p[i] - '0');
    }
    if (len > 12 && p[12] != ' ' && p[12] != '\r')
        return -1;
    return code >= 100 ? code : -1;
}

/* The Content-Length of a response head: its value, -1 when absent, -2 when malformed. */
static int64_t head_content_length(const char *p, size_t len) {
    static const char field[] = "\r\ncontent-length:";
    const size_t flen = sizeof(field) - 1;
    for (size_t i = 0; i + flen <= len; i++) {
        if (strncasecmp(p + i, field, flen) != 0)
            continue;
        size_t j = i + flen;
        while (j < len && (p[j] == ' ' || p[j] == '\t'))
            j++;
        int64_t v = 0;
        size_t digits = 0;
        while (j < len && p[j] >= '0' && p[j] <= '9' && digits < 15) {
            v = v * 10 + (p[j] - '0');
            j++;
            digits++;
        }
        return digits == 0 || (j < len && p[j] != '\r' && p[j] != ' ') ? -2 : v;
    }
    return -1;
}

static void tunnel_send_request(client_t *c) {
    int n = snprintf(c->out, sizeof(c->out),
                     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nConnection: close\r\n\r\n", c->bench->path,
                     c->name, c->bench->port);
    if (n < 0 || (size_t)n >= sizeof(c->out) || client_send(c, (size_t)n) != 0) {
        client_finish(c, false, FAIL_IO);
        return;
    }
    c->phase = PHASE_REPLY;
}

/* Looks at what arrived so far in the current phase; may finish the tunnel. */
static void client_progress(client_t *c, bool eof) {
    bench_t *b = c->bench;
    if (c->phase == PHASE_CONNECT) {
        size_t hl = head_length(c->in, c->in_len);
        if (hl == 0) {
            if (eof || c->in_len == sizeof(c->in))
                client_finish(c, false, FAIL_IO);
            return;
        }
        int status = head_status(c->in, hl);
        if (status < 0) {
            client_finish(c, false, FAIL_IO);
            return;
        }
        if (status != 200) {
            if (b->measuring && !b->stopping && status < STATUS_CODES)
                b->status_counts[status]++;
            client_finish(c, false, FAIL_STATUS);
            return;
        }
        c->t_200 = uv_hrtime();
        /* Bytes after the head would be the origin's, unasked for: keep them for the reply. */
        memmove(c->in, c->in + hl, c->in_len - hl);
        c->in_len -= hl;
        tunnel_send_request(c);
        if (c->phase != PHASE_REPLY)
            return;
    }
    if (c->phase != PHASE_REPLY)
        return;
    if (c->reply_head == 0) {
        size_t hl = head_length(c->in, c->in_len);
        if (hl == 0) {
            if (eof || c->in_len == sizeof(c->in))
                client_finish(c, false, FAIL_IO);
            return;
        }
        if (head_status(c->in, hl) != 200) {
            client_finish(c, false, FAIL_ORIGIN);
            return;
        }
        c->reply_len = head_content_length(c->in, hl);
        if (c->reply_len == -2) {
            client_finish(c, false, FAIL_ORIGIN);
            return;
        }
        c->reply_head = hl;
    }
    if (c->reply_len >= 0) {
        uint64_t have = c->in_len - c->reply_head;
        if (have >= (uint64_t)c->reply_len && eof) {
            client_finish(c, true, FAIL_KINDS);
        } else if (have >= (uint64_t)c->reply_len) {
            /* The origin closes after its reply (Connection: close) and the proxy then closes the
             * tunnel: wait for that, so that the TIME_WAIT state stays with the servers' fixed
             * ports instead of filling this machine's ephemeral ports (a client that closed first
             * would leave one TIME_WAIT socket per tunnel there, for a minute). */
            c->phase = PHASE_DRAIN;
            c->in_len = 0;
        } else if (eof) {
            client_finish(c, false, FAIL_IO);
        }
        return;
    }
    /* No Content-Length: the reply ends with the connection. The body itself is not kept. */
    c->in_len = c->reply_head;
    if (eof)
        client_finish(c, true, FAIL_KINDS);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    client_t *c = h->data;
    (void)suggested;
    if (c->phase == PHASE_REPLY && c->reply_head != 0 && c->reply_len >= 0 &&
        c->in_len == sizeof(c->in)) {
        /* A body longer than the buffer: only its length matters, so count and drop it. */
        c->reply_len -= (int64_t)(c->in_len - c->reply_head);
        c->in_len = c->reply_head;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    client_t *c = s->data;
    (void)buf;
    if (c->phase == PHASE_DRAIN) {
        if (nread == UV_EOF)
            client_finish(c, true, FAIL_KINDS);
        else if (nread < 0) /* a reset instead of a close */
            client_finish(c, false, FAIL_IO);
        c->in_len = 0; /* bytes past the announced length: not part of the reply, dropped */
        return;
    }
    if (c->phase != PHASE_CONNECT && c->phase != PHASE_REPLY)
        return;
    if (nread == UV_EOF) {
        client_progress(c, true);
        /* Still open after EOF: an unfinished tunnel the peer gave up on. */
        if (c->phase == PHASE_CONNECT || c->phase == PHASE_REPLY)
            client_finish(c, false, FAIL_IO);
        return;
    }
    if (nread < 0) {
        client_finish(c, false, FAIL_IO);
        return;
    }
    c->in_len += (size_t)nread;
    client_progress(c, false);
}

static void on_connect(uv_connect_t *req, int status) {
    client_t *c = req->data;
    if (c->phase != PHASE_CONNECTING)
        return; /* timed out or aborted meanwhile */
    if (status < 0) {
        client_finish(c, false, FAIL_CONNECT);
        return;
    }
    int n = snprintf(c->out, sizeof(c->out), "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n\r\n",
                     c->name, c->bench->port, c->name, c->bench->port);
    if (n < 0 || (size_t)n >= sizeof(c->out) ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0 ||
        client_send(c, (size_t)n) != 0) {
        client_finish(c, false, FAIL_IO);
        return;
    }
    c->phase = PHASE_CONNECT;
}

static void client_start(client_t *c) {
    bench_t *b = c->bench;
    uint64_t i = b->names == 0 ? b->next_name++ : b->next_name++ % b->names;
    int n = snprintf(c->name, sizeof(c->name), "%s%" PRIu64 "%s", b->prefix, i, b->suffix);
    if (n < 0 || n > MAX_NAME) { /* parse_template left room for any number: cannot happen */
        fprintf(stderr, "connect-rate: host name longer than %d bytes\n", MAX_NAME);
        exit(1);
    }
    c->in_len = 0;
    c->reply_head = 0;
    c->reply_len = -1;
    c->t_start = uv_hrtime();
    b->started++;
    c->t_200 = c->t_start;
    int rc = uv_tcp_init(b->loop, &c->tcp);
    if (rc != 0) { /* only bad flags make it fail: a bug here, not a measurement */
        fprintf(stderr, "connect-rate: uv_tcp_init: %s\n", uv_strerror(rc));
        exit(1);
    }
    b->open_handles++;
    c->tcp.data = c;
    c->connect_req.data = c;
    c->phase = PHASE_CONNECTING;
    uv_timer_start(&c->timer, on_timeout, b->timeout_ms, 0);
    (void)uv_tcp_nodelay(&c->tcp, 1);
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&b->proxy, on_connect);
    if (rc != 0) /* e.g. no local port left: a connect failure like any other */
        client_finish(c, false, FAIL_CONNECT);
}

/* ---- Run ----------------------------------------------------------------------------------- */

static void on_phase_timer(uv_timer_t *t) {
    bench_t *b = t->data;
    if (!b->measuring) {
        b->measuring = true;
        b->t_measure = uv_hrtime();
        uv_timer_start(&b->phase_timer, on_phase_timer, b->duration_ms, 0);
        return;
    }
    b->t_end = uv_hrtime();
    b->stopping = true;
    for (unsigned i = 0; i < b->connections; i++)
        client_abort(&b->clients[i]);
    for (unsigned i = 0; i < b->connections; i++)
        uv_close((uv_handle_t *)&b->clients[i].timer, NULL);
    uv_close((uv_handle_t *)&b->phase_timer, NULL);
}

static void print_report(const bench_t *b) {
    double secs = (double)(b->t_end - b->t_measure) / 1e9;
    uint64_t failed = 0;
    for (int k = 0; k < FAIL_KINDS; k++)
        failed += b->fails[k];
    printf("{\"tool\":\"connect-rate\",\"connections\":%u,\"names\":%" PRIu64
           ",\"duration_s\":%.3f,\"tunnels\":%" PRIu64
           ",\"tunnels_per_s\":%.1f,\"failed\":%" PRIu64,
           b->connections, b->names, secs, b->tunnels, secs > 0 ? (double)b->tunnels / secs : 0.0,
           failed);
    for (int k = 0; k < FAIL_KINDS; k++)
        printf(",\"fail_%s\":%" PRIu64, fail_names[k], b->fails[k]);
    printf(",\"statuses\":{");
    const char *sep = "";
    for (int s = 0; s < STATUS_CODES; s++) {
        if (b->status_counts[s] != 0) {
            printf("%s\"%d\":%" PRIu64, sep, s, b->status_counts[s]);
            sep = ",";
        }
    }
    printf("},\"aborted\":%" PRIu64 ",\"started\":%" PRIu64
           ",\"setup_p50_ms\":%.3f,\"setup_p99_ms\":%.3f"
           ",\"setup_max_ms\":%.3f,\"tunnel_p50_ms\":%.3f,\"tunnel_p99_ms\":%.3f}\n",
           b->aborted, b->started, hist_percentile_ms(&b->setup_hist, 50),
           hist_percentile_ms(&b->setup_hist, 99), (double)b->setup_hist.max_us / 1000.0,
           hist_percentile_ms(&b->tunnel_hist, 50), hist_percentile_ms(&b->tunnel_hist, 99));
    fflush(stdout);
}

/* ---- Options ------------------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: connect-rate --proxy IP:PORT --port ORIGIN_PORT [options]\n"
        "  --proxy IP:PORT        the HTTP proxy ([v6]:port for IPv6)\n"
        "  --port N               the port the tunnels ask for (CONNECT host:N)\n"
        "  --host-template T      host names, %%u replaced by a number (default n%%u.bench.test)\n"
        "  --names K              cycle through K names; 0: never repeat a name (default 1)\n"
        "  --connections C        clients side by side, 1..%d (default 50)\n"
        "  --duration S           measured seconds, 0.1..3600 (default 5)\n"
        "  --warmup S             seconds run first and not counted, 0..600 (default 0)\n"
        "  --timeout MS           a tunnel must end within this, 10..600000 (default 5000)\n"
        "  --path P               the request sent through each tunnel (default /)\n",
        MAX_CONNECTIONS);
}

/* A number in [lo, hi] (a decimal for seconds); false when s is not one. */
static bool parse_num(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static bool parse_proxy(const char *s, struct sockaddr_storage *ss) {
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return false;
    size_t hlen = (size_t)(colon - s);
    double port;
    if (!parse_num(colon + 1, 1, 65535, &port) || port != (double)(int)port)
        return false;
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']' || hlen - 2 >= sizeof(host))
            return false;
        memcpy(host, s + 1, hlen - 2);
        host[hlen - 2] = '\0';
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0;
    }
    if (hlen >= sizeof(host))
        return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0;
}

/* Splits the template at its one %u; no other % allowed (it is not a printf format). */
static bool parse_template(const char *t, bench_t *b) {
    const char *u = strstr(t, "%u");
    if (u == NULL || strchr(u + 2, '%') != NULL || strchr(t, '%') != u)
        return false;
    size_t plen = (size_t)(u - t), slen = strlen(u + 2);
    if (plen + slen + 20 > MAX_NAME)
        return false;
    memcpy(b->prefix, t, plen);
    b->prefix[plen] = '\0';
    memcpy(b->suffix, u + 2, slen + 1);
    for (const char *p = t; *p != '\0'; p++) {
        if (p == u) {
            p++;
            continue;
        }
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_';
        if (!ok)
            return false;
    }
    return true;
}

static int parse_args(int argc, char **argv, bench_t *b) {
    static const struct option opts[] = {{"proxy", required_argument, NULL, 'x'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"host-template", required_argument, NULL, 't'},
                                         {"names", required_argument, NULL, 'k'},
                                         {"connections", required_argument, NULL, 'c'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"path", required_argument, NULL, 'P'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool have_proxy = false;
    double v;
    b->port = 0;
    b->names = 1;
    b->connections = 50;
    b->duration_ms = 5000;
    b->warmup_ms = 0;
    b->timeout_ms = 5000;
    strcpy(b->path, "/");
    if (!parse_template("n%u.bench.test", b))
        return -1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'x':
            if (!parse_proxy(optarg, &b->proxy)) {
                fprintf(stderr, "connect-rate: --proxy: want IP:PORT or [IPv6]:PORT, got '%s'\n",
                        optarg);
                return -1;
            }
            have_proxy = true;
            break;
        case 'p':
            if (!parse_num(optarg, 1, 65535, &v) || v != (double)(unsigned)v) {
                fprintf(stderr, "connect-rate: --port: want 1..65535, got '%s'\n", optarg);
                return -1;
            }
            b->port = (unsigned)v;
            break;
        case 't':
            if (!parse_template(optarg, b)) {
                fprintf(stderr,
                        "connect-rate: --host-template: want a host name with one %%u (letters, "
                        "digits, '-', '_', '.'; at most %d bytes), got '%s'\n",
                        MAX_NAME - 20, optarg);
                return -1;
            }
            break;
        case 'k':
            if (!parse_num(optarg, 0, 1e15, &v) || v != (double)(uint64_t)v) {
                fprintf(stderr, "connect-rate: --names: want a whole number, got '%s'\n", optarg);
                return -1;
            }
            b->names = (uint64_t)v;
            break;
        case 'c':
            if (!parse_num(optarg, 1, MAX_CONNECTIONS, &v) || v != (double)(unsigned)v) {
                fprintf(stderr, "connect-rate: --connections: want 1..%d, got '%s'\n",
                        MAX_CONNECTIONS, optarg);
                return -1;
            }
            b->connections = (unsigned)v;
            break;
        case 'd':
            if (!parse_num(optarg, 0.1, 3600, &v)) {
                fprintf(stderr, "connect-rate: --duration: want 0.1..3600 seconds, got '%s'\n",
                        optarg);
                return -1;
            }
            b->duration_ms = (uint64_t)(v * 1000);
            break;
        case 'w':
            if (!parse_num(optarg, 0, 600, &v)) {
                fprintf(stderr, "connect-rate: --warmup: want 0..600 seconds, got '%s'\n", optarg);
                return -1;
            }
            b->warmup_ms = (uint64_t)(v * 1000);
            break;
        case 'T':
            if (!parse_num(optarg, 10, 600000, &v) || v != (double)(uint64_t)v) {
                fprintf(stderr, "connect-rate: --timeout: want 10..600000 ms, got '%s'\n", optarg);
                return -1;
            }
            b->timeout_ms = (uint64_t)v;
            break;
        case 'P':
            if (optarg[0] != '/' || strlen(optarg) > MAX_PATH_LEN ||
                strpbrk(optarg, " \r\n\t") != NULL) {
                fprintf(stderr,
                        "connect-rate: --path: want an origin-form path ('/...', no spaces, at "
                        "most %d bytes)\n",
                        MAX_PATH_LEN);
                return -1;
            }
            strcpy(b->path, optarg);
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind != argc || !have_proxy || b->port == 0) {
        if (optind != argc)
            fprintf(stderr, "connect-rate: unexpected argument '%s'\n", argv[optind]);
        else
            fprintf(stderr, "connect-rate: --proxy and --port are required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Each client holds one socket at a time; make sure the descriptor limit allows them all. */
static int raise_fd_limit(unsigned need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max < need)
        return -1;
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv) {
    static bench_t bench; /* large (histograms, status counts): not on the stack */
    bench_t *b = &bench;
    if (parse_args(argc, argv, b) != 0)
        return 2;
    /* A write to a tunnel the proxy already closed must be an error, not the end of the tool. */
    signal(SIGPIPE, SIG_IGN);
    if (raise_fd_limit(b->connections + 64) != 0) {
        fprintf(stderr, "connect-rate: cannot raise the open-file limit to %u\n",
                b->connections + 64);
        return 1;
    }
    b->loop = uv_default_loop();
    b->clients = calloc(b->connections, sizeof(*b->clients));
    if (b->clients == NULL) {
        fprintf(stderr, "connect-rate: out of memory\n");
        return 1;
    }
    uv_timer_init(b->loop, &b->phase_timer);
    b->phase_timer.data = b;
    for (unsigned i = 0; i < b->connections; i++) {
        client_t *c = &b->clients[i];
        c->bench = b;
        uv_timer_init(b->loop, &c->timer);
        c->timer.data = c;
    }
    if (b->warmup_ms == 0) {
        b->measuring = true;
        b->t_measure = uv_hrtime();
        uv_timer_start(&b->phase_timer, on_phase_timer, b->duration_ms, 0);
    } else {
        uv_timer_start(&b->phase_timer, on_phase_timer, b->warmup_ms, 0);
    }
    for (unsigned i = 0; i < b->connections; i++)
        client_start(&b->clients[i]);
    uv_run(b->loop, UV_RUN_DEFAULT);
    print_report(b);
    uv_loop_close(b->loop);
    free(b->clients);
    return 0;
}
