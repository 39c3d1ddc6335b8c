/* buf.h: per-worker pools of reference-counted read buffers (slabs), so reads never malloc. */
#ifndef TP_RUNTIME_BUF_H
#define TP_RUNTIME_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct tp_bufpool tp_bufpool_t;

/* A slab. `data` is where reads land; writes that forward it hold a reference until done. */
typedef struct tp_buf {
    tp_bufpool_t *pool;
    struct tp_buf *next_free;
    uint32_t refs;
    uint32_t cap;
    char data[];
} tp_buf_t;

struct tp_bufpool {
    tp_buf_t *free_list;
    size_t free_count;
    size_t max_free; /* slabs kept for reuse; more are returned to malloc */
    uint32_t buf_size;
    size_t in_use;
};

void tp__bufpool_init(tp_bufpool_t *pool, uint32_t buf_size, size_t max_free);
void tp__bufpool_free(tp_bufpool_t *pool);

/* A slab with one reference, or NULL when out of memory. */
tp_buf_t *tp__buf_get(tp_bufpool_t *pool);
static inline void tp__buf_ref(tp_buf_t *b) { b->refs++; }
void tp__buf_unref(tp_buf_t *b);

/* The slab whose data a uv_buf_t base points into (from a read callback). */
static inline tp_buf_t *tp__buf_of(char *data) {
    return (tp_buf_t *)(data - offsetof(tp_buf_t, data));
}

#endif
