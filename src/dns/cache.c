/* cache.c: the resolver's answer cache: a chained hash table by name plus an LRU list. */
#include <stdlib.h>
#include <string.h>

#include "dns/cache.h"

#include "util/hash.h"

/* Names are short and already lower case. */
static uint64_t hash_name(const char *s) { return tp__fnv1a_str(TP_FNV1A_INIT, s); }

tp_dns_entry_t *tp__dns_entry_new(const char *name, const tp_addr_t *addrs, size_t naddrs) {
    size_t nlen = strlen(name) + 1;
    tp_dns_entry_t *e = malloc(sizeof(*e) + naddrs * sizeof(tp_addr_t) + nlen);
    if (!e)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->lru.prev = e->lru.next = &e->lru;
    e->refs = 1;
    e->addrs = (tp_addr_t *)(e + 1);
    if (naddrs)
        memcpy(e->addrs, addrs, naddrs * sizeof(tp_addr_t));
    e->naddrs = naddrs;
    e->name = (char *)(e->addrs + naddrs);
    memcpy(e->name, name, nlen);
    e->detail = "";
    return e;
}

void tp__dns_entry_ref(tp_dns_entry_t *e) { e->refs++; }

void tp__dns_entry_unref(tp_dns_entry_t *e) {
    if (e && --e->refs == 0) {
        if (e->ext && e->ext_free)
            e->ext_free(e->ext);
        free(e->ext);
        free(e);
    }
}

int tp__dns_cache_init(tp_dns_cache_t *c, size_t capacity) {
    memset(c, 0, sizeof(*c));
    c->capacity = capacity;
    c->lru.prev = c->lru.next = &c->lru;
    size_t n = 16;
    while (n < capacity && n < ((size_t)1 << 20))
        n <<= 1;
    c->buckets = calloc(n, sizeof(tp_dns_entry_t *));
    if (!c->buckets)
        return TP_ERR_NOMEM;
    c->nbuckets = n;
    return 0;
}

static void lru_remove(tp_dns_lru_t *l) {
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

static void lru_push_front(tp_dns_cache_t *c, tp_dns_lru_t *l) {
    l->prev = &c->lru;
    l->next = c->lru.next;
    c->lru.next->prev = l;
    c->lru.next = l;
}

static void unlink_entry(tp_dns_cache_t *c, tp_dns_entry_t *e) {
    tp_dns_entry_t **pp = &c->buckets[hash_name(e->name) & (c->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    e->hnext = NULL;
    lru_remove(&e->lru);
    e->cached = false;
    c->count--;
    tp__dns_entry_unref(e);
}

void tp__dns_cache_clear(tp_dns_cache_t *c) {
    while (c->lru.next != &c->lru)
        unlink_entry(c, (tp_dns_entry_t *)c->lru.next);
}

void tp__dns_cache_free(tp_dns_cache_t *c) {
    if (c->buckets)
        tp__dns_cache_clear(c);
    free(c->buckets);
    c->buckets = NULL;
    c->nbuckets = 0;
}

tp_dns_entry_t *tp__dns_cache_get(tp_dns_cache_t *c, const char *name, uint64_t now) {
    if (c->count == 0)
        return NULL;
    tp_dns_entry_t *e = c->buckets[hash_name(name) & (c->nbuckets - 1)];
    while (e && strcmp(e->name, name) != 0)
        e = e->hnext;
    if (!e)
        return NULL;
    if (now >= e->expires) {
        unlink_entry(c, e);
        return NULL;
    }
    lru_remove(&e->lru);
    lru_push_front(c, &e->lru);
    return e;
}

void tp__dns_cache_put(tp_dns_cache_t *c, tp_dns_entry_t *e) {
    if (c->capacity == 0 || e->cached)
        return;
    size_t b = hash_name(e->name) & (c->nbuckets - 1);
    for (tp_dns_entry_t *old = c->buckets[b]; old; old = old->hnext)
        if (strcmp(old->name, e->name) == 0) {
            unlink_entry(c, old);
            break;
        }
    while (c->count >= c->capacity && c->lru.prev != &c->lru) {
        tp_dns_entry_t *victim = (tp_dns_entry_t *)c->lru.prev;
        c->lru.prev = victim->lru.prev; /* detached here, so the sentinel visibly moves on */
        c->lru.prev->next = &c->lru;
        victim->lru.prev = victim->lru.next = &victim->lru;
        unlink_entry(c, victim);
        c->evictions++;
    }
    tp__dns_entry_ref(e);
    e->cached = true;
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    lru_push_front(c, &e->lru);
    c->count++;
}
