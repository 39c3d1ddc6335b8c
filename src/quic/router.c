/* router.c: the map from connection ID to connection: open addressing with linear probing and
 * backward-shift deletion, so lookups never allocate and no tombstones pile up. */
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "quic/quic_int.h"

/* A keyed hash: clients choose their initial DCIDs, so an unkeyed hash would let them aim at one
 * chain. (splitmix-style mixing of 8-byte words with the seed.) */
static uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_cid(uint64_t seed, const uint8_t *cid, size_t len) {
    uint64_t h = mix(seed ^ (uint64_t)len);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, cid + i, 8);
        h = mix(h ^ w);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, cid + i, len - i);
        h = mix(h ^ w ^ 0x9e3779b97f4a7c15ULL);
    }
    return h;
}

int tp__quic_router_init(tp_quic_router_t *r, size_t initial_capacity) {
    size_t cap = 16;
    while (cap < initial_capacity * 2) {
        cap <<= 1;
    }
    memset(r, 0, sizeof(*r));
    r->slots = calloc(cap, sizeof(*r->slots));
    if (!r->slots) {
        return TP_ERR_NOMEM;
    }
    r->mask = cap - 1;
    if (gnutls_rnd(GNUTLS_RND_NONCE, &r->seed, sizeof(r->seed)) != 0) {
        r->seed = (uint64_t)(uintptr_t)r ^ 0x2545f4914f6cdd1dULL;
    }
    return 0;
}

void tp__quic_router_free(tp_quic_router_t *r) {
    free(r->slots);
    r->slots = NULL;
    r->count = 0;
}

static bool slot_is(const tp_quic_route_t *s, const uint8_t *cid, size_t len) {
    return s->value && s->len == len && memcmp(s->cid, cid, len) == 0;
}

static void place(tp_quic_route_t *slots, size_t mask, uint64_t seed, const tp_quic_route_t *e) {
    size_t i = hash_cid(seed, e->cid, e->len) & mask;
    while (slots[i].value) {
        i = (i + 1) & mask;
    }
    slots[i] = *e;
}

static int grow(tp_quic_router_t *r) {
    size_t cap = (r->mask + 1) * 2;
    tp_quic_route_t *n = calloc(cap, sizeof(*n));
    if (!n) {
        return TP_ERR_NOMEM;
    }
    for (size_t i = 0; i <= r->mask; i++) {
        if (r->slots[i].value) {
            place(n, cap - 1, r->seed, &r->slots[i]);
        }
    }
    free(r->slots);
    r->slots = n;
    r->mask = cap - 1;
    return 0;
}

int tp__quic_router_insert(tp_quic_router_t *r, const uint8_t *cid, size_t len, void *value) {
    if (len == 0 || len > NGTCP2_MAX_CIDLEN || !value) {
        return TP_ERR_INVAL;
    }
    if (tp__quic_router_lookup(r, cid, len)) {
        return TP_ERR_INVAL;
    }
    /* Keep the load at or under one half: probe chains stay short. */
    if ((r->count + 1) * 2 > r->mask + 1) {
        int rc = grow(r);
        if (rc != 0) {
            return rc;
        }
    }
    tp_quic_route_t e = {.value = value, .len = (uint8_t)len};
    memcpy(e.cid, cid, len);
    place(r->slots, r->mask, r->seed, &e);
    r->count++;
    return 0;
}

void *tp__quic_router_lookup(const tp_quic_router_t *r, const uint8_t *cid, size_t len) {
    if (len == 0 || len > NGTCP2_MAX_CIDLEN) {
        return NULL;
    }
    size_t i = hash_cid(r->seed, cid, len) & r->mask;
    while (r->slots[i].value) {
        if (slot_is(&r->slots[i], cid, len)) {
            return r->slots[i].value;
        }
        i = (i + 1) & r->mask;
    }
    return NULL;
}

bool tp__quic_router_remove(tp_quic_router_t *r, const uint8_t *cid, size_t len,
                            const void *value) {
    if (len == 0 || len > NGTCP2_MAX_CIDLEN) {
        return false;
    }
    size_t i = hash_cid(r->seed, cid, len) & r->mask;
    while (r->slots[i].value && !slot_is(&r->slots[i], cid, len)) {
        i = (i + 1) & r->mask;
    }
    if (!r->slots[i].value || (value && r->slots[i].value != value)) {
        return false;
    }
    /* Backward shift: pull later entries of the chain into the hole when their home allows. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & r->mask;
        if (!r->slots[j].value) {
            break;
        }
        size_t home = hash_cid(r->seed, r->slots[j].cid, r->slots[j].len) & r->mask;
        /* Entry j may move to the hole when its home is not within (hole, j]. */
        bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            r->slots[hole] = r->slots[j];
            hole = j;
        }
    }
    memset(&r->slots[hole], 0, sizeof(r->slots[hole]));
    r->count--;
    return true;
}

void tp__quic_router_purge(tp_quic_router_t *r, const void *value) {
    for (size_t i = 0; i <= r->mask;) {
        if (r->slots[i].value == value) {
            tp_quic_route_t e = r->slots[i];
            tp__quic_router_remove(r, e.cid, e.len, value);
            continue; /* the shift may have moved another entry into slot i */
        }
        i++;
    }
}
