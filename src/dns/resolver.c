/* resolver.c: the per-worker resolver: c-ares on uv_poll/uv_timer, cache, coalescing, hosts. */
#include <ares.h>
#include <errno.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dns/cache.h"
#include "dns/hosts.h"
#include "dns/resolver.h"
#include "runtime/log.h"
#include "util/hash.h"

enum { QTYPE_A = 1, QTYPE_AAAA = 28, QCLASS_IN = 1 };
enum { RCODE_SERVFAIL = 2, RCODE_NOTIMP = 4, RCODE_REFUSED = 5 };
enum { FAM6 = 0, FAM4 = 1 }; /* AAAA first: answers list IPv6 first */

typedef struct lookup lookup_t;

/* One question (AAAA or A) of a lookup, and what came back. */
typedef struct fam {
    lookup_t *lk;
    int status;     /* c-ares status once answered */
    int hint_rcode; /* the last SERVFAIL/NOTIMP/REFUSED a server sent for it (0: none) */
    size_t n;
    uint32_t ttl_s; /* the smallest record TTL */
    tp_addr_t addrs[TP_DNS_MAX_ADDRS];
} fam_t;

/* A name being looked up, with everyone waiting for it. */
struct lookup {
    tp_dns_t *dns;
    lookup_t *hnext; /* in-flight table chain */
    tp_dns_query_t *whead, *wtail;
    size_t nwaiters;
    unsigned pending; /* questions not answered yet */
    bool starting;    /* inside lookup_start: answers are kept, not delivered */
    bool done;
    /* RFC 8305 3: one family answered first: its addresses go early to the waiters that asked
     * (tp__dns_resolve_early) at early_due, unless the other answer comes first. */
    bool early_armed, early_sent;
    uint64_t early_due;
    lookup_t *enext, *eprev; /* in dns->early while armed */
    tp_dns_entry_t *entry;   /* the answer, once done */
    fam_t fam[2];
    char name[];
};

struct tp_dns_query {
    tp_dns_t *dns;
    lookup_t *lk; /* NULL while its callback runs */
    tp_dns_query_t *prev, *next;
    tp_dns_cb cb;
    void *arg;
    bool early;       /* wants an early answer of one family */
    bool got_partial; /* ... and has had it */
};

/* A socket c-ares opened through sock_funcs, and the poll handle that watches it. */
typedef struct dns_poll {
    uv_poll_t h;
    tp_dns_t *dns;
    ares_socket_t fd;
} dns_poll_t;

typedef struct dns_sock {
    struct dns_sock *next;
    ares_socket_t fd;
    int server; /* index in dns->servers, -1 when unknown */
    bool tcp;
    dns_poll_t *poll; /* NULL until c-ares wants events */
} dns_sock_t;

#define INFLIGHT_BUCKETS 256

struct tp_dns {
    uv_loop_t *loop;
    tp_dns_settings_t s;
    char *hosts_path;
    ares_channel channel;
    uv_timer_t timer;
    uv_timer_t early_timer; /* early answers due (RFC 8305 resolution delay) */
    lookup_t *early;        /* lookups with an early answer armed */
    unsigned handles;       /* open libuv handles: the two timers and the polls */
    dns_sock_t *socks;
    tp_addr_t *servers; /* in c-ares order, to tell a fallback from a first try */
    size_t nservers;
    tp_dns_cache_t cache;
    tp_hosts_t *hosts;
    uint64_t hosts_checked;
    lookup_t *inflight[INFLIGHT_BUCKETS];
    size_t ninflight;
    tp_dns_stats_t st;
    unsigned depth; /* calls into c-ares on the stack */
    bool closing;   /* tp__dns_close() was called */
    bool destroyed; /* the channel is gone */
    void (*closed)(void *arg);
    void *closed_arg;
};

/* ---- settings ---- */

void tp__dns_settings_default(tp_dns_settings_t *s) {
    *s = (tp_dns_settings_t){
        .timeout_ms = 2000,
        .attempts = 2,
        .min_ttl_ms = 1000,
        .max_ttl_ms = 3600000,
        .negative_ttl_ms = 30000,
        .cache_size = 10000,
        .max_waiters = 1024,
        .max_inflight = 4096,
        .use_hosts = true,
        .hosts_check_ms = 5000,
        .resolution_delay_ms = 50,
    };
}

/* ---- names ---- */

static uint64_t hash_name(const char *s) { return tp__fnv1a_str(TP_FNV1A_INIT, s); }

/* An IP literal ("1.2.3.4", "::1", "[::1]", "fe80::1%lo") without a port. */
static bool parse_literal(const char *host, tp_addr_t *out) {
    if (tp_addr_parse(out, host, true) != 0 || tp_addr_port(out) != 0)
        return false;
    size_t len = strlen(host);
    if (out->u.sa.sa_family == AF_INET)
        return strchr(host, ':') == NULL;
    return host[0] != '[' || host[len - 1] == ']';
}

/*
 * Lower-cases `host` into out (256 bytes) without its trailing dot. Host names only: letters,
 * digits, '-' and '_' in labels of 1 to 63 bytes, 253 bytes in all. A name whose last label is
 * all digits is refused: it is neither a host name nor (here) an address, and resolving "127.1"
 * through DNS would surprise whoever wrote it as an address.
 */
