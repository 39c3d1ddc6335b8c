/* test_resolver.c: the DNS resolver against real servers: dnsmasq children and in-test fakes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "dns/resolver.h"

/*
 * The tests run dnsmasq (Debian's dnsmasq-base; scripts/install-deps test) as children on free
 * loopback ports, in the foreground, with no upstream and no /etc/hosts, logging every query to a
 * file: counting the "query[A] name from" lines tells how many questions reached the server.
 * `--local=/test/` makes dnsmasq the authority for .test: unknown names are NXDOMAIN and a name
 * without the asked type is NODATA; --host-record sets addresses with their TTL.
 *
 * Each child gets PR_SET_PDEATHSIG so it dies with the test even if the test crashes; the
 * teardowns kill them too.
 */

/* ---- children ---- */

#define MAX_CHILDREN 8

typedef struct dnsmasq {
    pid_t pid;
    uint16_t port;
    char log[256];
    char server[32]; /* "127.0.0.1:port" */
} dnsmasq_t;

static char tmpdir[128];
static dnsmasq_t main_ns;            /* the one with the records, for the whole run */
static pid_t children[MAX_CHILDREN]; /* every live dnsmasq, killed in the teardowns */

static void kill_child(pid_t pid) {
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

/* A loopback port free for both UDP and TCP (dnsmasq takes both). */
static uint16_t free_port(void) {
    for (int tries = 0; tries < 50; tries++) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        if (u < 0 || bind(u, (struct sockaddr *)&a, sizeof(a)) != 0 ||
            getsockname(u, (struct sockaddr *)&a, &len) != 0) {
            if (u >= 0)
                close(u);
            continue;
        }
        int t = socket(AF_INET, SOCK_STREAM, 0);
        int ok = t >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (t >= 0)
            close(t);
        close(u);
        if (ok)
            return ntohs(a.sin_port);
    }
    return 0;
}

/* A UDP socket bound on loopback and never read: queries sent to it time out. */
static int blackhole(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Sends one A question for `name` and waits up to 200 ms for any answer. */
static bool probe(uint16_t port, const char *name) {
    unsigned char q[300] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t n = 12;
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        q[n++] = (unsigned char)l;
        memcpy(q + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    q[n++] = 0;
    q[n++] = 0, q[n++] = 1, q[n++] = 0, q[n++] = 1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    unsigned char r[512];
    bool ok = sendto(fd, q, n, 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)n &&
              recv(fd, r, sizeof(r), 0) > 0;
    close(fd);
    return ok;
}

static const char *dnsmasq_path(void) {
    static const char *const paths[] = {"/usr/sbin/dnsmasq", "/usr/local/sbin/dnsmasq",
                                        "/sbin/dnsmasq", "/usr/bin/dnsmasq"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

/* Starts dnsmasq with the common options plus `extra` (NULL-terminated); 0 or -1. */
static int start_dnsmasq(dnsmasq_t *d, const char *tag, const char *const *extra) {
    const char *path = dnsmasq_path();
    if (!path) {
        print_error("dnsmasq is not installed (scripts/install-deps test installs it)\n");
        return -1;
    }
    memset(d, 0, sizeof(*d));
    d->port = free_port();
    if (d->port == 0)
        return -1;
    snprintf(d->log, sizeof(d->log), "%s/%s.log", tmpdir, tag);
    snprintf(d->server, sizeof(d->server), "127.0.0.1:%u", d->port);
    char errlog[300], port[32], logopt[300], user[300], group[300];
    snprintf(errlog, sizeof(errlog), "%s/%s.err", tmpdir, tag);
    snprintf(port, sizeof(port), "--port=%u", d->port);
    snprintf(logopt, sizeof(logopt), "--log-facility=%s", d->log);
    /* dnsmasq drops root for its own user by default; staying as ourselves keeps the log ours. */
    struct passwd *pw = getpwuid(getuid());
    struct group *gr = getgrgid(getgid());
    snprintf(user, sizeof(user), "--user=%s", pw ? pw->pw_name : "root");
    snprintf(group, sizeof(group), "--group=%s", gr ? gr->gr_name : "root");
    const char *argv[64] = {path,
                            "--keep-in-foreground",
                            "--conf-file=/dev/null",
                            "--no-resolv",
                            "--no-hosts",
                            "--pid-file=",
                            port,
                            "--listen-address=127.0.0.1",
                            "--bind-interfaces",
                            "--log-queries",
                            logopt,
                            user,
                            group};
    size_t argc = 13;
    for (size_t i = 0; extra && extra[i] && argc < 63; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int fd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(path, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == 0) {
            children[i] = pid;
            break;
        }
    for (int i = 0; i < 50; i++) { /* up to about 10 s on a loaded machine */
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            d->pid = 0;
            print_error("dnsmasq exited at start; see %s\n", errlog);
            return -1;
        }
        if (probe(d->port, "probe.test"))
            return 0;
    }
    print_error("dnsmasq did not answer; see %s\n", errlog);
    kill_child(pid);
    d->pid = 0;
    return -1;
}

/* How many questions (any type) for `name` the server logged. */
static int logged(const dnsmasq_t *d, const char *name) {
    FILE *f = fopen(d->log, "r");
    if (!f)
        return 0;
    char pat[300], line[1024];
    snprintf(pat, sizeof(pat), " %s from ", name);
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "query[") && strstr(line, pat))
            n++;
    fclose(f);
    return n;
}

/* ---- an in-test server that answers every question with one rcode ---- */

/*
 * dnsmasq cannot be made to answer SERVFAIL on demand (with a dead upstream it stays silent, and
 * with none it says REFUSED), so SERVFAIL comes from this: a UDP socket on the test's own loop
 * that echoes each question back with the chosen rcode and no records. In `a_only` mode it
 * answers A questions with 127.0.0.99 (TTL 300) and never answers AAAA ones, so one family times
 * out while the other has an answer.
 */
typedef struct fake {
    uv_udp_t udp;
    int rcode;
    bool a_only;
    int queries;
    char server[32];
    unsigned char buf[1500];
} fake_t;

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *b) {
    fake_t *f = h->data;
    *b = uv_buf_init((char *)f->buf, sizeof(f->buf));
}

static void fake_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *from,
                      unsigned flags) {
    fake_t *f = h->data;
    if (n <= 12 || !from)
        return;
    unsigned char *p = (unsigned char *)b->base;
    size_t off = 12;
    while (off < (size_t)n && p[off] != 0)
        off += p[off] + 1;
    off += 5; /* the root label, type and class */
    if (off > (size_t)n)
        return;
    f->queries++;
    unsigned qtype = (unsigned)p[off - 4] << 8 | p[off - 3];
    if (f->a_only && qtype != 1)
        return;
    p[2] = (unsigned char)(0x80 | (p[2] & 0x01));  /* a response; RD copied */
    p[3] = (unsigned char)(0x80 | f->rcode);       /* RA and the rcode */
    p[6] = p[7] = p[8] = p[9] = p[10] = p[11] = 0; /* no records (the OPT record goes too) */
    if (f->a_only) {
        static const unsigned char rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 127, 0, 0, 99};
        memcpy(p + off, rr, sizeof(rr));
        off += sizeof(rr);
        p[7] = 1;
    }
    uv_buf_t out = uv_buf_init((char *)p, (unsigned)off);
    uv_udp_try_send(h, &out, 1, from);
}

