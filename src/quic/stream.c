/* stream.c: a stream's send buffer: chunks that hold what the app wrote until the peer
 * acknowledged it (ngtcp2 retransmits from these bytes, it keeps no copy). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quic/quic_int.h"

/* Chunk size: big enough that a 1 MiB window is a handful of mallocs, small enough that an idle
 * stream with a few bytes does not pin much. A chunk is sized to what is being written (at least
 * CHUNK_MIN): a 1 KiB response costs a 1 KiB chunk, not 16 (malloc was the top of the profile of
 * many small responses). */
#define CHUNK_MAX 16384
#define CHUNK_MIN 1024

/* The capacity of a new chunk for `need` more bytes: the next power of two, CHUNK_MIN..CHUNK_MAX.
 */
static size_t chunk_size(size_t need) {
    size_t c = CHUNK_MIN;
    while (c < need && c < CHUNK_MAX) {
        c <<= 1;
    }
    return c;
}

/* ---- the endpoint's block cache (blocks.h) ---- */

int tp__quic_block_class(size_t cap) {
    for (int k = 0; k < TP_QUIC_BLOCK_CLASSES; k++) {
        if (cap == (size_t)CHUNK_MIN << k) {
            return k;
        }
    }
    return -1;
}

void *tp__quic_block_get(tp_quic_blocks_t *cc, int k) {
    if (k < 0 || k >= TP_QUIC_BLOCK_CLASSES) {
        return NULL;
    }
    if (cc && cc->free[k]) {
        void *p = cc->free[k];
        memcpy(&cc->free[k], p, sizeof(void *)); /* the next free block */
        cc->n[k]--;
        return p;
    }
    return malloc(TP_QUIC_BLOCK_HDR + ((size_t)CHUNK_MIN << k));
}

void tp__quic_block_put(tp_quic_blocks_t *cc, int k, void *p) {
    if (cc && k >= 0 && k < TP_QUIC_BLOCK_CLASSES && cc->n[k] < TP_QUIC_BLOCK_KEEP(k)) {
        memcpy(p, &cc->free[k], sizeof(void *));
        cc->free[k] = p;
        cc->n[k]++;
        return;
    }
    free(p);
}

int tp__quic_small_class(size_t size) {
    for (int k = 0; k < TP_QUIC_SMALL_CLASSES; k++) {
        if (size <= (size_t)TP_QUIC_SMALL_MIN << k) {
            return k;
        }
    }
    return -1;
}

/* Under ASan a kept object is poisoned but for its first word (the free-list link): a use
 * after it went back to the cache is reported as it would be after free(). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

void *tp__quic_small_get(tp_quic_blocks_t *cc, int k) {
    size_t size = (size_t)TP_QUIC_SMALL_MIN << k;
    if (cc->small[k]) {
        void *p = cc->small[k];
        memcpy(&cc->small[k], p, sizeof(void *));
        cc->nsmall[k]--;
        UNPOISON(p, size);
        return p;
    }
    return malloc(size);
}

void tp__quic_small_put(tp_quic_blocks_t *cc, int k, void *p) {
    size_t size = (size_t)TP_QUIC_SMALL_MIN << k;
    if (cc->nsmall[k] < TP_QUIC_SMALL_KEEP(k)) {
        memcpy(p, &cc->small[k], sizeof(void *));
        POISON((char *)p + sizeof(void *), size - sizeof(void *));
        cc->small[k] = p;
        cc->nsmall[k]++;
        return;
    }
    free(p);
}

static void free_list(void **head, size_t size) {
    while (*head) {
        void *p = *head;
        memcpy(head, p, sizeof(void *));
        UNPOISON(p, size);
        free(p);
    }
}

void tp__quic_blocks_clear(tp_quic_blocks_t *cc) {
    for (int k = 0; k < TP_QUIC_BLOCK_CLASSES; k++) {
        free_list(&cc->free[k], TP_QUIC_BLOCK_HDR + ((size_t)CHUNK_MIN << k));
        cc->n[k] = 0;
    }
    for (int k = 0; k < TP_QUIC_SMALL_CLASSES; k++) {
        free_list(&cc->small[k], (size_t)TP_QUIC_SMALL_MIN << k);
        cc->nsmall[k] = 0;
    }
}

/* ---- ngtcp2's and nghttp3's memory: small objects from the cache (blocks.h) ---- */

/* Before each object: its class (or -1: plain malloc) and its size, 16 bytes so that what
 * the library gets stays 16-byte aligned. */
typedef struct {
    int32_t cls;
    uint32_t unused;
    size_t size;
} mem_hdr_t;
_Static_assert(sizeof(mem_hdr_t) == 16, "the header keeps malloc's alignment");

