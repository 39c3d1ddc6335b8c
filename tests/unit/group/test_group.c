/* test_group.c: upstream groups: balance, passive failure detection and active health checks
 * against real listeners on loopback (libuv servers in the test, and nginx when installed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netdb.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "offramp/group.h"

static uv_loop_t loop;

/* ---- configuration ---- */

#define MAX_SERVERS 8

typedef struct cfgbox {
    tp_upstream_cfg_t cfg;
    char *items[MAX_SERVERS];
    char text[MAX_SERVERS][64];
} cfgbox_t;

/* A group's configuration with the schema's defaults, except for short health timings. */
static void cfg_init(cfgbox_t *b, int balance, size_t n) {
    memset(b, 0, sizeof(*b));
    b->cfg.name = "g";
    b->cfg.balance = balance;
    b->cfg.servers.items = b->items;
    b->cfg.servers.n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(b->text[i], sizeof(b->text[i]), "10.0.0.%zu:80", i + 1);
        b->items[i] = b->text[i];
    }
    b->cfg.health = (tp_health_cfg_t){.check = TP_HEALTH_NONE,
                                      .path = "/",
                                      .interval = 100,
                                      .timeout = 100,
                                      .rise = 2,
                                      .fall = 2,
                                      .max_fails = 0,
                                      .fail_timeout = 100};
}

/* Server i becomes "host:port" (host in brackets for IPv6). */
static void cfg_server(cfgbox_t *b, size_t i, const char *host, unsigned port) {
    snprintf(b->text[i], sizeof(b->text[i]), "%s:%u", host, port);
}

static tp_group_t *group_new(const cfgbox_t *b) {
    tp_group_t *g = NULL;
    assert_int_equal(tp__group_new(&loop, &b->cfg, &g), 0);
    assert_non_null(g);
    return g;
}

/* ---- the loop ---- */

static void deadline_cb(uv_timer_t *t) { *(bool *)t->data = true; }

/* Runs the loop until pred(arg) holds or ms pass; returns pred's last value. */
static bool run_until(bool (*pred)(void *), void *arg, uint64_t ms) {
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &expired;
    uv_timer_start(&t, deadline_cb, ms, 0);
    bool ok;
    while (!(ok = pred ? pred(arg) : false) && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static void run_for(uint64_t ms) { run_until(NULL, NULL, ms); }

/* Closes the group; the teardown runs the loop until its last handle closed, checks that none
 * was left open, and ASan that the memory went with it. */
static void group_close(tp_group_t *g) {
    tp__group_close(g);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* stderr's real descriptor while a test captures the log (capture_start), else -1. */
static int saved_stderr = -1;

static int setup(void **state) { return uv_loop_init(&loop); }

static void close_walk_cb(uv_handle_t *h, void *arg) {
    if (uv_is_closing(h))
        return;
    uv_close(h, NULL);
    *(int *)arg += 1;
}

/* Every handle must have been closed by its owner; after a failed test, whatever is left is
 * closed here so the next test gets a clean loop. */
static int teardown(void **state) {
    if (saved_stderr >= 0) {
        dup2(saved_stderr, 2);
        close(saved_stderr);
        saved_stderr = -1;
    }
    int left = 0;
    uv_walk(&loop, close_walk_cb, &left);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (left)
        fprintf(stderr, "%d handles were left open\n", left);
    return uv_loop_close(&loop) == 0 && left == 0 ? 0 : -1;
}

static bool is_down(void *s) { return !((tp_group_server_t *)s)->healthy; }
static bool is_up(void *s) { return ((tp_group_server_t *)s)->healthy; }

/* ---- balance ---- */

/* "localhost" where the machine resolves it; a bare build root (no /etc/hosts) may not, and then
 * the name cases run with the address itself. */
static const char *local_name(void) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo("localhost", NULL, &hints, &res) == 0) {
        freeaddrinfo(res);
        return "localhost";
    }
    print_message("localhost does not resolve here: using 127.0.0.1 for the name cases\n");
    return "127.0.0.1";
}

static void test_round_robin(void **state) {
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 3);
    tp_group_t *g = group_new(&b);
    assert_int_equal(tp__group_size(g), 3);
    assert_ptr_equal(tp__group_cfg(g), &b.cfg);
    assert_null(tp__group_server(g, 3));
    for (size_t i = 0; i < 3; i++) {
        tp_group_server_t *s = tp__group_server(g, i);
        assert_int_equal(s->index, i);
        assert_true(s->healthy);
        assert_int_equal(s->port, 80);
    }
    assert_string_equal(tp__group_server(g, 1)->host, "10.0.0.2");
    for (int round = 0; round < 4; round++)
        for (size_t i = 0; i < 3; i++)
            assert_int_equal(tp__group_pick(g, tp_str(NULL), NULL, false)->index, i);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(tp__group_server(g, i)->picks, 4);
    group_close(g);
}