static void fake_start(uv_loop_t *loop, fake_t *f, int rcode) {
    memset(f, 0, sizeof(*f));
    f->rcode = rcode;
    assert_int_equal(uv_udp_init(loop, &f->udp), 0);
    f->udp.data = f;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(uv_udp_bind(&f->udp, (struct sockaddr *)&a, 0), 0);
    int len = sizeof(a);
    assert_int_equal(uv_udp_getsockname(&f->udp, (struct sockaddr *)&a, &len), 0);
    snprintf(f->server, sizeof(f->server), "127.0.0.1:%u", ntohs(a.sin_port));
    assert_int_equal(uv_udp_recv_start(&f->udp, fake_alloc, fake_recv), 0);
}

/* ---- the loop and answers ---- */

typedef struct got {
    int calls;
    int status;
    const char *rcode; /* copied: a static string */
    tp_addr_t addrs[2 * TP_DNS_MAX_ADDRS];
    size_t n;
    uint32_t ttl;
    bool from_cache, from_hosts, literal, partial;
    int partials;         /* early answers seen */
    uint64_t first_ns;    /* when the first callback ran */
    tp_addr_t first_addr; /* and its first address */
    uint64_t at_ns;
    /* what the callback does */
    tp_dns_query_t *cancel;             /* cancels this one ... */
    struct got *cancel_unless_answered; /* ... unless this answer came already (then it is gone) */
    tp_dns_query_t **self;              /* cancels itself (a no-op) */
    tp_dns_t *close;                    /* closes the resolver */
    tp_dns_t *resolve_in;               /* resolves another name from inside */
    struct got *inner;
    tp_dns_query_t *inner_q;
} got_t;

/* Set while a teardown closes a resolver after a failed test: the answers' memory is gone. */
static bool tearing_down;

static void got_cb(void *arg, const tp_dns_result_t *r) {
    got_t *g = arg;
    if (tearing_down)
        return;
    g->calls++;
    g->status = r->status;
    g->rcode = r->rcode;
    g->n = r->naddrs < 2 * TP_DNS_MAX_ADDRS ? r->naddrs : 2 * TP_DNS_MAX_ADDRS;
    if (g->n)
        memcpy(g->addrs, r->addrs, g->n * sizeof(tp_addr_t));
    g->ttl = r->ttl_s;
    g->from_cache = r->from_cache;
    g->from_hosts = r->from_hosts;
    g->literal = r->literal;
    g->partial = r->partial;
    g->partials += r->partial;
    g->at_ns = uv_hrtime();
    if (g->calls == 1) {
        g->first_ns = g->at_ns;
        if (g->n)
            g->first_addr = g->addrs[0];
    }
    assert_non_null(r->detail);
    if (g->cancel && (!g->cancel_unless_answered || g->cancel_unless_answered->calls == 0))
        tp__dns_cancel(g->cancel);
    if (g->self)
        tp__dns_cancel(*g->self);
    if (g->resolve_in)
        g->inner_q = tp__dns_resolve(g->resolve_in, "v4.test", got_cb, g->inner);
    if (g->close)
        tp__dns_close(g->close, NULL, NULL);
}

/* Handles live here, not on a test's stack: a failed assertion leaves them to the teardown. */
typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t watchdog;
    bool timed_out;
    tp_dns_t *dns;
    const char *servers[4];
    int holes[4];
    dnsmasq_t extra;
    fake_t fakes[2];
} fixture_t;

static void watchdog_cb(uv_timer_t *t) { ((fixture_t *)t->data)->timed_out = true; }

/* Runs the loop until *calls reaches n (fails after max_ms). */
static void run_until(fixture_t *fx, const int *calls, int n, uint64_t max_ms) {
    fx->timed_out = false;
    uv_timer_start(&fx->watchdog, watchdog_cb, max_ms, 0);
    while (*calls < n && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->watchdog);
    assert_int_equal(*calls, n);
}

