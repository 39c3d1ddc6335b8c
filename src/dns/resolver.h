/* resolver.h: the per-worker asynchronous DNS resolver (c-ares on the worker's libuv loop). */
#ifndef TP_DNS_RESOLVER_H
#define TP_DNS_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "turnpike/common.h"

/*
 * One resolver per worker loop: its cache, its c-ares channel, its sockets and timer all belong to
 * that loop's thread, so nothing here takes a lock and nothing is shared between workers. Every
 * function must be called on the loop's thread. docs/dns.md tells how it behaves.
 */
typedef struct tp_dns tp_dns_t;

/* One caller waiting for a name; valid from tp__dns_resolve() until its callback has returned or
 * tp__dns_cancel() was called on it. */
typedef struct tp_dns_query tp_dns_query_t;

/* Most addresses kept per family (AAAA and A) for one name; the rest of an answer is dropped. */
#define TP_DNS_MAX_ADDRS 16

typedef struct tp_dns_settings {
    /* "ip", "ip:port", "v6" or "[v6]:port" (port 53 when absent), tried in this order. None (0):
     * the nameservers of resolv_conf. */
    const char *const *servers;
    size_t nservers;
    const char *resolv_conf;  /* NULL: /etc/resolv.conf (read only when nservers is 0) */
    uint64_t timeout_ms;      /* first try of a question to one server; doubles each round */
    int attempts;             /* rounds over the whole server list */
    uint64_t min_ttl_ms;      /* positive answers are kept at least this long ... */
    uint64_t max_ttl_ms;      /* ... and at most this long, whatever the record's TTL */
    uint64_t negative_ttl_ms; /* NXDOMAIN and NODATA are kept this long (0: not at all) */
    size_t cache_size;        /* names kept (least recently used go first); 0: no cache */
    size_t max_waiters;       /* callers waiting on one name in flight; more get TOO_LARGE */
    size_t max_inflight;      /* names being looked up at once; more get TOO_LARGE */
    bool use_hosts;           /* names in the hosts file are answered from it, first */
    const char *hosts_path;   /* NULL: /etc/hosts */
    /* An extension of each positive answer (the app's TP_EXT_DNS_ITEM): ext_size bytes, zeroed,
     * ext_init(ext, entry) after, ext_free(ext) when the answer is dropped; 0: none. */
    size_t ext_size;
    void (*ext_init)(void *ext, void *owner);
    void (*ext_free)(void *ext);
    uint64_t hosts_check_ms; /* how often the hosts file's mtime is looked at (0: never) */
    /* RFC 8305 3, for tp__dns_resolve_early(): an A answer that comes before the AAAA answer is
     * handed out early after this long (an AAAA answer that comes first, at once). */
    uint64_t resolution_delay_ms;
} tp_dns_settings_t;

/* Fills in the defaults: system servers, 2 s timeout, 2 attempts, TTLs kept between 1 s and 1 h,
 * 30 s negative TTL, 10000 names, 1024 waiters per name, 4096 names in flight, /etc/hosts used
 * and looked at again every 5 s, a 50 ms resolution delay. */
void tp__dns_settings_default(tp_dns_settings_t *s);

typedef struct tp_dns_result {
    /* 0 (at least one address); TP_ERR_DNS (the name has no address: rcode says why when a
     * server said so, NULL when no server could be reached); TP_ERR_TIMEOUT (no server answered,
     * rcode NULL); TP_ERR_INVAL (not a host name); TP_ERR_TOO_LARGE (max_waiters or
     * max_inflight reached); TP_ERR_NOMEM; TP_ERR_CLOSED (the resolver is closing). */
    int status;
    /* "NXDOMAIN", "NODATA", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR", "BADRESP" or NULL. */
    const char *rcode;
    /* What c-ares or the resolver said, for the log (static text; never NULL). */
    const char *detail;
    /* IPv6 first, then IPv4, each in the server's order; port 0. Valid during the callback. */
    const tp_addr_t *addrs;
    size_t naddrs;
    uint32_t ttl_s;  /* how long the answer stays cached, seconds (0: not cached) */
    bool from_cache; /* answered from the cache (positive or negative) */
    bool from_hosts; /* answered from the hosts file */
    bool literal;    /* the name was an IP address */
    /* An early answer (tp__dns_resolve_early only): the addresses of the one family that has
     * answered; the callback runs once more with the whole answer, which has them too. */
    bool partial;
    /* The cached answer behind a positive result from DNS (NULL for literals, hosts-file names
     * and errors): take a reference (tp__dns_entry_ref) to keep it, and its extension, longer. */
    struct tp_dns_entry *entry;
} tp_dns_result_t;