static bool normalize(const char *host, char *out) {
    size_t len = strlen(host);
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    bool digits_only = true;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            digits_only = true;
            out[i] = c;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
        if (c < '0' || c > '9')
            digits_only = false;
        if (++label > 63)
            return false;
        out[i] = c;
    }
    out[len] = '\0';
    return label > 0 && !digits_only;
}

/* ---- the in-flight table ---- */

static lookup_t *inflight_find(tp_dns_t *dns, const char *name) {
    lookup_t *lk = dns->inflight[hash_name(name) % INFLIGHT_BUCKETS];
    while (lk && strcmp(lk->name, name) != 0)
        lk = lk->hnext;
    return lk;
}

static void inflight_remove(tp_dns_t *dns, lookup_t *lk) {
    lookup_t **pp = &dns->inflight[hash_name(lk->name) % INFLIGHT_BUCKETS];
    while (*pp && *pp != lk)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = lk->hnext;
        dns->ninflight--;
    }
    lk->hnext = NULL;
}

/* ---- answers ---- */

static uint32_t ms_to_s(uint64_t ms) {
    uint64_t s = (ms + 999) / 1000;
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static tp_dns_result_t result_of(tp_dns_entry_t *e) {
    return (tp_dns_result_t){.entry = e->naddrs ? e : NULL,
                             .status = e->status,
                             .rcode = e->rcode,
                             .detail = e->detail,
                             .addrs = e->naddrs ? e->addrs : NULL,
                             .naddrs = e->naddrs,
                             .ttl_s = e->ttl_s};
}

static void answer_now(tp_dns_cb cb, void *arg, int status, const char *detail) {
    tp_dns_result_t r = {.status = status, .detail = detail};
    cb(arg, &r);
}

static const char *rcode_name(int rcode) {
    switch (rcode) {
    case RCODE_SERVFAIL: return "SERVFAIL";
    case RCODE_NOTIMP: return "NOTIMP";
    case RCODE_REFUSED: return "REFUSED";
    default: return NULL;
    }
}

static int rcode_status(int rcode) {
    switch (rcode) {
    case RCODE_SERVFAIL: return ARES_ESERVFAIL;
    case RCODE_NOTIMP: return ARES_ENOTIMP;
    default: return ARES_EREFUSED;
    }
}

/*
 * Translates a failed question. c-ares 1.18 moves on to the next server after SERVFAIL, NOTIMP or
 * REFUSED and, when every try failed, reports only ECONNREFUSED (or ETIMEOUT if one try timed
 * out): the rcode is lost. The rcode the servers sent is sniffed from the packets instead (see
 * sock_recvfrom), and an answer beats silence: a server's SERVFAIL is reported over another's
 * timeout.
 */
static void map_failure(const fam_t *f, int *status, const char **rcode, const char **detail) {
    *rcode = NULL;
    *detail = ares_strerror(f->status);
    switch (f->status) {
    case ARES_ENOTFOUND: *status = TP_ERR_DNS, *rcode = "NXDOMAIN"; return;
    case ARES_ENODATA: *status = TP_ERR_DNS, *rcode = "NODATA"; return;
    case ARES_ESERVFAIL: *status = TP_ERR_DNS, *rcode = "SERVFAIL"; return;
    case ARES_EREFUSED: *status = TP_ERR_DNS, *rcode = "REFUSED"; return;
    case ARES_ENOTIMP: *status = TP_ERR_DNS, *rcode = "NOTIMP"; return;
    case ARES_EFORMERR: *status = TP_ERR_DNS, *rcode = "FORMERR"; return;
    case ARES_EBADRESP: *status = TP_ERR_DNS, *rcode = "BADRESP"; return;
    case ARES_ENOMEM: *status = TP_ERR_NOMEM; return;
    case ARES_EBADNAME:
    case ARES_EBADQUERY: *status = TP_ERR_INVAL; return;
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED: *status = TP_ERR_CLOSED; return;
    case ARES_ETIMEOUT:
    case ARES_ECONNREFUSED:
        if (f->hint_rcode) {
            *status = TP_ERR_DNS;
            *rcode = rcode_name(f->hint_rcode);
            *detail = ares_strerror(rcode_status(f->hint_rcode));
        } else {
            *status = f->status == ARES_ETIMEOUT ? TP_ERR_TIMEOUT : TP_ERR_DNS;
        }
        return;
    default: *status = TP_ERR_DNS; return;
    }
}

static bool fam_ok(const fam_t *f) { return f->status == ARES_SUCCESS && f->n > 0; }
static bool fam_negative(const fam_t *f) {
    return f->status == ARES_ENOTFOUND || f->status == ARES_ENODATA;
}

/* Merges the two questions into one answer, with how long it may be cached (0: not at all). */
static tp_dns_entry_t *merge(tp_dns_t *dns, lookup_t *lk, uint64_t *keep_ms) {
    const fam_t *f6 = &lk->fam[FAM6], *f4 = &lk->fam[FAM4];
    tp_addr_t all[(size_t)2 * TP_DNS_MAX_ADDRS];
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (fam_ok(&lk->fam[i])) {
            memcpy(all + n, lk->fam[i].addrs, lk->fam[i].n * sizeof(tp_addr_t));
            n += lk->fam[i].n;
        }
    tp_dns_entry_t *e = tp__dns_entry_new(lk->name, all, n);
    if (!e)
        return NULL;
    *keep_ms = 0;
    if (n > 0) {
        uint32_t ttl = UINT32_MAX;
        for (int i = 0; i < 2; i++)
            if (fam_ok(&lk->fam[i]) && lk->fam[i].ttl_s < ttl)
                ttl = lk->fam[i].ttl_s;
        uint64_t ms = (uint64_t)ttl * 1000;
        if (ms < dns->s.min_ttl_ms)
            ms = dns->s.min_ttl_ms;
        if (ms > dns->s.max_ttl_ms)
            ms = dns->s.max_ttl_ms;
        /* One family failed: keep the half answer no longer than a negative one, so the
         * other family is asked again soon. */
        if ((!fam_ok(f6) && !fam_negative(f6)) || (!fam_ok(f4) && !fam_negative(f4)))
            ms = ms < dns->s.negative_ttl_ms ? ms : dns->s.negative_ttl_ms;
        *keep_ms = ms;
        if (dns->s.ext_size) {
            e->ext = calloc(1, dns->s.ext_size);
            e->ext_free = dns->s.ext_free;
            if (e->ext && dns->s.ext_init)
                dns->s.ext_init(e->ext, e);
        }
        return e;
    }
    e->status = TP_ERR_DNS;
    if (f6->status == ARES_ENOTFOUND || f4->status == ARES_ENOTFOUND) {
        /* NXDOMAIN is about the name, whatever the type: it wins over the other's failure. */
        e->rcode = "NXDOMAIN";
        e->detail = ares_strerror(ARES_ENOTFOUND);
        *keep_ms = dns->s.negative_ttl_ms;
        return e;
    }
    if (fam_negative(f6) && fam_negative(f4)) { /* both NODATA (or a CNAME leading nowhere) */
        e->rcode = "NODATA";
        e->detail = ares_strerror(ARES_ENODATA);
        *keep_ms = dns->s.negative_ttl_ms;
        return e;
    }
    /* A failure (no address, no NXDOMAIN): report a family that failed, one a server answered
     * over one that got silence, A over AAAA otherwise. */
    int st6 = 0, st4 = 0;
    const char *rc6 = NULL, *rc4 = NULL, *d6 = "", *d4 = "";
    bool bad6 = !fam_negative(f6), bad4 = !fam_negative(f4);
    if (bad6)
        map_failure(f6, &st6, &rc6, &d6);
    if (bad4)
        map_failure(f4, &st4, &rc4, &d4);
    bool six = !bad4 || (rc6 && !rc4);
    e->status = six ? st6 : st4;
    e->rcode = six ? rc6 : rc4;
    e->detail = six ? d6 : d4;
    dns->st.failures++;
    return e;
}

/* Removes q from its lookup's waiters. */
static void waiter_unlink(lookup_t *lk, tp_dns_query_t *q) {
    if (q->prev)
        q->prev->next = q->next;
    else
        lk->whead = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        lk->wtail = q->prev;
    q->prev = q->next = NULL;
    q->lk = NULL;
    lk->nwaiters--;
}

static void waiter_link(lookup_t *lk, tp_dns_query_t *q) {
    q->lk = lk;
    q->next = NULL;
    q->prev = lk->wtail;
    if (lk->wtail)
        lk->wtail->next = q;
    else
        lk->whead = q;
    lk->wtail = q;
    lk->nwaiters++;
}

/* Answers every waiter, one at a time: a callback may cancel the ones after it. */
static void deliver(lookup_t *lk, const tp_dns_result_t *r) {
    tp_dns_query_t *q;
    while ((q = lk->whead)) {
        lk->whead = q->next;
        if (lk->whead)
            lk->whead->prev = NULL;
        else
            lk->wtail = NULL;
        lk->nwaiters--;
        q->next = NULL;
        q->lk = NULL; /* a cancel from inside the callback does nothing */
        q->cb(q->arg, r);
        free(q);
    }
}

/* ---- early answers (RFC 8305 3) ---- */

static void enter(tp_dns_t *dns);
static void leave(tp_dns_t *dns);

static void early_unlink(lookup_t *lk) {
    if (!lk->early_armed)
        return;
    if (lk->eprev)
        lk->eprev->enext = lk->enext;
    else
        lk->dns->early = lk->enext;
    if (lk->enext)
        lk->enext->eprev = lk->eprev;
    lk->enext = lk->eprev = NULL;
    lk->early_armed = false;
}

static void early_timer_cb(uv_timer_t *t);

/* Makes the early timer fire no later than the first early answer due. */
static void early_rearm(tp_dns_t *dns) {
    if (dns->destroyed)
        return;
    uint64_t due = UINT64_MAX;
    for (lookup_t *lk = dns->early; lk; lk = lk->enext)
        if (lk->early_due < due)
            due = lk->early_due;
    if (due == UINT64_MAX) {
        uv_timer_stop(&dns->early_timer);
        return;
    }
    uint64_t now = uv_now(dns->loop);
    uv_timer_start(&dns->early_timer, early_timer_cb, due > now ? due - now : 0, 0);
}

/* One family answered with addresses and the other has not: arm the early answer, at once for
 * IPv6 and after the resolution delay for IPv4 (RFC 8305 3), if anyone waits for one. */
static void early_arm(lookup_t *lk, const fam_t *f) {
    tp_dns_t *dns = lk->dns;
    if (lk->early_armed || lk->early_sent || lk->starting || dns->closing)
        return;
    bool wanted = false;
    for (tp_dns_query_t *q = lk->whead; q && !wanted; q = q->next)
        wanted = q->early;
    if (!wanted)
        return;
    lk->early_due = uv_now(dns->loop) + (f == &lk->fam[FAM6] ? 0 : dns->s.resolution_delay_ms);
    lk->early_armed = true;
    lk->eprev = NULL;
    lk->enext = dns->early;
    if (dns->early)
        dns->early->eprev = lk;
    dns->early = lk;
    early_rearm(dns);
}

/* Hands the family that answered to every waiter that asked for an early answer. They stay
 * waiters: the full answer follows. */
static void early_deliver(lookup_t *lk) {
    tp_addr_t addrs[TP_DNS_MAX_ADDRS];
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (fam_ok(&lk->fam[i]))
            for (size_t j = 0; j < lk->fam[i].n && n < TP_DNS_MAX_ADDRS; j++)
                addrs[n++] = lk->fam[i].addrs[j];
    tp_dns_result_t r = {.detail = "", .addrs = addrs, .naddrs = n, .partial = true};
    lk->early_sent = true;
    lk->dns->st.early_answers++;
    /* From the head each time: a callback may cancel any waiter, itself included. */
    for (;;) {
        tp_dns_query_t *q = lk->whead;
        while (q && (!q->early || q->got_partial))
            q = q->next;
        if (!q)
            break;
        q->got_partial = true;
        q->cb(q->arg, &r);
    }
}

static void early_timer_cb(uv_timer_t *t) {
    tp_dns_t *dns = t->data;
    if (dns->destroyed)
        return;
    enter(dns); /* a close from a callback waits: no lookup is freed under this loop */
    for (;;) {
        uint64_t now = uv_now(dns->loop);
        lookup_t *lk = dns->early;
        while (lk && lk->early_due > now)
            lk = lk->enext;
        if (!lk || dns->closing)
            break;
        early_unlink(lk);
        early_deliver(lk);
    }
    leave(dns);
    early_rearm(dns);
}

static void lookup_free(lookup_t *lk) {
    tp__dns_entry_unref(lk->entry);
    free(lk);
}

static void lookup_finish(lookup_t *lk) {
    tp_dns_t *dns = lk->dns;
    inflight_remove(dns, lk);
    early_unlink(lk);
    uint64_t keep_ms = 0;
    lk->entry = merge(dns, lk, &keep_ms);
    lk->done = true;
    if (lk->entry) {
        lk->entry->ttl_s = keep_ms ? ms_to_s(keep_ms) : 0;
        if (keep_ms && !dns->closing) {
            lk->entry->expires = uv_now(dns->loop) + keep_ms;
            tp__dns_cache_put(&dns->cache, lk->entry);
        }
    }
    if (lk->starting)
        return; /* tp__dns_resolve() answers its caller */
    if (lk->entry) {
        tp_dns_result_t r = result_of(lk->entry);
        deliver(lk, &r);
    } else {
        tp_dns_result_t r = {.status = TP_ERR_NOMEM, .detail = "out of memory"};
        deliver(lk, &r);
    }
    lookup_free(lk);
}

static void answer_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen) {
    fam_t *f = arg;
    lookup_t *lk = f->lk;
    tp_dns_t *dns = lk->dns;
    dns->st.timeouts += (uint64_t)timeouts;
    f->status = status;
    if (status == ARES_SUCCESS) {
        int n = TP_DNS_MAX_ADDRS;
        int rc;
        uint32_t ttl = UINT32_MAX;
        if (f == &lk->fam[FAM4]) {
            struct ares_addrttl t[TP_DNS_MAX_ADDRS];
            rc = ares_parse_a_reply(abuf, alen, NULL, t, &n);
            for (int i = 0; rc == ARES_SUCCESS && i < n; i++) {
                tp_addr_t *a = &f->addrs[i];
                memset(a, 0, sizeof(*a));
                a->u.in.sin_family = AF_INET;
                a->u.in.sin_addr = t[i].ipaddr;
                if (t[i].ttl >= 0 && (uint32_t)t[i].ttl < ttl)
                    ttl = (uint32_t)t[i].ttl;
            }
        } else {
            struct ares_addr6ttl t[TP_DNS_MAX_ADDRS];
            rc = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
            for (int i = 0; rc == ARES_SUCCESS && i < n; i++) {
                tp_addr_t *a = &f->addrs[i];
                memset(a, 0, sizeof(*a));
                a->u.in6.sin6_family = AF_INET6;
                memcpy(&a->u.in6.sin6_addr, t[i].ip6addr._S6_un._S6_u8, 16);
                if (t[i].ttl >= 0 && (uint32_t)t[i].ttl < ttl)
                    ttl = (uint32_t)t[i].ttl;
            }
        }
        if (rc == ARES_SUCCESS && n == 0)
            rc = ARES_ENODATA; /* a CNAME chain that ends without an address */
        f->status = rc;
        f->n = rc == ARES_SUCCESS ? (size_t)n : 0;
        f->ttl_s = ttl;
    }
    if (--lk->pending == 0)
        lookup_finish(lk);
    else if (fam_ok(f))
        early_arm(lk, f);
}