/* Lets the loop run for ms (so loop time moves on). */
static void wait_ms(fixture_t *fx, uint64_t ms) {
    fx->timed_out = false;
    uv_timer_start(&fx->watchdog, watchdog_cb, ms, 0);
    while (!fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
}

static void settings_for(tp_dns_settings_t *s, const char *const *servers, size_t n) {
    tp__dns_settings_default(s);
    s->servers = servers;
    s->nservers = n;
    s->use_hosts = false;
}

static tp_dns_t *new_dns(fixture_t *fx, const tp_dns_settings_t *s) {
    assert_int_equal(tp__dns_new(&fx->loop, s, &fx->dns), 0);
    return fx->dns;
}

static void closed_cb(void *arg) { ++*(int *)arg; }

/* Closes the resolver and checks every handle and byte is gone (ASan sees the bytes). */
static void close_dns(fixture_t *fx) {
    int closed = 0;
    tp__dns_close(fx->dns, closed_cb, &closed);
    fx->dns = NULL;
    run_until(fx, &closed, 1, 5000);
}

static int setup(void **state) {
    fixture_t *fx = calloc(1, sizeof(*fx));
    if (!fx || uv_loop_init(&fx->loop) != 0)
        return -1;
    uv_timer_init(&fx->loop, &fx->watchdog);
    fx->watchdog.data = fx;
    tearing_down = false;
    for (int i = 0; i < 4; i++)
        fx->holes[i] = -1;
    fx->servers[0] = main_ns.server;
    *state = fx;
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int teardown(void **state) {
    fixture_t *fx = *state;
    tearing_down = true;
    if (fx->dns)
        tp__dns_close(fx->dns, NULL, NULL);
    uv_walk(&fx->loop, close_walk, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&fx->loop);
    for (int i = 0; i < 4; i++)
        if (fx->holes[i] >= 0)
            close(fx->holes[i]);
    kill_child(fx->extra.pid);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static char *addr_ip(const tp_addr_t *a, char *buf) {
    return tp_addr_format_ip(a, buf, TP_ADDR_STRLEN);
}

static void assert_ip(const tp_addr_t *a, const char *ip) {
    char b[TP_ADDR_STRLEN];
    assert_string_equal(addr_ip(a, b), ip);
    assert_int_equal(tp_addr_port(a), 0);
}

/* Resolves `name` and waits for the answer (asserting it was not synchronous). */
static void resolve_wait(fixture_t *fx, const char *name, got_t *g) {
    int before = g->calls;
    tp_dns_query_t *q = tp__dns_resolve(fx->dns, name, got_cb, g);
    assert_non_null(q);
    assert_int_equal(g->calls, before);
    run_until(fx, &g->calls, before + 1, 10000);
}

/* ---- tests ---- */

static void test_a_answer(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    new_dns(fx, &s);
    got_t g = {0};
    int before = logged(&main_ns, "v4.test");
    resolve_wait(fx, "v4.test", &g);
    assert_int_equal(g.status, 0);
    assert_null(g.rcode);
    assert_int_equal(g.n, 1); /* AAAA is NODATA: the A answer alone */
    assert_ip(&g.addrs[0], "127.0.0.8");
    assert_int_equal(g.ttl, 300);
    assert_false(g.from_cache);
    assert_int_equal(logged(&main_ns, "v4.test") - before, 2); /* one A, one AAAA */
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.lookups, 1);
    assert_int_equal(st.questions, 2);
    assert_int_equal(st.sends, 2);
    assert_int_equal(st.fallbacks, 0);
    assert_int_equal(st.cache_entries, 1);
    close_dns(fx);
}

static void test_aaaa_and_a_merged(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    new_dns(fx, &s);
    got_t g = {0};
    resolve_wait(fx, "Both.TEST.", &g); /* case and trailing dot do not matter */
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 2);
    assert_ip(&g.addrs[0], "::7"); /* IPv6 first */
    assert_ip(&g.addrs[1], "127.0.0.7");
    got_t h = {0};
    assert_null(tp__dns_resolve(fx->dns, "both.test", got_cb, &h));
    assert_int_equal(h.calls, 1);
    assert_true(h.from_cache);
    assert_int_equal(h.n, 2);
    close_dns(fx);
}

static void test_ttl_honoured(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    s.min_ttl_ms = 0;
    new_dns(fx, &s);
    int before = logged(&main_ns, "ttl.test");
    got_t g = {0};
    resolve_wait(fx, "ttl.test", &g); /* --host-record TTL 1 s */
    assert_int_equal(g.status, 0);
    assert_int_equal(g.ttl, 1);
    assert_int_equal(logged(&main_ns, "ttl.test") - before, 2);
    /* Within the TTL: from the cache, no question sent. */
    got_t h = {0};
    assert_null(tp__dns_resolve(fx->dns, "ttl.test", got_cb, &h));
    assert_int_equal(h.calls, 1);
    assert_true(h.from_cache);
    assert_true(h.ttl <= 1);
    assert_int_equal(h.n, 2);
    assert_int_equal(logged(&main_ns, "ttl.test") - before, 2);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(st.cache_misses, 1);
    assert_int_equal(st.sends, 2);
    /* Past it: asked again. */
    wait_ms(fx, 1100);
    got_t k = {0};
    resolve_wait(fx, "ttl.test", &k);
    assert_false(k.from_cache);
    assert_int_equal(logged(&main_ns, "ttl.test") - before, 4);
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.sends, 4);
    close_dns(fx);
}