static void test_least_conn(void **state) {
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_LEAST_CONN, 3);
    tp_group_t *g = group_new(&b);
    tp_group_server_t *s[3];
    for (size_t i = 0; i < 3; i++)
        s[i] = tp__group_server(g, i);
    /* All idle: they take turns. */
    for (size_t i = 0; i < 6; i++)
        assert_ptr_equal(tp__group_pick(g, tp_str(NULL), NULL, false), s[i % 3]);
    /* 2, 1, 0 in flight: the idle one, every time. */
    tp__group_acquire(g, s[0]);
    tp__group_acquire(g, s[0]);
    tp__group_acquire(g, s[1]);
    assert_int_equal(s[0]->inflight, 2);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(tp__group_pick(g, tp_str(NULL), NULL, false), s[2]);
    /* Picks that become exchanges fill the gaps: s2 to 1, then s1 and s2 tie at 1 and alternate,
     * while s0 (2) waits until they reach 2. */
    tp_group_server_t *p = tp__group_pick(g, tp_str(NULL), NULL, false);
    assert_ptr_equal(p, s[2]);
    tp__group_acquire(g, p);
    tp_group_server_t *a = tp__group_pick(g, tp_str(NULL), NULL, false);
    tp__group_acquire(g, a);
    tp_group_server_t *c = tp__group_pick(g, tp_str(NULL), NULL, false);
    tp__group_acquire(g, c);
    assert_true((a == s[1] && c == s[2]) || (a == s[2] && c == s[1]));
    assert_int_equal(s[1]->inflight, 2);
    assert_int_equal(s[2]->inflight, 2);
    /* Releases bring a server back to the front. */
    tp__group_release(g, s[0], TP_GROUP_OK);
    tp__group_release(g, s[0], TP_GROUP_OK);
    assert_int_equal(s[0]->inflight, 0);
    assert_ptr_equal(tp__group_pick(g, tp_str(NULL), NULL, false), s[0]);
    /* A release with nothing in flight does not wrap around. */
    tp__group_release(g, s[0], TP_GROUP_OK);
    assert_int_equal(s[0]->inflight, 0);
    /* avoid: the least loaded other server. */
    assert_ptr_not_equal(tp__group_pick(g, tp_str(NULL), s[0], false), s[0]);
    for (size_t i = 1; i < 3; i++)
        while (s[i]->inflight)
            tp__group_release(g, s[i], TP_GROUP_OK);
    group_close(g);
}

static tp_str_t key_of(char *buf, size_t cap, int i) {
    int n = snprintf(buf, cap, "198.51.%d.%d", i / 256, i % 256);
    return (tp_str_t){buf, (size_t)n};
}

#define NKEYS 10000

static void test_hash_spread(void **state) {
    for (size_t n = 3; n <= 5; n++) {
        cfgbox_t b;
        cfg_init(&b, TP_BALANCE_HASH, n);
        tp_group_t *g = group_new(&b);
        size_t count[MAX_SERVERS] = {0};
        char buf[32];
        for (int i = 0; i < NKEYS; i++) {
            tp_str_t k = key_of(buf, sizeof(buf), i);
            tp_group_server_t *s = tp__group_pick(g, k, NULL, false);
            assert_non_null(s);
            count[s->index]++;
            /* The same key, the same server, every time. */
            assert_ptr_equal(tp__group_pick(g, k, NULL, false), s);
        }
        /* Each server's share is within 20% of the fair one (13.5% at worst today). */
        for (size_t i = 0; i < n; i++) {
            double share = (double)count[i] * (double)n / NKEYS;
            if (share < 0.8 || share > 1.2)
                fail_msg("%zu servers: server %zu got %zu of %d keys", n, i, count[i], NKEYS);
        }
        /* An empty key hashes like any other. */
        tp_group_server_t *e = tp__group_pick(g, (tp_str_t){NULL, 0}, NULL, false);
        assert_non_null(e);
        assert_ptr_equal(tp__group_pick(g, (tp_str_t){"", 0}, NULL, false), e);
        group_close(g);
    }
}