void *tp__quic_mem_malloc(size_t size, void *ud) {
    if (size > SIZE_MAX - sizeof(mem_hdr_t)) {
        return NULL;
    }
    int k = tp__quic_small_class(size + sizeof(mem_hdr_t));
    mem_hdr_t *h = k >= 0 ? tp__quic_small_get(ud, k) : malloc(size + sizeof(mem_hdr_t));
    if (!h) {
        return NULL;
    }
    h->cls = k;
    h->size = size;
    if (k >= 0) {
        /* Past the size asked for is out of bounds, as it would be from malloc. */
        size_t cap = (size_t)TP_QUIC_SMALL_MIN << k;
        POISON((char *)(h + 1) + size, cap - sizeof(mem_hdr_t) - size);
    }
    return h + 1;
}

void tp__quic_mem_free(void *ptr, void *ud) {
    if (!ptr) {
        return;
    }
    mem_hdr_t *h = (mem_hdr_t *)ptr - 1;
    if (h->cls >= 0) {
        tp__quic_small_put(ud, h->cls, h);
    } else {
        free(h);
    }
}

void *tp__quic_mem_calloc(size_t nmemb, size_t size, void *ud) {
    if (size && nmemb > SIZE_MAX / size) {
        return NULL;
    }
    void *p = tp__quic_mem_malloc(nmemb * size, ud);
    if (p) {
        memset(p, 0, nmemb * size);
    }
    return p;
}

void *tp__quic_mem_realloc(void *ptr, size_t size, void *ud) {
    if (!ptr) {
        return tp__quic_mem_malloc(size, ud);
    }
    if (size == 0) {
        tp__quic_mem_free(ptr, ud);
        return NULL;
    }
    mem_hdr_t *h = (mem_hdr_t *)ptr - 1;
    size_t cap = h->cls >= 0 ? (size_t)TP_QUIC_SMALL_MIN << h->cls : 0;
    if (h->cls >= 0 && size + sizeof(mem_hdr_t) <= cap) {
        h->size = size; /* still fits its object */
        UNPOISON(ptr, cap - sizeof(mem_hdr_t));
        POISON((char *)ptr + size, cap - sizeof(mem_hdr_t) - size);
        return ptr;
    }
    void *p = tp__quic_mem_malloc(size, ud);
    if (p) {
        memcpy(p, ptr, h->size < size ? h->size : size);
        tp__quic_mem_free(ptr, ud);
    }
    return p;
}

tp_quic_blocks_t *tp__quic_conn_blocks(tp_quic_conn_t *c) { return &c->ep->blocks; }
tp_quic_blocks_t *tp__quic_endpoint_blocks(tp_quic_endpoint_t *ep) { return &ep->blocks; }

/* A chunk of `cap` data bytes (a power of two, CHUNK_MIN..CHUNK_MAX) from the cache. */
static tp_quic_chunk_t *chunk_get(tp_quic_blocks_t *cc, size_t cap) {
    _Static_assert(sizeof(tp_quic_chunk_t) <= TP_QUIC_BLOCK_HDR, "a chunk header fits a block's");
    _Static_assert(CHUNK_MAX == CHUNK_MIN << (TP_QUIC_BLOCK_CLASSES - 1), "chunks are blocks");
    tp_quic_chunk_t *t = tp__quic_block_get(cc, tp__quic_block_class(cap));
    if (t) {
        t->cap = cap;
    }
    return t;
}

static void chunk_put(tp_quic_blocks_t *cc, tp_quic_chunk_t *t) {
    tp__quic_block_put(cc, tp__quic_block_class(t->cap), t);
}

tp_quic_stream_t *tp__quic_stream_new(int64_t id, tp_quic_blocks_t *cache) {
    tp_quic_stream_t *s = TP_QUIC_MEM_CACHE && cache ? tp__quic_mem_calloc(1, sizeof(*s), cache)
                                                     : calloc(1, sizeof(*s));
    if (s) {
        s->id = id;
        s->cache = cache;
    }
    return s;
}

void tp__quic_stream_del(tp_quic_stream_t *s) {
    if (!s) {
        return;
    }
    tp_quic_chunk_t *c = s->head;
    while (c) {
        tp_quic_chunk_t *next = c->next;
        chunk_put(s->cache, c);
        c = next;
    }
    if (TP_QUIC_MEM_CACHE && s->cache) {
        tp__quic_mem_free(s, s->cache);
    } else {
        free(s);
    }
}

ssize_t tp__quic_stream_append(tp_quic_stream_t *s, const uint8_t *data, size_t len, size_t room) {
    size_t n = len < room ? len : room;
    size_t done = 0;
    while (done < n) {
        tp_quic_chunk_t *t = s->tail;
        if (!t || t->len == t->cap) {
            /* Once a stream has carried a chunk's worth, it is a bulk one: full chunks. */
            size_t cap = s->written >= CHUNK_MAX ? CHUNK_MAX : chunk_size(n - done);
            t = chunk_get(s->cache, cap);
            if (!t) {
                break;
            }
            t->next = NULL;
            t->len = 0;
            if (s->tail) {
                s->tail->next = t;
            } else {
                s->head = t;
                s->head_off = s->written;
            }
            s->tail = t;
        }
        size_t k = t->cap - t->len;
        if (k > n - done) {
            k = n - done;
        }
        memcpy(t->data + t->len, data + done, k);
        t->len += k;
        done += k;
        s->written += k;
    }
    if (done == 0 && n > 0) {
        return TP_ERR_NOMEM;
    }
    return (ssize_t)done;
}

