/* buf.c: per-worker pools of reference-counted read buffers (slabs), so reads never malloc. */
#include "buf.h"

#include <stdlib.h>

void tp__bufpool_init(tp_bufpool_t *pool, uint32_t buf_size, size_t max_free) {
    pool->free_list = NULL;
    pool->free_count = 0;
    pool->max_free = max_free;
    pool->buf_size = buf_size;
    pool->in_use = 0;
}

void tp__bufpool_free(tp_bufpool_t *pool) {
    while (pool->free_list) {
        tp_buf_t *b = pool->free_list;
        pool->free_list = b->next_free;
        free(b);
    }
    pool->free_count = 0;
}

tp_buf_t *tp__buf_get(tp_bufpool_t *pool) {
    tp_buf_t *b = pool->free_list;
    if (b) {
        pool->free_list = b->next_free;
        pool->free_count--;
    } else {
        b = malloc(sizeof(*b) + pool->buf_size);
        if (!b)
            return NULL;
        b->pool = pool;
        b->cap = pool->buf_size;
    }
    b->refs = 1;
    b->next_free = NULL;
    pool->in_use++;
    return b;
}

void tp__buf_unref(tp_buf_t *b) {
    if (--b->refs > 0)
        return;
    tp_bufpool_t *pool = b->pool;
    pool->in_use--;
    if (pool->free_count < pool->max_free) {
        b->next_free = pool->free_list;
        pool->free_list = b;
        pool->free_count++;
    } else {
        free(b);
    }
}