/* ---- c-ares' clock and sockets on the loop ---- */

static void timer_cb(uv_timer_t *t);

static void arm_timer(tp_dns_t *dns) {
    struct timeval tv;
    struct timeval *left = ares_timeout(dns->channel, NULL, &tv);
    if (!left) {
        uv_timer_stop(&dns->timer);
        return;
    }
    uint64_t ms = (uint64_t)left->tv_sec * 1000 + ((uint64_t)left->tv_usec + 999) / 1000;
    uv_timer_start(&dns->timer, timer_cb, ms, 0);
}

static void destroy_channel(tp_dns_t *dns);

static void enter(tp_dns_t *dns) { dns->depth++; }

/* Leaves a call into c-ares: the outermost one re-arms the timer, or finishes a close asked for
 * from a callback (ares_destroy() must not run inside c-ares). */
static void leave(tp_dns_t *dns) {
    if (--dns->depth > 0 || dns->destroyed)
        return;
    if (dns->closing)
        destroy_channel(dns);
    else
        arm_timer(dns);
}

static void timer_cb(uv_timer_t *t) {
    tp_dns_t *dns = t->data;
    if (dns->destroyed)
        return;
    enter(dns);
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    leave(dns);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
    dns_poll_t *p = (dns_poll_t *)h;
    tp_dns_t *dns = p->dns;
    if (dns->destroyed)
        return;
    ares_socket_t r = ARES_SOCKET_BAD, w = ARES_SOCKET_BAD;
    if (status < 0 || (events & (UV_READABLE | UV_DISCONNECT)))
        r = p->fd; /* on an error the read sees it and c-ares moves on */
    if (events & UV_WRITABLE)
        w = p->fd;
    enter(dns);
    ares_process_fd(dns->channel, r, w);
    leave(dns);
}