/* With one server out, exactly its keys move, and they spread over the others. */
static void test_hash_removal(void **state) {
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_HASH, 4);
    b.cfg.health.max_fails = 1;
    b.cfg.health.fail_timeout = 100;
    tp_group_t *g = group_new(&b);
    static size_t before[NKEYS];
    char buf[32];
    for (int i = 0; i < NKEYS; i++)
        before[i] = tp__group_pick(g, key_of(buf, sizeof(buf), i), NULL, false)->index;

    tp_group_server_t *out = tp__group_server(g, 2);
    tp__group_release(g, out, TP_GROUP_CONNECT_FAILED);
    assert_false(out->healthy);
    size_t moved = 0, moved_to[MAX_SERVERS] = {0};
    for (int i = 0; i < NKEYS; i++) {
        size_t now = tp__group_pick(g, key_of(buf, sizeof(buf), i), NULL, false)->index;
        if (before[i] != 2) {
            assert_int_equal(now, before[i]);
        } else {
            assert_int_not_equal(now, 2);
            moved++;
            moved_to[now]++;
        }
    }
    assert_true(moved > 0);
    for (size_t i = 0; i < 4; i++)
        if (i != 2)
            assert_true(moved_to[i] > moved / 10);

    /* Back after fail_timeout: every key where it was. */
    assert_true(run_until(is_up, out, 2000));
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(tp__group_pick(g, key_of(buf, sizeof(buf), i), NULL, false)->index,
                         before[i]);
    group_close(g);
}

static void test_avoid(void **state) {
    static const int balances[] = {TP_BALANCE_ROUND_ROBIN, TP_BALANCE_LEAST_CONN, TP_BALANCE_HASH};
    for (size_t t = 0; t < 3; t++) {
        cfgbox_t b;
        cfg_init(&b, balances[t], 3);
        b.cfg.health.max_fails = 1;
        b.cfg.health.fail_timeout = 60000;
        tp_group_t *g = group_new(&b);
        char buf[32];
        for (int i = 0; i < 100; i++) {
            tp_str_t k = key_of(buf, sizeof(buf), i);
            tp_group_server_t *first = tp__group_pick(g, k, NULL, false);
            tp_group_server_t *retry = tp__group_pick(g, k, first, false);
            assert_non_null(retry);
            assert_ptr_not_equal(retry, first);
        }
        /* Two out: the retry has nowhere else to go, so it goes back to the healthy one. */
        tp_group_server_t *s0 = tp__group_server(g, 0), *s1 = tp__group_server(g, 1),
                          *s2 = tp__group_server(g, 2);
        tp__group_release(g, s1, TP_GROUP_TIMEOUT);
        tp__group_release(g, s2, TP_GROUP_RESET);
        assert_ptr_equal(tp__group_pick(g, tp_str("k"), s0, false), s0);
        assert_ptr_equal(tp__group_pick(g, tp_str("k"), NULL, false), s0);
        /* A server of another group is no reason to avoid anything. */
        assert_ptr_equal(tp__group_pick(g, tp_str("k"), &(tp_group_server_t){0}, false), s0);
        group_close(g);
    }
}

