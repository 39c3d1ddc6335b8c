/* health.c: active health checks of a group's servers (a TCP connect, or an HTTP GET answered
 * 2xx/3xx), one at a time per server, on the worker's loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group_state.h"

/* The next check comes after interval plus up to a tenth of it, at random, so that the workers
 * (and servers) drift apart instead of checking in lockstep. */
static uint64_t jitter(tp_group_t *g, uint64_t span) {
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return span / 10 ? g->rng % (span / 10 + 1) : 0;
}

static void timer_cb(uv_timer_t *t);
static void tcp_close_cb(uv_handle_t *h);

/* Schedules the next check once the last one has given back everything it used. */
static void maybe_done(tp_group_srv_t *s) {
    tp_group_t *g = s->g;
    if (!s->busy || !s->decided || s->tcp_open || s->gai_pending || g->closing)
        return;
    s->busy = false;
    uint64_t interval = g->cfg->health.interval;
    uv_timer_start(&s->timer, timer_cb, interval + jitter(g, interval), 0);
}

/* The check's result, once: its resources are given back (asynchronously) and the state
 * machine in group.c runs. */
static void decide(tp_group_srv_t *s, bool ok, const char *reason) {
    if (s->decided)
        return;
    s->decided = true;
    uv_timer_stop(&s->timer);
    if (s->gai_pending)
        uv_cancel((uv_req_t *)&s->gai); /* its callback still comes, and ends the check */
    if (s->tcp_open && !uv_is_closing((uv_handle_t *)&s->tcp))
        uv_close((uv_handle_t *)&s->tcp, tcp_close_cb);
    if (s->ai_list) {
        uv_freeaddrinfo(s->ai_list);
        s->ai_list = s->ai_next = NULL;
    }
    tp__group_check_done(s, ok, reason);
    maybe_done(s);
}

static void decide_uv(tp_group_srv_t *s, const char *what, int err) {
    char why[128];
    snprintf(why, sizeof(why), "%s: %s", what, uv_strerror(err));
    decide(s, false, why);
}

/* "HTTP/1.x NNN[ reason]" (CRLF already cut off); returns the status, or -1. */
static int parse_status_line(const char *p, size_t n) {
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return -1;
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        status = status * 10 + (p[i] - '0');
    }
    if (status < 100 || (n > 12 && p[12] != ' '))
        return -1;
    for (size_t i = 13; i < n; i++) /* reason-phrase: HTAB, SP, VCHAR, obs-text */
        if ((unsigned char)p[i] < 0x20 ? p[i] != '\t' : p[i] == 0x7f)
            return -1;
    return status;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    tp_group_srv_t *s = h->data;
    *buf = uv_buf_init(s->rbuf + s->rlen, (unsigned)(sizeof(s->rbuf) - s->rlen));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    tp_group_srv_t *s = st->data;
    if (s->decided || s->g->closing || nread == 0)
        return;
    if (nread < 0) {
        decide(s, false,
               nread == UV_EOF ? "closed before the status line" : uv_strerror((int)nread));
        return;
    }
    size_t from = s->rlen;
    s->rlen += (size_t)nread;
    const char *lf = memchr(s->rbuf + from, '\n', s->rlen - from);
    if (!lf) {
        if (s->rlen == sizeof(s->rbuf))
            decide(s, false, "status line too long");
        return;
    }
    size_t n = (size_t)(lf - s->rbuf);
    int status = n > 0 && s->rbuf[n - 1] == '\r' ? parse_status_line(s->rbuf, n - 1) : -1;
    if (status < 0) {
        decide(s, false, "not an HTTP/1 status line");
        return;
    }
    if (status >= 200 && status < 400) {
        decide(s, true, NULL);
        return;
    }
    char why[32];
    snprintf(why, sizeof(why), "answered %d", status);
    decide(s, false, why);
}

static void write_cb(uv_write_t *req, int status) {
    tp_group_srv_t *s = req->data;
    if (status < 0 && !s->decided && !s->g->closing)
        decide_uv(s, "send", status);
}

static void connect_next(tp_group_srv_t *s);

static void connect_cb(uv_connect_t *req, int status) {
    tp_group_srv_t *s = req->data;
    if (s->decided || s->g->closing)
        return; /* the handle is closing: UV_ECANCELED */
    if (status < 0) {
        if (s->ai_next) /* another address of the name: tcp_close_cb goes on with it */
            uv_close((uv_handle_t *)&s->tcp, tcp_close_cb);
        else
            decide_uv(s, "connect", status);
        return;
    }
    if (s->g->cfg->health.check == TP_HEALTH_TCP) {
        decide(s, true, NULL);
        return;
    }
    uv_buf_t b = uv_buf_init(s->req, (unsigned)s->req_len);
    s->wreq.data = s;
    int rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, write_cb);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb);
    if (rc < 0)
        decide_uv(s, "send", rc);
}