static void maybe_finish(tp_dns_t *dns);

static void poll_closed(uv_handle_t *h) {
    tp_dns_t *dns = ((dns_poll_t *)h)->dns;
    free(h);
    dns->handles--;
    maybe_finish(dns);
}

static dns_sock_t *find_sock(tp_dns_t *dns, ares_socket_t fd) {
    dns_sock_t *s = dns->socks;
    while (s && s->fd != fd)
        s = s->next;
    return s;
}

static void close_poll(dns_sock_t *s) {
    if (!s->poll)
        return;
    uv_close((uv_handle_t *)&s->poll->h, poll_closed);
    s->poll = NULL;
}

/* c-ares says which events it wants on a socket; (0, 0) comes right before it closes it. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable) {
    tp_dns_t *dns = data;
    dns_sock_t *s = find_sock(dns, fd);
    if (!s)
        return;
    if (!readable && !writable) {
        close_poll(s);
        return;
    }
    if (!s->poll) {
        dns_poll_t *p = malloc(sizeof(*p));
        int rc = p ? uv_poll_init_socket(dns->loop, &p->h, fd) : UV_ENOMEM;
        if (rc != 0) { /* the question times out and moves on: nothing else can be done here */
            free(p);
            tp__log_msg(TP_LOG_WARN, "dns socket not watched", "%s", uv_strerror(rc));
            return;
        }
        p->dns = dns;
        p->fd = fd;
        dns->handles++;
        s->poll = p;
    }
    uv_poll_start(&s->poll->h, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                  poll_cb);
}

