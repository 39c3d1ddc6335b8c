/* cache.h: the resolver's answer cache: names to answers, bounded, least recently used out. */
#ifndef TP_DNS_CACHE_H
#define TP_DNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "turnpike/common.h"

/*
 * An answer for one name: addresses, or a negative or failed status. Reference-counted so a
 * caller's callback can keep reading it while the cache evicts or replaces it.
 */
/* A link of the LRU list: circular around the cache's sentinel, most recently used first. */
typedef struct tp_dns_lru {
    struct tp_dns_lru *prev, *next;
} tp_dns_lru_t;

typedef struct tp_dns_entry {
    tp_dns_lru_t lru;           /* first: an entry is its link */
    struct tp_dns_entry *hnext; /* hash chain */
    unsigned refs;
    bool cached;
    uint64_t expires; /* loop time (ms) after which it is stale */
    int status;       /* 0 or a tp_err_t, as tp_dns_result_t.status */
    const char *rcode;
    const char *detail;
    uint32_t ttl_s;
    size_t naddrs;
    tp_addr_t *addrs; /* inside this allocation */
    char *name;       /* inside this allocation: lower case, no trailing dot */
    void *ext;        /* the app's extension of a cached answer (TP_EXT_DNS_ITEM), or NULL */
    void (*ext_free)(void *ext);
} tp_dns_entry_t;

typedef struct tp_dns_cache {
    tp_dns_entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, capacity;
    tp_dns_lru_t lru; /* sentinel: lru.next is the most recently used, lru.prev the least */
    uint64_t evictions;
} tp_dns_cache_t;

/* A new entry (one reference) holding a copy of the name and of the addresses; NULL when out of
 * memory. */
tp_dns_entry_t *tp__dns_entry_new(const char *name, const tp_addr_t *addrs, size_t naddrs);
void tp__dns_entry_ref(tp_dns_entry_t *e);
void tp__dns_entry_unref(tp_dns_entry_t *e);

/* An empty cache of at most `capacity` names (0: it keeps nothing). Returns 0 or TP_ERR_NOMEM. */
int tp__dns_cache_init(tp_dns_cache_t *c, size_t capacity);
/* Drops every entry and the table. */
void tp__dns_cache_free(tp_dns_cache_t *c);
/* Drops every entry, keeps the table. */
void tp__dns_cache_clear(tp_dns_cache_t *c);

/* The fresh entry for `name` (borrowed: take a reference to keep it), made most recently used;
 * a stale one is dropped and NULL returned. */
tp_dns_entry_t *tp__dns_cache_get(tp_dns_cache_t *c, const char *name, uint64_t now);

/* Stores `e` (the cache takes its own reference), replacing an entry of the same name and
 * evicting the least recently used beyond the capacity. */
void tp__dns_cache_put(tp_dns_cache_t *c, tp_dns_entry_t *e);

#endif
