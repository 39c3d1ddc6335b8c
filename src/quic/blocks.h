/* blocks.h: an endpoint's cache of send-buffer blocks, shared by its QUIC streams (stream.c) and
 * the HTTP/3 body queues of its connections (h3/bodyq.c). */
#ifndef TP_QUIC_BLOCKS_H
#define TP_QUIC_BLOCKS_H

#include <stddef.h>

typedef struct tp_quic_conn tp_quic_conn_t;

/*
 * Blocks of TP_QUIC_BLOCK_HDR + (1 KiB << k) bytes for k = 0..4 (1 to 16 KiB of data after a
 * header of the user's), at most TP_QUIC_BLOCK_KEEP kept per class. A request/response stream
 * takes a 1-2 KiB block and gives it back: from malloc, each was a large-bin request, and with
 * nghttp3's small frees about, glibc consolidated its fast bins for many of them (malloc and
 * free were 17% of an HTTP/3 server's profile). Only the endpoint's thread touches it.
 */
#define TP_QUIC_BLOCK_CLASSES 5
#define TP_QUIC_BLOCK_KEEP    32
#define TP_QUIC_BLOCK_HDR     32

typedef struct tp_quic_blocks {
    void *free[TP_QUIC_BLOCK_CLASSES];
    unsigned n[TP_QUIC_BLOCK_CLASSES];
} tp_quic_blocks_t;

/* The class whose data size is exactly `cap` (a power of two, 1 to 16 KiB), or -1. */
int tp__quic_block_class(size_t cap);
/* A block of class k (TP_QUIC_BLOCK_HDR + (1024 << k) bytes), kept or new; NULL: no memory.
 * `cc` may be NULL (then it is malloc and free). */
void *tp__quic_block_get(tp_quic_blocks_t *cc, int k);
/* Gives a block of class k back (kept, or freed when the class is full or k is -1). */
void tp__quic_block_put(tp_quic_blocks_t *cc, int k, void *p);
/* Frees every kept block (when the endpoint goes). */
void tp__quic_blocks_clear(tp_quic_blocks_t *cc);
/* The blocks of a connection's endpoint. */
tp_quic_blocks_t *tp__quic_conn_blocks(tp_quic_conn_t *c);

#endif