size_t tp__quic_stream_unsent(const tp_quic_stream_t *s, ngtcp2_vec *vec, size_t max,
                              size_t *total) {
    size_t cnt = 0;
    size_t sum = 0;
    uint64_t off = s->head_off;
    for (const tp_quic_chunk_t *c = s->head; c && cnt < max; c = c->next) {
        uint64_t end = off + c->len;
        if (end > s->sent) {
            size_t skip = s->sent > off ? (size_t)(s->sent - off) : 0;
            vec[cnt].base = (uint8_t *)c->data + skip;
            vec[cnt].len = c->len - skip;
            sum += vec[cnt].len;
            cnt++;
        }
        off = end;
    }
    *total = sum;
    return cnt;
}

void tp__quic_stream_acked(tp_quic_stream_t *s, uint64_t upto) {
    if (upto > s->acked) {
        s->acked = upto;
    }
    /* A chunk goes once every byte in it is acknowledged. The tail stays while the app may still
     * append to it unless it is full: freeing it would lose the append position. */
    while (s->head && s->head_off + s->head->len <= s->acked) {
        tp_quic_chunk_t *c = s->head;
        if (c == s->tail && c->len < c->cap) {
            break;
        }
        s->head = c->next;
        s->head_off += c->len;
        if (!s->head) {
            s->tail = NULL;
        }
        chunk_put(s->cache, c);
    }
}

void tp__quic_stream_drop_unsent(tp_quic_stream_t *s) {
    s->shut_wr = true;
    /* The bytes stay allocated until the stream closes; nothing more is handed to ngtcp2. */
    s->written = s->sent;
}

/* ---- the connection's streams by id: open addressing, backward-shift deletion ---- */

static size_t sid_hash(int64_t id, size_t mask) {
    /* Stream ids of one kind step by 4; drop those bits before mixing. */
    return (size_t)(((uint64_t)id >> 2 ^ (uint64_t)id << 62) * 0x9e3779b97f4a7c15ULL >> 20) & mask;
}

int tp__quic_smap_put(tp_quic_smap_t *m, tp_quic_stream_t *s) {
    if ((m->count + 1) * 2 > (m->slots ? m->mask + 1 : 0)) {
        size_t cap = m->slots ? (m->mask + 1) * 2 : 16;
        tp_quic_stream_t **n = calloc(cap, sizeof(tp_quic_stream_t *));
        if (!n) {
            return TP_ERR_NOMEM;
        }
        for (size_t i = 0; m->slots && i <= m->mask; i++) {
            if (m->slots[i]) {
                size_t j = sid_hash(m->slots[i]->id, cap - 1);
                while (n[j]) {
                    j = (j + 1) & (cap - 1);
                }
                n[j] = m->slots[i];
            }
        }
        free(m->slots);
        m->slots = n;
        m->mask = cap - 1;
    }
    if (!m->slots) {
        return TP_ERR_NOMEM; /* unreachable: the table was just made */
    }
    size_t i = sid_hash(s->id, m->mask);
    while (m->slots[i]) {
        i = (i + 1) & m->mask;
    }
    m->slots[i] = s;
    m->count++;
    return 0;
}

tp_quic_stream_t *tp__quic_smap_get(const tp_quic_smap_t *m, int64_t id) {
    if (!m->slots || id < 0) {
        return NULL;
    }
    size_t i = sid_hash(id, m->mask);
    while (m->slots[i]) {
        if (m->slots[i]->id == id) {
            return m->slots[i];
        }
        i = (i + 1) & m->mask;
    }
    return NULL;
}

void tp__quic_smap_del(tp_quic_smap_t *m, int64_t id) {
    if (!m->slots) {
        return;
    }
    size_t i = sid_hash(id, m->mask);
    while (m->slots[i] && m->slots[i]->id != id) {
        i = (i + 1) & m->mask;
    }
    if (!m->slots[i]) {
        return;
    }
    size_t hole = i;
    for (size_t j = (i + 1) & m->mask; m->slots[j]; j = (j + 1) & m->mask) {
        size_t home = sid_hash(m->slots[j]->id, m->mask);
        bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = NULL;
    m->count--;
}

void tp__quic_smap_free(tp_quic_smap_t *m) {
    for (size_t i = 0; m->slots && i <= m->mask; i++) {
        tp__quic_stream_del(m->slots[i]);
    }
    free(m->slots);
    m->slots = NULL;
    m->count = 0;
}