/*
 * c-ares' socket calls go through these (ares_set_socket_functions) so the resolver sees what it
 * needs for its counters and errors: which server a socket talks to, each query written, and the
 * rcode of a refusal that c-ares would otherwise swallow. c-ares does not configure sockets it
 * did not open itself, so they are made non-blocking and close-on-exec here.
 */
static ares_socket_t sock_open(int af, int type, int proto, void *data) {
    tp_dns_t *dns = data;
    dns_sock_t *s = calloc(1, sizeof(*s));
    if (!s) {
        errno = ENOMEM;
        return ARES_SOCKET_BAD;
    }
    int fd = socket(af, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0) {
        free(s);
        return ARES_SOCKET_BAD;
    }
    if (type == SOCK_STREAM) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    s->fd = fd;
    s->server = -1;
    s->tcp = type == SOCK_STREAM;
    s->next = dns->socks;
    dns->socks = s;
    return fd;
}

static int sock_close(ares_socket_t fd, void *data) {
    tp_dns_t *dns = data;
    for (dns_sock_t **pp = &dns->socks; *pp; pp = &(*pp)->next)
        if ((*pp)->fd == fd) {
            dns_sock_t *s = *pp;
            *pp = s->next;
            close_poll(s); /* normally done already by the (0, 0) state callback */
            free(s);
            break;
        }
    return close(fd);
}

static int sock_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len,
                        void *data) {
    tp_dns_t *dns = data;
    dns_sock_t *s = find_sock(dns, fd);
    if (s && len <= sizeof(tp_addr_t)) {
        tp_addr_t a;
        memset(&a, 0, sizeof(a));
        memcpy(&a.u, sa, len);
        for (size_t i = 0; i < dns->nservers; i++)
            if (tp_addr_eq(&a, &dns->servers[i])) {
                s->server = (int)i;
                break;
            }
    }
    return connect(fd, sa, len);
}