static void test_none_healthy(void **state) {
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 3);
    b.cfg.health.max_fails = 1;
    b.cfg.health.fail_timeout = 60000;
    tp_group_t *g = group_new(&b);
    tp_group_server_t *s[3];
    for (size_t i = 0; i < 3; i++)
        s[i] = tp__group_server(g, i);
    tp__group_release(g, s[1], TP_GROUP_CONNECT_FAILED);
    run_for(20);
    tp__group_release(g, s[0], TP_GROUP_CONNECT_FAILED);
    run_for(20);
    tp__group_release(g, s[2], TP_GROUP_CONNECT_FAILED);
    assert_null(tp__group_pick(g, tp_str(NULL), NULL, false));
    /* Last resort: the one out the longest, unless that one is to be avoided. */
    assert_ptr_equal(tp__group_pick(g, tp_str(NULL), NULL, true), s[1]);
    assert_ptr_equal(tp__group_pick(g, tp_str(NULL), s[1], true), s[0]);
    group_close(g);

    cfg_init(&b, TP_BALANCE_HASH, 1);
    b.cfg.health.max_fails = 1;
    b.cfg.health.fail_timeout = 60000;
    g = group_new(&b);
    tp_group_server_t *only = tp__group_server(g, 0);
    tp__group_release(g, only, TP_GROUP_CONNECT_FAILED);
    assert_null(tp__group_pick(g, tp_str("k"), NULL, false));
    assert_ptr_equal(tp__group_pick(g, tp_str("k"), only, true), only);
    group_close(g);
}

static void test_bad_config(void **state) {
    cfgbox_t b;
    tp_group_t *g = (tp_group_t *)&b; /* must be reset to NULL */
    static const char *const bad[] = {"10.0.0.1", "10.0.0.1:0", "[::1:80",
                                      "a b:80",   ":80",        "10.0.0.1:65536"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 2);
        snprintf(b.text[1], sizeof(b.text[1]), "%s", bad[i]);
        assert_int_equal(tp__group_new(&loop, &b.cfg, &g), TP_ERR_INVAL);
        assert_null(g);
    }
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 0);
    assert_int_equal(tp__group_new(&loop, &b.cfg, &g), TP_ERR_INVAL);
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 1);
    b.cfg.health.check = TP_HEALTH_HTTP;
    b.cfg.health.path = "/x HTTP/1.1\r\nX-Evil: 1";
    assert_int_equal(tp__group_new(&loop, &b.cfg, &g), TP_ERR_INVAL);
    b.cfg.health.path = "health";
    assert_int_equal(tp__group_new(&loop, &b.cfg, &g), TP_ERR_INVAL);
    b.cfg.health.path = "/";
    b.cfg.health.host = "a b";
    assert_int_equal(tp__group_new(&loop, &b.cfg, &g), TP_ERR_INVAL);

    /* IPv6 literals and names are fine. */
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 2);
    cfg_server(&b, 0, "[2001:db8::1]", 8443);
    cfg_server(&b, 1, "backend.internal", 81);
    g = group_new(&b);
    assert_string_equal(tp__group_server(g, 0)->host, "2001:db8::1");
    assert_int_equal(tp__group_server(g, 0)->port, 8443);
    assert_string_equal(tp__group_server(g, 1)->host, "backend.internal");
    group_close(g);
}

/* ---- passive failure detection ---- */

/* Captures stderr (the JSON log) into a file while a test runs. */
typedef struct capture {
    char path[64];
} capture_t;