static void test_ttl_clamps(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    s.max_ttl_ms = 300; /* shorter than v4.test's 300 s */
    s.min_ttl_ms = 200; /* longer than zero.test's 0 s */
    new_dns(fx, &s);
    int before = logged(&main_ns, "v4.test");
    got_t g = {0};
    resolve_wait(fx, "v4.test", &g);
    assert_int_equal(g.ttl, 1); /* 300 ms, rounded up */
    got_t h = {0};
    assert_null(tp__dns_resolve(fx->dns, "v4.test", got_cb, &h));
    assert_true(h.from_cache);
    wait_ms(fx, 400);
    got_t k = {0};
    resolve_wait(fx, "v4.test", &k);
    assert_false(k.from_cache);
    assert_int_equal(logged(&main_ns, "v4.test") - before, 4);

    /* A TTL of 0 is raised to min_ttl: the second lookup is a hit. */
    int zb = logged(&main_ns, "zero.test");
    got_t z = {0};
    resolve_wait(fx, "zero.test", &z);
    assert_int_equal(z.status, 0);
    assert_int_equal(z.ttl, 1);
    got_t z2 = {0};
    assert_null(tp__dns_resolve(fx->dns, "zero.test", got_cb, &z2));
    assert_true(z2.from_cache);
    assert_int_equal(logged(&main_ns, "zero.test") - zb, 2);
    close_dns(fx);

    /* With no floor, a TTL of 0 is not cached at all. */
    s.min_ttl_ms = 0;
    new_dns(fx, &s);
    got_t z3 = {0}, z4 = {0};
    resolve_wait(fx, "zero.test", &z3);
    assert_int_equal(z3.ttl, 0);
    resolve_wait(fx, "zero.test", &z4);
    assert_false(z4.from_cache);
    assert_int_equal(logged(&main_ns, "zero.test") - zb, 6);
    close_dns(fx);
}

static void test_negative_cache(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    s.negative_ttl_ms = 300;
    new_dns(fx, &s);
    int before = logged(&main_ns, "nope.test");
    got_t g = {0};
    resolve_wait(fx, "nope.test", &g);
    assert_int_equal(g.status, TP_ERR_DNS);
    assert_non_null(g.rcode);
    assert_string_equal(g.rcode, "NXDOMAIN");
    assert_int_equal(g.n, 0);
    assert_int_equal(g.ttl, 1);
    assert_int_equal(logged(&main_ns, "nope.test") - before, 2);
    got_t h = {0};
    assert_null(tp__dns_resolve(fx->dns, "nope.test", got_cb, &h));
    assert_true(h.from_cache);
    assert_int_equal(h.status, TP_ERR_DNS);
    assert_string_equal(h.rcode, "NXDOMAIN");
    assert_int_equal(logged(&main_ns, "nope.test") - before, 2);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.negative_hits, 1);
    assert_int_equal(st.failures, 0);
    wait_ms(fx, 400);
    got_t k = {0};
    resolve_wait(fx, "nope.test", &k);
    assert_false(k.from_cache);
    assert_int_equal(logged(&main_ns, "nope.test") - before, 4);

    /* NODATA: the name exists (a TXT record) but has neither A nor AAAA. */
    got_t n1 = {0}, n2 = {0};
    resolve_wait(fx, "txt.test", &n1);
    assert_int_equal(n1.status, TP_ERR_DNS);
    assert_string_equal(n1.rcode, "NODATA");
    assert_null(tp__dns_resolve(fx->dns, "txt.test", got_cb, &n2));
    assert_true(n2.from_cache);
    assert_string_equal(n2.rcode, "NODATA");
    close_dns(fx);
}

static void test_coalescing(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    new_dns(fx, &s);
    int before = logged(&main_ns, "co.test");
    got_t a = {0}, b = {0};
    tp_dns_query_t *qa = tp__dns_resolve(fx->dns, "co.test", got_cb, &a);
    tp_dns_query_t *qb = tp__dns_resolve(fx->dns, "CO.test", got_cb, &b);
    assert_non_null(qa);
    assert_non_null(qb);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.coalesced, 1);
    run_until(fx, &b.calls, 1, 10000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.n, 2);
    assert_int_equal(b.n, 2);
    assert_ip(&b.addrs[0], "::11");
    assert_ip(&b.addrs[1], "127.0.0.11");
    assert_int_equal(logged(&main_ns, "co.test") - before, 2);
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.lookups, 1);
    assert_int_equal(st.sends, 2);
    assert_int_equal(st.inflight, 0);
    close_dns(fx);
}

static void test_fallback_on_timeout(void **state) {
    fixture_t *fx = *state;
    uint16_t dead;
    fx->holes[0] = blackhole(&dead);
    char first[32];
    snprintf(first, sizeof(first), "127.0.0.1:%u", dead);
    const char *servers[] = {first, main_ns.server};
    tp_dns_settings_t s;
    settings_for(&s, servers, 2);
    s.timeout_ms = 300;
    s.attempts = 1;
    new_dns(fx, &s);
    uint64_t t0 = uv_hrtime();
    got_t g = {0};
    resolve_wait(fx, "fb.test", &g);
    uint64_t ms = (g.at_ns - t0) / 1000000;
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 1);
    assert_ip(&g.addrs[0], "127.0.0.12");
    assert_true(ms >= 250); /* the first server's timeout ... */
    assert_true(ms < 2300); /* ... and not much more */
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.timeouts, 2); /* A and AAAA each waited once */
    assert_int_equal(st.sends, 4);
    assert_int_equal(st.fallbacks, 2);
    close_dns(fx);
}