/* Notes the rcode of a SERVFAIL, NOTIMP or REFUSED answer on its question (UDP only). */
static void sniff_refusal(tp_dns_t *dns, const unsigned char *p, size_t n) {
    if (n < 12 || !(p[2] & 0x80) || p[4] != 0 || p[5] != 1)
        return;
    int rcode = p[3] & 0x0f;
    if (rcode != RCODE_SERVFAIL && rcode != RCODE_NOTIMP && rcode != RCODE_REFUSED)
        return;
    char name[256];
    size_t off = 12, len = 0;
    for (;;) {
        if (off >= n)
            return;
        size_t l = p[off++];
        if (l == 0)
            break;
        if (l > 63 || off + l > n || len + l + 1 >= sizeof(name))
            return; /* compression pointers never start a question */
        if (len)
            name[len++] = '.';
        for (size_t i = 0; i < l; i++) {
            char c = (char)p[off + i];
            name[len++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        off += l;
    }
    name[len] = '\0';
    if (off + 4 > n)
        return;
    unsigned qtype = (unsigned)p[off] << 8 | p[off + 1];
    lookup_t *lk = inflight_find(dns, name);
    if (!lk || (qtype != QTYPE_A && qtype != QTYPE_AAAA))
        return;
    lk->fam[qtype == QTYPE_A ? FAM4 : FAM6].hint_rcode = rcode;
}

static ares_ssize_t sock_recvfrom(ares_socket_t fd, void *buf, size_t len, int flags,
                                  struct sockaddr *from, ares_socklen_t *fromlen, void *data) {
    tp_dns_t *dns = data;
    ssize_t n = recvfrom(fd, buf, len, flags, from, fromlen);
    if (n > 0 && from) { /* c-ares passes an address for UDP only (TCP is read in pieces) */
        int saved = errno;
        sniff_refusal(dns, buf, (size_t)n);
        errno = saved;
    }
    return n;
}

static ares_ssize_t sock_sendv(ares_socket_t fd, const struct iovec *iov, int n, void *data) {
    tp_dns_t *dns = data;
    ssize_t w = writev(fd, iov, n);
    if (w >= 0) {
        dns_sock_t *s = find_sock(dns, fd);
        dns->st.sends++;
        if (s && s->server > 0)
            dns->st.fallbacks++;
    }
    return w;
}

static const struct ares_socket_functions sock_funcs = {
    .asocket = sock_open,
    .aclose = sock_close,
    .aconnect = sock_connect,
    .arecvfrom = sock_recvfrom,
    .asendv = sock_sendv,
};

/* ---- life ---- */

static void free_all(tp_dns_t *dns) {
    tp__dns_cache_free(&dns->cache);
    tp__hosts_del(dns->hosts);
    free(dns->servers);
    free(dns->hosts_path);
    while (dns->socks) {
        dns_sock_t *s = dns->socks;
        dns->socks = s->next;
        free(s);
    }
    free(dns);
}

static void maybe_finish(tp_dns_t *dns) {
    if (!dns->destroyed || dns->handles > 0)
        return;
    void (*closed)(void *) = dns->closed;
    void *arg = dns->closed_arg;
    free_all(dns);
    if (closed)
        closed(arg);
}

static void timer_closed(uv_handle_t *h) {
    tp_dns_t *dns = h->data;
    dns->handles--;
    maybe_finish(dns);
}

/* Ends the channel: its questions end with ARES_EDESTRUCTION, its sockets close. */
static void destroy_channel(tp_dns_t *dns) {
    dns->depth++; /* answer_cb may run: keep leave() from coming back here */
    ares_destroy(dns->channel);
    dns->depth--;
    dns->destroyed = true;
    dns->channel = NULL;
    uv_close((uv_handle_t *)&dns->timer, timer_closed);
    uv_close((uv_handle_t *)&dns->early_timer, timer_closed);
}

static int parse_servers(tp_dns_t *dns, const tp_dns_settings_t *s,
                         struct ares_addr_port_node *nodes) {
    for (size_t i = 0; i < s->nservers; i++) {
        tp_addr_t *a = &dns->servers[i];
        if (!s->servers[i] || tp_addr_parse(a, s->servers[i], true) != 0)
            return TP_ERR_INVAL;
        if (tp_addr_port(a) == 0)
            tp_addr_set_port(a, 53);
        struct ares_addr_port_node *n = &nodes[i];
        memset(n, 0, sizeof(*n));
        n->next = i + 1 < s->nservers ? &nodes[i + 1] : NULL;
        n->family = a->u.sa.sa_family;
        if (n->family == AF_INET)
            n->addr.addr4 = a->u.in.sin_addr;
        else
            memcpy(n->addr.addr6._S6_un._S6_u8, &a->u.in6.sin6_addr, 16);
        n->udp_port = n->tcp_port = tp_addr_port(a);
    }
    dns->nservers = s->nservers;
    return 0;
}

/* The servers c-ares took from resolv.conf, to tell first tries from fallbacks. */
static int system_servers(tp_dns_t *dns) {
    struct ares_addr_port_node *list = NULL;
    if (ares_get_servers_ports(dns->channel, &list) != ARES_SUCCESS)
        return TP_ERR_NOMEM;
    size_t n = 0;
    for (struct ares_addr_port_node *p = list; p; p = p->next)
        n++;
    dns->servers = calloc(n ? n : 1, sizeof(tp_addr_t));
    if (!dns->servers) {
        ares_free_data(list);
        return TP_ERR_NOMEM;
    }
    for (struct ares_addr_port_node *p = list; p; p = p->next) {
        tp_addr_t *a = &dns->servers[dns->nservers];
        if (p->family == AF_INET) {
            a->u.in.sin_family = AF_INET;
            a->u.in.sin_addr = p->addr.addr4;
        } else if (p->family == AF_INET6) {
            a->u.in6.sin6_family = AF_INET6;
            memcpy(&a->u.in6.sin6_addr, p->addr.addr6._S6_un._S6_u8, 16);
        } else {
            continue;
        }
        tp_addr_set_port(a, p->udp_port ? (uint16_t)p->udp_port : 53);
        dns->nservers++;
    }
    ares_free_data(list);
    return 0;
}

static int check_settings(const tp_dns_settings_t *s) {
    if (s->timeout_ms == 0 || s->timeout_ms > INT_MAX / 64 || s->attempts < 1 || s->attempts > 16 ||
        s->min_ttl_ms > s->max_ttl_ms || s->max_waiters == 0 || s->max_inflight == 0 ||
        (s->nservers && !s->servers))
        return TP_ERR_INVAL;
    return 0;
}

int tp__dns_new(uv_loop_t *loop, const tp_dns_settings_t *settings, tp_dns_t **out) {
    *out = NULL;
    tp_dns_settings_t defaults;
    tp__dns_settings_default(&defaults);
    const tp_dns_settings_t *s = settings ? settings : &defaults;
    int rc = check_settings(s);
    if (rc != 0)
        return rc;
    tp_dns_t *dns = calloc(1, sizeof(*dns));
    if (!dns)
        return TP_ERR_NOMEM;
    dns->loop = loop;
    dns->s = *s;
    dns->s.servers = NULL; /* not kept: parsed below */
    dns->s.resolv_conf = NULL;
    dns->hosts_path = strdup(s->hosts_path ? s->hosts_path : "/etc/hosts");
    if (!dns->hosts_path || tp__dns_cache_init(&dns->cache, s->cache_size) != 0) {
        free_all(dns);
        return TP_ERR_NOMEM;
    }
    struct ares_addr_port_node *nodes = NULL;
    if (s->nservers) {
        dns->servers = calloc(s->nservers, sizeof(tp_addr_t));
        nodes = calloc(s->nservers, sizeof(*nodes));
        rc = !dns->servers || !nodes ? TP_ERR_NOMEM : parse_servers(dns, s, nodes);
        if (rc != 0) {
            free(nodes);
            free_all(dns);
            return rc;
        }
    }
    if (s->use_hosts) {
        rc = tp__hosts_load(dns->hosts_path, &dns->hosts);
        if (rc != 0) {
            free(nodes);
            free_all(dns);
            return rc;
        }
    }
    dns->hosts_checked = uv_now(loop);

    /* No NOCHECKRESP: SERVFAIL, NOTIMP and REFUSED move a question on to the next server. No
     * rotation: the first server is asked first, the others are fallbacks. */
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NOROTATE |
               ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS | ARES_OPT_EDNSPSZ;
    o.flags = ARES_FLAG_EDNS | ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    o.timeout = (int)s->timeout_ms;
    o.tries = s->attempts;
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = dns;
    o.lookups = (char *)"b"; /* the hosts file is read here, not by c-ares */
    o.ednspsz = 1232;        /* fits any path's MTU (DNS flag day 2020) */
    if (s->resolv_conf) {
        o.resolvconf_path = (char *)s->resolv_conf;
        mask |= ARES_OPT_RESOLVCONF;
    }
    int ar = ares_init_options(&dns->channel, &o, mask);
    if (ar == ARES_SUCCESS && nodes)
        ar = ares_set_servers_ports(dns->channel, nodes);
    free(nodes);
    if (ar != ARES_SUCCESS) {
        tp__log_msg(TP_LOG_ERROR, "dns resolver not started", "c-ares: %s", ares_strerror(ar));
        if (dns->channel)
            ares_destroy(dns->channel);
        free_all(dns);
        return ar == ARES_ENOMEM ? TP_ERR_NOMEM : TP_ERR_CONFIG;
    }
    ares_set_socket_functions(dns->channel, &sock_funcs, dns);
    if (!s->nservers && (rc = system_servers(dns)) != 0) {
        ares_destroy(dns->channel);
        free_all(dns);
        return rc;
    }
    uv_timer_init(loop, &dns->timer);
    dns->timer.data = dns;
    uv_timer_init(loop, &dns->early_timer);
    dns->early_timer.data = dns;
    dns->handles = 2;
    *out = dns;
    return 0;
}

void tp__dns_close(tp_dns_t *dns, void (*closed)(void *arg), void *arg) {
    if (dns->closing)
        return;
    dns->closing = true;
    dns->closed = closed;
    dns->closed_arg = arg;
    /* Lookups stay in the table until c-ares answers them, which cannot happen in here: walking
     * it is safe while callbacks cancel waiters. */
    tp_dns_result_t r = {.status = TP_ERR_CLOSED, .detail = "resolver closed"};
    for (size_t b = 0; b < INFLIGHT_BUCKETS; b++)
        for (lookup_t *lk = dns->inflight[b]; lk; lk = lk->hnext)
            deliver(lk, &r);
    if (dns->depth == 0)
        destroy_channel(dns);
}

/* ---- resolving ---- */

static void maybe_reload_hosts(tp_dns_t *dns) {
    uint64_t now = uv_now(dns->loop);
    if (dns->s.hosts_check_ms == 0 || now - dns->hosts_checked < dns->s.hosts_check_ms)
        return;
    dns->hosts_checked = now;
    struct stat st;
    int64_t mtime = 0;
    if (stat(dns->hosts_path, &st) == 0)
        mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (mtime == tp__hosts_mtime_ns(dns->hosts))
        return;
    tp_hosts_t *h = NULL;
    if (tp__hosts_load(dns->hosts_path, &h) == 0) { /* on failure the old table stays */
        tp__hosts_del(dns->hosts);
        dns->hosts = h;
    }
}

/* Starts the AAAA and A questions. NULL when out of memory. */
static lookup_t *lookup_start(tp_dns_t *dns, const char *name) {
    size_t len = strlen(name);
    lookup_t *lk = calloc(1, sizeof(*lk) + len + 1);
    if (!lk)
        return NULL;
    memcpy(lk->name, name, len + 1);
    lk->dns = dns;
    lk->fam[FAM6].lk = lk->fam[FAM4].lk = lk;
    lookup_t **bucket = &dns->inflight[hash_name(name) % INFLIGHT_BUCKETS];
    lk->hnext = *bucket;
    *bucket = lk;
    dns->ninflight++;
    dns->st.lookups++;
    dns->st.questions += 2;
    lk->pending = 2;
    lk->starting = true;
    enter(dns);
    ares_query(dns->channel, name, QCLASS_IN, QTYPE_AAAA, answer_cb, &lk->fam[FAM6]);
    ares_query(dns->channel, name, QCLASS_IN, QTYPE_A, answer_cb, &lk->fam[FAM4]);
    lk->starting = false;
    leave(dns);
    return lk;
}

static tp_dns_query_t *resolve(tp_dns_t *dns, const char *host, bool early, tp_dns_cb cb,
                               void *arg) {
    dns->st.resolves++;
    if (dns->closing) {
        answer_now(cb, arg, TP_ERR_CLOSED, "resolver closed");
        return NULL;
    }
    tp_addr_t lit;
    if (host && parse_literal(host, &lit)) {
        dns->st.literals++;
        tp_dns_result_t r = {.detail = "", .addrs = &lit, .naddrs = 1, .literal = true};
        cb(arg, &r);
        return NULL;
    }
    char name[256];
    if (!host || !normalize(host, name)) {
        answer_now(cb, arg, TP_ERR_INVAL, "not a host name");
        return NULL;
    }
    if (dns->s.use_hosts) {
        maybe_reload_hosts(dns);
        tp_addr_t found[(size_t)2 * TP_DNS_MAX_ADDRS];
        size_t n = tp__hosts_find(dns->hosts, name, found, (size_t)2 * TP_DNS_MAX_ADDRS);
        if (n > 0) {
            dns->st.hosts_hits++;
            tp_dns_result_t r = {.detail = "", .addrs = found, .naddrs = n, .from_hosts = true};
            cb(arg, &r);
            return NULL;
        }
    }
    uint64_t now = uv_now(dns->loop);
    tp_dns_entry_t *e = tp__dns_cache_get(&dns->cache, name, now);
    if (e) {
        dns->st.cache_hits++;
        if (e->status != 0)
            dns->st.negative_hits++;
        tp__dns_entry_ref(e); /* the callback may evict it */
        tp_dns_result_t r = result_of(e);
        r.ttl_s = ms_to_s(e->expires - now);
        r.from_cache = true;
        cb(arg, &r);
        tp__dns_entry_unref(e);
        return NULL;
    }
    dns->st.cache_misses++;
    lookup_t *lk = inflight_find(dns, name);
    if (lk && lk->nwaiters >= dns->s.max_waiters) {
        answer_now(cb, arg, TP_ERR_TOO_LARGE, "too many callers wait for this name");
        return NULL;
    }
    if (!lk && dns->ninflight >= dns->s.max_inflight) {
        answer_now(cb, arg, TP_ERR_TOO_LARGE, "too many names in flight");
        return NULL;
    }
    tp_dns_query_t *q = calloc(1, sizeof(*q));
    if (!q) {
        answer_now(cb, arg, TP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    q->dns = dns;
    q->cb = cb;
    q->arg = arg;
    q->early = early;
    if (lk) {
        dns->st.coalesced++;
        waiter_link(lk, q);
        if (early && lk->pending == 1) /* one family is in: it may go early to this one too */
            for (int i = 0; i < 2; i++)
                if (fam_ok(&lk->fam[i]))
                    early_arm(lk, &lk->fam[i]);
        return q;
    }
    lk = lookup_start(dns, name);
    if (!lk) {
        free(q);
        answer_now(cb, arg, TP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (lk->done) { /* c-ares answered at once (no server, out of memory) */
        free(q);
        if (lk->entry) {
            tp_dns_result_t r = result_of(lk->entry);
            cb(arg, &r);
        } else {
            answer_now(cb, arg, TP_ERR_NOMEM, "out of memory");
        }
        lookup_free(lk);
        return NULL;
    }
    waiter_link(lk, q);
    return q;
}

tp_dns_query_t *tp__dns_resolve(tp_dns_t *dns, const char *host, tp_dns_cb cb, void *arg) {
    return resolve(dns, host, false, cb, arg);
}

tp_dns_query_t *tp__dns_resolve_early(tp_dns_t *dns, const char *host, tp_dns_cb cb, void *arg) {
    return resolve(dns, host, true, cb, arg);
}

void tp__dns_cancel(tp_dns_query_t *q) {
    if (!q || !q->lk)
        return; /* its callback is running: it is freed when that returns */
    waiter_unlink(q->lk, q);
    free(q);
}

void tp__dns_stats(const tp_dns_t *dns, tp_dns_stats_t *out) {
    *out = dns->st;
    out->evictions = dns->cache.evictions;
    out->cache_entries = dns->cache.count;
    out->inflight = dns->ninflight;
}

void tp__dns_flush(tp_dns_t *dns) { tp__dns_cache_clear(&dns->cache); }