static void capture_start(capture_t *c) {
    snprintf(c->path, sizeof(c->path), "/tmp/tp-group-log-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(capture_t *c) {
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(c->path);
    return text;
}

static void test_passive(void **state) {
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 2);
    b.cfg.health.max_fails = 2;
    b.cfg.health.fail_timeout = 100;
    tp_group_t *g = group_new(&b);
    tp_group_server_t *s0 = tp__group_server(g, 0), *s1 = tp__group_server(g, 1);
    capture_t cap;
    capture_start(&cap);

    /* Outcomes that say nothing against the server do not count. */
    for (int i = 0; i < 5; i++) {
        tp__group_acquire(g, s1);
        tp__group_release(g, s1, i % 2 ? TP_GROUP_OK : TP_GROUP_ABANDONED);
    }
    assert_true(s1->healthy);
    assert_int_equal(s1->failures, 0);

    /* Two failures further apart than fail_timeout: each window has one. */
    tp__group_release(g, s1, TP_GROUP_CONNECT_FAILED);
    run_for(130);
    tp__group_release(g, s1, TP_GROUP_RESET);
    assert_true(s1->healthy);
    assert_int_equal(s1->failures, 2);

    /* The second within the window takes it out, for fail_timeout. */
    tp__group_release(g, s1, TP_GROUP_TIMEOUT);
    assert_false(s1->healthy);
    uint64_t out_at = uv_now(&loop);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(tp__group_pick(g, tp_str(NULL), NULL, false), s0);
    assert_true(run_until(is_up, s1, 2000));
    assert_true(uv_now(&loop) - out_at >= 100);
    assert_ptr_equal(tp__group_pick(g, tp_str(NULL), s0, false), s1);

    /* max_fails 0 is off. */
    b.cfg.health.max_fails = 0;
    for (int i = 0; i < 10; i++)
        tp__group_release(g, s0, TP_GROUP_CONNECT_FAILED);
    assert_true(s0->healthy);
    group_close(g);

    char *log = capture_end(&cap);
    assert_non_null(strstr(log, "\"msg\":\"upstream health\",\"group\":\"g\",\"server\":\"10.0.0.2:"
                                "80\",\"healthy\":false,\"reason\":\"2 failed exchanges within "
                                "fail_timeout, the last: timed out\"}"));
    assert_non_null(strstr(log, "\"msg\":\"upstream health\",\"group\":\"g\",\"server\":\"10.0.0.2:"
                                "80\",\"healthy\":true,\"reason\":\"fail_timeout passed\"}"));
    assert_null(strstr(log, "10.0.0.1:80"));
}

/* ---- real peers on loopback ---- */

#define MAX_CLIENTS 32

typedef enum reply { REPLY_CLOSE, REPLY_200, REPLY_503, REPLY_GARBAGE, REPLY_SILENT } reply_t;

typedef struct listener listener_t;

typedef struct client {
    uv_tcp_t h;
    uv_write_t w;
    listener_t *l;
    char buf[2048];
    size_t len;
    bool used;
} client_t;

/* A TCP server on 127.0.0.1 that answers every connection as `reply` says. */
struct listener {
    uv_tcp_t h;
    bool open;
    uint16_t port;
    reply_t reply;
    size_t accepted;
    char last_request[2048];
    client_t clients[MAX_CLIENTS];
};

static void client_close_cb(uv_handle_t *h) { ((client_t *)h->data)->used = false; }

static void client_close(client_t *c) {
    if (!uv_is_closing((uv_handle_t *)&c->h))
        uv_close((uv_handle_t *)&c->h, client_close_cb);
}

static void client_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    client_t *c = h->data;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void client_written_cb(uv_write_t *w, int status) { client_close(w->data); }

static void client_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    client_t *c = st->data;
    if (nread < 0) {
        client_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    if (!strstr(c->buf, "\r\n\r\n") || c->l->reply == REPLY_SILENT)
        return;
    snprintf(c->l->last_request, sizeof(c->l->last_request), "%s", c->buf);
    static const char ok[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
    static const char down[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    static const char garbage[] = "SSH-2.0-OpenSSH_9.2\r\n";
    const char *r = c->l->reply == REPLY_200 ? ok : c->l->reply == REPLY_503 ? down : garbage;
    uv_read_stop(st);
    c->w.data = c;
    uv_buf_t b = uv_buf_init((char *)r, (unsigned)strlen(r));
    if (uv_write(&c->w, st, &b, 1, client_written_cb) != 0)
        client_close(c);
}

static void connection_cb(uv_stream_t *server, int status) {
    listener_t *l = server->data;
    client_t *c = NULL;
    for (size_t i = 0; i < MAX_CLIENTS && !c; i++)
        if (!l->clients[i].used)
            c = &l->clients[i];
    assert_non_null(c);
    memset(c, 0, sizeof(*c));
    c->used = true;
    c->l = l;
    uv_tcp_init(&loop, &c->h);
    c->h.data = c;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&c->h), 0);
    l->accepted++;
    if (l->reply == REPLY_CLOSE)
        client_close(c);
    else
        uv_read_start((uv_stream_t *)&c->h, client_alloc_cb, client_read_cb);
}