static void connect_to(tp_group_srv_t *s, const struct sockaddr *sa) {
    tp_group_t *g = s->g;
    int rc = uv_tcp_init(g->loop, &s->tcp);
    if (rc < 0) {
        decide_uv(s, "socket", rc);
        return;
    }
    s->tcp.data = s;
    s->tcp_open = true;
    g->open++;
    s->creq.data = s;
    rc = uv_tcp_connect(&s->creq, &s->tcp, sa, connect_cb);
    if (rc < 0)
        decide_uv(s, "connect", rc);
}

static void connect_next(tp_group_srv_t *s) {
    struct addrinfo *ai = s->ai_next;
    s->ai_next = ai->ai_next;
    while (s->ai_next && s->ai_next->ai_family != AF_INET && s->ai_next->ai_family != AF_INET6)
        s->ai_next = s->ai_next->ai_next;
    connect_to(s, ai->ai_addr);
}

static void tcp_close_cb(uv_handle_t *h) {
    tp_group_srv_t *s = h->data;
    s->tcp_open = false;
    if (tp__group_put(s->g))
        return;
    if (!s->g->closing && !s->decided && s->ai_next)
        connect_next(s);
    else
        maybe_done(s);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    tp_group_srv_t *s = req->data;
    s->gai_pending = false;
    if (s->decided || s->g->closing) {
        uv_freeaddrinfo(res);
        if (!tp__group_put(s->g))
            maybe_done(s);
        return;
    }
    tp__group_put(s->g); /* not closing: the group stays */
    if (status < 0) {
        uv_freeaddrinfo(res);
        decide_uv(s, "resolve", status);
        return;
    }
    s->ai_list = s->ai_next = res;
    while (s->ai_next && s->ai_next->ai_family != AF_INET && s->ai_next->ai_family != AF_INET6)
        s->ai_next = s->ai_next->ai_next;
    if (!s->ai_next) {
        decide(s, false, "resolve: no address");
        return;
    }
    connect_next(s);
}

static void start_check(tp_group_srv_t *s) {
    tp_group_t *g = s->g;
    s->busy = true;
    s->decided = false;
    s->rlen = 0;
    uv_timer_start(&s->timer, timer_cb, g->cfg->health.timeout, 0);
    if (s->literal) {
        connect_to(s, &s->addr.u.sa);
        return;
    }
    /* Names go to libuv's thread pool (getaddrinfo), never blocking the loop; the worker's
     * c-ares resolver is not reachable from here yet (docs/ARCHITECTURE.md). */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->gai.data = s;
    int rc = uv_getaddrinfo(g->loop, &s->gai, gai_cb, s->pub.host, s->port_str, &hints);
    if (rc < 0) {
        decide_uv(s, "resolve", rc);
        return;
    }
    s->gai_pending = true;
    g->open++;
}

/* Idle: time for the next check. Busy: the running check's deadline passed. */
static void timer_cb(uv_timer_t *t) {
    tp_group_srv_t *s = t->data;
    if (!s->busy)
        start_check(s);
    else
        decide(s, false, "timed out");
}

void tp__health_start(tp_group_t *g) {
    uint64_t interval = g->cfg->health.interval;
    for (size_t i = 0; i < g->n; i++) {
        tp_group_srv_t *s = &g->srv[i];
        uv_timer_init(g->loop, &s->timer);
        s->timer.data = s;
        s->timer_open = true;
        g->open++;
        /* The first check soon, so a server that is down at start is found out early. */
        uv_timer_start(&s->timer, timer_cb, jitter(g, interval), 0);
    }
}

static void timer_close_cb(uv_handle_t *h) {
    tp_group_srv_t *s = h->data;
    s->timer_open = false;
    tp__group_put(s->g);
}

void tp__health_close(tp_group_t *g) {
    for (size_t i = 0; i < g->n; i++) {
        tp_group_srv_t *s = &g->srv[i];
        s->decided = true;
        if (s->gai_pending)
            uv_cancel((uv_req_t *)&s->gai);
        if (s->tcp_open && !uv_is_closing((uv_handle_t *)&s->tcp))
            uv_close((uv_handle_t *)&s->tcp, tcp_close_cb);
        if (s->ai_list) {
            uv_freeaddrinfo(s->ai_list);
            s->ai_list = s->ai_next = NULL;
        }
        if (s->timer_open)
            uv_close((uv_handle_t *)&s->timer, timer_close_cb);
    }
}