static void test_all_servers_dead(void **state) {
    fixture_t *fx = *state;
    uint16_t p1, p2;
    fx->holes[0] = blackhole(&p1);
    fx->holes[1] = blackhole(&p2);
    char s1[32], s2[32];
    snprintf(s1, sizeof(s1), "127.0.0.1:%u", p1);
    snprintf(s2, sizeof(s2), "[::ffff:127.0.0.1]:%u", p2); /* an IPv6 spelling works too */
    const char *servers[] = {s1, s2};
    tp_dns_settings_t s;
    settings_for(&s, servers, 2);
    s.timeout_ms = 100;
    s.attempts = 2;
    new_dns(fx, &s);
    uint64_t t0 = uv_hrtime();
    got_t g = {0};
    resolve_wait(fx, "dead.test", &g);
    uint64_t ms = (g.at_ns - t0) / 1000000;
    assert_int_equal(g.status, TP_ERR_TIMEOUT);
    assert_null(g.rcode);
    assert_int_equal(g.n, 0);
    /* c-ares doubles the timeout each round: 100 + 100 + 200 + 200 ms. */
    assert_true(ms >= 500);
    assert_true(ms < 3000);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.sends, 8);
    assert_int_equal(st.fallbacks, 4);
    assert_int_equal(st.timeouts, 8);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.cache_entries, 0); /* failures are not cached */
    close_dns(fx);
}

static void test_fallback_on_servfail_and_refused(void **state) {
    fixture_t *fx = *state;
    fake_t *sf = &fx->fakes[0], *rf = &fx->fakes[1];
    fake_start(&fx->loop, sf, 2); /* SERVFAIL */
    fake_start(&fx->loop, rf, 5); /* REFUSED */
    const char *servers[] = {sf->server, rf->server, main_ns.server};
    tp_dns_settings_t s;
    settings_for(&s, servers, 3);
    s.timeout_ms = 2000;
    new_dns(fx, &s);
    uint64_t t0 = uv_hrtime();
    got_t g = {0};
    resolve_wait(fx, "sf.test", &g);
    uint64_t ms = (g.at_ns - t0) / 1000000;
    assert_int_equal(g.status, 0);
    assert_ip(&g.addrs[0], "127.0.0.13");
    assert_true(ms < 1000); /* no timeout was waited for */
    assert_int_equal(sf->queries, 2);
    assert_int_equal(rf->queries, 2);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.sends, 6);
    assert_int_equal(st.fallbacks, 4);
    assert_int_equal(st.timeouts, 0);
    close_dns(fx);

    /* Every server says SERVFAIL: c-ares 1.18 reports ECONNREFUSED, the resolver the rcode. */
    const char *bad[] = {sf->server, sf->server};
    settings_for(&s, bad, 2);
    s.attempts = 1;
    new_dns(fx, &s);
    got_t h = {0};
    resolve_wait(fx, "sf.test", &h);
    assert_int_equal(h.status, TP_ERR_DNS);
    assert_non_null(h.rcode);
    assert_string_equal(h.rcode, "SERVFAIL");
    close_dns(fx);
    const char *refusing[] = {rf->server};
    settings_for(&s, refusing, 1);
    s.attempts = 1;
    new_dns(fx, &s);
    got_t k = {0};
    resolve_wait(fx, "sf.test", &k);
    assert_int_equal(k.status, TP_ERR_DNS);
    assert_string_equal(k.rcode, "REFUSED");
    close_dns(fx);
}

/* AAAA times out while A is answered: the A answer comes, cached no longer than a negative one. */
static void test_one_family_times_out(void **state) {
    fixture_t *fx = *state;
    fake_t *f = &fx->fakes[0];
    fake_start(&fx->loop, f, 0);
    f->a_only = true;
    const char *servers[] = {f->server};
    tp_dns_settings_t s;
    settings_for(&s, servers, 1);
    s.timeout_ms = 200;
    s.attempts = 1;
    s.negative_ttl_ms = 5000;
    new_dns(fx, &s);
    uint64_t t0 = uv_hrtime();
    got_t g = {0};
    resolve_wait(fx, "half.test", &g);
    assert_true((g.at_ns - t0) / 1000000 >= 150); /* it waited for the AAAA timeout */
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 1);
    assert_ip(&g.addrs[0], "127.0.0.99");
    assert_int_equal(g.ttl, 5); /* the record says 300 s */
    assert_int_equal(f->queries, 2);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.failures, 0);
    got_t h = {0};
    assert_null(tp__dns_resolve(fx->dns, "half.test", got_cb, &h));
    assert_true(h.from_cache);
    close_dns(fx);
}

/* RFC 8305 3: the A answer goes early, after the resolution delay, while the AAAA question waits
 * for its timeout; the whole answer follows. Another early caller cancels itself in its early
 * callback and hears nothing more; a plain caller gets only the whole answer. */