/* Listens on 127.0.0.1:port (0: any free port). */
static void listener_start(listener_t *l, uint16_t port, reply_t reply) {
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    l->reply = reply;
    assert_int_equal(uv_tcp_init(&loop, &l->h), 0);
    l->h.data = l;
    assert_int_equal(uv_tcp_bind(&l->h, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&l->h, 64, connection_cb), 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&l->h, (struct sockaddr *)&a, &len);
    l->port = ntohs(a.sin_port);
    l->open = true;
}

static void listener_stop(listener_t *l) {
    if (l->open)
        uv_close((uv_handle_t *)&l->h, NULL);
    l->open = false;
    for (size_t i = 0; i < MAX_CLIENTS; i++)
        if (l->clients[i].used)
            client_close(&l->clients[i]);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* A loopback port with nothing listening (connects are refused). */
static uint16_t closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct count_wait {
    const uint64_t *counter;
    uint64_t at_least;
} count_wait_t;

static bool counted(void *arg) {
    count_wait_t *w = arg;
    return *w->counter >= w->at_least;
}

static void test_active_tcp(void **state) {
    static listener_t l;
    memset(&l, 0, sizeof(l));
    listener_start(&l, 0, REPLY_CLOSE);
    uint16_t dead = closed_port();
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 3);
    b.cfg.health.check = TP_HEALTH_TCP;
    cfg_server(&b, 0, "127.0.0.1", l.port);
    cfg_server(&b, 1, "127.0.0.1", dead);
    cfg_server(&b, 2, local_name(), l.port); /* a name: resolved for each check */
    tp_group_t *g = group_new(&b);
    tp_group_server_t *up = tp__group_server(g, 0), *down = tp__group_server(g, 1),
                      *named = tp__group_server(g, 2);
    capture_t cap;
    capture_start(&cap);

    /* The refused one goes out after `fall` (2) checks; the listening ones stay in. */
    assert_true(run_until(is_down, down, 3000));
    assert_int_equal(down->checks_failed, 2);
    assert_int_equal(down->checks_ok, 0);
    assert_true(up->healthy && named->healthy);
    assert_true(up->checks_ok >= 1);
    assert_int_equal(up->checks_failed, 0);
    count_wait_t w = {&named->checks_ok, 2};
    assert_true(run_until(counted, &w, 3000));
    assert_int_equal(named->checks_failed, 0);
    assert_true(l.accepted >= 3);
    for (int i = 0; i < 6; i++)
        assert_ptr_not_equal(tp__group_pick(g, tp_str(NULL), NULL, false), down);

    /* The listener goes away: both servers on it go out ... */
    listener_stop(&l);
    assert_true(run_until(is_down, up, 3000));
    assert_true(run_until(is_down, named, 3000));
    assert_null(tp__group_pick(g, tp_str(NULL), NULL, false));
    /* ... and come back after `rise` (2) good checks once it is there again. */
    uint64_t ok_before = up->checks_ok;
    listener_start(&l, up->port, REPLY_CLOSE);
    assert_true(run_until(is_up, up, 3000));
    assert_int_equal(up->checks_ok - ok_before, 2);
    assert_true(run_until(is_up, named, 3000));
    assert_false(down->healthy);

    group_close(g);
    listener_stop(&l);
    char *log = capture_end(&cap);
    char want[160];
    snprintf(want, sizeof(want),
             "\"server\":\"127.0.0.1:%u\",\"healthy\":false,\"reason\":\"2 checks failed, the "
             "last: connect: connection refused\"}",
             dead);
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof(want),
             "\"server\":\"127.0.0.1:%u\",\"healthy\":true,\"reason\":\"2 checks passed\"}",
             l.port);
    assert_non_null(strstr(log, want));
}