/* Gets the answer. May run inside tp__dns_resolve() (then it returned NULL). It may call any
 * tp__dns_* function, tp__dns_close() included. */
typedef void (*tp_dns_cb)(void *arg, const tp_dns_result_t *res);

/*
 * Makes a resolver on `loop` (settings are copied; NULL means the defaults). Returns 0,
 * TP_ERR_INVAL (a bad server address or setting), TP_ERR_CONFIG (c-ares refused the set-up, e.g.
 * a resolv.conf that exists but cannot be read) or TP_ERR_NOMEM. Reads resolv.conf and the hosts
 * file now.
 */
int tp__dns_new(uv_loop_t *loop, const tp_dns_settings_t *settings, tp_dns_t **out);

/*
 * Asynchronous teardown: callers still waiting are answered TP_ERR_CLOSED (from inside this call),
 * c-ares stops, handles close, and `closed(arg)` runs (may be NULL) from the loop when the memory
 * is gone. Safe inside a callback. A second call does nothing.
 */
void tp__dns_close(tp_dns_t *dns, void (*closed)(void *arg), void *arg);

/*
 * Resolves `host` (A and AAAA at once) and calls cb(arg, result) once. Returns the waiting query,
 * or NULL when the answer was given before returning (an IP literal, a hosts file name, a cache
 * hit, or an error such as an invalid name): cb has then already run. A second resolve of a name
 * in flight joins the same lookup. Names are not case-sensitive; a trailing dot is ignored; the
 * search list of resolv.conf is not applied (names are taken as fully qualified).
 */
tp_dns_query_t *tp__dns_resolve(tp_dns_t *dns, const char *host, tp_dns_cb cb, void *arg);

/*
 * Like tp__dns_resolve(), for a caller that can start connecting before the whole answer is in
 * (Happy Eyeballs, RFC 8305 3): when one family answers with addresses before the other, the
 * callback runs first with those (`partial` set): at once for AAAA, after resolution_delay_ms for
 * A if the AAAA answer has not come by then. It runs again, once, with the whole answer (then
 * the query is over), which is a success whenever the early answer was. A lookup already in
 * flight whose early answer went out gives this caller only the whole answer.
 */
tp_dns_query_t *tp__dns_resolve_early(tp_dns_t *dns, const char *host, tp_dns_cb cb, void *arg);

/* The callback of `q` will not run; NULL is fine, and so is a query whose callback is running.
 * The lookup goes on for the cache when no one else waits. */
void tp__dns_cancel(tp_dns_query_t *q);

typedef struct tp_dns_stats {
    uint64_t resolves;      /* tp__dns_resolve() calls */
    uint64_t literals;      /* ... of IP addresses */
    uint64_t hosts_hits;    /* ... answered from the hosts file */
    uint64_t cache_hits;    /* ... answered from the cache (negative answers included) */
    uint64_t negative_hits; /* ... of which NXDOMAIN or NODATA */
    uint64_t cache_misses;  /* ... that needed the network (coalesced ones included) */
    uint64_t coalesced;     /* ... that joined a lookup already in flight */
    uint64_t lookups;       /* names looked up over DNS */
    uint64_t questions;     /* DNS questions asked (an A and an AAAA per lookup) */
    uint64_t sends;         /* queries written to servers, retries and fallbacks included */
    uint64_t fallbacks;     /* ... of which to a server other than the first one */
    uint64_t timeouts;      /* tries that got no answer in time */
    uint64_t failures;      /* lookups that ended with no address and no negative answer */
    uint64_t evictions;     /* names dropped from a full cache */
    uint64_t early_answers; /* lookups that gave an early answer of one family */
    size_t cache_entries;   /* names in the cache now (expired ones included until seen) */
    size_t inflight;        /* names being looked up now */
} tp_dns_stats_t;

/* Copies the counters (for tests and metrics). */
void tp__dns_stats(const tp_dns_t *dns, tp_dns_stats_t *out);

/* Forgets every cached answer (e.g. when the operator asks for it). */
void tp__dns_flush(tp_dns_t *dns);

#endif