static void test_early_answer(void **state) {
    fixture_t *fx = *state;
    fake_t *f = &fx->fakes[0];
    fake_start(&fx->loop, f, 0);
    f->a_only = true;
    const char *servers[] = {f->server};
    tp_dns_settings_t s;
    settings_for(&s, servers, 1);
    s.timeout_ms = 400;
    s.attempts = 1;
    s.resolution_delay_ms = 100;
    new_dns(fx, &s);
    uint64_t t0 = uv_hrtime();
    got_t g = {0}, quitter = {0}, plain = {0};
    tp_dns_query_t *q = tp__dns_resolve_early(fx->dns, "half.test", got_cb, &g);
    tp_dns_query_t *qq = tp__dns_resolve_early(fx->dns, "half.test", got_cb, &quitter);
    quitter.self = &qq;
    assert_non_null(tp__dns_resolve(fx->dns, "half.test", got_cb, &plain));
    assert_non_null(q);
    run_until(fx, &g.calls, 1, 5000);
    assert_true(g.partial);
    assert_int_equal(g.n, 1);
    assert_ip(&g.addrs[0], "127.0.0.99");
    uint64_t early_ms = (g.first_ns - t0) / 1000000;
    assert_true(early_ms >= 90); /* the resolution delay ... */
    assert_true(early_ms < 350); /* ... not the AAAA timeout */
    assert_int_equal(quitter.calls, 1);
    assert_true(quitter.partial);
    assert_int_equal(plain.calls, 0);
    run_until(fx, &g.calls, 2, 5000);
    assert_false(g.partial);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.partials, 1);
    assert_true((g.at_ns - t0) / 1000000 >= 350); /* the whole answer waited for the timeout */
    assert_int_equal(plain.calls, 1);
    assert_false(plain.partial);
    assert_int_equal(quitter.calls, 1); /* it cancelled itself in its early callback */
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.early_answers, 1);
    close_dns(fx);
}

/* dnsmasq answers both at once: an A answer never goes early (the AAAA comes well within the
 * delay); an AAAA answer read first may (RFC 8305: IPv6 at once), and then the whole follows. */
static void test_no_early_answer_when_both_come(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    s.resolution_delay_ms = 1000;
    new_dns(fx, &s);
    got_t g = {0};
    assert_non_null(tp__dns_resolve_early(fx->dns, "both.test", got_cb, &g));
    run_until(fx, &g.calls, 1, 5000);
    if (g.partial) { /* the AAAA answer was read first */
        assert_int_equal(g.n, 1);
        assert_ip(&g.first_addr, "::7");
        run_until(fx, &g.calls, 2, 5000);
    }
    wait_ms(fx, 50);
    assert_false(g.partial);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.partials, g.calls - 1);
    close_dns(fx);
}

/* A real server that refuses (dnsmasq with no records and no upstream) before a good one. */
static void test_fallback_from_refusing_dnsmasq(void **state) {
    fixture_t *fx = *state;
    assert_int_equal(start_dnsmasq(&fx->extra, "refusing", NULL), 0);
    const char *servers[] = {fx->extra.server, main_ns.server};
    tp_dns_settings_t s;
    settings_for(&s, servers, 2);
    new_dns(fx, &s);
    got_t g = {0};
    resolve_wait(fx, "fb.test", &g);
    assert_int_equal(g.status, 0);
    assert_ip(&g.addrs[0], "127.0.0.12");
    assert_int_equal(logged(&fx->extra, "fb.test"), 2);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.fallbacks, 2);
    close_dns(fx);
}

static void test_nothing_listening(void **state) {
    fixture_t *fx = *state;
    char srv[32];
    snprintf(srv, sizeof(srv), "127.0.0.1:%u", free_port());
    const char *servers[] = {srv};
    tp_dns_settings_t s;
    settings_for(&s, servers, 1);
    s.timeout_ms = 200;
    s.attempts = 1;
    new_dns(fx, &s);
    got_t g = {0};
    resolve_wait(fx, "x.test", &g);
    /* ICMP port unreachable makes c-ares give up at once (ECONNREFUSED: TP_ERR_DNS, no rcode);
     * where ICMP errors are not delivered, the try times out instead. */
    assert_true(g.status == TP_ERR_DNS || g.status == TP_ERR_TIMEOUT);
    assert_null(g.rcode);
    close_dns(fx);
}

static void test_cancel(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    new_dns(fx, &s);

    /* Three waiters on one name: the first cancels the second and (a no-op) itself. */
    got_t a = {0}, b = {0}, c = {0};
    tp_dns_query_t *qa = tp__dns_resolve(fx->dns, "cx.test", got_cb, &a);
    tp_dns_query_t *qb = tp__dns_resolve(fx->dns, "cx.test", got_cb, &b);
    tp_dns_query_t *qc = tp__dns_resolve(fx->dns, "cx.test", got_cb, &c);
    assert_non_null(qa);
    assert_non_null(qb);
    assert_non_null(qc);
    a.cancel = qb;
    a.self = &qa;
    run_until(fx, &c.calls, 1, 10000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.status, 0);

    /* A cancel before the answer: no callback, but the answer still fills the cache. */
    got_t d = {0}, e = {0};
    tp_dns_query_t *qd = tp__dns_resolve(fx->dns, "cy.test", got_cb, &d);
    assert_non_null(qd);
    tp__dns_cancel(qd);
    tp__dns_cancel(NULL);
    tp_dns_stats_t st;
    do {
        uv_run(&fx->loop, UV_RUN_ONCE);
        tp__dns_stats(fx->dns, &st);
    } while (st.inflight > 0);
    assert_int_equal(d.calls, 0);
    assert_null(tp__dns_resolve(fx->dns, "cy.test", got_cb, &e));
    assert_true(e.from_cache);

    /* A callback cancels a query of another name, and starts a new resolve. */
    got_t f = {0}, g = {0}, inner = {0};
    tp__dns_flush(fx->dns);
    tp_dns_query_t *qg = tp__dns_resolve(fx->dns, "cz.test", got_cb, &g);
    f.cancel = qg;
    f.cancel_unless_answered = &g;
    f.resolve_in = fx->dns;
    f.inner = &inner;
    assert_non_null(tp__dns_resolve(fx->dns, "cy.test", got_cb, &f));
    /* cy's and cz's answers may come in either order: run until both lookups are over. */
    do {
        uv_run(&fx->loop, UV_RUN_ONCE);
        tp__dns_stats(fx->dns, &st);
    } while (f.calls == 0 || st.inflight > 0);
    assert_int_equal(f.calls, 1);
    assert_true(g.calls <= 1);  /* cancelled unless cz answered first */
    assert_non_null(f.inner_q); /* v4.test was not cached: a lookup from inside the callback */
    assert_int_equal(inner.calls, 1);
    assert_ip(&inner.addrs[0], "127.0.0.8");
    close_dns(fx);
}