/* Passive failures with active checks: out for fail_timeout and until `rise` checks pass. */
static void test_passive_with_checks(void **state) {
    static listener_t l;
    memset(&l, 0, sizeof(l));
    listener_start(&l, 0, REPLY_CLOSE);
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 1);
    b.cfg.health.check = TP_HEALTH_TCP;
    b.cfg.health.max_fails = 1;
    b.cfg.health.fail_timeout = 100;
    b.cfg.health.rise = 3;
    cfg_server(&b, 0, "127.0.0.1", l.port);
    tp_group_t *g = group_new(&b);
    tp_group_server_t *s = tp__group_server(g, 0);
    count_wait_t w = {&s->checks_ok, 1};
    assert_true(run_until(counted, &w, 3000));
    uint64_t ok_before = s->checks_ok;
    uint64_t out_at = uv_now(&loop);
    tp__group_release(g, s, TP_GROUP_RESET);
    assert_false(s->healthy);
    assert_true(run_until(is_up, s, 3000));
    assert_true(uv_now(&loop) - out_at >= 100);
    assert_true(s->checks_ok - ok_before >= 3);
    group_close(g);
    listener_stop(&l);
}

static void test_active_http(void **state) {
    static listener_t ok, down, garbage, silent;
    memset(&ok, 0, sizeof(ok));
    memset(&down, 0, sizeof(down));
    memset(&garbage, 0, sizeof(garbage));
    memset(&silent, 0, sizeof(silent));
    listener_start(&ok, 0, REPLY_200);
    listener_start(&down, 0, REPLY_503);
    listener_start(&garbage, 0, REPLY_GARBAGE);
    listener_start(&silent, 0, REPLY_SILENT);
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 4);
    b.cfg.health.check = TP_HEALTH_HTTP;
    b.cfg.health.path = "/healthz?full=1";
    b.cfg.health.timeout = 80;
    cfg_server(&b, 0, "127.0.0.1", ok.port);
    cfg_server(&b, 1, "127.0.0.1", down.port);
    cfg_server(&b, 2, "127.0.0.1", garbage.port);
    cfg_server(&b, 3, "127.0.0.1", silent.port);
    tp_group_t *g = group_new(&b);
    tp_group_server_t *s[4];
    for (size_t i = 0; i < 4; i++)
        s[i] = tp__group_server(g, i);
    capture_t cap;
    capture_start(&cap);

    for (size_t i = 1; i < 4; i++)
        assert_true(run_until(is_down, s[i], 3000));
    assert_true(s[0]->healthy);
    assert_true(s[0]->checks_ok >= 2);
    assert_int_equal(s[0]->checks_failed, 0);
    char want[256];
    snprintf(want, sizeof(want),
             "GET /healthz?full=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n"
             "User-Agent: turnpike-health\r\n\r\n",
             ok.port);
    assert_string_equal(ok.last_request, want);

    /* The answers change: 200 -> 503 takes it out after `fall`, and back after `rise`. */
    ok.reply = REPLY_503;
    assert_true(run_until(is_down, s[0], 3000));
    down.reply = REPLY_200;
    assert_true(run_until(is_up, s[1], 3000));
    assert_ptr_equal(tp__group_pick(g, tp_str(NULL), NULL, false), s[1]);

    group_close(g);
    listener_stop(&ok);
    listener_stop(&down);
    listener_stop(&garbage);
    listener_stop(&silent);
    char *log = capture_end(&cap);
    snprintf(want, sizeof(want),
             "\"server\":\"127.0.0.1:%u\",\"healthy\":false,\"reason\":\"2 "
             "checks failed, the last: answered 503\"}",
             down.port);
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof(want),
             "\"server\":\"127.0.0.1:%u\",\"healthy\":false,\"reason\":\"2 "
             "checks failed, the last: not an HTTP/1 status line\"}",
             garbage.port);
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof(want),
             "\"server\":\"127.0.0.1:%u\",\"healthy\":false,\"reason\":\"2 "
             "checks failed, the last: timed out\"}",
             silent.port);
    assert_non_null(strstr(log, want));
}

static void test_http_host_header(void **state) {
    static listener_t l;
    memset(&l, 0, sizeof(l));
    listener_start(&l, 0, REPLY_200);
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 1);
    b.cfg.health.check = TP_HEALTH_HTTP;
    b.cfg.health.host = "status.example";
    cfg_server(&b, 0, local_name(), l.port);
    tp_group_t *g = group_new(&b);
    count_wait_t w = {&tp__group_server(g, 0)->checks_ok, 1};
    assert_true(run_until(counted, &w, 3000));
    assert_string_equal(l.last_request, "GET / HTTP/1.1\r\nHost: status.example\r\nConnection: "
                                        "close\r\nUser-Agent: turnpike-health\r\n\r\n");
    group_close(g);
    listener_stop(&l);
}

