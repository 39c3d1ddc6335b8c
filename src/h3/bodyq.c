/* bodyq.c: a stream's outgoing body: a bounded queue of chunks whose bytes are lent to nghttp3
 * (read_data) and freed when nghttp3 releases them (acked_stream_data). Appending never moves
 * bytes already lent. */
#include <stdlib.h>
#include <string.h>

#include "h3/h3_int.h"

/* Small enough that a short body pins little, large enough that a 256 KiB queue is 16 mallocs;
 * a chunk is sized to what is pushed (a power of two, BCHUNK_MIN..BCHUNK), so a small body costs
 * a small allocation. */
#define BCHUNK     16384
#define BCHUNK_MIN 1024

static size_t bchunk_size(size_t need) {
    size_t c = BCHUNK_MIN;
    while (c < need && c < BCHUNK) {
        c <<= 1;
    }
    return c;
}

void tp__h3_bodyq_init(tp_h3_bodyq_t *q, size_t cap, tp_quic_blocks_t *blocks) {
    memset(q, 0, sizeof(*q));
    q->cap = cap;
    q->blocks = blocks;
}

/* Chunks are blocks of the endpoint's cache (their capacities are its classes). */
static void bchunk_put(tp_h3_bodyq_t *q, tp_h3_bchunk_t *c) {
    tp__quic_block_put(q->blocks, tp__quic_block_class(c->cap), c);
}

void tp__h3_bodyq_free(tp_h3_bodyq_t *q) {
    tp_h3_bchunk_t *c = q->head;
    while (c) {
        tp_h3_bchunk_t *next = c->next;
        bchunk_put(q, c);
        c = next;
    }
    q->head = q->tail = NULL;
    q->held = q->lent = q->head_skip = 0;
}

ssize_t tp__h3_bodyq_push(tp_h3_bodyq_t *q, const uint8_t *data, size_t len) {
    size_t room = tp__h3_bodyq_room(q);
    size_t want = len < room ? len : room;
    size_t done = 0;
    while (done < want) {
        tp_h3_bchunk_t *t = q->tail;
        if (!t || t->len == t->cap) {
            _Static_assert(sizeof(*t) <= TP_QUIC_BLOCK_HDR, "a chunk header fits a block's");
            _Static_assert(BCHUNK == BCHUNK_MIN << (TP_QUIC_BLOCK_CLASSES - 1),
                           "chunks are blocks");
            size_t cap = bchunk_size(want - done);
            t = tp__quic_block_get(q->blocks, tp__quic_block_class(cap));
            if (!t) {
                break;
            }
            t->next = NULL;
            t->len = 0;
            t->cap = cap;
            if (q->tail) {
                q->tail->next = t;
            } else {
                q->head = t;
                q->head_skip = 0;
            }
            q->tail = t;
        }
        size_t k = t->cap - t->len;
        if (k > want - done) {
            k = want - done;
        }
        memcpy(t->data + t->len, data + done, k);
        t->len += k;
        done += k;
    }
    q->held += done;
    if (done == 0 && want > 0) {
        return TP_ERR_NOMEM;
    }
    return (ssize_t)done;
}

size_t tp__h3_bodyq_lend(tp_h3_bodyq_t *q, nghttp3_vec *vec, size_t max) {
    size_t cnt = 0;
    size_t skip = q->head_skip + q->lent; /* offset of the first unlent byte from head->data */
    size_t total = 0;
    for (tp_h3_bchunk_t *c = q->head; c && cnt < max; c = c->next) {
        if (skip >= c->len) {
            skip -= c->len;
            continue;
        }
        vec[cnt].base = c->data + skip;
        vec[cnt].len = c->len - skip;
        total += vec[cnt].len;
        cnt++;
        skip = 0;
    }
    q->lent += total;
    return cnt;
}

void tp__h3_bodyq_release(tp_h3_bodyq_t *q, size_t n) {
    if (n > q->lent) {
        n = q->lent; /* never more than was lent */
    }
    q->lent -= n;
    q->held -= n;
    q->head_skip += n;
    /* Free chunks that are fully released; keep a partly filled tail so appends continue. */
    while (q->head && q->head_skip >= q->head->len) {
        tp_h3_bchunk_t *c = q->head;
        if (c == q->tail && c->len < c->cap) {
            if (q->held == 0) {
                /* Empty: rewind the tail instead of freeing it. */
                c->len = 0;
                q->head_skip = 0;
            }
            break;
        }
        q->head_skip -= c->len;
        q->head = c->next;
        if (!q->head) {
            q->tail = NULL;
        }
        bchunk_put(q, c);
    }
}