static void test_close_with_waiters_and_inside_callback(void **state) {
    fixture_t *fx = *state;
    uint16_t dead;
    fx->holes[0] = blackhole(&dead);
    char first[32];
    snprintf(first, sizeof(first), "127.0.0.1:%u", dead);
    const char *servers[] = {first};
    tp_dns_settings_t s;
    settings_for(&s, servers, 1);
    new_dns(fx, &s);
    got_t a = {0};
    assert_non_null(tp__dns_resolve(fx->dns, "slow.test", got_cb, &a));
    int closed = 0;
    tp__dns_close(fx->dns, closed_cb, &closed);
    assert_int_equal(a.calls, 1); /* answered from inside the close */
    assert_int_equal(a.status, TP_ERR_CLOSED);
    assert_int_equal(closed, 0); /* the handles close later */
    fx->dns = NULL;
    run_until(fx, &closed, 1, 5000);

    /* Closing from inside an answer delivered by c-ares. */
    settings_for(&s, fx->servers, 1);
    new_dns(fx, &s);
    got_t b = {0}, c = {0};
    b.close = fx->dns;
    assert_non_null(tp__dns_resolve(fx->dns, "v4.test", got_cb, &b));
    assert_non_null(tp__dns_resolve(fx->dns, "both.test", got_cb, &c));
    run_until(fx, &b.calls, 1, 10000);
    /* both.test's waiter was answered: by the close (CLOSED) or, if it came first, by DNS. */
    assert_int_equal(c.calls, 1);
    fx->dns = NULL;
    uv_run(&fx->loop, UV_RUN_DEFAULT); /* the resolver's handles close; nothing stays */
    assert_int_equal(uv_loop_alive(&fx->loop), 0);
}

static void test_literals(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    new_dns(fx, &s);
    static const struct {
        const char *in, *ip;
    } cases[] = {{"127.0.0.1", "127.0.0.1"}, {"::1", "::1"}, {"[2001:db8::1]", "2001:db8::1"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        got_t g = {0};
        assert_null(tp__dns_resolve(fx->dns, cases[i].in, got_cb, &g));
        assert_int_equal(g.calls, 1);
        assert_int_equal(g.status, 0);
        assert_true(g.literal);
        assert_int_equal(g.n, 1);
        assert_ip(&g.addrs[0], cases[i].ip);
    }
    static const char *const bad[] = {"",      "a..b",       ".",         "foo bar",
                                      "127.1", "1.2.3.4:80", "[::1]:443", "a/b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        got_t g = {0};
        assert_null(tp__dns_resolve(fx->dns, bad[i], got_cb, &g));
        assert_int_equal(g.calls, 1);
        assert_int_equal(g.status, TP_ERR_INVAL);
    }
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    got_t g = {0};
    assert_null(tp__dns_resolve(fx->dns, longname, got_cb, &g));
    assert_int_equal(g.status, TP_ERR_INVAL);
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.literals, 3);
    assert_int_equal(st.sends, 0);
    close_dns(fx);
}

static void test_hosts_file(void **state) {
    fixture_t *fx = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/hosts", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# a comment\n10.1.2.3 Custom.Test alias.test # trailing comment\n"
          "::5\tcustom.test\nfe80::1%lo scoped.test\nnot-an-ip bogus.test\n",
          f);
    fclose(f);
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    s.use_hosts = true;
    s.hosts_path = path;
    s.hosts_check_ms = 1;
    new_dns(fx, &s);
    got_t g = {0};
    assert_null(tp__dns_resolve(fx->dns, "CUSTOM.test.", got_cb, &g));
    assert_int_equal(g.calls, 1);
    assert_true(g.from_hosts);
    assert_int_equal(g.n, 2);
    assert_ip(&g.addrs[0], "::5");
    assert_ip(&g.addrs[1], "10.1.2.3");
    got_t h = {0};
    assert_null(tp__dns_resolve(fx->dns, "alias.test", got_cb, &h));
    assert_true(h.from_hosts);
    /* Not in the file: DNS. */
    got_t k = {0};
    resolve_wait(fx, "v4.test", &k);
    assert_false(k.from_hosts);
    /* The file changes: read again (its mtime moved). */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("10.9.9.9 custom.test\n", f);
    fclose(f);
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    wait_ms(fx, 5);
    got_t m = {0};
    assert_null(tp__dns_resolve(fx->dns, "custom.test", got_cb, &m));
    assert_int_equal(m.n, 1);
    assert_ip(&m.addrs[0], "10.9.9.9");
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.hosts_hits, 3);
    close_dns(fx);

    /* use_hosts off: the name goes to DNS (where it does not exist). */
    s.use_hosts = false;
    new_dns(fx, &s);
    got_t n = {0};
    resolve_wait(fx, "custom.test", &n);
    assert_int_equal(n.status, TP_ERR_DNS);
    assert_string_equal(n.rcode, "NXDOMAIN");
    close_dns(fx);
}