/* Closing the group while checks are in flight (a connection waiting for an answer, a name
 * being resolved) frees everything once the last handle closed. */
static void test_close_in_flight(void **state) {
    static listener_t silent;
    memset(&silent, 0, sizeof(silent));
    listener_start(&silent, 0, REPLY_SILENT);
    cfgbox_t b;
    cfg_init(&b, TP_BALANCE_ROUND_ROBIN, 3);
    b.cfg.health.check = TP_HEALTH_HTTP;
    b.cfg.health.timeout = 5000;
    cfg_server(&b, 0, "127.0.0.1", silent.port);
    cfg_server(&b, 1, local_name(), silent.port);
    cfg_server(&b, 2, "[::1]", silent.port);
    for (int delay = 0; delay <= 40; delay += 20) {
        tp_group_t *g = group_new(&b);
        run_for((uint64_t)delay);
        tp__group_close(g);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    listener_stop(&silent);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- nginx, when installed ---- */

static const char *nginx_path(void) {
    static const char *const paths[] = {"/usr/sbin/nginx", "/usr/bin/nginx"};
    for (size_t i = 0; i < 2; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static bool port_open(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void test_active_http_nginx(void **state) {
    const char *nginx = nginx_path();
    if (!nginx)
        skip();
    char dir[] = "/tmp/tp-group-nginx-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint16_t port = closed_port();
    char conf[512], text[2048];
    snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
    snprintf(text, sizeof(text),
             "daemon off; master_process off; worker_processes 1; pid %s/nginx.pid;\n"
             "error_log %s/error.log;\nevents { worker_connections 64; }\n"
             "http { access_log off; client_body_temp_path %s; proxy_temp_path %s;\n"
             "  fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
             "  server { listen 127.0.0.1:%u;\n"
             "    location = /healthz { return 200 \"ok\\n\"; }\n"
             "    location = /moved { return 302 /healthz; }\n"
             "    location = /down { return 503; } } }\n",
             dir, dir, dir, dir, dir, dir, dir, port);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(nginx, nginx, "-p", dir, "-c", conf, "-e", "/dev/null", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 250 && !port_open(port); i++)
        usleep(20000);
    if (!port_open(port)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("nginx did not listen on port %u", port);
    }

    cfgbox_t good, moved, bad;
    cfg_init(&good, TP_BALANCE_ROUND_ROBIN, 1);
    good.cfg.health.check = TP_HEALTH_HTTP;
    good.cfg.health.path = "/healthz";
    cfg_server(&good, 0, "127.0.0.1", port);
    moved = good;
    moved.cfg.servers.items = moved.items;
    moved.items[0] = moved.text[0];
    moved.cfg.health.path = "/moved";
    bad = good;
    bad.cfg.servers.items = bad.items;
    bad.items[0] = bad.text[0];
    bad.cfg.health.path = "/down";
    tp_group_t *gg = group_new(&good), *gm = group_new(&moved), *gb = group_new(&bad);
    tp_group_server_t *sg = tp__group_server(gg, 0), *sm = tp__group_server(gm, 0),
                      *sb = tp__group_server(gb, 0);
    assert_true(run_until(is_down, sb, 3000));
    count_wait_t w = {&sg->checks_ok, 3};
    assert_true(run_until(counted, &w, 3000));
    assert_true(sg->healthy && sm->healthy);
    assert_int_equal(sg->checks_failed, 0);
    assert_int_equal(sm->checks_failed, 0);
    assert_true(sm->checks_ok >= 1);
    group_close(gg);
    group_close(gm);
    group_close(gb);

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_conn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_removal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avoid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_none_healthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_active_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passive_with_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_active_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_host_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_active_http_nginx, setup, teardown),
    };
    if (getenv("TP_TEST_FILTER")) /* runs only the tests whose name matches, e.g. "*http*" */
        cmocka_set_test_filter(getenv("TP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