static void test_system_hosts_localhost(void **state) {
    fixture_t *fx = *state;
    FILE *f = fopen("/etc/hosts", "r");
    bool listed = false;
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL, *ip = strtok_r(line, " \t\r\n", &save);
        for (char *n = ip ? strtok_r(NULL, " \t\r\n", &save) : NULL; n && !listed;
             n = strtok_r(NULL, " \t\r\n", &save))
            listed = strcasecmp(n, "localhost") == 0;
    }
    if (f)
        fclose(f);
    if (!listed) {
        print_message("skipped: /etc/hosts has no localhost entry\n");
        skip();
    }
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    s.use_hosts = true;
    new_dns(fx, &s);
    got_t g = {0};
    assert_null(tp__dns_resolve(fx->dns, "localhost", got_cb, &g));
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.status, 0);
    assert_true(g.from_hosts);
    assert_true(g.n >= 1);
    assert_true(tp_addr_is_special(&g.addrs[0])); /* loopback */
    close_dns(fx);
}

static void test_lru_and_limits(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    settings_for(&s, fx->servers, 1);
    s.cache_size = 2;
    s.max_waiters = 2;
    new_dns(fx, &s);
    int before = logged(&main_ns, "lru1.test");
    got_t g[4] = {{0}};
    resolve_wait(fx, "lru1.test", &g[0]);
    resolve_wait(fx, "lru2.test", &g[1]);
    resolve_wait(fx, "lru3.test", &g[2]); /* lru1 goes */
    tp_dns_stats_t st;
    tp__dns_stats(fx->dns, &st);
    assert_int_equal(st.cache_entries, 2);
    assert_int_equal(st.evictions, 1);
    resolve_wait(fx, "lru1.test", &g[3]); /* asked again */
    assert_false(g[3].from_cache);
    assert_int_equal(logged(&main_ns, "lru1.test") - before, 4);

    /* max_waiters: a third caller on one name in flight is turned away at once. */
    got_t a = {0}, b = {0}, c = {0};
    assert_non_null(tp__dns_resolve(fx->dns, "w.test", got_cb, &a));
    assert_non_null(tp__dns_resolve(fx->dns, "w.test", got_cb, &b));
    assert_null(tp__dns_resolve(fx->dns, "w.test", got_cb, &c));
    assert_int_equal(c.status, TP_ERR_TOO_LARGE);
    run_until(fx, &b.calls, 1, 10000);
    assert_int_equal(a.calls, 1);
    close_dns(fx);

    /* max_inflight: a second name while one is in flight. */
    s.max_inflight = 1;
    new_dns(fx, &s);
    got_t d = {0}, e = {0};
    assert_non_null(tp__dns_resolve(fx->dns, "w.test", got_cb, &d));
    assert_null(tp__dns_resolve(fx->dns, "v4.test", got_cb, &e));
    assert_int_equal(e.status, TP_ERR_TOO_LARGE);
    run_until(fx, &d.calls, 1, 10000);
    close_dns(fx);
}

static void test_bad_settings(void **state) {
    fixture_t *fx = *state;
    tp_dns_settings_t s;
    const char *bad[] = {"not-an-address"};
    settings_for(&s, bad, 1);
    tp_dns_t *dns = NULL;
    assert_int_equal(tp__dns_new(&fx->loop, &s, &dns), TP_ERR_INVAL);
    assert_null(dns);
    settings_for(&s, fx->servers, 1);
    s.attempts = 0;
    assert_int_equal(tp__dns_new(&fx->loop, &s, &dns), TP_ERR_INVAL);
    settings_for(&s, fx->servers, 1);
    s.min_ttl_ms = 10, s.max_ttl_ms = 5;
    assert_int_equal(tp__dns_new(&fx->loop, &s, &dns), TP_ERR_INVAL);
    /* System servers from a resolv.conf of our own. */
    char path[256];
    snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "nameserver 127.0.0.1\noptions rotate timeout:30 attempts:5\n");
    fclose(f);
    settings_for(&s, NULL, 0);
    s.resolv_conf = path;
    new_dns(fx, &s);
    got_t g = {0};
    assert_null(tp__dns_resolve(fx->dns, "::1", got_cb, &g));
    assert_int_equal(g.status, 0);
    close_dns(fx);
}

static int group_setup(void **state) {
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tp-dns-test.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    static const char *const records[] = {"--local=/test/",
                                          "--host-record=v4.test,127.0.0.8,300",
                                          "--host-record=both.test,127.0.0.7,::7,300",
                                          "--host-record=ttl.test,127.0.0.9,::9,1",
                                          "--host-record=zero.test,127.0.0.10,0",
                                          "--host-record=co.test,127.0.0.11,::11,300",
                                          "--host-record=fb.test,127.0.0.12,300",
                                          "--host-record=sf.test,127.0.0.13,300",
                                          "--host-record=cx.test,127.0.0.14,300",
                                          "--host-record=cy.test,127.0.0.15,300",
                                          "--host-record=cz.test,127.0.0.16,300",
                                          "--host-record=lru1.test,127.0.1.1,300",
                                          "--host-record=lru2.test,127.0.1.2,300",
                                          "--host-record=lru3.test,127.0.1.3,300",
                                          "--host-record=w.test,127.0.1.4,300",
                                          "--host-record=probe.test,127.0.1.5,300",
                                          "--txt-record=txt.test,no addresses here",
                                          NULL};
    return start_dnsmasq(&main_ns, "main", records);
}

static int group_teardown(void **state) {
    kill_child(main_ns.pid);
    for (int i = 0; i < MAX_CHILDREN; i++)
        kill_child(children[i]);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (tmpdir[0] && system(cmd) != 0)
        return -1;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aaaa_and_a_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_clamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalescing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_on_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_servers_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_on_servfail_and_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_family_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_from_refusing_dnsmasq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_early_answer_when_both_come, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_listening, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_waiters_and_inside_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_literals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hosts_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_system_hosts_localhost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_settings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
